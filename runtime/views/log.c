/*
 * View logs: what view scripts print, on its way to the host.
 *
 * The host formats a message inside the view's call (host.c) and hands it
 * here; nothing of the embedder's runs then. Messages wait in a queue and
 * are handed to flume_db_options.on_log (or written to stderr) from a
 * prepare handle: on the loop thread, after the indexer's slice (an idle
 * callback) that printed them, in the same turn of the loop. So a uv_run
 * that ran the slice has delivered them by the time it returns, and a
 * read released by the slice's checkpoint from the writer thread (LMDB)
 * comes after them.
 *
 * The rate limit is per view (the mapper counts as one): a window opens
 * with a view's first message and lasts a second; FLUME_LOG_RATE messages
 * pass in it, the rest are only counted. The count is reported as one
 * message when the window is over: at the view's next message, from a
 * timer at the window's end, or when the database closes, so every
 * message printed is either delivered or counted. Windows are measured in
 * loop time (uv_now: no clock read, which costs as much as a print where
 * the clock is not in the vDSO); the indexer's slices are a few ms, so it
 * is seldom stale, and a single call that prints for seconds gets one
 * window's worth. A dropped message costs a counter; the host has
 * formatted it already, so that what a view computes never depends on
 * the rate limit.
 *
 * The log queue is a part of the database (internal.h), made with its
 * views: it closes its handles with the database and delivers what is
 * left when it is freed (still on the loop, before flume_db_close's
 * callback).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "views/views.h"

#define WINDOW_MS 1000 /* a rate window: one second of loop time */

/* One queued message. */
typedef struct vlog_msg {
  struct vlog_msg *next; /* the queue */
  int64_t seq;           /* the seq it was printed at, or -1 */
  int mapper;            /* printed by the mapper: no view name */
  size_t len;            /* bytes of text */
  char *text;            /* the message, NUL-terminated (in this block) */
  char view[];           /* the view's name, NUL-terminated */
} vlog_msg;

/* A view's rate window. */
typedef struct vlog_src {
  struct vlog_src *next; /* the queue's sources */
  uint64_t start;        /* loop time (ms) when its window opened */
  unsigned count;        /* messages passed in it (0: no window open) */
  uint64_t dropped;      /* messages dropped in it */
  int mapper;            /* the mapper's window */
  char name[];           /* the view's name */
} vlog_src;

struct flume__vlog {
  flume_db *db;          /* owner */
  flume_log_cb cb;       /* the embedder's, or NULL: stderr */
  void *ctx;             /* its ctx */
  vlog_msg *head;        /* messages to deliver, oldest first */
  vlog_msg *tail;
  vlog_src *srcs;        /* every view that printed */
  vlog_src *last;        /* the last one that printed (a cache) */
  uv_prepare_t deliver;  /* delivers the queue before the loop polls */
  int deliver_on;        /* it is started */
  uv_timer_t window;     /* ends windows that dropped messages */
  int window_on;         /* it is started */
  int closing;           /* the database is closing: no handle starts */
  int handles;           /* handles still closing */
  void (*closed)(void *ctx); /* the database's close, told once they are */
  void *closed_ctx;
};

static const flume__part_ops vlog_part;

static void on_deliver(uv_prepare_t *p);

/* Queues a message (dropped silently when out of memory: a message is
 * never worth failing a view for). */
static void enqueue(flume__vlog *q, const vlog_src *s, int64_t seq,
                    const char *text, size_t len) {
  size_t nl = strlen(s->name);
  vlog_msg *m = malloc(sizeof *m + nl + 1 + len + 1);
  if (m == NULL) return;
  m->next = NULL;
  m->seq = seq;
  m->mapper = s->mapper;
  m->len = len;
  memcpy(m->view, s->name, nl + 1);
  m->text = m->view + nl + 1;
  memcpy(m->text, text, len);
  m->text[len] = '\0';
  if (q->tail) q->tail->next = m;
  else q->head = m;
  q->tail = m;
  if (!q->deliver_on && !q->closing) {
    q->deliver_on = 1;
    uv_prepare_start(&q->deliver, on_deliver);
  }
}

/* Ends s's window: its drop count becomes a message. */
static void window_end(flume__vlog *q, vlog_src *s) {
  if (s->dropped) {
    char text[64];
    int n = snprintf(text, sizeof text, "(%llu message%s dropped)",
                     (unsigned long long)s->dropped,
                     s->dropped == 1 ? "" : "s");
    enqueue(q, s, -1, text, (size_t)n);
  }
  s->count = 0;
  s->dropped = 0;
}

static void on_window(uv_timer_t *t);

/* Starts the window timer for the earliest end of a window that dropped
 * messages, if any is still open at `now`. */
static void window_arm(flume__vlog *q, uint64_t now) {
  uint64_t next = UINT64_MAX;
  for (vlog_src *s = q->srcs; s; s = s->next)
    if (s->dropped && s->start + WINDOW_MS < next) next = s->start + WINDOW_MS;
  if (next == UINT64_MAX || q->closing) {
    if (q->window_on) uv_timer_stop(&q->window);
    q->window_on = 0;
    return;
  }
  q->window_on = 1;
  uv_timer_start(&q->window, on_window, next > now ? next - now : 0, 0);
}

/* Ends the windows that are over; with `all`, every window. */
static void windows_end(flume__vlog *q, uint64_t now, int all) {
  for (vlog_src *s = q->srcs; s; s = s->next)
    if (s->count && (all || now - s->start >= WINDOW_MS)) window_end(q, s);
}

/* Hands every queued message over, oldest first. The queue is taken
 * first: a message printed meanwhile (on_log calling a view's method)
 * waits for the next delivery. */
static void deliver_all(flume__vlog *q) {
  vlog_msg *m = q->head;
  q->head = q->tail = NULL;
  while (m) {
    vlog_msg *next = m->next;
    const char *view = m->mapper ? NULL : m->view;
    if (q->cb) {
      q->cb(q->ctx, view, m->seq, m->text, m->len);
    } else {
      char at[40] = "";
      if (m->seq >= 0)
        snprintf(at, sizeof at, " at seq %lld", (long long)m->seq);
      fprintf(stderr, "flume: %s%s%s: %.*s\n", view ? "view " : "mapper",
              view ? view : "", at, (int)m->len, m->text);
    }
    free(m);
    m = next;
  }
}

static void on_deliver(uv_prepare_t *p) {
  flume__vlog *q = p->data;
  uv_prepare_stop(p);
  q->deliver_on = 0;
  deliver_all(q);
}

static void on_window(uv_timer_t *t) {
  flume__vlog *q = t->data;
  uint64_t now = uv_now(t->loop);
  q->window_on = 0;
  windows_end(q, now, 0);
  window_arm(q, now);
  deliver_all(q);
}

/* The source of `view` (NULL: the mapper), made when it first prints. */
static vlog_src *source(flume__vlog *q, const char *view) {
  const char *name = view ? view : "";
  vlog_src *s = q->last;
  if (s && s->mapper == (view == NULL) && strcmp(s->name, name) == 0)
    return s;
  for (s = q->srcs; s; s = s->next)
    if (s->mapper == (view == NULL) && strcmp(s->name, name) == 0)
      return q->last = s;
  size_t n = strlen(name);
  s = calloc(1, sizeof *s + n + 1);
  if (s == NULL) return NULL;
  s->mapper = view == NULL;
  memcpy(s->name, name, n + 1);
  s->next = q->srcs;
  q->srcs = s;
  return q->last = s;
}

void flume__vlog_add(void *ctx, const char *view, int64_t seq,
                     const char *msg, size_t len) {
  flume__vlog *q = ctx;
  vlog_src *s = source(q, view);
  if (s == NULL) return;
  uint64_t now = uv_now(q->window.loop);
  if (s->count && now - s->start >= WINDOW_MS) window_end(q, s);
  if (s->count == 0) s->start = now;
  if (s->count < FLUME_LOG_RATE) {
    s->count++;
    enqueue(q, s, seq, msg, len);
    return;
  }
  if (s->dropped++ == 0 && !q->window_on) window_arm(q, now);
}

int flume__vlog_open(flume_db *db, flume__vlog **out) {
  flume__vlog *q = flume__db_part(db, &vlog_part);
  if (q) { /* made by an earlier attempt at the views */
    *out = q;
    return 0;
  }
  q = calloc(1, sizeof *q);
  if (q == NULL) return FLUME_ENOMEM;
  q->db = db;
  q->cb = flume__db_on_log(db, &q->ctx);
  int rc = flume__db_attach(db, &vlog_part, q);
  if (rc) {
    free(q);
    return rc;
  }
  /* Last: a handle once initialised must be closed. */
  uv_loop_t *loop = flume__db_loop(db);
  uv_prepare_init(loop, &q->deliver);
  q->deliver.data = q;
  uv_timer_init(loop, &q->window);
  q->window.data = q;
  /* A window's end is no reason to keep the loop running: an unfinished
   * window is reported when the database closes. */
  uv_unref((uv_handle_t *)&q->window);
  *out = q;
  return 0;
}

static void vlog_before(void *part) { (void)part; }

static void vlog_closed(uv_handle_t *h) {
  flume__vlog *q = h->data;
  if (--q->handles == 0 && q->closed) q->closed(q->closed_ctx);
}

static void vlog_close(void *part, void (*done)(void *), void *ctx) {
  flume__vlog *q = part;
  q->closed = done;
  q->closed_ctx = ctx;
  q->closing = 1;
  q->handles = 2;
  uv_close((uv_handle_t *)&q->deliver, vlog_closed);
  uv_close((uv_handle_t *)&q->window, vlog_closed);
}

/* Every part's handles are closed: what is left is delivered now (on
 * the loop, from the last close callback), unfinished windows included. */
static void vlog_free(void *part) {
  flume__vlog *q = part;
  windows_end(q, 0, 1);
  deliver_all(q);
  while (q->srcs) {
    vlog_src *s = q->srcs;
    q->srcs = s->next;
    free(s);
  }
  free(q);
}

static const flume__part_ops vlog_part = {vlog_before, vlog_close,
                                          vlog_free, NULL};
