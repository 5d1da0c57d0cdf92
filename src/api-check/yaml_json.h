/* YAML stream -> JSON array of documents, for ic-api-check (see yaml.c). */
#ifndef IC_API_CHECK_YAML_JSON_H
#define IC_API_CHECK_YAML_JSON_H
#include <jansson.h>
#include <stddef.h>

/* 0 and *out = new array (one element per non-empty document), or -1 with a reason in err. */
int yaml_to_json_docs(const char *text, size_t n, json_t **out, char *err, size_t errlen);

#endif
