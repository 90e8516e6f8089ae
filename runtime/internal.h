/* The runtime's internals, shared by its files and the Lua binding. Nothing
 * here is API. */
#ifndef FLUME_RUNTIME_INTERNAL_H
#define FLUME_RUNTIME_INTERNAL_H

#include <stdint.h>

#include "buf.h"
#include "flume.h"
#include "format.h"
#include "store.h"


typedef struct flume__job flume__job;

/* Runs on the writer (a worker thread, or the loop thread for inline
 * stores) inside the group's write transaction. `next_seq` is the seq the
 * next log value gets; a job that appends advances it. Returns 0 or an
 * error; FLUME_EMAPFULL makes the writer grow the store and retry the whole
 * group, any other error fails this job alone (the group is retried
 * without it). */
typedef int (*flume__job_run)(flume__job *job, flume__txn *txn,
                              int64_t *next_seq);
/* Runs on the loop thread once the group committed (status 0) or the job
 * failed; it frees the job. */
typedef void (*flume__job_done)(flume__job *job, int status);

struct flume__job {
  flume__job *next;     /* queue link */
  flume_db *db;         /* the database it writes to */
  flume__job_run run;   /* the work, on the writer */
  flume__job_done done; /* the completion, on the loop thread */
  size_t bytes;         /* roughly how much it writes, to bound a group */
  int status;           /* this job's own failure, set by the writer */
};

/* What opening adds to a database once its store and metadata are read
 * and before its handles start (open.c: the remote log); nonzero fails
 * the open, with why. */
typedef int (*flume__db_attach_fn)(flume_db *db, const flume_db_options *opts,
                                   char *why);
/* The local part of flume_db_open(), then `attach` (may be NULL); on
 * FLUME_ECODEC the codec the database has in found[64]. */
int flume__db_open(uv_loop_t *loop, const char *path,
                   const flume_db_options *opts, flume_db **out,
                   char found[64], char *why, flume__db_attach_fn attach);
/* flume_db_open() (open.c), and on FLUME_ECODEC the codec the database
 * has in found[64]; on other failures of a remote log, what went wrong in
 * why (FLUME__ERRMSG_SIZE bytes; may be NULL). */
int flume__open(uv_loop_t *loop, const char *path,
                const flume_db_options *opts, flume_db **out, char found[64],
                char *why);

/* Routes this handle's appends to fn instead of the writer queue (a
 * remote log's outbox). fn takes an append job (flume__append_values says
 * what it holds) and later completes it on the loop thread: with
 * flume__append_resolve() and then job->done(job, 0), or job->done(job,
 * error). Returns 0 or an error (the job is then freed). Runs of single
 * appends hold at most run_max bytes, counting a u32 length per value. */
typedef int (*flume__route_fn)(void *ctx, flume__job *job);
void flume__db_route_appends(flume_db *db, flume__route_fn fn, void *ctx,
                             size_t run_max);
/* 1 when appends are routed (a remote log): their failures leave their
 * detail in flume_db_errmsg(). */
int flume__db_routed(const flume_db *db);
/* The route took this job off its queue: no single append joins it now. */
void flume__db_run_taken(flume_db *db, flume__job *job);
/* An append job's values: n lengths, and their bytes back to back. */
void flume__append_values(flume__job *job, size_t *n, const size_t **lens,
                          const char **data);
/* Gives a routed append job its seqs: the first value's, the others
 * following it. */
void flume__append_resolve(flume__job *job, int64_t first_seq);

/* Opens the remote log that opts name (runtime/remote/): connects, checks
 * the stream, routes appends and starts the tail. Errors go in why. */
int flume__remote_open(flume_db *db, const flume_db_options *opts,
                       char *why);
/* Connects to urls and reads the stream's state (blocking); with create,
 * first makes the stream (replicas, 0: 3) and its genesis (codec) unless
 * there. Errors: FLUME_ENOTFOUND (no such stream), FLUME_ETIMEDOUT,
 * FLUME_EIO, FLUME_EINVAL (a refused stream), FLUME_ENOTSUP; why
 * (FLUME__ERRMSG_SIZE bytes) says more. */
int flume__remote_stat(const char *urls, const char *stream,
                       int64_t timeout_ms, int create, int replicas,
                       const char *codec, flume_remote_info *out,
                       char *why);
/* A folder's remote identity from its meta (any handle): stream, node,
 * uuid, the URLs it was last opened with ("" if none) and the stream seq
 * it stored last. FLUME_ENOTFOUND for a local log. */
int flume__remote_meta(flume_db *db, char stream[64], char node[64],
                       char uuid[65], char urls[512], uint64_t *seq);

/* Refuses to open a folder that caches a remote log as a local writer's
 * (its values must come from the stream only): FLUME_EINVAL, with why. */
int flume__remote_check_local(flume_db *db, char *why);

/* Queues a job for the writer. Fails with FLUME_ECLOSED once closing. */
int flume__db_submit(flume_db *db, flume__job *job);

/* Told of `n` single appends of one run that ended alike: status 0 and
 * the seq of the first (the others follow it), or an error and -1. */
typedef void (*flume__append_run_cb)(void *ctx, int status, int64_t first,
                                     size_t n);
/* Appends one value (copied). Consecutive calls with the same cb and ctx
 * while the writer is busy join one job: cb hears of them in order, in
 * stretches, with no allocation per value. */
int flume__db_append_one(flume_db *db, const void *data, size_t len,
                         flume__append_run_cb cb, void *ctx);

/* A batch encoded in place (the Lua binding's batch appends), which spares
 * the copy flume_db_append makes and, kept from one batch to the next, the
 * allocation of its bytes: the values back to back in `data`, ends[i] the
 * end of value i. */
typedef struct flume__batch {
  flume__buf data; /* the values' bytes */
  size_t *ends;    /* where each ends in data */
  size_t n;        /* values */
  size_t cap_n;    /* room in ends */
} flume__batch;
/* Fills `b` with the buffers of a finished batch (kept grown) or empty
 * ones; it holds no value. */
void flume__db_batch_take(flume_db *db, flume__batch *b);
/* Ends a value at data.len (the bytes written since the last end). Returns
 * 0 or FLUME_ENOMEM. */
int flume__batch_end_value(flume__batch *b);
/* Appends b's values as one atomic batch, as flume_db_append does. On
 * success the database owns b's buffers (b is emptied); on failure they
 * stay the caller's, to give back. */
int flume__db_batch_submit(flume_db *db, flume__batch *b, flume_append_cb cb,
                           void *ctx);
/* Gives b's buffers back to the database (kept for the next take, or
 * freed); b is emptied. */
void flume__db_batch_give(flume_db *db, flume__batch *b);

/* Called with each log entry of a read, inside a read transaction: the
 * bytes are valid only during the call. Returns 0 to go on, anything else
 * to stop the read and have it return that. */
typedef int (*flume__visit_fn)(void *ctx, int64_t seq, const void *data,
                               size_t len);

/*
 * Reads log entries from `from` towards `to` (inclusive; backwards when
 * from > to), at most `max` of them, in one short read transaction, calling
 * `fn` for each. Returns 0 (the range, or `max` entries, or the end of the
 * log was reached: *count says how many), the visitor's nonzero result, or
 * an error.
 */
int flume__db_read(flume_db *db, int64_t from, int64_t to, size_t max,
                   flume__visit_fn fn, void *ctx, size_t *count);
/* flume__db_read for another thread than the loop's (the views'
 * read-ahead): forwards from `from` to `to`, which the caller saw
 * acknowledged (since), touching nothing of db but its store. Only where
 * flume__db_can_read_ahead says so: a writer's LMDB store (its read
 * transactions are any thread's), not a remote log. */
int flume__db_can_read_ahead(const flume_db *db);
/* uv_thread_create(t, fn, arg) for a thread of flume's own (the writer,
 * the read-ahead): made with every signal blocked, it takes none. */
int flume__thread_start(uv_thread_t *t, void (*fn)(void *), void *arg);
int flume__db_read_ahead(flume_db *db, int64_t from, int64_t to, size_t max,
                         flume__visit_fn fn, void *ctx, size_t *count);
/* 1 once flume__db_read refuses (the close is closing the handles). */
int flume__db_reads_closed(const flume_db *db);
/* One acknowledged value, without a read-only handle's refresh (no since
 * notification runs inside the call): from inside a view's script. */
int flume__db_read_one(flume_db *db, int64_t seq, flume__visit_fn fn,
                       void *ctx);

/*
 * A part of a database that a subsystem attaches (the views, with the
 * first view), and how it closes. db.c names no subsystem: it calls these
 * in the order parts were attached.
 *  - before: flume_db_close() was called; the part stops taking work and
 *    hands the writer what it must still store (it may submit jobs).
 *  - close: the writer queue has drained; the part closes its handles and
 *    calls done(ctx) once they are closed.
 *  - free: every part and the database's own handles are closed: frees the
 *    part. Waiters still pending are told FLUME_ECLOSED here at the latest.
 */
typedef struct flume__part_ops {
  void (*before)(void *part);
  void (*close)(void *part, void (*done)(void *ctx), void *ctx);
  void (*free)(void *part);
  /* Optional, called once the close has written every append (and again
   * after each flume__db_close_kick): nonzero while the part still has
   * work to finish before it stops (views catching up with the log); it
   * then calls flume__db_close_kick when it has moved on. */
  int (*drain)(void *part);
} flume__part_ops;

/* Asks a closing database to look at its parts' drain again. */
void flume__db_close_kick(flume_db *db);
/* 1 once flume_db_close() was called. */
int flume__db_closing(const flume_db *db);

/* Attaches `part`, found again by its ops. Errors: FLUME_ENOMEM,
 * FLUME_ECLOSED (the database is closing), FLUME_EEXIST. */
int flume__db_attach(flume_db *db, const flume__part_ops *ops, void *part);
/* Detaches the part attached with these ops (one whose setup failed). */
void flume__db_detach(flume_db *db, const flume__part_ops *ops);
/* The part attached with these ops, or NULL. */
void *flume__db_part(flume_db *db, const flume__part_ops *ops);

/* A read-only handle: brings its since up to what the writer has committed
 * (watches hear of it). Nothing for a writer's handle. */
void flume__db_refresh(flume_db *db);
/* 1 when the database was opened read-only (flume_db_options.readonly). */
int flume__db_readonly(const flume_db *db);
/* A writer's session: a random id of this opening, stored in meta
 * "writer" (format.h). 0 for a read-only handle. */
uint64_t flume__db_session(const flume_db *db);
/* Where view scripts' messages go (flume_db_options.on_log; NULL: the
 * default, stderr), and its ctx in *ctx. */
flume_log_cb flume__db_on_log(const flume_db *db, void **ctx);

/* The buffer behind flume_db_errmsg() (FLUME__ERRMSG_SIZE bytes): the
 * message of the database's last failed call. */
#define FLUME__ERRMSG_SIZE 512
char *flume__db_errbuf(flume_db *db);

/* Reads the log entries at seqs[0..n) (any order) in one read
 * transaction, calling fn for each. A seq not in the log is
 * FLUME_ENOTFOUND. */
int flume__db_read_seqs(flume_db *db, const int64_t *seqs, size_t n,
                        flume__visit_fn fn, void *ctx);

/* The store and its operations, for the view host. */
const flume__store_ops *flume__db_ops(flume_db *db);
flume__store *flume__db_store(flume_db *db);
uv_loop_t *flume__db_loop(flume_db *db);

/* Test-only fault injection: the next `count` group commits fail with
 * `err` as if the store had returned it. Defined in the tests' build only;
 * no header depends on the hooks' macro, so the files without hooks are
 * compiled once for both builds (CMakeLists.txt). */
FLUME_API void flume__test_fail_commits(flume_db *db, int err, int count);
/* Test-only: a remote log's tail drops its nth next delivery (a lost
 * message: the one after it is past a gap). Returns how many times the
 * tail has subscribed again so far, or -1 when db is not remote. */
FLUME_API int flume__test_remote_withhold(flume_db *db, int nth);
/* Test-only: how many of the indexer's reads took values read ahead
 * (views/ahead.c), in this process so far. */
FLUME_API long flume__test_ahead_taken(void);

#endif
