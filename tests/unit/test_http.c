/* Unit tests for lib/http: a real listener on 127.0.0.1 driven by libcurl — routing, 404/405
 * bodies, auth-before-method order, body cap, Go error bodies, bearer parsing, TLS + rotation. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/err.h"
#include "ic/http.h"

typedef struct {
  long status;
  ic_buf_t body;
  ic_buf_t hdrs;
} resp_t;

static size_t wcb(char *p, size_t sz, size_t n, void *ud) {
  ic_buf_append(ud, p, sz * n);
  return sz * n;
}

static int do_req(const char *url, const char *method, const char *body, const char *authz,
                  resp_t *out, const char *cafile) {
  CURL *c = curl_easy_init();
  memset(out, 0, sizeof *out);
  struct curl_slist *h = NULL;
  char ah[512];
  if (authz) {
    snprintf(ah, sizeof ah, "Authorization: %s", authz);
    h = curl_slist_append(h, ah);
  }
  h = curl_slist_append(h, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  if (!strcmp(method, "HEAD")) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wcb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, wcb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->hdrs);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
  if (cafile) {
    curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(c, CURLOPT_CERTINFO, 1L);
  }
  CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return rc == CURLE_OK ? 0 : -1;
}

static void resp_free(resp_t *r) {
  ic_buf_free(&r->body);
  ic_buf_free(&r->hdrs);
}

static void h_echo(ic_http_req_t *r, void *ud) {
  (void)ud;
  size_t n;
  const char *b = ic_http_req_body(r, &n);
  char hdr[64];
  snprintf(hdr, sizeof hdr, "%d", ic_http_req_body_too_large(r) ? 1 : 0);
  ic_http_reply_header(r, "X-Too-Large", hdr);
  ic_http_reply(r, 200, "text/plain", b, n);
}

static void h_json(ic_http_req_t *r, void *ud) {
  (void)ud;
  json_t *j = json_pack("{s:s,s:i}", "a", "b", "n", 3);
  ic_http_reply_json(r, 200, j);
  json_decref(j);
}

static void h_silent(ic_http_req_t *r, void *ud) {
  (void)r;
  (void)ud;
}

static int auth_calls;
static bool auth_hook(ic_http_req_t *r, void *ud) {
  (void)ud;
  __atomic_add_fetch(&auth_calls, 1, __ATOMIC_SEQ_CST);
  const char *tok;
  size_t n;
  if (!ic_http_parse_bearer(ic_http_req_header(r, "Authorization"), &tok, &n) || n != 4 ||
      memcmp(tok, "good", 4) != 0) {
    ic_http_reply_error(r, 401, "unauthorized\n");
    return false;
  }
  return true;
}

static ic_http_server_t *start_server(unsigned threads, const char *cert, const char *key) {
  ic_http_config_t cfg = {.bind = "127.0.0.1:0",
                          .threads = threads,
                          .name = "test",
                          .tls_cert_file = cert,
                          .tls_key_file = key};
  ic_http_server_t *s = ic_http_new(&cfg);
  cr_assert_not_null(s);
  ic_http_route_t r1 = {.path = "/echo", .methods = "POST, PUT", .handler = h_echo, .max_body = 16};
  ic_http_route_t r2 = {.path = "/json", .handler = h_json};
  ic_http_route_t r3 = {.path = "/secure", .methods = "GET", .handler = h_json, .auth = auth_hook};
  ic_http_route_t r4 = {.path = "/silent", .handler = h_silent};
  ic_http_route_t r5 = {.path = "/pre/*", .handler = h_json};
  ic_http_route_t r6 = {.path = "/gz", .handler = h_echo, .gzip = true};
  cr_assert_eq(ic_http_add_route(s, &r1), 0);
  cr_assert_eq(ic_http_add_route(s, &r2), 0);
  cr_assert_eq(ic_http_add_route(s, &r3), 0);
  cr_assert_eq(ic_http_add_route(s, &r4), 0);
  cr_assert_eq(ic_http_add_route(s, &r5), 0);
  cr_assert_eq(ic_http_add_route(s, &r6), 0);
  char err[256];
  cr_assert_eq(ic_http_start(s, err, sizeof err), 0, "%s", err);
  cr_assert_gt(ic_http_port(s), 0);
  return s;
}

Test(http, routes_404_405_and_bodies) {
  ic_http_server_t *s = start_server(2, NULL, NULL);
  char url[128];
  resp_t r;
  snprintf(url, sizeof url, "http://127.0.0.1:%d/nope", ic_http_port(s));
  cr_assert_eq(do_req(url, "GET", NULL, NULL, &r, NULL), 0);
  cr_assert_eq(r.status, 404);
  cr_assert_str_eq(r.body.data, "404 page not found\n");
  resp_free(&r);

  snprintf(url, sizeof url, "http://127.0.0.1:%d/json/", ic_http_port(s));
  do_req(url, "GET", NULL, NULL, &r, NULL);
  cr_assert_eq(r.status, 404, "exact-path routing");
  resp_free(&r);

  snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", ic_http_port(s));
  do_req(url, "GET", NULL, NULL, &r, NULL);
  cr_assert_eq(r.status, 405);
  cr_assert_str_eq(r.body.data, "method not allowed\n\n");
  cr_assert_not_null(strstr(r.hdrs.data, "Allow: POST, PUT\r\n"));
  cr_assert_not_null(strstr(r.hdrs.data, "X-Content-Type-Options: nosniff"));
  cr_assert_not_null(strstr(r.hdrs.data, "Content-Type: text/plain; charset=utf-8"));
  resp_free(&r);

  do_req(url, "PUT", "hello", NULL, &r, NULL);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(r.body.data, "hello");
  cr_assert_not_null(strstr(r.hdrs.data, "X-Too-Large: 0"));
  resp_free(&r);

  do_req(url, "POST", "0123456789abcdefXYZ", NULL, &r, NULL);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(r.body.data, "0123456789abcdef", "body capped at 16 bytes");
  cr_assert_not_null(strstr(r.hdrs.data, "X-Too-Large: 1"));
  resp_free(&r);

  snprintf(url, sizeof url, "http://127.0.0.1:%d/json", ic_http_port(s));
  do_req(url, "DELETE", NULL, NULL, &r, NULL);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(r.body.data, "{\"a\":\"b\",\"n\":3}\n");
  cr_assert_not_null(strstr(r.hdrs.data, "Content-Type: application/json"));
  resp_free(&r);

  do_req(url, "HEAD", NULL, NULL, &r, NULL);
  cr_assert_eq(r.status, 200);
  cr_assert(r.body.len == 0);
  resp_free(&r);

  snprintf(url, sizeof url, "http://127.0.0.1:%d/silent", ic_http_port(s));
  do_req(url, "GET", NULL, NULL, &r, NULL);
  cr_assert_eq(r.status, 500, "handler that never replies gets a 500");
  resp_free(&r);

  snprintf(url, sizeof url, "http://127.0.0.1:%d/pre/x/y", ic_http_port(s));
  do_req(url, "GET", NULL, NULL, &r, NULL);
  cr_assert_eq(r.status, 200, "prefix route");
  resp_free(&r);

  ic_http_stop(s, 1000);
  ic_http_free(s);
}

Test(http, auth_hook_runs_before_method_check) {
  ic_http_server_t *s = start_server(0, NULL, NULL);
  char url[128];
  resp_t r;
  snprintf(url, sizeof url, "http://127.0.0.1:%d/secure", ic_http_port(s));
  auth_calls = 0;
  do_req(url, "POST", NULL, NULL, &r, NULL);
  cr_assert_eq(r.status, 401, "unauthenticated wrong method is 401, not 405");
  cr_assert_str_eq(r.body.data, "unauthorized\n\n");
  resp_free(&r);
  do_req(url, "POST", NULL, "bearer good", &r, NULL);
  cr_assert_eq(r.status, 405);
  resp_free(&r);
  do_req(url, "GET", NULL, "BEARER   good  ", &r, NULL);
  cr_assert_eq(r.status, 200);
  resp_free(&r);
  do_req(url, "GET", NULL, "Basic good", &r, NULL);
  cr_assert_eq(r.status, 401);
  resp_free(&r);
  cr_assert_eq(auth_calls, 4);
  ic_http_stop(s, 1000);
  ic_http_free(s);
}

Test(http, parse_bearer) {
  const char *t;
  size_t n;
  cr_assert(ic_http_parse_bearer("Bearer abc", &t, &n) && n == 3 && !memcmp(t, "abc", 3));
  cr_assert(ic_http_parse_bearer("bEaReR \t x y \t", &t, &n) && n == 3 && !memcmp(t, "x y", 3));
  cr_assert(!ic_http_parse_bearer("Bearer ", &t, &n));
  cr_assert(!ic_http_parse_bearer("Bearer    ", &t, &n));
  cr_assert(!ic_http_parse_bearer("Bearerabc", &t, &n));
  cr_assert(!ic_http_parse_bearer("Basic abc", &t, &n));
  cr_assert(!ic_http_parse_bearer("", &t, &n));
  cr_assert(!ic_http_parse_bearer(NULL, &t, &n));
  cr_assert(!ic_http_parse_bearer("Bearers abc", &t, &n));
}

Test(http, split_hostport) {
  char h[256];
  int p;
  cr_assert_eq(ic_http_split_hostport(":8080", h, &p), 0);
  cr_assert_str_eq(h, "");
  cr_assert_eq(p, 8080);
  cr_assert_eq(ic_http_split_hostport("127.0.0.1:0", h, &p), 0);
  cr_assert_str_eq(h, "127.0.0.1");
  cr_assert_eq(ic_http_split_hostport("[::1]:9", h, &p), 0);
  cr_assert_str_eq(h, "::1");
  cr_assert_eq(p, 9);
  cr_assert_eq(ic_http_split_hostport("8080", h, &p), IC_EINVAL);
  cr_assert_eq(ic_http_split_hostport("host:", h, &p), IC_EINVAL);
  cr_assert_eq(ic_http_split_hostport("host:70000", h, &p), IC_EINVAL);
  cr_assert_eq(ic_http_split_hostport("::1:80", h, &p), IC_EINVAL);
}

Test(http, listen_conflict_reports_error) {
  ic_http_server_t *a = start_server(1, NULL, NULL);
  char bind[64];
  snprintf(bind, sizeof bind, "127.0.0.1:%d", ic_http_port(a));
  ic_http_config_t cfg = {.bind = bind, .threads = 1};
  ic_http_server_t *b = ic_http_new(&cfg);
  char err[256] = "";
  cr_assert_eq(ic_http_listen(b, err, sizeof err), IC_EIO);
  cr_assert_not_null(strstr(err, "bind"), "%s", err);
  ic_http_free(b);
  ic_http_config_t bad = {.bind = "127.0.0.1:1", .tls_cert_file = "x"};
  cr_assert_null(ic_http_new(&bad), "cert without key is rejected");
  ic_http_config_t missing = {.bind = "127.0.0.1:0",
                              .tls_cert_file = "/nonexistent/c.pem",
                              .tls_key_file = "/nonexistent/k.pem"};
  ic_http_server_t *m = ic_http_new(&missing);
  cr_assert_eq(ic_http_start(m, err, sizeof err), IC_EIO);
  cr_assert_not_null(strstr(err, "/nonexistent/c.pem"), "%s", err);
  ic_http_free(m);
  ic_http_free(a);
}

static void make_cert(const char *dir, const char *name, int serial) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/%s.key -out %s/%s.crt "
           "-days 1 -subj /CN=localhost -set_serial %d >/dev/null 2>&1",
           dir, name, dir, name, serial);
  cr_assert_eq(system(cmd), 0);
}

static long served_serial(const char *url, const char *ca) {
  CURL *c = curl_easy_init();
  ic_buf_t b = IC_BUF_INIT;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wcb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_CAINFO, ca);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(c, CURLOPT_CERTINFO, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
  long serial = -1;
  if (curl_easy_perform(c) == CURLE_OK) {
    struct curl_certinfo *ci = NULL;
    curl_easy_getinfo(c, CURLINFO_CERTINFO, &ci);
    for (int i = 0; ci && i < ci->num_of_certs && serial < 0; i++)
      for (struct curl_slist *s = ci->certinfo[i]; s; s = s->next)
        if (!strncmp(s->data, "Serial Number:", 14)) serial = strtol(s->data + 14, NULL, 16);
  }
  ic_buf_free(&b);
  curl_easy_cleanup(c);
  return serial;
}

Test(http, tls_serves_and_reloads_rotated_cert, .timeout = 120) {
  char dir[] = "/tmp/ic_http_tlsXXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  make_cert(dir, "a", 1);
  char crt[256], key[256];
  snprintf(crt, sizeof crt, "%s/a.crt", dir);
  snprintf(key, sizeof key, "%s/a.key", dir);
  ic_http_server_t *s = start_server(2, crt, key);
  char url[128];
  snprintf(url, sizeof url, "https://127.0.0.1:%d/json", ic_http_port(s));
  resp_t r;
  cr_assert_eq(do_req(url, "GET", NULL, NULL, &r, crt), 0);
  cr_assert_eq(r.status, 200);
  resp_free(&r);
  cr_assert_eq(served_serial(url, crt), 1);

  /* Rotate: write serial 2 elsewhere, then move into place with a newer mtime. */
  make_cert(dir, "b", 2);
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "cd %s && cp b.key a.key && cp b.crt a.crt && touch -d '+2 seconds' a.crt", dir);
  cr_assert_eq(system(cmd), 0);
  cr_assert_eq(served_serial(url, crt), 2, "next handshake serves the rotated cert");

  /* A broken cert file keeps the last good pair. */
  snprintf(cmd, sizeof cmd, "cd %s && echo garbage > a.crt && touch -d '+4 seconds' a.crt", dir);
  cr_assert_eq(system(cmd), 0);
  cr_assert_eq(served_serial(url, crt), 2);

  snprintf(url, sizeof url, "http://127.0.0.1:%d/json", ic_http_port(s));
  cr_assert_neq(do_req(url, "GET", NULL, NULL, &r, NULL) == 0 && r.status == 200, 1,
                "plaintext request to a TLS listener fails");
  resp_free(&r);
  ic_http_stop(s, 1000);
  ic_http_free(s);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  system(cmd);
}

Test(http, stop_is_idempotent_and_frees_unstarted) {
  ic_http_config_t cfg = {.bind = "127.0.0.1:0"};
  ic_http_server_t *s = ic_http_new(&cfg);
  ic_http_stop(s, 0);
  ic_http_stop(s, 0);
  ic_http_free(s);
  ic_http_server_t *t = start_server(1, NULL, NULL);
  ic_http_stop(t, 100);
  ic_http_stop(t, 100);
  ic_http_free(t);
}

static int slow_entered;
static void h_slow(ic_http_req_t *r, void *ud) {
  (void)ud;
  __atomic_store_n(&slow_entered, 1, __ATOMIC_SEQ_CST);
  usleep(400 * 1000);
  ic_http_reply(r, 200, "text/plain", "slow", 4);
}

typedef struct {
  char url[128];
  resp_t r;
  int rc;
} slow_call_t;

static void *slow_call(void *p) {
  slow_call_t *c = p;
  c->rc = do_req(c->url, "GET", NULL, NULL, &c->r, NULL);
  return NULL;
}

Test(http, stop_drains_in_flight_requests, .timeout = 60) {
  ic_http_config_t cfg = {.bind = "127.0.0.1:0", .threads = 0};
  ic_http_server_t *s = ic_http_new(&cfg);
  ic_http_route_t rt = {.path = "/slow", .handler = h_slow};
  ic_http_add_route(s, &rt);
  cr_assert_eq(ic_http_start(s, NULL, 0), 0);
  slow_call_t c = {0};
  snprintf(c.url, sizeof c.url, "http://127.0.0.1:%d/slow", ic_http_port(s));
  pthread_t th;
  pthread_create(&th, NULL, slow_call, &c);
  for (int i = 0; i < 4000 && !__atomic_load_n(&slow_entered, __ATOMIC_SEQ_CST); i++)
    usleep(5000); /* wait until the request is inside the handler */
  cr_assert(__atomic_load_n(&slow_entered, __ATOMIC_SEQ_CST));
  ic_http_quiesce(s);
  resp_t q;
  cr_assert_neq(do_req(c.url, "GET", NULL, NULL, &q, NULL), 0, "refused once quiesced");
  resp_free(&q);
  ic_http_stop(s, 10000);
  pthread_join(th, NULL);
  cr_assert_eq(c.rc, 0);
  cr_assert_eq(c.r.status, 200, "in-flight request finished during the drain");
  cr_assert_str_eq(c.r.body.data, "slow");
  resp_free(&c.r);
  resp_t r;
  cr_assert_neq(do_req(c.url, "GET", NULL, NULL, &r, NULL), 0, "no new connections after stop");
  resp_free(&r);
  ic_http_free(s);
}

static int gz_req(const char *url, const char *accept, const char *body, resp_t *out) {
  CURL *c = curl_easy_init();
  memset(out, 0, sizeof *out);
  struct curl_slist *h = NULL;
  char ae[128];
  snprintf(ae, sizeof ae, "Accept-Encoding: %s", accept);
  h = curl_slist_append(h, ae);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_HTTP_CONTENT_DECODING, 0L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wcb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, wcb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->hdrs);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
  CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return rc == CURLE_OK ? 0 : -1;
}

Test(http, gzip_when_accepted) {
  ic_http_server_t *s = start_server(1, NULL, NULL);
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/gz", ic_http_port(s));
  resp_t r;
  cr_assert_eq(gz_req(url, "gzip", "hello hello hello", &r), 0);
  cr_assert_eq(r.status, 200);
  cr_assert_not_null(strstr(r.hdrs.data, "Content-Encoding: gzip"));
  cr_assert_not_null(strstr(r.hdrs.data, "X-Too-Large: 0"), "handler headers kept");
  cr_assert(r.body.len > 2 && (unsigned char)r.body.data[0] == 0x1f &&
                (unsigned char)r.body.data[1] == 0x8b,
            "gzip magic");
  resp_free(&r);
  cr_assert_eq(gz_req(url, "identity", "hello", &r), 0);
  cr_assert_null(strstr(r.hdrs.data, "Content-Encoding"));
  cr_assert_str_eq(r.body.data, "hello");
  resp_free(&r);
  cr_assert_eq(gz_req(url, "gzip;q=0, identity", "hello", &r), 0);
  cr_assert_null(strstr(r.hdrs.data, "Content-Encoding"));
  resp_free(&r);
  cr_assert_eq(gz_req(url, "deflate, gzip;q=0.5", "hello", &r), 0);
  cr_assert_not_null(strstr(r.hdrs.data, "Content-Encoding: gzip"));
  resp_free(&r);
  /* Decoded by curl, the body round-trips. */
  CURL *c = curl_easy_init();
  ic_buf_t b = IC_BUF_INIT;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, "round trip");
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "gzip");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wcb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  cr_assert_eq(curl_easy_perform(c), CURLE_OK);
  cr_assert_str_eq(b.data, "round trip");
  ic_buf_free(&b);
  curl_easy_cleanup(c);
  ic_http_stop(s, 1000);
  ic_http_free(s);
}

/* ---- connection guard (issue 16 item 4): slow clients never lock out a fresh request ---- */

static void h_ok(ic_http_req_t *r, void *ud) {
  (void)ud;
  ic_http_reply(r, 200, "text/plain", "ok\n", 3);
}

/* A connection from 127.0.0.<src> that sent a partial request. */
static int slow_conn(int port, int src) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in me = {.sin_family = AF_INET},
                     to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  char a[32];
  snprintf(a, sizeof a, "127.0.0.%d", src);
  inet_pton(AF_INET, a, &me.sin_addr);
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  cr_assert_eq(bind(fd, (struct sockaddr *)&me, sizeof me), 0);
  cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
  static const char partial[] = "GET /ok HTTP/1.1\r\nHost: x\r\n";
  cr_assert_eq(write(fd, partial, sizeof partial - 1), (ssize_t)(sizeof partial - 1));
  return fd;
}

/* True when the server closed fd within ms. */
static bool closed_within(int fd, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  char b[256];
  while (poll(&p, 1, ms) > 0) {
    ssize_t n = read(fd, b, sizeof b);
    if (n <= 0) return true;
  }
  return false;
}

Test(http, guard_sheds_oldest_slow_connections_and_times_out_requests) {
  ic_http_config_t cfg = {.bind = "127.0.0.1:0",
                          .threads = 2,
                          .name = "guard",
                          .request_timeout_ms = 400,
                          .max_conns = 8,
                          .max_conns_per_client = 3};
  ic_http_server_t *s = ic_http_new(&cfg);
  ic_http_route_t rt = {.path = "/ok", .handler = h_ok};
  cr_assert_eq(ic_http_add_route(s, &rt), 0);
  cr_assert_eq(ic_http_start(s, NULL, 0), 0);
  int port = ic_http_port(s);
  /* one address over its cap: its oldest connections go */
  int one[5];
  for (int i = 0; i < 5; i++)
    one[i] = slow_conn(port, 2);
  cr_assert(closed_within(one[0], 300));
  cr_assert(closed_within(one[1], 300));
  /* 10 more from other addresses: the listener keeps itself at 8 */
  int many[10];
  for (int i = 0; i < 10; i++)
    many[i] = slow_conn(port, 3 + i);
  struct timespec d = {0, 100 * 1000 * 1000};
  nanosleep(&d, NULL);
  ic_http_conn_stats_t st = ic_http_conn_stats(s);
  cr_assert_leq(st.open, 8, "open %llu", (unsigned long long)st.open);
  cr_assert_geq(st.per_client_cap, 2);
  cr_assert_geq(st.listener_cap, 1);
  /* a fresh request is still answered */
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", port);
  resp_t r;
  cr_assert_eq(do_req(url, "GET", NULL, NULL, &r, NULL), 0);
  cr_assert_eq(r.status, 200);
  resp_free(&r);
  /* everything still trickling is cut at the request timeout */
  cr_assert(closed_within(many[9], 1500));
  st = ic_http_conn_stats(s);
  cr_assert_geq(st.request_timeout, 1);
  for (int i = 0; i < 5; i++)
    close(one[i]);
  for (int i = 0; i < 10; i++)
    close(many[i]);
  ic_http_free(s);
}
