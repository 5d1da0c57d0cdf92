/* The one help layout every program prints (ic/cli.h): Go flag style so the server's reference
 * flags read as they always did, extended to every binary with descriptions and defaults. */
#include "ic/cli.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "ic/version.h"

static void print_flag(FILE *out, const char *name, const char *type, const char *def,
                       const char *usage) {
  fprintf(out, "  -%s%s%s\n    \t", name, type ? " " : "", type ? type : "");
  for (const char *p = usage; *p; p++) {
    fputc(*p, out);
    if (*p == '\n') fputs("    \t", out);
  }
  if (def && *def) {
    bool quote = type && strcmp(type, "string") == 0;
    fprintf(out, quote ? " (default \"%s\")" : " (default %s)", def);
  }
  fputc('\n', out);
}

void ic_cli_usage(const ic_cli_t *cli, FILE *out) {
  fprintf(out, "%s: %s\n\nUsage: %s [flags]%s%s\n\n", cli->program, cli->summary, cli->program,
          cli->args ? " " : "", cli->args ? cli->args : "");
  fputs("Flags (-name or --name; a value as -name=value or -name value):\n", out);
  for (size_t i = 0; i < cli->nflags; i++) {
    const ic_cli_flag_t *f = &cli->flags[i];
    print_flag(out, f->name, f->type, f->def, f->usage);
  }
  print_flag(out, "help", NULL, NULL, "print this help and exit");
  print_flag(out, "version", NULL, NULL, "print the version and git commit and exit");
}

int ic_cli_fail(const ic_cli_t *cli, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", cli->program);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nRun '%s --help' for the flags.\n", cli->program);
  return 2;
}

void ic_version_print(FILE *out, const char *program) {
  fprintf(out, "%s version %s (commit %s)\n", program, ic_version, ic_git_commit);
}
