/* For the fuzz harnesses: reading structured choices out of the fuzzer's
 * bytes, building view keys from them, and the documented key order
 * (runtime/keys.h) computed directly on Lua values, as the oracle the key
 * encoding is checked against. */
#ifndef FLUME_SPEC_FUZZ_INPUT_H
#define FLUME_SPEC_FUZZ_INPUT_H

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* The fuzzer's bytes, consumed from the front; past the end reads zeros. */
typedef struct fuzz_in {
  const uint8_t *p; /* the next byte */
  size_t n;         /* bytes left */
} fuzz_in;

static inline uint8_t take8(fuzz_in *in) {
  if (in->n == 0) return 0;
  in->n--;
  return *in->p++;
}

static inline uint16_t take16(fuzz_in *in) {
  uint16_t hi = take8(in);
  return (uint16_t)(hi << 8 | take8(in));
}

static inline uint64_t take64(fuzz_in *in) {
  uint64_t x = 0;
  for (int i = 0; i < 8; i++)
    x = x << 8 | take8(in);
  return x;
}

/* Numbers where the encoding has edges: zero and its sign, the ends of the
 * exact-integer range of doubles, the int64 ends, infinities. */
static const char *const fuzz_numbers[] = {"0",
                                           "0.0",
                                           "-0.0",
                                           "1",
                                           "1.0",
                                           "-1",
                                           "-1.0",
                                           "0.5",
                                           "-0.5",
                                           "3",
                                           "3.0",
                                           "2^53",
                                           "2^53 + 1",
                                           "(2^53) | 0",
                                           "(2^53) | 1",
                                           "-(2^53) | 0",
                                           "-(2^53) - 1",
                                           "math.maxinteger",
                                           "math.mininteger",
                                           "math.maxinteger + 0.0",
                                           "math.mininteger + 0.0",
                                           "math.maxinteger - 1",
                                           "math.mininteger + 1",
                                           "math.huge",
                                           "-math.huge",
                                           "4.9e-324",
                                           "-4.9e-324",
                                           "1.7976931348623157e308",
                                           "-1.7976931348623157e308",
                                           "2^63",
                                           "-2^63",
                                           "2^62 + 1",
                                           "2^62 + 1.0"};
#define FUZZ_NUMBERS (sizeof fuzz_numbers / sizeof fuzz_numbers[0])

/* Pushes a Lua expression's value (a constant above). */
static inline void fuzz_push_expr(lua_State *L, const char *expr) {
  char code[128];
  snprintf(code, sizeof code, "return %s", expr);
  if (luaL_loadstring(L, code) || lua_pcall(L, 0, 1, 0)) {
    fprintf(stderr, "%s: %s\n", expr, lua_tostring(L, -1));
    abort();
  }
}

/*
 * Pushes a key built from the input: booleans, integers and floats (edge
 * values, small ones and raw bits; never NaN), strings (short, arbitrary
 * bytes, or long runs of one byte with a tail: the shapes that meet the
 * size limit), and arrays of keys up to `depth` deep.
 */
static inline void fuzz_push_key(lua_State *L, fuzz_in *in, int depth) {
  luaL_checkstack(L, 8, "fuzz key");
  uint8_t t = take8(in);
  switch (t % 10) {
  case 0:
    lua_pushboolean(L, t & 0x10);
    return;
  case 1:
    lua_pushinteger(L, (int8_t)take8(in));
    return;
  case 2:
    lua_pushinteger(L, (lua_Integer)take64(in));
    return;
  case 3: {
    uint64_t u = take64(in);
    double d;
    memcpy(&d, &u, sizeof d);
    if (isnan(d)) d = (t & 0x10) ? -0.0 : 0.25;
    lua_pushnumber(L, d);
    return;
  }
  case 4:
    fuzz_push_expr(L, fuzz_numbers[take8(in) % FUZZ_NUMBERS]);
    return;
  case 5:
  case 6: {
    size_t len = take8(in) % 24;
    if (len > in->n) len = in->n;
    lua_pushlstring(L, (const char *)in->p, len);
    in->p += len;
    in->n -= len;
    return;
  }
  case 7: {
    /* A run of one byte, 0..4095 long, then 0..3 bytes of tail. */
    uint8_t c = take8(in);
    size_t run = take16(in) % 4096, tail = take8(in) % 4;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < run; i++)
      luaL_addchar(&b, (char)c);
    for (size_t i = 0; i < tail; i++)
      luaL_addchar(&b, (char)take8(in));
    luaL_pushresult(&b);
    return;
  }
  default: {
    if (depth <= 0) {
      lua_pushboolean(L, 0);
      return;
    }
    int n = take8(in) % 5;
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
      fuzz_push_key(L, in, depth - 1);
      lua_rawseti(L, -2, i);
    }
    return;
  }
  }
}

/* Where a type stands in the key order. */
static inline int fuzz_rank(lua_State *L, int i) {
  switch (lua_type(L, i)) {
  case LUA_TBOOLEAN:
    return lua_toboolean(L, i);
  case LUA_TNUMBER:
    return 2;
  case LUA_TSTRING:
    return 3;
  default:
    return 4;
  }
}

/* An integer against a float by exact value; equal values put the float
 * first (keys.h), so then the integer is above. */
static inline int fuzz_cmp_int_float(int64_t i, double f) {
  if (f >= 0x1p63) return -1;
  if (f < -0x1p63) return 1;
  double t = trunc(f);
  int64_t ti = (int64_t)t; /* exact: |t| < 2^63 */
  if (i != ti) return i < ti ? -1 : 1;
  if (f != t) return f > t ? -1 : 1;
  return 1;
}

/*
 * The documented order of two keys (keys.h): false < true < numbers <
 * strings < arrays; numbers by value, a float before an equal integer;
 * strings bytewise, a prefix first; arrays element by element, a prefix
 * first. -0.0 and 0.0 are one key. Returns <0, 0, >0.
 */
static inline int fuzz_key_cmp(lua_State *L, int a, int b) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  int ra = fuzz_rank(L, a), rb = fuzz_rank(L, b);
  if (ra != rb) return ra < rb ? -1 : 1;
  if (ra < 2) return 0;
  if (ra == 2) {
    int ia = lua_isinteger(L, a), ib = lua_isinteger(L, b);
    if (ia && ib) {
      lua_Integer x = lua_tointeger(L, a), y = lua_tointeger(L, b);
      return (x > y) - (x < y);
    }
    if (!ia && !ib) {
      lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
      return (x > y) - (x < y);
    }
    if (ia) return fuzz_cmp_int_float(lua_tointeger(L, a), lua_tonumber(L, b));
    return -fuzz_cmp_int_float(lua_tointeger(L, b), lua_tonumber(L, a));
  }
  if (ra == 3) {
    size_t la, lb;
    const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
    int c = memcmp(sa, sb, la < lb ? la : lb);
    if (c) return c < 0 ? -1 : 1;
    return (la > lb) - (la < lb);
  }
  lua_Unsigned na = lua_rawlen(L, a), nb = lua_rawlen(L, b);
  luaL_checkstack(L, 4, "fuzz key compare");
  for (lua_Unsigned i = 1; i <= na && i <= nb; i++) {
    lua_rawgeti(L, a, (lua_Integer)i);
    lua_rawgeti(L, b, (lua_Integer)i);
    int c = fuzz_key_cmp(L, -2, -1);
    lua_pop(L, 2);
    if (c) return c;
  }
  return (na > nb) - (na < nb);
}

#endif
