/*
 * core.errors: every error code the core knows (flume's own and the
 * system's it passes on), by name, with the core's message. The Lua side
 * raises its errors from this table, so that a name and its message are
 * written once, in flume.h's FLUME_ERRNO_MAP (and libuv's UV_ERRNO_MAP),
 * and read the same from C and from Lua.
 */
#include "lua/binding.h"

/* Sets t[name] = { code = code, name = name, message = flume_strerror(code) }
 * on the table t at the top of the stack. */
static void set_error(lua_State *L, const char *name, int code) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, flume_strerror(code));
  lua_setfield(L, -2, "message");
  lua_setfield(L, -2, name);
}

void flume__lua_errors_register(lua_State *L, int module, int methods) {
  (void)methods;
  lua_createtable(L, 0, 128);
  /* The system's first: where a name is both (EINVAL, ENOSPC, EIO, ...),
   * flume's own code, which the core reports under that name, wins. */
#define FLUME__LUA_UV_ERR(name, msg) set_error(L, #name, UV_##name);
  UV_ERRNO_MAP(FLUME__LUA_UV_ERR)
#undef FLUME__LUA_UV_ERR
#define FLUME__LUA_ERR(name, value, msg) set_error(L, #name, value);
  FLUME_ERRNO_MAP(FLUME__LUA_ERR)
#undef FLUME__LUA_ERR
  lua_setfield(L, module, "errors");
}
