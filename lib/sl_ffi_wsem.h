/*
 * sl_ffi_wsem.h - FFI declarations of the weighted semaphore (sl_wsem.c).
 * Embedded into "sluice.cdef" after sl_ffi.h (its '#' lines dropped), so
 * plain declarations only.  SL_FFI_WSEM_FUNCS lists every function for
 * sl_ffi_keep.c, so a static link keeps them.
 */
#ifndef SL_FFI_WSEM_H
#define SL_FFI_WSEM_H

#define SL_FFI_WSEM_FUNCS

#endif
