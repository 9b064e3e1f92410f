// Error reporting and robustness: syntax errors name name:line:col, hostile templates hit limits
// instead of crashing, and every truncation of the real templates parses or fails cleanly.
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "text/chat.h"

static int failures = 0;

static void expect_parse_error(const char *src, const char *want_prefix) {
    glint_clear_error();
    glint_template *t = glint_template_parse(src, strlen(src), "t.jinja");
    if (t) { fprintf(stderr, "FAIL: parsed but should not: %s\n", src); failures++; glint_template_free(t); return; }
    if (strncmp(glint_last_error(), want_prefix, strlen(want_prefix)) != 0) {
        fprintf(stderr, "FAIL: error '%s' should start with '%s'\n", glint_last_error(), want_prefix);
        failures++;
    }
}

static void expect_render_error(const char *src, const char *ctx_json, const char *want_substring) {
    glint_clear_error();
    glint_template *t = glint_template_parse(src, strlen(src), "t.jinja");
    if (!t) { fprintf(stderr, "FAIL: parse error %s\n", glint_last_error()); failures++; return; }
    json_t *ctx = json_loads(ctx_json, 0, NULL);
    size_t n;
    char *out = glint_template_render(t, ctx, &n);
    if (out) { fprintf(stderr, "FAIL: rendered but should fail: %.60s\n", src); failures++; free(out); }
    else if (!strstr(glint_last_error(), want_substring)) {
        fprintf(stderr, "FAIL: error '%s' should contain '%s'\n", glint_last_error(), want_substring);
        failures++;
    }
    json_decref(ctx);
    glint_template_free(t);
}

static char *repeat(const char *a, int n, const char *mid, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la * (size_t)n + strlen(mid) + lb * (size_t)n + 1), *p = s;
    for (int i = 0; i < n; i++) { memcpy(p, a, la); p += la; }
    strcpy(p, mid);
    p += strlen(mid);
    for (int i = 0; i < n; i++) { memcpy(p, b, lb); p += lb; }
    *p = 0;
    return s;
}

// Every prefix of a real template must parse or fail with a located message, and render or fail.
static void truncations(const char *path) {
    size_t len;
    char *src = glint_read_text_file(path, &len);
    if (!src) { fprintf(stderr, "skip %s (not found)\n", path); return; }
    json_t *ctx = json_loads("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"x\","
                             "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]}],"
                             "\"tools\":[{\"type\":\"function\"}],\"add_generation_prompt\":true,\"bos_token\":\"<s>\"}", 0, NULL);
    for (size_t cut = 0; cut <= len; cut++) {
        glint_clear_error();
        glint_template *t = glint_template_parse(src, cut, "cut.jinja");
        if (!t) {
            if (strncmp(glint_last_error(), "cut.jinja:", 10) != 0) {
                fprintf(stderr, "FAIL: prefix %zu of %s: unlocated error '%s'\n", cut, path, glint_last_error());
                failures++;
            }
            continue;
        }
        size_t n;
        free(glint_template_render(t, ctx, &n));
        glint_template_free(t);
    }
    json_decref(ctx);
    free(src);
}

// Random single-byte edits of a real template (deterministic): parse + render must never crash.
static void mutations(const char *path, int rounds) {
    size_t len;
    char *src = glint_read_text_file(path, &len);
    if (!src || !len) { free(src); return; }
    static const char alphabet[] = "{}%#-+()[]'\"|.~:,=! \n\tax0_\\";
    json_t *ctx = json_loads("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"hi\"},"
                             "{\"role\":\"assistant\",\"content\":\"<think>r</think>x\",\"tool_calls\":[{\"function\":"
                             "{\"name\":\"f\",\"arguments\":{\"a\":[1,{\"b\":null}]}}}]},{\"role\":\"tool\",\"content\":\"r\"}],"
                             "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"add_generation_prompt\":true,"
                             "\"bos_token\":\"<s>\"}", 0, NULL);
    char *buf = malloc(len + 2);
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (int r = 0; r < rounds; r++) {
        memcpy(buf, src, len);
        size_t n = len;
        for (int edits = 0; edits < 1 + r % 3; edits++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            size_t at = (size_t)(state % n);
            char c = alphabet[(state >> 32) % (sizeof alphabet - 1)];
            switch ((state >> 40) % 3) {
            case 0: buf[at] = c; break;
            case 1: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
            default: memmove(buf + at + 1, buf + at, n - at); buf[at] = c; n++; break;
            }
            if (n == 0 || n > len + 1) break;
        }
        glint_template *t = glint_template_parse(buf, n, "mut.jinja");
        if (t) {
            size_t out_len;
            free(glint_template_render(t, ctx, &out_len));
            glint_template_free(t);
        }
    }
    free(buf);
    json_decref(ctx);
    free(src);
}

int main(int argc, char **argv) {
    expect_parse_error("hello\n  {% if x %}\n", "t.jinja:2:");
    expect_parse_error("a\nb {{ 1 + }} c", "t.jinja:2:");
    expect_parse_error("x\n\n  {% frobnicate %}", "t.jinja:3:6:");
    expect_parse_error("{{ 'unterminated }}", "t.jinja:1:4:");
    expect_parse_error("{% for x in y %}{% endif %}", "t.jinja:1:");
    expect_parse_error("{{ x | }}", "t.jinja:1:");
    expect_parse_error("{# never closed", "t.jinja:1:1:");
    expect_parse_error("{{ '\\xZZ' }}", "t.jinja:1:");
    expect_parse_error("hello \xff {{ x }}", "t.jinja: invalid UTF-8 at byte 6");  // not text, as in jinja2

    // nesting and size limits: errors, never a crash
    char *deep = repeat("(", 100000, "1", ")");
    char *tmpl = malloc(strlen(deep) + 8);
    sprintf(tmpl, "{{ %s }}", deep);
    expect_parse_error(tmpl, "t.jinja:1:");
    free(deep);
    free(tmpl);
    char *deep_if = repeat("{% if true %}", 5000, "x", "{% endif %}");
    expect_parse_error(deep_if, "t.jinja:1:");
    free(deep_if);
    expect_render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "{}", "too deeply");
    expect_render_error("{{ ('x' * 200000000) * 2 }}", "{}", "too large");
    expect_render_error("{% for i in range(1000000) %}{% endfor %}", "{}", "MAX_RANGE");
    expect_render_error("\n\n   {{ raise_exception('roles must alternate') }}", "{}", "t.jinja:3:7: raise_exception: roles must alternate");
    expect_render_error("{{ m.content.strip() }}", "{\"m\": {\"content\": null}}", "t.jinja:1:");
    expect_render_error("{% set ns = namespace(a=1) %}{% set ns.self = ns %}{{ ns.self.a ~ ns|tojson }}", "{}", "not JSON serializable");

    // chat helpers: invalid arguments JSON, wrong types
    json_t *msgs = json_loads("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}]", 0, NULL);
    glint_clear_error();
    json_t *norm = glint_chat_normalize_messages(msgs);
    if (norm || !strstr(glint_last_error(), "messages[0].tool_calls[0].function.arguments")) {
        fprintf(stderr, "FAIL: non-object arguments accepted (%s)\n", glint_last_error());
        failures++;
    }
    json_decref(norm);
    json_decref(msgs);

    for (int i = 1; i < argc; i++) {
        truncations(argv[i]);
        mutations(argv[i], 1500);
    }
    printf("jinja error tests: %d failed\n", failures);
    return failures ? 1 : 0;
}
