/* lib/svc private: checks every string field of an encoded protobuf message before protobuf-c
 * unpacks it into NUL-terminated C strings, which would silently cut a string at an embedded
 * NUL ("pod-a\0other" would become "pod-a"). */
#ifndef IC_SVC_WIRE_STRINGS_H
#define IC_SVC_WIRE_STRINGS_H
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

enum {
  WIRE_STRINGS_OK = 0,
  WIRE_STRINGS_BAD_UTF8 = 1,
  WIRE_STRINGS_NUL = 2,
  WIRE_STRINGS_TOO_LONG = 3
};

/* Walks the message (nested messages and map entries too, by the descriptor). Returns
 * WIRE_STRINGS_BAD_UTF8 when any string field is not valid UTF-8 (what Go's proto decoder
 * rejects, so it wins wherever it occurs), else WIRE_STRINGS_NUL when one holds a U+0000 byte,
 * else WIRE_STRINGS_TOO_LONG when an identity field (replica_id, model_id, tenant_id,
 * hash_scheme, adapter_id) is longer than max_identity bytes (0 = no bound), else OK; *field =
 * the offending field's name. Malformed encodings return OK: the unpack that follows reports
 * them. */
int wire_strings_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                       size_t max_identity, const char **field);

#endif
