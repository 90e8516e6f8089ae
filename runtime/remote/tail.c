/*
 * The tail: the stream, stored here in stream order (remote.h).
 *
 * An ordered consumer delivers the whole stream from the stored stream seq
 * + 1. Deliveries cross to the loop thread (one lock, one uv_async_t) and
 * become ingest jobs on the writer queue, so they ride group commit beside
 * view checkpoints. An ingest job reads the stored stream seq in its own
 * write transaction and goes on only from the next one: a message at or
 * below it is a redelivery, skipped; one past it is a gap, never skipped:
 * the job stores what came before and the tail subscribes again from the
 * missing seq. Values get dense flume seqs in the order of the stream, and
 * the stream seq is written in the same transaction as the values, so a
 * crash can neither lose nor repeat a message.
 */
#include "remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef FLUME_REMOTE

/* Restarts at one seq without progress before the stream is called
 * damaged. */
#define GAP_TRIES_MAX 10

typedef struct ingest_job {
  flume__job base;   /* the writer's part */
  flume__remote *r;  /* the tail */
  tail_msg *msgs;    /* the deliveries, in order */
  uint64_t gap;      /* set by the writer: the seq missing, or 0 */
  uint64_t last;     /* set by the writer: the stored stream seq after it */
} ingest_job;

static const flume__slice seq_key = {FLUME__META_REMOTE_SEQ,
                                     sizeof FLUME__META_REMOTE_SEQ - 1};

int flume__tail_stored_seq(flume_db *db, flume__txn *txn, uint64_t *out) {
  const flume__store_ops *ops = flume__db_ops(db);
  flume__table meta;
  flume__slice v;
  *out = 0;
  int rc = ops->table_open(txn, FLUME__META_TABLE, 0, &meta);
  if (rc == 0) rc = ops->get(txn, meta, seq_key, &v);
  if (rc == FLUME_ENOTFOUND) return 0;
  if (rc) return rc;
  if (v.size != sizeof *out) return FLUME_ECORRUPT;
  memcpy(out, v.data, sizeof *out);
  return 0;
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* Checks an envelope's framing: the number of values, or -1. */
static long count_values(const unsigned char *p, size_t len) {
  long n = 0;
  while (len) {
    if (len < 4) return -1;
    uint32_t l = get_u32(p);
    if (l > len - 4) return -1;
    p += 4 + l;
    len -= 4 + l;
    n++;
  }
  return n;
}

/* On the writer, inside the group's transaction. */
static int ingest_run(flume__job *job, flume__txn *txn, int64_t *next_seq) {
  ingest_job *j = (ingest_job *)job;
  flume__remote *r = j->r;
  const flume__store_ops *ops = flume__db_ops(job->db);
  uint64_t cur;
  int rc = flume__tail_stored_seq(job->db, txn, &cur);
  if (rc) return rc;
  size_t prefix = strlen(r->subj_logs);
  j->gap = 0;
  for (tail_msg *t = j->msgs; t; t = t->next) {
    t->first = -1;
    t->n = 0;
  }
  for (tail_msg *t = j->msgs; t; t = t->next) {
    if (t->sseq <= cur) continue; /* a redelivery */
    if (t->sseq != cur + 1) {
      j->gap = cur + 1;
      break;
    }
    const char *subj = natsMsg_GetSubject(t->msg);
    if (strncmp(subj, r->subj_logs, prefix) == 0) {
      const unsigned char *p =
          (const unsigned char *)natsMsg_GetData(t->msg);
      size_t len = (size_t)natsMsg_GetDataLength(t->msg);
      long n = count_values(p, len);
      if (n < 0) {
        snprintf(flume__db_errbuf(job->db), FLUME__ERRMSG_SIZE,
                 "stream %s: message %llu is not a flume envelope",
                 r->stream, (unsigned long long)t->sseq);
        return FLUME_ECORRUPT;
      }
      t->first = *next_seq;
      for (long i = 0; i < n; i++) {
        uint32_t l = get_u32(p);
        if ((rc = ops->log_append(txn, (*next_seq)++,
                                  (flume__slice){p + 4, l})))
          return rc;
        p += 4 + l;
      }
      t->n = (size_t)n;
    }
    /* The meta subject's genesis (and anything else) stores no value. */
    cur = t->sseq;
  }
  j->last = cur;
  flume__table meta;
  if ((rc = ops->table_open(txn, FLUME__META_TABLE, 1, &meta))) return rc;
  return ops->put(txn, meta, seq_key, (flume__slice){&cur, sizeof cur});
}

static void free_msgs(tail_msg *t) {
  for (tail_msg *next; t; t = next) {
    next = t->next;
    natsMsg_Destroy(t->msg);
    free(t);
  }
}

static void release(flume__remote *r, size_t bytes) {
  uv_mutex_lock(&r->lock);
  r->held -= bytes;
  uv_cond_broadcast(&r->room);
  uv_mutex_unlock(&r->lock);
}

static void resubscribe(flume__remote *r);

/* On the loop thread, once the group committed (or failed). */
static void ingest_done(flume__job *job, int status) {
  ingest_job *j = (ingest_job *)job;
  flume__remote *r = j->r;
  size_t bytes = 0;
  r->ingesting--;
  if (status == 0) {
    if (j->last > r->stored) {
      r->stored = j->last;
      r->gap_tries = 0;
      flume__fresh_check(r);
    }
    size_t own = strlen(r->subj_log);
    for (tail_msg *t = j->msgs; t; t = t->next) {
      if (t->first < 0 || t->n == 0) continue;
      if (strncmp(natsMsg_GetSubject(t->msg), r->subj_log, own) != 0 ||
          natsMsg_GetSubject(t->msg)[own] != '\0')
        continue;
      const char *id = NULL;
      if (natsMsgHeader_Get(t->msg, "Nats-Msg-Id", &id) == NATS_OK && id)
        flume__outbox_stored(r, id, t->first);
    }
  }
  for (tail_msg *t = j->msgs; t; t = t->next) bytes += t->bytes;
  uint64_t gap = j->gap;
  free_msgs(j->msgs);
  free(j);
  release(r, bytes);
  if (r->closing) {
    flume__remote_idle(r);
    return;
  }
  if (status == FLUME_ECORRUPT) {
    r->fatal = FLUME_ECORRUPT;
    flume__outbox_fail_all(r, FLUME_ECORRUPT);
    return;
  }
  if (gap) {
    if (gap == r->gap_at) r->gap_tries++;
    else r->gap_at = gap, r->gap_tries = 1;
    if (r->gap_tries > GAP_TRIES_MAX) {
      r->fatal = FLUME_ECORRUPT;
      flume__remote_seterr(r,
                           "stream %s: message %llu never arrived after %d "
                           "tries; nothing after it is stored here",
                           r->stream, (unsigned long long)gap,
                           GAP_TRIES_MAX);
      flume__outbox_fail_all(r, FLUME_ECORRUPT);
      return;
    }
    resubscribe(r);
  }
}

void flume__tail_on_async(uv_async_t *h) {
  flume__remote *r = h->data;
  uv_mutex_lock(&r->lock);
  tail_msg *msgs = r->in_head;
  r->in_head = r->in_tail = NULL;
  uv_mutex_unlock(&r->lock);
  flume__fresh_check(r); /* a fresh read's answer may have come */
  if (msgs == NULL) return;
  ingest_job *j = r->closing || r->fatal ? NULL : calloc(1, sizeof *j);
  if (j) {
    j->base.run = ingest_run;
    j->base.done = ingest_done;
    j->r = r;
    j->msgs = msgs;
    for (tail_msg *t = msgs; t; t = t->next) j->base.bytes += t->bytes + 16;
    if (flume__db_submit(r->db, &j->base) == 0) {
      r->ingesting++;
      return;
    }
    free(j);
  }
  /* Not stored: a later subscription delivers them again. */
  size_t bytes = 0;
  for (tail_msg *t = msgs; t; t = t->next) bytes += t->bytes;
  free_msgs(msgs);
  release(r, bytes);
}

/* On libnats's delivery thread. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                   void *closure) {
  (void)nc;
  (void)sub;
  flume__remote *r = closure;
  jsMsgMetaData *md = NULL;
  if (natsMsg_GetMetaData(&md, msg) != NATS_OK) {
    natsMsg_Destroy(msg);
    return;
  }
  tail_msg *t = malloc(sizeof *t);
  if (t == NULL) {
    /* Dropped: the gap it leaves makes the tail subscribe again. */
    jsMsgMetaData_Destroy(md);
    natsMsg_Destroy(msg);
    return;
  }
  t->next = NULL;
  t->msg = msg;
  t->sseq = md->Sequence.Stream;
  t->bytes = (size_t)natsMsg_GetDataLength(msg);
  jsMsgMetaData_Destroy(md);
  uv_mutex_lock(&r->lock);
  if (r->withhold > 0 && --r->withhold == 0) {
    /* A test's lost delivery: the next one is past a gap. */
    uv_mutex_unlock(&r->lock);
    natsMsg_Destroy(msg);
    free(t);
    return;
  }
  while (r->held > REMOTE_TAIL_MAX_BYTES && !r->stopping)
    uv_cond_wait(&r->room, &r->lock);
  if (r->stopping) {
    uv_mutex_unlock(&r->lock);
    natsMsg_Destroy(msg);
    free(t);
    return;
  }
  r->held += t->bytes;
  if (r->in_tail) r->in_tail->next = t;
  else r->in_head = t;
  r->in_tail = t;
  /* Under the lock: once closing has cleared async_ready, no send can
   * reach the handle it closes. */
  if (r->async_ready) uv_async_send(&r->async);
  uv_mutex_unlock(&r->lock);
}

static void on_complete(void *closure) {
  flume__remote *r = closure;
  uv_mutex_lock(&r->lock);
  r->subs_done++;
  uv_cond_broadcast(&r->sub_done);
  uv_mutex_unlock(&r->lock);
}

int flume__tail_subscribe(flume__remote *r, uint64_t from, char *why,
                          size_t len) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = r->stream;
  so.Ordered = true;
  so.Config.Heartbeat = (int64_t)1000000000; /* 1 s */
  if (from > 1) {
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from;
  } else {
    so.Config.DeliverPolicy = js_DeliverAll;
  }
  jsErrCode jerr = 0;
  natsSubscription *sub = NULL;
  natsStatus s = js_Subscribe(&sub, r->js, r->subj_all, on_msg, r, NULL, &so,
                              &jerr);
  if (s != NATS_OK) return flume__remote_status(s, jerr, why, len);
  natsSubscription_SetOnCompleteCB(sub, on_complete, r);
  natsSubscription_SetPendingLimits(sub, 65536, 64 << 20);
  r->sub = sub;
  return 0;
}

/* ---- subscribing again, after a gap ------------------------------------ */

static void resub_work(uv_work_t *w) {
  flume__remote *r = w->data;
  natsSubscription *old = r->sub;
  char why[256];
  if (old) {
    int before;
    uv_mutex_lock(&r->lock);
    before = r->subs_done;
    uv_mutex_unlock(&r->lock);
    if (natsSubscription_Unsubscribe(old) == NATS_OK) {
      uv_mutex_lock(&r->lock);
      uint64_t until = uv_hrtime() + (uint64_t)5e9;
      while (r->subs_done == before && uv_hrtime() < until)
        uv_cond_timedwait(&r->sub_done, &r->lock, (uint64_t)1e8);
      uv_mutex_unlock(&r->lock);
    }
    natsSubscription_Destroy(old);
    r->sub = NULL;
  }
  /* Deliveries still queued from the old consumer are stored or skipped
   * by the ingest jobs' own check; the new one starts past what is
   * stored. */
  r->resub_status = 1;
  for (int tries = 0; tries < 50 && !r->stop; tries++) {
    if (flume__tail_subscribe(r, r->resub_from, why, sizeof why) == 0) {
      r->resub_status = 0;
      return;
    }
    uv_sleep(100);
  }
}

static void resub_after(uv_work_t *w, int status) {
  (void)status;
  flume__remote *r = w->data;
  r->resubscribing = 0;
  if (r->closing) {
    flume__remote_idle(r);
    return;
  }
  if (r->resub_status) {
    r->fatal = FLUME_EIO;
    flume__remote_seterr(r, "stream %s: cannot follow it again after a gap",
                         r->stream);
    flume__outbox_fail_all(r, FLUME_EIO);
  }
}

static void resubscribe(flume__remote *r) {
  if (r->resubscribing) return;
  r->resubscribing = 1;
  r->resubscribed++;
  r->resub.data = r;
  r->resub_from = r->stored + 1;
  uv_queue_work(r->loop, &r->resub, resub_work, resub_after);
}

#ifdef FLUME_TEST_HOOKS
FLUME_API int flume__test_remote_withhold(flume_db *db, int nth) {
  flume__remote *r = flume__remote_of(db);
  if (r == NULL) return -1;
  uv_mutex_lock(&r->lock);
  r->withhold = nth;
  uv_mutex_unlock(&r->lock);
  return r->resubscribed;
}
#endif

#endif
