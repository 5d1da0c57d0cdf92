/* lib/replay workloads: the request list, deterministic segment tokens, the Mooncake JSONL
 * parser (untrusted input: every line is checked, a bad line is skipped, never its neighbours). */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/replay.h"

static uint64_t mix64(uint64_t x) { /* splitmix64 finalizer */
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint32_t ic_replay_token(uint64_t id, uint32_t pos) {
  uint64_t h = mix64(mix64(id) ^ ((uint64_t)pos * 0xd6e8feb86659fd93ULL));
  return IC_REPLAY_TOKEN_BASE + (uint32_t)(h % IC_REPLAY_TOKEN_SPAN);
}

ic_replay_workload_t *ic_replay_workload_new(const char *name) {
  ic_replay_workload_t *w = calloc(1, sizeof(*w));
  if (w) snprintf(w->name, sizeof(w->name), "%s", name ? name : "workload");
  return w;
}

void ic_replay_workload_free(ic_replay_workload_t *w) {
  if (!w) return;
  free(w->reqs);
  free(w->seg_ids);
  free(w->seg_lens);
  free(w);
}

int ic_replay_workload_add(ic_replay_workload_t *w, int64_t arrival_us, uint32_t output_len,
                           const uint64_t *ids, const uint32_t *lens, uint32_t nseg) {
  uint64_t total = 0;
  for (uint32_t i = 0; i < nseg; i++)
    total += lens[i];
  if (total == 0 || total > IC_REPLAY_MAX_PROMPT || arrival_us < 0) return IC_EINVAL;
  if (w->n == w->cap) {
    size_t nc = w->cap ? w->cap * 2 : 256;
    ic_replay_req_t *r = realloc(w->reqs, nc * sizeof(*r));
    if (!r) return IC_ENOMEM;
    w->reqs = r;
    w->cap = nc;
  }
  if (w->nsegs + nseg > w->segcap) {
    size_t nc = w->segcap ? w->segcap : 1024;
    while (nc < w->nsegs + nseg)
      nc *= 2;
    uint64_t *a = realloc(w->seg_ids, nc * sizeof(*a));
    if (!a) return IC_ENOMEM;
    w->seg_ids = a;
    uint32_t *b = realloc(w->seg_lens, nc * sizeof(*b));
    if (!b) return IC_ENOMEM;
    w->seg_lens = b;
    w->segcap = nc;
  }
  memcpy(w->seg_ids + w->nsegs, ids, nseg * sizeof(*ids));
  memcpy(w->seg_lens + w->nsegs, lens, nseg * sizeof(*lens));
  w->reqs[w->n++] = (ic_replay_req_t){.arrival_us = arrival_us,
                                      .input_len = (uint32_t)total,
                                      .output_len = output_len ? output_len : 1,
                                      .seg_off = w->nsegs,
                                      .nseg = nseg};
  w->nsegs += nseg;
  return 0;
}

size_t ic_replay_req_tokens(const ic_replay_workload_t *w, size_t i, uint32_t *out,
                            size_t out_cap) {
  const ic_replay_req_t *r = &w->reqs[i];
  size_t k = 0;
  for (uint32_t s = 0; s < r->nseg; s++) {
    uint64_t id = w->seg_ids[r->seg_off + s];
    uint32_t len = w->seg_lens[r->seg_off + s];
    for (uint32_t p = 0; p < len && k < out_cap; p++)
      out[k++] = ic_replay_token(id, p);
  }
  return k;
}

void ic_replay_workload_limit(ic_replay_workload_t *w, size_t max_requests,
                              int64_t max_duration_us) {
  size_t keep = w->n;
  if (max_requests && keep > max_requests) keep = max_requests;
  if (max_duration_us > 0)
    for (size_t i = 0; i < keep; i++)
      if (w->reqs[i].arrival_us >= max_duration_us) {
        keep = i;
        break;
      }
  w->n = keep; /* segments of dropped requests stay allocated: harmless */
}

/* ------------------------------------ Mooncake ------------------------------------ */

/* Mooncake ids are non-negative integers; they live in their own id space here. */
#define MOONCAKE_NS 0x4d4f4f4e43414b45ULL /* "MOONCAKE" */

static void skip_line(ic_replay_workload_t *w, size_t lineno, const char *fmt, ...) {
  if (w->skipped++ == 0) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(w->first_error, sizeof(w->first_error), "line %zu: %s", lineno, msg);
  }
}

static bool get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out) {
  json_t *v = json_object_get(o, key);
  if (json_is_integer(v)) {
    *out = json_integer_value(v);
  } else if (json_is_real(v)) { /* 1.0e3 style timestamps are fine when integral */
    double d = json_real_value(v);
    if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d) return false;
    *out = (int64_t)d;
  } else {
    return false;
  }
  return *out >= lo && *out <= hi;
}

typedef struct {
  int64_t ts;
  size_t idx;
} order_t;

static int cmp_order(const void *a, const void *b) {
  const order_t *x = a, *y = b;
  if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorts requests by arrival, keeping file order among equal timestamps. */
static int sort_by_arrival(ic_replay_workload_t *w) {
  bool sorted = true;
  for (size_t i = 1; i < w->n && sorted; i++)
    if (w->reqs[i].arrival_us < w->reqs[i - 1].arrival_us) sorted = false;
  if (sorted) return 0;
  order_t *o = malloc(w->n * sizeof(*o));
  ic_replay_req_t *r = malloc(w->n * sizeof(*r));
  if (!o || !r) {
    free(o);
    free(r);
    return IC_ENOMEM;
  }
  for (size_t i = 0; i < w->n; i++)
    o[i] = (order_t){w->reqs[i].arrival_us, i};
  qsort(o, w->n, sizeof(*o), cmp_order);
  for (size_t i = 0; i < w->n; i++)
    r[i] = w->reqs[o[i].idx];
  free(w->reqs);
  free(o);
  w->reqs = r;
  w->cap = w->n;
  return 0;
}

/* One line; returns 0 (added), 1 (skipped, reason recorded), IC_ENOMEM. */
static int parse_line(ic_replay_workload_t *w, const char *line, size_t len, size_t lineno,
                      uint64_t **ids, uint32_t **lens, size_t *idcap) {
  json_error_t je;
  json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
  if (!o) {
    skip_line(w, lineno, "invalid JSON: %s", je.text);
    return 1;
  }
  int rc = 1;
  int64_t ts, in, out;
  json_t *h = json_object_get(o, "hash_ids");
  if (!json_is_object(o)) {
    skip_line(w, lineno, "not a JSON object");
  } else if (!get_int(o, "timestamp", 0, INT64_MAX / 1000, &ts)) {
    skip_line(w, lineno, "timestamp: want a non-negative integer (ms)");
  } else if (!get_int(o, "input_length", 1, IC_REPLAY_MAX_PROMPT, &in)) {
    skip_line(w, lineno, "input_length: want an integer in [1, %u]", IC_REPLAY_MAX_PROMPT);
  } else if (!get_int(o, "output_length", 0, 1 << 20, &out)) {
    skip_line(w, lineno, "output_length: want an integer in [0, 1048576]");
  } else if (!json_is_array(h)) {
    skip_line(w, lineno, "hash_ids: want an array");
  } else {
    size_t need = ((size_t)in + IC_REPLAY_MOONCAKE_BLOCK - 1) / IC_REPLAY_MOONCAKE_BLOCK;
    size_t have = json_array_size(h);
    if (have != need) {
      skip_line(w, lineno, "hash_ids: %zu ids for input_length %lld (want %zu)", have,
                (long long)in, need);
      goto done;
    }
    if (need > *idcap) {
      uint64_t *a = realloc(*ids, need * sizeof(*a));
      if (a) *ids = a;
      uint32_t *b = realloc(*lens, need * sizeof(*b));
      if (b) *lens = b;
      if (!a || !b) {
        rc = IC_ENOMEM;
        goto done;
      }
      *idcap = need;
    }
    for (size_t i = 0; i < need; i++) {
      json_t *v = json_array_get(h, i);
      if (!json_is_integer(v) || json_integer_value(v) < 0) {
        skip_line(w, lineno, "hash_ids[%zu]: want a non-negative integer", i);
        goto done;
      }
      (*ids)[i] = MOONCAKE_NS ^ (uint64_t)json_integer_value(v) * 0x9e3779b97f4a7c15ULL;
      (*lens)[i] = IC_REPLAY_MOONCAKE_BLOCK;
    }
    /* The last block holds what is left of input_length. */
    (*lens)[need - 1] = (uint32_t)(in - (int64_t)(need - 1) * IC_REPLAY_MOONCAKE_BLOCK);
    int a = ic_replay_workload_add(w, ts * 1000, (uint32_t)out, *ids, *lens, (uint32_t)need);
    if (a == IC_ENOMEM) {
      rc = a;
    } else if (a < 0) {
      skip_line(w, lineno, "unusable request");
    } else {
      rc = 0;
    }
  }
done:
  json_decref(o);
  return rc;
}

ic_replay_workload_t *ic_replay_mooncake_parse(const char *data, size_t len, const char *name,
                                               char *err, size_t errlen) {
  ic_replay_workload_t *w = ic_replay_workload_new(name ? name : "mooncake");
  if (!w) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  uint64_t *ids = NULL;
  uint32_t *lens = NULL;
  size_t idcap = 0, lineno = 0;
  const char *p = data, *end = data + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    lineno++;
    const char *s = p;
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
      s++;
    if (s < e && parse_line(w, s, (size_t)(e - s), lineno, &ids, &lens, &idcap) == IC_ENOMEM) {
      snprintf(err, errlen, "out of memory at line %zu", lineno);
      goto fail;
    }
    p = nl ? nl + 1 : end;
  }
  if (w->n == 0) {
    snprintf(err, errlen, "no usable request in the trace (%zu lines skipped%s%s)", w->skipped,
             w->skipped ? "; first: " : "", w->first_error);
    goto fail;
  }
  if (sort_by_arrival(w) != 0) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  free(ids);
  free(lens);
  return w;
fail:
  free(ids);
  free(lens);
  ic_replay_workload_free(w);
  return NULL;
}
