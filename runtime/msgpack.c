/*
 * The msgpack codec: flume's default codec and therefore its log format, so
 * what it writes must be plain MessagePack that any other implementation
 * reads. Both directions go straight between Lua values and bytes: the
 * indexer decodes every log entry and appends encode every value, so there
 * is no intermediate tree and no allocation per value besides the buffer.
 */
#include "msgpack.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "flume.h"

#define MP_NOINLINE __attribute__((noinline))
#define MP_INLINE inline __attribute__((always_inline))
#define MP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MP_LIKELY(x) __builtin_expect(!!(x), 1)

/* Long paths in messages keep their first and last steps, about this many
 * characters of each. */
#define MP_PATH_HALF 100
/* A string key longer than this is shortened in a path. */
#define MP_PATH_KEY 24
/* The decoder sizes a table from its header, up to this many entries: the
 * header's count is already bounded by the bytes left in the input, and
 * this bounds it again, so that a hostile header in a big input cannot
 * make it allocate far more than the input's size. Bigger tables grow. */
#define MP_PREALLOC_MAX (1u << 20)

static inline void put16(unsigned char *w, uint32_t x) {
  w[0] = (unsigned char)(x >> 8);
  w[1] = (unsigned char)x;
}

static inline void put32(unsigned char *w, uint32_t x) {
  w[0] = (unsigned char)(x >> 24);
  w[1] = (unsigned char)(x >> 16);
  w[2] = (unsigned char)(x >> 8);
  w[3] = (unsigned char)x;
}

static inline void put64(unsigned char *w, uint64_t x) {
  put32(w, (uint32_t)(x >> 32));
  put32(w + 4, (uint32_t)x);
}

static inline uint32_t get16(const unsigned char *r) {
  return (uint32_t)r[0] << 8 | r[1];
}

static inline uint32_t get32(const unsigned char *r) {
  return (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 |
         r[3];
}

static inline uint64_t get64(const unsigned char *r) {
  return (uint64_t)get32(r) << 32 | get32(r + 4);
}

/*
 * Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF): a str
 * must be text to every other msgpack reader, so anything doubtful goes out
 * as bin, which decodes to the same Lua string anyway.
 */
static int mp_utf8_valid(const unsigned char *s, size_t n) {
  const unsigned char *end = s + n;
  const uint64_t high = UINT64_C(0x8080808080808080);
  uint64_t w;
  while (s < end) {
    /* Keys and most text are ASCII: check 8 bytes per step, and the last
     * few by reading the final 8 again. */
    while ((size_t)(end - s) >= 8) {
      memcpy(&w, s, 8);
      if (w & high) break;
      s += 8;
    }
    if ((size_t)(end - s) < 8 && n >= 8) {
      memcpy(&w, end - 8, 8);
      if (!(w & high)) return 1;
    }
    while (s < end && *s < 0x80) s++;
    if (s == end) return 1;
    unsigned c = *s;
    size_t left = (size_t)(end - s);
    if (c >= 0xc2 && c <= 0xdf) {
      if (left < 2 || (s[1] & 0xc0) != 0x80) return 0;
      s += 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      if (left < 3 || (s[2] & 0xc0) != 0x80) return 0;
      unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
      if (s[1] < lo || s[1] > hi) return 0;
      s += 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      if (left < 4 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80) return 0;
      unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
      if (s[1] < lo || s[1] > hi) return 0;
      s += 4;
    } else {
      return 0;
    }
  }
  return 1;
}

/* ---------------------------------------------------------------- encode */

/* One step of the path from the value being encoded to one of its parts,
 * kept so that a refusal can say where the bad value is. */
typedef struct mp_step {
  int key;       /* stack index of the map key, or 0 for an array element */
  lua_Integer i; /* the 1-based array index when key is 0 */
} mp_step;

typedef struct mp_enc {
  lua_State *L;  /* the state holding the value */
  flume__buf *b; /* where the bytes go */
  char *err;     /* the caller's message buffer */
  size_t errlen; /* its size in bytes */
  int rc;        /* FLUME_EENCODE or FLUME_ENOMEM once something failed */
  /* The tables on the current path, outermost first, to find cycles. */
  const void *tables[FLUME__MP_MAX_DEPTH];
  /* steps[d] leads from the table at level d-1 to level d (1-based). */
  mp_step steps[FLUME__MP_MAX_DEPTH + 1];
} mp_enc;

static int ident_like(const char *s, size_t n) {
  if (n == 0 || n > MP_PATH_KEY) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (i > 0 && c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

/* Writes step d of the path into out (at least 8 + 4 * MP_PATH_KEY bytes)
 * and returns its length. */
static size_t step_render(mp_enc *e, int d, char *out, size_t outlen) {
  lua_State *L = e->L;
  const mp_step *st = &e->steps[d];
  int n;
  if (st->key == 0) {
    n = snprintf(out, outlen, "[%lld]", (long long)st->i);
  } else if (lua_type(L, st->key) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, st->key, &len);
    if (ident_like(s, len)) {
      n = snprintf(out, outlen, ".%.*s", (int)len, s);
    } else {
      size_t k = 0, m = len < MP_PATH_KEY ? len : MP_PATH_KEY;
      out[k++] = '[';
      out[k++] = '"';
      for (size_t i = 0; i < m; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
          k += (size_t)snprintf(out + k, outlen - k, "\\x%02x", c);
        else
          out[k++] = (char)c;
      }
      if (m < len) {
        memcpy(out + k, "...", 3);
        k += 3;
      }
      out[k++] = '"';
      out[k++] = ']';
      out[k] = '\0';
      n = (int)k;
    }
  } else if (lua_isinteger(L, st->key)) {
    n = snprintf(out, outlen, "[%lld]", (long long)lua_tointeger(L, st->key));
  } else if (lua_type(L, st->key) == LUA_TNUMBER) {
    n = snprintf(out, outlen, "[%.14g]", (double)lua_tonumber(L, st->key));
  } else {
    n = snprintf(out, outlen, "[%s]",
                 lua_toboolean(L, st->key) ? "true" : "false");
  }
  return n < 0 ? 0 : (size_t)n;
}

/*
 * Writes "<what> at <path>" as the error message. A path longer than
 * 2 * MP_PATH_HALF keeps whole steps from its start and its end around
 * "...", which is what a reader needs to find the spot.
 */
static MP_NOINLINE int enc_fail(mp_enc *e, int depth, const char *fmt, ...) {
  char what[160], path[2 * MP_PATH_HALF + 2 * (8 + 4 * MP_PATH_KEY) + 8];
  char step[8 + 4 * MP_PATH_KEY + 8];
  size_t lens[FLUME__MP_MAX_DEPTH + 1], total = 0, k = 0;
  va_list ap;

  e->rc = FLUME_EENCODE;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (depth == 0) {
    snprintf(e->err, e->errlen, "%s at the top level", what);
    return e->rc;
  }
  for (int d = 1; d <= depth; d++) {
    lens[d] = step_render(e, d, step, sizeof step);
    total += lens[d];
  }
  int head = depth, tail = depth + 1;
  if (total > 2 * MP_PATH_HALF) {
    size_t sum = 0;
    for (head = 0; head < depth && sum + lens[head + 1] <= MP_PATH_HALF;)
      sum += lens[++head];
    for (sum = 0; tail - 1 > head && sum + lens[tail - 1] <= MP_PATH_HALF;)
      sum += lens[--tail];
    if (tail == depth + 1 && head < depth) tail = depth; /* show the last */
  }
  for (int d = 1; d <= depth; d++) {
    if (d > head && d < tail) {
      if (d == head + 1) {
        memcpy(path + k, "...", 3);
        k += 3;
      }
      continue;
    }
    k += step_render(e, d, path + k, sizeof path - k);
  }
  path[k] = '\0';
  snprintf(e->err, e->errlen, "%s at %s", what, path);
  return e->rc;
}

static MP_NOINLINE int enc_grow(mp_enc *e, size_t n) {
  /* Big steps: the buffer is usually reused, so this happens rarely. */
  if (flume__buf_reserve(e->b, n < 256 ? 256 : n) == 0) return 0;
  e->rc = FLUME_ENOMEM;
  snprintf(e->err, e->errlen, "out of memory while encoding");
  return e->rc;
}

#define ENC_NEED(e, n)                                                         \
  ((e)->b->cap - (e)->b->len >= (n) ? 0 : enc_grow((e), (n)))
#define ENC_W(e) ((unsigned char *)(e)->b->data + (e)->b->len)

/* Writes v in its smallest form at w (room for 9 bytes); returns the
 * length. */
static inline size_t put_int(unsigned char *w, lua_Integer v) {
  if (v >= 0) {
    uint64_t u = (uint64_t)v;
    if (u < 0x80) {
      w[0] = (unsigned char)u;
      return 1;
    }
    if (u <= 0xff) {
      w[0] = 0xcc;
      w[1] = (unsigned char)u;
      return 2;
    }
    if (u <= 0xffff) {
      w[0] = 0xcd;
      put16(w + 1, (uint32_t)u);
      return 3;
    }
    if (u <= 0xffffffff) {
      w[0] = 0xce;
      put32(w + 1, (uint32_t)u);
      return 5;
    }
    w[0] = 0xcf;
    put64(w + 1, u);
    return 9;
  }
  if (v >= -32) {
    w[0] = (unsigned char)(uint64_t)v; /* negative fixint is the low byte */
    return 1;
  }
  if (v >= INT8_MIN) {
    w[0] = 0xd0;
    w[1] = (unsigned char)(uint64_t)v;
    return 2;
  }
  if (v >= INT16_MIN) {
    w[0] = 0xd1;
    put16(w + 1, (uint32_t)(uint64_t)v);
    return 3;
  }
  if (v >= INT32_MIN) {
    w[0] = 0xd2;
    put32(w + 1, (uint32_t)(uint64_t)v);
    return 5;
  }
  w[0] = 0xd3;
  put64(w + 1, (uint64_t)v);
  return 9;
}

static MP_INLINE int enc_int(mp_enc *e, lua_Integer v) {
  if (ENC_NEED(e, 9)) return e->rc;
  e->b->len += put_int(ENC_W(e), v);
  return 0;
}

static inline int enc_float(mp_enc *e, lua_Number x) {
  /* Always float64: the type tells every reader "float", so 1.0 stays a
   * float and NaN, inf and -0.0 survive bit for bit. */
  double d = (double)x;
  uint64_t u;
  if (ENC_NEED(e, 9)) return e->rc;
  memcpy(&u, &d, 8);
  unsigned char *w = ENC_W(e);
  w[0] = 0xcb;
  put64(w + 1, u);
  e->b->len += 9;
  return 0;
}

/* A str, bin, array or map header; `fix` is 0 when the type has no fix
 * form. The caller has reserved 5 bytes. */
static inline void enc_head(mp_enc *e, unsigned fix, unsigned fixmax,
                            unsigned c8, unsigned c16, size_t n) {
  unsigned char *w = ENC_W(e);
  if (fix && n <= fixmax) {
    w[0] = (unsigned char)(fix | n);
    e->b->len += 1;
  } else if (c8 && n <= 0xff) {
    w[0] = (unsigned char)c8;
    w[1] = (unsigned char)n;
    e->b->len += 2;
  } else if (n <= 0xffff) {
    w[0] = (unsigned char)c16;
    put16(w + 1, (uint32_t)n);
    e->b->len += 3;
  } else {
    w[0] = (unsigned char)(c16 + 1);
    put32(w + 1, (uint32_t)n);
    e->b->len += 5;
  }
}

static inline uint64_t ld64(const char *s) {
  uint64_t x;
  memcpy(&x, s, 8);
  return x;
}

static inline uint32_t ld32(const char *s) {
  uint32_t x;
  memcpy(&x, s, 4);
  return x;
}

/* A string that is not short ASCII: validated first when its header's size
 * depends on what it is (under 32 bytes: fixstr or bin8), else copied and
 * checked in one pass, the header written after. */
static MP_NOINLINE int enc_string_long(mp_enc *e, const char *s, size_t n,
                                       int depth) {
  if (MP_UNLIKELY(n > 0xffffffff))
    return enc_fail(e, depth, "string of %zu bytes is too long", n);
  if (ENC_NEED(e, n + 5)) return e->rc;
  if (n < 32) {
    if (mp_utf8_valid((const unsigned char *)s, n))
      enc_head(e, 0xa0, 31, 0xd9, 0xda, n);
    else
      enc_head(e, 0, 0, 0xc4, 0xc5, n);
    memcpy(ENC_W(e), s, n);
    e->b->len += n;
    return 0;
  }
  /* From 32 bytes on, str and bin headers have the same size. */
  size_t hl = n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
  unsigned char *w = ENC_W(e) + hl;
  const uint64_t high = UINT64_C(0x8080808080808080);
  uint64_t any = 0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    uint64_t a = ld64(s + i), b = ld64(s + i + 8);
    memcpy(w + i, &a, 8);
    memcpy(w + i + 8, &b, 8);
    any |= a | b;
  }
  if (i < n) {
    /* The last 16 bytes again (n >= 32): overlapping, never past the end. */
    uint64_t a = ld64(s + n - 16), b = ld64(s + n - 8);
    memcpy(w + n - 16, &a, 8);
    memcpy(w + n - 8, &b, 8);
    any |= a | b;
  }
  if ((any & high) && !mp_utf8_valid((const unsigned char *)s, n))
    enc_head(e, 0, 0, 0xc4, 0xc5, n);
  else
    enc_head(e, 0xa0, 31, 0xd9, 0xda, n);
  e->b->len += n;
  return 0;
}

/*
 * A string. Most are short ASCII (field names, words, ids): checked and
 * copied a word or two at a time, by loads that overlap when the length is
 * not a multiple of the word and never reach past the string's end. With
 * room in the buffer, that case calls nothing (no registers to save); the
 * rest, and growing, is enc_string_long's. The words are stored before
 * they are checked: past b->len, so a string that is not ASCII after all
 * is written over.
 */
static inline int enc_str(mp_enc *e, const char *s, size_t n, int depth) {
  flume__buf *buf = e->b;
  if (n <= 16 && buf->cap - buf->len > 16) {
    unsigned char *w = (unsigned char *)buf->data + buf->len;
    uint64_t high;
    if (n >= 8) {
      uint64_t a = ld64(s), b = ld64(s + n - 8);
      memcpy(w + 1, &a, 8);
      memcpy(w + 1 + n - 8, &b, 8);
      high = (a | b) & UINT64_C(0x8080808080808080);
    } else if (n >= 4) {
      uint32_t a = ld32(s), b = ld32(s + n - 4);
      memcpy(w + 1, &a, 4);
      memcpy(w + 1 + n - 4, &b, 4);
      high = (a | b) & 0x80808080u;
    } else if (n > 0) {
      /* 1 to 3 bytes: the first, middle and last cover them. */
      w[1] = (unsigned char)s[0];
      w[1 + (n >> 1)] = (unsigned char)s[n >> 1];
      w[n] = (unsigned char)s[n - 1];
      high = (unsigned char)(s[0] | s[n >> 1] | s[n - 1]) & 0x80u;
    } else {
      high = 0;
    }
    if (MP_LIKELY(high == 0)) {
      w[0] = (unsigned char)(0xa0 | n);
      buf->len += 1 + n;
      return 0;
    }
  }
  return enc_string_long(e, s, n, depth);
}

static inline int enc_string(mp_enc *e, int idx, int depth) {
  size_t n;
  const char *s = lua_tolstring(e->L, idx, &n);
  return enc_str(e, s, n, depth);
}

static const char *kind_name(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  return t == LUA_TLIGHTUSERDATA ? "light userdata" : lua_typename(L, t);
}

static int enc_table(mp_enc *e, int idx, int depth);
static MP_NOINLINE int enc_other(mp_enc *e, int t, int idx, int depth);

/* The value at idx, at `depth`. Inlined into the table walks (their
 * elements are mostly strings and numbers: no call for each), where a
 * nested table is the one recursive call. */
static MP_INLINE int enc_value(mp_enc *e, int idx, int depth) {
  lua_State *L = e->L;
  int t = lua_type(L, idx);
  if (t == LUA_TSTRING) return enc_string(e, idx, depth);
  if (t == LUA_TNUMBER) {
    if (lua_isinteger(L, idx)) return enc_int(e, lua_tointeger(L, idx));
    return enc_float(e, lua_tonumber(L, idx));
  }
  if (t == LUA_TTABLE) return enc_table(e, idx, depth);
  return enc_other(e, t, idx, depth);
}

/* A map key that is not a string. */
static MP_NOINLINE int enc_key_other(mp_enc *e, int t, int idx, int depth) {
  lua_State *L = e->L;
  if (t == LUA_TNUMBER) {
    if (lua_isinteger(L, idx)) return enc_int(e, lua_tointeger(L, idx));
    return enc_float(e, lua_tonumber(L, idx)); /* tables hold no NaN key */
  }
  if (t == LUA_TBOOLEAN) {
    if (ENC_NEED(e, 1)) return e->rc;
    *ENC_W(e) = lua_toboolean(L, idx) ? 0xc3 : 0xc2;
    e->b->len++;
    return 0;
  }
  return enc_fail(e, depth, "cannot use a %s as a map key in the table",
                  kind_name(L, idx));
}

/* A map key of the table at `depth` (whose path is steps[1..depth]). Type
 * tests are an if chain, not a switch: a switch's one indirect jump
 * mispredicts on every change of type. */
static inline int enc_key(mp_enc *e, int idx, int depth) {
  int t = lua_type(e->L, idx);
  if (MP_LIKELY(t == LUA_TSTRING)) return enc_string(e, idx, depth);
  return enc_key_other(e, t, idx, depth);
}

/*
 * Fills in the one-byte header left at `head` for a map or array of n
 * entries (fix is 0x80 or 0x90, c16 0xde or 0xdc). Tables are written
 * before their size is known, so past 15 entries the body moves up by 2 or
 * 4 bytes: one memmove per big table, cheaper than a second walk.
 */
static MP_NOINLINE int enc_finish_big(mp_enc *e, size_t head, size_t n,
                                      unsigned c16, int depth) {
  if (MP_UNLIKELY(n > 0xffffffff))
    return enc_fail(e, depth, "table with %zu entries is too big", n);
  size_t extra = n <= 0xffff ? 2 : 4;
  if (ENC_NEED(e, extra)) return e->rc;
  unsigned char *w = (unsigned char *)e->b->data + head;
  memmove(w + 1 + extra, w + 1, e->b->len - head - 1);
  e->b->len += extra;
  if (extra == 2) {
    w[0] = (unsigned char)c16;
    put16(w + 1, (uint32_t)n);
  } else {
    w[0] = (unsigned char)(c16 + 1);
    put32(w + 1, (uint32_t)n);
  }
  return 0;
}

static inline int enc_finish(mp_enc *e, size_t head, size_t n, unsigned fix,
                             unsigned c16, int depth) {
  if (MP_LIKELY(n <= 15)) {
    ((unsigned char *)e->b->data)[head] = (unsigned char)(fix | n);
    return 0;
  }
  return enc_finish_big(e, head, n, c16, depth);
}

/* The length of the value at p, which this encoder wrote. */
static size_t mp_skip(const unsigned char *p) {
  const unsigned char *q = p;
  uint64_t pending = 1;
  while (pending) {
    unsigned c = *q++;
    pending--;
    if (c < 0x80 || c >= 0xe0) continue;
    if (c < 0x90) {
      pending += 2 * (c & 0x0f);
    } else if (c < 0xa0) {
      pending += c & 0x0f;
    } else if (c < 0xc0) {
      q += c & 0x1f;
    } else {
      switch (c) {
      case 0xc4:
      case 0xd9:
        q += 1 + (size_t)q[0];
        break;
      case 0xc5:
      case 0xda:
        q += 2 + (size_t)get16(q);
        break;
      case 0xc6:
      case 0xdb:
        q += 4 + (size_t)get32(q);
        break;
      case 0xcc:
      case 0xd0:
        q += 1;
        break;
      case 0xcd:
      case 0xd1:
        q += 2;
        break;
      case 0xce:
      case 0xd2:
      case 0xca:
        q += 4;
        break;
      case 0xcf:
      case 0xd3:
      case 0xcb:
        q += 8;
        break;
      case 0xdc:
        pending += get16(q);
        q += 2;
        break;
      case 0xdd:
        pending += get32(q);
        q += 4;
        break;
      case 0xde:
        pending += 2 * (uint64_t)get16(q);
        q += 2;
        break;
      case 0xdf:
        pending += 2 * (uint64_t)get32(q);
        q += 4;
        break;
      default: /* nil, false, true */
        break;
      }
    }
  }
  return (size_t)(q - p);
}

/* Turns the k array elements written from `base` to the end of the buffer
 * into the map pairs 1 = first, ..., k = last, without encoding them
 * again (which, table inside table, could cost 2^depth). */
static int enc_elems_to_pairs(mp_enc *e, size_t base, lua_Integer k) {
  uint64_t n = (uint64_t)k, extra = n;
  /* Keys 1..127 take a byte, to 255 two, to 65535 three, then five, nine. */
  if (n > 127) extra += (n < 255 ? n : 255) - 127;
  if (n > 255) extra += 2 * ((n < 65535 ? n : 65535) - 255);
  if (n > 65535) extra += 4 * ((n < 0xffffffff ? n : 0xffffffff) - 65535);
  if (n > 0xffffffff) extra += 8 * (n - 0xffffffff);
  if (ENC_NEED(e, (size_t)extra)) return e->rc;
  unsigned char *d = (unsigned char *)e->b->data;
  size_t len = e->b->len, dst = base, src = base + (size_t)extra;
  memmove(d + src, d + base, len - base);
  /* The keys written so far never outgrow `extra`: dst stays <= src. */
  for (lua_Integer i = 1; i <= k; i++) {
    dst += put_int(d + dst, i);
    size_t m = mp_skip(d + src);
    memmove(d + dst, d + src, m);
    dst += m;
    src += m;
  }
  e->b->len = dst;
  return 0;
}

/*
 * A table whose first pair (on the stack) has a key that is not a positive
 * integer: a map, written as it is walked.
 */
static int enc_map_rest(mp_enc *e, int idx, int depth) {
  lua_State *L = e->L;
  int top = lua_gettop(L), key = top - 1;
  size_t head, n = 0;
  if (ENC_NEED(e, 1)) return e->rc;
  head = e->b->len++;
  e->steps[depth + 1].key = key;
  do {
    if (enc_key(e, key, depth) || enc_value(e, top, depth + 1)) return e->rc;
    lua_pop(L, 1);
    n++;
  } while (lua_next(L, idx));
  return enc_finish(e, head, n, 0x80, 0xde, depth);
}

/*
 * A table whose first pair (on the stack) has a positive integer key: an
 * array when every key is an integer >= 1 and the largest is at most twice
 * the count, else a map.
 */
static int enc_array_or_map(mp_enc *e, int idx, int depth) {
  lua_State *L = e->L;
  int top = lua_gettop(L), key = top - 1;
  size_t head, count;
  lua_Integer k = 0, max;
  int arr = 1;

  if (ENC_NEED(e, 1)) return e->rc;
  head = e->b->len++;
  e->steps[depth + 1].key = 0;
  /* Lua walks the array part first and in order, so the keys usually come
   * as 1, 2, 3...: write each element as it comes. */
  while (lua_isinteger(L, key) && lua_tointeger(L, key) == k + 1) {
    e->steps[depth + 1].i = ++k;
    if (enc_value(e, top, depth + 1)) return e->rc;
    lua_pop(L, 1);
    if (!lua_next(L, idx))
      return enc_finish(e, head, (size_t)k, 0x90, 0xdc, depth);
  }

  /* A key out of that order: count the rest to decide. */
  count = (size_t)k;
  max = k;
  do {
    count++;
    if (arr) {
      lua_Integer i;
      if (!lua_isinteger(L, key) || (i = lua_tointeger(L, key)) < 1)
        arr = 0;
      else if (i > max)
        max = i;
    }
    lua_pop(L, 1);
  } while (lua_next(L, idx));

  if (arr && (uint64_t)max <= 2 * (uint64_t)count) {
    /* 1..k are written already. */
    for (lua_Integer i = k + 1; i <= max; i++) {
      lua_rawgeti(L, idx, i);
      e->steps[depth + 1].i = i;
      if (enc_value(e, key, depth + 1)) return e->rc;
      lua_pop(L, 1);
    }
    return enc_finish(e, head, (size_t)max, 0x90, 0xdc, depth);
  }

  /* A map after all: 1..k are written as elements; give them their keys
   * and walk on from key k. */
  if (k > 0) {
    if (enc_elems_to_pairs(e, head + 1, k)) return e->rc;
    lua_pushinteger(L, k);
  } else {
    lua_pushnil(L);
  }
  e->steps[depth + 1].key = key;
  while (lua_next(L, idx)) {
    if (enc_key(e, key, depth) || enc_value(e, top, depth + 1)) return e->rc;
    lua_pop(L, 1);
  }
  return enc_finish(e, head, count, 0x80, 0xde, depth);
}

static int enc_table(mp_enc *e, int idx, int depth) {
  lua_State *L = e->L;
  const void *self = lua_topointer(L, idx);

  if (MP_UNLIKELY(depth >= FLUME__MP_MAX_DEPTH))
    return enc_fail(e, depth, "table nesting deeper than %d",
                    FLUME__MP_MAX_DEPTH);
  for (int d = 0; d < depth; d++)
    if (MP_UNLIKELY(e->tables[d] == self))
      return enc_fail(e, depth, "cyclic table");
  if (MP_UNLIKELY(!lua_checkstack(L, 3)))
    return enc_fail(e, depth, "Lua stack exhausted");
  e->tables[depth] = self;

  lua_pushnil(L);
  if (!lua_next(L, idx)) {
    if (ENC_NEED(e, 1)) return e->rc;
    /* {} has no way to say which it is: a map, unless marked an array */
    int arr = 0;
    if (lua_getmetatable(L, idx)) {
      lua_getfield(L, LUA_REGISTRYINDEX, FLUME__MP_ARRAY_MT);
      arr = lua_rawequal(L, -1, -2);
      lua_pop(L, 2);
    }
    *ENC_W(e) = arr ? 0x90 : 0x80;
    e->b->len++;
    return 0;
  }
  /* A record's first key is a string: a map, no need to look further. */
  if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1)
    return enc_map_rest(e, idx, depth);
  return enc_array_or_map(e, idx, depth);
}

/* nil, a boolean, or what cannot be encoded. */
static MP_NOINLINE int enc_other(mp_enc *e, int t, int idx, int depth) {
  if (t == LUA_TNIL || t == LUA_TBOOLEAN) {
    if (ENC_NEED(e, 1)) return e->rc;
    *ENC_W(e) = t == LUA_TNIL ? 0xc0 : lua_toboolean(e->L, idx) ? 0xc3 : 0xc2;
    e->b->len++;
    return 0;
  }
  return enc_fail(e, depth, "cannot encode a %s", kind_name(e->L, idx));
}

int flume__mp_encode(lua_State *L, int idx, flume__buf *b, char *err,
                     size_t errlen) {
  mp_enc e;
  e.L = L;
  e.b = b;
  e.err = err;
  e.errlen = err ? errlen : 0;
  e.rc = 0;
  idx = lua_absindex(L, idx);
  size_t start = b->len;
  int top = lua_gettop(L);
  int rc = enc_value(&e, idx, 0);
  /* A success leaves the stack as it found it (each walk's last lua_next
   * pops its key); a refusal may leave anything above top. */
  if (rc) {
    lua_settop(L, top);
    b->len = start;
  }
  return rc;
}

/* ---------------------------------------------------------------- decode */

/*
 * The map keys a state decoded last, by their bytes. Values of one log
 * share their field names, and pushing a key from here (a compare of a
 * few bytes in a small array that stays in the cache, and the string
 * itself, recently used) skips what lua_pushlstring does for every key:
 * hashing it byte by byte, then walking the string table's bucket (other
 * strings' memory: cache misses) and comparing. Direct-mapped by a hash of
 * the length and the first 8 bytes (one word: key_word); a slot's string
 * is the userdata's user value of the same number (slot + 1), so the
 * strings stay alive while cached. One per state (anchored in the
 * registry): a state is used by one thread at a time.
 */
#define MP_KEYS 64     /* slots (a power of 2) */
#define MP_KEY_MAX 24  /* longest key cached, in bytes */
#define MP_KEY_WORDS (MP_KEY_MAX / 8)

typedef struct mp_keys {
  unsigned char len[MP_KEYS];               /* each slot's key length; 0:
                                               empty (the empty key is not
                                               cached) */
  uint64_t key[MP_KEYS][MP_KEY_WORDS];      /* each slot's key bytes, as
                                               key_word loads them, the
                                               words past its length 0 */
} mp_keys;

/* The registry key of a state's mp_keys (its address is the key). */
static const char mp_keys_reg = 'k';

typedef struct mp_dec {
  lua_State *L;               /* where the values are pushed */
  const unsigned char *start; /* the input, for offsets in messages */
  const unsigned char *end;   /* one past its last byte */
  char *err;                  /* the caller's message buffer */
  size_t errlen;              /* its size in bytes */
  int mark;                   /* give empty arrays FLUME__MP_ARRAY_MT */
  mp_keys *keys;              /* the state's key cache, or NULL */
  int keys_idx;               /* its stack index (the userdata) */
} mp_dec;

static MP_NOINLINE const unsigned char *dec_fail(mp_dec *d, const char *fmt,
                                                 ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->err, d->errlen, fmt, ap);
  va_end(ap);
  return NULL;
}

static MP_NOINLINE const unsigned char *
dec_truncated(mp_dec *d, const unsigned char *at, size_t need) {
  return dec_fail(d,
                  "truncated input: the value at offset %zu needs %zu bytes, "
                  "%zu left",
                  (size_t)(at - d->start), need, (size_t)(d->end - at));
}

static const unsigned char *dec_value(mp_dec *d, const unsigned char *p,
                                      int depth);


/*
 * Decodes the element or map value at p: the kinds most values are made of
 * (short strings, str 8, small and 8- to 32-bit unsigned integers, 64-bit
 * floats) here, each with its bounds check, everything else (and any of
 * these that would overrun the input, for its message) by dec_value. One
 * branch each instead of dec_value's call and jump table, whose target
 * changes from field to field.
 */
static inline const unsigned char *dec_elem(mp_dec *d, const unsigned char *p,
                                            int depth) {
  lua_State *L = d->L;
  size_t left = (size_t)(d->end - p);
  if (MP_UNLIKELY(left == 0)) return dec_truncated(d, p, 1);
  unsigned c = *p;
  if (c >= 0xa0 && c <= 0xbf) {
    size_t n = c & 0x1f;
    if (MP_LIKELY(n < left)) {
      lua_pushlstring(L, (const char *)p + 1, n);
      return p + 1 + n;
    }
  } else if (c < 0x80) {
    lua_pushinteger(L, (lua_Integer)c);
    return p + 1;
  } else if (c == 0xd9) {
    if (MP_LIKELY(left >= 2 && p[1] <= left - 2)) {
      lua_pushlstring(L, (const char *)p + 2, p[1]);
      return p + 2 + p[1];
    }
  } else if (c == 0xcb) {
    if (MP_LIKELY(left >= 9)) {
      uint64_t u = get64(p + 1);
      double x;
      memcpy(&x, &u, 8);
      lua_pushnumber(L, (lua_Number)x);
      return p + 9;
    }
  } else if (c >= 0xcc && c <= 0xce) {
    size_t w = (size_t)1 << (c - 0xcc); /* 1, 2 or 4 bytes */
    if (MP_LIKELY(left > w)) {
      lua_Integer x = c == 0xcc   ? (lua_Integer)p[1]
                      : c == 0xcd ? (lua_Integer)get16(p + 1)
                                  : (lua_Integer)get32(p + 1);
      lua_pushinteger(L, x);
      return p + 1 + w;
    }
  }
  return dec_value(d, p, depth);
}

static const unsigned char *dec_array(mp_dec *d, const unsigned char *p,
                                      const unsigned char *at, uint32_t n,
                                      int depth) {
  lua_State *L = d->L;
  if (MP_UNLIKELY(depth >= FLUME__MP_MAX_DEPTH))
    return dec_fail(d, "nesting deeper than %d at offset %zu",
                    FLUME__MP_MAX_DEPTH, (size_t)(at - d->start));
  /* Every element takes at least a byte: this also bounds the allocation
   * below by the size of the input. */
  if (MP_UNLIKELY(n > (size_t)(d->end - p)))
    return dec_fail(d,
                    "array of %lu elements at offset %zu is longer than the "
                    "%zu bytes left",
                    (unsigned long)n, (size_t)(at - d->start),
                    (size_t)(d->end - p));
  if (MP_UNLIKELY(!lua_checkstack(L, 3)))
    return dec_fail(d, "Lua stack exhausted at offset %zu",
                    (size_t)(at - d->start));
  lua_createtable(L, (int)(n < MP_PREALLOC_MAX ? n : MP_PREALLOC_MAX), 0);
  if (n == 0 && d->mark) {
    lua_getfield(L, LUA_REGISTRYINDEX, FLUME__MP_ARRAY_MT);
    if (lua_istable(L, -1)) lua_setmetatable(L, -2);
    else lua_pop(L, 1);
  }
  for (uint32_t i = 1; i <= n; i++) {
    if (p < d->end && *p == 0xc0) { /* a hole: nothing to store */
      p++;
      continue;
    }
    if (!(p = dec_elem(d, p, depth + 1))) return NULL;
    lua_rawseti(L, -2, (lua_Integer)i);
  }
  return p;
}

/* The n bytes at p (1 <= n <= 8) as one word, as memcpy into a zeroed
 * uint64_t puts them (their first byte lowest on a little-endian machine):
 * with `wide` (8 bytes readable at p), one load and a mask. */
static inline uint64_t key_word(const unsigned char *p, size_t n, int wide) {
  uint64_t w = 0;
  if (wide) {
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return w & ~(uint64_t)0 << (64 - 8 * n);
#else
    return w & ~(uint64_t)0 >> (64 - 8 * n);
#endif
  }
  memcpy(&w, p, n);
  return w;
}

/* The slot of a key of n bytes whose first word (key_word) is w. */
static inline unsigned key_slot(uint64_t w, size_t n) {
  return (unsigned)(((w ^ w >> 29 ^ n) * 0x9E3779B97F4A7C15u) >> (64 - 6));
  /* 6 = log2(MP_KEYS) */
}

/* Pushes the cached string of slot, or the n bytes at s (first word w),
 * caching them there. */
static inline void key_push(mp_dec *d, const unsigned char *s, size_t n,
                            uint64_t w) {
  mp_keys *k = d->keys;
  unsigned slot = key_slot(w, n);
  uint64_t *have = k->key[slot];
  if (k->len[slot] == n && have[0] == w &&
      (n <= 8 || memcmp(have + 1, s + 8, n - 8) == 0)) {
    lua_getiuservalue(d->L, d->keys_idx, (int)slot + 1);
    return;
  }
  lua_pushlstring(d->L, (const char *)s, n);
  lua_pushvalue(d->L, -1);
  lua_setiuservalue(d->L, d->keys_idx, (int)slot + 1);
  memset(have, 0, sizeof k->key[slot]);
  memcpy(have, s, n);
  k->len[slot] = (unsigned char)n;
}

/*
 * Pushes a map key that is a string (fixstr or str 8) of 1..MP_KEY_MAX
 * bytes through the key cache; returns NULL for any other key (the caller
 * decodes it as a value) or a truncated one.
 */
static inline const unsigned char *dec_key(mp_dec *d, const unsigned char *p) {
  unsigned c = *p;
  size_t n;
  const unsigned char *s;
  if (c >= 0xa0 && c <= 0xbf) {
    n = c & 0x1f;
    s = p + 1;
  } else if (c == 0xd9 && d->end - p >= 2) {
    n = p[1];
    s = p + 2;
  } else {
    return NULL;
  }
  size_t left = (size_t)(d->end - s);
  if (n == 0 || n > MP_KEY_MAX || n > left) return NULL;
  key_push(d, s, n, key_word(s, n < 8 ? n : 8, left >= 8));
  return s + n;
}

static const unsigned char *dec_map(mp_dec *d, const unsigned char *p,
                                    const unsigned char *at, uint32_t n,
                                    int depth) {
  lua_State *L = d->L;
  if (MP_UNLIKELY(depth >= FLUME__MP_MAX_DEPTH))
    return dec_fail(d, "nesting deeper than %d at offset %zu",
                    FLUME__MP_MAX_DEPTH, (size_t)(at - d->start));
  if (MP_UNLIKELY(n > (size_t)(d->end - p) / 2))
    return dec_fail(d,
                    "map of %lu pairs at offset %zu is longer than the %zu "
                    "bytes left",
                    (unsigned long)n, (size_t)(at - d->start),
                    (size_t)(d->end - p));
  if (MP_UNLIKELY(!lua_checkstack(L, 3)))
    return dec_fail(d, "Lua stack exhausted at offset %zu",
                    (size_t)(at - d->start));
  lua_createtable(L, 0, (int)(n < MP_PREALLOC_MAX ? n : MP_PREALLOC_MAX));
  for (uint32_t i = 0; i < n; i++) {
    if (MP_UNLIKELY(p == d->end)) return dec_truncated(d, p, 1);
    unsigned c = *p;
    const unsigned char *k = p;
    if (MP_UNLIKELY(c == 0xc0))
      return dec_fail(d, "nil map key at offset %zu", (size_t)(p - d->start));
    if (MP_UNLIKELY((c >= 0x80 && c <= 0x9f) || (c >= 0xdc && c <= 0xdf)))
      return dec_fail(d,
                      "map key at offset %zu is an array or a map (keys must "
                      "be strings, numbers or booleans)",
                      (size_t)(p - d->start));
    const unsigned char *q = d->keys ? dec_key(d, p) : NULL;
    if (q) p = q;
    else if (!(p = dec_value(d, p, depth + 1))) return NULL;
    if (MP_UNLIKELY(c == 0xca || c == 0xcb) && isnan(lua_tonumber(L, -1)))
      return dec_fail(d, "NaN map key at offset %zu", (size_t)(k - d->start));
    if (!(p = dec_elem(d, p, depth + 1))) return NULL;
    lua_rawset(L, -3);
  }
  return p;
}

static MP_NOINLINE const unsigned char *dec_ext(mp_dec *d,
                                                const unsigned char *p) {
  unsigned c = *p;
  size_t at = c >= 0xd4 ? 1 : c == 0xc7 ? 2 : c == 0xc8 ? 3 : 5;
  if ((size_t)(d->end - p) <= at) return dec_truncated(d, p, at + 1);
  return dec_fail(d, "unsupported ext type %d at offset %zu",
                  (int)(int8_t)p[at], (size_t)(p - d->start));
}

static const unsigned char *dec_value(mp_dec *d, const unsigned char *p,
                                      int depth) {
  lua_State *L = d->L;
  size_t left = (size_t)(d->end - p), n;
  if (MP_UNLIKELY(left == 0)) return dec_truncated(d, p, 1);
  unsigned c = *p;

  if (c < 0x80) {
    lua_pushinteger(L, (lua_Integer)c);
    return p + 1;
  }
  if (c >= 0xe0) {
    lua_pushinteger(L, (lua_Integer)c - 256);
    return p + 1;
  }
  if (c < 0x90) return dec_map(d, p + 1, p, c & 0x0f, depth);
  if (c < 0xa0) return dec_array(d, p + 1, p, c & 0x0f, depth);
  if (c < 0xc0) {
    n = c & 0x1f;
    p += 1;
    goto str;
  }

#define NEED(k)                                                                \
  do {                                                                         \
    if (MP_UNLIKELY(left < (k))) return dec_truncated(d, p, (k));              \
  } while (0)

  switch (c) {
  case 0xc0:
    lua_pushnil(L);
    return p + 1;
  case 0xc2:
    lua_pushboolean(L, 0);
    return p + 1;
  case 0xc3:
    lua_pushboolean(L, 1);
    return p + 1;
  case 0xc4:
  case 0xd9:
    NEED(2);
    n = p[1];
    p += 2;
    goto str;
  case 0xc5:
  case 0xda:
    NEED(3);
    n = get16(p + 1);
    p += 3;
    goto str;
  case 0xc6:
  case 0xdb:
    NEED(5);
    n = get32(p + 1);
    p += 5;
    goto str;
  case 0xca: {
    float f;
    uint32_t u;
    NEED(5);
    u = get32(p + 1);
    memcpy(&f, &u, 4);
    lua_pushnumber(L, (lua_Number)f);
    return p + 5;
  }
  case 0xcb: {
    double f;
    uint64_t u;
    NEED(9);
    u = get64(p + 1);
    memcpy(&f, &u, 8);
    lua_pushnumber(L, (lua_Number)f);
    return p + 9;
  }
  case 0xcc:
    NEED(2);
    lua_pushinteger(L, (lua_Integer)p[1]);
    return p + 2;
  case 0xcd:
    NEED(3);
    lua_pushinteger(L, (lua_Integer)get16(p + 1));
    return p + 3;
  case 0xce:
    NEED(5);
    lua_pushinteger(L, (lua_Integer)get32(p + 1));
    return p + 5;
  case 0xcf: {
    NEED(9);
    uint64_t u = get64(p + 1);
    /* Lua has no unsigned 64-bit integer: the nearest float beats
     * wrapping around to a negative number. */
    if (u > (uint64_t)INT64_MAX)
      lua_pushnumber(L, (lua_Number)u);
    else
      lua_pushinteger(L, (lua_Integer)u);
    return p + 9;
  }
  case 0xd0:
    NEED(2);
    lua_pushinteger(L, (lua_Integer)(int8_t)p[1]);
    return p + 2;
  case 0xd1:
    NEED(3);
    lua_pushinteger(L, (lua_Integer)(int16_t)get16(p + 1));
    return p + 3;
  case 0xd2:
    NEED(5);
    lua_pushinteger(L, (lua_Integer)(int32_t)get32(p + 1));
    return p + 5;
  case 0xd3:
    NEED(9);
    lua_pushinteger(L, (lua_Integer)(int64_t)get64(p + 1));
    return p + 9;
  case 0xdc:
    NEED(3);
    return dec_array(d, p + 3, p, get16(p + 1), depth);
  case 0xdd:
    NEED(5);
    return dec_array(d, p + 5, p, get32(p + 1), depth);
  case 0xde:
    NEED(3);
    return dec_map(d, p + 3, p, get16(p + 1), depth);
  case 0xdf:
    NEED(5);
    return dec_map(d, p + 5, p, get32(p + 1), depth);
  case 0xc7:
  case 0xc8:
  case 0xc9:
  case 0xd4:
  case 0xd5:
  case 0xd6:
  case 0xd7:
  case 0xd8:
    return dec_ext(d, p);
  default: /* 0xc1, the one byte msgpack never uses */
    return dec_fail(d, "invalid byte 0x%02x at offset %zu", c,
                    (size_t)(p - d->start));
  }
#undef NEED

str:
  if (MP_UNLIKELY(n > (size_t)(d->end - p)))
    return dec_fail(d,
                    "string of %zu bytes at offset %zu is longer than the %zu "
                    "bytes left",
                    n, (size_t)(p - d->start), (size_t)(d->end - p));
  lua_pushlstring(L, (const char *)p, n);
  return p + n;
}

/* Pushes the state's key cache (creating it the first time). */
static mp_keys *key_cache(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &mp_keys_reg) == LUA_TUSERDATA)
    return lua_touserdata(L, -1);
  lua_pop(L, 1);
  mp_keys *k = lua_newuserdatauv(L, sizeof *k, MP_KEYS);
  memset(k->len, 0, sizeof k->len);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mp_keys_reg);
  return k;
}

void flume__mp_push_keys(lua_State *L) { key_cache(L); }

/* Decodes one value; `keys`: the key cache's index, or 0 to look it up. */
static int mp_decode(lua_State *L, const char *p, size_t n, char *err,
                     size_t errlen, int mark, int keys) {
  mp_dec d;
  const unsigned char *s = (const unsigned char *)p, *q;
  int top = lua_gettop(L);
  d.mark = mark;
  d.L = L;
  d.start = s;
  d.end = s + n;
  d.err = err;
  d.errlen = err ? errlen : 0;
  if (n == 0) {
    dec_fail(&d, "empty input");
    return FLUME_EDECODE;
  }
  if (!lua_checkstack(L, 3)) {
    dec_fail(&d, "Lua stack exhausted");
    return FLUME_EDECODE;
  }
  /* A map, or an array (of maps, maybe): keys to push, through the cache.
   * It sits below the value while decoding. */
  d.keys = NULL;
  if ((*s >= 0x80 && *s <= 0x9f) || (*s >= 0xdc && *s <= 0xdf)) {
    if (keys) {
      d.keys = lua_touserdata(L, keys);
      d.keys_idx = keys;
    } else {
      d.keys = key_cache(L);
      d.keys_idx = lua_gettop(L);
    }
  }
  q = dec_value(&d, s, 0);
  if (q && q != d.end) {
    dec_fail(&d, "%zu trailing bytes after the value at offset %zu",
             (size_t)(d.end - q), (size_t)(q - s));
    q = NULL;
  }
  if (!q) {
    lua_settop(L, top);
    return FLUME_EDECODE;
  }
  if (d.keys && !keys) lua_remove(L, d.keys_idx);
  return 0;
}

int flume__mp_decode(lua_State *L, const char *p, size_t n, char *err,
                     size_t errlen) {
  return mp_decode(L, p, n, err, errlen, 0, 0);
}

int flume__mp_decode_keys(lua_State *L, const char *p, size_t n, int keys,
                          char *err, size_t errlen) {
  return mp_decode(L, p, n, err, errlen, 0, keys);
}

int flume__mp_decode_marked(lua_State *L, const char *p, size_t n, char *err,
                            size_t errlen) {
  return mp_decode(L, p, n, err, errlen, 1, 0);
}
