/* Step-time model of the simulated engine: how long one forward pass over a mixed batch (prompt
 * chunks + decoding sequences) takes. Linear terms plus a prefill attention term; constants are
 * flags, defaults calibrated in docs/enginesim.md (Llama-3.1-8B bf16 on one H100 80GB). */
#include "ic/enginesim.h"

void ic_esim_time_defaults(ic_esim_time_config_t *c) {
  /* Weights (16 GB) read once per step at ~3.35 TB/s is ~4.8 ms; the measured single-stream
   * TPOT of 6.5 ms includes launch/sampling overhead, less the per-sequence and KV terms. */
  c->step_base_ms = 6.2;
  /* 2 x 8.03e9 FLOP per token at ~55% of the H100's 989 TFLOP/s dense bf16. */
  c->prefill_us_per_token = 30.0;
  /* 4 x 32 layers x 4096 FLOP per (query, key) pair at ~40% of peak. */
  c->attn_ns_per_token_pair = 1.3;
  /* Slope of the measured TPOT from 1 to 16 concurrent streams, less the KV reads. */
  c->decode_us_per_seq = 120.0;
  /* 128 KiB of K/V per token (32 layers x 8 KV heads x 128 x 2 x bf16) at ~3.35 TB/s. */
  c->kv_read_ns_per_token = 40.0;
  /* 128 KiB per token over PCIe Gen5 x16 at ~50 GB/s. */
  c->cpu_load_us_per_token = 2.6;
}

double ic_esim_time_step_ms(const ic_esim_time_config_t *c, const ic_esim_batch_t *b) {
  if (b->prefill_tokens <= 0 && b->decode_seqs <= 0) return 0.0;
  double us = c->step_base_ms * 1e3;
  us += c->prefill_us_per_token * (double)b->prefill_tokens;
  us += c->attn_ns_per_token_pair * b->prefill_pairs / 1e3;
  us += c->decode_us_per_seq * (double)b->decode_seqs;
  us += c->kv_read_ns_per_token * (double)b->decode_context / 1e3;
  us += c->cpu_load_us_per_token * (double)b->cpu_load_tokens;
  return us / 1e3;
}
