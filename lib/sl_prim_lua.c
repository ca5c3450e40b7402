/*
 * sl_prim_lua.c - what the primitives' Lua faces need from the Lua C API:
 * their holders as task objects, and where a parked task is now.
 *
 * The primitives themselves are called through the FFI (sl_ffi.h), which
 * cannot hand out task userdata nor read another coroutine's stack; these
 * classic C functions can.  None is on a hot path: they serve holders(),
 * deadlock errors and reports.
 */
#include "sl_lua.h"
#include "sl_prim.h"

#include <string.h>

/* The pointer a pointer cdata holds (an sl_prim * from sl_sem_prim()...). */
static void *sl_tocptr(lua_State *L, int idx, const char *fn) {
  const void *box = lua_topointer(L, idx);
  if (strcmp(luaL_typename(L, idx), "cdata") || !box || !*(void *const *)box)
    luaL_error(L, "%s: expected a primitive (got %s)", fn, luaL_typename(L, idx));
  return *(void *const *)box;
}

/* core.prim_holders(prim) -> { {task = t, count = n}, ... } in the order
 * the holders first acquired it. */
static int l_prim_holders(lua_State *L) {
  sl_prim *p = sl_tocptr(L, 1, "prim_holders");
  sl_queue *q;
  int i = 0;
  lua_newtable(L);
  sl_queue_foreach(q, &p->holders) {
    sl_hold *h = sl_queue_data(q, sl_hold, in_prim);
    if (h->task->ref == LUA_NOREF) continue;   /* settling: not a holder any more */
    lua_createtable(L, 0, 2);
    sl_pushtask(L, h->task);
    lua_setfield(L, -2, "task");
    lua_pushnumber(L, h->count);
    lua_setfield(L, -2, "count");
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

/* core.task_traceback(task) -> the stack of a task that is not running
 * (where it is parked or about to resume), or nil. */
static int l_task_traceback(lua_State *L) {
  sl_task *t = sl_checktask(L, 1, "task_traceback");
  if (!t->co || t->status == SL_RUNNING || t->status >= SL_DONE) return 0;
  luaL_traceback(L, t->co, NULL, 0);
  return 1;
}

static const luaL_Reg sl_prim_funcs[] = {
  {"prim_holders", l_prim_holders}, {"task_traceback", l_task_traceback},
  {NULL, NULL}
};

/* Adds the functions above to the core table on top of the stack. */
int sl_open_prim(lua_State *L) {
  luaL_register(L, NULL, sl_prim_funcs);
  return 0;
}
