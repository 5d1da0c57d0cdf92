/* Prometheus metrics registry (part of lib/base): counters, gauges and histograms with labels,
 * rendered in the text exposition format 0.0.4 exactly as Go's client_golang does it:
 * families sorted by name, label names sorted, `le` last, values in Go's shortest %g form,
 * `# HELP` / `# TYPE` before each family, labelled families silent until their first child.
 *
 * Thread-safety: registration, child lookup, updates and rendering may run concurrently.
 * Updates are lock-free atomics; child get-or-create takes a read lock on the hot path.
 * Ownership: the registry owns families and children; pointers stay valid until
 * ic_metrics_free(). Names, help and label strings are copied. */
#ifndef IC_METRICS_H
#define IC_METRICS_H
#include <stddef.h>
#include <stdint.h>

#include "ic/buf.h"

typedef struct ic_metrics ic_metrics_t;
typedef struct ic_metric_family ic_metric_family_t;
typedef struct ic_metric ic_metric_t;

typedef enum { IC_METRIC_COUNTER, IC_METRIC_GAUGE, IC_METRIC_HISTOGRAM } ic_metric_type_t;

ic_metrics_t *ic_metrics_new(void);
void ic_metrics_free(ic_metrics_t *m);

/* Registers a family. `label_names` has `nlabels` entries (0 for a plain metric, whose single
 * child exists at once and renders as 0). Returns NULL on a duplicate name or bad arguments. */
ic_metric_family_t *ic_metrics_counter(ic_metrics_t *m, const char *name, const char *help,
                                       size_t nlabels, const char *const *label_names);
ic_metric_family_t *ic_metrics_gauge(ic_metrics_t *m, const char *name, const char *help,
                                     size_t nlabels, const char *const *label_names);
/* `buckets` are the finite upper bounds, strictly increasing; +Inf is implicit. */
ic_metric_family_t *ic_metrics_histogram(ic_metrics_t *m, const char *name, const char *help,
                                         size_t nlabels, const char *const *label_names,
                                         const double *buckets, size_t nbuckets);

/* Get-or-create the child for these label values (same order as the family's label names).
 * For families without labels pass NULL. Returns NULL only on allocation failure. */
ic_metric_t *ic_metric_child(ic_metric_family_t *f, const char *const *label_values);
/* Convenience for unlabelled families. */
ic_metric_t *ic_metric_plain(ic_metric_family_t *f);

/* Label cardinality bound: label `label` of family f takes at most `max_values` distinct values;
 * past that, ic_metric_child() answers the child whose value for that label is
 * IC_METRICS_OTHER instead of creating a new series (counters and histograms then accumulate
 * there). One bounded label per family; call right after registration. Returns 0 or IC_EINVAL. */
#define IC_METRICS_OTHER "other"
int ic_metrics_bound_label(ic_metric_family_t *f, const char *label, size_t max_values);
/* Sets a gauge by label values. Within the bound this is ic_metric_set() on the child; past it
 * the value is remembered per label set (forgotten when set to 0) and the IC_METRICS_OTHER
 * child shows the sum of them. Returns 0 or IC_ENOMEM. */
int ic_metric_gauge_set(ic_metric_family_t *f, const char *const *label_values, double v);

void ic_metric_inc(ic_metric_t *c);
void ic_metric_add(ic_metric_t *c, double v); /* counters: v >= 0 */
void ic_metric_set(ic_metric_t *c, double v); /* gauges */
void ic_metric_observe(ic_metric_t *c, double v); /* histograms */
double ic_metric_value(const ic_metric_t *c);    /* counter/gauge value; histogram sum */
uint64_t ic_metric_count(const ic_metric_t *c);  /* histogram sample count */

/* Adds a callback run (under no registry lock, in registration order) at the start of every
 * render/foreach, e.g. to refresh gauges. At most 4 per registry; more are ignored. */
void ic_metrics_on_collect(ic_metrics_t *m, void (*fn)(void *ud), void *ud);

/* Registers the standard process collector under client_golang's names, refreshed from /proc at
 * every collection: process_cpu_seconds_total, process_open_fds, process_max_fds,
 * process_resident_memory_bytes, process_virtual_memory_bytes, process_start_time_seconds.
 * Returns 0, or IC_ENOMEM / IC_EINVAL (already registered). Implemented in process_metrics.c. */
int ic_metrics_add_process(ic_metrics_t *m);

/* Appends the whole exposition to `out`. Returns 0 or IC_ENOMEM. */
int ic_metrics_render(ic_metrics_t *m, ic_buf_t *out);

/* One sample per counter/gauge child; histograms give `_sum`, `_count` and `_bucket`
 * samples (with `le` as the last label). `type` is "counter", "gauge" or "histogram". */
typedef void (*ic_metrics_sample_fn)(void *ud, const char *name, const char *type, size_t nlabels,
                                     const char *const *label_names,
                                     const char *const *label_values, double value);
void ic_metrics_foreach(ic_metrics_t *m, ic_metrics_sample_fn fn, void *ud);

/* Formats a float the way Go's strconv.FormatFloat(v, 'g', -1, 64) does ("1", "0.0001",
 * "1e+06", "+Inf", "NaN"). `out` must hold 32 bytes. Returns the length. */
int ic_metrics_format_value(double v, char out[32]);

#endif
