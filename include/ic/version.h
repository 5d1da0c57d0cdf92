/* Build identity (part of lib/base, library ic_version): the project version and the git commit
 * a binary was built from, generated at build time by cmake/version.cmake; every program prints
 * them for --version and in its startup log. */
#ifndef IC_VERSION_H
#define IC_VERSION_H
#include <stdio.h>

/* e.g. "0.1.0"; the CMake cache variable IC_VERSION. */
extern const char ic_version[];
/* Short commit id, "-dirty" when the work tree had changes, or "unknown" outside a git checkout
 * (pass -DIC_GIT_COMMIT=<id> then, e.g. in a container build from a source tarball). */
extern const char ic_git_commit[];

/* Writes "<program> version <version> (commit <commit>)\n". */
void ic_version_print(FILE *out, const char *program);

#endif
