rockspec_format = "3.0"
package = "flume"
version = "0.2.0-1"
source = {
  url = "git+https://github.com/flume-db/flume.git",
  tag = "v0.2.0",
}
description = {
  summary = "An embeddable append-only log with materialized Lua views",
  detailed = [[
flume keeps an append-only log (LMDB, durable by default, every entry
checksummed) as its one canonical store and materializes views from it:
Lua 5.4 scripts with a version and map/reduce functions, rebuilt from the
log whenever their version changes, read since-gated so they are always up
to date. Any number of reader processes follow one writer. Comes with the
`flume` command (JSON Lines in and out, status, backup, verify).
]],
  homepage = "https://github.com/flume-db/flume",
  license = "MIT",
  labels = { "database", "event-sourcing", "lmdb", "views" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  LMDB = { header = "lmdb.h", library = "lmdb" },
}
-- The C sources are named once, in CMakeLists.txt: the rock builds through
-- it, as the Lua module and the `flume` command only
-- (FLUME_LUA_MODULE_ONLY), with no test hooks. CMake installs the module
-- into LuaRocks' LIBDIR (flume/core.so) and LUADIR (every file under
-- views-lua/flume/) and the command into its BINDIR.
test_dependencies = {
  "busted",
}
test = {
  type = "busted",
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_INSTALL_BINDIR = "$(BINDIR)",
    CMAKE_PREFIX_PATH = "$(LIBUV_DIR);$(LMDB_DIR)",
    FLUME_LUA_MODULE_ONLY = "ON",
    FLUME_LUA_INCDIR = "$(LUA_INCDIR)",
    FLUME_LUA_CMOD_DIR = "$(LIBDIR)",
    FLUME_LUA_LMOD_DIR = "$(LUADIR)",
    FLUME_WERROR = "OFF",
  },
}
