/*
 * sl_task_lua.c - the Lua face of tasks: spawn, await, cancel, sleep,
 * yield, status.  Functions that block link the running task into a wait
 * queue and yield SL_PARK from C; what they resume with is the wake code
 * (SL_WAKE_*), which the Lua module turns into results or errors.
 */
#include "sl_lua.h"

#include <stdarg.h>
#include <string.h>

static const char *const sl_status_names[] = {
  "ready", "running", "waiting", "done", "failed", "cancelled"
};

/* A lightuserdata key: hashing a pointer is cheaper than interning a
 * string key on every call. */
static char sl_sched_key;

/* The last lookup, keyed by the state's allocator data (one per Lua
 * state, shared by its coroutines): most calls come from the same state
 * as the one before, and a registry lookup hashes a key every time.
 * sl_setsched clears it, and so does the runtime after lua_close (a new
 * state could get the same allocator data). */
static __thread void *sl_cached_ud;
static __thread sl_sched *sl_cached_sched;

sl_sched *sl_getsched(lua_State *L) {
  sl_sched *S;
  void *ud;
  lua_getallocf(L, &ud);
  if (ud && ud == sl_cached_ud) return sl_cached_sched;
  lua_pushlightuserdata(L, &sl_sched_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  S = lua_touserdata(L, -1);
  lua_pop(L, 1);
  sl_cached_ud = ud;
  sl_cached_sched = S;
  return S;
}

void sl_forget_sched(void) {
  sl_cached_ud = NULL;
  sl_cached_sched = NULL;
}

/* Makes S the active scheduler of L; a new one inherits the registry
 * references of the one it replaces (nested runs). */
void sl_setsched(lua_State *L, sl_sched *S) {
  sl_sched *old = sl_getsched(L);
  if (old && S && S->ref_task_mt == LUA_NOREF) {
    S->ref_task_mt = old->ref_task_mt;
    S->ref_failed_mt = old->ref_failed_mt;
    S->ref_noenv = old->ref_noenv;
    S->ref_unobserved = old->ref_unobserved;
    S->ref_entry = old->ref_entry;
    S->ref_xpcall = old->ref_xpcall;
    S->ref_scope_mt = old->ref_scope_mt;
    S->task_mt = old->task_mt;
    S->failed_mt = old->failed_mt;
    S->scope_mt = old->scope_mt;
  }
  lua_pushlightuserdata(L, &sl_sched_key);
  lua_pushlightuserdata(L, S);
  lua_rawset(L, LUA_REGISTRYINDEX);
  sl_forget_sched();
}

int sl_raise(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  lua_getfield(L, LUA_REGISTRYINDEX, SL_ERRFN);
  lua_pushstring(L, kind);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  if (lua_isfunction(L, -3)) {
    lua_pushinteger(L, 2);
    lua_call(L, 3, 1);
  }
  return lua_error(L);
}

sl_task *sl_totask(lua_State *L, int idx) {
  sl_task *t = lua_touserdata(L, idx);
  sl_sched *S;
  const void *mt;
  if (!t || !lua_getmetatable(L, idx)) return NULL;
  S = sl_getsched(L);
  mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  return mt && (mt == S->task_mt || mt == S->failed_mt) ? t : NULL;
}

sl_task *sl_checktask(lua_State *L, int idx, const char *fn) {
  sl_task *t = sl_totask(L, idx);
  if (!t) sl_raise(L, "invalid", "%s: expected a task (got %s)", fn, luaL_typename(L, idx));
  return t;
}

void sl_pushtask(lua_State *L, sl_task *t) {
  if (t->ref < 1) {
    lua_pushnil(L);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->sched->ref_anchors);
  lua_rawgeti(L, -1, 2 * t->ref - 1);
  lua_remove(L, -2);
}

sl_task *sl_running(lua_State *L, const char *fn) {
  sl_sched *S = sl_getsched(L);
  if (!S || !S->current) sl_raise(L, "invalid", "%s: must be called from a task", fn);
  return S->current;
}

void sl_task_env(lua_State *L, int idx, int create) {
  lua_getfenv(L, idx);
  if (!create) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, sl_getsched(L)->ref_noenv);
  if (lua_rawequal(L, -1, -2)) {
    lua_pop(L, 2);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfenv(L, idx < 0 ? idx - 2 : idx);
  } else {
    lua_pop(L, 1);
  }
}

/* Pushes a coroutine for a new task: one that finished an earlier task
 * if the pool has one (saving its allocation and the collector's work),
 * else a fresh one. */
static lua_State *sl_coroutine(lua_State *L, sl_sched *S) {
  lua_State *co;
  if (S->npool == 0) return lua_newthread(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->ref_pool);
  lua_rawgeti(L, -1, S->npool);
  lua_pushnil(L);
  lua_rawseti(L, -3, S->npool--);
  lua_remove(L, -2);
  co = lua_tothread(L, -1);
  lua_settop(co, 0);
  return co;
}

/* Looks the module's entry handler up once (it may not exist yet while
 * the module loads: bodies then run bare). */
static int sl_entry_refs(lua_State *L, sl_sched *S) {
  if (S->ref_entry == LUA_NOREF) {
    lua_getfield(L, LUA_REGISTRYINDEX, SL_ENTRY);
    S->ref_entry = lua_isfunction(L, -1) ? luaL_ref(L, LUA_REGISTRYINDEX) : (lua_pop(L, 1), LUA_NOREF);
    lua_getfield(L, LUA_REGISTRYINDEX, SL_XPCALL);
    S->ref_xpcall = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return S->ref_entry != LUA_NOREF;
}

/* Pushes the task's body onto co: the function at fn with the nargs
 * values from fn + 1.  Wrapped, the coroutine's function is xpcall
 * itself, called as xpcall(fn, handler, ...): the module's handler
 * records the traceback where an error happens, before unwinding, and no
 * extra Lua frame deepens the stack (a deeper one makes every parked
 * coroutine grow its stack).  Returns what the first resume passes. */
static int sl_load_body(lua_State *L, sl_sched *S, lua_State *co, int fn, int nargs, int wrapped) {
  int i;
  if (wrapped) lua_rawgeti(L, LUA_REGISTRYINDEX, S->ref_xpcall);
  lua_pushvalue(L, fn);
  if (wrapped) lua_rawgeti(L, LUA_REGISTRYINDEX, S->ref_entry);
  for (i = 1; i <= nargs; i++) lua_pushvalue(L, fn + i);
  if (nargs > LUA_MINSTACK - 3) lua_checkstack(co, nargs + 3);   /* xmove does not grow it */
  lua_xmove(L, co, nargs + 1 + 2 * wrapped);
  return nargs + 2 * wrapped;
}

/* A task gets its coroutine when it first runs (sl_task_load): until
 * then its anchor slot holds its function where the coroutine goes
 * later, or, spawned with arguments, a table of the function and them
 * (t->nargs says how many).  A spawned task that has not run costs no
 * coroutine, and one started after others have finished reuses theirs:
 * spawning many tasks that each finish at once allocates one coroutine,
 * not one each. */
sl_task *sl_spawn(lua_State *L, sl_sched *S, sl_scope *scope, int idx, int nargs) {
  sl_task *t;
  int top, i;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  t = lua_newuserdata(L, sizeof *t);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->ref_task_mt);
  lua_setmetatable(L, -2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->ref_noenv);
  lua_setfenv(L, -2);
  sl_task_init(t, S, scope);
  t->wrapped = (uint8_t)sl_entry_refs(L, S);
  top = lua_gettop(L);
  if (nargs == 0) {
    t->ref = sl_anchor(L, S, top, idx);
  } else {
    lua_createtable(L, nargs + 1, 0);
    for (i = 0; i <= nargs; i++) {
      lua_pushvalue(L, idx + i);
      lua_rawseti(L, -2, i + 1);
    }
    t->nargs = nargs;
    t->ref = sl_anchor(L, S, top, top + 1);
    lua_pop(L, 1);   /* the table; the task's userdata stays */
  }
  sl_task_make_ready(t, SL_WAKE_OK);
  return t;
}

void sl_task_load(sl_sched *S, sl_task *t) {
  lua_State *L = S->L, *co;
  int tab, body, n = t->nargs, i;
  lua_checkstack(L, n + 8);
  tab = sl_anchor_table(L, S);
  co = sl_coroutine(L, S);
  lua_rawgeti(L, tab, 2 * t->ref);
  body = lua_gettop(L);
  if (n > 0) {   /* {fn, args...}: unpack it above itself */
    for (i = 1; i <= n + 1; i++) lua_rawgeti(L, body, i);
    body++;
  }
  t->nargs = sl_load_body(L, S, co, body, n, t->wrapped);
  lua_settop(L, tab + 1);            /* the coroutine */
  lua_rawseti(L, tab, 2 * t->ref);   /* takes the body's place */
  lua_pop(L, 1);
  t->co = co;
}

static int sl_park_yield(lua_State *L) {
  lua_pushlightuserdata(L, SL_PARK);
  return lua_yield(L, 1);
}

/* If the running task has a pending cancellation, returns 1 with the
 * cancel wake code pushed instead of parking. */
static int sl_cancel_pending(lua_State *L, sl_task *t) {
  if (!t->cancelled || t->shield) return 0;
  lua_pushinteger(L, SL_WAKE_CANCEL);
  return 1;
}

static int sl_unwait_link(sl_task *t, int why) {
  (void)why;
  sl_queue_remove(&t->wait.link);
  return 1;
}

static int sl_unwait_none(sl_task *t, int why) {
  (void)t; (void)why;
  return 1;
}

/* core.spawn(fn, ...) into the running task's scope (or the root scope). */
static int l_spawn(lua_State *L) {
  sl_sched *S = sl_getsched(L);
  sl_scope *scope = S->current ? S->current->scope : &S->root;
  if (!lua_isfunction(L, 1))
    return sl_raise(L, "invalid", "sluice.spawn: fn must be a function (got %s)", luaL_typename(L, 1));
  if (scope->closed) scope = &S->root;
  sl_spawn(L, S, scope, 1, lua_gettop(L) - 1);
  return 1;
}

static int l_current(lua_State *L) {
  sl_sched *S = sl_getsched(L);
  if (!S->current) return 0;
  sl_pushtask(L, S->current);
  return 1;
}

/* core.sleep(seconds): seconds <= 0 reschedules at the end of the queue. */
static int l_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  sl_task *t = sl_running(L, "sluice.sleep");
  if (sl_cancel_pending(L, t)) return 1;
  if (s <= 0) {
    sl_task_make_ready(t, SL_WAKE_OK);
  } else {
    if (sl_task_arm(t, s)) return luaL_error(L, "sluice.sleep: out of memory");
    sl_task_park(t, "sleep", NULL, sl_unwait_none);
  }
  return sl_park_yield(L);
}

static int l_yield(lua_State *L) {
  sl_task *t = sl_running(L, "sluice.yield");
  if (sl_cancel_pending(L, t)) return 1;
  sl_task_make_ready(t, SL_WAKE_OK);
  return sl_park_yield(L);
}

/* core.await(task [, timeout]) -> wake code; 0 at once if already settled. */
static int l_await(lua_State *L) {
  sl_task *target = sl_checktask(L, 1, "task:await");
  sl_task *t = sl_running(L, "task:await");
  double timeout = luaL_optnumber(L, 2, -1);
  if (target->status >= SL_DONE) {
    lua_pushinteger(L, SL_WAKE_OK);
    return 1;
  }
  if (target == t)
    return sl_raise(L, "deadlock", "task:await: a task cannot await itself");
  if (sl_cancel_pending(L, t)) return 1;
  if (timeout >= 0 && sl_task_arm(t, timeout)) return luaL_error(L, "task:await: out of memory");
  sl_queue_insert_tail(&target->awaiters, &t->wait.link);
  sl_task_park(t, "await", target, sl_unwait_link);
  t->wait_kind = SL_WAIT_TASK;
  return sl_park_yield(L);
}

/* core.result(task) -> true, results... | false, err.  Marks it observed. */
static int l_result(lua_State *L) {
  sl_task *t = sl_checktask(L, 1, "task:result");
  int n, i;
  if (t->status < SL_DONE) return 0;
  if (!t->observed && t->status == SL_FAILED) {  /* only failures are listed */
    lua_rawgeti(L, LUA_REGISTRYINDEX, sl_getsched(L)->ref_unobserved);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  t->observed = 1;
  sl_task_env(L, 1, 0);
  if (t->status != SL_DONE) {
    lua_pushboolean(L, 0);
    lua_getfield(L, -2, "err");
    return 2;
  }
  lua_getfield(L, -1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n + 1, "too many results");
  lua_pushboolean(L, 1);
  for (i = 1; i <= n; i++) lua_rawgeti(L, -1 - i, i);
  return n + 1;
}

/* core.error(task) -> err, traceback (nil if it did not fail). */
static int l_error(lua_State *L) {
  sl_checktask(L, 1, "task:error");
  sl_task_push_error(L, 1);
  return 2;
}

void sl_task_push_error(lua_State *L, int idx) {
  sl_task_env(L, idx, 0);
  lua_getfield(L, -1, "err");
  lua_getfield(L, -2, "tb");
  lua_remove(L, -3);
}

static int l_cancel(lua_State *L) {
  sl_task *t = sl_checktask(L, 1, "task:cancel");
  if (t->status >= SL_DONE || t->cancelled) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!lua_isnoneornil(L, 2)) {
    sl_task_env(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "reason");
    lua_pop(L, 1);
  }
  lua_pushboolean(L, sl_task_cancel(t));
  return 1;
}

/* core.park(what): parks the running task until core.wake; for callbacks. */
static int l_park(lua_State *L) {
  sl_task *t = sl_running(L, luaL_optstring(L, 2, "sluice.await"));
  double timeout = luaL_optnumber(L, 3, -1);
  if (sl_cancel_pending(L, t)) return 1;
  if (timeout >= 0 && sl_task_arm(t, timeout)) return luaL_error(L, "out of memory");
  sl_task_park(t, luaL_optstring(L, 1, "callback"), NULL, sl_unwait_none);
  return sl_park_yield(L);
}

static int l_wake(lua_State *L) {
  sl_task *t = sl_checktask(L, 1, "wake");
  int ok = t->status == SL_WAITING && t->wait.unwait == sl_unwait_none;
  if (ok) sl_task_wake(t, (int)luaL_optinteger(L, 2, SL_WAKE_OK));
  lua_pushboolean(L, ok);
  return 1;
}

/* core.shield(delta) -> true if a cancellation is pending and unshielded. */
static int l_shield(lua_State *L) {
  sl_task *t = sl_running(L, "sluice.shield");
  t->shield = (uint16_t)(t->shield + luaL_optinteger(L, 1, 0));
  lua_pushboolean(L, sl_task_cancel_due(t));
  return 1;
}

/* core.reason(task) -> the reason given to task:cancel, if any. */
static int l_reason(lua_State *L) {
  sl_checktask(L, 1, "task:cancel");
  sl_task_env(L, 1, 0);
  lua_getfield(L, -1, "reason");
  return 1;
}

/* core.at_top(): is the running coroutine the task's own (not a user
 * coroutine inside it)?  A bare coroutine.yield there is an error. */
static int l_at_top(lua_State *L) {
  sl_sched *S = sl_getsched(L);
  lua_pushboolean(L, S && S->current && S->current->co == L);
  return 1;
}

/* core.stats() -> counts of the scheduler, for tests and reports. */
static int l_stats(lua_State *L) {
  sl_sched *S = sl_getsched(L);
  sl_queue *q;
  int tasks = (int)S->ntasks, ready = 0;
  double lag[3];
  sl_queue_foreach(q, &S->ready) ready++;
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, tasks);
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, ready);
  lua_setfield(L, -2, "ready");
  lua_pushinteger(L, S->nwaiting);
  lua_setfield(L, -2, "waiting");
  lua_pushinteger(L, S->timers.len);
  lua_setfield(L, -2, "timers");
  lua_pushinteger(L, S->root.nlive);
  lua_setfield(L, -2, "root_tasks");
  lua_pushboolean(L, S->virtual_clock);
  lua_setfield(L, -2, "virtual_clock");
  sl_sched_lag(S, lag);
  lua_createtable(L, 0, 4);               /* loop_lag, seconds */
  lua_pushnumber(L, lag[0]);
  lua_setfield(L, -2, "p50");
  lua_pushnumber(L, lag[1]);
  lua_setfield(L, -2, "p99");
  lua_pushnumber(L, lag[2]);
  lua_setfield(L, -2, "max");
  lua_pushnumber(L, (double)S->nlag);
  lua_setfield(L, -2, "count");
  lua_setfield(L, -2, "loop_lag");
  return 1;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, sl_now(sl_getsched(L)));
  return 1;
}

/* task.field: status, id, name, cancelled; methods from the upvalue table. */
static int l_task_index(lua_State *L) {
  sl_task *t = lua_touserdata(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && !strcmp(k, "status")) lua_pushstring(L, sl_status_names[t->status]);
  else if (k && !strcmp(k, "id")) lua_pushinteger(L, t->id);
  else if (k && !strcmp(k, "cancelled")) lua_pushboolean(L, t->cancelled);
  else if (k && !strcmp(k, "name")) {
    sl_task_env(L, 1, 0);
    lua_getfield(L, -1, "name");
  } else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
  }
  return 1;
}

static int l_task_newindex(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  if (!k || strcmp(k, "name"))
    return sl_raise(L, "invalid", "task: field '%s' is read-only", k ? k : "?");
  if (!lua_isnil(L, 3) && lua_type(L, 3) != LUA_TSTRING)
    return sl_raise(L, "invalid", "task: name must be a string (got %s)", luaL_typename(L, 3));
  sl_task_env(L, 1, 1);
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "name");
  return 0;
}

static int l_task_tostring(lua_State *L) {
  sl_task *t = lua_touserdata(L, 1);
  sl_task_env(L, 1, 0);
  lua_getfield(L, -1, "name");
  if (lua_isstring(L, -1))
    lua_pushfstring(L, "task #%d (%s, %s)", (int)t->id, lua_tostring(L, -1), sl_status_names[t->status]);
  else
    lua_pushfstring(L, "task #%d (%s)", (int)t->id, sl_status_names[t->status]);
  return 1;
}

/* Finaliser of tasks that failed with nobody awaiting them. */
static int l_task_gc(lua_State *L) {
  sl_task *t = lua_touserdata(L, 1);
  sl_sched *S = sl_getsched(L);
  if (!t->observed && S && S->on_unhandled) {
    t->observed = 1;
    S->on_unhandled(S, t, L);
  }
  return 0;
}

static void sl_task_metatable(lua_State *L, const char *name, int gc) {
  luaL_newmetatable(L, name);
  lua_pushvalue(L, -2);   /* methods */
  lua_pushcclosure(L, l_task_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_task_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, l_task_tostring);
  lua_setfield(L, -2, "__tostring");
  if (gc) {
    lua_pushcfunction(L, l_task_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

static const luaL_Reg sl_core_funcs[] = {
  {"spawn", l_spawn}, {"current", l_current}, {"sleep", l_sleep},
  {"yield", l_yield}, {"await", l_await}, {"result", l_result},
  {"error", l_error}, {"cancel", l_cancel}, {"park", l_park},
  {"wake", l_wake}, {"shield", l_shield}, {"now", l_now},
  {"reason", l_reason}, {"at_top", l_at_top}, {"stats", l_stats},
  {NULL, NULL}
};

/* require "sluice.core": the scheduler's primitives for lua/sluice/init.lua.
 * core.task_methods is the table task objects look methods up in. */
static int sl_keepref(lua_State *L, const char *name) {
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, name);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

int luaopen_sluice_core(lua_State *L) {
  sl_sched *S = sl_getsched(L);
  lua_newtable(L);
  S->ref_noenv = sl_keepref(L, SL_NOENV);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  S->ref_unobserved = sl_keepref(L, SL_UNOBSERVED);
  lua_newtable(L);                        /* core */
  luaL_register(L, NULL, sl_core_funcs);
  lua_newtable(L);                        /* task methods */
  sl_task_metatable(L, SL_TASK_MT, 0);
  sl_task_metatable(L, SL_TASK_MT ".failed", 1);
  luaL_getmetatable(L, SL_TASK_MT);
  S->task_mt = lua_topointer(L, -1);
  S->ref_task_mt = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  S->ref_pool = luaL_ref(L, LUA_REGISTRYINDEX);
  sl_anchor_table(L, S);   /* named for the spec runner's leak check */
  lua_setfield(L, LUA_REGISTRYINDEX, SL_ANCHORS);
  luaL_getmetatable(L, SL_TASK_MT ".failed");
  S->failed_mt = lua_topointer(L, -1);
  S->ref_failed_mt = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "task_methods");
  lua_pushlightuserdata(L, SL_PARK);
  lua_setfield(L, -2, "PARK");
  sl_open_scope(L);
  sl_open_simulate(L);
  sl_open_prim(L);
  sl_open_weak(L);
  return 1;
}
