/* Command-line conventions shared by every program (part of lib/base): one help layout (Go's
 * flag package: "-name type", the description, the default), --help on stdout with exit 0,
 * --version, and errors on stderr with exit 2. Programs keep their own parsers; this is what
 * they print. */
#ifndef IC_CLI_H
#define IC_CLI_H
#include <stddef.h>
#include <stdio.h>

typedef struct ic_cli_flag {
  const char *name;  /* without dashes */
  const char *type;  /* "string", "int", "duration", "float", ...; NULL for a boolean switch */
  const char *def;   /* default as the user would type it; NULL or "" shows none */
  const char *usage; /* one sentence; may contain '\n' for continuation lines */
} ic_cli_flag_t;

typedef struct ic_cli {
  const char *program; /* e.g. "inferencecache-server" */
  const char *summary; /* one line: what the program does */
  const char *args;    /* positional arguments after [flags], or NULL */
  const ic_cli_flag_t *flags;
  size_t nflags;
} ic_cli_t;

/* The full help: summary, usage line, every flag (plus -help and -version) in table order. */
void ic_cli_usage(const ic_cli_t *cli, FILE *out);
/* A flag error: "<program>: <message>" and a pointer to --help, on stderr. Returns 2 (the exit
 * code every program uses for bad flags). */
int ic_cli_fail(const ic_cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
