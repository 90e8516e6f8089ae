/*
 * Reading a view's table by key range, in chunks, each in one short read
 * transaction. Entries are `key` (group) or `key || seq` (index, the seq as
 * 8 big-endian bytes), where key is the order-preserving encoding of
 * keys.h. Bounds are compared with the key part only, so every seq of a
 * key is inside or outside a range together.
 */
#include <string.h>

#include "keys.h"
#include "viewread.h"

/* memcmp order of a and b, shorter first on a common prefix (LMDB's). */
static int cmp(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c) return c;
  return al < bl ? -1 : al > bl;
}

/* Where the entry stands against the range: -1 before it, 0 in it, 1 after
 * it (in key order, whatever the direction). */
static int place(const flume__range *r, const char *k, size_t kl) {
  if (r->lo) {
    int c = cmp(k, kl, r->lo, r->lo_len);
    if (c < 0 || (c == 0 && !r->lo_incl)) return -1;
  }
  if (r->hi) {
    int c = cmp(k, kl, r->hi, r->hi_len);
    if (c > 0 || (c == 0 && !r->hi_incl)) return 1;
  }
  return 0;
}

int flume__view_range(flume_db *db, flume__table tbl, size_t suffix,
                      const flume__range *r, size_t max, flume__buf *resume,
                      flume__entry_fn fn, void *ctx, size_t *count) {
  const flume__store_ops *ops = flume__db_ops(db);
  flume__txn *txn;
  flume__cursor *cur;
  *count = 0;
  if (max == 0) return 0;
  int rc = ops->txn_begin(flume__db_store(db), FLUME__TXN_READ, &txn);
  if (rc) return rc;
  if ((rc = ops->cursor_open(txn, tbl, &cur))) {
    ops->txn_abort(txn);
    return rc;
  }
  int step = r->reverse ? FLUME__PREV : FLUME__NEXT;
  flume__slice k = {NULL, 0}, v;
  if (resume->len) {
    /* Go on after the last entry handed out. */
    k = (flume__slice){resume->data, resume->len};
    rc = ops->cursor_get(cur, FLUME__SET_RANGE, &k, &v);
    if (r->reverse) {
      rc = rc == FLUME_ENOTFOUND ? ops->cursor_get(cur, FLUME__LAST, &k, &v)
                                 : ops->cursor_get(cur, FLUME__PREV, &k, &v);
    } else if (rc == 0 && cmp(k.data, k.size, resume->data, resume->len) == 0) {
      rc = ops->cursor_get(cur, FLUME__NEXT, &k, &v);
    }
  } else if (!r->reverse) {
    if (r->lo) {
      k = (flume__slice){r->lo, r->lo_len};
      rc = ops->cursor_get(cur, FLUME__SET_RANGE, &k, &v);
    } else {
      rc = ops->cursor_get(cur, FLUME__FIRST, &k, &v);
    }
  } else {
    if (r->hi) {
      /* Just past every entry whose key part is the bound (a seq suffix
       * never starts with 0xff), then back. */
      char seek[FLUME__KEY_SEEK_MAX];
      size_t n = r->hi_len;
      memcpy(seek, r->hi, n);
      memset(seek + n, 0xff, 9);
      k = (flume__slice){seek, n + 9};
      rc = ops->cursor_get(cur, FLUME__SET_RANGE, &k, &v);
      rc = rc == FLUME_ENOTFOUND ? ops->cursor_get(cur, FLUME__LAST, &k, &v)
                                 : ops->cursor_get(cur, FLUME__PREV, &k, &v);
    } else {
      rc = ops->cursor_get(cur, FLUME__LAST, &k, &v);
    }
  }
  while (rc == 0) {
    if (k.size < suffix) {
      rc = FLUME_ECORRUPT;
      break;
    }
    int at = place(r, k.data, k.size - suffix);
    if (r->reverse ? at < 0 : at > 0) break; /* past the end */
    if (at == 0) {
      if ((rc = fn(ctx, k.data, k.size - suffix, k.size, v.data, v.size)))
        break;
      resume->len = 0;
      if ((rc = flume__buf_append(resume, k.data, k.size))) break;
      if (++*count == max) break;
    }
    rc = ops->cursor_get(cur, step, &k, &v);
  }
  ops->cursor_close(cur);
  ops->txn_abort(txn);
  return rc == FLUME_ENOTFOUND ? 0 : rc;
}
