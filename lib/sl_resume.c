/*
 * sl_resume.c - the trampoline: resumes ready tasks and settles finished
 * ones (results into the task's env table, failures with their traceback,
 * awaiters and the owning scope told).
 *
 * Nothing else in sluice calls lua_resume on a task: wake-ups only queue,
 * so the C stack never nests coroutine inside coroutine.
 */
#include "sl_lua.h"
#include "sl_prim.h"

#include <stdio.h>
#include <string.h>

static int sl_is_cancel_error(lua_State *L, int idx) {
  int r;
  if (!lua_istable(L, idx)) return 0;
  lua_getfield(L, idx, "kind");
  r = lua_isstring(L, -1) && !strcmp(lua_tostring(L, -1), "cancelled");
  lua_pop(L, 1);
  return r;
}

/* The traceback the entry's handler recorded when the error happened
 * (exact line numbers), or, failing that, the dead coroutine's. */
static void sl_push_traceback(lua_State *L, lua_State *co) {
  lua_getfield(L, LUA_REGISTRYINDEX, SL_TRACEBACKS);
  if (lua_istable(L, -1)) {
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isstring(L, -1)) {
      lua_insert(L, -3);
      lua_pushnil(L);
      lua_rawset(L, -3);
      lua_pop(L, 1);
      return;
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  luaL_traceback(L, co, NULL, 0);
}

/* Moves the finished coroutine's outcome into a fresh env table of the
 * task userdata on top of L: results as [1..n] + n, or err + traceback. */
static int sl_settle_env(lua_State *L, sl_task *t, int rc) {
  lua_State *co = t->co;
  int status = SL_DONE, n, i;
  if (rc == 0 && t->wrapped) {   /* xpcall's answer: true, results | false, err */
    if (lua_toboolean(co, 1)) {
      lua_remove(co, 1);
    } else {
      lua_settop(co, 2);
      lua_remove(co, 1);
      rc = LUA_ERRRUN;
    }
  }
  n = lua_gettop(co);
  if (rc == 0 && n == 0) return status;
  lua_createtable(L, rc == 0 ? n : 0, 2);
  if (rc == 0) {
    lua_xmove(co, L, n);
    for (i = n; i >= 1; i--) lua_rawseti(L, -1 - i, i);
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
  } else {
    lua_xmove(co, L, 1);
    status = (t->cancelled && sl_is_cancel_error(L, -1)) ? SL_CANCELLED : SL_FAILED;
    lua_setfield(L, -2, "err");
    if (status == SL_FAILED) {
      sl_push_traceback(L, co);
      lua_setfield(L, -2, "tb");
    }
  }
  /* keep the name and cancel reason recorded in a private env */
  sl_task_env(L, -2, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->sched->ref_noenv);
  if (!lua_rawequal(L, -1, -2)) {
    lua_getfield(L, -2, "reason");
    lua_setfield(L, -4, "reason");
    lua_getfield(L, -2, "name");
    lua_setfield(L, -4, "name");
  }
  lua_pop(L, 2);
  lua_setfenv(L, -2);
  return status;
}

static void sl_scope_child_done(lua_State *L, sl_task *t) {
  sl_scope *s = t->scope;
  sl_queue_remove(&t->member);
  s->nlive--;
  if (t->status == SL_FAILED && !s->root) {
    t->observed = 1;
    if (!s->failed) {
      s->failed = t;
      lua_pushvalue(L, -1);
      s->failed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      sl_scope_cancel(s);
    }
  }
  if (s->nlive == 0 && s->owner) {
    sl_task *owner = s->owner;
    s->owner = NULL;
    sl_task_wake(owner, SL_WAKE_OK);
  }
}

/* A root-scope task failed and nobody is awaiting it: remember it so it
 * is reported when its object is collected or the runtime ends. */
static void sl_mark_unobserved(lua_State *L, sl_sched *S) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->ref_unobserved);
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->ref_failed_mt);
  lua_setmetatable(L, -2);
}

/* A task ended still holding permits: nobody else may release them, so
 * they are released here (waiters go on) and the bug is reported. */
static void sl_release_held(sl_sched *S, sl_task *t, lua_State *L) {
  sl_hold *h = sl_queue_data(sl_queue_head(&t->held), sl_hold, in_task);
  const char *kind = h->prim->kind;
  double count = h->count;
  int n = sl_hold_release_all(t);
  if (!S->on_report) return;
  lua_pushfstring(L, "sluice: task #%d ended while holding %s%s (%d held); released",
                  (int)t->id, n > 1 ? "primitives, the first a " : "a ", kind, (int)count);
  S->on_report(S, lua_tostring(L, -1));
  lua_pop(L, 1);
}

/* Coroutines kept for new tasks: enough for the tasks a busy program
 * finishes and starts again in one tick, few enough to cost little. */
#define SL_POOL_MAX 256

/* Keeps the finished task's coroutine for a later spawn if it ended
 * cleanly (status OK: it returned, or never ran), in a Lua table rather
 * than the registry, so its anchor is one table slot. */
static void sl_recycle(sl_sched *S, sl_task *t, lua_State *L) {
  if (S->ref_pool == LUA_NOREF || S->npool >= SL_POOL_MAX || lua_status(t->co) != 0) return;
  lua_settop(t->co, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->ref_pool);
  lua_pushthread(t->co);
  lua_xmove(t->co, L, 1);
  lua_rawseti(L, -2, ++S->npool);
  lua_pop(L, 1);
}

/* Did the task return nothing, without an error?  Then it has no env to
 * fill and no report to make, and its userdata is not needed here. */
static int sl_settle_plain(sl_task *t, int rc) {
  int n = lua_gettop(t->co);
  if (rc != 0 || t->is_main) return 0;
  if (t->wrapped) return n == 1 && lua_toboolean(t->co, 1);
  return n == 0;
}

static void sl_task_settle(sl_sched *S, sl_task *t, int rc) {
  lua_State *L = S->L;
  sl_queue *q;
  int top = lua_gettop(L);
  if (sl_settle_plain(t, rc)) {
    t->status = SL_DONE;
  } else {
    lua_checkstack(L, LUA_MINSTACK + lua_gettop(t->co));
    sl_pushtask(L, t);
    t->status = (uint8_t)sl_settle_env(L, t, rc);
  }
  S->ntasks--;
  if (!sl_queue_empty(&t->held)) sl_release_held(S, t, L);
  while (!sl_queue_empty(&t->awaiters)) {
    q = sl_queue_head(&t->awaiters);
    sl_queue_remove(q);
    t->observed = 1;
    sl_task_wake(sl_queue_data(q, sl_task, wait.link), SL_WAKE_OK);
  }
  sl_scope_child_done(L, t);
  if (t->is_main) {
    t->observed = 1;
    if (S->on_main_done) S->on_main_done(S, t, L);
  } else if (t->status == SL_FAILED && !t->observed) {
    sl_mark_unobserved(L, S);
  }
  sl_recycle(S, t, L);
  sl_unanchor(L, S, t->ref);
  t->ref = LUA_NOREF;
  t->co = NULL;
  lua_settop(L, top);
}

/* A task cancelled before it ever ran does not start: it settles as
 * cancelled with the error it would have raised at its first wait. */
static void sl_task_cancel_unstarted(sl_sched *S, sl_task *t) {
  lua_State *L = S->L;
  if (!t->co) sl_task_load(S, t);
  lua_settop(t->co, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, SL_CANCELFN);
  sl_pushtask(L, t);
  lua_call(L, 1, 1);
  lua_xmove(L, t->co, 1);
  t->started = 1;
  sl_task_settle(S, t, LUA_ERRRUN);
}

/* sluice.warn_blocking: t ran `ran` seconds without yielding.  The
 * traceback is where it yielded (empty if it ended). */
static void sl_warn_blocking(sl_sched *S, sl_task *t, double ran, int yielded) {
  lua_State *L = S->L;
  int top = lua_gettop(L);
  const char *name;
  char msg[200];
  if (!S->on_warn) return;
  sl_pushtask(L, t);
  sl_task_env(L, -1, 0);
  lua_getfield(L, -1, "name");
  name = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  snprintf(msg, sizeof msg, "sluice: task #%d%s%.80s%s ran %.3f s without yielding "
           "(warn_blocking %g s)", (int)t->id, name ? " (" : "", name ? name : "",
           name ? ")" : "", ran, S->warn_blocking);
  if (yielded) luaL_traceback(L, t->co, msg, 0);
  else lua_pushfstring(L, "%s; it then ended", msg);
  S->on_warn(S, lua_tostring(L, -1));
  lua_settop(L, top);
}

static void sl_task_resume(sl_sched *S, sl_task *t) {
  lua_State *co;
  sl_task *prev = S->current, *outer = sl_tls_task;
  int nargs, rc;
  uint64_t t0 = 0;
  if (!t->started && sl_task_cancel_due(t)) {
    sl_task_cancel_unstarted(S, t);
    return;
  }
  if (!t->co) sl_task_load(S, t);
  co = t->co;
  if (t->started) {
    lua_pushinteger(co, t->wake);
    nargs = 1;
  } else {
    t->started = 1;
    nargs = t->nargs;
  }
  t->status = SL_RUNNING;
  S->current = sl_tls_task = t;
  /* Off (the default) this costs one test; on, two clock reads. */
  if (S->warn_blocking > 0) t0 = uv_hrtime();
  rc = lua_resume(co, nargs);
  S->current = prev;
  sl_tls_task = outer;   /* a nested scheduler returns to the outer task */
  if (t0) {   /* real time, even under the virtual clock */
    double ran = (double)(uv_hrtime() - t0) * 1e-9;
    if (ran >= S->warn_blocking) sl_warn_blocking(S, t, ran, rc == LUA_YIELD);
  }
  if (rc == LUA_YIELD) {
    lua_settop(co, 0);
    /* A yield that did not park (a bare coroutine.yield) just reschedules. */
    if (t->status == SL_RUNNING) sl_task_make_ready(t, SL_WAKE_OK);
    return;
  }
  sl_task_settle(S, t, rc);
}

void sl_sched_pass(sl_sched *S) {
  sl_queue *last = S->ready.prev, *q;
  int more = 1;
  while (more && !sl_queue_empty(&S->ready)) {
    q = sl_queue_head(&S->ready);
    more = (q != last);
    sl_queue_remove(q);
    sl_task_resume(S, sl_queue_data(q, sl_task, ready));
  }
}
