/*
 * sl_redis.c - a Redis client on the runtime's loop: hiredis's async API
 * driven by our own libuv adapter: the C half of sluice.redis (its Lua
 * binding is sl_redis_lua.c).
 *
 * Why our own adapter: hiredis's libuv adapter returns early when the
 * poll reports an error, so a refused connection never reaches hiredis
 * and nothing ever fires.  Here a poll error is handed to hiredis as an
 * event, and hiredis finds the socket error itself (connect: SO_ERROR;
 * afterwards: read fails) and reports it through its usual callbacks.
 *
 * A client is a malloc'd sl_redis (it owns a uv_poll_t and a uv_timer_t,
 * which must outlive the Lua object while they close) boxed in a Lua
 * userdata.  While the connection is open the userdata is anchored in the
 * registry; closing, a failed connect or a lost connection release the
 * anchor at once, so a forgotten client shows up as a leaked reference.
 *
 * A call is an sl_redis_call record, the privdata of its hiredis
 * callback.  hiredis runs callbacks in send order, once each (a NULL
 * reply when the context goes away), so each reply reaches its own
 * record: a caller that timed out or was cancelled only detaches from its
 * record, and the late reply is dropped when it comes.  A record is
 * freed when hiredis is done with it and no task still has to read it.
 *
 * Replies are converted to Lua values on the scheduler's scratch state
 * (S->L) as they arrive, kept under a registry reference in the record,
 * and read (reference freed) by the woken task.  Nothing here resumes a
 * task: sl_task_wake only queues it.
 *
 * A host name is resolved with uv_getaddrinfo (libuv's thread pool)
 * before hiredis sees the address: hiredis itself would call a blocking
 * getaddrinfo on the loop's thread.  The connect timeout covers both.
 *
 * Timeouts run on the real clock, on one uv timer per client: all calls
 * of a client share one timeout, so the earliest deadline is always the
 * oldest waiting call.  The poll handle is referenced (counts as loop
 * activity, which also holds the virtual clock still) only while a
 * connect or a reply is outstanding; an idle client keeps reading, so a
 * closed connection is noticed, but does not keep the loop alive.
 */
#include "sl_redis.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sl_redis_timer_cb(uv_timer_t *h);

/* ---- memory and activity ---- */

static void sl_redis_release(sl_redis *r) {
  if (--r->live > 0) return;
  free(r->password);
  free(r);
}

static void sl_redis_closed_cb(uv_handle_t *h) {
  sl_redis_release(h->data);
}

void sl_call_free(sl_redis_call *c) {
  if (c->in_hiredis || c->to_read) return;
  if (c->ref != LUA_NOREF) luaL_unref(c->r->S->L, LUA_REGISTRYINDEX, c->ref);
  free(c);
}

/* The poll counts as loop activity only while something is outstanding. */
void sl_redis_activity(sl_redis *r) {
  if (!r->poll_open) return;
  if (r->state == SL_RS_CONNECTING || r->inflight > 0) uv_ref((uv_handle_t *)&r->poll);
  else uv_unref((uv_handle_t *)&r->poll);
}

/* hiredis's errstr with a lower-case first letter, as sluice's messages. */
static void sl_redis_errstr(char *buf, size_t n, const char *s) {
  snprintf(buf, n, "%s", s && *s ? s : "closed by the server");
  if (isupper((unsigned char)buf[0]) && islower((unsigned char)buf[1]))
    buf[0] = (char)tolower((unsigned char)buf[0]);
}

/* ---- the adapter: hiredis's event hooks on a uv_poll_t ---- */

static void sl_redis_poll_cb(uv_poll_t *h, int status, int events) {
  sl_redis *r = h->data;
  if (!r->ac) return;
  if (status < 0)   /* libuv stopped the poll: let hiredis see the error */
    events = (r->ac->c.flags & REDIS_CONNECTED) ? UV_READABLE : UV_WRITABLE;
  if (events & UV_READABLE) redisAsyncHandleRead(r->ac);
  if (r->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(r->ac);
}

static void sl_redis_events(sl_redis *r, int add, int del) {
  r->events = (r->events | add) & ~del;
  if (!r->poll_open) return;
  if (r->events) uv_poll_start(&r->poll, r->events, sl_redis_poll_cb);
  else uv_poll_stop(&r->poll);
}

static void sl_ev_add_read(void *p) { sl_redis_events(p, UV_READABLE, 0); }
static void sl_ev_del_read(void *p) { sl_redis_events(p, 0, UV_READABLE); }
static void sl_ev_add_write(void *p) { sl_redis_events(p, UV_WRITABLE, 0); }
static void sl_ev_del_write(void *p) { sl_redis_events(p, 0, UV_WRITABLE); }

/* hiredis is freeing the context (after every callback got its reply
 * or NULL): the poll goes before hiredis closes the socket.  A context
 * that goes away while open was lost. */
static void sl_ev_cleanup(void *p) {
  sl_redis *r = p;
  redisAsyncContext *ac = r->ac;
  if (!ac) return;
  if (r->state == SL_RS_READY) {
    sl_redis_errstr(r->err, sizeof r->err, ac->c.errstr);
    r->freeing = 1;
    sl_redis_teardown(r, SL_RS_LOST);
  }
  r->ac = NULL;
  if (r->poll_open) {
    r->poll_open = 0;
    uv_close((uv_handle_t *)&r->poll, sl_redis_closed_cb);
  }
}

static int sl_redis_attach(sl_redis *r, uv_loop_t *loop) {
  redisAsyncContext *ac = r->ac;
  if (uv_poll_init(loop, &r->poll, ac->c.fd)) return -1;
  r->poll.data = r;
  r->poll_open = 1;
  r->live++;
  ac->data = r;
  ac->ev.data = r;
  ac->ev.addRead = sl_ev_add_read;
  ac->ev.delRead = sl_ev_del_read;
  ac->ev.addWrite = sl_ev_add_write;
  ac->ev.delWrite = sl_ev_del_write;
  ac->ev.cleanup = sl_ev_cleanup;
  return 0;
}

/* ---- waking callers ---- */

void sl_redis_arm(sl_redis *r) {
  sl_redis_call *c;
  uint64_t now;
  if (r->state != SL_RS_READY) return;
  if (sl_queue_empty(&r->waiting) || r->timeout_ms == 0) {
    uv_timer_stop(&r->timer);   /* an idle timer must not count as activity */
    return;
  }
  if (uv_is_active((uv_handle_t *)&r->timer)) return;   /* fires, re-arms */
  c = sl_queue_data(sl_queue_head(&r->waiting), sl_redis_call, link);
  now = uv_now(r->S->loop);
  uv_timer_start(&r->timer, sl_redis_timer_cb, c->deadline > now ? c->deadline - now : 0, 0);
}

/* The caller stops waiting on c; woken with code (OK: it reads c). */
static void sl_redis_detach(sl_redis_call *c, int wake) {
  sl_redis *r = c->r;
  sl_task *t = c->task;
  sl_queue_remove(&c->link);
  c->task = NULL;
  r->npending--;
  if (wake == SL_WAKE_OK) c->to_read = 1;
  if (t->status == SL_WAITING) sl_task_wake(t, wake);
}

/* Every waiting caller fails with outcome and message. */
static void sl_redis_fail_all(sl_redis *r, int outcome, const char *msg) {
  lua_State *L = r->S->L;
  while (!sl_queue_empty(&r->waiting)) {
    sl_redis_call *c = sl_queue_data(sl_queue_head(&r->waiting), sl_redis_call, link);
    c->outcome = (uint8_t)outcome;
    lua_pushstring(L, msg);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    sl_redis_detach(c, SL_WAKE_OK);
  }
}

/* Ends the client: callers fail, the timer closes, hiredis lets go
 * (now, or after the callback it is in), the anchor is released. */
void sl_redis_teardown(sl_redis *r, int state) {
  if (r->state == SL_RS_LOST || r->state == SL_RS_CLOSED) return;
  r->state = (uint8_t)state;
  if (state == SL_RS_LOST) {   /* r->err said why; later calls say it too */
    char why[sizeof r->err];
    memcpy(why, r->err, sizeof why);
    snprintf(r->err, sizeof r->err, "connection lost (%.480s)", why);
    lua_pushfstring(r->S->L, "redis: %s", r->err);
    sl_redis_fail_all(r, SL_RO_LOST, lua_tostring(r->S->L, -1));
    lua_pop(r->S->L, 1);
  } else {
    sl_redis_fail_all(r, SL_RO_CLOSED, "redis:call: client closed while waiting for the reply");
  }
  uv_close((uv_handle_t *)&r->timer, sl_redis_closed_cb);
  if (r->resolving) uv_cancel((uv_req_t *)&r->gai);   /* its callback lets go */
  if (r->ac && !r->freeing) {
    r->freeing = 1;
    redisAsyncFree(r->ac);   /* deferred by hiredis inside its callbacks */
  }
  if (r->anchor != LUA_NOREF) {
    luaL_unref(r->S->L, LUA_REGISTRYINDEX, r->anchor);
    r->anchor = LUA_NOREF;
  }
}

/* ---- connecting ---- */

/* The connect ends; the blocked task reads the outcome (kind in
 * fail_kind, message in err) when it runs. */
static void sl_redis_connect_done(sl_redis *r, int outcome) {
  sl_task *t = r->connector;
  r->fail_kind = (uint8_t)outcome;
  r->connector = NULL;
  if (outcome == SL_RO_REPLY) {
    r->state = SL_RS_READY;
    uv_timer_stop(&r->timer);
    sl_redis_activity(r);
  } else {
    sl_redis_teardown(r, SL_RS_CLOSED);
  }
  if (t && t->status == SL_WAITING) sl_task_wake(t, SL_WAKE_OK);
}

static void sl_redis_connect_fail(sl_redis *r, int outcome, const char *why) {
  char buf[256];
  sl_redis_errstr(buf, sizeof buf, why);
  snprintf(r->err, sizeof r->err, "redis.connect: %s:%d: %s", r->host, r->port, buf);
  sl_redis_connect_done(r, outcome);
}

static void sl_redis_on_connect(const redisAsyncContext *ac, int status) {
  sl_redis *r = ac->data;
  if (r->state != SL_RS_CONNECTING) return;
  if (status != REDIS_OK) {
    r->freeing = 1;   /* hiredis frees the context after this returns */
    sl_redis_connect_fail(r, SL_RO_ERROR, ac->c.errstr);
    return;
  }
  r->tcp_up = 1;
  if (r->setup_left == 0) sl_redis_connect_done(r, SL_RO_REPLY);
}

/* An AUTH or SELECT reply. */
static void sl_redis_setup_reply(sl_redis *r, redisAsyncContext *ac, redisReply *x) {
  if (r->state != SL_RS_CONNECTING) return;
  if (!x) sl_redis_connect_fail(r, SL_RO_ERROR, ac->c.errstr);
  else if (x->type == REDIS_REPLY_ERROR) sl_redis_connect_fail(r, SL_RO_ERROR, x->str);
  else if (--r->setup_left == 0 && r->tcp_up) sl_redis_connect_done(r, SL_RO_REPLY);
}

static void sl_redis_timer_cb(uv_timer_t *h) {
  sl_redis *r = h->data;
  uint64_t now = uv_now(r->S->loop);
  char why[64];
  if (r->state == SL_RS_CONNECTING) {
    snprintf(why, sizeof why, "timed out after %.14g s", r->connect_timeout);
    sl_redis_connect_fail(r, SL_RO_TIMEOUT, why);
    return;
  }
  while (!sl_queue_empty(&r->waiting)) {
    sl_redis_call *c = sl_queue_data(sl_queue_head(&r->waiting), sl_redis_call, link);
    if (c->deadline > now) break;
    sl_redis_detach(c, SL_WAKE_TIMEOUT);   /* its reply is dropped later */
  }
  sl_redis_arm(r);
}

int sl_redis_unwait_connect(sl_task *t, int why) {
  sl_redis *r = (sl_redis *)t->wait.arg;
  (void)why;
  r->connector = NULL;
  sl_redis_teardown(r, SL_RS_CLOSED);
  return 1;
}

int sl_redis_unwait_call(sl_task *t, int why) {
  sl_redis_call *c = (sl_redis_call *)t->wait.arg;
  (void)why;
  sl_queue_remove(&c->link);
  c->task = NULL;
  c->r->npending--;
  sl_redis_arm(c->r);
  return 1;
}

/* ---- replies ---- */

/* Pushes a reply: nil bulk -> nil at the top, redis.null (a NULL
 * lightuserdata) inside arrays; an error inside an array -> an error
 * object of kind "redis". */
static void sl_redis_push(lua_State *L, redisReply *x, int nested) {
  size_t i;
  switch (x->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    lua_pushlstring(L, x->str, x->len);
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushnumber(L, (lua_Number)x->integer);
    break;
  case REDIS_REPLY_ARRAY:
    lua_checkstack(L, 4);
    lua_createtable(L, (int)x->elements, 0);
    for (i = 0; i < x->elements; i++) {
      sl_redis_push(L, x->element[i], 1);
      lua_rawseti(L, -2, (int)i + 1);
    }
    break;
  case REDIS_REPLY_ERROR:
    if (!nested) {   /* the caller raises it */
      lua_pushlstring(L, x->str, x->len);
      break;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, SL_ERRFN);
    lua_pushliteral(L, "redis");
    lua_pushlstring(L, x->str, x->len);
    if (lua_pcall(L, 2, 1, 0)) {
      lua_pop(L, 1);
      lua_pushlstring(L, x->str, x->len);
    }
    break;
  default:
    if (nested) lua_pushlightuserdata(L, NULL);
    else lua_pushnil(L);
  }
}

static void sl_redis_reply_cb(redisAsyncContext *ac, void *reply, void *priv) {
  sl_redis_call *c = priv;
  sl_redis *r = c->r;
  redisReply *x = reply;
  lua_State *L = r->S->L;
  c->in_hiredis = 0;
  r->inflight--;
  sl_redis_activity(r);
  if (c->setup) sl_redis_setup_reply(r, ac, x);
  if (!x && r->state == SL_RS_READY) {   /* the connection went away */
    sl_redis_errstr(r->err, sizeof r->err, ac->c.errstr);
    r->freeing = 1;
    sl_redis_teardown(r, SL_RS_LOST);
  }
  if (c->task && x) {
    c->outcome = x->type == REDIS_REPLY_ERROR ? SL_RO_ERROR : SL_RO_REPLY;
    sl_redis_push(L, x, 0);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    sl_redis_detach(c, SL_WAKE_OK);
    sl_redis_arm(r);
  }
  sl_call_free(c);
}

/* Sends argv with a new record; NULL if hiredis refused. */
sl_redis_call *sl_redis_send(sl_redis *r, int argc, const char **argv, const size_t *len) {
  sl_redis_call *c = malloc(sizeof *c);
  if (!c) return NULL;
  sl_queue_init(&c->link);
  c->r = r;
  c->task = NULL;
  c->deadline = 0;
  c->ref = LUA_NOREF;
  c->outcome = SL_RO_REPLY;
  c->in_hiredis = 1;
  c->to_read = c->setup = 0;
  if (redisAsyncCommandArgv(r->ac, sl_redis_reply_cb, c, argc, argv, len) != REDIS_OK) {
    free(c);
    return NULL;
  }
  r->inflight++;
  sl_redis_activity(r);
  return c;
}

/* ---- a new client ---- */

sl_redis *sl_redis_new(sl_sched *S, const char *host, int port, double cmd) {
  sl_redis *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->S = S;
  r->anchor = LUA_NOREF;
  r->state = SL_RS_CONNECTING;
  r->port = port;
  r->timeout_ms = cmd > 0 ? (uint64_t)ceil(cmd * 1e3) : 0;
  snprintf(r->host, sizeof r->host, "%s", host);
  sl_queue_init(&r->waiting);
  uv_timer_init(S->loop, &r->timer);
  r->timer.data = r;
  r->live = 2;   /* the userdata-to-be and the timer */
  return r;
}

/* AUTH and SELECT, queued by hiredis until the socket is connected. */
static void sl_redis_setup(sl_redis *r, const char *password, int db) {
  const char *argv[2];
  size_t len[2];
  char dbs[16];
  sl_redis_call *c;
  if (password) {
    argv[0] = "AUTH", len[0] = 4;
    argv[1] = password, len[1] = strlen(password);
    if ((c = sl_redis_send(r, 2, argv, len))) c->setup = 1, r->setup_left++;
  }
  if (db) {
    argv[0] = "SELECT", len[0] = 6;
    argv[1] = dbs, len[1] = (size_t)snprintf(dbs, sizeof dbs, "%d", db);
    if ((c = sl_redis_send(r, 2, argv, len))) c->setup = 1, r->setup_left++;
  }
}

/* Connects to addr, an address: 0, or -1 with why set. */
static int sl_redis_dial(sl_redis *r, const char *addr, char *why, size_t n) {
  r->ac = redisAsyncConnect(addr, r->port);
  if (!r->ac || r->ac->err || sl_redis_attach(r, r->S->loop)) {
    sl_redis_errstr(why, n, r->ac ? r->ac->c.errstr : "out of memory");
    if (r->ac) redisAsyncFree(r->ac);
    r->ac = NULL;
    return -1;
  }
  redisAsyncSetConnectCallback(r->ac, sl_redis_on_connect);   /* polls for writable */
  sl_redis_setup(r, r->password, r->db);
  free(r->password);
  r->password = NULL;
  return 0;
}

static int sl_redis_is_address(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* The host name is resolved (on libuv's thread pool: hiredis would
 * resolve it with a blocking getaddrinfo on the loop's thread). */
static void sl_redis_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  sl_redis *r = req->data;
  char addr[INET6_ADDRSTRLEN], why[256];
  const void *a;
  r->resolving = 0;
  if (r->state == SL_RS_CONNECTING) {
    if (status) {
      snprintf(why, sizeof why, "cannot resolve the host (%s)", uv_strerror(status));
      sl_redis_connect_fail(r, SL_RO_ERROR, why);
    } else {
      a = res->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                                     : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
      if (!inet_ntop(res->ai_family, a, addr, sizeof addr)) {
        sl_redis_connect_fail(r, SL_RO_ERROR, "cannot resolve the host (no address)");
      } else if (sl_redis_dial(r, addr, why, sizeof why)) {
        sl_redis_connect_fail(r, SL_RO_ERROR, why);
      } else {
        sl_redis_activity(r);
      }
    }
  }
  uv_freeaddrinfo(res);
  sl_redis_release(r);
}

/* Starts connecting (AUTH / SELECT queued, the connect timeout armed),
 * resolving the host first when it is a name: 0, or -1 with why set and
 * r given up. */
int sl_redis_start(sl_redis *r, const char *password, int db, double ct, char *why, size_t n) {
  struct addrinfo hints;
  int rc;
  r->db = db;
  if (password && !(r->password = strdup(password))) {
    snprintf(why, n, "out of memory");
    goto fail;
  }
  if (sl_redis_is_address(r->host)) {
    if (sl_redis_dial(r, r->host, why, n)) goto fail;
  } else {
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r->gai.data = r;
    rc = uv_getaddrinfo(r->S->loop, &r->gai, sl_redis_resolved, r->host, NULL, &hints);
    if (rc) {
      snprintf(why, n, "cannot resolve the host (%s)", uv_strerror(rc));
      goto fail;
    }
    r->resolving = 1;
    r->live++;   /* until sl_redis_resolved */
  }
  if (ct > 0) {   /* the loop's cached time may be stale after a long pass */
    r->connect_timeout = ct;
    uv_update_time(r->S->loop);
    uv_timer_start(&r->timer, sl_redis_timer_cb, (uint64_t)ceil(ct * 1e3), 0);
  }
  return 0;
fail:
  uv_close((uv_handle_t *)&r->timer, sl_redis_closed_cb);
  sl_redis_release(r);
  return -1;
}

/* The Lua object is collected (the state is closing): lets go of r
 * without touching Lua or the tasks. */
void sl_redis_drop(sl_redis *r) {
  if (r->state == SL_RS_CONNECTING || r->state == SL_RS_READY) {
    while (!sl_queue_empty(&r->waiting)) {
      sl_redis_call *c = sl_queue_data(sl_queue_head(&r->waiting), sl_redis_call, link);
      sl_queue_remove(&c->link);
      c->task = NULL;
    }
    r->connector = NULL;
    r->state = SL_RS_CLOSED;
    uv_close((uv_handle_t *)&r->timer, sl_redis_closed_cb);
    if (r->ac && !r->freeing) {
      r->freeing = 1;
      redisAsyncFree(r->ac);
    }
  }
  sl_redis_release(r);
}
