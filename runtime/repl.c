/*
 * repl.c - the interactive prompt.
 *
 * GNU readline in callback mode, fed by a uv_poll_t on fd 0: the loop
 * never blocks in readline, so tasks keep running while the prompt waits.
 * Each complete chunk runs as a task of the root scope (so it may block:
 * sluice.sleep works at the prompt); while it runs the prompt is taken
 * down and Ctrl-C cancels that task.  Its results are printed with print,
 * its error (message and traceback) goes to stderr and is not a failure
 * of the process.
 *
 * Chunks are compiled much as lua.c does: "=expr" prints expr's values;
 * a line is first tried as an expression list so its values print, then
 * as statements; a chunk whose syntax error is at '<eof>' continues on a
 * ">> " line.
 *
 * Readline keeps its state in globals, so there is one REPL per process
 * (sl_repl_active).  The handles live in a malloc'd struct whose handles'
 * data is NULL: sl_uv.c's walk then never takes them for luv's.
 */
#include "sl_runtime.h"
#include "../lib/sl_lua.h"

#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <readline/readline.h>
#include <readline/history.h>

#define SL_PROMPT       "> "
#define SL_PROMPT_MORE  ">> "
#define SL_HISTORY_FILE "/.sluice_history"
#define SL_HISTORY_MAX  1000
#define SL_CHUNKNAME    "=stdin"

typedef struct sl_repl sl_repl;

struct sl_repl {
  uv_poll_t input;        /* fd 0 readable: readline takes a character */
  uv_signal_t winch;      /* the terminal was resized */
  uv_prepare_t guard;     /* while a line runs: keeps the loop up, spots deadlock */
  sl_runtime *rt;
  char *chunk;            /* the lines of an unfinished chunk */
  size_t len, cap;
  int expr_only;          /* the chunk began with "=": values, no statements */
  char *history;          /* $HOME/.sluice_history, or NULL */
  sl_task *line;          /* the task running the current line */
  int line_ref;           /* registry: its userdata, so it stays valid */
  int waiting_main;       /* that task waits for the main chunk (-i script) */
  int run_ref;            /* registry: the Lua runner of lines */
  int shown;              /* readline's handler (the prompt) is installed */
  int prompted;           /* the first prompt was shown */
  int open_handles;       /* the struct is freed when the last one closed */
  char *saved;            /* half-typed line while task output is printed */
  int saved_point;
  sl_error_fn error_fn;   /* the runtime's reporter, wrapped while we run */
};

#define sl_repl_of(h, field) ((sl_repl *)((char *)(h) - offsetof(sl_repl, field)))

static sl_repl *sl_repl_active;

/* Runs a line's function as the body of its task, prints its results or
 * its error, then tells the C side (done) to bring the prompt back.  A
 * task instead of a function waits for the main chunk, silently: the
 * runtime reports that one.  Everything is protected so done always runs;
 * the task starts shielded so that it does start (a task cancelled before
 * its first step never runs), and begin drops the shield. */
static const char sl_repl_runner[] =
  "local done, begin = ...\n"
  "local sluice = require 'sluice'\n"
  "local type, tostring, getmetatable, pcall, xpcall, select, traceback =\n"
  "      type, tostring, getmetatable, pcall, xpcall, select, debug.traceback\n"
  "local function message(e)\n"
  "  if type(e) == 'string' or type(e) == 'number' then return tostring(e) end\n"
  "  local mt = getmetatable(e)\n"
  "  if type(mt) == 'table' and mt.__tostring then\n"
  "    local ok, s = pcall(tostring, e)\n"
  "    if ok and type(s) == 'string' then return s end\n"
  "  end\n"
  "  return '(error object is a ' .. type(e) .. ' value)'\n"
  "end\n"
  "local function handler(e)\n"
  "  if sluice.is_error(e, 'cancelled') then return message(e) end\n"
  "  local tb = traceback(message(e), 2)\n"   /* 2: not this handler */
  "  tb = tb:gsub(\"\\n\\t%[C%]: in function 'xpcall'.*\", '')\n"
  "  return (tb:gsub('\\n\\t%[builtin#%d+%]: at 0x%x+', ''))\n"   /* error, assert... */
  "end\n"
  "local function show(ok, ...)\n"
  "  if not ok then return io.stderr:write((...), '\\n') end\n"
  "  if select('#', ...) == 0 then return end\n"
  "  local pok, err = pcall(print, ...)\n"
  "  if not pok then io.stderr:write(\"error calling 'print' (\", message(err), ')\\n') end\n"
  "end\n"
  "return function(f)\n"
  "  if type(f) == 'userdata' then pcall(f.await, f)\n"
  "  else\n"
  "    begin()\n"
  "    local ok, err = pcall(show, xpcall(f, handler))\n"
  "    if not ok then pcall(io.stderr.write, io.stderr, message(err), '\\n') end\n"
  "  end\n"
  "  done()\n"
  "end\n";

static void sl_repl_on_line(char *line);

/* ---- the prompt on and off the screen ---- */

static void sl_repl_on_input(uv_poll_t *h, int status, int events) {
  (void)h; (void)events;
  if (status < 0) sl_repl_on_line(NULL);   /* fd 0 is gone: as on Ctrl-D */
  else rl_callback_read_char();
}

static void sl_repl_interrupt(sl_runtime *rt);

/* At the first prompt (not before: an -i script runs as it would
 * without -i), the global sluice, unless the script set its own. */
static void sl_repl_set_global(lua_State *L) {
  lua_getglobal(L, "sluice");
  if (lua_isnil(L, -1)) {
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_getfield(L, -1, "sluice");
    lua_setglobal(L, "sluice");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void sl_repl_show(sl_repl *r) {
  if (!r->prompted) sl_repl_set_global(r->rt->L);
  r->prompted = 1;
  fflush(stdout);
  r->rt->on_interrupt = sl_repl_interrupt;
  rl_callback_handler_install(r->len ? SL_PROMPT_MORE : SL_PROMPT, sl_repl_on_line);
  r->shown = 1;
  uv_poll_start(&r->input, UV_READABLE, sl_repl_on_input);
}

/* Takes the prompt down while a line runs: the terminal is back in its
 * normal mode (what is typed meanwhile waits for the next prompt, and
 * Ctrl-C is a signal), and fd 0 is not watched. */
static void sl_repl_hide(sl_repl *r) {
  if (!r->shown) return;
  rl_callback_handler_remove();
  r->shown = 0;
  uv_poll_stop(&r->input);
}

/* Output from a task while the prompt waits: the prompt and the
 * half-typed line are wiped, the output printed, then both redrawn. */
static int sl_repl_mute(sl_repl *r) {
  if (!r || !r->shown || r->saved) return 0;
  r->saved_point = rl_point;
  r->saved = rl_copy_text(0, rl_end);
  rl_save_prompt();
  rl_replace_line("", 0);
  rl_redisplay();
  return 1;
}

static void sl_repl_unmute(sl_repl *r, int muted) {
  if (!muted) return;
  fflush(stdout);
  rl_restore_prompt();
  rl_replace_line(r->saved, 0);
  rl_point = r->saved_point;
  rl_redisplay();
  free(r->saved);
  r->saved = NULL;
}

/* print, wrapped: upvalue 1 is the runtime, 2 the original print. */
static int l_repl_print(lua_State *L) {
  sl_runtime *rt = lua_touserdata(L, lua_upvalueindex(1));
  int muted = sl_repl_mute(rt->repl), rc;
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  rc = lua_pcall(L, lua_gettop(L) - 1, 0, 0);
  sl_repl_unmute(rt->repl, muted);
  if (rc) return lua_error(L);
  return 0;
}

/* The runtime's failure reports (a task nobody awaits), likewise. */
static void sl_repl_on_error(sl_runtime *rt, const char *report, void *ud) {
  sl_repl *r = rt->repl;
  int muted = sl_repl_mute(r);
  if (r) r->error_fn(rt, report, ud);
  sl_repl_unmute(r, muted);
}

static void sl_repl_on_winch(uv_signal_t *h, int signum) {
  sl_repl *r = sl_repl_of(h, winch);
  (void)signum;
  if (r->shown) rl_resize_terminal();
  else rl_reset_screen_size();
}

/* ---- running a line ---- */

/* Cancels the running line, with a reason its "cancelled" error shows. */
static void sl_repl_cancel_line(sl_repl *r, const char *reason) {
  lua_State *L = r->rt->L;
  if (!r->line || r->line->status >= SL_DONE || r->line->cancelled) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->line_ref);
  sl_task_env(L, -1, 1);
  lua_pushstring(L, reason);
  lua_setfield(L, -2, "reason");
  lua_pop(L, 2);
  sl_task_cancel(r->line);
}

/* Is the loop quiet -- no task ready, no handle or request but the
 * guard and the scheduler's timer -- so that only timers can wake a task? */
static int sl_repl_quiet(sl_repl *r) {
  sl_sched *S = &r->rt->S;
  uv_loop_t *loop = r->rt->loop;
  unsigned own = (unsigned)(uv_has_ref((uv_handle_t *)&r->guard) +
                            uv_is_active((uv_handle_t *)&S->uvtimer));
  return sl_queue_empty(&S->ready) && loop->active_handles <= own &&
         loop->active_reqs.count == 0 && loop->closing_handles == NULL;
}

/* Before each poll while a line runs.  Being active and referenced it
 * keeps the loop running, so a line that waits on something that never
 * comes does not end the session (the runtime would call that a
 * deadlock and cancel everything, once).  If nothing at all can wake the
 * line -- not even a timer -- this says so and cancels the line.  On the
 * virtual clock the scheduler makes time jump only when no other handle
 * is active: the guard steps back (unref) when only timers are left. */
static void sl_repl_guard_cb(uv_prepare_t *h) {
  sl_repl *r = sl_repl_of(h, guard);
  sl_sched *S = &r->rt->S;
  if (!r->line || r->line->status != SL_WAITING || !sl_repl_quiet(r)) {
    uv_ref((uv_handle_t *)h);
    return;
  }
  if (S->timers.len > 0) {
    if (S->virtual_clock) uv_unref((uv_handle_t *)h);
    return;
  }
  fprintf(stderr, "sluice: deadlock: nothing can wake this line (waiting on %s)\n",
          r->line->wait.what ? r->line->wait.what : "?");
  sl_repl_cancel_line(r, "deadlock");
}

/* Starts run(fn) as the line's task; fn (a function, or the main task
 * to wait for) is on top of L and is popped. */
static void sl_repl_spawn(sl_repl *r, lua_State *L) {
  sl_sched *S = &r->rt->S;
  sl_task *t;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->run_ref);
  lua_insert(L, -2);
  t = sl_spawn(L, S, &S->root, -2, 1);
  t->observed = 1;   /* its errors are shown here, never reported */
  t->shield = 1;     /* see sl_repl_runner */
  lua_pushliteral(L, "repl");
  lua_setfield(L, -2, "name");
  r->line = t;
  r->line_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 2);
}

/* begin(): a line's task started; from now on it can be cancelled. */
static int l_repl_begin(lua_State *L) {
  sl_sched *S = sl_getsched(L);
  if (S->current && S->current->shield) S->current->shield--;
  return 0;
}

/* done(): called by the runner as the line's task ends. */
static int l_repl_done(lua_State *L) {
  sl_runtime *rt = lua_touserdata(L, lua_upvalueindex(1));
  sl_repl *r = rt->repl;
  if (!r) return 0;   /* the REPL was closed meanwhile */
  luaL_unref(L, LUA_REGISTRYINDEX, r->line_ref);
  r->line_ref = LUA_NOREF;
  r->line = NULL;
  r->waiting_main = 0;
  uv_prepare_stop(&r->guard);
  sl_repl_show(r);
  return 0;
}

static int sl_incomplete(const char *msg, size_t len) {
  static const char eof[] = "'<eof>'";
  return len >= sizeof eof - 1 && !strcmp(msg + len - (sizeof eof - 1), eof);
}

/* Compiles the chunk with text around it (NULL: none), pushing the
 * function or the error message. */
static int sl_repl_load(sl_repl *r, lua_State *L, const char *open, const char *close) {
  int rc;
  if (!open) return luaL_loadbuffer(L, r->chunk, r->len, SL_CHUNKNAME);
  lua_pushstring(L, open);
  lua_pushlstring(L, r->chunk, r->len);
  lua_pushstring(L, close);
  lua_concat(L, 3);
  rc = luaL_loadbuffer(L, lua_tostring(L, -1), lua_objlen(L, -1), SL_CHUNKNAME);
  lua_remove(L, -2);
  return rc;
}

/* Compiles the pending chunk: 1 with the function pushed, 0 if more
 * lines are needed, -1 after printing the syntax error.  An expression
 * list is compiled as the arguments of a call, not after "return": there
 * "f()" would be a tail call, and the line's frame would be missing from
 * tracebacks and from error positions ("stdin:1:"). */
static int sl_repl_compile(sl_repl *r, lua_State *L) {
  size_t len;
  const char *msg;
  /* a comment at the end would swallow the ")": then it goes on a line
   * of its own (where it would not, errors would be placed on that line) */
  const char *close = strstr(r->chunk, "--") ? "\n)" : ")";
  int rc = sl_repl_load(r, L, "return (function(...) return ... end)(", close);
  if (rc == 0) return 1;
  lua_pop(L, 1);
  rc = sl_repl_load(r, L, r->expr_only ? "return " : NULL, "");
  if (rc == 0) return 1;
  msg = lua_tolstring(L, -1, &len);
  if (rc == LUA_ERRSYNTAX && msg && sl_incomplete(msg, len)) {
    lua_pop(L, 1);
    return 0;
  }
  fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
  lua_pop(L, 1);
  return -1;
}

/* Appends a line to the pending chunk.  Returns -1 out of memory. */
static int sl_repl_append(sl_repl *r, const char *line) {
  const char *prefix = r->len ? "\n" : "";
  size_t need;
  if (!r->len) r->expr_only = 0;
  if (!r->len && line[0] == '=') {
    r->expr_only = 1;
    line++;
  }
  need = r->len + strlen(prefix) + strlen(line) + 1;
  if (need > r->cap) {
    size_t cap = need < 256 ? 256 : need * 2;
    char *p = realloc(r->chunk, cap);
    if (!p) return -1;
    r->chunk = p;
    r->cap = cap;
  }
  r->len += (size_t)sprintf(r->chunk + r->len, "%s%s", prefix, line);
  return 0;
}

/* Adds a line to the history and appends it to the history file (which
 * append_history does not create: write_history does).  Failing to
 * write the file is not an error. */
static void sl_repl_remember(sl_repl *r, const char *line) {
  HIST_ENTRY *last = history_get(history_base + history_length - 1);
  if (!line[strspn(line, " \t")] || (last && !strcmp(last->line, line))) return;
  add_history(line);
  if (r->history && append_history(1, r->history) != 0)
    (void)write_history(r->history);
}

static void sl_repl_quit(sl_repl *r);

/* Readline's handler: a line was entered (NULL: Ctrl-D on an empty line). */
static void sl_repl_on_line(char *line) {
  sl_repl *r = sl_repl_active;
  lua_State *L;
  int rc;
  if (!r) {
    free(line);
    return;
  }
  if (!line) {
    fputc('\n', stdout);
    sl_repl_quit(r);
    return;
  }
  sl_repl_remember(r, line);
  rc = sl_repl_append(r, line);
  free(line);
  if (rc || r->chunk[strspn(r->chunk, " \t\r\n")] == '\0') {
    if (rc) fprintf(stderr, "sluice: not enough memory\n");
    r->len = 0;
    return;
  }
  L = r->rt->L;
  rc = sl_repl_compile(r, L);
  if (rc == 0) {
    rl_set_prompt(SL_PROMPT_MORE);
    return;
  }
  r->len = 0;
  rl_set_prompt(SL_PROMPT);
  if (rc < 0) return;
  sl_repl_hide(r);
  uv_prepare_start(&r->guard, sl_repl_guard_cb);
  sl_repl_spawn(r, L);
}

/* Ctrl-C: cancels the running line; at the prompt, drops what was typed
 * (and an unfinished chunk) and starts a fresh line, as shells do.  It
 * is ours from the start: after a Ctrl-C handled by the runtime, the
 * next one would end the process. */
static void sl_repl_interrupt(sl_runtime *rt) {
  sl_repl *r = rt->repl;
  if (!r) return;
  if (r->waiting_main) {   /* the script of -i: cancelled as without -i */
    fputc('\n', stderr);
    rt->interrupts++;
    sl_cancel_all(rt);
    return;
  }
  if (r->line) {
    fputc('\n', stderr);
    sl_repl_cancel_line(r, "interrupted");
    return;
  }
  if (!r->shown) return;
  r->len = 0;
  rl_point = rl_end;
  rl_redisplay();
  rl_echo_signal_char(SIGINT);
  rl_free_line_state();
  rl_callback_sigcleanup();
  rl_replace_line("", 0);
  using_history();
  rl_crlf();
  rl_set_prompt(SL_PROMPT);
  rl_on_new_line();
  rl_redisplay();
}

/* ---- start and end ---- */

static void sl_repl_closed(uv_handle_t *h) {
  sl_repl *r = h->type == UV_POLL ? sl_repl_of(h, input)
             : h->type == UV_SIGNAL ? sl_repl_of(h, winch) : sl_repl_of(h, guard);
  if (--r->open_handles > 0) return;
  free(r->chunk);
  free(r->history);
  free(r->saved);
  free(r);
}

/* Puts print back, unless the user replaced it meanwhile. */
static void sl_repl_unwrap_print(lua_State *L) {
  lua_getglobal(L, "print");
  if (lua_tocfunction(L, -1) == l_repl_print) {
    lua_getupvalue(L, -1, 2);
    lua_setglobal(L, "print");
  }
  lua_pop(L, 1);
}

void sl_repl_close(sl_runtime *rt) {
  sl_repl *r = rt->repl;
  if (!r) return;
  sl_repl_hide(r);
  rt->repl = NULL;
  sl_repl_active = NULL;
  if (rt->on_interrupt == sl_repl_interrupt) rt->on_interrupt = NULL;
  if (rt->on_error == sl_repl_on_error) rt->on_error = r->error_fn;
  if (r->history) (void)history_truncate_file(r->history, SL_HISTORY_MAX);
  clear_history();
  sl_repl_unwrap_print(rt->L);
  luaL_unref(rt->L, LUA_REGISTRYINDEX, r->line_ref);
  luaL_unref(rt->L, LUA_REGISTRYINDEX, r->run_ref);
  uv_close((uv_handle_t *)&r->input, sl_repl_closed);
  uv_close((uv_handle_t *)&r->winch, sl_repl_closed);
  uv_close((uv_handle_t *)&r->guard, sl_repl_closed);
}

/* Ctrl-D: the REPL ends, and so do the tasks it left running. */
static void sl_repl_quit(sl_repl *r) {
  sl_runtime *rt = r->rt;
  sl_repl_close(rt);
  sl_cancel_all(rt);
}

static void sl_repl_init_readline(sl_repl *r) {
  const char *home = getenv("HOME");
  rl_readline_name = "sluice";
  rl_catch_signals = 0;     /* SIGINT is the runtime's; see sl_repl_interrupt */
  rl_catch_sigwinch = 0;    /* the loop watches SIGWINCH */
  using_history();
  stifle_history(SL_HISTORY_MAX);
  if (home && home[0] && (r->history = malloc(strlen(home) + sizeof SL_HISTORY_FILE)))
    sprintf(r->history, "%s%s", home, SL_HISTORY_FILE);
  if (r->history) (void)read_history(r->history);
}

/* The runner, print wrapped.  Returns 0 or -1. */
static int sl_repl_init_lua(sl_repl *r, lua_State *L) {
  sl_runtime *rt = r->rt;
  if (luaL_loadbuffer(L, sl_repl_runner, sizeof sl_repl_runner - 1, "=[repl]")) {
    fprintf(stderr, "sluice: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, l_repl_done, 1);
  lua_pushcfunction(L, l_repl_begin);
  if (lua_pcall(L, 2, 1, 0)) {
    fprintf(stderr, "sluice: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  r->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, rt);
  lua_getglobal(L, "print");
  lua_pushcclosure(L, l_repl_print, 2);
  lua_setglobal(L, "print");
  r->error_fn = rt->on_error;
  rt->on_error = sl_repl_on_error;
  return 0;
}

/* The first prompt comes once the main chunk (the script of -i) ended. */
static void sl_repl_after_main(sl_repl *r, lua_State *L) {
  int i, n;
  sl_task **v = sl_sched_list(&r->rt->S, &n);
  for (i = 0; i < n; i++) {
    if (v[i]->is_main) {
      sl_pushtask(L, v[i]);
      free(v);
      sl_repl_spawn(r, L);
      r->waiting_main = 1;
      return;
    }
  }
  free(v);
  sl_repl_show(r);
}

int sl_repl_start(sl_runtime *rt) {
  sl_repl *r;
  int flags = fcntl(0, F_GETFL), rc;
  if (rt->repl) return 0;
  if (!(r = calloc(1, sizeof *r))) return -1;
  if ((rc = uv_poll_init(rt->loop, &r->input, 0))) {
    fprintf(stderr, "sluice: cannot read commands from stdin: %s\n", uv_strerror(rc));
    free(r);
    return -1;
  }
  /* uv_poll_init made fd 0 non-blocking, and with it the terminal's
   * stdout and stderr (one open file): writes could then fail. */
  if (flags != -1) (void)fcntl(0, F_SETFL, flags);
  uv_signal_init(rt->loop, &r->winch);
  uv_prepare_init(rt->loop, &r->guard);
  r->input.data = r->winch.data = r->guard.data = NULL;
  r->open_handles = 3;
  r->rt = rt;
  r->line_ref = r->run_ref = LUA_NOREF;
  rt->repl = r;
  sl_repl_active = r;
  rt->on_interrupt = sl_repl_interrupt;
  uv_signal_start(&r->winch, sl_repl_on_winch, SIGWINCH);
  uv_unref((uv_handle_t *)&r->winch);
  sl_repl_init_readline(r);
  if (sl_repl_init_lua(r, rt->L)) {
    sl_repl_close(rt);
    return -1;
  }
  sl_repl_after_main(r, rt->L);
  return 0;
}
