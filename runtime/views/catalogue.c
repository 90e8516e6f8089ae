/*
 * The view catalogue: what a database keeps of its views besides their
 * state. The writer stores each view's script with its record when it sets
 * the view up (pipeline.c's setup job; the entry's layout is in format.h),
 * so that any handle can list the views, mount one by name without its
 * file (a read-only handle to read it, a writer to attach it again), and a
 * writer can drop one: record, script and state gone in one transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "views/engine.h"

static const flume__store_ops *ops_of(flume_db *db) {
  return flume__db_ops(db);
}

static flume__slice str_slice(const char *s, size_t n) {
  return (flume__slice){s, n};
}

/* ---- mounting by name ------------------------------------------------- */

int flume__views_mount(flume_db *db, const char *name, flume__use_cb cb,
                       void *ctx, char *err, size_t errlen) {
  const flume__store_ops *ops = ops_of(db);
  char key[FLUME__NAMED_KEY_SIZE];
  int kl = flume__meta_script_key(name, key, sizeof key);
  if (kl < 0 || name[0] == '\0') {
    snprintf(err, errlen, "a view name must be 1 to %d bytes",
             FLUME__NAME_MAX);
    return FLUME_EINVAL;
  }
  flume__txn *txn;
  flume__table meta;
  flume__slice val;
  flume__script sc;
  char *src = NULL, *chunk = NULL;
  int rc = ops->txn_begin(flume__db_store(db), FLUME__TXN_READ, &txn);
  if (rc) return rc;
  rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  if (rc == 0) rc = ops->get(txn, meta, str_slice(key, (size_t)kl), &val);
  if (rc == 0) rc = flume__script_unpack(val, &sc);
  if (rc == 0) {
    src = malloc(sc.source_len + 1);
    chunk = malloc(sc.chunk_len + 1);
    if (src == NULL || chunk == NULL) {
      rc = FLUME_ENOMEM;
    } else {
      memcpy(src, sc.source, sc.source_len);
      src[sc.source_len] = '\0';
      memcpy(chunk, sc.chunk, sc.chunk_len);
      chunk[sc.chunk_len] = '\0';
    }
  }
  ops->txn_abort(txn);
  if (rc == FLUME_ENOTFOUND)
    snprintf(err, errlen, "the database has no stored script for a view "
             "named '%s' (attach it once with use() in a writer)", name);
  else if (rc == FLUME_ECORRUPT)
    snprintf(err, errlen, "the stored script of view '%s' is damaged",
             name);
  else if (rc == 0 && sc.origin == 1 && sc.source_len == 0) {
    snprintf(err, errlen, "view '%s' was given as a Lua table whose "
             "source could not be read, so none is stored: attach it "
             "with use() and its table", name);
    rc = FLUME_ESCRIPT;
  }
  if (rc == 0) {
    flume__view_def def = {.src = src,
                           .len = sc.source_len,
                           .chunk = chunk,
                           .origin = sc.origin,
                           .hash = sc.hash};
    rc = flume__views_use(db, name, &def, cb, ctx, err, errlen);
    if (rc == FLUME_ESCRIPT && sc.origin == 1) {
      size_t n = strlen(err);
      snprintf(err + n, errlen - n, " (view '%s' was given as a Lua table; "
               "its stored source is the chunk it was written in, which "
               "mounts by name only when it returns the view)", name);
    }
  }
  free(src);
  free(chunk);
  return rc;
}

/* ---- listing ---------------------------------------------------------- */

static int has_prefix(flume__slice k, const char *p) {
  size_t n = strlen(p);
  return k.size >= n && memcmp(k.data, p, n) == 0;
}

int flume__views_list(flume_db *db, flume__catalogue_fn fn, void *ctx) {
  const flume__store_ops *ops = ops_of(db);
  flume__store *st = flume__db_store(db);
  int alive = ops->writer_alive(st);
  if (alive < 0) return alive;
  flume__txn *txn;
  flume__table meta;
  flume__cursor *cur = NULL;
  flume__slice k, v;
  uint64_t session = 0;
  int rc = ops->txn_begin(st, FLUME__TXN_READ, &txn);
  if (rc) return rc;
  rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  if (rc == 0 &&
      ops->get(txn, meta,
               str_slice(FLUME__META_WRITER, strlen(FLUME__META_WRITER)),
               &v) == 0 &&
      v.size == sizeof session)
    memcpy(&session, v.data, sizeof session);
  if (rc == 0) rc = ops->cursor_open(txn, meta, &cur);
  k = str_slice(FLUME__META_VIEW_PREFIX, strlen(FLUME__META_VIEW_PREFIX));
  if (rc == 0) rc = ops->cursor_get(cur, FLUME__SET_RANGE, &k, &v);
  for (; rc == 0 && has_prefix(k, FLUME__META_VIEW_PREFIX);
       rc = ops->cursor_get(cur, FLUME__NEXT, &k, &v)) {
    flume__catalogue_entry e;
    char key[FLUME__NAMED_KEY_SIZE];
    flume__slice sv;
    size_t plen = strlen(FLUME__META_VIEW_PREFIX);
    memset(&e, 0, sizeof e);
    if (k.size - plen > FLUME__NAME_MAX) continue;
    memcpy(e.name, (const char *)k.data + plen, k.size - plen);
    e.name[k.size - plen] = '\0';
    if ((rc = flume__record_unpack(v, &e.record))) break;
    int kl = flume__meta_script_key(e.name, key, sizeof key);
    int g = ops->get(txn, meta, str_slice(key, (size_t)kl), &sv);
    if (g == 0) {
      if ((rc = flume__script_unpack(sv, &e.script))) break;
      e.has_script = 1;
      e.attached = alive && session != 0 && e.script.session == session &&
                   e.script.version == e.record.version;
    } else if (g != FLUME_ENOTFOUND) {
      rc = g;
      break;
    }
    kl = flume__meta_failed_key(e.name, key, sizeof key);
    if (ops->get(txn, meta, str_slice(key, (size_t)kl), &sv) == 0 &&
        sv.size >= 8) {
      e.error = (const char *)sv.data + 8;
      e.error_len = sv.size - 8;
    }
    e.mounted = flume__view_find(db, e.name) != NULL;
    if ((rc = fn(ctx, &e))) break;
  }
  if (rc == FLUME_ENOTFOUND) rc = 0;
  if (cur) ops->cursor_close(cur);
  ops->txn_abort(txn);
  return rc;
}

/* ---- dropping --------------------------------------------------------- */

typedef struct drop_job {
  flume__job base;                    /* the writer's part */
  char name[FLUME__NAME_MAX + 1];     /* the view dropped */
  int found;                          /* it had a record or a script */
  flume__drop_cb cb;                  /* the caller's */
  void *ctx;
} drop_job;

static int drop_run(flume__job *job, flume__txn *txn, int64_t *next_seq) {
  drop_job *d = (drop_job *)job;
  const flume__store_ops *ops = ops_of(job->db);
  char key[FLUME__NAMED_KEY_SIZE], tname[FLUME__NAMED_KEY_SIZE];
  flume__table meta, tbl;
  (void)next_seq;
  d->found = 0;
  int rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  int kl = flume__meta_view_key(d->name, key, sizeof key);
  if (rc == 0) rc = ops->del(txn, meta, str_slice(key, (size_t)kl));
  if (rc == 0) d->found = 1;
  if (rc == FLUME_ENOTFOUND) rc = 0;
  kl = flume__meta_script_key(d->name, key, sizeof key);
  if (rc == 0) rc = ops->del(txn, meta, str_slice(key, (size_t)kl));
  if (rc == 0) d->found = 1;
  if (rc == FLUME_ENOTFOUND) rc = 0;
  kl = flume__meta_failed_key(d->name, key, sizeof key);
  if (rc == 0) rc = ops->del(txn, meta, str_slice(key, (size_t)kl));
  if (rc == FLUME_ENOTFOUND) rc = 0;
  flume__view_table_name(d->name, tname, sizeof tname);
  if (rc == 0) {
    rc = ops->table_open(txn, tname, 0, &tbl);
    if (rc == 0) rc = ops->table_clear(txn, tbl);
    else if (rc == FLUME_ENOTFOUND) rc = 0;
  }
  return rc;
}

static void drop_done(flume__job *job, int status) {
  drop_job *d = (drop_job *)job;
  if (status == 0 && !d->found) status = FLUME_ENOTFOUND;
  if (d->cb) d->cb(d->ctx, status);
  free(d);
}

int flume__views_drop(flume_db *db, const char *name, flume__drop_cb cb,
                      void *ctx, char *err, size_t errlen) {
  if (flume__db_readonly(db)) {
    snprintf(err, errlen, "view '%s': a read-only handle cannot drop views",
             name);
    return FLUME_EREADONLY;
  }
  if (name[0] == '\0' || strlen(name) > FLUME__NAME_MAX) {
    snprintf(err, errlen, "a view name must be 1 to %d bytes",
             FLUME__NAME_MAX);
    return FLUME_EINVAL;
  }
  drop_job *d = calloc(1, sizeof *d);
  if (d == NULL) return FLUME_ENOMEM;
  strcpy(d->name, name);
  d->cb = cb;
  d->ctx = ctx;
  d->base.run = drop_run;
  d->base.done = drop_done;
  d->base.bytes = 64;
  flume_view *v = flume__view_find(db, name);
  if (v && v->kind == FLUME__VIEW_C) {
    free(d);
    snprintf(err, errlen, "view '%s' is written in C: close its database "
             "first, then drop it", name);
    return FLUME_EBUSY;
  }
  int rc = flume__db_submit(db, &d->base);
  if (rc) {
    free(d);
    return rc;
  }
  /* Its checkpoints in flight were queued before the drop and commit
   * first; from now on it checkpoints nothing. */
  if (v) flume__views_forget(v);
  return 0;
}
