/* Hugging Face conventions around chat templates: where tokenizer_config.json keeps the template
 * and which special-token variables transformers hands to it. */
#include <string.h>

#include "ic/chattemplate.h"

const char *ic_chattemplate_hf_template(const json_t *cfg, const char *name) {
  json_t *t = json_object_get(cfg, "chat_template");
  if (json_is_string(t)) return json_string_value(t);
  if (!json_is_array(t)) return NULL;
  if (!name) name = "default";
  size_t i;
  json_t *e;
  json_array_foreach(t, i, e) {
    const char *n = json_string_value(json_object_get(e, "name"));
    json_t *tpl = json_object_get(e, "template");
    if (n && !strcmp(n, name) && json_is_string(tpl)) return json_string_value(tpl);
  }
  return NULL;
}

json_t *ic_chattemplate_hf_vars(const json_t *cfg, int add_generation_prompt) {
  static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "pad_token",
                                     "sep_token", "cls_token", "mask_token"};
  json_t *vars = json_object();
  if (!vars) return NULL;
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    json_t *v = json_object_get(cfg, keys[i]);
    if (json_is_object(v)) v = json_object_get(v, "content"); /* {"__type":"AddedToken",...} */
    if (json_is_string(v)) json_object_set(vars, keys[i], v);
  }
  json_object_set_new(vars, "add_generation_prompt", json_boolean(add_generation_prompt));
  return vars;
}
