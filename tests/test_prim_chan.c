/*
 * test_prim_chan.c - unit tests of the channel state machine
 * (lib/sl_chan.c) without Lua: a scheduler on a private loop with the
 * virtual clock, and task records that no coroutine runs.
 *
 * Values are simulated as C does not see them: vals[key] plays the Lua
 * table of values, written by a "sender" under the key it is given and
 * read (and cleared) by the "receiver" given that key.  Every test ends
 * with no key in use beyond what is buffered.
 */
#include "../lib/sl_prim.h"
#include "../lib/sl_ffi_chan.h"
#include "sl_check.h"

#include <string.h>

#define NT 8
#include "sl_fake_sched.h"

static int vals[64];

static int send_now(sl_chan *ch, int v) {
  int k = sl_chan_send(ch, -1, 1);
  if (k > 0) vals[k] = v;
  return k;
}

/* The sender parks: its value goes under its key before it "yields". */
static int send_park(sl_chan *ch, int v, double timeout) {
  int r = sl_chan_send(ch, timeout, 1);
  if (r == SL_R_QUEUED) vals[sl_chan_parked_key(ch)] = v;
  return r;
}

static int read_key(int k) {
  int v = vals[k];
  vals[k] = 0;
  return v;
}

/* A receive that must complete at once: its value, or -1. */
static int recv_now(sl_chan *ch) {
  int k = sl_chan_recv(ch, -1, 1);
  return k > 0 ? read_key(k) : -1;
}

/* A receiver woken with OK takes its value. */
static int taken(sl_chan *ch) {
  int k = sl_chan_take(ch);
  return k > 0 ? read_key(k) : -1;
}

static void test_buffered(void) {
  sl_chan *ch;
  sl_stats st;
  setup();
  CHECK(sl_chan_new(-1) == NULL && sl_chan_new(sl_chan_max() + 1) == NULL);
  ch = sl_chan_new(2);
  sl_tls_task = NULL;
  CHECK(sl_chan_send(ch, -1, 1) == SL_R_NOTASK && sl_chan_recv(ch, -1, 1) == SL_R_NOTASK);
  as(0);
  CHECK(send_now(ch, 10) > 0 && send_now(ch, 11) > 0);
  CHECK(sl_chan_count(ch) == 2 && sl_chan_keys_used(ch) == 2);
  CHECK(sl_chan_try_send(ch) == SL_R_QUEUED);           /* full */
  CHECK(sl_chan_send(ch, 0, 1) == SL_R_TIMEDOUT);
  CHECK(send_park(ch, 12, -1) == SL_R_QUEUED && parked(0));
  as(1);
  CHECK(recv_now(ch) == 10);                            /* lets 12 in */
  CHECK(woken(0, SL_WAKE_OK) && sl_chan_count(ch) == 2);
  CHECK(recv_now(ch) == 11 && recv_now(ch) == 12);
  CHECK(sl_chan_try_recv(ch) == SL_R_QUEUED && sl_chan_recv(ch, 0, 1) == SL_R_TIMEDOUT);
  CHECK(sl_chan_keys_used(ch) == 0);
  sl_prim_stats(sl_chan_send_prim(ch), &st);
  CHECK(st.acquired == 3 && st.waited == 1);
  sl_prim_stats(sl_chan_recv_prim(ch), &st);
  CHECK(st.acquired == 3 && st.waited == 0);
  sl_chan_free(ch);
  teardown();
}

/* Receivers queue FIFO and a send hands its value to the head one. */
static void test_handoff_fifo(void) {
  sl_chan *ch;
  int k;
  setup();
  ch = sl_chan_new(1);
  as(1); CHECK(sl_chan_recv(ch, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_chan_recv(ch, -1, 1) == SL_R_QUEUED);
  CHECK(sl_prim_waiting(sl_chan_recv_prim(ch)) == 2);
  as(0);
  CHECK((k = send_now(ch, 7)) > 0 && sl_chan_count(ch) == 0);
  CHECK(woken(1, SL_WAKE_OK) && parked(2));
  CHECK(send_now(ch, 8) > 0 && woken(2, SL_WAKE_OK));
  as(2); CHECK(taken(ch) == 8);
  as(1); CHECK(taken(ch) == 7);
  CHECK(sl_chan_take(ch) == SL_R_NOTHELD);
  CHECK(sl_chan_keys_used(ch) == 0);
  sl_chan_free(ch);
  teardown();
}

/* Capacity 0: a sender waits for a receiver, which takes the value
 * straight from the head sender. */
static void test_rendezvous(void) {
  sl_chan *ch;
  setup();
  ch = sl_chan_new(0);
  as(0);
  CHECK(sl_chan_try_send(ch) == SL_R_QUEUED);
  CHECK(send_park(ch, 1, -1) == SL_R_QUEUED);
  as(1); CHECK(send_park(ch, 2, -1) == SL_R_QUEUED);
  as(2);
  CHECK(recv_now(ch) == 1 && woken(0, SL_WAKE_OK) && parked(1));
  CHECK(recv_now(ch) == 2 && woken(1, SL_WAKE_OK));
  CHECK(sl_chan_try_recv(ch) == SL_R_QUEUED);
  CHECK(sl_chan_recv(ch, -1, 1) == SL_R_QUEUED);
  as(3); CHECK(send_now(ch, 3) > 0 && woken(2, SL_WAKE_OK));
  as(2); CHECK(taken(ch) == 3);
  CHECK(sl_chan_count(ch) == 0 && sl_chan_keys_used(ch) == 0);
  sl_chan_free(ch);
  teardown();
}

/* Waiters that time out or are cancelled leave as if never queued; a
 * sender keeps its key until it frees it. */
static void test_timeout_and_cancel(void) {
  sl_chan *ch;
  sl_stats st;
  int k;
  setup();
  ch = sl_chan_new(0);
  as(0); CHECK(sl_chan_recv(ch, 5, 1) == SL_R_QUEUED);
  as(1); CHECK(sl_chan_recv(ch, -1, 1) == SL_R_QUEUED);
  fire_next_timer();
  CHECK(S.vnow == 5 && woken(0, SL_WAKE_TIMEOUT));
  CHECK(sl_task_cancel(&T[1]) && woken(1, SL_WAKE_CANCEL));
  CHECK(sl_prim_waiting(sl_chan_recv_prim(ch)) == 0);
  as(2); CHECK(send_park(ch, 9, 2) == SL_R_QUEUED);
  k = sl_chan_parked_key(ch);
  as(3); CHECK(send_park(ch, 10, -1) == SL_R_QUEUED);
  fire_next_timer();
  CHECK(S.vnow == 7 && woken(2, SL_WAKE_TIMEOUT));
  CHECK(sl_chan_keys_used(ch) == 2);            /* still 2's until it frees it */
  as(2); vals[k] = 0; sl_chan_free_key(ch, k);
  as(4); CHECK(recv_now(ch) == 10 && woken(3, SL_WAKE_OK));
  T[5].cancelled = 1;
  as(5); CHECK(sl_chan_recv(ch, -1, 1) == SL_R_CANCELLED && sl_chan_send(ch, -1, 1) == SL_R_CANCELLED);
  as(6); CHECK(sl_chan_recv(ch, -1, 0) == SL_R_NOBLOCK);
  CHECK(S.timers.len == 0 && sl_chan_keys_used(ch) == 0);
  sl_prim_stats(sl_chan_recv_prim(ch), &st);
  CHECK(st.timeouts == 1 && st.cancelled == 1 && st.acquired == 1);
  sl_prim_stats(sl_chan_send_prim(ch), &st);
  CHECK(st.timeouts == 1 && st.acquired == 1 && st.waited == 1);
  sl_chan_free(ch);
  teardown();
}

/* A receiver handed a value, cancelled before it ran: the value goes to
 * the next receiver, or back to the front of the buffer (even beyond the
 * capacity), in order. */
static void test_abandon(void) {
  sl_chan *ch;
  sl_stats st;
  setup();
  ch = sl_chan_new(1);
  as(1); CHECK(sl_chan_recv(ch, -1, 1) == SL_R_QUEUED);
  as(2); CHECK(sl_chan_recv(ch, -1, 1) == SL_R_QUEUED);
  as(0); CHECK(send_now(ch, 1) > 0 && woken(1, SL_WAKE_OK));
  T[1].cancelled = 1;
  as(1); CHECK(sl_chan_abandon(ch) == SL_R_OK);
  CHECK(woken(2, SL_WAKE_OK));                   /* passed on to 2 */
  T[2].cancelled = 1;
  as(0); CHECK(send_now(ch, 2) > 0 && sl_chan_count(ch) == 1);
  as(2); CHECK(sl_chan_abandon(ch) == SL_R_OK);   /* back to the front */
  CHECK(sl_chan_count(ch) == 2);
  as(0); CHECK(sl_chan_try_send(ch) == SL_R_QUEUED);
  as(3);
  CHECK(recv_now(ch) == 1 && recv_now(ch) == 2 && sl_chan_keys_used(ch) == 0);
  sl_prim_stats(sl_chan_recv_prim(ch), &st);
  CHECK(st.acquired == 2 && st.waited == 0 && st.cancelled == 2);
  /* capacity 0: an abandoned value waits in the buffer for a receiver */
  sl_chan_free(ch);
  ch = sl_chan_new(0);
  T[1].cancelled = 0;
  as(1); CHECK(sl_chan_recv(ch, -1, 1) == SL_R_QUEUED);
  as(0); CHECK(send_now(ch, 5) > 0 && woken(1, SL_WAKE_OK));
  T[1].cancelled = 1;
  as(1); CHECK(sl_chan_abandon(ch) == SL_R_OK && sl_chan_count(ch) == 1);
  as(0); CHECK(sl_chan_try_send(ch) == SL_R_QUEUED);
  as(3); CHECK(recv_now(ch) == 5 && sl_chan_keys_used(ch) == 0);
  sl_chan_free(ch);
  teardown();
}

/* Close wakes every waiter; the buffer is drained, then "closed". */
static void test_close(void) {
  sl_chan *ch;
  int k;
  setup();
  ch = sl_chan_new(1);
  as(0); CHECK(sl_chan_recv(ch, -1, 1) == SL_R_QUEUED);
  as(1); CHECK(sl_chan_close(ch) == 1 && sl_chan_close(ch) == 0);
  CHECK(woken(0, SL_CHAN_WAKE_CLOSED) && sl_chan_closed(ch));
  CHECK(sl_chan_send(ch, -1, 1) == SL_CHAN_CLOSED && sl_chan_try_send(ch) == SL_CHAN_CLOSED);
  CHECK(sl_chan_recv(ch, -1, 1) == SL_CHAN_CLOSED);
  sl_chan_free(ch);
  ch = sl_chan_new(1);
  as(0); CHECK(send_now(ch, 1) > 0);
  as(1); CHECK(send_park(ch, 2, -1) == SL_R_QUEUED);
  k = sl_chan_parked_key(ch);
  as(2); CHECK(send_park(ch, 3, 4) == SL_R_QUEUED);
  as(0); sl_chan_close(ch);
  CHECK(woken(1, SL_CHAN_WAKE_CLOSED) && woken(2, SL_CHAN_WAKE_CLOSED));
  CHECK(S.timers.len == 0 && sl_prim_waiting(sl_chan_send_prim(ch)) == 0);
  as(1); vals[k] = 0; sl_chan_free_key(ch, k);
  as(2); sl_chan_free_key(ch, k + 1);
  as(3); CHECK(recv_now(ch) == 1);
  CHECK(sl_chan_recv(ch, -1, 1) == SL_CHAN_CLOSED && sl_chan_try_recv(ch) == SL_CHAN_CLOSED);
  CHECK(sl_chan_keys_used(ch) == 0);
  sl_chan_free(ch);
  teardown();
}

/* A select parks a case in each queue; the first to be served is done,
 * the others leave at once; a timeout withdraws them all. */
static void test_select(void) {
  sl_chan *a, *b;
  sl_chan_sel *sel;
  int k;
  setup();
  a = sl_chan_new(0);
  b = sl_chan_new(1);
  CHECK(send_now(b, 0) <= 0);                   /* no task yet */
  as(0); CHECK(send_now(b, 1) > 0);             /* b is full */
  sel = sl_chan_sel_new(2);
  sl_chan_sel_case(sel, 0, a, 0);               /* recv on a */
  sl_chan_sel_case(sel, 1, b, 1);               /* send on b */
  as(1); CHECK(sl_chan_select(sel, -1, 1) == SL_R_QUEUED && parked(1));
  CHECK((k = sl_chan_sel_case_key(sel, 1)) > 0);
  vals[k] = 2;
  CHECK(sl_prim_waiting(sl_chan_recv_prim(a)) == 1 && sl_prim_waiting(sl_chan_send_prim(b)) == 1);
  as(2); CHECK(recv_now(b) == 1);               /* room in b: the send case is done */
  CHECK(woken(1, SL_WAKE_OK) && sl_chan_sel_fired(sel) == 2 && sl_chan_count(b) == 1);
  CHECK(sl_prim_waiting(sl_chan_recv_prim(a)) == 0 && sl_chan_sel_case_key(sel, 1) == 0);
  sl_chan_sel_done(sel);
  CHECK(sl_chan_try_send(a) == SL_R_QUEUED);    /* the recv case is gone */
  CHECK(recv_now(b) == 2 && sl_chan_keys_used(b) == 0);
  /* a recv case done, then abandoned: the value goes to the next receiver */
  sel = sl_chan_sel_new(1);
  sl_chan_sel_case(sel, 0, a, 0);
  as(1); CHECK(sl_chan_select(sel, -1, 1) == SL_R_QUEUED);
  as(3); CHECK(sl_chan_recv(a, -1, 1) == SL_R_QUEUED);
  as(0); CHECK(send_now(a, 7) > 0 && woken(1, SL_WAKE_OK) && parked(3));
  CHECK(sl_chan_sel_fired(sel) == 1 && sl_chan_sel_abandon(sel) == SL_R_OK);
  sl_chan_sel_done(sel);
  CHECK(woken(3, SL_WAKE_OK));
  as(3); CHECK(taken(a) == 7);
  /* a timeout withdraws every case and frees nothing it does not own */
  sel = sl_chan_sel_new(2);
  sl_chan_sel_case(sel, 0, a, 0);
  sl_chan_sel_case(sel, 1, a, 1);
  as(1); CHECK(sl_chan_select(sel, 3, 1) == SL_R_QUEUED);
  vals[sl_chan_sel_case_key(sel, 1)] = 9;
  fire_next_timer();
  CHECK(S.vnow == 3 && woken(1, SL_WAKE_TIMEOUT) && !sl_chan_sel_fired(sel));
  CHECK(sl_prim_waiting(sl_chan_recv_prim(a)) == 0 && sl_prim_waiting(sl_chan_send_prim(a)) == 0);
  vals[sl_chan_sel_case_key(sel, 1)] = 0;
  sl_chan_sel_done(sel);
  CHECK(sl_chan_keys_used(a) == 0);
  sl_chan_free(a);
  sl_chan_free(b);
  teardown();
}

int main(void) {
  RUN(test_buffered);
  RUN(test_handoff_fifo);
  RUN(test_rendezvous);
  RUN(test_timeout_and_cancel);
  RUN(test_abandon);
  RUN(test_close);
  RUN(test_select);
  return sl_check_done();
}
