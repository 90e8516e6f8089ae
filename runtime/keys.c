/*
 * View keys: Lua values to bytes whose memcmp order is the key order of
 * keys.h. Views keep index and group entries in LMDB under these bytes and
 * read ranges by memcmp, so the order here is the order users see.
 *
 * The scheme, one tag byte then the body:
 *
 *   false    10
 *   true     11
 *   number   20 <D: 8 bytes> 00                  a float, D its own double
 *            20 <D: 8 bytes> 01                  an integer equal to D
 *            20 <D: 8 bytes> 02 <I: 8 bytes>     any other integer
 *   string   30 <bytes, 00 as 01 01, 01 as 01 02> 00
 *   array    50 <each element's encoding> 00
 *
 * D is a double in sortable form: its IEEE bits big-endian, all bits
 * flipped for a negative number and just the sign bit for a non-negative
 * one, so that unsigned byte order is numeric order from -inf to +inf.
 * For an integer, D is the largest double <= the integer (rounding toward
 * -inf, so that no double lies strictly between D and the integer); I is
 * then the int64 big-endian with its sign bit flipped. That orders numbers
 * by value exactly across the whole int64 range:
 *   - a float f against an integer i: if f < i then f <= D(i), so either
 *     f's D is smaller or they tie on D and the subtype (00 < 01, 02) puts
 *     the float first; if f > i then f > D(i). If f == i the float comes
 *     first, which is the documented order of 3.0 and 3;
 *   - two integers: D is monotonic, and integers that share a D are told
 *     apart by the subtype (01 is exactly D, 02 is above it) and then by I.
 * Integers that a double holds exactly (all of |i| <= 2^53) need no I, so
 * the common key is 10 bytes. -0.0 is encoded as 0.0: Lua says they are
 * equal and the documented order says equal-valued floats are one key, so
 * a read of -0.0 finds 0.0's entries; it decodes as 0.0. NaN is not a key.
 *
 * Strings: the escape keeps 00 out of a string's body, so its first 00 is
 * its end whatever bytes come after it (an index appends a seq; a reverse
 * range seek appends ff bytes). The escape preserves order (00 -> 01 01 <
 * 01 -> 01 02 < 02..ff unchanged), and the terminator is below every body
 * byte, so a string sorts before any string it is a prefix of.
 *
 * Arrays: every element starts with a tag >= 10, above the 00 terminator,
 * so a prefix array sorts first and arrays compare element by element.
 *
 * Tags are spaced so that a type can be added between two others later.
 * Every encoding is self-delimiting and no encoding is a prefix of another,
 * so `key || suffix` entries sort by key first whatever the suffixes. The
 * decoder accepts only canonical encodings (what the encoder writes), so
 * decoding then encoding gives back the same bytes.
 */
#include "keys.h"

#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "flume.h"

enum {
  TAG_END = 0x00,
  TAG_FALSE = 0x10,
  TAG_TRUE = 0x11,
  TAG_NUMBER = 0x20,
  TAG_STRING = 0x30,
  TAG_ARRAY = 0x50
};

/* The byte after a number's D. */
enum { NUM_FLOAT = 0x00, NUM_INT = 0x01, NUM_BIGINT = 0x02 };

/* String escapes: ESC then one of these stands for a 00 or 01 byte. */
enum { ESC = 0x01, ESC_00 = 0x01, ESC_01 = 0x02 };

#define SIGN64 (UINT64_C(1) << 63)
/* A number's longest encoding: tag, D, subtype, I. */
#define NUM_MAX 18

/* The number scheme relies on 64-bit two's-complement integers and IEEE
 * binary64 floats, Lua 5.4's default configuration. */
_Static_assert(sizeof(lua_Integer) == 8 && LUA_MININTEGER == INT64_MIN,
               "lua_Integer must be a 64-bit integer");
_Static_assert(sizeof(lua_Number) == 8 && FLT_RADIX == 2 &&
                   DBL_MANT_DIG == 53 && DBL_MAX_EXP == 1024,
               "lua_Number must be an IEEE double");

static inline void put64(unsigned char *w, uint64_t x) {
  for (int i = 7; i >= 0; i--) {
    w[i] = (unsigned char)x;
    x >>= 8;
  }
}

static inline uint64_t get64(const unsigned char *r) {
  uint64_t x = 0;
  for (int i = 0; i < 8; i++) x = x << 8 | r[i];
  return x;
}

static inline uint64_t dbl_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static inline double bits_dbl(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

/* d's bits in an order where unsigned comparison is numeric comparison
 * (d is not NaN and not -0.0). */
static inline uint64_t sortable(double d) {
  uint64_t u = dbl_bits(d);
  return u & SIGN64 ? ~u : u | SIGN64;
}

static inline uint64_t unsortable(uint64_t s) {
  return s & SIGN64 ? s ^ SIGN64 : ~s;
}

/*
 * The largest double <= i, and whether it equals i. The conversion may
 * round up (to nearest by default, or under any rounding mode a caller
 * set), and then the double just below is the answer: the rounding is off
 * by less than one step. Comparing the double with i is done in integers,
 * where it is exact: a double that rounds to 2^63 is past every int64, and
 * any other one in range converts back without loss.
 */
static double floor_double(int64_t i, int *exact) {
  double d = (double)i;
  if (d >= 0x1p63 || (int64_t)d > i) {
    /* One step toward -inf; d is not 0 here, since 0 converts exactly. */
    uint64_t u = dbl_bits(d);
    d = bits_dbl(u & SIGN64 ? u + 1 : u - 1);
  }
  *exact = (int64_t)d == i;
  return d;
}

/* Encoding. */

typedef struct enc {
  lua_State *L;  /* the state holding the key */
  flume__buf *b; /* where the encoding goes */
  char *err;     /* the caller's message buffer */
  size_t errlen; /* its size in bytes */
  /* The index taken at each level of arrays down to the value being
   * encoded, for messages. */
  lua_Integer path[FLUME__KEY_MAX_DEPTH + 1];
} enc;

/* Writes the message, then " at [i][j]" for the first `depth` steps of the
 * path, where the offending value sits. */
static int enc_fail(enc *e, int rc, int depth, const char *fmt, ...) {
  if (e->err == NULL || e->errlen == 0) return rc;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(e->err, e->errlen, fmt, ap);
  va_end(ap);
  size_t at = n < 0 ? 0 : (size_t)n;
  for (int i = 0; i < depth && at < e->errlen; i++) {
    n = snprintf(e->err + at, e->errlen - at, "%s[%" PRId64 "]",
                 i == 0 ? " at " : "", (int64_t)e->path[i]);
    if (n < 0) break;
    at += (size_t)n;
  }
  return rc;
}

/* A short printable form of the table key at the top of the stack, to show
 * which key made a table a map. Reads it without converting it in place. */
static void describe_key(lua_State *L, char *out, size_t outlen) {
  switch (lua_type(L, -1)) {
  case LUA_TNUMBER:
    if (lua_isinteger(L, -1))
      snprintf(out, outlen, "%" PRId64, (int64_t)lua_tointeger(L, -1));
    else
      snprintf(out, outlen, "%.17g", (double)lua_tonumber(L, -1));
    return;
  case LUA_TSTRING: {
    size_t len, at = 0;
    const unsigned char *s = (const unsigned char *)lua_tolstring(L, -1, &len);
    size_t show = len > 24 ? 24 : len;
    if (outlen < 8) {
      if (outlen) out[0] = '\0';
      return;
    }
    out[at++] = '"';
    for (size_t i = 0; i < show && at + 6 < outlen; i++) {
      if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
        out[at++] = (char)s[i];
      else
        at += (size_t)snprintf(out + at, outlen - at, "\\x%02x", s[i]);
    }
    if (show < len && at + 4 < outlen) {
      memcpy(out + at, "...", 3);
      at += 3;
    }
    out[at++] = '"';
    out[at] = '\0';
    return;
  }
  case LUA_TBOOLEAN:
    snprintf(out, outlen, "%s", lua_toboolean(L, -1) ? "true" : "false");
    return;
  default:
    snprintf(out, outlen, "a %s", lua_typename(L, lua_type(L, -1)));
    return;
  }
}

static int encode_value(enc *e, int idx, int depth);

static int encode_number(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  unsigned char *w;
  if (flume__buf_reserve(e->b, NUM_MAX))
    return enc_fail(e, FLUME_ENOMEM, 0, "out of memory");
  w = (unsigned char *)e->b->data + e->b->len;
  w[0] = TAG_NUMBER;
  if (lua_isinteger(L, idx)) {
    int64_t i = (int64_t)lua_tointeger(L, idx);
    int exact;
    double d = floor_double(i, &exact);
    put64(w + 1, sortable(d));
    if (exact) {
      w[9] = NUM_INT;
      e->b->len += 10;
    } else {
      w[9] = NUM_BIGINT;
      put64(w + 10, (uint64_t)i ^ SIGN64);
      e->b->len += 18;
    }
    return 0;
  }
  double d = (double)lua_tonumber(L, idx);
  if (d != d) return enc_fail(e, FLUME_EINVAL, depth, "a key cannot be NaN");
  if (d == 0) d = 0.0; /* -0.0 is the same key as 0.0 */
  put64(w + 1, sortable(d));
  w[9] = NUM_FLOAT;
  e->b->len += 10;
  return 0;
}

static int encode_string(enc *e, int idx) {
  size_t len;
  const unsigned char *s =
      (const unsigned char *)lua_tolstring(e->L, idx, &len);
  /* Worst case every byte doubles; keys are short, so reserving that is
   * cheaper than counting first. */
  if (len > (SIZE_MAX - 2) / 2 || flume__buf_reserve(e->b, 2 * len + 2))
    return enc_fail(e, FLUME_ENOMEM, 0, "out of memory");
  unsigned char *w0 = (unsigned char *)e->b->data + e->b->len, *w = w0;
  *w++ = TAG_STRING;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = s[i];
    if (c > ESC) {
      *w++ = c;
    } else {
      *w++ = ESC;
      *w++ = c == 0 ? ESC_00 : ESC_01;
    }
  }
  *w++ = TAG_END;
  e->b->len += (size_t)(w - w0);
  return 0;
}

/*
 * A table is a key only if its keys are exactly 1..n. One pass over its
 * entries checks that every key is a positive integer and finds the count
 * and the largest, which are equal exactly when there is no hole. All
 * access is raw: a key is data, and encoding must not run user code.
 */
static int encode_table(enc *e, int t, int depth) {
  lua_State *L = e->L;
  if (depth >= FLUME__KEY_MAX_DEPTH)
    return enc_fail(e, FLUME_EINVAL, depth,
                    "a key cannot nest arrays more than %d deep",
                    FLUME__KEY_MAX_DEPTH);
  if (!lua_checkstack(L, 3))
    return enc_fail(e, FLUME_ENOMEM, 0, "out of Lua stack space");
  size_t start = e->b->len;
  unsigned char tag = TAG_ARRAY;
  if (flume__buf_append(e->b, &tag, 1))
    return enc_fail(e, FLUME_ENOMEM, 0, "out of memory");
  /* Lua traverses a table's array part first and in order, so usually the
   * elements come as 1, 2, 3...: encode each as it comes, and read by
   * index only when they do not. */
  lua_Integer count = 0, max = 0;
  int in_order = 1;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_Integer k;
    if (!lua_isinteger(L, -2) || (k = lua_tointeger(L, -2)) < 1) {
      char what[64];
      lua_pop(L, 1);
      describe_key(L, what, sizeof what);
      lua_pop(L, 1);
      return enc_fail(e, FLUME_EINVAL, depth,
                      "a key cannot be a table with non-sequence keys "
                      "(such as %s)",
                      what);
    }
    if (in_order && k == count + 1) {
      e->path[depth] = k;
      int rc = encode_value(e, lua_gettop(L), depth + 1);
      if (rc) {
        lua_pop(L, 2);
        return rc;
      }
    } else {
      in_order = 0;
    }
    lua_pop(L, 1);
    if (k > max) max = k;
    count++;
  }
  if (count != max) {
    /* Only `count` keys, so one of 1..count+1 is missing. */
    lua_Integer hole = 1;
    while (lua_rawgeti(L, t, hole) != LUA_TNIL) {
      lua_pop(L, 1);
      hole++;
    }
    lua_pop(L, 1);
    e->path[depth] = hole;
    return enc_fail(e, FLUME_EINVAL, depth + 1,
                    "a key cannot be an array with a hole: nil");
  }
  if (!in_order) {
    /* Keys 1..n, but some came from the hash part: start over by index. */
    e->b->len = start + 1;
    for (lua_Integer i = 1; i <= max; i++) {
      lua_rawgeti(L, t, i);
      e->path[depth] = i;
      int rc = encode_value(e, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
      if (rc) return rc;
    }
  }
  tag = TAG_END;
  if (flume__buf_append(e->b, &tag, 1))
    return enc_fail(e, FLUME_ENOMEM, 0, "out of memory");
  return 0;
}

/* depth: how many arrays enclose the value, and so the length of its path. */
static int encode_value(enc *e, int idx, int depth) {
  switch (lua_type(e->L, idx)) {
  case LUA_TBOOLEAN: {
    unsigned char tag = lua_toboolean(e->L, idx) ? TAG_TRUE : TAG_FALSE;
    if (flume__buf_append(e->b, &tag, 1))
      return enc_fail(e, FLUME_ENOMEM, 0, "out of memory");
    return 0;
  }
  case LUA_TNUMBER:
    return encode_number(e, idx, depth);
  case LUA_TSTRING:
    return encode_string(e, idx);
  case LUA_TTABLE:
    return encode_table(e, idx, depth);
  case LUA_TNIL:
  case LUA_TNONE:
    return enc_fail(e, FLUME_EINVAL, depth, "a key cannot be nil");
  case LUA_TLIGHTUSERDATA:
  case LUA_TUSERDATA:
    return enc_fail(e, FLUME_EINVAL, depth, "a key cannot be a userdata");
  default:
    return enc_fail(e, FLUME_EINVAL, depth, "a key cannot be a %s",
                    lua_typename(e->L, lua_type(e->L, idx)));
  }
}

int flume__key_encode(lua_State *L, int idx, flume__buf *b, char *err,
                      size_t errlen) {
  enc e;
  e.L = L;
  e.b = b;
  e.err = err;
  e.errlen = errlen;
  if (err && errlen) err[0] = '\0';
  int top = lua_gettop(L);
  size_t len = b->len;
  int rc = encode_value(&e, lua_absindex(L, idx), 0);
  if (rc) {
    b->len = len;
    lua_settop(L, top);
  }
  return rc;
}

/* Decoding, and checking without Lua when L is NULL. */

typedef struct dec {
  lua_State *L;           /* where values go; NULL to only check */
  const unsigned char *p; /* the bytes */
  size_t n;               /* how many */
  size_t pos;             /* the next byte to read */
  char *err;              /* the message buffer, or NULL */
  size_t errlen;          /* its size in bytes */
} dec;

static int dec_fail(dec *d, size_t at, const char *fmt, ...) {
  if (d->err == NULL || d->errlen == 0) return FLUME_EDECODE;
  int n = snprintf(d->err, d->errlen, "bad key encoding: ");
  size_t off = n < 0 ? 0 : (size_t)n;
  if (off < d->errlen) {
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(d->err + off, d->errlen - off, fmt, ap);
    va_end(ap);
    off += n < 0 ? 0 : (size_t)n;
  }
  if (off < d->errlen)
    snprintf(d->err + off, d->errlen - off, " at byte %zu", at);
  return FLUME_EDECODE;
}

static int decode_number(dec *d) {
  size_t at = d->pos;
  if (d->n - at < 10) return dec_fail(d, at, "truncated number");
  const unsigned char *r = d->p + at;
  uint64_t bits = unsortable(get64(r + 1));
  double x = bits_dbl(bits);
  if (x != x) return dec_fail(d, at, "number is NaN");
  if (bits == SIGN64) return dec_fail(d, at, "number is -0.0");
  switch (r[9]) {
  case NUM_FLOAT:
    if (d->L) lua_pushnumber(d->L, (lua_Number)x);
    d->pos += 10;
    return 0;
  case NUM_INT:
    /* Every integral double in [-2^63, 2^63) is an int64 exactly. */
    if (!(x >= -0x1p63 && x < 0x1p63) || (double)(int64_t)x != x)
      return dec_fail(d, at, "integer number is not an int64");
    if (d->L) lua_pushinteger(d->L, (lua_Integer)(int64_t)x);
    d->pos += 10;
    return 0;
  case NUM_BIGINT: {
    if (d->n - at < 18) return dec_fail(d, at, "truncated integer");
    int64_t i = (int64_t)(get64(r + 10) ^ SIGN64);
    int exact;
    double f = floor_double(i, &exact);
    if (exact || dbl_bits(f) != bits)
      return dec_fail(d, at, "integer %" PRId64 " does not match its double",
                      i);
    if (d->L) lua_pushinteger(d->L, (lua_Integer)i);
    d->pos += 18;
    return 0;
  }
  default:
    return dec_fail(d, at + 9, "unknown number subtype 0x%02x", r[9]);
  }
}

static int decode_string(dec *d) {
  size_t at = d->pos;
  const unsigned char *s = d->p + at + 1;
  size_t left = d->n - at - 1;
  const unsigned char *end = memchr(s, TAG_END, left);
  if (end == NULL) return dec_fail(d, at, "string has no terminator");
  size_t len = (size_t)(end - s), escapes = 0;
  for (const unsigned char *q = memchr(s, ESC, len); q;
       q = memchr(q, ESC, (size_t)(end - q))) {
    if (q + 1 == end || (q[1] != ESC_00 && q[1] != ESC_01))
      return dec_fail(d, (size_t)(q - d->p), "bad string escape");
    escapes++;
    q += 2;
  }
  if (d->L) {
    if (escapes == 0) {
      lua_pushlstring(d->L, (const char *)s, len);
    } else {
      luaL_Buffer B;
      char *w = luaL_buffinitsize(d->L, &B, len - escapes);
      size_t o = 0;
      for (size_t i = 0; i < len; i++) {
        if (s[i] == ESC) {
          w[o++] = s[i + 1] == ESC_00 ? '\0' : '\1';
          i++;
        } else {
          w[o++] = (char)s[i];
        }
      }
      luaL_pushresultsize(&B, o);
    }
  }
  d->pos = (size_t)(end - d->p) + 1;
  return 0;
}

static int decode_value(dec *d, int depth);

static int decode_array(dec *d, int depth) {
  size_t at = d->pos;
  if (depth >= FLUME__KEY_MAX_DEPTH)
    return dec_fail(d, at, "arrays nested more than %d deep",
                    FLUME__KEY_MAX_DEPTH);
  d->pos++;
  if (d->L) {
    /* Sized up front, since growing a table one element at a time costs
     * more than a pass over bytes. A bad element just ends the count: the
     * pass below reports it. */
    dec s = {NULL, d->p, d->n, d->pos, NULL, 0};
    int n = 0;
    while (n < INT_MAX && s.pos < s.n && s.p[s.pos] != TAG_END &&
           decode_value(&s, depth + 1) == 0)
      n++;
    lua_createtable(d->L, n, 0);
  }
  for (lua_Integer i = 1;; i++) {
    if (d->pos >= d->n) return dec_fail(d, at, "array has no terminator");
    if (d->p[d->pos] == TAG_END) {
      d->pos++;
      return 0;
    }
    int rc = decode_value(d, depth + 1);
    if (rc) return rc;
    if (d->L) lua_rawseti(d->L, -2, i);
  }
}

/* depth: how many arrays enclose the value. */
static int decode_value(dec *d, int depth) {
  if (d->pos >= d->n) return dec_fail(d, d->pos, "no key");
  unsigned char tag = d->p[d->pos];
  switch (tag) {
  case TAG_FALSE:
  case TAG_TRUE:
    if (d->L) lua_pushboolean(d->L, tag == TAG_TRUE);
    d->pos++;
    return 0;
  case TAG_NUMBER:
    return decode_number(d);
  case TAG_STRING:
    return decode_string(d);
  case TAG_ARRAY:
    return decode_array(d, depth);
  default:
    return dec_fail(d, d->pos, "unknown tag 0x%02x", tag);
  }
}

/* Like any function that pushes, this raises if Lua runs out of memory;
 * everything about the bytes is checked and reported without raising. */
int flume__key_decode(lua_State *L, const char *p, size_t n, size_t *used,
                      char *err, size_t errlen) {
  int top = lua_gettop(L);
  if (err && errlen) err[0] = '\0';
  /* Each open array holds its table and the element being decoded, and a
   * string with escapes a buffer: check the stack once for the deepest. */
  if (!lua_checkstack(L, 2 * FLUME__KEY_MAX_DEPTH + 4)) {
    if (err && errlen) snprintf(err, errlen, "out of Lua stack space");
    return FLUME_ENOMEM;
  }
  dec d = {L, (const unsigned char *)p, n, 0, err, errlen};
  int rc = decode_value(&d, 0);
  if (rc) {
    lua_settop(L, top);
    return rc;
  }
  if (used) *used = d.pos;
  return 0;
}

size_t flume__key_length(const char *p, size_t n) {
  dec d = {NULL, (const unsigned char *)p, n, 0, NULL, 0};
  return decode_value(&d, 0) ? 0 : d.pos;
}
