/*
 * The C door to views: flume.h's view calls, translating arguments and
 * results (msgpack keys to encoded keys and back, callbacks, the
 * database's error message) and nothing else. The work is the engine's:
 * the registry, the gate, the one read path (read.c) and the methods.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "msgpack.h"
#include "views/read.h"
#include "views/engine.h"

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
    /* The script the database stores for it (the catalogue). */
    rc = flume__views_mount(db, name, (flume__use_cb)cb, ctx, local,
                            sizeof local);
  } else {
    char chunk[80];
    snprintf(chunk, sizeof chunk, "=%s", name);
    flume__view_def def = {.src = script, .len = len, .chunk = chunk};
    rc = flume__views_use(db, name, &def, (flume__use_cb)cb, ctx, local,
                          sizeof local);
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
  if (wait) flume__db_refresh(view->db);
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

/* ---- reading views ----------------------------------------------------- */

/* Sets the database's error message. */
static int fail(flume_db *db, int rc, const char *msg) {
  snprintf(flume__db_errbuf(db), FLUME__ERRMSG_SIZE, "%s",
           msg && msg[0] ? msg : flume_strerror(rc));
  return rc;
}

FLUME_API int flume_view_status(const flume_view *view,
                                flume_view_info *out) {
  if (view == NULL || out == NULL) return FLUME_EINVAL;
  flume__view_info_t in;
  flume__view_info((flume_view *)view, &in);
  *out = (flume_view_info){
      flume__record_kind_name(in.kind), in.version, in.since, in.processed,
      flume_db_since(view->db), in.ready, in.failed, in.error, in.error_seq,
      in.script_changed, in.rate, in.hash};
  return 0;
}

typedef struct wait_req {
  flume_wait_cb cb; /* the caller's */
  void *ctx;
} wait_req;

static void wait_over(void *p, int status) {
  wait_req r = *(wait_req *)p;
  free(p);
  r.cb(r.ctx, status);
}

FLUME_API int flume_view_wait(flume_view *view, double timeout,
                              flume_wait_cb cb, void *ctx) {
  return flume_view_wait_after(view, -1, timeout, cb, ctx);
}

FLUME_API int flume_view_wait_after(flume_view *view, int64_t after,
                                    double timeout, flume_wait_cb cb,
                                    void *ctx) {
  if (view == NULL || cb == NULL || after < -1) return FLUME_EINVAL;
  wait_req *r = malloc(sizeof *r);
  if (r == NULL) return FLUME_ENOMEM;
  *r = (wait_req){cb, ctx};
  flume__db_refresh(view->db); /* a reader: the log as the writer has it */
  int64_t target = flume_db_since(view->db);
  if (after > target) target = after;
  int rc = flume__view_wait(view, target, timeout, 1, wait_over, r);
  if (rc) free(r);
  if (rc == FLUME_ENOWRITER || (rc == FLUME_EVIEW && view->note[0]))
    snprintf(flume__db_errbuf(view->db), FLUME__ERRMSG_SIZE, "%s",
             view->note);
  return rc;
}

/* The encoded key of a msgpack key, through the view host's state. */
static int key_of(flume_view *v, const void *mp, size_t len, flume__buf *out,
                  char *err, size_t errlen) {
  lua_State *H = flume__host_state(flume__views_host(v->db));
  int top = lua_gettop(H);
  char why[200] = "";
  int rc = flume__mp_decode(H, mp, len, why, sizeof why);
  if (rc == 0) rc = flume__key_encode(H, -1, out, why, sizeof why);
  lua_settop(H, top);
  if (rc) {
    snprintf(err, errlen, "view '%s': not a key: %s", v->name, why);
    return rc == FLUME_ENOMEM ? rc : FLUME_EINVAL;
  }
  return 0;
}

/* The msgpack of an encoded key, appended to out. */
static int key_to_mp(flume_view *v, const char *key, size_t len,
                     flume__buf *out, char *err, size_t errlen) {
  lua_State *H = flume__host_state(flume__views_host(v->db));
  int top = lua_gettop(H);
  size_t used;
  int rc = flume__key_decode(H, key, len, &used, err, errlen);
  if (rc == 0) rc = flume__mp_encode(H, -1, out, err, errlen);
  lua_settop(H, top);
  return rc;
}

FLUME_API int flume_view_get(flume_view *view, const void *key,
                             size_t key_len, void **data, size_t *len) {
  if (view == NULL || data == NULL || len == NULL) return FLUME_EINVAL;
  flume_db *db = view->db;
  char err[512] = "";
  flume__buf out = FLUME__BUF_INIT, k = FLUME__BUF_INIT;
  int rc = flume__view_readable(view, 0, err, sizeof err);
  if (rc) return fail(db, rc, err);
  if (view->kind == FLUME__VIEW_REDUCE) {
    rc = flume__view_state(view, &out, err, sizeof err);
  } else if (key == NULL) {
    rc = FLUME_EINVAL;
    snprintf(err, sizeof err, "view '%s' is read by key", view->name);
  } else if ((rc = key_of(view, key, key_len, &k, err, sizeof err)) == 0) {
    lua_State *H = flume__host_state(flume__views_host(db));
    int top = lua_gettop(H);
    lua_newtable(H);
    flume__collect_ctx c = {H, 0, lua_gettop(H), 0, ""};
    size_t count;
    rc = flume__view_get(view, k.data, k.len, flume__view_collect, &c, &count,
                         err, sizeof err);
    if (rc == 0 && view->kind == FLUME__VIEW_GROUP) {
      if (count == 0) rc = FLUME_ENOTFOUND;
      else lua_rawgeti(H, -1, 1);
    }
    if (rc == 0) rc = flume__mp_encode(H, -1, &out, err, sizeof err);
    else if (c.err[0]) snprintf(err, sizeof err, "%s", c.err);
    lua_settop(H, top);
  }
  flume__buf_free(&k);
  if (rc) {
    flume__buf_free(&out);
    return fail(db, rc, err);
  }
  /* A buffer of the caller's (flume_free), never NULL. */
  *data = out.data ? (void *)out.data : malloc(1);
  *len = out.len;
  return *data ? 0 : FLUME_ENOMEM;
}

/* Entries one chunk of a view iterator reads. */
#define ITER_CHUNK 256

typedef struct viter_entry {
  size_t key_off, key_len; /* its msgpack key in the chunk's bytes */
  int64_t seq;             /* index: the seq; group: -1 */
  size_t val_off, val_len; /* group: the accumulator's bytes */
} viter_entry;

struct flume_view_iter {
  flume__reader reader;   /* the view; NULL once the database closed */
  flume__buf lo, hi;      /* the bounds, encoded */
  flume__range range;     /* the range over them */
  flume__buf resume;      /* the last entry read */
  int64_t remaining;      /* entries the limit still allows; -1: none */
  int64_t since;          /* the read's since, set by its first chunk */
  int done;               /* the range is read */
  flume__buf bytes;       /* the chunk's keys and values */
  viter_entry ents[ITER_CHUNK]; /* the chunk's entries */
  size_t count, pos;      /* entries in the chunk, the next one */
  char err[256];          /* a key that did not decode */
};

FLUME_API void flume_view_iter_options_init(flume_view_iter_options *opts) {
  memset(opts, 0, sizeof *opts);
  opts->limit = -1;
}

/* One bound of the options: the exclusive or the inclusive one. */
static int bound(flume_view *v, const void *excl, size_t excl_len,
                 const void *incl, size_t incl_len, flume__buf *b, int *set,
                 int *inclusive, char *err, size_t errlen) {
  *set = excl != NULL || incl != NULL;
  *inclusive = incl != NULL;
  if (excl && incl) {
    snprintf(err, errlen, "a range takes one lower and one upper bound: "
             "not both gt and gte, nor lt and lte");
    return FLUME_EINVAL;
  }
  if (!*set) return 0;
  return incl ? key_of(v, incl, incl_len, b, err, errlen)
              : key_of(v, excl, excl_len, b, err, errlen);
}

FLUME_API int flume_view_iter_open(flume_view *view,
                                   const flume_view_iter_options *opts,
                                   flume_view_iter **out) {
  if (view == NULL || opts == NULL || out == NULL) return FLUME_EINVAL;
  char err[512] = "";
  int rc = flume__view_readable(view, 1, err, sizeof err);
  if (rc) return fail(view->db, rc, err);
  flume_view_iter *it = calloc(1, sizeof *it);
  if (it == NULL) return FLUME_ENOMEM;
  int lo_set, hi_set;
  if ((rc = bound(view, opts->gt, opts->gt_len, opts->gte, opts->gte_len,
                  &it->lo, &lo_set, &it->range.lo_incl, err, sizeof err)) ||
      (rc = bound(view, opts->lt, opts->lt_len, opts->lte, opts->lte_len,
                  &it->hi, &hi_set, &it->range.hi_incl, err, sizeof err))) {
    flume__buf_free(&it->lo);
    flume__buf_free(&it->hi);
    free(it);
    return fail(view->db, rc, err);
  }
  it->range.lo = lo_set ? it->lo.data : NULL;
  it->range.lo_len = it->lo.len;
  it->range.hi = hi_set ? it->hi.data : NULL;
  it->range.hi_len = it->hi.len;
  it->range.reverse = opts->reverse != 0;
  it->remaining = opts->limit < 0 ? -1 : opts->limit;
  it->since = -1;
  it->reader.view = view;
  flume__views_track(&it->reader);
  *out = it;
  return 0;
}

/* Copies one entry into the iterator's chunk, its key as msgpack. */
static int viter_take(void *p, const flume__view_entry *e) {
  flume_view_iter *it = p;
  viter_entry *d = &it->ents[it->count];
  d->key_off = it->bytes.len;
  if (key_to_mp(it->reader.view, e->key, e->key_len, &it->bytes, it->err,
                sizeof it->err))
    return FLUME_EDECODE;
  d->key_len = it->bytes.len - d->key_off;
  d->seq = e->seq;
  d->val_off = it->bytes.len;
  d->val_len = e->val_len;
  if (e->val_len && flume__buf_append(&it->bytes, e->val, e->val_len))
    return FLUME_ENOMEM;
  it->count++;
  return 0;
}

FLUME_API int flume_view_iter_next(flume_view_iter *it, const void **key,
                                   size_t *key_len, int64_t *seq,
                                   const void **val, size_t *val_len) {
  if (it == NULL) return FLUME_EINVAL;
  flume_view *v = it->reader.view;
  if (v == NULL) return FLUME_ECLOSED;
  while (it->pos == it->count) {
    if (it->done || it->remaining == 0) return FLUME_ENOTFOUND;
    size_t max = ITER_CHUNK, n;
    if (it->remaining > 0 && it->remaining < ITER_CHUNK)
      max = (size_t)it->remaining;
    char err[512] = "";
    it->bytes.len = 0;
    it->count = it->pos = 0;
    int rc = flume__view_read(v, &it->range, max, &it->since, &it->resume,
                              viter_take, it, &n, &it->done, err, sizeof err);
    if (rc) return fail(v->db, rc, it->err[0] ? it->err : err);
    if (it->remaining > 0) it->remaining -= (int64_t)n;
  }
  viter_entry *e = &it->ents[it->pos++];
  if (key) *key = it->bytes.data + e->key_off;
  if (key_len) *key_len = e->key_len;
  if (seq) *seq = e->seq;
  if (val) *val = e->seq >= 0 ? NULL : it->bytes.data + e->val_off;
  if (val_len) *val_len = e->seq >= 0 ? 0 : e->val_len;
  return 0;
}

FLUME_API void flume_view_iter_close(flume_view_iter *it) {
  if (it == NULL) return;
  flume__views_untrack(&it->reader);
  flume__buf_free(&it->lo);
  flume__buf_free(&it->hi);
  flume__buf_free(&it->resume);
  flume__buf_free(&it->bytes);
  free(it);
}

FLUME_API int flume_db_rebuild(flume_db *db) {
  if (db == NULL) return FLUME_EINVAL;
  return flume__views_rebuild(db);
}

FLUME_API int flume_db_set_ready(flume_db *db, int ready) {
  if (db == NULL) return FLUME_EINVAL;
  return flume__views_set_paused(db, !ready);
}

FLUME_API int flume_db_drop(flume_db *db, const char *name,
                            flume_status_cb cb, void *ctx) {
  if (db == NULL) return FLUME_EINVAL;
  char local[512] = "";
  int rc = name == NULL ? FLUME_EINVAL
                        : flume__views_drop(db, name, cb, ctx, local,
                                            sizeof local);
  if (rc && local[0] == '\0')
    snprintf(local, sizeof local, "%s", flume_strerror(rc));
  snprintf(flume__db_errbuf(db), FLUME__ERRMSG_SIZE, "%s", rc ? local : "");
  return rc;
}

typedef struct views_ctx {
  flume_view_entry_fn fn; /* the caller's */
  void *ctx;
} views_ctx;

static int one_view(void *p, const flume__catalogue_entry *e) {
  views_ctx *c = p;
  flume_view_entry out = {
      .name = e->name,
      .kind = flume__record_kind_name(e->record.kind),
      .version = e->record.version,
      .since = e->record.since,
      .hash = e->record.hash,
      .script = e->has_script ? e->script.source : NULL,
      .script_len = e->has_script ? e->script.source_len : 0,
      .attached = e->attached,
      .mounted = e->mounted};
  return c->fn(c->ctx, &out);
}

FLUME_API int flume_db_views(flume_db *db, flume_view_entry_fn fn,
                             void *ctx) {
  if (db == NULL || fn == NULL) return FLUME_EINVAL;
  views_ctx c = {fn, ctx};
  return flume__views_list(db, one_view, &c);
}
