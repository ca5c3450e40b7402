/*
 * sl_http.h - what the HTTP client (sl_http.c) and server
 * (sl_http_server.c) share: the per-scheduler state and its activity
 * count.
 *
 * Activity: under the virtual clock time jumps only while no foreign
 * libuv handle is active and referenced.  Every handle of the module is
 * unreferenced; instead one referenced uv_async_t (the "token") stands
 * for all of them, referenced exactly while curl watches more sockets
 * than requests are being handled by this process's own servers, or a
 * transfer is starting and has no socket yet (unless connection caps are
 * set and other transfers have sockets: then it is taken as queued).
 * So a client waiting on a remote server holds the clock still, while a
 * client waiting on an in-process handler that sleeps does not (the
 * handler's sleep is what it waits for).
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include "sl_lua.h"

typedef struct sl_http_state sl_http_state;

/* The state of L's scheduler, created on first use. */
sl_http_state *sl_http_state_of(lua_State *L);
/* Adds transfers / handlers in flight (deltas) and updates the token. */
void sl_http_activity(sl_http_state *H, int transfers, int handlers);
/* Adds the server's functions to the table on top of L. */
void sl_http_server_open(lua_State *L);

/* A growable byte buffer. */
typedef struct sl_hbuf { char *p; size_t len, cap; } sl_hbuf;
int  sl_hbuf_add(sl_hbuf *b, const char *s, size_t n);   /* 0, or -1: no memory */
void sl_hbuf_free(sl_hbuf *b);

#endif
