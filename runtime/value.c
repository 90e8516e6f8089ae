/*
 * flume_encode / flume_decode: msgpack and a tree of plain C values
 * (flume.h's flume_value), for C programs that read and write the values
 * a Lua program sees. The encoding is flume's (runtime/msgpack.c writes
 * the same forms from Lua values); decoding makes the whole tree in one
 * allocation: a first walk measures it (nodes and string bytes), a second
 * fills it, so freeing it is one flume_free().
 */
#include <stdlib.h>
#include <string.h>

#include "flume.h"
#include "mpwrite.h"

/* ---- encoding ---------------------------------------------------------- */

static int encode(const flume_value *v, flume__buf *b, int depth) {
  int rc;
  switch (v->type) {
  case FLUME_NIL: return flume__mpw_be(b, 0xc0, 0, 0);
  case FLUME_BOOL: return flume__mpw_be(b, v->as.b ? 0xc3 : 0xc2, 0, 0);
  case FLUME_INT: return flume__mpw_int(b, v->as.i);
  case FLUME_FLOAT: return flume__mpw_float(b, v->as.f);
  case FLUME_STR:
    if (v->as.str.len && v->as.str.ptr == NULL) return FLUME_EINVAL;
    return flume__mpw_str(b, v->as.str.ptr, v->as.str.len);
  case FLUME_ARRAY: {
    size_t n = v->as.array.n;
    if (depth >= FLUME_VALUE_MAX_DEPTH || (n && v->as.array.items == NULL))
      return FLUME_EINVAL;
    if ((rc = flume__mpw_count(b, n, 0x90, 0xdc))) return rc;
    for (size_t i = 0; i < n; i++)
      if ((rc = encode(&v->as.array.items[i], b, depth + 1))) return rc;
    return 0;
  }
  case FLUME_MAP: {
    size_t n = v->as.map.n;
    if (depth >= FLUME_VALUE_MAX_DEPTH ||
        (n && (v->as.map.keys == NULL || v->as.map.vals == NULL)))
      return FLUME_EINVAL;
    if ((rc = flume__mpw_count(b, n, 0x80, 0xde))) return rc;
    for (size_t i = 0; i < n; i++)
      if ((rc = encode(&v->as.map.keys[i], b, depth + 1)) ||
          (rc = encode(&v->as.map.vals[i], b, depth + 1)))
        return rc;
    return 0;
  }
  }
  return FLUME_EINVAL;
}

FLUME_API int flume_encode(const flume_value *v, void **out, size_t *len) {
  if (v == NULL || out == NULL || len == NULL) return FLUME_EINVAL;
  flume__buf b = FLUME__BUF_INIT;
  int rc = encode(v, &b, 0);
  if (rc == 0 && b.data == NULL) rc = flume__buf_reserve(&b, 1);
  if (rc) {
    flume__buf_free(&b);
    return rc;
  }
  *out = b.data;
  *len = b.len;
  return 0;
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct dec {
  const unsigned char *p;   /* next byte */
  const unsigned char *end; /* end of the input */
  flume_value *nodes;       /* fill: the next free node */
  char *strs;               /* fill: the next free string byte */
  size_t n_nodes;           /* measure: nodes needed */
  size_t n_bytes;           /* measure: string bytes needed (with NULs) */
} dec;

static uint64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

static const unsigned char *take(dec *d, uint64_t n) {
  if ((uint64_t)(d->end - d->p) < n) return NULL;
  const unsigned char *q = d->p;
  d->p += n;
  return q;
}

/*
 * Reads one value at d->p. With `v` NULL it only measures (counting the
 * nodes of its children and its string bytes); else it fills *v, taking
 * children's nodes from d->nodes and string bytes from d->strs.
 */
static int value(dec *d, flume_value *v, int depth) {
  const unsigned char *q;
  if (depth > FLUME_VALUE_MAX_DEPTH || (q = take(d, 1)) == NULL)
    return FLUME_EDECODE;
  unsigned c = q[0];
  flume_value tmp;
  if (v == NULL) v = &tmp;
  uint64_t n = 0;
  int container = 0; /* 1 array, 2 map */
  size_t slen = 0;
  const unsigned char *s = NULL;
  if (c < 0x80) {
    v->type = FLUME_INT, v->as.i = c;
    return 0;
  }
  if (c >= 0xe0) {
    v->type = FLUME_INT, v->as.i = (int8_t)c;
    return 0;
  }
  if (c < 0x90) {
    container = 2, n = c & 0x0f;
  } else if (c < 0xa0) {
    container = 1, n = c & 0x0f;
  } else if (c < 0xc0) {
    slen = c & 0x1f;
    if ((s = take(d, slen)) == NULL) return FLUME_EDECODE;
  } else {
    int w = 0;
    switch (c) {
    case 0xc0: v->type = FLUME_NIL; return 0;
    case 0xc2: case 0xc3: v->type = FLUME_BOOL, v->as.b = c == 0xc3; return 0;
    case 0xc4: case 0xd9: w = 1; break;
    case 0xc5: case 0xda: w = 2; break;
    case 0xc6: case 0xdb: w = 4; break;
    case 0xca: case 0xcb: {
      int nb = c == 0xca ? 4 : 8;
      if ((q = take(d, (uint64_t)nb)) == NULL) return FLUME_EDECODE;
      uint64_t u = be(q, nb);
      if (nb == 4) {
        uint32_t u32 = (uint32_t)u;
        float f;
        memcpy(&f, &u32, 4);
        v->as.f = f;
      } else {
        memcpy(&v->as.f, &u, 8);
      }
      v->type = FLUME_FLOAT;
      return 0;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
      int nb = 1 << (c - 0xcc);
      if ((q = take(d, (uint64_t)nb)) == NULL) return FLUME_EDECODE;
      uint64_t u = be(q, nb);
      if (u > INT64_MAX) v->type = FLUME_FLOAT, v->as.f = (double)u;
      else v->type = FLUME_INT, v->as.i = (int64_t)u;
      return 0;
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
      int nb = 1 << (c - 0xd0);
      if ((q = take(d, (uint64_t)nb)) == NULL) return FLUME_EDECODE;
      uint64_t u = be(q, nb);
      if (nb < 8) {
        uint64_t sign = UINT64_C(1) << (8 * nb - 1);
        v->as.i = (int64_t)(u ^ sign) - (int64_t)sign;
      } else {
        v->as.i = (int64_t)u;
      }
      v->type = FLUME_INT;
      return 0;
    }
    case 0xdc: case 0xdd: case 0xde: case 0xdf: {
      int nb = c == 0xdc || c == 0xde ? 2 : 4;
      if ((q = take(d, (uint64_t)nb)) == NULL) return FLUME_EDECODE;
      n = be(q, nb);
      container = c <= 0xdd ? 1 : 2;
      break;
    }
    default: return FLUME_EDECODE; /* extensions, 0xc1 */
    }
    if (w) {
      if ((q = take(d, (uint64_t)w)) == NULL) return FLUME_EDECODE;
      slen = (size_t)be(q, w);
      if ((s = take(d, slen)) == NULL) return FLUME_EDECODE;
    }
  }
  if (!container) { /* a string */
    v->type = FLUME_STR;
    if (v == &tmp) {
      d->n_bytes += slen + 1;
    } else {
      memcpy(d->strs, s, slen);
      d->strs[slen] = '\0';
      v->as.str.ptr = d->strs;
      v->as.str.len = slen;
      d->strs += slen + 1;
    }
    return 0;
  }
  uint64_t count = container == 2 ? 2 * n : n;
  /* every entry is at least a byte: a count past the input is damage */
  if (count > (uint64_t)(d->end - d->p)) return FLUME_EDECODE;
  flume_value *kids = NULL;
  if (v == &tmp) {
    d->n_nodes += (size_t)count;
  } else {
    kids = d->nodes;
    d->nodes += count;
  }
  for (uint64_t i = 0; i < count; i++) {
    int rc = value(d, kids ? &kids[i] : NULL, depth + 1);
    if (rc) return rc;
  }
  if (container == 1) {
    v->type = FLUME_ARRAY;
    v->as.array.items = kids;
    v->as.array.n = (size_t)n;
  } else {
    /* keys and values interleaved as read: split them in place into two
     * runs (keys first), as the struct says */
    if (kids && n > 1) {
      flume_value *tmpv = malloc((size_t)count * sizeof *tmpv);
      if (tmpv == NULL) return FLUME_ENOMEM;
      for (uint64_t i = 0; i < n; i++) {
        tmpv[i] = kids[2 * i];
        tmpv[n + i] = kids[2 * i + 1];
      }
      memcpy(kids, tmpv, (size_t)count * sizeof *tmpv);
      free(tmpv);
    }
    v->type = FLUME_MAP;
    v->as.map.keys = kids;
    v->as.map.vals = kids ? kids + n : NULL;
    v->as.map.n = (size_t)n;
  }
  return 0;
}

FLUME_API int flume_decode(const void *data, size_t len, flume_value **out) {
  if (data == NULL || out == NULL) return FLUME_EINVAL;
  dec d = {data, (const unsigned char *)data + len, NULL, NULL, 1, 0};
  int rc = value(&d, NULL, 0);
  if (rc == 0 && d.p != d.end) rc = FLUME_EDECODE;
  if (rc) return rc;
  size_t nodes = d.n_nodes * sizeof(flume_value);
  flume_value *tree = malloc(nodes + d.n_bytes + 1);
  if (tree == NULL) return FLUME_ENOMEM;
  d.p = data;
  d.nodes = tree + 1;
  d.strs = (char *)tree + nodes;
  if ((rc = value(&d, tree, 0))) {
    free(tree);
    return rc;
  }
  *out = tree;
  return 0;
}
