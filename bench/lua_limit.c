/*
 * The Lua limit: the least a rebuild of Lua views can cost. One read
 * transaction and one cursor over the raw LMDB baseline's log; each value
 * is decoded once into a Lua table by flume's own MessagePack decoder and
 * handed to the same view scripts flume runs, called the way flume calls
 * them. Nothing is stored: reduce states and group accumulators stay in
 * Lua tables, an index view's keys are computed and dropped. So this is
 * flume's rebuild without checkpoints, key encoding, slices, sandbox or
 * event loop.
 *
 *   lua_limit DIR VIEW.lua...     prints "lua_limit <values per second>"
 *
 * And the Lua limit of a scan (stream_scan's `lua` baseline): one read
 * transaction and one LMDB cursor, each value decoded by flume's decoder
 * and handed to a Lua `for` loop that counts them, nothing else.
 *
 *   lua_limit --scan DIR          prints "lua_scan <values per second>"
 *
 * And the Lua limit of an index read (index_read's `lua` baseline): one
 * read transaction, one cursor over the raw LMDB baseline's index table
 * (built by `lmdb_bench index_put`) in key order, each entry's value got
 * from the log and decoded by flume's decoder, and key (a Lua string),
 * seq and value handed to a Lua `for` loop that counts them.
 *
 *   lua_limit --index DIR         prints "lua_index <values per second>"
 */
#include <lauxlib.h>
#include <lmdb.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "msgpack.h"

enum kind { REDUCE, GROUP, INDEX };

typedef struct view {
  enum kind kind; /* decided as flume decides it */
  int map;        /* registry refs, LUA_NOREF when absent */
  int reduce;
  int state;      /* reduce: the state; group: table of accumulators */
} view;

static int field_ref(lua_State *L, int t, const char *name) {
  lua_getfield(L, t, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void load_view(lua_State *L, const char *path, view *v) {
  if (luaL_dofile(L, path) != LUA_OK)
    die("%s: %s", path, lua_tostring(L, -1));
  if (!lua_istable(L, -1)) die("%s: does not return a table", path);
  int t = lua_gettop(L);
  v->map = field_ref(L, t, "map");
  v->reduce = field_ref(L, t, "reduce");
  lua_getfield(L, t, "initial");
  int has_initial = !lua_isnil(L, -1);
  lua_getfield(L, t, "kind");
  const char *named = lua_tostring(L, -1);
  if (named)
    v->kind = strcmp(named, "reduce") == 0  ? REDUCE
              : strcmp(named, "group") == 0 ? GROUP
                                            : INDEX;
  else if (v->reduce != LUA_NOREF && (v->map == LUA_NOREF || has_initial))
    v->kind = REDUCE;
  else if (v->reduce != LUA_NOREF)
    v->kind = GROUP;
  else
    v->kind = INDEX;
  lua_pop(L, 1);
  if (v->kind == GROUP) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  v->state = luaL_ref(L, LUA_REGISTRYINDEX); /* initial, or the groups */
  lua_settop(L, 0);
}

static void call(lua_State *L, int nargs, int nres) {
  if (lua_pcall(L, nargs, nres, 0) != LUA_OK)
    die("a view failed: %s", lua_tostring(L, -1));
}

/* Feeds the value at `val` (seq) to a view, as flume's indexer does. */
static void apply(lua_State *L, view *v, int val, int64_t seq) {
  int top = lua_gettop(L);
  if (v->kind == INDEX) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, v->map);
    lua_pushvalue(L, val);
    lua_pushinteger(L, seq);
    call(L, 2, 1); /* the keys are dropped */
  } else if (v->kind == GROUP) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, v->state);
    int groups = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, v->map);
    lua_pushvalue(L, val);
    lua_pushinteger(L, seq);
    call(L, 2, 2);
    int key = lua_gettop(L) - 1;
    if (!lua_isnil(L, key)) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, v->reduce);
      lua_pushvalue(L, key);
      lua_rawget(L, groups);
      lua_pushvalue(L, key + 1);
      lua_pushvalue(L, key);
      lua_pushinteger(L, seq);
      call(L, 4, 1);
      lua_pushvalue(L, key);
      lua_insert(L, -2);
      lua_rawset(L, groups);
    }
  } else {
    if (v->map != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, v->map);
      lua_pushvalue(L, val);
      lua_pushinteger(L, seq);
      call(L, 2, 1);
      val = lua_gettop(L);
    }
    if (!lua_isnil(L, val)) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, v->reduce);
      lua_rawgeti(L, LUA_REGISTRYINDEX, v->state);
      lua_pushvalue(L, val);
      lua_pushinteger(L, seq);
      call(L, 3, 1);
      lua_rawseti(L, LUA_REGISTRYINDEX, v->state);
    }
  }
  lua_settop(L, top);
}

/* The scan's iterator: the next value of the cursor (its upvalue) as seq,
 * decoded value; nothing at the end. */
static int scan_next(lua_State *L) {
  MDB_cursor *cur = lua_touserdata(L, lua_upvalueindex(1));
  int started = lua_toboolean(L, 2); /* the control variable: a seq */
  MDB_val k, v;
  char err[128];
  int rc = mdb_cursor_get(cur, &k, &v, started ? MDB_NEXT : MDB_FIRST);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return luaL_error(L, "mdb_cursor_get: %s", mdb_strerror(rc));
  int64_t seq;
  memcpy(&seq, k.mv_data, sizeof seq);
  lua_pushinteger(L, (lua_Integer)seq);
  if (flume__mp_decode(L, v.mv_data, v.mv_size, err, sizeof err))
    return luaL_error(L, "seq %lld: %s", (long long)seq, err);
  return 2;
}

/* The index read's iterator: the next index entry of the cursor (upvalue
 * 1) as key, seq, value (looked up in the log, upvalue 2's table, through
 * the transaction of upvalue 3); nothing at the end. */
static int index_next(lua_State *L) {
  MDB_cursor *cur = lua_touserdata(L, lua_upvalueindex(1));
  MDB_dbi *log = lua_touserdata(L, lua_upvalueindex(2));
  MDB_txn *txn = lua_touserdata(L, lua_upvalueindex(3));
  int started = !lua_isnil(L, 2); /* the control variable: a key */
  MDB_val k, v;
  char err[128];
  int rc = mdb_cursor_get(cur, &k, &v, started ? MDB_NEXT : MDB_FIRST);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return luaL_error(L, "mdb_cursor_get: %s", mdb_strerror(rc));
  if (k.mv_size < 10) return luaL_error(L, "a short index key");
  const unsigned char *s = (const unsigned char *)k.mv_data;
  uint64_t seq = 0;
  for (int b = 0; b < 8; b++) seq = seq << 8 | s[k.mv_size - 8 + b];
  lua_pushlstring(L, (const char *)s + 1, k.mv_size - 10);
  lua_pushinteger(L, (lua_Integer)seq);
  MDB_val lk = {sizeof seq, &seq}, lv;
  rc = mdb_get(txn, *log, &lk, &lv);
  if (rc) return luaL_error(L, "mdb_get: %s", mdb_strerror(rc));
  if (flume__mp_decode(L, lv.mv_data, lv.mv_size, err, sizeof err))
    return luaL_error(L, "seq %lld: %s", (long long)seq, err);
  return 3;
}

static const char INDEX_LOOP[] = "local next_entry = ...\n"
                                 "local n = 0\n"
                                 "for _, _, v in next_entry do n = n + 1 end\n"
                                 "return n\n";

static int index_read(const char *dir) {
  lua_State *L = luaL_newstate();
  if (L == NULL) die("out of memory");
  luaL_openlibs(L);
  if (luaL_loadstring(L, INDEX_LOOP) != LUA_OK)
    die("the index loop: %s", lua_tostring(L, -1));
  MDB_env *env = env_open(dir, (size_t)16 << 30);
  MDB_txn *txn;
  MDB_dbi log, idx;
  MDB_cursor *cur;
  double t0 = now();
  check_mdb(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "begin");
  check_mdb(mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &log), "log");
  check_mdb(mdb_dbi_open(txn, "index", 0, &idx), "index");
  check_mdb(mdb_cursor_open(txn, idx, &cur), "mdb_cursor_open");
  MDB_stat st;
  check_mdb(mdb_stat(txn, idx, &st), "mdb_stat");
  lua_pushlightuserdata(L, cur);
  lua_pushlightuserdata(L, &log);
  lua_pushlightuserdata(L, txn);
  lua_pushcclosure(L, index_next, 3);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    die("the index read failed: %s", lua_tostring(L, -1));
  lua_Integer n = lua_tointeger(L, -1);
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  double t1 = now();
  if (n == 0 || (size_t)n != st.ms_entries)
    die("the index read saw %lld entries of %zu", (long long)n,
        st.ms_entries);
  mdb_env_close(env);
  lua_close(L);
  printf("lua_index %.0f\n", t1 > t0 ? (double)n / (t1 - t0) : 0.0);
  return 0;
}

/* The loop flume's stream_scan runs (bench/flume_bench.lua), over the
 * iterator it is given. */
static const char SCAN_LOOP[] = "local next_value = ...\n"
                                "local n = 0\n"
                                "for _, v in next_value do n = n + 1 end\n"
                                "return n\n";

static int scan(const char *dir) {
  lua_State *L = luaL_newstate();
  if (L == NULL) die("out of memory");
  luaL_openlibs(L);
  if (luaL_loadstring(L, SCAN_LOOP) != LUA_OK)
    die("the scan loop: %s", lua_tostring(L, -1));
  MDB_env *env = env_open(dir, (size_t)16 << 30);
  MDB_txn *txn;
  MDB_dbi log;
  MDB_cursor *cur;
  double t0 = now();
  check_mdb(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "begin");
  check_mdb(mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &log), "log");
  check_mdb(mdb_cursor_open(txn, log, &cur), "mdb_cursor_open");
  MDB_stat st;
  check_mdb(mdb_stat(txn, log, &st), "mdb_stat");
  lua_pushlightuserdata(L, cur);
  lua_pushcclosure(L, scan_next, 1);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    die("the scan failed: %s", lua_tostring(L, -1));
  lua_Integer n = lua_tointeger(L, -1);
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  double t1 = now();
  if ((size_t)n != st.ms_entries)
    die("the scan saw %lld values of %zu", (long long)n, st.ms_entries);
  mdb_env_close(env);
  lua_close(L);
  printf("lua_scan %.0f\n", t1 > t0 ? (double)n / (t1 - t0) : 0.0);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--scan") == 0) return scan(argv[2]);
  if (argc == 3 && strcmp(argv[1], "--index") == 0)
    return index_read(argv[2]);
  if (argc < 3)
    die("usage: lua_limit DIR VIEW.lua... | lua_limit --scan DIR | "
        "lua_limit --index DIR");
  int nviews = argc - 2;
  view *views = calloc((size_t)nviews, sizeof *views);
  lua_State *L = luaL_newstate();
  if (views == NULL || L == NULL) die("out of memory");
  /* The libraries a view may use (flume's sandbox allows a subset). */
  luaL_openlibs(L);
  for (int i = 0; i < nviews; i++) load_view(L, argv[i + 2], &views[i]);

  MDB_env *env = env_open(argv[1], (size_t)16 << 30);
  MDB_txn *txn;
  MDB_dbi log;
  MDB_cursor *cur;
  MDB_val k, v;
  char err[128];
  size_t n = 0;
  double t0 = now();
  check_mdb(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "begin");
  check_mdb(mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &log), "log");
  check_mdb(mdb_cursor_open(txn, log, &cur), "mdb_cursor_open");
  while (mdb_cursor_get(cur, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0) {
    int64_t seq;
    memcpy(&seq, k.mv_data, sizeof seq);
    if (flume__mp_decode(L, v.mv_data, v.mv_size, err, sizeof err))
      die("seq %lld: %s", (long long)seq, err);
    int val = lua_gettop(L);
    for (int i = 0; i < nviews; i++) apply(L, &views[i], val, seq);
    lua_settop(L, 0);
    n++;
  }
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  double t1 = now();
  mdb_env_close(env);
  lua_close(L);
  printf("lua_limit %.0f\n", t1 > t0 ? (double)n / (t1 - t0) : 0.0);
  return 0;
}
