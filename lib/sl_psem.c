/*
 * sl_psem.c - priority semaphore: a pure C state machine.
 *
 * A counting semaphore whose waiters are served by priority (lower
 * number first) and, within a priority, in arrival order.  Waiters sit
 * in a binary min-heap of (key, sequence) entries; each waiter keeps its
 * heap index in its task's wait.arg, so a timeout or cancellation takes
 * it out in place: every operation is O(log n).
 *
 * Aging (optional): a waiter's effective priority improves by 1 for
 * every `aging` seconds it has waited, so a stream of urgent requests
 * cannot starve the others for ever.  At time now a waiter that arrived
 * at time a with priority p ranks as p - (now - a) / aging; comparing
 * two waiters, now cancels out, so ranking by the fixed key
 * p * aging + a is the same order at every instant and the heap never
 * needs re-sorting.  Without aging the key is p.
 *
 * No barging: a newcomer is granted at once only if a permit is free and
 * nobody is queued, whatever its priority; since a release hands its
 * permit straight to the best waiter, "a permit is free" already implies
 * an empty queue.  The limit may change at run time as the semaphore's:
 * growing grants waiters at once, shrinking lets holders finish.
 */
#include "sl_prim.h"
#include "sl_ffi_psem.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct sl_psem_entry {
  double key;             /* rank: lower first */
  uint64_t seq;           /* arrival order: breaks ties (FIFO) */
  sl_task *task;
} sl_psem_entry;

struct sl_psem {
  sl_prim prim;           /* first: an sl_psem is an sl_prim */
  double limit;           /* permits */
  double held;            /* permits granted and not yet released */
  double aging;           /* seconds per priority step; 0: no aging */
  sl_psem_entry *heap;
  uint32_t len, cap;
  uint64_t seq;
};

/* ---- the heap ---- */

static int sl_psem_less(const sl_psem_entry *a, const sl_psem_entry *b) {
  if (a->key != b->key) return a->key < b->key;
  return a->seq < b->seq;
}

static void sl_psem_set(sl_psem *s, uint32_t i, sl_psem_entry e) {
  s->heap[i] = e;
  e.task->wait.arg = (intptr_t)i;
}

static void sl_psem_up(sl_psem *s, uint32_t i) {
  sl_psem_entry e = s->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!sl_psem_less(&e, &s->heap[p])) break;
    sl_psem_set(s, i, s->heap[p]);
    i = p;
  }
  sl_psem_set(s, i, e);
}

static void sl_psem_down(sl_psem *s, uint32_t i) {
  sl_psem_entry e = s->heap[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= s->len) break;
    if (c + 1 < s->len && sl_psem_less(&s->heap[c + 1], &s->heap[c])) c++;
    if (!sl_psem_less(&s->heap[c], &e)) break;
    sl_psem_set(s, i, s->heap[c]);
    i = c;
  }
  sl_psem_set(s, i, e);
}

/* Room for one more entry: 0, or -1 out of memory. */
static int sl_psem_reserve(sl_psem *s) {
  sl_psem_entry *heap;
  uint32_t cap;
  if (s->len < s->cap) return 0;
  cap = s->cap ? s->cap * 2 : 16;
  if (!(heap = realloc(s->heap, cap * sizeof *heap))) return -1;
  s->heap = heap;
  s->cap = cap;
  return 0;
}

static void sl_psem_push(sl_psem *s, sl_task *t, double key) {
  sl_psem_entry e;
  e.key = key;
  e.seq = s->seq++;
  e.task = t;
  s->len++;
  sl_psem_set(s, s->len - 1, e);
  sl_psem_up(s, s->len - 1);
}

/* Takes the entry at index i out of the heap. */
static void sl_psem_remove_at(sl_psem *s, uint32_t i) {
  s->len--;
  if (i == s->len) return;
  sl_psem_set(s, i, s->heap[s->len]);
  if (i > 0 && sl_psem_less(&s->heap[i], &s->heap[(i - 1) / 2])) sl_psem_up(s, i);
  else sl_psem_down(s, i);
}

/* ---- the semaphore ---- */

/* Hands free permits to the best waiters, in order. */
static void sl_psem_dispatch(sl_psem *s) {
  while (s->held < s->limit && s->len > 0) {
    sl_task *t = s->heap[0].task;
    if (sl_hold_add(&s->prim, t, 1)) return;   /* out of memory: leave it queued */
    sl_psem_remove_at(s, 0);
    s->held++;
    sl_prim_grant(&s->prim, t);
  }
}

static void sl_psem_give(sl_prim *p, double n) {
  sl_psem *s = (sl_psem *)p;
  s->held -= n;
  sl_psem_dispatch(s);
}

/* A waiter timed out or was cancelled: it leaves as if never queued. */
static int sl_psem_unwait(sl_task *t, int why) {
  sl_psem *s = t->wait.obj;
  sl_psem_remove_at(s, (uint32_t)t->wait.arg);
  sl_queue_remove(&t->wait.link);
  sl_prim_wait_lost(&s->prim, t, why);
  return 1;
}

sl_psem *sl_psem_new(double permits, double aging) {
  sl_psem *s = malloc(sizeof *s);
  if (!s) return NULL;
  sl_prim_init(&s->prim, "priority_semaphore");
  s->prim.give = sl_psem_give;
  s->limit = permits;
  s->held = 0;
  s->aging = aging > 0 ? aging : 0;
  s->heap = NULL;
  s->len = s->cap = 0;
  s->seq = 0;
  return s;
}

void sl_psem_free(sl_psem *s) {
  if (!s) return;
  sl_prim_destroy(&s->prim);
  free(s->heap);
  free(s);
}

sl_prim *sl_psem_prim(sl_psem *s) { return &s->prim; }

int sl_psem_try_acquire(sl_psem *s) {
  sl_task *t = sl_running_task();
  if (!t) return SL_R_NOTASK;
  if (s->held >= s->limit || s->len > 0) return SL_R_QUEUED;
  if (sl_hold_add(&s->prim, t, 1)) return SL_R_QUEUED;
  s->held++;
  sl_prim_count_grant(&s->prim);
  return SL_R_OK;
}

/* timeout < 0: none; 0: do not wait at all. */
int sl_psem_acquire(sl_psem *s, double priority, double timeout, int can_block) {
  sl_task *t = sl_running_task();
  int rc;
  if (!t) return SL_R_NOTASK;
  if ((rc = sl_psem_try_acquire(s)) == SL_R_OK) return SL_R_OK;
  if (timeout == 0) return SL_R_TIMEDOUT;
  rc = sl_prim_may_wait(&s->prim, t, can_block);
  if (rc != SL_R_QUEUED) return rc;
  if (sl_psem_reserve(s)) return SL_R_PSEM_NOMEM;
  sl_prim_park(&s->prim, t, s->prim.kind, timeout, sl_psem_unwait);
  sl_psem_push(s, t, s->aging > 0 ? priority * s->aging + t->wait.since : priority);
  return SL_R_QUEUED;
}

int sl_psem_release(sl_psem *s) {
  int rc = sl_prim_give_back(&s->prim, 1, 0);
  if (rc != SL_R_OK) return rc;
  s->held--;
  sl_psem_dispatch(s);
  return SL_R_OK;
}

/* The running task was cancelled after a permit had been handed to it,
 * before it could run: the permit goes on to the next waiter, and the
 * wait counts as cancelled rather than as an acquisition. */
int sl_psem_abandon(sl_psem *s) {
  int rc = sl_prim_give_back(&s->prim, 1, 1);
  if (rc != SL_R_OK) return rc;
  s->held--;
  sl_psem_dispatch(s);
  return SL_R_OK;
}

double sl_psem_available(const sl_psem *s) {
  return s->held < s->limit ? s->limit - s->held : 0;
}

double sl_psem_held(const sl_psem *s) { return s->held; }

double sl_psem_limit(const sl_psem *s) { return s->limit; }

double sl_psem_aging(const sl_psem *s) { return s->aging; }

void sl_psem_set_limit(sl_psem *s, double permits) {
  s->limit = permits;
  sl_psem_dispatch(s);
}
