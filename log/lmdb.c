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
 *  - serialise mdb_dbi_open() between threads: `dbi_mutex`;
 *  - notice damage: LMDB trusts its file. A file cut short makes it touch
 *    pages past the end of the file (SIGBUS), a flipped bit in a value comes
 *    back as a valid value. So open checks the file against its meta pages
 *    first (check_file), and every entry is sealed: its value is stored
 *    followed by a CRC32C of key and value (4 bytes, little-endian), checked
 *    on every read (seal, unseal). A damaged entry is FLUME_ECORRUPT, with
 *    where it is in flume__store_detail(). What a checksum cannot catch is
 *    a damaged branch page, which LMDB follows blindly: see the README's
 *    "Guarantees" and lmdb_verify(), which walks everything;
 *  - clear the reader slots of killed processes (they pin old pages, so the
 *    file grows): mdb_reader_check() at open, on grow and every
 *    READER_CHECK_EVERY write transactions;
 *  - tell a full disk from an I/O error: a short write is EIO to LMDB.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "flume.h"
#include "store.h"

#define LMDB_MAX_TABLES 256
#define LMDB_DEFAULT_MAP ((size_t)256 << 20)
#define LMDB_NAME_MAX 128
#define SEAL_SIZE 4           /* the CRC32C after every stored value */
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
  unsigned char *buf;   /* scratch for sealing values (write txn) */
  size_t buf_cap;       /* its size in bytes */
};

struct flume__cursor {
  flume__txn *txn;      /* owner */
  MDB_cursor *cur;      /* LMDB's cursor */
  flume__table tbl;     /* its table */
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

/* ---- what went wrong, for messages ------------------------------------- */

/* The detail of the last FLUME_ECORRUPT or FLUME_EFORMAT of this thread.
 * Thread-local, not per store: the writer thread and the loop thread fail
 * independently, and a failed open has no store to hold it. */
static _Thread_local char detail[512];

__attribute__((format(printf, 1, 2))) static void set_detail(const char *fmt,
                                                             ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
}

int flume__store_detail(char *buf, size_t n) {
  if (detail[0] == '\0') return 0;
  if (n) snprintf(buf, n, "%s", detail);
  detail[0] = '\0';
  return 1;
}

/* map_err for a read of LMDB's pages: damage LMDB noticed itself (a page
 * of the wrong kind, a page number past the end) gets a detail too. */
static int read_err(const char *path, int rc) {
  if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND)
    set_detail("%s/data.mdb has a damaged page (LMDB: %s)", path,
               mdb_strerror(rc));
  return map_err(rc);
}

/* ---- sealing: a CRC32C of key and value after every stored value ------- */

static uint32_t seal_of(const void *key, size_t klen, const void *val,
                        size_t vlen) {
  return crc32c_update(crc32c_update(0, key, klen), val, vlen);
}

/* Describes an entry of an LMDB table for a message: "seq N" in the log,
 * "view 'x' state" in a view's table, "metadata 'key'" in the meta. */
static void describe(char *buf, size_t n, const char *table,
                     const MDB_val *key) {
  if (strcmp(table, "log") == 0) {
    size_t seq = 0;
    if (key->mv_size == sizeof seq) memcpy(&seq, key->mv_data, sizeof seq);
    snprintf(buf, n, "seq %zu", seq);
    return;
  }
  /* The key, printable: its first bytes, others as '?'. */
  char k[41];
  size_t len = key->mv_size < sizeof k - 1 ? key->mv_size : sizeof k - 1;
  memcpy(k, key->mv_data, len);
  k[len] = '\0';
  for (size_t i = 0; i < len; i++)
    if (k[i] < 32 || k[i] > 126) k[i] = '?';
  if (strncmp(table, "t:v:", 4) == 0)
    snprintf(buf, n, "view '%.130s' state (key '%s')", table + 4, k);
  else if (strcmp(table, "t:meta") == 0)
    snprintf(buf, n, "metadata entry '%s'", k);
  else
    snprintf(buf, n, "table %.130s, key '%s'", table, k);
}

/* Checks the seal at the end of *val and strips it: 0, or -1 when it does
 * not match (then *val is unchanged). */
static int check_seal(const MDB_val *key, MDB_val *val) {
  if (val->mv_size < SEAL_SIZE) return -1;
  const unsigned char *p = (const unsigned char *)val->mv_data;
  size_t len = val->mv_size - SEAL_SIZE;
  uint32_t want = (uint32_t)p[len] | (uint32_t)p[len + 1] << 8 |
                  (uint32_t)p[len + 2] << 16 | (uint32_t)p[len + 3] << 24;
  if (seal_of(key->mv_data, key->mv_size, p, len) != want) return -1;
  val->mv_size = len;
  return 0;
}

static int seal_broken(const char *path, const char *table,
                       const MDB_val *key) {
  char what[200];
  describe(what, sizeof what, table, key);
  set_detail("%s in %s/data.mdb is damaged (checksum mismatch)", what, path);
  return FLUME_ECORRUPT;
}

/* Checks a sealed entry read from LMDB (key and stored value) and strips
 * its checksum from *val. `table` is the LMDB name ("log", "t:meta",
 * "t:v:<view>"), for the detail of a mismatch. Errors: FLUME_ECORRUPT. */
static int unseal_raw(const char *path, const char *table,
                      const MDB_val *key, MDB_val *val) {
  return check_seal(key, val) == 0 ? 0 : seal_broken(path, table, key);
}

/* Writes val sealed into buf (val.size + SEAL_SIZE bytes). */
static void seal_into(unsigned char *buf, const MDB_val *key, const void *val,
                      size_t len) {
  if (len) memcpy(buf, val, len);
  uint32_t c = seal_of(key->mv_data, key->mv_size, val, len);
  buf[len] = (unsigned char)c;
  buf[len + 1] = (unsigned char)(c >> 8);
  buf[len + 2] = (unsigned char)(c >> 16);
  buf[len + 3] = (unsigned char)(c >> 24);
}

/* ---- checking the file before LMDB maps it ----------------------------- */

/* LMDB 0.9's file layout (mdb.c), read here so that a file LMDB would
 * crash on is refused first. A page starts with a 16-byte header (pgno:8,
 * pad:2, flags:2, lower:2, upper:2); pages 0 and 1 are meta pages whose
 * body (MDB_meta) is: */
#define META_MAGIC 0xBEEFC0DEu /* MDB_MAGIC */
#define META_VERSION 1u        /* MDB_DATA_VERSION */
#define P_META 0x08u           /* a meta page's flag */
#define NO_PAGE UINT64_MAX     /* P_INVALID: an empty tree's root */
#define OFF_FLAGS 10           /* page flags, u16 */
#define OFF_MAGIC 16           /* mm_magic, u32 */
#define OFF_VERSION 20         /* mm_version, u32 */
#define OFF_ADDRESS 24         /* mm_address, fixed-map address: 0 */
#define OFF_MAPSIZE 32         /* mm_mapsize */
#define OFF_DBS                                                                \
  40 /* mm_dbs[2]: free pages, main; 48 bytes each:                            \
        pad (the page size in dbs[0]):4, flags:2,                              \
        depth:2, branch, leaf, overflow, entries,                              \
        root: 8 each */
#define DB_SIZE 48
#define OFF_LAST_PG 136 /* mm_last_pg: the last page in use */
#define OFF_TXNID 144   /* mm_txnid: the transaction that wrote it */
#define META_END 152

static uint64_t rd64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static uint32_t rd32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static uint16_t rd16(const unsigned char *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

/* Checks one tree's record in a meta page against the file's last page. */
static int check_tree(const unsigned char *db, uint64_t last, const char *file,
                      int meta, const char *which) {
  uint16_t depth = rd16(db + 6);
  uint64_t branch = rd64(db + 8), leaf = rd64(db + 16), over = rd64(db + 24),
           entries = rd64(db + 32), root = rd64(db + 40);
  int ok;
  if (root == NO_PAGE)
    ok = depth == 0 && branch == 0 && leaf == 0 && over == 0 && entries == 0;
  else
    ok = root >= 2 && root <= last && depth >= 1 && depth <= 32 && leaf >= 1 &&
         branch <= last && leaf <= last && over <= last &&
         branch + leaf + over <= last;
  if (ok) return 0;
  set_detail("%s: meta page %d is damaged (its %s tree: root page %llu, "
             "depth %u, last page %llu)",
             file, meta, which, (unsigned long long)root, depth,
             (unsigned long long)last);
  return FLUME_ECORRUPT;
}

/* Checks data.mdb before LMDB opens it: LMDB reads the meta pages with
 * pread, then maps the file and trusts them. *exists says whether there
 * is a file at all (none: a new database). */
static int check_file(const char *path, int *exists) {
  char file[4200];
  snprintf(file, sizeof file, "%s/data.mdb", path);
  *exists = 0;
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  *exists = 1;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  unsigned char m[2][META_END];
  uint64_t size = (uint64_t)st.st_size, psize = 0;
  int rc = 0;
  if (size == 0) {
    set_detail("%s is empty (0 bytes): a cut copy? A new database is made "
               "only in a folder without data.mdb",
               file);
    rc = FLUME_ECORRUPT;
    goto done;
  }
  for (int i = 0; i < 2; i++) {
    if (pread(fd, m[i], META_END, (off_t)(i * psize)) != META_END) {
      set_detail("%s is cut short (%llu bytes): its meta page %d is "
                 "missing",
                 file, (unsigned long long)size, i);
      rc = FLUME_ECORRUPT;
      goto done;
    }
    uint32_t ps = rd32(m[i] + OFF_DBS);
    if (rd32(m[i] + OFF_MAGIC) != META_MAGIC ||
        (rd16(m[i] + OFF_FLAGS) & P_META) == 0 || rd64(m[i]) != (uint64_t)i) {
      set_detail("%s: meta page %d is damaged, or this is not an LMDB file",
                 file, i);
      rc = FLUME_ECORRUPT;
      goto done;
    }
    if (rd32(m[i] + OFF_VERSION) != META_VERSION) {
      set_detail("%s: LMDB data version %u, not %u (meta page %d)", file,
                 rd32(m[i] + OFF_VERSION), META_VERSION, i);
      rc = FLUME_EFORMAT;
      goto done;
    }
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)) || (i && ps != psize)) {
      set_detail("%s: meta page %d is damaged (page size %u)", file, i, ps);
      rc = FLUME_ECORRUPT;
      goto done;
    }
    psize = ps;
  }
  /* LMDB writes meta page (txnid & 1) at each commit, so page 0 holds an
   * even id, page 1 an odd one (or 0, in a new file), and they differ by
   * one. It uses the newer: a damaged id would have it use a stale tree.
   * (A damaged id that still passes, 11 read as 9 beside 10, makes it
   * open the commit before the last: see the README's "Guarantees".) */
  uint64_t t0 = rd64(m[0] + OFF_TXNID), t1 = rd64(m[1] + OFF_TXNID);
  if ((t0 & 1) || (t1 != 0 && !(t1 & 1)) ||
      !(t0 == t1 + 1 || t1 == t0 + 1 || (t0 == 0 && t1 == 0))) {
    set_detail("%s: its meta pages are damaged (transaction ids %llu and "
               "%llu)",
               file, (unsigned long long)t0, (unsigned long long)t1);
    rc = FLUME_ECORRUPT;
    goto done;
  }
  int cur = t1 > t0;
  const unsigned char *mm = m[cur];
  uint64_t last = rd64(mm + OFF_LAST_PG);
  if (last < 1 || last > (UINT64_C(1) << 48) || rd64(mm + OFF_ADDRESS) != 0 ||
      rd64(mm + OFF_MAPSIZE) < (last + 1) * psize) {
    set_detail("%s: meta page %d is damaged (last page %llu, map size "
               "%llu)",
               file, cur, (unsigned long long)last,
               (unsigned long long)rd64(mm + OFF_MAPSIZE));
    rc = FLUME_ECORRUPT;
    goto done;
  }
  if (size < (last + 1) * psize) {
    set_detail("%s is cut short: %llu bytes, but its last page (%llu) ends "
               "at %llu",
               file, (unsigned long long)size, (unsigned long long)last,
               (unsigned long long)((last + 1) * psize));
    rc = FLUME_ECORRUPT;
    goto done;
  }
  if ((rc = check_tree(mm + OFF_DBS, last, file, cur, "free-page")) ||
      (rc = check_tree(mm + OFF_DBS + DB_SIZE, last, file, cur, "main")))
    goto done;
  /* flume's main table has no flags; the free-page table is LMDB's own
   * (MDB_INTEGERKEY). Anything else would make LMDB misread the tree. */
  if (rd16(mm + OFF_DBS + DB_SIZE + 4) != 0 ||
      rd32(mm + OFF_DBS + DB_SIZE) != 0) {
    set_detail("%s: meta page %d is damaged (main table flags %#x)", file, cur,
               rd16(mm + OFF_DBS + DB_SIZE + 4));
    rc = FLUME_ECORRUPT;
  }
done:
  close(fd);
  return rc;
}

/* ---- opening: the one path, read-only or not --------------------------- */

static void on_assert(MDB_env *env, const char *msg) {
  /* LMDB aborts after this returns: a damaged page it cannot go on from.
   * Say so in our words first; `flume verify` finds such pages safely. */
  const char *path = mdb_env_get_userctx(env);
  fprintf(stderr,
          "flume: ECORRUPT: %s/data.mdb has a damaged page (LMDB: %s); the "
          "process stops. Run `flume verify` on it\n",
          path ? path : "?", msg);
}

/* Is this LMDB name one of flume's tables? */
static int flume_name(const MDB_val *k) {
  return (k->mv_size == 3 && memcmp(k->mv_data, "log", 3) == 0) ||
         (k->mv_size > 2 && memcmp(k->mv_data, "t:", 2) == 0);
}

/* Checks that the environment is flume's: its main table holds only the
 * log and "t:" tables, among them the metadata, whose format entry is
 * sealed. A new environment (main table empty) gets its log and metadata
 * tables, unless read-only. */
static int check_content(MDB_env *env, const char *path, int readonly) {
  MDB_txn *txn;
  MDB_dbi main, log, meta;
  MDB_cursor *cur;
  MDB_stat st;
  MDB_val k, v;
  int rc = mdb_txn_begin(env, NULL, readonly ? MDB_RDONLY : 0, &txn);
  if (rc) return map_err(rc);
  if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) ||
      (rc = mdb_stat(txn, main, &st))) {
    rc = map_err(rc);
    goto fail;
  }
  if (st.ms_entries == 0) {
    /* Nothing in it: the rest of a creation cut short before its first
     * commit, or a new file. Nothing can be lost by making it ours. */
    if (readonly) {
      set_detail("%s/data.mdb: an empty LMDB environment, not a flume "
                 "database",
                 path);
      rc = FLUME_ECORRUPT;
      goto fail;
    }
    if ((rc = mdb_dbi_open(txn, "log", MDB_CREATE | MDB_INTEGERKEY, &log)) ||
        (rc = mdb_dbi_open(txn, "t:meta", MDB_CREATE, &meta))) {
      rc = map_err(rc);
      goto fail;
    }
    return map_err(mdb_txn_commit(txn));
  }
  int has_log = 0, has_meta = 0, foreign = 0;
  if ((rc = mdb_cursor_open(txn, main, &cur))) {
    rc = map_err(rc);
    goto fail;
  }
  MDB_cursor_op op = MDB_FIRST;
  while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
    op = MDB_NEXT;
    if (!flume_name(&k))
      foreign = 1;
    else if (k.mv_size == 3)
      has_log = 1;
    else if (k.mv_size == 6 && memcmp(k.mv_data, "t:meta", 6) == 0)
      has_meta = 1;
  }
  mdb_cursor_close(cur);
  if (rc != MDB_NOTFOUND) {
    rc = map_err(rc);
    goto fail;
  }
  if (foreign || !has_log) {
    set_detail("%s/data.mdb is an LMDB environment but not a flume database "
               "(%s)",
               path,
               has_log ? "it has tables flume does not make"
                       : "it has no flume log");
    rc = FLUME_ECORRUPT;
    goto fail;
  }
  if ((rc = mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &log)) ||
      (rc = mdb_stat(txn, log, &st))) {
    rc = map_err(rc);
    if (rc == FLUME_EINVAL) rc = FLUME_ECORRUPT; /* not an integer table */
    if (rc == FLUME_ECORRUPT)
      set_detail("%s/data.mdb: its log table is damaged or not flume's", path);
    goto fail;
  }
  if (!has_meta) {
    /* An empty log without metadata: a creation by an older flume cut
     * short. Anything more is not ours to take. */
    if (st.ms_entries != 0 || readonly) {
      set_detail("%s/data.mdb has no flume metadata table", path);
      rc = FLUME_ECORRUPT;
      goto fail;
    }
    if ((rc = mdb_dbi_open(txn, "t:meta", MDB_CREATE, &meta))) {
      rc = map_err(rc);
      goto fail;
    }
    return map_err(mdb_txn_commit(txn));
  }
  if ((rc = mdb_dbi_open(txn, "t:meta", 0, &meta))) {
    rc = map_err(rc);
    goto fail;
  }
  k = (MDB_val){6, "format"};
  rc = mdb_get(txn, meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    rc = 0; /* not written yet: the runtime's open decides */
  } else if (rc) {
    rc = map_err(rc);
  } else {
    const char *raw = v.mv_data;
    size_t len = v.mv_size;
    if (unseal_raw(path, "t:meta", &k, &v) != 0) {
      /* An older flume stored "1" bare: not damage, an older format. */
      int digits = len > 0 && len < 8;
      for (size_t i = 0; i < len && digits; i++)
        digits = raw[i] >= '0' && raw[i] <= '9';
      if (digits) {
        set_detail("%s was written by an older flume (format %.*s, without "
                   "checksums); open it with that version and copy its log "
                   "(flume cat --values | flume append)",
                   path, (int)len, raw);
        rc = FLUME_EFORMAT;
      } else {
        rc = FLUME_ECORRUPT;
      }
    }
  }
fail:
  mdb_txn_abort(txn);
  return rc;
}

/*
 * Opens the environment in the folder `path` after checking its data.mdb
 * (size against the last page its meta pages name, the meta pages
 * themselves), then checks that it is flume's (its log and metadata tables,
 * sealed entries) and clears stale readers. `readonly`: MDB_RDONLY, and a
 * folder without data.mdb is FLUME_ENOTFOUND instead of a new database.
 * Otherwise a new database gets its log and metadata tables. map_size 0
 * keeps the file's. `flags` are added to LMDB's open flags.
 */
static int open_env(const char *path, int readonly, size_t map_size,
                    unsigned flags, unsigned max_dbs, MDB_env **out) {
  detail[0] = '\0';
  int exists, rc = check_file(path, &exists);
  if (rc) return rc;
  if (!exists && readonly) return FLUME_ENOTFOUND;
  MDB_env *env;
  if ((rc = map_err(mdb_env_create(&env)))) return rc;
  /* The path outlives the env: it is the caller's, kept as long. */
  mdb_env_set_userctx(env, (void *)path);
  mdb_env_set_assert(env, on_assert);
  if ((rc = mdb_env_set_maxdbs(env, max_dbs)) ||
      (map_size && (rc = mdb_env_set_mapsize(env, map_size))) ||
      (rc = mdb_env_open(env, path, flags | (readonly ? MDB_RDONLY : 0),
                         0644))) {
    rc = map_err(rc);
    if (rc == FLUME_ECORRUPT)
      set_detail("%s/data.mdb is damaged or not an LMDB file", path);
    goto fail;
  }
  int dead;
  mdb_reader_check(env, &dead);
  if ((rc = check_content(env, path, readonly))) {
    if (rc == FLUME_ECORRUPT && detail[0] == '\0')
      set_detail("%s/data.mdb is damaged: its tables cannot be read", path);
    goto fail;
  }
  *out = env;
  return 0;
fail:
  mdb_env_close(env);
  return rc;
}

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
  *fd_out = fd;
  return 0;
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
  rc = open_env(s->path, ro, map, flags, LMDB_MAX_TABLES + 2, &s->env);
  if (rc) goto fail;
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  s->map_size = info.me_mapsize;

  MDB_txn *txn;
  if ((rc = map_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))))
    goto fail;
  rc = mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &s->tables[0].dbi);
  if (rc == 0)
    rc = mdb_txn_commit(txn); /* keeps the handle */
  else
    mdb_txn_abort(txn);
  if ((rc = map_err(rc))) goto fail;
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
  return map_err(rc);
}

static int lmdb_txn_begin(flume__store *s, int flags, flume__txn **out) {
  detail[0] = '\0'; /* a detail is read right after the read that failed */
  if (s->readonly && !(flags & FLUME__TXN_READ)) return -EROFS;
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
  return map_err(rc);
}

static void lmdb_txn_abort(flume__txn *t) {
  flume__store *s = t->store;
  if (!t->write && !t->opened && s->spare == NULL) {
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
  rc = map_err(
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
  return map_err(mdb_drop(t->txn, dbi_of(t, tbl), 0));
}

static int lmdb_table_count(flume__txn *t, flume__table tbl, uint64_t *out) {
  MDB_stat st;
  int rc = map_err(mdb_stat(t->txn, dbi_of(t, tbl), &st));
  if (rc == 0) *out = st.ms_entries;
  return rc;
}

/* Checks and strips the seal of an entry read from table tbl. */
static int unseal(flume__txn *t, flume__table tbl, const MDB_val *k,
                  MDB_val *v) {
  if (check_seal(k, v) == 0) return 0;
  flume__store *s = t->store;
  char name[LMDB_NAME_MAX + 2];
  if (tbl == FLUME__TABLE_LOG) strcpy(name, "log");
  else snprintf(name, sizeof name, "t:%s", s->tables[tbl].name);
  return seal_broken(s->path, name, k);
}

static int lmdb_get(flume__txn *t, flume__table tbl, flume__slice key,
                    flume__slice *val) {
  MDB_val k = {key.size, (void *)key.data}, v;
  int rc = mdb_get(t->txn, dbi_of(t, tbl), &k, &v);
  rc = read_err(t->store->path, rc);
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
  seal_into(t->buf, k, val.data, val.size);
  MDB_val v = {need, t->buf};
  return map_err(mdb_put(t->txn, dbi, k, &v, flags));
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
      map_err(mdb_cursor_open(t->txn, dbi_of(t, tbl), &c->cur));
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
  int rc = read_err(c->txn->store->path,
                    mdb_cursor_get(c->cur, &k, &v, ops[op]));
  if (rc == 0) rc = unseal(c->txn, c->tbl, &k, &v);
  if (rc) return rc;
  *key = (flume__slice){k.mv_data, k.mv_size};
  if (val) *val = (flume__slice){v.mv_data, v.mv_size};
  return 0;
}


/* ---- stat, listing, copy ----------------------------------------------- */

static int lmdb_stat(flume__store *s, flume__store_stat *out) {
  MDB_envinfo in;
  MDB_stat st;
  /* Not while this process remaps (grow, adopt_map). */
  pthread_rwlock_rdlock(&s->txn_lock);
  int rc = mdb_env_info(s->env, &in);
  if (rc == 0) rc = mdb_env_stat(s->env, &st);
  pthread_rwlock_unlock(&s->txn_lock);
  if (rc) return map_err(rc);
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
  int rc = map_err(mdb_stat(t->txn, dbi_of(t, tbl), &st));
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
  if (rc) return map_err(rc);
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
  rc = rc == MDB_NOTFOUND ? 0 : read_err(t->store->path, rc);
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
  return map_err(j.rc);
}

/* ---- verify: read everything ------------------------------------------- */

/* Walks LMDB's free-page list: each entry (a txnid) holds a count and that
 * many page numbers, all within the file. A damaged one would have the
 * writer reuse pages still in use. */
static uint64_t verify_free(MDB_txn *txn, uint64_t last, const char *path,
                            flume__verify_fn fn, void *ctx) {
  MDB_cursor *cur;
  MDB_val k, v;
  uint64_t n = 0;
  char what[4400];
  if (mdb_cursor_open(txn, 0, &cur) != 0) return 0;
  fn(ctx, FLUME__VERIFY_TABLE, "(free pages)", 0);
  for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    n++;
    uint64_t count = 0;
    if (v.mv_size >= 8) memcpy(&count, v.mv_data, 8);
    int ok = v.mv_size >= 8 && v.mv_size % 8 == 0 && count == v.mv_size / 8 - 1;
    for (uint64_t i = 1; ok && i <= count; i++) {
      uint64_t pg;
      memcpy(&pg, (const char *)v.mv_data + 8 * i, 8);
      ok = pg >= 2 && pg <= last;
    }
    if (!ok) {
      snprintf(what, sizeof what,
               "LMDB's list of free pages in %s/data.mdb is damaged (an "
               "entry of %zu bytes)",
               path, v.mv_size);
      fn(ctx, FLUME__VERIFY_DAMAGED, what, n);
    }
  }
  mdb_cursor_close(cur);
  return n;
}

/* Walks one table, checking every seal (and, in the log, that seqs run
 * 0, 1, 2, ... with no gap). */
static uint64_t verify_table(MDB_txn *txn, const char *path, const char *name,
                             flume__verify_fn fn, void *ctx) {
  MDB_dbi dbi;
  MDB_cursor *cur;
  MDB_val k, v;
  uint64_t n = 0;
  int is_log = strcmp(name, "log") == 0;
  char what[4600];
  /* the store's name: "log", "meta", "v:<view>" */
  const char *shown = strncmp(name, "t:", 2) == 0 ? name + 2 : name;
  fn(ctx, FLUME__VERIFY_TABLE, shown, 0);
  int rc = mdb_dbi_open(txn, name, is_log ? MDB_INTEGERKEY : 0, &dbi);
  if (rc == 0) rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc) {
    snprintf(what, sizeof what,
             "table %.130s in %.4096s/data.mdb cannot be read: %s", shown, path,
             mdb_strerror(rc));
    fn(ctx, FLUME__VERIFY_DAMAGED, what, 0);
    return 0;
  }
  uint64_t next = 0;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    n++;
    if (is_log) {
      uint64_t seq = next;
      if (k.mv_size == 8) memcpy(&seq, k.mv_data, 8);
      if (k.mv_size != 8 || seq != next) {
        snprintf(what, sizeof what,
                 "seq %llu in %s/data.mdb: the log jumps to %llu (a damaged "
                 "key, or entries lost)",
                 (unsigned long long)next, path, (unsigned long long)seq);
        fn(ctx, FLUME__VERIFY_DAMAGED, what, n);
        if (k.mv_size != 8) seq = next;
      }
      next = seq + 1;
    }
    MDB_val sealed = v;
    if (unseal_raw(path, name, &k, &sealed) != 0) {
      flume__store_detail(what, sizeof what);
      fn(ctx, FLUME__VERIFY_DAMAGED, what, n);
    }
  }
  if (rc != MDB_NOTFOUND) {
    snprintf(what, sizeof what,
             "table %.130s in %.4096s/data.mdb: the walk stopped after %llu "
             "entries: "
             "%s",
             shown, path, (unsigned long long)n, mdb_strerror(rc));
    fn(ctx, FLUME__VERIFY_DAMAGED, what, n);
  }
  mdb_cursor_close(cur);
  return n;
}

static int lmdb_verify(flume__store *s, flume__verify_fn fn, void *ctx) {
  MDB_txn *txn;
  MDB_dbi main;
  MDB_cursor *cur;
  MDB_val k, v;
  MDB_envinfo info;
  char names[LMDB_MAX_TABLES + 2][LMDB_NAME_MAX + 2];
  size_t nnames = 0;
  detail[0] = '\0';
  int rc = read_begin(s, &txn);
  if (rc) return rc;
  /* The walk opens LMDB handles of its own, which the abort below closes
   * again: no other thread may open one meanwhile. */
  pthread_mutex_lock(&s->dbi_mutex);
  mdb_env_info(s->env, &info);
  if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) ||
      (rc = mdb_cursor_open(txn, main, &cur)))
    goto done;
  /* The log first, then every other table in LMDB's order. */
  strcpy(names[nnames++], "log");
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (!flume_name(&k) || k.mv_size == 3 || k.mv_size > LMDB_NAME_MAX ||
        nnames == sizeof names / sizeof *names)
      continue;
    memcpy(names[nnames], k.mv_data, k.mv_size);
    names[nnames++][k.mv_size] = '\0';
  }
  mdb_cursor_close(cur);
  uint64_t total = 0;
  for (size_t i = 0; i < nnames; i++)
    total += verify_table(txn, s->path, names[i], fn, ctx);
  total += verify_free(txn, info.me_last_pgno, s->path, fn, ctx);
  fn(ctx, FLUME__VERIFY_DONE, "", total);
  rc = 0;
done:
  mdb_txn_abort(txn);
  pthread_mutex_unlock(&s->dbi_mutex);
  pthread_rwlock_unlock(&s->txn_lock);
  return map_err(rc);
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
