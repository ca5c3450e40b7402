/*
 * sl_workers.c - sluice.workers: a pool of OS threads for CPU-bound Lua.
 *
 * Each worker is a thread of its own (uv_thread_create, not libuv's
 * shared threadpool, which file system and DNS requests need) with its
 * own LuaJIT state.  Jobs travel as bytes (sl_copy.h): the function as
 * bytecode or a "module.function" name, then the arguments; results or
 * the error come back the same way.  No Lua value is ever shared.
 *
 * Queues: pending jobs wait in P->queue under P->mu and a worker takes
 * the head when it wakes on P->cond; a finished job goes to P->done and
 * the worker signals the one uv_async_t, whose callback (on the loop's
 * thread) wakes each job's caller.  The async handle is referenced only
 * while jobs are outstanding, so an idle pool does not keep the process
 * alive.  Everything else (the free list, the caller pointers, the
 * outstanding count) belongs to the loop's thread.
 *
 * Cancellation: the caller parks with sl_job_unwait as its hook.  A job
 * still queued is taken out and recycled; a running one is orphaned
 * (job->task = NULL): it finishes, its result is dropped, the worker
 * goes on.  Job records and their buffers are reused, so a steady
 * stream of jobs allocates nothing once warm.
 *
 * Closing drains: new jobs are refused, queued and running ones finish
 * and their callers get their results, then the threads are joined.  A
 * pool collected unclosed (or at state close) drops its queued jobs and
 * joins its threads, which waits for running jobs to end.
 */
#include "sl_lua.h"
#include "sl_copy.h"

#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SL_WORKERS_MT "sluice.workers"

enum { SL_JOB_FREE, SL_JOB_QUEUED, SL_JOB_RUNNING, SL_JOB_DONE };
/* How a job ended (job->outcome). */
enum { SL_JOB_OK, SL_JOB_ERROR, SL_JOB_INVALID };

typedef struct sl_pool sl_pool;

typedef struct sl_job {
  sl_queue link;          /* in P->queue, P->done or P->free */
  sl_queue all;           /* in P->jobs: every record, for freeing */
  sl_pool *pool;
  sl_task *task;          /* the caller, NULL once it left */
  sl_buf in, out;
  int state, outcome, nres;
} sl_job;

typedef struct sl_worker {
  uv_thread_t thread;
  sl_pool *pool;
  int started;
} sl_worker;

struct sl_pool {
  uv_mutex_t mu;
  uv_cond_t cond;
  uv_async_t async;
  sl_queue queue;         /* pending jobs (mu) */
  sl_queue done;          /* finished, not yet delivered (mu) */
  sl_queue free;          /* spare records (loop thread) */
  sl_queue jobs;          /* every record (loop thread) */
  sl_queue closers;       /* tasks parked in close (their wait.link) */
  sl_sched *sched;
  sl_worker *workers;
  char *path, *cpath;     /* the creating state's package.path/cpath */
  int size;
  int nqueued, nrunning;  /* mu */
  int stop;               /* mu: workers exit once the queue is empty */
  int outstanding;        /* queued + running + results not yet taken */
  int closing, joined, refd;
  int handle_closed, ud_gone;   /* both: the record is freed */
  uint64_t completed;
};

typedef struct { sl_pool *P; } sl_pool_ud;

/* ---------------------------------------------------------------- workers */

/* Keeps the traceback of a failing job (the error value is unchanged). */
static int sl_worker_onerror(lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "sluice.worker.tb");
  return 1;
}

/* Pushes the job's function: bytecode loaded once per worker, or
 * require(module)[field].  Returns 0, or 1 with an error message. */
static int sl_worker_fn(lua_State *L, sl_buf *in) {
  char kind;
  uint32_t n;
  const char *s, *dot;
  if (sl_buf_get(in, &kind, 1) || sl_buf_get(in, &n, sizeof n)) return 1;
  s = in->p + in->pos;
  in->pos += n;
  lua_getfield(L, LUA_REGISTRYINDEX, "sluice.worker.fns");
  lua_pushlstring(L, s, n);
  lua_rawget(L, -2);
  if (lua_isfunction(L, -1)) {
    lua_remove(L, -2);
    return 0;
  }
  lua_pop(L, 1);
  if (kind == 'b') {
    if (luaL_loadbuffer(L, s, n, "=job")) return 1;
  } else {
    dot = s + n;
    while (dot > s && dot[-1] != '.') dot--;
    lua_getglobal(L, "require");
    lua_pushlstring(L, s, (size_t)(dot - s - 1));
    if (lua_pcall(L, 1, 1, 0)) return 1;
    lua_pushlstring(L, dot, (size_t)(s + n - dot));
    lua_gettable(L, -2);
    if (!lua_isfunction(L, -1)) {
      lua_pushlstring(L, s, n);
      lua_pushfstring(L, "workers:run: %s is not a function (got %s)", lua_tostring(L, -1),
                      luaL_typename(L, -2));
      return 1;
    }
    lua_remove(L, -2);
  }
  lua_pushlstring(L, s, n);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
  return 0;
}

/* Error value (copied if it can be, else as text) and traceback. */
static void sl_worker_error(lua_State *L, sl_job *j, int idx) {
  char err[SL_COPY_ERRMAX];
  size_t n = j->out.len;
  j->outcome = SL_JOB_ERROR;
  if (sl_copy_encode(L, idx, &j->out, "error", err)) {
    j->out.len = n;
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, idx);
    lua_pcall(L, 1, 1, 0);
    if (!lua_isstring(L, -1)) lua_pushliteral(L, "(error object is not a string)");
    sl_copy_encode(L, -1, &j->out, "error", err);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "sluice.worker.tb");
  if (!lua_isstring(L, -1)) lua_pushliteral(L, "stack traceback:");
  sl_copy_encode(L, -1, &j->out, "traceback", err);
}

static void sl_worker_run(lua_State *L, sl_job *j) {
  char err[SL_COPY_ERRMAX];
  uint32_t nargs, i;
  int base, n;
  lua_settop(L, 0);
  lua_pushcfunction(L, sl_worker_onerror);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "sluice.worker.tb");
  sl_buf_reset(&j->out);
  j->nres = 0;
  if (sl_worker_fn(L, &j->in)) {
    sl_worker_error(L, j, -1);
    return;
  }
  base = lua_gettop(L);
  if (sl_buf_get(&j->in, &nargs, sizeof nargs) || !lua_checkstack(L, (int)nargs + 8)) {
    lua_pushliteral(L, "workers:run: too many arguments");
    sl_worker_error(L, j, -1);
    return;
  }
  for (i = 0; i < nargs; i++) sl_copy_decode(L, &j->in);
  if (lua_pcall(L, (int)nargs, LUA_MULTRET, 1)) {
    sl_worker_error(L, j, -1);
    return;
  }
  n = lua_gettop(L) - base + 1;
  j->outcome = SL_JOB_OK;
  for (i = 0; i < (uint32_t)n; i++) {
    char path[32];
    snprintf(path, sizeof path, "result[%u]", i + 1);
    if (sl_copy_encode(L, base + (int)i, &j->out, path, err)) {
      sl_buf_reset(&j->out);
      j->outcome = SL_JOB_INVALID;
      lua_pushfstring(L, "workers:run: %s", err);
      sl_copy_encode(L, -1, &j->out, "error", err);
      return;
    }
  }
  j->nres = n;
}

static lua_State *sl_worker_state(sl_pool *P) {
  lua_State *L = luaL_newstate();
  if (!L) return NULL;
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, P->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, P->cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "sluice.worker.fns");
  return L;
}

static void sl_worker_main(void *arg) {
  sl_worker *w = arg;
  sl_pool *P = w->pool;
  lua_State *L = sl_worker_state(P);
  sl_job *j;
  for (;;) {
    uv_mutex_lock(&P->mu);
    while (!P->stop && sl_queue_empty(&P->queue)) uv_cond_wait(&P->cond, &P->mu);
    if (sl_queue_empty(&P->queue)) {
      uv_mutex_unlock(&P->mu);
      break;
    }
    j = sl_queue_data(sl_queue_head(&P->queue), sl_job, link);
    sl_queue_remove(&j->link);
    j->state = SL_JOB_RUNNING;
    P->nqueued--;
    P->nrunning++;
    uv_mutex_unlock(&P->mu);
    if (L) {
      sl_worker_run(L, j);
    } else {   /* no state: the caller is told (empty message) */
      j->outcome = SL_JOB_INVALID;
      sl_buf_reset(&j->out);
    }
    uv_mutex_lock(&P->mu);
    j->state = SL_JOB_DONE;
    P->nrunning--;
    sl_queue_insert_tail(&P->done, &j->link);
    uv_mutex_unlock(&P->mu);
    uv_async_send(&P->async);
  }
  if (L) lua_close(L);
}

/* ------------------------------------------------------------- loop side */

static void sl_pool_ref(sl_pool *P, int on) {
  if (on == P->refd) return;
  P->refd = on;
  if (on) uv_ref((uv_handle_t *)&P->async);
  else uv_unref((uv_handle_t *)&P->async);
}

static void sl_job_recycle(sl_pool *P, sl_job *j) {
  j->state = SL_JOB_FREE;
  j->task = NULL;
  sl_buf_reset(&j->in);
  sl_buf_reset(&j->out);
  sl_queue_insert_head(&P->free, &j->link);
}

static void sl_pool_settled(sl_pool *P) {
  if (--P->outstanding > 0) return;
  sl_pool_ref(P, 0);
  while (!sl_queue_empty(&P->closers)) {
    sl_queue *q = sl_queue_head(&P->closers);
    sl_queue_remove(q);
    sl_task_wake(sl_queue_data(q, sl_task, wait.link), SL_WAKE_OK);
  }
}

/* Delivers finished jobs: wakes their callers, recycles orphans. */
static void sl_async_cb(uv_async_t *h) {
  sl_pool *P = h->data;
  sl_queue done, *q;
  sl_queue_init(&done);
  uv_mutex_lock(&P->mu);
  while (!sl_queue_empty(&P->done)) {
    q = sl_queue_head(&P->done);
    sl_queue_remove(q);
    sl_queue_insert_tail(&done, q);
  }
  uv_mutex_unlock(&P->mu);
  while (!sl_queue_empty(&done)) {
    sl_job *j = sl_queue_data(sl_queue_head(&done), sl_job, link);
    sl_queue_remove(&j->link);
    sl_queue_init(&j->link);
    P->completed++;
    if (j->task) {   /* outstanding until the caller took the results */
      sl_task_wake(j->task, SL_WAKE_OK);
    } else {
      sl_job_recycle(P, j);
      sl_pool_settled(P);
    }
  }
}

/* The caller was cancelled: a queued job leaves, a running one is
 * orphaned and finishes on its own. */
static int sl_job_unwait(sl_task *t, int why) {
  sl_job *j = t->wait.obj;
  sl_pool *P = j->pool;
  int queued;
  (void)why;
  uv_mutex_lock(&P->mu);
  queued = (j->state == SL_JOB_QUEUED);
  if (queued) {
    sl_queue_remove(&j->link);
    P->nqueued--;
  }
  j->task = NULL;
  uv_mutex_unlock(&P->mu);
  if (queued) {
    sl_job_recycle(P, j);
    sl_pool_settled(P);
  }
  return 1;
}

/* The async handle closed: everything but the pool record goes; the
 * record too once its userdata is collected (the object may still be
 * asked for its fields after close). */
static void sl_pool_closed(uv_handle_t *h) {
  sl_pool *P = h->data;
  while (!sl_queue_empty(&P->jobs)) {
    sl_job *j = sl_queue_data(sl_queue_head(&P->jobs), sl_job, all);
    sl_queue_remove(&j->all);
    sl_buf_free(&j->in);
    sl_buf_free(&j->out);
    free(j);
  }
  uv_mutex_destroy(&P->mu);
  uv_cond_destroy(&P->cond);
  free(P->workers);
  free(P->path);
  free(P->cpath);
  P->workers = NULL;
  P->path = P->cpath = NULL;
  P->handle_closed = 1;
  if (P->ud_gone) free(P);
}

/* Stops and joins the threads (queued jobs first run, unless drop) and
 * closes the async handle, which frees the pool. */
static void sl_pool_shutdown(sl_pool *P, int drop) {
  int i;
  if (P->joined) return;
  P->joined = P->closing = 1;
  uv_mutex_lock(&P->mu);
  if (drop) {
    while (!sl_queue_empty(&P->queue)) {
      sl_queue *q = sl_queue_head(&P->queue);
      sl_queue_remove(q);
      sl_queue_init(q);
      P->nqueued--;
    }
  }
  P->stop = 1;
  uv_cond_broadcast(&P->cond);
  uv_mutex_unlock(&P->mu);
  for (i = 0; i < P->size; i++)
    if (P->workers[i].started) uv_thread_join(&P->workers[i].thread);
  uv_close((uv_handle_t *)&P->async, sl_pool_closed);
}

/* ---------------------------------------------------------------- Lua face */

static sl_pool *sl_checkpool(lua_State *L, const char *fn) {
  sl_pool_ud *u = luaL_testudata(L, 1, SL_WORKERS_MT);
  if (!u) sl_raise(L, "invalid", "%s: self must be a worker pool (got %s)", fn, luaL_typename(L, 1));
  return u->P;
}

static char *sl_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static int sl_pool_start(sl_pool *P) {
  int i;
  for (i = 0; i < P->size; i++) {
    P->workers[i].pool = P;
    if (uv_thread_create(&P->workers[i].thread, sl_worker_main, &P->workers[i])) return -1;
    P->workers[i].started = 1;
  }
  return 0;
}

/* core.new(size, path, cpath) -> pool userdata. */
static int l_new(lua_State *L) {
  sl_sched *S = sl_getsched(L);
  int size = (int)luaL_checkinteger(L, 1);
  const char *path = luaL_checkstring(L, 2), *cpath = luaL_checkstring(L, 3);
  sl_pool_ud *u = lua_newuserdata(L, sizeof *u);
  sl_pool *P;
  u->P = NULL;
  luaL_getmetatable(L, SL_WORKERS_MT);
  lua_setmetatable(L, -2);
  if (!(P = calloc(1, sizeof *P)) || !(P->workers = calloc((size_t)size, sizeof *P->workers)) ||
      !(P->path = sl_strdup(path)) || !(P->cpath = sl_strdup(cpath))) {
    if (P) { free(P->workers); free(P->path); free(P); }
    return luaL_error(L, "sluice.workers: out of memory");
  }
  P->sched = S;
  P->size = size;
  sl_queue_init(&P->queue);
  sl_queue_init(&P->done);
  sl_queue_init(&P->free);
  sl_queue_init(&P->jobs);
  sl_queue_init(&P->closers);
  uv_mutex_init(&P->mu);
  uv_cond_init(&P->cond);
  uv_async_init(S->loop, &P->async, sl_async_cb);
  P->async.data = P;
  uv_unref((uv_handle_t *)&P->async);
  u->P = P;
  if (sl_pool_start(P)) {
    u->P = NULL;
    P->ud_gone = 1;   /* freed when its handle has closed */
    sl_pool_shutdown(P, 1);
    return luaL_error(L, "sluice.workers: cannot start a thread");
  }
  return 1;
}

static sl_job *sl_job_get(sl_pool *P) {
  sl_job *j;
  if (!sl_queue_empty(&P->free)) {
    j = sl_queue_data(sl_queue_head(&P->free), sl_job, link);
    sl_queue_remove(&j->link);
    return j;
  }
  if (!(j = calloc(1, sizeof *j))) return NULL;
  j->pool = P;
  sl_buf_init(&j->in);
  sl_buf_init(&j->out);
  sl_queue_insert_tail(&P->jobs, &j->all);
  return j;
}

/* Encodes kind, code and the arguments from stack index 4 on. */
static int sl_job_encode(lua_State *L, sl_job *j, char err[SL_COPY_ERRMAX]) {
  size_t n;
  const char *code = lua_tolstring(L, 3, &n);
  char kind = *lua_tostring(L, 2), path[32];
  uint32_t len = (uint32_t)n, nargs = (uint32_t)(lua_gettop(L) - 3), i;
  if (sl_buf_put(&j->in, &kind, 1) || sl_buf_put(&j->in, &len, sizeof len) ||
      sl_buf_put(&j->in, code, n) || sl_buf_put(&j->in, &nargs, sizeof nargs)) {
    strcpy(err, "out of memory");
    return -1;
  }
  for (i = 0; i < nargs; i++) {
    snprintf(path, sizeof path, "args[%u]", i + 1);
    if (sl_copy_encode(L, 4 + (int)i, &j->in, path, err)) return -1;
  }
  return 0;
}

/* core.submit(pool, kind, code, ...) -> job (lightuserdata), the task
 * parked: the caller yields.  Nothing if a cancellation is pending. */
static int l_submit(lua_State *L) {
  sl_pool *P = sl_checkpool(L, "workers:run");
  sl_task *t = sl_running(L, "workers:run");
  char err[SL_COPY_ERRMAX];
  sl_job *j;
  if (P->closing) return sl_raise(L, "closed", "workers:run: the pool is closed");
  if (sl_task_cancel_due(t)) return 0;
  if (!(j = sl_job_get(P))) return luaL_error(L, "workers:run: out of memory");
  if (sl_job_encode(L, j, err)) {
    sl_job_recycle(P, j);
    return sl_raise(L, "invalid", "workers:run: %s", err);
  }
  j->task = t;
  j->state = SL_JOB_QUEUED;
  uv_mutex_lock(&P->mu);
  sl_queue_insert_tail(&P->queue, &j->link);
  P->nqueued++;
  uv_cond_signal(&P->cond);
  uv_mutex_unlock(&P->mu);
  P->outstanding++;
  sl_pool_ref(P, 1);
  sl_task_park(t, "workers:run", j, sl_job_unwait);
  lua_pushlightuserdata(L, j);
  return 1;
}

/* core.finish(job) -> "ok", results... | "error", value, traceback |
 * "invalid", message.  Recycles the job. */
static int l_finish(lua_State *L) {
  sl_job *j = lua_touserdata(L, 1);
  static const char *names[] = { "ok", "error", "invalid" };
  int i, n = j->outcome == SL_JOB_OK ? j->nres : j->outcome == SL_JOB_ERROR ? 2 : 1;
  luaL_checkstack(L, n + 2, "workers:run: too many results");
  lua_settop(L, 0);
  lua_pushstring(L, names[j->outcome]);
  j->out.pos = 0;
  for (i = 0; i < n; i++) {
    if (sl_copy_decode(L, &j->out)) {
      lua_settop(L, 0);
      lua_pushliteral(L, "invalid");
      lua_pushliteral(L, "workers:run: the worker could not run the job (out of memory)");
      break;
    }
  }
  sl_job_recycle(j->pool, j);
  sl_pool_settled(j->pool);
  return lua_gettop(L);
}

/* core.close(pool) -> jobs outstanding; refuses new jobs from now on. */
static int l_close(lua_State *L) {
  sl_pool *P = sl_checkpool(L, "workers:close");
  P->closing = 1;
  lua_pushinteger(L, P->joined ? 0 : P->outstanding);
  return 1;
}

static int sl_closer_unwait(sl_task *t, int why) {
  (void)why;
  sl_queue_remove(&t->wait.link);
  return 1;
}

/* core.wait_idle(pool): parks the task until nothing is outstanding. */
static int l_wait_idle(lua_State *L) {
  sl_pool *P = sl_checkpool(L, "workers:close");
  sl_task *t = sl_running(L, "workers:close");
  sl_queue_insert_tail(&P->closers, &t->wait.link);
  sl_task_park(t, "workers:close", P, sl_closer_unwait);
  return 0;
}

static int l_join(lua_State *L) {
  sl_pool *P = sl_checkpool(L, "workers:close");
  sl_pool_shutdown(P, 0);
  return 0;
}

static int l_gc(lua_State *L) {
  sl_pool_ud *u = lua_touserdata(L, 1);
  sl_pool *P = u->P;
  u->P = NULL;
  if (!P) return 0;
  sl_pool_shutdown(P, 1);
  P->ud_gone = 1;
  if (P->handle_closed) free(P);
  return 0;
}

/* core.info(pool) -> size, busy, queued, closed, completed. */
static int l_info(lua_State *L) {
  sl_pool *P = sl_checkpool(L, "workers");
  int busy = 0, queued = 0;
  if (!P->joined) {
    uv_mutex_lock(&P->mu);
    busy = P->nrunning;
    queued = P->nqueued;
    uv_mutex_unlock(&P->mu);
  }
  lua_pushinteger(L, P->size);
  lua_pushinteger(L, busy);
  lua_pushinteger(L, queued);
  lua_pushboolean(L, P->closing);
  lua_pushnumber(L, (double)P->completed);
  return 5;
}

static int l_cpus(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
  return 1;
}

/* core.warn_blocking(seconds | 0) -> the previous setting (0: off). */
static int l_warn_blocking(lua_State *L) {
  sl_sched *S = sl_getsched(L);
  double prev = S->warn_blocking;
  S->warn_blocking = luaL_checknumber(L, 1);
  lua_pushnumber(L, prev);
  return 1;
}

static const luaL_Reg sl_workers_funcs[] = {
  {"new", l_new}, {"submit", l_submit}, {"finish", l_finish}, {"close", l_close},
  {"wait_idle", l_wait_idle}, {"join", l_join}, {"info", l_info}, {"cpus", l_cpus},
  {"warn_blocking", l_warn_blocking}, {NULL, NULL}
};

int luaopen_sluice_workers_core(lua_State *L) {
  luaL_newmetatable(L, SL_WORKERS_MT);
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, sl_workers_funcs);
  return 1;
}
