/* KV-event encodings exactly as engines put them on the wire: vllm-array (array envelope,
 * positional tuples: vLLM <= 0.24), vllm-map (map envelope, tagged-map events, uint64 hashes:
 * vLLM main), sglang (array envelope with the attn_dp_rank slot, int64 hashes). */
#include <string.h>

#include "ic/enginesim.h"

static const char *const ENC_NAMES[] = {"vllm-array", "vllm-map", "sglang"};

int ic_esim_encoding_parse(const char *s) {
  for (int i = 0; i < 3; i++)
    if (s && !strcmp(s, ENC_NAMES[i])) return i;
  return -1;
}

const char *ic_esim_encoding_name(int enc) {
  return enc >= 0 && enc < 3 ? ENC_NAMES[enc] : "unknown";
}

static void pk_str(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

static void pk_optstr(msgpack_packer *pk, const char *s) {
  if (s)
    pk_str(pk, s);
  else
    msgpack_pack_nil(pk);
}

static void pk_hash(msgpack_packer *pk, int enc, uint64_t h) {
  if (enc == IC_ESIM_ENC_VLLM_MAP)
    msgpack_pack_uint64(pk, h);
  else
    msgpack_pack_int64(pk, (int64_t)h);
}

void ic_esim_pack_stored(msgpack_packer *pk, int enc, const uint64_t *hashes, size_t n,
                         const uint64_t *parent, const uint32_t *tokens, size_t ntok,
                         int64_t block_size, int64_t lora_id, const char *medium,
                         const char *lora_name) {
  bool map = enc == IC_ESIM_ENC_VLLM_MAP;
  if (map) {
    msgpack_pack_map(pk, 10);
    pk_str(pk, "type");
    pk_str(pk, "BlockStored");
    pk_str(pk, "block_hashes");
  } else {
    /* Trailing defaults omitted as msgspec does: 6 fields, 7 with medium, 8 with lora_name. */
    msgpack_pack_array(pk, lora_name ? 8 : medium ? 7 : 6);
    pk_str(pk, "BlockStored");
  }
  msgpack_pack_array(pk, n);
  for (size_t i = 0; i < n; i++)
    pk_hash(pk, enc, hashes[i]);
  if (map) pk_str(pk, "parent_block_hash");
  if (parent)
    pk_hash(pk, enc, *parent);
  else
    msgpack_pack_nil(pk);
  if (map) pk_str(pk, "token_ids");
  if (!tokens) {
    msgpack_pack_nil(pk);
  } else {
    msgpack_pack_array(pk, ntok);
    for (size_t i = 0; i < ntok; i++)
      msgpack_pack_uint32(pk, tokens[i]);
  }
  if (map) pk_str(pk, "block_size");
  msgpack_pack_int64(pk, block_size);
  if (map) pk_str(pk, "lora_id");
  if (lora_id >= 0)
    msgpack_pack_int64(pk, lora_id);
  else
    msgpack_pack_nil(pk);
  if (map) {
    pk_str(pk, "medium");
    pk_optstr(pk, medium);
    pk_str(pk, "lora_name");
    pk_optstr(pk, lora_name);
    pk_str(pk, "extra_keys");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
      msgpack_pack_nil(pk);
    pk_str(pk, "group_idx");
    msgpack_pack_int(pk, 0);
  } else {
    if (medium || lora_name) pk_optstr(pk, medium);
    if (lora_name) pk_str(pk, lora_name);
  }
}

void ic_esim_pack_removed(msgpack_packer *pk, int enc, const uint64_t *hashes, size_t n,
                          const char *medium) {
  bool map = enc == IC_ESIM_ENC_VLLM_MAP;
  if (map) {
    msgpack_pack_map(pk, 3);
    pk_str(pk, "type");
    pk_str(pk, "BlockRemoved");
    pk_str(pk, "block_hashes");
  } else {
    msgpack_pack_array(pk, medium ? 3 : 2);
    pk_str(pk, "BlockRemoved");
  }
  msgpack_pack_array(pk, n);
  for (size_t i = 0; i < n; i++)
    pk_hash(pk, enc, hashes[i]);
  if (map) {
    pk_str(pk, "medium");
    pk_optstr(pk, medium);
  } else if (medium) {
    pk_str(pk, medium);
  }
}

void ic_esim_pack_cleared(msgpack_packer *pk, int enc) {
  if (enc == IC_ESIM_ENC_VLLM_MAP) {
    msgpack_pack_map(pk, 1);
    pk_str(pk, "type");
  } else {
    msgpack_pack_array(pk, 1);
  }
  pk_str(pk, "AllBlocksCleared");
}

void ic_esim_pack_envelope_begin(msgpack_packer *pk, int enc, double ts, int64_t dp_rank,
                                 size_t nevents) {
  if (enc == IC_ESIM_ENC_VLLM_MAP) {
    msgpack_pack_map(pk, dp_rank >= 0 ? 3 : 2);
    pk_str(pk, "ts");
    msgpack_pack_double(pk, ts);
    if (dp_rank >= 0) {
      pk_str(pk, "data_parallel_rank");
      msgpack_pack_int64(pk, dp_rank);
    }
    pk_str(pk, "events");
    msgpack_pack_array(pk, nevents);
    return;
  }
  bool rank = enc == IC_ESIM_ENC_SGLANG || dp_rank >= 0;
  msgpack_pack_array(pk, rank ? 3 : 2);
  msgpack_pack_double(pk, ts);
  msgpack_pack_array(pk, nevents);
}

void ic_esim_pack_envelope_end(msgpack_packer *pk, int enc, int64_t dp_rank) {
  if (enc == IC_ESIM_ENC_VLLM_MAP) return;
  if (enc == IC_ESIM_ENC_SGLANG || dp_rank >= 0) {
    if (dp_rank >= 0)
      msgpack_pack_int64(pk, dp_rank);
    else
      msgpack_pack_nil(pk); /* SGLang always sends the slot */
  }
}
