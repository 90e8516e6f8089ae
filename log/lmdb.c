/*
 * The LMDB backend: one environment per database folder holding the log
 * (an MDB_INTEGERKEY table written with MDB_APPEND) and every named table.
 *
 * The write transaction runs on the runtime's writer thread while read
 * transactions run on the loop thread; LMDB's MVCC makes that safe. What
 * LMDB does not do for us:
 *  - keep a second process from writing: flock() on `flume.lock`, plus an
 *    open-file-description write lock on it, which readers can test
 *    without taking (writer_alive: F_OFD_GETLK; a flock cannot be tested
 *    without taking it, and a reader holding it for a moment would make a
 *    starting writer fail with ELOCKED);
 *  - grow the map: mdb_env_set_mapsize() needs every transaction of the
 *    process finished, so all transactions hold `txn_lock` shared and grow()
 *    takes it exclusively;
 *  - serialise mdb_dbi_open() between threads: `dbi_mutex`;
 *  - notice damage: LMDB trusts its file. The checks at open, the seal of
 *    every entry and the walk of verify are in log/lmdb_file.c;
 *  - clear the reader slots of killed processes (they pin old pages, so the
 *    file grows): mdb_reader_check() at open, on grow and every
 *    READER_CHECK_EVERY write transactions;
 *  - tell a full disk from an I/O error: a short write is EIO to LMDB;
 *  - let readers in other processes follow a writer: a read-only store
 *    (opts.readonly) takes no lock and adopts the map the writer grew.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "flume.h"
#include "lmdb_file.h"
#include "store.h"

#define LMDB_MAX_TABLES 256
#define LMDB_DEFAULT_MAP ((size_t)256 << 20)
#define LMDB_NAME_MAX FLUME__LMDB_NAME_MAX
#define SEAL_SIZE FLUME__LMDB_SEAL_SIZE
#define READER_CHECK_EVERY 32 /* write transactions between reader checks */
/* Free space under which a failed write is taken for a full disk. */
#define FULL_DISK_BYTES ((unsigned long long)4 << 20)

typedef struct lmdb_table {
  MDB_dbi dbi;               /* LMDB's handle */
  char name[LMDB_NAME_MAX];  /* the table's name; "" for the log */
  const flume__txn *opener;  /* write txn that opened it, until it commits */
} lmdb_table;

struct flume__store {
  MDB_env *env;                  /* the environment */
  int lock_fd;                   /* flume.lock, flock()ed exclusively; -1
                                    for a read-only store, which takes no
                                    lock */
  int readonly;                  /* opened with opts.readonly */
  size_t map_size;               /* current map size in bytes */
  pthread_rwlock_t txn_lock;     /* shared by transactions, exclusive: grow */
  pthread_mutex_t dbi_mutex;     /* guards mdb_dbi_open and `tables` */
  lmdb_table tables[LMDB_MAX_TABLES + 1]; /* by handle; 0 is the log */
  unsigned ntables;              /* handles in use, the log included */
  flume__txn *spare;             /* a reset read transaction, for reuse */
  unsigned writes;               /* write transactions begun, for checks */
  char path[4096];               /* the folder, for messages */
};

struct flume__txn {
  flume__store *store;  /* owner */
  MDB_txn *txn;         /* LMDB's transaction */
  int write;            /* 1 for the write transaction */
  int64_t log_last;     /* the log's last seq, cached; -2 when unknown */
  int opened;           /* it opened a table (read transactions) */
  int own;              /* FLUME__TXN_OWN: never the spare */
  unsigned char *buf;   /* scratch for sealing values (write txn) */
  size_t buf_cap;       /* its size in bytes */
};

struct flume__cursor {
  flume__txn *txn;      /* owner */
  MDB_cursor *cur;      /* LMDB's cursor */
  flume__table tbl;     /* its table */
};
/* ---- the store ---------------------------------------------------------- */

static int lock_folder(const char *path, int *fd_out) {
  char file[4200];
  if (snprintf(file, sizeof file, "%s/flume.lock", path) >= (int)sizeof file)
    return FLUME_EINVAL;
  int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    return e == EWOULDBLOCK ? FLUME_ELOCKED : -e;
  }
#ifdef F_OFD_SETLK
  /* The sign of a live writer for readers (writer_alive). */
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    int e = errno;
    close(fd);
    return e == EAGAIN || e == EACCES ? FLUME_ELOCKED : -e;
  }
#endif
  *fd_out = fd;
  return 0;
}

/* Whether a process holds the folder's write lock: 1, 0, or -errno. */
static int lmdb_writer_alive(flume__store *s) {
  if (!s->readonly) return 1; /* this process is the writer */
  char file[4200];
  snprintf(file, sizeof file, "%s/flume.lock", s->path);
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  int alive;
#ifdef F_OFD_GETLK
  struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
  alive = fcntl(fd, F_OFD_GETLK, &fl) != 0 ? -errno : fl.l_type != F_UNLCK;
#else
  /* Taken for a moment: a writer starting right then gets ELOCKED. */
  alive = flock(fd, LOCK_SH | LOCK_NB) != 0;
#endif
  close(fd);
  return alive;
}

static size_t file_size(const char *path) {
  char file[4200];
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
  int ro = opts && opts->readonly;
  if (path == NULL || *path == '\0') return FLUME_EINVAL;
  if (strlen(path) >= sizeof((flume__store *)0)->path) return FLUME_EINVAL;
  if (!ro && mkdir(path, 0755) != 0 && errno != EEXIST) return -errno;

  flume__store *s = calloc(1, sizeof *s);
  if (s == NULL) return FLUME_ENOMEM;
  s->lock_fd = -1;
  s->readonly = ro;
  strcpy(s->path, path);
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* A steady stream of loop-thread reads must not starve grow(). */
  pthread_rwlockattr_setkind_np(&attr,
                                PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&s->txn_lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  pthread_mutex_init(&s->dbi_mutex, NULL);

  /* A reader takes no lock: LMDB's reader table lets any number of
   * processes read beside the one that writes. */
  int rc = ro ? 0 : lock_folder(path, &s->lock_fd);
  if (rc) goto fail;

  /* A reader maps what the file says (0); the writer's map grows on. */
  size_t map = 0;
  if (!ro) {
    map = opts && opts->map_size ? opts->map_size : LMDB_DEFAULT_MAP;
    size_t have = file_size(path);
    while (map < have + have / 2) map *= 2;
  }

  unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
  if (!ro && opts && !opts->sync) flags |= MDB_NOSYNC;
  rc = flume__lmdb_open_env(s->path, ro, map, flags, LMDB_MAX_TABLES + 2,
                            &s->env);
  if (rc) goto fail;
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  s->map_size = info.me_mapsize;

  MDB_txn *txn;
  if ((rc = flume__lmdb_map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))))
    goto fail;
  rc = mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &s->tables[0].dbi);
  if (rc == 0)
    rc = mdb_txn_commit(txn); /* keeps the handle */
  else
    mdb_txn_abort(txn);
  if ((rc = flume__lmdb_map_err(rc))) goto fail;
  s->ntables = 1;
  *out = s;
  return 0;

fail:
  store_free(s);
  return rc;
}

static void lmdb_close(flume__store *s) { store_free(s); }

/* After MDB_MAP_RESIZED: another process grew the map; adopt its size,
 * which needs every transaction of ours finished, hence the exclusive lock.
 * Called and returns with txn_lock held shared. */
static void adopt_map(flume__store *s) {
  pthread_rwlock_unlock(&s->txn_lock);
  pthread_rwlock_wrlock(&s->txn_lock);
  if (mdb_env_set_mapsize(s->env, 0) == 0) {
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
  }
  pthread_rwlock_unlock(&s->txn_lock);
  pthread_rwlock_rdlock(&s->txn_lock);
}

/* A bare LMDB read transaction for the walks below the store's own
 * (verify, copy), with txn_lock held shared until the caller releases it
 * after its abort. */
static int read_begin(flume__store *s, MDB_txn **txn) {
  pthread_rwlock_rdlock(&s->txn_lock);
  int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
  if (rc == MDB_MAP_RESIZED) {
    adopt_map(s);
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
  }
  if (rc) pthread_rwlock_unlock(&s->txn_lock);
  return flume__lmdb_map_err(rc);
}

static int lmdb_txn_begin(flume__store *s, int flags, flume__txn **out) {
  flume__lmdb_forget_detail(); /* read right after the read that failed */
  if (s->readonly && !(flags & FLUME__TXN_READ)) return -EROFS;
  if ((flags & FLUME__TXN_READ) && !(flags & FLUME__TXN_OWN) && s->spare) {
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
  t->own = (flags & FLUME__TXN_OWN) != 0;
  t->log_last = -2;
  t->opened = 0;
  t->buf = NULL;
  t->buf_cap = 0;
  if (t->write && ++s->writes % READER_CHECK_EVERY == 0) {
    /* A reader killed mid-read keeps its slot, and the pages of its old
     * snapshot can never be reused: the file grows. Only the writer
     * counts `writes`, so this needs no lock. */
    int dead;
    mdb_reader_check(s->env, &dead);
  }
  pthread_rwlock_rdlock(&s->txn_lock);
  int rc = mdb_txn_begin(s->env, NULL, t->write ? 0 : MDB_RDONLY, &t->txn);
  if (rc == MDB_MAP_RESIZED) {
    adopt_map(s);
    rc = mdb_txn_begin(s->env, NULL, t->write ? 0 : MDB_RDONLY, &t->txn);
  }
  if (rc) {
    pthread_rwlock_unlock(&s->txn_lock);
    free(t);
    return flume__lmdb_map_err(rc);
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

/* After a failed commit: a short write is EIO to LMDB, a full disk often
 * one. Little space left on the file's file system says which. */
static int disk_full(flume__store *s) {
  int fd;
  struct statvfs vfs;
  if (mdb_env_get_fd(s->env, &fd) != 0 || fstatvfs(fd, &vfs) != 0) return 0;
  /* root may use the blocks reserved for it: so may we, then */
  unsigned long long blocks = geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail;
  return blocks * vfs.f_frsize < FULL_DISK_BYTES;
}

static int lmdb_txn_commit(flume__txn *t) {
  flume__store *s = t->store;
  int rc = mdb_txn_commit(t->txn);
  if (t->write) forget_tables(t, rc == 0);
  if ((rc == EIO || rc == ENOSPC || rc == EFBIG || rc == EDQUOT) &&
      disk_full(s))
    rc = ENOSPC;
  else if (rc == EDQUOT || rc == EFBIG)
    rc = ENOSPC; /* no more room for this file, disk full or not */
  pthread_rwlock_unlock(&s->txn_lock);
  free(t->buf);
  free(t);
  return flume__lmdb_map_err(rc);
}

static void lmdb_txn_abort(flume__txn *t) {
  flume__store *s = t->store;
  if (!t->write && !t->opened && !t->own && s->spare == NULL) {
    /* A reset transaction holds no snapshot: grow() may remap under it. */
    mdb_txn_reset(t->txn);
    free(t->buf); /* a put tried in it (refused by LMDB) made one */
    t->buf = NULL;
    t->buf_cap = 0;
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
  free(t->buf);
  free(t);
}

static int lmdb_grow(flume__store *s) {
  if (s->readonly) return -EROFS;
  int dead;
  mdb_reader_check(s->env, &dead); /* stale readers may be why it is full */
  pthread_rwlock_wrlock(&s->txn_lock);
  size_t next = s->map_size * 2;
  int rc = next < s->map_size
               ? FLUME_ENOSPC
               : flume__lmdb_map_err(mdb_env_set_mapsize(s->env, next));
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
  rc = flume__lmdb_map_err(
      mdb_dbi_open(t->txn, full, create ? MDB_CREATE : 0, &dbi));
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
  return flume__lmdb_map_err(mdb_drop(t->txn, dbi_of(t, tbl), 0));
}

static int lmdb_table_count(flume__txn *t, flume__table tbl, uint64_t *out) {
  MDB_stat st;
  int rc = flume__lmdb_map_err(mdb_stat(t->txn, dbi_of(t, tbl), &st));
  if (rc == 0) *out = st.ms_entries;
  return rc;
}

/* Checks and strips the seal of an entry read from table tbl. */
static int unseal(flume__txn *t, flume__table tbl, const MDB_val *k,
                  MDB_val *v) {
  flume__store *s = t->store;
  char name[LMDB_NAME_MAX + 2]; /* LMDB's name, for the detail */
  if (tbl == FLUME__TABLE_LOG) {
    strcpy(name, "log");
  } else {
    /* Not snprintf: this runs for every entry read (a tenth of an index
     * read's instructions went to formatting this name). */
    size_t n = strnlen(s->tables[tbl].name, LMDB_NAME_MAX - 1);
    name[0] = 't';
    name[1] = ':';
    memcpy(name + 2, s->tables[tbl].name, n);
    name[n + 2] = '\0';
  }
  return flume__lmdb_unseal(s->path, name, k, v);
}

static int lmdb_get(flume__txn *t, flume__table tbl, flume__slice key,
                    flume__slice *val) {
  MDB_val k = {key.size, (void *)key.data}, v;
  int rc = mdb_get(t->txn, dbi_of(t, tbl), &k, &v);
  rc = flume__lmdb_read_err(t->store->path, rc);
  if (rc == 0) rc = unseal(t, tbl, &k, &v);
  if (rc == 0) *val = (flume__slice){v.mv_data, v.mv_size};
  return rc;
}

/* Puts val sealed. The sealed copy is made in the transaction's scratch
 * buffer, not in space reserved in the map (MDB_RESERVE): val may point
 * into a page this very put moves. */
static int put_sealed(flume__txn *t, MDB_dbi dbi, MDB_val *k, flume__slice val,
                      unsigned flags) {
  if (val.size > SIZE_MAX - SEAL_SIZE) return FLUME_EINVAL;
  size_t need = val.size + SEAL_SIZE;
  if (need > t->buf_cap) {
    size_t cap = t->buf_cap ? t->buf_cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    unsigned char *b = realloc(t->buf, cap);
    if (b == NULL) return FLUME_ENOMEM;
    t->buf = b;
    t->buf_cap = cap;
  }
  flume__lmdb_seal(t->buf, k, val.data, val.size);
  MDB_val v = {need, t->buf};
  return flume__lmdb_map_err(mdb_put(t->txn, dbi, k, &v, flags));
}

static int lmdb_put(flume__txn *t, flume__table tbl, flume__slice key,
                    flume__slice val) {
  if (tbl == FLUME__TABLE_LOG || key.size == 0 ||
      key.size > (size_t)mdb_env_get_maxkeysize(t->store->env))
    return FLUME_EINVAL;
  MDB_val k = {key.size, (void *)key.data};
  return put_sealed(t, dbi_of(t, tbl), &k, val, 0);
}

static int lmdb_del(flume__txn *t, flume__table tbl, flume__slice key) {
  if (tbl == FLUME__TABLE_LOG) return FLUME_EINVAL;
  MDB_val k = {key.size, (void *)key.data};
  return flume__lmdb_map_err(mdb_del(t->txn, dbi_of(t, tbl), &k, NULL));
}

static int lmdb_log_last(flume__txn *t, int64_t *seq) {
  if (t->log_last == -2) {
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, dbi_of(t, FLUME__TABLE_LOG), &c);
    if (rc) return flume__lmdb_map_err(rc);
    MDB_val k, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) t->log_last = -1;
    else if (rc) return flume__lmdb_map_err(rc);
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
  MDB_val k = {sizeof key, &key};
  rc = put_sealed(t, dbi_of(t, FLUME__TABLE_LOG), &k, val, MDB_APPEND);
  if (rc == 0) t->log_last = seq;
  return rc;
}

static int lmdb_cursor_open(flume__txn *t, flume__table tbl,
                            flume__cursor **out) {
  flume__cursor *c = malloc(sizeof *c);
  if (c == NULL) return FLUME_ENOMEM;
  c->txn = t;
  c->tbl = tbl;
  int rc =
      flume__lmdb_map_err(mdb_cursor_open(t->txn, dbi_of(t, tbl), &c->cur));
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
      [FLUME__FIRST] = MDB_FIRST,         [FLUME__LAST] = MDB_LAST,
      [FLUME__NEXT] = MDB_NEXT,           [FLUME__PREV] = MDB_PREV,
      [FLUME__SET_RANGE] = MDB_SET_RANGE, [FLUME__SET] = MDB_SET_KEY};
  if (op < FLUME__FIRST || op > FLUME__SET) return FLUME_EINVAL;
  MDB_val k = {0, NULL}, v;
  if (op == FLUME__SET || op == FLUME__SET_RANGE) {
    if (key->size == 0) return FLUME_EINVAL;
    k.mv_size = key->size;
    k.mv_data = (void *)key->data;
  }
  int rc = flume__lmdb_read_err(c->txn->store->path,
                    mdb_cursor_get(c->cur, &k, &v, ops[op]));
  if (rc == 0) rc = unseal(c->txn, c->tbl, &k, &v);
  if (rc) return rc;
  *key = (flume__slice){k.mv_data, k.mv_size};
  if (val) *val = (flume__slice){v.mv_data, v.mv_size};
  return 0;
}


/* ---- stat, listing, copy ----------------------------------------------- */

static uint64_t lmdb_txn_snapshot(flume__txn *t) {
  return (uint64_t)mdb_txn_id(t->txn);
}

static int lmdb_stat(flume__store *s, flume__store_stat *out) {
  MDB_envinfo in;
  MDB_stat st;
  /* Not while this process remaps (grow, adopt_map). */
  pthread_rwlock_rdlock(&s->txn_lock);
  int rc = mdb_env_info(s->env, &in);
  if (rc == 0) rc = mdb_env_stat(s->env, &st);
  pthread_rwlock_unlock(&s->txn_lock);
  if (rc) return flume__lmdb_map_err(rc);
  out->page_size = st.ms_psize;
  out->map_size = in.me_mapsize;
  out->used = ((uint64_t)in.me_last_pgno + 1) * st.ms_psize;
  out->txn_id = in.me_last_txnid;
  out->readers = in.me_numreaders;
  out->max_readers = in.me_maxreaders;
  return 0;
}

static int lmdb_table_stat(flume__txn *t, flume__table tbl,
                           flume__table_stat *out) {
  MDB_stat st;
  int rc = flume__lmdb_map_err(mdb_stat(t->txn, dbi_of(t, tbl), &st));
  if (rc) return rc;
  out->entries = st.ms_entries;
  out->bytes = (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages +
                          st.ms_overflow_pages) *
               st.ms_psize;
  return 0;
}

static int lmdb_table_list(flume__txn *t, flume__table_fn fn, void *ctx) {
  MDB_cursor *cur;
  MDB_val k, v;
  /* The names are gathered first: fn may open tables meanwhile, which
   * reads LMDB's main table under our cursor. */
  char(*names)[LMDB_NAME_MAX] = NULL;
  size_t n = 0, cap = 0;
  MDB_dbi main;
  int rc = mdb_dbi_open(t->txn, NULL, 0, &main);
  if (rc == 0) rc = mdb_cursor_open(t->txn, main, &cur);
  if (rc) return flume__lmdb_map_err(rc);
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    /* "t:<name>"; the log and anything not flume's are not listed */
    if (k.mv_size < 3 || k.mv_size - 2 >= LMDB_NAME_MAX ||
        memcmp(k.mv_data, "t:", 2) != 0 ||
        memchr((const char *)k.mv_data + 2, '\0', k.mv_size - 2))
      continue;
    if (n == cap) {
      size_t c = cap ? cap * 2 : 16;
      void *p = realloc(names, c * sizeof *names);
      if (p == NULL) {
        rc = ENOMEM;
        break;
      }
      names = p;
      cap = c;
    }
    memcpy(names[n], (const char *)k.mv_data + 2, k.mv_size - 2);
    names[n++][k.mv_size - 2] = '\0';
  }
  mdb_cursor_close(cur);
  rc = rc == MDB_NOTFOUND ? 0 : flume__lmdb_read_err(t->store->path, rc);
  for (size_t i = 0; rc == 0 && i < n; i++) rc = fn(ctx, names[i]);
  free(names);
  return rc;
}

/* A copy running on its own thread. */
typedef struct copy_job {
  flume__store *store; /* the source */
  int fd;              /* the new data.mdb */
  unsigned flags;      /* MDB_CP_COMPACT or 0 */
  int rc;              /* LMDB's or the system's result */
  atomic_int done;     /* set once rc is */
} copy_job;

static void *copy_main(void *arg) {
  copy_job *j = arg;
  flume__store *s = j->store;
  /* The copy's read transaction is ours: no remap under it. */
  pthread_rwlock_rdlock(&s->txn_lock);
  int rc = mdb_env_copyfd2(s->env, j->fd, j->flags);
  if (rc == MDB_MAP_RESIZED) {
    /* Another process grew the map before the copy's transaction began:
     * adopt it and start again on an empty file. */
    adopt_map(s);
    if (ftruncate(j->fd, 0) != 0 || lseek(j->fd, 0, SEEK_SET) != 0)
      rc = errno;
    else
      rc = mdb_env_copyfd2(s->env, j->fd, j->flags);
  }
  pthread_rwlock_unlock(&s->txn_lock);
  if (rc == 0 && fsync(j->fd) != 0) rc = errno;
  j->rc = rc;
  atomic_store(&j->done, 1);
  return NULL;
}

static int lmdb_copy(flume__store *s, const char *dest, int compact,
                     flume__copy_fn progress, void *ctx) {
  char file[4200];
  if (dest == NULL || *dest == '\0' ||
      snprintf(file, sizeof file, "%s/data.mdb", dest) >= (int)sizeof file)
    return FLUME_EINVAL;
  int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  copy_job j = {s, fd, compact ? MDB_CP_COMPACT : 0, 0, 0};
  pthread_t th;
  int rc = pthread_create(&th, NULL, copy_main, &j);
  if (rc) {
    close(fd);
    unlink(file);
    return -rc;
  }
  for (unsigned tick = 1; !atomic_load(&j.done); tick++) {
    struct timespec ts = {0, 10 * 1000 * 1000}; /* 10 ms */
    nanosleep(&ts, NULL);
    struct stat st;
    if (progress && tick % 10 == 0 && !atomic_load(&j.done) &&
        fstat(fd, &st) == 0)
      progress(ctx, (uint64_t)st.st_size);
  }
  pthread_join(th, NULL);
  if (close(fd) != 0 && j.rc == 0) j.rc = errno;
  if (j.rc == EFBIG || j.rc == EDQUOT) j.rc = ENOSPC; /* no room for it */
  if (j.rc) unlink(file); /* a cut copy is no database */
  return flume__lmdb_map_err(j.rc);
}

static int lmdb_verify(flume__store *s, flume__verify_fn fn, void *ctx) {
  MDB_txn *txn;
  flume__lmdb_forget_detail();
  int rc = read_begin(s, &txn);
  if (rc) return rc;
  /* The walk opens LMDB handles of its own, which the abort below closes
   * again: no other thread may open one meanwhile. */
  pthread_mutex_lock(&s->dbi_mutex);
  rc = flume__lmdb_walk(txn, s->path, fn, ctx);
  mdb_txn_abort(txn);
  pthread_mutex_unlock(&s->dbi_mutex);
  pthread_rwlock_unlock(&s->txn_lock);
  return rc;
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
    .stat = lmdb_stat,
    .txn_snapshot = lmdb_txn_snapshot,
    .writer_alive = lmdb_writer_alive,
    .copy = lmdb_copy,
    .verify = lmdb_verify,
    .table_open = lmdb_table_open,
    .table_clear = lmdb_table_clear,
    .table_count = lmdb_table_count,
    .table_stat = lmdb_table_stat,
    .table_list = lmdb_table_list,
    .get = lmdb_get,
    .put = lmdb_put,
    .del = lmdb_del,
    .log_append = lmdb_log_append,
    .log_last = lmdb_log_last,
    .cursor_open = lmdb_cursor_open,
    .cursor_close = lmdb_cursor_close,
    .cursor_get = lmdb_cursor_get,
};
