/*
 * test_copy.c - unit tests of the value copier (lib/sl_copy.c): values
 * round-trip between two independent Lua states; what cannot be copied
 * fails with its path; malformed input is refused.
 */
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

#include "sl_check.h"
#include "sl_copy.h"

static lua_State *A, *B;

/* Runs chunk in A (it returns one value), copies it into B and returns
 * B's serialisation of it (through a tiny dumper run in B). */
static int roundtrip(const char *chunk, char err[SL_COPY_ERRMAX], sl_buf *b) {
  sl_buf_reset(b);
  if (luaL_dostring(A, chunk)) return -2;
  if (sl_copy_encode(A, -1, b, "v", err)) {
    lua_settop(A, 0);
    return -1;
  }
  lua_settop(A, 0);
  return sl_copy_decode(B, b);
}

static void test_scalars(void) {
  char err[SL_COPY_ERRMAX];
  sl_buf b;
  size_t n;
  sl_buf_init(&b);
  CHECK(roundtrip("return 1.5", err, &b) == 0 && lua_tonumber(B, -1) == 1.5);
  CHECK(roundtrip("return 'a\\0b'", err, &b) == 0);
  CHECK(memcmp(lua_tolstring(B, -1, &n), "a\0b", 3) == 0 && n == 3);
  CHECK(roundtrip("return true", err, &b) == 0 && lua_toboolean(B, -1));
  CHECK(roundtrip("return nil", err, &b) == 0 && lua_isnil(B, -1));
  lua_settop(B, 0);
  sl_buf_free(&b);
}

static void test_tables(void) {
  char err[SL_COPY_ERRMAX];
  sl_buf b;
  sl_buf_init(&b);
  CHECK(roundtrip("local s = {1} return { s, s, x = { y = 'z' }, [true] = 2, [2.5] = 'f' }", err, &b) == 0);
  lua_setglobal(B, "v");
  CHECK(luaL_dostring(B, "return v[1][1] == 1 and v[2][1] == 1 and v[1] ~= v[2] and "
                         "v.x.y == 'z' and v[true] == 2 and v[2.5] == 'f'") == 0);
  CHECK(lua_toboolean(B, -1));
  CHECK(b.pos == b.len);
  lua_settop(B, 0);
  sl_buf_free(&b);
}

static void test_errors(void) {
  char err[SL_COPY_ERRMAX];
  sl_buf b;
  sl_buf_init(&b);
  CHECK(roundtrip("return { a = { print } }", err, &b) == -1);
  CHECK(strcmp(err, "v.a[1]: cannot send a function") == 0);
  CHECK(roundtrip("local t = {} t.t = t return t", err, &b) == -1);
  CHECK(strcmp(err, "v.t: cannot send a table cycle") == 0);
  CHECK(roundtrip("return { [{}] = 1 }", err, &b) == -1);
  CHECK(strcmp(err, "v: cannot send a table as a key") == 0);
  CHECK(roundtrip("return io.stdout", err, &b) == -1);
  CHECK(strcmp(err, "v: cannot send a userdata") == 0);
  CHECK(lua_gettop(A) == 0);
  sl_buf_free(&b);
}

static void test_malformed(void) {
  sl_buf b;
  sl_buf_init(&b);
  CHECK(sl_buf_put(&b, "s\xff\xff\x00\x00", 5) == 0);   /* string longer than the buffer */
  CHECK(sl_copy_decode(B, &b) == -1 && lua_gettop(B) == 0);
  sl_buf_reset(&b);
  CHECK(sl_buf_put(&b, "Tn", 2) == 0);                 /* unterminated table */
  CHECK(sl_copy_decode(B, &b) == -1 && lua_gettop(B) == 0);
  sl_buf_reset(&b);
  CHECK(sl_buf_put(&b, "Tnn", 3) == 0);                /* nil key */
  CHECK(sl_copy_decode(B, &b) == -1 && lua_gettop(B) == 0);
  sl_buf_reset(&b);
  CHECK(sl_buf_put(&b, "?", 1) == 0);
  CHECK(sl_copy_decode(B, &b) == -1);
  sl_buf_free(&b);
}

int main(void) {
  A = luaL_newstate();
  B = luaL_newstate();
  luaL_openlibs(A);
  luaL_openlibs(B);
  RUN(test_scalars);
  RUN(test_tables);
  RUN(test_errors);
  RUN(test_malformed);
  lua_close(A);
  lua_close(B);
  return sl_check_done();
}
