#!/bin/sh
# What `cmake --install` gives a user: the header, libraries, a pkg-config
# file that hands out no include path of flume's insides (Lua, LMDB), a
# CMake package (find_package(flume) -> flume::flume) that builds and runs
# a program, the command and its man page (every command of `flume --help`
# in it, and it renders without warnings), the example views and the docs.
# Usage: install.sh BUILD_DIR
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(ls -d "$prefix"/lib*/ | head -n 1)
fail() { echo "FAIL: $*"; exit 1; }

for f in include/flume.h share/man/man1/flume.1 share/doc/flume/README.md \
  share/doc/flume/CHANGELOG.md share/doc/flume/LICENSE share/doc/flume/lua.md \
  share/flume/examples/count_by_type.lua share/flume/examples/by_author.lua \
  share/flume/examples/total_amount.lua bin/flume; do
  [ -f "$prefix/$f" ] || fail "$f is not installed"
done

# pkg-config: flume.h needs libuv's headers and nothing else
cflags=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags flume)
case "$cflags" in *lua*|*lmdb*) fail "pkg-config --cflags flume: $cflags" ;; esac
echo "pkg-config --cflags flume: $cflags"

# find_package(flume)
mkdir "$work/app"
cat > "$work/app/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.18)
project(app C)
find_package(flume 0.2 REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE flume::flume)
CMAKE
cat > "$work/app/app.c" <<'C'
#include <flume.h>
#include <stdio.h>
int main(void) {
  printf("flume %s\n", flume_version());
  return 0;
}
C
cmake -S "$work/app" -B "$work/app/build" -DCMAKE_PREFIX_PATH="$prefix" \
  >/dev/null || fail "find_package(flume) does not configure"
cmake --build "$work/app/build" >/dev/null || fail "the app does not build"
out=$(LD_LIBRARY_PATH="$libdir" "$work/app/build/app")
version=$(sed -n 's/^project(flume VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ "$out" = "flume $version" ] || fail "the app printed '$out'"
echo "find_package(flume): $out"

# the man page: every command, and no warning from groff
man1=$prefix/share/man/man1/flume.1
cmds=$(awk '/^  [a-z]+ /{print $1}' <<HELP
$(LUA_PATH_5_4="$prefix/share/lua/5.4/?.lua;$prefix/share/lua/5.4/?/init.lua;;" \
  LUA_CPATH_5_4="$libdir/lua/5.4/?.so;;" lua5.4 "$prefix/bin/flume" --help)
HELP
)
[ -n "$cmds" ] || fail "flume --help lists no command"
for c in $cmds; do
  grep -q "^\.BI\{0,1\} \"$c" "$man1" || fail "the man page lacks '$c'"
done
if command -v groff >/dev/null; then
  warn=$(groff -man -Tutf8 -ww "$man1" 2>&1 >/dev/null)
  [ -z "$warn" ] || fail "groff: $warn"
fi
echo "man page: $(echo $cmds | wc -w) commands"
