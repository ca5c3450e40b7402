/*
 * sl_limit.c - p-limit: at most n calls running at once, the rest queued.
 *
 * The point is that a call is cheap.  A queued call is not a task (a
 * task is a userdata plus a coroutine, near a kilobyte), only a 32-byte
 * record in a slab shared by every limiter of the thread, whose slot
 * number indexes the Lua face's arrays (lua/sluice/limit.lua) holding the
 * function, its arguments and the caller's handle.  Nor does a call that
 * starts get a task of its own: a place is a runner, a task that runs
 * calls one after another.  When a call is queued and a place is free,
 * sl_limit_next reserves the place and Lua spawns a runner; the runner
 * takes the head call when it begins (sl_limit_begin), and when that call
 * returns, the next head at once (sl_limit_continue): the place never
 * goes back to the pool, so nothing is spawned.  Calls are taken from the
 * head at the moment their body starts, so they start in FIFO order
 * however runners interleave.  A runner ends when no call is queued, or
 * the head was made in another scope (a runner for that scope is then
 * spawned).  A record lives until its call ends, so tasks awaiting a
 * running call park on it too.
 *
 * Each runner holds its place as a holding of the limiter's sl_prim, so
 * the deadlock walk sees it: a task awaiting a queued call while every
 * place is held by itself or by tasks waiting on it gets an error.
 *
 * Structured concurrency: a call made inside a scope is that scope's
 * business even while it waits.  Each (limiter, scope) pair with queued
 * calls has a proxy: an sl_task record that is never resumed, linked
 * among the scope's children as if waiting.  So the scope does not return
 * while calls made in it are queued, and cancelling the scope interrupts
 * the proxy, whose unwait hook drops those calls at once (they end
 * cancelled; Lua reaps their slots later, as C cannot call into Lua).
 *
 * Fairness and resizing follow sl_sem.c: FIFO, no barging, growing starts
 * queued calls at once, shrinking lets running calls finish.
 */
#include "sl_prim.h"
#include "sl_ffi_limit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SL_LCHUNK_BITS 10
#define SL_LCHUNK (1u << SL_LCHUNK_BITS)

typedef struct sl_lscope sl_lscope;

typedef struct sl_lrec {
  uint32_t next, prev;    /* in the limiter's queue (or free/dropped list) */
  uint8_t state;          /* SL_L* */
  uint8_t awaited;        /* some task is parked awaiting it */
  uint8_t started;        /* started at once: no wait to record */
  double since;           /* when it was queued */
  sl_lscope *ls;          /* its limiter and scope */
} sl_lrec;

struct sl_lscope {
  sl_task proxy;          /* first: the unwait hook gets the proxy */
  sl_lscope *next;        /* in lim->scopes */
  sl_scope *scope;        /* NULL: the root scope (no proxy linked) */
  sl_limit *lim;
  uint32_t npending;
};

struct sl_limit {
  sl_prim prim;           /* waiters: tasks awaiting a call (wait.arg = slot);
                             holders: the runners, one place each */
  double limit;
  double active;          /* places taken: runners */
  uint32_t head, tail;    /* the queue of pending calls */
  uint32_t dropped;       /* calls dropped by a scope, not yet reaped */
  uint32_t npending;
  sl_lscope root;         /* calls made in the root scope */
  sl_lscope *scopes;      /* other scopes with pending calls */
  sl_lscope *started;     /* the scope for the runner about to be spawned */
  uint32_t unbegun;       /* runners spawned whose body has not run yet:
                             each will take the head call when it runs */
};

/* The slab: chunks of records, never moved, so a record's address is
 * stable; slot 0 is never handed out. */
static __thread sl_lrec **sl_lchunks;
static __thread uint32_t sl_lnchunks, sl_lnext = 1, sl_lfree;
static __thread size_t sl_lbytes;

static sl_lrec *sl_lrec_at(uint32_t slot) {
  return &sl_lchunks[slot >> SL_LCHUNK_BITS][slot & (SL_LCHUNK - 1)];
}

static uint32_t sl_lrec_alloc(void) {
  uint32_t slot;
  if (sl_lfree) {
    slot = sl_lfree;
    sl_lfree = sl_lrec_at(slot)->next;
    return slot;
  }
  if ((sl_lnext >> SL_LCHUNK_BITS) >= sl_lnchunks) {
    uint32_t n = sl_lnchunks ? sl_lnchunks * 2 : 16;
    sl_lrec **c = realloc(sl_lchunks, n * sizeof *c);
    if (!c) return 0;
    memset(c + sl_lnchunks, 0, (n - sl_lnchunks) * sizeof *c);
    sl_lbytes += (n - sl_lnchunks) * sizeof *c;
    sl_lchunks = c;
    sl_lnchunks = n;
  }
  if (!sl_lchunks[sl_lnext >> SL_LCHUNK_BITS]) {
    if (!(sl_lchunks[sl_lnext >> SL_LCHUNK_BITS] = calloc(SL_LCHUNK, sizeof(sl_lrec)))) return 0;
    sl_lbytes += SL_LCHUNK * sizeof(sl_lrec);
  }
  return sl_lnext++;
}

static void sl_lrec_free(uint32_t slot) {
  sl_lrec *r = sl_lrec_at(slot);
  r->state = SL_LFREE;
  r->ls = NULL;
  r->next = sl_lfree;
  sl_lfree = slot;
}

static void sl_lrec_unlink(sl_limit *l, uint32_t slot) {
  sl_lrec *r = sl_lrec_at(slot);
  if (r->prev) sl_lrec_at(r->prev)->next = r->next; else l->head = r->next;
  if (r->next) sl_lrec_at(r->next)->prev = r->prev; else l->tail = r->prev;
  r->next = r->prev = 0;
  l->npending--;
}

/* Counts a wait that ended (started or dropped) in the histogram. */
static void sl_limit_record_wait(sl_limit *l, double since) {
  sl_task *t = sl_running_task();
  double w = t ? sl_now(t->sched) - since : 0;
  int b = 0;
  if (w < 0) w = 0;
  l->prim.stats.wait_total += w;
  if (w > l->prim.stats.wait_max) l->prim.stats.wait_max = w;
  if (w > 0) {
    b = (int)ceil(log2(w * 1e6 + 1));
    if (b >= SL_HIST_BUCKETS) b = SL_HIST_BUCKETS - 1;
  }
  l->prim.stats.hist[b]++;
}

/* Wakes the tasks awaiting the call in slot (it ended or was dropped). */
static void sl_limit_wake_awaiters(sl_limit *l, uint32_t slot) {
  sl_queue *q, *next;
  sl_lrec *r = sl_lrec_at(slot);
  if (!r->awaited) return;
  r->awaited = 0;
  for (q = l->prim.waiters.next; q != &l->prim.waiters; q = next) {
    sl_task *t = sl_queue_data(q, sl_task, wait.link);
    next = q->next;
    if ((uint32_t)t->wait.arg != slot) continue;
    sl_queue_remove(q);
    l->prim.nwaiting--;
    sl_task_wake(t, SL_WAKE_OK);
  }
}

/* ---- scopes ---- */

static void sl_lscope_release(sl_lscope *ls);

/* The proxy's scope was cancelled: its queued calls end, cancelled. */
static int sl_lscope_unwait(sl_task *proxy, int why) {
  sl_lscope *ls = (sl_lscope *)proxy;
  sl_limit *l = ls->lim;
  uint32_t slot = l->head, next;
  (void)why;
  while (slot && ls->npending) {
    sl_lrec *r = sl_lrec_at(slot);
    next = r->next;
    if (r->ls == ls) {
      sl_lrec_unlink(l, slot);
      r->state = SL_LDROPPED;
      r->ls = &l->root;   /* ls is freed below; the root lives with l */
      r->next = l->dropped;
      l->dropped = slot;
      l->prim.stats.cancelled++;
      sl_limit_record_wait(l, r->since);
      sl_limit_wake_awaiters(l, slot);
      ls->npending--;
    }
    slot = next;
  }
  sl_lscope_release(ls);
  return 0;   /* the proxy is never woken: it is gone */
}

/* The lscope for the running task's scope, created if asked. */
static sl_lscope *sl_lscope_get(sl_limit *l, sl_task *t) {
  sl_scope *s = t->scope;
  sl_lscope *ls;
  if (!s || s->root || s->closed) return &l->root;
  for (ls = l->scopes; ls; ls = ls->next)
    if (ls->scope == s) return ls;
  if (!(ls = calloc(1, sizeof *ls))) return NULL;
  sl_lbytes += sizeof *ls;
  ls->scope = s;
  ls->lim = l;
  sl_queue_init(&ls->proxy.ready);
  sl_queue_init(&ls->proxy.awaiters);
  sl_queue_init(&ls->proxy.held);
  sl_queue_init(&ls->proxy.wait.link);
  ls->proxy.sched = t->sched;
  ls->proxy.scope = s;
  ls->proxy.status = SL_WAITING;
  ls->proxy.wait.what = "limit";
  ls->proxy.wait.unwait = sl_lscope_unwait;
  ls->proxy.ref = LUA_NOREF;
  sl_queue_insert_tail(&s->children, &ls->proxy.member);
  s->nlive++;
  ls->next = l->scopes;
  l->scopes = ls;
  return ls;
}

/* No more queued calls from ls's scope: the scope may return (as when a
 * child task ends: sl_resume.c wakes an owner waiting for the last one). */
static void sl_lscope_release(sl_lscope *ls) {
  sl_scope *s = ls->scope;
  sl_lscope **p;
  if (!s || ls->npending) return;
  for (p = &ls->lim->scopes; *p != ls; p = &(*p)->next) {}
  *p = ls->next;
  sl_queue_remove(&ls->proxy.member);
  s->nlive--;
  if (s->nlive == 0 && s->owner) {
    sl_task *owner = s->owner;
    s->owner = NULL;
    sl_task_wake(owner, SL_WAKE_OK);
  }
  sl_lbytes -= sizeof *ls;
  free(ls);
}

/* ---- the limiter ---- */

/* A runner ended still holding its place (a bug the runtime reports):
 * the place is freed; queued calls start at the next dispatch. */
static void sl_limit_give(sl_prim *p, double n) {
  ((sl_limit *)p)->active -= n;
}

sl_limit *sl_limit_new(double concurrency) {
  sl_limit *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  sl_prim_init(&l->prim, "limit");
  l->prim.give = sl_limit_give;
  l->limit = concurrency;
  l->root.lim = l;
  sl_lbytes += sizeof *l;
  return l;
}

/* Runners keep their limiter alive and queued calls need a runner, so
 * only the end of the Lua state frees a limiter that still has some. */
void sl_limit_free(sl_limit *l) {
  uint32_t slot;
  if (!l) return;
  while ((slot = sl_limit_drop_head(l))) {}
  while ((slot = sl_limit_reap(l))) {}
  sl_prim_destroy(&l->prim);
  sl_lbytes -= sizeof *l;
  free(l);
}

sl_prim *sl_limit_prim(sl_limit *l) { return &l->prim; }

/* Reserves a place for one more runner if a queued call has none coming
 * (a place is free, and more calls wait than runners are about to begin):
 * returns 1, and the runner spawned next goes into the head call's scope. */
static int sl_limit_reserve(sl_limit *l) {
  if (!l->head || l->active >= l->limit || l->unbegun >= l->npending) return 0;
  l->active++;
  l->unbegun++;
  l->started = sl_lrec_at(l->head)->ls;
  return 1;
}

int sl_limit_submit(sl_limit *l) {
  sl_task *t = sl_running_task();
  sl_lscope *ls;
  sl_lrec *r;
  uint32_t slot;
  if (!t) return SL_R_NOTASK;
  if (t->scope && t->scope->cancelled) return SL_R_CANCELLED;
  if (!(ls = sl_lscope_get(l, t))) return 0;
  if (!(slot = sl_lrec_alloc())) {
    if (!ls->npending) sl_lscope_release(ls);
    return 0;
  }
  r = sl_lrec_at(slot);
  r->state = SL_LPENDING;
  r->awaited = 0;
  r->started = (uint8_t)(l->active < l->limit && l->unbegun >= l->npending);
  r->since = t->sched->virtual_clock ? t->sched->vnow : sl_now(t->sched);
  r->ls = ls;
  ls->npending++;
  r->next = 0;
  r->prev = l->tail;
  if (l->tail) sl_lrec_at(l->tail)->next = slot; else l->head = slot;
  l->tail = slot;
  l->npending++;
  return (int)(slot << 1 | sl_limit_reserve(l));
}

int sl_limit_next(sl_limit *l) { return sl_limit_reserve(l); }

/* Moves the fresh task t from the scope it was spawned in to s. */
static void sl_task_move(sl_task *t, sl_scope *s) {
  sl_scope *from = t->scope;
  if (from == s) return;
  sl_queue_remove(&t->member);
  from->nlive--;   /* the spawner still runs in it: never the last one */
  sl_scope_add(s, t);
}

void sl_limit_adopt(sl_limit *l, void *task) {
  sl_task *t = task;
  sl_lscope *ls = l->started;
  t->shield++;   /* sl_limit_begin takes it back: the body must run */
  sl_task_move(t, ls->scope ? ls->scope : &t->sched->root);
  (void)sl_hold_add(&l->prim, t, 1);   /* out of memory: no deadlock check */
  l->started = NULL;
}

/* The running runner gives its place back. */
static void sl_limit_leave(sl_limit *l) {
  sl_task *t = sl_running_task();
  l->active--;
  if (t) (void)sl_hold_sub(&l->prim, t, 1);
}

/* Does t hold anything but its place in l? */
static int sl_holds_other(const sl_task *t, const sl_prim *p) {
  const sl_queue *q = sl_queue_head(&t->held);
  if (sl_queue_empty(&t->held)) return 0;
  return q->next != &t->held || sl_queue_data(q, sl_hold, in_task)->prim != p;
}

/* The running runner t, holding a place, takes the head call: its slot,
 * now running; or 0, and the place is given back.  It goes on only as a
 * task of its own would have started anyway: within the limit, not
 * cancelled, holding nothing a call left behind (the task then ends and
 * the runtime reports it), and in the head call's scope. */
static uint32_t sl_limit_take(sl_limit *l, sl_task *t) {
  uint32_t slot = l->head;
  sl_lrec *r;
  sl_lscope *ls;
  if (!t || !slot || l->active > l->limit || t->cancelled || sl_holds_other(t, &l->prim)) {
    sl_limit_leave(l);
    return 0;
  }
  r = sl_lrec_at(slot);
  ls = r->ls;
  if ((ls->scope ? ls->scope : &t->sched->root) != t->scope) {
    sl_limit_leave(l);
    return 0;
  }
  sl_lrec_unlink(l, slot);
  r->state = SL_LRUNNING;
  r->ls = &l->root;   /* ls may be freed below; the root lives with l */
  l->prim.stats.acquired++;
  if (r->started) {
    l->prim.stats.hist[0]++;
  } else {
    l->prim.stats.waited++;
    sl_limit_record_wait(l, r->since);
  }
  ls->npending--;
  sl_lscope_release(ls);   /* t is in the scope: it cannot end yet */
  return slot;
}

uint32_t sl_limit_begin(sl_limit *l) {
  sl_task *t = sl_running_task();
  l->unbegun--;
  if (t) t->shield--;
  return sl_limit_take(l, t);
}

/* The call in slot ended: its awaiters wake, its record is freed. */
static void sl_limit_end_call(sl_limit *l, uint32_t slot) {
  sl_limit_wake_awaiters(l, slot);
  sl_lrec_free(slot);
}

uint32_t sl_limit_continue(sl_limit *l, uint32_t slot) {
  sl_limit_end_call(l, slot);
  return sl_limit_take(l, sl_running_task());
}

void sl_limit_fail(sl_limit *l, uint32_t slot) {
  sl_limit_end_call(l, slot);
  sl_limit_leave(l);
}

/* Ends a pending call as if it had never queued (but counted). */
static void sl_limit_unqueue(sl_limit *l, uint32_t slot) {
  sl_lrec *r = sl_lrec_at(slot);
  sl_lscope *ls = r->ls;
  sl_lrec_unlink(l, slot);
  l->prim.stats.cancelled++;
  sl_limit_record_wait(l, r->since);
  ls->npending--;
  sl_lscope_release(ls);
  sl_limit_wake_awaiters(l, slot);
  sl_lrec_free(slot);
}

int sl_limit_drop(uint32_t slot) {
  sl_lrec *r;
  sl_limit *l;
  if (!slot || slot >= sl_lnext) return 0;
  r = sl_lrec_at(slot);
  if (r->state == SL_LDROPPED) {   /* reaped here, out of list order */
    uint32_t *p;
    for (l = r->ls->lim, p = &l->dropped; *p != slot; p = &sl_lrec_at(*p)->next) {}
    *p = r->next;
    sl_lrec_free(slot);
    return 1;
  }
  if (r->state != SL_LPENDING) return 0;
  sl_limit_unqueue(r->ls->lim, slot);
  return 1;
}

uint32_t sl_limit_drop_head(sl_limit *l) {
  uint32_t slot = l->head;
  if (slot) sl_limit_unqueue(l, slot);
  return slot;
}

uint32_t sl_limit_reap(sl_limit *l) {
  uint32_t slot = l->dropped;
  if (slot) {
    l->dropped = sl_lrec_at(slot)->next;
    sl_lrec_free(slot);
  }
  return slot;
}

int sl_limit_state(uint32_t slot) {
  if (!slot || slot >= sl_lnext) return SL_LFREE;
  return sl_lrec_at(slot)->state;
}

sl_limit *sl_limit_of(uint32_t slot) { return sl_lrec_at(slot)->ls->lim; }

/* An awaiter was cancelled or timed out: it leaves the waiters. */
static int sl_limit_unwait(sl_task *t, int why) {
  sl_limit *l = t->wait.obj;
  (void)why;
  sl_queue_remove(&t->wait.link);
  l->prim.nwaiting--;
  return 1;
}

int sl_limit_await(uint32_t slot, int can_block) {
  sl_task *t = sl_running_task();
  sl_lrec *r;
  sl_limit *l;
  int state = sl_limit_state(slot);
  if (!t) return SL_R_NOTASK;
  if (sl_task_cancel_due(t)) return SL_R_CANCELLED;
  if (state != SL_LPENDING && state != SL_LRUNNING) return SL_R_OK;
  if (!can_block) return SL_R_NOBLOCK;
  r = sl_lrec_at(slot);
  l = r->ls->lim;
  /* a queued call needs a place: is every place held by tasks that wait
   * on this one? (a running call's runner is checked by the Lua face) */
  if (state == SL_LPENDING && sl_would_deadlock(t, &l->prim)) return SL_R_DEADLOCK;
  r->awaited = 1;
  sl_queue_insert_tail(&l->prim.waiters, &t->wait.link);
  l->prim.nwaiting++;
  sl_task_park(t, "limit", l, sl_limit_unwait);
  t->wait_kind = SL_WAIT_PRIM;
  t->wait.arg = (intptr_t)slot;
  return SL_R_QUEUED;
}

void sl_limit_set(sl_limit *l, double concurrency) { l->limit = concurrency; }
double sl_limit_concurrency(const sl_limit *l) { return l->limit; }
/* Places taken: by running calls, and by runners about to begin for
 * queued calls (not those that will find the queue empty). */
double sl_limit_active(const sl_limit *l) {
  return l->active - (l->unbegun > l->npending ? l->unbegun - l->npending : 0);
}
/* Calls queued with no runner on the way for them. */
double sl_limit_pending(const sl_limit *l) {
  return l->npending > l->unbegun ? l->npending - l->unbegun : 0;
}
double sl_limit_bytes(void) { return (double)sl_lbytes; }
