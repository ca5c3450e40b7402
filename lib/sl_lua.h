/*
 * sl_lua.h - helpers shared by the Lua bindings of the scheduler and the
 * primitives: the registry keys, error raising, userdata checks.
 */
#ifndef SL_LUA_H
#define SL_LUA_H

#include <lua.h>
#include <lauxlib.h>

#include "sl_sched.h"

#define SL_TASK_MT      "sluice.task"
#define SL_SCOPE_MT     "sluice.scope"
#define SL_ERRFN        "sluice.errfn"      /* Lua: function(kind, msg, level) -> err */
#define SL_CANCELFN     "sluice.cancelfn"   /* Lua: function(task) -> cancelled err */
#define SL_ENTRY        "sluice.entry"      /* Lua: the error handler task bodies run under */
#define SL_XPCALL       "sluice.xpcall"     /* the builtin xpcall (globals may change) */
#define SL_TRACEBACKS   "sluice.tracebacks" /* weak: coroutine -> traceback at its error */
#define SL_UNOBSERVED   "sluice.unobserved" /* weak-keyed: failed root tasks */
#define SL_NOENV        "sluice.noenv"      /* shared empty env of fresh tasks */
#define SL_ANCHORS      "sluice.anchors"    /* the runtime's unfinished tasks (sl_anchor) */

/* The scheduler of the runtime owning L (stored in the registry). */
sl_sched *sl_getsched(lua_State *L);
void sl_setsched(lua_State *L, sl_sched *S);

/* Raises a runtime error table {kind=, message=} built by SL_ERRFN. */
int sl_raise(lua_State *L, const char *kind, const char *fmt, ...);

sl_task *sl_checktask(lua_State *L, int idx, const char *fn);
sl_task *sl_totask(lua_State *L, int idx);
/* Pushes the task's userdata (valid while the task is unfinished). */
void sl_pushtask(lua_State *L, sl_task *t);
/* Anchors a task's userdata and coroutine (at stack indexes ud and co)
 * in a fresh slot of S's anchor table, which it returns; sl_unanchor
 * releases the slot. */
int  sl_anchor(lua_State *L, sl_sched *S, int ud, int co);
void sl_unanchor(lua_State *L, sl_sched *S, int slot);
/* Pushes S's anchor table (slot k: userdata at 2k - 1, coroutine or
 * unstarted body at 2k) and returns its stack index. */
int  sl_anchor_table(lua_State *L, sl_sched *S);
/* S's unfinished tasks in the order they were spawned: a malloc'd array
 * (the caller frees it) of *n tasks, NULL when there are none. */
sl_task **sl_sched_list(sl_sched *S, int *n);
/* Cancels every unfinished task of S, oldest first. */
void sl_sched_cancel_all(sl_sched *S);
/* Drops sl_getsched's cache (after lua_close, or a scheduler change). */
void sl_forget_sched(void);
/* The running task, or raises "<fn>: must be called from a task". */
sl_task *sl_running(lua_State *L, const char *fn);

/* Pushes the task's env table, creating a private one if asked. */
void sl_task_env(lua_State *L, int idx, int create);

/* Spawns fn (at idx) with the nargs values above it into scope. */
sl_task *sl_spawn(lua_State *L, sl_sched *S, sl_scope *scope, int idx, int nargs);
/* Gives a task that has no coroutine yet (spawned, not started) its
 * coroutine, with its body and arguments loaded. */
void sl_task_load(sl_sched *S, sl_task *t);
/* Pushes a task's error value and traceback (2 values). */
void sl_task_push_error(lua_State *L, int idx);

int luaopen_sluice_core(lua_State *L);
int sl_open_scope(lua_State *L);
int sl_open_simulate(lua_State *L);
int sl_open_prim(lua_State *L);
int sl_open_weak(lua_State *L);     /* sl_weak_lua.c */     /* sl_prim_lua.c */

#endif
