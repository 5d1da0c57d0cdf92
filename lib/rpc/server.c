/* gRPC server over the core C API: N completion-queue threads, each with its own pool of
 * pre-requested calls per registered method, and one small state machine per call kind.
 *
 * Design. Every call is bound to the completion queue that announced it, so all of a call's
 * completions (and therefore all handler callbacks for it) run on one thread, in order. Unary
 * calls cost one batch: the handler runs as soon as the request arrives and a single batch
 * sends metadata, message and status and receives the close. Streaming calls keep one
 * RECV_CLOSE_ON_SERVER outstanding for their whole life (it tells us about cancellation), at
 * most one receive and at most one send batch. Sends may be queued from any thread
 * (ic_rpc_stream_send): the queue is bounded and drops the oldest waiting message, so a slow
 * reader can never make a producer wait. A call is freed when it is closed and no batch is
 * outstanding; `refs` counts the outstanding batches plus one for the close. */
#include <errno.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"
#include "rpc_internal.h"

#define MAX_METHODS 32
#define PREREQUEST_PER_METHOD 8 /* pre-requested calls per method per completion queue */
#define DEFAULT_STREAM_LIMIT 1024
#define DEFAULT_MAX_RECV (4 * 1024 * 1024)
#define CALL_POOL_MAX 256 /* recycled unary calls per completion-queue thread */

/* ------------------------------------------------------------------ global init */

static pthread_mutex_t g_init_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_init_refs;

/* gRPC core logs to stderr by itself; route it to our JSON logger at debug level so the
 * server's stderr stays one JSON record per line (grpc-go is silent by default too). */
static void grpc_log_sink(gpr_log_func_args *a) {
  ic_log_debug("grpc_core", IC_LS("file", a->file), IC_LI("line", a->line), IC_LS("message", a->message));
}

void ic_rpc_global_ref(void) {
  pthread_mutex_lock(&g_init_mu);
  if (g_init_refs++ == 0) {
    gpr_set_log_function(grpc_log_sink);
    grpc_init();
  }
  pthread_mutex_unlock(&g_init_mu);
}

void ic_rpc_global_unref(void) {
  pthread_mutex_lock(&g_init_mu);
  /* grpc_shutdown() is asynchronous and re-init after it is slow; processes keep gRPC
   * initialised once used (the refcount only guards double init). */
  if (g_init_refs > 0) g_init_refs--;
  pthread_mutex_unlock(&g_init_mu);
}

/* ------------------------------------------------------------------ byte buffers */

int ic_rpc_bb_read(grpc_byte_buffer *bb, ic_buf_t *scratch, const uint8_t **data, size_t *len) {
  *data = (const uint8_t *)"";
  *len = 0;
  if (!bb) return 0;
  if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
      bb->data.raw.slice_buffer.count == 1) {
    /* Point into the buffer's own slice: small slices keep their bytes inline in the slice
     * struct, so a local copy of the struct would leave a dangling pointer. */
    grpc_slice *s = &bb->data.raw.slice_buffer.slices[0];
    *data = GRPC_SLICE_START_PTR(*s);
    *len = GRPC_SLICE_LENGTH(*s);
    return 0;
  }
  grpc_byte_buffer_reader rd;
  if (!grpc_byte_buffer_reader_init(&rd, bb)) return IC_EPROTO;
  ic_buf_reset(scratch);
  grpc_slice s;
  int rc = 0;
  while (grpc_byte_buffer_reader_next(&rd, &s)) {
    if (rc == 0) rc = ic_buf_append(scratch, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
    grpc_slice_unref(s);
  }
  grpc_byte_buffer_reader_destroy(&rd);
  if (rc) return rc;
  if (scratch->data) *data = (const uint8_t *)scratch->data;
  *len = scratch->len;
  return 0;
}

grpc_byte_buffer *ic_rpc_bb_from(const uint8_t *data, size_t len) {
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

void ic_rpc_listen_addr(const char *addr, char *out, size_t cap) {
  if (!addr || !*addr)
    snprintf(out, cap, "[::]:0");
  else if (addr[0] == ':')
    snprintf(out, cap, "[::]%s", addr);
  else
    snprintf(out, cap, "%s", addr);
}

/* ------------------------------------------------------------------ types */

enum tag_kind { TAG_NEW = 1, TAG_UNARY_DONE, TAG_RECV, TAG_SEND, TAG_STATUS, TAG_CLOSE, TAG_SHUTDOWN };

typedef struct tag {
  uint8_t kind;
  ic_rpc_call_t *call;
} tag_t;

typedef struct method {
  char *path;
  ic_rpc_kind_t kind; /* or -1 for the generic (unknown-method) slot */
  ic_rpc_unary_fn unary;
  ic_rpc_stream_handler_t sh;
  void *ud;
  void *handle; /* grpc_server_register_method */
} method_t;

typedef struct cq_thread {
  ic_rpc_server_t *srv;
  grpc_completion_queue *cq;
  pthread_t th;
  bool started;
  ic_buf_t scratch; /* request bytes when a payload spans several slices */
  ic_buf_t resp;
  /* Finished unary calls kept for reuse. A unary call is requested and freed on its own
   * thread only, so the pool takes no lock and the steady state allocates no call struct. */
  struct ic_rpc_call *pool;
  int npool;
} cq_thread_t;

typedef struct qmsg {
  struct qmsg *next;
  grpc_byte_buffer *bb;
} qmsg_t;

struct ic_rpc_call {
  ic_rpc_server_t *srv;
  cq_thread_t *cqt;
  method_t *m; /* NULL = unknown method */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_call_details details; /* generic calls only */
  grpc_byte_buffer *payload;
  grpc_byte_buffer *recv_bb;
  grpc_byte_buffer *send_bb; /* in flight */
  grpc_byte_buffer *final_bb; /* client-stream response in the status batch */
  grpc_slice status_details;
  bool has_status_details;
  grpc_metadata timing;   /* IC_RPC_TIMING_TRAILER (opts.timing_trailer) */
  bool has_timing;
  int64_t arrive_ns;      /* when the call reached its thread; 0 = no timing trailer */
  int64_t handler_ns;     /* when its handler started (deferred calls' timing trailer) */
  bool deferred;          /* unary call answered by ic_rpc_deferred_reply (refs, mu in use) */
  int cancelled;
  tag_t t_new, t_recv, t_send, t_status, t_close;
  void *data;

  pthread_mutex_t mu; /* guards everything below (streams only) */
  int refs;           /* outstanding batches + close */
  bool md_sent;       /* initial metadata sent */
  bool send_busy;
  bool finishing;     /* finish requested: no more sends accepted */
  bool status_started;
  bool closed;        /* RECV_CLOSE_ON_SERVER completed */
  bool close_notified;
  int finish_status;
  const char *finish_msg;
  qmsg_t *qhead, *qtail;
  size_t qlen, qlimit;
  struct ic_rpc_call *live_next, *live_prev; /* server's live streaming calls */
  bool live;
};

struct ic_rpc_server {
  grpc_server *srv;
  int port;
  int nthreads;
  cq_thread_t *cqts;
  grpc_completion_queue *shutdown_cq;
  method_t methods[MAX_METHODS];
  size_t nmethods;
  method_t generic;
  bool started;
  bool timing_trailer;
  atomic_bool shutting_down;
  bool shut_down;
  pthread_mutex_t mu; /* live list, nlive, ndeferred */
  size_t nlive, max_streams;
  size_t ndeferred;           /* deferred unary calls not yet freed (shutdown waits for them) */
  pthread_cond_t deferred_cv; /* ndeferred dropped */
  uint64_t streams_refused;
  /* gRPC core aborts when a send batch races grpc_server_cancel_all_calls(); stream sends
   * take this lock shared, the cancel takes it exclusive and sets cancelled_all. */
  pthread_rwlock_t cancel_lock;
  bool cancelled_all;
  ic_rpc_call_t *live;
  ic_rpc_health_t *health;
  ic_rpc_reflection_t *reflection;
  /* TLS with reload */
  char *cert_file, *key_file;
  char *client_ca_file; /* client certificates are verified against it (NULL = not asked) */
  pthread_mutex_t tls_mu;
  struct timespec cert_mtime, ca_mtime;
  bool tls_loaded;
};

/* ------------------------------------------------------------------ TLS */

static char *read_file(const char *path, size_t *n_out) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  ic_buf_t b = IC_BUF_INIT;
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) ic_buf_append(&b, tmp, n);
  fclose(f);
  if (!b.data) ic_buf_append(&b, "", 0);
  if (n_out) *n_out = b.len;
  return ic_buf_detach(&b, NULL);
}

/* Loads and checks a PEM pair with OpenSSL so a bad pair is reported at startup with a clear
 * message instead of failing every handshake later. */
static int load_pair(const char *cert_file, const char *key_file, char **cert, char **key,
                     char *err, size_t errlen) {
  *cert = *key = NULL;
  char *c = read_file(cert_file, NULL);
  if (!c) {
    snprintf(err, errlen, "open %s: %s", cert_file, strerror(errno));
    return IC_EIO;
  }
  char *k = read_file(key_file, NULL);
  if (!k) {
    snprintf(err, errlen, "open %s: %s", key_file, strerror(errno));
    free(c);
    return IC_EIO;
  }
  BIO *cb = BIO_new_mem_buf(c, -1), *kb = BIO_new_mem_buf(k, -1);
  X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
  EVP_PKEY *pk = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
  int rc = 0;
  if (!x)
    snprintf(err, errlen, "tls: failed to find any PEM data in certificate input"), rc = IC_EINVAL;
  else if (!pk)
    snprintf(err, errlen, "tls: failed to find any PEM data in key input"), rc = IC_EINVAL;
  else if (X509_check_private_key(x, pk) != 1)
    snprintf(err, errlen, "tls: private key does not match public key"), rc = IC_EINVAL;
  ERR_clear_error();
  X509_free(x);
  EVP_PKEY_free(pk);
  BIO_free(cb);
  BIO_free(kb);
  if (rc) {
    free(c);
    free(k);
    return rc;
  }
  *cert = c;
  *key = k;
  return 0;
}

/* A client CA bundle must hold at least one certificate: an empty or garbled bundle would make
 * every client certificate fail, which is better said once at startup. */
static int check_ca_bundle(const char *file, char *err, size_t errlen) {
  char *pem = read_file(file, NULL);
  if (!pem) {
    snprintf(err, errlen, "open %s: %s", file, strerror(errno));
    return IC_EIO;
  }
  BIO *b = BIO_new_mem_buf(pem, -1);
  X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  int rc = x ? 0 : IC_EINVAL;
  if (!x) snprintf(err, errlen, "tls: failed to find any PEM data in CA bundle");
  ERR_clear_error();
  X509_free(x);
  BIO_free(b);
  free(pem);
  return rc;
}

/* Called by gRPC core on every TLS handshake: reload the pair when the certificate file's
 * mtime moved forward; on failure keep serving the last good pair. */
static grpc_ssl_certificate_config_reload_status tls_fetch(void *ud,
                                                           grpc_ssl_server_certificate_config **cfg) {
  ic_rpc_server_t *s = ud;
  struct stat st;
  grpc_ssl_certificate_config_reload_status rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
  pthread_mutex_lock(&s->tls_mu);
  bool newer = false;
  if (stat(s->cert_file, &st) == 0)
    newer = !s->tls_loaded || st.st_mtim.tv_sec > s->cert_mtime.tv_sec ||
            (st.st_mtim.tv_sec == s->cert_mtime.tv_sec && st.st_mtim.tv_nsec > s->cert_mtime.tv_nsec);
  struct stat cst;
  if (s->client_ca_file && stat(s->client_ca_file, &cst) == 0 &&
      (cst.st_mtim.tv_sec != s->ca_mtime.tv_sec || cst.st_mtim.tv_nsec != s->ca_mtime.tv_nsec))
    newer = true; /* a rotated client CA bundle is picked up like a rotated certificate */
  if (newer) {
    char *cert, *key, err[256];
    char *roots = s->client_ca_file ? read_file(s->client_ca_file, NULL) : NULL;
    if (s->client_ca_file && (!roots || !*roots)) {
      snprintf(err, sizeof err, "open %s: unreadable or empty client CA bundle", s->client_ca_file);
      free(roots);
      ic_log_error("grpc_tls_reload", IC_LS("err", err), IC_LS("client_ca_file", s->client_ca_file));
      pthread_mutex_unlock(&s->tls_mu);
      return s->tls_loaded ? rs : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
    }
    if (load_pair(s->cert_file, s->key_file, &cert, &key, err, sizeof err) == 0) {
      grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
      /* gRPC core asserts non-NULL roots on a fetched config even when client certificates
       * are not requested; the server's own chain then stands in (never used to verify). */
      *cfg = grpc_ssl_server_certificate_config_create(roots ? roots : cert, &pair, 1);
      free(cert);
      free(key);
      s->cert_mtime = st.st_mtim;
      if (s->client_ca_file) s->ca_mtime = cst.st_mtim;
      s->tls_loaded = true;
      rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
    } else {
      ic_log_error("grpc_tls_reload", IC_LS("err", err), IC_LS("cert_file", s->cert_file));
      if (!s->tls_loaded) rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
    }
    free(roots);
  }
  pthread_mutex_unlock(&s->tls_mu);
  return rs;
}

/* ------------------------------------------------------------------ call bookkeeping */

static void request_call(cq_thread_t *cqt, method_t *m);
static void free_chain(qmsg_t *q);

static void live_add(ic_rpc_call_t *c) {
  pthread_mutex_lock(&c->srv->mu);
  c->live_next = c->srv->live;
  c->live_prev = NULL;
  if (c->srv->live) c->srv->live->live_prev = c;
  c->srv->live = c;
  c->live = true;
  c->srv->nlive++;
  pthread_mutex_unlock(&c->srv->mu);
}

/* Admits a new streaming call under max_streams (counted from here until it is freed). */
static bool live_admit(ic_rpc_call_t *c) {
  ic_rpc_server_t *s = c->srv;
  pthread_mutex_lock(&s->mu);
  bool ok = s->max_streams == 0 || s->nlive < s->max_streams;
  if (!ok) s->streams_refused++;
  pthread_mutex_unlock(&s->mu);
  if (ok) live_add(c);
  return ok;
}

void ic_rpc_server_stats(ic_rpc_server_t *s, ic_rpc_server_stats_t *st) {
  pthread_mutex_lock(&s->mu);
  st->open_streams = s->nlive;
  st->streams_refused = s->streams_refused;
  pthread_mutex_unlock(&s->mu);
}

static void live_remove(ic_rpc_call_t *c) {
  pthread_mutex_lock(&c->srv->mu);
  if (c->live) {
    if (c->live_prev)
      c->live_prev->live_next = c->live_next;
    else
      c->srv->live = c->live_next;
    if (c->live_next) c->live_next->live_prev = c->live_prev;
    c->live = false;
    c->srv->nlive--;
  }
  pthread_mutex_unlock(&c->srv->mu);
}

static void call_free(ic_rpc_call_t *c) {
  live_remove(c);
  if (c->call) grpc_call_unref(c->call);
  if (!c->m) grpc_call_details_destroy(&c->details);
  if (c->payload) grpc_byte_buffer_destroy(c->payload);
  if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
  if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
  if (c->final_bb) grpc_byte_buffer_destroy(c->final_bb);
  if (c->has_status_details) grpc_slice_unref(c->status_details);
  if (c->has_timing) grpc_slice_unref(c->timing.value);
  free_chain(c->qhead);
  pthread_mutex_destroy(&c->mu);
  cq_thread_t *cqt = c->cqt;
  /* A deferred call may be freed by the thread that answered it: only calls freed on their own
   * completion-queue thread go back to its lock-free pool. */
  if (c->deferred) {
    ic_rpc_server_t *s = c->srv;
    grpc_metadata_array_destroy(&c->md);
    free(c);
    pthread_mutex_lock(&s->mu);
    if (--s->ndeferred == 0) pthread_cond_broadcast(&s->deferred_cv);
    pthread_mutex_unlock(&s->mu);
    return;
  }
  if (c->m && c->m->kind == IC_RPC_UNARY && cqt->npool < CALL_POOL_MAX) {
    /* The metadata array keeps its storage (core grows it on demand); its slices belonged to
     * the finished call. */
    grpc_metadata_array md = c->md;
    memset(c, 0, sizeof *c);
    c->md = md;
    c->md.count = 0;
    c->live_next = cqt->pool;
    cqt->pool = c;
    cqt->npool++;
    return;
  }
  grpc_metadata_array_destroy(&c->md);
  free(c);
}

static ic_rpc_call_t *call_alloc(ic_rpc_server_t *s, cq_thread_t *cqt, method_t *m) {
  ic_rpc_call_t *c = NULL;
  if (m && m->kind == IC_RPC_UNARY && cqt->pool) {
    c = cqt->pool;
    cqt->pool = c->live_next;
    cqt->npool--;
    c->live_next = NULL;
  } else {
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    grpc_metadata_array_init(&c->md);
  }
  c->srv = s;
  c->cqt = cqt;
  c->m = m;
  if (!m) grpc_call_details_init(&c->details);
  pthread_mutex_init(&c->mu, NULL);
  c->qlimit = DEFAULT_STREAM_LIMIT;
  c->t_new = (tag_t){TAG_NEW, c};
  c->t_recv = (tag_t){TAG_RECV, c};
  c->t_send = (tag_t){TAG_SEND, c};
  c->t_status = (tag_t){TAG_STATUS, c};
  c->t_close = (tag_t){TAG_CLOSE, c};
  return c;
}

static void request_call(cq_thread_t *cqt, method_t *m) {
  ic_rpc_server_t *s = cqt->srv;
  if (atomic_load(&s->shutting_down)) return;
  ic_rpc_call_t *c = call_alloc(s, cqt, m == &s->generic ? NULL : m);
  if (!c) return;
  grpc_call_error e;
  if (m == &s->generic) {
    e = grpc_server_request_call(s->srv, &c->call, &c->details, &c->md, cqt->cq, cqt->cq, &c->t_new);
  } else {
    bool payload = m->kind == IC_RPC_UNARY || m->kind == IC_RPC_SERVER_STREAM;
    e = grpc_server_request_registered_call(s->srv, m->handle, &c->call, &c->deadline, &c->md,
                                            payload ? &c->payload : NULL, cqt->cq, cqt->cq, &c->t_new);
  }
  if (e != GRPC_CALL_OK) call_free(c);
}

/* Drops one reference; frees when the call is closed and nothing is outstanding. on_close is
 * delivered once, outside the call lock (handlers take their own locks and call send()). */
static void call_unref(ic_rpc_call_t *c) {
  pthread_mutex_lock(&c->mu);
  bool notify = false, dead;
  c->refs--;
  if (c->closed && !c->close_notified) {
    c->close_notified = true;
    c->finishing = true;
    notify = true;
  }
  dead = c->refs == 0;
  pthread_mutex_unlock(&c->mu);
  if (notify && c->m && c->m->sh.on_close) c->m->sh.on_close(c->m->ud, c);
  if (dead) call_free(c);
}

/* Starts the status batch (with pending initial metadata / final message). Lock held. */
static void start_status_locked(ic_rpc_call_t *c) {
  if (c->status_started || c->closed) return;
  pthread_rwlock_rdlock(&c->srv->cancel_lock);
  if (c->srv->cancelled_all) {
    pthread_rwlock_unlock(&c->srv->cancel_lock);
    return;
  }
  c->status_started = true;
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!c->md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->md_sent = true;
  }
  if (c->final_bb) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->final_bb;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)c->finish_status;
  if (c->finish_msg && *c->finish_msg) {
    c->status_details = grpc_slice_from_copied_string(c->finish_msg);
    c->has_status_details = true;
    ops[n].data.send_status_from_server.status_details = &c->status_details;
  }
  n++;
  c->refs++;
  if (grpc_call_start_batch(c->call, ops, n, &c->t_status, NULL) != GRPC_CALL_OK) c->refs--;
  pthread_rwlock_unlock(&c->srv->cancel_lock);
}

/* Starts the next queued send, or the status batch when finishing and drained. Lock held. */
static void pump_locked(ic_rpc_call_t *c) {
  if (c->send_busy || c->closed) return;
  if (c->qhead) {
    pthread_rwlock_rdlock(&c->srv->cancel_lock);
    if (c->srv->cancelled_all) {
      pthread_rwlock_unlock(&c->srv->cancel_lock);
      return;
    }
    qmsg_t *q = c->qhead;
    c->qhead = q->next;
    if (!c->qhead) c->qtail = NULL;
    c->qlen--;
    c->send_bb = q->bb;
    free(q);
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->md_sent) {
      ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
      c->md_sent = true;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send_bb;
    c->send_busy = true;
    c->refs++;
    if (grpc_call_start_batch(c->call, ops, n, &c->t_send, NULL) != GRPC_CALL_OK) {
      c->refs--;
      c->send_busy = false;
    }
    pthread_rwlock_unlock(&c->srv->cancel_lock);
    return;
  }
  if (c->finishing) start_status_locked(c);
}

static void free_chain(qmsg_t *q) {
  for (qmsg_t *n; q; q = n) {
    n = q->next;
    grpc_byte_buffer_destroy(q->bb);
    free(q);
  }
}

int ic_rpc_stream_sendv(ic_rpc_call_t *c, const uint8_t *data, const size_t *lens, size_t n) {
  if (!c || (n && (!data || !lens))) return IC_EINVAL;
  /* Byte buffers are built before taking the call lock: the lock is shared with the
   * completion-queue thread. */
  qmsg_t *first = NULL, *last = NULL;
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    qmsg_t *q = malloc(sizeof *q);
    if (!q) {
      free_chain(first);
      return IC_ENOMEM;
    }
    q->next = NULL;
    q->bb = ic_rpc_bb_from(data + off, lens[i]);
    off += lens[i];
    if (last)
      last->next = q;
    else
      first = q;
    last = q;
  }
  int dropped = 0;
  pthread_mutex_lock(&c->mu);
  if (c->finishing || c->closed) {
    pthread_mutex_unlock(&c->mu);
    free_chain(first);
    return IC_ESTATE;
  }
  for (qmsg_t *q = first, *nx; q; q = nx) {
    nx = q->next;
    q->next = NULL;
    if (c->qlen >= c->qlimit && c->qhead) {
      qmsg_t *old = c->qhead;
      c->qhead = old->next;
      if (!c->qhead) c->qtail = NULL;
      c->qlen--;
      grpc_byte_buffer_destroy(old->bb);
      free(old);
      dropped++;
    }
    if (c->qtail)
      c->qtail->next = q;
    else
      c->qhead = q;
    c->qtail = q;
    c->qlen++;
  }
  pump_locked(c);
  pthread_mutex_unlock(&c->mu);
  return dropped;
}

int ic_rpc_stream_send(ic_rpc_call_t *c, const uint8_t *msg, size_t len) {
  return ic_rpc_stream_sendv(c, msg ? msg : (const uint8_t *)"", &len, 1);
}

int ic_rpc_stream_abort(ic_rpc_call_t *c, int status, const char *msg) {
  if (!c) return IC_EINVAL;
  pthread_mutex_lock(&c->mu);
  if (c->closed || c->status_started) {
    pthread_mutex_unlock(&c->mu);
    return IC_ESTATE;
  }
  c->finishing = true;
  free_chain(c->qhead);
  c->qhead = c->qtail = NULL;
  c->qlen = 0;
  /* A cancel carries its status and message to the client in trailers (gRPC core writes
   * them ahead of RST_STREAM), and it does not wait for the peer's flow-control window. */
  c->status_started = true;
  pthread_rwlock_rdlock(&c->srv->cancel_lock);
  if (!c->srv->cancelled_all) grpc_call_cancel_with_status(c->call, (grpc_status_code)status, msg ? msg : "", NULL);
  pthread_rwlock_unlock(&c->srv->cancel_lock);
  pthread_mutex_unlock(&c->mu);
  return 0;
}

void ic_rpc_stream_set_limit(ic_rpc_call_t *c, size_t limit) {
  pthread_mutex_lock(&c->mu);
  c->qlimit = limit ? limit : 1;
  pthread_mutex_unlock(&c->mu);
}

int ic_rpc_stream_finish(ic_rpc_call_t *c, int status, const char *msg) {
  pthread_mutex_lock(&c->mu);
  if (c->finishing || c->closed) {
    pthread_mutex_unlock(&c->mu);
    return IC_ESTATE;
  }
  c->finishing = true;
  c->finish_status = status;
  c->finish_msg = msg;
  pump_locked(c);
  pthread_mutex_unlock(&c->mu);
  return 0;
}

int64_t ic_rpc_call_deadline_ns(const ic_rpc_call_t *c) {
  if (c->deadline.tv_sec == INT64_MAX || c->deadline.clock_type == GPR_TIMESPAN) return INT64_MAX;
  gpr_timespec now = gpr_now(c->deadline.clock_type);
  gpr_timespec left = gpr_time_sub(c->deadline, now);
  int64_t left_ns = (int64_t)left.tv_sec * 1000000000LL + left.tv_nsec;
  if (left.tv_sec > 1000000000LL) return INT64_MAX;
  return ic_clock_monotonic_ns() + left_ns;
}

const char *ic_rpc_call_method(const ic_rpc_call_t *c) { return c->m ? c->m->path : "?"; }
void ic_rpc_call_set_data(ic_rpc_call_t *c, void *data) { c->data = data; }
void *ic_rpc_call_data(const ic_rpc_call_t *c) { return c->data; }
/* peer.c reads request metadata and the peer's auth context through these. */
const grpc_metadata_array *ic_rpc_call_md(const ic_rpc_call_t *c) { return &c->md; }
grpc_call *ic_rpc_call_core(const ic_rpc_call_t *c) { return c->call; }

/* ------------------------------------------------------------------ call state machines */

static void start_recv(ic_rpc_call_t *c) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &c->recv_bb;
  pthread_mutex_lock(&c->mu);
  c->refs++;
  if (grpc_call_start_batch(c->call, &op, 1, &c->t_recv, NULL) != GRPC_CALL_OK) c->refs--;
  pthread_mutex_unlock(&c->mu);
}

static void set_timing(ic_rpc_call_t *c, int64_t h0) {
  char v[64];
  int vn = snprintf(v, sizeof v, "%lld,%lld,%lld", (long long)c->arrive_ns, (long long)h0,
                    (long long)ic_clock_monotonic_ns());
  c->timing.key = grpc_slice_from_static_string(IC_RPC_TIMING_TRAILER);
  c->timing.value = grpc_slice_from_copied_buffer(v, (size_t)vn);
  c->has_timing = true;
}

/* The batch that answers a unary call: initial metadata, the response (OK only), the status
 * with its message and timing trailer, and, unless the call was deferred (its close has been
 * awaited since ic_rpc_call_defer), the close. A deferred reply's message is copied; a
 * handler's is static. */
static grpc_call_error start_unary_reply(ic_rpc_call_t *c, int status, const void *resp, size_t len,
                                         const char *msg) {
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (status == IC_RPC_OK) {
    c->final_bb = ic_rpc_bb_from((const uint8_t *)(resp ? resp : ""), len);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->final_bb;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)status;
  if (msg && *msg) {
    c->status_details =
        c->deferred ? grpc_slice_from_copied_string(msg) : grpc_slice_from_static_string(msg);
    c->has_status_details = true;
    ops[n].data.send_status_from_server.status_details = &c->status_details;
  }
  if (c->has_timing) {
    ops[n].data.send_status_from_server.trailing_metadata_count = 1;
    ops[n].data.send_status_from_server.trailing_metadata = &c->timing;
  }
  n++;
  if (!c->deferred) {
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
  }
  return grpc_call_start_batch(c->call, ops, n, &c->t_status, NULL);
}

static void handle_unary(ic_rpc_call_t *c) {
  cq_thread_t *cqt = c->cqt;
  method_t *m = c->m;
  const char *msg = NULL;
  int status;
  const uint8_t *data;
  size_t len;
  ic_buf_reset(&cqt->resp);
  if (!c->payload) {
    status = IC_RPC_INTERNAL;
    msg = "grpc: error while receiving the request message";
  } else if (ic_rpc_bb_read(c->payload, &cqt->scratch, &data, &len) != 0) {
    status = IC_RPC_INTERNAL;
    msg = "grpc: error unmarshalling request";
  } else {
    int64_t h0 = c->arrive_ns ? ic_clock_monotonic_ns() : 0;
    c->handler_ns = h0;
    status = m->unary(m->ud, c, data, len, &cqt->resp, &msg);
    if (c->deferred) { /* answered by ic_rpc_deferred_reply; drop the handler's reference */
      call_unref(c);
      return;
    }
    if (c->arrive_ns) set_timing(c, h0);
  }
  if (start_unary_reply(c, status, cqt->resp.data, cqt->resp.len, msg) != GRPC_CALL_OK)
    call_free(c);
}

/* ------------------------------------------------------------------ deferred unary replies */

ic_rpc_deferred_t *ic_rpc_call_defer(ic_rpc_call_t *c) {
  if (!c || !c->m || c->m->kind != IC_RPC_UNARY || c->deferred) return NULL;
  /* The close is awaited from now on: it completes early only when the call is cancelled, which
   * is what ic_rpc_deferred_cancelled reports. */
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->cancelled;
  if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK) return NULL;
  pthread_mutex_lock(&c->mu);
  c->refs = 3; /* the close, the reply to come, the handler still running */
  c->deferred = true;
  pthread_mutex_unlock(&c->mu);
  pthread_mutex_lock(&c->srv->mu);
  c->srv->ndeferred++;
  pthread_mutex_unlock(&c->srv->mu);
  return (ic_rpc_deferred_t *)c;
}

bool ic_rpc_deferred_cancelled(ic_rpc_deferred_t *d) {
  ic_rpc_call_t *c = (ic_rpc_call_t *)d;
  pthread_mutex_lock(&c->mu);
  bool closed = c->closed;
  pthread_mutex_unlock(&c->mu);
  return closed;
}

int ic_rpc_deferred_reply(ic_rpc_deferred_t *d, int status, const uint8_t *resp, size_t len,
                          const char *msg) {
  ic_rpc_call_t *c = (ic_rpc_call_t *)d;
  if (!c) return IC_EINVAL;
  int rc = IC_ESTATE; /* the call is over (cancelled, or the server cancelled every call) */
  pthread_mutex_lock(&c->mu);
  c->status_started = true;
  if (!c->closed) {
    /* Same rule as stream sends: no batch may race grpc_server_cancel_all_calls(). */
    pthread_rwlock_rdlock(&c->srv->cancel_lock);
    if (!c->srv->cancelled_all) {
      if (c->arrive_ns) set_timing(c, c->handler_ns);
      c->refs++;
      if (start_unary_reply(c, status, resp, len, msg) == GRPC_CALL_OK)
        rc = 0;
      else
        c->refs--;
    }
    pthread_rwlock_unlock(&c->srv->cancel_lock);
  }
  pthread_mutex_unlock(&c->mu);
  call_unref(c); /* the reply's reference */
  return rc;
}

static void handle_unknown(ic_rpc_call_t *c) {
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
  c->status_details = grpc_slice_from_static_string("unknown service or method");
  c->has_status_details = true;
  ops[1].data.send_status_from_server.status_details = &c->status_details;
  ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[2].data.recv_close_on_server.cancelled = &c->cancelled;
  if (grpc_call_start_batch(c->call, ops, 3, &c->t_status, NULL) != GRPC_CALL_OK) call_free(c);
}

static void handle_stream_start(ic_rpc_call_t *c) {
  method_t *m = c->m;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->cancelled;
  c->refs = 1; /* the close */
  if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK) {
    call_free(c);
    return;
  }
  if (!live_admit(c)) {
    /* Over the server-wide stream cap: end it before any handler state exists. */
    c->refs++;
    ic_rpc_stream_finish(c, IC_RPC_RESOURCE_EXHAUSTED, "too many open streams on this server; retry later");
    call_unref(c);
    return;
  }
  c->refs++; /* held across on_start so the call cannot vanish under it */
  int st = IC_RPC_OK;
  if (m->kind == IC_RPC_SERVER_STREAM) {
    const uint8_t *data;
    size_t len;
    if (!c->payload || ic_rpc_bb_read(c->payload, &c->cqt->scratch, &data, &len) != 0)
      st = IC_RPC_INTERNAL;
    else if (m->sh.on_start)
      st = m->sh.on_start(m->ud, c, data, len);
  } else if (m->sh.on_start) {
    st = m->sh.on_start(m->ud, c, NULL, 0);
  }
  if (st != IC_RPC_OK) {
    ic_rpc_stream_finish(c, st, NULL);
  } else if (m->kind == IC_RPC_CLIENT_STREAM || m->kind == IC_RPC_BIDI) {
    start_recv(c);
  } else if (atomic_load(&c->srv->shutting_down)) {
    ic_rpc_stream_finish(c, IC_RPC_OK, NULL);
  }
  call_unref(c);
}

static void handle_recv(ic_rpc_call_t *c, bool ok) {
  method_t *m = c->m;
  grpc_byte_buffer *bb = c->recv_bb;
  c->recv_bb = NULL;
  if (ok && bb) {
    const uint8_t *data;
    size_t len;
    int st = ic_rpc_bb_read(bb, &c->cqt->scratch, &data, &len) == 0
                 ? (m->sh.on_msg ? m->sh.on_msg(m->ud, c, data, len) : IC_RPC_OK)
                 : IC_RPC_INTERNAL;
    grpc_byte_buffer_destroy(bb);
    if (st == IC_RPC_OK)
      start_recv(c);
    else
      ic_rpc_stream_finish(c, st, NULL);
  } else {
    /* NULL buffer with ok = half-close; !ok = the stream broke (cancel, deadline, reset). */
    if (bb) grpc_byte_buffer_destroy(bb);
    pthread_mutex_lock(&c->mu);
    bool broken = !ok || c->closed;
    pthread_mutex_unlock(&c->mu);
    if (m->kind == IC_RPC_CLIENT_STREAM) {
      ic_buf_t *resp = &c->cqt->resp;
      ic_buf_reset(resp);
      int st = m->sh.on_end ? m->sh.on_end(m->ud, c, broken ? IC_RPC_CANCELLED : IC_RPC_OK, resp)
                            : IC_RPC_OK;
      if (!broken) {
        pthread_mutex_lock(&c->mu);
        if (st == IC_RPC_OK)
          c->final_bb = ic_rpc_bb_from((const uint8_t *)(resp->data ? resp->data : ""), resp->len);
        pthread_mutex_unlock(&c->mu);
        ic_rpc_stream_finish(c, st, NULL);
      }
    } else {
      int st = IC_RPC_OK;
      if (m->sh.on_end) st = m->sh.on_end(m->ud, c, broken ? IC_RPC_CANCELLED : IC_RPC_OK, NULL);
      if (!broken) ic_rpc_stream_finish(c, st, NULL);
    }
  }
}

static void handle_send_done(ic_rpc_call_t *c, bool ok) {
  pthread_mutex_lock(&c->mu);
  if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
  c->send_bb = NULL;
  c->send_busy = false;
  pump_locked(c);
  bool drained = ok && !c->send_busy && !c->qhead && !c->finishing && !c->closed;
  pthread_mutex_unlock(&c->mu);
  if (drained && c->m && c->m->sh.on_drain) c->m->sh.on_drain(c->m->ud, c);
}

static void handle_event(cq_thread_t *cqt, grpc_event ev) {
  tag_t *t = ev.tag;
  ic_rpc_call_t *c = t->call;
  switch (t->kind) {
  case TAG_NEW: {
    if (cqt->srv->timing_trailer) c->arrive_ns = ic_clock_monotonic_ns();
    method_t *m = c->m ? c->m : &cqt->srv->generic;
    if (!ev.success) { /* server shutting down: the requested call never matched */
      call_free(c);
      return;
    }
    request_call(cqt, m); /* keep the pool full */
    if (!c->m)
      handle_unknown(c);
    else if (c->m->kind == IC_RPC_UNARY)
      handle_unary(c);
    else
      handle_stream_start(c);
    return;
  }
  case TAG_STATUS:
    if (!c->deferred && (!c->m || c->m->kind == IC_RPC_UNARY)) { /* one-batch calls */
      call_free(c);
      return;
    }
    call_unref(c);
    return;
  case TAG_RECV:
    handle_recv(c, ev.success);
    call_unref(c);
    return;
  case TAG_SEND:
    handle_send_done(c, ev.success);
    call_unref(c);
    return;
  case TAG_CLOSE:
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    pthread_mutex_unlock(&c->mu);
    call_unref(c);
    return;
  default:
    return;
  }
}

static void *cq_main(void *arg) {
  cq_thread_t *cqt = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cqt->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type == GRPC_OP_COMPLETE) handle_event(cqt, ev);
  }
  return NULL;
}

/* ------------------------------------------------------------------ lifecycle */

ic_rpc_server_t *ic_rpc_server_new(const char *addr, const ic_rpc_server_opts_t *opts, char *err,
                                   size_t errlen, bool *is_tls_error) {
  ic_rpc_server_opts_t o = opts ? *opts : (ic_rpc_server_opts_t){0};
  if (is_tls_error) *is_tls_error = false;
  if (err && errlen) err[0] = '\0';
  ic_rpc_server_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->deferred_cv, NULL);
  pthread_mutex_init(&s->tls_mu, NULL);
  pthread_rwlock_init(&s->cancel_lock, NULL);
  /* One thread per usable CPU: extra threads on a core only hand calls to each other. */
  s->nthreads = o.threads > 0 ? o.threads : ic_rpc_usable_cpus();
  if (s->nthreads <= 0) s->nthreads = 1;
  if (s->nthreads > 64) s->nthreads = 64;
  s->generic.kind = (ic_rpc_kind_t)-1;
  ic_rpc_global_ref();

  bool tls = o.tls_cert_file && *o.tls_cert_file && o.tls_key_file && *o.tls_key_file;
  grpc_server_credentials *creds = NULL;
  if (tls) {
    char *cert, *key, e2[256];
    if (load_pair(o.tls_cert_file, o.tls_key_file, &cert, &key, e2, sizeof e2) != 0) {
      snprintf(err, errlen, "server: load gRPC TLS keypair (cert=\"%s\" key=\"%s\"): %s",
               o.tls_cert_file, o.tls_key_file, e2);
      if (is_tls_error) *is_tls_error = true;
      ic_rpc_global_unref();
      free(s);
      return NULL;
    }
    free(cert);
    free(key);
    bool client_ca = o.tls_client_ca_file && *o.tls_client_ca_file;
    if (client_ca && check_ca_bundle(o.tls_client_ca_file, e2, sizeof e2) != 0) {
      snprintf(err, errlen, "server: load gRPC client CA bundle (file=\"%s\"): %s",
               o.tls_client_ca_file, e2);
      if (is_tls_error) *is_tls_error = true;
      ic_rpc_global_unref();
      free(s);
      return NULL;
    }
    s->cert_file = strdup(o.tls_cert_file);
    s->key_file = strdup(o.tls_key_file);
    s->client_ca_file = client_ca ? strdup(o.tls_client_ca_file) : NULL;
    /* With a client CA, a certificate is asked for and verified when presented, not required:
     * readers (gateways) need none; the write methods check that one was verified. */
    grpc_ssl_server_credentials_options *so =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            client_ca ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            tls_fetch, s);
    creds = grpc_ssl_server_credentials_create_with_options(so);
  } else {
    creds = grpc_insecure_server_credentials_create();
  }

  grpc_arg args[4];
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[0].value.integer = o.max_recv_bytes > 0 ? o.max_recv_bytes : DEFAULT_MAX_RECV;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
  args[1].value.integer = -1;
  /* gRPC sets SO_REUSEPORT by default, which would let a second server "bind" a busy port;
   * a busy port must be a listen failure (exit 1). */
  args[2].type = GRPC_ARG_INTEGER;
  args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
  args[2].value.integer = 0;
  size_t nargs = 3;
  if (o.max_concurrent_streams > 0) {
    args[nargs].type = GRPC_ARG_INTEGER;
    args[nargs].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
    args[nargs++].value.integer = o.max_concurrent_streams;
  }
  s->max_streams = o.max_streams > 0 ? (size_t)o.max_streams : 0;
  s->timing_trailer = o.timing_trailer;
  grpc_channel_args ca = {nargs, args};
  s->srv = grpc_server_create(&ca, NULL);
  char target[512];
  ic_rpc_listen_addr(addr, target, sizeof target);
  s->port = grpc_server_add_http2_port(s->srv, target, creds);
  grpc_server_credentials_release(creds);
  if (s->port <= 0) {
    snprintf(err, errlen, "listen for grpc: listen tcp %s: bind failed", addr ? addr : "");
    /* A server that never started can be destroyed after a (trivial) shutdown. */
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_register_completion_queue(s->srv, cq, NULL);
    grpc_server_shutdown_and_notify(s->srv, cq, NULL);
    grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_server_destroy(s->srv);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    free(s->cert_file);
    free(s->key_file);
    free(s->client_ca_file);
    ic_rpc_global_unref();
    free(s);
    return NULL;
  }
  s->cqts = calloc((size_t)s->nthreads, sizeof *s->cqts);
  for (int i = 0; i < s->nthreads; i++) {
    s->cqts[i].srv = s;
    s->cqts[i].cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->srv, s->cqts[i].cq, NULL);
  }
  s->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_server_register_completion_queue(s->srv, s->shutdown_cq, NULL);
  return s;
}

int ic_rpc_server_port(const ic_rpc_server_t *s) { return s->port; }

static int add_method(ic_rpc_server_t *s, const char *path, ic_rpc_kind_t kind, ic_rpc_unary_fn fn,
                      const ic_rpc_stream_handler_t *h, void *ud) {
  if (!s || !path || s->started || s->nmethods >= MAX_METHODS) return IC_EINVAL;
  method_t *m = &s->methods[s->nmethods];
  memset(m, 0, sizeof *m);
  m->path = strdup(path);
  m->kind = kind;
  m->unary = fn;
  if (h) m->sh = *h;
  m->ud = ud;
  bool payload = kind == IC_RPC_UNARY || kind == IC_RPC_SERVER_STREAM;
  m->handle = grpc_server_register_method(s->srv, path, NULL,
                                          payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
                                                  : GRPC_SRM_PAYLOAD_NONE,
                                          0);
  if (!m->handle) {
    free(m->path);
    return IC_EEXIST;
  }
  s->nmethods++;
  return 0;
}

int ic_rpc_server_add_unary(ic_rpc_server_t *s, const char *method, ic_rpc_unary_fn fn, void *ud) {
  if (!fn) return IC_EINVAL;
  return add_method(s, method, IC_RPC_UNARY, fn, NULL, ud);
}

int ic_rpc_server_add_stream(ic_rpc_server_t *s, const char *method, ic_rpc_kind_t kind,
                             const ic_rpc_stream_handler_t *h, void *ud) {
  if (!h || kind == IC_RPC_UNARY) return IC_EINVAL;
  return add_method(s, method, kind, NULL, h, ud);
}

int ic_rpc_server_add_health(ic_rpc_server_t *s, const char *const *services) {
  if (!s || s->health || s->started) return IC_EINVAL;
  s->health = ic_rpc_health_new(services);
  if (!s->health) return IC_ENOMEM;
  return ic_rpc_health_register(s, s->health);
}

void ic_rpc_server_set_serving(ic_rpc_server_t *s, bool serving) {
  if (s && s->health) ic_rpc_health_set(s->health, serving);
}

int ic_rpc_server_add_reflection(ic_rpc_server_t *s, const uint8_t *fdset, size_t len) {
  if (!s || s->reflection || s->started) return IC_EINVAL;
  s->reflection = ic_rpc_reflection_new(fdset, len);
  if (!s->reflection) return IC_EINVAL;
  return ic_rpc_reflection_register(s, s->reflection);
}

int ic_rpc_server_start(ic_rpc_server_t *s) {
  if (!s || s->started) return IC_ESTATE;
  grpc_server_start(s->srv);
  s->started = true;
  for (int i = 0; i < s->nthreads; i++) {
    cq_thread_t *cqt = &s->cqts[i];
    for (size_t k = 0; k < s->nmethods; k++)
      for (int j = 0; j < PREREQUEST_PER_METHOD; j++) request_call(cqt, &s->methods[k]);
    request_call(cqt, &s->generic);
    if (pthread_create(&cqt->th, NULL, cq_main, cqt) == 0) {
      cqt->started = true;
      char name[16]; /* named for perf sched / top -H; 15 bytes is the kernel's limit */
      snprintf(name, sizeof name, "grpc-cq-%d", i & 0xffff);
      pthread_setname_np(cqt->th, name);
    }
  }
  return 0;
}

int ic_rpc_server_shutdown(ic_rpc_server_t *s, int drain_ms) {
  if (!s || s->shut_down) return 0;
  s->shut_down = true;
  atomic_store(&s->shutting_down, true);
  int cancelled = 0;
  grpc_server_shutdown_and_notify(s->srv, s->shutdown_cq, s);
  if (s->started) {
    /* Server streams never end on their own: finish them now so clients see a clean OK. */
    pthread_mutex_lock(&s->mu);
    for (ic_rpc_call_t *c = s->live; c; c = c->live_next)
      if (c->m && c->m->kind == IC_RPC_SERVER_STREAM) ic_rpc_stream_finish(c, IC_RPC_OK, NULL);
    pthread_mutex_unlock(&s->mu);
  }
  gpr_timespec dl = drain_ms < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                                 : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                gpr_time_from_millis(drain_ms, GPR_TIMESPAN));
  grpc_event ev = grpc_completion_queue_pluck(s->shutdown_cq, s, dl, NULL);
  if (ev.type == GRPC_QUEUE_TIMEOUT) {
    pthread_mutex_lock(&s->mu);
    for (ic_rpc_call_t *c = s->live; c; c = c->live_next) cancelled++;
    pthread_mutex_unlock(&s->mu);
    if (cancelled == 0) cancelled = 1;
    pthread_rwlock_wrlock(&s->cancel_lock);
    s->cancelled_all = true;
    grpc_server_cancel_all_calls(s->srv);
    pthread_rwlock_unlock(&s->cancel_lock);
    grpc_completion_queue_pluck(s->shutdown_cq, s, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  }
  /* gRPC core does not wait for calls the application still holds: deferred calls are waited
   * for here, while the completion-queue threads still run to free them after their reply. */
  pthread_mutex_lock(&s->mu);
  while (s->ndeferred > 0)
    pthread_cond_wait(&s->deferred_cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < s->nthreads; i++) grpc_completion_queue_shutdown(s->cqts[i].cq);
  for (int i = 0; i < s->nthreads; i++)
    if (s->cqts[i].started) pthread_join(s->cqts[i].th, NULL);
  if (!s->started) {
    /* Threads never ran: drain the pre-requested calls' failures ourselves. */
    for (int i = 0; i < s->nthreads; i++) {
      grpc_event e;
      while ((e = grpc_completion_queue_next(s->cqts[i].cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL))
                 .type != GRPC_QUEUE_SHUTDOWN)
        if (e.type == GRPC_OP_COMPLETE) handle_event(&s->cqts[i], e);
    }
  }
  return cancelled;
}

void ic_rpc_server_free(ic_rpc_server_t *s) {
  if (!s) return;
  ic_rpc_server_shutdown(s, 0);
  grpc_server_destroy(s->srv);
  for (int i = 0; i < s->nthreads; i++) {
    grpc_completion_queue_destroy(s->cqts[i].cq);
    ic_buf_free(&s->cqts[i].scratch);
    ic_buf_free(&s->cqts[i].resp);
    for (ic_rpc_call_t *c = s->cqts[i].pool, *n; c; c = n) {
      n = c->live_next;
      grpc_metadata_array_destroy(&c->md);
      free(c);
    }
  }
  grpc_completion_queue_shutdown(s->shutdown_cq);
  grpc_completion_queue_destroy(s->shutdown_cq);
  for (size_t k = 0; k < s->nmethods; k++) free(s->methods[k].path);
  if (s->health) ic_rpc_health_free(s->health);
  if (s->reflection) ic_rpc_reflection_free(s->reflection);
  free(s->cqts);
  free(s->cert_file);
  free(s->key_file);
  free(s->client_ca_file);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->deferred_cv);
  pthread_mutex_destroy(&s->tls_mu);
  pthread_rwlock_destroy(&s->cancel_lock);
  ic_rpc_global_unref();
  free(s);
}
