/* lib/replay reports: per-mode summaries from the per-request records (hit rate, TTFT
 * percentiles, throughput, load imbalance, prediction accuracy), JSON lines and the table. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/err.h"
#include "ic/replay.h"

/* Decision sources counted per summary: the server's reason codes, the replayer's own, then
 * "other" for anything unexpected (always the last slot). */
const char *const ic_replay_reason_names[] = {
    "PREFIX_MATCH", "TENANT_HOT", "AFFINITY_HINT", "NO_HINT", "TIMEOUT", "error",
    "fallback",     "oracle",     "memory",        "other",   NULL};
#define OTHER_SLOT 9

int ic_replay_reason_slot(const char *reason) {
  if (!reason || !*reason) return -1;
  for (int i = 0; ic_replay_reason_names[i]; i++)
    if (!strcmp(reason, ic_replay_reason_names[i])) return i;
  return OTHER_SLOT;
}

bool ic_replay_prediction_held(int64_t predicted, int64_t cached, int64_t prompt_tokens,
                               int block_size) {
  if (predicted <= 0) return true;
  int64_t limit = prompt_tokens - 1; /* an engine always computes at least the last token */
  if (block_size > 0) limit -= limit % block_size;
  int64_t want = predicted < limit ? predicted : limit;
  return cached >= want;
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n). */
static double pct(const double *v, size_t n, double p) {
  if (n == 0) return 0;
  size_t k = (size_t)ceil(p * (double)n);
  if (k < 1) k = 1;
  if (k > n) k = n;
  return v[k - 1];
}

/* Burst figures (see ic_replay_summary_t): a sibling "computed the prefix" when its engine
 * served less than the shared prefix's whole blocks from cache. */
static void burst_figures(const ic_replay_record_t *recs, size_t n, int nr, int block_size,
                          ic_replay_summary_t *s) {
  uint32_t maxb = 0;
  for (size_t i = 0; i < n; i++)
    if (recs[i].burst > maxb) maxb = recs[i].burst;
  if (maxb == 0 || maxb > 10000000) return;
  int *count = calloc((size_t)maxb * (size_t)nr, sizeof(*count));
  int *cold = calloc((size_t)maxb * (size_t)nr, sizeof(*cold));
  if (!count || !cold) goto out;
  for (size_t i = 0; i < n; i++) {
    const ic_replay_record_t *r = &recs[i];
    if (!r->burst || !r->ok || r->replica < 0 || r->replica >= nr) continue;
    size_t k = (size_t)(r->burst - 1) * (size_t)nr + (size_t)r->replica;
    count[k]++;
    int64_t whole = block_size > 0 ? (int64_t)r->burst_prefix / block_size * block_size : 0;
    cold[k] += r->cached_tokens < whole;
  }
  double same = 0, pairs = 0, computes = 0, once = 0;
  for (uint32_t b = 0; b < maxb; b++) {
    int total = 0, top = 0;
    for (int x = 0; x < nr; x++) {
      size_t k = (size_t)b * (size_t)nr + (size_t)x;
      total += count[k];
      if (count[k] > top) top = count[k];
      if (!count[k]) continue;
      pairs++;
      computes += cold[k];
      once += cold[k] == 1;
    }
    if (total == 0) continue;
    s->bursts++;
    same += (double)top / (double)total;
  }
  if (s->bursts) s->burst_same_replica_ratio = same / (double)s->bursts;
  if (pairs > 0) {
    s->burst_prefill_computes_per_replica = computes / pairs;
    s->burst_prefill_once_ratio = once / pairs;
  }
out:
  free(count);
  free(cold);
}

void ic_replay_summarize(const ic_replay_record_t *recs, size_t n, int nreplicas, int block_size,
                         const char *scenario, const char *mode, ic_replay_summary_t *s) {
  memset(s, 0, sizeof(*s));
  snprintf(s->scenario, sizeof(s->scenario), "%s", scenario ? scenario : "");
  snprintf(s->mode, sizeof(s->mode), "%s", mode ? mode : "");
  s->requests = n;
  double *ttft = malloc((n ? n : 1) * sizeof(double));
  double *e2e = malloc((n ? n : 1) * sizeof(double));
  double *lk = malloc((n ? n : 1) * sizeof(double));
  double *lag = malloc((n ? n : 1) * sizeof(double));
  int nr = nreplicas > 0 ? nreplicas : 1;
  double *work = calloc((size_t)nr, sizeof(double));
  double *first = malloc((size_t)nr * sizeof(double)), *last = malloc((size_t)nr * sizeof(double));
  if (!ttft || !e2e || !lk || !lag || !work || !first || !last) goto out;
  for (int r = 0; r < nr; r++)
    first[r] = INFINITY, last[r] = -INFINITY;
  size_t nok = 0, nlk = 0, held = 0;
  double ttft_sum = 0, e2e_sum = 0;
  int64_t outtok = 0;
  for (size_t i = 0; i < n; i++) {
    const ic_replay_record_t *r = &recs[i];
    lag[i] = r->send_lag_ms;
    if (r->lookup_us >= 0) lk[nlk++] = (double)r->lookup_us;
    int slot = ic_replay_reason_slot(r->reason);
    if (slot >= 0) s->reason_counts[slot]++;
    if (!r->ok) {
      s->failed++;
      continue;
    }
    ttft[nok] = r->ttft_ms;
    e2e[nok++] = r->e2e_ms;
    ttft_sum += r->ttft_ms;
    e2e_sum += r->e2e_ms;
    s->prompt_tokens += r->prompt_tokens;
    s->cached_tokens += r->cached_tokens;
    int64_t computed = r->computed_prefill_tokens;
    s->prefill_tokens_computed += computed;
    outtok += r->completion_tokens;
    if (r->replica >= 0 && r->replica < nr) {
      work[r->replica] += (double)computed;
      if (r->arrival_ms < first[r->replica]) first[r->replica] = r->arrival_ms;
      if (r->finish_ms > last[r->replica]) last[r->replica] = r->finish_ms;
    }
    if (r->predicted_tokens > 0) {
      s->predictions++;
      held += ic_replay_prediction_held(r->predicted_tokens, r->cached_tokens, r->prompt_tokens,
                                        block_size);
    }
  }
  s->hit_rate = s->prompt_tokens ? (double)s->cached_tokens / (double)s->prompt_tokens : 0;
  qsort(ttft, nok, sizeof(double), cmp_dbl);
  qsort(e2e, nok, sizeof(double), cmp_dbl);
  qsort(lk, nlk, sizeof(double), cmp_dbl);
  qsort(lag, n, sizeof(double), cmp_dbl);
  if (nok) {
    s->ttft_mean_ms = ttft_sum / (double)nok;
    s->e2e_mean_ms = e2e_sum / (double)nok;
  }
  s->ttft_p50_ms = pct(ttft, nok, 0.50);
  s->ttft_p90_ms = pct(ttft, nok, 0.90);
  s->ttft_p99_ms = pct(ttft, nok, 0.99);
  s->e2e_p99_ms = pct(e2e, nok, 0.99);
  s->lookup_p50_us = pct(lk, nlk, 0.50);
  s->lookup_p99_us = pct(lk, nlk, 0.99);
  s->send_lag_p99_ms = pct(lag, n, 0.99);
  s->prediction_accuracy = s->predictions ? (double)held / (double)s->predictions : 0;
  /* Throughput over each engine's own clock (simulated time is per engine), the fleet's span
   * being the longest of them. */
  double span = 0, wmax = 0, wsum = 0;
  for (int r = 0; r < nr; r++) {
    if (last[r] > first[r] && last[r] - first[r] > span) span = last[r] - first[r];
    wsum += work[r];
    if (work[r] > wmax) wmax = work[r];
  }
  if (span > 0) {
    s->throughput_rps = (double)nok / (span / 1000.0);
    s->output_tokens_per_s = (double)outtok / (span / 1000.0);
  }
  s->load_imbalance = wsum > 0 ? wmax / (wsum / (double)nr) : 0;
  burst_figures(recs, n, nr, block_size, s);
out:
  free(ttft);
  free(e2e);
  free(lk);
  free(lag);
  free(work);
  free(first);
  free(last);
}

static void jnum(ic_buf_t *b, const char *k, double v) {
  if (!isfinite(v)) v = 0;
  if (v == floor(v) && fabs(v) < 1e15)
    ic_buf_appendf(b, ",\"%s\":%.0f", k, v);
  else
    ic_buf_appendf(b, ",\"%s\":%.6g", k, v);
}

static void jstr(ic_buf_t *b, const char *k, const char *v) {
  ic_buf_appendf(b, ",\"%s\":", k);
  ic_buf_append_json_str(b, v, strlen(v));
}

static int flush_line(FILE *f, ic_buf_t *b) {
  ic_buf_append_str(b, "}\n");
  int rc = b->data && fwrite(b->data, 1, b->len, f) == b->len ? 0 : IC_EIO;
  ic_buf_free(b);
  return rc;
}

int ic_replay_write_record_json(FILE *f, const char *scenario, const char *mode,
                                const char *replica_id, const ic_replay_record_t *r) {
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_appendf(&b, "{\"type\":\"request\",\"index\":%zu", r->index);
  jstr(&b, "scenario", scenario);
  jstr(&b, "mode", mode);
  jstr(&b, "replica", replica_id ? replica_id : "");
  ic_buf_appendf(&b, ",\"ok\":%s", r->ok ? "true" : "false");
  if (!r->ok) jstr(&b, "error", r->error);
  if (r->reason[0]) jstr(&b, "reason", r->reason);
  if (r->lookup_us >= 0) jnum(&b, "lookup_us", (double)r->lookup_us);
  if (r->predicted_tokens >= 0) jnum(&b, "predicted_tokens", (double)r->predicted_tokens);
  jnum(&b, "prompt_tokens", (double)r->prompt_tokens);
  jnum(&b, "cached_tokens", (double)r->cached_tokens);
  jnum(&b, "computed_prefill_tokens", (double)r->computed_prefill_tokens);
  jnum(&b, "completion_tokens", (double)r->completion_tokens);
  jnum(&b, "ttft_ms", r->ttft_ms);
  jnum(&b, "e2e_ms", r->e2e_ms);
  jnum(&b, "queue_ms", r->queue_ms);
  jnum(&b, "client_ttft_ms", r->client_ttft_ms);
  jnum(&b, "send_lag_ms", r->send_lag_ms);
  ic_buf_appendf(&b, ",\"sim_timing\":%s", r->sim_timing ? "true" : "false");
  return flush_line(f, &b);
}

int ic_replay_write_summary_json(FILE *f, const ic_replay_summary_t *s) {
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_append_str(&b, "{\"type\":\"summary\"");
  jstr(&b, "scenario", s->scenario);
  jstr(&b, "mode", s->mode);
  jnum(&b, "requests", (double)s->requests);
  jnum(&b, "failed", (double)s->failed);
  jnum(&b, "hit_rate", s->hit_rate);
  jnum(&b, "prompt_tokens", (double)s->prompt_tokens);
  jnum(&b, "cached_tokens", (double)s->cached_tokens);
  jnum(&b, "prefill_tokens_computed", (double)s->prefill_tokens_computed);
  jnum(&b, "ttft_mean_ms", s->ttft_mean_ms);
  jnum(&b, "ttft_p50_ms", s->ttft_p50_ms);
  jnum(&b, "ttft_p90_ms", s->ttft_p90_ms);
  jnum(&b, "ttft_p99_ms", s->ttft_p99_ms);
  jnum(&b, "e2e_mean_ms", s->e2e_mean_ms);
  jnum(&b, "e2e_p99_ms", s->e2e_p99_ms);
  jnum(&b, "throughput_rps", s->throughput_rps);
  jnum(&b, "output_tokens_per_s", s->output_tokens_per_s);
  jnum(&b, "load_imbalance", s->load_imbalance);
  jnum(&b, "predictions", (double)s->predictions);
  jnum(&b, "prediction_accuracy", s->prediction_accuracy);
  jnum(&b, "lookup_route_p50_us", s->lookup_p50_us);
  jnum(&b, "lookup_route_p99_us", s->lookup_p99_us);
  jnum(&b, "send_lag_p99_ms", s->send_lag_p99_ms);
  if (s->bursts) {
    jnum(&b, "bursts", (double)s->bursts);
    jnum(&b, "burst_same_replica_ratio", s->burst_same_replica_ratio);
    jnum(&b, "burst_prefill_computes_per_replica", s->burst_prefill_computes_per_replica);
    jnum(&b, "burst_prefill_once_ratio", s->burst_prefill_once_ratio);
  }
  ic_buf_append_str(&b, ",\"reasons\":{");
  bool first = true;
  for (int i = 0; ic_replay_reason_names[i]; i++) {
    if (!s->reason_counts[i]) continue;
    ic_buf_appendf(&b, "%s\"%s\":%zu", first ? "" : ",", ic_replay_reason_names[i],
                   s->reason_counts[i]);
    first = false;
  }
  ic_buf_append_byte(&b, '}');
  return flush_line(f, &b);
}

void ic_replay_write_table(FILE *f, const ic_replay_summary_t *s, size_t n) {
  if (n == 0) return;
  fprintf(f, "scenario %s: %zu requests per mode (TTFT in ms of engine time)\n", s[0].scenario,
          s[0].requests);
  fprintf(f, "%-13s %6s %8s %10s %9s %9s %9s %9s %9s %9s %9s %9s\n", "mode", "failed", "hit-rate",
          "prefill-Mt", "ttft-mean", "ttft-p50", "ttft-p90", "ttft-p99", "req/s", "imbalance",
          "pred-acc", "lookup-p99");
  for (size_t i = 0; i < n; i++) {
    const ic_replay_summary_t *x = &s[i];
    char acc[16], lk[16];
    if (x->predictions)
      snprintf(acc, sizeof(acc), "%.3f", x->prediction_accuracy);
    else
      snprintf(acc, sizeof(acc), "-");
    if (x->lookup_p99_us > 0)
      snprintf(lk, sizeof(lk), "%.0fus", x->lookup_p99_us);
    else
      snprintf(lk, sizeof(lk), "-");
    fprintf(f, "%-13s %6zu %8.3f %10.2f %9.1f %9.1f %9.1f %9.1f %9.2f %9.2f %9s %9s\n", x->mode,
            x->failed, x->hit_rate, (double)x->prefill_tokens_computed / 1e6, x->ttft_mean_ms,
            x->ttft_p50_ms, x->ttft_p90_ms, x->ttft_p99_ms, x->throughput_rps, x->load_imbalance,
            acc, lk);
  }
  for (size_t i = 0; i < n; i++)
    if (s[i].bursts)
      fprintf(f, "%-13s bursts %zu: same replica %.3f, prefix computed %.2f times per replica "
                 "(once in %.3f)\n",
              s[i].mode, s[i].bursts, s[i].burst_same_replica_ratio,
              s[i].burst_prefill_computes_per_replica, s[i].burst_prefill_once_ratio);
}
