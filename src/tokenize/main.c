/* ic-tokenize: prints the token ids lib/tokenizer gives for text, to check a routing key by hand
 * or, with --hex-lines, to run a corpus through the encoder (the conformance tests use it). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic/cli.h"
#include "ic/err.h"
#include "ic/tokenizer.h"
#include "ic/version.h"

static const ic_cli_flag_t FLAGS[] = {
    {"model-dir", "string", NULL,
     "directory holding the model's tokenizer.json (+ tokenizer_config.json); required"},
    {"add-special-tokens", NULL, NULL,
     "apply the tokenizer's post-processor template (e.g. a leading BOS)"},
    {"hex-lines", NULL, NULL,
     "each stdin line is hex-encoded text; each output line its ids (space-separated) or \"ERR "
     "<reason>\""},
};
static const ic_cli_t CLI = {"ic-tokenize",
                             "prints the token ids of stdin's text as a JSON array (lib/tokenizer)",
                             NULL, FLAGS, sizeof FLAGS / sizeof FLAGS[0]};

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static char *read_all(FILE *f, size_t *n) {
  size_t cap = 1 << 16, len = 0;
  char *b = malloc(cap);
  for (size_t r; b && (r = fread(b + len, 1, cap - len, f)) > 0;) {
    len += r;
    if (len == cap) {
      char *g = realloc(b, cap *= 2);
      if (!g) free(b);
      b = g;
    }
  }
  *n = len;
  return b;
}

int main(int argc, char **argv) {
  const char *dir = NULL;
  bool special = false, hex = false;
  static const struct option lo[] = {
      {"model-dir", required_argument, 0, 'm'}, {"add-special-tokens", no_argument, 0, 's'},
      {"hex-lines", no_argument, 0, 'x'},       {"help", no_argument, 0, 'h'},
      {"version", no_argument, 0, 'V'},         {0, 0, 0, 0}};
  bool help = false;
  for (int ch; (ch = getopt_long_only(argc, argv, "", lo, NULL)) != -1;) {
    switch (ch) {
    case 'm': dir = optarg; break;
    case 's': special = true; break;
    case 'x': hex = true; break;
    case 'h': help = true; break;
    case 'V': ic_version_print(stdout, CLI.program); return 0;
    default: return ic_cli_fail(&CLI, "flag provided but not defined or missing its value");
    }
  }
  if (help) return ic_cli_usage(&CLI, stdout), 0;
  if (optind < argc) return ic_cli_fail(&CLI, "unexpected argument %s", argv[optind]);
  if (!dir || !*dir) return ic_cli_fail(&CLI, "-model-dir is required");
  char err[IC_TOK_ERRLEN];
  ic_tokenizer *t;
  if (ic_tokenizer_load_dir(dir, &t, err)) {
    fprintf(stderr, "ic-tokenize: %s\n", err);
    return 1;
  }
  size_t n;
  char *in = read_all(stdin, &n);
  if (!in) return fprintf(stderr, "ic-tokenize: out of memory\n"), 1;
  ic_tok_ids ids = {0};
  int status = 0;
  if (!hex) {
    int rc = ic_tokenizer_encode(t, in, n, special, 0, &ids);
    if (rc) {
      fprintf(stderr, "ic-tokenize: %s\n", ic_strerror(rc));
      status = 1;
    } else {
      putchar('[');
      for (size_t i = 0; i < ids.n; i++)
        printf(i ? ",%u" : "%u", ids.v[i]);
      puts("]");
    }
  } else {
    char *buf = malloc(n / 2 + 1);
    for (char *line = in, *end = in + n; buf && line < end;) {
      char *nl = memchr(line, '\n', (size_t)(end - line));
      size_t ll = nl ? (size_t)(nl - line) : (size_t)(end - line);
      size_t k = 0;
      bool bad = ll % 2 != 0;
      for (size_t i = 0; !bad && i < ll; i += 2) {
        int hi = hexval(line[i]), lo = hexval(line[i + 1]);
        if (hi < 0 || lo < 0)
          bad = true;
        else
          buf[k++] = (char)(hi << 4 | lo);
      }
      int rc = bad ? IC_EINVAL : ic_tokenizer_encode(t, buf, k, special, 0, &ids);
      if (rc) {
        printf("ERR %s\n", bad ? "bad hex line" : ic_strerror(rc));
      } else {
        for (size_t i = 0; i < ids.n; i++)
          printf(i ? " %u" : "%u", ids.v[i]);
        putchar('\n');
      }
      line += ll + 1;
    }
    free(buf);
  }
  ic_tok_ids_free(&ids);
  ic_tokenizer_free(t);
  free(in);
  return status;
}
