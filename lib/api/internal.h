/* Private helpers of lib/api: schema-checking field readers (decode) and owned-field writers
 * (encode) shared by the per-kind files. Not installed; nothing outside lib/api includes it. */
#ifndef IC_API_INTERNAL_H
#define IC_API_INTERNAL_H
#include "ic/api.h"

/* Decode context: where schema errors go (NULL = drop them) and whether an allocation failed. */
typedef struct dctx {
  ic_api_errors_t *errs;
  int oom;
} dctx_t;

#define IC_PATH_MAX 512
/* path = parent + "." + key (or key alone when parent is ""). */
void api_path(char *out, const char *parent, const char *key);
void api_path_idx(char *out, const char *parent, size_t i);
void api_path_key(char *out, const char *parent, const char *key); /* parent[key] */

void api_err(dctx_t *c, ic_api_err_type_t t, const char *path, const json_t *bad, const char *const *sup,
             const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void api_type_err(dctx_t *c, const char *path, const json_t *v, const char *want);

/* Readers: absent or null leaves the output untouched and returns 0; a present value of the
 * wrong type/enum/range is reported and returns -1; a good value returns 1. */
int rd_str(dctx_t *c, const json_t *o, const char *k, const char *parent, char **out);
int rd_enum(dctx_t *c, const json_t *o, const char *k, const char *parent, const char *const *allowed,
            char **out);
int rd_int(dctx_t *c, const json_t *o, const char *k, const char *parent, bool has_min, int64_t min,
           bool has_max, int64_t max, bool *has, int64_t *out);
int rd_bool(dctx_t *c, const json_t *o, const char *k, const char *parent, bool *has, bool *out);
/* Returns the child object (borrowed) or NULL; reports a non-object. */
const json_t *rd_obj(dctx_t *c, const json_t *o, const char *k, const char *parent);
const json_t *rd_arr(dctx_t *c, const json_t *o, const char *k, const char *parent);
/* Object of strings; stores a deep copy into *out. */
int rd_str_map(dctx_t *c, const json_t *o, const char *k, const char *parent, json_t **out);
/* Quantity (integer or string matching the quantity pattern); stores a copy into *out. */
int rd_quantity(dctx_t *c, const json_t *o, const char *k, const char *parent, json_t **out);
/* Any object kept as JSON (after caller-provided checks); stores a deep copy. */
int rd_json_obj(dctx_t *c, const json_t *o, const char *k, const char *parent, json_t **out);
void req(dctx_t *c, const json_t *o, const char *k, const char *parent);

/* core/v1 shapes we keep as JSON but still check like the schema does. */
void chk_resources(dctx_t *c, const json_t *res, const char *path);
void chk_pod_overrides(dctx_t *c, const json_t *tpl, const char *path); /* the 11 template fields */
void chk_secret_selector(dctx_t *c, const json_t *o, const char *k, const char *parent,
                         ic_api_secret_key_selector_t *out);
void chk_env_list(dctx_t *c, const json_t *arr, const char *path);

int rd_meta(dctx_t *c, const json_t *obj, ic_api_meta_t *m);
void free_meta(ic_api_meta_t *m);
int wr_meta(json_t *obj, const ic_api_meta_t *m);
int rd_conditions(dctx_t *c, const json_t *status, const char *parent, ic_api_conditions_t *out);
void free_conditions(ic_api_conditions_t *cs);
int wr_conditions(json_t *status, const ic_api_conditions_t *cs);

/* Writers: NULL/absent deletes the key. Return 0 or -1 on ENOMEM. */
int wr_str(json_t *o, const char *k, const char *s);
int wr_int(json_t *o, const char *k, bool has, int64_t v);
int wr_bool(json_t *o, const char *k, bool has, bool v);
int wr_json(json_t *o, const char *k, const json_t *v); /* deep copy */
/* Child object for writing: deletes it when !present; else the existing object or a new one. */
json_t *wr_child(json_t *o, const char *k, bool present);
/* Start of every encode: deep copy of raw (or a new object) with apiVersion/kind set. */
json_t *wr_begin(const json_t *raw, const char *kind);
/* Finds an item of raw array `arr` whose string member `key` equals `val` (borrowed) or NULL. */
const json_t *find_item(const json_t *arr, const char *key, const char *val);

#endif
