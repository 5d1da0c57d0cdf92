/* Error codes shared by every module: functions return 0 or a negative IC_E* code.
 * Part of lib/base; ic_strerror() gives the human-readable text for logs and replies. */
#ifndef IC_ERR_H
#define IC_ERR_H

enum {
  IC_OK = 0,
  IC_EINVAL = -1,    /* malformed or out-of-range input */
  IC_ENOMEM = -2,    /* allocation failed */
  IC_ENOTFOUND = -3, /* no such object */
  IC_EEXIST = -4,    /* already exists */
  IC_EIO = -5,       /* I/O or transport failure */
  IC_ETIMEOUT = -6,  /* deadline passed */
  IC_EUNAVAIL = -7,  /* dependency unavailable (fail open on lookups, closed on auth) */
  IC_ERANGE = -8,    /* value or size beyond a limit */
  IC_EPERM = -9,     /* not allowed (reserved tenant, auth) */
  IC_EPROTO = -10,   /* protocol violation by a peer */
  IC_ESTATE = -11,   /* operation not valid in the current state */
};

/* Static string for an IC_E* code (never NULL; unknown codes get "unknown error"). */
const char *ic_strerror(int code);

#endif
