/* lib/kvevents engine metrics scraper: Prometheus text exposition -> ReplicaStats, following
 * the reference's rules exactly (vLLM and SGLang profiles, typed families only, model_name
 * filter, priority-breakdown skip, max/sum aggregation, hit-rate deltas with a baseline that a
 * rejected scrape never touches, T2 external counters, tier-selected usage).
 * The parser keeps pointers into the body (no copies); label values are compared raw. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/kvevents.h"

typedef enum { T_UNTYPED = 0, T_GAUGE, T_COUNTER, T_OTHER } mtype_t;

typedef struct span {
  const char *p;
  size_t n;
} span_t;

typedef struct sample {
  span_t name;
  span_t model;    /* model_name label value; p NULL when absent */
  span_t priority; /* priority label value; p NULL when absent */
  double v;
} sample_t;

typedef struct family {
  span_t name;
  mtype_t type;
} family_t;

typedef struct expo {
  sample_t *s;
  size_t ns, caps;
  family_t *f;
  size_t nf, capf;
} expo_t;

typedef struct profile {
  const char *usage_kv, *usage_gpu, *usage_cpu, *running, *waiting, *hits, *queries, *hit_gauge,
      *t2_hits, *t2_queries;
} profile_t;

static const profile_t VLLM = {
    "vllm:kv_cache_usage_perc",        "vllm:gpu_cache_usage_perc",
    "vllm:cpu_cache_usage_perc",       "vllm:num_requests_running",
    "vllm:num_requests_waiting",       "vllm:prefix_cache_hits",
    "vllm:prefix_cache_queries",       NULL,
    "vllm:external_prefix_cache_hits", "vllm:external_prefix_cache_queries"};
static const profile_t SGLANG = {"sglang:token_usage",
                                 NULL,
                                 NULL,
                                 "sglang:num_running_reqs",
                                 "sglang:num_queue_reqs",
                                 NULL,
                                 NULL,
                                 "sglang:cache_hit_rate",
                                 NULL,
                                 NULL};

struct ic_kv_scraper {
  const profile_t *prof;
  bool sglang, unknown_scheme;
  char *scheme;
  char *model;
  ic_kv_cache_tier_t tier;
  int64_t size, ceiling;
  bool has_base;
  double prev_h, prev_q;
};

int ic_kv_cache_tier_parse(const char *s, ic_kv_cache_tier_t *out) {
  if (!s) return IC_EINVAL;
  if (!strcmp(s, "auto"))
    *out = IC_KV_TIER_AUTO;
  else if (!strcmp(s, "kv"))
    *out = IC_KV_TIER_KV;
  else if (!strcmp(s, "gpu"))
    *out = IC_KV_TIER_GPU;
  else if (!strcmp(s, "cpu"))
    *out = IC_KV_TIER_CPU;
  else
    return IC_EINVAL;
  return 0;
}

ic_kv_scraper_t *ic_kv_scraper_new(const char *scheme, const char *model_name,
                                   ic_kv_cache_tier_t tier, int64_t cache_size_bytes,
                                   int64_t concurrency_ceiling) {
  ic_kv_scraper_t *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->sglang = scheme && !strcmp(scheme, "sglang");
  s->prof = s->sglang ? &SGLANG : &VLLM;
  s->unknown_scheme = scheme && *scheme && strcmp(scheme, "vllm") && !s->sglang;
  s->scheme = strdup(s->sglang ? "sglang" : "vllm");
  s->model = model_name && *model_name ? strdup(model_name) : NULL;
  s->tier = tier;
  s->size = cache_size_bytes;
  s->ceiling = concurrency_ceiling;
  if (!s->scheme || (model_name && *model_name && !s->model)) {
    ic_kv_scraper_free(s);
    return NULL;
  }
  return s;
}

void ic_kv_scraper_free(ic_kv_scraper_t *s) {
  if (!s) return;
  free(s->scheme);
  free(s->model);
  free(s);
}

bool ic_kv_scraper_unknown_scheme(const ic_kv_scraper_t *s) { return s->unknown_scheme; }

/* ---- parsing ------------------------------------------------------------------------------ */

static bool name_char(char ch, bool first) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == ':' ||
         (!first && ch >= '0' && ch <= '9');
}

static void skip_sp(const char **p, const char *e) {
  while (*p < e && (**p == ' ' || **p == '\t'))
    (*p)++;
}

static int parse_value(const char *p, const char *e, double *v) {
  char buf[64];
  size_t n = 0;
  while (p + n < e && p[n] != ' ' && p[n] != '\t' && n < sizeof(buf) - 1)
    n++;
  if (!n) return -1;
  memcpy(buf, p, n);
  buf[n] = 0;
  if (!strcmp(buf, "NaN"))
    *v = NAN;
  else if (!strcmp(buf, "+Inf") || !strcmp(buf, "Inf"))
    *v = INFINITY;
  else if (!strcmp(buf, "-Inf"))
    *v = -INFINITY;
  else {
    char *end;
    *v = strtod(buf, &end);
    if (*end) return -1;
  }
  return 0;
}

static int add_family(expo_t *x, span_t name, mtype_t t) {
  if (x->nf == x->capf) {
    size_t nc = x->capf ? 2 * x->capf : 64;
    family_t *nf = realloc(x->f, nc * sizeof(*nf));
    if (!nf) return IC_ENOMEM;
    x->f = nf;
    x->capf = nc;
  }
  x->f[x->nf++] = (family_t){name, t};
  return 0;
}

/* One sample line. Returns 0, -1 on a syntax error, IC_ENOMEM. */
static int parse_sample(expo_t *x, const char *p, const char *e) {
  sample_t s = {0};
  const char *n0 = p;
  if (p >= e || !name_char(*p, true)) return -1;
  while (p < e && name_char(*p, false))
    p++;
  s.name = (span_t){n0, (size_t)(p - n0)};
  skip_sp(&p, e);
  if (p < e && *p == '{') {
    p++;
    for (;;) {
      skip_sp(&p, e);
      if (p < e && *p == '}') {
        p++;
        break;
      }
      const char *k0 = p;
      while (p < e && name_char(*p, false))
        p++;
      span_t key = {k0, (size_t)(p - k0)};
      if (!key.n) return -1;
      skip_sp(&p, e);
      if (p >= e || *p != '=') return -1;
      p++;
      skip_sp(&p, e);
      if (p >= e || *p != '"') return -1;
      p++;
      const char *v0 = p;
      while (p < e && *p != '"') {
        if (*p == '\\') p++;
        p++;
      }
      if (p >= e) return -1;
      span_t val = {v0, (size_t)(p - v0)};
      p++;
      if (key.n == 10 && !memcmp(key.p, "model_name", 10))
        s.model = val;
      else if (key.n == 8 && !memcmp(key.p, "priority", 8))
        s.priority = val;
      skip_sp(&p, e);
      if (p < e && *p == ',') p++;
    }
  }
  skip_sp(&p, e);
  if (parse_value(p, e, &s.v)) return -1;
  if (x->ns == x->caps) {
    size_t nc = x->caps ? 2 * x->caps : 256;
    sample_t *ns = realloc(x->s, nc * sizeof(*ns));
    if (!ns) return IC_ENOMEM;
    x->s = ns;
    x->caps = nc;
  }
  x->s[x->ns++] = s;
  return 0;
}

static int parse_expo(expo_t *x, const char *body, size_t len, char *err, size_t errlen) {
  const char *p = body, *end = body + len;
  int lineno = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    lineno++;
    const char *q = p;
    skip_sp(&q, e);
    if (e > q && e[-1] == '\r') e--;
    if (q < e && *q == '#') {
      q++;
      skip_sp(&q, e);
      if (e - q > 4 && !memcmp(q, "TYPE", 4)) {
        q += 4;
        skip_sp(&q, e);
        const char *n0 = q;
        while (q < e && *q != ' ' && *q != '\t')
          q++;
        span_t name = {n0, (size_t)(q - n0)};
        skip_sp(&q, e);
        size_t tl = (size_t)(e - q);
        mtype_t t = T_OTHER;
        if (tl == 5 && !memcmp(q, "gauge", 5))
          t = T_GAUGE;
        else if (tl == 7 && !memcmp(q, "counter", 7))
          t = T_COUNTER;
        else if (tl == 7 && !memcmp(q, "untyped", 7))
          t = T_UNTYPED;
        if (name.n && add_family(x, name, t)) return IC_ENOMEM;
      }
    } else if (q < e) {
      int rc = parse_sample(x, q, e);
      if (rc == IC_ENOMEM) return rc;
      if (rc) {
        if (err) snprintf(err, errlen, "parse engine metrics: line %d: invalid sample", lineno);
        return IC_EPROTO;
      }
    }
    p = nl ? nl + 1 : end;
  }
  return 0;
}

static bool span_eq(span_t a, const char *s, size_t n) { return a.n == n && !memcmp(a.p, s, n); }

static mtype_t family_type(const expo_t *x, const char *name, size_t n) {
  for (size_t i = 0; i < x->nf; i++)
    if (span_eq(x->f[i].name, name, n)) return x->f[i].type;
  return T_UNTYPED;
}

/* Type of a sample named `name`: its own family, or the family without "_total". */
static mtype_t sample_type(const expo_t *x, const char *name, size_t n) {
  mtype_t t = family_type(x, name, n);
  if (t == T_UNTYPED && n > 6 && !memcmp(name + n - 6, "_total", 6))
    t = family_type(x, name, n - 6);
  return t;
}

static bool selected(const ic_kv_scraper_t *s, const sample_t *sm) {
  if (!s->model) return true;
  return sm->model.p && span_eq(sm->model, s->model, strlen(s->model));
}

typedef enum { AGG_SUM_LOAD, AGG_MAX, AGG_SUM } agg_t;

/* Aggregates finite, selected samples of `name` typed `want`. Returns presence. */
static bool agg(const ic_kv_scraper_t *s, const expo_t *x, const char *name, mtype_t want,
                agg_t how, double *out) {
  size_t n = strlen(name);
  if (sample_type(x, name, n) != want) return false;
  bool present = false;
  double acc = how == AGG_MAX ? -INFINITY : 0;
  for (size_t i = 0; i < x->ns; i++) {
    const sample_t *sm = &x->s[i];
    if (!span_eq(sm->name, name, n) || !isfinite(sm->v) || !selected(s, sm)) continue;
    if (how == AGG_SUM_LOAD && sm->priority.p && sm->priority.n) continue;
    present = true;
    if (how == AGG_MAX)
      acc = sm->v > acc ? sm->v : acc;
    else
      acc += sm->v;
  }
  if (present) *out = acc;
  return present;
}

static bool counter(const ic_kv_scraper_t *s, const expo_t *x, const char *name, double *out) {
  char buf[256];
  snprintf(buf, sizeof(buf), "%s_total", name);
  if (agg(s, x, buf, T_COUNTER, AGG_SUM, out)) return true;
  return agg(s, x, name, T_COUNTER, AGG_SUM, out);
}

/* Any sample or TYPE line of the metric (with or without _total), regardless of filters. */
static bool exists(const expo_t *x, const char *name) {
  if (!name) return false;
  size_t n = strlen(name);
  for (size_t i = 0; i < x->nf; i++)
    if (span_eq(x->f[i].name, name, n) ||
        (x->f[i].name.n == n + 6 && !memcmp(x->f[i].name.p, name, n) &&
         !memcmp(x->f[i].name.p + n, "_total", 6)))
      return true;
  for (size_t i = 0; i < x->ns; i++)
    if (span_eq(x->s[i].name, name, n) ||
        (x->s[i].name.n == n + 6 && !memcmp(x->s[i].name.p, name, n) &&
         !memcmp(x->s[i].name.p + n, "_total", 6)))
      return true;
  return false;
}

static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

int ic_kv_scraper_derive(ic_kv_scraper_t *s, const char *body, size_t len, ic_kv_stats_t *out,
                         char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  expo_t x = {0};
  int rc = parse_expo(&x, body, len, err, errlen);
  if (rc) goto done;
  for (size_t i = 0; i < x.ns; i++)
    if (span_eq(x.s[i].name, "process_start_time_seconds", 26) && isfinite(x.s[i].v) &&
        x.s[i].v > 0) {
      out->process_start_s = x.s[i].v;
      break;
    }
  const profile_t *p = s->prof;
  const char *all[] = {p->usage_kv, p->usage_gpu, p->usage_cpu, p->running, p->waiting,
                       p->hits,     p->queries,   p->hit_gauge, p->t2_hits, p->t2_queries};
  bool any = false;
  for (size_t i = 0; i < sizeof(all) / sizeof(*all) && !any; i++)
    any = exists(&x, all[i]);
  if (!any) {
    if (err)
      snprintf(err, errlen,
               "scrape engine metrics: no recognized %s metric families in the exposition "
               "(is --hash-scheme right for this engine?)",
               s->scheme);
    rc = IC_EPROTO;
    goto done;
  }
  double running = 0, waiting = 0;
  bool hr = agg(s, &x, p->running, T_GAUGE, AGG_SUM_LOAD, &running);
  bool hw = agg(s, &x, p->waiting, T_GAUGE, AGG_SUM_LOAD, &waiting);
  if (!hr || !hw) {
    if (err)
      snprintf(err, errlen,
               "scrape engine metrics: load gauges incomplete (running=%s, waiting=%s)",
               hr ? "present" : "absent", hw ? "present" : "absent");
    rc = IC_EPROTO;
    goto done;
  }
  double load = running + waiting;
  out->num_waiting = (int32_t)(waiting > INT32_MAX ? INT32_MAX : waiting < 0 ? 0 : waiting);
  out->num_running = (int32_t)(running > INT32_MAX ? INT32_MAX : running < 0 ? 0 : running);
  out->pressure = (float)(s->ceiling <= 0 || load <= 0 ? 0 : clamp01(load / (double)s->ceiling));
  double usage = 0, u1 = 0, u2 = 0;
  switch (s->tier) {
  case IC_KV_TIER_KV: agg(s, &x, p->usage_kv, T_GAUGE, AGG_MAX, &usage); break;
  case IC_KV_TIER_GPU:
    if (p->usage_gpu) agg(s, &x, p->usage_gpu, T_GAUGE, AGG_MAX, &usage);
    break;
  case IC_KV_TIER_CPU:
    if (p->usage_cpu) agg(s, &x, p->usage_cpu, T_GAUGE, AGG_MAX, &usage);
    break;
  case IC_KV_TIER_AUTO:
    if (!agg(s, &x, p->usage_kv, T_GAUGE, AGG_MAX, &usage)) {
      bool g = p->usage_gpu && agg(s, &x, p->usage_gpu, T_GAUGE, AGG_MAX, &u1);
      bool c = p->usage_cpu && agg(s, &x, p->usage_cpu, T_GAUGE, AGG_MAX, &u2);
      usage = g && c ? (u1 > u2 ? u1 : u2) : g ? u1 : c ? u2 : 0;
    }
    break;
  }
  if (s->sglang) {
    double h = 0;
    if (agg(s, &x, p->hit_gauge, T_GAUGE, AGG_MAX, &h)) out->hit_rate = (float)clamp01(h);
  } else {
    double h, q;
    if (counter(s, &x, p->hits, &h) && counter(s, &x, p->queries, &q)) {
      if (!s->has_base) {
        s->has_base = true;
      } else {
        double dh = h - s->prev_h, dq = q - s->prev_q;
        out->hit_rate = (float)(dh < 0 || dq <= 0 ? 0 : clamp01(dh / dq));
      }
      s->prev_h = h;
      s->prev_q = q;
    }
    double t;
    if (p->t2_hits && counter(s, &x, p->t2_hits, &t)) out->t2_hit_tokens = (int64_t)t;
    if (p->t2_queries && counter(s, &x, p->t2_queries, &t)) out->t2_query_tokens = (int64_t)t;
  }
  out->kv_usage = (float)clamp01(usage);
  if (s->size > 0) out->cache_memory_bytes = (int64_t)(usage * (double)s->size);
  rc = 0;
done:
  free(x.s);
  free(x.f);
  return rc;
}
