/* Prometheus registry and text exposition. Children live in a per-family chained hash table
 * (fixed 64 chains: label cardinalities here are small) guarded by a rwlock; their values are
 * atomics so updates never lock. Rendering sorts families by name and children by label values
 * so the output is byte-for-byte what client_golang produces. */
#include "ic/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "metrics_internal.h"

#define CHAINS 64
#define IC_METRICS_MAX_COLLECTORS 4

struct ic_metric {
  ic_metric_family_t *fam;
  char **values;                /* one per label, family order */
  uint64_t hash;
  _Atomic uint64_t bits;        /* double: counter/gauge value, histogram sum */
  _Atomic uint64_t count;       /* histogram samples */
  _Atomic uint64_t *per_bucket; /* histogram, non-cumulative, nbuckets entries */
  struct ic_metric *next;
};

struct ic_metric_family {
  char *name, *help;
  ic_metric_type_t type;
  size_t nlabels;
  char **labels;
  size_t *order; /* label indices sorted by name: render order */
  double *bounds;
  size_t nbounds;
  pthread_rwlock_t lock;
  ic_metric_t *chains[CHAINS];
  size_t nchildren;
  struct ic_metric_family *next;
  /* Cardinality bound (ic_metrics_bound_label), guarded by `lock`: the distinct values of label
     bound_label that own series (open addressing, cap a power of two >= 2 * bound_max). */
  size_t bound_label, bound_max; /* bound_max 0 = unbounded */
  char **seen;
  uint64_t *seen_h;
  size_t seen_n, seen_cap;
  /* Gauges past the bound: label-set hash -> value (open addressing, backward-shift delete). */
  uint64_t *ov_k;
  double *ov_v;
  size_t ov_n, ov_cap;
};

struct ic_metrics {
  pthread_mutex_t lock;
  ic_metric_family_t *families;
  size_t nfamilies;
  void (*collect[IC_METRICS_MAX_COLLECTORS])(void *);
  void *collect_ud[IC_METRICS_MAX_COLLECTORS];
  bool collect_owned[IC_METRICS_MAX_COLLECTORS]; /* ud freed with the registry */
  size_t ncollect;
};

static double bits_to_d(uint64_t b) {
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}
static uint64_t d_to_bits(double d) {
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  return b;
}

ic_metrics_t *ic_metrics_new(void) {
  ic_metrics_t *m = calloc(1, sizeof *m);
  if (m) pthread_mutex_init(&m->lock, NULL);
  return m;
}

static void free_child(ic_metric_t *c, size_t nlabels) {
  for (size_t i = 0; i < nlabels; i++) free(c->values[i]);
  free(c->values);
  free((void *)c->per_bucket);
  free(c);
}

static void free_family(ic_metric_family_t *f) {
  for (size_t i = 0; i < f->seen_cap; i++)
    free(f->seen ? f->seen[i] : NULL);
  free(f->seen);
  free(f->seen_h);
  free(f->ov_k);
  free(f->ov_v);
  for (size_t i = 0; i < CHAINS; i++)
    for (ic_metric_t *c = f->chains[i], *n; c; c = n) n = c->next, free_child(c, f->nlabels);
  for (size_t i = 0; i < f->nlabels; i++) free(f->labels[i]);
  free(f->labels);
  free(f->order);
  free(f->bounds);
  free(f->name);
  free(f->help);
  pthread_rwlock_destroy(&f->lock);
  free(f);
}

void ic_metrics_free(ic_metrics_t *m) {
  if (!m) return;
  for (ic_metric_family_t *f = m->families, *n; f; f = n) n = f->next, free_family(f);
  for (size_t i = 0; i < m->ncollect; i++)
    if (m->collect_owned[i]) free(m->collect_ud[i]);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

int ic_metrics_on_collect_owned(ic_metrics_t *m, void (*fn)(void *), void *ud, bool owned) {
  int rc = IC_ENOMEM;
  pthread_mutex_lock(&m->lock);
  if (m->ncollect < IC_METRICS_MAX_COLLECTORS) {
    m->collect[m->ncollect] = fn;
    m->collect_owned[m->ncollect] = owned;
    m->collect_ud[m->ncollect++] = ud;
    rc = 0;
  }
  pthread_mutex_unlock(&m->lock);
  return rc;
}

void ic_metrics_on_collect(ic_metrics_t *m, void (*fn)(void *), void *ud) {
  ic_metrics_on_collect_owned(m, fn, ud, false);
}

static int cmp_label_idx(const void *a, const void *b, void *ud) {
  char **labels = ud;
  return strcmp(labels[*(const size_t *)a], labels[*(const size_t *)b]);
}

static ic_metric_family_t *add_family(ic_metrics_t *m, ic_metric_type_t type, const char *name,
                                      const char *help, size_t nlabels,
                                      const char *const *label_names, const double *bounds,
                                      size_t nbounds) {
  if (!m || !name || !help || (nlabels && !label_names)) return NULL;
  for (size_t i = 1; i < nbounds; i++)
    if (!(bounds[i] > bounds[i - 1])) return NULL;
  ic_metric_family_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  pthread_rwlock_init(&f->lock, NULL);
  f->type = type;
  f->name = strdup(name);
  f->help = strdup(help);
  f->nlabels = nlabels;
  f->labels = calloc(nlabels + 1, sizeof *f->labels);
  f->order = calloc(nlabels + 1, sizeof *f->order);
  f->nbounds = nbounds;
  f->bounds = calloc(nbounds + 1, sizeof *f->bounds);
  bool ok = f->name && f->help && f->labels && f->order && f->bounds;
  for (size_t i = 0; ok && i < nlabels; i++) {
    ok = (f->labels[i] = strdup(label_names[i])) != NULL;
    f->order[i] = i;
  }
  if (ok && nbounds) memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
  if (!ok) {
    free_family(f);
    return NULL;
  }
  qsort_r(f->order, nlabels, sizeof *f->order, cmp_label_idx, f->labels);

  pthread_mutex_lock(&m->lock);
  for (ic_metric_family_t *g = m->families; g; g = g->next) {
    if (strcmp(g->name, name) == 0) {
      pthread_mutex_unlock(&m->lock);
      free_family(f);
      return NULL;
    }
  }
  f->next = m->families;
  m->families = f;
  m->nfamilies++;
  pthread_mutex_unlock(&m->lock);
  if (nlabels == 0 && !ic_metric_child(f, NULL)) return NULL;
  return f;
}

ic_metric_family_t *ic_metrics_counter(ic_metrics_t *m, const char *name, const char *help,
                                       size_t nlabels, const char *const *label_names) {
  return add_family(m, IC_METRIC_COUNTER, name, help, nlabels, label_names, NULL, 0);
}
ic_metric_family_t *ic_metrics_gauge(ic_metrics_t *m, const char *name, const char *help,
                                     size_t nlabels, const char *const *label_names) {
  return add_family(m, IC_METRIC_GAUGE, name, help, nlabels, label_names, NULL, 0);
}
ic_metric_family_t *ic_metrics_histogram(ic_metrics_t *m, const char *name, const char *help,
                                         size_t nlabels, const char *const *label_names,
                                         const double *buckets, size_t nbuckets) {
  return add_family(m, IC_METRIC_HISTOGRAM, name, help, nlabels, label_names, buckets, nbuckets);
}

static uint64_t hash_values(const ic_metric_family_t *f, const char *const *values) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < f->nlabels; i++) {
    for (const char *p = values[i] ? values[i] : ""; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
  }
  return h;
}

static ic_metric_t *find_child(ic_metric_family_t *f, const char *const *values, uint64_t h) {
  for (ic_metric_t *c = f->chains[h % CHAINS]; c; c = c->next) {
    if (c->hash != h) continue;
    size_t i = 0;
    while (i < f->nlabels && strcmp(c->values[i], values[i] ? values[i] : "") == 0) i++;
    if (i == f->nlabels) return c;
  }
  return NULL;
}

static uint64_t hash_str(const char *p) {
  uint64_t h = 1469598103934665603ULL;
  for (; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  return h | 1; /* 0 marks an empty seen slot */
}

/* Slot of value v in the seen set (its slot, or the empty one where it would go). */
static size_t seen_slot(const ic_metric_family_t *f, const char *v, uint64_t h) {
  size_t i = h & (f->seen_cap - 1);
  while (f->seen_h[i] && (f->seen_h[i] != h || strcmp(f->seen[i], v) != 0))
    i = (i + 1) & (f->seen_cap - 1);
  return i;
}

/* Past the bound, values that own no series yet are replaced by IC_METRICS_OTHER in `tmp`
 * (which then is what `values` points at). Caller holds the lock (read or write). */
static const char *const *bounded_values(const ic_metric_family_t *f, const char *const *values,
                                         const char **tmp) {
  if (!f->bound_max) return values;
  const char *v = values[f->bound_label] ? values[f->bound_label] : "";
  if (f->seen_n < f->bound_max || f->seen_h[seen_slot(f, v, hash_str(v))]) return values;
  memcpy(tmp, values, f->nlabels * sizeof *tmp);
  tmp[f->bound_label] = IC_METRICS_OTHER;
  return tmp;
}

ic_metric_t *ic_metric_child(ic_metric_family_t *f, const char *const *values) {
  if (!f || (f->nlabels && !values)) return NULL;
  const char *tmp[16];
  if (f->bound_max && f->nlabels > 16) return NULL;
  pthread_rwlock_rdlock(&f->lock);
  const char *const *vals = bounded_values(f, values, tmp);
  uint64_t h = hash_values(f, vals);
  ic_metric_t *c = find_child(f, vals, h);
  pthread_rwlock_unlock(&f->lock);
  if (c) return c;

  pthread_rwlock_wrlock(&f->lock);
  vals = bounded_values(f, values, tmp);
  h = hash_values(f, vals);
  c = find_child(f, vals, h);
  if (!c && (c = calloc(1, sizeof *c))) {
    bool ok = (c->values = calloc(f->nlabels + 1, sizeof *c->values)) != NULL;
    for (size_t i = 0; ok && i < f->nlabels; i++)
      ok = (c->values[i] = strdup(vals[i] ? vals[i] : "")) != NULL;
    if (ok && f->type == IC_METRIC_HISTOGRAM)
      ok = (c->per_bucket = calloc(f->nbounds + 1, sizeof *c->per_bucket)) != NULL;
    if (ok && f->bound_max && vals == values) { /* a value within the bound: remember it */
      const char *v = vals[f->bound_label] ? vals[f->bound_label] : "";
      uint64_t vh = hash_str(v);
      size_t i = seen_slot(f, v, vh);
      if (!f->seen_h[i]) {
        ok = (f->seen[i] = strdup(v)) != NULL;
        if (ok) f->seen_h[i] = vh, f->seen_n++;
      }
    }
    if (!ok) {
      free_child(c, f->nlabels);
      c = NULL;
    } else {
      c->fam = f;
      c->hash = h;
      c->next = f->chains[h % CHAINS];
      f->chains[h % CHAINS] = c;
      f->nchildren++;
    }
  }
  pthread_rwlock_unlock(&f->lock);
  return c;
}

int ic_metrics_bound_label(ic_metric_family_t *f, const char *label, size_t max_values) {
  if (!f || !label || f->nlabels > 16) return IC_EINVAL;
  size_t li = SIZE_MAX;
  for (size_t i = 0; i < f->nlabels; i++)
    if (strcmp(f->labels[i], label) == 0) li = i;
  if (li == SIZE_MAX) return IC_EINVAL;
  pthread_rwlock_wrlock(&f->lock);
  int rc = 0;
  if (f->nchildren || f->bound_max) {
    rc = IC_EINVAL; /* only before the first series */
  } else if (max_values) {
    size_t cap = 16;
    while (cap < 2 * max_values)
      cap *= 2;
    f->seen = calloc(cap, sizeof *f->seen);
    f->seen_h = calloc(cap, sizeof *f->seen_h);
    if (!f->seen || !f->seen_h) {
      free(f->seen), free(f->seen_h);
      f->seen = NULL, f->seen_h = NULL;
      rc = IC_ENOMEM;
    } else {
      f->seen_cap = cap;
      f->bound_label = li;
      f->bound_max = max_values;
    }
  }
  pthread_rwlock_unlock(&f->lock);
  return rc;
}

/* Overflow gauge map (caller holds the write lock). */
static size_t ov_slot(const ic_metric_family_t *f, uint64_t k) {
  size_t i = k & (f->ov_cap - 1);
  while (f->ov_k[i] && f->ov_k[i] != k)
    i = (i + 1) & (f->ov_cap - 1);
  return i;
}

static int ov_grow(ic_metric_family_t *f) {
  size_t nc = f->ov_cap ? f->ov_cap * 2 : 16;
  uint64_t *nk = calloc(nc, sizeof *nk);
  double *nv = calloc(nc, sizeof *nv);
  if (!nk || !nv) {
    free(nk), free(nv);
    return IC_ENOMEM;
  }
  uint64_t *ok = f->ov_k;
  double *oval = f->ov_v;
  size_t oc = f->ov_cap;
  f->ov_k = nk, f->ov_v = nv, f->ov_cap = nc;
  for (size_t i = 0; i < oc; i++)
    if (ok[i]) {
      size_t j = ov_slot(f, ok[i]);
      f->ov_k[j] = ok[i], f->ov_v[j] = oval[i];
    }
  free(ok), free(oval);
  return 0;
}

static void ov_del(ic_metric_family_t *f, size_t i) {
  f->ov_k[i] = 0;
  f->ov_n--;
  for (size_t j = (i + 1) & (f->ov_cap - 1); f->ov_k[j]; j = (j + 1) & (f->ov_cap - 1)) {
    uint64_t k = f->ov_k[j];
    double v = f->ov_v[j];
    f->ov_k[j] = 0;
    size_t t = ov_slot(f, k);
    f->ov_k[t] = k, f->ov_v[t] = v;
  }
}

int ic_metric_gauge_set(ic_metric_family_t *f, const char *const *values, double v) {
  ic_metric_t *c = ic_metric_child(f, values);
  if (!c) return IC_ENOMEM;
  if (!f->bound_max) {
    ic_metric_set(c, v);
    return 0;
  }
  const char *own = c->values[f->bound_label];
  const char *mine = values[f->bound_label] ? values[f->bound_label] : "";
  if (strcmp(own, IC_METRICS_OTHER) != 0 || strcmp(mine, IC_METRICS_OTHER) == 0) {
    ic_metric_set(c, v); /* a series of its own */
    return 0;
  }
  /* Past the bound: remember this label set's value; "other" shows the sum of those that
     share its other labels (the map is small: only label sets past the bound, non-zero). */
  uint64_t k = hash_values(f, values) | 1;
  int rc = 0;
  pthread_rwlock_wrlock(&f->lock);
  if (f->ov_cap == 0 || (f->ov_n + 1) * 4 > f->ov_cap * 3) rc = ov_grow(f);
  if (rc == 0) {
    size_t i = ov_slot(f, k);
    double old = f->ov_k[i] ? f->ov_v[i] : 0;
    if (v == 0) {
      if (f->ov_k[i]) ov_del(f, i);
    } else {
      if (!f->ov_k[i]) f->ov_k[i] = k, f->ov_n++;
      f->ov_v[i] = v;
    }
    ic_metric_set(c, ic_metric_value(c) - old + v);
  }
  pthread_rwlock_unlock(&f->lock);
  return rc;
}

ic_metric_t *ic_metric_plain(ic_metric_family_t *f) { return ic_metric_child(f, NULL); }

static void atomic_add_double(_Atomic uint64_t *bits, double v) {
  uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(bits, &old, d_to_bits(bits_to_d(old) + v),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

void ic_metric_inc(ic_metric_t *c) { ic_metric_add(c, 1.0); }
void ic_metric_add(ic_metric_t *c, double v) {
  if (c) atomic_add_double(&c->bits, v);
}
void ic_metric_set(ic_metric_t *c, double v) {
  if (c) atomic_store_explicit(&c->bits, d_to_bits(v), memory_order_relaxed);
}
void ic_metric_observe(ic_metric_t *c, double v) {
  if (!c || !c->per_bucket) return;
  const ic_metric_family_t *f = c->fam;
  size_t i = 0;
  while (i < f->nbounds && v > f->bounds[i]) i++;
  atomic_fetch_add_explicit(&c->per_bucket[i], 1, memory_order_relaxed);
  atomic_add_double(&c->bits, v);
  atomic_fetch_add_explicit(&c->count, 1, memory_order_relaxed);
}
double ic_metric_value(const ic_metric_t *c) {
  return c ? bits_to_d(atomic_load_explicit(&c->bits, memory_order_relaxed)) : 0;
}
uint64_t ic_metric_count(const ic_metric_t *c) {
  return c ? atomic_load_explicit(&c->count, memory_order_relaxed) : 0;
}

int ic_metrics_format_value(double v, char out[32]) {
  if (isnan(v)) return snprintf(out, 32, "NaN");
  if (isinf(v)) return snprintf(out, 32, v > 0 ? "+Inf" : "-Inf");
  if (v == 0) return snprintf(out, 32, signbit(v) ? "-0" : "0");
  /* Shortest round-tripping digit count, then Go's shortest-'g' rule: exponent form when the
   * decimal exponent is < -4 or >= 6 (strconv fixes eprec at 6 for shortest output). */
  int prec = 1;
  char tmp[40];
  for (; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
    if (strtod(tmp, NULL) == v) break;
  }
  const char *e = strchr(tmp, 'e');
  int exp = atoi(e + 1);
  int eprec = 6;
  if (exp < -4 || exp >= eprec) {
    /* Go writes at least two exponent digits, like C. */
    return snprintf(out, 32, "%.*e", prec - 1, v);
  }
  int decimals = prec - 1 - exp;
  return snprintf(out, 32, "%.*f", decimals > 0 ? decimals : 0, v);
}

static int cmp_children(const void *a, const void *b, void *ud) {
  const ic_metric_family_t *f = ud;
  const ic_metric_t *x = *(ic_metric_t *const *)a, *y = *(ic_metric_t *const *)b;
  for (size_t k = 0; k < f->nlabels; k++) {
    int r = strcmp(x->values[f->order[k]], y->values[f->order[k]]);
    if (r) return r;
  }
  return 0;
}

static int cmp_families(const void *a, const void *b) {
  return strcmp((*(ic_metric_family_t *const *)a)->name, (*(ic_metric_family_t *const *)b)->name);
}

/* Snapshot of families (sorted) so rendering does not hold the registry lock for long. */
static ic_metric_family_t **sorted_families(ic_metrics_t *m, size_t *n) {
  void (*collect[IC_METRICS_MAX_COLLECTORS])(void *);
  void *ud[IC_METRICS_MAX_COLLECTORS];
  pthread_mutex_lock(&m->lock);
  size_t nc = m->ncollect;
  memcpy(collect, m->collect, sizeof collect);
  memcpy(ud, m->collect_ud, sizeof ud);
  pthread_mutex_unlock(&m->lock);
  for (size_t i = 0; i < nc; i++) collect[i](ud[i]);

  pthread_mutex_lock(&m->lock);
  ic_metric_family_t **arr = calloc(m->nfamilies + 1, sizeof *arr);
  size_t k = 0;
  if (arr)
    for (ic_metric_family_t *f = m->families; f; f = f->next) arr[k++] = f;
  pthread_mutex_unlock(&m->lock);
  if (arr) qsort(arr, k, sizeof *arr, cmp_families);
  *n = k;
  return arr;
}

static ic_metric_t **sorted_children(ic_metric_family_t *f, size_t *n) {
  pthread_rwlock_rdlock(&f->lock);
  ic_metric_t **arr = calloc(f->nchildren + 1, sizeof *arr);
  size_t k = 0;
  if (arr)
    for (size_t i = 0; i < CHAINS; i++)
      for (ic_metric_t *c = f->chains[i]; c; c = c->next) arr[k++] = c;
  pthread_rwlock_unlock(&f->lock);
  if (arr) qsort_r(arr, k, sizeof *arr, cmp_children, f);
  *n = k;
  return arr;
}

static void append_escaped(ic_buf_t *out, const char *s, bool quote_too) {
  for (; *s; s++) {
    if (*s == '\\') ic_buf_append(out, "\\\\", 2);
    else if (*s == '\n') ic_buf_append(out, "\\n", 2);
    else if (quote_too && *s == '"') ic_buf_append(out, "\\\"", 2);
    else ic_buf_append_byte(out, *s);
  }
}

/* {a="x",b="y"[,le="..."]} or nothing when there are no labels at all. */
static void append_labels(ic_buf_t *out, const ic_metric_family_t *f, const ic_metric_t *c,
                          const char *le) {
  if (f->nlabels == 0 && !le) return;
  ic_buf_append_byte(out, '{');
  for (size_t k = 0; k < f->nlabels; k++) {
    size_t i = f->order[k];
    if (k) ic_buf_append_byte(out, ',');
    ic_buf_appendf(out, "%s=\"", f->labels[i]);
    append_escaped(out, c->values[i], true);
    ic_buf_append_byte(out, '"');
  }
  if (le) ic_buf_appendf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
  ic_buf_append_byte(out, '}');
}

static void render_family(ic_buf_t *out, ic_metric_family_t *f) {
  size_t n;
  ic_metric_t **kids = sorted_children(f, &n);
  if (!kids || n == 0) {
    free(kids);
    return;
  }
  static const char *const types[] = {"counter", "gauge", "histogram"};
  ic_buf_appendf(out, "# HELP %s ", f->name);
  append_escaped(out, f->help, false);
  ic_buf_appendf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
  char num[32];
  for (size_t j = 0; j < n; j++) {
    ic_metric_t *c = kids[j];
    if (f->type != IC_METRIC_HISTOGRAM) {
      ic_buf_append_str(out, f->name);
      append_labels(out, f, c, NULL);
      ic_metrics_format_value(ic_metric_value(c), num);
      ic_buf_appendf(out, " %s\n", num);
      continue;
    }
    uint64_t cum = 0;
    char le[32];
    for (size_t b = 0; b <= f->nbounds; b++) {
      cum += atomic_load_explicit(&c->per_bucket[b], memory_order_relaxed);
      if (b == f->nbounds) snprintf(le, sizeof le, "+Inf");
      else ic_metrics_format_value(f->bounds[b], le);
      ic_buf_appendf(out, "%s_bucket", f->name);
      append_labels(out, f, c, le);
      ic_buf_appendf(out, " %llu\n", (unsigned long long)cum);
    }
    ic_buf_appendf(out, "%s_sum", f->name);
    append_labels(out, f, c, NULL);
    ic_metrics_format_value(ic_metric_value(c), num);
    ic_buf_appendf(out, " %s\n%s_count", num, f->name);
    append_labels(out, f, c, NULL);
    ic_buf_appendf(out, " %llu\n", (unsigned long long)cum);
  }
  free(kids);
}

int ic_metrics_render(ic_metrics_t *m, ic_buf_t *out) {
  size_t n;
  ic_metric_family_t **fams = sorted_families(m, &n);
  if (!fams) return IC_ENOMEM;
  for (size_t i = 0; i < n; i++) render_family(out, fams[i]);
  free(fams);
  return ic_buf_reserve(out, 0);
}

void ic_metrics_foreach(ic_metrics_t *m, ic_metrics_sample_fn fn, void *ud) {
  size_t n;
  ic_metric_family_t **fams = sorted_families(m, &n);
  if (!fams) return;
  static const char *const types[] = {"counter", "gauge", "histogram"};
  for (size_t i = 0; i < n; i++) {
    ic_metric_family_t *f = fams[i];
    size_t nk;
    ic_metric_t **kids = sorted_children(f, &nk);
    if (!kids) continue;
    const char **names = calloc(f->nlabels + 2, sizeof *names);
    const char **vals = calloc(f->nlabels + 2, sizeof *vals);
    char *series = malloc(strlen(f->name) + 16);
    for (size_t j = 0; names && vals && series && j < nk; j++) {
      ic_metric_t *c = kids[j];
      for (size_t k = 0; k < f->nlabels; k++) {
        names[k] = f->labels[f->order[k]];
        vals[k] = c->values[f->order[k]];
      }
      const char *type = types[f->type];
      if (f->type != IC_METRIC_HISTOGRAM) {
        fn(ud, f->name, type, f->nlabels, names, vals, ic_metric_value(c));
        continue;
      }
      sprintf(series, "%s_sum", f->name);
      fn(ud, series, type, f->nlabels, names, vals, ic_metric_value(c));
      sprintf(series, "%s_count", f->name);
      fn(ud, series, type, f->nlabels, names, vals, (double)ic_metric_count(c));
      sprintf(series, "%s_bucket", f->name);
      uint64_t cum = 0;
      char le[32];
      names[f->nlabels] = "le";
      vals[f->nlabels] = le;
      for (size_t b = 0; b <= f->nbounds; b++) {
        cum += atomic_load_explicit(&c->per_bucket[b], memory_order_relaxed);
        if (b == f->nbounds) snprintf(le, sizeof le, "+Inf");
        else ic_metrics_format_value(f->bounds[b], le);
        fn(ud, series, type, f->nlabels + 1, names, vals, (double)cum);
      }
    }
    free(names);
    free(vals);
    free(series);
    free(kids);
  }
  free(fams);
}
