/*
 * sl_ffi_psem.h - FFI declarations of the priority semaphore (sl_psem.c).
 * Embedded into "sluice.cdef" after sl_ffi.h (its '#' lines dropped), so
 * plain declarations only.  SL_FFI_PSEM_FUNCS lists every function for
 * sl_ffi_keep.c, so a static link keeps them.
 */
#ifndef SL_FFI_PSEM_H
#define SL_FFI_PSEM_H

#define SL_FFI_PSEM_FUNCS

#endif
