/*
 * The view host: a Lua state owned by the runtime, in which view scripts
 * run sandboxed. Scripts are loaded as text only, each with its own
 * environment holding copies of an allow-list (the basic functions, string,
 * table, math without random, utf8); no io, os, require, load, debug,
 * collectgarbage, coroutine. A view is a pure function of the log.
 *
 * A view given as a Lua table from the caller's state is moved in: its
 * scalars copied, its functions dumped and loaded here with the view's
 * environment as their _ENV. A function that captures a local variable
 * cannot be moved, and is refused.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "views/pattern.h"
#include "views/views.h"

/* What one view's calls have allocated and still hold, and its cap. */
typedef struct host_account {
  int64_t used; /* bytes of live blocks allocated during its calls */
  int64_t cap;  /* what it may hold */
} host_account;

struct flume__host {
  lua_State *L;           /* the sandboxed state */
  int base_ref;           /* registry ref of the allow-listed globals */
  int exhausted;          /* the call in progress ran out of instructions */
  size_t work;            /* work left to the call in progress in C */
  uint32_t current;       /* account of the call in progress, 0 outside */
  int refused;            /* an allocation of the call was refused */
  host_account *accts;    /* accounts by id; 0 is the runtime's own */
  uint32_t nacct;         /* accounts in use (ids are never reused) */
  uint32_t acct_cap;      /* room in accts */
  uint32_t *ref_acct;     /* account id by view record ref */
  int nref;               /* room in ref_acct */
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

static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  flume__host *h = ud;
  char *block = ptr ? (char *)ptr - HDR : NULL;
  uint32_t owner = 0, cur = h->current;
  if (block) memcpy(&owner, block, sizeof owner);
  else osize = 0; /* for a new block, osize is its type */
  if (nsize == 0) {
    h->accts[owner].used -= (int64_t)osize;
    free(block);
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
  char *nb = realloc(block, nsize + HDR);
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
  h->accts[h->nacct] = (host_account){0, cap};
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

/* lua_pcall under the instruction limit, charging what it allocates to
 * account `acct`. */
static int host_call(flume__host *h, uint32_t acct, int nargs,
                     int nresults) {
  lua_State *L = h->L;
  /* Setting the hook resets its count: each call gets the whole budget. */
  h->exhausted = 0;
  h->refused = 0;
  h->work = WORK_LIMIT;
  h->current = acct;
  lua_sethook(L, limit_hook, LUA_MASKCOUNT, FLUME__INSTRUCTION_LIMIT);
  int rc = lua_pcall(L, nargs, nresults, 0);
  lua_sethook(L, NULL, 0, 0);
  h->current = 0;
  h->exhausted = 0;
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

int flume__host_pcall(flume__host *h, int nargs, int nresults) {
  return host_call(h, 0, nargs, nresults);
}

int flume__host_call(flume__host *h, int ref, int nargs, int nresults) {
  return host_call(h, acct_of(h, ref), nargs, nresults);
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

static const luaL_Reg sandbox_funcs[] = {{"pcall", sb_pcall},
                                         {"xpcall", sb_xpcall},
                                         {"setmetatable", sb_setmetatable},
                                         {NULL, NULL}};

/* ---- work done inside C functions ------------------------------------ */

void flume__host_charge(lua_State *L, size_t units) {
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
  flume__host_charge(L, u > 1e15 ? (size_t)1e15 : (size_t)u);
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
    flume__host_charge(L, (size_t)(n * bits * 4)); /* a compare: 4 */
  } else if (how == W_MOVE) {
    int f_ok, e_ok;
    lua_Integer f = lua_tointegerx(L, 2, &f_ok), e = lua_tointegerx(L, 3, &e_ok);
    double n = (double)e - (double)f;
    if (f_ok && e_ok && n > 0)
      flume__host_charge(L, n > 1e15 ? (size_t)1e15 : (size_t)n);
  } else if ((how == W_INSERT && lua_gettop(L) >= 3) ||
             (how == W_REMOVE && lua_gettop(L) >= 2)) {
    if (lua_istable(L, 1)) flume__host_charge(L, lua_rawlen(L, 1));
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  if (how == W_RESULT && lua_type(L, 1) == LUA_TSTRING)
    charge_bytes(L, (double)lua_rawlen(L, 1));
  if (how == W_RESULTS) flume__host_charge(L, (size_t)lua_gettop(L));
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
  flume__pattern_register(L);
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
static void push_env(flume__host *h) {
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

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 1099511628211ULL;
  }
  return h;
}

#define FNV_BASIS 14695981039346656037ULL

/*
 * A function's hash for a view given as a table: its stripped dump (Lua
 * 5.4's binary chunk without debug information), but without the two line
 * numbers the dump keeps even when stripped (where the function and its
 * nested functions begin and end). A view moved down by a blank line in
 * its file then keeps its hash, so it is not reported as "changed without
 * a version bump"; a view given as source text hashes its text instead,
 * which is what its author edits.
 *
 * The dump is walked field by field; when it does not have the layout
 * expected (another Lua version), the whole stripped dump is hashed.
 */
typedef struct dump_walk {
  const unsigned char *p;   /* next byte */
  const unsigned char *end; /* end of the dump */
  uint64_t hash;            /* hash of what is kept */
  int bad;                  /* not the expected layout */
} dump_walk;

static void dw_keep(dump_walk *w, size_t n) {
  if (w->bad || (size_t)(w->end - w->p) < n) {
    w->bad = 1;
    return;
  }
  w->hash = fnv1a(w->hash, w->p, n);
  w->p += n;
}

/* A size: 7 bits a byte, most significant first, the last byte's high bit
 * set. Kept in the hash unless `skip`. */
static size_t dw_size(dump_walk *w, int skip) {
  size_t x = 0;
  for (int i = 0; i < 10 && !w->bad; i++) {
    if (w->p >= w->end) break;
    unsigned char b = *w->p++;
    if (!skip) w->hash = fnv1a(w->hash, &b, 1);
    x = (x << 7) | (b & 0x7f);
    if (b & 0x80) return x;
  }
  w->bad = 1;
  return 0;
}

static void dw_string(dump_walk *w) {
  size_t n = dw_size(w, 0);
  if (n > 0) dw_keep(w, n - 1);
}

static void dw_function(dump_walk *w, int depth) {
  if (depth > 200) w->bad = 1;
  dw_string(w);   /* source: absent when stripped */
  dw_size(w, 1);  /* linedefined: skipped */
  dw_size(w, 1);  /* lastlinedefined: skipped */
  dw_keep(w, 3);  /* numparams, is_vararg, maxstacksize */
  size_t n = dw_size(w, 0);
  if (n > (size_t)(w->end - w->p) / 4) w->bad = 1;
  dw_keep(w, n * 4); /* the code */
  n = dw_size(w, 0); /* constants */
  for (size_t i = 0; i < n && !w->bad; i++) {
    if (w->p >= w->end) w->bad = 1;
    if (w->bad) break;
    unsigned char t = *w->p;
    dw_keep(w, 1);
    switch (t) {
    case 0x00: case 0x01: case 0x11: break; /* nil, false, true */
    case 0x03: case 0x13: dw_keep(w, 8); break; /* integer, float */
    case 0x04: case 0x14: dw_string(w); break;  /* strings */
    default: w->bad = 1;
    }
  }
  n = dw_size(w, 0); /* upvalues: instack, idx, kind */
  if (n > (size_t)(w->end - w->p) / 3) w->bad = 1;
  dw_keep(w, n * 3);
  n = dw_size(w, 0); /* nested functions */
  for (size_t i = 0; i < n && !w->bad; i++) dw_function(w, depth + 1);
  /* Debug information, empty when stripped: its four counts. */
  for (int i = 0; i < 4; i++)
    if (dw_size(w, 0) != 0) w->bad = 1;
}

static uint64_t hash_dump(uint64_t h, const char *d, size_t n) {
  /* The header: signature, version, format, data, three sizes, two test
   * numbers; then the count of the main function's upvalues. */
  const size_t header = 4 + 1 + 1 + 6 + 3 + 8 + 8 + 1;
  dump_walk w = {(const unsigned char *)d, (const unsigned char *)d + n, h,
                 0};
  if (n < header || memcmp(d, LUA_SIGNATURE, 4) != 0 || d[4] != 0x54 ||
      d[12] != 4 || d[13] != 8 || d[14] != 8)
    return fnv1a(h, d, n);
  dw_keep(&w, header);
  dw_function(&w, 0);
  if (w.bad || w.p != w.end) return fnv1a(h, d, n);
  return w.hash;
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  return flume__buf_append(ud, p, n);
}

typedef struct move_ctx {
  lua_State *from;  /* the caller's state */
  lua_State *to;    /* the host */
  int env;          /* the view's environment, in `to` */
  uint64_t hash;    /* hash of everything moved, in a stable order */
  char *err;        /* where a problem is described */
  size_t errlen;
} move_ctx;

/* Moves the value at the top of m->from onto m->to. Returns 0 or
 * FLUME_ESCRIPT. Table keys are visited in sorted order for the hash. */
static int move_value(move_ctx *m, const char *path, int depth) {
  lua_State *F = m->from, *T = m->to;
  if (!lua_checkstack(F, 8) || !lua_checkstack(T, 8) || depth > 32) {
    snprintf(m->err, m->errlen, "view table nested too deeply at %s", path);
    return FLUME_ESCRIPT;
  }
  int t = lua_type(F, -1);
  switch (t) {
  case LUA_TNIL:
    lua_pushnil(T);
    break;
  case LUA_TBOOLEAN:
    lua_pushboolean(T, lua_toboolean(F, -1));
    m->hash = fnv1a(m->hash, lua_toboolean(F, -1) ? "T" : "F", 1);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(F, -1)) {
      lua_Integer i = lua_tointeger(F, -1);
      lua_pushinteger(T, i);
      m->hash = fnv1a(m->hash, &i, sizeof i);
    } else {
      lua_Number d = lua_tonumber(F, -1);
      lua_pushnumber(T, d);
      m->hash = fnv1a(m->hash, &d, sizeof d);
    }
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(F, -1, &n);
    lua_pushlstring(T, s, n);
    m->hash = fnv1a(m->hash, s, n);
    break;
  }
  case LUA_TFUNCTION: {
    if (lua_iscfunction(F, -1)) {
      snprintf(m->err, m->errlen, "%s is a C function, which cannot be "
               "moved into the view state", path);
      return FLUME_ESCRIPT;
    }
    for (int i = 1;; i++) {
      const char *up = lua_getupvalue(F, -1, i);
      if (up == NULL) break;
      lua_pop(F, 1);
      if (strcmp(up, "_ENV") != 0) {
        snprintf(m->err, m->errlen, "%s captures the local variable '%s'; "
                 "a view's functions may use only their arguments and "
                 "globals (or give the view as a script)", path,
                 *up ? up : "?");
        return FLUME_ESCRIPT;
      }
    }
    flume__buf code = FLUME__BUF_INIT, stripped = FLUME__BUF_INIT;
    if (lua_dump(F, dump_writer, &code, 0) ||
        lua_dump(F, dump_writer, &stripped, 1)) {
      flume__buf_free(&code);
      flume__buf_free(&stripped);
      return FLUME_ENOMEM;
    }
    /* The hash ignores debug information and line numbers (hash_dump). */
    m->hash = hash_dump(m->hash, stripped.data, stripped.len);
    flume__buf_free(&stripped);
    int rc = luaL_loadbufferx(T, code.data, code.len, path, "b");
    flume__buf_free(&code);
    if (rc != LUA_OK) {
      snprintf(m->err, m->errlen, "%s cannot be moved: %s", path,
               lua_tostring(T, -1));
      lua_pop(T, 1);
      return FLUME_ESCRIPT;
    }
    if (lua_getupvalue(T, -1, 1) != NULL) { /* it uses globals */
      lua_pop(T, 1);
      lua_pushvalue(T, m->env);
      lua_setupvalue(T, -2, 1);
    }
    break;
  }
  case LUA_TTABLE: {
    /* Collect the keys, sort them by their text, move in that order. */
    lua_newtable(T);
    int n = 0;
    lua_newtable(F);
    int keys = lua_gettop(F);
    lua_pushnil(F);
    while (lua_next(F, keys - 1)) {
      lua_pop(F, 1);
      lua_pushvalue(F, -1);
      lua_rawseti(F, keys, ++n);
    }
    for (int i = 1; i <= n; i++) {
      for (int j = i + 1; j <= n; j++) {
        lua_rawgeti(F, keys, i);
        lua_rawgeti(F, keys, j);
        /* By type, then text: 1 and "1" have a fixed order too. */
        int ta = lua_type(F, -2), tb = lua_type(F, -1);
        const char *a = luaL_tolstring(F, -2, NULL);
        const char *b = luaL_tolstring(F, -2, NULL);
        int swap = ta != tb ? ta > tb : strcmp(a, b) > 0;
        lua_pop(F, 4);
        if (swap) {
          lua_rawgeti(F, keys, i);
          lua_rawgeti(F, keys, j);
          lua_rawseti(F, keys, i);
          lua_rawseti(F, keys, j);
        }
      }
    }
    for (int i = 1; i <= n; i++) {
      char sub[256];
      lua_rawgeti(F, keys, i);
      int kt = lua_type(F, -1);
      if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
        snprintf(m->err, m->errlen, "%s has a key of type %s", path,
                 lua_typename(F, kt));
        lua_pop(F, 2);
        return FLUME_ESCRIPT;
      }
      snprintf(sub, sizeof sub, "%s.%s", path, luaL_tolstring(F, -1, NULL));
      lua_pop(F, 1);
      int rc = move_value(m, sub, depth + 1); /* the key */
      if (rc) {
        lua_pop(F, 2);
        return rc;
      }
      lua_pushvalue(F, -1);
      lua_rawget(F, keys - 1);
      rc = move_value(m, sub, depth + 1); /* the value */
      lua_pop(F, 2);
      if (rc) {
        lua_pop(T, 1);
        return rc;
      }
      lua_rawset(T, -3);
    }
    lua_pop(F, 1);
    break;
  }
  default:
    snprintf(m->err, m->errlen, "%s is a %s, which cannot be moved into the "
             "view state", path, lua_typename(F, t));
    return FLUME_ESCRIPT;
  }
  return 0;
}

/* Pushes t[k] of the table at `t`, raw. */
static int raw_field(lua_State *L, int t, const char *k) {
  lua_pushstring(L, k);
  return lua_rawget(L, t);
}

/* Replaces the table a script returned (at the top) by a plain copy of
 * the fields the runtime reads: the runtime reads them outside any call's
 * limits, where a metatable's __index or a metamethod must not run. */
static void plain_def(lua_State *L) {
  static const char *const fields[] = {"version", "kind", "map", "reduce",
                                       "initial", "memory", NULL};
  int t = lua_gettop(L);
  lua_createtable(L, 0, 6);
  for (const char *const *f = fields; *f; f++) {
    raw_field(L, t, *f);
    lua_setfield(L, -2, *f);
  }
  if (raw_field(L, t, "methods") == LUA_TTABLE) {
    int m = lua_gettop(L);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, m)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
        lua_createtable(L, 2, 0);
        lua_rawgeti(L, -2, 1);
        lua_rawseti(L, -2, 1);
        lua_rawgeti(L, -2, 2);
        lua_rawseti(L, -2, 2);
        lua_pushvalue(L, -3);
        lua_insert(L, -2);
        lua_rawset(L, -5);
      }
      lua_pop(L, 1);
    }
    lua_setfield(L, -3, FLUME__DEF_METHODS);
  }
  lua_pop(L, 1);
  lua_replace(L, t);
}

/* Checks the view table at the top of the host's stack and says its kind. */
static int classify(lua_State *L, const char *name, flume__view_kind *kind,
                    int64_t *version, char *err, size_t errlen) {
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "view '%s' must return a table, not a %s", name,
             luaL_typename(L, -1));
    return FLUME_ESCRIPT;
  }
  lua_getfield(L, -1, "version");
  if (!lua_isinteger(L, -1)) {
    snprintf(err, errlen, "view '%s' has no integer version (got %s)", name,
             lua_isnil(L, -1) ? "nil" : luaL_typename(L, -1));
    lua_pop(L, 1);
    return FLUME_ESCRIPT;
  }
  *version = lua_tointeger(L, -1);
  lua_pop(L, 1);
  int has_map, has_reduce;
  lua_getfield(L, -1, FLUME__DEF_MAP);
  has_map = lua_isfunction(L, -1);
  int map_bad = !has_map && !lua_isnil(L, -1);
  lua_getfield(L, -2, FLUME__DEF_REDUCE);
  has_reduce = lua_isfunction(L, -1);
  int reduce_bad = !has_reduce && !lua_isnil(L, -1);
  lua_getfield(L, -3, FLUME__DEF_INITIAL);
  int has_initial = !lua_isnil(L, -1);
  lua_pop(L, 3);
  if (map_bad || reduce_bad) {
    snprintf(err, errlen, "view '%s': %s must be a function", name,
             map_bad ? "map" : "reduce");
    return FLUME_ESCRIPT;
  }
  lua_getfield(L, -1, "kind");
  const char *named = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (named) {
    /* Says what map+reduce without initial is (a group, by default). */
    int ok = 1;
    if (strcmp(named, "reduce") == 0) {
      ok = has_reduce;
      *kind = FLUME__VIEW_REDUCE;
    } else if (strcmp(named, "group") == 0) {
      ok = has_map && has_reduce;
      *kind = FLUME__VIEW_GROUP;
    } else if (strcmp(named, "index") == 0) {
      ok = has_map && !has_reduce;
      *kind = FLUME__VIEW_INDEX;
    } else {
      snprintf(err, errlen, "view '%s': kind must be \"reduce\", \"group\" "
               "or \"index\", not \"%s\"", name, named);
      return FLUME_ESCRIPT;
    }
    if (!ok) {
      snprintf(err, errlen, "view '%s': a %s view needs %s", name, named,
               *kind == FLUME__VIEW_REDUCE ? "reduce"
               : *kind == FLUME__VIEW_GROUP ? "map and reduce"
                                            : "map and no reduce");
      return FLUME_ESCRIPT;
    }
  } else if (has_reduce && (!has_map || has_initial))
    *kind = FLUME__VIEW_REDUCE;
  else if (has_reduce)
    *kind = FLUME__VIEW_GROUP;
  else if (has_map)
    *kind = FLUME__VIEW_INDEX;
  else {
    snprintf(err, errlen, "view '%s' has neither map nor reduce", name);
    return FLUME_ESCRIPT;
  }
  return 0;
}

int flume__host_load(flume__host *h, const char *name, const char *src,
                     size_t len, const char *chunkname, lua_State *F,
                     int idx, flume__view_kind *kind, int64_t *version,
                     uint64_t *hash, int *ref, char *err, size_t errlen) {
  lua_State *L = h->L;
  int top = lua_gettop(L);
  /* The record first: its account pays for the script's top level. */
  lua_createtable(L, 0, 8);
  lua_pushvalue(L, -1);
  int r = luaL_ref(L, LUA_REGISTRYINDEX);
  uint32_t acct = acct_new(h, FLUME__VIEW_MEMORY);
  if (acct == 0 || acct_bind(h, r, acct)) {
    snprintf(err, errlen, "view '%s': out of memory", name);
    luaL_unref(L, LUA_REGISTRYINDEX, r);
    lua_settop(L, top);
    return FLUME_ENOMEM;
  }
  int rec = lua_gettop(L);
  push_env(h);
  int env = lua_gettop(L);
  if (src) {
    if (luaL_loadbufferx(L, src, len, chunkname, "t") != LUA_OK) {
      snprintf(err, errlen, "view '%s' does not load: %s", name,
               lua_tostring(L, -1));
      goto fail;
    }
    lua_pushvalue(L, env);
    lua_setupvalue(L, -2, 1);
    /* A script's top level runs under the view's limits too. */
    if (host_call(h, acct, 0, 1) != LUA_OK) {
      snprintf(err, errlen, "view '%s' failed to run: %s", name,
               lua_tostring(L, -1));
      goto fail;
    }
    *hash = fnv1a(FNV_BASIS, src, len);
    if (lua_istable(L, -1)) plain_def(L);
  } else {
    move_ctx m = {F, L, env, FNV_BASIS, err, errlen};
    char path[80];
    snprintf(path, sizeof path, "view '%s'", name);
    lua_pushvalue(F, idx);
    int rc = move_value(&m, path, 0);
    lua_pop(F, 1);
    if (rc) goto fail;
    *hash = m.hash;
  }
  if (classify(L, name, kind, version, err, errlen)) goto fail;
  /* memory: what the view may hold, in bytes. */
  lua_getfield(L, -1, "memory");
  if (!lua_isnil(L, -1)) {
    lua_Integer mem = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    if (mem < (1 << 20)) {
      snprintf(err, errlen, "view '%s': memory must be an integer number "
               "of bytes, at least 1 MiB (1048576)", name);
      goto fail;
    }
    h->accts[acct].cap = mem;
  }
  lua_pop(L, 1);
  /* The record: { def = the script's table, env = its environment }. */
  lua_setfield(L, rec, FLUME__HREC_DEF);
  lua_pushvalue(L, env);
  lua_setfield(L, rec, FLUME__HREC_ENV);
  *ref = r;
  lua_settop(L, top);
  return 0;
fail:
  lua_settop(L, top);
  h->ref_acct[r] = 0;
  luaL_unref(L, LUA_REGISTRYINDEX, r);
  /* A top level that failed (over its cap, say) leaves its garbage. */
  lua_gc(L, LUA_GCCOLLECT);
  return FLUME_ESCRIPT;
}

int flume__host_set_mapper(flume__host *h, lua_State *F, int idx, char *err,
                           size_t errlen) {
  lua_State *L = h->L;
  int top = lua_gettop(L);
  push_env(h);
  move_ctx m = {F, L, lua_gettop(L), FNV_BASIS, err, errlen};
  lua_pushvalue(F, idx);
  int rc = move_value(&m, "mapper", 0);
  lua_pop(F, 1);
  if (rc == 0) lua_setfield(L, LUA_REGISTRYINDEX, FLUME__HREG_MAPPER);
  lua_settop(L, top);
  return rc;
}
