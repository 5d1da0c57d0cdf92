/* Request bodies of the simulator's OpenAI-compatible endpoints: /v1/completions (prompt as text
 * or token ids), /v1/chat/completions (messages through a fixed template) and /sim/prefix_match.
 * Untrusted input: every field is type-checked and a clear message goes back (fuzzed). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/enginesim.h"
#include "ic/err.h"

static int fail(char *err, size_t errlen, const char *msg) {
  snprintf(err, errlen, "%s", msg);
  return IC_EINVAL;
}

static int tokenize_text(const char *s, size_t len, size_t max_prompt, uint32_t **out, size_t *n,
                         char *err, size_t errlen) {
  size_t total = 0;
  ic_esim_tokenize(s, len, NULL, 0, &total);
  if (total == 0) return fail(err, errlen, "prompt must not be empty");
  if (total > max_prompt) {
    snprintf(err, errlen, "prompt has %zu tokens, more than the maximum of %zu", total, max_prompt);
    return IC_EINVAL;
  }
  *out = malloc(total * sizeof **out);
  if (!*out) return IC_ENOMEM;
  *n = ic_esim_tokenize(s, len, *out, total, NULL);
  return 0;
}

/* prompt: "text" | [ids] | ["text"] */
static int parse_prompt(json_t *p, size_t max_prompt, uint32_t **out, size_t *n, char *err,
                        size_t errlen) {
  if (!p) return fail(err, errlen, "'prompt' is required");
  if (json_is_string(p))
    return tokenize_text(json_string_value(p), json_string_length(p), max_prompt, out, n, err,
                         errlen);
  if (!json_is_array(p)) return fail(err, errlen, "'prompt' must be a string or an array");
  size_t len = json_array_size(p);
  if (len == 0) return fail(err, errlen, "prompt must not be empty");
  json_t *first = json_array_get(p, 0);
  if (json_is_string(first)) {
    if (len != 1) return fail(err, errlen, "batched prompts are not supported");
    return tokenize_text(json_string_value(first), json_string_length(first), max_prompt, out, n,
                         err, errlen);
  }
  if (len > max_prompt) {
    snprintf(err, errlen, "prompt has %zu tokens, more than the maximum of %zu", len, max_prompt);
    return IC_EINVAL;
  }
  uint32_t *t = malloc(len * sizeof *t);
  if (!t) return IC_ENOMEM;
  for (size_t i = 0; i < len; i++) {
    json_t *v = json_array_get(p, i);
    json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
    if (x < 0 || x > (json_int_t)UINT32_MAX) {
      free(t);
      if (json_is_array(v)) return fail(err, errlen, "batched prompts are not supported");
      return fail(err, errlen, "'prompt' token ids must be integers in [0, 4294967295]");
    }
    t[i] = (uint32_t)x;
  }
  *out = t;
  *n = len;
  return 0;
}

static int render_chat(json_t *msgs, ic_buf_t *b, char *err, size_t errlen) {
  if (!json_is_array(msgs) || json_array_size(msgs) == 0)
    return fail(err, errlen, "'messages' must be a non-empty array");
  size_t i;
  json_t *m;
  json_array_foreach(msgs, i, m) {
    json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
    if (!json_is_object(m) || !json_is_string(role))
      return fail(err, errlen, "each message needs a string 'role'");
    if (ic_buf_appendf(b, "<|%s|>\n", json_string_value(role)) != 0) return IC_ENOMEM;
    if (json_is_string(content)) {
      if (ic_buf_append(b, json_string_value(content), json_string_length(content)) != 0)
        return IC_ENOMEM;
    } else if (json_is_array(content)) {
      size_t k;
      json_t *part;
      json_array_foreach(content, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(text))
          return fail(err, errlen, "only content parts of type 'text' are supported");
        if (ic_buf_append(b, json_string_value(text), json_string_length(text)) != 0)
          return IC_ENOMEM;
      }
    } else if (content && !json_is_null(content)) {
      return fail(err, errlen, "message 'content' must be a string, an array of parts or null");
    }
    if (ic_buf_append_byte(b, '\n') != 0) return IC_ENOMEM;
  }
  return ic_buf_append_str(b, "<|assistant|>\n") == 0 ? 0 : IC_ENOMEM;
}

static int opt_bool(json_t *o, const char *key, bool *out, char *err, size_t errlen) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_boolean(v)) {
    snprintf(err, errlen, "'%s' must be a boolean", key);
    return IC_EINVAL;
  }
  *out = json_is_true(v);
  return 0;
}

static int parse_fields(json_t *root, bool chat, size_t max_prompt, ic_esim_body_t *out, char *err,
                        size_t errlen) {
  json_t *model = json_object_get(root, "model");
  if (model && !json_is_null(model)) {
    if (!json_is_string(model) || json_string_length(model) >= sizeof out->model)
      return fail(err, errlen, "'model' must be a string of at most 255 bytes");
    snprintf(out->model, sizeof out->model, "%s", json_string_value(model));
  }
  json_t *mt = chat ? json_object_get(root, "max_completion_tokens") : NULL;
  if (!mt || json_is_null(mt)) mt = json_object_get(root, "max_tokens");
  if (mt && !json_is_null(mt)) {
    if (!json_is_integer(mt) || json_integer_value(mt) < 1)
      return fail(err, errlen, "'max_tokens' must be an integer >= 1");
    out->max_tokens = json_integer_value(mt);
  }
  json_t *n = json_object_get(root, "n");
  if (n && !json_is_null(n) && !(json_is_integer(n) && json_integer_value(n) == 1))
    return fail(err, errlen, "only n=1 is supported");
  int rc;
  if ((rc = opt_bool(root, "stream", &out->stream, err, errlen)) != 0) return rc;
  if ((rc = opt_bool(root, "ignore_eos", &out->ignore_eos, err, errlen)) != 0) return rc;
  json_t *so = json_object_get(root, "stream_options");
  if (so && !json_is_null(so)) {
    if (!json_is_object(so)) return fail(err, errlen, "'stream_options' must be an object");
    if (!out->stream)
      return fail(err, errlen, "Stream options can only be defined when `stream=True`.");
    if ((rc = opt_bool(so, "include_usage", &out->include_usage, err, errlen)) != 0) return rc;
  }
  if (!chat)
    return parse_prompt(json_object_get(root, "prompt"), max_prompt, &out->prompt, &out->nprompt,
                        err, errlen);
  ic_buf_t b;
  ic_buf_init(&b);
  rc = render_chat(json_object_get(root, "messages"), &b, err, errlen);
  if (rc == 0)
    rc = tokenize_text(b.data, b.len, max_prompt, &out->prompt, &out->nprompt, err, errlen);
  ic_buf_free(&b);
  return rc;
}

int ic_esim_body_parse(const char *json, size_t len, bool chat, size_t max_prompt,
                       ic_esim_body_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->max_tokens = 16;
  out->chat = chat;
  json_error_t je;
  json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    snprintf(err, errlen, "invalid JSON body: %s", je.text);
    return IC_EINVAL;
  }
  int rc = json_is_object(root) ? parse_fields(root, chat, max_prompt, out, err, errlen)
                                : fail(err, errlen, "the body must be a JSON object");
  json_decref(root);
  if (rc != 0) ic_esim_body_free(out);
  return rc;
}

void ic_esim_body_free(ic_esim_body_t *b) {
  free(b->prompt);
  b->prompt = NULL;
  b->nprompt = 0;
}

int ic_esim_prompt_parse(const char *json, size_t len, size_t max_prompt, uint32_t **out, size_t *n,
                         char *err, size_t errlen) {
  *out = NULL;
  *n = 0;
  json_error_t je;
  json_t *root = json_loadb(json, len, 0, &je);
  if (!root) {
    snprintf(err, errlen, "invalid JSON body: %s", je.text);
    return IC_EINVAL;
  }
  int rc = json_is_object(root)
               ? parse_prompt(json_object_get(root, "prompt"), max_prompt, out, n, err, errlen)
               : fail(err, errlen, "the body must be a JSON object");
  json_decref(root);
  return rc;
}
