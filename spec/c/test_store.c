/*
 * The store conformance test: one suite of checks over the storage
 * interface (log/store.h), run against every backend, so that the memory
 * backend behaves as the LMDB one does wherever store.h says what happens.
 * Behaviour store.h leaves open (a cursor after a delete under it, readers
 * beside a writer, allocation failures) is checked for the memory backend
 * only, in the "memory extras" at the end.
 *
 * Then the LMDB extras: what only the durable backend does (seals, the
 * checks at open, stale readers, a full disk).
 *
 * `test_store memory` (or `lmdb`) runs the suite on that backend only;
 * `test_store bench [n]` times n (default 1,000,000) inserts, seeks and a
 * scan on each backend instead.
 */
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "crc32c.h"
#include "store.h"
#include "tmpdir.h"

#ifdef FLUME_TEST_HOOKS
extern long flume__test_memory_fail_after;
int flume__test_memory_check(flume__store *s);
#endif

typedef struct env {
  const flume__store_ops *ops; /* the backend under test */
  flume__store *s;             /* its open store */
  char dir[4096];              /* its folder; "" for the memory backend */
} env;

/* Store lifetime. */

static void env_open(env *e, const flume__store_ops *ops) {
  memset(e, 0, sizeof *e);
  e->ops = ops;
  if (ops != &flume__store_memory) temp_dir(e->dir, sizeof e->dir, "store");
  flume__store_opts opts = {0};
  CHECK_OK(ops->open(e->dir[0] ? e->dir : NULL, &opts, &e->s));
}

static void env_close(env *e) {
  e->ops->close(e->s);
  e->s = NULL;
  if (e->dir[0]) remove_dir(e->dir);
}

static flume__txn *begin(env *e, int flags) {
  flume__txn *t;
  CHECK_OK(e->ops->txn_begin(e->s, flags, &t));
  return t;
}

/* Slices and lookups. */

static flume__slice str(const char *s) { return (flume__slice){s, strlen(s)}; }

static flume__slice bin(const void *p, size_t n) {
  return (flume__slice){p, n};
}

static int slice_is(flume__slice a, flume__slice b) {
  return a.size == b.size &&
         (a.size == 0 || memcmp(a.data, b.data, a.size) == 0);
}

static flume__table table(env *e, flume__txn *t, const char *name, int create) {
  flume__table tbl;
  CHECK_OK(e->ops->table_open(t, name, create, &tbl));
  CHECK(tbl != FLUME__TABLE_LOG);
  return tbl;
}

static void put(env *e, flume__txn *t, flume__table tbl, const char *k,
                const char *v) {
  CHECK_OK(e->ops->put(t, tbl, str(k), str(v)));
}

/* Whether key k holds v (v NULL: k is absent). */
static int holds(env *e, flume__txn *t, flume__table tbl, const char *k,
                 const char *v) {
  flume__slice got;
  int rc = e->ops->get(t, tbl, str(k), &got);
  if (v == NULL) return rc == FLUME_ENOTFOUND;
  return rc == 0 && slice_is(got, str(v));
}

static uint64_t count(env *e, flume__txn *t, flume__table tbl) {
  uint64_t n;
  CHECK_OK(e->ops->table_count(t, tbl, &n));
  return n;
}

static int64_t log_last(env *e, flume__txn *t) {
  int64_t last;
  CHECK_OK(e->ops->log_last(t, &last));
  return last;
}

/* A table's whole content as text ("6b31=7631,..." in hex), read forwards;
 * also checks that reading backwards gives the same entries reversed and
 * that the count agrees. The caller frees it. */
static char *dump(env *e, flume__txn *t, flume__table tbl) {
  size_t cap = 256, len = 0, n = 0;
  char *out = malloc(cap);
  CHECK(out != NULL);
  out[0] = '\0';
  flume__cursor *c;
  CHECK_OK(e->ops->cursor_open(t, tbl, &c));
  flume__slice k, v, pk = {NULL, 0};
  int rc;
  while ((rc = e->ops->cursor_get(c, FLUME__NEXT, &k, &v)) == 0) {
    CHECK(n == 0 || tbl == FLUME__TABLE_LOG ||
          memcmp(pk.data, k.data, pk.size < k.size ? pk.size : k.size) <= 0);
    while (len + 2 * (k.size + v.size) + 3 >= cap) {
      cap *= 2;
      CHECK((out = realloc(out, cap)) != NULL);
    }
    for (size_t i = 0; i < k.size; i++)
      len += (size_t)sprintf(out + len, "%02x", ((const uint8_t *)k.data)[i]);
    out[len++] = '=';
    for (size_t i = 0; i < v.size; i++)
      len += (size_t)sprintf(out + len, "%02x", ((const uint8_t *)v.data)[i]);
    out[len++] = ',';
    out[len] = '\0';
    pk = k;
    n++;
  }
  CHECK_ERR(rc, FLUME_ENOTFOUND);
  e->ops->cursor_close(c);
  CHECK(count(e, t, tbl) == n);
  CHECK_OK(e->ops->cursor_open(t, tbl, &c));
  size_t back = 0;
  for (int op = FLUME__LAST; (rc = e->ops->cursor_get(c, op, &k, &v)) == 0;
       op = FLUME__PREV)
    back++;
  CHECK_ERR(rc, FLUME_ENOTFOUND);
  CHECK(back == n);
  e->ops->cursor_close(c);
  return out;
}

static int same_dump(env *e, flume__txn *t, flume__table tbl,
                     const char *want) {
  char *got = dump(e, t, tbl);
  int same = strcmp(got, want) == 0;
  free(got);
  return same;
}

/* The log. */

static flume__slice seq_key(uint64_t *buf, uint64_t seq) {
  *buf = seq;
  return bin(buf, sizeof *buf);
}

/* Whether the cursor's next move `op` lands on seq (-1: ENOTFOUND). */
static int log_at(env *e, flume__cursor *c, int op, uint64_t from,
                  int64_t seq) {
  uint64_t kb;
  flume__slice k = seq_key(&kb, from), v;
  int rc = e->ops->cursor_get(c, op, &k, &v);
  if (seq < 0) return rc == FLUME_ENOTFOUND;
  if (rc != 0 || k.size != 8) return 0;
  uint64_t got;
  memcpy(&got, k.data, 8);
  char want[32];
  snprintf(want, sizeof want, "v%lld", (long long)seq);
  if (seq == 5) want[0] = '\0'; /* seq 5 holds an empty value */
  if (seq == 7) return got == 7 && v.size == 100000; /* and 7 a big one */
  return got == (uint64_t)seq && slice_is(v, str(want));
}

static void test_log(env *e) {
  flume__txn *t = begin(e, FLUME__TXN_WRITE);
  flume__cursor *c;
  CHECK(log_last(e, t) == -1);
  CHECK(count(e, t, FLUME__TABLE_LOG) == 0);
  CHECK_OK(e->ops->cursor_open(t, FLUME__TABLE_LOG, &c));
  for (int op = FLUME__FIRST; op <= FLUME__SET; op++)
    CHECK(log_at(e, c, op, 0, -1));
  e->ops->cursor_close(c);
  CHECK_ERR(e->ops->log_append(t, 1, str("x")), FLUME_EINVAL);
  char *big = calloc(1, 100000);
  CHECK(big != NULL);
  for (int64_t seq = 0; seq < 10; seq++) {
    char v[32];
    snprintf(v, sizeof v, "v%lld", (long long)seq);
    flume__slice val = str(v);
    if (seq == 5) val = bin(NULL, 0);
    if (seq == 7) val = bin(big, 100000);
    CHECK_OK(e->ops->log_append(t, seq, val));
    CHECK(log_last(e, t) == seq);
  }
  free(big);
  CHECK_ERR(e->ops->log_append(t, 11, str("x")), FLUME_EINVAL);
  CHECK_ERR(e->ops->log_append(t, 9, str("x")), FLUME_EINVAL);
  CHECK_ERR(e->ops->log_append(t, 0, str("x")), FLUME_EINVAL);
  CHECK(log_last(e, t) == 9);
  CHECK_OK(e->ops->txn_commit(t));

  t = begin(e, FLUME__TXN_READ);
  CHECK(log_last(e, t) == 9);
  CHECK(count(e, t, FLUME__TABLE_LOG) == 10);
  uint64_t kb;
  flume__slice v;
  CHECK_OK(e->ops->get(t, FLUME__TABLE_LOG, seq_key(&kb, 3), &v));
  CHECK(slice_is(v, str("v3")));
  CHECK_ERR(e->ops->get(t, FLUME__TABLE_LOG, seq_key(&kb, 10), &v),
            FLUME_ENOTFOUND);
  CHECK_OK(e->ops->cursor_open(t, FLUME__TABLE_LOG, &c));
  CHECK(log_at(e, c, FLUME__NEXT, 0, 0)); /* unpositioned NEXT: the first */
  CHECK(log_at(e, c, FLUME__SET, 3, 3));
  CHECK(log_at(e, c, FLUME__SET, 10, -1));
  CHECK(log_at(e, c, FLUME__NEXT, 0, -1)); /* past the end, as in LMDB */
  CHECK(log_at(e, c, FLUME__SET, 10, -1));
  CHECK(log_at(e, c, FLUME__PREV, 0, 9));
  CHECK(log_at(e, c, FLUME__SET_RANGE, 4, 4));
  for (int64_t seq = 5; seq <= 9; seq++)
    CHECK(log_at(e, c, FLUME__NEXT, 0, seq));
  CHECK(log_at(e, c, FLUME__NEXT, 0, -1));
  CHECK(log_at(e, c, FLUME__SET_RANGE, 6, 6));
  for (int64_t seq = 5; seq >= 0; seq--)
    CHECK(log_at(e, c, FLUME__PREV, 0, seq));
  CHECK(log_at(e, c, FLUME__PREV, 0, -1));
  CHECK(log_at(e, c, FLUME__LAST, 0, 9));
  CHECK(log_at(e, c, FLUME__PREV, 0, 8));
  CHECK(log_at(e, c, FLUME__FIRST, 0, 0));
  CHECK(log_at(e, c, FLUME__SET_RANGE, 9, 9));
  CHECK(log_at(e, c, FLUME__SET_RANGE, 10, -1));
  CHECK(log_at(e, c, FLUME__SET_RANGE, UINT64_MAX, -1));
  e->ops->cursor_close(c);
  CHECK_OK(e->ops->cursor_open(t, FLUME__TABLE_LOG, &c));
  CHECK(log_at(e, c, FLUME__PREV, 0, 9)); /* unpositioned PREV: the last */
  e->ops->cursor_close(c);
  e->ops->txn_abort(t);

  /* A later transaction goes on from where the log ends. */
  t = begin(e, FLUME__TXN_WRITE);
  CHECK(log_last(e, t) == 9);
  CHECK_OK(e->ops->log_append(t, 10, str("v10")));
  CHECK_OK(e->ops->txn_commit(t));
  t = begin(e, FLUME__TXN_READ);
  CHECK(log_last(e, t) == 10);
  e->ops->txn_abort(t);
}

/* Named tables. */

static void test_tables(env *e) {
  flume__txn *t = begin(e, FLUME__TXN_WRITE);
  flume__table tbl;
  CHECK_ERR(e->ops->table_open(t, "basic", 0, &tbl), FLUME_ENOTFOUND);
  CHECK_ERR(e->ops->table_open(t, "", 1, &tbl), FLUME_EINVAL);
  flume__table a = table(e, t, "basic", 1), b = table(e, t, "other", 1);
  CHECK(a != b);
  CHECK(table(e, t, "basic", 0) == a);
  CHECK(table(e, t, "basic", 1) == a);

  /* An empty table: every move finds nothing. */
  flume__cursor *c;
  flume__slice k, v;
  CHECK(count(e, t, a) == 0);
  CHECK_OK(e->ops->cursor_open(t, a, &c));
  for (int op = FLUME__FIRST; op <= FLUME__SET; op++) {
    k = str("k");
    CHECK_ERR(e->ops->cursor_get(c, op, &k, &v), FLUME_ENOTFOUND);
  }
  e->ops->cursor_close(c);

  put(e, t, a, "k1", "v1");
  put(e, t, a, "k2", "v2");
  put(e, t, b, "k1", "other");
  CHECK(holds(e, t, a, "k1", "v1") && holds(e, t, b, "k1", "other"));
  CHECK(holds(e, t, a, "k3", NULL) && holds(e, t, b, "k2", NULL));
  put(e, t, a, "k1", "replaced, and longer than before");
  CHECK(holds(e, t, a, "k1", "replaced, and longer than before"));
  CHECK(count(e, t, a) == 2 && count(e, t, b) == 1);
  CHECK_OK(e->ops->del(t, a, str("k2")));
  CHECK_ERR(e->ops->del(t, a, str("k2")), FLUME_ENOTFOUND);
  CHECK(holds(e, t, a, "k2", NULL) && count(e, t, a) == 1);

  /* Values of any size, including none; binary bytes. */
  CHECK_OK(e->ops->put(t, a, str("empty"), bin(NULL, 0)));
  CHECK_OK(e->ops->get(t, a, str("empty"), &v));
  CHECK(v.size == 0);
  static const uint8_t raw[] = {0, 0xff, 0, 1};
  CHECK_OK(e->ops->put(t, a, bin(raw, 4), bin(raw, 4)));
  CHECK_OK(e->ops->get(t, a, bin(raw, 4), &v));
  CHECK(slice_is(v, bin(raw, 4)));
  CHECK_ERR(e->ops->get(t, a, bin(raw, 3), &v), FLUME_ENOTFOUND);

  /* Keys are 1..511 bytes. */
  char key[513];
  memset(key, 'x', sizeof key);
  CHECK_OK(e->ops->put(t, a, bin(key, 511), str("long")));
  CHECK_OK(e->ops->get(t, a, bin(key, 511), &v));
  CHECK(slice_is(v, str("long")));
  CHECK_ERR(e->ops->put(t, a, bin(key, 512), str("x")), FLUME_EINVAL);
  CHECK_ERR(e->ops->put(t, a, bin(key, 0), str("x")), FLUME_EINVAL);
  CHECK_ERR(e->ops->get(t, a, bin(key, 0), &v), FLUME_EINVAL);
  k = bin(key, 0);
  CHECK_OK(e->ops->cursor_open(t, a, &c));
  CHECK_ERR(e->ops->cursor_get(c, FLUME__SET_RANGE, &k, &v), FLUME_EINVAL);
  e->ops->cursor_close(c);
  CHECK(e->ops->put(t, FLUME__TABLE_LOG, str("k"), str("v")) != 0);
  CHECK(count(e, t, a) == 4);

  /* Clear empties one table and leaves its handle working. */
  CHECK_OK(e->ops->table_clear(t, a));
  CHECK(count(e, t, a) == 0 && holds(e, t, a, "k1", NULL));
  CHECK(count(e, t, b) == 1);
  put(e, t, a, "after", "clear");
  CHECK_OK(e->ops->txn_commit(t));

  /* Handles outlive the transaction that opened them; reads see commits. */
  t = begin(e, FLUME__TXN_READ);
  CHECK(table(e, t, "basic", 0) == a);
  CHECK(e->ops->table_open(t, "missing", 1, &tbl) != 0);
  CHECK(holds(e, t, a, "after", "clear") && count(e, t, a) == 1);
  CHECK(holds(e, t, b, "k1", "other"));
  CHECK(e->ops->put(t, a, str("k"), str("v")) != 0);
  e->ops->txn_abort(t);
}

/* Key order: bytewise, a prefix before its extensions. */
static const struct {
  const char *k; /* the key's bytes */
  size_t n;      /* its length */
} sorted[] = {
    {"\x00", 1}, {"\x00\x00", 2}, {"\x00\xff", 2}, {"\x01", 1},
    {"a", 1},    {"a\x00", 2},    {"aa", 2},       {"ab", 2},
    {"abc", 3},  {"a\xff", 2},    {"b", 1},        {"\x7f", 1},
    {"\x80", 1}, {"\xff", 1},     {"\xff\x00", 2}, {"\xff\xff", 2},
};
#define NSORTED (sizeof sorted / sizeof sorted[0])

/* Whether the cursor's move lands on sorted[i] (i < 0: ENOTFOUND). */
static int order_at(env *e, flume__cursor *c, int op, const char *seek,
                    size_t n, int i) {
  flume__slice k = bin(seek, n), v;
  int rc = e->ops->cursor_get(c, op, &k, &v);
  if (i < 0) return rc == FLUME_ENOTFOUND;
  return rc == 0 && slice_is(k, bin(sorted[i].k, sorted[i].n)) && v.size == 1 &&
         *(const uint8_t *)v.data == i;
}

static void test_order(env *e) {
  flume__txn *t = begin(e, FLUME__TXN_WRITE);
  flume__table tbl = table(e, t, "order", 1);
  for (size_t j = 0; j < NSORTED; j++) {
    size_t i = (j * 7 + 3) % NSORTED; /* 7 is prime to 16: a permutation */
    uint8_t val = (uint8_t)i;
    CHECK_OK(e->ops->put(t, tbl, bin(sorted[i].k, sorted[i].n), bin(&val, 1)));
  }
  CHECK(count(e, t, tbl) == NSORTED);
  CHECK_OK(e->ops->txn_commit(t));

  t = begin(e, FLUME__TXN_READ);
  flume__cursor *c;
  CHECK_OK(e->ops->cursor_open(t, tbl, &c));
  CHECK(order_at(e, c, FLUME__FIRST, "", 0, 0));
  for (int i = 1; i < (int)NSORTED; i++)
    CHECK(order_at(e, c, FLUME__NEXT, "", 0, i));
  CHECK(order_at(e, c, FLUME__NEXT, "", 0, -1));
  CHECK(order_at(e, c, FLUME__LAST, "", 0, NSORTED - 1));
  for (int i = NSORTED - 2; i >= 0; i--)
    CHECK(order_at(e, c, FLUME__PREV, "", 0, i));
  CHECK(order_at(e, c, FLUME__PREV, "", 0, -1));

  /* SET is exact, SET_RANGE the first key >= the one given. */
  CHECK(order_at(e, c, FLUME__SET, "ab", 2, 7));
  CHECK(order_at(e, c, FLUME__NEXT, "", 0, 8));
  CHECK(order_at(e, c, FLUME__SET, "ac", 2, -1));
  /* Not promised by store.h, but LMDB's, so the memory backend copies it:
   * a failed seek leaves the cursor on the first key >= the one sought, or
   * past the end. */
  CHECK(order_at(e, c, FLUME__NEXT, "", 0, 10));
  CHECK(order_at(e, c, FLUME__SET, "ac", 2, -1));
  CHECK(order_at(e, c, FLUME__PREV, "", 0, 8));
  CHECK(order_at(e, c, FLUME__SET, "a", 1, 4));
  CHECK(order_at(e, c, FLUME__PREV, "", 0, 3));
  CHECK(order_at(e, c, FLUME__SET_RANGE, "ab", 2, 7));
  CHECK(order_at(e, c, FLUME__SET_RANGE, "abb", 3, 8));
  CHECK(order_at(e, c, FLUME__PREV, "", 0, 7));
  CHECK(order_at(e, c, FLUME__SET_RANGE, "abd", 3, 9));
  CHECK(order_at(e, c, FLUME__SET_RANGE, "a\x00\x00", 3, 6));
  CHECK(order_at(e, c, FLUME__SET_RANGE, "\x00", 1, 0));
  CHECK(order_at(e, c, FLUME__SET_RANGE, "\x00\x00\x00", 3, 2));
  CHECK(order_at(e, c, FLUME__SET_RANGE, "\xfe", 1, 13));
  CHECK(order_at(e, c, FLUME__SET_RANGE, "\xff\xff", 2, 15));
  CHECK(order_at(e, c, FLUME__NEXT, "", 0, -1));
  CHECK(order_at(e, c, FLUME__SET_RANGE, "\xff\xff\x00", 3, -1));
  CHECK(order_at(e, c, FLUME__NEXT, "", 0, -1));
  CHECK(order_at(e, c, FLUME__SET, "\xff\xff\x00", 3, -1));
  CHECK(order_at(e, c, FLUME__PREV, "", 0, 15));
  e->ops->cursor_close(c);
  e->ops->txn_abort(t);
}

/* Abort undoes everything a write transaction did; commit keeps it. */
static void test_abort_commit(env *e) {
  flume__txn *t = begin(e, FLUME__TXN_WRITE);
  flume__table a = table(e, t, "undo-a", 1), b = table(e, t, "undo-b", 1);
  for (int i = 0; i < 300; i++) {
    char k[16], v[16];
    snprintf(k, sizeof k, "k%03d", i);
    snprintf(v, sizeof v, "v%d", i);
    put(e, t, a, k, v);
    if (i % 3 == 0) put(e, t, b, k, v);
  }
  int64_t last0 = log_last(e, t);
  CHECK_OK(e->ops->log_append(t, last0 + 1, str("kept")));
  CHECK_OK(e->ops->txn_commit(t));

  t = begin(e, FLUME__TXN_READ);
  char *a0 = dump(e, t, a), *b0 = dump(e, t, b);
  char *log0 = dump(e, t, FLUME__TABLE_LOG);
  e->ops->txn_abort(t);

  for (int round = 0; round < 2; round++) {
    t = begin(e, FLUME__TXN_WRITE);
    for (int i = 0; i < 300; i += 2) {
      char k[16];
      snprintf(k, sizeof k, "k%03d", i);
      if (i % 4 == 0)
        CHECK_OK(e->ops->del(t, a, str(k)));
      else
        put(e, t, a, k, "replaced");
    }
    put(e, t, a, "new", "1");
    CHECK_OK(e->ops->del(t, a, str("new")));
    CHECK_OK(e->ops->del(t, a, str("k001")));
    put(e, t, a, "k001", "back");
    put(e, t, a, "k003", "twice");
    put(e, t, a, "k003", "thrice");
    put(e, t, a, "zz", "new");
    put(e, t, b, "before-clear", "x");
    CHECK_OK(e->ops->table_clear(t, b));
    put(e, t, b, "after-clear", "y");
    flume__table c = table(e, t, "undo-created", 1);
    put(e, t, c, "in", "created");
    for (int64_t s = last0 + 2; s < last0 + 5; s++)
      CHECK_OK(e->ops->log_append(t, s, str("appended")));
    CHECK(holds(e, t, a, "k000", NULL) && holds(e, t, a, "k002", "replaced"));
    CHECK(holds(e, t, a, "k001", "back") && holds(e, t, a, "k003", "thrice"));
    CHECK(count(e, t, b) == 1 && holds(e, t, b, "after-clear", "y"));
    CHECK(holds(e, t, c, "in", "created"));
    CHECK(log_last(e, t) == last0 + 4);
    if (round == 0) {
      e->ops->txn_abort(t);
      t = begin(e, FLUME__TXN_READ);
      CHECK(same_dump(e, t, a, a0) && same_dump(e, t, b, b0));
      CHECK(same_dump(e, t, FLUME__TABLE_LOG, log0));
      CHECK(log_last(e, t) == last0 + 1);
      flume__table missing;
      CHECK_ERR(e->ops->table_open(t, "undo-created", 0, &missing),
                FLUME_ENOTFOUND);
      e->ops->txn_abort(t);
    } else {
      CHECK_OK(e->ops->txn_commit(t));
      t = begin(e, FLUME__TXN_READ);
      CHECK(holds(e, t, a, "k000", NULL) && holds(e, t, a, "k004", NULL));
      CHECK(holds(e, t, a, "k002", "replaced") && holds(e, t, a, "k005", "v5"));
      CHECK(holds(e, t, a, "k001", "back") && holds(e, t, a, "k003", "thrice"));
      CHECK(holds(e, t, a, "zz", "new") && holds(e, t, a, "new", NULL));
      CHECK(count(e, t, a) == 300 - 75 + 1);
      CHECK(count(e, t, b) == 1 && holds(e, t, b, "after-clear", "y"));
      c = table(e, t, "undo-created", 0);
      CHECK(holds(e, t, c, "in", "created"));
      CHECK(log_last(e, t) == last0 + 4);
      e->ops->txn_abort(t);
    }
  }
  free(a0);
  free(b0);
  free(log0);
}

/* A cursor goes on correctly after a put to the key it is on, or to a key
 * ahead of it, in its own transaction. */
static void test_cursor_put(env *e) {
  flume__txn *t = begin(e, FLUME__TXN_WRITE);
  flume__table tbl = table(e, t, "cursor-put", 1);
  for (int i = 0; i < 10; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    put(e, t, tbl, k, "v");
  }
  flume__cursor *c;
  CHECK_OK(e->ops->cursor_open(t, tbl, &c));
  flume__slice k = str("k3"), v;
  CHECK_OK(e->ops->cursor_get(c, FLUME__SET, &k, &v));
  put(e, t, tbl, "k3", "a longer value than the one before");
  CHECK_OK(e->ops->cursor_get(c, FLUME__NEXT, &k, &v));
  CHECK(slice_is(k, str("k4")));
  put(e, t, tbl, "k4", "w");
  put(e, t, tbl, "k4a", "ahead");
  CHECK_OK(e->ops->cursor_get(c, FLUME__NEXT, &k, &v));
  CHECK(slice_is(k, str("k4a")) && slice_is(v, str("ahead")));
  CHECK_OK(e->ops->cursor_get(c, FLUME__PREV, &k, &v));
  CHECK(slice_is(k, str("k4")) && slice_is(v, str("w")));
  e->ops->cursor_close(c);
  CHECK_OK(e->ops->txn_commit(t));
}

/* Many random keys, with many shared prefixes and repeats. */

typedef struct rkey {
  uint8_t k[12]; /* key bytes */
  uint8_t n;     /* key length, 1..12 */
  uint32_t i;    /* insertion index: the value of the last put wins */
} rkey;

static int rkey_cmp(const void *pa, const void *pb) {
  const rkey *a = pa, *b = pb;
  int c = memcmp(a->k, b->k, a->n < b->n ? a->n : b->n);
  if (c == 0) c = (a->n > b->n) - (a->n < b->n);
  if (c == 0) c = (a->i > b->i) - (a->i < b->i);
  return c;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void random_key(rkey *r, uint32_t i) {
  static const uint8_t alphabet[] = {0x00, 0x01, 'a', 'b', 0xfe, 0xff};
  r->n = (uint8_t)(1 + rng() % 12);
  for (int j = 0; j < r->n; j++) r->k[j] = alphabet[rng() % 6];
  r->i = i;
}

static void test_many(env *e, size_t n) {
  rkey *keys = malloc(n * sizeof *keys);
  CHECK(keys != NULL);
  flume__txn *t = begin(e, FLUME__TXN_WRITE);
  flume__table tbl = table(e, t, "many", 1);
  for (uint32_t i = 0; i < n; i++) {
    random_key(&keys[i], i);
    CHECK_OK(e->ops->put(t, tbl, bin(keys[i].k, keys[i].n), bin(&i, 4)));
  }
  CHECK_OK(e->ops->txn_commit(t));

  /* Sorted, each key's last put only. */
  qsort(keys, n, sizeof *keys, rkey_cmp);
  size_t u = 0;
  for (size_t i = 0; i < n; i++) {
    if (i + 1 < n && keys[i + 1].n == keys[i].n &&
        memcmp(keys[i + 1].k, keys[i].k, keys[i].n) == 0)
      continue;
    keys[u++] = keys[i];
  }

  t = begin(e, FLUME__TXN_READ);
  CHECK(count(e, t, tbl) == u);
  flume__cursor *c;
  flume__slice k, v;
  CHECK_OK(e->ops->cursor_open(t, tbl, &c));
  for (size_t i = 0; i < u; i++) {
    CHECK_OK(e->ops->cursor_get(c, i ? FLUME__NEXT : FLUME__FIRST, &k, &v));
    CHECK(slice_is(k, bin(keys[i].k, keys[i].n)));
    CHECK(slice_is(v, bin(&keys[i].i, 4)));
  }
  CHECK_ERR(e->ops->cursor_get(c, FLUME__NEXT, &k, &v), FLUME_ENOTFOUND);
  for (size_t i = u; i-- > 0;) {
    CHECK_OK(
        e->ops->cursor_get(c, i + 1 < u ? FLUME__PREV : FLUME__LAST, &k, &v));
    CHECK(slice_is(k, bin(keys[i].k, keys[i].n)));
  }
  CHECK_ERR(e->ops->cursor_get(c, FLUME__PREV, &k, &v), FLUME_ENOTFOUND);
  /* Seeks from random keys, checked against a binary search. */
  for (int probe = 0; probe < 20000; probe++) {
    rkey r;
    random_key(&r, 0);
    size_t lo = 0, hi = u;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (rkey_cmp(&keys[mid], &r) < 0)
        lo = mid + 1;
      else
        hi = mid;
    }
    k = bin(r.k, r.n);
    int rc = e->ops->cursor_get(c, FLUME__SET_RANGE, &k, &v);
    if (lo == u) {
      CHECK_ERR(rc, FLUME_ENOTFOUND);
      continue;
    }
    CHECK_OK(rc);
    CHECK(slice_is(k, bin(keys[lo].k, keys[lo].n)));
    if (lo + 1 < u) {
      CHECK_OK(e->ops->cursor_get(c, FLUME__NEXT, &k, &v));
      CHECK(slice_is(k, bin(keys[lo + 1].k, keys[lo + 1].n)));
    }
  }
  e->ops->cursor_close(c);
  e->ops->txn_abort(t);

  /* Delete every other key, then walk what is left. */
  t = begin(e, FLUME__TXN_WRITE);
  for (size_t i = 0; i < u; i += 2)
    CHECK_OK(e->ops->del(t, tbl, bin(keys[i].k, keys[i].n)));
  CHECK_OK(e->ops->txn_commit(t));
  t = begin(e, FLUME__TXN_READ);
  CHECK(count(e, t, tbl) == u / 2);
  CHECK_OK(e->ops->cursor_open(t, tbl, &c));
  for (size_t i = 1; i < u; i += 2) {
    CHECK_OK(e->ops->cursor_get(c, FLUME__NEXT, &k, &v));
    CHECK(slice_is(k, bin(keys[i].k, keys[i].n)));
  }
  CHECK_ERR(e->ops->cursor_get(c, FLUME__NEXT, &k, &v), FLUME_ENOTFOUND);
  e->ops->cursor_close(c);
  e->ops->txn_abort(t);
#ifdef FLUME_TEST_HOOKS
  if (e->ops == &flume__store_memory) CHECK(flume__test_memory_check(e->s) == 0);
#endif
  free(keys);
}

/* 256 named tables, no more. */
static void test_limit(const flume__store_ops *ops) {
  env e;
  env_open(&e, ops);
  flume__txn *t = begin(&e, FLUME__TXN_WRITE);
  flume__table tbl;
  int made = 0, rc;
  char name[32];
  do {
    snprintf(name, sizeof name, "t%d", made);
    rc = ops->table_open(t, name, 1, &tbl);
  } while (rc == 0 && ++made < 1000);
  CHECK_ERR(rc, FLUME_ELIMIT);
  CHECK(made == 256);
  ops->txn_abort(t);
  env_close(&e);
}

/* A durable backend keeps everything across close and open. */
static void test_reopen(env *e) {
  flume__txn *t = begin(e, FLUME__TXN_READ);
  flume__table tbl = table(e, t, "basic", 0);
  char *before = dump(e, t, tbl);
  char *log = dump(e, t, FLUME__TABLE_LOG);
  e->ops->txn_abort(t);
  e->ops->close(e->s);
  flume__store_opts opts = {0};
  CHECK_OK(e->ops->open(e->dir, &opts, &e->s));
  /* Opened in a read transaction that then ends with abort, as reads do.
   * store.h only promises a handle from a commit, so open it again: that
   * must give a working handle. */
  t = begin(e, FLUME__TXN_READ);
  tbl = table(e, t, "basic", 0);
  CHECK(same_dump(e, t, tbl, before));
  e->ops->txn_abort(t);
  t = begin(e, FLUME__TXN_READ);
  tbl = table(e, t, "basic", 0);
  CHECK(same_dump(e, t, tbl, before));
  CHECK(same_dump(e, t, FLUME__TABLE_LOG, log));
  e->ops->txn_abort(t);
  free(before);
  free(log);
}

#ifdef FLUME_TEST_HOOKS
/* Memory extras: what store.h leaves open, as the memory backend does it. */

/* A delete under a cursor, and readers beside the writer: they see the
 * live data, and nothing they hold dangles when the writer ends. */
static void test_memory_live(env *e) {
  flume__txn *w = begin(e, FLUME__TXN_WRITE);
  flume__table tbl = table(e, w, "live", 1);
  for (char k[2] = "a"; k[0] <= 'j'; k[0]++) put(e, w, tbl, k, k);
  flume__cursor *c;
  CHECK_OK(e->ops->cursor_open(w, tbl, &c));
  flume__slice k = str("c"), v;
  CHECK_OK(e->ops->cursor_get(c, FLUME__SET, &k, &v));
  CHECK_OK(e->ops->del(w, tbl, str("c")));
  CHECK_OK(e->ops->cursor_get(c, FLUME__NEXT, &k, &v));
  CHECK(slice_is(k, str("d")));
  CHECK_OK(e->ops->del(w, tbl, str("d")));
  CHECK_OK(e->ops->cursor_get(c, FLUME__PREV, &k, &v));
  CHECK(slice_is(k, str("b")));
  CHECK_OK(e->ops->table_clear(w, tbl));
  CHECK_ERR(e->ops->cursor_get(c, FLUME__NEXT, &k, &v), FLUME_ENOTFOUND);
  e->ops->cursor_close(c);
  CHECK_OK(e->ops->txn_commit(w));

  w = begin(e, FLUME__TXN_WRITE);
  for (char key[2] = "a"; key[0] <= 'j'; key[0]++) put(e, w, tbl, key, key);
  flume__txn *r = begin(e, FLUME__TXN_READ);
  CHECK(holds(e, r, tbl, "a", "a")); /* uncommitted, but live */
  flume__slice held;
  CHECK_OK(e->ops->get(r, tbl, str("e"), &held));
  CHECK_OK(e->ops->cursor_open(r, tbl, &c));
  k = str("e");
  CHECK_OK(e->ops->cursor_get(c, FLUME__SET, &k, &v));
  CHECK_OK(e->ops->del(w, tbl, str("e")));
  put(e, w, tbl, "f", "F");
  CHECK_OK(e->ops->txn_commit(w));
  CHECK(slice_is(held, str("e")) && slice_is(k, str("e")));
  CHECK_OK(e->ops->cursor_get(c, FLUME__NEXT, &k, &v));
  CHECK(slice_is(k, str("f")) && slice_is(v, str("F")));

  w = begin(e, FLUME__TXN_WRITE);
  flume__txn *second;
  CHECK_ERR(e->ops->txn_begin(e->s, FLUME__TXN_WRITE, &second), FLUME_EBUSY);
  put(e, w, tbl, "g", "G");
  put(e, w, tbl, "ga", "GA");
  CHECK_OK(e->ops->cursor_get(c, FLUME__NEXT, &k, &v));
  CHECK(slice_is(k, str("g")) && slice_is(v, str("G")));
  CHECK_OK(e->ops->cursor_get(c, FLUME__NEXT, &k, &v));
  CHECK(slice_is(k, str("ga")));
  e->ops->txn_abort(w);
  CHECK(slice_is(k, str("ga")) && slice_is(v, str("GA")));
  CHECK_OK(e->ops->cursor_get(c, FLUME__NEXT, &k, &v));
  CHECK(slice_is(k, str("h")));
  e->ops->cursor_close(c);
  e->ops->txn_abort(r);
  CHECK(flume__test_memory_check(e->s) == 0);
}

/* Runs `call` with the allocation-failure hook disarmed, so the test's own
 * use of the store (dumps, checks) neither trips it nor uses it up. */
#define UNHOOKED(call)                                                         \
  do {                                                                         \
    long armed_ = flume__test_memory_fail_after;                                    \
    flume__test_memory_fail_after = -1;                                             \
    call;                                                                      \
    flume__test_memory_fail_after = armed_;                                         \
  } while (0)

/* One write transaction's worth of every kind of change. Each step that
 * fails for want of memory must have changed nothing; it is then retried
 * (the hook fires once). Appends at seq and seq + 1. */
static void enomem_steps(env *e, flume__txn *t, flume__table a, int64_t seq) {
  for (int step = 0; step < 12; step++) {
    int rc;
    flume__table tbl;
    flume__cursor *c;
    char *before;
    UNHOOKED(before = dump(e, t, a));
    do {
      switch (step % 6) {
      case 0: /* a replace, then (after the clear) an insert */
        rc = e->ops->put(t, a, str(step < 6 ? "k001" : "k003"), str("new"));
        break;
      case 1:
        rc = e->ops->put(t, a, str("fresh"), str("x"));
        break;
      case 2: /* a committed entry, then one from this transaction */
        rc = e->ops->del(t, a, str(step < 6 ? "k050" : "fresh"));
        break;
      case 3:
        rc = e->ops->log_append(t, seq, str("x"));
        if (rc == 0) seq++;
        break;
      case 4:
        rc = e->ops->table_open(t, step < 6 ? "made" : "made2", 1, &tbl);
        break;
      default:
        rc = e->ops->cursor_open(t, a, &c);
        if (rc == 0) e->ops->cursor_close(c);
        if (rc == 0) rc = e->ops->table_clear(t, a);
        break;
      }
      if (rc == FLUME_ENOMEM) {
        UNHOOKED(CHECK(same_dump(e, t, a, before)));
        CHECK(flume__test_memory_check(e->s) == 0);
      }
    } while (rc == FLUME_ENOMEM);
    CHECK_OK(rc);
    free(before);
  }
}

static void fill_enomem(env *e, flume__table a) {
  flume__txn *t = begin(e, FLUME__TXN_WRITE);
  CHECK_OK(e->ops->table_clear(t, a));
  /* Enough entries that the undo log has to grow during the steps. */
  for (int i = 0; i < 63; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%03d", i);
    put(e, t, a, k, "v");
  }
  CHECK_OK(e->ops->txn_commit(t));
}

static void test_memory_enomem(env *e) {
  flume__txn *t = begin(e, FLUME__TXN_WRITE);
  flume__table a = table(e, t, "enomem", 1);
  CHECK_OK(e->ops->txn_commit(t));
  fill_enomem(e, a);
  t = begin(e, FLUME__TXN_READ);
  char *base = dump(e, t, a), *want = NULL;
  int64_t seq = log_last(e, t) + 1; /* where the next run appends */
  e->ops->txn_abort(t);

  /* after = -1 is the run without failures, which gives `want`; then a
   * failure at every allocation in turn, until none is left to fail. */
  for (long after = -1;; after++) {
    int fired = 0;
    for (int commit = 0; commit < 2; commit++) {
      flume__test_memory_fail_after = after;
      int rc = e->ops->txn_begin(e->s, FLUME__TXN_WRITE, &t);
      if (rc == 0) {
        enomem_steps(e, t, a, seq);
        if (commit)
          rc = e->ops->txn_commit(t);
        else
          e->ops->txn_abort(t);
      }
      fired = flume__test_memory_fail_after < 0;
      flume__test_memory_fail_after = -1;
      if (rc == FLUME_ENOMEM) continue; /* txn_begin itself failed */
      CHECK_OK(rc);
      CHECK(flume__test_memory_check(e->s) == 0);
      t = begin(e, FLUME__TXN_READ);
      if (!commit) {
        CHECK(same_dump(e, t, a, base) && log_last(e, t) == seq - 1);
        e->ops->txn_abort(t);
        continue;
      }
      if (want == NULL) want = dump(e, t, a);
      CHECK(same_dump(e, t, a, want) && log_last(e, t) == seq + 1);
      e->ops->txn_abort(t);
      seq += 2; /* the log cannot be rewound: later runs go on after it */
      fill_enomem(e, a);
    }
    if (after >= 0 && !fired) break; /* the hook outlasted the whole run */
  }
  free(base);
  free(want);
}
#endif

static void run_suite(const flume__store_ops *ops) {
  env e;
  clock_t t0 = clock();
  printf("%s: ", ops->name);
  fflush(stdout);
#define STEP(call)                                                             \
  do {                                                                         \
    printf("%s ", #call);                                                      \
    fflush(stdout);                                                            \
    call;                                                                      \
  } while (0)
  STEP(test_limit(ops));
  env_open(&e, ops);
  STEP(test_log(&e));
  STEP(test_tables(&e));
  STEP(test_order(&e));
  STEP(test_abort_commit(&e));
  STEP(test_cursor_put(&e));
  STEP(test_many(&e, 200000));
#ifdef FLUME_TEST_HOOKS
  if (ops == &flume__store_memory) {
    STEP(test_memory_live(&e));
    STEP(test_memory_enomem(&e));
  }
#endif
  if (e.dir[0]) STEP(test_reopen(&e));
  env_close(&e);
#undef STEP
  printf("ok (%.2f s)\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
}

/* Benchmark. */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* n inserts in one transaction, n seeks, one scan; keys random or, with
 * `ordered`, increasing (big-endian counters, as time-keyed indexes make). */
static void bench(const flume__store_ops *ops, size_t n, int ordered) {
  env e;
  env_open(&e, ops);
  uint64_t *keys = malloc(n * sizeof *keys);
  CHECK(keys != NULL);
  for (size_t i = 0; i < n; i++)
    keys[i] = ordered ? __builtin_bswap64((uint64_t)i) : rng();
  double t0 = now();
  flume__txn *t = begin(&e, FLUME__TXN_WRITE);
  flume__table tbl = table(&e, t, "bench", 1);
  for (size_t i = 0; i < n; i++)
    CHECK_OK(ops->put(t, tbl, bin(&keys[i], 8), bin(&i, 8)));
  CHECK_OK(ops->txn_commit(t));
  double t1 = now();
  t = begin(&e, FLUME__TXN_READ);
  flume__cursor *c;
  CHECK_OK(ops->cursor_open(t, tbl, &c));
  flume__slice k, v;
  for (size_t i = 0; i < n; i++) {
    k = bin(&keys[rng() % n], 8);
    CHECK_OK(ops->cursor_get(c, FLUME__SET_RANGE, &k, &v));
  }
  double t2 = now();
  size_t seen = 0;
  for (int op = FLUME__FIRST; ops->cursor_get(c, op, &k, &v) == 0;
       op = FLUME__NEXT)
    seen++;
  double t3 = now();
  CHECK(seen <= n);
  ops->cursor_close(c);
  ops->txn_abort(t);
  printf("%-6s %zu %s 8-byte keys: insert %.2f M/s, seek %.2f M/s, "
         "scan %.1f M/s\n",
         ops->name, n, ordered ? "ordered" : "random", n / (t1 - t0) / 1e6,
         n / (t2 - t1) / 1e6, seen / (t3 - t2) / 1e6);
  free(keys);
  env_close(&e);
}

/* LMDB extras: what only the durable backend does (log/lmdb.c): seals,
 * the checks at open, stale readers, a full disk. */

/* CRC32C: the standard check value, the table, the instruction and its
 * three streams agree at every length up to 40 and at lengths across the
 * three-stream sizes (144 bytes to past two rounds of full 256-byte blocks),
 * at every alignment, and a checksum continues piece by piece. */
static void test_crc32c(void) {
  pthread_once(&crc32c_once, crc32c_init);
  CHECK(crc32c_update(0, "123456789", 9) == 0xe3069283u);
  CHECK(crc32c_update(0, "", 0) == 0);
  unsigned char buf[2100];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof buf; i++) {
    x = x * 1103515245u + 12345u;
    buf[i] = (unsigned char)(x >> 16);
  }
  for (size_t off = 0; off < 8; off++)
    for (size_t n = 0; n + off <= sizeof buf;
         n += n < 40 ? 1 : n < 200 ? 5 : 97) {
      uint32_t soft = ~crc32c_soft(~0u, buf + off, n);
#ifdef CRC32C_HAVE_HARD
      if (__builtin_cpu_supports("sse4.2"))
        CHECK(~crc32c_hard(~0u, buf + off, n) == soft);
      if (__builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul"))
        CHECK(~crc32c_hard3(~0u, buf + off, n) == soft);
#endif
      CHECK(crc32c_update(0, buf + off, n) == soft);
      size_t half = n / 3;
      CHECK(crc32c_update(crc32c_update(0, buf + off, half), buf + off + half,
                          n - half) == soft);
    }
}

/* An LMDB environment written directly, as another program (or an older
 * flume) would: `names` are its named tables (NULL-ended), each holding
 * `key` -> `val` stored bare when key is given. */
static void raw_env(const char *dir, const char *const *names,
                    const char *key, const char *val) {
  MDB_env *menv;
  MDB_txn *txn;
  CHECK(mdb_env_create(&menv) == 0);
  CHECK(mdb_env_set_maxdbs(menv, 8) == 0);
  CHECK(mdb_env_open(menv, dir, 0, 0644) == 0);
  CHECK(mdb_txn_begin(menv, NULL, 0, &txn) == 0);
  for (; names && *names; names++) {
    MDB_dbi dbi;
    unsigned flags = strcmp(*names, "log") == 0 ? MDB_INTEGERKEY : 0;
    CHECK(mdb_dbi_open(txn, *names, MDB_CREATE | flags, &dbi) == 0);
    if (key && !flags) {
      MDB_val k = {strlen(key), (void *)key}, v = {strlen(val), (void *)val};
      CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0);
    }
  }
  CHECK(mdb_txn_commit(txn) == 0);
  mdb_env_close(menv);
}

/* Opening dir fails with want, and the detail holds `says`. */
static void refused(const char *dir, int want, const char *says) {
  flume__store *s;
  flume__store_opts opts = {0};
  char detail[512];
  CHECK_ERR(flume__store_lmdb.open(dir, &opts, &s), want);
  CHECK(flume__store_detail(detail, sizeof detail) == 1);
  if (strstr(detail, says) == NULL) {
    fprintf(stderr, "detail \"%s\" does not say \"%s\"\n", detail, says);
    exit(1);
  }
  CHECK(flume__store_detail(detail, sizeof detail) == 0); /* taken */
}

static off_t size_of(const char *dir) {
  char file[4200];
  struct stat st;
  snprintf(file, sizeof file, "%s/data.mdb", dir);
  return stat(file, &st) == 0 ? st.st_size : -1;
}

/* Folders that are not a flume database (any more) are refused, as they
 * are: never opened as a new, empty database. */
static void test_lmdb_refuses(void) {
  char dir[4096], file[4200];
  temp_dir(dir, sizeof dir, "refuse");
  /* a 0-byte data.mdb: a copy cut at its start */
  snprintf(file, sizeof file, "%s/data.mdb", dir);
  FILE *f = fopen(file, "w");
  CHECK(f != NULL);
  fclose(f);
  refused(dir, FLUME_ECORRUPT, "is empty (0 bytes)");
  CHECK(size_of(dir) == 0);
  remove_dir(dir);

  /* another program's LMDB environment */
  temp_dir(dir, sizeof dir, "refuse");
  static const char *const users[] = {"users", NULL};
  raw_env(dir, users, "alice", "1");
  off_t before = size_of(dir);
  refused(dir, FLUME_ECORRUPT, "not a flume database");
  CHECK(size_of(dir) == before);
  remove_dir(dir);

  /* flume's table names, but its own entries: not sealed */
  temp_dir(dir, sizeof dir, "refuse");
  static const char *const ours[] = {"log", "t:meta", NULL};
  raw_env(dir, ours, "format", "zz");
  refused(dir, FLUME_ECORRUPT, "metadata entry 'format'");
  remove_dir(dir);

  /* an older flume's database (format 1: entries stored bare) */
  temp_dir(dir, sizeof dir, "refuse");
  raw_env(dir, ours, "format", "1");
  refused(dir, FLUME_EFORMAT, "older flume (format 1");
  remove_dir(dir);

  /* an environment with nothing in it: a creation cut short; ours */
  temp_dir(dir, sizeof dir, "refuse");
  raw_env(dir, NULL, NULL, NULL);
  flume__store *s;
  flume__store_opts opts = {0};
  CHECK_OK(flume__store_lmdb.open(dir, &opts, &s));
  flume__store_lmdb.close(s);
  remove_dir(dir);
}

/* A value changed behind the store's back is ECORRUPT naming its place,
 * in a get and in a cursor; a damaged key is caught too. */
static void test_lmdb_seals(void) {
  env e;
  env_open(&e, &flume__store_lmdb);
  flume__txn *t = begin(&e, FLUME__TXN_WRITE);
  flume__table tbl = table(&e, t, "v:counts", 1);
  put(&e, t, tbl, "k", "100 EUR");
  CHECK_OK(e.ops->log_append(t, 0, str("100 EUR")));
  CHECK_OK(e.ops->log_append(t, 1, str("200 EUR")));
  CHECK_OK(e.ops->txn_commit(t));
  e.ops->close(e.s);
  /* flip one bit of each value, in place, through LMDB */
  MDB_env *menv;
  MDB_txn *txn;
  MDB_dbi log, counts;
  CHECK(mdb_env_create(&menv) == 0);
  CHECK(mdb_env_set_maxdbs(menv, 8) == 0);
  CHECK(mdb_env_open(menv, e.dir, 0, 0644) == 0);
  CHECK(mdb_txn_begin(menv, NULL, 0, &txn) == 0);
  CHECK(mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &log) == 0);
  CHECK(mdb_dbi_open(txn, "t:v:counts", 0, &counts) == 0);
  size_t seq = 1;
  MDB_val k = {sizeof seq, &seq}, v;
  char copy[64];
  CHECK(mdb_get(txn, log, &k, &v) == 0 && v.mv_size < sizeof copy);
  memcpy(copy, v.mv_data, v.mv_size);
  copy[0] ^= 8; /* "200 EUR" reads ":00 EUR" */
  v.mv_data = copy;
  CHECK(mdb_put(txn, log, &k, &v, 0) == 0);
  k = (MDB_val){1, "k"};
  CHECK(mdb_get(txn, counts, &k, &v) == 0 && v.mv_size < sizeof copy);
  memcpy(copy, v.mv_data, v.mv_size);
  copy[0] ^= 8;
  v.mv_data = copy;
  CHECK(mdb_put(txn, counts, &k, &v, 0) == 0);
  CHECK(mdb_txn_commit(txn) == 0);
  mdb_env_close(menv);

  flume__store_opts opts = {0};
  char detail[512];
  CHECK_OK(e.ops->open(e.dir, &opts, &e.s));
  t = begin(&e, FLUME__TXN_READ);
  seq = 0;
  flume__slice got;
  CHECK_OK(e.ops->get(t, FLUME__TABLE_LOG, bin(&seq, 8), &got));
  CHECK(slice_is(got, str("100 EUR")));
  seq = 1;
  CHECK_ERR(e.ops->get(t, FLUME__TABLE_LOG, bin(&seq, 8), &got),
            FLUME_ECORRUPT);
  CHECK(flume__store_detail(detail, sizeof detail));
  CHECK(strstr(detail, "seq 1 in ") && strstr(detail, "/data.mdb"));
  flume__cursor *c;
  CHECK_OK(e.ops->cursor_open(t, FLUME__TABLE_LOG, &c));
  flume__slice ck = {NULL, 0}, cv;
  CHECK_OK(e.ops->cursor_get(c, FLUME__FIRST, &ck, &cv));
  CHECK_ERR(e.ops->cursor_get(c, FLUME__NEXT, &ck, &cv), FLUME_ECORRUPT);
  e.ops->cursor_close(c);
  tbl = table(&e, t, "v:counts", 0);
  CHECK_ERR(e.ops->get(t, tbl, str("k"), &got), FLUME_ECORRUPT);
  CHECK(flume__store_detail(detail, sizeof detail));
  CHECK(strstr(detail, "view 'counts' state (key 'k')"));
  e.ops->txn_abort(t);
  env_close(&e);
}

/* A reader killed with kill -9 keeps its slot, and with it the pages of its
 * snapshot: every page a write frees stays unused and the file grows. The
 * store clears such slots (mdb_reader_check) as it writes. */
static void test_lmdb_stale_reader(void) {
  env e;
  env_open(&e, &flume__store_lmdb);
  flume__txn *t = begin(&e, FLUME__TXN_WRITE);
  flume__table tbl = table(&e, t, "state", 1);
  CHECK_OK(e.ops->txn_commit(t));
  int ready[2];
  CHECK(pipe(ready) == 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    /* the reader: opens the folder as the command line does, begins a
     * read, and is killed in the middle of it */
    flume__store *rs;
    flume__txn *rt;
    flume__store_opts ro = {.readonly = 1};
    if (flume__store_lmdb.open(e.dir, &ro, &rs) != 0 ||
        flume__store_lmdb.txn_begin(rs, FLUME__TXN_READ, &rt) != 0)
      _exit(1);
    if (write(ready[1], "r", 1) != 1) _exit(1);
    for (;;) pause();
  }
  char r;
  CHECK(read(ready[0], &r, 1) == 1);
  kill(pid, SIGKILL);
  int status;
  CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
  close(ready[0]);
  close(ready[1]);
  static char big[100000];
  for (int i = 0; i < 200; i++) {
    memset(big, 'a' + i % 26, sizeof big);
    t = begin(&e, FLUME__TXN_WRITE);
    CHECK_OK(e.ops->put(t, tbl, str("big"), bin(big, sizeof big)));
    CHECK_OK(e.ops->txn_commit(t));
  }
  /* 200 versions of 100 kB pinned would be 20 MB; freed pages reused
   * once the slot is cleared keep it to a few */
  off_t size = size_of(e.dir);
  if (size > 8 << 20) {
    fprintf(stderr, "data.mdb grew to %lld bytes\n", (long long)size);
    exit(1);
  }
  env_close(&e);
}

/* A full disk is FLUME_ENOSPC, not EIO; what was committed stays, and the
 * store writes again once there is room. On a 1 MiB tmpfs, when this runs
 * as root (mount); skipped otherwise. */
static char mounted[4096]; /* the tmpfs to unmount if a check fails */

static void unmount_at_exit(void) {
  char cmd[4200];
  if (mounted[0] == '\0') return;
  snprintf(cmd, sizeof cmd, "umount -l '%s'", mounted);
  if (system(cmd) != 0) fprintf(stderr, "cannot unmount %s\n", mounted);
}

static void test_lmdb_full_disk(void) {
  char dir[4096], cmd[4400], ballast[4200];
  temp_dir(dir, sizeof dir, "full");
  snprintf(cmd, sizeof cmd,
           "mount -t tmpfs -o size=1m flume-test '%s' 2>/dev/null", dir);
  if (geteuid() != 0 || system(cmd) != 0) {
    printf("(full disk: skipped, cannot mount a tmpfs) ");
    remove_dir(dir);
    return;
  }
  snprintf(mounted, sizeof mounted, "%s", dir);
  atexit(unmount_at_exit);
  /* room to free later */
  snprintf(ballast, sizeof ballast, "%s/ballast", dir);
  FILE *f = fopen(ballast, "w");
  CHECK(f != NULL);
  static char chunk[300000];
  memset(chunk, 'b', sizeof chunk);
  CHECK(fwrite(chunk, 1, sizeof chunk, f) == sizeof chunk);
  fclose(f);
  char db[4200];
  snprintf(db, sizeof db, "%s/db", dir);
  flume__store *s;
  flume__store_opts opts = {.sync = 1};
  CHECK_OK(flume__store_lmdb.open(db, &opts, &s));
  const flume__store_ops *ops = &flume__store_lmdb;
  int64_t seq = 0;
  int rc = 0;
  static char val[50000];
  while (rc == 0 && seq < 1000) {
    memset(val, 'a' + seq % 26, sizeof val);
    flume__txn *t;
    CHECK_OK(ops->txn_begin(s, FLUME__TXN_WRITE, &t));
    CHECK_OK(ops->log_append(t, seq, bin(val, sizeof val)));
    rc = ops->txn_commit(t);
    if (rc == 0) seq++;
  }
  CHECK_ERR(rc, FLUME_ENOSPC);
  CHECK(seq > 0);
  /* everything committed reads back */
  flume__txn *t;
  CHECK_OK(ops->txn_begin(s, FLUME__TXN_READ, &t));
  int64_t last;
  CHECK_OK(ops->log_last(t, &last));
  CHECK(last == seq - 1);
  for (int64_t i = 0; i < seq; i++) {
    uint64_t k = (uint64_t)i;
    flume__slice v;
    CHECK_OK(ops->get(t, FLUME__TABLE_LOG, bin(&k, 8), &v));
    CHECK(v.size == sizeof val && ((const char *)v.data)[0] == 'a' + i % 26);
  }
  ops->txn_abort(t);
  /* room again: the next write goes through */
  CHECK(remove(ballast) == 0);
  memset(val, 'a' + seq % 26, sizeof val);
  CHECK_OK(ops->txn_begin(s, FLUME__TXN_WRITE, &t));
  CHECK_OK(ops->log_append(t, seq, bin(val, sizeof val)));
  CHECK_OK(ops->txn_commit(t));
  ops->close(s);
  snprintf(cmd, sizeof cmd, "umount '%s'", dir);
  CHECK(system(cmd) == 0);
  mounted[0] = '\0';
  remove_dir(dir);
}

static void run_lmdb_extras(void) {
  clock_t t0 = clock();
  printf("lmdb extras: ");
  fflush(stdout);
#define STEP(call)                                                             \
  do {                                                                         \
    printf("%s ", #call);                                                      \
    fflush(stdout);                                                            \
    call;                                                                      \
  } while (0)
  STEP(test_crc32c());
  STEP(test_lmdb_refuses());
  STEP(test_lmdb_seals());
  STEP(test_lmdb_stale_reader());
  STEP(test_lmdb_full_disk());
#undef STEP
  printf("ok (%.2f s)\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
}

int main(int argc, char **argv) {
  static const flume__store_ops *const backends[] = {&flume__store_memory,
                                                     &flume__store_lmdb};
  size_t nb = sizeof backends / sizeof backends[0];
  if (argc > 1 && strcmp(argv[1], "bench") == 0) {
    size_t n = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : 1000000;
    for (int ordered = 0; ordered < 2; ordered++)
      for (size_t i = 0; i < nb; i++) bench(backends[i], n, ordered);
    return 0;
  }
  for (size_t i = 0; i < nb; i++)
    if (argc < 2 || strcmp(argv[1], backends[i]->name) == 0)
      run_suite(backends[i]);
  if (argc < 2 || strcmp(argv[1], "lmdb") == 0) run_lmdb_extras();
  return 0;
}
