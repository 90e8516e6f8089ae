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
 *  "meta"        "script:" name             the view's catalogue entry: the
 *                                           script it was attached with
 *                                           (below)
 *  "meta"        "failed:" name             8 bytes: the session of the writer
 *                                           whose copy of the view failed,
 *                                           then its error message (gone
 *                                           when it is set up or rebuilt)
 *  "meta"        "writer"                   8 bytes: the session of the last
 *                                           writer to open the database
 *  "meta"        "remote.stream"            a remote log's stream name: the
 *                                           folder caches that stream only
 *  "meta"        "remote.uuid"              the stream's uuid, from its
 *                                           genesis message (below)
 *  "meta"        "remote.node"              this folder's node id
 *  "meta"        "remote.urls"              the server URLs it was last
 *                                           opened with
 *  "meta"        "remote.seq"               8 bytes (uint64): the stream seq
 *                                           of the last message stored here,
 *                                           written in the transaction that
 *                                           stores its values
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
 * The catalogue entry, written by the writer whenever it sets a view up (in
 * the transaction that reads or resets its record), so that a read-only
 * handle or a later writer can mount the view by name without its file:
 *
 *  offset  size  field
 *  0       1     entry format: 1
 *  1       1     kind, as in the record
 *  2       1     origin: 0 script text, 1 a Lua table (source: the text of
 *                the chunk its functions were written in, when it could be
 *                read; may be empty)
 *  3       8     version (int64)
 *  11      8     hash of the script, as in the record (uint64)
 *  19      8     session of the writer that attached it (uint64): equal to
 *                "writer" while that writer runs with the view attached
 *  27      4     chunk name length c (uint32)
 *  31      4     source length s (uint32)
 *  35      c     chunk name ("@path/to/view.lua", "=name")
 *  35+c    s     source
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
 * A remote log (runtime/remote/) is a NATS JetStream stream with the
 * subjects "flume.<stream>.meta" and "flume.<stream>.log.<node>". Its first
 * message, the genesis, is on the meta subject: text lines
 * "flume-remote 1\nformat <FLUME__FORMAT>\ncodec <name>\nuuid <32 hex>\n".
 * Every message on a log subject is an envelope: the values of one group
 * of appends back to back, each a u32 length (little-endian) then its
 * bytes; its header Nats-Msg-Id is "<node>-<boot, 16 hex>-<envelope
 * count>".
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
#define FLUME__META_SCRIPT_PREFIX "script:"
#define FLUME__META_WRITER "writer"
#define FLUME__META_FAILED_PREFIX "failed:"
#define FLUME__META_REMOTE_STREAM "remote.stream"
#define FLUME__META_REMOTE_UUID "remote.uuid"
#define FLUME__META_REMOTE_NODE "remote.node"
#define FLUME__META_REMOTE_SEQ "remote.seq"
#define FLUME__META_REMOTE_URLS "remote.urls"
/* The first line of a genesis message, and its version. */
#define FLUME__REMOTE_GENESIS "flume-remote 1"

/* A view's table is this prefix and its name. */
#define FLUME__VIEW_TABLE_PREFIX "v:"
/* The one key of a reduce view's table. */
#define FLUME__REDUCE_STATE_KEY "s"

/* A view's name: 1 to 63 bytes (a view's names fit in 64-byte buffers). */
#define FLUME__NAME_MAX 63
/* "view:", "script:" or "v:" and a name, with its NUL. */
#define FLUME__NAMED_KEY_SIZE                                                \
  (sizeof FLUME__META_SCRIPT_PREFIX + FLUME__NAME_MAX)

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

#define FLUME__SCRIPT_HEADER 35

struct flume__buf;

/* A catalogue entry, unpacked: chunk and source point into the bytes it
 * was unpacked from. */
typedef struct flume__script {
  uint8_t kind;       /* FLUME__RECORD_* */
  uint8_t origin;     /* 0 script text, 1 a Lua table */
  int64_t version;    /* script version */
  uint64_t hash;      /* script hash */
  uint64_t session;   /* session of the writer that attached it */
  const char *chunk;  /* chunk name */
  size_t chunk_len;   /* its length */
  const char *source; /* source text */
  size_t source_len;  /* its length */
} flume__script;

/* Packs s into out (reset first). FLUME_EINVAL when a length does not fit
 * 32 bits, FLUME_ENOMEM. */
int flume__script_pack(const flume__script *s, struct flume__buf *out);
/* FLUME_ECORRUPT when v is not a catalogue entry. */
int flume__script_unpack(flume__slice v, flume__script *s);

/* Writes "failed:<name>" into buf; its length, or -1. */
int flume__meta_failed_key(const char *name, char *buf, size_t len);

/* Writes "script:<name>" into buf; its length, or -1. */
int flume__meta_script_key(const char *name, char *buf, size_t len);

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
