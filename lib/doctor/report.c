/* lib/doctor findings: the report (an append-only list of findings), the severity ladder and the
 * exit code it maps to, and the three renderings operators and CI read (docs/doctor.md). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ic/doctor.h"
#include "ic/err.h"

static const char *const STATUS_NAMES[] = {"OK", "INFO", "WARN", "FAIL"};

const char *ic_doctor_status_name(ic_doctor_status_t s) {
  return (unsigned)s < 4 ? STATUS_NAMES[s] : "UNKNOWN";
}

void ic_doctor_report_init(ic_doctor_report_t *r) { memset(r, 0, sizeof *r); }

void ic_doctor_report_free(ic_doctor_report_t *r) {
  for (size_t i = 0; i < r->len; i++) {
    ic_doctor_finding_t *f = &r->items[i];
    free(f->code);
    free(f->check);
    free(f->resource);
    free(f->message);
  }
  free(r->items);
  memset(r, 0, sizeof *r);
}

void ic_doctor_add(ic_doctor_report_t *r, const char *code, ic_doctor_status_t status,
                   const char *check, const char *resource, const char *fmt, ...) {
  if (r->len == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    ic_doctor_finding_t *items = realloc(r->items, cap * sizeof *items);
    if (!items) {
      r->oom = true;
      return;
    }
    r->items = items;
    r->cap = cap;
  }
  ic_doctor_finding_t f = {.status = status};
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&f.message, fmt, ap);
  va_end(ap);
  f.code = strdup(code);
  f.check = strdup(check);
  f.resource = strdup(resource ? resource : "");
  if (n < 0 || !f.code || !f.check || !f.resource) {
    if (n < 0) f.message = NULL;
    free(f.code);
    free(f.check);
    free(f.resource);
    free(f.message);
    r->oom = true;
    return;
  }
  r->items[r->len++] = f;
}

ic_doctor_status_t ic_doctor_worst(const ic_doctor_report_t *r) {
  ic_doctor_status_t w = r->oom ? IC_DOCTOR_FAIL : IC_DOCTOR_OK;
  for (size_t i = 0; i < r->len; i++)
    if (r->items[i].status > w) w = r->items[i].status;
  return w;
}

int ic_doctor_exit_code(const ic_doctor_report_t *r) {
  switch (ic_doctor_worst(r)) {
  case IC_DOCTOR_FAIL: return 2;
  case IC_DOCTOR_WARN: return 1;
  default: return 0;
  }
}

void ic_doctor_counts(const ic_doctor_report_t *r, size_t counts[4]) {
  memset(counts, 0, 4 * sizeof *counts);
  for (size_t i = 0; i < r->len; i++)
    if ((unsigned)r->items[i].status < 4) counts[r->items[i].status]++;
}

size_t ic_doctor_count_code(const ic_doctor_report_t *r, const char *code) {
  size_t n = 0;
  for (size_t i = 0; i < r->len; i++)
    n += strcmp(r->items[i].code, code) == 0;
  return n;
}

int ic_doctor_parse_format(const char *s, ic_doctor_format_t *out) {
  if (!s) return IC_EINVAL;
  if (!strcmp(s, "human"))
    *out = IC_DOCTOR_HUMAN;
  else if (!strcmp(s, "json"))
    *out = IC_DOCTOR_JSON;
  else if (!strcmp(s, "table"))
    *out = IC_DOCTOR_TABLE;
  else
    return IC_EINVAL;
  return 0;
}

/* ---------------------------------------------------------------------------- human */

#define BOLD "\033[1m"
#define RESET "\033[0m"
static const char *const STATUS_COLORS[] = {"\033[32m", "\033[36m", "\033[33m", "\033[31m"};

static void human(const ic_doctor_report_t *r, bool color, FILE *out) {
  fprintf(out, "%sinferencecache doctor%s\n\n", color ? BOLD : "", color ? RESET : "");
  /* Most urgent first, so the first screen is what needs attention. */
  for (int s = IC_DOCTOR_FAIL; s >= IC_DOCTOR_OK; s--) {
    bool any = false;
    for (size_t i = 0; i < r->len; i++) {
      const ic_doctor_finding_t *f = &r->items[i];
      if ((int)f->status != s) continue;
      if (!any) {
        if (color)
          fprintf(out, BOLD "%s%s" RESET "\n", STATUS_COLORS[s], STATUS_NAMES[s]);
        else
          fprintf(out, "%s\n", STATUS_NAMES[s]);
        any = true;
      }
      if (color)
        fprintf(out, "  %s%-4s" RESET " %s", STATUS_COLORS[s], STATUS_NAMES[s], f->code);
      else
        fprintf(out, "  %-4s %s", STATUS_NAMES[s], f->code);
      if (*f->resource) fprintf(out, "  %s", f->resource);
      fprintf(out, "\n      %s\n", f->message);
    }
    if (any) fputc('\n', out);
  }
  size_t c[4];
  ic_doctor_counts(r, c);
  fprintf(out, "%sSummary: %zu OK, %zu INFO, %zu WARN, %zu FAIL  (exit %d)%s\n", color ? BOLD : "",
          c[0], c[1], c[2], c[3], ic_doctor_exit_code(r), color ? RESET : "");
  if (r->oom) fprintf(out, "(out of memory: some findings are missing)\n");
}

/* ----------------------------------------------------------------------------- json */

static int json_out(const ic_doctor_report_t *r, FILE *out) {
  size_t c[4];
  ic_doctor_counts(r, c);
  json_t *findings = json_array();
  json_t *doc =
      json_pack("{s:{s:I,s:I,s:I,s:I,s:i},s:o}", "summary", "ok", (json_int_t)c[0], "info",
                (json_int_t)c[1], "warn", (json_int_t)c[2], "fail", (json_int_t)c[3], "exitCode",
                ic_doctor_exit_code(r), "findings", findings);
  if (!doc) return IC_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < r->len && !rc; i++) {
    const ic_doctor_finding_t *f = &r->items[i];
    json_t *o = json_pack("{s:s,s:s,s:s}", "code", f->code, "status",
                          ic_doctor_status_name(f->status), "check", f->check);
    if (o && *f->resource) json_object_set_new(o, "resource", json_string(f->resource));
    if (o) json_object_set_new(o, "message", json_string(f->message));
    rc = o && json_array_append_new(findings, o) == 0 ? 0 : IC_ENOMEM;
  }
  if (!rc && json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) rc = IC_EIO;
  if (!rc) fputc('\n', out);
  json_decref(doc);
  return rc;
}

/* ---------------------------------------------------------------------------- table */

/* Display width: code points, so a message with "—" aligns like ASCII. */
static size_t width(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

/* Runs of whitespace (newlines included) collapse to one space: one row per finding. */
static char *one_line(const char *s) {
  char *o = malloc(strlen(s) + 1), *p = o;
  if (!o) return NULL;
  bool space = false;
  for (; *s; s++) {
    if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') {
      space = p != o;
      continue;
    }
    if (space) *p++ = ' ';
    space = false;
    *p++ = *s;
  }
  *p = 0;
  return o;
}

static void cell(FILE *out, const char *s, size_t w) {
  fputs(s, out);
  for (size_t n = width(s); n < w + 2; n++)
    fputc(' ', out);
}

static int table(const ic_doctor_report_t *r, FILE *out) {
  size_t w[4] = {6, 4, 5, 8}; /* the header words */
  for (size_t i = 0; i < r->len; i++) {
    const ic_doctor_finding_t *f = &r->items[i];
    const char *cols[4] = {ic_doctor_status_name(f->status), f->code, f->check,
                           *f->resource ? f->resource : "-"};
    for (int c = 0; c < 4; c++)
      if (width(cols[c]) > w[c]) w[c] = width(cols[c]);
  }
  cell(out, "STATUS", w[0]);
  cell(out, "CODE", w[1]);
  cell(out, "CHECK", w[2]);
  cell(out, "RESOURCE", w[3]);
  fputs("MESSAGE\n", out);
  for (size_t i = 0; i < r->len; i++) {
    const ic_doctor_finding_t *f = &r->items[i];
    char *msg = one_line(f->message);
    if (!msg) return IC_ENOMEM;
    cell(out, ic_doctor_status_name(f->status), w[0]);
    cell(out, f->code, w[1]);
    cell(out, f->check, w[2]);
    cell(out, *f->resource ? f->resource : "-", w[3]);
    fprintf(out, "%s\n", msg);
    free(msg);
  }
  return 0;
}

int ic_doctor_render(const ic_doctor_report_t *r, ic_doctor_format_t fmt, bool color, FILE *out) {
  int rc = 0;
  switch (fmt) {
  case IC_DOCTOR_HUMAN: human(r, color, out); break;
  case IC_DOCTOR_JSON: rc = json_out(r, out); break;
  case IC_DOCTOR_TABLE: rc = table(r, out); break;
  default: return IC_EINVAL;
  }
  if (!rc && (fflush(out) != 0 || ferror(out))) rc = IC_EIO;
  return rc;
}
