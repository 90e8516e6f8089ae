/* The stored format's encoders (the table is in format.h). */
#include "format.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "flume.h"

void flume__record_pack(const flume__record *r,
                        char out[FLUME__RECORD_SIZE]) {
  out[0] = (char)r->kind;
  memcpy(out + 1, &r->version, 8);
  memcpy(out + 9, &r->since, 8);
  memcpy(out + 17, &r->hash, 8);
}

int flume__record_unpack(flume__slice v, flume__record *r) {
  if (v.size != FLUME__RECORD_SIZE) return FLUME_ECORRUPT;
  const char *p = v.data;
  r->kind = (uint8_t)p[0];
  memcpy(&r->version, p + 1, 8);
  memcpy(&r->since, p + 9, 8);
  memcpy(&r->hash, p + 17, 8);
  return 0;
}

const char *flume__record_kind_name(int kind) {
  switch (kind) {
  case FLUME__RECORD_REDUCE: return "reduce";
  case FLUME__RECORD_GROUP: return "group";
  case FLUME__RECORD_INDEX: return "index";
  case FLUME__RECORD_C: return "c";
  default: return "unknown";
  }
}

static int named(const char *prefix, const char *name, char *buf,
                 size_t len) {
  int n = snprintf(buf, len, "%s%s", prefix, name);
  return n < 0 || (size_t)n >= len ? -1 : n;
}

int flume__meta_view_key(const char *name, char *buf, size_t len) {
  return named(FLUME__META_VIEW_PREFIX, name, buf, len);
}

int flume__view_table_name(const char *name, char *buf, size_t len) {
  return named(FLUME__VIEW_TABLE_PREFIX, name, buf, len);
}

void flume__index_seq_put(unsigned char *out, int64_t seq) {
  for (int i = 0; i < FLUME__KEY_SEQ_LEN; i++)
    out[i] = (unsigned char)((uint64_t)seq >> (56 - 8 * i));
}

int64_t flume__index_seq_get(const void *entry, size_t len) {
  const unsigned char *s = (const unsigned char *)entry + len -
                           FLUME__KEY_SEQ_LEN;
  uint64_t seq = 0;
  for (int i = 0; i < FLUME__KEY_SEQ_LEN; i++) seq = seq << 8 | s[i];
  return (int64_t)seq;
}

int flume__meta_failed_key(const char *name, char *buf, size_t len) {
  return named(FLUME__META_FAILED_PREFIX, name, buf, len);
}

int flume__meta_script_key(const char *name, char *buf, size_t len) {
  return named(FLUME__META_SCRIPT_PREFIX, name, buf, len);
}

int flume__script_pack(const flume__script *s, flume__buf *out) {
  char h[FLUME__SCRIPT_HEADER];
  if (s->chunk_len > UINT32_MAX || s->source_len > UINT32_MAX)
    return FLUME_EINVAL;
  uint32_t c = (uint32_t)s->chunk_len, n = (uint32_t)s->source_len;
  h[0] = 1;
  h[1] = (char)s->kind;
  h[2] = (char)s->origin;
  memcpy(h + 3, &s->version, 8);
  memcpy(h + 11, &s->hash, 8);
  memcpy(h + 19, &s->session, 8);
  memcpy(h + 27, &c, 4);
  memcpy(h + 31, &n, 4);
  out->len = 0;
  int rc = flume__buf_reserve(out, sizeof h + c + n);
  if (rc) return rc;
  flume__buf_append(out, h, sizeof h);
  flume__buf_append(out, s->chunk, c);
  flume__buf_append(out, s->source, n);
  return 0;
}

int flume__script_unpack(flume__slice v, flume__script *s) {
  const char *p = v.data;
  uint32_t c, n;
  if (v.size < FLUME__SCRIPT_HEADER || p[0] != 1) return FLUME_ECORRUPT;
  s->kind = (uint8_t)p[1];
  s->origin = (uint8_t)p[2];
  memcpy(&s->version, p + 3, 8);
  memcpy(&s->hash, p + 11, 8);
  memcpy(&s->session, p + 19, 8);
  memcpy(&c, p + 27, 4);
  memcpy(&n, p + 31, 4);
  if ((uint64_t)c + n != v.size - FLUME__SCRIPT_HEADER || s->origin > 1)
    return FLUME_ECORRUPT;
  s->chunk = p + FLUME__SCRIPT_HEADER;
  s->chunk_len = c;
  s->source = s->chunk + c;
  s->source_len = n;
  return 0;
}
