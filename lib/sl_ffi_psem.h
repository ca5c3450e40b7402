/*
 * sl_ffi_psem.h - FFI declarations of the priority semaphore (sl_psem.c).
 * Embedded into "sluice.cdef" after sl_ffi.h (its '#' lines dropped), so
 * plain declarations only.  SL_FFI_PSEM_FUNCS lists every function for
 * sl_ffi_keep.c, so a static link keeps them.
 */
#ifndef SL_FFI_PSEM_H
#define SL_FFI_PSEM_H

typedef struct sl_psem sl_psem;

/* acquire could not make room in the waiter heap (nothing changed). */
enum { SL_R_PSEM_NOMEM = -8 };

/* aging: seconds per priority step a waiter gains by waiting; 0: none. */
sl_psem *sl_psem_new(double permits, double aging);
void sl_psem_free(sl_psem *s);
sl_prim *sl_psem_prim(sl_psem *s);
/* Lower priority numbers first; FIFO within a priority. */
int sl_psem_acquire(sl_psem *s, double priority, double timeout, int can_block);
int sl_psem_try_acquire(sl_psem *s);
int sl_psem_release(sl_psem *s);
/* Gives back a permit handed to a task cancelled since (counted as cancelled). */
int sl_psem_abandon(sl_psem *s);
double sl_psem_available(const sl_psem *s);
double sl_psem_held(const sl_psem *s);
double sl_psem_limit(const sl_psem *s);
double sl_psem_aging(const sl_psem *s);
void sl_psem_set_limit(sl_psem *s, double permits);

#define SL_FFI_PSEM_FUNCS \
  (void *)sl_psem_new, (void *)sl_psem_free, (void *)sl_psem_prim, \
  (void *)sl_psem_acquire, (void *)sl_psem_try_acquire, (void *)sl_psem_release, \
  (void *)sl_psem_available, (void *)sl_psem_held, (void *)sl_psem_limit, \
  (void *)sl_psem_aging, (void *)sl_psem_set_limit, (void *)sl_psem_abandon,

#endif
