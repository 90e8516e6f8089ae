#include "common.h"

#include <errno.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

void check_mdb(int rc, const char *what) {
  if (rc) die("%s: %s", what, mdb_strerror(rc));
}

double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

int64_t random_seq(uint64_t i, int64_t n) {
  return (int64_t)((mix64(i) >> 1) % (uint64_t)n);
}

void data_load(const char *path, dataset *d) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) die("%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0) die("%s: %s", path, strerror(errno));
  d->size = (size_t)st.st_size;
  d->bytes = malloc(d->size ? d->size : 1);
  if (d->bytes == NULL) die("out of memory");
  if (fread(d->bytes, 1, d->size, f) != d->size) die("%s: short read", path);
  fclose(f);
  size_t n = 0;
  for (size_t p = 0; p + 4 <= d->size; n++) {
    uint32_t len;
    memcpy(&len, d->bytes + p, 4); /* little-endian hosts only */
    p += 4 + (size_t)len;
    if (p > d->size) die("%s: truncated at value %zu", path, n);
  }
  d->n = n;
  d->at = malloc((n ? n : 1) * sizeof *d->at);
  d->len = malloc((n ? n : 1) * sizeof *d->len);
  if (d->at == NULL || d->len == NULL) die("out of memory");
  size_t p = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(&d->len[i], d->bytes + p, 4);
    d->at[i] = d->bytes + p + 4;
    p += 4 + d->len[i];
  }
}

MDB_env *env_open(const char *dir, size_t map_bytes) {
  MDB_env *env;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    die("%s: %s", dir, strerror(errno));
  check_mdb(mdb_env_create(&env), "mdb_env_create");
  check_mdb(mdb_env_set_maxdbs(env, 8), "mdb_env_set_maxdbs");
  check_mdb(mdb_env_set_mapsize(env, map_bytes), "mdb_env_set_mapsize");
  /* flume's flags; sync on (durable commits) as flume's default */
  check_mdb(mdb_env_open(env, dir, MDB_NOTLS | MDB_NORDAHEAD, 0644),
            "mdb_env_open");
  return env;
}
