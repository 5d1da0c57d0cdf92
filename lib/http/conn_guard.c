/* lib/http connection guard: request deadline, idle bound, per-client and per-listener caps
 * that shed the oldest connections not serving a request (see conn_guard.h for the rules). */
#include "conn_guard.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic/clock.h"
#include "ic/err.h"
#include "ic/log.h"

enum { C_READING, C_ACTIVE, C_IDLE };

typedef struct conn {
  struct conn *prev, *next; /* ordered by `since` (oldest first) */
  int fd;
  int state;
  bool shut;
  int64_t since_ms; /* entered READING / IDLE / ACTIVE */
  uint8_t addr[16]; /* client address, IPv4 as v4-mapped IPv6 */
} conn_t;

struct conn_guard {
  char name[32];
  int64_t req_ms, idle_ms;
  unsigned max_conns, max_per_client;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  conn_t *head, *tail;
  uint64_t live;
  conn_guard_stats_t st, logged;
  bool running, stop;
  pthread_t thr;
};

static int64_t now_ms(void) { return ic_clock_monotonic_ns() / 1000000; }

conn_guard_t *conn_guard_new(const char *name, int request_timeout_ms, unsigned idle_timeout_s,
                             unsigned max_conns, unsigned max_per_client) {
  conn_guard_t *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  snprintf(g->name, sizeof g->name, "%s", name ? name : "http");
  g->req_ms = request_timeout_ms > 0 ? request_timeout_ms : 0;
  g->idle_ms = (int64_t)idle_timeout_s * 1000;
  g->max_conns = max_conns;
  g->max_per_client = max_per_client;
  pthread_mutex_init(&g->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g->cv, &ca);
  pthread_condattr_destroy(&ca);
  return g;
}

static void unlink_conn(conn_guard_t *g, conn_t *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    g->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  else
    g->tail = c->prev;
  c->prev = c->next = NULL;
}

static void append_conn(conn_guard_t *g, conn_t *c) {
  c->prev = g->tail;
  c->next = NULL;
  if (g->tail)
    g->tail->next = c;
  else
    g->head = c;
  g->tail = c;
}

/* Caller holds mu. The fd is libmicrohttpd's and still open (it is closed only after the close
 * notification, which takes mu), so shutdown cannot hit a reused descriptor. */
static void shed(conn_guard_t *g, conn_t *c, uint64_t *counter) {
  if (c->shut) return;
  c->shut = true;
  g->live--;
  (*counter)++;
  shutdown(c->fd, SHUT_RDWR);
}

static bool sheddable(const conn_t *c) { return !c->shut && c->state != C_ACTIVE; }

/* The oldest sheddable connection (of `addr` when not NULL). */
static conn_t *oldest(conn_guard_t *g, const uint8_t *addr) {
  for (conn_t *c = g->head; c; c = c->next)
    if (sheddable(c) && (!addr || memcmp(c->addr, addr, 16) == 0)) return c;
  return NULL;
}

static void addr_key(const struct sockaddr *sa, uint8_t out[16]) {
  memset(out, 0, 16);
  if (!sa) return;
  if (sa->sa_family == AF_INET) {
    out[10] = out[11] = 0xff;
    memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
  }
}

void conn_guard_on_open(conn_guard_t *g, int fd, const struct sockaddr *peer, void **ctx) {
  conn_t *c = calloc(1, sizeof *c);
  *ctx = c;
  if (!c) return; /* untracked: served normally, just not bounded */
  c->fd = fd;
  c->state = C_READING;
  c->since_ms = now_ms();
  addr_key(peer, c->addr);
  pthread_mutex_lock(&g->mu);
  append_conn(g, c);
  g->live++;
  if (g->max_per_client) {
    uint64_t mine = 0;
    for (conn_t *o = g->head; o; o = o->next)
      mine += !o->shut && memcmp(o->addr, c->addr, 16) == 0;
    if (mine > g->max_per_client) shed(g, oldest(g, c->addr), &g->st.per_client);
  }
  if (g->max_conns && g->live > g->max_conns) {
    conn_t *v = oldest(g, NULL);
    if (v) shed(g, v, &g->st.full);
  }
  pthread_mutex_unlock(&g->mu);
}

void conn_guard_on_close(conn_guard_t *g, void **ctx) {
  conn_t *c = *ctx;
  if (!c) return;
  pthread_mutex_lock(&g->mu);
  unlink_conn(g, c);
  if (!c->shut) g->live--;
  pthread_mutex_unlock(&g->mu);
  free(c);
  *ctx = NULL;
}

static void set_state(conn_guard_t *g, conn_t *c, int state) {
  if (!c) return;
  pthread_mutex_lock(&g->mu);
  c->state = state;
  c->since_ms = now_ms();
  unlink_conn(g, c); /* keep the list ordered by since_ms */
  append_conn(g, c);
  pthread_mutex_unlock(&g->mu);
}

void conn_guard_on_handler(conn_guard_t *g, void *ctx) { set_state(g, ctx, C_ACTIVE); }
void conn_guard_on_done(conn_guard_t *g, void *ctx) { set_state(g, ctx, C_IDLE); }

conn_guard_stats_t conn_guard_stats(conn_guard_t *g) {
  pthread_mutex_lock(&g->mu);
  conn_guard_stats_t s = g->st;
  s.live = g->live;
  pthread_mutex_unlock(&g->mu);
  return s;
}

/* One pass: closes what is past its deadline. The list is ordered by since_ms, so the walk
 * stops at the first connection younger than the shorter deadline. Caller holds mu. */
static void enforce(conn_guard_t *g, int64_t now) {
  int64_t youngest = INT64_MAX;
  if (g->req_ms) youngest = g->req_ms;
  if (g->idle_ms && g->idle_ms < youngest) youngest = g->idle_ms;
  for (conn_t *c = g->head; c && now - c->since_ms >= youngest; c = c->next) {
    if (c->shut) continue;
    if (c->state == C_READING && g->req_ms && now - c->since_ms >= g->req_ms)
      shed(g, c, &g->st.timed_out);
    else if (c->state == C_IDLE && g->idle_ms && now - c->since_ms >= g->idle_ms)
      shed(g, c, &g->st.idle_closed);
  }
}

/* Logs what was shed, at most every 10 s, so a flood is visible without a line per socket. */
static void maybe_log(conn_guard_t *g, int64_t now, int64_t *last) {
  conn_guard_stats_t s = g->st, l = g->logged;
  if (s.timed_out == l.timed_out && s.idle_closed == l.idle_closed &&
      s.per_client == l.per_client && s.full == l.full)
    return;
  if (*last && now - *last < 10000) return;
  *last = now;
  g->logged = s;
  ic_log_warn("http_connections_shed", IC_LS("listener", g->name),
              IC_LI("request_timeout", (int64_t)(s.timed_out - l.timed_out)),
              IC_LI("idle_timeout", (int64_t)(s.idle_closed - l.idle_closed)),
              IC_LI("per_client_cap", (int64_t)(s.per_client - l.per_client)),
              IC_LI("listener_cap", (int64_t)(s.full - l.full)), IC_LI("open", (int64_t)g->live));
}

static void *reaper(void *arg) {
  conn_guard_t *g = arg;
  int64_t last_log = 0;
  pthread_mutex_lock(&g->mu);
  while (!g->stop) {
    int64_t now = now_ms();
    enforce(g, now);
    maybe_log(g, now, &last_log);
    /* A deadline is met to within a tenth of the shorter one (100 ms for the default 5 s
       request timeout), and never polled more than 20 times a second. */
    int64_t tick = g->req_ms ? g->req_ms / 10 : 1000;
    if (g->idle_ms && g->idle_ms / 10 < tick) tick = g->idle_ms / 10;
    if (tick < 50) tick = 50;
    if (tick > 1000) tick = 1000;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += tick / 1000;
    ts.tv_nsec += (tick % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&g->cv, &g->mu, &ts);
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

int conn_guard_start(conn_guard_t *g) {
  if (g->running || (!g->req_ms && !g->idle_ms)) return 0;
  g->stop = false;
  if (pthread_create(&g->thr, NULL, reaper, g) != 0) return IC_ENOMEM;
  pthread_setname_np(g->thr, "ic-http-reaper");
  g->running = true;
  return 0;
}

void conn_guard_stop(conn_guard_t *g) {
  if (!g || !g->running) return;
  pthread_mutex_lock(&g->mu);
  g->stop = true;
  pthread_cond_signal(&g->cv);
  pthread_mutex_unlock(&g->mu);
  pthread_join(g->thr, NULL);
  g->running = false;
}

void conn_guard_free(conn_guard_t *g) {
  if (!g) return;
  conn_guard_stop(g);
  /* Records still listed belong to connections libmicrohttpd never reported closed (it was
     stopped first, which reports them all); free whatever is left. */
  for (conn_t *c = g->head; c;) {
    conn_t *n = c->next;
    free(c);
    c = n;
  }
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g);
}
