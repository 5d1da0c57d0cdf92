/* libFuzzer target: POST /prompttemplates bodies through lib/promptstore's decoder and compile,
 * then a RenderTemplate of every stored template (no tokenizer) with fixed variables. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ic/promptstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ic_promptstore_t *s;
  if (!s) s = ic_promptstore_new(NULL);
  char err[256], *report = NULL;
  if (ic_promptstore_replace(s, (const char *)data, size, &report, err, sizeof err) == 0) {
    free(report);
    json_t *list = NULL;
    char *l = ic_promptstore_list_json(s);
    if (l) list = json_loads(l, 0, NULL);
    free(l);
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(list, "templates"), i, it) {
      const char *ref = json_string_value(json_object_get(it, "template"));
      const char *keys[] = {"system", "question", "x"}, *vals[] = {"S", "Q?", "\xc3\xa9"};
      ic_promptstore_result_t r;
      if (ref && ic_promptstore_render(s, ref, "ns", 3, keys, vals, &r) == 0)
        ic_promptstore_result_free(&r);
      if (i > 8) break;
    }
    json_decref(list);
  }
  return 0;
}
