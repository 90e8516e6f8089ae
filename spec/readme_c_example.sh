#!/bin/sh
# The README's C examples compile against the installed library through
# pkg-config, and run. Usage: readme_c_example.sh BUILD_DIR
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
awk '/^```c$/{f=1; next} f && /^```$/{exit} f' "$src/README.md" > "$work/hello.c"
awk '/^```c$/{n++; if (n == 2) {f=1; next}} f && /^```$/{exit} f' "$src/README.md" > "$work/views.c"
[ -s "$work/hello.c" ] || { echo "no C example in README.md"; exit 1; }
[ -s "$work/views.c" ] || { echo "no C views example in README.md"; exit 1; }
libdir=$(ls -d "$work"/prefix/lib*/ | head -n 1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cd "$work"
cc -Wall -Wextra -Werror hello.c $(pkg-config --cflags --libs flume) -o hello
LD_LIBRARY_PATH="$libdir" ./hello > out.txt
cat out.txt
grep -q '^appended at seq 0$' out.txt
grep -q '^0: hello, log$' out.txt
# a Lua program opens what hello.c wrote (same codec) and reads its value
"$build/lua.sh" -e 'local db = require("flume").open("hello-db")
  assert(db:get(0) == "hello, log", "hello-db from Lua") db:close()'
cc -Wall -Wextra -Werror views.c $(pkg-config --cflags --libs flume) -o views
LD_LIBRARY_PATH="$libdir" ./views > views.txt
cat views.txt
grep -q '^posts: 2$' views.txt
grep -q '^like: 1$' views.txt
grep -q '^post: 2$' views.txt
