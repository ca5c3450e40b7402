/*
 * test_prim_limit.c - unit tests of the p-limit state machine
 * (lib/sl_limit.c) without Lua: calls are slots, runners are task
 * records made "running" by as(), and what the Lua face would do (spawn
 * a runner, run a call) is spelled out step by step.
 *
 * Task 0 makes the calls; tasks 1..3 serve as runners; 4..5 await.
 */
#include "../lib/sl_prim.h"
#include "../lib/sl_ffi_limit.h"
#include "sl_check.h"

#define NT 6
#include "sl_fake_sched.h"

/* The fake tasks start in no scope; here they live in the root scope,
 * as spawned tasks do. */
static void setup_limit(void) {
  int i;
  setup();
  for (i = 0; i < NT; i++) sl_scope_add(&S.root, &T[i]);
}

static void teardown_limit(void) {
  int i;
  for (i = 0; i < NT; i++) sl_queue_remove(&T[i].member);
  teardown();
}

/* Submits a call as task 0: its slot; *reserved tells whether a place
 * was reserved for a new runner. */
static uint32_t submit(sl_limit *l, int *reserved) {
  int r;
  as(0);
  r = sl_limit_submit(l);
  *reserved = r > 0 ? (r & 1) : -1;
  return r > 0 ? (uint32_t)r >> 1 : 0;
}

/* "Spawns" task i as the runner of the place reserved last. */
static void spawn_runner(sl_limit *l, int i) {
  sl_limit_adopt(l, &T[i]);
  CHECK(T[i].shield == 1);
}

static void test_places_and_order(void) {
  sl_limit *l;
  sl_stats st;
  uint32_t c1, c2, c3;
  int res;
  setup_limit();
  l = sl_limit_new(2);
  sl_tls_task = NULL;
  CHECK(sl_limit_submit(l) == SL_R_NOTASK);
  c1 = submit(l, &res); CHECK(c1 && res == 1);
  spawn_runner(l, 1);
  c2 = submit(l, &res); CHECK(c2 && res == 1);
  spawn_runner(l, 2);
  c3 = submit(l, &res); CHECK(c3 && res == 0);   /* both places taken */
  CHECK(sl_limit_next(l) == 0);
  CHECK(sl_limit_active(l) == 2 && sl_limit_pending(l) == 1);
  CHECK(sl_limit_state(c1) == SL_LPENDING);      /* until a runner takes it */
  /* runner 2 begins first: it takes the head, whoever was spawned for it */
  as(2); CHECK(sl_limit_begin(l) == c1);
  CHECK(T[2].shield == 0 && sl_limit_state(c1) == SL_LRUNNING);
  as(1); CHECK(sl_limit_begin(l) == c2);
  /* c1 returns: runner 2 goes straight on with c3 */
  S.vnow = 1;
  as(2); CHECK(sl_limit_continue(l, c1) == c3);
  CHECK(sl_limit_state(c1) == SL_LFREE && sl_limit_active(l) == 2 && sl_limit_pending(l) == 0);
  as(1); CHECK(sl_limit_continue(l, c2) == 0);   /* nothing queued: runner 1 ends */
  CHECK(sl_limit_active(l) == 1);
  as(2); CHECK(sl_limit_continue(l, c3) == 0);
  CHECK(sl_limit_active(l) == 0 && sl_prim_held_by_me(sl_limit_prim(l)) == 0);
  sl_prim_stats(sl_limit_prim(l), &st);
  CHECK(st.acquired == 3 && st.waited == 1 && st.hist[0] == 2 && st.wait_total == 1);
  sl_limit_free(l);
  teardown_limit();
}

/* Awaiters of a queued or running call wake when it ends or is dropped. */
static void test_await_and_drop(void) {
  sl_limit *l;
  uint32_t c1, c2, c3;
  int res;
  setup_limit();
  l = sl_limit_new(1);
  c1 = submit(l, &res); spawn_runner(l, 1);
  c2 = submit(l, &res);
  c3 = submit(l, &res);
  CHECK(res == 0 && sl_limit_pending(l) == 2);
  as(1); CHECK(sl_limit_begin(l) == c1);
  as(4); CHECK(sl_limit_await(c1, 1) == SL_R_QUEUED && parked(4));
  as(5); CHECK(sl_limit_await(c2, 1) == SL_R_QUEUED && parked(5));
  as(3); CHECK(sl_limit_await(c3, 0) == SL_R_NOBLOCK);
  CHECK(sl_prim_waiting(sl_limit_prim(l)) == 2);
  /* dropping c2 wakes its awaiter only */
  CHECK(sl_limit_drop(c2) == 1 && sl_limit_drop(c2) == 0);
  CHECK(woken(5, SL_WAKE_OK) && parked(4) && sl_limit_pending(l) == 1);
  /* c1 ends: its awaiter wakes, the runner takes c3 (c2 is gone) */
  as(1); CHECK(sl_limit_continue(l, c1) == c3);
  CHECK(woken(4, SL_WAKE_OK));
  as(4); CHECK(sl_limit_await(c1, 1) == SL_R_OK);   /* ended: at once */
  /* c3 fails: the call ends and the place is given back */
  as(1); sl_limit_fail(l, c3);
  CHECK(sl_limit_active(l) == 0 && sl_limit_state(c3) == SL_LFREE);
  sl_limit_free(l);
  teardown_limit();
}

/* A runner about to begin finds its call gone (dropped) and ends; a
 * cancelled runner takes nothing; a shrink stops runners going on. */
static void test_runner_ends(void) {
  sl_limit *l;
  uint32_t c1, c2, c3;
  int res;
  setup_limit();
  l = sl_limit_new(2);
  c1 = submit(l, &res); spawn_runner(l, 1);
  CHECK(sl_limit_drop(c1) == 1);
  CHECK(sl_limit_active(l) == 0);      /* the runner will find nothing */
  as(1); CHECK(sl_limit_begin(l) == 0);
  CHECK(sl_limit_active(l) == 0);
  c1 = submit(l, &res); spawn_runner(l, 1);
  T[1].cancelled = 1;
  as(1); CHECK(sl_limit_begin(l) == 0);   /* cancelled: gives the place back */
  CHECK(sl_limit_active(l) == 0 && sl_limit_pending(l) == 1);
  T[1].cancelled = 0;
  CHECK(sl_limit_next(l) == 1); spawn_runner(l, 1);
  c2 = submit(l, &res); CHECK(res == 1); spawn_runner(l, 2);
  c3 = submit(l, &res); CHECK(res == 0);
  as(1); CHECK(sl_limit_begin(l) == c1);
  as(2); CHECK(sl_limit_begin(l) == c2);
  sl_limit_set(l, 1);                     /* never blocks */
  as(1); CHECK(sl_limit_continue(l, c1) == 0);   /* over the limit: ends */
  CHECK(sl_limit_next(l) == 0);           /* 1 active, limit 1 */
  as(2); CHECK(sl_limit_continue(l, c2) == c3);  /* under it again */
  as(2); CHECK(sl_limit_continue(l, c3) == 0);
  CHECK(sl_limit_active(l) == 0);
  sl_limit_free(l);
  teardown_limit();
}

/* The only place is held by the task that awaits a queued call. */
static void test_deadlock(void) {
  sl_limit *l;
  uint32_t c1, c2;
  int res;
  setup_limit();
  l = sl_limit_new(1);
  c1 = submit(l, &res); spawn_runner(l, 1);
  as(1); CHECK(sl_limit_begin(l) == c1);
  as(1); c2 = (uint32_t)sl_limit_submit(l) >> 1;
  CHECK(c2 && sl_limit_await(c2, 1) == SL_R_DEADLOCK);
  /* another task may wait: the runner can still move */
  as(4); CHECK(sl_limit_await(c2, 1) == SL_R_QUEUED);
  as(1); CHECK(sl_limit_continue(l, c1) == c2);
  as(1); CHECK(sl_limit_continue(l, c2) == 0);
  CHECK(woken(4, SL_WAKE_OK));
  sl_limit_free(l);
  teardown_limit();
}

int main(void) {
  RUN(test_places_and_order);
  RUN(test_await_and_drop);
  RUN(test_runner_ends);
  RUN(test_deadlock);
  return sl_check_done();
}
