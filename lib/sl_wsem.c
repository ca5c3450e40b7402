/*
 * sl_wsem.c - weighted semaphore: a pure C state machine, as Go's
 * golang.org/x/sync/semaphore.
 *
 * A task asks for a weight w (a positive integer, at most the capacity)
 * and gets it all at once or waits for it.  Waiters are served strictly
 * in arrival order: a head waiter that does not fit yet blocks everyone
 * behind it, even smaller requests that would fit, so a large request
 * cannot be starved by a stream of small ones (no barging).  When weight
 * comes back, as many waiters from the head as now fit are granted.
 *
 * A waiter's weight is kept in its task's wait.arg while it is queued;
 * once granted it lives in the holder record (sl_hold.count), which is
 * what release checks against.
 *
 * The capacity may change at run time: growing grants waiters at once;
 * shrinking never blocks and takes nothing back (holders above the new
 * capacity finish) and nothing is granted until the weight held is low
 * enough again.  A queued request heavier than the new capacity could
 * never be granted and would block the queue for good, so it is woken
 * with SL_WSEM_WAKE_TOOBIG and its acquire raises, as it would have had
 * it come after the change.
 */
#include "sl_prim.h"
#include "sl_ffi_wsem.h"

#include <stdint.h>
#include <stdlib.h>

/* Weights are exact integers in a double and fit in wait.arg. */
#define SL_WSEM_MAX \
  ((double)INTPTR_MAX < 9007199254740992.0 ? (double)INTPTR_MAX : 9007199254740992.0)

struct sl_wsem {
  sl_prim prim;           /* first: an sl_wsem is an sl_prim */
  double cap;             /* capacity */
  double held;            /* weight granted and not yet released */
};

static double sl_wsem_weight_of(const sl_task *t) { return (double)t->wait.arg; }

/* Grants head waiters for as long as the head fits (FIFO, no barging). */
static void sl_wsem_dispatch(sl_wsem *s) {
  while (!sl_queue_empty(&s->prim.waiters)) {
    sl_task *t = sl_queue_data(sl_queue_head(&s->prim.waiters), sl_task, wait.link);
    double w = sl_wsem_weight_of(t);
    if (s->cap - s->held < w) return;
    if (sl_hold_add(&s->prim, t, w)) return;   /* out of memory: leave it queued */
    s->held += w;
    sl_prim_grant(&s->prim, t);
  }
}

static void sl_wsem_give(sl_prim *p, double n) {
  sl_wsem *s = (sl_wsem *)p;
  s->held -= n;
  sl_wsem_dispatch(s);
}

/* A waiter timed out or was cancelled: it leaves as if never queued.  If
 * it was the head, the ones behind it may fit now. */
static int sl_wsem_unwait(sl_task *t, int why) {
  sl_wsem *s = t->wait.obj;
  sl_queue_remove(&t->wait.link);
  sl_prim_wait_lost(&s->prim, t, why);
  sl_wsem_dispatch(s);
  return 1;
}

double sl_wsem_max(void) { return SL_WSEM_MAX; }

sl_wsem *sl_wsem_new(double capacity) {
  sl_wsem *s;
  if (!(capacity >= 1 && capacity <= SL_WSEM_MAX)) return NULL;
  if (!(s = malloc(sizeof *s))) return NULL;
  sl_prim_init(&s->prim, "weighted_semaphore");
  s->prim.give = sl_wsem_give;
  s->cap = capacity;
  s->held = 0;
  return s;
}

void sl_wsem_free(sl_wsem *s) {
  if (!s) return;
  sl_prim_destroy(&s->prim);
  free(s);
}

sl_prim *sl_wsem_prim(sl_wsem *s) { return &s->prim; }

int sl_wsem_try_acquire(sl_wsem *s, double w) {
  sl_task *t = sl_running_task();
  if (!t) return SL_R_NOTASK;
  if (w > s->cap) return SL_R_TOOMUCH;
  if (s->cap - s->held < w || !sl_queue_empty(&s->prim.waiters)) return SL_R_QUEUED;
  if (sl_hold_add(&s->prim, t, w)) return SL_R_QUEUED;
  s->held += w;
  sl_prim_count_grant(&s->prim);
  return SL_R_OK;
}

/* timeout < 0: none; 0: do not wait at all.  A request that could only
 * be granted out of the task's own holding is a deadlock, as is one
 * whose holders all wait (directly or not) on this task. */
int sl_wsem_acquire(sl_wsem *s, double w, double timeout, int can_block) {
  sl_task *t = sl_running_task();
  sl_hold *mine;
  int rc;
  if (!t) return SL_R_NOTASK;
  if ((rc = sl_wsem_try_acquire(s, w)) != SL_R_QUEUED) return rc;
  if (timeout == 0) return SL_R_TIMEDOUT;
  rc = sl_prim_may_wait(&s->prim, t, can_block);
  mine = sl_hold_find(&s->prim, t);
  if (rc == SL_R_QUEUED && mine && mine->count + w > s->cap) rc = SL_R_DEADLOCK;
  if (rc != SL_R_QUEUED) return rc;
  t->wait.arg = (intptr_t)w;
  return sl_prim_park(&s->prim, t, s->prim.kind, timeout, sl_wsem_unwait);
}

int sl_wsem_release(sl_wsem *s, double w) {
  int rc = sl_prim_give_back(&s->prim, w, 0);
  if (rc != SL_R_OK) return rc;
  s->held -= w;
  sl_wsem_dispatch(s);
  return SL_R_OK;
}

/* The running task was cancelled after w had been handed to it, before
 * it could run: the weight goes on to the next waiters, and the wait
 * counts as cancelled rather than as an acquisition. */
int sl_wsem_abandon(sl_wsem *s, double w) {
  int rc = sl_prim_give_back(&s->prim, w, 1);
  if (rc != SL_R_OK) return rc;
  s->held -= w;
  sl_wsem_dispatch(s);
  return SL_R_OK;
}

double sl_wsem_capacity(const sl_wsem *s) { return s->cap; }

double sl_wsem_held(const sl_wsem *s) { return s->held; }

double sl_wsem_available(const sl_wsem *s) {
  return s->held < s->cap ? s->cap - s->held : 0;
}

/* Wakes, with SL_WSEM_WAKE_TOOBIG, every waiter heavier than the
 * capacity: none of them could ever be granted. */
static void sl_wsem_evict_too_big(sl_wsem *s) {
  sl_queue *q = sl_queue_head(&s->prim.waiters);
  while (q != &s->prim.waiters) {
    sl_task *t = sl_queue_data(q, sl_task, wait.link);
    q = q->next;
    if (sl_wsem_weight_of(t) <= s->cap) continue;
    sl_queue_remove(&t->wait.link);
    s->prim.nwaiting--;
    sl_task_wake(t, SL_WSEM_WAKE_TOOBIG);
  }
}

/* Returns 0, or -1 (nothing changed) for a capacity out of range. */
int sl_wsem_set_capacity(sl_wsem *s, double capacity) {
  if (!(capacity >= 1 && capacity <= SL_WSEM_MAX)) return -1;
  s->cap = capacity;
  sl_wsem_evict_too_big(s);
  sl_wsem_dispatch(s);
  return 0;
}
