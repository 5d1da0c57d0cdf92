/* ic-webhook-server: serves the controller's admission webhooks (src/controller/webhook.c) without
 * the reconcilers, with namespace listings read from a JSON file — for tests and local debugging. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/log.h"
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

int main(int argc, char **argv) {
  const char *bind = "127.0.0.1:9443", *cert = NULL, *key = NULL, *objects = NULL, *image = "", *grpc = NULL;
  static const struct option opts[] = {{"bind", required_argument, 0, 'b'},
                                       {"cert", required_argument, 0, 'c'},
                                       {"key", required_argument, 0, 'k'},
                                       {"objects", required_argument, 0, 'o'},
                                       {"kvevent-subscriber-image", required_argument, 0, 'i'},
                                       {"policy-server-grpc-address", required_argument, 0, 'g'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 'b': bind = optarg; break;
      case 'c': cert = optarg; break;
      case 'k': key = optarg; break;
      case 'o': objects = optarg; break;
      case 'i': image = optarg; break;
      case 'g': grpc = optarg; break;
      default:
        fprintf(stderr,
                "usage: ic-webhook-server [--bind=127.0.0.1:9443] [--cert=tls.crt --key=tls.key] [--objects=FILE]\n"
                "       [--kvevent-subscriber-image=IMG] [--policy-server-grpc-address=ADDR]\n");
        return c == 'h' ? 0 : 2;
    }
  }
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
  printf("listening %d\n", webhook_port(s));
  fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  webhook_stop(s);
  return 0;
}
