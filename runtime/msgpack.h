/*
 * The msgpack codec: Lua values straight to MessagePack bytes and back, with
 * no intermediate tree.
 */
#ifndef FLUME_RUNTIME_MSGPACK_H
#define FLUME_RUNTIME_MSGPACK_H

#include <lua.h>

#include "buf.h"

/* Deepest nesting of tables accepted by the encoder and the decoder. */
#define FLUME__MP_MAX_DEPTH 100

/*
 * Encodes the Lua value at `idx` and appends it to `b`. Does not call any
 * metamethod and does not raise. On failure returns FLUME_EENCODE (or
 * FLUME_ENOMEM), leaves b->len as it was, and writes a message naming the
 * value and where it is ("cannot encode a function at .a[3]") into
 * err[errlen].
 */
int flume__mp_encode(lua_State *L, int idx, flume__buf *b, char *err,
                     size_t errlen);

/*
 * Decodes exactly one value from p[0..n) and pushes it. Trailing bytes are
 * an error. Does not raise except on memory errors (lua_State allocation
 * failure raises as usual). On failure pushes nothing, returns
 * FLUME_EDECODE and writes a message into err[errlen].
 */
int flume__mp_decode(lua_State *L, const char *p, size_t n, char *err,
                     size_t errlen);

/*
 * The decoder's cache of map keys (a userdata; one per state, in the
 * registry): pushes it. A caller that decodes many values keeps it (as an
 * upvalue, say) and passes its index to flume__mp_decode_keys, which then
 * does not look it up for every value.
 */
void flume__mp_push_keys(lua_State *L);

/* flume__mp_decode with the key cache at `keys` (flume__mp_push_keys's
 * userdata: an absolute index or an upvalue's pseudo-index, not one
 * relative to the top). */
int flume__mp_decode_keys(lua_State *L, const char *p, size_t n, int keys,
                          char *err, size_t errlen);

/*
 * The registry field holding the metatable that marks an empty Lua table as
 * an empty array: the encoder writes such a table as an empty msgpack
 * array (any other empty table is an empty map), and flume__mp_decode_marked
 * gives every empty array it decodes this metatable, so that [] and {}
 * survive a round trip (the command line's JSON needs it). Set by the Lua
 * binding; a state without it has no marked tables.
 */
#define FLUME__MP_ARRAY_MT "flume.array"

/* flume__mp_decode, marking empty arrays with FLUME__MP_ARRAY_MT. */
int flume__mp_decode_marked(lua_State *L, const char *p, size_t n, char *err,
                            size_t errlen);

#endif
