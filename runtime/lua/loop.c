/*
 * The state's context and its loop: core.run/stop/running, the dispatcher
 * every callback goes through, timers and the clock.
 *
 * The context is created by the first require of flume.core and collected
 * by lua_close only (the registry holds it; it is made before any database,
 * so its __gc runs after theirs). That __gc finishes what the databases'
 * __gc started (their closes) without calling Lua, cancels the timers that
 * would only keep the loop alive, and closes the loop.
 */
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

static int ctx_gc(lua_State *L) {
  lctx *c = lua_touserdata(L, 1);
  c->closing = 1;
  c->L = NULL;
  /* A timer's callback could not run now; waiting for it would only hold
   * the exit up (forever, for math.huge). One whose callback is running
   * (os.exit inside it) has ended already and stays. */
  for (ltimer *lt = c->timers, *next; lt; lt = next) {
    next = lt->next;
    flume__lua_req_drop(NULL, &lt->req);
  }
  /* Databases closed by their own __gc finish closing here. */
  uv_run(&c->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&c->loop) == UV_EBUSY) {
    uv_walk(&c->loop, walk_close, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
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
    int rc = uv_loop_init(&c->loop);
    if (rc) flume__lua_raise(L, rc, "cannot create the event loop");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  }
  lua_pop(L, 1);
}

/* core.run(mode): mode "default" | "once" | "nowait". Returns true while
 * the loop still has work. */
static int l_run(lua_State *L) {
  static const char *const modes[] = {"default", "once", "nowait", NULL};
  static const uv_run_mode umodes[] = {UV_RUN_DEFAULT, UV_RUN_ONCE,
                                       UV_RUN_NOWAIT};
  lctx *c = flume__lua_ctx(L);
  int mode = luaL_checkoption(L, 1, "default", modes);
  if (c->L != NULL)
    return flume__lua_raise(L, FLUME_EBUSY,
                            "cannot run the loop from inside a callback (use "
                            "the async form, or call this inside "
                            "flume.spawn)");
  c->L = L;
  int more = uv_run(&c->loop, umodes[mode]);
  c->L = NULL;
  lua_pushboolean(L, more);
  return 1;
}

static int l_running(lua_State *L) {
  lua_pushboolean(L, flume__lua_ctx(L)->L != NULL);
  return 1;
}

static int l_stop(lua_State *L) {
  uv_stop(&flume__lua_ctx(L)->loop);
  return 0;
}

/* core.set_dispatch(fn): every callback is called as fn(cb, ...). */
static int l_set_dispatch(lua_State *L) {
  lctx *c = flume__lua_ctx(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  if (c->dispatch_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, c->dispatch_ref);
  c->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* ---- timers ------------------------------------------------------------ */

static void timer_closed(uv_handle_t *h) { free(h->data); }

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
  uv_timer_init(&c->loop, &lt->t);
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
  lua_pushinteger(L, uv_backend_fd(&flume__lua_ctx(L)->loop));
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
  if (!uv_loop_alive(&c->loop)) {
    lua_pushnil(L);
    return 1;
  }
  uv_update_time(&c->loop);
  int ms = uv_backend_timeout(&c->loop);
  if (ms < 0) lua_pushnumber(L, HUGE_VAL);
  else lua_pushnumber(L, ms / 1000.0);
  return 1;
}

static const luaL_Reg loop_funcs[] = {
    {"run", l_run},     {"running", l_running},
    {"stop", l_stop},   {"set_dispatch", l_set_dispatch},
    {"timer", l_timer}, {"hrtime", l_hrtime},
    {"backend_fd", l_backend_fd}, {"backend_timeout", l_backend_timeout},
    {NULL, NULL}};

void flume__lua_loop_register(lua_State *L, int module, int methods) {
  (void)methods;
  ctx_open(L);
  lua_pushvalue(L, module);
  luaL_setfuncs(L, loop_funcs, 0);
  lua_pop(L, 1);
}
