/*
 * sl_prim.h - what every blocking primitive shares: its waiter queue,
 * the records of which tasks hold it (and how much), wait statistics,
 * and deadlock detection over the wait-for graph.
 *
 * A primitive struct starts with an sl_prim, so the scheduler, the
 * deadlock detector and the runtime's reports can treat them alike.
 */
#ifndef SL_PRIM_H
#define SL_PRIM_H

#include "sl_sched.h"
#include "sl_ffi.h"

/* One task's holding of one primitive (count: permits or weight). */
typedef struct sl_hold {
  sl_queue in_prim;       /* in prim->holders */
  sl_queue in_task;       /* in task->held */
  sl_prim *prim;
  sl_task *task;
  double count;
} sl_hold;

struct sl_prim {
  sl_queue waiters;       /* parked tasks, through task->wait.link */
  sl_queue holders;       /* sl_hold records */
  const char *kind;       /* "semaphore", "mutex", ... for messages */
  /* Returns n permits (or weight) whose holder record is already gone,
   * handing them to waiters: used when a task ends still holding. */
  void (*give)(sl_prim *p, double n);
  int nwaiting;
  sl_stats stats;
};

void sl_prim_init(sl_prim *p, const char *kind);
/* Releases the holder records; the primitive must have no waiters. */
void sl_prim_destroy(sl_prim *p);

sl_hold *sl_hold_find(const sl_prim *p, const sl_task *t);
/* Records that t now holds n more of p.  Returns 0, or -1 out of memory. */
int sl_hold_add(sl_prim *p, sl_task *t, double n);
/* t gives back n of p: 0, or SL_R_NOTHELD if it holds less than n. */
int sl_hold_sub(sl_prim *p, sl_task *t, double n);

/* Parks the running task t at the tail of p's queue, with a timeout if
 * timeout >= 0; the caller has checked it may block (sl_prim_may_wait).
 * Returns SL_R_QUEUED. */
int sl_prim_park(sl_prim *p, sl_task *t, const char *what, double timeout, sl_unwait_cb unwait);
/* Grants the parked task t (it leaves the queue, is woken with OK). */
void sl_prim_grant(sl_prim *p, sl_task *t);
/* Counts a wait that ended without a grant (timeout or cancellation). */
void sl_prim_wait_lost(sl_prim *p, sl_task *t, int why);
/* Counts a grant that did not wait. */
static inline void sl_prim_count_grant(sl_prim *p) { p->stats.acquired++; }

/* The running task gives back n of p (release, or abandon: a grant it
 * was handed but, cancelled before it could run, will not use, whose
 * wait then counts as cancelled rather than as an acquisition).
 * Returns SL_R_OK, SL_R_NOTASK or SL_R_NOTHELD; the caller then returns
 * the n to its count and dispatches. */
int sl_prim_give_back(sl_prim *p, double n, int abandoned);

/* Checks the usual preconditions of a wait by the running task:
 * returns SL_R_QUEUED if it may park, else the SL_* answer to give. */
int sl_prim_may_wait(sl_prim *p, sl_task *t, int can_block);

/* Would t wait forever on p?  True when every holder of p is t itself or
 * a task that (through awaits, scopes and primitives) waits only on t. */
int sl_would_deadlock(sl_task *t, sl_prim *p);

/* Releases whatever a finishing task still holds; returns how many
 * primitives it held (the runtime reports that as a bug in the task). */
int sl_hold_release_all(sl_task *t);

#endif
