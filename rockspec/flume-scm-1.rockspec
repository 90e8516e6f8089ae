rockspec_format = "3.0"
package = "flume"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- built from a checkout with `luarocks make`
}
description = {
  summary = "An embeddable append-only log with materialized Lua views",
  detailed = [[
flume keeps an append-only log (LMDB, durable by default) as its one
canonical store and materializes views from it with Lua scripts.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  LMDB = { header = "lmdb.h", library = "lmdb" },
}
build = {
  type = "builtin",
  modules = {
    ["flume"] = "views-lua/flume/init.lua",
    ["flume.cli"] = "views-lua/flume/cli.lua",
    ["flume.cli.args"] = "views-lua/flume/cli/args.lua",
    ["flume.cli.db"] = "views-lua/flume/cli/db.lua",
    ["flume.cli.diff"] = "views-lua/flume/cli/diff.lua",
    ["flume.cli.output"] = "views-lua/flume/cli/output.lua",
    ["flume.cli.progress"] = "views-lua/flume/cli/progress.lua",
    ["flume.errors"] = "views-lua/flume/errors.lua",
    ["flume.json"] = "views-lua/flume/json.lua",
    ["flume.options"] = "views-lua/flume/options.lua",
    ["flume.scheduler"] = "views-lua/flume/scheduler.lua",
    ["flume.view"] = "views-lua/flume/view.lua",
    ["flume.core"] = {
      sources = {
        "runtime/lua/core.c",
        "runtime/lua/codec.c",
        "runtime/lua/db.c",
        "runtime/lua/errors.c",
        "runtime/lua/loop.c",
        "runtime/lua/req.c",
        "runtime/lua/tools.c",
        "runtime/lua/views.c",
        "runtime/db.c",
        "runtime/errors.c",
        "runtime/format.c",
        "runtime/keys.c",
        "runtime/msgpack.c",
        "runtime/views/pattern.c",
        "runtime/views/pipeline.c",
        "runtime/views/gate.c",
        "runtime/views/registry.c",
        "runtime/views/methods.c",
        "runtime/views/load.c",
        "runtime/views/api.c",
        "runtime/views/host.c",
        "runtime/views/read.c",
        "log/lmdb.c",
        "log/lmdb_file.c",
        "log/memory.c",
      },
      defines = { "_GNU_SOURCE", "FLUME_BUILDING" },
      incdirs = { "include", "log", "runtime", "$(LIBUV_INCDIR)",
        "$(LMDB_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)", "$(LMDB_LIBDIR)" },
      libraries = { "uv", "lmdb", "pthread" },
    },
  },
  install = {
    bin = { flume = "views-lua/bin/flume" },
  },
}
