/*
 * sl_copy.c - flattening Lua values into bytes and back (see sl_copy.h).
 *
 * The encoder walks the value depth first.  Tables on the current path
 * are marked in a scratch table on the stack, so a table met again on
 * its own path is a cycle (an error) while one shared by two branches is
 * simply copied twice.  The path of the value being written is kept as
 * text ("args[1].list[3]") so errors can say where the bad value is.
 */
#include "sl_copy.h"

#include <lauxlib.h>
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deeper nesting than this is refused (and keeps the C stack bounded). */
#define SL_COPY_DEPTH 100
#define SL_PATH_MAX 200

typedef struct sl_enc {
  lua_State *L;
  sl_buf *b;
  int seen;               /* stack index of the tables-on-the-path set */
  int depth;
  size_t plen;
  char path[SL_PATH_MAX + 8];
  char *err;
} sl_enc;

void sl_buf_init(sl_buf *b) {
  b->p = NULL;
  b->len = b->cap = b->pos = 0;
}

void sl_buf_free(sl_buf *b) {
  free(b->p);
  sl_buf_init(b);
}

int sl_buf_put(sl_buf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    char *np;
    while (cap < b->len + n) cap *= 2;
    if (!(np = realloc(b->p, cap))) return -1;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

int sl_buf_get(sl_buf *b, void *p, size_t n) {
  if (b->len - b->pos < n) return -1;
  memcpy(p, b->p + b->pos, n);
  b->pos += n;
  return 0;
}

static int sl_enc_fail(sl_enc *e, const char *fmt, const char *what) {
  char msg[80];
  snprintf(msg, sizeof msg, fmt, what);
  snprintf(e->err, SL_COPY_ERRMAX, "%s: %s", e->path, msg);
  return -1;
}

static int sl_enc_oom(sl_enc *e) {
  snprintf(e->err, SL_COPY_ERRMAX, "%s: out of memory", e->path);
  return -1;
}

static int sl_is_name(const char *s, size_t n) {
  size_t i;
  if (n == 0 || n > 40 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return 0;
  for (i = 1; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return 0;
  return 1;
}

/* Appends the key at idx to the path ("path.name", "path[3]"). */
static void sl_enc_push_key(sl_enc *e, int idx) {
  lua_State *L = e->L;
  char seg[64];
  size_t n;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tolstring(L, idx, &n);
    if (sl_is_name(s, n)) snprintf(seg, sizeof seg, ".%s", s);
    else snprintf(seg, sizeof seg, "[\"%.40s%s\"]", s, n > 40 ? "..." : "");
  } else if (lua_type(L, idx) == LUA_TNUMBER) {
    snprintf(seg, sizeof seg, "[%.14g]", lua_tonumber(L, idx));
  } else {
    snprintf(seg, sizeof seg, "[%s]", lua_toboolean(L, idx) ? "true" : "false");
  }
  n = strlen(seg);
  if (e->plen + n > SL_PATH_MAX) {
    if (e->plen < SL_PATH_MAX) memcpy(e->path + e->plen, "...", 4);
    e->plen = SL_PATH_MAX + 3;
    return;
  }
  memcpy(e->path + e->plen, seg, n + 1);
  e->plen += n;
}

static int sl_enc_value(sl_enc *e, int idx);

static int sl_enc_table(sl_enc *e, int idx) {
  lua_State *L = e->L;
  size_t plen = e->plen;
  char tag = 'T';
  lua_pushvalue(L, idx);
  lua_rawget(L, e->seen);
  if (lua_toboolean(L, -1)) return sl_enc_fail(e, "cannot send a %s cycle", "table");
  lua_pop(L, 1);
  if (e->depth >= SL_COPY_DEPTH) return sl_enc_fail(e, "nested too deeply (over %s levels)", "100");
  if (!lua_checkstack(L, 4) || sl_buf_put(e->b, &tag, 1)) return sl_enc_oom(e);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, e->seen);
  e->depth++;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, -2);
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN)
      return sl_enc_fail(e, "cannot send a %s as a key", lua_typename(L, kt));
    sl_enc_push_key(e, lua_gettop(L) - 1);
    if (sl_enc_value(e, lua_gettop(L) - 1) || sl_enc_value(e, lua_gettop(L))) return -1;
    e->plen = plen;
    e->path[plen] = '\0';
    lua_pop(L, 1);
  }
  e->depth--;
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, e->seen);
  tag = 'E';
  return sl_buf_put(e->b, &tag, 1) ? sl_enc_oom(e) : 0;
}

static int sl_enc_value(sl_enc *e, int idx) {
  lua_State *L = e->L;
  char tag;
  double d;
  size_t n;
  const char *s;
  uint32_t len;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: tag = 'n'; break;
  case LUA_TBOOLEAN: tag = lua_toboolean(L, idx) ? 't' : 'f'; break;
  case LUA_TNUMBER:
    d = lua_tonumber(L, idx);
    tag = 'd';
    if (sl_buf_put(e->b, &tag, 1) || sl_buf_put(e->b, &d, sizeof d)) return sl_enc_oom(e);
    return 0;
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &n);
    if (n > UINT32_MAX) return sl_enc_fail(e, "cannot send a %s over 4 GB", "string");
    tag = 's';
    len = (uint32_t)n;
    if (sl_buf_put(e->b, &tag, 1) || sl_buf_put(e->b, &len, sizeof len) ||
        sl_buf_put(e->b, s, n)) return sl_enc_oom(e);
    return 0;
  case LUA_TTABLE:
    return sl_enc_table(e, idx < 0 ? lua_gettop(L) + idx + 1 : idx);
  default:
    return sl_enc_fail(e, "cannot send a %s", luaL_typename(L, idx));
  }
  return sl_buf_put(e->b, &tag, 1) ? sl_enc_oom(e) : 0;
}

int sl_copy_encode(lua_State *L, int idx, sl_buf *b, const char *path,
                   char err[SL_COPY_ERRMAX]) {
  sl_enc e;
  int top = lua_gettop(L), rc;
  if (idx < 0) idx = top + idx + 1;
  e.L = L;
  e.b = b;
  e.depth = 0;
  e.err = err;
  snprintf(e.path, sizeof e.path, "%s", path);
  e.plen = strlen(e.path);
  if (!lua_checkstack(L, 8)) {
    snprintf(err, SL_COPY_ERRMAX, "%s: out of memory", path);
    return -1;
  }
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_newtable(L);
    e.seen = lua_gettop(L);
  } else {
    e.seen = 0;
  }
  rc = sl_enc_value(&e, idx);
  lua_settop(L, top);
  return rc;
}

static int sl_dec_value(lua_State *L, sl_buf *b, int depth) {
  char tag;
  double d;
  uint32_t len;
  if (sl_buf_get(b, &tag, 1)) return -1;
  switch (tag) {
  case 'n': lua_pushnil(L); return 0;
  case 'f': lua_pushboolean(L, 0); return 0;
  case 't': lua_pushboolean(L, 1); return 0;
  case 'd':
    if (sl_buf_get(b, &d, sizeof d)) return -1;
    lua_pushnumber(L, d);
    return 0;
  case 's':
    if (sl_buf_get(b, &len, sizeof len) || b->len - b->pos < len) return -1;
    lua_pushlstring(L, b->p + b->pos, len);
    b->pos += len;
    return 0;
  case 'T':
    if (depth > SL_COPY_DEPTH || !lua_checkstack(L, 4)) return -1;
    lua_newtable(L);
    for (;;) {
      if (b->pos < b->len && b->p[b->pos] == 'E') {
        b->pos++;
        return 0;
      }
      if (sl_dec_value(L, b, depth + 1)) return -1;
      if (lua_isnil(L, -1) || (lua_isnumber(L, -1) && isnan(lua_tonumber(L, -1))))
        return -1;   /* not a key our encoder writes: malformed */
      if (sl_dec_value(L, b, depth + 1)) return -1;
      lua_rawset(L, -3);
    }
  default:
    return -1;
  }
}

int sl_copy_decode(lua_State *L, sl_buf *b) {
  int top = lua_gettop(L);
  if (sl_dec_value(L, b, 0)) {
    lua_settop(L, top);
    return -1;
  }
  return 0;
}
