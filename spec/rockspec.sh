#!/bin/sh
# `luarocks make` of the rockspec into a fresh tree, offline, gives a working
# `require "flume"` and a working `flume` command. The rock builds through
# CMakeLists.txt (the one list of the C sources), installs every Lua file
# under views-lua/flume/ and carries no test hooks (exports.sh --tree). Built
# from a copy of the sources so the checkout stays clean.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
lua=${LUA_EXE:-lua5.4}
rockspec=rockspec/flume-scm-1.rockspec
luarocks --lua-version=5.4 lint "$src/$rockspec"
# the release's rockspec: the same build, a real source
release=$(ls "$src"/rockspec/flume-[0-9]*.rockspec)
luarocks --lua-version=5.4 lint "$release"
version=$(sed -n 's/^project(flume VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
case "$release" in */flume-$version-1.rockspec) ;;
  *) echo "the release rockspec $release is not version $version"; exit 1 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
(cd "$src" && tar cf - CMakeLists.txt include log runtime views-lua rockspec) |
  (cd "$work/src" && tar xf -)
cd "$work/src"
luarocks --lua-version=5.4 make --tree "$work/tree" --deps-mode=none \
  "$rockspec"
cd "$work"
# The tree on the paths as a user puts it there (`luarocks path --tree`).
unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
eval "$(luarocks --lua-version=5.4 path --tree "$work/tree")"

# Every Lua file of views-lua/flume/, in its folder, and nothing else.
lmod=$work/tree/share/lua/5.4/flume
(cd "$src/views-lua/flume" && find . -name '*.lua' | sort) > want.txt
(cd "$lmod" && find . -type f | sort) > got.txt
diff -u want.txt got.txt ||
  { echo "the rock does not install views-lua/flume/ as it is"; exit 1; }
echo "the rock installs the $(wc -l < got.txt) Lua files of views-lua/flume/"

sh "$src/spec/exports.sh" --tree "$work/tree"

cat > check.lua <<'LUA'
local flume = require "flume"
local where = package.searchpath("flume.core", package.cpath)
assert(where and where:find(arg[1], 1, true),
  "flume.core was not loaded from the rock tree")
assert(not require("flume.core").test_hooks, "the rock has test hooks")
local db = flume.open(arg[1] .. "/db")
assert(db:append({ hello = "rock" }) == 0)
assert(db:get(0).hello == "rock")
db:close()
assert(require("flume.json").encode({ 1.0 }) == "[1.0]")
print("require \"flume\" from the rock tree works")
LUA
"$lua" check.lua "$work"

# The command, as LuaRocks wraps it into the tree's bin.
flume=$work/tree/bin/flume
"$flume" init cli-db >/dev/null
last=$(printf '{"n":1}\n{"n":2}\n' | "$flume" append cli-db --quiet)
[ "$last" = 1 ] || { echo "flume append printed '$last', not 1"; exit 1; }
got=$("$flume" get cli-db 1)
[ "$got" = '{"n":2}' ] || { echo "flume get printed '$got'"; exit 1; }
echo "the rock's flume command works"

# A binary rock of what was installed (luarocks pack)
(cd "$work" && luarocks --lua-version=5.4 pack --tree "$work/tree" flume \
  scm-1 >/dev/null)
ls "$work"/flume-scm-1.*.rock >/dev/null ||
  { echo "luarocks pack made no rock"; exit 1; }
echo "luarocks pack: $(cd "$work" && ls flume-scm-1.*.rock)"
