/*
 * Lua 5.4 pattern matching for the view host: string.find, match, gmatch
 * and gsub, written from the reference manual (§6.4.1), with every step
 * of the matcher counted. The string library's own matcher cannot be
 * interrupted: a backtracking pattern runs for ever inside one C call,
 * where the instruction hook never fires. Here the steps are charged, a
 * few thousand at a time, through the charge function the host registers
 * with them, which raises the view's limit error once its budget is spent.
 */
#ifndef FLUME_RUNTIME_PATTERN_H
#define FLUME_RUNTIME_PATTERN_H

#include <lua.h>
#include <stddef.h>

/* Charges `units` of work to the call in progress; raises a Lua error
 * when it is over its budget. */
typedef void (*flume__charge_fn)(lua_State *L, size_t units);

/* Sets find, match, gmatch and gsub in the table at the top of L; their
 * steps are charged through `charge`. */
void flume__pattern_register(lua_State *L, flume__charge_fn charge);

#endif
