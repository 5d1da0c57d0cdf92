/* HTTP surface of the simulated engine, shaped like vLLM's OpenAI-compatible server:
 * /v1/completions, /v1/chat/completions (JSON or SSE), /v1/models, /health, /metrics,
 * /reset_prefix_cache, plus the /sim/prefix_match oracle. Replies are streamed from the engine
 * thread (lib/http streams), so hundreds of open requests hold no thread. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/buf.h"
#include "ic/enginesim.h"
#include "ic/err.h"
#include "ic/http.h"

typedef struct call {
  ic_esim_engine_t *e;
  ic_http_stream_t *st;
  bool stream, include_usage, chat, client_gone;
  char id[48];
  long long created;
  char *model_json; /* the model name as a JSON string literal */
  int interval;
  ic_buf_t pend; /* streamed text not sent yet */
  size_t npend;
  ic_buf_t text; /* whole completion (non-stream) */
} call_t;

static void call_free(call_t *c) {
  ic_buf_free(&c->pend);
  ic_buf_free(&c->text);
  free(c->model_json);
  free(c);
}

/* vLLM's error body. */
static void reply_error(ic_http_req_t *r, unsigned status, const char *type, const char *msg) {
  json_t *j = json_pack("{s:{s:s, s:s, s:n, s:i}}", "error", "message", msg, "type", type, "param",
                        "code", (int)status);
  if (j) {
    ic_http_reply_json(r, status, j);
    json_decref(j);
  } else {
    ic_http_reply_error(r, 500, "out of memory");
  }
}

/* The stand-in detokenizer: every token reads " t<id>". */
static int token_text(ic_buf_t *b, const uint32_t *t, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ic_buf_appendf(b, " t%" PRIu32, t[i]) != 0) return IC_ENOMEM;
  return 0;
}

static int write_chunk(call_t *c, const char *text, size_t len, const char *finish, bool role) {
  ic_buf_t b;
  ic_buf_init(&b);
  int rc;
  if (c->chat)
    rc = ic_buf_appendf(
        &b,
        "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,"
        "\"model\":%s,\"choices\":[{\"index\":0,\"delta\":{%s\"content\":\"%.*s\"},"
        "\"logprobs\":null,\"finish_reason\":%s%s%s}]}\n\n",
        c->id, c->created, c->model_json, role ? "\"role\":\"assistant\"," : "", (int)len, text,
        finish ? "\"" : "", finish ? finish : "null", finish ? "\"" : "");
  else
    rc =
        ic_buf_appendf(&b,
                       "data: {\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%lld,"
                       "\"model\":%s,\"choices\":[{\"index\":0,\"text\":\"%.*s\",\"logprobs\":null,"
                       "\"finish_reason\":%s%s%s,\"stop_reason\":null}]}\n\n",
                       c->id, c->created, c->model_json, (int)len, text, finish ? "\"" : "",
                       finish ? finish : "null", finish ? "\"" : "");
  if (rc == 0) rc = ic_http_stream_write(c->st, b.data, b.len);
  ic_buf_free(&b);
  return rc;
}

static bool sink_tokens(void *ud, const uint32_t *toks, size_t n, bool first) {
  call_t *c = ud;
  if (!c->stream) return token_text(&c->text, toks, n) == 0;
  if (c->client_gone) return false;
  token_text(&c->pend, toks, n);
  c->npend += n;
  if (first || c->npend >= (size_t)c->interval) {
    if (write_chunk(c, c->pend.data, c->pend.len, NULL, first && c->chat) != 0)
      c->client_gone = true;
    ic_buf_reset(&c->pend);
    c->npend = 0;
  }
  return !c->client_gone;
}

static json_t *timing_json(const ic_esim_timing_t *t) {
  return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I}", "arrival_ms", t->arrival_ms,
                   "first_token_ms", t->first_token_ms, "finish_ms", t->finish_ms, "ttft_ms",
                   t->first_token_ms - t->arrival_ms, "e2e_ms", t->finish_ms - t->arrival_ms,
                   "queue_ms", t->queue_ms, "cached_tokens", (json_int_t)t->cached_tokens,
                   "cached_tokens_cpu", (json_int_t)t->cached_tokens_cpu, "computed_prefill_tokens",
                   (json_int_t)t->computed_prefill_tokens);
}

static json_t *usage_json(const ic_esim_timing_t *t) {
  return json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)t->prompt_tokens,
                   "total_tokens", (json_int_t)(t->prompt_tokens + t->completion_tokens),
                   "completion_tokens", (json_int_t)t->completion_tokens, "prompt_tokens_details",
                   "cached_tokens", (json_int_t)t->cached_tokens);
}

/* Final JSON (non-stream) or the usage chunk (stream, choices empty). */
static json_t *final_json(call_t *c, const ic_esim_timing_t *t, bool chunk) {
  json_t *choices = json_array();
  if (!chunk) {
    json_t *ch = c->chat
                     ? json_pack("{s:i, s:{s:s, s:s#}, s:n, s:s, s:n}", "index", 0, "message",
                                 "role", "assistant", "content", c->text.data ? c->text.data : "",
                                 c->text.len, "logprobs", "finish_reason", "length", "stop_reason")
                     : json_pack("{s:i, s:s#, s:n, s:s, s:n, s:n}", "index", 0, "text",
                                 c->text.data ? c->text.data : "", c->text.len, "logprobs",
                                 "finish_reason", "length", "stop_reason", "prompt_logprobs");
    json_array_append_new(choices, ch);
  }
  const char *obj =
      c->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  json_t *model = json_loads(c->model_json, JSON_DECODE_ANY, NULL);
  json_t *j = json_pack("{s:s, s:s, s:I, s:o, s:o, s:o, s:o}", "id", c->id, "object", obj,
                        "created", (json_int_t)c->created, "model", model, "choices", choices,
                        "usage", usage_json(t), "sim_timing", timing_json(t));
  return j;
}

static void write_json_line(call_t *c, json_t *j, bool sse) {
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
  if (s) {
    if (sse) ic_http_stream_write(c->st, "data: ", 6);
    ic_http_stream_write(c->st, s, strlen(s));
    ic_http_stream_write(c->st, sse ? "\n\n" : "\n", sse ? 2 : 1);
  }
  free(s);
}

static void sink_done(void *ud, const ic_esim_timing_t *t, bool aborted) {
  call_t *c = ud;
  if (aborted) {
    const char *msg = "{\"error\":{\"message\":\"request aborted by the engine\","
                      "\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}";
    if (c->stream) ic_http_stream_write(c->st, "data: ", 6);
    ic_http_stream_write(c->st, msg, strlen(msg));
    ic_http_stream_write(c->st, c->stream ? "\n\ndata: [DONE]\n\n" : "\n", c->stream ? 16 : 1);
  } else if (!c->stream) {
    json_t *j = final_json(c, t, false);
    write_json_line(c, j, false);
    json_decref(j);
  } else if (!c->client_gone) {
    if (c->npend) write_chunk(c, c->pend.data, c->pend.len, NULL, false);
    /* The finish chunk carries sim_timing too, for clients that do not ask for usage. */
    ic_buf_t b;
    ic_buf_init(&b);
    json_t *tj = timing_json(t);
    char *ts = tj ? json_dumps(tj, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    if (c->chat)
      ic_buf_appendf(&b,
                     "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,"
                     "\"model\":%s,\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                     "\"finish_reason\":\"length\"}],\"sim_timing\":%s}\n\n",
                     c->id, c->created, c->model_json, ts ? ts : "null");
    else
      ic_buf_appendf(&b,
                     "data: {\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%lld,"
                     "\"model\":%s,\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,"
                     "\"finish_reason\":\"length\",\"stop_reason\":null}],\"sim_timing\":%s}\n\n",
                     c->id, c->created, c->model_json, ts ? ts : "null");
    ic_http_stream_write(c->st, b.data, b.len);
    ic_buf_free(&b);
    free(ts);
    json_decref(tj);
    if (c->include_usage) {
      json_t *j = final_json(c, t, true);
      write_json_line(c, j, true);
      json_decref(j);
    }
    ic_http_stream_write(c->st, "data: [DONE]\n\n", 14);
  }
  ic_http_stream_close(c->st);
  call_free(c);
}

static void handle_completion(ic_http_req_t *r, ic_esim_engine_t *e, bool chat) {
  const ic_esim_config_t *cfg = ic_esim_engine_config(e);
  size_t len;
  const char *body = ic_http_req_body(r, &len);
  if (ic_http_req_body_too_large(r)) {
    reply_error(r, 413, "BadRequestError", "request body too large");
    return;
  }
  ic_esim_body_t b;
  char err[512];
  int rc =
      ic_esim_body_parse(body, len, chat, (size_t)cfg->sched.max_model_len, &b, err, sizeof err);
  if (rc != 0) {
    reply_error(r, 400, "BadRequestError", rc == IC_ENOMEM ? "out of memory" : err);
    return;
  }
  if (b.model[0] && strcmp(b.model, cfg->model) != 0) {
    snprintf(err, sizeof err, "The model `%s` does not exist.", b.model);
    ic_esim_body_free(&b);
    reply_error(r, 404, "NotFoundError", err);
    return;
  }
  /* The engine's length checks, made here so that they still get a proper 400. */
  int64_t need = (int64_t)b.nprompt + b.max_tokens;
  int64_t cap = cfg->kv.gpu_blocks * cfg->kv.block_size;
  if (need > cfg->sched.max_model_len || need > cap) {
    if (need > cfg->sched.max_model_len)
      snprintf(err, sizeof err,
               "This model's maximum context length is %lld tokens. However, you requested %lld "
               "tokens (%zu in the messages, %lld in the completion). Please reduce the length "
               "of the messages or completion.",
               (long long)cfg->sched.max_model_len, (long long)need, b.nprompt,
               (long long)b.max_tokens);
    else
      snprintf(err, sizeof err,
               "request needs %lld tokens of KV cache, more than the %lld the engine has",
               (long long)need, (long long)cap);
    ic_esim_body_free(&b);
    reply_error(r, 400, "BadRequestError", err);
    return;
  }
  call_t *c = calloc(1, sizeof *c);
  json_t *mj = json_string(cfg->model);
  if (c) c->model_json = mj ? json_dumps(mj, JSON_ENCODE_ANY) : NULL;
  json_decref(mj);
  if (!c || !c->model_json) {
    if (c) call_free(c);
    ic_esim_body_free(&b);
    reply_error(r, 500, "InternalServerError", "out of memory");
    return;
  }
  static _Atomic unsigned long long seq;
  snprintf(c->id, sizeof c->id, "%s-sim%llu", chat ? "chatcmpl" : "cmpl", ++seq);
  c->e = e;
  c->created = (long long)time(NULL);
  c->stream = b.stream;
  c->include_usage = b.include_usage;
  c->chat = chat;
  c->interval = cfg->stream_interval;
  ic_buf_init(&c->pend);
  ic_buf_init(&c->text);
  ic_esim_sink_t sink = {sink_tokens, sink_done, c};
  ic_http_stream_t *st = NULL;
  rc = ic_http_reply_stream(r, 200, b.stream ? "text/event-stream" : "application/json", &st);
  if (rc != 0) {
    call_free(c);
    ic_esim_body_free(&b);
    reply_error(r, 500, "InternalServerError", "cannot stream the reply");
    return;
  }
  c->st = st;
  rc = ic_esim_engine_submit(e, b.prompt, b.nprompt, b.max_tokens, &sink, err, sizeof err);
  ic_esim_body_free(&b);
  if (rc != 0) {
    /* The 200 is already queued; the length checks above leave only shutdown and memory
     * failures for this path. */
    const char *m =
        "{\"error\":{\"message\":\"engine unavailable\",\"type\":\"ServiceUnavailableError\","
        "\"param\":null,\"code\":503}}\n";
    ic_http_stream_write(st, m, strlen(m));
    ic_http_stream_close(st);
    call_free(c);
  }
}

static void on_completions(ic_http_req_t *r, void *ud) { handle_completion(r, ud, false); }
static void on_chat(ic_http_req_t *r, void *ud) { handle_completion(r, ud, true); }

static void on_health(ic_http_req_t *r, void *ud) {
  (void)ud;
  ic_http_reply(r, 200, NULL, "", 0);
}

static void on_models(ic_http_req_t *r, void *ud) {
  const ic_esim_config_t *cfg = ic_esim_engine_config(ud);
  json_t *j = json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:s, s:n, s:I, s:[]}]}", "object", "list",
                        "data", "id", cfg->model, "object", "model", "created",
                        (json_int_t)time(NULL), "owned_by", "vllm", "root", cfg->model, "parent",
                        "max_model_len", (json_int_t)cfg->sched.max_model_len, "permission");
  ic_http_reply_json(r, 200, j);
  json_decref(j);
}

static void on_metrics(ic_http_req_t *r, void *ud) {
  size_t len = 0;
  char *text = ic_esim_engine_metrics(ud, &len);
  if (!text) {
    ic_http_reply_error(r, 500, "out of memory");
    return;
  }
  ic_http_reply_take(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static void on_prefix_match(ic_http_req_t *r, void *ud) {
  ic_esim_engine_t *e = ud;
  const ic_esim_config_t *cfg = ic_esim_engine_config(e);
  size_t len, n;
  const char *body = ic_http_req_body(r, &len);
  uint32_t *t;
  char err[256];
  if (ic_esim_prompt_parse(body, len, (size_t)cfg->sched.max_model_len, &t, &n, err, sizeof err) !=
      0) {
    reply_error(r, 400, "BadRequestError", err);
    return;
  }
  int64_t gpu = 0, cpu = 0;
  ic_esim_engine_prefix_match(e, t, n, &gpu, &cpu);
  free(t);
  json_t *j = json_pack("{s:I, s:I, s:i}", "cached_tokens", (json_int_t)gpu, "cached_tokens_cpu",
                        (json_int_t)cpu, "block_size", cfg->kv.block_size);
  ic_http_reply_json(r, 200, j);
  json_decref(j);
}

static void on_reset(ic_http_req_t *r, void *ud) {
  if (ic_esim_engine_reset_cache(ud))
    ic_http_reply(r, 200, NULL, "", 0);
  else
    reply_error(r, 409, "ConflictError",
                "prefix cache not reset: running requests still hold blocks (as in vLLM)");
}

int ic_esim_api_register(struct ic_http_server *srv, ic_esim_engine_t *e) {
  const size_t big = 64u << 20; /* 128k-token prompts as text or id arrays */
  const ic_http_route_t routes[] = {
      {.path = "/v1/completions",
       .methods = "POST",
       .handler = on_completions,
       .ud = e,
       .max_body = big},
      {.path = "/v1/chat/completions",
       .methods = "POST",
       .handler = on_chat,
       .ud = e,
       .max_body = big},
      {.path = "/v1/models", .methods = "GET", .handler = on_models, .ud = e},
      {.path = "/health", .methods = "GET", .handler = on_health, .ud = e},
      {.path = "/metrics", .methods = "GET", .handler = on_metrics, .ud = e, .gzip = true},
      {.path = "/sim/prefix_match",
       .methods = "POST",
       .handler = on_prefix_match,
       .ud = e,
       .max_body = big},
      {.path = "/reset_prefix_cache", .methods = "POST", .handler = on_reset, .ud = e},
  };
  for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
    int rc = ic_http_add_route(srv, &routes[i]);
    if (rc != 0) return rc;
  }
  return 0;
}
