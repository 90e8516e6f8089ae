/*
 * The store's read-only open, stat, listing, copy and verify (log/store.h),
 * what the command (runtime/lua/tools.c) and the read-only handles of
 * "Many processes, one database" build on:
 *
 *  - read-only: refuses a folder without a database (ENOTFOUND) and creates
 *    nothing; opens beside a running writer in another process (no lock),
 *    follows its commits, adopts a map it grew; writes are -EROFS; the
 *    memory backend refuses it (EINVAL); damaged files are refused as the
 *    writer refuses them;
 *  - stat, table_stat, table_list on both backends;
 *  - copy: a hot, consistent copy that opens as a database, compacted or
 *    not, from a writer or a reader; never over a database;
 *  - verify: a clean walk, then a value damaged on disk found by its seq.
 *
 * Readers beside the writer run in child processes: LMDB's caveat forbids
 * one process to open a folder twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "store.h"
#include "tmpdir.h"

static const flume__store_ops *const lmdb = &flume__store_lmdb;
static const flume__store_ops *const mem = &flume__store_memory;

static int exists(const char *dir, const char *name) {
  char file[4200];
  struct stat st;
  snprintf(file, sizeof file, "%s/%s", dir, name);
  return stat(file, &st) == 0;
}

static flume__slice str(const char *s) { return (flume__slice){s, strlen(s)}; }

static flume__slice seq_key(const uint64_t *seq) {
  return (flume__slice){seq, sizeof *seq};
}

static flume__store *open_store(const flume__store_ops *ops, const char *dir,
                                int readonly) {
  flume__store *s;
  flume__store_opts opts = {.readonly = readonly, .map_size = 1 << 20};
  CHECK_OK(ops->open(dir, &opts, &s));
  return s;
}

/* Appends n values "value <seq>" padded to `size` bytes, and puts key "k"
 * in tables "v:a" and "v:b" and "meta", in one write transaction; grows
 * the store as needed. */
static void write_some(const flume__store_ops *ops, flume__store *s, int n,
                       size_t size) {
  static char val[65536];
  CHECK(size < sizeof val);
  for (;;) {
    flume__txn *t;
    flume__table a, b, meta;
    int64_t last;
    CHECK_OK(ops->txn_begin(s, FLUME__TXN_WRITE, &t));
    CHECK_OK(ops->table_open(t, "v:a", 1, &a));
    CHECK_OK(ops->table_open(t, "v:b", 1, &b));
    CHECK_OK(ops->table_open(t, "meta", 1, &meta));
    CHECK_OK(ops->log_last(t, &last));
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
      memset(val, '.', size);
      int len = snprintf(val, size, "value %lld", (long long)(last + 1 + i));
      val[len] = '.';
      rc = ops->log_append(t, last + 1 + i, (flume__slice){val, size});
    }
    if (rc == 0) rc = ops->put(t, a, str("k"), str("a"));
    if (rc == 0) rc = ops->put(t, b, str("k"), str("b"));
    if (rc == 0) rc = ops->put(t, b, str("l"), str("b"));
    if (rc == 0) rc = ops->put(t, meta, str("format"), str("2"));
    if (rc == FLUME_EMAPFULL) {
      ops->txn_abort(t);
      CHECK_OK(ops->grow(s));
      continue;
    }
    CHECK_OK(rc);
    CHECK_OK(ops->txn_commit(t));
    return;
  }
}

/* The log's last seq, through a read transaction of s. */
static int64_t last_seq(const flume__store_ops *ops, flume__store *s) {
  flume__txn *t;
  int64_t last;
  CHECK_OK(ops->txn_begin(s, FLUME__TXN_READ, &t));
  CHECK_OK(ops->log_last(t, &last));
  ops->txn_abort(t);
  return last;
}

/* Whether the value at seq reads "value <seq>...". */
static int value_ok(const flume__store_ops *ops, flume__store *s,
                    uint64_t seq) {
  flume__txn *t;
  flume__slice v;
  char want[64];
  snprintf(want, sizeof want, "value %llu.", (unsigned long long)seq);
  CHECK_OK(ops->txn_begin(s, FLUME__TXN_READ, &t));
  int rc = ops->get(t, FLUME__TABLE_LOG, seq_key(&seq), &v);
  int ok = rc == 0 && v.size >= strlen(want) &&
           memcmp(v.data, want, strlen(want)) == 0;
  ops->txn_abort(t);
  return ok;
}

/* ---- read-only open ----------------------------------------------------- */

static void test_readonly_refuses(void) {
  char dir[4096], missing[4200];
  flume__store *s;
  flume__store_opts ro = {.readonly = 1};
  temp_dir(dir, sizeof dir, "ro-empty");
  /* an empty folder: no database, and none made */
  CHECK_ERR(lmdb->open(dir, &ro, &s), FLUME_ENOTFOUND);
  CHECK(!exists(dir, "data.mdb") && !exists(dir, "lock.mdb") &&
        !exists(dir, "flume.lock"));
  /* no folder: not made either */
  snprintf(missing, sizeof missing, "%s/not-here", dir);
  CHECK_ERR(lmdb->open(missing, &ro, &s), FLUME_ENOTFOUND);
  CHECK(!exists(missing, "."));
  /* a damaged file is refused as the writer refuses it, with its detail */
  char file[4200], detail[512];
  snprintf(file, sizeof file, "%s/data.mdb", dir);
  int fd = open(file, O_WRONLY | O_CREAT, 0644);
  CHECK(fd >= 0);
  close(fd);
  CHECK_ERR(lmdb->open(dir, &ro, &s), FLUME_ECORRUPT);
  CHECK(flume__store_detail(detail, sizeof detail) == 1);
  CHECK(strstr(detail, "is empty (0 bytes)") != NULL);
  remove_dir(dir);
  /* memory: nothing to share */
  CHECK_ERR(mem->open(NULL, &ro, &s), FLUME_EINVAL);
}

/* A reader in a child process, opened before the writer, beside it: sees
 * each commit, adopts the map the writer grew, cannot write. The parent
 * writes; `go` and `done` pipes step the two. */
static void test_readonly_beside_writer(void) {
  char dir[4096];
  temp_dir(dir, sizeof dir, "ro-beside");
  flume__store *w = open_store(lmdb, dir, 0);
  write_some(lmdb, w, 10, 100);
  lmdb->close(w);

  int go[2], done[2];
  CHECK(pipe(go) == 0 && pipe(done) == 0);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    char c;
    close(go[1]), close(done[0]);
    flume__store *r = open_store(lmdb, dir, 1);
    flume__store_stat before, after;
    CHECK_OK(lmdb->stat(r, &before));
    CHECK(last_seq(lmdb, r) == 9 && value_ok(lmdb, r, 9));
    flume__txn *t;
    CHECK_ERR(lmdb->txn_begin(r, FLUME__TXN_WRITE, &t), -EROFS);
    CHECK_ERR(lmdb->grow(r), -EROFS);
    CHECK(write(done[1], "o", 1) == 1); /* opened: the writer may open */
    CHECK(read(go[0], &c, 1) == 1);     /* the writer grew the map */
    CHECK(last_seq(lmdb, r) == 209);
    for (uint64_t seq = 0; seq <= 209; seq += 19)
      CHECK(value_ok(lmdb, r, seq));
    CHECK(value_ok(lmdb, r, 209));
    CHECK_OK(lmdb->stat(r, &after));
    CHECK(after.map_size > before.map_size);
    CHECK(after.txn_id > before.txn_id);
    lmdb->close(r);
    _exit(0);
  }
  char c;
  close(go[0]), close(done[1]);
  CHECK(read(done[0], &c, 1) == 1);
  /* the writer opens beside the reader: no ELOCKED */
  w = open_store(lmdb, dir, 0);
  flume__store_stat st;
  CHECK_OK(lmdb->stat(w, &st));
  size_t map = st.map_size;
  /* 200 values of 30 kB: 6 MB, past the 1 MiB map */
  for (int i = 0; i < 20; i++) write_some(lmdb, w, 10, 30000);
  CHECK_OK(lmdb->stat(w, &st));
  CHECK(st.map_size > map);
  CHECK(write(go[1], "g", 1) == 1);
  int status;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  lmdb->close(w);
  close(go[1]), close(done[0]);
  remove_dir(dir);
}

/* ---- stat and listing ---------------------------------------------------- */

typedef struct names {
  char list[8][32]; /* the names seen */
  int n;            /* how many */
} names;

static int on_name(void *ctx, const char *name) {
  names *ns = ctx;
  CHECK(ns->n < 8 && strlen(name) < 32);
  strcpy(ns->list[ns->n++], name);
  return 0;
}

static int stop_at_second(void *ctx, const char *name) {
  int *n = ctx;
  (void)name;
  return ++*n == 2 ? 12345 : 0;
}

static void check_stat(const flume__store_ops *ops, flume__store *s) {
  flume__txn *t;
  flume__table a, b;
  flume__table_stat ts;
  flume__store_stat st;
  names ns = {0};
  CHECK_OK(ops->txn_begin(s, FLUME__TXN_READ, &t));
  CHECK_OK(ops->table_list(t, on_name, &ns));
  CHECK(ns.n == 3 && strcmp(ns.list[0], "meta") == 0 &&
        strcmp(ns.list[1], "v:a") == 0 && strcmp(ns.list[2], "v:b") == 0);
  int calls = 0;
  CHECK_ERR(ops->table_list(t, stop_at_second, &calls), 12345);
  CHECK(calls == 2);
  CHECK_OK(ops->table_stat(t, FLUME__TABLE_LOG, &ts));
  CHECK(ts.entries == 10 && ts.bytes >= 10 * 100);
  CHECK_OK(ops->table_open(t, "v:a", 0, &a));
  CHECK_OK(ops->table_open(t, "v:b", 0, &b));
  CHECK_OK(ops->table_stat(t, a, &ts));
  CHECK(ts.entries == 1 && ts.bytes > 0);
  CHECK_OK(ops->table_stat(t, b, &ts));
  CHECK(ts.entries == 2 && ts.bytes > 0);
  ops->txn_abort(t);
  CHECK_OK(ops->stat(s, &st));
  CHECK(st.used >= 10 * 100 && st.txn_id >= 1);
  if (ops == lmdb)
    CHECK(st.page_size >= 512 && st.map_size >= st.used &&
          st.max_readers > 0);
}

static void test_stat(void) {
  char dir[4096];
  flume__store *s = open_store(mem, NULL, 0);
  write_some(mem, s, 10, 100);
  check_stat(mem, s);
  mem->close(s);

  temp_dir(dir, sizeof dir, "stat");
  s = open_store(lmdb, dir, 0);
  write_some(lmdb, s, 10, 100);
  check_stat(lmdb, s);
  lmdb->close(s);
  s = open_store(lmdb, dir, 1); /* the same through a reader */
  check_stat(lmdb, s);
  lmdb->close(s);
  remove_dir(dir);
}

/* ---- copy --------------------------------------------------------------- */

static void on_progress(void *ctx, uint64_t bytes) {
  uint64_t *last = ctx;
  CHECK(bytes >= *last); /* only forward */
  *last = bytes;
}

/* dest holds a database with the values 0..last and the tables. */
static void copy_reads(const char *dest, int64_t last) {
  flume__store *c = open_store(lmdb, dest, 1);
  CHECK(last_seq(lmdb, c) == last);
  CHECK(value_ok(lmdb, c, 0) && value_ok(lmdb, c, (uint64_t)last));
  names ns = {0};
  flume__txn *t;
  CHECK_OK(lmdb->txn_begin(c, FLUME__TXN_READ, &t));
  CHECK_OK(lmdb->table_list(t, on_name, &ns));
  lmdb->txn_abort(t);
  CHECK(ns.n == 3);
  lmdb->close(c);
}

static void test_copy(void) {
  char dir[4096], dest[4096], dest2[4096], missing[4200];
  temp_dir(dir, sizeof dir, "copy-src");
  temp_dir(dest, sizeof dest, "copy-dst");
  temp_dir(dest2, sizeof dest2, "copy-dst");
  flume__store *s = open_store(lmdb, dir, 0);
  for (int i = 0; i < 5; i++) write_some(lmdb, s, 20, 3000);
  /* from the writer, compacted, while it is open */
  uint64_t bytes = 0;
  CHECK_OK(lmdb->copy(s, dest, 1, on_progress, &bytes));
  write_some(lmdb, s, 1, 10); /* after the copy: not in it */
  CHECK(exists(dest, "data.mdb") && !exists(dest, "flume.lock"));
  /* never over a database, nor into a folder that is not there */
  CHECK_ERR(lmdb->copy(s, dest, 1, NULL, NULL), -EEXIST);
  snprintf(missing, sizeof missing, "%s/no/such", dest);
  CHECK_ERR(lmdb->copy(s, missing, 0, NULL, NULL), -ENOENT);
  lmdb->close(s);
  copy_reads(dest, 99);
  /* from a reader, page for page */
  s = open_store(lmdb, dir, 1);
  CHECK_OK(lmdb->copy(s, dest2, 0, NULL, NULL));
  lmdb->close(s);
  copy_reads(dest2, 100);
  remove_dir(dir);
  remove_dir(dest);
  remove_dir(dest2);
  /* memory: no file to copy */
  s = open_store(mem, NULL, 0);
  CHECK_ERR(mem->copy(s, "/tmp", 0, NULL, NULL), FLUME_EINVAL);
  mem->close(s);
}

/* ---- verify ------------------------------------------------------------- */

typedef struct findings {
  names tables;       /* the tables walked */
  int damaged;        /* damage found */
  char first[512];    /* the first damage's description */
  uint64_t entries;   /* the count DONE gave; UINT64_MAX before */
} findings;

static void on_finding(void *ctx, flume__verify_kind kind, const char *what,
                       uint64_t count) {
  findings *f = ctx;
  switch (kind) {
  case FLUME__VERIFY_TABLE:
    on_name(&f->tables, what);
    break;
  case FLUME__VERIFY_DAMAGED:
    if (f->damaged++ == 0) snprintf(f->first, sizeof f->first, "%s", what);
    break;
  case FLUME__VERIFY_DONE:
    f->entries = count;
    break;
  }
}

static void test_verify(void) {
  char dir[4096];
  findings f = {.entries = UINT64_MAX};
  /* memory: the tables, counted */
  flume__store *s = open_store(mem, NULL, 0);
  write_some(mem, s, 10, 100);
  CHECK_OK(mem->verify(s, on_finding, &f));
  CHECK(f.damaged == 0 && f.entries == 10 + 1 + 1 + 2);
  CHECK(f.tables.n == 4 && strcmp(f.tables.list[0], "log") == 0);
  mem->close(s);

  /* LMDB: the same tables by their store names, then LMDB's own */
  temp_dir(dir, sizeof dir, "verify");
  s = open_store(lmdb, dir, 0);
  write_some(lmdb, s, 10, 100);
  lmdb->close(s);
  s = open_store(lmdb, dir, 1);
  memset(&f, 0, sizeof f);
  f.entries = UINT64_MAX;
  CHECK_OK(lmdb->verify(s, on_finding, &f));
  CHECK(f.damaged == 0 && f.entries >= 10 + 1 + 1 + 2);
  CHECK(f.tables.n == 5 && strcmp(f.tables.list[0], "log") == 0 &&
        strcmp(f.tables.list[1], "meta") == 0 &&
        strcmp(f.tables.list[2], "v:a") == 0 &&
        strcmp(f.tables.list[4], "(free pages)") == 0);
  lmdb->close(s);

  /* one byte of the value at seq 7 changed on disk */
  char file[4200];
  snprintf(file, sizeof file, "%s/data.mdb", dir);
  FILE *fp = fopen(file, "r+b");
  CHECK(fp != NULL);
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, fp);
  char *at = NULL;
  for (size_t i = 0; at == NULL && i + 8 <= n; i++)
    if (memcmp(buf + i, "value 7.", 8) == 0) at = buf + i;
  CHECK(at != NULL);
  CHECK(fseek(fp, (long)(at - buf), SEEK_SET) == 0 && fputc('V', fp) != EOF);
  CHECK(fclose(fp) == 0);
  s = open_store(lmdb, dir, 1);
  memset(&f, 0, sizeof f);
  CHECK_OK(lmdb->verify(s, on_finding, &f));
  CHECK(f.damaged == 1 && strstr(f.first, "seq 7 in ") != NULL);
  CHECK(f.tables.n == 5); /* the walk went on */
  lmdb->close(s);
  remove_dir(dir);
}

int main(void) {
  test_readonly_refuses();
  test_readonly_beside_writer();
  test_stat();
  test_copy();
  test_verify();
  printf("store tools: read-only, stat, list, copy, verify: ok\n");
  return 0;
}
