/*
 * sl_uv.c - luv on the runtime's loop.
 *
 * luv is opened on the main state before any user code, with our own
 * callback runner: an error in a raw luv callback is reported like an
 * unawaited task failure (luv's default handler would exit the process).
 * uv.walk is replaced: luv's own aborts on handles that are not luv's,
 * and the loop also holds the scheduler's handles (and the host's).
 */
#include "sl_runtime.h"
#include "../lib/sl_lua.h"

#include <luv/luv.h>
#include <luv/lhandle.h>

static int sl_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg && !luaL_callmeta(L, 1, "__tostring")) lua_pushliteral(L, "(error object)");
  else if (!msg) msg = lua_tostring(L, -1);
  luaL_traceback(L, L, msg ? msg : lua_tostring(L, -1), 1);
  return 1;
}

static sl_runtime *sl_rt_of(lua_State *L) {
  return (sl_runtime *)sl_getsched(L)->data;
}

/* luv's callback runner: pcall with a traceback, report on error.
 * Once sl_close has closed the scheduler, callbacks of requests still
 * completing are dropped: their tasks are gone and Lua is about to be. */
static int sl_luv_pcall(lua_State *L, int nargs, int nresults, int flags) {
  int base = lua_gettop(L) - nargs;   /* the function's slot */
  int rc;
  (void)flags;
  if (sl_rt_of(L)->S.closing) {
    lua_settop(L, base - 1);
    return 0;
  }
  lua_pushcfunction(L, sl_traceback);
  lua_insert(L, base);
  rc = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  if (rc) {
    lua_pushfstring(L, "sluice: error in a uv callback: %s", lua_tostring(L, -1));
    sl_report(sl_rt_of(L), lua_tostring(L, -1));
    lua_pop(L, 2);
    return -rc;
  }
  return lua_gettop(L) - base + 1;
}

/* A handle belongs to luv if its data is a luv_handle_t of this state's
 * context; the runtime's own handles live inside the sl_runtime. */
static int sl_is_luv_handle(sl_runtime *rt, uv_handle_t *h) {
  luv_handle_t *d = h->data;
  if ((char *)h >= (char *)rt && (char *)h < (char *)(rt + 1)) return 0;
  return d && d->ctx == luv_context(rt->L);
}

typedef struct { sl_runtime *rt; lua_State *L; } sl_walk_ctx;

/* Collects handles first: calling Lua inside uv_walk could close them. */
static void sl_walk_collect(uv_handle_t *h, void *arg) {
  sl_walk_ctx *c = arg;
  lua_State *L = c->L;
  if (!sl_is_luv_handle(c->rt, h)) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ((luv_handle_t *)h->data)->ref);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
}

/* uv.walk(fn): fn(handle) for every luv handle on the loop. */
static int sl_uv_walk(lua_State *L) {
  sl_walk_ctx c;
  int i, n;
  c.rt = sl_rt_of(L);
  c.L = L;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_newtable(L);
  uv_walk(c.rt->loop, sl_walk_collect, &c);
  n = (int)lua_objlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_pushvalue(L, 1);
    lua_rawgeti(L, -2, i);
    lua_call(L, 1, 0);
  }
  return 0;
}

int sl_open_uv(sl_runtime *rt) {
  lua_State *L = rt->L;
  luv_set_loop(L, rt->loop);
  luv_set_callback(L, sl_luv_pcall);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  luaopen_luv(L);
  lua_pushcfunction(L, sl_uv_walk);
  lua_setfield(L, -2, "walk");
  lua_setfield(L, -2, "luv");
  lua_pop(L, 1);
  return 0;
}
