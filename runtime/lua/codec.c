/*
 * The codecs as Lua sees them: core.encode/decode (msgpack, msgpack.h) and
 * the order-preserving key encoding (keys.h) that view reads and
 * core.key_encode use.
 */
#include "keys.h"
#include "lua/binding.h"
#include "mpcheck.h"
#include "msgpack.h"

/* core.encode(value) -> msgpack bytes */
static int l_encode(lua_State *L) {
  char err[256];
  flume__buf b = FLUME__BUF_INIT;
  luaL_checkany(L, 1);
  int rc = flume__mp_encode(L, 1, &b, err, sizeof err);
  if (rc) {
    flume__buf_free(&b);
    return flume__lua_raise(L, rc, err);
  }
  lua_pushlstring(L, b.data, b.len);
  flume__buf_free(&b);
  return 1;
}

/* core.decode(bytes [, mark]): mark gives empty arrays core.array_mt. */
static int l_decode(lua_State *L) {
  char err[256];
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int mark = lua_toboolean(L, 2);
  lua_settop(L, 1);
  int rc = mark ? flume__mp_decode_marked(L, s, n, err, sizeof err)
                : flume__mp_decode(L, s, n, err, sizeof err);
  if (rc) return flume__lua_raise(L, rc, err);
  return 1;
}

/* core.valid(bytes) -> whether they are exactly one msgpack value decode
 * accepts: what decode would say, without building the value. */
static int l_valid(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushboolean(L, flume__mp_valid(s, n));
  return 1;
}

void flume__lua_check_key(lua_State *L, int idx, flume__buf *b) {
  char err[256];
  int rc = flume__key_encode(L, idx, b, err, sizeof err);
  if (rc) {
    flume__buf_free(b);
    flume__lua_raise(L, rc, err);
  }
}

/* core.key_encode(key): the order-preserving encoding, for tests. */
static int l_key_encode(lua_State *L) {
  flume__buf b = FLUME__BUF_INIT;
  luaL_checkany(L, 1);
  flume__lua_check_key(L, 1, &b);
  lua_pushlstring(L, b.data, b.len);
  flume__buf_free(&b);
  return 1;
}

static const luaL_Reg codec_funcs[] = {{"encode", l_encode},
                                       {"decode", l_decode},
                                       {"valid", l_valid},
                                       {"key_encode", l_key_encode},
                                       {NULL, NULL}};

void flume__lua_codec_register(lua_State *L, int module, int methods) {
  (void)methods;
  lua_pushvalue(L, module);
  luaL_setfuncs(L, codec_funcs, 0);
  /* The mark of an empty array (see msgpack.h): one per Lua state. */
  if (luaL_newmetatable(L, FLUME__MP_ARRAY_MT)) {
    lua_pushliteral(L, "flume.array");
    lua_setfield(L, -2, "__name");
  }
  lua_setfield(L, -2, "array_mt");
  lua_pop(L, 1);
}
