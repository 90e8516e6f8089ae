/*
 * What the parts of the Lua binding (flume.core) share.
 *
 * The parts, and whom each calls (never back up the list, so there is no
 * circle between them):
 *
 *   req.c    requests (one lifecycle, one finish) and raising errors
 *   loop.c   the state's context: the loop, run/stop, timers, the clock
 *            → req
 *   codec.c  msgpack encode/decode and the key codec → req
 *   db.c     the database handle: open, the one close, appends, log
 *            reads, watches → req, loop
 *   views.c  the view methods of a database → req, codec, db
 *   admin.c  storage, tables, backup, verify (runtime/admin.c) → req, db
 *   tools.c  flume.tools, the command's process helpers → req
 *   core.c   the entry point: lists the parts above and registers them
 *
 * Per lua_State there is one context (a userdata anchored in the registry,
 * so it is collected only by lua_close): the uv loop and the function that
 * dispatches callbacks into coroutines. Callbacks run on the Lua thread that
 * is running the loop.
 */
#ifndef FLUME_RUNTIME_LUA_BINDING_H
#define FLUME_RUNTIME_LUA_BINDING_H

#include <lauxlib.h>
#include <lua.h>

#include "buf.h"
#include "internal.h"

#define CTX_KEY "flume.core.ctx"
#define DB_MT "flume.core.db"
#define WATCH_MT "flume.core.watch"

struct ltimer;

typedef struct lctx {
  uv_loop_t *loop;   /* the loop every database of this state uses: &own,
                        or luv's once shared (core.share_loop) */
  uv_loop_t own;     /* flume's own loop; closed once the loop is shared */
  lua_State *L;      /* the thread running the loop from core.run; NULL when
                        core.run is not running it */
  lua_State *main;   /* the state's main thread: where callbacks run when
                        luv's uv.run() runs the shared loop */
  int shared;        /* the loop is luv's (and luv runs it too) */
  int foreign_ref;  /* registry ref of a function whose result is not nil
                        while luv's uv.run() runs (uv.loop_mode), once
                        shared or bridged; else LUA_NOREF */
  int live;          /* databases not yet closed, and core.timer handles
                        not yet closed: what the shared loop must finish at
                        lua_close before luv closes it */
  int dispatch_ref;  /* registry ref of the Lua dispatcher */
  int stretch_ref;   /* registry ref of the dispatcher of a stretch of
                        append callbacks with one outcome, or LUA_NOREF */
  int closing;       /* lua_close is under way: call no Lua */
  struct ltimer *timers; /* pending core.timer()s, to cancel at lua_close */
} lctx;

/* The thread a completion calls its callback on: the one running the loop
 * under core.run, the main thread when luv's uv.run() runs the shared loop
 * (a completion there means luv is running it), NULL when Lua may not be
 * called (lua_close is under way). */
static inline lua_State *flume__lua_thread(const lctx *c) {
  if (c->closing) return NULL;
  if (c->L != NULL) return c->L;
  return c->shared ? c->main : NULL;
}

/* Whether Lua may be called now: the loop is being run from Lua. */
static inline int flume__lua_can_call(const lctx *c) {
  return flume__lua_thread(c) != NULL;
}

typedef struct ldb {
  flume_db *db;      /* NULL once closing */
  lctx *ctx;         /* the state's context */
  struct lappend *app; /* its single appends in flight (db.c); NULL once
                          closing */
} ldb;

/* ---- requests (req.c) ----------------------------------------------------
 *
 * A request is a Lua callback waiting for the loop: created when an
 * asynchronous call starts, ended exactly once, by flume__lua_req_finish
 * (its completion: results pushed, the callback dispatched) or
 * flume__lua_req_drop (no completion will come, or nobody wants it). Both
 * go through one function: the callback runs at most once, the registry
 * refs are released, and the request's memory is given back. A request
 * that completes more than once (a watch) calls flume__lua_req_notify
 * before its last completion. Every completion callback of the binding is
 * then a line or three. */

typedef struct lreq lreq;

/* Pushes a callback's arguments for `status` and the result `res` onto L;
 * returns how many. */
typedef int (*flume__lua_push_fn)(lua_State *L, int status, const void *res);

struct lreq {
  lctx *ctx;         /* the state's context */
  int cb_ref;        /* registry ref of the Lua callback, or LUA_NOREF */
  int keep_ref;      /* registry ref of a value kept alive until the end
                        (the watch's userdata, a timer's cancel box), or
                        LUA_NOREF */
  int done;          /* ended: finish and drop do nothing more */
  void (*release)(lreq *r); /* gives r's memory back once ended (may free
                               r); NULL when a userdata owns it */
};

/* A request for the callback at cb_idx (none if nil), allocated, released
 * with free(); NULL when out of memory (the caller raises ENOMEM once it
 * has let go of what it holds). */
lreq *flume__lua_req_new(lua_State *L, lctx *c, int cb_idx);
/* Sets up a request that lives inside something else: no refs yet. */
void flume__lua_req_init(lreq *r, lctx *c, void (*release)(lreq *r));
/* Refs the callback at cb_idx (none if nil) and, with keep_idx nonzero,
 * the value at keep_idx as the one kept alive. */
void flume__lua_req_hold(lua_State *L, lreq *r, int cb_idx, int keep_idx);
/* Calls r's callback (if Lua may be called) without ending r. */
void flume__lua_req_notify(lreq *r, int status, flume__lua_push_fn push,
                           const void *res);
/* r's completion, from the loop: calls its callback once with what push
 * pushes (none when push is NULL) if Lua may be called, then ends r. */
void flume__lua_req_finish(lreq *r, int status, flume__lua_push_fn push,
                           const void *res);
/* Ends r without calling its callback: the call failed before it started,
 * or it was cancelled. L is the calling thread (NULL: touch no Lua, the
 * state is closing). Nothing once r has ended. */
void flume__lua_req_drop(lua_State *L, lreq *r);
/* A flume__lua_push_fn: the error message, or nil on success. */
int flume__lua_push_status(lua_State *L, int status, const void *res);

/* ---- errors (req.c) ------------------------------------------------------ */

/* Pushes `flume: ENAME: message[: detail]`. For ECORRUPT and EFORMAT the
 * store's own detail (what is damaged, and where) replaces `detail` when
 * it has one. */
void flume__lua_push_error(lua_State *L, int err, const char *detail);
/* Raises what flume__lua_push_error pushes. */
int flume__lua_raise(lua_State *L, int err, const char *detail);

/* ---- the context (loop.c) ------------------------------------------------ */

lctx *flume__lua_ctx(lua_State *L);

/* ---- codecs (codec.c) ---------------------------------------------------- */

/* Appends the key at idx's order-preserving encoding to b; raises (b
 * freed) if the value is not a key. */
void flume__lua_check_key(lua_State *L, int idx, flume__buf *b);

/* ---- databases (db.c) ---------------------------------------------------- */

/* The open database at idx; raises ECLOSED once closed. */
ldb *flume__lua_check_db(lua_State *L, int idx);

/* ---- the parts, for the entry point (core.c) -----------------------------
 * Each adds its functions to the module table at `module` and its methods
 * of a database to the method table at `methods`. */

void flume__lua_loop_register(lua_State *L, int module, int methods);
void flume__lua_codec_register(lua_State *L, int module, int methods);
void flume__lua_db_register(lua_State *L, int module, int methods);
void flume__lua_views_register(lua_State *L, int module, int methods);
void flume__lua_admin_register(lua_State *L, int module, int methods);
/* core.errors: for each code the core knows, errors[NAME] = { code, name,
 * message } (errors.c). */
void flume__lua_errors_register(lua_State *L, int module, int methods);
void flume__lua_json_register(lua_State *L, int module, int methods);

/* flume.tools (tools.c), reached through package.preload. */
int luaopen_flume_tools(lua_State *L);

#endif
