/*
 * Checking msgpack bytes as the decoder reads them, without Lua: what
 * flume__mp_decode accepts, and nothing else (no ext types, no 0xc1, a nil
 * or a NaN as a map key refused, nesting at most FLUME__MP_MAX_DEPTH). The
 * lazy decoder checks a value whole with it before it makes a proxy, and
 * flume_db_append checks what a C caller appends to a msgpack database, so
 * that no value a view would fail on enters the log.
 */
#include "mpcheck.h"

#include <math.h>
#include <string.h>

#include "msgpack.h"

static uint32_t get16(const unsigned char *r) {
  return (uint32_t)r[0] << 8 | r[1];
}
static uint32_t get32(const unsigned char *r) {
  return (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 |
         r[3];
}

static const unsigned char *check_array(const unsigned char *p,
                                        const unsigned char *end, uint64_t n,
                                        int depth);

const unsigned char *flume__mp_check_pairs(const unsigned char *p,
                                           const unsigned char *end,
                                           uint64_t n, int depth,
                                           uint32_t *off,
                                           const unsigned char *base) {
  if (depth >= FLUME__MP_MAX_DEPTH || n > (uint64_t)(end - p) / 2)
    return NULL;
  for (uint64_t i = 0; i < n; i++) {
    if (p == end) return NULL;
    unsigned c = *p;
    if (c == 0xc0 || (c >= 0x80 && c <= 0x9f) || (c >= 0xdc && c <= 0xdf))
      return NULL;
    if (off) off[2 * i] = (uint32_t)(p - base);
    const unsigned char *k = p;
    if (!(p = flume__mp_check(p, end, depth + 1))) return NULL;
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
    if (off) off[2 * i + 1] = (uint32_t)(p - base);
    if (!(p = flume__mp_check(p, end, depth + 1))) return NULL;
  }
  if (off) off[2 * n] = (uint32_t)(p - base);
  return p;
}

static const unsigned char *check_array(const unsigned char *p,
                                        const unsigned char *end, uint64_t n,
                                        int depth) {
  if (depth >= FLUME__MP_MAX_DEPTH || n > (uint64_t)(end - p)) return NULL;
  for (uint64_t i = 0; i < n; i++) {
    if (p < end && *p == 0xc0) {
      p++;
      continue;
    }
    if (!(p = flume__mp_check(p, end, depth + 1))) return NULL;
  }
  return p;
}

const unsigned char *flume__mp_check(const unsigned char *p,
                                     const unsigned char *end, int depth) {
  size_t left = (size_t)(end - p), n;
  if (left == 0) return NULL;
  unsigned c = *p;
  if (c < 0x80 || c >= 0xe0) return p + 1;
  if (c < 0x90)
    return flume__mp_check_pairs(p + 1, end, c & 0x0f, depth, NULL, NULL);
  if (c < 0xa0) return check_array(p + 1, end, c & 0x0f, depth);
  if (c < 0xc0) {
    n = c & 0x1f;
    p += 1;
    goto str;
  }
  size_t fixed = flume__mp_fixed_len(c);
  if (fixed) return left < fixed ? NULL : p + fixed;
  switch (c) {
  case 0xc0:
  case 0xc2:
  case 0xc3:
    return p + 1;
  case 0xc4:
  case 0xd9:
    if (left < 2) return NULL;
    n = p[1];
    p += 2;
    goto str;
  case 0xc5:
  case 0xda:
    if (left < 3) return NULL;
    n = get16(p + 1);
    p += 3;
    goto str;
  case 0xc6:
  case 0xdb:
    if (left < 5) return NULL;
    n = get32(p + 1);
    p += 5;
    goto str;
  case 0xdc:
    return left < 3 ? NULL : check_array(p + 3, end, get16(p + 1), depth);
  case 0xdd:
    return left < 5 ? NULL : check_array(p + 5, end, get32(p + 1), depth);
  case 0xde:
    return left < 3 ? NULL
                    : flume__mp_check_pairs(p + 3, end, get16(p + 1), depth,
                                            NULL, NULL);
  case 0xdf:
    return left < 5 ? NULL
                    : flume__mp_check_pairs(p + 5, end, get32(p + 1), depth,
                                            NULL, NULL);
  default: /* ext types, 0xc1 */
    return NULL;
  }
str:
  return n > (size_t)(end - p) ? NULL : p + n;
}

int flume__mp_valid(const void *p, size_t n) {
  const unsigned char *s = p;
  return n > 0 && flume__mp_check(s, s + n, 0) == s + n;
}
