/* JSON Lines <-> msgpack for the command line's common values (json.h). */
#include "json.h"

#include "mpwrite.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64 /* tables nested deeper go to flume.json */
#define MAX_KEYS 64  /* objects with more keys go to flume.json */

/* ---- UTF-8, as Lua 5.4's utf8.len (strict) takes it ------------------ */

/* The length of the valid UTF-8 sequence at s (< end), or 0. */
static size_t utf8_one(const unsigned char *s, const unsigned char *end) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp, min;
  if ((c & 0xe0) == 0xc0) n = 2, cp = c & 0x1f, min = 0x80;
  else if ((c & 0xf0) == 0xe0) n = 3, cp = c & 0x0f, min = 0x800;
  else if ((c & 0xf8) == 0xf0) n = 4, cp = c & 0x07, min = 0x10000;
  else return 0;
  if ((size_t)(end - s) < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

static int utf8_valid(const char *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p, *end = s + n;
  while (s < end) {
    if (*s < 0x80) {
      s++;
      continue;
    }
    size_t k = utf8_one(s, end);
    if (k == 0) return 0;
    s += k;
  }
  return 1;
}

/* ---- JSON to msgpack ------------------------------------------------- */

typedef struct jparse {
  const char *s;    /* the line */
  const char *end;  /* its end */
  flume__buf *out;  /* msgpack goes here */
  flume__buf str;   /* a string being unescaped */
  int rc;           /* FLUME__JSON_OTHER or FLUME_ENOMEM once failed */
} jparse;

static int jfail(jparse *j, int rc) {
  if (j->rc == 0) j->rc = rc;
  return j->rc;
}

static void skip_ws(jparse *j) {
  while (j->s < j->end &&
         (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r'))
    j->s++;
}

static int put(jparse *j, const void *p, size_t n) {
  return flume__buf_append(j->out, p, n) ? jfail(j, FLUME_ENOMEM) : 0;
}

/* The shared writers (mpwrite.h), failing the parse on an error. */
static int mpw(jparse *j, int rc) { return rc ? jfail(j, rc) : 0; }

/* Writes a map's or an array's header for n entries at `head`, where one
 * byte was left (moving what follows when it needs more). */
static int finish_table(jparse *j, size_t head, size_t n, unsigned fix,
                        unsigned c16) {
  flume__buf *b = j->out;
  if (n <= 15) {
    ((unsigned char *)b->data)[head] = (unsigned char)(fix | n);
    return 0;
  }
  size_t extra = n <= 0xffff ? 2 : 4;
  if (flume__buf_reserve(b, extra)) return jfail(j, FLUME_ENOMEM);
  unsigned char *w = (unsigned char *)b->data + head;
  memmove(w + 1 + extra, w + 1, b->len - head - 1);
  b->len += extra;
  w[0] = (unsigned char)(extra == 2 ? c16 : c16 + 1);
  for (size_t i = 0; i < extra; i++)
    w[1 + i] = (unsigned char)(n >> (8 * (extra - 1 - i)));
  return 0;
}

static int hex4(const char *p, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static int str_add(jparse *j, const void *p, size_t n) {
  return flume__buf_append(&j->str, p, n) ? jfail(j, FLUME_ENOMEM) : 0;
}

/* The string at j->s (its opening quote), unescaped into j->str. */
static int read_string(jparse *j) {
  const char *p = j->s + 1;
  j->str.len = 0;
  for (;;) {
    const char *q = p;
    while (q < j->end && *q != '"' && *q != '\\' &&
           (unsigned char)*q >= 0x20)
      q++;
    if (q > p && str_add(j, p, (size_t)(q - p))) return j->rc;
    if (q >= j->end || (unsigned char)*q < 0x20)
      return jfail(j, FLUME__JSON_OTHER);
    if (*q == '"') {
      j->s = q + 1;
      return 0;
    }
    /* an escape */
    if (j->end - q < 2) return jfail(j, FLUME__JSON_OTHER);
    char c = q[1], plain = 0;
    switch (c) {
    case '"': plain = '"'; break;
    case '\\': plain = '\\'; break;
    case '/': plain = '/'; break;
    case 'b': plain = '\b'; break;
    case 'f': plain = '\f'; break;
    case 'n': plain = '\n'; break;
    case 'r': plain = '\r'; break;
    case 't': plain = '\t'; break;
    case 'u': break;
    default: return jfail(j, FLUME__JSON_OTHER);
    }
    if (c != 'u') {
      if (str_add(j, &plain, 1)) return j->rc;
      p = q + 2;
      continue;
    }
    uint32_t cp, lo;
    if (j->end - q < 6 || hex4(q + 2, &cp)) return jfail(j, FLUME__JSON_OTHER);
    p = q + 6;
    if (cp >= 0xdc00 && cp <= 0xdfff) return jfail(j, FLUME__JSON_OTHER);
    if (cp >= 0xd800 && cp <= 0xdbff) {
      if (j->end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) ||
          lo < 0xdc00 || lo > 0xdfff)
        return jfail(j, FLUME__JSON_OTHER);
      cp = 0x10000 + (cp - 0xd800) * 0x400 + (lo - 0xdc00);
      p += 6;
    }
    unsigned char u[4];
    size_t un;
    if (cp < 0x80) {
      u[0] = (unsigned char)cp;
      un = 1;
    } else if (cp < 0x800) {
      u[0] = (unsigned char)(0xc0 | cp >> 6);
      u[1] = (unsigned char)(0x80 | (cp & 0x3f));
      un = 2;
    } else if (cp < 0x10000) {
      u[0] = (unsigned char)(0xe0 | cp >> 12);
      u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
      u[2] = (unsigned char)(0x80 | (cp & 0x3f));
      un = 3;
    } else {
      u[0] = (unsigned char)(0xf0 | cp >> 18);
      u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
      u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
      u[3] = (unsigned char)(0x80 | (cp & 0x3f));
      un = 4;
    }
    if (str_add(j, u, un)) return j->rc;
  }
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A number as flume.json reads it: an integer literal must be an int64, a
 * fraction or an exponent makes a float, which must be finite. */
static int read_number(jparse *j) {
  const char *p = j->s, *start = p;
  int neg = 0, is_float = 0;
  if (p < j->end && *p == '-') neg = 1, p++;
  if (p >= j->end || !is_digit(*p)) return jfail(j, FLUME__JSON_OTHER);
  if (*p == '0' && p + 1 < j->end && is_digit(p[1]))
    return jfail(j, FLUME__JSON_OTHER);
  const char *digits = p;
  while (p < j->end && is_digit(*p)) p++;
  const char *int_end = p;
  if (p < j->end && *p == '.') {
    p++;
    if (p >= j->end || !is_digit(*p)) return jfail(j, FLUME__JSON_OTHER);
    while (p < j->end && is_digit(*p)) p++;
    is_float = 1;
  }
  if (p < j->end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < j->end && (*p == '+' || *p == '-')) p++;
    if (p >= j->end || !is_digit(*p)) return jfail(j, FLUME__JSON_OTHER);
    while (p < j->end && is_digit(*p)) p++;
    is_float = 1;
  }
  j->s = p;
  if (!is_float) {
    uint64_t u = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX;
    for (const char *d = digits; d < int_end; d++) {
      unsigned v = (unsigned)(*d - '0');
      if (u > (limit - v) / 10) return jfail(j, FLUME__JSON_OTHER);
      u = u * 10 + v;
    }
    int64_t x = neg ? (u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u)
                    : (int64_t)u;
    return mpw(j, flume__mpw_int(j->out, x));
  }
  char lit[64];
  size_t n = (size_t)(p - start);
  if (n >= sizeof lit) return jfail(j, FLUME__JSON_OTHER);
  memcpy(lit, start, n);
  lit[n] = '\0';
  double d = strtod(lit, NULL);
  if (isinf(d)) return jfail(j, FLUME__JSON_OTHER);
  return mpw(j, flume__mpw_float(j->out, d));
}

static int read_value(jparse *j, int depth);

static int read_object(jparse *j, int depth) {
  size_t head = j->out->len, n = 0;
  size_t koff[MAX_KEYS], klen[MAX_KEYS];
  if (put(j, "\x80", 1)) return j->rc;
  j->s++;
  skip_ws(j);
  if (j->s < j->end && *j->s == '}') {
    j->s++;
    return 0;
  }
  for (;;) {
    if (j->s >= j->end || *j->s != '"' || n == MAX_KEYS)
      return jfail(j, FLUME__JSON_OTHER);
    if (read_string(j)) return j->rc;
    /* '$' keys may be tags: flume.json's */
    if (j->str.len > 0 && j->str.data[0] == '$')
      return jfail(j, FLUME__JSON_OTHER);
    for (size_t i = 0; i < n; i++)
      if (klen[i] == j->str.len &&
          (klen[i] == 0 || /* "" twice: its scratch may be NULL */
           memcmp(j->out->data + koff[i], j->str.data, j->str.len) == 0))
        return jfail(j, FLUME__JSON_OTHER); /* a key twice */
    if (mpw(j, flume__mpw_str(j->out, j->str.data ? j->str.data : "", j->str.len)))
      return j->rc;
    koff[n] = j->out->len - j->str.len;
    klen[n] = j->str.len;
    n++;
    skip_ws(j);
    if (j->s >= j->end || *j->s != ':') return jfail(j, FLUME__JSON_OTHER);
    j->s++;
    skip_ws(j);
    if (read_value(j, depth + 1)) return j->rc;
    skip_ws(j);
    if (j->s < j->end && *j->s == '}') {
      j->s++;
      break;
    }
    if (j->s >= j->end || *j->s != ',') return jfail(j, FLUME__JSON_OTHER);
    j->s++;
    skip_ws(j);
  }
  return finish_table(j, head, n, 0x80, 0xde);
}

static int read_array(jparse *j, int depth) {
  size_t head = j->out->len, n = 0;
  if (put(j, "\x90", 1)) return j->rc;
  j->s++;
  skip_ws(j);
  if (j->s < j->end && *j->s == ']') {
    j->s++;
    return 0;
  }
  for (;;) {
    if (read_value(j, depth + 1)) return j->rc;
    n++;
    skip_ws(j);
    if (j->s < j->end && *j->s == ']') {
      j->s++;
      break;
    }
    if (j->s >= j->end || *j->s != ',') return jfail(j, FLUME__JSON_OTHER);
    j->s++;
    skip_ws(j);
  }
  return finish_table(j, head, n, 0x90, 0xdc);
}

static int literal(jparse *j, const char *word, unsigned char mp) {
  size_t n = strlen(word);
  if ((size_t)(j->end - j->s) < n || memcmp(j->s, word, n) != 0)
    return jfail(j, FLUME__JSON_OTHER);
  j->s += n;
  return put(j, &mp, 1);
}

static int read_value(jparse *j, int depth) {
  if (j->s >= j->end) return jfail(j, FLUME__JSON_OTHER);
  switch (*j->s) {
  case '"':
    if (read_string(j)) return j->rc;
    return mpw(j, flume__mpw_str(j->out, j->str.data ? j->str.data : "",
                                j->str.len));
  case '{':
    if (depth >= MAX_DEPTH) return jfail(j, FLUME__JSON_OTHER);
    return read_object(j, depth);
  case '[':
    if (depth >= MAX_DEPTH) return jfail(j, FLUME__JSON_OTHER);
    return read_array(j, depth);
  case 't': return literal(j, "true", 0xc3);
  case 'f': return literal(j, "false", 0xc2);
  default: return read_number(j); /* null and the rest: not ours */
  }
}

int flume__json_to_mp(const char *s, size_t n, flume__buf *out) {
  if (!utf8_valid(s, n)) return FLUME__JSON_OTHER;
  size_t was = out->len;
  jparse j = {s, s + n, out, FLUME__BUF_INIT, 0};
  skip_ws(&j);
  read_value(&j, 0);
  skip_ws(&j);
  if (j.rc == 0 && j.s != j.end) j.rc = FLUME__JSON_OTHER;
  flume__buf_free(&j.str);
  if (j.rc) out->len = was;
  return j.rc;
}

/* ---- msgpack to JSON ------------------------------------------------- */

typedef struct mwrite {
  const unsigned char *p;   /* next byte */
  const unsigned char *end; /* end of the value's bytes */
  flume__buf *out;          /* JSON goes here */
  int rc;                   /* FLUME__JSON_OTHER or FLUME_ENOMEM */
} mwrite;

static int mfail(mwrite *m, int rc) {
  if (m->rc == 0) m->rc = rc;
  return m->rc;
}

static int mput(mwrite *m, const void *p, size_t n) {
  return flume__buf_append(m->out, p, n) ? mfail(m, FLUME_ENOMEM) : 0;
}

static uint64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* Takes n bytes from the input; NULL when there are not that many. */
static const unsigned char *take(mwrite *m, uint64_t n) {
  if ((uint64_t)(m->end - m->p) < n) return NULL;
  const unsigned char *q = m->p;
  m->p += n;
  return q;
}

/* A string's bytes and length at the head byte c (str or bin); 0, or
 * nonzero when c is not a string or it is cut short. */
static int str_at(mwrite *m, unsigned c, const unsigned char **s,
                  size_t *n) {
  int lb = 0;
  if (c >= 0xa0 && c <= 0xbf) {
    *n = c & 0x1f;
  } else if (c == 0xd9 || c == 0xc4) {
    lb = 1;
  } else if (c == 0xda || c == 0xc5) {
    lb = 2;
  } else if (c == 0xdb || c == 0xc6) {
    lb = 4;
  } else {
    return -1;
  }
  if (lb) {
    const unsigned char *l = take(m, (uint64_t)lb);
    if (l == NULL) return -1;
    *n = (size_t)be(l, lb);
  }
  return (*s = take(m, *n)) ? 0 : -1;
}

static const char HEX[] = "0123456789abcdef";

/* Any byte of w that JSON must escape or that is not ASCII: below 0x20,
 * '"', '\\' or from 0x80 (exact as a whole: a byte loop finds which). */
static inline int word_special(uint64_t w) {
  const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
  uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
  uint64_t ctl = (w - ones * 0x20) & ~w;
  uint64_t zq = (q - ones) & ~q, zb = (b - ones) & ~b;
  return ((w | ctl | zq | zb) & high) != 0;
}

/* A string, checked as UTF-8, escaped as JSON wants. Plain ASCII goes
 * eight bytes at a time; the output is reserved for the string unescaped,
 * and grown at an escape. */
static int put_json_string(mwrite *m, const unsigned char *s, size_t n) {
  flume__buf *out = m->out;
  if (flume__buf_reserve(out, n + 2)) return mfail(m, FLUME_ENOMEM);
  char *o = out->data + out->len;
  *o++ = '"';
  size_t i = 0;
  while (i < n) {
    if (n - i >= 8) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!word_special(w)) {
        memcpy(o, &w, 8);
        o += 8, i += 8;
        continue;
      }
    }
    unsigned c = s[i];
    if (c >= 0x80) {
      size_t k = utf8_one(s + i, s + n);
      if (k == 0) return mfail(m, FLUME__JSON_OTHER);
      memcpy(o, s + i, k);
      o += k, i += k;
      continue;
    }
    i++;
    if (c >= 0x20 && c != '"' && c != '\\') {
      *o++ = (char)c;
      continue;
    }
    /* An escape: up to 6 bytes for 1, so room for the rest again. */
    out->len = (size_t)(o - out->data);
    if (flume__buf_reserve(out, 6 + (n - i) + 1)) return mfail(m, FLUME_ENOMEM);
    o = out->data + out->len;
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    default:
      *o++ = 'u', *o++ = '0', *o++ = '0', *o++ = HEX[c >> 4],
      *o++ = HEX[c & 15];
    }
  }
  *o++ = '"';
  out->len = (size_t)(o - out->data);
  return 0;
}

/* Writes the decimal digits of u backwards, ending at end; returns where
 * they start. */
static char *digits_before(char *end, uint64_t u) {
  do {
    *--end = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  return end;
}

/* A finite float as flume.json writes it: the shortest of %.15g, %.16g,
 * %.17g that reads back the same, with ".0" when it has no '.' nor 'e'.
 *
 * The common case is computed without printf: a float that some decimal
 * n / 10^k of at most 15 digits reads back as (n and 10^k exact doubles,
 * so the division is the correctly rounded decimal, as strtod's is) is
 * within half an ulp (2^-53 of it) of that decimal, while 15-digit
 * decimals near it are at least 10^-15 of it apart: %.15g rounds it to
 * that very decimal, and %g drops trailing zeros, as the smallest k does.
 * Where %.15g would write an exponent (below 10^-4, from 10^15), or no
 * such decimal exists, printf decides. s has room for 32 bytes; returns
 * the length written. */
size_t flume__json_float(char *s, double v) {
  static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8,
                               1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18};
  double a = fabs(v);
  if (a >= 1e-4 && a < 1e15) {
    for (int k = 0; k <= 18; k++) {
      double x = a * p10[k];
      if (x >= 1e15) break; /* more than 15 digits */
      uint64_t n = (uint64_t)(x + 0.5);
      if ((double)n / p10[k] != a) continue;
      while (k > 0 && n % 10 == 0) n /= 10, k--; /* x was off by one */
      char buf[40], *end = buf + sizeof buf, *q = end;
      if (k == 0) {
        *--q = '0';
        *--q = '.';
        q = digits_before(q, n);
      } else {
        uint64_t f = n % (uint64_t)p10[k], i = n / (uint64_t)p10[k];
        for (int d = 0; d < k; d++, f /= 10) *--q = (char)('0' + f % 10);
        *--q = '.';
        q = digits_before(q, i);
      }
      if (signbit(v)) *--q = '-';
      size_t len = (size_t)(end - q);
      memcpy(s, q, len);
      return len;
    }
  }
  static const char *const forms[] = {"%.15g", "%.16g", "%.17g"};
  for (int i = 0; i < 3; i++) {
    snprintf(s, 32, forms[i], v);
    if (strtod(s, NULL) == v || i == 2) break;
  }
  if (strpbrk(s, ".e") == NULL) strcat(s, ".0");
  return strlen(s);
}

static int put_float(mwrite *m, double v) {
  if (!isfinite(v)) return mfail(m, FLUME__JSON_OTHER);
  char s[40];
  return mput(m, s, flume__json_float(s, v));
}

static int put_integer(mwrite *m, int64_t v) {
  char s[24], *end = s + sizeof s;
  char *q = digits_before(end, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
  if (v < 0) *--q = '-';
  return mput(m, q, (size_t)(end - q));
}

static int write_value(mwrite *m, int depth);

/* A map's entry, for sorting by key. */
typedef struct kv {
  const unsigned char *key; /* the key's bytes */
  size_t key_len;           /* their length */
  const unsigned char *val; /* the value's first byte */
} kv;

static int key_cmp(const void *a, const void *b) {
  const kv *x = a, *y = b;
  size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
  int c = n ? memcmp(x->key, y->key, n) : 0;
  if (c) return c;
  return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* Skips one value (for the map's sort): 0, or FLUME__JSON_OTHER. */
static int skip_value(mwrite *m, int depth) {
  if (depth > MAX_DEPTH || m->p >= m->end) return FLUME__JSON_OTHER;
  unsigned c = *m->p++;
  uint64_t n = 0;
  if (c < 0x80 || c >= 0xe0 || c == 0xc2 || c == 0xc3 || c == 0xc0)
    return 0;
  if ((c & 0xf0) == 0x80 || (c & 0xf0) == 0x90) {
    n = c & 0x0f;
    if ((c & 0xf0) == 0x80) n *= 2;
  } else if (c == 0xdc || c == 0xdd || c == 0xde || c == 0xdf) {
    int lb = c == 0xdc || c == 0xde ? 2 : 4;
    const unsigned char *l = take(m, (uint64_t)lb);
    if (l == NULL) return FLUME__JSON_OTHER;
    n = be(l, lb);
    if (c >= 0xde) n *= 2;
  } else {
    const unsigned char *s;
    size_t len;
    if (str_at(m, c, &s, &len) == 0) return 0;
    static const unsigned char fixed[][2] = {
        {0xcc, 1}, {0xcd, 2}, {0xce, 4}, {0xcf, 8}, {0xd0, 1},
        {0xd1, 2}, {0xd2, 4}, {0xd3, 8}, {0xca, 4}, {0xcb, 8}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
      if (fixed[i][0] == c) return take(m, fixed[i][1]) ? 0 : FLUME__JSON_OTHER;
    return FLUME__JSON_OTHER;
  }
  for (uint64_t i = 0; i < n; i++)
    if (skip_value(m, depth + 1)) return FLUME__JSON_OTHER;
  return 0;
}

static int write_map(mwrite *m, uint64_t n, int depth) {
  if (n == 0) return mput(m, "{}", 2);
  if (n > 1u << 20) return mfail(m, FLUME__JSON_OTHER);
  kv *e = malloc((size_t)n * sizeof *e);
  if (e == NULL) return mfail(m, FLUME_ENOMEM);
  for (uint64_t i = 0; i < n; i++) {
    if (m->p >= m->end) goto other;
    unsigned c = *m->p++;
    if (str_at(m, c, &e[i].key, &e[i].key_len) ||
        !utf8_valid((const char *)e[i].key, e[i].key_len))
      goto other;
    e[i].val = m->p;
    if (m->p >= m->end || *m->p == 0xc0) goto other; /* nil: no field */
    if (skip_value(m, depth + 1)) goto other;
  }
  /* One key naming a tag is written as a $map: flume.json's */
  if (n == 1 && ((e[0].key_len == 6 && memcmp(e[0].key, "$float", 6) == 0) ||
                 (e[0].key_len == 6 && memcmp(e[0].key, "$bytes", 6) == 0) ||
                 (e[0].key_len == 4 && memcmp(e[0].key, "$map", 4) == 0)))
    goto other;
  qsort(e, (size_t)n, sizeof *e, key_cmp);
  for (uint64_t i = 1; i < n; i++)
    if (key_cmp(&e[i - 1], &e[i]) == 0) goto other; /* a key twice */
  const unsigned char *after = m->p;
  if (mput(m, "{", 1)) goto done;
  for (uint64_t i = 0; i < n; i++) {
    if (i && mput(m, ",", 1)) goto done;
    mwrite k = {e[i].key, e[i].key + e[i].key_len, m->out, 0};
    if (put_json_string(&k, e[i].key, e[i].key_len) || mput(m, ":", 1)) {
      mfail(m, k.rc ? k.rc : m->rc);
      goto done;
    }
    m->p = e[i].val;
    if (write_value(m, depth + 1)) goto done;
  }
  m->p = after;
  mput(m, "}", 1);
done:
  free(e);
  return m->rc;
other:
  free(e);
  return mfail(m, FLUME__JSON_OTHER);
}

static int write_array(mwrite *m, uint64_t n, int depth) {
  if (n == 0) return mput(m, "[]", 2);
  if (mput(m, "[", 1)) return m->rc;
  for (uint64_t i = 0; i < n; i++) {
    if (i && mput(m, ",", 1)) return m->rc;
    if (m->p < m->end && *m->p == 0xc0) /* nil in a list: flume.json's */
      return mfail(m, FLUME__JSON_OTHER);
    if (write_value(m, depth + 1)) return m->rc;
  }
  return mput(m, "]", 1);
}

static int write_value(mwrite *m, int depth) {
  if (depth > MAX_DEPTH || m->p >= m->end) return mfail(m, FLUME__JSON_OTHER);
  unsigned c = *m->p++;
  const unsigned char *b;
  if (c < 0x80) return put_integer(m, (int64_t)c);
  if (c >= 0xe0) return put_integer(m, (int64_t)(int8_t)c);
  if ((c & 0xf0) == 0x80) return write_map(m, c & 0x0f, depth);
  if ((c & 0xf0) == 0x90) return write_array(m, c & 0x0f, depth);
  switch (c) {
  case 0xc2: return mput(m, "false", 5);
  case 0xc3: return mput(m, "true", 4);
  case 0xcc: case 0xcd: case 0xce: case 0xcf: {
    int n = 1 << (c - 0xcc);
    if ((b = take(m, (uint64_t)n)) == NULL) break;
    uint64_t u = be(b, n);
    if (u > INT64_MAX) break; /* Lua makes it a float */
    return put_integer(m, (int64_t)u);
  }
  case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
    int n = 1 << (c - 0xd0);
    if ((b = take(m, (uint64_t)n)) == NULL) break;
    uint64_t u = be(b, n);
    int64_t v = n == 8 ? (int64_t)u
                       : (int64_t)(u ^ (UINT64_C(1) << (8 * n - 1))) -
                             (int64_t)(UINT64_C(1) << (8 * n - 1));
    return put_integer(m, v);
  }
  case 0xca: {
    if ((b = take(m, 4)) == NULL) break;
    uint32_t u = (uint32_t)be(b, 4);
    float f;
    memcpy(&f, &u, 4);
    return put_float(m, (double)f);
  }
  case 0xcb: {
    if ((b = take(m, 8)) == NULL) break;
    uint64_t u = be(b, 8);
    double d;
    memcpy(&d, &u, 8);
    return put_float(m, d);
  }
  case 0xdc: case 0xdd: case 0xde: case 0xdf: {
    int n = c == 0xdc || c == 0xde ? 2 : 4;
    if ((b = take(m, (uint64_t)n)) == NULL) break;
    uint64_t len = be(b, n);
    return c <= 0xdd ? write_array(m, len, depth)
                     : write_map(m, len, depth);
  }
  default: {
    const unsigned char *s;
    size_t len;
    if (str_at(m, c, &s, &len) == 0) return put_json_string(m, s, len);
    break;
  }
  }
  return mfail(m, FLUME__JSON_OTHER);
}

int flume__mp_to_json(const char *p, size_t n, flume__buf *out) {
  size_t was = out->len;
  mwrite m = {(const unsigned char *)p, (const unsigned char *)p + n, out, 0};
  write_value(&m, 0);
  if (m.rc == 0 && m.p != m.end) m.rc = FLUME__JSON_OTHER;
  if (m.rc) out->len = was;
  return m.rc;
}
