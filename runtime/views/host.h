/* What load.c needs of the host beyond views.h: the view's environment
 * and its memory account. Private to runtime/views/host.c and load.c. */
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

#endif
