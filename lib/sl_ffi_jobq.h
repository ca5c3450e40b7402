/*
 * sl_ffi_jobq.h - FFI declarations of the job queue, sluice.queue
 * (sl_jobq.c).  Embedded into "sluice.cdef" after sl_ffi.h (its '#'
 * lines dropped), so plain declarations only.  SL_FFI_JOBQ_FUNCS lists
 * every function for sl_ffi_keep.c, so a static link keeps them.
 *
 * A job is a slot from the add until it ends: a record in C (its place
 * in the priority heap, when it was added, its timeout, its runner)
 * whose number indexes the Lua side's arrays holding the function, its
 * arguments and the handle.  Slot 0 means "none".  Jobs run in runners:
 * tasks that each hold one place and run jobs one after another.
 */
#ifndef SL_FFI_JOBQ_H
#define SL_FFI_JOBQ_H

typedef struct sl_jobq sl_jobq;
/* The handle of a job, as Lua sees it: its slot while it is unfinished. */
typedef struct sl_qjob { uint32_t slot; } sl_qjob;

/* States of a slot, as sl_jobq_state answers. */
enum { SL_QFREE = 0, SL_QPENDING = 1, SL_QRUNNING = 3 };

/* interval_cap 0: no interval cap; timeout 0: none; concurrency and
 * max_size may be HUGE_VAL (no limit).  NULL out of memory. */
sl_jobq *sl_jobq_new(double concurrency, double interval, double interval_cap,
                     double timeout, double max_size, int paused);
void sl_jobq_free(sl_jobq *q);
sl_prim *sl_jobq_prim(sl_jobq *q);
/* Queues a job from the running task: slot * 2, plus 1 if a place was
 * reserved for a new runner (spawn one and adopt it); or 0 out of
 * memory, SL_R_NOTASK, SL_R_TOOMUCH (max_size jobs are queued already).
 * timeout < 0: the queue's own. */
int sl_jobq_submit(sl_jobq *q, double priority, double timeout);
/* 1 if a place was reserved for one more runner (spawn and adopt it). */
int sl_jobq_next(sl_jobq *q);
/* The task just spawned for the place reserved last holds that place,
 * moves to the root scope and will not be cancelled before its body runs. */
void sl_jobq_adopt(sl_jobq *q, void *task);
/* First thing a runner does: takes the best pending job, now running,
 * and returns its slot; 0 when it should end (its place is given back);
 * or -1 when the interval cap holds the start back: the runner is parked
 * until the window frees (yield, then call sl_jobq_retake). */
int sl_jobq_begin(sl_jobq *q);
/* The same after a park. */
int sl_jobq_retake(sl_jobq *q);
/* The running runner's job in slot returned: it ends (its awaiters
 * wake), and the runner takes the next as sl_jobq_begin does. */
int sl_jobq_continue(sl_jobq *q, uint32_t slot);
/* The runner's job in slot failed: it ends, and the place is given back. */
void sl_jobq_fail(sl_jobq *q, uint32_t slot);
/* The seconds after which the running job in slot was timed out, or 0. */
double sl_jobq_timed_out(uint32_t slot);
/* Cancels a pending job: 1 if it was pending. */
int sl_jobq_drop(uint32_t slot);
/* clear: drops and frees one pending job, returns its slot or 0. */
uint32_t sl_jobq_drop_any(sl_jobq *q);
int sl_jobq_state(uint32_t slot);
/* The queue of an unfinished job's slot. */
sl_jobq *sl_jobq_of(uint32_t slot);
/* Parks the running task until the job in slot ends or is dropped:
 * SL_R_QUEUED, SL_R_OK (it has ended), or SL_R_NOTASK, SL_R_CANCELLED,
 * SL_R_NOBLOCK, SL_R_DEADLOCK (pending, and every place is held by this
 * task or by tasks waiting on it). */
int sl_jobq_await(uint32_t slot, int can_block);
/* Parks the running task until fewer than n jobs are pending (n >= 1),
 * or, n == 0, until none is pending and none running: SL_R_QUEUED,
 * SL_R_OK (true already), SL_R_NOTASK, SL_R_CANCELLED, SL_R_NOBLOCK,
 * SL_R_DEADLOCK (n == 0 from one of q's own jobs). */
int sl_jobq_wait(sl_jobq *q, double n, int can_block);
void sl_jobq_pause(sl_jobq *q);
/* Un-pauses; the caller then dispatches. */
void sl_jobq_start(sl_jobq *q);
int sl_jobq_paused(const sl_jobq *q);
void sl_jobq_set_concurrency(sl_jobq *q, double concurrency);
double sl_jobq_concurrency(const sl_jobq *q);
/* Jobs pending (not started) and running; a job that a runner about to
 * begin will take in this same instant counts as running. */
double sl_jobq_size(const sl_jobq *q);
double sl_jobq_running(const sl_jobq *q);
/* Jobs that started after the interval cap had held a start back while
 * they were pending. */
double sl_jobq_throttled(const sl_jobq *q);
/* Bytes the queues' C side holds now (records, heaps, rings, queues). */
double sl_jobq_bytes(void);

#define SL_FFI_JOBQ_FUNCS \
  (void *)sl_jobq_new, (void *)sl_jobq_free, (void *)sl_jobq_prim, \
  (void *)sl_jobq_submit, (void *)sl_jobq_next, (void *)sl_jobq_adopt, \
  (void *)sl_jobq_begin, (void *)sl_jobq_retake, (void *)sl_jobq_continue, \
  (void *)sl_jobq_fail, (void *)sl_jobq_timed_out, (void *)sl_jobq_drop, \
  (void *)sl_jobq_drop_any, (void *)sl_jobq_state, (void *)sl_jobq_of, \
  (void *)sl_jobq_await, (void *)sl_jobq_wait, (void *)sl_jobq_pause, \
  (void *)sl_jobq_start, (void *)sl_jobq_paused, (void *)sl_jobq_set_concurrency, \
  (void *)sl_jobq_concurrency, (void *)sl_jobq_size, (void *)sl_jobq_running, \
  (void *)sl_jobq_throttled, (void *)sl_jobq_bytes,

#endif
