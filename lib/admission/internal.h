/* Private helpers shared by the files of lib/admission (not installed). */
#ifndef IC_ADMISSION_INTERNAL_H
#define IC_ADMISSION_INTERNAL_H
#include <jansson.h>
#include <stddef.h>

/* Standard base64 of n bytes; malloc'd, NULL on ENOMEM. */
char *adm_base64(const char *in, size_t n);

#endif
