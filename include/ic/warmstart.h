/* lib/warmstart: when a new inferencecache-server replica may call itself ready. It is ready
 * once every reporter it knows of has sent its full state (docs/ha.md), or a bounded time passed.
 * Whom it knows of: (a) every replica id that reports within the first `window` after start, and
 * (b) the pod names the controller PUTs to /reporters (`{"replicas":["<pod>",...]}`); a pod P is
 * satisfied by a full-state marker for replica id P or P-dp<N> (--dp-rank-suffix ranks).
 * Thread-safe; once ready it stays ready and costs one atomic load per report. */
#ifndef IC_WARMSTART_H
#define IC_WARMSTART_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/buf.h"

typedef struct ic_warmstart ic_warmstart_t;

/* Most reporters tracked per set (window-seen ids, controller names): beyond it further names
 * are ignored (and counted), so memory stays bounded whatever clients send. */
#define IC_WARMSTART_MAX_REPORTERS 65536
/* Largest PUT /reporters body accepted. */
#define IC_WARMSTART_MAX_BODY (4u << 20)

/* start_us: monotonic start time. timeout_us <= 0 disables warm start (ready at once). A window
 * longer than the timeout is cut to it. */
ic_warmstart_t *ic_warmstart_new(int64_t start_us, int64_t window_us, int64_t timeout_us);
void ic_warmstart_free(ic_warmstart_t *w);

/* A report or event from `replica_id` arrived at now_us; full_state: it was the reporter's
 * "full state sent" marker (CacheStateUpdate.full_state). */
void ic_warmstart_heard(ic_warmstart_t *w, const char *replica_id, bool full_state, int64_t now_us);

/* Parses a PUT /reporters body: one JSON object with "replicas", an array of non-empty strings
 * (other keys ignored). Returns a malloc'd NULL-terminated array of malloc'd names (*n set), or
 * NULL with a message in err. */
char **ic_warmstart_parse_reporters(const char *body, size_t len, size_t *n, char *err,
                                    size_t errlen);
void ic_warmstart_names_free(char **names);
/* Replaces the controller's list (copies the names). Returns 0 or IC_ENOMEM. */
int ic_warmstart_set_reporters(ic_warmstart_t *w, const char *const *names, size_t n);

typedef struct ic_warmstart_progress {
  bool ready;
  const char *reason;     /* "disabled", "complete", "timeout", or "waiting" */
  size_t expected;        /* distinct reporters waited for (window-seen ids + controller pods) */
  size_t synced;          /* of those, how many sent their full state */
  bool controller_list;   /* a /reporters list has been received */
  int64_t elapsed_us;     /* since start */
  int64_t ready_after_us; /* when it became ready (elapsed), -1 while not */
  int64_t window_left_us, timeout_left_us;
  uint64_t ignored; /* names beyond IC_WARMSTART_MAX_REPORTERS */
} ic_warmstart_progress_t;

/* Evaluates (and latches) readiness at now_us. */
bool ic_warmstart_ready(ic_warmstart_t *w, int64_t now_us);
void ic_warmstart_progress(ic_warmstart_t *w, int64_t now_us, ic_warmstart_progress_t *out);
/* A one-line human-readable progress text (no newline) (the /readyz body while warming up), with
 * the first few reporters still awaited. */
int ic_warmstart_describe(ic_warmstart_t *w, int64_t now_us, ic_buf_t *out);

#endif
