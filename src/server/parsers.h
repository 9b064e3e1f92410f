// Output parsers as sglang runs them for GLM-5.x (spec/SERVING.md §2):
//  - reasoning `glm45`: text up to </think> is reasoning_content, the rest is content;
//  - tool calls `glm47`: <tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>
//    becomes an OpenAI tool call whose arguments are the JSON text json.dumps would write.
// Both are incremental: text can arrive split anywhere (even inside a tag) and the concatenated
// streamed output equals the one-shot result. Partial tags are held back until they resolve.
#ifndef GLINT_SERVER_PARSERS_H
#define GLINT_SERVER_PARSERS_H

#include <jansson.h>
#include <stddef.h>

#include "server/buf.h"

// ---- reasoning (glm45) ----
typedef struct {
    int in_reasoning;    // currently inside the reasoning block
    int start_stripped;  // the leading <think> (if any) was removed
    glint_buf pending;   // held-back text that may be the start of a tag
} glint_reasoning_parser;

// start_in_reasoning: the prompt ended inside <think> (thinking enabled).
void glint_reasoning_init(glint_reasoning_parser *p, int start_in_reasoning);
// Appends what became certain to *reasoning and *content.
void glint_reasoning_push(glint_reasoning_parser *p, const char *text, size_t len, glint_buf *reasoning,
                          glint_buf *content);
// End of output: flushes the held-back text.
void glint_reasoning_finish(glint_reasoning_parser *p, glint_buf *reasoning, glint_buf *content);
void glint_reasoning_free(glint_reasoning_parser *p);

// ---- tool calls (glm47) ----
typedef struct {
    int index;   // call index in this choice, from 0
    char *id;    // "call_" + 24 hex; only on the first delta of a call (else NULL)
    char *name;  // only on the first delta of a call (else NULL)
    glint_buf arguments;  // JSON text delta
} glint_tool_delta;

typedef struct {
    glint_buf content;  // plain text outside calls
    glint_tool_delta *deltas;
    int n_deltas, cap_deltas;
} glint_tool_output;

void glint_tool_output_clear(glint_tool_output *o);
void glint_tool_output_free(glint_tool_output *o);

typedef struct glint_tool_parser glint_tool_parser;
// tools: the request's tools array (borrowed; must outlive the parser); calls to names not in it
// are dropped, as sglang does.
glint_tool_parser *glint_tool_parser_new(const json_t *tools);
void glint_tool_parser_free(glint_tool_parser *p);
void glint_tool_parser_push(glint_tool_parser *p, const char *text, size_t len, glint_tool_output *out);
// End of output. streaming: an unterminated call that was already announced gets its arguments
// closed so they stay valid JSON; one-shot: an unterminated call stays in content as text.
void glint_tool_parser_finish(glint_tool_parser *p, int streaming, glint_tool_output *out);
int glint_tool_parser_calls(const glint_tool_parser *p);  // calls announced so far

// One-shot parse (non-stream responses): content (stripped, as sglang) and an array of
// {"id","index","type":"function","function":{"name","arguments"}} (NULL when no call).
void glint_tool_parse_all(const json_t *tools, const char *text, size_t len, glint_buf *content, json_t **calls);

// Python's json.dumps(value, ensure_ascii=False) text of a JSON value (", " and ": " separators).
char *glint_python_json_dumps(const json_t *value);

// "call_" + 24 lowercase hex digits from the system's random source, into out[30].
void glint_tool_call_id(char out[30]);

#endif
