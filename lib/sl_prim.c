/*
 * sl_prim.c - holder records, wait statistics and deadlock detection
 * shared by the blocking primitives.
 *
 * Holder records come from a free list, so acquiring and releasing in a
 * steady state allocates nothing.  A task's records are few (what it
 * holds at once), so finding one walks a short list.
 */
#include "sl_prim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static __thread sl_hold *sl_hold_free;   /* free list, linked by .task */

void sl_prim_init(sl_prim *p, const char *kind) {
  sl_queue_init(&p->waiters);
  sl_queue_init(&p->holders);
  p->kind = kind;
  p->give = NULL;
  p->nwaiting = 0;
  memset(&p->stats, 0, sizeof p->stats);
}

static void sl_hold_drop(sl_hold *h) {
  sl_queue_remove(&h->in_prim);
  sl_queue_remove(&h->in_task);
  h->task = (sl_task *)sl_hold_free;
  sl_hold_free = h;
}

void sl_prim_destroy(sl_prim *p) {
  while (!sl_queue_empty(&p->holders))
    sl_hold_drop(sl_queue_data(sl_queue_head(&p->holders), sl_hold, in_prim));
}

sl_hold *sl_hold_find(const sl_prim *p, const sl_task *t) {
  sl_queue *q;
  sl_queue_foreach(q, &t->held) {
    sl_hold *h = sl_queue_data(q, sl_hold, in_task);
    if (h->prim == p) return h;
  }
  return NULL;
}

int sl_hold_add(sl_prim *p, sl_task *t, double n) {
  sl_hold *h = sl_hold_find(p, t);
  if (!h) {
    if (sl_hold_free) {
      h = sl_hold_free;
      sl_hold_free = (sl_hold *)h->task;
    } else if (!(h = malloc(sizeof *h))) {
      return -1;
    }
    h->prim = p;
    h->task = t;
    h->count = 0;
    sl_queue_insert_tail(&p->holders, &h->in_prim);
    sl_queue_insert_tail(&t->held, &h->in_task);
  }
  h->count += n;
  return 0;
}

int sl_hold_sub(sl_prim *p, sl_task *t, double n) {
  sl_hold *h = sl_hold_find(p, t);
  if (!h || h->count < n) return SL_R_NOTHELD;
  h->count -= n;
  if (h->count == 0) sl_hold_drop(h);
  return 0;
}

int sl_hold_release_all(sl_task *t) {
  int n = 0;
  while (!sl_queue_empty(&t->held)) {
    sl_hold *h = sl_queue_data(sl_queue_head(&t->held), sl_hold, in_task);
    sl_prim *p = h->prim;
    double count = h->count;
    sl_hold_drop(h);
    if (p->give) p->give(p, count);
    n++;
  }
  return n;
}

/* ---- waiting ---- */

static void sl_prim_record_wait(sl_prim *p, sl_task *t) {
  double w = sl_now(t->sched) - t->wait.since;
  int b = 0;
  if (w < 0) w = 0;
  p->stats.wait_total += w;
  if (w > p->stats.wait_max) p->stats.wait_max = w;
  if (w > 0) {
    b = (int)ceil(log2(w * 1e6 + 1));
    if (b >= SL_HIST_BUCKETS) b = SL_HIST_BUCKETS - 1;
  }
  p->stats.hist[b]++;
}

int sl_prim_park(sl_prim *p, sl_task *t, const char *what, double timeout, sl_unwait_cb unwait) {
  sl_queue_insert_tail(&p->waiters, &t->wait.link);
  p->nwaiting++;
  sl_task_park(t, what, p, unwait);
  t->wait.kind = SL_WAIT_PRIM;
  if (timeout >= 0) sl_task_arm(t, timeout);
  return SL_R_QUEUED;
}

void sl_prim_grant(sl_prim *p, sl_task *t) {
  sl_queue_remove(&t->wait.link);
  p->nwaiting--;
  p->stats.acquired++;
  p->stats.waited++;
  sl_prim_record_wait(p, t);
  sl_task_wake(t, SL_WAKE_OK);
}

void sl_prim_wait_lost(sl_prim *p, sl_task *t, int why) {
  p->nwaiting--;
  if (why == SL_WAKE_TIMEOUT) p->stats.timeouts++;
  else p->stats.cancelled++;
  sl_prim_record_wait(p, t);
}

int sl_prim_may_wait(sl_prim *p, sl_task *t, int can_block) {
  if (t->cancelled && !t->shield) return SL_R_CANCELLED;
  if (!can_block) return SL_R_NOBLOCK;
  if (sl_would_deadlock(t, p)) return SL_R_DEADLOCK;
  return SL_R_QUEUED;
}

/* ---- deadlock detection ----
 * A task x is "stuck on t" if x is t, or x waits without a timeout on
 * something that only tasks stuck on t could finish: another task it
 * awaits, a scope whose live children are all stuck, a primitive whose
 * holders are all stuck.  Anything else (a timer, I/O, a primitive with
 * a holder that is free to run) may still wake it.  The walk is bounded
 * and treats a task seen twice on one path as stuck (a cycle). */

#define SL_DEADLOCK_DEPTH 32

static int sl_stuck(sl_task *x, sl_task *t, int depth);

static int sl_prim_stuck(sl_prim *p, sl_task *t, int depth) {
  sl_queue *q;
  if (sl_queue_empty(&p->holders)) return 0;
  sl_queue_foreach(q, &p->holders) {
    if (!sl_stuck(sl_queue_data(q, sl_hold, in_prim)->task, t, depth + 1)) return 0;
  }
  return 1;
}

static int sl_scope_stuck(sl_scope *s, sl_task *t, int depth) {
  sl_queue *q;
  sl_queue_foreach(q, &s->children) {
    if (!sl_stuck(sl_queue_data(q, sl_task, member), t, depth + 1)) return 0;
  }
  return 1;
}

static int sl_stuck(sl_task *x, sl_task *t, int depth) {
  if (x == t || depth > SL_DEADLOCK_DEPTH) return 1;
  if (x->status != SL_WAITING || sl_timer_armed(&x->timer) || !x->wait.obj) return 0;
  switch (x->wait.kind) {
  case SL_WAIT_TASK: return sl_stuck((sl_task *)x->wait.obj, t, depth + 1);
  case SL_WAIT_SCOPE: return sl_scope_stuck((sl_scope *)x->wait.obj, t, depth);
  case SL_WAIT_PRIM: return sl_prim_stuck((sl_prim *)x->wait.obj, t, depth);
  default: return 0;
  }
}

int sl_would_deadlock(sl_task *t, sl_prim *p) {
  return sl_prim_stuck(p, t, 0);
}

/* ---- FFI helpers ---- */

int sl_ffi_cancel_pending(void) {
  sl_task *t = sl_running_task();
  return t && t->cancelled && !t->shield;
}

int sl_ffi_in_task(void) { return sl_running_task() != NULL; }

void sl_prim_stats(const sl_prim *p, sl_stats *out) { *out = p->stats; }

int sl_prim_waiting(const sl_prim *p) { return p->nwaiting; }

double sl_prim_held_by_me(const sl_prim *p) {
  sl_task *t = sl_running_task();
  sl_hold *h = t ? sl_hold_find(p, t) : NULL;
  return h ? h->count : 0;
}
