/*
 * The LMDB backend's defences (what log/lmdb.c's store stands on): LMDB
 * trusts its file; this does not. A file cut short makes LMDB touch pages
 * past the end of the file (SIGBUS), a flipped bit in a value comes back as
 * a valid value. So:
 *  - the one open path (flume__lmdb_open_env, writer or read-only) checks
 *    data.mdb against its meta pages before LMDB maps it (check_file), then
 *    that the environment is flume's (check_content);
 *  - every entry is sealed: its value is stored followed by a CRC32C of key
 *    and value (4 bytes, little-endian), checked on every read
 *    (flume__lmdb_seal, flume__lmdb_unseal). A damaged entry is
 *    FLUME_ECORRUPT, with where it is in flume__store_detail();
 *  - what a checksum cannot catch is a damaged branch page, which LMDB
 *    follows blindly: see the README's "Guarantees" and flume__lmdb_walk(),
 *    which reads everything;
 *  - LMDB's result codes become FLUME_E* codes here, in one map.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "flume.h"
#include "lmdb_file.h"

#define SEAL_SIZE FLUME__LMDB_SEAL_SIZE
#define LMDB_NAME_MAX FLUME__LMDB_NAME_MAX
/* Tables a walk reads: more than the store opens (256), the log, and a
 * margin for a file written by another flume. */
#define LMDB_WALK_MAX 260

/* ---- LMDB's result codes as flume's ----------------------------------- */

int flume__lmdb_map_err(int rc) {
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

void flume__lmdb_forget_detail(void) { detail[0] = '\0'; }

int flume__store_detail(char *buf, size_t n) {
  if (detail[0] == '\0') return 0;
  if (n) snprintf(buf, n, "%s", detail);
  detail[0] = '\0';
  return 1;
}

int flume__lmdb_read_err(const char *path, int rc) {
  if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND)
    set_detail("%s/data.mdb has a damaged page (LMDB: %s)", path,
               mdb_strerror(rc));
  return flume__lmdb_map_err(rc);
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

int flume__lmdb_unseal(const char *path, const char *table,
                      const MDB_val *key, MDB_val *val) {
  return check_seal(key, val) == 0 ? 0 : seal_broken(path, table, key);
}

void flume__lmdb_seal(unsigned char *buf, const MDB_val *key,
                      const void *val, size_t len) {
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

/* Checks that a tree's root page, as the meta page names it, says it is
 * that page and a branch or leaf: a root number with a flipped bit that
 * still lies in the file would have LMDB read another page as the tree
 * (and a writer reusing the free list's pages then asserts in LMDB). */
static int check_root(int fd, uint64_t psize, const unsigned char *db,
                      const char *file, int meta, const char *which) {
  uint64_t root = rd64(db + 40), entries = rd64(db + 32);
  uint16_t depth = rd16(db + 6);
  unsigned char h[16];
  if (root == NO_PAGE) return 0;
  /* The header: pgno, pad, flags, lower (the end of its key offsets). A
   * one-level tree is a leaf holding every entry, which tells a stale
   * page (an old copy of a tree LMDB copied on write) from the root. */
  if (pread(fd, h, sizeof h, (off_t)(root * psize)) == (ssize_t)sizeof h &&
      rd64(h) == root && (rd16(h + 10) & 0x0cu) == 0 &&
      (depth == 1 ? (rd16(h + 10) & 0x02u) != 0 &&
                        rd16(h + 12) >= 16 &&
                        (uint64_t)(rd16(h + 12) - 16) / 2 == entries
                  : (rd16(h + 10) & 0x01u) != 0))
    return 0;
  set_detail("%s: meta page %d is damaged (its %s tree's root, page %llu, "
             "is not the root of a tree)",
             file, meta, which, (unsigned long long)root);
  return FLUME_ECORRUPT;
}

/* One look at data.mdb (check_file): *txnid gets the id of the commit
 * whose meta page it checked (0 if it got no further). */
static int check_file_once(const char *path, int *exists, uint64_t *txnid) {
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
  *txnid = cur ? t1 : t0;
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
      (rc = check_tree(mm + OFF_DBS + DB_SIZE, last, file, cur, "main")) ||
      (rc = check_root(fd, psize, mm + OFF_DBS, file, cur, "free-page")) ||
      (rc = check_root(fd, psize, mm + OFF_DBS + DB_SIZE, file, cur,
                       "main")))
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

/* Checks data.mdb before LMDB opens it: LMDB reads the meta pages with
 * pread, then maps the file and trusts them. *exists says whether there
 * is a file at all (none: a new database).
 *
 * A reader opens beside a running writer, whose commits go on between our
 * reads of the meta pages and of the roots they name: a root read after
 * two more commits may be a page LMDB has reused since. So what looks
 * damaged is looked at again while the writer has moved on (another
 * commit id); it is damage when the same commit fails twice. */
static int check_file(const char *path, int *exists) {
  uint64_t seen = UINT64_MAX;
  for (int tries = 0;; tries++) {
    uint64_t txnid = 0;
    int rc = check_file_once(path, exists, &txnid);
    if (rc != FLUME_ECORRUPT || txnid == seen || tries == 50) return rc;
    seen = txnid;
  }
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

static uint64_t verify_free(MDB_txn *txn, uint64_t last, const char *path,
                            flume__verify_fn fn, void *ctx);

/* Counts verify_free's findings of damage, keeping the first's text. */
static void free_damage(void *ctx, flume__verify_kind kind, const char *what,
                        uint64_t count) {
  (void)count;
  if (kind != FLUME__VERIFY_DAMAGED) return;
  if (++*(int *)ctx == 1) set_detail("%s", what);
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
  if (rc) return flume__lmdb_map_err(rc);
  if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) ||
      (rc = mdb_stat(txn, main, &st))) {
    rc = flume__lmdb_map_err(rc);
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
      rc = flume__lmdb_map_err(rc);
      goto fail;
    }
    return flume__lmdb_map_err(mdb_txn_commit(txn));
  }
  int has_log = 0, has_meta = 0, foreign = 0;
  if ((rc = mdb_cursor_open(txn, main, &cur))) {
    rc = flume__lmdb_map_err(rc);
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
    rc = flume__lmdb_map_err(rc);
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
    rc = flume__lmdb_map_err(rc);
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
      rc = flume__lmdb_map_err(rc);
      goto fail;
    }
    return flume__lmdb_map_err(mdb_txn_commit(txn));
  }
  if ((rc = mdb_dbi_open(txn, "t:meta", 0, &meta))) {
    rc = flume__lmdb_map_err(rc);
    goto fail;
  }
  if (!readonly) {
    /* A writer reuses the pages LMDB's free list names: a damaged list
     * (a flipped bit in a meta page's root of it) would have it dirty
     * pages in use, and LMDB asserts. Refuse it here, with what is
     * wrong. The list is short: a few entries of page numbers. */
    MDB_envinfo info;
    int bad = 0;
    mdb_env_info(env, &info);
    verify_free(txn, info.me_last_pgno, path, free_damage, &bad);
    if (bad) {
      rc = FLUME_ECORRUPT;
      goto fail;
    }
  }
  k = (MDB_val){6, "format"};
  rc = mdb_get(txn, meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    rc = 0; /* not written yet: the runtime's open decides */
  } else if (rc) {
    rc = flume__lmdb_map_err(rc);
  } else {
    const char *raw = v.mv_data;
    size_t len = v.mv_size;
    if (flume__lmdb_unseal(path, "t:meta", &k, &v) != 0) {
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

int flume__lmdb_open_env(const char *path, int readonly, size_t map_size,
                         unsigned flags, unsigned max_dbs, MDB_env **out) {
  detail[0] = '\0';
  int exists, rc = check_file(path, &exists);
  if (rc) return rc;
  if (!exists && readonly) return FLUME_ENOTFOUND;
  MDB_env *env;
  if ((rc = flume__lmdb_map_err(mdb_env_create(&env)))) return rc;
  /* The path outlives the env: it is the caller's, kept as long. */
  mdb_env_set_userctx(env, (void *)path);
  mdb_env_set_assert(env, on_assert);
  if ((rc = mdb_env_set_maxdbs(env, max_dbs)) ||
      (map_size && (rc = mdb_env_set_mapsize(env, map_size))) ||
      (rc = mdb_env_open(env, path, flags | (readonly ? MDB_RDONLY : 0),
                         0644))) {
    rc = flume__lmdb_map_err(rc);
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

/* ---- verify: read everything ----------------------------------------- */

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
  int rc;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
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
  /* A walk that ends early is damage too: the next writer reads this list
   * to reuse pages, and would fail on it. */
  if (rc != MDB_NOTFOUND) {
    snprintf(what, sizeof what,
             "LMDB's list of free pages in %s/data.mdb is damaged (%s)",
             path, mdb_strerror(rc));
    fn(ctx, FLUME__VERIFY_DAMAGED, what, n);
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
    if (flume__lmdb_unseal(path, name, &k, &sealed) != 0) {
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
int flume__lmdb_walk(MDB_txn *txn, const char *path, flume__verify_fn fn,
                     void *ctx) {
  MDB_dbi main;
  MDB_cursor *cur;
  MDB_val k, v;
  MDB_envinfo info;
  char names[LMDB_WALK_MAX][LMDB_NAME_MAX + 2];
  size_t nnames = 0;
  mdb_env_info(mdb_txn_env(txn), &info);
  int rc = mdb_dbi_open(txn, NULL, 0, &main);
  if (rc == 0) rc = mdb_cursor_open(txn, main, &cur);
  if (rc) return flume__lmdb_read_err(path, rc);
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
    total += verify_table(txn, path, names[i], fn, ctx);
  total += verify_free(txn, info.me_last_pgno, path, fn, ctx);
  fn(ctx, FLUME__VERIFY_DONE, "", total);
  return 0;
}
