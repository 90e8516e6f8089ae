/*
 * The stored format, in one place: every name, offset and limit that is
 * written to a database folder or bounds what may be written. Code that
 * reads or writes stored bytes takes them from here, never from a literal.
 *
 * A database is one store (log/store.h) holding the log and named tables.
 * The store keeps its own framing below this table (log/lmdb.c: each named
 * table is the LMDB database "t:<name>", and every entry carries a CRC32C
 * seal of its key and value, checked on every read).
 *
 *  table         key                        value
 *  ------------  -------------------------  ----------------------------------
 *  the log       seq (store's integer key)  the value's bytes, as the codec
 *                                           encoded them
 *  "meta"        "format"                   FLUME__FORMAT ("2")
 *  "meta"        "codec"                    the codec's name (< 64 bytes)
 *  "meta"        "view:" name               the view record (below)
 *  "v:" name     reduce: "s"                msgpack of the view's state
 *                group: key                 msgpack of the key's accumulator
 *                index: key ‖ be64(seq)     empty
 *
 * The view record, FLUME__RECORD_SIZE (25) bytes, written in the same
 * transaction as the state it describes (a checkpoint):
 *
 *  offset  size  field
 *  0       1     kind: 1 reduce, 2 group, 3 index, 4 written in C
 *  1       8     version of the script that built the state (int64)
 *  9       8     since: the last seq the state includes, -1 none (int64)
 *  17      8     hash of the script that built the state (uint64)
 *
 * Integers in the record are in host byte order (little-endian on every
 * platform flume builds for); the index entry's seq is big-endian so that
 * entries of one key sort by seq. A key is flume's order-preserving key
 * encoding (runtime/keys.h).
 *
 * Limits. LMDB's longest key is FLUME__STORE_KEY_MAX bytes (511:
 * mdb_env_get_maxkeysize() of a default build; the memory backend keeps the
 * same limit so both accept the same data). An index entry appends
 * FLUME__KEY_SEQ_LEN bytes to the key, so the longest encoded view key is
 * FLUME__KEY_MAX = 503 bytes; group views take the same limit, so a key
 * valid in one kind of view is valid in every kind. Range bounds are not
 * limited: a bound longer than any stored key still has its place in the
 * order (runtime/views/read.c). A view's name is 1 to FLUME__NAME_MAX bytes.
 *
 * Versions: format "1" had no seals; this runtime refuses it (EFORMAT).
 */
#ifndef FLUME_RUNTIME_FORMAT_H
#define FLUME_RUNTIME_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The format this runtime writes and reads. */
#define FLUME__FORMAT "2"

/* The metadata table and its keys. */
#define FLUME__META_TABLE "meta"
#define FLUME__META_FORMAT "format"
#define FLUME__META_CODEC "codec"
#define FLUME__META_VIEW_PREFIX "view:"

/* A view's table is this prefix and its name. */
#define FLUME__VIEW_TABLE_PREFIX "v:"
/* The one key of a reduce view's table. */
#define FLUME__REDUCE_STATE_KEY "s"

/* A view's name: 1 to 63 bytes (a view's names fit in 64-byte buffers). */
#define FLUME__NAME_MAX 63
/* "view:" or "v:" and a name, with its NUL. */
#define FLUME__NAMED_KEY_SIZE (sizeof FLUME__META_VIEW_PREFIX + FLUME__NAME_MAX)

/* Longest key of the store, in bytes. */
#define FLUME__STORE_KEY_MAX 511
/* Bytes of the big-endian seq after the key in an index entry. */
#define FLUME__KEY_SEQ_LEN 8
/* Longest encoded view key, in bytes (503). */
#define FLUME__KEY_MAX (FLUME__STORE_KEY_MAX - FLUME__KEY_SEQ_LEN)
/* Deepest array nesting accepted in a key. */
#define FLUME__KEY_MAX_DEPTH 16

/* Kinds in the record (flume__view_kind has the same values). */
enum {
  FLUME__RECORD_REDUCE = 1,
  FLUME__RECORD_GROUP = 2,
  FLUME__RECORD_INDEX = 3,
  FLUME__RECORD_C = 4
};

#define FLUME__RECORD_SIZE 25

/* A view record, unpacked. */
typedef struct flume__record {
  uint8_t kind;    /* FLUME__RECORD_* */
  int64_t version; /* script version */
  int64_t since;   /* checkpointed since */
  uint64_t hash;   /* script hash */
} flume__record;

void flume__record_pack(const flume__record *r,
                        char out[FLUME__RECORD_SIZE]);
/* FLUME_ECORRUPT when v is not a record. */
int flume__record_unpack(flume__slice v, flume__record *r);
/* "reduce", "group", "index", "c", or "unknown". */
const char *flume__record_kind_name(int kind);

/* Writes "view:<name>" (the record's key in "meta") into buf; its length,
 * or -1 when the name does not fit. */
int flume__meta_view_key(const char *name, char *buf, size_t len);
/* Writes "v:<name>" (the view's table) into buf; its length, or -1. */
int flume__view_table_name(const char *name, char *buf, size_t len);

/* Writes be64(seq) after an index entry's key: out has FLUME__KEY_SEQ_LEN
 * bytes. */
void flume__index_seq_put(unsigned char *out, int64_t seq);
/* The seq at the end of an index entry of `len` bytes (len >=
 * FLUME__KEY_SEQ_LEN). */
int64_t flume__index_seq_get(const void *entry, size_t len);

#endif
