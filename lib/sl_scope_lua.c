/*
 * sl_scope_lua.c - the Lua face of scopes (structured concurrency).
 *
 * sluice.scope() in lua/sluice/init.lua creates a scope, spawns the body
 * as its first child, then parks the calling task in scope_wait until
 * every child has finished.  The C side (sl_sched.c, sl_resume.c) records
 * the first failure and cancels the siblings; cancelling the waiting
 * owner cancels the scope but keeps the owner parked until the children
 * have unwound, so a scope never returns while a child still runs.
 */
#include "sl_lua.h"

#include <string.h>

/* Compares the metatable by address, which is cheaper than
 * luaL_testudata's lookup by name on every spawn. */
static sl_scope *sl_checkscope(lua_State *L, int idx, const char *fn) {
  sl_scope *s = lua_touserdata(L, idx);
  int ok = s && lua_getmetatable(L, idx);
  if (ok) {
    ok = lua_topointer(L, -1) == sl_getsched(L)->scope_mt;
    lua_pop(L, 1);
  }
  if (!ok) sl_raise(L, "invalid", "%s: expected a scope (got %s)", fn, luaL_typename(L, idx));
  return s;
}

static int l_scope_new(lua_State *L) {
  sl_scope *s = lua_newuserdata(L, sizeof *s);
  sl_scope_init(s, sl_getsched(L), 0);
  luaL_getmetatable(L, SL_SCOPE_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int l_scope_spawn(lua_State *L) {
  sl_scope *s = sl_checkscope(L, 1, "scope:spawn");
  if (!lua_isfunction(L, 2))
    return sl_raise(L, "invalid", "scope:spawn: fn must be a function (got %s)", luaL_typename(L, 2));
  if (s->closed) return sl_raise(L, "closed", "scope:spawn: the scope is closed");
  sl_spawn(L, s->sched, s, 2, lua_gettop(L) - 2);
  return 1;
}

/* The owner was cancelled: cancel the children, keep waiting for them. */
static int sl_scope_unwait(sl_task *t, int why) {
  sl_scope *s = t->wait.obj;
  if (why != SL_WAKE_CANCEL) return 1;
  sl_scope_cancel(s);
  return 0;
}

static int l_scope_wait(lua_State *L) {
  sl_scope *s = sl_checkscope(L, 1, "sluice.scope");
  sl_task *t = sl_running(L, "sluice.scope");
  if (sl_task_cancel_due(t)) sl_scope_cancel(s);
  if (s->nlive == 0) {
    lua_pushinteger(L, SL_WAKE_OK);
    return 1;
  }
  s->owner = t;
  sl_task_park(t, "scope", s, sl_scope_unwait);
  t->wait_kind = SL_WAIT_SCOPE;
  lua_pushlightuserdata(L, SL_PARK);
  return lua_yield(L, 1);
}

static int l_scope_cancel(lua_State *L) {
  sl_scope *s = sl_checkscope(L, 1, "scope:cancel");
  sl_scope_cancel(s);
  return 0;
}

static int l_scope_arm(lua_State *L) {
  sl_scope *s = sl_checkscope(L, 1, "sluice.scope");
  if (sl_scope_arm(s, luaL_checknumber(L, 2))) return luaL_error(L, "sluice.scope: out of memory");
  return 0;
}

/* core.scope_close(scope) -> failed task or nil, timed_out, cancelled */
static int l_scope_close(lua_State *L) {
  sl_scope *s = sl_checkscope(L, 1, "sluice.scope");
  if (s->closed) return 0;
  s->closed = 1;
  sl_heap_remove(&s->sched->timers, &s->deadline);
  if (s->failed) lua_rawgeti(L, LUA_REGISTRYINDEX, s->failed_ref);
  else lua_pushnil(L);
  luaL_unref(L, LUA_REGISTRYINDEX, s->failed_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
  s->failed_ref = s->ref = LUA_NOREF;
  s->failed = NULL;
  lua_pushboolean(L, s->timed_out);
  lua_pushboolean(L, s->cancelled);
  return 3;
}

/* core.deadline() -> the earliest deadline (on sluice.now()'s clock) of
 * the scopes the running task is nested in, or nil.  Each scope's body
 * runs while its owner is parked in scope_wait, so the chain of owners
 * leads from the task's scope out to the root. */
static int l_deadline(lua_State *L) {
  sl_sched *S = sl_getsched(L);
  sl_task *t = S ? S->current : NULL;
  double best = -1;
  int hops = 0;
  while (t && t->scope && !t->scope->root && hops++ < 10000) {
    sl_scope *s = t->scope;
    if (sl_timer_armed(&s->deadline) && (best < 0 || s->deadline.deadline < best))
      best = s->deadline.deadline;
    t = s->owner;
  }
  if (best < 0) return 0;
  lua_pushnumber(L, best);
  return 1;
}

static int l_scope_index(lua_State *L) {
  sl_scope *s = lua_touserdata(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && !strcmp(k, "cancelled")) lua_pushboolean(L, s->cancelled);
  else if (k && !strcmp(k, "closed")) lua_pushboolean(L, s->closed);
  else if (k && !strcmp(k, "count")) lua_pushinteger(L, s->nlive);
  else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
  }
  return 1;
}

static const luaL_Reg sl_scope_funcs[] = {
  {"scope_new", l_scope_new}, {"scope_spawn", l_scope_spawn},
  {"scope_wait", l_scope_wait}, {"scope_cancel", l_scope_cancel},
  {"scope_arm", l_scope_arm}, {"scope_close", l_scope_close},
  {"deadline", l_deadline},
  {NULL, NULL}
};

/* Adds the scope functions, core.scope_methods (the methods table),
 * core.scope_mt and core.scope_field(s, k) (a field or, failing that, a
 * method) to the table on top.  The module makes the metatable's __index
 * a Lua function that looks methods up first: the JIT compiles that into
 * the caller's trace, where a C __index is a call out of it on every
 * scope:spawn. */
int sl_open_scope(lua_State *L) {
  luaL_register(L, NULL, sl_scope_funcs);
  lua_newtable(L);
  luaL_newmetatable(L, SL_SCOPE_MT);
  lua_pushvalue(L, -1);
  sl_getsched(L)->scope_mt = lua_topointer(L, -1);
  sl_getsched(L)->ref_scope_mt = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_scope_index, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -5, "scope_field");
  lua_setfield(L, -2, "__index");
  lua_setfield(L, -3, "scope_mt");
  lua_setfield(L, -2, "scope_methods");
  return 0;
}
