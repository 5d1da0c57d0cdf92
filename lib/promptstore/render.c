/* RenderTemplate of lib/promptstore: renders a PromptTemplate body with the request's variables,
 * finds the stable prefix (the output that no Mutable slot can change) and fingerprints its whole
 * blocks with the template's model, so a family of prompts shares one routing key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "ic/err.h"
#include "internal.h"

/* Stands in for every Mutable value in the second render: control bytes no tokenizer merges with
 * text and no string filter (trim, upper, ...) changes. */
#define MASK "\x01\x02\x03"
#define MASK_LEN 3

static bool slot_is_stable(const ps_entry *e, const char *name) {
  for (size_t i = 0; i < e->nslots; i++)
    if (!strcmp(e->slots[i].name, name)) return e->slots[i].stable;
  return false; /* undeclared variables count as Mutable */
}

static int render_body(const ps_entry *e, size_t nvars, const char *const *keys,
                       const char *const *values, bool masked, ic_buf_t *out, char *err) {
  json_t *vars = json_object();
  if (!vars) return IC_ENOMEM;
  for (size_t i = 0; i < nvars; i++) {
    const char *v = masked && !slot_is_stable(e, keys[i]) ? MASK : values[i];
    json_object_set_new_nocheck(vars, keys[i], json_string_nocheck(v));
  }
  if (masked) /* declared Mutable slots this request left out may be filled by the next one */
    for (size_t i = 0; i < e->nslots; i++)
      if (!e->slots[i].stable && !json_object_get(vars, e->slots[i].name))
        json_object_set_new_nocheck(vars, e->slots[i].name, json_string_nocheck(MASK));
  ic_chattemplate_opts_t o = {.max_steps = 5000000,
                              .max_output = 8u << 20,
                              .max_memory = 64u << 20,
                              .now = 0,
                              .no_clock = 1};
  int rc = ic_chattemplate_render(e->tpl, vars, &o, out, err);
  json_decref(vars);
  return rc;
}

static size_t common_prefix(const char *a, size_t na, const char *b, size_t nb) {
  size_t n = na < nb ? na : nb, i = 0;
  while (i < n && a[i] == b[i])
    i++;
  return i;
}

static size_t common_ids(const ic_tok_ids *a, const ic_tok_ids *b) {
  size_t n = a->n < b->n ? a->n : b->n, i = 0;
  while (i < n && a->v[i] == b->v[i])
    i++;
  return i;
}

/* Special tokens the post-processor appends after the text (an EOS template), which a prefix's
 * encoding ends with but the full prompt's does not have at that place. */
static size_t trailing_specials(const ic_tokenizer *tok) {
  ic_tok_ids with = {0}, without = {0};
  size_t trail = 0;
  if (ic_tokenizer_encode(tok, "a", 1, true, 0, &with) == 0 &&
      ic_tokenizer_encode(tok, "a", 1, false, 0, &without) == 0 && without.n) {
    size_t lead = 0;
    while (lead < with.n && with.v[lead] != without.v[0])
      lead++;
    if (lead + without.n <= with.n) trail = with.n - lead - without.n;
  }
  ic_tok_ids_free(&with);
  ic_tok_ids_free(&without);
  return trail;
}

/* Fills *ids with tokens whose first k (returned) every prompt sharing the first `stable` bytes
 * of `text` starts with, exactly as the full prompt encodes (add_special on, like an engine). */
static size_t stable_ids(const ic_tokenizer *tok, const char *text, size_t len, size_t stable,
                         ic_tok_ids *ids) {
  if (stable >= len)
    return ic_tokenizer_encode(tok, text, len, true, 1u << 20, ids) == 0 ? ids->n : 0;
  if (ic_tokenizer_splittable(tok)) {
    /* the last exact split point b inside the stable text: encode(T) == encode(T[0..b)) ++
     * encode(T[b..]) for every such T, so T[0..b)'s ids are the shared prefix; one encode of
     * the prefix only */
    size_t b = 0;
    for (size_t from = 0;;) {
      size_t p = ic_tokenizer_split_point(tok, text, len, from);
      if (!p || p >= stable) break;
      b = from = p;
    }
    if (!b || ic_tokenizer_encode(tok, text, b, true, 1u << 20, ids) != 0) return 0;
    size_t trail = trailing_specials(tok);
    return ids->n > trail ? ids->n - trail : 0;
  }
  /* no exact split points for this pipeline: the common prefix of the prefix's and the full
   * prompt's ids, less one token of margin at the boundary */
  ic_tok_ids pre = {0};
  size_t k = 0;
  if (ic_tokenizer_encode(tok, text, len, true, 1u << 20, ids) == 0 &&
      ic_tokenizer_encode(tok, text, stable, true, 1u << 20, &pre) == 0) {
    k = common_ids(ids, &pre);
    k = k ? k - 1 : 0;
  }
  ic_tok_ids_free(&pre);
  return k;
}

/* The stable prefix's fingerprint into res, through the per-store cache when the result depends
 * on the stable text alone (exact split points, or no Mutable part at all). */
static void fingerprint(ic_promptstore_t *s, const char *model, const ic_tokenizer *tok,
                        const char *text, size_t len, size_t stable, ic_promptstore_result_t *res) {
  bool cacheable = stable >= len || ic_tokenizer_splittable(tok);
  XXH128_hash_t key = {0, 0};
  ps_cache_slot *slot = NULL;
  if (cacheable) {
    XXH3_state_t *st = XXH3_createState();
    if (st) {
      uint8_t whole = stable >= len;
      XXH3_128bits_reset(st);
      XXH3_128bits_update(st, model, strlen(model) + 1);
      XXH3_128bits_update(st, &whole, 1);
      XXH3_128bits_update(st, text, stable < len ? stable : len);
      key = XXH3_128bits_digest(st);
      XXH3_freeState(st);
      slot = &s->cache[key.low64 % PS_CACHE_SLOTS];
      pthread_mutex_lock(&s->cache_mu);
      bool hit = slot->used && slot->key_lo == key.low64 && slot->key_hi == key.high64;
      if (hit) {
        res->has_stable_hash = slot->has_hash;
        memcpy(res->stable_hash, slot->hash, sizeof res->stable_hash);
        res->stable_tokens = slot->tokens;
      }
      pthread_mutex_unlock(&s->cache_mu);
      if (hit) return;
    }
  }
  ic_tok_ids ids = {0};
  size_t k = stable_ids(tok, text, len, stable, &ids);
  size_t nb = ic_fp_block_count(k, s->cfg.block_size);
  uint64_t *h = nb ? malloc(nb * sizeof *h) : NULL;
  if (h) {
    ic_fp_prefix_hashes(ids.v, nb * (size_t)s->cfg.block_size, s->cfg.block_size, NULL, h, nb,
                        NULL);
    ic_fp_to_wire(h[nb - 1], res->stable_hash);
    res->has_stable_hash = true;
    res->stable_tokens = nb * (size_t)s->cfg.block_size;
    free(h);
  }
  ic_tok_ids_free(&ids);
  if (slot && (h || !nb)) {
    pthread_mutex_lock(&s->cache_mu);
    slot->used = true;
    slot->key_lo = key.low64;
    slot->key_hi = key.high64;
    slot->has_hash = res->has_stable_hash;
    memcpy(slot->hash, res->stable_hash, sizeof slot->hash);
    slot->tokens = (uint32_t)res->stable_tokens;
    pthread_mutex_unlock(&s->cache_mu);
  }
}

static void count(ic_promptstore_t *s, const char *code) {
  if (s->cfg.renders) ic_metric_inc(ic_metric_child(s->cfg.renders, (const char *[]){code}));
}

int ic_promptstore_render(ic_promptstore_t *s, const char *ref, const char *tenant_id, size_t nvars,
                          const char *const *keys, const char *const *values,
                          ic_promptstore_result_t *res) {
  memset(res, 0, sizeof *res);
  res->reason_code = "TEMPLATE_NOT_FOUND";
  char full_ref[512];
  if (!ref || !*ref) {
    count(s, res->reason_code);
    return 0;
  }
  if (!strchr(ref, '/') && tenant_id && *tenant_id)
    snprintf(full_ref, sizeof full_ref, "%s/%s", tenant_id, ref);
  else
    snprintf(full_ref, sizeof full_ref, "%s", ref);
  ps_snapshot *snap = ps_snapshot_acquire(s);
  const ps_entry *e = ps_find(snap, full_ref);
  int rc = 0;
  if (!e) goto done;
  snprintf(res->revision, sizeof res->revision, "%s", e->revision);
  res->reason_code = "RENDER_ERROR";
  if (!e->tpl) {
    snprintf(res->error, sizeof res->error, "template does not compile: %s", e->error);
    goto done;
  }
  for (size_t i = 0; i < e->nslots; i++) {
    if (!e->slots[i].required) continue;
    size_t k = 0;
    while (k < nvars && strcmp(keys[k], e->slots[i].name))
      k++;
    if (k == nvars) {
      snprintf(res->error, sizeof res->error, "required slot '%s' has no value", e->slots[i].name);
      goto done;
    }
  }
  char err[IC_CHATTEMPLATE_ERR_MAX];
  ic_buf_t text = IC_BUF_INIT, masked = IC_BUF_INIT;
  rc = render_body(e, nvars, keys, values, false, &text, err);
  if (rc) {
    snprintf(res->error, sizeof res->error, "%s", err);
    ic_buf_free(&text);
    rc = rc == IC_ENOMEM ? IC_ENOMEM : 0;
    goto done;
  }
  bool has_mutable = false;
  for (size_t i = 0; i < e->nslots; i++)
    has_mutable |= !e->slots[i].stable;
  for (size_t i = 0; i < nvars; i++)
    has_mutable |= !slot_is_stable(e, keys[i]);
  size_t stable = text.len;
  if (has_mutable) {
    stable = 0;
    if (render_body(e, nvars, keys, values, true, &masked, err) == 0) {
      stable = common_prefix(text.data ? text.data : "", text.len, masked.data ? masked.data : "",
                             masked.len);
      const char *m = masked.len ? memmem(masked.data, masked.len, MASK, MASK_LEN) : NULL;
      if (m && (size_t)(m - masked.data) < stable) stable = (size_t)(m - masked.data);
    }
    ic_buf_free(&masked);
  }
  res->stable_bytes = stable;
  const ic_tokenizer *tok =
      e->model && s->cfg.tokenizer ? s->cfg.tokenizer(s->cfg.tokenizer_ud, e->model) : NULL;
  if (tok && stable > 0) fingerprint(s, e->model, tok, text.data, text.len, stable, res);
  if (!text.data && ic_buf_append(&text, "", 0)) {
    rc = IC_ENOMEM;
    goto done;
  }
  res->text = ic_buf_detach(&text, &res->text_len);
  res->reason_code = "OK";
done:
  ps_snapshot_release(snap);
  count(s, res->reason_code);
  return rc;
}

void ic_promptstore_result_free(ic_promptstore_result_t *res) {
  free(res->text);
  res->text = NULL;
}
