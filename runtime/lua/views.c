/*
 * flume.core's view methods, a database's methods like db.c's: use, info,
 * gated waits (requests, req.c), reads through the view engine's one read
 * path (views/read.h; keys through codec.c, accumulators and states into
 * the caller's state), and calls of a view's own methods, which run in the
 * view host with arguments and results copied through msgpack.
 */
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "lua/binding.h"
#include "msgpack.h"
#include "views/read.h"
#include "views/views.h"

static const char *const kind_names[] = {"", "reduce", "group", "index",
                                         "c"};

static flume_view *check_view(lua_State *L, ldb *d, int idx) {
  const char *name = luaL_checkstring(L, idx);
  flume_view *v = flume__view_find(d->db, name);
  if (v == NULL) {
    lua_pushfstring(L, "no view named '%s'", name);
    flume__lua_raise(L, FLUME_ENOTFOUND, lua_tostring(L, -1));
  }
  return v;
}

static void use_done(void *ctx, int status, flume_view *v) {
  (void)v;
  flume__lua_req_finish(ctx, status, flume__lua_push_status, NULL);
}

/* db:use(name, source|nil, chunkname, table|nil, cb, kept|nil,
 * kept_chunk|nil): kept is, for a table, the text of the chunk its
 * functions were written in (the catalogue keeps it). */
static int ldb_use(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  const char *name = luaL_checkstring(L, 2);
  flume__view_def def = {0};
  def.src = luaL_optlstring(L, 3, NULL, &def.len);
  def.chunk = luaL_optstring(L, 4, "=view");
  if (def.src == NULL) luaL_checktype(L, 5, LUA_TTABLE);
  def.L = L;
  def.idx = 5;
  def.kept = luaL_optlstring(L, 7, NULL, &def.kept_len);
  def.kept_chunk = luaL_optstring(L, 8, NULL);
  char err[512] = "";
  lreq *r = flume__lua_req_new(L, d->ctx, 6);
  if (r == NULL) return flume__lua_raise(L, FLUME_ENOMEM, NULL);
  int rc = flume__views_use(d->db, name, &def, use_done, r, err, sizeof err);
  if (rc) {
    flume__lua_req_drop(L, r);
    return flume__lua_raise(L, rc, err[0] ? err : NULL);
  }
  return 0;
}

/* db:mount(name, cb): the view as the database stores it. */
static int ldb_mount(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  const char *name = luaL_checkstring(L, 2);
  char err[1024] = "";
  lreq *r = flume__lua_req_new(L, d->ctx, 3);
  if (r == NULL) return flume__lua_raise(L, FLUME_ENOMEM, NULL);
  int rc = flume__views_mount(d->db, name, use_done, r, err, sizeof err);
  if (rc) {
    flume__lua_req_drop(L, r);
    return flume__lua_raise(L, rc, err[0] ? err : NULL);
  }
  return 0;
}

static void drop_done(void *ctx, int status) {
  flume__lua_req_finish(ctx, status, flume__lua_push_status, NULL);
}

/* db:drop(name, cb) */
static int ldb_drop(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  const char *name = luaL_checkstring(L, 2);
  char err[512] = "";
  lreq *r = flume__lua_req_new(L, d->ctx, 3);
  if (r == NULL) return flume__lua_raise(L, FLUME_ENOMEM, NULL);
  int rc = flume__views_drop(d->db, name, drop_done, r, err, sizeof err);
  if (rc) {
    flume__lua_req_drop(L, r);
    return flume__lua_raise(L, rc, err[0] ? err : NULL);
  }
  return 0;
}

static void set_str(lua_State *L, const char *k, const char *s, size_t n) {
  lua_pushlstring(L, s, n);
  lua_setfield(L, -2, k);
}

static int catalogue_one(void *ctx, const flume__catalogue_entry *e) {
  lua_State *L = ctx;
  char hex[17];
  lua_createtable(L, 0, 10);
  lua_pushstring(L, e->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, flume__record_kind_name(e->record.kind));
  lua_setfield(L, -2, "kind");
  lua_pushinteger(L, e->record.version);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, e->record.since);
  lua_setfield(L, -2, "since");
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)e->record.hash);
  lua_pushstring(L, hex);
  lua_setfield(L, -2, "hash");
  lua_pushboolean(L, e->attached);
  lua_setfield(L, -2, "attached");
  lua_pushboolean(L, e->mounted);
  lua_setfield(L, -2, "mounted");
  if (e->has_script) {
    set_str(L, "script", e->script.source, e->script.source_len);
    set_str(L, "chunkname", e->script.chunk, e->script.chunk_len);
    lua_pushstring(L, e->script.origin ? "table" : "script");
    lua_setfield(L, -2, "origin");
    lua_pushinteger(L, e->script.version);
    lua_setfield(L, -2, "script_version");
  }
  if (e->error) set_str(L, "error", e->error, e->error_len);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* db:catalogue() -> the views the database has, by name: { {name, kind,
 * version, since, hash, attached, mounted, script, chunkname, origin,
 * script_version}, ... } */
static int ldb_catalogue(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  lua_newtable(L);
  int rc = flume__views_list(d->db, catalogue_one, L);
  if (rc) return flume__lua_raise(L, rc, NULL);
  return 1;
}

static int ldb_set_mapper(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  char err[512] = "";
  int rc = flume__views_set_mapper(d->db, L, 2, err, sizeof err);
  if (rc) return flume__lua_raise(L, rc, err);
  return 0;
}

/* db:view_info(name) -> table, or nil when there is no such view. */
static int ldb_view_info(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  flume_view *v = flume__view_find(d->db, luaL_checkstring(L, 2));
  if (v == NULL) return 0;
  flume__view_info_t in;
  flume__view_info(v, &in);
  lua_createtable(L, 0, 12);
  lua_pushstring(L, kind_names[in.kind]);
  lua_setfield(L, -2, "kind");
  lua_pushinteger(L, in.version);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, in.since);
  lua_setfield(L, -2, "since");
  lua_pushinteger(L, in.processed);
  lua_setfield(L, -2, "processed");
  lua_pushinteger(L, flume_db_since(d->db));
  lua_setfield(L, -2, "log_since");
  lua_pushboolean(L, in.failed);
  lua_setfield(L, -2, "failed");
  if (in.error) {
    lua_pushfstring(L, "flume: EVIEW: %s", in.error);
    lua_setfield(L, -2, "error");
    lua_pushinteger(L, in.error_seq);
    lua_setfield(L, -2, "error_seq");
  }
  lua_pushboolean(L, in.script_changed);
  lua_setfield(L, -2, "script_changed");
  lua_pushnumber(L, in.rate);
  lua_setfield(L, -2, "rate");
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)in.hash);
  lua_pushstring(L, hex);
  lua_setfield(L, -2, "hash");
  lua_pushboolean(L, in.ready);
  lua_setfield(L, -2, "ready");
  if (in.note) {
    lua_pushstring(L, in.note);
    lua_setfield(L, -2, "note");
  }
  return 1;
}

static void wait_done(void *ctx, int status) {
  flume__lua_req_finish(ctx, status, flume__lua_push_status, NULL);
}

/* db:view_wait(name, target, timeout, cb) -> true when there is no need to
 * wait; else false, and cb(err) once the view reaches target. Raises the
 * view's error if it has failed. */
static int ldb_view_wait(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  flume_view *v = check_view(L, d, 2);
  int64_t target = luaL_checkinteger(L, 3);
  double timeout = luaL_optnumber(L, 4, -1);
  luaL_checktype(L, 5, LUA_TFUNCTION);
  /* No timeout: nil or math.huge (or past what a uint64_t of ms holds). */
  if (lua_isnoneornil(L, 4) || timeout >= 9e15) timeout = -1;
  else if (!(timeout >= 0))
    return flume__lua_raise(L, FLUME_EINVAL,
                            "timeout must be a number of seconds >= 0");
  lreq *r = flume__lua_req_new(L, d->ctx, 5);
  if (r == NULL) return flume__lua_raise(L, FLUME_ENOMEM, NULL);
  int rc = flume__view_wait(v, target, timeout, 0, wait_done, r);
  if (rc) flume__lua_req_drop(L, r); /* reached, or failed: no callback */
  if (rc == FLUME_EVIEW) {
    flume__view_info_t in;
    flume__view_info(v, &in);
    lua_pushfstring(L, "flume: EVIEW: %s", in.error ? in.error : in.note);
    return lua_error(L);
  }
  if (rc == FLUME_ENOWRITER) {
    flume__view_info_t in;
    flume__view_info(v, &in);
    return flume__lua_raise(L, rc, in.note);
  }
  if (rc < 0) return flume__lua_raise(L, rc, NULL);
  lua_pushboolean(L, rc == FLUME__WAIT_REACHED);
  return 1;
}

/* db:view_get(name, key) -> a reduce view's state; a group view's
 * accumulator for key (nil if none); an index view's list of seqs. */
static int ldb_view_get(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  flume_view *v = check_view(L, d, 2);
  flume__view_info_t in;
  flume__view_info(v, &in);
  char err[512] = "";
  int rc;
  if (in.kind == FLUME__VIEW_REDUCE) {
    if ((rc = flume__view_push_state(v, L, err, sizeof err)))
      return flume__lua_raise(L, rc, err);
    return 1;
  }
  luaL_checkany(L, 3);
  flume__buf key = FLUME__BUF_INIT;
  flume__lua_check_key(L, 3, &key);
  lua_newtable(L);
  flume__collect_ctx c = {L, 0, lua_gettop(L), 0, ""};
  size_t count;
  rc = flume__view_get(v, key.data, key.len, flume__view_collect, &c, &count,
                       err, sizeof err);
  flume__buf_free(&key);
  if (rc) return flume__lua_raise(L, rc, c.err[0] ? c.err : err);
  if (in.kind == FLUME__VIEW_GROUP) {
    if (count == 0) lua_pushnil(L);
    else lua_rawgeti(L, -1, 1);
  }
  return 1;
}

/* db:view_read(name, lo, lo_incl, hi, hi_incl, reverse, max, resume,
 *              keys, vals, since) -> n, resume, done, since
 * Fills keys[1..n] and vals[1..n] (seqs of an index view, accumulators of a
 * group view) with the next entries of the range after `resume` (a string
 * from the previous call, or nil to start). `since`: nil on a read's first
 * call, then what it returned (the read's since: see flume__view_read).
 * `done`: the range is read to its end. */
static int ldb_view_read(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  flume_view *v = check_view(L, d, 2);
  lua_Integer max = luaL_checkinteger(L, 8);
  int64_t since = luaL_optinteger(L, 12, -1);
  luaL_checktype(L, 10, LUA_TTABLE);
  luaL_checktype(L, 11, LUA_TTABLE);
  flume__buf lo = FLUME__BUF_INIT, hi = FLUME__BUF_INIT;
  flume__buf resume = FLUME__BUF_INIT;
  if (!lua_isnil(L, 3)) flume__lua_check_key(L, 3, &lo);
  if (!lua_isnil(L, 5)) flume__lua_check_key(L, 5, &hi);
  size_t rl;
  const char *rs = lua_tolstring(L, 9, &rl);
  if (rs && flume__buf_append(&resume, rs, rl))
    return flume__lua_raise(L, FLUME_ENOMEM, NULL);
  flume__range r = {lo.len ? lo.data : NULL, lo.len, lua_toboolean(L, 4),
                    hi.len ? hi.data : NULL, hi.len, lua_toboolean(L, 6),
                    lua_toboolean(L, 7)};
  lua_settop(L, 11);
  flume__collect_ctx c = {L, 10, 11, 0, ""};
  char err[512] = "";
  size_t count = 0;
  int done = 1;
  int rc = max > 0 ? flume__view_read(v, &r, (size_t)max, &since, &resume,
                                      flume__view_collect, &c, &count, &done,
                                      err, sizeof err)
                   : flume__view_readable(v, 1, err, sizeof err);
  flume__buf_free(&lo);
  flume__buf_free(&hi);
  if (rc) {
    flume__buf_free(&resume);
    return flume__lua_raise(L, rc, c.err[0] ? c.err : err);
  }
  lua_pushinteger(L, (lua_Integer)count);
  lua_pushlstring(L, resume.data ? resume.data : "", resume.len);
  lua_pushboolean(L, done);
  lua_pushinteger(L, since);
  flume__buf_free(&resume);
  return 4;
}

/* ---- the iterator of a view read ---------------------------------------
 *
 * `for key, seq, value in view:read{...}` (not live) runs this C function
 * once per entry: it hands out the entries of a chunk read ahead (its
 * keys and values copied out of the store: flume__view_read_chunk, whose
 * read transactions end before the loop body runs), each value decoded
 * straight onto the stack, and reads the next chunk when those run out.
 * No Lua table per chunk, no Lua function in between. Each chunk finds the
 * view by name again: a database closed, or a view dropped or replaced
 * with one of another kind, between two chunks is an error there, never a
 * dangling pointer. Nothing is held between calls but memory, so a loop
 * that breaks early, yields or raises leaves nothing to close. */

#define ITER_MT "flume.core.view_iter"
/* Entries a chunk reads: one read transaction for the entries, one for an
 * index's log values. */
#define ITER_CHUNK 256

typedef struct liter {
  flume__buf lo, hi;       /* the range's bounds, encoded */
  flume__range r;          /* the range (its bounds point into lo and hi) */
  flume__buf resume;       /* the last entry read, where the next chunk
                              starts after */
  int64_t since;           /* the read's since: -1 until its first chunk */
  lua_Integer remaining;   /* entries still to hand out (the limit) */
  int kind;                /* the view's kind when the read began */
  int mp;                  /* index: decode log values as msgpack, or hand
                              out their bytes (another codec) */
  int done;                /* the range is read to its end */
  flume__view_chunk chunk; /* the chunk being handed out */
  size_t next;             /* its next entry */
  flume__buf last_key;     /* the encoding of the last key handed out when
                              its Lua value (user value 1) can be handed out
                              again: not a table (a composite key is a new
                              table each time); len 0: none */
  int busy;                /* a call is handing out an entry (a finalizer
                              run by its allocations may not call it) */
} liter;

/*
 * The chunk buffers of a read that ended, kept for the next read (one set
 * per state, a userdata in the registry, the iterators' fifth upvalue): a
 * read of a few hundred entries no longer mallocs and frees tens of KiB of
 * buffers, growing them by doubling (and with glibc, each large free also
 * consolidates the small free blocks the decoded values left). Kept only
 * while their keys and values take at most POOL_MAX bytes.
 */
#define POOL_MT "flume.core.chunk_pool"
#define POOL_MAX ((size_t)1 << 20)

typedef struct chunk_pool {
  flume__view_chunk spare; /* the buffers kept; all NULL: none */
} chunk_pool;

/* The registry key of a state's chunk_pool (its address is the key). */
static const char pool_reg = 'p';

static int pool_gc(lua_State *L) {
  chunk_pool *p = luaL_checkudata(L, 1, POOL_MT);
  flume__view_chunk_free(&p->spare);
  return 0;
}

/* Pushes the state's chunk pool (creating it the first time). */
static chunk_pool *push_pool(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &pool_reg) == LUA_TUSERDATA)
    return lua_touserdata(L, -1);
  lua_pop(L, 1);
  chunk_pool *p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  luaL_setmetatable(L, POOL_MT);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &pool_reg);
  return p;
}

static int chunk_unused(const flume__view_chunk *c) {
  return c->keys.data == NULL && c->vals.data == NULL && c->e == NULL &&
         c->by_seq == NULL && c->seqs == NULL;
}

static int liter_gc(lua_State *L) {
  liter *it = luaL_checkudata(L, 1, ITER_MT);
  flume__buf_free(&it->lo);
  flume__buf_free(&it->hi);
  flume__buf_free(&it->resume);
  flume__buf_free(&it->last_key);
  flume__view_chunk_free(&it->chunk);
  return 0;
}

/* Reads the iterator's next chunk (upvalues: the iterator, the database,
 * the view's name, the decoder's key cache, the chunk pool); 0 when the
 * read is over (its buffers then given up). Raises what the read of a
 * chunk fails with. */
static int liter_fill(lua_State *L, liter *it) {
  while (!it->done && it->remaining > 0) {
    ldb *d = lua_touserdata(L, lua_upvalueindex(2));
    if (d->db == NULL) return flume__lua_raise(L, FLUME_ECLOSED, NULL);
    const char *name = lua_tostring(L, lua_upvalueindex(3));
    flume_view *v = flume__view_find(d->db, name);
    if (v == NULL) {
      lua_pushfstring(L, "no view named '%s'", name);
      return flume__lua_raise(L, FLUME_ENOTFOUND, lua_tostring(L, -1));
    }
    size_t max = it->remaining < ITER_CHUNK ? (size_t)it->remaining
                                            : ITER_CHUNK;
    char err[512] = "";
    int done = 1;
    it->next = 0;
    int rc = flume__view_read_chunk(v, &it->r, max, &it->since, &it->resume,
                                    &it->chunk, &done, err, sizeof err);
    if (rc) {
      it->chunk.n = 0;
      return flume__lua_raise(L, rc, err[0] ? err : NULL);
    }
    if (it->chunk.kind != it->kind) {
      it->chunk.n = 0;
      lua_pushfstring(L, "view '%s' was replaced by a view of another kind "
                      "during the read", name);
      return flume__lua_raise(L, FLUME_ENOTFOUND, lua_tostring(L, -1));
    }
    it->done = done;
    if (it->chunk.n) return 1;
  }
  /* Over: the buffers go to the pool (upvalue 5), or are freed. */
  chunk_pool *p = lua_touserdata(L, lua_upvalueindex(5));
  if (chunk_unused(&p->spare) &&
      it->chunk.keys.cap + it->chunk.vals.cap <= POOL_MAX)
    p->spare = it->chunk;
  else
    flume__view_chunk_free(&it->chunk);
  it->chunk = (flume__view_chunk){0};
  it->next = 0;
  return 0;
}

/* The iterator: key, seq, value (index) or key, accumulator (group), or
 * nothing once the read is over. */
static int liter_next(lua_State *L) {
  liter *it = lua_touserdata(L, lua_upvalueindex(1));
  if (it->busy)
    return flume__lua_raise(L, FLUME_EBUSY, "the read's iterator was called "
                            "while it was handing out an entry (or after "
                            "Lua ran out of memory in it)");
  if (it->next == it->chunk.n && !liter_fill(L, it)) return 0;
  it->busy = 1; /* its chunk's bytes are in use until it returns */
  const flume__chunk_entry *e = &it->chunk.e[it->next++];
  const char *key = it->chunk.keys.data + e->key_off;
  const char *val = it->chunk.vals.data + e->val_off;
  char err[256];
  size_t used;
  it->remaining--;
  /* An index has many entries of one key, one after the other. */
  if (it->last_key.len && e->key_len == it->last_key.len &&
      memcmp(key, it->last_key.data, e->key_len) == 0) {
    lua_getiuservalue(L, lua_upvalueindex(1), 1);
  } else {
    it->last_key.len = 0;
    if (flume__key_decode(L, key, e->key_len, &used, err, sizeof err)) {
      it->busy = 0;
      return flume__lua_raise(L, FLUME_EDECODE, err);
    }
    if (!lua_istable(L, -1) &&
        flume__buf_append(&it->last_key, key, e->key_len) == 0) {
      lua_pushvalue(L, -1);
      lua_setiuservalue(L, lua_upvalueindex(1), 1);
    }
  }
  int rc = 0;
  if (it->kind == FLUME__VIEW_INDEX) lua_pushinteger(L, e->seq);
  if (it->kind == FLUME__VIEW_INDEX && !it->mp)
    lua_pushlstring(L, val, e->val_len);
  else
    rc = flume__mp_decode_keys(L, val, e->val_len, lua_upvalueindex(4), err,
                               sizeof err);
  it->busy = 0;
  if (rc) return flume__lua_raise(L, FLUME_EDECODE, err);
  return it->kind == FLUME__VIEW_INDEX ? 3 : 2;
}

/* db:view_iter(name, lo, lo_incl, hi, hi_incl, reverse, limit, mp)
 *   -> iterator
 * The iterator of a read of a group or index view (not live; the caller
 * has gated it): see liter_next. lo and hi are keys or nil; limit the
 * most entries to hand out; mp: an index's log values are msgpack. */
static int ldb_view_iter(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  flume_view *v = check_view(L, d, 2);
  lua_Integer limit = luaL_checkinteger(L, 8);
  int mp = lua_toboolean(L, 9);
  char err[512] = "";
  int rc = flume__view_readable(v, 1, err, sizeof err);
  if (rc) return flume__lua_raise(L, rc, err);
  flume__view_info_t in;
  flume__view_info(v, &in);
  lua_settop(L, 9);
  liter *it = lua_newuserdatauv(L, sizeof *it, 1); /* 10 */
  memset(it, 0, sizeof *it);
  luaL_setmetatable(L, ITER_MT);
  it->since = -1;
  it->remaining = limit;
  it->kind = in.kind;
  it->mp = mp;
  if (!lua_isnil(L, 3)) flume__lua_check_key(L, 3, &it->lo);
  if (!lua_isnil(L, 5)) flume__lua_check_key(L, 5, &it->hi);
  it->r = (flume__range){it->lo.len ? it->lo.data : NULL, it->lo.len,
                         lua_toboolean(L, 4),
                         it->hi.len ? it->hi.data : NULL, it->hi.len,
                         lua_toboolean(L, 6), lua_toboolean(L, 7)};
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  flume__mp_push_keys(L);
  chunk_pool *p = push_pool(L);
  it->chunk = p->spare; /* a finished read's buffers, if any */
  it->chunk.n = 0;        /* (none of its entries) */
  p->spare = (flume__view_chunk){0};
  lua_pushcclosure(L, liter_next, 5);
  return 1;
}

/* db:view_changes(name, lo, lo_incl, hi, hi_incl, max, after, keys, vals)
 *   -> n, since    or    false, since
 * A live read's step (flume__view_changes): fills keys[1..n] and
 * vals[1..n] with the entries in range that the view's checkpoints after
 * `after` changed, read at `since`; max < 0: no limit. false when the
 * view's journal does not hold them all: read the range again. */
static int ldb_view_changes(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  flume_view *v = check_view(L, d, 2);
  lua_Integer max = luaL_checkinteger(L, 7);
  int64_t after = luaL_checkinteger(L, 8);
  luaL_checktype(L, 9, LUA_TTABLE);
  luaL_checktype(L, 10, LUA_TTABLE);
  flume__buf lo = FLUME__BUF_INIT, hi = FLUME__BUF_INIT;
  if (!lua_isnil(L, 3)) flume__lua_check_key(L, 3, &lo);
  if (!lua_isnil(L, 5)) flume__lua_check_key(L, 5, &hi);
  flume__range r = {lo.len ? lo.data : NULL, lo.len, lua_toboolean(L, 4),
                    hi.len ? hi.data : NULL, hi.len, lua_toboolean(L, 6), 0};
  lua_settop(L, 10);
  flume__collect_ctx c = {L, 9, 10, 0, ""};
  char err[512] = "";
  size_t count = 0;
  int64_t since = after;
  int rc = flume__view_changes(v, &r, max < 0 ? SIZE_MAX : (size_t)max,
                               after, &since, flume__view_collect, &c,
                               &count, err, sizeof err);
  flume__buf_free(&lo);
  flume__buf_free(&hi);
  if (rc == FLUME__CHANGES_MISS) lua_pushboolean(L, 0);
  else if (rc) return flume__lua_raise(L, rc, c.err[0] ? c.err : err);
  else lua_pushinteger(L, (lua_Integer)count);
  lua_pushinteger(L, since);
  return 2;
}

/* db:view_journal_on(name): a live read begins; the view keeps a journal
 * of its checkpoints' changes from now on (see view_changes). */
static int ldb_view_journal_on(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  flume__view_journal_on(check_view(L, d, 2));
  return 0;
}

#ifdef FLUME_TEST_HOOKS
/* db:view_journal_max(name, bytes): bounds the view's journal (a small
 * bound makes it overflow). */
static int ldb_view_journal_max(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  flume_view *v = check_view(L, d, 2);
  lua_Integer max = luaL_checkinteger(L, 3);
  luaL_argcheck(L, max > 0, 3, "a bound of bytes > 0");
  flume__view_journal_max(v, (size_t)max);
  return 0;
}
#endif

/* db:view_call(name, method, args) -> result
 * args is a msgpack-encoded list; the method runs in the view host (a Lua
 * view) or the view's C code, and its result comes back decoded. */
static int ldb_view_call(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  flume_view *v = check_view(L, d, 2);
  const char *method = luaL_checkstring(L, 3);
  size_t alen;
  const char *args = luaL_checklstring(L, 4, &alen);
  char err[512] = "";
  flume__buf out = FLUME__BUF_INIT;
  int rc = flume__view_call(v, method, args, alen, &out, err, sizeof err);
  if (rc == 0) rc = flume__mp_decode(L, out.data, out.len, err, sizeof err);
  flume__buf_free(&out);
  if (rc == FLUME_EVIEW) {
    lua_pushfstring(L, "flume: EVIEW: %s", err);
    return lua_error(L);
  }
  if (rc) return flume__lua_raise(L, rc, err[0] ? err : NULL);
  return 1;
}

static void method_one(void *ctx, const char *name, const char *how) {
  lua_State *L = ctx;
  lua_pushstring(L, how);
  lua_setfield(L, -2, name);
}

/* db:view_methods(name) -> { name = "sync"|"async"|"source" } */
static int ldb_view_methods(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  flume_view *v = check_view(L, d, 2);
  lua_newtable(L);
  flume__view_methods(v, method_one, L);
  return 1;
}

static int ldb_rebuild(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  int rc = flume__views_rebuild(d->db);
  if (rc) return flume__lua_raise(L, rc, NULL);
  return 0;
}

static int ldb_set_paused(lua_State *L) {
  ldb *d = flume__lua_check_db(L, 1);
  int rc = flume__views_set_paused(d->db, lua_toboolean(L, 2));
  if (rc) return flume__lua_raise(L, rc, NULL);
  return 0;
}

static const luaL_Reg view_methods[] = {
    {"use", ldb_use},
    {"mount", ldb_mount},
    {"drop", ldb_drop},
    {"catalogue", ldb_catalogue},
    {"set_mapper", ldb_set_mapper},
    {"view_info", ldb_view_info},
    {"view_wait", ldb_view_wait},
    {"view_get", ldb_view_get},
    {"view_read", ldb_view_read},
    {"view_iter", ldb_view_iter},
    {"view_changes", ldb_view_changes},
    {"view_journal_on", ldb_view_journal_on},
#ifdef FLUME_TEST_HOOKS
    {"view_journal_max", ldb_view_journal_max},
#endif
    {"view_call", ldb_view_call},
    {"view_methods", ldb_view_methods},
    {"rebuild", ldb_rebuild},
    {"set_paused", ldb_set_paused},
    {NULL, NULL}};

void flume__lua_views_register(lua_State *L, int module, int methods) {
  (void)module;
  luaL_newmetatable(L, ITER_MT);
  lua_pushcfunction(L, liter_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, POOL_MT);
  lua_pushcfunction(L, pool_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, view_methods, 0);
  lua_pop(L, 1);
}
