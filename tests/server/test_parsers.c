// glm45 reasoning + glm47 tool-call parsers: one-shot results against the outputs sglang documents
// (spec/SERVING.md §2), and streaming over random splits (every byte boundary possible) must give
// the same content, names and argument text.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/parsers.h"

#include "../check.h"

static const char *TOOLS_JSON =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\"},\"date\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},"
    "\"celsius\":{\"type\":\"boolean\"},\"ratio\":{\"type\":\"number\"},\"opts\":{\"type\":\"object\"},"
    "\"tags\":{\"type\":\"array\"},\"note\":{\"type\":[\"string\",\"null\"]}}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"list_files\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"edit\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"path\":{\"type\":\"string\"},\"code\":{\"type\":\"string\"}}}}}]";

typedef struct {
    const char *text;
    const char *content;   // expected content after parsing (stripped)
    int n_calls;
    const char *names[3];
    const char *args[3];
} tool_case;

static const tool_case TOOL_CASES[] = {
    {"<tool_call>get_weather<arg_key>city</arg_key><arg_value>北京</arg_value><arg_key>date</arg_key>"
     "<arg_value>2024-06-27</arg_value></tool_call>",
     "", 1, {"get_weather"}, {"{\"city\": \"北京\", \"date\": \"2024-06-27\"}"}},
    {"Let me check. <tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>"
     "<tool_call>get_weather<arg_key>city</arg_key>\n<arg_value>Rome</arg_value></tool_call>  ",
     "Let me check.", 2, {"get_weather", "get_weather"}, {"{\"city\": \"Paris\"}", "{\"city\": \"Rome\"}"}},
    {"<tool_call>get_weather<arg_key> days </arg_key><arg_value>3</arg_value><arg_key>celsius</arg_key>"
     "<arg_value>True</arg_value><arg_key>ratio</arg_key><arg_value>0.1</arg_value><arg_key>opts</arg_key>"
     "<arg_value>{\"a\": [1, 2.5, null]}</arg_value><arg_key>tags</arg_key><arg_value>[\"x\",\"y\"]</arg_value>"
     "<arg_key>note</arg_key><arg_value>\"quoted\"</arg_value></tool_call>",
     "", 1, {"get_weather"},
     {"{\"days\": 3, \"celsius\": true, \"ratio\": 0.1, \"opts\": {\"a\": [1, 2.5, null]}, \"tags\": [\"x\", \"y\"], "
      "\"note\": \"quoted\"}"}},
    // String values keep their whitespace; quotes, backslashes and newlines are escaped.
    {"<tool_call>edit<arg_key>path</arg_key><arg_value>a.c</arg_value><arg_key>code</arg_key><arg_value>"
     "    if (x) {\n\tputs(\"hi\\n\");\n    }\n</arg_value></tool_call>",
     "", 1, {"edit"},
     {"{\"path\": \"a.c\", \"code\": \"    if (x) {\\n\\tputs(\\\"hi\\\\n\\\");\\n    }\\n\"}"}},
    // Unknown keys: JSON when it parses, else text.
    {"<tool_call>list_files<arg_key>depth</arg_key><arg_value>2</arg_value><arg_key>glob</arg_key>"
     "<arg_value>*.c</arg_value></tool_call>",
     "", 1, {"list_files"}, {"{\"depth\": 2, \"glob\": \"*.c\"}"}},
    {"<tool_call>list_files</tool_call>", "", 1, {"list_files"}, {"{}"}},
    // Unknown function: dropped, as sglang does.
    {"ok <tool_call>rm_rf<arg_key>path</arg_key><arg_value>/</arg_value></tool_call>", "ok", 0, {0}, {0}},
    // Unterminated call: stays in content.
    {"text <tool_call>get_weather<arg_key>city</arg_key><arg_value>Par", 
     "text <tool_call>get_weather<arg_key>city</arg_key><arg_value>Par", 0, {0}, {0}},
    // A stray end tag is removed; other markup is content.
    {"a</tool_call>b <tool_ca <b>bold</b>", "ab <tool_ca <b>bold</b>", 0, {0}, {0}},
    {"<tool_call>get_weather<arg_key>city</arg_key><arg_value></arg_value></tool_call> after", "after", 1,
     {"get_weather"}, {"{\"city\": \"\"}"}},
    {"plain answer, no calls", "plain answer, no calls", 0, {0}, {0}},
};

static unsigned rng_state = 12345;
static unsigned next_rand(void) {
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

static void strip(glint_buf *b) {
    size_t s = 0, e = b->len;
    while (s < e && strchr(" \t\r\n", b->data[s])) s++;
    while (e > s && strchr(" \t\r\n", b->data[e - 1])) e--;
    memmove(b->data, b->data + s, e - s);
    b->len = e - s;
    b->data[b->len] = 0;
}

static void test_tools(const json_t *tools) {
    for (size_t c = 0; c < sizeof TOOL_CASES / sizeof TOOL_CASES[0]; c++) {
        const tool_case *tc = &TOOL_CASES[c];
        glint_buf content = {0};
        json_t *calls = NULL;
        glint_tool_parse_all(tools, tc->text, strlen(tc->text), &content, &calls);
        CHECK(!strcmp(content.data ? content.data : "", tc->content), "case %zu content '%s' want '%s'", c,
              content.data, tc->content);
        CHECK((int)json_array_size(calls) == tc->n_calls, "case %zu: %zu calls, want %d", c, json_array_size(calls),
              tc->n_calls);
        for (int k = 0; k < tc->n_calls && k < (int)json_array_size(calls); k++) {
            json_t *call = json_array_get(calls, (size_t)k);
            const char *id = json_string_value(json_object_get(call, "id"));
            CHECK(id && strlen(id) == 29 && !strncmp(id, "call_", 5) && strspn(id + 5, "0123456789abcdef") == 24,
                  "case %zu: id '%s'", c, id);
            json_t *fn = json_object_get(call, "function");
            CHECK(!strcmp(json_string_value(json_object_get(fn, "name")), tc->names[k]), "case %zu name", c);
            const char *args = json_string_value(json_object_get(fn, "arguments"));
            CHECK(!strcmp(args, tc->args[k]), "case %zu args '%s' want '%s'", c, args, tc->args[k]);
            json_t *reparsed = json_loads(args, 0, NULL);
            CHECK(json_is_object(reparsed), "case %zu: arguments are not a JSON object", c);
            json_decref(reparsed);
        }
        // Streaming over random splits.
        size_t len = strlen(tc->text);
        for (int trial = 0; trial < 200; trial++) {
            glint_tool_parser *p = glint_tool_parser_new(tools);
            glint_tool_output out = {0};
            glint_buf streamed = {0};
            glint_buf args[3] = {{0}};
            const char *names[3] = {0};
            char *name_copies[3] = {0};
            int ids_seen[3] = {0};
            for (size_t pos = 0; pos < len;) {
                size_t n = trial == 0 ? 1 : 1 + next_rand() % 9;
                if (n > len - pos) n = len - pos;
                glint_tool_parser_push(p, tc->text + pos, n, &out);
                pos += n;
                glint_buf_append(&streamed, out.content.data ? out.content.data : "", out.content.len);
                for (int i = 0; i < out.n_deltas; i++) {
                    glint_tool_delta *d = &out.deltas[i];
                    if (d->index < 0 || d->index > 2) continue;
                    if (d->name) {
                        CHECK(!names[d->index], "case %zu: name sent twice", c);
                        CHECK(args[d->index].len == 0, "case %zu: arguments before the name", c);
                        CHECK(d->arguments.len == 0, "case %zu: the name delta carries arguments", c);
                        name_copies[d->index] = strdup(d->name);
                        names[d->index] = name_copies[d->index];
                        ids_seen[d->index]++;
                    }
                    glint_buf_append(&args[d->index], d->arguments.data ? d->arguments.data : "",
                                     d->arguments.len);
                }
                glint_tool_output_clear(&out);
            }
            glint_tool_parser_finish(p, 1, &out);
            glint_buf_append(&streamed, out.content.data ? out.content.data : "", out.content.len);
            for (int i = 0; i < out.n_deltas; i++)
                if (out.deltas[i].index >= 0 && out.deltas[i].index < 3)
                    glint_buf_append(&args[out.deltas[i].index], out.deltas[i].arguments.data ? out.deltas[i].arguments.data : "",
                                     out.deltas[i].arguments.len);
            glint_buf_append(&streamed, "", 0);
            strip(&streamed);
            if (tc->n_calls || !strstr(tc->text, "<arg_value>Par"))  // unterminated: streams as a call
                CHECK(!strcmp(streamed.data, tc->content), "case %zu trial %d: streamed content '%s'", c, trial,
                      streamed.data);
            for (int k = 0; k < tc->n_calls; k++) {
                CHECK(names[k] && !strcmp(names[k], tc->names[k]), "case %zu trial %d: streamed name", c, trial);
                CHECK(ids_seen[k] == 1, "case %zu: id count %d", c, ids_seen[k]);
                CHECK(args[k].data && !strcmp(args[k].data, tc->args[k]), "case %zu trial %d: streamed args '%s'", c,
                      trial, args[k].data);
            }
            glint_tool_output_free(&out);
            glint_tool_parser_free(p);
            glint_buf_free(&streamed);
            for (int k = 0; k < 3; k++) glint_buf_free(&args[k]), free(name_copies[k]);
        }
        json_decref(calls);
        glint_buf_free(&content);
    }
}

typedef struct {
    int start_in_reasoning;
    const char *text, *reasoning, *content;
} reasoning_case;

static const reasoning_case REASONING_CASES[] = {
    {1, "The user wants X.</think>Here it is.", "The user wants X.", "Here it is."},
    {1, "<think>abc</think>\n\ndef", "abc", "\n\ndef"},
    {1, "still thinking when cut off", "still thinking when cut off", ""},
    {1, "plan<tool_call>get_weather</tool_call>", "plan", "<tool_call>get_weather</tool_call>"},
    {0, "Just an answer.", "", "Just an answer."},
    {0, "<think>r</think>c", "r", "c"},
    {1, "a </thin b</think>", "a </thin b", ""},
    {1, "", "", ""},
};

static void test_reasoning(void) {
    for (size_t c = 0; c < sizeof REASONING_CASES / sizeof REASONING_CASES[0]; c++) {
        const reasoning_case *rc = &REASONING_CASES[c];
        size_t len = strlen(rc->text);
        for (int trial = 0; trial < 200; trial++) {
            glint_reasoning_parser p;
            glint_reasoning_init(&p, rc->start_in_reasoning);
            glint_buf r = {0}, k = {0};
            for (size_t pos = 0; pos < len;) {
                size_t n = trial == 0 ? len : 1 + next_rand() % 6;
                if (n > len - pos) n = len - pos;
                glint_reasoning_push(&p, rc->text + pos, n, &r, &k);
                pos += n;
            }
            glint_reasoning_finish(&p, &r, &k);
            glint_buf_append(&r, "", 0), glint_buf_append(&k, "", 0);
            CHECK(!strcmp(r.data, rc->reasoning), "reasoning case %zu trial %d: reasoning '%s'", c, trial, r.data);
            CHECK(!strcmp(k.data, rc->content), "reasoning case %zu trial %d: content '%s'", c, trial, k.data);
            glint_reasoning_free(&p);
            glint_buf_free(&r), glint_buf_free(&k);
        }
    }
}

// Random texts made of tag pieces and filler: one-shot and streamed parses agree, arguments are
// always a JSON object, and nothing crashes (the suite also runs under ASan/UBSan).
static void test_random_texts(const json_t *tools) {
    static const char *pieces[] = {"<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>",
                                   "</arg_value>", "get_weather", "list_files", "edit", "city", "days", "code", "Paris",
                                   "<", ">", "\n", "\n", " ", "\"", "x", "{", "1", "</think>", "<think>", "é", "</",
                                   "<tool_", "True", "[1, 2]"};
    const int n_pieces = (int)(sizeof pieces / sizeof pieces[0]);
    for (int trial = 0; trial < 3000; trial++) {
        glint_buf text = {0};
        int n = 1 + (int)(next_rand() % 30);
        for (int i = 0; i < n; i++) glint_buf_puts(&text, pieces[next_rand() % (unsigned)n_pieces]);
        glint_buf content = {0};
        json_t *calls = NULL;
        glint_tool_parse_all(tools, text.data, text.len, &content, &calls);
        for (size_t k = 0; k < json_array_size(calls); k++) {
            const char *args = json_string_value(json_object_get(json_object_get(json_array_get(calls, k), "function"), "arguments"));
            json_t *v = args ? json_loads(args, JSON_DECODE_ANY, NULL) : NULL;
            CHECK(json_is_object(v), "random text %d: arguments '%s' not a JSON object (text '%s')", trial, args, text.data);
            json_decref(v);
        }
        // Streamed in random pieces: same calls when every call in the text is terminated.
        glint_tool_parser *p = glint_tool_parser_new(tools);
        glint_tool_output out = {0};
        glint_buf args[64] = {{0}};
        for (size_t pos = 0; pos < text.len;) {
            size_t step = 1 + next_rand() % 7;
            if (step > text.len - pos) step = text.len - pos;
            glint_tool_parser_push(p, text.data + pos, step, &out);
            pos += step;
        }
        glint_tool_parser_finish(p, 1, &out);
        int streamed_calls = glint_tool_parser_calls(p);
        for (int i = 0; i < out.n_deltas; i++)
            if (out.deltas[i].index < 64)
                glint_buf_append(&args[out.deltas[i].index], out.deltas[i].arguments.data ? out.deltas[i].arguments.data : "",
                                 out.deltas[i].arguments.len);
        for (int k = 0; k < streamed_calls && k < 64; k++) {
            json_t *v = json_loads(args[k].data ? args[k].data : "", JSON_DECODE_ANY, NULL);
            CHECK(json_is_object(v), "random text %d: streamed arguments '%s' not a JSON object", trial, args[k].data);
            json_decref(v);
        }
        if (streamed_calls == (int)json_array_size(calls))
            for (int k = 0; k < streamed_calls && k < 64; k++) {
                const char *a = json_string_value(json_object_get(json_object_get(json_array_get(calls, (size_t)k), "function"), "arguments"));
                CHECK(a && args[k].data && !strcmp(a, args[k].data), "random text %d: call %d streamed '%s' vs '%s'", trial,
                      k, args[k].data, a);
            }
        else  // only an unterminated last call may differ (announced while streaming)
            CHECK(streamed_calls == (int)json_array_size(calls) + 1, "random text %d: %d streamed calls vs %zu", trial,
                  streamed_calls, json_array_size(calls));
        for (int k = 0; k < 64; k++) glint_buf_free(&args[k]);
        glint_tool_output_free(&out);
        glint_tool_parser_free(p);
        json_decref(calls);
        glint_buf_free(&content);
        // Reasoning parser: reasoning + content is the text minus the tags it consumed.
        glint_reasoning_parser rp;
        glint_reasoning_init(&rp, (int)(trial & 1));
        glint_buf r = {0}, c = {0};
        for (size_t pos = 0; pos < text.len;) {
            size_t step = 1 + next_rand() % 5;
            if (step > text.len - pos) step = text.len - pos;
            glint_reasoning_push(&rp, text.data + pos, step, &r, &c);
            pos += step;
        }
        glint_reasoning_finish(&rp, &r, &c);
        CHECK(r.len + c.len <= text.len, "random text %d: reasoning parser produced more text than it got", trial);
        glint_reasoning_free(&rp);
        glint_buf_free(&r), glint_buf_free(&c), glint_buf_free(&text);
    }
}

static void test_python_dumps(void) {
    json_t *v = json_loads("{\"a\": [1, 2.5, 1e+20, 0.1, -0.0], \"é\": \"\\u0001\\\"/\", \"n\": null}", 0, NULL);
    char *text = glint_python_json_dumps(v);
    CHECK(!strcmp(text, "{\"a\": [1, 2.5, 1e+20, 0.1, -0.0], \"é\": \"\\u0001\\\"/\", \"n\": null}"), "dumps '%s'",
          text);
    free(text);
    json_decref(v);
}

int main(void) {
    json_t *tools = json_loads(TOOLS_JSON, 0, NULL);
    if (!tools) {
        fprintf(stderr, "bad test tools JSON\n");
        return 1;
    }
    test_reasoning();
    test_tools(tools);
    test_random_texts(tools);
    test_python_dumps();
    json_decref(tools);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("parsers: all cases pass\n");
    return 0;
}
