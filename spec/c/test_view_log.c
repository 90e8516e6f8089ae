/* What view scripts print, from C (issue 13): flume_db_options.on_log gets
 * each message with the view's name and the seq, on the loop thread and
 * never from inside the call that ran the view; the rate limit drops and
 * counts exactly; everything is delivered before the close callback;
 * without on_log a line goes to stderr. On both backends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "flume.h"
#include "tmpdir.h"

#define MAXMSG 2048

typedef struct logged {
  int n;               /* messages seen */
  int closed;          /* the close callback has run */
  int inside;          /* a flume call is in progress (set by the test) */
  uv_thread_t thread;  /* the loop's thread */
  int64_t plain;       /* messages that are not drop reports */
  int64_t dropped;     /* the drop reports' counts, summed */
  char view[8][32];    /* the first 8: their view ("(mapper)": NULL) */
  int64_t seq[8];      /* their seq */
  char msg[8][MAXMSG]; /* their text */
} logged;

static void on_log(void *ctx, const char *view, int64_t seq, const char *msg,
                   size_t len) {
  logged *l = ctx;
  uv_thread_t self = uv_thread_self();
  CHECK(uv_thread_equal(&self, &l->thread));
  CHECK(!l->inside);  /* never from inside a flume call */
  CHECK(!l->closed);  /* never after the close callback */
  CHECK(msg[len] == '\0' && len < MAXMSG);
  unsigned long long k;
  char tail;
  if (sscanf(msg, "(%llu message%*[s] dropped%c", &k, &tail) == 2 ||
      sscanf(msg, "(%llu message dropped%c", &k, &tail) == 2) {
    CHECK(seq == -1 && tail == ')');
    l->dropped += (int64_t)k;
  } else {
    l->plain++;
  }
  if (l->n < 8) {
    snprintf(l->view[l->n], sizeof l->view[0], "%s", view ? view : "(mapper)");
    l->seq[l->n] = seq;
    memcpy(l->msg[l->n], msg, len + 1);
  }
  l->n++;
}

static void closed(void *ctx) { ((logged *)ctx)->closed = 1; }

static void appended(void *ctx, int status, int64_t seq) {
  CHECK_OK(status);
  *(int64_t *)ctx = seq;
}

static void on_use(void *ctx, int status, flume_view *v) {
  CHECK_OK(status);
  CHECK(v != NULL);
  ++*(int *)ctx;
}

typedef struct result {
  int calls;  /* callbacks seen */
  int status; /* the last one's */
} result;

static void on_result(void *ctx, int status, const void *res, size_t len) {
  result *r = ctx;
  (void)res;
  (void)len;
  r->calls++;
  r->status = status;
}

/* The raw codec: a view sees each value as a string. */
static const char script[] =
    "print('loading')\n"
    "return { version = 1, initial = 0,\n"
    "  reduce = function(n, v, seq)\n"
    "    if v == 'fail' then print('failing at', seq) error('bad value') end\n"
    "    if v ~= 'quiet' then print('value', v) end\n"
    "    return n + 1 end,\n"
    "  methods = { hello = { 'sync', function(n, who)\n"
    "    log('hello %s, I have %d', who, n) return n end } } }\n";

static int64_t append_n(uv_loop_t *loop, flume_db *db, const char *v, int n) {
  flume_buf *vals = calloc((size_t)n, sizeof *vals);
  CHECK(vals != NULL);
  for (int i = 0; i < n; i++) vals[i] = (flume_buf){v, strlen(v)};
  int64_t last = -2;
  CHECK_OK(flume_db_append(db, vals, (size_t)n, appended, &last));
  free(vals);
  uv_run(loop, UV_RUN_DEFAULT);
  return last;
}

static void run_case(const char *path) {
  uv_loop_t loop;
  flume_db *db;
  flume_db_options o;
  logged l;
  memset(&l, 0, sizeof l);
  l.thread = uv_thread_self();
  uv_loop_init(&loop);
  flume_db_options_init(&o);
  CHECK(o.on_log == NULL && o.on_log_ctx == NULL); /* the default */
  o.codec = "raw";
  o.on_log = on_log;
  o.on_log_ctx = &l;
  CHECK_OK(flume_db_open(&loop, path, &o, &db));

  int used = 0;
  l.inside = 1;
  CHECK_OK(flume_view_use(db, "v", script, strlen(script), on_use, &used));
  l.inside = 0;
  CHECK(l.n == 0); /* the top level printed: later */
  CHECK(append_n(&loop, db, "a", 2) == 1);
  CHECK(used == 1);
  CHECK(l.n == 3);
  CHECK(strcmp(l.view[0], "v") == 0 && l.seq[0] == -1 &&
        strcmp(l.msg[0], "loading") == 0);
  CHECK(strcmp(l.view[1], "v") == 0 && l.seq[1] == 0 &&
        strcmp(l.msg[1], "value\ta") == 0);
  CHECK(l.seq[2] == 1 && strcmp(l.msg[2], "value\ta") == 0);

  /* A method's message: no seq, and not from inside the call. */
  flume_view *v = flume_db_view(db, "v");
  CHECK(v != NULL);
  static const unsigned char args[] = {0x91, 0xa3, 'b', 'o', 'b'}; /* ["bob"] */
  result r = {0, 1};
  l.inside = 1;
  CHECK_OK(flume_view_call(v, "hello", args, sizeof args, 0, on_result, &r));
  l.inside = 0;
  CHECK(l.n == 3);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(r.calls == 1 && r.status == 0);
  CHECK(l.n == 4 && l.seq[3] == -1 &&
        strcmp(l.msg[3], "hello bob, I have 2") == 0);

  /* A flood: at most FLUME_LOG_RATE a window pass, the rest are counted,
   * and the close reports what is left, so every message is accounted
   * for once closed. */
  CHECK(append_n(&loop, db, "x", 20000) == 20001);

  /* A failing value: its message comes, and the view's error says why. */
  CHECK(append_n(&loop, db, "fail", 1) == 20002);
  CHECK(flume_view_error(v) != NULL &&
        strstr(flume_view_error(v), "bad value") != NULL);

  CHECK_OK(flume_db_close(db, closed, &l));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(l.closed);
  /* loading, 2 values, hello, 20000 values, failing; some were dropped
   * unless 20000 calls took 200 s */
  CHECK(l.plain + l.dropped == 1 + 2 + 1 + 20000 + 1);
  CHECK(l.dropped > 0);
  CHECK(uv_loop_close(&loop) == 0);
}

/* Without on_log: one line per message on stderr. */
static void stderr_case(void) {
  char dir[512], file[600];
  temp_dir(dir, sizeof dir, "view-log");
  snprintf(file, sizeof file, "%s/stderr", dir);
  fflush(stderr);
  int saved = dup(2);
  FILE *f = fopen(file, "w+");
  CHECK(saved >= 0 && f != NULL);
  CHECK(dup2(fileno(f), 2) == 2);

  uv_loop_t loop;
  flume_db *db;
  flume_db_options o;
  uv_loop_init(&loop);
  flume_db_options_init(&o);
  o.codec = "raw";
  CHECK_OK(flume_db_open(&loop, NULL, &o, &db));
  int used = 0;
  CHECK_OK(flume_view_use(db, "v", script, strlen(script), on_use, &used));
  CHECK(append_n(&loop, db, "a", 1) == 0);
  logged l = {0};
  CHECK_OK(flume_db_close(db, closed, &l));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(l.closed && uv_loop_close(&loop) == 0);

  fflush(stderr);
  CHECK(dup2(saved, 2) == 2);
  close(saved);
  char text[256] = {0};
  rewind(f);
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  remove_dir(dir);
  text[n] = '\0';
  if (strcmp(text, "flume: view v: loading\n"
                   "flume: view v at seq 0: value\ta\n") != 0) {
    fprintf(stderr, "stderr was:\n%s", text);
    CHECK(0);
  }
}

int main(void) {
  char dir[512], path[600];
  run_case(NULL);
  temp_dir(dir, sizeof dir, "view-log");
  snprintf(path, sizeof path, "%s/db", dir);
  run_case(path);
  remove_dir(dir);
  stderr_case();
  printf("test_view_log: ok\n");
  return 0;
}
