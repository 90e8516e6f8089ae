/*
 * A view's methods: calls into the view host (a Lua view's `methods`, or
 * the built-in `get`) or into a C view's vtable, with msgpack arguments and
 * result. A Lua method gets a read handle over the view's stored state
 * ({ get, read }, through the one read path) or, for a reduce view, its
 * committed state.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "msgpack.h"
#include "views/lazy.h"
#include "views/read.h"
#include "views/engine.h"

/* get(key) of a group or index view, in the host: up[1] = the view. */
static int host_get(lua_State *H) {
  flume_view *v = lua_touserdata(H, lua_upvalueindex(1));
  luaL_checkany(H, 1);
  flume__buf key = FLUME__BUF_INIT;
  char err[256] = "";
  flume__lazy_settle(H, 1); /* a value a view kept (lazy.c) */
  if (flume__key_encode(H, 1, &key, err, sizeof err)) {
    flume__buf_free(&key);
    return luaL_error(H, "%s", err);
  }
  lua_newtable(H);
  flume__collect_ctx c = {H, 0, lua_gettop(H), 0, ""};
  size_t count;
  int rc = flume__view_get(v, key.data, key.len, flume__view_collect, &c,
                           &count, err, sizeof err);
  flume__buf_free(&key);
  if (rc) return luaL_error(H, "%s", c.err[0] ? c.err : err[0] ? err
                                                       : flume_strerror(rc));
  if (v->kind == FLUME__VIEW_GROUP) {
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
  flume__lazy_settle(H, -1);
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
  flume__collect_ctx c = {H, lua_gettop(H) - 1, lua_gettop(H), 0, ""};
  size_t count;
  int rc = 0, done = limit <= 0;
  int64_t since = -1;
  while (rc == 0 && !done && c.n < limit)
    rc = flume__view_read(v, &r, (size_t)(limit - c.n), &since, &resume,
                          flume__view_collect, &c, &count, &done, err,
                          sizeof err);
  flume__buf_free(&lo);
  flume__buf_free(&hi);
  flume__buf_free(&resume);
  if (rc) return luaL_error(H, "%s", c.err[0] ? c.err : err[0] ? err
                                                       : flume_strerror(rc));
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
  lua_getfield(H, rec, FLUME__HREC_DEF);
  lua_getfield(H, -1, FLUME__DEF_METHODS);
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
    if ((rc = flume__view_push_state(v, H, err, errlen))) {
      lua_settop(H, top);
      return rc;
    }
  } else {
    lua_pushvalue(H, fn);
    if (builtin) {
      lua_rawgeti(H, list, 1); /* get(key) */
      n = 0;
    } else if (v->kind == FLUME__VIEW_REDUCE) {
      if ((rc = flume__view_push_state(v, H, err, errlen))) {
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
  flume__lazy_settle(H, -1);
  rc = flume__mp_encode(H, -1, out, err, errlen);
  lua_settop(H, top);
  return rc;
}


void flume__view_methods(flume_view *v,
                         void (*fn)(void *ctx, const char *name,
                                    const char *how),
                         void *ctx) {
  flume__host *h = flume__views_host(v->db);
  if (h == NULL || v->kind == FLUME__VIEW_C) return;
  lua_State *H = flume__host_state(h);
  int top = lua_gettop(H);
  lua_rawgeti(H, LUA_REGISTRYINDEX, v->host_ref);
  lua_getfield(H, -1, FLUME__HREC_DEF);
  lua_getfield(H, -1, FLUME__DEF_METHODS);
  if (lua_istable(H, -1)) {
    lua_pushnil(H);
    while (lua_next(H, -2)) {
      if (lua_type(H, -2) == LUA_TSTRING && lua_istable(H, -1)) {
        lua_rawgeti(H, -1, 1);
        const char *how = lua_tostring(H, -1);
        if (how && (!strcmp(how, "sync") || !strcmp(how, "async") ||
                    !strcmp(how, "source")))
          fn(ctx, lua_tostring(H, -3), how);
        lua_pop(H, 1);
      }
      lua_pop(H, 1);
    }
  }
  lua_settop(H, top);
}
