/* A tiny assert header for the C tests: on failure it prints the file, the
 * line, the expression and, for CHECK_OK, the error's name and message, then
 * exits non-zero. And the seed of a random test (test_seed). */
#ifndef FLUME_SPEC_CHECK_H
#define FLUME_SPEC_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "flume.h"

#define CHECK(expr)                                                            \
  do {                                                                         \
    if (!(expr)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

/* expr returns 0 or an error code. */
#define CHECK_OK(expr)                                                         \
  do {                                                                         \
    int check_rc_ = (expr);                                                    \
    if (check_rc_ != 0) {                                                      \
      fprintf(stderr, "%s:%d: %s returned %s (%d): %s\n", __FILE__, __LINE__, \
              #expr, flume_err_name(check_rc_), check_rc_,                     \
              flume_strerror(check_rc_));                                      \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

/* expr returns exactly the error code `want`. */
#define CHECK_ERR(expr, want)                                                  \
  do {                                                                         \
    int check_rc_ = (expr);                                                    \
    if (check_rc_ != (want)) {                                                 \
      fprintf(stderr, "%s:%d: %s returned %s (%d), wanted %s\n", __FILE__,    \
              __LINE__, #expr, flume_err_name(check_rc_), check_rc_,           \
              flume_err_name(want));                                           \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

/* A random test's seed: FLUME_SEED's, or one of the clock and the pid;
 * printed with the test's name, so that a failure can be replayed. */
static inline uint64_t test_seed(const char *name) {
  const char *env = getenv("FLUME_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 10)
                      : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
  printf("%s: seed %llu (FLUME_SEED=%llu replays it)\n", name,
         (unsigned long long)seed, (unsigned long long)seed);
  return seed;
}

#endif
