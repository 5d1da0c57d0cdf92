/* GET /snapshot body: the index snapshot as the reference's Go encoder writes it
 * (docs/server.md) — frozen key order, omitempty rules, null for empty lists, HTML-safe strings,
 * float32 shortest form, RFC 3339 nano timestamps with Go's zero time. */
#include <string.h>

#include "http_internal.h"
#include "ic/err.h"

static int replica_json(const ic_index_snapshot_replica_t *r, ic_buf_t *b) {
  int rc = ic_buf_append_str(b, "{\"replicaId\":");
  const char *id = r->replica_id ? r->replica_id : "";
  const char *tenant = r->tenant ? r->tenant : "";
  rc |= ic_http_json_str(b, id, strlen(id));
  if (*tenant) { /* omitempty */
    rc |= ic_buf_append_str(b, ",\"tenant\":");
    rc |= ic_http_json_str(b, tenant, strlen(tenant));
  }
  rc |= ic_buf_appendf(b,
                       ",\"cacheMemoryBytes\":%lld,\"hitRate\":", (long long)r->cache_memory_bytes);
  rc |= ic_http_json_f32(b, r->hit_rate);
  rc |= ic_buf_append_str(b, ",\"pressure\":");
  rc |= ic_http_json_f32(b, r->pressure);
  rc |= ic_buf_append_str(b, ",\"lastUpdate\":");
  rc |= ic_http_json_time(b, r->last_update_ns);
  rc |= ic_buf_appendf(b, ",\"prefixCount\":%lld,\"lastEventAt\":", (long long)r->prefix_count);
  rc |= ic_http_json_time(b, r->last_event_at_ns);
  if (r->stats_reported) rc |= ic_buf_append_str(b, ",\"statsReported\":true");
  if (r->t2_hit_tokens)
    rc |= ic_buf_appendf(b, ",\"t2HitTokens\":%lld", (long long)r->t2_hit_tokens);
  if (r->t2_query_tokens)
    rc |= ic_buf_appendf(b, ",\"t2QueryTokens\":%lld", (long long)r->t2_query_tokens);
  if (r->load_reported) { /* additive (docs/ranking.md): the live load sample and its time */
    rc |= ic_buf_appendf(b, ",\"load\":{\"requestsWaiting\":%d,\"requestsRunning\":%d,\"kvCacheUsage\":",
                         (int)r->num_waiting, (int)r->num_running);
    rc |= ic_http_json_f32(b, r->kv_usage);
    rc |= ic_buf_append_str(b, ",\"observedAt\":");
    rc |= ic_http_json_time(b, r->load_observed_ns);
    rc |= ic_buf_append_byte(b, '}');
  }
  rc |= ic_buf_append_byte(b, '}');
  return rc ? IC_ENOMEM : 0;
}

static int tenant_json(const ic_index_snapshot_tenant_t *t, ic_buf_t *b) {
  const char *id = t->tenant_id ? t->tenant_id : "";
  int rc = ic_buf_append_str(b, "{\"tenantId\":");
  rc |= ic_http_json_str(b, id, strlen(id));
  rc |= ic_buf_appendf(b, ",\"indexEntries\":%lld,\"hitRate\":", (long long)t->index_entries);
  rc |= ic_http_json_f32(b, t->hit_rate);
  if (t->hit_rate_reported) rc |= ic_buf_append_str(b, ",\"hitRateReported\":true");
  /* memoryUsed: deprecated, always present and always 0 (skew compatibility). */
  rc |= ic_buf_append_str(b, ",\"memoryUsed\":0}");
  return rc ? IC_ENOMEM : 0;
}

int server_snapshot_json(const ic_index_snapshot_t *s, ic_buf_t *b) {
  int rc = ic_buf_append_str(b, "{\"replicas\":");
  if (!s->n_replicas) {
    rc |= ic_buf_append_str(b, "null");
  } else {
    rc |= ic_buf_append_byte(b, '[');
    for (size_t i = 0; i < s->n_replicas && !rc; i++) {
      if (i) rc |= ic_buf_append_byte(b, ',');
      rc |= replica_json(&s->replicas[i], b);
    }
    rc |= ic_buf_append_byte(b, ']');
  }
  rc |= ic_buf_append_str(b, ",\"tenants\":");
  if (!s->n_tenants) {
    rc |= ic_buf_append_str(b, "null");
  } else {
    rc |= ic_buf_append_byte(b, '[');
    for (size_t i = 0; i < s->n_tenants && !rc; i++) {
      if (i) rc |= ic_buf_append_byte(b, ',');
      rc |= tenant_json(&s->tenants[i], b);
    }
    rc |= ic_buf_append_byte(b, ']');
  }
  rc |= ic_buf_appendf(b, ",\"totalPrefixes\":%lld,\"hotPrefixes\":0}\n",
                       (long long)s->total_prefixes);
  return rc ? IC_ENOMEM : 0;
}
