/*
 * flume.tools: what the `flume` command needs beyond the module.
 *
 *  - A read-only look at a database folder that another process may be
 *    writing, through a read-only store (log/store.h: no write lock, so
 *    `flume cat --live`, `status` and `backup` work beside a running
 *    writer): its metadata (format, codec, every view's record), the size
 *    of each table, log entries by seq, a consistent hot copy, and a walk
 *    of every entry (verify) in a child process.
 *  - A few process helpers Lua lacks: isatty, the terminal's width, a
 *    SIGINT flag, an interruptible sleep, stat and mkdir.
 *
 * Stored names and the view record come from runtime/format.h; errors are
 * the store's FLUME_E* codes, raised with its detail (flume__lua_raise).
 * It shares nothing else with flume.core; it lives in the same library and
 * is reached through package.preload: `require "flume.tools"` after
 * `require "flume"` (core.c).
 *
 * Caveat (LMDB's, see store.h): a process must not have the same folder
 * open twice. A handle from tools.open() and flume.open() on the same
 * folder must never be open at the same time in one process: close this
 * one first.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "lua/binding.h"
#include "store.h"

#define TOOLS_STORE_MT "flume.tools.store"

/* The durable backend: the command works on folders. */
static const flume__store_ops *const ops = &flume__store_lmdb;

typedef struct tstore {
  flume__store *store; /* read-only store; NULL once closed */
  char path[4096];     /* its folder */
} tstore;

static tstore *check_store(lua_State *L) {
  tstore *t = luaL_checkudata(L, 1, TOOLS_STORE_MT);
  if (t->store == NULL) flume__lua_raise(L, FLUME_ECLOSED, t->path);
  return t;
}

/* Raises err about the folder (with the store's detail, when it has one:
 * what is damaged and where). */
static int raise_store(lua_State *L, tstore *t, int err) {
  return flume__lua_raise(L, err, t->path);
}

/* A read transaction: the last commit of whichever process writes. */
static int begin(tstore *t, flume__txn **txn) {
  return ops->txn_begin(t->store, FLUME__TXN_READ, txn);
}

/* tools.open(dir) -> store, read-only. Raises ENOENT when dir holds no
 * database. */
static int l_open(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  if (len >= sizeof((tstore *)0)->path) luaL_argerror(L, 1, "path too long");
  tstore *t = lua_newuserdatauv(L, sizeof *t, 0);
  t->store = NULL; /* created closed, so __gc is always safe */
  memcpy(t->path, path, len + 1);
  luaL_setmetatable(L, TOOLS_STORE_MT);
  flume__store_opts opts = {.readonly = 1};
  int rc = ops->open(t->path, &opts, &t->store);
  if (rc == FLUME_ENOTFOUND) {
    lua_pushfstring(L, "%s: no flume database here", path);
    return flume__lua_raise(L, -ENOENT, lua_tostring(L, -1));
  }
  if (rc) return raise_store(L, t, rc);
  return 1;
}

static int l_store_close(lua_State *L) {
  tstore *t = luaL_checkudata(L, 1, TOOLS_STORE_MT);
  if (t->store) ops->close(t->store);
  t->store = NULL;
  return 0;
}

static void push_hex64(lua_State *L, uint64_t v) {
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)v);
  lua_pushstring(L, hex);
}

/* One view record, at the top: { kind, version, since, hash }. */
static void push_record(lua_State *L, const flume__record *r) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, flume__record_kind_name(r->kind));
  lua_setfield(L, -2, "kind");
  lua_pushinteger(L, r->version);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, r->since);
  lua_setfield(L, -2, "since");
  push_hex64(L, r->hash);
  lua_setfield(L, -2, "hash");
}

static int key_is(flume__slice k, const char *s) {
  size_t n = strlen(s);
  return k.size == n && memcmp(k.data, s, n) == 0;
}

/* store:meta() -> { format, codec, views = { name = record } }. Raises
 * ECORRUPT for a folder without flume metadata. */
static int l_store_meta(lua_State *L) {
  tstore *t = check_store(L);
  flume__txn *txn;
  flume__table meta;
  flume__cursor *cur;
  flume__slice k = {NULL, 0}, v;
  static const size_t plen = sizeof FLUME__META_VIEW_PREFIX - 1;
  int rc = begin(t, &txn);
  if (rc) return raise_store(L, t, rc);
  rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  if (rc == FLUME_ENOTFOUND) rc = FLUME_ECORRUPT; /* open checks this first */
  if (rc == 0) rc = ops->cursor_open(txn, meta, &cur);
  if (rc) {
    ops->txn_abort(txn);
    return raise_store(L, t, rc);
  }
  lua_createtable(L, 0, 3);
  lua_newtable(L);
  for (rc = ops->cursor_get(cur, FLUME__FIRST, &k, &v); rc == 0;
       rc = ops->cursor_get(cur, FLUME__NEXT, &k, &v)) {
    if (k.size > plen && memcmp(k.data, FLUME__META_VIEW_PREFIX, plen) == 0) {
      flume__record r;
      if (flume__record_unpack(v, &r) != 0) continue;
      lua_pushlstring(L, (const char *)k.data + plen, k.size - plen);
      push_record(L, &r);
      lua_settable(L, -3);
    } else if (key_is(k, FLUME__META_FORMAT) || key_is(k, FLUME__META_CODEC)) {
      lua_pushlstring(L, k.data, k.size);
      lua_pushlstring(L, v.data, v.size);
      lua_settable(L, -4);
    }
  }
  ops->cursor_close(cur);
  ops->txn_abort(txn);
  if (rc != FLUME_ENOTFOUND) return raise_store(L, t, rc);
  lua_setfield(L, -2, "views");
  return 1;
}

/* store:log() -> since (the last seq, -1 when empty), entries */
static int l_store_log(lua_State *L) {
  tstore *t = check_store(L);
  flume__txn *txn;
  int64_t last = -1;
  uint64_t entries = 0;
  int rc = begin(t, &txn);
  if (rc) return raise_store(L, t, rc);
  rc = ops->log_last(txn, &last);
  if (rc == 0) rc = ops->table_count(txn, FLUME__TABLE_LOG, &entries);
  ops->txn_abort(txn);
  if (rc) return raise_store(L, t, rc);
  lua_pushinteger(L, last);
  lua_pushinteger(L, (lua_Integer)entries);
  return 2;
}

/* The seq of a log entry's key. */
static int seq_of(flume__slice k, lua_Integer *seq) {
  uint64_t s;
  if (k.size != sizeof s) return FLUME_ECORRUPT;
  memcpy(&s, k.data, sizeof s);
  *seq = (lua_Integer)s;
  return 0;
}

/* store:read(from, to, reverse, limit, seqs, vals) -> n: up to limit
 * entries with from <= seq <= to (from the top with reverse) into
 * seqs[1..n] and vals[1..n], as the bytes stored. One short read
 * transaction. */
static int l_store_read(lua_State *L) {
  tstore *t = check_store(L);
  lua_Integer from = luaL_checkinteger(L, 2), to = luaL_checkinteger(L, 3);
  int reverse = lua_toboolean(L, 4);
  lua_Integer limit = luaL_checkinteger(L, 5);
  luaL_checktype(L, 6, LUA_TTABLE);
  luaL_checktype(L, 7, LUA_TTABLE);
  if (from < 0) from = 0;
  if (from > to || limit <= 0) {
    lua_pushinteger(L, 0);
    return 1;
  }
  flume__txn *txn;
  flume__cursor *cur;
  int rc = begin(t, &txn);
  if (rc) return raise_store(L, t, rc);
  if ((rc = ops->cursor_open(txn, FLUME__TABLE_LOG, &cur))) {
    ops->txn_abort(txn);
    return raise_store(L, t, rc);
  }
  uint64_t start = (uint64_t)(reverse ? to : from);
  flume__slice k = {&start, sizeof start}, v;
  lua_Integer at = 0, n = 0;
  rc = ops->cursor_get(cur, FLUME__SET_RANGE, &k, &v);
  if (reverse) {
    /* the last entry at or below `to` */
    if (rc == FLUME_ENOTFOUND)
      rc = ops->cursor_get(cur, FLUME__LAST, &k, &v);
    else if (rc == 0 && (rc = seq_of(k, &at)) == 0 && at > to)
      rc = ops->cursor_get(cur, FLUME__PREV, &k, &v);
  }
  while (rc == 0 && n < limit && (rc = seq_of(k, &at)) == 0) {
    if (at < from || at > to) break;
    n++;
    lua_pushinteger(L, at);
    lua_rawseti(L, 6, n);
    lua_pushlstring(L, v.data, v.size);
    lua_rawseti(L, 7, n);
    rc = ops->cursor_get(cur, reverse ? FLUME__PREV : FLUME__NEXT, &k, &v);
  }
  ops->cursor_close(cur);
  ops->txn_abort(txn);
  if (rc && rc != FLUME_ENOTFOUND) return raise_store(L, t, rc);
  lua_pushinteger(L, n);
  return 1;
}

/* Sets field `name` of the table at the top to { entries, bytes }. */
static void push_table_stat(lua_State *L, const flume__table_stat *st,
                            const char *name) {
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)st->entries);
  lua_setfield(L, -2, "entries");
  lua_pushinteger(L, (lua_Integer)st->bytes);
  lua_setfield(L, -2, "bytes");
  lua_setfield(L, -2, name);
}

typedef struct tables_walk {
  lua_State *L;     /* result at index res, its views at res + 1 */
  int res;          /* stack index of the result */
  flume__txn *txn;  /* the read transaction */
} tables_walk;

static int on_table(void *ctx, const char *name) {
  tables_walk *w = ctx;
  static const size_t plen = sizeof FLUME__VIEW_TABLE_PREFIX - 1;
  flume__table tbl;
  flume__table_stat st;
  int rc = ops->table_open(w->txn, name, 0, &tbl);
  if (rc == 0) rc = ops->table_stat(w->txn, tbl, &st);
  if (rc) return rc;
  if (strncmp(name, FLUME__VIEW_TABLE_PREFIX, plen) == 0) {
    lua_pushvalue(w->L, w->res + 1);
    push_table_stat(w->L, &st, name + plen);
    lua_pop(w->L, 1);
  } else if (strcmp(name, FLUME__META_TABLE) == 0) {
    lua_pushvalue(w->L, w->res);
    push_table_stat(w->L, &st, "meta");
    lua_pop(w->L, 1);
  }
  return 0;
}

/* store:tables() -> { log = size, meta = size, views = { name = size } },
 * each size { entries, bytes }. */
static int l_store_tables(lua_State *L) {
  tstore *t = check_store(L);
  flume__txn *txn;
  flume__table_stat st;
  int rc = begin(t, &txn);
  if (rc) return raise_store(L, t, rc);
  lua_createtable(L, 0, 3);
  lua_newtable(L);
  tables_walk w = {L, lua_gettop(L) - 1, txn};
  rc = ops->table_stat(txn, FLUME__TABLE_LOG, &st);
  if (rc == 0) {
    lua_pushvalue(L, w.res);
    push_table_stat(L, &st, "log");
    lua_pop(L, 1);
    rc = ops->table_list(txn, on_table, &w);
  }
  ops->txn_abort(txn);
  if (rc) return raise_store(L, t, rc);
  lua_setfield(L, -2, "views");
  return 1;
}

/* store:info() -> { page_size, map_size, used (bytes of pages in use),
 * readers, max_readers } */
static int l_store_info(lua_State *L) {
  tstore *t = check_store(L);
  flume__store_stat st;
  int rc = ops->stat(t->store, &st);
  if (rc) return raise_store(L, t, rc);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)st.page_size);
  lua_setfield(L, -2, "page_size");
  lua_pushinteger(L, (lua_Integer)st.map_size);
  lua_setfield(L, -2, "map_size");
  lua_pushinteger(L, (lua_Integer)st.used);
  lua_setfield(L, -2, "used");
  lua_pushinteger(L, st.readers);
  lua_setfield(L, -2, "readers");
  lua_pushinteger(L, st.max_readers);
  lua_setfield(L, -2, "max_readers");
  return 1;
}

typedef struct copy_progress {
  lua_State *L; /* the progress function is at index 4 */
  int failed;   /* it raised: its error is on top of the stack */
} copy_progress;

static void on_copy(void *ctx, uint64_t bytes) {
  copy_progress *p = ctx;
  if (p->failed) return;
  lua_pushvalue(p->L, 4);
  lua_pushinteger(p->L, (lua_Integer)bytes);
  if (lua_pcall(p->L, 1, 0, 0) != LUA_OK) p->failed = 1;
}

/* store:copy(dest, compact, progress) copies the database into the
 * existing folder dest, which holds none, as of one read transaction (a
 * consistent snapshot, however long the copy takes and whoever writes
 * meanwhile). compact: leave out free pages. progress: nil, or a function
 * called with the bytes written so far every tenth of a second while the
 * copy runs. An error raised by progress is raised again once the copy has
 * finished. */
static int l_store_copy(lua_State *L) {
  tstore *t = check_store(L);
  const char *dest = luaL_checkstring(L, 2);
  int compact = lua_toboolean(L, 3);
  int has_progress = !lua_isnoneornil(L, 4);
  if (has_progress) luaL_checktype(L, 4, LUA_TFUNCTION);
  lua_settop(L, 4);
  copy_progress p = {L, 0};
  int rc = ops->copy(t->store, dest, compact, has_progress ? on_copy : NULL,
                     &p);
  if (p.failed) return lua_error(L);
  if (rc) return flume__lua_raise(L, rc, dest);
  return 0;
}

/* ---- verify: the whole file, in a child process ------------------------ */

typedef struct verify_out {
  int fd; /* the pipe to the parent */
} verify_out;

static void put_line(int fd, char tag, const char *text) {
  char line[4700];
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

static void on_verify(void *ctx, flume__verify_kind kind, const char *what,
                      uint64_t count) {
  verify_out *o = ctx;
  char num[32];
  switch (kind) {
  case FLUME__VERIFY_TABLE:
    put_line(o->fd, 'T', what);
    break;
  case FLUME__VERIFY_DAMAGED:
    put_line(o->fd, 'D', what);
    break;
  case FLUME__VERIFY_DONE:
    snprintf(num, sizeof num, "%llu", (unsigned long long)count);
    put_line(o->fd, 'N', num);
    break;
  }
}

/* tools.verify(dir) -> { entries, tables = { name... }, damaged = { msg...
 * }, error = msg | nil, crashed = msg | nil }. Reads every entry of every
 * table of dir (the store's verify) in a child process: LMDB may crash on
 * a damaged branch page, and that must be a finding, not our end. */
static int l_verify(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fds[2];
  if (pipe(fds) != 0) return flume__lua_raise(L, -errno, "pipe");
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    return flume__lua_raise(L, -e, "fork");
  }
  if (pid == 0) {
    /* The child: its own read-only store (none is inherited in use). */
    close(fds[0]);
    signal(SIGPIPE, SIG_IGN);
    /* LMDB's own assertion message would land on the command's stderr
     * beside ours: the crash is reported from its signal instead. */
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) dup2(null, 2);
    verify_out o = {fds[1]};
    flume__store *store;
    flume__store_opts opts = {.readonly = 1};
    int rc = ops->open(path, &opts, &store);
    if (rc == 0) {
      rc = ops->verify(store, on_verify, &o);
      ops->close(store);
    }
    if (rc) {
      char detail[600], msg[800];
      if (!flume__store_detail(detail, sizeof detail))
        snprintf(detail, sizeof detail, "%s", path);
      snprintf(msg, sizeof msg, "%s: %s: %s", flume_err_name(rc),
               flume_strerror(rc), detail);
      put_line(fds[1], 'E', msg);
    }
    _exit(0);
  }
  close(fds[1]);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    ssize_t n = read(fds[0], p, LUAL_BUFFERSIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    luaL_addsize(&b, (size_t)n);
  }
  close(fds[0]);
  luaL_pushresult(&b);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  size_t len;
  const char *text = lua_tolstring(L, -1, &len);
  lua_createtable(L, 0, 5);
  int res = lua_gettop(L);
  lua_newtable(L); /* tables */
  lua_newtable(L); /* damaged */
  const char *last_table = NULL;
  size_t last_len = 0;
  int done = 0;
  for (const char *line = text, *end = text + len; line < end;) {
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    if (nl == NULL) break; /* a line cut by a crash */
    if (nl - line >= 2) {
      const char *body = line + 2;
      size_t blen = (size_t)(nl - body);
      switch (line[0]) {
      case 'T':
        lua_pushlstring(L, body, blen);
        lua_rawseti(L, res + 1, (lua_Integer)lua_rawlen(L, res + 1) + 1);
        last_table = body;
        last_len = blen;
        break;
      case 'D':
        lua_pushlstring(L, body, blen);
        lua_rawseti(L, res + 2, (lua_Integer)lua_rawlen(L, res + 2) + 1);
        break;
      case 'N':
        lua_pushinteger(L, (lua_Integer)strtoll(body, NULL, 10));
        lua_setfield(L, res, "entries");
        done = 1;
        break;
      case 'E':
        lua_pushlstring(L, body, blen);
        lua_setfield(L, res, "error");
        done = 1;
        break;
      }
    }
    line = nl + 1;
  }
  lua_setfield(L, res, "damaged");
  lua_setfield(L, res, "tables");
  if (!done) {
    char sig[64];
    if (WIFSIGNALED(status))
      snprintf(sig, sizeof sig, "signal %d, %s", WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    else
      snprintf(sig, sizeof sig, "exit status %d", WEXITSTATUS(status));
    char msg[4500];
    snprintf(msg, sizeof msg,
             "%s/data.mdb has a damaged page in table %.*s: reading it "
             "crashed LMDB (%s)",
             path, last_table ? (int)last_len : 9,
             last_table ? last_table : "(unknown)", sig);
    lua_pushstring(L, msg);
    lua_setfield(L, res, "crashed");
  }
  return 1;
}

/* ---- process helpers ---------------------------------------------------- */

static void nap(double secs) {
  struct timespec ts = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
  nanosleep(&ts, NULL);
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

/* tools.trap_sigint(): from now on SIGINT sets a flag (see interrupted) and
 * cuts a sleep short; a second one has the default effect. */
static int l_trap_sigint(lua_State *L) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESETHAND; /* no SA_RESTART: cut sleeps short */
  sigemptyset(&sa.sa_mask);
  interrupted = 0;
  if (sigaction(SIGINT, &sa, NULL) != 0)
    return flume__lua_raise(L, -errno, "sigaction");
  return 0;
}

/* tools.interrupted() -> whether SIGINT came since trap_sigint() */
static int l_interrupted(lua_State *L) {
  lua_pushboolean(L, interrupted);
  return 1;
}

/* tools.sleep(seconds): returns early on a signal. */
static int l_sleep(lua_State *L) {
  lua_Number secs = luaL_checknumber(L, 1);
  if (secs > 0 && !interrupted) nap(secs);
  return 0;
}

/* tools.isatty(fd) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* tools.columns(fd) -> the terminal's width, or nil */
static int l_columns(lua_State *L) {
  struct winsize ws;
  if (ioctl((int)luaL_checkinteger(L, 1), TIOCGWINSZ, &ws) != 0 ||
      ws.ws_col == 0)
    return 0;
  lua_pushinteger(L, ws.ws_col);
  return 1;
}

/* tools.stat(path) -> { type = "file"|"dir"|"other", size } or nil, msg */
static int l_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_createtable(L, 0, 2);
  lua_pushstring(L, S_ISREG(st.st_mode)   ? "file"
                    : S_ISDIR(st.st_mode) ? "dir"
                                          : "other");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  return 1;
}

/* tools.mkdir(path) -> true, or nil, msg */
static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (mkdir(path, 0755) != 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg store_methods[] = {
    {"meta", l_store_meta},     {"log", l_store_log},
    {"read", l_store_read},     {"tables", l_store_tables},
    {"info", l_store_info},     {"copy", l_store_copy},
    {"close", l_store_close},   {NULL, NULL}};

static const luaL_Reg tools_funcs[] = {{"open", l_open},
                                       {"verify", l_verify},
                                       {"trap_sigint", l_trap_sigint},
                                       {"interrupted", l_interrupted},
                                       {"sleep", l_sleep},
                                       {"isatty", l_isatty},
                                       {"columns", l_columns},
                                       {"stat", l_stat},
                                       {"mkdir", l_mkdir},
                                       {NULL, NULL}};

int luaopen_flume_tools(lua_State *L) {
  if (luaL_newmetatable(L, TOOLS_STORE_MT)) {
    luaL_newlib(L, store_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_store_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_store_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlib(L, tools_funcs);
  lua_pushstring(L, FLUME__FORMAT);
  lua_setfield(L, -2, "format");
  return 1;
}
