/*
 * A remote log: opening and closing (remote.h says what the pieces are).
 *
 * Opening runs synchronously, like flume_db_open(): it connects, finds or
 * creates the stream and refuses one that could lose or rewrite history
 * (deletes, purges, limits), finds or writes the genesis, checks that this
 * folder caches that stream with the same codec, and subscribes the tail.
 * Only then does it start its loop handle, so a failure leaves nothing to
 * close.
 */
#include "remote.h"
#include "../internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the folder's side: meta "remote.*" --------------------------------- */

/* Reads meta key into out (NUL-terminated, at most cap-1 bytes): 0,
 * FLUME_ENOTFOUND, or an error. */
static int meta_read(flume_db *db, const char *key, char *out, size_t cap) {
  const flume__store_ops *ops = flume__db_ops(db);
  flume__txn *txn;
  flume__table meta;
  flume__slice v;
  int rc = ops->txn_begin(flume__db_store(db), FLUME__TXN_READ, &txn);
  if (rc) return rc;
  if ((rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta)) == 0 &&
      (rc = ops->get(txn, meta, (flume__slice){key, strlen(key)}, &v)) == 0) {
    if (v.size >= cap) rc = FLUME_ECORRUPT;
    else {
      memcpy(out, v.data, v.size);
      out[v.size] = '\0';
    }
  }
  ops->txn_abort(txn);
  return rc;
}


int flume__remote_meta(flume_db *db, char stream[64], char node[64],
                       char uuid[65], char urls[512], uint64_t *seq) {
  int rc = meta_read(db, FLUME__META_REMOTE_STREAM, stream, 64);
  if (rc == 0) rc = meta_read(db, FLUME__META_REMOTE_NODE, node, 64);
  if (rc == 0) rc = meta_read(db, FLUME__META_REMOTE_UUID, uuid, 65);
  if (rc == 0 && meta_read(db, FLUME__META_REMOTE_URLS, urls, 512))
    urls[0] = '\0';
  if (rc) return rc;
  const flume__store_ops *ops = flume__db_ops(db);
  flume__txn *txn;
  flume__table meta;
  flume__slice v;
  *seq = 0;
  if ((rc = ops->txn_begin(flume__db_store(db), FLUME__TXN_READ, &txn)))
    return rc;
  if ((rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta)) == 0 &&
      (rc = ops->get(txn, meta,
                     (flume__slice){FLUME__META_REMOTE_SEQ,
                                    strlen(FLUME__META_REMOTE_SEQ)},
                     &v)) == 0 &&
      v.size == sizeof *seq)
    memcpy(seq, v.data, sizeof *seq);
  ops->txn_abort(txn);
  return rc == FLUME_ENOTFOUND ? 0 : rc;
}

int flume__remote_check_local(flume_db *db, char *why) {
  char stream[128];
  int rc = meta_read(db, FLUME__META_REMOTE_STREAM, stream, sizeof stream);
  if (rc == FLUME_ENOTFOUND) return 0;
  if (rc) return rc;
  if (why)
    snprintf(why, FLUME__ERRMSG_SIZE,
             "this folder caches the remote stream %s: open it with its "
             "remote options (or read-only)",
             stream);
  return FLUME_EINVAL;
}

#ifdef FLUME_REMOTE

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_REPLICAS 3
/* Duplicate window of a stream this node creates (ns): the chain of
 * expected sequences gives exactly-once past it. */
#define DUPLICATES_NS (120 * (int64_t)1000000000)

void flume__remote_seterr(flume__remote *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(flume__db_errbuf(r->db), FLUME__ERRMSG_SIZE, fmt, ap);
  va_end(ap);
}

int flume__remote_status(natsStatus s, jsErrCode jerr, char *why,
                         size_t len) {
  const char *last = nats_GetLastError(NULL);
  snprintf(why, len, "%s%s%s (JetStream error %d)", natsStatus_GetText(s),
           last && *last ? ": " : "", last && *last ? last : "", (int)jerr);
  switch (s) {
  case NATS_TIMEOUT:
  case NATS_NO_SERVER:
  case NATS_NO_RESPONDERS:
  case NATS_NOT_YET_CONNECTED:
  case NATS_CONNECTION_DISCONNECTED:
    return FLUME_ETIMEDOUT;
  case NATS_NO_MEMORY:
    return FLUME_ENOMEM;
  default:
    return FLUME_EIO;
  }
}

static int valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > REMOTE_NAME_MAX) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
      return 0;
  return 1;
}

static void random_hex(char *out, size_t bytes) {
  unsigned char b[32];
  if (bytes > sizeof b) bytes = sizeof b;
  if (uv_random(NULL, NULL, b, bytes, 0, NULL)) {
    uint64_t x = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    for (size_t i = 0; i < bytes; i++) b[i] = (unsigned char)(x >> (i % 8 * 8)) ^ (unsigned char)i;
  }
  for (size_t i = 0; i < bytes; i++) sprintf(out + 2 * i, "%02x", b[i]);
  out[2 * bytes] = '\0';
}

/* Writes the folder's remote identity in one transaction. */
static int meta_write(flume_db *db, const char *stream, const char *uuid,
                      const char *node, const char *urls) {
  const flume__store_ops *ops = flume__db_ops(db);
  flume__txn *txn;
  flume__table meta;
  int rc = ops->txn_begin(flume__db_store(db), FLUME__TXN_WRITE, &txn);
  if (rc) return rc;
  const char *kv[4][2] = {{FLUME__META_REMOTE_STREAM, stream},
                          {FLUME__META_REMOTE_UUID, uuid},
                          {FLUME__META_REMOTE_NODE, node},
                          {FLUME__META_REMOTE_URLS, urls}};
  if ((rc = ops->table_open(txn, FLUME__META_TABLE, 1, &meta))) goto fail;
  for (int i = 0; i < 4; i++)
    if ((rc = ops->put(txn, meta, (flume__slice){kv[i][0], strlen(kv[i][0])},
                       (flume__slice){kv[i][1], strlen(kv[i][1])})))
      goto fail;
  return ops->txn_commit(txn);
fail:
  ops->txn_abort(txn);
  return rc;
}

/* ---- the stream --------------------------------------------------------- */

/* Finds the stream or creates it; refuses one that may lose history. */
static int check_stream(flume__remote *r, int replicas, char *why,
                        size_t len) {
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo(&si, r->js, r->stream, NULL, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
    jsStreamConfig sc;
    const char *subjects[] = {r->subj_all};
    jsStreamConfig_Init(&sc);
    sc.Name = r->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = replicas;
    sc.Discard = js_DiscardNew;
    sc.DenyDelete = true;
    sc.DenyPurge = true;
    sc.Duplicates = DUPLICATES_NS;
    jerr = 0;
    s = js_AddStream(&si, r->js, &sc, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
      /* Another node created it first. */
      jerr = 0;
      s = js_GetStreamInfo(&si, r->js, r->stream, NULL, &jerr);
    }
  }
  if (s != NATS_OK) {
    int rc = flume__remote_status(s, jerr, why, len);
    char detail[256];
    snprintf(detail, sizeof detail, "%s", why);
    snprintf(why, len, "stream %s: %s", r->stream, detail);
    return rc;
  }
  jsStreamConfig *c = si->Config;
  const char *bad = NULL;
  if (!c->DenyDelete) bad = "allows deleting messages";
  else if (!c->DenyPurge) bad = "allows purging";
  else if (c->MaxMsgs > 0 || c->MaxBytes > 0 || c->MaxAge > 0 ||
           c->MaxMsgsPerSubject > 0)
    bad = "has limits (MaxMsgs, MaxBytes, MaxAge or MaxMsgsPerSubject)";
  else if (c->Retention != js_LimitsPolicy)
    bad = "is not a limits-retention stream";
  else if (c->AllowRollup)
    bad = "allows rollups";
  else if (c->SubjectsLen != 1 || strcmp(c->Subjects[0], r->subj_all) != 0)
    bad = "does not hold exactly the subjects flume.<stream>.>";
  if (bad)
    snprintf(why, len,
             "stream %s %s: a flume log must never lose or rewrite a "
             "message (use a new stream name)",
             r->stream, bad);
  jsStreamInfo_Destroy(si);
  return bad ? FLUME_EINVAL : 0;
}

/* Parses the genesis's codec and uuid. */
static int parse_genesis(const char *data, int n, char codec[64],
                         char uuid[65]) {
  char buf[512];
  if (n <= 0 || n >= (int)sizeof buf) return FLUME_ECORRUPT;
  memcpy(buf, data, (size_t)n);
  buf[n] = '\0';
  char format[16];
  if (sscanf(buf, FLUME__REMOTE_GENESIS "\nformat %15s\ncodec %63s\nuuid %64s",
             format, codec, uuid) != 3)
    return FLUME_ECORRUPT;
  if (strcmp(format, FLUME__FORMAT) != 0) return FLUME_EFORMAT;
  return 0;
}

/* Reads the genesis, writing it first (expecting no message on the meta
 * subject, so exactly one node's wins) when there is none. */
static int genesis(flume__remote *r, const char *codec_new, char codec[64],
                   char uuid[65], char *why, size_t len) {
  for (int tries = 0; tries < 3; tries++) {
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetLastMsg(&m, r->js, r->stream, r->subj_meta, NULL,
                                 &jerr);
    if (s == NATS_OK) {
      int rc = parse_genesis(natsMsg_GetData(m), natsMsg_GetDataLength(m),
                             codec, uuid);
      natsMsg_Destroy(m);
      if (rc)
        snprintf(why, len, "stream %s: its genesis message is not flume's",
                 r->stream);
      return rc;
    }
    if (s != NATS_NOT_FOUND && jerr != JSNoMessageFoundErr) {
      return flume__remote_status(s, jerr, why, len);
    }
    char body[256], id[33];
    random_hex(id, 16);
    snprintf(body, sizeof body,
             FLUME__REMOTE_GENESIS "\nformat %s\ncodec %s\nuuid %s\n",
             FLUME__FORMAT, codec_new, id);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.ExpectNoMessage = true;
    po.MaxWait = r->timeout_ms;
    jerr = 0;
    s = js_Publish(NULL, r->js, r->subj_meta, body, (int)strlen(body), &po,
                   &jerr);
    if (s != NATS_OK && jerr != JSStreamWrongLastSequenceErr)
      return flume__remote_status(s, jerr, why, len);
    /* Written, or another node's won: read what is there. */
  }
  snprintf(why, len, "stream %s: cannot read its genesis message",
           r->stream);
  return FLUME_EIO;
}

/* This node's last envelope on its subject: the chain's start. */
static int read_last(flume__remote *r, char *why, size_t len) {
  natsMsg *m = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetLastMsg(&m, r->js, r->stream, r->subj_log, NULL,
                               &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
    r->last = 0;
  } else if (s != NATS_OK) {
    return flume__remote_status(s, jerr, why, len);
  } else {
    r->last = natsMsg_GetSequence(m);
    natsMsg_Destroy(m);
  }
  r->last_at_open = r->last;
  r->last_known = 1;
  return 0;
}

/* ---- closing: a part of the database ----------------------------------- */

/* How long a close lets the outbox publish and the tail store what was
 * appended before it (the views' drain has the same bound). */
#define DRAIN_NS ((uint64_t)2000000000)

static void drain_wake(uv_timer_t *t) {
  flume__remote *r = t->data;
  r->drain_over = 1; /* the loop's clock may be a little behind hrtime */
  flume__db_close_kick(r->db);
}

/* A close first lets the appends made before it reach the stream and come
 * back stored (their callbacks get their seqs), for up to DRAIN_NS; the
 * outbox and the tail go on meanwhile and kick the close as they finish
 * (outbox.c; the writer's own kick after each ingest). */
static int part_drain(void *p) {
  flume__remote *r = p;
  uint64_t now = uv_hrtime();
  if (!r->draining) {
    r->draining = 1;
    r->hurry = 1;
    r->drain_until = now + DRAIN_NS;
    uv_timer_start(&r->drain_timer, drain_wake, DRAIN_NS / 1000000 + 1, 0);
  }
  if (r->fatal || r->drain_over || now >= r->drain_until ||
      (r->queue_head == NULL && r->unstored == NULL)) {
    uv_timer_stop(&r->drain_timer);
    return 0;
  }
  return 1;
}

static void part_before(void *p) {
  flume__remote *r = p;
  r->closing = 1;
  r->stop = 1;
  /* What the drain did not finish is not written (by this process). */
  flume__outbox_fail_all(r, FLUME_ECLOSED);
  flume__fresh_fail_all(r, FLUME_ECLOSED);
}

/* Threadpool: waits out the publisher's last try, stops the consumer (no
 * delivery runs after its completion callback) and drops the connection. */
static void stop_work(uv_work_t *w) {
  flume__remote *r = w->data;
  uv_mutex_lock(&r->lock);
  r->stopping = 1;
  r->async_ready = 0;
  uv_cond_broadcast(&r->room);
  uv_mutex_unlock(&r->lock);
  if (r->sub) {
    int before;
    uv_mutex_lock(&r->lock);
    before = r->subs_done;
    uv_mutex_unlock(&r->lock);
    /* Without a server an unsubscription never completes: closing the
     * connection ends the consumer (and calls its completion) at once. */
    if (natsConnection_Status(r->nc) != NATS_CONN_STATUS_CONNECTED ||
        natsSubscription_Unsubscribe(r->sub) != NATS_OK)
      natsConnection_Close(r->nc);
    uv_mutex_lock(&r->lock);
    uint64_t until = uv_hrtime() + (uint64_t)5e9;
    while (r->subs_done == before && uv_hrtime() < until)
      uv_cond_timedwait(&r->sub_done, &r->lock, (uint64_t)1e8);
    uv_mutex_unlock(&r->lock);
  }
  if (r->inbox_sub) natsSubscription_Unsubscribe(r->inbox_sub);
  natsConnection_Close(r->nc);
}

static void free_remote(flume__remote *r) {
  if (r->sub) natsSubscription_Destroy(r->sub);
  if (r->inbox_sub) natsSubscription_Destroy(r->inbox_sub);
  jsCtx_Destroy(r->js);
  natsConnection_Destroy(r->nc);
  for (tail_msg *t = r->in_head, *next; t; t = next) {
    next = t->next;
    natsMsg_Destroy(t->msg);
    free(t);
  }
  uv_cond_destroy(&r->room);
  uv_cond_destroy(&r->sub_done);
  uv_mutex_destroy(&r->lock);
  free(r);
}

static void on_async_closed(uv_handle_t *h) {
  flume__remote *r = h->data;
  if (--r->handles) return;
  void (*done)(void *) = r->close_done;
  void *ctx = r->close_ctx;
  r->close_done = NULL;
  done(ctx);
}

static void stop_after(uv_work_t *w, int status) {
  (void)status;
  flume__remote *r = w->data;
  /* Stored envelopes were told; the rest are not written here. */
  flume__outbox_fail_all(r, FLUME_ECLOSED);
  flume__fresh_fail_all(r, FLUME_ECLOSED);
  r->handles = 3;
  uv_close((uv_handle_t *)&r->async, on_async_closed);
  uv_close((uv_handle_t *)&r->fresh_timer, on_async_closed);
  uv_close((uv_handle_t *)&r->drain_timer, on_async_closed);
}

static void close_when_idle(flume__remote *r);

static void part_close(void *p, void (*done)(void *ctx), void *ctx) {
  flume__remote *r = p;
  r->close_done = done;
  r->close_ctx = ctx;
  close_when_idle(r);
}

/* The publisher and a resubscription run on the threadpool and own r's
 * parts: closing waits for them (outbox.c and tail.c call this back). */
static void close_when_idle(flume__remote *r) {
  if (r->close_done == NULL || r->flight || r->resubscribing ||
      r->statusing)
    return;
  if (r->stop_work.data) return; /* started */
  r->stop_work.data = r;
  uv_queue_work(r->loop, &r->stop_work, stop_work, stop_after);
}

void flume__remote_idle(flume__remote *r) { close_when_idle(r); }

static void part_free(void *p) { free_remote(p); }

static const flume__part_ops remote_part = {.before = part_before,
                                            .close = part_close,
                                            .free = part_free,
                                            .drain = part_drain};

flume__remote *flume__remote_of(flume_db *db) {
  return flume__db_part(db, &remote_part);
}

/* ---- opening ------------------------------------------------------------- */

static int dial(flume__remote *r, const char *urls, char *why,
                   size_t len) {
  natsOptions *o = NULL;
  natsStatus s;
  char *list = strdup(urls);
  const char *servers[16];
  int n = 0;
  if (list == NULL) return FLUME_ENOMEM;
  for (char *save = NULL, *t = strtok_r(list, ", ", &save); t && n < 16;
       t = strtok_r(NULL, ", ", &save))
    servers[n++] = t;
  if (n == 0) {
    free(list);
    snprintf(why, len, "remote_urls names no server");
    return FLUME_EINVAL;
  }
  if ((s = natsOptions_Create(&o)) != NATS_OK ||
      (s = natsOptions_SetServers(o, servers, n)) != NATS_OK ||
      (s = natsOptions_SetTimeout(o, r->timeout_ms)) != NATS_OK ||
      (s = natsOptions_SetSendAsap(o, true)) != NATS_OK ||
      (s = natsOptions_SetAllowReconnect(o, true)) != NATS_OK ||
      (s = natsOptions_SetMaxReconnect(o, -1)) != NATS_OK ||
      (s = natsOptions_SetReconnectWait(o, 100)) != NATS_OK ||
      (s = natsOptions_SetNoRandomize(o, true)) != NATS_OK) {
    natsOptions_Destroy(o);
    free(list);
    return flume__remote_status(s, 0, why, len);
  }
  s = natsConnection_Connect(&r->nc, o);
  natsOptions_Destroy(o);
  if (s != NATS_OK) {
    int rc = flume__remote_status(s, 0, why, len);
    char detail[256];
    snprintf(detail, sizeof detail, "%s", why);
    snprintf(why, len, "cannot reach the NATS servers %s: %s", urls, detail);
    free(list);
    return rc == FLUME_EIO ? FLUME_ETIMEDOUT : rc;
  }
  free(list);
  jsOptions jo;
  jsOptions_Init(&jo);
  /* One request's wait: open tries again within remote_timeout. */
  jo.Wait = r->timeout_ms < 5000 ? r->timeout_ms : 5000;
  if ((s = natsConnection_JetStream(&r->js, r->nc, &jo)) != NATS_OK)
    return flume__remote_status(s, 0, why, len);
  int64_t mp = natsConnection_GetMaxPayload(r->nc);
  r->max_payload = mp > 0 ? (size_t)mp : (size_t)1 << 20;
  return 0;
}

static flume__remote *remote_new(const char *stream, int64_t timeout_ms) {
  flume__remote *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
  snprintf(r->stream, sizeof r->stream, "%s", stream);
  snprintf(r->subj_meta, sizeof r->subj_meta, "flume.%s.meta", stream);
  snprintf(r->subj_logs, sizeof r->subj_logs, "flume.%s.log.", stream);
  snprintf(r->subj_all, sizeof r->subj_all, "flume.%s.>", stream);
  random_hex(r->boot, 8);
  uv_mutex_init(&r->lock);
  uv_cond_init(&r->room);
  uv_cond_init(&r->sub_done);
  return r;
}

/* Reads the stream's state from its leader into out (blocking), trying
 * again while the cluster does not answer until `deadline` (or a close):
 * the one reading behind flume_db_remote_status() and `flume remote
 * status`. `where` names the servers in errors. */
static int stream_info(flume__remote *r, uint64_t deadline, const char *where,
                       flume_remote_info *out, char *why, size_t len) {
  jsStreamInfo *si = NULL;
  int rc;
  for (;;) {
    jsErrCode jerr = 0;
    natsStatus st = js_GetStreamInfo(&si, r->js, r->stream, NULL, &jerr);
    if (st == NATS_OK) break;
    if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
      snprintf(why, len, "no stream %s on %s", r->stream, where);
      return FLUME_ENOTFOUND;
    }
    rc = flume__remote_status(st, jerr, why, len);
    if (rc != FLUME_ETIMEDOUT || uv_hrtime() >= deadline) return rc;
    if (r->stop) return FLUME_ECLOSED;
    uv_sleep(100);
  }
  snprintf(out->stream, sizeof out->stream, "%s", r->stream);
  out->messages = si->State.Msgs;
  out->last_seq = si->State.LastSeq;
  out->bytes = si->State.Bytes;
  out->replicas = (int)si->Config->Replicas;
  out->deny_delete = si->Config->DenyDelete;
  out->deny_purge = si->Config->DenyPurge;
  jsClusterInfo *c = si->Cluster;
  if (c && c->Leader)
    snprintf(out->leader, sizeof out->leader, "%s", c->Leader);
  for (int i = 0; c && i < c->ReplicasLen && i < FLUME_REMOTE_PEERS_MAX;
       i++) {
    jsPeerInfo *p = c->Replicas[i];
    flume_remote_peer *q = &out->peers[out->npeers++];
    snprintf(q->name, sizeof q->name, "%s", p->Name ? p->Name : "?");
    q->current = p->Current;
    q->offline = p->Offline;
    q->lag = p->Lag;
    q->active_ms = p->Active / 1000000;
  }
  jsStreamInfo_Destroy(si);
  return 0;
}

/* ---- flume_db_remote_status: the same, over a node's connection -------- */

typedef struct status_req {
  uv_work_t work;              /* on the threadpool */
  flume__remote *r;            /* the node */
  flume_remote_status_cb cb;   /* the caller's */
  void *ctx;
  int rc;                      /* the outcome */
  flume_remote_info info;      /* the answer */
  char why[FLUME__ERRMSG_SIZE]; /* the failure's detail */
} status_req;

static void status_work(uv_work_t *w) {
  status_req *q = w->data;
  flume__remote *r = q->r;
  uint64_t deadline = uv_hrtime() + (uint64_t)r->timeout_ms * 1000000;
  q->rc = stream_info(r, deadline, "its servers", &q->info, q->why,
                      sizeof q->why);
}

static void status_after(uv_work_t *w, int status) {
  (void)status;
  status_req *q = w->data;
  flume__remote *r = q->r;
  r->statusing--;
  if (q->rc == 0) {
    flume_remote_info *i = &q->info;
    snprintf(i->node, sizeof i->node, "%s", r->node);
    i->stored = r->stored;
    i->lag = i->last_seq > r->stored ? i->last_seq - r->stored : 0;
    i->since = flume_db_since(r->db);
    q->cb(q->ctx, 0, i);
  } else {
    if (q->rc != FLUME_ECLOSED) flume__remote_seterr(r, "%s", q->why);
    q->cb(q->ctx, q->rc, NULL);
  }
  free(q);
  if (r->closing) flume__remote_idle(r);
}

FLUME_API int flume_db_remote_status(flume_db *db, flume_remote_status_cb cb,
                                     void *ctx) {
  if (db == NULL || cb == NULL) return FLUME_EINVAL;
  if (flume__db_closing(db)) return FLUME_ECLOSED;
  flume__remote *r = flume__remote_of(db);
  if (r == NULL) {
    snprintf(flume__db_errbuf(db), FLUME__ERRMSG_SIZE,
             "not a remote log: the database was opened without "
             "remote_urls");
    return FLUME_EINVAL;
  }
  if (r->closing) return FLUME_ECLOSED;
  status_req *q = calloc(1, sizeof *q);
  if (q == NULL) return FLUME_ENOMEM;
  q->r = r;
  q->cb = cb;
  q->ctx = ctx;
  q->work.data = q;
  r->statusing++;
  uv_queue_work(r->loop, &q->work, status_work, status_after);
  return 0;
}

/* Retries a step while the cluster does not answer, until `deadline`. */
#define RETRY_UNTIL(deadline, call)                                          \
  while ((rc = (call)) == FLUME_ETIMEDOUT && uv_hrtime() < (deadline))      \
    uv_sleep(100)

int flume__remote_stat(const char *urls, const char *stream,
                       int64_t timeout_ms, int create, int replicas,
                       const char *codec, flume_remote_info *out,
                       char *why) {
  size_t len = FLUME__ERRMSG_SIZE;
  memset(out, 0, sizeof *out);
  why[0] = '\0';
  if (urls == NULL || stream == NULL || !valid_name(stream)) {
    snprintf(why, len, "a stream name is 1 to %d of A-Z a-z 0-9 _ -",
             REMOTE_NAME_MAX);
    return FLUME_EINVAL;
  }
  flume__remote *r = remote_new(stream, timeout_ms);
  if (r == NULL) return FLUME_ENOMEM;
  uint64_t deadline = uv_hrtime() + (uint64_t)r->timeout_ms * 1000000;
  int rc = dial(r, urls, why, len);
  char got_codec[64], uuid[65];
  if (rc == 0 && create) {
    RETRY_UNTIL(deadline, check_stream(r, replicas ? replicas
                                                   : DEFAULT_REPLICAS,
                                       why, len));
    if (rc == 0)
      RETRY_UNTIL(deadline, genesis(r, codec ? codec : "msgpack", got_codec,
                                    uuid, why, len));
  }
  if (rc == 0) rc = stream_info(r, deadline, urls, out, why, len);
  if (r->nc) natsConnection_Close(r->nc);
  free_remote(r);
  return rc;
}

int flume__remote_open(flume_db *db, const flume_db_options *opts,
                       char *why_out) {
  char local_why[FLUME__ERRMSG_SIZE];
  char *why = why_out ? why_out : local_why;
  size_t len = FLUME__ERRMSG_SIZE;
  why[0] = '\0';
  const char *stream = opts->remote_stream;
  if (stream == NULL || !valid_name(stream)) {
    snprintf(why, len, "remote_stream must be 1 to %d of A-Z a-z 0-9 _ -",
             REMOTE_NAME_MAX);
    return FLUME_EINVAL;
  }
  if (opts->remote_node && !valid_name(opts->remote_node)) {
    snprintf(why, len, "remote_node must be 1 to %d of A-Z a-z 0-9 _ -",
             REMOTE_NAME_MAX);
    return FLUME_EINVAL;
  }
  if (opts->remote_timeout_ms < 0 || opts->remote_replicas < 0) {
    snprintf(why, len, "remote_timeout_ms and remote_replicas must be >= 0");
    return FLUME_EINVAL;
  }
  flume__remote *r = remote_new(stream, opts->remote_timeout_ms);
  if (r == NULL) return FLUME_ENOMEM;
  r->db = db;
  r->loop = flume__db_loop(db);

  /* The folder's identity: which stream it caches, as which node. */
  const char *step = NULL; /* what open was doing, for errors */
  char have_stream[REMOTE_NAME_MAX + 1], have_uuid[65],
      have_node[REMOTE_NAME_MAX + 1];
  int rc = meta_read(db, FLUME__META_REMOTE_STREAM, have_stream,
                     sizeof have_stream);
  int fresh = rc == FLUME_ENOTFOUND, renamed = 0;
  if (rc && !fresh) goto fail;
  if (!fresh) {
    if ((rc = meta_read(db, FLUME__META_REMOTE_UUID, have_uuid,
                        sizeof have_uuid)) ||
        (rc = meta_read(db, FLUME__META_REMOTE_NODE, have_node,
                        sizeof have_node))) {
      if (rc == FLUME_ENOTFOUND) rc = FLUME_ECORRUPT;
      goto fail;
    }
    if (strcmp(have_stream, stream) != 0) {
      snprintf(why, len, "this folder caches the stream %s, not %s",
               have_stream, stream);
      rc = FLUME_EINVAL;
      goto fail;
    }
    /* A new node id for a copy of a node's folder (a backup starting a
     * new node): the cache is the same stream's, whichever node holds it.
     * A copy opened under the old id is caught by the chain (ELOCKED). */
    renamed = opts->remote_node && strcmp(opts->remote_node, have_node) != 0;
    snprintf(r->node, sizeof r->node, "%s",
             renamed ? opts->remote_node : have_node);
  } else {
    if (flume_db_since(db) != -1) {
      snprintf(why, len,
               "this folder holds a local log: a remote log is cached in a "
               "new folder");
      rc = FLUME_EINVAL;
      goto fail;
    }
    if (opts->remote_node) snprintf(r->node, sizeof r->node, "%s",
                                    opts->remote_node);
    else random_hex(r->node, 8);
  }
  snprintf(r->subj_log, sizeof r->subj_log, "flume.%s.log.%s", stream,
           r->node);

  step = "connecting";
  if ((rc = dial(r, opts->remote_urls, why, len))) goto fail;
  /* A cluster in flux (an election, a server catching up) answers late
   * or not at all for a while: each step is tried again until the
   * timeout. */
  uint64_t deadline = uv_hrtime() + (uint64_t)r->timeout_ms * 1000000;
#define RETRY(call)                                                          \
  while ((rc = (call)) == FLUME_ETIMEDOUT && uv_hrtime() < deadline)        \
    uv_sleep(100)
  step = "reading the stream's configuration";
  RETRY(check_stream(r,
                     opts->remote_replicas ? opts->remote_replicas
                                           : DEFAULT_REPLICAS,
                     why, len));
  if (rc) goto fail;
  char codec[64], uuid[65];
  step = "reading the stream's genesis message";
  RETRY(genesis(r, flume_db_codec(db), codec, uuid, why, len));
  if (rc) goto fail;
  step = NULL;
  if (strcmp(codec, flume_db_codec(db)) != 0) {
    snprintf(why, len, "stream %s holds values of codec '%s', not '%s'",
             stream, codec, flume_db_codec(db));
    rc = FLUME_ECODEC;
    goto fail;
  }
  if (!fresh && strcmp(uuid, have_uuid) != 0) {
    snprintf(why, len,
             "this folder caches another stream that was named %s (uuid %s, "
             "the stream's is %s)",
             stream, have_uuid, uuid);
    rc = FLUME_EINVAL;
    goto fail;
  }
  /* The URLs too, for `flume remote status` (written at every open: the
   * servers may move). */
  if ((rc = meta_write(db, stream, uuid, r->node, opts->remote_urls)))
    goto fail;
  step = "reading this node's last message";
  RETRY(read_last(r, why, len));
  if (rc) goto fail;
  step = NULL;
  {
    flume__txn *txn;
    const flume__store_ops *ops = flume__db_ops(db);
    if ((rc = ops->txn_begin(flume__db_store(db), FLUME__TXN_READ, &txn)))
      goto fail;
    rc = flume__tail_stored_seq(db, txn, &r->stored);
    ops->txn_abort(txn);
    if (rc) goto fail;
  }
  step = "subscribing to fresh reads' answers";
  if ((rc = flume__fresh_start(r, why, len))) goto fail;
  if ((rc = flume__db_attach(db, &remote_part, r))) goto fail;
  step = "subscribing to the stream";
  RETRY(flume__tail_subscribe(r, r->stored + 1, why, len));
#undef RETRY
  if (rc) {
    flume__db_detach(db, &remote_part);
    goto fail;
  }
  size_t bound = r->max_payload - REMOTE_HEADER_ROOM;
  flume__db_route_appends(db, flume__outbox_route, r, bound);
  uv_async_init(r->loop, &r->async, flume__tail_on_async);
  r->async.data = r;
  uv_timer_init(r->loop, &r->fresh_timer);
  r->fresh_timer.data = r;
  uv_timer_init(r->loop, &r->drain_timer);
  r->drain_timer.data = r;
  /* Like the writer's idle handle, it keeps no loop alive by itself. */
  uv_unref((uv_handle_t *)&r->async);
  uv_mutex_lock(&r->lock);
  r->async_ready = 1;
  uv_mutex_unlock(&r->lock);
  uv_async_send(&r->async); /* what was delivered meanwhile */
  return 0;
fail:
  if (step && why[0] && strncmp(why, "stream ", 7) != 0 &&
      strncmp(why, "cannot reach", 12) != 0) {
    char detail[FLUME__ERRMSG_SIZE];
    snprintf(detail, sizeof detail, "%s", why);
    snprintf(why, len, "stream %s, %s: %.400s", stream, step, detail);
  }
  if (r->sub) {
    natsSubscription_Unsubscribe(r->sub);
    natsSubscription_Destroy(r->sub);
    r->sub = NULL;
  }
  if (r->inbox_sub) natsSubscription_Unsubscribe(r->inbox_sub);
  if (r->nc) natsConnection_Close(r->nc);
  free_remote(r);
  return rc;
}

#else /* no libnats */

int flume__remote_stat(const char *urls, const char *stream,
                       int64_t timeout_ms, int create, int replicas,
                       const char *codec, flume_remote_info *out,
                       char *why) {
  (void)urls, (void)stream, (void)timeout_ms, (void)create, (void)replicas,
      (void)codec;
  memset(out, 0, sizeof *out);
  snprintf(why, FLUME__ERRMSG_SIZE,
           "remote logs need a flume built with libnats (libnats-dev)");
  return FLUME_ENOTSUP;
}

FLUME_API int flume_db_remote_status(flume_db *db, flume_remote_status_cb cb,
                                     void *ctx) {
  if (db == NULL || cb == NULL) return FLUME_EINVAL;
  (void)ctx;
  snprintf(flume__db_errbuf(db), FLUME__ERRMSG_SIZE,
           "remote logs need a flume built with libnats (libnats-dev)");
  return FLUME_ENOTSUP;
}

int flume__remote_open(flume_db *db, const flume_db_options *opts,
                       char *why) {
  (void)db;
  (void)opts;
  if (why)
    snprintf(why, FLUME__ERRMSG_SIZE,
             "remote logs need a flume built with libnats (libnats-dev)");
  return FLUME_ENOTSUP;
}

#endif
