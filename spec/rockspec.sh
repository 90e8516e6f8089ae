#!/bin/sh
# `luarocks make` of the rockspec into a fresh tree, offline, gives a working
# `require "flume"`. Built from a copy of the sources so the checkout stays
# clean.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
lua=${LUA_EXE:-lua5.4}
# Every C source of the core and the binding must be in the rockspec.
for f in $(cd "$src" && ls log/*.c runtime/*.c runtime/*/*.c); do
  grep -q "\"$f\"" "$src/rockspec/flume-scm-1.rockspec" ||
    { echo "rockspec/flume-scm-1.rockspec does not build $f"; exit 1; }
done
# And every Lua module.
for f in $(cd "$src" && ls views-lua/flume/*.lua); do
  grep -q "\"$f\"" "$src/rockspec/flume-scm-1.rockspec" ||
    { echo "rockspec/flume-scm-1.rockspec does not install $f"; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
(cd "$src" && tar cf - include log runtime views-lua rockspec) | (cd "$work/src" && tar xf -)
cd "$work/src"
luarocks --lua-version=5.4 make --tree "$work/tree" --deps-mode=none \
  rockspec/flume-scm-1.rockspec
cat > "$work/check.lua" <<'LUA'
local flume = require "flume"
local where = package.searchpath("flume.core", package.cpath)
assert(where and where:find(arg[1], 1, true),
  "flume.core was not loaded from the rock tree")
local db = flume.open(arg[1] .. "/db")
assert(db:append({ hello = "rock" }) == 0)
assert(db:get(0).hello == "rock")
db:close()
assert(require("flume.json").encode({ 1.0 }) == "[1.0]")
print("require \"flume\" from the rock tree works")
LUA
LUA_PATH_5_4="$work/tree/share/lua/5.4/?.lua;$work/tree/share/lua/5.4/?/init.lua;;" \
LUA_CPATH_5_4="$work/tree/lib/lua/5.4/?.so;;" \
"$lua" "$work/check.lua" "$work"
