/*
 * The database handle as Lua sees it (flume.core.db): open, the one close,
 * appends, reads of the log, since watches. The sync forms, coroutines and
 * options sugar live in views-lua/flume/init.lua.
 *
 * A handle is created closed and then opened, so its __gc is always safe.
 * `:close(cb)`, `__gc` and `__close` are one function (close_db, as
 * liolib.c's aux_close): closing twice does nothing; the handle reads as
 * closed at once and the database finishes closing on the loop (appends
 * already accepted are written first, and their callbacks called).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/binding.h"
#include "msgpack.h"

#define LIKELY(x) __builtin_expect(!!(x), 1)

typedef struct lwatch {
  flume_watch *w;    /* NULL once stopped or closed */
  lreq req;          /* the Lua observer; keeps this userdata alive while
                        it observes */
} lwatch;

ldb *flume__lua_check_db(lua_State *L, int idx) {
  ldb *d = luaL_checkudata(L, idx, DB_MT);
  if (d->db == NULL) flume__lua_raise(L, FLUME_ECLOSED, NULL);
  return d;
}

/* The string at idx (or NULL if nil) for C, which would stop at an
 * embedded NUL byte and so name another folder or codec: that is EINVAL. */
static const char *opt_cstring(lua_State *L, int idx, const char *what) {
  size_t n;
  const char *s = luaL_optlstring(L, idx, NULL, &n);
  if (s && strlen(s) != n) {
    lua_pushfstring(L, "%s contains a NUL byte", what);
    flume__lua_raise(L, FLUME_EINVAL, lua_tostring(L, -1));
  }
  return s;
}

/* ---- single appends in flight -------------------------------------------
 *
 * A database's single appends keep their callbacks in one Lua table, in
 * order: the writer completes them in order (a run of them at a time,
 * runtime/db.c), so a completion is a range of that table, delivered in one
 * protected call. No allocation, registry ref or pcall per append. */

typedef struct lappend {
  lctx *ctx;           /* the state's context */
  int fifo_ref;        /* registry ref of the table of callbacks (a
                          callback-less append leaves its slot nil) */
  lua_Integer head;    /* the slot of the oldest append in flight */
  lua_Integer tail;    /* the slot the next append takes */
  flume__buf scratch;  /* the encoding of one value, reused */
  flume__batch batch;  /* the batch being encoded; an encoding that raised
                          leaves its buffers here, given back by the next */
  lreq *close_req;     /* the close's callback, or NULL */
  flume_db *db;        /* the database, for a remote log's error detail */
  lreq log;            /* on_log(view, seq, msg): what view scripts print
                          (no callback: the runtime's stderr line) */
} lappend;

/* A remote log's appends fail with a detail (no quorum, which process
 * holds the node id); a local one's codes say it all. */
static const char *append_detail(flume_db *db, int status) {
  if (db == NULL || status == FLUME_ECLOSED || !flume__db_routed(db))
    return NULL;
  const char *m = flume_db_errmsg(db);
  return m[0] ? m : NULL;
}

static lappend *app_new(lua_State *L, lctx *c) {
  lappend *a = calloc(1, sizeof *a);
  if (a == NULL) return NULL;
  a->ctx = c;
  a->head = a->tail = 1;
  flume__lua_req_init(&a->log, c, NULL);
  lua_newtable(L);
  a->fifo_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return a;
}

/* The database finished closing: every append has been told. */
static void app_closed(void *p) {
  lappend *a = p;
  lreq *r = a->close_req;
  /* Without Lua to call, the state is closing and frees its registry. */
  lctx *c = a->ctx;
  lua_State *L = flume__lua_can_call(c) ? flume__lua_thread(c) : NULL;
  if (L) luaL_unref(L, LUA_REGISTRYINDEX, a->fifo_ref);
  flume__lua_req_drop(L, &a->log); /* the last message came before */
  flume__buf_free(&a->scratch);
  flume__buf_free(&a->batch.data);
  free(a->batch.ends);
  free(a);
  c->live--;
  if (r) flume__lua_req_finish(r, 0, NULL, NULL);
}

/* What deliver hands out: a stretch of appends with one outcome. */
typedef struct deliver_args {
  lappend *a;          /* whose */
  lua_Integer from;    /* the first slot */
  size_t n;            /* how many slots */
  size_t done;         /* slots handed out so far */
  int status;          /* their outcome */
  int64_t first;       /* the first's seq, when status is 0 */
} deliver_args;

/* Calls the stretch's callbacks through the dispatcher, cb(err, seq),
 * each slot emptied before its call. Protected by the caller, which goes
 * on after a slot whose call failed. */
static int deliver(lua_State *L) {
  deliver_args *d = lua_touserdata(L, 1);
  lappend *a = d->a;
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->fifo_ref); /* 2 */
  int stretch = a->ctx->stretch_ref;
  lua_rawgeti(L, LUA_REGISTRYINDEX,
              stretch != LUA_NOREF ? stretch : a->ctx->dispatch_ref); /* 3 */
  if (d->status) /* 4 */
    flume__lua_push_error(L, d->status, append_detail(a->db, d->status));
  else lua_pushnil(L);
  if (stretch != LUA_NOREF) {
    /* The whole stretch in one call: the scheduler runs it in one
     * coroutine while no callback waits. */
    size_t left = d->n - d->done;
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 2);
    lua_pushinteger(L, d->from + (lua_Integer)d->done);
    lua_pushinteger(L, (lua_Integer)left);
    lua_pushvalue(L, 4);
    lua_pushinteger(L, d->status ? -1 : d->first + (int64_t)d->done);
    d->done = d->n; /* one that fails is not called again */
    lua_call(L, 5, 0);
    return 0;
  }
  while (d->done < d->n) {
    lua_Integer k = d->from + (lua_Integer)d->done;
    int64_t seq = d->first + (int64_t)d->done;
    d->done++; /* before the call: one that fails is not called again */
    if (lua_rawgeti(L, 2, k) == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushnil(L);
    lua_rawseti(L, 2, k);
    lua_pushvalue(L, 3);
    lua_insert(L, -2);
    lua_pushvalue(L, 4);
    if (d->status) lua_pushnil(L);
    else lua_pushinteger(L, seq);
    lua_call(L, 3, 0);
  }
  return 0;
}

/* A stretch of a run ended (runtime/db.c): its slots are the oldest. */
static void run_done(void *p, int status, int64_t first, size_t n) {
  lappend *a = p;
  deliver_args d = {a, a->head, n, 0, status, first};
  a->head += (lua_Integer)n;
  if (flume__lua_can_call(a->ctx)) {
    lua_State *L = flume__lua_thread(a->ctx);
    while (d.done < d.n) {
      lua_pushcfunction(L, deliver);
      lua_pushlightuserdata(L, &d);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "flume: dispatcher failed: %s\n",
                lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    }
  }
  /* Emptied: the slots start again at 1, so the table keeps to its array
   * part. */
  if (a->head == a->tail) a->head = a->tail = 1;
}

/* A view's message for on_log: (view or nil, seq or nil, msg). */
typedef struct log_args {
  const char *view; /* NULL: the mapper */
  int64_t seq;      /* -1: none */
  const char *msg;
  size_t len;
} log_args;

static int push_log(lua_State *L, int status, const void *res) {
  const log_args *m = res;
  (void)status;
  if (m->view) lua_pushstring(L, m->view);
  else lua_pushnil(L);
  if (m->seq >= 0) lua_pushinteger(L, m->seq);
  else lua_pushnil(L);
  lua_pushlstring(L, m->msg, m->len);
  return 3;
}

static void log_cb(void *ctx, const char *view, int64_t seq, const char *msg,
                   size_t len) {
  lappend *a = ctx;
  log_args m = {view, seq, msg, len};
  flume__lua_req_notify(&a->log, 0, push_log, &m);
}

/* core.open(path|nil, codec|nil, sync, map_size, readonly, on_log|nil,
 * remote_urls, remote_stream, remote_node, remote_timeout_ms,
 * remote_replicas) -> db */
static int l_open(lua_State *L) {
  lctx *c = flume__lua_ctx(L);
  const char *path = opt_cstring(L, 1, "the path");
  const char *codec = opt_cstring(L, 2, "the codec name");
  if (path && path[0] == '\0')
    return flume__lua_raise(L, FLUME_EINVAL, "the path is empty");
  flume_db_options o;
  flume_db_options_init(&o);
  o.codec = codec;
  o.sync = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
  if (!lua_isnoneornil(L, 4)) {
    lua_Integer m;
    int isint = lua_isinteger(L, 4);
    m = isint ? lua_tointeger(L, 4) : 0;
    if (!isint || m <= 0 || (uint64_t)m > SIZE_MAX / 2)
      return flume__lua_raise(L, FLUME_EINVAL,
                              "map_size must be a positive integer (bytes)");
    o.map_size = (size_t)m;
  }
  o.readonly = lua_toboolean(L, 5);
  if (!lua_isnoneornil(L, 6)) luaL_checktype(L, 6, LUA_TFUNCTION);
  /* A remote log: urls, stream, node, timeout (ms), replicas. */
  o.remote_urls = opt_cstring(L, 7, "remote.urls");
  o.remote_stream = opt_cstring(L, 8, "remote.stream");
  o.remote_node = opt_cstring(L, 9, "remote.node");
  o.remote_timeout_ms = (int64_t)luaL_optinteger(L, 10, 0);
  o.remote_replicas = (int)luaL_optinteger(L, 11, 0);

  ldb *d = lua_newuserdatauv(L, sizeof *d, 0);
  d->db = NULL; /* created closed, so __gc is always safe */
  d->ctx = c;
  d->app = NULL;
  luaL_setmetatable(L, DB_MT);
  lappend *a = app_new(L, c);
  if (a == NULL) return flume__lua_raise(L, FLUME_ENOMEM, NULL);
  if (!lua_isnoneornil(L, 6)) {
    flume__lua_req_hold(L, &a->log, 6, 0);
    o.on_log = log_cb;
    o.on_log_ctx = a;
  }
  char found[64], why[FLUME__ERRMSG_SIZE];
  why[0] = '\0';
  int rc = flume__open(c->loop, path, &o, &d->db, found, why);
  if (rc) {
    luaL_unref(L, LUA_REGISTRYINDEX, a->fifo_ref);
    flume__lua_req_drop(L, &a->log);
    free(a);
    if (rc == FLUME_ECODEC) {
      lua_pushfstring(L, "%s was written with codec '%s', not '%s'", path,
                      found, codec);
      return flume__lua_raise(L, rc, lua_tostring(L, -1));
    }
    if (why[0]) return flume__lua_raise(L, rc, why);
    return flume__lua_raise(L, rc, path ? path : "(memory)");
  }
  a->db = d->db;
  d->app = a;
  c->live++; /* until app_closed */
  return 1;
}

/* Pushes what a flume_remote_info says as a table: { messages, last_seq,
 * bytes, replicas, deny_delete, deny_purge, leader, peers = { { name,
 * current, offline, lag, active_ms } } }, and with `node` this node's
 * { stream, node, stored, lag, since } too. */
static void push_remote_info(lua_State *L, const flume_remote_info *info,
                             int node) {
  lua_createtable(L, 0, node ? 13 : 8);
  if (node) {
    lua_pushstring(L, info->stream);
    lua_setfield(L, -2, "stream");
    lua_pushstring(L, info->node);
    lua_setfield(L, -2, "node");
    lua_pushinteger(L, (lua_Integer)info->stored);
    lua_setfield(L, -2, "stored");
    lua_pushinteger(L, (lua_Integer)info->lag);
    lua_setfield(L, -2, "lag");
    lua_pushinteger(L, (lua_Integer)info->since);
    lua_setfield(L, -2, "since");
  }
  lua_pushinteger(L, (lua_Integer)info->messages);
  lua_setfield(L, -2, "messages");
  lua_pushinteger(L, (lua_Integer)info->last_seq);
  lua_setfield(L, -2, "last_seq");
  lua_pushinteger(L, (lua_Integer)info->bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, info->replicas);
  lua_setfield(L, -2, "replicas");
  lua_pushboolean(L, info->deny_delete);
  lua_setfield(L, -2, "deny_delete");
  lua_pushboolean(L, info->deny_purge);
  lua_setfield(L, -2, "deny_purge");
  lua_pushstring(L, info->leader);
  lua_setfield(L, -2, "leader");
  lua_createtable(L, info->npeers, 0);
  for (int i = 0; i < info->npeers; i++) {
    const flume_remote_peer *p = &info->peers[i];
    lua_createtable(L, 0, 5);
    lua_pushstring(L, p->name);
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, p->current);
    lua_setfield(L, -2, "current");
    lua_pushboolean(L, p->offline);
    lua_setfield(L, -2, "offline");
    lua_pushinteger(L, (lua_Integer)p->lag);
    lua_setfield(L, -2, "lag");
    lua_pushinteger(L, (lua_Integer)p->active_ms);
    lua_setfield(L, -2, "active_ms");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "peers");
}

/* core.remote_stat(urls, stream, timeout_ms, create, replicas, codec) ->
 * { messages, last_seq, bytes, replicas, deny_delete, deny_purge, leader,
 *   peers = { { name, current, offline, lag, active_ms } } }
 * Blocks on the network: for the command line, not for a running loop. */
static int l_remote_stat(lua_State *L) {
  const char *urls = luaL_checkstring(L, 1);
  const char *stream = luaL_checkstring(L, 2);
  int64_t timeout = (int64_t)luaL_optinteger(L, 3, 0);
  int create = lua_toboolean(L, 4);
  int replicas = (int)luaL_optinteger(L, 5, 0);
  const char *codec = luaL_optstring(L, 6, "msgpack");
  flume_remote_info info;
  char why[FLUME__ERRMSG_SIZE];
  int rc = flume__remote_stat(urls, stream, timeout, create, replicas, codec,
                              &info, why);
  if (rc) return flume__lua_raise(L, rc, why[0] ? why : NULL);
  push_remote_info(L, &info, 0);
  return 1;
}

/* db:remote_meta() -> { stream, node, uuid, urls, stored } or nil (a local
 * log) */
static int ldb_remote_meta(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  char stream[64], node[64], uuid[65], urls[512];
  uint64_t seq;
  int rc = flume__remote_meta(d->db, stream, node, uuid, urls, &seq);
  if (rc == FLUME_ENOTFOUND) return 0;
  if (rc) return flume__lua_raise(L, rc, NULL);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, stream);
  lua_setfield(L, -2, "stream");
  lua_pushstring(L, node);
  lua_setfield(L, -2, "node");
  lua_pushstring(L, uuid);
  lua_setfield(L, -2, "uuid");
  lua_pushstring(L, urls);
  lua_setfield(L, -2, "urls");
  lua_pushinteger(L, (lua_Integer)seq);
  lua_setfield(L, -2, "stored");
  return 1;
}

/* A question to the database answered through a callback
 * (db:remote_fresh, db:remote_status). Its context starts with this, so
 * that a failure carries the database's detail. */
typedef struct lquestion {
  lreq *r;      /* the request */
  flume_db *db; /* the database */
} lquestion;

/* Pushes cb's arguments for a question that failed: err, nil. */
static int push_question_error(lua_State *L, int status, flume_db *db) {
  const char *m = status == FLUME_ECLOSED ? "" : flume_db_errmsg(db);
  flume__lua_push_error(L, status, m[0] ? m : NULL);
  lua_pushnil(L);
  return 2;
}

/* A question's context of `size` bytes (an lquestion first, the rest
 * zero) with its request for the callback at index 2. Raises ENOMEM. */
static void *question_new(lua_State *L, ldb *d, size_t size) {
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lquestion *q = calloc(1, size);
  lreq *r = q ? flume__lua_req_new(L, d->ctx, 2) : NULL;
  if (r == NULL) {
    free(q);
    flume__lua_raise(L, FLUME_ENOMEM, NULL);
  }
  q->r = r;
  q->db = d->db;
  return q;
}

/* A question that could not be asked: its context freed, its request
 * dropped, rc raised with `detail`. */
static int question_refused(lua_State *L, void *ctx, int rc,
                            const char *detail) {
  lreq *r = ((lquestion *)ctx)->r;
  free(ctx);
  flume__lua_req_drop(L, r);
  return flume__lua_raise(L, rc, detail);
}

typedef struct lfresh {
  lquestion q;
  int64_t since; /* the answer */
} lfresh;

static int push_fresh(lua_State *L, int status, const void *res) {
  const lfresh *f = res;
  if (status) return push_question_error(L, status, f->q.db);
  lua_pushnil(L);
  lua_pushinteger(L, f->since);
  return 2;
}

static void fresh_done(void *ctx, int status, int64_t since) {
  lfresh f = *(lfresh *)ctx;
  free(ctx);
  f.since = since;
  flume__lua_req_finish(f.q.r, status, push_fresh, &f);
}

/* db:remote_fresh(cb): cb(err, since) once this node holds what the
 * stream held at the call (flume_db_wait_fresh; a local log: its since). */
static int ldb_remote_fresh(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  lfresh *f = question_new(L, d, sizeof *f);
  int rc = flume_db_wait_fresh(d->db, fresh_done, f);
  if (rc) /* a stopped tail's error says why */
    return question_refused(L, f, rc,
                            rc == FLUME_ECORRUPT || rc == FLUME_EIO
                                ? flume_db_errmsg(d->db)
                                : NULL);
  return 0;
}

typedef struct lstatus {
  lquestion q;
  const flume_remote_info *info; /* the answer, during the callback */
} lstatus;

static int push_status(lua_State *L, int status, const void *res) {
  const lstatus *s = res;
  if (status) return push_question_error(L, status, s->q.db);
  lua_pushnil(L);
  push_remote_info(L, s->info, 1);
  return 2;
}

static void status_done(void *ctx, int status, const flume_remote_info *info) {
  lstatus s = *(lstatus *)ctx;
  free(ctx);
  s.info = info;
  flume__lua_req_finish(s.q.r, status, push_status, &s);
}

/* db:remote_status(cb): cb(err, info) with where the stream and this node
 * stand (flume_db_remote_status). */
static int ldb_remote_status(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  lstatus *st = question_new(L, d, sizeof *st);
  int rc = flume_db_remote_status(d->db, status_done, st);
  if (rc)
    return question_refused(L, st, rc,
                            rc == FLUME_EINVAL
                                ? "not a remote log's writer: a local log "
                                  "(its status is db.since) or a read-only "
                                  "handle (see `flume remote status`)"
                                : NULL);
  return 0;
}

/* ---- the one close ------------------------------------------------------- */

/* Closes d, calling the function at cb_idx (0: none) once it is closed.
 * Nothing if d is closed already. */
static int close_db(lua_State *L, ldb *d, int cb_idx) {
  if (d->db == NULL) return 0;
  lreq *r = NULL;
  if (cb_idx && !lua_isnoneornil(L, cb_idx) &&
      (r = flume__lua_req_new(L, d->ctx, cb_idx)) == NULL)
    return flume__lua_raise(L, FLUME_ENOMEM, NULL);
  flume_db *db = d->db;
  lappend *a = d->app;
  d->db = NULL;
  d->app = NULL;
  a->close_req = r;
  flume_db_close(db, app_closed, a);
  return 0;
}

/* db:close([cb]) */
static int ldb_close(lua_State *L) {
  return close_db(L, luaL_checkudata(L, 1, DB_MT), 2);
}

/* __gc and __close: nothing waits for a collected database, nor for one
 * left by its scope (the second argument there is the error, if any). */
static int ldb_gc(lua_State *L) {
  return close_db(L, luaL_checkudata(L, 1, DB_MT), 0);
}

static int ldb_closed(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  lua_pushboolean(L, d->db == NULL);
  return 1;
}

/* db:since(): a read-only handle looks for the writer's commits first. */
static int ldb_since(lua_State *L) {
  flume_db *db = flume__lua_check_db(L, 1)->db;
  flume__db_refresh(db);
  lua_pushinteger(L, flume_db_since(db));
  return 1;
}

static int ldb_codec(lua_State *L) {
  lua_pushstring(L, flume_db_codec(flume__lua_check_db(L, 1)->db));
  return 1;
}

static int ldb_memory(lua_State *L) {
  lua_pushboolean(L, flume_db_is_memory(flume__lua_check_db(L, 1)->db));
  return 1;
}

/* ---- appends ------------------------------------------------------------- */

/* cb(err, nil) or cb(nil, seq of the last value) */
static int push_seq(lua_State *L, int status, const void *res) {
  flume__lua_push_status(L, status, NULL);
  if (status) lua_pushnil(L);
  else lua_pushinteger(L, *(const int64_t *)res);
  return 2;
}

static void append_done(void *p, int status, int64_t seq) {
  flume__lua_req_finish(p, status, push_seq, &seq);
}

/* A batch on a remote log: its failure carries the database's detail. */
typedef struct remote_batch {
  lreq *r;       /* the request */
  flume_db *db;  /* the database */
} remote_batch;

static int push_seq_detail(lua_State *L, int status, const void *res) {
  const remote_batch *b = res;
  flume__lua_push_error(L, status, append_detail(b->db, status));
  lua_pushnil(L);
  return 2;
}

static void remote_batch_done(void *p, int status, int64_t seq) {
  remote_batch b = *(remote_batch *)p;
  free(p);
  if (status) flume__lua_req_finish(b.r, status, push_seq_detail, &b);
  else flume__lua_req_finish(b.r, status, push_seq, &seq);
}

/* Encodes the value at idx with the db's mode: msgpack, or a string as is. */
static int encode_value(lua_State *L, int idx, int mp, flume__buf *b,
                        char *err, size_t errlen) {
  if (mp) return flume__mp_encode(L, idx, b, err, errlen);
  size_t n;
  const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n)
                                                   : NULL;
  if (s == NULL) {
    snprintf(err, errlen, "expected a string, got a %s",
             luaL_typename(L, idx));
    return FLUME_EENCODE;
  }
  return flume__buf_append(b, s, n);
}

/* One value (at index v, its callback or nil at v + 1) appended to open
 * d: encoded into the reused buffer, its callback into the table of those
 * in flight; the runtime adds it to the open run. Raises a bad value. */
static int append_one(lua_State *L, ldb *d, int mp, int v) {
  char err[320] = "";
  lappend *a = d->app;
  luaL_checkany(L, v);
  a->scratch.len = 0;
  int rc = encode_value(L, v, mp, &a->scratch, err, sizeof err);
  int has_cb = rc == 0 && !lua_isnoneornil(L, v + 1);
  if (has_cb) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->fifo_ref);
    lua_pushvalue(L, v + 1);
    lua_rawseti(L, -2, a->tail);
  }
  if (rc == 0 && (rc = flume__db_append_one(d->db, a->scratch.data,
                                            a->scratch.len, run_done, a))) {
    err[0] = '\0';
    if (has_cb) {
      lua_pushnil(L);
      lua_rawseti(L, -2, a->tail);
    }
  }
  if (a->scratch.cap > ((size_t)1 << 20)) flume__buf_free(&a->scratch);
  if (rc)
    return flume__lua_raise(L, rc, err[0] ? err : append_detail(d->db, rc));
  a->tail++;
  return 0;
}

/*
 * db:append(mp, batch, value, cb): with mp, values are encoded as msgpack,
 * otherwise they must be strings (already encoded). With batch, value is a
 * list of values appended all or nothing. Bad values raise; nothing of the
 * batch is appended then.
 */
static int ldb_append(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  int mp = lua_toboolean(L, 2);
  int batch = lua_toboolean(L, 3);
  char err[320] = "";
  size_t n;
  int rc;
  if (batch) {
    /* Encoded in place into the buffers the last batch left (no copy, no
     * allocation once grown), handed to the writer as they are. */
    luaL_checktype(L, 4, LUA_TTABLE);
    n = lua_rawlen(L, 4);
    if (n == 0) return luaL_argerror(L, 4, "an empty batch");
    flume__batch *bt = &d->app->batch;
    if (bt->data.data || bt->ends) flume__db_batch_give(d->db, bt);
    flume__db_batch_take(d->db, bt);
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
      lua_rawgeti(L, 4, (lua_Integer)i + 1);
      rc = encode_value(L, lua_gettop(L), mp, &bt->data, err, sizeof err);
      lua_pop(L, 1);
      if (rc == FLUME_EENCODE) {
        char where[sizeof err];
        int k = snprintf(where, sizeof where, "batch item %zu: ", i + 1);
        snprintf(where + k, sizeof where - (size_t)k, "%.*s",
                 (int)(sizeof where - (size_t)k - 1), err);
        memcpy(err, where, sizeof err);
      }
      if (rc == 0) rc = flume__batch_end_value(bt);
    }
    if (rc == 0) {
      lreq *r = flume__lua_req_new(L, d->ctx, 5);
      /* A remote log's batch fails with its detail (remote_batch). */
      remote_batch *rb = NULL;
      if (r && flume__db_routed(d->db) && (rb = malloc(sizeof *rb)) != NULL)
        *rb = (remote_batch){r, d->db};
      if (r == NULL || (flume__db_routed(d->db) && rb == NULL)) {
        rc = FLUME_ENOMEM;
        if (r) flume__lua_req_drop(L, r);
      } else if ((rc = rb ? flume__db_batch_submit(d->db, bt,
                                                   remote_batch_done, rb)
                          : flume__db_batch_submit(d->db, bt, append_done,
                                                   r))) {
        free(rb);
        flume__lua_req_drop(L, r);
      } else {
        return 0;
      }
      err[0] = '\0';
    }
    flume__db_batch_give(d->db, bt);
    return flume__lua_raise(L, rc, err[0] ? err : append_detail(d->db, rc));
  }
  return append_one(L, d, mp, 4);
}

/* ---- reads of the log ---------------------------------------------------- */

typedef struct read_ctx {
  lua_State *L;   /* where values go */
  int mp;         /* decode msgpack, or push the bytes */
  int keys;       /* the index of the decoder's key cache, or 0 */
  int seqs;       /* stack index of the seqs table; 0: none to fill */
  int vals;       /* stack index of the values table */
  lua_Integer n;  /* values pushed so far */
  int64_t first;  /* the seq of the first */
  char err[256];  /* decode error */
} read_ctx;

static int read_one(void *p, int64_t seq, const void *data, size_t len) {
  read_ctx *r = p;
  lua_State *L = r->L;
  if (r->mp) {
    int rc = flume__mp_decode_keys(L, data, len, r->keys, r->err,
                                   sizeof r->err);
    if (rc) return rc;
  } else {
    lua_pushlstring(L, data, len);
  }
  if (r->n == 0) r->first = seq;
  r->n++;
  lua_rawseti(L, r->vals, r->n);
  if (r->seqs) {
    lua_pushinteger(L, seq);
    lua_rawseti(L, r->seqs, r->n);
  }
  return 0;
}

/* Reads the values from seq `from` towards `to` (at most max, max > 0)
 * into the table at vals (and their seqs into the one at seqs, unless 0),
 * as db:read does; *n values, the first at seq *first. Raises on an
 * error. */
static void read_chunk(lua_State *L, ldb *d, int mp, int seqs, int vals,
                       int64_t from, int64_t to, lua_Integer max,
                       lua_Integer *n, int64_t *first) {
  read_ctx r = {L, mp, 0, seqs, vals, 0, 0, ""};
  size_t count;
  if (mp) { /* the key cache, found once for the chunk, not per value */
    flume__mp_push_keys(L);
    r.keys = lua_gettop(L);
  }
  int rc = flume__db_read(d->db, from, to, (size_t)max, read_one, &r, &count);
  if (rc == FLUME_EDECODE) {
    char detail[300];
    snprintf(detail, sizeof detail, "at seq %lld: %s",
             (long long)(from > to ? from - r.n : from + r.n), r.err);
    flume__lua_raise(L, rc, detail);
  }
  if (rc) flume__lua_raise(L, rc, NULL);
  if (mp) lua_pop(L, 1);
  *n = r.n;
  *first = r.first;
}

/* db:read(mp, from, to, max, seqs, vals) -> n, first: fills seqs[1..n]
 * and vals[1..n] (a value may be nil) from one short read transaction;
 * first is the seq of vals[1] (the log is dense: the others follow it, one
 * apart). seqs false: only vals are filled (a stream needs only first). */
static int ldb_read(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  int mp = lua_toboolean(L, 2);
  int64_t from = luaL_checkinteger(L, 3), to = luaL_checkinteger(L, 4);
  lua_Integer max = luaL_checkinteger(L, 5);
  int seqs = lua_toboolean(L, 6) ? 6 : 0;
  if (seqs) luaL_checktype(L, 6, LUA_TTABLE);
  luaL_checktype(L, 7, LUA_TTABLE);
  if (max <= 0) {
    lua_pushinteger(L, 0);
    return 1;
  }
  lua_settop(L, 7);
  lua_Integer n;
  int64_t first;
  read_chunk(L, d, mp, seqs, 7, from, to, max, &n, &first);
  lua_pushinteger(L, n);
  lua_pushinteger(L, first);
  return 2;
}

/* A plain stream's iterator (db:scan): what the Lua iterator of a stream
 * with neither live, a mapper nor a codec's decode does, in C, so that
 * the for loop calls C, not a Lua function (callgrind: 170 instructions a
 * value). Chunks of SCAN_CHUNK values, each from one short read
 * transaction, as db:read reads them. */
#define SCAN_CHUNK 256

typedef struct scan_it {
  int64_t next;         /* the seq the next chunk starts at */
  int64_t lo, hi;       /* the range, inclusive */
  int64_t seq;          /* the seq of vals[i] */
  lua_Integer remaining; /* values the limit leaves */
  lua_Integer i, n;     /* vals[i] handed out last, of n */
  int reverse, mp, done;
} scan_it;

/* The iterator: upvalues the database, the scan_it, the chunk's values. */
static int scan_next(lua_State *L) {
  scan_it *s = lua_touserdata(L, lua_upvalueindex(2));
  if (s->i < s->n) {
    s->i++;
    s->seq += s->reverse ? -1 : 1;
    lua_pushinteger(L, s->seq);
    lua_rawgeti(L, lua_upvalueindex(3), s->i);
    return 2;
  }
  if (s->done || (s->reverse ? s->next < s->lo : s->next > s->hi)) {
    s->done = 1;
    s->n = 0;
    lua_pushnil(L);
    return 1;
  }
  ldb *d = flume__lua_check_db(L, lua_upvalueindex(1));
  lua_Integer n;
  int64_t first;
  /* A read that raises leaves the iterator as it was: the next call
   * tries the same chunk again, as the Lua iterator did. */
  read_chunk(L, d, s->mp, 0, lua_upvalueindex(3), s->next,
             s->reverse ? s->lo : s->hi,
             s->remaining < SCAN_CHUNK ? s->remaining : SCAN_CHUNK, &n, &first);
  if (n == 0) {
    s->done = 1;
    lua_pushnil(L);
    return 1;
  }
  s->remaining -= n;
  if (s->remaining <= 0) s->done = 1;
  s->next = first + (s->reverse ? -n : n);
  s->n = n;
  s->i = 1;
  s->seq = first;
  lua_pushinteger(L, first);
  lua_rawgeti(L, lua_upvalueindex(3), 1);
  return 2;
}

/* db:scan(mp, lo, hi, limit, reverse) -> iterator of seq, value over the
 * log from lo to hi (lo >= 0), at most limit values, as a plain stream. */
static int ldb_scan(lua_State *L) {
  flume__lua_check_db(L, 1);
  int mp = lua_toboolean(L, 2);
  int64_t lo = luaL_checkinteger(L, 3), hi = luaL_checkinteger(L, 4);
  lua_Integer limit = luaL_checkinteger(L, 5);
  int reverse = lua_toboolean(L, 6);
  lua_settop(L, 1);
  scan_it *s = lua_newuserdatauv(L, sizeof *s, 0);
  *s = (scan_it){reverse ? hi : lo, lo, hi, 0, limit, 0, 0, reverse, mp,
                 limit <= 0 || lo > hi};
  lua_createtable(L, SCAN_CHUNK, 0);
  lua_pushcclosure(L, scan_next, 3);
  return 1;
}

static int get_one(void *p, int64_t seq, const void *data, size_t len) {
  read_ctx *r = p;
  (void)seq;
  if (r->mp)
    return flume__mp_decode_keys(r->L, data, len, r->keys, r->err,
                                 sizeof r->err);
  lua_pushlstring(r->L, data, len);
  return 0;
}

/* Pushes the value at seq of d (mp: decode it as msgpack). keys: the
 * decoder's key cache's index, or 0. */
static int get_value(lua_State *L, ldb *d, int mp, lua_Integer seq,
                     int keys) {
  read_ctx r = {L, mp, keys, 0, 0, 0, 0, ""};
  size_t count = 0;
  int rc = FLUME_ENOTFOUND;
  if (seq >= 0 && seq <= flume_db_since(d->db))
    rc = flume__db_read(d->db, seq, seq, 1, get_one, &r, &count);
  if (rc == 0 && count == 0) rc = FLUME_ENOTFOUND;
  if (rc == FLUME_ENOTFOUND) {
    lua_pushfstring(L, "no value at seq %I (the log's since is %I)", seq,
                    (lua_Integer)flume_db_since(d->db));
    return flume__lua_raise(L, rc, lua_tostring(L, -1));
  }
  if (rc) return flume__lua_raise(L, rc, r.err[0] ? r.err : NULL);
  return 1;
}

/* db:get(mp, seq) -> value; raises ENOTFOUND for a seq not in the log. */
static int ldb_get(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  lua_Integer seq = luaL_checkinteger(L, 3);
  lua_settop(L, 3);
  return get_value(L, d, lua_toboolean(L, 2), seq, 0);
}

/*
 * The get of a database table whose values need no Lua after decoding (no
 * custom codec, no mapper): DB:get's checks and c:get in one C call, so a
 * get pays no method lookup through __index, no check_self, no math.type
 * and no finish_value. Upvalues: the ldb, the database table it is the
 * get of, DB:get (for another database's table passed as self), mp and
 * the decoder's key cache.
 * Misuse raises what DB:get raises, at the same level.
 */
static int fast_get(lua_State *L) {
  if (LIKELY(lua_gettop(L) == 2 && lua_rawequal(L, 1, lua_upvalueindex(2)) &&
             lua_isinteger(L, 2) && lua_tointeger(L, 2) >= 0)) {
    ldb *d = lua_touserdata(L, lua_upvalueindex(1));
    if (d->db == NULL) return flume__lua_raise(L, FLUME_ECLOSED, NULL);
    return get_value(L, d, lua_toboolean(L, lua_upvalueindex(4)),
                     lua_tointeger(L, 2), lua_upvalueindex(5));
  }
  int top = lua_gettop(L);
  int same = lua_getmetatable(L, 1) &&
             lua_getmetatable(L, lua_upvalueindex(2)) &&
             lua_rawequal(L, -1, -2);
  /* luaL_error puts the caller's place first, as error(msg, 2) in DB:get */
  if (!same)
    return luaL_error(L, "bad argument #1 to 'get' (flume.db expected; call "
                         "it as db:get(...))");
  /* Anything else (a seq that is no seq, more arguments, another
   * database's table): DB:get, which checks it as the slow path does. */
  lua_settop(L, top);
  lua_pushvalue(L, lua_upvalueindex(3));
  lua_insert(L, 1);
  lua_call(L, top, 1);
  return 1;
}

/*
 * The append of a msgpack database's table, as c:fast_append makes it
 * (upvalues: the handle, the table, DB:append): db:append(value, cb), the
 * common async call, goes straight to ldb_append; anything else to
 * DB:append, which checks and raises as always. The Lua method's lookup
 * through the table's __index and its checks were as much as the append.
 */
static int fast_append_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L);
}

static int fast_append(lua_State *L) {
  if (LIKELY(lua_gettop(L) == 3 && lua_rawequal(L, 1, lua_upvalueindex(2)) &&
             !lua_isnil(L, 2) && lua_type(L, 3) == LUA_TFUNCTION)) {
    /* The handle was checked when this closure was made (ldb_fast_append):
     * its metatable is not looked up again (luaL_checkudata was some 300
     * instructions of an append's 5,300 on the loop thread). */
    ldb *d = lua_touserdata(L, lua_upvalueindex(1));
    if (d->db == NULL) return flume__lua_raise(L, FLUME_ECLOSED, NULL);
    return append_one(L, d, 1, 2); /* db, value, cb */
  }
  int top = lua_gettop(L);
  int same = top >= 1 && lua_getmetatable(L, 1) &&
             lua_getmetatable(L, lua_upvalueindex(2)) &&
             lua_rawequal(L, -1, -2);
  /* luaL_error puts the caller's place first, as error(msg, 2) does */
  if (!same)
    return luaL_error(L, "bad argument #1 to 'append' (flume.db expected; "
                         "call it as db:append(...))");
  lua_settop(L, top);
  /* (a sync append yields inside a coroutine: hence the continuation) */
  lua_pushvalue(L, lua_upvalueindex(3));
  lua_insert(L, 1);
  lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, fast_append_k);
  return lua_gettop(L);
}

/* c:fast_append(db, append) -> the append of the msgpack database table
 * db (fast_append); append is DB:append. */
static int ldb_fast_append(lua_State *L) {
  flume__lua_check_db(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  lua_pushcclosure(L, fast_append, 3);
  return 1;
}

/* c:fast_get(db, get, mp) -> the get of the database table db (fast_get);
 * get is DB:get, for misuse with another database. */
static int ldb_fast_get(lua_State *L) {
  flume__lua_check_db(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_pushboolean(L, lua_toboolean(L, 4));
  lua_settop(L, 4);
  flume__mp_push_keys(L);
  lua_pushcclosure(L, fast_get, 5);
  return 1;
}

/* db:get_many(mp, seqs, n, vals): vals[i] = the value at seqs[i], for
 * i = 1..n, from one read transaction. */
static int ldb_get_many(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  lua_Integer n = luaL_checkinteger(L, 4);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 5, LUA_TTABLE);
  if (n <= 0) return 0;
  if ((uint64_t)n > lua_rawlen(L, 3)) /* also keeps n * 8 from wrapping */
    return flume__lua_raise(L, FLUME_EINVAL, "n is past the seqs given");
  int64_t *seqs = malloc((size_t)n * sizeof *seqs);
  if (seqs == NULL) return flume__lua_raise(L, FLUME_ENOMEM, NULL);
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, 3, i + 1);
    seqs[i] = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, 5);
  /* no seqs table: the caller has them */
  read_ctx r = {L, lua_toboolean(L, 2), 0, 0, 5, 0, 0, ""};
  int rc = flume__db_read_seqs(d->db, seqs, (size_t)n, read_one, &r);
  free(seqs);
  if (rc) return flume__lua_raise(L, rc, r.err[0] ? r.err : NULL);
  return 0;
}

/* ---- since watches ------------------------------------------------------- */

/* fn(err, since) */
static int push_since(lua_State *L, int status, const void *res) {
  flume__lua_push_status(L, status, NULL);
  lua_pushinteger(L, *(const int64_t *)res);
  return 2;
}

static void since_cb(void *p, int status, int64_t since) {
  lwatch *w = p;
  if (status == 0) {
    flume__lua_req_notify(&w->req, 0, push_since, &since);
    return;
  }
  w->w = NULL; /* the database closed: the watch is gone */
  flume__lua_req_finish(&w->req, status, push_since, &since);
}

/* db:on_since(fn) -> watch; fn(err, since) */
static int ldb_on_since(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lwatch *w = lua_newuserdatauv(L, sizeof *w, 0);
  w->w = NULL;
  flume__lua_req_init(&w->req, d->ctx, NULL);
  luaL_setmetatable(L, WATCH_MT);
  /* The watch stays alive (and its callback reachable) while active: held
   * before the database knows of it. */
  flume__lua_req_hold(L, &w->req, 2, lua_gettop(L));
  int rc = flume_db_on_since(d->db, since_cb, w, &w->w);
  if (rc) {
    flume__lua_req_drop(L, &w->req);
    return flume__lua_raise(L, rc, NULL);
  }
  return 1;
}

static int lwatch_stop(lua_State *L) {
  lwatch *w = luaL_checkudata(L, 1, WATCH_MT);
  if (w->w) {
    flume_watch_stop(w->w);
    w->w = NULL;
  }
  flume__lua_req_drop(L, &w->req);
  return 0;
}

#ifdef FLUME_TEST_HOOKS
/* db:ahead_taken() -> reads of the indexer that took values read ahead,
 * in this process so far */
static int ldb_ahead_taken(lua_State *L) {
  lua_pushinteger(L, flume__test_ahead_taken());
  return 1;
}

static int ldb_fail_commits(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  static const char *const names[] = {"EIO", "ENOSPC", NULL};
  static const int codes[] = {FLUME_EIO, FLUME_ENOSPC};
  int which = luaL_checkoption(L, 2, "EIO", names);
  flume__test_fail_commits(d->db, codes[which], (int)luaL_optinteger(L, 3, 1));
  return 0;
}

#ifdef FLUME_REMOTE
/* db:remote_withhold(nth) -> times the tail subscribed again */
static int ldb_remote_withhold(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  lua_pushinteger(L, flume__test_remote_withhold(
                         d->db, (int)luaL_checkinteger(L, 2)));
  return 1;
}
#endif
#endif

static const luaL_Reg db_methods[] = {
    {"append", ldb_append},   {"get", ldb_get},
    {"fast_append", ldb_fast_append},
    {"get_many", ldb_get_many}, {"fast_get", ldb_fast_get},
    {"read", ldb_read},       {"scan", ldb_scan},
    {"since", ldb_since},
    {"codec", ldb_codec},     {"memory", ldb_memory},
    {"on_since", ldb_on_since}, {"close", ldb_close},
    {"closed", ldb_closed},   {"remote_meta", ldb_remote_meta},
    {"remote_fresh", ldb_remote_fresh},
    {"remote_status", ldb_remote_status},
#ifdef FLUME_TEST_HOOKS
    {"fail_commits", ldb_fail_commits},
    {"ahead_taken", ldb_ahead_taken},
#ifdef FLUME_REMOTE
    {"remote_withhold", ldb_remote_withhold},
#endif
#endif
    {NULL, NULL}};

static const luaL_Reg db_metamethods[] = {
    {"__gc", ldb_gc}, {"__close", ldb_gc}, {NULL, NULL}};

void flume__lua_db_register(lua_State *L, int module, int methods) {
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, db_methods, 0);
  lua_pop(L, 1);

  luaL_newmetatable(L, DB_MT);
  luaL_setfuncs(L, db_metamethods, 0);
  lua_pushvalue(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newmetatable(L, WATCH_MT);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lwatch_stop);
  lua_setfield(L, -2, "stop");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_pushcfunction(L, l_open);
  lua_setfield(L, module, "open");
  lua_pushcfunction(L, l_remote_stat);
  lua_setfield(L, module, "remote_stat");
}
