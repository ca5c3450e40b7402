/*
 * test_prim_psem.c - unit tests of the priority semaphore state machine
 * (lib/sl_psem.c), without Lua: a scheduler on a private loop with the
 * virtual clock, and task records that no coroutine runs.
 *
 * A "task" here is an sl_task made "running" by pointing sl_tls_task at
 * it before each call, as the trampoline does around a resume.  A grant
 * shows as the task moving to the ready queue with wake code OK; the
 * test "resumes" it by taking it off that queue.
 */
#include "../lib/sl_prim.h"
#include "../lib/sl_ffi_psem.h"
#include "sl_check.h"

#include <stdlib.h>
#include <string.h>

#define NT 200
#include "sl_fake_sched.h"

static double held_by(sl_psem *s, int i) {
  sl_hold *h = sl_hold_find(sl_psem_prim(s), &T[i]);
  return h ? h->count : 0;
}

static int waiting(sl_psem *s) { return sl_prim_waiting(sl_psem_prim(s)); }

/* The one task among 1..NT-1 that is ready now (granted), or -1. */
static int granted(void) {
  int i, who = -1;
  for (i = 1; i < NT; i++) {
    if (T[i].status != SL_READY) continue;
    if (who >= 0) return -2;   /* two at once */
    who = i;
  }
  if (who >= 0 && !woken(who, SL_WAKE_OK)) return -3;
  return who;
}

static void test_uncontended(void) {
  sl_psem *s;
  sl_stats st;
  setup();
  s = sl_psem_new(2, 0);
  sl_tls_task = NULL;
  CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_NOTASK);
  CHECK(sl_psem_release(s) == SL_R_NOTASK);
  as(0);
  CHECK(sl_psem_try_acquire(s) == SL_R_OK);
  CHECK(sl_psem_acquire(s, 7, -1, 1) == SL_R_OK);
  CHECK(held_by(s, 0) == 2 && sl_psem_available(s) == 0 && sl_psem_held(s) == 2);
  CHECK(sl_psem_try_acquire(s) == SL_R_QUEUED);
  CHECK(sl_psem_acquire(s, -5, 0, 1) == SL_R_TIMEDOUT);
  CHECK(sl_psem_release(s) == SL_R_OK && sl_psem_release(s) == SL_R_OK);
  CHECK(sl_psem_release(s) == SL_R_NOTHELD);
  as(1); CHECK(sl_psem_release(s) == SL_R_NOTHELD);
  sl_prim_stats(sl_psem_prim(s), &st);
  CHECK(st.acquired == 2 && st.waited == 0);
  CHECK(sl_psem_aging(s) == 0 && sl_psem_limit(s) == 2);
  sl_psem_free(s);
  teardown();
}

/* Lower numbers first, FIFO within a priority; a newcomer of the best
 * priority still queues while nothing is free. */
static void test_priority_order(void) {
  static const double prio[] = { 5, 1, 3, 1, -2, 3, 5 };
  static const int order[] = { 5, 2, 4, 3, 6, 1, 7 };
  sl_psem *s;
  int i;
  setup();
  s = sl_psem_new(1, 0);
  as(0); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_OK);
  for (i = 0; i < 7; i++) {
    as(i + 1);
    CHECK(sl_psem_acquire(s, prio[i], -1, 1) == SL_R_QUEUED);
  }
  CHECK(waiting(s) == 7);
  as(0); CHECK(sl_psem_release(s) == SL_R_OK);
  for (i = 0; i < 7; i++) {
    int who = granted();
    CHECK(who == order[i]);
    as(8); CHECK(sl_psem_try_acquire(s) == SL_R_QUEUED);   /* no barging */
    as(who); CHECK(sl_psem_release(s) == SL_R_OK);
  }
  CHECK(granted() == -1 && waiting(s) == 0 && sl_psem_held(s) == 0);
  sl_psem_free(s);
  teardown();
}

/* Aging: p ranks as p - waited / aging, so an old low-priority waiter
 * ends up ahead of newer urgent ones. */
static void test_aging(void) {
  sl_psem *s;
  setup();
  s = sl_psem_new(1, 10);
  CHECK(sl_psem_aging(s) == 10);
  as(0); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_OK);
  S.vnow = 0;  as(1); CHECK(sl_psem_acquire(s, 5, -1, 1) == SL_R_QUEUED);  /* key 50 */
  S.vnow = 30; as(2); CHECK(sl_psem_acquire(s, 1, -1, 1) == SL_R_QUEUED);  /* key 40 */
  S.vnow = 45; as(3); CHECK(sl_psem_acquire(s, 1, -1, 1) == SL_R_QUEUED);  /* key 55 */
  S.vnow = 49; as(4); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_QUEUED);  /* key 49 */
  S.vnow = 50; as(5); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_QUEUED);  /* key 50, after 1 */
  as(0); CHECK(sl_psem_release(s) == SL_R_OK);
  CHECK(granted() == 2); as(2); CHECK(sl_psem_release(s) == SL_R_OK);
  CHECK(granted() == 4); as(4); CHECK(sl_psem_release(s) == SL_R_OK);
  CHECK(granted() == 1); as(1); CHECK(sl_psem_release(s) == SL_R_OK);
  CHECK(granted() == 5); as(5); CHECK(sl_psem_release(s) == SL_R_OK);
  CHECK(granted() == 3); as(3); CHECK(sl_psem_release(s) == SL_R_OK);
  sl_psem_free(s);
  teardown();
}

static void test_timeout_cancel_abandon(void) {
  sl_psem *s;
  sl_stats st;
  setup();
  s = sl_psem_new(1, 0);
  as(0); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_psem_acquire(s, 1, 5, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_psem_acquire(s, 2, -1, 1) == SL_R_QUEUED);
  as(3); CHECK(sl_psem_acquire(s, 3, -1, 1) == SL_R_QUEUED);
  as(4); CHECK(sl_psem_acquire(s, 4, -1, 1) == SL_R_QUEUED);
  fire_next_timer();
  CHECK(S.vnow == 5 && woken(1, SL_WAKE_TIMEOUT) && waiting(s) == 3);
  CHECK(sl_task_cancel(&T[3]) && woken(3, SL_WAKE_CANCEL) && waiting(s) == 2);
  as(0); CHECK(sl_psem_release(s) == SL_R_OK);
  CHECK(T[2].status == SL_READY);
  sl_task_cancel(&T[2]);                       /* after the hand-off */
  CHECK(woken(2, SL_WAKE_OK));
  as(2); CHECK(sl_psem_abandon(s) == SL_R_OK);
  CHECK(woken(4, SL_WAKE_OK) && held_by(s, 2) == 0 && held_by(s, 4) == 1);
  T[5].cancelled = 1;
  as(5); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_CANCELLED);
  as(6); CHECK(sl_psem_acquire(s, 0, -1, 0) == SL_R_NOBLOCK);
  CHECK(waiting(s) == 0 && S.timers.len == 0);
  sl_prim_stats(sl_psem_prim(s), &st);
  CHECK(st.acquired == 2 && st.waited == 1 && st.timeouts == 1 && st.cancelled == 2);
  as(4); CHECK(sl_psem_release(s) == SL_R_OK);
  sl_psem_free(s);
  teardown();
}

/* Waiters leave the heap from anywhere (timeouts, cancellations) and the
 * rest are still granted in (priority, arrival) order. */
static void test_heap_removal(void) {
  sl_psem *s;
  int prio[NT], gone[NT], i, n = 0, last = -1;
  unsigned x = 12345;
  setup();
  s = sl_psem_new(1, 0);
  as(0); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_OK);
  for (i = 1; i < NT; i++) {
    x = x * 1103515245u + 12345u;
    prio[i] = (int)((x >> 16) % 7);
    gone[i] = 0;
    as(i); CHECK(sl_psem_acquire(s, prio[i], -1, 1) == SL_R_QUEUED);
  }
  for (i = 1; i < NT; i++) {
    x = x * 1103515245u + 12345u;
    if ((x >> 16) % 3 == 0) {
      gone[i] = 1;
      CHECK(sl_task_cancel(&T[i]) && woken(i, SL_WAKE_CANCEL));
    }
  }
  as(0); CHECK(sl_psem_release(s) == SL_R_OK);
  for (;;) {
    int who = granted();
    CHECK(who != -2 && who != -3);
    if (who < 0) break;
    CHECK(!gone[who]);
    if (last >= 0) CHECK(prio[last] < prio[who] || (prio[last] == prio[who] && last < who));
    last = who;
    n++;
    as(who); CHECK(sl_psem_release(s) == SL_R_OK);
  }
  for (i = 1; i < NT; i++) n += gone[i];
  CHECK(n == NT - 1 && waiting(s) == 0 && sl_psem_held(s) == 0);
  sl_psem_free(s);
  teardown();
}

static void test_resize_and_release_all(void) {
  sl_psem *s;
  setup();
  s = sl_psem_new(1, 0);
  as(0); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_OK);
  as(1); CHECK(sl_psem_acquire(s, 2, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_psem_acquire(s, 1, -1, 1) == SL_R_QUEUED);
  as(3); CHECK(sl_psem_acquire(s, 3, -1, 1) == SL_R_QUEUED);
  sl_psem_set_limit(s, 3);
  CHECK(woken(2, SL_WAKE_OK) && woken(1, SL_WAKE_OK) && parked(3));
  sl_psem_set_limit(s, 1);                     /* 3 held: nobody gives back */
  CHECK(sl_psem_held(s) == 3 && sl_psem_available(s) == 0);
  as(0); CHECK(sl_psem_release(s) == SL_R_OK);
  as(1); CHECK(sl_psem_release(s) == SL_R_OK);
  CHECK(parked(3));                            /* held 1 = limit */
  CHECK(sl_hold_release_all(&T[2]) == 1);      /* ends holding */
  CHECK(woken(3, SL_WAKE_OK) && sl_psem_held(s) == 1);
  as(3); CHECK(sl_psem_release(s) == SL_R_OK);
  sl_psem_free(s);
  teardown();
}

static void test_deadlock(void) {
  sl_psem *s;
  setup();
  s = sl_psem_new(2, 0);
  as(0); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_OK);
  as(0); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_OK);
  as(0); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_DEADLOCK);
  CHECK(waiting(s) == 0 && held_by(s, 0) == 2);
  as(0); CHECK(sl_psem_release(s) == SL_R_OK);
  as(1); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_OK);
  as(0); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_QUEUED);  /* 1 may release */
  as(1); CHECK(sl_psem_acquire(s, 0, -1, 1) == SL_R_DEADLOCK);
  CHECK(sl_task_cancel(&T[0]) && woken(0, SL_WAKE_CANCEL));
  T[0].cancelled = 0;
  as(0); CHECK(sl_psem_release(s) == SL_R_OK);
  as(1); CHECK(sl_psem_release(s) == SL_R_OK);
  sl_psem_free(s);
  teardown();
}

int main(void) {
  RUN(test_uncontended);
  RUN(test_priority_order);
  RUN(test_aging);
  RUN(test_timeout_cancel_abandon);
  RUN(test_heap_removal);
  RUN(test_resize_and_release_all);
  RUN(test_deadlock);
  return sl_check_done();
}
