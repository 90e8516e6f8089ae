/*
 * The msgpack codec (runtime/msgpack.c). It is the log format, so exact
 * bytes are checked against the MessagePack spec for interop; every kind of
 * value must round-trip (integer vs float, NaN, -0.0, nil inside arrays,
 * binary strings); every refusal must name the value and its path and leave
 * the buffer as it was; every malformed input must fail cleanly with nothing
 * left on the stack. Then two fixed-seed fuzz loops: random Lua values
 * through encode and decode, and random or mutated bytes through decode.
 *
 * `test_msgpack --bench` measures encode and decode throughput instead.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "buf.h"
#include "check.h"
#include "msgpack.h"
#include "lua_check.h"

static lua_State *L;
static char err[512];

/* xorshift64* with a fixed seed: every run tests the same values. */
static uint64_t rng_state = UINT64_C(0x2545f4914f6cdd1d);

static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C(0x2545f4914f6cdd1d);
}

static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }




/* Decodes from an exact-size heap copy, so that the sanitizers see any
 * read past the end. */
static int decode_copy(const void *p, size_t n) {
  char *q = malloc(n ? n : 1);
  CHECK(q != NULL);
  if (n) memcpy(q, p, n);
  int top = lua_gettop(L);
  int rc = flume__mp_decode(L, q, n, err, sizeof err);
  free(q);
  CHECK(lua_gettop(L) == top + (rc == 0));
  CHECK(rc == 0 || rc == FLUME_EDECODE);
  return rc;
}

static size_t unhex(const char *hex, unsigned char *out) {
  size_t n = 0;
  for (const char *s = hex; *s;) {
    if (*s == ' ') {
      s++;
      continue;
    }
    unsigned v;
    CHECK(sscanf(s, "%2x", &v) == 1);
    out[n++] = (unsigned char)v;
    s += 2;
  }
  return n;
}

static void print_hex(FILE *f, const void *p, size_t n) {
  for (size_t i = 0; i < n && i < 64; i++)
    fprintf(f, "%02x ", ((const unsigned char *)p)[i]);
  if (n > 64) fprintf(f, "... (%zu bytes)", n);
  fputc('\n', f);
}

/* The value of `expr` encodes to exactly `hex`, and those bytes decode to
 * a value equal to it. */
static void bytes_are(const char *expr, const char *hex, int line) {
  unsigned char want[256];
  size_t n = unhex(hex, want);
  flume__buf b = FLUME__BUF_INIT;
  int top = lua_gettop(L);
  push_expr(L, expr);
  CHECK_OK(flume__mp_encode(L, -1, &b, err, sizeof err));
  CHECK(lua_gettop(L) == top + 1);
  if (b.len != n || memcmp(b.data, want, n) != 0) {
    fprintf(stderr, "line %d: %s encoded as\n  ", line, expr);
    print_hex(stderr, b.data, b.len);
    fprintf(stderr, "wanted\n  ");
    print_hex(stderr, want, n);
    exit(1);
  }
  CHECK_OK(decode_copy(want, n));
  if (!deep_equal(L, -2, -1, 0)) {
    fprintf(stderr, "line %d: %s does not decode back to itself\n", line, expr);
    exit(1);
  }
  lua_settop(L, top);
  flume__buf_free(&b);
}
#define BYTES_ARE(expr, hex) bytes_are(expr, hex, __LINE__)

/* Bytes given as hex decode to the value of `expr`. */
static void decodes_to(const char *hex, const char *expr, int line) {
  unsigned char in[256];
  size_t n = unhex(hex, in);
  int top = lua_gettop(L);
  if (decode_copy(in, n) != 0) {
    fprintf(stderr, "line %d: %s: %s\n", line, hex, err);
    exit(1);
  }
  push_expr(L, expr);
  if (!deep_equal(L, -2, -1, 0)) {
    fprintf(stderr, "line %d: %s does not decode to %s\n", line, hex, expr);
    exit(1);
  }
  lua_settop(L, top);
}
#define DECODES_TO(hex, expr) decodes_to(hex, expr, __LINE__)

/* Decoding `n` bytes fails with a message containing `want`. */
static void decode_fails(const void *p, size_t n, const char *want, int line) {
  if (decode_copy(p, n) != FLUME_EDECODE) {
    fprintf(stderr, "line %d: decoding ", line);
    print_hex(stderr, p, n);
    fprintf(stderr, "  succeeded, wanted an error with \"%s\"\n", want);
    exit(1);
  }
  if (strstr(err, want) == NULL) {
    fprintf(stderr, "line %d: message \"%s\", wanted \"%s\"\n", line, err,
            want);
    exit(1);
  }
}
#define DECODE_FAILS_HEX(hex, want)                                            \
  do {                                                                         \
    unsigned char in_[256];                                                    \
    decode_fails(in_, unhex(hex, in_), want, __LINE__);                        \
  } while (0)

/* The value at the top of the stack encodes and decodes back to an equal
 * value; pops it. */
static void round_trips(int line) {
  flume__buf b = FLUME__BUF_INIT;
  int top = lua_gettop(L);
  int rc = flume__mp_encode(L, -1, &b, err, sizeof err);
  if (rc) {
    fprintf(stderr, "line %d: encode failed: %s\n", line, err);
    exit(1);
  }
  CHECK(lua_gettop(L) == top);
  if (decode_copy(b.data, b.len)) {
    fprintf(stderr, "line %d: decode failed: %s\n  ", line, err);
    print_hex(stderr, b.data, b.len);
    exit(1);
  }
  if (!deep_equal(L, -2, -1, 0)) {
    fprintf(stderr, "line %d: round trip changed the value\n  ", line);
    print_hex(stderr, b.data, b.len);
    exit(1);
  }
  lua_settop(L, top - 1);
  flume__buf_free(&b);
}
#define ROUND_TRIPS_CHUNK(code)                                                \
  do {                                                                         \
    push_chunk(L, code);                                                          \
    round_trips(__LINE__);                                                     \
  } while (0)
#define ROUND_TRIPS(expr)                                                      \
  do {                                                                         \
    push_expr(L, expr);                                                           \
    round_trips(__LINE__);                                                     \
  } while (0)

/* The value at the top of the stack is refused with exactly `want`, the
 * buffer keeps its earlier contents, and the stack is as it was; pops it. */
static void refused(const char *want, int line) {
  flume__buf b = FLUME__BUF_INIT;
  CHECK_OK(flume__buf_append(&b, "before", 6));
  int top = lua_gettop(L);
  int rc = flume__mp_encode(L, -1, &b, err, sizeof err);
  if (rc != FLUME_EENCODE || strcmp(err, want) != 0) {
    fprintf(stderr, "line %d: rc %s, message \"%s\", wanted \"%s\"\n", line,
            flume_err_name(rc), rc ? err : "", want);
    exit(1);
  }
  CHECK(b.len == 6 && memcmp(b.data, "before", 6) == 0);
  CHECK(lua_gettop(L) == top);
  lua_pop(L, 1);
  flume__buf_free(&b);
}
#define REFUSED_CHUNK(code, want)                                              \
  do {                                                                         \
    push_chunk(L, code);                                                          \
    refused(want, __LINE__);                                                   \
  } while (0)
#define REFUSED(expr, want)                                                    \
  do {                                                                         \
    push_expr(L, expr);                                                           \
    refused(want, __LINE__);                                                   \
  } while (0)

/* Encodes the value at the top of the stack into b (emptied first). */
static void encode_top(flume__buf *b) {
  b->len = 0;
  CHECK_OK(flume__mp_encode(L, -1, b, err, sizeof err));
}

/* ------------------------------------------------------------ exact bytes */

static void test_scalar_bytes(void) {
  BYTES_ARE("nil", "c0");
  BYTES_ARE("false", "c2");
  BYTES_ARE("true", "c3");

  BYTES_ARE("0", "00");
  BYTES_ARE("127", "7f");
  BYTES_ARE("128", "cc 80");
  BYTES_ARE("255", "cc ff");
  BYTES_ARE("256", "cd 01 00");
  BYTES_ARE("300", "cd 01 2c");
  BYTES_ARE("65535", "cd ff ff");
  BYTES_ARE("65536", "ce 00 01 00 00");
  BYTES_ARE("4294967295", "ce ff ff ff ff");
  BYTES_ARE("4294967296", "cf 00 00 00 01 00 00 00 00");
  BYTES_ARE("math.maxinteger", "cf 7f ff ff ff ff ff ff ff");
  BYTES_ARE("-1", "ff");
  BYTES_ARE("-32", "e0");
  BYTES_ARE("-33", "d0 df");
  BYTES_ARE("-128", "d0 80");
  BYTES_ARE("-129", "d1 ff 7f");
  BYTES_ARE("-32768", "d1 80 00");
  BYTES_ARE("-32769", "d2 ff ff 7f ff");
  BYTES_ARE("-2147483648", "d2 80 00 00 00");
  BYTES_ARE("-2147483649", "d3 ff ff ff ff 7f ff ff ff");
  BYTES_ARE("math.mininteger", "d3 80 00 00 00 00 00 00 00");

  BYTES_ARE("1.5", "cb 3f f8 00 00 00 00 00 00");
  BYTES_ARE("1.0", "cb 3f f0 00 00 00 00 00 00");
  BYTES_ARE("0.0", "cb 00 00 00 00 00 00 00 00");
  BYTES_ARE("-0.0", "cb 80 00 00 00 00 00 00 00");
  BYTES_ARE("math.huge", "cb 7f f0 00 00 00 00 00 00");
  BYTES_ARE("-math.huge", "cb ff f0 00 00 00 00 00 00");

  BYTES_ARE("''", "a0");
  BYTES_ARE("'a'", "a1 61");
  BYTES_ARE("'\\u{e9}'", "a2 c3 a9");
  BYTES_ARE("'\\u{1F600}'", "a4 f0 9f 98 80");
  BYTES_ARE("'\\xff'", "c4 01 ff");
  BYTES_ARE("'\\0'", "a1 00");
  BYTES_ARE("('x'):rep(31)",
            "bf 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 "
            "78 78 78 78 78 78 78 78 78 78 78");
  /* Not UTF-8: overlong, surrogate, above U+10FFFF, cut short, stray. */
  BYTES_ARE("'\\xc0\\x80'", "c4 02 c0 80");
  BYTES_ARE("'\\xed\\xa0\\x80'", "c4 03 ed a0 80");
  BYTES_ARE("'\\xf4\\x90\\x80\\x80'", "c4 04 f4 90 80 80");
  BYTES_ARE("'\\xe2\\x82'", "c4 02 e2 82");
  BYTES_ARE("'abcdefgh\\x80'", "c4 09 61 62 63 64 65 66 67 68 80");
  BYTES_ARE("'abcdefghi\\u{20ac}'", "ac 61 62 63 64 65 66 67 68 69 e2 82 ac");
}

/* The first bytes of the encoding of `expr`, and its total length. */
static void head_is(const char *expr, const char *hex, size_t len, int line) {
  unsigned char want[16];
  size_t n = unhex(hex, want);
  flume__buf b = FLUME__BUF_INIT;
  push_expr(L, expr);
  encode_top(&b);
  if (b.len != len || memcmp(b.data, want, n) != 0) {
    fprintf(stderr, "line %d: %s encoded as %zu bytes: ", line, expr, b.len);
    print_hex(stderr, b.data, b.len < 16 ? b.len : 16);
    exit(1);
  }
  round_trips(line);
  flume__buf_free(&b);
}
#define HEAD_IS(expr, hex, len) head_is(expr, hex, len, __LINE__)

static void test_length_forms(void) {
  HEAD_IS("('x'):rep(32)", "d9 20", 34);
  HEAD_IS("('x'):rep(255)", "d9 ff", 257);
  HEAD_IS("('x'):rep(256)", "da 01 00", 259);
  HEAD_IS("('x'):rep(65535)", "da ff ff", 65538);
  HEAD_IS("('x'):rep(65536)", "db 00 01 00 00", 65541);
  HEAD_IS("('\\u{e9}'):rep(40000)", "db 00 01 38 80", 80005);
  HEAD_IS("('\\xff'):rep(255)", "c4 ff", 257);
  HEAD_IS("('\\xff'):rep(256)", "c5 01 00", 259);
  HEAD_IS("('\\xff'):rep(65536)", "c6 00 01 00 00", 65541);
  HEAD_IS("('x'):rep(70000) .. '\\xff'", "c6 00 01 11 71", 70006);

  HEAD_IS("(function() local t = {} for i = 1, 15 do t[i] = i end "
          "return t end)()",
          "9f 01 02", 16);
  HEAD_IS("(function() local t = {} for i = 1, 16 do t[i] = i end "
          "return t end)()",
          "dc 00 10 01", 19);
  HEAD_IS("(function() local t = {} for i = 1, 70000 do t[i] = true end "
          "return t end)()",
          "dd 00 01 11 70 c3", 70005);
  /* A map's header is widened after the fact past 15 pairs. */
  HEAD_IS("(function() local t = {} for i = 1, 15 do t['k' .. i] = i end "
          "return t end)()",
          "8f", 1 + 9 * 3 + 6 * 4 + 15);
  HEAD_IS("(function() local t = {} for i = 1, 16 do t['k' .. i] = i end "
          "return t end)()",
          "de 00 10", 3 + 9 * 3 + 7 * 4 + 16);
  HEAD_IS("(function() local t = {} for i = 1, 70000 do t['k' .. i] = 1 end "
          "return t end)()",
          "df 00 01 11 70",
          5 + 9 * 3 + 90 * 4 + 900 * 5 + 9000 * 6 + 60001 * 7 + 70000);
  /* Maps found by counting (the first key is a positive integer). */
  HEAD_IS("(function() local t = {} for i = 1, 16 do t[i * 3] = i end "
          "return t end)()",
          "de 00 10", 3 + 16 * 2);
}

static void test_table_bytes(void) {
  BYTES_ARE("{}", "80");
  BYTES_ARE("{a = 1}", "81 a1 61 01");
  BYTES_ARE("{1, 2, 3}", "93 01 02 03");
  BYTES_ARE("{1, nil, 3}", "93 01 c0 03");
  BYTES_ARE("{[2] = true}", "92 c0 c3");
  BYTES_ARE("{[3] = true}", "81 03 c3");
  BYTES_ARE("{[1] = 1, [2] = 2, [6] = 6}", "96 01 02 c0 c0 c0 06");
  BYTES_ARE("{[1] = 1, [2] = 2, [7] = 7}", "83 01 01 02 02 07 07");
  BYTES_ARE("{[0] = 'z'}", "81 00 a1 7a");
  BYTES_ARE("{[-1] = 1}", "81 ff 01");
  BYTES_ARE("{[1.5] = 1}", "81 cb 3f f8 00 00 00 00 00 00 01");
  BYTES_ARE("{[true] = 1}", "81 c3 01");
  BYTES_ARE("{[1.0] = 'one'}", "91 a3 6f 6e 65");
  BYTES_ARE("{{}, {{}}}", "92 80 91 80");
  BYTES_ARE("{x = {1.0, -1}}", "81 a1 78 92 cb 3f f0 00 00 00 00 00 00 ff");
  BYTES_ARE("{['\\xff'] = '\\xfe'}", "81 c4 01 ff c4 01 fe");
  /* Metamethods are never called: raw access only. */
  BYTES_ARE("setmetatable({1, 2}, {__index = error, __len = error, "
            "__pairs = error, __newindex = error})",
            "92 01 02");
  BYTES_ARE("setmetatable({}, {__index = function() return 1 end})", "80");

  /* Elements written in order, then found to belong to a map or to an
   * array with some keys in the hash part. */
  BYTES_ARE("(function() local t = {1, 2} t[5] = 5 return t end)()",
            "95 01 02 c0 c0 05");
  BYTES_ARE("(function() local t = {'a'} t[3] = 3 return t end)()",
            "93 a1 61 c0 03");
  BYTES_ARE("(function() local t = {{1}} t[-1] = 0 return t end)()",
            "82 01 91 01 ff 00");
  BYTES_ARE("(function() local t = {{1}} t[4] = 0 return t end)()",
            "94 91 01 c0 c0 00");
  BYTES_ARE("(function() local t = {{1}} t[5] = 0 return t end)()",
            "82 01 91 01 05 00");
  ROUND_TRIPS("(function() local t = {'a', {b = {1, 2, x = 'y'}}, 3.5} "
              "t.n = 3 return t end)()");
  ROUND_TRIPS("(function() local t = {} for i = 1, 300 do t[i] = {i} end "
              "t.n = 300 return t end)()");
  ROUND_TRIPS("(function() local t = {} for i = 1, 70000 do t[i] = i end "
              "t.n = 70000 return t end)()");
  ROUND_TRIPS("(function() local t = {} for i = 1, 200 do t[i] = i end "
              "t[1000] = 1 return t end)()");
  ROUND_TRIPS("(function() local t = {} for i = 1, 200 do t[i] = i end "
              "t[400] = 1 return t end)()");
  /* Re-encoding the elements at each level would take 2^100 steps. */
  ROUND_TRIPS("(function() local r = {} local t = r for i = 2, 100 do "
              "t[1] = {} t.x = i t = t[1] end return r end)()");
  ROUND_TRIPS("(function() local r = {} local t = r for i = 2, 100 do "
              "t[1] = {} t[2] = 'v' t[6] = i t = t[1] end return r end)()");

  ROUND_TRIPS("(function() local big = {} for i = 1, 70000 do big[i] = i end "
              "local m = {} for i = 1, 70000 do m['k' .. i] = i end "
              "local t = {big, ('\\xff'):rep(70000), ('z'):rep(70000), m} "
              "t.n = 4 return t end)()");

  /* A mixed table is a map, found while counting. */
  flume__buf b = FLUME__BUF_INIT;
  push_expr(L, "{1, 2, n = 2}");
  encode_top(&b);
  CHECK(b.len == 8 && (unsigned char)b.data[0] == 0x83);
  lua_pop(L, 1);
  flume__buf_free(&b);

  /* encode appends, and takes a relative index. */
  CHECK_OK(flume__buf_append(&b, "xy", 2));
  push_expr(L, "300");
  lua_pushnil(L);
  CHECK_OK(flume__mp_encode(L, -2, &b, err, sizeof err));
  CHECK(b.len == 5 && memcmp(b.data, "xy\xcd\x01\x2c", 5) == 0);
  CHECK_OK(flume__mp_encode(L, lua_gettop(L), &b, NULL, 0));
  CHECK(b.len == 6 && (unsigned char)b.data[5] == 0xc0);
  lua_pop(L, 2);
  flume__buf_free(&b);
}

static void test_decode_forms(void) {
  /* Forms flume does not write but other writers do. */
  DECODES_TO("ca 3f c0 00 00", "1.5");
  DECODES_TO("ca 7f 80 00 00", "math.huge");
  DECODES_TO("cc 01", "1");
  DECODES_TO("cd 00 01", "1");
  DECODES_TO("ce 00 00 00 01", "1");
  DECODES_TO("cf 00 00 00 00 00 00 00 01", "1");
  DECODES_TO("d0 01", "1");
  DECODES_TO("d1 ff ff", "-1");
  DECODES_TO("d2 ff ff ff ff", "-1");
  DECODES_TO("d3 ff ff ff ff ff ff ff ff", "-1");
  DECODES_TO("cf ff ff ff ff ff ff ff ff", "18446744073709551615.0");
  DECODES_TO("cf 80 00 00 00 00 00 00 00", "9223372036854775808.0");
  DECODES_TO("d9 01 61", "'a'");
  DECODES_TO("da 00 01 61", "'a'");
  DECODES_TO("db 00 00 00 01 61", "'a'");
  DECODES_TO("c4 00", "''");
  DECODES_TO("c5 00 01 ff", "'\\xff'");
  DECODES_TO("c6 00 00 00 01 ff", "'\\xff'");
  DECODES_TO("a1 ff", "'\\xff'"); /* a str that is not UTF-8 is accepted */
  DECODES_TO("dc 00 02 01 c0", "{1}");
  DECODES_TO("dd 00 00 00 00", "{}");
  DECODES_TO("90", "{}");
  DECODES_TO("de 00 01 a1 61 01", "{a = 1}");
  DECODES_TO("df 00 00 00 01 a1 61 01", "{a = 1}");
  DECODES_TO("82 a1 61 01 a1 61 02", "{a = 2}"); /* the last duplicate wins */
  DECODES_TO("81 a1 61 c0", "{}");
  DECODES_TO("81 cb 3f f0 00 00 00 00 00 00 01", "{1}");
  DECODES_TO("81 cb 80 00 00 00 00 00 00 00 01", "{[0] = 1}");
  DECODES_TO("81 c2 90", "{[false] = {}}");
  /* The forms a map's values and an array's elements decode inline
   * (dec_elem), at their extremes, and beside what goes to dec_value. */
  DECODES_TO("86 a1 61 bf 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 "
             "78 78 78 78 78 78 78 78 78 78 78 78 78 78 a1 62 a0 a1 63 7f "
             "a1 64 cc ff a1 65 cd ff ff a1 66 ce ff ff ff ff",
             "{a = ('x'):rep(31), b = '', c = 127, d = 255, e = 65535, "
             "f = 4294967295}");
  DECODES_TO("95 d9 00 d9 02 61 62 cb c0 04 00 00 00 00 00 00 "
             "cb 7f f0 00 00 00 00 00 00 d3 80 00 00 00 00 00 00 00",
             "{'', 'ab', -2.5, math.huge, math.mininteger}");
  DECODES_TO("93 e0 cf 00 00 00 01 00 00 00 00 c3", "{-32, 4294967296, true}");
}

/* ------------------------------------------------------------ round trips */

static void test_round_trips(void) {
  ROUND_TRIPS("0/0");
  ROUND_TRIPS("-(0/0)");
  ROUND_TRIPS("{0/0, -0.0, 0.0, math.huge, -math.huge}");
  ROUND_TRIPS("{math.mininteger, math.maxinteger, 1, 1.0, -1, -1.0}");
  ROUND_TRIPS("{[1.5] = 2.5, [-3] = -3.0, [true] = false, [false] = true}");
  ROUND_TRIPS("2^53 + 0.0");
  ROUND_TRIPS("5e-324");
  ROUND_TRIPS("1.7976931348623157e308");
  ROUND_TRIPS("{1, nil, 3}");
  ROUND_TRIPS("{nil, nil, 3, 4}");
  ROUND_TRIPS("{[3] = 3}");
  ROUND_TRIPS("{a = {b = {c = {1, {2, {3}}}}}, d = ''}");
  ROUND_TRIPS("{['with space'] = 1, [''] = 2, ['\\0\\xff'] = 3}");
  ROUND_TRIPS("{type = 'post', author = '@user123', seq = 12345, "
              "amount = 42.5, text = ('lorem ipsum '):rep(9)}");
  ROUND_TRIPS_CHUNK("local s = {} for i = 0, 255 do s[#s + 1] = "
                    "string.char(i):rep(i) end return s");
  ROUND_TRIPS_CHUNK("local t = {} for i = 1, 70000 do t['k' .. i] = "
                    "{i, i + 0.5} end return t");
  ROUND_TRIPS_CHUNK("local t = {} for i = 1, 70000, 2 do t[i] = i end "
                    "return t");
  ROUND_TRIPS_CHUNK("return {('\\xfe'):rep(100000), ('y'):rep(100000)}");

  /* The same table twice side by side is not a cycle: it is written twice. */
  flume__buf b = FLUME__BUF_INIT;
  push_chunk(L, "local s = {1} return {s, s, {s}}");
  encode_top(&b);
  CHECK(b.len == 8 &&
        memcmp(b.data, "\x93\x91\x01\x91\x01\x91\x91\x01", 8) == 0);
  round_trips(__LINE__);
  flume__buf_free(&b);

  /* Exactly FLUME__MP_MAX_DEPTH levels of tables are fine both ways. */
  ROUND_TRIPS_CHUNK("local r = {} local t = r for i = 2, 100 do t.x = {} "
                    "t = t.x end return r");
  ROUND_TRIPS_CHUNK("local r = {} local t = r for i = 2, 100 do t[1] = {} "
                    "t = t[1] end t[1] = 'deep' return r");
}

/* --------------------------------------------------------------- refusals */

static int l_noop(lua_State *Ls) {
  (void)Ls;
  return 0;
}

static void test_refusals(void) {
  REFUSED("print", "cannot encode a function at the top level");
  REFUSED("{handlers = {1, function() end}}",
          "cannot encode a function at .handlers[2]");
  REFUSED("coroutine.create(print)", "cannot encode a thread at the top level");
  REFUSED("{a = {b = {io.stdout}}}", "cannot encode a userdata at .a.b[1]");
  REFUSED("{[-2] = print}", "cannot encode a function at [-2]");
  REFUSED("{[1.5] = print}", "cannot encode a function at [1.5]");
  REFUSED("{[true] = {[false] = print}}",
          "cannot encode a function at [true][false]");
  REFUSED("{['a b'] = {['\\0\"\\xff'] = {_x9 = print}}}",
          "cannot encode a function at [\"a b\"][\"\\x00\\x22\\xff\"]._x9");
  REFUSED("{['9a'] = print}", "cannot encode a function at [\"9a\"]");
  REFUSED("{[('k'):rep(30)] = print}",
          "cannot encode a function at [\"kkkkkkkkkkkkkkkkkkkkkkkk...\"]");
  REFUSED("{1, 2, x = {nil, print}}", "cannot encode a function at .x[2]");

  lua_newtable(L);
  lua_pushlightuserdata(L, &err);
  lua_setfield(L, -2, "p");
  refused("cannot encode a light userdata at .p", __LINE__);
  lua_newuserdatauv(L, 8, 0);
  refused("cannot encode a userdata at the top level", __LINE__);
  lua_createtable(L, 2, 0);
  lua_pushcfunction(L, l_noop);
  lua_rawseti(L, -2, 2);
  refused("cannot encode a function at [2]", __LINE__);

  REFUSED_CHUNK("local t = {a = {}} t.a.b = t return t",
                "cyclic table at .a.b");
  REFUSED_CHUNK("local t = {} t[1] = t return t", "cyclic table at [1]");
  REFUSED_CHUNK("local t = {x = {}} t.x.y = t.x return t",
                "cyclic table at .x.y");

  REFUSED("{[{}] = 1}",
          "cannot use a table as a map key in the table at the top level");
  REFUSED("{a = {[print] = 1}}",
          "cannot use a function as a map key in the table at .a");
  REFUSED_CHUNK("return {x = {[coroutine.create(print)] = 1}}",
                "cannot use a thread as a map key in the table at .x");

  /* 101 levels: the full path fits. */
  REFUSED_CHUNK("local r = {} local t = r for i = 2, 101 do t.x = {} "
                "t = t.x end return r",
                "table nesting deeper than 100 at "
                ".x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x"
                ".x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x"
                ".x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x"
                ".x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x");
  /* A long path keeps its first and last steps. */
  REFUSED_CHUNK(
      "local r = {} local t = r for i = 2, 200 do t.abc = {} "
      "t = t.abc end t.abc = print return r",
      "table nesting deeper than 100 at "
      ".abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc"
      ".abc.abc.abc.abc.abc.abc.abc.abc..."
      ".abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc.abc"
      ".abc.abc.abc.abc.abc.abc.abc.abc");
  REFUSED_CHUNK("local r = {} local t = r for i = 1, 99 do t[1] = {} "
                "t = t[1] end t[1] = print return r",
                "cannot encode a function at "
                "[1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1]"
                "[1][1][1][1][1][1][1][1][1][1][1][1][1]..."
                "[1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1]"
                "[1][1][1][1][1][1][1][1][1][1][1][1][1]");
  REFUSED_CHUNK("local r = {} local t = r for i = 1, 20 do local k = "
                "tostring(i):rep(30) t[k] = {} t = t[k] end "
                "t.z = print return r",
                "cannot encode a function at "
                "[\"111111111111111111111111...\"]"
                "[\"222222222222222222222222...\"]"
                "[\"333333333333333333333333...\"]..."
                "[\"181818181818181818181818...\"]"
                "[\"191919191919191919191919...\"]"
                "[\"202020202020202020202020...\"].z");

  /* A bad value deep in a big table, after a lot has been written. */
  REFUSED_CHUNK("local t = {} for i = 1, 5000 do t[i] = ('v'):rep(100) end "
                "t[5000] = {ok = 1, bad = print} return t",
                "cannot encode a function at [5000].bad");
  REFUSED_CHUNK("local t = {} for i = 1, 5000 do t['k' .. i] = i end "
                "t.k4000 = {print} return t",
                "cannot encode a function at .k4000[1]");

  /* A tiny message buffer truncates the message, and NULL is allowed. */
  flume__buf b = FLUME__BUF_INIT;
  char small[8];
  push_expr(L, "{print}");
  CHECK_ERR(flume__mp_encode(L, -1, &b, small, sizeof small), FLUME_EENCODE);
  CHECK(strcmp(small, "cannot ") == 0);
  CHECK_ERR(flume__mp_encode(L, -1, &b, NULL, 0), FLUME_EENCODE);
  CHECK(b.len == 0);
  lua_pop(L, 1);
  flume__buf_free(&b);
}

/* Neither direction raises when the Lua stack cannot grow: they fail. */
static void test_stack_exhausted(void) {
  flume__buf b = FLUME__BUF_INIT;
  unsigned char deep[101];
  int top = lua_gettop(L);
  push_chunk(L, "local r = {} local t = r for i = 2, 100 do t[1] = {} "
             "t = t[1] end return r");
  encode_top(&b);
  memcpy(deep, b.data, b.len);
  CHECK(b.len == 100);
  CHECK_OK(flume__buf_append(&b, "!", 1));
  /* Fill the stack to about 50 slots short of the most Lua allows. */
  int room = 1000000 - 50 - lua_gettop(L);
  CHECK(lua_checkstack(L, room));
  for (int i = 0; i < room; i++) lua_pushnil(L);
  lua_pushvalue(L, top + 1);
  CHECK_ERR(flume__mp_encode(L, -1, &b, err, sizeof err), FLUME_EENCODE);
  CHECK(strstr(err, "Lua stack exhausted at [1][1]") == err);
  CHECK(b.len == 101);
  int before = lua_gettop(L);
  CHECK_ERR(flume__mp_decode(L, (const char *)deep, 100, err, sizeof err),
            FLUME_EDECODE);
  CHECK(strstr(err, "Lua stack exhausted at offset ") == err);
  CHECK(lua_gettop(L) == before);
  lua_settop(L, top);
  flume__buf_free(&b);
}

/* Running out of buffer memory is FLUME_ENOMEM, with nothing appended. */
static void test_no_memory(void) {
  /* A buffer that claims to be almost SIZE_MAX long cannot grow. */
  flume__buf b = {NULL, SIZE_MAX - 2, SIZE_MAX - 2};
  push_expr(L, "{1, 2, 3}");
  CHECK_ERR(flume__mp_encode(L, -1, &b, err, sizeof err), FLUME_ENOMEM);
  CHECK(strcmp(err, "out of memory while encoding") == 0);
  CHECK(b.len == SIZE_MAX - 2 && b.data == NULL);
  lua_pop(L, 1);
}

/* Tables bigger than the decoder sizes up front still decode whole. */
static void test_big_tables(void) {
  uint32_t n = 1100000;
  size_t size = 5 + (size_t)n * 6;
  unsigned char *p = malloc(size), *w = p;
  CHECK(p != NULL);
  *w++ = 0xdd;
  w[0] = (unsigned char)(n >> 24), w[1] = (unsigned char)(n >> 16);
  w[2] = (unsigned char)(n >> 8), w[3] = (unsigned char)n;
  w += 4;
  memset(w, 0x07, n);
  CHECK_OK(decode_copy(p, 5 + n));
  CHECK(lua_rawlen(L, -1) == n);
  CHECK(lua_rawgeti(L, -1, n) == LUA_TNUMBER && lua_tointeger(L, -1) == 7);
  lua_pop(L, 2);

  p[0] = 0xdf;
  for (uint32_t i = 0; i < n; i++) {
    w[0] = 0xce;
    w[1] = (unsigned char)(i >> 24), w[2] = (unsigned char)(i >> 16);
    w[3] = (unsigned char)(i >> 8), w[4] = (unsigned char)i;
    w[5] = 0xc3;
    w += 6;
  }
  CHECK_OK(decode_copy(p, size));
  CHECK(lua_rawgeti(L, -1, n - 1) == LUA_TBOOLEAN);
  CHECK(lua_rawgeti(L, -2, 0) == LUA_TBOOLEAN);
  CHECK(lua_rawgeti(L, -3, n) == LUA_TNIL);
  lua_pop(L, 4);
  free(p);
}

/* ---------------------------------------------------------- decode errors */

static void test_decode_errors(void) {
  decode_fails("", 0, "empty input", __LINE__);
  DECODE_FAILS_HEX("c1", "invalid byte 0xc1 at offset 0");
  DECODE_FAILS_HEX("92 01 c1", "invalid byte 0xc1 at offset 2");
  DECODE_FAILS_HEX("01 02", "1 trailing bytes after the value at offset 1");
  DECODE_FAILS_HEX("80 80 80", "2 trailing bytes after the value at offset 1");
  DECODE_FAILS_HEX("d4 05 00", "unsupported ext type 5 at offset 0");
  DECODE_FAILS_HEX("d5 ff 00 00", "unsupported ext type -1 at offset 0");
  DECODE_FAILS_HEX("d6 07 00 00 00 00", "unsupported ext type 7");
  DECODE_FAILS_HEX("d7 07 00 00 00 00 00 00 00 00", "unsupported ext type 7");
  DECODE_FAILS_HEX("d8 07 00", "unsupported ext type 7");
  DECODE_FAILS_HEX("91 c7 01 08 00", "unsupported ext type 8 at offset 1");
  DECODE_FAILS_HEX("c8 00 01 09 00", "unsupported ext type 9");
  DECODE_FAILS_HEX("c9 00 00 00 01 0a 00", "unsupported ext type 10");
  DECODE_FAILS_HEX("d4", "truncated input");
  DECODE_FAILS_HEX("c9 00 00 00 01", "truncated input");
  DECODE_FAILS_HEX("81 c0 01", "nil map key at offset 1");
  DECODE_FAILS_HEX("81 cb 7f f8 00 00 00 00 00 00 01",
                   "NaN map key at offset 1");
  DECODE_FAILS_HEX("82 01 01 ca 7f c0 00 00 01", "NaN map key at offset 3");
  DECODE_FAILS_HEX("81 90 01", "map key at offset 1 is an array or a map");
  DECODE_FAILS_HEX("81 80 01", "map key at offset 1 is an array or a map");
  DECODE_FAILS_HEX("81 dc 00 00 01", "map key at offset 1 is an array");
  DECODE_FAILS_HEX("81 df 00 00 00 00 01", "map key at offset 1 is an array");
  DECODE_FAILS_HEX("81 c1 01", "invalid byte 0xc1 at offset 1");
  DECODE_FAILS_HEX("a2 61", "string of 2 bytes at offset 1 is longer than "
                            "the 1 bytes left");
  DECODE_FAILS_HEX("db ff ff ff ff 61", "string of 4294967295 bytes");
  DECODE_FAILS_HEX("c6 ff ff ff ff", "string of 4294967295 bytes");
  DECODE_FAILS_HEX("cb 00 00", "truncated input: the value at offset 0 needs "
                               "9 bytes, 3 left");
  DECODE_FAILS_HEX("92 01", "array of 2 elements at offset 0 is longer "
                            "than the 1 bytes left");
  DECODE_FAILS_HEX("92 01 cd 00", "truncated input: the value at offset 2 "
                                  "needs 3 bytes, 2 left");
  DECODE_FAILS_HEX("82 01 01 01 cd", "truncated input: the value at offset 4");
  /* The same refusals for the forms a map or array decodes inline. */
  DECODE_FAILS_HEX("81 a1 61 a3 62 63", "string of 3 bytes at offset 4 is "
                                        "longer than the 2 bytes left");
  DECODE_FAILS_HEX("91 a1", "string of 1 bytes at offset 2 is longer than "
                            "the 0 bytes left");
  DECODE_FAILS_HEX("81 a1 61 d9 05 62", "string of 5 bytes at offset 5 is "
                                        "longer than the 1 bytes left");
  DECODE_FAILS_HEX("81 a1 61 d9", "truncated input: the value at offset 3 "
                                  "needs 2 bytes, 1 left");
  DECODE_FAILS_HEX("81 a1 61 cb 00 00", "truncated input: the value at "
                                        "offset 3 needs 9 bytes, 3 left");
  DECODE_FAILS_HEX("92 01 ce 00 00 00", "truncated input: the value at "
                                        "offset 2 needs 5 bytes, 4 left");
  DECODE_FAILS_HEX("92 01 cc", "truncated input: the value at offset 2 "
                               "needs 2 bytes, 1 left");
  DECODE_FAILS_HEX("81 a1 61", "truncated input: the value at offset 3 "
                               "needs 1 bytes, 0 left");
  /* Hostile counts fail before anything is allocated for them. */
  DECODE_FAILS_HEX("df ff ff ff ff", "map of 4294967295 pairs at offset 0 "
                                     "is longer than the 0 bytes left");
  DECODE_FAILS_HEX("dd ff ff ff ff 01 02",
                   "array of 4294967295 elements at offset 0");
  DECODE_FAILS_HEX("92 de ff ff 01", "map of 65535 pairs at offset 1");
  DECODE_FAILS_HEX("84 01 01 01 01 01 01", "map of 4 pairs");

  /* A depth bomb stops at the limit. */
  size_t n = 100000;
  unsigned char *bomb = malloc(n);
  CHECK(bomb != NULL);
  memset(bomb, 0x91, n);
  decode_fails(bomb, n, "nesting deeper than 100 at offset 100", __LINE__);
  memset(bomb, 0x81, n);
  for (size_t i = 1; i < n; i += 2) bomb[i] = 0x01;
  decode_fails(bomb, n, "nesting deeper than 100 at offset 200", __LINE__);
  /* 100 levels decode; 101 do not. */
  memset(bomb, 0x91, 100);
  bomb[100] = 0xc0;
  CHECK_OK(decode_copy(bomb, 101));
  lua_pop(L, 1);
  memset(bomb, 0x91, 101);
  bomb[101] = 0xc0;
  decode_fails(bomb, 102, "nesting deeper than 100 at offset 100", __LINE__);
  free(bomb);

  /* Every proper prefix of a valid encoding is an error. */
  flume__buf b = FLUME__BUF_INIT;
  push_expr(L, "{a = {1, nil, 3.5, 'x'}, [2] = ('\\xff'):rep(300), "
            "c = {d = {true, false, -70000}, [-1.5] = math.maxinteger}, "
            "e = ('y'):rep(700), f = 0/0}");
  encode_top(&b);
  lua_pop(L, 1);
  for (size_t k = 0; k < b.len; k++) {
    if (decode_copy(b.data, k) != FLUME_EDECODE) {
      fprintf(stderr, "prefix of %zu of %zu bytes decoded\n", k, b.len);
      exit(1);
    }
  }
  CHECK_OK(decode_copy(b.data, b.len));
  lua_pop(L, 1);

  /* The message buffer may be small or missing. */
  char small[6];
  CHECK_ERR(flume__mp_decode(L, "\xc1", 1, small, sizeof small), FLUME_EDECODE);
  CHECK(strcmp(small, "inval") == 0);
  CHECK_ERR(flume__mp_decode(L, "\xc1", 1, NULL, 0), FLUME_EDECODE);
  flume__buf_free(&b);
}

/* ---------------------------------------------------------- UTF-8 choice */

/* A random string made to be interesting to the UTF-8 check: ASCII runs of
 * every length around 8, valid characters of every width, and damage. */
static void push_utf8ish(void) {
  char s[96];
  size_t n = 0, want = below(40);
  while (n < want) {
    uint32_t cp;
    switch (below(8)) {
    case 0:
    case 1:
      for (uint32_t k = below(12); k-- && n < sizeof s - 4;)
        s[n++] = (char)(0x20 + below(0x5f));
      continue;
    case 2:
      s[n++] = (char)below(256); /* anything */
      continue;
    case 3:
      cp = 0x80 + below(0x780);
      break;
    case 4:
      cp = 0x800 + below(0xf800); /* includes surrogates */
      break;
    case 5:
      cp = 0x10000 + below(0x100000 + 0x10000); /* includes > U+10FFFF */
      break;
    case 6: /* edges */
    {
      static const uint32_t edge[] = {0x7f,   0x80,    0x7ff,    0x800,
                                      0xd7ff, 0xd800,  0xdfff,   0xe000,
                                      0xffff, 0x10000, 0x10ffff, 0x110000};
      cp = edge[below(12)];
      break;
    }
    default: /* an overlong or cut-short sequence */
      if (below(2)) {
        s[n++] = (char)(0xc0 + below(2));
        s[n++] = (char)(0x80 + below(64));
      } else {
        s[n++] = (char)(0xe0 + below(16));
      }
      continue;
    }
    if (cp < 0x80) {
      s[n++] = (char)cp;
    } else if (cp < 0x800) {
      s[n++] = (char)(0xc0 | cp >> 6);
      s[n++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      s[n++] = (char)(0xe0 | cp >> 12);
      s[n++] = (char)(0x80 | (cp >> 6 & 0x3f));
      s[n++] = (char)(0x80 | (cp & 0x3f));
    } else {
      s[n++] = (char)(0xf0 | (cp >> 18 & 0x07));
      s[n++] = (char)(0x80 | (cp >> 12 & 0x3f));
      s[n++] = (char)(0x80 | (cp >> 6 & 0x3f));
      s[n++] = (char)(0x80 | (cp & 0x3f));
    }
  }
  lua_pushlstring(L, s, n);
}

/* str or bin must agree with Lua's own strict check, utf8.len(s). */
static void test_utf8_choice(void) {
  flume__buf b = FLUME__BUF_INIT;
  lua_getglobal(L, "utf8");
  lua_getfield(L, -1, "len");
  int len = lua_gettop(L);
  for (int i = 0; i < 30000; i++) {
    push_utf8ish();
    lua_pushvalue(L, len);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);
    int valid = !lua_isnil(L, -1);
    lua_pop(L, 1);
    encode_top(&b);
    unsigned c = (unsigned char)b.data[0];
    int str = (c >= 0xa0 && c <= 0xbf) || c == 0xd9;
    if (str != valid) {
      fprintf(stderr, "utf8.len says %d, encode says %d for ", valid, str);
      print_hex(stderr, b.data, b.len);
      exit(1);
    }
    lua_pop(L, 1);
  }
  lua_settop(L, len - 2);
  flume__buf_free(&b);
}

/* ------------------------------------------------------------------ fuzz */

static void push_random_string(void) {
  char s[300];
  size_t n;
  switch (below(6)) {
  case 0:
    lua_pushliteral(L, "");
    return;
  case 1:
    n = below(sizeof s);
    for (size_t i = 0; i < n; i++) s[i] = (char)rnd();
    break;
  case 2:
    push_utf8ish();
    return;
  default:
    n = below(below(4) ? 12 : sizeof s);
    for (size_t i = 0; i < n; i++) s[i] = (char)('a' + below(26));
    break;
  }
  lua_pushlstring(L, s, n);
}

static void push_random_number(void) {
  static const double specials[] = {0.0, -0.0, 1.0, -1.5, 1e300, 5e-324};
  switch (below(10)) {
  case 0:
    lua_pushinteger(L, (lua_Integer)rnd());
    return;
  case 1: {
    /* Around every boundary between int forms. */
    static const int64_t edges[] = {
        0,      127,       128,       255,        256,       65535,
        65536,  -32,       -33,       -128,       -129,      -32768,
        -32769, INT32_MIN, INT32_MAX, UINT32_MAX, INT64_MIN, INT64_MAX};
    /* Wrapping at the ends of the range is fine: it is an edge too. */
    uint64_t v = (uint64_t)edges[below(18)] + below(3) - 1;
    lua_pushinteger(L, (lua_Integer)v);
    return;
  }
  case 2: {
    uint64_t u = rnd();
    double d;
    memcpy(&d, &u, 8); /* any bits: NaNs, infinities, subnormals */
    lua_pushnumber(L, d);
    return;
  }
  case 3:
    lua_pushnumber(L, specials[below(6)]);
    return;
  case 4:
    lua_pushnumber(L, below(2) ? NAN : below(2) ? INFINITY : -INFINITY);
    return;
  case 5:
    lua_pushnumber(L, (double)(int)below(100)); /* integral floats */
    return;
  default:
    lua_pushinteger(L, (lua_Integer)below(300) - 150);
    return;
  }
}

/* A scalar usable as a key: no nil, no NaN. */
static void push_random_key(void) {
  switch (below(5)) {
  case 0:
  case 1:
    push_random_string();
    return;
  case 2:
    lua_pushinteger(L, (lua_Integer)below(40) - 5);
    return;
  case 3:
    lua_pushboolean(L, (int)below(2));
    return;
  default:
    push_random_number();
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
        isnan(lua_tonumber(L, -1))) {
      lua_pop(L, 1);
      lua_pushnumber(L, 0.25);
    }
    return;
  }
}

/*
 * Pushes a random value no more than `depth` tables deep. `pool` is the
 * stack index of a table of finished tables, which may be used again (a
 * table twice is fine as long as it is not its own ancestor, and a
 * finished table never is).
 */
static void push_random_value(int depth, int pool) {
  uint32_t kind = below(depth > 0 ? 10 : 6);
  CHECK(lua_checkstack(L, 8));
  switch (kind) {
  case 0:
    lua_pushnil(L);
    return;
  case 1:
    lua_pushboolean(L, (int)below(2));
    return;
  case 2:
  case 3:
    push_random_number();
    return;
  case 4:
  case 5:
    push_random_string();
    return;
  default:
    break;
  }
  lua_Integer pooled = (lua_Integer)lua_rawlen(L, pool);
  if (pooled > 0 && below(8) == 0) {
    lua_rawgeti(L, pool, 1 + (lua_Integer)below((uint32_t)pooled));
    return;
  }
  uint32_t n = below(below(16) ? 8 : 40);
  lua_createtable(L, 0, 0);
  switch (below(5)) {
  case 4: /* a sequence, then other keys: past its end, or of other kinds */
    for (uint32_t i = 1; i <= n; i++) {
      push_random_value(depth - 1, pool);
      lua_rawseti(L, -2, i);
    }
    for (uint32_t i = below(4); i--;) {
      if (below(2))
        lua_pushinteger(L, (lua_Integer)(n + 1 + below(2 * n + 2)));
      else
        push_random_key();
      push_random_value(depth - 1, pool);
      lua_rawset(L, -3);
    }
    break;
  case 0: /* a sequence, perhaps with holes */
    for (uint32_t i = 1; i <= n; i++) {
      push_random_value(depth - 1, pool);
      lua_rawseti(L, -2, i);
    }
    break;
  case 1: /* sparse integer keys */
    for (uint32_t i = 0; i < n; i++) {
      push_random_value(depth - 1, pool);
      lua_rawseti(L, -2, 1 + (lua_Integer)below(3 * n + 1));
    }
    break;
  case 2: /* a record */
    for (uint32_t i = 0; i < n; i++) {
      push_random_value(depth - 1, pool);
      lua_setfield(L, -2,
                   (const char *[]){"type", "author", "seq", "text", "a", "b",
                                    "_"}[below(7)]);
    }
    break;
  default: /* keys of every kind */
    for (uint32_t i = 0; i < n; i++) {
      push_random_key();
      push_random_value(depth - 1, pool);
      lua_rawset(L, -3);
    }
    break;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, pool, (lua_Integer)lua_rawlen(L, pool) + 1);
}

/* What the fuzz loops did, printed so a weakened generator shows. */
static size_t fuzz_bytes_encoded, fuzz_decoded, fuzz_refused;

/* Random values encode, and decode back to equal values. */
static void fuzz_values(int rounds) {
  flume__buf b = FLUME__BUF_INIT;
  int top = lua_gettop(L);
  for (int r = 0; r < rounds; r++) {
    lua_newtable(L);
    int pool = lua_gettop(L);
    push_random_value((int)below(7), pool);
    encode_top(&b);
    fuzz_bytes_encoded += b.len;
    CHECK(lua_gettop(L) == pool + 1);
    if (decode_copy(b.data, b.len) != 0) {
      fprintf(stderr, "round %d: %s\n  ", r, err);
      print_hex(stderr, b.data, b.len);
      exit(1);
    }
    if (!deep_equal(L, -2, -1, 0)) {
      fprintf(stderr, "round %d: decoded value differs\n  ", r);
      print_hex(stderr, b.data, b.len);
      exit(1);
    }
    lua_settop(L, top);
  }
  flume__buf_free(&b);
}

/* Bytes worth finding in msgpack: every header, and lengths at edges. */
static unsigned char random_byte(void) {
  static const unsigned char hot[] = {
      0x00, 0x01, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x91, 0x9f, 0xa0, 0xa1, 0xbf,
      0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb,
      0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd8, 0xd9, 0xda,
      0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff, 0x7f, 0xf8, 0x3f};
  return below(3) ? hot[below(sizeof hot)] : (unsigned char)rnd();
}

/* Decoding must fail cleanly or give a value that encodes and decodes to
 * an equal value. */
static void check_any_bytes(const unsigned char *p, size_t n) {
  static flume__buf b = FLUME__BUF_INIT;
  int top = lua_gettop(L);
  if (p == NULL) {
    flume__buf_free(&b);
    return;
  }
  if (decode_copy(p, n) != 0) {
    CHECK(err[0] != '\0');
    fuzz_refused++;
    return;
  }
  fuzz_decoded++;
  b.len = 0;
  if (flume__mp_encode(L, -1, &b, err, sizeof err) != 0) {
    fprintf(stderr, "a decoded value did not encode: %s\n  ", err);
    print_hex(stderr, p, n);
    exit(1);
  }
  if (decode_copy(b.data, b.len) != 0 || !deep_equal(L, -2, -1, 0)) {
    fprintf(stderr, "a decoded value did not round-trip\n  ");
    print_hex(stderr, p, n);
    exit(1);
  }
  lua_settop(L, top);
}

static void fuzz_bytes(int rounds) {
  unsigned char m[4096];
  flume__buf b = FLUME__BUF_INIT;
  for (int r = 0; r < rounds; r++) {
    /* Random bytes. */
    size_t n = below(48);
    for (size_t i = 0; i < n; i++) m[i] = random_byte();
    check_any_bytes(m, n);

    /* Mutations of a valid encoding. */
    lua_newtable(L);
    push_random_value((int)below(5), lua_gettop(L));
    encode_top(&b);
    lua_pop(L, 2);
    if (b.len > sizeof m - 64) continue;
    n = b.len;
    memcpy(m, b.data, n);
    for (uint32_t k = 1 + below(4); k--;) {
      size_t at = n ? below((uint32_t)n) : 0;
      switch (below(6)) {
      case 0: /* bit flip */
        if (n) m[at] ^= (unsigned char)(1u << below(8));
        break;
      case 1: /* overwrite with a header byte */
        if (n) m[at] = random_byte();
        break;
      case 2: /* truncate */
        n = at;
        break;
      case 3: /* insert */
        memmove(m + at + 1, m + at, n - at);
        m[at] = random_byte();
        n++;
        break;
      case 4: /* delete */
        if (n) {
          memmove(m + at, m + at + 1, n - at - 1);
          n--;
        }
        break;
      default: /* a length field at its extreme */
        if (n > at + 2) m[at + 1] = m[at + 2] = 0xff;
        break;
      }
    }
    check_any_bytes(m, n);
  }
  check_any_bytes(NULL, 0);
  flume__buf_free(&b);
}

/* ------------------------------------------------------------------ bench */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void bench_one(const char *name, const char *expr, int n) {
  flume__buf b = FLUME__BUF_INIT;
  push_expr(L, expr);
  encode_top(&b);
  size_t size = b.len;
  double t0 = now();
  for (int i = 0; i < n; i++) {
    b.len = 0;
    CHECK_OK(flume__mp_encode(L, -1, &b, err, sizeof err));
  }
  double t1 = now();
  for (int i = 0; i < n; i++) {
    CHECK_OK(flume__mp_decode(L, b.data, b.len, err, sizeof err));
    lua_pop(L, 1);
    if ((i & 1023) == 0) lua_gc(L, LUA_GCSTEP, 0);
  }
  double t2 = now();
  printf("%-8s %5zu bytes  encode %8.0f values/s %6.0f MB/s  "
         "decode %8.0f values/s %6.0f MB/s\n",
         name, size, n / (t1 - t0), n * (double)size / (t1 - t0) / 1e6,
         n / (t2 - t1), n * (double)size / (t2 - t1) / 1e6);
  lua_pop(L, 1);
  flume__buf_free(&b);
}

static void bench(void) {
  bench_one("record",
            "{type = 'post', author = '@user123', seq = 12345, "
            "amount = 42.5, text = ('lorem ipsum '):rep(8) .. 'dolor'}",
            2000000);
  bench_one("ints",
            "(function() local t = {} for i = 1, 1000 do "
            "t[i] = i * 1000 end return t end)()",
            20000);
  bench_one("strings",
            "(function() local t = {} for i = 1, 100 do "
            "t[i] = ('text %d \\u{e9}'):format(i):rep(10) end "
            "return t end)()",
            20000);
  bench_one("nested", "{a = {b = {c = {d = {1, 2, 3}}}}, e = {f = true}}",
            2000000);
}

int main(int argc, char **argv) {
  L = luaL_newstate();
  CHECK(L != NULL);
  luaL_openlibs(L);

  if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
    bench();
    lua_close(L);
    return 0;
  }

  test_scalar_bytes();
  test_length_forms();
  test_table_bytes();
  test_decode_forms();
  test_round_trips();
  test_refusals();
  test_stack_exhausted();
  test_no_memory();
  test_big_tables();
  test_decode_errors();
  test_utf8_choice();
  /* FLUME_FUZZ_SCALE=10 for a longer run, 0.1 under valgrind. */
  const char *scale_env = getenv("FLUME_FUZZ_SCALE");
  double scale = scale_env ? atof(scale_env) : 1.0;
  fuzz_values((int)(50000 * scale));
  fuzz_bytes((int)(120000 * scale));
  CHECK(lua_gettop(L) == 0);
  lua_close(L);
  printf("test_msgpack: ok (fuzz: %zu bytes of random values; %zu inputs "
         "decoded, %zu refused)\n",
         fuzz_bytes_encoded, fuzz_decoded, fuzz_refused);
  return 0;
}
