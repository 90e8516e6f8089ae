/* Checking msgpack bytes as flume__mp_decode reads them, without Lua. */
#ifndef FLUME_RUNTIME_MPCHECK_H
#define FLUME_RUNTIME_MPCHECK_H

#include <stddef.h>
#include <stdint.h>

/* The end of the value at p (before end) if flume__mp_decode would decode
 * it at nesting `depth`, else NULL. */
const unsigned char *flume__mp_check(const unsigned char *p,
                                     const unsigned char *end, int depth);

/* The same for n pairs of a map starting at p; when off is not NULL, it
 * gets each key's and value's offset from base (key i at off[2i], its value
 * at off[2i + 1]) and the map's end at off[2n]. */
const unsigned char *flume__mp_check_pairs(const unsigned char *p,
                                           const unsigned char *end, uint64_t n,
                                           int depth, uint32_t *off,
                                           const unsigned char *base);

/* The length of a number whose first byte is c and whose length that
 * byte alone gives (uint and int 8 to 64, float 32 and 64), header
 * included; 0 for any other first byte. Shared by the checker and the lazy
 * decoder's field walk (lazy.c). */
static inline size_t flume__mp_fixed_len(unsigned c) {
  switch (c) {
  case 0xcc:
  case 0xd0:
    return 2;
  case 0xcd:
  case 0xd1:
    return 3;
  case 0xca:
  case 0xce:
  case 0xd2:
    return 5;
  case 0xcb:
  case 0xcf:
  case 0xd3:
    return 9;
  default:
    return 0;
  }
}

/* 1 if the n bytes at p are exactly one value flume__mp_decode accepts. */
int flume__mp_valid(const void *p, size_t n);

#endif
