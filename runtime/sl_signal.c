/*
 * sl_signal.c - Ctrl-C for the command line.
 *
 * A plain sigaction handler rather than uv_signal_t: the first Ctrl-C is
 * forwarded to the loop (uv_async_send is async-signal-safe), where it
 * cancels the tasks (their cleanups run) or, in the REPL, the running
 * line.  If the loop has not handled it when a second one arrives -- a
 * task spinning without yielding, or cleanups taking long -- the process
 * exits with status 130 from the handler itself, so Ctrl-C always works.
 * Embedding hosts do not get this: their signals stay theirs.
 */
#include "sl_runtime.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static sl_runtime *sl_sig_rt;
static volatile sig_atomic_t sl_sig_pending;

static void sl_sig_handler(int signo) {
  static const char msg[] = "\nsluice: interrupted\n";
  (void)signo;
  if (sl_sig_pending) {
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(130);
  }
  sl_sig_pending = 1;
  if (sl_sig_rt) uv_async_send(&sl_sig_rt->sigasync);
}

static void sl_sigasync_cb(uv_async_t *h) {
  sl_runtime *rt = h->data;
  if (!sl_sig_pending) return;
  if (rt->on_interrupt) {      /* REPL: every Ctrl-C is handled here */
    sl_sig_pending = 0;
    rt->on_interrupt(rt);
    return;
  }
  rt->interrupts++;
  rt->status = 130;
  sl_cancel_all(rt);
}

int sl_install_sigint(sl_runtime *rt) {
  struct sigaction sa;
  int rc;
  if (sl_sig_rt) return UV_EBUSY;   /* one runtime per process owns Ctrl-C */
  if ((rc = uv_async_init(rt->loop, &rt->sigasync, sl_sigasync_cb))) return rc;
  rt->sigasync.data = rt;
  uv_unref((uv_handle_t *)&rt->sigasync);
  sl_sig_rt = rt;
  sl_sig_pending = 0;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = sl_sig_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  rt->sigint_installed = 1;
  return 0;
}

void sl_remove_sigint(sl_runtime *rt) {
  if (!rt->sigint_installed) return;
  signal(SIGINT, SIG_DFL);
  sl_sig_rt = NULL;
  uv_close((uv_handle_t *)&rt->sigasync, NULL);
  rt->sigint_installed = 0;
}
