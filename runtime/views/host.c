/*
 * The view host: a Lua state owned by the runtime, in which view scripts
 * run sandboxed. Each view gets its own environment holding copies of an
 * allow-list (the basic functions, string, table, math without random,
 * utf8); no io, os, require, load, debug, collectgarbage, coroutine. A
 * view is a pure function of the log. Every call runs under an
 * instruction limit and the view's memory cap (its account). Loading a
 * view's definition into the host is load.c's.
 *
 * The one way out of the sandbox is print and log: a message tagged with
 * the view's name and the seq of the call in progress, handed to the
 * host's log function (log.c's queue), which delivers it later, outside
 * any call. A message is formatted whether or not it is then dropped by
 * the rate limit, so what a view computes (and whether it fails) never
 * depends on timing.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "views/charge.h"
#include "views/host.h"
#include "views/lazy.h"
#include "views/pattern.h"

/* The allocator's free lists (host_alloc): blocks of up to
 * POOL_STEP * POOL_CLASSES bytes, header included, in classes POOL_STEP
 * bytes apart, and at most POOL_MAX bytes of them kept. Under ASan none
 * are kept, so that it sees every use after free. */
#define POOL_STEP 16
#define POOL_CLASSES 32
#if defined(__SANITIZE_ADDRESS__)
#define POOL_MAX ((size_t)0)
#else
#define POOL_MAX ((size_t)8 << 20)
#endif

/* What one view's calls have allocated and still hold, and its cap. */
typedef struct host_account {
  int64_t used; /* bytes of live blocks allocated during its calls */
  int64_t cap;  /* what it may hold */
  char *name;   /* its view's name (for its messages), or NULL */
} host_account;

struct flume__host {
  flume__charge charge;   /* first: lazy.c switches it (charge.h) */
  lua_State *L;           /* the sandboxed state */
  int base_ref;           /* registry ref of the allow-listed globals */
  int exhausted;          /* the call in progress ran out of instructions */
  size_t work;            /* work left to the call in progress in C */
  int refused;            /* an allocation of the call was refused */
  host_account *accts;    /* accounts by id; 0 is the runtime's own */
  uint32_t nacct;         /* accounts in use (ids are never reused) */
  uint32_t acct_cap;      /* room in accts */
  uint32_t *ref_acct;     /* account id by view record ref */
  int nref;               /* room in ref_acct */
  flume__host_log_fn log; /* where print and log send messages, or NULL */
  void *log_ctx;          /* its ctx */
  const char *log_view;   /* view of the call in progress (NULL: none, or
                           * the mapper) */
  int64_t log_seq;        /* seq of the call in progress, or -1 */
  void *pool[POOL_CLASSES]; /* free blocks by size class (see host_alloc) */
  size_t pooled;          /* bytes of the blocks in pool */
  uint32_t run_acct;      /* account of the run in progress (host_run) */
};

/*
 * Memory. Views share one Lua state, so that each log value is decoded
 * once for all of them; every block the state allocates carries, in a
 * small header, the account it is charged to: the view whose call
 * allocated it (or grew it last), or 0, the runtime's own (decoded
 * values, the runtime's tables). A free credits the block's account
 * wherever it happens (a collection during another view's call, or
 * outside any). Only an allocation inside a view's call can fail, when
 * it would take the view past its cap; the runtime's own work never sees
 * a failure it would have to recover from. A value the runtime decoded
 * and a view keeps is charged to no view: a view holding every value it
 * sees holds them at the cost of its table's slots only.
 */
/* What one call may do inside C functions (pattern steps, bytes copied),
 * besides its instructions: C functions run uncounted by the hook. */
#define WORK_LIMIT ((size_t)50000000)

#define HDR 8 /* header bytes: Lua needs only 8-byte alignment here */

static void limit_hook(lua_State *L, lua_Debug *ar);

/* Bytes a view's call allocates are work too (a unit per 4, as in
 * charge_bytes): the VM's own concatenation makes strings no function
 * charges. The allocator cannot raise an error; once the budget is spent
 * the count hook fails the call at its next instruction. */
static void charge_alloc(flume__host *h, size_t bytes) {
  size_t units = bytes / 4;
  if (units < h->work) {
    h->work -= units;
  } else if (!h->exhausted) {
    h->work = 0;
    h->exhausted = 1;
    lua_sethook(h->L, limit_hook, LUA_MASKCOUNT, 1);
  }
}

/* The class of a block of n bytes (header included), or -1: too large
 * for the pool. */
static int pool_class(size_t n) {
  return n <= (size_t)POOL_STEP * POOL_CLASSES ? (int)((n - 1) / POOL_STEP)
                                               : -1;
}

/* A block for n bytes of class c (-1: none): a pooled one, or a new one
 * of the class's full size, so that any block of a class serves any
 * request of it. */
static char *pool_get(flume__host *h, int c, size_t n) {
  if (c < 0) return malloc(n);
  char *b = h->pool[c];
  if (b == NULL) return malloc((size_t)(c + 1) * POOL_STEP);
  memcpy(&h->pool[c], b, sizeof(void *));
  h->pooled -= (size_t)(c + 1) * POOL_STEP;
  return b;
}

/* Frees a block that held n bytes (header included): into its class's
 * list while the pool has room. */
static void pool_put(flume__host *h, char *b, size_t n) {
  int c = pool_class(n);
  size_t size = (size_t)(c + 1) * POOL_STEP;
  if (c < 0 || h->pooled + size > POOL_MAX) {
    free(b);
    return;
  }
  memcpy(b, &h->pool[c], sizeof(void *));
  h->pool[c] = b;
  h->pooled += size;
}

/* Lua's allocator. Small blocks come from and go to free lists (the state
 * makes and drops several per log value: tables, proxies, strings), which
 * costs a fraction of malloc and free; a block keeps its class while it
 * shrinks, so shrinking never fails. Accounting counts what Lua asked
 * for, whatever the block's real size: a view's cap bounds the bytes it
 * holds, and the pool adds at most POOL_MAX to the whole state. */
static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  flume__host *h = ud;
  char *block = ptr ? (char *)ptr - HDR : NULL;
  uint32_t owner = 0, cur = h->charge.current;
  if (block) memcpy(&owner, block, sizeof owner);
  else osize = 0; /* for a new block, osize is its type */
  if (nsize == 0) {
    h->accts[owner].used -= (int64_t)osize;
    if (block) pool_put(h, block, osize + HDR);
    return NULL;
  }
  /* Shrinking never fails (Lua counts on it), nor does the runtime. A
   * refusal makes Lua collect everything and ask again, once. */
  host_account *a = &h->accts[cur];
  if (cur != 0 && nsize > osize &&
      a->used - (owner == cur ? (int64_t)osize : 0) + (int64_t)nsize >
          a->cap) {
    h->refused = 1;
    return NULL;
  }
  if (cur != 0 && nsize > osize) charge_alloc(h, nsize - osize);
  int nc = pool_class(nsize + HDR), oc = block ? pool_class(osize + HDR) : -1;
  char *nb;
  if (block && nc >= 0 && oc >= nc) {
    nb = block; /* the same class, or a larger one: it fits */
  } else if (block && oc < 0) {
    /* A large block stays one, or shrinks to a whole block of its class. */
    nb = realloc(block, nc < 0 ? nsize + HDR : (size_t)(nc + 1) * POOL_STEP);
  } else {
    nb = pool_get(h, nc, nsize + HDR);
    if (nb && block) {
      memcpy(nb + HDR, block + HDR, osize < nsize ? osize : nsize);
      pool_put(h, block, osize + HDR);
    }
  }
  if (nb == NULL) return NULL;
  h->accts[owner].used -= (int64_t)osize;
  memcpy(nb, &cur, sizeof cur);
  a->used += (int64_t)nsize;
  return nb + HDR;
}

/* Globals a view may use; library tables are copied per view. pcall,
 * xpcall and setmetatable are the sandbox's own (below). */
static const char *const basic_names[] = {
    "assert", "error",  "ipairs",   "next",     "pairs",
    "rawequal", "rawget", "rawlen", "rawset",   "select",  "tonumber",
    "tostring", "type", "getmetatable", "_VERSION", NULL};
static const char *const lib_names[] = {"string", "table", "math", "utf8",
                                        NULL};

static const char limit_msg[] = "instruction limit exceeded (%d "
                                "instructions in one call: an endless "
                                "loop?)";

/* The host is the allocator's user data: every function of the sandbox
 * finds it there. */
static flume__host *host_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return ud;
}

/* Raised from the count hook: a script ran past its instruction budget.
 * The budget stays spent: the hook now fires before every instruction,
 * so whatever catches the error (an error handler, a __close, a loop
 * around pcall) cannot run a single instruction more. */
static void limit_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  host_of(L)->exhausted = 1;
  lua_sethook(L, limit_hook, LUA_MASKCOUNT, 1);
  luaL_error(L, limit_msg, FLUME__INSTRUCTION_LIMIT);
}

/* The sandbox's pcall: the base library's, except that the instruction
 * limit is not an error a script can catch. */
static int sb_pcall(lua_State *L) {
  luaL_checkany(L, 1);
  int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  if (host_of(L)->exhausted)
    return luaL_error(L, limit_msg, FLUME__INSTRUCTION_LIMIT);
  if (status == LUA_ERRMEM) return lua_error(L); /* nor the memory cap */
  lua_pushboolean(L, status == LUA_OK);
  lua_insert(L, 1);
  return lua_gettop(L);
}

/* xpcall's message handler: up[1] = the script's. Lua calls it from
 * inside the error, and when the error is the limit's, raised in the count
 * hook, hooks are off until the error is thrown: the script's handler
 * would run unbounded. It is skipped then. */
static int sb_msgh(lua_State *L) {
  if (host_of(L)->exhausted) return 1;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

/* The sandbox's xpcall(f, msgh, ...), likewise. */
static int sb_xpcall(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, sb_msgh, 1);
  lua_replace(L, 2); /* f, wrapped msgh, args... */
  lua_pushvalue(L, 1);
  lua_insert(L, 3);                /* f, wrapped, f, args... */
  int status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
  if (host_of(L)->exhausted)
    return luaL_error(L, limit_msg, FLUME__INSTRUCTION_LIMIT);
  if (status == LUA_ERRMEM) return lua_error(L);
  lua_pushboolean(L, status == LUA_OK);
  lua_replace(L, 1);
  lua_remove(L, 2); /* ok, results... */
  return lua_gettop(L);
}

/* The account of a view's record ref (0 when unknown). */
static uint32_t acct_of(flume__host *h, int ref) {
  return ref > 0 && ref < h->nref ? h->ref_acct[ref] : 0;
}

/* Opens an account with the given cap; 0 (the runtime's) if there is no
 * room for one. */
static uint32_t acct_new(flume__host *h, int64_t cap) {
  if (h->nacct == h->acct_cap) {
    uint32_t n = h->acct_cap * 2;
    host_account *a = realloc(h->accts, n * sizeof *a);
    if (a == NULL) return 0;
    h->accts = a;
    h->acct_cap = n;
  }
  h->accts[h->nacct] = (host_account){0, cap, NULL};
  return h->nacct++;
}

static int acct_bind(flume__host *h, int ref, uint32_t id) {
  if (ref <= 0) return FLUME_EINVAL;
  if (ref >= h->nref) {
    int n = ref * 2 + 16;
    uint32_t *m = realloc(h->ref_acct, (size_t)n * sizeof *m);
    if (m == NULL) return FLUME_ENOMEM;
    memset(m + h->nref, 0, (size_t)(n - h->nref) * sizeof *m);
    h->ref_acct = m;
    h->nref = n;
  }
  h->ref_acct[ref] = id;
  return 0;
}

static int call_end(flume__host *h, uint32_t acct, int rc);

/* lua_pcall for account acct, its prints tagged with its view: armed for
 * one script call (host_call: the whole call is the script's) or for a
 * run, whose script calls each arm themselves (flume__host_run). */
static int protected_call(flume__host *h, uint32_t acct, int nargs,
                          int nresults, int64_t seq, int armed) {
  lua_State *L = h->L;
  const char *was_view = h->log_view;
  int64_t was_seq = h->log_seq;
  uint32_t was_run = h->run_acct;
  h->log_view = h->accts[acct].name;
  h->run_acct = acct;
  h->exhausted = 0;
  h->refused = 0;
  if (armed) flume__host_arm(h, seq);
  int rc = lua_pcall(L, nargs, nresults, 0);
  lua_sethook(L, NULL, 0, 0);
  h->charge.current = 0;
  h->exhausted = 0;
  h->log_view = was_view;
  h->log_seq = was_seq;
  h->run_acct = was_run;
  return call_end(h, acct, rc);
}

/* lua_pcall under the instruction limit, charging what it allocates to
 * account `acct`; what it prints is tagged with acct's view and `seq`. */
static int host_call(flume__host *h, uint32_t acct, int nargs,
                     int nresults, int64_t seq) {
  return protected_call(h, acct, nargs, nresults, seq, 1);
}

/* The end of a call that returned rc, its error (if any) at the top:
 * made the text callers report. */
static int call_end(flume__host *h, uint32_t acct, int rc) {
  lua_State *L = h->L;
  const char *msg = rc != LUA_OK ? lua_tostring(L, -1) : NULL;
  if (h->refused && msg && strcmp(msg, "not enough memory") == 0) {
    /* Over its cap: say so, and return what the failed call left behind
     * (unreachable now) at once. */
    h->refused = 0;
    lua_pushfstring(L, "not enough memory (a view may hold %d MiB; see "
                       "its `memory` option)",
                    (int)(h->accts[acct].cap >> 20));
    lua_replace(L, -2);
    lua_gc(L, LUA_GCCOLLECT);
    return rc;
  }
  h->refused = 0;
  /* Callers report the error as text: any other error object (error(nil),
   * error({})) becomes a sentence, without running the script's own
   * __tostring outside its limits. */
  if (rc != LUA_OK && lua_type(L, -1) != LUA_TSTRING) {
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_tostring(L, -1);
    } else {
      const char *t = luaL_typename(L, -1);
      lua_pushfstring(L, "(error object is a %s value)", t);
      lua_replace(L, -2);
    }
  }
  return rc;
}

/*
 * Runs: the indexer's pass of a view over a slice is one protected call of
 * a C function (flume__host_run) that calls the view's functions with
 * lua_call, each armed just before (flume__host_arm: the whole
 * instruction budget, the work allowance, the view's memory account, the
 * seq its prints are tagged with) and disarmed just after
 * (flume__host_disarm: the runtime's account), as host_call does around
 * its lua_pcall: a protected call costs several times an unprotected one
 * (setjmp, the error state saved and restored). The count starts at the
 * script's first instruction as under host_call, so each call's budget is
 * the same to the instruction; an error, the script's or the runtime's
 * own on a value, ends the run, and its caller reports it at the value in
 * progress. One thing differs from host_call: the script runs one C call
 * deeper (the run's function, then lua_call), so a script that nests C
 * calls (pcall, metamethods, gsub callbacks) reaches Lua's limit of
 * LUAI_MAXCCALLS one level sooner in the indexer than in a method.
 */
int flume__host_run(flume__host *h, int ref, int nargs, int nresults) {
  return protected_call(h, acct_of(h, ref), nargs, nresults, -1, 0);
}

void flume__host_arm(flume__host *h, int64_t seq) {
  h->log_seq = seq;
  h->exhausted = 0;
  h->refused = 0;
  h->work = WORK_LIMIT;
  h->charge.current = h->run_acct;
  /* Setting the hook resets its count: each call gets the whole budget. */
  lua_sethook(h->L, limit_hook, LUA_MASKCOUNT, FLUME__INSTRUCTION_LIMIT);
}

/* The hook stays set until the next arm or the run's end: between two
 * calls of a run the runtime runs C only (raw table access, the encoders,
 * the decoder; a finalizer would run with hooks off), so no instruction
 * is counted, and the next arm resets the count. */
void flume__host_disarm(flume__host *h) {
  h->charge.current = 0;
  h->exhausted = 0;
  h->refused = 0;
}

int flume__host_pcall(flume__host *h, int nargs, int nresults) {
  return host_call(h, 0, nargs, nresults, -1);
}

int flume__host_pcall_at(flume__host *h, int nargs, int nresults,
                         int64_t seq) {
  return host_call(h, 0, nargs, nresults, seq);
}

int flume__host_call(flume__host *h, int ref, int nargs, int nresults) {
  return host_call(h, acct_of(h, ref), nargs, nresults, -1);
}

void flume__host_set_log(flume__host *h, flume__host_log_fn fn, void *ctx) {
  h->log = fn;
  h->log_ctx = ctx;
}

void flume__host_release(flume__host *h, int ref) {
  lua_State *L = h->L;
  lua_createtable(L, 0, 1);
  lua_newtable(L);
  lua_setfield(L, -2, FLUME__HREC_DEF);
  lua_rawseti(L, LUA_REGISTRYINDEX, ref);
  lua_gc(L, LUA_GCCOLLECT);
}

/* The sandbox's setmetatable: the base library's, without finalizers. A
 * __gc would run whenever the collector gets to it, or at close, outside
 * any call's limits; Lua 5.4 marks an object for finalization only when
 * setmetatable gives it a metatable that already has __gc, so refusing it
 * here is enough: a __gc added later is never called. */
static int sb_setmetatable(lua_State *L) {
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  flume__lazy_materialize(L, 1);
  if (t == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    int gc = lua_rawget(L, 2) != LUA_TNIL;
    lua_pop(L, 1);
    if (gc)
      return luaL_error(L, "a view cannot set a finalizer (__gc): it would "
                           "run outside the view's limits");
  }
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

/*
 * The raw functions, aware of lazy values (lazy.c): a proxy is made an
 * ordinary table before a raw function looks at it, so that they see
 * what a full decode would have given. Each is the base library's own
 * (Lua 5.4) with that one step added, not a wrapper around it, so that
 * its errors name the caller's position and the name it was called by,
 * as before.
 */
static int sb_next(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  flume__lazy_materialize(L, 1);
  lua_settop(L, 2);
  if (lua_next(L, 1)) return 2;
  lua_pushnil(L);
  return 1;
}

static int sb_pairs(lua_State *L) {
  luaL_checkany(L, 1);
  flume__lazy_materialize(L, 1);
  if (luaL_getmetafield(L, 1, "__pairs") == LUA_TNIL) {
    lua_pushcfunction(L, sb_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
  } else {
    lua_pushvalue(L, 1);
    lua_call(L, 1, 3);
  }
  return 3;
}

static int sb_rawget(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  flume__lazy_materialize(L, 1);
  lua_settop(L, 2);
  lua_rawget(L, 1);
  return 1;
}

static int sb_rawset(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  luaL_checkany(L, 3);
  flume__lazy_materialize(L, 1);
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 1;
}

static int sb_rawlen(lua_State *L) {
  int t = lua_type(L, 1);
  luaL_argexpected(L, t == LUA_TTABLE || t == LUA_TSTRING, 1,
                   "table or string");
  flume__lazy_materialize(L, 1);
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
  return 1;
}

/* A proxy's metatable is the runtime's: a script sees none. */
static int sb_getmetatable(lua_State *L) {
  luaL_checkany(L, 1);
  if (flume__lazy_is(L, 1) || !lua_getmetatable(L, 1)) {
    lua_pushnil(L);
    return 1;
  }
  luaL_getmetafield(L, 1, "__metatable");
  return 1;
}

static const luaL_Reg sandbox_funcs[] = {
    {"pcall", sb_pcall},       {"xpcall", sb_xpcall},
    {"setmetatable", sb_setmetatable},
    {"next", sb_next},         {"pairs", sb_pairs},
    {"rawget", sb_rawget},     {"rawset", sb_rawset},
    {"rawlen", sb_rawlen},     {"getmetatable", sb_getmetatable},
    {NULL, NULL}};

/* ---- work done inside C functions ------------------------------------ */

static void charge(lua_State *L, size_t units) {
  flume__host *h = host_of(L);
  if (units > h->work) {
    h->work = 0;
    h->exhausted = 1;
    lua_sethook(L, limit_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "instruction limit exceeded (string and table functions "
                  "did %d steps of work in one call)",
               (int)WORK_LIMIT);
  }
  h->work -= units;
}

/* Bytes made cost a unit per 4 (a pattern step is a unit): the budget
 * then buys a call some 200 MB of new strings, a fraction of a second. */
static void charge_bytes(lua_State *L, double bytes) {
  double u = bytes / 4.0;
  charge(L, u > 1e15 ? (size_t)1e15 : (size_t)u);
}

/* Charged before by the length of arg 1 (W_LEN), the size of the table
 * to sort (W_SORT), the elements to move (W_MOVE: table.move), the
 * elements a positional insert or remove shifts (W_INSERT with 3
 * arguments, W_REMOVE with 2), or after by
 * the length of the result (W_RESULT: a result past the view's memory
 * fails before it is made) or the number of results (W_RESULTS: unpack,
 * string.byte). */
enum { W_LEN = 1, W_SORT, W_RESULT, W_RESULTS, W_MOVE, W_INSERT, W_REMOVE };

/* A library function whose work grows with its input, charged for it:
 * up[1] the function, up[2] how to charge. Sizes are capped by the
 * view's memory; this bounds how often a loop may ask for them. */
static int charged(lua_State *L) {
  int how = (int)lua_tointeger(L, lua_upvalueindex(2));
  if (how == W_LEN) {
    size_t l;
    luaL_checklstring(L, 1, &l);
    charge_bytes(L, (double)l);
  } else if (how == W_SORT && lua_istable(L, 1)) {
    double n = (double)lua_rawlen(L, 1);
    int bits = 1;
    while (bits < 63 && ((double)((uint64_t)1 << bits)) < n) bits++;
    charge(L, (size_t)(n * bits * 4)); /* a compare: 4 */
  } else if (how == W_MOVE) {
    int f_ok, e_ok;
    lua_Integer f = lua_tointegerx(L, 2, &f_ok), e = lua_tointegerx(L, 3, &e_ok);
    double n = (double)e - (double)f;
    if (f_ok && e_ok && n > 0)
      charge(L, n > 1e15 ? (size_t)1e15 : (size_t)n);
  } else if ((how == W_INSERT && lua_gettop(L) >= 3) ||
             (how == W_REMOVE && lua_gettop(L) >= 2)) {
    if (lua_istable(L, 1)) charge(L, lua_rawlen(L, 1));
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  if (how == W_RESULT && lua_type(L, 1) == LUA_TSTRING)
    charge_bytes(L, (double)lua_rawlen(L, 1));
  if (how == W_RESULTS) charge(L, (size_t)lua_gettop(L));
  return lua_gettop(L);
}

/* Replaces lib[name] (lib at the top) by a charged wrapper. */
static void wrap(lua_State *L, const char *name, int how) {
  lua_getfield(L, -1, name);
  lua_pushinteger(L, how);
  lua_pushcclosure(L, charged, 2);
  lua_setfield(L, -2, name);
}

/* The string library's matcher is ours (pattern.c): its steps count.
 * Functions whose work grows with their input are charged for it. */
static void bound_libraries(lua_State *L) {
  lua_getglobal(L, "string");
  flume__pattern_register(L, charge);
  wrap(L, "rep", W_RESULT);
  wrap(L, "upper", W_LEN);
  wrap(L, "lower", W_LEN);
  wrap(L, "reverse", W_LEN);
  wrap(L, "format", W_RESULT);
  wrap(L, "pack", W_RESULT);
  wrap(L, "byte", W_RESULTS);
  lua_getglobal(L, "table");
  wrap(L, "concat", W_RESULT);
  wrap(L, "sort", W_SORT);
  wrap(L, "unpack", W_RESULTS);
  wrap(L, "move", W_MOVE);
  wrap(L, "insert", W_INSERT);
  wrap(L, "remove", W_REMOVE);
  lua_pop(L, 2);
}

/* ---- print and log ---------------------------------------------------- */

/* Appends s[0..n) to the message in b (FLUME_LOG_MAX bytes), as much as
 * fits; *total counts every byte, kept or not. */
static void msg_add(char *b, size_t *len, size_t *total, const char *s,
                    size_t n) {
  size_t room = FLUME_LOG_MAX - *len, take = n < room ? n : room;
  memcpy(b + *len, s, take);
  *len += take;
  *total += n;
}

/* Sends the message b[0..len) (of `total` bytes before it was cut) to the
 * host's log function: a cut message is cut at a UTF-8 character
 * boundary and says so. */
static void msg_send(lua_State *L, char *b, size_t len, size_t total) {
  flume__host *h = host_of(L);
  charge_bytes(L, (double)len);
  if (total > len) {
    /* A sequence begun in the last 3 bytes and not complete goes. */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
      unsigned char c = (unsigned char)b[len - back];
      if ((c & 0xC0) == 0x80) continue; /* a continuation byte */
      size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      if (need > back) len -= back;
      break;
    }
    len += (size_t)snprintf(b + len, 64, " ... (cut: %zu bytes in all)",
                            total);
  }
  if (h->log) h->log(h->log_ctx, h->log_view, h->log_seq, b, len);
}

/* print(...): as Lua's, each argument through tostring (so a __tostring
 * that fails is the view's error, as in Lua), separated by tabs. */
static int sb_print(lua_State *L) {
  char b[FLUME_LOG_MAX + 64];
  size_t len = 0, total = 0;
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    size_t l;
    const char *s = luaL_tolstring(L, i, &l);
    if (i > 1) msg_add(b, &len, &total, "\t", 1);
    msg_add(b, &len, &total, s, l);
    lua_pop(L, 1);
  }
  msg_send(L, b, len, total);
  return 0;
}

/* log(fmt, ...): string.format(fmt, ...) (the sandbox's, up[1]); with one
 * argument, that argument as print gives it (log("100%") is no format
 * error). */
static int sb_log(lua_State *L) {
  luaL_checkany(L, 1);
  if (lua_gettop(L) == 1) return sb_print(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  int status = lua_pcall(L, lua_gettop(L) - 1, 1, 0);
  if (status != LUA_OK) {
    /* The limits are not ours to reword (as sb_pcall). Format's own
     * errors name it '?' (called from C): they are log's, at the view's
     * line. */
    if (host_of(L)->exhausted)
      return luaL_error(L, limit_msg, FLUME__INSTRUCTION_LIMIT);
    if (status != LUA_ERRRUN || !lua_isstring(L, -1)) return lua_error(L);
    luaL_where(L, 1);
    luaL_gsub(L, lua_tostring(L, -2), " to '?'", " to 'log'");
    lua_concat(L, 2);
    return lua_error(L);
  }
  return sb_print(L);
}

/* Replaces the table at the top with a shallow copy of it. */
static void copy_table(lua_State *L) {
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
}

int flume__host_new(flume__host **out) {
  flume__host *h = calloc(1, sizeof *h);
  if (h == NULL) return FLUME_ENOMEM;
  h->acct_cap = 16;
  h->accts = calloc(h->acct_cap, sizeof *h->accts);
  h->nacct = 1; /* the runtime's own */
  h->log_seq = -1;
  h->L = h->accts ? lua_newstate(host_alloc, h) : NULL;
  if (h->L == NULL) {
    free(h->accts);
    free(h);
    return FLUME_ENOMEM;
  }
  lua_State *L = h->L;
  luaL_requiref(L, "_G", luaopen_base, 1);
  luaL_requiref(L, "string", luaopen_string, 1);
  luaL_requiref(L, "table", luaopen_table, 1);
  luaL_requiref(L, "math", luaopen_math, 1);
  luaL_requiref(L, "utf8", luaopen_utf8, 1);
  lua_settop(L, 0);
  bound_libraries(L);
  flume__lazy_init(L);
  /* The sandbox's own functions are the state's globals too: an error
   * raised in one called without a name (pcall(next)) finds it there. */
  lua_pushglobaltable(L);
  luaL_setfuncs(L, sandbox_funcs, 0);
  lua_pop(L, 1);
  /* The allow-list, from which every view's environment is made. */
  lua_newtable(L);
  for (const char *const *n = basic_names; *n; n++) {
    lua_getglobal(L, *n);
    lua_setfield(L, -2, *n);
  }
  for (const char *const *n = lib_names; *n; n++) {
    lua_getglobal(L, *n);
    lua_setfield(L, -2, *n);
  }
  luaL_setfuncs(L, sandbox_funcs, 0);
  lua_pushcfunction(L, sb_print);
  lua_setfield(L, -2, "print");
  lua_getglobal(L, "string");
  lua_getfield(L, -1, "format"); /* the charged one (bound_libraries) */
  lua_remove(L, -2);
  lua_pushcclosure(L, sb_log, 1);
  lua_setfield(L, -2, "log");
  /* Methods on strings (s:upper()) go through the one string metatable of
   * the state: its __index becomes a copy of the string library that no
   * script can reach, and getmetatable("") gives only `false`, so no view
   * can change what s:upper() does for another. A view's own `string`
   * table is a copy too (push_env). */
  lua_pushliteral(L, "");
  lua_createtable(L, 0, 2);
  lua_getfield(L, -3, "string");
  copy_table(L);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  /* No randomness: a rebuild must give the same result. */
  lua_getfield(L, -1, "math");
  lua_pushnil(L);
  lua_setfield(L, -2, "random");
  lua_pushnil(L);
  lua_setfield(L, -2, "randomseed");
  lua_pop(L, 1);
  h->base_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  *out = h;
  return 0;
}

void flume__host_free(flume__host *h) {
  if (h == NULL) return;
  lua_close(h->L);
  for (int c = 0; c < POOL_CLASSES; c++)
    while (h->pool[c]) {
      char *b = h->pool[c];
      memcpy(&h->pool[c], b, sizeof(void *));
      free(b);
    }
  for (uint32_t i = 0; i < h->nacct; i++) free(h->accts[i].name);
  free(h->accts);
  free(h->ref_acct);
  free(h);
}

lua_State *flume__host_state(flume__host *h) { return h->L; }

void flume__host_unref(flume__host *h, int ref) {
  if (ref > 0 && ref < h->nref) h->ref_acct[ref] = 0;
  luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
}

/* Pushes a fresh environment: copies of the allowed globals and libraries,
 * so one view cannot change what another sees. */
void flume__host_push_env(flume__host *h) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->base_ref);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    if (lua_istable(L, -1)) copy_table(L);
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "_G");
}

int flume__host_account_open(flume__host *h, int ref, const char *name) {
  uint32_t acct = acct_new(h, FLUME__VIEW_MEMORY);
  if (acct == 0 || acct_bind(h, ref, acct)) return FLUME_ENOMEM;
  size_t n = strlen(name);
  if ((h->accts[acct].name = malloc(n + 1)) == NULL) return FLUME_ENOMEM;
  memcpy(h->accts[acct].name, name, n + 1);
  return 0;
}

void flume__host_account_cap(flume__host *h, int ref, int64_t cap) {
  uint32_t acct = acct_of(h, ref);
  if (acct) h->accts[acct].cap = cap;
}

void flume__host_account_close(flume__host *h, int ref) {
  if (ref > 0 && ref < h->nref) h->ref_acct[ref] = 0;
}
