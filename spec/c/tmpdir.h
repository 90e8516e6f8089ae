/* Temporary folders for the C tests: made fresh under FLUME_TEST_TMP (or
 * /tmp), removed with everything in them. */
#ifndef FLUME_SPEC_TMPDIR_H
#define FLUME_SPEC_TMPDIR_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "check.h"

static inline int tmpdir_rm_entry(const char *path, const struct stat *st,
                                  int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* A new empty folder "<base>/<what>-XXXXXX" (mkdtemp's template) in dir. */
static inline void temp_dir(char *dir, size_t n, const char *what) {
  const char *base = getenv("FLUME_TEST_TMP");
  if (base == NULL || *base == '\0') base = "/tmp";
  if (mkdir(base, 0755) != 0) CHECK(errno == EEXIST);
  snprintf(dir, n, "%s/%s-XXXXXX", base, what);
  CHECK(mkdtemp(dir) != NULL);
}

/* Removes dir and all it holds. */
static inline void remove_dir(const char *dir) {
  CHECK(nftw(dir, tmpdir_rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

#endif
