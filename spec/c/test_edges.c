/* Edges of the embedding API (issue 8, defect 10): sizes that wrap, option
 * values that are negative numbers cast to size_t, paths that name nothing.
 * Each is a clear FLUME_EINVAL, never a crash; the database stays usable. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "flume.h"

static void on_append(void *ctx, int status, int64_t seq) {
  (void)seq;
  *(int *)ctx = status == 0 ? 1 : status;
}

static void on_closed(void *ctx) { ++*(int *)ctx; }

static void close_db(uv_loop_t *loop, flume_db *db) {
  int closed = 0;
  CHECK_OK(flume_db_close(db, on_closed, &closed));
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(closed == 1);
}

/* Lengths whose sum wraps past SIZE_MAX used to pass the size check and
 * copy far past a small allocation. */
static void test_append_sizes_wrap(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  flume_db *db;
  CHECK_OK(flume_db_open(&loop, NULL, NULL, &db));
  static const char byte = 'x';
  flume_buf half[2] = {{&byte, SIZE_MAX / 2 + 1}, {&byte, SIZE_MAX / 2 + 1}};
  int acked = 0;
  CHECK_ERR(flume_db_append(db, half, 2, on_append, &acked), FLUME_EINVAL);
  flume_buf wrap[3] = {{&byte, 1}, {&byte, SIZE_MAX}, {&byte, 16}};
  CHECK_ERR(flume_db_append(db, wrap, 3, on_append, &acked), FLUME_EINVAL);
  flume_buf one[1] = {{&byte, SIZE_MAX - 8}};
  CHECK_ERR(flume_db_append(db, one, 1, on_append, &acked), FLUME_EINVAL);
  /* Nothing went in, and the database still appends. */
  CHECK(flume_db_since(db) == -1);
  flume_buf ok = {"v", 1};
  CHECK_OK(flume_db_append(db, &ok, 1, on_append, &acked));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(acked == 1);
  CHECK(flume_db_since(db) == 0);
  close_db(&loop, db);
  CHECK_OK(uv_loop_close(&loop));
}

/* map_size = (size_t)-1 (a negative number cast) said ENOMEM; an empty path
 * named no folder. */
static void test_open_options(const char *root) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char dir[512];
  snprintf(dir, sizeof dir, "%s/edges-open", root);
  flume_db_options o;
  flume_db_options_init(&o);
  flume_db *db = NULL;
  o.map_size = (size_t)-1;
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  o.map_size = SIZE_MAX / 2 + 1;
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  CHECK_ERR(flume_db_open(&loop, NULL, &o, &db), FLUME_EINVAL);
  flume_db_options_init(&o);
  CHECK_ERR(flume_db_open(&loop, "", &o, &db), FLUME_EINVAL);
  CHECK(db == NULL);
  CHECK_OK(uv_loop_close(&loop));
}

int main(void) {
  const char *tmp = getenv("FLUME_TEST_TMP");
  char root[256];
  snprintf(root, sizeof root, "%s/test_edges", tmp ? tmp : "/tmp");
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", root, root);
  CHECK(system(cmd) == 0);
  test_append_sizes_wrap();
  test_open_options(root);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  CHECK(system(cmd) == 0);
  puts("test_edges: ok");
  return 0;
}
