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
#include <stdint.h>
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

/* Bucket 0 counts waits under 1 us (zero waits included), bucket i waits
 * of [2^(i-1), 2^i) us, the last bucket everything longer.  frexp gives
 * the exponent exactly, where log2 could round a power of two up. */
static void sl_prim_record_wait(sl_prim *p, sl_task *t) {
  /* the tick's clock, as at the park: one clock read per tick, not per grant */
  sl_sched *S = t->sched;
  double w = (S->virtual_clock ? S->vnow : S->pass_now) - t->wait.since;
  int b = 0;
  if (w < 0) w = 0;
  p->stats.wait_total += w;
  if (w > p->stats.wait_max) p->stats.wait_max = w;
  if (w * 1e6 >= 1) {
    frexp(w * 1e6, &b);
    if (b >= SL_HIST_BUCKETS) b = SL_HIST_BUCKETS - 1;
  }
  p->stats.hist[b]++;
}

int sl_prim_park(sl_prim *p, sl_task *t, const char *what, double timeout, sl_unwait_cb unwait) {
  sl_queue_insert_tail(&p->waiters, &t->wait.link);
  p->nwaiting++;
  sl_task_park(t, what, p, unwait);
  t->wait_kind = SL_WAIT_PRIM;
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

int sl_prim_give_back(sl_prim *p, double n, int abandoned) {
  sl_task *t = sl_running_task();
  if (!t) return SL_R_NOTASK;
  if (sl_hold_sub(p, t, n)) return SL_R_NOTHELD;
  if (abandoned) {
    p->stats.acquired--;
    p->stats.waited--;
    p->stats.cancelled++;
  }
  return SL_R_OK;
}

int sl_prim_may_wait(sl_prim *p, sl_task *t, int can_block) {
  if (sl_task_cancel_due(t)) return SL_R_CANCELLED;
  if (!can_block) return SL_R_NOBLOCK;
  if (sl_would_deadlock(t, p)) return SL_R_DEADLOCK;
  return SL_R_QUEUED;
}

/* ---- deadlock detection ----
 * t would wait forever on p when no task that could release p can move.
 * A task x cannot move if it is t itself (about to block) or if it
 * waits, with no timeout, on something only such tasks could finish: a
 * task it awaits, the live children of a scope, the holders of a
 * primitive.  Any other task (ready, running, sleeping, waiting with a
 * timeout, on I/O or on a primitive nobody holds) may still act, so the
 * answer is "no".  Every wait needs all of its tasks to move, so the
 * question is plain reachability: does the walk from p's holders reach
 * a task that can move?  Each task is visited once (cycles are where
 * deadlocks live); waiting tasks seen first are kept on an explicit
 * stack, so a long chain of awaits cannot overflow the C stack. */

#define SL_WALK_INLINE 64

typedef struct sl_walk {
  sl_task *t;                 /* the task about to block */
  sl_task **set;              /* open addressing, size a power of two */
  sl_task **stack;
  uint32_t nset, setcap, top, cap;
  int oom;
  sl_task *set0[2 * SL_WALK_INLINE];
  sl_task *stack0[SL_WALK_INLINE];
} sl_walk;

/* Can x move by itself (or through a timer, I/O, a callback)? */
static int sl_walk_free(const sl_walk *w, const sl_task *x) {
  return x != w->t && (x->status != SL_WAITING || sl_timer_armed(&x->timer) || !x->wait.obj ||
                       (x->wait_kind != SL_WAIT_TASK && x->wait_kind != SL_WAIT_SCOPE &&
                        x->wait_kind != SL_WAIT_PRIM));
}

static uint32_t sl_walk_slot(sl_task *const *set, uint32_t cap, const sl_task *x) {
  uint32_t i = (uint32_t)(((uintptr_t)x >> 4) * 2654435761u) & (cap - 1);
  while (set[i] && set[i] != x) i = (i + 1) & (cap - 1);
  return i;
}

static int sl_walk_grow_set(sl_walk *w) {
  uint32_t cap = w->setcap * 2, i;
  sl_task **set = calloc(cap, sizeof *set);
  if (!set) return w->oom = 1, -1;
  for (i = 0; i < w->setcap; i++)
    if (w->set[i]) set[sl_walk_slot(set, cap, w->set[i])] = w->set[i];
  if (w->set != w->set0) free(w->set);
  w->set = set;
  w->setcap = cap;
  return 0;
}

/* Queues x to be expanded, unless seen already. */
static int sl_walk_push(sl_walk *w, sl_task *x) {
  uint32_t i;
  if (x == w->t) return 0;
  /* cleared on first use: most walks end at the first holder, free */
  if (w->nset == 0 && w->set == w->set0) memset(w->set0, 0, sizeof w->set0);
  if (2 * (w->nset + 1) > w->setcap && sl_walk_grow_set(w)) return -1;
  i = sl_walk_slot(w->set, w->setcap, x);
  if (w->set[i]) return 0;
  w->set[i] = x;
  w->nset++;
  if (w->top == w->cap) {
    sl_task **st = malloc(2 * w->cap * sizeof *st);
    if (!st) return w->oom = 1, -1;
    memcpy(st, w->stack, w->top * sizeof *st);
    if (w->stack != w->stack0) free(w->stack);
    w->stack = st;
    w->cap *= 2;
  }
  w->stack[w->top++] = x;
  return 0;
}

/* Every holder of p must be stuck: returns 0 at the first that can move
 * (looking at all of them before going deeper finds the usual free one
 * at once), else queues them and returns 1. */
static int sl_walk_holders(sl_walk *w, const sl_prim *p) {
  const sl_queue *q;
  if (sl_queue_empty(&p->holders)) return 0;
  sl_queue_foreach(q, &p->holders)
    if (sl_walk_free(w, sl_queue_data(q, sl_hold, in_prim)->task)) return 0;
  sl_queue_foreach(q, &p->holders)
    if (sl_walk_push(w, sl_queue_data(q, sl_hold, in_prim)->task)) return 0;
  return 1;
}

/* The same for the live children of a scope. */
static int sl_walk_children(sl_walk *w, const sl_scope *s) {
  const sl_queue *q;
  if (sl_queue_empty(&s->children)) return 0;
  sl_queue_foreach(q, &s->children)
    if (sl_walk_free(w, sl_queue_data(q, sl_task, member))) return 0;
  sl_queue_foreach(q, &s->children)
    if (sl_walk_push(w, sl_queue_data(q, sl_task, member))) return 0;
  return 1;
}

/* Queues what the stuck task x waits for; 0 if that may move. */
static int sl_walk_expand(sl_walk *w, sl_task *x) {
  sl_task *target;
  switch (x->wait_kind) {
  case SL_WAIT_TASK:
    target = x->wait.obj;
    return !sl_walk_free(w, target) && !sl_walk_push(w, target);
  case SL_WAIT_SCOPE: return sl_walk_children(w, x->wait.obj);
  case SL_WAIT_PRIM: return sl_walk_holders(w, x->wait.obj);
  default: return 0;
  }
}

int sl_would_deadlock(sl_task *t, sl_prim *p) {
  sl_walk w;
  int stuck;
  w.t = t;
  w.set = w.set0;
  w.stack = w.stack0;
  w.nset = w.top = 0;
  w.setcap = 2 * SL_WALK_INLINE;
  w.cap = SL_WALK_INLINE;
  w.oom = 0;
  stuck = sl_walk_holders(&w, p);
  while (stuck && w.top > 0) stuck = sl_walk_expand(&w, w.stack[--w.top]);
  if (w.set != w.set0) free(w.set);
  if (w.stack != w.stack0) free(w.stack);
  return stuck && !w.oom;   /* out of memory: not sure, so no */
}

/* ---- FFI helpers ---- */

int sl_ffi_cancel_pending(void) {
  sl_task *t = sl_running_task();
  return t && sl_task_cancel_due(t);
}

int sl_ffi_in_task(void) { return sl_running_task() != NULL; }

void sl_prim_stats(const sl_prim *p, sl_stats *out) { *out = p->stats; }

int sl_prim_waiting(const sl_prim *p) { return p->nwaiting; }

double sl_prim_held_by_me(const sl_prim *p) {
  sl_task *t = sl_running_task();
  sl_hold *h = t ? sl_hold_find(p, t) : NULL;
  return h ? h->count : 0;
}
