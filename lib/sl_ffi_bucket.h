/*
 * sl_ffi_bucket.h - FFI declarations of the token bucket (sl_bucket.c).
 * Embedded into "sluice.cdef" after sl_ffi.h (its '#' lines dropped), so
 * plain declarations only.  SL_FFI_BUCKET_FUNCS lists every function for
 * sl_ffi_keep.c, so a static link keeps them.
 *
 * A bucket belongs to one scheduler (whose clock refills it and whose
 * timer heap wakes its waiters): the one running the task that made it,
 * or, made outside any task, the first task that uses it.
 */
#ifndef SL_FFI_BUCKET_H
#define SL_FFI_BUCKET_H

typedef struct sl_bucket sl_bucket;

/* Answer of a call from a task of another scheduler (sluice.run). */
enum { SL_BUCKET_R_FOREIGN = -20 };

/* NULL for a capacity or rate that is not finite and positive, initial
 * tokens outside [0, capacity], or out of memory. */
sl_bucket *sl_bucket_new(double capacity, double rate, double initial);
void sl_bucket_free(sl_bucket *b);
sl_prim *sl_bucket_prim(sl_bucket *b);
/* Takes n tokens or parks the running task until they are due (FIFO):
 * SL_R_OK, SL_R_QUEUED, SL_R_TIMEDOUT (timeout 0), SL_R_TOOMUCH,
 * SL_R_NOTASK, SL_R_CANCELLED, SL_R_NOBLOCK or SL_BUCKET_R_FOREIGN. */
int sl_bucket_take(sl_bucket *b, double n, double timeout, int can_block);
/* SL_R_OK, or SL_R_QUEUED for "not now"; never parks, never barges. */
int sl_bucket_try_take(sl_bucket *b, double n);
/* Gives back n handed to a task cancelled since (counted as cancelled). */
int sl_bucket_abandon(sl_bucket *b, double n);
/* Tokens now; -1 from a task of another scheduler.  Outside any task
 * the clock is not read: the count as of the bucket's last update. */
double sl_bucket_tokens(sl_bucket *b);
double sl_bucket_capacity(const sl_bucket *b);
double sl_bucket_rate(const sl_bucket *b);
/* SL_R_OK, SL_R_NOTASK, SL_BUCKET_R_FOREIGN, or SL_R_TOOMUCH for a rate
 * that is not finite and positive (nothing changed). */
int sl_bucket_set_rate(sl_bucket *b, double rate);

#define SL_FFI_BUCKET_FUNCS \
  (void *)sl_bucket_new, (void *)sl_bucket_free, (void *)sl_bucket_prim, \
  (void *)sl_bucket_take, (void *)sl_bucket_try_take, (void *)sl_bucket_abandon, \
  (void *)sl_bucket_tokens, (void *)sl_bucket_capacity, (void *)sl_bucket_rate, \
  (void *)sl_bucket_set_rate,

#endif
