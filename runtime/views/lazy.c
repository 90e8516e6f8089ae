/*
 * Decoding only what a view reads.
 *
 * The indexer hands every Lua view the same decoded value. A view whose
 * `map` reads two fields of a twenty-field value should not pay for the
 * other eighteen (their key strings interned, their strings copied, a
 * table slot each), so a value that is a msgpack map reaches views as a
 * proxy: an empty table with a metatable whose __index decodes the one
 * field asked for from the value's bytes. Why this and not a projection
 * the script declares (`fields = {...}`): it needs nothing of the script,
 * cannot be declared wrong, and a script that reads every field pays a
 * bounded extra (see SCANS) instead of a failure.
 *
 * What a proxy needs lives in a userdata (the holder), in the proxy under
 * a key no script can name (a light userdata; a table of proxies to
 * holders with weak keys cost some 5% more): the offsets of the value's
 * keys, a tag of each key (its first four bytes, so that a lookup
 * compares a word a pair, not the names), what has been decoded, and
 * where the value's bytes are (RING below). Results stay those of a full
 * decode:
 *
 * - The bytes are checked whole when the proxy is made, accepting exactly
 *   what flume__mp_decode accepts (a refused value is handed to it for its
 *   message): a bad value fails the views where it always did.
 * - A field that is a table (a map or an array) is cached in the proxy
 *   (rawset) when first read, so that it is the same table at every read
 *   and keeps what the view changes in it; its pairs are marked decoded,
 *   so that a script removing it (value.a = nil, a raw write no
 *   metamethod sees) finds it removed: __index of a decoded field answers
 *   nil. A field that is a string, number, boolean or nil is not cached:
 *   it is a plain value, the same whenever it is decoded, and the proxy
 *   stays one slot. Writing one of those goes through __newindex, which
 *   makes the proxy whole first.
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
#include <stdlib.h>
#include <string.h>

#include "internal.h"
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

/*
 * RING. The bytes of the values the indexer reads (flume__lazy_decode_meta
 * with a seq) are not copied into each holder: that copy and the
 * collector's share of it were most of what a proxy cost. They go into a
 * ring of RING bytes per host, and a holder points into it. Each slice
 * of the indexer writes it from its start (flume__lazy_choose), so the
 * same few hundred KiB stay in the cache from one slice to the next; what
 * does not fit in it is copied into its holder, as every value used to
 * be. A cut slice's values, which the indexer keeps for its next turn,
 * are handed on before the next slice begins.
 *
 * A proxy a view keeps beyond its slice (in a reduce state until the
 * checkpoint settles it, in a local of its script, forever) may outlive
 * its bytes in the ring. A holder knows its place in the ring (`pos`, in
 * bytes since the ring was made, counting what each slice skipped to
 * start at the ring's start) and the ring how far it has been written,
 * so a holder whose bytes were written over knows it; its value is then
 * read back from the log, which never changes, by its seq (refetch: once,
 * into a new holder that owns the bytes, checked to have the same pairs).
 * So a kept proxy keeps nothing of the ring, memory stays what the views
 * keep, and the cost of keeping one is a log read when it is read again.
 */
#define RING ((size_t)256 << 10)
/* Bytes of a value that always go to its holder, so that big values do
 * not crowd the ring. */
#define RING_VALUE_MAX (RING / 8)
/* Bytes a value's copy is followed by (zeros, or the ring's next bytes),
 * so that check_pairs may read a little past a field without checking:
 * a key's tag, the byte after a field's first. */
#define PAD 8

/* A holder's pos when it owns its bytes. */
#define OWNED UINT64_MAX

/*
 * SEEN. __index finds the holder of the proxy it is called on without
 * looking it up in the proxy (lua_rawgetp, ~140 instructions a field
 * read): proxies are remembered by address when made, in a small table
 * of the ring. An entry is right when its address is the proxy's: __index
 * is only ever called on a live proxy (its metatable is no script's to
 * give to another table), a live proxy's address is no other object's,
 * its holder lives as long as it holds it, and the proxy made last at an
 * address wrote its entry. A proxy that changes its holder (refetch) or
 * drops it (made whole) writes or clears its entry.
 */
#define SEEN 512

static unsigned seen_slot(const void *t) {
  return (unsigned)(((uintptr_t)t >> 4) ^ ((uintptr_t)t >> 13)) % SEEN;
}

/* The ring, found through the host's charge (lazy.ring). */
typedef struct ring {
  uint64_t written; /* bytes taken since it was made (the next value's pos) */
  uint64_t start;   /* what was written when the slice began (a multiple
                       of RING: the ring's start) */
  struct {
    const void *proxy; /* a proxy's table (lua_topointer) */
    struct holder *h;  /* its holder */
  } seen[SEEN];        /* proxies made lately, by address (see SEEN) */
  unsigned char buf[RING + PAD];
} ring;

/* The key of the holder in a proxy, of the metatable and of the ring in
 * the registry: addresses no script can make. */
static const char holder_key = 'h';
static const char mt_key = 'm';
static const char ring_key = 'r';

/* What a proxy needs to decode its fields; followed in the same block by
 * tag[n] (the first four bytes of key i, zero-padded), off[n + 1] (key i
 * at off[i]: its value starts where it ends; off[n] is the end of the
 * map), done[n], and, when the holder owns them, the bytes. */
typedef struct holder {
  const unsigned char *bytes; /* the value's len bytes (ring or own) */
  uint64_t pos;               /* where in the ring, or OWNED */
  int64_t seq;                /* its seq in the log, if in the ring */
  uint32_t n;                 /* pairs */
  uint32_t len;               /* bytes of the value */
  uint32_t left;              /* lookups left before a full decode */
  uint32_t odd;               /* a string key that is not a fixstr */
} holder;

static uint32_t *h_tag(holder *h) { return (uint32_t *)(h + 1); }
static uint32_t *h_off(holder *h) { return h_tag(h) + h->n; }
static unsigned char *h_done(holder *h) {
  return (unsigned char *)(h_off(h) + h->n + 1);
}
/* Bytes of a holder of n pairs, without the value's bytes. */
static size_t holder_size(uint64_t n) {
  return sizeof(holder) + 4 * (2 * (size_t)n + 1) + (size_t)n;
}

static uint32_t get16(const unsigned char *r) {
  return (uint32_t)r[0] << 8 | r[1];
}
static uint32_t get32(const unsigned char *r) {
  return (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 |
         r[3];
}

/*
 * What the first byte c of a msgpack item says, for the checks below: the
 * item's size (bits 0-5) when c alone gives it, plus the byte after c when
 * bits 16-23 are L8 (str 8, bin 8); 0: flume__mp_check decides (str and
 * bin 16 and 32, arrays, maps, and what the decoder refuses). As a map's
 * key: KN refused (nil, arrays, maps), KF refused when NaN (floats), KS a
 * string that is not a fixstr.
 */
#define KF 0x40u
#define KN 0x80u
#define KS 0x100u
#define L8 0xff0000u
static const uint32_t ITEM[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN,
    KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN, KN,
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    1 | KN, 0, 1, 1, 2 | L8 | KS, KS, KS, 0, 0, 0, 5 | KF, 9 | KF, 2, 3, 5, 9,
    2, 3, 5, 9, 0, 0, 0, 0, 0, 2 | L8 | KS, KS, KS, KN, KN, KN, KN,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* The size of the item at p (left > 0 bytes from p on) that ITEM gives,
 * or 0 when flume__mp_check must tell; it may exceed left. */
static inline size_t item_size(const unsigned char *p, size_t left,
                               uint32_t t) {
  return (t & 63) + (p[left > 1] & (t >> 16));
}

/* Where key i's value starts (the key is checked). */
static uint32_t val_off(holder *h, uint32_t i) {
  const uint32_t *off = h_off(h);
  const unsigned char *k = h->bytes + off[i];
  size_t size = item_size(k, 2, ITEM[*k]); /* a value follows the key */
  if (size) return off[i] + (uint32_t)size;
  return (uint32_t)(flume__mp_check(k, h->bytes + h->len, 1) - h->bytes);
}

/* Where the key at p (p < end, not a fixstr) ends, or NULL where the
 * decoder refuses it; *keys gets its ITEM bits. */
static const unsigned char *check_key(const unsigned char *p,
                                      const unsigned char *end,
                                      uint32_t *keys) {
  size_t left = (size_t)(end - p);
  uint32_t t = ITEM[*p];
  *keys |= t;
  if (t & KN) return NULL;
  if (t & KF) {
    if (left < (t & 63)) return NULL;
    if (*p == 0xca) {
      uint32_t u = get32(p + 1);
      float f;
      memcpy(&f, &u, 4);
      if (isnan(f)) return NULL;
    } else {
      uint64_t u = (uint64_t)get32(p + 1) << 32 | get32(p + 5);
      double f;
      memcpy(&f, &u, 8);
      if (isnan(f)) return NULL;
    }
  }
  size_t size = item_size(p, left, t);
  if (size == 0) return flume__mp_check(p, end, 1);
  return size <= left ? p + size : NULL;
}

/* flume__mp_check_pairs(p, end, n, 0, ...) for bytes followed by PAD
 * more: what it accepts, with off, tag and done as the holder keeps them
 * (offsets from base) and *odd set when a string key is not a fixstr.
 * The usual pair, a fixstr key and a scalar (or an array of scalars),
 * is checked here, the rest by flume__mp_check. A step past end is
 * caught before the next read (p >= end), and such a step is at most
 * a few hundred bytes: nothing is read past end + PAD. */
static const unsigned char *check_pairs(const unsigned char *p,
                                        const unsigned char *end, uint64_t n,
                                        uint32_t *off, uint32_t *tag,
                                        unsigned char *done, uint32_t *odd,
                                        const unsigned char *base) {
  uint32_t keys = 0;
  if (n > (uint64_t)(end - p) / 2) return NULL;
  for (uint64_t i = 0; i < n; i++) {
    if (p >= end) return NULL;
    unsigned c = *p;
    off[i] = (uint32_t)(p - base);
    memcpy(&tag[i], p, 4);
    done[i] = 0;
    if ((c & 0xe0) == 0xa0) p += 1 + (c & 0x1f);
    else if (!(p = check_key(p, end, &keys))) return NULL;
    if (p >= end) return NULL;
    c = *p;
    uint32_t t = ITEM[c];
    size_t size = (t & 63) + (p[1] & (t >> 16));
    if (size) {
      p += size;
    } else if ((c & 0xf0) == 0x90) {
      /* An array of up to 15: scalars here, anything else by the
       * checker from the array's start. */
      const unsigned char *q = p + 1;
      unsigned j = c & 0x0f;
      for (; j > 0 && q < end; j--) {
        t = ITEM[*q];
        if (!(size = (t & 63) + (q[1] & (t >> 16)))) break;
        q += size;
      }
      if (j == 0 && q <= end) p = q;
      else if (!(p = flume__mp_check(p, end, 1))) return NULL;
    } else if (!(p = flume__mp_check(p, end, 1))) {
      return NULL;
    }
  }
  off[n] = (uint32_t)(p - base);
  *odd = keys & KS;
  return p;
}

/* ---- the ring and the log ---------------------------------------------- */

/* __gc of the ring's anchor: frees the ring with the state. */
static int ring_free(lua_State *L) {
  ring **a = lua_touserdata(L, 1);
  free(*a);
  *a = NULL;
  return 0;
}

/* The ring of state L, made at its first use, or NULL (no memory). It is
 * not the state's memory but malloc's, held by an anchor in the registry:
 * as the state's it would count as live data, which paces the collector,
 * and a collector paced for a quarter MiB more lets a cycle's garbage
 * leave the cache before it is swept (callgrind: the narrow group
 * rebuild's L2 misses 4.7 -> 9.4 a value). */
static ring *ring_of(lua_State *L, flume__charge *c) {
  if (c->lazy.ring == NULL && !c->lazy.no_ring) {
    c->lazy.no_ring = 1; /* one try */
    ring **a = lua_newuserdatauv(L, sizeof *a, 0);
    *a = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, ring_free);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ring_key);
    ring *r = malloc(sizeof *r);
    if (r) {
      r->written = r->start = 0;
      memset(r->seen, 0, sizeof r->seen);
      memset(r->buf, 0, sizeof r->buf);
      *a = c->lazy.ring = r;
    }
  }
  return c->lazy.ring;
}

void flume__lazy_source(lua_State *L, flume_db *db) {
  flume__charge_of(L)->lazy.db = db;
}

/* Copies the value read back into the holder's bytes (ctx). */
static int read_back(void *ctx, int64_t seq, const void *data, size_t len) {
  holder *h = ctx;
  (void)seq;
  if (len != h->len) return FLUME_ECORRUPT;
  memcpy((unsigned char *)h->bytes, data, len);
  return 0;
}

/* Replaces the holder h of the proxy at idx (absolute), whose bytes the
 * ring has written over, with one that owns them, read back from the log;
 * returns it. Raises when the log cannot give the same value back. */
static holder *refetch(lua_State *L, int idx, holder *h) {
  flume_db *db = flume__charge_of(L)->lazy.db;
  size_t hs = holder_size(h->n);
  holder *nh = lua_newuserdatauv(L, hs + h->len + PAD, 0);
  memcpy(nh, h, hs);
  nh->bytes = (const unsigned char *)nh + hs;
  nh->pos = OWNED;
  memset((unsigned char *)nh->bytes + h->len, 0, PAD);
  /* No read-only refresh here: its since notifications would run other
   * code (a watcher's callback) inside this script call. */
  int rc = db ? flume__db_read_one(db, h->seq, read_back, nh) : FLUME_ECORRUPT;
  if (rc == 0) {
    /* The same value: the same pairs, where they were. */
    const unsigned char *b = nh->bytes, *q;
    uint32_t odd;
    size_t hl = *b <= 0x8f ? 1 : *b == 0xde ? 3 : 5;
    q = check_pairs(b + hl, b + h->len, h->n, h_off(nh), h_tag(nh),
                    h_done(nh), &odd, b);
    if (q != b + h->len || odd != h->odd ||
        memcmp(h_off(nh), h_off(h), 4 * ((size_t)h->n + 1)) != 0)
      rc = FLUME_ECORRUPT;
    memcpy(h_done(nh), h_done(h), h->n); /* what the proxy has decoded */
  }
  if (rc)
    luaL_error(L, "flume: %s: the value at seq %I cannot be read again "
                  "from the log for a view that kept it",
               flume_err_name(rc), (lua_Integer)h->seq);
  lua_rawsetp(L, idx, &holder_key);
  ring *r = flume__charge_of(L)->lazy.ring;
  const void *t = lua_topointer(L, idx);
  if (r && r->seen[seen_slot(t)].proxy == t) r->seen[seen_slot(t)].h = nh;
  return nh;
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

/* The holder of the proxy at idx (absolute) with its bytes at hand, or
 * NULL. */
static holder *holder_get(lua_State *L, int idx) {
  holder *h = holder_of(L, idx);
  if (h && h->pos != OWNED) {
    ring *r = flume__charge_of(L)->lazy.ring;
    if (r->written - h->pos > RING) h = refetch(L, idx, h);
  }
  return h;
}

int flume__lazy_is(lua_State *L, int idx) { return holder_of(L, idx) != NULL; }

/* Pushes the validated value from byte a to byte b. */
static void push_part(lua_State *L, holder *h, uint32_t a, uint32_t b) {
  char err[160];
  if (flume__mp_decode(L, (const char *)h->bytes + a, b - a, err,
                       sizeof err))
    luaL_error(L, "flume: ECORRUPT: a value changed under a view: %s", err);
}

/* Pushes the value of pair i: what flume__mp_decode pushes for it, the
 * scalars fields mostly are decoded here (the bytes are checked already),
 * the rest by it. Returns whether it is a table. */
static int push_value(lua_State *L, holder *h, uint32_t i) {
  uint32_t at = val_off(h, i);
  const unsigned char *p = h->bytes + at;
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
    default:
      push_part(L, h, at, h_off(h)[i + 1]);
      return (c >= 0x80 && c <= 0x9f) || (c >= 0xdc && c <= 0xdf);
    }
  }
  return 0;
}

/* Decodes every field not decoded yet into the proxy at idx (absolute),
 * then drops its holder and metatable. */
static void materialize(lua_State *L, int idx, holder *h) {
  unsigned char *done = h_done(h);
  luaL_checkstack(L, 4, NULL);
  uint32_t made = 0;
  for (uint32_t i = 0; i < h->n; i++) {
    if (done[i]) continue;
    push_part(L, h, h_off(h)[i], val_off(h, i));
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
  ring *r = flume__charge_of(L)->lazy.ring;
  const void *t = lua_topointer(L, idx);
  if (r && r->seen[seen_slot(t)].proxy == t) r->seen[seen_slot(t)].proxy = NULL;
}

void flume__lazy_materialize(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  uint32_t was = flume__charge_to(L, 0);
  holder *h = holder_get(L, idx);
  if (h) materialize(L, idx, h);
  flume__charge_to(L, was);
}

/* Whether key i of h equals the Lua key at index 2 of type kt (the
 * string ks[kl] when it is one). */
static int key_is(lua_State *L, holder *h, uint32_t i, int kt,
                  const char *ks, size_t kl) {
  const unsigned char *k = h->bytes + h_off(h)[i];
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
  push_part(L, h, h_off(h)[i], val_off(h, i));
  int eq = lua_rawequal(L, -1, 2);
  lua_pop(L, 1);
  return eq;
}

/* __index(proxy, key): the field, decoded now (and cached in the proxy
 * when it is a table). */
static int lazy_index(lua_State *L) {
  /* Called by the VM only (getmetatable hides a proxy's metatable): a
   * proxy and a key. What is pushed above them is left there. */
  flume__charge *charge = flume__charge_of(L);
  uint32_t was = charge->current;
  charge->current = 0;
  ring *r = charge->lazy.ring;
  const void *t = lua_topointer(L, 1);
  holder *h;
  if (r && r->seen[seen_slot(t)].proxy == t) {
    h = r->seen[seen_slot(t)].h;
  } else {
    lua_rawgetp(L, 1, &holder_key);
    h = lua_touserdata(L, -1);
    if (h == NULL) {
      charge->current = was;
      return 0;
    }
  }
  if (h->pos != OWNED && r->written - h->pos > RING) h = refetch(L, 1, h);
  int kt = lua_type(L, 2);
  charge->lazy.reads++;
  if (h->left == 0) {
    /* Many lookups: decode the rest once, not scan again and again. */
    materialize(L, 1, h);
    charge->current = was;
    lua_pushvalue(L, 2);
    lua_rawget(L, 1);
    return 1;
  }
  h->left--;
  uint32_t last = UINT32_MAX, matches = 0;
  size_t kl = 0;
  const char *ks = kt == LUA_TSTRING ? lua_tolstring(L, 2, &kl) : NULL;
  if (kt == LUA_TSTRING && kl < 32 && !h->odd) {
    /* The usual key, a fixstr among fixstr keys: its tag (its header and
     * first three bytes) against each pair's, then the rest. */
    unsigned char w[4] = {(unsigned char)(0xa0 | kl), 0, 0, 0};
    unsigned char m[4] = {0xff, 0, 0, 0};
    for (size_t j = 0; j < kl && j < 3; j++) {
      w[j + 1] = (unsigned char)ks[j];
      m[j + 1] = 0xff;
    }
    uint32_t want, mask;
    memcpy(&want, w, 4);
    memcpy(&mask, m, 4);
    const uint32_t *tag = h_tag(h), *off = h_off(h);
    for (uint32_t i = 0; i < h->n; i++)
      if ((tag[i] & mask) == want &&
          (kl <= 3 || memcmp(h->bytes + off[i] + 4, ks + 3, kl - 3) == 0)) {
        last = i;
        matches++;
      }
  } else if (kt == LUA_TSTRING || kt == LUA_TNUMBER ||
             kt == LUA_TBOOLEAN) {
    for (uint32_t i = 0; i < h->n; i++)
      if (key_is(L, h, i, kt, ks, kl)) {
        last = i;
        matches++;
      }
  }
  /* Absent (or a key no msgpack key decodes to), or a table decoded and
   * removed by the script since. */
  unsigned char *done = h_done(h);
  if (last == UINT32_MAX || done[last]) {
    charge->current = was;
    return 0;
  }
  if (push_value(L, h, last)) {
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    for (uint32_t i = 0; i < h->n && matches > 1; i++)
      if (key_is(L, h, i, kt, ks, kl)) done[i] = 1;
    done[last] = 1;
  }
  charge->current = was;
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
  ring *r = c->lazy.ring;
  if (r) { /* a slice begins: at the ring's start */
    if (r->written % RING) r->written += RING - r->written % RING;
    r->start = r->written;
  }
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
  int rc = flume__lazy_decode_meta(L, lua_gettop(L), -1, p, n, err, errlen);
  lua_remove(L, rc ? -1 : -2);
  return rc;
}

int flume__lazy_decode_meta(lua_State *L, int mt, int64_t seq, const char *p,
                            size_t n, char *err, size_t errlen) {
  const unsigned char *s = (const unsigned char *)p;
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
  flume__charge *charge = flume__charge_of(L);
  ring *r = NULL;
  if (seq >= 0 && charge->lazy.db && n <= RING_VALUE_MAX) {
    r = ring_of(L, charge);
    if (r && r->written - r->start + n > RING) r = NULL; /* it is full */
  }
  size_t hs = holder_size(pairs);
  lua_createtable(L, 0, 1);
  holder *h = lua_newuserdatauv(L, r ? hs : hs + n + PAD, 0);
  h->n = (uint32_t)pairs;
  h->len = (uint32_t)n;
  h->left = SCANS;
  /* Copied first, then checked where it is, followed by PAD bytes. */
  unsigned char *to;
  if (r) {
    to = r->buf + r->written % RING;
    h->pos = r->written;
    h->seq = seq;
  } else {
    to = (unsigned char *)h + hs;
    memset(to + n, 0, PAD);
    h->pos = OWNED;
    h->seq = -1;
  }
  memcpy(to, s, n);
  h->bytes = to;
  const unsigned char *q = check_pairs(to + hl, to + n, pairs, h_off(h),
                                       h_tag(h), h_done(h), &h->odd, to);
  if (q != to + n) {
    lua_pop(L, 2);
    return flume__mp_decode(L, p, n, err, errlen); /* its message */
  }
  if (r) r->written += n;
  charge->lazy.values++;
  charge->lazy.pairs += pairs;
  lua_rawsetp(L, -2, &holder_key);
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
  if ((r = charge->lazy.ring) != NULL) {
    const void *t = lua_topointer(L, -1);
    r->seen[seen_slot(t)].proxy = t;
    r->seen[seen_slot(t)].h = h;
  }
  return 0;
}

/* ---- settling ------------------------------------------------------------ */

/* Settles the table at idx (absolute) and what it holds; seen: the
 * tables walked already (absolute index). */
static void settle(lua_State *L, int idx, int depth, int seen) {
  holder *h = holder_get(L, idx);
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
