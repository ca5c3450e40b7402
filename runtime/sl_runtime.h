/*
 * sl_runtime.h - internals of the runtime shared by the host's files
 * (CLI, REPL, embedding API).  Not part of the public API.
 */
#ifndef SL_RUNTIME_H
#define SL_RUNTIME_H

#include "sluice.h"
#include "../lib/sl_sched.h"

struct sl_runtime {
  sl_sched S;
  uv_loop_t *loop;
  uv_loop_t own_loop;
  lua_State *L;
  uv_async_t sigasync;     /* SIGINT, forwarded to the loop */
  int sigint_installed;
  sl_error_fn on_error;
  void *error_ud;
  void (*on_interrupt)(sl_runtime *rt);   /* REPL: cancel the running line */
  int owns_loop;
  int failures;
  int status;              /* exit status so far */
  int interrupts;
  int deadlocks;
  int abort_on_main_error; /* CLI: a failing main chunk cancels everything */
  struct sl_repl *repl;    /* the REPL while it runs (repl.c) */
};

/* Starts the function below nargs values on L's stack as a root task
 * whose failure is reported (and, for the CLI, aborts the run). */
sl_task *sl_start_main(sl_runtime *rt, int nargs, const char *name);
void sl_report(sl_runtime *rt, const char *text);
void sl_cancel_all(sl_runtime *rt);
/* Ctrl-C handling for the CLI (sl_signal.c); embedders keep their own. */
int sl_install_sigint(sl_runtime *rt);
void sl_remove_sigint(sl_runtime *rt);
/* Embedded Lua modules (generated at build time). */
int sl_preload_embedded(lua_State *L);
int sl_open_uv(sl_runtime *rt);
/* The REPL (repl.c): reads lines on the loop, runs each as a task.
 * Returns 0 once started; the loop then runs until the user quits. */
int sl_repl_start(sl_runtime *rt);
/* Ends the REPL if it runs (terminal restored, history saved, its
 * handles closing); sl_close calls it first. */
void sl_repl_close(sl_runtime *rt);

#endif
