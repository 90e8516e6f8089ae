-- cli_cat's `cjson` baseline: what `flume cat DIR` prints, written by a
-- plain lua-cjson loop over db:stream() on a read-only handle: one line
-- {"seq":S,"value":V} per value on stdout. Run with bench/build/lua.sh;
-- the harness times the whole process, as it times `flume cat`.
--
--   cjson_cat.lua DIR > OUT
--
-- The lines hold the same values as flume cat's, not the same bytes:
-- lua-cjson writes object keys in table order (flume cat sorts them) and
-- floats with %.14g (5.0 as 5; flume's JSON keeps the float: 5.0).
local flume = require "flume"
local encode = require("cjson").encode

local db <close> = flume.open(assert(arg[1], "usage: cjson_cat.lua DIR"),
  { readonly = true })
local out = io.stdout
out:setvbuf("full", 65536)
for seq, v in db:stream() do
  out:write('{"seq":', seq, ',"value":', encode(v), "}\n")
end
assert(out:flush())
