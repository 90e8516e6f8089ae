/* Which memory account a host state's allocations are charged to, where
 * lazy.c can switch it without knowing the host (host.c): the allocator's
 * user data of a host state begins with it. */
#ifndef FLUME_RUNTIME_VIEWS_CHARGE_H
#define FLUME_RUNTIME_VIEWS_CHARGE_H

#include <lua.h>
#include <stdint.h>

typedef struct flume__charge {
  uint32_t current; /* account of the call in progress, 0 outside */
} flume__charge;

/* Charges what the host state L allocates from now on to account `acct`
 * (0: the runtime's) and returns the account it replaces, to be passed
 * back: lazy.c decodes a value's fields inside a view's call as the
 * runtime's work. */
static inline uint32_t flume__charge_to(lua_State *L, uint32_t acct) {
  void *ud;
  lua_getallocf(L, &ud);
  flume__charge *c = ud;
  uint32_t was = c->current;
  c->current = acct;
  return was;
}

#endif
