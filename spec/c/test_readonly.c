/* A read-only handle from C (flume_db_options.readonly): it opens only an
 * existing database, reads it, and refuses appends and views with
 * FLUME_EREADONLY. Following a writer in another process is
 * spec/readonly_spec.lua's. */
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

static void closed(void *ctx) { ++*(int *)ctx; }

static void close_db(flume_db *db) {
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  while (!done) uv_run(&loop, UV_RUN_ONCE);
}

static void on_use(void *ctx, int status, flume_view *v) {
  (void)ctx, (void)status, (void)v;
  CHECK(0); /* never set up */
}

int main(void) {
  CHECK_OK(uv_loop_init(&loop));
  char root[512], dir[600];
  temp_dir(root, sizeof root, "readonly");
  snprintf(dir, sizeof dir, "%s/db", root);
  flume_db_options ro;
  flume_db_options_init(&ro);
  ro.readonly = 1;
  flume_db *db;

  /* Nothing to read: ENOTFOUND, and nothing created; memory: EINVAL. */
  CHECK_ERR(flume_db_open(&loop, dir, &ro, &db), FLUME_ENOTFOUND);
  CHECK(access(dir, F_OK) != 0);
  CHECK_ERR(flume_db_open(&loop, NULL, &ro, &db), FLUME_EINVAL);

  /* A writer makes it, and goes. */
  CHECK_OK(flume_db_open(&loop, dir, NULL, &db));
  flume_buf v[2] = {{"a", 1}, {"bc", 2}};
  int64_t last = -2;
  CHECK_OK(flume_db_append(db, v, 2, appended, &last));
  while (last == -2) uv_run(&loop, UV_RUN_ONCE);
  close_db(db);

  CHECK_OK(flume_db_open(&loop, dir, &ro, &db));
  CHECK(flume_db_since(db) == 1);
  CHECK(strcmp(flume_db_codec(db), "raw") == 0);
  void *data;
  size_t len;
  CHECK_OK(flume_db_get(db, 1, &data, &len));
  CHECK(len == 2 && memcmp(data, "bc", 2) == 0);
  flume_free(data);
  CHECK_ERR(flume_db_append(db, v, 1, appended, &last), FLUME_EREADONLY);
  static const char script[] =
      "return { version = 1, map = function(v) return v end }";
  /* A reader mounts the views a writer attached; this database has none. */
  CHECK_ERR(flume_view_use(db, "v", script, sizeof script - 1, on_use, NULL),
            FLUME_ENOTFOUND);
  CHECK(strstr(flume_db_errmsg(db), "no such view") != NULL);
  CHECK_ERR(flume_view_use(db, "v", NULL, 0, on_use, NULL), FLUME_ENOTFOUND);
  CHECK(strstr(flume_db_errmsg(db), "no stored script") != NULL);
  CHECK_ERR(flume_db_rebuild(db), FLUME_EREADONLY);
  CHECK(strcmp(flume_strerror(FLUME_EREADONLY),
               "database is open read-only") == 0);
  close_db(db);
  /* the loop has nothing left: the poll closed with the handle */
  CHECK(uv_run(&loop, UV_RUN_NOWAIT) == 0);

  remove_dir(root);
  CHECK_OK(uv_loop_close(&loop));
  printf("read-only handles from C: ok\n");
  return 0;
}
