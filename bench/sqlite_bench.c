/*
 * The SQLite baseline (`sqlite`): the store a user would pick instead of
 * flume, from C through libsqlite3, with the data set as JSON text (the
 * lines of bench/gen.lua's DATA.jsonl) in one table
 *
 *   CREATE TABLE log(seq INTEGER PRIMARY KEY, value TEXT)
 *
 * (seq is the rowid, and flume's seq), in WAL mode with synchronous=FULL
 * so that every commit is durable, as flume's. Otherwise SQLite's
 * defaults. One measurement per run; it prints "<row> <values per second>".
 *
 *   sqlite_bench append_batch  DIR DATA.jsonl  every line, a transaction per
 *                                              1000 (one prepared INSERT)
 *   sqlite_bench get_random    DIR N    N lookups by rowid at random seqs
 *                                       (the raw LMDB baseline's order), a
 *                                       read transaction each: the text
 *   sqlite_bench stream_scan   DIR      the table in rowid order, each value
 *                                       decoded into a Lua table by
 *                                       lua-cjson and handed to a Lua `for`
 *                                       loop (as flume's stream_scan)
 *   sqlite_bench rebuild_group DIR      the values per author: SELECT
 *                                       json_extract(value, '$.author'),
 *                                       count(*) ... GROUP BY, every row
 *
 * The database is DIR/log.sqlite (and its -wal and -shm files).
 */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"

static volatile uint64_t sink; /* keeps reads from being optimised away */

static void report(const char *row, size_t n, double secs) {
  printf("%s %.0f\n", row, secs > 0 ? (double)n / secs : 0.0);
}

static void check_sql(sqlite3 *db, int rc, const char *what) {
  if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
    die("%s: %s", what, sqlite3_errmsg(db));
}

static void exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
    die("%s: %s", sql, err ? err : "failed");
}

static sqlite3 *db_open(const char *dir) {
  char path[4096];
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    die("%s: %s", dir, strerror(errno));
  snprintf(path, sizeof path, "%s/log.sqlite", dir);
  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK)
    die("%s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
  /* WAL: readers beside the writer, a commit is an append to the WAL;
   * FULL: that append is fsynced at every commit (durable, as flume's). */
  exec(db, "PRAGMA journal_mode=WAL");
  exec(db, "PRAGMA synchronous=FULL");
  return db;
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st;
  check_sql(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL), sql);
  return st;
}

/* The number of values in the table (not timed). */
static int64_t count(sqlite3 *db) {
  sqlite3_stmt *st = prepare(db, "SELECT count(*) FROM log");
  check_sql(db, sqlite3_step(st), "count");
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

static void append_batch(const char *dir, const char *path) {
  /* Not timed: the lines, read into memory. */
  FILE *f = fopen(path, "rb");
  if (f == NULL) die("%s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0) die("%s: %s", path, strerror(errno));
  size_t size = (size_t)sb.st_size;
  char *text = malloc(size ? size : 1);
  if (text == NULL) die("out of memory");
  if (fread(text, 1, size, f) != size) die("%s: short read", path);
  fclose(f);

  sqlite3 *db = db_open(dir);
  exec(db, "CREATE TABLE log(seq INTEGER PRIMARY KEY, value TEXT)");
  sqlite3_stmt *ins = prepare(db, "INSERT INTO log(seq, value) VALUES(?, ?)");
  size_t n = 0;
  double t0 = now();
  for (char *p = text, *end = text + size; p < end; n++) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (n % 1000 == 0) exec(db, "BEGIN");
    sqlite3_bind_int64(ins, 1, (sqlite3_int64)n);
    sqlite3_bind_text(ins, 2, p, (int)len, SQLITE_STATIC);
    check_sql(db, sqlite3_step(ins), "INSERT");
    sqlite3_reset(ins);
    if (n % 1000 == 999) exec(db, "COMMIT");
    p += len + 1;
  }
  if (n % 1000 != 0) exec(db, "COMMIT");
  double t1 = now();
  sqlite3_finalize(ins);
  if (count(db) != (int64_t)n) die("append_batch: the table lost values");
  sqlite3_close(db);
  free(text);
  report("append_batch", n, t1 - t0);
}

static void get_random(const char *dir, int64_t n) {
  sqlite3 *db = db_open(dir);
  int64_t entries = count(db);
  if (entries == 0) die("get_random: the table is empty");
  sqlite3_stmt *get = prepare(db, "SELECT value FROM log WHERE seq = ?");
  uint64_t sum = 0;
  double t0 = now();
  for (int64_t i = 0; i < n; i++) {
    int64_t seq = random_seq((uint64_t)i, entries);
    sqlite3_bind_int64(get, 1, (sqlite3_int64)seq);
    if (sqlite3_step(get) != SQLITE_ROW)
      die("get_random: no value at seq %lld", (long long)seq);
    const unsigned char *v = sqlite3_column_text(get, 0);
    int len = sqlite3_column_bytes(get, 0);
    sum += len > 0 ? v[len - 1] : 0;
    sqlite3_reset(get);
  }
  double t1 = now();
  sink = sum;
  sqlite3_finalize(get);
  sqlite3_close(db);
  report("get_random", (size_t)n, t1 - t0);
}

/* The scan's iterator: the statement's next row (its first upvalue) as
 * seq, the value decoded by cjson.decode (its second); nothing at the end. */
static int scan_next(lua_State *L) {
  sqlite3_stmt *st = lua_touserdata(L, lua_upvalueindex(1));
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return 0;
  if (rc != SQLITE_ROW)
    return luaL_error(L, "step: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
  lua_pushinteger(L, (lua_Integer)sqlite3_column_int64(st, 0));
  lua_pushvalue(L, lua_upvalueindex(2));
  const char *text = (const char *)sqlite3_column_text(st, 1);
  lua_pushlstring(L, text, (size_t)sqlite3_column_bytes(st, 1));
  lua_call(L, 1, 1);
  return 2;
}

/* The loop flume's stream_scan runs (bench/flume_bench.lua), over the
 * iterator it is given. */
static const char SCAN_LOOP[] = "local next_value = ...\n"
                                "local n = 0\n"
                                "for _, v in next_value do n = n + 1 end\n"
                                "return n\n";

static void stream_scan(const char *dir) {
  lua_State *L = luaL_newstate();
  if (L == NULL) die("out of memory");
  luaL_openlibs(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, "cjson");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    die("lua-cjson: %s", lua_tostring(L, -1));
  lua_getfield(L, -1, "decode");
  int decode = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  if (luaL_loadstring(L, SCAN_LOOP) != LUA_OK)
    die("the scan loop: %s", lua_tostring(L, -1));

  sqlite3 *db = db_open(dir);
  int64_t entries = count(db);
  double t0 = now();
  sqlite3_stmt *st = prepare(db, "SELECT seq, value FROM log ORDER BY seq");
  lua_pushlightuserdata(L, st);
  lua_rawgeti(L, LUA_REGISTRYINDEX, decode);
  lua_pushcclosure(L, scan_next, 2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    die("the scan failed: %s", lua_tostring(L, -1));
  lua_Integer n = lua_tointeger(L, -1);
  sqlite3_finalize(st);
  double t1 = now();
  if (n != entries)
    die("the scan saw %lld values of %lld", (long long)n, (long long)entries);
  sqlite3_close(db);
  lua_close(L);
  report("stream_scan", (size_t)n, t1 - t0);
}

static void rebuild_group(const char *dir) {
  sqlite3 *db = db_open(dir);
  int64_t entries = count(db);
  int64_t total = 0, groups = 0;
  double t0 = now();
  sqlite3_stmt *st = prepare(db, "SELECT json_extract(value, '$.author') AS a,"
                                 " count(*) FROM log GROUP BY a");
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    total += sqlite3_column_int64(st, 1);
    groups++;
  }
  check_sql(db, rc, "GROUP BY");
  sqlite3_finalize(st);
  double t1 = now();
  if (total != entries || groups == 0)
    die("rebuild_group counted %lld values of %lld", (long long)total,
        (long long)entries);
  sqlite3_close(db);
  report("rebuild_group", (size_t)entries, t1 - t0);
}

int main(int argc, char **argv) {
  const char *row = argc > 1 ? argv[1] : "";
  if (strcmp(row, "append_batch") == 0 && argc == 4)
    append_batch(argv[2], argv[3]);
  else if (strcmp(row, "get_random") == 0 && argc == 4)
    get_random(argv[2], strtoll(argv[3], NULL, 10));
  else if (strcmp(row, "stream_scan") == 0 && argc == 3)
    stream_scan(argv[2]);
  else if (strcmp(row, "rebuild_group") == 0 && argc == 3)
    rebuild_group(argv[2]);
  else
    die("usage: sqlite_bench append_batch DIR DATA.jsonl | get_random DIR N"
        " | stream_scan DIR | rebuild_group DIR");
  return 0;
}
