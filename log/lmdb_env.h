/*
 * The LMDB backend's one open path and its checks, shared with the
 * command's read-only handle (runtime/lua/tools.c), so that both refuse the
 * same damaged or foreign files the same way and read the same sealed
 * entries. Only files that include <lmdb.h> include this.
 *
 * Every function returns 0 or a negative FLUME_E* code; on FLUME_ECORRUPT
 * and FLUME_EFORMAT, flume__store_detail() says what and where.
 */
#ifndef FLUME_LOG_LMDB_ENV_H
#define FLUME_LOG_LMDB_ENV_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

/* LMDB's result code as a FLUME_E* code. */
int flume__lmdb_map_err(int rc);

/*
 * Opens the environment in the folder `path` after checking its data.mdb
 * (size against the last page its meta pages name, the meta pages
 * themselves), then checks that it is flume's (its log and metadata tables,
 * sealed entries) and clears stale readers. `readonly`: MDB_RDONLY, and a
 * folder without data.mdb is FLUME_ENOTFOUND instead of a new database.
 * Otherwise a new database gets its log and metadata tables. map_size 0
 * keeps LMDB's (or the file's). `flags` are added to LMDB's open flags.
 */
int flume__lmdb_open_env(const char *path, int readonly, size_t map_size,
                         unsigned flags, unsigned max_dbs, MDB_env **out);

/*
 * Checks a sealed entry read from LMDB (key and stored value) and strips
 * its checksum from *val. `what` describes the entry for the detail of a
 * mismatch ("seq 5", "view 'x'"): NULL describes it from `table` (the LMDB
 * name: "log", "t:meta", "t:v:<view>"). Errors: FLUME_ECORRUPT.
 */
int flume__lmdb_unseal(const char *path, const char *table, const MDB_val *key,
                       MDB_val *val);

/* One finding of flume__lmdb_verify(). */
typedef enum {
  FLUME__VERIFY_TABLE,   /* a table starts: `what` is its LMDB name */
  FLUME__VERIFY_DAMAGED, /* an entry is damaged: `what` says which and how */
  FLUME__VERIFY_DONE     /* the walk ended: `count` entries were read */
} flume__verify_kind;

typedef void (*flume__verify_fn)(void *ctx, flume__verify_kind kind,
                                 const char *what, uint64_t count);

/*
 * Opens the folder read-only and reads every entry of every table (the
 * log, the metadata, every view's state) and LMDB's list of free pages,
 * checking each checksum and the log's density, calling fn as it goes.
 * Returns 0 when the walk finished (findings went to fn), or the error that
 * stopped it. A damaged branch page can crash LMDB inside this walk: run it
 * in a child process (the command does: flume verify).
 */
int flume__lmdb_verify(const char *path, flume__verify_fn fn, void *ctx);

#endif
