/* flume_encode / flume_decode: a tree of C values and msgpack, both ways.
 * Known encodings (flume's: smallest integers, float64), round trips of
 * generated trees, and hostile bytes (random and mutated encodings, lying
 * counts, deep nesting): a clear FLUME_EDECODE, never a crash (this runs
 * under ASan and valgrind in CI). FLUME_SEED replays a run. And
 * flume_run_until, the loop of programs without one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "flume.h"

static volatile int *timer_flag;

static void on_timer(uv_timer_t *t) {
  (void)t;
  *timer_flag = 1;
}

static uint64_t state;
static uint64_t rnd(void) {
  state = state * 6364136223846793005ULL + 1442695040888963407ULL;
  return state >> 17;
}

static int same(const flume_value *a, const flume_value *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case FLUME_NIL: return 1;
  case FLUME_BOOL: return !a->as.b == !b->as.b;
  case FLUME_INT: return a->as.i == b->as.i;
  case FLUME_FLOAT: return memcmp(&a->as.f, &b->as.f, 8) == 0;
  case FLUME_STR:
    return a->as.str.len == b->as.str.len &&
           memcmp(a->as.str.ptr, b->as.str.ptr, a->as.str.len) == 0;
  case FLUME_ARRAY:
    if (a->as.array.n != b->as.array.n) return 0;
    for (size_t i = 0; i < a->as.array.n; i++)
      if (!same(&a->as.array.items[i], &b->as.array.items[i])) return 0;
    return 1;
  case FLUME_MAP:
    if (a->as.map.n != b->as.map.n) return 0;
    for (size_t i = 0; i < a->as.map.n; i++)
      if (!same(&a->as.map.keys[i], &b->as.map.keys[i]) ||
          !same(&a->as.map.vals[i], &b->as.map.vals[i]))
        return 0;
    return 1;
  }
  return 0;
}

/* A generated tree; its nodes come from pool (freed by the caller). */
static flume_value *pool;
static size_t pool_n, pool_cap;
static flume_value *node(void) {
  CHECK(pool_n < pool_cap);
  return &pool[pool_n++];
}

static const int64_t ints[] = {0, 1, -1, 127, 128, -32, -33, 255, 256,
                               65535, 65536, 4294967295LL, 4294967296LL,
                               INT64_MAX, INT64_MIN, -129, -32769};
static const char *strs[] = {"", "a", "post", "\xff\x00x", "x"};

static void gen(flume_value *v, int depth) {
  int r = (int)(rnd() % (depth > 4 ? 5 : 7));
  switch (r) {
  case 0: v->type = FLUME_NIL; break;
  case 1: v->type = FLUME_BOOL, v->as.b = (int)(rnd() & 1); break;
  case 2: v->type = FLUME_INT; v->as.i = ints[rnd() % 17]; break;
  case 3:
    v->type = FLUME_FLOAT;
    v->as.f = (double)(int64_t)rnd() / 7.0;
    break;
  case 4: {
    v->type = FLUME_STR;
    size_t k = rnd() % 6;
    if (k == 5) { /* a long one: str16 */
      static char big[70000];
      memset(big, 'b', sizeof big);
      v->as.str.ptr = big;
      v->as.str.len = 300 + rnd() % 69000;
    } else {
      v->as.str.ptr = strs[k];
      v->as.str.len = k == 3 ? 3 : strlen(strs[k]);
    }
    break;
  }
  case 5: {
    size_t n = rnd() % (rnd() % 8 == 0 ? 40 : 5);
    v->type = FLUME_ARRAY;
    v->as.array.n = n;
    v->as.array.items = pool + pool_n;
    for (size_t i = 0; i < n; i++) node();
    for (size_t i = 0; i < n; i++) gen(&v->as.array.items[i], depth + 1);
    break;
  }
  default: {
    size_t n = rnd() % 5;
    v->type = FLUME_MAP;
    v->as.map.n = n;
    v->as.map.keys = pool + pool_n;
    for (size_t i = 0; i < 2 * n; i++) node();
    v->as.map.vals = v->as.map.keys + n;
    for (size_t i = 0; i < n; i++) {
      gen(&v->as.map.keys[i], depth + 1);
      gen(&v->as.map.vals[i], depth + 1);
    }
  }
  }
}

static void check_bytes(const flume_value *v, const char *want, size_t n) {
  void *out;
  size_t len;
  CHECK_OK(flume_encode(v, &out, &len));
  CHECK(len == n && memcmp(out, want, n) == 0);
  flume_value *back;
  CHECK_OK(flume_decode(out, len, &back));
  CHECK(same(v, back));
  flume_free(back);
  flume_free(out);
}

int main(void) {
  const char *seed_env = getenv("FLUME_SEED");
  uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : 42;
  state = seed;
  printf("seed %llu (FLUME_SEED replays)\n", (unsigned long long)seed);

  /* known encodings: flume's forms */
  flume_value v = {.type = FLUME_INT, .as.i = 5};
  check_bytes(&v, "\x05", 1);
  v.as.i = -1;
  check_bytes(&v, "\xff", 1);
  v.as.i = 200;
  check_bytes(&v, "\xcc\xc8", 2);
  v.as.i = INT64_MIN;
  check_bytes(&v, "\xd3\x80\0\0\0\0\0\0\0", 9);
  v.type = FLUME_FLOAT, v.as.f = 1.0;
  check_bytes(&v, "\xcb\x3f\xf0\0\0\0\0\0\0", 9);
  flume_value kv[2] = {{.type = FLUME_STR, .as.str = {"a", 1}},
                       {.type = FLUME_BOOL, .as.b = 1}};
  flume_value m = {.type = FLUME_MAP, .as.map = {&kv[0], &kv[1], 1}};
  check_bytes(&m, "\x81\xa1" "a" "\xc3", 4);
  flume_value arr = {.type = FLUME_ARRAY, .as.array = {NULL, 0}};
  check_bytes(&arr, "\x90", 1);

  /* decoding: strings are NUL-ended; big unsigned is a float */
  flume_value *t;
  CHECK_OK(flume_decode("\xa3" "abc", 4, &t));
  CHECK(t->type == FLUME_STR && strcmp(t->as.str.ptr, "abc") == 0);
  flume_free(t);
  CHECK_OK(flume_decode("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, &t));
  CHECK(t->type == FLUME_FLOAT && t->as.f == 18446744073709551615.0);
  flume_free(t);

  /* refusals */
  void *out;
  size_t len;
  CHECK_ERR(flume_decode("\x91", 1, &t), FLUME_EDECODE);     /* cut short */
  CHECK_ERR(flume_decode("\x01\x02", 2, &t), FLUME_EDECODE); /* two values */
  CHECK_ERR(flume_decode("\xd4\x01\x02", 3, &t), FLUME_EDECODE); /* ext */
  CHECK_ERR(flume_decode("\xdd\xff\xff\xff\xff", 5, &t), FLUME_EDECODE);
  CHECK_ERR(flume_decode("", 0, &t), FLUME_EDECODE);
  CHECK_ERR(flume_decode(NULL, 0, &t), FLUME_EINVAL);
  static char deep[200];
  memset(deep, 0x91, sizeof deep);
  deep[sizeof deep - 1] = 0x01;
  CHECK_ERR(flume_decode(deep, sizeof deep, &t), FLUME_EDECODE);
  CHECK_OK(flume_decode(deep + 100, 100, &t)); /* 99 deep: fine */
  flume_free(t);
  flume_value bad = {.type = (flume_type)42};
  CHECK_ERR(flume_encode(&bad, &out, &len), FLUME_EINVAL);
  flume_value nul = {.type = FLUME_STR, .as.str = {NULL, 3}};
  CHECK_ERR(flume_encode(&nul, &out, &len), FLUME_EINVAL);

  /* round trips of generated trees, and their mutations decoded */
  pool_cap = 1 << 20;
  pool = malloc(pool_cap * sizeof *pool);
  CHECK(pool != NULL);
  int cases = 3000, refused = 0;
  for (int c = 0; c < cases; c++) {
    pool_n = 0;
    flume_value root;
    gen(&root, 0);
    CHECK_OK(flume_encode(&root, &out, &len));
    CHECK_OK(flume_decode(out, len, &t));
    if (!same(&root, t)) {
      fprintf(stderr, "seed %llu case %d: round trip differs\n",
              (unsigned long long)seed, c);
      return 1;
    }
    flume_free(t);
    for (int k = 0; k < 8; k++) {
      unsigned char *mut = malloc(len + 1);
      CHECK(mut != NULL);
      memcpy(mut, out, len);
      size_t ml = len;
      size_t at = len ? rnd() % len : 0;
      switch (rnd() % 3) {
      case 0: if (len) mut[at] ^= (unsigned char)(1 + rnd() % 255); break;
      case 1: ml = at; break; /* cut */
      default: mut[ml++] = (unsigned char)rnd(); /* a byte more */
      }
      int rc = flume_decode(mut, ml, &t);
      if (rc == 0) flume_free(t);
      else refused++;
      CHECK(rc == 0 || rc == FLUME_EDECODE);
      free(mut);
    }
    flume_free(out);
  }
  CHECK(refused > 0);
  free(pool);

  /* flume_run_until: runs until the flag is set; an idle loop is
   * ECANCELED, not a hang */
  uv_loop_t loop;
  uv_timer_t timer;
  static volatile int done;
  timer_flag = &done;
  CHECK_OK(uv_loop_init(&loop));
  uv_timer_init(&loop, &timer);
  uv_timer_start(&timer, on_timer, 10, 0);
  CHECK_OK(flume_run_until(&loop, &done));
  CHECK(done == 1);
  done = 0;
  CHECK_ERR(flume_run_until(&loop, &done), FLUME_ECANCELED);
  CHECK_ERR(flume_run_until(NULL, &done), FLUME_EINVAL);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_OK(uv_loop_close(&loop));
  printf("values: %d trees round-trip, %d of %d mutations refused\n", cases,
         refused, cases * 8);
  return 0;
}
