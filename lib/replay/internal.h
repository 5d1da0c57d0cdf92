/* lib/replay internals shared by the runner (run.c) and its HTTP side (fleet.c): the fleet's
 * per-replica load counters, the streaming sender thread, the precise-mode oracle and the
 * /metrics poller. Not a public API. */
#ifndef IC_REPLAY_INTERNAL_H
#define IC_REPLAY_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>

#include "ic/buf.h"
#include "ic/replay.h"

typedef struct fleet fleet_t;

/* Per-replica load as a gateway sees it: the engine's own running+waiting gauges from its last
 * /metrics scrape, corrected by what this router sent and saw finish since that scrape. Without
 * a successful scrape it is the router's in-flight count. */
typedef struct replica_load {
  _Atomic int64_t sent, done;       /* totals since the run started */
  _Atomic int64_t scraped;          /* running+waiting at the last scrape, -1 = none yet */
  _Atomic int64_t sent_at, done_at; /* sent/done read just before that scrape */
} replica_load_t;

/* Called on the sender thread when request `idx` finished (ok or not). */
typedef void (*fleet_done_fn)(void *ud, size_t idx);

fleet_t *fleet_new(const ic_replay_opts_t *o, ic_replay_record_t *recs, fleet_done_fn done,
                   void *ud, char *err, size_t errlen);
/* Stops the sender (transfers still running are aborted and marked failed) and the poller. */
void fleet_free(fleet_t *f);

int64_t fleet_load(fleet_t *f, int r);
void fleet_loads(fleet_t *f, int64_t *out); /* every replica */

/* Starts the /metrics poller (idempotent). */
int fleet_start_poller(fleet_t *f);

/* Hands a completion request to the sender thread; takes ownership of body (malloc'd).
 * t0_ns is the scheduled send time (for the send lag). */
int fleet_send(fleet_t *f, size_t idx, int replica, char *body, size_t len, int64_t due_ns);

/* precise: asks every engine (concurrently) how many leading tokens of the prompt it holds
 * (POST /sim/prefix_match with `prompt_json` = the prompt's JSON array); out[r] = -1 on failure.
 * One oracle per thread that decides (not thread-safe itself). */
typedef struct fleet_oracle fleet_oracle_t;
fleet_oracle_t *fleet_oracle_new(fleet_t *f);
void fleet_oracle_free(fleet_oracle_t *o);
int fleet_oracle_ask(fleet_oracle_t *o, const char *prompt_json, size_t len, int64_t *out);

/* POST /reset_prefix_cache on every engine. Returns the number of failures. */
int fleet_reset(fleet_t *f, char *err, size_t errlen);

#endif
