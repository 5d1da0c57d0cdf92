/* lib/http connection guard (private to lib/http): bounds what slow or hostile clients can hold
 * on one listener, so a flood of trickling connections never locks out a health probe.
 *
 * Every connection is tracked from accept to close in one list ordered by when it last started
 * waiting for a request. A connection that is not serving a request (READING: accepted or
 * between requests and not yet complete; IDLE: keep-alive after a response) is "sheddable":
 *  - READING longer than request_timeout_ms -> closed (the reference's 5 s ReadHeaderTimeout,
 *    here covering the body as well, since a trickled body holds a connection just the same);
 *  - IDLE longer than idle_timeout_s -> closed, however the client trickles bytes;
 *  - a client address over max_per_client -> its oldest sheddable connection is closed;
 *  - the listener over max_conns -> the oldest sheddable connection of anyone is closed.
 * Connections running a handler are never shed. A new connection is the youngest, so it is
 * the last candidate: a probe that sends its request at once always gets an answer.
 * Closing = shutdown(2) of the socket (the fd stays libmicrohttpd's; it sees EOF and cleans up
 * through its close notification), so there is no fd-reuse race. */
#ifndef IC_HTTP_CONN_GUARD_H
#define IC_HTTP_CONN_GUARD_H
#include <stdint.h>
#include <sys/socket.h>

typedef struct conn_guard conn_guard_t;

typedef struct conn_guard_stats {
  uint64_t timed_out;   /* request not complete within request_timeout_ms */
  uint64_t idle_closed; /* keep-alive idle beyond idle_timeout_s */
  uint64_t per_client;  /* shed: a client address over its cap */
  uint64_t full;        /* shed: the listener at its cap */
  uint64_t live;        /* connections open now (not yet shut) */
} conn_guard_stats_t;

/* request_timeout_ms <= 0 = none; idle_timeout_s 0 = none; max_* 0 = unbounded. */
conn_guard_t *conn_guard_new(const char *name, int request_timeout_ms, unsigned idle_timeout_s,
                             unsigned max_conns, unsigned max_per_client);
/* Starts the thread that enforces the deadlines. 0 or IC_ENOMEM. */
int conn_guard_start(conn_guard_t *g);
/* Joins that thread; connections are left to the caller (libmicrohttpd closes them). */
void conn_guard_stop(conn_guard_t *g);
void conn_guard_free(conn_guard_t *g);

/* libmicrohttpd hooks. on_open stores the tracking record in *ctx (the socket context). */
void conn_guard_on_open(conn_guard_t *g, int fd, const struct sockaddr *peer, void **ctx);
void conn_guard_on_close(conn_guard_t *g, void **ctx);
/* The request is complete and its handler runs now: not sheddable until it is answered. */
void conn_guard_on_handler(conn_guard_t *g, void *ctx);
/* The response was sent (or the request ended): idle keep-alive from now. */
void conn_guard_on_done(conn_guard_t *g, void *ctx);

conn_guard_stats_t conn_guard_stats(conn_guard_t *g);

#endif
