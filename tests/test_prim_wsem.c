/*
 * test_prim_wsem.c - unit tests of the weighted semaphore state machine
 * (lib/sl_wsem.c), without Lua: a scheduler on a private loop with the
 * virtual clock, and task records that no coroutine runs.
 *
 * A "task" here is an sl_task made "running" by pointing sl_tls_task at
 * it before each call, as the trampoline does around a resume.  A grant
 * shows as the task moving to the ready queue with wake code OK; the
 * test "resumes" it by taking it off that queue.
 */
#include "../lib/sl_prim.h"
#include "../lib/sl_ffi_wsem.h"
#include "sl_check.h"

#include <string.h>

#define NT 8
#include "sl_fake_sched.h"

static double held_by(sl_wsem *s, int i) {
  sl_hold *h = sl_hold_find(sl_wsem_prim(s), &T[i]);
  return h ? h->count : 0;
}

static int waiting(sl_wsem *s) { return sl_prim_waiting(sl_wsem_prim(s)); }

static void test_uncontended(void) {
  sl_wsem *s;
  sl_stats st;
  setup();
  CHECK(sl_wsem_new(0) == NULL && sl_wsem_new(-1) == NULL && sl_wsem_new(0.0 / 0.0) == NULL);
  CHECK(sl_wsem_new(sl_wsem_max() * 2) == NULL);
  s = sl_wsem_new(10);
  sl_tls_task = NULL;
  CHECK(sl_wsem_acquire(s, 1, -1, 1) == SL_R_NOTASK);
  CHECK(sl_wsem_release(s, 1) == SL_R_NOTASK);
  as(0);
  CHECK(sl_wsem_acquire(s, 11, -1, 1) == SL_R_TOOMUCH);
  CHECK(sl_wsem_try_acquire(s, 11) == SL_R_TOOMUCH);
  CHECK(sl_wsem_acquire(s, 4, -1, 1) == SL_R_OK);
  CHECK(sl_wsem_try_acquire(s, 5) == SL_R_OK);
  CHECK(held_by(s, 0) == 9 && sl_wsem_held(s) == 9 && sl_wsem_available(s) == 1);
  CHECK(sl_wsem_try_acquire(s, 2) == SL_R_QUEUED);   /* "not now" */
  CHECK(sl_wsem_acquire(s, 2, 0, 1) == SL_R_TIMEDOUT);
  CHECK(sl_wsem_release(s, 10) == SL_R_NOTHELD);     /* more than held: nothing changes */
  CHECK(held_by(s, 0) == 9 && sl_wsem_held(s) == 9);
  CHECK(sl_wsem_release(s, 6) == SL_R_OK);
  CHECK(sl_wsem_release(s, 3) == SL_R_OK);
  CHECK(sl_wsem_release(s, 1) == SL_R_NOTHELD);
  CHECK(sl_wsem_available(s) == 10 && held_by(s, 0) == 0);
  as(1); CHECK(sl_wsem_release(s, 1) == SL_R_NOTHELD);   /* never held */
  sl_prim_stats(sl_wsem_prim(s), &st);
  CHECK(st.acquired == 2 && st.waited == 0 && st.timeouts == 0);
  sl_wsem_free(s);
  teardown();
}

/* A head that does not fit blocks smaller requests behind it; when it
 * fits, it and every following waiter that fits are granted at once. */
static void test_head_blocks_no_barging(void) {
  sl_wsem *s;
  setup();
  s = sl_wsem_new(4);
  as(0); CHECK(sl_wsem_acquire(s, 3, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_wsem_acquire(s, 1, -1, 1) == SL_R_QUEUED);   /* 1 is free, but 1 is first */
  as(3); CHECK(sl_wsem_try_acquire(s, 1) == SL_R_QUEUED);
  as(3); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_QUEUED);
  CHECK(waiting(s) == 3 && sl_wsem_available(s) == 1);
  as(0); CHECK(sl_wsem_release(s, 1) == SL_R_OK);   /* 2 free: only the head fits */
  CHECK(woken(1, SL_WAKE_OK) && parked(2) && parked(3));
  CHECK(held_by(s, 1) == 2 && sl_wsem_held(s) == 4);
  as(0); CHECK(sl_wsem_release(s, 2) == SL_R_OK);   /* 2 free: 1 fits, then 2 does not */
  CHECK(woken(2, SL_WAKE_OK) && parked(3) && sl_wsem_held(s) == 3);
  as(1); CHECK(sl_wsem_release(s, 2) == SL_R_OK);
  CHECK(woken(3, SL_WAKE_OK) && sl_wsem_held(s) == 3 && waiting(s) == 0);
  as(2); CHECK(sl_wsem_release(s, 1) == SL_R_OK);
  as(3); CHECK(sl_wsem_release(s, 2) == SL_R_OK);
  CHECK(sl_wsem_held(s) == 0);
  sl_wsem_free(s);
  teardown();
}

/* A cancelled (or timed out) head leaves, and the ones behind it that
 * fit are granted at once; one from the middle changes nothing else. */
static void test_cancel_and_timeout(void) {
  sl_wsem *s;
  sl_stats st;
  setup();
  s = sl_wsem_new(4);
  as(0); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_wsem_acquire(s, 4, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_wsem_acquire(s, 3, 5, 1) == SL_R_QUEUED);
  as(3); CHECK(sl_wsem_acquire(s, 1, -1, 1) == SL_R_QUEUED);
  as(4); CHECK(sl_wsem_acquire(s, 1, -1, 1) == SL_R_QUEUED);
  CHECK(sl_task_cancel(&T[4]) && woken(4, SL_WAKE_CANCEL));   /* from the tail */
  CHECK(parked(1) && parked(2) && parked(3) && waiting(s) == 3);
  CHECK(sl_task_cancel(&T[1]) && woken(1, SL_WAKE_CANCEL));   /* the head: 3 does not fit */
  CHECK(parked(2) && parked(3) && waiting(s) == 2);
  fire_next_timer();                                         /* the new head times out */
  CHECK(S.vnow == 5 && woken(2, SL_WAKE_TIMEOUT));
  CHECK(woken(3, SL_WAKE_OK) && held_by(s, 3) == 1 && sl_wsem_held(s) == 3);
  CHECK(waiting(s) == 0 && S.timers.len == 0);
  /* a cancelled task may not start a wait, nor one that cannot yield */
  as(5); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_QUEUED);
  T[6].cancelled = 1;
  as(6); CHECK(sl_wsem_acquire(s, 1, -1, 1) == SL_R_CANCELLED);
  as(7); CHECK(sl_wsem_acquire(s, 1, -1, 0) == SL_R_NOBLOCK);
  CHECK(waiting(s) == 1);
  sl_prim_stats(sl_wsem_prim(s), &st);
  CHECK(st.timeouts == 1 && st.cancelled == 2 && st.acquired == 2 && st.waited == 1);
  as(0); CHECK(sl_wsem_release(s, 2) == SL_R_OK);
  CHECK(woken(5, SL_WAKE_OK));
  as(3); CHECK(sl_wsem_release(s, 1) == SL_R_OK);
  as(5); CHECK(sl_wsem_release(s, 2) == SL_R_OK);
  sl_wsem_free(s);
  teardown();
}

/* Cancelled after the hand-off, before it ran: the weight goes on. */
static void test_abandon_after_handoff(void) {
  sl_wsem *s;
  sl_stats st;
  setup();
  s = sl_wsem_new(3);
  as(0); CHECK(sl_wsem_acquire(s, 3, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_QUEUED);
  as(0); CHECK(sl_wsem_release(s, 3) == SL_R_OK);
  CHECK(T[1].status == SL_READY && parked(2));
  sl_task_cancel(&T[1]);                       /* ready, not waiting: only flagged */
  CHECK(woken(1, SL_WAKE_OK) && T[1].cancelled);
  as(1); CHECK(sl_wsem_abandon(s, 2) == SL_R_OK);
  CHECK(woken(2, SL_WAKE_OK) && held_by(s, 1) == 0 && held_by(s, 2) == 2);
  sl_prim_stats(sl_wsem_prim(s), &st);
  CHECK(st.acquired == 2 && st.waited == 1 && st.cancelled == 1);
  as(2); CHECK(sl_wsem_release(s, 2) == SL_R_OK);
  sl_wsem_free(s);
  teardown();
}

/* Growing grants at once; shrinking takes nothing back and grants
 * nothing until the head fits; a waiter heavier than the new capacity
 * is woken with TOOBIG, and the ones behind it may then fit. */
static void test_resize(void) {
  sl_wsem *s;
  setup();
  s = sl_wsem_new(4);
  as(0); CHECK(sl_wsem_acquire(s, 4, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_wsem_acquire(s, 3, -1, 1) == SL_R_QUEUED);
  CHECK(sl_wsem_set_capacity(s, 0) == -1 && sl_wsem_capacity(s) == 4);
  CHECK(sl_wsem_set_capacity(s, 6) == 0);
  CHECK(woken(1, SL_WAKE_OK) && parked(2) && sl_wsem_held(s) == 6);
  CHECK(sl_wsem_set_capacity(s, 2) == 0);     /* 2 > 3: evicted */
  CHECK(woken(2, SL_WSEM_WAKE_TOOBIG) && waiting(s) == 0);
  CHECK(held_by(s, 0) == 4 && sl_wsem_available(s) == 0);
  as(3); CHECK(sl_wsem_acquire(s, 1, -1, 1) == SL_R_QUEUED);
  as(0); CHECK(sl_wsem_release(s, 4) == SL_R_OK);   /* held 2 = capacity */
  CHECK(parked(3));
  as(1); CHECK(sl_wsem_release(s, 1) == SL_R_OK);
  CHECK(woken(3, SL_WAKE_OK) && sl_wsem_held(s) == 2);
  /* eviction from the head lets those behind through */
  as(4); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_QUEUED);
  as(5); CHECK(sl_wsem_acquire(s, 1, -1, 1) == SL_R_QUEUED);
  as(1); CHECK(sl_wsem_release(s, 1) == SL_R_OK);
  CHECK(parked(4) && parked(5));
  CHECK(sl_wsem_set_capacity(s, 1) == 0);
  CHECK(woken(4, SL_WSEM_WAKE_TOOBIG) && parked(5));      /* held 1 = capacity */
  as(3); CHECK(sl_wsem_release(s, 1) == SL_R_OK);
  CHECK(woken(5, SL_WAKE_OK));
  as(5); CHECK(sl_wsem_release(s, 1) == SL_R_OK);
  sl_wsem_free(s);
  teardown();
}

/* A task that ends holding weight gives it back to the waiters. */
static void test_release_all(void) {
  sl_wsem *s;
  setup();
  s = sl_wsem_new(5);
  as(0); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_OK);
  as(0); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_wsem_acquire(s, 5, -1, 1) == SL_R_QUEUED);
  CHECK(held_by(s, 0) == 4);
  CHECK(sl_hold_release_all(&T[0]) == 1);
  CHECK(woken(1, SL_WAKE_OK) && held_by(s, 1) == 5 && sl_wsem_held(s) == 5);
  CHECK(sl_hold_release_all(&T[1]) == 1 && sl_wsem_held(s) == 0);
  sl_wsem_free(s);
  teardown();
}

static void test_deadlock(void) {
  sl_wsem *s;
  setup();
  s = sl_wsem_new(4);
  /* asking for more than the capacity minus one's own holding */
  as(0); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_OK);
  as(0); CHECK(sl_wsem_acquire(s, 3, -1, 1) == SL_R_DEADLOCK);
  CHECK(waiting(s) == 0 && held_by(s, 0) == 2);
  /* another holder that may release: no deadlock, until it waits on us */
  as(1); CHECK(sl_wsem_acquire(s, 2, -1, 1) == SL_R_OK);
  as(0); CHECK(sl_wsem_acquire(s, 1, -1, 1) == SL_R_QUEUED);   /* 1 may release */
  as(1); CHECK(sl_wsem_acquire(s, 1, -1, 1) == SL_R_DEADLOCK); /* 0 waits on 1 */
  CHECK(waiting(s) == 1 && held_by(s, 1) == 2);
  CHECK(sl_task_cancel(&T[0]) && woken(0, SL_WAKE_CANCEL));
  T[0].cancelled = 0;
  as(1); CHECK(sl_wsem_release(s, 2) == SL_R_OK);
  as(0); CHECK(sl_wsem_release(s, 2) == SL_R_OK);
  sl_wsem_free(s);
  teardown();
}

int main(void) {
  RUN(test_uncontended);
  RUN(test_head_blocks_no_barging);
  RUN(test_cancel_and_timeout);
  RUN(test_abandon_after_handoff);
  RUN(test_resize);
  RUN(test_release_all);
  RUN(test_deadlock);
  return sl_check_done();
}
