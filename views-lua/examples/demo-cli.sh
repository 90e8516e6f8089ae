#!/bin/sh
# The demo's second half: the command line feeds the first 200,000 values of
# ./demo-db into a fresh ./demo-cli-db as JSON Lines, attaches the example
# views (progress bars show on a terminal) and prints the status.
# Usage: demo-cli.sh LUA   (LUA: a Lua 5.4 that finds the module: build/lua.sh)
set -eu
lua=$1
here=$(cd "$(dirname "$0")" && pwd)
flume="$lua $here/../bin/flume"
rm -rf demo-cli-db
$flume init demo-cli-db
echo "+ flume cat demo-db --values --limit 200000 | flume append demo-cli-db"
$flume cat demo-db --values --limit 200000 | $flume append demo-cli-db --batch 10000
echo "+ flume status demo-cli-db --view types=... --view total=... --view authors=..."
$flume status demo-cli-db \
  --view "types=$here/count_by_type.lua" \
  --view "total=$here/total_amount.lua" \
  --view "authors=$here/by_author.lua"
