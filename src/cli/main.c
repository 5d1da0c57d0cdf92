/* inferencecache: the operator CLI. `inferencecache <command> [flags]`; the table below is the
 * whole dispatch, so a new subcommand is one cmd_<name>.c plus one row. Help and errors follow
 * the one layout every program uses (ic/cli.h). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "ic/cli.h"
#include "ic/version.h"

typedef struct command {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
} command_t;

static const command_t COMMANDS[] = {
    {"doctor", "read-only preflight of an installation: findings with stable codes, exit 0/1/2",
     cmd_doctor},
    {"replay", "replay a trace or synthetic workload against engines under routing modes",
     cmd_replay},
};
#define NCOMMANDS (sizeof(COMMANDS) / sizeof(COMMANDS[0]))

static const ic_cli_t CLI = {.program = "inferencecache",
                             .summary = "the inference-cache operator CLI",
                             .args = "<command> [command flags]",
                             .flags = NULL,
                             .nflags = 0};

static void usage(FILE *f) {
  ic_cli_usage(&CLI, f);
  fprintf(f, "\nCommands:\n");
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
  fprintf(f, "\n'inferencecache <command> --help' lists a command's flags.\n");
}

static bool is_flag(const char *a, const char *name) {
  if (a[0] != '-') return false;
  a += a[1] == '-' ? 2 : 1;
  return !strcmp(a, name);
}

int main(int argc, char **argv) {
  if (argc < 2) return ic_cli_fail(&CLI, "a command is required");
  const char *cmd = argv[1];
  if (is_flag(cmd, "help") || is_flag(cmd, "h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (is_flag(cmd, "version") || !strcmp(cmd, "version")) {
    ic_version_print(stdout, CLI.program);
    return 0;
  }
  if (cmd[0] == '-') return ic_cli_fail(&CLI, "flag provided but not defined: %s", cmd);
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
  return ic_cli_fail(&CLI, "unknown command \"%s\"", cmd);
}
