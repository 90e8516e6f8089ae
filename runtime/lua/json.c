/*
 * flume.core's JSON fast path for the command line (runtime/json.h):
 * core.json_to_mp(line) and core.mp_to_json(bytes) give the converted
 * string, or nil for a value they leave to flume.json.
 */
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

void flume__lua_json_register(lua_State *L, int module, int methods) {
  (void)methods;
  lua_pushcfunction(L, l_json_to_mp);
  lua_setfield(L, module, "json_to_mp");
  lua_pushcfunction(L, l_mp_to_json);
  lua_setfield(L, module, "mp_to_json");
}
