/*
 * Writing msgpack into a flume__buf, in flume's forms (integers in their
 * smallest form, floats as float64, the smallest string and table
 * headers): the one writer of the C value codec (value.c) and the
 * command's JSON fast path (json.c). runtime/msgpack.c, the Lua encoder
 * on the hot path, writes the same forms into space it reserved first.
 * Each returns 0, FLUME_ENOMEM, or FLUME_EINVAL for a length past 32 bits.
 */
#ifndef FLUME_RUNTIME_MPWRITE_H
#define FLUME_RUNTIME_MPWRITE_H

#include <stdint.h>
#include <string.h>

#include "buf.h"

/* A tag byte and `bytes` big-endian bytes of v. */
static inline int flume__mpw_be(flume__buf *b, unsigned char tag, uint64_t v,
                                int bytes) {
  unsigned char w[9];
  w[0] = tag;
  for (int i = 0; i < bytes; i++)
    w[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
  return flume__buf_append(b, w, 1 + (size_t)bytes);
}

static inline int flume__mpw_int(flume__buf *b, int64_t v) {
  if (v >= 0) {
    uint64_t u = (uint64_t)v;
    if (u < 0x80) return flume__mpw_be(b, (unsigned char)u, 0, 0);
    if (u <= 0xff) return flume__mpw_be(b, 0xcc, u, 1);
    if (u <= 0xffff) return flume__mpw_be(b, 0xcd, u, 2);
    if (u <= 0xffffffff) return flume__mpw_be(b, 0xce, u, 4);
    return flume__mpw_be(b, 0xcf, u, 8);
  }
  if (v >= -32) return flume__mpw_be(b, (unsigned char)(uint64_t)v, 0, 0);
  if (v >= INT8_MIN) return flume__mpw_be(b, 0xd0, (uint64_t)v, 1);
  if (v >= INT16_MIN) return flume__mpw_be(b, 0xd1, (uint64_t)v, 2);
  if (v >= INT32_MIN) return flume__mpw_be(b, 0xd2, (uint64_t)v, 4);
  return flume__mpw_be(b, 0xd3, (uint64_t)v, 8);
}

static inline int flume__mpw_float(flume__buf *b, double f) {
  uint64_t bits;
  memcpy(&bits, &f, 8);
  return flume__mpw_be(b, 0xcb, bits, 8);
}

/* A string: its header, then its bytes. */
static inline int flume__mpw_str(flume__buf *b, const char *p, size_t n) {
  int rc;
  if (n < 32) rc = flume__mpw_be(b, (unsigned char)(0xa0 | n), 0, 0);
  else if (n <= 0xff) rc = flume__mpw_be(b, 0xd9, n, 1);
  else if (n <= 0xffff) rc = flume__mpw_be(b, 0xda, n, 2);
  else if (n <= 0xffffffffu) rc = flume__mpw_be(b, 0xdb, n, 4);
  else return FLUME_EINVAL;
  return rc ? rc : flume__buf_append(b, p, n);
}

/* An array's (fix 0x90, c16 0xdc) or a map's (0x80, 0xde) header of n
 * entries. */
static inline int flume__mpw_count(flume__buf *b, size_t n, unsigned fix,
                                   unsigned c16) {
  if (n < 16) return flume__mpw_be(b, (unsigned char)(fix | n), 0, 0);
  if (n <= 0xffff) return flume__mpw_be(b, (unsigned char)c16, n, 2);
  if (n <= 0xffffffffu) return flume__mpw_be(b, (unsigned char)(c16 + 1), n, 4);
  return FLUME_EINVAL;
}

#endif
