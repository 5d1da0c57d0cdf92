/* libFuzzer target: /policy request bodies through the strict decoder, normalisation and a
 * store replace + resolve, the whole path a POST /policy takes. */
#include <stddef.h>
#include <stdint.h>

#include "ic/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ic_policy_doc_t *doc = NULL;
  char msg[256];
  ic_policy_parse_status_t st =
      ic_policy_parse((const char *)data, size, false, &doc, msg, sizeof msg);
  if (st != IC_POLICY_OK) return 0;
  ic_policy_store_t *s = ic_policy_store_new();
  if (!s) {
    ic_policy_doc_free(doc);
    return 0;
  }
  ic_policy_store_replace(s, doc);
  ic_policy_knobs_t k;
  ic_policy_store_resolve(s, "ns", 2, &k);
  ic_policy_store_resolve(s, IC_POLICY_PROBE_TENANT, sizeof IC_POLICY_PROBE_TENANT - 1, &k);
  ic_policy_store_free(s);
  return 0;
}
