/*
 * main.c - the sluice command line, shaped like lua.c / luajit:
 *
 *   sluice [options] [script [args]]
 *     -e stat   run stat        -l name  require name (as global name)
 *     -i        REPL after the script    -v  show versions
 *     -         run stdin       --       stop handling options
 *     --virtual-time  run on the virtual clock
 *
 * Everything given on the command line (-l, -e, the script) runs in
 * order inside one root task, so top-level code may block.
 */
#include "sl_runtime.h"

#include <lauxlib.h>
#include <luajit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs the steps in order; a step is {"e", code} {"l", name} {"f", path}. */
static const char sl_driver[] =
  "local steps, argv = ...\n"
  "for i = 1, #steps do\n"
  "  local kind, v = steps[i][1], steps[i][2]\n"
  "  if kind == 'l' then\n"
  "    _G[v] = require(v)\n"
  "  else\n"
  "    local f, err\n"
  "    if kind == 'e' then f, err = loadstring(v, '=(command line)')\n"
  "    else f, err = loadfile(v ~= '-' and v or nil) end\n"
  "    if not f then error(err, 0) end\n"
  /* called through an unnamed value so tracebacks say "main chunk" */
  "    if kind == 'e' then select(2, nil, f)() else select(2, nil, f)(unpack(argv, 1, argv.n)) end\n"
  "  end\n"
  "end\n";

static void sl_usage(const char *prog) {
  fprintf(stderr,
    "usage: %s [options] [script [args]]\n"
    "Available options are:\n"
    "  -e stat   execute string 'stat'\n"
    "  -l name   require library 'name' into global 'name'\n"
    "  -i        enter interactive mode after executing 'script'\n"
    "  -v        show version information\n"
    "  --virtual-time  run on the virtual clock (time jumps when idle)\n"
    "  --        stop handling options\n"
    "  -         execute stdin and stop handling options\n", prog);
}

static void sl_print_version(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "luv");
  lua_getfield(L, -1, "version_string");
  lua_call(L, 0, 1);
  printf("sluice %s (%s, libuv %s, luv %s)\n", SLUICE_VERSION, LUAJIT_VERSION,
         uv_version_string(), lua_tostring(L, -1));
  lua_pop(L, 3);
}

typedef struct {
  int script;      /* argv index of the script, 0 if none */
  int interactive, version, virtual_clock, has_e, stdin_script;
} sl_cli;

/* Parses options; returns 0, or -1 on a bad option. */
static int sl_parse(int argc, char **argv, sl_cli *c) {
  int i;
  memset(c, 0, sizeof *c);
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-') { c->script = i; return 0; }
    if (!strcmp(a, "--")) { if (i + 1 < argc) c->script = i + 1; return 0; }
    if (!strcmp(a, "-")) { c->script = i; c->stdin_script = 1; return 0; }
    if (!strcmp(a, "-i")) c->interactive = c->version = 1;
    else if (!strcmp(a, "-v")) c->version = 1;
    else if (!strcmp(a, "--virtual-time")) c->virtual_clock = 1;
    else if (!strcmp(a, "-e") || !strcmp(a, "-l")) {
      if (++i >= argc) return -1;
      if (a[1] == 'e') c->has_e = 1;
    } else if ((a[1] == 'e' || a[1] == 'l') && a[2]) {
      if (a[1] == 'e') c->has_e = 1;
    } else return -1;
  }
  return 0;
}

/* The global arg table, as lua.c builds it. */
static void sl_push_arg(lua_State *L, int argc, char **argv, int script) {
  int i, base = script ? script : argc;
  lua_createtable(L, argc - base, base + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - base);
  }
  lua_setglobal(L, "arg");
}

/* Pushes the steps table and the script's argv table. */
static void sl_push_steps(lua_State *L, int argc, char **argv, const sl_cli *c) {
  int i, n = 0, end = c->script ? c->script : argc;
  lua_newtable(L);
  for (i = 1; i < end; i++) {
    const char *a = argv[i], *v = NULL;
    char kind = a[1];
    if (a[0] != '-' || (kind != 'e' && kind != 'l')) continue;
    v = a[2] ? a + 2 : argv[++i];
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, &kind, 1);
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, v);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++n);
  }
  if (c->script) {
    lua_createtable(L, 2, 0);
    lua_pushliteral(L, "f");
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, argv[c->script]);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++n);
  }
  lua_createtable(L, argc, 1);
  for (i = c->script + 1; c->script && i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - c->script);
  }
  lua_pushinteger(L, c->script ? argc - c->script - 1 : 0);
  lua_setfield(L, -2, "n");
}

int main(int argc, char **argv) {
  sl_cli c;
  sl_options opts;
  sl_runtime *rt;
  lua_State *L;
  int status, tty = isatty(0);
  if (sl_parse(argc, argv, &c)) {
    sl_usage(argv[0]);
    return 1;
  }
  if (!c.script && !c.has_e && !c.version && !tty) c.stdin_script = 1;
  if (!c.script && !c.has_e && tty) c.interactive = c.version = 1;
  memset(&opts, 0, sizeof opts);
  opts.virtual_clock = c.virtual_clock;
  if (!(rt = sl_open(&opts))) return 1;
  L = sl_lua(rt);
  rt->abort_on_main_error = 1;
  sl_install_sigint(rt);
  if (c.version) sl_print_version(L);
  sl_push_arg(L, argc, argv, c.script);
  luaL_loadbuffer(L, sl_driver, sizeof sl_driver - 1, "=[sluice]");
  sl_push_steps(L, argc, argv, &c);
  if (c.stdin_script && !c.script) {   /* no script named: stdin */
    lua_pop(L, 1);
    lua_rawgeti(L, -1, 0);
    lua_pop(L, 1);
    lua_createtable(L, 2, 0);
    lua_pushliteral(L, "f"); lua_rawseti(L, -2, 1);
    lua_pushliteral(L, "-"); lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    lua_newtable(L);
  }
  sl_start_main(rt, 2, "main");
  if (c.interactive) sl_repl_start(rt);
  status = sl_run(rt);
  sl_close(rt);
  return status;
}
