/*
 * sl_copy.h - copying Lua values between independent Lua states.
 *
 * A value is flattened into a byte buffer (sl_buf) by one state and
 * rebuilt from it by another, possibly on another thread: the buffer is
 * plain memory, so it may be handed over under a mutex.  Copyable are
 * nil, booleans, numbers, strings and tables of these (nested, no
 * cycles; keys strings, numbers or booleans).  Anything else fails with
 * a message naming the path of the offending value, for example
 * "args[2].conn: cannot send a userdata".
 *
 * Format: a tag byte per value ('n' nil, 'f' false, 't' true, 'd' a
 * double, 's' a length and bytes, 'T' key/value pairs up to 'E').
 */
#ifndef SL_COPY_H
#define SL_COPY_H

#include <stddef.h>
#include <lua.h>

typedef struct sl_buf {
  char *p;
  size_t len, cap;        /* bytes written, bytes allocated */
  size_t pos;             /* read position */
} sl_buf;

#define SL_COPY_ERRMAX 320

void sl_buf_init(sl_buf *b);
void sl_buf_free(sl_buf *b);
/* Empties the buffer for reuse, keeping its memory. */
static inline void sl_buf_reset(sl_buf *b) { b->len = b->pos = 0; }
int  sl_buf_put(sl_buf *b, const void *p, size_t n);   /* -1: out of memory */
int  sl_buf_get(sl_buf *b, void *p, size_t n);         /* -1: short */

/* Appends the value at idx.  path names it in messages ("args[2]").
 * Returns 0, or -1 with the message in err. */
int  sl_copy_encode(lua_State *L, int idx, sl_buf *b, const char *path,
                    char err[SL_COPY_ERRMAX]);
/* Pushes the next value of b onto L.  Returns 0, or -1 (malformed). */
int  sl_copy_decode(lua_State *L, sl_buf *b);

#endif
