/* HTTP listener (lib/http): a thin layer over libmicrohttpd — exact-path route table, per-route
 * auth hook, method check, body cap, Go-compatible error bodies, JSON replies, optional TLS.
 *
 * Request pipeline (the order is part of the contract: auth before method):
 *   path lookup (404 "404 page not found\n") -> route auth hook -> method check (405 with
 *   `Allow`, body "method not allowed\n\n") -> body collected up to the route cap -> handler.
 *
 * Threads: libmicrohttpd runs its own threads (a pool of `threads`, or one thread per
 * connection when `threads` is 0); handlers and auth hooks run on those threads and may block
 * (e.g. a TokenReview call), so they must be thread-safe. Lifecycle: new -> add_route... ->
 * listen (binds, so a port clash is reported before anything serves) -> start -> stop -> free.
 * TLS: when cert/key files are set, each handshake checks the cert file's mtime and reloads the
 * pair when it changed (rotation without restart); a failed reload keeps the last good pair.
 * Ownership: the server copies every string it is given; requests are owned by the server and
 * valid only during the handler call. */
#ifndef IC_HTTP_H
#define IC_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct ic_http_server ic_http_server_t;
typedef struct ic_http_req ic_http_req_t;

/* A handler must answer with exactly one ic_http_reply* call; if it returns without one the
 * server answers 500. */
typedef void (*ic_http_handler_fn)(ic_http_req_t *req, void *ud);
/* Auth hook: return true to let the request through; return false after having replied
 * (401/403/503...) to stop it. */
typedef bool (*ic_http_auth_fn)(ic_http_req_t *req, void *ud);

typedef struct ic_http_config {
  const char *bind;          /* "host:port", ":port" (all interfaces), "[::1]:port"; port 0 = any */
  unsigned threads;          /* worker threads; 0 = one thread per connection */
  unsigned idle_timeout_s;   /* close idle connections after this long; 0 = never */
  size_t max_body;           /* default body cap for routes that set none; 0 = 1 MiB */
  const char *tls_cert_file; /* PEM; both set = HTTPS, both NULL/"" = plain HTTP */
  const char *tls_key_file;
  const char *name; /* for logs, e.g. "http", "snapshot", "webhook" */
  /* Connection bounds (slow and hostile clients; see docs/server.md "Connection limits"):
   * the first request must arrive complete (headers and body) within request_timeout_ms of the
   * accept (0 = IC_HTTP_DEFAULT_REQUEST_TIMEOUT_MS, the reference's 5 s ReadHeaderTimeout; < 0 =
   * none); a keep-alive connection is closed idle_timeout_s after its last response unless its
   * next request is complete, however it trickles bytes. Past max_conns open connections (0 =
   * IC_HTTP_DEFAULT_MAX_CONNS), or max_conns_per_client from one address (0 =
   * IC_HTTP_DEFAULT_MAX_CONNS_PER_CLIENT), the oldest connection not running a handler is
   * closed, so a new request (a health probe) is always read. */
  int request_timeout_ms;
  unsigned max_conns;
  unsigned max_conns_per_client;
} ic_http_config_t;

#define IC_HTTP_DEFAULT_REQUEST_TIMEOUT_MS 5000
#define IC_HTTP_DEFAULT_MAX_CONNS 1024u
#define IC_HTTP_DEFAULT_MAX_CONNS_PER_CLIENT 128u

/* Connections a listener closed to protect itself (counters since start) and open now. */
typedef struct ic_http_conn_stats {
  uint64_t request_timeout, idle_timeout, per_client_cap, listener_cap, open;
} ic_http_conn_stats_t;

typedef struct ic_http_route {
  const char *path;    /* exact path; a trailing "*" matches any suffix ("/validate-*") */
  const char *methods; /* "GET" / "POST, PUT" (the Allow header value); NULL = any method */
  ic_http_handler_fn handler;
  void *ud;
  ic_http_auth_fn auth; /* optional */
  void *auth_ud;
  size_t max_body; /* 0 = server default; bytes beyond it are discarded and flagged */
  bool gzip;       /* gzip 2xx bodies when the client accepts it (as promhttp does) */
} ic_http_route_t;

/* Returns NULL on bad config (e.g. only one of cert/key) or allocation failure. */
ic_http_server_t *ic_http_new(const ic_http_config_t *cfg);
/* Before ic_http_listen only. Returns 0, IC_EINVAL (bad route) or IC_ENOMEM. */
int ic_http_add_route(ic_http_server_t *s, const ic_http_route_t *route);
/* Binds and listens. On failure returns IC_EIO/IC_EINVAL and writes a reason into err. */
int ic_http_listen(ic_http_server_t *s, char *err, size_t errlen);
/* The bound port (useful with port 0), or -1 before listen. */
int ic_http_port(const ic_http_server_t *s);
/* Starts serving (listens first if that was not done). Returns 0 or negative IC_E*. */
int ic_http_start(ic_http_server_t *s, char *err, size_t errlen);
/* Stops accepting new connections now; requests in flight keep running. Lets a program close
 * several listeners at once before draining them one by one. Idempotent. */
void ic_http_quiesce(ic_http_server_t *s);
/* Stops accepting at once, lets in-flight requests finish for up to drain_ms (<0 = wait
 * without bound), then closes everything. Safe to call more than once and before start. */
void ic_http_stop(ic_http_server_t *s, int drain_ms);
void ic_http_free(ic_http_server_t *s);
/* Zeroes before start. */
ic_http_conn_stats_t ic_http_conn_stats(const ic_http_server_t *s);

/* ---- request accessors (valid during the handler / auth hook) ---- */
const char *ic_http_req_method(const ic_http_req_t *r);
const char *ic_http_req_path(const ic_http_req_t *r);
/* Header value (first one, case-insensitive name) or NULL. */
const char *ic_http_req_header(const ic_http_req_t *r, const char *name);
/* Query argument or NULL. */
const char *ic_http_req_query(const ic_http_req_t *r, const char *key);
/* Body bytes (NUL-terminated for convenience; may contain NULs) and length. */
const char *ic_http_req_body(const ic_http_req_t *r, size_t *len);
/* True when the client sent more than the route's cap (the body holds the first cap bytes). */
bool ic_http_req_body_too_large(const ic_http_req_t *r);
/* Per-request slot for hooks to hand data to the handler (e.g. the authenticated user). */
void ic_http_req_set_user(ic_http_req_t *r, void *p);
void *ic_http_req_user(const ic_http_req_t *r);

/* ---- replies (exactly one per request) ---- */
/* Adds a response header to the reply that follows. Returns 0 or IC_ENOMEM. */
int ic_http_reply_header(ic_http_req_t *r, const char *name, const char *value);
/* Copies body. content_type NULL = no Content-Type header. Returns 0 or negative IC_E*. */
int ic_http_reply(ic_http_req_t *r, unsigned status, const char *content_type, const void *body,
                  size_t len);
/* Like ic_http_reply but takes ownership of a malloc'd body (freed by the server). */
int ic_http_reply_take(ic_http_req_t *r, unsigned status, const char *content_type, char *body,
                       size_t len);
/* Go's http.Error: text/plain; charset=utf-8, X-Content-Type-Options: nosniff, body msg + "\n"
 * (so a message "unauthorized\n" is sent as "unauthorized\n\n", as the reference does). */
int ic_http_reply_error(ic_http_req_t *r, unsigned status, const char *msg);
/* Compact JSON of `j` followed by "\n", Content-Type application/json. Does not steal `j`. */
int ic_http_reply_json(ic_http_req_t *r, unsigned status, const json_t *j);
/* True once a reply was queued for this request. */
bool ic_http_req_replied(const ic_http_req_t *r);
/* ---- streamed replies (SSE, long polls): status and headers now, body later ---- */
/* The body is written from any thread while the MHD thread serves other connections: the
 * connection is suspended while no data is queued (no thread blocks per stream). Needs a
 * thread-pool server (`threads` > 0; IC_ESTATE otherwise). On success *out is a handle owned
 * by the caller until ic_http_stream_close. The body goes out chunked (HTTP/1.1). */
typedef struct ic_http_stream ic_http_stream_t;
int ic_http_reply_stream(ic_http_req_t *r, unsigned status, const char *content_type,
                         ic_http_stream_t **out);
/* Queues bytes (copied). Returns 0, or IC_EIO once the client is gone (stop producing). */
int ic_http_stream_write(ic_http_stream_t *st, const void *data, size_t len);
/* Ends the body and releases the handle. */
void ic_http_stream_close(ic_http_stream_t *st);

/* ---- helpers ---- */
/* Bearer extraction as the reference does it: split at the first space, scheme "Bearer"
 * case-insensitive, token = remainder with surrounding whitespace trimmed. Returns true and
 * sets *tok and *len into `authz` when a non-empty token is present. */
bool ic_http_parse_bearer(const char *authz, const char **tok, size_t *len);
/* Splits "host:port" / ":port" / "[v6]:port" into host (empty = any) and port. Returns 0 or
 * IC_EINVAL. host must hold 256 bytes. */
int ic_http_split_hostport(const char *addr, char host[256], int *port);

/* ---- JSON writing the way Go's encoding/json does (what the reference's clients see) ---- */
struct ic_buf;
/* String literal with quotes: <, >, & as \u003c \u003e \u0026, U+2028/2029 escaped, \b \f \n
 * \r \t short forms, other controls \u00XX, invalid UTF-8 bytes as \ufffd. */
int ic_http_json_str(struct ic_buf *b, const char *s, size_t n);
/* float32 in Go's shortest round-trip form ('f', or 'e' below 1e-6 / from 1e21). NaN/Inf are
 * not valid JSON; they are written as 0. */
int ic_http_json_f32(struct ic_buf *b, float v);
/* Unix ns as a quoted RFC 3339 UTC timestamp with trailing-zero-trimmed nanoseconds (Go's
 * RFC3339Nano); INT64_MIN (Go's zero time) gives "0001-01-01T00:00:00Z". */
int ic_http_json_time(struct ic_buf *b, int64_t unix_ns);

#endif
