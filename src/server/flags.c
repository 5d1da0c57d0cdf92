/* Command-line flags of inferencecache-server with the reference's names, defaults and Go `flag`
 * package semantics (docs/server.md, "Flags"): -name and --name, "=value" or a separate value, bool
 * flags with optional =true|false, usage on stderr with exit 2 for errors; -h/-help (usage on stdout)
 * and -version exit 0. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/cli.h"
#include "ic/version.h"
#include "server.h"

typedef enum { F_STR, F_BOOL, F_INT, F_FLOAT } ftype_t;

typedef struct flagdef {
  const char *name;
  ftype_t type;
  size_t off;
  const char *def; /* textual default for usage */
  const char *usage;
} flagdef_t;

#define OFF(f) offsetof(server_flags_t, f)

static const flagdef_t FLAGS[] = {
    {"allowed-controller-sa", F_STR, OFF(allowed_controller_sa), "",
     "full ServiceAccount username allowed on the controller listener (enables TokenReview auth), e.g. "
     "system:serviceaccount:inference-cache-system:inference-cache-controller-manager"},
    {"controller-audience", F_STR, OFF(controller_audience), "inferencecache.io/controller",
     "TokenReview audience for /snapshot and /probe"},
    {"disable-cap-fair-share", F_BOOL, OFF(disable_cap_fair_share), "false",
     "at the global entry cap, evict in the reference's purely global LRU/LFU order instead of "
     "taking the excess from tenants over their fair share first (not a reference flag)"},
    {"drain-timeout-seconds", F_INT, OFF(drain_timeout_s), "4",
     "bound on the gRPC graceful drain at shutdown; calls still open after it are cancelled (not a reference flag)"},
    {"engine-block-size", F_INT, OFF(engine_block_size), "16",
     "KV block size (tokens per block) used to fingerprint token_ids; values <= 0 keep 16"},
    {"grpc-bind-address", F_STR, OFF(grpc_bind_address), ":9090", "gRPC listen address"},
    {"grpc-client-ca-file", F_STR, OFF(grpc_client_ca_file), "",
     "PEM CA bundle the gRPC port (TLS) verifies client certificates with; clients may then present "
     "one, and --writer-auth=mtls accepts writers by it (not a reference flag)"},
    {"grpc-max-concurrent-streams", F_INT, OFF(grpc_max_concurrent_streams), "1024",
     "HTTP/2 streams one gRPC connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS); 0 = unlimited (not a "
     "reference flag)"},
    {"grpc-max-streams", F_INT, OFF(grpc_max_streams), "8192",
     "streaming calls open on the whole server; more are ended with RESOURCE_EXHAUSTED; 0 = unlimited (not a "
     "reference flag)"},
    {"grpc-timing-trailer", F_BOOL, OFF(grpc_timing_trailer), "false",
     "unary responses carry the trailer ic-server-timing (arrival, handler start and end in CLOCK_MONOTONIC ns) "
     "for latency breakdowns by load generators on the same host (not a reference flag)"},
    {"grpc-threads", F_INT, OFF(grpc_threads), "0",
     "gRPC completion-queue threads; 0 = one per CPU the process may use (affinity mask, cgroup CPU quota) (not a "
     "reference flag)"},
    {"http-bind-address", F_STR, OFF(http_bind_address), ":8080",
     "public HTTP listen address (/healthz, /readyz, /metrics)"},
    {"http-max-connections", F_INT, OFF(http_max_connections), "1024",
     "open connections per HTTP listener; past it the oldest connection not running a request is "
     "closed (not a reference flag)"},
    {"http-max-connections-per-client", F_INT, OFF(http_max_connections_per_client), "128",
     "open connections per client address per HTTP listener, enforced the same way (not a reference flag)"},
    {"http-request-timeout-ms", F_INT, OFF(http_request_timeout_ms), "5000",
     "time a client has to send a complete request (headers and body) on the HTTP listeners; "
     "<= 0 = none (the reference's ReadHeaderTimeout is 5 s)"},
    {"insecure-disable-auth", F_BOOL, OFF(insecure_disable_auth), "false",
     "serve the controller listener without authentication (development only)"},
    {"load-max-age-ms", F_INT, OFF(load_max_age_ms), "2000",
     "load-aware ranking: a replica's load sample older than this counts as missing (not a reference flag; docs/ranking.md)"},
    {"load-overload-factor", F_FLOAT, OFF(load_overload_factor), "2",
     "load-aware ranking: a queue above factor x the fleet's mean + slack leaves the answer (not a reference flag)"},
    {"load-overload-slack", F_FLOAT, OFF(load_overload_slack), "4",
     "load-aware ranking: requests of slack in the overload bound (not a reference flag)"},
    {"load-request-tokens", F_INT, OFF(load_request_tokens), "0",
     "load-aware ranking: expected prefill tokens per queued request; 0 = the prompt's tokens x the fleet's miss rate (not a reference flag)"},
    {"load-running-weight", F_FLOAT, OFF(load_running_weight), "0.02",
     "load-aware ranking: a running request's weight in the queue, a waiting one's is 1 (not a reference flag)"},
    {"load-weight", F_FLOAT, OFF(load_weight), "1",
     "load-aware ranking: queued tokens charged per prefill token saved (not a reference flag)"},
    {"predict-max-entries", F_INT, OFF(predict_max_entries), "65536",
     "predict-on-route: speculative (block, replica) entries kept at most; the oldest go first past it (not a reference flag; docs/ranking.md)"},
    {"predict-ttl-ms", F_INT, OFF(predict_ttl_ms), "1500",
     "predict-on-route: lifetime of a speculative entry the engine's events have not confirmed (not a reference flag)"},
    {"predict-weight", F_FLOAT, OFF(predict_weight), "0.5",
     "predict-on-route: score per speculative token, where a fresh real token scores up to 1 (not a reference flag)"},
    {"log-format", F_STR, OFF(log_format), "json", "log format: json or text"},
    {"log-level", F_STR, OFF(log_level), "info", "log level: debug, info, warn or error"},
    {"max-identity-bytes", F_INT, OFF(max_identity_bytes), "1024",
     "longest replica/model/tenant/hash-scheme/adapter id ReportCacheState and PublishEvent accept "
     "(INVALID_ARGUMENT beyond); <= 0 = unbounded (not a reference flag)"},
    {"metrics-max-label-values", F_INT, OFF(metrics_max_label_values), "256",
     "distinct model / tenant_id label values per metric family; later ones are counted under "
     "\"other\"; <= 0 = unbounded (not a reference flag)"},
    {"policy-audience", F_STR, OFF(policy_audience), "inferencecache.io/policy", "TokenReview audience for /policy"},
    {"snapshot-bind-address", F_STR, OFF(snapshot_bind_address), ":8081",
     "controller-facing HTTP listen address (/snapshot, /policy, /probe)"},
    {"stream-log-bytes", F_INT, OFF(stream_log_bytes), "67108864",
     "bytes of the StreamCacheEvents change log all subscribers read from; a subscriber that falls this far behind "
     "is ended with RESOURCE_EXHAUSTED (not a reference flag)"},
    {"stream-max-queued-bytes", F_INT, OFF(stream_max_queued_bytes), "67108864",
     "bound on stream bytes queued to all subscribers and not yet written (not a reference flag)"},
    {"stream-max-send-rate", F_INT, OFF(stream_max_send_rate), "25000",
     "StreamCacheEvents events sent per second to all subscribers together; 0 = unlimited (not a reference flag)"},
    {"stream-max-subscribers", F_INT, OFF(stream_max_subscribers), "4096",
     "open StreamCacheEvents + StreamMetrics subscriptions; more are refused with RESOURCE_EXHAUSTED (not a reference "
     "flag)"},
    {"tls-cert-file", F_STR, OFF(tls_cert_file), "", "PEM server certificate for the gRPC port (enables TLS)"},
    {"tls-key-file", F_STR, OFF(tls_key_file), "", "PEM private key for the gRPC port"},
    {"tokenizer-models-dir", F_STR, OFF(tokenizer_models_dir), "",
     "directory <dir>/<model_id>/tokenizer.json (+ tokenizer_config.json) of the models whose prompt_text "
     "LookupRoute tokenizes (model_id may contain '/'); empty disables server-side tokenisation"},
    {"tokenizer-threads", F_INT, OFF(tokenizer_threads), "0",
     "threads that tokenize prompt_text lookups (off the gRPC threads; at most 64 lookups queued or "
     "tokenizing, more are shed); 0 = one per CPU the process may use (not a reference flag)"},
    {"warm-start-timeout-ms", F_INT, OFF(warm_start_timeout_ms), "60000",
     "warm start: /readyz and gRPC health answer not-ready until every known reporter sent its full "
     "state, or this long after start; <= 0 = ready at once (not a reference flag; docs/ha.md)"},
    {"warm-start-window-ms", F_INT, OFF(warm_start_window_ms), "10000",
     "warm start: every replica that reports within this long after start is waited for (not a "
     "reference flag; docs/ha.md)"},
    {"writer-allowed-cert-names", F_STR, OFF(writer_allowed_cert_names), "",
     "comma-separated client-certificate names (subject CN or a SAN; a trailing '*' matches a prefix) "
     "allowed to write with --writer-auth=mtls (not a reference flag)"},
    {"writer-allowed-service-accounts", F_STR, OFF(writer_allowed_service_accounts), "",
     "comma-separated service accounts allowed to write with --writer-auth=token: namespace:name, "
     "namespace:* or a full system:serviceaccount: username (not a reference flag)"},
    {"writer-auth", F_STR, OFF(writer_auth), "",
     "authenticate ReportCacheState and PublishEvent callers: token (TokenReview of a bearer token), "
     "mtls (verified client certificate), token,mtls (either); empty = anyone who reaches the gRPC "
     "port may write, as in the reference (not a reference flag)"},
    {"writer-token-audience", F_STR, OFF(writer_token_audience), "inferencecache.io/writer",
     "TokenReview audience writer tokens must carry (not a reference flag)"},
    {"writer-token-review-timeout-ms", F_INT, OFF(writer_token_review_timeout_ms), "2000",
     "bound on one writer TokenReview; a review that takes longer denies the call (UNAVAILABLE) "
     "(not a reference flag)"},
};
#define NFLAGS (sizeof FLAGS / sizeof FLAGS[0])

/* Go's flag package shows a default only when it is not the zero value. */
static void usage(FILE *out, const char *prog) {
  ic_cli_flag_t docs[NFLAGS];
  for (size_t i = 0; i < NFLAGS; i++) {
    const flagdef_t *f = &FLAGS[i];
    docs[i] = (ic_cli_flag_t){f->name,
                              f->type == F_STR     ? "string"
                              : f->type == F_INT   ? "int"
                              : f->type == F_FLOAT ? "float"
                                                   : NULL,
                              f->type == F_BOOL || strcmp(f->def, "0") == 0 ? NULL : f->def, f->usage};
  }
  const char *slash = strrchr(prog, '/');
  ic_cli_t cli = {slash ? slash + 1 : prog,
                  "the cache-aware routing index (gRPC LookupRoute/ReportCacheState, /metrics, "
                  "/snapshot, /policy, /probe)",
                  NULL, docs, NFLAGS};
  ic_cli_usage(&cli, out);
}

static void set_defaults(server_flags_t *fl) {
  memset(fl, 0, sizeof *fl);
  for (size_t i = 0; i < NFLAGS; i++) {
    const flagdef_t *f = &FLAGS[i];
    char *p = (char *)fl + f->off;
    if (f->type == F_STR) *(const char **)p = f->def;
    else if (f->type == F_INT) *(int *)p = atoi(f->def);
    else if (f->type == F_FLOAT) *(float *)p = strtof(f->def, NULL);
    else *(bool *)p = false;
  }
}

static int parse_bool(const char *v, bool *out) {
  static const char *const t[] = {"1", "t", "T", "true", "TRUE", "True"};
  static const char *const f[] = {"0", "f", "F", "false", "FALSE", "False"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(v, t[i]) == 0) return *out = true, 0;
    if (strcmp(v, f[i]) == 0) return *out = false, 0;
  }
  return -1;
}

static int parse_int(const char *v, int *out) {
  errno = 0;
  char *end;
  long x = strtol(v, &end, 0);
  if (errno || end == v || *end || x < INT_MIN || x > INT_MAX) return -1;
  *out = (int)x;
  return 0;
}

int server_flags_parse(server_flags_t *fl, int argc, char **argv) {
  set_defaults(fl);
  const char *prog = argc > 0 ? argv[0] : "inferencecache-server";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || a[1] == '\0') break; /* first non-flag argument ends parsing (Go) */
    a++;
    if (*a == '-') {
      a++;
      if (*a == '\0') break; /* "--" terminator */
    }
    if (*a == '-' || *a == '=') {
      fprintf(stderr, "bad flag syntax: %s\n", argv[i]);
      usage(stderr, prog);
      return 2;
    }
    const char *eq = strchr(a, '=');
    size_t nl = eq ? (size_t)(eq - a) : strlen(a);
    if ((nl == 1 && a[0] == 'h') || (nl == 4 && strncmp(a, "help", 4) == 0)) {
      usage(stdout, prog);
      return 1;
    }
    if (nl == 7 && strncmp(a, "version", 7) == 0) {
      ic_version_print(stdout, "inferencecache-server");
      return 1;
    }
    const flagdef_t *f = NULL;
    for (size_t k = 0; k < NFLAGS; k++)
      if (strlen(FLAGS[k].name) == nl && strncmp(FLAGS[k].name, a, nl) == 0) f = &FLAGS[k];
    if (!f) {
      fprintf(stderr, "flag provided but not defined: -%.*s\n", (int)nl, a);
      usage(stderr, prog);
      return 2;
    }
    char *p = (char *)fl + f->off;
    const char *val = eq ? eq + 1 : NULL;
    if (f->type == F_BOOL) {
      bool b = true;
      if (val && parse_bool(val, &b) != 0) {
        fprintf(stderr, "invalid boolean value \"%s\" for -%s: parse error\n", val, f->name);
        usage(stderr, prog);
        return 2;
      }
      *(bool *)p = b;
      continue;
    }
    if (!val) {
      if (i + 1 >= argc) {
        fprintf(stderr, "flag needs an argument: -%s\n", f->name);
        usage(stderr, prog);
        return 2;
      }
      val = argv[++i];
    }
    if (f->type == F_STR) {
      *(const char **)p = val;
    } else if (f->type == F_FLOAT) {
      char *end = NULL;
      errno = 0;
      float x = strtof(val, &end);
      if (!*val || *end || errno || !(x >= 0) || x > 1e9f) {
        fprintf(stderr, "invalid value \"%s\" for flag -%s: parse error\n", val, f->name);
        usage(stderr, prog);
        return 2;
      }
      *(float *)p = x;
    } else if (parse_int(val, (int *)p) != 0) {
      fprintf(stderr, "invalid value \"%s\" for flag -%s: parse error\n", val, f->name);
      usage(stderr, prog);
      return 2;
    }
  }
  if (fl->engine_block_size <= 0) fl->engine_block_size = 16;
  return 0;
}

/* Go strings.TrimSpace over ASCII whitespace plus the common Unicode spaces U+0085, U+00A0. */
static bool is_space_at(const char *s, size_t n, size_t i, size_t *w) {
  unsigned char c = (unsigned char)s[i];
  if (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r') return *w = 1, true;
  if (c == 0xC2 && i + 1 < n && ((unsigned char)s[i + 1] == 0x85 || (unsigned char)s[i + 1] == 0xA0))
    return *w = 2, true;
  return false;
}

static bool has_outer_space(const char *s) {
  size_t n = strlen(s), w;
  if (n == 0) return false;
  if (is_space_at(s, n, 0, &w)) return true;
  for (size_t i = n >= 2 ? n - 2 : 0; i < n; i++)
    if (is_space_at(s, n, i, &w) && i + w == n) return true;
  return false;
}

static bool all_space(const char *s) {
  size_t n = strlen(s), w;
  for (size_t i = 0; i < n; i += w)
    if (!is_space_at(s, n, i, &w)) return false;
  return true;
}

static char *quoted(const char *s) {
  ic_buf_t b = IC_BUF_INIT;
  ic_buf_append_json_str(&b, s, strlen(s));
  return ic_buf_detach(&b, NULL);
}

const char *server_flags_validate_auth(const server_flags_t *f, char **owned) {
  *owned = NULL;
  const char *sa = f->allowed_controller_sa ? f->allowed_controller_sa : "";
  if (*sa && f->insecure_disable_auth)
    return "--allowed-controller-sa and --insecure-disable-auth are mutually exclusive";
  if (!*sa && !f->insecure_disable_auth)
    return "missing --allowed-controller-sa; pass --insecure-disable-auth to run the controller listener "
           "without authentication (development only)";
  if (f->insecure_disable_auth) return NULL;
  ic_buf_t b = IC_BUF_INIT;
  if (has_outer_space(sa)) {
    char *q = quoted(sa);
    ic_buf_appendf(&b, "--allowed-controller-sa has leading/trailing whitespace (%s); remove it", q ? q : "");
    free(q);
    return *owned = ic_buf_detach(&b, NULL);
  }
  const char *names[2] = {"--controller-audience", "--policy-audience"};
  const char *vals[2] = {f->controller_audience ? f->controller_audience : "",
                         f->policy_audience ? f->policy_audience : ""};
  for (int i = 0; i < 2; i++) {
    if (all_space(vals[i])) {
      ic_buf_appendf(&b, "%s cannot be empty or whitespace-only when --allowed-controller-sa is set; "
                         "omit the flag to use the default", names[i]);
      return *owned = ic_buf_detach(&b, NULL);
    }
    if (has_outer_space(vals[i])) {
      char *q = quoted(vals[i]);
      ic_buf_appendf(&b, "%s has leading/trailing whitespace (%s); remove it", names[i], q ? q : "");
      free(q);
      return *owned = ic_buf_detach(&b, NULL);
    }
  }
  return NULL;
}
