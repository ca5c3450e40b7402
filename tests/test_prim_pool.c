/*
 * test_prim_pool.c - unit tests of the resource pool's state machine
 * (lib/sl_pool.c) without Lua: slots stand for resources, fake tasks
 * (tests/sl_fake_sched.h) for the acquiring tasks, and the creations the
 * Lua face would run in tasks are finished by hand.
 */
#include "../lib/sl_prim.h"
#include "../lib/sl_ffi_pool.h"
#include "sl_check.h"

#define NT 8
#include "sl_fake_sched.h"

static int size(sl_pool *p) { return sl_pool_size(p); }

/* Idle slots are reused most recent first; creations count toward max. */
static void test_create_and_reuse(void) {
  sl_pool *p;
  int a, b, c;
  setup();
  p = sl_pool_new(2, 0, -1, -1, -1, -1);
  sl_tls_task = NULL;
  CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_NOTASK);
  as(0);
  CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  CHECK((a = sl_pool_need_create(p, 0)) > 0);
  CHECK(sl_pool_need_create(p, 0) == 0);        /* one waiter, one creation */
  CHECK(size(p) == 1 && sl_pool_pending(p) == 1);
  as(1);
  CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  CHECK((b = sl_pool_need_create(p, 0)) > 0 && b != a);
  as(2);
  CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  CHECK(sl_pool_need_create(p, 0) == 0);        /* at max: never a third */
  CHECK(size(p) == 2 && sl_prim_waiting(sl_pool_prim(p)) == 3);
  /* the second creation finishes first: it serves the head waiter */
  CHECK(sl_pool_created(p, b, 1) == SL_POOL_KEPT);
  CHECK(woken(0, SL_WAKE_OK) && parked(1) && parked(2));
  as(0); CHECK(sl_pool_granted(p) == b);
  CHECK(sl_pool_created(p, a, 1) == SL_POOL_KEPT);
  CHECK(woken(1, SL_WAKE_OK));
  as(1); CHECK(sl_pool_granted(p) == a);
  CHECK(sl_pool_active(p) == 2 && sl_pool_idle(p) == 0 && sl_pool_pending(p) == 0);
  /* a release goes straight to waiter 2: a newcomer gets nothing */
  as(0); CHECK(sl_pool_release(p, b, 2) == SL_POOL_KEPT);
  CHECK(woken(2, SL_WAKE_OK));
  as(3); CHECK(sl_pool_acquire(p, 2, 0, 1) == SL_R_TIMEDOUT);
  as(1); CHECK(sl_pool_release(p, a, 3) == SL_POOL_KEPT);
  as(2); CHECK(sl_pool_release(p, b, 4) == SL_POOL_KEPT);
  CHECK(sl_pool_idle(p) == 2);
  as(3); CHECK((c = sl_pool_acquire(p, 5, -1, 1)) == b);   /* the warmest */
  CHECK(sl_pool_slot_uses(p, b) == 3 && sl_pool_slot_created(p, b) == 1);
  /* releasing what is not borrowed changes nothing */
  CHECK(sl_pool_release(p, a, 5) == SL_R_NOTHELD);
  CHECK(sl_pool_release(p, 0, 5) == SL_R_NOTHELD);
  CHECK(sl_pool_release(p, 99, 5) == SL_R_NOTHELD);
  CHECK(sl_pool_remove(p, a) == SL_R_NOTHELD);
  CHECK(sl_pool_release(p, c, 5) == SL_POOL_KEPT);
  CHECK(sl_pool_release(p, c, 5) == SL_R_NOTHELD);
  CHECK(sl_pool_idle(p) == 2 && sl_pool_active(p) == 0);
  sl_pool_free(p);
  teardown();
}

/* A waiter that times out or is cancelled leaves; the creation made
 * while it waited goes to the next waiter, or idle. */
static void test_leave_and_failures(void) {
  sl_pool *p;
  sl_stats st;
  sl_pool_counts k;
  int a, b;
  setup();
  p = sl_pool_new(2, 0, -1, -1, -1, -1);
  as(0); CHECK(sl_pool_acquire(p, 0, 1, 1) == SL_R_QUEUED);
  CHECK((a = sl_pool_need_create(p, 0)) > 0);
  as(1); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  CHECK((b = sl_pool_need_create(p, 0)) > 0);
  fire_next_timer();                            /* 0 times out at 1 */
  CHECK(woken(0, SL_WAKE_TIMEOUT) && parked(1));
  sl_task_cancel(&T[1]);
  CHECK(woken(1, SL_WAKE_CANCEL));
  CHECK(sl_prim_waiting(sl_pool_prim(p)) == 0 && sl_pool_pending(p) == 2);
  CHECK(sl_pool_created(p, a, 2) == SL_POOL_KEPT);
  CHECK(sl_pool_idle(p) == 1);
  /* a failure fails the head waiter only if creations cannot cover it */
  as(2); CHECK(sl_pool_acquire(p, 2, -1, 1) > 0);  /* takes a */
  as(3); CHECK(sl_pool_acquire(p, 2, -1, 1) == SL_R_QUEUED);
  CHECK(sl_pool_create_failed(p, b, 7, 2) == 1);
  CHECK(woken(3, SL_POOL_WAKE_FAILED));
  as(3); CHECK(sl_pool_granted(p) == 7);
  sl_pool_counts_get(p, &k);
  CHECK(k.create_failures == 1 && k.created == 1 && k.create_at == 2 + 0.1 && k.backoff == 0.2);
  CHECK(sl_pool_create_delay(p, 2) > 0.099 && sl_pool_create_delay(p, 3) == 0);
  /* without waiters, no creation for min before the backoff is over */
  sl_prim_stats(sl_pool_prim(p), &st);
  CHECK(st.timeouts == 1 && st.cancelled == 1 && st.acquired == 1);
  sl_pool_free(p);
  p = sl_pool_new(2, 2, -1, -1, -1, -1);
  CHECK((a = sl_pool_need_create(p, 0)) > 0);
  CHECK(sl_pool_create_failed(p, a, 1, 0) == 0);
  CHECK(sl_pool_need_create(p, 0.05) == 0);
  CHECK((a = sl_pool_need_create(p, 0.1)) > 0);
  CHECK((b = sl_pool_need_create(p, 0.1)) > 0);
  CHECK(sl_pool_created(p, a, 0.2) == SL_POOL_KEPT);
  sl_pool_counts_get(p, &k);
  CHECK(k.backoff == 0.1 && k.create_at == 0);   /* reset by the success */
  sl_pool_create_dropped(p, b);
  CHECK(size(p) == 1);
  sl_pool_free(p);
  teardown();
}

/* A hand-off to a task cancelled before it ran passes on. */
static void test_abandon(void) {
  sl_pool *p;
  sl_stats st;
  int a;
  setup();
  p = sl_pool_new(1, 0, -1, -1, -1, -1);
  as(0); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  a = sl_pool_need_create(p, 0);
  CHECK(sl_pool_created(p, a, 0) == SL_POOL_KEPT && woken(0, SL_WAKE_OK));
  as(1); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  as(0); CHECK(sl_pool_release(p, a, 1) == SL_POOL_KEPT);
  CHECK(woken(1, SL_WAKE_OK));
  as(1); CHECK(sl_pool_abandon(p, a, 1) == SL_POOL_KEPT);
  CHECK(woken(2, SL_WAKE_OK));
  CHECK(sl_pool_slot_uses(p, a) == 2);
  sl_prim_stats(sl_pool_prim(p), &st);
  CHECK(st.acquired == 2 && st.cancelled == 1);
  sl_pool_free(p);
  teardown();
}

/* max_uses and max_lifetime at release; idle_timeout (above min) and
 * max_lifetime by eviction. */
static void test_expiry(void) {
  sl_pool *p;
  int a, b;
  setup();
  p = sl_pool_new(2, 0, -1, -1, -1, 2);
  as(0); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  a = sl_pool_need_create(p, 0);
  CHECK(sl_pool_created(p, a, 0) == SL_POOL_KEPT && woken(0, SL_WAKE_OK));
  as(0);
  CHECK(sl_pool_release(p, a, 1) == SL_POOL_KEPT);
  CHECK(sl_pool_acquire(p, 1, -1, 1) == a);
  CHECK(sl_pool_release(p, a, 1) == SL_POOL_DROP);   /* second use */
  CHECK(size(p) == 0);
  sl_pool_free(p);

  p = sl_pool_new(3, 1, -1, 10, 100, -1);
  a = sl_pool_need_create(p, 0);
  CHECK(sl_pool_need_create(p, 0) == 0);
  CHECK(sl_pool_created(p, a, 0) == SL_POOL_KEPT);
  as(0);
  CHECK(sl_pool_acquire(p, 0, -1, 1) == a);
  CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  b = sl_pool_need_create(p, 0);
  CHECK(sl_pool_created(p, b, 0) == SL_POOL_KEPT && woken(0, SL_WAKE_OK));
  as(0);
  CHECK(sl_pool_release(p, a, 0) == SL_POOL_KEPT);
  CHECK(sl_pool_release(p, b, 5) == SL_POOL_KEPT);
  CHECK(sl_pool_evict(p, 9) == 0);
  CHECK(sl_pool_evict(p, 10) == a);          /* idle 10 s, above min */
  CHECK(sl_pool_evict(p, 10) == 0);
  CHECK(sl_pool_evict(p, 50) == 0);          /* b is idle 45 s, but min is 1 */
  CHECK(sl_pool_evict(p, 100) == b);         /* its lifetime is over */
  CHECK(size(p) == 0);
  sl_pool_free(p);
  teardown();
}

/* Closing rejects waiters and acquires, drops what comes back; drain
 * takes the idle ones, then (forced) the borrowed ones. */
static void test_close(void) {
  sl_pool *p;
  int a, b, c;
  setup();
  p = sl_pool_new(3, 0, 1, -1, -1, -1);
  as(0); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  a = sl_pool_need_create(p, 0);
  as(1); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_POOL_R_FULL);   /* max_waiting 1 */
  CHECK(sl_pool_created(p, a, 0) == SL_POOL_KEPT && woken(0, SL_WAKE_OK));
  as(1); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  b = sl_pool_need_create(p, 0);
  CHECK(sl_pool_created(p, b, 0) == SL_POOL_KEPT && woken(1, SL_WAKE_OK));
  as(2); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  c = sl_pool_need_create(p, 0);
  as(1); CHECK(sl_pool_release(p, b, 0) == SL_POOL_KEPT);   /* to 2 */
  CHECK(woken(2, SL_WAKE_OK));
  as(2); CHECK(sl_pool_release(p, b, 0) == SL_POOL_KEPT);
  as(3); CHECK(sl_pool_acquire(p, 0, -1, 1) == b);
  as(4); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_R_QUEUED);
  CHECK(sl_pool_close(p) == 1 && sl_pool_close(p) == 0);
  CHECK(woken(4, SL_POOL_WAKE_CLOSED));
  as(5); CHECK(sl_pool_acquire(p, 0, -1, 1) == SL_POOL_R_CLOSED);
  CHECK(sl_pool_need_create(p, 0) == 0);
  CHECK(sl_pool_created(p, c, 1) == SL_POOL_DROP);
  as(3); CHECK(sl_pool_release(p, b, 1) == SL_POOL_DROP);
  CHECK(sl_pool_drain(p, 0) == 0 && size(p) == 1);
  CHECK(sl_pool_drain(p, 1) == a && size(p) == 0);
  CHECK(sl_pool_drain(p, 1) == 0);
  sl_pool_free(p);
  teardown();
}

int main(void) {
  RUN(test_create_and_reuse);
  RUN(test_leave_and_failures);
  RUN(test_abandon);
  RUN(test_expiry);
  RUN(test_close);
  return sl_check_done();
}
