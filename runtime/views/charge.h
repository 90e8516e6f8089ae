/* What lazy.c reaches of the host (host.c) without knowing it: the
 * allocator's user data of a host state begins with this. */
#ifndef FLUME_RUNTIME_VIEWS_CHARGE_H
#define FLUME_RUNTIME_VIEWS_CHARGE_H

#include <lua.h>
#include <stdint.h>

typedef struct flume__charge {
  uint32_t current; /* account of the call in progress, 0 outside */
  /* What lazy decoding costs and saves (lazy.c, flume__lazy_choose). */
  struct {
    uint64_t values; /* proxies made since the last choice */
    uint64_t pairs;  /* their pairs */
    uint64_t reads;  /* pairs of them decoded since, one by one or whole */
    uint64_t whole;  /* values decoded whole since lazy decoding stopped */
    int off;         /* values are decoded whole for now */
    void *ring;      /* the ring of proxies' bytes, or NULL (lazy.c) */
    int no_ring;     /* the ring was made, or could not be */
    struct flume_db *db; /* whose log a kept proxy is read back from */
  } lazy;
} flume__charge;

/* The host's part of state L. */
static inline flume__charge *flume__charge_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return ud;
}

/* Charges what the host state L allocates from now on to account `acct`
 * (0: the runtime's) and returns the account it replaces, to be passed
 * back: lazy.c decodes a value's fields inside a view's call as the
 * runtime's work. */
static inline uint32_t flume__charge_to(lua_State *L, uint32_t acct) {
  flume__charge *c = flume__charge_of(L);
  uint32_t was = c->current;
  c->current = acct;
  return was;
}

#endif
