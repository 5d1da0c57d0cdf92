/* `inferencecache doctor` (also `kubectl inferencecache doctor`): flags -> lib/doctor. Loads the
 * Kubernetes client configuration, runs the read-only checks, prints the report, exits 0/1/2. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "ic/api.h"
#include "ic/buf.h"
#include "ic/cli.h"
#include "ic/doctor.h"
#include "ic/err.h"
#include "ic/kube.h"
#include "ic/version.h"

#define SA_TOKEN "/var/run/secrets/kubernetes.io/serviceaccount/token"
#define MAX_TOKEN_BYTES (64u * 1024)

static const ic_cli_flag_t FLAGS[] = {
    {"kubeconfig", "string", NULL,
     "kubeconfig file (default: $KUBECONFIG, else the in-cluster service account, else\n"
     "~/.kube/config)"},
    {"context", "string", NULL, "kubeconfig context (default: its current-context)"},
    {"namespace", "string", NULL,
     "scope the CacheBackend, Pod, Event, CacheTenant and CachePolicy reads to one namespace\n"
     "(default: all namespaces; -n works too); server discovery is not scoped"},
    {"server-endpoint", "string", NULL,
     "inferencecache-server gRPC address host[:port] (default: the inference-cache-server\n"
     "Service, port 9090)"},
    {"snapshot-endpoint", "string", NULL,
     "the server's controller-facing listener (/snapshot, /policy, /probe) as host:port or\n"
     "URL (default: the server host, port 8081)"},
    {"snapshot-token-file", "string", SA_TOKEN,
     "bearer token presented to /snapshot; a missing file means no token"},
    {"tls-ca-file", "string", NULL,
     "PEM roots for the gRPC health check when the server's gRPC port has TLS (config/tls);\n"
     "empty = plaintext"},
    {"readyz-port", "int", "8080",
     "the servers' public HTTP port (/readyz), asked of each replica when the server name\n"
     "resolves to several addresses (a headless Service)"},
    {"output", "string", "human", "human, json or table (-o works too)"},
    {"no-color", NULL, NULL, "no ANSI colour in human output (colour only on a terminal anyway)"},
    {"config-only", NULL, NULL,
     "skip the live server probes (gRPC health, /snapshot, /policy, /probe, index\n"
     "participation) and the TCP dials: API-server checks only"},
    {"timeout", "duration", "30s", "deadline of each network call"},
};

static const ic_cli_t CLI = {
    .program = "inferencecache doctor",
    .summary = "read-only preflight of an inference-cache installation: the server's gRPC "
               "health and /snapshot, /policy, /probe routes, then every CacheBackend "
               "(readiness, engine-pod matching, KV events, functional self-test, endpoint), "
               "engine-pod injection and index participation, orphaned pods, CacheTenant quota "
               "and CachePolicy coverage; with several server replicas each one and their "
               "agreement; findings carry stable codes (docs/doctor.md)",
    .args = NULL,
    .flags = FLAGS,
    .nflags = sizeof(FLAGS) / sizeof(FLAGS[0])};

static void usage(FILE *f) {
  ic_cli_usage(&CLI, f);
  fprintf(f, "\nExit status: 0 nothing worse than INFO, 1 a WARN finding, 2 a FAIL finding or a "
             "usage error.\n");
}

enum {
  F_KUBECONFIG = 256,
  F_CONTEXT,
  F_SERVER,
  F_SNAPSHOT,
  F_TOKEN,
  F_TLSCA,
  F_NOCOLOR,
  F_CONFIGONLY,
  F_TIMEOUT,
  F_READYZ,
  F_VERSION
};

static const struct option OPTS[] = {{"kubeconfig", required_argument, 0, F_KUBECONFIG},
                                     {"context", required_argument, 0, F_CONTEXT},
                                     {"namespace", required_argument, 0, 'n'},
                                     {"server-endpoint", required_argument, 0, F_SERVER},
                                     {"snapshot-endpoint", required_argument, 0, F_SNAPSHOT},
                                     {"snapshot-token-file", required_argument, 0, F_TOKEN},
                                     {"tls-ca-file", required_argument, 0, F_TLSCA},
                                     {"output", required_argument, 0, 'o'},
                                     {"no-color", no_argument, 0, F_NOCOLOR},
                                     {"config-only", no_argument, 0, F_CONFIGONLY},
                                     {"timeout", required_argument, 0, F_TIMEOUT},
                                     {"readyz-port", required_argument, 0, F_READYZ},
                                     {"help", no_argument, 0, 'h'},
                                     {"version", no_argument, 0, F_VERSION},
                                     {0, 0, 0, 0}};

/* The bearer for /snapshot: a missing file is the workstation case (no token, silently); a file
 * that exists but cannot be read is said, so it is not mistaken for an unauthenticated server. */
static char *read_token(const char *path) {
  if (!path || !*path) return NULL;
  ic_buf_t b = IC_BUF_INIT;
  int rc = ic_buf_read_file_trimmed(path, MAX_TOKEN_BYTES, &b, NULL);
  if (rc != 0 && rc != IC_ENOTFOUND)
    fprintf(stderr,
            "inferencecache doctor: warning: cannot read --snapshot-token-file %s: %s; "
            "probing /snapshot without a token\n",
            path, strerror(errno));
  if (rc == 0 && b.len) return ic_buf_detach(&b, NULL);
  ic_buf_free(&b);
  return NULL;
}

/* --kubeconfig/--context name a file explicitly; otherwise the usual order (ic_kube_config_load).
 */
static int load_config(const char *path, const char *context, ic_kube_config_t *cfg) {
  if (!context) return ic_kube_config_load(path, cfg);
  const char *p = path;
  char home[4096];
  if (!p) {
    const char *env = getenv("KUBECONFIG");
    if (env && *env) {
      snprintf(home, sizeof home, "%.*s", (int)strcspn(env, ":"), env);
    } else {
      snprintf(home, sizeof home, "%s/.kube/config", getenv("HOME") ? getenv("HOME") : "");
    }
    p = home;
  }
  return ic_kube_config_from_file(p, context, cfg);
}

int cmd_doctor(int argc, char **argv) {
  const char *kubeconfig = NULL, *context = NULL, *token_file = SA_TOKEN, *output = "human";
  ic_doctor_opts_t o = {.timeout_ms = 30000};
  bool no_color = false;
  int c;
  /* Go flag convention (every program here): -name is the same as --name; -n and -o stay short. */
  char **args = calloc((size_t)argc + 1, sizeof(char *));
  char **owned = calloc((size_t)argc + 1, sizeof(char *));
  if (!args || !owned) {
    free(args);
    free(owned);
    return 1;
  }
  for (int i = 0; i < argc; i++) {
    args[i] = argv[i];
    if (i > 0 && argv[i][0] == '-' && argv[i][1] && argv[i][1] != '-' && argv[i][2] &&
        argv[i][2] != '=' && !((argv[i][1] == 'n' || argv[i][1] == 'o') && !argv[i][2])) {
      if (asprintf(&owned[i], "-%s", argv[i]) > 0)
        args[i] = owned[i];
      else
        owned[i] = NULL;
    }
  }
  int rc = -1;
  optind = 1;
  opterr = 0;
  while (rc < 0 && (c = getopt_long(argc, args, "hn:o:", OPTS, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage(stdout);
      rc = 0;
      break;
    case F_VERSION:
      ic_version_print(stdout, "inferencecache");
      rc = 0;
      break;
    case F_KUBECONFIG: kubeconfig = *optarg ? optarg : NULL; break;
    case F_CONTEXT: context = *optarg ? optarg : NULL; break;
    case 'n': o.namespace = optarg; break;
    case F_SERVER: o.grpc_target = optarg; break;
    case F_SNAPSHOT: o.http_base = optarg; break;
    case F_TOKEN: token_file = optarg; break;
    case F_TLSCA: o.tls_ca_file = *optarg ? optarg : NULL; break;
    case 'o': output = optarg; break;
    case F_NOCOLOR: no_color = true; break;
    case F_CONFIGONLY: o.config_only = true; break;
    case F_TIMEOUT: {
      int64_t ns;
      if (ic_api_parse_duration(optarg, &ns) || ns < 1000000 || ns > 3600 * 1000000000LL)
        rc = ic_cli_fail(&CLI, "invalid value \"%s\" for --timeout: want a duration in [1ms, 1h]",
                         optarg);
      else
        o.timeout_ms = (int)(ns / 1000000);
      break;
    }
    case F_READYZ: {
      char *end = NULL;
      long v = strtol(optarg, &end, 10);
      if (!*optarg || *end || v < 1 || v > 65535)
        rc = ic_cli_fail(&CLI, "invalid value \"%s\" for --readyz-port: want a port in [1, 65535]",
                         optarg);
      else
        o.readyz_port = (int)v;
      break;
    }
    case '?':
      rc = ic_cli_fail(&CLI, "flag provided but not defined or missing its value: %s",
                       args[optind - 1]);
      break;
    default: rc = ic_cli_fail(&CLI, "bad flag"); break;
    }
  }
  ic_doctor_format_t fmt = IC_DOCTOR_HUMAN;
  if (rc < 0 && optind < argc)
    rc = ic_cli_fail(&CLI, "unexpected argument \"%s\" (doctor takes flags only; -n NAMESPACE?)",
                     argv[optind]);
  if (rc < 0 && ic_doctor_parse_format(output, &fmt))
    rc = ic_cli_fail(&CLI, "invalid value \"%s\" for --output: want human, json or table", output);
  for (int i = 0; i < argc; i++)
    free(owned[i]);
  free(owned);
  free(args);
  if (rc >= 0) return rc;

  ic_doctor_report_t report;
  ic_doctor_report_init(&report);
  ic_kube_config_t cfg = {0};
  int crc = load_config(kubeconfig, context, &cfg);
  if (crc == 0) {
    o.kube = ic_kube_new(&cfg);
    if (o.kube) {
      ic_kube_set_timeout(o.kube, o.timeout_ms);
      ic_kube_set_retry(o.kube, 2, 200);
    }
  }
  if (!o.kube) /* Without an API server the server probes still tell something: say why, go on. */
    ic_doctor_add(&report, "API001", IC_DOCTOR_FAIL, "KubernetesClient", "kubeconfig",
                  "no Kubernetes client configuration%s%s (%s): pass --kubeconfig, set "
                  "KUBECONFIG or run in a pod; the cluster checks were skipped",
                  kubeconfig ? " from " : "", kubeconfig ? kubeconfig : "",
                  crc ? ic_strerror(crc) : "the configuration has no server");
  char *token = read_token(token_file);
  o.token = token;
  if (o.kube || !o.config_only) ic_doctor_run(&o, &report);
  bool color = fmt == IC_DOCTOR_HUMAN && !no_color && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
  int wrc = ic_doctor_render(&report, fmt, color, stdout);
  rc = wrc ? 2 : ic_doctor_exit_code(&report);
  if (wrc) fprintf(stderr, "inferencecache doctor: writing the report: %s\n", ic_strerror(wrc));
  ic_doctor_report_free(&report);
  free(token);
  ic_kube_free(o.kube);
  ic_kube_config_free(&cfg);
  return rc;
}
