/*
 * A remote log: the log on a replicated NATS JetStream stream, this folder
 * a cache of it (../shared design: JETSTREAM.md; stored names: format.h).
 *
 * Provides, to open.c, flume__remote_open() (internal.h). Uses db.c's append
 * route, its writer queue (ingest jobs ride group commit beside
 * checkpoints) and its part hooks for close; libnats for the network.
 *
 * Four pieces, one per file:
 *  - remote.c: opening (connect, check or create the stream, the genesis,
 *    the node id), the crossing from libnats's threads to the loop thread,
 *    the stream's status (flume_db_remote_status, `flume remote status`),
 *    and closing (which first drains the outbox and the tail, for a
 *    while);
 *  - outbox.c: appends become envelopes, one per group, one in flight,
 *    published with a Nats-Msg-Id and the expected last subject sequence,
 *    retried as the same envelope until the timeout;
 *  - tail.c: an ordered consumer of the whole stream from the stored
 *    stream seq; deliveries become ingest jobs on the writer queue, which
 *    store values in stream order (redeliveries skipped, gaps never) and
 *    the stream seq in the same transaction; then the appenders whose
 *    envelopes were stored hear of their seqs;
 *  - fresh.c: fresh reads (flume_db_wait_fresh): the leader's last stream
 *    seq, asked without blocking, then a wait for the tail to store it.
 *
 * Threads. libnats calls the tail's message handler on its own thread; it
 * only queues the message under `lock` and wakes the loop thread through
 * `async`. Publishing blocks, so it runs on the libuv threadpool (one
 * request at a time: one envelope in flight); its completion runs on the
 * loop thread. Everything else is the loop thread's.
 */
#ifndef FLUME_REMOTE_H
#define FLUME_REMOTE_H

#ifdef FLUME_REMOTE

#include <nats/nats.h>
#include <stdatomic.h>

#include "../buf.h"
#include "../internal.h"

/* Longest stream or node name; names are [A-Za-z0-9_-]. */
#define REMOTE_NAME_MAX 63
/* Bytes the tail may hold that are not stored yet: past it, libnats's
 * delivery thread waits (and flow control slows the server). */
#define REMOTE_TAIL_MAX_BYTES ((size_t)32 << 20)
/* Room kept for headers below the server's max payload. */
#define REMOTE_HEADER_ROOM 1024

/* One group of appends, published as one message. */
typedef struct remote_env {
  struct remote_env *next; /* the list of envelopes not yet stored here */
  flume__job *jobs;        /* its append jobs, in order (linked by next) */
  flume__buf payload;      /* the values: u32le length, bytes; ... */
  char msgid[160];         /* its Nats-Msg-Id */
  uint64_t expect;         /* the subject's last seq it expects; 0: none */
  int64_t timeout_ms;      /* how long its publishing may take */
  /* Set by the publishing thread: */
  int status;              /* 0, or why it was not acknowledged */
  uint64_t acked;          /* its stream seq, once acknowledged */
  char why[512];           /* the error's detail */
} remote_env;

/* A delivered message, queued for the writer. */
typedef struct tail_msg {
  struct tail_msg *next; /* queue link */
  natsMsg *msg;          /* owned */
  uint64_t sseq;         /* its stream seq */
  size_t bytes;          /* its payload's length */
  int64_t first;         /* set by the writer: its first value's seq, or
                          * -1 when it stored none (skipped, a gap) */
  size_t n;              /* values it stored */
} tail_msg;

typedef struct flume__remote {
  flume_db *db;              /* the database it feeds */
  uv_loop_t *loop;           /* its loop */
  natsConnection *nc;        /* the connection (libnats reconnects) */
  jsCtx *js;                 /* its JetStream context */
  char stream[REMOTE_NAME_MAX + 1]; /* the stream's name */
  char node[REMOTE_NAME_MAX + 1];   /* this node's id */
  char subj_meta[96];        /* flume.<stream>.meta */
  char subj_log[192];        /* flume.<stream>.log.<node>: this node's */
  char subj_logs[96];        /* flume.<stream>.log. : any node's prefix */
  char subj_all[96];         /* flume.<stream>.> */
  char boot[17];             /* this opening's id, 16 hex digits */
  uint64_t envs;             /* envelopes this opening has made */
  int64_t timeout_ms;        /* remote_timeout */
  size_t max_payload;        /* the server's largest message, bytes */
  int fatal;                 /* an error that stops all appends
                              * (ELOCKED, ECORRUPT), or 0 */

  /* The outbox (outbox.c), loop thread. */
  flume__job *queue_head;    /* append jobs waiting for an envelope */
  flume__job *queue_tail;
  remote_env *flight;        /* the envelope being published, or NULL */
  remote_env *unstored;      /* envelopes published or in flight whose
                              * values are not stored here yet */
  uint64_t last;             /* stream seq of this node's last envelope
                              * (0: none) */
  uint64_t last_at_open;     /* what it was when this opening began */
  int last_known;            /* `last` is up to date (not after a
                              * timeout, when an envelope may land later) */
  uv_work_t pub;             /* the publishing request */
  atomic_int stop;           /* closing: the publisher gives up */
  atomic_int hurry;          /* a close drains: the publisher's tries are
                              * short, so that it sees `stop` soon */

  /* The tail (tail.c). */
  natsSubscription *sub;     /* the ordered consumer */
  uv_mutex_t lock;           /* guards the four below */
  uv_cond_t room;            /* signalled when held bytes fall */
  tail_msg *in_head;         /* delivered, not yet handed to the writer */
  tail_msg *in_tail;
  size_t held;               /* bytes delivered and not yet stored */
  int stopping;              /* closing: deliveries are dropped */
  int async_ready;           /* `async` may be sent (it is made after the
                              * first subscription, which may deliver) */
  uv_cond_t sub_done;        /* signalled when a subscription completes */
  int subs_done;             /* subscriptions completed */
  uv_async_t async;          /* wakes the loop thread for deliveries */
  uint64_t stored;           /* stream seq of the last message stored
                              * here (after its commit) */
  int resubscribing;         /* a new consumer is being made */
  uv_work_t resub;           /* that request */
  int resub_status;          /* its outcome */
  uint64_t resub_from;       /* the stream seq it starts from */
  int gap_tries;             /* restarts at the same seq without progress */
  uint64_t gap_at;           /* that seq */
  int ingesting;             /* ingest jobs in the writer queue */
  int withhold;              /* tests: drop the n-th next delivery (under
                              * lock), 0 none */
  int resubscribed;          /* times the tail subscribed again */

  /* Fresh reads (fresh.c), loop thread: what the stream's leader holds,
   * asked with a request whose reply comes on a libnats thread. */
  struct fresh_req *fresh_new;   /* came after the question in flight was
                                  * sent: they need the next one */
  struct fresh_req *fresh_asked; /* the question in flight answers them */
  struct fresh_req *fresh_wait;  /* know their stream seq; wait for the
                                  * tail to store it */
  natsSubscription *inbox_sub;   /* the replies' subscription, or NULL */
  char inbox[64];                /* its subject prefix */
  uint64_t ask_id;               /* the question in flight (0: none) */
  uint64_t ask_sent;             /* when it was sent, uv_hrtime() */
  uint64_t ask_retry;            /* when to ask again after a refusal, or 0 */
  uv_timer_t fresh_timer;        /* deadlines, retries (ref'd while any) */
  /* Set under `lock` by the reply's thread: */
  uint64_t reply_id;             /* the question the reply answers (0:
                                  * none waiting) */
  int reply_status;              /* 0, or why the leader did not answer */
  uint64_t reply_last;           /* the stream's last seq, when 0 */
  char reply_why[256];           /* the refusal's text */

  /* Draining at close: the outbox and the tail finish, for a while. */
  int draining;              /* the close's drain has begun */
  uint64_t drain_until;      /* when it gives up, uv_hrtime() */
  uv_timer_t drain_timer;    /* wakes the close at drain_until */
  int drain_over;            /* that timer has fired */
  int handles;               /* loop handles still to close */
  int statusing;             /* flume_db_remote_status() requests out */

  /* Closing. */
  int closing;               /* the database is closing */
  uv_work_t stop_work;       /* tears the connection down */
  void (*close_done)(void *ctx); /* the part's done */
  void *close_ctx;
} flume__remote;

/* remote.c */
void flume__remote_seterr(flume__remote *r, const char *fmt, ...);
/* An ETIMEDOUT/EIO-style code for a libnats status (with its text in
 * why, `len` bytes). */
int flume__remote_status(natsStatus s, jsErrCode jerr, char *why,
                         size_t len);

/* The remote log of db, or NULL. */
flume__remote *flume__remote_of(flume_db *db);

/* Closing waits for the publisher and a resubscription: they call this
 * when they end. */
void flume__remote_idle(flume__remote *r);

/* outbox.c */
int flume__outbox_route(void *ctx, flume__job *job);
/* The tail stored an envelope of this node: fire its appenders. */
void flume__outbox_stored(flume__remote *r, const char *msgid, int64_t first);
/* Fails every append waiting or unstored with `status` (close, fatal). */
void flume__outbox_fail_all(flume__remote *r, int status);
/* Starts the next envelope if there is work and none is in flight. */
void flume__outbox_kick(flume__remote *r);

/* fresh.c */
/* Subscribes to the replies of fresh reads' questions (blocking, at
 * open). */
int flume__fresh_start(flume__remote *r, char *why, size_t len);
/* The tail stored more, or a reply came (loop thread): releases what
 * waited for it. */
void flume__fresh_check(flume__remote *r);
/* Fails every fresh read with status (close). */
void flume__fresh_fail_all(flume__remote *r, int status);

/* tail.c */
/* Subscribes from stream seq `from` (blocking). */
int flume__tail_subscribe(flume__remote *r, uint64_t from, char *why,
                          size_t len);
/* Takes what was delivered into an ingest job (loop thread). */
void flume__tail_on_async(uv_async_t *h);
/* Reads the stored stream seq inside txn (0 when none). */
int flume__tail_stored_seq(flume_db *db, flume__txn *txn, uint64_t *out);

#endif /* FLUME_REMOTE */
#endif
