/*
 * sl_ffi_wsem.h - FFI declarations of the weighted semaphore (sl_wsem.c).
 * Embedded into "sluice.cdef" after sl_ffi.h (its '#' lines dropped), so
 * plain declarations only.  SL_FFI_WSEM_FUNCS lists every function for
 * sl_ffi_keep.c, so a static link keeps them.
 */
#ifndef SL_FFI_WSEM_H
#define SL_FFI_WSEM_H

typedef struct sl_wsem sl_wsem;

/* The wake code of a waiter whose weight the capacity shrank below. */
enum { SL_WSEM_WAKE_TOOBIG = 3 };

/* The largest capacity (and weight): weights are exact integers. */
double sl_wsem_max(void);
/* NULL for a capacity out of range (or out of memory). */
sl_wsem *sl_wsem_new(double capacity);
void sl_wsem_free(sl_wsem *s);
sl_prim *sl_wsem_prim(sl_wsem *s);
int sl_wsem_acquire(sl_wsem *s, double w, double timeout, int can_block);
int sl_wsem_try_acquire(sl_wsem *s, double w);
int sl_wsem_release(sl_wsem *s, double w);
/* Gives back w handed to a task cancelled since (counted as cancelled). */
int sl_wsem_abandon(sl_wsem *s, double w);
double sl_wsem_capacity(const sl_wsem *s);
double sl_wsem_held(const sl_wsem *s);
double sl_wsem_available(const sl_wsem *s);
int sl_wsem_set_capacity(sl_wsem *s, double capacity);

#define SL_FFI_WSEM_FUNCS \
  (void *)sl_wsem_max, (void *)sl_wsem_new, (void *)sl_wsem_free, \
  (void *)sl_wsem_prim, (void *)sl_wsem_acquire, (void *)sl_wsem_try_acquire, \
  (void *)sl_wsem_release, (void *)sl_wsem_capacity, (void *)sl_wsem_held, \
  (void *)sl_wsem_available, (void *)sl_wsem_set_capacity, (void *)sl_wsem_abandon,

#endif
