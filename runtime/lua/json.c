/*
 * flume.core's JSON fast path for the command line (runtime/json.h):
 * core.json_to_mp(line) and core.mp_to_json(bytes) give the converted
 * string, or nil for a value they leave to flume.json;
 * core.json_lines(chunk, pos, values, n, max) converts a chunk's lines;
 * db:cat_json(from, to, max, values_only) reads a range of the log and
 * writes its lines in C, without a Lua string per value.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "json.h"
#include "lua/binding.h"

static int convert(lua_State *L, int (*fn)(const char *, size_t,
                                            flume__buf *)) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  flume__buf b = FLUME__BUF_INIT;
  int rc = fn(s, n, &b);
  if (rc == FLUME_ENOMEM) {
    flume__buf_free(&b);
    return flume__lua_raise(L, rc, NULL);
  }
  if (rc) lua_pushnil(L);
  else lua_pushlstring(L, b.data ? b.data : "", b.len);
  flume__buf_free(&b);
  return 1;
}

static int l_json_to_mp(lua_State *L) {
  return convert(L, flume__json_to_mp);
}

static int l_mp_to_json(lua_State *L) {
  return convert(L, flume__mp_to_json);
}

/* What Lua's "%S" is not: a line of these alone is blank. */
static int blank_char(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
         c == '\r';
}

/*
 * core.json_lines(chunk, pos, values, n, max) -> pos, n, lines: converts
 * the whole lines of chunk from byte pos (1-based; a line ends with "\n",
 * a "\r" before it is dropped) into values[n + 1 ...], skipping blank
 * lines, while n < max. It stops before a line json_to_mp leaves to
 * flume.json, and before a line without its "\n": returns the position
 * of the first line not consumed, the new n and how many lines it
 * consumed. `flume append` reads its input in chunks through this, so
 * that the common line costs no Lua at all.
 */
static int l_json_lines(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer pos = luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer n = luaL_checkinteger(L, 4), max = luaL_checkinteger(L, 5);
  luaL_argcheck(L, pos >= 1 && (size_t)pos <= len + 1, 2, "out of range");
  size_t at = (size_t)pos - 1;
  lua_Integer lines = 0;
  flume__buf b = FLUME__BUF_INIT;
  while (n < max && at < len) {
    const char *line = s + at;
    const char *nl = memchr(line, '\n', len - at);
    if (nl == NULL) break;
    size_t ln = (size_t)(nl - line);
    if (ln && line[ln - 1] == '\r') ln--;
    size_t k = 0;
    while (k < ln && blank_char((unsigned char)line[k])) k++;
    if (k < ln) {
      b.len = 0;
      int rc = flume__json_to_mp(line, ln, &b);
      if (rc == FLUME_ENOMEM) {
        flume__buf_free(&b);
        return flume__lua_raise(L, rc, NULL);
      }
      if (rc) break;
      lua_pushlstring(L, b.data ? b.data : "", b.len);
      lua_rawseti(L, 3, ++n);
    }
    lines++;
    at = (size_t)(nl - s) + 1;
  }
  flume__buf_free(&b);
  lua_pushinteger(L, (lua_Integer)at + 1);
  lua_pushinteger(L, n);
  lua_pushinteger(L, lines);
  return 3;
}

typedef struct cat_ctx {
  flume__buf out;   /* the lines */
  int values_only;  /* 'V' lines, not '{"seq":S,"value":V}' */
  lua_Integer n;    /* values written */
  int64_t last;     /* the last seq written */
  int64_t stuck;    /* the seq of a value for flume.json, or -1 */
} cat_ctx;

#define CAT_STOP 1 /* a visitor's "stop here": a value for flume.json */

static int cat_one(void *p, int64_t seq, const void *data, size_t len) {
  cat_ctx *c = p;
  size_t mark = c->out.len;
  int rc = 0;
  if (!c->values_only) {
    char head[48];
    int hn = snprintf(head, sizeof head, "{\"seq\":%lld,\"value\":",
                      (long long)seq);
    rc = flume__buf_append(&c->out, head, (size_t)hn);
  }
  if (rc == 0) rc = flume__mp_to_json(data, len, &c->out);
  if (rc == 0)
    rc = flume__buf_append(&c->out, c->values_only ? "\n" : "}\n",
                           c->values_only ? 1 : 2);
  if (rc == FLUME__JSON_OTHER) {
    c->out.len = mark;
    c->stuck = seq;
    return CAT_STOP;
  }
  if (rc) return rc;
  c->n++;
  c->last = seq;
  return 0;
}

/* db:cat_json(from, to, max, values_only) -> lines, n, stuck, last: the
 * lines of up to max values from `from` towards `to` (backwards when from
 * > to), in one read transaction; n values written, the last at seq
 * `last`; stuck is the seq of the value after them that flume.json must
 * write (or nil). A msgpack database's. */
static int ldb_cat_json(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  int64_t from = luaL_checkinteger(L, 2), to = luaL_checkinteger(L, 3);
  lua_Integer max = luaL_checkinteger(L, 4);
  cat_ctx c = {FLUME__BUF_INIT, lua_toboolean(L, 5), 0, -1, -1};
  size_t count = 0;
  int rc = max > 0 ? flume__db_read(d->db, from, to, (size_t)max, cat_one, &c,
                                    &count)
                   : 0;
  if (rc && rc != CAT_STOP) {
    flume__buf_free(&c.out);
    return flume__lua_raise(L, rc, NULL);
  }
  lua_pushlstring(L, c.out.data ? c.out.data : "", c.out.len);
  flume__buf_free(&c.out);
  lua_pushinteger(L, c.n);
  if (c.stuck >= 0) lua_pushinteger(L, c.stuck);
  else lua_pushnil(L);
  lua_pushinteger(L, c.last);
  return 4;
}

void flume__lua_json_register(lua_State *L, int module, int methods) {
  lua_pushcfunction(L, ldb_cat_json);
  lua_setfield(L, methods, "cat_json");
  lua_pushcfunction(L, l_json_to_mp);
  lua_setfield(L, module, "json_to_mp");
  lua_pushcfunction(L, l_mp_to_json);
  lua_setfield(L, module, "mp_to_json");
  lua_pushcfunction(L, l_json_lines);
  lua_setfield(L, module, "json_lines");
}
