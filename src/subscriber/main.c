/* kvevent-subscriber: the sidecar next to one vLLM/SGLang replica. Flags (docs/subscriber.md,
 * the reference's plus ours), startup validation with REF's exit codes, thread wiring
 * (engine reader, sender, connectivity watcher, stats reporter, /metrics + /healthz), and an
 * orderly shutdown that drains queued updates for at most 5 s. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/http.h"
#include "ic/log.h"
#include "ic/cli.h"
#include "ic/version.h"
#include "sub.h"

static const ic_cli_flag_t FLAGS[] = {
    {"engine-endpoint", "string", "tcp://127.0.0.1:5557",
     "engine ZeroMQ PUB endpoint to subscribe to; repeat once per data-parallel rank"},
    {"replay-endpoint", "string", NULL,
     "engine ROUTER replay endpoint, paired with the --engine-endpoint at the same position"},
    {"topic", "string", NULL, "ZeroMQ subscription prefix; \"\" = every topic"},
    {"server", "string", "127.0.0.1:9090",
     "inferencecache-server gRPC target(s): host:port, or a comma-separated list; a name that "
     "resolves to several addresses (a headless Service) feeds every replica"},
    {"server-resolve-interval", "duration", "5s",
     "how often --server is resolved again to find server replicas that appeared or left; 0 = "
     "only at start"},
    {"batch-evictions", NULL, NULL,
     "send a run of evictions as one ReportCacheState to server replicas that apply it (their Ack "
     "says so; others get one PublishEvent per eviction); --batch-evictions=false always uses "
     "PublishEvent (default true)"},
    {"server-ca-file", "string", NULL, "PEM CA bundle: speak TLS to --server and verify it with these roots (default: plaintext)"},
    {"client-cert-file", "string", NULL,
     "PEM client certificate presented to --server (TLS) for writer authentication (server --writer-auth=mtls)"},
    {"client-key-file", "string", NULL, "PEM private key of --client-cert-file"},
    {"server-token-file", "string", NULL,
     "bearer token sent to --server on every call for writer authentication (server --writer-auth=token), "
     "e.g. a projected service-account token; re-read when it changes"},
    {"server-token-refresh", "duration", "30s", "how often --server-token-file is checked for a rotated token"},
    {"replica-id", "string", NULL, "this replica's identity, usually the pod name (required)"},
    {"model-id", "string", NULL, "the model the engine serves (required)"},
    {"tenant-id", "string", NULL, "tenant the replica's entries belong to"},
    {"hash-scheme", "string", "vllm", "hash scheme tag; also picks the metrics profile (vllm or sglang)"},
    {"window", "duration", "100ms", "add-batching flush period"},
    {"engine-metrics-url", "string", "http://127.0.0.1:8000/metrics", "engine Prometheus endpoint scraped for stats"},
    {"stats-interval", "duration", "10s", "stats scrape period"},
    {"load-interval", "duration", "500ms",
     "period of the live load reports (queue, KV usage) between stats scrapes; 0 = only with stats"},
    {"engine-cache-size-bytes", "int", NULL, "total KV capacity in bytes when the engine does not export it"},
    {"max-concurrency-ceiling", "int", "256", "running requests that count as pressure 1.0"},
    {"cache-tier", "string", "auto", "tier reported for stored blocks: auto, kv, gpu or cpu"},
    {"engine-model-name", "string", NULL, "only use engine metric series with this model_name label"},
    {"ignore-block-removed", NULL, NULL, "the engine offloads to an L2 tier: a removal re-reports the block as T2"},
    {"lora-adapter-names", "string", NULL, "comma-separated id=name map of LoRA adapters"},
    {"dp-rank-suffix", NULL, NULL, "append \"-dp<rank>\" to the replica id from each batch's DP rank"},
    {"http-bind-address", "string", ":8090", "/metrics and /healthz listener; \"\" disables"},
    {"queue-max-bytes", "int", "16777216", "bound of the update queue; beyond it the oldest updates are dropped"},
    {"max-backoff", "duration", "10s", "cap of the retry backoff towards the server"},
    {"replay-timeout", "duration", "2s", "how long to wait for a replay answer"},
    {"engine-down-grace", "duration", "30s",
     "withdraw an unreachable engine's blocks after this long; 0 keeps advertising them"},
    {"log-level", "string", "info", "debug, info, warn or error"},
    {"log-format", "string", "json", "json or text"},
};
static const ic_cli_t CLI = {"kvevent-subscriber",
                             "sidecar: engine KV-cache events (ZeroMQ/msgpack) to inferencecache-server",
                             NULL, FLAGS, sizeof FLAGS / sizeof FLAGS[0]};

/* Go duration syntax: 100ms, 10s, 1m30s, 1.5h, "0". Returns 0 or -1. */
static int parse_dur(const char *s, int64_t *us) {
  double total = 0;
  const char *p = s;
  int sign = 1;
  if (*p == '-' || *p == '+') sign = *p++ == '-' ? -1 : 1;
  if (!*p) return -1;
  if (!strcmp(p, "0")) {
    *us = 0;
    return 0;
  }
  while (*p) {
    char *end;
    double v = strtod(p, &end);
    if (end == p) return -1;
    p = end;
    double mul;
    if (!strncmp(p, "ns", 2))
      mul = 1e-3, p += 2;
    else if (!strncmp(p, "us", 2) || !strncmp(p, "\xc2\xb5s", 3))
      mul = 1, p += (*p == 'u' ? 2 : 3);
    else if (!strncmp(p, "ms", 2))
      mul = 1e3, p += 2;
    else if (*p == 's')
      mul = 1e6, p++;
    else if (*p == 'm')
      mul = 60e6, p++;
    else if (*p == 'h')
      mul = 3600e6, p++;
    else
      return -1; /* Go requires a unit */
    total += v * mul;
  }
  *us = (int64_t)(sign * total);
  return 0;
}

static int parse_i64(const char *s, int64_t *v) {
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 0); /* Go's ParseInt(s, 0, 64): 0x.., 0.. octal */
  if (errno || end == s || *end) return -1;
  *v = x;
  return 0;
}

static int parse_bool(const char *s, bool *v) {
  if (!s || !strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "t") || !strcmp(s, "TRUE") ||
      !strcmp(s, "True") || !strcmp(s, "T")) {
    *v = true;
    return 0;
  }
  if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "f") || !strcmp(s, "FALSE") ||
      !strcmp(s, "False") || !strcmp(s, "F")) {
    *v = false;
    return 0;
  }
  return -1;
}

/* Go's time.Duration.String() for microsecond values: "100ms", "1.5s", "1m30s", "1h0m0s". */
static void fmt_dur(int64_t us, char *out, size_t n) {
  if (us == 0) {
    snprintf(out, n, "0s");
    return;
  }
  const char *sign = us < 0 ? "-" : "";
  uint64_t u = us < 0 ? (uint64_t)-us : (uint64_t)us;
  char frac[16];
  if (u < 1000000) { /* below a second: ms or µs with trimmed fraction */
    const char *unit = u >= 1000 ? "ms" : "\xc2\xb5s";
    uint64_t whole = u >= 1000 ? u / 1000 : u, rem = u >= 1000 ? u % 1000 : 0;
    snprintf(frac, sizeof(frac), ".%03llu", (unsigned long long)rem);
    for (size_t k = strlen(frac); k > 0 && (frac[k - 1] == '0' || frac[k - 1] == '.'); k--) {
      char ch = frac[k - 1];
      frac[k - 1] = 0;
      if (ch == '.') break;
    }
    snprintf(out, n, "%s%llu%s%s", sign, (unsigned long long)whole, frac, unit);
    return;
  }
  uint64_t h = u / 3600000000ULL, m = u / 60000000ULL % 60, sec = u / 1000000 % 60,
           rem = u % 1000000;
  snprintf(frac, sizeof(frac), ".%06llu", (unsigned long long)rem);
  for (size_t k = strlen(frac); k > 0 && (frac[k - 1] == '0' || frac[k - 1] == '.'); k--) {
    char ch = frac[k - 1];
    frac[k - 1] = 0;
    if (ch == '.') break;
  }
  if (h)
    snprintf(out, n, "%s%lluh%llum%llu%ss", sign, (unsigned long long)h, (unsigned long long)m,
             (unsigned long long)sec, frac);
  else if (m)
    snprintf(out, n, "%s%llum%llu%ss", sign, (unsigned long long)m, (unsigned long long)sec, frac);
  else
    snprintf(out, n, "%s%llu%ss", sign, (unsigned long long)sec, frac);
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

static void h_metrics(ic_http_req_t *r, void *ud) {
  sub_ctx_t *c = ud;
  ic_buf_t b = IC_BUF_INIT;
  if (ic_metrics_render(c->m.reg, &b)) {
    ic_buf_free(&b);
    ic_http_reply_error(r, 500, "render failed");
    return;
  }
  size_t len;
  char *body = ic_buf_detach(&b, &len);
  ic_http_reply_take(r, 200, "text/plain; version=0.0.4; charset=utf-8", body ? body : strdup(""),
                     body ? len : 0);
}

static void h_healthz(ic_http_req_t *r, void *ud) {
  (void)ud;
  ic_http_reply(r, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

static void on_collect(void *ud) { sub_targets_gauges(ud); }

int sub_metrics_init(sub_ctx_t *c) {
  sub_metrics_t *m = &c->m;
  m->reg = ic_metrics_new();
  if (!m->reg || ic_metrics_add_process(m->reg) != 0) return IC_ENOMEM;
  const char *type[] = {"type"}, *result[] = {"result"}, *kind[] = {"kind"},
             *mc[] = {"method", "code"}, *epl[] = {"endpoint"};
  static const double lag_b[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define P "kvevent_subscriber_"
  m->events_received = ic_metrics_counter(m->reg, P "events_received_total",
                                          "Engine KV events received, by event type.", 1, type);
  m->events_applied =
      ic_metrics_counter(m->reg, P "events_applied_total",
                         "Engine KV events that changed the positional state.", 1, type);
  m->events_malformed =
      ic_metrics_counter(m->reg, P "events_malformed_total",
                         "Malformed engine KV events skipped (rest of batch kept).", 1, type);
  m->unknown_tags = ic_metrics_counter(m->reg, P "events_unknown_tag_total",
                                       "Engine events with an unknown tag, skipped.", 0, NULL);
  m->batches = ic_metrics_counter(m->reg, P "batches_total",
                                  "Engine event batches received, by decode result.", 1, result);
  m->gaps = ic_metrics_counter(m->reg, P "seq_gaps_total", "Sequence gaps detected.", 0, NULL);
  m->missing = ic_metrics_counter(m->reg, P "seq_missing_batches_total",
                                  "Batches missing across detected gaps.", 0, NULL);
  m->dups = ic_metrics_counter(m->reg, P "seq_duplicates_total",
                               "Duplicate or stale batches ignored.", 0, NULL);
  m->restarts = ic_metrics_counter(
      m->reg, P "engine_restarts_total",
      "Engine restarts detected (sequence back, connection back with other content, or the "
      "engine's process start time changed); its blocks were cleared and re-learned.",
      0, NULL);
  m->seq_invalid = ic_metrics_counter(
      m->reg, P "seq_invalid_total",
      "Messages with an implausible sequence number (applied, number not adopted).", 0, NULL);
  m->unrecovered = ic_metrics_counter(
      m->reg, P "replay_unrecovered_batches_total",
      "Missing batches the engine could not replay (the replica was resynchronised).", 0, NULL);
  const char *reason[] = {"reason"};
  m->engine_resyncs = ic_metrics_counter(
      m->reg, P "engine_resyncs_total",
      "Replica cleared and re-learned from the engine, by reason (restart, late_join, "
      "gap_unrecoverable, engine_down).",
      1, reason);
  m->down_clears = ic_metrics_counter(
      m->reg, P "engine_down_clears_total",
      "Engines unreachable past --engine-down-grace whose blocks were withdrawn.", 0, NULL);
  m->engine_connected = ic_metrics_gauge(m->reg, P "engine_connected",
                                         "1 while the engine's event socket is connected.", 1, epl);
  m->replays = ic_metrics_counter(m->reg, P "replays_total", "Replay requests for gaps, by result.",
                                  1, result);
  m->replayed = ic_metrics_counter(m->reg, P "replayed_batches_total",
                                   "Batches recovered through the replay socket.", 0, NULL);
  m->queue_depth =
      ic_metrics_gauge(m->reg, P "queue_depth", "Updates waiting to be sent.", 0, NULL);
  m->queue_bytes =
      ic_metrics_gauge(m->reg, P "queue_bytes", "Bytes held by waiting updates.", 0, NULL);
  m->queue_max =
      ic_metrics_gauge(m->reg, P "queue_max_bytes", "Bound of the update queue.", 0, NULL);
  m->queue_dropped = ic_metrics_counter(m->reg, P "queue_dropped_total",
                                        "Updates dropped on queue overflow, by kind.", 1, kind);
  m->rpcs =
      ic_metrics_counter(m->reg, P "rpcs_total", "RPCs to the server, by method and code.", 2, mc);
  m->rpc_errors = ic_metrics_counter(m->reg, P "rpc_errors_total",
                                     "Failed RPCs to the server, by method and code.", 2, mc);
  m->connected = ic_metrics_gauge(m->reg, P "server_connected",
                                  "1 when the gRPC channel to the server is ready.", 0, NULL);
  m->resyncs =
      ic_metrics_counter(m->reg, P "resyncs_total",
                         "Re-reports of the engine's state after a server outage.", 0, NULL);
  m->resync_entries = ic_metrics_counter(m->reg, P "resync_entries_total",
                                         "Prefix entries re-reported by resyncs.", 0, NULL);
  m->lag =
      ic_metrics_histogram(m->reg, P "event_to_send_lag_seconds",
                           "Time from receiving an engine event to its delivery to the server.", 0,
                           NULL, lag_b, sizeof(lag_b) / sizeof(*lag_b));
  m->tracked = ic_metrics_gauge(m->reg, P "tracked_blocks",
                                "Engine blocks in the positional map, per endpoint.", 1, epl);
  m->lora_dropped =
      ic_metrics_counter(m->reg, P "lora_dropped_total",
                         "BlockStored dropped for an unmapped LoRA id (fail-closed).", 0, NULL);
  m->no_entries =
      ic_metrics_counter(m->reg, P "no_entries_total",
                         "BlockStored without usable token_ids (nothing indexed).", 0, NULL);
  m->other_group = ic_metrics_counter(
      m->reg, P "events_other_kv_group_total",
      "Events of a hybrid model's non-full-attention KV cache group, skipped.", 0, NULL);
  m->scrapes =
      ic_metrics_counter(m->reg, P "stats_reports_total", "Stats ticks, by result.", 1, result);
  m->reported_hit_rate =
      ic_metrics_gauge(m->reg, P "reported_hit_rate",
                       "Prefix-cache hit rate in the last stats report the server accepted.", 0, NULL);
  m->reported_pressure =
      ic_metrics_gauge(m->reg, P "reported_pressure",
                       "Load (0..1) in the last stats report the server accepted.", 0, NULL);
  const char *tl[] = {"target"};
  m->t_connected = ic_metrics_gauge(m->reg, P "target_connected",
                                    "1 while the channel to this server replica is ready.", 1, tl);
  m->t_depth = ic_metrics_gauge(m->reg, P "target_queue_depth",
                                "Updates waiting to be sent to this server replica.", 1, tl);
  m->t_dropped = ic_metrics_counter(m->reg, P "target_queue_dropped_total",
                                    "Updates dropped on overflow of this replica's queue.", 1, tl);
  m->t_rpcs = ic_metrics_counter(m->reg, P "target_rpcs_total",
                                 "RPCs to this server replica.", 1, tl);
  m->t_errors = ic_metrics_counter(m->reg, P "target_rpc_errors_total",
                                   "Failed RPCs to this server replica.", 1, tl);
  m->t_resyncs = ic_metrics_counter(
      m->reg, P "target_resyncs_total",
      "Full re-reports of the engine's state to this replica (it appeared or came back).", 1, tl);
  m->t_synced = ic_metrics_counter(m->reg, P "target_full_state_sent_total",
                                   "\"Full state sent\" markers this replica accepted.", 1, tl);
  m->targets = ic_metrics_gauge(m->reg, P "targets",
                                "Server replicas currently fed (addresses --server resolves to).",
                                0, NULL);
  ic_metric_family_t *tfam[] = {m->t_connected, m->t_depth, m->t_dropped, m->t_rpcs,
                                m->t_errors,    m->t_resyncs, m->t_synced};
  for (size_t i = 0; i < sizeof tfam / sizeof *tfam; i++)
    if (!tfam[i] || ic_metrics_bound_label(tfam[i], "target", SUB_MAX_TARGETS)) return IC_ENOMEM;
#undef P
  if (!m->targets || !m->reported_hit_rate || !m->reported_pressure || !m->events_received || !m->lag ||
      !m->scrapes || !m->other_group || !m->seq_invalid || !m->unrecovered || !m->engine_resyncs ||
      !m->down_clears || !m->engine_connected)
    return IC_ENOMEM;
  ic_metric_set(ic_metric_plain(m->queue_max), (double)c->queue_max_bytes);
  ic_metrics_on_collect(m->reg, on_collect, c);
  return 0;
}

/* ---- main ---------------------------------------------------------------------------------- */

enum {
  O_ENDPOINT = 1000,
  O_REPLAY,
  O_TOPIC,
  O_SERVER,
  O_REPLICA,
  O_MODEL,
  O_TENANT,
  O_SCHEME,
  O_WINDOW,
  O_MURL,
  O_SINT,
  O_LINT,
  O_CSIZE,
  O_CEIL,
  O_TIER,
  O_EMODEL,
  O_IGNORE,
  O_LORA,
  O_DPSUF,
  O_HTTP,
  O_QMAX,
  O_BACKOFF,
  O_REPLAYTO,
  O_DOWNGRACE,
  O_LOGLEVEL,
  O_LOGFMT,
  O_HELP,
  O_VERSION,
  O_SERVER_CA,
  O_RESOLVE,
  O_BATCHEV,
  O_CLIENT_CERT,
  O_CLIENT_KEY,
  O_TOKEN_FILE,
  O_TOKEN_REFRESH
};

int main(int argc, char **argv) {
  static sub_ctx_t ctx;
  sub_ctx_t *c = &ctx;
  c->server = "127.0.0.1:9090";
  c->replica_id = c->model_id = c->tenant_id = "";
  c->hash_scheme = "vllm";
  c->topic = "";
  c->metrics_url = "http://127.0.0.1:8000/metrics";
  c->engine_model_name = "";
  c->http_bind = ":8090";
  c->window_us = 100000;
  c->stats_interval_us = 10000000;
  c->load_interval_us = 500000;
  c->ceiling = 256;
  c->queue_max_bytes = 16 << 20;
  c->max_backoff_us = 10000000;
  c->replay_timeout_us = 2000000;
  c->down_grace_us = 30000000;
  c->resolve_interval_us = 5000000;
  c->batch_evictions = true;
  c->token_refresh_us = 30000000;
  const char *tier = "auto", *lora = "";
  const char *endpoints[SUB_MAX_ENDPOINTS], *replays[SUB_MAX_ENDPOINTS];
  size_t nend = 0, nrep = 0;

  static const struct option lo[] = {{"engine-endpoint", required_argument, 0, O_ENDPOINT},
                                     {"replay-endpoint", required_argument, 0, O_REPLAY},
                                     {"topic", required_argument, 0, O_TOPIC},
                                     {"server", required_argument, 0, O_SERVER},
                                     {"server-ca-file", required_argument, 0, O_SERVER_CA},
                                     {"server-resolve-interval", required_argument, 0, O_RESOLVE},
                                     {"batch-evictions", optional_argument, 0, O_BATCHEV},
                                     {"client-cert-file", required_argument, 0, O_CLIENT_CERT},
                                     {"client-key-file", required_argument, 0, O_CLIENT_KEY},
                                     {"server-token-file", required_argument, 0, O_TOKEN_FILE},
                                     {"server-token-refresh", required_argument, 0, O_TOKEN_REFRESH},
                                     {"replica-id", required_argument, 0, O_REPLICA},
                                     {"model-id", required_argument, 0, O_MODEL},
                                     {"tenant-id", required_argument, 0, O_TENANT},
                                     {"hash-scheme", required_argument, 0, O_SCHEME},
                                     {"window", required_argument, 0, O_WINDOW},
                                     {"engine-metrics-url", required_argument, 0, O_MURL},
                                     {"stats-interval", required_argument, 0, O_SINT},
                                     {"load-interval", required_argument, 0, O_LINT},
                                     {"engine-cache-size-bytes", required_argument, 0, O_CSIZE},
                                     {"max-concurrency-ceiling", required_argument, 0, O_CEIL},
                                     {"cache-tier", required_argument, 0, O_TIER},
                                     {"engine-model-name", required_argument, 0, O_EMODEL},
                                     {"ignore-block-removed", optional_argument, 0, O_IGNORE},
                                     {"lora-adapter-names", required_argument, 0, O_LORA},
                                     {"dp-rank-suffix", optional_argument, 0, O_DPSUF},
                                     {"http-bind-address", required_argument, 0, O_HTTP},
                                     {"queue-max-bytes", required_argument, 0, O_QMAX},
                                     {"max-backoff", required_argument, 0, O_BACKOFF},
                                     {"replay-timeout", required_argument, 0, O_REPLAYTO},
                                     {"engine-down-grace", required_argument, 0, O_DOWNGRACE},
                                     {"log-level", required_argument, 0, O_LOGLEVEL},
                                     {"log-format", required_argument, 0, O_LOGFMT},
                                     {"help", no_argument, 0, O_HELP},
                                     {"version", no_argument, 0, O_VERSION},
                                     {0, 0, 0, 0}};
  opterr = 0;
  int o;
  /* "+": like Go's flag package, parsing stops at the first non-flag argument. */
  while ((o = getopt_long_only(argc, argv, "+h", lo, NULL)) != -1) {
    int bad = 0;
    switch (o) {
    case O_ENDPOINT:
      if (nend < SUB_MAX_ENDPOINTS)
        endpoints[nend++] = optarg;
      else
        bad = 1;
      break;
    case O_REPLAY:
      if (nrep < SUB_MAX_ENDPOINTS)
        replays[nrep++] = optarg;
      else
        bad = 1;
      break;
    case O_TOPIC: c->topic = optarg; break;
    case O_SERVER: c->server = optarg; break;
    case O_SERVER_CA: c->server_ca_file = optarg; break;
    case O_BATCHEV: bad = parse_bool(optarg, &c->batch_evictions); break;
    case O_RESOLVE:
      bad = parse_dur(optarg, &c->resolve_interval_us) || c->resolve_interval_us < 0;
      break;
    case O_CLIENT_CERT: c->client_cert_file = optarg; break;
    case O_CLIENT_KEY: c->client_key_file = optarg; break;
    case O_TOKEN_FILE: c->server_token_file = optarg; break;
    case O_TOKEN_REFRESH: bad = parse_dur(optarg, &c->token_refresh_us) || c->token_refresh_us <= 0; break;
    case O_REPLICA: c->replica_id = optarg; break;
    case O_MODEL: c->model_id = optarg; break;
    case O_TENANT: c->tenant_id = optarg; break;
    case O_SCHEME: c->hash_scheme = optarg; break;
    case O_WINDOW: bad = parse_dur(optarg, &c->window_us); break;
    case O_MURL: c->metrics_url = optarg; break;
    case O_SINT: bad = parse_dur(optarg, &c->stats_interval_us); break;
    case O_LINT: bad = parse_dur(optarg, &c->load_interval_us); break;
    case O_CSIZE: bad = parse_i64(optarg, &c->cache_size_bytes); break;
    case O_CEIL: bad = parse_i64(optarg, &c->ceiling); break;
    case O_TIER: tier = optarg; break;
    case O_EMODEL: c->engine_model_name = optarg; break;
    case O_IGNORE: bad = parse_bool(optarg, &c->l2_mode); break;
    case O_LORA: lora = optarg; break;
    case O_DPSUF: bad = parse_bool(optarg, &c->dp_suffix); break;
    case O_HTTP: c->http_bind = optarg; break;
    case O_QMAX: bad = parse_i64(optarg, &c->queue_max_bytes) || c->queue_max_bytes <= 0; break;
    case O_BACKOFF: bad = parse_dur(optarg, &c->max_backoff_us); break;
    case O_REPLAYTO: bad = parse_dur(optarg, &c->replay_timeout_us); break;
    case O_DOWNGRACE: bad = parse_dur(optarg, &c->down_grace_us) || c->down_grace_us < 0; break;
    case O_LOGLEVEL: {
      ic_log_level_t lv;
      if ((bad = ic_log_parse_level(optarg, &lv) != 0) == 0) ic_log_set_level(lv);
      break;
    }
    case O_LOGFMT: {
      ic_log_format_t f;
      if ((bad = ic_log_parse_format(optarg, &f) != 0) == 0) ic_log_set_format(f);
      break;
    }
    case O_HELP:
    case 'h': ic_cli_usage(&CLI, stdout); return 0;
    case O_VERSION: ic_version_print(stdout, CLI.program); return 0;
    default: return ic_cli_fail(&CLI, "flag provided but not defined: %s", argv[optind - 1]);
    }
    if (bad) return ic_cli_fail(&CLI, "invalid value for flag: %s", argv[optind - 1]);
  }
  /* Go's flag.Parse leaves the rest (e.g. the "false" of `--ignore-block-removed false`) unread;
   * REF ignores it. So do we, loudly. */
  for (int k = optind; k < argc; k++)
    ic_log_warn("ignoring command-line argument after the flags", IC_LS("arg", argv[k]));
  if (!nend) endpoints[nend++] = "tcp://127.0.0.1:5557";
  if (nrep > nend) {
    fprintf(stderr, "more --replay-endpoint than --engine-endpoint flags\n");
    return 2;
  }
  if (c->window_us <= 0) c->window_us = 100000;
  c->tick_origin_us = ic_clock_monotonic_us();
  if (c->stats_interval_us <= 0) c->stats_interval_us = 10000000;
  if (c->max_backoff_us < 100000) c->max_backoff_us = 100000;
  if (c->replay_timeout_us <= 0) c->replay_timeout_us = 2000000;

  char err[512];
  c->lora = ic_kv_lora_map_parse(lora, err, sizeof(err));
  if (!c->lora) {
    ic_log_error("invalid --lora-adapter-names", IC_LS("value", lora), IC_LS("err", err));
    return 2;
  }
  const char *cfgerr = !*c->replica_id    ? "engine config: ReplicaID is required"
                       : !*c->model_id    ? "engine config: ModelID is required"
                       : !*c->hash_scheme ? "engine config: HashScheme is required (an empty "
                                            "scheme is dropped server-side)"
                                          : NULL;
  if (cfgerr) {
    ic_log_error("invalid config", IC_LS("err", cfgerr));
    return 2;
  }
  if (ic_kv_cache_tier_parse(tier, &c->cache_tier)) {
    ic_log_error("invalid --cache-tier", IC_LS("value", tier),
                 IC_LS("valid", "auto, kv, gpu, cpu"));
    return 2;
  }

  /* Signals are taken by sigwait in main; every thread inherits the block. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread: not thread-safe */

  /* Every target's channel uses the same credentials: kept until exit (targets come and go). */
  static sub_grpc_creds_t creds;
  if (sub_creds_load(c, &creds) != 0) return 1;
  c->creds = &creds;
  c->neps = nend;
  for (size_t i = 0; i < nend; i++) {
    c->eps[i].endpoint = endpoints[i];
    c->eps[i].replay = i < nrep && *replays[i] ? replays[i] : NULL;
    c->eps[i].tracker = ic_kv_tracker_new();
    c->eps[i].seq = calloc(1, sizeof(ic_kv_seq_t));
    c->eps[i].dp_rank = -1;
    if (!c->eps[i].tracker || !c->eps[i].seq) return 1;
    c->replica_of_ep[i] = c->replica_id;
  }
  if (c->dp_suffix)
    for (size_t i = 0; i < nend; i++) {
      char *s = NULL;
      if (asprintf(&s, "%s-dp%zu", c->replica_id, i) < 0) return 1;
      c->owned_names[c->nowned++] = s;
      c->replica_of_ep[i] = s;
      c->eps[i].dp_rank = (int64_t)i;
    }
  pthread_rwlock_init(&c->tlock, NULL);
  if (sub_metrics_init(c)) {
    ic_log_error("out of memory");
    return 1;
  }
  /* The server replicas as resolved now; a name that does not resolve yet is retried by the
   * resolver (nothing at startup requires the server to be up). */
  if (sub_targets_resolve(c) < 0)
    ic_log_warn("no server address resolved yet; retrying every --server-resolve-interval",
                IC_LS("server", c->server));
  pthread_rwlock_rdlock(&c->tlock);
  size_t ntargets = c->ntargets;
  pthread_rwlock_unlock(&c->tlock);
  if (!ntargets && c->resolve_interval_us <= 0) {
    ic_log_error("grpc client", IC_LS("err", "cannot create channel"), IC_LS("server", c->server));
    return 1;
  }
  pthread_mutex_init(&c->stop_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->stop_cv, &ca);
  pthread_condattr_destroy(&ca);

  ic_http_server_t *http = NULL;
  if (*c->http_bind) {
    ic_http_config_t hc = {
        .bind = c->http_bind, .threads = 1, .idle_timeout_s = 30, .name = "http"};
    http = ic_http_new(&hc);
    ic_http_route_t r1 = {.path = "/metrics", .methods = "GET", .handler = h_metrics, .ud = c};
    ic_http_route_t r2 = {.path = "/healthz", .methods = "GET", .handler = h_healthz, .ud = c};
    if (!http || ic_http_add_route(http, &r1) || ic_http_add_route(http, &r2) ||
        ic_http_start(http, err, sizeof(err))) {
      ic_log_error("http listener", IC_LS("addr", c->http_bind),
                   IC_LS("err", http ? err : "alloc"));
      return 1;
    }
  }

  char win[32], sint[32];
  fmt_dur(c->stats_interval_us, sint, sizeof(sint));
  fmt_dur(c->window_us, win, sizeof(win));
  ic_log_info("kvevent-subscriber starting", IC_LS("version", ic_version), IC_LS("commit", ic_git_commit),
              IC_LS("engine_endpoint", endpoints[0]),
              IC_LI("engine_endpoints", nend), IC_LS("server", c->server),
              IC_LS("replica_id", c->replica_id), IC_LS("model_id", c->model_id),
              IC_LS("engine_metrics_url", c->metrics_url), IC_LS("stats_interval", sint),
              IC_LS("window", win), IC_LS("cache_tier", tier),
              IC_LS("engine_model_name", c->engine_model_name),
              IC_LB("ignore_block_removed", c->l2_mode), IC_LS("topic", c->topic),
              IC_LS("http_bind_address", c->http_bind),
              IC_LI("http_port", http ? ic_http_port(http) : -1));

  pthread_t t_engine, t_stats, t_resolver;
  pthread_create(&t_resolver, NULL, sub_resolver_thread, c);
  pthread_create(&t_stats, NULL, sub_stats_thread, c);
  pthread_create(&t_engine, NULL, sub_engine_thread, c);

  int sig = 0;
  sigwait(&set, &sig);
  ic_log_info("shutting down", IC_LS("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));

  atomic_store(&c->stop_engine, true);
  pthread_rwlock_rdlock(&c->tlock);
  for (size_t i = 0; i < c->ntargets; i++) { /* releases a re-report waiting for room */
    pthread_mutex_lock(&c->targets[i]->q.mu);
    pthread_cond_broadcast(&c->targets[i]->q.room);
    pthread_mutex_unlock(&c->targets[i]->q.mu);
  }
  pthread_rwlock_unlock(&c->tlock);
  pthread_join(t_engine, NULL);
  atomic_store(&c->stop_stats, true);
  pthread_mutex_lock(&c->stop_mu);
  pthread_cond_broadcast(&c->stop_cv);
  pthread_mutex_unlock(&c->stop_mu);
  pthread_join(t_stats, NULL);
  pthread_join(t_resolver, NULL);
  /* What is queued goes out to every replica at once, for at most 5 s. */
  sub_targets_shutdown(c, ic_clock_monotonic_us() + 5000000);
  if (http) {
    ic_http_stop(http, 1000);
    ic_http_free(http);
  }
  sub_creds_release((sub_grpc_creds_t *)c->creds);
  sub_creds_free_token(c);
  for (size_t i = 0; i < c->neps; i++) {
    ic_kv_tracker_free(c->eps[i].tracker);
    free(c->eps[i].seq);
  }
  ic_kv_lora_map_free(c->lora);
  ic_metrics_free(c->m.reg);
  for (size_t i = 0; i < c->nowned; i++)
    free(c->owned_names[i]);
  curl_global_cleanup();
  ic_log_info("kvevent-subscriber stopped");
  return 0;
}
