/* inferencecache (the operator CLI): the subcommands' entry points. Each cmd_<name>.c owns one
 * subcommand; main.c only dispatches. Exit codes: 0 ok, 1 runtime failure, 2 usage error. */
#ifndef IC_SRC_CLI_COMMANDS_H
#define IC_SRC_CLI_COMMANDS_H

int cmd_replay(int argc, char **argv);
int cmd_doctor(int argc, char **argv);

#endif
