/* Views from C: a Lua view loaded and called with msgpack arguments and
 * results, and a view written in C behind a flume_view_vtable; since-gated
 * calls, errors; on both backends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "flume.h"
#include "internal.h"
#include "views/views.h"

static void closed(void *ctx) { ++*(int *)ctx; }

static void appended(void *ctx, int status, int64_t seq) {
  CHECK_OK(status);
  *(int64_t *)ctx = seq;
}

typedef struct result {
  int calls;             /* callbacks seen */
  int status;            /* the last status */
  unsigned char buf[64]; /* a copy of the result */
  size_t len;
} result;

static void on_result(void *ctx, int status, const void *res, size_t len) {
  result *r = ctx;
  r->calls++;
  r->status = status;
  r->len = len < sizeof r->buf ? len : sizeof r->buf;
  if (res) memcpy(r->buf, res, r->len);
}

static void on_use(void *ctx, int status, flume_view *v) {
  CHECK_OK(status);
  CHECK(v != NULL);
  ++*(int *)ctx;
}

/* A msgpack database at path (NULL: in memory) on a new loop. */
static flume_db *open_msgpack(uv_loop_t *loop, const char *path) {
  flume_db *db;
  flume_db_options o;
  uv_loop_init(loop);
  flume_db_options_init(&o);
  o.codec = "msgpack";
  CHECK_OK(flume_db_open(loop, path, &o, &db));
  return db;
}

/* {type = <t>} in msgpack: fixmap 1, "type", fixstr t. */
static size_t event(char *out, const char *t) {
  size_t n = strlen(t);
  out[0] = (char)0x81;
  out[1] = (char)0xa4;
  memcpy(out + 2, "type", 4);
  out[6] = (char)(0xa0 | n);
  memcpy(out + 7, t, n);
  return 7 + n;
}

static const char count_script[] =
    "-- how many values of each type\n"
    "return { version = 1,\n"
    "  map = function(v) return v.type, 1 end,\n"
    "  reduce = function(acc, n) return (acc or 0) + n end,\n"
    "  methods = { double = { 'async', function(h, k)\n"
    "    return 2 * (h.get(k) or 0) end } } }\n";

/* ---- a C view: counts the values and their bytes ---------------------- */

typedef struct counter {
  int64_t since;    /* last seq counted */
  int64_t values;   /* values counted */
  int64_t bytes;    /* their total size */
  int closed;       /* close was called */
} counter;

static int64_t c_since(void *s) { return ((counter *)s)->since; }

static int c_apply(void *s, const flume_entry *e, size_t n) {
  counter *c = s;
  for (size_t i = 0; i < n; i++) {
    CHECK(e[i].seq == c->since + 1); /* in order, none missed or repeated */
    c->since = e[i].seq;
    c->values++;
    c->bytes += (int64_t)e[i].len;
  }
  return 0;
}

static int c_destroy(void *s) {
  counter *c = s;
  c->since = -1;
  c->values = c->bytes = 0;
  return 0;
}

static void c_close(void *s) { ((counter *)s)->closed = 1; }

static int c_call(void *s, const char *method, const void *args, size_t len,
                  flume_reply_fn reply, void *rctx) {
  counter *c = s;
  (void)args;
  (void)len;
  if (strcmp(method, "values") != 0) return FLUME_ENOTFOUND;
  unsigned char out[9] = {0xd3}; /* int64 */
  for (int i = 0; i < 8; i++)
    out[1 + i] = (unsigned char)((uint64_t)c->values >> (56 - 8 * i));
  reply(rctx, out, sizeof out);
  return 0;
}

static const flume_view_vtable counter_vt = {c_since, c_apply, c_destroy,
                                             c_close, c_call};

static void run_case(const char *path) {
  uv_loop_t loop;
  flume_db *db = open_msgpack(&loop, path);

  /* Some values before the views: they catch up. */
  char a[16], b[16];
  flume_buf vals[3];
  vals[0] = (flume_buf){a, event(a, "a")};
  vals[1] = (flume_buf){b, event(b, "b")};
  vals[2] = vals[0];
  int64_t last = -1;
  CHECK_OK(flume_db_append(db, vals, 3, appended, &last));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(last == 2);

  int used = 0;
  CHECK_ERR(flume_view_use(db, "bad", "return {", 8, on_use, &used),
            FLUME_ESCRIPT);
  CHECK(strstr(flume_db_errmsg(db), "does not load") != NULL);
  CHECK_ERR(flume_view_use(db, "bad", "return { map = 1 }", 18, on_use, &used),
            FLUME_ESCRIPT);
  CHECK(strstr(flume_db_errmsg(db), "version") != NULL);
  CHECK_OK(flume_view_use(db, "types", count_script, strlen(count_script),
                          on_use, &used));
  counter cnt = {-1, 0, 0, 0};
  flume_view *cv;
  CHECK_OK(flume_view_use_c(db, "counter", &counter_vt, &cnt, &cv));
  CHECK_ERR(flume_view_use_c(db, "counter", &counter_vt, &cnt, &cv),
            FLUME_EEXIST);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(used == 1);
  flume_view *v = flume_db_view(db, "types");
  CHECK(v != NULL && flume_db_view(db, "nope") == NULL);
  CHECK(flume_view_error(v) == NULL);

  /* get "a", gated: [ "a" ] -> 2 */
  static const unsigned char args_a[] = {0x91, 0xa1, 'a'};
  result r = {0};
  CHECK_OK(flume_view_call(v, "get", args_a, sizeof args_a, 1, on_result, &r));
  CHECK(r.calls == 0); /* never from inside the call */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(r.calls == 1 && r.status == 0 && r.len == 1 && r.buf[0] == 2);

  /* One more "a": a gated call sees it. */
  CHECK_OK(flume_db_append(db, vals, 1, appended, &last));
  uv_run(&loop, UV_RUN_DEFAULT);
  r = (result){0};
  CHECK_OK(flume_view_call(v, "double", args_a, sizeof args_a, 1, on_result,
                           &r));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(r.calls == 1 && r.status == 0 && r.len == 1 && r.buf[0] == 6);
  CHECK(flume_view_since(v) == 3);

  r = (result){0};
  CHECK_OK(flume_view_call(v, "nope", args_a, sizeof args_a, 1, on_result, &r));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(r.calls == 1 && r.status == FLUME_ENOTFOUND);
  CHECK(strstr(flume_db_errmsg(db), "no method 'nope'") != NULL);

  /* The C view saw every value once, in order. */
  CHECK(cnt.values == 4 && cnt.since == 3);
  CHECK(cnt.bytes == 3 * (int64_t)vals[0].len + (int64_t)vals[1].len);
  r = (result){0};
  static const unsigned char no_args[] = {0x90};
  CHECK_OK(flume_view_call(cv, "values", no_args, 1, 1, on_result, &r));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(r.calls == 1 && r.status == 0 && r.len == 9 && r.buf[8] == 4);
  CHECK(flume_view_since(cv) == 3);

  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(done == 1 && cnt.closed == 1);
  CHECK(uv_loop_close(&loop) == 0);
}

/* ---- a long log: the views read it ahead (views/ahead.c) -------------- */

/* 5,000 values appended before the views, ten types in a pattern, with
 * padding of varied length: a Lua view and a C view catch up over several
 * of the read-ahead's chunks (on the LMDB backend; the memory backend
 * reads directly), and count what a direct read would give. */
static void ahead_case(const char *path) {
  enum { N = 5000, BATCH = 500 };
  uv_loop_t loop;
  flume_db *db = open_msgpack(&loop, path);
  static char bufs[BATCH][64];
  flume_buf vals[BATCH];
  int64_t want[10] = {0}, bytes = 0, last = -1;
  for (int i = 0; i < N; i += BATCH) {
    for (int j = 0; j < BATCH; j++) {
      char t[24];
      int k = (i + j) * 7 % 10, pad = (i + j) % 13;
      snprintf(t, sizeof t, "t%d", k);
      memset(t + 2, '.', (size_t)pad); /* a type of its own, 2-14 bytes */
      t[2 + pad] = '\0';
      vals[j] = (flume_buf){bufs[j], event(bufs[j], t)};
      bytes += (int64_t)vals[j].len;
      if (pad == 0) want[k]++;
    }
    CHECK_OK(flume_db_append(db, vals, BATCH, appended, &last));
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  CHECK(last == N - 1);
  int used = 0;
  long taken = flume__test_ahead_taken();
  CHECK_OK(flume_view_use(db, "types", count_script, strlen(count_script),
                          on_use, &used));
  counter cnt = {-1, 0, 0, 0};
  flume_view *cv;
  CHECK_OK(flume_view_use_c(db, "counter", &counter_vt, &cnt, &cv));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(used == 1);
  /* LMDB: the catching up took values read ahead (else this tests
   * nothing of it) */
  CHECK((flume__test_ahead_taken() > taken) == (path != NULL));
  flume_view *v = flume_db_view(db, "types");
  for (int k = 0; k < 10; k++) {
    /* get "t<k>" (the values without padding), gated */
    unsigned char args[] = {0x91, 0xa2, 't', (unsigned char)('0' + k)};
    result r = {0};
    CHECK_OK(flume_view_call(v, "get", args, sizeof args, 1, on_result, &r));
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(r.calls == 1 && r.status == 0);
    /* a positive fixint, or uint16 (0xcd) */
    int64_t got = r.buf[0] < 0x80 ? r.buf[0]
                  : r.buf[0] == 0xcd ? (int64_t)r.buf[1] << 8 | r.buf[2]
                                     : -1;
    CHECK(got == want[k]);
  }
  CHECK(flume_view_since(v) == N - 1);
  CHECK(cnt.values == N && cnt.since == N - 1 && cnt.bytes == bytes);
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(done == 1 && cnt.closed == 1);
  CHECK(uv_loop_close(&loop) == 0);
}

/* ---- waits check their own target; calls after close ------------------- */

typedef struct waited {
  int calls;   /* callbacks seen */
  int status;  /* the last status */
} waited;

static void on_waited(void *ctx, int status) {
  waited *w = ctx;
  w->calls++;
  w->status = status;
}

static void on_timer(uv_timer_t *t) { ++*(int *)t->data; }

static void timer_closed(uv_handle_t *h) { (void)h; }

/* Runs the loop for `ms` milliseconds. */
static void run_for(uv_loop_t *loop, uint64_t ms) {
  uv_timer_t t;
  int fired = 0;
  uv_timer_init(loop, &t);
  t.data = &fired;
  uv_timer_start(&t, on_timer, ms, 0);
  while (!fired) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, timer_closed);
  uv_run(loop, UV_RUN_NOWAIT);
}

static void wait_case(const char *path) {
  uv_loop_t loop;
  flume_db *db = open_msgpack(&loop, path);
  char a[16];
  flume_buf val = {a, event(a, "a")};
  int64_t last = -1;
  int used = 0;
  CHECK_OK(flume_view_use(db, "types", count_script, strlen(count_script),
                          on_use, &used));
  CHECK_OK(flume_db_append(db, &val, 1, appended, &last));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(used == 1 && last == 0);
  flume_view *v = flume_db_view(db, "types");
  CHECK(flume_view_since(v) == 0);

  /* Caught up: a wait at or below its since has nothing to wait for,
   * whether or not a checkpoint ever comes again. */
  waited w = {0, 1};
  CHECK_ERR(flume__view_wait(v, 0, 0.2, 0, on_waited, &w),
            FLUME__WAIT_REACHED);
  CHECK_ERR(flume__view_wait(v, -1, 0.2, 0, on_waited, &w),
            FLUME__WAIT_REACHED);
  /* Deferred: called back on a later loop turn, released by no
   * checkpoint (none comes), and before its timeout. */
  CHECK_OK(flume__view_wait(v, 0, 5.0, 1, on_waited, &w));
  CHECK(w.calls == 0);
  run_for(&loop, 50);
  CHECK(w.calls == 1 && w.status == 0);
  /* Ahead of it: times out. */
  w = (waited){0, 1};
  CHECK_OK(flume__view_wait(v, 1, 0.05, 0, on_waited, &w));
  run_for(&loop, 100);
  CHECK(w.calls == 1 && w.status == FLUME_ETIMEDOUT);
  /* A timeout too large to count is no timeout (was: at once). */
  w = (waited){0, 1};
  CHECK_OK(flume__view_wait(v, 1, 1e300, 0, on_waited, &w));
  run_for(&loop, 20);
  CHECK(w.calls == 0);
  CHECK_OK(flume_db_append(db, &val, 1, appended, &last));
  while (w.calls == 0) uv_run(&loop, UV_RUN_ONCE);
  CHECK(w.status == 0 && flume_view_since(v) == 1);

  /* Calls issued before close, still pending when it is called, are
   * cancelled: one gated on a seq not reached, one ungated. */
  static const unsigned char args_a[] = {0x91, 0xa1, 'a'};
  result gated = {0}, ungated = {0}, after = {0};
  CHECK_OK(flume__views_set_paused(db, 1));
  CHECK_OK(flume_db_append(db, &val, 1, appended, &last));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(last == 2 && flume_view_since(v) == 1);
  CHECK_OK(flume_view_call(v, "get", args_a, sizeof args_a, 1, on_result,
                           &gated));
  CHECK_OK(flume_view_call(v, "get", args_a, sizeof args_a, 0, on_result,
                           &ungated));
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  /* After close: refused (was: run against a closing database). */
  CHECK_ERR(flume_view_call(v, "get", args_a, sizeof args_a, 1, on_result,
                            &after),
            FLUME_ECLOSED);
  CHECK_ERR(flume_view_call(v, "get", args_a, sizeof args_a, 0, on_result,
                            &after),
            FLUME_ECLOSED);
  CHECK_ERR(flume__view_wait(v, 0, -1, 0, on_waited, &w), FLUME_ECLOSED);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(done == 1 && after.calls == 0);
  CHECK(ungated.calls == 1 && ungated.status == FLUME_ECLOSED);
  CHECK(gated.calls == 1 && gated.status == FLUME_ECLOSED);
  CHECK(uv_loop_close(&loop) == 0);
}

/* ---- calls see committed state while a reduce view catches up ---------- */

static const char total_script[] =
    "return { version = 1, initial = 0,\n"
    "  reduce = function(n) return n + 1 end,\n"
    "  methods = { now = { 'sync', function(n) return n end } } }\n";

/* A msgpack unsigned integer, or -1. */
static int64_t mp_uint(const unsigned char *p, size_t len) {
  if (len >= 1 && p[0] < 0x80) return p[0];
  size_t n = len == 0 ? 0 : p[0] == 0xcc ? 1 : p[0] == 0xcd ? 2
             : p[0] == 0xce ? 4 : p[0] == 0xcf || p[0] == 0xd3 ? 8 : 0;
  if (n == 0 || len < 1 + n) return -1;
  int64_t v = 0;
  for (size_t i = 1; i <= n; i++) v = v << 8 | p[i];
  return v;
}

/* A checkpoint is in the store a moment before the view's since says so
 * (its commit is acknowledged on a later loop turn), so an answer must be
 * the state of some committed since, seen before or after it. */
typedef struct probe {
  flume_view *view;     /* the view probed */
  int inflight;         /* calls not answered yet */
  int answers;          /* calls answered */
  int ahead;            /* ticks that saw the indexer ahead */
  int done;             /* the view has caught up */
  int64_t got[4096];    /* the answers */
  char seen[40001];     /* seen[s + 1]: since s was seen committed */
} probe;

static void probe_saw(probe *p) {
  int64_t s = flume_view_since(p->view);
  if (s >= -1 && s < 40000) p->seen[s + 1] = 1;
}

static void on_probe(void *ctx, int status, const void *res, size_t len) {
  probe *p = ctx;
  CHECK_OK(status);
  p->inflight--;
  if (p->answers < 4096) p->got[p->answers] = mp_uint(res, len);
  p->answers++;
  probe_saw(p);
}

static void probe_tick(uv_timer_t *t) {
  probe *p = t->data;
  flume_view_info in;
  CHECK_OK(flume_view_status(p->view, &in));
  probe_saw(p);
  if (in.processed > in.since) p->ahead++;
  if (in.since == in.log_since) {
    p->done = 1;
    uv_timer_stop(t);
    return;
  }
  static const unsigned char no_args[] = {0x90};
  const char *method = p->answers % 2 ? "now" : "get";
  CHECK_OK(flume_view_call(p->view, method, no_args, 1, 0, on_probe, p));
  p->inflight++;
}

static void committed_case(const char *path) {
  uv_loop_t loop;
  flume_db *db = open_msgpack(&loop, path);
  char a[16];
  flume_buf vals[1000];
  for (int i = 0; i < 1000; i++) vals[i] = (flume_buf){a, event(a, "a")};
  int64_t last = -1;
  for (int i = 0; i < 40; i++)
    CHECK_OK(flume_db_append(db, vals, 1000, appended, &last));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(last == 39999);
  int used = 0;
  CHECK_OK(flume_view_use(db, "n", total_script, strlen(total_script),
                          on_use, &used));
  while (used == 0) uv_run(&loop, UV_RUN_ONCE);
  static probe p;
  memset(&p, 0, sizeof p);
  p.view = flume_db_view(db, "n");
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &p;
  uv_timer_start(&t, probe_tick, 0, 1);
  while (!p.done || p.inflight) uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, timer_closed);
  probe_saw(&p);
  CHECK(p.answers >= 2 && p.ahead >= 1);
  for (int i = 0; i < p.answers && i < 4096; i++) {
    if (p.got[i] < 0 || p.got[i] > 40000 || !p.seen[p.got[i]])
      fprintf(stderr, "answer %lld: no committed since %lld\n",
              (long long)p.got[i], (long long)p.got[i] - 1);
    CHECK(p.got[i] >= 0 && p.got[i] <= 40000 && p.seen[p.got[i]]);
  }
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(done == 1);
  CHECK(uv_loop_close(&loop) == 0);
}

/* ---- flume_view_use's errors, each with its message --------------------- */

/* The message is a whole, terminated string that says `want`. */
static void check_msg(flume_db *db, const char *want) {
  const char *m = flume_db_errmsg(db);
  CHECK(m != NULL && strlen(m) < 512);
  if (strstr(m, want) == NULL) fprintf(stderr, "message: '%s'\n", m);
  CHECK(strstr(m, want) != NULL);
}

static void use_errors_case(const char *path) {
  uv_loop_t loop;
  flume_db *db;
  uv_loop_init(&loop);
  CHECK_OK(flume_db_open(&loop, path, NULL, &db));
  int used = 0;
  char name[80];
  memset(name, 'n', sizeof name);
  name[sizeof name - 1] = '\0';
  CHECK_ERR(flume_view_use(db, name, count_script, strlen(count_script),
                           on_use, &used), FLUME_EINVAL);
  check_msg(db, "1 to 63 bytes");
  CHECK_ERR(flume_view_use(db, "", count_script, strlen(count_script),
                           on_use, &used), FLUME_EINVAL);
  check_msg(db, "1 to 63 bytes");
  /* No script: the one the database stores, and it has none for x. */
  CHECK_ERR(flume_view_use(db, "x", NULL, 0, on_use, &used), FLUME_ENOTFOUND);
  check_msg(db, "no stored script for a view named 'x'");
  CHECK_ERR(flume_view_use(db, NULL, "x", 1, on_use, &used), FLUME_EINVAL);
  check_msg(db, "name");
  CHECK_ERR(flume_view_use(db, "x", "return {", 8, on_use, &used),
            FLUME_ESCRIPT);
  check_msg(db, "does not load");
  CHECK_ERR(flume_view_use(db, "x", "error('top')", 12, on_use, &used),
            FLUME_ESCRIPT);
  check_msg(db, "top");
  /* a path is not a script: the C door takes text */
  CHECK_ERR(flume_view_use(db, "x", "no/such/file.lua", 16, on_use, &used),
            FLUME_ESCRIPT);
  check_msg(db, "does not load");
  static const char bad_initial[] =
      "return { version = 1, initial = { f = string.len },"
      " reduce = function(s) return s end }";
  CHECK_ERR(flume_view_use(db, "x", bad_initial, strlen(bad_initial),
                           on_use, &used), FLUME_EENCODE);
  check_msg(db, "");
  CHECK_OK(flume_view_use(db, "types", count_script, strlen(count_script),
                          on_use, &used));
  CHECK_ERR(flume_view_use(db, "types", count_script, strlen(count_script),
                           on_use, &used), FLUME_EEXIST);
  check_msg(db, "bump the version");
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(used == 1);
  /* After close: refused, with a message. */
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  CHECK_ERR(flume_view_use(db, "late", count_script, strlen(count_script),
                           on_use, &used), FLUME_ECLOSED);
  check_msg(db, "closed");
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(done == 1 && used == 1);

  /* Closed before any view was used: the same. */
  CHECK_OK(flume_db_open(&loop, path, NULL, &db));
  done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  CHECK_ERR(flume_view_use(db, "late", count_script, strlen(count_script),
                           on_use, &used), FLUME_ECLOSED);
  CHECK(flume_db_errmsg(db) != NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(done == 1 && used == 1);
  CHECK(uv_loop_close(&loop) == 0);
}

int main(void) {
  const char *tmp = getenv("FLUME_TEST_TMP");
  char root[512], cmd[600], dir[600];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp ? tmp : "/tmp");
  CHECK(system(cmd) == 0);
  snprintf(root, sizeof root, "%s/flume-views-XXXXXX", tmp ? tmp : "/tmp");
  CHECK(mkdtemp(root) != NULL);
  run_case(NULL);
  ahead_case(NULL);
  wait_case(NULL);
  committed_case(NULL);
  use_errors_case(NULL);
  snprintf(dir, sizeof dir, "%s/db", root);
  run_case(dir);
  snprintf(dir, sizeof dir, "%s/ahead", root);
  ahead_case(dir);
  snprintf(dir, sizeof dir, "%s/wait", root);
  wait_case(dir);
  snprintf(dir, sizeof dir, "%s/committed", root);
  committed_case(dir);
  snprintf(dir, sizeof dir, "%s/use", root);
  use_errors_case(dir);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  CHECK(system(cmd) == 0);
  printf("test_views: all checks passed\n");
  return 0;
}
