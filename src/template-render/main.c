/* ic-template-render: renders a Jinja chat template (or PromptTemplate body) with variables from
 * a JSON object, exactly as the server does; for checking templates and for conformance tests.
 * Prints the rendered text to stdout (no newline added). Exit 0 = rendered, 1 = the template
 * failed to compile or render (the error on stderr), 2 = bad flags or unreadable input. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/buf.h"
#include "ic/chattemplate.h"
#include "ic/cli.h"
#include "ic/version.h"

static const ic_cli_flag_t FLAGS[] = {
    {"now", "int", NULL, "strftime_now's clock in seconds since the epoch, UTC (default: now)"},
};
static const ic_cli_t CLI = {
    "ic-template-render", "renders a chat template or PromptTemplate body with lib/chattemplate",
    "TEMPLATE_FILE [VARS_JSON_FILE|-]", FLAGS, sizeof FLAGS / sizeof FLAGS[0]};

/* A template or its variables beyond this are not input for a renderer. */
#define MAX_INPUT_BYTES (64u << 20)

/* The file's bytes ("-" = stdin), or NULL. */
static char *slurp(const char *path, size_t *len) {
  ic_buf_t b = IC_BUF_INIT;
  if (ic_buf_read_file(strcmp(path, "-") ? path : "/dev/stdin", MAX_INPUT_BYTES, &b, NULL) != 0)
    return NULL;
  return ic_buf_detach(&b, len);
}

int main(int argc, char **argv) {
  const char *tpl_path = NULL, *vars_path = NULL;
  ic_chattemplate_opts_t opts = {.now = -1};
  static const struct option lo[] = {{"now", required_argument, 0, 'n'},
                                     {"help", no_argument, 0, 'h'},
                                     {"version", no_argument, 0, 'V'},
                                     {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long_only(argc, argv, "", lo, NULL)) != -1) {
    switch (ch) {
    case 'n': {
      char *end;
      opts.now = strtoll(optarg, &end, 10);
      if (!*optarg || *end || opts.now < 0)
        return ic_cli_fail(&CLI, "invalid value for -now: %s", optarg);
      break;
    }
    case 'h': ic_cli_usage(&CLI, stdout); return 0;
    case 'V': ic_version_print(stdout, CLI.program); return 0;
    default: return ic_cli_fail(&CLI, "flag provided but not defined or missing its value");
    }
  }
  if (optind < argc) tpl_path = argv[optind++];
  if (optind < argc) vars_path = argv[optind++];
  if (!tpl_path || optind < argc) return ic_cli_fail(&CLI, "want TEMPLATE_FILE [VARS_JSON_FILE|-]");
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
