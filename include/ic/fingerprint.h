/* Content fingerprint (lib/fingerprint): token ids -> block-hash chain, identical to the
 * reference's frozen scheme: XXH3-64 seed 1337 over little-endian u32 tokens
 * per full block, prefix[i] = XXH3(LE64(prefix[i-1]) || LE64(content[i])), wire form 8 bytes
 * big-endian. Pure functions, no allocation, thread-safe. */
#ifndef IC_FINGERPRINT_H
#define IC_FINGERPRINT_H
#include <stddef.h>
#include <stdint.h>

#define IC_FP_SEED 1337ULL
#define IC_FP_DEFAULT_BLOCK_SIZE 16
#define IC_FP_WIRE_LEN 8

/* Number of full blocks in n tokens (0 when block_size <= 0). */
size_t ic_fp_block_count(size_t ntokens, int block_size);

/* XXH3-64(seed 1337) of the tokens encoded as little-endian u32. */
uint64_t ic_fp_content_hash(const uint32_t *tokens, size_t ntokens);

/* XXH3-64(seed 1337) of LE64(parent) || LE64(content). */
uint64_t ic_fp_chain_hash(uint64_t parent, uint64_t content);

/* Writes the positional prefix hashes of every full block into out[0..count) and returns count
 * (at most out_cap are written; the return value is the full count, like snprintf).
 * `parent` NULL starts a fresh sequence; otherwise block 0 chains from *parent.
 * `content_out`, when not NULL, receives the per-block content hashes too. */
size_t ic_fp_prefix_hashes(const uint32_t *tokens, size_t ntokens, int block_size,
                           const uint64_t *parent, uint64_t *out, size_t out_cap,
                           uint64_t *content_out);

/* 8-byte big-endian wire form and back. */
void ic_fp_to_wire(uint64_t h, uint8_t out[IC_FP_WIRE_LEN]);
uint64_t ic_fp_from_wire(const uint8_t in[IC_FP_WIRE_LEN]);

#endif
