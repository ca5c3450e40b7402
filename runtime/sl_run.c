/*
 * sl_run.c - running a runtime to the end: deadlock detection, the
 * report of failures nobody observed, and shutdown.
 */
#include "sl_runtime.h"
#include "../lib/sl_lua.h"
#include "../lib/sl_prim.h"

#include <stdlib.h>
#include <string.h>

/* Pushes tostring(task). */
static void sl_pushtaskname(lua_State *L, sl_task *t) {
  sl_pushtask(L, t);
  if (!luaL_callmeta(L, -1, "__tostring")) lua_pushliteral(L, "task");
  lua_remove(L, -2);
}

/* Cuts the runtime's own frames (the task entry's xpcall, the command
 * line's driver chunk) off the bottom of the traceback on top of L. */
static void sl_trim_traceback(lua_State *L) {
  const char *tb = lua_tostring(L, -1);
  const char *cut = strstr(tb, "\n\t[sluice]:");
  const char *x = strstr(tb, "\n\t[builtin#");   /* the task's base xpcall */
  if (!cut || (x && x < cut)) cut = x;
  if (!cut) return;
  lua_pushlstring(L, tb, (size_t)(cut - tb));
  lua_remove(L, -2);
}

/* Appends " held by task #2 (waiting) x1, ..." for a primitive: who would
 * have to release it (a long list is cut short). */
static void sl_describe_holders(lua_State *L, sl_prim *p, luaL_Buffer *b) {
  sl_queue *q;
  int n = 0;
  if (sl_queue_empty(&p->holders)) {
    luaL_addstring(b, " (no holder)");
    return;
  }
  sl_queue_foreach(q, &p->holders) {
    sl_hold *h = sl_queue_data(q, sl_hold, in_prim);
    if (n == 8) {
      luaL_addstring(b, ", ...");
      break;
    }
    luaL_addstring(b, n++ ? ", " : " held by ");
    sl_pushtaskname(L, h->task);
    luaL_addvalue(b);
    lua_pushfstring(L, " x%f", h->count);
    luaL_addvalue(b);
  }
}

/* Appends one line per parked task with what it waits on and where. */
static void sl_describe_waiter(lua_State *L, sl_task *t, luaL_Buffer *b) {
  lua_pushliteral(L, "\n  ");
  luaL_addvalue(b);
  sl_pushtaskname(L, t);
  luaL_addvalue(b);
  lua_pushfstring(L, " waiting on %s", t->wait.what);
  luaL_addvalue(b);
  if (t->wait.obj && t->wait_kind == SL_WAIT_TASK) {
    lua_pushliteral(L, " ");
    luaL_addvalue(b);
    sl_pushtaskname(L, (sl_task *)t->wait.obj);
    luaL_addvalue(b);
  } else if (t->wait.obj && t->wait_kind == SL_WAIT_PRIM) {
    sl_describe_holders(L, (sl_prim *)t->wait.obj, b);
  }
  luaL_traceback(L, t->co, NULL, 0);
  sl_trim_traceback(L);
  lua_pushfstring(L, "\n  %s", lua_tostring(L, -1));
  lua_remove(L, -2);
  luaL_addvalue(b);
}

/* Nothing can run again but tasks are parked: report them all. */
static void sl_report_deadlock(sl_runtime *rt) {
  lua_State *L = rt->L;
  luaL_Buffer b;
  int i, n;
  sl_task **v = sl_sched_list(&rt->S, &n);
  lua_checkstack(L, 16);
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "sluice: deadlock: %d task%s waiting and nothing can wake %s:",
                  (int)rt->S.nwaiting, rt->S.nwaiting == 1 ? " is" : "s are",
                  rt->S.nwaiting == 1 ? "it" : "them");
  luaL_addvalue(&b);
  for (i = 0; i < n; i++)
    if (v[i]->status == SL_WAITING) sl_describe_waiter(L, v[i], &b);
  free(v);
  luaL_pushresult(&b);
  sl_report(rt, lua_tostring(L, -1));
  lua_pop(L, 1);
  rt->status = 2;
}

/* Failed root tasks still reachable but never awaited. */
static void sl_report_unobserved(sl_runtime *rt) {
  lua_State *L = rt->L;
  sl_sched *S = &rt->S;
  lua_getfield(L, LUA_REGISTRYINDEX, SL_UNOBSERVED);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    sl_task *t = sl_totask(L, -2);
    lua_pop(L, 1);
    if (t && !t->observed) {
      t->observed = 1;
      lua_pushvalue(L, -1);
      S->on_unhandled(S, t, L);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

int sl_run(sl_runtime *rt) {
  for (;;) {
    uv_run(rt->loop, UV_RUN_DEFAULT);
    if (rt->S.nwaiting == 0 || rt->deadlocks++) break;
    sl_report_deadlock(rt);
    sl_cancel_all(rt);   /* let the parked tasks unwind */
  }
  lua_gc(rt->L, LUA_GCCOLLECT, 0);
  sl_report_unobserved(rt);
  return rt->status;
}

/* Cancels every task and lets them unwind: their cleanups run at the
 * next passes (bounded, in case a cleanup keeps blocking). */
static void sl_unwind(sl_runtime *rt) {
  int i;
  sl_cancel_all(rt);
  for (i = 0; i < 100 && !sl_queue_empty(&rt->S.ready); i++)
    uv_run(rt->loop, UV_RUN_NOWAIT);
}

static void sl_close_luv_handles(sl_runtime *rt) {
  (void)luaL_dostring(rt->L, "local uv = package.loaded.luv\n"
                      "if uv then uv.walk(function(h) if not h:is_closing() then h:close() end end) end");
  lua_settop(rt->L, 0);
}

/* Requests in flight (file system, DNS, work) are Lua userdata that a
 * thread of libuv's pool may still write to: they must complete before
 * lua_close.  libuv cannot cancel a request that has started, so this
 * waits.  Their callbacks are dropped by then (sl_uv.c), so a callback
 * that would issue another request cannot keep this going. */
static void sl_drain_requests(sl_runtime *rt) {
  while (rt->loop->active_reqs.count > 0) uv_run(rt->loop, UV_RUN_ONCE);
}

void sl_close(sl_runtime *rt) {
  lua_State *L = rt->L;
  if (L) {
    sl_repl_close(rt);
    sl_unwind(rt);
    sl_close_luv_handles(rt);
    uv_run(rt->loop, UV_RUN_NOWAIT);   /* their close callbacks */
  }
  sl_sched_close(&rt->S);   /* from here on no callback runs Lua code */
  sl_drain_requests(rt);
  sl_remove_sigint(rt);
  uv_run(rt->loop, UV_RUN_NOWAIT);
  if (L) lua_close(L);
  sl_forget_sched();
  if (rt->owns_loop) {
    uv_run(rt->loop, UV_RUN_DEFAULT);
    uv_loop_close(rt->loop);
  }
  free(rt);
}
