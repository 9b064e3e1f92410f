// glm45 reasoning and glm47 tool-call parsers (see parsers.h and spec/SERVING.md §2).
#include "server/parsers.h"

#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char THINK_START[] = "<think>";
static const char THINK_END[] = "</think>";
static const char TOOL_START[] = "<tool_call>";
static const char TOOL_END[] = "</tool_call>";
static const char KEY_START[] = "<arg_key>";
static const char KEY_END[] = "</arg_key>";
static const char VALUE_START[] = "<arg_value>";
static const char VALUE_END[] = "</arg_value>";

// Length of the longest suffix of s[0..n) that is a proper prefix of one of the tags: that much
// must be held back because the next text may complete the tag.
static size_t partial_tag_suffix(const char *s, size_t n, const char *const *tags, int n_tags) {
    size_t best = 0;
    for (int t = 0; t < n_tags; t++) {
        size_t tl = strlen(tags[t]);
        for (size_t k = tl - 1; k > best; k--)
            if (k <= n && !memcmp(s + n - k, tags[t], k)) {
                best = k;
                break;
            }
    }
    return best;
}

static const char *find_bytes(const char *s, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m > n) return NULL;
    for (size_t i = 0; i + m <= n; i++)
        if (s[i] == needle[0] && !memcmp(s + i, needle, m)) return s + i;
    return NULL;
}

// ---------------------------------------------------------------- reasoning

void glint_reasoning_init(glint_reasoning_parser *p, int start_in_reasoning) {
    memset(p, 0, sizeof *p);
    p->in_reasoning = start_in_reasoning;
}

void glint_reasoning_free(glint_reasoning_parser *p) { glint_buf_free(&p->pending); }

void glint_reasoning_push(glint_reasoning_parser *p, const char *text, size_t len, glint_buf *reasoning,
                          glint_buf *content) {
    glint_buf_append(&p->pending, text, len);
    for (;;) {
        glint_buf *b = &p->pending;
        if (!b->len) return;
        if (!p->in_reasoning) {
            // Outside reasoning only a leading <think> opens a block (GLM puts it in the prompt).
            if (!p->start_stripped && b->len >= sizeof THINK_START - 1 &&
                !memcmp(b->data, THINK_START, sizeof THINK_START - 1)) {
                glint_buf_consume(b, sizeof THINK_START - 1);
                p->start_stripped = 1;
                p->in_reasoning = 1;
                continue;
            }
            if (!p->start_stripped && b->len < sizeof THINK_START - 1 && !memcmp(THINK_START, b->data, b->len))
                return;  // may still become <think>
            p->start_stripped = 1;
            glint_buf_append(content, b->data, b->len);
            glint_buf_clear(b);
            return;
        }
        if (!p->start_stripped) {
            if (b->len >= sizeof THINK_START - 1 && !memcmp(b->data, THINK_START, sizeof THINK_START - 1)) {
                glint_buf_consume(b, sizeof THINK_START - 1);
                p->start_stripped = 1;
                continue;
            }
            if (b->len < sizeof THINK_START - 1 && !memcmp(THINK_START, b->data, b->len)) return;
            p->start_stripped = 1;
        }
        const char *end = find_bytes(b->data, b->len, THINK_END);
        const char *tool = find_bytes(b->data, b->len, TOOL_START);
        if (end && (!tool || end < tool)) {
            glint_buf_append(reasoning, b->data, (size_t)(end - b->data));
            glint_buf_consume(b, (size_t)(end - b->data) + sizeof THINK_END - 1);
            p->in_reasoning = 0;
            glint_buf_append(content, b->data, b->len);
            glint_buf_clear(b);
            return;
        }
        if (tool) {  // a tool call ends reasoning; the call itself goes on as content
            glint_buf_append(reasoning, b->data, (size_t)(tool - b->data));
            glint_buf_consume(b, (size_t)(tool - b->data));
            p->in_reasoning = 0;
            glint_buf_append(content, b->data, b->len);
            glint_buf_clear(b);
            return;
        }
        static const char *const tags[] = {THINK_END, TOOL_START};
        size_t hold = partial_tag_suffix(b->data, b->len, tags, 2);
        glint_buf_append(reasoning, b->data, b->len - hold);
        glint_buf_consume(b, b->len - hold);
        return;
    }
}

void glint_reasoning_finish(glint_reasoning_parser *p, glint_buf *reasoning, glint_buf *content) {
    glint_buf *b = &p->pending;
    if (p->in_reasoning) {
        if (!p->start_stripped && !memcmp(THINK_START, b->data ? b->data : "", b->len)) glint_buf_clear(b);
        glint_buf_append(reasoning, b->data ? b->data : "", b->len);
    } else {
        glint_buf_append(content, b->data ? b->data : "", b->len);
    }
    glint_buf_clear(b);
}

// ---------------------------------------------------------------- JSON text as Python writes it

static void dump_string(glint_buf *o, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': glint_buf_puts(o, "\\\""); break;
        case '\\': glint_buf_puts(o, "\\\\"); break;
        case '\n': glint_buf_puts(o, "\\n"); break;
        case '\r': glint_buf_puts(o, "\\r"); break;
        case '\t': glint_buf_puts(o, "\\t"); break;
        case '\b': glint_buf_puts(o, "\\b"); break;
        case '\f': glint_buf_puts(o, "\\f"); break;
        default:
            if (c < 0x20) {
                char esc[8];
                snprintf(esc, sizeof esc, "\\u%04x", c);
                glint_buf_puts(o, esc);
            } else {
                glint_buf_append(o, (const char *)&s[i], 1);
            }
        }
    }
}

// Shortest text that reads back as the same double, in the style of Python's repr.
static void dump_real(glint_buf *o, double v) {
    char text[64];
    if (isnan(v)) {
        glint_buf_puts(o, "NaN");
        return;
    }
    if (isinf(v)) {
        glint_buf_puts(o, v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, v);
        if (strtod(text, NULL) == v) break;
    }
    glint_buf_puts(o, text);
    if (!strpbrk(text, ".e")) glint_buf_puts(o, ".0");
}

static void dump_value(glint_buf *o, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *item;
        int first = 1;
        glint_buf_puts(o, "{");
        json_object_foreach((json_t *)v, key, item) {
            if (!first) glint_buf_puts(o, ", ");
            first = 0;
            glint_buf_puts(o, "\"");
            dump_string(o, key, strlen(key));
            glint_buf_puts(o, "\": ");
            dump_value(o, item);
        }
        glint_buf_puts(o, "}");
        break;
    }
    case JSON_ARRAY: {
        glint_buf_puts(o, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) glint_buf_puts(o, ", ");
            dump_value(o, json_array_get(v, i));
        }
        glint_buf_puts(o, "]");
        break;
    }
    case JSON_STRING:
        glint_buf_puts(o, "\"");
        dump_string(o, json_string_value(v), json_string_length(v));
        glint_buf_puts(o, "\"");
        break;
    case JSON_INTEGER: {
        char text[32];
        snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
        glint_buf_puts(o, text);
        break;
    }
    case JSON_REAL: dump_real(o, json_real_value(v)); break;
    case JSON_TRUE: glint_buf_puts(o, "true"); break;
    case JSON_FALSE: glint_buf_puts(o, "false"); break;
    case JSON_NULL: glint_buf_puts(o, "null"); break;
    }
}

char *glint_python_json_dumps(const json_t *value) {
    glint_buf o = {0};
    dump_value(&o, value);
    return o.data;
}

void glint_tool_call_id(char out[30]) {
    unsigned char bytes[12];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) {
        // No entropy source: fall back to the clock mixed with a counter; ids need only be unique.
        static _Atomic uint64_t counter;
        uint64_t x = (uint64_t)time(NULL) ^ (++counter * 0x9E3779B97F4A7C15ull);
        for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)(x >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    memcpy(out, "call_", 5);
    for (size_t i = 0; i < sizeof bytes; i++) snprintf(out + 5 + 2 * i, 3, "%02x", bytes[i]);
}

// ---------------------------------------------------------------- tool calls (glm47)

typedef enum { T_TEXT, T_NAME, T_DROP, T_KEY, T_BEFORE_VALUE, T_VALUE, T_AFTER_VALUE } tool_state;

struct glint_tool_parser {
    const json_t *tools;
    tool_state state;
    glint_buf pending;   // unconsumed input
    glint_buf raw_call;  // text of the current call from <tool_call> (one-shot fallback)
    glint_buf field;     // name / key / non-streamed value being collected
    int n_calls;         // calls announced
    int n_args;          // arguments emitted in the current call
    const json_t *schema;  // parameters.properties of the current tool (may be NULL)
    char *key;             // current argument name
    int value_streams;     // the current value is streamed as a JSON string
    int value_started;     // the first byte of the value has been seen
};

glint_tool_parser *glint_tool_parser_new(const json_t *tools) {
    glint_tool_parser *p = calloc(1, sizeof *p);
    if (p) p->tools = tools;
    return p;
}

void glint_tool_parser_free(glint_tool_parser *p) {
    if (!p) return;
    glint_buf_free(&p->pending), glint_buf_free(&p->raw_call), glint_buf_free(&p->field);
    free(p->key);
    free(p);
}

int glint_tool_parser_calls(const glint_tool_parser *p) { return p->n_calls; }

void glint_tool_output_clear(glint_tool_output *o) {
    glint_buf_clear(&o->content);
    for (int i = 0; i < o->n_deltas; i++) {
        free(o->deltas[i].id), free(o->deltas[i].name);
        glint_buf_free(&o->deltas[i].arguments);
    }
    o->n_deltas = 0;
}

void glint_tool_output_free(glint_tool_output *o) {
    glint_tool_output_clear(o);
    glint_buf_free(&o->content);
    free(o->deltas);
    o->deltas = NULL;
    o->cap_deltas = 0;
}

static glint_tool_delta *new_delta(glint_tool_output *o, int index) {
    if (o->n_deltas == o->cap_deltas) {
        int cap = o->cap_deltas ? 2 * o->cap_deltas : 4;
        glint_tool_delta *grown = realloc(o->deltas, (size_t)cap * sizeof *grown);
        if (!grown) abort();
        o->deltas = grown;
        o->cap_deltas = cap;
    }
    glint_tool_delta *d = &o->deltas[o->n_deltas++];
    memset(d, 0, sizeof *d);
    d->index = index;
    return d;
}

static void emit_args(glint_tool_parser *p, glint_tool_output *o, const char *text, size_t n) {
    if (!n) return;
    int index = p->n_calls - 1;
    glint_tool_delta *last = o->n_deltas ? &o->deltas[o->n_deltas - 1] : NULL;
    // The delta that announces a call carries no arguments (sglang sends the name with "").
    if (!last || last->index != index || last->name) last = new_delta(o, index);
    glint_buf_append(&last->arguments, text, n);
}

static const json_t *find_tool_properties(const json_t *tools, const char *name, int *found) {
    *found = 0;
    for (size_t i = 0; i < json_array_size(tools); i++) {
        const json_t *fn = json_object_get(json_array_get(tools, i), "function");
        const char *tool_name = json_string_value(json_object_get(fn, "name"));
        if (tool_name && !strcmp(tool_name, name)) {
            *found = 1;
            return json_object_get(json_object_get(fn, "parameters"), "properties");
        }
    }
    return NULL;
}

// The JSON-schema type of one argument ("string", "integer", ...), or NULL when unknown.
static const char *argument_type(const json_t *properties, const char *key) {
    const json_t *prop = json_object_get(properties, key);
    if (!json_is_object(prop)) return NULL;
    const json_t *type = json_object_get(prop, "type");
    if (json_is_string(type)) return json_string_value(type);
    if (json_is_array(type)) {
        for (size_t i = 0; i < json_array_size(type); i++) {
            const char *t = json_string_value(json_array_get(type, i));
            if (t && strcmp(t, "null")) return t;
        }
    }
    static const char *const unions[] = {"anyOf", "oneOf", "allOf"};
    for (int u = 0; u < 3; u++) {
        const json_t *alts = json_object_get(prop, unions[u]);
        for (size_t i = 0; i < json_array_size(alts); i++) {
            const char *t = json_string_value(json_object_get(json_array_get(alts, i), "type"));
            if (t && strcmp(t, "null")) return t;
        }
    }
    if (json_is_array(json_object_get(prop, "enum"))) {
        const json_t *first = json_array_get(json_object_get(prop, "enum"), 0);
        if (json_is_string(first)) return "string";
    }
    return NULL;
}

static json_t *parse_json_text(const char *s, size_t n) {
    return json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

// A value's JSON by the tool's schema: strings stay raw text (a quoted JSON string is unquoted);
// other types are parsed as JSON, then as Python literals True/False/None, else kept as text.
static json_t *coerce_value(const char *type, const char *s, size_t n) {
    json_t *parsed = parse_json_text(s, n);
    if (type && !strcmp(type, "string")) {
        if (json_is_string(parsed)) return parsed;
        json_decref(parsed);
        return json_stringn(s, n);
    }
    if (parsed) return parsed;
    if (type) {
        if (n == 4 && !memcmp(s, "True", 4)) return json_true();
        if (n == 5 && !memcmp(s, "False", 5)) return json_false();
        if (n == 4 && !memcmp(s, "None", 4)) return json_null();
    }
    return json_stringn(s, n);
}

static char *strip_copy(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *out = malloc(n + 1);
    if (!out) abort();
    memcpy(out, s, n);
    out[n] = 0;
    return out;
}

static void end_call(glint_tool_parser *p, glint_tool_output *o) {
    if (p->state != T_DROP) emit_args(p, o, p->n_args ? "}" : "{}", p->n_args ? 1 : 2);
    p->state = T_TEXT;
    glint_buf_clear(&p->raw_call);
    free(p->key);
    p->key = NULL;
}

// Consumes `n` bytes of pending input, recording them in the raw text of the current call.
static void take(glint_tool_parser *p, size_t n) {
    if (p->state != T_TEXT) glint_buf_append(&p->raw_call, p->pending.data, n);
    glint_buf_consume(&p->pending, n);
}

void glint_tool_parser_push(glint_tool_parser *p, const char *text, size_t len, glint_tool_output *o) {
    glint_buf_append(&p->pending, text, len);
    for (;;) {
        glint_buf *b = &p->pending;
        if (!b->len) return;
        switch (p->state) {
        case T_TEXT: {
            const char *start = find_bytes(b->data, b->len, TOOL_START);
            const char *stray = find_bytes(b->data, b->len, TOOL_END);
            if (stray && (!start || stray < start)) {  // a stray </tool_call> is dropped from content
                glint_buf_append(&o->content, b->data, (size_t)(stray - b->data));
                glint_buf_consume(b, (size_t)(stray - b->data) + sizeof TOOL_END - 1);
                continue;
            }
            if (start) {
                glint_buf_append(&o->content, b->data, (size_t)(start - b->data));
                glint_buf_consume(b, (size_t)(start - b->data));
                p->state = T_NAME;
                glint_buf_clear(&p->raw_call);
                glint_buf_clear(&p->field);
                take(p, sizeof TOOL_START - 1);
                continue;
            }
            static const char *const tags[] = {TOOL_START, TOOL_END};
            size_t hold = partial_tag_suffix(b->data, b->len, tags, 2);
            glint_buf_append(&o->content, b->data, b->len - hold);
            glint_buf_consume(b, b->len - hold);
            return;
        }
        case T_NAME: {
            const char *key = find_bytes(b->data, b->len, KEY_START);
            const char *end = find_bytes(b->data, b->len, TOOL_END);
            const char *stop = key && (!end || key < end) ? key : end;
            if (!stop) {
                static const char *const tags[] = {KEY_START, TOOL_END};
                size_t hold = partial_tag_suffix(b->data, b->len, tags, 2);
                glint_buf_append(&p->field, b->data, b->len - hold);
                take(p, b->len - hold);
                return;
            }
            glint_buf_append(&p->field, b->data, (size_t)(stop - b->data));
            take(p, (size_t)(stop - b->data));
            char *name = strip_copy(p->field.data ? p->field.data : "", p->field.len);
            int found;
            p->schema = find_tool_properties(p->tools, name, &found);
            if (!found) {
                free(name);
                p->state = T_DROP;
                continue;
            }
            glint_tool_delta *d = new_delta(o, p->n_calls++);
            d->name = name;
            d->id = malloc(30);
            if (!d->id) abort();
            glint_tool_call_id(d->id);
            p->n_args = 0;
            if (stop == end) {
                take(p, sizeof TOOL_END - 1);
                end_call(p, o);
            } else {
                take(p, sizeof KEY_START - 1);
                glint_buf_clear(&p->field);
                p->state = T_KEY;
            }
            continue;
        }
        case T_DROP: {  // a call to an unknown tool: skipped whole
            const char *end = find_bytes(b->data, b->len, TOOL_END);
            if (!end) {
                static const char *const tags[] = {TOOL_END};
                size_t hold = partial_tag_suffix(b->data, b->len, tags, 1);
                take(p, b->len - hold);
                return;
            }
            take(p, (size_t)(end - b->data) + sizeof TOOL_END - 1);
            end_call(p, o);
            continue;
        }
        case T_KEY: {
            const char *end = find_bytes(b->data, b->len, KEY_END);
            if (!end) {
                static const char *const tags[] = {KEY_END};
                size_t hold = partial_tag_suffix(b->data, b->len, tags, 1);
                glint_buf_append(&p->field, b->data, b->len - hold);
                take(p, b->len - hold);
                return;
            }
            glint_buf_append(&p->field, b->data, (size_t)(end - b->data));
            take(p, (size_t)(end - b->data) + sizeof KEY_END - 1);
            free(p->key);
            p->key = strip_copy(p->field.data ? p->field.data : "", p->field.len);
            glint_buf prefix = {0};
            glint_buf_puts(&prefix, p->n_args ? ", \"" : "{\"");
            dump_string(&prefix, p->key, strlen(p->key));
            glint_buf_puts(&prefix, "\": ");
            emit_args(p, o, prefix.data, prefix.len);
            glint_buf_free(&prefix);
            p->n_args++;
            p->state = T_BEFORE_VALUE;
            continue;
        }
        case T_BEFORE_VALUE: {
            const char *start = find_bytes(b->data, b->len, VALUE_START);
            if (!start) {
                static const char *const tags[] = {VALUE_START};
                size_t hold = partial_tag_suffix(b->data, b->len, tags, 1);
                take(p, b->len - hold);  // whitespace (or a literal \n) between key and value
                return;
            }
            take(p, (size_t)(start - b->data) + sizeof VALUE_START - 1);
            const char *type = argument_type(p->schema, p->key);
            p->value_streams = type && !strcmp(type, "string");
            p->value_started = 0;
            glint_buf_clear(&p->field);
            p->state = T_VALUE;
            continue;
        }
        case T_VALUE: {
            const char *end = find_bytes(b->data, b->len, VALUE_END);
            static const char *const tags[] = {VALUE_END};
            size_t upto = end ? (size_t)(end - b->data) : b->len - partial_tag_suffix(b->data, b->len, tags, 1);
            if (p->value_streams && !p->value_started && upto > 0) {
                p->value_started = 1;
                // A value written as a quoted JSON string is unquoted: it must be seen whole.
                if (b->data[0] == '"') p->value_streams = 0;
                else emit_args(p, o, "\"", 1);
            }
            if (p->value_streams) {
                glint_buf escaped = {0};
                dump_string(&escaped, b->data, upto);
                emit_args(p, o, escaped.data, escaped.len);
                glint_buf_free(&escaped);
            } else {
                glint_buf_append(&p->field, b->data, upto);
            }
            take(p, upto);
            if (!end) return;
            take(p, sizeof VALUE_END - 1);
            if (p->value_streams) {
                emit_args(p, o, p->value_started ? "\"" : "\"\"", p->value_started ? 1 : 2);
            } else {
                json_t *v = coerce_value(argument_type(p->schema, p->key), p->field.data ? p->field.data : "",
                                         p->field.len);
                char *text = glint_python_json_dumps(v);
                emit_args(p, o, text, strlen(text));
                free(text);
                json_decref(v);
            }
            p->state = T_AFTER_VALUE;
            continue;
        }
        case T_AFTER_VALUE: {
            const char *key = find_bytes(b->data, b->len, KEY_START);
            const char *end = find_bytes(b->data, b->len, TOOL_END);
            if (end && (!key || end < key)) {
                take(p, (size_t)(end - b->data) + sizeof TOOL_END - 1);
                end_call(p, o);
                continue;
            }
            if (key) {
                take(p, (size_t)(key - b->data) + sizeof KEY_START - 1);
                glint_buf_clear(&p->field);
                p->state = T_KEY;
                continue;
            }
            static const char *const tags[] = {KEY_START, TOOL_END};
            size_t hold = partial_tag_suffix(b->data, b->len, tags, 2);
            take(p, b->len - hold);
            return;
        }
        }
    }
}

void glint_tool_parser_finish(glint_tool_parser *p, int streaming, glint_tool_output *o) {
    glint_buf *b = &p->pending;
    if (p->state == T_TEXT) {
        glint_buf_append(&o->content, b->data ? b->data : "", b->len);
        glint_buf_clear(b);
        return;
    }
    take(p, b->len);
    int announced = p->state != T_NAME && p->state != T_DROP;
    if (streaming && announced) {
        // Close what was streamed so the client holds valid JSON.
        if (p->state == T_BEFORE_VALUE || (p->state == T_VALUE && !p->value_streams))
            emit_args(p, o, "null", 4);
        else if (p->state == T_VALUE)
            emit_args(p, o, p->value_started ? "\"" : "\"\"", p->value_started ? 1 : 2);
        else if (p->state == T_KEY)
            emit_args(p, o, p->n_args ? ", \"\": null" : "{\"\": null", p->n_args ? 10 : 9), p->n_args++;
        end_call(p, o);
        return;
    }
    if (announced) {  // one-shot: the unterminated call is not a call; drop its deltas
        int index = p->n_calls - 1;
        int kept = 0;
        for (int i = 0; i < o->n_deltas; i++) {
            if (o->deltas[i].index == index) {
                free(o->deltas[i].id), free(o->deltas[i].name);
                glint_buf_free(&o->deltas[i].arguments);
            } else {
                o->deltas[kept++] = o->deltas[i];
            }
        }
        o->n_deltas = kept;
        p->n_calls--;
    }
    glint_buf_append(&o->content, p->raw_call.data ? p->raw_call.data : "", p->raw_call.len);
    glint_buf_clear(&p->raw_call);
    p->state = T_TEXT;
}

static void strip_in_place(glint_buf *b) {
    size_t start = 0, end = b->len;
    while (start < end && isspace((unsigned char)b->data[start])) start++;
    while (end > start && isspace((unsigned char)b->data[end - 1])) end--;
    if (!b->data) return;
    memmove(b->data, b->data + start, end - start);
    b->len = end - start;
    b->data[b->len] = 0;
}

void glint_tool_parse_all(const json_t *tools, const char *text, size_t len, glint_buf *content, json_t **calls) {
    glint_tool_parser *p = glint_tool_parser_new(tools);
    if (!p) abort();
    glint_tool_output o = {0};
    glint_tool_parser_push(p, text, len, &o);
    glint_tool_parser_finish(p, 0, &o);
    glint_buf_append(content, o.content.data ? o.content.data : "", o.content.len);
    strip_in_place(content);
    *calls = NULL;
    int n = glint_tool_parser_calls(p);
    if (n > 0) {
        *calls = json_array();
        for (int c = 0; c < n; c++) {
            glint_buf args = {0};
            const char *id = NULL, *name = NULL;
            for (int i = 0; i < o.n_deltas; i++) {
                if (o.deltas[i].index != c) continue;
                if (o.deltas[i].id) id = o.deltas[i].id, name = o.deltas[i].name;
                glint_buf_append(&args, o.deltas[i].arguments.data ? o.deltas[i].arguments.data : "",
                                 o.deltas[i].arguments.len);
            }
            json_array_append_new(*calls, json_pack("{s:s, s:i, s:s, s:{s:s, s:s}}", "id", id ? id : "", "index", c,
                                                    "type", "function", "function", "name", name ? name : "",
                                                    "arguments", args.data ? args.data : ""));
            glint_buf_free(&args);
        }
    }
    glint_tool_output_free(&o);
    glint_tool_parser_free(p);
}
