/*
 * flume.core: the thin C binding under `require "flume"`.
 *
 * It exposes the runtime's asynchronous operations and the loop; the sync
 * forms, coroutines and options sugar live in views-lua/flume/init.lua.
 *
 * Per lua_State there is one context (a userdata anchored in the registry,
 * so it is collected only by lua_close): the uv loop and the function that
 * dispatches callbacks into coroutines. Callbacks run on the Lua thread that
 * is running the loop.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "internal.h"
#include "msgpack.h"

#include "lua/binding.h"

typedef struct lwatch {
  flume_watch *w;    /* NULL once stopped or closed */
  lreq req;          /* the Lua observer */
  int self_ref;      /* keeps this userdata alive while it observes */
} lwatch;

typedef struct ltimer {
  uv_timer_t t;      /* the timer; freed by its close callback */
  lreq req;          /* the Lua callback */
  struct ltimer **box; /* the cancel function's pointer to us */
  int box_ref;       /* keeps the box alive until we are done */
} ltimer;

lctx *flume__lua_ctx(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  lctx *c = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return c;
}

/* Raises `flume: ENAME: message[: detail]`. */
int flume__lua_raise(lua_State *L, int err, const char *detail) {
  /* No position prefix: messages start with "flume:" wherever raised. */
  char store[512]; /* what the store found damaged, and where */
  if ((err == FLUME_ECORRUPT || err == FLUME_EFORMAT) &&
      flume__store_detail(store, sizeof store))
    detail = store;
  if (detail)
    lua_pushfstring(L, "flume: %s: %s: %s", flume_err_name(err),
                    flume_strerror(err), detail);
  else
    lua_pushfstring(L, "flume: %s: %s", flume_err_name(err),
                    flume_strerror(err));
  return lua_error(L);
}

void flume__lua_push_err(lua_State *L, int err) {
  char store[512]; /* what the store found damaged, and where */
  if ((err == FLUME_ECORRUPT || err == FLUME_EFORMAT) &&
      flume__store_detail(store, sizeof store))
    lua_pushfstring(L, "flume: %s: %s: %s", flume_err_name(err),
                    flume_strerror(err), store);
  else
    lua_pushfstring(L, "flume: %s: %s", flume_err_name(err),
                    flume_strerror(err));
}

ldb *flume__lua_check_db(lua_State *L, int idx) {
  ldb *d = luaL_checkudata(L, idx, DB_MT);
  if (d->db == NULL) flume__lua_raise(L, FLUME_ECLOSED, NULL);
  return d;
}

lreq *flume__lua_new_req(lua_State *L, lctx *c, int idx) {
  lreq *r = malloc(sizeof *r);
  if (r == NULL) flume__lua_raise(L, FLUME_ENOMEM, NULL);
  r->ctx = c;
  r->cb_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, idx)) {
    lua_pushvalue(L, idx);
    r->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return r;
}

/*
 * Calls the Lua callback of `r` through the dispatcher with the values the
 * caller pushed (nargs of them, on c->L). Pops them. With `once`, the
 * callback's reference is released.
 */
void flume__lua_dispatch(lreq *r, int nargs, int once) {
  lctx *c = r->ctx;
  lua_State *L = c->L;
  if (r->cb_ref == LUA_NOREF) {
    lua_pop(L, nargs);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->dispatch_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->cb_ref);
  lua_rotate(L, -2 - nargs, 2);
  if (once) {
    luaL_unref(L, LUA_REGISTRYINDEX, r->cb_ref);
    r->cb_ref = LUA_NOREF;
  }
  /* The dispatcher catches errors of callbacks itself; one of its own is a
   * bug worth seeing rather than a silent loss. */
  if (lua_pcall(L, nargs + 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "flume: dispatcher failed: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* Whether Lua may be called now: the loop is being run from Lua. */
int flume__lua_can_call(lctx *c) { return !c->closing && c->L != NULL; }

void flume__lua_release(lreq *r) {
  lctx *c = r->ctx;
  if (r->cb_ref != LUA_NOREF && !c->closing && c->L)
    luaL_unref(c->L, LUA_REGISTRYINDEX, r->cb_ref);
  r->cb_ref = LUA_NOREF;
}

/* ---- the context and the loop ------------------------------------------ */

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int ctx_gc(lua_State *L) {
  lctx *c = lua_touserdata(L, 1);
  c->closing = 1;
  c->L = NULL;
  /* Databases closed by their own __gc finish closing here. */
  uv_run(&c->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&c->loop) == UV_EBUSY) {
    uv_walk(&c->loop, walk_close, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
  }
  return 0;
}

/* core.run(mode): mode "default" | "once" | "nowait". Returns true while
 * the loop still has work. */
static int l_run(lua_State *L) {
  static const char *const modes[] = {"default", "once", "nowait", NULL};
  static const uv_run_mode umodes[] = {UV_RUN_DEFAULT, UV_RUN_ONCE,
                                       UV_RUN_NOWAIT};
  lctx *c = flume__lua_ctx(L);
  int mode = luaL_checkoption(L, 1, "default", modes);
  if (c->L != NULL)
    return luaL_error(L, "flume: cannot run the loop from inside a callback "
                         "(use the async form, or call this inside "
                         "flume.spawn)");
  c->L = L;
  int more = uv_run(&c->loop, umodes[mode]);
  c->L = NULL;
  lua_pushboolean(L, more);
  return 1;
}

static int l_running(lua_State *L) {
  lua_pushboolean(L, flume__lua_ctx(L)->L != NULL);
  return 1;
}

static int l_stop(lua_State *L) {
  uv_stop(&flume__lua_ctx(L)->loop);
  return 0;
}

static int l_set_dispatch(lua_State *L) {
  lctx *c = flume__lua_ctx(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  if (c->dispatch_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, c->dispatch_ref);
  c->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* ---- codec ------------------------------------------------------------- */

static int l_encode(lua_State *L) {
  char err[256];
  flume__buf b = FLUME__BUF_INIT;
  luaL_checkany(L, 1);
  int rc = flume__mp_encode(L, 1, &b, err, sizeof err);
  if (rc) {
    flume__buf_free(&b);
    return flume__lua_raise(L, rc, err);
  }
  lua_pushlstring(L, b.data, b.len);
  flume__buf_free(&b);
  return 1;
}

/* core.decode(bytes [, mark]): mark gives empty arrays core.array_mt. */
static int l_decode(lua_State *L) {
  char err[256];
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int mark = lua_toboolean(L, 2);
  lua_settop(L, 1);
  int rc = mark ? flume__mp_decode_marked(L, s, n, err, sizeof err)
                : flume__mp_decode(L, s, n, err, sizeof err);
  if (rc) return flume__lua_raise(L, rc, err);
  return 1;
}

/* ---- databases --------------------------------------------------------- */

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

/* core.open(path|nil, codec|nil, sync, map_size) -> db */
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

  ldb *d = lua_newuserdatauv(L, sizeof *d, 0);
  d->db = NULL; /* created closed, so __gc is always safe */
  d->ctx = c;
  luaL_setmetatable(L, DB_MT);
  char found[64];
  int rc = flume__db_open(&c->loop, path, &o, &d->db, found);
  if (rc == FLUME_ECODEC) {
    lua_pushfstring(L, "%s was written with codec '%s', not '%s'", path,
                    found, codec);
    return flume__lua_raise(L, rc, lua_tostring(L, -1));
  }
  if (rc) return flume__lua_raise(L, rc, path ? path : "(memory)");
  return 1;
}

static void db_closed(void *p) {
  lreq *r = p;
  lctx *c = r->ctx;
  if (flume__lua_can_call(c)) flume__lua_dispatch(r, 0, 1);
  else flume__lua_release(r);
  free(r);
}

static int ldb_close(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  if (d->db == NULL) return 0;
  lreq *r = flume__lua_new_req(L, d->ctx, 2);
  flume_db *db = d->db;
  d->db = NULL;
  flume_db_close(db, db_closed, r);
  return 0;
}

static int ldb_gc(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  if (d->db) {
    /* No Lua callback: nothing waits for a collected database. */
    lreq *r = malloc(sizeof *r);
    if (r == NULL) {
      flume_db_close(d->db, NULL, NULL);
    } else {
      r->ctx = d->ctx;
      r->cb_ref = LUA_NOREF;
      flume_db_close(d->db, db_closed, r);
    }
    d->db = NULL;
  }
  return 0;
}

static int ldb_closed(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  lua_pushboolean(L, d->db == NULL);
  return 1;
}

static int ldb_since(lua_State *L) {
  lua_pushinteger(L, flume_db_since(flume__lua_check_db(L, 1)->db));
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

static void append_done(void *p, int status, int64_t seq) {
  lreq *r = p;
  lctx *c = r->ctx;
  if (flume__lua_can_call(c) && r->cb_ref != LUA_NOREF) {
    lua_State *L = c->L;
    if (status) {
      flume__lua_push_err(L, status);
      lua_pushnil(L);
    } else {
      lua_pushnil(L);
      lua_pushinteger(L, seq);
    }
    flume__lua_dispatch(r, 2, 1);
  } else {
    flume__lua_release(r);
  }
  free(r);
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
  flume__buf b = FLUME__BUF_INIT;
  flume_buf one, *vals = &one;
  size_t n = 1;
  int rc;
  if (batch) {
    luaL_checktype(L, 4, LUA_TTABLE);
    n = lua_rawlen(L, 4);
    if (n == 0) return luaL_argerror(L, 4, "an empty batch");
    size_t *ends = malloc(n * sizeof *ends);
    vals = malloc(n * sizeof *vals);
    if (ends == NULL || vals == NULL) {
      free(ends);
      free(vals);
      return flume__lua_raise(L, FLUME_ENOMEM, NULL);
    }
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
      lua_rawgeti(L, 4, (lua_Integer)i + 1);
      rc = encode_value(L, lua_gettop(L), mp, &b, err, sizeof err);
      lua_pop(L, 1);
      if (rc == FLUME_EENCODE) {
        char where[sizeof err];
        int k = snprintf(where, sizeof where, "batch item %zu: ", i + 1);
        snprintf(where + k, sizeof where - (size_t)k, "%.*s",
                 (int)(sizeof where - (size_t)k - 1), err);
        memcpy(err, where, sizeof err);
      }
      ends[i] = b.len;
    }
    if (rc == 0) {
      for (size_t i = 0; i < n; i++) {
        size_t start = i ? ends[i - 1] : 0;
        vals[i] = (flume_buf){b.data + start, ends[i] - start};
      }
    }
    free(ends);
  } else {
    luaL_checkany(L, 4);
    rc = encode_value(L, 4, mp, &b, err, sizeof err);
    one = (flume_buf){b.data, b.len};
  }
  if (rc == 0) {
    lreq *r = malloc(sizeof *r);
    if (r == NULL) {
      rc = FLUME_ENOMEM;
    } else {
      r->ctx = d->ctx;
      r->cb_ref = LUA_NOREF;
      rc = flume_db_append(d->db, vals, n, append_done, r);
      if (rc) free(r);
      else if (!lua_isnoneornil(L, 5)) {
        lua_pushvalue(L, 5);
        r->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      }
    }
    err[0] = '\0';
  }
  if (vals != &one) free(vals);
  flume__buf_free(&b);
  if (rc) return flume__lua_raise(L, rc, err[0] ? err : NULL);
  return 0;
}

typedef struct read_ctx {
  lua_State *L;   /* where values go */
  int mp;         /* decode msgpack, or push the bytes */
  int seqs;       /* stack index of the seqs table */
  int vals;       /* stack index of the values table */
  lua_Integer n;  /* values pushed so far */
  char err[256];  /* decode error */
} read_ctx;

static int read_one(void *p, int64_t seq, const void *data, size_t len) {
  read_ctx *r = p;
  lua_State *L = r->L;
  if (r->mp) {
    int rc = flume__mp_decode(L, data, len, r->err, sizeof r->err);
    if (rc) return rc;
  } else {
    lua_pushlstring(L, data, len);
  }
  r->n++;
  lua_rawseti(L, r->vals, r->n);
  lua_pushinteger(L, seq);
  lua_rawseti(L, r->seqs, r->n);
  return 0;
}

/* db:read(mp, from, to, max, seqs, vals) -> n: fills seqs[1..n] and
 * vals[1..n] (a value may be nil) from one short read transaction. */
static int ldb_read(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  read_ctx r = {L, lua_toboolean(L, 2), 6, 7, 0, ""};
  int64_t from = luaL_checkinteger(L, 3), to = luaL_checkinteger(L, 4);
  lua_Integer max = luaL_checkinteger(L, 5);
  luaL_checktype(L, 6, LUA_TTABLE);
  luaL_checktype(L, 7, LUA_TTABLE);
  size_t count;
  if (max <= 0) {
    lua_pushinteger(L, 0);
    return 1;
  }
  lua_settop(L, 7);
  int rc = flume__db_read(d->db, from, to, (size_t)max, read_one, &r, &count);
  if (rc == FLUME_EDECODE) {
    char detail[300];
    snprintf(detail, sizeof detail, "at seq %lld: %s",
             (long long)(from > to ? from - r.n : from + r.n), r.err);
    return flume__lua_raise(L, rc, detail);
  }
  if (rc) return flume__lua_raise(L, rc, NULL);
  lua_pushinteger(L, r.n);
  return 1;
}

static int get_one(void *p, int64_t seq, const void *data, size_t len) {
  read_ctx *r = p;
  (void)seq;
  if (r->mp) return flume__mp_decode(r->L, data, len, r->err, sizeof r->err);
  lua_pushlstring(r->L, data, len);
  return 0;
}

/* db:get(mp, seq) -> value; raises ENOTFOUND for a seq not in the log. */
static int ldb_get(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  read_ctx r = {L, lua_toboolean(L, 2), 0, 0, 0, ""};
  lua_Integer seq = luaL_checkinteger(L, 3);
  size_t count = 0;
  int rc = FLUME_ENOTFOUND;
  lua_settop(L, 3);
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
  lua_newtable(L); /* seqs again: read_one fills both */
  read_ctx r = {L, lua_toboolean(L, 2), 6, 5, 0, ""};
  int rc = flume__db_read_seqs(d->db, seqs, (size_t)n, read_one, &r);
  free(seqs);
  if (rc) return flume__lua_raise(L, rc, r.err[0] ? r.err : NULL);
  return 0;
}

static void since_cb(void *p, int status, int64_t since) {
  lwatch *w = p;
  lctx *c = w->req.ctx;
  if (status) w->w = NULL; /* the database closed: the watch is gone */
  if (!flume__lua_can_call(c)) return;
  if (status) flume__lua_push_err(c->L, status);
  else lua_pushnil(c->L);
  lua_pushinteger(c->L, since);
  flume__lua_dispatch(&w->req, 2, status != 0);
  if (status && w->self_ref != LUA_NOREF) {
    luaL_unref(c->L, LUA_REGISTRYINDEX, w->self_ref);
    w->self_ref = LUA_NOREF;
  }
}

/* db:on_since(fn) -> watch; fn(err, since) */
static int ldb_on_since(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lwatch *w = lua_newuserdatauv(L, sizeof *w, 1);
  w->w = NULL;
  w->req.ctx = d->ctx;
  w->req.cb_ref = LUA_NOREF;
  w->self_ref = LUA_NOREF;
  luaL_setmetatable(L, WATCH_MT);
  int rc = flume_db_on_since(d->db, since_cb, w, &w->w);
  if (rc) return flume__lua_raise(L, rc, NULL);
  lua_pushvalue(L, 2);
  w->req.cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The watch stays alive (and its callback reachable) while active. */
  lua_pushvalue(L, -1);
  w->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int lwatch_stop(lua_State *L) {
  lwatch *w = luaL_checkudata(L, 1, WATCH_MT);
  if (w->w) {
    flume_watch_stop(w->w);
    w->w = NULL;
  }
  flume__lua_release(&w->req);
  if (w->self_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, w->self_ref);
    w->self_ref = LUA_NOREF;
  }
  return 0;
}

#ifdef FLUME_TEST_HOOKS
static int ldb_fail_commits(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  static const char *const names[] = {"EIO", "ENOSPC", NULL};
  static const int codes[] = {FLUME_EIO, FLUME_ENOSPC};
  int which = luaL_checkoption(L, 2, "EIO", names);
  flume__test_fail_commits(d->db, codes[which], (int)luaL_optinteger(L, 3, 1));
  return 0;
}
#endif

/* ---- timers ------------------------------------------------------------ */

static void timer_closed(uv_handle_t *h) { free(h->data); }

/* Ends the timer: the cancel function forgets it, its handle closes. */
static void timer_end(ltimer *lt) {
  lctx *c = lt->req.ctx;
  *lt->box = NULL;
  if (flume__lua_can_call(c)) luaL_unref(c->L, LUA_REGISTRYINDEX, lt->box_ref);
  uv_close((uv_handle_t *)&lt->t, timer_closed);
}

static void timer_fire(uv_timer_t *t) {
  ltimer *lt = t->data;
  lreq req = lt->req;
  timer_end(lt);
  if (flume__lua_can_call(req.ctx)) flume__lua_dispatch(&req, 0, 1);
}

static int l_timer_cancel(lua_State *L) {
  ltimer **box = lua_touserdata(L, lua_upvalueindex(1));
  ltimer *lt = *box;
  if (lt) {
    flume__lua_release(&lt->req);
    timer_end(lt);
  }
  return 0;
}

/* core.timer(seconds, fn) -> cancel function */
static int l_timer(lua_State *L) {
  lctx *c = flume__lua_ctx(L);
  lua_Number secs = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!(secs >= 0)) /* negative or NaN */
    return flume__lua_raise(L, FLUME_EINVAL,
                            "seconds must be >= 0 (math.huge: forever)");
  ltimer **box = lua_newuserdatauv(L, sizeof *box, 0);
  ltimer *lt = calloc(1, sizeof *lt);
  if (lt == NULL) return flume__lua_raise(L, FLUME_ENOMEM, NULL);
  *box = lt;
  lt->box = box;
  lua_pushvalue(L, -1);
  lt->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lt->req.ctx = c;
  lua_pushvalue(L, 2);
  lt->req.cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(&c->loop, &lt->t);
  lt->t.data = lt;
  /* Past 2^63 ms (math.huge too) is forever: libuv clamps UINT64_MAX to
   * the end of time instead of wrapping, and the cast stays defined. */
  double msd = secs * 1000.0 + 0.5;
  uint64_t ms = msd >= 9223372036854775808.0 ? UINT64_MAX : (uint64_t)msd;
  uv_timer_start(&lt->t, timer_fire, ms, 0);
  lua_pushcclosure(L, l_timer_cancel, 1);
  return 1;
}

static int l_hrtime(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

static const luaL_Reg db_methods[] = {
    {"append", ldb_append},   {"get", ldb_get},
    {"get_many", ldb_get_many},
    {"read", ldb_read},       {"since", ldb_since},
    {"codec", ldb_codec},     {"memory", ldb_memory},
    {"on_since", ldb_on_since}, {"close", ldb_close},
    {"closed", ldb_closed},
#ifdef FLUME_TEST_HOOKS
    {"fail_commits", ldb_fail_commits},
#endif
    {NULL, NULL}};

static const luaL_Reg core_funcs[] = {
    {"open", l_open},     {"run", l_run},           {"running", l_running},
    {"stop", l_stop},     {"set_dispatch", l_set_dispatch},
    {"encode", l_encode}, {"decode", l_decode},     {"timer", l_timer},
    {"hrtime", l_hrtime}, {"key_encode", flume__lua_key_encode},
    {NULL, NULL}};

__attribute__((visibility("default"))) int luaopen_flume_core(lua_State *L);

__attribute__((visibility("default"))) int luaopen_flume_core(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  if (lua_isnil(L, -1)) {
    lctx *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->dispatch_ref = LUA_NOREF;
    int rc = uv_loop_init(&c->loop);
    if (rc) return flume__lua_raise(L, rc, "cannot create the event loop");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  }
  lua_pop(L, 1);

  luaL_newmetatable(L, DB_MT);
  luaL_newlib(L, db_methods);
  flume__lua_views_register(L);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ldb_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  luaL_newmetatable(L, WATCH_MT);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lwatch_stop);
  lua_setfield(L, -2, "stop");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newlib(L, core_funcs);
  flume__lua_errors_register(L);
  lua_pushstring(L, flume_version());
  lua_setfield(L, -2, "version");
  /* The mark of an empty array (see msgpack.h): one per Lua state. */
  if (luaL_newmetatable(L, FLUME__MP_ARRAY_MT)) {
    lua_pushliteral(L, "flume.array");
    lua_setfield(L, -2, "__name");
  }
  lua_setfield(L, -2, "array_mt");
#ifdef FLUME_TEST_HOOKS
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "test_hooks");
#endif
  return 1;
}
