/* inferencecache: the operator CLI. `inferencecache <command> [flags]`; the table below is the
 * whole dispatch, so a new subcommand is one cmd_<name>.c plus one row. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
} command_t;

static const command_t COMMANDS[] = {
    {"replay", "replay a trace or synthetic workload against engines under routing modes",
     cmd_replay},
};
#define NCOMMANDS (sizeof(COMMANDS) / sizeof(COMMANDS[0]))

static void usage(FILE *f) {
  fprintf(f, "Usage: inferencecache <command> [flags]\n\nCommands:\n");
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
  fprintf(f, "\n'inferencecache <command> --help' lists a command's flags.\n"
             "  --version  print the version and exit\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("inferencecache %s\n", IC_CLI_VERSION);
    return 0;
  }
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
  fprintf(stderr, "inferencecache: unknown command \"%s\"\n\n", cmd);
  usage(stderr);
  return 2;
}
