/* RFC 6902 JSON Patch generation (minimal diff of two documents) and base64 for the
 * AdmissionReview `patch` field. The diff is structural, so an unchanged Pod gives []. */
#include <stdlib.h>
#include <string.h>

#include "ic/admission.h"
#include "ic/buf.h"
#include "internal.h"

/* JSON Pointer token escaping: "~" -> "~0", "/" -> "~1". */
static void ptr_append(ic_buf_t *b, const char *tok) {
  ic_buf_append_byte(b, '/');
  for (const char *p = tok; *p; p++) {
    if (*p == '~')
      ic_buf_append_str(b, "~0");
    else if (*p == '/')
      ic_buf_append_str(b, "~1");
    else
      ic_buf_append_byte(b, *p);
  }
}

static int add_op(json_t *ops, const char *op, const char *path, const json_t *value) {
  json_t *o = json_object();
  if (!o) return -1;
  json_object_set_new(o, "op", json_string(op));
  json_object_set_new(o, "path", json_string(path));
  if (value) json_object_set_new(o, "value", json_deep_copy(value));
  return json_array_append_new(ops, o);
}

static int diff(json_t *ops, ic_buf_t *path, const json_t *a, const json_t *b) {
  if (json_equal(a, b)) return 0;
  size_t mark = path->len;
  int rc = 0;
  if (json_is_object(a) && json_is_object(b)) {
    const char *k;
    const json_t *va;
    /* removals first, in the source order, then changes and additions in target order */
    json_object_foreach((json_t *)a, k, va) {
      if (!json_object_get(b, k)) {
        ptr_append(path, k);
        rc |= add_op(ops, "remove", path->data, NULL);
        path->len = mark, path->data[mark] = 0;
      }
    }
    const json_t *vb;
    json_object_foreach((json_t *)b, k, vb) {
      ptr_append(path, k);
      const json_t *old = json_object_get(a, k);
      if (!old)
        rc |= add_op(ops, "add", path->data, vb);
      else
        rc |= diff(ops, path, old, vb);
      path->len = mark, path->data[mark] = 0;
    }
    return rc;
  }
  if (json_is_array(a) && json_is_array(b)) {
    size_t na = json_array_size(a), nb = json_array_size(b);
    size_t common = na < nb ? na : nb;
    bool prefix_equal = true;
    for (size_t i = 0; i < common && prefix_equal; i++)
      prefix_equal = json_equal(json_array_get(a, i), json_array_get(b, i));
    if (na == nb || (prefix_equal && nb > na)) {
      char idx[32];
      for (size_t i = 0; i < common; i++) {
        snprintf(idx, sizeof idx, "%zu", i);
        ptr_append(path, idx);
        rc |= diff(ops, path, json_array_get(a, i), json_array_get(b, i));
        path->len = mark, path->data[mark] = 0;
      }
      for (size_t i = na; i < nb; i++) {
        ptr_append(path, "-");
        rc |= add_op(ops, "add", path->data, json_array_get(b, i));
        path->len = mark, path->data[mark] = 0;
      }
      return rc;
    }
  }
  return add_op(ops, "replace", path->len ? path->data : "", b);
}

json_t *ic_admission_json_patch(const json_t *from, const json_t *to) {
  json_t *ops = json_array();
  if (!ops) return NULL;
  ic_buf_t path = IC_BUF_INIT;
  ic_buf_append_str(&path, "");
  if (!path.data || diff(ops, &path, from, to) != 0) {
    ic_buf_free(&path);
    json_decref(ops);
    return NULL;
  }
  ic_buf_free(&path);
  return ops;
}

char *adm_base64(const char *in, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned char)in[i] << 16;
    if (i + 1 < n) v |= (unsigned char)in[i + 1] << 8;
    if (i + 2 < n) v |= (unsigned char)in[i + 2];
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
    out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? tbl[v & 63] : '=';
  }
  out[o] = 0;
  return out;
}
