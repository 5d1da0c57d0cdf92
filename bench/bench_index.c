/* Benchmark of lib/index (issue 3 figures): memory per membership, ingest rate below and at the
 * cap, 128-block chain lookup latency at 10 M memberships (idle and under ingest), replica clear.
 * Prints JSON lines {"bench":"index","name","value","unit","params"}. IC_BENCH_SCALE=0.1 shrinks.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ic/index.h"

#define BLOCKS 128
#define TOKENS 16
#define REPLICAS 16

static double g_scale = 1.0;

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CPU time of this thread: on the shared, oversubscribed build machine wall-clock rates mostly
 * measure other people's builds; CPU-time rates are reported alongside. */
static int64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double g_fill_cpu_rate; /* blocks per CPU-second of the last fill() */

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
    fclose(f);
  }
  return res * sysconf(_SC_PAGESIZE);
}

static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/* Chain c: block j hash = BE8(mix(c, j)). */
typedef struct {
  uint8_t bytes[BLOCKS][8];
  ic_index_bytes_t bh[BLOCKS];
  int32_t bc[BLOCKS];
} chain_t;

static void make_chain(chain_t *ch, uint64_t c, uint64_t salt) {
  for (int j = 0; j < BLOCKS; j++) {
    uint64_t h = mix((c << 8 | (uint64_t)j) ^ salt);
    for (int k = 0; k < 8; k++)
      ch->bytes[j][k] = (uint8_t)(h >> (56 - 8 * k));
    ch->bh[j] = (ic_index_bytes_t){8, ch->bytes[j]};
    ch->bc[j] = TOKENS;
  }
}

static const char *rep_name(int r) {
  static char names[REPLICAS][16];
  if (!names[r][0]) snprintf(names[r], sizeof names[r], "replica-%02d", r);
  return names[r];
}

static int ingest_chain(ic_index_t *ix, const chain_t *ch, int replica) {
  ic_index_prefix_t p = {.block_hashes = ch->bh,
                         .n_block_hashes = BLOCKS,
                         .block_token_counts = ch->bc,
                         .n_block_token_counts = BLOCKS};
  ic_index_update_t u = {rep_name(replica), "llama", "tenant", "vllm", "", 0, &p, 1, NULL};
  return ic_index_ingest(ix, &u);
}

static void emit(const char *name, double v, const char *unit, const char *params) {
  printf("{\"bench\":\"index\",\"name\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"params\":{%s}}\n",
         name, v, unit, params);
  fflush(stdout);
}

static ic_index_t *new_index(int64_t cap) {
  ic_index_config_t c;
  ic_index_config_init(&c);
  c.ttl_ns = 3600LL * 1000000000LL;
  c.max_entries = cap;
  return ic_index_create(&c);
}

/* Fills n chains, chain c on `share` replicas starting at c % REPLICAS. Returns blocks/s. */
static double fill(ic_index_t *ix, uint64_t first, uint64_t n, int share) {
  chain_t ch;
  int64_t t0 = mono_ns(), c0 = cpu_ns();
  uint64_t blocks = 0;
  for (uint64_t c = first; c < first + n; c++) {
    make_chain(&ch, c, 0);
    for (int s = 0; s < share; s++) {
      ingest_chain(ix, &ch, (int)((c + (uint64_t)s * 4) % REPLICAS));
      blocks += BLOCKS;
    }
  }
  g_fill_cpu_rate = (double)blocks / ((double)(cpu_ns() - c0) / 1e9);
  return (double)blocks / ((double)(mono_ns() - t0) / 1e9);
}

/* ---------------------------------------------------------------- memory (forked) */

static void memory_figure(const char *name, int share) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    uint64_t memberships = (uint64_t)(10e6 * g_scale);
    uint64_t chains = memberships / BLOCKS / (uint64_t)share;
    long before = rss_bytes();
    ic_index_t *ix = new_index(0);
    double rate = fill(ix, 0, chains, share);
    long after = rss_bytes();
    ic_index_counters_t k;
    ic_index_counters(ix, &k);
    char params[256];
    snprintf(params, sizeof params,
             "\"memberships\":%lld,\"distinct_keys\":%lld,\"replicas\":%d,\"holders_per_chain\":%d,"
             "\"blocks\":%d,"
             "\"hash_bytes\":8,\"table_bytes\":%zu",
             (long long)k.total_entries, (long long)k.distinct_keys, REPLICAS, share, BLOCKS,
             k.memory_bytes);
    emit(name, (double)(after - before) / (double)k.total_entries, "bytes", params);
    if (share == 1) {
      snprintf(
          params, sizeof params,
          "\"memberships\":%lld,\"blocks_per_update\":%d,\"threads\":1,\"blocks_per_cpu_s\":%.0f",
          (long long)k.total_entries, BLOCKS, g_fill_cpu_rate);
      emit("ingest_blocks_per_s", rate, "blocks/s", params);
    }
    ic_index_destroy(ix);
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
}

/* ---------------------------------------------------------------- ingest at cap */

/* Two indexes of the same size, one uncapped and one at its cap, ingest interleaved chunks of
 * fresh chains so both see the same machine load; the ratio compares their rates. */
static void cap_figure(void) {
  int64_t cap = (int64_t)(2e6 * g_scale);
  ic_index_t *below = new_index(0), *at = new_index(cap);
  uint64_t chains = (uint64_t)cap / BLOCKS;
  fill(below, 0, chains, 1);
  fill(at, 0, chains, 1);
  double tb = 0, ta = 0;
  uint64_t next = chains, blocks = 0;
  for (int round = 0; round < 64; round++) {
    uint64_t n = chains / 64 + 1;
    int64_t t0 = mono_ns();
    fill(below, next, n, 1);
    int64_t t1 = mono_ns();
    fill(at, next, n, 1);
    int64_t t2 = mono_ns();
    tb += (double)(t1 - t0);
    ta += (double)(t2 - t1);
    next += n;
    blocks += n * BLOCKS;
  }
  ic_index_counters_t k;
  ic_index_counters(at, &k);
  char params[256];
  snprintf(params, sizeof params,
           "\"cap\":%lld,\"entries_at_cap\":%lld,\"below_blocks_per_s\":%.0f,\"at_cap_blocks_per_"
           "s\":%.0f,"
           "\"blocks_each\":%llu",
           (long long)cap, (long long)k.total_entries, (double)blocks / (tb / 1e9),
           (double)blocks / (ta / 1e9), (unsigned long long)blocks);
  emit("ingest_at_cap_ratio", tb / ta, "ratio", params);
  ic_index_destroy(below);
  ic_index_destroy(at);
}

/* ---------------------------------------------------------------- lookups */

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

typedef struct {
  double p50, p99, cpu_avg;
  long hits, partial, misses;
} lat_t;

static bool g_merge_predicted; /* lookups also merge speculative entries (predict-on-route) */

static lat_t lookup_mix(ic_index_t *ix, uint64_t chains, int n, uint64_t seed) {
  int64_t *lat = malloc((size_t)n * sizeof *lat);
  chain_t ch, rnd;
  lat_t out = {0};
  uint64_t s = seed;
  int64_t c0 = cpu_ns();
  for (int i = 0; i < n; i++) {
    s = mix(s + 1);
    uint64_t c = s % chains;
    int kind = (int)(s >> 40) % 3;
    make_chain(&ch, c, 0);
    if (kind == 1) { /* partial: first 64 blocks match, the rest are foreign */
      make_chain(&rnd, c, 0x5eed);
      for (int j = 64; j < BLOCKS; j++)
        ch.bh[j] = rnd.bh[j];
      for (int j = 64; j < BLOCKS; j++)
        memcpy(ch.bytes[j], rnd.bytes[j], 8), ch.bh[j].data = ch.bytes[j];
    } else if (kind == 2) {
      make_chain(&ch, c, 0xdead);
    }
    ic_index_lookup_t q = {.tenant = "tenant",
                           .model = "llama",
                           .scheme = "vllm",
                           .block_hashes = ch.bh,
                           .n_block_hashes = BLOCKS,
                           .block_token_counts = ch.bc,
                           .n_block_token_counts = BLOCKS};
    ic_index_result_t *r;
    int64_t t0 = mono_ns();
    ic_index_lookup_route(ix, &q, &r);
    if (g_merge_predicted) ic_index_result_add_predicted(ix, r, &q);
    lat[i] = mono_ns() - t0;
    size_t rows = ic_index_result_count(r);
    if (rows && ic_index_result_rows(r)[0].matched_tokens == BLOCKS * TOKENS)
      out.hits++;
    else if (rows)
      out.partial++;
    else
      out.misses++;
    ic_index_result_free(r);
  }
  out.cpu_avg = (double)(cpu_ns() - c0) / 1000.0 / n; /* includes building the request chain */
  qsort(lat, (size_t)n, sizeof *lat, cmp_i64);
  out.p50 = (double)lat[n / 2] / 1000.0;
  out.p99 = (double)lat[n * 99 / 100] / 1000.0;
  free(lat);
  return out;
}

typedef struct {
  ic_index_t *ix;
  double rate; /* blocks/s target */
  _Atomic bool stop;
  uint64_t next;
  uint64_t blocks;
} writer_t;

static void *writer(void *arg) {
  writer_t *w = arg;
  chain_t ch;
  int64_t t0 = mono_ns();
  while (!atomic_load(&w->stop)) {
    make_chain(&ch, w->next++, 0x77);
    ingest_chain(w->ix, &ch, (int)(w->next % REPLICAS));
    w->blocks += BLOCKS;
    int64_t due = t0 + (int64_t)((double)w->blocks / w->rate * 1e9);
    int64_t now = mono_ns();
    if (due > now) {
      struct timespec d = {(due - now) / 1000000000LL, (due - now) % 1000000000LL};
      nanosleep(&d, NULL);
    }
  }
  return NULL;
}

static void lookup_figures(void) {
  uint64_t chains = (uint64_t)(10e6 * g_scale) / BLOCKS;
  ic_index_t *ix = new_index(0);
  double rate = fill(ix, 0, chains, 1);
  int n = 200000;
  lookup_mix(ix, chains, 20000, 7); /* warm up */
  lat_t idle = lookup_mix(ix, chains, n, 11);
  char params[256];
  snprintf(params, sizeof params,
           "\"memberships\":%llu,\"chain_blocks\":%d,\"mix\":\"1/3 full, 1/3 64-block partial, 1/3 "
           "miss\","
           "\"lookups\":%d,\"threads\":1,\"cpu_us_per_lookup_avg\":%.3f",
           (unsigned long long)(chains * BLOCKS), BLOCKS, n, idle.cpu_avg);
  emit("lookup_chain128_p50_us", idle.p50, "us", params);
  emit("lookup_chain128_p99_us", idle.p99, "us", params);
  /* under ingest: a writer thread at 80% of the single-thread ingest rate */
  writer_t w = {.ix = ix, .rate = 0.8 * rate, .next = chains};
  lat_t idle2 = lookup_mix(ix, chains, n, 13);
  pthread_t th;
  pthread_create(&th, NULL, writer, &w);
  int64_t t0 = mono_ns();
  lat_t busy = lookup_mix(ix, chains, n, 13);
  double secs = (double)(mono_ns() - t0) / 1e9;
  atomic_store(&w.stop, true);
  pthread_join(th, NULL);
  double idle_p99 = idle.p99 < idle2.p99 ? idle.p99 : idle2.p99;
  snprintf(params, sizeof params,
           "\"idle_p99_us\":%.3f,\"busy_p99_us\":%.3f,\"busy_p50_us\":%.3f,\"writer_target_blocks_"
           "per_s\":%.0f,"
           "\"writer_actual_blocks_per_s\":%.0f",
           idle_p99, busy.p99, busy.p50, w.rate, (double)w.blocks / secs);
  emit("lookup_p99_under_ingest_ratio", busy.p99 / idle_p99, "ratio", params);
  ic_index_destroy(ix);
}

/* Predict-on-route (docs/ranking.md, section 3): the same lookup mix with the speculative merge, the
 * table at its default cap (65,536 entries: 512 predictions of 128 blocks, a quarter of them on
 * chains the mix looks up), and a thread recording predictions meanwhile (writes on the table's
 * own lock). Compared with the plain mix on the same index. */
typedef struct {
  ic_index_t *ix;
  uint64_t chains;
  _Atomic bool stop;
  long recorded;
} predictor_t;

static void predict_one(ic_index_t *ix, uint64_t c, uint64_t salt) {
  chain_t ch;
  make_chain(&ch, c, salt);
  ic_index_lookup_t q = {.tenant = "tenant", .model = "llama", .scheme = "vllm",
                         .block_hashes = ch.bh, .n_block_hashes = BLOCKS,
                         .block_token_counts = ch.bc, .n_block_token_counts = BLOCKS};
  ic_index_predict_record(ix, &q, rep_name((int)(c % REPLICAS)), 0);
}

static void *predictor(void *arg) {
  predictor_t *p = arg;
  uint64_t s = 99;
  while (!atomic_load(&p->stop)) {
    s = mix(s + 1);
    predict_one(p->ix, s % p->chains, s & 1 ? 0 : 0x5eed); /* half on looked-up chains */
    p->recorded++;
    struct timespec d = {0, 500000}; /* ~2,000 routed prompts/s */
    nanosleep(&d, NULL);
  }
  return NULL;
}

static void predict_figures(void) {
  uint64_t chains = (uint64_t)(10e6 * g_scale) / BLOCKS;
  ic_index_config_t c;
  ic_index_config_init(&c);
  c.ttl_ns = 3600LL * 1000000000LL;
  c.max_entries = 0;
  c.predict_ttl_ns = 3600LL * 1000000000LL; /* nothing expires during the run */
  ic_index_t *ix = ic_index_create(&c);
  fill(ix, 0, chains, 1);
  int n = 200000;
  g_merge_predicted = false;
  lookup_mix(ix, chains, 20000, 7);
  lat_t plain = lookup_mix(ix, chains, n, 11);
  for (uint64_t k = 0; k < 512; k++)
    predict_one(ix, mix(k) % chains, k % 4 ? 0x7777 : 0);
  g_merge_predicted = true;
  lookup_mix(ix, chains, 20000, 7);
  lat_t merged = lookup_mix(ix, chains, n, 11);
  predictor_t pr = {.ix = ix, .chains = chains};
  pthread_t th;
  pthread_create(&th, NULL, predictor, &pr);
  int64_t t0 = mono_ns();
  lat_t busy = lookup_mix(ix, chains, n, 13);
  double secs = (double)(mono_ns() - t0) / 1e9;
  atomic_store(&pr.stop, true);
  pthread_join(th, NULL);
  g_merge_predicted = false;
  ic_index_predict_stats_t st;
  ic_index_predict_stats(ix, &st);
  char params[384];
  snprintf(params, sizeof params,
           "\"chain_blocks\":%d,\"lookups\":%d,\"speculative_entries\":%lld,\"plain_p50_us\":%.3f,"
           "\"plain_p99_us\":%.3f,\"merged_p50_us\":%.3f,\"busy_p50_us\":%.3f,"
           "\"busy_p99_us\":%.3f,\"predictions_per_s_meanwhile\":%.0f",
           BLOCKS, n, (long long)st.entries, plain.p50, plain.p99, merged.p50, busy.p50, busy.p99,
           (double)pr.recorded / secs);
  emit("lookup_predict_chain128_p50_us", merged.p50, "us", params);
  emit("lookup_predict_chain128_p99_us", merged.p99, "us", params);
  emit("lookup_predict_p99_vs_plain_ratio", merged.p99 / plain.p99, "ratio", params);
  emit("lookup_predict_p99_under_recording_ratio", busy.p99 / plain.p99, "ratio", params);
  ic_index_destroy(ix);
}

/* ---------------------------------------------------------------- quota */

static int64_t g_quota;
static bool quota_of(void *ud, const char *tenant, int64_t *max) {
  (void)ud;
  (void)tenant;
  *max = g_quota;
  return true;
}

/* A tenant held at its quota (Fairness): every 128-block update of new keys evicts 128 of its
 * oldest keys. Reported per update, after the tenant first reached the quota. */
static void quota_figure(void) {
  g_quota = (int64_t)(100000 * g_scale) + 1;
  ic_index_config_t c;
  ic_index_config_init(&c);
  c.ttl_ns = 3600LL * 1000000000LL;
  c.quota_resolver = quota_of;
  ic_index_t *ix = ic_index_create(&c);
  uint64_t fill_chains = (uint64_t)g_quota / BLOCKS + 1, at = 400;
  fill(ix, 0, fill_chains, 1);
  int64_t t0 = mono_ns();
  fill(ix, fill_chains, at, 1);
  double us = (double)(mono_ns() - t0) / 1000.0 / (double)at;
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  char params[256];
  snprintf(params, sizeof params,
           "\"quota_keys\":%lld,\"distinct_keys\":%lld,\"blocks_per_update\":%d,\"updates\":%llu",
           (long long)g_quota, (long long)k.distinct_keys, BLOCKS, (unsigned long long)at);
  emit("ingest_at_quota_us_per_update", us, "us", params);
  ic_index_destroy(ix);
}

/* ---------------------------------------------------------------- clear */

static void clear_figure(void) {
  ic_index_t *ix = new_index(0);
  uint64_t chains = (uint64_t)(1e6 * g_scale) / BLOCKS + 1;
  chain_t ch;
  for (uint64_t c = 0; c < chains; c++) {
    make_chain(&ch, c, 0x1);
    ingest_chain(ix, &ch, 0);
    if (c % 8 == 0) ingest_chain(ix, &ch, 1); /* some shared keys */
  }
  ic_index_counters_t k;
  ic_index_counters(ix, &k);
  ic_index_event_t ev = {.type = IC_INDEX_EVENT_ALL_CLEARED,
                         .replica = rep_name(0),
                         .model = "llama",
                         .tenant = "tenant"};
  int64_t t0 = mono_ns();
  ic_index_apply_event(ix, &ev);
  int64_t visible = mono_ns() - t0;
  /* proof of visibility: a lookup right after the call sees no row of the cleared replica */
  make_chain(&ch, 3, 0x1);
  ic_index_lookup_t q = {.tenant = "tenant",
                         .model = "llama",
                         .scheme = "vllm",
                         .block_hashes = ch.bh,
                         .n_block_hashes = BLOCKS,
                         .block_token_counts = ch.bc,
                         .n_block_token_counts = BLOCKS};
  ic_index_result_t *r;
  ic_index_lookup_route(ix, &q, &r);
  bool leaked = false;
  for (size_t i = 0; i < ic_index_result_count(r); i++)
    leaked |= strcmp(ic_index_result_rows(r)[i].replica_id, rep_name(0)) == 0;
  ic_index_result_free(r);
  int64_t t1 = mono_ns();
  size_t steps = 0;
  while (ic_index_maintain(ix, 64))
    steps++;
  int64_t reclaim = mono_ns() - t1;
  char params[256];
  snprintf(params, sizeof params,
           "\"replica_blocks\":%llu,\"entries_before\":%lld,\"visible_after_call\":%s,\"lazy_"
           "reclaim_ms\":%.1f,"
           "\"reclaim_steps\":%zu",
           (unsigned long long)(chains * BLOCKS), (long long)k.total_entries,
           leaked ? "false" : "true", (double)reclaim / 1e6, steps);
  emit("clear_replica_1m_visible_us", (double)visible / 1000.0, "us", params);
  ic_index_destroy(ix);
}

int main(void) {
  const char *sc = getenv("IC_BENCH_SCALE");
  if (sc && atof(sc) > 0) g_scale = atof(sc);
  const char *only = getenv("IC_BENCH_ONLY"); /* mem|cap|quota|clear|lookup|predict: one group */
#define RUN(tag, call)                                                                             \
  if (!only || strcmp(only, tag) == 0) call
  RUN("mem", memory_figure("bytes_per_membership_unique", 1));
  RUN("mem", memory_figure("bytes_per_membership_shared", 4));
  RUN("cap", cap_figure());
  RUN("quota", quota_figure());
  RUN("clear", clear_figure());
  RUN("lookup", lookup_figures());
  RUN("predict", predict_figures());
  return 0;
}
