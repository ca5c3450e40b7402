/*
 * sl_sched.c - ready queue, clock, timers and the wait/wake protocol.
 *
 * Everything here is plain C over the structs in sl_sched.h; resuming
 * coroutines and moving results in and out of Lua lives in sl_resume.c.
 *
 * Loop integration: a uv_check handle (unreferenced, always on) runs the
 * trampoline after every poll; a uv_idle handle is started only while
 * tasks are ready, so the poll does not block then; one uv_timer_t is set
 * to the earliest deadline of the timer heap.  Under the virtual clock
 * the uv timer is never used: when nothing is ready and no other handle
 * or request is active, the clock jumps to the next deadline.
 */
#include "sl_sched.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

char sl_park_sentinel;
__thread sl_task *sl_tls_task;

/* How many passes one check callback may run before polling I/O again:
 * enough to amortise the poll, few enough to keep I/O latency low. */
#define SL_PASSES_PER_TICK 64

/* The earliest timer of both heaps, and which heap holds it. */
static sl_timer *sl_next_timer(sl_sched *S, sl_heap **from) {
  sl_timer *a = sl_heap_min(&S->timers), *b = sl_heap_min(&S->weak);
  if (b && (!a || b->deadline < a->deadline)) {
    *from = &S->weak;
    return b;
  }
  *from = &S->timers;
  return a;
}

static void sl_fire_due(sl_sched *S, double now) {
  sl_timer *m;
  sl_heap *h;
  while ((m = sl_next_timer(S, &h)) && m->deadline <= now) {
    /* Lateness is only meaningful on the real clock. */
    if (!S->virtual_clock) S->lag[S->nlag++ % SL_LAG_WINDOW] = now - m->deadline;
    sl_heap_remove(h, m);
    m->cb(m);
  }
}

/* Active handles and requests on the loop that are not the scheduler's. */
static unsigned sl_foreign_activity(sl_sched *S) {
  unsigned n = S->loop->active_handles + S->loop->active_reqs.count;
  if (uv_is_active((uv_handle_t *)&S->idle)) n--;
  if (uv_is_active((uv_handle_t *)&S->uvtimer)) n--;
  return n;
}

static void sl_idle_cb(uv_idle_t *h) { (void)h; }

static void sl_uvtimer_cb(uv_timer_t *h);

/* Sets the loop handles to match the queues after any change. */
static void sl_sched_update(sl_sched *S) {
  sl_timer *m;
  sl_heap *h;
  if (S->closing) return;
  if (S->virtual_clock) {
    /* Only an ordinary timer moves virtual time; weak ones fire on the
     * way when they are due first. */
    while (sl_queue_empty(&S->ready) && (m = sl_heap_min(&S->timers)) &&
           sl_foreign_activity(S) == 0) {
      if ((m = sl_next_timer(S, &h))->deadline > S->vnow) S->vnow = m->deadline;
      sl_fire_due(S, S->vnow);
    }
  } else {
    sl_fire_due(S, sl_now(S));
    if (!(m = sl_next_timer(S, &h))) {
      uv_timer_stop(&S->uvtimer);
    } else if (m->deadline != S->armed || !uv_is_active((uv_handle_t *)&S->uvtimer)) {
      /* Re-arm only when the earliest deadline changed: re-arming on
       * every iteration would keep pushing the uv timer ahead. */
      double ms = ceil((m->deadline - sl_now(S)) * 1e3);
      S->armed = m->deadline;
      uv_timer_start(&S->uvtimer, sl_uvtimer_cb, ms < 1 ? 1 : (uint64_t)ms, 0);
    }
    /* Weak timers alone do not keep the loop running. */
    if (S->timers.len) uv_ref((uv_handle_t *)&S->uvtimer);
    else uv_unref((uv_handle_t *)&S->uvtimer);
  }
  if (!sl_queue_empty(&S->ready)) uv_idle_start(&S->idle, sl_idle_cb);
  else uv_idle_stop(&S->idle);
}

static void sl_uvtimer_cb(uv_timer_t *h) {
  sl_sched *S = h->data;
  S->armed = -1;
  S->pass_now = 0;
  sl_sched_update(S);
}

static void sl_check_cb(uv_check_t *h) {
  sl_sched *S = h->data;
  int i;
  /* One clock read per tick serves the wait statistics of every park in
   * it (timers still read the clock: their deadlines must not be early). */
  S->pass_now = sl_now(S);
  for (i = 0; i < SL_PASSES_PER_TICK && !sl_queue_empty(&S->ready); i++) {
    /* Timers that came due during a long pass fire before the next one,
     * not after all of them (a task yielding in a CPU loop would delay
     * them by up to SL_PASSES_PER_TICK passes). */
    if (i > 0 && !S->virtual_clock && (S->timers.len || S->weak.len)) sl_fire_due(S, sl_now(S));
    sl_sched_pass(S);
  }
  sl_sched_update(S);
}

int sl_sched_init(sl_sched *S, uv_loop_t *loop, lua_State *L, int virtual_clock) {
  int rc;
  S->loop = loop;
  S->L = L;
  sl_queue_init(&S->ready);
  S->ntasks = 0;
  sl_heap_init(&S->timers);
  sl_heap_init(&S->weak);
  S->current = NULL;
  S->vnow = 0;
  S->armed = -1;
  S->t0 = uv_hrtime();
  S->next_id = 1;
  S->nwaiting = S->nunhandled = 0;
  S->virtual_clock = (uint8_t)(virtual_clock != 0);
  S->closing = 0;
  S->ref_task_mt = S->ref_failed_mt = S->ref_noenv = S->ref_unobserved = LUA_NOREF;
  S->ref_entry = S->ref_xpcall = S->ref_scope_mt = S->ref_pool = LUA_NOREF;
  S->npool = 0;
  S->task_mt = S->failed_mt = S->scope_mt = NULL;
  S->ref_anchors = LUA_NOREF;
  S->afree = NULL;
  S->nafree = S->acap = S->anext = 0;
  S->on_main_done = S->on_unhandled = NULL;
  S->on_report = NULL;
  S->on_warn = NULL;
  S->data = NULL;
  S->nlag = 0;
  S->warn_blocking = 0;
  sl_scope_init(&S->root, S, 1);
  if ((rc = uv_timer_init(loop, &S->uvtimer))) return rc;
  if ((rc = uv_check_init(loop, &S->check))) return rc;
  if ((rc = uv_idle_init(loop, &S->idle))) return rc;
  S->uvtimer.data = S->check.data = S->idle.data = S;
  uv_check_start(&S->check, sl_check_cb);
  uv_unref((uv_handle_t *)&S->check);
  return 0;
}

void sl_sched_close(sl_sched *S) {
  S->closing = 1;
  uv_close((uv_handle_t *)&S->uvtimer, NULL);
  uv_close((uv_handle_t *)&S->check, NULL);
  uv_close((uv_handle_t *)&S->idle, NULL);
  sl_heap_free(&S->timers);
  sl_heap_free(&S->weak);
  free(S->afree);   /* slots freed from now on are not reused */
  S->afree = NULL;
  S->nafree = S->acap = 0;
}

double sl_now(sl_sched *S) {
  if (S->virtual_clock) return S->vnow;
  return (double)(uv_hrtime() - S->t0) * 1e-9;
}

int sl_sched_alive(sl_sched *S) {
  return !sl_queue_empty(&S->ready) || S->timers.len > 0;
}

int sl_sched_arm_weak(sl_sched *S, sl_timer *t, double deadline) {
  return sl_heap_push(&S->weak, t, deadline);
}

static int sl_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

void sl_sched_lag(sl_sched *S, double out[3]) {
  double v[SL_LAG_WINDOW];
  size_t n = S->nlag < SL_LAG_WINDOW ? (size_t)S->nlag : SL_LAG_WINDOW;
  out[0] = out[1] = out[2] = 0;
  if (n == 0) return;
  memcpy(v, S->lag, n * sizeof *v);
  qsort(v, n, sizeof *v, sl_cmp_double);
  out[0] = v[(size_t)ceil(0.50 * (double)n) - 1];
  out[1] = v[(size_t)ceil(0.99 * (double)n) - 1];
  out[2] = v[n - 1];
}

/* ---- tasks ---- */

static void sl_task_timer_cb(sl_timer *tm) {
  sl_task *t = sl_queue_data(tm, sl_task, timer);
  sl_task_interrupt(t, SL_WAKE_TIMEOUT);
}

void sl_task_init(sl_task *t, sl_sched *S, sl_scope *scope) {
  sl_queue_init(&t->ready);
  sl_queue_init(&t->member);
  sl_queue_init(&t->awaiters);
  sl_queue_init(&t->held);
  sl_queue_init(&t->wait.link);
  t->wait.what = NULL;
  t->wait.obj = NULL;
  t->wait.unwait = NULL;
  t->wait.arg = 0;
  t->wait_kind = SL_WAIT_OTHER;
  t->wait.since = 0;
  t->timer.idx = 0;
  t->timer.cb = sl_task_timer_cb;
  t->co = NULL;
  t->sched = S;
  t->ref = LUA_NOREF;
  t->id = S->next_id++;
  t->nargs = 0;
  t->shield = 0;
  t->status = SL_READY;
  t->wake = SL_WAKE_OK;
  t->started = t->cancelled = t->observed = t->is_main = t->wrapped = 0;
  S->ntasks++;
  t->scope = NULL;
  sl_scope_add(scope ? scope : &S->root, t);
}

void sl_task_make_ready(sl_task *t, int wake) {
  sl_sched *S = t->sched;
  t->status = SL_READY;
  t->wake = (uint8_t)wake;
  sl_queue_insert_tail(&S->ready, &t->ready);
  if (!S->closing) uv_idle_start(&S->idle, sl_idle_cb);
}

void sl_task_park(sl_task *t, const char *what, void *obj, sl_unwait_cb unwait) {
  t->status = SL_WAITING;
  t->wait.what = what;
  t->wait.obj = obj;
  t->wait.unwait = unwait;
  t->wait_kind = SL_WAIT_OTHER;
  t->wait.since = t->sched->virtual_clock ? t->sched->vnow : t->sched->pass_now;
  t->sched->nwaiting++;
}

void sl_task_wake(sl_task *t, int wake) {
  if (t->status != SL_WAITING) return;
  sl_heap_remove(&t->sched->timers, &t->timer);
  t->wait.what = NULL;
  t->wait.obj = NULL;
  t->wait.unwait = NULL;
  t->sched->nwaiting--;
  sl_task_make_ready(t, wake);
}

void sl_task_interrupt(sl_task *t, int why) {
  if (t->status != SL_WAITING) return;
  if (t->wait.unwait && !t->wait.unwait(t, why)) return;
  sl_task_wake(t, why);
}

int sl_task_cancel(sl_task *t) {
  if (t->status >= SL_DONE) return 0;
  t->cancelled = 1;
  if (t->status == SL_WAITING && t->shield == 0)
    sl_task_interrupt(t, SL_WAKE_CANCEL);
  return 1;
}

int sl_task_arm(sl_task *t, double seconds) {
  sl_sched *S = t->sched;
  return sl_heap_push(&S->timers, &t->timer, sl_now(S) + seconds);
}

/* ---- scopes ---- */

static void sl_scope_deadline_cb(sl_timer *tm) {
  sl_scope *s = sl_queue_data(tm, sl_scope, deadline);
  s->timed_out = 1;
  sl_scope_cancel(s);
}

void sl_scope_init(sl_scope *s, sl_sched *S, int root) {
  sl_queue_init(&s->children);
  s->deadline.idx = 0;
  s->deadline.cb = sl_scope_deadline_cb;
  s->sched = S;
  s->owner = s->failed = NULL;
  s->failed_ref = s->ref = LUA_NOREF;
  s->nlive = 0;
  s->cancelled = s->timed_out = s->closed = 0;
  s->root = (uint8_t)(root != 0);
}

void sl_scope_add(sl_scope *s, sl_task *t) {
  t->scope = s;
  sl_queue_insert_tail(&s->children, &t->member);
  s->nlive++;
  if (s->cancelled) t->cancelled = 1;
}

void sl_scope_cancel(sl_scope *s) {
  sl_queue *q, *next;
  if (s->cancelled) return;
  s->cancelled = 1;
  /* Cancelling a child can finish nothing synchronously (it only wakes),
   * but keep the next pointer anyway so the walk is robust. */
  for (q = s->children.next; q != &s->children; q = next) {
    next = q->next;
    sl_task_cancel(sl_queue_data(q, sl_task, member));
  }
}

int sl_scope_arm(sl_scope *s, double seconds) {
  return sl_heap_push(&s->sched->timers, &s->deadline, sl_now(s->sched) + seconds);
}
