/*
 * sl_redis.h - the Redis client's state, shared by the client
 * (sl_redis.c: hiredis on our libuv adapter, connects, replies, timeouts)
 * and its Lua binding (sl_redis_lua.c).  Private to those two files.
 */
#ifndef SL_REDIS_H
#define SL_REDIS_H

#include "sl_lua.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#define SL_REDIS_MT "sluice.redis.client"

enum { SL_RS_CONNECTING, SL_RS_READY, SL_RS_LOST, SL_RS_CLOSED };
/* Outcomes a woken caller reads (0 is a reply). */
enum { SL_RO_REPLY, SL_RO_ERROR, SL_RO_LOST, SL_RO_CLOSED, SL_RO_TIMEOUT };

typedef struct sl_redis {
  redisAsyncContext *ac;   /* NULL once hiredis let go of it */
  sl_sched *S;
  uv_poll_t poll;
  uv_timer_t timer;
  sl_queue waiting;        /* calls whose caller still waits, oldest first */
  sl_task *connector;      /* the task blocked in connect */
  uint64_t timeout_ms;     /* per call; 0: none */
  double connect_timeout;  /* seconds, for the message */
  int anchor;              /* registry: the userdata while open */
  int events;              /* UV_READABLE | UV_WRITABLE wanted by hiredis */
  int live;                /* the userdata + handles not yet closed */
  unsigned inflight;       /* hiredis callbacks outstanding */
  unsigned npending;       /* callers waiting */
  unsigned setup_left;     /* AUTH / SELECT replies still due */
  uint8_t state;
  uint8_t tcp_up;
  uint8_t freeing;         /* hiredis is freeing (or will free) ac */
  uint8_t poll_open;
  uint8_t fail_kind;       /* connect's outcome: SL_RO_* */
  uint8_t resolving;       /* gai is in flight */
  uv_getaddrinfo_t gai;    /* resolving a host name (not an address) */
  char *password;          /* kept for AUTH until the context exists */
  int db;
  int port;
  char host[256];
  char err[640];           /* connect's failure, then why it was lost */
} sl_redis;

typedef struct sl_redis_call {
  sl_queue link;           /* in r->waiting while a caller waits */
  sl_redis *r;
  sl_task *task;           /* the waiting caller, NULL once it left */
  uint64_t deadline;       /* loop time (ms) */
  int ref;                 /* registry: the outcome's value */
  uint8_t outcome;
  uint8_t in_hiredis;      /* its callback has not run yet */
  uint8_t to_read;         /* a woken caller will take it */
  uint8_t setup;           /* AUTH / SELECT of the connect */
} sl_redis_call;

/* sl_redis.c, for the binding: a client's life, its calls, and the
 * unwait hooks of the tasks parked on them. */
sl_redis *sl_redis_new(sl_sched *S, const char *host, int port, double cmd);
int sl_redis_start(sl_redis *r, const char *password, int db, double ct, char *why, size_t n);
void sl_redis_drop(sl_redis *r);
sl_redis_call *sl_redis_send(sl_redis *r, int argc, const char **argv, const size_t *len);
void sl_redis_teardown(sl_redis *r, int state);
void sl_redis_activity(sl_redis *r);
void sl_redis_arm(sl_redis *r);
void sl_call_free(sl_redis_call *c);
int sl_redis_unwait_connect(sl_task *t, int why);
int sl_redis_unwait_call(sl_task *t, int why);

#endif
