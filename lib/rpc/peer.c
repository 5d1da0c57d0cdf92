/* lib/rpc: what a server call's peer presented — request metadata (e.g. the authorization
 * header) and the names of a verified TLS client certificate — for the handlers' auth checks. */
#include <grpc/grpc_security.h>
#include <stdio.h>
#include <string.h>

#include "ic/err.h"
#include "rpc_internal.h"

int ic_rpc_call_metadata(const ic_rpc_call_t *c, const char *key, char *out, size_t cap) {
  const grpc_metadata_array *md = ic_rpc_call_md(c);
  size_t klen = strlen(key);
  for (size_t i = 0; i < md->count; i++) {
    const grpc_slice *k = &md->metadata[i].key;
    if (GRPC_SLICE_LENGTH(*k) != klen || memcmp(GRPC_SLICE_START_PTR(*k), key, klen) != 0) continue;
    const grpc_slice *v = &md->metadata[i].value;
    size_t n = GRPC_SLICE_LENGTH(*v);
    if (n >= cap || memchr(GRPC_SLICE_START_PTR(*v), 0, n)) return IC_ERANGE;
    memcpy(out, GRPC_SLICE_START_PTR(*v), n);
    out[n] = 0;
    return (int)n;
  }
  return IC_ENOTFOUND;
}

static size_t visit_prop(grpc_auth_context *ctx, const char *name,
                         void (*visit)(void *, const char *), void *ud) {
  grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
  const grpc_auth_property *p;
  size_t n = 0;
  char buf[1024];
  while ((p = grpc_auth_property_iterator_next(&it)) != NULL) {
    if (!p->value || p->value_length == 0 || p->value_length >= sizeof buf ||
        memchr(p->value, 0, p->value_length))
      continue; /* a name with a NUL byte or absurd length can never be on an allowed list */
    memcpy(buf, p->value, p->value_length);
    buf[p->value_length] = 0;
    visit(ud, buf);
    n++;
  }
  return n;
}

size_t ic_rpc_call_peer_cert(const ic_rpc_call_t *c, void (*visit)(void *ud, const char *name),
                             void *ud) {
  grpc_call *call = ic_rpc_call_core(c);
  if (!call) return 0;
  grpc_auth_context *ctx = grpc_call_auth_context(call);
  if (!ctx) return 0;
  size_t n = 0;
  /* With the client CA configured the handshake fails on a certificate that does not chain to
   * it, so an authenticated SSL peer here is a verified one; plaintext peers have no x509
   * properties at all. */
  grpc_auth_property_iterator it =
      grpc_auth_context_find_properties_by_name(ctx, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
  const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
  bool ssl = p && p->value && p->value_length == strlen(GRPC_SSL_TRANSPORT_SECURITY_TYPE) &&
             memcmp(p->value, GRPC_SSL_TRANSPORT_SECURITY_TYPE, p->value_length) == 0;
  if (ssl && grpc_auth_context_peer_is_authenticated(ctx)) {
    n += visit_prop(ctx, GRPC_X509_CN_PROPERTY_NAME, visit, ud);
    n += visit_prop(ctx, GRPC_X509_SAN_PROPERTY_NAME, visit, ud);
  }
  grpc_auth_context_release(ctx);
  return n;
}
