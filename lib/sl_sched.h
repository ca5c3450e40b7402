/*
 * sl_sched.h - the task scheduler: tasks, scopes, the ready queue, timers.
 *
 * A task is a Lua coroutine plus an sl_task record that lives inside the
 * task's userdata (so Lua's GC owns the memory and the Lua face can hand
 * the same object out again).  While a task is unfinished the scheduler
 * anchors both the userdata and the coroutine in one slot of its anchor
 * table (sl_anchor).  A task gets its coroutine only when it first runs
 * (sl_task_load), from the pool of finished ones when there is one: until
 * then the slot holds its function, or a table of the function and its
 * arguments.
 *
 * Waking never resumes anything: it only moves the task onto the ready
 * queue.  One flat trampoline (sl_sched_pass), run from a uv_check handle,
 * resumes ready tasks; a pass runs only the tasks that were ready when it
 * began, so a task that keeps yielding cannot starve I/O.
 *
 * A waiting task is linked into exactly one wait queue through its
 * embedded sl_wait node and may have its embedded timer armed (sleep or a
 * wait timeout).  Cancelling or timing out a waiter calls the wait's
 * unwait hook, which unlinks it as if it had never queued.
 */
#ifndef SL_SCHED_H
#define SL_SCHED_H

#include <stdint.h>
#include <uv.h>
#include <lua.h>
#include <lauxlib.h>

#include "sl_queue.h"
#include "sl_timer.h"

typedef struct sl_task sl_task;
typedef struct sl_scope sl_scope;
typedef struct sl_sched sl_sched;

enum sl_status {
  SL_READY, SL_RUNNING, SL_WAITING, SL_DONE, SL_FAILED, SL_CANCELLED
};

/* What a parked task is resumed with. */
enum sl_wake { SL_WAKE_OK = 0, SL_WAKE_TIMEOUT = 1, SL_WAKE_CANCEL = 2 };

/* Unlinks a waiter from what it waits on.  Returns 1 if the task may be
 * woken now, 0 if it must stay parked (a scope owner keeps waiting for
 * its children to unwind after it cancelled them). */
typedef int (*sl_unwait_cb)(sl_task *t, int why);

/* What a wait is on, for deadlock detection and reports. */
enum sl_wait_kind { SL_WAIT_OTHER, SL_WAIT_TASK, SL_WAIT_SCOPE, SL_WAIT_PRIM };

typedef struct sl_wait {
  sl_queue link;          /* in the waited-on object's queue */
  double since;           /* when the wait began (for wait statistics) */
  const char *what;       /* "sleep", "await", "scope", ... for reports */
  void *obj;              /* the object waited on, NULL for none */
  sl_unwait_cb unwait;    /* NULL: nothing to unlink */
  intptr_t arg;           /* primitive-specific (weight, priority) */
} sl_wait;

struct sl_task {
  sl_queue ready;         /* in sched->ready */
  sl_queue member;        /* in scope->children while unfinished */
  sl_queue awaiters;      /* waiters (their wait.link) on this task */
  sl_queue held;          /* sl_hold records: what this task holds */
  sl_wait wait;
  sl_timer timer;
  lua_State *co;          /* NULL until loaded (sl_task_load), and once finished */
  sl_sched *sched;
  sl_scope *scope;
  int ref;                /* anchor slot (sl_anchor) while unfinished, else LUA_NOREF */
  uint32_t id;
  int nargs;              /* arguments waiting for the first resume */
  uint16_t shield;        /* > 0: cancellation is deferred */
  uint8_t status;
  uint8_t wake;
  uint8_t started;
  uint8_t cancelled;      /* cancellation requested */
  uint8_t observed;       /* its outcome was taken (await, scope) */
  uint8_t is_main;        /* the root task of a runtime */
  uint8_t wrapped;        /* runs under xpcall: finishes with (ok, ...) */
  uint8_t wait_kind;      /* enum sl_wait_kind: what wait.obj points to */
};

struct sl_scope {
  sl_queue children;      /* unfinished tasks (their member link) */
  sl_timer deadline;
  sl_sched *sched;
  sl_task *owner;         /* the task parked in scope_wait, if any */
  sl_task *failed;        /* first child that failed (not cancelled) */
  int failed_ref;         /* registry: that child's userdata */
  int ref;                /* registry: the scope userdata while open */
  uint32_t nlive;
  uint8_t cancelled;
  uint8_t timed_out;
  uint8_t closed;
  uint8_t root;           /* the runtime's root scope: failures reported */
};

#define SL_LAG_WINDOW 512

typedef void (*sl_report_cb)(sl_sched *S, sl_task *t, lua_State *co);

struct sl_sched {
  uv_loop_t *loop;
  lua_State *L;
  sl_queue ready;
  uint32_t ntasks;        /* unfinished tasks (sl_sched_list finds them) */
  sl_heap timers;
  sl_heap weak;           /* timers that do not keep the process alive */
  uv_timer_t uvtimer;
  uv_check_t check;
  uv_idle_t idle;
  sl_task *current;
  sl_scope root;
  double vnow;            /* virtual clock, seconds */
  double armed;           /* deadline the uv timer is set for, or -1 */
  double pass_now;        /* the clock when the current tick began */
  uint64_t t0;            /* uv_hrtime() at creation */
  uint32_t next_id;
  uint32_t nwaiting;      /* tasks parked */
  uint32_t nunhandled;    /* failures nobody observed (exit status) */
  uint8_t virtual_clock;
  uint8_t closing;
  int ref_task_mt;        /* registry refs, looked up on hot paths */
  int ref_failed_mt;
  int ref_noenv;
  int ref_unobserved;
  int ref_entry;
  int ref_xpcall;         /* the builtin xpcall, looked up once */
  int ref_scope_mt;
  /* The same metatables by address, for identity checks without a
   * registry lookup (they live as long as the state). */
  const void *task_mt, *failed_mt, *scope_mt;
  int ref_pool;           /* table of finished coroutines kept for reuse */
  int npool;
  int ref_anchors;        /* table of unfinished tasks: see sl_anchor */
  int *afree;             /* its free slots, most recently freed last */
  int nafree, acap, anext;
  sl_report_cb on_main_done;   /* the root task finished (ok or not) */
  sl_report_cb on_unhandled;   /* a root-scope task failed, nobody awaits it */
  void (*on_report)(sl_sched *S, const char *text);   /* other misuse */
  void (*on_warn)(sl_sched *S, const char *text);     /* warnings: not failures */
  void *data;
  /* Loop lag: how late timers fired (real clock only), the last
   * SL_LAG_WINDOW of them in a ring; nlag counts every one. */
  double lag[SL_LAG_WINDOW];
  uint64_t nlag;
  double warn_blocking;   /* > 0: report a task running this long at once */
};

/* The task being resumed on this thread, for C functions called from Lua
 * through the FFI (they cannot see the scheduler otherwise).  Set by the
 * trampoline around each resume, so nested schedulers are covered. */
extern __thread sl_task *sl_tls_task;
static inline sl_task *sl_running_task(void) { return sl_tls_task; }

/* The lightuserdata a parking coroutine yields, so wrappers around user
 * coroutines can tell a scheduler park from a user yield. */
extern char sl_park_sentinel;
#define SL_PARK ((void *)&sl_park_sentinel)

int  sl_sched_init(sl_sched *S, uv_loop_t *loop, lua_State *L, int virtual_clock);
void sl_sched_close(sl_sched *S);   /* closes handles; caller runs the loop */
void sl_sched_pass(sl_sched *S);
double sl_now(sl_sched *S);
int  sl_sched_alive(sl_sched *S);   /* work ready, timers armed */
/* Arms (or re-arms) t on the weak heap, at an absolute deadline: it
 * fires like any timer, but does not keep the process alive, and under
 * the virtual clock fires only when other timers carry time past it.
 * sl_heap_remove(&S->weak, t) disarms it. */
int  sl_sched_arm_weak(sl_sched *S, sl_timer *t, double deadline);
/* Loop lag over the window: out[0..2] = p50, p99, max (seconds). */
void sl_sched_lag(sl_sched *S, double out[3]);

void sl_task_init(sl_task *t, sl_sched *S, sl_scope *scope);
void sl_task_make_ready(sl_task *t, int wake);
/* Parks the running task; the caller then yields SL_PARK. */
void sl_task_park(sl_task *t, const char *what, void *obj, sl_unwait_cb unwait);
/* Wakes a parked task: unlinks its timer and marks it ready with code. */
void sl_task_wake(sl_task *t, int wake);
/* Interrupts a wait (timeout, cancel) through its unwait hook. */
void sl_task_interrupt(sl_task *t, int why);
int  sl_task_cancel(sl_task *t);
/* A cancellation was requested and no shield defers it: the task takes
 * it at its next blocking point (and one not yet started never starts). */
static inline int sl_task_cancel_due(const sl_task *t) { return t->cancelled && !t->shield; }
int  sl_task_arm(sl_task *t, double seconds);   /* wait timeout / sleep */
void sl_task_finished(sl_task *t, int status);

void sl_scope_init(sl_scope *s, sl_sched *S, int root);
void sl_scope_add(sl_scope *s, sl_task *t);
void sl_scope_cancel(sl_scope *s);
int  sl_scope_arm(sl_scope *s, double seconds);

#endif
