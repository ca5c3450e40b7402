/*
 * sl_ffi_limit.h - FFI declarations of the p-limit style limiter (sl_limit.c).
 * Embedded into "sluice.cdef" after sl_ffi.h (its '#' lines dropped), so
 * plain declarations only.  SL_FFI_LIMIT_FUNCS lists every function for
 * sl_ffi_keep.c, so a static link keeps them.
 */
#ifndef SL_FFI_LIMIT_H
#define SL_FFI_LIMIT_H

#define SL_FFI_LIMIT_FUNCS

#endif
