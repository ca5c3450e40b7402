/*
 * sl_fake_sched.h - a scheduler without Lua for the primitives' C tests.
 *
 * A scheduler on a private loop with the virtual clock, and NT task
 * records that no coroutine runs.  A "task" is made "running" by pointing
 * sl_tls_task at it before each call (as()), as the trampoline does
 * around a resume.  A grant shows as the task moving to the ready queue
 * with wake code OK; woken() "resumes" it by taking it off that queue.
 * Define NT before including this file.
 */
#ifndef SL_FAKE_SCHED_H
#define SL_FAKE_SCHED_H

#include "../lib/sl_prim.h"

#include <string.h>

static uv_loop_t loop;
static sl_sched S;
static sl_task T[NT];

static void setup(void) {
  int i;
  uv_loop_init(&loop);
  sl_sched_init(&S, &loop, NULL, 1);
  for (i = 0; i < NT; i++) {
    memset(&T[i], 0, sizeof T[i]);
    sl_task_init(&T[i], &S, NULL);
    sl_queue_remove(&T[i].ready);   /* not queued: "running" when called */
    T[i].status = SL_RUNNING;
  }
}

static void teardown(void) {
  sl_sched_close(&S);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  sl_tls_task = NULL;
}

static int as(int i) { sl_tls_task = &T[i]; return i; }

/* Was task i woken with code wake?  If so it is "resumed" (running). */
static int woken(int i, int wake) {
  if (T[i].status != SL_READY || T[i].wake != wake) return 0;
  sl_queue_remove(&T[i].ready);
  T[i].status = SL_RUNNING;
  return 1;
}

static int parked(int i) { return T[i].status == SL_WAITING; }

/* Fires the earliest timer after moving the clock to it. */
static inline void fire_next_timer(void) {
  sl_timer *m = sl_heap_min(&S.timers);
  if (!m) return;
  if (m->deadline > S.vnow) S.vnow = m->deadline;
  sl_heap_remove(&S.timers, m);
  m->cb(m);
}

#endif
