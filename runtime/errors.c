/* flume_strerror() and flume_err_name(), generated from FLUME_ERRNO_MAP. */
#include <string.h>

#include "flume.h"

FLUME_API const char *flume_strerror(int err) {
  switch (err) {
#define FLUME__ERR_MSG(name, value, msg)                                       \
  case value:                                                                  \
    return msg;
    FLUME_ERRNO_MAP(FLUME__ERR_MSG)
#undef FLUME__ERR_MSG
  case 0:
    return "success";
#define FLUME__UV_MSG(name, msg)                                               \
  case UV_##name:                                                              \
    return msg;
    UV_ERRNO_MAP(FLUME__UV_MSG)
#undef FLUME__UV_MSG
  default:
    /* libuv's own strerror allocates (and leaks) for codes it does not
     * know; its list above covers every code it passes on. */
    return "unknown error";
  }
}

FLUME_API const char *flume_err_name(int err) {
  switch (err) {
#define FLUME__ERR_NAME(name, value, msg)                                      \
  case value:                                                                  \
    return #name;
    FLUME_ERRNO_MAP(FLUME__ERR_NAME)
#undef FLUME__ERR_NAME
  case 0:
    return "OK";
#define FLUME__UV_NAME(name, msg)                                              \
  case UV_##name:                                                              \
    return #name;
    UV_ERRNO_MAP(FLUME__UV_NAME)
#undef FLUME__UV_NAME
  default:
    return "UNKNOWN";
  }
}

FLUME_API const char *flume_version(void) { return "0.2.0"; }
