/*
 * Requests: a Lua callback waiting for the loop, with one lifecycle (the
 * shape of luv's lreq.c: set up, fulfil, clean up). Whatever completes, a
 * write, a view set up, a wait, a close, a timer, a watch's last event,
 * goes through req_end: the callback is called at most once, the registry
 * refs are released after it, and the memory is given back last.
 *
 * And errors: every message the binding raises or passes to a callback is
 * made by flume__lua_push_error.
 */
#include <stdio.h>
#include <stdlib.h>

#include "lua/binding.h"

/* ---- errors -------------------------------------------------------------- */

void flume__lua_push_error(lua_State *L, int err, const char *detail) {
  /* No position prefix: messages start with "flume:" wherever raised. */
  char store[512]; /* what the store found damaged, and where */
  if ((err == FLUME_ECORRUPT || err == FLUME_EFORMAT) &&
      flume__store_detail(store, sizeof store))
    detail = store;
  if (detail)
    lua_pushfstring(L, "flume: %s: %s: %s", flume_err_name(err),
                    flume_strerror(err), detail);
  else
    lua_pushfstring(L, "flume: %s: %s", flume_err_name(err),
                    flume_strerror(err));
}

int flume__lua_raise(lua_State *L, int err, const char *detail) {
  flume__lua_push_error(L, err, detail);
  return lua_error(L);
}

int flume__lua_push_status(lua_State *L, int status, const void *res) {
  (void)res;
  if (status) flume__lua_push_error(L, status, NULL);
  else lua_pushnil(L);
  return 1;
}

/* ---- requests ------------------------------------------------------------ */

static void free_req(lreq *r) { free(r); }

void flume__lua_req_init(lreq *r, lctx *c, void (*release)(lreq *r)) {
  r->ctx = c;
  r->cb_ref = LUA_NOREF;
  r->keep_ref = LUA_NOREF;
  r->done = 0;
  r->release = release;
}

void flume__lua_req_hold(lua_State *L, lreq *r, int cb_idx, int keep_idx) {
  if (keep_idx) {
    lua_pushvalue(L, keep_idx);
    r->keep_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (!lua_isnoneornil(L, cb_idx)) {
    lua_pushvalue(L, cb_idx);
    r->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

lreq *flume__lua_req_new(lua_State *L, lctx *c, int cb_idx) {
  lreq *r = malloc(sizeof *r);
  if (r == NULL) return NULL;
  flume__lua_req_init(r, c, free_req);
  flume__lua_req_hold(L, r, cb_idx, 0);
  return r;
}

/* What a call into Lua needs, for call_cb. */
typedef struct call_args {
  lctx *c;                 /* the state's context: its dispatcher */
  int cb;                  /* registry ref of the callback */
  int status;              /* for push */
  flume__lua_push_fn push; /* pushes the callback's arguments, or NULL */
  const void *res;         /* for push */
} call_args;

static int call_cb(lua_State *L) {
  call_args *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->c->dispatch_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->cb);
  int nargs = a->push ? a->push(L, a->status, a->res) : 0;
  lua_call(L, nargs + 1, 0);
  return 0;
}

/*
 * Calls the callback `cb` through the dispatcher, on L, with what push
 * pushes. All of it is protected, pushing too: an error (out of memory)
 * must not unwind through libuv's frames. The dispatcher catches errors
 * of callbacks itself; one of its own is a bug worth seeing rather than a
 * silent loss.
 */
static void dispatch(lua_State *L, lctx *c, int cb, int status,
                     flume__lua_push_fn push, const void *res) {
  call_args a = {c, cb, status, push, res};
  lua_pushcfunction(L, call_cb);
  lua_pushlightuserdata(L, &a);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "flume: dispatcher failed: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/*
 * The one end of every request. With `call` and a thread L, the callback
 * runs first (r is already marked ended, so a cancel from inside it does
 * nothing); then r's memory goes back (r may be gone after that), then
 * the refs, so what r keeps alive outlives its release. Without L the
 * state is closing: no Lua is touched, lua_close frees the registry.
 */
static void req_end(lua_State *L, lreq *r, int call, int status,
                    flume__lua_push_fn push, const void *res) {
  if (r->done) return;
  r->done = 1;
  lctx *c = r->ctx;
  int cb = r->cb_ref, keep = r->keep_ref;
  r->cb_ref = r->keep_ref = LUA_NOREF;
  if (L && call && cb != LUA_NOREF) dispatch(L, c, cb, status, push, res);
  if (r->release) r->release(r);
  if (L) {
    luaL_unref(L, LUA_REGISTRYINDEX, cb);
    luaL_unref(L, LUA_REGISTRYINDEX, keep);
  }
}

void flume__lua_req_notify(lreq *r, int status, flume__lua_push_fn push,
                           const void *res) {
  lctx *c = r->ctx;
  if (!r->done && r->cb_ref != LUA_NOREF && flume__lua_can_call(c))
    dispatch(flume__lua_thread(c), c, r->cb_ref, status, push, res);
}

void flume__lua_req_finish(lreq *r, int status, flume__lua_push_fn push,
                           const void *res) {
  lctx *c = r->ctx;
  /* Completions come from the loop, which runs under core.run (c->L set),
   * luv's uv.run() (a shared loop), or lua_close (closing). */
  req_end(flume__lua_thread(c), r, 1, status, push, res);
}

void flume__lua_req_drop(lua_State *L, lreq *r) {
  req_end(L, r, 0, 0, NULL, NULL);
}
