/* The model registry of --tokenizer-models-dir: eager, confined directory walk; per model a
 * tokenizer, its tokenizer_config.json and compiled chat template; render + tokenize per request.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "ic/chattemplate.h"
#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"
#include "ic/prompt.h"
#include "ic/utf8.h"
#include "prompt_internal.h"

#define MAX_DEPTH 4
#define MAX_MODELS 256

typedef struct {
  char *id;
  uint64_t seed; /* prefix-cache namespace */
  ic_tokenizer *tok;
  json_t *vars;            /* special tokens + add_generation_prompt, copied per render */
  ic_chattemplate_t *tmpl; /* NULL: no chat template (bare text, special tokens added) */
} model;

struct ic_prompt_registry {
  model *m;
  size_t n;
  prefix_cache cache;
  bool cache_on;
  ic_metric_family_t *tokenize_seconds, *cache_lookups;
};

static int cmp_model(const void *a, const void *b) {
  return strcmp(((const model *)a)->id, ((const model *)b)->id);
}

static void model_free(model *m) {
  free(m->id);
  ic_tokenizer_free(m->tok);
  json_decref(m->vars);
  ic_chattemplate_free(m->tmpl);
}

#define MAX_TEMPLATE_FILE (1u << 20)

/* Reads <dir>/chat_template.jinja into *out (malloc'd, NUL-terminated). Returns 0 with *out NULL
 * when there is no such file, an IC_E* code with `err` filled when it cannot be used. */
static int read_template_file(const char *dir, char **out, size_t *len, char *err, size_t errlen) {
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT) return 0;
    snprintf(err, errlen, "chat_template.jinja: %s", strerror(errno));
    return IC_EIO;
  }
  char *buf = malloc(MAX_TEMPLATE_FILE + 1);
  size_t n = buf ? fread(buf, 1, MAX_TEMPLATE_FILE + 1, f) : 0;
  bool bad = !buf || ferror(f);
  fclose(f);
  if (bad || n > MAX_TEMPLATE_FILE || !ic_utf8_valid(buf, n)) {
    snprintf(err, errlen, "chat_template.jinja: %s",
             !buf                    ? "out of memory"
             : bad                   ? "read error"
             : n > MAX_TEMPLATE_FILE ? "larger than 1 MiB"
                                     : "not valid UTF-8");
    free(buf);
    return bad || n > MAX_TEMPLATE_FILE ? IC_ERANGE : IC_EINVAL;
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return 0;
}

/* Loads one model directory; logs and returns false when it cannot serve exactly. The chat
 * template is transformers': chat_template.jinja when the directory has one (it overrides the
 * config's, as from_pretrained does), else tokenizer_config.json's chat_template. */
static bool load_model(const char *path, const char *id, model *out) {
  char err[IC_CHATTEMPLATE_ERR_MAX > IC_TOK_ERRLEN ? IC_CHATTEMPLATE_ERR_MAX : IC_TOK_ERRLEN];
  memset(out, 0, sizeof *out);
  int rc = ic_tokenizer_load_dir(path, &out->tok, err);
  if (rc) {
    ic_log_error("tokenizer_model_load_failed", IC_LS("model_id", id), IC_LS("err", err));
    return false;
  }
  char *file_src = NULL;
  size_t file_len = 0;
  if (read_template_file(path, &file_src, &file_len, err, sizeof err)) {
    ic_log_error("tokenizer_model_load_failed", IC_LS("model_id", id),
                 IC_LS("component", "chat_template"), IC_LS("err", err));
    model_free(out);
    return false;
  }
  char cfgpath[PATH_MAX + 32];
  snprintf(cfgpath, sizeof cfgpath, "%s/tokenizer_config.json", path);
  json_error_t je;
  json_t *cfg = json_load_file(cfgpath, JSON_DECODE_INT_AS_REAL, &je);
  const char *src = file_src ? file_src : cfg ? ic_chattemplate_hf_template(cfg, NULL) : NULL;
  if (src) {
    rc = ic_chattemplate_compile(src, file_src ? file_len : strlen(src), &out->tmpl, err);
    if (rc) {
      ic_log_error("tokenizer_model_load_failed", IC_LS("model_id", id),
                   IC_LS("component", file_src ? "chat_template.jinja" : "chat_template"),
                   IC_LS("err", err));
      json_decref(cfg);
      free(file_src);
      model_free(out);
      return false;
    }
    out->vars = ic_chattemplate_hf_vars(cfg, 1); /* a NULL cfg gives no special tokens */
  } else {
    ic_log_warn("tokenizer_model_without_chat_template", IC_LS("model_id", id),
                IC_LS("effect",
                      "prompt_text is tokenized as bare text with the tokenizer's special tokens"));
  }
  json_decref(cfg);
  free(file_src);
  if (src && !out->vars) {
    model_free(out);
    return false;
  }
  out->id = strdup(id);
  out->seed = XXH3_64bits(id, strlen(id));
  return out->id != NULL;
}

/* Depth-first walk; `root` is the resolved models dir, every path must stay under it. */
static void walk(ic_prompt_registry_t *r, const char *root, const char *rel, int depth) {
  char path[PATH_MAX], real[PATH_MAX];
  snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
  if (!realpath(path, real) || strncmp(real, root, strlen(root)) ||
      (real[strlen(root)] != 0 && real[strlen(root)] != '/')) {
    ic_log_warn("tokenizer_models_dir_entry_skipped", IC_LS("path", path),
                IC_LS("reason", "resolves outside the models dir"));
    return;
  }
  char tj[PATH_MAX + 16];
  snprintf(tj, sizeof tj, "%s/tokenizer.json", real);
  struct stat stt;
  if (*rel && stat(tj, &stt) == 0 && S_ISREG(stt.st_mode)) {
    /* The files themselves must not lead out of the models dir either. */
    const char *files[3] = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"};
    for (int i = 0; i < 3; i++) {
      char f[PATH_MAX + 32], fr[PATH_MAX];
      snprintf(f, sizeof f, "%s/%s", real, files[i]);
      if (realpath(f, fr) && (strncmp(fr, root, strlen(root)) || fr[strlen(root)] != '/')) {
        ic_log_warn("tokenizer_models_dir_entry_skipped", IC_LS("model_id", rel), IC_LS("path", f),
                    IC_LS("reason", "resolves outside the models dir"));
        return;
      }
    }
    if (r->n >= MAX_MODELS) {
      ic_log_warn("tokenizer_models_dir_entry_skipped", IC_LS("model_id", rel),
                  IC_LS("reason", "too many models"));
      return;
    }
    if (load_model(real, rel, &r->m[r->n])) {
      ic_log_info("tokenizer_model_loaded", IC_LS("model_id", rel),
                  IC_LI("vocab_size", ic_tokenizer_vocab_size(r->m[r->n].tok)),
                  IC_LB("chat_template", r->m[r->n].tmpl != NULL),
                  IC_LB("prefix_cache", r->cache_on && ic_tokenizer_splittable(r->m[r->n].tok)));
      r->n++;
    }
    return; /* a model directory is a leaf */
  }
  if (depth >= MAX_DEPTH) return;
  DIR *d = opendir(real);
  if (!d) return;
  struct dirent *e;
  char **names = NULL;
  size_t nn = 0;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue; /* ".", "..", hidden */
    char **g = realloc(names, (nn + 1) * sizeof *g);
    if (!g) break;
    names = g;
    names[nn++] = strdup(e->d_name);
  }
  closedir(d);
  for (size_t i = 0; i < nn; i++) {
    if (names[i]) {
      char sub[PATH_MAX];
      snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", names[i]);
      struct stat st;
      char full[PATH_MAX + 1];
      snprintf(full, sizeof full, "%s/%s", root, sub);
      if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) walk(r, root, sub, depth + 1);
    }
    free(names[i]);
  }
  free(names);
}

int ic_prompt_registry_load(const char *dir, const ic_prompt_config_t *cfg,
                            ic_prompt_registry_t **out, char *err, size_t errlen) {
  *out = NULL;
  char root[PATH_MAX];
  struct stat st;
  if (!realpath(dir, root) || stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "tokenizer models dir %s: %s", dir,
             errno ? strerror(errno) : "not a directory");
    return errno == ENOENT ? IC_ENOTFOUND : IC_EIO;
  }
  ic_prompt_registry_t *r = calloc(1, sizeof *r);
  if (!r || !(r->m = calloc(MAX_MODELS, sizeof *r->m))) {
    free(r);
    snprintf(err, errlen, "out of memory");
    return IC_ENOMEM;
  }
  ic_prompt_config_t dflt = {0};
  if (!cfg) cfg = &dflt;
  r->cache_on = !cfg->cache_off;
  r->tokenize_seconds = cfg->tokenize_seconds;
  r->cache_lookups = cfg->prefix_cache_lookups;
  if (pc_init(&r->cache, cfg->cache_bytes ? cfg->cache_bytes : (size_t)64 << 20,
              cfg->cache_stride ? cfg->cache_stride : 1024)) {
    free(r->m);
    free(r);
    snprintf(err, errlen, "out of memory");
    return IC_ENOMEM;
  }
  walk(r, root, "", 0);
  qsort(r->m, r->n, sizeof *r->m, cmp_model);
  *out = r;
  return 0;
}

void ic_prompt_registry_free(ic_prompt_registry_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n; i++)
    model_free(&r->m[i]);
  free(r->m);
  pc_free(&r->cache);
  free(r);
}

size_t ic_prompt_registry_count(const ic_prompt_registry_t *r) { return r ? r->n : 0; }
const char *ic_prompt_registry_model(const ic_prompt_registry_t *r, size_t i) {
  return i < r->n ? r->m[i].id : NULL;
}

static model *find(const ic_prompt_registry_t *r, const char *id) {
  if (!r || !id) return NULL;
  model key = {.id = (char *)id};
  return bsearch(&key, r->m, r->n, sizeof *r->m, cmp_model);
}

const ic_tokenizer *ic_prompt_registry_tokenizer(const ic_prompt_registry_t *r,
                                                 const char *model_id) {
  model *m = find(r, model_id);
  return m ? m->tok : NULL;
}

/* The message is checked once here (strict UTF-8, fast on ASCII) and handed to jansson
 * unchecked: its own byte-at-a-time check cost more than the whole render of a long prompt. */
static int render(const model *m, const char *text, size_t len, ic_buf_t *out) {
  if (!ic_utf8_valid(text, len)) {
    ic_log_debug("prompt_render_failed", IC_LS("model_id", m->id),
                 IC_LS("err", "prompt text is not valid UTF-8"));
    return IC_EINVAL;
  }
  json_t *vars = json_deep_copy(m->vars);
  json_t *content = json_stringn_nocheck(text, len);
  json_t *msgs = content ? json_pack("[{s:s,s:o}]", "role", "user", "content", content) : NULL;
  if (!vars || !msgs || json_object_set_new(vars, "messages", msgs)) {
    json_decref(vars);
    return IC_ENOMEM;
  }
  char err[IC_CHATTEMPLATE_ERR_MAX];
  int rc = ic_chattemplate_render(m->tmpl, vars, NULL, out, err);
  json_decref(vars);
  if (rc) ic_log_debug("prompt_render_failed", IC_LS("model_id", m->id), IC_LS("err", err));
  return rc;
}

int ic_prompt_render(ic_prompt_registry_t *r, const char *model_id, const char *text, size_t len,
                     char **out, size_t *outlen) {
  model *m = find(r, model_id);
  if (!m) return IC_ENOTFOUND;
  ic_buf_t b = IC_BUF_INIT;
  int rc = m->tmpl ? render(m, text, len, &b) : ic_buf_append(&b, text, len);
  if (!rc && ic_buf_append_byte(&b, 0)) rc = IC_ENOMEM;
  if (rc) {
    ic_buf_free(&b);
    return rc;
  }
  *out = ic_buf_detach(&b, outlen);
  (*outlen)--;
  return 0;
}

int ic_prompt_encode(ic_prompt_registry_t *r, const char *model_id, const char *text, size_t len,
                     size_t max_ids, ic_tok_ids *ids, ic_prompt_stats_t *st) {
  ic_prompt_stats_t local;
  if (!st) st = &local;
  memset(st, 0, sizeof *st);
  model *m = find(r, model_id);
  if (!m) return IC_ENOTFOUND;
  int64_t t0 = ic_clock_monotonic_ns();
  ic_buf_t b = IC_BUF_INIT;
  int rc = 0;
  const char *src = text;
  size_t srclen = len;
  if (m->tmpl) {
    rc = render(m, text, len, &b);
    src = b.data ? b.data : "";
    srclen = b.len;
  }
  int64_t t1 = ic_clock_monotonic_ns();
  st->render_ns = t1 - t0;
  if (!rc) {
    /* Rendered chat text carries its own BOS (transformers tokenizes it without special tokens);
     * bare text gets the tokenizer's template like an ordinary encode. */
    if (m->tmpl && r->cache_on && ic_tokenizer_splittable(m->tok)) {
      rc = pc_encode(&r->cache, m->tok, m->seed, src, srclen, max_ids, ids, &st->cache_hit,
                     &st->reused_tokens);
      if (r->cache_lookups) {
        const char *lv[1] = {st->cache_hit ? "hit" : "miss"};
        ic_metric_t *c = ic_metric_child(r->cache_lookups, lv);
        if (c) ic_metric_inc(c);
      }
    } else {
      rc = ic_tokenizer_encode(m->tok, src, srclen, m->tmpl == NULL, max_ids, ids);
    }
  }
  st->tokenize_ns = ic_clock_monotonic_ns() - t1;
  ic_buf_free(&b);
  if (r->tokenize_seconds) {
    const char *lv[1] = {m->id};
    ic_metric_t *h = ic_metric_child(r->tokenize_seconds, lv);
    if (h) ic_metric_observe(h, (double)(st->render_ns + st->tokenize_ns) / 1e9);
  }
  return rc;
}
