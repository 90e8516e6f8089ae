/* Reading views from C (flume.h "Reading views"): status, wait, get,
 * range iterators, rebuild, set_ready and get_many, their errors, and an
 * iterator that outlives its database. The answers themselves are compared
 * with Lua's and the model's by spec/c_reads_spec.lua. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "flume.h"
#include "tmpdir.h"

static uv_loop_t loop;

static void appended(void *ctx, int status, int64_t seq) {
  CHECK_OK(status);
  *(int64_t *)ctx = seq;
}

static void on_use(void *ctx, int status, flume_view *v) {
  CHECK_OK(status);
  CHECK(v != NULL);
  ++*(int *)ctx;
}

typedef struct waited {
  int calls;  /* callbacks seen */
  int status; /* the last one's status */
} waited;

static void on_wait(void *ctx, int status) {
  waited *w = ctx;
  w->calls++;
  w->status = status;
}

static int wait_view(flume_view *v, double timeout) {
  waited w = {0, 0};
  CHECK_OK(flume_view_wait(v, timeout, on_wait, &w));
  CHECK(w.calls == 0); /* always on a later loop turn */
  while (w.calls == 0) uv_run(&loop, UV_RUN_ONCE);
  CHECK(w.calls == 1);
  return w.status;
}

/* {type = "t<i % 3>", n = i} in msgpack. */
static size_t value(char *out, int i) {
  size_t k = 0;
  out[k++] = (char)0x82;
  out[k++] = (char)0xa4;
  memcpy(out + k, "type", 4);
  k += 4;
  out[k++] = (char)0xa2;
  out[k++] = 't';
  out[k++] = (char)('0' + i % 3);
  out[k++] = (char)0xa1;
  out[k++] = 'n';
  out[k++] = (char)i; /* positive fixint, i < 128 */
  return k;
}

static const char group_src[] =
    "return { version = 1, map = function(v) return v.type, v.n end,\n"
    "  reduce = function(a, n) return (a or 0) + n end }\n";
static const char index_src[] =
    "return { version = 1, map = function(v) return v.type end }\n";
static const char reduce_src[] =
    "return { version = 1, initial = 0,\n"
    "  reduce = function(s, v) return s + v.n end }\n";

static int64_t append_values(flume_db *db, int from, int to) {
  char bufs[128][16];
  flume_buf vals[128];
  int n = 0;
  for (int i = from; i < to; i++, n++) {
    vals[n].base = bufs[n];
    vals[n].len = value(bufs[n], i);
  }
  int64_t last = -2;
  CHECK_OK(flume_db_append(db, vals, (size_t)n, appended, &last));
  while (last == -2) uv_run(&loop, UV_RUN_ONCE);
  return last;
}

static int count_entries(flume_view *v, const flume_view_iter_options *o) {
  flume_view_iter *it;
  CHECK_OK(flume_view_iter_open(v, o, &it));
  int n = 0, rc;
  int64_t seq;
  const void *k, *val;
  size_t kl, vl;
  while ((rc = flume_view_iter_next(it, &k, &kl, &seq, &val, &vl)) == 0) {
    CHECK(kl > 0);
    if (val == NULL) { /* index: a seq, no value */
      CHECK(seq >= 0 && vl == 0);
    } else {
      CHECK(seq == -1 && vl > 0);
    }
    n++;
  }
  CHECK_ERR(rc, FLUME_ENOTFOUND);
  CHECK_ERR(flume_view_iter_next(it, &k, &kl, &seq, &val, &vl),
            FLUME_ENOTFOUND);
  flume_view_iter_close(it);
  return n;
}

typedef struct many {
  int calls;      /* values seen */
  int64_t seq[4]; /* their seqs */
  int stop_at;    /* return 7 at this call, or -1 */
} many;

static int on_value(void *ctx, size_t i, int64_t seq, const void *data,
                    size_t len) {
  many *m = ctx;
  CHECK(data != NULL && len > 0);
  CHECK(i == (size_t)m->calls);
  if (m->calls == m->stop_at) return 7;
  if (m->calls < 4) m->seq[m->calls] = seq;
  m->calls++;
  return 0;
}

static void closed(void *ctx) { ++*(int *)ctx; }

static void run(const char *path) {
  flume_db *db;
  flume_db_options opts;
  flume_db_options_init(&opts);
  opts.codec = "msgpack";
  CHECK_OK(flume_db_open(&loop, path, &opts, &db));
  append_values(db, 0, 30);

  int used = 0;
  CHECK_OK(flume_view_use(db, "g", group_src, sizeof group_src - 1, on_use,
                          &used));
  CHECK_OK(flume_view_use(db, "i", index_src, sizeof index_src - 1, on_use,
                          &used));
  CHECK_OK(flume_view_use(db, "r", reduce_src, sizeof reduce_src - 1, on_use,
                          &used));
  flume_view *g = flume_db_view(db, "g"), *ix = flume_db_view(db, "i"),
             *r = flume_db_view(db, "r");
  CHECK(g && ix && r);

  /* Not set up yet: busy, with a message. */
  void *data;
  size_t len;
  flume_view_iter *it;
  flume_view_iter_options o;
  flume_view_iter_options_init(&o);
  CHECK_ERR(flume_view_get(r, NULL, 0, &data, &len), FLUME_EBUSY);
  CHECK(strstr(flume_db_errmsg(db), "'r'") != NULL);
  CHECK_ERR(flume_view_iter_open(g, &o, &it), FLUME_EBUSY);
  flume_view_info in;
  CHECK_OK(flume_view_status(g, &in));
  CHECK(!in.ready && strcmp(in.kind, "group") == 0);

  CHECK_ERR(flume_view_wait(g, 1, NULL, NULL), FLUME_EINVAL);
  CHECK_ERR(flume_view_status(NULL, &in), FLUME_EINVAL);
  CHECK_OK(wait_view(g, 10));
  CHECK_OK(wait_view(ix, 10));
  CHECK_OK(wait_view(r, 10));
  CHECK(used == 3);

  CHECK_OK(flume_view_status(ix, &in));
  CHECK(in.ready && !in.failed && in.since == 29 && in.log_since == 29 &&
        in.processed == 29 && in.version == 1 && in.error == NULL &&
        strcmp(in.kind, "index") == 0);

  /* reduce: the sum 0 + ... + 29 = 435, msgpack uint16 0xcd 0x01b3 */
  CHECK_OK(flume_view_get(r, NULL, 0, &data, &len));
  CHECK(len == 3 && memcmp(data, "\xcd\x01\xb3", 3) == 0);
  flume_free(data);
  CHECK_ERR(flume_view_iter_open(r, &o, &it), FLUME_EINVAL);
  CHECK(strstr(flume_db_errmsg(db), "no keys") != NULL);

  /* group get: t1 = 1 + 4 + ... + 28 = 145 (0xcc 0x91); a missing key */
  CHECK_OK(flume_view_get(g, "\xa2t1", 3, &data, &len));
  CHECK(len == 2 && memcmp(data, "\xcc\x91", 2) == 0);
  flume_free(data);
  CHECK_ERR(flume_view_get(g, "\xa2t9", 3, &data, &len), FLUME_ENOTFOUND);
  CHECK_ERR(flume_view_get(g, NULL, 0, &data, &len), FLUME_EINVAL);
  /* not msgpack; a map with a string key, no key; trailing bytes */
  CHECK_ERR(flume_view_get(g, "\xc1", 1, &data, &len), FLUME_EINVAL);
  CHECK(strstr(flume_db_errmsg(db), "not a key") != NULL);
  CHECK_ERR(flume_view_get(g, "\x81\xa1" "a\x01", 4, &data, &len),
            FLUME_EINVAL);
  CHECK_ERR(flume_view_get(g, "\xa2t1\x00", 4, &data, &len), FLUME_EINVAL);

  /* index get: the 10 seqs of t2, a msgpack array 0x9a 2 5 ... 29 */
  CHECK_OK(flume_view_get(ix, "\xa2t2", 3, &data, &len));
  CHECK(len == 11 && ((unsigned char *)data)[0] == 0x9a &&
        ((unsigned char *)data)[1] == 2 && ((unsigned char *)data)[10] == 29);
  flume_free(data);

  /* ranges: whole, reverse, limit, bounds, both bounds of a side */
  CHECK(count_entries(g, &o) == 3);
  CHECK(count_entries(ix, &o) == 30);
  o.reverse = 1;
  CHECK(count_entries(ix, &o) == 30);
  o.limit = 0;
  CHECK(count_entries(ix, &o) == 0);
  o.limit = 4;
  CHECK(count_entries(ix, &o) == 4);
  flume_view_iter_options_init(&o);
  o.gt = "\xa2t0";
  o.gt_len = 3;
  CHECK(count_entries(ix, &o) == 20);
  o.lte = "\xa2t1";
  o.lte_len = 3;
  CHECK(count_entries(ix, &o) == 10);
  o.gte = "\xa2t0";
  o.gte_len = 3;
  CHECK_ERR(flume_view_iter_open(ix, &o, &it), FLUME_EINVAL);
  flume_view_iter_options_init(&o);
  o.lt = "\x81\xa1" "a\x01";
  o.lt_len = 4;
  CHECK_ERR(flume_view_iter_open(ix, &o, &it), FLUME_EINVAL);
  CHECK_ERR(flume_view_iter_open(NULL, &o, &it), FLUME_EINVAL);
  CHECK_ERR(flume_view_iter_next(NULL, NULL, NULL, NULL, NULL, NULL),
            FLUME_EINVAL);
  flume_view_iter_close(NULL);

  /* get_many: order given, repeats, past the log, a stop, NULLs */
  many m = {0, {0}, -1};
  int64_t seqs[4] = {7, 3, 7, 29};
  CHECK_OK(flume_db_get_many(db, seqs, 4, on_value, &m));
  CHECK(m.calls == 4 && m.seq[0] == 7 && m.seq[1] == 3 && m.seq[3] == 29);
  int64_t past[2] = {1, 30};
  m = (many){0, {0}, -1};
  CHECK_ERR(flume_db_get_many(db, past, 2, on_value, &m), FLUME_ENOTFOUND);
  m = (many){0, {0}, 1};
  CHECK_ERR(flume_db_get_many(db, seqs, 4, on_value, &m), 7);
  CHECK_OK(flume_db_get_many(db, NULL, 0, NULL, NULL));
  CHECK_ERR(flume_db_get_many(db, NULL, 2, on_value, &m), FLUME_EINVAL);

  /* set_ready(0): the views wait; set_ready(1): they catch up */
  CHECK_OK(flume_db_set_ready(db, 0));
  append_values(db, 30, 40);
  CHECK_ERR(wait_view(g, 0.05), FLUME_ETIMEDOUT);
  CHECK_OK(flume_view_status(g, &in));
  CHECK(in.since == 29 && in.log_since == 39);
  CHECK_OK(flume_db_set_ready(db, 1));
  CHECK_OK(wait_view(g, 10));
  flume_view_iter_options_init(&o);
  CHECK_OK(wait_view(ix, 10));
  CHECK(count_entries(ix, &o) == 40);

  /* rebuild: from nothing, the same answers */
  CHECK_OK(flume_db_rebuild(db));
  CHECK_OK(wait_view(ix, 10));
  CHECK_OK(wait_view(r, 10));
  CHECK(count_entries(ix, &o) == 40);
  CHECK_OK(flume_view_get(r, NULL, 0, &data, &len));
  CHECK(len == 3 && memcmp(data, "\xcd\x03\x0c", 3) == 0); /* 780 */
  flume_free(data);

  /* after = a seq the log has not reached: the wait runs out; asked again,
   * it ends once that seq is appended and indexed (0 + ... + 40 = 820) */
  waited w = {0, 0};
  CHECK_ERR(flume_view_wait_after(r, -2, 1, on_wait, &w), FLUME_EINVAL);
  CHECK_OK(flume_view_wait_after(r, 40, 0.05, on_wait, &w));
  while (w.calls == 0) uv_run(&loop, UV_RUN_ONCE);
  CHECK(w.status == FLUME_ETIMEDOUT);
  w.calls = 0;
  CHECK_OK(flume_view_wait_after(r, 40, 10, on_wait, &w));
  append_values(db, 40, 41);
  while (w.calls == 0) uv_run(&loop, UV_RUN_ONCE);
  CHECK_OK(w.status);
  CHECK_OK(flume_view_get(r, NULL, 0, &data, &len));
  CHECK(len == 3 && memcmp(data, "\xcd\x03\x34", 3) == 0); /* 820 */
  flume_free(data);

  /* An iterator open when the database closes: ECLOSED, then closed. */
  o.limit = -1;
  CHECK_OK(flume_view_iter_open(ix, &o, &it));
  const void *k, *val;
  size_t kl, vl;
  int64_t seq;
  CHECK_OK(flume_view_iter_next(it, &k, &kl, &seq, &val, &vl));
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  while (!done) uv_run(&loop, UV_RUN_ONCE);
  CHECK_ERR(flume_view_iter_next(it, &k, &kl, &seq, &val, &vl), FLUME_ECLOSED);
  flume_view_iter_close(it);
  CHECK_ERR(flume_db_rebuild(NULL), FLUME_EINVAL);
  CHECK_ERR(flume_db_set_ready(NULL, 1), FLUME_EINVAL);
}

int main(void) {
  CHECK_OK(uv_loop_init(&loop));
  run(NULL);
  char dir[512], path[600];
  temp_dir(dir, sizeof dir, "view-reads");
  snprintf(path, sizeof path, "%s/db", dir);
  run(path);
  remove_dir(dir);
  CHECK_OK(uv_loop_close(&loop));
  printf("view reads from C: ok\n");
  return 0;
}
