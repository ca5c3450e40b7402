/*
 * sl_ffi_keep.c - references every function Lua reaches through the FFI.
 *
 * Nothing in C calls them, so a static link (the sluice binary, a host
 * linking libsluice.a) would drop their objects and ffi.C would not find
 * them.  sl_open references this table, which keeps them all linked in.
 * Each sl_ffi*.h lists its functions in an SL_FFI_*_FUNCS macro.
 */
#include "sl_prim.h"
#include "sl_ffi_wsem.h"
#include "sl_ffi_psem.h"
#include "sl_ffi_limit.h"
#include "sl_ffi_bucket.h"
#include "sl_ffi_chan.h"
#include "sl_ffi_jobq.h"
#include "sl_ffi_pool.h"

void *const sl_ffi_keep[] = {
  SL_FFI_CORE_FUNCS
  SL_FFI_WSEM_FUNCS
  SL_FFI_PSEM_FUNCS
  SL_FFI_LIMIT_FUNCS
  SL_FFI_BUCKET_FUNCS
  SL_FFI_CHAN_FUNCS
  SL_FFI_JOBQ_FUNCS
  SL_FFI_POOL_FUNCS
  NULL
};
