/* Lua helpers for the C tests (and the fuzz harness): building values from
 * Lua source, and comparing values exactly. */
#ifndef FLUME_SPEC_LUA_CHECK_H
#define FLUME_SPEC_LUA_CHECK_H

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Runs a chunk that returns one value and leaves that value pushed; a
 * chunk that fails is a broken test: it exits. */
static inline void push_chunk(lua_State *L, const char *code) {
  int top = lua_gettop(L);
  if (luaL_loadstring(L, code) || lua_pcall(L, 0, 1, 0)) {
    fprintf(stderr, "%s: %s\n", code, lua_tostring(L, -1));
    exit(1);
  }
  if (lua_gettop(L) != top + 1) {
    fprintf(stderr, "%s: did not leave exactly one value\n", code);
    exit(1);
  }
}

/* Pushes the value of a Lua expression. */
static inline void push_expr(lua_State *L, const char *expr) {
  char code[1024];
  snprintf(code, sizeof code, "return %s", expr);
  push_chunk(L, code);
}

/* Compares two Lua values: NaN equals NaN, 1 differs from 1.0, -0.0 from
 * 0.0, and tables are compared by content. */
static inline int deep_equal(lua_State *L, int a, int b, int depth) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  int t = lua_type(L, a);
  if (t != lua_type(L, b)) return 0;
  if (t == LUA_TNUMBER) {
    if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
    if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
    double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
    if (isnan(x) || isnan(y)) return isnan(x) && isnan(y);
    return x == y && !signbit(x) == !signbit(y);
  }
  if (t != LUA_TTABLE) return lua_rawequal(L, a, b);
  if (depth > 200 || !lua_checkstack(L, 4)) return 0;
  size_t na = 0, nb = 0;
  lua_pushnil(L);
  while (lua_next(L, a)) {
    na++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    if (!deep_equal(L, -2, -1, depth + 1)) {
      lua_pop(L, 3);
      return 0;
    }
    lua_pop(L, 2);
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    nb++;
    lua_pop(L, 1);
  }
  return na == nb;
}

#endif
