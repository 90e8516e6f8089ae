/**
 * @file flume.h
 * @brief flume: an embeddable append-only log with materialized views.
 *
 * @mainpage flume
 *
 * flume keeps one canonical store, an append-only **log** of values (opaque
 * bytes to this API; the Lua module encodes them with a codec), and derives
 * everything else from it. This header is the whole embedding API and its
 * manual.
 *
 * @section start Getting started
 *
 * The call order of a typical embedding:
 *
 *   1. flume_db_options_init(), then set what you need;
 *   2. flume_db_open() with your `uv_loop_t`;
 *   3. flume_db_append() as often as you like; each callback fires once the
 *      values are durable (committed, and fsynced unless `sync` is 0);
 *   4. read with flume_db_get() and flume_iter_open() / flume_iter_next();
 *      follow the log with flume_db_on_since();
 *   5. flume_db_close(), run the loop until its callback has fired, then
 *      `uv_loop_close()` returns 0.
 *
 * @section errors Errors
 *
 * Every function that can fail returns 0 or a negative error code. flume's
 * own codes are listed in #FLUME_ERRNO_MAP and lie between -33000 and
 * -33099; system errors pass through as `-errno` (the same values libuv
 * uses). flume_strerror() and flume_err_name() describe any of them.
 *
 * @section callbacks Callbacks
 *
 * If a call that takes a callback fails, the callback is never called;
 * otherwise it is called exactly once, on the loop thread, from inside
 * `uv_run()` (never from inside the call that registered it).
 *
 * @section memory Memory
 *
 * Buffers passed to flume are copied before the call returns. Buffers flume
 * hands to you are borrowed: valid only until the callback returns, or
 * until the next call on the same iterator, as each function says.
 *
 * @section threads Threads
 *
 * A database handle belongs to the thread that runs its loop; call it only
 * from there. A database opened for writing has a writer thread of its own
 * that does its disk writes, so the loop thread never waits on a flush;
 * once its views fall more than a slice behind the log, a second thread
 * reads the log ahead of them (the page walks and checksums) while the
 * loop thread runs the scripts. Every callback still runs on the loop
 * thread. (A remote log also uses the libuv threadpool, and reads no log
 * ahead.)
 *
 * @section caveats Caveats
 *
 *  - One process may open a database folder for writing at a time; a second
 *    gets #FLUME_ELOCKED. Opening the same folder twice in one process is
 *    refused the same way.
 *  - The log never shrinks: values cannot be deleted or changed.
 *  - The database lives in an LMDB environment (`data.mdb`, `lock.mdb`,
 *    `flume.lock` in its folder); do not put it on a network filesystem.
 *  - A database remembers the codec name it was created with; opening it
 *    with another name fails with #FLUME_ECODEC.
 */
#ifndef FLUME_H
#define FLUME_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FLUME_BUILDING) && defined(__GNUC__)
#define FLUME_API __attribute__((visibility("default")))
#else
#define FLUME_API
#endif

#define FLUME_VERSION_MAJOR 0
#define FLUME_VERSION_MINOR 2
#define FLUME_VERSION_PATCH 0

/**
 * flume's error codes: X(name, value, message). The one list that generates
 * the enum, flume_strerror() and flume_err_name().
 */
#define FLUME_ERRNO_MAP(X)                                                     \
  X(EINVAL, -33000, "invalid argument")                                        \
  X(ENOTFOUND, -33001, "no such entry")                                        \
  X(ECLOSED, -33002, "database is closed")                                     \
  X(ECANCELED, -33003, "operation canceled")                                   \
  X(ELOCKED, -33004, "database is open for writing by another process")        \
  X(ECODEC, -33005, "database was written with another codec")                 \
  X(ECORRUPT, -33006, "database file is corrupted or not a flume database")    \
  X(EFORMAT, -33007, "database has an unsupported format version")            \
  X(EMAPFULL, -33008, "storage map is full")                                   \
  X(ENOSPC, -33009, "storage is full (no space left on device)")              \
  X(EIO, -33010, "input/output error")                                         \
  X(ENOMEM, -33011, "out of memory")                                           \
  X(ETIMEDOUT, -33012, "timed out")                                            \
  X(EENCODE, -33013, "value cannot be encoded")                                \
  X(EDECODE, -33014, "value cannot be decoded")                                \
  X(EVIEW, -33015, "view failed")                                              \
  X(ELIMIT, -33016, "too many tables")                                         \
  X(EEXIST, -33017, "name is already in use")                                  \
  X(ESCRIPT, -33018, "bad view script")                                        \
  X(EBUSY, -33019, "busy")                                                     \
  X(EREADONLY, -33020, "database is open read-only")                          \
  X(ENOWRITER, -33021, "no writer is bringing the view up to the log")     \
  X(ENOTSUP, -33022, "not supported by this build")

/** Error codes: `FLUME_EINVAL` and so on. */
typedef enum {
#define FLUME__ERR_ENUM(name, value, msg) FLUME_##name = value,
  FLUME_ERRNO_MAP(FLUME__ERR_ENUM)
#undef FLUME__ERR_ENUM
  FLUME_ERRNO_MAX = -33100
} flume_errno_t;

/**
 * A short message for an error code: one of flume's, or a system `-errno`.
 * @return a static string; never NULL.
 */
FLUME_API const char *flume_strerror(int err);

/**
 * The name of an error code, such as `"ENOTFOUND"`.
 * @return a static string; `"UNKNOWN"` for a code it does not know.
 */
FLUME_API const char *flume_err_name(int err);

/** The library's version as a string, "MAJOR.MINOR.PATCH". */
FLUME_API const char *flume_version(void);

/** An opaque database handle. */
typedef struct flume_db flume_db;

/** An opaque view handle, owned by its database. */
typedef struct flume_view flume_view;

/** A byte range passed to flume (copied before the call returns). */
typedef struct flume_buf {
  const void *base; /**< first byte */
  size_t len;       /**< length in bytes */
} flume_buf;

/**
 * Receives what a view script prints (`print(...)` or `log(fmt, ...)` in
 * the view sandbox), for debugging views. Called on the loop thread, from
 * inside `uv_run()`, never from inside a view's call nor from inside the
 * flume call that ran the view: messages are queued while views run and
 * handed over on a later turn of the loop (at the latest while the
 * database closes, before flume_db_close()'s callback).
 *
 * Rate-limited per view: at most #FLUME_LOG_RATE messages in each second
 * of a view's printing; the rest are counted and reported as one message
 * `(N messages dropped)` (seq -1) once that second is over, or when the
 * database closes. A message longer than #FLUME_LOG_MAX bytes is cut at a
 * character boundary and ends in ` ... (cut: N bytes in all)`.
 *
 * Logging never changes what a view computes: a message is formatted
 * whether or not the rate limit then drops it. A read-only handle runs no
 * map or reduce, so only its view methods and scripts' top levels log.
 *
 * @param ctx `on_log_ctx`.
 * @param view the view's name; NULL for the database's mapper.
 * @param seq the seq being processed when it printed; -1 when none (a
 * script's top level, a method, a drop report).
 * @param msg the message, NUL-terminated (it may contain NULs too).
 * @param len its length in bytes.
 * `view` and `msg` are valid only until the callback returns.
 */
typedef void (*flume_log_cb)(void *ctx, const char *view, int64_t seq,
                             const char *msg, size_t len);

/** Most messages a view may log in one second (see #flume_log_cb). */
#define FLUME_LOG_RATE 100
/** Longest message a view may log, in bytes, before it is cut. */
#define FLUME_LOG_MAX 1024

/** Options for flume_db_open(). Initialise with flume_db_options_init(). */
typedef struct flume_db_options {
  /** The codec name recorded in the database. NULL accepts whatever the
   * database has (a new database is then marked "raw"). Otherwise a new
   * database records it and an existing one must match (#FLUME_ECODEC). At
   * most 63 bytes. */
  const char *codec;
  /** 1 (default): an append is acknowledged only once fsynced. 0: once
   * committed; a system crash may lose the latest appends, never corrupt. */
  int sync;
  /** Initial storage map size in bytes; 0 for the default. The map grows on
   * demand either way. */
  size_t map_size;
  /** 1: open an existing database to read it, beside its writer in another
   * process or with none: no lock is taken and nothing is written. Reads
   * see what the writer has committed; flume_db_since() follows its
   * commits (checked at every read and every few milliseconds while a
   * watch waits), so live reads follow the writer. Views the writer
   * attached are mounted with flume_view_use() (the script may be NULL:
   * the one the database stores) and read what the writer checkpoints;
   * a gated read waits for the writer's checkpoint, and fails with
   * #FLUME_ENOWRITER when no running writer has the view attached.
   * Appends, C views, rebuild and drop fail with #FLUME_EREADONLY. A
   * missing database is #FLUME_ENOTFOUND; a memory database cannot be
   * read-only (#FLUME_EINVAL). */
  int readonly;
  /** A remote log: NATS server URLs, comma-separated
   * ("nats://127.0.0.1:4222,nats://10.0.0.2:4222"), or NULL (default) for
   * a local one. The log then lives on a replicated NATS JetStream stream
   * shared by every node that opens it, and this folder caches it: values
   * are stored here only from the stream, in stream order, so every node
   * has the same value at the same seq and the same views. An append's
   * callback fires once its values are in the stream **and** stored here
   * (read-your-writes on this node). What the stream's acknowledgement
   * means: a quorum of the stream's servers holds the values, with
   * nats-server 2.9 in memory, not yet fsynced (the server syncs its
   * files about every 2 minutes), whatever `sync` says; `sync` governs
   * this folder's cache only. Needs a build with libnats
   * (#FLUME_ENOTSUP otherwise), a folder (not memory) and not
   * `readonly` (#FLUME_EINVAL). */
  const char *remote_urls;
  /** The stream's name (1 to 63 of `A-Z a-z 0-9 _ -`); created, with
   * `remote_replicas` copies, if missing. Never delete a stream and create
   * another of the same name: a name is one history. */
  const char *remote_stream;
  /** This node's id (1 to 63 of `A-Z a-z 0-9 _ -`), stored in the folder;
   * NULL takes the stored one, or a random one. Another id than the
   * stored one renames the folder's node: how a copy of a node's folder
   * (a backup) starts a new node. Two processes with the same node id
   * (a copy opened under the old id) are refused at their first
   * conflicting append (#FLUME_ELOCKED). */
  const char *remote_node;
  /** How long an append may wait for the stream (and open for the
   * servers), in milliseconds; 0 for the default, 30000. An append that
   * gets no quorum in time fails with #FLUME_ETIMEDOUT; what the stream
   * holds stays. */
  int64_t remote_timeout_ms;
  /** Copies of a stream this open creates; 0 for the default, 3. */
  int remote_replicas;
  /** Where view scripts' messages go (#flume_log_cb). NULL (default):
   * each is one line on stderr, `flume: view NAME at seq N: message`
   * (`flume: view NAME: message` without a seq, `flume: mapper ...` for
   * the mapper). */
  flume_log_cb on_log;
  /** Passed to on_log. */
  void *on_log_ctx;
  /** NULL (default), or a buffer of `open_error_size` bytes where
   * flume_db_open() says why it failed, as Lua's error does: the code's
   * name and message, then the detail (`ETIMEDOUT: timed out: cannot
   * reach the NATS servers nats://...`; which refusal of a stream; which
   * codec the database has; what is damaged, and where), NUL-terminated
   * and cut to fit. Set to "" when the open succeeds. A failed open has
   * no handle for flume_db_errmsg(): this is where its detail goes. */
  char *open_error;
  /** The size of open_error in bytes (512 holds any message). */
  size_t open_error_size;
} flume_db_options;

/** Fills `opts` with the defaults. */
FLUME_API void flume_db_options_init(flume_db_options *opts);

/**
 * Opens (creating if missing) the database in folder `path`, or an
 * in-memory database when `path` is NULL.
 *
 * Runs synchronously: it maps the files and reads the log's since. Creating
 * a new database writes its metadata once.
 *
 * @param loop the loop that will run this database's callbacks.
 * @param path a folder (created if missing, with its parents not), or NULL.
 * @param opts NULL for the defaults.
 * @param[out] out the new handle, on success.
 * @return 0, or #FLUME_EINVAL (an empty path; an empty codec name or one of
 * 64 bytes or more; a map_size past half the address space, what a negative
 * number cast to size_t gives), #FLUME_ELOCKED (another process, or this one,
 * has the folder open for writing), #FLUME_ECODEC, #FLUME_ECORRUPT,
 * #FLUME_EFORMAT, #FLUME_ENOMEM, or a system `-errno` (such as `-EACCES`).
 * With `remote_urls`: #FLUME_ENOTSUP (a build without libnats),
 * #FLUME_ETIMEDOUT (no server answered within `remote_timeout_ms`),
 * #FLUME_EIO, and #FLUME_EINVAL (a bad stream or node name; a stream that
 * allows deletes, purges or has limits; a folder that caches another
 * stream, or a local log). A folder that caches a remote log opened
 * without `remote_urls` for writing is #FLUME_EINVAL. With
 * `open_error` set, a failure also says why there.
 */
FLUME_API int flume_db_open(uv_loop_t *loop, const char *path,
                            const flume_db_options *opts, flume_db **out);

/** The codec name recorded in the database. Valid until the handle is
 * freed. */
FLUME_API const char *flume_db_codec(const flume_db *db);

/** 1 for an in-memory database, 0 for one on disk. */
FLUME_API int flume_db_is_memory(const flume_db *db);

/**
 * The log's since: the seq of the last durable value, or -1 when the log is
 * empty. It advances just before the append callbacks of a commit fire.
 */
FLUME_API int64_t flume_db_since(const flume_db *db);

/**
 * Called once an append is durable, or has failed.
 * @param ctx the pointer given to flume_db_append().
 * @param status 0, or #FLUME_ENOSPC, #FLUME_EIO, #FLUME_ENOMEM, #FLUME_ECLOSED
 * (the database was closed before the append could be written). A remote
 * log adds #FLUME_ETIMEDOUT (no quorum within `remote_timeout_ms`),
 * #FLUME_ELOCKED (another process appends with this node id),
 * #FLUME_EINVAL (a batch larger than the server's largest message) and
 * #FLUME_ECORRUPT (the stream holds a message flume cannot read, or one
 * never arrives); flume_db_errmsg() says more.
 * @param last_seq on success, the seq of the last value of the batch.
 */
typedef void (*flume_append_cb)(void *ctx, int status, int64_t last_seq);

/**
 * Appends `n` values as one batch: all of them, at consecutive seqs, or none.
 *
 * The values are copied before this returns. Appends that arrive while a
 * commit is in flight are written together in the next commit (group
 * commit); each keeps its own callback.
 *
 * @param n at least 1.
 * @param cb called once the batch is durable or has failed; may be NULL.
 * In a database whose codec is `"msgpack"` (the Lua module's default),
 * each value must be exactly one msgpack value the views can decode (no
 * ext types, no nil or NaN map keys, nesting at most 100 deep; see
 * flume_encode()); otherwise nothing is appended and the call fails with
 * #FLUME_EENCODE. Other codecs' values are opaque bytes.
 *
 * @return 0, or #FLUME_EINVAL (n is 0; vals is NULL; a NULL base with a
 * nonzero len; lengths whose sum overflows size_t), #FLUME_EENCODE (a value
 * that is not msgpack in a msgpack database), #FLUME_ECLOSED,
 * #FLUME_ENOMEM.
 */
FLUME_API int flume_db_append(flume_db *db, const flume_buf *vals, size_t n,
                              flume_append_cb cb, void *ctx);

/**
 * Reads the value at `seq`, synchronously.
 *
 * @param[out] data a copy of the value, to release with flume_free().
 * @param[out] len its length.
 * @return 0, or #FLUME_ENOTFOUND (no value at that seq), #FLUME_ECLOSED,
 * #FLUME_ENOMEM.
 */
FLUME_API int flume_db_get(flume_db *db, int64_t seq, void **data,
                           size_t *len);

/** Releases memory that flume allocated for you. NULL is fine. */
FLUME_API void flume_free(void *p);

/** An iterator over a range of the log. */
typedef struct flume_iter flume_iter;

/** Options for flume_iter_open(). Initialise with flume_iter_options_init().
 */
typedef struct flume_iter_options {
  int64_t gte;   /**< first seq wanted (default 0) */
  int64_t lte;   /**< last seq wanted (default INT64_MAX) */
  int reverse;   /**< 1: from lte down to gte */
  int64_t limit; /**< at most this many values; -1 (default) for no limit */
} flume_iter_options;

/** Fills `opts` with the defaults: the whole log, forwards. */
FLUME_API void flume_iter_options_init(flume_iter_options *opts);

/**
 * Opens an iterator. It reads the log in chunks, each in a short read
 * transaction, so a slow reader does not pin old pages.
 * @return 0, or #FLUME_EINVAL, #FLUME_ECLOSED, #FLUME_ENOMEM.
 */
FLUME_API int flume_iter_open(flume_db *db, const flume_iter_options *opts,
                              flume_iter **out);

/**
 * The next value of the range.
 *
 * Once it has returned #FLUME_ENOTFOUND (the end of what is in the log now),
 * a forward iterator without a limit reached may be called again: it goes on
 * with values appended since, which makes live reading a matter of calling
 * it again when flume_db_on_since() says the log has grown.
 *
 * @param[out] data borrowed; valid until the next call on this iterator or
 * its close.
 * @return 0, or #FLUME_ENOTFOUND (no more values), #FLUME_ECLOSED,
 * #FLUME_ENOMEM.
 */
FLUME_API int flume_iter_next(flume_iter *it, int64_t *seq, const void **data,
                              size_t *len);

/** Closes the iterator. It may outlive its database's close. */
FLUME_API void flume_iter_close(flume_iter *it);

/** A subscription made by flume_db_on_since(). */
typedef struct flume_watch flume_watch;

/**
 * Called whenever the log's since advances, once per commit, with the new
 * since; and a last time with status #FLUME_ECLOSED when the database
 * closes (the watch is then gone: do not stop it).
 */
typedef void (*flume_since_cb)(void *ctx, int status, int64_t since);

/**
 * Observes the log's since.
 * @param[out] out the subscription, for flume_watch_stop().
 * @return 0, or #FLUME_ECLOSED, #FLUME_ENOMEM.
 */
FLUME_API int flume_db_on_since(flume_db *db, flume_since_cb cb, void *ctx,
                                flume_watch **out);

/** Ends a subscription; its callback is not called again. */
FLUME_API void flume_watch_stop(flume_watch *w);

/**
 * @section views Views
 *
 * A view is state derived from the log, kept up to date by the runtime. It
 * is a Lua script (see the README: a table with `version` and `map` and/or
 * `reduce`) run in a sandboxed Lua state the runtime owns, or C code behind
 * a flume_view_vtable. Reads of a view are since-gated: they wait until the
 * view has processed the log as far as it was when the read was called.
 */

/** Called once flume_view_use() has set a view up (or failed to). */
typedef void (*flume_use_cb)(void *ctx, int status, flume_view *view);

/**
 * Adds a view from Lua script text. Its state is kept in the database; a
 * different `version` than the stored one drops the state and rebuilds it
 * from the log. The database also keeps the script (its catalogue), so
 * the view can be mounted again by name: pass a NULL script for the one
 * stored.
 *
 * On a read-only handle the view must be one the database has, at the
 * same version: it reads the writer's checkpoints and never indexes.
 *
 * @param name 1 to 63 bytes; a view of that name and version must not be in
 * use already (a failed view, or another version, is replaced).
 * @param script Lua source, or NULL for the script the database stores.
 * @param cb called once the view's table is open and its checkpoint read.
 * @return 0, or #FLUME_ESCRIPT (the script does not load, has no integer
 * version or no usable functions), #FLUME_EENCODE (its `initial` state
 * cannot be stored), #FLUME_EEXIST, #FLUME_EINVAL (a NULL name, a name not
 * 1 to 63 bytes), #FLUME_ENOTFOUND (NULL script and none stored; or a
 * read-only handle and no such view), #FLUME_ENOWRITER (read-only: the
 * database has another version of it), #FLUME_ECLOSED (flume_db_close()
 * has been called), #FLUME_ENOMEM; after any of them flume_db_errmsg()
 * says what (and where, for a script).
 */
FLUME_API int flume_view_use(flume_db *db, const char *name,
                             const char *script, size_t len, flume_use_cb cb,
                             void *ctx);

/** The message of the last view error on this database ("" if none); valid
 * until the next call on it. */
FLUME_API const char *flume_db_errmsg(flume_db *db);

/** The view called `name`, or NULL. */
FLUME_API flume_view *flume_db_view(flume_db *db, const char *name);

/** The view's since: the last seq its stored state includes; -1 for none.
 */
FLUME_API int64_t flume_view_since(const flume_view *view);

/** NULL, or the error that stopped the view ("view 'x' failed at seq N:
 * ..."); valid while the view is. */
FLUME_API const char *flume_view_error(const flume_view *view);

/**
 * Called with a method's result, msgpack-encoded, or a failure: status
 * #FLUME_EVIEW (the view failed, or the method raised: see
 * flume_db_errmsg()), #FLUME_ENOTFOUND (no such method), #FLUME_ECLOSED
 * (flume_db_close() was called before the method could run).
 * `result` is borrowed: valid only during the callback.
 */
typedef void (*flume_call_cb)(void *ctx, int status, const void *result,
                              size_t len);

/**
 * Calls a view's method with `args`, a msgpack-encoded array. Lua views
 * have `get` (a reduce view's state; a group view's accumulator for key
 * args[1]; an index view's list of seqs for key args[1]) and the methods in
 * their script's `methods` table; C views have what their `call` answers.
 * A Lua view's method sees its committed state only (what the store holds,
 * as far as flume_view_since() says or a checkpoint just ahead of it),
 * never work the indexer has not checkpointed yet.
 *
 * @param wait 1: since-gated (waits until the view has caught up with the
 * log's since as it is now); 0: at once (as soon as the view is set up).
 * @return 0 (cb will be called once, on a later loop turn), or
 * #FLUME_EINVAL (NULL view, method or cb; a method name over 63 bytes),
 * #FLUME_ECLOSED (flume_db_close() has been called), #FLUME_ENOMEM.
 */
FLUME_API int flume_view_call(flume_view *view, const char *method,
                              const void *args, size_t len, int wait,
                              flume_call_cb cb, void *ctx);

/**
 * @section viewreads Reading views
 *
 * The same reads the Lua API has, through the same code: a view's state as
 * stored (its committed since, never work the indexer has not checkpointed),
 * by key, by key range, or whole for a reduce view. Keys, accumulators and
 * states are msgpack: a key is the msgpack of the value the view's `map`
 * returned (a string, number, boolean or array of them), in flume's key
 * order (the README's "Keys"). The reads themselves do not wait: call
 * flume_view_wait() first for since-gated reads, as Lua's reads do. All of
 * them run on the loop thread.
 */

/** What flume_view_status() reports. */
typedef struct flume_view_info {
  const char *kind;      /**< "reduce", "group", "index" or "c" */
  int64_t version;       /**< the script's version */
  int64_t since;         /**< committed since: what reads see (-1: none) */
  int64_t processed;     /**< how far the indexer has got (>= since) */
  int64_t log_since;     /**< the log's since now */
  int ready;             /**< set up: its table is open, its record read */
  int failed;            /**< a script error stopped it */
  const char *error;     /**< the error when failed, else NULL; valid while
                          *   the view is */
  int64_t error_seq;     /**< the seq whose processing failed */
  int script_changed;    /**< same version, a different script built it */
  double rate;           /**< values per second while catching up, else 0 */
  uint64_t hash;         /**< hash of the script */
} flume_view_info;

/** Fills `out` with the view's status and progress (since, processed and
 * rate against log_since). @return 0, or #FLUME_EINVAL (NULL argument). */
FLUME_API int flume_view_status(const flume_view *view,
                                flume_view_info *out);

/** Called once a flume_view_wait() is over: status 0 (reads now see the
 * log as far as it was at the call), #FLUME_ETIMEDOUT, #FLUME_EVIEW (the
 * view failed: flume_view_error()), #FLUME_ECLOSED (the database closed).
 */
typedef void (*flume_wait_cb)(void *ctx, int status);

/**
 * Waits until the view has caught up with the log's since as it is now
 * (the gate of every Lua read). `cb` is called once, on a later loop turn,
 * even when the view is up to date already.
 * @param timeout seconds; negative for none.
 * On a read-only handle the view is brought up by the writer process:
 * with none running, or one without this view, a view behind the log is
 * #FLUME_ENOWRITER at once (or later, to cb, if the writer goes away), and
 * a view its writer failed is #FLUME_EVIEW; flume_db_errmsg() says why.
 * @param timeout seconds; negative for none.
 * @return 0, or #FLUME_EINVAL (NULL view or cb), #FLUME_EVIEW (the view
 * has failed), #FLUME_ENOWRITER, #FLUME_ECLOSED, #FLUME_ENOMEM.
 */
FLUME_API int flume_view_wait(flume_view *view, double timeout,
                              flume_wait_cb cb, void *ctx);

/**
 * flume_view_wait(), and then until the view has indexed seq `after` too,
 * even one the log has not reached yet: a seq an append returned in
 * another process (the writer beside a read-only handle) or on another
 * node of a remote log (Lua: a read's `after = seq`).
 * @param after a seq, or -1 (then the same as flume_view_wait()).
 * @return as flume_view_wait(); #FLUME_EINVAL also for `after` below -1.
 */
FLUME_API int flume_view_wait_after(flume_view *view, int64_t after,
                                    double timeout, flume_wait_cb cb,
                                    void *ctx);

/** Called once a flume_db_wait_fresh() is over: status 0 and `since`, the
 * log's since once this node held what the stream held at the call; or
 * #FLUME_ETIMEDOUT (no quorum: the stream's leader did not answer, or
 * this node did not store that far, within `remote_timeout_ms`),
 * #FLUME_ENOTFOUND (the stream is gone), #FLUME_ECLOSED (the database
 * closed first), with `since` -1; flume_db_errmsg() says more. */
typedef void (*flume_fresh_cb)(void *ctx, int status, int64_t since);

/**
 * Fresh reads across the nodes of a remote log (Lua: a read's `fresh =
 * true`): asks the stream's leader for the stream's last message, waits
 * until this node has stored the stream that far, and calls `cb` with the
 * log's since at that moment. Then flume_view_wait_after(view, since, ...)
 * gates a read on it: the read sees every value any node's append had
 * returned before this call. The question goes out without blocking the
 * loop; each call asks afresh (a call never takes the answer to a
 * question sent before it). Bounded by `remote_timeout_ms` (the view's
 * wait that follows has its own timeout).
 *
 * On a local log (and a read-only handle) the log holds everything there
 * is: `cb` gets the log's since as it is now, on a later loop turn, so a
 * fresh read is a plain gated read.
 *
 * @param cb called once, on a later loop turn.
 * @return 0, or #FLUME_EINVAL (NULL db or cb), #FLUME_ECLOSED,
 * #FLUME_ENOMEM, #FLUME_ECORRUPT or #FLUME_EIO (this node's tail has
 * stopped: it stores nothing more; flume_db_errmsg() says why).
 */
FLUME_API int flume_db_wait_fresh(flume_db *db, flume_fresh_cb cb,
                                  void *ctx);

/** Most replicas flume_remote_info lists. */
#define FLUME_REMOTE_PEERS_MAX 8

/** A follower replica of a remote log's stream (flume_remote_info). */
typedef struct flume_remote_peer {
  char name[64];     /**< its server's name */
  int current;       /**< 1: caught up with the leader */
  int offline;       /**< 1: the leader cannot reach it */
  uint64_t lag;      /**< operations it is behind the leader */
  int64_t active_ms; /**< since the leader last heard from it, in ms */
} flume_remote_peer;

/** Where a remote log and this node stand (flume_db_remote_status()). */
typedef struct flume_remote_info {
  char stream[64];    /**< the stream's name */
  char node[64];      /**< this node's id ("" when not asked of a node) */
  char leader[64];    /**< the stream leader's server ("" for a server
                       *   without clustering) */
  int replicas;       /**< copies the stream is configured with */
  int deny_delete;    /**< 1: the stream refuses deletes (flume's do) */
  int deny_purge;     /**< 1: the stream refuses purges (flume's do) */
  uint64_t messages;  /**< messages in the stream */
  uint64_t bytes;     /**< its size in bytes */
  uint64_t last_seq;  /**< its last stream seq, as the leader has it */
  uint64_t stored;    /**< the last stream seq this node has stored */
  uint64_t lag;       /**< last_seq - stored (0 when ahead): messages this
                       *   node has yet to store */
  int64_t since;      /**< this node's log since then */
  int npeers;         /**< follower replicas in peers */
  flume_remote_peer peers[FLUME_REMOTE_PEERS_MAX]; /**< the followers */
} flume_remote_info;

/** Called once with a flume_db_remote_status() answer: status 0 and
 * `info` (valid only during the call), or #FLUME_ETIMEDOUT (no answer
 * within `remote_timeout_ms`), #FLUME_ENOTFOUND (no such stream),
 * #FLUME_EIO, #FLUME_ECLOSED (the database closed first), with `info`
 * NULL; flume_db_errmsg() says more. */
typedef void (*flume_remote_status_cb)(void *ctx, int status,
                                       const flume_remote_info *info);

/**
 * Where a remote log stands: the stream (its leader, last seq, size), each
 * follower replica (caught up or how far behind) and this node (the
 * stream seq it has stored, how far behind the leader it is, its log
 * since); what `flume remote status` prints. Asks the stream's leader over
 * this handle's connection, off the loop thread.
 * @param cb called once, on a later loop turn.
 * @return 0, or #FLUME_EINVAL (NULL argument; a database not opened with
 * `remote_urls`), #FLUME_ENOTSUP (a build without libnats),
 * #FLUME_ECLOSED, #FLUME_ENOMEM.
 */
FLUME_API int flume_db_remote_status(flume_db *db, flume_remote_status_cb cb,
                                     void *ctx);

/**
 * Reads what a Lua view's `get` gives: a reduce view's state (key
 * ignored), a group view's accumulator for `key`, an index view's seqs for
 * `key` (a msgpack array, in order). The result is msgpack in `*data`
 * (free it with flume_free()).
 * @return 0, or #FLUME_ENOTFOUND (a group key with no accumulator, a
 * reduce view with no state yet), #FLUME_EINVAL (NULL argument; `key` is
 * not msgpack of one key; a C view), #FLUME_EBUSY (the view is not set up
 * yet), #FLUME_ECORRUPT and the store's errors; flume_db_errmsg() says
 * what.
 */
FLUME_API int flume_view_get(flume_view *view, const void *key,
                             size_t key_len, void **data, size_t *len);

/** A read of a group or index view's entries in key order. */
typedef struct flume_view_iter flume_view_iter;

/** The bounds and order of a view range read. Bounds are msgpack keys;
 * NULL for none. Initialise with flume_view_iter_options_init(). */
typedef struct flume_view_iter_options {
  const void *gt, *gte;    /**< lower bound, exclusive or inclusive */
  size_t gt_len, gte_len;  /**< their lengths */
  const void *lt, *lte;    /**< upper bound, exclusive or inclusive */
  size_t lt_len, lte_len;  /**< their lengths */
  int reverse;             /**< 1: from the upper bound down */
  int64_t limit;           /**< most entries, -1 for no limit */
} flume_view_iter_options;

/** No bounds, forward, no limit. */
FLUME_API void flume_view_iter_options_init(flume_view_iter_options *opts);

/**
 * Opens a range read of a group or index view. It reads in chunks, each in
 * one short read transaction, so a slow reader pins nothing; each chunk
 * sees the view's state as committed then.
 * @return 0, or #FLUME_EINVAL (NULL argument; both gt and gte, or lt and
 * lte; a bound that is not msgpack of one key; a reduce or C view),
 * #FLUME_EBUSY (not set up yet), #FLUME_ENOMEM; flume_db_errmsg() says
 * what.
 */
FLUME_API int flume_view_iter_open(flume_view *view,
                                   const flume_view_iter_options *opts,
                                   flume_view_iter **out);

/**
 * The next entry: its key (msgpack), and for an index view its seq (`*val`
 * NULL), for a group view its accumulator (msgpack; `*seq` -1). Borrowed:
 * valid until the next call on the iterator.
 * @return 0, #FLUME_ENOTFOUND at the end, or #FLUME_ECLOSED (the database
 * closed), #FLUME_ECORRUPT and the store's errors.
 */
FLUME_API int flume_view_iter_next(flume_view_iter *it, const void **key,
                                   size_t *key_len, int64_t *seq,
                                   const void **val, size_t *val_len);

/** Frees the iterator (NULL is fine). Close iterators before their
 * database's close callback has fired, or after: both are safe. */
FLUME_API void flume_view_iter_close(flume_view_iter *it);

/**
 * Drops every view's state and rebuilds it from the log, in slices;
 * gated reads wait for the rebuild.
 * @return 0, or #FLUME_ECLOSED, #FLUME_ENOMEM, #FLUME_EREADONLY.
 */
FLUME_API int flume_db_rebuild(flume_db *db);

/** Called once flume_db_drop() has committed (status 0) or failed. */
typedef void (*flume_status_cb)(void *ctx, int status);

/**
 * Drops the view called `name` from the database: its checkpoint record,
 * stored script and state are removed in one transaction. A view of that
 * name in use on this handle is taken out of use at once (its reads fail
 * with #FLUME_EVIEW). cb gets 0, #FLUME_ENOTFOUND (the database had no such
 * view) or the store's error.
 * @return 0, or #FLUME_EREADONLY, #FLUME_EINVAL (a bad name), #FLUME_EBUSY
 * (a C view in use), #FLUME_ECLOSED, #FLUME_ENOMEM; flume_db_errmsg() says
 * what.
 */
FLUME_API int flume_db_drop(flume_db *db, const char *name,
                            flume_status_cb cb, void *ctx);

/** One view a database has (flume_db_views()); valid during the call. */
typedef struct flume_view_entry {
  const char *name;      /**< its name */
  const char *kind;      /**< "reduce", "group", "index", "c" */
  int64_t version;       /**< version of the script that built its state */
  int64_t since;         /**< the last seq its stored state includes */
  uint64_t hash;         /**< hash of that script */
  const char *script;    /**< the stored script (not NUL-ended), or NULL:
                          * none stored (a C view) */
  size_t script_len;     /**< its length */
  int attached;          /**< a running writer has it attached */
  int mounted;           /**< this handle has it in use */
} flume_view_entry;

/** Called by flume_db_views() for each view; nonzero stops the listing and
 * is returned. */
typedef int (*flume_view_entry_fn)(void *ctx, const flume_view_entry *e);

/**
 * Lists the views the database has (every view with a checkpoint record,
 * and its stored script), by name, as of one read transaction.
 * @return 0, fn's nonzero value, or the store's error.
 */
FLUME_API int flume_db_views(flume_db *db, flume_view_entry_fn fn,
                             void *ctx);

/**
 * With ready 0, views do not index (reads that wait, wait) until it is
 * called again with 1: load a batch of old values first, then let the
 * views catch up once (Lua's `ready = false` and `db:set_ready()`).
 * @return 0, or #FLUME_ECLOSED, #FLUME_ENOMEM.
 */
FLUME_API int flume_db_set_ready(flume_db *db, int ready);

/** Called by flume_db_get_many() for the i-th seq asked for; bytes are
 * borrowed for the call. Nonzero stops the read and is returned. */
typedef int (*flume_value_fn)(void *ctx, size_t i, int64_t seq,
                              const void *data, size_t len);

/**
 * Reads the values at seqs[0..n) (any order, repeats allowed) from one read
 * transaction, calling fn for each in the order given: a consistent batch
 * (an index view's seqs, say).
 * @return 0, or #FLUME_ENOTFOUND (a seq not in the log, or past its
 * since), #FLUME_EINVAL (NULL seqs or fn with n > 0), fn's nonzero result,
 * #FLUME_ECLOSED, #FLUME_ECORRUPT.
 */
FLUME_API int flume_db_get_many(flume_db *db, const int64_t *seqs, size_t n,
                                flume_value_fn fn, void *ctx);

/** One log entry handed to a C view. Bytes borrowed for the call. */
typedef struct flume_entry {
  int64_t seq;      /**< its seq */
  const void *data; /**< its bytes, as appended */
  size_t len;       /**< their length */
} flume_entry;

/** How a C view's `call` hands back its result (copied by flume). */
typedef void (*flume_reply_fn)(void *rctx, const void *result, size_t len);

/**
 * A view written in C. It keeps its own state; flume feeds it the log in
 * order and gates reads on its since. All functions run on the loop thread.
 */
typedef struct flume_view_vtable {
  /** The last seq its state includes (-1 for none); reads gate on it. */
  int64_t (*since)(void *state);
  /** Takes entries with consecutive seqs, starting after since(). Returns
   * 0, or an error code, which stops the view. */
  int (*apply)(void *state, const flume_entry *entries, size_t n);
  /** Drops all its state: since() must return -1 afterwards. */
  int (*destroy)(void *state);
  /** The database is closing; release the state. */
  void (*close)(void *state);
  /** Answers a method (may be NULL): reply() once and return 0, or return
   * #FLUME_ENOTFOUND or another error. */
  int (*call)(void *state, const char *method, const void *args, size_t len,
              flume_reply_fn reply, void *rctx);
} flume_view_vtable;

/**
 * Adds a view written in C. It is ready at once and catches up from its
 * since(). The vtable must outlive the database.
 * @return 0, or #FLUME_EEXIST, #FLUME_EINVAL, #FLUME_ECLOSED, #FLUME_ENOMEM.
 */
FLUME_API int flume_view_use_c(flume_db *db, const char *name,
                               const flume_view_vtable *vt, void *state,
                               flume_view **out);

/** Called once a database is closed; the handle is freed after it returns.
 */
typedef void (*flume_close_cb)(void *ctx);

/**
 * Closes the database, asynchronously.
 *
 * New calls on the handle fail with #FLUME_ECLOSED from now on. Appends
 * already accepted are still written and acknowledged (so nothing accepted
 * is dropped); then the attached views index what the log holds, for up
 * to two seconds (so that a clean exit leaves them caught up, and readers
 * in other processes read them without a writer; what is left is indexed
 * at the next open), and store their checkpoints; then the store closes,
 * watches get their last #FLUME_ECLOSED callback, `cb` fires and the
 * handle is freed.
 *
 * A remote log's accepted appends must first reach the stream and come
 * back: the close lets its outbox publish and its tail store them, for up
 * to two seconds (before the views' two), and those stored get their
 * seqs; only the appends left then fail with #FLUME_ECLOSED (what of them
 * the stream already holds is stored at the next open). Fresh reads
 * (flume_db_wait_fresh()) still waiting fail with #FLUME_ECLOSED.
 *
 * @return 0, or #FLUME_ECLOSED when it is already closing.
 */
FLUME_API int flume_db_close(flume_db *db, flume_close_cb cb, void *ctx);

/**
 * @section admin Looking after a database
 *
 * What a command line or a monitor needs beyond reads: the storage's
 * sizes, every table's size, a hot backup, and a check of every stored
 * byte. They work on read-only handles too, so they run beside a writer in
 * another process (`flume status`, `flume backup` and `flume verify` use
 * them so). They run synchronously, on the loop thread: the loop does not
 * turn meanwhile (a backup or a walk of a big file takes a while: run them
 * from a process or a loop that can wait).
 */

/** What flume_db_storage() reports. Sizes a memory database does not have
 * are 0. */
typedef struct flume_storage_info {
  uint64_t page_size;   /**< bytes per page */
  uint64_t map_size;    /**< bytes the file may reach before the map grows */
  uint64_t used;        /**< bytes in use, up to the last page written */
  unsigned readers;     /**< reader slots used so far by every process
                         *   (a high-water mark) */
  unsigned max_readers; /**< reader slots there are */
} flume_storage_info;

/**
 * The storage as a whole, now.
 * @return 0, or #FLUME_EINVAL (NULL argument), #FLUME_ECLOSED.
 */
FLUME_API int flume_db_storage(flume_db *db, flume_storage_info *out);

/** One table, as flume_db_tables() reports it. */
typedef struct flume_table_info {
  const char *kind;  /**< "log"; "meta" (the format, the codec, the views'
                      *   records); "view" (a view's state); "other" (a
                      *   table this version of flume does not know) */
  const char *name;  /**< "log", "meta", the view's name, or the stored
                      *   name of an "other" table */
  uint64_t entries;  /**< entries in it */
  uint64_t bytes;    /**< storage it takes: whole pages on disk, keys and
                      *   values in memory */
} flume_table_info;

/** Called by flume_db_tables() with each table; the strings are borrowed
 * for the call. Returns 0 to go on, anything else to stop the listing. */
typedef int (*flume_table_fn)(void *ctx, const flume_table_info *table);

/**
 * Calls fn with every table of the database, from one read transaction (a
 * consistent snapshot): the log first, then the others in byte order of
 * their stored names.
 * @return 0, fn's nonzero result, or #FLUME_EINVAL (NULL db or fn),
 * #FLUME_ECLOSED, #FLUME_ECORRUPT (flume_db_errmsg() says where),
 * #FLUME_EBUSY (no reader slot left), #FLUME_ENOMEM.
 */
FLUME_API int flume_db_tables(flume_db *db, flume_table_fn fn, void *ctx);

/** Called by flume_db_backup() about every tenth of a second with the bytes
 * written so far, on the calling thread. */
typedef void (*flume_progress_fn)(void *ctx, uint64_t bytes);

/**
 * Copies the database into the folder `dest`, as it was at one moment (one
 * read transaction), while the writer, in this process or another, goes on
 * writing: a backup that opens as any database. Returns once the copy is
 * on disk (fsynced). Read-only handles copy too. A failed copy leaves no
 * database in dest.
 * @param dest an existing folder that holds no database.
 * @param compact 1: leave free pages out (a smaller file, a slower copy).
 * @param progress NULL, or called as the copy goes.
 * @return 0, or #FLUME_EINVAL (NULL or empty dest; a memory database),
 * #FLUME_ECLOSED, `-EEXIST` (dest holds a database), `-ENOENT` (no folder
 * dest), #FLUME_ENOSPC, or another system `-errno`; flume_db_errmsg() says
 * what.
 */
FLUME_API int flume_db_backup(flume_db *db, const char *dest, int compact,
                              flume_progress_fn progress, void *ctx);

/** Called by flume_verify() as the walk goes: `damage` NULL when the walk
 * enters the table `table` ("log", "meta", "v:NAME" for a view's state,
 * "(free pages)" for the storage's own list), else what is damaged and
 * where. Strings borrowed for the call. */
typedef void (*flume_verify_fn)(void *ctx, const char *table,
                                const char *damage);

/** What flume_verify() found. */
typedef struct flume_verify_result {
  uint64_t entries;  /**< entries read and checked */
  unsigned tables;   /**< tables walked, the storage's own list included */
  unsigned damaged;  /**< damaged places reported to fn */
  int crashed;       /**< 1: a damaged page crashed the walk (one of the
                      *   damaged places): what follows it was not read */
  char error[512];   /**< when the walk could not run or was stopped: what
                      *   and where */
} flume_verify_result;

/**
 * Reads every entry of every table of the database in folder `path` (the
 * log, the metadata, every view's state), checking each entry's checksum,
 * that the log's seqs run 0, 1, 2 ... with no gap, and the storage's own
 * bookkeeping. Damage does not stop the walk: fn hears of each place.
 *
 * The walk runs in a child process (fork), which opens the folder
 * read-only: a damaged page can crash LMDB, and that is a finding here
 * (result->crashed), never the caller's end. So it takes a folder, not a
 * handle: it works beside a writer, in this process or another, and beside
 * any handles of this process. It waits for the child to end.
 * @param fn NULL, or called with each table and each damaged place.
 * @param[out] result what was found, also when the walk was stopped.
 * @return 0 once the walk is over (then damage is in result, not an
 * error), or an error that kept it from running or stopped it, with
 * result->error saying what: #FLUME_EINVAL (NULL or empty path, NULL
 * result), #FLUME_ENOTFOUND (no database in the folder), #FLUME_ECORRUPT,
 * #FLUME_EFORMAT, #FLUME_ENOMEM, or a system `-errno` (pipe, fork).
 */
FLUME_API int flume_verify(const char *path, flume_verify_fn fn, void *ctx,
                           flume_verify_result *result);

/**
 * Runs the loop until `*done` is nonzero (a callback sets it): the loop of
 * a C program that has none of its own, in place of uv_run().
 * @return 0, #FLUME_EINVAL (NULL argument), or #FLUME_ECANCELED when the
 * loop ran out of work first (`*done` can then never be set).
 */
FLUME_API int flume_run_until(uv_loop_t *loop, const volatile int *done);

/**
 * @name Values
 * The msgpack codec as a tree of plain values, so that a C program reads
 * and writes the values a Lua program sees without a msgpack library:
 * flume_encode() turns a tree into the bytes flume_db_append() takes (on a
 * msgpack database), flume_decode() turns a value's bytes (flume_db_get(),
 * flume_iter_next(), flume_view_get()) into a tree.
 * @{
 */

/** What a flume_value holds. */
typedef enum flume_type {
  FLUME_NIL,   /**< nil (msgpack nil) */
  FLUME_BOOL,  /**< as.b: 0 or 1 */
  FLUME_INT,   /**< as.i: a 64-bit integer */
  FLUME_FLOAT, /**< as.f: a double */
  FLUME_STR,   /**< as.str: bytes (a Lua string; not always UTF-8) */
  FLUME_ARRAY, /**< as.array: a list, items[0..n) */
  FLUME_MAP    /**< as.map: keys[i] -> vals[i], i in [0, n) */
} flume_type;

/** A value: a tree, built by the caller for flume_encode() or made by
 * flume_decode(). */
typedef struct flume_value {
  flume_type type; /**< which member of `as` */
  union {
    int b;       /**< FLUME_BOOL */
    int64_t i;   /**< FLUME_INT */
    double f;    /**< FLUME_FLOAT */
    struct {
      const char *ptr; /**< the bytes (NUL-ended after len when decoded) */
      size_t len;      /**< their length */
    } str;             /**< FLUME_STR */
    struct {
      struct flume_value *items; /**< the elements */
      size_t n;                  /**< how many */
    } array;                     /**< FLUME_ARRAY */
    struct {
      struct flume_value *keys; /**< the keys */
      struct flume_value *vals; /**< the values, keys[i] -> vals[i] */
      size_t n;                 /**< how many */
    } map;                      /**< FLUME_MAP */
  } as; /**< the value */
} flume_value;

/** How deep trees may nest (as in the log: 100 tables). */
#define FLUME_VALUE_MAX_DEPTH 100

/**
 * Encodes the tree `v` as msgpack, flume's codec (integers in their
 * smallest form, floats as float64), into `*out` (free it with
 * flume_free()).
 * @return 0, or #FLUME_EINVAL (NULL argument, an unknown type, a NULL
 * pointer with a nonzero length, nesting deeper than
 * #FLUME_VALUE_MAX_DEPTH), #FLUME_ENOMEM.
 */
FLUME_API int flume_encode(const flume_value *v, void **out, size_t *len);

/**
 * Decodes one msgpack value (all of `data`) into a tree made in one
 * allocation: free `*out` with flume_free() and the whole tree goes.
 * Strings and binary become FLUME_STR, NUL-ended; an unsigned integer past
 * INT64_MAX becomes a FLUME_FLOAT (as in Lua).
 * @return 0, or #FLUME_EINVAL (NULL argument), #FLUME_EDECODE (not exactly
 * one msgpack value, an extension type, or nesting deeper than
 * #FLUME_VALUE_MAX_DEPTH), #FLUME_ENOMEM.
 */
FLUME_API int flume_decode(const void *data, size_t len, flume_value **out);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* FLUME_H */
