/* lib/http: libmicrohttpd wrapper — listen socket, route table, request pipeline (auth, method,
 * body cap), replies with Go-compatible error bodies, graceful stop, TLS with cert reload.
 *
 * We create the listening socket ourselves and hand it to MHD (MHD_OPTION_LISTEN_SOCKET) so a
 * bind failure is reported before anything serves and port 0 works. Graceful stop quiesces the
 * daemon (no new connections), waits for our own in-flight request counter to reach zero (idle
 * keep-alive connections do not hold the drain open, as in Go's Shutdown), then stops it. */
#include "ic/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "conn_guard.h"
#include "ic/buf.h"
#include "ic/err.h"
#include "ic/log.h"

#define IC_HTTP_DEFAULT_MAX_BODY (1u << 20)

typedef struct route {
  char *path;
  size_t plen;
  bool prefix; /* path ended with '*' */
  char *methods;
  ic_http_handler_fn handler;
  void *ud;
  ic_http_auth_fn auth;
  void *auth_ud;
  size_t max_body;
  bool gzip;
} route_t;

/* One loaded certificate/key pair. Pairs handed to GnuTLS are kept until the server is freed:
 * a session may still reference an older pair after a rotation. */
typedef struct tls_pair {
  gnutls_pcert_st *pcerts;
  unsigned npcerts;
  gnutls_privkey_t key;
  struct tls_pair *older;
} tls_pair_t;

struct ic_http_server {
  char *bind;
  char *name;
  unsigned threads;
  unsigned idle_timeout_s;
  size_t max_body;
  char *cert_file, *key_file;
  int request_timeout_ms;
  unsigned max_conns, max_per_client;
  conn_guard_t *guard; /* from start to free */

  route_t *routes;
  size_t nroutes;

  int fd;
  int port;
  struct MHD_Daemon *daemon;
  atomic_int inflight;
  bool quiesced;
  bool stopped;

  pthread_mutex_t tls_mu;
  tls_pair_t *tls; /* current pair, NULL until loaded */
  struct timespec cert_mtime;
};

typedef struct hdr {
  char *name, *value;
  struct hdr *next;
} hdr_t;

struct ic_http_req {
  ic_http_server_t *srv;
  struct MHD_Connection *conn;
  const route_t *route;
  const char *method;
  const char *path;
  ic_buf_t body;
  bool too_large;
  bool replied;
  hdr_t *hdrs;
  void *user;
  struct MHD_Response *resp;
  unsigned status;
  const char *body_out; /* the reply body (owned by resp), for optional compression */
  size_t body_out_len;
};

/* ---------------------------------------------------------------------------------------- */
/* helpers */

static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }

bool ic_http_parse_bearer(const char *authz, const char **tok, size_t *len) {
  if (!authz) return false;
  const char *sp = strchr(authz, ' ');
  if (!sp) return false;
  if ((size_t)(sp - authz) != 6 || strncasecmp(authz, "Bearer", 6) != 0) return false;
  const char *b = sp + 1;
  const char *e = b + strlen(b);
  while (b < e && (*b == ' ' || *b == '\t' || *b == '\r' || *b == '\n' || *b == '\v' || *b == '\f'))
    b++;
  while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n' ||
                   e[-1] == '\v' || e[-1] == '\f'))
    e--;
  if (e == b) return false;
  if (tok) *tok = b;
  if (len) *len = (size_t)(e - b);
  return true;
}

/* errno text the way Go prints syscall errors ("address already in use"). Thread-safe. */
static const char *go_errstr(int e) {
  static __thread char buf[128];
  const char *m = strerror_r(e, buf, sizeof buf); /* GNU variant: may return a static string */
  if (m != buf) snprintf(buf, sizeof buf, "%s", m);
  if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
    buf[0] = (char)(buf[0] + 32);
  return buf;
}

int ic_http_split_hostport(const char *addr, char host[256], int *port) {
  if (!addr || !host || !port) return IC_EINVAL;
  const char *colon;
  host[0] = 0;
  if (addr[0] == '[') {
    const char *rb = strchr(addr, ']');
    if (!rb || rb[1] != ':') return IC_EINVAL;
    size_t hl = (size_t)(rb - addr - 1);
    if (hl >= 256) return IC_EINVAL;
    memcpy(host, addr + 1, hl);
    host[hl] = 0;
    colon = rb + 1;
  } else {
    colon = strrchr(addr, ':');
    if (!colon) return IC_EINVAL;
    size_t hl = (size_t)(colon - addr);
    if (hl >= 256 || memchr(addr, ':', hl)) return IC_EINVAL;
    memcpy(host, addr, hl);
    host[hl] = 0;
  }
  const char *p = colon + 1;
  if (!*p) return IC_EINVAL;
  char *end;
  long v = strtol(p, &end, 10);
  if (*end || v < 0 || v > 65535) return IC_EINVAL;
  *port = (int)v;
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* TLS: certificate served through a GnuTLS retrieve callback so rotation needs no restart. */

static int load_pair(const char *cert_file, const char *key_file, tls_pair_t **out, char *err,
                     size_t errlen) {
  gnutls_datum_t cd = {0}, kd = {0};
  int rc = gnutls_load_file(cert_file, &cd);
  if (rc < 0) {
    snprintf(err, errlen, "open %s: %s", cert_file, gnutls_strerror(rc));
    return IC_EIO;
  }
  rc = gnutls_load_file(key_file, &kd);
  if (rc < 0) {
    snprintf(err, errlen, "open %s: %s", key_file, gnutls_strerror(rc));
    gnutls_free(cd.data);
    return IC_EIO;
  }
  tls_pair_t *p = calloc(1, sizeof *p);
  unsigned n = 16;
  gnutls_pcert_st *pc = calloc(n, sizeof *pc);
  if (!p || !pc) {
    free(p);
    free(pc);
    gnutls_free(cd.data);
    gnutls_free(kd.data);
    return IC_ENOMEM;
  }
  rc = gnutls_pcert_list_import_x509_raw(pc, &n, &cd, GNUTLS_X509_FMT_PEM, 0);
  if (rc < 0 || n == 0) {
    snprintf(err, errlen, "parse certificate %s: %s", cert_file,
             rc < 0 ? gnutls_strerror(rc) : "no certificate");
    goto fail;
  }
  p->pcerts = pc;
  p->npcerts = n;
  rc = gnutls_privkey_init(&p->key);
  if (rc >= 0) rc = gnutls_privkey_import_x509_raw(p->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
  if (rc < 0) {
    snprintf(err, errlen, "parse key %s: %s", key_file, gnutls_strerror(rc));
    for (unsigned i = 0; i < n; i++)
      gnutls_pcert_deinit(&pc[i]);
    if (p->key) gnutls_privkey_deinit(p->key);
    goto fail;
  }
  gnutls_free(cd.data);
  gnutls_free(kd.data);
  *out = p;
  return 0;
fail:
  free(pc);
  free(p);
  gnutls_free(cd.data);
  gnutls_free(kd.data);
  return IC_EINVAL;
}

static void free_pairs(tls_pair_t *p) {
  while (p) {
    tls_pair_t *o = p->older;
    for (unsigned i = 0; i < p->npcerts; i++)
      gnutls_pcert_deinit(&p->pcerts[i]);
    free(p->pcerts);
    if (p->key) gnutls_privkey_deinit(p->key);
    free(p);
    p = o;
  }
}

static bool ts_newer(struct timespec a, struct timespec b) {
  return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

/* Reloads the pair when the cert file's mtime moved forward. Caller holds tls_mu. */
static void maybe_reload(ic_http_server_t *s) {
  struct stat st;
  if (stat(s->cert_file, &st) != 0) return;
  if (s->tls && !ts_newer(st.st_mtim, s->cert_mtime)) return;
  tls_pair_t *p = NULL;
  char err[512];
  int rc = load_pair(s->cert_file, s->key_file, &p, err, sizeof err);
  if (rc != 0) {
    ic_log_error("tls_reload", IC_LS("listener", s->name), IC_LS("err", err),
                 IC_LS("cert_file", s->cert_file));
    s->cert_mtime = st.st_mtim; /* do not retry on every handshake until the file changes */
    return;
  }
  p->older = s->tls;
  s->tls = p;
  s->cert_mtime = st.st_mtim;
}

/* MHD's certificate callback carries no user pointer, so it finds its server through a small
 * registry of TLS listeners, matched by the local port of the handshake's socket (the GnuTLS
 * session pointer is the MHD connection). */
static pthread_mutex_t g_tls_mu = PTHREAD_MUTEX_INITIALIZER;
static ic_http_server_t *g_tls_servers[8];

static int local_port_of_session(gnutls_session_t sess) {
  struct MHD_Connection *c = gnutls_session_get_ptr(sess);
  if (!c) return -1;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!ci) return -1;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(ci->connect_fd, (struct sockaddr *)&ss, &sl) != 0) return -1;
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return -1;
}

static int cert_cb_global(gnutls_session_t sess, const gnutls_datum_t *req_ca_dn, int nreqs,
                          const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                          gnutls_pcert_st **pcert, unsigned int *pcert_length,
                          gnutls_privkey_t *pkey) {
  (void)req_ca_dn;
  (void)nreqs;
  (void)pk_algos;
  (void)pk_algos_length;
  ic_http_server_t *s = NULL;
  int lport = local_port_of_session(sess);
  pthread_mutex_lock(&g_tls_mu);
  for (size_t i = 0; i < sizeof g_tls_servers / sizeof *g_tls_servers; i++)
    if (g_tls_servers[i] && g_tls_servers[i]->port == lport) s = g_tls_servers[i];
  pthread_mutex_unlock(&g_tls_mu);
  if (!s) return -1;
  pthread_mutex_lock(&s->tls_mu);
  maybe_reload(s);
  tls_pair_t *p = s->tls;
  pthread_mutex_unlock(&s->tls_mu);
  if (!p) return -1;
  *pcert = p->pcerts;
  *pcert_length = p->npcerts;
  *pkey = p->key;
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* server lifecycle */

ic_http_server_t *ic_http_new(const ic_http_config_t *cfg) {
  if (!cfg || !cfg->bind) return NULL;
  bool hc = cfg->tls_cert_file && *cfg->tls_cert_file;
  bool hk = cfg->tls_key_file && *cfg->tls_key_file;
  if (hc != hk) return NULL;
  ic_http_server_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->bind = dupstr(cfg->bind);
  s->name = dupstr(cfg->name ? cfg->name : "http");
  s->threads = cfg->threads;
  s->idle_timeout_s = cfg->idle_timeout_s;
  s->max_body = cfg->max_body ? cfg->max_body : IC_HTTP_DEFAULT_MAX_BODY;
  s->request_timeout_ms =
      cfg->request_timeout_ms ? cfg->request_timeout_ms : IC_HTTP_DEFAULT_REQUEST_TIMEOUT_MS;
  s->max_conns = cfg->max_conns ? cfg->max_conns : IC_HTTP_DEFAULT_MAX_CONNS;
  s->max_per_client =
      cfg->max_conns_per_client ? cfg->max_conns_per_client : IC_HTTP_DEFAULT_MAX_CONNS_PER_CLIENT;
  if (hc) {
    s->cert_file = dupstr(cfg->tls_cert_file);
    s->key_file = dupstr(cfg->tls_key_file);
  }
  s->fd = -1;
  s->port = -1;
  pthread_mutex_init(&s->tls_mu, NULL);
  if (!s->bind || !s->name || (hc && (!s->cert_file || !s->key_file))) {
    ic_http_free(s);
    return NULL;
  }
  return s;
}

int ic_http_add_route(ic_http_server_t *s, const ic_http_route_t *r) {
  if (!s || !r || !r->path || r->path[0] != '/' || !r->handler || s->fd >= 0) return IC_EINVAL;
  route_t *nr = realloc(s->routes, (s->nroutes + 1) * sizeof *nr);
  if (!nr) return IC_ENOMEM;
  s->routes = nr;
  route_t *d = &s->routes[s->nroutes];
  memset(d, 0, sizeof *d);
  d->path = strdup(r->path);
  d->methods = dupstr(r->methods);
  if (!d->path || (r->methods && !d->methods)) {
    free(d->path);
    free(d->methods);
    return IC_ENOMEM;
  }
  d->plen = strlen(d->path);
  if (d->plen && d->path[d->plen - 1] == '*') {
    d->prefix = true;
    d->path[--d->plen] = 0;
  }
  d->handler = r->handler;
  d->ud = r->ud;
  d->auth = r->auth;
  d->auth_ud = r->auth_ud;
  d->max_body = r->max_body ? r->max_body : s->max_body;
  d->gzip = r->gzip;
  s->nroutes++;
  return 0;
}

int ic_http_listen(ic_http_server_t *s, char *err, size_t errlen) {
  char tmp[8];
  if (!err) {
    err = tmp;
    errlen = sizeof tmp;
  }
  if (!s) return IC_EINVAL;
  if (s->fd >= 0) return 0;
  char host[256];
  int port;
  if (ic_http_split_hostport(s->bind, host, &port) != 0) {
    snprintf(err, errlen, "listen tcp %s: address %s: missing port in address", s->bind, s->bind);
    return IC_EINVAL;
  }
  int fd = -1;
  if (!host[0]) {
    /* All interfaces, dual stack when IPv6 exists (Go's ":port"). */
    fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      int off = 0, on = 1;
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
      struct sockaddr_in6 a6 = {
          .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any};
      if (bind(fd, (struct sockaddr *)&a6, sizeof a6) != 0) {
        int e = errno;
        close(fd);
        fd = -1;
        if (e != EAFNOSUPPORT && e != EADDRNOTAVAIL) {
          snprintf(err, errlen, "listen tcp %s: bind: %s", s->bind, go_errstr(e));
          return IC_EIO;
        }
      }
    }
    if (fd < 0) {
      fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        snprintf(err, errlen, "listen tcp %s: socket: %s", s->bind, go_errstr(errno));
        return IC_EIO;
      }
      int on = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
      struct sockaddr_in a4 = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_ANY)};
      if (bind(fd, (struct sockaddr *)&a4, sizeof a4) != 0) {
        snprintf(err, errlen, "listen tcp %s: bind: %s", s->bind, go_errstr(errno));
        close(fd);
        return IC_EIO;
      }
    }
  } else {
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int gr = getaddrinfo(host, ps, &hints, &res);
    if (gr != 0 || !res) {
      snprintf(err, errlen, "listen tcp %s: lookup %s: %s", s->bind, host, gai_strerror(gr));
      return IC_EINVAL;
    }
    int last = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
      fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) {
        last = errno;
        continue;
      }
      int on = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
      if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
      last = errno;
      close(fd);
      fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
      snprintf(err, errlen, "listen tcp %s: bind: %s", s->bind, go_errstr(last));
      return IC_EIO;
    }
  }
  if (listen(fd, SOMAXCONN) != 0) { /* floods queue here, not in SYN retries */
    snprintf(err, errlen, "listen tcp %s: %s", s->bind, go_errstr(errno));
    close(fd);
    return IC_EIO;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET6)
      s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
      s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  s->fd = fd;
  return 0;
}

int ic_http_port(const ic_http_server_t *s) { return s ? s->port : -1; }

/* ---------------------------------------------------------------------------------------- */
/* request pipeline */

static const route_t *find_route(const ic_http_server_t *s, const char *path) {
  for (size_t i = 0; i < s->nroutes; i++) {
    const route_t *r = &s->routes[i];
    if (r->prefix ? strncmp(path, r->path, r->plen) == 0 : strcmp(path, r->path) == 0) return r;
  }
  return NULL;
}

/* "POST, PUT" contains method? Exact token comparison. */
static bool method_allowed(const char *methods, const char *m) {
  if (!methods) return true;
  size_t ml = strlen(m);
  const char *p = methods;
  while (*p) {
    while (*p == ' ' || *p == ',')
      p++;
    const char *e = p;
    while (*e && *e != ',' && *e != ' ')
      e++;
    if ((size_t)(e - p) == ml && strncmp(p, m, ml) == 0) return true;
    p = e;
  }
  return false;
}

static void free_req(ic_http_req_t *r) {
  if (!r) return;
  ic_buf_free(&r->body);
  for (hdr_t *h = r->hdrs; h;) {
    hdr_t *n = h->next;
    free(h->name);
    free(h->value);
    free(h);
    h = n;
  }
  if (r->resp) MHD_destroy_response(r->resp);
  free(r);
}

static void *guard_ctx(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  ic_http_server_t *s = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *pa =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (fd)
      conn_guard_on_open(s->guard, fd->connect_fd, pa ? pa->client_addr : NULL, socket_context);
  } else {
    conn_guard_on_close(s->guard, socket_context);
  }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)toe;
  ic_http_server_t *s = cls;
  ic_http_req_t *r = *con_cls;
  conn_guard_on_done(s->guard, guard_ctx(c));
  if (r) {
    free_req(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
  }
}

/* Does the client accept gzip? A "gzip" token in Accept-Encoding without q=0. */
static bool accepts_gzip(const char *ae) {
  for (const char *p = ae; p && (p = strcasestr(p, "gzip")) != NULL; p += 4) {
    bool start = p == ae || p[-1] == ' ' || p[-1] == ',' || p[-1] == '\t';
    const char *e = p + 4;
    while (*e == ' ' || *e == '\t')
      e++;
    if (!start || (*e && *e != ',' && *e != ';')) continue;
    if (*e == ';') {
      const char *q = strcasestr(e, "q=");
      const char *comma = strchr(e, ',');
      if (q && (!comma || q < comma) && strtod(q + 2, NULL) <= 0.0) return false;
    }
    return true;
  }
  return false;
}

/* Compresses body into a malloc'd gzip member; NULL on failure (the body is then sent as is). */
static char *gzip_body(const char *in, size_t n, size_t *outlen) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return NULL;
  uLong cap = deflateBound(&z, (uLong)n);
  char *out = malloc(cap);
  if (!out) {
    deflateEnd(&z);
    return NULL;
  }
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  z.next_out = (Bytef *)out;
  z.avail_out = (uInt)cap;
  int rc = deflate(&z, Z_FINISH);
  *outlen = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    free(out);
    return NULL;
  }
  return out;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  (void)version;
  ic_http_server_t *s = cls;
  ic_http_req_t *r = *con_cls;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->srv = s;
    r->conn = conn;
    r->method = method;
    r->path = url;
    r->route = find_route(s, url);
    *con_cls = r;
    atomic_fetch_add(&s->inflight, 1);
    return MHD_YES;
  }
  if (*upload_data_size) {
    size_t cap = r->route ? r->route->max_body : 0;
    size_t n = *upload_data_size;
    if (r->body.len < cap) {
      size_t take = n < cap - r->body.len ? n : cap - r->body.len;
      if (ic_buf_append(&r->body, upload_data, take) != 0) return MHD_NO;
      if (take < n) r->too_large = true;
    } else if (n) {
      r->too_large = true;
    }
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (r->replied) return MHD_YES;
  if (ic_buf_reserve(&r->body, 0) != 0) return MHD_NO; /* body always NUL-terminated */
  conn_guard_on_handler(s->guard, guard_ctx(conn));    /* complete: no longer sheddable */
  if (!r->route) {
    ic_http_reply(r, 404, "text/plain; charset=utf-8", "404 page not found\n", 19);
    ic_http_reply_header(r, "X-Content-Type-Options", "nosniff");
  } else {
    const route_t *rt = r->route;
    bool go = true;
    if (rt->auth) go = rt->auth(r, rt->auth_ud);
    if (go && !method_allowed(rt->methods, method)) {
      ic_http_reply_header(r, "Allow", rt->methods);
      ic_http_reply_error(r, 405, "method not allowed\n");
      go = false;
    }
    if (go) rt->handler(r, rt->ud);
    if (!r->replied) ic_http_reply_error(r, 500, "internal server error");
  }
  if (r->route && r->route->gzip && r->status >= 200 && r->status < 300 && r->body_out &&
      r->body_out_len > 0 && accepts_gzip(ic_http_req_header(r, "Accept-Encoding"))) {
    size_t zl = 0;
    char *z = gzip_body(r->body_out, r->body_out_len, &zl);
    struct MHD_Response *zr =
        z ? MHD_create_response_from_buffer(zl, z, MHD_RESPMEM_MUST_FREE) : NULL;
    if (zr) {
      /* Carry the headers of the plain response over to the compressed one. */
      const char *ct = MHD_get_response_header(r->resp, "Content-Type");
      if (ct) MHD_add_response_header(zr, "Content-Type", ct);
      MHD_add_response_header(zr, "Content-Encoding", "gzip");
      MHD_destroy_response(r->resp);
      r->resp = zr;
    } else {
      free(z);
    }
  }
  if (!r->resp) return MHD_NO; /* could not even build a 500: drop the connection */
  /* Headers added after the reply call (allowed above) are applied here. */
  for (hdr_t *h = r->hdrs; h; h = h->next)
    MHD_add_response_header(r->resp, h->name, h->value);
  enum MHD_Result q = MHD_queue_response(conn, r->status, r->resp);
  return q;
}

/* ---------------------------------------------------------------------------------------- */

int ic_http_start(ic_http_server_t *s, char *err, size_t errlen) {
  char tmp[8];
  if (!err) {
    err = tmp;
    errlen = sizeof tmp;
  }
  if (!s) return IC_EINVAL;
  if (s->daemon) return 0;
  int rc = ic_http_listen(s, err, errlen);
  if (rc != 0) return rc;
  if (!s->guard) {
    s->guard = conn_guard_new(s->name, s->request_timeout_ms, s->idle_timeout_s, s->max_conns,
                              s->max_per_client);
    if (!s->guard || conn_guard_start(s->guard) != 0) {
      snprintf(err, errlen, "start %s listener: out of memory", s->name);
      return IC_ENOMEM;
    }
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
  if (s->threads == 0)
    flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
  else
    flags |= MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME; /* streamed replies suspend */
  struct MHD_OptionItem opts[12];
  size_t n = 0;
  opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, s->fd, NULL};
  opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s};
  opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s};
  /* The guard keeps open connections at max_conns by shedding; libmicrohttpd's own limit (which
     refuses, probes included) sits well above it so connections shed but not yet cleaned up
     never make it refuse. */
  opts[n++] =
      (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, (intptr_t)(s->max_conns * 2 + 64), NULL};
  opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, s->idle_timeout_s, NULL};
  if (s->threads > 1)
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, s->threads, NULL};
  if (s->cert_file) {
    pthread_mutex_lock(&s->tls_mu);
    if (!s->tls) {
      struct stat st;
      tls_pair_t *p = NULL;
      char why[400] = "";
      bool statok = stat(s->cert_file, &st) == 0;
      int lrc = load_pair(s->cert_file, s->key_file, &p, why, sizeof why);
      if (lrc == 0) {
        s->tls = p;
        if (statok) s->cert_mtime = st.st_mtim;
      } else {
        pthread_mutex_unlock(&s->tls_mu);
        snprintf(err, errlen, "load TLS keypair (cert=\"%s\" key=\"%s\"): %s", s->cert_file,
                 s->key_file, why);
        return IC_EIO;
      }
    }
    pthread_mutex_unlock(&s->tls_mu);
    pthread_mutex_lock(&g_tls_mu);
    size_t i;
    for (i = 0; i < sizeof g_tls_servers / sizeof *g_tls_servers; i++)
      if (!g_tls_servers[i]) {
        g_tls_servers[i] = s;
        break;
      }
    pthread_mutex_unlock(&g_tls_mu);
    if (i == sizeof g_tls_servers / sizeof *g_tls_servers) {
      snprintf(err, errlen, "too many TLS listeners");
      return IC_ERANGE;
    }
    flags |= MHD_USE_TLS;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)cert_cb_global};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                        (void *)"NORMAL:-VERS-TLS1.0:-VERS-TLS1.1"};
  }
  opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
  s->daemon =
      MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
  if (!s->daemon) {
    snprintf(err, errlen, "start %s listener on %s failed", s->name, s->bind);
    return IC_EIO;
  }
  return 0;
}

void ic_http_quiesce(ic_http_server_t *s) {
  if (!s || !s->daemon || s->quiesced) return;
  s->quiesced = true;
  MHD_socket lfd = MHD_quiesce_daemon(s->daemon);
  (void)lfd; /* the socket is ours (s->fd) */
  /* MHD says not to close a quiesced socket before MHD_stop_daemon (a thread may still touch
   * it), but on Linux shutdown() takes a socket out of LISTEN, so new connects are refused now
   * rather than queueing in the backlog until the drain ends. */
  if (s->fd >= 0) shutdown(s->fd, SHUT_RDWR);
}

void ic_http_stop(ic_http_server_t *s, int drain_ms) {
  if (!s || s->stopped) return;
  s->stopped = true;
  if (s->daemon) {
    ic_http_quiesce(s);
    int64_t waited = 0;
    while (atomic_load(&s->inflight) > 0 && (drain_ms < 0 || waited < drain_ms)) {
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, NULL);
      waited += 5;
    }
    conn_guard_stop(s->guard);
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
  }
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
  pthread_mutex_lock(&g_tls_mu);
  for (size_t i = 0; i < sizeof g_tls_servers / sizeof *g_tls_servers; i++)
    if (g_tls_servers[i] == s) g_tls_servers[i] = NULL;
  pthread_mutex_unlock(&g_tls_mu);
}

void ic_http_free(ic_http_server_t *s) {
  if (!s) return;
  ic_http_stop(s, 0);
  for (size_t i = 0; i < s->nroutes; i++) {
    free(s->routes[i].path);
    free(s->routes[i].methods);
  }
  free(s->routes);
  free(s->bind);
  free(s->name);
  free(s->cert_file);
  free(s->key_file);
  free_pairs(s->tls);
  conn_guard_free(s->guard);
  pthread_mutex_destroy(&s->tls_mu);
  free(s);
}

ic_http_conn_stats_t ic_http_conn_stats(const ic_http_server_t *s) {
  ic_http_conn_stats_t o = {0};
  if (!s || !s->guard) return o;
  conn_guard_stats_t g = conn_guard_stats(s->guard);
  return (ic_http_conn_stats_t){g.timed_out, g.idle_closed, g.per_client, g.full, g.live};
}

/* ---------------------------------------------------------------------------------------- */
/* request accessors */

const char *ic_http_req_method(const ic_http_req_t *r) { return r->method; }
const char *ic_http_req_path(const ic_http_req_t *r) { return r->path; }
const char *ic_http_req_header(const ic_http_req_t *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}
const char *ic_http_req_query(const ic_http_req_t *r, const char *key) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}
const char *ic_http_req_body(const ic_http_req_t *r, size_t *len) {
  if (len) *len = r->body.len;
  return r->body.data ? r->body.data : "";
}
bool ic_http_req_body_too_large(const ic_http_req_t *r) { return r->too_large; }
void ic_http_req_set_user(ic_http_req_t *r, void *p) { r->user = p; }
void *ic_http_req_user(const ic_http_req_t *r) { return r->user; }
bool ic_http_req_replied(const ic_http_req_t *r) { return r->replied; }

/* ---------------------------------------------------------------------------------------- */
/* replies */

int ic_http_reply_header(ic_http_req_t *r, const char *name, const char *value) {
  if (!r || !name || !value) return IC_EINVAL;
  hdr_t *h = calloc(1, sizeof *h);
  if (!h) return IC_ENOMEM;
  h->name = strdup(name);
  h->value = strdup(value);
  if (!h->name || !h->value) {
    free(h->name);
    free(h->value);
    free(h);
    return IC_ENOMEM;
  }
  /* Append to keep the caller's order. */
  hdr_t **pp = &r->hdrs;
  while (*pp)
    pp = &(*pp)->next;
  *pp = h;
  return 0;
}

static int set_resp(ic_http_req_t *r, unsigned status, const char *ctype,
                    struct MHD_Response *resp) {
  if (!resp) return IC_ENOMEM;
  if (ctype) MHD_add_response_header(resp, "Content-Type", ctype);
  r->resp = resp;
  r->status = status;
  r->replied = true;
  return 0;
}

int ic_http_reply(ic_http_req_t *r, unsigned status, const char *content_type, const void *body,
                  size_t len) {
  if (!r || r->replied) return IC_ESTATE;
  if (r->route && r->route->gzip && len) {
    /* Keep our own copy so the body can be compressed after the handler returns. */
    char *c = malloc(len);
    if (!c) return IC_ENOMEM;
    memcpy(c, body, len);
    return ic_http_reply_take(r, status, content_type, c, len);
  }
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, (void *)(len ? body : ""), MHD_RESPMEM_MUST_COPY);
  return set_resp(r, status, content_type, resp);
}

int ic_http_reply_take(ic_http_req_t *r, unsigned status, const char *content_type, char *body,
                       size_t len) {
  if (!r || r->replied) {
    free(body);
    return IC_ESTATE;
  }
  struct MHD_Response *resp =
      body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
           : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (!resp) free(body);
  int rc = set_resp(r, status, content_type, resp);
  if (rc == 0 && body) {
    r->body_out = body;
    r->body_out_len = len;
  }
  return rc;
}

int ic_http_reply_error(ic_http_req_t *r, unsigned status, const char *msg) {
  if (!r || r->replied) return IC_ESTATE;
  size_t n = strlen(msg);
  char *b = malloc(n + 2);
  if (!b) return IC_ENOMEM;
  memcpy(b, msg, n);
  b[n] = '\n';
  b[n + 1] = 0;
  int rc = ic_http_reply_take(r, status, "text/plain; charset=utf-8", b, n + 1);
  if (rc == 0) ic_http_reply_header(r, "X-Content-Type-Options", "nosniff");
  return rc;
}

int ic_http_reply_json(ic_http_req_t *r, unsigned status, const json_t *j) {
  if (!r || r->replied || !j) return IC_EINVAL;
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  if (!s) return IC_ENOMEM;
  size_t n = strlen(s);
  char *b = realloc(s, n + 2);
  if (!b) {
    free(s);
    return IC_ENOMEM;
  }
  b[n] = '\n';
  b[n + 1] = 0;
  return ic_http_reply_take(r, status, "application/json", b, n + 1);
}

/* ---------------------------------------------------------------------------------------- */
/* streamed replies: a byte queue between a producer thread and MHD's content reader. The
 * reader suspends the connection when the queue is empty; a write resumes it. Both happen under
 * the stream's mutex, so a resume always follows its suspend. Two references: the producer's
 * (dropped by close) and the response's (dropped by MHD's free callback when it is done). */

struct ic_http_stream {
  pthread_mutex_t mu;
  struct MHD_Connection *conn;
  char *buf;
  size_t len, cap, off;
  bool closed, suspended, gone;
  int refs;
};

static void stream_unref(ic_http_stream_t *st) {
  pthread_mutex_lock(&st->mu);
  bool last = --st->refs == 0;
  pthread_mutex_unlock(&st->mu);
  if (!last) return;
  pthread_mutex_destroy(&st->mu);
  free(st->buf);
  free(st);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  ic_http_stream_t *st = cls;
  pthread_mutex_lock(&st->mu);
  if (st->len > st->off) {
    size_t n = st->len - st->off < max ? st->len - st->off : max;
    memcpy(out, st->buf + st->off, n);
    st->off += n;
    if (st->off == st->len) st->off = st->len = 0;
    pthread_mutex_unlock(&st->mu);
    return (ssize_t)n;
  }
  if (st->closed) {
    pthread_mutex_unlock(&st->mu);
    return MHD_CONTENT_READER_END_OF_STREAM;
  }
  MHD_suspend_connection(st->conn);
  st->suspended = true;
  pthread_mutex_unlock(&st->mu);
  return 0;
}

static void stream_response_gone(void *cls) {
  ic_http_stream_t *st = cls;
  pthread_mutex_lock(&st->mu);
  st->gone = true;
  st->conn = NULL;
  pthread_mutex_unlock(&st->mu);
  stream_unref(st);
}

int ic_http_reply_stream(ic_http_req_t *r, unsigned status, const char *content_type,
                         ic_http_stream_t **out) {
  if (!r || r->replied || !out) return IC_ESTATE;
  if (r->srv->threads == 0) return IC_ESTATE;
  ic_http_stream_t *st = calloc(1, sizeof *st);
  if (!st) return IC_ENOMEM;
  pthread_mutex_init(&st->mu, NULL);
  st->conn = r->conn;
  st->refs = 2;
  struct MHD_Response *resp = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, st, stream_response_gone);
  if (!resp) {
    pthread_mutex_destroy(&st->mu);
    free(st);
    return IC_ENOMEM;
  }
  set_resp(r, status, content_type, resp);
  *out = st;
  return 0;
}

int ic_http_stream_write(ic_http_stream_t *st, const void *data, size_t len) {
  pthread_mutex_lock(&st->mu);
  if (st->gone || st->closed) {
    pthread_mutex_unlock(&st->mu);
    return IC_EIO;
  }
  if (st->len + len > st->cap) {
    size_t nc = st->cap ? st->cap : 1024;
    while (nc < st->len + len)
      nc *= 2;
    char *nb = realloc(st->buf, nc);
    if (!nb) {
      pthread_mutex_unlock(&st->mu);
      return IC_ENOMEM;
    }
    st->buf = nb;
    st->cap = nc;
  }
  memcpy(st->buf + st->len, data, len);
  st->len += len;
  if (st->suspended) {
    st->suspended = false;
    MHD_resume_connection(st->conn);
  }
  pthread_mutex_unlock(&st->mu);
  return 0;
}

void ic_http_stream_close(ic_http_stream_t *st) {
  if (!st) return;
  pthread_mutex_lock(&st->mu);
  st->closed = true;
  if (st->suspended && !st->gone) {
    st->suspended = false;
    MHD_resume_connection(st->conn);
  }
  pthread_mutex_unlock(&st->mu);
  stream_unref(st);
}
