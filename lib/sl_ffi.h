/*
 * sl_ffi.h - the C functions Lua calls through LuaJIT's FFI, and the
 * structs they share.  This file is also the source of ffi.cdef (it is
 * embedded as the module "sluice.cdef" with its '#' lines dropped), so it
 * must hold plain declarations only: no macros, no includes.
 *
 * Why the FFI: a primitive's hot path (an uncontended acquire, a
 * release) is a JIT-compiled call into C with no Lua C API crossing and
 * no allocation.  C parks the running task itself when it must wait and
 * answers SL_R_QUEUED; only then does the Lua face yield to the scheduler.
 */
#ifndef SL_FFI_H
#define SL_FFI_H

/* Answers of the acquire-like calls (negative: nothing was changed). */
enum {
  SL_R_OK = 1,              /* granted at once */
  SL_R_QUEUED = 0,          /* the task is parked: yield, then read the wake code */
  SL_R_NOTASK = -1,         /* not called from a task */
  SL_R_CANCELLED = -2,      /* the task has a pending cancellation */
  SL_R_NOBLOCK = -3,        /* would wait, but the caller cannot yield here */
  SL_R_DEADLOCK = -4,       /* would wait forever: only this task (or tasks
                             waiting on it) can release what it waits for */
  SL_R_NOTHELD = -5,        /* releasing what the task does not hold */
  SL_R_TOOMUCH = -6,        /* more than the capacity */
  SL_R_TIMEDOUT = -7        /* a zero timeout and nothing free */
};

/* Log2 buckets of wait time: bucket i counts waits shorter than
 * 2^i microseconds (the last one: everything longer). */
enum { SL_HIST_BUCKETS = 32 };

typedef struct sl_stats {
  double acquired;        /* grants, at once or after waiting */
  double waited;          /* grants that had to wait */
  double timeouts;
  double cancelled;       /* waits ended by cancellation */
  double wait_total;      /* seconds waited by granted, timed-out and cancelled waits */
  double wait_max;
  double hist[32];
} sl_stats;

typedef struct sl_prim sl_prim;
typedef struct sl_sem sl_sem;

/* The running task's cancellation is pending (and not shielded). */
int sl_ffi_cancel_pending(void);
/* Is a task running?  (Blocking calls need one.) */
int sl_ffi_in_task(void);

/* Common to every primitive. */
void sl_prim_stats(const sl_prim *p, sl_stats *out);
int sl_prim_waiting(const sl_prim *p);
/* Permits (or weight) the running task holds of p. */
double sl_prim_held_by_me(const sl_prim *p);

/* Counting semaphore (sl_sem.c); a mutex is one with a single permit. */
sl_sem *sl_sem_new(double permits, int is_mutex);
void sl_sem_free(sl_sem *s);
sl_prim *sl_sem_prim(sl_sem *s);
int sl_sem_acquire(sl_sem *s, double timeout, int can_block);
int sl_sem_try_acquire(sl_sem *s);
int sl_sem_release(sl_sem *s);
double sl_sem_available(const sl_sem *s);
double sl_sem_limit(const sl_sem *s);
void sl_sem_set_limit(sl_sem *s, double permits);
int sl_sem_is_mutex(const sl_sem *s);
double sl_sem_held(const sl_sem *s);
int sl_sem_abandon(sl_sem *s);   /* gives back a permit handed to a task cancelled since */

#define SL_FFI_CORE_FUNCS \
  (void *)sl_ffi_cancel_pending, (void *)sl_ffi_in_task, \
  (void *)sl_prim_stats, (void *)sl_prim_waiting, (void *)sl_prim_held_by_me, \
  (void *)sl_sem_new, (void *)sl_sem_free, (void *)sl_sem_prim, \
  (void *)sl_sem_acquire, (void *)sl_sem_try_acquire, (void *)sl_sem_release, \
  (void *)sl_sem_available, (void *)sl_sem_limit, (void *)sl_sem_set_limit, \
  (void *)sl_sem_is_mutex, (void *)sl_sem_held, (void *)sl_sem_abandon,

#endif
