/* lib/replay engine responses (untrusted input): an incremental Server-Sent-Events parser and the
 * reader of OpenAI-style completion objects (usage, cached tokens, the simulator's sim_timing). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/replay.h"

#define SSE_MAX_LINE (8u << 20)

void ic_replay_sse_init(ic_replay_sse_t *p) { memset(p, 0, sizeof(*p)); }

void ic_replay_sse_free(ic_replay_sse_t *p) {
  free(p->buf);
  free(p->data);
  memset(p, 0, sizeof(*p));
}

static int grow(char **b, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  if (need > SSE_MAX_LINE + 2) return IC_ERANGE;
  size_t nc = *cap ? *cap : 4096;
  while (nc < need)
    nc *= 2;
  char *x = realloc(*b, nc);
  if (!x) return IC_ENOMEM;
  *b = x;
  *cap = nc;
  return 0;
}

static int dispatch(ic_replay_sse_t *p, ic_replay_sse_fn fn, void *ud) {
  if (p->dlen == 0) return 0; /* an event without data lines is not dispatched */
  size_t n = p->dlen - 1;     /* every data line ended with '\n'; the last one is dropped */
  p->data[n] = '\0';
  p->dlen = 0;
  return fn(ud, p->data, n);
}

/* One line (without its terminator). */
static int line(ic_replay_sse_t *p, const char *s, size_t n, ic_replay_sse_fn fn, void *ud) {
  if (n == 0) return dispatch(p, fn, ud);
  if (s[0] == ':') return 0; /* comment / keep-alive */
  const char *colon = memchr(s, ':', n);
  size_t fl = colon ? (size_t)(colon - s) : n;
  if (fl != 4 || memcmp(s, "data", 4)) return 0; /* event:, id:, retry: are not used */
  const char *v = colon ? colon + 1 : s + n;
  if (v < s + n && *v == ' ') v++;
  size_t vl = (size_t)(s + n - v);
  int rc = grow(&p->data, &p->dcap, p->dlen + vl + 2);
  if (rc) return rc;
  memcpy(p->data + p->dlen, v, vl);
  p->dlen += vl;
  p->data[p->dlen++] = '\n';
  return 0;
}

int ic_replay_sse_feed(ic_replay_sse_t *p, const char *bytes, size_t len, ic_replay_sse_fn fn,
                       void *ud) {
  if (p->failed) return IC_EPROTO;
  for (size_t i = 0; i < len;) {
    const char *nl = memchr(bytes + i, '\n', len - i);
    size_t take = nl ? (size_t)(nl - (bytes + i)) : len - i;
    int rc = grow(&p->buf, &p->cap, p->len + take + 1);
    if (rc) {
      p->failed = true;
      return rc;
    }
    memcpy(p->buf + p->len, bytes + i, take);
    p->len += take;
    i += take;
    if (!nl) break;
    i++; /* the '\n' */
    size_t n = p->len;
    if (n && p->buf[n - 1] == '\r') n--;
    p->len = 0;
    rc = line(p, p->buf, n, fn, ud);
    if (rc) {
      p->failed = rc < 0;
      return rc;
    }
  }
  return 0;
}

int ic_replay_sse_finish(ic_replay_sse_t *p, ic_replay_sse_fn fn, void *ud) {
  if (p->failed) return IC_EPROTO;
  int rc = 0;
  if (p->len) {
    size_t n = p->len;
    p->len = 0;
    rc = line(p, p->buf, n, fn, ud);
  }
  if (!rc) rc = dispatch(p, fn, ud);
  return rc;
}

/* -------------------------------- completion objects -------------------------------- */

static bool num(json_t *o, const char *k, double *out) {
  json_t *v = json_object_get(o, k);
  if (!json_is_number(v)) return false;
  *out = json_number_value(v);
  return true;
}

static bool contains(const char *s, size_t n, const char *needle) {
  return memmem(s, n, needle, strlen(needle)) != NULL;
}

int ic_replay_apply_completion(ic_replay_record_t *r, const char *json, size_t len) {
  /* Token chunks are the bulk of a stream and carry nothing we record: skip parsing them. */
  if (!contains(json, len, "\"usage\"") && !contains(json, len, "\"sim_timing\"") &&
      !contains(json, len, "\"error\""))
    return 0;
  json_error_t je;
  json_t *o = json_loadb(json, len, 0, &je);
  if (!json_is_object(o)) {
    snprintf(r->error, sizeof(r->error), "engine sent invalid JSON: %.60s", je.text);
    json_decref(o);
    return IC_EPROTO;
  }
  json_t *e = json_object_get(o, "error");
  if (e && !json_is_null(e)) {
    json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
    snprintf(r->error, sizeof(r->error), "engine error: %.80s",
             json_is_string(m) ? json_string_value(m) : "(no message)");
    json_decref(o);
    return IC_EPROTO;
  }
  int got = 0;
  double d;
  json_t *u = json_object_get(o, "usage");
  if (json_is_object(u)) {
    got = 1;
    if (num(u, "prompt_tokens", &d) && d >= 0) r->prompt_tokens = (int64_t)d;
    if (num(u, "completion_tokens", &d) && d >= 0) r->completion_tokens = (int64_t)d;
    json_t *pd = json_object_get(u, "prompt_tokens_details");
    if (json_is_object(pd) && num(pd, "cached_tokens", &d) && d >= 0) r->cached_tokens = (int64_t)d;
  }
  json_t *t = json_object_get(o, "sim_timing");
  if (json_is_object(t)) {
    got = 1;
    r->sim_timing = true;
    if (num(t, "ttft_ms", &d) && d >= 0) r->ttft_ms = d;
    if (num(t, "e2e_ms", &d) && d >= 0) r->e2e_ms = d;
    if (num(t, "queue_ms", &d) && d >= 0) r->queue_ms = d;
    if (num(t, "arrival_ms", &d)) r->arrival_ms = d;
    if (num(t, "finish_ms", &d)) r->finish_ms = d;
    if (num(t, "cached_tokens", &d) && d >= 0) r->cached_tokens = (int64_t)d;
    if (num(t, "computed_prefill_tokens", &d) && d >= 0) r->computed_prefill_tokens = (int64_t)d;
  }
  json_decref(o);
  return got;
}
