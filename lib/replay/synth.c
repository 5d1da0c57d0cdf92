/* lib/replay synthetic workloads and the workload spec parser: shared-prefix groups, multi-turn
 * chat with growing histories, and a cache-stress shape larger than the fleet's KV capacity. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/err.h"
#include "ic/replay.h"

/* Segment id spaces of the generators (disjoint from Mooncake's and from each other). */
#define NS_SHARED 0x5348415245440000ULL
#define NS_CHAT 0x4348415400000000ULL
#define NS_STRESS 0x5354524553530000ULL
#define NS_BURST 0x4255525354000000ULL

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }
static double rng_exp(uint64_t *s, double mean) { return -mean * log(1.0 - rng_unit(s)); }
static uint64_t seg_id(uint64_t ns, uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t s = ns ^ (seed * 0x9e3779b97f4a7c15ULL) ^ (a << 20) ^ (b * 0xd1b54a32d192ed03ULL);
  return rng_next(&s);
}

/* ----------------------------------- spec parsing ----------------------------------- */

typedef struct {
  const char *key;
  double *val;
  double lo, hi;
  bool integer;
} param_t;

static int parse_params(const char *s, param_t *ps, size_t np, char *err, size_t errlen) {
  if (!s || !*s) return 0;
  char *copy = strdup(s);
  if (!copy) return IC_ENOMEM;
  int rc = 0;
  char *save = NULL;
  for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(kv, '=');
    if (!eq) {
      snprintf(err, errlen, "workload parameter \"%s\": want key=value", kv);
      rc = IC_EINVAL;
      break;
    }
    *eq = '\0';
    param_t *p = NULL;
    for (size_t i = 0; i < np; i++)
      if (!strcmp(ps[i].key, kv)) p = &ps[i];
    if (!p) {
      snprintf(err, errlen, "unknown workload parameter \"%s\"", kv);
      rc = IC_EINVAL;
      break;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(eq + 1, &end);
    if (errno || end == eq + 1 || *end || !(v >= p->lo && v <= p->hi) ||
        (p->integer && v != floor(v))) {
      snprintf(err, errlen, "workload parameter %s=%s: want %s in [%g, %g]", kv, eq + 1,
               p->integer ? "an integer" : "a number", p->lo, p->hi);
      rc = IC_EINVAL;
      break;
    }
    *p->val = v;
  }
  free(copy);
  return rc;
}

/* ----------------------------------- generators ----------------------------------- */

static ic_replay_workload_t *fail(ic_replay_workload_t *w, char *err, size_t errlen, int rc) {
  if (rc == IC_ENOMEM) snprintf(err, errlen, "out of memory");
  ic_replay_workload_free(w);
  return NULL;
}

/* G contexts x M questions each, in a random order, Poisson arrivals at `rate` per second:
 * prompt = context[g] + question[g][q]. The RAG / system-prompt shape of gateway benchmarks. */
static ic_replay_workload_t *shared_prefix(const char *params, char *err, size_t errlen) {
  double groups = 16, questions = 8, context = 2048, question = 128, output = 64, rate = 4,
         seed = 1;
  param_t ps[] = {
      {"groups", &groups, 1, 1e6, true},       {"questions", &questions, 1, 1e6, true},
      {"context", &context, 0, 1 << 19, true}, {"question", &question, 0, 1 << 19, true},
      {"output", &output, 1, 1 << 20, true},   {"rate", &rate, 1e-6, 1e6, false},
      {"seed", &seed, 0, 1e15, true}};
  if (parse_params(params, ps, sizeof(ps) / sizeof(ps[0]), err, errlen)) return NULL;
  if (context + question < 1 || groups * questions > 1e7) {
    snprintf(err, errlen, "shared-prefix: need context+question >= 1 and at most 1e7 requests");
    return NULL;
  }
  ic_replay_workload_t *w = ic_replay_workload_new("shared-prefix");
  if (!w) return fail(w, err, errlen, IC_ENOMEM);
  size_t n = (size_t)groups * (size_t)questions;
  uint32_t *order = malloc(n * sizeof(*order));
  if (!order) return fail(w, err, errlen, IC_ENOMEM);
  for (size_t i = 0; i < n; i++)
    order[i] = (uint32_t)i;
  uint64_t rs = (uint64_t)seed;
  for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
    size_t j = rng_next(&rs) % i;
    uint32_t t = order[i - 1];
    order[i - 1] = order[j];
    order[j] = t;
  }
  double t = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t g = order[i] / (uint32_t)questions, q = order[i] % (uint32_t)questions;
    uint64_t ids[2] = {seg_id(NS_SHARED, (uint64_t)seed, g, 0),
                       seg_id(NS_SHARED, (uint64_t)seed, g, q + 1)};
    uint32_t lens[2] = {(uint32_t)context, (uint32_t)question};
    int rc = ic_replay_workload_add(w, (int64_t)(t * 1e6), (uint32_t)output, ids, lens, 2);
    if (rc) {
      free(order);
      return fail(w, err, errlen, rc);
    }
    t += rng_exp(&rs, 1.0 / rate);
  }
  free(order);
  return w;
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct {
  int64_t at;
  size_t idx;
} stamp_t;

static int cmp_stamp(const void *a, const void *b) {
  const stamp_t *x = a, *y = b;
  if (x->at != y->at) return x->at < y->at ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* S sessions of T turns: turn t's prompt = system + (user_k + answer_k for k < t) + user_t, so
 * every turn extends the previous turn's prompt. Sessions start at `rate` per second; turns
 * follow after an exponential think time (mean `think` seconds). */
static ic_replay_workload_t *multi_turn(const char *params, char *err, size_t errlen) {
  double sessions = 32, turns = 6, sys = 512, user = 96, answer = 192, think = 20, rate = 1,
         seed = 1;
  param_t ps[] = {{"sessions", &sessions, 1, 1e6, true}, {"turns", &turns, 1, 1000, true},
                  {"system", &sys, 0, 1 << 19, true},    {"user", &user, 1, 1 << 19, true},
                  {"answer", &answer, 1, 1 << 19, true}, {"think", &think, 0, 1e6, false},
                  {"rate", &rate, 1e-6, 1e6, false},     {"seed", &seed, 0, 1e15, true}};
  if (parse_params(params, ps, sizeof(ps) / sizeof(ps[0]), err, errlen)) return NULL;
  if (sys + turns * (user + answer) > IC_REPLAY_MAX_PROMPT || sessions * turns > 1e7) {
    snprintf(err, errlen,
             "multi-turn: the last turn's prompt exceeds %u tokens or too many requests",
             IC_REPLAY_MAX_PROMPT);
    return NULL;
  }
  size_t S = (size_t)sessions, T = (size_t)turns, n = S * T;
  ic_replay_workload_t *tmp = ic_replay_workload_new("multi-turn");
  stamp_t *st = malloc(n * sizeof(*st));
  uint64_t *ids = malloc((2 * T + 1) * sizeof(*ids));
  uint32_t *lens = malloc((2 * T + 1) * sizeof(*lens));
  if (!tmp || !st || !ids || !lens) goto oom;
  uint64_t rs = (uint64_t)seed;
  double start = 0;
  for (size_t s = 0; s < S; s++) {
    double at = start;
    uint32_t k = 0;
    if (sys > 0) {
      ids[k] = seg_id(NS_CHAT, (uint64_t)seed, 0, 0); /* one system prompt for everyone */
      lens[k++] = (uint32_t)sys;
    }
    for (size_t t = 0; t < T; t++) {
      ids[k] = seg_id(NS_CHAT, (uint64_t)seed, s + 1, 2 * t);
      lens[k++] = (uint32_t)user;
      if (ic_replay_workload_add(tmp, (int64_t)(at * 1e6), (uint32_t)answer, ids, lens, k))
        goto oom;
      st[tmp->n - 1] = (stamp_t){(int64_t)(at * 1e6), tmp->n - 1};
      ids[k] = seg_id(NS_CHAT, (uint64_t)seed, s + 1, 2 * t + 1);
      lens[k++] = (uint32_t)answer;
      at += think > 0 ? rng_exp(&rs, think) : 0;
    }
    start += rng_exp(&rs, 1.0 / rate);
  }
  /* Interleave the sessions by arrival time. */
  qsort(st, n, sizeof(*st), cmp_stamp);
  ic_replay_workload_t *w = ic_replay_workload_new("multi-turn");
  if (!w) goto oom;
  for (size_t i = 0; i < n; i++) {
    const ic_replay_req_t *r = &tmp->reqs[st[i].idx];
    int rc = ic_replay_workload_add(w, r->arrival_us, r->output_len, tmp->seg_ids + r->seg_off,
                                    tmp->seg_lens + r->seg_off, r->nseg);
    if (rc) {
      ic_replay_workload_free(w);
      goto oom;
    }
  }
  ic_replay_workload_free(tmp);
  free(st);
  free(ids);
  free(lens);
  return w;
oom:
  free(st);
  free(ids);
  free(lens);
  return fail(tmp, err, errlen, IC_ENOMEM);
}

/* `requests` requests over P distinct prefixes of L tokens drawn with Zipf(s) popularity, plus
 * a unique suffix each: with the defaults the working set (P x L = 16.8 M tokens) is ~4.7x the
 * KV capacity of eight default engines, so every policy evicts and misses. */
static ic_replay_workload_t *cache_stress(const char *params, char *err, size_t errlen) {
  double prefixes = 1024, prefix = 16384, suffix = 64, output = 32, rate = 4, zipf = 0.8,
         requests = 2000, seed = 1;
  param_t ps[] = {{"prefixes", &prefixes, 1, 1e7, true}, {"prefix", &prefix, 1, 1 << 19, true},
                  {"suffix", &suffix, 0, 1 << 19, true}, {"output", &output, 1, 1 << 20, true},
                  {"rate", &rate, 1e-6, 1e6, false},     {"zipf", &zipf, 0, 10, false},
                  {"requests", &requests, 1, 1e7, true}, {"seed", &seed, 0, 1e15, true}};
  if (parse_params(params, ps, sizeof(ps) / sizeof(ps[0]), err, errlen)) return NULL;
  size_t P = (size_t)prefixes;
  double *cdf = malloc(P * sizeof(*cdf));
  ic_replay_workload_t *w = ic_replay_workload_new("cache-stress");
  if (!cdf || !w) {
    free(cdf);
    return fail(w, err, errlen, IC_ENOMEM);
  }
  double sum = 0;
  for (size_t k = 0; k < P; k++)
    cdf[k] = (sum += pow((double)(k + 1), -zipf));
  uint64_t rs = (uint64_t)seed;
  double t = 0;
  for (size_t i = 0; i < (size_t)requests; i++) {
    double u = rng_unit(&rs) * sum;
    size_t lo = 0, hi = P - 1;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (cdf[mid] < u)
        lo = mid + 1;
      else
        hi = mid;
    }
    uint64_t ids[2] = {seg_id(NS_STRESS, (uint64_t)seed, lo, 0),
                       seg_id(NS_STRESS, (uint64_t)seed, (uint64_t)P + i, 1)};
    uint32_t lens[2] = {(uint32_t)prefix, (uint32_t)suffix};
    int rc = ic_replay_workload_add(w, (int64_t)(t * 1e6), (uint32_t)output, ids, lens,
                                    suffix > 0 ? 2 : 1);
    if (rc) {
      free(cdf);
      return fail(w, err, errlen, rc);
    }
    t += rng_exp(&rs, 1.0 / rate);
  }
  free(cdf);
  return w;
}

/* B bursts: each a new prefix (never seen before) and S siblings (prefix + their own suffix)
 * arriving uniformly within `window` ms, faster than any engine event can reach the router.
 * Bursts start `rate` per second (Poisson), each after the previous one's window. The shape
 * of parallel agents, fan-out tool calls and best-of-n sampling. */
static ic_replay_workload_t *burst(const char *params, char *err, size_t errlen) {
  double bursts = 48, siblings = 16, prefix = 4096, suffix = 128, output = 64, window = 50,
         rate = 2, seed = 1;
  param_t ps[] = {{"bursts", &bursts, 1, 1e6, true},      {"siblings", &siblings, 1, 4096, true},
                  {"prefix", &prefix, 1, 1 << 19, true},  {"suffix", &suffix, 1, 1 << 19, true},
                  {"output", &output, 1, 1 << 20, true},  {"window", &window, 0, 60000, false},
                  {"rate", &rate, 1e-6, 1e6, false},      {"seed", &seed, 0, 1e15, true}};
  if (parse_params(params, ps, sizeof(ps) / sizeof(ps[0]), err, errlen)) return NULL;
  if (bursts * siblings > 1e7 || prefix + suffix > IC_REPLAY_MAX_PROMPT) {
    snprintf(err, errlen, "burst: at most 1e7 requests of at most %u tokens", IC_REPLAY_MAX_PROMPT);
    return NULL;
  }
  ic_replay_workload_t *w = ic_replay_workload_new("burst");
  size_t S = (size_t)siblings;
  double *at = malloc(S * sizeof(*at));
  if (!w || !at) {
    free(at);
    return fail(w, err, errlen, IC_ENOMEM);
  }
  uint64_t rs = (uint64_t)seed;
  double t = 0;
  for (size_t b = 0; b < (size_t)bursts; b++) {
    for (size_t k = 0; k < S; k++)
      at[k] = t + rng_unit(&rs) * window / 1000.0;
    qsort(at, S, sizeof(*at), cmp_dbl);
    for (size_t k = 0; k < S; k++) {
      uint64_t ids[2] = {seg_id(NS_BURST, (uint64_t)seed, b, 0),
                         seg_id(NS_BURST, (uint64_t)seed, b, k + 1)};
      uint32_t lens[2] = {(uint32_t)prefix, (uint32_t)suffix};
      int rc = ic_replay_workload_add(w, (int64_t)(at[k] * 1e6), (uint32_t)output, ids, lens, 2);
      if (rc) {
        free(at);
        return fail(w, err, errlen, rc);
      }
      w->reqs[w->n - 1].burst = (uint32_t)b + 1;
      w->reqs[w->n - 1].burst_prefix = (uint32_t)prefix;
    }
    t += window / 1000.0 + rng_exp(&rs, 1.0 / rate);
  }
  free(at);
  return w;
}

/* Published Mooncake traces are a few MiB of JSON lines; the bound only stops a wrong file. */
#define MAX_TRACE_BYTES (1u << 30)

static ic_replay_workload_t *load_mooncake(const char *path, char *err, size_t errlen) {
  ic_buf_t data = IC_BUF_INIT;
  if (ic_buf_read_file(path, MAX_TRACE_BYTES, &data, NULL) != 0) {
    snprintf(err, errlen, "read trace %s: %s", path, strerror(errno));
    return NULL;
  }
  /* Name: the file stem without a "mooncake_" prefix or "_trace" suffix. */
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  char name[64];
  snprintf(name, sizeof(name), "%s", strncmp(base, "mooncake_", 9) ? base : base + 9);
  char *dot = strrchr(name, '.');
  if (dot) *dot = '\0';
  size_t nl = strlen(name);
  if (nl > 6 && !strcmp(name + nl - 6, "_trace")) name[nl - 6] = '\0';
  ic_replay_workload_t *w = ic_replay_mooncake_parse(data.data, data.len, name, err, errlen);
  ic_buf_free(&data);
  return w;
}

ic_replay_workload_t *ic_replay_workload_load(const char *spec, char *err, size_t errlen) {
  const char *colon = strchr(spec, ':');
  size_t kl = colon ? (size_t)(colon - spec) : strlen(spec);
  const char *rest = colon ? colon + 1 : "";
  if (kl == 8 && !strncmp(spec, "mooncake", 8)) {
    if (!*rest) {
      snprintf(err, errlen, "workload mooncake: want mooncake:PATH");
      return NULL;
    }
    return load_mooncake(rest, err, errlen);
  }
  if (kl == 13 && !strncmp(spec, "shared-prefix", 13)) return shared_prefix(rest, err, errlen);
  if (kl == 10 && !strncmp(spec, "multi-turn", 10)) return multi_turn(rest, err, errlen);
  if (kl == 12 && !strncmp(spec, "cache-stress", 12)) return cache_stress(rest, err, errlen);
  if (kl == 5 && !strncmp(spec, "burst", 5)) return burst(rest, err, errlen);
  snprintf(err, errlen,
           "unknown workload \"%.*s\" (want mooncake:PATH, shared-prefix, multi-turn, "
           "cache-stress or burst)",
           (int)kl, spec);
  return NULL;
}

const char *ic_replay_workload_help(void) {
  return "Workloads (--workload=SPEC; parameters as key=value,key=value after the colon):\n"
         "  mooncake:PATH   Mooncake JSONL trace (timestamp ms, input_length, output_length,\n"
         "                  hash_ids of 512-token blocks); each hash id becomes 512 deterministic\n"
         "                  token ids, the last block is cut to input_length\n"
         "  shared-prefix   groups contexts x questions each, random order, Poisson arrivals:\n"
         "                  groups=16 questions=8 context=2048 question=128 output=64 rate=4 "
         "seed=1\n"
         "  multi-turn      chat sessions whose every turn extends the last (shared system "
         "prompt):\n"
         "                  sessions=32 turns=6 system=512 user=96 answer=192 think=20 (s, mean)\n"
         "                  rate=1 (sessions/s) seed=1\n"
         "  cache-stress    Zipf-popular prefixes, working set several times the fleet's "
         "capacity:\n"
         "                  prefixes=1024 prefix=16384 suffix=64 output=32 rate=4 zipf=0.8\n"
         "                  requests=2000 seed=1\n"
         "  burst           bursts of siblings sharing a new prefix, all within window ms:\n"
         "                  bursts=48 siblings=16 prefix=4096 suffix=128 output=64 window=50\n"
         "                  rate=2 (bursts/s) seed=1\n"
         "  rate is requests per second of workload time (before --speedup); lengths are tokens.\n";
}
