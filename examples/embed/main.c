/*
 * main.c - embedding sluice in a host that has its own frame loop.
 *
 * A game or a simulation advances in frames, but its scripts want to say
 * "wait a tenth of a second, then take the next step" without being
 * turned into state machines.  sluice runs each script as a task; the
 * host calls sl_step() once per frame, which runs whatever became ready
 * and never blocks.
 *
 *   embed_example              phase 1, then phase 2
 *   embed_example --host-loop  phase 2 only
 *   embed_example --frames N   at most N frames per phase; tasks still
 *                              running then are cancelled by sl_close
 *
 * Phase 1: the runtime owns its libuv loop.  The host paces the frames
 *          (60 a second, uv_hrtime + nanosleep) and steps the runtime.
 * Phase 2: the host already runs a libuv loop (say, a server) and hands
 *          it to the runtime in sl_options.loop.  Frames come from a
 *          uv_timer_t of the host; tasks run inside the host's uv_run.
 *
 * In both phases one script fails on purpose: the failure goes to the
 * host's error callback and the other scripts carry on.  The exit status
 * is 0 when everything happened as expected.
 */
#define _POSIX_C_SOURCE 200809L   /* nanosleep; uv.h's pthread types */

#include <sluice.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FRAME_NS (1000000000ull / 60)
#define EVENT_FRAME 6          /* the frame at which the host fires an event */

/* ---- the scripts (normally files, loaded with sl_dofile) ---- */

/* A task that spans frames: each sleep lets the host run other frames. */
static const char walker_lua[] =
  "local sluice = require 'sluice'\n"
  "for step = 1, 3 do\n"
  "  print(('  walker: step %d at frame %d'):format(step, frame))\n"
  "  sluice.sleep(0.1)\n"
  "end\n";

/* A scope: three loaders run at once; the scope returns when all are done
 * (and had one failed, it would cancel the others and raise here). */
static const char loader_lua[] =
  "local sluice = require 'sluice'\n"
  "local total = 0\n"
  "sluice.scope(function(s)\n"
  "  for i = 1, 3 do\n"
  "    s:spawn(function()\n"
  "      sluice.sleep(0.04 * i)\n"
  "      total = total + i * 100\n"
  "      print(('  loader %d: done at frame %d'):format(i, frame))\n"
  "    end)\n"
  "  end\n"
  "end)\n"
  "print(('  loaders: all done at frame %d, %d bytes'):format(frame, total))\n";

/* Defines a handler the host calls (with sl_start); it spawns and awaits
 * a sub-task. */
static const char events_lua[] =
  "local sluice = require 'sluice'\n"
  "function on_event(name)\n"
  "  print(('  on_event(%q) at frame %d'):format(name, frame))\n"
  "  local blink = sluice.spawn(function()\n"
  "    for i = 1, 2 do\n"
  "      sluice.sleep(0.03)\n"
  "      print(('  blink %d at frame %d'):format(i, frame))\n"
  "    end\n"
  "  end)\n"
  "  blink:await()\n"
  "  print(('  on_event(%q) handled at frame %d'):format(name, frame))\n"
  "end\n";

/* A script with a bug: its error is reported to the host's callback. */
static const char enemy_lua[] =
  "local sluice = require 'sluice'\n"
  "sluice.sleep(0.05)\n"
  "local target = nil\n"
  "print(target.health)\n";

/* ---- the host ---- */

typedef struct host_errors {
  int count;
} host_errors;

/* sl_options.on_error: the report is the message and a traceback.  A real
 * host would log all of it; here the first line is enough. */
static void host_on_error(sl_runtime *rt, const char *report, void *ud) {
  host_errors *e = ud;
  int len = (int)strcspn(report, "\n");
  (void)rt;
  e->count++;
  printf("host: script error #%d: %.*s\n", e->count, len, report);
}

static sl_runtime *host_open(uv_loop_t *loop, host_errors *errs) {
  sl_options opts;
  sl_runtime *rt;
  memset(&opts, 0, sizeof opts);
  opts.loop = loop;                 /* NULL: the runtime makes its own */
  opts.on_error = host_on_error;
  opts.error_ud = errs;
  if (!(rt = sl_open(&opts))) return NULL;
  /* Each chunk starts as a task; none runs before the first step.  For
   * a chunk that does not compile, sl_dostring reports it and returns -1. */
  if (sl_dostring(rt, walker_lua, "=walker") || sl_dostring(rt, loader_lua, "=loader") ||
      sl_dostring(rt, events_lua, "=events") || sl_dostring(rt, enemy_lua, "=enemy")) {
    sl_close(rt);
    return NULL;
  }
  return rt;
}

/* The part of a frame that talks to the scripts: publishes the frame
 * number and, at one frame, calls a Lua function as a new task. */
static void host_frame(sl_runtime *rt, int frame) {
  lua_State *L = sl_lua(rt);
  lua_pushinteger(L, frame);
  lua_setglobal(L, "frame");
  if (frame == EVENT_FRAME) {
    lua_getglobal(L, "on_event");
    lua_pushstring(L, "door opened");
    sl_start(rt, 1);
  }
}

/* Prints a progress line when the number of live tasks changed. */
static void host_progress(sl_runtime *rt, int frame, int *last) {
  int n = sl_tasks(rt);
  if (n == *last) return;
  printf("frame %3d: %d task%s\n", frame, n, n == 1 ? "" : "s");
  *last = n;
}

/* Checks the outcome before closing: one deliberate failure, no tasks
 * left, unless the run was cut short by --frames. */
static int host_finish(const char *phase, sl_runtime *rt, host_errors *errs,
                       int frames, int cut) {
  int left = sl_tasks(rt), ok;
  printf("%s: finished after %d frames: %d error%s reported, status %d, %d task%s left\n",
         phase, frames, errs->count, errs->count == 1 ? "" : "s", sl_status(rt),
         left, left == 1 ? "" : "s");
  ok = cut || (errs->count == 1 && sl_failures(rt) == 1 && sl_status(rt) == 1 && left == 0);
  sl_close(rt);   /* cancels what is left, closes handles, frees all */
  return ok ? 0 : 1;
}

static void sleep_until(uint64_t *deadline) {
  uint64_t now = uv_hrtime();
  struct timespec ts;
  if (now >= *deadline) {      /* a slow frame: do not try to catch up */
    *deadline = now;
    return;
  }
  ts.tv_sec = (time_t)((*deadline - now) / 1000000000u);
  ts.tv_nsec = (long)((*deadline - now) % 1000000000u);
  nanosleep(&ts, NULL);
}

/* Phase 1: the runtime's own loop, stepped once per frame. */
static int phase_own_loop(int max_frames) {
  host_errors errs = {0};
  sl_runtime *rt;
  uint64_t next = uv_hrtime();
  int frame = 0, last = -1, busy = 1;
  printf("phase 1: the runtime owns the loop, the host steps it\n");
  if (!(rt = host_open(NULL, &errs))) return 1;
  while (frame < max_frames && (busy || frame < EVENT_FRAME)) {
    host_frame(rt, ++frame);
    /* ... the host's own update and drawing would go here ... */
    busy = sl_step(rt);
    host_progress(rt, frame, &last);
    next += FRAME_NS;
    sleep_until(&next);
  }
  return host_finish("phase 1", rt, &errs, frame, busy || frame < EVENT_FRAME);
}

/* Phase 2: the host's loop; its frame timer and the tasks share it. */
typedef struct host_app {
  sl_runtime *rt;
  uv_timer_t tick;
  int frame, max_frames, last, cut;
} host_app;

static void host_tick(uv_timer_t *h) {
  host_app *app = h->data;
  int done;
  host_frame(app->rt, ++app->frame);
  host_progress(app->rt, app->frame, &app->last);
  done = app->frame > EVENT_FRAME && sl_tasks(app->rt) == 0;
  if (done || app->frame >= app->max_frames) {
    app->cut = !done;
    uv_timer_stop(h);
    uv_stop(h->loop);    /* tasks left (if cut short) must not keep it running */
  }
}

static int phase_host_loop(int max_frames) {
  host_errors errs = {0};
  host_app app;
  uv_loop_t loop;
  int rc;
  printf("phase 2: the host owns the loop and runs it\n");
  if (uv_loop_init(&loop)) return 1;
  memset(&app, 0, sizeof app);
  app.max_frames = max_frames;
  app.last = -1;
  if (!(app.rt = host_open(&loop, &errs))) {
    uv_loop_close(&loop);
    return 1;
  }
  uv_timer_init(&loop, &app.tick);
  app.tick.data = &app;
  uv_timer_start(&app.tick, host_tick, 0, FRAME_NS / 1000000);
  uv_run(&loop, UV_RUN_DEFAULT);     /* the host's main loop */
  rc = host_finish("phase 2", app.rt, &errs, app.frame, app.cut);
  /* sl_close left the host's handles alone: closing them is ours. */
  uv_close((uv_handle_t *)&app.tick, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop)) rc = 1;
  return rc;
}

int main(int argc, char **argv) {
  int i, host_loop_only = 0, max_frames = 600, rc = 0;
  for (i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--host-loop")) host_loop_only = 1;
    else if (!strcmp(argv[i], "--frames") && i + 1 < argc) max_frames = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--host-loop] [--frames N]\n", argv[0]);
      return 2;
    }
  }
  if (!host_loop_only) rc |= phase_own_loop(max_frames);
  if (rc == 0) rc |= phase_host_loop(max_frames);
  printf("embed example: %s\n", rc ? "FAILED" : "ok");
  return rc;
}
