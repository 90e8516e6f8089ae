/*
 * flume.core: the thin C binding under `require "flume"`, and the entry
 * point of its parts. Like Lua's linit.c it only lists them: each part
 * registers its functions on the module and its methods on the database's
 * method table (binding.h says what each part holds and whom it calls).
 * flume.tools, the command's helpers, is in the same library and reached
 * through package.preload: `require "flume.tools"` after `require "flume"`.
 */
#include "lua/binding.h"

/* A part adds its functions to the module table at `module` and its
 * database methods to the table at `methods`. */
typedef void (*part_fn)(lua_State *L, int module, int methods);

static const part_fn parts[] = {
    flume__lua_loop_register,  /* the context, run, timers (loop.c) */
    flume__lua_codec_register, /* encode, decode, key_encode (codec.c) */
    flume__lua_db_register,    /* open and the database handle (db.c) */
    flume__lua_views_register, /* the view methods (views.c) */
    flume__lua_admin_register, /* storage, tables, backup, verify (admin.c) */
    flume__lua_errors_register, /* core.errors (errors.c) */
    flume__lua_json_register,  /* json_to_mp, mp_to_json (json.c) */
    NULL};

__attribute__((visibility("default"))) int luaopen_flume_core(lua_State *L);

__attribute__((visibility("default"))) int luaopen_flume_core(lua_State *L) {
  lua_newtable(L); /* the module */
  int module = lua_gettop(L);
  lua_newtable(L); /* the database methods, its metatable's __index */
  for (const part_fn *p = parts; *p; p++) (*p)(L, module, module + 1);
  lua_pop(L, 1);

  lua_pushstring(L, flume_version());
  lua_setfield(L, module, "version");
#ifdef FLUME_TEST_HOOKS
  lua_pushboolean(L, 1);
  lua_setfield(L, module, "test_hooks");
#endif
  /* Whether this build has remote logs (libnats). */
#ifdef FLUME_REMOTE
  lua_pushboolean(L, 1);
#else
  lua_pushboolean(L, 0);
#endif
  lua_setfield(L, module, "remote");

  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_flume_tools);
  lua_setfield(L, -2, "flume.tools");
  lua_pop(L, 1);
  return 1;
}
