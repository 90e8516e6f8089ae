/* flume_run_until: the loop for C programs without one of their own. */
#include "flume.h"

FLUME_API int flume_run_until(uv_loop_t *loop, const volatile int *done) {
  if (loop == NULL || done == NULL) return FLUME_EINVAL;
  while (!*done)
    if (uv_run(loop, UV_RUN_ONCE) == 0 && !*done) return FLUME_ECANCELED;
  return 0;
}
