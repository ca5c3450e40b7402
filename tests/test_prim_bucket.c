/*
 * test_prim_bucket.c - unit tests of the token bucket state machine
 * (lib/sl_bucket.c), without Lua: a scheduler on a private loop with the
 * virtual clock, and task records that no coroutine runs.
 *
 * A "task" here is an sl_task made "running" by pointing sl_tls_task at
 * it before each call, as the trampoline does around a resume.  A grant
 * shows as the task moving to the ready queue with wake code OK; the
 * test "resumes" it by taking it off that queue.  Time passes only by
 * firing the earliest timer (fire_next_timer) or by setting S.vnow.
 */
#include "../lib/sl_prim.h"
#include "../lib/sl_ffi_bucket.h"
#include "sl_check.h"

#include <string.h>

#define NT 8
#include "sl_fake_sched.h"

static int waiting(sl_bucket *b) { return sl_prim_waiting(sl_bucket_prim(b)); }

static sl_stats stats_of(sl_bucket *b) {
  sl_stats st;
  sl_prim_stats(sl_bucket_prim(b), &st);
  return st;
}

static void test_new_and_uncontended(void) {
  sl_bucket *b;
  sl_stats st;
  setup();
  as(0);
  CHECK(sl_bucket_new(0, 1, 0) == NULL && sl_bucket_new(1, 0, 0) == NULL);
  CHECK(sl_bucket_new(-1, 1, 0) == NULL && sl_bucket_new(1, -1, 0) == NULL);
  CHECK(sl_bucket_new(1.0 / 0.0, 1, 0) == NULL && sl_bucket_new(1, 1.0 / 0.0, 0) == NULL);
  CHECK(sl_bucket_new(0.0 / 0.0, 1, 0) == NULL && sl_bucket_new(1, 1, 0.0 / 0.0) == NULL);
  CHECK(sl_bucket_new(2, 1, 3) == NULL && sl_bucket_new(2, 1, -1) == NULL);
  b = sl_bucket_new(10, 10, 10);
  CHECK(sl_bucket_capacity(b) == 10 && sl_bucket_rate(b) == 10 && sl_bucket_tokens(b) == 10);
  sl_tls_task = NULL;
  CHECK(sl_bucket_take(b, 1, -1, 1) == SL_R_NOTASK);
  CHECK(sl_bucket_try_take(b, 1) == SL_R_NOTASK);
  CHECK(sl_bucket_set_rate(b, 5) == SL_R_NOTASK && sl_bucket_rate(b) == 10);
  as(0);
  CHECK(sl_bucket_take(b, 11, -1, 1) == SL_R_TOOMUCH);
  CHECK(sl_bucket_try_take(b, 11) == SL_R_TOOMUCH);
  CHECK(sl_bucket_take(b, 4, -1, 1) == SL_R_OK);
  CHECK(sl_bucket_try_take(b, 5.5) == SL_R_OK);
  CHECK(sl_bucket_tokens(b) == 0.5);
  CHECK(sl_bucket_try_take(b, 1) == SL_R_QUEUED);      /* "not now" */
  CHECK(sl_bucket_take(b, 1, 0, 1) == SL_R_TIMEDOUT);
  CHECK(sl_bucket_take(b, 1, -1, 0) == SL_R_NOBLOCK);  /* cannot yield */
  CHECK(sl_bucket_take(b, 0.5, -1, 0) == SL_R_OK);     /* ... but need not */
  CHECK(waiting(b) == 0 && S.timers.len == 0);
  S.vnow = 0.25;                                       /* 2.5 tokens come back */
  CHECK(sl_bucket_tokens(b) == 2.5);
  S.vnow = 100;                                        /* never above the capacity */
  CHECK(sl_bucket_tokens(b) == 10);
  CHECK(sl_bucket_try_take(b, 10) == SL_R_OK && sl_bucket_tokens(b) == 0);
  st = stats_of(b);
  CHECK(st.acquired == 4 && st.waited == 0 && st.timeouts == 0);
  T[1].cancelled = 1;                                  /* a pending cancellation */
  S.vnow = 101;
  as(1); CHECK(sl_bucket_take(b, 1, -1, 1) == SL_R_CANCELLED);
  CHECK(sl_bucket_try_take(b, 1) == SL_R_OK);          /* try_take does not block */
  sl_bucket_free(b);
  teardown();
}

/* 10/s, capacity 10, emptied at 0: the 11th token at exactly 0.1, then
 * one every 0.1 s, each waiter woken by the one timer, armed for the
 * head only. */
static void test_exact_times_fifo(void) {
  sl_bucket *b;
  sl_stats st;
  int i;
  setup();
  as(0);
  b = sl_bucket_new(10, 10, 10);
  CHECK(sl_bucket_take(b, 10, -1, 1) == SL_R_OK);
  for (i = 1; i <= 3; i++) { as(i); CHECK(sl_bucket_take(b, 1, -1, 1) == SL_R_QUEUED); }
  CHECK(waiting(b) == 3 && S.timers.len == 1);          /* one timer for three waiters */
  CHECK(sl_heap_min(&S.timers)->deadline == 0.1);
  fire_next_timer();
  CHECK(S.vnow == 0.1 && woken(1, SL_WAKE_OK) && parked(2) && parked(3));
  fire_next_timer();
  CHECK(S.vnow == 0.2 && woken(2, SL_WAKE_OK) && parked(3));
  fire_next_timer();
  CHECK(S.vnow == 0.3 && woken(3, SL_WAKE_OK));          /* 0.3, not 0.30000000000000004 */
  CHECK(waiting(b) == 0 && S.timers.len == 0 && sl_bucket_tokens(b) == 0);
  st = stats_of(b);
  CHECK(st.acquired == 4 && st.waited == 3 && st.wait_max == 0.3);
  sl_bucket_free(b);
  teardown();
}

/* A large head blocks small newcomers (no barging) even while they
 * would fit; once it is served, they follow at their own due times. */
static void test_large_head_blocks(void) {
  sl_bucket *b;
  setup();
  as(0);
  b = sl_bucket_new(8, 2, 2);
  as(1); CHECK(sl_bucket_take(b, 8, -1, 1) == SL_R_QUEUED);   /* due at 3 */
  as(2); CHECK(sl_bucket_try_take(b, 1) == SL_R_QUEUED);      /* 2 there, but 1 is queued */
  as(2); CHECK(sl_bucket_take(b, 1, -1, 1) == SL_R_QUEUED);
  S.vnow = 2.5;
  as(3); CHECK(sl_bucket_take(b, 1, -1, 1) == SL_R_QUEUED);
  CHECK(sl_bucket_tokens(b) == 7 && parked(1) && parked(2) && parked(3));
  fire_next_timer();
  CHECK(S.vnow == 3 && woken(1, SL_WAKE_OK) && parked(2));
  fire_next_timer();
  CHECK(S.vnow == 3.5 && woken(2, SL_WAKE_OK) && parked(3));
  fire_next_timer();
  CHECK(S.vnow == 4 && woken(3, SL_WAKE_OK) && S.timers.len == 0);
  sl_bucket_free(b);
  teardown();
}

/* Cancelling the head re-times the timer for the next (which may be due
 * at once); cancelling one behind it changes nothing else; a timeout
 * ends the wait at its deadline. */
static void test_cancel_and_timeout(void) {
  sl_bucket *b;
  sl_stats st;
  setup();
  as(0);
  b = sl_bucket_new(4, 1, 1);
  as(1); CHECK(sl_bucket_take(b, 4, -1, 1) == SL_R_QUEUED);   /* due at 3 */
  as(2); CHECK(sl_bucket_take(b, 3, -1, 1) == SL_R_QUEUED);
  as(3); CHECK(sl_bucket_take(b, 1, -1, 1) == SL_R_QUEUED);
  as(4); CHECK(sl_bucket_take(b, 1, 0.5, 1) == SL_R_QUEUED);
  CHECK(sl_task_cancel(&T[3]) && woken(3, SL_WAKE_CANCEL));   /* from the middle */
  CHECK(parked(1) && parked(2) && parked(4) && waiting(b) == 3);
  S.vnow = 1;
  CHECK(sl_task_cancel(&T[1]) && woken(1, SL_WAKE_CANCEL));   /* the head: 2 tokens, 2 needs 3 */
  CHECK(parked(2) && sl_heap_min(&S.timers)->deadline == 0.5); /* 4's timeout, set at 0 */
  fire_next_timer();                                         /* late: the clock is at 1 */
  CHECK(S.vnow == 1 && woken(4, SL_WAKE_TIMEOUT));
  CHECK(sl_heap_min(&S.timers)->deadline == 2);               /* 2 needs 1 more token */
  fire_next_timer();
  CHECK(S.vnow == 2 && woken(2, SL_WAKE_OK) && S.timers.len == 0);
  st = stats_of(b);
  CHECK(st.acquired == 1 && st.cancelled == 2 && st.timeouts == 1 && st.waited == 1);
  /* a cancelled head whose successor is due now: granted at once */
  as(5); CHECK(sl_bucket_take(b, 4, -1, 1) == SL_R_QUEUED);
  as(6); CHECK(sl_bucket_take(b, 0.5, -1, 1) == SL_R_QUEUED);
  S.vnow = 3;
  CHECK(sl_task_cancel(&T[5]) && woken(5, SL_WAKE_CANCEL));
  CHECK(woken(6, SL_WAKE_OK) && S.timers.len == 0 && sl_bucket_tokens(b) == 0.5);
  sl_bucket_free(b);
  teardown();
}

/* Tokens due at the very instant of the timeout: granted, whichever of
 * the two timers the heap fires first. */
static void test_due_at_timeout(void) {
  sl_bucket *b;
  setup();
  as(0);
  b = sl_bucket_new(2, 1, 0);
  as(1); CHECK(sl_bucket_take(b, 1, 1, 1) == SL_R_QUEUED);   /* timeout armed first */
  CHECK(S.timers.len == 2);
  fire_next_timer();                                       /* the timeout's */
  CHECK(S.vnow == 1 && woken(1, SL_WAKE_OK) && S.timers.len == 0);
  as(2); CHECK(sl_bucket_take(b, 1, 1, 1) == SL_R_QUEUED);
  as(3); CHECK(sl_bucket_take(b, 1, 1, 1) == SL_R_QUEUED);  /* due at 3, times out at 2 */
  fire_next_timer();
  fire_next_timer();
  CHECK(S.vnow == 2 && woken(2, SL_WAKE_OK));
  CHECK(woken(3, SL_WAKE_TIMEOUT) && S.timers.len == 0 && waiting(b) == 0);
  sl_bucket_free(b);
  teardown();
}

/* Cancelled after the hand-off, before it ran: the tokens go on. */
static void test_abandon_after_handoff(void) {
  sl_bucket *b;
  sl_stats st;
  setup();
  as(0);
  b = sl_bucket_new(2, 1, 0);
  as(1); CHECK(sl_bucket_take(b, 2, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_bucket_take(b, 2, -1, 1) == SL_R_QUEUED);
  fire_next_timer();
  CHECK(S.vnow == 2 && T[1].status == SL_READY && parked(2));
  sl_task_cancel(&T[1]);                       /* ready, not waiting: only flagged */
  CHECK(woken(1, SL_WAKE_OK) && T[1].cancelled);
  as(1); CHECK(sl_bucket_abandon(b, 2) == SL_R_OK);
  CHECK(woken(2, SL_WAKE_OK) && sl_bucket_tokens(b) == 0);
  st = stats_of(b);
  CHECK(st.acquired == 1 && st.waited == 1 && st.cancelled == 1);
  /* given back into a bucket that refilled meanwhile: up to the capacity */
  as(3); CHECK(sl_bucket_take(b, 2, -1, 1) == SL_R_QUEUED);
  fire_next_timer();
  CHECK(S.vnow == 4 && T[3].status == SL_READY);
  S.vnow = 5;
  sl_task_cancel(&T[3]);
  CHECK(woken(3, SL_WAKE_OK));
  as(3); CHECK(sl_bucket_abandon(b, 2) == SL_R_OK);
  CHECK(sl_bucket_tokens(b) == 2);
  sl_bucket_free(b);
  teardown();
}

/* A new rate counts from now (tokens so far at the old one) and
 * re-times the head; bad rates change nothing. */
static void test_set_rate(void) {
  sl_bucket *b;
  setup();
  as(0);
  b = sl_bucket_new(10, 1, 0);
  as(1); CHECK(sl_bucket_take(b, 4, -1, 1) == SL_R_QUEUED);
  CHECK(sl_heap_min(&S.timers)->deadline == 4);
  S.vnow = 1;                                  /* 1 token so far */
  as(0);
  CHECK(sl_bucket_set_rate(b, 0) == SL_R_TOOMUCH && sl_bucket_set_rate(b, -1) == SL_R_TOOMUCH);
  CHECK(sl_bucket_set_rate(b, 1.0 / 0.0) == SL_R_TOOMUCH && sl_bucket_rate(b) == 1);
  CHECK(sl_bucket_set_rate(b, 3) == SL_R_OK && sl_bucket_rate(b) == 3);
  CHECK(sl_heap_min(&S.timers)->deadline == 2);   /* 3 more at 3/s */
  CHECK(sl_bucket_set_rate(b, 0.5) == SL_R_OK);
  CHECK(sl_heap_min(&S.timers)->deadline == 7);   /* 3 more at 0.5/s */
  S.vnow = 5;
  CHECK(sl_bucket_tokens(b) == 3);
  CHECK(sl_bucket_set_rate(b, 2) == SL_R_OK);   /* 1 more at 2/s */
  fire_next_timer();
  CHECK(S.vnow == 5.5 && woken(1, SL_WAKE_OK) && sl_bucket_tokens(b) == 0);
  sl_bucket_free(b);
  teardown();
}

/* A bucket made outside any task belongs to the first task's scheduler
 * (its tokens count from then); another scheduler's tasks are refused. */
static void test_binding(void) {
  sl_bucket *b;
  sl_sched other;
  uv_loop_t loop2;
  sl_task stranger;
  setup();
  sl_tls_task = NULL;
  S.vnow = 3;
  b = sl_bucket_new(5, 1, 1);
  CHECK(sl_bucket_tokens(b) == 1);              /* no clock read outside a task */
  S.vnow = 4;
  as(0); CHECK(sl_bucket_tokens(b) == 1);       /* bound now, at 4 */
  S.vnow = 6;
  CHECK(sl_bucket_tokens(b) == 3);
  uv_loop_init(&loop2);
  sl_sched_init(&other, &loop2, NULL, 1);
  memset(&stranger, 0, sizeof stranger);
  sl_task_init(&stranger, &other, NULL);
  sl_queue_remove(&stranger.ready);
  stranger.status = SL_RUNNING;
  sl_tls_task = &stranger;
  CHECK(sl_bucket_take(b, 1, -1, 1) == SL_BUCKET_R_FOREIGN);
  CHECK(sl_bucket_try_take(b, 1) == SL_BUCKET_R_FOREIGN);
  CHECK(sl_bucket_set_rate(b, 2) == SL_BUCKET_R_FOREIGN);
  CHECK(sl_bucket_tokens(b) == -1);
  sl_tls_task = NULL;
  sl_queue_remove(&stranger.member);
  sl_sched_close(&other);
  uv_run(&loop2, UV_RUN_DEFAULT);
  uv_loop_close(&loop2);
  as(0); CHECK(sl_bucket_try_take(b, 3) == SL_R_OK);
  sl_bucket_free(b);
  teardown();
}

/* Many waiters, uneven amounts: grants in order, each at the time the
 * running sum of amounts over the rate says, and none before. */
static void test_many_in_order(void) {
  sl_bucket *b;
  double need[NT] = { 0, 1, 3, 0.5, 2, 1.5, 1, 2 }, due = 0;
  int i;
  setup();
  as(0);
  b = sl_bucket_new(3, 2, 0);
  for (i = 1; i < NT; i++) { as(i); CHECK(sl_bucket_take(b, need[i], -1, 1) == SL_R_QUEUED); }
  for (i = 1; i < NT; i++) {
    due += need[i] / 2;
    fire_next_timer();
    CHECK(S.vnow == due && woken(i, SL_WAKE_OK));
    if (i + 1 < NT) CHECK(parked(i + 1));
  }
  CHECK(S.timers.len == 0 && waiting(b) == 0);
  sl_bucket_free(b);
  teardown();
}

int main(void) {
  RUN(test_new_and_uncontended);
  RUN(test_exact_times_fifo);
  RUN(test_large_head_blocks);
  RUN(test_cancel_and_timeout);
  RUN(test_due_at_timeout);
  RUN(test_abandon_after_handoff);
  RUN(test_set_rate);
  RUN(test_binding);
  RUN(test_many_in_order);
  return sl_check_done();
}
