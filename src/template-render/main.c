/* ic-template-render: renders a Jinja chat template (or PromptTemplate body) with variables from
 * a JSON object, exactly as the server does; for checking templates and for conformance tests.
 * Usage: ic-template-render TEMPLATE_FILE [VARS_JSON_FILE|-] [--now=EPOCH_SECONDS]
 * Prints the rendered text to stdout (no newline added). Exit 0 = rendered, 1 = the template
 * failed to compile or render (the error on stderr), 2 = unreadable input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/chattemplate.h"

static char *slurp(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f) return NULL;
  ic_buf_t b = IC_BUF_INIT;
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) ic_buf_append(&b, chunk, n);
  if (f != stdin) fclose(f);
  if (!b.data) ic_buf_append(&b, "", 0);
  return ic_buf_detach(&b, len);
}

int main(int argc, char **argv) {
  const char *tpl_path = NULL, *vars_path = NULL;
  ic_chattemplate_opts_t opts = {.now = -1};
  for (int i = 1; i < argc; i++) {
    if (!strncmp(argv[i], "--now=", 6)) opts.now = strtoll(argv[i] + 6, NULL, 10);
    else if (!tpl_path) tpl_path = argv[i];
    else if (!vars_path) vars_path = argv[i];
    else {
      fprintf(stderr, "usage: %s TEMPLATE_FILE [VARS_JSON_FILE|-] [--now=EPOCH]\n", argv[0]);
      return 2;
    }
  }
  if (!tpl_path) {
    fprintf(stderr, "usage: %s TEMPLATE_FILE [VARS_JSON_FILE|-] [--now=EPOCH]\n", argv[0]);
    return 2;
  }
  size_t tlen;
  char *src = slurp(tpl_path, &tlen);
  if (!src) {
    perror(tpl_path);
    return 2;
  }
  json_t *vars = NULL;
  if (vars_path) {
    size_t vlen;
    char *text = slurp(vars_path, &vlen);
    json_error_t je;
    vars = text ? json_loadb(text, vlen, JSON_ALLOW_NUL, &je) : NULL;
    free(text);
    if (!vars || !json_is_object(vars)) {
      fprintf(stderr, "%s: not a JSON object\n", vars_path);
      free(src);
      return 2;
    }
  }
  char err[IC_CHATTEMPLATE_ERR_MAX];
  ic_chattemplate_t *t;
  int rc = ic_chattemplate_compile(src, tlen, &t, err);
  free(src);
  if (rc) {
    fprintf(stderr, "template error: %s\n", err);
    json_decref(vars);
    return 1;
  }
  ic_buf_t out = IC_BUF_INIT;
  rc = ic_chattemplate_render(t, vars, &opts, &out, err);
  ic_chattemplate_free(t);
  json_decref(vars);
  if (rc) {
    fprintf(stderr, "render error: %s\n", err);
    ic_buf_free(&out);
    return 1;
  }
  fwrite(out.data ? out.data : "", 1, out.len, stdout);
  ic_buf_free(&out);
  return 0;
}
