/*
 * sl_simulate.c - core.run(virtual, fn, ...): runs fn as the root task of
 * a nested scheduler on a private loop, to completion, inside the calling
 * task (the outer scheduler is blocked meanwhile).
 *
 * With the virtual clock this simulates a system before running it for
 * real: minutes of sleeps and timeouts take microseconds and every
 * interleaving is exact and repeatable.  luv stays bound to the outer
 * loop, so real I/O inside the block cannot progress; a block that waits
 * on it ends in a deadlock error instead of hanging.
 */
#include "sl_lua.h"

#include <stdlib.h>

typedef struct sl_sim {
  sl_sched S;
  uv_loop_t loop;
} sl_sim;

/* Reports parked tasks and cancels them; returns how many there were. */
static int sl_sim_unstick(sl_sim *sim) {
  int n = (int)sim->S.nwaiting;
  sl_sched_cancel_all(&sim->S);
  return n;
}

static void sl_sim_run(sl_sim *sim) {
  int round;
  for (round = 0; round < 3; round++) {
    uv_run(&sim->loop, UV_RUN_DEFAULT);
    if (sim->S.nwaiting == 0 && sl_queue_empty(&sim->S.ready)) return;
    sl_sim_unstick(sim);
  }
}

/* Closes the nested scheduler; frees it unless tasks are stuck in it. */
static void sl_sim_close(lua_State *L, sl_sim *sim, int ref) {
  int stuck = sim->S.ntasks != 0;
  sl_sched_close(&sim->S);
  uv_run(&sim->loop, UV_RUN_DEFAULT);
  luaL_unref(L, LUA_REGISTRYINDEX, sim->S.ref_pool);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  if (stuck) return;   /* a task refused to unwind: leak rather than dangle */
  luaL_unref(L, LUA_REGISTRYINDEX, sim->S.ref_anchors);
  uv_loop_close(&sim->loop);
  free(sim);
}

/* core.run(virtual, fn, ...) -> number of tasks found deadlocked, task */
static int l_run(lua_State *L) {
  sl_sched *outer = sl_getsched(L);
  int is_virtual = lua_toboolean(L, 1), ref, deadlocked;
  sl_sim *sim = calloc(1, sizeof *sim);
  sl_task *t;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!sim || uv_loop_init(&sim->loop)) {
    free(sim);
    return luaL_error(L, "sluice.run: cannot create a loop");
  }
  sl_sched_init(&sim->S, &sim->loop, L, is_virtual);
  sim->S.L = lua_newthread(L);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sim->S.vnow = 0;   /* a clock of its own: every run starts at 0 */
  sim->S.data = outer->data;
  sim->S.on_unhandled = outer->on_unhandled;
  sim->S.on_report = outer->on_report;
  sim->S.on_warn = outer->on_warn;
  lua_newtable(L);   /* its own coroutine pool: the counts are per scheduler */
  sim->S.ref_pool = luaL_ref(L, LUA_REGISTRYINDEX);
  sl_setsched(L, &sim->S);
  t = sl_spawn(L, &sim->S, &sim->S.root, 2, lua_gettop(L) - 2);
  t->observed = 1;
  uv_run(&sim->loop, UV_RUN_DEFAULT);
  deadlocked = (int)sim->S.nwaiting;
  sl_sim_run(sim);
  sl_setsched(L, outer);
  sl_sim_close(L, sim, ref);
  lua_pushinteger(L, deadlocked);
  lua_insert(L, -2);
  return 2;
}

int sl_open_simulate(lua_State *L) {
  lua_pushcfunction(L, l_run);
  lua_setfield(L, -2, "run");
  return 0;
}
