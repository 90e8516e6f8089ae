/*
 * Loading a view's definition into the host: a script's text, run once
 * under the view's limits, or a Lua table from the caller's state moved in
 * (its scalars copied, its functions dumped and loaded here with the
 * view's environment as their _ENV; a function that captures a local
 * variable cannot be moved, and is refused); then classified (reduce,
 * group, index) and hashed, so a script changed without a version bump is
 * noticed.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "views/host.h"

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 1099511628211ULL;
  }
  return h;
}

#define FNV_BASIS 14695981039346656037ULL

/*
 * A function's hash for a view given as a table: its stripped dump (Lua
 * 5.4's binary chunk without debug information), but without the two line
 * numbers the dump keeps even when stripped (where the function and its
 * nested functions begin and end). A view moved down by a blank line in
 * its file then keeps its hash, so it is not reported as "changed without
 * a version bump"; a view given as source text hashes its text instead,
 * which is what its author edits.
 *
 * The dump is walked field by field; when it does not have the layout
 * expected (another Lua version), the whole stripped dump is hashed.
 */
typedef struct dump_walk {
  const unsigned char *p;   /* next byte */
  const unsigned char *end; /* end of the dump */
  uint64_t hash;            /* hash of what is kept */
  int bad;                  /* not the expected layout */
} dump_walk;

static void dw_keep(dump_walk *w, size_t n) {
  if (w->bad || (size_t)(w->end - w->p) < n) {
    w->bad = 1;
    return;
  }
  w->hash = fnv1a(w->hash, w->p, n);
  w->p += n;
}

/* A size: 7 bits a byte, most significant first, the last byte's high bit
 * set. Kept in the hash unless `skip`. */
static size_t dw_size(dump_walk *w, int skip) {
  size_t x = 0;
  for (int i = 0; i < 10 && !w->bad; i++) {
    if (w->p >= w->end) break;
    unsigned char b = *w->p++;
    if (!skip) w->hash = fnv1a(w->hash, &b, 1);
    x = (x << 7) | (b & 0x7f);
    if (b & 0x80) return x;
  }
  w->bad = 1;
  return 0;
}

static void dw_string(dump_walk *w) {
  size_t n = dw_size(w, 0);
  if (n > 0) dw_keep(w, n - 1);
}

static void dw_function(dump_walk *w, int depth) {
  if (depth > 200) w->bad = 1;
  dw_string(w);   /* source: absent when stripped */
  dw_size(w, 1);  /* linedefined: skipped */
  dw_size(w, 1);  /* lastlinedefined: skipped */
  dw_keep(w, 3);  /* numparams, is_vararg, maxstacksize */
  size_t n = dw_size(w, 0);
  if (n > (size_t)(w->end - w->p) / 4) w->bad = 1;
  dw_keep(w, n * 4); /* the code */
  n = dw_size(w, 0); /* constants */
  for (size_t i = 0; i < n && !w->bad; i++) {
    if (w->p >= w->end) w->bad = 1;
    if (w->bad) break;
    unsigned char t = *w->p;
    dw_keep(w, 1);
    switch (t) {
    case 0x00: case 0x01: case 0x11: break; /* nil, false, true */
    case 0x03: case 0x13: dw_keep(w, 8); break; /* integer, float */
    case 0x04: case 0x14: dw_string(w); break;  /* strings */
    default: w->bad = 1;
    }
  }
  n = dw_size(w, 0); /* upvalues: instack, idx, kind */
  if (n > (size_t)(w->end - w->p) / 3) w->bad = 1;
  dw_keep(w, n * 3);
  n = dw_size(w, 0); /* nested functions */
  for (size_t i = 0; i < n && !w->bad; i++) dw_function(w, depth + 1);
  /* Debug information, empty when stripped: its four counts. */
  for (int i = 0; i < 4; i++)
    if (dw_size(w, 0) != 0) w->bad = 1;
}

static uint64_t hash_dump(uint64_t h, const char *d, size_t n) {
  /* The header: signature, version, format, data, three sizes, two test
   * numbers; then the count of the main function's upvalues. */
  const size_t header = 4 + 1 + 1 + 6 + 3 + 8 + 8 + 1;
  dump_walk w = {(const unsigned char *)d, (const unsigned char *)d + n, h,
                 0};
  if (n < header || memcmp(d, LUA_SIGNATURE, 4) != 0 || d[4] != 0x54 ||
      d[12] != 4 || d[13] != 8 || d[14] != 8)
    return fnv1a(h, d, n);
  dw_keep(&w, header);
  dw_function(&w, 0);
  if (w.bad || w.p != w.end) return fnv1a(h, d, n);
  return w.hash;
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  return flume__buf_append(ud, p, n);
}

typedef struct move_ctx {
  lua_State *from;  /* the caller's state */
  lua_State *to;    /* the host */
  int env;          /* the view's environment, in `to` */
  uint64_t hash;    /* hash of everything moved, in a stable order */
  char *err;        /* where a problem is described */
  size_t errlen;
} move_ctx;

/* Moves the value at the top of m->from onto m->to. Returns 0 or
 * FLUME_ESCRIPT. Table keys are visited in sorted order for the hash. */
static int move_value(move_ctx *m, const char *path, int depth) {
  lua_State *F = m->from, *T = m->to;
  if (!lua_checkstack(F, 8) || !lua_checkstack(T, 8) || depth > 32) {
    snprintf(m->err, m->errlen, "view table nested too deeply at %s", path);
    return FLUME_ESCRIPT;
  }
  int t = lua_type(F, -1);
  switch (t) {
  case LUA_TNIL:
    lua_pushnil(T);
    break;
  case LUA_TBOOLEAN:
    lua_pushboolean(T, lua_toboolean(F, -1));
    m->hash = fnv1a(m->hash, lua_toboolean(F, -1) ? "T" : "F", 1);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(F, -1)) {
      lua_Integer i = lua_tointeger(F, -1);
      lua_pushinteger(T, i);
      m->hash = fnv1a(m->hash, &i, sizeof i);
    } else {
      lua_Number d = lua_tonumber(F, -1);
      lua_pushnumber(T, d);
      m->hash = fnv1a(m->hash, &d, sizeof d);
    }
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(F, -1, &n);
    lua_pushlstring(T, s, n);
    m->hash = fnv1a(m->hash, s, n);
    break;
  }
  case LUA_TFUNCTION: {
    if (lua_iscfunction(F, -1)) {
      snprintf(m->err, m->errlen, "%s is a C function, which cannot be "
               "moved into the view state", path);
      return FLUME_ESCRIPT;
    }
    for (int i = 1;; i++) {
      const char *up = lua_getupvalue(F, -1, i);
      if (up == NULL) break;
      lua_pop(F, 1);
      if (strcmp(up, "_ENV") != 0) {
        snprintf(m->err, m->errlen, "%s captures the local variable '%s'; "
                 "a view's functions may use only their arguments and "
                 "globals (or give the view as a script)", path,
                 *up ? up : "?");
        return FLUME_ESCRIPT;
      }
    }
    flume__buf code = FLUME__BUF_INIT, stripped = FLUME__BUF_INIT;
    if (lua_dump(F, dump_writer, &code, 0) ||
        lua_dump(F, dump_writer, &stripped, 1)) {
      flume__buf_free(&code);
      flume__buf_free(&stripped);
      return FLUME_ENOMEM;
    }
    /* The hash ignores debug information and line numbers (hash_dump). */
    m->hash = hash_dump(m->hash, stripped.data, stripped.len);
    flume__buf_free(&stripped);
    int rc = luaL_loadbufferx(T, code.data, code.len, path, "b");
    flume__buf_free(&code);
    if (rc != LUA_OK) {
      snprintf(m->err, m->errlen, "%s cannot be moved: %s", path,
               lua_tostring(T, -1));
      lua_pop(T, 1);
      return FLUME_ESCRIPT;
    }
    if (lua_getupvalue(T, -1, 1) != NULL) { /* it uses globals */
      lua_pop(T, 1);
      lua_pushvalue(T, m->env);
      lua_setupvalue(T, -2, 1);
    }
    break;
  }
  case LUA_TTABLE: {
    /* Collect the keys, sort them by their text, move in that order. */
    lua_newtable(T);
    int n = 0;
    lua_newtable(F);
    int keys = lua_gettop(F);
    lua_pushnil(F);
    while (lua_next(F, keys - 1)) {
      lua_pop(F, 1);
      lua_pushvalue(F, -1);
      lua_rawseti(F, keys, ++n);
    }
    for (int i = 1; i <= n; i++) {
      for (int j = i + 1; j <= n; j++) {
        lua_rawgeti(F, keys, i);
        lua_rawgeti(F, keys, j);
        /* By type, then text: 1 and "1" have a fixed order too. */
        int ta = lua_type(F, -2), tb = lua_type(F, -1);
        const char *a = luaL_tolstring(F, -2, NULL);
        const char *b = luaL_tolstring(F, -2, NULL);
        int swap = ta != tb ? ta > tb : strcmp(a, b) > 0;
        lua_pop(F, 4);
        if (swap) {
          lua_rawgeti(F, keys, i);
          lua_rawgeti(F, keys, j);
          lua_rawseti(F, keys, i);
          lua_rawseti(F, keys, j);
        }
      }
    }
    for (int i = 1; i <= n; i++) {
      char sub[256];
      lua_rawgeti(F, keys, i);
      int kt = lua_type(F, -1);
      if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
        snprintf(m->err, m->errlen, "%s has a key of type %s", path,
                 lua_typename(F, kt));
        lua_pop(F, 2);
        return FLUME_ESCRIPT;
      }
      snprintf(sub, sizeof sub, "%s.%s", path, luaL_tolstring(F, -1, NULL));
      lua_pop(F, 1);
      int rc = move_value(m, sub, depth + 1); /* the key */
      if (rc) {
        lua_pop(F, 2);
        return rc;
      }
      lua_pushvalue(F, -1);
      lua_rawget(F, keys - 1);
      rc = move_value(m, sub, depth + 1); /* the value */
      lua_pop(F, 2);
      if (rc) {
        lua_pop(T, 1);
        return rc;
      }
      lua_rawset(T, -3);
    }
    lua_pop(F, 1);
    break;
  }
  default:
    snprintf(m->err, m->errlen, "%s is a %s, which cannot be moved into the "
             "view state", path, lua_typename(F, t));
    return FLUME_ESCRIPT;
  }
  return 0;
}

/* Pushes t[k] of the table at `t`, raw. */
static int raw_field(lua_State *L, int t, const char *k) {
  lua_pushstring(L, k);
  return lua_rawget(L, t);
}

/* Replaces the table a script returned (at the top) by a plain copy of
 * the fields the runtime reads: the runtime reads them outside any call's
 * limits, where a metatable's __index or a metamethod must not run. */
static void plain_def(lua_State *L) {
  static const char *const fields[] = {"version", "kind", "map", "reduce",
                                       "initial", "memory", NULL};
  int t = lua_gettop(L);
  lua_createtable(L, 0, 6);
  for (const char *const *f = fields; *f; f++) {
    raw_field(L, t, *f);
    lua_setfield(L, -2, *f);
  }
  if (raw_field(L, t, "methods") == LUA_TTABLE) {
    int m = lua_gettop(L);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, m)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
        lua_createtable(L, 2, 0);
        lua_rawgeti(L, -2, 1);
        lua_rawseti(L, -2, 1);
        lua_rawgeti(L, -2, 2);
        lua_rawseti(L, -2, 2);
        lua_pushvalue(L, -3);
        lua_insert(L, -2);
        lua_rawset(L, -5);
      }
      lua_pop(L, 1);
    }
    lua_setfield(L, -3, FLUME__DEF_METHODS);
  }
  lua_pop(L, 1);
  lua_replace(L, t);
}

/* Checks the view table at the top of the host's stack and says its kind. */
static int classify(lua_State *L, const char *name, flume__view_kind *kind,
                    int64_t *version, char *err, size_t errlen) {
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "view '%s' must return a table, not a %s", name,
             luaL_typename(L, -1));
    return FLUME_ESCRIPT;
  }
  lua_getfield(L, -1, "version");
  if (!lua_isinteger(L, -1)) {
    snprintf(err, errlen, "view '%s' has no integer version (got %s)", name,
             lua_isnil(L, -1) ? "nil" : luaL_typename(L, -1));
    lua_pop(L, 1);
    return FLUME_ESCRIPT;
  }
  *version = lua_tointeger(L, -1);
  lua_pop(L, 1);
  int has_map, has_reduce;
  lua_getfield(L, -1, FLUME__DEF_MAP);
  has_map = lua_isfunction(L, -1);
  int map_bad = !has_map && !lua_isnil(L, -1);
  lua_getfield(L, -2, FLUME__DEF_REDUCE);
  has_reduce = lua_isfunction(L, -1);
  int reduce_bad = !has_reduce && !lua_isnil(L, -1);
  lua_getfield(L, -3, FLUME__DEF_INITIAL);
  int has_initial = !lua_isnil(L, -1);
  lua_pop(L, 3);
  if (map_bad || reduce_bad) {
    snprintf(err, errlen, "view '%s': %s must be a function", name,
             map_bad ? "map" : "reduce");
    return FLUME_ESCRIPT;
  }
  lua_getfield(L, -1, "kind");
  const char *named = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (named) {
    /* Says what map+reduce without initial is (a group, by default). */
    int ok = 1;
    if (strcmp(named, "reduce") == 0) {
      ok = has_reduce;
      *kind = FLUME__VIEW_REDUCE;
    } else if (strcmp(named, "group") == 0) {
      ok = has_map && has_reduce;
      *kind = FLUME__VIEW_GROUP;
    } else if (strcmp(named, "index") == 0) {
      ok = has_map && !has_reduce;
      *kind = FLUME__VIEW_INDEX;
    } else {
      snprintf(err, errlen, "view '%s': kind must be \"reduce\", \"group\" "
               "or \"index\", not \"%s\"", name, named);
      return FLUME_ESCRIPT;
    }
    if (!ok) {
      snprintf(err, errlen, "view '%s': a %s view needs %s", name, named,
               *kind == FLUME__VIEW_REDUCE ? "reduce"
               : *kind == FLUME__VIEW_GROUP ? "map and reduce"
                                            : "map and no reduce");
      return FLUME_ESCRIPT;
    }
  } else if (has_reduce && (!has_map || has_initial))
    *kind = FLUME__VIEW_REDUCE;
  else if (has_reduce)
    *kind = FLUME__VIEW_GROUP;
  else if (has_map)
    *kind = FLUME__VIEW_INDEX;
  else {
    snprintf(err, errlen, "view '%s' has neither map nor reduce", name);
    return FLUME_ESCRIPT;
  }
  return 0;
}

int flume__host_load(flume__host *h, const char *name, const char *src,
                     size_t len, const char *chunkname, lua_State *F,
                     int idx, flume__view_kind *kind, int64_t *version,
                     uint64_t *hash, int *ref, char *err, size_t errlen) {
  lua_State *L = flume__host_state(h);
  int top = lua_gettop(L);
  /* The record first: its account pays for the script's top level. */
  lua_createtable(L, 0, 8);
  lua_pushvalue(L, -1);
  int r = luaL_ref(L, LUA_REGISTRYINDEX);
  if (flume__host_account_open(h, r, name)) {
    snprintf(err, errlen, "view '%s': out of memory", name);
    luaL_unref(L, LUA_REGISTRYINDEX, r);
    lua_settop(L, top);
    return FLUME_ENOMEM;
  }
  int rec = lua_gettop(L);
  flume__host_push_env(h);
  int env = lua_gettop(L);
  if (src) {
    if (luaL_loadbufferx(L, src, len, chunkname, "t") != LUA_OK) {
      snprintf(err, errlen, "view '%s' does not load: %s", name,
               lua_tostring(L, -1));
      goto fail;
    }
    lua_pushvalue(L, env);
    lua_setupvalue(L, -2, 1);
    /* A script's top level runs under the view's limits too. */
    if (flume__host_call(h, r, 0, 1) != LUA_OK) {
      snprintf(err, errlen, "view '%s' failed to run: %s", name,
               lua_tostring(L, -1));
      goto fail;
    }
    *hash = fnv1a(FNV_BASIS, src, len);
    if (lua_istable(L, -1)) plain_def(L);
  } else {
    move_ctx m = {F, L, env, FNV_BASIS, err, errlen};
    char path[80];
    snprintf(path, sizeof path, "view '%s'", name);
    lua_pushvalue(F, idx);
    int rc = move_value(&m, path, 0);
    lua_pop(F, 1);
    if (rc) goto fail;
    *hash = m.hash;
  }
  if (classify(L, name, kind, version, err, errlen)) goto fail;
  /* memory: what the view may hold, in bytes. */
  lua_getfield(L, -1, "memory");
  if (!lua_isnil(L, -1)) {
    lua_Integer mem = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    if (mem < (1 << 20)) {
      snprintf(err, errlen, "view '%s': memory must be an integer number "
               "of bytes, at least 1 MiB (1048576)", name);
      goto fail;
    }
    flume__host_account_cap(h, r, mem);
  }
  lua_pop(L, 1);
  /* The record: { def = the script's table, env = its environment }. */
  lua_setfield(L, rec, FLUME__HREC_DEF);
  lua_pushvalue(L, env);
  lua_setfield(L, rec, FLUME__HREC_ENV);
  *ref = r;
  lua_settop(L, top);
  return 0;
fail:
  lua_settop(L, top);
  flume__host_account_close(h, r);
  luaL_unref(L, LUA_REGISTRYINDEX, r);
  /* A top level that failed (over its cap, say) leaves its garbage. */
  lua_gc(L, LUA_GCCOLLECT);
  return FLUME_ESCRIPT;
}

int flume__host_set_mapper(flume__host *h, lua_State *F, int idx, char *err,
                           size_t errlen) {
  lua_State *L = flume__host_state(h);
  int top = lua_gettop(L);
  flume__host_push_env(h);
  move_ctx m = {F, L, lua_gettop(L), FNV_BASIS, err, errlen};
  lua_pushvalue(F, idx);
  int rc = move_value(&m, "mapper", 0);
  lua_pop(F, 1);
  if (rc == 0) lua_setfield(L, LUA_REGISTRYINDEX, FLUME__HREG_MAPPER);
  lua_settop(L, top);
  return rc;
}
