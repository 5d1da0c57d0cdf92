/* ic-webhook-server: serves the controller's admission webhooks (src/controller/webhook.c) without
 * the reconcilers, with namespace listings read from a JSON file — for tests and local debugging. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/cli.h"
#include "ic/log.h"
#include "ic/version.h"
#include "webhook.h"

/* --objects=FILE: a JSON array of objects, re-read on every listing so tests can change it. */
static json_t *list_from_file(void *ud, const char *kind, const char *ns, char *err, size_t errlen) {
  const char *path = ud;
  if (!path) return json_array();
  json_error_t je;
  json_t *all = json_load_file(path, 0, &je);
  if (!json_is_array(all)) {
    json_decref(all);
    snprintf(err, errlen, "cannot read %s: %s", path, je.text);
    return NULL;
  }
  json_t *out = json_array();
  size_t i;
  json_t *it;
  json_array_foreach(all, i, it) {
    const char *k = json_string_value(json_object_get(it, "kind"));
    const char *n = json_string_value(json_object_get(json_object_get(it, "metadata"), "namespace"));
    if (k && n && strcmp(k, kind) == 0 && strcmp(n, ns) == 0) json_array_append(out, it);
  }
  json_decref(all);
  return out;
}

static const ic_cli_flag_t FLAGS[] = {
    {"bind", "string", "127.0.0.1:9443", "listen address (HTTPS with --cert/--key, else HTTP)"},
    {"cert", "string", NULL, "PEM serving certificate"},
    {"key", "string", NULL, "PEM private key of --cert"},
    {"objects", "string", NULL, "JSON array of objects answering the webhooks' namespace listings (re-read per listing)"},
    {"kvevent-subscriber-image", "string", NULL, "image of the sidecar the Pod webhook injects"},
    {"policy-server-grpc-address", "string", NULL, "server gRPC address injected sidecars report to"},
};
static const ic_cli_t CLI = {"ic-webhook-server",
                             "the controller's admission webhooks alone, for tests and local debugging",
                             NULL, FLAGS, sizeof FLAGS / sizeof FLAGS[0]};

int main(int argc, char **argv) {
  const char *bind = "127.0.0.1:9443", *cert = NULL, *key = NULL, *objects = NULL, *image = "", *grpc = NULL;
  static const struct option opts[] = {{"bind", required_argument, 0, 'b'},
                                       {"cert", required_argument, 0, 'c'},
                                       {"key", required_argument, 0, 'k'},
                                       {"objects", required_argument, 0, 'o'},
                                       {"kvevent-subscriber-image", required_argument, 0, 'i'},
                                       {"policy-server-grpc-address", required_argument, 0, 'g'},
                                       {"help", no_argument, 0, 'h'},
                                       {"version", no_argument, 0, 'V'},
                                       {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long_only(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 'b': bind = optarg; break;
      case 'c': cert = optarg; break;
      case 'k': key = optarg; break;
      case 'o': objects = optarg; break;
      case 'i': image = optarg; break;
      case 'g': grpc = optarg; break;
      case 'h': ic_cli_usage(&CLI, stdout); return 0;
      case 'V': ic_version_print(stdout, CLI.program); return 0;
      default: return ic_cli_fail(&CLI, "flag provided but not defined or missing its value");
    }
  }
  if (optind < argc) return ic_cli_fail(&CLI, "unexpected argument: %s", argv[optind]);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* server threads inherit the mask; main waits below */
  signal(SIGPIPE, SIG_IGN);
  webhook_config_t cfg = {.bind = bind, .cert_file = cert, .key_file = key,
                          .admission = {.subscriber_image = image, .policy_server_grpc_address = grpc,
                                        .list = list_from_file, .list_ud = (void *)objects}};
  char err[512] = "";
  webhook_server_t *s = webhook_start(&cfg, err, sizeof err);
  if (!s) {
    ic_log_error("webhook_start_failed", IC_LS("error", err));
    return 1;
  }
  ic_log_info("webhook_server_started", IC_LS("version", ic_version), IC_LS("commit", ic_git_commit),
              IC_LI("port", webhook_port(s)));
  printf("listening %d\n", webhook_port(s));
  fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  webhook_stop(s);
  return 0;
}
