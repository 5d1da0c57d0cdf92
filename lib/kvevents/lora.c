/* lib/kvevents LoRA adapter names: parses --lora-adapter-names "id=name,..." into a
 * small id -> name map. A handful of adapters per engine: a linear array is the right size. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/kvevents.h"

typedef struct lora_item {
  int64_t id;
  char *name;
} lora_item_t;

struct ic_kv_lora_map {
  lora_item_t *v;
  size_t n;
};

void ic_kv_lora_map_free(ic_kv_lora_map_t *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n; i++)
    free(m->v[i].name);
  free(m->v);
  free(m);
}

const char *ic_kv_lora_map_get(const ic_kv_lora_map_t *m, int64_t id) {
  if (!m) return NULL;
  for (size_t i = 0; i < m->n; i++)
    if (m->v[i].id == id) return m->v[i].name;
  return NULL;
}

size_t ic_kv_lora_map_size(const ic_kv_lora_map_t *m) { return m ? m->n : 0; }

/* Trims spaces in place on [*s, *e). */
static void trim(const char **s, const char **e) {
  while (*s < *e && isspace((unsigned char)**s))
    (*s)++;
  while (*e > *s && isspace((unsigned char)(*e)[-1]))
    (*e)--;
}

ic_kv_lora_map_t *ic_kv_lora_map_parse(const char *str, char *err, size_t errlen) {
  ic_kv_lora_map_t *m = calloc(1, sizeof(*m));
  if (!m) {
    if (err) snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (!str) return m;
  const char *p = str;
  while (*p) {
    const char *comma = strchr(p, ',');
    const char *e = comma ? comma : p + strlen(p);
    const char *s = p;
    p = comma ? comma + 1 : e;
    trim(&s, &e);
    if (s == e) continue;
    int ilen = (int)(e - s);
    const char *eq = memchr(s, '=', (size_t)(e - s));
    if (!eq) {
      if (err) snprintf(err, errlen, "adapter names: \"%.*s\" is not id=name", ilen, s);
      goto fail;
    }
    const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
    trim(&ks, &ke);
    trim(&vs, &ve);
    char num[32];
    size_t kl = (size_t)(ke - ks);
    char *end = NULL;
    errno = 0;
    long long id = 0;
    if (kl > 0 && kl < sizeof(num)) {
      memcpy(num, ks, kl);
      num[kl] = 0;
      id = strtoll(num, &end, 10);
    }
    if (kl == 0 || kl >= sizeof(num) || errno || !end || *end) {
      if (err)
        snprintf(err, errlen, "adapter names: \"%.*s\" has a non-integer lora id: %.*s", ilen, s,
                 (int)kl, ks);
      goto fail;
    }
    if (vs == ve) {
      if (err) snprintf(err, errlen, "adapter names: \"%.*s\" has an empty adapter name", ilen, s);
      goto fail;
    }
    if (ic_kv_lora_map_get(m, id)) {
      if (err) snprintf(err, errlen, "adapter names: lora id %lld mapped more than once", id);
      goto fail;
    }
    lora_item_t *nv = realloc(m->v, (m->n + 1) * sizeof(*nv));
    if (!nv) goto oom;
    m->v = nv;
    m->v[m->n].id = id;
    m->v[m->n].name = strndup(vs, (size_t)(ve - vs));
    if (!m->v[m->n].name) goto oom;
    m->n++;
  }
  return m;
oom:
  if (err) snprintf(err, errlen, "out of memory");
fail:
  ic_kv_lora_map_free(m);
  return NULL;
}
