/*
 * The indexer's read-ahead.
 *
 * Catching up, the loop thread did everything a value needs in turn:
 * walk LMDB's pages to it (the first touch of each page: a page fault and
 * cache misses), check its checksum (every byte), then decode it and run
 * the views. Only the last part needs the Lua state. So while the views
 * run on one slice's values, a thread of its own reads the next slice's
 * out of the log into a buffer (the walk, the checksums and the misses
 * there), and the next slice takes them from the buffer. The log is
 * append-only and what it reads was acknowledged, so the values are the
 * ones a read here would give.
 *
 * One request at a time, for a chunk of up to AHEAD values: when the
 * loop thread takes a chunk it asks for the values after it, up to the
 * since it read, and hands the chunk out over the next few slices. A
 * slice that starts outside the chunk in hand takes the one read ahead
 * if that starts where the slice does (waiting if the thread is still at
 * it); any other (a cut slice, a view reset to 0, the first) reads by
 * itself as before and asks for what follows. A read that failed is not
 * handed over: the slice reads by itself and meets the failure there,
 * with its message.
 */
#include "views/ahead.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"

#ifdef FLUME_TEST_HOOKS
#include <stdatomic.h>
static atomic_long taken;
FLUME_API long flume__test_ahead_taken(void) { return atomic_load(&taken); }
#define TAKEN() atomic_fetch_add(&taken, 1)
#else
#define TAKEN() ((void)0)
#endif

/* Values read ahead: their bytes back to back, value i at off[i]. */
typedef struct chunk {
  int64_t first;    /* the seq of the first */
  size_t n;         /* values */
  int rc;           /* the read's result */
  flume__buf bytes; /* their bytes */
  size_t *off;      /* n + 1 offsets into bytes */
  size_t cap;       /* offsets off has room for */
} chunk;

enum { IDLE, ASKED, READING, READY };

/* Values a request reads: a few slices, so that the two threads meet
 * (a futex each) once every few slices, not every one (one a slice cost
 * the loop thread 8 % of a rebuild in futex calls). And the bytes it
 * stops at, whatever the values' sizes: each of the three chunks holds at
 * most about this much. */
#define AHEAD 1024
#define AHEAD_BYTES ((size_t)4 << 20)
/* collect's answer when a chunk is full (errors are negative). */
#define FULL 1

struct flume__ahead {
  flume_db *db;
  uv_thread_t thread;
  uv_mutex_t lock; /* what follows */
  uv_cond_t wake;  /* the thread: a request, or stop */
  uv_cond_t done;  /* the loop thread: a request read */
  int stop;
  int state;                /* IDLE, ASKED, READING, READY */
  int64_t from, to;         /* the request (AHEAD values at most) */
  chunk got;                /* READY: what the request read */
  chunk work;               /* the thread's, while READING */
  chunk mine;               /* the loop thread's, being handed out */
};

static int collect(void *p, int64_t seq, const void *data, size_t len) {
  chunk *c = p;
  (void)seq; /* the log is dense: value i is at first + i */
  if (c->n + 2 > c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 512;
    size_t *off = realloc(c->off, cap * sizeof *off);
    if (off == NULL) return FLUME_ENOMEM;
    c->off = off;
    c->cap = cap;
  }
  c->off[c->n] = c->bytes.len;
  if (len && flume__buf_append(&c->bytes, data, len)) return FLUME_ENOMEM;
  c->n++;
  c->off[c->n] = c->bytes.len;
  return c->bytes.len >= AHEAD_BYTES ? FULL : 0;
}

static void chunk_free(chunk *c) {
  flume__buf_free(&c->bytes);
  free(c->off);
}

static void swap(chunk *a, chunk *b) {
  chunk t = *a;
  *a = *b;
  *b = t;
}

static void ahead_main(void *arg) {
  flume__ahead *a = arg;
  uv_mutex_lock(&a->lock);
  for (;;) {
    while (!a->stop && a->state != ASKED) uv_cond_wait(&a->wake, &a->lock);
    if (a->stop) break;
    int64_t from = a->from, to = a->to;
    size_t count;
    a->state = READING;
    uv_mutex_unlock(&a->lock);
    chunk *c = &a->work;
    c->n = 0;
    c->bytes.len = 0;
    c->first = from;
    c->rc = flume__db_read_ahead(a->db, from, to, AHEAD, collect, c, &count);
    if (c->rc == FULL) c->rc = 0;
    uv_mutex_lock(&a->lock);
    swap(&a->work, &a->got);
    a->state = READY;
    uv_cond_signal(&a->done);
  }
  uv_mutex_unlock(&a->lock);
}

flume__ahead *flume__ahead_new(flume_db *db) {
  if (!flume__db_can_read_ahead(db)) return NULL;
  flume__ahead *a = calloc(1, sizeof *a);
  if (a == NULL) return NULL;
  a->db = db;
  if (uv_mutex_init(&a->lock)) goto no_lock;
  if (uv_cond_init(&a->wake)) goto no_wake;
  if (uv_cond_init(&a->done)) goto no_done;
  if (flume__thread_start(&a->thread, ahead_main, a) == 0) return a;
  uv_cond_destroy(&a->done);
no_done:
  uv_cond_destroy(&a->wake);
no_wake:
  uv_mutex_destroy(&a->lock);
no_lock:
  free(a);
  return NULL;
}

void flume__ahead_free(flume__ahead *a) {
  if (a == NULL) return;
  uv_mutex_lock(&a->lock);
  a->stop = 1;
  uv_cond_signal(&a->wake);
  uv_mutex_unlock(&a->lock);
  uv_thread_join(&a->thread);
  uv_cond_destroy(&a->done);
  uv_cond_destroy(&a->wake);
  uv_mutex_destroy(&a->lock);
  chunk_free(&a->got);
  chunk_free(&a->work);
  chunk_free(&a->mine);
  free(a);
}

/* Asks the thread for up to AHEAD values from `from` to `to`, unless it
 * is reading. Under the lock. */
static void ask(flume__ahead *a, int64_t from, int64_t to) {
  if (a->state == READING || from > to) return;
  a->from = from;
  a->to = to;
  a->state = ASKED;
  uv_cond_signal(&a->wake);
}

int flume__ahead_read(flume__ahead *a, int64_t from, int64_t to, size_t max,
                      flume__visit_fn fn, void *ctx, size_t *count) {
  *count = 0;
  /* Closing: flume__db_read refuses, as it would without a read-ahead. */
  if (flume__db_reads_closed(a->db))
    return flume__db_read(a->db, from, to, max, fn, ctx, count);
  chunk *c = &a->mine;
  int rc = 0;
  if (c->n == 0 || from < c->first || from >= c->first + (int64_t)c->n) {
    /* Not in hand: what the thread read, if it starts there. */
    int took = 0;
    uv_mutex_lock(&a->lock);
    if (a->from == from && (a->state == ASKED || a->state == READING))
      while (a->state != READY) uv_cond_wait(&a->done, &a->lock);
    if (a->state == READY) {
      took = a->got.first == from && a->got.rc == 0 && a->got.n > 0;
      if (took) {
        swap(&a->got, &a->mine);
        TAKEN();
      }
      a->state = IDLE;
    }
    if (!took) c->n = 0;
    /* The next values are read while these are handed out. */
    ask(a, took ? c->first + (int64_t)c->n : from + (int64_t)max, to);
    uv_mutex_unlock(&a->lock);
    if (!took) return flume__db_read(a->db, from, to, max, fn, ctx, count);
  }
  const char *base = c->bytes.data ? c->bytes.data : "";
  size_t i = (size_t)(from - c->first), end = c->n;
  if (end - i > max) end = i + max;
  if ((uint64_t)(to - from) + 1 < end - i) end = i + (size_t)(to - from) + 1;
  for (; i < end && rc == 0; i++) {
    rc = fn(ctx, c->first + (int64_t)i, base + c->off[i],
            c->off[i + 1] - c->off[i]);
    if (rc == 0) ++*count;
  }
  return rc;
}
