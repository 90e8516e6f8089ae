/*
 * The raw LMDB baseline: what LMDB itself does with the data set's encoded
 * bytes, with no codec, no Lua and no event loop. One measurement per run;
 * it prints "<row> <values per second>".
 *
 *   lmdb_bench append_batch DIR DATA     N values, MDB_APPEND, a commit per 1000
 *   lmdb_bench append_each  DIR DATA C   the first C values, a commit each
 *   lmdb_bench get_random   DIR N        N mdb_get at random seqs, a read
 *                                        transaction each (reset/renew)
 *   lmdb_bench stream_scan  DIR          one cursor over the whole log
 *   lmdb_bench index_put    DIR DATA     (author, seq) keys put in batches of
 *                                        100,000 into a table of DIR (the
 *                                        authors are read out of DATA first,
 *                                        not timed)
 *   lmdb_bench index_read   DIR          a cursor range per author over that
 *                                        table, and each entry's log value
 *
 * The log is an MDB_INTEGERKEY table keyed by the int64 seq, as flume's.
 * Commits are durable (no MDB_NOSYNC), as flume's default.
 */
#include <lauxlib.h>
#include <lmdb.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "msgpack.h"

#define MAP_BYTES ((size_t)16 << 30)
/* Pairs per commit when building the index: big, as LMDB likes it (a
 * commit per 2000 pairs runs at a sixth of the speed). */
#define INDEX_BATCH 100000

static volatile uint64_t sink; /* keeps reads from being optimised away */

static void report(const char *row, size_t n, double secs) {
  printf("%s %.0f\n", row, secs > 0 ? (double)n / secs : 0.0);
}

static MDB_dbi open_table(MDB_env *env, const char *name, unsigned flags) {
  MDB_txn *txn;
  MDB_dbi dbi;
  check_mdb(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
  check_mdb(mdb_dbi_open(txn, name, flags | MDB_CREATE, &dbi), name);
  check_mdb(mdb_txn_commit(txn), "mdb_txn_commit");
  return dbi;
}

static void append(const char *dir, const char *data, size_t count,
                   size_t per_commit, const char *row) {
  dataset d;
  data_load(data, &d);
  if (count == 0 || count > d.n) count = d.n;
  MDB_env *env = env_open(dir, MAP_BYTES);
  MDB_dbi log = open_table(env, "log", MDB_INTEGERKEY);
  MDB_txn *txn = NULL;
  double t0 = now();
  for (size_t i = 0; i < count; i++) {
    if (txn == NULL) check_mdb(mdb_txn_begin(env, NULL, 0, &txn), "begin");
    int64_t seq = (int64_t)i;
    MDB_val k = {sizeof seq, &seq}, v = {d.len[i], (void *)d.at[i]};
    check_mdb(mdb_put(txn, log, &k, &v, MDB_APPEND), "mdb_put");
    if ((i + 1) % per_commit == 0 || i + 1 == count) {
      check_mdb(mdb_txn_commit(txn), "mdb_txn_commit");
      txn = NULL;
    }
  }
  double t1 = now();
  mdb_env_close(env);
  report(row, count, t1 - t0);
}

static void get_random(const char *dir, int64_t n) {
  MDB_env *env = env_open(dir, MAP_BYTES);
  MDB_dbi log = open_table(env, "log", MDB_INTEGERKEY);
  MDB_txn *txn;
  MDB_stat st;
  check_mdb(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "begin");
  check_mdb(mdb_stat(txn, log, &st), "mdb_stat");
  int64_t entries = (int64_t)st.ms_entries;
  if (entries == 0) die("get_random: the log is empty");
  mdb_txn_reset(txn);
  uint64_t sum = 0;
  double t0 = now();
  for (int64_t i = 0; i < n; i++) {
    int64_t seq = random_seq((uint64_t)i, entries);
    MDB_val k = {sizeof seq, &seq}, v;
    check_mdb(mdb_txn_renew(txn), "mdb_txn_renew");
    check_mdb(mdb_get(txn, log, &k, &v), "mdb_get");
    sum += ((const unsigned char *)v.mv_data)[v.mv_size - 1];
    mdb_txn_reset(txn);
  }
  double t1 = now();
  sink = sum;
  mdb_txn_abort(txn);
  mdb_env_close(env);
  report("get_random", (size_t)n, t1 - t0);
}

static void stream_scan(const char *dir) {
  MDB_env *env = env_open(dir, MAP_BYTES);
  MDB_dbi log = open_table(env, "log", MDB_INTEGERKEY);
  MDB_txn *txn;
  MDB_cursor *cur;
  MDB_val k, v;
  size_t n = 0;
  uint64_t sum = 0;
  double t0 = now();
  check_mdb(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "begin");
  check_mdb(mdb_cursor_open(txn, log, &cur), "mdb_cursor_open");
  while (mdb_cursor_get(cur, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0) {
    sum += ((const unsigned char *)v.mv_data)[v.mv_size - 1];
    n++;
  }
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  double t1 = now();
  sink = sum;
  mdb_env_close(env);
  report("stream_scan", n, t1 - t0);
}

/* An index key: 's', the author's bytes, 0, then the seq big-endian, so
 * that keys sort by author then seq (like flume's key encoding). */
static size_t index_key(char *out, const char *author, size_t alen,
                        int64_t seq) {
  out[0] = 's';
  memcpy(out + 1, author, alen);
  out[1 + alen] = 0;
  for (int b = 0; b < 8; b++)
    out[2 + alen + b] = (char)((uint64_t)seq >> (56 - 8 * b));
  return alen + 10;
}

static void index_put(const char *dir, const char *data) {
  dataset d;
  data_load(data, &d);
  /* Not timed: pull each value's author out of its MessagePack. */
  lua_State *L = luaL_newstate();
  char **authors = malloc((d.n ? d.n : 1) * sizeof *authors);
  if (L == NULL || authors == NULL) die("out of memory");
  for (size_t i = 0; i < d.n; i++) {
    char err[128];
    if (flume__mp_decode(L, d.at[i], d.len[i], err, sizeof err))
      die("value %zu: %s", i, err);
    lua_getfield(L, -1, "author");
    size_t alen;
    const char *a = lua_tolstring(L, -1, &alen);
    if (a == NULL || alen > 200) die("value %zu: no author", i);
    authors[i] = strdup(a);
    lua_settop(L, 0);
  }
  lua_close(L);

  MDB_env *env = env_open(dir, MAP_BYTES);
  MDB_dbi idx = open_table(env, "index", 0);
  MDB_txn *txn = NULL;
  char key[256];
  /* Not timed: an index of an earlier run (bench/run --repeat) emptied,
   * so that every run inserts */
  check_mdb(mdb_txn_begin(env, NULL, 0, &txn), "begin");
  check_mdb(mdb_drop(txn, idx, 0), "mdb_drop");
  check_mdb(mdb_txn_commit(txn), "mdb_txn_commit");
  txn = NULL;
  double t0 = now();
  for (size_t i = 0; i < d.n; i++) {
    if (txn == NULL) check_mdb(mdb_txn_begin(env, NULL, 0, &txn), "begin");
    MDB_val k = {index_key(key, authors[i], strlen(authors[i]), (int64_t)i),
                 key};
    MDB_val v = {0, ""};
    check_mdb(mdb_put(txn, idx, &k, &v, 0), "mdb_put");
    if ((i + 1) % INDEX_BATCH == 0 || i + 1 == d.n) {
      check_mdb(mdb_txn_commit(txn), "mdb_txn_commit");
      txn = NULL;
    }
  }
  double t1 = now();
  mdb_env_close(env);
  report("index_put", d.n, t1 - t0);
}

static void index_read(const char *dir) {
  MDB_env *env = env_open(dir, MAP_BYTES);
  MDB_dbi log = open_table(env, "log", MDB_INTEGERKEY);
  MDB_dbi idx = open_table(env, "index", 0);
  MDB_txn *txn;
  MDB_cursor *cur;
  MDB_val k, v;

  /* Not timed: the distinct authors, in key order. */
  size_t na = 0, cap = 1024;
  char **authors = malloc(cap * sizeof *authors);
  check_mdb(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "begin");
  check_mdb(mdb_cursor_open(txn, idx, &cur), "mdb_cursor_open");
  for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    const char *a = (const char *)k.mv_data + 1;
    if (na && strcmp(authors[na - 1], a) == 0) continue;
    if (na == cap) authors = realloc(authors, (cap *= 2) * sizeof *authors);
    if (authors == NULL) die("out of memory");
    authors[na++] = strdup(a);
  }
  mdb_cursor_close(cur);
  mdb_txn_reset(txn);
  if (na == 0) die("index_read: the index is empty");

  size_t n = 0;
  uint64_t sum = 0;
  char key[256];
  double t0 = now();
  for (size_t a = 0; a < na; a++) {
    size_t alen = strlen(authors[a]);
    size_t plen = index_key(key, authors[a], alen, 0) - 8;
    check_mdb(mdb_txn_renew(txn), "mdb_txn_renew");
    check_mdb(mdb_cursor_open(txn, idx, &cur), "mdb_cursor_open");
    k = (MDB_val){plen + 8, key};
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size == plen + 8 && memcmp(k.mv_data, key, plen) == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      const unsigned char *s = (const unsigned char *)k.mv_data + plen;
      uint64_t seq = 0;
      for (int b = 0; b < 8; b++) seq = seq << 8 | s[b];
      MDB_val lk = {sizeof seq, &seq}, lv;
      check_mdb(mdb_get(txn, log, &lk, &lv), "mdb_get");
      sum += ((const unsigned char *)lv.mv_data)[lv.mv_size - 1];
      n++;
    }
    mdb_cursor_close(cur);
    mdb_txn_reset(txn);
  }
  double t1 = now();
  sink = sum;
  mdb_txn_abort(txn);
  mdb_env_close(env);
  report("index_read", n, t1 - t0);
}

int main(int argc, char **argv) {
  const char *row = argc > 1 ? argv[1] : "";
  if (strcmp(row, "append_batch") == 0 && argc == 4)
    append(argv[2], argv[3], 0, 1000, row);
  else if (strcmp(row, "append_each") == 0 && argc == 5)
    append(argv[2], argv[3], (size_t)strtoull(argv[4], NULL, 10), 1, row);
  else if (strcmp(row, "get_random") == 0 && argc == 4)
    get_random(argv[2], strtoll(argv[3], NULL, 10));
  else if (strcmp(row, "stream_scan") == 0 && argc == 3)
    stream_scan(argv[2]);
  else if (strcmp(row, "index_put") == 0 && argc == 4)
    index_put(argv[2], argv[3]);
  else if (strcmp(row, "index_read") == 0 && argc == 3)
    index_read(argv[2]);
  else
    die("usage: lmdb_bench append_batch DIR DATA | append_each DIR DATA COUNT"
        " | get_random DIR N | stream_scan DIR | index_put DIR DATA"
        " | index_read DIR");
  return 0;
}
