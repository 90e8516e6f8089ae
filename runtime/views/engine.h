/*
 * What the view engine's files share (gate.c, pipeline.c, registry.c): the
 * per-database state of the views and the calls between the parts. Nothing
 * outside runtime/views/ includes this; the view interface is views.h.
 */
#ifndef FLUME_RUNTIME_VIEWS_ENGINE_H
#define FLUME_RUNTIME_VIEWS_ENGINE_H

#include "views/journal.h"
#include "views/views.h"

typedef struct flume__waiter flume__waiter;

struct flume_view {
  flume_db *db;            /* owner */
  struct flume__views *vs; /* its database's views */
  char name[FLUME__NAME_MAX + 1]; /* its name, also its table's */
  flume__view_kind kind;   /* what its script made it */
  int64_t version;         /* the script's version */
  uint64_t hash;           /* hash of the script */
  uint64_t built_hash;     /* hash of the script that built its state */
  int script_changed;      /* same version, different script: a warning */
  int ready;               /* its table is open and its record read */
  int resetting;           /* a rebuild's reset is not committed yet */
  int64_t since;           /* last seq the indexer fed it */
  int64_t committed;       /* since of its last committed checkpoint */
  int64_t handed;          /* since of the last checkpoint handed to the
                            * writer (committed, or in flight) */
  int64_t epoch;           /* bumped by rebuild: older checkpoints ignored */
  flume__table table;      /* its state's table */
  int host_ref;            /* its record in the host state's registry */
  flume__buf ops;          /* changes not yet handed to a checkpoint */
  flume__journal journal;  /* what its recent checkpoints changed, for
                            * live reads (journal.h) */
  int state_dirty;         /* reduce: state changed since last checkpoint */
  double state_saved_at;   /* reduce: when the state was last checkpointed */
  int failed;              /* a script error stopped it */
  int64_t error_seq;       /* the seq whose processing failed */
  char error[512];         /* what failed */
  flume__waiter *waiters;  /* gated reads, in order of target seq */
  double rate;             /* values per second while catching up */
  int64_t rate_since;      /* since at the last rate sample */
  double rate_at;          /* time of the last rate sample */
  char *script;            /* what the catalogue keeps: the script text, or
                            * a table view's chunk text (may be NULL) */
  size_t script_len;       /* its length */
  char *chunk;             /* its chunk name */
  int origin;              /* 0 script text, 1 a Lua table */
  char note[320];          /* read-only: why a gated read cannot wait
                            * (FLUME_ENOWRITER), for the caller's message */
  const flume_view_vtable *vt; /* a C view's functions */
  void *vstate;            /* a C view's state */
  flume_view *next;        /* the db's list */
};

/* A C reader of a view (api.c's iterators): the registry forgets the view
 * in every reader still open when the database closes. */
typedef struct flume__reader {
  struct flume__reader *next; /* the registry's list */
  struct flume__reader *prev;
  flume_view *view;           /* NULL once the database has closed */
} flume__reader;

struct flume__views {
  flume_db *db;          /* owner */
  flume__host *host;     /* the sandboxed state */
  flume_view *list;      /* views in use */
  flume_view *dead;      /* replaced views, kept until close */
  uv_idle_t idle;        /* runs indexer slices */
  int idle_on;           /* the idle handle is started */
  flume_watch *watch;    /* observes the log's since */
  int paused;            /* opened with ready = false */
  int inflight;          /* a checkpoint job is with the writer */
  int msgpack;           /* values are msgpack (else raw strings) */
  int has_mapper;        /* the host has a mapper */
  int batch;             /* values the next slice reads: what a slice gets
                          * through in its time, SLICE_MIN..SLICE_VALUES */
  uint64_t ckpt_at;      /* uv_hrtime of the last checkpoint offered while
                          * catching up */
  int64_t kept_first;    /* seq of the first value a cut slice left, decoded
                          * and mapped in the registry's "flume.kept" */
  int kept_n;            /* how many (0: none kept) */
  struct flume__ahead *ahead; /* reads the log ahead of the slices (ahead.c),
                          * made once they fall a slice behind; or NULL */
  int ahead_tried;       /* it was made, or could not be */
  int readonly;          /* a read-only handle: the views follow a writer's
                          * checkpoints (follow.c) instead of indexing */
  uv_timer_t follow;     /* read-only: calls use callbacks on the next loop
                          * turn (follow.c) */
  int follow_on;         /* the follow timer runs */
  uv_timer_t poll;       /* read-only: looks at the checkpoints of views
                          * with waiters (gate.c) */
  int poll_on;           /* the poll runs */
  int poll_ticks;        /* its ticks, to check the writer now and then */
  struct flume__mounted *mounted; /* read-only: use callbacks not yet
                          * called */
  int closing;           /* the database's handles are closing */
  int stopping;          /* the close stopped the views: no new work */
  int draining;          /* the close lets the views catch up first */
  uint64_t drain_until;  /* until then (uv_hrtime) */
  int handles;           /* handles still open while closing */
  flume__reader *readers; /* C iterators open on its views */
  void (*closed)(void *ctx); /* called when they are */
  void *closed_ctx;
};

/* Tracks r (r->view set) until flume__views_untrack. */
void flume__views_track(flume__reader *r);
void flume__views_untrack(flume__reader *r);


/* ---- the gate (gate.c) --------------------------------------------------- */

/* Releases the view's waiters whose target it has reached, in order. */
void flume__gate_release(flume_view *v);
/* Ends every waiter of the view with `status`. */
void flume__gate_fail(flume_view *v, int status);
/* Hands the waiters of a replaced view to the one replacing it. */
void flume__gate_move(flume_view *from, flume_view *to);
/* Read-only handles: readies the poll of the writer's checkpoints. */
void flume__gate_start(flume__views *vs);
/* Closes the poll; done follows. */
void flume__gate_close(flume__views *vs, uv_close_cb done);

/* ---- the pipeline (pipeline.c) ------------------------------------------- */

/* Follows the log and readies the indexer of a database's new views.
 * Errors: FLUME_ENOMEM, FLUME_ECLOSED. */
int flume__pipeline_start(flume__views *vs);
/* Drops every view's state and rebuilds it from the log (registry.c's
 * flume__views_rebuild is the door). */
int flume__pipeline_rebuild(flume__views *vs);
/* Starts indexer slices, unless paused or closing. */
void flume__pipeline_kick(flume__views *vs);
/* Hands everything done since the last checkpoint to the writer. */
void flume__pipeline_checkpoint(flume__views *vs);
/* Queues the job that opens a new view's table and reads its record,
 * dropping its state if the version changed; cb follows. Errors:
 * FLUME_ENOMEM, FLUME_ECLOSED, and encoding the initial state's (with a
 * message in err). */
int flume__pipeline_setup(flume__views *vs, flume_view *v, flume__use_cb cb,
                          void *ctx, char *err, size_t errlen);

/* ---- following a writer (follow.c): views of a read-only handle ----- */

/* Readies a read-only handle's views part (its timer). */
void flume__follow_start(flume__views *vs);
/* Sets up a view on a read-only handle: opens its table and reads its
 * record, now; cb follows on a later loop turn. The database must have
 * the view, at this version and kind: FLUME_ENOTFOUND or FLUME_ENOWRITER
 * otherwise, with a message in err. */
int flume__follow_setup(flume__views *vs, flume_view *v, flume__use_cb cb,
                        void *ctx, char *err, size_t errlen);
/* Takes a stored record into a read-only view: its since, or the error of
 * a record of another version or kind (FLUME_ENOWRITER, v->note says). */
int flume__follow_record(flume_view *v, const flume__record *rec);
/* Reads the view's record (one read transaction) into it. */
int flume__follow_sync(flume_view *v);
/* 0 when a running writer has the view attached at this version, else
 * FLUME_ENOWRITER with v->note saying which, where the view and the log
 * are; FLUME_EVIEW when the writer's copy failed (v->note: its error). */
int flume__follow_check(flume_view *v);
/* 1 when the view is behind the log's since (refreshed now): only then
 * does a wait need a writer to bring it up. */
int flume__follow_lags(flume_view *v);
/* Closes the timer; done(vs) follows. */
void flume__follow_close(flume__views *vs, uv_close_cb done);

#endif
