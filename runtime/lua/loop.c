/*
 * The state's context and its loop: core.run/stop/running, the dispatcher
 * every callback goes through, timers and the clock, and the loop shared
 * with luv (core.share_loop).
 *
 * The context is created by the first require of flume.core and collected
 * by lua_close only (the registry holds it; it is made before any database,
 * so its __gc runs after theirs). That __gc finishes what the databases'
 * __gc started (their closes) without calling Lua, cancels the timers that
 * would only keep the loop alive, and closes the loop.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include <dlfcn.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lua/binding.h"

typedef struct ltimer {
  uv_timer_t t;          /* the timer; freed by its close callback */
  lreq req;              /* the Lua callback; keeps the box alive */
  struct ltimer **box;   /* the cancel function's pointer to us */
  struct ltimer *next;   /* the context's next pending timer */
  struct ltimer **pprev; /* what points to us in that list */
} ltimer;

lctx *flume__lua_ctx(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  lctx *c = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return c;
}

/* ---- the context and the loop ------------------------------------------ */

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* A timer's callback could not run at lua_close; waiting for it would only
 * hold the exit up (forever, for math.huge). One whose callback is running
 * (os.exit inside it) has ended already and stays. */
static void drop_timers(lctx *c) {
  for (ltimer *lt = c->timers, *next; lt; lt = next) {
    next = lt->next;
    flume__lua_req_drop(NULL, &lt->req);
  }
}

static int ctx_gc(lua_State *L) {
  lctx *c = lua_touserdata(L, 1);
  c->closing = 1;
  c->L = NULL;
  /* A shared loop is luv's: the share's own __gc finished flume's part of
   * it, luv closes it. */
  if (c->shared) return 0;
  drop_timers(c);
  /* Databases closed by their own __gc finish closing here. */
  uv_run(c->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(c->loop) == UV_EBUSY) {
    uv_walk(c->loop, walk_close, NULL);
    uv_run(c->loop, UV_RUN_DEFAULT);
    uv_loop_close(c->loop);
  }
  return 0;
}

/* The context of this state, made on the first call. */
static void ctx_open(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  if (lua_isnil(L, -1)) {
    lctx *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->dispatch_ref = LUA_NOREF;
    c->stretch_ref = LUA_NOREF;
    c->foreign_ref = LUA_NOREF;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    c->main = lua_tothread(L, -1);
    lua_pop(L, 1);
    int rc = uv_loop_init(&c->own);
    if (rc) flume__lua_raise(L, rc, "cannot create the event loop");
    c->loop = &c->own;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  }
  lua_pop(L, 1);
}

/* Whether the loop is running: under core.run, or under luv's uv.run()
 * (its uv.loop_mode() is not nil) when the loop is luv's. With `any`,
 * also luv's uv.run() running its own loop beside flume's (the bridge):
 * a sync call there must not run flume's loop and hold luv's up. */
static int ctx_running(lua_State *L, lctx *c, int any) {
  if (c->L != NULL) return 1;
  if (c->foreign_ref == LUA_NOREF || !(c->shared || any)) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->foreign_ref);
  lua_call(L, 0, 1);
  int running = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return running;
}

/* core.run(mode): mode "default" | "once" | "nowait". Returns true while
 * the loop still has work. */
static int l_run(lua_State *L) {
  static const char *const modes[] = {"default", "once", "nowait", NULL};
  static const uv_run_mode umodes[] = {UV_RUN_DEFAULT, UV_RUN_ONCE,
                                       UV_RUN_NOWAIT};
  lctx *c = flume__lua_ctx(L);
  int mode = luaL_checkoption(L, 1, "default", modes);
  if (ctx_running(L, c, 0))
    return flume__lua_raise(L, FLUME_EBUSY,
                            "cannot run the loop from inside a callback (use "
                            "the async form, or call this inside "
                            "flume.spawn)");
  c->L = L;
  int more = uv_run(c->loop, umodes[mode]);
  c->L = NULL;
  lua_pushboolean(L, more);
  return 1;
}

static int l_running(lua_State *L) {
  lua_pushboolean(L, ctx_running(L, flume__lua_ctx(L), 1));
  return 1;
}

static int l_stop(lua_State *L) {
  uv_stop(flume__lua_ctx(L)->loop);
  return 0;
}

/* core.set_dispatch(fn [, stretch]): every callback is called as
 * fn(cb, ...); with `stretch`, a stretch of append callbacks with one
 * outcome is handed over at once, as stretch(fifo, from, n, err, first):
 * fifo[from .. from + n - 1] are the callbacks (nil where none), each to be
 * called as cb(err, nil) or cb(nil, first + its offset), and emptied. */
static int l_set_dispatch(lua_State *L) {
  lctx *c = flume__lua_ctx(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  if (c->dispatch_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, c->dispatch_ref);
  c->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (c->stretch_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, c->stretch_ref);
  c->stretch_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, 2)) {
    lua_pushvalue(L, 2);
    c->stretch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

/* ---- timers ------------------------------------------------------------ */

static void timer_closed(uv_handle_t *h) {
  ltimer *lt = h->data;
  lt->req.ctx->live--;
  free(lt);
}

/* The timer's request ended (fired, cancelled, or the state closing): the
 * cancel function forgets it, the context too, its handle closes. */
static void timer_release(lreq *r) {
  ltimer *lt = (ltimer *)((char *)r - offsetof(ltimer, req));
  *lt->box = NULL;
  if (lt->next) lt->next->pprev = lt->pprev;
  *lt->pprev = lt->next;
  uv_close((uv_handle_t *)&lt->t, timer_closed);
}

static void timer_fire(uv_timer_t *t) {
  ltimer *lt = t->data;
  flume__lua_req_finish(&lt->req, 0, NULL, NULL);
}

static int l_timer_cancel(lua_State *L) {
  ltimer **box = lua_touserdata(L, lua_upvalueindex(1));
  if (*box) flume__lua_req_drop(L, &(*box)->req);
  return 0;
}

/* core.timer(seconds, fn) -> cancel function */
static int l_timer(lua_State *L) {
  lctx *c = flume__lua_ctx(L);
  lua_Number secs = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!(secs >= 0)) /* negative or NaN */
    return flume__lua_raise(L, FLUME_EINVAL,
                            "seconds must be >= 0 (math.huge: forever)");
  ltimer **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  ltimer *lt = malloc(sizeof *lt);
  if (lt == NULL) return flume__lua_raise(L, FLUME_ENOMEM, NULL);
  flume__lua_req_init(&lt->req, c, timer_release);
  flume__lua_req_hold(L, &lt->req, 2, lua_gettop(L));
  *box = lt;
  lt->box = box;
  lt->next = c->timers;
  if (lt->next) lt->next->pprev = &lt->next;
  lt->pprev = &c->timers;
  c->timers = lt;
  uv_timer_init(c->loop, &lt->t);
  c->live++; /* until timer_closed */
  lt->t.data = lt;
  /* Past 2^63 ms (math.huge too) is forever: libuv clamps UINT64_MAX to
   * the end of time instead of wrapping, and the cast stays defined. */
  double msd = secs * 1000.0 + 0.5;
  uint64_t ms = msd >= 9223372036854775808.0 ? UINT64_MAX : (uint64_t)msd;
  uv_timer_start(&lt->t, timer_fire, ms, 0);
  lua_pushcclosure(L, l_timer_cancel, 1);
  return 1;
}

static int l_hrtime(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

/* ---- another event loop drives flume's ------------------------------ */

/* core.backend_fd() -> the fd that becomes readable when flume's loop has
 * something to do (libuv's epoll fd), for another loop to poll. */
static int l_backend_fd(lua_State *L) {
  lua_pushinteger(L, uv_backend_fd(flume__lua_ctx(L)->loop));
  return 1;
}

/* core.backend_timeout() -> seconds until flume's loop must run even with
 * its fd quiet (its next timer), 0 when it has work now, math.huge when
 * it waits for its fd alone, or nil when it has nothing to do at all.
 *
 * Nothing to do is not "now": libuv's uv_backend_timeout says 0 for a
 * loop that is not alive, and uv_run returns from such a loop at once,
 * without polling. A driver that took that 0 as "step now" stepped in a
 * loop that never waited; one that re-armed a 0 ms luv timer from that
 * timer's own callback never left libuv's timer phase (libuv 1.44 runs a
 * timer due now again in the same pass): uv.run() hung, luv's own timers
 * and sockets starved. nil tells it to wait for the next flume call. */
static int l_backend_timeout(lua_State *L) {
  lctx *c = flume__lua_ctx(L);
  if (!uv_loop_alive(c->loop)) {
    lua_pushnil(L);
    return 1;
  }
  uv_update_time(c->loop);
  int ms = uv_backend_timeout(c->loop);
  if (ms < 0) lua_pushnumber(L, HUGE_VAL);
  else lua_pushnumber(L, ms / 1000.0);
  return 1;
}

/* ---- luv's loop, shared ------------------------------------------------
 *
 * flume's handles can live on luv's uv_loop_t, so that one uv.run() runs
 * both with no bridge between two loops. What that takes:
 *
 * - The same libuv. A loop is one library's data: luv built with a libuv
 *   of its own (the luv rock bundles one by default) would run flume's
 *   handles with another copy's code and thread pool.
 *   The loop's work-queue wake-up (wq_async's callback) lies in the copy
 *   that made the loop; it must be the libuv flume calls.
 * - luv's loop: luv.h's public luv_ctx_t, kept in the registry under
 *   "luv_context", whose first member is the loop (in every luv since
 *   1.30); luv's `uv.loop_mode()` says whether uv.run() is running it.
 * - Nothing of flume's on its own loop yet: handles cannot move.
 * - Callbacks: completing on a loop luv's uv.run() runs, they run on the
 *   main thread, as luv's do (flume__lua_thread).
 * - lua_close: luv's loop __gc closes every handle on the loop with luv's
 *   close callback, which takes a handle's data for luv's own. flume's
 *   must all be closed before, so sharing makes an object whose __gc
 *   finishes them: made after luv's loop, it is finalized before it (Lua
 *   finalizes in the reverse order of marking), and after every database
 *   opened since (finalized before it, so their closes have started). */

static void count_handle(uv_handle_t *h, void *arg) {
  (void)h;
  ++*(int *)arg;
}

/* The base address of the object (executable or library) holding code at
 * fn, or NULL. */
static void *object_of(void (*fn)(void)) {
  Dl_info info;
  void *p;
  memcpy(&p, &fn, sizeof p); /* ISO C has no function-to-object cast */
  if (p == NULL || !dladdr(p, &info)) return NULL;
  return info.dli_fbase;
}

static int share_gc(lua_State *L) {
  lctx *c = *(lctx **)lua_touserdata(L, 1);
  c->closing = 1;
  c->L = NULL;
  drop_timers(c);
  /* Closes started by the databases' __gc, and the timers', finish. */
  while (c->live > 0)
    if (!uv_run(c->loop, UV_RUN_ONCE) && c->live > 0) break;
  return 0;
}

/* core.share_loop(uv): flume's handles live on luv's loop from now on. */
static int l_share_loop(lua_State *L) {
  lctx *c = flume__lua_ctx(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "loop_mode");
  lua_getfield(L, LUA_REGISTRYINDEX, "luv_context");
  uv_loop_t **luv = lua_touserdata(L, -1);
  if (!lua_isfunction(L, -2) || luv == NULL ||
      lua_rawlen(L, -1) < sizeof *luv || *luv == NULL)
    return flume__lua_raise(L, FLUME_EINVAL,
                            "not luv's module, or a luv without a loop");
  uv_loop_t *loop = *luv;
  lua_pop(L, 1);
  if (c->shared) {
    if (loop == c->loop) return 0;
    return flume__lua_raise(L, FLUME_EBUSY, "flume shares another loop");
  }
  void (*ours)(void) = (void (*)(void))uv_run;
  void (*theirs)(void) = (void (*)(void))loop->wq_async.async_cb;
  if (object_of(ours) == NULL || object_of(ours) != object_of(theirs))
    return flume__lua_raise(
        L, FLUME_EINVAL,
        "luv runs on another copy of libuv than flume, and a loop cannot "
        "cross copies (require(\"flume.luv\").attach(uv) bridges them)");
  if (c->foreign_ref != LUA_NOREF)
    return flume__lua_raise(L, FLUME_EBUSY,
                            "flume is bridged to luv already (detach first)");
  int handles = 0;
  uv_walk(c->loop, count_handle, &handles);
  if (handles || c->live || uv_loop_close(&c->own))
    return flume__lua_raise(L, FLUME_EBUSY,
                            "flume's loop has handles already (a database, "
                            "a timer): share the loop before opening any");
  c->loop = loop;
  c->shared = 1;
  c->foreign_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* uv.loop_mode */
  lctx **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = c;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, share_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY ".share");
  return 0;
}

/* core.foreign(fn | nil): while fn() is not nil another loop runs and
 * calls flume from its callbacks (the luv bridge's uv.loop_mode); sync
 * calls there raise EBUSY (core.running). Not for a shared loop. */
static int l_foreign(lua_State *L) {
  lctx *c = flume__lua_ctx(L);
  if (!lua_isnil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  if (c->shared) return 0;
  luaL_unref(L, LUA_REGISTRYINDEX, c->foreign_ref);
  lua_settop(L, 1);
  c->foreign_ref = lua_isnil(L, 1) ? LUA_NOREF
                                   : luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* core.shared() -> whether the loop is luv's. */
static int l_shared(lua_State *L) {
  lua_pushboolean(L, flume__lua_ctx(L)->shared);
  return 1;
}

static const luaL_Reg loop_funcs[] = {
    {"run", l_run},     {"running", l_running},
    {"stop", l_stop},   {"set_dispatch", l_set_dispatch},
    {"timer", l_timer}, {"hrtime", l_hrtime},
    {"backend_fd", l_backend_fd}, {"backend_timeout", l_backend_timeout},
    {"share_loop", l_share_loop}, {"shared", l_shared},
    {"foreign", l_foreign},
    {NULL, NULL}};

void flume__lua_loop_register(lua_State *L, int module, int methods) {
  (void)methods;
  ctx_open(L);
  lua_pushvalue(L, module);
  luaL_setfuncs(L, loop_funcs, 0);
  lua_pop(L, 1);
}
