/*
 * The memory backend: the same observable semantics as the LMDB backend,
 * nothing on disk. `flume.open()` with no path runs on it, and so do tests
 * that want a store without a folder.
 *
 * Structure. The log is a growable array of owned copies, seq = index. Each
 * named table is an AVL tree with parent pointers, one allocation per entry
 * holding both key and value. Why AVL: worst-case O(log n) insert, delete
 * and seek (a skip list only promises that on average, and needs a random
 * source); a stricter balance than a red-black tree, so shallower seeks for
 * index views, which are read more than written; parent pointers make
 * successor and predecessor steps O(1) amortised in both directions with no
 * stack in the cursor; and a node's address never changes, which the undo
 * log and the cursors rely on. The price is a cache miss per level: on 1M
 * random 8-byte keys it does about 1.1M inserts/s and 1.2M seeks/s, some
 * 60% of LMDB's B+tree with the map in the page cache (ordered keys: 3.8M
 * inserts/s); `test_store bench` measures it. If that ever matters more
 * than the per-entry cost of the Lua views above it, a B+tree holding key
 * prefixes inline in its nodes is the next step.
 *
 * Transactions. Writes change the live structures at once and record an
 * undo entry each, reserved before anything changes so that FLUME_ENOMEM
 * leaves the store as it was. Commit frees what the transaction retired
 * (replaced and deleted entries, cleared trees); abort replays the undo log
 * backwards, then frees what the transaction created. Until the transaction
 * ends, no entry it touched is freed, so slices and cursors stay valid for
 * its whole life, longer than store.h promises.
 *
 * Threading. inline_writes is set: every transaction runs on the loop
 * thread, so there is no locking. One write transaction and any number of
 * read transactions may exist at once, but a read transaction sees the live
 * data, the writer's uncommitted changes included (LMDB's would see the last
 * commit). While readers exist, what a finished write transaction would free
 * is kept until the last reader ends, so a reader's slices never dangle.
 *
 * Cursors hold a node and the table's removal generation: if an entry left
 * the tree since (delete, replace, clear, undo), NEXT and PREV re-seek from
 * the cursor's key, so they continue correctly even when the entry they
 * were on was replaced or deleted.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flume.h"
#include "store.h"

#define MEM_MAX_TABLES 256 /* named tables per store, as in LMDB */
#define MEM_MAX_KEY 511    /* longest key, LMDB's default limit */
#define MEM_NAME_MAX 128   /* table names are shorter than this, as in LMDB */

#ifdef FLUME_TEST_HOOKS
/* Test-only: this many more allocations succeed, then one fails and the
 * hook disarms itself; negative means never fail. */
long flume__test_memory_fail_after = -1;
int flume__test_memory_check(flume__store *s);
#endif

typedef struct mem_node {
  struct mem_node *link[2]; /* children: [0] smaller keys, [1] larger */
  struct mem_node *parent;  /* NULL at the root */
  size_t vsize;             /* value length in bytes */
  uint16_t ksize;           /* key length in bytes, 1..MEM_MAX_KEY */
  int8_t bal;               /* height(right) - height(left): -1, 0 or 1 */
  unsigned char bytes[];    /* the key, then the value */
} mem_node;

typedef struct mem_blob {
  uint64_t seq;         /* its seq: cursors return a slice of this field */
  size_t size;          /* value length in bytes */
  unsigned char data[]; /* the value */
} mem_blob;

typedef struct mem_table {
  char *name;     /* owned; NULL when the slot is free */
  mem_node *root; /* the tree, NULL when empty */
  uint64_t count; /* entries in the tree */
  uint64_t gen;   /* bumped whenever an entry leaves the tree */
} mem_table;

enum mem_op {
  MEM_INSERT,  /* a: the new node */
  MEM_REPLACE, /* a: the old node, b.node: the one that took its place */
  MEM_DELETE,  /* a: the removed node */
  MEM_CLEAR,   /* a: the old root, b.count: the old count */
  MEM_APPEND   /* a: the new log blob */
};

typedef struct mem_undo {
  void *a; /* see enum mem_op */
  union {
    mem_node *node; /* MEM_REPLACE's new node */
    uint64_t count; /* MEM_CLEAR's old count */
  } b;              /* see enum mem_op */
  uint32_t op;      /* enum mem_op */
  uint32_t tbl;     /* the table's handle; 0 for MEM_APPEND */
} mem_undo;

struct flume__txn {
  flume__store *s;   /* owner */
  int write;         /* 1 for the write transaction */
  int aborted;       /* how a finished write transaction ended */
  unsigned ntables0; /* s->ntables when it began, to drop created tables */
  mem_undo *undo;    /* the undo log, oldest first */
  size_t nundo;      /* entries in undo */
  size_t capundo;    /* room in undo */
  size_t cursors;    /* cursors open on it, to check they are closed */
  flume__txn *next;  /* link in s->deferred once finished */
};

struct flume__store {
  mem_blob **log;       /* log entries by seq */
  size_t log_len;       /* entries in the log */
  size_t log_cap;       /* room in log */
  unsigned ntables;     /* table slots in use: handles 1..ntables */
  flume__txn *writer;   /* the write transaction, if any */
  size_t readers;       /* read transactions open */
  flume__txn *deferred; /* finished write transactions whose garbage waits
                           for the readers to end */
  uint64_t commits;     /* write transactions committed, for stat */
  mem_table tables[MEM_MAX_TABLES]; /* by handle - 1 */
};

struct flume__cursor {
  flume__txn *txn; /* owner */
  mem_table *tbl;  /* the table; NULL for the log */
  mem_node *node;  /* position in a table; NULL when unpositioned */
  uint64_t gen;    /* tbl->gen when node was reached */
  int past_end;    /* 1: past the last entry, after a failed seek */
  int64_t seq;     /* position in the log; -1 when unpositioned, the log's
                      length when past the end */
};

/* Allocation, with the test hook. */

static void *mem_alloc(size_t size) {
#ifdef FLUME_TEST_HOOKS
  if (flume__test_memory_fail_after == 0) {
    flume__test_memory_fail_after = -1;
    return NULL;
  }
  if (flume__test_memory_fail_after > 0) flume__test_memory_fail_after--;
#endif
  return malloc(size);
}

static void *mem_realloc(void *p, size_t size) {
#ifdef FLUME_TEST_HOOKS
  if (flume__test_memory_fail_after == 0) {
    flume__test_memory_fail_after = -1;
    return NULL;
  }
  if (flume__test_memory_fail_after > 0) flume__test_memory_fail_after--;
#endif
  return realloc(p, size);
}

/* The tree. */

static int key_cmp(const void *a, size_t an, const void *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  if (c) return c;
  return (an > bn) - (an < bn);
}

static int node_cmp(const flume__slice *k, const mem_node *n) {
  return key_cmp(k->data, k->size, n->bytes, n->ksize);
}

/* Puts `to` where `from` hangs from `parent` (or at the root). */
static void set_child(mem_table *t, mem_node *parent, mem_node *from,
                      mem_node *to) {
  if (parent == NULL)
    t->root = to;
  else
    parent->link[parent->link[1] == from] = to;
}

/* Rotation: n goes down to side d, its child on the other side comes up. */
static mem_node *rotate(mem_table *t, mem_node *n, int d) {
  mem_node *up = n->link[!d];
  n->link[!d] = up->link[d];
  if (up->link[d]) up->link[d]->parent = n;
  up->link[d] = n;
  up->parent = n->parent;
  set_child(t, n->parent, n, up);
  n->parent = up;
  return up;
}

/* Restores balance at x, whose factor is +-2. Returns the subtree's new
 * root; *shrunk says whether the subtree is lower than before the call
 * (always, after an insertion; not always, after a removal). */
static mem_node *rebalance(mem_table *t, mem_node *x, int *shrunk) {
  int d = x->bal > 0;
  int s = d ? 1 : -1;
  mem_node *z = x->link[d];
  if (z->bal == -s) {
    mem_node *y = z->link[!d];
    rotate(t, z, d);
    rotate(t, x, !d);
    x->bal = (int8_t)(y->bal == s ? -s : 0);
    z->bal = (int8_t)(y->bal == -s ? s : 0);
    y->bal = 0;
    *shrunk = 1;
    return y;
  }
  rotate(t, x, !d);
  if (z->bal == 0) {
    x->bal = (int8_t)s;
    z->bal = (int8_t)-s;
    *shrunk = 0;
  } else {
    x->bal = 0;
    z->bal = 0;
    *shrunk = 1;
  }
  return z;
}

/* Hangs n from p on side d (p NULL: as the root) and rebalances. */
static void tree_attach(mem_table *t, mem_node *p, int d, mem_node *n) {
  n->link[0] = n->link[1] = NULL;
  n->parent = p;
  n->bal = 0;
  if (p)
    p->link[d] = n;
  else
    t->root = n;
  for (mem_node *child = n; p; child = p, p = p->parent) {
    p->bal = (int8_t)(p->bal + (p->link[1] == child ? 1 : -1));
    if (p->bal == 0) break;
    if (p->bal == 2 || p->bal == -2) {
      int shrunk;
      rebalance(t, p, &shrunk);
      break;
    }
  }
  t->count++;
}

/* Finds where key k is or would hang: returns its node, or NULL and sets
 * *p and *d to the parent-to-be and side. */
static mem_node *tree_seek(const mem_table *t, const flume__slice *k,
                           mem_node **p, int *d) {
  mem_node *cur = t->root;
  *p = NULL;
  *d = 0;
  while (cur) {
    int c = node_cmp(k, cur);
    if (c == 0) return cur;
    *p = cur;
    *d = c > 0;
    cur = cur->link[*d];
  }
  return NULL;
}

/* Links n (whose key is not in the tree) in as a leaf. */
static void tree_insert(mem_table *t, mem_node *n) {
  flume__slice k = {n->bytes, n->ksize};
  mem_node *p;
  int d;
  mem_node *found = tree_seek(t, &k, &p, &d);
  assert(found == NULL);
  (void)found;
  tree_attach(t, p, d, n);
}

/* Unlinks n from the tree and rebalances; n itself is left untouched apart
 * from no longer being reachable. */
static void tree_remove(mem_table *t, mem_node *n) {
  mem_node *p; /* where the retrace starts */
  int d;       /* the side of p that got lower */
  if (n->link[0] && n->link[1]) {
    /* Move the successor y into n's place, node and all, since cursors and
     * the undo log know nodes by address. */
    mem_node *y = n->link[1];
    while (y->link[0]) y = y->link[0];
    if (y == n->link[1]) {
      p = y;
      d = 1;
    } else {
      p = y->parent;
      d = 0;
      p->link[0] = y->link[1];
      if (y->link[1]) y->link[1]->parent = p;
      y->link[1] = n->link[1];
      y->link[1]->parent = y;
    }
    y->link[0] = n->link[0];
    y->link[0]->parent = y;
    y->bal = n->bal;
    y->parent = n->parent;
    set_child(t, n->parent, n, y);
  } else {
    mem_node *c = n->link[n->link[0] == NULL];
    p = n->parent;
    d = p && p->link[1] == n;
    set_child(t, p, n, c);
    if (c) c->parent = p;
  }
  while (p) {
    int s = d ? 1 : -1;
    p->bal = (int8_t)(p->bal - s);
    if (p->bal == -s) break; /* it was even: its height did not change */
    mem_node *g = p->parent;
    int gd = g && g->link[1] == p;
    if (p->bal != 0) {
      int shrunk;
      rebalance(t, p, &shrunk);
      if (!shrunk) break;
    }
    p = g;
    d = gd;
  }
  t->count--;
  t->gen++;
}

/* Puts `to` (not in any tree) exactly where `from` is. */
static void tree_swap(mem_table *t, mem_node *from, mem_node *to) {
  to->link[0] = from->link[0];
  to->link[1] = from->link[1];
  to->parent = from->parent;
  to->bal = from->bal;
  set_child(t, from->parent, from, to);
  for (int i = 0; i < 2; i++)
    if (to->link[i]) to->link[i]->parent = to;
  t->gen++;
}

static void tree_free(mem_node *n) {
  /* Iterative, from the leaves up: a tree of millions must not need a deep
   * stack, and the parent pointers make a stack unnecessary. */
  while (n) {
    if (n->link[0]) {
      n = n->link[0];
    } else if (n->link[1]) {
      n = n->link[1];
    } else {
      mem_node *p = n->parent;
      if (p) p->link[p->link[1] == n] = NULL;
      free(n);
      n = p;
    }
  }
}

static mem_node *find_eq(const mem_table *t, const flume__slice *k) {
  mem_node *p;
  int d;
  return tree_seek(t, k, &p, &d);
}

/* The first entry >= k, or > k when `strict`. */
static mem_node *find_ge(const mem_table *t, const flume__slice *k,
                         int strict) {
  mem_node *n = t->root, *best = NULL;
  while (n) {
    int c = node_cmp(k, n);
    if (c < 0 || (c == 0 && !strict)) {
      best = n;
      if (c == 0) break;
      n = n->link[0];
    } else {
      n = n->link[1];
    }
  }
  return best;
}

/* The last entry < k. */
static mem_node *find_lt(const mem_table *t, const flume__slice *k) {
  mem_node *n = t->root, *best = NULL;
  while (n) {
    if (node_cmp(k, n) > 0) {
      best = n;
      n = n->link[1];
    } else {
      n = n->link[0];
    }
  }
  return best;
}

/* The outermost entry on side d (0: first, 1: last). */
static mem_node *extreme(mem_node *n, int d) {
  if (n)
    while (n->link[d]) n = n->link[d];
  return n;
}

/* The neighbour of n on side d (1: next, 0: previous). */
static mem_node *step(mem_node *n, int d) {
  if (n->link[d]) return extreme(n->link[d], !d);
  mem_node *p = n->parent;
  while (p && p->link[d] == n) {
    n = p;
    p = p->parent;
  }
  return p;
}

/* Store and transactions. */

static int mem_open(const char *path, const flume__store_opts *opts,
                    flume__store **out) {
  /* Nothing to share with another process: nothing to open read-only. */
  if (path != NULL || (opts && opts->readonly)) return FLUME_EINVAL;
  flume__store *s = mem_alloc(sizeof *s);
  if (s == NULL) return FLUME_ENOMEM;
  memset(s, 0, sizeof *s);
  *out = s;
  return 0;
}

/* Frees what a finished write transaction left behind: what it retired if
 * it committed, what it created if it aborted. */
static void txn_release(flume__txn *t) {
  for (size_t i = 0; i < t->nundo; i++) {
    mem_undo *u = &t->undo[i];
    switch (u->op) {
    case MEM_INSERT:
    case MEM_APPEND:
      if (t->aborted) free(u->a);
      break;
    case MEM_REPLACE:
      free(t->aborted ? (void *)u->b.node : u->a);
      break;
    case MEM_DELETE:
      if (!t->aborted) free(u->a);
      break;
    case MEM_CLEAR:
      if (!t->aborted) tree_free(u->a);
      break;
    }
  }
  free(t->undo);
  free(t);
}

static void release_deferred(flume__store *s) {
  while (s->deferred) {
    flume__txn *t = s->deferred;
    s->deferred = t->next;
    txn_release(t);
  }
}

static void mem_close(flume__store *s) {
  assert(s->writer == NULL && s->readers == 0);
  release_deferred(s);
  for (size_t i = 0; i < s->log_len; i++) free(s->log[i]);
  free(s->log);
  for (unsigned i = 0; i < s->ntables; i++) {
    tree_free(s->tables[i].root);
    free(s->tables[i].name);
  }
  free(s);
}

static int mem_txn_begin(flume__store *s, int flags, flume__txn **out) {
  int write = !(flags & FLUME__TXN_READ);
  if (write && s->writer) return FLUME_EBUSY;
  flume__txn *t = mem_alloc(sizeof *t);
  if (t == NULL) return FLUME_ENOMEM;
  memset(t, 0, sizeof *t);
  t->s = s;
  t->write = write;
  t->ntables0 = s->ntables;
  if (write)
    s->writer = t;
  else
    s->readers++;
  *out = t;
  return 0;
}

/* Ends a transaction: a reader just leaves, a writer's garbage is freed now
 * or, while readers might still hold slices into it, when the last leaves. */
static void txn_finish(flume__txn *t) {
  flume__store *s = t->s;
  assert(t->cursors == 0);
  if (!t->write) {
    free(t);
    if (--s->readers == 0) release_deferred(s);
    return;
  }
  s->writer = NULL;
  if (s->readers) {
    t->next = s->deferred;
    s->deferred = t;
  } else {
    txn_release(t);
  }
}

static int mem_txn_commit(flume__txn *t) {
  if (t->write) t->s->commits++;
  txn_finish(t);
  return 0;
}

static void mem_txn_abort(flume__txn *t) {
  flume__store *s = t->s;
  if (t->write) {
    /* Backwards, so each entry finds the structure exactly as it left it. */
    for (size_t i = t->nundo; i-- > 0;) {
      mem_undo *u = &t->undo[i];
      mem_table *tbl = u->tbl ? &s->tables[u->tbl - 1] : NULL;
      switch (u->op) {
      case MEM_INSERT:
        tree_remove(tbl, u->a);
        break;
      case MEM_REPLACE:
        tree_swap(tbl, u->b.node, u->a);
        break;
      case MEM_DELETE:
        tree_insert(tbl, u->a);
        break;
      case MEM_CLEAR:
        assert(tbl->root == NULL);
        tbl->root = u->a;
        tbl->count = u->b.count;
        tbl->gen++;
        break;
      case MEM_APPEND:
        s->log_len--;
        break;
      }
    }
    /* The tables it created are empty again: give their slots back. */
    while (s->ntables > t->ntables0) {
      mem_table *tbl = &s->tables[--s->ntables];
      assert(tbl->root == NULL);
      free(tbl->name);
      tbl->name = NULL;
      tbl->gen++;
    }
    t->aborted = 1;
  }
  txn_finish(t);
}

static int mem_grow(flume__store *s) {
  (void)s;
  return 0;
}

/* Makes room for one more undo entry, before anything changes. */
static int undo_reserve(flume__txn *t) {
  if (t->nundo < t->capundo) return 0;
  size_t cap = t->capundo ? t->capundo * 2 : 64;
  mem_undo *u = mem_realloc(t->undo, cap * sizeof *u);
  if (u == NULL) return FLUME_ENOMEM;
  t->undo = u;
  t->capundo = cap;
  return 0;
}

static void undo_push(flume__txn *t, uint32_t op, uint32_t tbl, void *a,
                      mem_node *b) {
  mem_undo *u = &t->undo[t->nundo++];
  u->a = a;
  u->b.node = b;
  u->op = op;
  u->tbl = tbl;
}

/* The named table behind a handle, or NULL when it names none. */
static mem_table *table_of(flume__txn *t, flume__table tbl) {
  if (tbl == FLUME__TABLE_LOG || tbl > t->s->ntables) return NULL;
  return &t->s->tables[tbl - 1];
}

static int mem_table_open(flume__txn *t, const char *name, int create,
                          flume__table *out) {
  flume__store *s = t->s;
  size_t len = name ? strlen(name) : 0;
  if (len == 0 || len >= MEM_NAME_MAX) return FLUME_EINVAL;
  if (create && !t->write) return FLUME_EINVAL;
  for (unsigned i = 0; i < s->ntables; i++) {
    if (strcmp(s->tables[i].name, name) == 0) {
      *out = i + 1;
      return 0;
    }
  }
  if (!create) return FLUME_ENOTFOUND;
  if (s->ntables == MEM_MAX_TABLES) return FLUME_ELIMIT;
  char *copy = mem_alloc(len + 1);
  if (copy == NULL) return FLUME_ENOMEM;
  memcpy(copy, name, len + 1);
  mem_table *tbl = &s->tables[s->ntables++];
  tbl->name = copy;
  tbl->root = NULL;
  tbl->count = 0;
  *out = s->ntables;
  return 0;
}

static int mem_table_clear(flume__txn *t, flume__table tbl) {
  mem_table *tb = table_of(t, tbl);
  if (tb == NULL || !t->write) return FLUME_EINVAL;
  if (tb->root == NULL) return 0;
  int rc = undo_reserve(t);
  if (rc) return rc;
  /* O(1): the old tree is set aside whole, for commit to free or abort to
   * put back. */
  mem_undo *u = &t->undo[t->nundo++];
  u->a = tb->root;
  u->b.count = tb->count;
  u->op = MEM_CLEAR;
  u->tbl = tbl;
  tb->root = NULL;
  tb->count = 0;
  tb->gen++;
  return 0;
}

static int mem_table_count(flume__txn *t, flume__table tbl, uint64_t *out) {
  if (tbl == FLUME__TABLE_LOG) {
    *out = t->s->log_len;
    return 0;
  }
  mem_table *tb = table_of(t, tbl);
  if (tb == NULL) return FLUME_EINVAL;
  *out = tb->count;
  return 0;
}

/* A log key: 8 bytes holding a native uint64. */
static int log_key(flume__slice key, uint64_t *seq) {
  if (key.size != sizeof *seq) return FLUME_EINVAL;
  memcpy(seq, key.data, sizeof *seq);
  return 0;
}

static int mem_get(flume__txn *t, flume__table tbl, flume__slice key,
                   flume__slice *val) {
  if (tbl == FLUME__TABLE_LOG) {
    uint64_t seq;
    int rc = log_key(key, &seq);
    if (rc) return rc;
    if (seq >= t->s->log_len) return FLUME_ENOTFOUND;
    mem_blob *b = t->s->log[seq];
    *val = (flume__slice){b->data, b->size};
    return 0;
  }
  mem_table *tb = table_of(t, tbl);
  if (tb == NULL || key.size == 0) return FLUME_EINVAL;
  mem_node *n = find_eq(tb, &key);
  if (n == NULL) return FLUME_ENOTFOUND;
  *val = (flume__slice){n->bytes + n->ksize, n->vsize};
  return 0;
}

static int mem_put(flume__txn *t, flume__table tbl, flume__slice key,
                   flume__slice val) {
  mem_table *tb = table_of(t, tbl);
  if (tb == NULL || !t->write || key.size == 0 || key.size > MEM_MAX_KEY)
    return FLUME_EINVAL;
  if (val.size > SIZE_MAX - sizeof(mem_node) - MEM_MAX_KEY) return FLUME_ENOMEM;
  int rc = undo_reserve(t);
  if (rc) return rc;
  mem_node *n = mem_alloc(sizeof *n + key.size + val.size);
  if (n == NULL) return FLUME_ENOMEM;
  n->ksize = (uint16_t)key.size;
  n->vsize = val.size;
  memcpy(n->bytes, key.data, key.size);
  if (val.size) memcpy(n->bytes + key.size, val.data, val.size);
  /* A replacement gets a new node rather than new bytes in the old one:
   * the old value must survive for abort and for slices already handed
   * out. */
  mem_node *p;
  int d;
  mem_node *old = tree_seek(tb, &key, &p, &d);
  if (old) {
    tree_swap(tb, old, n);
    undo_push(t, MEM_REPLACE, tbl, old, n);
  } else {
    tree_attach(tb, p, d, n);
    undo_push(t, MEM_INSERT, tbl, n, NULL);
  }
  return 0;
}

static int mem_del(flume__txn *t, flume__table tbl, flume__slice key) {
  mem_table *tb = table_of(t, tbl);
  if (tb == NULL || !t->write || key.size == 0) return FLUME_EINVAL;
  mem_node *n = find_eq(tb, &key);
  if (n == NULL) return FLUME_ENOTFOUND;
  int rc = undo_reserve(t);
  if (rc) return rc;
  tree_remove(tb, n);
  undo_push(t, MEM_DELETE, tbl, n, NULL);
  return 0;
}

static int mem_log_append(flume__txn *t, int64_t seq, flume__slice val) {
  flume__store *s = t->s;
  if (!t->write || seq < 0 || (uint64_t)seq != s->log_len) return FLUME_EINVAL;
  if (val.size > SIZE_MAX - sizeof(mem_blob)) return FLUME_ENOMEM;
  int rc = undo_reserve(t);
  if (rc) return rc;
  if (s->log_len == s->log_cap) {
    size_t cap = s->log_cap ? s->log_cap * 2 : 1024;
    mem_blob **log = mem_realloc(s->log, cap * sizeof *log);
    if (log == NULL) return FLUME_ENOMEM;
    s->log = log;
    s->log_cap = cap;
  }
  mem_blob *b = mem_alloc(sizeof *b + val.size);
  if (b == NULL) return FLUME_ENOMEM;
  b->seq = (uint64_t)seq;
  b->size = val.size;
  if (val.size) memcpy(b->data, val.data, val.size);
  s->log[s->log_len++] = b;
  undo_push(t, MEM_APPEND, 0, b, NULL);
  return 0;
}

static int mem_log_last(flume__txn *t, int64_t *seq) {
  *seq = (int64_t)t->s->log_len - 1;
  return 0;
}

/* Cursors. */

static int mem_cursor_open(flume__txn *t, flume__table tbl,
                           flume__cursor **out) {
  mem_table *tb = NULL;
  if (tbl != FLUME__TABLE_LOG && (tb = table_of(t, tbl)) == NULL)
    return FLUME_EINVAL;
  flume__cursor *c = mem_alloc(sizeof *c);
  if (c == NULL) return FLUME_ENOMEM;
  c->txn = t;
  c->tbl = tb;
  c->node = NULL;
  c->gen = 0;
  c->past_end = 0;
  c->seq = -1;
  t->cursors++;
  *out = c;
  return 0;
}

static void mem_cursor_close(flume__cursor *c) {
  c->txn->cursors--;
  free(c);
}

static int log_cursor_get(flume__cursor *c, int op, flume__slice *key,
                          flume__slice *val) {
  flume__store *s = c->txn->s;
  int64_t len = (int64_t)s->log_len;
  int64_t at;
  uint64_t want;
  int rc;
  switch (op) {
  case FLUME__FIRST:
    at = 0;
    break;
  case FLUME__LAST:
    at = len - 1;
    break;
  case FLUME__NEXT:
    at = c->seq + 1; /* from unpositioned (-1): the first, as in LMDB */
    break;
  case FLUME__PREV:
    /* From unpositioned: the last, as in LMDB. An abort may have cut the
     * log below the cursor. */
    at = c->seq < 0 || c->seq > len ? len - 1 : c->seq - 1;
    break;
  case FLUME__SET:
  case FLUME__SET_RANGE:
    if ((rc = log_key(*key, &want))) return rc;
    if (want >= (uint64_t)len) {
      c->seq = len; /* past the end, as LMDB leaves it */
      return FLUME_ENOTFOUND;
    }
    at = (int64_t)want;
    break;
  default:
    return FLUME_EINVAL;
  }
  if (at < 0 || at >= len) return FLUME_ENOTFOUND;
  c->seq = at;
  mem_blob *b = s->log[at];
  /* The key points into the entry, so it outlives the cursor's moves. */
  *key = (flume__slice){&b->seq, sizeof b->seq};
  if (val) *val = (flume__slice){b->data, b->size};
  return 0;
}

static int mem_cursor_get(flume__cursor *c, int op, flume__slice *key,
                          flume__slice *val) {
  if (c->tbl == NULL) return log_cursor_get(c, op, key, val);
  mem_table *tb = c->tbl;
  mem_node *n = c->node, *to;
  int d = op == FLUME__NEXT;
  int miss = 0; /* a failed SET: positioned, yet ENOTFOUND */
  switch (op) {
  case FLUME__FIRST:
  case FLUME__LAST:
    to = extreme(tb->root, op == FLUME__LAST);
    c->past_end = 0;
    break;
  case FLUME__NEXT:
  case FLUME__PREV:
    if (n == NULL) {
      to = c->past_end && d ? NULL : extreme(tb->root, !d);
    } else if (c->gen == tb->gen) {
      to = step(n, d);
    } else {
      /* n may have left the tree: find its neighbours by its key. */
      flume__slice k = {n->bytes, n->ksize};
      to = d ? find_ge(tb, &k, 1) : find_lt(tb, &k);
    }
    if (to == NULL) {
      /* Stay on the last entry reached, as LMDB does at either end, but
       * re-seek next time if it left the tree meanwhile. */
      return FLUME_ENOTFOUND;
    }
    break;
  case FLUME__SET:
  case FLUME__SET_RANGE:
    if (key->size == 0) return FLUME_EINVAL;
    /* A failed seek still moves the cursor where LMDB's goes: to the first
     * entry >= key (then NEXT gives the one after it, PREV the one before)
     * or past the end (NEXT: ENOTFOUND, PREV: the last entry). store.h
     * does not promise it; matching it keeps the backends alike. */
    to = find_ge(tb, key, 0);
    miss = op == FLUME__SET && to && node_cmp(key, to) != 0;
    c->past_end = to == NULL;
    break;
  default:
    return FLUME_EINVAL;
  }
  if (to == NULL) {
    c->node = NULL;
    return FLUME_ENOTFOUND;
  }
  c->node = to;
  c->gen = tb->gen;
  c->past_end = 0;
  if (miss) return FLUME_ENOTFOUND;
  *key = (flume__slice){to->bytes, to->ksize};
  if (val) *val = (flume__slice){to->bytes + to->ksize, to->vsize};
  return 0;
}

/* Stat, listing, copy, verify. */

/* Bytes a tree's entries take: their nodes, keys and values. */
static uint64_t tree_bytes(const mem_table *t) {
  uint64_t bytes = 0;
  for (mem_node *n = extreme(t->root, 0); n; n = step(n, 1))
    bytes += sizeof *n + n->ksize + n->vsize;
  return bytes;
}

static uint64_t log_bytes(const flume__store *s) {
  uint64_t bytes = 0;
  for (size_t i = 0; i < s->log_len; i++)
    bytes += sizeof *s->log[i] + s->log[i]->size;
  return bytes;
}

static int mem_stat(flume__store *s, flume__store_stat *out) {
  memset(out, 0, sizeof *out);
  out->used = log_bytes(s);
  for (unsigned i = 0; i < s->ntables; i++)
    out->used += tree_bytes(&s->tables[i]);
  out->txn_id = s->commits;
  out->readers = (unsigned)s->readers;
  return 0;
}

static int mem_table_stat(flume__txn *t, flume__table tbl,
                          flume__table_stat *out) {
  if (tbl == FLUME__TABLE_LOG) {
    out->entries = t->s->log_len;
    out->bytes = log_bytes(t->s);
    return 0;
  }
  mem_table *tb = table_of(t, tbl);
  if (tb == NULL) return FLUME_EINVAL;
  out->entries = tb->count;
  out->bytes = tree_bytes(tb);
  return 0;
}

static int table_cmp(const void *a, const void *b) {
  return strcmp((*(mem_table *const *)a)->name,
                (*(mem_table *const *)b)->name);
}

/* The store's tables in byte order of their names, as LMDB lists them;
 * returns how many. */
static unsigned sorted_tables(flume__store *s, mem_table **out) {
  for (unsigned i = 0; i < s->ntables; i++) out[i] = &s->tables[i];
  qsort(out, s->ntables, sizeof *out, table_cmp);
  return s->ntables;
}

static int mem_table_list(flume__txn *t, flume__table_fn fn, void *ctx) {
  mem_table *tables[MEM_MAX_TABLES];
  unsigned n = sorted_tables(t->s, tables);
  for (unsigned i = 0; i < n; i++) {
    int rc = fn(ctx, tables[i]->name);
    if (rc) return rc;
  }
  return 0;
}

static int mem_copy(flume__store *s, const char *dest, int compact,
                    flume__copy_fn progress, void *ctx) {
  (void)s, (void)dest, (void)compact, (void)progress, (void)ctx;
  return FLUME_EINVAL; /* no file to copy */
}

/* Nothing is sealed in memory: the walk counts, and finds what could only
 * be a bug of ours (the log's seqs out of step). */
static int mem_verify(flume__store *s, flume__verify_fn fn, void *ctx) {
  uint64_t total = s->log_len;
  fn(ctx, FLUME__VERIFY_TABLE, "log", 0);
  for (size_t i = 0; i < s->log_len; i++)
    if (s->log[i]->seq != i) {
      fn(ctx, FLUME__VERIFY_DAMAGED, "the log's seqs are out of step", i);
      break;
    }
  mem_table *tables[MEM_MAX_TABLES];
  unsigned n = sorted_tables(s, tables);
  for (unsigned i = 0; i < n; i++) {
    fn(ctx, FLUME__VERIFY_TABLE, tables[i]->name, 0);
    total += tables[i]->count;
  }
  fn(ctx, FLUME__VERIFY_DONE, "", total);
  return 0;
}

#ifdef FLUME_TEST_HOOKS
/* Checks one subtree: links, order, balance. Returns its height, or -1. */
static int check_node(const mem_node *n, const mem_node *parent,
                      uint64_t *count) {
  if (n == NULL) return 0;
  if (n->parent != parent) return -1;
  if (n->ksize == 0 || n->ksize > MEM_MAX_KEY) return -1;
  for (int d = 0; d < 2; d++) {
    const mem_node *c = n->link[d];
    if (c == NULL) continue;
    int cmp = key_cmp(c->bytes, c->ksize, n->bytes, n->ksize);
    if (d ? cmp <= 0 : cmp >= 0) return -1;
  }
  int hl = check_node(n->link[0], n, count);
  int hr = check_node(n->link[1], n, count);
  if (hl < 0 || hr < 0 || hr - hl != n->bal) return -1;
  (*count)++;
  return 1 + (hl > hr ? hl : hr);
}

/* Test-only: verifies every table's tree (parent links, key order across
 * each node's children, balance factors, count) and the log's seqs.
 * O(n). Returns 0 when all is well. */
int flume__test_memory_check(flume__store *s) {
  for (unsigned i = 0; i < s->ntables; i++) {
    uint64_t count = 0;
    if (check_node(s->tables[i].root, NULL, &count) < 0) return -1;
    if (count != s->tables[i].count) return -1;
    /* The local check above misses a key out of order with a distant
     * ancestor; a full in-order walk catches it. */
    mem_node *n = extreme(s->tables[i].root, 0), *m;
    for (; n && (m = step(n, 1)) != NULL; n = m)
      if (key_cmp(n->bytes, n->ksize, m->bytes, m->ksize) >= 0) return -1;
  }
  for (size_t i = 0; i < s->log_len; i++)
    if (s->log[i]->seq != i) return -1;
  return 0;
}
#endif

/* A memory store has no other process: its writer is this one. */
static int mem_writer_alive(flume__store *s) {
  (void)s;
  return 1;
}

static uint64_t mem_txn_snapshot(flume__txn *t) {
  (void)t;
  return 0; /* nothing else writes a memory store */
}

const flume__store_ops flume__store_memory = {
    .name = "memory",
    .inline_writes = 1,
    .open = mem_open,
    .close = mem_close,
    .txn_begin = mem_txn_begin,
    .txn_commit = mem_txn_commit,
    .txn_abort = mem_txn_abort,
    .grow = mem_grow,
    .stat = mem_stat,
    .txn_snapshot = mem_txn_snapshot,
    .writer_alive = mem_writer_alive,
    .copy = mem_copy,
    .verify = mem_verify,
    .table_open = mem_table_open,
    .table_clear = mem_table_clear,
    .table_count = mem_table_count,
    .table_stat = mem_table_stat,
    .table_list = mem_table_list,
    .get = mem_get,
    .put = mem_put,
    .del = mem_del,
    .log_append = mem_log_append,
    .log_last = mem_log_last,
    .cursor_open = mem_cursor_open,
    .cursor_close = mem_cursor_close,
    .cursor_get = mem_cursor_get,
};
