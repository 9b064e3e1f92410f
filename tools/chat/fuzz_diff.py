#!/usr/bin/env python3
"""Differential fuzzing of glint's Jinja whitespace/lexer/expression handling against jinja2.

Builds random templates from fragments (text with spaces/tabs/newlines, block/variable/comment tags
with -/+ modifiers, raw blocks, nested if/for/set/macro) and compares `glint render-chat --template`
with jinja2 in transformers' configuration. Usage: python3 tools/chat/fuzz_diff.py build/glint [N] [SEED] [ws|expr]
Not part of CTest (needs jinja2); failing templates are written to /tmp/glint_fuzz_*.jinja.
"""
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import make_goldens as mg  # noqa: E402

WS = ["", " ", "  ", "\t", "\n", "\n\n", " \n", "\n  ", "  \n  ", "\r\n"]
TEXT = ["a", "b c", "x", "<|tok|>", "é", "{", "}", "%", "#"]
MOD = ["", "-", "+"]
EXPRS = ["x", "'s'", "1", "x ~ 'y'", "n + 1", "l[0]", "l|length", "'a' if x else 'b'", "none", "d.k", "l[::-1]",
         "x|upper", "n * 2.5", "d|tojson", "[1, 'a']", "loop.index if loop is defined else 0"]
CONDS = ["x", "not x", "n > 1", "x == 'v'", "l", "missing is defined", "d.k is string", "n is even"]


def ws():
    return random.choice(WS)


def text():
    return "".join(random.choice(TEXT) + ws() for _ in range(random.randint(0, 3)))


def var():
    return "{{" + random.choice(["", "-"]) + " " + random.choice(EXPRS) + " " + random.choice(["", "-"]) + "}}"


def tag(body):
    return "{%" + random.choice(MOD) + " " + body + " " + random.choice(MOD) + "%}"


def block(depth):
    parts = []
    for _ in range(random.randint(1, 4)):
        r = random.random()
        if r < 0.3 or depth > 2:
            parts.append(ws() + text() + ws())
        elif r < 0.45:
            parts.append(ws() + var() + ws())
        elif r < 0.6:
            parts.append(ws() + tag("if " + random.choice(CONDS)) + block(depth + 1) +
                         (tag("else") + block(depth + 1) if random.random() < 0.5 else "") + tag("endif") + ws())
        elif r < 0.72:
            parts.append(ws() + tag("for i in l") + block(depth + 1) + tag("endfor") + ws())
        elif r < 0.8:
            parts.append(ws() + tag("set y = " + random.choice(EXPRS)) + ws())
        elif r < 0.88:
            parts.append(ws() + "{#" + random.choice(MOD) + " c " + random.choice(MOD) + "#}" + ws())
        elif r < 0.93:
            parts.append(ws() + tag("raw") + text() + "{{ y }}" + ws() + tag("endraw") + ws())
        else:
            parts.append(ws() + tag("macro m(a)") + block(depth + 1) + tag("endmacro") + "{{ m(1) }}" + ws())
    return "".join(parts)


ATOMS = ["1", "0", "-2", "2.5", "0.1", "1e3", "'ab'", "''", "'a b '", "\"x'y\"", "none", "true", "false", "[]", "[1, 2]",
         "['b', 'a']", "{}", "{'k': 1}", "(1,)", "x", "n", "l", "d", "s", "missing", "f", "e", "t"]
BINOPS = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or"]
FILTERS = ["length", "first", "last", "string", "upper", "lower", "trim", "tojson", "list", "reverse", "sort",
           "unique", "int", "float", "abs", "default('D')", "join(',')", "join", "title", "capitalize", "items",
           "select('odd')", "map('string')", "sum", "min", "max", "round", "wordcount", "replace('a', 'Z')",
           "center(5)", "indent(2)", "batch(2)|list", "dictsort", "tojson(indent=1)", "tojson(sort_keys=true)",
           "count", "d(0, true)"]
TESTS = ["defined", "undefined", "none", "string", "number", "mapping", "iterable", "sequence", "integer", "float",
         "boolean", "true", "false", "even", "odd", "lower", "upper", "callable", "eq 1", "in [1, 'ab']",
         "divisibleby 2", "sameas none", "gt 1"]
METHODS = ["split()", "split('a')", "strip()", "strip('a')", "upper()", "startswith('a')", "endswith(('b', 'c'))",
           "replace('a', '')", "find('b')", "count('a')", "items()", "keys()", "values()", "get('k')", "get('z', 3)",
           "index(1)", "rsplit(' ', 1)", "lstrip()", "title()", "format(1)", "splitlines()", "isdigit()"]


def expr(depth=0):
    r = random.random()
    if depth > 3 or r < 0.25:
        return random.choice(ATOMS)
    if r < 0.45:
        return expr(depth + 1) + " " + random.choice(BINOPS) + " " + expr(depth + 1)
    if r < 0.6:
        return "(" + expr(depth + 1) + ")|" + random.choice(FILTERS)
    if r < 0.7:
        return "(" + expr(depth + 1) + ") is " + random.choice(["", "not "]) + random.choice(TESTS)
    if r < 0.8:
        return "(" + expr(depth + 1) + ")." + random.choice(METHODS)
    if r < 0.87:
        return "(" + expr(depth + 1) + ")[" + random.choice(["0", "-1", "1:", ":-1", "::-1", "'k'", "::2"]) + "]"
    if r < 0.93:
        return random.choice(["not ", "-"]) + "(" + expr(depth + 1) + ")"
    return "(" + expr(depth + 1) + " if " + expr(depth + 1) + " else " + expr(depth + 1) + ")"


def main():
    glint = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    random.seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    mode = sys.argv[4] if len(sys.argv) > 4 else "ws"
    env = mg.make_env()
    ctx = {"x": "v", "n": 3, "l": [1, "two"], "d": {"k": "s"}, "s": "Hello World", "f": 1.5, "e": "", "t": [3, 1, 2]}
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jinja"
        for i in range(count):
            src = block(0) if mode == "ws" else "{{ " + expr() + " }}"
            try:
                want, werr = env.from_string(src).render(messages=[], tools=None, documents=None,
                                                         add_generation_prompt=False, **ctx), None
            except Exception as e:  # noqa: BLE001
                want, werr = None, e
            path.write_bytes(src.encode())
            p = subprocess.run([glint, "render-chat", "--template", str(path)],
                               input=json.dumps({"messages": [], "chat_template_kwargs": ctx}).encode(),
                               capture_output=True)
            got = p.stdout.decode() if p.returncode == 0 else None
            if got != want and not (want is None and p.returncode == 1):
                bad += 1
                Path(f"/tmp/glint_fuzz_{i}.jinja").write_bytes(src.encode())
                print(f"case {i}: {src!r}\n  jinja2: {want!r} {werr or ''}\n  glint:  {got!r} {p.stderr.decode().strip()}")
    print(f"{count} templates, {bad} mismatches")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
