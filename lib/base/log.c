/* JSON-lines / text logger. Global level and format are process settings (set once at startup);
 * each record is formatted into a local buffer and written with one write(2) so lines from
 * concurrent threads never interleave. */
#include "ic/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ic/buf.h"
#include "ic/err.h"

static _Atomic int g_level = IC_LOG_INFO;
static _Atomic int g_format = IC_LOG_FMT_JSON;
static _Atomic int g_fd = 2;

static const char *const LEVEL_NAMES[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void ic_log_set_level(ic_log_level_t level) { atomic_store(&g_level, (int)level); }
ic_log_level_t ic_log_get_level(void) { return (ic_log_level_t)atomic_load(&g_level); }
void ic_log_set_format(ic_log_format_t fmt) { atomic_store(&g_format, (int)fmt); }
void ic_log_set_fd(int fd) { atomic_store(&g_fd, fd); }
bool ic_log_enabled(ic_log_level_t level) { return (int)level >= atomic_load(&g_level); }

int ic_log_parse_level(const char *s, ic_log_level_t *out) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++)
    if (s && strcasecmp(s, names[i]) == 0) return *out = (ic_log_level_t)i, 0;
  return IC_EINVAL;
}

int ic_log_parse_format(const char *s, ic_log_format_t *out) {
  if (s && strcasecmp(s, "json") == 0) return *out = IC_LOG_FMT_JSON, 0;
  if (s && strcasecmp(s, "text") == 0) return *out = IC_LOG_FMT_TEXT, 0;
  return IC_EINVAL;
}

/* RFC 3339 UTC timestamp; nanoseconds in JSON, milliseconds in text (as slog does). */
static void format_time(char *out, size_t cap, bool nanos) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  if (nanos)
    snprintf(out + n, cap - n, ".%09ldZ", ts.tv_nsec);
  else
    snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void append_text_value(ic_buf_t *b, const char *s) {
  bool quote = *s == '\0';
  for (const char *p = s; *p && !quote; p++)
    quote = *p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20;
  if (quote)
    ic_buf_append_json_str(b, s, strlen(s));
  else
    ic_buf_append_str(b, s);
}

static void append_field(ic_buf_t *b, const ic_log_field_t *f, bool json) {
  if (json) {
    ic_buf_append_byte(b, ',');
    ic_buf_append_json_str(b, f->key, strlen(f->key));
    ic_buf_append_byte(b, ':');
  } else {
    ic_buf_appendf(b, " %s=", f->key);
  }
  switch (f->type) {
  case IC_LF_STR: {
    const char *s = f->v.s ? f->v.s : "";
    if (json)
      ic_buf_append_json_str(b, s, strlen(s));
    else
      append_text_value(b, s);
    break;
  }
  case IC_LF_INT: ic_buf_appendf(b, "%lld", (long long)f->v.i); break;
  case IC_LF_DBL: ic_buf_appendf(b, "%.17g", f->v.d); break;
  case IC_LF_BOOL: ic_buf_append_str(b, f->v.b ? "true" : "false"); break;
  case IC_LF_END: break;
  }
}

void ic_log_emit(ic_log_level_t level, const char *msg, const ic_log_field_t *fields) {
  if (!ic_log_enabled(level)) return;
  bool json = atomic_load(&g_format) == IC_LOG_FMT_JSON;
  char ts[48];
  format_time(ts, sizeof ts, json);
  const char *lv = LEVEL_NAMES[level < 0 || level > 3 ? 1 : level];
  ic_buf_t b = IC_BUF_INIT;
  if (json) {
    ic_buf_appendf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", ts, lv);
    ic_buf_append_json_str(&b, msg, strlen(msg));
  } else {
    ic_buf_appendf(&b, "time=%s level=%s msg=", ts, lv);
    append_text_value(&b, msg);
  }
  for (const ic_log_field_t *f = fields; f && f->key; f++) append_field(&b, f, json);
  if (json) ic_buf_append_byte(&b, '}');
  ic_buf_append_byte(&b, '\n');
  if (b.data) {
    ssize_t off = 0;
    while (off < (ssize_t)b.len) {
      ssize_t w = write(atomic_load(&g_fd), b.data + off, b.len - (size_t)off);
      if (w <= 0) break;
      off += w;
    }
  }
  ic_buf_free(&b);
}
