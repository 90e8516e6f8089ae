/* Range reads over a view's table (viewread.c). */
#ifndef FLUME_RUNTIME_VIEWREAD_H
#define FLUME_RUNTIME_VIEWREAD_H

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

#endif
