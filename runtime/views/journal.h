/*
 * The journal of a view (journal.c): what its recent checkpoints changed,
 * in memory, so that a live read can deliver what one commit changed
 * without reading its whole range again (read.c's flume__view_changes).
 *
 * A record is one checkpoint handed to the writer: the since it took the
 * view from, the since it brings it to, and the entries it wrote or
 * deleted (a group view's keys, an index view's `key || be64(seq)`).
 * Records are contiguous: each starts where the one before ended, so the
 * journal holds every change in (base, last]. It is bounded
 * (FLUME__JOURNAL_MAX bytes a view): the oldest records go first, and a
 * checkpoint larger than the bound empties it. It is kept from the first
 * live read of the view on (`on`), and only by the process that runs the
 * views: a read-only handle's views have an empty journal.
 *
 * Loop thread only, like the rest of the pipeline.
 */
#ifndef FLUME_RUNTIME_VIEWS_JOURNAL_H
#define FLUME_RUNTIME_VIEWS_JOURNAL_H

#include <stdint.h>

#include "buf.h"

/* Bytes of records a view's journal holds at most (entries, their
 * lengths, and each record's header). */
#define FLUME__JOURNAL_MAX ((size_t)1 << 20)

typedef struct flume__jrec {
  struct flume__jrec *next; /* the next newer record */
  int64_t from;             /* the since the checkpoint took the view from */
  int64_t to;               /* the since it brought it to */
  size_t n;                 /* entries */
  size_t len;               /* bytes of data */
  char data[];              /* n entries, each a uint32 length then bytes */
} flume__jrec;

typedef struct flume__journal {
  int on;             /* a live read began: records are kept (until the
                       * view closes; a view never read live keeps none) */
  flume__jrec *head;  /* the oldest record, or NULL */
  flume__jrec *tail;  /* the newest record, or NULL */
  int valid;          /* base and last mean something */
  int64_t base;       /* every change after this since is held ... */
  int64_t last;       /* ... up to this one (the newest record's to) */
  size_t bytes;       /* what the records take, counted against the bound */
  size_t max;         /* the bound: FLUME__JOURNAL_MAX, or a test's */
} flume__journal;

/*
 * Records the checkpoint that takes the view from `from` to `to`, whose
 * changes are the pipeline's operations buffer `ops` (pipeline.c's layout:
 * per operation one byte, uint32 key length, uint32 value length, key,
 * value; the keys are what is kept), if it is on. A record that does not
 * start where the journal ends starts it again. Out of memory, the journal is emptied
 * (a live read then reads its range again): never an error.
 */
void flume__journal_add(flume__journal *j, int64_t from, int64_t to,
                        const flume__buf *ops);

/* Drops the records past `since` (checkpoints that were not stored). */
void flume__journal_truncate(flume__journal *j, int64_t since);

/* Empties it: it holds nothing until the next record (`on` stays). */
void flume__journal_reset(flume__journal *j);

/* Sets its bound to `max` bytes (0: FLUME__JOURNAL_MAX), dropping the
 * oldest records over it. */
void flume__journal_bound(flume__journal *j, size_t max);

/* 1 when it holds every change in (after, upto]. */
int flume__journal_covers(const flume__journal *j, int64_t after,
                          int64_t upto);

#endif
