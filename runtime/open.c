/*
 * Opening a database: its local store and metadata (db.c), then, when the
 * options name one, the remote log it caches (runtime/remote/). The one
 * place that knows both, so that db.c does not know the remote log and
 * the remote log, which uses db.c's writer queue and append route, is
 * a layer above it.
 */
#include "internal.h"

static int attach_remote(flume_db *db, const flume_db_options *opts,
                         char *why) {
  if (opts->remote_urls) return flume__remote_open(db, opts, why);
  /* a folder that caches a remote log takes values from its stream only */
  if (!flume__db_readonly(db)) return flume__remote_check_local(db, why);
  return 0;
}

int flume__open(uv_loop_t *loop, const char *path,
                const flume_db_options *opts, flume_db **out, char found[64],
                char *why) {
  return flume__db_open(loop, path, opts, out, found, why, attach_remote);
}

FLUME_API int flume_db_open(uv_loop_t *loop, const char *path,
                            const flume_db_options *opts, flume_db **out) {
  return flume__open(loop, path, opts, out, NULL, NULL);
}
