"""Python jinja2 configured as the Hugging Face stack configures it for chat templates: the
independent oracle that lib/chattemplate is compared with (tests/integration/test_chattemplate_*).

transformers renders chat templates in an ImmutableSandboxedEnvironment with trim_blocks,
lstrip_blocks, the loopcontrols extension and its AssistantTracker (`{% generation %}`), replaces
the `tojson` filter with json.dumps(ensure_ascii=False, ...), and adds the globals
raise_exception(message) and strftime_now(format). strftime_now reads a fixed clock here (UTC) so
both engines see the same date.
"""
import datetime
import json

from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class _Generation(Extension):
    """`{% generation %}...{% endgeneration %}` renders its body unchanged (as AssistantTracker)."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def hf_environment(now):
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(source, variables, now):
    """(True, text) or (False, "ExceptionType: message")."""
    try:
        return True, hf_environment(now).from_string(source).render(**variables)
    except Exception as e:  # every jinja2 / Python error counts as "the template raised"
        return False, "%s: %s" % (type(e).__name__, e)


def special_tokens(config):
    """The special-token variables transformers passes, from a tokenizer_config.json dict."""
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token",
                "mask_token"):
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            out[key] = v
    return out
