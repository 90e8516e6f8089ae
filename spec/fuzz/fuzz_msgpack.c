/*
 * libFuzzer harness for the msgpack decoder (and the encoder, through what
 * the decoder returns). Not built by CMake. Any input must either fail to
 * decode with the stack as it was, or decode to a value that encodes and
 * decodes again to an equal value.
 *
 * Build and run from the repository root (needs libclang-rt-14-dev):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -fno-sanitize-recover=all -Iinclude -Iruntime -Ispec/c \
 *     $(pkg-config --cflags lua5.4 libuv) spec/fuzz/fuzz_msgpack.c \
 *     runtime/msgpack.c -o /tmp/fuzz_msgpack $(pkg-config --libs lua5.4) -lm
 *   mkdir -p /tmp/mp-corpus
 *   /tmp/fuzz_msgpack -max_len=4096 -max_total_time=120 /tmp/mp-corpus
 *
 * A crash leaves crash-<hash> in the current folder; run the binary on that
 * file alone to reproduce it.
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
