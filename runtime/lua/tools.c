/*
 * flume.tools: what the `flume` command needs beyond the module, a few
 * process helpers Lua lacks: isatty, the terminal's width, a SIGINT flag,
 * an interruptible sleep, stat and mkdir.
 *
 * The command reads databases through the module's read-only handles
 * (flume.open(dir, { readonly = true })) and looks after them through
 * their methods (storage, tables, backup, verify: runtime/admin.c). One
 * thing is still here, marked below: the views' records, until the
 * database lists its views itself.
 *
 * It lives in the same library as flume.core and is reached through
 * package.preload: `require "flume.tools"` after `require "flume"`
 * (core.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lua/binding.h"

/* ---- TEMPORARY: the views' records -------------------------------------
 * `flume status` lists the views the database has records of (kind,
 * version, since, script hash). Until the view catalogue lists them
 * (db:views()), this reads the "view:" records of the metadata through the
 * handle's own store, in one read transaction. To be replaced by the
 * catalogue: nothing else here touches the store. */

static void push_hex64(lua_State *L, uint64_t v) {
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)v);
  lua_pushstring(L, hex);
}

/* tools.view_records(db) -> { name = { kind, version, since, hash } }, db
 * being flume.core's handle (a flume.db's _c), read-only or not. */
static int l_view_records(lua_State *L) {
  flume_db *db = flume__lua_check_db(L, 1)->db;
  const flume__store_ops *ops = flume__db_ops(db);
  static const size_t plen = sizeof FLUME__META_VIEW_PREFIX - 1;
  flume__txn *txn;
  flume__table meta;
  flume__cursor *cur;
  flume__slice k = {NULL, 0}, v;
  lua_settop(L, 1);
  int rc = ops->txn_begin(flume__db_store(db), FLUME__TXN_READ, &txn);
  if (rc) return flume__lua_raise(L, rc, NULL);
  rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  if (rc == 0) rc = ops->cursor_open(txn, meta, &cur);
  if (rc) {
    ops->txn_abort(txn);
    return flume__lua_raise(L, rc, NULL);
  }
  lua_newtable(L);
  for (rc = ops->cursor_get(cur, FLUME__FIRST, &k, &v); rc == 0;
       rc = ops->cursor_get(cur, FLUME__NEXT, &k, &v)) {
    flume__record r;
    if (k.size <= plen || memcmp(k.data, FLUME__META_VIEW_PREFIX, plen) != 0 ||
        flume__record_unpack(v, &r) != 0)
      continue;
    lua_pushlstring(L, (const char *)k.data + plen, k.size - plen);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, flume__record_kind_name(r.kind));
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, r.version);
    lua_setfield(L, -2, "version");
    lua_pushinteger(L, r.since);
    lua_setfield(L, -2, "since");
    push_hex64(L, r.hash);
    lua_setfield(L, -2, "hash");
    lua_settable(L, 2);
  }
  ops->cursor_close(cur);
  ops->txn_abort(txn);
  if (rc != FLUME_ENOTFOUND) return flume__lua_raise(L, rc, NULL);
  return 1;
}

/* ---- END TEMPORARY ------------------------------------------------------ */

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

static const luaL_Reg tools_funcs[] = {{"view_records", l_view_records},
                                       {"trap_sigint", l_trap_sigint},
                                       {"interrupted", l_interrupted},
                                       {"sleep", l_sleep},
                                       {"isatty", l_isatty},
                                       {"columns", l_columns},
                                       {"stat", l_stat},
                                       {"mkdir", l_mkdir},
                                       {NULL, NULL}};

int luaopen_flume_tools(lua_State *L) {
  luaL_newlib(L, tools_funcs);
  /* the format this flume reads: a database that opens has it */
  lua_pushstring(L, FLUME__FORMAT);
  lua_setfield(L, -2, "format");
  return 1;
}
