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
  int readonly;    /* 1: read an existing database, beside its writer */
} flume__store_opts;

/*
 * Read-only stores (opts.readonly). A flag of the one open path, with the
 * same checks of the file, so a read-only handle refuses the same damaged or
 * foreign folders the same way and reads the same sealed entries.
 *  - open: the database must exist (FLUME_ENOTFOUND when the folder holds
 *    none); nothing is created, not even the folder. The folder's write lock
 *    is not taken: any number of read-only stores, in any processes, may be
 *    open beside one writer (or none).
 *  - Read transactions see the last commit of whichever process writes,
 *    as of their begin; a map grown by that writer is adopted at the next
 *    begin. Keep them short (as the threading contract says): a reader pins
 *    the pages of its snapshot, and the writer's file grows meanwhile.
 *    They are cheap to begin (LMDB renews a reset one), so a reader
 *    begins one per read; stat's txn_id says whether anything changed.
 *  - A write transaction, grow, and any change are -EROFS ("read-only file
 *    system": the store, not the disk, is read-only).
 *  - The memory backend has nothing to share: readonly is FLUME_EINVAL.
 * LMDB's caveat: one process must not open the same folder twice (a writer
 * and a read-only store, or two read-only ones) at the same time: closing
 * one drops the other's locks on the reader table.
 */

enum flume__txn_flags {
  FLUME__TXN_WRITE = 0, /* read-write transaction */
  FLUME__TXN_READ = 1,  /* read-only snapshot */
  FLUME__TXN_OWN = 2    /* with READ: of a thread that is not the loop
                           thread's (the views' read-ahead), so it is not
                           the spare LMDB's loop-thread reads renew */
};

/* What a store holds as a whole (stat). Sizes the backend does not have
 * are 0. */
typedef struct flume__store_stat {
  uint64_t page_size;   /* bytes per page */
  uint64_t map_size;    /* bytes the store may use before it must grow */
  uint64_t used;        /* bytes in use, up to the last page written */
  uint64_t txn_id;      /* the last committed write transaction's id: it
                           changes whenever any process commits */
  unsigned readers;     /* LMDB: reader slots used so far, by every
                           process (its high-water mark); memory: read
                           transactions open */
  unsigned max_readers; /* reader slots there are */
} flume__store_stat;

/* One table's size (table_stat). */
typedef struct flume__table_stat {
  uint64_t entries; /* number of entries */
  uint64_t bytes;   /* storage it takes: pages for LMDB, keys and values
                       for memory */
} flume__table_stat;

/* Called by table_list with each named table's name (a NUL-ended string,
 * valid during the call). Returns 0 to go on, anything else to stop the
 * listing, which then returns it. */
typedef int (*flume__table_fn)(void *ctx, const char *name);

/* Called by copy on the calling thread, about every tenth of a second
 * while the copy runs, with the bytes written so far. */
typedef void (*flume__copy_fn)(void *ctx, uint64_t bytes);

/* One finding of verify. */
typedef enum {
  FLUME__VERIFY_TABLE,   /* a table starts: `what` is its name ("log" for
                            the log, "(free pages)" for the backend's own
                            list) */
  FLUME__VERIFY_DAMAGED, /* an entry is damaged: `what` says which and how */
  FLUME__VERIFY_DONE     /* the walk ended: `count` entries were read */
} flume__verify_kind;

/* Called by verify with each finding; `what` is valid during the call. */
typedef void (*flume__verify_fn)(void *ctx, flume__verify_kind kind,
                                 const char *what, uint64_t count);

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

  /* path: the database folder (created if missing, unless readonly) or
   * NULL for memory. Errors: FLUME_ELOCKED (another process has the folder
   * open for writing), FLUME_ENOTFOUND (readonly, and no database in the
   * folder), FLUME_EINVAL (readonly memory store), FLUME_ECORRUPT,
   * FLUME_EFORMAT, -errno. */
  int (*open)(const char *path, const flume__store_opts *opts,
              flume__store **out);
  /* No transaction may be open. Cannot fail. */
  void (*close)(flume__store *s);

  /* Errors: -EROFS (a write transaction on a read-only store), FLUME_EBUSY
   * (no reader slot left), FLUME_ENOMEM. */
  int (*txn_begin)(flume__store *s, int flags, flume__txn **out);
  /* Commits and frees the transaction, even on failure (then nothing of it
   * is applied). Errors: FLUME_EMAPFULL, FLUME_ENOSPC, FLUME_EIO. */
  int (*txn_commit)(flume__txn *t);
  /* Discards and frees. Cannot fail. */
  void (*txn_abort)(flume__txn *t);

  /* Grows the store's space after FLUME_EMAPFULL; called with no
   * transaction of this process open on any thread that uses the store
   * other than readers, which it waits out. Errors: FLUME_ENOSPC, -EROFS,
   * -errno. */
  int (*grow)(flume__store *s);

  /* The store as a whole, now (no transaction needed). */
  int (*stat)(flume__store *s, flume__store_stat *out);
  /* The id of the commit a transaction sees (a read transaction's
   * snapshot). It may be older than stat's txn_id for a moment: LMDB
   * writes a commit's meta page before it publishes the commit to new
   * readers, so "have I seen everything" must compare this id, not
   * stat's. The memory backend: 0. */
  uint64_t (*txn_snapshot)(flume__txn *t);
  /* 1 while a process has the store open for writing (a writer store: this
   * one), 0 when none has, or -errno. For a read-only store, whether the
   * views it reads have a writer to bring them up (LMDB: a lock a reader
   * can test without taking it). */
  int (*writer_alive)(flume__store *s);
  /* Copies the store as of one read transaction (a consistent snapshot,
   * however long the copy takes and whoever writes meanwhile) into dest, an
   * existing folder holding no database, as a database the same backend
   * opens; with compact, free pages are left out. Runs the copy on a thread
   * of its own and calls progress (if not NULL) on the calling thread as it
   * goes; returns when the copy is on disk. Read-only stores copy too. Keeps
   * grow() of this process waiting until it ends. Errors: FLUME_EINVAL
   * (memory store: there is no file), -EEXIST (dest holds a database),
   * FLUME_ENOSPC, -errno. */
  int (*copy)(flume__store *s, const char *dest, int compact,
              flume__copy_fn progress, void *ctx);
  /* Reads every entry of every table (the log first), checking each
   * checksum and that the log's seqs run 0, 1, 2 ... with no gap, and the
   * backend's own bookkeeping (LMDB's free pages), calling fn with what it
   * finds; damage does not stop the walk. Returns 0 when the walk finished
   * (then fn had FLUME__VERIFY_DONE), or the error that stopped it. A
   * damaged branch page can crash LMDB inside the walk: run it in a child
   * process (the command does: flume verify). Other threads' table_open
   * waits until it ends. */
  int (*verify)(flume__store *s, flume__verify_fn fn, void *ctx);

  /* Opens the named table; with create set, makes it if missing (needs a
   * write transaction). Errors: FLUME_ENOTFOUND (missing, create not set),
   * FLUME_ELIMIT (too many tables). */
  int (*table_open)(flume__txn *t, const char *name, int create,
                    flume__table *out);
  /* Empties the table (its handle stays valid). */
  int (*table_clear)(flume__txn *t, flume__table tbl);
  /* Number of entries. */
  int (*table_count)(flume__txn *t, flume__table tbl, uint64_t *out);
  /* Entries and storage of a table (the log too). */
  int (*table_stat)(flume__txn *t, flume__table tbl, flume__table_stat *out);
  /* Calls fn with the name of every named table in the transaction's view
   * of the store (not the log), in byte order of the names. */
  int (*table_list)(flume__txn *t, flume__table_fn fn, void *ctx);

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
