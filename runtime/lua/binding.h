/* What the Lua binding's files share (lua_core.c, lua_views.c). */
#ifndef FLUME_RUNTIME_LUA_CORE_H
#define FLUME_RUNTIME_LUA_CORE_H

#include <lauxlib.h>
#include <lua.h>

#include "internal.h"

#define CTX_KEY "flume.core.ctx"
#define DB_MT "flume.core.db"
#define WATCH_MT "flume.core.watch"
#define TIMER_MT "flume.core.timer"

typedef struct lctx {
  uv_loop_t loop;    /* the loop every database of this state uses */
  lua_State *L;      /* the thread running the loop; NULL when not running */
  int dispatch_ref;  /* registry ref of the Lua dispatcher */
  int closing;       /* lua_close is under way: call no Lua */
} lctx;

typedef struct ldb {
  flume_db *db;      /* NULL once closing */
  lctx *ctx;         /* the state's context */
} ldb;

/* One pending callback into Lua. */
typedef struct lreq {
  lctx *ctx;         /* the state's context */
  int cb_ref;        /* registry ref of the Lua function, or LUA_NOREF */
} lreq;

lctx *flume__lua_ctx(lua_State *L);
/* Raises `flume: ENAME: message[: detail]`. */
int flume__lua_raise(lua_State *L, int err, const char *detail);
void flume__lua_push_err(lua_State *L, int err);
ldb *flume__lua_check_db(lua_State *L, int idx);
/* A pending callback for the function at idx (none if nil). */
lreq *flume__lua_new_req(lua_State *L, lctx *c, int idx);
/* Calls r's Lua callback with the nargs values on top of c->L. */
void flume__lua_dispatch(lreq *r, int nargs, int once);
int flume__lua_can_call(lctx *c);
void flume__lua_release(lreq *r);
/* Adds the view methods to the database metatable's method table (at the
 * top of the stack). */
void flume__lua_views_register(lua_State *L);
/* core.key_encode(key) -> the key's order-preserving encoding. */
int flume__lua_key_encode(lua_State *L);
/* Sets `errors` on the module table at the top of the stack: for each code
 * the core knows, errors[NAME] = { code, name, message } (lua/errors.c). */
void flume__lua_errors_register(lua_State *L);

#endif
