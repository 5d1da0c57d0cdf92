/* `inferencecache doctor` (lib/doctor): a read-only preflight of an installation. Findings with
 * stable codes (docs/doctor.md), the OK < INFO < WARN < FAIL ladder and the exit code it maps to,
 * the three renderings (human, json, table), the checks themselves and the run that gathers what
 * they read (Kubernetes objects through lib/kube, the server's gRPC health and HTTP routes).
 *
 * The checks are split in two so they are testable without a cluster: ic_doctor_check_* are pure
 * functions over JSON the caller gathered (API lists, the /snapshot body) and a clock value;
 * ic_doctor_run() does the I/O and calls them in the fixed order the reference uses.
 * Ownership: a report owns copies of everything added to it; json_t inputs are borrowed. */
#ifndef IC_DOCTOR_H
#define IC_DOCTOR_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ic/kube.h"

typedef enum {
  IC_DOCTOR_OK = 0, /* healthy; never changes the exit code */
  IC_DOCTOR_INFO,   /* advisory (a default applies); never changes the exit code */
  IC_DOCTOR_WARN,   /* likely misconfiguration: exit 1 */
  IC_DOCTOR_FAIL,   /* a component is down or unreadable: exit 2 */
} ic_doctor_status_t;

/* "OK", "INFO", "WARN", "FAIL" ("UNKNOWN" for anything else). */
const char *ic_doctor_status_name(ic_doctor_status_t s);

typedef struct ic_doctor_finding {
  char *code; /* stable identifier, e.g. "CB002" */
  ic_doctor_status_t status;
  char *check;    /* check group, e.g. "CacheBackendHealth" */
  char *resource; /* "kind/namespace/name", "host:port", a URL; "" for cluster-wide findings */
  char *message;  /* what is wrong and what to do */
} ic_doctor_finding_t;

typedef struct ic_doctor_report {
  ic_doctor_finding_t *items; /* emission order */
  size_t len, cap;
  bool oom; /* an add failed for lack of memory: the report is incomplete (rendered as FAIL) */
} ic_doctor_report_t;

void ic_doctor_report_init(ic_doctor_report_t *r);
void ic_doctor_report_free(ic_doctor_report_t *r);
/* Appends a finding (every string copied; resource may be NULL). */
void ic_doctor_add(ic_doctor_report_t *r, const char *code, ic_doctor_status_t status,
                   const char *check, const char *resource, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
ic_doctor_status_t ic_doctor_worst(const ic_doctor_report_t *r); /* OK for an empty report */
/* 2 if any FAIL, 1 if any WARN, else 0. */
int ic_doctor_exit_code(const ic_doctor_report_t *r);
/* counts[status] for the four statuses. */
void ic_doctor_counts(const ic_doctor_report_t *r, size_t counts[4]);
/* Number of findings with this code (tests, scripts). */
size_t ic_doctor_count_code(const ic_doctor_report_t *r, const char *code);

typedef enum { IC_DOCTOR_HUMAN = 0, IC_DOCTOR_JSON, IC_DOCTOR_TABLE } ic_doctor_format_t;
/* "human" | "json" | "table"; IC_EINVAL otherwise. */
int ic_doctor_parse_format(const char *s, ic_doctor_format_t *out);
/* Writes the report: human = sections FAIL, WARN, INFO, OK and a summary line (ANSI colour when
 * `color`); json = {"summary":{ok,info,warn,fail,exitCode},"findings":[...]} indented by 2;
 * table = one aligned row per finding. 0 or IC_EIO (write failed) / IC_ENOMEM. */
int ic_doctor_render(const ic_doctor_report_t *r, ic_doctor_format_t fmt, bool color, FILE *out);

/* ---- checks over gathered data (pure: no I/O) ------------------------------------------------ */

/* Check group names as they appear in findings. */
#define IC_DOCTOR_CHECK_SERVER "ServerReachability"
#define IC_DOCTOR_CHECK_SNAPSHOT "SnapshotReachability"
#define IC_DOCTOR_CHECK_POLICY "PolicyReachability"
#define IC_DOCTOR_CHECK_PROBE "ProbeReachability"
#define IC_DOCTOR_CHECK_BACKEND "CacheBackendHealth"
#define IC_DOCTOR_CHECK_INJECTION "EnginePodInjectionAudit"
#define IC_DOCTOR_CHECK_INDEX "IndexParticipation"
#define IC_DOCTOR_CHECK_ORPHAN "OrphanPodCheck"
#define IC_DOCTOR_CHECK_TENANT "CacheTenantHealth"
#define IC_DOCTOR_CHECK_COVERAGE "CachePolicyCoverage"
#define IC_DOCTOR_CHECK_REPLICAS "ReplicaAgreement"

#define IC_DOCTOR_STALE_WINDOW_US (120 * 1000000LL)        /* lastEventAt older than 2 min */
#define IC_DOCTOR_ORPHAN_WINDOW_US (24 * 3600 * 1000000LL) /* orphan Events of the last 24 h */

/* The outcome of a TCP dial of a remote-storage endpoint: 0 reachable, else an error text in
 * err. NULL dialer = presence is checked, reachability is not (--config-only). */
typedef int (*ic_doctor_dial_fn)(void *ud, const char *endpoint, char *err, size_t errlen);

/* Server endpoint classifications (the HTTP status or a transport error as status 0 with `err`).
 * health_status: the grpc.health.v1 ServingStatus (1 = SERVING); rpc_err non-NULL when the call
 * itself failed. */
void ic_doctor_check_health(ic_doctor_report_t *r, const char *target, const char *rpc_err,
                            int health_status);
/* body: the 200 answer's bytes (NULL otherwise); token_sent: whether a bearer was presented. */
void ic_doctor_check_snapshot(ic_doctor_report_t *r, const char *url, long http, const char *err,
                              const char *body, size_t body_len, bool token_sent);
/* route: "/policy" or "/probe" (answer to a HEAD). */
void ic_doctor_check_route(ic_doctor_report_t *r, const char *route, const char *url, long http,
                           const char *err);

/* One server replica as gathered when the server name resolves to several addresses (a headless
 * Service: docs/ha.md). Strings borrowed. */
typedef struct ic_doctor_replica {
  const char *addr;          /* its gRPC ip:port: the findings' resource */
  long readyz_http;          /* GET /readyz status (200 ready, 503 warming up), 0 = no answer */
  const char *readyz_text;   /* its body (the warm-start progress), or the transport error */
  bool have_snapshot;        /* /snapshot answered 200 with JSON: the two fields below are set */
  const char *policy_sha256; /* X-Inferencecache-Policy-Sha256: "none" = no policy pushed yet;
                                NULL = header absent (a server older than this check) */
  long long total_prefixes;  /* /snapshot totalPrefixes */
} ic_doctor_replica_t;

/* Index sizes agree "roughly" when each is within this share of the largest (or within
 * IC_DOCTOR_PREFIX_SLACK prefixes: churn moves small indexes by more than a share). */
#define IC_DOCTOR_PREFIX_TOLERANCE 0.10
#define IC_DOCTOR_PREFIX_SLACK 100

/* Per replica: ready or warming up (RP001/RP002); a policy other than most replicas' (RP003); an
 * index much smaller than the fullest replica's (RP004); RP005 when all of them agree. */
void ic_doctor_check_replicas(ic_doctor_report_t *r, const ic_doctor_replica_t *reps, size_t n);

/* `backends`, `pods`, `events`, `tenants`, `policies`: arrays of objects (List items); NULL means
 * the list failed and was reported already (the check skips what depends on it). `now_us` is the
 * clock the staleness windows compare with. */
void ic_doctor_check_backends(ic_doctor_report_t *r, json_t *backends, json_t *pods, int64_t now_us,
                              ic_doctor_dial_fn dial, void *dial_ud);
void ic_doctor_check_injection(ic_doctor_report_t *r, json_t *backends, json_t *pods,
                               json_t *events);
/* Running, injected engine pods against the /snapshot body (replicaId = pod name, tenant = pod
 * namespace: what the injected sidecar reports). snapshot NULL = not available: no findings. */
void ic_doctor_check_index(ic_doctor_report_t *r, json_t *backends, json_t *pods, json_t *snapshot);
void ic_doctor_check_orphans(ic_doctor_report_t *r, json_t *events, int64_t now_us);
void ic_doctor_check_tenants(ic_doctor_report_t *r, json_t *tenants);
/* Per namespace with CacheBackends: CachePolicy count (CP001..CP003); per namespace with a
 * CachePolicy: a CacheTenant claiming that tenant id (CP004). */
void ic_doctor_check_coverage(ic_doctor_report_t *r, json_t *backends, json_t *policies,
                              json_t *tenants);

/* ---- the run ----------------------------------------------------------------------------------
 */

typedef struct ic_doctor_opts {
  ic_kube_t *kube;         /* required */
  const char *namespace;   /* NULL or "" = all namespaces */
  bool config_only;        /* skip the server probes and the TCP dials */
  const char *grpc_target; /* host:port; NULL = discover the Service */
  const char
      *http_base;    /* "http://host:port" of /snapshot, /policy, /probe; NULL = grpc host:8081 */
  const char *token; /* bearer for /snapshot, or NULL */
  const char *tls_ca_file; /* PEM roots for the gRPC health call; NULL = plaintext */
  int timeout_ms;          /* per network call (default 10 s) */
  int readyz_port;         /* the servers' public HTTP port (/readyz) for the per-replica checks;
                              0 = IC_DOCTOR_READYZ_PORT */
} ic_doctor_opts_t;

/* Server discovery (when grpc_target is NULL): Service inference-cache-server in
 * inference-cache-system, else the first Service of that name in any namespace; the headless
 * Service beside it (IC_DOCTOR_HEADLESS_SERVICE) when there is one, to reach every replica.
 * A server name that resolves to several addresses is checked replica by replica. */
#define IC_DOCTOR_SERVICE "inference-cache-server"
#define IC_DOCTOR_HEADLESS_SERVICE "inference-cache-server-headless"
#define IC_DOCTOR_READYZ_PORT 8080
#define IC_DOCTOR_SYSTEM_NAMESPACE "inference-cache-system"
#define IC_DOCTOR_GRPC_PORT 9090
#define IC_DOCTOR_HTTP_PORT 8081

/* Runs every check in order into r. Returns 0 (the verdict is in the report). */
int ic_doctor_run(const ic_doctor_opts_t *o, ic_doctor_report_t *r);

#endif
