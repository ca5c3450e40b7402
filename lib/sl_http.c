/*
 * sl_http.c - the HTTP client of sluice.http: libcurl's multi-socket
 * interface driven by the runtime's libuv loop.
 *
 * One multi handle per scheduler (so one connection cache: connections
 * are reused across requests and tasks).  curl tells us which sockets to
 * watch (CURLMOPT_SOCKETFUNCTION: one uv_poll_t per socket, freed in its
 * close callback) and when to call it back (CURLMOPT_TIMERFUNCTION: it
 * only (re)arms one uv_timer_t, never calls curl from inside curl).  Poll
 * and timer callbacks call curl_multi_socket_action, then collect
 * finished transfers with curl_multi_info_read and wake their tasks.
 *
 * A transfer (sl_http_xfer) lives in a Lua userdata held by the waiting
 * task's frame.  The task parks with an unwait hook: a timeout or a
 * cancellation removes the easy handle from the multi handle and cleans
 * it up at once, which closes its connection (the server sees it go).
 * Nothing here resumes a task; the woken task reads the outcome with
 * core.result.  The request timeout is the task's own timer (virtual
 * clock aware); connect_timeout is curl's (real clock).
 */
#include "sl_http.h"

#include "sl_curl.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define SL_XFER_MT  "sluice.http.xfer"
#define SL_STATE_KEY "sluice.http.state"

struct sl_http_state {
  CURLM *multi;
  sl_sched *S;
  uv_timer_t timer;
  uv_async_t token;
  int transfers, handlers;   /* in flight; see sl_http.h */
  int sockets;               /* poll handles open */
  int starting;              /* transfers curl has given no socket yet */
  int capped;                /* connection caps configured */
  int nopen;                 /* handles not yet closed: free at 0 */
  int referenced;
};

typedef struct sl_http_sock {
  uv_poll_t poll;
  curl_socket_t fd;
  sl_http_state *H;
} sl_http_sock;

enum { SL_X_RUNNING, SL_X_DONE, SL_X_ABORTED };

typedef struct sl_http_xfer {
  CURL *easy;                /* NULL once detached from the multi handle */
  sl_http_state *H;
  sl_task *task;             /* the parked waiter, or NULL */
  struct curl_slist *hdrs;
  sl_hbuf body, head;
  CURLcode code;
  long status;
  int state;
  int watched;               /* curl gave it a socket (no longer starting) */
} sl_http_xfer;

/* ---- buffers ---- */

int sl_hbuf_add(sl_hbuf *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *p;
    while (cap < b->len + n) cap *= 2;
    if (!(p = realloc(b->p, cap))) return -1;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

void sl_hbuf_free(sl_hbuf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- activity ---- */

/* Busy: a socket of ours is watched that no in-process handler accounts
 * for, or a transfer is starting (resolving, connecting) and has no
 * socket yet.  With connection caps, transfers without a socket while
 * others have one are taken as queued by curl: they wait for those. */
static void sl_http_update(sl_http_state *H) {
  int busy = H->sockets > H->handlers ||
    (H->starting > 0 && (!H->capped || H->sockets == 0));
  if (busy && !H->referenced) uv_ref((uv_handle_t *)&H->token);
  else if (!busy && H->referenced) uv_unref((uv_handle_t *)&H->token);
  H->referenced = busy;
}

void sl_http_activity(sl_http_state *H, int transfers, int handlers) {
  H->transfers += transfers;
  H->handlers += handlers;
  sl_http_update(H);
}

/* ---- curl <-> libuv ---- */

static void sl_xfer_detach(sl_http_xfer *x) {
  if (!x->watched) x->H->starting--;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
  if (x->H->multi) curl_multi_remove_handle(x->H->multi, x->easy);
  curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->hdrs);
  x->easy = NULL;
  x->hdrs = NULL;
  sl_http_activity(x->H, -1, 0);
}

/* Wakes the tasks of finished transfers. */
static void sl_http_check(sl_http_state *H) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(H->multi, &left))) {
    sl_http_xfer *x;
    if (m->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    x->code = m->data.result;   /* read before m goes with the handle */
    sl_xfer_detach(x);
    x->state = SL_X_DONE;
    if (x->task) {
      sl_task *t = x->task;
      x->task = NULL;
      sl_task_wake(t, SL_WAKE_OK);
    }
  }
}

static void sl_poll_cb(uv_poll_t *p, int status, int events) {
  sl_http_sock *k = p->data;
  sl_http_state *H = k->H;
  int flags = 0, running;
  if (H->S->closing) return;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(H->multi, k->fd, flags, &running);
  sl_http_check(H);
}

static void sl_curl_timer_cb(uv_timer_t *t) {
  sl_http_state *H = t->data;
  int running;
  if (H->S->closing) return;
  curl_multi_socket_action(H->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  sl_http_check(H);
}

static void sl_state_release(sl_http_state *H) {
  if (--H->nopen == 0) free(H);
}

static void sl_sock_closed(uv_handle_t *h) {
  sl_http_sock *k = h->data;
  sl_state_release(k->H);
  free(k);
}

static int sl_socket_func(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  sl_http_state *H = userp;
  sl_http_sock *k = socketp;
  sl_http_xfer *x = NULL;
  int events = 0;
  if (e) curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
  if (x && !x->watched) {
    x->watched = 1;
    H->starting--;
  }
  if (what == CURL_POLL_REMOVE) {
    if (k) {
      curl_multi_assign(H->multi, s, NULL);
      H->sockets--;
      uv_close((uv_handle_t *)&k->poll, sl_sock_closed);
      sl_http_update(H);
    }
    return 0;
  }
  if (!k) {
    if (!(k = malloc(sizeof *k))) return -1;
    if (uv_poll_init_socket(H->S->loop, &k->poll, s)) {
      free(k);
      return -1;
    }
    uv_unref((uv_handle_t *)&k->poll);   /* the token stands for it */
    k->poll.data = k;
    k->fd = s;
    k->H = H;
    H->sockets++;
    H->nopen++;
    curl_multi_assign(H->multi, s, k);
  }
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  uv_poll_start(&k->poll, events, sl_poll_cb);
  sl_http_update(H);
  return 0;
}

/* Only arms the uv timer: calling curl back from here would re-enter it. */
static int sl_timer_func(CURLM *m, long ms, void *userp) {
  sl_http_state *H = userp;
  (void)m;
  if (ms < 0) uv_timer_stop(&H->timer);
  else uv_timer_start(&H->timer, sl_curl_timer_cb, (uint64_t)ms, 0);
  sl_http_update(H);
  return 0;
}

/* ---- the per-scheduler state ---- */

static void sl_state_closed(uv_handle_t *h) { sl_state_release(h->data); }

static void sl_token_cb(uv_async_t *a) { (void)a; }

static int l_state_gc(lua_State *L) {
  sl_http_state *H = *(sl_http_state **)lua_touserdata(L, 1);
  curl_multi_cleanup(H->multi);   /* closes cached connections: REMOVEs */
  H->multi = NULL;                /* transfers collected later only clean up */
  uv_close((uv_handle_t *)&H->timer, sl_state_closed);
  uv_close((uv_handle_t *)&H->token, sl_state_closed);
  sl_state_release(H);
  return 0;
}

sl_http_state *sl_http_state_of(lua_State *L) {
  sl_http_state *H, **box;
  lua_getfield(L, LUA_REGISTRYINDEX, SL_STATE_KEY);
  if ((box = lua_touserdata(L, -1))) {
    lua_pop(L, 1);
    return *box;
  }
  lua_pop(L, 1);
  box = lua_newuserdata(L, sizeof *box);
  if (!(H = calloc(1, sizeof *H)) || !(H->multi = curl_multi_init())) {
    free(H);
    luaL_error(L, "http: out of memory");
  }
  *box = H;
  H->S = sl_getsched(L);
  H->nopen = 3;   /* the timer, the token and the Lua box */
  uv_timer_init(H->S->loop, &H->timer);
  uv_unref((uv_handle_t *)&H->timer);
  uv_async_init(H->S->loop, &H->token, sl_token_cb);
  uv_unref((uv_handle_t *)&H->token);
  H->timer.data = H->token.data = H;
  curl_multi_setopt(H->multi, CURLMOPT_SOCKETFUNCTION, sl_socket_func);
  curl_multi_setopt(H->multi, CURLMOPT_SOCKETDATA, H);
  curl_multi_setopt(H->multi, CURLMOPT_TIMERFUNCTION, sl_timer_func);
  curl_multi_setopt(H->multi, CURLMOPT_TIMERDATA, H);
  /* curl's default cache is 4 x the handles added, which shrinks as a
   * burst finishes together and closes connections about to be reused. */
  curl_multi_setopt(H->multi, CURLMOPT_MAXCONNECTS, 64L);
  lua_newtable(L);
  lua_pushcfunction(L, l_state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, SL_STATE_KEY);
  return H;
}

/* ---- transfers ---- */

static size_t sl_body_cb(char *p, size_t size, size_t n, void *ud) {
  sl_http_xfer *x = ud;
  return sl_hbuf_add(&x->body, p, size * n) ? 0 : size * n;
}

/* Keeps the header lines of the last response only (a 100 Continue or
 * a redirect answer starts again with its status line). */
static size_t sl_header_cb(char *p, size_t size, size_t n, void *ud) {
  sl_http_xfer *x = ud;
  if (size * n >= 5 && !memcmp(p, "HTTP/", 5)) x->head.len = 0;
  return sl_hbuf_add(&x->head, p, size * n) ? 0 : size * n;
}

static void sl_xfer_free(sl_http_xfer *x) {
  if (x->easy) {
    sl_xfer_detach(x);
    x->state = SL_X_ABORTED;
  }
  sl_hbuf_free(&x->body);
  sl_hbuf_free(&x->head);
}

static int l_xfer_gc(lua_State *L) {
  sl_xfer_free(luaL_checkudata(L, 1, SL_XFER_MT));
  return 0;
}

static int sl_add_headers(lua_State *L, sl_http_xfer *x, int idx, int has_body) {
  struct curl_slist *l;
  if (has_body && !(x->hdrs = curl_slist_append(NULL, "Expect:"))) return -1;
  if (!lua_istable(L, idx)) return 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
    l = curl_slist_append(x->hdrs, lua_tostring(L, -1));
    lua_pop(L, 2);
    if (!l) return -1;
    x->hdrs = l;
  }
  return 0;
}

/* core.start(method, url, headers, body, connect_timeout, proxy, verify)
 * -> transfer.  The Lua side has checked every argument. */
static int l_start(lua_State *L) {
  sl_http_state *H = sl_http_state_of(L);
  const char *method = luaL_checkstring(L, 1), *url = luaL_checkstring(L, 2);
  size_t blen;
  const char *body = lua_tolstring(L, 4, &blen);
  double cto = luaL_optnumber(L, 5, 0);
  sl_http_xfer *x = lua_newuserdata(L, sizeof *x);
  CURL *e;
  memset(x, 0, sizeof *x);
  luaL_getmetatable(L, SL_XFER_MT);
  lua_setmetatable(L, -2);
  if (!(e = curl_easy_init())) return luaL_error(L, "http: out of memory");
  x->H = H;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sl_body_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, sl_header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_PROXY, luaL_optstring(L, 6, ""));
  if (cto > 0) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(cto * 1e3 + 0.5));
  if (lua_isboolean(L, 7) && !lua_toboolean(L, 7)) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    if (strcmp(method, "POST")) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  } else if (!strcmp(method, "HEAD")) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "GET")) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  }
  if (sl_add_headers(L, x, 3, body != NULL)) {
    curl_slist_free_all(x->hdrs);
    curl_easy_cleanup(e);
    return luaL_error(L, "http: out of memory");
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
  H->starting++;   /* before adding: curl may call back from inside */
  if (curl_multi_add_handle(H->multi, e) != CURLM_OK) {
    H->starting--;
    curl_slist_free_all(x->hdrs);
    curl_easy_cleanup(e);
    return luaL_error(L, "http: cannot start the transfer");
  }
  x->easy = e;
  sl_http_activity(H, 1, 0);
  return 1;
}

/* A timeout or a cancellation aborts the transfer at once. */
static int sl_xfer_unwait(sl_task *t, int why) {
  sl_http_xfer *x = t->wait.obj;
  (void)why;
  x->task = NULL;
  if (x->easy) {
    sl_xfer_detach(x);
    x->state = SL_X_ABORTED;
  }
  return 1;
}

/* core.wait(transfer [, timeout]) -> wake code (SL_WAKE_*). */
static int l_wait(lua_State *L) {
  sl_http_xfer *x = luaL_checkudata(L, 1, SL_XFER_MT);
  sl_task *t = sl_running(L, "http.request");
  double timeout = luaL_optnumber(L, 2, -1);
  if (x->state != SL_X_RUNNING) {
    lua_pushinteger(L, SL_WAKE_OK);
    return 1;
  }
  if (sl_task_cancel_due(t)) {
    sl_xfer_free(x);
    lua_pushinteger(L, SL_WAKE_CANCEL);
    return 1;
  }
  if (timeout >= 0 && sl_task_arm(t, timeout)) return luaL_error(L, "http: out of memory");
  x->task = t;
  sl_task_park(t, "http", x, sl_xfer_unwait);
  lua_pushlightuserdata(L, SL_PARK);
  return lua_yield(L, 1);
}

/* Pushes the header lines as a table: lower-case names, repeated
 * headers joined with ", ". */
static void sl_push_headers(lua_State *L, const char *p, size_t len) {
  const char *end = p + len, *eol, *colon, *v, *ve;
  char name[256];
  size_t i, n;
  lua_newtable(L);
  for (; p < end; p = eol + 1) {
    if (!(eol = memchr(p, '\n', (size_t)(end - p)))) eol = end;
    colon = memchr(p, ':', (size_t)(eol - p));
    if (!colon || !memcmp(p, "HTTP/", 5) || (n = (size_t)(colon - p)) >= sizeof name) continue;
    for (i = 0; i < n; i++) name[i] = (char)tolower((unsigned char)p[i]);
    for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++) {}
    for (ve = eol; ve > v && isspace((unsigned char)ve[-1]); ve--) {}
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
}

/* core.result(transfer) -> status, headers, body | nil, message, timed_out */
static int l_result(lua_State *L) {
  sl_http_xfer *x = luaL_checkudata(L, 1, SL_XFER_MT);
  if (x->state != SL_X_DONE) return 0;
  if (x->code != CURLE_OK) {
    lua_pushnil(L);
    lua_pushstring(L, curl_easy_strerror(x->code));
    lua_pushboolean(L, x->code == CURLE_OPERATION_TIMEDOUT);
    sl_xfer_free(x);
    return 3;
  }
  lua_pushinteger(L, x->status);
  sl_push_headers(L, x->head.p, x->head.len);
  lua_pushlstring(L, x->body.p ? x->body.p : "", x->body.len);
  sl_xfer_free(x);
  return 3;
}

/* core.configure(max_connections, max_host_connections, max_idle):
 * 0 = no cap for the first two; nil leaves a setting as it is. */
static int l_configure(lua_State *L) {
  sl_http_state *H = sl_http_state_of(L);
  if (!lua_isnil(L, 1)) H->capped = (H->capped & 2) | (luaL_checkinteger(L, 1) > 0);
  if (!lua_isnil(L, 2)) H->capped = (H->capped & 1) | (luaL_checkinteger(L, 2) > 0) << 1;
  if (!lua_isnil(L, 1))
    curl_multi_setopt(H->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)luaL_checkinteger(L, 1));
  if (!lua_isnil(L, 2))
    curl_multi_setopt(H->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)luaL_checkinteger(L, 2));
  if (!lua_isnil(L, 3))
    curl_multi_setopt(H->multi, CURLMOPT_MAXCONNECTS, (long)luaL_checkinteger(L, 3));
  return 0;
}

/* core.client_stats() -> transfers in flight, sockets watched. */
static int l_client_stats(lua_State *L) {
  sl_http_state *H = sl_http_state_of(L);
  lua_pushinteger(L, H->transfers);
  lua_pushinteger(L, H->sockets);
  return 2;
}

static const luaL_Reg sl_http_funcs[] = {
  {"start", l_start}, {"wait", l_wait}, {"result", l_result},
  {"configure", l_configure}, {"client_stats", l_client_stats},
  {NULL, NULL}
};

int luaopen_sluice_http_core(lua_State *L) {
  const char *why;
  if (sl_curl_load(&why)) return luaL_error(L, "sluice.http: %s", why);
  luaL_newmetatable(L, SL_XFER_MT);
  lua_pushcfunction(L, l_xfer_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, sl_http_funcs);
  lua_pushstring(L, curl_version());
  lua_setfield(L, -2, "curl_version");
  sl_http_server_open(L);
  return 1;
}
