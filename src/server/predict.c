/* Predict-on-route in the server's outputs (docs/ranking.md, section 3): the speculative table's
 * counters as metrics, refreshed at every scrape, and its section of GET /snapshot. */
#include <string.h>

#include "http_internal.h"
#include "ic/err.h"
#include "ic/metrics.h"

typedef struct {
  server_ctx_t *ctx;
  ic_metric_family_t *entries, *events;
} predict_metrics_t;

static predict_metrics_t PM;

/* Counters follow the index's totals: add what grew since the last scrape. */
static void add_to(ic_metric_family_t *f, const char *outcome, int64_t total) {
  const char *lv[1] = {outcome};
  ic_metric_t *c = ic_metric_child(f, lv);
  if (!c) return;
  double d = (double)total - ic_metric_value(c);
  if (d > 0) ic_metric_add(c, d);
}

static void collect(void *ud) {
  predict_metrics_t *pm = ud;
  ic_index_predict_stats_t st;
  ic_index_predict_stats(pm->ctx->index, &st);
  ic_metric_set(ic_metric_plain(pm->entries), (double)st.entries);
  add_to(pm->events, "created", st.created);
  add_to(pm->events, "confirmed", st.confirmed);
  add_to(pm->events, "expired", st.expired);
  add_to(pm->events, "dropped_at_cap", st.dropped_cap);
  add_to(pm->events, "cleared", st.cleared);
}

int server_predict_metrics_init(server_ctx_t *ctx) {
  static const char *const outcome[] = {"outcome"};
  PM.ctx = ctx;
  PM.entries = ic_metrics_gauge(
      ctx->metrics, "inferencecache_predict_entries",
      "Speculative (block, replica) entries held by predict-on-route now.", 0, NULL);
  PM.events = ic_metrics_counter(
      ctx->metrics, "inferencecache_predict_entries_total",
      "Speculative entries by outcome: created, confirmed (a real event replaced it), "
      "expired, dropped_at_cap, cleared (with its replica or block).",
      1, outcome);
  if (!PM.entries || !PM.events) return IC_ENOMEM;
  ic_metrics_on_collect(ctx->metrics, collect, &PM);
  return 0;
}

int server_snapshot_predict_json(ic_index_t *ix, ic_buf_t *b) {
  ic_index_predict_stats_t st;
  ic_index_predict_stats(ix, &st);
  if (st.created == 0) return 0; /* never used: the reference's body, untouched */
  if (b->len < 2 || b->data[b->len - 2] != '}' || b->data[b->len - 1] != '\n') return IC_EINVAL;
  b->len -= 2;
  ic_index_predict_replica_t *rows = NULL;
  size_t n = 0;
  int rc = ic_index_predict_replicas(ix, &rows, &n);
  rc |= ic_buf_appendf(b,
                       ",\"speculative\":{\"entries\":%lld,\"capacity\":%lld,\"created\":%lld,"
                       "\"confirmed\":%lld,\"expired\":%lld,\"droppedAtCap\":%lld,\"cleared\":%lld,"
                       "\"replicas\":[",
                       (long long)st.entries, (long long)st.capacity, (long long)st.created,
                       (long long)st.confirmed, (long long)st.expired, (long long)st.dropped_cap,
                       (long long)st.cleared);
  for (size_t i = 0; i < n && !rc; i++) {
    rc |= ic_buf_append_str(b, i ? ",{\"replicaId\":" : "{\"replicaId\":");
    rc |= ic_http_json_str(b, rows[i].replica_id, strlen(rows[i].replica_id));
    rc |= ic_buf_appendf(b, ",\"entries\":%lld}", (long long)rows[i].entries);
  }
  rc |= ic_buf_append_str(b, "]}}\n");
  ic_index_predict_replicas_free(rows, n);
  return rc ? IC_ENOMEM : 0;
}
