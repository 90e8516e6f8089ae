/* What flume's JSON writer (flume cat, flume.json) writes, against simple
 * definitions, byte for byte.
 *
 * Strings (written eight plain bytes at a time): random strings of ASCII,
 * control characters, quotes, backslashes, valid UTF-8 of every length and
 * invalid bytes (overlong, surrogates, past U+10FFFF, cut sequences),
 * against a byte loop that validates first and escapes each byte.
 *
 * Floats: flume__json_float (which skips printf for the
 * common case) against the definition it must keep, byte for byte: the
 * shortest of %.15g, %.16g, %.17g that reads back the same, ".0" added
 * when there is neither '.' nor 'e'. On decimals of every length and
 * scale (prices, coordinates, n / 10^k), around the bounds of the fast path
 * (10^-4 and 10^15, and their neighbours by an ulp), on whole numbers, and
 * on random bit patterns. A random seed (printed; FLUME_SEED replays it). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "json.h"

static void reference(char *s, double v) {
  static const char *const forms[] = {"%.15g", "%.16g", "%.17g"};
  for (int i = 0; i < 3; i++) {
    snprintf(s, 40, forms[i], v);
    if (strtod(s, NULL) == v || i == 2) break;
  }
  if (strpbrk(s, ".e") == NULL) strcat(s, ".0");
}

static long checked;

static void same(double v) {
  if (!isfinite(v)) return;
  char want[48], got[48];
  reference(want, v);
  size_t n = flume__json_float(got, v);
  got[n] = '\0';
  if (strcmp(want, got) != 0) {
    fprintf(stderr, "float %a: wrote %s, wanted %s\n", v, got, want);
    exit(1);
  }
  checked++;
}

static uint64_t rng;
static uint64_t rnd(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

/* Strict UTF-8 as Lua 5.4's utf8.len takes it: shortest forms, no
 * surrogates, nothing past U+10FFFF. */
static int ref_utf8(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    size_t k;
    uint32_t cp, min;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xc0 && c < 0xe0) k = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c < 0xf0) k = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c < 0xf8) k = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n - i < k) return 0;
    for (size_t j = 1; j < k; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (s[i + j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += k;
  }
  return 1;
}

/* The JSON of a string, or NULL-length -1 when it is not UTF-8. */
static long ref_string(const unsigned char *s, size_t n, char *out) {
  if (!ref_utf8(s, n)) return -1;
  char *o = out;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned c = s[i];
    if (c == '"') o += sprintf(o, "\\\"");
    else if (c == '\\') o += sprintf(o, "\\\\");
    else if (c == '\b') o += sprintf(o, "\\b");
    else if (c == '\f') o += sprintf(o, "\\f");
    else if (c == '\n') o += sprintf(o, "\\n");
    else if (c == '\r') o += sprintf(o, "\\r");
    else if (c == '\t') o += sprintf(o, "\\t");
    else if (c < 0x20) o += sprintf(o, "\\u%04x", c);
    else *o++ = (char)c;
  }
  *o++ = '"';
  return o - out;
}

/* A piece of a random string. */
static size_t piece(unsigned char *p) {
  static const char *const utf8[] = {"\xc3\xa9", "\xe2\x82\xac",
                                     "\xf0\x9f\x98\x80", "\xdf\xbf",
                                     "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"};
  static const char *const bad[] = {"\xc0\x80", "\xed\xa0\x80",
                                    "\xf4\x90\x80\x80", "\xe2\x82",
                                    "\x80", "\xff", "\xf8\x88\x80\x80\x80",
                                    "\xe0\x80\xaf"};
  uint64_t r = rnd() % 100;
  if (r < 70) { /* a stretch of plain ASCII */
    size_t k = 1 + rnd() % 20;
    for (size_t i = 0; i < k; i++) p[i] = (unsigned char)(0x20 + rnd() % 95);
    return k;
  }
  if (r < 80) { p[0] = (unsigned char)(rnd() % 0x20); return 1; }
  if (r < 85) { p[0] = rnd() % 2 ? '"' : '\\'; return 1; }
  if (r < 97) {
    const char *u = utf8[rnd() % 6];
    memcpy(p, u, strlen(u));
    return strlen(u);
  }
  const char *b = bad[rnd() % 8];
  memcpy(p, b, strlen(b));
  return strlen(b);
}

static void strings(void) {
  static unsigned char s[70000];
  static char want[70000 * 6 + 8];
  flume__buf out = FLUME__BUF_INIT;
  for (int t = 0; t < 60000; t++) {
    size_t n = 0, cap = t % 100 == 0 ? 65000 : 1 + rnd() % 300;
    int clean = rnd() % 3 == 0; /* no invalid pieces */
    while (n < cap) {
      size_t k = piece(s + n);
      if (clean && !ref_utf8(s + n, k)) continue;
      n += k;
    }
    /* msgpack str 16 (any length here) */
    static unsigned char mp[70003];
    mp[0] = 0xda, mp[1] = (unsigned char)(n >> 8), mp[2] = (unsigned char)n;
    memcpy(mp + 3, s, n);
    long wn = ref_string(s, n, want);
    out.len = 0;
    int rc = flume__mp_to_json((const char *)mp, n + 3, &out);
    if (wn < 0) {
      CHECK(rc != 0 && out.len == 0);
    } else if (rc != 0 || out.len != (size_t)wn ||
               memcmp(out.data, want, out.len) != 0) {
      fprintf(stderr, "string of %zu bytes: rc %d, wrote %.*s\nwanted %.*s\n",
              n, rc, (int)out.len, out.data, (int)wn, want);
      exit(1);
    }
    checked++;
  }
  flume__buf_free(&out);
}

int main(void) {
  rng = test_seed("test_json_write") * 2654435761u + 1;

  strings();
  printf("test_json_write: %ld strings as a byte loop writes them\n",
         checked);
  checked = 0;

  static const double fixed[] = {0.0, 1.0, 5.0, 0.1, 0.2, 0.3, 1.5, 616.46,
                                 1e-4, 1e-5, 1e15, 1e16, 1e14, 1e22, 1e-300,
                                 123456789012345.0, 999999999999999.0,
                                 999999999999999.9, 0.0001234, 0.00001234,
                                 2.5e-4, 9.999999999999999e14, 1.0 / 3.0,
                                 2.0 / 3.0, M_PI, 4503599627370496.0,
                                 9007199254740993.0, 5e-324, 1.7976931348623157e308};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
    same(fixed[i]);
    same(-fixed[i]);
    same(nextafter(fixed[i], 0));
    same(nextafter(fixed[i], INFINITY));
  }
  /* The bounds and a few ulps around them. */
  static const double bounds[] = {1e-4, 1e15, 1e-3, 1e14, 1.0};
  for (size_t i = 0; i < sizeof bounds / sizeof *bounds; i++) {
    double d = bounds[i];
    for (int k = 0; k < 64; k++) d = nextafter(d, 0);
    for (int k = 0; k < 128; k++, d = nextafter(d, INFINITY)) same(d);
  }
  /* n / 10^k and n * 10^k: the decimals people store. */
  for (int i = 0; i < 400000; i++) {
    int digits = 1 + (int)(rnd() % 17);
    uint64_t n = rnd() % (uint64_t)pow(10, digits);
    int k = (int)(rnd() % 24) - 4;
    double v = k >= 0 ? (double)n / pow(10, k) : (double)n * pow(10, -k);
    same(v);
    same(-v);
  }
  /* Whole numbers, and any bits at all. */
  for (int i = 0; i < 100000; i++) {
    same((double)(int64_t)(rnd() >> (rnd() % 64)));
    uint64_t bits = rnd();
    double v;
    memcpy(&v, &bits, sizeof v);
    same(v);
    same(ldexp((double)(rnd() >> 11), -(int)(rnd() % 80)));
  }
  printf("test_json_write: %ld floats as printf writes them\n", checked);
  return 0;
}
