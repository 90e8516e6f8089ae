/*
 * The gate: reads that wait for a view. A waiter waits until the view is
 * set up and its committed since (what its stored state includes) reaches
 * a target; the waiters of a view are kept in order of target, so one pass
 * from the front releases all that may go on.
 *
 * On a read-only handle nothing in this process moves a view: the writer
 * process's checkpoints do (follow.c). While reads wait, a timer looks at
 * the records of the views they wait on (every POLL_MS: one short read
 * transaction each), and at the writer every CHECK_EVERY ticks, failing
 * the waits of a view behind the log that no running writer brings up. It
 * holds the loop only while something waits, so a program whose reads are
 * done can end.
 */
#include <stdlib.h>

#include "views/engine.h"

#define POLL_MS 5      /* how often waiting views look at their record */
#define CHECK_EVERY 20 /* ticks between looks at the writer (100 ms) */

struct flume__waiter {
  flume__waiter *next;   /* the view's list, by target */
  flume_view *view;      /* the view waited on */
  int64_t target;        /* the committed since that releases it */
  flume__wait_cb cb;     /* called once */
  void *ctx;
  uv_timer_t *timer;     /* the timeout or the wake-up, or NULL */
  int64_t timeout_ms;    /* its timeout in ms, or -1 for none */
  int wake;              /* the timer is a wake-up on the next loop turn */
};

static void waiter_timer_closed(uv_handle_t *h) { free(h); }

static void waiter_finish(flume__waiter *w, int status) {
  if (w->timer) {
    uv_close((uv_handle_t *)w->timer, waiter_timer_closed);
    w->timer = NULL;
  }
  flume__wait_cb cb = w->cb;
  void *ctx = w->ctx;
  free(w);
  cb(ctx, status);
}

/* What a waiter waits for: the view set up and its committed since at
 * `target`. The one predicate of every wait, checked before it sleeps and
 * after every wake-up (Tarantool's box_wait_ro). */
static int reached(const flume_view *v, int64_t target) {
  return v->ready && !v->failed && v->committed >= target;
}

/* How a waiter that may go on ends: 0, or FLUME_ECLOSED once the database
 * is closing (close cancels what is pending). */
static int release_status(flume_view *v) {
  flume__views *vs = v->vs;
  return vs == NULL || vs->closing || vs->stopping ? FLUME_ECLOSED : 0;
}

/* Releases the waiters whose target the view has reached, in order. */
void flume__gate_release(flume_view *v) {
  while (v->waiters && reached(v, v->waiters->target)) {
    flume__waiter *w = v->waiters;
    v->waiters = w->next;
    waiter_finish(w, release_status(v));
  }
}

void flume__gate_fail(flume_view *v, int status) {
  while (v->waiters) {
    flume__waiter *w = v->waiters;
    v->waiters = w->next;
    waiter_finish(w, status);
  }
}

static void waiter_unlink(flume__waiter *w) {
  for (flume__waiter **p = &w->view->waiters; *p; p = &(*p)->next) {
    if (*p == w) {
      *p = w->next;
      break;
    }
  }
}

static void waiter_timeout(uv_timer_t *t) {
  flume__waiter *w = t->data;
  flume_view *v = w->view;
  int status = release_status(v);
  if (status == 0 && v->failed) status = FLUME_EVIEW;
  if (status == 0 && !reached(v, w->target)) {
    if (w->wake) {
      /* Woken for nothing (a rebuild started meanwhile): wait on, under
       * the timeout it asked for. */
      w->wake = 0;
      uv_timer_stop(t);
      if (w->timeout_ms >= 0)
        uv_timer_start(t, waiter_timeout, (uint64_t)w->timeout_ms, 0);
      return;
    }
    status = FLUME_ETIMEDOUT;
  }
  waiter_unlink(w);
  waiter_finish(w, status);
}

/* ---- read-only handles: polling the writer's checkpoints ------------- */

static void look(flume_view *list, int check) {
  for (flume_view *v = list; v; v = v->next) {
    if (v->waiters == NULL) continue;
    int rc = flume__follow_sync(v);
    if (rc == 0) flume__gate_release(v);
    if (rc == 0 && v->waiters && check && flume__follow_lags(v))
      rc = flume__follow_check(v);
    if (rc) flume__gate_fail(v, rc);
  }
}

static int waiting(const flume_view *list) {
  for (; list; list = list->next)
    if (list->waiters) return 1;
  return 0;
}

static void on_poll(uv_timer_t *t) {
  flume__views *vs = t->data;
  int check = ++vs->poll_ticks % CHECK_EVERY == 0;
  look(vs->list, check);
  look(vs->dead, check);
  if (!waiting(vs->list) && !waiting(vs->dead)) {
    uv_timer_stop(t);
    vs->poll_on = 0;
  }
}

static void poll_run(flume__views *vs) {
  if (vs->poll_on || vs->closing) return;
  vs->poll_on = 1;
  uv_timer_start(&vs->poll, on_poll, POLL_MS, POLL_MS);
}

void flume__gate_start(flume__views *vs) {
  uv_timer_init(flume__db_loop(vs->db), &vs->poll);
  vs->poll.data = vs;
}

void flume__gate_close(flume__views *vs, uv_close_cb done) {
  uv_close((uv_handle_t *)&vs->poll, done);
}

int flume__view_wait(flume_view *v, int64_t target, double timeout,
                     int defer, flume__wait_cb cb, void *ctx) {
  flume__views *vs = v->vs;
  if (vs == NULL || vs->closing || vs->stopping || vs->draining)
    return FLUME_ECLOSED;
  if (vs->readonly && v->ready && !v->failed) {
    /* A writer's checkpoints bring it up, if a writer runs and has it
     * (follow.c); otherwise the read fails now rather than hang. */
    int rc = flume__follow_sync(v);
    if (rc == 0 && !reached(v, target) && flume__follow_lags(v))
      rc = flume__follow_check(v);
    if (rc) return rc;
  }
  int now = v->failed || reached(v, target);
  if (now && !defer) return v->failed ? FLUME_EVIEW : FLUME__WAIT_REACHED;
  flume__waiter *w = calloc(1, sizeof *w);
  if (w == NULL) return FLUME_ENOMEM;
  w->view = v;
  w->target = target;
  w->cb = cb;
  w->ctx = ctx;
  w->wake = now;
  /* No timeout (negative, NaN, or past what a timer can count) is -1. */
  w->timeout_ms = timeout >= 0 && timeout * 1000.0 < 9.2e18
                      ? (int64_t)(timeout * 1000.0)
                      : -1;
  if (now || w->timeout_ms >= 0) {
    w->timer = malloc(sizeof *w->timer);
    if (w->timer == NULL) {
      free(w);
      return FLUME_ENOMEM;
    }
    uv_timer_init(flume__db_loop(v->db), w->timer);
    w->timer->data = w;
    uv_timer_start(w->timer, waiter_timeout,
                   now ? 0 : (uint64_t)w->timeout_ms, 0);
  }
  /* In order of target, so waiters added in any order are all released;
   * a deferred one is on the list too, so that close cancels it. */
  flume__waiter **p = &v->waiters;
  while (*p && (*p)->target <= target) p = &(*p)->next;
  w->next = *p;
  *p = w;
  if (vs->readonly) poll_run(vs);
  return 0;
}

void flume__gate_move(flume_view *from, flume_view *to) {
  to->waiters = from->waiters;
  for (flume__waiter *w = to->waiters; w; w = w->next) w->view = to;
  from->waiters = NULL;
}
