/* lib/http streamed replies: the body is written later from another thread while the connection
 * is suspended (no worker blocks), many streams at once on a 2-thread pool, chunked encoding,
 * and a write after the client left reports IC_EIO instead of queueing forever. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/buf.h"
#include "ic/err.h"
#include "ic/http.h"

#define NSTREAMS 64

static ic_http_stream_t *g_streams[NSTREAMS];
static int g_n;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_stream(ic_http_req_t *r, void *ud) {
  (void)ud;
  ic_http_stream_t *st = NULL;
  cr_assert_eq(ic_http_reply_stream(r, 200, "text/event-stream", &st), 0);
  pthread_mutex_lock(&g_mu);
  g_streams[g_n++] = st;
  pthread_mutex_unlock(&g_mu);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static int n_streams(void) {
  pthread_mutex_lock(&g_mu);
  int n = g_n;
  pthread_mutex_unlock(&g_mu);
  return n;
}

/* Producer: waits for every request to be suspended, then writes to each stream in rounds. */
static void *producer(void *arg) {
  int want = (int)(intptr_t)arg;
  while (n_streams() < want)
    sleep_ms(2);
  for (int round = 0; round < 3; round++) {
    sleep_ms(20);
    for (int i = 0; i < want; i++) {
      char line[64];
      int n = snprintf(line, sizeof line, "data: %d.%d\n\n", i, round);
      ic_http_stream_write(g_streams[i], line, (size_t)n);
    }
  }
  for (int i = 0; i < want; i++)
    ic_http_stream_close(g_streams[i]);
  return NULL;
}

static size_t wcb(char *p, size_t sz, size_t n, void *ud) {
  ic_buf_append(ud, p, sz * n);
  return sz * n;
}

Test(http_stream, many_suspended_streams_on_two_threads) {
  ic_http_config_t cfg = {.bind = "127.0.0.1:0", .threads = 2, .name = "t"};
  ic_http_server_t *s = ic_http_new(&cfg);
  ic_http_route_t rt = {.path = "/s", .methods = "GET", .handler = on_stream};
  cr_assert_eq(ic_http_add_route(s, &rt), 0);
  cr_assert_eq(ic_http_start(s, NULL, 0), 0);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/s", ic_http_port(s));
  g_n = 0;
  pthread_t th;
  pthread_create(&th, NULL, producer, (void *)(intptr_t)NSTREAMS);
  CURLM *m = curl_multi_init();
  CURL *c[NSTREAMS];
  ic_buf_t body[NSTREAMS];
  for (int i = 0; i < NSTREAMS; i++) {
    ic_buf_init(&body[i]);
    c[i] = curl_easy_init();
    curl_easy_setopt(c[i], CURLOPT_URL, url);
    curl_easy_setopt(c[i], CURLOPT_WRITEFUNCTION, wcb);
    curl_easy_setopt(c[i], CURLOPT_WRITEDATA, &body[i]);
    curl_easy_setopt(c[i], CURLOPT_TIMEOUT, 20L);
    curl_multi_add_handle(m, c[i]);
  }
  int running = 1;
  while (running) {
    curl_multi_perform(m, &running);
    if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
  }
  pthread_join(th, NULL);
  /* Requests are matched to streams in arrival order, so compare content, not position. */
  int seen[NSTREAMS] = {0};
  for (int i = 0; i < NSTREAMS; i++) {
    long code = 0;
    curl_easy_getinfo(c[i], CURLINFO_RESPONSE_CODE, &code);
    cr_assert_eq(code, 200);
    int k = -1, r0, r1, r2, k1, k2;
    cr_assert_eq(sscanf(body[i].data, "data: %d.%d\n\ndata: %d.%d\n\ndata: %d.%d", &k, &r0, &k1,
                        &r1, &k2, &r2),
                 6, "%s", body[i].data);
    cr_assert(k == k1 && k == k2 && r0 == 0 && r1 == 1 && r2 == 2);
    seen[k]++;
    curl_multi_remove_handle(m, c[i]);
    curl_easy_cleanup(c[i]);
    ic_buf_free(&body[i]);
  }
  for (int i = 0; i < NSTREAMS; i++)
    cr_assert_eq(seen[i], 1);
  curl_multi_cleanup(m);
  ic_http_stop(s, 2000);
  ic_http_free(s);
}

Test(http_stream, write_after_client_left_fails) {
  ic_http_config_t cfg = {.bind = "127.0.0.1:0", .threads = 2, .name = "t"};
  ic_http_server_t *s = ic_http_new(&cfg);
  ic_http_route_t rt = {.path = "/s", .methods = "GET", .handler = on_stream};
  cr_assert_eq(ic_http_add_route(s, &rt), 0);
  cr_assert_eq(ic_http_start(s, NULL, 0), 0);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/s", ic_http_port(s));
  g_n = 0;
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 300L); /* gives up while the body is pending */
  ic_buf_t b;
  ic_buf_init(&b);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wcb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  cr_assert_eq(curl_easy_perform(c), CURLE_OPERATION_TIMEDOUT);
  curl_easy_cleanup(c);
  cr_assert_eq(n_streams(), 1);
  int rc = 0;
  for (int i = 0; i < 200 && rc == 0; i++) { /* the first write resumes and finds the peer gone */
    rc = ic_http_stream_write(g_streams[0], "data: x\n\n", 9);
    sleep_ms(10);
  }
  cr_assert_eq(rc, IC_EIO);
  ic_http_stream_close(g_streams[0]);
  ic_buf_free(&b);
  ic_http_stop(s, 2000);
  ic_http_free(s);
}

static void on_refused(ic_http_req_t *r, void *ud) {
  (void)ud;
  ic_http_stream_t *st = NULL;
  int rc = ic_http_reply_stream(r, 200, "text/plain", &st);
  ic_http_reply(r, 200, "text/plain", rc == IC_ESTATE ? "refused" : "streamed", rc ? 7 : 8);
}

Test(http_stream, thread_per_connection_servers_refuse_streams) {
  /* Suspending is not available with a thread per connection: the caller must answer plainly. */
  ic_http_config_t cfg = {.bind = "127.0.0.1:0", .threads = 0, .name = "t"};
  ic_http_server_t *s = ic_http_new(&cfg);
  ic_http_route_t rt = {.path = "/s", .methods = "GET", .handler = on_refused};
  cr_assert_eq(ic_http_add_route(s, &rt), 0);
  cr_assert_eq(ic_http_start(s, NULL, 0), 0);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/s", ic_http_port(s));
  CURL *c = curl_easy_init();
  ic_buf_t b;
  ic_buf_init(&b);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wcb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  cr_assert_eq(curl_easy_perform(c), CURLE_OK);
  cr_assert_str_eq(b.data, "refused");
  curl_easy_cleanup(c);
  ic_buf_free(&b);
  ic_http_stop(s, 2000);
  ic_http_free(s);
}
