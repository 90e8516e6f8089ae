/*
 * Decoding only what a view reads.
 *
 * The indexer hands every Lua view the same decoded value. A view whose
 * `map` reads two fields of a twenty-field value should not pay for the
 * other eighteen (their key strings interned, their strings copied, a
 * table slot each), so a value that is a msgpack map reaches views as a
 * proxy: an empty table, sized for its fields, with a metatable whose
 * __index decodes the one field asked for from the value's bytes and
 * caches it in the table (rawset), so that the next read of it is a
 * plain table read. Why this and not a projection the script declares
 * (`fields = {...}`): it needs nothing of the script, cannot be declared
 * wrong, and a script that reads every field pays a bounded extra (see
 * SCANS) instead of a failure.
 *
 * The value's bytes, the offsets of its keys and values and what has been
 * decoded live in a userdata (the holder), in the proxy under a key no
 * script can name (a light userdata; a table of proxies to holders with
 * weak keys cost some 5% more). Results stay those of a full decode:
 *
 * - The bytes are checked whole when the proxy is made, accepting exactly
 *   what flume__mp_decode accepts (a refused value is handed to it for its
 *   message): a bad value fails the views where it always did.
 * - A field decoded and then removed by the script (value.a = nil, a raw
 *   write no metamethod sees) stays removed: its pairs are marked decoded,
 *   and __index of a decoded field answers nil.
 * - Anything that looks at the table as a whole makes it whole first
 *   (every field decoded, the holder and the metatable gone, so it is an
 *   ordinary table from then on): __newindex, __len, and the sandbox's
 *   next, pairs, rawget, rawset, rawlen and setmetatable (host.c), whose
 *   getmetatable answers nil for a proxy. ipairs and the table library go
 *   through __index and __len. The encoders (msgpack for states and
 *   accumulators, keys.c for keys) walk tables with lua_next: the pipeline
 *   settles (flume__lazy_settle) whatever it hands them.
 * - Duplicate keys (a map the encoder never writes, but a C append can):
 *   the last one wins, as in the decoder.
 *
 * What differs, and is unspecified for any Lua table: the order in which
 * pairs visits the fields, and which border # picks in a table that is
 * not a sequence.
 *
 * Decoding a field happens inside a view's call, but it is the runtime's
 * work: it is charged to the runtime's memory account, as the whole value
 * was, so a view holding values costs what it did.
 */
#include "views/lazy.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mpcheck.h"
#include "msgpack.h"
#include "views/charge.h"

/* Fields an __index may look up before the proxy is made whole: each
 * lookup scans the keys, so a script reading many fields (or missing
 * many) pays at most SCANS scans before it pays a full decode. */
#define SCANS 8
/* Maps of fewer pairs are decoded whole: the proxy costs more than it
 * saves. */
#define LAZY_MIN_PAIRS 2
/* Slots a proxy is created with: room for the fields a view reads (a
 * table of all of them, as the decoder makes, costs most of what lazy
 * decoding saves on a wide value); it grows as Lua tables grow. */
#define PRESIZE 3

/* The key of the holder in a proxy, and of the metatable in the
 * registry: addresses no script can make. */
static const char holder_key = 'h';
static const char mt_key = 'm';

/* What a proxy needs to decode its fields; followed in the same block by
 * off[2 * n + 1] (key i at off[2i], its value at off[2i + 1], the end of
 * the map at off[2n]), done[n] and the bytes. */
typedef struct holder {
  uint32_t n;    /* pairs */
  uint32_t len;  /* bytes of the value */
  uint32_t left; /* lookups left before a full decode */
} holder;

static uint32_t *h_off(holder *h) { return (uint32_t *)(h + 1); }
static unsigned char *h_done(holder *h) {
  return (unsigned char *)(h_off(h) + 2 * (size_t)h->n + 1);
}
static const unsigned char *h_bytes(holder *h) { return h_done(h) + h->n; }

static uint32_t get16(const unsigned char *r) {
  return (uint32_t)r[0] << 8 | r[1];
}
static uint32_t get32(const unsigned char *r) {
  return (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 |
         r[3];
}

/* ---- proxies ------------------------------------------------------------ */

/* The holder of the proxy at idx, or NULL. */
static holder *holder_of(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return NULL;
  lua_rawgetp(L, idx, &holder_key);
  holder *h = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return h;
}

int flume__lazy_is(lua_State *L, int idx) { return holder_of(L, idx) != NULL; }

/* Pushes the validated value from off[a] to off[b]. */
static void push_part(lua_State *L, holder *h, uint32_t a, uint32_t b) {
  char err[160];
  const uint32_t *off = h_off(h);
  if (flume__mp_decode(L, (const char *)h_bytes(h) + off[a], off[b] - off[a],
                       err, sizeof err))
    luaL_error(L, "flume: ECORRUPT: a value changed under a view: %s", err);
}

/* Pushes the value of pair i: what flume__mp_decode pushes for it, the
 * scalars fields mostly are decoded here (the bytes are checked already),
 * the rest by it. */
static void push_value(lua_State *L, holder *h, uint32_t i) {
  const unsigned char *p = h_bytes(h) + h_off(h)[2 * i + 1];
  unsigned c = *p;
  uint64_t u;
  if (c < 0x80) {
    lua_pushinteger(L, (lua_Integer)c);
  } else if (c >= 0xe0) {
    lua_pushinteger(L, (lua_Integer)c - 256);
  } else if (c >= 0xa0 && c <= 0xbf) {
    lua_pushlstring(L, (const char *)p + 1, c & 0x1f);
  } else {
    switch (c) {
    case 0xc0: lua_pushnil(L); break;
    case 0xc2: lua_pushboolean(L, 0); break;
    case 0xc3: lua_pushboolean(L, 1); break;
    case 0xc4:
    case 0xd9: lua_pushlstring(L, (const char *)p + 2, p[1]); break;
    case 0xcc: lua_pushinteger(L, (lua_Integer)p[1]); break;
    case 0xcd: lua_pushinteger(L, (lua_Integer)get16(p + 1)); break;
    case 0xce: lua_pushinteger(L, (lua_Integer)get32(p + 1)); break;
    case 0xd0: lua_pushinteger(L, (lua_Integer)(int8_t)p[1]); break;
    case 0xd1: lua_pushinteger(L, (lua_Integer)(int16_t)get16(p + 1)); break;
    case 0xd2: lua_pushinteger(L, (lua_Integer)(int32_t)get32(p + 1)); break;
    case 0xca: {
      float f;
      u = get32(p + 1);
      uint32_t u32 = (uint32_t)u;
      memcpy(&f, &u32, 4);
      lua_pushnumber(L, (lua_Number)f);
      break;
    }
    case 0xcb:
    case 0xcf:
    case 0xd3: {
      u = (uint64_t)get32(p + 1) << 32 | get32(p + 5);
      if (c == 0xcb) {
        double f;
        memcpy(&f, &u, 8);
        lua_pushnumber(L, (lua_Number)f);
      } else if (c == 0xd3) {
        lua_pushinteger(L, (lua_Integer)(int64_t)u);
      } else if (u > (uint64_t)INT64_MAX) {
        lua_pushnumber(L, (lua_Number)u); /* as the decoder does */
      } else {
        lua_pushinteger(L, (lua_Integer)u);
      }
      break;
    }
    default: push_part(L, h, 2 * i + 1, 2 * i + 2);
    }
  }
}

/* Decodes every field not decoded yet into the proxy at idx (absolute),
 * then drops its holder and metatable. */
static void materialize(lua_State *L, int idx, holder *h) {
  unsigned char *done = h_done(h);
  luaL_checkstack(L, 4, NULL);
  uint32_t made = 0;
  for (uint32_t i = 0; i < h->n; i++) {
    if (done[i]) continue;
    push_part(L, h, 2 * i, 2 * i + 1);
    push_value(L, h, i);
    lua_rawset(L, idx);
    done[i] = 1;
    made++;
  }
  flume__charge_of(L)->lazy.reads += made;
  lua_pushnil(L);
  lua_rawsetp(L, idx, &holder_key);
  lua_pushnil(L);
  lua_setmetatable(L, idx);
}

void flume__lazy_materialize(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  holder *h = holder_of(L, idx);
  if (h == NULL) return;
  uint32_t was = flume__charge_to(L, 0);
  materialize(L, idx, h);
  flume__charge_to(L, was);
}

/* Whether key i of h equals the Lua key at index 2 of type kt (the
 * string ks[kl] when it is one). */
static int key_is(lua_State *L, holder *h, uint32_t i, int kt,
                  const char *ks, size_t kl) {
  const unsigned char *k = h_bytes(h) + h_off(h)[2 * i];
  unsigned c = *k;
  if (kt == LUA_TSTRING) {
    size_t n, hl;
    if (c >= 0xa0 && c <= 0xbf) {
      n = c & 0x1f;
      hl = 1;
    } else if (c == 0xd9 || c == 0xc4) {
      n = k[1];
      hl = 2;
    } else if (c == 0xda || c == 0xc5) {
      n = get16(k + 1);
      hl = 3;
    } else if (c == 0xdb || c == 0xc6) {
      n = get32(k + 1);
      hl = 5;
    } else {
      return 0;
    }
    return kl == n && memcmp(ks, k + hl, n) == 0;
  }
  if (kt == LUA_TBOOLEAN)
    return (c == 0xc2 || c == 0xc3) && (c == 0xc3) == lua_toboolean(L, 2);
  /* A number: compared as Lua compares table keys (2 == 2.0). */
  if (c == 0xc2 || c == 0xc3 || (c >= 0xa0 && c <= 0xbf) || c == 0xc4 ||
      c == 0xc5 || c == 0xc6 || c == 0xd9 || c == 0xda || c == 0xdb)
    return 0;
  push_part(L, h, 2 * i, 2 * i + 1);
  int eq = lua_rawequal(L, -1, 2);
  lua_pop(L, 1);
  return eq;
}

/* __index(proxy, key): the field, decoded now and cached in the proxy. */
static int lazy_index(lua_State *L) {
  lua_settop(L, 2);
  holder *h = holder_of(L, 1);
  int kt = lua_type(L, 2);
  if (h == NULL) return 0;
  flume__charge *charge = flume__charge_of(L);
  uint32_t was = charge->current;
  charge->current = 0;
  charge->lazy.reads++;
  if (h->left == 0) {
    /* Many lookups: decode the rest once, not scan again and again. */
    materialize(L, 1, h);
    flume__charge_to(L, was);
    lua_settop(L, 2);
    lua_rawget(L, 1);
    return 1;
  }
  h->left--;
  if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
    flume__charge_to(L, was);
    return 0; /* no msgpack key decodes to one */
  }
  unsigned char *done = h_done(h);
  uint32_t last = UINT32_MAX, matches = 0;
  size_t kl = 0;
  const char *ks = kt == LUA_TSTRING ? lua_tolstring(L, 2, &kl) : NULL;
  if (kt == LUA_TSTRING) {
    /* The usual key, a fixstr, compared here; other string encodings
     * (str 8/16/32, bin) by key_is. */
    const uint32_t *off = h_off(h);
    const unsigned char *b = h_bytes(h);
    unsigned fix = kl < 32 ? 0xa0 | (unsigned)kl : 0x100;
    for (uint32_t i = 0; i < h->n; i++) {
      const unsigned char *k = b + off[2 * i];
      unsigned c = *k;
      if (c == fix ? kl == 0 || (k[1] == (unsigned char)ks[0] &&
                                 memcmp(k + 1, ks, kl) == 0)
                   : (c >= 0xc4 && c <= 0xdb && (c <= 0xc6 || c >= 0xd9)) &&
                         key_is(L, h, i, kt, ks, kl)) {
        last = i;
        matches++;
      }
    }
  } else {
    for (uint32_t i = 0; i < h->n; i++)
      if (key_is(L, h, i, kt, ks, kl)) {
        last = i;
        matches++;
      }
  }
  if (last == UINT32_MAX || done[last]) {
    /* Absent, or decoded and removed by the script since. */
    flume__charge_to(L, was);
    return 0;
  }
  push_value(L, h, last);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  for (uint32_t i = 0; i < h->n && matches > 1; i++)
    if (key_is(L, h, i, kt, ks, kl)) done[i] = 1;
  done[last] = 1;
  flume__charge_to(L, was);
  return 1;
}

/* (key, value) into a new table: Lua's own error for a key no table
 * takes. */
static int set_fresh(lua_State *L) {
  lua_newtable(L);
  lua_insert(L, 1);
  lua_rawset(L, 1);
  return 0;
}

/* __newindex(proxy, key, value): the proxy is made whole, then written.
 * The error of a key no table takes (nil, NaN) is Lua's, raised with the
 * caller's position, as the VM raises it on an ordinary table. */
static int lazy_newindex(lua_State *L) {
  if (lua_isnil(L, 2) || (lua_type(L, 2) == LUA_TNUMBER &&
                          !lua_isinteger(L, 2) && isnan(lua_tonumber(L, 2)))) {
    lua_pushcfunction(L, set_fresh);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
      return luaL_error(L, "%s", lua_tostring(L, -1));
  }
  flume__lazy_materialize(L, 1);
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}

/* __len(proxy): the proxy is made whole; its length is then its own. */
static int lazy_len(lua_State *L) {
  flume__lazy_materialize(L, 1);
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
  return 1;
}

void flume__lazy_init(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, lazy_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, lazy_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, lazy_len);
  lua_setfield(L, -2, "__len");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mt_key);
}

/* Where the field at p (p < end) ends, or NULL where flume__mp_check
 * would refuse it at depth 1: the scalars fields mostly are, here; the
 * rest through flume__mp_check. */
static inline const unsigned char *skip_field(const unsigned char *p,
                                              const unsigned char *end) {
  size_t left = (size_t)(end - p), n;
  unsigned c = *p;
  if (c < 0x80 || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
    return p + 1;
  if (c >= 0xa0 && c <= 0xbf) {
    n = c & 0x1f;
    return n < left ? p + 1 + n : NULL;
  }
  size_t fixed = flume__mp_fixed_len(c);
  if (fixed) return left < fixed ? NULL : p + fixed;
  switch (c) {
  case 0xc4:
  case 0xd9:
    if (left < 2) return NULL;
    n = p[1];
    return n <= left - 2 ? p + 2 + n : NULL;
  default:
    return flume__mp_check(p, end, 1);
  }
}

/* flume__mp_check_pairs(p, end, n, 0, off, base), with the fields'
 * scalars checked inline (skip_field): what it accepts, and the same
 * offsets. */
static const unsigned char *check_pairs(const unsigned char *p,
                                        const unsigned char *end, uint64_t n,
                                        uint32_t *off,
                                        const unsigned char *base) {
  if (n > (uint64_t)(end - p) / 2) return NULL;
  for (uint64_t i = 0; i < n; i++) {
    if (p == end) return NULL;
    unsigned c = *p;
    if (c == 0xc0 || (c >= 0x80 && c <= 0x9f) || (c >= 0xdc && c <= 0xdf))
      return NULL;
    off[2 * i] = (uint32_t)(p - base);
    const unsigned char *k = p;
    if (!(p = skip_field(p, end))) return NULL;
    if (c == 0xca) {
      uint32_t u = get32(k + 1);
      float f;
      memcpy(&f, &u, 4);
      if (isnan(f)) return NULL;
    } else if (c == 0xcb) {
      uint64_t u = (uint64_t)get32(k + 1) << 32 | get32(k + 5);
      double f;
      memcpy(&f, &u, 8);
      if (isnan(f)) return NULL;
    }
    off[2 * i + 1] = (uint32_t)(p - base);
    if (p == end || !(p = skip_field(p, end))) return NULL;
  }
  off[2 * n] = (uint32_t)(p - base);
  return p;
}

/* ---- choosing --------------------------------------------------------- */

/*
 * A proxy pays for itself only when views read few of a value's fields:
 * making one costs about as much as decoding two pairs, and each field
 * read through it about two pairs more than a plain table read (the
 * metamethod call, the scan, the cache in the proxy). Fitted on the
 * benchmark's rows (instructions per value in the indexer, callgrind): a
 * group view reading one field of five is 10% cheaper lazily, four views
 * reading three of five 15% dearer, a group view reading two of twenty
 * half the cost. So the indexer asks before each slice, and values are
 * decoded lazily while the views read, per value, fewer than
 * pairs / 2 - 1 fields, judged every SAMPLE values; whole otherwise,
 * trying lazily again every PROBE values, for views come and go and what
 * they read changes.
 */
#define SAMPLE 512
#define PROBE 32768

int flume__lazy_choose(lua_State *L) {
  flume__charge *c = flume__charge_of(L);
  if (c->lazy.off) {
    if (c->lazy.whole < PROBE) return 0;
    c->lazy.off = 0;
    c->lazy.values = c->lazy.pairs = c->lazy.reads = 0;
    return 1;
  }
  if (c->lazy.values >= SAMPLE) {
    if (2 * (c->lazy.reads + c->lazy.values) >= c->lazy.pairs) {
      c->lazy.off = 1;
      c->lazy.whole = 0;
    }
    c->lazy.values = c->lazy.pairs = c->lazy.reads = 0;
  }
  return !c->lazy.off;
}

void flume__lazy_decoded_whole(lua_State *L, size_t n) {
  flume__charge_of(L)->lazy.whole += n;
}

void flume__lazy_push_meta(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &mt_key);
}

int flume__lazy_decode(lua_State *L, const char *p, size_t n, char *err,
                       size_t errlen) {
  if (!lua_checkstack(L, 1)) return flume__mp_decode(L, p, n, err, errlen);
  flume__lazy_push_meta(L);
  int rc = flume__lazy_decode_meta(L, lua_gettop(L), p, n, err, errlen);
  lua_remove(L, rc ? -1 : -2);
  return rc;
}

int flume__lazy_decode_meta(lua_State *L, int mt, const char *p, size_t n,
                            char *err, size_t errlen) {
  const unsigned char *s = (const unsigned char *)p, *end = s + n;
  uint64_t pairs;
  size_t hl;
  unsigned c = n ? s[0] : 0;
  if (c >= 0x80 && c <= 0x8f) {
    pairs = c & 0x0f;
    hl = 1;
  } else if (c == 0xde && n >= 3) {
    pairs = get16(s + 1);
    hl = 3;
  } else if (c == 0xdf && n >= 5) {
    pairs = get32(s + 1);
    hl = 5;
  } else {
    return flume__mp_decode(L, p, n, err, errlen);
  }
  if (pairs < LAZY_MIN_PAIRS || n > UINT32_MAX / 2 ||
      pairs > (n - hl) / 2 || !lua_checkstack(L, 4))
    return flume__mp_decode(L, p, n, err, errlen);
  size_t size = sizeof(holder) + 4 * (2 * (size_t)pairs + 1) +
                (size_t)pairs + n;
  lua_createtable(L, 0, (int)(pairs < PRESIZE ? pairs : PRESIZE) + 1);
  holder *h = lua_newuserdatauv(L, size, 0);
  h->n = (uint32_t)pairs;
  h->len = (uint32_t)n;
  h->left = SCANS;
  const unsigned char *q = check_pairs(s + hl, end, pairs, h_off(h), s);
  if (q != end) {
    lua_pop(L, 2);
    return flume__mp_decode(L, p, n, err, errlen); /* its message */
  }
  memset(h_done(h), 0, pairs);
  memcpy((unsigned char *)h_bytes(h), s, n);
  flume__charge *charge = flume__charge_of(L);
  charge->lazy.values++;
  charge->lazy.pairs += pairs;
  lua_rawsetp(L, -2, &holder_key);
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
  return 0;
}

/* ---- settling ------------------------------------------------------------ */

/* Settles the table at idx (absolute) and what it holds; seen: the
 * tables walked already (absolute index). */
static void settle(lua_State *L, int idx, int depth, int seen) {
  holder *h = holder_of(L, idx);
  if (h) materialize(L, idx, h);
  if (depth > FLUME__MP_MAX_DEPTH || !lua_checkstack(L, 6)) return;
  lua_pushvalue(L, idx);
  if (lua_rawget(L, seen) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, seen);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if (lua_type(L, top) == LUA_TTABLE) settle(L, top, depth + 1, seen);
    if (lua_type(L, top - 1) == LUA_TTABLE)
      settle(L, top - 1, depth + 1, seen);
    lua_pop(L, 1);
  }
}

void flume__lazy_settle(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return;
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  settle(L, idx, 0, lua_gettop(L));
  lua_pop(L, 1);
}
