/* The view catalogue from C: a view attached with flume_view_use() is
 * stored with its script; flume_db_views() lists it; a later handle, a
 * writer or a reader, mounts it with a NULL script; flume_db_drop() removes
 * it. A reader's gated wait on a view behind the log, with no writer, is
 * FLUME_ENOWRITER with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "flume.h"
#include "tmpdir.h"

static uv_loop_t loop;

static const char script[] =
    "return { version = 4, initial = 0,\n"
    "  reduce = function(t, v) return t + #v end }";

static void appended(void *ctx, int status, int64_t seq) {
  CHECK_OK(status);
  *(int64_t *)ctx = seq;
}

static void closed(void *ctx) { ++*(int *)ctx; }

static void close_db(flume_db *db) {
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  while (!done) uv_run(&loop, UV_RUN_ONCE);
}

static void used(void *ctx, int status, flume_view *v) {
  CHECK_OK(status);
  *(flume_view **)ctx = v;
}

static flume_view *use(flume_db *db, const char *name, const char *src) {
  flume_view *v = NULL;
  CHECK_OK(flume_view_use(db, name, src, src ? strlen(src) : 0, used, &v));
  while (v == NULL) uv_run(&loop, UV_RUN_ONCE);
  return v;
}

static void waited(void *ctx, int status) { *(int *)ctx = status; }

static int wait_view(flume_view *v) {
  int status = 1;
  int rc = flume_view_wait(v, 10, waited, &status);
  if (rc) return rc;
  while (status == 1) uv_run(&loop, UV_RUN_ONCE);
  return status;
}

/* flume_db_views' listing, one line per view: "name kind version since
 * attached mounted script". */
typedef struct listing {
  char text[4096];
  size_t n;
} listing;

static int list_one(void *ctx, const flume_view_entry *e) {
  listing *l = ctx;
  l->n += (size_t)snprintf(
      l->text + l->n, sizeof l->text - l->n, "%s %s %lld %lld %d %d %.*s\n",
      e->name, e->kind, (long long)e->version, (long long)e->since,
      e->attached, e->mounted, (int)e->script_len,
      e->script ? e->script : "-");
  return 0;
}

static const char *list(flume_db *db) {
  static listing l;
  l.n = 0;
  l.text[0] = '\0';
  CHECK_OK(flume_db_views(db, list_one, &l));
  return l.text;
}

static int64_t sum_of(flume_view *v) {
  void *data;
  size_t len;
  CHECK_OK(flume_view_get(v, NULL, 0, &data, &len));
  CHECK(len >= 1);
  int64_t n = ((unsigned char *)data)[0]; /* a positive fixint */
  flume_free(data);
  return n;
}

static void dropped(void *ctx, int status) { *(int *)ctx = status; }

int main(void) {
  CHECK_OK(uv_loop_init(&loop));
  char root[512], dir[600], want[1024];
  temp_dir(root, sizeof root, "catalogue");
  snprintf(dir, sizeof dir, "%s/db", root);
  flume_db *db;
  int64_t last = -2;

  CHECK_OK(flume_db_open(&loop, dir, NULL, &db));
  flume_view *v = use(db, "len", script);
  flume_buf vals[3] = {{"ab", 2}, {"cde", 3}, {"f", 1}};
  CHECK_OK(flume_db_append(db, vals, 3, appended, &last));
  while (last == -2) uv_run(&loop, UV_RUN_ONCE);
  CHECK_OK(wait_view(v));
  CHECK(sum_of(v) == 6);
  snprintf(want, sizeof want, "len reduce 4 2 1 1 %s\n", script);
  CHECK(strcmp(list(db), want) == 0);
  close_db(db);

  /* A reader mounts it by name; nothing is behind: the wait is over. */
  flume_db_options ro;
  flume_db_options_init(&ro);
  ro.readonly = 1;
  CHECK_OK(flume_db_open(&loop, dir, &ro, &db));
  snprintf(want, sizeof want, "len reduce 4 2 0 0 %s\n", script);
  CHECK(strcmp(list(db), want) == 0);
  v = use(db, "len", NULL);
  CHECK_OK(wait_view(v));
  CHECK(sum_of(v) == 6);
  CHECK_ERR(flume_db_drop(db, "len", dropped, NULL), FLUME_EREADONLY);
  close_db(db);

  /* A writer without the view appends; a reader's gated wait cannot be
   * brought up: ENOWRITER at once, and the message says where. */
  CHECK_OK(flume_db_open(&loop, dir, NULL, &db));
  last = -2;
  CHECK_OK(flume_db_append(db, vals, 1, appended, &last));
  while (last == -2) uv_run(&loop, UV_RUN_ONCE);
  close_db(db);
  CHECK_OK(flume_db_open(&loop, dir, &ro, &db));
  v = use(db, "len", NULL);
  CHECK_ERR(wait_view(v), FLUME_ENOWRITER);
  CHECK(strstr(flume_db_errmsg(db),
               "view 'len' is at seq 2 and the log at 3") != NULL);
  close_db(db);

  /* The writer mounts it by name and it catches up; then drops it. */
  CHECK_OK(flume_db_open(&loop, dir, NULL, &db));
  v = use(db, "len", NULL);
  CHECK_OK(wait_view(v));
  CHECK(sum_of(v) == 8);
  int status = 1;
  CHECK_OK(flume_db_drop(db, "len", dropped, &status));
  while (status == 1) uv_run(&loop, UV_RUN_ONCE);
  CHECK_OK(status);
  CHECK(flume_db_view(db, "len") == NULL);
  CHECK(strcmp(list(db), "") == 0);
  status = 1;
  CHECK_OK(flume_db_drop(db, "len", dropped, &status));
  while (status == 1) uv_run(&loop, UV_RUN_ONCE);
  CHECK_ERR(status, FLUME_ENOTFOUND);
  CHECK_ERR(flume_view_use(db, "len", NULL, 0, used, NULL), FLUME_ENOTFOUND);
  CHECK(strstr(flume_db_errmsg(db), "no stored script") != NULL);
  close_db(db);

  remove_dir(root);
  CHECK_OK(uv_loop_close(&loop));
  printf("the view catalogue from C: ok\n");
  return 0;
}
