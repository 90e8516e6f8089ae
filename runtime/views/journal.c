/*
 * A view's journal of recent changes (journal.h): a list of records, the
 * oldest first, within a byte bound. The pipeline adds a record when it
 * hands a checkpoint to the writer (before the commit, so a read that sees
 * the commit in the store finds its record), drops records of a
 * checkpoint that failed, and empties it on rebuild. Reading it is
 * read.c's (flume__view_changes).
 */
#include <string.h>

#include "views/journal.h"

static size_t bound(const flume__journal *j) {
  return j->max ? j->max : FLUME__JOURNAL_MAX;
}

static void drop_head(flume__journal *j) {
  flume__jrec *r = j->head;
  j->head = r->next;
  if (j->head == NULL) j->tail = NULL;
  j->bytes -= sizeof *r + r->len;
  j->base = r->to;
  free(r);
}

/* Empties it and makes it hold every change after `since`: none. */
static void restart(flume__journal *j, int64_t since) {
  while (j->head) drop_head(j);
  j->valid = 1;
  j->base = j->last = since;
  j->bytes = 0;
}

void flume__journal_reset(flume__journal *j) {
  while (j->head) drop_head(j);
  j->valid = 0;
  j->bytes = 0;
}

void flume__journal_add(flume__journal *j, int64_t from, int64_t to,
                        const flume__buf *ops) {
  if (!j->on) return;
  if (!j->valid || j->last != from) restart(j, from);
  /* The keys' bytes: each kept with its length, the value dropped. */
  size_t len = 0, n = 0;
  const char *p = ops->data, *end = ops->data + ops->len;
  while (p < end) {
    uint32_t kl, vl;
    memcpy(&kl, p + 1, 4);
    memcpy(&vl, p + 5, 4);
    len += 4 + kl;
    n++;
    p += 9 + (size_t)kl + vl;
  }
  if (sizeof(flume__jrec) + len > bound(j)) {
    restart(j, to); /* larger than the bound: held no more */
    return;
  }
  flume__jrec *r = malloc(sizeof *r + len);
  if (r == NULL) {
    restart(j, to);
    return;
  }
  r->next = NULL;
  r->from = from;
  r->to = to;
  r->n = n;
  r->len = len;
  char *w = r->data;
  for (p = ops->data; p < end;) {
    uint32_t kl, vl;
    memcpy(&kl, p + 1, 4);
    memcpy(&vl, p + 5, 4);
    memcpy(w, &kl, 4);
    memcpy(w + 4, p + 9, kl);
    w += 4 + kl;
    p += 9 + (size_t)kl + vl;
  }
  if (j->tail) j->tail->next = r;
  else j->head = r;
  j->tail = r;
  j->last = to;
  j->bytes += sizeof *r + len;
  while (j->bytes > bound(j)) drop_head(j);
}

void flume__journal_truncate(flume__journal *j, int64_t since) {
  if (!j->valid || j->last <= since) return;
  if (j->base > since) {
    flume__journal_reset(j); /* none of what it holds was stored */
    return;
  }
  flume__jrec **at = &j->head, *keep = NULL;
  while (*at && (*at)->to <= since) {
    keep = *at;
    at = &(*at)->next;
  }
  while (*at) {
    flume__jrec *r = *at;
    *at = r->next;
    j->bytes -= sizeof *r + r->len;
    free(r);
  }
  j->tail = keep;
  j->last = keep ? keep->to : j->base; /* a record's end, never within one */
}

void flume__journal_bound(flume__journal *j, size_t max) {
  j->max = max;
  while (j->head && j->bytes > bound(j)) drop_head(j);
}

int flume__journal_covers(const flume__journal *j, int64_t after,
                          int64_t upto) {
  return j->valid && j->base <= after && j->last >= upto;
}
