/* Server reflection (grpc.reflection.v1alpha and v1 — identical on the wire, so both are served
 * with the v1alpha message types) answered from a serialized FileDescriptorSet embedded at
 * build time. The set is indexed once: file names, dependencies and every fully-qualified
 * symbol (messages, nested messages, enums, services, methods) -> file. */
#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "ic/err.h"
#include "rpc_internal.h"

typedef struct rfile {
  char *name;
  const uint8_t *bytes; /* points into the descriptor set */
  size_t len;
  char **deps;
  size_t ndeps;
} rfile_t;

typedef struct rsym {
  char *name;
  size_t file;
  bool service;
} rsym_t;

struct ic_rpc_reflection {
  rfile_t *files;
  size_t nfiles;
  rsym_t *syms;
  size_t nsyms, capsyms;
};

/* --- minimal protobuf wire walker (only what descriptors need) --- */
typedef struct {
  const uint8_t *p, *end;
} rd_t;

static int rd_varint(rd_t *r, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) return -1;
    uint8_t b = *r->p++;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return *v = x, 0;
  }
  return -1;
}

/* Next field: *field, *wt; for length-delimited fields data and len. Returns 1, 0 at end, -1 bad. */
static int rd_field(rd_t *r, uint32_t *field, int *wt, const uint8_t **data, size_t *len) {
  if (r->p >= r->end) return 0;
  uint64_t key, v;
  if (rd_varint(r, &key)) return -1;
  *field = (uint32_t)(key >> 3);
  *wt = (int)(key & 7);
  switch (*wt) {
  case 0: return rd_varint(r, &v) ? -1 : 1;
  case 1: if (r->end - r->p < 8) return -1; r->p += 8; return 1;
  case 5: if (r->end - r->p < 4) return -1; r->p += 4; return 1;
  case 2:
    if (rd_varint(r, &v) || v > (uint64_t)(r->end - r->p)) return -1;
    *data = r->p;
    *len = (size_t)v;
    r->p += v;
    return 1;
  default: return -1;
  }
}

static char *dupn(const uint8_t *p, size_t n) {
  char *s = malloc(n + 1);
  if (s) memcpy(s, p, n), s[n] = '\0';
  return s;
}

static char *join(const char *prefix, const uint8_t *name, size_t n) {
  size_t pl = prefix && *prefix ? strlen(prefix) : 0;
  char *s = malloc(pl + 1 + n + 1);
  if (!s) return NULL;
  size_t o = 0;
  if (pl) memcpy(s, prefix, pl), s[pl] = '.', o = pl + 1;
  memcpy(s + o, name, n);
  s[o + n] = '\0';
  return s;
}

static void add_sym(ic_rpc_reflection_t *r, char *name, size_t file, bool service) {
  if (!name) return;
  if (r->nsyms == r->capsyms) {
    size_t nc = r->capsyms ? r->capsyms * 2 : 64;
    rsym_t *ns = realloc(r->syms, nc * sizeof *ns);
    if (!ns) return free(name);
    r->syms = ns;
    r->capsyms = nc;
  }
  r->syms[r->nsyms++] = (rsym_t){name, file, service};
}

/* Name (field 1) of a DescriptorProto / EnumDescriptorProto / ServiceDescriptorProto. */
static int msg_name(const uint8_t *p, size_t n, const uint8_t **name, size_t *nl) {
  rd_t r = {p, p + n};
  uint32_t f;
  int wt, rc;
  const uint8_t *d;
  size_t l;
  while ((rc = rd_field(&r, &f, &wt, &d, &l)) == 1)
    if (f == 1 && wt == 2) return *name = d, *nl = l, 0;
  return -1;
}

/* DescriptorProto: nested_type = 3, enum_type = 4. Depth-limited against hostile input. */
static void index_message(ic_rpc_reflection_t *r, const char *scope, const uint8_t *p, size_t n,
                          size_t file, int depth) {
  const uint8_t *nm;
  size_t nl;
  if (depth > 32 || msg_name(p, n, &nm, &nl)) return;
  char *full = join(scope, nm, nl);
  if (!full) return;
  add_sym(r, strdup(full), file, false);
  rd_t rd = {p, p + n};
  uint32_t f;
  int wt;
  const uint8_t *d;
  size_t l;
  while (rd_field(&rd, &f, &wt, &d, &l) == 1) {
    if (wt != 2) continue;
    if (f == 3) index_message(r, full, d, l, file, depth + 1);
    else if (f == 4 && msg_name(d, l, &nm, &nl) == 0) add_sym(r, join(full, nm, nl), file, false);
  }
  free(full);
}

static int index_file(ic_rpc_reflection_t *r, const uint8_t *p, size_t n) {
  rfile_t *nf = realloc(r->files, (r->nfiles + 1) * sizeof *nf);
  if (!nf) return IC_ENOMEM;
  r->files = nf;
  size_t fi = r->nfiles++;
  rfile_t *file = &r->files[fi];
  memset(file, 0, sizeof *file);
  file->bytes = p;
  file->len = n;
  char *pkg = NULL;
  rd_t rd = {p, p + n};
  uint32_t f;
  int wt, rc;
  const uint8_t *d;
  size_t l;
  /* Package first (field order in a serialized descriptor is not guaranteed). */
  while ((rc = rd_field(&rd, &f, &wt, &d, &l)) == 1) {
    if (wt != 2) continue;
    if (f == 1 && !file->name) file->name = dupn(d, l);
    else if (f == 2 && !pkg) pkg = dupn(d, l);
    else if (f == 3) {
      char **nd = realloc(file->deps, (file->ndeps + 1) * sizeof *nd);
      if (nd) file->deps = nd, file->deps[file->ndeps++] = dupn(d, l);
    }
  }
  if (rc < 0 || !file->name) {
    free(pkg);
    return IC_EINVAL;
  }
  rd = (rd_t){p, p + n};
  while (rd_field(&rd, &f, &wt, &d, &l) == 1) {
    if (wt != 2) continue;
    const uint8_t *nm;
    size_t nl;
    if (f == 4) index_message(r, pkg, d, l, fi, 0);
    else if (f == 5 && msg_name(d, l, &nm, &nl) == 0) add_sym(r, join(pkg, nm, nl), fi, false);
    else if (f == 6 && msg_name(d, l, &nm, &nl) == 0) {
      char *svc = join(pkg, nm, nl);
      if (!svc) continue;
      add_sym(r, strdup(svc), fi, true);
      rd_t sr = {d, d + l};
      uint32_t sf;
      int swt;
      const uint8_t *md;
      size_t ml;
      while (rd_field(&sr, &sf, &swt, &md, &ml) == 1)
        if (sf == 2 && swt == 2 && msg_name(md, ml, &nm, &nl) == 0) add_sym(r, join(svc, nm, nl), fi, false);
      free(svc);
    }
  }
  free(pkg);
  return 0;
}

void ic_rpc_reflection_free(ic_rpc_reflection_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->nfiles; i++) {
    free(r->files[i].name);
    for (size_t j = 0; j < r->files[i].ndeps; j++) free(r->files[i].deps[j]);
    free(r->files[i].deps);
  }
  for (size_t i = 0; i < r->nsyms; i++) free(r->syms[i].name);
  free(r->files);
  free(r->syms);
  free(r);
}

ic_rpc_reflection_t *ic_rpc_reflection_new(const uint8_t *fdset, size_t len) {
  ic_rpc_reflection_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  rd_t rd = {fdset, fdset + len};
  uint32_t f;
  int wt, rc;
  const uint8_t *d;
  size_t l;
  while ((rc = rd_field(&rd, &f, &wt, &d, &l)) == 1)
    if (f == 1 && wt == 2 && index_file(r, d, l) != 0) rc = -1;
  if (rc < 0) {
    ic_rpc_reflection_free(r);
    return NULL;
  }
  return r;
}

static long find_file(const ic_rpc_reflection_t *r, const char *name) {
  for (size_t i = 0; i < r->nfiles; i++)
    if (strcmp(r->files[i].name, name) == 0) return (long)i;
  return -1;
}

static long find_symbol(const ic_rpc_reflection_t *r, const char *name) {
  if (name[0] == '.') name++;
  for (size_t i = 0; i < r->nsyms; i++)
    if (strcmp(r->syms[i].name, name) == 0) return (long)r->syms[i].file;
  return -1;
}

/* Adds file fi and its transitive dependencies (each once) to the list. */
static void collect(const ic_rpc_reflection_t *r, size_t fi, bool *seen, size_t *order, size_t *n,
                    int depth) {
  if (seen[fi] || depth > 64) return;
  seen[fi] = true;
  order[(*n)++] = fi;
  for (size_t j = 0; j < r->files[fi].ndeps; j++) {
    long d = find_file(r, r->files[fi].deps[j]);
    if (d >= 0) collect(r, (size_t)d, seen, order, n, depth + 1);
  }
}

int ic_rpc_reflection_answer(ic_rpc_reflection_t *r, const uint8_t *req, size_t len, ic_buf_t *out) {
  Grpc__Reflection__V1alpha__ServerReflectionRequest *q =
      grpc__reflection__v1alpha__server_reflection_request__unpack(NULL, len, req);
  if (!q) return IC_EINVAL;
  Grpc__Reflection__V1alpha__ServerReflectionResponse resp = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__FileDescriptorResponse fdr = GRPC__REFLECTION__V1ALPHA__FILE_DESCRIPTOR_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__ListServiceResponse lsr = GRPC__REFLECTION__V1ALPHA__LIST_SERVICE_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__ExtensionNumberResponse enr = GRPC__REFLECTION__V1ALPHA__EXTENSION_NUMBER_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__ErrorResponse er = GRPC__REFLECTION__V1ALPHA__ERROR_RESPONSE__INIT;
  resp.valid_host = q->host;
  resp.original_request = q;
  bool *seen = calloc(r->nfiles + 1, sizeof *seen);
  size_t *order = calloc(r->nfiles + 1, sizeof *order);
  ProtobufCBinaryData *fds = calloc(r->nfiles + 1, sizeof *fds);
  Grpc__Reflection__V1alpha__ServiceResponse *svcs = calloc(r->nsyms + 1, sizeof *svcs);
  Grpc__Reflection__V1alpha__ServiceResponse **svcp = calloc(r->nsyms + 1, sizeof *svcp);
  int rc = 0;
  if (!seen || !order || !fds || !svcs || !svcp) {
    rc = IC_ENOMEM;
    goto out;
  }
  long fi = -1;
  const char *what = NULL;
  switch (q->message_request_case) {
  case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
    fi = find_file(r, q->file_by_filename);
    what = "file not found";
    break;
  case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
    fi = find_symbol(r, q->file_containing_symbol);
    what = "symbol not found";
    break;
  case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES: {
    size_t n = 0;
    for (size_t i = 0; i < r->nsyms; i++)
      if (r->syms[i].service) {
        Grpc__Reflection__V1alpha__ServiceResponse init = GRPC__REFLECTION__V1ALPHA__SERVICE_RESPONSE__INIT;
        svcs[n] = init;
        svcs[n].name = r->syms[i].name;
        svcp[n] = &svcs[n];
        n++;
      }
    lsr.n_service = n;
    lsr.service = svcp;
    resp.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    resp.list_services_response = &lsr;
    break;
  }
  case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
    if (find_symbol(r, q->all_extension_numbers_of_type) >= 0) {
      enr.base_type_name = q->all_extension_numbers_of_type;
      resp.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
      resp.all_extension_numbers_response = &enr;
    } else {
      what = "type not found";
    }
    break;
  case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
    what = "extension not found";
    break;
  default:
    er.error_code = IC_RPC_INVALID_ARGUMENT;
    er.error_message = "invalid MessageRequest";
    resp.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    resp.error_response = &er;
    break;
  }
  if (fi >= 0) {
    size_t n = 0;
    collect(r, (size_t)fi, seen, order, &n, 0);
    for (size_t i = 0; i < n; i++)
      fds[i] = (ProtobufCBinaryData){r->files[order[i]].len, (uint8_t *)r->files[order[i]].bytes};
    fdr.n_file_descriptor_proto = n;
    fdr.file_descriptor_proto = fds;
    resp.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    resp.file_descriptor_response = &fdr;
  } else if (resp.message_response_case == GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET) {
    er.error_code = IC_RPC_NOT_FOUND;
    er.error_message = (char *)(what ? what : "not found");
    resp.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    resp.error_response = &er;
  }
  size_t sz = grpc__reflection__v1alpha__server_reflection_response__get_packed_size(&resp);
  if (ic_buf_reserve(out, sz)) {
    rc = IC_ENOMEM;
    goto out;
  }
  grpc__reflection__v1alpha__server_reflection_response__pack(&resp, (uint8_t *)out->data + out->len);
  out->len += sz;
out:
  free(seen);
  free(order);
  free(fds);
  free(svcs);
  free(svcp);
  grpc__reflection__v1alpha__server_reflection_request__free_unpacked(q, NULL);
  return rc;
}

static int refl_msg(void *ud, ic_rpc_call_t *call, const uint8_t *msg, size_t len) {
  ic_buf_t out = IC_BUF_INIT;
  int rc = ic_rpc_reflection_answer(ud, msg, len, &out);
  if (rc == 0) ic_rpc_stream_send(call, (const uint8_t *)(out.data ? out.data : ""), out.len);
  ic_buf_free(&out);
  return rc == IC_EINVAL ? IC_RPC_INTERNAL : IC_RPC_OK;
}

static int refl_end(void *ud, ic_rpc_call_t *call, int status, ic_buf_t *resp) {
  (void)ud, (void)call, (void)resp;
  return status;
}

int ic_rpc_reflection_register(ic_rpc_server_t *s, ic_rpc_reflection_t *r) {
  static const ic_rpc_stream_handler_t h = {.on_msg = refl_msg, .on_end = refl_end};
  int rc = ic_rpc_server_add_stream(s, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                    IC_RPC_BIDI, &h, r);
  if (rc) return rc;
  return ic_rpc_server_add_stream(s, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                  IC_RPC_BIDI, &h, r);
}
