/*
 * tool_view_dump DIR MODE NAME=SCRIPT...: reads views through the C API
 * and prints every answer, one per line, for spec/c_reads_spec.lua to
 * compare with the Lua API's answers and with the model. Keys, states and
 * accumulators are printed as hex msgpack.
 *
 * MODE "final": waits for each view (flume_view_wait), then prints
 *   view NAME KIND SINCE
 *   state NAME HEX                     (reduce: flume_view_get)
 *   entry NAME HEXKEY SEQ|HEXVAL       (the whole range, forward)
 *   rev NAME HEXKEY SEQ|HEXVAL         (reverse, limit 7)
 *   get NAME HEXKEY HEX|-              (flume_view_get of each key)
 *   range NAME I HEXKEY SEQ|HEXVAL     (gte key I, lt key I+3)
 *   rrange NAME I HEXKEY SEQ|HEXVAL    (gt key I, lte key I+3, reverse)
 * MODE "catchup": while the views catch up, reads without waiting on every
 * loop turn and prints, for each read, the view's since as the status gave
 * it just before, and what was read:
 *   snap NAME SINCE HEXKEY=SEQ|HEXVAL,...   (group and index)
 *   snap NAME SINCE HEX|-                   (reduce)
 * then the "final" lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "check.h"
#include "flume.h"

#define MAX_VIEWS 8
#define MAX_KEYS 4096

typedef struct dump {
  flume_db *db;                 /* the database */
  int nviews;                   /* views given */
  const char *names[MAX_VIEWS]; /* their names */
  flume_view *views[MAX_VIEWS]; /* set up */
  int set_up;                   /* use callbacks seen */
  int waited;                   /* wait callbacks seen */
  int catchup;                  /* MODE catchup */
  uv_idle_t idle;               /* the catch-up reads */
  int closed;                   /* close callback seen */
  int64_t snapped[MAX_VIEWS];   /* the since of each view's last snapshot */
} dump;

static void hex(const void *p, size_t n) {
  const unsigned char *b = p;
  if (n == 0) fputs("-", stdout);
  for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  CHECK(s != NULL && fread(s, 1, (size_t)n, f) == (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return s;
}

/* Prints the answer of a flume_view_get (rc, data) as hex, "-" for none,
 * and a newline. */
static void print_got(int rc, void *data, size_t len) {
  if (rc == FLUME_ENOTFOUND) {
    puts("-");
    return;
  }
  CHECK_OK(rc);
  hex(data, len);
  putchar('\n');
  flume_free(data);
}

/* A copy of each key of a view, in order, for gets and bounded ranges. */
typedef struct keys {
  size_t n;
  void *k[MAX_KEYS];
  size_t len[MAX_KEYS];
} keys;

static void print_entry(const char *tag, const char *name, long i,
                        const void *k, size_t kl, int64_t seq, const void *v,
                        size_t vl) {
  printf("%s %s ", tag, name);
  if (i >= 0) printf("%ld ", i);
  hex(k, kl);
  if (v == NULL) printf(" %lld\n", (long long)seq);
  else {
    putchar(' ');
    hex(v, vl);
    putchar('\n');
  }
}

static void iterate(flume_view *view, const char *tag, const char *name,
                    long i, const flume_view_iter_options *o, keys *ks) {
  flume_view_iter *it;
  CHECK_OK(flume_view_iter_open(view, o, &it));
  const void *k, *v;
  size_t kl, vl;
  int64_t seq;
  int rc;
  while ((rc = flume_view_iter_next(it, &k, &kl, &seq, &v, &vl)) == 0) {
    print_entry(tag, name, i, k, kl, seq, v, vl);
    if (ks && ks->n < MAX_KEYS &&
        (ks->n == 0 || ks->len[ks->n - 1] != kl ||
         memcmp(ks->k[ks->n - 1], k, kl) != 0)) {
      ks->k[ks->n] = malloc(kl);
      memcpy(ks->k[ks->n], k, kl);
      ks->len[ks->n++] = kl;
    }
  }
  CHECK_ERR(rc, FLUME_ENOTFOUND);
  flume_view_iter_close(it);
}

static void final_dump(dump *d) {
  for (int i = 0; i < d->nviews; i++) {
    flume_view *v = d->views[i];
    const char *name = d->names[i];
    flume_view_info in;
    CHECK_OK(flume_view_status(v, &in));
    printf("view %s %s %lld\n", name, in.kind, (long long)in.since);
    void *data;
    size_t len;
    if (strcmp(in.kind, "reduce") == 0) {
      int rc = flume_view_get(v, NULL, 0, &data, &len);
      printf("state %s ", name);
      print_got(rc, data, len);
      continue;
    }
    keys *ks = calloc(1, sizeof *ks);
    flume_view_iter_options o;
    flume_view_iter_options_init(&o);
    iterate(v, "entry", name, -1, &o, ks);
    o.reverse = 1;
    o.limit = 7;
    iterate(v, "rev", name, -1, &o, NULL);
    for (size_t k = 0; k < ks->n; k++) {
      int rc = flume_view_get(v, ks->k[k], ks->len[k], &data, &len);
      printf("get %s ", name);
      hex(ks->k[k], ks->len[k]);
      putchar(' ');
      print_got(rc, data, len);
    }
    for (size_t k = 0; k + 3 < ks->n; k += 5) {
      flume_view_iter_options_init(&o);
      o.gte = ks->k[k];
      o.gte_len = ks->len[k];
      o.lt = ks->k[k + 3];
      o.lt_len = ks->len[k + 3];
      iterate(v, "range", name, (long)k, &o, NULL);
      flume_view_iter_options_init(&o);
      o.gt = ks->k[k];
      o.gt_len = ks->len[k];
      o.lte = ks->k[k + 3];
      o.lte_len = ks->len[k + 3];
      o.reverse = 1;
      iterate(v, "rrange", name, (long)k, &o, NULL);
    }
    for (size_t k = 0; k < ks->n; k++) free(ks->k[k]);
    free(ks);
  }
}

static void on_close(void *ctx) { ((dump *)ctx)->closed = 1; }

static void finish(dump *d) {
  final_dump(d);
  CHECK_OK(flume_db_close(d->db, on_close, d));
}

static void on_wait(void *ctx, int status) {
  dump *d = ctx;
  CHECK_OK(status);
  if (++d->waited == d->nviews) finish(d);
}

/* One read of each view without waiting, as it is now. */
static void snapshot(dump *d) {
  for (int i = 0; i < d->nviews; i++) {
    flume_view *v = d->views[i];
    flume_view_info in;
    CHECK_OK(flume_view_status(v, &in));
    /* One snapshot per since: a view's state changes only with it. */
    if (!in.ready || in.since == d->snapped[i]) continue;
    d->snapped[i] = in.since;
    if (strcmp(in.kind, "reduce") == 0) {
      void *data;
      size_t len;
      int rc = flume_view_get(v, NULL, 0, &data, &len);
      CHECK_OK(flume_view_status(v, &in)); /* the since of what was read */
      printf("snap %s %lld ", d->names[i], (long long)in.since);
      print_got(rc, data, len);
      continue;
    }
    flume_view_iter *it;
    flume_view_iter_options o;
    flume_view_iter_options_init(&o);
    CHECK_OK(flume_view_iter_open(v, &o, &it));
    const void *k, *val;
    size_t kl, vl;
    int64_t seq;
    int rc, first = 1;
    while ((rc = flume_view_iter_next(it, &k, &kl, &seq, &val, &vl)) == 0) {
      if (first) { /* the first chunk decides the since of the read */
        CHECK_OK(flume_view_status(v, &in));
        printf("snap %s %lld ", d->names[i], (long long)in.since);
      }
      if (!first) putchar(',');
      first = 0;
      hex(k, kl);
      putchar('=');
      if (val) hex(val, vl);
      else printf("%lld", (long long)seq);
    }
    CHECK_ERR(rc, FLUME_ENOTFOUND);
    flume_view_iter_close(it);
    if (first) { /* nothing in range */
      CHECK_OK(flume_view_status(v, &in));
      printf("snap %s %lld", d->names[i], (long long)in.since);
    }
    putchar('\n');
  }
}

static void on_idle(uv_idle_t *h) {
  dump *d = h->data;
  snapshot(d);
  int caught_up = 1;
  for (int i = 0; i < d->nviews; i++) {
    flume_view_info in;
    CHECK_OK(flume_view_status(d->views[i], &in));
    if (in.failed) {
      fprintf(stderr, "%s\n", in.error);
      exit(1);
    }
    caught_up = caught_up && in.ready && in.since == in.log_since;
  }
  if (!caught_up) return;
  uv_idle_stop(h);
  uv_close((uv_handle_t *)h, NULL);
  finish(d);
}

static void on_use(void *ctx, int status, flume_view *v) {
  dump *d = ctx;
  CHECK_OK(status);
  for (int i = 0; i < d->nviews; i++)
    if (flume_db_view(d->db, d->names[i]) == v) d->views[i] = v;
  if (++d->set_up < d->nviews) return;
  if (d->catchup) {
    uv_idle_start(&d->idle, on_idle);
    return;
  }
  for (int i = 0; i < d->nviews; i++)
    CHECK_OK(flume_view_wait(d->views[i], 60, on_wait, d));
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: tool_view_dump DIR final|catchup NAME=SCRIPT...\n");
    return 2;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  dump d = {0};
  d.catchup = strcmp(argv[2], "catchup") == 0;
  for (int i = 0; i < MAX_VIEWS; i++) d.snapped[i] = -2;
  flume_db_options opts;
  flume_db_options_init(&opts);
  opts.codec = "msgpack";
  CHECK_OK(flume_db_open(&loop, argv[1], &opts, &d.db));
  uv_idle_init(&loop, &d.idle);
  d.idle.data = &d;
  for (int i = 3; i < argc && d.nviews < MAX_VIEWS; i++) {
    char *eq = strchr(argv[i], '=');
    CHECK(eq != NULL);
    *eq = '\0';
    size_t len;
    char *src = slurp(eq + 1, &len);
    d.names[d.nviews++] = argv[i];
    int rc = flume_view_use(d.db, argv[i], src, len, on_use, &d);
    if (rc) fprintf(stderr, "%s\n", flume_db_errmsg(d.db));
    CHECK_OK(rc);
    free(src);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(d.closed);
  if (!d.catchup) uv_close((uv_handle_t *)&d.idle, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_OK(uv_loop_close(&loop));
  return 0;
}
