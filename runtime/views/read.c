/*
 * Reading a view's table by key range, in chunks, each in one short read
 * transaction. Entries are `key` (group) or `key || seq` (index, the seq as
 * 8 big-endian bytes), where key is the order-preserving encoding of
 * keys.h. Bounds are compared with the key part only, so every seq of a
 * key is inside or outside a range together.
 *
 * Bounds and the resume point may be of any length; only seeks go to the
 * store, and a seek key is never longer than the store's longest key
 * FLUME__STORE_KEY_MAX (M). Every stored entry e has |e| <= M, and for a
 * byte string s longer than M, with s' its first M bytes:
 *   e < s  <=>  e <= s'     and     e > s  <=>  e > s'
 * (e differs from s within its own length, as it does from s', or e is a
 * prefix of s, so below s and at most s'). A long bound or resume point is
 * so replaced by s' with the strictness flipped as above. Comparisons of a
 * key part with a bound (place) work on any lengths as they are.
 *
 * Key parts are prefix-free (no key encoding is a prefix of another, nor
 * of a bound, which is a key encoding too), so entries sort by key part
 * first and the entries in a range are one run of the table: the reader
 * seeks to one end of the run and stops at the first entry past the
 * other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "msgpack.h"
#include "views/read.h"
#include "views/engine.h"

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

/* Moves the cursor to the first entry > s (strict) or >= s, any |s|. */
static int seek_first(const flume__store_ops *ops, flume__cursor *cur,
                      const char *s, size_t n, int strict, flume__slice *k,
                      flume__slice *v) {
  if (n > FLUME__STORE_KEY_MAX) {
    n = FLUME__STORE_KEY_MAX;
    strict = 1;
  }
  if (n == 0) return ops->cursor_get(cur, FLUME__FIRST, k, v);
  *k = (flume__slice){s, n};
  int rc = ops->cursor_get(cur, FLUME__SET_RANGE, k, v);
  if (rc == 0 && strict && cmp(k->data, k->size, s, n) == 0)
    rc = ops->cursor_get(cur, FLUME__NEXT, k, v);
  return rc;
}

/* Moves the cursor to the last entry < s (strict) or <= s, any |s|. */
static int seek_last(const flume__store_ops *ops, flume__cursor *cur,
                     const char *s, size_t n, int strict, flume__slice *k,
                     flume__slice *v) {
  if (n > FLUME__STORE_KEY_MAX) {
    n = FLUME__STORE_KEY_MAX;
    strict = 0;
  }
  if (n == 0) return FLUME_ENOTFOUND; /* no entry is empty */
  *k = (flume__slice){s, n};
  int rc = ops->cursor_get(cur, FLUME__SET_RANGE, k, v);
  if (rc == FLUME_ENOTFOUND) return ops->cursor_get(cur, FLUME__LAST, k, v);
  if (rc || (!strict && cmp(k->data, k->size, s, n) == 0)) return rc;
  return ops->cursor_get(cur, FLUME__PREV, k, v);
}

/* Moves the cursor to the last entry whose key part is <= hi (or past it:
 * the caller skips entries after the range). */
static int seek_hi(const flume__store_ops *ops, flume__cursor *cur,
                   const char *hi, size_t n, flume__slice *k,
                   flume__slice *v) {
  /* Longer than M, hi has no entry as a prefix: the last entry < hi. */
  if (n > FLUME__STORE_KEY_MAX) return seek_last(ops, cur, hi, n, 1, k, v);
  /* Else the last entry below the successor of hi (the least string above
   * every string that starts with hi), which is at most n bytes. */
  char seek[FLUME__STORE_KEY_MAX];
  memcpy(seek, hi, n);
  while (n > 0 && (unsigned char)seek[n - 1] == 0xff) n--;
  if (n == 0) return ops->cursor_get(cur, FLUME__LAST, k, v);
  seek[n - 1] = (char)((unsigned char)seek[n - 1] + 1);
  return seek_last(ops, cur, seek, n, 1, k, v);
}

/* flume__view_range inside the read transaction txn. */
static int range_in(const flume__store_ops *ops, flume__txn *txn,
                    flume__table tbl, size_t suffix, const flume__range *r,
                    size_t max, flume__buf *resume, flume__entry_fn fn,
                    void *ctx, size_t *count) {
  flume__cursor *cur;
  *count = 0;
  if (max == 0) return 0;
  int rc = ops->cursor_open(txn, tbl, &cur);
  if (rc) return rc;
  int step = r->reverse ? FLUME__PREV : FLUME__NEXT;
  flume__slice k = {NULL, 0}, v;
  if (resume->len) {
    /* Go on after the last entry handed out. */
    rc = r->reverse ? seek_last(ops, cur, resume->data, resume->len, 1, &k, &v)
                    : seek_first(ops, cur, resume->data, resume->len, 1, &k,
                                 &v);
  } else if (!r->reverse) {
    rc = seek_first(ops, cur, r->lo ? r->lo : "", r->lo ? r->lo_len : 0, 0,
                    &k, &v);
  } else if (r->hi) {
    rc = seek_hi(ops, cur, r->hi, r->hi_len, &k, &v);
  } else {
    rc = ops->cursor_get(cur, FLUME__LAST, &k, &v);
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
  return rc == FLUME_ENOTFOUND ? 0 : rc;
}

int flume__view_range(flume_db *db, flume__table tbl, size_t suffix,
                      const flume__range *r, size_t max, flume__buf *resume,
                      flume__entry_fn fn, void *ctx, size_t *count) {
  const flume__store_ops *ops = flume__db_ops(db);
  flume__txn *txn;
  *count = 0;
  if (max == 0) return 0;
  int rc = ops->txn_begin(flume__db_store(db), FLUME__TXN_READ, &txn);
  if (rc) return rc;
  rc = range_in(ops, txn, tbl, suffix, r, max, resume, fn, ctx, count);
  ops->txn_abort(txn);
  return rc;
}

/* ---- views ------------------------------------------------------------- */

int flume__view_readable(flume_view *v, int keyed, char *err, size_t errlen) {
  if (!v->ready) {
    snprintf(err, errlen, "view '%s' is not set up yet", v->name);
    return FLUME_EBUSY;
  }
  if (v->kind == FLUME__VIEW_C) {
    snprintf(err, errlen, "view '%s' is written in C: it answers through "
             "its methods", v->name);
    return FLUME_EINVAL;
  }
  if (keyed && v->kind == FLUME__VIEW_REDUCE) {
    snprintf(err, errlen, "view '%s' is a reduce view: it has no keys",
             v->name);
    return FLUME_EINVAL;
  }
  return 0;
}

/*
 * A checkpoint is in the store from the moment the writer commits it, a
 * loop turn before its completion raises the view's since. A read sees the
 * store, so it reads the view's record in the same transaction and brings
 * the since up to what it read: after any read, the view's since is the
 * since of the state that read saw (exactly, for one transaction). Not
 * while a rebuild's reset is pending (the record is the old state's) nor
 * for a record of another version or kind (a view being replaced).
 */
static int sync_since(flume_view *v, const flume__store_ops *ops,
                      flume__txn *txn) {
  char key[FLUME__NAMED_KEY_SIZE];
  flume__table meta;
  flume__slice val;
  flume__record rec;
  int kl = flume__meta_view_key(v->name, key, sizeof key);
  int rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  if (rc == 0) rc = ops->get(txn, meta, (flume__slice){key, (size_t)kl}, &val);
  if (rc == FLUME_ENOTFOUND) return 0;
  if (rc == 0) rc = flume__record_unpack(val, &rec);
  if (rc) return rc;
  if (v->vs && v->vs->readonly) return flume__follow_record(v, &rec);
  if (!v->resetting && !v->failed && rec.kind == v->kind &&
      rec.version == v->version && rec.since > v->committed &&
      rec.since <= v->since)
    v->committed = rec.since;
  return 0;
}

typedef struct entry_ctx {
  flume_view *view;         /* the view read */
  int64_t upto;             /* index entries past this seq are skipped */
  flume__view_entry_fn fn;  /* the caller's */
  void *ctx;
  size_t skipped;           /* entries skipped */
} entry_ctx;

static int one_entry(void *p, const char *key, size_t key_len,
                     size_t entry_len, const void *val, size_t val_len) {
  entry_ctx *c = p;
  flume__view_entry e = {key, key_len, -1, NULL, 0};
  if (c->view->kind == FLUME__VIEW_INDEX) {
    if (entry_len != key_len + FLUME__KEY_SEQ_LEN) return FLUME_ECORRUPT;
    e.seq = flume__index_seq_get(key, entry_len);
    if (c->upto >= 0 && e.seq > c->upto) {
      c->skipped++;
      return 0;
    }
  } else {
    e.val = val;
    e.val_len = val_len;
  }
  return c->fn(c->ctx, &e);
}

int flume__view_read(flume_view *v, const flume__range *r, size_t max,
                     int64_t *since, flume__buf *resume,
                     flume__view_entry_fn fn, void *ctx, size_t *count,
                     int *done, char *err, size_t errlen) {
  *count = 0;
  *done = 1;
  int rc = flume__view_readable(v, 1, err, errlen);
  if (rc) return rc;
  size_t suffix = v->kind == FLUME__VIEW_INDEX ? FLUME__KEY_SEQ_LEN : 0;
  const flume__store_ops *ops = flume__db_ops(v->db);
  flume__txn *txn;
  if ((rc = ops->txn_begin(flume__db_store(v->db), FLUME__TXN_READ, &txn)))
    return rc;
  size_t n = 0;
  /* The first chunk of a read decides its since; later ones keep it. */
  if (*since < 0 && (rc = sync_since(v, ops, txn)) == 0) *since = v->committed;
  entry_ctx c = {v, v->kind == FLUME__VIEW_INDEX ? *since : -1, fn, ctx, 0};
  if (rc == 0)
    rc = range_in(ops, txn, v->table, suffix, r, max, resume, one_entry, &c,
                  &n);
  ops->txn_abort(txn);
  /* Skipped entries count against max too (the read stays short): the
   * range is done when fewer than max were in it. */
  *count = n - c.skipped;
  *done = n < max;
  if (rc == FLUME_ECORRUPT && err[0] == '\0')
    snprintf(err, errlen, "view '%s' has a damaged entry", v->name);
  return rc;
}

/* ---- a chunk copied out ------------------------------------------------ */

typedef struct flume__seq_at {
  int64_t seq; /* a log seq */
  size_t at;   /* the chunk entry that points at it */
} flume__seq_at;

static int seq_at_cmp(const void *a, const void *b) {
  const flume__seq_at *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int chunk_entry(void *p, const flume__view_entry *e) {
  flume__view_chunk *c = p;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    flume__chunk_entry *m = realloc(c->e, cap * sizeof *m);
    if (m == NULL) return FLUME_ENOMEM;
    c->e = m;
    c->cap = cap;
  }
  flume__chunk_entry *x = &c->e[c->n];
  *x = (flume__chunk_entry){c->keys.len, e->key_len, c->vals.len, e->val_len,
                            e->seq};
  int rc = flume__buf_append(&c->keys, e->key, e->key_len);
  if (rc == 0) rc = flume__buf_append(&c->vals, e->val, e->val_len);
  if (rc == 0) c->n++;
  return rc;
}

typedef struct fill_ctx {
  flume__view_chunk *c; /* the chunk whose values these are */
  size_t i;             /* the next of c->by_seq */
} fill_ctx;

static int fill_one(void *p, int64_t seq, const void *data, size_t len) {
  fill_ctx *f = p;
  flume__view_chunk *c = f->c;
  flume__chunk_entry *x = &c->e[c->by_seq[f->i++].at];
  (void)seq;
  x->val_off = c->vals.len;
  x->val_len = len;
  return flume__buf_append(&c->vals, data, len);
}

/* The log values of an index chunk's entries, looked up in seq order. */
static int chunk_values(flume_view *v, flume__view_chunk *c) {
  if (c->n > c->seqs_cap) {
    flume__seq_at *b = realloc(c->by_seq, c->n * sizeof *b);
    if (b == NULL) return FLUME_ENOMEM;
    c->by_seq = b;
    int64_t *s = realloc(c->seqs, c->n * sizeof *s);
    if (s == NULL) return FLUME_ENOMEM;
    c->seqs = s;
    c->seqs_cap = c->n;
  }
  int sorted = 1;
  for (size_t i = 0; i < c->n; i++) {
    c->by_seq[i] = (flume__seq_at){c->e[i].seq, i};
    if (i && c->e[i].seq < c->e[i - 1].seq) sorted = 0;
  }
  /* A key's entries come in seq order; a chunk of many keys is sorted. */
  if (!sorted) qsort(c->by_seq, c->n, sizeof *c->by_seq, seq_at_cmp);
  for (size_t i = 0; i < c->n; i++) c->seqs[i] = c->by_seq[i].seq;
  fill_ctx f = {c, 0};
  return flume__db_read_seqs(v->db, c->seqs, c->n, fill_one, &f);
}

int flume__view_read_chunk(flume_view *v, const flume__range *r, size_t max,
                           int64_t *since, flume__buf *resume,
                           flume__view_chunk *out, int *done, char *err,
                           size_t errlen) {
  size_t count;
  out->keys.len = out->vals.len = 0;
  out->n = 0;
  out->kind = v->kind;
  int rc = flume__view_read(v, r, max, since, resume, chunk_entry, out,
                            &count, done, err, errlen);
  if (rc == 0 && out->n && v->kind == FLUME__VIEW_INDEX)
    rc = chunk_values(v, out);
  return rc;
}

void flume__view_chunk_free(flume__view_chunk *c) {
  flume__buf_free(&c->keys);
  flume__buf_free(&c->vals);
  free(c->e);
  free(c->by_seq);
  free(c->seqs);
  *c = (flume__view_chunk){0};
}

/* ---- a live read's step (the journal) --------------------------------- */

typedef struct change {
  const char *entry; /* in a journal record: key part, then the suffix */
  size_t len;        /* the whole entry's length */
} change;

static int change_cmp(const void *a, const void *b) {
  const change *x = a, *y = b;
  return cmp(x->entry, x->len, y->entry, y->len);
}

/* The journal's entries in range that records after `after` (up to upto)
 * hold, sorted (an entry's order is the table's) and without repeats. */
static int gather(flume_view *v, const flume__range *r, size_t suffix,
                  int64_t after, int64_t upto, change **out, size_t *n) {
  size_t cap = 0;
  *out = NULL;
  *n = 0;
  for (flume__jrec *rec = v->journal.head; rec; rec = rec->next) {
    if (rec->to <= after || rec->from >= upto) continue;
    const char *p = rec->data;
    for (size_t i = 0; i < rec->n; i++) {
      uint32_t len;
      memcpy(&len, p, 4);
      const char *e = p + 4;
      p += 4 + len;
      if (len < suffix) return FLUME_ECORRUPT;
      if (place(r, e, len - suffix) != 0) continue;
      if (suffix) {
        int64_t seq = flume__index_seq_get(e, len);
        if (seq <= after || seq > upto) continue;
      }
      if (*n == cap) {
        size_t c = cap ? cap * 2 : 64;
        change *m = realloc(*out, c * sizeof *m);
        if (m == NULL) return FLUME_ENOMEM;
        *out = m;
        cap = c;
      }
      (*out)[(*n)++] = (change){e, len};
    }
  }
  if (*n > 1) qsort(*out, *n, sizeof **out, change_cmp);
  size_t k = 0; /* a group key set by several checkpoints comes once */
  for (size_t i = 0; i < *n; i++)
    if (k == 0 || change_cmp(&(*out)[k - 1], &(*out)[i]) != 0)
      (*out)[k++] = (*out)[i];
  *n = k;
  return 0;
}

int flume__view_changes(flume_view *v, const flume__range *r, size_t max,
                        int64_t after, int64_t *since,
                        flume__view_entry_fn fn, void *ctx, size_t *count,
                        char *err, size_t errlen) {
  *count = 0;
  int rc = flume__view_readable(v, 1, err, errlen);
  if (rc) return rc;
  if (r->reverse) return FLUME_EINVAL; /* a live read goes forward */
  size_t suffix = v->kind == FLUME__VIEW_INDEX ? FLUME__KEY_SEQ_LEN : 0;
  const flume__store_ops *ops = flume__db_ops(v->db);
  flume__txn *txn;
  if ((rc = ops->txn_begin(flume__db_store(v->db), FLUME__TXN_READ, &txn)))
    return rc;
  change *ch = NULL;
  size_t n = 0;
  if ((rc = sync_since(v, ops, txn))) goto done;
  *since = v->committed;
  if (*since <= after) goto done; /* nothing after it yet */
  /* A live read that did not turn the journal on first (or on a view
   * replaced since) does now: this step reads its range again, the next
   * ones find their changes. */
  v->journal.on = 1;
  if (!flume__journal_covers(&v->journal, after, *since)) {
    rc = FLUME__CHANGES_MISS;
    goto done;
  }
  if ((rc = gather(v, r, suffix, after, *since, &ch, &n))) goto done;
  for (size_t i = 0; i < n && *count < max; i++) {
    flume__view_entry e = {ch[i].entry, ch[i].len - suffix, -1, NULL, 0};
    if (suffix) {
      /* An index entry is all there is to it: no need of the store. */
      e.seq = flume__index_seq_get(ch[i].entry, ch[i].len);
    } else {
      flume__slice val;
      rc = ops->get(txn, v->table, (flume__slice){ch[i].entry, ch[i].len},
                    &val);
      if (rc == FLUME_ENOTFOUND) { /* deleted: nothing to deliver */
        rc = 0;
        continue;
      }
      if (rc) break;
      e.val = val.data;
      e.val_len = val.size;
    }
    if ((rc = fn(ctx, &e))) break;
    ++*count;
  }
done:
  free(ch);
  ops->txn_abort(txn);
  if (rc == FLUME_ECORRUPT && err[0] == '\0')
    snprintf(err, errlen, "view '%s' has a damaged entry", v->name);
  return rc;
}

void flume__view_journal_on(flume_view *v) { v->journal.on = 1; }

#ifdef FLUME_TEST_HOOKS
void flume__view_journal_max(flume_view *v, size_t max) {
  flume__journal_bound(&v->journal, max);
}
#endif

/* Entries one read of a key's seqs takes before it renews its read
 * transaction, so a key with a million seqs does not pin old pages. */
#define GET_CHUNK 4096

int flume__view_get(flume_view *v, const char *key, size_t key_len,
                    flume__view_entry_fn fn, void *ctx, size_t *count,
                    char *err, size_t errlen) {
  flume__range r = {key, key_len, 1, key, key_len, 1, 0};
  flume__buf resume = FLUME__BUF_INIT;
  size_t n;
  int rc, done;
  int64_t since = -1;
  *count = 0;
  do {
    rc = flume__view_read(v, &r, GET_CHUNK, &since, &resume, fn, ctx, &n,
                          &done, err, errlen);
    *count += n;
  } while (rc == 0 && !done);
  flume__buf_free(&resume);
  return rc;
}

/* A reduce view's stored state; with sync, a read (see sync_since). */
static int stored_state(flume_view *v, flume__buf *out, int sync) {
  const flume__store_ops *ops = flume__db_ops(v->db);
  flume__txn *txn;
  flume__slice val;
  int rc = ops->txn_begin(flume__db_store(v->db), FLUME__TXN_READ, &txn);
  if (rc) return rc;
  if (sync && (rc = sync_since(v, ops, txn))) {
    ops->txn_abort(txn);
    return rc;
  }
  rc = ops->get(txn, v->table,
                (flume__slice){FLUME__REDUCE_STATE_KEY,
                               sizeof FLUME__REDUCE_STATE_KEY - 1},
                &val);
  out->len = 0;
  if (rc == 0) rc = flume__buf_append(out, val.data, val.size);
  ops->txn_abort(txn);
  return rc;
}

int flume__view_state(flume_view *v, flume__buf *out, char *err,
                      size_t errlen) {
  int rc = flume__view_readable(v, 0, err, errlen);
  if (rc) return rc;
  if (v->kind != FLUME__VIEW_REDUCE) {
    snprintf(err, errlen, "view '%s' is not a reduce view: read it by key",
             v->name);
    return FLUME_EINVAL;
  }
  return stored_state(v, out, 1);
}

int flume__view_stored_state(flume_view *v, flume__buf *out) {
  return stored_state(v, out, 0);
}

int flume__view_push_state(flume_view *v, lua_State *L, char *err,
                           size_t errlen) {
  flume__buf b = FLUME__BUF_INIT;
  char why[128] = "";
  int rc = flume__view_state(v, &b, err, errlen);
  if (rc == FLUME_ENOTFOUND) {
    lua_pushnil(L); /* no state yet */
    rc = 0;
  } else if (rc == 0 && flume__mp_decode(L, b.data, b.len, why, sizeof why)) {
    rc = FLUME_ECORRUPT;
    snprintf(err, errlen, "view '%s': its stored state cannot be read: %s",
             v->name, why);
  }
  flume__buf_free(&b);
  return rc;
}

int flume__view_collect(void *p, const flume__view_entry *e) {
  flume__collect_ctx *c = p;
  lua_State *L = c->L;
  size_t used;
  c->n++;
  if (c->keys) {
    if (flume__key_decode(L, e->key, e->key_len, &used, c->err,
                          sizeof c->err))
      return FLUME_EDECODE;
    lua_rawseti(L, c->keys, c->n);
  }
  if (e->seq >= 0) lua_pushinteger(L, e->seq);
  else if (flume__mp_decode(L, e->val, e->val_len, c->err, sizeof c->err))
    return FLUME_EDECODE;
  lua_rawseti(L, c->vals, c->n);
  return 0;
}
