/* fake-engine simulator mode: a simulated vLLM replica (lib/enginesim) behind an OpenAI-compatible
 * HTTP server, publishing real KV events. Only flags and wiring live here. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/cli.h"
#include "ic/enginesim.h"
#include "ic/http.h"
#include "ic/log.h"
#include "ic/version.h"
#include "sim.h"

static const ic_cli_flag_t FLAGS[] = {
    {"http-bind-address", "string", NULL,
     "OpenAI-compatible HTTP listener host:port (port 0 = any)"},
    {"bind", "string", "tcp://*:5557", "ZeroMQ PUB endpoint for KV events (\"\" = none)"},
    {"replay-bind", "string", NULL, "ZeroMQ ROUTER replay endpoint (default: none)"},
    {"topic", "string", "kv-events", "topic frame (frame 0) of every message"},
    {"encoding", "string", "vllm-map", "event encoding: vllm-map, vllm-array or sglang"},
    {"dp-rank", "int", "-1", "data_parallel_rank in the envelope (-1 = omitted)"},
    {"buffer-steps", "int", "10000", "replay ring size in messages"},
    {"model", "string", "sim-model", "served model id"},
    {"block-size", "int", "16", "tokens per KV block"},
    {"kv-capacity-tokens", "int", "450000", "GPU KV cache size in tokens"},
    {"cpu-offload-tokens", "int", "0", "CPU offload tier in tokens, medium CPU (0 = off)"},
    {"max-num-seqs", "int", "256", "running requests per step"},
    {"max-num-batched-tokens", "int", "8192", "tokens per step (chunked prefill)"},
    {"max-model-len", "int", "131072", "prompt + completion limit"},
    {"speedup", "float", "1", "simulated ms per wall ms"},
    {"step-base-ms", "float", "6.2", "time model: fixed cost of a step"},
    {"prefill-us-per-token", "float", "30", "time model: per computed prompt token"},
    {"attn-ns-per-token-pair", "float", "1.3", "time model: prefill attention per token pair"},
    {"decode-us-per-seq", "float", "120", "time model: per decoding sequence"},
    {"kv-read-ns-per-token", "float", "40", "time model: per context token read when decoding"},
    {"cpu-load-us-per-token", "float", "2.6", "time model: per token loaded from the CPU tier"},
    {"stream-interval", "int", "1", "tokens per SSE chunk after the first"},
    {"hash-seed", "int", "0", "seed of the chained block hash"},
    {"http-threads", "int", "2", "HTTP worker threads"},
};
static const ic_cli_t CLI = {"fake-engine",
                             "engine simulator: a simulated vLLM replica (OpenAI-compatible HTTP, "
                             "paged KV cache, real KV events; docs/enginesim.md)",
                             NULL, FLAGS, sizeof FLAGS / sizeof FLAGS[0]};

static int parse_i64(const char *s, int64_t *v) {
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (errno || end == s || *end) return -1;
  *v = x;
  return 0;
}

static int parse_f(const char *s, double *v) {
  char *end;
  errno = 0;
  double x = strtod(s, &end);
  if (errno || end == s || *end || !(x >= 0)) return -1;
  *v = x;
  return 0;
}

enum {
  O_HTTP = 256,
  O_BIND,
  O_REPLAY,
  O_TOPIC,
  O_ENC,
  O_DP,
  O_BUF,
  O_MODEL,
  O_BS,
  O_CAP,
  O_CPU,
  O_SEQS,
  O_BATCH,
  O_MAXLEN,
  O_SPEED,
  O_BASE,
  O_PREF,
  O_ATTN,
  O_DEC,
  O_KVR,
  O_CPUL,
  O_SINT,
  O_SEED,
  O_THREADS,
  O_HELP,
  O_VERSION
};

int fake_engine_sim_main(int argc, char **argv) {
  ic_esim_config_t cfg;
  ic_esim_config_defaults(&cfg);
  const char *http = NULL, *bind = "tcp://*:5557", *replay = NULL, *topic = "kv-events";
  int64_t cap_tokens = 450000, cpu_tokens = 0, ring = 10000, threads = 2, v = 0;
  static const struct option lo[] = {{"http-bind-address", required_argument, 0, O_HTTP},
                                     {"bind", required_argument, 0, O_BIND},
                                     {"replay-bind", required_argument, 0, O_REPLAY},
                                     {"topic", required_argument, 0, O_TOPIC},
                                     {"encoding", required_argument, 0, O_ENC},
                                     {"dp-rank", required_argument, 0, O_DP},
                                     {"buffer-steps", required_argument, 0, O_BUF},
                                     {"model", required_argument, 0, O_MODEL},
                                     {"block-size", required_argument, 0, O_BS},
                                     {"kv-capacity-tokens", required_argument, 0, O_CAP},
                                     {"cpu-offload-tokens", required_argument, 0, O_CPU},
                                     {"max-num-seqs", required_argument, 0, O_SEQS},
                                     {"max-num-batched-tokens", required_argument, 0, O_BATCH},
                                     {"max-model-len", required_argument, 0, O_MAXLEN},
                                     {"speedup", required_argument, 0, O_SPEED},
                                     {"step-base-ms", required_argument, 0, O_BASE},
                                     {"prefill-us-per-token", required_argument, 0, O_PREF},
                                     {"attn-ns-per-token-pair", required_argument, 0, O_ATTN},
                                     {"decode-us-per-seq", required_argument, 0, O_DEC},
                                     {"kv-read-ns-per-token", required_argument, 0, O_KVR},
                                     {"cpu-load-us-per-token", required_argument, 0, O_CPUL},
                                     {"stream-interval", required_argument, 0, O_SINT},
                                     {"hash-seed", required_argument, 0, O_SEED},
                                     {"http-threads", required_argument, 0, O_THREADS},
                                     {"help", no_argument, 0, O_HELP},
                                     {"version", no_argument, 0, O_VERSION},
                                     {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long_only(argc, argv, "", lo, NULL)) != -1) {
    int bad = 0;
    switch (c) {
    case O_HTTP: http = optarg; break;
    case O_BIND: bind = optarg; break;
    case O_REPLAY: replay = optarg; break;
    case O_TOPIC: topic = optarg; break;
    case O_ENC: bad = (cfg.encoding = ic_esim_encoding_parse(optarg)) < 0; break;
    case O_DP: bad = parse_i64(optarg, &cfg.dp_rank); break;
    case O_BUF: bad = parse_i64(optarg, &ring) || ring < 0; break;
    case O_MODEL:
      cfg.model = optarg;
      bad = !*optarg;
      break;
    case O_BS:
      bad = parse_i64(optarg, &v) || v < 1 || v > 4096;
      cfg.kv.block_size = (int)v;
      break;
    case O_CAP: bad = parse_i64(optarg, &cap_tokens) || cap_tokens < 1; break;
    case O_CPU: bad = parse_i64(optarg, &cpu_tokens) || cpu_tokens < 0; break;
    case O_SEQS:
      bad = parse_i64(optarg, &cfg.sched.max_num_seqs) || cfg.sched.max_num_seqs < 1;
      break;
    case O_BATCH:
      bad = parse_i64(optarg, &cfg.sched.max_num_batched_tokens) ||
            cfg.sched.max_num_batched_tokens < 1;
      break;
    case O_MAXLEN:
      bad = parse_i64(optarg, &cfg.sched.max_model_len) || cfg.sched.max_model_len < 2;
      break;
    case O_SPEED: bad = parse_f(optarg, &cfg.speedup) || cfg.speedup <= 0; break;
    case O_BASE: bad = parse_f(optarg, &cfg.time.step_base_ms); break;
    case O_PREF: bad = parse_f(optarg, &cfg.time.prefill_us_per_token); break;
    case O_ATTN: bad = parse_f(optarg, &cfg.time.attn_ns_per_token_pair); break;
    case O_DEC: bad = parse_f(optarg, &cfg.time.decode_us_per_seq); break;
    case O_KVR: bad = parse_f(optarg, &cfg.time.kv_read_ns_per_token); break;
    case O_CPUL: bad = parse_f(optarg, &cfg.time.cpu_load_us_per_token); break;
    case O_SINT:
      bad = parse_i64(optarg, &v) || v < 1 || v > 1 << 20;
      cfg.stream_interval = (int)v;
      break;
    case O_SEED:
      bad = parse_i64(optarg, &v);
      cfg.kv.hash_seed = (uint64_t)v;
      break;
    case O_THREADS: bad = parse_i64(optarg, &threads) || threads < 1 || threads > 64; break;
    case O_HELP: ic_cli_usage(&CLI, stdout); return 0;
    case O_VERSION: ic_version_print(stdout, CLI.program); return 0;
    default: return ic_cli_fail(&CLI, "flag provided but not defined or missing its value");
    }
    if (bad) return ic_cli_fail(&CLI, "invalid flag value: %s", argv[optind - 1]);
  }
  if (optind < argc) return ic_cli_fail(&CLI, "unexpected argument: %s", argv[optind]);
  if (!http || !*http) return ic_cli_fail(&CLI, "--http-bind-address is required");
  cfg.kv.gpu_blocks = cap_tokens / cfg.kv.block_size;
  cfg.kv.cpu_blocks = cpu_tokens / cfg.kv.block_size;
  if (cfg.kv.gpu_blocks < 1 || cfg.kv.gpu_blocks > (1 << 28) || cfg.kv.cpu_blocks > (1 << 28)) {
    fprintf(stderr, "fake-engine: --kv-capacity-tokens must hold 1 to 2^28 blocks\n");
    return 1;
  }

  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* every thread inherits it; main sigwaits */
  signal(SIGPIPE, SIG_IGN);

  char err[512];
  ic_esim_pub_t *pub = NULL;
  if (*bind) {
    pub = ic_esim_pub_new(bind, replay, topic, (size_t)ring, err, sizeof err);
    if (!pub || ic_esim_pub_start(pub) != 0) {
      fprintf(stderr, "fake-engine: %s\n", pub ? "cannot start the publisher" : err);
      ic_esim_pub_free(pub);
      return 1;
    }
  }
  ic_esim_engine_t *eng = ic_esim_engine_new(&cfg, pub);
  ic_http_config_t hc = {.bind = http, .threads = (unsigned)threads, .name = "engine-http"};
  ic_http_server_t *srv = eng ? ic_http_new(&hc) : NULL;
  int rc = 1;
  if (!srv || ic_esim_api_register(srv, eng) != 0) {
    fprintf(stderr, "fake-engine: out of memory\n");
    goto out;
  }
  if (ic_http_start(srv, err, sizeof err) != 0) {
    fprintf(stderr, "fake-engine: %s\n", err);
    goto out;
  }
  if (ic_esim_engine_start(eng) != 0) goto out;
  ic_log_info("engine_simulator_started", IC_LS("version", ic_version),
              IC_LS("commit", ic_git_commit), IC_LS("model", cfg.model),
              IC_LI("block_size", cfg.kv.block_size),
              IC_LI("kv_capacity_tokens", cfg.kv.gpu_blocks * cfg.kv.block_size),
              IC_LI("cpu_offload_tokens", cfg.kv.cpu_blocks * cfg.kv.block_size),
              IC_LI("max_num_seqs", cfg.sched.max_num_seqs),
              IC_LI("max_num_batched_tokens", cfg.sched.max_num_batched_tokens),
              IC_LD("speedup", cfg.speedup), IC_LS("events", *bind ? bind : "off"),
              IC_LS("encoding", ic_esim_encoding_name(cfg.encoding)),
              IC_LS("replay", replay ? replay : "off"), IC_LI("http_port", ic_http_port(srv)));
  char host[256];
  int port;
  ic_http_split_hostport(http, host, &port);
  printf("ready http=%s:%d\n", *host ? host : "0.0.0.0", ic_http_port(srv));
  fflush(stdout);
  int sig;
  sigwait(&sigs, &sig);
  rc = 0;
out:
  if (srv) ic_http_quiesce(srv);
  ic_esim_engine_stop(eng); /* aborts in-flight requests: their streams end */
  if (srv) ic_http_stop(srv, 5000);
  ic_http_free(srv);
  ic_esim_engine_free(eng);
  ic_esim_pub_free(pub);
  return rc;
}
