/* What load.c needs of the host beyond views.h (the view's environment
 * and its memory account) and what the indexer's runs need (pipeline.c).
 * Private to runtime/views. */
#ifndef FLUME_RUNTIME_VIEWS_HOST_H
#define FLUME_RUNTIME_VIEWS_HOST_H

#include "views/views.h"

/* Pushes a fresh environment for a view: copies of the allow-list. */
void flume__host_push_env(flume__host *h);
/* Opens the memory account of the view record `ref` (capped at
 * FLUME__VIEW_MEMORY) of the view `name`: its calls are charged to it,
 * and what they print is tagged with the name. FLUME_ENOMEM. */
int flume__host_account_open(flume__host *h, int ref, const char *name);
/* Sets the cap of ref's account (the script's `memory`). */
void flume__host_account_cap(flume__host *h, int ref, int64_t cap);
/* Charges ref's calls to the runtime again (a load that failed). */
void flume__host_account_close(flume__host *h, int ref);

/* Runs (host.c says more): calls the function at the top (below it
 * nargs arguments) as lua_pcall does, for a pass of the view of record
 * `ref`: the script calls it makes, each armed by flume__host_arm, are the
 * view's (its account, its name on what they print), and an error ends
 * as one of flume__host_call's. */
int flume__host_run(flume__host *h, int ref, int nargs, int nresults);
/* Just before a script call of a run: a whole instruction budget and
 * work allowance, charged to the view, tagged with seq. */
void flume__host_arm(flume__host *h, int64_t seq);
/* Just after: the runtime's account (and no instruction of the runtime's
 * counted: it runs no Lua code before the next arm). */
void flume__host_disarm(flume__host *h);

#endif
