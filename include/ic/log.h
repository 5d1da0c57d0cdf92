/* Structured logging (part of lib/base): one record per line on stderr, JSON by default
 * ({"time","level","msg",fields...}) or logfmt-like text. Thread-safe: a record is one write(2).
 *
 *   ic_log_info("startup", IC_LS("grpc_addr", addr), IC_LB("grpc_tls", false));
 *
 * Fields are typed so numbers stay numbers in JSON. The level check happens before any
 * formatting, so disabled records cost one comparison. */
#ifndef IC_LOG_H
#define IC_LOG_H
#include <stdbool.h>
#include <stdint.h>

typedef enum { IC_LOG_DEBUG = 0, IC_LOG_INFO = 1, IC_LOG_WARN = 2, IC_LOG_ERROR = 3 } ic_log_level_t;
typedef enum { IC_LOG_FMT_JSON = 0, IC_LOG_FMT_TEXT = 1 } ic_log_format_t;
typedef enum { IC_LF_END = 0, IC_LF_STR, IC_LF_INT, IC_LF_DBL, IC_LF_BOOL } ic_log_field_type_t;

typedef struct ic_log_field {
  const char *key;
  ic_log_field_type_t type;
  union {
    const char *s;
    int64_t i;
    double d;
    bool b;
  } v;
} ic_log_field_t;

#define IC_LS(k, x) ((ic_log_field_t){.key = (k), .type = IC_LF_STR, .v.s = (x)})
#define IC_LI(k, x) ((ic_log_field_t){.key = (k), .type = IC_LF_INT, .v.i = (int64_t)(x)})
#define IC_LD(k, x) ((ic_log_field_t){.key = (k), .type = IC_LF_DBL, .v.d = (double)(x)})
#define IC_LB(k, x) ((ic_log_field_t){.key = (k), .type = IC_LF_BOOL, .v.b = (x)})
#define IC_LEND ((ic_log_field_t){.key = 0, .type = IC_LF_END})

void ic_log_set_level(ic_log_level_t level);
ic_log_level_t ic_log_get_level(void);
void ic_log_set_format(ic_log_format_t fmt);
/* Parses "debug|info|warn|error" (case-insensitive); returns 0 or IC_EINVAL. */
int ic_log_parse_level(const char *s, ic_log_level_t *out);
/* Parses "json|text"; returns 0 or IC_EINVAL. */
int ic_log_parse_format(const char *s, ic_log_format_t *out);
/* Redirects output (default: fd 2). Tests use this to capture records. */
void ic_log_set_fd(int fd);
bool ic_log_enabled(ic_log_level_t level);

/* `fields` ends with an IC_LEND entry. */
void ic_log_emit(ic_log_level_t level, const char *msg, const ic_log_field_t *fields);

#define IC_LOG_(lvl, msg, ...)                                                                  \
  do {                                                                                          \
    if (ic_log_enabled(lvl))                                                                    \
      ic_log_emit(lvl, msg, (const ic_log_field_t[]){__VA_ARGS__ __VA_OPT__(, ) IC_LEND});      \
  } while (0)
#define ic_log_debug(msg, ...) IC_LOG_(IC_LOG_DEBUG, msg __VA_OPT__(, ) __VA_ARGS__)
#define ic_log_info(msg, ...) IC_LOG_(IC_LOG_INFO, msg __VA_OPT__(, ) __VA_ARGS__)
#define ic_log_warn(msg, ...) IC_LOG_(IC_LOG_WARN, msg __VA_OPT__(, ) __VA_ARGS__)
#define ic_log_error(msg, ...) IC_LOG_(IC_LOG_ERROR, msg __VA_OPT__(, ) __VA_ARGS__)

#endif
