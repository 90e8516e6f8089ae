/*
 * Lua 5.4 patterns with a step budget (see pattern.h). Written from the
 * reference manual; where the manual leaves a detail open (an unclosed
 * set, a '$' that is not last, gmatch's '^'), it does what the string
 * library of Lua 5.4 does, which spec/pattern_spec.lua checks against
 * the real library on random patterns and subjects.
 */
#include "views/pattern.h"

#include <ctype.h>
#include <lauxlib.h>
#include <string.h>

#define PM_MAXCAPTURES 32  /* as LUA_MAXCAPTURES */
#define PM_MAXDEPTH 200    /* nested items before "pattern too complex" */
#define PM_CHARGE_EVERY 4096 /* steps between two charges */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define SPECIALS "^$*+?.([%-"
/* The registry's entry holding the charge function (a full userdata). */
#define PM_CHARGE_KEY "flume.pattern.charge"

typedef struct pm_charge {
  flume__charge_fn fn; /* the host's */
} pm_charge;

typedef struct pm_capture {
  const char *init; /* where it starts in the subject */
  ptrdiff_t len;    /* its length, or CAP_UNFINISHED / CAP_POSITION */
} pm_capture;

typedef struct pm_state {
  const char *src;     /* the subject */
  const char *src_end; /* its end */
  const char *pat_end; /* the pattern's end */
  lua_State *L;        /* for errors and results */
  int depth;           /* nesting left before "too complex" */
  int level;           /* captures opened so far */
  size_t steps;        /* steps not charged yet */
  flume__charge_fn charge; /* where they are charged */
  pm_capture cap[PM_MAXCAPTURES]; /* the captures */
} pm_state;

static void step(pm_state *ms, size_t n) {
  ms->steps += n;
  if (ms->steps >= PM_CHARGE_EVERY) {
    size_t s = ms->steps;
    ms->steps = 0;
    ms->charge(ms->L, s);
  }
}

static void flush_steps(pm_state *ms) {
  size_t s = ms->steps;
  ms->steps = 0;
  if (s) ms->charge(ms->L, s);
}

/* Where the single-character class at p ends. */
static const char *class_end(pm_state *ms, const char *p) {
  char c = *p++;
  if (c == '%') {
    if (p >= ms->pat_end)
      luaL_error(ms->L, "malformed pattern (ends with '%%')");
    return p + 1;
  }
  if (c == '[') {
    if (*p == '^') p++;
    /* The first character of a set is itself even when it is ']'. */
    do {
      if (p >= ms->pat_end)
        luaL_error(ms->L, "malformed pattern (missing ']')");
      c = *p++;
      if (c == '%' && p < ms->pat_end) p++;
    } while (*p != ']');
    return p + 1;
  }
  return p;
}

/* Does c belong to the class %cl (cl a letter), or is it cl itself? */
static int class_has(int c, int cl) {
  int r;
  switch (tolower(cl)) {
  case 'a': r = isalpha(c); break;
  case 'c': r = iscntrl(c); break;
  case 'd': r = isdigit(c); break;
  case 'g': r = isgraph(c); break;
  case 'l': r = islower(c); break;
  case 'p': r = ispunct(c); break;
  case 's': r = isspace(c); break;
  case 'u': r = isupper(c); break;
  case 'w': r = isalnum(c); break;
  case 'x': r = isxdigit(c); break;
  default: return cl == c;
  }
  if (isupper(cl)) r = !r; /* %A is the complement of %a */
  return r != 0;
}

/* Does c belong to the set [...] from p (at '[') to ec (at ']')? */
static int set_has(int c, const char *p, const char *ec) {
  int in = 1;
  if (p[1] == '^') {
    in = 0;
    p++;
  }
  while (++p < ec) {
    if (*p == '%') {
      p++;
      if (class_has(c, (unsigned char)*p)) return in;
    } else if (p[1] == '-' && p + 2 < ec) {
      int lo = (unsigned char)p[0], hi = (unsigned char)p[2];
      p += 2;
      if (lo <= c && c <= hi) return in;
    } else if ((unsigned char)*p == c) {
      return in;
    }
  }
  return !in;
}

/* Does the subject's character at s match the class from p to ep? */
static int single(pm_state *ms, const char *s, const char *p,
                  const char *ep) {
  if (s >= ms->src_end) return 0;
  int c = (unsigned char)*s;
  switch (*p) {
  case '.': return 1;
  case '%': return class_has(c, (unsigned char)p[1]);
  case '[':
    step(ms, (size_t)(ep - p)); /* a set is read whole: a long one costs */
    return set_has(c, p, ep - 1);
  default: return (unsigned char)*p == c;
  }
}

static const char *do_match(pm_state *ms, const char *s, const char *p);

/* %bxy at p (after "%b"). */
static const char *balance(pm_state *ms, const char *s, const char *p) {
  if (p + 1 >= ms->pat_end)
    luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
  if (s >= ms->src_end || *s != p[0]) return NULL;
  char open = p[0], close = p[1];
  int depth = 1;
  while (++s < ms->src_end) {
    step(ms, 1);
    if (*s == close) {
      if (--depth == 0) return s + 1;
    } else if (*s == open) {
      depth++;
    }
  }
  return NULL;
}

/* x* (and x+ after its first): as many as match, then fewer. */
static const char *max_expand(pm_state *ms, const char *s, const char *p,
                              const char *ep) {
  ptrdiff_t n = 0;
  while (single(ms, s + n, p, ep)) {
    n++;
    step(ms, 1);
  }
  for (; n >= 0; n--) {
    const char *r = do_match(ms, s + n, ep + 1);
    if (r) return r;
  }
  return NULL;
}

/* x-: as few as match, then more. */
static const char *min_expand(pm_state *ms, const char *s, const char *p,
                              const char *ep) {
  for (;;) {
    const char *r = do_match(ms, s, ep + 1);
    if (r) return r;
    if (!single(ms, s, p, ep)) return NULL;
    s++;
  }
}

static const char *open_capture(pm_state *ms, const char *s, const char *p,
                                ptrdiff_t what) {
  if (ms->level >= PM_MAXCAPTURES) luaL_error(ms->L, "too many captures");
  ms->cap[ms->level].init = s;
  ms->cap[ms->level].len = what;
  ms->level++;
  const char *r = do_match(ms, s, p);
  if (r == NULL) ms->level--;
  return r;
}

static const char *close_capture(pm_state *ms, const char *s,
                                 const char *p) {
  int l = ms->level - 1;
  while (l >= 0 && ms->cap[l].len != CAP_UNFINISHED) l--;
  if (l < 0) luaL_error(ms->L, "invalid pattern capture");
  ms->cap[l].len = s - ms->cap[l].init;
  const char *r = do_match(ms, s, p);
  if (r == NULL) ms->cap[l].len = CAP_UNFINISHED;
  return r;
}

/* %1 .. %9: the text of a closed capture again. */
static const char *back_reference(pm_state *ms, const char *s, int d) {
  int l = d - '1';
  if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_UNFINISHED)
    luaL_error(ms->L, "invalid capture index %%%d", l + 1);
  ptrdiff_t len = ms->cap[l].len;
  if (len < 0) return NULL; /* a position capture matches no text */
  step(ms, (size_t)len);
  if (ms->src_end - s >= len && memcmp(ms->cap[l].init, s, (size_t)len) == 0)
    return s + len;
  return NULL;
}

/* Matches the pattern from p at s; returns the end of the match. */
static const char *do_match(pm_state *ms, const char *s, const char *p) {
  if (ms->depth-- == 0) luaL_error(ms->L, "pattern too complex");
  for (;;) {
    step(ms, 1);
    if (p == ms->pat_end) break;
    const char *ep;
    switch (*p) {
    case '(':
      if (p[1] == ')') s = open_capture(ms, s, p + 2, CAP_POSITION);
      else s = open_capture(ms, s, p + 1, CAP_UNFINISHED);
      goto done;
    case ')':
      s = close_capture(ms, s, p + 1);
      goto done;
    case '$':
      if (p + 1 != ms->pat_end) goto single_item; /* a plain '$' */
      if (s != ms->src_end) s = NULL;
      goto done;
    case '%':
      if (p[1] == 'b') {
        s = balance(ms, s, p + 2);
        if (s == NULL) goto done;
        p += 4;
        continue;
      }
      if (p[1] == 'f') {
        p += 2;
        if (*p != '[')
          luaL_error(ms->L, "missing '[' after '%%f' in pattern");
        ep = class_end(ms, p);
        int before = s == ms->src ? 0 : (unsigned char)s[-1];
        int here = s < ms->src_end ? (unsigned char)*s : 0;
        step(ms, 2 * (size_t)(ep - p));
        if (!set_has(before, p, ep - 1) && set_has(here, p, ep - 1)) {
          p = ep;
          continue;
        }
        s = NULL;
        goto done;
      }
      if (isdigit((unsigned char)p[1])) {
        s = back_reference(ms, s, (unsigned char)p[1]);
        if (s == NULL) goto done;
        p += 2;
        continue;
      }
      goto single_item;
    default:
    single_item:
      ep = class_end(ms, p);
      if (!single(ms, s, p, ep)) {
        if (*ep == '*' || *ep == '?' || *ep == '-') { /* may be empty */
          p = ep + 1;
          continue;
        }
        s = NULL;
        goto done;
      }
      switch (*ep) {
      case '?': {
        const char *r = do_match(ms, s + 1, ep + 1);
        if (r) {
          s = r;
          goto done;
        }
        p = ep + 1;
        continue;
      }
      case '+': s = max_expand(ms, s + 1, p, ep); goto done;
      case '*': s = max_expand(ms, s, p, ep); goto done;
      case '-': s = min_expand(ms, s, p, ep); goto done;
      default:
        s++;
        p = ep;
        continue;
      }
    }
  }
done:
  ms->depth++;
  return s;
}

static void pm_init(pm_state *ms, lua_State *L, const char *s, size_t ls,
                    const char *p, size_t lp) {
  ms->L = L;
  lua_getfield(L, LUA_REGISTRYINDEX, PM_CHARGE_KEY);
  ms->charge = ((pm_charge *)lua_touserdata(L, -1))->fn;
  lua_pop(L, 1);
  ms->src = s;
  ms->src_end = s + ls;
  ms->pat_end = p + lp;
  ms->depth = PM_MAXDEPTH;
  ms->level = 0;
  ms->steps = 0;
}

static void pm_reset(pm_state *ms) {
  ms->level = 0;
  ms->depth = PM_MAXDEPTH;
}

/* Pushes capture i of the match s..e (the whole match when there are no
 * captures and i is 0). Returns nothing. */
static void push_capture(pm_state *ms, int i, const char *s, const char *e) {
  if (i >= ms->level) {
    if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
    lua_pushlstring(ms->L, s, (size_t)(e - s));
    return;
  }
  ptrdiff_t len = ms->cap[i].len;
  if (len == CAP_UNFINISHED) luaL_error(ms->L, "unfinished capture");
  if (len == CAP_POSITION)
    lua_pushinteger(ms->L, (lua_Integer)(ms->cap[i].init - ms->src) + 1);
  else
    lua_pushlstring(ms->L, ms->cap[i].init, (size_t)len);
}

/* Pushes every capture (or the whole match, with whole set and none).
 * Returns how many. */
static int push_captures(pm_state *ms, const char *s, const char *e,
                         int whole) {
  int n = ms->level == 0 && whole ? 1 : ms->level;
  luaL_checkstack(ms->L, n, "too many captures");
  for (int i = 0; i < n; i++) push_capture(ms, i, s, e);
  return n;
}

/* A 1-based, possibly negative position into a subject of len bytes, as a
 * 1-based position not below 1. */
static size_t start_at(lua_Integer pos, size_t len) {
  if (pos > 0) return (size_t)pos;
  if (pos == 0) return 1;
  if (pos < -(lua_Integer)len) return 1;
  return len + (size_t)pos + 1;
}

static int has_specials(const char *p, size_t lp) {
  for (size_t i = 0; i < lp; i++)
    if (p[i] != '\0' && strchr(SPECIALS, p[i])) return 1;
  return 0;
}

/* Plain search of p in s, every compare counted. */
static const char *plain_find(pm_state *ms, const char *s, size_t ls,
                              const char *p, size_t lp) {
  if (lp == 0) return s;
  if (lp > ls) return NULL;
  const char *last = s + (ls - lp);
  for (const char *at = s; at <= last; at++) {
    const char *from = at;
    at = memchr(at, p[0], (size_t)(last - at) + 1);
    /* memchr's scan is charged by its length, as a scan of the pattern
     * matcher would be (16 bytes a step, as gsub's copying) */
    step(ms, (size_t)((at ? at : last + 1) - from) / 16 + 1);
    if (at == NULL) return NULL;
    step(ms, lp);
    if (memcmp(at + 1, p + 1, lp - 1) == 0) return at;
  }
  return NULL;
}

static int find_aux(lua_State *L, int find) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_at(luaL_optinteger(L, 3, 1), ls) - 1;
  pm_state ms;
  pm_init(&ms, L, s, ls, p, lp);
  if (init > ls) {
    luaL_pushfail(L);
    return 1;
  }
  step(&ms, lp / 16); /* has_specials reads the whole pattern */
  if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
    const char *at = plain_find(&ms, s + init, ls - init, p, lp);
    flush_steps(&ms);
    if (at) {
      lua_pushinteger(L, (lua_Integer)(at - s) + 1);
      lua_pushinteger(L, (lua_Integer)(at - s + (ptrdiff_t)lp));
      return 2;
    }
  } else {
    const char *at = s + init;
    int anchor = lp > 0 && *p == '^';
    if (anchor) {
      p++;
      ms.pat_end = p + lp - 1;
    }
    do {
      pm_reset(&ms);
      const char *e = do_match(&ms, at, p);
      if (e) {
        flush_steps(&ms);
        if (find) {
          lua_pushinteger(L, (lua_Integer)(at - s) + 1);
          lua_pushinteger(L, (lua_Integer)(e - s));
          return push_captures(&ms, NULL, NULL, 0) + 2;
        }
        return push_captures(&ms, at, e, 1);
      }
    } while (at++ < ms.src_end && !anchor);
    flush_steps(&ms);
  }
  luaL_pushfail(L);
  return 1;
}

static int pm_find(lua_State *L) { return find_aux(L, 1); }
static int pm_match(lua_State *L) { return find_aux(L, 0); }

/* gmatch's iterator: up[1] subject, up[2] pattern, up[3] where to go on,
 * up[4] the end of the last match (-1: none). */
static int gmatch_next(lua_State *L) {
  size_t ls, lp;
  const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
  const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
  lua_Integer from = lua_tointeger(L, lua_upvalueindex(3));
  lua_Integer last = lua_tointeger(L, lua_upvalueindex(4));
  pm_state ms;
  pm_init(&ms, L, s, ls, p, lp);
  for (const char *at = s + from; at <= ms.src_end; at++) {
    pm_reset(&ms);
    const char *e = do_match(&ms, at, p);
    if (e && (last < 0 || e != s + last)) {
      flush_steps(&ms);
      lua_pushinteger(L, (lua_Integer)(e - s));
      lua_copy(L, -1, lua_upvalueindex(3));
      lua_replace(L, lua_upvalueindex(4));
      return push_captures(&ms, at, e, 1);
    }
  }
  flush_steps(&ms);
  lua_pushinteger(L, (lua_Integer)ls + 1);
  lua_replace(L, lua_upvalueindex(3));
  return 0;
}

static int pm_gmatch(lua_State *L) {
  size_t ls;
  luaL_checklstring(L, 1, &ls);
  luaL_checkstring(L, 2);
  size_t init = start_at(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) init = ls + 1; /* starts past the end: no match */
  lua_settop(L, 2);
  lua_pushinteger(L, (lua_Integer)init);
  lua_pushinteger(L, -1);
  lua_pushcclosure(L, gmatch_next, 4);
  return 1;
}

/* Appends the replacement string's expansion for the match s..e. */
static void add_expansion(pm_state *ms, luaL_Buffer *b, const char *s,
                          const char *e, const char *r, size_t lr) {
  lua_State *L = ms->L;
  const char *end = r + lr;
  while (r < end) {
    const char *pct = memchr(r, '%', (size_t)(end - r));
    if (pct == NULL) {
      luaL_addlstring(b, r, (size_t)(end - r));
      break;
    }
    luaL_addlstring(b, r, (size_t)(pct - r));
    r = pct + 1;
    if (r >= end || (*r != '%' && !isdigit((unsigned char)*r)))
      luaL_error(L, "invalid use of '%%' in replacement string");
    if (*r == '%') {
      luaL_addchar(b, '%');
    } else if (*r == '0') {
      luaL_addlstring(b, s, (size_t)(e - s));
    } else {
      push_capture(ms, *r - '1', s, e);
      luaL_tolstring(L, -1, NULL); /* a position capture: its number */
      lua_remove(L, -2);
      luaL_addvalue(b);
    }
    r++;
  }
}

/* Appends the replacement of the match s..e, by its kind (arg 3). */
static void add_replacement(pm_state *ms, luaL_Buffer *b, const char *s,
                            const char *e, int kind) {
  lua_State *L = ms->L;
  if (kind == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    int n = push_captures(ms, s, e, 1);
    lua_call(L, n, 1);
  } else if (kind == LUA_TTABLE) {
    push_capture(ms, 0, s, e);
    lua_gettable(L, 3);
  } else {
    size_t lr;
    const char *r = lua_tolstring(L, 3, &lr);
    step(ms, lr);
    add_expansion(ms, b, s, e, r, lr);
    return;
  }
  if (!lua_toboolean(L, -1)) { /* nil or false: the match stays */
    lua_pop(L, 1);
    luaL_addlstring(b, s, (size_t)(e - s));
  } else if (!lua_isstring(L, -1)) {
    luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  } else {
    luaL_addvalue(b);
  }
}

static int pm_gsub(lua_State *L) {
  size_t ls, lp;
  const char *src = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  int kind = lua_type(L, 3);
  lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
  luaL_argexpected(L, kind == LUA_TNUMBER || kind == LUA_TSTRING ||
                          kind == LUA_TFUNCTION || kind == LUA_TTABLE,
                   3, "string/function/table");
  int anchor = lp > 0 && *p == '^';
  if (anchor) {
    p++;
    lp--;
  }
  pm_state ms;
  pm_init(&ms, L, src, ls, p, lp);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *s = src, *last = NULL;
  lua_Integer n = 0;
  while (n < max) {
    pm_reset(&ms);
    const char *e = do_match(&ms, s, p);
    if (e && e != last) {
      n++;
      add_replacement(&ms, &b, s, e, kind);
      s = last = e;
    } else if (s < ms.src_end) {
      luaL_addchar(&b, *s++);
    } else {
      break;
    }
    if (anchor) break;
  }
  step(&ms, (size_t)(ms.src_end - s) / 16);
  flush_steps(&ms);
  luaL_addlstring(&b, s, (size_t)(ms.src_end - s));
  luaL_pushresult(&b);
  lua_pushinteger(L, n);
  return 2;
}

void flume__pattern_register(lua_State *L, flume__charge_fn charge) {
  pm_charge *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->fn = charge;
  lua_setfield(L, LUA_REGISTRYINDEX, PM_CHARGE_KEY);
  static const luaL_Reg fns[] = {{"find", pm_find},
                                 {"match", pm_match},
                                 {"gmatch", pm_gmatch},
                                 {"gsub", pm_gsub},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
