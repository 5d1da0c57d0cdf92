/* kvevent-subscriber targets: --server names one or several inferencecache-server replicas (a
 * comma-separated list; a DNS name such as a headless Service may resolve to several addresses,
 * re-resolved every --server-resolve-interval). One target per address, each with its own
 * channel, bounded queue, sender and watcher (docs/ha.md); the engine thread fans ops out here. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ic/clock.h"
#include "ic/log.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"
#include "sub.h"

/* ---- resolution ------------------------------------------------------------------------------ */

typedef struct addr_list {
  char addr[SUB_MAX_TARGETS][80];  /* "ip:port" */
  char chan[SUB_MAX_TARGETS][96];  /* channel target */
  char host[SUB_MAX_TARGETS][256]; /* the name it came from (TLS authority), "" = literal */
  size_t n;
} addr_list_t;

static bool have_addr(const addr_list_t *l, const char *a) {
  for (size_t i = 0; i < l->n; i++)
    if (!strcmp(l->addr[i], a)) return true;
  return false;
}

static void add_addr(addr_list_t *l, const char *addr, const char *chan, const char *host) {
  if (have_addr(l, addr)) return;
  if (l->n >= SUB_MAX_TARGETS) {
    static bool warned;
    if (!warned)
      ic_log_warn("more server addresses than targets allowed; ignoring the rest",
                  IC_LI("max", SUB_MAX_TARGETS));
    warned = true;
    return;
  }
  snprintf(l->addr[l->n], sizeof l->addr[0], "%s", addr);
  snprintf(l->chan[l->n], sizeof l->chan[0], "%s", chan);
  snprintf(l->host[l->n], sizeof l->host[0], "%s", host);
  l->n++;
}

/* One --server entry: "host:port", "[v6]:port", "dns:///host:port"; any other gRPC scheme
 * ("unix:", "ipv4:", ...) is one target used as written. Returns addresses added, -1 on failure. */
static int resolve_entry(const char *entry, addr_list_t *out) {
  const char *e = entry;
  if (!strncmp(e, "dns:///", 7))
    e += 7;
  else if (!strncmp(e, "dns:", 4))
    e += 4;
  else if (strstr(e, ":/") || !strncmp(e, "unix:", 5) || !strncmp(e, "ipv4:", 5) ||
           !strncmp(e, "ipv6:", 5)) {
    add_addr(out, e, e, "");
    return 1;
  }
  char host[256], port[16] = "443"; /* gRPC's default port */
  if (*e == '[') {
    const char *rb = strchr(e, ']');
    if (!rb || (size_t)(rb - e - 1) >= sizeof host) return -1;
    memcpy(host, e + 1, (size_t)(rb - e - 1));
    host[rb - e - 1] = 0;
    if (rb[1] == ':') snprintf(port, sizeof port, "%s", rb + 2);
  } else {
    const char *colon = strrchr(e, ':');
    size_t hl = colon ? (size_t)(colon - e) : strlen(e);
    if (hl == 0 || hl >= sizeof host) return -1;
    memcpy(host, e, hl);
    host[hl] = 0;
    if (colon) snprintf(port, sizeof port, "%s", colon + 1);
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  if (getaddrinfo(host, port, &hints, &res) != 0 || !res) return -1;
  /* A dual-stack name lists each replica twice: use IPv4 when there is any, else IPv6. */
  bool v4 = false;
  for (struct addrinfo *a = res; a; a = a->ai_next)
    if (a->ai_family == AF_INET) v4 = true;
  struct in6_addr probe;
  struct in_addr probe4;
  bool literal = inet_pton(AF_INET, host, &probe4) == 1 || inet_pton(AF_INET6, host, &probe) == 1;
  int added = 0;
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    char ip[INET6_ADDRSTRLEN], addr[80], chan[96];
    if (a->ai_family == AF_INET && v4) {
      inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, ip, sizeof ip);
      snprintf(addr, sizeof addr, "%s:%s", ip, port);
      snprintf(chan, sizeof chan, "ipv4:%s:%s", ip, port);
    } else if (a->ai_family == AF_INET6 && !v4) {
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, ip, sizeof ip);
      snprintf(addr, sizeof addr, "[%s]:%s", ip, port);
      snprintf(chan, sizeof chan, "ipv6:[%s]:%s", ip, port);
    } else {
      continue;
    }
    add_addr(out, addr, chan, literal ? "" : host);
    added++;
  }
  freeaddrinfo(res);
  return added;
}

/* ---- one target ------------------------------------------------------------------------------ */

static ic_metric_t *child(ic_metric_family_t *f, const char *addr) {
  return ic_metric_child(f, (const char *[]){addr});
}

void sub_target_set_connected(sub_target_t *t, bool up) {
  atomic_store(&t->connected, up);
  ic_metric_set(t->m_connected, up ? 1 : 0);
}

static sub_target_t *target_new(sub_ctx_t *c, const char *addr, const char *chan,
                                const char *host) {
  sub_target_t *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->c = c;
  snprintf(t->addr, sizeof t->addr, "%s", addr);
  snprintf(t->chan, sizeof t->chan, "%s", chan);
  char authority[300];
  const char *colon = strrchr(addr, ':');
  snprintf(authority, sizeof authority, "%s:%s", host, colon ? colon + 1 : "443");
  t->rpc = sub_grpc_new(chan, (int)(c->max_backoff_us / 1000), c->creds, *host ? authority : NULL);
  if (!t->rpc || subq_init(&t->q, (size_t)c->queue_max_bytes)) {
    if (t->rpc) sub_grpc_free(t->rpc);
    free(t);
    return NULL;
  }
  pthread_mutex_init(&t->stop_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->stop_cv, &ca);
  pthread_condattr_destroy(&ca);
  sub_metrics_t *m = &c->m;
  t->m_connected = child(m->t_connected, addr);
  t->m_depth = child(m->t_depth, addr);
  t->m_dropped = child(m->t_dropped, addr);
  t->m_rpcs = child(m->t_rpcs, addr);
  t->m_errors = child(m->t_errors, addr);
  t->m_resyncs = child(m->t_resyncs, addr);
  t->m_synced = child(m->t_synced, addr);
  ic_metric_set(t->m_connected, 0);
  /* A replica that appears while the engine is being read has missed everything so far: it gets
   * the full state on its first connection. One created at startup has every op queued and
   * gets only the "full state sent" marker then. */
  atomic_store(&t->lost, atomic_load(&c->engine_started));
  return t;
}

static void target_start(sub_target_t *t) {
  t->started = pthread_create(&t->t_sender, NULL, sub_sender_thread, t) == 0;
  if (t->started && pthread_create(&t->t_watch, NULL, sub_watch_thread, t) != 0) {
    atomic_store(&t->stop, true);
    pthread_mutex_lock(&t->q.mu);
    pthread_cond_broadcast(&t->q.cv);
    pthread_mutex_unlock(&t->q.mu);
    pthread_join(t->t_sender, NULL);
    t->started = false;
  }
}

static void target_stop_threads(sub_target_t *t) {
  if (!t->started) return;
  atomic_store(&t->stop, true);
  pthread_mutex_lock(&t->q.mu);
  t->q.stop = true;
  pthread_cond_broadcast(&t->q.cv);
  pthread_cond_broadcast(&t->q.room);
  pthread_mutex_unlock(&t->q.mu);
  pthread_mutex_lock(&t->stop_mu);
  pthread_cond_broadcast(&t->stop_cv);
  pthread_mutex_unlock(&t->stop_mu);
  pthread_join(t->t_sender, NULL);
  pthread_join(t->t_watch, NULL);
  t->started = false;
}

static void target_free(sub_target_t *t) {
  ic_metric_set(t->m_connected, 0);
  ic_metric_set(t->m_depth, 0);
  sub_grpc_free(t->rpc);
  subq_destroy(&t->q);
  pthread_mutex_destroy(&t->stop_mu);
  pthread_cond_destroy(&t->stop_cv);
  free(t);
}

/* ---- the set --------------------------------------------------------------------------------- */

int sub_targets_resolve(sub_ctx_t *c) {
  addr_list_t *l = calloc(1, sizeof(*l));
  if (!l) return -1;
  char *list = strdup(c->server), *save = NULL;
  bool failed = false;
  for (char *tok = list ? strtok_r(list, ",", &save) : NULL; tok;
       tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ')
      tok++;
    size_t k = strlen(tok);
    while (k && tok[k - 1] == ' ')
      tok[--k] = 0;
    if (!*tok) continue;
    if (resolve_entry(tok, l) < 0) {
      failed = true;
      static int64_t last;
      int64_t now = ic_clock_monotonic_us();
      if (!last || now - last > 60000000) {
        ic_log_warn("cannot resolve server address; keeping its previous targets",
                    IC_LS("server", tok));
        last = now;
      }
    }
  }
  free(list);
  /* A name that did not resolve this time keeps what it had: never drop targets on a DNS
   * hiccup (only an answer without an address removes it). */
  int found = (int)l->n;
  pthread_rwlock_wrlock(&c->tlock);
  sub_target_t *gone[SUB_MAX_TARGETS];
  size_t ngone = 0;
  if (!failed) {
    size_t keep = 0;
    for (size_t i = 0; i < c->ntargets; i++) {
      if (have_addr(l, c->targets[i]->addr))
        c->targets[keep++] = c->targets[i];
      else
        gone[ngone++] = c->targets[i];
    }
    c->ntargets = keep;
  }
  sub_target_t *fresh[SUB_MAX_TARGETS];
  size_t nfresh = 0;
  for (size_t i = 0; i < l->n && c->ntargets < SUB_MAX_TARGETS; i++) {
    bool have = false;
    for (size_t j = 0; j < c->ntargets && !have; j++)
      have = !strcmp(c->targets[j]->addr, l->addr[i]);
    if (have) continue;
    sub_target_t *t = target_new(c, l->addr[i], l->chan[i], l->host[i]);
    if (!t) {
      ic_log_error("grpc client", IC_LS("err", "cannot create channel"),
                   IC_LS("server", l->addr[i]));
      continue;
    }
    c->targets[c->ntargets++] = t;
    fresh[nfresh++] = t;
  }
  ic_metric_set(ic_metric_plain(c->m.targets), (double)c->ntargets);
  pthread_rwlock_unlock(&c->tlock);
  for (size_t i = 0; i < nfresh; i++) {
    ic_log_info("server replica added", IC_LS("target", fresh[i]->addr),
                IC_LS("server", c->server));
    target_start(fresh[i]);
  }
  for (size_t i = 0; i < ngone; i++) {
    ic_log_info("server replica removed (no longer resolved)", IC_LS("target", gone[i]->addr),
                IC_LI("undelivered_ops", gone[i]->q.live));
    target_stop_threads(gone[i]);
    target_free(gone[i]);
  }
  free(l);
  if (failed && !found) return -1;
  return found;
}

void *sub_resolver_thread(void *arg) {
  sub_ctx_t *c = arg;
  while (c->resolve_interval_us > 0 && !sub_sleep(c, c->resolve_interval_us, &c->stop_stats))
    sub_targets_resolve(c);
  return NULL;
}

typedef struct drain_job {
  sub_target_t *t;
  int64_t deadline;
} drain_job_t;

static void *drain_main(void *arg) {
  drain_job_t *j = arg;
  sub_sender_drain(j->t, j->deadline);
  return NULL;
}

void sub_targets_shutdown(sub_ctx_t *c, int64_t deadline_us) {
  pthread_rwlock_wrlock(&c->tlock);
  size_t n = c->ntargets;
  sub_target_t *ts[SUB_MAX_TARGETS];
  memcpy(ts, c->targets, n * sizeof(*ts));
  c->ntargets = 0;
  pthread_rwlock_unlock(&c->tlock);
  pthread_t th[SUB_MAX_TARGETS];
  drain_job_t jobs[SUB_MAX_TARGETS];
  bool started[SUB_MAX_TARGETS] = {0};
  for (size_t i = 0; i < n; i++) {
    target_stop_threads(ts[i]);
    pthread_mutex_lock(&ts[i]->q.mu);
    ts[i]->q.stop = false;
    pthread_mutex_unlock(&ts[i]->q.mu);
    jobs[i] = (drain_job_t){ts[i], deadline_us};
    started[i] = pthread_create(&th[i], NULL, drain_main, &jobs[i]) == 0;
  }
  for (size_t i = 0; i < n; i++) {
    if (started[i]) pthread_join(th[i], NULL);
    target_free(ts[i]);
  }
}

/* ---- fan-out --------------------------------------------------------------------------------- */

size_t sub_targets_push(sub_ctx_t *c, const ic_kv_op_t *ops, size_t n, bool *paced) {
  size_t dropped = 0;
  int64_t deadline = ic_clock_monotonic_us() + 5000000;
  for (size_t i = 0; i < c->ntargets; i++) {
    sub_target_t *t = c->targets[i];
    /* Only a connected replica paces a replay; a dead one's queue overflows on its own. */
    if (paced && *paced && atomic_load(&t->connected)) {
      int64_t left = deadline - ic_clock_monotonic_us();
      if (left <= 0 || !subq_wait_room(&t->q, n, left)) *paced = false;
    }
    size_t d = subq_push(&t->q, ops, n, c->replica_of_ep);
    /* Before the server was ever reached a failed send does not mark it lost (sender.c): the
     * dropped adds still need the re-report when it answers. */
    if (d && !atomic_load(&t->ever_sent)) atomic_store(&t->lost, true);
    dropped += d;
  }
  return dropped;
}

void sub_targets_count_drops(sub_ctx_t *c) {
  static const char *kinds[] = {"", "add", "downgrade", "evict", "clear", "synced"};
  for (size_t i = 0; i < c->ntargets; i++) {
    sub_target_t *t = c->targets[i];
    pthread_mutex_lock(&t->q.mu);
    for (int k = 1; k <= 5; k++) {
      uint64_t d = t->q.dropped[k] - t->dropped_seen[k];
      if (!d) continue;
      t->dropped_seen[k] = t->q.dropped[k];
      ic_metric_add(ic_metric_child(c->m.queue_dropped, (const char *[]){kinds[k]}), (double)d);
      ic_metric_add(t->m_dropped, (double)d);
    }
    pthread_mutex_unlock(&t->q.mu);
  }
}

void sub_targets_gauges(sub_ctx_t *c) {
  double depth = 0, bytes = 0;
  bool all_up = true;
  pthread_rwlock_rdlock(&c->tlock);
  for (size_t i = 0; i < c->ntargets; i++) {
    sub_target_t *t = c->targets[i];
    pthread_mutex_lock(&t->q.mu);
    depth += (double)t->q.live;
    bytes += (double)subq_bytes(&t->q);
    ic_metric_set(t->m_depth, (double)t->q.live);
    pthread_mutex_unlock(&t->q.mu);
    if (!atomic_load(&t->connected)) all_up = false;
  }
  if (!c->ntargets) all_up = false;
  pthread_rwlock_unlock(&c->tlock);
  ic_metric_set(ic_metric_plain(c->m.queue_depth), depth);
  ic_metric_set(ic_metric_plain(c->m.queue_bytes), bytes);
  ic_metric_set(ic_metric_plain(c->m.connected), all_up ? 1 : 0);
}

int sub_targets_call_all(sub_ctx_t *c, const char *method, const char *method_label,
                         const uint8_t *req, size_t len) {
  pthread_rwlock_rdlock(&c->tlock);
  sub_target_t *ts[SUB_MAX_TARGETS];
  sub_grpc_t *gs[SUB_MAX_TARGETS];
  size_t n = 0;
  /* A replica whose sends are failing is skipped: its calls would only time out. (With one
   * replica it is tried anyway, so the failure is seen and counted as before.) */
  for (size_t i = 0; i < c->ntargets; i++)
    if (c->ntargets == 1 || atomic_load(&c->targets[i]->connected)) {
      ts[n] = c->targets[i];
      gs[n++] = c->targets[i]->rpc;
    }
  int st[SUB_MAX_TARGETS];
  ic_buf_t resp[SUB_MAX_TARGETS];
  for (size_t i = 0; i < n; i++)
    ic_buf_init(&resp[i]);
  /* The targets stay alive: removal takes the write lock, which waits for this read lock. */
  sub_grpc_call_each(gs, n, method, req, len, SUB_RPC_TIMEOUT_MS, st, resp);
  int rc = n ? st[0] : 14;
  bool any = false;
  for (size_t i = 0; i < n; i++) {
    const char *lv[] = {method_label, sub_code_name(st[i])};
    ic_metric_inc(ic_metric_child(c->m.rpcs, lv));
    ic_metric_inc(ts[i]->m_rpcs);
    if (st[i] != 0) {
      ic_metric_inc(ic_metric_child(c->m.rpc_errors, lv));
      ic_metric_inc(ts[i]->m_errors);
      if (st[i] == 4 && n > 1) sub_target_set_connected(ts[i], false); /* stalled replica */
      if (rc == 0) rc = st[i];
    } else {
      Inferencecache__V1alpha1__Ack *ack =
          inferencecache__v1alpha1__ack__unpack(NULL, resp[i].len, (const uint8_t *)resp[i].data);
      if (ack && ack->accepted) any = true;
      if (ack) inferencecache__v1alpha1__ack__free_unpacked(ack, NULL);
    }
    ic_buf_free(&resp[i]);
  }
  pthread_rwlock_unlock(&c->tlock);
  return any ? 0 : (rc ? rc : -2);
}
