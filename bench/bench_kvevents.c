/* bench_kvevents (`make bench BENCH=subscriber` or BENCH=kvevents): engine event ingest cost
 * and end-to-end visibility.
 *   decode_blocks_per_s   msgpack batch -> decoded events -> positional tracker -> index ops,
 *                         single thread, per encoding (vllm-array, vllm-map, sglang pages)
 *   decode_only_blocks_per_s  the msgpack decoder alone
 *   e2e_visible_p50_ms / e2e_visible_p99_ms  a BlockStored published on ZMQ -> a LookupRoute on
 *                         the real server sees it (real server + subscriber processes), with the
 *                         default 100ms window and with --window=1ms. Skipped (with a note) when
 *                         the binaries are not built.
 * Prints one JSON line per result (docs/performance.md). */
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "ic/buf.h"
#include "ic/clock.h"
#include "ic/fingerprint.h"
#include "ic/kvevents.h"
#include "ic/log.h"
#include "ic/rpc.h"
#include "inferencecache/v1alpha1/inferencecache.pb-c.h"

enum { ENC_ARRAY, ENC_MAP, ENC_SGLANG };
static const char *ENC_NAME[] = {"vllm-array", "vllm-map", "sglang"};

static void pk_str(msgpack_packer *pk, const char *s) {
  msgpack_pack_str(pk, strlen(s));
  msgpack_pack_str_body(pk, s, strlen(s));
}

/* One batch of `nblocks` blocks of `bs` tokens starting at token `t0`, engine hashes h0.. */
static void build_batch(msgpack_sbuffer *sb, int enc, int nblocks, int bs, uint32_t t0, uint64_t h0,
                        double ts) {
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  int nev = enc == ENC_SGLANG ? nblocks : 1;
  int per = nblocks / nev;
  if (enc == ENC_MAP) {
    msgpack_pack_map(&pk, 3);
    pk_str(&pk, "ts");
    msgpack_pack_double(&pk, ts);
    pk_str(&pk, "events");
  } else {
    msgpack_pack_array(&pk, 3);
    msgpack_pack_double(&pk, ts);
  }
  msgpack_pack_array(&pk, (size_t)nev);
  for (int e = 0; e < nev; e++) {
    int lo = e * per;
    if (enc == ENC_MAP) {
      msgpack_pack_map(&pk, 10);
      pk_str(&pk, "type");
      pk_str(&pk, "BlockStored");
      pk_str(&pk, "block_hashes");
    } else {
      msgpack_pack_array(&pk, 6);
      pk_str(&pk, "BlockStored");
    }
    msgpack_pack_array(&pk, (size_t)per);
    for (int i = 0; i < per; i++) {
      uint64_t h = h0 + (uint64_t)(lo + i);
      if (enc == ENC_SGLANG)
        msgpack_pack_int64(&pk, -(int64_t)h);
      else
        msgpack_pack_uint64(&pk, h | (enc == ENC_MAP ? 1ULL << 63 : 0));
    }
    if (enc == ENC_MAP) pk_str(&pk, "parent_block_hash");
    if (lo == 0)
      msgpack_pack_nil(&pk);
    else if (enc == ENC_SGLANG)
      msgpack_pack_int64(&pk, -(int64_t)(h0 + (uint64_t)lo - 1));
    else
      msgpack_pack_uint64(&pk, (h0 + (uint64_t)lo - 1) | (enc == ENC_MAP ? 1ULL << 63 : 0));
    if (enc == ENC_MAP) pk_str(&pk, "token_ids");
    msgpack_pack_array(&pk, (size_t)(per * bs));
    for (int i = 0; i < per * bs; i++)
      msgpack_pack_uint32(&pk, t0 + (uint32_t)(lo * bs + i));
    if (enc == ENC_MAP) pk_str(&pk, "block_size");
    msgpack_pack_int(&pk, bs);
    if (enc == ENC_MAP) pk_str(&pk, "lora_id");
    msgpack_pack_nil(&pk);
    if (enc == ENC_MAP) {
      pk_str(&pk, "medium");
      pk_str(&pk, "GPU");
      pk_str(&pk, "lora_name");
      msgpack_pack_nil(&pk);
      pk_str(&pk, "extra_keys");
      msgpack_pack_array(&pk, (size_t)per);
      for (int i = 0; i < per; i++)
        msgpack_pack_nil(&pk);
      pk_str(&pk, "group_idx");
      msgpack_pack_int(&pk, 0);
    }
  }
  if (enc != ENC_MAP) {
    if (enc == ENC_SGLANG)
      msgpack_pack_nil(&pk);
    else
      msgpack_pack_int(&pk, 0);
  }
}

static void bench_decode(void) {
  const int nblocks = 32, bs = 16; /* a 512-token prompt per batch */
  for (int enc = 0; enc < 3; enc++) {
    enum { NB = 64 }; /* distinct batches, so the tracker sees a realistic working set */
    msgpack_sbuffer sb[NB];
    for (int k = 0; k < NB; k++) {
      msgpack_sbuffer_init(&sb[k]);
      build_batch(&sb[k], enc, nblocks, bs, (uint32_t)(k * 100000), (uint64_t)k << 20, 1.0);
    }
    ic_kv_batch_t b;
    ic_kv_batch_init(&b);
    ic_kv_tracker_t *t = ic_kv_tracker_new();
    ic_kv_ops_t ops = {0};
    for (int w = 0; w < 2000; w++) { /* warm caches and the tracker */
      ic_kv_decode(&b, (const uint8_t *)sb[w % NB].data, sb[w % NB].size);
      ops.n = 0;
      ic_kv_apply(t, &b, NULL, &ops, NULL);
    }
    /* decode only */
    int64_t iters = 0, start = ic_clock_monotonic_ns(), el;
    do {
      for (int k = 0; k < NB; k++)
        ic_kv_decode(&b, (const uint8_t *)sb[k].data, sb[k].size);
      iters += NB;
      el = ic_clock_monotonic_ns() - start;
    } while (el < 1000000000LL);
    double dps = (double)iters * nblocks / ((double)el / 1e9);
    /* decode + apply */
    iters = 0;
    start = ic_clock_monotonic_ns();
    do {
      for (int k = 0; k < NB; k++) {
        ic_kv_decode(&b, (const uint8_t *)sb[k].data, sb[k].size);
        ops.n = 0;
        ic_kv_apply(t, &b, NULL, &ops, NULL);
      }
      iters += NB;
      el = ic_clock_monotonic_ns() - start;
    } while (el < 1000000000LL);
    double aps = (double)iters * nblocks / ((double)el / 1e9);
    printf("{\"bench\":\"subscriber\",\"name\":\"decode_blocks_per_s\",\"value\":%.0f,\"unit\":"
           "\"blocks/s\","
           "\"params\":{\"encoding\":\"%s\",\"blocks_per_batch\":%d,\"block_size\":%d,"
           "\"includes\":\"msgpack decode + fingerprint + positional tracker + "
           "ops\",\"target\":2000000}}\n",
           aps, ENC_NAME[enc], nblocks, bs);
    printf("{\"bench\":\"subscriber\",\"name\":\"decode_only_blocks_per_s\",\"value\":%.0f,"
           "\"unit\":\"blocks/s\","
           "\"params\":{\"encoding\":\"%s\",\"blocks_per_batch\":%d,\"block_size\":%d,\"bytes_per_"
           "batch\":%zu}}\n",
           dps, ENC_NAME[enc], nblocks, bs, sb[0].size);
    fflush(stdout);
    for (int k = 0; k < NB; k++)
      msgpack_sbuffer_destroy(&sb[k]);
    ic_kv_ops_free(&ops);
    ic_kv_tracker_free(t);
    ic_kv_batch_free(&b);
  }
}

/* ---- end to end --------------------------------------------------------------------------- */

static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bind(s, (struct sockaddr *)&a, sizeof(a));
  socklen_t l = sizeof(a);
  getsockname(s, (struct sockaddr *)&a, &l);
  close(s);
  return ntohs(a.sin_port);
}

static pid_t spawn(char *const argv[]) {
  pid_t p = fork();
  if (p == 0) {
    int fd = open("/dev/null", 1);
    dup2(fd, 2);
    dup2(fd, 1);
    execv(argv[0], argv);
    _exit(127);
  }
  return p;
}

static void stop(pid_t p) {
  if (p <= 0) return;
  kill(p, SIGTERM);
  int st;
  for (int i = 0; i < 100; i++) {
    if (waitpid(p, &st, WNOHANG) == p) return;
    usleep(50000);
  }
  kill(p, SIGKILL);
  waitpid(p, &st, 0);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Returns matched tokens of the top replica, or -1 on RPC failure. */
static int lookup(ic_rpc_channel_t *ch, const char *model, uint8_t (*hashes)[8], int n, int bs) {
  Inferencecache__V1alpha1__LookupRouteRequest r =
      INFERENCECACHE__V1ALPHA1__LOOKUP_ROUTE_REQUEST__INIT;
  ProtobufCBinaryData bh[64];
  int32_t counts[64];
  for (int i = 0; i < n; i++) {
    bh[i].data = hashes[i];
    bh[i].len = 8;
    counts[i] = bs;
  }
  r.model_id = (char *)model;
  r.tenant_id = "bench";
  r.hash_scheme = "vllm";
  r.n_block_hashes = (size_t)n;
  r.block_hashes = bh;
  r.n_block_token_counts = (size_t)n;
  r.block_token_counts = counts;
  uint8_t buf[2048];
  size_t len = inferencecache__v1alpha1__lookup_route_request__pack(&r, buf);
  ic_buf_t resp = IC_BUF_INIT;
  int status = -1;
  int rc = ic_rpc_unary(ch, "/inferencecache.v1alpha1.InferenceCache/LookupRoute", buf, len, 2000,
                        &resp, &status, NULL);
  int matched = -1;
  if (rc == 0 && status == 0) {
    Inferencecache__V1alpha1__LookupRouteResponse *lr =
        inferencecache__v1alpha1__lookup_route_response__unpack(NULL, resp.len,
                                                                (uint8_t *)resp.data);
    if (lr) {
      matched = lr->n_replica_scores ? lr->replica_scores[0]->matched_tokens : 0;
      inferencecache__v1alpha1__lookup_route_response__free_unpacked(lr, NULL);
    }
  }
  ic_buf_free(&resp);
  return matched;
}

static void bench_e2e(const char *window, int window_us, int samples) {
  char server_bin[1024], sub_bin[1024];
  snprintf(server_bin, sizeof(server_bin), "%s/src/server/inferencecache-server", IC_BUILD_DIR);
  snprintf(sub_bin, sizeof(sub_bin), "%s/src/subscriber/kvevent-subscriber", IC_BUILD_DIR);
  if (access(server_bin, X_OK) || access(sub_bin, X_OK)) {
    printf("{\"bench\":\"subscriber\",\"name\":\"e2e_visible_skipped\",\"value\":0,\"unit\":\"\","
           "\"params\":{\"reason\":\"server or subscriber binary not built\"}}\n");
    return;
  }
  int gport = free_port(), hport = free_port(), sport = free_port(), zport = free_port(),
      mport = free_port();
  char a1[64], a2[64], a3[64], a4[64], a5[64], a6[64], a7[64];
  snprintf(a1, sizeof(a1), "--grpc-bind-address=127.0.0.1:%d", gport);
  snprintf(a2, sizeof(a2), "--http-bind-address=127.0.0.1:%d", hport);
  snprintf(a3, sizeof(a3), "--snapshot-bind-address=127.0.0.1:%d", sport);
  char *sargv[] = {server_bin, "--insecure-disable-auth", a1, a2, a3, NULL};
  pid_t srv = spawn(sargv);
  snprintf(a4, sizeof(a4), "--server=127.0.0.1:%d", gport);
  snprintf(a5, sizeof(a5), "--engine-endpoint=tcp://127.0.0.1:%d", zport);
  snprintf(a6, sizeof(a6), "--http-bind-address=127.0.0.1:%d", mport);
  snprintf(a7, sizeof(a7), "--window=%s", window);
  char *uargv[] = {sub_bin,
                   a4,
                   a5,
                   a6,
                   a7,
                   "--replica-id=r0",
                   "--model-id=bench-e2e",
                   "--tenant-id=bench",
                   "--stats-interval=1h",
                   NULL};
  void *zctx = zmq_ctx_new();
  void *pub = zmq_socket(zctx, ZMQ_XPUB);
  char ep[64];
  snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", zport);
  zmq_bind(pub, ep);
  pid_t sub = spawn(uargv);
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", gport);
  ic_rpc_channel_t *ch = ic_rpc_channel_new(target, NULL);
  int ok = ic_rpc_channel_wait_ready(ch, 30000) == 0;
  int tmo = 30000;
  zmq_setsockopt(pub, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
  char submsg[64];
  ok = ok && zmq_recv(pub, submsg, sizeof(submsg), 0) >= 1; /* the subscription arrived */
  double *lat = calloc((size_t)samples, sizeof(double));
  int got = 0;
  const int nb = 4, bs = 16;
  for (int s = 0; ok && s < samples; s++) {
    uint32_t tokens[64];
    for (int i = 0; i < nb * bs; i++)
      tokens[i] = (uint32_t)(1000000 + s * 1000 + i);
    uint64_t ph[4];
    ic_fp_prefix_hashes(tokens, (size_t)(nb * bs), bs, NULL, ph, 4, NULL);
    uint8_t wire[4][8];
    for (int i = 0; i < 4; i++)
      ic_fp_to_wire(ph[i], wire[i]);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    build_batch(&sb, ENC_ARRAY, nb, bs, 1000000 + (uint32_t)s * 1000, (uint64_t)s << 8, 0.0);
    uint8_t seq[8];
    for (int k = 0; k < 8; k++)
      seq[k] = (uint8_t)((uint64_t)s >> (56 - 8 * k));
    /* Publish at a random phase of the sender's flush ticker, as real traffic does. */
    usleep((useconds_t)(rand() % (window_us > 0 ? window_us : 1)));
    int64_t t0 = ic_clock_monotonic_ns();
    zmq_send(pub, "", 0, ZMQ_SNDMORE);
    zmq_send(pub, seq, 8, ZMQ_SNDMORE);
    zmq_send(pub, sb.data, sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    for (;;) {
      int m = lookup(ch, "bench-e2e", wire, nb, bs);
      int64_t t1 = ic_clock_monotonic_ns();
      if (m == nb * bs) {
        lat[got++] = (double)(t1 - t0) / 1e6;
        break;
      }
      if (t1 - t0 > 5000000000LL) break; /* lost sample */
      usleep(200);
    }
  }
  if (got) {
    qsort(lat, (size_t)got, sizeof(double), cmp_d);
    double p50 = lat[(got - 1) / 2], p99 = lat[(int)ceil(0.99 * got) - 1];
    printf(
        "{\"bench\":\"subscriber\",\"name\":\"e2e_visible_p50_ms\",\"value\":%.3f,\"unit\":\"ms\","
        "\"params\":{\"window\":\"%s\",\"samples\":%d,\"lost\":%d,\"poll_us\":200}}\n",
        p50, window, got, samples - got);
    printf(
        "{\"bench\":\"subscriber\",\"name\":\"e2e_visible_p99_ms\",\"value\":%.3f,\"unit\":\"ms\","
        "\"params\":{\"window\":\"%s\",\"samples\":%d,\"lost\":%d,\"poll_us\":200,\"target_ms\":"
        "\"window+5\"}}\n",
        p99, window, got, samples - got);
  } else {
    printf("{\"bench\":\"subscriber\",\"name\":\"e2e_visible_failed\",\"value\":0,\"unit\":\"\","
           "\"params\":{\"window\":\"%s\"}}\n",
           window);
  }
  fflush(stdout);
  free(lat);
  ic_rpc_channel_free(ch);
  zmq_close(pub);
  zmq_ctx_term(zctx);
  stop(sub);
  stop(srv);
}

int main(int argc, char **argv) {
  ic_log_set_level(IC_LOG_ERROR);
  bool e2e = !(argc > 1 && !strcmp(argv[1], "--no-e2e"));
  bench_decode();
  if (e2e) {
    srand(42);
    bench_e2e("100ms", 100000, 100);
    bench_e2e("1ms", 1000, 200);
  }
  return 0;
}
