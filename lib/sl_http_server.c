/*
 * sl_http_server.c - the HTTP/1.1 server of sluice.http: a uv_tcp_t
 * listener, and per connection a parser for requests with
 * Content-Length bodies, keep-alive and pipelining (one request of a
 * connection is handled at a time; bytes of the next wait in the buffer).
 *
 * Each complete request spawns a task running the Lua dispatcher
 * (lua/sluice/http.lua) with a request box and the request table; the
 * dispatcher calls the user's handler and answers with core.respond or
 * core.reset.  The box points at its connection only while the request
 * is in flight: a connection that goes away (the client closed it, the
 * server was closed) detaches the box and cancels the handler task, so a
 * late answer is dropped.  While a request is in flight its connection
 * keeps a registry reference to the handler task (cancelling stays
 * valid whatever the task did).
 *
 * Memory: a server and its connections are malloc'd (their handles must
 * outlive the Lua objects while they close); a connection is freed in its
 * close callback, the server once its listener and every connection have
 * closed.  While listening the server's Lua box and the dispatcher are
 * anchored in the registry; closing releases both at once.
 *
 * Loop activity: the listener counts as activity under the real clock
 * (a serving process stays alive), never under the virtual clock;
 * connections never do (see sl_http.h for how requests in flight count).
 */
#include "sl_http.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define SL_SERVER_MT "sluice.http.server"
#define SL_REQ_MT    "sluice.http.request"
#define SL_MAX_HEAD  (64 * 1024)
#define SL_MAX_BODY  (64 * 1024 * 1024)

typedef struct sl_srv sl_srv;
typedef struct sl_conn sl_conn;
typedef struct sl_reqbox { sl_conn *conn; } sl_reqbox;
/* The Lua face of a server; srv is NULL once it is closed. */
typedef struct sl_srvbox { sl_srv *srv; unsigned requests; } sl_srvbox;

struct sl_srv {
  uv_tcp_t tcp;
  sl_sched *S;
  sl_http_state *H;
  sl_queue conns;
  sl_srvbox *box;
  int self_ref, fn_ref;      /* registry: the Lua box, the dispatcher */
  int nopen;                 /* the listener + connections not yet closed */
  unsigned connections, requests, next_id;
  int port;
  int closed;
};

struct sl_conn {
  uv_tcp_t tcp;
  sl_queue link;             /* in srv->conns while open */
  sl_srv *srv;
  sl_hbuf in, out;
  uv_write_t wreq;
  sl_reqbox *box;            /* the request in flight, or NULL */
  int task_ref;              /* registry: its handler task */
  unsigned id;
  int keep_alive, writing, closing;
};

static void sl_conn_process(sl_conn *c);

/* ---- closing ---- */

static void sl_srv_release(sl_srv *srv) {
  if (--srv->nopen == 0) free(srv);
}

static void sl_conn_closed(uv_handle_t *h) {
  sl_conn *c = h->data;
  sl_srv *srv = c->srv;
  sl_hbuf_free(&c->in);
  sl_hbuf_free(&c->out);
  free(c);
  sl_srv_release(srv);
}

/* Ends the request in flight: the box lets go, the reference goes. */
static void sl_conn_detach(lua_State *L, sl_conn *c, int cancel) {
  if (!c->box) return;
  c->box->conn = NULL;
  c->box = NULL;
  if (cancel && !c->srv->S->closing) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->task_ref);
    sl_task_cancel(lua_touserdata(L, -1));
    lua_pop(L, 1);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, c->task_ref);
  c->task_ref = LUA_NOREF;
  sl_http_activity(c->srv->H, 0, -1);
}

static void sl_conn_close(sl_conn *c, int reset) {
  if (c->closing) return;
  c->closing = 1;
  sl_conn_detach(c->srv->S->L, c, 1);
  sl_queue_remove(&c->link);
  c->srv->connections--;
  if (reset) uv_tcp_close_reset(&c->tcp, sl_conn_closed);
  else uv_close((uv_handle_t *)&c->tcp, sl_conn_closed);
}

/* ---- writing ---- */

static void sl_conn_written(uv_write_t *w, int status) {
  sl_conn *c = w->data;
  c->writing = 0;
  c->out.len = 0;
  if (c->closing) return;
  if (status < 0 || !c->keep_alive || c->srv->closed) sl_conn_close(c, 0);
  else sl_conn_process(c);
}

static void sl_conn_send(sl_conn *c) {
  uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
  c->wreq.data = c;
  c->writing = 1;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, sl_conn_written) < 0) {
    c->writing = 0;
    sl_conn_close(c, 0);
  }
}

static const char *sl_reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}

/* Starts the status line and the framing headers of a response. */
static int sl_put_head(sl_conn *c, int status, size_t blen) {
  char line[160];
  int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s",
                   status, sl_reason(status), blen, c->keep_alive ? "" : "Connection: close\r\n");
  return sl_hbuf_add(&c->out, line, (size_t)n);
}

/* A parse error: answer and close. */
static void sl_conn_fail(sl_conn *c, int status) {
  const char *msg = sl_reason(status);
  c->keep_alive = 0;
  c->in.len = 0;
  if (sl_put_head(c, status, strlen(msg)) || sl_hbuf_add(&c->out, "\r\n", 2) ||
      sl_hbuf_add(&c->out, msg, strlen(msg))) {
    sl_conn_close(c, 0);
    return;
  }
  sl_conn_send(c);
}

/* ---- parsing ---- */

typedef struct sl_head {
  const char *method, *target, *version;
  size_t mlen, tlen, vlen;
  long long clen;
  int chunked, conn_close, conn_keep;
} sl_head;

static const char *sl_find(const char *p, size_t n, const char *s) {
  size_t k = strlen(s), i;
  for (i = 0; i + k <= n; i++)
    if (p[i] == s[0] && !memcmp(p + i, s, k)) return p + i;
  return NULL;
}

static int sl_ieq(const char *a, size_t n, const char *b) {
  size_t i;
  if (strlen(b) != n) return 0;
  for (i = 0; i < n; i++)
    if (tolower((unsigned char)a[i]) != b[i]) return 0;
  return 1;
}

/* Parses the request line; 0 or -1: malformed. */
static int sl_parse_line(sl_head *h, const char *p, const char *eol) {
  const char *sp1 = memchr(p, ' ', (size_t)(eol - p)), *sp2;
  if (!sp1 || !(sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)))) return -1;
  h->method = p;
  h->mlen = (size_t)(sp1 - p);
  h->target = sp1 + 1;
  h->tlen = (size_t)(sp2 - sp1 - 1);
  h->version = sp2 + 1;
  h->vlen = (size_t)(eol - sp2 - 1);
  if (!h->mlen || !h->tlen || h->vlen != 8 || memcmp(h->version, "HTTP/1.", 7)) return -1;
  return 0;
}

/* Pushes the headers as a table and fills in the framing fields. */
static int sl_parse_headers(lua_State *L, sl_head *h, const char *p, const char *end) {
  const char *eol, *colon, *v, *ve;
  char name[256];
  size_t i, n;
  lua_newtable(L);
  for (; p < end; p = eol + 2) {
    if (!(eol = sl_find(p, (size_t)(end - p + 2), "\r\n"))) return -1;
    if (eol == p) break;
    if (!(colon = memchr(p, ':', (size_t)(eol - p))) || (n = (size_t)(colon - p)) == 0 ||
        n >= sizeof name) return -1;
    for (i = 0; i < n; i++) name[i] = (char)tolower((unsigned char)p[i]);
    for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++) {}
    for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--) {}
    if (n == 14 && !memcmp(name, "content-length", 14)) {
      const char *d = v;
      if (d == ve) return -1;
      for (h->clen = 0; d < ve; d++) {
        if (!isdigit((unsigned char)*d) || h->clen > SL_MAX_BODY) return -1;
        h->clen = h->clen * 10 + (*d - '0');
      }
    } else if (n == 17 && !memcmp(name, "transfer-encoding", 17)) {
      h->chunked = 1;
    } else if (n == 10 && !memcmp(name, "connection", 10)) {
      if (sl_ieq(v, (size_t)(ve - v), "close")) h->conn_close = 1;
      if (sl_ieq(v, (size_t)(ve - v), "keep-alive")) h->conn_keep = 1;
    }
    lua_pushlstring(L, name, n);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isstring(L, -1)) {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, v, (size_t)(ve - v));
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, v, (size_t)(ve - v));
    }
    lua_rawset(L, -3);
  }
  return 0;
}

/* Pushes the request table {method, path, query, headers, body,
 * connection}; the headers table is on top of L. */
static void sl_push_request(lua_State *L, sl_conn *c, sl_head *h, const char *body) {
  const char *q = memchr(h->target, '?', h->tlen);
  size_t plen = q ? (size_t)(q - h->target) : h->tlen;
  lua_createtable(L, 0, 7);
  lua_insert(L, -2);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, h->method, h->mlen);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, h->target, plen);
  lua_setfield(L, -2, "path");
  lua_pushlstring(L, q ? q + 1 : "", q ? h->tlen - plen - 1 : 0);
  lua_setfield(L, -2, "query");
  lua_pushlstring(L, body, (size_t)h->clen);
  lua_setfield(L, -2, "body");
  lua_pushinteger(L, c->id);
  lua_setfield(L, -2, "connection");
}

/* Spawns the dispatcher for the request on top of L. */
static void sl_conn_dispatch(sl_conn *c, lua_State *L) {
  sl_srv *srv = c->srv;
  sl_reqbox *box;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, srv->fn_ref);
  box = lua_newuserdata(L, sizeof *box);
  luaL_getmetatable(L, SL_REQ_MT);
  lua_setmetatable(L, -2);
  box->conn = c;
  lua_pushvalue(L, top);
  sl_spawn(L, srv->S, &srv->S->root, top + 1, 2);
  c->task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->box = box;
  srv->requests++;
  sl_http_activity(srv->H, 0, 1);
  lua_settop(L, top - 1);
}

/* Handles the next complete request in the buffer, if any. */
static void sl_conn_process(sl_conn *c) {
  lua_State *L = c->srv->S->L;
  sl_head h;
  const char *p = c->in.p, *end, *eol;
  size_t hlen, total;
  int top = lua_gettop(L);
  if (c->box || c->writing || c->closing || c->srv->closed || c->in.len == 0) return;
  if (!(end = sl_find(p, c->in.len, "\r\n\r\n"))) {
    if (c->in.len > SL_MAX_HEAD) sl_conn_fail(c, 431);
    return;
  }
  memset(&h, 0, sizeof h);
  hlen = (size_t)(end - p) + 4;
  eol = sl_find(p, hlen, "\r\n");
  if (sl_parse_line(&h, p, eol) || sl_parse_headers(L, &h, eol + 2, end + 2)) {
    lua_settop(L, top);
    sl_conn_fail(c, 400);
    return;
  }
  if (h.chunked || h.clen > SL_MAX_BODY) {
    lua_settop(L, top);
    sl_conn_fail(c, h.chunked ? 411 : 413);
    return;
  }
  total = hlen + (size_t)h.clen;
  if (c->in.len < total) {   /* the body is still coming */
    lua_settop(L, top);
    return;
  }
  c->keep_alive = h.version[7] == '1' ? !h.conn_close : h.conn_keep;
  sl_push_request(L, c, &h, p + hlen);
  memmove(c->in.p, c->in.p + total, c->in.len - total);
  c->in.len -= total;
  sl_conn_dispatch(c, L);
  lua_settop(L, top);
}

/* ---- reading ---- */

static void sl_alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *b) {
  sl_conn *c = h->data;
  if (size < 65536) size = 65536;
  if (c->in.cap - c->in.len < size) {   /* grow geometrically: big bodies */
    size_t cap = c->in.cap * 2 > c->in.len + size ? c->in.cap * 2 : c->in.len + size;
    char *p = realloc(c->in.p, cap);
    if (!p) {
      *b = uv_buf_init(NULL, 0);
      return;
    }
    c->in.p = p;
    c->in.cap = cap;
  }
  *b = uv_buf_init(c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void sl_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  sl_conn *c = s->data;
  (void)b;
  if (c->srv->S->closing) return;
  if (n < 0) {
    sl_conn_close(c, 0);
    return;
  }
  c->in.len += (size_t)n;
  if (c->in.len > SL_MAX_HEAD + SL_MAX_BODY) sl_conn_close(c, 0);
  else sl_conn_process(c);
}

static void sl_on_connection(uv_stream_t *l, int status) {
  sl_srv *srv = l->data;
  sl_conn *c;
  if (status < 0 || srv->closed || srv->S->closing) return;
  if (!(c = calloc(1, sizeof *c))) return;
  uv_tcp_init(srv->S->loop, &c->tcp);
  c->tcp.data = c;
  c->srv = srv;
  c->task_ref = LUA_NOREF;
  srv->nopen++;
  if (uv_accept(l, (uv_stream_t *)&c->tcp)) {
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, sl_conn_closed);
    return;
  }
  uv_unref((uv_handle_t *)&c->tcp);
  uv_tcp_nodelay(&c->tcp, 1);
  c->id = ++srv->next_id;
  sl_queue_insert_tail(&srv->conns, &c->link);
  srv->connections++;
  uv_read_start((uv_stream_t *)&c->tcp, sl_alloc_cb, sl_read_cb);
}

/* ---- the Lua face ---- */

static sl_srvbox *sl_checksrv(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, SL_SERVER_MT);
}

static void sl_listener_closed(uv_handle_t *h) { sl_srv_release(h->data); }

/* Stops listening, closes every connection (cancelling the handlers in
 * flight; one being written is closed when the write ends) and releases
 * the registry anchors.  The memory goes with the last close callback. */
static void sl_srv_close(lua_State *L, sl_srv *srv) {
  sl_queue *q, *next;
  if (srv->closed) return;
  srv->closed = 1;
  uv_close((uv_handle_t *)&srv->tcp, sl_listener_closed);
  for (q = srv->conns.next; q != &srv->conns; q = next) {
    sl_conn *c = sl_queue_data(q, sl_conn, link);
    next = q->next;
    if (c->writing) c->keep_alive = 0;
    else sl_conn_close(c, 0);
  }
  srv->box->requests = srv->requests;
  srv->box->srv = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, srv->fn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, srv->self_ref);
  srv->fn_ref = srv->self_ref = LUA_NOREF;
}

static int sl_srv_fail(lua_State *L, sl_srv *srv, int rc, const char *host, int port) {
  uv_close((uv_handle_t *)&srv->tcp, sl_listener_closed);
  srv->closed = 1;
  srv->box->srv = NULL;
  return sl_raise(L, "http", "http.serve: %s:%d: %s", host, port, uv_strerror(rc));
}

/* core.serve(host, port, dispatcher, backlog) -> server box, port */
static int l_serve(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2), backlog = (int)luaL_optinteger(L, 4, 511), rc, len;
  sl_http_state *H = sl_http_state_of(L);
  struct sockaddr_storage ss;
  sl_srv *srv;
  sl_srvbox *box;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss))
    return sl_raise(L, "invalid", "http.serve: host must be an IP address (got \"%s\")", host);
  box = lua_newuserdata(L, sizeof *box);
  box->srv = NULL;
  box->requests = 0;
  luaL_getmetatable(L, SL_SERVER_MT);
  lua_setmetatable(L, -2);
  if (!(srv = calloc(1, sizeof *srv))) return luaL_error(L, "http.serve: out of memory");
  srv->S = sl_getsched(L);
  srv->H = H;
  srv->nopen = 1;
  srv->fn_ref = srv->self_ref = LUA_NOREF;
  sl_queue_init(&srv->conns);
  uv_tcp_init(srv->S->loop, &srv->tcp);
  srv->tcp.data = srv;
  box->srv = srv;
  srv->box = box;
  if ((rc = uv_tcp_bind(&srv->tcp, (struct sockaddr *)&ss, 0)) ||
      (rc = uv_listen((uv_stream_t *)&srv->tcp, backlog, sl_on_connection)))
    return sl_srv_fail(L, srv, rc, host, port);
  len = sizeof ss;
  uv_tcp_getsockname(&srv->tcp, (struct sockaddr *)&ss, &len);
  srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
  if (srv->S->virtual_clock) uv_unref((uv_handle_t *)&srv->tcp);
  lua_pushvalue(L, 3);
  srv->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  srv->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushinteger(L, srv->port);
  return 2;
}

static int l_server_close(lua_State *L) {
  sl_srvbox *b = sl_checksrv(L, 1);
  if (b->srv) sl_srv_close(L, b->srv);
  return 0;
}

/* core.server_info(box) -> connections, requests, closed */
static int l_server_info(lua_State *L) {
  sl_srvbox *b = sl_checksrv(L, 1);
  lua_pushinteger(L, b->srv ? b->srv->connections : 0);
  lua_pushinteger(L, b->srv ? b->srv->requests : b->requests);
  lua_pushboolean(L, b->srv == NULL);
  return 3;
}

/* At lua_close: a server still open goes with the state. */
static int l_server_gc(lua_State *L) {
  sl_srvbox *b = lua_touserdata(L, 1);
  if (b->srv) sl_srv_close(L, b->srv);
  return 0;
}

static sl_conn *sl_checkreq(lua_State *L) {
  return ((sl_reqbox *)luaL_checkudata(L, 1, SL_REQ_MT))->conn;
}

static int sl_put_header(lua_State *L, sl_conn *c, const char *k, size_t n, const char *v) {
  if (sl_ieq(k, n, "connection") && sl_ieq(v, strlen(v), "close")) c->keep_alive = 0;
  lua_pushfstring(L, "%s: %s\r\n", k, v);
  if (sl_hbuf_add(&c->out, lua_tostring(L, -1), lua_objlen(L, -1))) return -1;
  lua_pop(L, 1);
  return 0;
}

/* Header values are strings or numbers, or lists of them (one line
 * each); Content-Length is the server's own. */
static int sl_put_headers(lua_State *L, sl_conn *c, int idx) {
  size_t n;
  int i;
  if (!lua_istable(L, idx)) return 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_tolstring(L, -2, &n);
    if (sl_ieq(k, n, "content-length")) {
    } else if (lua_istable(L, -1)) {
      for (i = 1; i <= (int)lua_objlen(L, -1); i++) {
        lua_rawgeti(L, -1, i);
        if (sl_put_header(L, c, k, n, lua_tostring(L, -1))) return -1;
        lua_pop(L, 1);
      }
    } else if (sl_put_header(L, c, k, n, lua_tostring(L, -1))) {
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* core.respond(box, status, headers, body) -> true, or false if the
 * connection is gone (the answer is dropped). */
static int l_respond(lua_State *L) {
  sl_conn *c = sl_checkreq(L);
  int status = (int)luaL_checkinteger(L, 2);
  size_t blen;
  const char *body = luaL_optlstring(L, 4, "", &blen);
  if (!c) {
    lua_pushboolean(L, 0);
    return 1;
  }
  sl_conn_detach(L, c, 0);
  if (c->srv->closed) c->keep_alive = 0;
  c->out.len = 0;
  if (sl_put_head(c, status, blen) || sl_put_headers(L, c, 3) ||
      sl_hbuf_add(&c->out, "\r\n", 2) || sl_hbuf_add(&c->out, body, blen)) {
    sl_conn_close(c, 0);
    return luaL_error(L, "http: out of memory");
  }
  sl_conn_send(c);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.reset(box): closes the connection without an answer (RST). */
static int l_reset(lua_State *L) {
  sl_conn *c = sl_checkreq(L);
  lua_pushboolean(L, c != NULL);
  if (c) {
    sl_conn_detach(L, c, 0);
    sl_conn_close(c, 1);
  }
  return 1;
}

static const luaL_Reg sl_server_funcs[] = {
  {"serve", l_serve}, {"server_close", l_server_close},
  {"server_info", l_server_info}, {"respond", l_respond}, {"reset", l_reset},
  {NULL, NULL}
};

void sl_http_server_open(lua_State *L) {
  luaL_newmetatable(L, SL_SERVER_MT);
  lua_pushcfunction(L, l_server_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, SL_REQ_MT);
  lua_pop(L, 1);
  luaL_register(L, NULL, sl_server_funcs);
}
