/*
 * sl_ffi_limit.h - FFI declarations of the p-limit style limiter (sl_limit.c).
 * Embedded into "sluice.cdef" after sl_ffi.h (its '#' lines dropped), so
 * plain declarations only.  SL_FFI_LIMIT_FUNCS lists every function for
 * sl_ffi_keep.c, so a static link keeps them.
 *
 * A queued call is a slot: a 32-byte record in C (its place in the FIFO,
 * when it was queued, the scope it was made in) whose number indexes the
 * Lua side's arrays holding the function, its arguments and the handle.
 * Slot 0 means "none".
 */
#ifndef SL_FFI_LIMIT_H
#define SL_FFI_LIMIT_H

typedef struct sl_limit sl_limit;
/* The handle of a queued call, as Lua sees it: just its slot. */
typedef struct sl_lcall { uint32_t slot; } sl_lcall;

/* States of a slot, as sl_limit_state answers. */
enum { SL_LFREE = 0, SL_LPENDING = 1, SL_LDROPPED = 2, SL_LSTARTING = 3 };

sl_limit *sl_limit_new(double concurrency);
void sl_limit_free(sl_limit *l);
sl_prim *sl_limit_prim(sl_limit *l);
/* 1: a place is free and nobody queues (counted active); 0: queue it. */
int sl_limit_enter(sl_limit *l);
/* Queues a call from the running task: its slot, or 0 out of memory,
 * SL_R_NOTASK, or SL_R_CANCELLED (the caller's scope is cancelled). */
int sl_limit_queue(sl_limit *l);
/* Takes the head call if a place is free: its slot (now starting), or 0. */
uint32_t sl_limit_next(sl_limit *l);
/* The task started for slot (0: a call that did not queue) is in the
 * caller's scope and will not be cancelled before its body runs; the
 * slot is freed and the call's awaiters woken. */
void sl_limit_adopt(sl_limit *l, void *task, uint32_t slot);
/* First thing a started call's body does: 1 if it was cancelled before. */
int sl_limit_begin(void);
/* A started call ended: its place is free (sl_limit_next starts the next). */
void sl_limit_leave(sl_limit *l);
/* Cancels a queued call: 1 if it was queued (or dropped, now reaped). */
int sl_limit_drop(uint32_t slot);
/* clear_queue: drops and frees the head call, returns its slot or 0. */
uint32_t sl_limit_drop_head(sl_limit *l);
/* A call dropped by its scope's cancellation, freed now: slot or 0. */
uint32_t sl_limit_reap(sl_limit *l);
int sl_limit_state(uint32_t slot);
/* Parks the running task until the queued call in slot starts or is
 * dropped: SL_R_QUEUED, or SL_R_NOTASK, SL_R_CANCELLED, SL_R_NOBLOCK. */
int sl_limit_await(uint32_t slot, int can_block);
void sl_limit_set(sl_limit *l, double concurrency);
double sl_limit_concurrency(const sl_limit *l);
double sl_limit_active(const sl_limit *l);
double sl_limit_pending(const sl_limit *l);
/* Bytes the limiters' C side holds now (records, scopes, limiters). */
double sl_limit_bytes(void);

#define SL_FFI_LIMIT_FUNCS \
  (void *)sl_limit_new, (void *)sl_limit_free, (void *)sl_limit_prim, \
  (void *)sl_limit_enter, (void *)sl_limit_queue, (void *)sl_limit_next, \
  (void *)sl_limit_adopt, (void *)sl_limit_begin, (void *)sl_limit_leave, \
  (void *)sl_limit_drop, (void *)sl_limit_drop_head, (void *)sl_limit_reap, \
  (void *)sl_limit_state, (void *)sl_limit_await, (void *)sl_limit_set, \
  (void *)sl_limit_concurrency, (void *)sl_limit_active, \
  (void *)sl_limit_pending, (void *)sl_limit_bytes,

#endif
