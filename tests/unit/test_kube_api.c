/* lib/kube against the test Kubernetes API server (tests/kubeapi/kubeapi.py, a real HTTP server
 * run by Debian's python3): verbs and error mapping, status subresource separation, conflicts,
 * merge/JSON/apply patches, retries on 5xx, watch with bookmarks and 410, the watcher's relist,
 * Lease leader election, TokenReview, Events, token-file rotation. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ic/kube.h"

static pid_t api_pid;
static int api_port;
static ic_kube_t *k;
static const ic_kube_res_t cbres = {"inferencecache.io", "v1alpha1", "cachebackends",
                                    "CacheBackend", true};

static void start_api(void) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  api_pid = fork();
  cr_assert_geq(api_pid, 0);
  if (api_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive a crashed test */
    dup2(fds[1], 1);
    close(fds[0]);
    execl("/usr/bin/python3", "python3", IC_TEST_DATA_DIR "/../kubeapi/kubeapi.py", (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[64] = "";
  cr_assert_not_null(fgets(line, sizeof line, f), "kubeapi did not start");
  fclose(f);
  cr_assert_eq(sscanf(line, "PORT %d", &api_port), 1);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", api_port);
  ic_kube_config_t c = {.server = url, .namespace = "ns"};
  k = ic_kube_new(&c);
  cr_assert_not_null(k);
  ic_kube_set_retry(k, 3, 10);
}

static void stop_api(void) {
  ic_kube_free(k);
  if (api_pid > 0) {
    kill(api_pid, SIGTERM);
    waitpid(api_pid, NULL, 0);
  }
}

TestSuite(kube_api, .init = start_api, .fini = stop_api, .timeout = 60);

static json_t *cb_obj(const char *name, const char *endpoint) {
  return json_pack("{s:s,s:s,s:{s:s},s:{s:s,s:s},s:{s:s}}", "apiVersion",
                   "inferencecache.io/v1alpha1", "kind", "CacheBackend", "metadata", "name", name,
                   "spec", "type", "External", "endpoint", endpoint, "status", "health", "Ready");
}

Test(kube_api, create_get_conflict_and_status_separation) {
  json_t *obj = cb_obj("a", "x:1"), *out = NULL;
  ic_kube_status_t st;
  cr_assert_eq(ic_kube_create(k, &cbres, "ns", obj, &out, &st), 0);
  cr_assert_null(ic_kube_jget(out, "status"), "create ignores status");
  cr_assert_not_null(ic_kube_jstr(out, "metadata.uid"));
  cr_assert_eq(ic_kube_create(k, &cbres, "ns", obj, NULL, &st), IC_EEXIST);
  cr_assert_eq(st.http, 409);
  cr_assert_str_eq(st.reason, "AlreadyExists");
  /* Stale resourceVersion -> 409 Conflict. */
  json_t *stale = json_deep_copy(out);
  json_object_set_new(json_object_get(stale, "metadata"), "resourceVersion", json_string("1"));
  cr_assert_eq(ic_kube_update(k, &cbres, "ns", "a", NULL, stale, NULL, &st), IC_KUBE_CONFLICT);
  /* Status writes through /status only; spec writes do not touch status. */
  json_t *withst = json_deep_copy(out);
  json_object_set_new(withst, "status", json_pack("{s:s}", "endpoint", "x:1"));
  json_t *after = NULL;
  cr_assert_eq(ic_kube_update(k, &cbres, "ns", "a", "status", withst, &after, &st), 0);
  cr_assert_str_eq(ic_kube_jstr(after, "status.endpoint"), "x:1");
  cr_assert_eq(json_integer_value(ic_kube_jget(after, "metadata.generation")), 1);
  json_t *p = json_pack("{s:{s:s},s:{s:s}}", "spec", "endpoint", "y:2", "status", "endpoint", "z");
  json_t *patched = NULL;
  cr_assert_eq(ic_kube_patch(k, &cbres, "ns", "a", NULL, IC_KUBE_PATCH_MERGE, p, NULL, false,
                             &patched, &st),
               0);
  cr_assert_str_eq(ic_kube_jstr(patched, "spec.endpoint"), "y:2");
  cr_assert_str_eq(ic_kube_jstr(patched, "status.endpoint"), "x:1");
  cr_assert_eq(json_integer_value(ic_kube_jget(patched, "metadata.generation")), 2);
  json_t *got = NULL;
  cr_assert_eq(ic_kube_get(k, &cbres, "ns", "nope", &got, &st), IC_ENOTFOUND);
  cr_assert_null(got);
  json_decref(obj), json_decref(out), json_decref(stale), json_decref(withst);
  json_decref(after), json_decref(p), json_decref(patched);
}

static int set_endpoint(void *ud, json_t *obj) {
  int *calls = ud;
  (*calls)++;
  json_object_set_new(json_object_get(obj, "spec"), "endpoint", json_string("retry:1"));
  return 0;
}

static int post_fault(const char *json) {
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "curl -s -o /dev/null -X POST -d '%s' http://127.0.0.1:%d/_test/faults", json, api_port);
  return system(cmd);
}

Test(kube_api, update_retry_rereads_on_conflict_and_5xx_is_retried) {
  json_t *obj = cb_obj("r", "x:1");
  cr_assert_eq(ic_kube_create(k, &cbres, "ns", obj, NULL, NULL), 0);
  cr_assert_eq(post_fault("{\"method\":\"PUT\",\"path_contains\":\"/cachebackends/r\","
                          "\"status\":409,\"reason\":\"Conflict\",\"count\":2}"),
               0);
  int calls = 0;
  json_t *out = NULL;
  cr_assert_eq(ic_kube_update_retry(k, &cbres, "ns", "r", NULL, set_endpoint, &calls, &out, NULL), 0);
  cr_assert_eq(calls, 3);
  cr_assert_str_eq(ic_kube_jstr(out, "spec.endpoint"), "retry:1");
  cr_assert_eq(post_fault("{\"method\":\"GET\",\"path_contains\":\"/cachebackends/r\","
                          "\"status\":503,\"count\":2}"),
               0);
  uint64_t before = ic_kube_retries(k);
  json_t *got = NULL;
  cr_assert_eq(ic_kube_get(k, &cbres, "ns", "r", &got, NULL), 0);
  cr_assert_eq(ic_kube_retries(k) - before, 2);
  json_decref(obj), json_decref(out), json_decref(got);
}

Test(kube_api, json_patch_apply_and_delete) {
  json_t *obj = cb_obj("j", "x:1");
  cr_assert_eq(ic_kube_create(k, &cbres, "ns", obj, NULL, NULL), 0);
  json_t *jp = json_pack("[{s:s,s:s,s:s}]", "op", "replace", "path", "/spec/endpoint", "value", "j:2");
  json_t *out = NULL;
  cr_assert_eq(ic_kube_patch(k, &cbres, "ns", "j", NULL, IC_KUBE_PATCH_JSON, jp, NULL, false, &out,
                             NULL),
               0);
  cr_assert_str_eq(ic_kube_jstr(out, "spec.endpoint"), "j:2");
  json_decref(out);
  /* Server-side apply: creates, merges, and drops fields the manager stopped applying. */
  json_t *ap = json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:{s:s,s:s}}", "apiVersion", "v1", "kind",
                         "ConfigMap", "metadata", "name", "cm", "labels", "a", "1", "data", "k1",
                         "v1", "k2", "v2");
  const ic_kube_res_t cm = {"", "v1", "configmaps", "ConfigMap", true};
  cr_assert_eq(ic_kube_apply(k, &cm, "ns", ap, "test-manager", true, &out, NULL), 0);
  cr_assert_str_eq(ic_kube_jstr(out, "data.k2"), "v2");
  json_decref(out);
  json_object_del(json_object_get(ap, "data"), "k2");
  cr_assert_eq(ic_kube_apply(k, &cm, "ns", ap, "test-manager", true, &out, NULL), 0);
  cr_assert_null(ic_kube_jget(out, "data.k2"));
  cr_assert_str_eq(ic_kube_jstr(out, "data.k1"), "v1");
  json_decref(out);
  cr_assert_eq(ic_kube_apply(k, &cm, "ns", ap, NULL, false, NULL, NULL), IC_EINVAL);
  cr_assert_eq(ic_kube_delete(k, &cbres, "ns", "j", "wrong-uid", NULL), IC_KUBE_CONFLICT);
  cr_assert_eq(ic_kube_delete(k, &cbres, "ns", "j", NULL, NULL), 0);
  cr_assert_eq(ic_kube_delete(k, &cbres, "ns", "j", NULL, NULL), IC_ENOTFOUND);
  json_decref(obj), json_decref(jp), json_decref(ap);
}

typedef struct {
  int added, modified, deleted;
} counts_t;

static int count_ev(void *ud, const char *type, json_t *obj) {
  (void)obj;
  counts_t *c = ud;
  if (strcmp(type, "ADDED") == 0) c->added++;
  if (strcmp(type, "MODIFIED") == 0) c->modified++;
  if (strcmp(type, "DELETED") == 0) c->deleted++;
  return 0;
}

Test(kube_api, watch_resumes_from_version_and_reports_gone) {
  json_t *obj = cb_obj("w", "x:1"), *list = NULL;
  cr_assert_eq(ic_kube_list(k, &cbres, NULL, NULL, &list, NULL), 0);
  char *rv = strdup(ic_kube_jstr(list, "metadata.resourceVersion"));
  json_decref(list);
  cr_assert_eq(ic_kube_create(k, &cbres, "ns", obj, NULL, NULL), 0);
  cr_assert_eq(ic_kube_delete(k, &cbres, "ns", "w", NULL, NULL), 0);
  counts_t c = {0};
  /* The stream ends after timeoutSeconds; events since rv are replayed first. */
  cr_assert_eq(ic_kube_watch(k, &cbres, NULL, NULL, &rv, 2, count_ev, &c, NULL, NULL), 0);
  cr_assert_eq(c.added, 1);
  cr_assert_eq(c.deleted, 1);
  cr_assert_not_null(rv);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "curl -s -o /dev/null -X POST -d '{}' http://127.0.0.1:%d/_test/compact",
           api_port);
  cr_assert_eq(system(cmd), 0);
  ic_kube_status_t st;
  cr_assert_eq(ic_kube_watch(k, &cbres, NULL, NULL, &rv, 2, count_ev, &c, NULL, &st), IC_KUBE_GONE);
  cr_assert_eq(st.http, 410);
  free(rv);
  json_decref(obj);
}

typedef struct {
  pthread_mutex_t mu;
  int sync, added;
} wcount_t;

static void on_w(void *ud, const char *type, json_t *obj) {
  (void)obj;
  wcount_t *c = ud;
  pthread_mutex_lock(&c->mu);
  if (strcmp(type, "SYNC") == 0) c->sync++;
  if (strcmp(type, "ADDED") == 0) c->added++;
  pthread_mutex_unlock(&c->mu);
}

static int wget(wcount_t *c, int which) {
  pthread_mutex_lock(&c->mu);
  int v = which ? c->added : c->sync;
  pthread_mutex_unlock(&c->mu);
  return v;
}

Test(kube_api, watcher_lists_watches_and_relists_after_gone) {
  json_t *a = cb_obj("wa", "x:1"), *b = cb_obj("wb", "x:2");
  cr_assert_eq(ic_kube_create(k, &cbres, "ns", a, NULL, NULL), 0);
  wcount_t c = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
  ic_kube_watcher_t *w = ic_kube_watcher_start(k, &cbres, NULL, NULL, on_w, &c);
  for (int i = 0; i < 200 && !ic_kube_watcher_synced(w); i++) usleep(20000);
  cr_assert(ic_kube_watcher_synced(w));
  cr_assert_eq(wget(&c, 0), 1);
  usleep(300000); /* watch established */
  cr_assert_eq(ic_kube_create(k, &cbres, "ns", b, NULL, NULL), 0);
  for (int i = 0; i < 200 && wget(&c, 1) < 1; i++) usleep(20000);
  cr_assert_eq(wget(&c, 1), 1);
  char cmd[256];
  snprintf(cmd, sizeof cmd,
           "curl -s -o /dev/null -X POST -d '{}' http://127.0.0.1:%d/_test/compact && "
           "curl -s -o /dev/null -X POST -d '{}' http://127.0.0.1:%d/_test/close-watches",
           api_port, api_port);
  cr_assert_eq(system(cmd), 0);
  for (int i = 0; i < 300 && ic_kube_watcher_relists(w) < 2; i++) usleep(20000);
  cr_assert_geq(ic_kube_watcher_relists(w), 2);
  for (int i = 0; i < 200 && wget(&c, 0) < 3; i++) usleep(20000);
  cr_assert_eq(wget(&c, 0), 3); /* 1 + both objects again */
  ic_kube_watcher_stop(w);
  json_decref(a), json_decref(b);
}

static void started(void *ud) { (*(int *)ud)++; }

Test(kube_api, lease_election_single_holder_and_release) {
  int sa = 0, sb = 0;
  ic_kube_elector_cfg_t ca = {.namespace = "ns", .name = "lock", .identity = "a",
                              .lease_duration_ms = 3000, .renew_deadline_ms = 2000,
                              .retry_period_ms = 100, .on_started = started, .ud = &sa};
  ic_kube_elector_cfg_t cb = ca;
  cb.identity = "b";
  cb.ud = &sb;
  ic_kube_elector_t *ea = ic_kube_elector_start(k, &ca);
  for (int i = 0; i < 100 && !ic_kube_elector_is_leader(ea); i++) usleep(20000);
  cr_assert(ic_kube_elector_is_leader(ea));
  ic_kube_elector_t *eb = ic_kube_elector_start(k, &cb);
  usleep(800000);
  cr_assert_not(ic_kube_elector_is_leader(eb), "lease is held and renewed by a");
  ic_kube_elector_stop(ea, true);
  for (int i = 0; i < 100 && !ic_kube_elector_is_leader(eb); i++) usleep(20000);
  cr_assert(ic_kube_elector_is_leader(eb), "released lease is taken at once");
  json_t *lease = NULL;
  cr_assert_eq(ic_kube_get(k, &ic_kube_res_leases, "ns", "lock", &lease, NULL), 0);
  cr_assert_str_eq(ic_kube_jstr(lease, "spec.holderIdentity"), "b");
  cr_assert_eq(json_integer_value(ic_kube_jget(lease, "spec.leaseTransitions")), 1);
  json_decref(lease);
  ic_kube_elector_stop(eb, false);
  cr_assert_eq(sa, 1);
  cr_assert_eq(sb, 1);
}

Test(kube_api, token_review_and_events) {
  char cmd[256];
  snprintf(cmd, sizeof cmd,
           "curl -s -o /dev/null -X POST -d '{\"tok\":{\"username\":\"sa:x\",\"audiences\":"
           "[\"aud\"]}}' http://127.0.0.1:%d/_test/tokens",
           api_port);
  cr_assert_eq(system(cmd), 0);
  bool ok = false;
  char *user = NULL, *err = NULL;
  cr_assert_eq(ic_kube_token_review(k, "tok", "aud", &ok, &user, &err, NULL), 0);
  cr_assert(ok);
  cr_assert_str_eq(user, "sa:x");
  free(user), free(err);
  cr_assert_eq(ic_kube_token_review(k, "tok", "other", &ok, &user, &err, NULL), 0);
  cr_assert_not(ok);
  cr_assert_not_null(err);
  free(user), free(err);
  json_t *obj = cb_obj("e", "x:1"), *out = NULL;
  cr_assert_eq(ic_kube_create(k, &cbres, "ns", obj, &out, NULL), 0);
  cr_assert_eq(ic_kube_event(k, "cachebackend-controller", "me", out, "Warning", "BackendDegraded",
                             "note"),
               0);
  json_t *evs = NULL;
  cr_assert_eq(ic_kube_list(k, &ic_kube_res_events, "ns", NULL, &evs, NULL), 0);
  json_t *ev = json_array_get(json_object_get(evs, "items"), 0);
  cr_assert_str_eq(ic_kube_jstr(ev, "reason"), "BackendDegraded");
  cr_assert_str_eq(ic_kube_jstr(ev, "action"), "BackendDegraded");
  cr_assert_str_eq(ic_kube_jstr(ev, "regarding.name"), "e");
  cr_assert_eq(strncmp(ic_kube_jstr(ev, "metadata.name"), "e.", 2), 0); /* generateName */
  json_decref(evs), json_decref(obj), json_decref(out);
}

Test(kube_api, token_file_is_reread_on_every_request) {
  /* An API server that requires a token; the file changes between calls (rotation). */
  char dir[] = "/tmp/ic-kube-tok-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/token", dir);
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    dup2(fds[1], 1);
    close(fds[0]);
    execl("/usr/bin/python3", "python3", IC_TEST_DATA_DIR "/../kubeapi/kubeapi.py", "--token",
          "new-token", (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[64] = "";
  int port = 0;
  cr_assert_not_null(fgets(line, sizeof line, f));
  fclose(f);
  sscanf(line, "PORT %d", &port);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
  FILE *t = fopen(path, "w");
  fputs("old-token\n", t);
  fclose(t);
  ic_kube_config_t c = {.server = url, .token_file = path};
  ic_kube_t *kk = ic_kube_new(&c);
  json_t *out = NULL;
  cr_assert_eq(ic_kube_list(kk, &cbres, NULL, NULL, &out, NULL), IC_EPERM);
  t = fopen(path, "w");
  fputs("  new-token\n", t);
  fclose(t);
  cr_assert_eq(ic_kube_list(kk, &cbres, NULL, NULL, &out, NULL), 0);
  json_decref(out);
  ic_kube_free(kk);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  unlink(path);
  rmdir(dir);
}

/* HTTPS with a private CA, the in-cluster way: KUBERNETES_SERVICE_HOST/PORT plus a
 * service-account directory holding token, ca.crt and namespace. */
Test(kube_api, in_cluster_https_with_ca_and_token) {
  char dir[] = "/tmp/ic-kube-tls-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
           "-addext subjectAltName=IP:127.0.0.1 -keyout %s/tls.key -out %s/ca.crt >/dev/null 2>&1 "
           "&& printf 'sa-token\\n' > %s/token && printf 'team-a' > %s/namespace",
           dir, dir, dir, dir);
  cr_assert_eq(system(cmd), 0, "openssl failed");
  char cert[128], key[128];
  snprintf(cert, sizeof cert, "%s/ca.crt", dir);
  snprintf(key, sizeof key, "%s/tls.key", dir);
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    dup2(fds[1], 1);
    close(fds[0]);
    execl("/usr/bin/python3", "python3", IC_TEST_DATA_DIR "/../kubeapi/kubeapi.py", "--token",
          "sa-token", "--tls-cert", cert, "--tls-key", key, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[64] = "";
  int port = 0;
  cr_assert_not_null(fgets(line, sizeof line, f));
  fclose(f);
  sscanf(line, "PORT %d", &port);
  char ports[16];
  snprintf(ports, sizeof ports, "%d", port);
  setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", ports, 1);
  ic_kube_config_t c;
  cr_assert_eq(ic_kube_config_in_cluster(dir, &c), 0);
  cr_assert_str_eq(c.namespace, "team-a");
  ic_kube_t *kk = ic_kube_new(&c);
  json_t *out = NULL;
  cr_assert_eq(ic_kube_list(kk, &cbres, "team-a", NULL, &out, NULL), 0);
  cr_assert_str_eq(ic_kube_jstr(out, "kind"), "CacheBackendList");
  json_decref(out);
  ic_kube_free(kk);
  /* Without the CA the server is not trusted; with insecure it is. */
  free(c.ca_file);
  c.ca_file = NULL;
  kk = ic_kube_new(&c);
  ic_kube_set_retry(kk, 1, 0);
  cr_assert_eq(ic_kube_list(kk, &cbres, "team-a", NULL, &out, NULL), IC_EIO);
  ic_kube_free(kk);
  c.insecure = true;
  kk = ic_kube_new(&c);
  cr_assert_eq(ic_kube_list(kk, &cbres, "team-a", NULL, &out, NULL), 0);
  json_decref(out);
  ic_kube_free(kk);
  ic_kube_config_free(&c);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}
