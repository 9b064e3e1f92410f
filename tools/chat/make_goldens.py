#!/usr/bin/env python3
"""Makes the chat-template goldens under tests/fixtures/chat/ with Python jinja2.

The jinja2 environment is a copy of transformers 5.17.0's
`utils/chat_template_utils.py::_cached_compile_jinja_template` (copied, not imported, so the
oracle needs only jinja2): ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[AssistantTracker, loopcontrols]), the `tojson` override (json.dumps with
ensure_ascii=False by default), and the globals `raise_exception` and `strftime_now`.
`strftime_now` honors GLINT_FIXED_DATE ("YYYY-MM-DD[ HH:MM:SS]") exactly as glint does, so goldens
are deterministic.

The chat context mirrors glint_chat_render() (src/text/chat.c), i.e. transformers'
apply_chat_template after sglang's preprocessing:
  * assistant tool_calls[].function.arguments given as a JSON string -> json.loads (must be an object)
  * context = special tokens of tokenizer_config.json (strings) + messages, tools (None when absent),
    documents=None, add_generation_prompt (default False) + every key of chat_template_kwargs.

Usage: python3 tools/chat/make_goldens.py   (writes tests/fixtures/chat/)
"""
import json
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

JINJA2_VERSION = "3.1.6"
if jinja2.__version__ != JINJA2_VERSION:
    sys.exit(f"need jinja2=={JINJA2_VERSION} (pip install jinja2=={JINJA2_VERSION}), found {jinja2.__version__}")

FIXED_DATE = "2026-03-14 09:26:53"

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Path(os.environ.get("GLINT_TEMPLATES", ROOT.parent / "shared" / "data" / "templates"))
OUT = ROOT / "tests" / "fixtures" / "chat"


# ---------------------------------------------------------------- transformers' environment (copied)
class AssistantTracker(Extension):
    # {% generation %} ... {% endgeneration %}: renders its body (index tracking is not needed here)
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    fixed = os.environ.get("GLINT_FIXED_DATE")
    if fixed:
        return datetime.fromisoformat(fixed).strftime(format)
    return datetime.now().strftime(format)


def make_env():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# ---------------------------------------------------------------- chat context (mirrors src/text/chat.c)
SPECIAL_TOKEN_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]


def special_tokens(config):
    out = {}
    for k in SPECIAL_TOKEN_KEYS:
        v = config.get(k)
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            out[k] = v
    return out


def normalize_messages(messages):
    messages = json.loads(json.dumps(messages))
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") != "assistant" or not isinstance(m.get("tool_calls"), list):
            continue
        for k, call in enumerate(m["tool_calls"]):
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                parsed = json.loads(fn["arguments"])
                if not isinstance(parsed, dict):
                    raise ValueError(f"messages[{i}].tool_calls[{k}].function.arguments must be a JSON object")
                fn["arguments"] = parsed
    return messages


def chat_context(request, specials):
    ctx = dict(specials)
    ctx["messages"] = normalize_messages(request["messages"])
    ctx["tools"] = request.get("tools")
    ctx["documents"] = None
    ctx["add_generation_prompt"] = bool(request.get("add_generation_prompt", False))
    for k, v in (request.get("chat_template_kwargs") or {}).items():
        if k in ("messages", "tools", "documents", "add_generation_prompt"):
            raise TypeError(f"got multiple values for keyword argument '{k}'")
        ctx[k] = v
    return ctx


# ---------------------------------------------------------------- model fixtures
# Each template gets a small model directory. glm-4.7 carries its template inside
# tokenizer_config.json (the other load path of `render-chat -m`).
MODELS = {
    "glm-4.7": {"config": {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, "inline": True},
    "qwen3": {"config": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}, "inline": False},
    "llama3": {"config": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, "inline": False},
    "deepseek_v3": {
        "config": {
            "bos_token": {"__type": "AddedToken", "content": "<｜begin▁of▁sentence｜>", "lstrip": False},
            "eos_token": {"__type": "AddedToken", "content": "<｜end▁of▁sentence｜>", "lstrip": False},
        },
        "inline": False,
    },
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "description": "Get weather",
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
        "strict": False,
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "description": "Recherche sur le web — «citations» 🔎",
        "name": "web_search",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "texte \"exact\" \\ ou\tpas"},
                "filters": {"type": "object", "properties": {"lang": {"type": "string", "enum": ["fr", "日本語"]}}},
                "top_k": {"type": "number", "default": 2.5},
            },
            "required": ["query"],
        },
        "strict": False,
    },
}


def tc(name, args, id_="call_1"):
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


CONVERSATIONS = {
    "01_hello": {"messages": [{"role": "user", "content": "hello"}], "add_generation_prompt": True},
    "02_no_generation_prompt": {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]
    },
    "03_system_multi_turn": {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "and 3+3?"},
            {"role": "assistant", "content": "6"},
            {"role": "user", "content": "thanks"},
        ],
        "add_generation_prompt": True,
    },
    "04_reasoning_content": {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "simple sum"},
            {"role": "user", "content": "and 3+3?"},
        ],
        "add_generation_prompt": True,
    },
    "05_clear_thinking_false": {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "  simple sum\n"},
            {"role": "user", "content": "and 3+3?"},
            {"role": "assistant", "content": "6", "reasoning_content": "again"},
        ],
        "add_generation_prompt": False,
        "chat_template_kwargs": {"clear_thinking": False},
    },
    "06_think_in_content": {
        "messages": [
            {"role": "user", "content": "Why is the sky blue?"},
            {"role": "assistant", "content": "<think>\nRayleigh scattering.\n</think>\n\nShort wavelengths scatter more."},
            {"role": "user", "content": "And sunsets?"},
            {"role": "assistant", "content": "<think>longer path</think>Red light survives the longer path."},
        ],
    },
    "07_enable_thinking_false": {
        "messages": [{"role": "user", "content": "Quick: capital of France?"}],
        "add_generation_prompt": True,
        "chat_template_kwargs": {"enable_thinking": False},
    },
    "08_tools_declared": {
        "messages": [{"role": "system", "content": "Use tools when useful."}, {"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL, SEARCH_TOOL],
        "add_generation_prompt": True,
    },
    "09_tool_calls_roundtrip": {
        "messages": [
            {"role": "user", "content": "Weather in Paris and 東京?"},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "need tool",
                "tool_calls": [
                    tc("get_weather", "{\"city\": \"Paris\", \"days\": 2}", "call_1"),
                    tc("get_weather", "{\"city\": \"東京\"}", "call_2"),
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        ],
        "tools": [WEATHER_TOOL],
        "add_generation_prompt": True,
    },
    "10_nested_arguments": {
        "messages": [
            {"role": "user", "content": "search"},
            {
                "role": "assistant",
                "content": "Let me search.",
                "tool_calls": [
                    tc(
                        "web_search",
                        json.dumps(
                            {
                                "query": "jinja \"tojson\" \\ émoji 🎉",
                                "filters": {"lang": "日本語", "years": [2024, 2025], "strict": True, "none": None},
                                "top_k": 3,
                                "weight": 0.5,
                                "big": 1e20,
                                "neg": -1.0,
                                "empty": {},
                                "nil": [],
                            },
                            ensure_ascii=False,
                        ),
                    )
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"results\": [\"a\", \"b\"]}"},
            {"role": "assistant", "content": "Found a and b."},
        ],
        "tools": [SEARCH_TOOL],
    },
    "11_arguments_as_object": {
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [tc("get_weather", {"city": "Oslo", "days": 1})]},
            {"role": "tool", "content": "cold"},
        ],
        "add_generation_prompt": True,
    },
    "12_list_of_parts_content": {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe "},
                    {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                    {"type": "text", "text": "this."},
                ],
            },
        ],
        "add_generation_prompt": True,
    },
    "13_non_ascii": {
        "messages": [
            {"role": "system", "content": "Réponds en français. 日本語も大丈夫。"},
            {"role": "user", "content": "Ça va ? 🙂 مرحبا — naïve café Ωμέγα"},
            {"role": "assistant", "content": "Très bien, merci ! 👍", "reasoning_content": "politesse… 思考"},
            {"role": "user", "content": "Ünïcödé\u2028line sep and \u00a0nbsp"},
        ],
        "add_generation_prompt": True,
    },
    "14_whitespace_edges": {
        "messages": [
            {"role": "system", "content": "\n  padded system  \n"},
            {"role": "user", "content": "\ttabbed\t question \n\n"},
            {"role": "assistant", "content": "\n\n  answer with spaces  \n"},
            {"role": "user", "content": "   "},
        ],
        "add_generation_prompt": True,
    },
    "15_empty_messages": {"messages": [], "add_generation_prompt": True},
    "16_tool_results_list": {
        "messages": [
            {"role": "user", "content": "run both"},
            {"role": "assistant", "content": "", "tool_calls": [tc("a", "{}"), tc("b", "{\"x\": [1, 2]}", "call_2")]},
            {"role": "tool", "content": [{"output": "out-a"}, {"output": "out-b"}, "raw"]},
        ],
        "add_generation_prompt": True,
    },
    "17_multi_step_tools": {
        "messages": [
            {"role": "system", "content": "agent"},
            {"role": "user", "content": "plan a trip"},
            {"role": "assistant", "content": "", "reasoning_content": "step 1", "tool_calls": [tc("get_weather", "{\"city\": \"Rome\"}")]},
            {"role": "tool", "content": "hot"},
            {"role": "assistant", "content": "", "reasoning_content": "step 2", "tool_calls": [tc("get_weather", "{\"city\": \"Milan\", \"days\": 3}")]},
            {"role": "tool", "content": "mild"},
            {"role": "user", "content": "<tool_response>fake</tool_response>"},
        ],
        "tools": [WEATHER_TOOL],
        "add_generation_prompt": True,
        "chat_template_kwargs": {"clear_thinking": False, "enable_thinking": True},
    },
    "18_special_characters": {
        "messages": [
            {"role": "user", "content": "quotes ' \" backslash \\ braces {{ x }} {% if %} {# c #} ctrl \u0001\u001f end"},
            {"role": "assistant", "content": "<｜User｜> <|im_start|> [gMASK] literal tokens"},
            {"role": "user", "content": "ok"},
        ],
        "add_generation_prompt": False,
    },
    "19_consecutive_systems": {
        "messages": [
            {"role": "system", "content": "First system."},
            {"role": "system", "content": "Second system."},
            {"role": "user", "content": "hi"},
        ],
        "add_generation_prompt": True,
    },
    "20_bad_arguments_json": {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "", "tool_calls": [tc("get_weather", "{not json")]},
        ],
    },
    "21_alternation_assistant_first": {
        "messages": [
            {"role": "assistant", "content": "I start."},
            {"role": "user", "content": "fine"},
        ],
        "add_generation_prompt": True,
        "chat_template_kwargs": {"custom_flag": [1, 2, {"k": "v"}]},
    },
    "22_reasoning_none_content_think": {
        "messages": [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "<think>r1</think>a1", "reasoning_content": None},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "\n\n<think>\nr2\n\n</think>\n\n\na2"},
        ],
        "add_generation_prompt": True,
    },
}

# ---------------------------------------------------------------- unit cases: (template source, context)
UNIT = {
    "ws_trim_lstrip": ("A\n  {% if true %}\n    B\n  {% endif %}\nC\n{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\nD", {}),
    "ws_minus": ("a  \n {%- if true -%}  \n b {{- ' c ' -}} \n d\n{%- endif %}\n e", {}),
    "ws_plus": ("x\n    {%+ if true +%}\ny\n    {%+ endif %}\nz", {}),
    "ws_comments": ("a\n  {# comment #}\nb {#- c -#} c\n{# c2 #}d", {}),
    "ws_var_no_trim": ("{{ 'v' }}\n  {{ 'w' }}\n{% set x = 1 %}\nend\n", {}),
    "ws_raw": ("{% raw %}{{ not evaluated }} {% if %}{% endraw %}\nafter", {}),
    "ws_crlf": ("line1\r\n{% if true %}\r\nline2\r\n{% endif %}\r\n", {}),
    "loop_vars": (
        "{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
        "{{ loop.first }}{{ loop.last }}{{ loop.length }}[{{ loop.previtem }}|{{ loop.nextitem }}]{{ loop.cycle('o','e') }};{% endfor %}",
        {},
    ),
    "loop_filter_else": (
        "{% for x in items if x > 1 %}{{ x }}/{{ loop.length }},{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}",
        {"items": [1, 2, 3, 0, 5]},
    ),
    "loop_break_continue": ("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    "loop_unpack_items": ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d|items %}{{ k }}{% endfor %}", {"d": {"z": 1, "a": [1, 2], "m": None}}),
    "loop_scope": ("{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = i * 10 %}{{ x }};{% endfor %}{{ x }}", {}),
    "namespace": (
        "{% set ns = namespace(count=0, names='') %}{% for m in ms %}{% set ns.count = ns.count + 1 %}{% set ns.names = ns.names ~ m %}{% endfor %}{{ ns.count }} {{ ns.names }} {{ ns.missing is defined }}",
        {"ms": ["a", "b", "c"]},
    ),
    "macros": (
        "{% macro greet(name, greeting='Hello', punct='!') -%}{{ greeting }}, {{ name }}{{ punct }}{%- endmacro %}"
        "{{ greet('Ann') }}|{{ greet('Bob', 'Hi') }}|{{ greet(name='Cy', punct='?') }}"
        "{% macro va() %}{{ varargs|length }}{{ kwargs }}{% endmacro %}|{{ va(1, 2, k=3) }}"
        "{% macro wrap() %}<{{ caller() }}>{% endmacro %}|{% call wrap() %}inner{% endcall %}",
        {},
    ),
    "macro_late_binding": ("{% macro f() %}{{ x }}{% endmacro %}{% set x = 7 %}{{ f() }}", {}),
    "slicing": (
        "{{ s[1:] }}|{{ s[:-1] }}|{{ s[::-1] }}|{{ s[-2:] }}|{{ s[::2] }}|{{ l[1:3] }}|{{ l[::-1] }}|{{ l[5:] }}|{{ s[0] }}{{ s[-1] }}|{{ l[-1] }}|{{ l[10] }}",
        {"s": "héllo→✓", "l": [1, 2, 3, 4]},
    ),
    "tojson_formats": (
        "{{ v|tojson }}\n{{ v|tojson(indent=2) }}\n{{ v|tojson(sort_keys=true) }}\n{{ v|tojson(separators=(',', ':')) }}\n"
        "{{ v|tojson(ensure_ascii=true) }}\n{{ v|tojson(indent='\\t') }}\n{{ [] | tojson(indent=2) }}{{ {} | tojson }}\n{{ 'a\\u2028b\\x01\"\\\\'|tojson }}",
        {"v": {"b": [1, 2.5, 1e20, -0.0, True, None], "a": "é🎉\n\t", "c": {"x": {}}, "d": 1.0, "e": 0.1, "f": 123456789012}},
    ),
    "tojson_tuple_keys": ("{{ {1: 'a', true: 'b', none: 'c', 2.5: 'd'}|tojson }}|{{ (1, 'x')|tojson }}", {}),
    "printing": (
        "{{ 1.0 }} {{ 1e16 }} {{ 1e15 }} {{ 0.1 + 0.2 }} {{ 1/3 }} {{ 2.5e-5 }} {{ none }} {{ true }} {{ false }} {{ 10/4 }} {{ 10//4 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2**10 }} {{ 2**-1 }} {{ -7//2 }} {{ 3 * 1.5 }}\n"
        "{{ [1, 'a', none, true, 1.5, \"it's\", 'q\"'] }} {{ {'a': 1, 'b': [2]} }} {{ ('a',) }} {{ () }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ [1] + [2] }} {{ 'x' ~ 1 ~ none ~ 2.0 }}",
        {},
    ),
    "string_literals": ("{{ 'a\\nb\\tc\\u00e9\\x41\\\\\\'\"' }}|{{ \"dq \\\" sq '\" }}|{{ 'con' 'cat' }}", {}),
    "string_methods": (
        "{{ s.split() }}|{{ s.split(' ') }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|"
        "{{ s.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ s.lstrip() }}.|{{ s.rstrip() }}|{{ '\\n\\nx\\n'.lstrip('\\n') }}|"
        "{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('x', 'lo')) }}|{{ 'aaa'.replace('a', 'b', 2) }}|"
        "{{ 'Hello World'.upper() }}{{ 'Hello World'.lower() }}|{{ 'hello wORLD'.title() }}|{{ 'hello World'.capitalize() }}|"
        "{{ 'hello'.find('l') }}{{ 'hello'.rfind('l') }}{{ 'hello'.find('z') }}|{{ 'banana'.count('an') }}|{{ '-'.join(['a','b']) }}|"
        "{{ '12'.isdigit() }}{{ 'ab'.isalpha() }}|{{ 'a{}b{}'.format(1, 'x') }}",
        {"s": "  two  words\there \n"},
    ),
    "filters_basic": (
        "{{ missing|default('dflt') }}|{{ ''|default('e', true) }}|{{ 'x'|default('e') }}|{{ 'héllo'|length }}|{{ l|length }}|{{ d|length }}|"
        "{{ l|first }}{{ l|last }}|{{ l|join(',') }}|{{ l|join }}|{{ '  pad  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'aXa'|replace('a', 'b') }}|"
        "{{ 'MiXed'|lower }}{{ 'MiXed'|upper }}|{{ 'hello world'|title }}|{{ 'hello'|capitalize }}|{{ 42|string }}{{ none|string }}|"
        "{{ '42'|int + 1 }}|{{ 'x'|int }}|{{ '3.7'|float }}|{{ 3.7|int }}|{{ -3|abs }}|{{ 2.567|round(2) }}|{{ 2.5|round }}|{{ [3,1,2]|sort }}|"
        "{{ [3,1,2]|sort(reverse=true) }}|{{ ['b','A','a']|unique|list }}|{{ [1,2,3]|sum }}|{{ 'abc'|list }}|{{ [1,2,3]|reverse|list }}|{{ 'abc'|reverse }}|"
        "{{ [1,5,3]|max }}{{ [4,2,8]|min }}|{{ 'one two  three'|wordcount }}|{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ [1,2,3,4,5]|batch(2)|list }}|{{ 'ab'|center(6) }}.",
        {"l": [1, 2, 3], "d": {"a": 1}},
    ),
    "filters_collections": (
        "{{ users|map(attribute='name')|join(', ') }}|{{ ['a','b']|map('upper')|list }}|{{ users|selectattr('active')|map(attribute='name')|list }}|"
        "{{ users|rejectattr('active')|map(attribute='name')|list }}|{{ users|selectattr('age', 'gt', 30)|map(attribute='name')|list }}|"
        "{{ users|selectattr('name', 'equalto', 'Bo')|list|length }}|{{ [1,2,3,4]|select('odd')|list }}|{{ [1,2,3,4]|reject('even')|list }}|"
        "{{ d|dictsort }}|{{ d|items|list }}|{{ users|sort(attribute='age')|map(attribute='name')|join }}|{{ users|map(attribute='nick', default='?')|join }}|"
        "{{ users|join(';', attribute='name') }}|{{ d.keys()|list }}{{ d.values()|list }}|{{ d.get('b') }}{{ d.get('zz') }}{{ d.get('zz', 0) }}|{{ users[0].name }}{{ users[0]['age'] }}",
        {
            "users": [{"name": "Al", "age": 40, "active": True}, {"name": "Bo", "age": 25, "active": False}, {"name": "Cy", "age": 35, "active": True}],
            "d": {"b": 2, "a": 1, "c": 3},
        },
    ),
    "tests": (
        "{{ x is defined }}{{ missing is defined }}{{ missing is undefined }}{{ n is none }}{{ s is string }}{{ d is mapping }}{{ l is iterable }}"
        "{{ s is iterable }}{{ 3 is number }}{{ 3.5 is float }}{{ 3 is integer }}{{ true is boolean }}{{ l is sequence }}{{ d is sequence }}"
        "{{ 4 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ 1 is eq 1 }}{{ 2 is lt 3 }}{{ 'a' is in 'abc' }}{{ x is true }}{{ false is false }}"
        "{{ 1 is true }}{{ n is not none }}{{ s is not string }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ missing is iterable }}{{ s is sameas s }}",
        {"x": True, "n": None, "s": "str", "d": {}, "l": [1]},
    ),
    "operators": (
        "{{ 'a' in 'cat' }}{{ 'z' not in 'cat' }}{{ 2 in [1,2] }}{{ 'k' in {'k': 1} }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ 1 == 1.0 }}{{ true == 1 }}"
        "{{ 'a' < 'b' }}{{ [1,2] < [1,3] }}|{{ '' or 'b' }}|{{ 'a' and 'b' }}|{{ 0 or none }}|{{ not [] }}|{{ 'y' if x else 'n' }}|{{ 'y' if not x }}.|"
        "{{ -x_num }}{{ +x_num }}{{ - 2 ** 2 }}|{{ 1 + 2 * 3 - 4 / 2 }}|{{ (1, 2) == (1, 2) }}{{ [1] == [1] }}{{ {'a':1} == {'a':1} }}|{{ missing == missing }}{{ missing != 1 }}",
        {"x": True, "x_num": 5},
    ),
    "undefined_behaviour": (
        "[{{ missing }}][{{ d.missing }}][{{ d['missing'] }}][{{ missing ~ 'x' }}][{{ missing|default('d') }}][{{ missing|length }}]"
        "[{% for x in missing %}{{ x }}{% else %}empty{% endfor %}][{{ none.attr }}][{{ 5.attr }}][{{ 'str'.nope }}][{{ missing|trim }}][{{ missing|join }}][{{ missing|string }}]",
        {"d": {}},
    ),
    "set_block_filter": ("{% set x | upper %}abc {{ 'def' }}{% endset %}{{ x }}|{% filter upper %}up {{ 'me' }}{% endfilter %}|{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set t = (1,) %}{{ t }}", {}),
    "strftime": ("{{ strftime_now('%Y-%m-%d %H:%M:%S') }} {{ strftime_now('%d %b %Y') }} {{ strftime_now('%A %B %j') }}", {}),
    "dict_literals_iteration": ("{% set d = {'z': 1, 'a': 2, 'z2': {'n': [1, {'m': none}]}} %}{% for k in d %}{{ k }},{% endfor %}{{ d }}{{ d|tojson }}", {}),
    "generation_tag": ("{% for m in ms %}{% generation %}<{{ m }}>{% endgeneration %}{% endfor %}", {"ms": ["a", "b"]}),
    "recursion_macro": ("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * (fact(n - 1)|int) }}{% endif %}{% endmacro %}{{ fact(10) }}", {}),
    "context_values": ("{{ i }} {{ f }} {{ f2 }} {{ b }} {{ n }} {{ l }} {{ d }} {{ big }} {{ neg }} {{ e }}", {"i": 3, "f": 2.0, "f2": 1.5e-7, "b": False, "n": None, "l": [1, "two", 3.0], "d": {"k": [True]}, "big": 9007199254740993, "neg": -0.5, "e": ""}),
    # errors: expected to raise in jinja2
    "err_undefined_attr": ("ok {{ missing.attr }}", {}),
    "err_str_plus_int": ("{{ 'a' + 1 }}", {}),
    "err_raise_exception": ("{% if true %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}", {}),
    "err_none_length": ("{{ n|length }}", {"n": None}),
    "err_in_none": ("{{ 'a' in n }}", {"n": None}),
    "err_tojson_undefined": ("{{ missing|tojson }}", {}),
    "err_call_undefined": ("{{ n.strip() }}", {"n": None}),
    "err_undefined_plus": ("{{ missing + 'x' }}", {}),
    "err_syntax_unclosed_if": ("line1\n{% if true %}\nunclosed", {}),
    "err_syntax_bad_expr": ("a\nb {{ 1 + }} c", {}),
    "err_syntax_unknown_tag": ("x\n\n  {% frobnicate %}", {}),
    "err_syntax_unclosed_var": ("text {{ x ", {}),
    "err_syntax_unexpected_end": ("{% for x in y %}{% endif %}", {}),
    "err_range_too_big": ("{% for i in range(1000000) %}{% endfor %}", {}),
    "err_unpack": ("{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    "err_compare_types": ("{{ 1 < 'a' }}", {}),
    "err_div_zero": ("{{ 1 / 0 }}", {}),
    "err_set_attr_non_namespace": ("{% set d = {} %}{% set d.x = 1 %}", {}),
}


def load_case_file(path):
    """tools/chat/unit_cases.txt: template [\n----\n context JSON] blocks separated by \n====\n."""
    cases = {}
    for i, block in enumerate(path.read_text(encoding="utf-8").split("\n====\n")):
        if not block.strip():
            continue
        src, _, ctx = block.partition("\n----\n")
        cases[f"case_{i:03d}"] = (src, json.loads(ctx) if ctx.strip() else {})
    return cases


def render_unit(env, src, ctx):
    try:
        tmpl = env.from_string(src)
    except jinja2.TemplateSyntaxError as e:
        return None, f"syntax line {e.lineno}: {e.message}"
    try:
        return tmpl.render(**ctx), None
    except Exception as e:  # noqa: BLE001 - any jinja2/Python error means glint must fail too
        return None, f"{type(e).__name__}: {e}"


def main():
    os.environ["GLINT_FIXED_DATE"] = FIXED_DATE
    env = make_env()
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "models").mkdir(parents=True)
    (OUT / "requests").mkdir()
    (OUT / "expected").mkdir()
    (OUT / "unit").mkdir()
    manifest = []
    passing = errors = 0
    (OUT / "templates").mkdir()
    for name, model in MODELS.items():
        src = (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
        (OUT / "templates" / f"{name}.jinja").write_text(src, encoding="utf-8")  # raw copies for robustness tests
        mdir = OUT / "models" / name
        mdir.mkdir()
        config = dict(model["config"])
        if model["inline"]:
            config["chat_template"] = src
        else:
            (mdir / "chat_template.jinja").write_text(src, encoding="utf-8")
        (mdir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
        specials = special_tokens(config)
        tmpl = env.from_string(src)
        (OUT / "expected" / name).mkdir()
        for conv, request in CONVERSATIONS.items():
            try:
                text, err = tmpl.render(**chat_context(request, specials)), None
            except Exception as e:  # noqa: BLE001
                text, err = None, f"{type(e).__name__}: {e}"
            if err is None:
                (OUT / "expected" / name / f"{conv}.txt").write_bytes(text.encode("utf-8"))
                passing += 1
                manifest.append(f"chat\t{name}\t{conv}\tok")
            else:
                (OUT / "expected" / name / f"{conv}.error").write_text(err + "\n", encoding="utf-8")
                errors += 1
                manifest.append(f"chat\t{name}\t{conv}\terror")
    for conv, request in CONVERSATIONS.items():
        (OUT / "requests" / f"{conv}.json").write_text(json.dumps(request, ensure_ascii=False, indent=1), encoding="utf-8")
    unit = dict(UNIT)
    unit.update(load_case_file(Path(__file__).with_name("unit_cases.txt")))
    for uname, (src, ctx) in unit.items():
        (OUT / "unit" / f"{uname}.jinja").write_bytes(src.encode("utf-8"))
        (OUT / "unit" / f"{uname}.json").write_text(json.dumps(ctx, ensure_ascii=False), encoding="utf-8")
        text, err = render_unit(env, src, ctx)
        if err is None:
            (OUT / "unit" / f"{uname}.txt").write_bytes(text.encode("utf-8"))
            manifest.append(f"unit\t-\t{uname}\tok")
        else:
            (OUT / "unit" / f"{uname}.error").write_text(err + "\n", encoding="utf-8")
            manifest.append(f"unit\t-\t{uname}\terror")
    (OUT / "MANIFEST.tsv").write_text("\n".join(manifest) + "\n", encoding="utf-8")
    print(f"chat goldens: {passing} renders, {errors} expected errors; {len(unit)} unit cases -> {OUT}")


if __name__ == "__main__":
    main()
