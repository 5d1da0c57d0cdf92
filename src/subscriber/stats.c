/* kvevent-subscriber stats path: every --stats-interval scrape the engine's
 * /metrics (libcurl, 5 s), derive ReplicaStats (lib/kvevents scraper), send a stats-only
 * CacheStateUpdate, and log the failure streak exactly as REF does (WARN x2, one ERROR with
 * event=load_signal_stale, DEBUG after, INFO load_signal_recovered). Between those ticks, every
 * --load-interval, a live load sample (queue, KV usage) goes out the same way. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/log.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"
#include "sub.h"

#define STALE_THRESHOLD 3

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  ic_buf_t *b = ud;
  if (b->len + sz * n > (64u << 20)) return 0; /* an exposition this large is not a metrics page */
  return ic_buf_append(b, p, sz * n) ? 0 : sz * n;
}

/* GET url -> body. Returns 0 or -1 with a reason. */
static int fetch(const char *url, ic_buf_t *body, char *err, size_t errlen) {
  CURL *h = curl_easy_init();
  if (!h) {
    snprintf(err, errlen, "curl init failed");
    return -1;
  }
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
  CURLcode rc = curl_easy_perform(h);
  long code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(h);
  if (rc != CURLE_OK) {
    snprintf(err, errlen, "scrape engine metrics: %s", curl_easy_strerror(rc));
    return -1;
  }
  if (code != 200) {
    snprintf(err, errlen, "scrape engine metrics: unexpected status %ld", code);
    return -1;
  }
  return 0;
}

/* Sends the stats-only CSU; success needs an OK status and Ack.accepted. */
static int send_stats(sub_ctx_t *c, const ic_kv_stats_t *s, char *err, size_t errlen) {
  Inferencecache__V1alpha1__ReplicaStats rs = INFERENCECACHE__V1ALPHA1__REPLICA_STATS__INIT;
  rs.replica_id = (char *)c->replica_id;
  rs.cache_memory_bytes = s->cache_memory_bytes;
  rs.hit_rate = s->hit_rate;
  rs.pressure = s->pressure;
  rs.t2_hit_tokens = s->t2_hit_tokens;
  rs.t2_query_tokens = s->t2_query_tokens;
  rs.load_reported = true; /* a derived sample always has both load gauges */
  rs.num_requests_waiting = s->num_waiting;
  rs.num_requests_running = s->num_running;
  rs.kv_cache_usage = s->kv_usage;
  Inferencecache__V1alpha1__CacheStateUpdate u = INFERENCECACHE__V1ALPHA1__CACHE_STATE_UPDATE__INIT;
  u.replica_id = (char *)c->replica_id;
  u.model_id = (char *)c->model_id;
  u.tenant_id = (char *)c->tenant_id;
  u.hash_scheme = (char *)c->hash_scheme;
  u.timestamp_us = ic_clock_realtime_us();
  u.stats = &rs;
  size_t sz = inferencecache__v1alpha1__cache_state_update__get_packed_size(&u);
  uint8_t *buf = malloc(sz ? sz : 1);
  if (!buf) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  inferencecache__v1alpha1__cache_state_update__pack(&u, buf);
  ic_buf_t resp = IC_BUF_INIT;
  int st = sub_grpc_call(c->rpc, "/inferencecache.v1alpha1.InferenceCache/ReportCacheState", buf,
                         sz, SUB_RPC_TIMEOUT_MS, &resp);
  free(buf);
  const char *lv[] = {"ReportCacheState", sub_code_name(st)};
  ic_metric_inc(ic_metric_child(c->m.rpcs, lv));
  int rc = 0;
  if (st != 0) {
    ic_metric_inc(ic_metric_child(c->m.rpc_errors, lv));
    snprintf(err, errlen, "report stats: rpc status %d", st);
    rc = -1;
  } else {
    Inferencecache__V1alpha1__Ack *ack =
        inferencecache__v1alpha1__ack__unpack(NULL, resp.len, (const uint8_t *)resp.data);
    if (!ack || !ack->accepted) {
      snprintf(err, errlen, "report stats: server did not accept the update");
      rc = -1;
    }
    if (ack) inferencecache__v1alpha1__ack__free_unpacked(ack, NULL);
  }
  ic_buf_free(&resp);
  return rc;
}

/* One scrape: GET the engine's /metrics and derive a sample with scraper `s`. */
static int scrape(sub_ctx_t *c, ic_kv_scraper_t *s, ic_kv_stats_t *st, char *err, size_t errlen) {
  ic_buf_t body = IC_BUF_INIT;
  int rc = fetch(c->metrics_url, &body, err, errlen);
  if (!rc) rc = ic_kv_scraper_derive(s, body.data ? body.data : "", body.len, st, err, errlen);
  ic_buf_free(&body);
  return rc;
}

/* A load tick between stats ticks (docs/ranking.md): a fresh queue / KV-usage / pressure sample,
 * sent with the hit rate and T2 counters of the last stats tick, because the hit rate is a
 * delta over the stats interval and a sub-second window would make it noise. Its own scraper
 * keeps the stats baseline untouched. Failures are counted, not logged: the stats tick's
 * streak logging speaks for the scrape path. */
static void load_tick(sub_ctx_t *c, ic_kv_scraper_t *ls, const ic_kv_stats_t *last) {
  char err[512] = "";
  ic_kv_stats_t st;
  int rc = scrape(c, ls, &st, err, sizeof(err));
  if (!rc) {
    st.hit_rate = last->hit_rate;
    st.t2_hit_tokens = last->t2_hit_tokens;
    st.t2_query_tokens = last->t2_query_tokens;
    rc = send_stats(c, &st, err, sizeof(err));
  }
  const char *lv[] = {rc ? "failure" : "success"};
  ic_metric_inc(ic_metric_child(c->m.scrapes, lv));
  if (rc) ic_log_debug("live load report failed; next tick retries", IC_LS("err", err));
}

void *sub_stats_thread(void *arg) {
  sub_ctx_t *c = arg;
  ic_kv_scraper_t *s = ic_kv_scraper_new(c->hash_scheme, c->engine_model_name, c->cache_tier,
                                         c->cache_size_bytes, c->ceiling);
  bool live = c->load_interval_us > 0 && c->load_interval_us < c->stats_interval_us;
  ic_kv_scraper_t *ls = live ? ic_kv_scraper_new(c->hash_scheme, c->engine_model_name,
                                                 c->cache_tier, c->cache_size_bytes, c->ceiling)
                             : NULL;
  if (!s || (live && !ls)) {
    ic_kv_scraper_free(s);
    ic_kv_scraper_free(ls);
    return NULL;
  }
  if (ic_kv_scraper_unknown_scheme(s))
    ic_log_warn("unknown --hash-scheme; using the vLLM metric profile (a mismatched engine fails "
                "loud on scrape)",
                IC_LS("scheme", c->hash_scheme), IC_LS("profile", "vllm"));
  char iv[32], lv_iv[32] = "off";
  if (c->stats_interval_us % 1000000 == 0)
    snprintf(iv, sizeof(iv), "%llds", (long long)(c->stats_interval_us / 1000000));
  else
    snprintf(iv, sizeof(iv), "%lldms", (long long)(c->stats_interval_us / 1000));
  if (live) snprintf(lv_iv, sizeof(lv_iv), "%lldms", (long long)(c->load_interval_us / 1000));
  ic_log_info("stats reporter starting", IC_LS("interval", iv), IC_LS("load_interval", lv_iv));
  int failures = 0;
  bool delivered = false;
  ic_kv_stats_t last = {0};
  int64_t now0 = ic_clock_monotonic_us();
  int64_t next = now0 + c->stats_interval_us; /* first stats tick after 1 interval */
  int64_t next_load = live ? now0 + c->load_interval_us : INT64_MAX;
  double start_s = 0; /* engine process start time last seen */
  for (;;) {
    int64_t due = next_load < next ? next_load : next;
    int64_t wait = due - ic_clock_monotonic_us();
    if (wait > 0 && sub_sleep(c, wait, &c->stop_stats)) break;
    if (atomic_load(&c->stop_stats)) break;
    if (due == next_load && next_load < next) {
      next_load += c->load_interval_us;
      load_tick(c, ls, &last);
      continue;
    }
    next += c->stats_interval_us;
    if (live) next_load = ic_clock_monotonic_us() + c->load_interval_us;
    char err[512] = "";
    ic_kv_stats_t st;
    ic_buf_t body = IC_BUF_INIT;
    int rc = fetch(c->metrics_url, &body, err, sizeof(err));
    if (!rc) {
      rc = ic_kv_scraper_derive(s, body.data ? body.data : "", body.len, &st, err, sizeof(err));
      if (st.process_start_s > 0) {
        if (start_s > 0 && st.process_start_s != start_s) {
          ic_log_warn("engine process restarted (its /metrics start time changed)",
                      IC_LD("previous_start", start_s), IC_LD("start", st.process_start_s));
          atomic_store(&c->engine_restarted, true);
        }
        start_s = st.process_start_s;
      }
    }
    ic_buf_free(&body);
    if (!rc) rc = send_stats(c, &st, err, sizeof(err));
    const char *lv[] = {rc ? "failure" : "success"};
    ic_metric_inc(ic_metric_child(c->m.scrapes, lv));
    if (!rc) {
      last = st;
      ic_metric_set(ic_metric_plain(c->m.reported_hit_rate), st.hit_rate);
      ic_metric_set(ic_metric_plain(c->m.reported_pressure), st.pressure);
      if (failures >= STALE_THRESHOLD)
        ic_log_info("engine load stats recovered", IC_LS("event", "load_signal_recovered"),
                    IC_LI("after_failures", failures));
      failures = 0;
      delivered = true;
      continue;
    }
    failures++;
    if (failures < STALE_THRESHOLD) {
      ic_log_warn("engine load stats update failed; will retry", IC_LS("err", err));
    } else if (failures == STALE_THRESHOLD) {
      if (delivered)
        ic_log_error("engine load stats stale: routing is using the last delivered sample for this "
                     "replica until the scrape or report recovers",
                     IC_LS("event", "load_signal_stale"), IC_LI("consecutive_failures", failures),
                     IC_LS("err", err));
      else
        ic_log_error("engine load stats undelivered since startup: this replica's load is unknown "
                     "to routing until the scrape or report succeeds",
                     IC_LS("event", "load_signal_stale"), IC_LI("consecutive_failures", failures),
                     IC_LS("err", err));
    } else {
      ic_log_debug("engine load stats still not reaching IC; skipping tick", IC_LS("err", err));
    }
  }
  ic_log_info("stats reporter stopped");
  ic_kv_scraper_free(s);
  ic_kv_scraper_free(ls);
  return NULL;
}
