/*
 * Views from C: loading a Lua view, calling a view's methods with msgpack
 * arguments and results, since-gated; and the method calls themselves,
 * which run in the view host (shared with the Lua binding).
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "msgpack.h"
#include "views/read.h"
#include "views/views.h"

/* ---- the public API -------------------------------------------------------- */

FLUME_API int flume_view_use(flume_db *db, const char *name,
                             const char *script, size_t len, flume_use_cb cb,
                             void *ctx) {
  if (db == NULL) return FLUME_EINVAL;
  char local[512] = ""; /* every error leaves a message here */
  int rc;
  if (name == NULL) {
    rc = FLUME_EINVAL;
    snprintf(local, sizeof local, "a view needs a name");
  } else if (script == NULL) {
    rc = FLUME_EINVAL;
    snprintf(local, sizeof local, "view '%s' needs a script", name);
  } else {
    char chunk[80];
    snprintf(chunk, sizeof chunk, "=%s", name);
    rc = flume__views_use(db, name, script, len, chunk, NULL, 0,
                          (flume__use_cb)cb, ctx, local, sizeof local);
  }
  if (rc && local[0] == '\0')
    snprintf(local, sizeof local, "%s", flume_strerror(rc));
  snprintf(flume__db_errbuf(db), FLUME__ERRMSG_SIZE, "%s", rc ? local : "");
  return rc;
}

FLUME_API flume_view *flume_db_view(flume_db *db, const char *name) {
  return flume__view_find(db, name);
}

FLUME_API int64_t flume_view_since(const flume_view *view) {
  return view->committed;
}

FLUME_API const char *flume_view_error(const flume_view *view) {
  return view->failed ? view->error : NULL;
}

typedef struct call_req {
  flume_view *view;      /* the view called */
  char method[64];       /* the method's name */
  flume__buf args;       /* a copy of the arguments */
  flume_call_cb cb;      /* the caller's callback */
  void *ctx;
} call_req;

/* The call's wait is over: run the method, or pass on why not. */
static void call_ready(void *ctx, int status) {
  call_req *r = ctx;
  flume__buf out = FLUME__BUF_INIT;
  flume_db *db = r->view->db;
  char *buf = status == FLUME_ECLOSED ? NULL : flume__db_errbuf(db);
  if (status == 0) {
    char err[512] = "";
    status = flume__view_call(r->view, r->method, r->args.data, r->args.len,
                              &out, err, sizeof err);
    if (status && buf) snprintf(buf, FLUME__ERRMSG_SIZE, "%s", err);
  } else if (status == FLUME_EVIEW && buf) {
    snprintf(buf, FLUME__ERRMSG_SIZE, "%s", r->view->error);
  }
  r->cb(r->ctx, status, status ? NULL : out.data, status ? 0 : out.len);
  flume__buf_free(&out);
  flume__buf_free(&r->args);
  free(r);
}

FLUME_API int flume_view_call(flume_view *view, const char *method,
                              const void *args, size_t len, int wait,
                              flume_call_cb cb, void *ctx) {
  if (view == NULL || method == NULL || cb == NULL ||
      strlen(method) >= sizeof(((call_req *)0)->method))
    return FLUME_EINVAL;
  call_req *r = calloc(1, sizeof *r);
  if (r == NULL) return FLUME_ENOMEM;
  r->view = view;
  strcpy(r->method, method);
  r->cb = cb;
  r->ctx = ctx;
  if (flume__buf_append(&r->args, args, len)) {
    free(r);
    return FLUME_ENOMEM;
  }
  /* Gated: the log's since as it is now; ungated: only set up. Either way
   * the callback comes on a later loop turn, and close cancels it. */
  int64_t target = wait ? flume_db_since(view->db) : -1;
  int rc = flume__view_wait(view, target, -1, 1, call_ready, r);
  if (rc) {
    flume__buf_free(&r->args);
    free(r);
  }
  return rc;
}

FLUME_API int flume_view_use_c(flume_db *db, const char *name,
                               const flume_view_vtable *vt, void *state,
                               flume_view **out) {
  if (name == NULL || vt == NULL || vt->since == NULL || vt->apply == NULL ||
      vt->destroy == NULL)
    return FLUME_EINVAL;
  return flume__views_use_c(db, name, vt, state, out);
}
