/*
 * Views: the registry, the indexer, checkpoints and since-gating (views.c),
 * and the sandboxed Lua state that runs view scripts (viewhost.c).
 *
 * A view's state lives in its own table of the store and its record in the
 * metadata table, written in the same transaction as the state it
 * describes: a checkpoint. Names and layouts: runtime/format.h.
 *
 * Readers gate on `committed`, the since of the last committed checkpoint,
 * and read the store directly; the indexer works ahead of it in `since`.
 */
#ifndef FLUME_RUNTIME_VIEWS_H
#define FLUME_RUNTIME_VIEWS_H

#include <lua.h>

#include "buf.h"
#include "internal.h"

typedef enum flume__view_kind {
  FLUME__VIEW_REDUCE = 1, /* one state for the whole log */
  FLUME__VIEW_GROUP = 2,  /* one accumulator per key */
  FLUME__VIEW_INDEX = 3,  /* key -> seqs */
  FLUME__VIEW_C = 4       /* written in C, behind a flume_view_vtable */
} flume__view_kind;

/* Called once a gated read may go on (status 0), or with the view's error,
 * FLUME_ETIMEDOUT or FLUME_ECLOSED. */
typedef void (*flume__wait_cb)(void *ctx, int status);

/* ---- the view host (host.c) ---------------------------------------- */

typedef struct flume__host flume__host;

/* Creates the sandboxed state. Errors: FLUME_ENOMEM. */
int flume__host_new(flume__host **out);
void flume__host_free(flume__host *h);
lua_State *flume__host_state(flume__host *h);

/*
 * Loads a view definition into the host: the Lua script source (text
 * only), or, when `src` is NULL, the table at index `idx` of the state `L`
 * (its functions must capture no local variable). Classifies it; on success
 * stores it under a registry ref in *ref and sets kind, version and hash.
 * On failure returns FLUME_ESCRIPT with the problem (and file:line) in err.
 */
int flume__host_load(flume__host *h, const char *name, const char *src,
                     size_t len, const char *chunkname, lua_State *L,
                     int idx, flume__view_kind *kind, int64_t *version,
                     uint64_t *hash, int *ref, char *err, size_t errlen);

/* Sets the mapper from the function at `idx` of `L` (no upvalues but
 * _ENV). FLUME_ESCRIPT on failure. */
int flume__host_set_mapper(flume__host *h, lua_State *L, int idx, char *err,
                           size_t errlen);

/*
 * A loaded view's record in the host's registry (flume__host_load makes
 * it; the ref is the view's host_ref): a table with these fields.
 */
#define FLUME__HREC_DEF "def"           /* the definition (script table) */
#define FLUME__HREC_ENV "env"           /* its sandboxed environment */
#define FLUME__HREC_STATE "state"       /* reduce: the indexer's state */
#define FLUME__HREC_INITIAL "initial"   /* reduce: msgpack of `initial` */
#define FLUME__HREC_DIRTY "dirty"       /* group: accumulators changed
                                         * since the last checkpoint */
#define FLUME__HREC_INFLIGHT "inflight" /* group: those of the checkpoint
                                         * in flight */
/* The host registry's own entries. */
#define FLUME__HREG_MAPPER "flume.mapper"   /* the database's mapper */
#define FLUME__HREG_DELETED "flume.deleted" /* the marker of a deleted group
                                             * key in a dirty table */
#define FLUME__HREG_KEPT "flume.kept"       /* values a cut slice decoded
                                             * and mapped, for the next */
/* Fields of a definition the engine reads. */
#define FLUME__DEF_MAP "map"
#define FLUME__DEF_REDUCE "reduce"
#define FLUME__DEF_INITIAL "initial"
#define FLUME__DEF_METHODS "methods"

/* Instructions one call into a view script may run before it fails. */
#define FLUME__INSTRUCTION_LIMIT 10000000

/* What a view may hold in the host unless its script says (`memory`, in
 * bytes): past it, the call that allocates fails with "not enough
 * memory" and so does the view. */
#define FLUME__VIEW_MEMORY ((int64_t)256 << 20)

/* lua_pcall on the host state under the instruction limit, outside any
 * view (the mapper): its memory is not capped. */
int flume__host_pcall(flume__host *h, int nargs, int nresults);

/* lua_pcall of a view's function (the view's record ref): under the
 * instruction limit and the view's memory cap. */
int flume__host_call(flume__host *h, int ref, int nargs, int nresults);


/* Drops what the host holds for a replaced view (its record becomes an
 * empty definition) and collects at once. */
void flume__host_release(flume__host *h, int ref);

/* Drops a loaded view. */
void flume__host_unref(flume__host *h, int ref);

/* Where the sandbox's print and log send a message: the view's name (NULL
 * for the mapper), the seq being processed (-1: none), the text (at most
 * FLUME_LOG_MAX bytes and a cut marker). */
typedef void (*flume__host_log_fn)(void *ctx, const char *view, int64_t seq,
                                   const char *msg, size_t len);
/* Sends the sandbox's messages to fn(ctx, ...); with fn NULL (the
 * default) they are formatted and dropped. */
void flume__host_set_log(flume__host *h, flume__host_log_fn fn, void *ctx);
/* flume__host_pcall (the mapper), for the value at `seq`. */
int flume__host_pcall_at(flume__host *h, int nargs, int nresults,
                         int64_t seq);

/* ---- view logs (log.c) ------------------------------------------------ */

/* A database's queue of what view scripts print. */
typedef struct flume__vlog flume__vlog;

/* The database's log queue: made and attached as a part (closed and
 * freed with the database) the first time. Errors: FLUME_ENOMEM,
 * FLUME_ECLOSED. */
int flume__vlog_open(flume_db *db, flume__vlog **out);
/* Takes a message a view printed (view NULL: the mapper; seq -1: none),
 * through the view's rate limit, to be delivered on the loop: a
 * flume__host_log_fn whose ctx is the queue. The message is copied. */
void flume__vlog_add(void *ctx, const char *view, int64_t seq,
                     const char *msg, size_t len);

/* ---- the registry and the indexer (views.c) ------------------------------ */

typedef struct flume__views flume__views;

/* Called once a view is set up (its table open, its record read). */
typedef void (*flume__use_cb)(void *ctx, int status, flume_view *v);

/* Loads and registers a view (see flume__host_load for src/L/idx), and
 * queues the job that opens its table and reads its record, dropping its
 * state if the version changed. Errors: FLUME_ESCRIPT, FLUME_EEXIST (same
 * name, same version, not failed), FLUME_EINVAL, FLUME_ECLOSED, with a
 * message in err. */
/* A view's definition, as flume__views_use takes it. */
typedef struct flume__view_def {
  const char *src;        /* script text, or NULL: a table at L[idx] */
  size_t len;             /* its length */
  const char *chunk;      /* its chunk name ("@file.lua", "=name") */
  lua_State *L;           /* the table's state, when src is NULL */
  int idx;                /* the table's index there */
  const char *kept;       /* a table: the text of the chunk its functions
                           * were written in (the catalogue keeps it), or
                           * NULL */
  size_t kept_len;        /* its length */
  const char *kept_chunk; /* its chunk name, or NULL */
  int origin;             /* 1: text that was a table's (mounted by name) */
  uint64_t hash;          /* nonzero: the hash it was attached with
                           * (mounted by name), instead of its text's */
} flume__view_def;

int flume__views_use(flume_db *db, const char *name,
                     const flume__view_def *def, flume__use_cb cb, void *ctx,
                     char *err, size_t errlen);
flume_view *flume__view_find(flume_db *db, const char *name);

/* ---- the catalogue (catalogue.c) ------------------------------------- */

/* Mounts the view as the database stores it (its script from the
 * catalogue): flume__views_use with that script. Errors: its, and
 * FLUME_ENOTFOUND (no stored script), FLUME_ESCRIPT (a table's view whose
 * source was not stored), with a message in err. */
int flume__views_mount(flume_db *db, const char *name, flume__use_cb cb,
                       void *ctx, char *err, size_t errlen);

/* One view the database has, for flume__views_list: valid during the
 * call. */
typedef struct flume__catalogue_entry {
  char name[FLUME__NAME_MAX + 1]; /* its name */
  flume__record record;  /* its checkpoint record */
  int has_script;        /* the catalogue has its script */
  flume__script script;  /* the script (when has_script) */
  int attached;          /* a running writer has it attached, at the
                          * record's version */
  int mounted;           /* this handle has it mounted */
  const char *error;     /* the error that stopped it in the writer that
                          * last had it, or NULL */
  size_t error_len;      /* its length */
} flume__catalogue_entry;

/* Nonzero stops the listing and is returned. */
typedef int (*flume__catalogue_fn)(void *ctx,
                                   const flume__catalogue_entry *e);

/* Calls fn with each view the database has a record of, by name, in one
 * read transaction. */
int flume__views_list(flume_db *db, flume__catalogue_fn fn, void *ctx);

typedef void (*flume__drop_cb)(void *ctx, int status);

/* Drops the view: its record, script and state go in one transaction (a
 * writer's job; cb follows, with FLUME_ENOTFOUND when the database had no
 * such view). A view in use here is forgotten at once: its reads fail.
 * Errors: FLUME_EREADONLY, FLUME_EINVAL, FLUME_EBUSY (a C view in use),
 * FLUME_ECLOSED, with a message in err. */
int flume__views_drop(flume_db *db, const char *name, flume__drop_cb cb,
                      void *ctx, char *err, size_t errlen);
/* Takes a view out of use (dropped): it indexes and checkpoints no more,
 * its waiters and later reads fail. */
void flume__views_forget(flume_view *v);
int flume__views_set_mapper(flume_db *db, lua_State *L, int idx, char *err,
                            size_t errlen);
int flume__views_set_paused(flume_db *db, int paused);
/* Drops every view's state and rebuilds it from the log. */
int flume__views_rebuild(flume_db *db);

/* Returned by flume__view_wait when there is nothing to wait for. */
#define FLUME__WAIT_REACHED 1

/*
 * Waits until the view is set up and its committed since has reached
 * `target` (-1: only set up); timeout in seconds, negative (or too large
 * to count) for none. The wait checks its own target first and again after
 * every wake-up: when it holds already, with `defer` 0 it returns
 * FLUME__WAIT_REACHED and never calls cb; with `defer` 1 cb is called on
 * the next loop turn. Otherwise cb is called once, later: with 0,
 * FLUME_ETIMEDOUT, FLUME_EVIEW (the view failed) or FLUME_ECLOSED (the
 * database is closing). Errors: FLUME_EVIEW (it has failed; with `defer`
 * 1 that goes to cb instead), FLUME_ECLOSED, FLUME_ENOMEM; on a read-only
 * handle FLUME_ENOWRITER (no running writer brings the view up: the
 * view's info has a note saying why), at once or later.
 */
int flume__view_wait(flume_view *v, int64_t target, double timeout,
                     int defer, flume__wait_cb cb, void *ctx);

typedef struct flume__view_info_t {
  int kind;              /* flume__view_kind */
  int64_t version;       /* script version */
  int64_t since;         /* committed since: what reads see */
  int64_t processed;     /* how far the indexer has got */
  int failed;            /* stopped by an error */
  const char *error;     /* the error, when failed */
  int64_t error_seq;     /* the seq that caused it */
  int script_changed;    /* same version, different script */
  double rate;           /* values/s while catching up, else 0 */
  uint64_t hash;         /* script hash */
  int ready;             /* set up */
  const char *note;      /* read-only: why a gated read cannot wait, as
                          * last found (FLUME_ENOWRITER), or NULL */
} flume__view_info_t;

int flume__view_info(flume_view *v, flume__view_info_t *out);
flume__table flume__view_table(flume_view *v);
/* The view's record in the host's registry: { def, env, state, ... }. */
int flume__view_host_ref(flume_view *v);
flume__host *flume__views_host(flume_db *db);

/* Adds a C view (see flume_view_use_c). */
int flume__views_use_c(flume_db *db, const char *name,
                       const flume_view_vtable *vt, void *state,
                       flume_view **out);
/* Calls fn with the name of each method a Lua view's script declares and
 * how it runs: "sync", "async" or "source" (methods.c). */
void flume__view_methods(flume_view *v,
                         void (*fn)(void *ctx, const char *name,
                                    const char *how),
                         void *ctx);

/* Calls a view's method with msgpack args (a list); the msgpack result goes
 * to out. Errors: FLUME_ENOTFOUND, FLUME_EVIEW, FLUME_EINVAL, with err. */
int flume__view_call(flume_view *v, const char *method, const char *args,
                     size_t alen, flume__buf *out, char *err, size_t errlen);



#endif
