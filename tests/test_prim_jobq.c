/*
 * test_prim_jobq.c - unit tests of the p-queue state machine
 * (lib/sl_jobq.c) without Lua: jobs are slots, runners are task records
 * made "running" by as(), and what the Lua face would do (spawn a
 * runner, run a job, park the keeper) is spelled out step by step.
 *
 * Task 0 adds the jobs; tasks 1..3 serve as runners; 4..5 wait.
 */
#include "../lib/sl_prim.h"
#include "../lib/sl_ffi_jobq.h"
#include "sl_check.h"

#include <math.h>

#define NT 6
#include "sl_fake_sched.h"

static void setup_q(void) {
  int i;
  setup();
  for (i = 0; i < NT; i++) sl_scope_add(&S.root, &T[i]);
}

static void teardown_q(void) {
  int i;
  for (i = 0; i < NT; i++) sl_queue_remove(&T[i].member);
  teardown();
}

/* Adds a job as task 0: its slot; *reserved tells whether a place was
 * reserved for a new runner (or, slot 0, gets the answer). */
static uint32_t add(sl_jobq *q, double priority, double timeout, int *reserved) {
  int r;
  as(0);
  r = sl_jobq_submit(q, priority, timeout);
  *reserved = r > 0 ? (r & 1) : r;
  return r > 0 ? (uint32_t)r >> 1 : 0;
}

/* "Spawns" task i as the runner of the place reserved last. */
static void spawn_runner(sl_jobq *q, int i) {
  sl_jobq_adopt(q, &T[i]);
  CHECK(T[i].shield == 1);
}

static void test_priority_order(void) {
  sl_jobq *q;
  uint32_t a, b, c, d;
  int res;
  setup_q();
  q = sl_jobq_new(2, 0, 0, 0, HUGE_VAL, 0);
  sl_tls_task = NULL;
  CHECK(sl_jobq_submit(q, 0, -1) == SL_R_NOTASK);
  a = add(q, 5, -1, &res); CHECK(a && res == 1);
  spawn_runner(q, 1);
  b = add(q, 1, -1, &res); CHECK(b && res == 1);
  spawn_runner(q, 2);
  c = add(q, 3, -1, &res); CHECK(c && res == 0);   /* both places taken */
  d = add(q, 1, -1, &res); CHECK(d && res == 0);
  CHECK(sl_jobq_next(q) == 0);
  /* two runners about to begin: two jobs count as running already */
  CHECK(sl_jobq_size(q) == 2 && sl_jobq_running(q) == 2);
  CHECK(sl_jobq_state(a) == SL_QPENDING);
  /* runners take the best job when they begin: b, then d (FIFO in 1) */
  as(2); CHECK(sl_jobq_begin(q) == (int)b);
  CHECK(T[2].shield == 0 && sl_jobq_state(b) == SL_QRUNNING);
  as(1); CHECK(sl_jobq_begin(q) == (int)d);
  as(1); CHECK(sl_jobq_continue(q, d) == (int)c);
  CHECK(sl_jobq_state(d) == SL_QFREE);
  as(2); CHECK(sl_jobq_continue(q, b) == (int)a);
  as(1); CHECK(sl_jobq_continue(q, c) == 0);   /* nothing pending: it ends */
  as(2); CHECK(sl_jobq_continue(q, a) == 0);
  CHECK(sl_jobq_size(q) == 0 && sl_jobq_running(q) == 0);
  CHECK(sl_prim_held_by_me(sl_jobq_prim(q)) == 0);
  sl_jobq_free(q);
  teardown_q();
}

/* Cap 2 per second: the third start waits, in a parked keeper, exactly
 * until the first start leaves the window. */
static void test_interval_cap(void) {
  sl_jobq *q;
  uint32_t a, b, c, d;
  int res;
  setup_q();
  q = sl_jobq_new(HUGE_VAL, 1, 2, 0, HUGE_VAL, 0);
  a = add(q, 0, -1, &res); CHECK(res == 1); spawn_runner(q, 1);
  b = add(q, 0, -1, &res); CHECK(res == 1); spawn_runner(q, 2);
  c = add(q, 0, -1, &res); CHECK(res == 0);    /* the cap allows two now */
  as(1); CHECK(sl_jobq_begin(q) == (int)a);
  S.vnow = 0.5;
  as(2); CHECK(sl_jobq_begin(q) == (int)b);
  /* a returns: the cap is full, runner 1 parks until 1 (a's start + 1) */
  as(1); CHECK(sl_jobq_continue(q, a) == -1 && parked(1));
  CHECK(sl_heap_min(&S.timers)->deadline == 1);
  /* b returns: a keeper waits already, so runner 2 gives its place back */
  as(2); CHECK(sl_jobq_continue(q, b) == 0);
  d = add(q, -1, -1, &res); CHECK(res == 0);   /* the keeper is enough */
  fire_next_timer();
  CHECK(S.vnow == 1 && woken(1, SL_WAKE_TIMEOUT));
  as(1); CHECK(sl_jobq_retake(q) == (int)d);   /* the better one */
  /* b's start (0.5) is still in the window and runner 1 is busy: a new
   * runner is wanted to wait for the window */
  CHECK(sl_jobq_next(q) == 1); spawn_runner(q, 2);
  CHECK(sl_jobq_next(q) == 0);
  as(2); CHECK(sl_jobq_begin(q) == -1 && parked(2));
  CHECK(sl_heap_min(&S.timers)->deadline == 1.5);
  as(1); CHECK(sl_jobq_continue(q, d) == 0);   /* a keeper waits: it ends */
  fire_next_timer();
  CHECK(S.vnow == 1.5 && woken(2, SL_WAKE_TIMEOUT));
  as(2); CHECK(sl_jobq_retake(q) == (int)c);
  as(2); CHECK(sl_jobq_continue(q, c) == 0);
  CHECK(sl_jobq_throttled(q) == 2);            /* c and d waited for the window */
  sl_jobq_free(q);
  teardown_q();
}

/* Pausing or emptying the queue sends the keeper away. */
static void test_pause_and_keeper(void) {
  sl_jobq *q;
  uint32_t a, b;
  int res;
  setup_q();
  q = sl_jobq_new(HUGE_VAL, 1, 1, 0, HUGE_VAL, 1);   /* paused */
  CHECK(sl_jobq_paused(q));
  a = add(q, 0, -1, &res); CHECK(res == 0);
  b = add(q, 0, -1, &res); CHECK(res == 0);
  CHECK(sl_jobq_size(q) == 2 && sl_jobq_running(q) == 0);
  sl_jobq_start(q);
  CHECK(sl_jobq_next(q) == 1); spawn_runner(q, 1);
  CHECK(sl_jobq_next(q) == 0);                 /* one start allowed now */
  as(1); CHECK(sl_jobq_begin(q) == (int)a);
  as(1); CHECK(sl_jobq_continue(q, a) == -1 && parked(1));
  sl_jobq_pause(q);
  CHECK(woken(1, SL_WAKE_OK) && S.timers.len == 0);
  as(1); CHECK(sl_jobq_retake(q) == 0);        /* paused: it ends */
  sl_jobq_start(q);
  CHECK(sl_jobq_next(q) == 1); spawn_runner(q, 2);   /* to wait for the window */
  as(2); CHECK(sl_jobq_begin(q) == -1 && parked(2));
  CHECK(sl_jobq_drop(b) == 1 && sl_jobq_drop(b) == 0);
  CHECK(woken(2, SL_WAKE_OK));                 /* nothing pending */
  as(2); CHECK(sl_jobq_retake(q) == 0);
  sl_jobq_free(q);
  teardown_q();
}

/* A job running past its timeout cancels its runner and is marked. */
static void test_timeout(void) {
  sl_jobq *q;
  uint32_t a, b;
  int res;
  sl_stats st;
  setup_q();
  q = sl_jobq_new(1, 0, 0, 2, HUGE_VAL, 0);
  a = add(q, 0, -1, &res); spawn_runner(q, 1);
  b = add(q, 0, 5, &res);
  as(1); CHECK(sl_jobq_begin(q) == (int)a);
  CHECK(S.timers.len == 1 && sl_jobq_timed_out(a) == 0);
  fire_next_timer();
  CHECK(S.vnow == 2 && T[1].cancelled && sl_jobq_timed_out(a) == 2);
  as(1); sl_jobq_fail(q, a);                   /* the runner ends with the error */
  CHECK(sl_jobq_running(q) == 0 && sl_jobq_state(a) == SL_QFREE);
  T[1].cancelled = 0;
  CHECK(sl_jobq_next(q) == 1); spawn_runner(q, 1);
  as(1); CHECK(sl_jobq_begin(q) == (int)b);
  CHECK(sl_heap_min(&S.timers)->deadline == 7);   /* its own 5 s */
  as(1); CHECK(sl_jobq_continue(q, b) == 0);
  CHECK(S.timers.len == 0);
  sl_prim_stats(sl_jobq_prim(q), &st);
  CHECK(st.timeouts == 1 && st.acquired == 2 && st.waited == 1 && st.wait_total == 2);
  sl_jobq_free(q);
  teardown_q();
}

/* Awaiters of jobs, and waiters for empty/idle/size, wake on time. */
static void test_waits(void) {
  sl_jobq *q;
  uint32_t a, b, c;
  int res;
  setup_q();
  q = sl_jobq_new(1, 0, 0, 0, 2, 0);
  as(4); CHECK(sl_jobq_wait(q, 0, 1) == SL_R_OK);   /* idle already */
  a = add(q, 0, -1, &res); spawn_runner(q, 1);
  b = add(q, 0, -1, &res);
  c = add(q, 0, -1, &res);
  CHECK(add(q, 0, -1, &res) == 0 && res == SL_R_TOOMUCH);   /* max_size 2 */
  as(1); CHECK(sl_jobq_begin(q) == (int)a);
  as(4); CHECK(sl_jobq_wait(q, 0, 1) == SL_R_QUEUED && parked(4));
  as(5); CHECK(sl_jobq_wait(q, 2, 1) == SL_R_QUEUED && parked(5));
  as(3); CHECK(sl_jobq_wait(q, 1, 0) == SL_R_NOBLOCK);
  as(2); CHECK(sl_jobq_await(c, 1) == SL_R_QUEUED && parked(2));
  CHECK(sl_prim_waiting(sl_jobq_prim(q)) == 1);
  CHECK(sl_jobq_drop(c) == 1);                 /* size 1 < 2; c's awaiter wakes */
  CHECK(woken(2, SL_WAKE_OK) && woken(5, SL_WAKE_OK) && parked(4));
  as(2); CHECK(sl_jobq_await(c, 1) == SL_R_OK);
  as(1); CHECK(sl_jobq_continue(q, a) == (int)b);
  CHECK(parked(4));
  as(1); CHECK(sl_jobq_continue(q, b) == 0);   /* the last runner leaves: idle */
  CHECK(woken(4, SL_WAKE_OK));
  sl_jobq_free(q);
  teardown_q();
}

/* The only place is held by the task that awaits a pending job. */
static void test_deadlock(void) {
  sl_jobq *q;
  uint32_t a, b;
  int res;
  setup_q();
  q = sl_jobq_new(1, 0, 0, 0, HUGE_VAL, 0);
  a = add(q, 0, -1, &res); spawn_runner(q, 1);
  as(1); CHECK(sl_jobq_begin(q) == (int)a);
  as(1); b = (uint32_t)sl_jobq_submit(q, 0, -1) >> 1;
  CHECK(b && sl_jobq_await(b, 1) == SL_R_DEADLOCK);
  as(4); CHECK(sl_jobq_await(b, 1) == SL_R_QUEUED);   /* another task may wait */
  as(1); CHECK(sl_jobq_continue(q, a) == (int)b);
  as(1); CHECK(sl_jobq_continue(q, b) == 0);
  CHECK(woken(4, SL_WAKE_OK));
  /* clearing frees every pending job */
  add(q, 0, -1, &res); spawn_runner(q, 1);
  add(q, 2, -1, &res);
  CHECK(sl_jobq_drop_any(q) && sl_jobq_drop_any(q) && !sl_jobq_drop_any(q));
  as(1); CHECK(sl_jobq_begin(q) == 0);
  CHECK(sl_jobq_size(q) == 0 && sl_jobq_running(q) == 0);
  sl_jobq_free(q);
  teardown_q();
}

int main(void) {
  RUN(test_priority_order);
  RUN(test_interval_cap);
  RUN(test_pause_and_keeper);
  RUN(test_timeout);
  RUN(test_waits);
  RUN(test_deadlock);
  return sl_check_done();
}
