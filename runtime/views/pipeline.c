/*
 * The pipeline: the indexer and checkpoints (one control loop), setting
 * views up, and rebuild.
 *
 * The indexer runs on the loop thread in slices (an idle callback): it reads
 * the next batch of the log after the lowest view since in one short read
 * transaction, decodes each value once into the view host, applies the
 * mapper, and feeds every view. Without a mapper a value that is a map is
 * decoded lazily (lazy.c) while the views read few of its fields (lazy.c
 * judges it as the slices go): a view pays for the fields it reads; whatever
 * a view hands back to be encoded (keys, accumulators, states) is
 * settled first, so the encoders see ordinary tables. Views turn what they did into operations
 * on their table; a checkpoint job hands the operations and each view's new
 * since to the writer, which commits them in one transaction. One
 * checkpoint is in flight at a time; while it commits the indexer goes on
 * and the next checkpoint gathers everything done meanwhile.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "msgpack.h"
#include "views/ahead.h"
#include "views/engine.h"
#include "views/host.h"
#include "views/lazy.h"
#include "views/read.h"

/* The sizes and times below can be set at build time (-D): a build run
 * under valgrind, some 50 times slower, is given 50 times the times, so
 * that it slices and checkpoints as a native build does and its profile
 * counts what a native run does. */
#define SLICE_MIN 8                  /* fewest values a slice reads */
#ifndef SLICE_VALUES
/* Most log values per indexer slice: few enough that a slice's values,
 * their proxies and what the views make of them stay in a core's L2
 * between the read and the views' pass (callgrind's cache model, 1 MiB
 * L2, 200k values: 23.6 L2 misses a value on a group rebuild with 2000 a
 * slice, `lua_limit` 2.7, 256 a slice 4.7). A loop turn takes up to
 * TURN_SLICES of them (on_idle): a turn each cost more natively (its
 * epoll_wait) than the misses saved. */
#define SLICE_VALUES 256
#endif
#ifndef TURN_SLICES
#define TURN_SLICES 8                /* most slices a loop turn indexes */
#endif
#ifndef SLICE_BUDGET_NS
#define SLICE_BUDGET_NS 4000000      /* loop time per turn: 4 ms */
#endif
#ifndef CKPT_EVERY_NS
#define CKPT_EVERY_NS 20000000       /* checkpoints while catching up: at
                                      * most one per 20 ms ... */
#endif
#define CKPT_BYTES ((size_t)1 << 20) /* ... unless 1 MiB of work waits */
#define PENDING_MAX ((size_t)4 << 20) /* ops bytes before the indexer waits */
#define REDUCE_SAVE_EVERY 1.0        /* seconds between reduce states while
                                      * rebuilding */

enum { OP_PUT = 1, OP_DEL = 2 };

/* A group view's host record has, beside FLUME__HREC_DIRTY and
 * FLUME__HREC_INFLIGHT, tables of the pipeline's own:
 *
 * - "clean": accumulators the store holds, as committed, so that the
 *   next value of a key needs no store lookup. Only numbers and booleans
 *   (counts, sums, flags: what most group views keep): they cost the view
 *   nothing to keep, where a table or string kept here would count against
 *   its memory after the view has dropped it. At most CLEAN_MAX keys, then
 *   it starts again; "clean_n" counts them.
 * - "keys": the encoded key of each string, integer or boolean key map
 *   returned since the last checkpoint, so that a key is encoded once per
 *   checkpoint, not once per value. */
#define HREC_CLEAN "clean"
#define HREC_CLEAN_N "clean_n"
#define HREC_KEYS "keys"
#define CLEAN_MAX 65536

static double now_seconds(flume__views *vs) {
  return (double)uv_now(flume__db_loop(vs->db)) / 1000.0;
}

/* ---- records ----------------------------------------------------------- */

static int meta_key(const flume_view *v, char *buf, size_t len) {
  return flume__meta_view_key(v->name, buf, len);
}

/* ---- operations buffers -------------------------------------------------- */

static int op_add(flume__buf *b, int op, const void *k, size_t kl,
                  const void *val, size_t vl) {
  uint32_t k32 = (uint32_t)kl, v32 = (uint32_t)vl;
  unsigned char o = (unsigned char)op;
  int rc = flume__buf_reserve(b, 9 + kl + vl);
  if (rc) return rc;
  flume__buf_append(b, &o, 1);
  flume__buf_append(b, &k32, 4);
  flume__buf_append(b, &v32, 4);
  flume__buf_append(b, k, kl);
  flume__buf_append(b, val, vl);
  return 0;
}

static int ops_apply(const flume__store_ops *ops, flume__txn *txn,
                     flume__table tbl, const flume__buf *b) {
  const char *p = b->data, *end = b->data + b->len;
  while (p < end) {
    uint32_t kl, vl;
    int op = (unsigned char)p[0];
    memcpy(&kl, p + 1, 4);
    memcpy(&vl, p + 5, 4);
    flume__slice k = {p + 9, kl}, v = {p + 9 + kl, vl};
    int rc = op == OP_PUT ? ops->put(txn, tbl, k, v) : ops->del(txn, tbl, k);
    if (rc && !(op == OP_DEL && rc == FLUME_ENOTFOUND)) return rc;
    p += 9 + kl + vl;
  }
  return 0;
}

/* ---- waiters ------------------------------------------------------------- */

/* ---- host helpers -------------------------------------------------------- */

/* Pushes field `f` of the view's host record. */
static void host_field(flume__views *vs, flume_view *v, const char *f) {
  lua_State *H = flume__host_state(vs->host);
  lua_rawgeti(H, LUA_REGISTRYINDEX, v->host_ref);
  lua_getfield(H, -1, f);
  lua_remove(H, -2);
}

static void host_set_field(flume__views *vs, flume_view *v, const char *f) {
  lua_State *H = flume__host_state(vs->host);
  lua_rawgeti(H, LUA_REGISTRYINDEX, v->host_ref);
  lua_insert(H, -2);
  lua_setfield(H, -2, f);
  lua_pop(H, 1);
}

/* Pushes the definition's function `f` (or nil). */
static void def_field(flume__views *vs, flume_view *v, const char *f) {
  lua_State *H = flume__host_state(vs->host);
  lua_rawgeti(H, LUA_REGISTRYINDEX, v->host_ref);
  lua_getfield(H, -1, FLUME__HREC_DEF);
  lua_getfield(H, -1, f);
  lua_remove(H, -2);
  lua_remove(H, -2);
}

static void host_reset(flume__views *vs, flume_view *v);

/* ---- failures in the catalogue ----------------------------------------- */

/* Deletes the view's "failed:" entry in txn, if any. */
static int failed_clear(flume_db *db, flume__txn *txn, flume__table meta,
                        const char *name) {
  char key[FLUME__NAMED_KEY_SIZE];
  int kl = flume__meta_failed_key(name, key, sizeof key);
  int rc = flume__db_ops(db)->del(txn, meta, (flume__slice){key, (size_t)kl});
  return rc == FLUME_ENOTFOUND ? 0 : rc;
}

/* Stores that the view failed (its "failed:" entry), so that a reader
 * waiting for it hears why at once. */
typedef struct fail_job {
  flume__job base;                /* the writer's part */
  char name[FLUME__NAME_MAX + 1]; /* the view */
  size_t len;                     /* bytes of value */
  char value[8 + 512];            /* session, then the message */
} fail_job;

static int fail_run(flume__job *job, flume__txn *txn, int64_t *next_seq) {
  fail_job *f = (fail_job *)job;
  const flume__store_ops *ops = flume__db_ops(job->db);
  char key[FLUME__NAMED_KEY_SIZE];
  flume__table meta;
  (void)next_seq;
  int kl = flume__meta_failed_key(f->name, key, sizeof key);
  int rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  if (rc == 0)
    rc = ops->put(txn, meta, (flume__slice){key, (size_t)kl},
                  (flume__slice){f->value, f->len});
  return rc;
}

static void fail_done(flume__job *job, int status) {
  (void)status; /* only a reader's message is lost */
  free(job);
}

static void fail_store(flume_view *v) {
  flume__views *vs = v->vs;
  if (vs == NULL || vs->readonly || vs->closing || vs->stopping) return;
  fail_job *f = calloc(1, sizeof *f);
  if (f == NULL) return;
  uint64_t session = flume__db_session(v->db);
  size_t n = strlen(v->error);
  memcpy(f->value, &session, 8);
  memcpy(f->value + 8, v->error, n);
  f->len = 8 + n;
  strcpy(f->name, v->name);
  f->base.run = fail_run;
  f->base.done = fail_done;
  f->base.bytes = f->len;
  if (flume__db_submit(v->db, &f->base)) free(f);
}

/* Stops a view. It keeps exactly its last checkpoint (the one committed or
 * in flight): what it did after it is dropped, for it may hold half of the
 * failing value (an index's first keys) or a state or accumulator that the
 * failing call changed in place. */
static void view_fail(flume_view *v, int64_t seq, const char *msg) {
  flume__views *vs = v->vs;
  v->failed = 1;
  v->error_seq = seq;
  snprintf(v->error, sizeof v->error, "view '%s' failed at seq %lld: %s",
           v->name, (long long)seq, msg);
  v->ops.len = 0;
  v->state_dirty = 0;
  if (v->since > v->handed) v->since = v->handed;
  if (vs && v->kind == FLUME__VIEW_GROUP) host_reset(vs, v);
  flume__gate_fail(v, FLUME_EVIEW);
  fail_store(v);
}

/* Sets the reduce state (or group overlays) back to a fresh start. */
static void host_reset(flume__views *vs, flume_view *v) {
  lua_State *H = flume__host_state(vs->host);
  if (v->kind == FLUME__VIEW_REDUCE) {
    host_field(vs, v, FLUME__HREC_INITIAL);
    if (lua_isstring(H, -1)) {
      size_t n;
      const char *s = lua_tolstring(H, -1, &n);
      char err[128];
      if (flume__mp_decode(H, s, n, err, sizeof err)) lua_pushnil(H);
      lua_remove(H, -2);
    } else {
      lua_pop(H, 1);
      lua_pushnil(H);
    }
    host_set_field(vs, v, FLUME__HREC_STATE);
  } else if (v->kind == FLUME__VIEW_GROUP) {
    lua_newtable(H);
    host_set_field(vs, v, FLUME__HREC_DIRTY);
    lua_newtable(H);
    host_set_field(vs, v, FLUME__HREC_INFLIGHT);
    lua_newtable(H);
    host_set_field(vs, v, HREC_CLEAN);
    lua_pushinteger(H, 0);
    host_set_field(vs, v, HREC_CLEAN_N);
    lua_newtable(H);
    host_set_field(vs, v, HREC_KEYS);
  }
}

/* ---- checkpoints --------------------------------------------------------- */

typedef struct ckpt_entry {
  flume_view *view;     /* whose changes */
  int64_t epoch;        /* its epoch when made */
  flume__table table;   /* its table */
  flume__buf ops;       /* the changes */
  int64_t since;        /* the since they bring it to */
  char meta[FLUME__RECORD_SIZE]; /* its record */
  int clear;            /* empty the table first (rebuild) */
} ckpt_entry;

typedef struct ckpt_job {
  flume__job base;      /* the writer's part */
  flume__views *vs;     /* owner */
  int reset;            /* a rebuild's reset, not the checkpoint in flight */
  size_t n;             /* entries */
  ckpt_entry e[];       /* one per view */
} ckpt_job;

static int ckpt_run(flume__job *job, flume__txn *txn, int64_t *next_seq) {
  ckpt_job *c = (ckpt_job *)job;
  const flume__store_ops *ops = flume__db_ops(job->db);
  flume__table meta;
  (void)next_seq;
  int rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  for (size_t i = 0; i < c->n && rc == 0; i++) {
    ckpt_entry *e = &c->e[i];
    char key[80];
    int kl = flume__meta_view_key(e->view->name, key, sizeof key);
    if (e->clear) rc = ops->table_clear(txn, e->table);
    if (e->clear && rc == 0) rc = failed_clear(job->db, txn, meta, e->view->name);
    if (rc == 0) rc = ops_apply(ops, txn, e->table, &e->ops);
    if (rc == 0)
      rc = ops->put(txn, meta, (flume__slice){key, (size_t)kl},
                    (flume__slice){e->meta, FLUME__RECORD_SIZE});
  }
  return rc;
}


static void reset_to_committed(flume__views *vs, flume_view *v);

/* What was in flight is what the store holds now: its numbers and
 * booleans go into the view's clean table, and whatever else it changed
 * leaves it. */
static void clean_merge(flume__views *vs, flume_view *v) {
  lua_State *H = flume__host_state(vs->host);
  int top = lua_gettop(H);
  host_field(vs, v, HREC_CLEAN_N);
  lua_Integer n = lua_tointeger(H, -1);
  host_field(vs, v, HREC_CLEAN);
  int clean = lua_gettop(H);
  host_field(vs, v, FLUME__HREC_INFLIGHT);
  int inflight = lua_gettop(H);
  if (n > CLEAN_MAX) {
    lua_newtable(H);
    lua_replace(H, clean);
    lua_pushvalue(H, clean);
    host_set_field(vs, v, HREC_CLEAN);
    n = 0;
  }
  lua_pushnil(H);
  while (lua_next(H, inflight)) {
    int t = lua_type(H, -1);
    if (t != LUA_TNUMBER && t != LUA_TBOOLEAN) {
      lua_pop(H, 1);
      lua_pushnil(H);
    } else {
      n++;
    }
    lua_pushvalue(H, -2);
    lua_insert(H, -2);
    lua_rawset(H, clean);
  }
  lua_pushinteger(H, n);
  host_set_field(vs, v, HREC_CLEAN_N);
  lua_settop(H, top);
}

static void ckpt_done(flume__job *job, int status) {
  ckpt_job *c = (ckpt_job *)job;
  flume__views *vs = c->vs;
  lua_State *H = flume__host_state(vs->host);
  if (!c->reset) vs->inflight = 0;
  for (size_t i = 0; i < c->n; i++) {
    ckpt_entry *e = &c->e[i];
    flume_view *v = e->view;
    if (c->reset && e->epoch == v->epoch) v->resetting = 0;
    if (e->epoch == v->epoch && !vs->closing) {
      if (status == 0) {
        if (e->since > v->committed) v->committed = e->since;
        if (v->kind == FLUME__VIEW_GROUP && !c->reset) {
          clean_merge(vs, v);
          lua_newtable(H);
          host_set_field(vs, v, FLUME__HREC_INFLIGHT);
        }
        flume__gate_release(v);
      } else if (c->reset) {
        /* Its old state is still there: indexing on it would be wrong. */
        view_fail(v, -1, "its state could not be cleared for the rebuild");
      } else {
        /* Nothing of it is stored: start again from what is. */
        reset_to_committed(vs, v);
      }
    }
    flume__buf_free(&e->ops);
  }
  free(c);
  if (!vs->closing) {
    flume__pipeline_checkpoint(vs);
    flume__pipeline_kick(vs);
  }
}

/* Moves a group view's dirty accumulators into operations. Returns 0, or
 * fails the view when one cannot be encoded. */
static int group_flush(flume__views *vs, flume_view *v) {
  lua_State *H = flume__host_state(vs->host);
  flume__buf val = FLUME__BUF_INIT;
  char err[256];
  int rc = 0;
  host_field(vs, v, FLUME__HREC_DIRTY);
  int dirty = lua_gettop(H);
  lua_getfield(H, LUA_REGISTRYINDEX, FLUME__HREG_DELETED);
  int deleted = lua_gettop(H);
  lua_pushnil(H);
  while (rc == 0 && lua_next(H, dirty)) {
    size_t kl;
    const char *k = lua_tolstring(H, -2, &kl);
    if (lua_rawequal(H, -1, deleted)) {
      rc = op_add(&v->ops, OP_DEL, k, kl, NULL, 0);
    } else {
      val.len = 0;
      flume__lazy_settle(H, -1);
      rc = flume__mp_encode(H, -1, &val, err, sizeof err);
      if (rc) {
        char msg[300];
        snprintf(msg, sizeof msg, "its accumulator cannot be stored: %s",
                 err);
        view_fail(v, v->since, msg);
      } else {
        rc = op_add(&v->ops, OP_PUT, k, kl, val.data, val.len);
      }
    }
    lua_pop(H, 1);
  }
  flume__buf_free(&val);
  if (rc) {
    lua_settop(H, dirty - 1);
    return rc;
  }
  lua_settop(H, dirty);
  host_set_field(vs, v, FLUME__HREC_INFLIGHT); /* the dirty table rides along */
  lua_newtable(H);
  host_set_field(vs, v, FLUME__HREC_DIRTY);
  lua_newtable(H);
  host_set_field(vs, v, HREC_KEYS);
  return 0;
}

/* Encodes a reduce view's state into operations. */
static int reduce_flush(flume__views *vs, flume_view *v) {
  lua_State *H = flume__host_state(vs->host);
  flume__buf val = FLUME__BUF_INIT;
  char err[256];
  host_field(vs, v, FLUME__HREC_STATE);
  flume__lazy_settle(H, -1);
  int rc = flume__mp_encode(H, -1, &val, err, sizeof err);
  lua_pop(H, 1);
  if (rc) {
    char msg[300];
    snprintf(msg, sizeof msg, "its state cannot be stored: %s", err);
    view_fail(v, v->since, msg);
  } else {
    rc = op_add(&v->ops, OP_PUT, FLUME__REDUCE_STATE_KEY, 1, val.data, val.len);
    v->state_dirty = 0;
    v->state_saved_at = now_seconds(vs);
  }
  flume__buf_free(&val);
  return rc;
}

/* Hands everything done since the last checkpoint to the writer. */
void flume__pipeline_checkpoint(flume__views *vs) {
  if (vs->inflight) return;
  size_t n = 0;
  for (flume_view *v = vs->list; v; v = v->next) n++;
  if (n == 0) return;
  ckpt_job *c = calloc(1, sizeof *c + n * sizeof(ckpt_entry));
  if (c == NULL) return; /* tried again after the next slice */
  int64_t log_since = flume_db_since(vs->db);
  double now = now_seconds(vs);
  size_t k = 0, bytes = 0;
  for (flume_view *v = vs->list; v; v = v->next) {
    /* A failed view keeps its last checkpoint: nothing more is stored. */
    if (!v->ready || v->resetting || v->failed ||
        v->since <= v->committed || v->kind == FLUME__VIEW_C)
      continue;
    int64_t since = v->since;
    if (v->kind == FLUME__VIEW_GROUP) {
      if (group_flush(vs, v)) continue;
    } else if (v->kind == FLUME__VIEW_REDUCE && v->state_dirty) {
      /* While rebuilding, the whole state is stored only now and then. */
      if (v->since < log_since && now - v->state_saved_at < REDUCE_SAVE_EVERY)
        continue;
      if (reduce_flush(vs, v)) continue;
    }
    ckpt_entry *e = &c->e[k++];
    e->view = v;
    e->epoch = v->epoch;
    e->table = v->table;
    e->ops = v->ops;
    e->since = since;
    /* The record keeps the hash of the script that built the state, so a
     * script changed without a version bump stays reported. */
    flume__record r = {(uint8_t)v->kind, v->version, since, v->built_hash};
    flume__record_pack(&r, e->meta);
    bytes += v->ops.len;
    /* Recorded now, before the commit: a read can see the commit in the
     * store before its completion runs. */
    flume__journal_add(&v->journal, v->handed, since, &e->ops);
    v->ops = (flume__buf)FLUME__BUF_INIT;
    v->handed = since;
  }
  if (k == 0) {
    free(c);
    return;
  }
  c->n = k;
  c->vs = vs;
  c->base.run = ckpt_run;
  c->base.done = ckpt_done;
  c->base.bytes = bytes;
  if (flume__db_submit(vs->db, &c->base) == 0) {
    vs->inflight = 1;
    return;
  }
  for (size_t i = 0; i < k; i++) flume__buf_free(&c->e[i].ops);
  free(c);
}

/* ---- the indexer --------------------------------------------------------- */

typedef struct batch_ctx {
  lua_State *H;     /* the host */
  int msgpack;      /* decode msgpack, or push strings */
  int lazy;         /* maps as lazy proxies (no mapper) */
  int meta;         /* stack index of the proxies' metatable (lazy) */
  int vals;         /* stack index of the values table */
  int64_t first;    /* seq of vals[1] */
  int n;            /* values read */
  char err[256];    /* decode error */
  int lua;          /* Lua views need the values decoded */
  int raw;          /* C views need the bytes */
  flume__buf bytes; /* the bytes, back to back */
  flume_entry *ents; /* their entries (data holds offsets until fixed) */
} batch_ctx;

static int batch_one(void *p, int64_t seq, const void *data, size_t len) {
  batch_ctx *b = p;
  if (b->n == 0) b->first = seq;
  if (b->raw) {
    b->ents[b->n] = (flume_entry){seq, (const void *)(uintptr_t)b->bytes.len,
                                  len};
    if (flume__buf_append(&b->bytes, data, len)) return FLUME_ENOMEM;
  }
  if (!b->lua) {
    b->n++;
    return 0;
  }
  if (b->msgpack) {
    int rc = b->lazy ? flume__lazy_decode_meta(b->H, b->meta, seq, data, len,
                                               b->err, sizeof b->err)
                     : flume__mp_decode(b->H, data, len, b->err,
                                        sizeof b->err);
    if (rc) return rc;
  } else {
    lua_pushlstring(b->H, data, len);
  }
  lua_rawseti(b->H, b->vals, ++b->n);
  return 0;
}

/* Bytes of a run's failure message (run_ctx.msg). */
#define RUN_MSG 300

/* Adds the index entry of key idx at seq to the view's ops; k: a
 * scratch buffer, emptied here (one per slice, not a malloc per entry).
 * A key that cannot be encoded: FLUME_EINVAL (or the encoder's error),
 * with the view's failure in msg (RUN_MSG bytes); an entry that cannot be
 * added (out of memory) is left out, as it always was. */
static int index_key(flume_view *v, lua_State *H, int idx, int64_t seq,
                     flume__buf *k, char *msg, int *bad) {
  char err[256];
  k->len = 0;
  int rc = flume__key_encode(H, idx, k, err, sizeof err);
  if (rc == 0 && k->len > FLUME__KEY_MAX) {
    snprintf(err, sizeof err, "key is %zu bytes encoded, over %d", k->len,
             FLUME__KEY_MAX);
    rc = FLUME_EINVAL;
  }
  if (rc == 0) {
    unsigned char s[FLUME__KEY_SEQ_LEN];
    flume__index_seq_put(s, seq);
    rc = flume__buf_append(k, s, sizeof s);
    if (rc == 0) rc = op_add(&v->ops, OP_PUT, k->data, k->len, "", 0);
  } else {
    snprintf(msg, RUN_MSG, "map returned a bad key: %s", err);
    *bad = 1;
  }
  return rc;
}

/* Looks up a group accumulator: dirty, then in flight, then committed
 * last, then the store.
 * ks: the stack index of k[kl] as a string. Pushes it (nil when
 * absent). */
static int group_lookup(flume__views *vs, flume_view *v, flume__txn *txn,
                        const char *k, size_t kl, int ks, int dirty,
                        int inflight, int clean, int deleted) {
  lua_State *H = flume__host_state(vs->host);
  lua_pushvalue(H, ks);
  if (lua_rawget(H, dirty) == LUA_TNIL) {
    lua_pop(H, 1);
    lua_pushvalue(H, ks);
    if (lua_rawget(H, inflight) == LUA_TNIL) {
      lua_pop(H, 1);
      lua_pushvalue(H, ks);
      lua_rawget(H, clean);
    }
  }
  int t = lua_type(H, -1);
  if (t != LUA_TNIL) {
    /* The marker is a table: most accumulators are not, and need no
     * comparing (lua_rawequal missed the instruction cache each value). */
    if (t == LUA_TTABLE && lua_rawequal(H, -1, deleted)) {
      lua_pop(H, 1);
      lua_pushnil(H);
    }
    return 0;
  }
  lua_pop(H, 1);
  const flume__store_ops *ops = flume__db_ops(vs->db);
  flume__slice val;
  int rc = ops->get(txn, v->table, (flume__slice){k, kl}, &val);
  if (rc == FLUME_ENOTFOUND) {
    lua_pushnil(H);
    return 0;
  }
  if (rc) return rc;
  char err[128];
  if (flume__mp_decode(H, val.data, val.size, err, sizeof err))
    return FLUME_ECORRUPT;
  return 0;
}

/* When a slice's time is up, read from the clock every few values, not
 * before each one: a clock read per value was 2.5 % of a rebuild's time
 * and a miss in the instruction cache each (callgrind). The stride
 * doubles, up to PACE_MAX, while a stride of values takes under
 * PACE_QUICK_NS, and halves when one takes more, so a slow view still
 * stops near its deadline: at worst PACE_MAX quick values late. */
#define PACE_MAX 64
#define PACE_QUICK_NS (SLICE_BUDGET_NS / 64)

typedef struct pacer {
  uint64_t deadline, last; /* uv_hrtime: the slice's end, the last read */
  int every, left;         /* values between reads, until the next */
} pacer;

static void pacer_init(pacer *p, uint64_t deadline) {
  *p = (pacer){deadline, 0, 1, 0};
}

/* Whether the deadline has passed (the clock read only every few calls). */
static inline int pacer_late(pacer *p) {
  if (p->left > 0) {
    p->left--;
    return 0;
  }
  uint64_t now = uv_hrtime();
  if (now >= p->deadline) return 1;
  if (p->last && now - p->last < PACE_QUICK_NS) {
    if (p->every < PACE_MAX) p->every *= 2;
  } else if (p->last && p->every > 1) {
    p->every /= 2;
  }
  p->last = now;
  p->left = p->every - 1;
  return 0;
}

/*
 * A run: a view's pass over a slice is one protected call of run_view,
 * which calls the view's map and reduce with lua_call, each armed and
 * disarmed around it (flume__host_arm, flume__host_disarm: host.c), not
 * one lua_pcall per call: a protected call costs several times an
 * unprotected one. An error ends the run where it happens, a script's
 * (its limits included) or the runtime's own on a value (a bad key, an
 * accumulator the store cannot give): apply_view then fails the view at
 * the value in progress, with the message a call of its own would have
 * given.
 */
typedef struct run_ctx {
  flume__views *vs;  /* the views */
  flume_view *v;     /* the view */
  flume__host *host; /* their host */
  flume__txn *txn;   /* group: the store, read */
  flume__buf kb;     /* scratch for encoded keys */
  pacer pace;        /* the slice's deadline */
  int64_t first;     /* seq of vals[1] */
  int64_t start;     /* index (from 0) of the first value to feed */
  int n;             /* values in vals */
  int must;          /* the first value goes in whatever the time */
  int64_t seq;       /* the value in progress */
  int late;          /* stopped for the deadline */
  char msg[RUN_MSG]; /* the runtime's failure on a value */
} run_ctx;

/* The runtime's failure on the value in progress: raised as r->msg. */
static int run_fail(lua_State *H, run_ctx *r) {
  lua_pushstring(H, r->msg);
  return lua_error(H);
}

/* Calls the view's function at the top (below it nargs arguments) for the
 * value in progress, under its limits. */
static inline void run_call(lua_State *H, run_ctx *r, int nargs, int nres) {
  flume__host_arm(r->host, r->seq);
  lua_call(H, nargs, nres);
  flume__host_disarm(r->host);
}

/* The run's arguments, by stack index. */
enum {
  RA_CTX = 1, /* the run_ctx */
  RA_VALS,    /* the slice's values */
  RA_MAP,     /* the definition's map (or nil) */
  RA_REDUCE,  /* its reduce (or nil) */
  RA_STATE,   /* reduce: the state */
  RA_DIRTY = RA_STATE, /* group: the record's dirty accumulators */
  RA_INFLIGHT, /* those in flight */
  RA_CLEAN,   /* those committed */
  RA_KEYS,    /* the encoded keys */
  RA_DELETED  /* the deletion marker */
};

static int run_view(lua_State *H) {
  run_ctx *r = lua_touserdata(H, RA_CTX);
  flume__views *vs = r->vs;
  flume_view *v = r->v;
  int base = lua_gettop(H);
  int has_map = !lua_isnil(H, RA_MAP);
  luaL_checkstack(H, 24, NULL); /* what a value takes, with room */
  for (int64_t i = r->start; i < r->n; i++) {
    int64_t seq = r->first + i;
    if ((i > r->start || !r->must) && pacer_late(&r->pace)) {
      r->late = 1;
      break;
    }
    r->seq = seq;
    if (v->kind == FLUME__VIEW_REDUCE && !has_map) {
      /* The commonest: the stack is as it was after each value. */
      lua_pushvalue(H, RA_REDUCE);
      lua_pushvalue(H, RA_STATE);
      lua_rawgeti(H, RA_VALS, i + 1);
      lua_pushinteger(H, seq);
      run_call(H, r, 3, 1);
      lua_replace(H, RA_STATE);
      v->state_dirty = 1;
      v->since = seq;
      continue;
    }
    lua_settop(H, base);
    if (v->kind == FLUME__VIEW_INDEX) {
      lua_pushvalue(H, RA_MAP);
      lua_rawgeti(H, RA_VALS, i + 1);
      lua_pushinteger(H, seq);
      run_call(H, r, 2, 1);
      int k = lua_gettop(H), bad = 0;
      if (lua_istable(H, k)) {
        flume__lazy_settle(H, k);
        /* A table is a list of keys; a composite key (itself a list) goes
         * inside one: return { { author, day } }. */
        lua_Unsigned len = lua_rawlen(H, k);
        for (lua_Unsigned j = 1; j <= len; j++) {
          lua_rawgeti(H, k, (lua_Integer)j);
          if (index_key(v, H, lua_gettop(H), seq, &r->kb, r->msg, &bad))
            break;
          lua_pop(H, 1);
        }
      } else if (!lua_isnil(H, k)) {
        index_key(v, H, k, seq, &r->kb, r->msg, &bad);
      }
      if (bad) return run_fail(H, r);
    } else if (v->kind == FLUME__VIEW_GROUP) {
      lua_pushvalue(H, RA_MAP);
      lua_rawgeti(H, RA_VALS, i + 1);
      lua_pushinteger(H, seq);
      run_call(H, r, 2, 2);
      int key = lua_gettop(H) - 1, val = key + 1;
      if (lua_isnil(H, key)) {
        v->since = seq; /* skipped, but seen: since moves on */
        continue;
      }
      /* The key encoded, as a string: looked up, then set. A float key is
       * not cached: Lua would take 3.0 for 3, a key of its own. */
      int kt = lua_type(H, key);
      int cached = kt == LUA_TSTRING || kt == LUA_TBOOLEAN ||
                   (kt == LUA_TNUMBER && lua_isinteger(H, key));
      lua_pushvalue(H, key);
      if (!cached || lua_rawget(H, RA_KEYS) != LUA_TSTRING) {
        lua_pop(H, 1);
        flume__lazy_settle(H, key);
        char err[256];
        flume__buf *kb = &r->kb;
        kb->len = 0;
        if (flume__key_encode(H, key, kb, err, sizeof err) ||
            kb->len > FLUME__KEY_MAX) {
          if (kb->len > FLUME__KEY_MAX)
            snprintf(err, sizeof err, "key is %zu bytes encoded, over %d",
                     kb->len, FLUME__KEY_MAX);
          snprintf(r->msg, sizeof r->msg, "map returned a bad key: %s", err);
          return run_fail(H, r);
        }
        lua_pushlstring(H, kb->data, kb->len);
        if (cached) {
          lua_pushvalue(H, key);
          lua_pushvalue(H, -2);
          lua_rawset(H, RA_KEYS);
        }
      }
      int ks = lua_gettop(H);
      size_t kl;
      const char *k = lua_tolstring(H, ks, &kl);
      if (group_lookup(vs, v, r->txn, k, kl, ks, RA_DIRTY, RA_INFLIGHT,
                       RA_CLEAN, RA_DELETED)) {
        snprintf(r->msg, sizeof r->msg, "its stored state cannot be read");
        return run_fail(H, r);
      }
      int acc = lua_gettop(H);
      lua_pushvalue(H, RA_REDUCE);
      lua_pushvalue(H, acc);
      lua_pushvalue(H, val);
      lua_pushvalue(H, key);
      lua_pushinteger(H, seq);
      run_call(H, r, 4, 1);
      lua_pushvalue(H, ks);
      if (lua_isnil(H, -2)) lua_pushvalue(H, RA_DELETED);
      else lua_pushvalue(H, -2);
      lua_rawset(H, RA_DIRTY);
    } else {
      lua_rawgeti(H, RA_VALS, i + 1);
      int value = lua_gettop(H);
      if (has_map) {
        lua_pushvalue(H, RA_MAP);
        lua_pushvalue(H, value);
        lua_pushinteger(H, seq);
        run_call(H, r, 2, 1);
        if (lua_isnil(H, -1)) {
          v->since = seq;
          continue;
        }
        lua_replace(H, value);
      }
      lua_pushvalue(H, RA_REDUCE);
      lua_pushvalue(H, RA_STATE);
      lua_pushvalue(H, value);
      lua_pushinteger(H, seq);
      run_call(H, r, 3, 1);
      lua_replace(H, RA_STATE);
      v->state_dirty = 1;
    }
    v->since = seq;
  }
  if (v->kind == FLUME__VIEW_REDUCE) {
    lua_pushvalue(H, RA_STATE);
    host_set_field(vs, v, FLUME__HREC_STATE);
  }
  return 0;
}

/* Feeds vals[i] (seq first+i-1) to a view, for the seqs it has not seen,
 * until the slice's deadline (uv_hrtime) has passed: checked before each
 * value (paced, see pacer_late), but after the first one when `must` is
 * set. Returns 1 if it stopped for the deadline. */
static int apply_view(flume__views *vs, flume_view *v, int vals,
                      int64_t first, int n, uint64_t deadline, int must) {
  lua_State *H = flume__host_state(vs->host);
  const flume__store_ops *ops = flume__db_ops(vs->db);
  int64_t start = v->since + 1 - first;
  if (start < 0) start = 0;
  if (start >= n) return 0;
  run_ctx r = {.vs = vs, .v = v, .host = vs->host, .kb = FLUME__BUF_INIT,
               .first = first, .start = start, .n = n, .must = must,
               .seq = first + start};
  pacer_init(&r.pace, deadline);
  if (v->kind == FLUME__VIEW_GROUP &&
      ops->txn_begin(flume__db_store(vs->db), FLUME__TXN_READ, &r.txn))
    return 0; /* tried again in the next slice */
  int top = lua_gettop(H);
  lua_checkstack(H, 12);
  lua_pushcfunction(H, run_view);
  lua_pushlightuserdata(H, &r);
  lua_pushvalue(H, vals);
  def_field(vs, v, FLUME__DEF_MAP);
  def_field(vs, v, FLUME__DEF_REDUCE);
  if (v->kind == FLUME__VIEW_GROUP) {
    host_field(vs, v, FLUME__HREC_DIRTY);
    host_field(vs, v, FLUME__HREC_INFLIGHT);
    host_field(vs, v, HREC_CLEAN);
    host_field(vs, v, HREC_KEYS);
    lua_getfield(H, LUA_REGISTRYINDEX, FLUME__HREG_DELETED);
  } else if (v->kind == FLUME__VIEW_REDUCE) {
    host_field(vs, v, FLUME__HREC_STATE);
  }
  if (flume__host_run(vs->host, v->host_ref, lua_gettop(H) - top - 1, 0) !=
      LUA_OK) {
    const char *msg = lua_tostring(H, -1);
    view_fail(v, r.seq, msg ? msg : "(error object is not a string)");
  }
  flume__buf_free(&r.kb);
  if (r.txn) ops->txn_abort(r.txn);
  lua_settop(H, top);
  return r.late;
}

/* Feeds a C view the entries it has not seen; it keeps its own state, so
 * its since is at once what reads see. */
static void apply_c(flume_view *v, const flume_entry *ents, int64_t first,
                    int n) {
  int64_t start = v->since + 1 - first;
  if (start < 0) start = 0;
  if (start < n) {
    int rc = v->vt->apply(v->vstate, ents + start, (size_t)(n - start));
    if (rc) {
      view_fail(v, first + start, flume_strerror(rc));
      return;
    }
  }
  v->since = v->committed = v->vt->since(v->vstate);
  flume__gate_release(v);
}

static void sample_rate(flume__views *vs, flume_view *v) {
  double now = now_seconds(vs);
  if (v->rate_at == 0) {
    v->rate_at = now;
    v->rate_since = v->since;
  } else if (now - v->rate_at >= 0.5) {
    v->rate = (double)(v->since - v->rate_since) / (now - v->rate_at);
    v->rate_at = now;
    v->rate_since = v->since;
  }
}

/* Feeds a slice's values to one view, until the deadline (see
 * apply_view). Returns 1 if it stopped for the deadline. */
static int slice_view(flume__views *vs, flume_view *v, batch_ctx *b,
                      uint64_t deadline, int must) {
  int late = 0;
  if (!v->ready || v->failed || v->resetting) return 0;
  if (v->kind != FLUME__VIEW_C)
    late = apply_view(vs, v, b->vals, b->first, b->n, deadline, must);
  else if (must || uv_hrtime() < deadline)
    apply_c(v, b->ents, b->first, b->n); /* it takes them all at once */
  else
    late = 1;
  sample_rate(vs, v);
  return late;
}

/*
 * One slice of indexing. Returns 1 if there is more to do now.
 *
 * A slice is bounded by time, not only by count: it reads `batch` values
 * (at most SLICE_VALUES), and the mapper and the views stop at the first
 * value after `deadline`, its loop turn's end (on_idle; checked between
 * values, paced: pacer_late), so a slow view holds the loop a few ms at a
 * time and appends stay acknowledged.
 * The view furthest behind goes first and always gets one value, so every
 * slice moves the indexer on; the others go on while time is left. The
 * next slice reads about as many values as this one got through.
 */
static int index_slice(flume__views *vs, uint64_t deadline) {
  if (vs->paused || vs->closing) return 0;
  uint64_t start = uv_hrtime();
  int64_t log_since = flume_db_since(vs->db);
  int64_t from = INT64_MAX;
  flume_view *lag = NULL; /* the view furthest behind */
  size_t pending = 0;
  for (flume_view *v = vs->list; v; v = v->next) {
    pending += v->ops.len;
    if (v->ready && !v->failed && !v->resetting && v->since < from) {
      from = v->since;
      lag = v;
    }
  }
  if (from == INT64_MAX || from >= log_since) {
    for (flume_view *v = vs->list; v; v = v->next) v->rate = 0;
    flume__pipeline_checkpoint(vs);
    return 0;
  }
  if (pending > PENDING_MAX && vs->inflight) return 0; /* after the commit */
  from += 1;
  lua_State *H = flume__host_state(vs->host);
  int top = lua_gettop(H);
  if (vs->batch < SLICE_MIN) vs->batch = SLICE_VALUES;
  batch_ctx b = {.H = H,
                 .msgpack = vs->msgpack,
                 .lazy = vs->msgpack && !vs->has_mapper,
                 .first = from,
                 .bytes = FLUME__BUF_INIT};
  for (flume_view *v = vs->list; v; v = v->next) {
    if (!v->ready || v->failed || v->resetting) continue;
    if (v->kind == FLUME__VIEW_C) b.raw = 1;
    else b.lua = 1;
  }
  /* What a cut slice left is decoded and mapped already: go on with it. */
  int kept = vs->kept_n > 0 && !b.raw && from >= vs->kept_first &&
             from < vs->kept_first + vs->kept_n;
  if (kept) {
    lua_getfield(H, LUA_REGISTRYINDEX, FLUME__HREG_KEPT);
    b.first = vs->kept_first;
    b.n = vs->kept_n;
  } else {
    lua_createtable(H, vs->batch, 0);
  }
  b.vals = lua_gettop(H);
  if (b.lazy && !kept) b.lazy = flume__lazy_choose(H);
  if (b.lazy) {
    flume__lazy_push_meta(H);
    b.meta = lua_gettop(H);
  }
  if (vs->kept_n) {
    vs->kept_n = 0;
    lua_pushnil(H);
    lua_setfield(H, LUA_REGISTRYINDEX, FLUME__HREG_KEPT);
  }
  if (b.raw && (b.ents = malloc((size_t)vs->batch * sizeof *b.ents)) == NULL) {
    lua_settop(H, top);
    return 0;
  }
  /* More than a slice behind: the rest is read ahead meanwhile. */
  if (!vs->ahead_tried && log_since - from >= (int64_t)vs->batch) {
    vs->ahead_tried = 1;
    vs->ahead = flume__ahead_new(vs->db);
  }
  size_t count;
  int rc = kept        ? 0
           : vs->ahead ? flume__ahead_read(vs->ahead, from, log_since,
                                           (size_t)vs->batch, batch_one, &b,
                                           &count)
                       : flume__db_read(vs->db, from, log_since,
                                        (size_t)vs->batch, batch_one, &b,
                                        &count);
  for (int i = 0; b.raw && i < b.n; i++)
    b.ents[i].data = b.bytes.data + (uintptr_t)b.ents[i].data;
  if (b.lua && b.msgpack && !b.lazy && !vs->has_mapper && !kept)
    flume__lazy_decoded_whole(H, (size_t)b.n);
  if (rc) {
    free(b.ents);
    flume__buf_free(&b.bytes);
    char msg[300];
    snprintf(msg, sizeof msg, "the log cannot be read: %s%s%s",
             flume_strerror(rc), b.err[0] ? ": " : "", b.err);
    for (flume_view *v = vs->list; v; v = v->next)
      if (v->ready && !v->failed && v->since < from + b.n + 1)
        view_fail(v, from + b.n, msg);
    lua_settop(H, top);
    return 0;
  }
  int late = 0; /* the slice stopped for its deadline */
  if (vs->has_mapper && b.lua && !kept) {
    lua_getfield(H, LUA_REGISTRYINDEX, FLUME__HREG_MAPPER);
    pacer pace;
    pacer_init(&pace, deadline);
    for (int i = 1; i <= b.n; i++) {
      if (i > 1 && pacer_late(&pace)) {
        b.n = i - 1; /* the views get what is mapped */
        late = 1;
        break;
      }
      lua_pushvalue(H, -1);
      lua_rawgeti(H, b.vals, i);
      lua_pushinteger(H, b.first + i - 1);
      if (flume__host_pcall_at(vs->host, 2, 1, b.first + i - 1) != LUA_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "the mapper failed: %s",
                 lua_tostring(H, -1));
        lua_pop(H, 1);
        for (flume_view *v = vs->list; v; v = v->next)
          if (v->ready && !v->failed && v->since < b.first + i - 1)
            view_fail(v, b.first + i - 1, msg);
        b.n = i - 1;
        break;
      }
      lua_rawseti(H, b.vals, i);
    }
    lua_pop(H, 1);
  }
  int64_t lag_since = lag->since;
  late |= slice_view(vs, lag, &b, deadline, 1);
  for (flume_view *v = vs->list; v; v = v->next)
    if (v != lag) late |= slice_view(vs, v, &b, deadline, 0);
  /* The next slice reads what it can get through in about 3/4 of its
   * time at this slice's pace (at most twice as many), so that the
   * deadline seldom cuts a batch: values read and left are read again. */
  uint64_t spent = uv_hrtime() - start;
  int64_t next = INT64_MAX; /* cut: what every view got through */
  for (flume_view *v = vs->list; v; v = v->next)
    if (v->ready && !v->failed && !v->resetting && v->since < next)
      next = v->since;
  int64_t behind = next; /* the since of the view now furthest behind */
  next = next == INT64_MAX ? 0 : next - lag_since;
  if (late && !b.raw && behind != INT64_MAX && behind + 1 >= b.first &&
      behind + 1 < b.first + b.n) {
    /* Cut: keep what is left for the next slice, not to decode it again. */
    lua_pushvalue(H, b.vals);
    lua_setfield(H, LUA_REGISTRYINDEX, FLUME__HREG_KEPT);
    vs->kept_first = b.first;
    vs->kept_n = b.n;
  }
  if (!late && b.n > 0)
    next = (int64_t)((double)b.n * (SLICE_BUDGET_NS * 0.75) /
                     (double)(spent ? spent : 1));
  if (next > 2 * (int64_t)vs->batch) next = 2 * (int64_t)vs->batch;
  vs->batch = next < SLICE_MIN      ? SLICE_MIN
              : next > SLICE_VALUES ? SLICE_VALUES
                                    : (int)next;
  free(b.ents);
  flume__buf_free(&b.bytes);
  lua_settop(H, top);
  /* Catching up, slices are short: a checkpoint every few of them keeps
   * commits (and their page copies) as few as slices by count made them;
   * caught up, every slice's work is stored at once. */
  uint64_t now = uv_hrtime();
  if (b.first + b.n - 1 >= log_since || pending >= CKPT_BYTES ||
      now - vs->ckpt_at >= CKPT_EVERY_NS) {
    vs->ckpt_at = now;
    flume__pipeline_checkpoint(vs);
  }
  return 1;
}

/* A loop turn indexes up to TURN_SLICES slices, within one slice's time:
 * a slice's values stay in cache (SLICE_VALUES), a turn's fixed costs are
 * shared. */
static void on_idle(uv_idle_t *h) {
  flume__views *vs = h->data;
  uint64_t now = uv_hrtime(), was, end = now + SLICE_BUDGET_NS;
  int more, slices = 0;
  if (vs->draining && now >= vs->drain_until) {
    /* A close's time for the views is up: no more slices, so no more
     * checkpoints, and the writer goes idle for the close to go on (it
     * looks at the views only when the writer is; a checkpoint after each
     * slice kept it busy, and a slow view held the close until it caught
     * up). */
    uv_idle_stop(h);
    vs->idle_on = 0;
    flume__db_close_kick(vs->db);
    return;
  }
  /* Another slice only if one as long as the last fits in the turn: a
   * slice the turn's end cut would make the next ones shorter. */
  do {
    was = now;
    more = index_slice(vs, end);
    now = uv_hrtime();
  } while (more && ++slices < TURN_SLICES && !vs->paused && !vs->closing &&
           now + (now - was) < end);
  if (!more) {
    uv_idle_stop(h);
    vs->idle_on = 0;
  }
  /* a close waiting for the views (registry.c, views_drain) looks again */
  if (vs->draining) flume__db_close_kick(vs->db);
}

void flume__pipeline_kick(flume__views *vs) {
  if (vs->idle_on || vs->closing || vs->paused) return;
  vs->idle_on = 1;
  uv_idle_start(&vs->idle, on_idle);
}

static void on_log_since(void *ctx, int status, int64_t since) {
  (void)since;
  if (status == 0) flume__pipeline_kick(ctx);
}

int flume__pipeline_start(flume__views *vs) {
  int rc = flume_db_on_since(vs->db, on_log_since, vs, &vs->watch);
  if (rc) return rc;
  /* Last: a handle once initialised must be closed. */
  uv_idle_init(flume__db_loop(vs->db), &vs->idle);
  vs->idle.data = vs;
  return 0;
}

/* ---- setting views up ------------------------------------------------------ */

typedef struct setup_job {
  flume__job base;       /* the writer's part */
  flume_view *view;      /* the view being set up */
  flume__buf initial;    /* reduce: msgpack of the initial state */
  flume__record found;     /* its record as stored, if any */
  int had_record;        /* there was one */
  int rebuilt;           /* the stored state was dropped */
  flume__table table;    /* its table, opened */
  void (*cb)(void *ctx, int status, flume_view *v);
  void *ctx;
} setup_job;

static int setup_run(flume__job *job, flume__txn *txn, int64_t *next_seq) {
  setup_job *s = (setup_job *)job;
  flume_view *v = s->view;
  const flume__store_ops *ops = flume__db_ops(job->db);
  char name[80], key[80];
  flume__table meta;
  flume__slice val;
  (void)next_seq;
  flume__view_table_name(v->name, name, sizeof name);
  int kl = meta_key(v, key, sizeof key);
  int rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  if (rc == 0) rc = ops->table_open(txn, name, 1, &s->table);
  if (rc) return rc;
  rc = ops->get(txn, meta, (flume__slice){key, (size_t)kl}, &val);
  s->had_record = rc == 0 && flume__record_unpack(val, &s->found) == 0;
  if (rc && rc != FLUME_ENOTFOUND) return rc;
  int64_t log_last;
  if ((rc = ops->log_last(txn, &log_last))) return rc;
  s->rebuilt = !s->had_record || s->found.version != v->version ||
               s->found.kind != v->kind || s->found.since > log_last;
  /* The catalogue: the script this writer attached (format.h). */
  flume__script sc = {(uint8_t)v->kind, (uint8_t)v->origin, v->version,
                      v->hash, flume__db_session(job->db), v->chunk,
                      strlen(v->chunk), v->script, v->script_len};
  flume__buf entry = FLUME__BUF_INIT;
  char skey[FLUME__NAMED_KEY_SIZE];
  int skl = flume__meta_script_key(v->name, skey, sizeof skey);
  rc = flume__script_pack(&sc, &entry);
  if (rc == 0)
    rc = ops->put(txn, meta, (flume__slice){skey, (size_t)skl},
                  (flume__slice){entry.data, entry.len});
  flume__buf_free(&entry);
  if (rc == 0) rc = failed_clear(job->db, txn, meta, v->name);
  if (rc || !s->rebuilt) return rc;
  flume__record r = {(uint8_t)v->kind, v->version, -1, v->hash};
  char packed[FLUME__RECORD_SIZE];
  flume__record_pack(&r, packed);
  if ((rc = ops->table_clear(txn, s->table))) return rc;
  if (v->kind == FLUME__VIEW_REDUCE &&
      (rc = ops->put(txn, s->table, (flume__slice){FLUME__REDUCE_STATE_KEY, 1},
                     (flume__slice){s->initial.data, s->initial.len})))
    return rc;
  return ops->put(txn, meta, (flume__slice){key, (size_t)kl},
                  (flume__slice){packed, FLUME__RECORD_SIZE});
}

/* Loads a reduce view's committed state into the host (its initial state
 * when it has none stored). */
static int load_state(flume__views *vs, flume_view *v) {
  lua_State *H = flume__host_state(vs->host);
  flume__buf b = FLUME__BUF_INIT;
  char err[128];
  int rc = flume__view_stored_state(v, &b);
  if (rc == FLUME_ENOTFOUND) {
    host_reset(vs, v);
    rc = 0;
  } else if (rc == 0) {
    if (flume__mp_decode(H, b.data, b.len, err, sizeof err)) rc = FLUME_ECORRUPT;
    else host_set_field(vs, v, FLUME__HREC_STATE);
  }
  flume__buf_free(&b);
  return rc;
}

static void reset_to_committed(flume__views *vs, flume_view *v) {
  flume__journal_truncate(&v->journal, v->committed);
  v->since = v->handed = v->committed;
  v->ops.len = 0;
  v->epoch++;
  if (v->kind == FLUME__VIEW_REDUCE) load_state(vs, v);
  else host_reset(vs, v);
}

static void setup_done(flume__job *job, int status) {
  setup_job *s = (setup_job *)job;
  flume_view *v = s->view;
  flume__views *vs = s->view->vs;
  if (status == 0 && vs && !vs->closing) {
    v->table = s->table;
    v->committed = v->since = v->handed = s->rebuilt ? -1 : s->found.since;
    v->built_hash = s->rebuilt ? v->hash : s->found.hash;
    v->script_changed = v->built_hash != v->hash;
    if (v->kind == FLUME__VIEW_REDUCE) status = load_state(vs, v);
    else host_reset(vs, v);
    v->ready = status == 0;
    if (status) view_fail(v, -1, "its stored state cannot be read");
  }
  if (s->cb) s->cb(s->ctx, status, v);
  if (vs && !vs->closing) {
    flume__gate_release(v);
    flume__pipeline_kick(vs);
  }
  flume__buf_free(&s->initial);
  free(s);
}

int flume__pipeline_setup(flume__views *vs, flume_view *v, flume__use_cb cb,
                          void *ctx, char *err, size_t errlen) {
  if (vs->closing || vs->stopping || vs->draining) return FLUME_ECLOSED;
  setup_job *s = calloc(1, sizeof *s);
  if (s == NULL) return FLUME_ENOMEM;
  /* The initial state, encoded once: every reset decodes a fresh copy, so
   * a reducer that mutates its state cannot change it. */
  int rc = 0;
  lua_State *H = flume__host_state(vs->host);
  if (v->kind == FLUME__VIEW_REDUCE) {
    def_field(vs, v, FLUME__DEF_INITIAL);
    rc = flume__mp_encode(H, -1, &s->initial, err, errlen);
    lua_pop(H, 1);
    if (rc == 0) {
      lua_pushlstring(H, s->initial.data, s->initial.len);
      host_set_field(vs, v, FLUME__HREC_INITIAL);
    }
  }
  s->view = v;
  s->cb = cb;
  s->ctx = ctx;
  s->base.run = setup_run;
  s->base.done = setup_done;
  s->base.bytes = 64;
  if (rc == 0) rc = flume__db_submit(vs->db, &s->base);
  if (rc) {
    flume__buf_free(&s->initial);
    free(s);
  }
  return rc;
}

/* ---- rebuild ---------------------------------------------------------------- */

int flume__pipeline_rebuild(flume__views *vs) {
  flume_db *db = vs->db;
  if (vs->closing || vs->stopping || vs->draining) return FLUME_ECLOSED;
  for (flume_view *v = vs->list; v; v = v->next) {
    if (v->kind == FLUME__VIEW_C) {
      v->failed = 0;
      int rc = v->vt->destroy(v->vstate);
      v->since = v->committed = v->vt->since(v->vstate);
      if (rc) view_fail(v, -1, flume_strerror(rc));
      continue;
    }
    if (!v->ready) continue;
    ckpt_job *c = calloc(1, sizeof *c + sizeof(ckpt_entry));
    if (c == NULL) return FLUME_ENOMEM;
    v->epoch++;
    v->resetting = 1; /* its old state is still stored until the reset */
    v->built_hash = v->hash; /* rebuilt by the script in use */
    v->script_changed = 0;
    v->failed = 0;
    v->error[0] = '\0';
    v->since = v->committed = v->handed = -1;
    v->ops.len = 0;
    v->state_dirty = 0;
    flume__journal_reset(&v->journal);
    host_reset(vs, v);
    ckpt_entry *e = &c->e[0];
    e->view = v;
    e->epoch = v->epoch;
    e->table = v->table;
    e->since = -1;
    e->clear = 1;
    flume__record r = {(uint8_t)v->kind, v->version, -1, v->hash};
    flume__record_pack(&r, e->meta);
    if (v->kind == FLUME__VIEW_REDUCE) {
      host_field(vs, v, FLUME__HREC_INITIAL);
      size_t n = 0;
      const char *p = lua_tolstring(flume__host_state(vs->host), -1, &n);
      op_add(&e->ops, OP_PUT, FLUME__REDUCE_STATE_KEY, 1, p, n);
      lua_pop(flume__host_state(vs->host), 1);
    }
    c->n = 1;
    c->vs = vs;
    c->reset = 1;
    c->base.run = ckpt_run;
    c->base.done = ckpt_done;
    c->base.bytes = e->ops.len;
    int rc = flume__db_submit(db, &c->base);
    if (rc) {
      flume__buf_free(&e->ops);
      free(c);
      return rc;
    }
  }
  flume__pipeline_kick(vs);
  return 0;
}

