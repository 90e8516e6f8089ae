/*
 * Fuzz target: the msgpack decoder (and the encoder, through what the
 * decoder returns). Any input must either fail to decode with the stack as
 * it was, or decode to a value that encodes and decodes again to an equal
 * value; and the checker (mpcheck.h: C appends, `encoded` values, lazy
 * values) must accept exactly what the decoder accepts.
 *
 * Built by CMake (spec/fuzz/CMakeLists.txt): replay_msgpack in every
 * build, run by CTest over corpus/msgpack; fuzz_msgpack with
 * -DFLUME_FUZZ=ON and clang. A crash leaves crash-<hash> in the current
 * folder; run either binary on that file alone to reproduce it.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lua_check.h"
#include "mpcheck.h"
#include "msgpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static flume__buf b = FLUME__BUF_INIT;
  char err[256];
  if (L == NULL) {
    L = luaL_newstate();
    if (L == NULL) abort();
  }
  int top = lua_gettop(L);
  int rc = flume__mp_decode(L, (const char *)data, size, err, sizeof err);
  if (flume__mp_valid(data, size) != (rc == 0)) {
    fprintf(stderr, "the checker says %s, the decoder %s\n",
            rc ? "valid" : "invalid", rc ? err : "decoded it");
    abort();
  }
  if (rc != 0) {
    if (lua_gettop(L) != top || err[0] == '\0') abort();
    return 0;
  }
  if (lua_gettop(L) != top + 1) abort();
  b.len = 0;
  if (flume__mp_encode(L, -1, &b, err, sizeof err) != 0) {
    fprintf(stderr, "a decoded value did not encode: %s\n", err);
    abort();
  }
  if (lua_gettop(L) != top + 1) abort();
  if (flume__mp_decode(L, b.data, b.len, err, sizeof err) != 0) {
    fprintf(stderr, "an encoded value did not decode: %s\n", err);
    abort();
  }
  if (!deep_equal(L, -2, -1, 0)) {
    fprintf(stderr, "a value changed on its way round\n");
    abort();
  }
  lua_settop(L, top);
  return 0;
}
