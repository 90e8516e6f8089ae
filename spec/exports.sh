#!/bin/sh
# What is installed carries the interface and no test hooks:
#   - libflume.so exports flume_* and nothing else (no flume__*),
#   - libflume.a holds no flume__test_*,
#   - flume/core.so exports luaopen_* only, holds no flume__test_* and no
#     test-only Lua function (the binding's fail_commits).
# The test hooks live in separate test-only builds (spec/c links the hooked
# objects, the specs load build/spec/lua/flume/core.so).
#
#   exports.sh BUILD_DIR   `cmake --install` BUILD_DIR into a fresh prefix and
#                          check the libraries and the module installed there
#   exports.sh --tree DIR  check the module under DIR (the rock's tree: see
#                          rockspec.sh)
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0

fail() {
  echo "FAIL: $*"
  fails=$((fails + 1))
}

# Names of the symbols a file defines in its dynamic table.
exported() {
  nm -D --defined-only "$1" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//'
}

# Every name in any symbol table of the file (defined or not): test hooks
# must not even be referenced.
every_symbol() {
  { nm -a "$1" 2>/dev/null || true; nm -D "$1" 2>/dev/null || true; } |
    awk 'NF >= 2 { print $NF }' | sed 's/@.*//'
}

# "ok: FILE: what" when the checks since `before=$fails` all passed.
ok() {
  [ "$fails" -ne "$before" ] || echo "ok: $*"
}

no_test_hooks() {
  hooks=$(every_symbol "$1" | grep '^flume__test_' | sort -u || true)
  [ -z "$hooks" ] || fail "$1 holds test hooks: $(echo $hooks)"
}

check_shared() {
  before=$fails
  no_test_hooks "$1"
  bad=$(exported "$1" | grep -v '^flume_[a-z0-9]' || true)
  [ -z "$bad" ] || fail "$1 exports outside flume_*: $(echo $bad)"
  count=$(exported "$1" | grep -c '^flume_[a-z0-9]' || true)
  [ "$count" -gt 10 ] || fail "$1 exports only $count flume_* symbols"
  ok "$1: exports $count flume_* symbols and nothing else"
}

check_static() {
  before=$fails
  no_test_hooks "$1"
  count=$(nm --defined-only "$1" 2>/dev/null | grep -c ' T flume_' || true)
  [ "$count" -gt 10 ] || fail "$1 defines only $count flume_* functions"
  ok "$1: $count flume_* functions, no test hooks"
}

check_module() {
  before=$fails
  no_test_hooks "$1"
  bad=$(exported "$1" | grep -v '^luaopen_' || true)
  [ -z "$bad" ] || fail "$1 exports outside luaopen_*: $(echo $bad)"
  exported "$1" | grep -qx luaopen_flume_core ||
    fail "$1 does not export luaopen_flume_core"
  # A Lua function is named by a string in the module's method table.
  if strings -a "$1" | grep -qx 'fail_commits'; then
    fail "$1 holds the test-only method fail_commits"
  fi
  ok "$1: exports $(exported "$1" | sort | tr '\n' ' ')and no test hook"
}

# Every file of one kind under a folder, at least one.
each() {
  kind=$1
  dir=$2
  pattern=$3
  found=$(find "$dir" -name "$pattern" \( -type f -o -type l \) | sort)
  [ -n "$found" ] || { fail "no $pattern under $dir"; return 0; }
  for f in $found; do
    [ -L "$f" ] && continue # the versioned file is checked itself
    "check_$kind" "$f"
  done
}

case ${1:-} in
--tree)
  each module "$2" core.so
  ;;
"")
  echo "usage: exports.sh BUILD_DIR | --tree DIR" >&2
  exit 2
  ;;
*)
  cmake --install "$1" --prefix "$work/prefix" >/dev/null
  each shared "$work/prefix" 'libflume.so*'
  each static "$work/prefix" libflume.a
  each module "$work/prefix" core.so
  ;;
esac
[ "$fails" -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
