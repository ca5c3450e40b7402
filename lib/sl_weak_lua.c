/*
 * sl_weak_lua.c - weak timers for Lua: core.weak_timer(fn, ...) returns a
 * timer that, armed with t:arm(deadline), spawns fn(...) as a task in the
 * root scope when the deadline comes.  It is on the scheduler's weak heap
 * (sl_sched_arm_weak): it never keeps the process alive, and under the
 * virtual clock it fires only when other timers carry time past it.
 *
 * For housekeeping that must happen on time if the program is still
 * running, and not at all if it has nothing else to do: a pool evicting
 * idle resources.  The timer's userdata anchors itself (a registry
 * reference) only while armed, so an unarmed timer dies with its owner.
 */
#include "sl_lua.h"

#define SL_WEAK_MT "sluice.weak_timer"

typedef struct sl_weak {
  sl_timer tm;            /* first: the callback gets the timer */
  sl_sched *S;
  int self_ref;           /* registry: the userdata, while armed */
} sl_weak;

static void sl_weak_disarm(lua_State *L, sl_weak *w) {
  if (sl_timer_armed(&w->tm) && !w->S->closing) sl_heap_remove(&w->S->weak, &w->tm);
  luaL_unref(L, LUA_REGISTRYINDEX, w->self_ref);
  w->self_ref = LUA_NOREF;
}

/* The deadline came: spawn fn(...) (kept in the userdata's env). */
static void sl_weak_fire(sl_timer *tm) {
  sl_weak *w = (sl_weak *)tm;
  sl_sched *S = w->S;
  lua_State *L = S->L;
  int top = lua_gettop(L), n, i;
  if (w->self_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->self_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, w->self_ref);
  w->self_ref = LUA_NOREF;
  lua_getfenv(L, -1);
  n = (int)lua_objlen(L, -1);
  for (i = 1; i <= n; i++) lua_rawgeti(L, top + 2, i);
  sl_spawn(L, S, &S->root, top + 3, n - 1);
  lua_settop(L, top);
}

static sl_weak *sl_checkweak(lua_State *L, const char *fn) {
  sl_weak *w = luaL_testudata(L, 1, SL_WEAK_MT);
  if (!w) sl_raise(L, "invalid", "%s: expected a weak timer (got %s)", fn, luaL_typename(L, 1));
  return w;
}

/* t:arm(deadline): fires at that time on sluice.now()'s clock (re-arms). */
static int l_weak_arm(lua_State *L) {
  sl_weak *w = sl_checkweak(L, "weak_timer:arm");
  double at = luaL_checknumber(L, 2);
  if (sl_sched_arm_weak(w->S, &w->tm, at)) return luaL_error(L, "weak_timer:arm: out of memory");
  if (w->self_ref == LUA_NOREF) {
    lua_pushvalue(L, 1);
    w->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

static int l_weak_stop(lua_State *L) {
  sl_weak_disarm(L, sl_checkweak(L, "weak_timer:stop"));
  return 0;
}

/* t:deadline() -> when it will fire, or nil when not armed. */
static int l_weak_deadline(lua_State *L) {
  sl_weak *w = sl_checkweak(L, "weak_timer:deadline");
  if (!sl_timer_armed(&w->tm)) return 0;
  lua_pushnumber(L, w->tm.deadline);
  return 1;
}

static int l_weak_gc(lua_State *L) {
  sl_weak *w = lua_touserdata(L, 1);
  if (sl_timer_armed(&w->tm) && !w->S->closing) sl_heap_remove(&w->S->weak, &w->tm);
  return 0;
}

/* core.weak_timer(fn, ...) -> timer, not armed. */
static int l_weak_new(lua_State *L) {
  int n = lua_gettop(L), i;
  sl_weak *w;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  w = lua_newuserdata(L, sizeof *w);
  w->tm.idx = 0;
  w->tm.cb = sl_weak_fire;
  w->S = sl_getsched(L);
  w->self_ref = LUA_NOREF;
  luaL_getmetatable(L, SL_WEAK_MT);
  lua_setmetatable(L, -2);
  lua_createtable(L, n, 0);
  for (i = 1; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i);
  }
  lua_setfenv(L, -2);
  return 1;
}

int sl_open_weak(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"arm", l_weak_arm}, {"stop", l_weak_stop}, {"deadline", l_weak_deadline}, {NULL, NULL}
  };
  luaL_newmetatable(L, SL_WEAK_MT);
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_weak_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_weak_new);
  lua_setfield(L, -2, "weak_timer");
  return 0;
}
