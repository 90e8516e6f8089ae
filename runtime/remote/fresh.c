/*
 * Fresh reads: how far this node must get to have what the stream holds
 * now (flume_db_wait_fresh(); Lua's `fresh = true`).
 *
 * The stream's leader answers a stream-info request with its last stream
 * seq; once the tail has stored that stream position here, every value
 * the stream held when the question was asked is in this node's log, at
 * seqs up to the log's since at that moment. A view read gated on that
 * since sees every append acknowledged anywhere before the question.
 *
 * The loop thread never waits on the network: the question is published
 * with a reply subject (an inbox this node subscribed to at open), the
 * reply arrives on a libnats thread that hands it over under `lock` and
 * wakes the loop through the tail's `async`. One question is in flight at
 * a time; a read that comes after it was sent waits for the next one (the
 * answer to an older question may predate an append that returned before
 * the read began). A timer bounds each read by remote_timeout, asks again
 * when a question goes unanswered (a leader election, a lost server) and
 * keeps the loop alive while reads wait.
 */
#include "remote.h"
#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A read waiting to be fresh. */
typedef struct fresh_req {
  struct fresh_req *next; /* its list in flume__remote */
  flume_fresh_cb cb;      /* the caller's */
  void *ctx;
  uint64_t deadline;      /* uv_hrtime() past which it times out */
  uint64_t target;        /* the stream seq it waits for, once known */
  int64_t since;          /* a local log's: its since at the call */
  uv_timer_t *later;      /* a local log's: calls back on a later turn */
} fresh_req;

static void later_closed(uv_handle_t *h) {
  fresh_req *q = h->data;
  free(h);
  free(q);
}

static void later_fire(uv_timer_t *t) {
  fresh_req *q = t->data;
  q->cb(q->ctx, 0, q->since);
  uv_close((uv_handle_t *)t, later_closed);
}

/* A local log holds everything there is: its since now, on a later turn
 * (a callback never runs inside the call that registered it). */
static int local_fresh(flume_db *db, flume_fresh_cb cb, void *ctx) {
  fresh_req *q = calloc(1, sizeof *q);
  uv_timer_t *t = malloc(sizeof *t);
  if (q == NULL || t == NULL) {
    free(q);
    free(t);
    return FLUME_ENOMEM;
  }
  flume__db_refresh(db); /* a reader: the log as its writer has it */
  q->cb = cb;
  q->ctx = ctx;
  q->since = flume_db_since(db);
  uv_timer_init(flume__db_loop(db), t);
  t->data = q;
  uv_timer_start(t, later_fire, 0, 0);
  return 0;
}

#ifdef FLUME_REMOTE

/* How long one question may go unanswered before it is asked again, and
 * how long after a refusal (no leader yet) the next one goes. */
#define ASK_WAIT_NS ((uint64_t)2000000000)
#define ASK_RETRY_NS ((uint64_t)100000000)
/* How often the timer looks, while reads wait (ms). */
#define TICK_MS 20
/* JetStream's "stream not found". */
#define JS_STREAM_NOT_FOUND 10059

static void push(fresh_req **list, fresh_req *q) {
  q->next = NULL;
  while (*list) list = &(*list)->next;
  *list = q;
}

static void finish(flume__remote *r, fresh_req *q, int status) {
  q->cb(q->ctx, status, status ? -1 : flume_db_since(r->db));
  free(q);
}

static int any(const flume__remote *r) {
  return r->fresh_new || r->fresh_asked || r->fresh_wait;
}

static void tick(uv_timer_t *t);

/* The timer runs while reads wait, and keeps the loop alive for them. */
static void timer_update(flume__remote *r) {
  if (uv_is_closing((uv_handle_t *)&r->fresh_timer)) return;
  if (any(r)) {
    if (!uv_is_active((uv_handle_t *)&r->fresh_timer))
      uv_timer_start(&r->fresh_timer, tick, TICK_MS, TICK_MS);
  } else {
    uv_timer_stop(&r->fresh_timer);
  }
}

/* Sends the question for the reads in fresh_new (and those still asked). */
static void ask(flume__remote *r) {
  fresh_req **tail = &r->fresh_asked;
  while (*tail) tail = &(*tail)->next;
  *tail = r->fresh_new;
  r->fresh_new = NULL;
  r->ask_retry = 0;
  r->ask_sent = 0;
  if (r->fresh_asked == NULL) return; /* nobody waits any more */
  char subj[160], reply[96];
  snprintf(subj, sizeof subj, "$JS.API.STREAM.INFO.%s", r->stream);
  uv_mutex_lock(&r->lock);
  r->ask_id++;
  r->reply_id = 0;
  uint64_t id = r->ask_id;
  uv_mutex_unlock(&r->lock);
  snprintf(reply, sizeof reply, "%s.%llu", r->inbox, (unsigned long long)id);
  r->ask_sent = uv_hrtime();
  /* Buffered while reconnecting; a lost question is asked again. */
  natsConnection_PublishRequest(r->nc, subj, reply, NULL, 0);
}

/* The reads whose stream seq is stored here go on. */
void flume__fresh_check(flume__remote *r) {
  uv_mutex_lock(&r->lock);
  uint64_t id = r->reply_id;
  int status = r->reply_status;
  uint64_t last = r->reply_last;
  char why[sizeof r->reply_why];
  memcpy(why, r->reply_why, sizeof why);
  r->reply_id = 0;
  uv_mutex_unlock(&r->lock);
  if (id && id == r->ask_id) {
    if (status == 0) {
      for (fresh_req *q = r->fresh_asked; q; q = q->next) q->target = last;
      fresh_req *q = r->fresh_asked;
      r->fresh_asked = NULL;
      while (q) {
        fresh_req *next = q->next;
        push(&r->fresh_wait, q);
        q = next;
      }
    } else if (status == FLUME_ENOTFOUND) {
      fresh_req *q = r->fresh_asked;
      r->fresh_asked = NULL;
      flume__remote_seterr(r, "stream %s: %s", r->stream, why);
      for (fresh_req *next; q; q = next) {
        next = q->next;
        finish(r, q, FLUME_ENOTFOUND);
      }
    } else {
      r->ask_retry = uv_hrtime() + ASK_RETRY_NS; /* no leader yet */
    }
    uv_mutex_lock(&r->lock);
    r->ask_id++; /* answered: a late copy of it is not taken again */
    uv_mutex_unlock(&r->lock);
    r->ask_sent = 0;
  }
  /* Taken off the list before any callback runs: one may close the
   * database, which fails (and frees) what is still on the lists. */
  fresh_req *ready = NULL;
  for (fresh_req **p = &r->fresh_wait; *p;) {
    fresh_req *q = *p;
    if (q->target <= r->stored) {
      *p = q->next;
      push(&ready, q);
    } else {
      p = &q->next;
    }
  }
  for (fresh_req *next; ready; ready = next) {
    next = ready->next;
    finish(r, ready, 0);
  }
  /* Nothing in flight: ask for the reads that came meanwhile. */
  if (r->ask_sent == 0 && r->ask_retry == 0 && !r->closing &&
      (r->fresh_new || r->fresh_asked))
    ask(r);
  timer_update(r);
}

/* Moves the reads of list past their deadline to *out. */
static void expire(fresh_req **list, uint64_t now, fresh_req **out) {
  for (fresh_req **p = list; *p;) {
    fresh_req *q = *p;
    if (now >= q->deadline) {
      *p = q->next;
      push(out, q);
    } else {
      p = &q->next;
    }
  }
}

static void tick(uv_timer_t *t) {
  flume__remote *r = t->data;
  uint64_t now = uv_hrtime();
  fresh_req *late = NULL;
  expire(&r->fresh_new, now, &late);
  expire(&r->fresh_asked, now, &late);
  expire(&r->fresh_wait, now, &late);
  for (fresh_req *next; late; late = next) {
    next = late->next;
    flume__remote_seterr(r,
                         "no quorum: the stream %s's leader did not say how "
                         "far the stream is (or this node did not store "
                         "that far) within %lld ms",
                         r->stream, (long long)r->timeout_ms);
    finish(r, late, FLUME_ETIMEDOUT);
  }
  if (uv_is_closing((uv_handle_t *)t)) return;
  if (!r->closing) {
    int unanswered = r->ask_sent && now - r->ask_sent >= ASK_WAIT_NS;
    int refused = r->ask_retry && now >= r->ask_retry;
    if (unanswered || refused) {
      r->ask_sent = 0;
      ask(r);
    } else if (r->ask_sent == 0 && r->ask_retry == 0 && r->fresh_new) {
      ask(r);
    }
  }
  timer_update(r);
}

void flume__fresh_fail_all(flume__remote *r, int status) {
  fresh_req *lists[3] = {r->fresh_new, r->fresh_asked, r->fresh_wait};
  r->fresh_new = r->fresh_asked = r->fresh_wait = NULL;
  for (int i = 0; i < 3; i++)
    for (fresh_req *q = lists[i], *next; q; q = next) {
      next = q->next;
      q->cb(q->ctx, status, -1);
      free(q);
    }
  timer_update(r);
}

/* The number after `key` in the JSON object that begins at `from`, or
 * -1. The stream-info reply is flat enough to be read this way. */
static long long json_int(const char *from, const char *end,
                          const char *key) {
  size_t klen = strlen(key);
  for (const char *p = from; p && p + klen < end; p++) {
    p = memchr(p, '"', (size_t)(end - p));
    if (p == NULL || (size_t)(end - p) <= klen + 2) return -1;
    if (memcmp(p + 1, key, klen) == 0 && p[klen + 1] == '"') {
      const char *v = p + klen + 2;
      while (v < end && (*v == ':' || *v == ' ')) v++;
      if (v >= end || *v < '0' || *v > '9') return -1;
      long long n = 0;
      while (v < end && *v >= '0' && *v <= '9') n = n * 10 + (*v++ - '0');
      return n;
    }
  }
  return -1;
}

/* On a libnats thread: the leader's answer. */
static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                     void *closure) {
  (void)nc;
  (void)sub;
  flume__remote *r = closure;
  const char *subj = natsMsg_GetSubject(msg);
  const char *dot = strrchr(subj, '.');
  uint64_t id = dot ? strtoull(dot + 1, NULL, 10) : 0;
  const char *data = natsMsg_GetData(msg);
  int len = natsMsg_GetDataLength(msg);
  const char *end = data + len;
  int status = 0;
  long long last = -1;
  char why[sizeof r->reply_why] = "";
  if (len <= 0 || natsMsg_IsNoResponders(msg)) {
    status = FLUME_ETIMEDOUT;
    snprintf(why, sizeof why, "no responders");
  } else if (strstr(data, "\"error\"") &&
             json_int(data, end, "err_code") >= 0) {
    long long code = json_int(data, end, "err_code");
    status = code == JS_STREAM_NOT_FOUND ? FLUME_ENOTFOUND : FLUME_ETIMEDOUT;
    const char *d = strstr(data, "\"description\"");
    snprintf(why, sizeof why, "%.200s", d ? d : "JetStream error");
  } else {
    const char *state = strstr(data, "\"state\":{");
    last = state ? json_int(state, end, "last_seq") : -1;
    if (last < 0) {
      status = FLUME_ETIMEDOUT;
      snprintf(why, sizeof why, "a stream-info reply without last_seq");
    }
  }
  natsMsg_Destroy(msg);
  uv_mutex_lock(&r->lock);
  if (!r->stopping && id == r->ask_id) {
    r->reply_id = id;
    r->reply_status = status;
    r->reply_last = last < 0 ? 0 : (uint64_t)last;
    memcpy(r->reply_why, why, sizeof why);
    if (r->async_ready) uv_async_send(&r->async);
  }
  uv_mutex_unlock(&r->lock);
}

int flume__fresh_start(flume__remote *r, char *why, size_t len) {
  natsInbox *inbox = NULL;
  natsStatus s = natsInbox_Create(&inbox);
  if (s != NATS_OK) return flume__remote_status(s, 0, why, len);
  snprintf(r->inbox, sizeof r->inbox, "%s", inbox);
  natsInbox_Destroy(inbox);
  char subj[80];
  snprintf(subj, sizeof subj, "%s.*", r->inbox);
  s = natsConnection_Subscribe(&r->inbox_sub, r->nc, subj, on_reply, r);
  if (s != NATS_OK) return flume__remote_status(s, 0, why, len);
  return 0;
}

#endif

FLUME_API int flume_db_wait_fresh(flume_db *db, flume_fresh_cb cb,
                                  void *ctx) {
  if (db == NULL || cb == NULL) return FLUME_EINVAL;
  if (flume__db_closing(db)) return FLUME_ECLOSED;
#ifdef FLUME_REMOTE
  flume__remote *r = flume__remote_of(db);
  if (r == NULL) return local_fresh(db, cb, ctx);
  if (r->closing) return FLUME_ECLOSED;
  /* A tail that stopped (a message that never arrives, or cannot be
   * read) stores nothing more: no read of it is ever fresh. */
  if (r->fatal && r->fatal != FLUME_ELOCKED) return r->fatal;
  fresh_req *q = calloc(1, sizeof *q);
  if (q == NULL) return FLUME_ENOMEM;
  q->cb = cb;
  q->ctx = ctx;
  q->deadline = uv_hrtime() + (uint64_t)r->timeout_ms * 1000000;
  push(&r->fresh_new, q);
  if (r->ask_sent == 0 && r->ask_retry == 0) ask(r);
  timer_update(r);
  return 0;
#else
  return local_fresh(db, cb, ctx);
#endif
}
