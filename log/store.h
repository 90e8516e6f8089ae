/*
 * The storage interface: what a log backend gives the runtime.
 *
 * A store holds the log (table FLUME__TABLE_LOG: seq -> value bytes, seqs
 * dense from 0) and any number of named key/value tables (the metadata and
 * every view's state), all changed together in one write transaction so a
 * view checkpoint and its since commit atomically.
 *
 * This is storage only: no Lua, no loop. Threading contract:
 *  - At most one write transaction exists at a time, and the runtime only
 *    ever opens one from one thread at a time (its writer).
 *  - Read transactions are opened and closed within one synchronous call on
 *    the loop thread; they are never nested on one thread and never held
 *    across loop turns.
 *  - If `inline_writes` is set, the runtime runs write transactions on the
 *    loop thread (no locking needed by the backend); otherwise on a worker
 *    thread, concurrently with read transactions on the loop thread.
 *
 * Slices returned by get and cursors point into the store and are valid
 * only until the next change through that transaction or its end. The
 * LMDB backend checks a checksum of every entry it returns (get, cursor):
 * a damaged entry is FLUME_ECORRUPT, never its bytes.
 * All functions return 0 or a negative FLUME_E* code (see flume.h).
 */
#ifndef FLUME_LOG_STORE_H
#define FLUME_LOG_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct flume__slice {
  const void *data; /* first byte (may be NULL when size is 0) */
  size_t size;      /* length in bytes */
} flume__slice;

typedef struct flume__store flume__store;
typedef struct flume__txn flume__txn;
typedef struct flume__cursor flume__cursor;

/* A table handle, valid from the commit of the transaction that opened it
 * (or at once, within that transaction) until the store closes. */
typedef uint32_t flume__table;

/* The log: keys are seqs as native-endian uint64_t (8 bytes), in numeric
 * order. Only log_append adds to it; nothing ever removes from it. */
#define FLUME__TABLE_LOG ((flume__table)0)

typedef struct flume__store_opts {
  int sync;        /* 1: a commit returns only once it is on disk (fsync) */
  size_t map_size; /* initial map size in bytes; 0 for the backend default */
} flume__store_opts;

enum flume__txn_flags {
  FLUME__TXN_WRITE = 0, /* read-write transaction */
  FLUME__TXN_READ = 1   /* read-only snapshot */
};

enum flume__cursor_op {
  FLUME__FIRST,     /* smallest key */
  FLUME__LAST,      /* largest key */
  FLUME__NEXT,      /* next key after the cursor's position */
  FLUME__PREV,      /* previous key */
  FLUME__SET_RANGE, /* smallest key >= *key */
  FLUME__SET        /* exactly *key */
};

typedef struct flume__store_ops {
  const char *name;  /* "lmdb", "memory" */
  int inline_writes; /* 1: write transactions must run on the loop thread */

  /* path: the database folder (created if missing) or NULL for memory.
   * Errors: FLUME_ELOCKED (another process has the folder open for
   * writing), FLUME_ECORRUPT, -errno. */
  int (*open)(const char *path, const flume__store_opts *opts,
              flume__store **out);
  /* No transaction may be open. Cannot fail. */
  void (*close)(flume__store *s);

  int (*txn_begin)(flume__store *s, int flags, flume__txn **out);
  /* Commits and frees the transaction, even on failure (then nothing of it
   * is applied). Errors: FLUME_EMAPFULL, FLUME_ENOSPC, FLUME_EIO. */
  int (*txn_commit)(flume__txn *t);
  /* Discards and frees. Cannot fail. */
  void (*txn_abort)(flume__txn *t);

  /* Grows the store's space after FLUME_EMAPFULL; called with no
   * transaction of this process open on any thread that uses the store
   * other than readers, which it waits out. Errors: FLUME_ENOSPC, -errno. */
  int (*grow)(flume__store *s);

  /* Opens the named table; with create set, makes it if missing (needs a
   * write transaction). Errors: FLUME_ENOTFOUND (missing, create not set),
   * FLUME_ELIMIT (too many tables). */
  int (*table_open)(flume__txn *t, const char *name, int create,
                    flume__table *out);
  /* Empties the table (its handle stays valid). */
  int (*table_clear)(flume__txn *t, flume__table tbl);
  /* Number of entries. */
  int (*table_count)(flume__txn *t, flume__table tbl, uint64_t *out);

  /* Errors: FLUME_ENOTFOUND. */
  int (*get)(flume__txn *t, flume__table tbl, flume__slice key,
             flume__slice *val);
  /* Inserts or replaces. Errors: FLUME_EMAPFULL, FLUME_EINVAL (empty key
   * or key longer than the backend's limit, at least 511 bytes). */
  int (*put)(flume__txn *t, flume__table tbl, flume__slice key,
             flume__slice val);
  /* Errors: FLUME_ENOTFOUND. */
  int (*del)(flume__txn *t, flume__table tbl, flume__slice key);

  /* Appends value at seq, which must be the log's last seq + 1 (0 when
   * empty): anything else is FLUME_EINVAL. Errors: FLUME_EMAPFULL. */
  int (*log_append)(flume__txn *t, int64_t seq, flume__slice val);
  /* The last seq in the log, or -1 when it is empty. */
  int (*log_last)(flume__txn *t, int64_t *seq);

  /* Cursors live inside one transaction and are closed before it ends. */
  int (*cursor_open)(flume__txn *t, flume__table tbl, flume__cursor **out);
  void (*cursor_close)(flume__cursor *c);
  /* Moves the cursor and returns the key and value there. For SET and
   * SET_RANGE, *key is read first. Errors: FLUME_ENOTFOUND (no such entry;
   * the cursor's position is then unspecified). */
  int (*cursor_get)(flume__cursor *c, int op, flume__slice *key,
                    flume__slice *val);
} flume__store_ops;

/* The detail of this thread's last FLUME_ECORRUPT or FLUME_EFORMAT from a
 * store (what is damaged, and where: "seq 5 in /db/data.mdb is damaged
 * (checksum mismatch)"): copies it into buf (n bytes), forgets it and
 * returns 1; returns 0 when there is none. */
int flume__store_detail(char *buf, size_t n);

extern const flume__store_ops flume__store_lmdb;
extern const flume__store_ops flume__store_memory;

#endif
