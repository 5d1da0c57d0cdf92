/* lib/svc CacheEvent encoder for StreamCacheEvents. Every index change is encoded once on the
 * ingest path while a subscriber is connected; protobuf-c's descriptor-driven sizing and packing
 * cost about as much as the rest of the append, so the seven fields are written directly. The
 * unit tests compare the bytes with protobuf-c's pack. */
#include <string.h>

#include "change_wire.h"

enum { /* CacheEvent field numbers (proto/inferencecache/v1alpha1) */
       F_TYPE = 1,
       F_REPLICA = 2,
       F_MODEL = 3,
       F_TENANT = 4,
       F_HASH = 5,
       F_TIMESTAMP = 6,
       F_ADAPTER = 7
};
enum { WT_VARINT = 0, WT_LEN = 2 };

static size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static uint8_t *varint_put(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

/* A length-delimited field; proto3 leaves an empty one out. Tags here fit one byte. */
static size_t len_field_size(size_t n) { return n ? 1 + varint_size(n) + n : 0; }

static uint8_t *len_field_put(uint8_t *p, int field, const void *data, size_t n) {
  if (!n) return p;
  *p++ = (uint8_t)(field << 3 | WT_LEN);
  p = varint_put(p, n);
  memcpy(p, data, n);
  return p + n;
}

/* Enums and int64 are written as the two's complement of their 64-bit value, like protobuf. */
static uint64_t type_value(const ic_index_change_t *c) { return (uint64_t)(int64_t)c->type; }
static uint64_t ts_value(const ic_index_change_t *c) { return (uint64_t)(c->timestamp_ns / 1000); }

void change_wire_measure(const ic_index_change_t *c, change_wire_t *w) {
  w->c = c;
  w->tenant = c->tenant ? c->tenant : "";
  w->model = c->model ? c->model : "";
  w->replica = c->replica ? c->replica : "";
  w->adapter = c->adapter ? c->adapter : "";
  w->tlen = strlen(w->tenant);
  w->mlen = strlen(w->model);
  w->rlen = strlen(w->replica);
  w->alen = strlen(w->adapter);
  w->hlen = c->hash ? c->hash_len : 0;
  uint64_t type = type_value(c), ts = ts_value(c);
  w->size = (type ? 1 + varint_size(type) : 0) + len_field_size(w->rlen) + len_field_size(w->mlen) +
            len_field_size(w->tlen) + len_field_size(w->hlen) + (ts ? 1 + varint_size(ts) : 0) +
            len_field_size(w->alen);
}

uint8_t *change_wire_write(const change_wire_t *w, uint8_t *p) {
  uint64_t type = type_value(w->c), ts = ts_value(w->c);
  if (type) {
    *p++ = F_TYPE << 3 | WT_VARINT;
    p = varint_put(p, type);
  }
  p = len_field_put(p, F_REPLICA, w->replica, w->rlen);
  p = len_field_put(p, F_MODEL, w->model, w->mlen);
  p = len_field_put(p, F_TENANT, w->tenant, w->tlen);
  p = len_field_put(p, F_HASH, w->c->hash, w->hlen);
  if (ts) {
    *p++ = F_TIMESTAMP << 3 | WT_VARINT;
    p = varint_put(p, ts);
  }
  return len_field_put(p, F_ADAPTER, w->adapter, w->alen);
}
