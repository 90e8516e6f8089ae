/*
 * The outbox: appends become envelopes (remote.h).
 *
 * Append jobs wait in a queue while an envelope is in flight; the next
 * envelope takes all of them (up to the server's largest message), the way
 * the writer takes a group. One envelope is in flight at a time, so this
 * node's envelopes reach the stream in the order of its appends.
 *
 * Exactly once, with no time window: each envelope carries a Nats-Msg-Id
 * (node, boot, count) and expects the stream seq of this node's previous
 * envelope as its subject's last. A lost ack is retried as the same
 * envelope: the server answers "duplicate" inside its window, or "wrong
 * last sequence" after it, and then the subject's last message says
 * whether it is this envelope (stored) or another process's, which uses
 * this node id too (FLUME_ELOCKED).
 *
 * An append's callback fires when the tail has stored its envelope here
 * (flume__outbox_stored), not at the ack: only then are its seqs known and
 * readable on this node.
 */
#include "remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef FLUME_REMOTE

/* Backoff between tries of one envelope, in ms: one probe at a time. */
#define RETRY_FIRST_MS 50
#define RETRY_MAX_MS 500
/* Longest single try: a try that times out is followed by another, so
 * the envelope survives a leader election. */
#define TRY_MAX_MS 5000
/* Its bound while a close drains the outbox (for about 2 s). */
#define TRY_DRAIN_MS 500

/* The loop stays alive while appends wait for the stream. */
static void keep_alive(flume__remote *r) {
  if (uv_is_closing((uv_handle_t *)&r->async)) return;
  if (r->queue_head || r->unstored) uv_ref((uv_handle_t *)&r->async);
  else uv_unref((uv_handle_t *)&r->async);
}

static void fail_jobs(flume__job *j, int status) {
  for (flume__job *next; j; j = next) {
    next = j->next;
    j->done(j, status);
  }
}

static void env_free(remote_env *e) {
  flume__buf_free(&e->payload);
  free(e);
}

static void unlink_env(flume__remote *r, remote_env *e) {
  for (remote_env **p = &r->unstored; *p; p = &(*p)->next)
    if (*p == e) {
      *p = e->next;
      return;
    }
}

void flume__outbox_fail_all(flume__remote *r, int status) {
  flume__job *q = r->queue_head;
  r->queue_head = r->queue_tail = NULL;
  fail_jobs(q, status);
  for (remote_env *e = r->unstored, *next; e; e = next) {
    next = e->next;
    flume__job *jobs = e->jobs;
    e->jobs = NULL;
    fail_jobs(jobs, status);
    if (e != r->flight) {
      unlink_env(r, e);
      env_free(e);
    }
  }
  keep_alive(r);
}

int flume__outbox_route(void *ctx, flume__job *job) {
  flume__remote *r = ctx;
  if (r->closing) return FLUME_ECLOSED;
  if (r->fatal) return r->fatal;
  if (r->queue_tail) r->queue_tail->next = job;
  else r->queue_head = job;
  r->queue_tail = job;
  flume__outbox_kick(r);
  keep_alive(r);
  return 0;
}

/* ---- publishing, on the threadpool ------------------------------------ */

static int64_t now_ms(void) { return (int64_t)(uv_hrtime() / 1000000); }

/* The subject's last message: is it e (stored), or another process's? */
static int check_last(flume__remote *r, remote_env *e) {
  natsMsg *m = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetLastMsg(&m, r->js, r->stream, r->subj_log, NULL,
                               &jerr);
  if (s != NATS_OK) return 1; /* cannot tell yet: try again */
  const char *id = NULL;
  natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
  if (id && strcmp(id, e->msgid) == 0) {
    e->acked = natsMsg_GetSequence(m);
    natsMsg_Destroy(m);
    return 0;
  }
  snprintf(e->why, sizeof e->why,
           "another process appends as node %s (the stream's last message "
           "of this node is %s, not this process's)",
           r->node, id ? id : "(no id)");
  natsMsg_Destroy(m);
  e->status = FLUME_ELOCKED;
  return 0;
}

static void pub_work(uv_work_t *w) {
  flume__remote *r = w->data;
  remote_env *e = r->flight;
  int64_t deadline = now_ms() + e->timeout_ms;
  int backoff = RETRY_FIRST_MS;
  char last_err[200] = "no answer";
  e->status = 0;
  for (;;) {
    if (r->stop) {
      e->status = FLUME_ECLOSED;
      return;
    }
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      e->status = FLUME_ETIMEDOUT;
      snprintf(e->why, sizeof e->why,
               "no quorum: the stream %s did not acknowledge the append "
               "within %lld ms (%s)",
               r->stream, (long long)e->timeout_ms, last_err);
      return;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    int64_t try_ms = r->hurry ? TRY_DRAIN_MS : TRY_MAX_MS;
    po.MaxWait = left < try_ms ? left : try_ms;
    po.MsgId = e->msgid;
    if (e->expect) po.ExpectLastSubjectSeq = e->expect;
    else po.ExpectNoMessage = true;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(&ack, r->js, r->subj_log, e->payload.data,
                              (int)e->payload.len, &po, &jerr);
    if (s == NATS_OK) {
      e->acked = ack->Sequence;
      jsPubAck_Destroy(ack);
      return;
    }
    if (jerr == JSStreamWrongLastSequenceErr) {
      if (check_last(r, e) == 0) return;
    } else {
      int rc = flume__remote_status(s, jerr, last_err, sizeof last_err);
      if (rc != FLUME_ETIMEDOUT && s != NATS_CONNECTION_CLOSED &&
          jerr != 0) {
        /* The server refused it for good (too large, no stream...). */
        e->status = rc;
        snprintf(e->why, sizeof e->why, "stream %s refused an append: %s",
                 r->stream, last_err);
        return;
      }
    }
    left = deadline - now_ms();
    uv_sleep((unsigned)(backoff < left ? backoff : left > 0 ? left : 0));
    backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
  }
}

static void pub_after(uv_work_t *w, int status) {
  (void)status;
  flume__remote *r = w->data;
  remote_env *e = r->flight;
  r->flight = NULL;
  if (e->status == 0) {
    r->last = e->acked;
    if (e->jobs == NULL) { /* already stored here, and told */
      unlink_env(r, e);
      env_free(e);
    }
  } else {
    if (e->status == FLUME_ETIMEDOUT) r->last_known = 0; /* may land */
    if (e->status == FLUME_ELOCKED) r->fatal = FLUME_ELOCKED;
    unlink_env(r, e);
    flume__job *jobs = e->jobs;
    e->jobs = NULL;
    if (jobs && e->status != FLUME_ECLOSED)
      flume__remote_seterr(r, "%s", e->why);
    fail_jobs(jobs, e->status);
    env_free(e);
    if (r->fatal) flume__outbox_fail_all(r, r->fatal);
  }
  if (r->closing) flume__remote_idle(r);
  else flume__outbox_kick(r);
  keep_alive(r);
  /* A close that drains the outbox looks again (a failure, or the last
   * envelope's ack after its values were stored). */
  if (r->draining && !r->closing) flume__db_close_kick(r->db);
}

/* After a timeout this node's last envelope is not known: read it again
 * before the next one (blocking, in the publisher's request). */
static void pub_work_resync(uv_work_t *w) {
  flume__remote *r = w->data;
  remote_env *e = r->flight;
  int64_t deadline = now_ms() + e->timeout_ms;
  while (!r->stop && now_ms() < deadline) {
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetLastMsg(&m, r->js, r->stream, r->subj_log, NULL,
                                 &jerr);
    if (s == NATS_OK || s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
      uint64_t last = 0;
      if (s == NATS_OK) {
        const char *id = NULL;
        last = natsMsg_GetSequence(m);
        natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
        /* Not this boot's, and not what was last at open: another process
         * appends as this node. */
        char prefix[128];
        snprintf(prefix, sizeof prefix, "%s-%s-", r->node, r->boot);
        int ours = id && strncmp(id, prefix, strlen(prefix)) == 0;
        natsMsg_Destroy(m);
        if (!ours && last != r->last_at_open) {
          e->status = FLUME_ELOCKED;
          snprintf(e->why, sizeof e->why,
                   "another process appends as node %s", r->node);
          return;
        }
      }
      e->expect = last;
      pub_work(w);
      return;
    }
    uv_sleep(RETRY_FIRST_MS);
  }
  e->status = r->stop ? FLUME_ECLOSED : FLUME_ETIMEDOUT;
  snprintf(e->why, sizeof e->why,
           "no quorum: the stream %s did not answer within %lld ms",
           r->stream, (long long)e->timeout_ms);
}

/* ---- making envelopes ------------------------------------------------- */

static int put_u32(flume__buf *b, uint32_t v) {
  unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                        (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
  return flume__buf_append(b, x, 4);
}

/* A job's size in an envelope. */
static size_t job_size(flume__job *j) {
  size_t n, total = 0;
  const size_t *lens;
  const char *data;
  flume__append_values(j, &n, &lens, &data);
  for (size_t i = 0; i < n; i++) total += 4 + lens[i];
  return total;
}

static int job_write(flume__buf *b, flume__job *j) {
  size_t n;
  const size_t *lens;
  const char *data;
  flume__append_values(j, &n, &lens, &data);
  for (size_t i = 0; i < n; i++) {
    if (put_u32(b, (uint32_t)lens[i]) ||
        flume__buf_append(b, data, lens[i]))
      return FLUME_ENOMEM;
    data += lens[i];
  }
  return 0;
}

void flume__outbox_kick(flume__remote *r) {
  if (r->flight || r->closing || r->queue_head == NULL) return;
  size_t bound = r->max_payload - REMOTE_HEADER_ROOM;
  /* A batch larger than any message fails alone, storing nothing. */
  while (r->queue_head && job_size(r->queue_head) > bound) {
    flume__job *j = r->queue_head;
    r->queue_head = j->next;
    if (r->queue_head == NULL) r->queue_tail = NULL;
    flume__db_run_taken(r->db, j);
    flume__remote_seterr(r,
                         "a batch of %zu bytes is larger than the stream's "
                         "largest message (%zu bytes)",
                         job_size(j), bound);
    j->done(j, FLUME_EINVAL);
  }
  if (r->queue_head == NULL) return;
  remote_env *e = calloc(1, sizeof *e);
  if (e == NULL) return; /* tried again at the next append or ack */
  size_t size = 0;
  flume__job *head = r->queue_head, *last = NULL, *j = head;
  while (j && size + job_size(j) <= bound) {
    size += job_size(j);
    flume__db_run_taken(r->db, j);
    last = j;
    j = j->next;
  }
  last->next = NULL;
  r->queue_head = j;
  if (j == NULL) r->queue_tail = NULL;
  e->jobs = head;
  int rc = 0;
  for (flume__job *k = head; k && rc == 0; k = k->next)
    rc = job_write(&e->payload, k);
  if (rc) {
    fail_jobs(head, rc);
    env_free(e);
    return;
  }
  snprintf(e->msgid, sizeof e->msgid, "%s-%s-%llu", r->node, r->boot,
           (unsigned long long)++r->envs);
  e->expect = r->last;
  e->timeout_ms = r->timeout_ms;
  e->next = r->unstored;
  r->unstored = e;
  r->flight = e;
  r->pub.data = r;
  uv_queue_work(r->loop, &r->pub, r->last_known ? pub_work : pub_work_resync,
                pub_after);
}

void flume__outbox_stored(flume__remote *r, const char *msgid, int64_t first) {
  for (remote_env *e = r->unstored; e; e = e->next) {
    if (strcmp(e->msgid, msgid) != 0) continue;
    flume__job *jobs = e->jobs;
    e->jobs = NULL;
    if (e != r->flight) {
      unlink_env(r, e);
      env_free(e);
    }
    for (flume__job *next; jobs; jobs = next) {
      next = jobs->next;
      size_t n;
      const size_t *lens;
      const char *data;
      flume__append_values(jobs, &n, &lens, &data);
      flume__append_resolve(jobs, first);
      first += (int64_t)n;
      jobs->done(jobs, 0);
    }
    break;
  }
  keep_alive(r);
}

#endif
