/*
 * sluice.h - embedding API of libsluice.
 *
 * A runtime is a LuaJIT state with the sluice module and luv loaded, and
 * a scheduler on a libuv loop: its own, or one the host already runs.
 *
 *   sl_runtime *rt = sl_open(NULL);             // own loop, real clock
 *   sl_dostring(rt, "sluice.spawn(...)", "=init");
 *   while (running) { game_frame(); sl_step(rt); }   // never blocks
 *   sl_close(rt);                                 // cancels, frees all
 *
 * Scripts loaded with sl_dofile/sl_dostring run as tasks; their errors
 * (and errors of tasks nobody awaits) go to the error callback.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <uv.h>
#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_VERSION "0.1.0"

typedef struct sl_runtime sl_runtime;

/* Called with a failure report (message and traceback, one string). */
typedef void (*sl_error_fn)(sl_runtime *rt, const char *report, void *ud);

typedef struct sl_options {
  uv_loop_t *loop;          /* NULL: the runtime creates and owns a loop */
  int virtual_clock;        /* 1: time jumps to the next timer when idle */
  sl_error_fn on_error;     /* NULL: print to stderr */
  void *error_ud;
} sl_options;

/* Creates a runtime; opts may be NULL.  Returns NULL on failure. */
sl_runtime *sl_open(const sl_options *opts);

lua_State *sl_lua(sl_runtime *rt);
uv_loop_t *sl_loop(sl_runtime *rt);

/* Loads a chunk and starts it as a task (it runs at the next step).
 * Returns 0, or -1 if it does not compile (reported to on_error). */
int sl_dostring(sl_runtime *rt, const char *code, const char *chunkname);
int sl_dofile(sl_runtime *rt, const char *path);

/* Runs the tasks that are ready and polls I/O without blocking.
 * Returns 1 while tasks, timers or I/O are pending, 0 when idle. */
int sl_step(sl_runtime *rt);

/* Runs until nothing is left.  Returns the exit status: 0, or 1 after
 * an unhandled failure, or 2 after a deadlock (reported to on_error). */
int sl_run(sl_runtime *rt);

/* Number of failures reported so far (0 means all went well). */
int sl_failures(sl_runtime *rt);

/* The exit status so far, as sl_run returns it, for a host that only
 * steps and never calls sl_run: 0, or 1 after a failure. */
int sl_status(sl_runtime *rt);

/* Unfinished tasks: scripts and everything they spawned.  sl_step
 * returning 0 while this is not 0 means the rest wait on each other. */
int sl_tasks(sl_runtime *rt);

/* Starts the function below nargs arguments on sl_lua(rt)'s stack as a
 * task, as sl_dostring starts a chunk, and pops them.  This is how a host
 * calls into Lua: the function may block, so lua_call will not do. */
void sl_start(sl_runtime *rt, int nargs);

/* Cancels every task, closes every handle the runtime and its scripts
 * opened, frees the Lua state and (if owned) the loop.  Requests in
 * flight on the loop (file system, DNS, work) are waited for first: a
 * thread may still write to their memory, which belongs to Lua.  On a
 * host's loop this runs iterations of it (host callbacks may run then);
 * the host's own handles are left alone. */
void sl_close(sl_runtime *rt);

#ifdef __cplusplus
}
#endif

#endif
