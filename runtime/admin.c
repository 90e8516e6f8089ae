/*
 * Looking after a database: what a command line or a monitor needs beyond
 * reads of the log. The storage as a whole (flume_db_storage), every
 * table's size from one snapshot (flume_db_tables), a consistent hot copy
 * (flume_db_backup) and a walk of every stored entry (flume_verify).
 *
 * All of them go through the store interface (log/store.h: stat,
 * table_list, table_stat, copy, verify) of the handle's own store, so they
 * work on read-only handles as well, beside a writer in another process:
 * `flume status`, `flume backup` and `flume verify` need no second way
 * into the file.
 *
 * The walk runs in a child process. A damaged branch page can crash LMDB
 * inside it (store.h says so), and that must be a finding, not the end of
 * the caller. The child opens the folder read-only itself: it must not use
 * an LMDB environment it inherited (LMDB's rule: no environment across a
 * fork), and as another process it may open a folder this one has open.
 * It touches no loop and no Lua; it writes its findings to a pipe as lines
 * and ends with _exit(), so nothing of the parent (stdio buffers, atexit
 * handlers) runs twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/* ECLOSED once flume_db_close() was called: flume_db_get_many() of no seqs
 * answers exactly that, and nothing else. */
static int check_open(flume_db *db) {
  return flume_db_get_many(db, NULL, 0, NULL, NULL);
}

/* Appends s to the message in buf (FLUME__ERRMSG_SIZE bytes), cut to fit:
 * the message is for people, a long path may lose its end. */
static void msg_add(char *buf, const char *s) {
  size_t have = strlen(buf), n = strlen(s);
  if (n > FLUME__ERRMSG_SIZE - 1 - have) n = FLUME__ERRMSG_SIZE - 1 - have;
  memcpy(buf + have, s, n);
  buf[have + n] = '\0';
}

/* Sets the database's message (flume_db_errmsg()) to "what: detail". */
static void set_msg(flume_db *db, const char *what, const char *detail) {
  char *buf = flume__db_errbuf(db);
  buf[0] = '\0';
  msg_add(buf, what);
  msg_add(buf, ": ");
  msg_add(buf, detail);
}

/* Keeps the store's detail of a failure (what is damaged, and where) as
 * the database's message. */
static int failed(flume_db *db, int rc, const char *what) {
  char detail[FLUME__ERRMSG_SIZE];
  if (flume__store_detail(detail, sizeof detail)) {
    set_msg(db, what, detail);
  } else {
    char *buf = flume__db_errbuf(db);
    buf[0] = '\0';
    msg_add(buf, what);
  }
  return rc;
}

/* ---- the storage and its tables ----------------------------------------- */

FLUME_API int flume_db_storage(flume_db *db, flume_storage_info *out) {
  if (db == NULL || out == NULL) return FLUME_EINVAL;
  int rc = check_open(db);
  if (rc) return rc;
  flume__store_stat st;
  if ((rc = flume__db_ops(db)->stat(flume__db_store(db), &st)))
    return failed(db, rc, "storage");
  memset(out, 0, sizeof *out);
  out->page_size = st.page_size;
  out->map_size = st.map_size;
  out->used = st.used;
  out->readers = st.readers;
  out->max_readers = st.max_readers;
  return 0;
}

typedef struct tables_walk {
  const flume__store_ops *ops; /* the store's operations */
  flume__txn *txn;             /* the one read transaction */
  flume_table_fn fn;           /* the caller's */
  void *ctx;                   /* its pointer */
} tables_walk;

/* Tells fn of one table: kind "log", "meta", "view" (name without its
 * prefix) or "other" (a stored name flume does not know). */
static int tell(tables_walk *w, const char *kind, const char *name,
                flume__table tbl) {
  flume__table_stat st;
  int rc = w->ops->table_stat(w->txn, tbl, &st);
  if (rc) return rc;
  flume_table_info info = {kind, name, st.entries, st.bytes};
  /* fn's own nonzero result stops the listing and is returned as is */
  return w->fn(w->ctx, &info);
}

static int on_table(void *ctx, const char *name) {
  tables_walk *w = ctx;
  static const size_t plen = sizeof FLUME__VIEW_TABLE_PREFIX - 1;
  flume__table tbl;
  int rc = w->ops->table_open(w->txn, name, 0, &tbl);
  if (rc) return rc;
  if (strcmp(name, FLUME__META_TABLE) == 0)
    return tell(w, "meta", name, tbl);
  if (strncmp(name, FLUME__VIEW_TABLE_PREFIX, plen) == 0 && name[plen])
    return tell(w, "view", name + plen, tbl);
  return tell(w, "other", name, tbl);
}

FLUME_API int flume_db_tables(flume_db *db, flume_table_fn fn, void *ctx) {
  if (db == NULL || fn == NULL) return FLUME_EINVAL;
  int rc = check_open(db);
  if (rc) return rc;
  const flume__store_ops *ops = flume__db_ops(db);
  flume__txn *txn;
  if ((rc = ops->txn_begin(flume__db_store(db), FLUME__TXN_READ, &txn)))
    return failed(db, rc, "tables");
  tables_walk w = {ops, txn, fn, ctx};
  rc = tell(&w, "log", "log", FLUME__TABLE_LOG);
  if (rc == 0) rc = ops->table_list(txn, on_table, &w);
  ops->txn_abort(txn);
  /* fn's nonzero result comes back as is; a store's failure has a
   * message */
  char detail[FLUME__ERRMSG_SIZE];
  if (rc && flume__store_detail(detail, sizeof detail))
    set_msg(db, "tables", detail);
  return rc;
}

/* ---- backup ------------------------------------------------------------- */

typedef struct backup_progress {
  flume_progress_fn fn; /* the caller's */
  void *ctx;            /* its pointer */
} backup_progress;

static void on_copy(void *ctx, uint64_t bytes) {
  backup_progress *p = ctx;
  p->fn(p->ctx, bytes);
}

FLUME_API int flume_db_backup(flume_db *db, const char *dest, int compact,
                              flume_progress_fn progress, void *ctx) {
  if (db == NULL || dest == NULL || *dest == '\0') return FLUME_EINVAL;
  int rc = check_open(db);
  if (rc) return rc;
  if (flume_db_is_memory(db)) {
    snprintf(flume__db_errbuf(db), FLUME__ERRMSG_SIZE,
             "a memory database has no file to back up");
    return FLUME_EINVAL;
  }
  backup_progress p = {progress, ctx};
  rc = flume__db_ops(db)->copy(flume__db_store(db), dest, compact != 0,
                               progress ? on_copy : NULL, &p);
  if (rc) {
    char what[FLUME__ERRMSG_SIZE] = "backup into ";
    msg_add(what, dest);
    return failed(db, rc, what);
  }
  return 0;
}

/* ---- verify: the walk, in a child process ------------------------------- */

/* The child's lines: a tag, a space, a text without newlines.
 *  T name   a table starts
 *  D what   a damaged entry
 *  N count  the walk ended: count entries read
 *  E code message   the walk could not run, or stopped */

/* Writes one line (newlines in text become spaces; a long one is cut). */
static void put_line(int fd, char tag, const char *text) {
  char line[FLUME__ERRMSG_SIZE + 64];
  int n = snprintf(line, sizeof line, "%c %s", tag, text);
  if (n < 0) return;
  if ((size_t)n >= sizeof line - 1) n = (int)sizeof line - 2;
  for (int i = 2; i < n; i++)
    if (line[i] == '\n') line[i] = ' ';
  line[n++] = '\n';
  for (int off = 0; off < n;) {
    ssize_t w = write(fd, line + off, (size_t)(n - off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    off += (int)w;
  }
}

static void on_finding(void *ctx, flume__verify_kind kind, const char *what,
                       uint64_t count) {
  int fd = *(int *)ctx;
  char num[32];
  switch (kind) {
  case FLUME__VERIFY_TABLE:
    put_line(fd, 'T', what);
    break;
  case FLUME__VERIFY_DAMAGED:
    put_line(fd, 'D', what);
    break;
  case FLUME__VERIFY_DONE:
    snprintf(num, sizeof num, "%llu", (unsigned long long)count);
    put_line(fd, 'N', num);
    break;
  }
}

/* The child: opens path read-only, walks it, reports on fd, never
 * returns. */
static void verify_child(const char *path, int fd) {
  signal(SIGPIPE, SIG_IGN);
  /* LMDB's own assertion message would land on the caller's stderr: the
   * parent reports a crash from its signal instead. */
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null >= 0) dup2(null, 2);
  const flume__store_ops *ops = &flume__store_lmdb;
  flume__store *store;
  flume__store_opts opts = {.readonly = 1};
  int rc = ops->open(path, &opts, &store);
  if (rc == 0) {
    rc = ops->verify(store, on_finding, &fd);
    ops->close(store);
  }
  if (rc) {
    char detail[FLUME__ERRMSG_SIZE - 32], msg[FLUME__ERRMSG_SIZE];
    if (!flume__store_detail(detail, sizeof detail))
      snprintf(detail, sizeof detail, "%s", path);
    snprintf(msg, sizeof msg, "%d %s", rc, detail);
    put_line(fd, 'E', msg);
  }
  _exit(0);
}

/* Everything the child wrote, until it closed the pipe (it ended). NULL
 * when out of memory; *len its length. */
static char *read_all(int fd, size_t *len) {
  size_t n = 0, cap = 4096;
  char *text = malloc(cap);
  for (;;) {
    if (text == NULL) break;
    if (n == cap) {
      char *p = realloc(text, cap *= 2);
      if (p == NULL) {
        free(text);
        text = NULL;
        break;
      }
      text = p;
    }
    ssize_t r = read(fd, text + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  if (text == NULL) { /* drain, so the child is not stuck on a full pipe */
    char sink[4096];
    while (read(fd, sink, sizeof sink) > 0 || errno == EINTR) {
    }
  }
  *len = n;
  return text;
}

FLUME_API int flume_verify(const char *path, flume_verify_fn fn, void *ctx,
                           flume_verify_result *out) {
  if (path == NULL || *path == '\0' || out == NULL) return FLUME_EINVAL;
  memset(out, 0, sizeof *out);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -errno;
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    return -e;
  }
  if (pid == 0) {
    close(fds[0]);
    verify_child(path, fds[1]);
  }
  close(fds[1]);
  size_t len;
  char *text = read_all(fds[0], &len);
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (text == NULL) return FLUME_ENOMEM;

  int rc = 0, done = 0;
  char table[FLUME__ERRMSG_SIZE] = "";
  for (char *line = text, *end = text + len; line < end;) {
    char *nl = memchr(line, '\n', (size_t)(end - line));
    if (nl == NULL) break; /* a line cut by a crash */
    *nl = '\0';
    if (nl - line >= 2) {
      const char *body = line + 2;
      switch (line[0]) {
      case 'T':
        snprintf(table, sizeof table, "%s", body);
        out->tables++;
        if (fn) fn(ctx, body, NULL);
        break;
      case 'D':
        out->damaged++;
        if (fn) fn(ctx, table, body);
        break;
      case 'N':
        out->entries = strtoull(body, NULL, 10);
        done = 1;
        break;
      case 'E': {
        char *rest;
        rc = (int)strtol(body, &rest, 10);
        if (rc == 0) rc = FLUME_EIO;
        snprintf(out->error, sizeof out->error, "%s",
                 *rest ? rest + 1 : path);
        done = 1;
        break;
      }
      }
    }
    line = nl + 1;
  }
  free(text);
  if (!done) {
    /* The child died inside the walk: a damaged page LMDB trusted. */
    char how[64], msg[FLUME__ERRMSG_SIZE + 256];
    if (WIFSIGNALED(status))
      snprintf(how, sizeof how, "signal %d, %s", WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    else
      snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(status));
    snprintf(msg, sizeof msg,
             "%s/data.mdb has a damaged page in table %s: reading it "
             "crashed LMDB (%s)",
             path, table[0] ? table : "(unknown)", how);
    out->crashed = 1;
    out->damaged++;
    if (fn) fn(ctx, table[0] ? table : "(unknown)", msg);
  }
  return rc;
}
