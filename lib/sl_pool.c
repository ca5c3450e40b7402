/*
 * sl_pool.c - the bookkeeping of a generic resource pool: a C state
 * machine over slots, whose resources (Lua values) the Lua face keeps
 * in arrays indexed by slot (lua/sluice/pool.lua).
 *
 * A slot is free, idle (in the idle list), borrowed, or creating (a
 * creation in flight, run by a task the Lua face spawns).  size = idle +
 * borrowed + creating never exceeds max: a creation is counted from the
 * moment it is reserved, so concurrent acquires cannot overshoot.
 *
 * Waiters park in the sl_prim queue, FIFO.  Whatever frees up (a
 * release, a finished creation) goes straight to the head waiter, so a
 * newcomer never takes a resource while someone waits: an acquire only
 * takes an idle slot when nobody is queued.  Creations are not tied to
 * the waiter that caused them: one is started whenever more tasks wait
 * than creations are in flight, and its resource goes to whoever heads
 * the queue when it is ready (or to the idle list), so a waiter that
 * times out or is cancelled strands nothing.  A failed creation fails
 * the head waiter, if more wait than creations remain, and sets a
 * backoff (0.1 s doubling to 5 s, reset by a success) before the next.
 *
 * Idle list: most recently used first, so a lightly used pool keeps
 * reusing the same warm resources and the others age out.  Expiry
 * (idle_timeout above min, max_lifetime) is done by sl_pool_evict, which
 * costs nothing until the earliest possible expiry (evict_at): the Lua
 * face calls it at acquire and release, and from a weak timer armed for
 * evict_at (sl_pool_next_expiry); max_uses and max_lifetime are also
 * checked at release.
 */
#include "sl_prim.h"
#include "sl_ffi_pool.h"

#include <stdlib.h>

enum { SL_SLOT_FREE, SL_SLOT_IDLE, SL_SLOT_BUSY, SL_SLOT_CREATING };

#define SL_POOL_BACKOFF_MIN 0.1
#define SL_POOL_BACKOFF_MAX 5.0

typedef struct sl_pool_slot {
  double created;         /* when its creation succeeded */
  double last_used;       /* when it was last released (or created) */
  double uses;            /* borrows so far */
  int next, prev;         /* idle list; next links the free list too */
  int state;
} sl_pool_slot;

struct sl_pool {
  sl_prim prim;           /* first: an sl_pool is an sl_prim */
  sl_pool_slot *slots;    /* [1..cap]; slot 0 unused */
  int cap;
  int free;               /* free list head, 0 for none */
  int idle_head;          /* most recently used idle slot */
  int idle_tail;
  int max, min;
  int nidle, nbusy, npending;
  int max_waiting;        /* < 0: unbounded */
  int closed;
  double idle_timeout, max_lifetime, max_uses;   /* < 0: none */
  double evict_at;        /* no idle slot expires before this */
  sl_pool_counts counts;
};

static double sl_min2(double a, double b) { return a < b ? a : b; }

/* now < 0: the clock of the scheduler's current tick, read once per
 * tick (as the wait statistics do): expiry is no finer than a tick, and
 * an acquire and release read no clock of their own. */
static double sl_pool_clock(double now) {
  sl_task *t;
  if (now >= 0) return now;
  if (!(t = sl_running_task())) return 0;
  return t->sched->virtual_clock ? t->sched->vnow : t->sched->pass_now;
}

/* Grows the slot array (doubling, up to max) for one more slot. */
static int sl_pool_grow(sl_pool *p) {
  int cap = p->cap ? p->cap * 2 : 8, i;
  sl_pool_slot *s;
  if (cap > p->max) cap = p->max;
  if (cap <= p->cap) return -1;
  s = realloc(p->slots, (size_t)(cap + 1) * sizeof *s);
  if (!s) return -1;
  for (i = cap; i > p->cap; i--) {
    s[i].state = SL_SLOT_FREE;
    s[i].next = p->free;
    p->free = i;
  }
  p->slots = s;
  p->cap = cap;
  return 0;
}

static int sl_slot_alloc(sl_pool *p) {
  int i;
  if (!p->free && sl_pool_grow(p)) return 0;
  i = p->free;
  p->free = p->slots[i].next;
  return i;
}

static void sl_slot_release(sl_pool *p, int i) {
  p->slots[i].state = SL_SLOT_FREE;
  p->slots[i].next = p->free;
  p->free = i;
}

/* When slot i, idle, expires (a huge value for never). */
static double sl_slot_expiry(const sl_pool *p, int i) {
  const sl_pool_slot *s = &p->slots[i];
  double at = 1e300;
  if (p->idle_timeout >= 0) at = s->last_used + p->idle_timeout;
  if (p->max_lifetime >= 0) at = sl_min2(at, s->created + p->max_lifetime);
  return at;
}

static void sl_idle_push(sl_pool *p, int i) {
  sl_pool_slot *s = &p->slots[i];
  s->state = SL_SLOT_IDLE;
  s->prev = 0;
  s->next = p->idle_head;
  if (p->idle_head) p->slots[p->idle_head].prev = i;
  else p->idle_tail = i;
  p->idle_head = i;
  p->nidle++;
  p->evict_at = sl_min2(p->evict_at, sl_slot_expiry(p, i));
}

static void sl_idle_unlink(sl_pool *p, int i) {
  sl_pool_slot *s = &p->slots[i];
  if (s->prev) p->slots[s->prev].next = s->next;
  else p->idle_head = s->next;
  if (s->next) p->slots[s->next].prev = s->prev;
  else p->idle_tail = s->prev;
  p->nidle--;
}

/* Gone for good: its resource is to be destroyed. */
static void sl_slot_drop(sl_pool *p, int i) {
  sl_slot_release(p, i);
  p->counts.destroyed++;
}

static int sl_pool_expired(const sl_pool *p, int i, double now) {
  const sl_pool_slot *s = &p->slots[i];
  return (p->max_uses >= 0 && s->uses >= p->max_uses) ||
         (p->max_lifetime >= 0 && now - s->created >= p->max_lifetime);
}

/* Hands slot i to the head waiter (borrowed), or files it idle. */
static void sl_pool_hand_on(sl_pool *p, int i) {
  sl_pool_slot *s = &p->slots[i];
  if (!sl_queue_empty(&p->prim.waiters)) {
    sl_task *t = sl_queue_data(sl_queue_head(&p->prim.waiters), sl_task, wait.link);
    s->state = SL_SLOT_BUSY;
    s->uses++;
    p->nbusy++;
    t->wait.arg = i;
    sl_prim_grant(&p->prim, t);
  } else {
    sl_idle_push(p, i);
  }
}

/* A waiter timed out or was cancelled: it leaves as if never queued.  A
 * creation started for it stays in flight and serves the next waiter. */
static int sl_pool_unwait(sl_task *t, int why) {
  sl_pool *p = t->wait.obj;
  sl_queue_remove(&t->wait.link);
  sl_prim_wait_lost(&p->prim, t, why);
  return 1;
}

sl_pool *sl_pool_new(double max, double min, double max_waiting, double idle_timeout,
                     double max_lifetime, double max_uses) {
  sl_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  sl_prim_init(&p->prim, "pool");
  p->max = (int)max;
  p->min = (int)min;
  p->max_waiting = max_waiting < 0 ? -1 : (int)max_waiting;
  p->idle_timeout = idle_timeout;
  p->max_lifetime = max_lifetime;
  p->max_uses = max_uses;
  p->evict_at = 1e300;
  p->counts.backoff = SL_POOL_BACKOFF_MIN;
  if (sl_pool_grow(p)) {
    free(p);
    return NULL;
  }
  return p;
}

void sl_pool_free(sl_pool *p) {
  if (!p) return;
  sl_prim_destroy(&p->prim);
  free(p->slots);
  free(p);
}

sl_prim *sl_pool_prim(sl_pool *p) { return &p->prim; }

/* Takes the most recently used idle slot when nobody waits; else parks
 * (timeout < 0: none, 0: do not wait).  Expired idle slots must have
 * been evicted first (sl_pool_evict with the same now). */
int sl_pool_acquire(sl_pool *p, double now, double timeout, int can_block) {
  sl_task *t = sl_running_task();
  int i, rc;
  (void)now;   /* kept for symmetry: expiry was checked by sl_pool_evict */
  if (!t) return SL_R_NOTASK;
  if (p->closed) return SL_POOL_R_CLOSED;
  if (sl_task_cancel_due(t)) return SL_R_CANCELLED;
  if (p->idle_head && sl_queue_empty(&p->prim.waiters)) {
    i = p->idle_head;
    sl_idle_unlink(p, i);
    p->slots[i].state = SL_SLOT_BUSY;
    p->slots[i].uses++;
    p->nbusy++;
    sl_prim_count_grant(&p->prim);
    return i;
  }
  if (timeout == 0) return SL_R_TIMEDOUT;
  if (p->max_waiting >= 0 && p->prim.nwaiting >= p->max_waiting) return SL_POOL_R_FULL;
  rc = sl_prim_may_wait(&p->prim, t, can_block);
  if (rc != SL_R_QUEUED) return rc;
  t->wait.arg = 0;
  return sl_prim_park(&p->prim, t, "pool", timeout, sl_pool_unwait);
}

int sl_pool_granted(const sl_pool *p) {
  sl_task *t = sl_running_task();
  (void)p;
  return t ? (int)t->wait.arg : 0;
}

int sl_pool_need_create(sl_pool *p, double now) {
  int size = p->nidle + p->nbusy + p->npending, i;
  if (p->closed || size >= p->max) return 0;
  if (p->prim.nwaiting <= p->npending &&
      (size >= p->min || sl_pool_clock(now) < p->counts.create_at)) return 0;
  if (!(i = sl_slot_alloc(p))) return 0;
  p->slots[i].state = SL_SLOT_CREATING;
  p->npending++;
  return i;
}

double sl_pool_create_delay(const sl_pool *p, double now) {
  now = sl_pool_clock(now);
  return p->counts.create_at > now ? p->counts.create_at - now : 0;
}

int sl_pool_created(sl_pool *p, int slot, double now) {
  sl_pool_slot *s = &p->slots[slot];
  now = sl_pool_clock(now);
  p->npending--;
  p->counts.created++;
  p->counts.backoff = SL_POOL_BACKOFF_MIN;
  p->counts.create_at = 0;
  s->created = s->last_used = now;
  s->uses = 0;
  p->evict_at = 0;   /* one more: an idle slot held back by min may go now */
  if (p->closed) {
    sl_slot_drop(p, slot);
    return SL_POOL_DROP;
  }
  sl_pool_hand_on(p, slot);
  return SL_POOL_KEPT;
}

int sl_pool_create_failed(sl_pool *p, int slot, int err_id, double now) {
  now = sl_pool_clock(now);
  sl_slot_release(p, slot);
  p->npending--;
  p->counts.create_failures++;
  p->counts.create_at = now + p->counts.backoff;
  p->counts.backoff = sl_min2(p->counts.backoff * 2, SL_POOL_BACKOFF_MAX);
  if (p->prim.nwaiting > p->npending) {
    sl_task *t = sl_queue_data(sl_queue_head(&p->prim.waiters), sl_task, wait.link);
    sl_queue_remove(&t->wait.link);
    sl_prim_wait_lost(&p->prim, t, SL_WAKE_CANCEL);
    p->prim.stats.cancelled--;   /* neither a timeout nor a cancellation */
    t->wait.arg = err_id;
    sl_task_wake(t, SL_POOL_WAKE_FAILED);
    return 1;
  }
  return 0;
}

void sl_pool_create_dropped(sl_pool *p, int slot) {
  sl_slot_release(p, slot);
  p->npending--;
}

int sl_pool_release(sl_pool *p, int slot, double now) {
  sl_pool_slot *s;
  if (slot < 1 || slot > p->cap || p->slots[slot].state != SL_SLOT_BUSY) return SL_R_NOTHELD;
  now = sl_pool_clock(now);
  s = &p->slots[slot];
  p->nbusy--;
  s->last_used = now;
  if (p->closed || sl_pool_expired(p, slot, now)) {
    sl_slot_drop(p, slot);
    return SL_POOL_DROP;
  }
  sl_pool_hand_on(p, slot);
  return SL_POOL_KEPT;
}

/* The hand-off counts as a cancelled wait rather than as a use. */
int sl_pool_abandon(sl_pool *p, int slot, double now) {
  int rc;
  if (slot < 1 || slot > p->cap || p->slots[slot].state != SL_SLOT_BUSY) return SL_R_NOTHELD;
  p->slots[slot].uses--;
  p->prim.stats.acquired--;
  p->prim.stats.waited--;
  p->prim.stats.cancelled++;
  rc = sl_pool_release(p, slot, now);
  return rc;
}

int sl_pool_remove(sl_pool *p, int slot) {
  if (slot < 1 || slot > p->cap || p->slots[slot].state != SL_SLOT_BUSY) return SL_R_NOTHELD;
  p->nbusy--;
  sl_slot_drop(p, slot);
  return SL_R_OK;
}

/* Idle slots past max_lifetime always go; past idle_timeout only while
 * more than min exist (they would be created again at once). */
int sl_pool_evict(sl_pool *p, double now) {
  int i, size = p->nidle + p->nbusy + p->npending;
  double at = 1e300;
  if (p->evict_at >= 1e300) return 0;   /* nothing can expire */
  now = sl_pool_clock(now);
  if (now < p->evict_at) return 0;
  for (i = p->idle_tail; i; i = p->slots[i].prev) {
    const sl_pool_slot *s = &p->slots[i];
    int old = p->max_lifetime >= 0 && now - s->created >= p->max_lifetime;
    int stale = p->idle_timeout >= 0 && now - s->last_used >= p->idle_timeout && size > p->min;
    if (old || stale) {
      sl_idle_unlink(p, i);
      sl_slot_drop(p, i);
      p->counts.evicted++;
      return i;   /* evict_at stays: the caller comes back for the next */
    }
    if (p->max_lifetime >= 0) at = sl_min2(at, s->created + p->max_lifetime);
    /* one held back by min waits for the pool to grow (see created) */
    if (p->idle_timeout >= 0 && s->last_used + p->idle_timeout > now)
      at = sl_min2(at, s->last_used + p->idle_timeout);
  }
  p->evict_at = at;
  return 0;
}

int sl_pool_close(sl_pool *p) {
  if (p->closed) return 0;
  p->closed = 1;
  while (!sl_queue_empty(&p->prim.waiters)) {
    sl_task *t = sl_queue_data(sl_queue_head(&p->prim.waiters), sl_task, wait.link);
    sl_queue_remove(&t->wait.link);
    sl_prim_wait_lost(&p->prim, t, SL_WAKE_CANCEL);
    p->prim.stats.cancelled--;
    sl_task_wake(t, SL_POOL_WAKE_CLOSED);
  }
  return 1;
}

int sl_pool_drain(sl_pool *p, int active) {
  int i;
  if (!p->closed) return 0;
  if ((i = p->idle_head)) {
    sl_idle_unlink(p, i);
    sl_slot_drop(p, i);
    return i;
  }
  if (!active) return 0;
  for (i = 1; i <= p->cap; i++) {
    if (p->slots[i].state == SL_SLOT_BUSY) {
      p->nbusy--;
      sl_slot_drop(p, i);
      return i;
    }
  }
  return 0;
}

int sl_pool_state(const sl_pool *p, int slot) {
  return slot >= 1 && slot <= p->cap ? p->slots[slot].state : SL_SLOT_FREE;
}

double sl_pool_slot_uses(const sl_pool *p, int slot) { return p->slots[slot].uses; }
double sl_pool_slot_created(const sl_pool *p, int slot) { return p->slots[slot].created; }
int sl_pool_idle(const sl_pool *p) { return p->nidle; }
int sl_pool_active(const sl_pool *p) { return p->nbusy; }
int sl_pool_pending(const sl_pool *p) { return p->npending; }
int sl_pool_size(const sl_pool *p) { return p->nidle + p->nbusy + p->npending; }
int sl_pool_max(const sl_pool *p) { return p->max; }
int sl_pool_min(const sl_pool *p) { return p->min; }
int sl_pool_is_closed(const sl_pool *p) { return p->closed; }
double sl_pool_next_expiry(const sl_pool *p) { return p->evict_at; }
void sl_pool_counts_get(const sl_pool *p, sl_pool_counts *out) { *out = p->counts; }
