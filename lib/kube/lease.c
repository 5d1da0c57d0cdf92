/* lib/kube leader election over a coordination.k8s.io/v1 Lease, with client-go's semantics:
 * a lease is expired when its record has not changed for lease_duration on *our* monotonic clock
 * (no cross-node clock comparison); updates carry resourceVersion so two candidates never both win. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/clock.h"
#include "ic/kube.h"
#include "ic/log.h"

struct ic_kube_elector {
  ic_kube_t *k;
  ic_kube_elector_cfg_t cfg;
  char *ns, *name, *id;
  pthread_t thr;
  atomic_bool stop, leader;
  char *observed;      /* last seen "holder|renewTime|rv" */
  int64_t observed_ns; /* monotonic time it was first seen */
  int64_t last_renew_ns;
};

static json_t *lease_spec(ic_kube_elector_t *e, const char *now, json_t *old_spec, bool taking) {
  json_t *spec = old_spec ? json_deep_copy(old_spec) : json_object();
  int secs = (e->cfg.lease_duration_ms + 999) / 1000;
  json_object_set_new(spec, "holderIdentity", json_string(e->id));
  json_object_set_new(spec, "leaseDurationSeconds", json_integer(secs));
  json_object_set_new(spec, "renewTime", json_string(now));
  if (taking) {
    json_object_set_new(spec, "acquireTime", json_string(now));
    json_t *tr = json_object_get(spec, "leaseTransitions");
    json_int_t n = json_is_integer(tr) ? json_integer_value(tr) : 0;
    if (old_spec) n++; /* every take-over counts, also of a released (empty) lease */
    json_object_set_new(spec, "leaseTransitions", json_integer(n));
  }
  return spec;
}

/* One acquire-or-renew attempt; returns true when we hold the lease afterwards. */
static bool try_acquire_or_renew(ic_kube_elector_t *e) {
  char now[40];
  ic_kube_format_time(ic_clock_realtime_us(), true, now);
  json_t *cur = NULL;
  ic_kube_status_t st;
  int rc = ic_kube_get(e->k, &ic_kube_res_leases, e->ns, e->name, &cur, &st);
  if (rc == IC_ENOTFOUND) {
    json_t *obj = json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "apiVersion", "coordination.k8s.io/v1",
                            "kind", "Lease", "metadata", "name", e->name, "namespace", e->ns,
                            "spec", lease_spec(e, now, NULL, true));
    rc = ic_kube_create(e->k, &ic_kube_res_leases, e->ns, obj, NULL, &st);
    json_decref(obj);
    return rc == 0;
  }
  if (rc != 0) return false;
  json_t *spec = json_object_get(cur, "spec");
  const char *holder = ic_kube_jstr(spec, "holderIdentity");
  const char *renew = ic_kube_jstr(spec, "renewTime");
  const char *rv = ic_kube_jstr(cur, "metadata.resourceVersion");
  char rec[512];
  snprintf(rec, sizeof rec, "%s|%s|%s", holder ? holder : "", renew ? renew : "", rv ? rv : "");
  int64_t mono = ic_clock_monotonic_ns();
  if (!e->observed || strcmp(e->observed, rec) != 0) {
    free(e->observed);
    e->observed = strdup(rec);
    e->observed_ns = mono;
  }
  bool mine = holder && strcmp(holder, e->id) == 0;
  bool held = holder && *holder;
  bool expired = mono - e->observed_ns > (int64_t)e->cfg.lease_duration_ms * 1000000;
  if (held && !mine && !expired) {
    json_decref(cur);
    return false;
  }
  json_object_set_new(cur, "spec", lease_spec(e, now, spec, !mine));
  rc = ic_kube_update(e->k, &ic_kube_res_leases, e->ns, e->name, NULL, cur, NULL, &st);
  json_decref(cur);
  return rc == 0;
}

static void nap_ms(ic_kube_elector_t *e, int ms) {
  int64_t end = ic_clock_monotonic_ns() + (int64_t)ms * 1000000;
  while (!atomic_load(&e->stop) && ic_clock_monotonic_ns() < end) {
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
  }
}

static void *elector_main(void *arg) {
  ic_kube_elector_t *e = arg;
  while (!atomic_load(&e->stop)) {
    bool ok = try_acquire_or_renew(e);
    int64_t now = ic_clock_monotonic_ns();
    if (ok) {
      e->last_renew_ns = now;
      if (!atomic_load(&e->leader)) {
        atomic_store(&e->leader, true);
        ic_log_info("leader_elected", IC_LS("lease", e->name), IC_LS("identity", e->id));
        if (e->cfg.on_started) e->cfg.on_started(e->cfg.ud);
      }
    } else if (atomic_load(&e->leader) &&
               now - e->last_renew_ns > (int64_t)e->cfg.renew_deadline_ms * 1000000) {
      atomic_store(&e->leader, false);
      ic_log_warn("leader_lost", IC_LS("lease", e->name), IC_LS("identity", e->id));
      if (e->cfg.on_stopped) e->cfg.on_stopped(e->cfg.ud);
    }
    nap_ms(e, e->cfg.retry_period_ms);
  }
  return NULL;
}

ic_kube_elector_t *ic_kube_elector_start(ic_kube_t *k, const ic_kube_elector_cfg_t *cfg) {
  if (!cfg || !cfg->namespace || !cfg->name || !cfg->identity) return NULL;
  ic_kube_elector_t *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->k = k;
  e->cfg = *cfg;
  if (e->cfg.lease_duration_ms <= 0) e->cfg.lease_duration_ms = 15000;
  if (e->cfg.renew_deadline_ms <= 0) e->cfg.renew_deadline_ms = 10000;
  if (e->cfg.retry_period_ms <= 0) e->cfg.retry_period_ms = 2000;
  e->ns = strdup(cfg->namespace);
  e->name = strdup(cfg->name);
  e->id = strdup(cfg->identity);
  if (!e->ns || !e->name || !e->id || pthread_create(&e->thr, NULL, elector_main, e) != 0) {
    free(e->ns);
    free(e->name);
    free(e->id);
    free(e);
    return NULL;
  }
  return e;
}

bool ic_kube_elector_is_leader(ic_kube_elector_t *e) { return e && atomic_load(&e->leader); }

void ic_kube_elector_stop(ic_kube_elector_t *e, bool release) {
  if (!e) return;
  atomic_store(&e->stop, true);
  pthread_join(e->thr, NULL);
  if (release && atomic_load(&e->leader)) {
    /* Hand over at once instead of making the next leader wait out the lease. */
    json_t *cur = NULL;
    if (ic_kube_get(e->k, &ic_kube_res_leases, e->ns, e->name, &cur, NULL) == 0) {
      const char *h = ic_kube_jstr(cur, "spec.holderIdentity");
      if (h && strcmp(h, e->id) == 0) {
        json_t *spec = json_object_get(cur, "spec");
        json_object_set_new(spec, "holderIdentity", json_string(""));
        json_object_set_new(spec, "leaseDurationSeconds", json_integer(1));
        ic_kube_update(e->k, &ic_kube_res_leases, e->ns, e->name, NULL, cur, NULL, NULL);
        ic_log_info("leader_released", IC_LS("lease", e->name), IC_LS("identity", e->id));
      }
      json_decref(cur);
    }
  }
  atomic_store(&e->leader, false);
  free(e->observed);
  free(e->ns);
  free(e->name);
  free(e->id);
  free(e);
}
