/* Unit tests of lib/chattemplate: rendering basics, the sandbox limits (steps, memory, depth,
 * output, nesting), clear errors naming what is unsupported, thread safety, HF config helpers.
 * Byte-for-byte conformance with jinja2 is tests/integration/test_chattemplate_conformance.py. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ic/chattemplate.h"
#include "ic/err.h"

static int render(const char *tpl, const char *vars_json, const ic_chattemplate_opts_t *o,
                  char **out, char *err) {
  ic_chattemplate_t *t;
  int rc = ic_chattemplate_compile(tpl, strlen(tpl), &t, err);
  if (rc) return rc;
  json_t *vars = vars_json ? json_loads(vars_json, 0, NULL) : NULL;
  ic_buf_t b = IC_BUF_INIT;
  rc = ic_chattemplate_render(t, vars, o, &b, err);
  json_decref(vars);
  ic_chattemplate_free(t);
  ic_buf_append(&b, "", 0);
  *out = ic_buf_detach(&b, NULL);
  return rc;
}

static void expect(const char *tpl, const char *vars, const char *want) {
  char err[IC_CHATTEMPLATE_ERR_MAX], *out = NULL;
  int rc = render(tpl, vars, NULL, &out, err);
  cr_assert_eq(rc, 0, "%s: %s", tpl, err);
  cr_assert_str_eq(out, want, "%s", tpl);
  free(out);
}

static int expect_fail(const char *tpl, const char *vars, const ic_chattemplate_opts_t *o,
                       const char *needle) {
  char err[IC_CHATTEMPLATE_ERR_MAX], *out = NULL;
  int rc = render(tpl, vars, o, &out, err);
  free(out);
  cr_assert_neq(rc, 0, "%s rendered", tpl);
  cr_assert(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
  return rc;
}

Test(chattemplate, renders_a_chat) {
  expect("{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}\n{% endfor %}"
         "{% if add_generation_prompt %}<assistant>{% endif %}",
         "{\"messages\":[{\"role\":\"user\",\"content\":\" hi \"}],\"add_generation_prompt\":true}",
         "<user>hi\n<assistant>");
}

Test(chattemplate, whitespace_control_matches_hf_settings) {
  expect("a\n  {% if true %}\n  x\n  {% endif %}\nb\n", NULL, "a\n  x\nb");
  expect("a  {%- if true -%}  x  {%- endif -%}  b", NULL, "axb");
  expect("{{ 1 }}\n{# c #}\nz", NULL, "1\nz");
}

Test(chattemplate, no_vars_and_empty_template) {
  expect("", NULL, "");
  expect("{{ x }}|{{ x is defined }}", "{}", "|False");
}

Test(chattemplate, bytes_pass_through) {
  /* invalid UTF-8 and NUL in text are data, not errors */
  char err[IC_CHATTEMPLATE_ERR_MAX];
  const char src[] = "a\xff\x00z{{ 'q' }}";
  ic_chattemplate_t *t;
  cr_assert_eq(ic_chattemplate_compile(src, sizeof src - 1, &t, err), 0, "%s", err);
  ic_buf_t b = IC_BUF_INIT;
  cr_assert_eq(ic_chattemplate_render(t, NULL, NULL, &b, err), 0, "%s", err);
  cr_assert_eq(b.len, 5);
  cr_assert(!memcmp(b.data, "a\xff\x00zq", 5));
  ic_buf_free(&b);
  ic_chattemplate_free(t);
}

/* strip walks back from the end only over well-formed UTF-8; malformed text is decoded forward
 * exactly as before (here E2 80 20 decodes as one 3-byte unit, so the space is not trailing). */
static void expect_bytes(const char *src, size_t n, const char *want, size_t wn) {
  char err[IC_CHATTEMPLATE_ERR_MAX];
  ic_chattemplate_t *t;
  cr_assert_eq(ic_chattemplate_compile(src, n, &t, err), 0, "%s", err);
  ic_buf_t b = IC_BUF_INIT;
  cr_assert_eq(ic_chattemplate_render(t, NULL, NULL, &b, err), 0, "%s", err);
  cr_assert_eq(b.len, wn, "%s: %zu bytes", src, b.len);
  cr_assert(!memcmp(b.data, want, wn), "%s", src);
  ic_buf_free(&b);
  ic_chattemplate_free(t);
}

Test(chattemplate, strip_of_malformed_utf8_decodes_forward) {
  const char a[] =
      "[{{ 'a\xe2\x80 '.rstrip() }}][{{ ' \xff '.strip() }}][{{ '\xe3\x80\x80x\xc3'.strip() }}]";
  const char wa[] = "[a\xe2\x80 ][\xff][x\xc3]";
  expect_bytes(a, sizeof a - 1, wa, sizeof wa - 1);
  const char b[] = "{% set s = ' q\xe2\x80\xa8 \xf0' %}[{{ s | trim }}][{{ s.rstrip('\xf0 ') }}]";
  const char wb[] = "[q\xe2\x80\xa8 \xf0][ q\xe2\x80\xa8]";
  expect_bytes(b, sizeof b - 1, wb, sizeof wb - 1);
}

Test(chattemplate, step_limit_stops_runaway_loops) {
  ic_chattemplate_opts_t o = {.max_steps = 100000, .now = 0};
  int rc = expect_fail(
      "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", NULL, &o,
      "step limit");
  cr_assert_eq(rc, IC_ERANGE);
}

Test(chattemplate, memory_limit_stops_doubling_strings) {
  ic_chattemplate_opts_t o = {.max_memory = 4 << 20, .now = 0};
  int rc = expect_fail("{% set ns = namespace(s='x') %}{% for i in range(60) %}"
                       "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
                       NULL, &o, "memory limit");
  cr_assert_eq(rc, IC_ERANGE);
  rc = expect_fail("{{ 'x' * 100000000000 }}", NULL, &o, "memory limit");
  cr_assert_eq(rc, IC_ERANGE);
}

Test(chattemplate, recursion_limit_stops_self_calling_macros) {
  int rc = expect_fail("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", NULL, NULL,
                       "nested deeper");
  cr_assert_eq(rc, IC_ERANGE);
}

Test(chattemplate, output_limit) {
  ic_chattemplate_opts_t o = {.max_output = 1000, .now = 0};
  int rc = expect_fail("{% for i in range(2000) %}ab{% endfor %}", NULL, &o, "output exceeds");
  cr_assert_eq(rc, IC_ERANGE);
}

Test(chattemplate, deep_nesting_is_an_error_not_a_crash) {
  size_t n = 100000;
  char *src = malloc(2 * n + 8);
  memcpy(src, "{{ ", 3);
  memset(src + 3, '(', n);
  src[3 + n] = '1';
  memset(src + 4 + n, ')', n);
  memcpy(src + 4 + 2 * n, " }}", 4);
  char err[IC_CHATTEMPLATE_ERR_MAX];
  ic_chattemplate_t *t;
  cr_assert_eq(ic_chattemplate_compile(src, strlen(src), &t, err), IC_ERANGE);
  cr_assert(strstr(err, "nesting"), "%s", err);
  free(src);
  /* a value nested 100k deep by a loop can be built but not compared or printed */
  ic_chattemplate_opts_t o = {.max_steps = 10000000, .now = 0};
  expect_fail("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}"
              "{% endfor %}{{ ns.x == ns.x }}",
              NULL, &o, "nested too deeply");
  expect_fail("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}"
              "{% endfor %}{{ ns.x | tojson }}",
              NULL, &o, "nested too deeply");
}

Test(chattemplate, unsupported_constructs_are_named) {
  char err[IC_CHATTEMPLATE_ERR_MAX];
  ic_chattemplate_t *t;
  static const struct {
    const char *src, *needle;
  } cases[] = {
      {"{% include 'other.jinja' %}", "include"},
      {"{% extends 'base' %}", "extends"},
      {"{% import 'm' as m %}", "import"},
      {"{% for x in xs recursive %}{% endfor %}", "recursive"},
      {"{% frobnicate %}", "frobnicate"},
      {"{{ f(*args) }}", "*args"},
      {"{% if x %}", "endif"},
      {"{{ x", "}}"},
      {"{{ 99999999999999999999 }}", "64 bits"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int rc = ic_chattemplate_compile(cases[i].src, strlen(cases[i].src), &t, err);
    cr_assert_neq(rc, 0, "%s compiled", cases[i].src);
    cr_assert(strstr(err, cases[i].needle), "%s: '%s' lacks '%s'", cases[i].src, err,
              cases[i].needle);
    cr_assert(strstr(err, "line 1"), "%s", err);
  }
  expect_fail("{{ x | nosuch }}", NULL, NULL, "No filter named 'nosuch'");
  expect_fail("{{ 'a' % 1 }}", NULL, NULL, "unsupported");
  expect_fail("{{ '{}'.format(1) }}", NULL, NULL, "unsupported: str.format");
  expect_fail("{{ [].append(1) }}", NULL, NULL, "unsafe");
}

Test(chattemplate, raise_exception_message_reaches_the_caller) {
  int rc = expect_fail("\n{{ raise_exception('roles must alternate') }}", NULL, NULL,
                       "line 2: roles must alternate");
  cr_assert_eq(rc, IC_EINVAL);
}

Test(chattemplate, strftime_now_uses_the_given_clock) {
  char err[IC_CHATTEMPLATE_ERR_MAX], *out;
  ic_chattemplate_opts_t o = {.now = 1700000000};
  cr_assert_eq(render("{{ strftime_now('%Y-%m-%d %A') }}", NULL, &o, &out, err), 0, "%s", err);
  cr_assert_str_eq(out, "2023-11-14 Tuesday");
  free(out);
}

Test(chattemplate, variables_must_be_an_object) {
  char err[IC_CHATTEMPLATE_ERR_MAX];
  ic_chattemplate_t *t;
  cr_assert_eq(ic_chattemplate_compile("x", 1, &t, err), 0);
  json_t *arr = json_array();
  ic_buf_t b = IC_BUF_INIT;
  cr_assert_eq(ic_chattemplate_render(t, arr, NULL, &b, err), IC_EINVAL);
  cr_assert(strstr(err, "JSON object"));
  json_decref(arr);
  ic_buf_free(&b);
  ic_chattemplate_free(t);
}

typedef struct job {
  const ic_chattemplate_t *t;
  json_t *vars;
  char *out;
} job;

static void *render_job(void *arg) {
  job *j = arg;
  char err[IC_CHATTEMPLATE_ERR_MAX];
  for (int i = 0; i < 200; i++) {
    ic_buf_t b = IC_BUF_INIT;
    if (ic_chattemplate_render(j->t, j->vars, NULL, &b, err)) return NULL;
    ic_buf_append(&b, "", 0);
    free(j->out);
    j->out = ic_buf_detach(&b, NULL);
  }
  return NULL;
}

Test(chattemplate, one_template_renders_on_many_threads) {
  const char *src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                    "{{ m | tojson(sort_keys=true) }}{% endfor %}{{ ns.n }}";
  char err[IC_CHATTEMPLATE_ERR_MAX];
  ic_chattemplate_t *t;
  cr_assert_eq(ic_chattemplate_compile(src, strlen(src), &t, err), 0, "%s", err);
  json_t *vars = json_loads("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
                            "{\"content\":\"b\",\"role\":\"assistant\"}]}",
                            0, NULL);
  pthread_t th[4];
  job jobs[4];
  for (int i = 0; i < 4; i++) {
    jobs[i] = (job){t, vars, NULL};
    pthread_create(&th[i], NULL, render_job, &jobs[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    cr_assert_str_eq(jobs[i].out, "{\"content\": \"a\", \"role\": \"user\"}"
                                  "{\"content\": \"b\", \"role\": \"assistant\"}2");
    free(jobs[i].out);
  }
  json_decref(vars);
  ic_chattemplate_free(t);
}

Test(chattemplate, hf_config_helpers) {
  json_t *cfg = json_loads(
      "{\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},{\"name\":\"default\","
      "\"template\":\"D\"}],\"bos_token\":{\"__type\":\"AddedToken\",\"content\":\"<s>\"},"
      "\"eos_token\":\"</s>\",\"unk_token\":null}",
      0, NULL);
  cr_assert_str_eq(ic_chattemplate_hf_template(cfg, NULL), "D");
  cr_assert_str_eq(ic_chattemplate_hf_template(cfg, "tool_use"), "T");
  cr_assert_null(ic_chattemplate_hf_template(cfg, "nope"));
  json_t *vars = ic_chattemplate_hf_vars(cfg, 1);
  cr_assert_str_eq(json_string_value(json_object_get(vars, "bos_token")), "<s>");
  cr_assert_str_eq(json_string_value(json_object_get(vars, "eos_token")), "</s>");
  cr_assert_null(json_object_get(vars, "unk_token"));
  cr_assert(json_is_true(json_object_get(vars, "add_generation_prompt")));
  json_decref(vars);
  json_decref(cfg);
}
