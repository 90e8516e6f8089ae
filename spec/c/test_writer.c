/* The writer thread beside a busy loop thread: single appends (runs) and
 * whole jobs made while the loop does not run are committed meanwhile, and
 * when the loop runs again every callback comes once, in the order of the
 * calls, with the seqs the values were stored at; a failed commit fails
 * exactly its values; the log reads back what was appended, also after a
 * reopen; the writer thread takes no signal. Run under ASan and
 * ThreadSanitizer too (the queue is shared).
 * A random seed (printed; FLUME_SEED replays it) mixes the kinds of calls. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "internal.h"
#include "tmpdir.h"

#define CALLS 60000

typedef struct call {
  int64_t seq;    /* the seq its callback gave (a batch: its last) */
  int status;     /* the status its callback gave */
  int calls;      /* callbacks: exactly one */
  size_t n;       /* values it appended */
} call;

static call calls[CALLS];
static size_t ncalls;
static int64_t next_expected; /* the seq the next successful value gets */
static int order_ok = 1;      /* callbacks came in the calls' order */
static size_t last_done;      /* the last call heard of, + 1 */

static uint64_t rng;
static uint32_t rnd(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

/* The value of call i, value j: its text says where it belongs, padded
 * to a length that varies with i (0-96 bytes more). */
static size_t value_of(size_t i, size_t j, char *buf, size_t cap) {
  size_t len = (size_t)snprintf(buf, cap, "call %zu value %zu ", i, j);
  size_t pad = i % 97;
  if (len + pad >= cap) pad = cap - len - 1;
  memset(buf + len, '.', pad);
  buf[len + pad] = '\0';
  return len + pad;
}

static void heard(size_t i, int status, int64_t seq) {
  call *c = &calls[i];
  c->calls++;
  c->status = status;
  c->seq = seq;
  if (i + 1 < last_done) order_ok = 0;
  last_done = i + 1;
}

/* A run's callback: ctx is the index of the run's first call; runs of one
 * ctx hold consecutive calls of one value each. The stretches come in
 * order, so a counter per run finds the calls. */
typedef struct run_ctx {
  size_t *ids;    /* the calls of this ctx, in order */
  size_t n;       /* how many */
  size_t heard;   /* how many were told */
} run_ctx;

static void on_run(void *ctx, int status, int64_t first, size_t n) {
  run_ctx *r = ctx;
  for (size_t k = 0; k < n; k++) {
    CHECK(r->heard < r->n);
    heard(r->ids[r->heard++], status, status ? -1 : first + (int64_t)k);
  }
}

static void on_job(void *ctx, int status, int64_t last) {
  size_t i = (size_t)(uintptr_t)ctx;
  heard(i, status, last); /* the batch's last seq */
}

static void on_closed(void *ctx) { ++*(int *)ctx; }

static flume_db *open_db(uv_loop_t *loop, const char *dir) {
  flume_db *db;
  flume_db_options o;
  flume_db_options_init(&o);
  o.codec = "raw";
  o.sync = 0; /* many small commits: the writer must keep up */
  CHECK_OK(flume_db_open(loop, dir, &o, &db));
  return db;
}

/* Every thread but this one blocks SIGINT (its bit in /proc's SigBlk):
 * a Ctrl-C reaches the thread that runs the loop, not the writer. Returns
 * how many other threads there are. */
static int others_block_sigint(void) {
  DIR *d = opendir("/proc/self/task");
  if (d == NULL) return -1; /* no /proc: nothing to tell */
  int others = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (e->d_name[0] == '.' || atoi(e->d_name) == getpid()) continue;
    char path[300], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue; /* ended meanwhile */
    unsigned long long blk = 0;
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "SigBlk: %llx", &blk) == 1) break;
    fclose(f);
    CHECK(blk & (1ULL << (SIGINT - 1)));
    others++;
  }
  closedir(d);
  return others;
}

static void close_db(uv_loop_t *loop, flume_db *db) {
  int closed = 0;
  CHECK_OK(flume_db_close(db, on_closed, &closed));
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(closed == 1);
}

int main(void) {
  rng = test_seed("test_writer") * 2654435761u + 1;

  char dir[512];
  temp_dir(dir, sizeof dir, "writer");
  uv_loop_t loop;
  uv_loop_init(&loop);
  flume_db *db = open_db(&loop, dir);
  CHECK(others_block_sigint() != 0); /* the writer is there, and blocks */

  /* Two run callers, whose single appends interleave with whole jobs. */
  static size_t ids_a[CALLS], ids_b[CALLS];
  run_ctx ra = {ids_a, 0, 0}, rb = {ids_b, 0, 0};
  char buf[256];
  for (int round = 0; ncalls < CALLS; round++) {
    /* A round is a stretch of the loop thread's work with the loop not
     * running (a long Lua loop of appends), then a short sleep: the writer
     * commits what is closed meanwhile. Round 3 makes the next commits
     * fail. */
    size_t burst = 1 + rnd() % 4000;
    if (round == 3) {
      flume__test_fail_commits(db, FLUME_EIO, 1);
    }
    for (size_t k = 0; k < burst && ncalls < CALLS; k++) {
      size_t i = ncalls++;
      uint32_t kind = rnd() % 16;
      if (kind < 12) { /* a single append of run caller a or b */
        run_ctx *r = kind < 9 ? &ra : &rb;
        size_t len = value_of(i, 0, buf, sizeof buf);
        r->ids[r->n++] = i;
        calls[i].n = 1;
        CHECK_OK(flume__db_append_one(db, buf, len, on_run, r));
      } else { /* a job of 1-5 values */
        flume_buf vals[5];
        char store[5][256];
        size_t n = 1 + rnd() % 5;
        for (size_t j = 0; j < n; j++) {
          vals[j].len = value_of(i, j, store[j], sizeof store[j]);
          vals[j].base = store[j];
        }
        calls[i].n = n;
        CHECK_OK(flume_db_append(db, vals, n, on_job, (void *)(uintptr_t)i));
      }
    }
    if (rnd() % 4 == 0) usleep(rnd() % 3000);
    if (rnd() % 8 == 0) uv_run(&loop, UV_RUN_NOWAIT); /* some turns run */
  }
  uv_run(&loop, UV_RUN_DEFAULT);

  /* Every call heard of once, in order. The failed commit failed what it
   * held: one stretch of calls (a job holds consecutive calls, a group
   * consecutive jobs), and nothing else. */
  CHECK(order_ok);
  size_t failed = 0, first_failed = 0;
  for (size_t i = 0; i < ncalls; i++) {
    call *c = &calls[i];
    if (c->calls != 1) {
      fprintf(stderr, "call %zu: %d callbacks\n", i, c->calls);
      CHECK(c->calls == 1);
    }
    if (c->status) {
      CHECK(c->status == FLUME_EIO && c->seq == -1);
      if (failed == 0) first_failed = i;
      CHECK(i == first_failed + failed); /* one stretch */
      failed++;
      continue;
    }
    int64_t want_last = next_expected + (int64_t)c->n - 1;
    if (c->seq != want_last) {
      fprintf(stderr, "call %zu: seq %lld, wanted %lld\n", i,
              (long long)c->seq, (long long)want_last);
      CHECK(0);
    }
    next_expected += (int64_t)c->n;
  }
  CHECK(failed > 0);
  CHECK(flume_db_since(db) == next_expected - 1);

  /* The log holds the successful calls' values, in call order. */
  for (int pass = 0; pass < 2; pass++) {
    int64_t seq = 0;
    for (size_t i = 0; i < ncalls; i++) {
      if (calls[i].status) continue;
      for (size_t j = 0; j < calls[i].n; j++, seq++) {
        void *data;
        size_t len;
        CHECK_OK(flume_db_get(db, seq, &data, &len));
        size_t want = value_of(i, j, buf, sizeof buf);
        CHECK(len == want && memcmp(data, buf, len) == 0);
        free(data);
      }
    }
    CHECK(seq == next_expected);
    close_db(&loop, db);
    if (pass == 0) db = open_db(&loop, dir); /* and again, reopened */
  }
  CHECK(uv_loop_close(&loop) == 0);
  remove_dir(dir);
  printf("test_writer: %zu calls, %lld values, %zu failed by one commit\n",
         ncalls, (long long)next_expected, failed);
  return 0;
}
