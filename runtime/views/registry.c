/*
 * The registry: a database's views by name. Using a view loads its script
 * into the host, checks it, and hands it to the pipeline to set up; a view
 * replaced by a new version stays (dead) until close, its readers moved to
 * the new one. The views attach to the database as one part, with their
 * close hooks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msgpack.h"
#include "views/ahead.h"
#include "views/engine.h"
#include "views/lazy.h"

static const flume__part_ops views_part;

/* The database's views, or NULL before its first view. */
static flume__views *flume__views_of(flume_db *db) {
  return flume__db_part(db, &views_part);
}

static void views_free_list(flume__views *vs, flume_view *v) {
  while (v) {
    flume_view *next = v->next;
    flume__gate_fail(v, FLUME_ECLOSED);
    if (v->kind == FLUME__VIEW_C && v->vt->close) v->vt->close(v->vstate);
    flume__buf_free(&v->ops);
    flume__journal_reset(&v->journal);
    free(v->script);
    free(v->chunk);
    free(v);
    v = next;
  }
  (void)vs;
}

/* The database's views, made with its first view. A read-only handle's
 * follow a writer's checkpoints (follow.c) instead of indexing. */
static flume__views *views_get(flume_db *db, int *rc) {
  flume__views *vs = flume__views_of(db);
  if (vs) return vs;
  vs = calloc(1, sizeof *vs);
  if (vs == NULL) {
    *rc = FLUME_ENOMEM;
    return NULL;
  }
  vs->db = db;
  vs->readonly = flume__db_readonly(db);
  vs->msgpack = strcmp(flume_db_codec(db), "msgpack") == 0;
  if ((*rc = flume__host_new(&vs->host))) {
    free(vs);
    return NULL;
  }
  lua_State *H = flume__host_state(vs->host);
  flume__lazy_source(H, db);
  lua_newtable(H);
  lua_setfield(H, LUA_REGISTRYINDEX, FLUME__HREG_DELETED);
  if ((*rc = flume__db_attach(db, &views_part, vs))) {
    flume__host_free(vs->host);
    free(vs);
    return NULL;
  }
  /* What view scripts print: without its queue (out of memory), views
   * run and their messages are dropped. */
  flume__vlog *log;
  if (flume__vlog_open(db, &log) == 0)
    flume__host_set_log(vs->host, flume__vlog_add, log);
  if (vs->readonly) {
    flume__follow_start(vs);
    flume__gate_start(vs);
    return vs;
  }
  if ((*rc = flume__pipeline_start(vs))) {
    flume__db_detach(db, &views_part);
    flume__host_free(vs->host);
    free(vs);
    return NULL;
  }
  return vs;
}

flume_view *flume__view_find(flume_db *db, const char *name) {
  flume__views *vs = flume__views_of(db);
  for (flume_view *v = vs ? vs->list : NULL; v; v = v->next)
    if (strcmp(v->name, name) == 0) return v;
  return NULL;
}

flume__host *flume__views_host(flume_db *db) {
  flume__views *vs = flume__views_of(db);
  return vs ? vs->host : NULL;
}

/* FLUME_EREADONLY for what only a writer's views do (they index and
 * write their checkpoints). */
static int writer_only(flume_db *db) {
  return flume__db_readonly(db) ? FLUME_EREADONLY : 0;
}

int flume__views_set_mapper(flume_db *db, lua_State *L, int idx, char *err,
                            size_t errlen) {
  int rc = writer_only(db);
  if (rc) return rc;
  flume__views *vs = views_get(db, &rc);
  if (vs == NULL) return rc;
  rc = flume__host_set_mapper(vs->host, L, idx, err, errlen);
  if (rc == 0) vs->has_mapper = 1;
  vs->kept_n = 0; /* mapped by the old mapper */
  return rc;
}

static char *dup_bytes(const char *p, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    if (n) memcpy(d, p, n);
    d[n] = '\0';
  }
  return d;
}

static void view_drop_new(flume_view *v) {
  free(v->script);
  free(v->chunk);
  free(v);
}

/* Keeps what the catalogue will store of the view's definition. */
static int keep_script(flume_view *v, const flume__view_def *d) {
  const char *s = d->src ? d->src : d->kept;
  size_t n = d->src ? d->len : d->kept_len;
  const char *c = d->src ? d->chunk : d->kept_chunk;
  v->origin = d->src == NULL || d->origin == 1;
  v->script = dup_bytes(s ? s : "", s ? n : 0);
  v->script_len = s ? n : 0;
  v->chunk = dup_bytes(c ? c : "", c ? strlen(c) : 0);
  return v->script && v->chunk ? 0 : FLUME_ENOMEM;
}

static int use_def(flume_db *db, const char *name, const flume__view_def *d,
                   flume__use_cb cb, void *ctx, char *err, size_t errlen) {
  int rc = 0;
  if (strlen(name) == 0 || strlen(name) > FLUME__NAME_MAX) {
    snprintf(err, errlen, "a view name must be 1 to %d bytes",
             FLUME__NAME_MAX);
    return FLUME_EINVAL;
  }
  flume__views *vs = views_get(db, &rc);
  if (vs == NULL) return rc;
  if (vs->closing || vs->stopping || vs->draining) return FLUME_ECLOSED;
  flume_view *v = calloc(1, sizeof *v);
  if (v == NULL) return FLUME_ENOMEM;
  v->db = db;
  v->vs = vs;
  strcpy(v->name, name);
  v->since = v->committed = v->handed = -1;
  if ((rc = keep_script(v, d))) {
    view_drop_new(v);
    return rc;
  }
  rc = flume__host_load(vs->host, name, d->src, d->len, d->chunk, d->L,
                        d->idx, &v->kind, &v->version, &v->hash,
                        &v->host_ref, err, errlen);
  if (rc) {
    view_drop_new(v);
    return rc;
  }
  if (d->hash) v->hash = d->hash; /* mounted by name: as it was attached */
  flume_view *old = flume__view_find(db, name);
  if (old && !old->failed && old->version == v->version) {
    flume__host_unref(vs->host, v->host_ref);
    view_drop_new(v);
    snprintf(err, errlen, "a view named '%s' is in use with the same "
             "version %lld; bump the version to replace it", name,
             (long long)old->version);
    return FLUME_EEXIST;
  }
  rc = vs->readonly ? flume__follow_setup(vs, v, cb, ctx, err, errlen)
                    : flume__pipeline_setup(vs, v, cb, ctx, err, errlen);
  if (rc) {
    flume__host_unref(vs->host, v->host_ref);
    view_drop_new(v);
    return rc;
  }
  if (old) {
    /* Replaced: its readers now wait for the new one. */
    for (flume_view **p = &vs->list; *p; p = &(*p)->next) {
      if (*p == old) {
        *p = old->next;
        break;
      }
    }
    flume__gate_move(old, v);
    /* Its live reads go on with the new one: so does its journal's
     * recording (from the new one's first checkpoint). */
    v->journal.on = old->journal.on;
    flume__journal_reset(&old->journal);
    old->epoch++;
    flume__host_release(vs->host, old->host_ref); /* its memory, now */
    old->next = vs->dead;
    vs->dead = old;
  }
  v->next = vs->list;
  vs->list = v;
  return 0;
}

int flume__views_use(flume_db *db, const char *name,
                     const flume__view_def *def, flume__use_cb cb, void *ctx,
                     char *err, size_t errlen) {
  return use_def(db, name, def, cb, ctx, err, errlen);
}

void flume__views_forget(flume_view *v) {
  flume__views *vs = v->vs;
  for (flume_view **p = &vs->list; *p; p = &(*p)->next) {
    if (*p == v) {
      *p = v->next;
      flume__journal_reset(&v->journal);
      v->next = vs->dead;
      vs->dead = v;
      break;
    }
  }
  v->epoch++;
  v->failed = 1;
  v->ops.len = 0;
  snprintf(v->error, sizeof v->error, "view '%s' was dropped", v->name);
  flume__gate_fail(v, FLUME_EVIEW);
}

int flume__views_use_c(flume_db *db, const char *name,
                       const flume_view_vtable *vt, void *state,
                       flume_view **out) {
  int rc = writer_only(db);
  if (rc) return rc;
  if (strlen(name) == 0 || strlen(name) > FLUME__NAME_MAX)
    return FLUME_EINVAL;
  flume__views *vs = views_get(db, &rc);
  if (vs == NULL) return rc;
  if (vs->closing || vs->stopping || vs->draining) return FLUME_ECLOSED;
  if (flume__view_find(db, name)) return FLUME_EEXIST;
  flume_view *v = calloc(1, sizeof *v);
  if (v == NULL) return FLUME_ENOMEM;
  v->db = db;
  v->vs = vs;
  strcpy(v->name, name);
  v->kind = FLUME__VIEW_C;
  v->vt = vt;
  v->vstate = state;
  v->ready = 1;
  v->since = v->committed = v->handed = vt->since(state);
  v->next = vs->list;
  vs->list = v;
  if (out) *out = v;
  flume__pipeline_kick(vs);
  return 0;
}

/* ---- ready, pause, close ---------------------------------------------------- */

int flume__views_set_paused(flume_db *db, int paused) {
  int rc = writer_only(db);
  if (rc) return rc;
  flume__views *vs = views_get(db, &rc);
  if (vs == NULL) return rc;
  vs->paused = paused;
  if (!paused) flume__pipeline_kick(vs);
  return 0;
}

/* How long a close lets the views catch up with the log: what they have
 * not indexed by then is indexed at the next open. */
#define DRAIN_NS ((uint64_t)2000000000)

/* Whether a view the indexer feeds is behind the log. */
static int behind(flume__views *vs) {
  int64_t log_since = flume_db_since(vs->db);
  for (flume_view *v = vs->list; v; v = v->next)
    if (v->kind != FLUME__VIEW_C && v->ready && !v->failed &&
        !v->resetting && v->since < log_since)
      return 1;
  return 0;
}

/* A close lets the views index what the log holds (for up to DRAIN_NS),
 * so that a clean exit leaves them caught up: readers in other processes
 * then read them without a writer. The indexer kicks the close again
 * after each slice (pipeline.c, on_idle). */
static int views_drain(void *part) {
  flume__views *vs = part;
  if (vs->readonly || vs->paused) return 0;
  uint64_t now = uv_hrtime();
  if (!vs->draining) {
    vs->draining = 1;
    vs->drain_until = now + DRAIN_NS;
  }
  if (now >= vs->drain_until || !behind(vs)) return 0;
  flume__pipeline_kick(vs);
  return vs->idle_on; /* no slice coming: nothing more it can do */
}

static void views_before_close(void *part) {
  flume__views *vs = part;
  /* Store what the views did; it would be redone otherwise. */
  if (!vs->readonly) flume__pipeline_checkpoint(vs);
  vs->stopping = 1;
}

static void handle_closed(uv_handle_t *h) {
  flume__views *vs = h->data;
  if (--vs->handles == 0 && vs->closed) vs->closed(vs->closed_ctx);
}

static void views_close(void *part, void (*cb)(void *), void *ctx) {
  flume__views *vs = part;
  vs->closing = 1;
  flume__ahead_free(vs->ahead); /* before the store closes */
  vs->ahead = NULL;
  vs->closed = cb;
  vs->closed_ctx = ctx;
  if (vs->readonly) {
    vs->handles = 2;
    flume__follow_close(vs, handle_closed);
    flume__gate_close(vs, handle_closed);
  } else {
    vs->handles = 1;
    uv_close((uv_handle_t *)&vs->idle, handle_closed);
  }
}

void flume__views_track(flume__reader *r) {
  flume__views *vs = flume__views_of(r->view->db);
  r->prev = NULL;
  r->next = vs->readers;
  if (vs->readers) vs->readers->prev = r;
  vs->readers = r;
}

void flume__views_untrack(flume__reader *r) {
  if (r->view == NULL) return; /* the database closed: forgotten */
  flume__views *vs = flume__views_of(r->view->db);
  if (r->prev) r->prev->next = r->next;
  else vs->readers = r->next;
  if (r->next) r->next->prev = r->prev;
  r->view = NULL;
}

static void views_free(void *part) {
  flume__views *vs = part;
  flume__ahead_free(vs->ahead);
  for (flume__reader *r = vs->readers; r; r = r->next) r->view = NULL;
  views_free_list(vs, vs->list);
  views_free_list(vs, vs->dead);
  flume__host_free(vs->host);
  free(vs);
}

static const flume__part_ops views_part = {views_before_close, views_close,
                                           views_free, views_drain};

/* ---- reading ---------------------------------------------------------------- */

int flume__view_info(flume_view *v, flume__view_info_t *out) {
  /* A read-only handle's view is where the writer's last checkpoint is. */
  if (v->vs->readonly && v->ready && !v->failed) flume__follow_sync(v);
  out->note = v->note[0] ? v->note : NULL;
  out->kind = v->kind;
  out->version = v->version;
  out->since = v->committed;
  out->processed = v->since;
  out->failed = v->failed;
  out->error = v->failed ? v->error : NULL;
  out->error_seq = v->error_seq;
  out->script_changed = v->script_changed;
  out->rate = v->rate;
  out->hash = v->hash;
  out->ready = v->ready;
  return 0;
}

flume__table flume__view_table(flume_view *v) { return v->table; }
int flume__view_host_ref(flume_view *v) { return v->host_ref; }

int flume__views_rebuild(flume_db *db) {
  int rc = writer_only(db);
  if (rc) return rc;
  flume__views *vs = flume__views_of(db);
  return vs ? flume__pipeline_rebuild(vs) : 0;
}
