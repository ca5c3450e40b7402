/*
 * sl_ffi_pool.h - FFI declarations of the resource pool (sl_pool.c).
 * Embedded into "sluice.cdef" after sl_ffi.h (its '#' lines dropped), so
 * plain declarations only.  SL_FFI_POOL_FUNCS lists every function for
 * sl_ffi_keep.c, so a static link keeps them.
 *
 * Slots are numbered from 1; the Lua face keeps each slot's resource.
 * Times are the scheduler's clock (sluice.now()): a now < 0 reads it.
 */
#ifndef SL_FFI_POOL_H
#define SL_FFI_POOL_H

typedef struct sl_pool sl_pool;

enum {
  SL_POOL_R_CLOSED = -20,     /* the pool is closed */
  SL_POOL_R_FULL = -21,       /* max_waiting tasks already wait */
  SL_POOL_WAKE_FAILED = 3,    /* a waiter's creation failed: the error id is its grant */
  SL_POOL_WAKE_CLOSED = 4,    /* the pool was closed while the task waited */
  SL_POOL_KEPT = 1,           /* release: the slot went to a waiter or the idle list */
  SL_POOL_DROP = 2            /* release: the slot is gone, destroy its resource */
};

typedef struct sl_pool_counts {
  double created;             /* creations that succeeded */
  double destroyed;           /* slots dropped (expired, broken, evicted, closed) */
  double create_failures;
  double evicted;             /* idle ones dropped for idle_timeout or max_lifetime */
  double backoff;             /* the delay after the next failure, seconds */
  double create_at;           /* no creation starts before this time */
} sl_pool_counts;

/* Durations < 0 (and max_uses < 0, max_waiting < 0): none.  NULL when
 * out of memory. */
sl_pool *sl_pool_new(double max, double min, double max_waiting, double idle_timeout,
                     double max_lifetime, double max_uses);
void sl_pool_free(sl_pool *p);
sl_prim *sl_pool_prim(sl_pool *p);
/* > 0: an idle slot, now borrowed; SL_R_QUEUED: parked, the grant is
 * read with sl_pool_granted after the wake; or an SL_R_* / SL_POOL_R_*. */
int sl_pool_acquire(sl_pool *p, double now, double timeout, int can_block);
/* What the running task was woken with: a slot, or an error id. */
int sl_pool_granted(const sl_pool *p);
/* A slot reserved for a creation now needed (0: none), counted in size. */
int sl_pool_need_create(sl_pool *p, double now);
/* How long a creation must wait (backoff after failures). */
double sl_pool_create_delay(const sl_pool *p, double now);
/* Creation of slot succeeded: SL_POOL_KEPT, or SL_POOL_DROP if closed. */
int sl_pool_created(sl_pool *p, int slot, double now);
/* Creation failed: 1 if the head waiter was failed with err_id, else 0. */
int sl_pool_create_failed(sl_pool *p, int slot, int err_id, double now);
/* Creation given up without an error of its own (the pool closed). */
void sl_pool_create_dropped(sl_pool *p, int slot);
int sl_pool_release(sl_pool *p, int slot, double now);
/* The running task was handed slot but cancelled before it ran. */
int sl_pool_abandon(sl_pool *p, int slot, double now);
/* A borrowed slot is broken: dropped.  SL_R_OK or SL_R_NOTHELD. */
int sl_pool_remove(sl_pool *p, int slot);
/* One idle slot past idle_timeout or max_lifetime, dropped; 0: none. */
int sl_pool_evict(sl_pool *p, double now);
/* Closes: waiters are woken with SL_POOL_WAKE_CLOSED.  1 the first time. */
int sl_pool_close(sl_pool *p);
/* After close: one idle slot (or, with active set, one borrowed slot),
 * dropped; 0 when none is left. */
int sl_pool_drain(sl_pool *p, int active);
int sl_pool_state(const sl_pool *p, int slot);   /* 0 free, 1 idle, 2 borrowed, 3 creating */
double sl_pool_slot_uses(const sl_pool *p, int slot);
double sl_pool_slot_created(const sl_pool *p, int slot);
int sl_pool_idle(const sl_pool *p);
int sl_pool_active(const sl_pool *p);
int sl_pool_pending(const sl_pool *p);
int sl_pool_size(const sl_pool *p);
int sl_pool_max(const sl_pool *p);
int sl_pool_min(const sl_pool *p);
int sl_pool_is_closed(const sl_pool *p);
/* No idle resource expires before this (1e300: none can). */
double sl_pool_next_expiry(const sl_pool *p);
void sl_pool_counts_get(const sl_pool *p, sl_pool_counts *out);

#define SL_FFI_POOL_FUNCS \
  (void *)sl_pool_new, (void *)sl_pool_free, (void *)sl_pool_prim, \
  (void *)sl_pool_acquire, (void *)sl_pool_granted, (void *)sl_pool_need_create, \
  (void *)sl_pool_create_delay, (void *)sl_pool_created, (void *)sl_pool_create_failed, \
  (void *)sl_pool_create_dropped, (void *)sl_pool_release, (void *)sl_pool_abandon, \
  (void *)sl_pool_remove, (void *)sl_pool_evict, (void *)sl_pool_close, \
  (void *)sl_pool_drain, (void *)sl_pool_state, (void *)sl_pool_slot_uses, \
  (void *)sl_pool_slot_created, (void *)sl_pool_idle, (void *)sl_pool_active, \
  (void *)sl_pool_pending, (void *)sl_pool_size, (void *)sl_pool_max, (void *)sl_pool_min, \
  (void *)sl_pool_is_closed, (void *)sl_pool_next_expiry, (void *)sl_pool_counts_get,

#endif
