/* lib/svc: string-field check on the wire form of a protobuf message (UTF-8, embedded NUL),
 * driven by protobuf-c's descriptors so every message and nested field is covered. */
#include "wire_strings.h"

#include <stdbool.h>
#include <string.h>

#include "ic/svc.h"

#define MAX_DEPTH 32

static bool varint(const uint8_t **p, const uint8_t *e, uint64_t *v) {
  uint64_t r = 0;
  for (int s = 0; s < 64 && *p < e; s += 7) {
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << s;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

static bool is_identity(const char *name) {
  static const char *const ids[] = {"replica_id", "model_id", "tenant_id", "hash_scheme",
                                    "adapter_id"};
  for (size_t i = 0; i < sizeof ids / sizeof *ids; i++)
    if (strcmp(name, ids[i]) == 0) return true;
  return false;
}

/* Severity of a finding: BAD_UTF8 > NUL > TOO_LONG > OK. */
static int rank(int w) {
  return w == WIRE_STRINGS_BAD_UTF8 ? 3 : w == WIRE_STRINGS_NUL ? 2 : w == WIRE_STRINGS_TOO_LONG;
}

static void walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *e, int depth,
                 size_t max_id, int *worst, const char **field) {
  while (p < e && *worst != WIRE_STRINGS_BAD_UTF8) {
    uint64_t tag, n;
    if (!varint(&p, e, &tag)) return;
    switch (tag & 7) {
    case 0:
      if (!varint(&p, e, &n)) return;
      continue;
    case 1:
      if (e - p < 8) return;
      p += 8;
      continue;
    case 5:
      if (e - p < 4) return;
      p += 4;
      continue;
    case 2: break;
    default: return; /* groups or junk: left to the unpack */
    }
    if (!varint(&p, e, &n) || n > (uint64_t)(e - p)) return;
    const uint8_t *v = p;
    p += n;
    uint64_t num = tag >> 3;
    const ProtobufCFieldDescriptor *f =
        d && num <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)num) : NULL;
    if (!f) continue;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
      if (!ic_svc_utf8_valid((const char *)v, n)) {
        *worst = WIRE_STRINGS_BAD_UTF8;
        return;
      }
      int found = memchr(v, 0, n)                                ? WIRE_STRINGS_NUL
                  : max_id && n > max_id && is_identity(f->name) ? WIRE_STRINGS_TOO_LONG
                                                                 : WIRE_STRINGS_OK;
      if (rank(found) > rank(*worst)) {
        *worst = found;
        *field = f->name;
      }
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth < MAX_DEPTH) {
      walk(f->descriptor, v, v + n, depth + 1, max_id, worst, field);
    }
  }
}

int wire_strings_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                       size_t max_identity, const char **field) {
  int worst = WIRE_STRINGS_OK;
  const char *f = NULL;
  if (buf && len) walk(d, buf, buf + len, 0, max_identity, &worst, &f);
  if (field) *field = f;
  return worst;
}
