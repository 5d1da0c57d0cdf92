/* `inferencecache replay`: flags -> lib/replay. Loads a workload, replays it once per routing
 * mode against the given engines, and writes the table, summary/record JSON lines and an SVG. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "ic/cli.h"
#include "ic/log.h"
#include "ic/replay.h"
#include "ic/version.h"

static const ic_cli_flag_t FLAGS[] = {
    {"workload", "string", NULL,
     "what to replay (required): mooncake:PATH, shared-prefix, multi-turn or cache-stress,\n"
     "parameters after a colon as key=value,... (see Workloads below)"},
    {"scenario", "string", NULL, "scenario name in reports (default: from the workload)"},
    {"engine", "string", NULL,
     "one engine as REPLICA_ID=URL: the replica id its kvevent-subscriber reports\n"
     "(--replica-id) and its base URL; repeat the flag or comma-separate (required)"},
    {"mode", "string", "round-robin,lookup",
     "comma-separated routing modes or \"all\": random, round-robin, least-loaded (engine\n"
     "queue depth from /metrics), approximate (the router remembers where it sent prefixes),\n"
     "lookup (ask inferencecache-server's LookupRoute), precise (oracle: ask every engine)"},
    {"server", "string", "127.0.0.1:9090", "inferencecache-server gRPC address"},
    {"model-id", "string", "sim-model", "model for completions and LookupRoute"},
    {"tenant-id", "string", NULL,
     "tenant for LookupRoute, as the subscribers' --tenant-id (lookup needs one: the server\n"
     "never matches an empty tenant)"},
    {"hash-scheme", "string", "vllm", "hash scheme for LookupRoute, as the subscribers'"},
    {"block-size", "int", "16", "engine KV block size = fingerprint block size"},
    {"speedup", "float", "1",
     "workload time runs this many times faster than wall time; simulated engines with the\n"
     "same --speedup see the workload's own rate"},
    {"max-requests", "int", "0", "replay only the first N requests (0 = all)"},
    {"max-duration", "float", "0", "replay only the first SECONDS of workload time (0 = all)"},
    {"lookup-fallback", "string", "least-loaded",
     "lookup without a usable hint: least-loaded, round-robin or random"},
    {"lookup-timeout-ms", "int", "100", "LookupRoute deadline"},
    {"approx-capacity-tokens", "int", "450000",
     "approximate: tokens remembered per replica (one default engine's KV capacity)"},
    {"min-match-ratio", "float", "0.5",
     "approximate, precise: follow the longest cached prefix only when it covers this share\n"
     "of the prompt, else the least-loaded replica"},
    {"metrics-interval-ms", "int", "100", "engine /metrics scrape period for load"},
    {"request-timeout", "float", "600", "seconds per request"},
    {"seed", "int", "1", "random mode's seed"},
    {"no-reset", NULL, NULL,
     "keep engine caches between modes (default: POST --reset-path to every engine before\n"
     "each mode and wait for the server's index to empty)"},
    {"reset-path", "string", "/reset_prefix_cache",
     "what the reset POSTs to (vLLM with VLLM_SERVER_DEV_MODE=1; SGLang: /flush_cache)"},
    {"reset-wait-ms", "int", "10000", "how long to wait for the index to empty after a reset"},
    {"summary", "string", NULL,
     "summary JSON lines, one per mode (\"-\" = stdout; the table then goes to stderr)"},
    {"records", "string", NULL, "per-request JSON lines"},
    {"svg", "string", NULL, "picture: TTFT distributions and hit rates per mode"},
    {"quiet", NULL, NULL, "no progress lines"},
    {"log-level", "string", "info", "debug|info|warn|error"},
    {"log-format", "string", "json", "json|text"},
};

static const ic_cli_t CLI = {
    .program = "inferencecache replay",
    .summary = "replays a workload open-loop (each request leaves at its own time, whatever the "
               "engines do) against OpenAI-compatible engines, once per routing mode, and "
               "reports hit rate, TTFT, throughput, load imbalance and prediction accuracy per "
               "mode",
    .args = NULL,
    .flags = FLAGS,
    .nflags = sizeof(FLAGS) / sizeof(FLAGS[0])};

static void usage(FILE *f) {
  ic_cli_usage(&CLI, f);
  fprintf(f,
          "\n%s\nExit status: 0 all requests succeeded, 3 some failed (reports are still "
          "written),\n1 the replay could not run, 2 usage error.\n",
          ic_replay_workload_help());
}

enum {
  F_WORKLOAD = 256,
  F_SCENARIO,
  F_ENGINE,
  F_MODE,
  F_SERVER,
  F_MODEL,
  F_TENANT,
  F_SCHEME,
  F_BLOCK,
  F_SPEEDUP,
  F_MAXREQ,
  F_MAXDUR,
  F_FALLBACK,
  F_LTIMEOUT,
  F_APPROX,
  F_METRICS,
  F_RTIMEOUT,
  F_SEED,
  F_NORESET,
  F_RESETWAIT,
  F_MINMATCH,
  F_RESETPATH,
  F_VERSION,
  F_SUMMARY,
  F_RECORDS,
  F_SVG,
  F_QUIET,
  F_LOGLEVEL,
  F_LOGFORMAT
};

static const struct option OPTS[] = {{"workload", required_argument, 0, F_WORKLOAD},
                                     {"scenario", required_argument, 0, F_SCENARIO},
                                     {"engine", required_argument, 0, F_ENGINE},
                                     {"mode", required_argument, 0, F_MODE},
                                     {"server", required_argument, 0, F_SERVER},
                                     {"model-id", required_argument, 0, F_MODEL},
                                     {"tenant-id", required_argument, 0, F_TENANT},
                                     {"hash-scheme", required_argument, 0, F_SCHEME},
                                     {"block-size", required_argument, 0, F_BLOCK},
                                     {"speedup", required_argument, 0, F_SPEEDUP},
                                     {"max-requests", required_argument, 0, F_MAXREQ},
                                     {"max-duration", required_argument, 0, F_MAXDUR},
                                     {"lookup-fallback", required_argument, 0, F_FALLBACK},
                                     {"lookup-timeout-ms", required_argument, 0, F_LTIMEOUT},
                                     {"approx-capacity-tokens", required_argument, 0, F_APPROX},
                                     {"metrics-interval-ms", required_argument, 0, F_METRICS},
                                     {"request-timeout", required_argument, 0, F_RTIMEOUT},
                                     {"seed", required_argument, 0, F_SEED},
                                     {"no-reset", no_argument, 0, F_NORESET},
                                     {"min-match-ratio", required_argument, 0, F_MINMATCH},
                                     {"reset-path", required_argument, 0, F_RESETPATH},
                                     {"reset-wait-ms", required_argument, 0, F_RESETWAIT},
                                     {"summary", required_argument, 0, F_SUMMARY},
                                     {"records", required_argument, 0, F_RECORDS},
                                     {"svg", required_argument, 0, F_SVG},
                                     {"quiet", no_argument, 0, F_QUIET},
                                     {"log-level", required_argument, 0, F_LOGLEVEL},
                                     {"log-format", required_argument, 0, F_LOGFORMAT},
                                     {"help", no_argument, 0, 'h'},
                                     {"version", no_argument, 0, F_VERSION},
                                     {0, 0, 0, 0}};

static int bad(const char *flag, const char *val, const char *want) {
  return ic_cli_fail(&CLI, "invalid value \"%s\" for --%s: want %s", val, flag, want);
}

static bool parse_num(const char *s, double lo, double hi, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

typedef struct {
  ic_replay_engine_t *v;
  int n, cap;
} engines_t;

static int add_engines(engines_t *e, const char *arg) {
  char *copy = strdup(arg), *save = NULL;
  if (!copy) return 1;
  int rc = 0;
  for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
    if (e->n == e->cap) {
      e->cap = e->cap ? e->cap * 2 : 8;
      ic_replay_engine_t *v = realloc(e->v, (size_t)e->cap * sizeof(*v));
      if (!v) {
        rc = 1;
        break;
      }
      e->v = v;
    }
    char err[256];
    if (ic_replay_engine_parse(s, e->n, &e->v[e->n], err, sizeof(err))) {
      rc = ic_cli_fail(&CLI, "--engine: %s", err);
      break;
    }
    for (int i = 0; i < e->n; i++)
      if (!strcmp(e->v[i].replica_id, e->v[e->n].replica_id)) {
        rc = ic_cli_fail(&CLI, "--engine: replica id \"%s\" given twice", e->v[i].replica_id);
      }
    e->n++;
    if (rc) break;
  }
  free(copy);
  return rc;
}

static int parse_modes(const char *s, ic_replay_mode_t *modes, int *n) {
  if (!strcmp(s, "all")) {
    for (int i = 0; i < IC_REPLAY_NMODES; i++)
      modes[i] = (ic_replay_mode_t)i;
    *n = IC_REPLAY_NMODES;
    return 0;
  }
  char *copy = strdup(s), *save = NULL;
  *n = 0;
  int rc = 0;
  for (char *m = strtok_r(copy, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
    if (*n >= 16 || ic_replay_mode_parse(m, &modes[*n])) {
      rc = 2;
      break;
    }
    (*n)++;
  }
  free(copy);
  return rc || *n == 0 ? 2 : 0;
}

static FILE *open_out(const char *path, const char *what) {
  if (!path) return NULL;
  if (!strcmp(path, "-")) return stdout;
  FILE *f = fopen(path, "w");
  if (!f) fprintf(stderr, "inferencecache replay: open %s %s: %s\n", what, path, strerror(errno));
  return f;
}

int cmd_replay(int argc, char **argv) {
  ic_replay_opts_t o;
  ic_replay_opts_defaults(&o);
  o.progress = true;
  const char *workload = NULL, *scenario = NULL, *summary_path = NULL, *records_path = NULL,
             *svg_path = NULL;
  ic_replay_mode_t modes[16] = {IC_REPLAY_ROUND_ROBIN, IC_REPLAY_LOOKUP};
  int nmodes = 2;
  double maxreq = 0, maxdur = 0, v;
  engines_t eng = {0};
  int rc = 2, c;
  /* Go flag convention (every program here): -name is the same as --name. */
  char **args = calloc((size_t)argc + 1, sizeof(char *));
  char **owned = calloc((size_t)argc + 1, sizeof(char *));
  if (!args || !owned) {
    free(args);
    free(owned);
    return 1;
  }
  for (int i = 0; i < argc; i++) {
    args[i] = argv[i];
    if (i > 0 && argv[i][0] == '-' && argv[i][1] && argv[i][1] != '-' && argv[i][2]) {
      if (asprintf(&owned[i], "-%s", argv[i]) > 0)
        args[i] = owned[i];
      else
        owned[i] = NULL;
    }
  }
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, args, "h", OPTS, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage(stdout);
      rc = 0;
      goto out;
    case F_VERSION:
      ic_version_print(stdout, "inferencecache");
      rc = 0;
      goto out;
    case F_WORKLOAD: workload = optarg; break;
    case F_SCENARIO: scenario = optarg; break;
    case F_ENGINE:
      if ((rc = add_engines(&eng, optarg)) != 0) goto out;
      rc = 2;
      break;
    case F_MODE:
      if (parse_modes(optarg, modes, &nmodes)) {
        rc = bad("mode", optarg,
                 "a comma-separated list of random, round-robin, least-loaded, "
                 "approximate, lookup, precise, or \"all\"");
        goto out;
      }
      break;
    case F_SERVER: o.server = optarg; break;
    case F_MODEL: o.model_id = optarg; break;
    case F_TENANT: o.tenant_id = optarg; break;
    case F_SCHEME: o.hash_scheme = optarg; break;
    case F_BLOCK:
      if (!parse_num(optarg, 1, 65536, &v) || v != floor(v)) {
        rc = bad("block-size", optarg, "an integer in [1, 65536]");
        goto out;
      }
      o.block_size = (int)v;
      break;
    case F_SPEEDUP:
      if (!parse_num(optarg, 1e-6, 1e6, &v)) {
        rc = bad("speedup", optarg, "a number > 0");
        goto out;
      }
      o.speedup = v;
      break;
    case F_MAXREQ:
      if (!parse_num(optarg, 0, 1e9, &maxreq) || maxreq != floor(maxreq)) {
        rc = bad("max-requests", optarg, "an integer >= 0");
        goto out;
      }
      break;
    case F_MAXDUR:
      if (!parse_num(optarg, 0, 1e9, &maxdur)) {
        rc = bad("max-duration", optarg, "seconds >= 0");
        goto out;
      }
      break;
    case F_FALLBACK:
      if (ic_replay_mode_parse(optarg, &o.lookup_fallback) ||
          o.lookup_fallback > IC_REPLAY_LEAST_LOADED) {
        rc = bad("lookup-fallback", optarg, "least-loaded, round-robin or random");
        goto out;
      }
      break;
    case F_LTIMEOUT:
      if (!parse_num(optarg, 1, 600000, &v)) {
        rc = bad("lookup-timeout-ms", optarg, "milliseconds in [1, 600000]");
        goto out;
      }
      o.lookup_timeout_ms = (int)v;
      break;
    case F_APPROX:
      if (!parse_num(optarg, 1, 1e10, &v)) {
        rc = bad("approx-capacity-tokens", optarg, "tokens >= 1");
        goto out;
      }
      o.approx_capacity_tokens = (size_t)v;
      break;
    case F_METRICS:
      if (!parse_num(optarg, 1, 600000, &v)) {
        rc = bad("metrics-interval-ms", optarg, "milliseconds in [1, 600000]");
        goto out;
      }
      o.metrics_interval_ms = (int)v;
      break;
    case F_RTIMEOUT:
      if (!parse_num(optarg, 0.001, 86400, &v)) {
        rc = bad("request-timeout", optarg, "seconds in (0, 86400]");
        goto out;
      }
      o.request_timeout_ms = (int)(v * 1000);
      break;
    case F_SEED:
      if (!parse_num(optarg, 0, 1e18, &v)) {
        rc = bad("seed", optarg, "an integer >= 0");
        goto out;
      }
      o.seed = (uint64_t)v;
      break;
    case F_NORESET: o.reset = false; break;
    case F_RESETPATH:
      if (optarg[0] != '/') {
        rc = bad("reset-path", optarg, "a path starting with /");
        goto out;
      }
      o.reset_path = optarg;
      break;
    case F_MINMATCH:
      if (!parse_num(optarg, 0, 1, &o.min_match_ratio)) {
        rc = bad("min-match-ratio", optarg, "a number in [0, 1]");
        goto out;
      }
      break;
    case F_RESETWAIT:
      if (!parse_num(optarg, 0, 600000, &v)) {
        rc = bad("reset-wait-ms", optarg, "milliseconds in [0, 600000]");
        goto out;
      }
      o.reset_wait_ms = (int)v;
      break;
    case F_SUMMARY: summary_path = optarg; break;
    case F_RECORDS: records_path = optarg; break;
    case F_SVG: svg_path = optarg; break;
    case F_QUIET: o.progress = false; break;
    case F_LOGLEVEL: {
      ic_log_level_t l;
      if (ic_log_parse_level(optarg, &l)) {
        rc = bad("log-level", optarg, "debug|info|warn|error");
        goto out;
      }
      ic_log_set_level(l);
      break;
    }
    case F_LOGFORMAT: {
      ic_log_format_t fm;
      if (ic_log_parse_format(optarg, &fm)) {
        rc = bad("log-format", optarg, "json|text");
        goto out;
      }
      ic_log_set_format(fm);
      break;
    }
    default:
      rc = ic_cli_fail(&CLI, "flag provided but not defined or missing its value: %s",
                       argv[optind - 1]);
      goto out;
    }
  }
  if (optind < argc) {
    rc = ic_cli_fail(&CLI, "unexpected argument \"%s\"", argv[optind]);
    goto out;
  }
  if (!workload || eng.n == 0) {
    rc = ic_cli_fail(&CLI, "--workload and at least one --engine are required");
    goto out;
  }
  o.engines = eng.v;
  o.nengines = eng.n;
  for (int m = 0; m < nmodes; m++)
    if (modes[m] == IC_REPLAY_LOOKUP && (!*o.tenant_id || !*o.model_id || !*o.hash_scheme)) {
      rc = ic_cli_fail(&CLI, "lookup mode needs --tenant-id, --model-id and --hash-scheme as "
                             "the subscribers report them (the server never matches an empty "
                             "tenant)");
      goto out;
    }

  char err[512];
  ic_replay_workload_t *w = ic_replay_workload_load(workload, err, sizeof(err));
  if (!w) {
    rc = ic_cli_fail(&CLI, "%s", err);
    goto out;
  }
  if (w->skipped)
    ic_log_warn("replay_trace_lines_skipped", IC_LI("skipped", w->skipped),
                IC_LS("first", w->first_error));
  if (scenario) snprintf(w->name, sizeof(w->name), "%s", scenario);
  ic_replay_workload_limit(w, (size_t)maxreq, (int64_t)(maxdur * 1e6));

  FILE *summary = open_out(summary_path, "summary"), *records = open_out(records_path, "records");
  FILE *svg = open_out(svg_path, "svg");
  rc = 1;
  if ((summary_path && !summary) || (records_path && !records) || (svg_path && !svg)) goto close;
  o.records = records;
  FILE *table = summary == stdout ? stderr : stdout;

  ic_replay_summary_t sums[16];
  double *ttfts[16] = {0};
  size_t nttft[16] = {0};
  size_t failed = 0;
  int done = 0;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  for (int m = 0; m < nmodes; m++) {
    ic_replay_result_t res;
    if (o.progress)
      fprintf(stderr, "replay %s: %zu requests, mode %s, %d engines, speedup %g\n", w->name, w->n,
              ic_replay_mode_name(modes[m]), o.nengines, o.speedup);
    if (ic_replay_run(&o, w, modes[m], &res, err, sizeof(err))) {
      fprintf(stderr, "inferencecache replay: mode %s: %s\n", ic_replay_mode_name(modes[m]), err);
      break;
    }
    sums[done] = res.summary;
    ttfts[done] = malloc((res.n ? res.n : 1) * sizeof(double));
    for (size_t i = 0; ttfts[done] && i < res.n; i++)
      if (res.recs[i].ok) ttfts[done][nttft[done]++] = res.recs[i].ttft_ms;
    failed += res.summary.failed;
    if (summary) {
      ic_replay_write_summary_json(summary, &res.summary);
      fflush(summary);
    }
    for (size_t i = 0; i < res.n && res.summary.failed; i++)
      if (!res.recs[i].ok) {
        ic_log_warn("replay_request_failed", IC_LS("mode", res.summary.mode),
                    IC_LI("index", res.recs[i].index), IC_LS("error", res.recs[i].error));
        break; /* the first one; --records has them all */
      }
    ic_replay_result_free(&res);
    done++;
  }
  if (done) {
    ic_replay_write_table(table, sums, (size_t)done);
    if (svg) {
      char title[160];
      snprintf(title, sizeof(title), "%s: %zu requests, %d engines", w->name, w->n, o.nengines);
      ic_replay_write_svg(svg, title, sums, (const double *const *)ttfts, nttft, (size_t)done);
    }
  }
  rc = done < nmodes ? 1 : failed ? 3 : 0;
  for (int i = 0; i < done; i++)
    free(ttfts[i]);
  curl_global_cleanup();
close:
  if (summary && summary != stdout) fclose(summary);
  if (records && records != stdout) fclose(records);
  if (svg && svg != stdout && fclose(svg)) rc = 1;
  ic_replay_workload_free(w);
out:
  for (int i = 0; i < argc; i++)
    free(owned[i]);
  free(owned);
  free(args);
  for (int i = 0; i < eng.n; i++) {
    free(eng.v[i].replica_id);
    free(eng.v[i].url);
  }
  free(eng.v);
  return rc;
}
