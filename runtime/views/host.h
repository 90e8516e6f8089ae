/* What load.c needs of the host beyond views.h (the view's environment
 * and its memory account) and what the indexer's runners need
 * (pipeline.c). Private to runtime/views. */
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

/* Runners (host.c says more): compiles the Lua text src[len] (chunk
 * `name`), strips it, runs it once and pushes the table it returns, whose
 * functions are runners. 0, or nonzero with nothing pushed. */
int flume__host_runner_load(flume__host *h, const char *src, size_t len,
                            const char *name);
/* Calls the runner function at the top (below it nargs arguments) as
 * lua_pcall does: the script calls it makes, each armed by
 * flume__host_arm, are the view's (the record `ref`'s account, its name on
 * what they print), and an error ends as one of flume__host_call's. */
int flume__host_run(flume__host *h, int ref, int nargs, int nresults);
/* From a C function a runner calls: the script call the runner makes
 * after `extra` more of its own instructions (the call instruction
 * included) gets a whole instruction budget and work allowance, is
 * charged to the view and tagged with seq. */
void flume__host_arm(flume__host *h, int64_t seq, int extra);
/* From a C function a runner calls after a script call: no limit, the
 * runtime's account, until the next arm. */
void flume__host_disarm(flume__host *h);

#endif
