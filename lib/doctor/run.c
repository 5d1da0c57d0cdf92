/* lib/doctor run: gathers what the checks read — the server's gRPC health, its /snapshot, /policy
 * and /probe routes (GET and HEAD only: nothing is written), the Kubernetes lists — and calls the
 * checks in their fixed order. Every failure to gather becomes a finding, never an abort. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "grpc/health/v1/health.pb-c.h"
#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/doctor.h"
#include "ic/err.h"
#include "ic/rpc.h"

#define SNAPSHOT_MAX_BODY (8u << 20) /* as the reference: /snapshot bodies up to 8 MiB */

static const ic_kube_res_t RES_BACKENDS = {"inferencecache.io", "v1alpha1", "cachebackends",
                                           "CacheBackend", true};
static const ic_kube_res_t RES_POLICIES = {"inferencecache.io", "v1alpha1", "cachepolicies",
                                           "CachePolicy", true};
static const ic_kube_res_t RES_TENANTS = {"inferencecache.io", "v1alpha1", "cachetenants",
                                          "CacheTenant", true};

/* --------------------------------------------------------------------- addresses */

/* "host:port" / "[v6]:port" / "host" -> host (without brackets) and port (0 when absent). */
static void split_host_port(const char *a, char *host, size_t hn, int *port) {
  *port = 0;
  const char *colon = NULL;
  if (a[0] == '[') {
    const char *end = strchr(a, ']');
    size_t n = end ? (size_t)(end - a - 1) : strlen(a + 1);
    snprintf(host, hn, "%.*s", (int)n, a + 1);
    if (end && end[1] == ':') *port = atoi(end + 2);
    return;
  }
  colon = strrchr(a, ':');
  if (colon && strchr(a, ':') == colon) {
    snprintf(host, hn, "%.*s", (int)(colon - a), a);
    *port = atoi(colon + 1);
  } else {
    snprintf(host, hn, "%s", a);
  }
}

static void join_host_port(char *out, size_t n, const char *host, int port) {
  if (strchr(host, ':'))
    snprintf(out, n, "[%s]:%d", host, port);
  else
    snprintf(out, n, "%s:%d", host, port);
}

/* Where the server lives when no --server-endpoint was given. 0, or an error text in err. */
/* The Service's DNS name, or its headless sibling's when there is one (it resolves to every
 * replica, warming ones included: docs/ha-fleet.md). */
static void service_host(ic_kube_t *k, const char *ns, char *host, size_t hn) {
  ic_kube_status_t st = {0};
  json_t *obj = NULL;
  bool headless =
      ic_kube_get(k, &ic_kube_res_services, ns, IC_DOCTOR_HEADLESS_SERVICE, &obj, &st) == 0;
  json_decref(obj);
  snprintf(host, hn, "%s.%s.svc", headless ? IC_DOCTOR_HEADLESS_SERVICE : IC_DOCTOR_SERVICE, ns);
}

static int discover(ic_kube_t *k, char *host, size_t hn, char *err, size_t errlen) {
  ic_kube_status_t st = {0};
  json_t *obj = NULL;
  int rc = ic_kube_get(k, &ic_kube_res_services, IC_DOCTOR_SYSTEM_NAMESPACE, IC_DOCTOR_SERVICE,
                       &obj, &st);
  json_decref(obj);
  if (rc == 0) {
    service_host(k, IC_DOCTOR_SYSTEM_NAMESPACE, host, hn);
    return 0;
  }
  if (rc != IC_ENOTFOUND) {
    snprintf(err, errlen, "get Service %s/%s: %s", IC_DOCTOR_SYSTEM_NAMESPACE, IC_DOCTOR_SERVICE,
             *st.message ? st.message : ic_strerror(rc));
    return rc;
  }
  json_t *list = NULL;
  rc = ic_kube_list(k, &ic_kube_res_services, NULL, NULL, &list, &st);
  if (rc) {
    snprintf(err, errlen, "list Services to find %s: %s", IC_DOCTOR_SERVICE,
             *st.message ? st.message : ic_strerror(rc));
    return rc;
  }
  size_t i;
  json_t *svc;
  rc = IC_ENOTFOUND;
  json_array_foreach(json_object_get(list, "items"), i, svc) {
    const char *name = ic_kube_jstr(svc, "metadata.name"),
               *ns = ic_kube_jstr(svc, "metadata.namespace");
    if (name && ns && !strcmp(name, IC_DOCTOR_SERVICE)) {
      service_host(k, ns, host, hn);
      rc = 0;
      break;
    }
  }
  json_decref(list);
  if (rc)
    snprintf(err, errlen, "no Service %s in any namespace; pass --server-endpoint",
             IC_DOCTOR_SERVICE);
  return rc;
}

/* ------------------------------------------------------------------ server probes */

static void health(ic_doctor_report_t *r, const char *target, const ic_doctor_opts_t *o) {
  ic_rpc_channel_opts_t co = {.tls_ca_file = o->tls_ca_file};
  ic_rpc_channel_t *ch = ic_rpc_channel_new(target, &co);
  if (!ch) {
    ic_doctor_check_health(r, target, "cannot create a gRPC channel (bad target or TLS file?)", 0);
    return;
  }
  ic_buf_t resp = {0};
  int status = -1;
  char *msg = NULL, err[300];
  /* HealthCheckRequest{service: ""} encodes to zero bytes. */
  int rc = ic_rpc_unary(ch, "/grpc.health.v1.Health/Check", (const uint8_t *)"", 0, o->timeout_ms,
                        &resp, &status, &msg);
  if (rc != 0) {
    snprintf(err, sizeof err, "%s", ic_strerror(rc));
    ic_doctor_check_health(r, target, err, 0);
  } else if (status != 0) {
    snprintf(err, sizeof err, "gRPC status %d: %s", status, msg ? msg : "");
    ic_doctor_check_health(r, target, err, 0);
  } else {
    Grpc__Health__V1__HealthCheckResponse *h =
        grpc__health__v1__health_check_response__unpack(NULL, resp.len, (const uint8_t *)resp.data);
    if (!h)
      ic_doctor_check_health(r, target, "undecodable HealthCheckResponse", 0);
    else
      ic_doctor_check_health(r, target, NULL, (int)h->status);
    if (h) grpc__health__v1__health_check_response__free_unpacked(h, NULL);
  }
  free(msg);
  ic_buf_free(&resp);
  ic_rpc_channel_free(ch);
}

typedef struct body {
  char *data;
  size_t len;
  bool over;
  char policy_sha[80]; /* X-Inferencecache-Policy-Sha256, "" when absent */
} body_t;

#define POLICY_HEADER "X-Inferencecache-Policy-Sha256:"

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  body_t *b = ud;
  size_t len = sz * n, hl = strlen(POLICY_HEADER);
  if (len > hl && !strncasecmp(p, POLICY_HEADER, hl)) {
    const char *v = p + hl;
    size_t vl = len - hl;
    while (vl && (*v == ' ' || *v == '\t'))
      v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
      vl--;
    snprintf(b->policy_sha, sizeof b->policy_sha, "%.*s", (int)vl, v);
  }
  return len;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  body_t *b = ud;
  size_t add = sz * n;
  if (b->len + add > SNAPSHOT_MAX_BODY) {
    b->over = true;
    return 0;
  }
  char *d = realloc(b->data, b->len + add + 1);
  if (!d) return 0;
  memcpy(d + b->len, p, add);
  b->len += add;
  d[b->len] = 0;
  b->data = d;
  return add;
}

/* One GET (head=false) or HEAD. Returns the HTTP status, 0 on a transport error (text in err). */
static long http_call(const char *url, bool head, const char *token, int timeout_ms, body_t *b,
                      char *err, size_t errlen) {
  CURL *c = curl_easy_init();
  if (!c) {
    snprintf(err, errlen, "curl init failed");
    return 0;
  }
  char ebuf[CURL_ERROR_SIZE] = "";
  struct curl_slist *hdrs = NULL;
  char auth[4200];
  if (token && *token) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    hdrs = curl_slist_append(hdrs, auth);
  }
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOBODY, head ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, b);
  CURLcode cr = curl_easy_perform(c);
  long code = 0;
  if (cr == CURLE_OK || (cr == CURLE_WRITE_ERROR && b->over))
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (b->over)
    snprintf(err, errlen, "body over %u bytes", SNAPSHOT_MAX_BODY);
  else if (cr != CURLE_OK)
    snprintf(err, errlen, "%s", *ebuf ? ebuf : curl_easy_strerror(cr));
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
  return code;
}

/* Returns the parsed /snapshot body for the index check (NULL when unusable); the policy header
 * into policy_sha (80 bytes; "" when absent) when given. */
static json_t *snapshot(ic_doctor_report_t *r, const char *base, const ic_doctor_opts_t *o,
                        char *policy_sha) {
  char url[600], err[CURL_ERROR_SIZE + 64] = "";
  snprintf(url, sizeof url, "%s/snapshot", base);
  body_t b = {0};
  long code = http_call(url, false, o->token, o->timeout_ms, &b, err, sizeof err);
  json_t *doc = NULL;
  if (code == 200 && b.over) {
    ic_doctor_check_snapshot(r, url, 200, err, NULL, 0, o->token && *o->token);
  } else {
    ic_doctor_check_snapshot(r, url, code, err, b.data, b.len, o->token && *o->token);
    if (code == 200 && b.data) doc = json_loadb(b.data, b.len, 0, NULL);
  }
  if (policy_sha) snprintf(policy_sha, sizeof b.policy_sha, "%s", b.policy_sha);
  free(b.data);
  return doc;
}

static void route(ic_doctor_report_t *r, const char *base, const char *path,
                  const ic_doctor_opts_t *o) {
  char url[600], err[CURL_ERROR_SIZE + 64] = "";
  snprintf(url, sizeof url, "%s%s", base, path);
  body_t b = {0};
  long code = http_call(url, true, NULL, o->timeout_ms, &b, err, sizeof err);
  free(b.data);
  ic_doctor_check_route(r, path, url, code, err);
}

/* ----------------------------------------------------------------- several replicas */

#define MAX_REPLICAS 64

typedef struct replica_addrs {
  char ip[MAX_REPLICAS][64]; /* "10.0.0.1" or "[fd00::1]": ready to join with a port */
  size_t n;
} replica_addrs_t;

/* Every address `host` resolves to (IPv4 when there are any, as the subscriber does: a
 * dual-stack headless Service lists each pod twice), deduplicated; 0 when it does not resolve. */
static size_t resolve_all(const char *host, replica_addrs_t *out) {
  out->n = 0;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
  if (getaddrinfo(host, NULL, &hints, &ai) != 0) return 0;
  bool v4 = false;
  for (struct addrinfo *a = ai; a; a = a->ai_next)
    v4 = v4 || a->ai_family == AF_INET;
  for (struct addrinfo *a = ai; a && out->n < MAX_REPLICAS; a = a->ai_next) {
    char ip[INET6_ADDRSTRLEN], text[64];
    if (a->ai_family == AF_INET) {
      inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, ip, sizeof ip);
      snprintf(text, sizeof text, "%s", ip);
    } else if (a->ai_family == AF_INET6 && !v4) {
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, ip, sizeof ip);
      snprintf(text, sizeof text, "[%s]", ip);
    } else {
      continue;
    }
    bool dup = false;
    for (size_t i = 0; i < out->n && !dup; i++)
      dup = !strcmp(out->ip[i], text);
    if (!dup) snprintf(out->ip[out->n++], sizeof out->ip[0], "%s", text);
  }
  freeaddrinfo(ai);
  return out->n;
}

/* The port of "http://host:port[/...]" / "host:port" (0 when absent). */
static int url_port(const char *url) {
  const char *h = strstr(url, "://");
  h = h ? h + 3 : url;
  const char *end = strchr(h, '/');
  char hp[300];
  snprintf(hp, sizeof hp, "%.*s", end ? (int)(end - h) : (int)strlen(h), h);
  char host[300];
  int port = 0;
  split_host_port(hp, host, sizeof host, &port);
  return port;
}

/* Every replica's health, /snapshot, /policy, /probe and /readyz, then their agreement. Returns
 * the /snapshot body of the replica indexing the most prefixes, for the index check. */
static json_t *replicas(ic_doctor_report_t *r, const replica_addrs_t *ra, int grpc_port,
                        int http_port, const ic_doctor_opts_t *o) {
  ic_doctor_replica_t reps[MAX_REPLICAS];
  char addr[MAX_REPLICAS][80], policy[MAX_REPLICAS][80], text[MAX_REPLICAS][512];
  json_t *best = NULL;
  long long most = -1;
  for (size_t i = 0; i < ra->n; i++) {
    char base[160], url[200], err[CURL_ERROR_SIZE + 64] = "";
    snprintf(addr[i], sizeof addr[i], "%s:%d", ra->ip[i], grpc_port);
    snprintf(base, sizeof base, "http://%s:%d", ra->ip[i], http_port);
    reps[i] = (ic_doctor_replica_t){.addr = addr[i], .readyz_text = text[i]};
    health(r, addr[i], o);
    json_t *doc = snapshot(r, base, o, policy[i]);
    route(r, base, "/policy", o);
    route(r, base, "/probe", o);
    json_t *tp = doc ? json_object_get(doc, "totalPrefixes") : NULL;
    if (json_is_integer(tp)) {
      reps[i].have_snapshot = true;
      reps[i].total_prefixes = json_integer_value(tp);
      reps[i].policy_sha256 = *policy[i] ? policy[i] : NULL;
    }
    if (doc && reps[i].total_prefixes > most) {
      json_decref(best);
      best = json_incref(doc);
      most = reps[i].total_prefixes;
    }
    json_decref(doc);
    snprintf(url, sizeof url, "http://%s:%d/readyz", ra->ip[i],
             o->readyz_port > 0 ? o->readyz_port : IC_DOCTOR_READYZ_PORT);
    body_t b = {0};
    reps[i].readyz_http = http_call(url, false, NULL, o->timeout_ms, &b, err, sizeof err);
    snprintf(text[i], sizeof text[i], "%s", reps[i].readyz_http ? (b.data ? b.data : "") : err);
    free(b.data);
  }
  ic_doctor_check_replicas(r, reps, ra->n);
  return best;
}

/* TCP reachability of a remote-storage endpoint ("host:port", an http(s):// prefix ignored). */
static int dial(void *ud, const char *endpoint, char *err, size_t errlen) {
  int timeout_ms = *(const int *)ud;
  for (const char *s = "http://"; s; s = strcmp(s, "http://") ? NULL : "https://")
    if (!strncmp(endpoint, s, strlen(s))) endpoint += strlen(s);
  char host[256], port[16];
  int p;
  split_host_port(endpoint, host, sizeof host, &p);
  if (!*host || p <= 0 || p > 65535) {
    snprintf(err, errlen, "not a host:port address");
    return IC_EINVAL;
  }
  snprintf(port, sizeof port, "%d", p);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
  int g = getaddrinfo(host, port, &hints, &ai);
  if (g) {
    snprintf(err, errlen, "%s", gai_strerror(g));
    return IC_EIO;
  }
  int rc = IC_EIO;
  snprintf(err, errlen, "no address");
  for (struct addrinfo *a = ai; a && rc; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
      rc = 0;
    else if (errno == EINPROGRESS) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      int so = ETIMEDOUT;
      socklen_t sl = sizeof so;
      if (poll(&pfd, 1, timeout_ms) == 1) getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
      if (so == 0)
        rc = 0;
      else
        snprintf(err, errlen, "%s", strerror(so));
    } else {
      snprintf(err, errlen, "%s", strerror(errno));
    }
    close(fd);
  }
  freeaddrinfo(ai);
  return rc;
}

/* -------------------------------------------------------------------- cluster reads */

/* The List's items (a new reference), or NULL after reporting API001 for this kind. */
static json_t *list(ic_doctor_report_t *r, const ic_doctor_opts_t *o, const ic_kube_res_t *res,
                    const char *check) {
  ic_kube_status_t st = {0};
  json_t *l = NULL;
  const char *ns = o->namespace && *o->namespace ? o->namespace : NULL;
  int rc = ic_kube_list(o->kube, res, ns, NULL, &l, &st);
  json_t *items = NULL;
  if (!rc) { /* "items": null is an empty list */
    items = json_object_get(l, "items");
    items = json_is_array(items) ? json_incref(items) : json_array();
  }
  json_decref(l);
  if (rc) {
    bool crd = res->group && !strcmp(res->group, "inferencecache.io");
    ic_doctor_add(r, "API001", IC_DOCTOR_FAIL, check, res->kind,
                  "could not list %s objects%s%s: %s%s", res->kind, ns ? " in namespace " : "",
                  ns ? ns : "", *st.message ? st.message : ic_strerror(rc),
                  rc == IC_EPERM              ? " (RBAC: the caller needs list on this resource)"
                  : rc == IC_ENOTFOUND && crd ? " (are the inferencecache.io CRDs installed?)"
                                              : "");
  }
  return items;
}

/* Both Event APIs: the Pod webhook and the controller write events.k8s.io/v1, older tools core/v1.
 */
static json_t *events(ic_doctor_report_t *r, const ic_doctor_opts_t *o, const char *check) {
  json_t *modern = list(r, o, &ic_kube_res_events, check);
  if (!modern) return NULL;
  json_t *core = list(r, o, &ic_kube_res_core_events, check);
  if (!core) {
    json_decref(modern);
    return NULL;
  }
  json_array_extend(modern, core);
  json_decref(core);
  return modern;
}

static bool any_selector(json_t *backends) {
  size_t i;
  json_t *cb;
  json_array_foreach(backends, i, cb) {
    json_t *ml = ic_kube_jget(cb, "spec.engineSelector.matchLabels");
    if (json_is_object(ml) && json_object_size(ml)) return true;
  }
  return false;
}

int ic_doctor_run(const ic_doctor_opts_t *in, ic_doctor_report_t *r) {
  ic_doctor_opts_t o = *in;
  if (o.timeout_ms <= 0) o.timeout_ms = 10000;
  json_t *snap = NULL;

  if (!o.config_only) {
    char host[256] = "", target[300] = "", base[400] = "", err[600] = "";
    int port = IC_DOCTOR_GRPC_PORT;
    int rc = 0;
    if (o.grpc_target && *o.grpc_target) {
      split_host_port(o.grpc_target, host, sizeof host, &port);
      if (!port) port = IC_DOCTOR_GRPC_PORT;
    } else if (o.kube) {
      rc = discover(o.kube, host, sizeof host, err, sizeof err);
    } else {
      snprintf(err, sizeof err, "no Kubernetes client to look up the Service with");
      rc = IC_EINVAL;
    }
    if (rc) {
      ic_doctor_add(r, "SV001", IC_DOCTOR_FAIL, IC_DOCTOR_CHECK_SERVER, NULL,
                    "could not find the server: %s — pass --server-endpoint, or check the %s "
                    "Service and the caller's RBAC to read Services",
                    err, IC_DOCTOR_SERVICE);
    } else {
      join_host_port(target, sizeof target, host, port);
      if (o.http_base && *o.http_base) {
        snprintf(base, sizeof base, "%s%s", strstr(o.http_base, "://") ? "" : "http://",
                 o.http_base);
        size_t bl = strlen(base);
        if (bl && base[bl - 1] == '/') base[bl - 1] = 0;
      } else {
        char hp[300];
        join_host_port(hp, sizeof hp, host, IC_DOCTOR_HTTP_PORT);
        snprintf(base, sizeof base, "http://%s", hp);
      }
      replica_addrs_t *ra = calloc(1, sizeof *ra);
      if (ra && resolve_all(host, ra) > 1) {
        int hp = url_port(base);
        snap = replicas(r, ra, port, hp ? hp : IC_DOCTOR_HTTP_PORT, &o);
      } else {
        health(r, target, &o);
        snap = snapshot(r, base, &o, NULL);
        route(r, base, "/policy", &o);
        route(r, base, "/probe", &o);
      }
      free(ra);
    }
  }

  if (!o.kube) { /* the caller reported why; the server probes above still ran */
    json_decref(snap);
    return 0;
  }
  int64_t now = ic_clock_realtime_us();
  json_t *backends = list(r, &o, &RES_BACKENDS, IC_DOCTOR_CHECK_BACKEND);
  json_t *pods = NULL, *evs = NULL;
  if (backends && any_selector(backends))
    pods = list(r, &o, &ic_kube_res_pods, IC_DOCTOR_CHECK_BACKEND);
  if (backends)
    ic_doctor_check_backends(r, backends, pods, now, o.config_only ? NULL : dial, &o.timeout_ms);
  evs = events(r, &o, pods ? IC_DOCTOR_CHECK_INJECTION : IC_DOCTOR_CHECK_ORPHAN);
  if (backends && pods && evs) ic_doctor_check_injection(r, backends, pods, evs);
  if (backends && pods) ic_doctor_check_index(r, backends, pods, snap);
  if (evs) ic_doctor_check_orphans(r, evs, now);
  json_t *tenants = list(r, &o, &RES_TENANTS, IC_DOCTOR_CHECK_TENANT);
  if (tenants) ic_doctor_check_tenants(r, tenants);
  json_t *policies = list(r, &o, &RES_POLICIES, IC_DOCTOR_CHECK_COVERAGE);
  if (backends && policies) ic_doctor_check_coverage(r, backends, policies, tenants);

  json_decref(snap);
  json_decref(backends);
  json_decref(pods);
  json_decref(evs);
  json_decref(tenants);
  json_decref(policies);
  return 0;
}
