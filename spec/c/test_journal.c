/* The journal of a view (runtime/views/journal.c): what it holds after
 * checkpoints are added, truncated, bounded and reset. A live read trusts
 * flume__journal_covers: it must never say yes for a span the records do
 * not hold whole. */
#include <string.h>

#include "check.h"
#include "views/journal.h"

/* Appends an operation as pipeline.c lays it out. */
static void op(flume__buf *b, const char *key, const char *val) {
  uint32_t kl = (uint32_t)strlen(key), vl = (uint32_t)strlen(val);
  unsigned char o = 1;
  CHECK_OK(flume__buf_append(b, &o, 1));
  CHECK_OK(flume__buf_append(b, &kl, 4));
  CHECK_OK(flume__buf_append(b, &vl, 4));
  CHECK_OK(flume__buf_append(b, key, kl));
  CHECK_OK(flume__buf_append(b, val, vl));
}

/* Adds the checkpoint (from, to] with the keys in `keys` (space-separated). */
static void add(flume__journal *j, int64_t from, int64_t to,
                const char *keys) {
  flume__buf b = FLUME__BUF_INIT;
  char copy[256];
  snprintf(copy, sizeof copy, "%s", keys);
  for (char *k = strtok(copy, " "); k; k = strtok(NULL, " "))
    op(&b, k, "value bytes that are not kept");
  flume__journal_add(j, from, to, &b);
  flume__buf_free(&b);
}

/* The keys of the records, in order, space-separated. */
static const char *keys_of(const flume__journal *j) {
  static char out[512];
  size_t n = 0;
  out[0] = '\0';
  for (const flume__jrec *r = j->head; r; r = r->next) {
    const char *p = r->data;
    for (size_t i = 0; i < r->n; i++) {
      uint32_t len;
      memcpy(&len, p, 4);
      n += (size_t)snprintf(out + n, sizeof out - n, "%s%.*s", n ? " " : "",
                            (int)len, p + 4);
      p += 4 + len;
    }
  }
  return out;
}

static void test_off_until_a_live_read_asks(void) {
  flume__journal j = {0};
  add(&j, -1, 3, "a b");
  CHECK(j.head == NULL && !flume__journal_covers(&j, -1, 3));
  j.on = 1;
  add(&j, 3, 5, "c");
  CHECK(flume__journal_covers(&j, 3, 5));
  CHECK(!flume__journal_covers(&j, 2, 5)); /* (2, 3] was not recorded */
  CHECK(!flume__journal_covers(&j, 3, 6)); /* nor what is to come */
  CHECK(strcmp(keys_of(&j), "c") == 0);
  flume__journal_reset(&j);
  CHECK(j.on && j.head == NULL && !flume__journal_covers(&j, 3, 5));
}

static void test_contiguous_records(void) {
  flume__journal j = {.on = 1};
  add(&j, 10, 12, "a");
  add(&j, 12, 15, "b c");
  add(&j, 15, 16, ""); /* a checkpoint of nothing still moves it on */
  CHECK(flume__journal_covers(&j, 10, 16));
  CHECK(flume__journal_covers(&j, 13, 15)); /* within a record: a superset */
  CHECK(strcmp(keys_of(&j), "a b c") == 0);
  /* A record that does not start where it ends: it starts again. */
  add(&j, 20, 21, "d");
  CHECK(!flume__journal_covers(&j, 15, 21));
  CHECK(flume__journal_covers(&j, 20, 21));
  CHECK(strcmp(keys_of(&j), "d") == 0);
  flume__journal_reset(&j);
}

static void test_truncate(void) {
  flume__journal j = {.on = 1};
  add(&j, 0, 2, "a");
  add(&j, 2, 4, "b");
  add(&j, 4, 6, "c");
  flume__journal_truncate(&j, 4); /* the checkpoint to 6 failed */
  CHECK(flume__journal_covers(&j, 0, 4) && !flume__journal_covers(&j, 0, 6));
  CHECK(strcmp(keys_of(&j), "a b") == 0);
  add(&j, 4, 7, "c2"); /* indexed again, stored this time */
  CHECK(flume__journal_covers(&j, 0, 7));
  CHECK(strcmp(keys_of(&j), "a b c2") == 0);
  /* Within a record (never a checkpoint's since): it ends where the last
   * whole record does, and the next record starts it again. */
  flume__journal_truncate(&j, 5);
  CHECK(!flume__journal_covers(&j, 0, 5) && flume__journal_covers(&j, 0, 4));
  add(&j, 5, 8, "e");
  CHECK(!flume__journal_covers(&j, 4, 8) && flume__journal_covers(&j, 5, 8));
  /* Before all it holds: nothing is left. */
  flume__journal_truncate(&j, 1);
  CHECK(j.head == NULL && !flume__journal_covers(&j, 5, 8));
  flume__journal_reset(&j);
}

static void test_bound(void) {
  flume__journal j = {.on = 1};
  flume__journal_bound(&j, 3 * (sizeof(flume__jrec) + 6));
  add(&j, 0, 1, "k1");
  add(&j, 1, 2, "k2");
  add(&j, 2, 3, "k3");
  CHECK(flume__journal_covers(&j, 0, 3));
  add(&j, 3, 4, "k4"); /* over the bound: the oldest goes */
  CHECK(!flume__journal_covers(&j, 0, 4) && flume__journal_covers(&j, 1, 4));
  CHECK(strcmp(keys_of(&j), "k2 k3 k4") == 0);
  CHECK(j.bytes <= 3 * (sizeof(flume__jrec) + 6));
  /* A record larger than the bound: nothing before its end is held. */
  char big[200];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  add(&j, 4, 5, big);
  CHECK(j.head == NULL && !flume__journal_covers(&j, 4, 5));
  CHECK(flume__journal_covers(&j, 5, 5));
  add(&j, 5, 6, "k6");
  CHECK(flume__journal_covers(&j, 5, 6));
  /* A smaller bound drops what is over it at once. */
  add(&j, 6, 7, "k7");
  flume__journal_bound(&j, sizeof(flume__jrec) + 6);
  CHECK(strcmp(keys_of(&j), "k7") == 0 && flume__journal_covers(&j, 6, 7));
  flume__journal_reset(&j);
  CHECK(j.bytes == 0);
}

int main(void) {
  test_off_until_a_live_read_asks();
  test_contiguous_records();
  test_truncate();
  test_bound();
  return 0;
}
