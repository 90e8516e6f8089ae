/*
 * flume.tools: what the `flume` command needs beyond the module.
 *
 *  - A read-only look at a database folder that another process may be
 *    writing: its metadata (format, codec, every view's record), the size
 *    of each table, log entries by seq, and a consistent hot copy
 *    (mdb_env_copy2, compacted). flume.open() takes the folder's write lock;
 *    this does not, so `flume cat --live`, `status` and `backup` work beside
 *    a running writer, as LMDB readers do.
 *  - A few process helpers Lua lacks: isatty, the terminal's width, a
 *    SIGINT flag, an interruptible sleep, stat and mkdir.
 *
 * It shares nothing with flume.core. The command loads it from the module's
 * own library: package.loadlib(<path of flume/core.so>,
 * "luaopen_flume_tools").
 *
 * Caveat (LMDB's): a process must not have the same environment open twice.
 * A handle from tools.open() and flume.open() on the same folder must never
 * be open at the same time in one process: close this one first.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lmdb_env.h"
#include "lua/binding.h"
#include "store.h"
#include "views/views.h"

#define TOOLS_ENV_MT "flume.tools.env"
#define TOOLS_MAX_DBS 512 /* more than the runtime's 256 tables */
#define RECORD_SIZE 25    /* a view's record: see views.c */

typedef struct tenv {
  MDB_env *env;    /* read-only environment; NULL once closed */
  char path[4096]; /* its folder */
} tenv;

static const char *const kind_names[] = {[FLUME__VIEW_REDUCE] = "reduce",
                                         [FLUME__VIEW_GROUP] = "group",
                                         [FLUME__VIEW_INDEX] = "index",
                                         [FLUME__VIEW_C] = "c"};

/* Raises err with the store's detail of it when there is one (what is
 * damaged and where), else with `what`. */
static int raise_err(lua_State *L, int err, const char *what) {
  char detail[512];
  if (flume__store_detail(detail, sizeof detail))
    return flume__lua_raise(L, err, detail);
  return flume__lua_raise(L, err, what);
}

static int raise_mdb(lua_State *L, tenv *e, int rc) {
  return raise_err(L, flume__lmdb_map_err(rc), e->path);
}

static tenv *check_env(lua_State *L) {
  tenv *e = luaL_checkudata(L, 1, TOOLS_ENV_MT);
  if (e->env == NULL) flume__lua_raise(L, FLUME_ECLOSED, e->path);
  return e;
}

/* A read transaction. Another process may have grown the map since ours was
 * set: adopt its size (allowed, as no transaction of ours is open). */
static int begin(tenv *e, MDB_txn **txn) {
  int rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, txn);
  if (rc == MDB_MAP_RESIZED) {
    rc = mdb_env_set_mapsize(e->env, 0);
    if (rc == 0) rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, txn);
  }
  return rc;
}

/* tools.open(dir) -> env, read-only. Raises ENOENT when dir holds no
 * database. */
static int l_open(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  char file[4200];
  struct stat st;
  if (len >= sizeof((tenv *)0)->path) luaL_argerror(L, 1, "path too long");
  snprintf(file, sizeof file, "%s/data.mdb", path);
  if (stat(file, &st) != 0) {
    lua_pushfstring(L, "%s: no flume database here", path);
    return flume__lua_raise(L, -ENOENT, lua_tostring(L, -1));
  }
  tenv *e = lua_newuserdatauv(L, sizeof *e, 0);
  e->env = NULL; /* created closed, so __gc is always safe */
  memcpy(e->path, path, len + 1);
  luaL_setmetatable(L, TOOLS_ENV_MT);
  /* The runtime's open path, read-only: the same checks of the file. */
  int rc = flume__lmdb_open_env(e->path, 1, 0, MDB_NOTLS | MDB_NORDAHEAD,
                                TOOLS_MAX_DBS, &e->env);
  if (rc == FLUME_ENOTFOUND) {
    lua_pushfstring(L, "%s: no flume database here", path);
    return flume__lua_raise(L, -ENOENT, lua_tostring(L, -1));
  }
  if (rc) return raise_err(L, rc, e->path);
  return 1;
}

static int l_env_close(lua_State *L) {
  tenv *e = luaL_checkudata(L, 1, TOOLS_ENV_MT);
  if (e->env) mdb_env_close(e->env);
  e->env = NULL;
  return 0;
}

static void push_hex64(lua_State *L, uint64_t v) {
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)v);
  lua_pushstring(L, hex);
}

/* One view record, at the top: { kind, version, since, hash }. */
static void push_record(lua_State *L, const MDB_val *v) {
  const unsigned char *p = v->mv_data;
  int64_t version, since;
  uint64_t hash;
  memcpy(&version, p + 1, 8);
  memcpy(&since, p + 9, 8);
  memcpy(&hash, p + 17, 8);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, p[0] < sizeof kind_names / sizeof *kind_names &&
                            kind_names[p[0]]
                        ? kind_names[p[0]]
                        : "unknown");
  lua_setfield(L, -2, "kind");
  lua_pushinteger(L, version);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, since);
  lua_setfield(L, -2, "since");
  push_hex64(L, hash);
  lua_setfield(L, -2, "hash");
}

/* env:meta() -> { format, codec, views = { name = record } }. Raises
 * ECORRUPT for a folder whose LMDB environment has no flume metadata. */
static int l_env_meta(lua_State *L) {
  tenv *e = check_env(L);
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_cursor *cur;
  MDB_val k, v;
  int rc = begin(e, &txn);
  if (rc) return raise_mdb(L, e, rc);
  rc = mdb_dbi_open(txn, "t:meta", 0, &dbi);
  if (rc == 0) rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc) {
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND) rc = MDB_INVALID; /* open checks this first */
    return raise_mdb(L, e, rc);
  }
  lua_createtable(L, 0, 3);
  lua_newtable(L);
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    const char *key = k.mv_data;
    if (flume__lmdb_unseal(e->path, "t:meta", &k, &v) != 0) {
      mdb_cursor_close(cur);
      mdb_txn_abort(txn);
      return raise_err(L, FLUME_ECORRUPT, e->path);
    }
    if (k.mv_size > 5 && memcmp(key, "view:", 5) == 0) {
      if (v.mv_size != RECORD_SIZE) continue;
      lua_pushlstring(L, key + 5, k.mv_size - 5);
      push_record(L, &v);
      lua_settable(L, -3);
    } else if ((k.mv_size == 6 && memcmp(key, "format", 6) == 0) ||
               (k.mv_size == 5 && memcmp(key, "codec", 5) == 0)) {
      lua_pushlstring(L, key, k.mv_size);
      lua_pushlstring(L, v.mv_data, v.mv_size);
      lua_settable(L, -4);
    }
  }
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  if (rc != MDB_NOTFOUND) return raise_mdb(L, e, rc);
  lua_setfield(L, -2, "views");
  return 1;
}

static int open_log(MDB_txn *txn, MDB_dbi *dbi) {
  return mdb_dbi_open(txn, "log", MDB_INTEGERKEY, dbi);
}

/* env:log() -> since (the last seq, -1 when empty), entries */
static int l_env_log(lua_State *L) {
  tenv *e = check_env(L);
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_stat st;
  MDB_cursor *cur;
  MDB_val k, v;
  int64_t last = -1;
  int rc = begin(e, &txn);
  if (rc) return raise_mdb(L, e, rc);
  if ((rc = open_log(txn, &dbi)) || (rc = mdb_stat(txn, dbi, &st)) ||
      (rc = mdb_cursor_open(txn, dbi, &cur))) {
    mdb_txn_abort(txn);
    return raise_mdb(L, e, rc);
  }
  rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
  if (rc == 0 && k.mv_size == sizeof(size_t)) {
    size_t s;
    memcpy(&s, k.mv_data, sizeof s);
    last = (int64_t)s;
  }
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  if (rc && rc != MDB_NOTFOUND) return raise_mdb(L, e, rc);
  lua_pushinteger(L, last);
  lua_pushinteger(L, (lua_Integer)st.ms_entries);
  return 2;
}

/* env:read(from, to, reverse, limit, seqs, vals) -> n: up to limit entries
 * with from <= seq <= to (from the top with reverse) into seqs[1..n] and
 * vals[1..n], as the bytes stored. One short read transaction. */
static int l_env_read(lua_State *L) {
  tenv *e = check_env(L);
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
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_cursor *cur;
  int rc = begin(e, &txn);
  if (rc) return raise_mdb(L, e, rc);
  if ((rc = open_log(txn, &dbi)) || (rc = mdb_cursor_open(txn, dbi, &cur))) {
    mdb_txn_abort(txn);
    return raise_mdb(L, e, rc);
  }
  size_t start = (size_t)(reverse ? to : from);
  MDB_val k = {sizeof start, &start}, v;
  if (reverse) {
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
      rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    else if (rc == 0) {
      size_t at;
      memcpy(&at, k.mv_data, sizeof at);
      if (at > start) rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
  } else {
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  }
  lua_Integer n = 0;
  while (rc == 0 && n < limit) {
    size_t s;
    memcpy(&s, k.mv_data, sizeof s);
    if ((lua_Integer)s < from || (lua_Integer)s > to) break;
    if (flume__lmdb_unseal(e->path, "log", &k, &v) != 0) {
      mdb_cursor_close(cur);
      mdb_txn_abort(txn);
      return raise_err(L, FLUME_ECORRUPT, e->path);
    }
    n++;
    lua_pushinteger(L, (lua_Integer)s);
    lua_rawseti(L, 6, n);
    lua_pushlstring(L, v.mv_data, v.mv_size);
    lua_rawseti(L, 7, n);
    rc = mdb_cursor_get(cur, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
  }
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  if (rc && rc != MDB_NOTFOUND) return raise_mdb(L, e, rc);
  lua_pushinteger(L, n);
  return 1;
}

/* env:tables() -> { name = { entries, bytes } } for every table in the
 * environment, by its LMDB name ("log", "t:meta", "t:v:<view>"). */
static int l_env_tables(lua_State *L) {
  tenv *e = check_env(L);
  MDB_txn *txn;
  MDB_dbi main;
  MDB_cursor *cur;
  MDB_val k, v;
  int rc = begin(e, &txn);
  if (rc) return raise_mdb(L, e, rc);
  if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) ||
      (rc = mdb_cursor_open(txn, main, &cur))) {
    mdb_txn_abort(txn);
    return raise_mdb(L, e, rc);
  }
  lua_newtable(L);
  char name[512];
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    MDB_dbi dbi;
    MDB_stat st;
    if (k.mv_size >= sizeof name) continue;
    memcpy(name, k.mv_data, k.mv_size);
    name[k.mv_size] = '\0';
    if (memchr(name, '\0', k.mv_size)) continue;
    unsigned flags = strcmp(name, "log") == 0 ? MDB_INTEGERKEY : 0;
    if (mdb_dbi_open(txn, name, flags, &dbi) || mdb_stat(txn, dbi, &st))
      continue; /* not a table */
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)st.ms_entries);
    lua_setfield(L, -2, "entries");
    lua_pushinteger(L, (lua_Integer)((st.ms_branch_pages + st.ms_leaf_pages +
                                      st.ms_overflow_pages) *
                                     st.ms_psize));
    lua_setfield(L, -2, "bytes");
    lua_setfield(L, -2, name);
  }
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  if (rc != MDB_NOTFOUND) return raise_mdb(L, e, rc);
  return 1;
}

/* env:info() -> { page_size, map_size, used (bytes of pages in use),
 * readers, max_readers } */
static int l_env_info(lua_State *L) {
  tenv *e = check_env(L);
  MDB_envinfo in;
  MDB_stat st;
  int rc = mdb_env_info(e->env, &in);
  if (rc == 0) rc = mdb_env_stat(e->env, &st);
  if (rc) return raise_mdb(L, e, rc);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, st.ms_psize);
  lua_setfield(L, -2, "page_size");
  lua_pushinteger(L, (lua_Integer)in.me_mapsize);
  lua_setfield(L, -2, "map_size");
  lua_pushinteger(L, (lua_Integer)((in.me_last_pgno + 1) * st.ms_psize));
  lua_setfield(L, -2, "used");
  lua_pushinteger(L, in.me_numreaders);
  lua_setfield(L, -2, "readers");
  lua_pushinteger(L, in.me_maxreaders);
  lua_setfield(L, -2, "max_readers");
  return 1;
}

typedef struct copy_job {
  MDB_env *env;     /* the source */
  const char *dest; /* the destination folder */
  unsigned flags;   /* MDB_CP_COMPACT or 0 */
  int rc;           /* mdb_env_copy2's result */
  atomic_int done;  /* set once the copy has returned */
} copy_job;

static void *copy_thread(void *arg) {
  copy_job *j = arg;
  j->rc = mdb_env_copy2(j->env, j->dest, j->flags);
  atomic_store(&j->done, 1);
  return NULL;
}

static void nap(double secs) {
  struct timespec ts = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
  nanosleep(&ts, NULL);
}

/* env:copy(dest, compact, progress) copies the environment into the
 * existing, empty folder dest as of one read transaction (a consistent
 * snapshot, however long the copy takes and whoever writes meanwhile).
 * compact: leave out free pages. progress: nil, or a function called with
 * the bytes written so far every tenth of a second while the copy runs on
 * its own thread. An error raised by progress is raised again once the copy
 * has finished. */
static int l_env_copy(lua_State *L) {
  tenv *e = check_env(L);
  const char *dest = luaL_checkstring(L, 2);
  unsigned flags = lua_toboolean(L, 3) ? MDB_CP_COMPACT : 0;
  int has_progress = !lua_isnoneornil(L, 4);
  if (has_progress) luaL_checktype(L, 4, LUA_TFUNCTION);
  copy_job j = {e->env, dest, flags, 0, 0};
  pthread_t th;
  int rc = pthread_create(&th, NULL, copy_thread, &j);
  if (rc) return flume__lua_raise(L, -rc, "cannot start the copy");
  char file[4200];
  snprintf(file, sizeof file, "%s/data.mdb", dest);
  int failed = 0;
  while (!atomic_load(&j.done)) {
    nap(0.1);
    if (has_progress && !failed && !atomic_load(&j.done)) {
      struct stat st;
      lua_pushvalue(L, 4);
      lua_pushinteger(L, stat(file, &st) == 0 ? (lua_Integer)st.st_size : 0);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) failed = 1; /* error on top */
    }
  }
  pthread_join(th, NULL);
  if (failed) return lua_error(L);
  if (j.rc) return flume__lua_raise(L, flume__lmdb_map_err(j.rc), dest);
  return 0;
}

/* ---- verify: the whole file, in a child process ------------------------ */

typedef struct verify_out {
  int fd;             /* the pipe to the parent */
  char table[160];    /* the table being walked, for the crash message */
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
 * table of dir (flume__lmdb_verify) in a child process: LMDB may crash on
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
    /* The child: its own LMDB environment (none is inherited in use). */
    close(fds[0]);
    signal(SIGPIPE, SIG_IGN);
    /* LMDB's own assertion message would land on the command's stderr
     * beside ours: the crash is reported from its signal instead. */
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) dup2(null, 2);
    verify_out o = {fds[1], ""};
    int rc = flume__lmdb_verify(path, on_verify, &o);
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

static const luaL_Reg env_methods[] = {
    {"meta", l_env_meta},     {"log", l_env_log},   {"read", l_env_read},
    {"tables", l_env_tables}, {"info", l_env_info}, {"copy", l_env_copy},
    {"close", l_env_close},   {NULL, NULL}};

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

__attribute__((visibility("default"))) int luaopen_flume_tools(lua_State *L);

__attribute__((visibility("default"))) int luaopen_flume_tools(lua_State *L) {
  if (luaL_newmetatable(L, TOOLS_ENV_MT)) {
    luaL_newlib(L, env_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_env_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_env_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlib(L, tools_funcs);
  lua_pushstring(L, FLUME__FORMAT);
  lua_setfield(L, -2, "format");
  return 1;
}
