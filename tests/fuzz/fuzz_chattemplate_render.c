/* libFuzzer target: untrusted template text through lib/chattemplate's lexer, parser and
 * evaluator, rendered with a chat-shaped context under tight limits (no crash, no hang, no leak).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ic/chattemplate.h"

static json_t *context(void) {
  static json_t *vars;
  if (!vars)
    vars = json_loads(
        "{\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\",\"content\":"
        "\"hi \\u00e9 \\ud83d\\ude00\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
        "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":{\"a\":[1,2.5,true]}}}]},"
        "{\"role\":\"tool\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":[{\"type\":"
        "\"image\"},"
        "{\"type\":\"text\",\"text\":\"x\"}]}],\"tools\":[{\"type\":\"function\",\"function\":{"
        "\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":"
        "\"array\"}}}}}],\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"eos_token\":"
        "\"</s>\"}",
        0, NULL);
  return vars;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[IC_CHATTEMPLATE_ERR_MAX];
  ic_chattemplate_t *t;
  if (ic_chattemplate_compile((const char *)data, size, &t, err)) return 0;
  ic_chattemplate_opts_t o = {.max_steps = 200000,
                              .max_output = 1 << 20,
                              .max_memory = 16 << 20,
                              .max_depth = 32,
                              .now = 0};
  ic_buf_t out = IC_BUF_INIT;
  ic_chattemplate_render(t, context(), &o, &out, err);
  ic_buf_free(&out);
  ic_chattemplate_free(t);
  return 0;
}
