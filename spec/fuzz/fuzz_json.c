/*
 * Fuzz target: the command's JSON Lines input, views-lua/flume/json.lua
 * (`require "flume.json"`), loaded from the source tree into a Lua state.
 *
 * The input is cut into lines, as the command reads them, and each line
 * goes through json.decode:
 *   - bad input raises an error that is a string beginning with
 *     "flume: EINVAL: ", and nothing else (no other error, no crash);
 *   - a decoded value encodes (json.encode) to one line, and that line
 *     decodes to an equal value (numbers by value, tables by content), so
 *     what the command writes reads back as what it read.
 *
 * The command's C fast path (runtime/json.c) is checked against it on the
 * same input: a line it converts to msgpack must be one json.decode takes,
 * and decode to the same value (exactly: integers and floats apart, [] and
 * {}); msgpack it writes as JSON (the line's, and the input's bytes taken
 * as msgpack) must be what json.encode writes for flume's decoding of it.
 *
 * FLUME_FUZZ_LUA_PATH, when set, is put before the source tree on the
 * module path (to try another json.lua).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "json.h"
#include "msgpack.h"

#ifndef FLUME_SOURCE_DIR
#define FLUME_SOURCE_DIR "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The check, as a Lua function of one line. */
static const char check_src[] =
    "local json = require 'flume.json'\n"
    "local function fail(msg) error('fuzz_json: ' .. msg, 0) end\n"
    "local function show(s)\n"
    "  s = tostring(s)\n"
    "  if #s > 200 then s = s:sub(1, 200) .. '...' end\n"
    "  return (s:gsub('[^\\32-\\126]', function(c)\n"
    "    return ('\\\\x%02x'):format(c:byte()) end))\n"
    "end\n"
    "-- Equal as JSON: numbers by value (1 and 1.0, 0 and -0.0 are one JSON\n"
    "-- number), tables by content.\n"
    "local function same(a, b, depth)\n"
    "  depth = depth or 0\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then return a == b or (a ~= a and b ~= b) end\n"
    "  if type(a) ~= 'table' then return rawequal(a, b) end\n"
    "  if depth > 2000 then return true end\n"
    "  for k, x in pairs(a) do\n"
    "    if not same(x, rawget(b, k), depth + 1) then return false end\n"
    "  end\n"
    "  for k in pairs(b) do\n"
    "    if rawget(a, k) == nil then return false end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "debug.getregistry()['flume.array'] = json.array_mt\n"
    "-- Exactly equal: integer and float apart, float bits, [] and {}.\n"
    "local function exact(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return false end\n"
    "    return string.pack('<n', a) == string.pack('<n', b)\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if next(a) == nil or next(b) == nil then\n"
    "    return next(a) == nil and next(b) == nil and\n"
    "      (getmetatable(a) == json.array_mt) ==\n"
    "      (getmetatable(b) == json.array_mt)\n"
    "  end\n"
    "  for k, x in pairs(a) do\n"
    "    if not exact(x, rawget(b, k)) then return false end\n"
    "  end\n"
    "  for k in pairs(b) do\n"
    "    if rawget(a, k) == nil then return false end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "-- The fast path's writing of bytes as JSON, against json.encode.\n"
    "local function check_to_json(bytes, from)\n"
    "  local j = fast_to_json(bytes)\n"
    "  if j == nil then return end\n"
    "  local ok, v = pcall(mp_decode, bytes)\n"
    "  if not ok then fail('the fast path wrote JSON of bytes flume cannot '\n"
    "    .. 'decode: ' .. show(bytes) .. ' from ' .. show(from)) end\n"
    "  local ok2, ref = pcall(json.encode, v)\n"
    "  if not ok2 or ref ~= j then\n"
    "    fail('the fast path wrote ' .. show(j) .. ', json.encode '\n"
    "      .. show(ref) .. ' from ' .. show(from))\n"
    "  end\n"
    "end\n"
    "return function(line)\n"
    "  check_to_json(line, line)\n"
    "  local mp = fast_to_mp(line)\n"
    "  local ok, v = pcall(json.decode, line)\n"
    "  if mp ~= nil then\n"
    "    if not ok then fail('the fast path took a line json.decode '\n"
    "      .. 'refuses: ' .. show(line)) end\n"
    "    if not exact(mp_decode(mp), v) then\n"
    "      fail('the fast path read another value from ' .. show(line))\n"
    "    end\n"
    "    check_to_json(mp, line)\n"
    "  end\n"
    "  if not ok then\n"
    "    if type(v) ~= 'string' or not v:find('^flume: EINVAL: ') then\n"
    "      fail('decode raised something else than flume: EINVAL: '\n"
    "        .. show(v) .. ' on ' .. show(line))\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  local ok2, s = pcall(json.encode, v)\n"
    "  if not ok2 or type(s) ~= 'string' then\n"
    "    fail('a decoded value does not encode: ' .. show(s) .. ' from '\n"
    "      .. show(line))\n"
    "  end\n"
    "  if s:find('\\n', 1, true) then fail('an encoding spans lines: ' ..\n"
    "    show(s)) end\n"
    "  local ok3, v2 = pcall(json.decode, s)\n"
    "  if not ok3 then\n"
    "    fail('an encoding does not decode: ' .. show(v2) .. ' on ' ..\n"
    "      show(s) .. ' from ' .. show(line))\n"
    "  end\n"
    "  if not same(v, v2) then\n"
    "    fail('decode(encode(v)) differs from v: ' .. show(s) .. ' from ' ..\n"
    "      show(line))\n"
    "  end\n"
    "end\n";

static lua_State *L;
static int check_ref; /* the check function, in the registry */

/* The fast path's two directions and flume's decoder, for the check. */
static int convert(lua_State *S, int (*fn)(const char *, size_t,
                                            flume__buf *)) {
  size_t n;
  const char *s = luaL_checklstring(S, 1, &n);
  flume__buf b = FLUME__BUF_INIT;
  int rc = fn(s, n, &b);
  if (rc == FLUME_ENOMEM) abort();
  if (rc) lua_pushnil(S);
  else lua_pushlstring(S, b.data ? b.data : "", b.len);
  flume__buf_free(&b);
  return 1;
}

static int l_fast_to_mp(lua_State *S) {
  return convert(S, flume__json_to_mp);
}

static int l_fast_to_json(lua_State *S) {
  return convert(S, flume__mp_to_json);
}

static int l_mp_decode(lua_State *S) {
  size_t n;
  const char *s = luaL_checklstring(S, 1, &n);
  char err[256];
  if (flume__mp_decode_marked(S, s, n, err, sizeof err))
    return luaL_error(S, "%s", err);
  return 1;
}

/*
 * The Lua code is what is fuzzed, but the interpreter is not instrumented:
 * a line hook counts (previous line, line) pairs into libFuzzer's extra
 * counters, its coverage of the Lua code. (In the replay build the section
 * is just an array nobody reads.)
 */
#define LUA_COUNTERS 8192
__attribute__((section("__libfuzzer_extra_counters"),
               used)) static uint8_t lua_counters[LUA_COUNTERS];
static int prev_line; /* the line the hook saw last */

static void line_hook(lua_State *H, lua_Debug *ar) {
  (void)H;
  unsigned at =
      ((unsigned)prev_line * 2654435761u ^ (unsigned)ar->currentline) %
      LUA_COUNTERS;
  if (lua_counters[at] < 255) lua_counters[at]++;
  prev_line = ar->currentline;
}

static void setup(void) {
  if ((L = luaL_newstate()) == NULL) abort();
  luaL_openlibs(L);
  const char *extra = getenv("FLUME_FUZZ_LUA_PATH");
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s%s" FLUME_SOURCE_DIR "/views-lua/?.lua;",
                  extra ? extra : "", extra ? ";" : "");
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_register(L, "fast_to_mp", l_fast_to_mp);
  lua_register(L, "fast_to_json", l_fast_to_json);
  lua_register(L, "mp_decode", l_mp_decode);
  if (luaL_loadstring(L, check_src) || lua_pcall(L, 0, 1, 0)) {
    fprintf(stderr, "fuzz_json: %s\n", lua_tostring(L, -1));
    abort();
  }
  check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL) setup();
  const char *p = (const char *)data, *end = p + size;
  while (p <= end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_pushlstring(L, p, len);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      abort();
    }
    if (nl == NULL) break;
    p = nl + 1;
  }
  /* Each line's garbage goes now, so memory stays flat over a long run. */
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
