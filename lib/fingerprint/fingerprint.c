/* Token ids -> XXH3 block-hash chain. Deliberate byte orders: little-endian
 * inside hash inputs, big-endian on the wire. Uses a small stack buffer per block so typical
 * block sizes (16) never allocate. */
#include "ic/fingerprint.h"

#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

static void put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

size_t ic_fp_block_count(size_t ntokens, int block_size) {
  return block_size <= 0 ? 0 : ntokens / (size_t)block_size;
}

uint64_t ic_fp_content_hash(const uint32_t *tokens, size_t ntokens) {
  uint8_t stack[256];
  size_t bytes = ntokens * 4;
  uint8_t *buf = bytes <= sizeof stack ? stack : malloc(bytes);
  if (!buf) {
    /* Streaming gives the same value as one-shot; use it rather than fail. */
    XXH3_state_t st;
    XXH3_64bits_reset_withSeed(&st, IC_FP_SEED);
    for (size_t i = 0; i < ntokens; i++) {
      uint8_t le[4];
      put_le32(le, tokens[i]);
      XXH3_64bits_update(&st, le, 4);
    }
    return XXH3_64bits_digest(&st);
  }
  for (size_t i = 0; i < ntokens; i++) put_le32(buf + 4 * i, tokens[i]);
  uint64_t h = XXH3_64bits_withSeed(buf, bytes, IC_FP_SEED);
  if (buf != stack) free(buf);
  return h;
}

uint64_t ic_fp_chain_hash(uint64_t parent, uint64_t content) {
  uint8_t in[16];
  put_le64(in, parent);
  put_le64(in + 8, content);
  return XXH3_64bits_withSeed(in, sizeof in, IC_FP_SEED);
}

size_t ic_fp_prefix_hashes(const uint32_t *tokens, size_t ntokens, int block_size,
                           const uint64_t *parent, uint64_t *out, size_t out_cap,
                           uint64_t *content_out) {
  size_t n = ic_fp_block_count(ntokens, block_size);
  size_t todo = n < out_cap ? n : out_cap;
  uint64_t prev = parent ? *parent : 0;
  for (size_t i = 0; i < todo; i++) {
    uint64_t c = ic_fp_content_hash(tokens + i * (size_t)block_size, (size_t)block_size);
    if (content_out) content_out[i] = c;
    prev = (i == 0 && !parent) ? c : ic_fp_chain_hash(prev, c);
    out[i] = prev;
  }
  return n;
}

void ic_fp_to_wire(uint64_t h, uint8_t out[IC_FP_WIRE_LEN]) {
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(h >> (56 - 8 * i));
}

uint64_t ic_fp_from_wire(const uint8_t in[IC_FP_WIRE_LEN]) {
  uint64_t h = 0;
  for (int i = 0; i < 8; i++) h = (h << 8) | in[i];
  return h;
}
