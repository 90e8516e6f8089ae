/* A remote log's options from C, with no server to talk to: what is
 * refused before any network (names, a memory or read-only database), a
 * server that does not answer (FLUME_ETIMEDOUT within the timeout), and a
 * build without libnats (FLUME_ENOTSUP). A folder left behind opens as a
 * local log. The remote specs (spec/remote_spec.lua) talk to servers. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "flume.h"
#include "tmpdir.h"

static uv_loop_t loop;

static void closed(void *ctx) { ++*(int *)ctx; }

int main(void) {
  CHECK_OK(uv_loop_init(&loop));
  char root[512], dir[600];
  temp_dir(root, sizeof root, "remote");
  snprintf(dir, sizeof dir, "%s/db", root);
  flume_db *db = NULL;
  flume_db_options o;
  flume_db_options_init(&o);
  CHECK(o.remote_urls == NULL && o.remote_timeout_ms == 0);
  /* Port 1 on loopback: nobody listens there. */
  o.remote_urls = "nats://127.0.0.1:1";
  o.remote_stream = "S";
  o.remote_timeout_ms = 300;

  /* A remote log is cached in a folder by its writer. */
  CHECK_ERR(flume_db_open(&loop, NULL, &o, &db), FLUME_EINVAL);
  o.readonly = 1;
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  o.readonly = 0;

#ifdef FLUME_REMOTE
  o.remote_stream = "a.b"; /* not a stream name */
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  o.remote_stream = NULL;
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  o.remote_stream = "S";
  o.remote_node = "";
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  o.remote_node = NULL;
  uint64_t t0 = uv_hrtime();
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_ETIMEDOUT);
  CHECK(uv_hrtime() - t0 < (uint64_t)10e9);
#else
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_ENOTSUP);
#endif
  CHECK(db == NULL);
  CHECK(strcmp(flume_err_name(FLUME_ENOTSUP), "ENOTSUP") == 0);

  /* Nothing was made remote: the folder opens as a local log. */
  flume_db_options_init(&o);
  CHECK_OK(flume_db_open(&loop, dir, &o, &db));
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  while (!done) uv_run(&loop, UV_RUN_ONCE);
  CHECK(uv_loop_close(&loop) == 0);
  remove_dir(root);
  return 0;
}
