/*
 * sl_jobq.c - p-queue: a priority queue of jobs with a concurrency
 * limit, an interval cap, per-job timeouts, pause and clear.
 *
 * Built as sl_limit.c is.  A pending job is no task, only a record in a
 * slab shared by every queue of the thread, whose slot number indexes
 * the Lua face's arrays (lua/sluice/queue.lua) holding the function, its
 * arguments and the handle.  A place is a runner: a task that takes the
 * best pending job when it begins (sl_jobq_begin) and, when that job
 * returns, the next one at once (sl_jobq_continue).  Jobs are taken at
 * the moment their body starts, so they start in (priority, arrival)
 * order however runners interleave.  Pending jobs sit in a binary
 * min-heap of (priority, sequence) entries; each record keeps its heap
 * index, so cancelling a pending job is O(log n).
 *
 * The interval cap is a sliding window: a ring keeps the times of the
 * last interval_cap starts, and a start at time t is allowed iff the
 * oldest of them is at or before t - interval (compared as
 * oldest + interval <= t, the same sum the timer uses, so the start
 * happens exactly when the timer fires).  No start is counted until a
 * job's body begins, so jobs cancelled while pending cost nothing.
 * When the cap holds a start back, one runner (the keeper) parks with
 * its task timer set to the moment the window frees; the others give
 * their places back.  The keeper, woken, takes a job and the Lua face
 * spawns runners for the further starts the window allows.  A keeper is
 * parked only while a job is pending and the queue is not paused, so
 * an idle queue leaves no task behind.
 *
 * Runners live in the root scope: a queue is a long-lived service and
 * its jobs outlive the task that added them.  Each runner holds its
 * place as a holding of the queue's sl_prim, so the deadlock walk sees
 * it.  A job's timeout is an sl_timer in its record, armed when it
 * starts; when it fires, the runner is cancelled and the record marked,
 * and the Lua face turns the job's end into a timeout error.
 */
#include "sl_prim.h"
#include "sl_ffi_jobq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SL_QCHUNK_BITS 10
#define SL_QCHUNK (1u << SL_QCHUNK_BITS)

typedef struct sl_qrec {
  sl_timer timer;         /* first: the timeout callback gets the record */
  sl_jobq *q;
  sl_task *runner;        /* while running */
  double since;           /* when it was added */
  double timeout;         /* seconds it may run; 0: no limit */
  uint32_t idx;           /* heap index while pending; free-list link */
  uint32_t epoch;         /* q->epoch when it was added (throttled if
                             it changed by the time it starts) */
  uint8_t state;          /* SL_Q* */
  uint8_t awaited;        /* some task is parked awaiting it */
  uint8_t started;        /* a place was ready for it when added */
  uint8_t timed_out;
} sl_qrec;

typedef struct sl_qentry {
  double priority;        /* lower first */
  uint64_t seq;           /* arrival order: FIFO within a priority */
  uint32_t slot;
} sl_qentry;

struct sl_jobq {
  sl_prim prim;           /* waiters: tasks awaiting a job (wait.arg = slot);
                             holders: the runners, one place each */
  sl_sched *sched;        /* of the tasks that added jobs */
  double limit, max_size, timeout, interval;
  double active;          /* places taken: runners */
  double running;         /* jobs running */
  double throttled;
  sl_qentry *heap;
  uint32_t len, cap;
  uint64_t seq;
  uint32_t unbegun;       /* runners spawned whose body has not run yet */
  uint32_t epoch;         /* starts the interval cap has held back */
  sl_task *keeper;        /* the runner parked until the window frees */
  sl_queue idlers;        /* on_empty, on_idle, on_size_less_than */
  double *ring;           /* the last icap start times, oldest at rhead */
  uint32_t icap, rhead, rlen;
  uint8_t paused;
};

/* ---- the slab (as in sl_limit.c: chunks never move; slot 0 unused) ---- */

static __thread sl_qrec **sl_qchunks;
static __thread uint32_t sl_qnchunks, sl_qnext = 1, sl_qfree;
static __thread size_t sl_qbytes;

static sl_qrec *sl_qrec_at(uint32_t slot) {
  return &sl_qchunks[slot >> SL_QCHUNK_BITS][slot & (SL_QCHUNK - 1)];
}

static uint32_t sl_qrec_alloc(void) {
  uint32_t slot = sl_qfree, c = sl_qnext >> SL_QCHUNK_BITS;
  if (slot) {
    sl_qfree = sl_qrec_at(slot)->idx;
    return slot;
  }
  if (c >= sl_qnchunks) {
    uint32_t n = sl_qnchunks ? sl_qnchunks * 2 : 16;
    sl_qrec **p = realloc(sl_qchunks, n * sizeof *p);
    if (!p) return 0;
    memset(p + sl_qnchunks, 0, (n - sl_qnchunks) * sizeof *p);
    sl_qbytes += (n - sl_qnchunks) * sizeof *p;
    sl_qchunks = p;
    sl_qnchunks = n;
  }
  if (!sl_qchunks[c]) {
    if (!(sl_qchunks[c] = calloc(SL_QCHUNK, sizeof(sl_qrec)))) return 0;
    sl_qbytes += SL_QCHUNK * sizeof(sl_qrec);
  }
  return sl_qnext++;
}

static void sl_qrec_free(uint32_t slot) {
  sl_qrec *r = sl_qrec_at(slot);
  r->state = SL_QFREE;
  r->q = NULL;
  r->runner = NULL;
  r->idx = sl_qfree;   /* the free list */
  sl_qfree = slot;
}

/* ---- the heap of pending jobs ---- */

static int sl_qentry_less(const sl_qentry *a, const sl_qentry *b) {
  if (a->priority != b->priority) return a->priority < b->priority;
  return a->seq < b->seq;
}

static void sl_jobq_set(sl_jobq *q, uint32_t i, sl_qentry e) {
  q->heap[i] = e;
  sl_qrec_at(e.slot)->idx = i;
}

static void sl_jobq_up(sl_jobq *q, uint32_t i) {
  sl_qentry e = q->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!sl_qentry_less(&e, &q->heap[p])) break;
    sl_jobq_set(q, i, q->heap[p]);
    i = p;
  }
  sl_jobq_set(q, i, e);
}

static void sl_jobq_down(sl_jobq *q, uint32_t i) {
  sl_qentry e = q->heap[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= q->len) break;
    if (c + 1 < q->len && sl_qentry_less(&q->heap[c + 1], &q->heap[c])) c++;
    if (!sl_qentry_less(&q->heap[c], &e)) break;
    sl_jobq_set(q, i, q->heap[c]);
    i = c;
  }
  sl_jobq_set(q, i, e);
}

/* Takes the entry at index i out of the heap. */
static void sl_jobq_remove_at(sl_jobq *q, uint32_t i) {
  q->len--;
  if (i == q->len) return;
  sl_jobq_set(q, i, q->heap[q->len]);
  if (i > 0 && sl_qentry_less(&q->heap[i], &q->heap[(i - 1) / 2])) sl_jobq_up(q, i);
  else sl_jobq_down(q, i);
}

/* ---- the interval cap ---- */

/* Starts the cap allows at now: free entries, and those left the window. */
static double sl_jobq_free_starts(const sl_jobq *q, double now) {
  uint32_t lo = 0, hi = q->rlen;
  if (!q->icap) return HUGE_VAL;
  while (lo < hi) {   /* the ring is in time order: the first still inside */
    uint32_t mid = lo + (hi - lo) / 2;
    if (q->ring[(q->rhead + mid) % q->icap] + q->interval <= now) lo = mid + 1;
    else hi = mid;
  }
  return (double)(q->icap - q->rlen + lo);
}

static int sl_jobq_cap_allows(const sl_jobq *q, double now) {
  return !q->icap || q->rlen < q->icap || q->ring[q->rhead] + q->interval <= now;
}

static void sl_jobq_count_start(sl_jobq *q, double now) {
  if (!q->icap) return;
  if (q->rlen < q->icap) {
    q->ring[(q->rhead + q->rlen++) % q->icap] = now;
  } else {
    q->ring[q->rhead] = now;
    q->rhead = (q->rhead + 1) % q->icap;
  }
}

/* Jobs a runner about to begin will take in this same instant count as
 * running already, as a job that started at once (p-queue's add starts
 * it synchronously); so do those counts. */
static double sl_jobq_starting(const sl_jobq *q) {
  double n = q->len < q->unbegun ? q->len : q->unbegun;
  if (n > 0 && q->icap && !q->paused) {
    double f = sl_jobq_free_starts(q, sl_now(q->sched));
    if (f < n) n = f;
  }
  return q->paused ? 0 : n;
}

/* ---- waiting ---- */

/* Counts a wait that ended (started or dropped) in the histogram. */
static void sl_jobq_record_wait(sl_jobq *q, double since) {
  double w = sl_now(q->sched) - since;
  int b = 0;
  if (w < 0) w = 0;
  q->prim.stats.wait_total += w;
  if (w > q->prim.stats.wait_max) q->prim.stats.wait_max = w;
  if (w > 0) {
    b = (int)ceil(log2(w * 1e6 + 1));
    if (b >= SL_HIST_BUCKETS) b = SL_HIST_BUCKETS - 1;
  }
  q->prim.stats.hist[b]++;
}

/* Wakes the tasks awaiting the job in slot (it ended or was dropped). */
static void sl_jobq_wake_awaiters(sl_jobq *q, uint32_t slot) {
  sl_queue *l, *next;
  sl_qrec *r = sl_qrec_at(slot);
  if (!r->awaited) return;
  r->awaited = 0;
  for (l = q->prim.waiters.next; l != &q->prim.waiters; l = next) {
    sl_task *t = sl_queue_data(l, sl_task, wait.link);
    next = l->next;
    if ((uint32_t)t->wait.arg != slot) continue;
    sl_queue_remove(l);
    q->prim.nwaiting--;
    sl_task_wake(t, SL_WAKE_OK);
  }
}

/* Is what a sl_jobq_wait waiter waits for (its wait.arg) true now? */
static int sl_jobq_settled(const sl_jobq *q, intptr_t n) {
  /* idle: no runner left either (one about to begin would find nothing,
   * and end in this same instant), so nothing is left behind */
  if (n == 0) return q->len == 0 && q->running == 0 && q->active == 0;
  return (intptr_t)q->len < n;
}

/* The counts fell: wakes the waiters whose condition holds, and the
 * keeper if nothing is left for it to wait for. */
static void sl_jobq_notify(sl_jobq *q) {
  sl_queue *l, *next;
  for (l = q->idlers.next; l != &q->idlers; l = next) {
    sl_task *t = sl_queue_data(l, sl_task, wait.link);
    next = l->next;
    if (!sl_jobq_settled(q, t->wait.arg)) continue;
    sl_queue_remove(l);
    sl_task_wake(t, SL_WAKE_OK);
  }
  if (q->keeper && (q->len == 0 || q->paused)) {
    sl_task *k = q->keeper;
    q->keeper = NULL;
    sl_task_wake(k, SL_WAKE_OK);
  }
}

/* ---- the queue ---- */

/* A runner ended still holding its place (a bug the runtime reports). */
static void sl_jobq_give(sl_prim *p, double n) {
  sl_jobq *q = (sl_jobq *)p;
  q->active -= n;
  if (q->active == 0) sl_jobq_notify(q);
}

sl_jobq *sl_jobq_new(double concurrency, double interval, double interval_cap,
                     double timeout, double max_size, int paused) {
  sl_jobq *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  q->icap = interval_cap >= 1 ? (uint32_t)interval_cap : 0;
  if (q->icap && !(q->ring = calloc(q->icap, sizeof *q->ring))) {
    free(q);
    return NULL;
  }
  sl_prim_init(&q->prim, "queue");
  q->prim.give = sl_jobq_give;
  q->limit = concurrency;
  q->interval = interval;
  q->timeout = timeout;
  q->max_size = max_size;
  q->paused = (uint8_t)(paused != 0);
  sl_queue_init(&q->idlers);
  sl_qbytes += sizeof *q + q->icap * sizeof *q->ring;
  return q;
}

/* Runners and pending jobs keep their queue alive (the Lua face anchors
 * it), so only the end of the Lua state frees a queue that has some. */
void sl_jobq_free(sl_jobq *q) {
  if (!q) return;
  while (q->len) sl_qrec_free(q->heap[--q->len].slot);
  sl_prim_destroy(&q->prim);
  sl_qbytes -= sizeof *q + q->icap * sizeof *q->ring + q->cap * sizeof *q->heap;
  free(q->ring);
  free(q->heap);
  free(q);
}

sl_prim *sl_jobq_prim(sl_jobq *q) { return &q->prim; }

/* Reserves a place for one more runner if a pending job can start now
 * and has none coming; or, when the cap holds every start back and no
 * keeper waits, for a runner that will wait for the window. */
static int sl_jobq_reserve(sl_jobq *q) {
  double want;
  if (!q->len || q->paused || q->active >= q->limit) return 0;
  want = q->len;
  if (q->icap) {
    double f = sl_jobq_free_starts(q, sl_now(q->sched));
    if (f < want) want = f;
    if (want == 0 && !q->keeper) want = 1;
  }
  if (q->unbegun >= want) return 0;
  q->active++;
  q->unbegun++;
  return 1;
}

/* Room for one more heap entry: 0, or -1 out of memory. */
static int sl_jobq_grow(sl_jobq *q) {
  sl_qentry *heap;
  uint32_t cap;
  if (q->len < q->cap) return 0;
  cap = q->cap ? q->cap * 2 : 16;
  if (!(heap = realloc(q->heap, cap * sizeof *heap))) return -1;
  sl_qbytes += (cap - q->cap) * sizeof *heap;
  q->heap = heap;
  q->cap = cap;
  return 0;
}

int sl_jobq_submit(sl_jobq *q, double priority, double timeout) {
  sl_task *t = sl_running_task();
  sl_qrec *r;
  uint32_t slot;
  if (!t) return SL_R_NOTASK;
  if (q->len && sl_jobq_size(q) >= q->max_size) return SL_R_TOOMUCH;
  if (sl_jobq_grow(q) || !(slot = sl_qrec_alloc())) return 0;
  q->sched = t->sched;
  r = sl_qrec_at(slot);
  r->q = q;
  r->runner = NULL;
  r->since = sl_now(q->sched);
  r->timeout = timeout < 0 ? q->timeout : timeout;
  /* held back from the start if the cap is full now */
  r->epoch = sl_jobq_cap_allows(q, r->since) ? q->epoch : q->epoch - 1;
  r->state = SL_QPENDING;
  r->awaited = r->timed_out = 0;
  r->started = (uint8_t)(!q->paused && q->active < q->limit && q->unbegun >= q->len &&
                         sl_jobq_free_starts(q, r->since) > q->len);
  q->heap[q->len].priority = priority;
  q->heap[q->len].seq = q->seq++;
  q->heap[q->len].slot = slot;
  sl_jobq_up(q, q->len++);
  return (int)(slot << 1 | (uint32_t)sl_jobq_reserve(q));
}

int sl_jobq_next(sl_jobq *q) { return sl_jobq_reserve(q); }

void sl_jobq_adopt(sl_jobq *q, void *task) {
  sl_task *t = task;
  sl_scope *root = &t->sched->root;
  t->shield++;   /* sl_jobq_begin takes it back: the body must run */
  if (t->scope != root) {
    /* the spawner still runs in its scope: never the last one out */
    sl_queue_remove(&t->member);
    t->scope->nlive--;
    sl_scope_add(root, t);
    t->cancelled = root->cancelled;   /* not its spawner's business */
  }
  (void)sl_hold_add(&q->prim, t, 1);   /* out of memory: no deadlock check */
}

/* The running runner gives its place back. */
static void sl_jobq_leave(sl_jobq *q, sl_task *t) {
  q->active--;
  if (t) (void)sl_hold_sub(&q->prim, t, 1);
  if (q->active == 0) sl_jobq_notify(q);
}

/* Does t hold anything but its place in q? */
static int sl_holds_other(const sl_task *t, const sl_prim *p) {
  const sl_queue *l = sl_queue_head(&t->held);
  if (sl_queue_empty(&t->held)) return 0;
  return l->next != &t->held || sl_queue_data(l, sl_hold, in_task)->prim != p;
}

static void sl_jobq_timeout_cb(sl_timer *tm) {
  sl_qrec *r = (sl_qrec *)tm;
  r->timed_out = 1;
  r->q->prim.stats.timeouts++;
  sl_task_cancel(r->runner);
}

/* The keeper was cancelled, or the window freed (its timer). */
static int sl_jobq_keeper_unwait(sl_task *t, int why) {
  sl_jobq *q = t->wait.obj;
  (void)why;
  if (q->keeper == t) q->keeper = NULL;
  return 1;
}

/* The cap holds t's start back: t parks as the keeper until the window
 * frees (-1), or gives its place back if a keeper waits already (0). */
static int sl_jobq_throttle(sl_jobq *q, sl_task *t) {
  q->epoch++;
  if (q->keeper || sl_heap_push(&t->sched->timers, &t->timer, q->ring[q->rhead] + q->interval)) {
    sl_jobq_leave(q, t);
    return 0;
  }
  q->keeper = t;
  sl_task_park(t, "queue interval", q, sl_jobq_keeper_unwait);
  return -1;
}

/* Starts the best pending job in the running runner t. */
static uint32_t sl_jobq_start_best(sl_jobq *q, sl_task *t, double now) {
  uint32_t slot = q->heap[0].slot;
  sl_qrec *r = sl_qrec_at(slot);
  sl_jobq_remove_at(q, 0);
  sl_jobq_count_start(q, now);
  r->state = SL_QRUNNING;
  r->runner = t;
  q->running++;
  q->prim.stats.acquired++;
  if (r->epoch != q->epoch) q->throttled++;
  if (r->started) {
    q->prim.stats.hist[0]++;
  } else {
    q->prim.stats.waited++;
    sl_jobq_record_wait(q, r->since);
  }
  r->timer.cb = sl_jobq_timeout_cb;
  if (r->timeout > 0) (void)sl_heap_push(&t->sched->timers, &r->timer, now + r->timeout);
  sl_jobq_notify(q);
  return slot;
}

/* The running runner t, holding a place, takes the best pending job:
 * its slot; 0, and the place is given back; or -1, parked as keeper.
 * It goes on only as a task of its own would have started anyway: not
 * paused, within the limit, not cancelled, holding nothing a job left
 * behind (the task then ends and the runtime reports it). */
static int sl_jobq_take(sl_jobq *q, sl_task *t) {
  double now;
  if (!t || !q->len || q->paused || q->active > q->limit || t->cancelled ||
      sl_holds_other(t, &q->prim)) {
    sl_jobq_leave(q, t);
    return 0;
  }
  now = sl_now(q->sched);
  if (!sl_jobq_cap_allows(q, now)) return sl_jobq_throttle(q, t);
  return (int)sl_jobq_start_best(q, t, now);
}

int sl_jobq_begin(sl_jobq *q) {
  sl_task *t = sl_running_task();
  q->unbegun--;
  if (t) t->shield--;
  return sl_jobq_take(q, t);
}

int sl_jobq_retake(sl_jobq *q) { return sl_jobq_take(q, sl_running_task()); }

/* The job in slot ended: its timer stops, its awaiters wake, its record
 * is freed. */
static void sl_jobq_end(sl_jobq *q, uint32_t slot) {
  sl_qrec *r = sl_qrec_at(slot);
  sl_heap_remove(&q->sched->timers, &r->timer);
  q->running--;
  sl_jobq_wake_awaiters(q, slot);
  sl_qrec_free(slot);
  sl_jobq_notify(q);
}

int sl_jobq_continue(sl_jobq *q, uint32_t slot) {
  sl_jobq_end(q, slot);
  return sl_jobq_take(q, sl_running_task());
}

void sl_jobq_fail(sl_jobq *q, uint32_t slot) {
  sl_jobq_end(q, slot);
  sl_jobq_leave(q, sl_running_task());
}

double sl_jobq_timed_out(uint32_t slot) {
  sl_qrec *r = sl_jobq_state(slot) == SL_QRUNNING ? sl_qrec_at(slot) : NULL;
  return r && r->timed_out ? r->timeout : 0;
}

/* Ends a pending job as if it had never queued (but counted). */
static void sl_jobq_unqueue(sl_jobq *q, uint32_t slot) {
  sl_qrec *r = sl_qrec_at(slot);
  sl_jobq_remove_at(q, r->idx);
  q->prim.stats.cancelled++;
  sl_jobq_record_wait(q, r->since);
  sl_jobq_wake_awaiters(q, slot);
  sl_qrec_free(slot);
}

int sl_jobq_drop(uint32_t slot) {
  sl_jobq *q = sl_jobq_state(slot) == SL_QPENDING ? sl_qrec_at(slot)->q : NULL;
  if (!q) return 0;
  sl_jobq_unqueue(q, slot);
  sl_jobq_notify(q);
  return 1;
}

/* The last heap entry: no sifting, so clearing n jobs is O(n). */
uint32_t sl_jobq_drop_any(sl_jobq *q) {
  uint32_t slot;
  if (!q->len) return 0;
  slot = q->heap[q->len - 1].slot;
  sl_jobq_unqueue(q, slot);
  if (!q->len) sl_jobq_notify(q);
  return slot;
}

int sl_jobq_state(uint32_t slot) {
  if (!slot || slot >= sl_qnext) return SL_QFREE;
  return sl_qrec_at(slot)->state;
}

sl_jobq *sl_jobq_of(uint32_t slot) { return sl_qrec_at(slot)->q; }

/* An awaiter was cancelled or timed out: it leaves the waiters. */
static int sl_jobq_unawait(sl_task *t, int why) {
  sl_jobq *q = t->wait.obj;
  (void)why;
  sl_queue_remove(&t->wait.link);
  q->prim.nwaiting--;
  return 1;
}

int sl_jobq_await(uint32_t slot, int can_block) {
  sl_task *t = sl_running_task();
  sl_qrec *r;
  sl_jobq *q;
  int state = sl_jobq_state(slot);
  if (!t) return SL_R_NOTASK;
  if (sl_task_cancel_due(t)) return SL_R_CANCELLED;
  if (state == SL_QFREE) return SL_R_OK;
  if (!can_block) return SL_R_NOBLOCK;
  r = sl_qrec_at(slot);
  q = r->q;
  /* a pending job needs a place: is every place held by tasks that wait
   * on this one? (a running job's runner is checked by the Lua face) */
  if (state == SL_QPENDING && sl_would_deadlock(t, &q->prim)) return SL_R_DEADLOCK;
  r->awaited = 1;
  sl_queue_insert_tail(&q->prim.waiters, &t->wait.link);
  q->prim.nwaiting++;
  sl_task_park(t, "queue job", q, sl_jobq_unawait);
  t->wait_kind = SL_WAIT_PRIM;
  t->wait.arg = (intptr_t)slot;
  return SL_R_QUEUED;
}

/* A sl_jobq_wait waiter was cancelled: it leaves. */
static int sl_jobq_unwait(sl_task *t, int why) {
  (void)why;
  sl_queue_remove(&t->wait.link);
  return 1;
}

int sl_jobq_wait(sl_jobq *q, double n, int can_block) {
  sl_task *t = sl_running_task();
  intptr_t arg = n > 0x7fffffff ? 0x7fffffff : (intptr_t)n;
  if (!t) return SL_R_NOTASK;
  if (sl_task_cancel_due(t)) return SL_R_CANCELLED;
  if (sl_jobq_settled(q, arg)) return SL_R_OK;
  if (!can_block) return SL_R_NOBLOCK;
  if (arg == 0 && sl_hold_find(&q->prim, t)) return SL_R_DEADLOCK;   /* a job of q */
  sl_queue_insert_tail(&q->idlers, &t->wait.link);
  sl_task_park(t, arg == 0 ? "queue:on_idle" : arg == 1 ? "queue:on_empty" :
               "queue:on_size_less_than", q, sl_jobq_unwait);
  t->wait.arg = arg;
  return SL_R_QUEUED;
}

void sl_jobq_pause(sl_jobq *q) {
  q->paused = 1;
  sl_jobq_notify(q);   /* the keeper goes: start() dispatches anew */
}

void sl_jobq_start(sl_jobq *q) { q->paused = 0; }
int sl_jobq_paused(const sl_jobq *q) { return q->paused; }
void sl_jobq_set_concurrency(sl_jobq *q, double concurrency) { q->limit = concurrency; }
double sl_jobq_concurrency(const sl_jobq *q) { return q->limit; }
double sl_jobq_size(const sl_jobq *q) { return q->len - sl_jobq_starting(q); }
double sl_jobq_running(const sl_jobq *q) { return q->running + sl_jobq_starting(q); }
double sl_jobq_throttled(const sl_jobq *q) { return q->throttled; }
double sl_jobq_bytes(void) { return (double)sl_qbytes; }
