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

int flume__collect(void *p, const char *key, size_t key_len,
                   size_t entry_len, const void *val, size_t val_len) {
  flume__collect_ctx *c = p;
  lua_State *L = c->L;
  size_t used;
  c->n++;
  if (c->keys) {
    if (flume__key_decode(L, key, key_len, &used, c->err, sizeof c->err))
      return FLUME_EDECODE;
    lua_rawseti(L, c->keys, c->n);
  }
  if (c->index) {
    lua_pushinteger(L, flume__index_seq_get(key, entry_len));
  } else if (flume__mp_decode(L, val, val_len, c->err, sizeof c->err)) {
    return FLUME_EDECODE;
  }
  lua_rawseti(L, c->vals, c->n);
  return 0;
}

/* get(key) of a group or index view, in the host: up[1] = the view. */
static int host_get(lua_State *H) {
  flume_view *v = lua_touserdata(H, lua_upvalueindex(1));
  flume__view_info_t in;
  flume__view_info(v, &in);
  luaL_checkany(H, 1);
  flume__buf key = FLUME__BUF_INIT, resume = FLUME__BUF_INIT;
  char err[256];
  if (flume__key_encode(H, 1, &key, err, sizeof err)) {
    flume__buf_free(&key);
    return luaL_error(H, "%s", err);
  }
  flume__range r = {key.data, key.len, 1, key.data, key.len, 1, 0};
  lua_newtable(H);
  flume__collect_ctx c = {H, in.kind == FLUME__VIEW_INDEX, 0, lua_gettop(H),
                         0, ""};
  size_t count;
  int rc = flume__view_range(v->db, v->table, c.index ? 8 : 0, &r, SIZE_MAX,
                             &resume, flume__collect, &c, &count);
  flume__buf_free(&key);
  flume__buf_free(&resume);
  if (rc) return luaL_error(H, "%s", flume_strerror(rc));
  if (!c.index) {
    if (count == 0) lua_pushnil(H);
    else lua_rawgeti(H, -1, 1);
  }
  return 1;
}

/* The iterator host_read returns: up[1] keys, up[2] values, up[3] index. */
static int host_read_next(lua_State *H) {
  lua_Integer i = lua_tointeger(H, lua_upvalueindex(3)) + 1;
  lua_rawgeti(H, lua_upvalueindex(1), i);
  if (lua_isnil(H, -1)) return 1;
  lua_pushinteger(H, i);
  lua_replace(H, lua_upvalueindex(3));
  lua_rawgeti(H, lua_upvalueindex(2), i);
  return 2;
}

/* Bound i of a read's options: pushes the field and says if it is set. */
static int opt_bound(lua_State *H, const char *name, flume__buf *b,
                     char *err, size_t errlen) {
  lua_getfield(H, 1, name);
  int set = !lua_isnil(H, -1);
  if (set && flume__key_encode(H, -1, b, err, errlen)) set = -1;
  lua_pop(H, 1);
  return set;
}

/* read{gt=, gte=, lt=, lte=, reverse=, limit=} of a group or index view,
 * in the host: an iterator of key, accumulator (group) or key, seq
 * (index). up[1] = the view. */
static int host_read(lua_State *H) {
  flume_view *v = lua_touserdata(H, lua_upvalueindex(1));
  char err[256] = "";
  if (lua_isnoneornil(H, 1)) {
    lua_settop(H, 0);
    lua_newtable(H);
  }
  luaL_checktype(H, 1, LUA_TTABLE);
  flume__buf lo = FLUME__BUF_INIT, hi = FLUME__BUF_INIT;
  flume__buf resume = FLUME__BUF_INIT;
  int lo_incl = 1, hi_incl = 1, set;
  if ((set = opt_bound(H, "gte", &lo, err, sizeof err)) == 0) {
    set = opt_bound(H, "gt", &lo, err, sizeof err);
    lo_incl = 0;
  }
  int bad = set < 0;
  if ((set = opt_bound(H, "lte", &hi, err, sizeof err)) == 0) {
    set = opt_bound(H, "lt", &hi, err, sizeof err);
    hi_incl = 0;
  }
  bad = bad || set < 0;
  lua_getfield(H, 1, "reverse");
  int reverse = lua_toboolean(H, -1);
  lua_getfield(H, 1, "limit");
  lua_Integer limit = luaL_optinteger(H, -1, 1000000);
  lua_pop(H, 2);
  if (bad) {
    flume__buf_free(&lo);
    flume__buf_free(&hi);
    return luaL_error(H, "%s", err);
  }
  flume__range r = {lo.len ? lo.data : NULL, lo.len, lo_incl,
                    hi.len ? hi.data : NULL, hi.len, hi_incl, reverse};
  lua_newtable(H);
  lua_newtable(H);
  flume__collect_ctx c = {H, v->kind == FLUME__VIEW_INDEX, lua_gettop(H) - 1,
                          lua_gettop(H), 0, ""};
  size_t count;
  int rc = limit > 0 ? flume__view_range(v->db, v->table, c.index ? 8 : 0, &r,
                                         (size_t)limit, &resume,
                                         flume__collect, &c, &count)
                     : 0;
  flume__buf_free(&lo);
  flume__buf_free(&hi);
  flume__buf_free(&resume);
  if (rc) return luaL_error(H, "%s", c.err[0] ? c.err : flume_strerror(rc));
  lua_pushinteger(H, 0);
  lua_pushcclosure(H, host_read_next, 3);
  return 1;
}

/* Pushes a read handle for a group or index view: { get, read }. */
static void push_handle(lua_State *H, flume_view *v) {
  lua_createtable(H, 0, 2);
  lua_pushlightuserdata(H, v);
  lua_pushcclosure(H, host_get, 1);
  lua_setfield(H, -2, "get");
  lua_pushlightuserdata(H, v);
  lua_pushcclosure(H, host_read, 1);
  lua_setfield(H, -2, "read");
}

typedef struct reply_ctx {
  flume__buf *out;  /* where the result goes */
  int replied;      /* reply was called */
} reply_ctx;

static void c_reply(void *p, const void *res, size_t len) {
  reply_ctx *r = p;
  r->replied = 1;
  r->out->len = 0;
  flume__buf_append(r->out, res, len);
}

int flume__view_call(flume_view *v, const char *method, const char *args,
                     size_t alen, flume__buf *out, char *err, size_t errlen) {
  flume__host *h = flume__views_host(v->db);
  if (v->kind == FLUME__VIEW_C) {
    if (v->vt->call == NULL) goto missing_c;
    reply_ctx r = {out, 0};
    int rc = v->vt->call(v->vstate, method, args, alen, c_reply, &r);
    if (rc == FLUME_ENOTFOUND) goto missing_c;
    if (rc == 0 && !r.replied) rc = FLUME_EVIEW;
    if (rc) snprintf(err, errlen, "view '%s' method '%s': %s", v->name,
                     method, flume_strerror(rc));
    return rc;
  missing_c:
    snprintf(err, errlen, "view '%s' has no method '%s'", v->name, method);
    return FLUME_ENOTFOUND;
  }
  lua_State *H = flume__host_state(h);
  int top = lua_gettop(H);
  lua_rawgeti(H, LUA_REGISTRYINDEX, v->host_ref);
  int rec = lua_gettop(H);
  lua_getfield(H, rec, "def");
  lua_getfield(H, -1, "methods");
  int builtin = 0;
  if (lua_istable(H, -1)) lua_getfield(H, -1, method);
  else lua_pushnil(H);
  if (lua_istable(H, -1)) {
    lua_rawgeti(H, -1, 2);
  } else if (strcmp(method, "get") == 0) {
    builtin = 1;
    if (v->kind == FLUME__VIEW_REDUCE) {
      lua_pushnil(H); /* placeholder: the state is pushed below */
    } else {
      lua_pushlightuserdata(H, v);
      lua_pushcclosure(H, host_get, 1);
    }
  } else {
    lua_pushnil(H);
  }
  if (!lua_isfunction(H, -1) && !(builtin && v->kind == FLUME__VIEW_REDUCE)) {
    lua_settop(H, top);
    snprintf(err, errlen, "view '%s' has no method '%s'", v->name, method);
    return FLUME_ENOTFOUND;
  }
  int fn = lua_gettop(H);
  if (flume__mp_decode(H, args, alen, err, errlen) || !lua_istable(H, -1)) {
    lua_settop(H, top);
    snprintf(err, errlen, "the arguments of view '%s' method '%s' must be "
             "a msgpack list", v->name, method);
    return FLUME_EINVAL;
  }
  int list = lua_gettop(H);
  lua_Integer n = (lua_Integer)lua_rawlen(H, list);
  if (n > 200 || !lua_checkstack(H, (int)n + 8)) {
    lua_settop(H, top);
    snprintf(err, errlen, "too many arguments");
    return FLUME_EINVAL;
  }
  /* A reduce view's methods get its committed state, as its get does:
   * the indexer's own state runs ahead of what its since says. */
  int rc;
  if (builtin && v->kind == FLUME__VIEW_REDUCE) {
    if ((rc = flume__view_push_state(v, err, errlen))) {
      lua_settop(H, top);
      return rc;
    }
  } else {
    lua_pushvalue(H, fn);
    if (builtin) {
      lua_rawgeti(H, list, 1); /* get(key) */
      n = 0;
    } else if (v->kind == FLUME__VIEW_REDUCE) {
      if ((rc = flume__view_push_state(v, err, errlen))) {
        lua_settop(H, top);
        return rc;
      }
    } else {
      /* A read handle over the view's stored state. */
      push_handle(H, v);
    }
    for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(H, list, i);
    if (flume__host_call(h, v->host_ref, (int)n + 1, 1) != LUA_OK) {
      snprintf(err, errlen, "view '%s' method '%s' failed: %s", v->name,
               method, lua_tostring(H, -1));
      lua_settop(H, top);
      return FLUME_EVIEW;
    }
  }
  out->len = 0;
  rc = flume__mp_encode(H, -1, out, err, errlen);
  lua_settop(H, top);
  return rc;
}

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
