/*
 * flume.tools: what the `flume` command needs beyond the module, a few
 * process helpers Lua lacks: isatty, the terminal's width, a SIGINT flag,
 * an interruptible sleep, stat and mkdir.
 *
 * Nothing here touches a database: the command reads them through the
 * module's read-only handles (flume.open(dir, { readonly = true })), lists
 * their views with db:views() and looks after them with their methods
 * (storage, tables, backup, verify: runtime/admin.c).
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

static const luaL_Reg tools_funcs[] = {{"trap_sigint", l_trap_sigint},
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
