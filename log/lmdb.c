/*
 * The LMDB backend: one environment per database folder holding the log
 * (an MDB_INTEGERKEY table written with MDB_APPEND) and every named table.
 *
 * The write transaction runs on the runtime's writer thread while read
 * transactions run on the loop thread; LMDB's MVCC makes that safe. What
 * LMDB does not do for us:
 *  - keep a second process from writing: flock() on `flume.lock`;
 *  - grow the map: mdb_env_set_mapsize() needs every transaction of the
 *    process finished, so all transactions hold `txn_lock` shared and grow()
 *    takes it exclusively;
 *  - serialise mdb_dbi_open() between threads: `dbi_mutex`.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flume.h"
#include "store.h"

#define LMDB_MAX_TABLES 256
#define LMDB_DEFAULT_MAP ((size_t)256 << 20)
#define LMDB_NAME_MAX 128

typedef struct lmdb_table {
  MDB_dbi dbi;               /* LMDB's handle */
  char name[LMDB_NAME_MAX];  /* the table's name; "" for the log */
  const flume__txn *opener;  /* write txn that opened it, until it commits */
} lmdb_table;

struct flume__store {
  MDB_env *env;                  /* the environment */
  int lock_fd;                   /* flume.lock, flock()ed exclusively */
  size_t map_size;               /* current map size in bytes */
  pthread_rwlock_t txn_lock;     /* shared by transactions, exclusive: grow */
  pthread_mutex_t dbi_mutex;     /* guards mdb_dbi_open and `tables` */
  lmdb_table tables[LMDB_MAX_TABLES + 1]; /* by handle; 0 is the log */
  unsigned ntables;              /* handles in use, the log included */
  flume__txn *spare;             /* a reset read transaction, for reuse */
};

struct flume__txn {
  flume__store *store;  /* owner */
  MDB_txn *txn;         /* LMDB's transaction */
  int write;            /* 1 for the write transaction */
  int64_t log_last;     /* the log's last seq, cached; -2 when unknown */
  int opened;           /* it opened a table (read transactions) */
};

struct flume__cursor {
  flume__txn *txn;      /* owner */
  MDB_cursor *cur;      /* LMDB's cursor */
};

static int map_err(int rc) {
  switch (rc) {
  case MDB_SUCCESS:
    return 0;
  case MDB_NOTFOUND:
    return FLUME_ENOTFOUND;
  case MDB_KEYEXIST:
  case MDB_BAD_VALSIZE:
  case MDB_INCOMPATIBLE:
  case EINVAL:
    return FLUME_EINVAL;
  case MDB_MAP_FULL:
    return FLUME_EMAPFULL;
  case MDB_DBS_FULL:
  case MDB_TXN_FULL:
  case MDB_CURSOR_FULL:
  case MDB_PAGE_FULL:
  case MDB_TLS_FULL:
    return FLUME_ELIMIT;
  case MDB_READERS_FULL:
    return FLUME_EBUSY;
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
  case MDB_INVALID:
  case MDB_BAD_DBI:
    return FLUME_ECORRUPT;
  case MDB_VERSION_MISMATCH:
    return FLUME_EFORMAT;
  case ENOSPC:
    return FLUME_ENOSPC;
  case EIO:
    return FLUME_EIO;
  case ENOMEM:
    return FLUME_ENOMEM;
  default:
    return rc > 0 ? -rc : FLUME_EIO;
  }
}

static int lock_folder(const char *path, int *fd_out) {
  char file[4096];
  if (snprintf(file, sizeof file, "%s/flume.lock", path) >= (int)sizeof file)
    return FLUME_EINVAL;
  int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    return e == EWOULDBLOCK ? FLUME_ELOCKED : -e;
  }
  *fd_out = fd;
  return 0;
}

static size_t file_size(const char *path) {
  char file[4096];
  struct stat st;
  snprintf(file, sizeof file, "%s/data.mdb", path);
  return stat(file, &st) == 0 ? (size_t)st.st_size : 0;
}

static void store_free(flume__store *s) {
  if (s->spare) {
    mdb_txn_abort(s->spare->txn);
    free(s->spare);
  }
  if (s->env) mdb_env_close(s->env);
  if (s->lock_fd >= 0) close(s->lock_fd);
  pthread_rwlock_destroy(&s->txn_lock);
  pthread_mutex_destroy(&s->dbi_mutex);
  free(s);
}

static int lmdb_open(const char *path, const flume__store_opts *opts,
                     flume__store **out) {
  if (path == NULL || *path == '\0') return FLUME_EINVAL;
  if (mkdir(path, 0755) != 0 && errno != EEXIST) return -errno;

  flume__store *s = calloc(1, sizeof *s);
  if (s == NULL) return FLUME_ENOMEM;
  s->lock_fd = -1;
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* A steady stream of loop-thread reads must not starve grow(). */
  pthread_rwlockattr_setkind_np(&attr,
                                PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&s->txn_lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  pthread_mutex_init(&s->dbi_mutex, NULL);

  int rc = lock_folder(path, &s->lock_fd);
  if (rc) goto fail;

  size_t map = opts && opts->map_size ? opts->map_size : LMDB_DEFAULT_MAP;
  size_t have = file_size(path);
  while (map < have + have / 2) map *= 2;
  s->map_size = map;

  unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
  if (opts && !opts->sync) flags |= MDB_NOSYNC;
  rc = map_err(mdb_env_create(&s->env));
  if (rc) goto fail;
  if ((rc = map_err(mdb_env_set_maxdbs(s->env, LMDB_MAX_TABLES + 1))) ||
      (rc = map_err(mdb_env_set_mapsize(s->env, map))))
    goto fail;
  rc = mdb_env_open(s->env, path, flags, 0644);
  if (rc) {
    rc = map_err(rc);
    goto fail;
  }
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  s->map_size = info.me_mapsize;

  MDB_txn *txn;
  if ((rc = map_err(mdb_txn_begin(s->env, NULL, 0, &txn)))) goto fail;
  rc = mdb_dbi_open(txn, "log", MDB_CREATE | MDB_INTEGERKEY, &s->tables[0].dbi);
  if (rc == 0) rc = mdb_txn_commit(txn);
  else mdb_txn_abort(txn);
  if ((rc = map_err(rc))) goto fail;
  s->ntables = 1;
  *out = s;
  return 0;

fail:
  store_free(s);
  return rc;
}

static void lmdb_close(flume__store *s) { store_free(s); }

static int lmdb_txn_begin(flume__store *s, int flags, flume__txn **out) {
  if ((flags & FLUME__TXN_READ) && s->spare) {
    /* Renewing a reset read transaction skips LMDB's allocation and its
     * reader-table lock: reads are many and short. Only the loop thread
     * begins read transactions, so the spare needs no lock of its own. */
    flume__txn *t = s->spare;
    s->spare = NULL;
    pthread_rwlock_rdlock(&s->txn_lock);
    if (mdb_txn_renew(t->txn) == MDB_SUCCESS) {
      t->log_last = -2;
      t->opened = 0;
      *out = t;
      return 0;
    }
    pthread_rwlock_unlock(&s->txn_lock);
    mdb_txn_abort(t->txn);
    free(t);
  }
  flume__txn *t = malloc(sizeof *t);
  if (t == NULL) return FLUME_ENOMEM;
  t->store = s;
  t->write = !(flags & FLUME__TXN_READ);
  t->log_last = -2;
  t->opened = 0;
  pthread_rwlock_rdlock(&s->txn_lock);
  int rc = mdb_txn_begin(s->env, NULL, t->write ? 0 : MDB_RDONLY, &t->txn);
  if (rc == MDB_MAP_RESIZED) {
    /* Another process grew the map: adopt its size, which needs every
     * transaction of ours finished, hence the exclusive lock. */
    pthread_rwlock_unlock(&s->txn_lock);
    pthread_rwlock_wrlock(&s->txn_lock);
    mdb_env_set_mapsize(s->env, 0);
    pthread_rwlock_unlock(&s->txn_lock);
    pthread_rwlock_rdlock(&s->txn_lock);
    rc = mdb_txn_begin(s->env, NULL, t->write ? 0 : MDB_RDONLY, &t->txn);
  }
  if (rc) {
    pthread_rwlock_unlock(&s->txn_lock);
    free(t);
    return map_err(rc);
  }
  *out = t;
  return 0;
}

/* Forgets the tables a failed write transaction opened: LMDB closes them. */
static void forget_tables(flume__txn *t, int keep) {
  flume__store *s = t->store;
  pthread_mutex_lock(&s->dbi_mutex);
  for (unsigned i = 1; i < s->ntables; i++) {
    if (s->tables[i].opener != t) continue;
    s->tables[i].opener = NULL;
    if (!keep) s->tables[i].name[0] = '\0';
  }
  pthread_mutex_unlock(&s->dbi_mutex);
}

static int lmdb_txn_commit(flume__txn *t) {
  flume__store *s = t->store;
  int rc = mdb_txn_commit(t->txn);
  if (t->write) forget_tables(t, rc == 0);
  pthread_rwlock_unlock(&s->txn_lock);
  free(t);
  return map_err(rc);
}

static void lmdb_txn_abort(flume__txn *t) {
  flume__store *s = t->store;
  if (!t->write && !t->opened && s->spare == NULL) {
    /* A reset transaction holds no snapshot: grow() may remap under it. */
    mdb_txn_reset(t->txn);
    s->spare = t;
    pthread_rwlock_unlock(&s->txn_lock);
    return;
  }
  /* LMDB closes the tables a transaction opened when it aborts, even a
   * read-only one; committing a read-only transaction keeps them. */
  if (!t->write && t->opened) mdb_txn_commit(t->txn);
  else mdb_txn_abort(t->txn);
  if (t->write) forget_tables(t, 0);
  pthread_rwlock_unlock(&s->txn_lock);
  free(t);
}

static int lmdb_grow(flume__store *s) {
  pthread_rwlock_wrlock(&s->txn_lock);
  size_t next = s->map_size * 2;
  int rc = next < s->map_size ? FLUME_ENOSPC
                              : map_err(mdb_env_set_mapsize(s->env, next));
  if (rc == 0) s->map_size = next;
  pthread_rwlock_unlock(&s->txn_lock);
  return rc;
}

static int lmdb_table_open(flume__txn *t, const char *name, int create,
                           flume__table *out) {
  flume__store *s = t->store;
  size_t len = strlen(name);
  if (len == 0 || len >= LMDB_NAME_MAX) return FLUME_EINVAL;
  if (create && !t->write) return FLUME_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&s->dbi_mutex);
  unsigned slot = 0;
  for (unsigned i = 1; i < s->ntables; i++) {
    if (strcmp(s->tables[i].name, name) == 0) {
      *out = i;
      goto done;
    }
    if (slot == 0 && s->tables[i].name[0] == '\0') slot = i;
  }
  if (slot == 0) {
    if (s->ntables > LMDB_MAX_TABLES) {
      rc = FLUME_ELIMIT;
      goto done;
    }
    slot = s->ntables;
  }
  /* Table names live beside "log" in LMDB's main table; prefix them so no
   * name can collide with the log. */
  char full[LMDB_NAME_MAX + 2];
  snprintf(full, sizeof full, "t:%s", name);
  MDB_dbi dbi;
  rc = map_err(mdb_dbi_open(t->txn, full, create ? MDB_CREATE : 0, &dbi));
  if (rc) goto done;
  s->tables[slot].dbi = dbi;
  memcpy(s->tables[slot].name, name, len + 1);
  s->tables[slot].opener = t->write ? t : NULL;
  if (!t->write) t->opened = 1;
  if (slot == s->ntables) s->ntables++;
  *out = slot;
done:
  pthread_mutex_unlock(&s->dbi_mutex);
  return rc;
}

static MDB_dbi dbi_of(flume__txn *t, flume__table tbl) {
  /* Handles come from table_open; anything else is a bug of ours. */
  return tbl <= LMDB_MAX_TABLES ? t->store->tables[tbl].dbi : (MDB_dbi)-1;
}

static int lmdb_table_clear(flume__txn *t, flume__table tbl) {
  if (tbl == FLUME__TABLE_LOG) return FLUME_EINVAL;
  return map_err(mdb_drop(t->txn, dbi_of(t, tbl), 0));
}

static int lmdb_table_count(flume__txn *t, flume__table tbl, uint64_t *out) {
  MDB_stat st;
  int rc = map_err(mdb_stat(t->txn, dbi_of(t, tbl), &st));
  if (rc == 0) *out = st.ms_entries;
  return rc;
}

static int lmdb_get(flume__txn *t, flume__table tbl, flume__slice key,
                    flume__slice *val) {
  MDB_val k = {key.size, (void *)key.data}, v;
  int rc = map_err(mdb_get(t->txn, dbi_of(t, tbl), &k, &v));
  if (rc == 0) *val = (flume__slice){v.mv_data, v.mv_size};
  return rc;
}

static int lmdb_put(flume__txn *t, flume__table tbl, flume__slice key,
                    flume__slice val) {
  if (tbl == FLUME__TABLE_LOG || key.size == 0 ||
      key.size > (size_t)mdb_env_get_maxkeysize(t->store->env))
    return FLUME_EINVAL;
  MDB_val k = {key.size, (void *)key.data}, v = {val.size, (void *)val.data};
  return map_err(mdb_put(t->txn, dbi_of(t, tbl), &k, &v, 0));
}

static int lmdb_del(flume__txn *t, flume__table tbl, flume__slice key) {
  if (tbl == FLUME__TABLE_LOG) return FLUME_EINVAL;
  MDB_val k = {key.size, (void *)key.data};
  return map_err(mdb_del(t->txn, dbi_of(t, tbl), &k, NULL));
}

static int lmdb_log_last(flume__txn *t, int64_t *seq) {
  if (t->log_last == -2) {
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, dbi_of(t, FLUME__TABLE_LOG), &c);
    if (rc) return map_err(rc);
    MDB_val k, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) t->log_last = -1;
    else if (rc) return map_err(rc);
    else if (k.mv_size != sizeof(size_t)) return FLUME_ECORRUPT;
    else {
      size_t last;
      memcpy(&last, k.mv_data, sizeof last);
      t->log_last = (int64_t)last;
    }
  }
  *seq = t->log_last;
  return 0;
}

static int lmdb_log_append(flume__txn *t, int64_t seq, flume__slice val) {
  int64_t last = -1;
  int rc = lmdb_log_last(t, &last);
  if (rc) return rc;
  if (seq != last + 1) return FLUME_EINVAL;
  size_t key = (size_t)seq;
  MDB_val k = {sizeof key, &key}, v = {val.size, (void *)val.data};
  rc = map_err(mdb_put(t->txn, dbi_of(t, FLUME__TABLE_LOG), &k, &v,
                       MDB_APPEND));
  if (rc == 0) t->log_last = seq;
  return rc;
}

static int lmdb_cursor_open(flume__txn *t, flume__table tbl,
                            flume__cursor **out) {
  flume__cursor *c = malloc(sizeof *c);
  if (c == NULL) return FLUME_ENOMEM;
  c->txn = t;
  int rc = map_err(mdb_cursor_open(t->txn, dbi_of(t, tbl), &c->cur));
  if (rc) {
    free(c);
    return rc;
  }
  *out = c;
  return 0;
}

static void lmdb_cursor_close(flume__cursor *c) {
  mdb_cursor_close(c->cur);
  free(c);
}

static int lmdb_cursor_get(flume__cursor *c, int op, flume__slice *key,
                           flume__slice *val) {
  static const MDB_cursor_op ops[] = {
      [FLUME__FIRST] = MDB_FIRST, [FLUME__LAST] = MDB_LAST,
      [FLUME__NEXT] = MDB_NEXT,   [FLUME__PREV] = MDB_PREV,
      [FLUME__SET_RANGE] = MDB_SET_RANGE, [FLUME__SET] = MDB_SET_KEY};
  if (op < FLUME__FIRST || op > FLUME__SET) return FLUME_EINVAL;
  MDB_val k = {0, NULL}, v;
  if (op == FLUME__SET || op == FLUME__SET_RANGE) {
    if (key->size == 0) return FLUME_EINVAL;
    k.mv_size = key->size;
    k.mv_data = (void *)key->data;
  }
  int rc = map_err(mdb_cursor_get(c->cur, &k, &v, ops[op]));
  if (rc) return rc;
  *key = (flume__slice){k.mv_data, k.mv_size};
  if (val) *val = (flume__slice){v.mv_data, v.mv_size};
  return 0;
}

const flume__store_ops flume__store_lmdb = {
    .name = "lmdb",
    .inline_writes = 0,
    .open = lmdb_open,
    .close = lmdb_close,
    .txn_begin = lmdb_txn_begin,
    .txn_commit = lmdb_txn_commit,
    .txn_abort = lmdb_txn_abort,
    .grow = lmdb_grow,
    .table_open = lmdb_table_open,
    .table_clear = lmdb_table_clear,
    .table_count = lmdb_table_count,
    .get = lmdb_get,
    .put = lmdb_put,
    .del = lmdb_del,
    .log_append = lmdb_log_append,
    .log_last = lmdb_log_last,
    .cursor_open = lmdb_cursor_open,
    .cursor_close = lmdb_cursor_close,
    .cursor_get = lmdb_cursor_get,
};
