/* Decoding only what a view reads: lazy top-level maps in the view host.
 * Private to runtime/views (pipeline.c, host.c). See lazy.c. */
#ifndef FLUME_RUNTIME_VIEWS_LAZY_H
#define FLUME_RUNTIME_VIEWS_LAZY_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "flume.h"

/* Makes the proxies' metatable of state L (once, at the host's start). */
void flume__lazy_init(lua_State *L);

/* Pushes the msgpack value p[0..n): a lazy proxy when it is a map, else
 * what flume__mp_decode pushes. Accepts and refuses exactly the inputs
 * flume__mp_decode does (a refused one is decoded by it for its message):
 * FLUME_EDECODE with err[errlen] written and nothing pushed. */
int flume__lazy_decode(lua_State *L, const char *p, size_t n, char *err,
                       size_t errlen);

/* Whether the indexer should decode the next slice's maps lazily (1) or
 * whole with flume__mp_decode (0): lazily while the views read few of
 * each value's fields (see lazy.c). */
int flume__lazy_choose(lua_State *L);

/* Counts n values the indexer decoded whole (after a choice of 0). */
void flume__lazy_decoded_whole(lua_State *L, size_t n);

/* Pushes the proxies' metatable, for flume__lazy_decode_meta. */
void flume__lazy_push_meta(lua_State *L);

/* Names the database whose log the indexer's values come from: a proxy a
 * view keeps is read back from it when its bytes are gone (lazy.c, RING). */
void flume__lazy_source(lua_State *L, flume_db *db);

/* flume__lazy_decode with the proxies' metatable at stack index mt
 * (absolute, from flume__lazy_push_meta): for a batch of values. seq: the
 * value's seq in the source's log (its bytes are then not copied into the
 * proxy but kept in a ring, read back from the log if the proxy outlives
 * them), or -1 for bytes from anywhere else. */
int flume__lazy_decode_meta(lua_State *L, int mt, int64_t seq, const char *p,
                            size_t n, char *err, size_t errlen);

/* Whether the value at idx is a proxy not yet made whole. */
int flume__lazy_is(lua_State *L, int idx);

/* Makes the proxy at idx an ordinary table (every field decoded, the
 * proxy's marks gone), keeping what the view changed in it. Does nothing
 * to anything else. */
void flume__lazy_materialize(lua_State *L, int idx);

/* Makes every proxy reachable from the value at idx (through keys and
 * values of tables, to the encoders' depth) ordinary tables: before C
 * code that walks a view's tables with lua_next (the encoders). */
void flume__lazy_settle(lua_State *L, int idx);

#endif
