/* fake-engine, republish mode: publishes KV-cache events exactly the way vLLM and SGLang put them
 * on the wire (ZMQ PUB [topic, seq 8B BE, msgpack batch] + ROUTER replay socket), for tests,
 * benches and demos. With --http-bind-address it is the engine simulator instead (sim.c).
 *
 * Encodings: vllm-array (array envelope, positional tuples: vLLM <= 0.24 and REF's fake engine),
 * vllm-map (map envelope, tagged-map events, uint64 hashes >= 2^63: vLLM main), sglang (array
 * envelope with attn_dp_rank, one event per page, negative int64 hashes). Prompts are
 * deterministic (sequential from --start-token, or seeded pseudo-random); the EXPECT lines on
 * stderr and the JSON lines on stdout (--print-tokens) say which token ids were stored, so a test
 * can compute the lookup chain. Options inject evictions, clears, malformed frames and seq gaps. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <msgpack.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/cli.h"
#include "ic/clock.h"
#include "ic/enginesim.h"
#include "ic/fingerprint.h"
#include "ic/log.h"
#include "ic/version.h"
#include "sim.h"

typedef struct opts {
  const char *bind, *replay_bind, *topic, *lora_name, *medium;
  int enc;
  int64_t block_size, num_blocks, events, start_token, prompts, dp_rank, lora_id;
  int64_t count, evict_every, clear_every, gap_every, malformed_every, buffer_steps;
  uint64_t seed;
  int64_t interval_us, start_delay_us;
  bool omit_token_ids, print_tokens, ts_zero, hold;
} opts_t;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static const ic_cli_flag_t FLAGS[] = {
    {"bind", "string", "tcp://0.0.0.0:5557", "ZeroMQ PUB endpoint to bind"},
    {"replay-bind", "string", NULL, "ZeroMQ ROUTER replay endpoint to bind (default: none)"},
    {"topic", "string", "kv-events", "topic frame (frame 0) of every message"},
    {"encoding", "string", "vllm-array", "event encoding: vllm-array, vllm-map or sglang"},
    {"block-size", "int", "128", "tokens per block"},
    {"num-blocks", "int", "1", "full blocks per prompt"},
    {"events", "int", "1", "BlockStored events the blocks are split over"},
    {"prompts", "int", "1", "distinct prompts, published round-robin"},
    {"start-token", "int", NULL, "first token of prompt 0; prompt p starts at start + p * length"},
    {"seed", "int", NULL, "pseudo-random tokens from this seed instead (0 = sequential)"},
    {"interval", "duration", "500ms", "publish period"},
    {"rate", "float", NULL, "messages per second (overrides --interval)"},
    {"count", "int", NULL, "publish this many messages, then exit (0 = until a signal)"},
    {"dp-rank", "int", "-1", "data_parallel_rank in the envelope (-1 = omitted)"},
    {"lora-id", "int", "-1", "lora_id on BlockStored (-1 = nil)"},
    {"lora-name", "string", NULL, "lora_name on BlockStored"},
    {"medium", "string", NULL, "medium on events (default GPU for vllm-map, nil otherwise)"},
    {"omit-token-ids", NULL, NULL, "publish token_ids = nil"},
    {"evict-every", "int", NULL, "every Nth message is a BlockRemoved of the last prompt's blocks"},
    {"clear-every", "int", NULL, "every Nth message is AllBlocksCleared"},
    {"malformed-every", "int", NULL, "every Nth message is a garbage payload"},
    {"gap-every", "int", NULL, "every Nth message is not sent (kept for replay): a sequence gap"},
    {"buffer-steps", "int", "10000", "replay ring size"},
    {"ts-zero", NULL, NULL, "batch timestamp 0.0 instead of wall time"},
    {"print-tokens", NULL, NULL, "one JSON line per prompt on stdout: tokens and expected hashes"},
    {"start-delay", "duration", NULL, "wait before the first message (slow joiner)"},
    {"http-bind-address", "string", NULL,
     "run the engine simulator instead (a simulated vLLM replica; its flags:\n"
     "fake-engine --http-bind-address=x --help, docs/enginesim.md)"},
    {"hold", NULL, NULL,
     "with --count: keep serving replay after the last message until signalled"},
};
static const ic_cli_t CLI = {"fake-engine",
                             "publishes vLLM/SGLang KV-cache events like an engine (tests, demos)",
                             NULL, FLAGS, sizeof FLAGS / sizeof FLAGS[0]};

static void usage(FILE *f) { ic_cli_usage(&CLI, f); }

/* Go-style duration: 500ms, 1s, 1m30s, 250us, plain number = seconds. */
static int parse_dur(const char *s, int64_t *us) {
  double total = 0;
  const char *p = s;
  if (!*p) return -1;
  while (*p) {
    char *end;
    double v = strtod(p, &end);
    if (end == p) return -1;
    p = end;
    double mul = 1e6;
    if (!strncmp(p, "ms", 2))
      mul = 1e3, p += 2;
    else if (!strncmp(p, "us", 2))
      mul = 1, p += 2;
    else if (!strncmp(p, "ns", 2))
      mul = 1e-3, p += 2;
    else if (*p == 's')
      p++;
    else if (*p == 'm')
      mul = 60e6, p++;
    else if (*p == 'h')
      mul = 3600e6, p++;
    else if (*p)
      return -1;
    total += v * mul;
  }
  *us = (int64_t)total;
  return 0;
}

static int parse_i64(const char *s, int64_t *v) {
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (errno || end == s || *end) return -1;
  *v = x;
  return 0;
}

/* ---- prompts ------------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void prompt_tokens(const opts_t *o, int64_t p, uint32_t *out, size_t n) {
  if (o->seed) {
    uint64_t st = o->seed * 1000003ULL + (uint64_t)p;
    for (size_t i = 0; i < n; i++)
      out[i] = 1 + (uint32_t)(splitmix(&st) % 150000);
    return;
  }
  for (size_t i = 0; i < n; i++)
    out[i] = (uint32_t)(o->start_token + p * (int64_t)n + (int64_t)i);
}

/* Engine hash of global block index g: 0xE000+g like REF's fake engine; vllm-map sets the top bit
 * (real vLLM hashes are uniformly >= 2^63 half the time); SGLang's are negative int64. Returned
 * as the 64-bit pattern the encoder packs (int64 for array encodings, uint64 for vllm-map). */
static uint64_t engine_hash(const opts_t *o, uint64_t g) {
  uint64_t h = 0xE000 + g;
  if (o->enc == IC_ESIM_ENC_SGLANG) return (uint64_t)(-(int64_t)h);
  if (o->enc == IC_ESIM_ENC_VLLM_MAP) return h | 0x8000000000000000ULL;
  return h;
}

static const char *medium_of(const opts_t *o) {
  if (o->medium) return o->medium;
  return o->enc == IC_ESIM_ENC_VLLM_MAP ? "GPU" : NULL;
}

/* One BlockStored covering blocks [lo, hi) of prompt p. */
static void pack_stored(const opts_t *o, msgpack_packer *pk, int64_t p, int64_t lo, int64_t hi,
                        const uint32_t *tokens, uint64_t *scratch) {
  uint64_t g0 = (uint64_t)(p * o->num_blocks);
  for (int64_t i = lo; i < hi; i++)
    scratch[i - lo] = engine_hash(o, g0 + (uint64_t)i);
  uint64_t parent = lo ? engine_hash(o, g0 + (uint64_t)lo - 1) : 0;
  size_t ntok = (size_t)((hi - lo) * o->block_size);
  ic_esim_pack_stored(pk, o->enc, scratch, (size_t)(hi - lo), lo ? &parent : NULL,
                      o->omit_token_ids ? NULL : tokens + lo * o->block_size, ntok, o->block_size,
                      o->lora_id, medium_of(o), o->lora_name);
}

static void pack_removed(const opts_t *o, msgpack_packer *pk, int64_t p, uint64_t *scratch) {
  uint64_t g0 = (uint64_t)(p * o->num_blocks);
  for (int64_t i = 0; i < o->num_blocks; i++)
    scratch[i] = engine_hash(o, g0 + (uint64_t)i);
  ic_esim_pack_removed(pk, o->enc, scratch, (size_t)o->num_blocks, medium_of(o));
}

static double batch_ts(const opts_t *o) {
  return o->ts_zero ? 0.0 : (double)ic_clock_realtime_us() / 1e6;
}

/* ---- main --------------------------------------------------------------------------------- */

static void print_expect(const opts_t *o, int64_t p, const uint32_t *tokens, size_t ntok) {
  size_t nb = (size_t)o->num_blocks;
  uint64_t *ph = calloc(nb, sizeof(uint64_t));
  if (!ph) return;
  ic_fp_prefix_hashes(tokens, ntok, (int)o->block_size, NULL, ph, nb, NULL);
  if (o->omit_token_ids) {
    fprintf(stderr, "EXPECT no index entries (token_ids omitted) prompt=%" PRId64 "\n", p);
  } else {
    for (size_t i = 0; i < nb; i++)
      fprintf(stderr, "EXPECT prefix_hash[%zu]=%016" PRIx64 " token_count=%" PRId64 "\n", i, ph[i],
              (int64_t)(i + 1) * o->block_size);
  }
  if (o->print_tokens) {
    printf("{\"prompt\":%" PRId64 ",\"block_size\":%" PRId64 ",\"tokens\":[", p, o->block_size);
    for (size_t i = 0; i < ntok; i++)
      printf(i ? ",%u" : "%u", tokens[i]);
    printf("],\"prefix_hashes\":[");
    for (size_t i = 0; i < nb; i++)
      printf(i ? ",\"%016" PRIx64 "\"" : "\"%016" PRIx64 "\"", ph[i]);
    printf("]}\n");
    fflush(stdout);
  }
  free(ph);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strncmp(argv[i], "--http-bind-address", 19) || !strncmp(argv[i], "-http-bind-address", 18))
      return fake_engine_sim_main(argc, argv);
  opts_t o = {.bind = "tcp://0.0.0.0:5557",
              .topic = "kv-events",
              .enc = IC_ESIM_ENC_VLLM_ARRAY,
              .block_size = 128,
              .num_blocks = 1,
              .events = 1,
              .prompts = 1,
              .dp_rank = -1,
              .lora_id = -1,
              .interval_us = 500000,
              .buffer_steps = 10000};
  static const struct option lo[] = {{"bind", required_argument, 0, 'b'},
                                     {"replay-bind", required_argument, 0, 'R'},
                                     {"topic", required_argument, 0, 't'},
                                     {"encoding", required_argument, 0, 'e'},
                                     {"block-size", required_argument, 0, 'B'},
                                     {"num-blocks", required_argument, 0, 'N'},
                                     {"events", required_argument, 0, 'E'},
                                     {"prompts", required_argument, 0, 'P'},
                                     {"start-token", required_argument, 0, 's'},
                                     {"seed", required_argument, 0, 'S'},
                                     {"interval", required_argument, 0, 'i'},
                                     {"rate", required_argument, 0, 'r'},
                                     {"count", required_argument, 0, 'c'},
                                     {"dp-rank", required_argument, 0, 'd'},
                                     {"lora-id", required_argument, 0, 'l'},
                                     {"lora-name", required_argument, 0, 'L'},
                                     {"medium", required_argument, 0, 'm'},
                                     {"omit-token-ids", no_argument, 0, 'o'},
                                     {"evict-every", required_argument, 0, 'v'},
                                     {"clear-every", required_argument, 0, 'C'},
                                     {"malformed-every", required_argument, 0, 'M'},
                                     {"gap-every", required_argument, 0, 'g'},
                                     {"buffer-steps", required_argument, 0, 'u'},
                                     {"ts-zero", no_argument, 0, 'z'},
                                     {"print-tokens", no_argument, 0, 'p'},
                                     {"start-delay", required_argument, 0, 'D'},
                                     {"hold", no_argument, 0, 'H'},
                                     {"help", no_argument, 0, 'h'},
                                     {"version", no_argument, 0, 'V'},
                                     {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long_only(argc, argv, "h", lo, NULL)) != -1) {
    int bad = 0;
    int64_t v;
    switch (c) {
    case 'b': o.bind = optarg; break;
    case 'R': o.replay_bind = optarg; break;
    case 't': o.topic = optarg; break;
    case 'e':
      o.enc = ic_esim_encoding_parse(optarg);
      bad = o.enc < 0;
      break;
    case 'B': bad = parse_i64(optarg, &o.block_size); break;
    case 'N': bad = parse_i64(optarg, &o.num_blocks); break;
    case 'E': bad = parse_i64(optarg, &o.events); break;
    case 'P': bad = parse_i64(optarg, &o.prompts); break;
    case 's': bad = parse_i64(optarg, &o.start_token); break;
    case 'S':
      bad = parse_i64(optarg, &v);
      o.seed = (uint64_t)v;
      break;
    case 'i': bad = parse_dur(optarg, &o.interval_us); break;
    case 'r': {
      char *end;
      double r = strtod(optarg, &end);
      if (*end || !(r > 0))
        bad = 1;
      else
        o.interval_us = (int64_t)(1e6 / r);
      break;
    }
    case 'c': bad = parse_i64(optarg, &o.count); break;
    case 'd': bad = parse_i64(optarg, &o.dp_rank); break;
    case 'l': bad = parse_i64(optarg, &o.lora_id); break;
    case 'L': o.lora_name = optarg; break;
    case 'm': o.medium = optarg; break;
    case 'o': o.omit_token_ids = true; break;
    case 'v': bad = parse_i64(optarg, &o.evict_every); break;
    case 'C': bad = parse_i64(optarg, &o.clear_every); break;
    case 'M': bad = parse_i64(optarg, &o.malformed_every); break;
    case 'g': bad = parse_i64(optarg, &o.gap_every); break;
    case 'u': bad = parse_i64(optarg, &o.buffer_steps); break;
    case 'z': o.ts_zero = true; break;
    case 'p': o.print_tokens = true; break;
    case 'D': bad = parse_dur(optarg, &o.start_delay_us); break;
    case 'H': o.hold = true; break;
    case 'h': usage(stdout); return 0;
    case 'V': ic_version_print(stdout, CLI.program); return 0;
    default: return ic_cli_fail(&CLI, "flag provided but not defined or missing its value");
    }
    if (bad) return ic_cli_fail(&CLI, "invalid flag value: %s", argv[optind - 1]);
  }
  if (optind < argc) return ic_cli_fail(&CLI, "unexpected argument: %s", argv[optind]);
  /* The reference's validation, exit 1 like log.Fatalf. */
  if (o.block_size <= 0 || o.num_blocks <= 0 || o.prompts <= 0) {
    fprintf(stderr, "fake-engine: block-size, num-blocks and prompts must be > 0\n");
    return 1;
  }
  if (o.block_size * o.num_blocks > (1 << 24)) {
    fprintf(stderr, "fake-engine: block-size x num-blocks must be <= 16777216 tokens\n");
    return 1;
  }
  int64_t total = o.block_size * o.num_blocks;
  if (o.start_token < 0 || o.start_token + o.prompts * total - 1 > (int64_t)UINT32_MAX) {
    fprintf(stderr, "fake-engine: token ids must stay within [0, 2^32-1]\n");
    return 1;
  }
  if (o.interval_us <= 0) {
    fprintf(stderr, "fake-engine: interval must be > 0\n");
    return 1;
  }
  if (o.events < 1 || o.events > o.num_blocks) {
    fprintf(stderr, "build payload: events must be in [1, %" PRId64 "], got %" PRId64 "\n",
            o.num_blocks, o.events);
    return 1;
  }
  if (o.enc == IC_ESIM_ENC_SGLANG) o.events = o.num_blocks; /* one event per page */

  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);

  uint32_t **tok = calloc((size_t)o.prompts, sizeof(uint32_t *));
  if (!tok) return 1;
  for (int64_t p = 0; p < o.prompts; p++) {
    tok[p] = malloc((size_t)total * sizeof(uint32_t));
    if (!tok[p]) return 1;
    prompt_tokens(&o, p, tok[p], (size_t)total);
    print_expect(&o, p, tok[p], (size_t)total);
  }

  char err[512];
  ic_esim_pub_t *pub =
      ic_esim_pub_new(o.bind, o.replay_bind, o.topic,
                      o.buffer_steps > 0 ? (size_t)o.buffer_steps : 0, err, sizeof err);
  if (!pub) {
    fprintf(stderr, "fake-engine: %s\n", err);
    return 1;
  }
  bool router = o.replay_bind && *o.replay_bind;
  ic_log_info("fake_engine_started", IC_LS("version", ic_version), IC_LS("commit", ic_git_commit),
              IC_LS("bind", o.bind), IC_LS("replay_bind", o.replay_bind ? o.replay_bind : ""));
  char every[32]; /* REF prints a Go duration ("500ms", "1s") */
  if (o.interval_us % 1000000 == 0)
    snprintf(every, sizeof(every), "%llds", (long long)(o.interval_us / 1000000));
  else if (o.interval_us % 1000 == 0)
    snprintf(every, sizeof(every), "%lldms", (long long)(o.interval_us / 1000));
  else
    snprintf(every, sizeof(every), "%lldus", (long long)o.interval_us);
  fprintf(stderr,
          "publishing %" PRId64 " BlockStored event(s) per batch on %s topic=\"%s\" (%" PRId64
          " block(s), %" PRId64 " tokens) every %s encoding=%s prompts=%" PRId64 "%s%s\n",
          o.events, o.bind, o.topic, o.num_blocks, total, every, ic_esim_encoding_name(o.enc),
          o.prompts, router ? " replay=" : "", router ? o.replay_bind : "");

  uint64_t seq = 0;
  /* PUB/SUB slow joiner: give subscribers time to connect before the first message. */
  int64_t next = ic_clock_monotonic_us() + o.start_delay_us;
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  uint64_t *scratch = calloc((size_t)o.num_blocks, sizeof *scratch);
  if (!scratch) return 1;
  int64_t last_prompt = 0;
  while (!g_stop && (o.count <= 0 || (int64_t)seq < o.count)) {
    int64_t now = ic_clock_monotonic_us();
    if (now < next) {
      ic_esim_pub_serve(pub, (long)((next - now + 999) / 1000));
      continue;
    }
    next += o.interval_us;
    if (next < now) next = now; /* do not burst after a stall */
    msgpack_sbuffer_clear(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t k = seq + 1; /* 1-based message number for the every-N knobs */
    if (o.malformed_every > 0 && k % (uint64_t)o.malformed_every == 0) {
      msgpack_sbuffer_write(&sb, "\xff\x00\x01", 3);
    } else if (o.clear_every > 0 && k % (uint64_t)o.clear_every == 0) {
      ic_esim_pack_envelope_begin(&pk, o.enc, batch_ts(&o), o.dp_rank, 1);
      ic_esim_pack_cleared(&pk, o.enc);
      ic_esim_pack_envelope_end(&pk, o.enc, o.dp_rank);
    } else if (o.evict_every > 0 && k % (uint64_t)o.evict_every == 0) {
      ic_esim_pack_envelope_begin(&pk, o.enc, batch_ts(&o), o.dp_rank, 1);
      pack_removed(&o, &pk, last_prompt, scratch);
      ic_esim_pack_envelope_end(&pk, o.enc, o.dp_rank);
    } else {
      int64_t p = (int64_t)(seq % (uint64_t)o.prompts);
      last_prompt = p;
      ic_esim_pack_envelope_begin(&pk, o.enc, batch_ts(&o), o.dp_rank, (size_t)o.events);
      int64_t base = o.num_blocks / o.events, rem = o.num_blocks % o.events, lo = 0;
      for (int64_t e = 0; e < o.events; e++) {
        int64_t n = base + (e < rem ? 1 : 0);
        pack_stored(&o, &pk, p, lo, lo + n, tok[p], scratch);
        lo += n;
      }
      ic_esim_pack_envelope_end(&pk, o.enc, o.dp_rank);
    }
    bool gap = o.gap_every > 0 && k % (uint64_t)o.gap_every == 0;
    if (ic_esim_pub_send(pub, sb.data, sb.size, gap) != 0)
      fprintf(stderr, "send err: publish failed\n");
    seq++;
  }
  /* One-shot mode: keep serving replay requests briefly so a subscriber can repair a final gap. */
  if (router && o.count > 0 && !g_stop) {
    if (o.hold) fprintf(stderr, "holding: published %" PRIu64 " messages\n", seq);
    int64_t until = o.hold ? INT64_MAX : ic_clock_monotonic_us() + 2000000;
    while (!g_stop && ic_clock_monotonic_us() < until) {
      ic_esim_pub_serve(pub, 100);
    }
  }
  msgpack_sbuffer_destroy(&sb);
  for (int64_t p = 0; p < o.prompts; p++)
    free(tok[p]);
  free(tok);
  free(scratch);
  ic_esim_pub_free(pub);
  return 0;
}
