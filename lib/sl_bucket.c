/*
 * sl_bucket.c - token bucket: a pure C state machine on the scheduler's
 * clock and timer heap.
 *
 * A bucket holds up to `cap` tokens and gains `rate` tokens a second.
 * Nothing ticks: the state is an anchor, `tokens` at time `at`, and the
 * count at any later time is min(cap, tokens + (now - at) * rate),
 * computed when someone asks.  The anchor moves only when the bucket is
 * found full (the cap clips) or the rate changes; while the bucket stays
 * in deficit a grant of n only subtracts n from the anchor's tokens, so
 * the time at which k tokens are due is one division from a fixed origin,
 * at + (k - tokens) / rate.  At 10 a second from empty at 0 the grants
 * then fall at 0.1, 0.2, 0.3 exactly, not at 0.30000000000000004 as
 * adding 0.1 three times would give.
 *
 * Waiting: a take(n) that finds too few tokens, or anyone queued, parks
 * the running task at the tail of the FIFO queue; nobody barges, so a
 * large request at the head holds back the small ones behind it until
 * its tokens are there.  One sl_timer, embedded here and kept on the
 * scheduler's heap, is armed for the head's due time only: no polling,
 * and no timer at all while nobody waits (it never keeps a process
 * alive by itself).  A waiter is due when now >= at + (n - tokens) /
 * rate, the very expression its timer was armed with, so the timer's
 * firing grants it even where rounding would leave the refilled count a
 * hair below n.
 *
 * Same-instant rule: every call, and every timeout or cancellation of a
 * waiter, first serves the waiters whose tokens are due (lazy dispatch),
 * so what happens at one instant does not depend on which timer of that
 * instant the heap fires first.  In particular a take whose tokens are
 * due at the very instant of its timeout is granted.
 *
 * The hot path (try_take, or take with tokens there and nobody queued)
 * allocates nothing and makes no system call: the clock is sl_now, a
 * memory read under the virtual clock and uv_hrtime (the vDSO's
 * clock_gettime) otherwise.
 */
#include "sl_prim.h"
#include "sl_ffi_bucket.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A waiter's n (any positive double) lives in its task's wait.arg. */
typedef char sl_bucket_arg_fits[sizeof(intptr_t) >= sizeof(double) ? 1 : -1];

struct sl_bucket {
  sl_prim prim;           /* first: an sl_bucket is an sl_prim */
  sl_timer timer;         /* armed for the head waiter's due time */
  sl_sched *sched;        /* whose clock and heap; NULL until bound */
  double cap, rate;
  double tokens;          /* at time `at`; below 0 while in deficit */
  double at;
};

static double sl_bucket_need(const sl_task *t) {
  double n;
  memcpy(&n, &t->wait.arg, sizeof n);
  return n;
}

static intptr_t sl_bucket_arg(double n) {
  intptr_t v = 0;
  memcpy(&v, &n, sizeof n);
  return v;
}

/* When n tokens are (or were) there: the one formula timers use. */
static double sl_bucket_due(const sl_bucket *b, double n) {
  if (b->tokens >= n) return b->at;
  return b->at + (n - b->tokens) / b->rate;
}

/* Re-anchors at now if the bucket has filled up by then. */
static void sl_bucket_fill(sl_bucket *b, double now) {
  if (now > b->at && b->tokens + (now - b->at) * b->rate >= b->cap) {
    b->at = now;
    b->tokens = b->cap;
  }
}

/* The count at now, as a reader sees it.  Below 0 only by rounding (a
 * grant at its due time), so that is shown as 0. */
static double sl_bucket_level(const sl_bucket *b, double now) {
  double v = now > b->at ? b->tokens + (now - b->at) * b->rate : b->tokens;
  if (v > b->cap) v = b->cap;
  return v > 0 ? v : 0;
}

static void sl_bucket_spend(sl_bucket *b, double now, double n) {
  sl_bucket_fill(b, now);
  b->tokens -= n;
}

/* Grants the head waiters that are due at now, in order, then arms the
 * timer for the next head (or disarms it: nobody left). */
static void sl_bucket_dispatch(sl_bucket *b, double now) {
  sl_heap *h = &b->sched->timers;
  while (!sl_queue_empty(&b->prim.waiters)) {
    sl_task *t = sl_queue_data(sl_queue_head(&b->prim.waiters), sl_task, wait.link);
    double n = sl_bucket_need(t), due = sl_bucket_due(b, n);
    if (now < due) {
      /* re-arming would only renumber it: leave an unchanged timer be */
      if (!sl_timer_armed(&b->timer) || b->timer.deadline != due) sl_heap_push(h, &b->timer, due);
      return;
    }
    sl_bucket_spend(b, now, n);
    sl_prim_grant(&b->prim, t);
  }
  sl_heap_remove(h, &b->timer);
}

static void sl_bucket_timer_cb(sl_timer *tm) {
  sl_bucket *b = (sl_bucket *)((char *)tm - offsetof(sl_bucket, timer));
  sl_bucket_dispatch(b, sl_now(b->sched));
}

/* A waiter timed out or was cancelled.  Waiters due now are served
 * first, and that may be this one: then it was granted (woken with OK,
 * so the scheduler's wake with why finds it no longer waiting and
 * changes nothing).  Otherwise it leaves as if never queued; if it was
 * the head, the next one may be due at once, or gets the timer. */
static int sl_bucket_unwait(sl_task *t, int why) {
  sl_bucket *b = t->wait.obj;
  double now = sl_now(b->sched);
  sl_bucket_dispatch(b, now);
  if (t->status != SL_WAITING) return 1;
  sl_queue_remove(&t->wait.link);
  sl_prim_wait_lost(&b->prim, t, why);
  sl_bucket_dispatch(b, now);
  return 1;
}

sl_bucket *sl_bucket_new(double capacity, double rate, double initial) {
  sl_bucket *b;
  sl_task *t = sl_running_task();
  if (!(capacity > 0 && capacity < HUGE_VAL && rate > 0 && rate < HUGE_VAL)) return NULL;
  if (!(initial >= 0 && initial <= capacity)) return NULL;
  if (!(b = malloc(sizeof *b))) return NULL;
  sl_prim_init(&b->prim, "token_bucket");
  b->timer.idx = 0;
  b->timer.cb = sl_bucket_timer_cb;
  b->sched = t ? t->sched : NULL;
  b->cap = capacity;
  b->rate = rate;
  b->tokens = initial;
  b->at = b->sched ? sl_now(b->sched) : 0;
  return b;
}

/* Collected only when no task waits on it (a waiter's stack refers to
 * it), except at the end of the Lua state, after the scheduler closed
 * and dropped its heap: the timer is then left alone. */
void sl_bucket_free(sl_bucket *b) {
  if (!b) return;
  if (sl_timer_armed(&b->timer) && !b->sched->closing) sl_heap_remove(&b->sched->timers, &b->timer);
  sl_prim_destroy(&b->prim);
  free(b);
}

sl_prim *sl_bucket_prim(sl_bucket *b) { return &b->prim; }

/* The bucket's scheduler as seen from the running task t, binding a
 * bucket made outside any task to t's; NULL if t runs under another
 * (its clock and heap are not the bucket's). */
static sl_sched *sl_bucket_sched(sl_bucket *b, const sl_task *t) {
  if (b->sched == t->sched) return b->sched;
  if (b->sched) return NULL;
  b->sched = t->sched;
  b->at = sl_now(b->sched);
  return b->sched;
}

int sl_bucket_try_take(sl_bucket *b, double n) {
  sl_task *t = sl_running_task();
  double now;
  if (!t) return SL_R_NOTASK;
  if (!sl_bucket_sched(b, t)) return SL_BUCKET_R_FOREIGN;
  if (n > b->cap) return SL_R_TOOMUCH;
  now = sl_now(b->sched);
  if (!sl_queue_empty(&b->prim.waiters)) {
    sl_bucket_dispatch(b, now);
    if (!sl_queue_empty(&b->prim.waiters)) return SL_R_QUEUED;   /* no barging */
  }
  if (now < sl_bucket_due(b, n)) return SL_R_QUEUED;
  sl_bucket_spend(b, now, n);
  sl_prim_count_grant(&b->prim);
  return SL_R_OK;
}

/* timeout < 0: none; 0: do not wait at all.  A wait cannot deadlock:
 * the tokens come with time, so nobody has to release anything. */
int sl_bucket_take(sl_bucket *b, double n, double timeout, int can_block) {
  sl_task *t = sl_running_task();
  int rc;
  if (!t) return SL_R_NOTASK;
  /* a blocking call is where a cancellation takes effect, tokens or not */
  if (sl_task_cancel_due(t)) return SL_R_CANCELLED;
  if ((rc = sl_bucket_try_take(b, n)) != SL_R_QUEUED) return rc;
  if (timeout == 0) return SL_R_TIMEDOUT;
  if (!can_block) return SL_R_NOBLOCK;
  t->wait.arg = sl_bucket_arg(n);
  sl_prim_park(&b->prim, t, b->prim.kind, timeout, sl_bucket_unwait);
  if (sl_queue_head(&b->prim.waiters) == &t->wait.link)
    sl_bucket_dispatch(b, sl_now(b->sched));   /* the new head: arm the timer */
  return SL_R_QUEUED;
}

/* The running task was cancelled after n had been handed to it, before
 * it could run: the tokens go back (up to the capacity) and on to the
 * next waiters, and the wait counts as cancelled, not as a grant. */
int sl_bucket_abandon(sl_bucket *b, double n) {
  double now;
  if (!sl_running_task()) return SL_R_NOTASK;
  now = sl_now(b->sched);
  sl_bucket_fill(b, now);
  b->tokens += n;
  sl_bucket_fill(b, now);
  b->prim.stats.acquired--;
  b->prim.stats.waited--;
  b->prim.stats.cancelled++;
  sl_bucket_dispatch(b, now);
  return SL_R_OK;
}

double sl_bucket_tokens(sl_bucket *b) {
  sl_task *t = sl_running_task();
  double now;
  if (!t) return sl_bucket_level(b, b->at);
  if (!sl_bucket_sched(b, t)) return -1;
  now = sl_now(b->sched);
  if (!sl_queue_empty(&b->prim.waiters)) sl_bucket_dispatch(b, now);
  return sl_bucket_level(b, now);
}

double sl_bucket_capacity(const sl_bucket *b) { return b->cap; }

double sl_bucket_rate(const sl_bucket *b) { return b->rate; }

/* The tokens gained so far count at the old rate; from now on at the new
 * one, and the head waiter's timer is re-armed for its new due time. */
int sl_bucket_set_rate(sl_bucket *b, double rate) {
  sl_task *t = sl_running_task();
  double now;
  if (!t) return SL_R_NOTASK;
  if (!sl_bucket_sched(b, t)) return SL_BUCKET_R_FOREIGN;
  if (!(rate > 0 && rate < HUGE_VAL)) return SL_R_TOOMUCH;
  now = sl_now(b->sched);
  if (!sl_queue_empty(&b->prim.waiters)) sl_bucket_dispatch(b, now);
  if (now > b->at) {
    double v = b->tokens + (now - b->at) * b->rate;
    b->tokens = v < b->cap ? v : b->cap;
    b->at = now;
  }
  b->rate = rate;
  if (!sl_queue_empty(&b->prim.waiters)) sl_bucket_dispatch(b, now);
  return SL_R_OK;
}
