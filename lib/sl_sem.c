/*
 * sl_sem.c - counting semaphore and mutex: a pure C state machine.
 *
 * Design (measured, see bench/): the Lua face calls these functions
 * through LuaJIT's FFI, so an uncontended acquire or release is a
 * JIT-compiled call with no Lua C API crossing and no allocation.  When
 * a permit is not free, sl_sem_acquire parks the running task in the
 * FIFO queue itself and answers SL_R_QUEUED; the Lua face then yields to
 * the scheduler and reads the wake code (granted, timeout, cancelled).
 *
 * Fairness: a release hands its permit straight to the head waiter
 * (held stays the same), and a newcomer is never granted while anyone
 * is queued, so nobody barges.  The limit may change at run time:
 * growing grants waiters at once, shrinking lets holders above the new
 * limit finish and grants nothing until held < limit again.
 */
#include "sl_prim.h"

#include <stdlib.h>

struct sl_sem {
  sl_prim prim;           /* first: an sl_sem is an sl_prim */
  double limit;           /* permits */
  double held;            /* permits granted and not yet released */
};

/* Hands free permits to the head waiters, in order. */
static void sl_sem_dispatch(sl_sem *s) {
  while (s->held < s->limit && !sl_queue_empty(&s->prim.waiters)) {
    sl_task *t = sl_queue_data(sl_queue_head(&s->prim.waiters), sl_task, wait.link);
    if (sl_hold_add(&s->prim, t, 1)) return;   /* out of memory: leave it queued */
    s->held++;
    sl_prim_grant(&s->prim, t);
  }
}

static void sl_sem_give(sl_prim *p, double n) {
  sl_sem *s = (sl_sem *)p;
  s->held -= n;
  sl_sem_dispatch(s);
}

/* A waiter timed out or was cancelled: it leaves as if never queued.
 * Nothing else can be granted then: with unit requests, a free permit
 * and a waiter never coexist, so the queue's new head stays queued. */
static int sl_sem_unwait(sl_task *t, int why) {
  sl_sem *s = t->wait.obj;
  sl_queue_remove(&t->wait.link);
  sl_prim_wait_lost(&s->prim, t, why);
  return 1;
}

sl_sem *sl_sem_new(double permits, int is_mutex) {
  sl_sem *s = malloc(sizeof *s);
  if (!s) return NULL;
  sl_prim_init(&s->prim, is_mutex ? "mutex" : "semaphore");
  s->prim.give = sl_sem_give;
  s->limit = permits;
  s->held = 0;
  return s;
}

void sl_sem_free(sl_sem *s) {
  if (!s) return;
  sl_prim_destroy(&s->prim);
  free(s);
}

sl_prim *sl_sem_prim(sl_sem *s) { return &s->prim; }

int sl_sem_is_mutex(const sl_sem *s) { return s->prim.kind[0] == 'm'; }

int sl_sem_try_acquire(sl_sem *s) {
  sl_task *t = sl_running_task();
  if (!t) return SL_R_NOTASK;
  if (s->held >= s->limit || !sl_queue_empty(&s->prim.waiters)) return SL_R_QUEUED;
  if (sl_hold_add(&s->prim, t, 1)) return SL_R_QUEUED;
  s->held++;
  sl_prim_count_grant(&s->prim);
  return SL_R_OK;
}

/* timeout < 0: none; 0: do not wait at all.  A wait that could never be
 * granted (sl_would_deadlock) is refused with SL_R_DEADLOCK even when it
 * has a timeout: it could only time out, and re-acquiring what the task
 * holds is a bug worth reporting at once rather than after the timeout. */
int sl_sem_acquire(sl_sem *s, double timeout, int can_block) {
  sl_task *t = sl_running_task();
  int rc;
  if (!t) return SL_R_NOTASK;
  /* a blocking call is where a cancellation takes effect, free permit or not */
  if (sl_task_cancel_due(t)) return SL_R_CANCELLED;
  if ((rc = sl_sem_try_acquire(s)) == SL_R_OK) return SL_R_OK;
  if (timeout == 0) return SL_R_TIMEDOUT;
  rc = sl_prim_may_wait(&s->prim, t, can_block);
  if (rc != SL_R_QUEUED) return rc;
  return sl_prim_park(&s->prim, t, s->prim.kind, timeout, sl_sem_unwait);
}

int sl_sem_release(sl_sem *s) {
  int rc = sl_prim_give_back(&s->prim, 1, 0);
  if (rc != SL_R_OK) return rc;
  s->held--;
  sl_sem_dispatch(s);
  return SL_R_OK;
}

/* The running task was cancelled after a permit had been handed to it,
 * before it could run: the permit goes on to the next waiter, and the
 * wait counts as cancelled rather than as an acquisition. */
int sl_sem_abandon(sl_sem *s) {
  int rc = sl_prim_give_back(&s->prim, 1, 1);
  if (rc != SL_R_OK) return rc;
  s->held--;
  sl_sem_dispatch(s);
  return SL_R_OK;
}

double sl_sem_held(const sl_sem *s) { return s->held; }

double sl_sem_available(const sl_sem *s) {
  return s->held < s->limit ? s->limit - s->held : 0;
}

double sl_sem_limit(const sl_sem *s) { return s->limit; }

void sl_sem_set_limit(sl_sem *s, double permits) {
  s->limit = permits;
  sl_sem_dispatch(s);
}
