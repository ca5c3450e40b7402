/*
 * sl_redis_lua.c - the Lua binding of the Redis client (sluice.redis.core):
 * connect, send, wait, take, close and the client's fields.  The client
 * itself, its adapter and its replies are sl_redis.c; lua/sluice/redis.lua
 * builds the public module on these functions.
 */
#include "sl_redis.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sl_redis *sl_redis_check(lua_State *L, const char *fn) {
  sl_redis **box = lua_touserdata(L, 1);
  int ok = 0;
  if (box && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, SL_REDIS_MT);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (!ok) sl_raise(L, "invalid", "%s: expected a redis client (got %s)", fn, luaL_typename(L, 1));
  return *box;
}

/* core.connect(host, port, password, db, connect_timeout, command_timeout)
 * -> client (the running task is parked: the caller yields, then reads
 * core.connected) | nil, kind, message at once | false if cancelled. */
static int l_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  const char *password = luaL_optstring(L, 3, NULL);
  int db = (int)luaL_optinteger(L, 4, 0);
  double ct = luaL_optnumber(L, 5, 0), cmd = luaL_optnumber(L, 6, 0);
  sl_task *t = sl_running(L, "redis.connect");
  sl_redis *r, **box;
  char why[256];
  if (sl_task_cancel_due(t)) return lua_pushboolean(L, 0), 1;
  if (!(r = sl_redis_new(t->sched, host, port, cmd))) return luaL_error(L, "redis.connect: out of memory");
  if (sl_redis_start(r, password, db, ct, why, sizeof why)) {
    lua_pushnil(L);
    lua_pushliteral(L, "redis");
    lua_pushfstring(L, "redis.connect: %s:%d: %s", host, port, why);
    return 3;
  }
  box = lua_newuserdata(L, sizeof *box);
  *box = r;
  luaL_getmetatable(L, SL_REDIS_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  r->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  r->connector = t;
  sl_task_park(t, "redis.connect", r, sl_redis_unwait_connect);
  t->wait.arg = (intptr_t)r;
  sl_redis_activity(r);
  return 1;
}

static const char *const sl_redis_kinds[] = { "redis", "redis", "redis", "closed", "timeout" };

/* core.connected(client) -> true | false, kind, message: how the connect
 * the caller waited for ended. */
static int l_connected(lua_State *L) {
  sl_redis *r = sl_redis_check(L, "redis.connect");
  if (r->fail_kind == SL_RO_REPLY) return lua_pushboolean(L, 1), 1;
  lua_pushboolean(L, 0);
  lua_pushstring(L, sl_redis_kinds[r->fail_kind]);
  lua_pushstring(L, r->err);
  return 3;
}

/* Formats a number argument as Redis reads it (integers without ".0"
 * nor exponent) in place on the stack. */
static void sl_redis_number_arg(lua_State *L, int i) {
  lua_Number x = lua_tonumber(L, i);
  char buf[32];
  int n;
  if (x == floor(x) && fabs(x) < 9.2e18) n = snprintf(buf, sizeof buf, "%lld", (long long)x);
  else if (n = snprintf(buf, sizeof buf, "%.15g", (double)x), strtod(buf, NULL) != x)
    n = snprintf(buf, sizeof buf, "%.17g", (double)x);   /* %.15g unless it loses bits */
  lua_pushlstring(L, buf, (size_t)n);
  lua_replace(L, i);
}

#define SL_REDIS_ARGS 16

/* core.send(client, ...) -> record (the task is parked: the caller
 * yields, then reads core.take) | false if cancelled.  Raises on bad
 * arguments and on a client that is closed or lost. */
static int l_send(lua_State *L) {
  sl_redis *r = sl_redis_check(L, "redis:call");
  int argc = lua_gettop(L) - 1, i;
  const char *sargv[SL_REDIS_ARGS], **argv = sargv;
  size_t slen[SL_REDIS_ARGS], *len = slen;
  sl_task *t;
  sl_redis_call *c;
  if (argc == 0) return sl_raise(L, "invalid", "redis:call: argument 1 must be a string or a number (got no value)");
  for (i = 2; i <= argc + 1; i++) {
    int ty = lua_type(L, i);
    if (ty == LUA_TNUMBER) sl_redis_number_arg(L, i);
    else if (ty != LUA_TSTRING)
      return sl_raise(L, "invalid", "redis:call: argument %d must be a string or a number (got %s)",
                      i - 1, luaL_typename(L, i));
  }
  t = sl_running(L, "redis:call");
  if (r->state == SL_RS_CLOSED) return sl_raise(L, "closed", "redis:call: client is closed");
  if (r->state != SL_RS_READY) return sl_raise(L, "redis", "redis:call: %s", r->err);
  if (sl_task_cancel_due(t)) return lua_pushboolean(L, 0), 1;
  if (argc > SL_REDIS_ARGS) {   /* many arguments (MSET ...): a scratch block */
    argv = lua_newuserdata(L, (size_t)argc * (sizeof *argv + sizeof *len));
    len = (size_t *)(argv + argc);
  }
  for (i = 0; i < argc; i++) argv[i] = lua_tolstring(L, i + 2, &len[i]);
  if (!(c = sl_redis_send(r, argc, argv, len)))
    return sl_raise(L, "redis", "redis:call: could not send the command (%s)", r->ac->c.errstr);
  c->task = t;
  if (r->timeout_ms) {
    uv_update_time(r->S->loop);
    c->deadline = uv_now(r->S->loop) + r->timeout_ms;
  }
  sl_queue_insert_tail(&r->waiting, &c->link);
  r->npending++;
  sl_redis_arm(r);
  sl_task_park(t, "redis:call", r, sl_redis_unwait_call);
  t->wait.arg = (intptr_t)c;
  lua_pushlightuserdata(L, c);
  return 1;
}

/* core.wait() yields to the scheduler; resumes with the wake code. */
static int l_wait(lua_State *L) {
  lua_pushlightuserdata(L, SL_PARK);
  return lua_yield(L, 1);
}

/* core.take(record) -> outcome, value: what a caller woken with "ok"
 * reads; the record is released. */
static int l_take(lua_State *L) {
  sl_redis_call *c = lua_touserdata(L, 1);
  lua_pushinteger(L, c->outcome);
  if (c->ref == LUA_NOREF) {
    lua_pushnil(L);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
    c->ref = LUA_NOREF;
  }
  c->to_read = 0;
  sl_call_free(c);
  return 2;
}

static int l_close(lua_State *L) {
  sl_redis *r = sl_redis_check(L, "redis:close");
  sl_redis_teardown(r, SL_RS_CLOSED);
  return 0;
}

/* core.field(client, key): the fields connected, pending, host, port. */
static int l_field(lua_State *L) {
  sl_redis *r = sl_redis_check(L, "redis client");
  const char *k = lua_tostring(L, 2);
  if (!k) return 0;
  if (!strcmp(k, "connected")) lua_pushboolean(L, r->state == SL_RS_READY);
  else if (!strcmp(k, "pending")) lua_pushinteger(L, (lua_Integer)r->npending);
  else if (!strcmp(k, "host")) lua_pushstring(L, r->host);
  else if (!strcmp(k, "port")) lua_pushinteger(L, r->port);
  else return 0;
  return 1;
}

/* Collected: while open it is anchored, so this is the Lua state
 * closing.  Nothing here may touch Lua or the tasks. */
static int l_gc(lua_State *L) {
  sl_redis **box = lua_touserdata(L, 1), *r = *box;
  if (!r) return 0;
  *box = NULL;
  sl_redis_drop(r);
  return 0;
}

int luaopen_sluice_redis_core(lua_State *L) {
  static const luaL_Reg fns[] = {
    { "connect", l_connect }, { "connected", l_connected }, { "send", l_send },
    { "wait", l_wait }, { "take", l_take }, { "close", l_close },
    { "field", l_field }, { NULL, NULL }
  };
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  luaL_newmetatable(L, SL_REDIS_MT);
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_setfield(L, -2, "client_mt");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
