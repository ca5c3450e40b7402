/*
 * sl_chan.c - channel: a pure C state machine over keys.
 *
 * A channel of capacity n buffers up to n values; send blocks while it
 * is full, recv while it is empty; capacity 0 is a rendezvous (a send
 * waits for a receiver).  Values are Lua values, so they live on the Lua
 * side in a table indexed by small positive integers, "keys", that C
 * hands out from a free list: one key per value in flight.  C only ever
 * moves keys: the buffer is a ring of keys, a parked sender owns the key
 * of its value (in its task's wait.arg), a receiver woken by a hand-off
 * owns the key it was given.  A value is written once (by the sender,
 * when C gives it a key) and read once (by the receiver that C gives
 * that key), so a value can be neither lost nor duplicated whatever
 * happens in between.
 *
 * Order: receivers are served FIFO and so are senders; a send to a
 * waiting receiver hands its value straight over; a newcomer never
 * overtakes a queued sender or receiver.  Invariants: receivers wait
 * only while the buffer is empty and no sender waits; senders wait only
 * while the buffer holds at least the capacity.
 *
 * Cancellation: a waiter cancelled or timed out leaves its queue as if
 * it had never queued (a sender keeps its key until its Lua face has
 * cleared the value and frees it, so the key cannot be reused under it).
 * A receiver handed a value but cancelled before it ran passes the key
 * on (sl_chan_abandon): to the next waiting receiver, or back to the
 * front of the buffer, which may then briefly hold more than the
 * capacity.  A send is complete once its key is in the buffer or with a
 * receiver; it is not taken back.
 *
 * Close wakes every waiter with SL_CHAN_WAKE_CLOSED: receivers get
 * "closed" (the buffer was empty, or they would not wait), senders an
 * error; what is buffered stays to be drained.
 *
 * Select: a task waiting on several operations at once links one case
 * per operation into the channels' queues: a proxy sl_task record that
 * is never resumed (it has no scheduler), so the code that serves a
 * queue's head tells it from a task and fires the select instead of
 * granting it: that case is done, the other cases leave their queues at
 * once and the task wakes.  Exactly one operation is performed; a recv
 * case fired for a task cancelled before it ran is passed on like an
 * abandoned receive.
 *
 * Stats: two sl_prims, one per side; "acquired" counts values sent (or
 * received), "waited" those whose operation had to wait (a select's
 * wait is counted, not timed).
 */
#include "sl_prim.h"
#include "sl_ffi_chan.h"

#include <stdint.h>
#include <stdlib.h>

/* Keys are ints; a capacity up to this many values. */
#define SL_CHAN_MAX 1073741823.0

struct sl_chan {
  sl_prim recvq;          /* first: receivers waiting */
  sl_prim sendq;          /* senders waiting, their key in wait.arg */
  double cap;
  int *ring;              /* buffered keys, count from head */
  uint32_t ringcap, head, count;
  int *free;              /* free keys (a stack), room for every key */
  uint32_t nfree, freecap;
  int nkeys;              /* keys ever made: 1..nkeys */
  int parked_key;
  int closed;
};

#define SL_CHAN_OF_SENDQ(p) ((sl_chan *)((char *)(p) - offsetof(sl_chan, sendq)))

typedef struct sl_chan_case {
  sl_task proxy;          /* wait.link in a queue, wait.obj the select,
                             wait.arg the key of a send case's value */
  sl_chan *ch;
  uint8_t send;           /* a send case */
  uint8_t queued;         /* linked in ch's queue */
  uint8_t ownkey;         /* a send case still owns its key */
} sl_chan_case;

struct sl_chan_sel {
  sl_task *t;             /* the selecting task */
  int n;
  int fired;              /* the case done, + 1; 0: none yet */
  int key;                /* the key a recv case was given (or send case used) */
  int closed;             /* the case fired because its channel closed */
  sl_chan_case cases[1];  /* n of them */
};

static int sl_chan_is_case(const sl_task *t) { return t->sched == NULL; }
static void sl_chan_fire(sl_task *proxy, int key, int closed);

/* ---- keys and the ring ---- */

/* A free key, or 0 out of memory.  The free stack grows with the keys, so
 * freeing one never allocates. */
static int sl_chan_key(sl_chan *ch) {
  if (ch->nfree > 0) return ch->free[--ch->nfree];
  if ((uint32_t)ch->nkeys == ch->freecap) {
    uint32_t cap = ch->freecap ? 2 * ch->freecap : 8;
    int *f = realloc(ch->free, cap * sizeof *f);
    if (!f) return 0;
    ch->free = f;
    ch->freecap = cap;
  }
  return ++ch->nkeys;
}

void sl_chan_free_key(sl_chan *ch, int key) {
  if (key > 0 && key <= ch->nkeys) ch->free[ch->nfree++] = key;
}

/* Room for one more key in the ring; 0, or -1 out of memory. */
static int sl_chan_reserve(sl_chan *ch) {
  uint32_t cap, i;
  int *r;
  if (ch->count < ch->ringcap) return 0;
  cap = ch->ringcap ? 2 * ch->ringcap : 8;
  if (!(r = malloc(cap * sizeof *r))) return -1;
  for (i = 0; i < ch->count; i++) r[i] = ch->ring[(ch->head + i) % ch->ringcap];
  free(ch->ring);
  ch->ring = r;
  ch->ringcap = cap;
  ch->head = 0;
  return 0;
}

static void sl_chan_push_tail(sl_chan *ch, int key) {
  ch->ring[(ch->head + ch->count) % ch->ringcap] = key;
  ch->count++;
}

static void sl_chan_push_front(sl_chan *ch, int key) {
  ch->head = (ch->head + ch->ringcap - 1) % ch->ringcap;
  ch->ring[ch->head] = key;
  ch->count++;
}

static int sl_chan_pop(sl_chan *ch) {
  int key = ch->ring[ch->head];
  ch->head = (ch->head + 1) % ch->ringcap;
  ch->count--;
  return key;
}

static sl_task *sl_chan_head(sl_prim *q) {
  return sl_queue_data(sl_queue_head(&q->waiters), sl_task, wait.link);
}

/* Hands key to the head receiver (there must be one). */
static void sl_chan_hand(sl_chan *ch, int key) {
  sl_task *r = sl_chan_head(&ch->recvq);
  if (sl_chan_is_case(r)) {
    sl_chan_fire(r, key, 0);
    return;
  }
  r->wait.arg = key;
  sl_prim_grant(&ch->recvq, r);
}

/* Moves head senders' keys into the buffer while it has room. */
static void sl_chan_admit(sl_chan *ch) {
  while (ch->count < ch->cap && !sl_queue_empty(&ch->sendq.waiters)) {
    sl_task *s = sl_chan_head(&ch->sendq);
    if (sl_chan_reserve(ch)) return;   /* out of memory: it stays queued */
    sl_chan_push_tail(ch, (int)s->wait.arg);
    if (sl_chan_is_case(s)) sl_chan_fire(s, (int)s->wait.arg, 0);
    else sl_prim_grant(&ch->sendq, s);
  }
}

/* ---- the life of a channel ---- */

double sl_chan_max(void) { return SL_CHAN_MAX; }

sl_chan *sl_chan_new(double capacity) {
  sl_chan *ch;
  if (!(capacity >= 0 && capacity <= SL_CHAN_MAX)) return NULL;
  if (!(ch = malloc(sizeof *ch))) return NULL;
  sl_prim_init(&ch->recvq, "channel");
  sl_prim_init(&ch->sendq, "channel");
  ch->cap = capacity;
  ch->ring = ch->free = NULL;
  ch->ringcap = ch->head = ch->count = ch->nfree = ch->freecap = 0;
  ch->nkeys = ch->parked_key = ch->closed = 0;
  return ch;
}

void sl_chan_free(sl_chan *ch) {
  if (!ch) return;
  sl_prim_destroy(&ch->recvq);
  sl_prim_destroy(&ch->sendq);
  free(ch->ring);
  free(ch->free);
  free(ch);
}

sl_prim *sl_chan_send_prim(sl_chan *ch) { return &ch->sendq; }
sl_prim *sl_chan_recv_prim(sl_chan *ch) { return &ch->recvq; }

/* ---- send ---- */

int sl_chan_try_send(sl_chan *ch) {
  int key;
  if (ch->closed) return SL_CHAN_CLOSED;
  if (!sl_queue_empty(&ch->recvq.waiters)) {
    if (!(key = sl_chan_key(ch))) return SL_CHAN_NOMEM;
    sl_chan_hand(ch, key);
  } else if (ch->count < ch->cap && sl_queue_empty(&ch->sendq.waiters)) {
    if (sl_chan_reserve(ch)) return SL_CHAN_NOMEM;
    if (!(key = sl_chan_key(ch))) return SL_CHAN_NOMEM;
    sl_chan_push_tail(ch, key);
  } else {
    return SL_R_QUEUED;
  }
  sl_prim_count_grant(&ch->sendq);
  return key;
}

/* A sender timed out or was cancelled: it leaves the queue, keeping its
 * key until its Lua face has cleared the value. */
static int sl_chan_unwait_send(sl_task *t, int why) {
  sl_chan *ch = SL_CHAN_OF_SENDQ(t->wait.obj);
  sl_queue_remove(&t->wait.link);
  sl_prim_wait_lost(&ch->sendq, t, why);
  return 1;
}

/* timeout < 0: none; 0: do not wait at all. */
int sl_chan_send(sl_chan *ch, double timeout, int can_block) {
  sl_task *t = sl_running_task();
  int rc, key;
  if (!t) return SL_R_NOTASK;
  if (sl_task_cancel_due(t)) return SL_R_CANCELLED;
  if ((rc = sl_chan_try_send(ch)) != SL_R_QUEUED) return rc;
  if (timeout == 0) return SL_R_TIMEDOUT;
  if ((rc = sl_prim_may_wait(&ch->sendq, t, can_block)) != SL_R_QUEUED) return rc;
  if (!(key = sl_chan_key(ch))) return SL_CHAN_NOMEM;
  t->wait.arg = key;
  ch->parked_key = key;
  return sl_prim_park(&ch->sendq, t, "channel:send", timeout, sl_chan_unwait_send);
}

int sl_chan_parked_key(const sl_chan *ch) { return ch->parked_key; }

/* ---- recv ---- */

/* Takes the next value: from the buffer (letting a sender in), or
 * straight from the head sender of a rendezvous. */
int sl_chan_try_recv(sl_chan *ch) {
  int key;
  if (ch->count > 0) {
    key = sl_chan_pop(ch);
    sl_chan_admit(ch);
  } else if (!sl_queue_empty(&ch->sendq.waiters)) {
    sl_task *s = sl_chan_head(&ch->sendq);
    key = (int)s->wait.arg;
    if (sl_chan_is_case(s)) sl_chan_fire(s, key, 0);
    else sl_prim_grant(&ch->sendq, s);
  } else {
    return ch->closed ? SL_CHAN_CLOSED : SL_R_QUEUED;
  }
  sl_chan_free_key(ch, key);   /* the caller reads and clears it at once */
  sl_prim_count_grant(&ch->recvq);
  return key;
}

static int sl_chan_unwait_recv(sl_task *t, int why) {
  sl_chan *ch = t->wait.obj;
  sl_queue_remove(&t->wait.link);
  sl_prim_wait_lost(&ch->recvq, t, why);
  return 1;
}

int sl_chan_recv(sl_chan *ch, double timeout, int can_block) {
  sl_task *t = sl_running_task();
  int rc;
  if (!t) return SL_R_NOTASK;
  if (sl_task_cancel_due(t)) return SL_R_CANCELLED;
  if ((rc = sl_chan_try_recv(ch)) != SL_R_QUEUED) return rc;
  if (timeout == 0) return SL_R_TIMEDOUT;
  if ((rc = sl_prim_may_wait(&ch->recvq, t, can_block)) != SL_R_QUEUED) return rc;
  t->wait.arg = 0;
  return sl_prim_park(&ch->recvq, t, "channel:recv", timeout, sl_chan_unwait_recv);
}

int sl_chan_take(sl_chan *ch) {
  sl_task *t = sl_running_task();
  int key = t ? (int)t->wait.arg : 0;
  if (key <= 0) return SL_R_NOTHELD;
  t->wait.arg = 0;
  sl_chan_free_key(ch, key);
  return key;
}

/* The running receiver was handed a key but cancelled before it could
 * run: the value goes on to the next receiver, or back to the front of
 * the buffer, and the wait counts as cancelled. */
static int sl_chan_pass_on(sl_chan *ch, int key) {
  if (sl_queue_empty(&ch->recvq.waiters) && sl_chan_reserve(ch)) return SL_CHAN_NOMEM;
  ch->recvq.stats.acquired--;
  ch->recvq.stats.waited--;
  ch->recvq.stats.cancelled++;
  if (!sl_queue_empty(&ch->recvq.waiters)) sl_chan_hand(ch, key);
  else sl_chan_push_front(ch, key);
  return SL_R_OK;
}

int sl_chan_abandon(sl_chan *ch) {
  sl_task *t = sl_running_task();
  int key = t ? (int)t->wait.arg : 0, rc;
  if (key <= 0) return SL_R_NOTHELD;
  if ((rc = sl_chan_pass_on(ch, key)) == SL_R_OK) t->wait.arg = 0;
  return rc;
}

/* ---- close and fields ---- */

static void sl_chan_wake_all(sl_prim *q) {
  while (!sl_queue_empty(&q->waiters)) {
    sl_task *t = sl_chan_head(q);
    if (sl_chan_is_case(t)) {
      sl_chan_fire(t, 0, 1);
      continue;
    }
    sl_queue_remove(&t->wait.link);
    q->nwaiting--;
    sl_task_wake(t, SL_CHAN_WAKE_CLOSED);
  }
}

int sl_chan_close(sl_chan *ch) {
  if (ch->closed) return 0;
  ch->closed = 1;
  sl_chan_wake_all(&ch->recvq);
  sl_chan_wake_all(&ch->sendq);   /* their keys stay theirs to free */
  return 1;
}

double sl_chan_capacity(const sl_chan *ch) { return ch->cap; }

int sl_chan_count(const sl_chan *ch) { return (int)ch->count; }

int sl_chan_closed(const sl_chan *ch) { return ch->closed; }

int sl_chan_keys_used(const sl_chan *ch) { return ch->nkeys - (int)ch->nfree; }

/* ---- select ---- */

static sl_prim *sl_chan_side(const sl_chan_case *c) {
  return c->send ? &c->ch->sendq : &c->ch->recvq;
}

/* Unlinks every queued case of sel: the wait ended by why (a timeout or
 * a cancellation), or by a case firing (why < 0). */
static void sl_chan_unlink_cases(sl_chan_sel *sel, int why) {
  int i;
  for (i = 0; i < sel->n; i++) {
    sl_chan_case *c = &sel->cases[i];
    if (!c->queued) continue;
    sl_queue_remove(&c->proxy.wait.link);
    c->queued = 0;
    if (why < 0) sl_chan_side(c)->nwaiting--;
    else sl_prim_wait_lost(sl_chan_side(c), sel->t, why);
  }
}

/* The case whose proxy reached a queue's head is done (its channel has
 * moved the key), or its channel closed: the select is over. */
static void sl_chan_fire(sl_task *proxy, int key, int closed) {
  sl_chan_case *c = (sl_chan_case *)proxy;
  sl_chan_sel *sel = proxy->wait.obj;
  sel->fired = (int)(c - sel->cases) + 1;
  sel->key = key;
  sel->closed = closed;
  if (c->send && !closed) c->ownkey = 0;
  sl_chan_unlink_cases(sel, -1);
  if (!closed) {
    sl_chan_side(c)->stats.acquired++;
    sl_chan_side(c)->stats.waited++;
  }
  sl_task_wake(sel->t, SL_WAKE_OK);
}

static int sl_chan_sel_unwait(sl_task *t, int why) {
  sl_chan_unlink_cases(t->wait.obj, why);
  return 1;
}

sl_chan_sel *sl_chan_sel_new(int n) {
  sl_chan_sel *sel;
  int i;
  if (n < 1) return NULL;
  if (!(sel = calloc(1, sizeof *sel + (size_t)(n - 1) * sizeof sel->cases[0]))) return NULL;
  sel->n = n;
  for (i = 0; i < n; i++) {
    sl_task *p = &sel->cases[i].proxy;   /* no scheduler: never resumed */
    sl_queue_init(&p->wait.link);
    p->status = SL_WAITING;
    p->wait.obj = sel;
    p->wait.what = "select";
  }
  return sel;
}

void sl_chan_sel_case(sl_chan_sel *sel, int i, sl_chan *ch, int send) {
  sel->cases[i].ch = ch;
  sel->cases[i].send = (uint8_t)(send != 0);
}

/* Does the first case, in order, that can be done now. */
static int sl_chan_sel_try(sl_chan_sel *sel) {
  int i, r;
  for (i = 0; i < sel->n; i++) {
    sl_chan_case *c = &sel->cases[i];
    r = c->send ? sl_chan_try_send(c->ch) : sl_chan_try_recv(c->ch);
    if (r == SL_R_QUEUED) continue;
    if (r == SL_CHAN_NOMEM) return r;
    sel->fired = i + 1;
    sel->closed = r == SL_CHAN_CLOSED;
    sel->key = r > 0 ? r : 0;
    return SL_R_OK;
  }
  return SL_R_QUEUED;
}

/* Gives every send case a key for its value; all or none. */
static int sl_chan_sel_keys(sl_chan_sel *sel) {
  int i, k;
  for (i = 0; i < sel->n; i++) {
    sl_chan_case *c = &sel->cases[i];
    if (!c->send) continue;
    if (!(k = sl_chan_key(c->ch))) {
      while (--i >= 0) {
        c = &sel->cases[i];
        if (c->send) sl_chan_free_key(c->ch, (int)c->proxy.wait.arg), c->ownkey = 0;
      }
      return SL_CHAN_NOMEM;
    }
    c->proxy.wait.arg = k;
    c->ownkey = 1;
  }
  return 0;
}

/* SL_R_OK: a case was done at once (sl_chan_sel_fired, _key, _closed);
 * SL_R_QUEUED: the task is parked, its send cases' values go under
 * sl_chan_sel_case_key; else SL_R_* / SL_CHAN_NOMEM. */
int sl_chan_select(sl_chan_sel *sel, double timeout, int can_block) {
  sl_task *t = sl_running_task();
  int i, rc;
  if (!t) return SL_R_NOTASK;
  if (sl_task_cancel_due(t)) return SL_R_CANCELLED;
  if ((rc = sl_chan_sel_try(sel)) != SL_R_QUEUED) return rc;
  if (timeout == 0) return SL_R_TIMEDOUT;
  if (!can_block) return SL_R_NOBLOCK;
  if ((rc = sl_chan_sel_keys(sel))) return rc;
  for (i = 0; i < sel->n; i++) {
    sl_chan_case *c = &sel->cases[i];
    sl_queue_insert_tail(&sl_chan_side(c)->waiters, &c->proxy.wait.link);
    sl_chan_side(c)->nwaiting++;
    c->queued = 1;
  }
  sel->t = t;
  sl_task_park(t, "select", sel, sl_chan_sel_unwait);
  if (timeout >= 0) sl_task_arm(t, timeout);
  return SL_R_QUEUED;
}

int sl_chan_sel_fired(const sl_chan_sel *sel) { return sel->fired; }
int sl_chan_sel_closed(const sl_chan_sel *sel) { return sel->closed; }
int sl_chan_sel_key(const sl_chan_sel *sel) { return sel->key; }

int sl_chan_sel_case_key(const sl_chan_sel *sel, int i) {
  const sl_chan_case *c = &sel->cases[i];
  return c->ownkey ? (int)c->proxy.wait.arg : 0;
}

/* A recv case done while the task was parked: its key, freed (read and
 * clear it now). */
int sl_chan_sel_take(sl_chan_sel *sel) {
  int key = sel->key;
  if (!sel->fired || key <= 0 || sel->cases[sel->fired - 1].send) return SL_R_NOTHELD;
  sel->key = 0;
  sl_chan_free_key(sel->cases[sel->fired - 1].ch, key);
  return key;
}

/* The task was cancelled after a recv case was done for it, before it
 * ran: the value is passed on as by sl_chan_abandon. */
int sl_chan_sel_abandon(sl_chan_sel *sel) {
  int key = sel->key, rc;
  if (!sel->fired || key <= 0 || sel->cases[sel->fired - 1].send) return SL_R_NOTHELD;
  if ((rc = sl_chan_pass_on(sel->cases[sel->fired - 1].ch, key)) == SL_R_OK) sel->key = 0;
  return rc;
}

/* Frees the keys the send cases still own (their values cleared) and sel. */
void sl_chan_sel_done(sl_chan_sel *sel) {
  int i;
  if (!sel) return;
  for (i = 0; i < sel->n; i++) {
    sl_chan_case *c = &sel->cases[i];
    if (c->ownkey) sl_chan_free_key(c->ch, (int)c->proxy.wait.arg);
  }
  free(sel);
}
