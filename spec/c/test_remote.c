/* A remote log from C. With no server to talk to: what is refused before
 * any network (names, a memory or read-only database), a server that does
 * not answer (FLUME_ETIMEDOUT within the timeout, and open_error saying
 * which servers), and a build without libnats (FLUME_ENOTSUP). A folder
 * left behind opens as a local log. Then, with a nats-server this test
 * starts on 127.0.0.1 (and kills, whatever happens), two nodes: the
 * status of the stream and of a node (flume_db_remote_status), a fresh
 * read on one node of what the other appended (flume_db_wait_fresh), a
 * close that lets the appends made before it finish, and a fresh read
 * and a status without a server (FLUME_ETIMEDOUT). The remote specs
 * (spec/remote_spec.lua) test the rest. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "flume.h"
#include "tmpdir.h"

extern char **environ;

static uv_loop_t loop;

static void closed(void *ctx) { ++*(int *)ctx; }

static void close_db(flume_db *db) {
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  while (!done) uv_run(&loop, UV_RUN_ONCE);
}

/* ---- callbacks ----------------------------------------------------------- */

typedef struct result {
  int done;          /* called */
  int status;        /* its status */
  int64_t seq;       /* a seq or a since */
  flume_remote_info info; /* a status's answer */
} result;

static void got_status(void *ctx, int status, const flume_remote_info *i) {
  result *r = ctx;
  r->done = 1, r->status = status;
  if (i) r->info = *i;
  else CHECK(status != 0);
}

#ifdef FLUME_REMOTE

/* ---- a server of this test's own ---------------------------------------- */

static pid_t server_pid = -1; /* the nats-server this test started */

/* Kills the server this test started (at exit too: a failed check exits). */
static void server_stop(void) {
  if (server_pid <= 0) return;
  kill(server_pid, SIGKILL);
  waitpid(server_pid, NULL, 0);
  server_pid = -1;
}

static const char *server_binary(void) {
  static const char *const paths[] = {"/usr/sbin/nats-server",
                                      "/usr/bin/nats-server",
                                      "/usr/local/bin/nats-server"};
  for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
    if (access(paths[i], X_OK) == 0) return paths[i];
  return NULL;
}

/* A port on 127.0.0.1 that nobody uses now (the system picks it). */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* Starts a JetStream server with its store in dir; its URL in url. */
static void server_start(const char *bin, const char *dir, char *url,
                         size_t n) {
  char port[16], store[700], log[700];
  snprintf(port, sizeof port, "%d", free_port());
  snprintf(store, sizeof store, "%s/store", dir);
  snprintf(log, sizeof log, "%s/server.log", dir);
  char *argv[] = {(char *)bin, "-js", "-a", "127.0.0.1", "-p", port,
                  "-sd", store, "-l", log, NULL};
  CHECK(posix_spawn(&server_pid, bin, NULL, NULL, argv, environ) == 0);
  atexit(server_stop);
  snprintf(url, n, "nats://127.0.0.1:%s", port);
}

static void appended(void *ctx, int status, int64_t seq) {
  result *r = ctx;
  r->done = 1, r->status = status, r->seq = seq;
}

static void fresh(void *ctx, int status, int64_t since) {
  result *r = ctx;
  r->done = 1, r->status = status, r->seq = since;
}

static void run_until(result *r) {
  uint64_t until = uv_hrtime() + (uint64_t)60e9;
  while (!r->done && uv_hrtime() < until) uv_run(&loop, UV_RUN_ONCE);
  CHECK(r->done);
}

/* Opens dir as node `node` of stream S on url, trying while the server
 * starts (at most 15 s). */
static flume_db *open_node(const char *dir, const char *url,
                           const char *node, int64_t timeout_ms) {
  flume_db_options o;
  flume_db *db = NULL;
  char why[512];
  flume_db_options_init(&o);
  o.codec = "msgpack";
  o.remote_urls = url;
  o.remote_stream = "S";
  o.remote_node = node;
  o.remote_replicas = 1;
  o.remote_timeout_ms = timeout_ms;
  o.open_error = why;
  o.open_error_size = sizeof why;
  uint64_t until = uv_hrtime() + (uint64_t)15e9;
  int rc;
  while ((rc = flume_db_open(&loop, dir, &o, &db)) == FLUME_ETIMEDOUT &&
         uv_hrtime() < until)
    uv_sleep(100);
  if (rc) fprintf(stderr, "open %s: %s\n", dir, why);
  CHECK_OK(rc);
  CHECK(why[0] == '\0');
  return db;
}

#endif

static void with_server(const char *root) {
#ifdef FLUME_REMOTE
  const char *bin = server_binary();
  if (bin == NULL) {
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
      fprintf(stderr, "nats-server is not installed: the remote log is not "
                      "tested\n");
      exit(1);
    }
    printf("skipped: nats-server is not installed\n");
    return;
  }
  char dir[600], url[64], a_dir[600], b_dir[600];
  snprintf(dir, sizeof dir, "%s/nats", root);
  snprintf(a_dir, sizeof a_dir, "%s/a", root);
  snprintf(b_dir, sizeof b_dir, "%s/b", root);
  CHECK(mkdir(dir, 0700) == 0);
  server_start(bin, dir, url, sizeof url);
  flume_db *a = open_node(a_dir, url, "A", 10000);
  flume_db *b = open_node(b_dir, url, "B", 1000);

  /* A's append returns once stored on A; a fresh read on B right after it
   * holds it too. */
  result r = {0};
  const char v[] = "\xa1x"; /* msgpack "x" */
  flume_buf val = {v, 2};
  CHECK_OK(flume_db_append(a, &val, 1, appended, &r));
  run_until(&r);
  CHECK_OK(r.status);
  int64_t seq = r.seq;
  CHECK(seq == 0);
  memset(&r, 0, sizeof r);
  CHECK_OK(flume_db_wait_fresh(b, fresh, &r));
  CHECK(!r.done); /* never from inside the call */
  run_until(&r);
  CHECK_OK(r.status);
  CHECK(r.seq >= seq && flume_db_since(b) >= seq);
  void *data;
  size_t len;
  CHECK_OK(flume_db_get(b, seq, &data, &len));
  CHECK(len == 2 && memcmp(data, v, 2) == 0);
  flume_free(data);

  /* The status of the stream and of node A: the genesis and A's envelope,
   * both stored on A. */
  memset(&r, 0, sizeof r);
  CHECK_OK(flume_db_remote_status(a, got_status, &r));
  run_until(&r);
  CHECK_OK(r.status);
  CHECK(strcmp(r.info.stream, "S") == 0 && strcmp(r.info.node, "A") == 0);
  CHECK(r.info.replicas == 1 && r.info.deny_delete && r.info.deny_purge);
  CHECK(r.info.last_seq == 2 && r.info.messages == 2);
  CHECK(r.info.stored == 2 && r.info.lag == 0 && r.info.since == 0);
  CHECK(r.info.npeers == 0); /* one server: no followers */

  /* A local log: no status; a fresh read is a plain one. */
  char l_dir[600];
  snprintf(l_dir, sizeof l_dir, "%s/local", root);
  flume_db *l = NULL;
  CHECK_OK(flume_db_open(&loop, l_dir, NULL, &l));
  CHECK_ERR(flume_db_remote_status(l, got_status, &r), FLUME_EINVAL);
  CHECK(strstr(flume_db_errmsg(l), "not a remote log") != NULL);
  memset(&r, 0, sizeof r);
  CHECK_OK(flume_db_wait_fresh(l, fresh, &r));
  run_until(&r);
  CHECK(r.status == 0 && r.seq == -1);
  close_db(l);

  /* A close lets the appends made before it finish: each gets its seq,
   * and they are in the log after a reopen. */
  enum { N = 50 };
  result many[N];
  memset(many, 0, sizeof many);
  for (int i = 0; i < N; i++)
    CHECK_OK(flume_db_append(a, &val, 1, appended, &many[i]));
  close_db(a);
  for (int i = 0; i < N; i++)
    CHECK(many[i].done && many[i].status == 0 && many[i].seq == 1 + i);
  a = open_node(a_dir, url, "A", 10000);
  CHECK(flume_db_since(a) == N);
  close_db(a);

  /* Without its server, a fresh read fails after remote_timeout. */
  server_stop();
  memset(&r, 0, sizeof r);
  CHECK_OK(flume_db_wait_fresh(b, fresh, &r));
  run_until(&r);
  CHECK_ERR(r.status, FLUME_ETIMEDOUT);
  CHECK(strstr(flume_db_errmsg(b), "no quorum") != NULL);
  memset(&r, 0, sizeof r);
  CHECK_OK(flume_db_remote_status(b, got_status, &r));
  run_until(&r);
  CHECK_ERR(r.status, FLUME_ETIMEDOUT);
  close_db(b);
#else
  (void)root;
  flume_db *db = NULL;
  char l_dir[600];
  snprintf(l_dir, sizeof l_dir, "%s/local", root);
  CHECK_OK(flume_db_open(&loop, l_dir, NULL, &db));
  CHECK_ERR(flume_db_remote_status(db, got_status, NULL), FLUME_ENOTSUP);
  close_db(db);
#endif
}

int main(void) {
  CHECK_OK(uv_loop_init(&loop));
  char root[512], dir[600];
  temp_dir(root, sizeof root, "remote");
  snprintf(dir, sizeof dir, "%s/db", root);
  flume_db *db = NULL;
  flume_db_options o;
  flume_db_options_init(&o);
  CHECK(o.remote_urls == NULL && o.remote_timeout_ms == 0);
  /* Port 1 on loopback: nobody listens there. */
  o.remote_urls = "nats://127.0.0.1:1";
  o.remote_stream = "S";
  o.remote_timeout_ms = 300;

  /* A remote log is cached in a folder by its writer. */
  CHECK_ERR(flume_db_open(&loop, NULL, &o, &db), FLUME_EINVAL);
  o.readonly = 1;
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  o.readonly = 0;

#ifdef FLUME_REMOTE
  o.remote_stream = "a.b"; /* not a stream name */
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  o.remote_stream = NULL;
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  o.remote_stream = "S";
  o.remote_node = "";
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  o.remote_node = NULL;
  /* A failed open says why where the caller asks for it. */
  char why[512] = "unchanged";
  o.open_error = why;
  o.open_error_size = sizeof why;
  uint64_t t0 = uv_hrtime();
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_ETIMEDOUT);
  CHECK(uv_hrtime() - t0 < (uint64_t)10e9);
  CHECK(strncmp(why, "ETIMEDOUT: ", 11) == 0);
  CHECK(strstr(why, "cannot reach the NATS servers nats://127.0.0.1:1"));
  o.remote_stream = "a.b";
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_EINVAL);
  CHECK(strstr(why, "remote_stream must be") != NULL);
  o.remote_stream = "S";
  /* A small buffer gets the message's start. */
  o.open_error_size = 10;
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_ETIMEDOUT);
  CHECK(strcmp(why, "ETIMEDOUT") == 0);
  o.open_error = NULL;
#else
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_ENOTSUP);
#endif
  CHECK(db == NULL);
  CHECK(strcmp(flume_err_name(FLUME_ENOTSUP), "ENOTSUP") == 0);

  /* Nothing was made remote: the folder opens as a local log. A local
   * failure says why too: here, the codec it has. */
  flume_db_options_init(&o);
  CHECK(o.open_error == NULL && o.open_error_size == 0);
  CHECK_OK(flume_db_open(&loop, dir, &o, &db));
  close_db(db);
  char why2[512];
  o.codec = "other";
  o.open_error = why2;
  o.open_error_size = sizeof why2;
  CHECK_ERR(flume_db_open(&loop, dir, &o, &db), FLUME_ECODEC);
  CHECK(strstr(why2, "was written with codec 'raw', not 'other'") != NULL);

  with_server(root);
  CHECK(uv_loop_close(&loop) == 0);
  remove_dir(root);
  return 0;
}
