/* Registry internals shared by metrics.c and process_metrics.c (not a public header). */
#ifndef IC_METRICS_INTERNAL_H
#define IC_METRICS_INTERNAL_H
#include <stdbool.h>

#include "ic/metrics.h"

/* ic_metrics_on_collect, optionally handing `ud` to the registry (freed by ic_metrics_free).
 * Returns 0 or IC_ENOMEM when the registry already has its 4 collectors. */
int ic_metrics_on_collect_owned(ic_metrics_t *m, void (*fn)(void *), void *ud, bool owned);

#endif
