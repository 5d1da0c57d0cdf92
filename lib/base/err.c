/* Error code texts for IC_E* codes. Owns nothing else. */
#include "ic/err.h"

const char *ic_strerror(int code) {
  switch (code) {
  case IC_OK: return "ok";
  case IC_EINVAL: return "invalid argument";
  case IC_ENOMEM: return "out of memory";
  case IC_ENOTFOUND: return "not found";
  case IC_EEXIST: return "already exists";
  case IC_EIO: return "i/o error";
  case IC_ETIMEOUT: return "timed out";
  case IC_EUNAVAIL: return "unavailable";
  case IC_ERANGE: return "out of range";
  case IC_EPERM: return "not permitted";
  case IC_EPROTO: return "protocol error";
  case IC_ESTATE: return "invalid state";
  default: return "unknown error";
  }
}
