/* What the benchmark's C programs share: the data set file, a clock, a
 * deterministic random sequence, and failing loudly. */
#ifndef FLUME_BENCH_COMMON_H
#define FLUME_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* The encoded values of the data set, as bench/gen.lua wrote them: each a
 * little-endian uint32 length and that many MessagePack bytes. */
typedef struct dataset {
  char *bytes;     /* the whole file */
  size_t size;     /* its size in bytes */
  size_t n;        /* values in it */
  const char **at; /* at[i]: value i's first byte */
  uint32_t *len;   /* len[i]: value i's size in bytes */
} dataset;

/* Reads `path` into `d`; dies on failure. */
void data_load(const char *path, dataset *d);

/* Monotonic seconds. */
double now(void);

/* A well-mixed 64-bit function of x (splitmix64's finaliser); the Lua side
 * (bench/data.lua) computes the same. */
uint64_t mix64(uint64_t x);

/* The i-th seq of the random read order over a log of n values. */
int64_t random_seq(uint64_t i, int64_t n);

/* Prints "bench: <message>" to stderr and exits with status 1. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Dies with LMDB's message if rc is not 0. */
void check_mdb(int rc, const char *what);

/* Opens (creating) an LMDB environment in `dir` with the flags flume uses,
 * a map of `map_bytes`, and room for a few named tables. */
struct MDB_env;
struct MDB_env *env_open(const char *dir, size_t map_bytes);

#endif
