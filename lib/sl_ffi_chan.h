/*
 * sl_ffi_chan.h - FFI declarations of the channel (sl_chan.c).
 * Embedded into "sluice.cdef" after sl_ffi.h (its '#' lines dropped), so
 * plain declarations only.  SL_FFI_CHAN_FUNCS lists every function for
 * sl_ffi_keep.c, so a static link keeps them.
 *
 * Values are Lua values and stay on the Lua side, in a table indexed by
 * small positive integers ("keys") that C hands out: a key stands for one
 * value in flight, and C moves keys (never values) between the buffer,
 * parked senders and woken receivers.  An answer > 0 is a key.
 */
#ifndef SL_FFI_CHAN_H
#define SL_FFI_CHAN_H

typedef struct sl_chan sl_chan;

enum {
  SL_CHAN_CLOSED = -8,      /* the channel is closed (and, for recv, drained) */
  SL_CHAN_NOMEM = -9,       /* out of memory: nothing was changed */
  SL_CHAN_WAKE_CLOSED = 3   /* the wake code of a waiter woken by close */
};

/* The largest capacity. */
double sl_chan_max(void);
/* NULL for a capacity out of range (or out of memory). */
sl_chan *sl_chan_new(double capacity);
void sl_chan_free(sl_chan *ch);
sl_prim *sl_chan_send_prim(sl_chan *ch);
sl_prim *sl_chan_recv_prim(sl_chan *ch);
/* key: store the value there now; 0: parked (its key is
 * sl_chan_parked_key), else SL_R_* / SL_CHAN_CLOSED. */
int sl_chan_send(sl_chan *ch, double timeout, int can_block);
/* key, 0 (full) or SL_CHAN_CLOSED; needs no task. */
int sl_chan_try_send(sl_chan *ch);
/* key: read the value and clear it now (the key is free again); 0:
 * parked, then sl_chan_take; else SL_R_* / SL_CHAN_CLOSED. */
int sl_chan_recv(sl_chan *ch, double timeout, int can_block);
/* key, 0 (empty) or SL_CHAN_CLOSED; needs no task. */
int sl_chan_try_recv(sl_chan *ch);
/* The key given to the task parked last (a sender stores its value there). */
int sl_chan_parked_key(const sl_chan *ch);
/* A receiver woken with OK takes its key (freed: read and clear it now). */
int sl_chan_take(sl_chan *ch);
/* A receiver woken with OK but cancelled since passes its value on:
 * to the next receiver or back to the front of the buffer. */
int sl_chan_abandon(sl_chan *ch);
/* A sender whose wait ended without a hand-off frees its key (after
 * clearing it). */
void sl_chan_free_key(sl_chan *ch, int key);
/* 1 if this call closed it, 0 if it was closed already. */
int sl_chan_close(sl_chan *ch);
double sl_chan_capacity(const sl_chan *ch);
int sl_chan_count(const sl_chan *ch);
int sl_chan_closed(const sl_chan *ch);
/* Keys in use (values buffered, handed over or held by parked senders). */
int sl_chan_keys_used(const sl_chan *ch);

/* sluice.select: a wait on several send and recv cases, exactly one of
 * which is done.  Cases are tried in order; none ready, the task parks on
 * all of them. */
typedef struct sl_chan_sel sl_chan_sel;
sl_chan_sel *sl_chan_sel_new(int n);
void sl_chan_sel_case(sl_chan_sel *sel, int i, sl_chan *ch, int send);
int sl_chan_select(sl_chan_sel *sel, double timeout, int can_block);
/* The case done (index + 1, 0 for none), whether its channel closed,
 * its key. */
int sl_chan_sel_fired(const sl_chan_sel *sel);
int sl_chan_sel_closed(const sl_chan_sel *sel);
int sl_chan_sel_key(const sl_chan_sel *sel);
/* The key send case i still owns (its value is stored there), or 0. */
int sl_chan_sel_case_key(const sl_chan_sel *sel, int i);
int sl_chan_sel_take(sl_chan_sel *sel);
int sl_chan_sel_abandon(sl_chan_sel *sel);
/* Frees the keys the send cases still own, and sel. */
void sl_chan_sel_done(sl_chan_sel *sel);

#define SL_FFI_CHAN_FUNCS \
  (void *)sl_chan_max, (void *)sl_chan_new, (void *)sl_chan_free, \
  (void *)sl_chan_send_prim, (void *)sl_chan_recv_prim, (void *)sl_chan_send, \
  (void *)sl_chan_try_send, (void *)sl_chan_recv, (void *)sl_chan_try_recv, \
  (void *)sl_chan_parked_key, (void *)sl_chan_take, (void *)sl_chan_abandon, \
  (void *)sl_chan_free_key, (void *)sl_chan_close, (void *)sl_chan_capacity, \
  (void *)sl_chan_count, (void *)sl_chan_closed, (void *)sl_chan_keys_used, \
  (void *)sl_chan_sel_new, (void *)sl_chan_sel_case, (void *)sl_chan_select, \
  (void *)sl_chan_sel_fired, (void *)sl_chan_sel_closed, (void *)sl_chan_sel_key, \
  (void *)sl_chan_sel_case_key, (void *)sl_chan_sel_take, (void *)sl_chan_sel_abandon, \
  (void *)sl_chan_sel_done,

#endif
