/* A growable byte buffer, for encoding and for copying values around. */
#ifndef FLUME_RUNTIME_BUF_H
#define FLUME_RUNTIME_BUF_H

#include <stdlib.h>
#include <string.h>

#include "flume.h"

typedef struct flume__buf {
  char *data; /* the bytes; NULL until the first reserve */
  size_t len; /* bytes in use */
  size_t cap; /* bytes allocated */
} flume__buf;

#define FLUME__BUF_INIT {NULL, 0, 0}

/* Makes room for `extra` more bytes. Returns 0 or FLUME_ENOMEM. */
static inline int flume__buf_reserve(flume__buf *b, size_t extra) {
  if (b->cap - b->len >= extra) return 0;
  size_t need = b->len + extra;
  if (need < b->len) return FLUME_ENOMEM;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) return FLUME_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

static inline int flume__buf_append(flume__buf *b, const void *p, size_t n) {
  int rc = flume__buf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static inline void flume__buf_free(flume__buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

#endif
