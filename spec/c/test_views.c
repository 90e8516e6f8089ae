/* Views from C: a Lua view loaded and called with msgpack arguments and
 * results, and a view written in C behind a flume_view_vtable; since-gated
 * calls, errors; on both backends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "flume.h"
#include "views.h"

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
  flume_db *db;
  flume_db_options o;
  uv_loop_init(&loop);
  flume_db_options_init(&o);
  o.codec = "msgpack";
  CHECK_OK(flume_db_open(&loop, path, &o, &db));

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
  flume_db *db;
  flume_db_options o;
  uv_loop_init(&loop);
  flume_db_options_init(&o);
  o.codec = "msgpack";
  CHECK_OK(flume_db_open(&loop, path, &o, &db));
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

int main(void) {
  const char *tmp = getenv("FLUME_TEST_TMP");
  char root[512], cmd[600], dir[600];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp ? tmp : "/tmp");
  CHECK(system(cmd) == 0);
  snprintf(root, sizeof root, "%s/flume-views-XXXXXX", tmp ? tmp : "/tmp");
  CHECK(mkdtemp(root) != NULL);
  run_case(NULL);
  wait_case(NULL);
  snprintf(dir, sizeof dir, "%s/db", root);
  run_case(dir);
  snprintf(dir, sizeof dir, "%s/wait", root);
  wait_case(dir);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  CHECK(system(cmd) == 0);
  printf("test_views: all checks passed\n");
  return 0;
}
