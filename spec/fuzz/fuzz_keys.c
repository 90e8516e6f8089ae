/*
 * Fuzz target: the view key codec (runtime/keys.c).
 *
 * 1. The input's bytes as an encoded key: either decode rejects them (and
 *    flume__key_length says 0, the stack as it was), or it takes `used`
 *    bytes, flume__key_length agrees, and encoding the decoded key gives
 *    back exactly those bytes (the decoder accepts only canonical
 *    encodings).
 * 2. Two keys built from the input: each encodes, decodes to an equal key
 *    (-0.0 comes back as 0.0) taking all its bytes, and the memcmp order of
 *    the encodings is the documented order of the keys (fuzz_input.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz_input.h"
#include "keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_keys: %s\n", what);
  abort();
}

/* Property 1: arbitrary bytes through the decoder. */
static void check_decode(const char *p, size_t n) {
  static flume__buf b = FLUME__BUF_INIT;
  char err[256] = "";
  size_t used = 0;
  int top = lua_gettop(L);
  int rc = flume__key_decode(L, p, n, &used, err, sizeof err);
  size_t len = flume__key_length(p, n);
  if (rc) {
    if (lua_gettop(L) != top) fail("a failed decode left the stack changed");
    if (err[0] == '\0') fail("a failed decode gave no message");
    if (len != 0) fail("flume__key_length found a key decode rejects");
    return;
  }
  if (lua_gettop(L) != top + 1) fail("a decode did not push one value");
  if (used == 0 || used > n) fail("a decode took no bytes or too many");
  if (len != used) fail("flume__key_length disagrees with decode");
  b.len = 0;
  if (flume__key_encode(L, -1, &b, err, sizeof err)) fail(err);
  if (b.len != used || memcmp(b.data, p, used) != 0)
    fail("a decoded key encodes to other bytes (not canonical)");
  lua_settop(L, top);
}

/* Keys equal as keys: the same type and subtype, equal values (so -0.0
 * equals 0.0), arrays element by element. */
static int same_key(int a, int b) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_type(L, a) != lua_type(L, b)) return 0;
  if (lua_type(L, a) == LUA_TNUMBER)
    return lua_isinteger(L, a) == lua_isinteger(L, b) && lua_rawequal(L, a, b);
  if (lua_type(L, a) != LUA_TTABLE) return lua_rawequal(L, a, b);
  lua_Unsigned n = lua_rawlen(L, a);
  if (n != lua_rawlen(L, b)) return 0;
  for (lua_Unsigned i = 1; i <= n; i++) {
    lua_rawgeti(L, a, (lua_Integer)i);
    lua_rawgeti(L, b, (lua_Integer)i);
    int same = same_key(-2, -1);
    lua_pop(L, 2);
    if (!same) return 0;
  }
  return 1;
}

/* Encodes the key at idx into b and checks it decodes back to itself. */
static void round_trip(int idx, flume__buf *b) {
  char err[256];
  idx = lua_absindex(L, idx);
  b->len = 0;
  if (flume__key_encode(L, idx, b, err, sizeof err)) fail(err);
  if (b->len == 0) fail("a key encoded to nothing");
  size_t used;
  if (flume__key_decode(L, b->data, b->len, &used, err, sizeof err)) fail(err);
  if (used != b->len) fail("a decode did not take the whole encoding");
  if (!same_key(idx, -1)) fail("a key changed on its way round");
  lua_pop(L, 1);
}

static int cmp_bytes(const flume__buf *a, const flume__buf *b) {
  int c = memcmp(a->data, b->data, a->len < b->len ? a->len : b->len);
  if (c) return c < 0 ? -1 : 1;
  return (a->len > b->len) - (a->len < b->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static flume__buf ea = FLUME__BUF_INIT, eb = FLUME__BUF_INIT;
  if (L == NULL) {
    if ((L = luaL_newstate()) == NULL) abort();
    luaL_openlibs(L);
  }
  check_decode((const char *)data, size);

  fuzz_in in = {data, size};
  int top = lua_gettop(L);
  fuzz_push_key(L, &in, 4);
  fuzz_push_key(L, &in, 4);
  round_trip(-2, &ea);
  round_trip(-1, &eb);
  int want = fuzz_key_cmp(L, -2, -1), got = cmp_bytes(&ea, &eb);
  if (want != got) {
    fprintf(stderr, "documented order %d, encoded order %d\n", want, got);
    fail("the encoding does not keep the key order");
  }
  lua_settop(L, top);
  return 0;
}
