/*
 * test_prim_sem.c - unit tests of the semaphore state machine
 * (lib/sl_sem.c) and the shared primitive code (lib/sl_prim.c), without
 * Lua: a scheduler on a private loop with the virtual clock, and task
 * records that no coroutine runs.
 *
 * A "task" here is an sl_task made "running" by pointing sl_tls_task at
 * it before each call, as the trampoline does around a resume.  A grant
 * shows as the task moving to the ready queue with wake code OK; the
 * test "resumes" it by taking it off that queue.
 */
#include "../lib/sl_prim.h"
#include "sl_check.h"

#include <string.h>

#define NT 8
#include "sl_fake_sched.h"

static double held_by(sl_sem *s, int i) {
  sl_hold *h = sl_hold_find(sl_sem_prim(s), &T[i]);
  return h ? h->count : 0;
}

static void test_uncontended(void) {
  sl_sem *s;
  sl_stats st;
  setup();
  s = sl_sem_new(2, 0);
  sl_tls_task = NULL;
  CHECK(sl_sem_acquire(s, -1, 1) == SL_R_NOTASK);
  CHECK(sl_sem_release(s) == SL_R_NOTASK);
  as(0);
  CHECK(sl_sem_try_acquire(s) == SL_R_OK);
  CHECK(sl_sem_acquire(s, -1, 1) == SL_R_OK);
  CHECK(held_by(s, 0) == 2 && sl_sem_available(s) == 0 && sl_sem_held(s) == 2);
  CHECK(sl_sem_try_acquire(s) == SL_R_QUEUED);   /* "not now" */
  CHECK(sl_sem_acquire(s, 0, 1) == SL_R_TIMEDOUT);
  CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(sl_sem_release(s) == SL_R_NOTHELD);       /* more than acquired */
  CHECK(sl_sem_available(s) == 2 && held_by(s, 0) == 0);
  as(1);
  CHECK(sl_sem_release(s) == SL_R_NOTHELD);       /* never held */
  sl_prim_stats(sl_sem_prim(s), &st);
  CHECK(st.acquired == 2 && st.waited == 0 && st.timeouts == 0);
  CHECK(!sl_sem_is_mutex(s));
  sl_sem_free(s);
  teardown();
}

/* Three waiters are granted in arrival order, one per release, and a
 * newcomer never overtakes them even when it arrives as a permit frees. */
static void test_fifo_no_barging(void) {
  sl_sem *s;
  sl_stats st;
  setup();
  s = sl_sem_new(1, 0);
  as(0);
  CHECK(sl_sem_acquire(s, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_QUEUED);
  S.vnow = 1;
  as(3); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_QUEUED);
  CHECK(sl_prim_waiting(sl_sem_prim(s)) == 3);
  S.vnow = 2;
  as(0); CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(woken(1, SL_WAKE_OK) && parked(2) && parked(3));
  CHECK(held_by(s, 1) == 1 && held_by(s, 0) == 0 && sl_sem_held(s) == 1);
  /* the hand-off left nothing free: a newcomer queues behind 2 and 3 */
  as(4); CHECK(sl_sem_try_acquire(s) == SL_R_QUEUED);
  as(1); CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(woken(2, SL_WAKE_OK) && parked(3));
  as(4); CHECK(sl_sem_try_acquire(s) == SL_R_QUEUED);   /* 3 is still first */
  as(2); CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(woken(3, SL_WAKE_OK));
  as(3); CHECK(sl_sem_release(s) == SL_R_OK);
  as(4); CHECK(sl_sem_try_acquire(s) == SL_R_OK);
  CHECK(sl_sem_release(s) == SL_R_OK);
  sl_prim_stats(sl_sem_prim(s), &st);
  /* waits of 2 s, 2 s and 1 s: buckets [2^20, 2^21) us and [2^19, 2^20) us */
  CHECK(st.acquired == 5 && st.waited == 3 && st.wait_total == 5 && st.wait_max == 2);
  CHECK(st.hist[21] == 2 && st.hist[20] == 1 && st.hist[0] == 0);
  CHECK(sl_prim_waiting(sl_sem_prim(s)) == 0 && sl_sem_available(s) == 1);
  sl_sem_free(s);
  teardown();
}

/* A waiter that times out or is cancelled leaves the queue as if it had
 * never been there: the next release goes to the one behind it. */
static void test_timeout_and_cancel(void) {
  sl_sem *s;
  sl_stats st;
  setup();
  s = sl_sem_new(1, 0);
  as(0); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_sem_acquire(s, 5, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_QUEUED);
  as(3); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_QUEUED);
  fire_next_timer();
  CHECK(S.vnow == 5 && woken(1, SL_WAKE_TIMEOUT));
  CHECK(sl_prim_waiting(sl_sem_prim(s)) == 2 && held_by(s, 1) == 0);
  CHECK(sl_task_cancel(&T[2]) && woken(2, SL_WAKE_CANCEL));
  CHECK(sl_prim_waiting(sl_sem_prim(s)) == 1 && held_by(s, 2) == 0);
  as(0); CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(woken(3, SL_WAKE_OK) && held_by(s, 3) == 1);
  CHECK(S.timers.len == 0);
  /* a cancelled task may not start a wait, and nothing changes */
  T[4].cancelled = 1;
  as(4); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_CANCELLED);
  CHECK(sl_prim_waiting(sl_sem_prim(s)) == 0);
  /* nor may one that cannot yield */
  as(5); CHECK(sl_sem_acquire(s, -1, 0) == SL_R_NOBLOCK);
  CHECK(sl_prim_waiting(sl_sem_prim(s)) == 0);
  sl_prim_stats(sl_sem_prim(s), &st);
  CHECK(st.timeouts == 1 && st.cancelled == 1 && st.acquired == 2 && st.waited == 1);
  as(3); CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(sl_sem_available(s) == 1);
  sl_sem_free(s);
  teardown();
}

/* Cancelled after the hand-off, before it ran: the permit goes on. */
static void test_abandon_after_handoff(void) {
  sl_sem *s;
  sl_stats st;
  setup();
  s = sl_sem_new(1, 0);
  as(0); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_QUEUED);
  as(0); CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(T[1].status == SL_READY);
  sl_task_cancel(&T[1]);           /* ready, not waiting: only flagged */
  CHECK(woken(1, SL_WAKE_OK) && T[1].cancelled);
  as(1); CHECK(sl_sem_abandon(s) == SL_R_OK);
  CHECK(woken(2, SL_WAKE_OK) && held_by(s, 1) == 0 && held_by(s, 2) == 1);
  CHECK(sl_sem_abandon(s) == SL_R_NOTHELD);
  sl_prim_stats(sl_sem_prim(s), &st);
  CHECK(st.acquired == 2 && st.waited == 1 && st.cancelled == 1);
  as(2); CHECK(sl_sem_release(s) == SL_R_OK);
  sl_sem_free(s);
  teardown();
}

/* Growing grants waiters at once; shrinking lets holders finish and
 * grants nothing until fewer than the new limit are held. */
static void test_resize(void) {
  sl_sem *s;
  int i;
  setup();
  s = sl_sem_new(1, 0);
  for (i = 0; i < 4; i++) {
    as(i);
    CHECK(sl_sem_acquire(s, -1, 1) == (i == 0 ? SL_R_OK : SL_R_QUEUED));
  }
  sl_sem_set_limit(s, 3);
  CHECK(woken(1, SL_WAKE_OK) && woken(2, SL_WAKE_OK) && parked(3));
  CHECK(sl_sem_held(s) == 3 && sl_sem_available(s) == 0);
  sl_sem_set_limit(s, 1);
  CHECK(sl_sem_held(s) == 3 && sl_sem_available(s) == 0 && parked(3));
  as(0); CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(parked(3) && sl_sem_held(s) == 2);
  as(4); CHECK(sl_sem_try_acquire(s) == SL_R_QUEUED);
  as(1); CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(parked(3) && sl_sem_held(s) == 1);
  as(2); CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(woken(3, SL_WAKE_OK) && sl_sem_held(s) == 1);
  as(3); CHECK(sl_sem_release(s) == SL_R_OK);
  CHECK(sl_sem_available(s) == 1 && sl_sem_limit(s) == 1);
  sl_sem_free(s);
  teardown();
}

/* A task ending while holding: its permits go to the waiters. */
static void test_release_all(void) {
  sl_sem *a, *b;
  setup();
  a = sl_sem_new(2, 0);
  b = sl_sem_new(1, 1);
  as(0);
  CHECK(sl_sem_acquire(a, -1, 1) == SL_R_OK && sl_sem_acquire(a, -1, 1) == SL_R_OK);
  CHECK(sl_sem_acquire(b, -1, 1) == SL_R_OK && sl_sem_is_mutex(b));
  as(1); CHECK(sl_sem_acquire(a, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_sem_acquire(b, -1, 1) == SL_R_QUEUED);
  CHECK(sl_hold_release_all(&T[0]) == 2);
  CHECK(woken(1, SL_WAKE_OK) && woken(2, SL_WAKE_OK));
  CHECK(sl_sem_held(a) == 1 && sl_sem_held(b) == 1 && sl_queue_empty(&T[0].held));
  as(1); CHECK(sl_sem_release(a) == SL_R_OK);
  as(2); CHECK(sl_sem_release(b) == SL_R_OK);
  sl_sem_free(a);
  sl_sem_free(b);
  teardown();
}

/* Deadlocks: re-acquiring a mutex, the nested acquire of a semaphore
 * whose other permits are held by its own waiters, a cycle through an
 * await; and what is not one: a holder free to run, or sleeping. */
static void test_deadlock(void) {
  sl_sem *m, *s;
  setup();
  m = sl_sem_new(1, 1);
  s = sl_sem_new(2, 0);
  as(0); CHECK(sl_sem_acquire(m, -1, 1) == SL_R_OK);
  CHECK(sl_sem_acquire(m, -1, 1) == SL_R_DEADLOCK);
  CHECK(sl_sem_acquire(m, 5, 1) == SL_R_DEADLOCK);    /* can only time out */
  CHECK(sl_sem_acquire(m, 0, 1) == SL_R_TIMEDOUT);    /* a try */
  CHECK(sl_prim_waiting(sl_sem_prim(m)) == 0 && held_by(m, 0) == 1);
  as(1); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_OK);
  as(2); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_QUEUED);   /* 2 is running */
  as(2); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_DEADLOCK);  /* 1 waits on it */
  /* task 2 awaits task 3, which would wait on s: a cycle through an await */
  T[2].status = SL_WAITING;
  T[2].wait_kind = SL_WAIT_TASK;
  T[2].wait.obj = &T[3];
  as(3); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_DEADLOCK);
  /* a sleeping holder will wake up: not a deadlock */
  T[2].wait_kind = SL_WAIT_OTHER;
  T[2].wait.obj = NULL;
  CHECK(sl_task_arm(&T[2], 10) == 0);
  CHECK(sl_sem_acquire(s, -1, 1) == SL_R_QUEUED);
  sl_heap_remove(&S.timers, &T[2].timer);
  T[2].status = SL_RUNNING;
  sl_task_cancel(&T[1]);
  sl_task_cancel(&T[3]);
  CHECK(woken(1, SL_WAKE_CANCEL) && woken(3, SL_WAKE_CANCEL));
  as(1); CHECK(sl_sem_release(s) == SL_R_OK);
  as(2); CHECK(sl_sem_release(s) == SL_R_OK);
  as(0); CHECK(sl_sem_release(m) == SL_R_OK);
  sl_sem_free(m);
  sl_sem_free(s);
  teardown();
}

#define CHAIN 200

/* Long chains and wide fan-outs: a chain of awaits longer than any
 * fixed depth ending in a free task is no deadlock; many holders all
 * waiting on each other's semaphore are one, found in linear time. */
static void test_deadlock_graph(void) {
  static sl_task C[CHAIN];
  sl_sem *s;
  int i;
  setup();
  s = sl_sem_new(CHAIN, 0);
  for (i = 0; i < CHAIN; i++) {
    sl_task_init(&C[i], &S, NULL);
    sl_queue_remove(&C[i].ready);
    C[i].status = SL_RUNNING;
    sl_tls_task = &C[i];
    CHECK(sl_sem_acquire(s, -1, 1) == SL_R_OK);
  }
  /* every holder awaits the next; the last one runs */
  for (i = 0; i + 1 < CHAIN; i++) {
    C[i].status = SL_WAITING;
    C[i].wait_kind = SL_WAIT_TASK;
    C[i].wait.obj = &C[i + 1];
  }
  as(0); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_QUEUED);
  sl_task_cancel(&T[0]);
  CHECK(woken(0, SL_WAKE_CANCEL));
  /* now every holder waits on s itself */
  for (i = 0; i < CHAIN; i++) {
    C[i].status = SL_WAITING;
    C[i].wait_kind = SL_WAIT_PRIM;
    C[i].wait.obj = sl_sem_prim(s);
  }
  as(1); CHECK(sl_sem_acquire(s, -1, 1) == SL_R_DEADLOCK);
  for (i = 0; i < CHAIN; i++) {
    C[i].status = SL_RUNNING;
    sl_tls_task = &C[i];
    CHECK(sl_sem_release(s) == SL_R_OK);
  }
  sl_sem_free(s);
  teardown();
}

int main(void) {
  RUN(test_uncontended);
  RUN(test_fifo_no_barging);
  RUN(test_timeout_and_cancel);
  RUN(test_abandon_after_handoff);
  RUN(test_resize);
  RUN(test_release_all);
  RUN(test_deadlock);
  RUN(test_deadlock_graph);
  return sl_check_done();
}
