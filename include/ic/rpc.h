/* lib/rpc: a thin layer over the gRPC core C API (grpc/grpc.h). Server side: registered methods
 * (unary, client-streaming, server-streaming, bidi), one completion-queue thread per core, unary
 * replies deferred to another thread, TLS with certificate reload, graceful shutdown with a
 * bounded drain, grpc.health.v1 and server reflection. Client side: channels, blocking unary
 * calls, a client-streaming writer and an asynchronous unary pipeline (many calls in flight from
 * one thread) for load generators.
 *
 * Messages cross this API as serialized bytes; callers pack/unpack them (protobuf-c). Status
 * codes are gRPC's numeric codes (IC_RPC_* below, identical to grpc_status_code) so callers need
 * not include grpc headers. Functions return 0 / negative IC_E* or NULL (ic/err.h). */
#ifndef IC_RPC_H
#define IC_RPC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/buf.h"

/* gRPC status codes (numeric values of grpc_status_code). */
enum {
  IC_RPC_OK = 0,
  IC_RPC_CANCELLED = 1,
  IC_RPC_UNKNOWN = 2,
  IC_RPC_INVALID_ARGUMENT = 3,
  IC_RPC_DEADLINE_EXCEEDED = 4,
  IC_RPC_NOT_FOUND = 5,
  IC_RPC_PERMISSION_DENIED = 7,
  IC_RPC_RESOURCE_EXHAUSTED = 8,
  IC_RPC_UNIMPLEMENTED = 12,
  IC_RPC_INTERNAL = 13,
  IC_RPC_UNAVAILABLE = 14,
  IC_RPC_UNAUTHENTICATED = 16,
};

/* ===================================== server ===================================== */

typedef struct ic_rpc_server ic_rpc_server_t;
/* One in-flight call on the server. Owned by the rpc layer. Valid inside a handler callback;
 * for streaming calls valid from on_start until on_close returns (see below). */
typedef struct ic_rpc_call ic_rpc_call_t;

typedef enum {
  IC_RPC_UNARY = 0,         /* one request, one response */
  IC_RPC_CLIENT_STREAM = 1, /* many requests, one response */
  IC_RPC_SERVER_STREAM = 2, /* one request, many responses sent asynchronously */
  IC_RPC_BIDI = 3,          /* many requests, many responses */
} ic_rpc_kind_t;

typedef struct ic_rpc_server_opts {
  int threads;              /* completion-queue threads; <= 0 = one per usable CPU (affinity
                             * mask, capped by a cgroup CPU quota) */
  int max_recv_bytes;       /* <= 0 = 4 MiB (the reference's grpc-go default) */
  const char *tls_cert_file; /* both set = TLS (PEM); both NULL/"" = plaintext */
  const char *tls_key_file;
  /* PEM CA bundle (TLS only; NULL/"" = client certificates not asked for). Clients may then
   * present a certificate; one that does not chain to the bundle fails the handshake, and
   * ic_rpc_call_peer_cert reports who a verified one names. Reloaded on mtime change. */
  const char *tls_client_ca_file;
  /* Transport-flood bounds (0 = unlimited). max_concurrent_streams is advertised per HTTP/2
   * connection (SETTINGS_MAX_CONCURRENT_STREAMS; streams beyond it are refused by the
   * transport). max_streams caps streaming calls open on the whole server; one more is ended
   * at once with RESOURCE_EXHAUSTED. */
  int max_concurrent_streams;
  int max_streams;
  /* Latency breakdown for load generators: unary responses carry the trailer
   * IC_RPC_TIMING_TRAILER = "<arrive>,<handler_start>,<handler_end>", CLOCK_MONOTONIC ns
   * (ic_clock_monotonic_ns) of when the call reached its completion-queue thread, and when the
   * handler started and returned. Comparable with a client's clock on the same machine. */
  bool timing_trailer;
} ic_rpc_server_opts_t;
#define IC_RPC_TIMING_TRAILER "ic-server-timing"
/* CPUs this process may use: its affinity mask capped by a cgroup CPU quota (lib/rpc/cpus.c);
 * the thread count of a server whose opts.threads is <= 0 (before the cap of 64). */
int ic_rpc_usable_cpus(void);

/* Unary handler: decode `req`, append the serialized response to `resp`, return a status code.
 * A non-OK status sends no message; `*msg` (static string) may carry the status message.
 * Runs on a completion-queue thread: must not block for long (long work: ic_rpc_call_defer). */
typedef int (*ic_rpc_unary_fn)(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len,
                               ic_buf_t *resp, const char **msg);

/* Streaming handlers. All run on the call's completion-queue thread, never concurrently for
 * one call.
 *  on_start: SERVER_STREAM gets the single request (req/len); CLIENT_STREAM/BIDI get NULL/0.
 *            Return IC_RPC_OK to continue or a status to finish the call at once.
 *  on_msg:   CLIENT_STREAM/BIDI, once per received message. Return IC_RPC_OK to keep reading
 *            or a status to finish the call (no response message).
 *  on_end:   CLIENT_STREAM/BIDI, when the client half-closed (`status` = OK) or the stream
 *            broke (`status` = CANCELLED etc.). For CLIENT_STREAM with status OK, append the
 *            response to `resp` and return the final status; on a broken stream the return is
 *            ignored and nothing is sent. A client that cancels right after its last message
 *            can look like a half-close here (gRPC core reports both as end-of-stream); the
 *            response is then discarded by the transport and on_close still follows.
 *            BIDI: return the final status (the call finishes once
 *            queued sends are flushed); may be NULL.
 *  on_close: the call is over (finished, cancelled or server shutdown). After it returns the
 *            call pointer is dead: stop calling ic_rpc_stream_send on it. May be NULL. */
typedef struct ic_rpc_stream_handler {
  int (*on_start)(void *ud, ic_rpc_call_t *call, const uint8_t *req, size_t len);
  int (*on_msg)(void *ud, ic_rpc_call_t *call, const uint8_t *msg, size_t len);
  int (*on_end)(void *ud, ic_rpc_call_t *call, int status, ic_buf_t *resp);
  void (*on_close)(void *ud, ic_rpc_call_t *call);
  /* on_drain: SERVER_STREAM/BIDI, every queued message has been handed to the transport (its
   * flow control let it through) and the call is still open: the moment to queue more when the
   * handler paces its sends by the reader. Not called after a finish or abort. May be NULL. */
  void (*on_drain)(void *ud, ic_rpc_call_t *call);
} ic_rpc_stream_handler_t;

/* Creates a server listening on `addr` (Go-style "host:port", ":port" = all interfaces).
 * Returns NULL and writes a message into err (errlen bytes) on failure: bad TLS files
 * ("load gRPC TLS keypair ...") or a bind failure ("listen for grpc: ..."); `*is_tls_error`
 * (may be NULL) tells them apart. Nothing is served until ic_rpc_server_start(). */
ic_rpc_server_t *ic_rpc_server_new(const char *addr, const ic_rpc_server_opts_t *opts, char *err,
                                   size_t errlen, bool *is_tls_error);
/* Port actually bound (useful with ":0"). */
int ic_rpc_server_port(const ic_rpc_server_t *s);

/* Register methods before start. `method` is the full path "/pkg.Service/Method". */
int ic_rpc_server_add_unary(ic_rpc_server_t *s, const char *method, ic_rpc_unary_fn fn, void *ud);
int ic_rpc_server_add_stream(ic_rpc_server_t *s, const char *method, ic_rpc_kind_t kind,
                             const ic_rpc_stream_handler_t *h, void *ud);

/* grpc.health.v1.Health (Check, Watch). Service "" follows ic_rpc_server_set_serving();
 * names passed in `services` (NULL-terminated, may be NULL) report the same status; any other
 * name is NOT_FOUND (Check) / SERVICE_UNKNOWN (Watch). Starts NOT_SERVING. */
int ic_rpc_server_add_health(ic_rpc_server_t *s, const char *const *services);
void ic_rpc_server_set_serving(ic_rpc_server_t *s, bool serving);

/* grpc.reflection.v1alpha and grpc.reflection.v1 ServerReflection, answered from a serialized
 * FileDescriptorSet (e.g. ic_proto_descriptor_set). The bytes must outlive the server. */
int ic_rpc_server_add_reflection(ic_rpc_server_t *s, const uint8_t *fdset, size_t len);

/* Starts the completion-queue threads. */
int ic_rpc_server_start(ic_rpc_server_t *s);

/* Counters for monitoring and tests. */
typedef struct ic_rpc_server_stats {
  size_t open_streams;      /* streaming calls open now */
  uint64_t streams_refused; /* streaming calls ended at once by max_streams */
} ic_rpc_server_stats_t;
void ic_rpc_server_stats(ic_rpc_server_t *s, ic_rpc_server_stats_t *st);

/* Graceful stop: no new calls, open server streams are finished with OK, in-flight calls get up
 * to `drain_ms` (< 0 = unbounded) to complete, then the rest are cancelled. Joins the threads.
 * Returns the number of calls that had to be cancelled. Idempotent. */
int ic_rpc_server_shutdown(ic_rpc_server_t *s, int drain_ms);
/* Frees the server (shuts it down first with drain 0 if needed). */
void ic_rpc_server_free(ic_rpc_server_t *s);

/* --- per-call helpers (server side) --- */
/* Caller deadline as a CLOCK_MONOTONIC instant in ns (ic_clock_monotonic_ns()); INT64_MAX if
 * the caller set none. */
int64_t ic_rpc_call_deadline_ns(const ic_rpc_call_t *c);
/* Full method path of the call. */
const char *ic_rpc_call_method(const ic_rpc_call_t *c);
/* Per-call user pointer for streaming handlers (NULL initially). */
void ic_rpc_call_set_data(ic_rpc_call_t *c, void *data);
void *ic_rpc_call_data(const ic_rpc_call_t *c);
/* The first request-metadata value under `key` (lower-case, e.g. "authorization") copied into
 * out as a NUL-terminated string. Returns its length, IC_ENOTFOUND when absent, IC_ERANGE
 * when it does not fit (or holds a NUL byte). Valid in any handler of the call. */
int ic_rpc_call_metadata(const ic_rpc_call_t *c, const char *key, char *out, size_t cap);
/* The names of the peer's TLS client certificate when one was presented and verified against
 * tls_client_ca_file: its subject common name, then its SANs (DNS, URI, e-mail, IP), each
 * passed to visit (NUL-terminated). Returns the number of names visited, or 0 when there is
 * no verified client certificate (plaintext, no certificate, no client CA). */
size_t ic_rpc_call_peer_cert(const ic_rpc_call_t *c, void (*visit)(void *ud, const char *name),
                             void *ud);

/* --- deferred unary replies (the one way to answer a unary call off its thread) ---
 * A unary handler whose work is too long for a completion-queue thread (tokenizing a prompt)
 * calls ic_rpc_call_defer, hands the handle to another thread and returns at once; the
 * completion-queue thread goes back to serving other calls. The call is then answered exactly
 * once, from any thread, by ic_rpc_deferred_reply. While it waits, the call counts as in
 * flight: ic_rpc_server_shutdown drains it like any call (and, past the drain, cancels it and
 * waits for its reply), so whoever holds a handle must reply, promptly once it is cancelled. */
typedef struct ic_rpc_deferred ic_rpc_deferred_t;
/* From inside a UNARY handler, at most once: the handler's return value, response and message
 * are then ignored. NULL (the handler answers as usual) when `c` is not a unary call or the
 * transport refused. */
ic_rpc_deferred_t *ic_rpc_call_defer(ic_rpc_call_t *c);
/* True once the call is over without an answer: the client cancelled, its deadline passed, or
 * the server cancelled it at shutdown. A reply is then discarded; skip the work. */
bool ic_rpc_deferred_cancelled(ic_rpc_deferred_t *d);
/* Answers the call: `status`, the response bytes when OK, `msg` (may be NULL); all copied.
 * Thread-safe; `d` is dead afterwards. Returns 0, or IC_ESTATE when the call was already over
 * (nothing sent). */
int ic_rpc_deferred_reply(ic_rpc_deferred_t *d, int status, const uint8_t *resp, size_t len,
                          const char *msg);

/* Queues one response message on a SERVER_STREAM/BIDI call; thread-safe, never blocks on the
 * network. At most `limit` messages wait (ic_rpc_stream_set_limit, default 1024); when full
 * the oldest waiting message is dropped. Returns the number of messages dropped by this send
 * (0 or 1), or IC_ESTATE when the call is finishing/closed, IC_ENOMEM. Must not be called
 * after on_close returned. */
int ic_rpc_stream_send(ic_rpc_call_t *c, const uint8_t *msg, size_t len);
void ic_rpc_stream_set_limit(ic_rpc_call_t *c, size_t limit);
/* Queues n messages stored back to back in `data` (lengths in lens) in one step, so on_drain
 * cannot fire between them. Same drop rule and returns as ic_rpc_stream_send (the number
 * dropped). */
int ic_rpc_stream_sendv(ic_rpc_call_t *c, const uint8_t *data, const size_t *lens, size_t n);
/* Ends the call now with `status` and `msg` (copied), discarding queued messages, even when
 * the reader's flow-control window is closed (a normal finish would wait for it). Thread-safe;
 * on_close follows. IC_ESTATE when the call is already closed or its status went out. */
int ic_rpc_stream_abort(ic_rpc_call_t *c, int status, const char *msg);
/* Ends a SERVER_STREAM/BIDI call with `status` after the queued messages are written.
 * Thread-safe; later sends return IC_ESTATE. on_close follows. */
int ic_rpc_stream_finish(ic_rpc_call_t *c, int status, const char *msg);

/* ===================================== client ===================================== */

typedef struct ic_rpc_channel ic_rpc_channel_t;

typedef struct ic_rpc_channel_opts {
  const char *tls_ca_file;     /* PEM roots; NULL = plaintext (unless tls_ca_pem) */
  const char *tls_ca_pem;      /* the same, already in memory (a file a caller has checked) */
  const char *tls_cert_pem;    /* client certificate + key for mutual TLS (TLS only; both or */
  const char *tls_key_pem;     /* neither) */
  const char *tls_server_name; /* SNI / name override for tests; NULL = from target */
  /* The :authority of every call; with TLS also the name the server is verified as (unless
   * tls_server_name). For an address target that stands for a name. NULL = from the target. */
  const char *authority;
  int max_recv_bytes;         /* <= 0 = 4 MiB */
  /* > 0: reconnect attempts start at 100 ms and back off to at most this, on subchannels of
   * the channel's own (not shared with other channels to the same address), so a restarted
   * server is re-reached within this bound. <= 0 = gRPC's defaults (up to 120 s). */
  int max_reconnect_backoff_ms;
} ic_rpc_channel_opts_t;

/* Target "host:port" (gRPC target syntax). opts may be NULL (plaintext). The channel connects
 * lazily. Thread-safe: many threads may call on one channel. NULL when a TLS file cannot be
 * read. */
ic_rpc_channel_t *ic_rpc_channel_new(const char *target, const ic_rpc_channel_opts_t *opts);
void ic_rpc_channel_free(ic_rpc_channel_t *ch);
/* Waits up to timeout_ms for the channel to be READY. 0 or IC_ETIMEOUT. */
int ic_rpc_channel_wait_ready(ic_rpc_channel_t *ch, int timeout_ms);
/* Connectivity states (numeric values of grpc_connectivity_state). */
enum {
  IC_RPC_CH_IDLE = 0,
  IC_RPC_CH_CONNECTING = 1,
  IC_RPC_CH_READY = 2,
  IC_RPC_CH_TRANSIENT_FAILURE = 3,
  IC_RPC_CH_SHUTDOWN = 4,
};
/* The channel's state now; try_connect starts connecting an idle channel. */
int ic_rpc_channel_state(ic_rpc_channel_t *ch, bool try_connect);
/* Waits up to timeout_ms for the state to differ from `last`; returns the state then (an idle
 * channel is asked to connect). */
int ic_rpc_channel_wait_change(ic_rpc_channel_t *ch, int last, int timeout_ms);

/* Blocking unary call. Returns 0 when a gRPC status was received (in *status, response bytes
 * appended to `resp` when OK), IC_ETIMEOUT/IC_EIO/IC_ENOMEM otherwise. timeout_ms <= 0 = none.
 * `status_msg` (may be NULL) receives a malloc'd status message (caller frees) or NULL. */
int ic_rpc_unary(ic_rpc_channel_t *ch, const char *method, const uint8_t *req, size_t len,
                 int timeout_ms, ic_buf_t *resp, int *status, char **status_msg);

/* Request metadata of a client call: `key` lower-case ("authorization"), value_len bytes of
 * `value` (copied when the call starts). */
typedef struct ic_rpc_md {
  const char *key;
  const char *value;
  size_t value_len;
} ic_rpc_md_t;

/* One call of ic_rpc_unary_all. */
#define IC_RPC_NO_STATUS (-1) /* no status came back (the call could not start or was lost) */
typedef struct ic_rpc_unary_call {
  ic_rpc_channel_t *ch;
  const char *method;
  const uint8_t *req;
  size_t len;
  const ic_rpc_md_t *md; /* may be NULL */
  size_t nmd;
  ic_buf_t *resp; /* response bytes appended when OK; may be NULL */
  int status;     /* out: gRPC status code or IC_RPC_NO_STATUS */
} ic_rpc_unary_call_t;
/* Runs n unary calls at once (any mix of channels, one completion queue) and returns when
 * every one has its status: a slow call delays only the return, never the others' delivery.
 * timeout_ms (<= 0 = none) is each call's deadline. 0, or IC_ENOMEM (every status
 * IC_RPC_NO_STATUS). */
int ic_rpc_unary_all(ic_rpc_unary_call_t *calls, size_t n, int timeout_ms);

/* Client-streaming writer (e.g. ReportCacheState). Owned by the caller until finish/cancel. */
typedef struct ic_rpc_writer ic_rpc_writer_t;
ic_rpc_writer_t *ic_rpc_writer_open(ic_rpc_channel_t *ch, const char *method, int timeout_ms);
/* Blocks until the message is handed to the transport (flow control applies). 0 or IC_EIO
 * (stream broken: call ic_rpc_writer_finish to learn the status). */
int ic_rpc_writer_send(ic_rpc_writer_t *w, const uint8_t *msg, size_t len);
/* Half-closes, waits for the response and status, frees the writer. Same returns as
 * ic_rpc_unary. */
int ic_rpc_writer_finish(ic_rpc_writer_t *w, ic_buf_t *resp, int *status, char **status_msg);
/* Cancels the stream (server sees CANCELLED) and frees the writer. Returns the final status
 * the client observed (IC_RPC_CANCELLED normally). */
int ic_rpc_writer_cancel(ic_rpc_writer_t *w);

/* Asynchronous unary pipeline: one completion queue, many calls in flight, results returned in
 * completion order. One thread may start calls while another collects them (open-loop load
 * generation); ic_rpc_pipeline_free must not race either. */
typedef struct ic_rpc_pipeline ic_rpc_pipeline_t;
ic_rpc_pipeline_t *ic_rpc_pipeline_new(ic_rpc_channel_t *ch, const char *method);
void ic_rpc_pipeline_free(ic_rpc_pipeline_t *p); /* cancels and drains calls still in flight */
/* Starts one call; `tag` comes back from ic_rpc_pipeline_next. */
int ic_rpc_pipeline_start(ic_rpc_pipeline_t *p, const uint8_t *req, size_t len, int timeout_ms,
                          void *tag);
/* Waits up to timeout_ms for one call to complete: returns 1 with *tag, *status and the
 * response appended to `resp` (when OK), 0 on timeout, negative IC_E* on error. */
int ic_rpc_pipeline_next(ic_rpc_pipeline_t *p, int timeout_ms, void **tag, int *status,
                         ic_buf_t *resp);
size_t ic_rpc_pipeline_inflight(const ic_rpc_pipeline_t *p);
/* Value of trailing-metadata `key` (e.g. IC_RPC_TIMING_TRAILER) of the call the last
 * ic_rpc_pipeline_next returned, copied into `out` (NUL-terminated, truncated to cap); 0 or
 * IC_ENOTFOUND. Call from the collecting thread only, before the next ic_rpc_pipeline_next. */
int ic_rpc_pipeline_last_trailer(const ic_rpc_pipeline_t *p, const char *key, char *out,
                                 size_t cap);

/* ============================== server-streaming client ============================== */

/* Server-streaming reader (StreamCacheEvents, StreamMetrics, Health.Watch). */
typedef struct ic_rpc_reader ic_rpc_reader_t;
ic_rpc_reader_t *ic_rpc_reader_open(ic_rpc_channel_t *ch, const char *method, const uint8_t *req,
                                    size_t len, int timeout_ms);
/* Waits up to timeout_ms for the next message: 1 = message appended to `msg`, 0 = stream ended
 * (then *status set), IC_ETIMEOUT, IC_EIO. */
int ic_rpc_reader_next(ic_rpc_reader_t *r, int timeout_ms, ic_buf_t *msg, int *status);
void ic_rpc_reader_close(ic_rpc_reader_t *r); /* cancels if still open, frees */

#endif
