/*
 * Lazy decoding (runtime/views/lazy.c) against the full decoder: random
 * and mutated msgpack inputs (maps with duplicate keys, numeric keys of
 * equal value as integer and float, NaN keys, nesting at the depth limit,
 * truncations, trailing bytes, ext types) must be accepted or refused
 * exactly as flume__mp_decode does, with the same message; every field
 * read through the proxy, and the proxy made whole, must equal the full
 * decode; a field read and then removed stays removed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "buf.h"
#include "check.h"
#include "msgpack.h"
#include "views/lazy.h"
#include "views/views.h"

static lua_State *L;

static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C(0x2545f4914f6cdd1d);
}

static unsigned below(unsigned n) { return (unsigned)(rnd() % n); }

static unsigned char out[1 << 16];
static size_t len;

static void put(unsigned c) {
  if (len < sizeof out) out[len++] = (unsigned char)c;
}
static void put_be(uint64_t x, int bytes) {
  for (int i = bytes - 1; i >= 0; i--) put((unsigned)(x >> (8 * i)) & 0xff);
}
static void put_str(const char *s) {
  size_t n = strlen(s);
  put(0xa0 | (unsigned)n);
  for (size_t i = 0; i < n; i++) put((unsigned char)s[i]);
}

static void gen(int depth);

/* A map key: mostly few distinct ones, so that duplicates happen; now
 * and then one the decoder refuses. */
static void gen_key(void) {
  switch (below(14)) {
  case 0: put_str("a"); break;
  case 1: put_str("b"); break;
  case 2: put_str("ab"); break;
  case 3: put(0xd9); put(1); put('a'); break; /* "a" as str8 */
  case 4: put(0xc4); put(1); put('b'); break; /* "b" as bin8 */
  case 5: put(1); break;
  case 6: put(2); break;
  case 7: put(0xcb); put_be(UINT64_C(0x4000000000000000), 8); break; /* 2.0 */
  case 8: put(0xca); put_be(0x40200000, 4); break; /* 2.5f */
  case 9: put(0xc3); break;
  case 10: put(0xc2); break;
  case 11: /* rarely: NaN, nil, an array, ext */
    switch (below(4)) {
    case 0: put(0xcb); put_be(UINT64_C(0x7ff8000000000000), 8); break;
    case 1: put(0xc0); break;
    case 2: put(0x90); break;
    default: put(0xd4); put(1); put(0); break;
    }
    break;
  case 12: put(0xcc); put(below(256)); break;
  default: put_str("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"); break;
  }
}

static void gen_map(int depth, unsigned n) {
  if (n < 16) put(0x80 | n);
  else { put(0xde); put_be(n, 2); }
  for (unsigned i = 0; i < n; i++) {
    gen_key();
    gen(depth + 1);
  }
}

static void gen(int depth) {
  unsigned c = below(depth > 6 ? 12 : 16);
  switch (c) {
  case 0: put(below(128)); break;
  case 1: put(0xe0 | below(32)); break;
  case 2: put(0xcd); put_be(rnd(), 2); break;
  case 3: put(0xcf); put_be(rnd(), 8); break;
  case 4: put(0xd3); put_be(rnd(), 8); break;
  case 5: put(0xcb); put_be(below(4) ? rnd() : UINT64_C(0x7ff8000000000001), 8); break;
  case 6: put(0xca); put_be(rnd(), 4); break;
  case 7: put(0xc0 | (below(4) == 0 ? 0 : 2 + below(2))); break;
  case 8: put_str("hello"); break;
  case 9: put(0xda); put_be(3, 2); put('x'); put('y'); put('z'); break;
  case 10: if (below(20) == 0) put(0xc1); else put(0xc3); break;
  case 11: if (below(20) == 0) { put(0xd5); put(1); put(0); put(0); } else put(7); break;
  case 12: case 13: {
    unsigned n = below(5);
    put(0x90 | n);
    for (unsigned i = 0; i < n; i++) gen(depth + 1);
    break;
  }
  default:
    gen_map(depth, below(5));
    break;
  }
}

/* Nested arrays around a map, near the decoder's depth limit. */
static void gen_deep(void) {
  int d = FLUME__MP_MAX_DEPTH - 3 + (int)below(6);
  put(0x82);
  put_str("a");
  put(1);
  put_str("d");
  for (int i = 1; i < d; i++) put(0x91);
  put(0x80);
}

static int deq(int a, int b, int depth) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_type(L, a) != lua_type(L, b)) return 0;
  if (lua_type(L, a) == LUA_TNUMBER) {
    if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
    double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
    if (isnan(x) && isnan(y)) return 1;
    return lua_rawequal(L, a, b);
  }
  if (lua_type(L, a) != LUA_TTABLE) return lua_rawequal(L, a, b);
  if (depth > 200 || !lua_checkstack(L, 6)) return 0;
  size_t na = 0, nb = 0;
  lua_pushnil(L);
  while (lua_next(L, a)) {
    na++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    int eq = deq(-2, -1, depth + 1);
    lua_pop(L, 2);
    if (!eq) {
      lua_pop(L, 1);
      return 0;
    }
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    nb++;
    lua_pop(L, 1);
  }
  return na == nb;
}

static size_t proxies, refused, fields;

/* Decodes out[0..len) both ways and compares. */
static void compare(void) {
  char e1[256] = "", e2[256] = "";
  int top = lua_gettop(L);
  int r1 = flume__mp_decode(L, (const char *)out, len, e1, sizeof e1);
  int r2 = flume__lazy_decode(L, (const char *)out, len, e2, sizeof e2);
  if (r1 != r2 || strcmp(e1, e2) != 0) {
    fprintf(stderr, "full: %d %s\nlazy: %d %s\n", r1, e1, r2, e2);
    CHECK(0);
  }
  if (r1) {
    refused++;
    CHECK(lua_gettop(L) == top);
    return;
  }
  CHECK(lua_gettop(L) == top + 2);
  int full = top + 1, lazy = top + 2;
  if (flume__lazy_is(L, lazy)) {
    proxies++;
    /* Every field, read through __index, then again (cached). */
    int order = (int)below(2);
    for (int pass = 0; pass < 2; pass++) {
      lua_pushnil(L);
      while (lua_next(L, full)) {
        lua_pushvalue(L, -2);
        lua_gettable(L, lazy);
        if (!deq(-1, -2, 0)) {
          lua_pushvalue(L, -3);
          fprintf(stderr, "key %s: %s vs %s (%zu bytes)\n",
                  luaL_tolstring(L, -1, NULL), luaL_typename(L, -3),
                  luaL_typename(L, -2), len);
          for (size_t i = 0; i < len; i++) fprintf(stderr, "%02x ", out[i]);
          CHECK(0);
        }
        lua_pop(L, 2);
        fields++;
        if (order) {
          lua_pop(L, 1);
          break; /* only the first: the rest when made whole */
        }
      }
    }
    /* Keys that are absent. */
    const char *absent[] = {"zz", "", "A"};
    for (int i = 0; i < 3; i++) {
      lua_getfield(L, lazy, absent[i]);
      lua_getfield(L, full, absent[i]);
      if (!deq(-1, -2, 0))
        fprintf(stderr, "key %s: %s vs %s\n", absent[i],
                luaL_typename(L, -2), luaL_typename(L, -1));
      CHECK(deq(-1, -2, 0));
      lua_pop(L, 2);
    }
    lua_pushinteger(L, 3);
    lua_gettable(L, lazy);
    lua_rawgeti(L, full, 3);
    CHECK(deq(-1, -2, 0));
    lua_pop(L, 2);
    /* A field read, then removed: stays removed. */
    if (below(3) == 0) {
      lua_getfield(L, lazy, "a");
      lua_pop(L, 1);
      lua_pushnil(L);
      lua_setfield(L, lazy, "a"); /* a raw write when "a" was cached */
      lua_pushnil(L);
      lua_setfield(L, full, "a");
      lua_getfield(L, lazy, "a");
      CHECK(lua_isnil(L, -1));
      lua_pop(L, 1);
    }
    flume__lazy_materialize(L, lazy);
    CHECK(!flume__lazy_is(L, lazy));
    CHECK(lua_getmetatable(L, lazy) == 0);
  }
  CHECK(deq(full, lazy, 0));
  lua_settop(L, top);
}

/* Settling reaches proxies inside tables, through keys and cycles. */
static void test_settle(void) {
  len = 0;
  put(0x83);
  put_str("a");
  put(1);
  put_str("b");
  put_str("hello");
  put_str("c");
  put(0x91);
  put(2);
  int top = lua_gettop(L);
  lua_newtable(L); /* { [1] = proxy, [proxy2] = true, self = <cycle> } */
  int t = lua_gettop(L);
  CHECK_OK(flume__lazy_decode(L, (const char *)out, len, NULL, 0));
  int p1 = lua_gettop(L);
  lua_pushvalue(L, p1);
  lua_rawseti(L, t, 1);
  CHECK_OK(flume__lazy_decode(L, (const char *)out, len, NULL, 0));
  int p2 = lua_gettop(L);
  lua_pushvalue(L, p2);
  lua_pushboolean(L, 1);
  lua_rawset(L, t);
  lua_pushvalue(L, t);
  lua_setfield(L, t, "self");
  CHECK(flume__lazy_is(L, p1) && flume__lazy_is(L, p2));
  flume__lazy_settle(L, t);
  CHECK(!flume__lazy_is(L, p1) && !flume__lazy_is(L, p2));
  lua_getfield(L, p2, "b");
  CHECK(lua_type(L, -1) == LUA_TSTRING);
  CHECK(lua_gettop(L) == p2 + 1);
  lua_settop(L, top);
}

int main(void) {
  flume__host *h;
  CHECK_OK(flume__host_new(&h));
  L = flume__host_state(h);
  test_settle();
  for (int i = 0; i < 200000; i++) {
    len = 0;
    if (i % 50 == 0) gen_deep();
    else gen_map(0, below(i % 7 == 0 ? 40 : 8));
    if (below(4) == 0 && len > 0) {
      switch (below(3)) {
      case 0: len = below((unsigned)len); break;           /* truncated */
      case 1: out[below((unsigned)len)] = (unsigned char)rnd(); break;
      default: put(below(256)); break;                     /* trailing */
      }
    }
    compare();
  }
  printf("lazy: %zu proxies, %zu fields read, %zu refused\n", proxies, fields,
         refused);
  CHECK(proxies > 10000 && refused > 1000 && fields > 10000);
  flume__host_free(h);
  return 0;
}
