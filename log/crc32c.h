/*
 * CRC32C (Castagnoli), the checksum the LMDB backend seals every stored
 * entry with (see lmdb_file.c). Included by lmdb_file.c only (and its test).
 *
 * Why CRC32C: it detects every burst error up to 32 bits and every 1-3 bit
 * error in entries of the sizes we store, x86-64 computes it in hardware
 * (SSE4.2's crc32 instruction: 8 bytes a step), and it needs no library.
 * Where the instruction is missing (checked once with cpuid) a
 * table-driven version computes the same values, 8 bytes at a time.
 *
 * One crc32 step waits for the one before (3 cycles of latency), but the
 * CPU starts one a cycle: with PCLMULQDQ as well, an entry of 144 bytes
 * or more is checked as three streams at once, joined by two carry-less
 * multiplies (crc32c_hard3). Every log value is checked on every read:
 * 256 bytes took 13.3 ns in one chain and 8.5 ns in three, 400 bytes 24.8
 * and 12.1 (in cache, this machine), and rebuild_wide's 625-byte values
 * rebuilt 2 % faster natively; at 80 bytes one chain is quicker.
 *
 * crc32c_update(crc, p, n) continues a checksum: start from 0, feed pieces
 * in order; the result is the standard CRC32C of their concatenation
 * (crc32c("123456789") == 0xe3069283).
 */
#ifndef FLUME_LOG_CRC32C_H
#define FLUME_LOG_CRC32C_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CRC32C_POLY 0x82f63b78u /* the Castagnoli polynomial, reflected */

/* table[k][b]: the CRC of byte b followed by k zero bytes. */
static uint32_t crc32c_table[8][256];
/* The implementation chosen at first use. */
static uint32_t (*crc32c_impl)(uint32_t crc, const unsigned char *p, size_t n);
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static uint32_t crc32c_soft(uint32_t crc, const unsigned char *p, size_t n) {
  while (n && ((uintptr_t)p & 7)) {
    crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    n--;
  }
  while (n >= 8) {
    uint64_t w;
    /* Little-endian load: the first byte is the lowest. */
    w = ((uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
         (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
         (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56) ^
        crc;
    crc =
        crc32c_table[7][w & 0xff] ^ crc32c_table[6][(w >> 8) & 0xff] ^
        crc32c_table[5][(w >> 16) & 0xff] ^ crc32c_table[4][(w >> 24) & 0xff] ^
        crc32c_table[3][(w >> 32) & 0xff] ^ crc32c_table[2][(w >> 40) & 0xff] ^
        crc32c_table[1][(w >> 48) & 0xff] ^ crc32c_table[0][w >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

__attribute__((target("sse4.2"))) static uint32_t
crc32c_hard(uint32_t crc, const unsigned char *p, size_t n) {
  /* No aligning loop (x86 loads unaligned words at full speed), and the
   * tail in at most three steps: a log value's length varies, and each
   * byte loop was a mispredicted branch or two a value. */
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c = __builtin_ia32_crc32di(c, w);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = (uint32_t)c;
  if (n & 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    c32 = __builtin_ia32_crc32si(c32, w);
    p += 4;
  }
  if (n & 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    c32 = __builtin_ia32_crc32hi(c32, w);
    p += 2;
  }
  if (n & 1) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}
#define CRC32C_HAVE_HARD 1

/* Three streams. The raw state (no inversions) is linear: the state after
 * blocks A B C of L bytes each, from state c, is
 *   shift(S(c, A), 2L) ^ shift(S(0, B), L) ^ S(0, C)
 * where S(c, D) is the state after D from c and shift(c, L) the state
 * after L zero bytes. Read as a polynomial (bit i is x^(31-i)), the state
 * times x^(8L) mod P is that shift. A carry-less multiply of the state
 * by k (32 x 32 bits) reads, as a 64-bit word, state * k * x; crc32 of
 * that word from 0 multiplies by x^32 and reduces mod P. So with
 * k = x^(8L - 33) mod P, crc32(0, clmul(state, k)) is shift(state, L).
 * crc32c_k[w] is that k for L = 8w bytes. */
#define CRC32C_WORDS_MAX 32 /* a stream's block: at most 256 bytes */
#define CRC32C_THREE 144    /* the least entry checked as three streams */
static uint32_t crc32c_k[2 * CRC32C_WORDS_MAX + 1];

/* x^n mod P, as a state (bit i is x^(31-i)). */
static uint32_t crc32c_xpow(unsigned n) {
  uint32_t v = 0x80000000u; /* x^0 */
  while (n--) v = v & 1 ? (v >> 1) ^ CRC32C_POLY : v >> 1;
  return v;
}

__attribute__((target("sse4.2,pclmul"))) static uint64_t
crc32c_shift(uint32_t state, uint32_t k) {
  __m128i m = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)state),
                                   _mm_cvtsi32_si128((int)k), 0);
  return __builtin_ia32_crc32di(0, (uint64_t)_mm_cvtsi128_si64(m));
}

__attribute__((target("sse4.2,pclmul"))) static uint32_t
crc32c_hard3(uint32_t crc, const unsigned char *p, size_t n) {
  /* Under CRC32C_THREE bytes the joins cost more than the chain saves. */
  while (n >= CRC32C_THREE) {
    size_t w = n / 24, len;
    if (w > CRC32C_WORDS_MAX) w = CRC32C_WORDS_MAX;
    len = 8 * w;
    uint64_t a = crc, b = 0, c = 0;
    for (size_t i = 0; i < len; i += 8) {
      uint64_t x, y, z;
      memcpy(&x, p + i, 8);
      memcpy(&y, p + len + i, 8);
      memcpy(&z, p + 2 * len + i, 8);
      a = __builtin_ia32_crc32di(a, x);
      b = __builtin_ia32_crc32di(b, y);
      c = __builtin_ia32_crc32di(c, z);
    }
    crc = (uint32_t)(crc32c_shift((uint32_t)a, crc32c_k[2 * w]) ^
                     crc32c_shift((uint32_t)b, crc32c_k[w]) ^ c);
    p += 3 * len;
    n -= 3 * len;
  }
  return crc32c_hard(crc, p, n);
}
#endif

static void crc32c_init(void) {
  for (unsigned b = 0; b < 256; b++) {
    uint32_t c = b;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
    crc32c_table[0][b] = c;
  }
  for (unsigned b = 0; b < 256; b++)
    for (int k = 1; k < 8; k++)
      crc32c_table[k][b] = crc32c_table[0][crc32c_table[k - 1][b] & 0xff] ^
                           (crc32c_table[k - 1][b] >> 8);
  crc32c_impl = crc32c_soft;
#ifdef CRC32C_HAVE_HARD
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2") && getenv("FLUME_CRC32C_SOFT") == NULL) {
    crc32c_impl = crc32c_hard;
    if (__builtin_cpu_supports("pclmul")) {
      for (unsigned w = 1; w <= 2 * CRC32C_WORDS_MAX; w++)
        crc32c_k[w] = crc32c_xpow(64 * w - 33);
      crc32c_impl = crc32c_hard3;
    }
  }
#endif
}

static uint32_t crc32c_update(uint32_t crc, const void *p, size_t n) {
  pthread_once(&crc32c_once, crc32c_init);
  return ~crc32c_impl(~crc, p, n);
}

#endif
