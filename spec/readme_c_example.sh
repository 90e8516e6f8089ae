#!/bin/sh
# The README's C example compiles against the installed library through
# pkg-config, and runs. Usage: readme_c_example.sh BUILD_DIR
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
awk '/^```c$/{f=1; next} f && /^```$/{exit} f' "$src/README.md" > "$work/hello.c"
[ -s "$work/hello.c" ] || { echo "no C example in README.md"; exit 1; }
libdir=$(ls -d "$work"/prefix/lib*/ | head -n 1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cd "$work"
cc -Wall -Wextra -Werror hello.c $(pkg-config --cflags --libs flume) -o hello
LD_LIBRARY_PATH="$libdir" ./hello > out.txt
cat out.txt
grep -q '^appended at seq 0$' out.txt
grep -q '^0: hello, log$' out.txt
