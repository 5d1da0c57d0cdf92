/* lib/svc internal: the CacheEvent wire form of an index change, encoded by hand in two steps
 * (measure, then write in place) so the change log can encode straight into its ring. */
#ifndef IC_SVC_CHANGE_WIRE_H
#define IC_SVC_CHANGE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "ic/index.h"

typedef struct change_wire {
  const ic_index_change_t *c;
  const char *tenant, *model, *replica, *adapter; /* never NULL */
  size_t tlen, mlen, rlen, alen, hlen;
  size_t size; /* encoded CacheEvent bytes */
} change_wire_t;

/* Measures `c` (borrowed until change_wire_write returns). */
void change_wire_measure(const ic_index_change_t *c, change_wire_t *w);
/* Writes exactly w->size bytes at p: byte for byte what protobuf-c packs for the same CacheEvent
 * (fields in number order, proto3 defaults left out). Returns p + w->size. */
uint8_t *change_wire_write(const change_wire_t *w, uint8_t *p);

#endif
