/* The embedding API: open, append, get, iterate, on_since, close, errors;
 * on both backends, each case on a fresh database and a loop that closes
 * cleanly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "flume.h"

typedef struct acks {
  int calls;         /* callbacks seen */
  int status;        /* the last status */
  int64_t seq;       /* the last seq */
  int64_t since_at;  /* the db's since when the last callback ran */
  flume_db *db;      /* for since_at */
} acks;

static void on_append(void *ctx, int status, int64_t seq) {
  acks *a = ctx;
  a->calls++;
  a->status = status;
  a->seq = seq;
  a->since_at = flume_db_since(a->db);
}

static void on_closed(void *ctx) { ++*(int *)ctx; }

static char root[256];

static const char *fresh_dir(const char *name) {
  static char dir[512];
  snprintf(dir, sizeof dir, "%s/%s", root, name);
  return dir;
}

/* Opens a database on the backend (path NULL for memory), codec "raw":
 * the values here are opaque bytes. */
static flume_db *open_db(uv_loop_t *loop, const char *path) {
  flume_db *db;
  flume_db_options o;
  flume_db_options_init(&o);
  o.codec = "raw";
  CHECK_OK(flume_db_open(loop, path, &o, &db));
  return db;
}

static void close_db(uv_loop_t *loop, flume_db *db) {
  int closed = 0;
  CHECK_OK(flume_db_close(db, on_closed, &closed));
  CHECK(closed == 0); /* never from inside the call */
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(closed == 1);
}

static void append_str(uv_loop_t *loop, flume_db *db, const char *s,
                       int64_t want_seq) {
  acks a = {0, -1, -1, -2, db};
  flume_buf b = {s, strlen(s)};
  CHECK_OK(flume_db_append(db, &b, 1, on_append, &a));
  CHECK(a.calls == 0);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(a.calls == 1);
  CHECK_OK(a.status);
  CHECK(a.seq == want_seq);
  CHECK(a.since_at == want_seq); /* since advances before the callback */
}

static void test_append_get(const char *path) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  flume_db *db = open_db(&loop, path);
  CHECK(flume_db_since(db) == -1);
  CHECK(flume_db_is_memory(db) == (path == NULL));
  append_str(&loop, db, "zero", 0);
  append_str(&loop, db, "one", 1);

  flume_buf batch[3] = {{"a", 1}, {"", 0}, {"ccc", 3}};
  acks a = {0, -1, -1, -2, db};
  CHECK_OK(flume_db_append(db, batch, 3, on_append, &a));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(a.calls == 1 && a.status == 0 && a.seq == 4);
  CHECK(flume_db_since(db) == 4);

  void *data;
  size_t len;
  CHECK_OK(flume_db_get(db, 1, &data, &len));
  CHECK(len == 3 && memcmp(data, "one", 3) == 0);
  flume_free(data);
  CHECK_OK(flume_db_get(db, 3, &data, &len)); /* an empty value */
  CHECK(len == 0);
  flume_free(data);
  CHECK_ERR(flume_db_get(db, 5, &data, &len), FLUME_ENOTFOUND);
  CHECK_ERR(flume_db_get(db, -1, &data, &len), FLUME_ENOTFOUND);
  CHECK_ERR(flume_db_append(db, batch, 0, NULL, NULL), FLUME_EINVAL);
  close_db(&loop, db);
  CHECK(uv_loop_close(&loop) == 0);
}

/* Counts what an iterator yields and checks the seqs follow `step`. */
static int64_t drain(flume_iter *it, int64_t first, int step) {
  int64_t seq, n = 0;
  const void *data;
  size_t len;
  int rc;
  while ((rc = flume_iter_next(it, &seq, &data, &len)) == 0) {
    CHECK(seq == first + n * step);
    char want[32];
    snprintf(want, sizeof want, "v%lld", (long long)seq);
    CHECK(len == strlen(want) && memcmp(data, want, len) == 0);
    n++;
  }
  CHECK_ERR(rc, FLUME_ENOTFOUND);
  return n;
}

static void test_iterators(const char *path) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  flume_db *db = open_db(&loop, path);
  enum { N = 3000 }; /* more than one chunk */
  static char texts[N][16];
  static flume_buf vals[N];
  for (int i = 0; i < N; i++) {
    snprintf(texts[i], sizeof texts[i], "v%d", i);
    vals[i] = (flume_buf){texts[i], strlen(texts[i])};
  }
  CHECK_OK(flume_db_append(db, vals, N, NULL, NULL));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(flume_db_since(db) == N - 1);

  flume_iter *it;
  flume_iter_options o;
  flume_iter_options_init(&o);
  CHECK_OK(flume_iter_open(db, &o, &it));
  CHECK(drain(it, 0, 1) == N);
  /* Live: the same iterator goes on with values appended later. */
  flume_buf more = {"v3000", 5};
  CHECK_OK(flume_db_append(db, &more, 1, NULL, NULL));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(drain(it, N, 1) == 1);
  flume_iter_close(it);

  o.reverse = 1;
  o.gte = 10;
  o.lte = 20;
  CHECK_OK(flume_iter_open(db, &o, &it));
  CHECK(drain(it, 20, -1) == 11);
  flume_iter_close(it);

  flume_iter_options_init(&o);
  o.gte = 100;
  o.limit = 5;
  CHECK_OK(flume_iter_open(db, &o, &it));
  CHECK(drain(it, 100, 1) == 5);
  flume_iter_close(it);

  /* An iterator may outlive its database. */
  flume_iter_options_init(&o);
  CHECK_OK(flume_iter_open(db, &o, &it));
  close_db(&loop, db);
  int64_t seq;
  const void *data;
  size_t len;
  CHECK_ERR(flume_iter_next(it, &seq, &data, &len), FLUME_ECLOSED);
  flume_iter_close(it);
  CHECK(uv_loop_close(&loop) == 0);
}

typedef struct seen {
  int calls;        /* callbacks with status 0 */
  int closed;       /* the final FLUME_ECLOSED callback */
  int64_t last;     /* the last since */
} seen;

static void on_since(void *ctx, int status, int64_t since) {
  seen *s = ctx;
  if (status == FLUME_ECLOSED) {
    s->closed++;
    return;
  }
  CHECK_OK(status);
  s->calls++;
  s->last = since;
}

static void test_watch_and_group_commit(const char *path) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  flume_db *db = open_db(&loop, path);
  seen s = {0, 0, -1}, stopped = {0, 0, -1};
  flume_watch *w, *w2;
  CHECK_OK(flume_db_on_since(db, on_since, &s, &w));
  CHECK_OK(flume_db_on_since(db, on_since, &stopped, &w2));
  flume_watch_stop(w2);
  acks a[500];
  for (int i = 0; i < 500; i++) {
    a[i] = (acks){0, -1, -1, -2, db};
    flume_buf b = {"x", 1};
    CHECK_OK(flume_db_append(db, &b, 1, on_append, &a[i]));
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < 500; i++)
    CHECK(a[i].calls == 1 && a[i].status == 0 && a[i].seq == i);
  CHECK(s.last == 499);
  CHECK(s.calls >= 1 && s.calls < 50); /* appends rode shared commits */
  CHECK(stopped.calls == 0);
  close_db(&loop, db);
  CHECK(s.closed == 1);
  CHECK(uv_loop_close(&loop) == 0);
}

static void test_close_with_appends_in_flight(const char *path) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  flume_db *db = open_db(&loop, path);
  acks a[100];
  for (int i = 0; i < 100; i++) {
    a[i] = (acks){0, -1, -1, -2, db};
    flume_buf b = {"y", 1};
    CHECK_OK(flume_db_append(db, &b, 1, on_append, &a[i]));
  }
  int closed = 0;
  CHECK_OK(flume_db_close(db, on_closed, &closed));
  flume_buf b = {"z", 1};
  CHECK_ERR(flume_db_append(db, &b, 1, NULL, NULL), FLUME_ECLOSED);
  CHECK_ERR(flume_db_close(db, NULL, NULL), FLUME_ECLOSED);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed == 1);
  for (int i = 0; i < 100; i++) /* accepted appends were written */
    CHECK(a[i].calls == 1 && a[i].status == 0 && a[i].seq == i);
  if (path) {
    db = open_db(&loop, path);
    CHECK(flume_db_since(db) == 99);
    close_db(&loop, db);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

/* A msgpack database takes only values its views can decode; a raw one
 * takes any bytes. */
static void test_msgpack_checked(const char *path) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  flume_db_options o;
  flume_db_options_init(&o);
  o.codec = "msgpack";
  flume_db *db;
  CHECK_OK(flume_db_open(&loop, path, &o, &db));
  static const struct {
    const char *bytes;
    size_t len;
  } bad[] = {
      {"hello", 5},                /* text: 'h' is a fixint, then more bytes */
      {"\xa5hell", 5},             /* a string cut short */
      {"\x01\x02", 2},             /* two values */
      {"\xc1", 1},                 /* never used */
      {"\xd4\x01\x00", 3},         /* an ext type */
      {"\x81\xc0\x01", 3},         /* a nil map key */
      {"\x81\x81\x01\x01\x01", 5}, /* a map as a map key */
      {"", 0},                     /* nothing */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    flume_buf b = {bad[i].bytes, bad[i].len};
    CHECK_ERR(flume_db_append(db, &b, 1, NULL, NULL), FLUME_EENCODE);
  }
  /* One bad value in a batch: nothing of it */
  flume_buf batch[3] = {{"\x01", 1}, {"\xa2hi", 3}, {"\x92\x01", 2}};
  CHECK_ERR(flume_db_append(db, batch, 3, NULL, NULL), FLUME_EENCODE);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(flume_db_since(db) == -1);
  /* nesting: 100 arrays deep decodes, 101 do not */
  char deep[102];
  memset(deep, 0x91, sizeof deep);
  deep[100] = 0x01; /* 100 arrays around a 1 */
  flume_buf d = {deep, 101};
  CHECK_OK(flume_db_append(db, &d, 1, NULL, NULL));
  memset(deep, 0x91, sizeof deep);
  deep[101] = 0x01;
  d.len = 102;
  CHECK_ERR(flume_db_append(db, &d, 1, NULL, NULL), FLUME_EENCODE);
  batch[2] = (flume_buf){"\x92\x01\xc0", 3};
  CHECK_OK(flume_db_append(db, batch, 3, NULL, NULL));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(flume_db_since(db) == 3);
  close_db(&loop, db);

  /* raw: any bytes */
  uv_loop_init(&loop);
  db = open_db(&loop, NULL);
  flume_buf any = {"\xc1hello", 6};
  CHECK_OK(flume_db_append(db, &any, 1, NULL, NULL));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(flume_db_since(db) == 0);
  close_db(&loop, db);
  CHECK(uv_loop_close(&loop) == 0);
}

static void test_folder_rules(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *dir = fresh_dir("rules");
  flume_db_options o;
  flume_db_options_init(&o);
  o.codec = "msgpack";
  flume_db *db, *other;
  CHECK_OK(flume_db_open(&loop, dir, &o, &db));
  CHECK(strcmp(flume_db_codec(db), "msgpack") == 0);
  CHECK_ERR(flume_db_open(&loop, dir, &o, &other), FLUME_ELOCKED);
  append_str(&loop, db, "\xa4kept", 0); /* the msgpack string "kept" */
  close_db(&loop, db);

  o.codec = "raw";
  CHECK_ERR(flume_db_open(&loop, dir, &o, &other), FLUME_ECODEC);
  o.codec = NULL; /* accept whatever it has */
  CHECK_OK(flume_db_open(&loop, dir, &o, &db));
  CHECK(strcmp(flume_db_codec(db), "msgpack") == 0);
  CHECK(flume_db_since(db) == 0);
  close_db(&loop, db);

  o.codec = "";
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  CHECK_ERR(flume_db_open(NULL, dir, NULL, &db), FLUME_EINVAL);
  CHECK(flume_db_open(&loop, "/proc/no/such/folder", NULL, &db) < 0);
  CHECK(uv_loop_close(&loop) == 0);
}

static void test_errors(void) {
  CHECK(strcmp(flume_err_name(FLUME_ECLOSED), "ECLOSED") == 0);
  CHECK(strcmp(flume_strerror(FLUME_ENOTFOUND), "no such entry") == 0);
  CHECK(strcmp(flume_err_name(UV_ENOENT), "ENOENT") == 0);
  CHECK(strcmp(flume_strerror(0), "success") == 0);
  CHECK(strcmp(flume_err_name(12345), "UNKNOWN") == 0);
  CHECK(strcmp(flume_version(), "0.2.0") == 0);
}

int main(void) {
  const char *tmp = getenv("FLUME_TEST_TMP");
  char cmd[600];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp ? tmp : "/tmp");
  CHECK(system(cmd) == 0);
  snprintf(root, sizeof root, "%s/flume-api-XXXXXX", tmp ? tmp : "/tmp");
  CHECK(mkdtemp(root) != NULL);

  test_errors();
  const char *paths[] = {NULL, NULL};
  char lmdb_dirs[4][512];
  const char *names[] = {"append", "iter", "watch", "inflight"};
  for (int i = 0; i < 4; i++)
    snprintf(lmdb_dirs[i], sizeof lmdb_dirs[i], "%s/%s", root, names[i]);
  for (int b = 0; b < 2; b++) {
    paths[0] = b ? lmdb_dirs[0] : NULL;
    test_append_get(paths[0]);
    test_iterators(b ? lmdb_dirs[1] : NULL);
    test_watch_and_group_commit(b ? lmdb_dirs[2] : NULL);
    test_close_with_appends_in_flight(b ? lmdb_dirs[3] : NULL);
  }
  test_folder_rules();
  test_msgpack_checked(NULL);

  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  CHECK(system(cmd) == 0);
  printf("test_api: all checks passed\n");
  return 0;
}
