/* libFuzzer target for lib/kvevents: arbitrary bytes through the EventBatch decoder and, when it
 * decodes, through the positional tracker (untrusted engine input end to end). */
#include <stddef.h>
#include <stdint.h>

#include "ic/kvevents.h"
#include "ic/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ic_kv_tracker_t *t;
  static int init;
  if (!init) {
    ic_log_set_level(IC_LOG_ERROR); /* the tracker warns on odd events; keep the run quiet */
    init = 1;
  }
  if (!t) t = ic_kv_tracker_new();
  ic_kv_batch_t b;
  ic_kv_batch_init(&b);
  if (ic_kv_decode(&b, data, size) == 0) {
    ic_kv_ops_t ops = {0};
    ic_kv_apply_cfg_t cfg = {.l2_mode = size & 1};
    ic_kv_apply(t, &b, &cfg, &ops, NULL);
    if (ic_kv_tracker_size(t) > 100000) ic_kv_tracker_clear(t);
    ic_kv_ops_free(&ops);
  }
  ic_kv_batch_free(&b);
  return 0;
}
