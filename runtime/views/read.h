/*
 * The one read path of views (read.c). Every read of a view's stored state
 * goes through here: the Lua binding's get and read, the read handle a
 * view's methods get, and the C API. All of them read the committed state
 * (what the view's since says), never the indexer's work ahead of it, and
 * none of them waits: gating is the caller's, through flume__view_wait.
 */
#ifndef FLUME_RUNTIME_VIEWREAD_H
#define FLUME_RUNTIME_VIEWREAD_H

#include <lua.h>

#include "buf.h"
#include "internal.h"

/* A range of key parts. Bounds are key encodings of any length, even past
 * FLUME__KEY_MAX: such a bound still has its place in the key order. */
typedef struct flume__range {
  const char *lo; /* lower bound (an encoded key), or NULL */
  size_t lo_len;  /* its length in bytes */
  int lo_incl;    /* gte rather than gt */
  const char *hi; /* upper bound, or NULL */
  size_t hi_len;  /* its length in bytes */
  int hi_incl;    /* lte rather than lt */
  int reverse;    /* from hi down to lo */
} flume__range;

/* Called for each entry in range: its key part, the whole entry's length
 * (key part + suffix bytes follow the key part), and its value. Bytes are
 * valid during the call. Nonzero stops the read and is returned. */
typedef int (*flume__entry_fn)(void *ctx, const char *key, size_t key_len,
                               size_t entry_len, const void *val,
                               size_t val_len);

/*
 * Reads up to `max` entries of table `tbl` whose key part (the entry minus
 * its last `suffix` bytes) is in range, in one read transaction. `resume`
 * holds the last entry handed out (empty to start; any bytes are taken as
 * a place in the order): a later call goes on after it. *count says how
 * many were handed out; fewer than max means the range is done.
 */
int flume__view_range(flume_db *db, flume__table tbl, size_t suffix,
                      const flume__range *r, size_t max, flume__buf *resume,
                      flume__entry_fn fn, void *ctx, size_t *count);

/* ---- views ------------------------------------------------------------- */

/* One entry of a group or index view, valid during the call. */
typedef struct flume__view_entry {
  const char *key;  /* the encoded key (keys.h) */
  size_t key_len;   /* its length */
  int64_t seq;      /* index: the seq; group: -1 */
  const void *val;  /* group: msgpack of the accumulator; index: NULL */
  size_t val_len;   /* its length */
} flume__view_entry;

/* Called for each entry read; nonzero stops the read and is returned. */
typedef int (*flume__view_entry_fn)(void *ctx, const flume__view_entry *e);

/*
 * Checks that the view can be read now: FLUME_EBUSY (not set up yet),
 * FLUME_EINVAL (a C view: it answers through its methods; `keyed` and a
 * reduce view: it has no keys), with a message in err.
 */
int flume__view_readable(flume_view *v, int keyed, char *err, size_t errlen);

/*
 * Reads up to `max` entries of a group or index view in range r, after
 * `resume` (empty to start; on return, the last entry looked at), calling
 * fn for each, in one read transaction. *count says how many were handed
 * out, *done whether the range is read to its end.
 *
 * *since is the read's since: -1 on its first chunk, which brings the
 * view's since up to the checkpoint it saw (a checkpoint is in the store a
 * loop turn before its completion says so) and sets *since to it; pass it
 * back for the next chunks. Index entries of a later seq are skipped, so
 * every chunk of an index read sees that one since; a group view's later
 * chunks may see later checkpoints (its accumulators change in place).
 * Errors: flume__view_readable's, FLUME_ECORRUPT, the store's.
 */
int flume__view_read(flume_view *v, const flume__range *r, size_t max,
                     int64_t *since, flume__buf *resume,
                     flume__view_entry_fn fn, void *ctx, size_t *count,
                     int *done, char *err, size_t errlen);

/* One entry of a chunk (flume__view_chunk): where its bytes are. */
typedef struct flume__chunk_entry {
  size_t key_off;  /* its encoded key: offset in the chunk's keys */
  size_t key_len;  /* its length */
  size_t val_off;  /* its value: offset in the chunk's vals */
  size_t val_len;  /* its length */
  int64_t seq;     /* index: the seq; group: -1 */
} flume__chunk_entry;

/* A chunk of a view read, copied out of the store, so that it outlives
 * the read transactions it came from: the entries' keys and values (an
 * index view's: the log values they point at, as stored: codec bytes; a
 * group view's: msgpack of the accumulators). Zero it to start; reuse it
 * from chunk to chunk; flume__view_chunk_free gives its memory back. */
typedef struct flume__view_chunk {
  flume__buf keys;          /* the entries' encoded keys, end to end */
  flume__buf vals;          /* their values, end to end */
  int kind;                 /* the view's kind (flume__view_kind) when
                               the chunk was read */
  flume__chunk_entry *e;    /* the entries, in the read's order */
  size_t n;                 /* how many */
  size_t cap;               /* room in e */
  struct flume__seq_at *by_seq; /* scratch: an index chunk's seqs with
                                   their entries, sorted by seq */
  int64_t *seqs;            /* scratch: those seqs alone, for the log */
  size_t seqs_cap;          /* room in by_seq and seqs */
} flume__view_chunk;

/*
 * flume__view_read into a chunk: up to `max` entries (resume, *since and
 * *done as there) with their values, the chunk emptied first. An index
 * view's entries get their log values in one more read transaction, in
 * seq order (an index entry points anywhere in the log: sorted, the
 * lookups walk the log's tree forward). Errors: flume__view_read's,
 * FLUME_ENOMEM, and for the log values flume__db_read_seqs' (FLUME_ECLOSED
 * once the database closes, FLUME_ENOTFOUND for a seq past the log).
 */
int flume__view_read_chunk(flume_view *v, const flume__range *r, size_t max,
                           int64_t *since, flume__buf *resume,
                           flume__view_chunk *out, int *done, char *err,
                           size_t errlen);

void flume__view_chunk_free(flume__view_chunk *c);

/* flume__view_changes' answer when the view's journal does not hold every
 * change the step asks for: read the range again instead. */
#define FLUME__CHANGES_MISS 1

/*
 * A live read's step: the entries in range r (forward) that the view's
 * checkpoints after `after` changed, as the view's committed state has
 * them now, in key order (an index view's: then in seq order), at most
 * `max` handed out. *since receives the step's since: the view's since as
 * the read sees it (see flume__view_read), which the entries are read at.
 * An index view hands out its entries with a seq in (after, *since]; a
 * group view every key its checkpoints since `after` set (and perhaps some
 * of the checkpoint `after` falls in) with its accumulator now, a key they
 * deleted not at all: a superset of the keys whose accumulator is not what
 * it was at `after`, for the caller to compare with what it delivered.
 *
 * The work is proportional to what changed, not to the range: it comes
 * from the view's journal (journal.h) and, for a group view, one lookup a
 * key, all in one read transaction. FLUME__CHANGES_MISS (with *since set
 * and nothing handed out) when the journal does not hold every change in
 * (after, *since]: it overflowed, the view was rebuilt or replaced, its
 * checkpoints are another process's (a read-only handle), or it was not
 * on yet (flume__view_journal_on; this call turns it on). Errors:
 * flume__view_readable's, FLUME_ENOMEM, FLUME_ECORRUPT, the store's.
 */
int flume__view_changes(flume_view *v, const flume__range *r, size_t max,
                        int64_t after, int64_t *since,
                        flume__view_entry_fn fn, void *ctx, size_t *count,
                        char *err, size_t errlen);

/* Turns the view's journal on (journal.h), for a live read about to
 * begin: its steps find their changes from the next checkpoint on. */
void flume__view_journal_on(flume_view *v);

/* Bounds the view's journal to `max` bytes (a small bound overflows it).
 * In the test builds only (defined under the hooks' macro). */
void flume__view_journal_max(flume_view *v, size_t max);

/* Every entry of one key: at most one for a group view, its seqs in order
 * for an index view. Errors: as flume__view_read. */
int flume__view_get(flume_view *v, const char *key, size_t key_len,
                    flume__view_entry_fn fn, void *ctx, size_t *count,
                    char *err, size_t errlen);

/* A reduce view's committed state as stored (msgpack) into out.
 * FLUME_ENOTFOUND when it has none yet; flume__view_readable's errors. */
int flume__view_state(flume_view *v, flume__buf *out, char *err,
                      size_t errlen);

/* The same without the checks and without touching the view's since, for
 * the pipeline loading a view's state. */
int flume__view_stored_state(flume_view *v, flume__buf *out);

/* Pushes a reduce view's committed state onto L, decoded (a fresh copy each
 * call; nil when it has none). On error pushes nothing. Errors:
 * flume__view_state's but FLUME_ENOTFOUND, FLUME_ECORRUPT (it cannot be
 * decoded), with a message in err. */
int flume__view_push_state(flume_view *v, lua_State *L, char *err,
                           size_t errlen);

/* Collects entries into Lua tables on L: keys (decoded) into keys[] when
 * `keys` is a stack index, and seqs (index) or accumulators (group) into
 * vals[]. Pass flume__view_collect as the entry function. */
typedef struct flume__collect_ctx {
  lua_State *L;   /* where entries go */
  int keys;       /* stack index of the keys table, or 0 */
  int vals;       /* stack index of the seqs/accumulators table */
  lua_Integer n;  /* entries so far */
  char err[256];  /* a decode error */
} flume__collect_ctx;

int flume__view_collect(void *ctx, const flume__view_entry *e);

#endif
