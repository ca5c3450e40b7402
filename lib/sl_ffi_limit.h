/*
 * sl_ffi_limit.h - FFI declarations of the p-limit style limiter (sl_limit.c).
 * Embedded into "sluice.cdef" after sl_ffi.h (its '#' lines dropped), so
 * plain declarations only.  SL_FFI_LIMIT_FUNCS lists every function for
 * sl_ffi_keep.c, so a static link keeps them.
 *
 * A call is a slot, from the call until it ends: a 32-byte record in C
 * (its place in the FIFO, when it was queued, the scope it was made in)
 * whose number indexes the Lua side's arrays holding the function, its
 * arguments and the handle.  Slot 0 means "none".  Calls run in runners:
 * tasks that each hold one place and run calls one after another.
 */
#ifndef SL_FFI_LIMIT_H
#define SL_FFI_LIMIT_H

typedef struct sl_limit sl_limit;
/* The handle of a call, as Lua sees it: its slot while it is unfinished. */
typedef struct sl_lcall { uint32_t slot; } sl_lcall;

/* States of a slot, as sl_limit_state answers. */
enum { SL_LFREE = 0, SL_LPENDING = 1, SL_LDROPPED = 2, SL_LRUNNING = 3 };

sl_limit *sl_limit_new(double concurrency);
void sl_limit_free(sl_limit *l);
sl_prim *sl_limit_prim(sl_limit *l);
/* Queues a call from the running task: slot * 2, plus 1 if a place was
 * reserved for a new runner (spawn one and adopt it); or 0 out of
 * memory, SL_R_NOTASK, SL_R_CANCELLED (the caller's scope is cancelled). */
int sl_limit_submit(sl_limit *l);
/* 1 if a place was reserved for one more runner (spawn and adopt it). */
int sl_limit_next(sl_limit *l);
/* The task just spawned for the place reserved last holds that place,
 * goes into the head call's scope and will not be cancelled before its
 * body runs. */
void sl_limit_adopt(sl_limit *l, void *task);
/* First thing a runner does: takes the head call, now running, and
 * returns its slot; or 0, and the runner's place is given back (no call
 * left, the head is another scope's, the limit shrank, or cancelled). */
uint32_t sl_limit_begin(sl_limit *l);
/* The running runner's call in slot returned: the call ends (its
 * awaiters wake), and the runner takes the next as sl_limit_begin does. */
uint32_t sl_limit_continue(sl_limit *l, uint32_t slot);
/* The runner's call in slot failed: it ends, and the runner's place is
 * given back (the runner ends with the error). */
void sl_limit_fail(sl_limit *l, uint32_t slot);
/* Cancels a queued call: 1 if it was queued (or dropped, now reaped). */
int sl_limit_drop(uint32_t slot);
/* clear_queue: drops and frees the head call, returns its slot or 0. */
uint32_t sl_limit_drop_head(sl_limit *l);
/* A call dropped by its scope's cancellation, freed now: slot or 0. */
uint32_t sl_limit_reap(sl_limit *l);
int sl_limit_state(uint32_t slot);
/* The limiter of an unfinished call's slot. */
sl_limit *sl_limit_of(uint32_t slot);
/* Parks the running task until the call in slot ends or is dropped:
 * SL_R_QUEUED, SL_R_OK (it has ended), or SL_R_NOTASK, SL_R_CANCELLED,
 * SL_R_NOBLOCK, SL_R_DEADLOCK (queued, and every place is held by this
 * task or by tasks waiting on it). */
int sl_limit_await(uint32_t slot, int can_block);
void sl_limit_set(sl_limit *l, double concurrency);
double sl_limit_concurrency(const sl_limit *l);
double sl_limit_active(const sl_limit *l);
double sl_limit_pending(const sl_limit *l);
/* Bytes the limiters' C side holds now (records, scopes, limiters). */
double sl_limit_bytes(void);

#define SL_FFI_LIMIT_FUNCS \
  (void *)sl_limit_new, (void *)sl_limit_free, (void *)sl_limit_prim, \
  (void *)sl_limit_submit, (void *)sl_limit_next, (void *)sl_limit_adopt, \
  (void *)sl_limit_begin, (void *)sl_limit_continue, (void *)sl_limit_fail, \
  (void *)sl_limit_drop, (void *)sl_limit_drop_head, (void *)sl_limit_reap, \
  (void *)sl_limit_state, (void *)sl_limit_of, (void *)sl_limit_await, (void *)sl_limit_set, \
  (void *)sl_limit_concurrency, (void *)sl_limit_active, \
  (void *)sl_limit_pending, (void *)sl_limit_bytes,

#endif
