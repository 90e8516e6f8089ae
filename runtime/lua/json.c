/*
 * flume.core's JSON fast path for the command line (runtime/json.h):
 * core.json_to_mp(line) and core.mp_to_json(bytes) give the converted
 * string, or nil for a value they leave to flume.json;
 * core.mp_json_lines(vals, seqs, i, n, values_only) writes `flume cat`'s
 * lines of vals[i..n] in one string, up to the first value it leaves to
 * flume.json.
 */
#include <stdio.h>

#include "json.h"
#include "lua/binding.h"

static int convert(lua_State *L, int (*fn)(const char *, size_t,
                                            flume__buf *)) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  flume__buf b = FLUME__BUF_INIT;
  int rc = fn(s, n, &b);
  if (rc == FLUME_ENOMEM) {
    flume__buf_free(&b);
    return flume__lua_raise(L, rc, NULL);
  }
  if (rc) lua_pushnil(L);
  else lua_pushlstring(L, b.data ? b.data : "", b.len);
  flume__buf_free(&b);
  return 1;
}

static int l_json_to_mp(lua_State *L) {
  return convert(L, flume__json_to_mp);
}

static int l_mp_to_json(lua_State *L) {
  return convert(L, flume__mp_to_json);
}

/* core.mp_json_lines(vals, seqs, i, n, values_only) -> lines, next: the
 * lines of vals[i..next-1] ('{"seq":S,"value":V}' or, values_only, 'V'),
 * each ending in a newline; next <= n is a value for flume.json. */
static int l_mp_json_lines(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer i = luaL_checkinteger(L, 3), n = luaL_checkinteger(L, 4);
  int values_only = lua_toboolean(L, 5);
  flume__buf b = FLUME__BUF_INIT;
  int rc = 0;
  for (; i <= n; i++) {
    size_t len, mark = b.len;
    lua_rawgeti(L, 1, i);
    const char *v = lua_tolstring(L, -1, &len);
    if (v == NULL) {
      lua_pop(L, 1);
      break;
    }
    if (!values_only) {
      lua_rawgeti(L, 2, i);
      char head[48];
      int hn = snprintf(head, sizeof head, "{\"seq\":%lld,\"value\":",
                        (long long)lua_tointeger(L, -1));
      lua_pop(L, 1);
      rc = flume__buf_append(&b, head, (size_t)hn);
    }
    if (rc == 0) rc = flume__mp_to_json(v, len, &b);
    lua_pop(L, 1);
    if (rc == 0)
      rc = flume__buf_append(&b, values_only ? "\n" : "}\n",
                             values_only ? 1 : 2);
    if (rc) {
      b.len = mark;
      break;
    }
  }
  if (rc == FLUME_ENOMEM) {
    flume__buf_free(&b);
    return flume__lua_raise(L, rc, NULL);
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  lua_pushinteger(L, i);
  flume__buf_free(&b);
  return 2;
}

void flume__lua_json_register(lua_State *L, int module, int methods) {
  (void)methods;
  lua_pushcfunction(L, l_json_to_mp);
  lua_setfield(L, module, "json_to_mp");
  lua_pushcfunction(L, l_mp_to_json);
  lua_setfield(L, module, "mp_to_json");
  lua_pushcfunction(L, l_mp_json_lines);
  lua_setfield(L, module, "mp_json_lines");
}
