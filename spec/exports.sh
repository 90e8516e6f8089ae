#!/bin/sh
# libflume exports its API (flume_*) and nothing else; test builds add the
# fault-injection hook flume__test_*.
set -eu
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^flume_' | grep -v '^flume__test_' || true)
if [ -n "$bad" ]; then
  echo "libflume exports symbols outside its API:"
  echo "$bad"
  exit 1
fi
count=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -c '^flume_[a-z]')
echo "libflume exports $count API symbols and nothing else"
[ "$count" -gt 10 ]
