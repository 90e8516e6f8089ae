/*
 * Following a writer: the views of a read-only handle. Such a handle never
 * indexes; its views read what the writer process checkpoints. A view is
 * set up from its stored record (no write job), its since is the record's
 * since as last read, and a gated read waits until a checkpoint of the
 * writer reaches the log's since at the time of the call.
 *
 * Waiting needs a writer that has the view attached: otherwise nothing
 * would ever release the read. The writer holds the folder's lock while it
 * runs (store.h's writer_alive tests it without taking it) and stores a
 * random session id in meta "writer" at open; the catalogue entry of a view
 * names the session that attached it (format.h). A read that would wait
 * for a view behind the log fails at once with FLUME_ENOWRITER when there
 * is no writer, or the writer's session did not attach this view at this
 * version; a waiting read fails the same way when its writer goes away
 * meanwhile while the view lags the log. A read waiting past the log's end
 * (a live read waiting for new values) waits for a writer to come, as a
 * live stream of the log does.
 *
 * This file reads and judges (records, the writer, mounting); the gate
 * (gate.c) waits, looking at the records of the views its reads wait on
 * with what is here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "views/engine.h"

/* A use callback, called on a later loop turn (as a writer's use is). */
typedef struct flume__mounted {
  struct flume__mounted *next; /* the handle's list, oldest first */
  flume_view *view;            /* the view set up */
  flume__use_cb cb;            /* the caller's */
  void *ctx;
} flume__mounted;

static void on_follow(uv_timer_t *t);

void flume__follow_start(flume__views *vs) {
  uv_timer_init(flume__db_loop(vs->db), &vs->follow);
  vs->follow.data = vs;
}

/* Calls the use callbacks on the next loop turn. */
static void follow_run(flume__views *vs) {
  if (vs->follow_on || vs->closing) return;
  vs->follow_on = 1;
  uv_timer_start(&vs->follow, on_follow, 0, 0);
}

int flume__follow_record(flume_view *v, const flume__record *rec) {
  if (rec->kind != v->kind || rec->version != v->version) {
    snprintf(v->note, sizeof v->note,
             "view '%s': the database now has version %lld (%s) of it, "
             "this handle mounted version %lld (%s); mount it again",
             v->name, (long long)rec->version, flume__record_kind_name(rec->kind),
             (long long)v->version, flume__record_kind_name(v->kind));
    return FLUME_ENOWRITER;
  }
  /* The writer's rebuild takes it back to -1: follow it down too. */
  v->committed = v->since = v->handed = rec->since;
  return 0;
}

/* Reads the record of view `name` in txn: 0, FLUME_ENOTFOUND, or the
 * store's error. */
static int read_record(flume_db *db, flume__txn *txn, const char *name,
                       flume__record *rec) {
  const flume__store_ops *ops = flume__db_ops(db);
  char key[FLUME__NAMED_KEY_SIZE];
  flume__table meta;
  flume__slice val;
  int kl = flume__meta_view_key(name, key, sizeof key);
  int rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  if (rc == 0) rc = ops->get(txn, meta, (flume__slice){key, (size_t)kl}, &val);
  if (rc == 0) rc = flume__record_unpack(val, rec);
  return rc;
}

static int dropped(flume_view *v) {
  snprintf(v->note, sizeof v->note,
           "view '%s' is no longer in the database (dropped)", v->name);
  return FLUME_ENOWRITER;
}

int flume__follow_sync(flume_view *v) {
  const flume__store_ops *ops = flume__db_ops(v->db);
  flume__txn *txn;
  flume__record rec;
  int rc = ops->txn_begin(flume__db_store(v->db), FLUME__TXN_READ, &txn);
  if (rc) return rc;
  rc = read_record(v->db, txn, v->name, &rec);
  ops->txn_abort(txn);
  if (rc == FLUME_ENOTFOUND) return dropped(v);
  return rc ? rc : flume__follow_record(v, &rec);
}

int flume__follow_check(flume_view *v) {
  flume_db *db = v->db;
  const flume__store_ops *ops = flume__db_ops(db);
  flume__store *st = flume__db_store(db);
  int alive = ops->writer_alive(st);
  if (alive < 0) return alive;
  flume__db_refresh(db);
  if (!alive) {
    /* The writer may have stored its last checkpoint and gone between the
     * caller's read of the record and this look: what it left is final,
     * so the record is read again before the view is said to lag. */
    int rc = flume__follow_sync(v);
    if (rc) return rc;
    if (!flume__follow_lags(v)) return 0;
  }
  long long at = (long long)v->committed, log = (long long)flume_db_since(db);
  if (!alive) {
    snprintf(v->note, sizeof v->note,
             "view '%s' is at seq %lld and the log at %lld, and no writer "
             "has the database open to bring it up: open it for writing "
             "with the view attached, or read with wait = false",
             v->name, at, log);
    return FLUME_ENOWRITER;
  }
  flume__txn *txn;
  flume__table meta;
  flume__slice val;
  flume__script sc;
  uint64_t session = 0;
  char key[FLUME__NAMED_KEY_SIZE];
  int kl = flume__meta_script_key(v->name, key, sizeof key);
  int rc = ops->txn_begin(st, FLUME__TXN_READ, &txn);
  if (rc) return rc;
  rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  if (rc == 0)
    rc = ops->get(txn, meta,
                  (flume__slice){FLUME__META_WRITER, strlen(FLUME__META_WRITER)},
                  &val);
  if (rc == 0 && val.size == sizeof session) memcpy(&session, val.data, 8);
  if (rc == 0) rc = ops->get(txn, meta, (flume__slice){key, (size_t)kl}, &val);
  if (rc == 0) rc = flume__script_unpack(val, &sc);
  /* The writer's copy failed: nothing will bring it up. */
  char fkey[FLUME__NAMED_KEY_SIZE];
  int fkl = flume__meta_failed_key(v->name, fkey, sizeof fkey);
  flume__slice fv;
  int failed = rc == 0 &&
               ops->get(txn, meta, (flume__slice){fkey, (size_t)fkl}, &fv) ==
                   0 &&
               fv.size >= 8 && memcmp(fv.data, &session, 8) == 0;
  if (failed)
    snprintf(v->note, sizeof v->note, "in the writer, %.*s",
             (int)(fv.size - 8 > 280 ? 280 : fv.size - 8),
             (const char *)fv.data + 8);
  ops->txn_abort(txn);
  if (rc && rc != FLUME_ENOTFOUND) return rc;
  if (failed) return FLUME_EVIEW;
  if (rc == 0 && sc.session == session && session != 0 &&
      sc.version == v->version && sc.kind == v->kind)
    return 0;
  if (rc == 0 && sc.session == session && session != 0)
    snprintf(v->note, sizeof v->note,
             "view '%s' is at seq %lld and the log at %lld; the writer has "
             "version %lld of it attached, this handle mounted version "
             "%lld: mount it again",
             v->name, at, log, (long long)sc.version, (long long)v->version);
  else
    snprintf(v->note, sizeof v->note,
             "view '%s' is at seq %lld and the log at %lld, and the running "
             "writer does not have it attached: attach it there (use), or "
             "read with wait = false",
             v->name, at, log);
  return FLUME_ENOWRITER;
}

int flume__follow_setup(flume__views *vs, flume_view *v, flume__use_cb cb,
                        void *ctx, char *err, size_t errlen) {
  if (vs->closing || vs->stopping) return FLUME_ECLOSED;
  flume_db *db = vs->db;
  const flume__store_ops *ops = flume__db_ops(db);
  flume__mounted *m = calloc(1, sizeof *m);
  if (m == NULL) return FLUME_ENOMEM;
  char name[FLUME__NAMED_KEY_SIZE];
  flume__record rec;
  flume__txn *txn;
  flume__view_table_name(v->name, name, sizeof name);
  int rc = ops->txn_begin(flume__db_store(db), FLUME__TXN_READ, &txn);
  if (rc == 0) {
    rc = read_record(db, txn, v->name, &rec);
    if (rc == 0) rc = ops->table_open(txn, name, 0, &v->table);
    ops->txn_abort(txn);
  }
  if (rc == FLUME_ENOTFOUND)
    snprintf(err, errlen, "view '%s': the database has no such view (a "
             "read-only handle reads the views a writer attached)", v->name);
  else if (rc == 0 && (rc = flume__follow_record(v, &rec)))
    snprintf(err, errlen, "%s", v->note);
  if (rc) {
    free(m);
    return rc;
  }
  v->built_hash = rec.hash;
  v->ready = 1;
  m->view = v;
  m->cb = cb;
  m->ctx = ctx;
  flume__mounted **p = &vs->mounted;
  while (*p) p = &(*p)->next;
  *p = m;
  follow_run(vs);
  return 0;
}

int flume__follow_lags(flume_view *v) {
  flume__db_refresh(v->db);
  return v->committed < flume_db_since(v->db);
}

static void call_mounted(flume__views *vs, int status) {
  while (vs->mounted) {
    flume__mounted *m = vs->mounted;
    vs->mounted = m->next;
    if (m->cb) m->cb(m->ctx, status, m->view);
    free(m);
  }
}

static void on_follow(uv_timer_t *t) {
  flume__views *vs = t->data;
  vs->follow_on = 0;
  call_mounted(vs, 0);
}

void flume__follow_close(flume__views *vs, uv_close_cb done) {
  call_mounted(vs, FLUME_ECLOSED);
  uv_close((uv_handle_t *)&vs->follow, done);
}
