/*
 * View keys: Lua values to bytes whose bytewise (memcmp) order is the keys'
 * order, so LMDB ranges over encoded keys are ranges over keys.
 *
 * A key is a boolean, a number (integer or float, not NaN), a string, or an
 * array (a table with keys 1..n, n >= 0) of keys. The order across types:
 *   false < true < numbers < strings < arrays
 * numbers in numeric order, integers and floats together (3 and 3.0 are
 * distinct keys, the float first; every other pair is ordered by value);
 * strings bytewise; arrays element by element, a prefix first.
 *
 * The encoding is self-delimiting: a decoder knows where a key ends, so an
 * index can append a seq after it.
 */
#ifndef FLUME_RUNTIME_KEYS_H
#define FLUME_RUNTIME_KEYS_H

#include <lua.h>

#include "buf.h"
#include "format.h"

/* The key size limits (FLUME__KEY_MAX and its kin) are part of the stored
 * format: runtime/format.h. */

/*
 * Appends the key encoding of the Lua value at `idx` to `b`. Never raises,
 * never calls metamethods. On failure returns FLUME_EINVAL (not a key: nil,
 * NaN, a map, a function...; the message names it and where, like
 * "a key cannot be a table with non-sequence keys at [2]") or FLUME_ENOMEM,
 * leaves b->len unchanged, and writes the message into err[errlen].
 */
int flume__key_encode(lua_State *L, int idx, flume__buf *b, char *err,
                      size_t errlen);

/*
 * Decodes the key at the start of p[0..n), pushes it, and sets *used to the
 * bytes it took (so bytes after it, such as a seq, can follow). Returns 0,
 * or FLUME_EDECODE or FLUME_ENOMEM (no stack room), pushing nothing, with a
 * message in err[errlen]. Like any push it raises if Lua runs out of memory.
 * -0.0 and 0.0 are one key (it decodes as 0.0).
 */
int flume__key_decode(lua_State *L, const char *p, size_t n, size_t *used,
                      char *err, size_t errlen);

/* The length of the key encoding at the start of p[0..n), or 0 if there is
 * no valid key there. Does not touch Lua. */
size_t flume__key_length(const char *p, size_t n);

#endif
