/*
 * What log/lmdb.c's store takes from log/lmdb_file.c: the one open path
 * with its checks of the file, the seal of every entry, the walk of
 * verify, and the one map of LMDB's result codes. Private to log/: the
 * rest of flume reaches LMDB through log/store.h only (spec/layout.sh).
 *
 * Functions that return an int return 0 or a negative FLUME_E* code; on
 * FLUME_ECORRUPT and FLUME_EFORMAT, flume__store_detail() says what and
 * where.
 */
#ifndef FLUME_LOG_LMDB_FILE_H
#define FLUME_LOG_LMDB_FILE_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Bytes of the seal (a CRC32C of key and value) after every stored value. */
#define FLUME__LMDB_SEAL_SIZE 4
/* A store's table names are shorter than this (LMDB's name adds "t:"). */
#define FLUME__LMDB_NAME_MAX 128

/* LMDB's result code (or an errno) as a FLUME_E* code. */
int flume__lmdb_map_err(int rc);
/* The same for a read of LMDB's pages: damage LMDB noticed itself (a page
 * of the wrong kind, a page number past the end) gets a detail too. */
int flume__lmdb_read_err(const char *path, int rc);
/* Forgets this thread's detail, before an operation that may set one. */
void flume__lmdb_forget_detail(void);

/*
 * Opens the environment in the folder `path` after checking its data.mdb
 * (size against the last page its meta pages name, the meta pages
 * themselves), then checks that it is flume's (its log and metadata tables,
 * sealed entries) and clears stale readers. `readonly`: MDB_RDONLY, and a
 * folder without data.mdb is FLUME_ENOTFOUND instead of a new database.
 * Otherwise a new database gets its log and metadata tables. map_size 0
 * keeps the file's. `flags` are added to LMDB's open flags.
 */
int flume__lmdb_open_env(const char *path, int readonly, size_t map_size,
                         unsigned flags, unsigned max_dbs, MDB_env **out);

/* Writes val sealed into buf (len + FLUME__LMDB_SEAL_SIZE bytes). */
void flume__lmdb_seal(unsigned char *buf, const MDB_val *key, const void *val,
                      size_t len);
/*
 * Checks a sealed entry read from LMDB (key and stored value) and strips
 * its seal from *val. `table` is the LMDB name ("log", "t:meta",
 * "t:v:<view>"), for the detail of a mismatch, which names the entry in the
 * store's terms ("seq 5", "view 'x' state"). Errors: FLUME_ECORRUPT.
 */
int flume__lmdb_unseal(const char *path, const char *table,
                       const MDB_val *key, MDB_val *val);

/*
 * Reads every entry of every table in txn (the log first) and LMDB's list
 * of free pages, checking each seal and the log's density, calling fn as
 * store.h's verify says. Opens LMDB handles, which the caller's abort of
 * txn closes. A damaged branch page can crash LMDB inside this walk.
 */
int flume__lmdb_walk(MDB_txn *txn, const char *path, flume__verify_fn fn,
                     void *ctx);

#endif
