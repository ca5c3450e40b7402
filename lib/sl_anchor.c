/*
 * sl_anchor.c - what keeps unfinished tasks alive: the scheduler's anchor
 * table, which holds each task's userdata and coroutine while it runs or
 * waits, and the walk over it that finds every task for reports.
 */
#include "sl_lua.h"

#include <limits.h>
#include <stdlib.h>

/* Anchors of unfinished tasks: slot k of the scheduler's anchor table
 * holds the task's userdata at 2k - 1 and its coroutine at 2k (before
 * its first run, its body: see sl_spawn).  Dense
 * integer keys keep both in the table's array part, 8 bytes a value,
 * where registry keys would cost a hash node each (and the registry,
 * re-traversed by every collection cycle, would grow with the tasks).
 * Free slots are reused most recently freed first, so the used ones stay
 * at the bottom of the table.  The table is the scheduler's own: nested
 * schedulers (sluice.run) count and release theirs apart. */
int sl_anchor_table(lua_State *L, sl_sched *S) {
  if (S->ref_anchors == LUA_NOREF) {
    lua_newtable(L);
    S->ref_anchors = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->ref_anchors);
  return lua_gettop(L);
}

int sl_anchor(lua_State *L, sl_sched *S, int ud, int co) {
  int k, tab;
  if (S->nafree > 0) k = S->afree[--S->nafree];
  else if (S->anext < INT_MAX / 2 - 1) k = ++S->anext;
  else return LUA_NOREF;
  tab = sl_anchor_table(L, S);
  lua_pushvalue(L, ud);
  lua_rawseti(L, tab, 2 * k - 1);
  lua_pushvalue(L, co);
  lua_rawseti(L, tab, 2 * k);
  lua_pop(L, 1);
  return k;
}

void sl_unanchor(lua_State *L, sl_sched *S, int k) {
  int tab;
  if (k < 1) return;
  tab = sl_anchor_table(L, S);
  lua_pushnil(L);
  lua_rawseti(L, tab, 2 * k - 1);
  lua_pushnil(L);
  lua_rawseti(L, tab, 2 * k);
  lua_pop(L, 1);
  if (S->closing) return;   /* the free list is gone (sl_sched_close) */
  if (S->nafree == S->acap) {
    int cap = S->acap ? 2 * S->acap : 256;
    int *p = realloc(S->afree, (size_t)cap * sizeof *p);
    if (!p) return;   /* the slot is simply not reused */
    S->afree = p;
    S->acap = cap;
  }
  S->afree[S->nafree++] = k;
}

static int sl_cmp_id(const void *a, const void *b) {
  uint32_t x = (*(sl_task *const *)a)->id, y = (*(sl_task *const *)b)->id;
  return x < y ? -1 : x > y;
}

/* Nothing links all the tasks together (it would cost every task a list
 * node): the anchor table has them, and ids give the order they were
 * spawned in.  For the cold paths that need them all: reports, cancelling
 * everything at the end. */
sl_task **sl_sched_list(sl_sched *S, int *n) {
  lua_State *L = S->L;
  sl_task **v;
  int k, tab;
  *n = 0;
  if (S->ntasks == 0 || S->ref_anchors == LUA_NOREF) return NULL;
  if (!(v = malloc(S->ntasks * sizeof *v))) return NULL;
  lua_checkstack(L, 2);
  tab = sl_anchor_table(L, S);
  for (k = 1; k <= S->anext && *n < (int)S->ntasks; k++) {
    lua_rawgeti(L, tab, 2 * k - 1);
    if (lua_type(L, -1) == LUA_TUSERDATA) v[(*n)++] = lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  qsort(v, (size_t)*n, sizeof *v, sl_cmp_id);
  return v;
}

void sl_sched_cancel_all(sl_sched *S) {
  int i, n;
  sl_task **v = sl_sched_list(S, &n);
  for (i = 0; i < n; i++) sl_task_cancel(v[i]);
  free(v);
}
