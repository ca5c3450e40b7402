/*
 * sl_runtime.c - a runtime: the Lua state, luv on the same loop, the
 * scheduler, failure reporting, deadlock detection and shutdown.
 */
#include "sl_runtime.h"
#include "../lib/sl_lua.h"

#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* In sanitizer builds the Lua heap goes through malloc so ASan sees it;
 * otherwise LuaJIT's own allocator is used: it is several times faster
 * than glibc's for the many small objects tasks are made of. */
#ifndef SL_SYSTEM_ALLOC
#define SL_SYSTEM_ALLOC 0
#endif
static void *sl_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud; (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static void sl_default_error(sl_runtime *rt, const char *report, void *ud) {
  (void)rt; (void)ud;
  fprintf(stderr, "%s\n", report);
  fflush(stderr);
}

void sl_report(sl_runtime *rt, const char *text) {
  rt->failures++;
  if (rt->status == 0) rt->status = 1;
  rt->on_error(rt, text, rt->error_ud);
}

/* Reports the task whose userdata is at the top of L, through
 * sluice._report (which follows re-raised errors to their origin). */
static void sl_report_task(sl_runtime *rt, lua_State *L, int is_main) {
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "sluice");
  lua_getfield(L, -1, "_report");
  lua_pushvalue(L, -4);
  lua_pushboolean(L, is_main);
  if (lua_pcall(L, 2, 1, 0) || !lua_isstring(L, -1)) {
    lua_pop(L, 3);
    sl_report(rt, "sluice: a task failed (its report failed too)");
    return;
  }
  lua_pushfstring(L, "sluice: %s", lua_tostring(L, -1));
  sl_report(rt, lua_tostring(L, -1));
  lua_pop(L, 4);
}

static void sl_on_unhandled(sl_sched *S, sl_task *t, lua_State *L) {
  (void)t;
  sl_report_task((sl_runtime *)S->data, L, 0);
}

static void sl_on_report(sl_sched *S, const char *text) {
  sl_report((sl_runtime *)S->data, text);
}

/* A warning (sluice.warn_blocking) goes where errors go, but is no
 * failure: the exit status stays as it is. */
static void sl_on_warn(sl_sched *S, const char *text) {
  sl_runtime *rt = S->data;
  rt->on_error(rt, text, rt->error_ud);
}

static void sl_on_main_done(sl_sched *S, sl_task *t, lua_State *L) {
  sl_runtime *rt = (sl_runtime *)S->data;
  if (t->status == SL_FAILED) {
    sl_report_task(rt, L, 1);
    if (rt->abort_on_main_error) sl_cancel_all(rt);
  } else if (t->status == SL_CANCELLED && rt->interrupts) {
    rt->status = 130;
  }
}

void sl_cancel_all(sl_runtime *rt) {
  sl_sched_cancel_all(&rt->S);
}

int luaopen_sluice_redis_core(lua_State *L);   /* lib/sl_redis.c */
int luaopen_sluice_workers_core(lua_State *L); /* lib/sl_workers.c */
int luaopen_sluice_http_core(lua_State *L);    /* lib/sl_http.c */

static int sl_init_lua(sl_runtime *rt) {
  lua_State *L = rt->L;
  luaL_openlibs(L);
  lua_getglobal(L, "jit");
  if (lua_isnil(L, -1)) {
    fprintf(stderr, "sluice: linked against a Lua that is not LuaJIT\n");
    return -1;
  }
  lua_pop(L, 1);
  sl_setsched(L, &rt->S);
  rt->S.L = lua_newthread(L);   /* scratch stack for the trampoline */
  luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, LUA_GLOBALSINDEX, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_sluice_core);
  lua_setfield(L, -2, "sluice.core");
  lua_pushcfunction(L, luaopen_sluice_redis_core);
  lua_setfield(L, -2, "sluice.redis.core");
  lua_pushcfunction(L, luaopen_sluice_workers_core);
  lua_setfield(L, -2, "sluice.workers.core");
  lua_pushcfunction(L, luaopen_sluice_http_core);
  lua_setfield(L, -2, "sluice.http.core");
  lua_pop(L, 2);
  if (sl_preload_embedded(L) || sl_open_uv(rt)) return -1;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "sluice");
  if (lua_pcall(L, 1, 1, 0)) {
    fprintf(stderr, "sluice: %s\n", lua_tostring(L, -1));
    return -1;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "luv");
  lua_setfield(L, -3, "uv");
  lua_pop(L, 2);
  return 0;
}

extern void *const sl_ffi_keep[];

sl_runtime *sl_open(const sl_options *opts) {
  sl_runtime *rt;
  if (!sl_ffi_keep[0]) return NULL;   /* keeps the FFI functions linked */
  rt = calloc(1, sizeof *rt);
  if (!rt) return NULL;
  rt->on_error = opts && opts->on_error ? opts->on_error : sl_default_error;
  rt->error_ud = opts ? opts->error_ud : NULL;
  if (opts && opts->loop) {
    rt->loop = opts->loop;
  } else {
    if (uv_loop_init(&rt->own_loop)) { free(rt); return NULL; }
    rt->loop = &rt->own_loop;
    rt->owns_loop = 1;
  }
  rt->L = SL_SYSTEM_ALLOC ? lua_newstate(sl_alloc, NULL) : NULL;
  if (!rt->L) rt->L = luaL_newstate();
  if (!rt->L || sl_sched_init(&rt->S, rt->loop, rt->L, opts && opts->virtual_clock)) {
    if (rt->L) lua_close(rt->L);
    sl_forget_sched();
    if (rt->owns_loop) uv_loop_close(rt->loop);
    free(rt);
    return NULL;
  }
  rt->S.on_main_done = sl_on_main_done;
  rt->S.on_unhandled = sl_on_unhandled;
  rt->S.on_report = sl_on_report;
  rt->S.on_warn = sl_on_warn;
  rt->S.data = rt;
  if (sl_init_lua(rt)) {
    sl_close(rt);
    return NULL;
  }
  return rt;
}

lua_State *sl_lua(sl_runtime *rt) { return rt->L; }
uv_loop_t *sl_loop(sl_runtime *rt) { return rt->loop; }
int sl_failures(sl_runtime *rt) { return rt->failures; }
int sl_status(sl_runtime *rt) { return rt->status; }

int sl_tasks(sl_runtime *rt) {
  return (int)rt->S.ntasks;
}

void sl_start(sl_runtime *rt, int nargs) {
  sl_start_main(rt, nargs, NULL);
}

sl_task *sl_start_main(sl_runtime *rt, int nargs, const char *name) {
  lua_State *L = rt->L;
  sl_task *t = sl_spawn(L, &rt->S, &rt->S.root, -(nargs + 1), nargs);
  t->is_main = 1;
  if (name) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
  }
  lua_pop(L, nargs + 2);
  return t;
}

static int sl_load_report(sl_runtime *rt, int rc) {
  lua_State *L = rt->L;
  if (rc == 0) {
    sl_start_main(rt, 0, NULL);
    return 0;
  }
  lua_pushfstring(L, "sluice: %s", lua_tostring(L, -1));
  sl_report(rt, lua_tostring(L, -1));
  lua_pop(L, 2);
  return -1;
}

int sl_dostring(sl_runtime *rt, const char *code, const char *chunkname) {
  return sl_load_report(rt, luaL_loadbuffer(rt->L, code, strlen(code), chunkname ? chunkname : code));
}

int sl_dofile(sl_runtime *rt, const char *path) {
  return sl_load_report(rt, luaL_loadfile(rt->L, path));
}

int sl_step(sl_runtime *rt) {
  uv_run(rt->loop, UV_RUN_NOWAIT);
  return uv_loop_alive(rt->loop) || sl_sched_alive(&rt->S);
}
