/*
 * The database handle: opening, the writer queue with group commit, reads,
 * since watchers and closing.
 *
 * Writes go through one queue. While a group of jobs commits on the writer
 * thread (or, for an inline store, from an idle callback on the loop
 * thread), new jobs wait in the queue and all ride the next commit together.
 * The writer takes the next group itself once a commit is done, so commits
 * go on while the loop thread is busy (a long Lua loop of appends), and
 * hands each finished group back to the loop thread (an async handle),
 * where completions and since notifications run, in commit order. The
 * queue is shared under qlock; an open run (the queue's tail while single
 * appends join it) is the loop thread's alone until it is closed (another
 * job follows it, it is full, or its loop turn ends), and the writer never
 * takes it before.
 */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "buf.h"
#include "internal.h"
#include "mpcheck.h"

/* A group stops taking jobs once it holds this many bytes, so one commit's
 * dirty pages stay bounded however fast appends arrive. */
#define GROUP_MAX_BYTES ((size_t)32 << 20)
/* A job of coalesced single appends stops growing at this many bytes, so
 * that groups can still be cut near their bound. */
#define RUN_MAX_BYTES ((size_t)1 << 20)
/* Entries (or bytes) one read transaction may cover: reads stay short. */
#define ITER_CHUNK_ENTRIES 512
#define ITER_CHUNK_BYTES ((size_t)1 << 20)
/* Finished groups the writer may hand back before the loop thread has
 * taken them (a long loop of appends on the loop thread: 1,024 groups are
 * a gigabyte of single appends); past this it waits for the loop thread. */
#define DONE_MAX 1024
/* Subsystems that may attach to a database (the views are one). */
#define FLUME__PARTS_MAX 4

struct flume_watch {
  flume_db *db;          /* the database it observes */
  flume_since_cb cb;     /* the observer */
  void *ctx;             /* the observer's pointer */
  flume_watch *next;     /* list links */
  flume_watch *prev;
  int dead;              /* stopped during a notification; freed after it */
};

typedef struct iter_entry {
  int64_t seq;  /* the entry's seq */
  size_t off;   /* its bytes' offset in the iterator's chunk */
  size_t len;   /* their length */
} iter_entry;

struct flume_iter {
  flume_db *db;          /* NULL once the database has closed */
  int64_t next;          /* the next seq to read */
  int64_t lo;            /* lowest seq of the range */
  int64_t hi;            /* highest seq of the range */
  int reverse;           /* 1: from hi down to lo */
  int64_t remaining;     /* values the limit still allows; -1: no limit */
  flume__buf chunk;      /* bytes of the current chunk */
  iter_entry *entries;   /* the current chunk's entries */
  size_t count;          /* entries in the chunk */
  size_t pos;            /* the next entry to hand out */
  flume_iter *link_next; /* the database's list of iterators */
  flume_iter *link_prev;
};

typedef struct done_group {
  flume__job *jobs;  /* the group's jobs */
  int status;        /* its commit status */
  int64_t next;      /* the next seq after it */
} done_group;

struct flume_db {
  uv_loop_t *loop;                /* the caller's loop */
  const flume__store_ops *ops;    /* the backend */
  flume__store *store;            /* its instance */
  char codec[64];                 /* the codec name recorded in the db */
  int msgpack;                    /* that codec is "msgpack" */
  int64_t since;                  /* last acknowledged seq; -1: empty */
  flume__job *queue_head;         /* jobs waiting for the next group */
  flume__job *queue_tail;
  struct append_job *open_run;    /* the queue's tail while it is a job
                                   * that single appends may join: the
                                   * loop thread's, never the writer's
                                   * to take (a remote log: the outbox's) */
  struct append_job *spare_run;   /* a finished run kept with its buffers
                                   * for the next one, or NULL */
  flume__batch spare_batch;       /* a finished in-place batch's buffers,
                                   * kept for the next (data NULL: none) */
  int busy;                       /* an inline store's group is taken */
  uv_mutex_t qlock;               /* the queue, open_run, the done ring */
  int64_t w_next;                 /* the writer's next seq: since + 1 and
                                   * what it committed since */
  done_group done[DONE_MAX];      /* finished groups for the loop thread */
  size_t done_head;               /* the first of them */
  size_t done_n;                  /* how many */
  uv_async_t done_async;          /* wakes the loop thread for them */
  int w_held;                     /* done_async keeps the loop alive */
  uv_prepare_t turn_end;          /* closes the open run each loop turn */
  uv_thread_t w_thread;           /* the writer */
  uv_cond_t w_wake;               /* wakes it */
  int w_waiting;                  /* it waits on w_wake */
  int w_active;                   /* it is committing a group */
  int w_stop;                     /* it is to end */
  int threaded;                   /* groups commit on the writer thread
                                   * (its handles exist): a store whose
                                   * writes do not run inline, written */
  uv_idle_t kick;                 /* runs inline stores' groups */
  flume_watch *watches;           /* since observers */
  int notifying;                  /* inside notify(): defer frees */
  flume_iter *iters;              /* open iterators */
  const flume__part_ops *part_ops[FLUME__PARTS_MAX]; /* attached parts */
  void *parts[FLUME__PARTS_MAX];  /* their state, in attach order */
  int nparts;                     /* how many */
  flume__route_fn route;          /* where appends go instead of the
                                   * writer queue (a remote log), or NULL */
  void *route_ctx;                /* its pointer */
  size_t run_max;                 /* bytes a run of single appends may
                                   * hold (with the route's per-value
                                   * overhead, when routed) */
  char errmsg[FLUME__ERRMSG_SIZE]; /* flume_db_errmsg() */
  int readonly;                   /* opened read-only: another process
                                   * (or none) writes */
  uint64_t session;               /* writer: this opening's random id,
                                   * stored as meta "writer" */
  flume_log_cb on_log;            /* view scripts' messages, or NULL */
  void *on_log_ctx;               /* its ctx */
  uint64_t seen_txn;              /* read-only: the store's last commit
                                   * this handle has looked at */
  uv_timer_t poll;                /* read-only: looks for new commits
                                   * while a watch waits */
  int handles;                    /* handles still closing */
  int closing;                    /* flume_db_close() was called */
  int close_started;              /* the handles are being closed */
  int parts_stopped;              /* the parts' before hooks have run */
  flume_close_cb close_cb;        /* called once closed */
  void *close_ctx;
#ifdef FLUME_TEST_HOOKS
  atomic_int fail_err;            /* injected commit failure */
  atomic_int fail_count;          /* commits still to fail (set on the
                                   * loop thread, used by the writer) */
#endif
};

FLUME_API void flume_db_options_init(flume_db_options *opts) {
  memset(opts, 0, sizeof *opts);
  opts->sync = 1;
}

FLUME_API void flume_iter_options_init(flume_iter_options *opts) {
  opts->gte = 0;
  opts->lte = INT64_MAX;
  opts->reverse = 0;
  opts->limit = -1;
}

FLUME_API void flume_free(void *p) { free(p); }

const flume__store_ops *flume__db_ops(flume_db *db) { return db->ops; }
flume__store *flume__db_store(flume_db *db) { return db->store; }
uv_loop_t *flume__db_loop(flume_db *db) { return db->loop; }

int flume__db_attach(flume_db *db, const flume__part_ops *ops, void *part) {
  if (db->closing) return FLUME_ECLOSED;
  if (flume__db_part(db, ops)) return FLUME_EEXIST;
  if (db->nparts == FLUME__PARTS_MAX) return FLUME_ENOMEM;
  db->part_ops[db->nparts] = ops;
  db->parts[db->nparts++] = part;
  return 0;
}

void flume__db_detach(flume_db *db, const flume__part_ops *ops) {
  for (int i = 0; i < db->nparts; i++) {
    if (db->part_ops[i] != ops) continue;
    for (int j = i + 1; j < db->nparts; j++) {
      db->part_ops[j - 1] = db->part_ops[j];
      db->parts[j - 1] = db->parts[j];
    }
    db->nparts--;
    return;
  }
}

void *flume__db_part(flume_db *db, const flume__part_ops *ops) {
  for (int i = 0; i < db->nparts; i++)
    if (db->part_ops[i] == ops) return db->parts[i];
  return NULL;
}

char *flume__db_errbuf(flume_db *db) { return db->errmsg; }

int flume__db_readonly(const flume_db *db) { return db->readonly; }
uint64_t flume__db_session(const flume_db *db) { return db->session; }

flume_log_cb flume__db_on_log(const flume_db *db, void **ctx) {
  *ctx = db->on_log_ctx;
  return db->on_log;
}

FLUME_API const char *flume_db_errmsg(flume_db *db) {
  return db ? db->errmsg : "";
}

FLUME_API const char *flume_db_codec(const flume_db *db) { return db->codec; }
FLUME_API int flume_db_is_memory(const flume_db *db) {
  return db->ops == &flume__store_memory;
}
FLUME_API int64_t flume_db_since(const flume_db *db) { return db->since; }

/* Reads or creates the metadata: format version and codec name. */
static int init_meta(flume_db *db, const char *codec, char found[64]) {
  const flume__store_ops *ops = db->ops;
  flume__txn *txn;
  flume__table meta;
  flume__slice v;
  int rc = ops->txn_begin(
      db->store, db->readonly ? FLUME__TXN_READ : FLUME__TXN_WRITE, &txn);
  if (rc) return rc;
  rc = ops->table_open(txn, FLUME__META_TABLE, !db->readonly, &meta);
  if (rc == FLUME_ENOTFOUND) rc = FLUME_ECORRUPT; /* a log, no metadata */
  if (rc) goto fail;
  rc = ops->get(txn, meta, (flume__slice){FLUME__META_FORMAT, strlen(FLUME__META_FORMAT)}, &v);
  if (rc == FLUME_ENOTFOUND && db->readonly) {
    rc = FLUME_ECORRUPT; /* a reader creates nothing */
    goto fail;
  }
  if (rc == FLUME_ENOTFOUND) {
    int64_t last;
    if ((rc = ops->log_last(txn, &last))) goto fail;
    if (last != -1) {
      rc = FLUME_ECORRUPT; /* a log without metadata is not ours */
      goto fail;
    }
    const char *name = codec ? codec : "raw";
    if ((rc = ops->put(txn, meta, (flume__slice){FLUME__META_FORMAT, strlen(FLUME__META_FORMAT)},
                       (flume__slice){FLUME__FORMAT, strlen(FLUME__FORMAT)})) ||
        (rc = ops->put(txn, meta, (flume__slice){FLUME__META_CODEC, strlen(FLUME__META_CODEC)},
                       (flume__slice){name, strlen(name)})))
      goto fail;
    strcpy(db->codec, name);
  } else if (rc) {
    goto fail;
  } else {
    if (v.size != strlen(FLUME__FORMAT) ||
        memcmp(v.data, FLUME__FORMAT, v.size) != 0) {
      rc = FLUME_EFORMAT;
      goto fail;
    }
    rc = ops->get(txn, meta, (flume__slice){FLUME__META_CODEC, strlen(FLUME__META_CODEC)}, &v);
    if (rc == FLUME_ENOTFOUND || (rc == 0 && v.size >= sizeof db->codec))
      rc = FLUME_ECORRUPT;
    if (rc) goto fail;
    memcpy(db->codec, v.data, v.size);
    db->codec[v.size] = '\0';
    if (codec && strcmp(codec, db->codec) != 0) {
      if (found) strcpy(found, db->codec);
      rc = FLUME_ECODEC;
      goto fail;
    }
  }
  db->msgpack = strcmp(db->codec, "msgpack") == 0;
  if ((rc = ops->log_last(txn, &db->since))) goto fail;
  if (db->readonly) {
    ops->txn_abort(txn);
    return 0;
  }
  /* This opening's id: a view's catalogue entry names the session that
   * attached it, so a reader can tell a view the running writer keeps up
   * from one a writer that is gone left behind. */
  if (uv_random(NULL, NULL, &db->session, sizeof db->session, 0, NULL))
    db->session = uv_hrtime() ^ ((uint64_t)getpid() << 32);
  rc = ops->put(txn, meta,
                (flume__slice){FLUME__META_WRITER, strlen(FLUME__META_WRITER)},
                (flume__slice){&db->session, sizeof db->session});
  if (rc) goto fail;
  return ops->txn_commit(txn);
fail:
  ops->txn_abort(txn);
  return rc;
}

/* ---- read-only handles: following another process's writer ------------ */

/* How often a read-only handle with a waiting watch looks for commits. */
#define POLL_MS 5

static void notify(flume_db *db, int status, int64_t since);
static int writer_start(flume_db *db);
static void writer_stop(flume_db *db);
static void writer_handles(flume_db *db);

/* Brings a read-only handle's since up to what the store has committed:
 * one cheap stat, and a read of the log's end only when a commit
 * happened. Watches hear of it. */
void flume__db_refresh(flume_db *db) {
  flume__store_stat st;
  if (!db->readonly || db->closing) return;
  if (db->ops->stat(db->store, &st) || st.txn_id == db->seen_txn) return;
  flume__txn *txn;
  int64_t last;
  if (db->ops->txn_begin(db->store, FLUME__TXN_READ, &txn)) return;
  /* What this snapshot holds is seen, not what stat said: a commit is in
   * stat a moment before new readers see it (store.h), and the next look
   * catches it. */
  uint64_t seen = db->ops->txn_snapshot(txn);
  int rc = db->ops->log_last(txn, &last);
  db->ops->txn_abort(txn);
  if (rc) return;
  db->seen_txn = seen;
  if (last > db->since) {
    db->since = last;
    notify(db, 0, last);
  }
}

/* The poll keeps the loop alive only while somebody waits for commits. */
static void poll_ref(flume_db *db) {
  if (!db->readonly || db->closing) return;
  if (db->watches) uv_ref((uv_handle_t *)&db->poll);
  else uv_unref((uv_handle_t *)&db->poll);
}

static void on_poll(uv_timer_t *t) {
  flume_db *db = t->data;
  if (db->watches) flume__db_refresh(db);
}

static void start_poll(flume_db *db) {
  db->seen_txn = 0; /* the first look reads the log's end */
  uv_timer_init(db->loop, &db->poll);
  db->poll.data = db;
  uv_timer_start(&db->poll, on_poll, POLL_MS, POLL_MS);
  poll_ref(db);
}

int flume__db_open(uv_loop_t *loop, const char *path,
                   const flume_db_options *opts, flume_db **out,
                   char found[64], char *why, flume__db_attach_fn attach) {
  flume_db_options defaults;
  if (loop == NULL || out == NULL) return FLUME_EINVAL;
  if (opts == NULL) {
    flume_db_options_init(&defaults);
    opts = &defaults;
  }
  if (opts->codec && (opts->codec[0] == '\0' || strlen(opts->codec) >= 64))
    return FLUME_EINVAL;
  /* An empty path names no folder; a map size past half the address space
   * is a negative number cast to size_t, not a size anyone can map. */
  if (path && path[0] == '\0') return FLUME_EINVAL;
  if (opts->map_size > SIZE_MAX / 2) return FLUME_EINVAL;
  /* A remote log is cached in a folder by its one writer. */
  if (opts->remote_urls && (path == NULL || opts->readonly))
    return FLUME_EINVAL;

  flume_db *db = calloc(1, sizeof *db);
  if (db == NULL) return FLUME_ENOMEM;
  if (uv_mutex_init(&db->qlock)) {
    free(db);
    return FLUME_ENOMEM;
  }
  db->loop = loop;
  db->ops = path ? &flume__store_lmdb : &flume__store_memory;
  db->readonly = opts->readonly != 0;
  db->on_log = opts->on_log;
  db->on_log_ctx = opts->on_log_ctx;
  flume__store_opts so = {.sync = opts->sync != 0, .map_size = opts->map_size,
                          .readonly = db->readonly};
  int rc = db->ops->open(path, &so, &db->store);
  if (rc) {
    uv_mutex_destroy(&db->qlock);
    free(db);
    return rc;
  }
  if ((rc = init_meta(db, opts->codec, found))) {
    db->ops->close(db->store);
    uv_mutex_destroy(&db->qlock);
    free(db);
    return rc;
  }
  db->w_next = db->since + 1;
  db->run_max = RUN_MAX_BYTES;
  /* The writer thread before the parts: undone without the loop. */
  db->threaded = !db->readonly && !db->ops->inline_writes;
  if (db->threaded && (rc = writer_start(db))) {
    db->ops->close(db->store);
    uv_mutex_destroy(&db->qlock);
    free(db);
    return rc;
  }
  /* What opening adds (a remote log routes this handle's appends through
   * its outbox; it attaches itself as a part, so close reaches it like any
   * other); it starts its handles only once nothing else can fail. */
  if (attach && (rc = attach(db, opts, why))) {
    if (db->threaded) writer_stop(db);
    db->ops->close(db->store);
    uv_mutex_destroy(&db->qlock);
    free(db);
    return rc;
  }
  uv_idle_init(loop, &db->kick);
  db->kick.data = db;
  if (db->threaded) writer_handles(db);
  if (db->readonly) start_poll(db);
  *out = db;
  return 0;
}

/* ---- since watchers ---------------------------------------------------- */

static void notify(flume_db *db, int status, int64_t since) {
  db->notifying++;
  for (flume_watch *w = db->watches; w; w = w->next)
    if (!w->dead) w->cb(w->ctx, status, since);
  if (--db->notifying) return;
  for (flume_watch *w = db->watches, *next; w; w = next) {
    next = w->next;
    if (!w->dead && status == 0) continue;
    if (w->prev) w->prev->next = w->next;
    else db->watches = w->next;
    if (w->next) w->next->prev = w->prev;
    free(w);
  }
  poll_ref(db); /* a watch stopped during the notification */
}

FLUME_API int flume_db_on_since(flume_db *db, flume_since_cb cb, void *ctx,
                                flume_watch **out) {
  if (db->closing) return FLUME_ECLOSED;
  if (cb == NULL) return FLUME_EINVAL;
  flume_watch *w = calloc(1, sizeof *w);
  if (w == NULL) return FLUME_ENOMEM;
  w->db = db;
  w->cb = cb;
  w->ctx = ctx;
  w->next = db->watches;
  if (db->watches) db->watches->prev = w;
  db->watches = w;
  if (out) *out = w;
  poll_ref(db);
  return 0;
}

FLUME_API void flume_watch_stop(flume_watch *w) {
  if (w == NULL) return;
  flume_db *db = w->db;
  if (db->notifying) {
    w->dead = 1;
    return;
  }
  if (w->prev) w->prev->next = w->next;
  else db->watches = w->next;
  if (w->next) w->next->prev = w->prev;
  free(w);
  poll_ref(db);
}

/* ---- the writer -------------------------------------------------------- */

static void kick(flume_db *db);
static int writer_idle(flume_db *db);
static int run_fail_one(flume__job *job, int rc);

/* Commits a group in one write transaction; on the writer. Sets *next to
 * the seq after it. */
static int run_group(flume_db *db, flume__job *group, int64_t *next_out) {
  const flume__store_ops *ops = db->ops;
  for (int grown = 0;;) {
    flume__txn *txn;
    flume__job *failed = NULL;
    int64_t next = db->w_next;
    int rc = ops->txn_begin(db->store, FLUME__TXN_WRITE, &txn);
    if (rc) return rc;
    for (flume__job *j = group; j && rc == 0; j = j->next) {
      if (j->status) continue; /* failed in an earlier attempt */
      rc = j->run(j, txn, &next);
      if (rc) failed = j;
    }
#ifdef FLUME_TEST_HOOKS
    if (rc == 0 && db->fail_count > 0) {
      db->fail_count--;
      ops->txn_abort(txn);
      return db->fail_err;
    }
#endif
    if (rc == 0) {
      rc = ops->txn_commit(txn);
      if (rc == 0) {
        db->w_next = *next_out = next;
        return 0;
      }
      if (rc != FLUME_EMAPFULL) return rc;
    } else {
      ops->txn_abort(txn);
    }
    if (rc == FLUME_EMAPFULL) {
      /* Doubling from the initial map reaches any disk long before this. */
      if (++grown > 40) return FLUME_ENOSPC;
      if ((rc = ops->grow(db->store))) return rc;
      continue;
    }
    /* Only this job (of a run, this value) fails; retry the rest. */
    if (run_fail_one(failed, rc)) failed->status = rc;
  }
}

/* A committed (or failed) group's completions; on the loop thread, in
 * commit order. */
static void finish_group(flume_db *db, const done_group *g) {
  if (g->status == 0 && g->next - 1 != db->since) {
    db->since = g->next - 1;
    notify(db, 0, db->since);
  }
  for (flume__job *j = g->jobs, *next; j; j = next) {
    next = j->next;
    j->done(j, g->status ? g->status : j->status);
  }
}

/* The open run as a stop for the writer: the queue's tail that the loop
 * thread may still add to. (A remote log's open run is its outbox's.) */
static flume__job *open_stop(const flume_db *db) {
  return db->route ? NULL : (flume__job *)db->open_run;
}

/* Moves jobs from the queue into a new group, up to its byte bound and
 * never past stop; with the queue locked (or on an inline store's loop
 * thread). Returns NULL if there is nothing to take. */
static flume__job *take_group(flume_db *db, const flume__job *stop) {
  size_t bytes = 0;
  flume__job *head = db->queue_head, *last = NULL, *j = head;
  while (j && j != stop &&
         (last == NULL || bytes + j->bytes <= GROUP_MAX_BYTES)) {
    bytes += j->bytes;
    if (!db->route && j == (flume__job *)db->open_run)
      db->open_run = NULL; /* closed */
    last = j;
    j = j->next;
  }
  if (last == NULL) return NULL;
  last->next = NULL;
  db->queue_head = j;
  if (j == NULL) db->queue_tail = NULL;
  return head;
}

/* The writer waits for work, with room to hand back what it does. */
static int writer_hungry(const flume_db *db) {
  return db->w_waiting && db->done_n < DONE_MAX;
}

/* Wakes the writer if it waits and has something to take; queue locked. */
static void wake_writer(flume_db *db) {
  if (writer_hungry(db) && db->queue_head &&
      db->queue_head != open_stop(db)) {
    db->w_waiting = 0; /* woken: what is queued next waits for it */
    uv_cond_signal(&db->w_wake);
  }
}

/* The writer thread: takes whatever the queue holds up to the open run,
 * commits it and hands it back, until it is told to stop. It waits when
 * there is nothing to take or the loop thread has not taken back enough
 * of the finished groups. */
static void writer_main(void *arg) {
  flume_db *db = arg;
  uv_mutex_lock(&db->qlock);
  for (;;) {
    flume__job *group = NULL;
    if (db->queue_head && db->done_n < DONE_MAX)
      group = take_group(db, open_stop(db));
    if (group == NULL) {
      if (db->w_stop) break;
      db->w_waiting = 1;
      uv_cond_wait(&db->w_wake, &db->qlock);
      db->w_waiting = 0;
      continue;
    }
    db->w_active = 1;
    uv_mutex_unlock(&db->qlock);
    done_group g = {group, 0, 0};
    g.status = run_group(db, group, &g.next);
    uv_mutex_lock(&db->qlock);
    db->done[(db->done_head + db->done_n++) % DONE_MAX] = g;
    db->w_active = 0;
    uv_async_send(&db->done_async);
  }
  uv_mutex_unlock(&db->qlock);
}

/* The completions keep the loop alive from a job's queueing until the
 * writer is idle again; on the loop thread. */
static void hold_loop(flume_db *db, int hold) {
  if (hold != db->w_held) {
    db->w_held = hold;
    if (hold) uv_ref((uv_handle_t *)&db->done_async);
    else uv_unref((uv_handle_t *)&db->done_async);
  }
}

/* Runs the completions of the groups the writer finished. Each is taken
 * out under the lock and completed outside it (a completion may append). */
static void on_done(uv_async_t *h) {
  flume_db *db = h->data;
  for (;;) {
    uv_mutex_lock(&db->qlock);
    if (db->done_n == 0) {
      uv_mutex_unlock(&db->qlock);
      break;
    }
    done_group g = db->done[db->done_head];
    db->done_head = (db->done_head + 1) % DONE_MAX;
    db->done_n--;
    wake_writer(db); /* it may have waited for room */
    uv_mutex_unlock(&db->qlock);
    finish_group(db, &g);
  }
  if (writer_idle(db)) hold_loop(db, 0);
  kick(db);
}

/* At the end of each loop turn, the single appends it gathered are closed
 * into a job the writer may take. */
static void on_turn_end(uv_prepare_t *h) {
  flume_db *db = h->data;
  if (db->open_run == NULL || db->route) return;
  uv_mutex_lock(&db->qlock);
  db->open_run = NULL;
  wake_writer(db);
  uv_mutex_unlock(&db->qlock);
}

/* Starts the writer thread (a store that commits on a thread of its own,
 * opened for writing); it waits for jobs, which come once the open is
 * over. Nothing of the loop's yet: writer_stop undoes it. */
int flume__thread_start(uv_thread_t *t, void (*fn)(void *), void *arg) {
  /* Made with every signal blocked, the thread takes none: they go to
   * the embedder's threads (a Ctrl-C reaches the loop thread). */
  sigset_t all, was;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &was);
  int rc = uv_thread_create(t, fn, arg);
  pthread_sigmask(SIG_SETMASK, &was, NULL);
  return rc;
}

static int writer_start(flume_db *db) {
  if (uv_cond_init(&db->w_wake)) return FLUME_ENOMEM;
  int rc = flume__thread_start(&db->w_thread, writer_main, db);
  if (rc) {
    uv_cond_destroy(&db->w_wake);
    return FLUME_ENOMEM;
  }
  return 0;
}

/* The writer's loop handles, once the open cannot fail. The async keeps
 * the loop alive only while the writer has work (hold_loop); the turn's
 * end never does. */
static void writer_handles(flume_db *db) {
  uv_async_init(db->loop, &db->done_async, on_done);
  db->done_async.data = db;
  uv_unref((uv_handle_t *)&db->done_async);
  uv_prepare_init(db->loop, &db->turn_end);
  db->turn_end.data = db;
  uv_prepare_start(&db->turn_end, on_turn_end);
  uv_unref((uv_handle_t *)&db->turn_end);
}

/* Stops the writer thread, once it has nothing left (closing). */
static void writer_stop(flume_db *db) {
  uv_mutex_lock(&db->qlock);
  db->w_stop = 1;
  if (db->w_waiting) uv_cond_signal(&db->w_wake);
  uv_mutex_unlock(&db->qlock);
  uv_thread_join(&db->w_thread);
  uv_cond_destroy(&db->w_wake);
}

/* Nothing queued, being written or waiting for its completion. */
static int writer_idle(flume_db *db) {
  if (!db->threaded) return !db->busy && db->queue_head == NULL;
  uv_mutex_lock(&db->qlock);
  int idle = db->queue_head == NULL && !db->w_active && db->done_n == 0;
  uv_mutex_unlock(&db->qlock);
  return idle;
}

/* An inline store's group, from an idle callback on the loop thread. */
static void on_kick(uv_idle_t *h) {
  flume_db *db = h->data;
  uv_idle_stop(h);
  done_group g = {take_group(db, NULL), 0, 0};
  g.status = run_group(db, g.jobs, &g.next);
  db->busy = 0;
  finish_group(db, &g);
  kick(db);
}

static void start_close(flume_db *db);

static void close_step(flume_db *db);

/* After a job was queued or a group finished: an inline store's next
 * group is started, and a close goes on once the writer is idle. */
static void kick(flume_db *db) {
  if (!db->threaded && !db->busy && db->queue_head) {
    /* Taken when the idle callback runs, so everything queued in this loop
     * turn rides along. */
    db->busy = 1;
    uv_idle_start(&db->kick, on_kick);
    return;
  }
  if (db->closing && !db->close_started && writer_idle(db)) close_step(db);
}

static int append_run(flume__job *job, flume__txn *txn, int64_t *next_seq);
static int route(flume_db *db, flume__job *job);

/* Queues a job; open: it is a run single appends may join (the loop
 * thread's until another job follows it, its turn ends or a group takes
 * it). */
static int queue_job(flume_db *db, flume__job *job, int open) {
  if (db->readonly) return FLUME_EREADONLY;
  /* Callers' appends are refused from flume_db_close() on (they check
   * closing); the parts' own jobs (checkpoints) until the handles close. */
  if (db->close_started) return FLUME_ECLOSED;
  /* A remote log's appends go to its route, whichever door they came
   * through; the writer stores only what the stream delivers. */
  if (db->route && job->run == append_run) {
    if (open) db->open_run = (struct append_job *)job;
    return route(db, job);
  }
  job->next = NULL;
  job->db = db;
  job->status = 0;
  uv_mutex_lock(&db->qlock);
  if (db->queue_tail) db->queue_tail->next = job;
  else db->queue_head = job;
  db->queue_tail = job;
  /* A job after the open run closes it: one caller's values keep their
   * order. A writer idle with nothing to hand back (as the loop thread
   * knows it: w_held) takes a new run at once; the values after it ride
   * its next group. */
  if (!db->route)
    db->open_run = open && (!db->threaded || db->w_held)
                       ? (struct append_job *)job : NULL;
  if (db->threaded) wake_writer(db);
  uv_mutex_unlock(&db->qlock);
  if (db->threaded) hold_loop(db, 1);
  else kick(db);
  return 0;
}

int flume__db_submit(flume_db *db, flume__job *job) {
  return queue_job(db, job, 0);
}

/* ---- appends ----------------------------------------------------------- */

typedef struct append_job {
  flume__job base;     /* the writer's part */
  flume_append_cb cb;  /* the caller's callback, or NULL */
  void *ctx;           /* its pointer (a run's too) */
  flume__append_run_cb run_cb; /* a run of single appends: called with
                                * each stretch of its values, or NULL */
  int64_t last_seq;    /* the batch's last seq, once written */
  size_t n;            /* values in the batch */
  size_t *lens;        /* their lengths, in the same allocation (a run's
                        * grow: lens and data are allocations of their own) */
  char *data;          /* their bytes, back to back, likewise */
  size_t cap_n;        /* a run: room in lens */
  size_t cap_data;     /* a run: room in data */
  size_t len_data;     /* a run: bytes in data */
  int *failed;         /* a run: each value's own failure, once one failed
                        * (the others are retried without it), or NULL */
  size_t fail_at;      /* the value append_run failed on */
  int64_t first_seq;   /* a run: the seq of its first value, once written */
  int in_place;        /* a batch of flume__db_batch_submit: lens and data
                        * (of cap_n and cap_data) go back to the spare */
} append_job;

static int append_run(flume__job *job, flume__txn *txn, int64_t *next_seq) {
  append_job *a = (append_job *)job;
  const flume__store_ops *ops = job->db->ops;
  const char *p = a->data;
  int64_t seq = *next_seq;
  a->first_seq = seq;
  for (size_t i = 0; i < a->n; i++) {
    size_t len = a->lens[i];
    if (a->failed && a->failed[i]) {
      p += len; /* failed alone in an earlier attempt: not written */
      continue;
    }
    int rc = ops->log_append(txn, seq++, (flume__slice){p, len});
    if (rc) {
      a->fail_at = i;
      return rc;
    }
    p += len;
  }
  *next_seq = seq;
  a->last_seq = seq - 1;
  return 0;
}

/* A run whose value failed: that value alone fails and the group is
 * retried, as if each value were a job of its own. Returns 0 if done so. */
static int run_fail_one(flume__job *job, int rc) {
  append_job *a = (append_job *)job;
  if (job->run != append_run || a->run_cb == NULL || a->n < 2) return -1;
  if (a->failed == NULL && (a->failed = calloc(a->n, sizeof(int))) == NULL)
    return -1;
  a->failed[a->fail_at] = rc;
  return 0;
}

static void append_done(flume__job *job, int status) {
  append_job *a = (append_job *)job;
  if (a->run_cb) {
    /* The values in stretches of one outcome: written ones have
     * consecutive seqs. */
    int64_t seq = a->first_seq;
    for (size_t i = 0; i < a->n;) {
      int st = status ? status : a->failed ? a->failed[i] : 0;
      size_t k = i + 1;
      while (k < a->n &&
             (status ? status : a->failed ? a->failed[k] : 0) == st)
        k++;
      a->run_cb(a->ctx, st, st ? -1 : seq, k - i);
      if (st == 0) seq += (int64_t)(k - i);
      i = k;
    }
    free(a->failed);
    flume_db *db = job->db;
    if (db->spare_run == NULL && !db->closing) {
      /* Kept for the next run: its buffers are already grown. */
      a->failed = NULL;
      a->n = a->len_data = 0;
      a->base.bytes = 0;
      db->spare_run = a;
      return;
    }
    free(a->lens);
    free(a->data);
  } else {
    if (a->cb) a->cb(a->ctx, status, status ? -1 : a->last_seq);
    if (a->in_place) {
      flume__batch b = {{a->data, 0, a->cap_data}, a->lens, 0, a->cap_n};
      flume__db_batch_give(job->db, &b);
    }
  }
  free(a);
}

static void free_spare(flume_db *db) {
  flume__batch *b = &db->spare_batch;
  flume__buf_free(&b->data);
  free(b->ends);
  b->ends = NULL;
  b->n = b->cap_n = 0;
  append_job *a = db->spare_run;
  db->spare_run = NULL;
  if (a == NULL) return;
  free(a->lens);
  free(a->data);
  free(a);
}

/* ---- batches encoded in place ------------------------------------------ */

/* Past this, a finished batch's buffers are freed rather than kept. */
#define SPARE_BATCH_MAX ((size_t)64 << 20)

void flume__db_batch_take(flume_db *db, flume__batch *b) {
  *b = db->spare_batch;
  b->data.len = 0;
  b->n = 0;
  db->spare_batch = (flume__batch){FLUME__BUF_INIT, NULL, 0, 0};
}

int flume__batch_end_value(flume__batch *b) {
  if (b->n == b->cap_n) {
    size_t cap = b->cap_n ? b->cap_n * 2 : 256;
    size_t *e = realloc(b->ends, cap * sizeof *e);
    if (e == NULL) return FLUME_ENOMEM;
    b->ends = e;
    b->cap_n = cap;
  }
  b->ends[b->n++] = b->data.len;
  return 0;
}

void flume__db_batch_give(flume_db *db, flume__batch *b) {
  flume__batch *spare = &db->spare_batch;
  if (spare->data.data == NULL && spare->ends == NULL && !db->closing &&
      b->data.cap <= SPARE_BATCH_MAX) {
    *spare = *b;
  } else {
    flume__buf_free(&b->data);
    free(b->ends);
  }
  *b = (flume__batch){FLUME__BUF_INIT, NULL, 0, 0};
}

int flume__db_batch_submit(flume_db *db, flume__batch *b, flume_append_cb cb,
                           void *ctx) {
  if (db->closing) return FLUME_ECLOSED;
  if (db->readonly) return FLUME_EREADONLY;
  if (b->n == 0) return FLUME_EINVAL;
  append_job *a = calloc(1, sizeof *a);
  if (a == NULL) return FLUME_ENOMEM;
  /* The ends become lengths, in place. */
  for (size_t i = b->n; i-- > 1;) b->ends[i] -= b->ends[i - 1];
  a->base.run = append_run;
  a->base.done = append_done;
  a->base.bytes = b->data.len + b->n * 16;
  a->cb = cb;
  a->ctx = ctx;
  a->n = b->n;
  a->lens = b->ends;
  a->data = b->data.data;
  a->cap_n = b->cap_n;
  a->cap_data = b->data.cap;
  a->in_place = 1;
  *b = (flume__batch){FLUME__BUF_INIT, NULL, 0, 0};
  return flume__db_submit(db, &a->base); /* cannot fail: checked above */
}

/* Makes room in a run for one more value of len bytes. */
static int run_reserve(append_job *a, size_t len) {
  if (a->n == a->cap_n) {
    size_t cap = a->cap_n ? a->cap_n * 2 : 64;
    size_t *l = realloc(a->lens, cap * sizeof *l);
    if (l == NULL) return FLUME_ENOMEM;
    a->lens = l;
    a->cap_n = cap;
  }
  if (a->cap_data - a->len_data < len) {
    size_t need = a->len_data + len;
    size_t cap = a->cap_data ? a->cap_data : 4096;
    while (cap < need) cap *= 2;
    char *d = realloc(a->data, cap);
    if (d == NULL) return FLUME_ENOMEM;
    a->data = d;
    a->cap_data = cap;
  }
  return 0;
}

/* ---- routed appends (a remote log) -------------------------------------- */

void flume__db_route_appends(flume_db *db, flume__route_fn fn, void *ctx,
                             size_t run_max) {
  db->route = fn;
  db->route_ctx = ctx;
  db->run_max = run_max < RUN_MAX_BYTES ? run_max : RUN_MAX_BYTES;
}

/* Hands a new append job to the route (from flume__db_submit); a run may
 * no longer be joined once another job went after it, so that one
 * caller's values keep their order. On failure the job is freed. */
static int route(flume_db *db, flume__job *job) {
  job->next = NULL;
  job->db = db;
  job->status = 0;
  if ((flume__job *)db->open_run != job) db->open_run = NULL;
  int rc = db->route(db->route_ctx, job);
  if (rc) {
    if ((flume__job *)db->open_run == job) db->open_run = NULL;
    append_job *a = (append_job *)job;
    if (a->in_place) {
      /* The caller emptied its batch into the job: the buffers go back
       * to the database's spare. */
      flume__batch b = {{a->data, 0, a->cap_data}, a->lens, 0, a->cap_n};
      flume__db_batch_give(db, &b);
    } else if (a->run_cb) {
      free(a->lens);
      free(a->data);
    }
    free(a);
  }
  return rc;
}

int flume__db_routed(const flume_db *db) { return db->route != NULL; }

void flume__db_run_taken(flume_db *db, flume__job *job) {
  if ((flume__job *)db->open_run == job) db->open_run = NULL;
}

void flume__append_values(flume__job *job, size_t *n, const size_t **lens,
                          const char **data) {
  append_job *a = (append_job *)job;
  *n = a->n;
  *lens = a->lens;
  *data = a->data;
}

void flume__append_resolve(flume__job *job, int64_t first_seq) {
  append_job *a = (append_job *)job;
  a->first_seq = first_seq;
  a->last_seq = first_seq + (int64_t)a->n - 1;
}

int flume__db_append_one(flume_db *db, const void *data, size_t len,
                         flume__append_run_cb cb, void *ctx) {
  if (db->closing) return FLUME_ECLOSED;
  if (db->readonly) return FLUME_EREADONLY;
  if (cb == NULL || (data == NULL && len)) return FLUME_EINVAL;
  /* Joins the queue's last job if it is an open run of the same caller:
   * single appends of one loop turn ride one job, no allocation each. */
  append_job *a = db->open_run;
  int fresh = 0;
  /* Routed runs count their values' framing too (a remote envelope's u32
   * lengths), so a run always fits the route's bound. */
  size_t over = db->route ? sizeof(uint32_t) * (a ? a->n + 1 : 1) : 0;
  if (a == NULL || a->run_cb != cb || a->ctx != ctx ||
      a->len_data + len + over > db->run_max) {
    if ((a = db->spare_run) != NULL) db->spare_run = NULL;
    else if ((a = calloc(1, sizeof *a)) == NULL) return FLUME_ENOMEM;
    a->base.run = append_run;
    a->base.done = append_done;
    a->run_cb = cb;
    a->ctx = ctx;
    fresh = 1;
  }
  if (run_reserve(a, len)) {
    if (fresh) {
      free(a->lens);
      free(a->data);
      free(a);
    }
    return FLUME_ENOMEM;
  }
  a->lens[a->n++] = len;
  if (len) memcpy(a->data + a->len_data, data, len);
  a->len_data += len;
  a->base.bytes += len + 16;
  if (!fresh) return 0;
  /* Cannot fail unless routed (route() then frees the job). */
  return queue_job(db, &a->base, 1);
}

FLUME_API int flume_db_append(flume_db *db, const flume_buf *vals, size_t n,
                              flume_append_cb cb, void *ctx) {
  if (db->closing) return FLUME_ECLOSED;
  if (db->readonly) return FLUME_EREADONLY;
  if (n == 0 || vals == NULL) return FLUME_EINVAL;
  /* The job holds the header, n lengths and the bytes in one block; lengths
   * that cannot all fit in the address space (their sum wraps) are no
   * buffers anyone holds. */
  size_t total = 0, room = SIZE_MAX - sizeof(append_job);
  for (size_t i = 0; i < n; i++) {
    if (vals[i].base == NULL && vals[i].len) return FLUME_EINVAL;
    if (vals[i].len > room - total) return FLUME_EINVAL;
    total += vals[i].len;
  }
  /* A msgpack database takes only values its views can decode: bytes that
   * are not exactly one of them would fail every view at that seq, in a
   * log that never forgets. (The Lua module's encoders write only such
   * values; they append through the paths below, unchecked.) */
  if (db->msgpack)
    for (size_t i = 0; i < n; i++)
      if (!flume__mp_valid(vals[i].base, vals[i].len)) return FLUME_EENCODE;
  if (n > (room - total) / (sizeof(size_t) + 16)) return FLUME_EINVAL;
  append_job *a = malloc(sizeof *a + n * sizeof(size_t) + total);
  if (a == NULL) return FLUME_ENOMEM;
  a->base.run = append_run;
  a->base.done = append_done;
  a->base.bytes = total + n * 16;
  a->cb = cb;
  a->ctx = ctx;
  a->run_cb = NULL;
  a->failed = NULL;
  a->in_place = 0;
  a->n = n;
  a->lens = (size_t *)(a + 1);
  a->data = (char *)(a->lens + n);
  char *p = a->data;
  for (size_t i = 0; i < n; i++) {
    a->lens[i] = vals[i].len;
    if (vals[i].len) memcpy(p, vals[i].base, vals[i].len);
    p += vals[i].len;
  }
  return flume__db_submit(db, &a->base);
}

/* ---- reads ------------------------------------------------------------- */

/* The value at seq (acknowledged), without a read-only handle's refresh:
 * called from inside a view's script call (a kept lazy value read again),
 * where a refresh's since notifications must not run. */
int flume__db_read_one(flume_db *db, int64_t seq, flume__visit_fn fn,
                       void *ctx) {
  if (db->close_started) return FLUME_ECLOSED;
  if (seq < 0 || seq > db->since) return FLUME_ENOTFOUND;
  const flume__store_ops *ops = db->ops;
  flume__txn *txn;
  int rc = ops->txn_begin(db->store, FLUME__TXN_READ, &txn);
  if (rc) return rc;
  uint64_t key = (uint64_t)seq;
  flume__slice v;
  rc = ops->get(txn, FLUME__TABLE_LOG, (flume__slice){&key, sizeof key}, &v);
  if (rc == 0) rc = fn(ctx, seq, v.data, v.size);
  ops->txn_abort(txn);
  return rc == FLUME_ENOTFOUND ? FLUME_ECORRUPT : rc;
}

/* The entries from start on (backwards when reverse) until seq `end` or
 * max of them, in one read transaction of flags; see flume__db_read. */
static int read_range(const flume__store_ops *ops, flume__store *store,
                      int flags, int64_t start, int64_t end, int reverse,
                      size_t max, flume__visit_fn fn, void *ctx,
                      size_t *count) {
  flume__txn *txn;
  flume__cursor *cur;
  int rc = ops->txn_begin(store, flags, &txn);
  if (rc) return rc;
  if (max == 1 || start == end) {
    /* One entry (get): a point lookup, no cursor. */
    uint64_t key = (uint64_t)start;
    flume__slice v;
    rc = ops->get(txn, FLUME__TABLE_LOG, (flume__slice){&key, sizeof key}, &v);
    if (rc == 0 && (rc = fn(ctx, start, v.data, v.size)) == 0) *count = 1;
    ops->txn_abort(txn);
    return rc == FLUME_ENOTFOUND ? FLUME_ECORRUPT : rc;
  }
  if ((rc = ops->cursor_open(txn, FLUME__TABLE_LOG, &cur))) {
    ops->txn_abort(txn);
    return rc;
  }
  uint64_t key = (uint64_t)start;
  flume__slice k = {&key, sizeof key}, v;
  rc = ops->cursor_get(cur, FLUME__SET, &k, &v);
  for (int64_t seq = start; rc == 0;) {
    if (k.size != sizeof key) {
      rc = FLUME_ECORRUPT;
      break;
    }
    memcpy(&key, k.data, sizeof key);
    if ((int64_t)key != seq) {
      rc = FLUME_ECORRUPT; /* the log is dense: a gap is damage */
      break;
    }
    if ((rc = fn(ctx, seq, v.data, v.size))) break;
    ++*count;
    if (*count == max || seq == end) break;
    seq += reverse ? -1 : 1;
    rc = ops->cursor_get(cur, reverse ? FLUME__PREV : FLUME__NEXT, &k, &v);
    if (rc == FLUME_ENOTFOUND) rc = FLUME_ECORRUPT;
  }
  ops->cursor_close(cur);
  ops->txn_abort(txn);
  return rc == FLUME_ENOTFOUND && *count == 0 ? FLUME_ECORRUPT : rc;
}

int flume__db_read(flume_db *db, int64_t from, int64_t to, size_t max,
                   flume__visit_fn fn, void *ctx, size_t *count) {
  flume__db_refresh(db);
  *count = 0;
  /* Internal: the views read on while a close lets them catch up. */
  if (db->close_started) return FLUME_ECLOSED;
  int reverse = from > to;
  int64_t lo = reverse ? to : from, hi = reverse ? from : to;
  /* Readers see the log up to its since: what was acknowledged. */
  if (hi > db->since) hi = db->since;
  if (lo < 0) lo = 0;
  if (max == 0 || lo > hi) return 0;
  return read_range(db->ops, db->store, FLUME__TXN_READ, reverse ? hi : lo,
                    reverse ? lo : hi, reverse, max, fn, ctx, count);
}

int flume__db_reads_closed(const flume_db *db) { return db->close_started; }

int flume__db_can_read_ahead(const flume_db *db) {
  return db->threaded && !flume__db_routed(db);
}

int flume__db_read_ahead(flume_db *db, int64_t from, int64_t to, size_t max,
                         flume__visit_fn fn, void *ctx, size_t *count) {
  *count = 0;
  if (max == 0 || from < 0 || from > to) return 0;
  return read_range(db->ops, db->store, FLUME__TXN_READ | FLUME__TXN_OWN,
                    from, to, 0, max, fn, ctx, count);
}

int flume__db_read_seqs(flume_db *db, const int64_t *seqs, size_t n,
                        flume__visit_fn fn, void *ctx) {
  flume__db_refresh(db);
  const flume__store_ops *ops = db->ops;
  flume__txn *txn = NULL;
  if (db->close_started) return FLUME_ECLOSED;
  int rc = ops->txn_begin(db->store, FLUME__TXN_READ, &txn);
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (seqs[i] < 0 || seqs[i] > db->since) {
      rc = FLUME_ENOTFOUND;
      break;
    }
    uint64_t key = (uint64_t)seqs[i];
    flume__slice v;
    rc = ops->get(txn, FLUME__TABLE_LOG, (flume__slice){&key, sizeof key}, &v);
    if (rc == 0) rc = fn(ctx, seqs[i], v.data, v.size);
  }
  if (txn) ops->txn_abort(txn);
  return rc;
}

typedef struct many_ctx {
  flume_value_fn fn; /* the caller's */
  void *ctx;
  size_t i;          /* the index of the next seq */
} many_ctx;

static int many_one(void *p, int64_t seq, const void *data, size_t len) {
  many_ctx *m = p;
  return m->fn(m->ctx, m->i++, seq, data, len);
}

FLUME_API int flume_db_get_many(flume_db *db, const int64_t *seqs, size_t n,
                                flume_value_fn fn, void *ctx) {
  if (db == NULL || (n > 0 && (seqs == NULL || fn == NULL)))
    return FLUME_EINVAL;
  if (n == 0) return db->closing ? FLUME_ECLOSED : 0;
  many_ctx m = {fn, ctx, 0};
  return flume__db_read_seqs(db, seqs, n, many_one, &m);
}

typedef struct copy_ctx {
  void *data;  /* the copy */
  size_t len;  /* its length */
} copy_ctx;

static int copy_one(void *ctx, int64_t seq, const void *data, size_t len) {
  copy_ctx *c = ctx;
  (void)seq;
  c->data = malloc(len ? len : 1);
  if (c->data == NULL) return FLUME_ENOMEM;
  if (len) memcpy(c->data, data, len);
  c->len = len;
  return 0;
}

FLUME_API int flume_db_get(flume_db *db, int64_t seq, void **data,
                           size_t *len) {
  if (db->closing) return FLUME_ECLOSED;
  if (data == NULL || len == NULL) return FLUME_EINVAL;
  flume__db_refresh(db);
  if (seq < 0 || seq > db->since) return FLUME_ENOTFOUND;
  copy_ctx c = {NULL, 0};
  size_t n;
  int rc = flume__db_read(db, seq, seq, 1, copy_one, &c, &n);
  if (rc == 0 && n == 0) rc = FLUME_ENOTFOUND;
  if (rc) {
    free(c.data);
    return rc;
  }
  *data = c.data;
  *len = c.len;
  return 0;
}

/* ---- iterators --------------------------------------------------------- */

FLUME_API int flume_iter_open(flume_db *db, const flume_iter_options *opts,
                              flume_iter **out) {
  flume_iter_options defaults;
  if (db->closing) return FLUME_ECLOSED;
  if (out == NULL) return FLUME_EINVAL;
  if (opts == NULL) {
    flume_iter_options_init(&defaults);
    opts = &defaults;
  }
  flume_iter *it = calloc(1, sizeof *it);
  if (it == NULL) return FLUME_ENOMEM;
  it->db = db;
  it->lo = opts->gte < 0 ? 0 : opts->gte;
  it->hi = opts->lte;
  it->reverse = opts->reverse != 0;
  it->remaining = opts->limit < 0 ? -1 : opts->limit;
  /* A reverse iterator starts from what is in the log now. */
  it->next = it->reverse ? (it->hi < db->since ? it->hi : db->since) : it->lo;
  it->link_next = db->iters;
  if (db->iters) db->iters->link_prev = it;
  db->iters = it;
  *out = it;
  return 0;
}

static int iter_collect(void *ctx, int64_t seq, const void *data,
                        size_t len) {
  flume_iter *it = ctx;
  size_t off = it->chunk.len;
  /* A full chunk ends here; an entry larger than a chunk gets its own. */
  if (off + len > ITER_CHUNK_BYTES && it->count > 0) return 1;
  if (flume__buf_append(&it->chunk, data, len)) return FLUME_ENOMEM;
  it->entries[it->count++] = (iter_entry){seq, off, len};
  return 0;
}

FLUME_API int flume_iter_next(flume_iter *it, int64_t *seq, const void **data,
                              size_t *len) {
  if (it->pos == it->count) {
    flume_db *db = it->db;
    if (db == NULL || db->closing) return FLUME_ECLOSED;
    if (it->remaining == 0) return FLUME_ENOTFOUND;
    if (it->reverse ? it->next < it->lo : it->next > it->hi)
      return FLUME_ENOTFOUND;
    if (it->entries == NULL) {
      it->entries = malloc(ITER_CHUNK_ENTRIES * sizeof *it->entries);
      if (it->entries == NULL) return FLUME_ENOMEM;
    }
    it->chunk.len = 0;
    it->count = it->pos = 0;
    size_t max = ITER_CHUNK_ENTRIES, n;
    if (it->remaining >= 0 && (uint64_t)it->remaining < max)
      max = (size_t)it->remaining;
    int rc = flume__db_read(db, it->next, it->reverse ? it->lo : it->hi, max,
                            iter_collect, it, &n);
    if (rc < 0) return rc;
    if (it->count == 0) return FLUME_ENOTFOUND;
    int64_t last = it->entries[it->count - 1].seq;
    it->next = it->reverse ? last - 1 : last + 1;
    if (it->remaining > 0) it->remaining -= (int64_t)it->count;
  }
  iter_entry *e = &it->entries[it->pos++];
  *seq = e->seq;
  *data = it->chunk.data + e->off;
  *len = e->len;
  return 0;
}

FLUME_API void flume_iter_close(flume_iter *it) {
  if (it == NULL) return;
  flume_db *db = it->db;
  if (db) {
    if (it->link_prev) it->link_prev->link_next = it->link_next;
    else db->iters = it->link_next;
    if (it->link_next) it->link_next->link_prev = it->link_prev;
  }
  flume__buf_free(&it->chunk);
  free(it->entries);
  free(it);
}

/* ---- closing ----------------------------------------------------------- */

static void finish_close(flume_db *db) {
  free_spare(db);
  uv_mutex_destroy(&db->qlock);
  notify(db, FLUME_ECLOSED, db->since);
  for (int i = 0; i < db->nparts; i++) db->part_ops[i]->free(db->parts[i]);
  for (flume_iter *it = db->iters; it; it = it->link_next) it->db = NULL;
  db->ops->close(db->store);
  flume_close_cb cb = db->close_cb;
  void *ctx = db->close_ctx;
  free(db);
  if (cb) cb(ctx);
}

static void handle_closed(void *p) {
  flume_db *db = p;
  if (--db->handles == 0) finish_close(db);
}

static void on_closed(uv_handle_t *h) { handle_closed(h->data); }

static void start_close(flume_db *db) {
  db->close_started = 1;
  db->handles = 1 + db->nparts + db->readonly + 2 * db->threaded;
  if (db->readonly) uv_close((uv_handle_t *)&db->poll, on_closed);
  if (db->threaded) {
    writer_stop(db); /* idle: close_step waited for it */
    uv_close((uv_handle_t *)&db->done_async, on_closed);
    uv_close((uv_handle_t *)&db->turn_end, on_closed);
  }
  for (int i = 0; i < db->nparts; i++)
    db->part_ops[i]->close(db->parts[i], handle_closed, db);
  uv_close((uv_handle_t *)&db->kick, on_closed);
}

/*
 * A close, once every append is written: the parts drain (the views catch
 * up with the log, for a while), then stop (their last checkpoints are
 * written), then their handles and ours close.
 */
static void close_step(flume_db *db) {
  if (!db->parts_stopped) {
    for (int i = 0; i < db->nparts; i++)
      if (db->part_ops[i]->drain && db->part_ops[i]->drain(db->parts[i]))
        return; /* flume__db_close_kick comes back here */
    db->parts_stopped = 1;
    for (int i = 0; i < db->nparts; i++)
      db->part_ops[i]->before(db->parts[i]);
    if (!writer_idle(db)) return; /* their last jobs first */
  }
  start_close(db);
}

void flume__db_close_kick(flume_db *db) {
  if (db->closing && !db->close_started) kick(db);
}

int flume__db_closing(const flume_db *db) { return db->closing; }

FLUME_API int flume_db_close(flume_db *db, flume_close_cb cb, void *ctx) {
  if (db->closing) return FLUME_ECLOSED;
  db->closing = 1;
  db->close_cb = cb;
  db->close_ctx = ctx;
  kick(db);
  return 0;
}

#ifdef FLUME_TEST_HOOKS
FLUME_API void flume__test_fail_commits(flume_db *db, int err, int count) {
  db->fail_err = err;
  db->fail_count = count;
}
#endif
