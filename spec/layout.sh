#!/bin/sh
# The layout's rules that a grep can check (../shared/DESIGN.md, "Layout").
#
#  - log/ is the only code that includes <lmdb.h>: the rest of the library
#    and the Lua module reach LMDB through log/store.h only (read-only open,
#    copy, stat and verify included), so no LMDB name (MDB_*) and no LMDB
#    error code appears outside log/. spec/ and bench/ may call anything:
#    the store's own tests forge LMDB files, the benchmarks have raw LMDB as
#    their baseline; they are not searched.
#
# Usage: layout.sh SOURCE_DIR
set -eu
src=${1:-.}
cd "$src"
status=0

# C sources and headers of the product, outside log/.
files=$(find include runtime views-lua -type f \( -name '*.c' -o -name '*.h' \
  -o -name '*.in' \) | sort)

# <lmdb.h>, or log/'s private header that includes it
header='(lmdb|lmdb_env|lmdb_file)\.h'
bad=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]$header[>\"]" \
  $files || true)
if [ -n "$bad" ]; then
  echo "outside log/, these files include LMDB's header (use log/store.h):"
  echo "$bad"
  status=1
fi

bad=$(grep -nE '\bMDB_[A-Z_]+' $files || true)
if [ -n "$bad" ]; then
  echo "outside log/, these lines name LMDB's constants (use log/store.h):"
  echo "$bad"
  status=1
fi

if [ "$status" = 0 ]; then
  echo "layout: $(echo "$files" | wc -l) files outside log/ reach LMDB only" \
    "through log/store.h"
fi
exit "$status"
