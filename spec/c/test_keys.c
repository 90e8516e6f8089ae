/*
 * The view key encoding (runtime/keys.c): its bytes must memcmp in exactly
 * the documented key order, be self-delimiting, round-trip, refuse what is
 * not a key with a message saying where, and survive any bytes given to the
 * decoder. The order is checked against a reference comparator written
 * straight from keys.h on the Lua values themselves (numbers compared by
 * Lua, which compares integers and floats exactly), never against the
 * encoding's own reasoning.
 *
 * `test_keys --bench` also measures encode and decode throughput.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "check.h"
#include "keys.h"
#include "lua_check.h"

static lua_State *L;

/* splitmix64 with a fixed seed: every run tests the same keys. */
static uint64_t rng_state = UINT64_C(0x5eed5eed12345678);

static uint64_t rnd(void) {
  uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) { return rnd() % n; }



/* Writes a readable form of the value at idx, for failure reports. */
static void dump(FILE *f, int idx) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      fprintf(f, "%lld", (long long)lua_tointeger(L, idx));
    else
      fprintf(f, "%.17g(float)", (double)lua_tonumber(L, idx));
    break;
  case LUA_TSTRING: {
    size_t n;
    const unsigned char *s = (const unsigned char *)lua_tolstring(L, idx, &n);
    fputc('"', f);
    for (size_t i = 0; i < n; i++)
      if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
        fputc(s[i], f);
      else
        fprintf(f, "\\%u", s[i]);
    fputc('"', f);
    break;
  }
  case LUA_TTABLE: {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    fputc('{', f);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      dump(f, -1);
      lua_pop(L, 1);
      if (i < n) fputs(", ", f);
    }
    fputc('}', f);
    break;
  }
  default:
    fputs(luaL_tolstring(L, idx, NULL), f);
    lua_pop(L, 1);
  }
}

static void dump_hex(FILE *f, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) fprintf(f, "%02x", (unsigned char)p[i]);
}

static int sign(int c) { return (c > 0) - (c < 0); }

/* memcmp order, a prefix first: how LMDB orders keys. */
static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c) return sign(c);
  return (al > bl) - (al < bl);
}

/* The documented order, from keys.h: false < true < numbers < strings <
 * arrays; numbers by value with a float before an equal integer; strings
 * bytewise; arrays element by element, a prefix first. */
static int type_rank(int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx);
  case LUA_TNUMBER:
    return 2;
  case LUA_TSTRING:
    return 3;
  case LUA_TTABLE:
    return 4;
  }
  fprintf(stderr, "not a key type: %s\n", luaL_typename(L, idx));
  exit(1);
}

static int ref_cmp(int a, int b) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  int ra = type_rank(a), rb = type_rank(b);
  if (ra != rb) return ra < rb ? -1 : 1;
  switch (ra) {
  case 2:
    if (lua_compare(L, a, b, LUA_OPLT)) return -1;
    if (lua_compare(L, b, a, LUA_OPLT)) return 1;
    return lua_isinteger(L, a) - lua_isinteger(L, b);
  case 3: {
    size_t al, bl;
    const char *as = lua_tolstring(L, a, &al), *bs = lua_tolstring(L, b, &bl);
    return bytes_cmp(as, al, bs, bl);
  }
  case 4: {
    lua_Integer an = (lua_Integer)lua_rawlen(L, a);
    lua_Integer bn = (lua_Integer)lua_rawlen(L, b);
    CHECK(lua_checkstack(L, 2));
    for (lua_Integer i = 1; i <= an && i <= bn; i++) {
      lua_rawgeti(L, a, i);
      lua_rawgeti(L, b, i);
      int c = ref_cmp(-2, -1);
      lua_pop(L, 2);
      if (c) return c;
    }
    return (an > bn) - (an < bn);
  }
  default:
    return 0;
  }
}

/* Encodes the key at idx into b (emptied first), which must succeed. */
static void enc_into(int idx, flume__buf *b) {
  char err[256];
  int top = lua_gettop(L);
  b->len = 0;
  int rc = flume__key_encode(L, idx, b, err, sizeof err);
  if (rc) {
    fprintf(stderr, "encoding ");
    dump(stderr, idx);
    fprintf(stderr, " failed: %s\n", err);
    exit(1);
  }
  CHECK(lua_gettop(L) == top);
}

/* Decodes b, checks it is the key at idx in every detail (integer or
 * float, array lengths) and that encoding it again gives the same bytes. */
static void check_round_trip(int idx, const flume__buf *b) {
  char err[256];
  size_t used = 0;
  idx = lua_absindex(L, idx);
  int top = lua_gettop(L);
  CHECK(flume__key_length(b->data, b->len) == b->len);
  int rc = flume__key_decode(L, b->data, b->len, &used, err, sizeof err);
  if (rc) {
    fprintf(stderr, "decoding ");
    dump(stderr, idx);
    fprintf(stderr, " failed: %s\n", err);
    exit(1);
  }
  CHECK(used == b->len);
  CHECK(lua_gettop(L) == top + 1);
  if (ref_cmp(idx, -1) != 0) {
    dump(stderr, idx);
    fprintf(stderr, " decoded as ");
    dump(stderr, -1);
    fputc('\n', stderr);
    exit(1);
  }
  flume__buf again = FLUME__BUF_INIT;
  enc_into(-1, &again);
  CHECK(again.len == b->len && memcmp(again.data, b->data, b->len) == 0);
  flume__buf_free(&again);
  lua_pop(L, 1);
}

/* Exact bytes of some encodings: they are stored in databases, so this is
 * a file format and must not drift. */
static void test_format(void) {
  static const struct {
    const char *expr;
    const char *hex;
  } cases[] = {
      {"false", "10"},
      {"true", "11"},
      {"0", "20 8000000000000000 01"},
      {"0.0", "20 8000000000000000 00"},
      {"-0.0", "20 8000000000000000 00"},
      {"1", "20 bff0000000000000 01"},
      {"-1.0", "20 400fffffffffffff 00"},
      {"1/0", "20 fff0000000000000 00"},
      {"-1/0", "20 000fffffffffffff 00"},
      {"math.mininteger", "20 3c1fffffffffffff 01"},
      {"math.maxinteger", "20 c3dfffffffffffff 02 ffffffffffffffff"},
      {"(1 << 53) + 1", "20 c340000000000000 02 8020000000000001"},
      {"''", "3000"},
      {"'a\\0\\1\\2'", "30 61 0101 0102 02 00"},
      {"{}", "5000"},
      {"{true, {'x'}}", "50 11 50 307800 00 00"},
  };
  flume__buf b = FLUME__BUF_INIT;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    push_expr(L, cases[i].expr);
    enc_into(-1, &b);
    /* The wanted hex has spaces between fields, for reading. */
    char hex[128], want[128];
    size_t w = 0;
    CHECK(b.len * 2 < sizeof hex && strlen(cases[i].hex) < sizeof want);
    for (size_t j = 0; j < b.len; j++)
      snprintf(hex + 2 * j, 3, "%02x", (unsigned char)b.data[j]);
    hex[2 * b.len] = '\0';
    for (const char *c = cases[i].hex; *c; c++)
      if (*c != ' ') want[w++] = *c;
    want[w] = '\0';
    if (strcmp(hex, want) != 0) {
      fprintf(stderr, "%s encodes as %s, wanted %s\n", cases[i].expr, hex,
              cases[i].hex);
      exit(1);
    }
    lua_pop(L, 1);
  }
  flume__buf_free(&b);
}

static void test_round_trip(void) {
  static const char *const keys[] = {
      "false",
      "true",
      "0",
      "1",
      "-1",
      "3",
      "3.0",
      "0.1",
      "-1.5",
      "2^53",
      "(1 << 53) + 1",
      "-(1 << 53) - 1",
      "math.maxinteger",
      "math.mininteger",
      "math.maxinteger - 1023",
      "math.maxinteger - 1022",
      "-2.0^63",
      "2.0^63",
      "1/0",
      "-1/0",
      "4.9e-324",
      "-4.9e-324",
      "1.7976931348623157e308",
      "''",
      "'a'",
      "'\\0'",
      "'\\1'",
      "'a\\0b\\1c\\2\\255'",
      "string.rep('\\0\\1', 100)",
      "{}",
      "{{}}",
      "{1, 2.0, 'x', false, {true, {}}}",
      "{'\\0', {'\\1', {'\\255'}}}",
  };
  flume__buf b = FLUME__BUF_INIT;
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    push_expr(L, keys[i]);
    enc_into(-1, &b);
    check_round_trip(-1, &b);
    lua_pop(L, 1);
  }

  /* -0.0 is 0.0 as a key: the same bytes, and it comes back as 0.0. */
  flume__buf z = FLUME__BUF_INIT;
  push_expr(L, "-0.0");
  enc_into(-1, &b);
  push_expr(L, "0.0");
  enc_into(-1, &z);
  CHECK(b.len == z.len && memcmp(b.data, z.data, b.len) == 0);
  lua_pop(L, 2);
  size_t used;
  CHECK_OK(flume__key_decode(L, b.data, b.len, &used, NULL, 0));
  CHECK(!lua_isinteger(L, -1) && lua_tonumber(L, -1) == 0 &&
        !signbit(lua_tonumber(L, -1)));
  lua_pop(L, 1);

  /* Integer and float survive as such inside arrays too. */
  push_expr(L, "{3, 3.0}");
  enc_into(-1, &b);
  lua_pop(L, 1);
  CHECK_OK(flume__key_decode(L, b.data, b.len, &used, NULL, 0));
  lua_rawgeti(L, -1, 1);
  lua_rawgeti(L, -2, 2);
  CHECK(lua_isinteger(L, -2) && !lua_isinteger(L, -1));
  CHECK(lua_rawlen(L, -3) == 2);
  lua_pop(L, 3);

  /* A key anywhere on the stack, by negative index, leaves it as it was. */
  push_expr(L, "'a'");
  push_expr(L, "{1}");
  push_expr(L, "true");
  int top = lua_gettop(L);
  enc_into(-2, &b);
  CHECK(lua_gettop(L) == top);
  CHECK(b.len == 12 && (unsigned char)b.data[0] == 0x50);
  lua_pop(L, 3);

  /* Encoding appends: what was in the buffer stays. */
  b.len = 0;
  CHECK_OK(flume__buf_append(&b, "xyz", 3));
  push_expr(L, "'k'");
  CHECK_OK(flume__key_encode(L, -1, &b, NULL, 0));
  lua_pop(L, 1);
  CHECK(b.len == 6 && memcmp(b.data, "xyz\x30k\0", 6) == 0);

  flume__buf_free(&z);
  flume__buf_free(&b);
}

/* Keys in the documented order, strictly increasing. */
static const char *const sorted_keys[] = {
    "false",
    "true",
    "-1/0",
    "-1.7976931348623157e308",
    "-2.0^63",
    "math.mininteger",
    "math.mininteger + 1",
    "-2^62",
    "-(1 << 62)",
    "-(1 << 62) + 1",
    "-2^53 - 2",
    "-(1 << 53) - 2",
    "-(1 << 53) - 1",
    "-2^53",
    "-(1 << 53)",
    "-(1 << 53) + 1",
    "-1.5",
    "-1.0",
    "-1",
    "-0.5",
    "-4.9e-324",
    "0.0",
    "0",
    "4.9e-324",
    "2.2250738585072014e-308",
    "0.5",
    "1.0",
    "1",
    "1.5",
    "2",
    "3.0",
    "3",
    "3.0000000000000004",
    "2^53 - 1",
    "(1 << 53) - 1",
    "2^53",
    "1 << 53",
    "(1 << 53) + 1",
    "2^53 + 2",
    "(1 << 53) + 2",
    "(1 << 53) + 3",
    "2^53 + 4",
    "2^62",
    "1 << 62",
    "(1 << 62) + 1",
    "(1 << 62) + 1023",
    "2^62 + 1024",
    "(1 << 62) + 1024",
    "2^63 - 1024",
    "math.maxinteger - 1023",
    "math.maxinteger - 1022",
    "math.maxinteger - 1",
    "math.maxinteger",
    "2.0^63",
    "1.7976931348623157e308",
    "1/0",
    "''",
    "'\\0'",
    "'\\0\\0'",
    "'\\0\\1'",
    "'\\1'",
    "'\\1\\0'",
    "'\\2'",
    "'a'",
    "'a\\0'",
    "'a\\0\\255'",
    "'a\\1'",
    "'a\\2'",
    "'ab'",
    "'b'",
    "'\\255'",
    "'\\255\\255'",
    "{}",
    "{false}",
    "{true}",
    "{-1/0}",
    "{1}",
    "{1, false}",
    "{1, 3.0}",
    "{1, 3}",
    "{1, ''}",
    "{1, 'a'}",
    "{1, 'a', {}}",
    "{1, 'b'}",
    "{1, {}}",
    "{2}",
    "{''}",
    "{'a'}",
    "{'a', 1}",
    "{'a\\0'}",
    "{{}}",
    "{{}, false}",
    "{{}, {}}",
    "{{1}}",
    "{{1}, 1}",
    "{{2}}",
    "{{{}}}",
};

static void test_sorted(void) {
  enum { N = sizeof sorted_keys / sizeof sorted_keys[0] };
  static flume__buf enc[N];
  int base = lua_gettop(L);
  for (int i = 0; i < N; i++) {
    push_expr(L, sorted_keys[i]);
    enc[i] = (flume__buf)FLUME__BUF_INIT;
    enc_into(-1, &enc[i]);
    check_round_trip(-1, &enc[i]);
  }
  for (int i = 0; i < N; i++) {
    for (int j = i + 1; j < N; j++) {
      /* The list itself must be right by the reference... */
      if (ref_cmp(base + 1 + i, base + 1 + j) >= 0) {
        fprintf(stderr, "list out of order: %s !< %s\n", sorted_keys[i],
                sorted_keys[j]);
        exit(1);
      }
      /* ...and the encodings must agree, also with a seq after each. */
      int c = bytes_cmp(enc[i].data, enc[i].len, enc[j].data, enc[j].len);
      char a[600], b[600];
      memcpy(a, enc[i].data, enc[i].len);
      memcpy(b, enc[j].data, enc[j].len);
      memset(a + enc[i].len, 0x7f, 8);
      memset(b + enc[j].len, 0x00, 8);
      int cs = bytes_cmp(a, enc[i].len + 8, b, enc[j].len + 8);
      if (c >= 0 || cs >= 0) {
        fprintf(stderr, "encodings out of order: %s (", sorted_keys[i]);
        dump_hex(stderr, enc[i].data, enc[i].len);
        fprintf(stderr, ") !< %s (", sorted_keys[j]);
        dump_hex(stderr, enc[j].data, enc[j].len);
        fprintf(stderr, ")\n");
        exit(1);
      }
    }
  }
  for (int i = 0; i < N; i++) flume__buf_free(&enc[i]);
  lua_settop(L, base);
}

/* Random keys, skewed toward ties and edges: few string bytes, numbers
 * near powers of two where doubles stop holding every integer, integers
 * and floats of the same value. */
static const int64_t int_pool[] = {
    0,
    1,
    -1,
    3,
    INT64_C(1) << 52,
    INT64_C(1) << 53,
    -(INT64_C(1) << 53),
    INT64_C(1) << 54,
    INT64_C(1) << 62,
    -(INT64_C(1) << 62),
    INT64_MAX,
    INT64_MIN,
    INT64_MAX - 1023,
    INT64_MIN + 1024,
};

static void push_random_number(void) {
  double specials[] = {INFINITY,  -INFINITY, 0.0,     -0.0,
                       DBL_MAX,   -DBL_MAX,  DBL_MIN, 4.9e-324,
                       -4.9e-324, 0x1p63,    -0x1p63};
  switch (below(8)) {
  case 0:
    lua_pushinteger(L, (lua_Integer)below(9) - 4);
    return;
  case 1:
    lua_pushnumber(L, ((double)below(17) - 8) / 2);
    return;
  case 2:
  case 3: {
    uint64_t v = (uint64_t)int_pool[below(sizeof int_pool / sizeof *int_pool)];
    int64_t i = (int64_t)(v + below(7) - 3); /* wraps at the ends */
    if (below(2)) {
      lua_pushinteger(L, (lua_Integer)i);
    } else {
      double d = (double)i;
      int nudge = (int)below(3);
      if (nudge == 1) d = nextafter(d, INFINITY);
      if (nudge == 2) d = nextafter(d, -INFINITY);
      lua_pushnumber(L, d);
    }
    return;
  }
  case 4: {
    /* Any magnitude: random bits shifted down, either sign. */
    uint64_t v = rnd() >> below(64);
    int64_t i = (int64_t)(below(2) ? v : ~v);
    if (below(3))
      lua_pushinteger(L, (lua_Integer)i);
    else
      lua_pushnumber(L, (double)i);
    return;
  }
  case 5: {
    double d;
    do {
      uint64_t u = rnd();
      memcpy(&d, &u, sizeof d);
    } while (d != d);
    lua_pushnumber(L, d);
    return;
  }
  case 6:
    lua_pushnumber(L, specials[below(sizeof specials / sizeof *specials)]);
    return;
  default: {
    /* Big integers that share a double, and that double. */
    int e = 53 + (int)below(10);
    uint64_t v = (UINT64_C(1) << e) + (below(4) << (e - 52)) + below(5);
    int64_t i = below(2) ? (int64_t)v : -(int64_t)v;
    if (below(4))
      lua_pushinteger(L, (lua_Integer)i);
    else
      lua_pushnumber(L, (double)i);
    return;
  }
  }
}

static void push_random_string(size_t maxlen) {
  static const char alphabet[] = {0,   1,    2,          'a',
                                  'b', 0x7f, (char)0x80, (char)0xff};
  char s[64];
  size_t n = (size_t)below(maxlen + 1);
  for (size_t i = 0; i < n; i++) s[i] = alphabet[below(sizeof alphabet)];
  lua_pushlstring(L, s, n);
}

static void push_random_key(int depth) {
  CHECK(lua_checkstack(L, 4));
  uint64_t r = below(100);
  if (depth < 3 && r < 20) {
    int n = (int)below(4);
    if (below(4)) {
      lua_createtable(L, n, 0);
      for (int i = 1; i <= n; i++) {
        push_random_key(depth + 1);
        lua_rawseti(L, -2, i);
      }
    } else {
      /* In the hash part, filled backwards. */
      lua_createtable(L, 0, n);
      for (int i = n; i >= 1; i--) {
        push_random_key(depth + 1);
        lua_rawseti(L, -2, i);
      }
    }
  } else if (r < 28) {
    lua_pushboolean(L, (int)below(2));
  } else if (r < 68) {
    push_random_number();
  } else {
    push_random_string(4);
  }
}

static void report_pair(const char *what, int a, int b, const flume__buf *ea,
                        const flume__buf *eb) {
  fprintf(stderr, "%s: ", what);
  dump(stderr, a);
  fprintf(stderr, " (");
  dump_hex(stderr, ea->data, ea->len);
  fprintf(stderr, ") vs ");
  dump(stderr, b);
  fprintf(stderr, " (");
  dump_hex(stderr, eb->data, eb->len);
  fprintf(stderr, ")\n");
  exit(1);
}

/* Random pairs from a pool that keeps changing, so that equal keys and
 * near misses come up as well as unrelated ones. */
static void test_fuzz_order(void) {
  enum { POOL = 48, PAIRS = 200000 };
  flume__buf ea = FLUME__BUF_INIT, eb = FLUME__BUF_INIT;
  int base = lua_gettop(L);
  lua_createtable(L, POOL, 0);
  int pool = lua_gettop(L);
  for (int i = 1; i <= POOL; i++) {
    push_random_key(0);
    lua_rawseti(L, pool, i);
  }
  long equal = 0;
  for (long n = 0; n < PAIRS; n++) {
    push_random_key(0);
    lua_rawseti(L, pool, (lua_Integer)below(POOL) + 1);
    lua_rawgeti(L, pool, (lua_Integer)below(POOL) + 1);
    lua_rawgeti(L, pool, (lua_Integer)below(POOL) + 1);
    int a = lua_gettop(L) - 1, b = a + 1;
    enc_into(a, &ea);
    enc_into(b, &eb);
    int want = ref_cmp(a, b);
    int got = bytes_cmp(ea.data, ea.len, eb.data, eb.len);
    if (want != got) report_pair("order differs", a, b, &ea, &eb);
    if (want == 0) {
      equal++;
    } else {
      /* As index entries, with seqs after them, the key still decides. */
      unsigned char sa[8], sb[8];
      for (int i = 0; i < 8; i++) {
        sa[i] = (unsigned char)rnd();
        sb[i] = (unsigned char)rnd();
      }
      sa[0] &= 0x7f;
      sb[0] &= 0x7f;
      CHECK_OK(flume__buf_append(&ea, sa, 8));
      CHECK_OK(flume__buf_append(&eb, sb, 8));
      if (bytes_cmp(ea.data, ea.len, eb.data, eb.len) != want)
        report_pair("order with seqs differs", a, b, &ea, &eb);
      ea.len -= 8;
    }
    if (n % 8 == 0) check_round_trip(a, &ea);
    lua_pop(L, 2);
  }
  /* The pool must have produced real ties, or equality went untested. */
  CHECK(equal > PAIRS / 100);
  lua_settop(L, base);
  flume__buf_free(&ea);
  flume__buf_free(&eb);
}

/* Decoding and measuring agree on p[0..n), whatever it holds: either both
 * find the same valid key, which encodes back to exactly those bytes, or
 * both refuse it and decode pushes nothing. */
static int check_decode_consistent(const char *p, size_t n) {
  char err[256];
  size_t used = 0;
  int top = lua_gettop(L);
  size_t len = flume__key_length(p, n);
  int rc = flume__key_decode(L, p, n, &used, err, sizeof err);
  if (rc == 0) {
    CHECK(len > 0 && len == used && used <= n);
    CHECK(lua_gettop(L) == top + 1);
    flume__buf again = FLUME__BUF_INIT;
    enc_into(-1, &again);
    if (again.len != used || memcmp(again.data, p, used) != 0) {
      fprintf(stderr, "decoded ");
      dump_hex(stderr, p, used);
      fprintf(stderr, " as ");
      dump(stderr, -1);
      fprintf(stderr, ", which encodes as ");
      dump_hex(stderr, again.data, again.len);
      fputc('\n', stderr);
      exit(1);
    }
    flume__buf_free(&again);
    lua_pop(L, 1);
    return 1;
  }
  CHECK_ERR(rc, FLUME_EDECODE);
  CHECK(len == 0);
  CHECK(lua_gettop(L) == top);
  if (strncmp(err, "bad key encoding: ", 18) != 0 ||
      strstr(err, " at byte ") == NULL) {
    fprintf(stderr, "poor message: %s\n", err);
    exit(1);
  }
  return 0;
}

static void test_decode_garbage(void) {
  static const unsigned char bytes[] = {0x00, 0x01, 0x02, 0x10, 0x11,
                                        0x20, 0x30, 0x50, 0x7f, 0x80,
                                        0xbf, 0xc3, 0xf0, 0xff};
  flume__buf b = FLUME__BUF_INIT;
  long valid = 0;
  for (int n = 0; n < 150000; n++) {
    b.len = 0;
    switch (n % 3) {
    case 0: {
      /* Bytes from the encoding's vocabulary, or anything. */
      size_t len = (size_t)below(32);
      CHECK_OK(flume__buf_reserve(&b, len));
      for (size_t i = 0; i < len; i++)
        b.data[i] = (char)(below(4) ? bytes[below(sizeof bytes)] : rnd());
      b.len = len;
      break;
    }
    default: {
      /* A valid key, then damaged: a byte changed, cut short, a byte
       * inserted or removed. */
      push_random_key(0);
      enc_into(-1, &b);
      lua_pop(L, 1);
      size_t at = (size_t)below(b.len);
      switch (below(4)) {
      case 0:
        b.data[at] = (char)(below(2) ? bytes[below(sizeof bytes)] : rnd());
        break;
      case 1:
        b.len = at;
        break;
      case 2:
        CHECK_OK(flume__buf_reserve(&b, 1));
        memmove(b.data + at + 1, b.data + at, b.len - at);
        b.data[at] = (char)bytes[below(sizeof bytes)];
        b.len++;
        break;
      default:
        memmove(b.data + at, b.data + at + 1, b.len - at - 1);
        b.len--;
        break;
      }
    }
    }
    /* An exact-size copy, so the sanitizers see any read past the end. */
    char *p = malloc(b.len ? b.len : 1);
    CHECK(p != NULL);
    if (b.len) memcpy(p, b.data, b.len);
    valid += check_decode_consistent(p, b.len);
    free(p);
  }
  /* Both outcomes must have come up often. */
  CHECK(valid > 10000 && valid < 140000);
  flume__buf_free(&b);
}

/* Whatever follows a key, the decoder stops where the key ends. */
static void test_self_delimiting(void) {
  flume__buf b = FLUME__BUF_INIT;
  char err[256];
  for (int n = 0; n < 20000; n++) {
    push_random_key(0);
    enc_into(-1, &b);
    size_t len = b.len, extra = (size_t)below(12);
    for (size_t i = 0; i < extra; i++) {
      unsigned char c = (unsigned char)(below(2) ? rnd() : below(3));
      CHECK_OK(flume__buf_append(&b, &c, 1));
    }
    size_t used = 0;
    CHECK_OK(flume__key_decode(L, b.data, b.len, &used, err, sizeof err));
    CHECK(used == len);
    CHECK(ref_cmp(-2, -1) == 0);
    CHECK(flume__key_length(b.data, b.len) == len);
    /* And no shorter piece is a key: a key is not a prefix of another. */
    size_t cut = (size_t)below(len);
    CHECK(flume__key_length(b.data, cut) == 0);
    lua_pop(L, 2);
  }
  flume__buf_free(&b);
}

/* What is not a key is refused with a message saying what and where, and
 * the buffer and the stack are left as they were. */
static void check_refused(int idx, const char *want) {
  flume__buf b = FLUME__BUF_INIT;
  char err[256];
  CHECK_OK(flume__buf_append(&b, "xyz", 3));
  int top = lua_gettop(L);
  int rc = flume__key_encode(L, idx, &b, err, sizeof err);
  CHECK_ERR(rc, FLUME_EINVAL);
  CHECK(lua_gettop(L) == top);
  CHECK(b.len == 3 && memcmp(b.data, "xyz", 3) == 0);
  if (strcmp(err, want) != 0) {
    fprintf(stderr, "message \"%s\", wanted \"%s\"\n", err, want);
    exit(1);
  }
  /* No message buffer, or a tiny one, is fine. */
  CHECK_ERR(flume__key_encode(L, idx, &b, NULL, 0), FLUME_EINVAL);
  char small[8];
  CHECK_ERR(flume__key_encode(L, idx, &b, small, sizeof small), FLUME_EINVAL);
  CHECK(strlen(small) == sizeof small - 1 && strncmp(small, want, 7) == 0);
  CHECK(b.len == 3);
  flume__buf_free(&b);
}

static void test_refusals(void) {
  static const struct {
    const char *code;
    const char *want;
  } cases[] = {
      {"return nil", "a key cannot be nil"},
      {"return 0/0", "a key cannot be NaN"},
      {"return -(0/0)", "a key cannot be NaN"},
      {"return {1, {2, 0/0}}", "a key cannot be NaN at [2][2]"},
      {"return print", "a key cannot be a function"},
      {"return {print}", "a key cannot be a function at [1]"},
      {"return io.stdout", "a key cannot be a userdata"},
      {"return {'a', {io.stdout}}", "a key cannot be a userdata at [2][1]"},
      {"return coroutine.create(print)", "a key cannot be a thread"},
      {"return {a = 1}",
       "a key cannot be a table with non-sequence keys (such as \"a\")"},
      {"return {1, {x = 1}}", "a key cannot be a table with non-sequence "
                              "keys (such as \"x\") at [2]"},
      {"return {1, 2, [0] = 3}",
       "a key cannot be a table with non-sequence keys (such as 0)"},
      {"return {1, 2, [-1] = 3}",
       "a key cannot be a table with non-sequence keys (such as -1)"},
      {"return {1, 2, [2.5] = 3}",
       "a key cannot be a table with non-sequence keys (such as 2.5)"},
      {"return {[true] = 1}",
       "a key cannot be a table with non-sequence keys (such as true)"},
      {"return {[{}] = 1}",
       "a key cannot be a table with non-sequence keys (such as a table)"},
      {"return {['a\\0\"' .. string.rep('x', 40)] = 1}",
       "a key cannot be a table with non-sequence keys (such as "
       "\"a\\x00\\x22xxxxxxxxxxxxxxxxxxxxx...\")"},
      {"return {1, nil, 3}",
       "a key cannot be an array with a hole: nil at [2]"},
      {"return {[2] = 1}", "a key cannot be an array with a hole: nil at [1]"},
      {"return {[1] = 1, [2^40] = 1}",
       "a key cannot be an array with a hole: nil at [2]"},
      {"return {{1, {nil, 2}}}",
       "a key cannot be an array with a hole: nil at [1][2][1]"},
      {"local t = {} t[1] = t return t",
       "a key cannot nest arrays more than 16 deep at "
       "[1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1]"},
      {"local t = {} for i = 1, 16 do t = {t} end return t",
       "a key cannot nest arrays more than 16 deep at "
       "[1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1]"},
      {"local t = {'x'} for i = 1, 16 do t = {1, t} end return t",
       "a key cannot nest arrays more than 16 deep at "
       "[2][2][2][2][2][2][2][2][2][2][2][2][2][2][2][2]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    push_chunk(L, cases[i].code);
    check_refused(-1, cases[i].want);
    lua_pop(L, 1);
  }
  lua_pushlightuserdata(L, &L);
  check_refused(-1, "a key cannot be a userdata");
  lua_pop(L, 1);

  /* Sixteen levels are allowed. */
  flume__buf b = FLUME__BUF_INIT;
  push_chunk(L, "local t = {} for i = 1, 15 do t = {t} end return t");
  enc_into(-1, &b);
  CHECK(b.len == 32);
  check_round_trip(-1, &b);
  lua_pop(L, 1);
  flume__buf_free(&b);
}

/* However a table came to hold 1..n, in its array part or its hash part,
 * in whatever order its traversal gives, it is the same key. */
static void test_table_layouts(void) {
  static const char *const same[] = {
      "{'a', 'b', 'c', 'd', 'e', 'f', 'g'}",
      /* All in the hash part, where 7 is visited before 1..6. */
      "{[7] = 'g', [6] = 'f', [5] = 'e', [4] = 'd', [3] = 'c', [2] = 'b',"
      " [1] = 'a'}",
      "{[1] = 'a', [2] = 'b', [3] = 'c', [4] = 'd', [5] = 'e', [6] = 'f',"
      " [7] = 'g'}",
      "{'a', 'b', 'c', [7] = 'g', [6] = 'f', [5] = 'e', [4] = 'd'}",
      "{[1.0] = 'a', [2.0] = 'b', [3] = 'c', [4] = 'd', [5] = 'e',"
      " [6] = 'f', [7] = 'g'}",
      "(function() local t = {} for i = 7, 1, -1 do"
      " t[i] = string.char(96 + i) end return t end)()",
      "(function() local t = {'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'}"
      " t[9] = nil t[8] = nil return t end)()",
      "(function() local t = {x = 1} for i = 1, 7 do"
      " t[i] = string.char(96 + i) end t.x = nil return t end)()",
  };
  flume__buf want = FLUME__BUF_INIT, got = FLUME__BUF_INIT;
  push_expr(L, same[0]);
  enc_into(-1, &want);
  lua_pop(L, 1);
  for (size_t i = 1; i < sizeof same / sizeof same[0]; i++) {
    push_expr(L, same[i]);
    enc_into(-1, &got);
    if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0) {
      fprintf(stderr, "%s encodes differently from %s\n", same[i], same[0]);
      exit(1);
    }
    lua_pop(L, 1);
  }
  /* The same holds for a table nested at any depth. */
  push_expr(L, "{{[3] = 3, [2] = 2, [1] = 1}, {[2] = {[2] = 'y', [1] = 'x'},"
            " [1] = 0}}");
  enc_into(-1, &got);
  lua_pop(L, 1);
  push_expr(L, "{{1, 2, 3}, {0, {'x', 'y'}}}");
  enc_into(-1, &want);
  lua_pop(L, 1);
  CHECK(got.len == want.len && memcmp(got.data, want.data, got.len) == 0);
  flume__buf_free(&want);
  flume__buf_free(&got);
}

/* Keys are data: encoding reads raw and runs no metamethod. */
static void test_no_metamethods(void) {
  flume__buf b = FLUME__BUF_INIT, plain = FLUME__BUF_INIT;
  push_chunk(L, 
      "called = false\n"
      "local function mark() called = true; error('metamethod ran') end\n"
      "local mt = {__index = mark, __len = mark, __pairs = mark, __eq = mark,\n"
      "            __lt = mark, __le = mark, __call = mark, __gc = nil,\n"
      "            __tostring = mark, __name = 'x'}\n"
      "return setmetatable({1, setmetatable({'a'}, mt)}, mt)");
  enc_into(-1, &b);
  check_round_trip(-1, &b);
  lua_pop(L, 1);
  push_expr(L, "{1, {'a'}}");
  enc_into(-1, &plain);
  lua_pop(L, 1);
  CHECK(b.len == plain.len && memcmp(b.data, plain.data, b.len) == 0);
  /* An empty table with an __index that makes it look full is empty. */
  push_chunk(L, "return setmetatable({}, {__index = function() return 1 end,\n"
             "                         __len = function() return 3 end})");
  enc_into(-1, &b);
  CHECK(b.len == 2 && memcmp(b.data, "\x50\x00", 2) == 0);
  lua_pop(L, 1);
  lua_getglobal(L, "called");
  CHECK(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
  lua_pop(L, 1);
  flume__buf_free(&b);
  flume__buf_free(&plain);
}

/* Malformed encodings, each with the message and the offset it names. */
static void test_decode_errors(void) {
  static const struct {
    const char *bytes;
    size_t len;
    const char *want;
  } cases[] = {
#define B(s) s, sizeof(s) - 1
      {B(""), "bad key encoding: no key at byte 0"},
      {B("\x00"), "bad key encoding: unknown tag 0x00 at byte 0"},
      {B("\x7f"), "bad key encoding: unknown tag 0x7f at byte 0"},
      {B("\x50\x11\x12\x00"), "bad key encoding: unknown tag 0x12 at byte 2"},
      {B("\x20\x80\x00\x00"), "bad key encoding: truncated number at byte 0"},
      {B("\x50\x20\x80\x00\x00\x00\x00\x00\x00\x00"),
       "bad key encoding: truncated number at byte 1"},
      {B("\x20\x80\x00\x00\x00\x00\x00\x00\x00\x03"),
       "bad key encoding: unknown number subtype 0x03 at byte 9"},
      /* NaN: bits 7ff8..., sortable fff8... */
      {B("\x20\xff\xf8\x00\x00\x00\x00\x00\x00\x00"),
       "bad key encoding: number is NaN at byte 0"},
      /* -0.0: bits 8000..., sortable 7fff... */
      {B("\x20\x7f\xff\xff\xff\xff\xff\xff\xff\x00"),
       "bad key encoding: number is -0.0 at byte 0"},
      /* 0.5 marked as an integer. */
      {B("\x20\xbf\xe0\x00\x00\x00\x00\x00\x00\x01"),
       "bad key encoding: integer number is not an int64 at byte 0"},
      /* 2^63 marked as an integer. */
      {B("\x20\xc3\xe0\x00\x00\x00\x00\x00\x00\x01"),
       "bad key encoding: integer number is not an int64 at byte 0"},
      /* 1 written the long way, which is not how it is written. */
      {B("\x20\xbf\xf0\x00\x00\x00\x00\x00\x00\x02"
         "\x80\x00\x00\x00\x00\x00\x00\x01"),
       "bad key encoding: integer 1 does not match its double at byte 0"},
      {B("\x20\xc3\x40\x00\x00\x00\x00\x00\x00\x02\x80\x20"),
       "bad key encoding: truncated integer at byte 0"},
      {B("\x30"), "bad key encoding: string has no terminator at byte 0"},
      {B("\x50\x30\x61\x62"),
       "bad key encoding: string has no terminator at byte 1"},
      {B("\x30\x61\x01\x03\x00"),
       "bad key encoding: bad string escape at byte 2"},
      {B("\x30\x61\x01\x00"), "bad key encoding: bad string escape at byte 2"},
      {B("\x30\x61\x01\x01\x01\x00"),
       "bad key encoding: bad string escape at byte 4"},
      {B("\x50"), "bad key encoding: array has no terminator at byte 0"},
      {B("\x50\x50\x11"),
       "bad key encoding: array has no terminator at byte 1"},
      {B("\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50"
         "\x50"),
       "bad key encoding: arrays nested more than 16 deep at byte 16"},
#undef B
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char err[256];
    size_t used = 12345;
    int top = lua_gettop(L);
    char *p = malloc(cases[i].len ? cases[i].len : 1);
    CHECK(p != NULL);
    memcpy(p, cases[i].bytes, cases[i].len);
    CHECK_ERR(flume__key_decode(L, p, cases[i].len, &used, err, sizeof err),
              FLUME_EDECODE);
    CHECK(lua_gettop(L) == top);
    CHECK(used == 12345);
    CHECK(flume__key_length(p, cases[i].len) == 0);
    if (strcmp(err, cases[i].want) != 0) {
      fprintf(stderr, "case %zu: message \"%s\", wanted \"%s\"\n", i, err,
              cases[i].want);
      exit(1);
    }
    free(p);
  }
  /* Sixteen nested arrays decode. */
  const char *deep = "\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50\x50"
                     "\x50\x50\x50\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                     "\x00\x00\x00\x00\x00\x00";
  size_t used;
  CHECK_OK(flume__key_decode(L, deep, 32, &used, NULL, 0));
  CHECK(used == 32);
  lua_pop(L, 1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Throughput on a few typical shapes of key. */
static void bench(void) {
  static const struct {
    const char *name;
    const char *expr;
  } shapes[] = {
      {"small integer", "12345"},
      {"float", "3.25"},
      {"big integer", "math.maxinteger - 7"},
      {"short string", "'@alice.ed25519'"},
      {"64-byte string", "string.rep('k', 64)"},
      {"composite", "{'post', 1700000000123, true}"},
      {"nested", "{{'a', 1}, {'b', 2.5}, 'tail'}"},
  };
  enum { REPS = 1000000 };
  flume__buf b = FLUME__BUF_INIT;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    push_expr(L, shapes[s].expr);
    double t0 = now();
    for (int i = 0; i < REPS; i++) {
      b.len = 0;
      CHECK_OK(flume__key_encode(L, -1, &b, NULL, 0));
    }
    double t1 = now();
    size_t used;
    for (int i = 0; i < REPS; i++) {
      CHECK_OK(flume__key_decode(L, b.data, b.len, &used, NULL, 0));
      lua_pop(L, 1);
    }
    double t2 = now();
    for (int i = 0; i < REPS; i++) CHECK(flume__key_length(b.data, b.len));
    double t3 = now();
    printf("%-15s %3zu B  encode %6.1f ns (%6.0f MB/s)  decode %6.1f ns  "
           "length %5.1f ns\n",
           shapes[s].name, b.len, (t1 - t0) / REPS * 1e9,
           (double)b.len * REPS / (t1 - t0) / 1e6, (t2 - t1) / REPS * 1e9,
           (t3 - t2) / REPS * 1e9);
    lua_pop(L, 1);
  }
  flume__buf_free(&b);
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
  test_format();
  test_round_trip();
  test_sorted();
  test_refusals();
  test_table_layouts();
  test_no_metamethods();
  test_decode_errors();
  test_self_delimiting();
  test_decode_garbage();
  test_fuzz_order();
  CHECK(lua_gettop(L) == 0);
  lua_close(L);
  printf("keys: ok\n");
  return 0;
}
