/* lib/policy: the /probe request body — strict decoder with the reference's validation order —
 * and the probe's synthetic block hash (docs/server.md, "POST /probe"). */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fold.h"
#include "ic/policy.h"

static const char *const PROBE_KEYS[] = {"backend", "model", "hashScheme", "backendType"};

void ic_probe_req_clear(ic_probe_req_t *r) {
  if (!r) return;
  free(r->backend);
  free(r->model);
  free(r->hash_scheme);
  free(r->backend_type);
  memset(r, 0, sizeof *r);
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static const char *jtype(const json_t *v) {
  if (json_is_object(v)) return "object";
  if (json_is_array(v)) return "array";
  if (json_is_number(v)) return "number";
  if (json_is_boolean(v)) return "bool";
  if (json_is_string(v)) return "string";
  return "null";
}

static ic_probe_parse_status_t decode_fail(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static ic_probe_parse_status_t decode_fail(char *msg, size_t msglen, const char *fmt, ...) {
  if (msg && msglen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
  }
  return IC_PROBE_PARSE_DECODE;
}

ic_probe_parse_status_t ic_probe_parse(const char *body, size_t len, bool too_large,
                                       ic_probe_req_t *out, char *msg, size_t msglen) {
  memset(out, 0, sizeof *out);
  if (msg && msglen) msg[0] = 0;
  size_t i = 0;
  while (i < len && is_ws(body[i]))
    i++;
  if (i == len) return decode_fail(msg, msglen, too_large ? "http: request body too large" : "EOF");
  json_error_t je;
  json_t *root = json_loadb(body, len, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &je);
  if (!root) {
    if (too_large) return decode_fail(msg, msglen, "http: request body too large");
    return decode_fail(msg, msglen, "%s", je.text);
  }
  ic_probe_parse_status_t st = IC_PROBE_PARSE_OK;
  char *vals[4] = {0};
  if (!json_is_object(root) && !json_is_null(root)) {
    st = decode_fail(msg, msglen,
                     "json: cannot unmarshal %s into Go value of type controlplaneapi.ProbeRequest",
                     jtype(root));
  } else if (json_is_object(root)) {
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
      int idx = ic_policy_match_key(k, PROBE_KEYS, 4);
      if (idx < 0) {
        st = decode_fail(msg, msglen, "json: unknown field \"%s\"", k);
        break;
      }
      if (json_is_null(v)) continue;
      if (!json_is_string(v)) {
        st = decode_fail(msg, msglen,
                         "json: cannot unmarshal %s into Go struct field ProbeRequest.%s of type "
                         "string",
                         jtype(v), PROBE_KEYS[idx]);
        break;
      }
      free(vals[idx]);
      vals[idx] = strndup(json_string_value(v), json_string_length(v));
    }
  }
  /* Where the first value ended: anything but whitespace after it is trailing content. */
  size_t end = je.position;
  json_decref(root);
  if (st == IC_PROBE_PARSE_OK && too_large) {
    st = decode_fail(msg, msglen, "http: request body too large");
  }
  if (st == IC_PROBE_PARSE_OK) {
    for (size_t j = end; j < len; j++)
      if (!is_ws(body[j])) {
        st = IC_PROBE_PARSE_TRAILING;
        break;
      }
  }
  if (st == IC_PROBE_PARSE_OK) {
    char **dst[4] = {&out->backend, &out->model, &out->hash_scheme, &out->backend_type};
    for (int j = 0; j < 4; j++) {
      *dst[j] = vals[j] ? vals[j] : strdup("");
      vals[j] = NULL;
    }
    if (!out->backend || !out->model || !out->hash_scheme || !out->backend_type) {
      ic_probe_req_clear(out);
      return decode_fail(msg, msglen, "out of memory");
    }
    if (!out->backend[0] || !out->model[0] || !out->hash_scheme[0]) {
      ic_probe_req_clear(out);
      st = IC_PROBE_PARSE_MISSING;
    }
  }
  for (int j = 0; j < 4; j++)
    free(vals[j]);
  return st;
}

static void put_lp(EVP_MD_CTX *c, const char *s) {
  size_t n = strlen(s);
  unsigned char be[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                         (unsigned char)(n >> 8), (unsigned char)n};
  EVP_DigestUpdate(c, be, 4);
  EVP_DigestUpdate(c, s, n);
}

void ic_probe_hash(const char *backend, const char *model, const char *hash_scheme,
                   uint8_t out[32]) {
  static const char dom[] = "inferencecache.io/probe/v1\n";
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  unsigned int n = 0;
  if (!c) {
    memset(out, 0, 32);
    return;
  }
  EVP_DigestInit_ex(c, EVP_sha256(), NULL);
  EVP_DigestUpdate(c, dom, sizeof dom - 1);
  put_lp(c, hash_scheme ? hash_scheme : "");
  put_lp(c, model ? model : "");
  put_lp(c, backend ? backend : "");
  EVP_DigestFinal_ex(c, out, &n);
  EVP_MD_CTX_free(c);
}
