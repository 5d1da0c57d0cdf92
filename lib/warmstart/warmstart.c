/* lib/warmstart: readiness of a new server replica (see include/ic/warmstart.h, docs/ha.md).
 * Three string sets (window-seen replica ids, synced keys, controller pod names) and two pending
 * counters, so every report and the readiness check cost O(1). */
#include "ic/warmstart.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"

/* ---- a small open-addressing string set with one flag per entry ---------------------------- */

typedef struct sset {
  char **keys;
  unsigned char *flag;
  size_t cap, n;
} sset_t;

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* Slot of key (present or where it would go); cap > 0. */
static size_t sset_slot(const sset_t *s, const char *key) {
  size_t i = hash_str(key) & (s->cap - 1);
  while (s->keys[i] && strcmp(s->keys[i], key) != 0)
    i = (i + 1) & (s->cap - 1);
  return i;
}

static unsigned char *sset_find(const sset_t *s, const char *key) {
  if (!s->cap) return NULL;
  size_t i = sset_slot(s, key);
  return s->keys[i] ? &s->flag[i] : NULL;
}

static int sset_grow(sset_t *s) {
  size_t ncap = s->cap ? s->cap * 2 : 64;
  sset_t t = {calloc(ncap, sizeof(char *)), calloc(ncap, 1), ncap, 0};
  if (!t.keys || !t.flag) {
    free(t.keys);
    free(t.flag);
    return IC_ENOMEM;
  }
  for (size_t i = 0; i < s->cap; i++)
    if (s->keys[i]) {
      size_t j = sset_slot(&t, s->keys[i]);
      t.keys[j] = s->keys[i];
      t.flag[j] = s->flag[i];
      t.n++;
    }
  free(s->keys);
  free(s->flag);
  *s = t;
  return 0;
}

/* Inserts key (flag = f) when absent. Returns the entry's flag, or NULL (full or no memory). */
static unsigned char *sset_add(sset_t *s, const char *key, unsigned char f, bool *added) {
  *added = false;
  unsigned char *have = sset_find(s, key);
  if (have) return have;
  if (s->n >= IC_WARMSTART_MAX_REPORTERS) return NULL;
  if ((s->n + 1) * 10 >= s->cap * 7 && sset_grow(s)) return NULL;
  size_t i = sset_slot(s, key);
  if (!(s->keys[i] = strdup(key))) return NULL;
  s->flag[i] = f;
  s->n++;
  *added = true;
  return &s->flag[i];
}

static void sset_free(sset_t *s) {
  for (size_t i = 0; i < s->cap; i++)
    free(s->keys[i]);
  free(s->keys);
  free(s->flag);
  memset(s, 0, sizeof(*s));
}

/* ---- warm start ------------------------------------------------------------------------------ */

struct ic_warmstart {
  pthread_mutex_t mu;
  atomic_bool ready;
  int64_t start_us, window_us, timeout_us;
  int64_t ready_after_us;
  const char *reason;
  sset_t seen; /* replica ids heard within the window; flag: synced */
  sset_t keys; /* every synced replica id and its "-dp<N>"-less base */
  sset_t ctl;  /* controller pod names; flag: satisfied */
  size_t pending_seen, pending_ctl;
  bool have_ctl;
  uint64_t ignored;
};

ic_warmstart_t *ic_warmstart_new(int64_t start_us, int64_t window_us, int64_t timeout_us) {
  ic_warmstart_t *w = calloc(1, sizeof(*w));
  if (!w) return NULL;
  pthread_mutex_init(&w->mu, NULL);
  w->start_us = start_us;
  w->timeout_us = timeout_us;
  w->window_us = window_us < 0 ? 0 : window_us > timeout_us ? timeout_us : window_us;
  w->ready_after_us = -1;
  w->reason = "waiting";
  if (timeout_us <= 0) {
    atomic_store(&w->ready, true);
    w->ready_after_us = 0;
    w->reason = "disabled";
  }
  return w;
}

void ic_warmstart_free(ic_warmstart_t *w) {
  if (!w) return;
  sset_free(&w->seen);
  sset_free(&w->keys);
  sset_free(&w->ctl);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

/* "<pod>-dp<digits>" -> length of "<pod>", else 0. */
static size_t dp_base_len(const char *id) {
  size_t n = strlen(id), k = n;
  while (k > 0 && id[k - 1] >= '0' && id[k - 1] <= '9')
    k--;
  if (k == n || k < 4 || strncmp(id + k - 3, "-dp", 3) != 0) return 0;
  return k - 3;
}

static void satisfy_ctl(ic_warmstart_t *w, const char *key) {
  unsigned char *f = sset_find(&w->ctl, key);
  if (f && !*f) {
    *f = 1;
    w->pending_ctl--;
  }
}

static void count_ignored(ic_warmstart_t *w, bool added, unsigned char *f) {
  if (!f && !added) w->ignored++;
}

void ic_warmstart_heard(ic_warmstart_t *w, const char *replica_id, bool full_state,
                        int64_t now_us) {
  if (!w || !replica_id || atomic_load_explicit(&w->ready, memory_order_acquire)) return;
  pthread_mutex_lock(&w->mu);
  bool added;
  if (now_us - w->start_us < w->window_us) {
    unsigned char *f = sset_add(&w->seen, replica_id, 0, &added);
    count_ignored(w, added, f);
    if (added) w->pending_seen++;
    if (f && full_state && !*f) {
      *f = 1;
      w->pending_seen--;
    }
  } else if (full_state) {
    unsigned char *f = sset_find(&w->seen, replica_id);
    if (f && !*f) {
      *f = 1;
      w->pending_seen--;
    }
  }
  if (full_state) {
    count_ignored(w, false, sset_add(&w->keys, replica_id, 1, &added));
    satisfy_ctl(w, replica_id);
    size_t bl = dp_base_len(replica_id);
    if (bl) {
      char *base = strndup(replica_id, bl);
      if (base) {
        count_ignored(w, false, sset_add(&w->keys, base, 1, &added));
        satisfy_ctl(w, base);
        free(base);
      }
    }
  }
  pthread_mutex_unlock(&w->mu);
}

char **ic_warmstart_parse_reporters(const char *body, size_t len, size_t *n, char *err,
                                    size_t errlen) {
  *n = 0;
  json_error_t je;
  json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    snprintf(err, errlen, "invalid JSON: %s", je.text);
    return NULL;
  }
  char **out = NULL;
  json_t *arr = json_is_object(root) ? json_object_get(root, "replicas") : NULL;
  if (!json_is_object(root)) {
    snprintf(err, errlen, "body must be a JSON object");
  } else if (!json_is_array(arr)) {
    snprintf(err, errlen, "\"replicas\" must be an array of strings");
  } else if (json_array_size(arr) > IC_WARMSTART_MAX_REPORTERS) {
    snprintf(err, errlen, "\"replicas\" has more than %d entries", IC_WARMSTART_MAX_REPORTERS);
  } else {
    size_t m = json_array_size(arr);
    out = calloc(m + 1, sizeof(char *));
    if (!out) snprintf(err, errlen, "out of memory");
    for (size_t i = 0; out && i < m; i++) {
      json_t *v = json_array_get(arr, i);
      const char *s = json_string_value(v);
      if (!s || !*s || strlen(s) != json_string_length(v)) {
        snprintf(err, errlen, "\"replicas\"[%zu] must be a non-empty string without NUL", i);
        ic_warmstart_names_free(out);
        out = NULL;
      } else if (!(out[i] = strdup(s))) {
        snprintf(err, errlen, "out of memory");
        ic_warmstart_names_free(out);
        out = NULL;
      }
    }
    if (out) *n = m;
  }
  json_decref(root);
  return out;
}

void ic_warmstart_names_free(char **names) {
  if (!names) return;
  for (char **p = names; *p; p++)
    free(*p);
  free(names);
}

int ic_warmstart_set_reporters(ic_warmstart_t *w, const char *const *names, size_t n) {
  if (!w) return IC_EINVAL;
  pthread_mutex_lock(&w->mu);
  sset_free(&w->ctl);
  w->pending_ctl = 0;
  w->have_ctl = true;
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    bool added;
    unsigned char *f = sset_add(&w->ctl, names[i], sset_find(&w->keys, names[i]) ? 1 : 0, &added);
    if (!f) {
      w->ignored++;
      rc = w->ctl.n >= IC_WARMSTART_MAX_REPORTERS ? 0 : IC_ENOMEM;
      continue;
    }
    if (added && !*f) w->pending_ctl++;
  }
  pthread_mutex_unlock(&w->mu);
  return rc;
}

/* Caller holds mu. */
static bool evaluate(ic_warmstart_t *w, int64_t now_us) {
  if (atomic_load(&w->ready)) return true;
  int64_t el = now_us - w->start_us;
  const char *why = NULL;
  if (el >= w->timeout_us)
    why = "timeout";
  else if ((el >= w->window_us || w->have_ctl) && w->pending_seen == 0 && w->pending_ctl == 0)
    why = "complete";
  if (!why) return false;
  w->reason = why;
  w->ready_after_us = el;
  atomic_store_explicit(&w->ready, true, memory_order_release);
  return true;
}

bool ic_warmstart_ready(ic_warmstart_t *w, int64_t now_us) {
  if (!w) return true;
  if (atomic_load_explicit(&w->ready, memory_order_acquire)) return true;
  pthread_mutex_lock(&w->mu);
  bool r = evaluate(w, now_us);
  pthread_mutex_unlock(&w->mu);
  return r;
}

static void progress_locked(ic_warmstart_t *w, int64_t now_us, ic_warmstart_progress_t *o) {
  memset(o, 0, sizeof(*o));
  o->ready = evaluate(w, now_us);
  o->reason = w->reason;
  /* A controller pod that is also a window-seen id is one reporter, counted once. */
  size_t ctl_only = 0, ctl_only_synced = 0;
  for (size_t i = 0; i < w->ctl.cap; i++)
    if (w->ctl.keys[i] && !sset_find(&w->seen, w->ctl.keys[i])) {
      ctl_only++;
      ctl_only_synced += w->ctl.flag[i];
    }
  o->expected = w->seen.n + ctl_only;
  o->synced = w->seen.n - w->pending_seen + ctl_only_synced;
  o->controller_list = w->have_ctl;
  o->elapsed_us = now_us - w->start_us;
  o->ready_after_us = w->ready_after_us;
  o->window_left_us = w->window_us - o->elapsed_us > 0 ? w->window_us - o->elapsed_us : 0;
  o->timeout_left_us = w->timeout_us - o->elapsed_us > 0 ? w->timeout_us - o->elapsed_us : 0;
  o->ignored = w->ignored;
}

void ic_warmstart_progress(ic_warmstart_t *w, int64_t now_us, ic_warmstart_progress_t *out) {
  pthread_mutex_lock(&w->mu);
  progress_locked(w, now_us, out);
  pthread_mutex_unlock(&w->mu);
}

int ic_warmstart_describe(ic_warmstart_t *w, int64_t now_us, ic_buf_t *out) {
  pthread_mutex_lock(&w->mu);
  ic_warmstart_progress_t p;
  progress_locked(w, now_us, &p);
  int rc;
  if (p.ready) {
    rc = ic_buf_appendf(out, "ready (%s after %.1fs): %zu/%zu reporters sent their full state",
                        p.reason, (double)p.ready_after_us / 1e6, p.synced, p.expected);
  } else {
    rc = ic_buf_appendf(out,
                        "warming up: %zu/%zu reporters sent their full state; discovery window "
                        "%.1fs left%s; ready at the latest in %.1fs",
                        p.synced, p.expected, (double)p.window_left_us / 1e6,
                        p.controller_list ? " (controller list received)" : "",
                        (double)p.timeout_left_us / 1e6);
    int shown = 0;
    const sset_t *sets[2] = {&w->seen, &w->ctl};
    for (int k = 0; k < 2 && !rc; k++)
      for (size_t i = 0; i < sets[k]->cap && shown < 5 && !rc; i++)
        if (sets[k]->keys[i] && !sets[k]->flag[i])
          rc = ic_buf_appendf(out, "%s%s", shown++ ? ", " : "; waiting for: ", sets[k]->keys[i]);
  }
  pthread_mutex_unlock(&w->mu);
  return rc;
}
