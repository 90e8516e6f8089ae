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
  default:
    if (err < 0 && err > -4096) return uv_strerror(err);
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
  default:
    if (err < 0 && err > -4096) return uv_err_name(err);
    return "UNKNOWN";
  }
}

FLUME_API const char *flume_version(void) { return "0.1.0"; }
