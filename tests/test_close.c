/*
 * test_close.c - sl_close while scripts are in the middle of things.
 *
 * A host may close its runtime at any frame: with tasks sleeping, luv
 * handles open and file system or work requests still running in libuv's
 * thread pool, whose memory belongs to the Lua state.  Each case closes
 * after a few steps, on the runtime's own loop and on a host's loop, and
 * checks that the close returns and leaves the host's loop empty.  The
 * sanitizer build and valgrind check the memory side.
 */
#include <sluice.h>
#include "sl_check.h"

#include <string.h>

/* Everything at once: tasks, handles, requests, an unawaited failure. */
static const char busy_lua[] =
  "local sluice = require 'sluice'\n"
  "local uv = require 'luv'\n"
  "local t = uv.new_timer() t:start(1000, 1000, function() end)\n"
  "local idle = uv.new_idle() idle:start(function() end)\n"
  "local pipe, tcp = uv.new_pipe(false), uv.new_tcp()\n"
  "sluice.spawn(function() sluice.sleep(10) end)\n"
  "sluice.spawn(function() while true do sluice.await(uv.fs_stat, '.') end end)\n"
  "sluice.spawn(function() sluice.await(uv.getaddrinfo, '127.0.0.1', nil, {}) end)\n"
  "sluice.spawn(function()\n"
  "  pcall(sluice.sleep, 10)\n"
  "  sluice.shield(function() sluice.sleep(0.001) end)\n"   /* cleanup blocks */
  "end)\n"
  "sluice.spawn(function() error('nobody awaits this') end)\n"
  "uv.new_work(function() local x = 0 for i = 1, 1e6 do x = x + i end return x end,\n"
  "            function() end):queue()\n"
  "sluice.scope(function(s) s:spawn(function() sluice.sleep(5) end) end)\n";

/* A raw luv callback that always issues another request. */
static const char chain_lua[] =
  "local uv = require 'luv'\n"
  "local function again() uv.fs_stat('.', again) end\n"
  "again()\n";

static int nerrors;

static void count_error(sl_runtime *rt, const char *report, void *ud) {
  (void)rt; (void)report; (void)ud;
  nerrors++;
}

/* Runs code for steps steps on a fresh runtime, then closes it.
 * Returns 0 if the host's loop (when used) was left empty. */
static int close_after(const char *code, int steps, int host_loop) {
  uv_loop_t loop;
  sl_options opts;
  sl_runtime *rt;
  int i, rc = 0;
  memset(&opts, 0, sizeof opts);
  opts.on_error = count_error;
  if (host_loop) {
    if (uv_loop_init(&loop)) return -1;
    opts.loop = &loop;
  }
  if (!(rt = sl_open(&opts))) return -1;
  if (sl_dostring(rt, code, "=test")) rc = -1;
  for (i = 0; i < steps; i++) sl_step(rt);
  sl_close(rt);
  if (host_loop) {
    uv_run(&loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&loop)) rc = -1;
  }
  return rc;
}

static void test_close_busy(void) {
  static const int steps[] = {0, 1, 3, 20};
  int i, host;
  for (host = 0; host <= 1; host++)
    for (i = 0; i < 4; i++) CHECK(close_after(busy_lua, steps[i], host) == 0);
}

static void test_close_chain(void) {
  int host;
  for (host = 0; host <= 1; host++) {
    CHECK(close_after(chain_lua, 1, host) == 0);
    CHECK(close_after(chain_lua, 10, host) == 0);
  }
}

/* The failure nobody awaited is still reported, at the latest by close. */
static void test_close_reports(void) {
  nerrors = 0;
  CHECK(close_after(busy_lua, 3, 0) == 0);
  CHECK(nerrors == 1);
}

int main(void) {
  RUN(test_close_busy);
  RUN(test_close_chain);
  RUN(test_close_reports);
  return sl_check_done();
}
