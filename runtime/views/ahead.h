/*
 * The indexer's read-ahead: a thread that reads the log's next values
 * while the loop thread runs the views on the ones before (ahead.c).
 */
#ifndef FLUME_VIEWS_AHEAD_H
#define FLUME_VIEWS_AHEAD_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

typedef struct flume__ahead flume__ahead;

/* A read-ahead of db's log with its thread, or NULL where there can be
 * none (flume__db_can_read_ahead), or it could not be made: then the
 * indexer reads with flume__db_read, as it would anyway. */
flume__ahead *flume__ahead_new(flume_db *db);

/* Stops the thread (after the read it is in, if any) and frees a. On the
 * loop thread, before the store closes. NULL: nothing. */
void flume__ahead_free(flume__ahead *a);

/*
 * flume__db_read(db, from, to, max, fn, ctx, count) for from <= to, with
 * the same results: from the values the thread read ahead when they start
 * at `from`, else read here. Then the thread is asked for the values
 * after these, up to `to` (acknowledged: the caller read it from since).
 */
int flume__ahead_read(flume__ahead *a, int64_t from, int64_t to, size_t max,
                      flume__visit_fn fn, void *ctx, size_t *count);

#endif
