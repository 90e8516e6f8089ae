/*
 * Fuzz target: view range reads with arbitrary bounds (runtime/viewread.c,
 * and the read handle of a view method, runtime/viewapi.c).
 *
 * Once, a memory database gets an index view and a group view over values
 * { k = key } whose keys sit on the edges of the key order and of the size
 * limit (strings of up to 501 bytes, runs of one byte sharing prefixes,
 * numbers at the int64 and double edges, arrays). Each input then makes a
 * range (gt/gte, lt/lte, either missing; bounds of any length, far past the
 * limit: stored keys, stored keys with long tails, generated keys, and for
 * the group view raw bytes), a direction, a chunk size and a limit, and
 * reads it
 *   - with flume__view_range, chunk by chunk through its resume point, and
 *   - through a view method's read handle h.read{...}, from a msgpack call,
 * and both must give exactly the entries a naive filter of every entry
 * (memcmp of the key part against the bounds, the documented order) gives,
 * in that direction.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "flume.h"
#include "fuzz_input.h"
#include "keys.h"
#include "msgpack.h"
#include "views/read.h"
#include "views/views.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what) {
  fprintf(stderr, "fuzz_viewread: %s\n", what);
  abort();
}

/* The keys stored; each is appended twice, so an index key has two seqs
 * and a group key the count 2. */
static const char keys_src[] =
    "local z = function(n) return ('z'):rep(n) end\n"
    "return { false, true, -math.huge, math.mininteger, -1.5, -1, 0, 0.0,\n"
    "  0.5, 1, 3, 3.0, 2^53, (2^53 | 0) + 1, math.maxinteger, math.huge,\n"
    "  '', '\\0', '\\0\\0', '\\1', 'a', 'a\\0b', '\\255', '\\255\\255', 'y',\n"
    "  ('y'):rep(501), 'z', 'zz', z(250), z(499), z(500), z(501),\n"
    "  z(499) .. 'y', z(499) .. '{', z(498) .. '\\255\\255', '{',\n"
    "  {}, { 1 }, { 1, 'x' }, { {} }, { true, false }, { z(400) },\n"
    "  { z(496) }, { 'a', { 'b', { 'c' } } } }\n";

static const char index_script[] =
    "return { version = 1,\n"
    "  map = function(v) return { v.k } end,\n"
    "  methods = { keys = { 'async', function(h, o)\n"
    "    local out = {}\n"
    "    for k in h.read(o) do out[#out + 1] = k end\n"
    "    return out end } } }\n";

static const char group_script[] =
    "return { version = 1,\n"
    "  map = function(v) return v.k, 1 end,\n"
    "  reduce = function(a, n) return (a or 0) + n end,\n"
    "  methods = { keys = { 'async', function(h, o)\n"
    "    local out = {}\n"
    "    for k in h.read(o) do out[#out + 1] = k end\n"
    "    return out end } } }\n";

/* One table's entries in memcmp order, as the naive oracle has them. */
typedef struct table {
  flume_view *view; /* the view */
  size_t suffix;    /* bytes after the key part: 8 (index) or 0 */
  flume__buf *ents; /* the entries, sorted */
  size_t *key_len;  /* each entry's key part length */
  int *key_ref;     /* each entry's key, in the harness state's registry */
  size_t n;         /* how many */
} table;

/* Most entries a table may have (the oracle's answer buffer). */
#define WANT_MAX 256

static uv_loop_t loop;
static flume_db *db;
static lua_State *L;    /* the harness's state: keys, bounds, results */
static table tables[2]; /* index, group */

static void on_append(void *ctx, int status, int64_t seq) {
  if (status) fail("append failed");
  *(int64_t *)ctx = seq;
}

static void on_use(void *ctx, int status, flume_view *v) {
  if (status) fail("use failed");
  *(flume_view **)ctx = v;
}

static int cmp_mem(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c) return c < 0 ? -1 : 1;
  return (al > bl) - (al < bl);
}

/* The oracle's table: every key encoded (plus its seq for the index),
 * sorted, duplicates merged for the group. */
static void build_table(table *t, int keys, int nkeys, int copies) {
  size_t cap = (size_t)nkeys * (size_t)copies;
  t->ents = calloc(cap, sizeof *t->ents);
  t->key_len = calloc(cap, sizeof *t->key_len);
  t->key_ref = calloc(cap, sizeof *t->key_ref);
  if (!t->ents || !t->key_len || !t->key_ref) fail("out of memory");
  char err[256];
  for (int c = 0; c < copies; c++) {
    for (int i = 1; i <= nkeys; i++) {
      int64_t seq = (int64_t)c * nkeys + (i - 1);
      lua_rawgeti(L, keys, i);
      flume__buf b = FLUME__BUF_INIT;
      if (flume__key_encode(L, -1, &b, err, sizeof err)) fail(err);
      size_t kl = b.len;
      if (t->suffix) {
        unsigned char s[8];
        for (int j = 0; j < 8; j++)
          s[j] = (unsigned char)(seq >> (56 - 8 * j));
        flume__buf_append(&b, s, 8);
      }
      int dup = 0;
      for (size_t j = 0; j < t->n && !dup; j++)
        dup = cmp_mem(t->ents[j].data, t->ents[j].len, b.data, b.len) == 0;
      if (dup) {
        flume__buf_free(&b);
        lua_pop(L, 1);
        continue;
      }
      t->ents[t->n] = b;
      t->key_len[t->n] = kl;
      t->key_ref[t->n] = luaL_ref(L, LUA_REGISTRYINDEX);
      t->n++;
    }
  }
  /* Insertion sort: a few hundred entries, once. */
  for (size_t i = 1; i < t->n; i++) {
    for (size_t j = i; j > 0; j--) {
      flume__buf *a = &t->ents[j - 1], *b = &t->ents[j];
      if (cmp_mem(a->data, a->len, b->data, b->len) <= 0) break;
      flume__buf tb = *a;
      *a = *b;
      *b = tb;
      size_t tl = t->key_len[j - 1];
      t->key_len[j - 1] = t->key_len[j];
      t->key_len[j] = tl;
      int tr = t->key_ref[j - 1];
      t->key_ref[j - 1] = t->key_ref[j];
      t->key_ref[j] = tr;
    }
  }
}

static void setup(void) {
  if ((L = luaL_newstate()) == NULL) fail("no Lua state");
  luaL_openlibs(L);
  if (luaL_loadstring(L, keys_src) || lua_pcall(L, 0, 1, 0))
    fail(lua_tostring(L, -1));
  int keys = lua_gettop(L);
  int nkeys = (int)lua_rawlen(L, keys);
  uv_loop_init(&loop);
  flume_db_options o;
  flume_db_options_init(&o);
  o.codec = "msgpack";
  if (flume_db_open(&loop, NULL, &o, &db)) fail("open");
  /* The values: { k = key }, msgpack-encoded, the list twice. */
  flume_buf *vals = calloc(2 * (size_t)nkeys, sizeof *vals);
  flume__buf *bufs = calloc(2 * (size_t)nkeys, sizeof *bufs);
  if (!vals || !bufs) fail("out of memory");
  char err[256];
  for (int i = 0; i < 2 * nkeys; i++) {
    lua_createtable(L, 0, 1);
    lua_rawgeti(L, keys, i % nkeys + 1);
    lua_setfield(L, -2, "k");
    if (flume__mp_encode(L, -1, &bufs[i], err, sizeof err)) fail(err);
    lua_pop(L, 1);
    vals[i] = (flume_buf){bufs[i].data, bufs[i].len};
  }
  flume_view *ix = NULL, *gr = NULL;
  if (flume_view_use(db, "ix", index_script, strlen(index_script), on_use,
                     &ix) ||
      flume_view_use(db, "gr", group_script, strlen(group_script), on_use, &gr))
    fail(flume_db_errmsg(db));
  int64_t last = -1;
  if (flume_db_append(db, vals, 2 * (size_t)nkeys, on_append, &last))
    fail("append");
  uv_run(&loop, UV_RUN_DEFAULT);
  if (!ix || !gr || last != 2 * nkeys - 1) fail("setup did not finish");
  for (int i = 0; i < 2 * nkeys; i++)
    flume__buf_free(&bufs[i]);
  free(bufs);
  free(vals);
  tables[0] = (table){ix, 8, NULL, NULL, NULL, 0};
  tables[1] = (table){gr, 0, NULL, NULL, NULL, 0};
  build_table(&tables[0], keys, nkeys, 2);
  build_table(&tables[1], keys, nkeys, 2);
  if (tables[0].n > WANT_MAX) fail("more entries than WANT_MAX");
  lua_settop(L, 0);
}

/* What a read handed out. */
typedef struct got {
  flume__buf all; /* the entries, each as u32 length then bytes */
  size_t n;       /* how many */
} got;

static int collect(void *ctx, const char *key, size_t key_len, size_t entry_len,
                   const void *val, size_t val_len) {
  (void)key_len;
  (void)val;
  (void)val_len;
  got *g = ctx;
  uint32_t l = (uint32_t)entry_len;
  if (flume__buf_append(&g->all, &l, sizeof l) ||
      flume__buf_append(&g->all, key, entry_len))
    return FLUME_ENOMEM;
  g->n++;
  return 0;
}

/* Is entry i of t inside r (key part against the bounds, memcmp)? */
static int inside(const table *t, size_t i, const flume__range *r) {
  const char *k = t->ents[i].data;
  size_t kl = t->key_len[i];
  if (r->lo) {
    int c = cmp_mem(k, kl, r->lo, r->lo_len);
    if (c < 0 || (c == 0 && !r->lo_incl)) return 0;
  }
  if (r->hi) {
    int c = cmp_mem(k, kl, r->hi, r->hi_len);
    if (c > 0 || (c == 0 && !r->hi_incl)) return 0;
  }
  return 1;
}

/* The oracle's answer: indexes into t's entries, in read order, at most
 * `limit`. Returns how many. */
static size_t expect(const table *t, const flume__range *r, size_t limit,
                     size_t *out) {
  size_t n = 0;
  for (size_t j = 0; j < t->n && n < limit; j++) {
    size_t i = r->reverse ? t->n - 1 - j : j;
    if (inside(t, i, r)) out[n++] = i;
  }
  return n;
}

/* A bound as a Lua value at the top of the stack (stored key, stored key
 * with a tail, or a generated key). */
static void push_bound(fuzz_in *in, const table *t) {
  uint8_t how = take8(in);
  size_t i = take8(in) % t->n;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->key_ref[i]);
  if (how % 3 == 0) return;
  if (how % 3 == 1 && lua_type(L, -1) == LUA_TSTRING) {
    /* A tail: one byte repeated, up to 4 KiB. */
    uint8_t c = take8(in);
    size_t run = take16(in) % 4096;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushvalue(L, -2);
    luaL_addvalue(&b);
    for (size_t j = 0; j < run; j++)
      luaL_addchar(&b, (char)c);
    luaL_pushresult(&b);
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  fuzz_push_key(L, in, 3);
}

/* A raw bound (group table only): a stored entry cut or extended, or bytes
 * of the input. */
static void raw_bound(fuzz_in *in, const table *t, flume__buf *b) {
  uint8_t how = take8(in);
  if (how % 2 == 0) {
    const flume__buf *e = &t->ents[take8(in) % t->n];
    size_t keep = take16(in) % (e->len + 1);
    flume__buf_append(b, e->data, keep);
    uint8_t c = take8(in);
    size_t run = take16(in) % 4096;
    for (size_t j = 0; j < run; j++)
      flume__buf_append(b, &c, 1);
  } else {
    size_t len = take8(in);
    if (len > in->n) len = in->n;
    flume__buf_append(b, in->p, len);
    in->p += len;
    in->n -= len;
  }
}

/* A method's answer. */
typedef struct answer {
  int called;   /* the callback ran */
  flume__buf b; /* a copy of the result */
} answer;

static void on_call(void *ctx, int status, const void *res, size_t len) {
  answer *a = ctx;
  if (status) {
    fprintf(stderr, "%s\n", flume_db_errmsg(db));
    fail("the method failed");
  }
  a->called = 1;
  a->b.len = 0;
  if (flume__buf_append(&a->b, res, len)) fail("out of memory");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static flume__buf lo = FLUME__BUF_INIT, hi = FLUME__BUF_INIT;
  static flume__buf resume = FLUME__BUF_INIT, args = FLUME__BUF_INIT;
  static answer res = {0, FLUME__BUF_INIT};
  static got g = {FLUME__BUF_INIT, 0};
  static size_t want[WANT_MAX];
  if (db == NULL) setup();
  fuzz_in in = {data, size};
  uint8_t flags = take8(&in);
  int group = flags & 0x40, raw = group && (flags & 0x80);
  table *t = &tables[group ? 1 : 0];
  int has_lo = flags & 1, has_hi = flags & 4;
  flume__range r = {NULL, 0, flags & 2, NULL, 0, flags & 8, flags & 0x10};
  uint8_t chunk = take8(&in) % 9;
  size_t limit = take8(&in);
  if (limit == 0 || limit > t->n) limit = t->n; /* 0: no limit */
  lua_settop(L, 0);
  lo.len = hi.len = 0;
  char err[256];
  /* Bounds, as values at stack 1 (lo) and 2 (hi), nil when missing. */
  for (int side = 0; side < 2; side++) {
    flume__buf *b = side ? &hi : &lo;
    if (!(side ? has_hi : has_lo)) {
      lua_pushnil(L);
    } else if (raw) {
      raw_bound(&in, t, b);
      lua_pushnil(L);
    } else {
      push_bound(&in, t);
      if (flume__key_encode(L, -1, b, err, sizeof err)) fail(err);
    }
  }
  /* A raw bound may be empty: still a bound, below every entry. */
  if (has_lo) r.lo = lo.data ? lo.data : "", r.lo_len = lo.len;
  if (has_hi) r.hi = hi.data ? hi.data : "", r.hi_len = hi.len;

  size_t nwant = expect(t, &r, limit, want);

  /* 1. The reader itself, in chunks of `chunk` entries (0: one read). */
  size_t max = chunk ? chunk : SIZE_MAX, count;
  resume.len = 0;
  g.all.len = 0;
  g.n = 0;
  do {
    size_t room = limit - g.n < max ? limit - g.n : max;
    if (room == 0) break;
    int rc = flume__view_range(db, flume__view_table(t->view), t->suffix, &r,
                               room, &resume, collect, &g, &count);
    if (rc) fail(flume_strerror(rc));
    if (count < room) break;
  } while (g.n < limit);
  if (g.n != nwant) {
    fprintf(stderr, "read %zu entries, wanted %zu\n", g.n, nwant);
    fail("flume__view_range read the wrong entries");
  }
  size_t at = 0;
  for (size_t i = 0; i < g.n; i++) {
    uint32_t l;
    memcpy(&l, g.all.data + at, sizeof l);
    at += sizeof l;
    const flume__buf *e = &t->ents[want[i]];
    if (cmp_mem(g.all.data + at, l, e->data, e->len) != 0)
      fail("flume__view_range read the wrong entry");
    at += l;
  }

  /* 2. The same range through a method's read handle (encoded bounds). */
  if (raw || !(flags & 0x20)) return 0;
  lua_createtable(L, 1, 0);
  lua_createtable(L, 0, 4);
  if (has_lo) {
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, r.lo_incl ? "gte" : "gt");
  }
  if (has_hi) {
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, r.hi_incl ? "lte" : "lt");
  }
  lua_pushboolean(L, r.reverse);
  lua_setfield(L, -2, "reverse");
  lua_pushinteger(L, (lua_Integer)limit);
  lua_setfield(L, -2, "limit");
  lua_rawseti(L, -2, 1);
  args.len = 0;
  if (flume__mp_encode(L, -1, &args, err, sizeof err)) fail(err);
  res.called = 0;
  if (flume_view_call(t->view, "keys", args.data, args.len, 1, on_call, &res))
    fail("call");
  uv_run(&loop, UV_RUN_DEFAULT);
  if (!res.called) fail("the method never answered");
  if (flume__mp_decode(L, res.b.data, res.b.len, err, sizeof err)) fail(err);
  int list = lua_gettop(L);
  if (!lua_istable(L, list)) fail("the method did not return a list");
  /* An index read yields a key per entry, a group read one per key. */
  if (lua_rawlen(L, list) != nwant) {
    fprintf(stderr, "h.read gave %zu keys, wanted %zu\n",
            (size_t)lua_rawlen(L, list), nwant);
    fail("a method's read handle read the wrong entries");
  }
  flume__buf kb = FLUME__BUF_INIT;
  for (size_t i = 0; i < nwant; i++) {
    lua_rawgeti(L, list, (lua_Integer)i + 1);
    kb.len = 0;
    if (flume__key_encode(L, -1, &kb, err, sizeof err)) fail(err);
    const flume__buf *e = &t->ents[want[i]];
    if (cmp_mem(kb.data, kb.len, e->data, t->key_len[want[i]]) != 0)
      fail("a method's read handle read the wrong key");
    lua_pop(L, 1);
  }
  flume__buf_free(&kb);
  lua_settop(L, 0);
  return 0;
}
