/*
 * Opening a database: its local store and metadata (db.c), then, when the
 * options name one, the remote log it caches (runtime/remote/). The one
 * place that knows both, so that db.c does not know the remote log and
 * the remote log, which uses db.c's writer queue and append route, is
 * a layer above it.
 */
#include <stdio.h>

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

/* Why an open failed, for a C caller's open_error: what Lua's error says
 * after its "flume: " (the code's name and message, then the detail: which
 * server, which refusal, which codec, what is damaged). */
static void say_why(const flume_db_options *opts, const char *path, int rc,
                    const char *found, const char *why) {
  char store[FLUME__ERRMSG_SIZE], detail[FLUME__ERRMSG_SIZE];
  if ((rc == FLUME_ECORRUPT || rc == FLUME_EFORMAT) &&
      flume__store_detail(store, sizeof store))
    why = store;
  if (rc == FLUME_ECODEC && found[0]) {
    snprintf(detail, sizeof detail, "%s was written with codec '%s', not '%s'",
             path ? path : "(memory)", found,
             opts->codec ? opts->codec : "(any)");
    why = detail;
  }
  snprintf(opts->open_error, opts->open_error_size, "%s: %s: %s",
           flume_err_name(rc), flume_strerror(rc),
           why && why[0] ? why : path ? path : "(memory)");
}

FLUME_API int flume_db_open(uv_loop_t *loop, const char *path,
                            const flume_db_options *opts, flume_db **out) {
  int tell = opts && opts->open_error && opts->open_error_size;
  char found[64] = "", why[FLUME__ERRMSG_SIZE] = "";
  int rc = flume__open(loop, path, opts, out, found, why);
  if (tell && rc) say_why(opts, path, rc, found, why);
  else if (tell) opts->open_error[0] = '\0';
  return rc;
}
