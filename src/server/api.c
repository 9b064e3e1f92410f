// The OpenAI-compatible API as sglang serves it (spec/SERVING.md §2-§5): request validation,
// templating, submitting to the engine, output parsing and the response / SSE chunk shapes.
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/util.h"
#include "server/parsers.h"
#include "server/server.h"

#define MAX_CHOICES 16
#define MAX_STOP_STRINGS 16

// ---------------------------------------------------------------- errors

// sglang's flat error body (ErrorResponse): {"object":"error","message","type","param","code"}.
static void set_error(glint_api_response *out, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_error(glint_api_response *out, int status, const char *type, const char *fmt, ...) {
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    json_t *body = json_pack("{s:s, s:s, s:s, s:n, s:i}", "object", "error", "message", message, "type", type,
                             "param", "code", status);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    glint_buf_clear(&out->body);
    glint_buf_puts(&out->body, text ? text : "{\"object\":\"error\",\"message\":\"out of memory\"}");
    free(text);
    json_decref(body);
    out->status = status;
    out->content_type = "application/json";
}

static void set_json(glint_api_response *out, int status, json_t *body) {
    char *text = json_dumps(body, JSON_COMPACT);
    glint_buf_clear(&out->body);
    glint_buf_puts(&out->body, text ? text : "{}");
    free(text);
    json_decref(body);
    out->status = status;
    out->content_type = "application/json";
}

// ---------------------------------------------------------------- typed field access

// Field readers: 0 when absent or null (value untouched), 1 when read, -1 on a wrong type (error set).
static int get_number(const json_t *req, const char *key, double *v, glint_api_response *out) {
    json_t *f = json_object_get(req, key);
    if (!f || json_is_null(f)) return 0;
    if (!json_is_number(f)) {
        set_error(out, 400, "BadRequestError", "'%s' must be a number", key);
        return -1;
    }
    *v = json_number_value(f);
    if (!isfinite(*v)) {
        set_error(out, 400, "BadRequestError", "'%s' must be finite", key);
        return -1;
    }
    return 1;
}

static int get_int(const json_t *req, const char *key, long long *v, glint_api_response *out) {
    json_t *f = json_object_get(req, key);
    if (!f || json_is_null(f)) return 0;
    // as pydantic (lax) takes them: a real with no fraction, e.g. 16.0, is an integer too
    const double r = json_is_real(f) ? json_real_value(f) : 0.5;
    if (!json_is_integer(f) && !(r == floor(r) && fabs(r) <= 9007199254740992.0)) {
        set_error(out, 400, "BadRequestError", "'%s' must be an integer", key);
        return -1;
    }
    *v = json_is_integer(f) ? json_integer_value(f) : (long long)r;
    return 1;
}

static int get_bool(const json_t *req, const char *key, int *v, glint_api_response *out) {
    json_t *f = json_object_get(req, key);
    if (!f || json_is_null(f)) return 0;
    if (!json_is_boolean(f)) {
        set_error(out, 400, "BadRequestError", "'%s' must be a boolean", key);
        return -1;
    }
    *v = json_is_true(f);
    return 1;
}

// ---------------------------------------------------------------- jobs and choices

typedef struct {
    glint_gen_request *req;
    int prompt_index;
    int consumed;                // tokens taken from req
    glint_detok_stream *detok;
    glint_buf held;              // visible text held back while it may begin a stop string
    glint_reasoning_parser reasoning;
    glint_tool_parser *tools;
    int done;                    // finish processed
    const char *finish_reason;
    json_t *matched_stop;        // int id, string or null
    int completion_tokens, reasoning_tokens;
    glint_buf text_all;          // visible text (non-stream; completions)
    json_t *logprobs;            // chat: [{"token","bytes","logprob","top_logprobs"}]; pending in stream
    json_t *legacy_tokens, *legacy_logprobs, *legacy_top;  // completions logprobs
    int tool_calls_streamed;
    int left_reasoning;
} choice;

struct glint_api_stream {
    glint_server *s;
    int is_chat;
    int stream;
    int include_usage, continuous_usage;
    char id[48];
    long long created;
    char *model_name;
    json_t *tools;  // tools given to the parser (owned)
    int n_choices;
    choice choices[MAX_CHOICES];
    int n_prompts;
    int prompt_tokens;
    int cached_tokens;
    char *stop_strings[MAX_STOP_STRINGS];
    int n_stop_strings;
    int skip_special;
    int logprobs, top_logprobs;
    int separate_reasoning, in_reasoning_at_start;
    int32_t think_end_id, tool_call_id;
    int force_tool_call;      // tool_choice required or named: the output starts a tool call
    char *forced_tool_name;   // tool_choice named (owned)
    char *echo_text[MAX_CHOICES];
    glint_buf out;  // SSE bytes not yet handed to the HTTP layer
    size_t out_off;
    int finished;
    double last_gone_check;
    int min_tokens;
    int32_t *bias_ids;
    float *bias;
    int n_bias;
};

static void job_free(glint_api_stream *j) {
    if (!j) return;
    for (int i = 0; i < j->n_choices; i++) {
        choice *c = &j->choices[i];
        if (c->req) {
            if (!c->done) glint_engine_cancel(j->s->engine, c->req);
            glint_gen_request_release(c->req);
        }
        glint_detok_stream_free(c->detok);
        glint_buf_free(&c->held);
        glint_reasoning_free(&c->reasoning);
        glint_tool_parser_free(c->tools);
        json_decref(c->matched_stop);
        glint_buf_free(&c->text_all);
        json_decref(c->logprobs), json_decref(c->legacy_tokens), json_decref(c->legacy_logprobs),
            json_decref(c->legacy_top);
    }
    for (int i = 0; i < j->n_stop_strings; i++) free(j->stop_strings[i]);
    for (int i = 0; i < MAX_CHOICES; i++) free(j->echo_text[i]);
    json_decref(j->tools);
    free(j->forced_tool_name);
    free(j->bias_ids), free(j->bias);
    free(j->model_name);
    glint_buf_free(&j->out);
    free(j);
}

void glint_api_stream_free(glint_api_stream *st) { job_free(st); }

static int is_marker(const glint_server *s, int32_t id) {
    for (int i = 0; i < s->n_marker_ids; i++)
        if (s->marker_ids[i] == id) return 1;
    return 0;
}

static json_t *token_bytes(const char *text) {
    json_t *arr = json_array();
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) json_array_append_new(arr, json_integer(*p));
    return arr;
}

static char *token_text(const glint_server *s, int32_t id) {
    char *t = glint_tokenizer_decode(s->tok, &id, 1, 0, NULL);
    return t ? t : strdup("");
}

// Length of the longest suffix of text that is a proper prefix of a stop string.
static size_t stop_prefix_suffix(const glint_api_stream *j, const char *text, size_t n) {
    size_t best = 0;
    for (int i = 0; i < j->n_stop_strings; i++) {
        size_t sl = strlen(j->stop_strings[i]);
        for (size_t k = sl - 1; k > best; k--)
            if (k <= n && !memcmp(text + n - k, j->stop_strings[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

static void record_logprob(glint_api_stream *j, choice *c, const glint_token_out *t) {
    if (!j->logprobs) return;
    char *text = token_text(j->s, t->id);
    if (j->is_chat) {
        json_t *top = json_array();
        for (int k = 0; k < t->n_top; k++) {
            char *alt = token_text(j->s, t->top_ids[k]);
            json_array_append_new(top, json_pack("{s:s, s:o, s:f}", "token", alt, "bytes", token_bytes(alt), "logprob",
                                                 (double)t->top_logprobs[k]));
            free(alt);
        }
        if (!c->logprobs) c->logprobs = json_array();
        json_array_append_new(c->logprobs, json_pack("{s:s, s:o, s:f, s:o}", "token", text, "bytes", token_bytes(text),
                                                     "logprob", (double)t->logprob, "top_logprobs", top));
    } else {
        if (!c->legacy_tokens) {
            c->legacy_tokens = json_array(), c->legacy_logprobs = json_array(), c->legacy_top = json_array();
        }
        json_array_append_new(c->legacy_tokens, json_string(text));
        json_array_append_new(c->legacy_logprobs, json_real(t->logprob));
        json_t *top = json_object();
        for (int k = 0; k < t->n_top; k++) {
            char *alt = token_text(j->s, t->top_ids[k]);
            json_object_set_new(top, alt, json_real(t->top_logprobs[k]));
            free(alt);
        }
        json_array_append_new(c->legacy_top, top);
    }
    free(text);
}

// Moves what the engine produced for c into visible text (appended to *visible), applying
// special-token skipping and stop strings. Returns 1 when c is finished.
static int choice_advance(glint_api_stream *j, choice *c, glint_buf *visible) {
    if (c->done) return 1;
    glint_gen_request *r = c->req;
    pthread_mutex_lock(&r->mu);
    int n = r->n_tokens;
    glint_finish_reason finish = r->finish;
    int32_t stop_id = r->matched_stop_id;
    int count = n - c->consumed;
    glint_token_out *fresh = count > 0 ? malloc((size_t)count * sizeof *fresh) : NULL;
    if (fresh) memcpy(fresh, r->tokens + c->consumed, (size_t)count * sizeof *fresh);
    pthread_mutex_unlock(&r->mu);
    if (count > 0 && !fresh) count = 0;
    c->consumed += count;
    int stop_hit = 0;
    for (int i = 0; i < count && !stop_hit; i++) {
        const glint_token_out *t = &fresh[i];
        c->completion_tokens++;
        // Reasoning tokens: those before </think> (or a tool call) when the output starts in reasoning.
        if (t->id == j->think_end_id || t->id == j->tool_call_id) c->left_reasoning = 1;
        if (j->in_reasoning_at_start && j->s->reasoning_parser && !c->left_reasoning) c->reasoning_tokens++;
        record_logprob(j, c, t);
        if (t->is_stop) continue;
        if (j->skip_special && glint_tokenizer_is_special(j->s->tok, t->id) && !is_marker(j->s, t->id)) continue;
        size_t piece_len = 0;
        char *piece = glint_detok_stream_push(c->detok, t->id, &piece_len);
        if (!piece) continue;
        glint_buf_append(&c->held, piece, piece_len);
        free(piece);
        if (!j->n_stop_strings) {
            glint_buf_append(visible, c->held.data, c->held.len);
            glint_buf_clear(&c->held);
            continue;
        }
        // The earliest stop string occurrence ends the output there.
        const char *first = NULL;
        int which = -1;
        for (int k = 0; k < j->n_stop_strings; k++) {
            const char *at = strstr(c->held.data, j->stop_strings[k]);
            if (at && (!first || at < first)) first = at, which = k;
        }
        if (first) {
            glint_buf_append(visible, c->held.data, (size_t)(first - c->held.data));
            glint_buf_clear(&c->held);
            stop_hit = 1;
            json_decref(c->matched_stop);
            c->matched_stop = json_string(j->stop_strings[which]);
            c->finish_reason = "stop";
            atomic_store(&r->stop_string_hit, 1);  // a normal finish, not an abort, in the metrics
            glint_engine_cancel(j->s->engine, r);
            break;
        }
        size_t keep = stop_prefix_suffix(j, c->held.data, c->held.len);
        glint_buf_append(visible, c->held.data, c->held.len - keep);
        glint_buf_consume(&c->held, c->held.len - keep);
    }
    free(fresh);
    if (stop_hit) {
        c->done = 1;
        return 1;
    }
    if (finish != GLINT_FINISH_NONE && c->consumed == n) {
        size_t tail_len = 0;
        char *tail = glint_detok_stream_flush(c->detok, &tail_len);
        if (tail) glint_buf_append(&c->held, tail, tail_len);
        free(tail);
        glint_buf_append(visible, c->held.data ? c->held.data : "", c->held.len);
        glint_buf_clear(&c->held);
        c->done = 1;
        json_decref(c->matched_stop);
        c->matched_stop = json_null();
        switch (finish) {
        case GLINT_FINISH_STOP:
            c->finish_reason = "stop";
            if (stop_id >= 0) {
                json_decref(c->matched_stop);
                c->matched_stop = json_integer(stop_id);
            }
            break;
        case GLINT_FINISH_LENGTH: c->finish_reason = "length"; break;
        default: c->finish_reason = "abort"; break;
        }
        return 1;
    }
    return 0;
}

static json_t *usage_json(const glint_api_stream *j) {
    int completion = 0, reasoning = 0;
    for (int i = 0; i < j->n_choices; i++)
        completion += j->choices[i].completion_tokens, reasoning += j->choices[i].reasoning_tokens;
    json_t *u = json_pack("{s:i, s:i, s:i, s:n}", "prompt_tokens", j->prompt_tokens, "total_tokens",
                          j->prompt_tokens + completion, "completion_tokens", completion, "prompt_tokens_details");
    if (j->is_chat) json_object_set_new(u, "reasoning_tokens", json_integer(reasoning));
    return u;
}

// ---------------------------------------------------------------- SSE

static void sse_event(glint_api_stream *j, json_t *chunk) {
    char *text = json_dumps(chunk, JSON_COMPACT);
    glint_buf_puts(&j->out, "data: ");
    glint_buf_puts(&j->out, text ? text : "{}");
    glint_buf_puts(&j->out, "\n\n");
    free(text);
    json_decref(chunk);
}

static json_t *chunk_base(const glint_api_stream *j) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", j->id, "object", j->is_chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)j->created, "model", j->model_name);
}

// One choice chunk: delta (chat) or text (completions).
static void emit_choice_chunk(glint_api_stream *j, int index, json_t *delta_or_text, json_t *finish, json_t *matched,
                              int with_null_usage) {
    choice *c = &j->choices[index];
    json_t *chunk = chunk_base(j);
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(index));
    if (j->is_chat) json_object_set_new(ch, "delta", delta_or_text);
    else json_object_set_new(ch, "text", delta_or_text);
    if (j->is_chat && c->logprobs && json_array_size(c->logprobs)) {
        json_object_set_new(ch, "logprobs", json_pack("{s:o}", "content", c->logprobs));  // handed over
        c->logprobs = json_array();
    } else if (!j->is_chat && c->legacy_tokens && json_array_size(c->legacy_tokens)) {
        json_object_set_new(ch, "logprobs", json_pack("{s:o, s:o, s:o, s:[]}", "tokens", c->legacy_tokens,
                                                      "token_logprobs", c->legacy_logprobs, "top_logprobs",
                                                      c->legacy_top, "text_offset"));
        c->legacy_tokens = json_array(), c->legacy_logprobs = json_array(), c->legacy_top = json_array();
    } else {
        json_object_set_new(ch, "logprobs", json_null());
    }
    json_object_set_new(ch, "finish_reason", finish ? finish : json_null());
    json_object_set_new(ch, "matched_stop", matched ? matched : json_null());
    json_object_set_new(chunk, "choices", json_pack("[o]", ch));
    if (with_null_usage) json_object_set_new(chunk, "usage", json_null());
    if (j->continuous_usage) json_object_set_new(chunk, "usage", usage_json(j));
    sse_event(j, chunk);
}

// Turns one choice's new visible text into SSE chunks.
static void stream_choice(glint_api_stream *j, int index, const glint_buf *visible, int finished) {
    choice *c = &j->choices[index];
    if (!j->is_chat) {
        if (visible->len || (c->legacy_tokens && json_array_size(c->legacy_tokens)))
            emit_choice_chunk(j, index, json_stringn(visible->data ? visible->data : "", visible->len), NULL, NULL, 1);
        if (finished)
            emit_choice_chunk(j, index, json_string(""), json_string(c->finish_reason),
                              json_incref(c->matched_stop), 1);
        return;
    }
    glint_buf reasoning = {0}, content = {0};
    if (j->separate_reasoning && j->s->reasoning_parser) {
        glint_reasoning_push(&c->reasoning, visible->data ? visible->data : "", visible->len, &reasoning, &content);
        if (finished) glint_reasoning_finish(&c->reasoning, &reasoning, &content);
    } else {
        glint_buf_append(&content, visible->data ? visible->data : "", visible->len);
    }
    glint_tool_output tools_out = {0};
    if (c->tools) {
        glint_tool_parser_push(c->tools, content.data ? content.data : "", content.len, &tools_out);
        if (finished) glint_tool_parser_finish(c->tools, 1, &tools_out);
    } else {
        glint_buf_append(&tools_out.content, content.data ? content.data : "", content.len);
    }
    if (reasoning.len)
        emit_choice_chunk(j, index, json_pack("{s:s%}", "reasoning_content", reasoning.data, reasoning.len), NULL, NULL, 0);
    if (tools_out.content.len)
        emit_choice_chunk(j, index, json_pack("{s:s%}", "content", tools_out.content.data, tools_out.content.len), NULL,
                          NULL, 0);
    for (int i = 0; i < tools_out.n_deltas; i++) {
        glint_tool_delta *d = &tools_out.deltas[i];
        json_t *call = json_pack("{s:o, s:i, s:s, s:{s:o, s:s%}}", "id", d->id ? json_string(d->id) : json_null(),
                                 "index", d->index, "type", "function", "function", "name",
                                 d->name ? json_string(d->name) : json_null(), "arguments",
                                 d->arguments.data ? d->arguments.data : "", d->arguments.len);
        json_t *delta = json_pack("{s:n, s:n, s:n, s:[o]}", "role", "content", "reasoning_content", "tool_calls", call);
        emit_choice_chunk(j, index, delta, NULL, NULL, 1);
        c->tool_calls_streamed = 1;
    }
    // Logprobs of steps that produced no visible chunk ride on an empty content delta.
    if (c->logprobs && json_array_size(c->logprobs) && !finished)
        emit_choice_chunk(j, index, json_pack("{s:s}", "content", ""), NULL, NULL, 0);
    if (finished) {
        const char *reason = c->finish_reason;
        json_t *matched = json_incref(c->matched_stop);
        if (c->tool_calls_streamed && !strcmp(reason, "stop")) {
            reason = "tool_calls";
            json_decref(matched);
            matched = json_null();
        }
        emit_choice_chunk(j, index, json_object(), json_string(reason), matched, 0);
    }
    glint_tool_output_free(&tools_out);
    glint_buf_free(&reasoning), glint_buf_free(&content);
}

// Waits (in short slices, watching the client) until some choice has news or all are done.
static int wait_for_news(glint_api_stream *j, glint_client_gone_fn gone, void *gone_arg) {
    for (;;) {
        // Look at the socket at least every 10 ms, also while tokens keep coming.
        double now = glint_now_seconds();
        if (now - j->last_gone_check >= 0.01) {
            j->last_gone_check = now;
            if (gone && gone(gone_arg)) return -1;
        }
        for (int i = 0; i < j->n_choices; i++) {
            choice *c = &j->choices[i];
            if (c->done) continue;
            pthread_mutex_lock(&c->req->mu);
            int news = c->req->n_tokens > c->consumed || c->req->finish != GLINT_FINISH_NONE;
            pthread_mutex_unlock(&c->req->mu);
            if (news) return 1;
        }
        // Sleep on the first unfinished choice until it has news or 20 ms pass.
        for (int i = 0; i < j->n_choices; i++) {
            choice *c = &j->choices[i];
            if (c->done) continue;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_mutex_lock(&c->req->mu);
            if (c->req->n_tokens == c->consumed && c->req->finish == GLINT_FINISH_NONE)
                pthread_cond_timedwait(&c->req->cv, &c->req->mu, &ts);
            pthread_mutex_unlock(&c->req->mu);
            break;
        }
        int all_done = 1;
        for (int i = 0; i < j->n_choices; i++) all_done &= j->choices[i].done;
        if (all_done) return 0;
    }
}

static void stream_fill(glint_api_stream *j, glint_client_gone_fn gone, void *gone_arg, int *client_gone) {
    while (j->out.len == j->out_off && !j->finished) {
        glint_buf_clear(&j->out);
        j->out_off = 0;
        int all_done = 1;
        for (int i = 0; i < j->n_choices; i++) all_done &= j->choices[i].done;
        if (all_done) {
            if (j->include_usage) {
                json_t *chunk = chunk_base(j);
                json_object_set_new(chunk, "choices", json_array());
                json_object_set_new(chunk, "usage", usage_json(j));
                sse_event(j, chunk);
            }
            glint_buf_puts(&j->out, "data: [DONE]\n\n");
            j->finished = 1;
            return;
        }
        if (wait_for_news(j, gone, gone_arg) < 0) {
            *client_gone = 1;
            return;
        }
        for (int i = 0; i < j->n_choices; i++) {
            choice *c = &j->choices[i];
            if (c->done) continue;
            glint_buf visible = {0};
            int finished = choice_advance(j, c, &visible);
            stream_choice(j, i, &visible, finished);
            glint_buf_free(&visible);
        }
    }
}

ssize_t glint_api_stream_read(glint_api_stream *j, char *buf, size_t max, glint_client_gone_fn gone, void *gone_arg) {
    int client_gone = 0;
    stream_fill(j, gone, gone_arg, &client_gone);
    if (client_gone) {
        for (int i = 0; i < j->n_choices; i++)
            if (!j->choices[i].done) glint_engine_cancel(j->s->engine, j->choices[i].req);
        return -1;
    }
    size_t avail = j->out.len - j->out_off;
    if (!avail) return 0;
    size_t n = avail < max ? avail : max;
    memcpy(buf, j->out.data + j->out_off, n);
    j->out_off += n;
    return (ssize_t)n;
}

// ---------------------------------------------------------------- non-stream

static int run_to_completion(glint_api_stream *j, glint_client_gone_fn gone, void *gone_arg) {
    for (;;) {
        int all_done = 1;
        for (int i = 0; i < j->n_choices; i++) {
            choice *c = &j->choices[i];
            if (!c->done) choice_advance(j, c, &c->text_all);
            all_done &= c->done;
        }
        if (all_done) return 0;
        if (wait_for_news(j, gone, gone_arg) < 0) return -1;
    }
}

static json_t *chat_response(glint_api_stream *j) {
    json_t *choices = json_array();
    for (int i = 0; i < j->n_choices; i++) {
        choice *c = &j->choices[i];
        glint_buf reasoning = {0}, content = {0};
        const char *text = c->text_all.data ? c->text_all.data : "";
        if (j->separate_reasoning && j->s->reasoning_parser) {
            glint_reasoning_push(&c->reasoning, text, c->text_all.len, &reasoning, &content);
            glint_reasoning_finish(&c->reasoning, &reasoning, &content);
        } else {
            glint_buf_append(&content, text, c->text_all.len);
        }
        json_t *calls = NULL;
        const char *finish = c->finish_reason;
        json_t *matched = json_incref(c->matched_stop);
        glint_buf final_content = {0};
        if (c->tools) {
            glint_tool_parse_all(j->tools, content.data ? content.data : "", content.len, &final_content, &calls);
            if (calls && !strcmp(finish, "stop")) {
                finish = "tool_calls";
                json_decref(matched);
                matched = json_null();
            }
        } else {
            glint_buf_append(&final_content, content.data ? content.data : "", content.len);
        }
        json_t *message = json_pack("{s:s, s:s%, s:o, s:o}", "role", "assistant", "content",
                                    final_content.data ? final_content.data : "", final_content.len,
                                    "reasoning_content",
                                    reasoning.len ? json_stringn(reasoning.data, reasoning.len) : json_null(),
                                    "tool_calls", calls ? calls : json_null());
        json_t *lp = json_null();
        if (j->logprobs) lp = json_pack("{s:o}", "content", c->logprobs ? json_incref(c->logprobs) : json_array());
        json_array_append_new(choices, json_pack("{s:i, s:o, s:o, s:s, s:o}", "index", i, "message", message, "logprobs",
                                                 lp, "finish_reason", finish, "matched_stop", matched));
        glint_buf_free(&reasoning), glint_buf_free(&content), glint_buf_free(&final_content);
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:o, s:o, s:{s:s}}", "id", j->id, "object", "chat.completion", "created",
                     (json_int_t)j->created, "model", j->model_name, "choices", choices, "usage", usage_json(j),
                     "metadata", "weight_version", "default");
}

static json_t *completion_response(glint_api_stream *j) {
    json_t *choices = json_array();
    for (int i = 0; i < j->n_choices; i++) {
        choice *c = &j->choices[i];
        glint_buf text = {0};
        if (j->echo_text[i]) glint_buf_puts(&text, j->echo_text[i]);
        glint_buf_append(&text, c->text_all.data ? c->text_all.data : "", c->text_all.len);
        json_t *lp = json_null();
        if (j->logprobs)
            lp = json_pack("{s:o, s:o, s:o, s:[]}", "tokens", c->legacy_tokens ? json_incref(c->legacy_tokens) : json_array(),
                           "token_logprobs", c->legacy_logprobs ? json_incref(c->legacy_logprobs) : json_array(),
                           "top_logprobs", c->legacy_top ? json_incref(c->legacy_top) : json_array(), "text_offset");
        json_array_append_new(choices, json_pack("{s:i, s:s%, s:o, s:s, s:O}", "index", i, "text",
                                                 text.data ? text.data : "", text.len, "logprobs", lp, "finish_reason",
                                                 c->finish_reason, "matched_stop", c->matched_stop));
        glint_buf_free(&text);
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", j->id, "object", "text_completion", "created",
                     (json_int_t)j->created, "model", j->model_name, "choices", choices, "usage", usage_json(j));
}

// ---------------------------------------------------------------- request parsing

static void random_hex(char *out, int n) {
    unsigned char bytes[32];
    if (getrandom(bytes, (size_t)(n + 1) / 2, 0) < 0) memset(bytes, 0x5a, sizeof bytes);
    for (int i = 0; i < n; i++) out[i] = "0123456789abcdef"[(bytes[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    out[n] = 0;
}

static int check_model(glint_server *s, const json_t *req, glint_api_response *out) {
    json_t *m = json_object_get(req, "model");
    if (!m || json_is_null(m)) return 0;
    if (!json_is_string(m)) {
        set_error(out, 400, "BadRequestError", "'model' must be a string");
        return -1;
    }
    const char *name = json_string_value(m);
    if (!strcmp(name, s->served_model_name) || !strcmp(name, "default") || !strcmp(name, s->model_path)) return 0;
    set_error(out, 404, "NotFoundError", "The model '%s' does not exist", name);
    return -1;
}

// Sampling fields shared by both endpoints, validated as sglang's SamplingParams.verify does.
static int parse_sampling(glint_server *s, const json_t *req, int is_chat, glint_sampling_params *sp,
                          glint_api_response *out) {
    if (is_chat) *sp = s->defaults;
    else glint_sampling_defaults(sp);
    double v;
    long long k;
    int r;
    if ((r = get_number(req, "temperature", &v, out)) < 0) return -1;
    if (r) {
        if (v < 0) return set_error(out, 400, "BadRequestError", "temperature must be non-negative, got %g.", v), -1;
        sp->rules.temperature = (float)v;
    }
    if ((r = get_number(req, "top_p", &v, out)) < 0) return -1;
    if (r) {
        if (v <= 0 || v > 1) return set_error(out, 400, "BadRequestError", "top_p must be in (0, 1], got %g.", v), -1;
        sp->rules.top_p = (float)v;
    }
    if ((r = get_int(req, "top_k", &k, out)) < 0) return -1;
    if (r) {
        if (k < -1 || k == 0)
            return set_error(out, 400, "BadRequestError", "top_k must be -1 (disable), or at least 1, got %lld.", k), -1;
        sp->rules.top_k = k > (1 << 30) ? 1 << 30 : (int)k;  // past the vocabulary: no cut, as sglang
    }
    if ((r = get_number(req, "min_p", &v, out)) < 0) return -1;
    if (r) {
        if (v < 0 || v > 1) return set_error(out, 400, "BadRequestError", "min_p must be in [0, 1], got %g.", v), -1;
        sp->rules.min_p = (float)v;
    }
    if ((r = get_number(req, "frequency_penalty", &v, out)) < 0) return -1;
    if (r) {
        if (v < -2 || v > 2)
            return set_error(out, 400, "BadRequestError", "frequency_penalty must be in [-2, 2], got %g.", v), -1;
        sp->frequency_penalty = (float)v;
    }
    if ((r = get_number(req, "presence_penalty", &v, out)) < 0) return -1;
    if (r) {
        if (v < -2 || v > 2)
            return set_error(out, 400, "BadRequestError", "presence_penalty must be in [-2, 2], got %g.", v), -1;
        sp->presence_penalty = (float)v;
    }
    if ((r = get_number(req, "repetition_penalty", &v, out)) < 0) return -1;
    if (r) {
        if (v <= 0 || v > 2)
            return set_error(out, 400, "BadRequestError", "repetition_penalty must be in (0, 2], got %g.", v), -1;
        sp->repetition_penalty = (float)v;
    }
    if ((r = get_int(req, "seed", &k, out)) < 0) return -1;
    if (r) sp->seed = (uint64_t)k;
    else {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, 0) < 0) seed = (uint64_t)time(NULL);
        sp->seed = seed;
    }
    return 0;
}

static int parse_stop(glint_api_stream *j, const json_t *req, int32_t **stop_ids, int *n_stop_ids,
                      glint_api_response *out) {
    json_t *stop = json_object_get(req, "stop");
    if (stop && !json_is_null(stop)) {
        if (json_is_string(stop)) {
            if (json_string_length(stop)) j->stop_strings[j->n_stop_strings++] = strdup(json_string_value(stop));
        } else if (json_is_array(stop)) {
            if (json_array_size(stop) > MAX_STOP_STRINGS)
                return set_error(out, 400, "BadRequestError", "'stop' has more than %d strings", MAX_STOP_STRINGS), -1;
            for (size_t i = 0; i < json_array_size(stop); i++) {
                json_t *item = json_array_get(stop, i);
                if (!json_is_string(item))
                    return set_error(out, 400, "BadRequestError", "'stop' must be a string or a list of strings"), -1;
                if (json_string_length(item)) j->stop_strings[j->n_stop_strings++] = strdup(json_string_value(item));
            }
        } else {
            return set_error(out, 400, "BadRequestError", "'stop' must be a string or a list of strings"), -1;
        }
    }
    json_t *ids = json_object_get(req, "stop_token_ids");
    *n_stop_ids = 0;
    *stop_ids = NULL;
    if (ids && !json_is_null(ids)) {
        if (!json_is_array(ids) || json_array_size(ids) > 1024)
            return set_error(out, 400, "BadRequestError", "'stop_token_ids' must be a list of integers"), -1;
        *stop_ids = malloc((json_array_size(ids) + 1) * sizeof **stop_ids);
        for (size_t i = 0; i < json_array_size(ids); i++) {
            json_t *item = json_array_get(ids, i);
            if (!json_is_integer(item) || json_integer_value(item) < 0 ||
                json_integer_value(item) >= j->s->model->cfg.vocab_size) {
                free(*stop_ids);
                *stop_ids = NULL;
                return set_error(out, 400, "BadRequestError", "'stop_token_ids' must hold token ids in [0, %d)",
                                 j->s->model->cfg.vocab_size), -1;
            }
            (*stop_ids)[(*n_stop_ids)++] = (int32_t)json_integer_value(item);
        }
    }
    return 0;
}

// The tools list as sglang hands it to the template (pydantic dump: description, name,
// parameters, strict) and to the parser. Validates tool_choice. *active: tools are in play.
static int prepare_tools(const json_t *req, json_t **tools_out, int *active, glint_api_response *out) {
    *tools_out = NULL;
    *active = 0;
    json_t *tools = json_object_get(req, "tools");
    json_t *choice_v = json_object_get(req, "tool_choice");
    if (tools && !json_is_null(tools) && !json_is_array(tools))
        return set_error(out, 400, "BadRequestError", "'tools' must be a list"), -1;
    size_t n = json_is_array(tools) ? json_array_size(tools) : 0;
    const char *choice = n ? "auto" : "none";
    const char *named = NULL;
    if (choice_v && !json_is_null(choice_v)) {
        if (json_is_string(choice_v)) {
            choice = json_string_value(choice_v);
            if (strcmp(choice, "none") && strcmp(choice, "auto") && strcmp(choice, "required"))
                return set_error(out, 400, "BadRequestError", "'tool_choice' must be none, auto, required or a function"), -1;
        } else if (json_is_object(choice_v)) {
            named = json_string_value(json_object_get(json_object_get(choice_v, "function"), "name"));
            if (!named) return set_error(out, 400, "BadRequestError", "'tool_choice' function needs a name"), -1;
            choice = "named";
        } else {
            return set_error(out, 400, "BadRequestError", "'tool_choice' must be a string or an object"), -1;
        }
    }
    if (!strcmp(choice, "required") && !n)
        return set_error(out, 400, "BadRequestError", "Tools cannot be empty if tool choice is set to required."), -1;
    if (named && !n)
        return set_error(out, 400, "BadRequestError", "Tools cannot be empty if tool choice is set to a specific tool."), -1;
    json_t *list = json_array();
    int named_found = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tools, i);
        json_t *fn = json_object_get(t, "function");
        json_t *name = json_object_get(fn, "name");
        json_t *params = json_object_get(fn, "parameters");
        json_t *desc = json_object_get(fn, "description");
        if (!json_is_object(t) || !json_is_object(fn) || !json_is_string(name) ||
            (params && !json_is_null(params) && !json_is_object(params)) || (desc && !json_is_null(desc) && !json_is_string(desc))) {
            json_decref(list);
            return set_error(out, 400, "BadRequestError",
                             "Tool %zu must be {\"type\":\"function\",\"function\":{\"name\":string,\"parameters\":object}}", i), -1;
        }
        // The name is written into the prompt and read back from <tool_call>NAME<arg_key>...: no markup,
        // spaces or control characters (OpenAI allows [a-zA-Z0-9_-]{1,64}; dots and colons pass here).
        const char *nm = json_string_value(name);
        size_t nl = strlen(nm), bad = strcspn(nm, "<>\"' \t\r\n\v\f");
        for (size_t c = 0; c < nl && bad == nl; c++)
            if ((unsigned char)nm[c] < 0x20 || nm[c] == 0x7f) bad = c;
        if (!nl || nl > 256 || bad < nl) {
            json_decref(list);
            return set_error(out, 400, "BadRequestError",
                             "Tool %zu: function name '%.64s' must be 1-256 characters without spaces, quotes, '<', '>' "
                             "or control characters", i, nm), -1;
        }
        if (named && strcmp(named, json_string_value(name))) continue;
        named_found |= named != NULL;
        json_t *strict = json_object_get(fn, "strict");
        json_array_append_new(list, json_pack("{s:s, s:{s:O, s:O, s:O, s:O}}", "type", "function", "function",
                                              "description", desc ? desc : json_null(), "name", name, "parameters",
                                              params ? params : json_null(), "strict",
                                              json_is_boolean(strict) ? strict : json_false()));
    }
    if (named && !named_found) {
        json_decref(list);
        return set_error(out, 400, "BadRequestError", "Tool '%s' not found in tools list.", named), -1;
    }
    if (!strcmp(choice, "none") || !n) {
        json_decref(list);
        return 0;
    }
    *tools_out = list;
    *active = 1;
    return 0;
}

// A list content's parts: objects of type "text" with a string "text", and in a tool result also
// "tool_reference" parts naming a tool (sglang's ChatCompletionMessageContentToolReferenceBlock; the
// GLM-5.1 template renders that tool's schema). The models served are text-only: image, audio,
// video and file parts are refused, not dropped (the template would skip them and answer an
// emptier turn). *all_text: every part is a text part.
static int check_content_parts(const json_t *m, int tool, size_t i, int *all_text, glint_api_response *out) {
    const json_t *content = json_object_get(m, "content");
    *all_text = 1;
    if (!json_is_array(content)) return 0;
    for (size_t k = 0; k < json_array_size(content); k++) {
        const json_t *part = json_array_get(content, k);
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!json_is_object(part) || !type)
            return set_error(out, 400, "BadRequestError", "messages[%zu].content[%zu] must be an object with a string 'type'",
                             i, k), -1;
        const int text = !strcmp(type, "text"), reference = tool && !strcmp(type, "tool_reference");
        if (!text && !reference)
            return set_error(out, 400, "BadRequestError",
                             "messages[%zu].content[%zu]: content parts of type '%.64s' are not supported (this model "
                             "takes text only)", i, k, type), -1;
        if (!json_is_string(json_object_get(part, text ? "text" : "name")))
            return set_error(out, 400, "BadRequestError", "messages[%zu].content[%zu]: a %s part needs a string '%s'", i,
                             k, type, text ? "text" : "name"), -1;
        *all_text &= text;
    }
    return 0;
}

// An assistant message's tool_calls, as the template reads them: a list of {"function": {"name":
// string, "arguments": JSON text or object}}.
static int check_message_tool_calls(const json_t *m, size_t i, glint_api_response *out) {
    const json_t *calls = json_object_get(m, "tool_calls");
    if (!calls || json_is_null(calls)) return 0;
    if (!json_is_array(calls))
        return set_error(out, 400, "BadRequestError", "messages[%zu].tool_calls must be a list", i), -1;
    for (size_t k = 0; k < json_array_size(calls); k++) {
        const json_t *fn = json_object_get(json_array_get(calls, k), "function");
        const json_t *args = json_object_get(fn, "arguments");
        if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name")) ||
            !(json_is_string(args) || json_is_object(args)))
            return set_error(out, 400, "BadRequestError",
                             "messages[%zu].tool_calls[%zu] must be {\"function\": {\"name\": string, \"arguments\": "
                             "string or object}}", i, k), -1;
    }
    return 0;
}

// Messages as sglang passes them to the template: None content -> "", tool results given as text
// parts only joined into one string (with spaces). Roles, content parts and assistant tool calls are
// checked.
static json_t *prepare_messages(const json_t *messages, glint_api_response *out) {
    json_t *copy = json_array();
    for (size_t i = 0; i < json_array_size(messages); i++) {
        json_t *m = json_array_get(messages, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) {
            json_decref(copy);
            return set_error(out, 400, "BadRequestError", "messages[%zu] needs a string 'role'", i), NULL;
        }
        char lower[16];
        size_t rl = strlen(role);
        if (rl >= sizeof lower) rl = sizeof lower - 1;
        for (size_t k = 0; k < rl; k++) lower[k] = (char)tolower((unsigned char)role[k]);
        lower[rl] = 0;
        if (strcmp(lower, "system") && strcmp(lower, "user") && strcmp(lower, "assistant") && strcmp(lower, "tool") &&
            strcmp(lower, "developer") && strcmp(lower, "function")) {
            json_decref(copy);
            return set_error(out, 400, "BadRequestError", "messages[%zu]: unknown role '%s'", i, role), NULL;
        }
        int all_text;
        if (check_content_parts(m, !strcmp(lower, "tool"), i, &all_text, out) || check_message_tool_calls(m, i, out)) {
            json_decref(copy);
            return NULL;
        }
        json_t *mc = json_deep_copy(m);
        json_object_set_new(mc, "role", json_string(lower));
        json_t *content = json_object_get(mc, "content");
        if (!content || json_is_null(content)) {
            json_object_set_new(mc, "content", json_string(""));
        } else if (json_is_array(content)) {
            if (!strcmp(lower, "tool") && all_text) {  // sglang's normalize_tool_content: joined with spaces
                glint_buf joined = {0};
                for (size_t k = 0; k < json_array_size(content); k++) {
                    if (k) glint_buf_puts(&joined, " ");
                    glint_buf_puts(&joined, json_string_value(json_object_get(json_array_get(content, k), "text")));
                }
                json_object_set_new(mc, "content", json_string(joined.data ? joined.data : ""));
                glint_buf_free(&joined);
            }  // else (tool_reference parts) the list goes to the template as it came
        } else if (!json_is_string(content)) {
            json_decref(mc), json_decref(copy);
            return set_error(out, 400, "BadRequestError", "messages[%zu].content must be a string or a list", i), NULL;
        }
        json_array_append_new(copy, mc);
    }
    return copy;
}

// tool_choice required: force <tool_call> once the reasoning is over; named: <tool_call> and the
// tool's name (sglang constrains the whole call with a grammar; here the call is started and the
// model writes the arguments, which the glm47 parser then reads).
static int forced_call_ids(glint_server *s, const glint_api_stream *j, glint_gen_request *r) {
    int32_t *name_ids = NULL;
    int n_name = 0;
    if (j->forced_tool_name) {
        n_name = glint_tokenizer_encode(s->tok, j->forced_tool_name, strlen(j->forced_tool_name), 0, &name_ids);
        if (n_name < 0) return -1;
    }
    r->forced_ids = malloc(sizeof(int32_t) * (size_t)(1 + n_name));
    if (!r->forced_ids) {
        free(name_ids);
        return -1;
    }
    r->forced_ids[0] = j->tool_call_id;
    for (int i = 0; i < n_name; i++) r->forced_ids[1 + i] = name_ids[i];
    r->n_forced = 1 + n_name;
    r->forced_named = n_name > 0;
    r->reasoning_first = j->in_reasoning_at_start;
    r->think_end_id = j->think_end_id;
    free(name_ids);
    static const char *tags[6] = {"<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"};
    for (int i = 0; i < 6; i++)
        if ((r->call_tags[i] = glint_tokenizer_token_id(s->tok, tags[i])) < 0) return 0;  // start forced only
    const int vocab = s->model->cfg.vocab_size;
    r->special_ids = malloc(sizeof(int32_t) * (size_t)vocab);
    if (!r->special_ids) return -1;
    for (int32_t id = 0; id < vocab; id++)
        if (glint_tokenizer_is_special(s->tok, id)) r->special_ids[r->n_special++] = id;
    return 0;
}

static int submit_choices(glint_server *s, glint_api_stream *j, int32_t *const *prompts, const int *n_prompt_ids,
                          int n_prompts, int n, const glint_sampling_params *sp, int max_new, const int32_t *stop_ids,
                          int n_stop_ids, int ignore_eos, glint_api_response *out) {
    j->n_choices = 0;
    for (int p = 0; p < n_prompts; p++) {
        for (int i = 0; i < n; i++) {
            choice *c = &j->choices[j->n_choices];
            glint_gen_request *r = glint_gen_request_new();
            if (!r) return set_error(out, 500, "InternalServerError", "out of memory"), -1;
            r->prompt = malloc((size_t)n_prompt_ids[p] * sizeof *r->prompt);
            memcpy(r->prompt, prompts[p], (size_t)n_prompt_ids[p] * sizeof *r->prompt);
            r->n_prompt = n_prompt_ids[p];
            r->sampling = *sp;
            r->sampling.seed = sp->seed + (uint64_t)i;
            r->max_new_tokens = max_new;
            if (n_stop_ids) {
                r->stop_ids = malloc((size_t)n_stop_ids * sizeof *r->stop_ids);
                memcpy(r->stop_ids, stop_ids, (size_t)n_stop_ids * sizeof *r->stop_ids);
                r->n_stop_ids = n_stop_ids;
            }
            r->ignore_eos = ignore_eos;
            r->min_new_tokens = j->min_tokens;
            if (j->n_bias) {
                r->logit_bias_ids = malloc((size_t)j->n_bias * sizeof *r->logit_bias_ids);
                r->logit_bias = malloc((size_t)j->n_bias * sizeof *r->logit_bias);
                memcpy(r->logit_bias_ids, j->bias_ids, (size_t)j->n_bias * sizeof *r->logit_bias_ids);
                memcpy(r->logit_bias, j->bias, (size_t)j->n_bias * sizeof *r->logit_bias);
                r->n_logit_bias = j->n_bias;
            }
            if (j->force_tool_call && j->tool_call_id >= 0 && forced_call_ids(s, j, r)) {
                glint_gen_request_release(r);
                return set_error(out, 500, "InternalServerError", "out of memory"), -1;
            }
            r->logprobs = j->logprobs;
            r->top_logprobs = j->top_logprobs;
            c->req = r;
            c->prompt_index = p;
            c->detok = glint_detok_stream_new(s->tok, 0);
            glint_reasoning_init(&c->reasoning, j->in_reasoning_at_start);
            c->matched_stop = json_null();
            if (j->tools) c->tools = glint_tool_parser_new(j->tools);
            j->n_choices++;
            glint_submit_result sr = glint_engine_submit(s->engine, r);
            if (sr != GLINT_SUBMIT_OK) {
                c->done = 1;  // never ran: nothing to cancel
                if (sr == GLINT_SUBMIT_QUEUE_FULL)
                    return set_error(out, 503, "ServiceUnavailableError", "The server is overloaded: the request queue is full; retry later."), -1;
                if (sr == GLINT_SUBMIT_STOPPED)
                    return set_error(out, 503, "ServiceUnavailableError", "The server is shutting down."), -1;
                return set_error(out, 400, "BadRequestError",
                                 "The request needs %d tokens of KV cache, more than the server's pool holds.",
                                 r->n_prompt + max_new), -1;
            }
        }
    }
    return 0;
}

// Common tail of both generation endpoints: run, then answer (JSON) or hand over the stream.
static void finish_generation(glint_api_stream *j, glint_client_gone_fn gone, void *gone_arg, glint_api_response *out) {
    if (j->stream) {
        out->status = 200;
        out->content_type = "text/event-stream";
        out->stream = j;
        for (int i = 0; i < j->n_choices; i++) {
            if (j->is_chat)  // role chunk first, for every choice
                emit_choice_chunk(j, i, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL, NULL, 0);
            else if (j->echo_text[i])  // echo: the prompt text comes first
                emit_choice_chunk(j, i, json_string(j->echo_text[i]), NULL, NULL, 1);
        }
        return;
    }
    if (run_to_completion(j, gone, gone_arg) < 0) {
        set_error(out, 499, "ClientClosedRequest", "client disconnected");
        job_free(j);
        return;
    }
    for (int i = 0; i < j->n_choices; i++) {
        glint_gen_request *r = j->choices[i].req;
        if (r->finish == GLINT_FINISH_ERROR) {
            set_error(out, 500, "InternalServerError", "Internal server error: %s", r->error);
            job_free(j);
            return;
        }
    }
    set_json(out, 200, j->is_chat ? chat_response(j) : completion_response(j));
    job_free(j);
}

static glint_api_stream *new_job(glint_server *s, const json_t *req, int is_chat) {
    glint_api_stream *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->s = s;
    j->is_chat = is_chat;
    char hex[33];
    random_hex(hex, 32);
    snprintf(j->id, sizeof j->id, "%s%s", is_chat ? "chatcmpl-" : "cmpl-", hex);
    j->created = (long long)time(NULL);
    const char *model = json_string_value(json_object_get(req, "model"));
    j->model_name = strdup(model ? model : s->served_model_name);
    j->separate_reasoning = 1;
    j->skip_special = 1;
    j->think_end_id = glint_tokenizer_token_id(s->tok, "</think>");
    j->tool_call_id = glint_tokenizer_token_id(s->tok, "<tool_call>");
    return j;
}

// Options both endpoints read: n, stream, stream_options, max tokens, logprobs.
static int parse_common(glint_server *s, glint_api_stream *j, const json_t *req, int *n, long long *max_new,
                        int *max_new_given, int *ignore_eos, glint_api_response *out) {
    long long v;
    int r;
    *n = 1;
    if ((r = get_int(req, "n", &v, out)) < 0) return -1;
    if (r) {
        if (v < 1 || v > MAX_CHOICES) return set_error(out, 400, "BadRequestError", "n must be in [1, %d]", MAX_CHOICES), -1;
        *n = (int)v;
    }
    if (get_bool(req, "stream", &j->stream, out) < 0) return -1;
    json_t *so = json_object_get(req, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return set_error(out, 400, "BadRequestError", "'stream_options' must be an object"), -1;
        if (get_bool(so, "include_usage", &j->include_usage, out) < 0) return -1;
        if (get_bool(so, "continuous_usage_stats", &j->continuous_usage, out) < 0) return -1;
    }
    *max_new_given = 0;
    const char *keys[2] = {"max_completion_tokens", "max_tokens"};
    for (int k = 0; k < (j->is_chat ? 2 : 1); k++) {
        const char *key = j->is_chat ? keys[k] : "max_tokens";
        if ((r = get_int(req, key, &v, out)) < 0) return -1;
        if (r && !*max_new_given) {
            if (v < 0) return set_error(out, 400, "BadRequestError", "%s must be non-negative, got %lld.", key, v), -1;
            *max_new = v;
            *max_new_given = 1;
        }
    }
    if (!j->is_chat && !*max_new_given) *max_new = 16, *max_new_given = 1;
    *ignore_eos = 0;
    if (get_bool(req, "ignore_eos", ignore_eos, out) < 0) return -1;
    if (get_bool(req, "skip_special_tokens", &j->skip_special, out) < 0) return -1;
    if ((r = get_int(req, "min_tokens", &v, out)) < 0) return -1;
    if (r) {
        if (v < 0 || (*max_new_given && v > *max_new))
            return set_error(out, 400, "BadRequestError", "min_tokens must be in [0, max_tokens], got %lld.", v), -1;
        j->min_tokens = (int)v;
    }
    json_t *bias = json_object_get(req, "logit_bias");
    if (bias && !json_is_null(bias)) {
        if (!json_is_object(bias))
            return set_error(out, 400, "BadRequestError", "'logit_bias' must be an object of token id -> bias"), -1;
        if (json_object_size(bias) > 1024)
            return set_error(out, 400, "BadRequestError", "'logit_bias' holds %zu entries; at most 1024 are taken",
                             json_object_size(bias)), -1;
        j->bias_ids = malloc((json_object_size(bias) + 1) * sizeof *j->bias_ids);
        j->bias = malloc((json_object_size(bias) + 1) * sizeof *j->bias);
        const char *key;
        json_t *val;
        json_object_foreach(bias, key, val) {
            char *end;
            long id = strtol(key, &end, 10);
            if (!*key || *end || id < 0 || id >= s->model->cfg.vocab_size || !json_is_number(val) ||
                !isfinite(json_number_value(val)))
                return set_error(out, 400, "BadRequestError", "logit_bias: '%s' is not a token id in [0, %d) with a number",
                                 key, s->model->cfg.vocab_size), -1;
            if (!isfinite((float)json_number_value(val)))
                return set_error(out, 400, "BadRequestError", "logit_bias: the bias of token %ld is beyond a 32-bit float",
                                 id), -1;
            j->bias_ids[j->n_bias] = (int32_t)id;
            j->bias[j->n_bias++] = (float)json_number_value(val);
        }
    }
    // Constrained decoding is not implemented: refuse rather than return unconstrained text.
    json_t *format = json_object_get(req, "response_format");
    const char *format_type = json_string_value(json_object_get(format, "type"));
    if (format && !json_is_null(format)) {
        static const char *types[] = {"text", "json_object", "json_schema", "structural_tag"};
        int known = 0;
        for (int t = 0; t < 4 && format_type; t++) known |= !strcmp(format_type, types[t]);
        if (!json_is_object(format) || !known)
            return set_error(out, 400, "BadRequestError",
                             "'response_format' must be an object whose 'type' is text, json_object, json_schema or "
                             "structural_tag"), -1;
        if (strcmp(format_type, "text"))
            return set_error(out, 400, "BadRequestError",
                             "Constrained decoding (response_format %s) is not supported by glint yet.", format_type), -1;
    }
    for (int k = 0; k < 2; k++) {
        const char *key = k ? "ebnf" : "regex";
        if (json_object_get(req, key) && !json_is_null(json_object_get(req, key)))
            return set_error(out, 400, "BadRequestError", "Constrained decoding (%s) is not supported by glint yet.", key), -1;
    }
    return 0;
}

static void handle_chat(glint_server *s, const json_t *req, glint_client_gone_fn gone, void *gone_arg,
                        glint_api_response *out) {
    if (check_model(s, req, out)) return;
    json_t *messages = json_object_get(req, "messages");
    if (!messages || !json_is_array(messages))
        return set_error(out, 400, "BadRequestError", "'messages' must be a list of messages");
    if (!json_array_size(messages)) return set_error(out, 400, "BadRequestError", "Messages cannot be empty.");
    glint_api_stream *j = new_job(s, req, 1);
    if (!j) return set_error(out, 500, "InternalServerError", "out of memory");
    int n, max_new_given, ignore_eos, tools_active = 0;
    long long max_new = 0;
    glint_sampling_params sp;
    int32_t *stop_ids = NULL, *ids = NULL;
    int n_stop_ids = 0, n_ids = 0;
    json_t *prepared = NULL, *render_req = NULL;
    char *prompt = NULL;
    if (parse_common(s, j, req, &n, &max_new, &max_new_given, &ignore_eos, out)) goto fail;
    if (parse_sampling(s, req, 1, &sp, out)) goto fail;
    if (parse_stop(j, req, &stop_ids, &n_stop_ids, out)) goto fail;
    if (get_bool(req, "logprobs", &j->logprobs, out) < 0) goto fail;
    long long top = 0;
    if (get_int(req, "top_logprobs", &top, out) < 0) goto fail;
    if (top < 0 || top > GLINT_MAX_TOP_LOGPROBS) {
        set_error(out, 400, "BadRequestError", "top_logprobs must be in [0, %d]", GLINT_MAX_TOP_LOGPROBS);
        goto fail;
    }
    j->top_logprobs = j->logprobs ? (int)top : 0;
    if (get_bool(req, "separate_reasoning", &j->separate_reasoning, out) < 0) goto fail;
    int parallel_calls = 1;  // checked as sglang does; calls are not constrained, so nothing else reads it
    if (get_bool(req, "parallel_tool_calls", &parallel_calls, out) < 0) goto fail;
    json_t *kwargs = json_object_get(req, "chat_template_kwargs");
    if (kwargs && !json_is_null(kwargs) && !json_is_object(kwargs)) {
        set_error(out, 400, "BadRequestError", "'chat_template_kwargs' must be an object");
        goto fail;
    }
    json_t *thinking = json_object_get(kwargs, "enable_thinking");
    j->in_reasoning_at_start = !json_is_false(thinking);
    if (prepare_tools(req, &j->tools, &tools_active, out)) goto fail;
    if (tools_active) {  // validated by prepare_tools
        json_t *choice_v = json_object_get(req, "tool_choice");
        const char *named = json_string_value(json_object_get(json_object_get(choice_v, "function"), "name"));
        j->force_tool_call = named || (json_is_string(choice_v) && !strcmp(json_string_value(choice_v), "required"));
        if (named && !(j->forced_tool_name = strdup(named))) {
            set_error(out, 500, "InternalServerError", "out of memory");
            goto fail;
        }
    }
    if (!s->tool_parser && j->tools) {  // without --tool-call-parser the tools are templated, not parsed
        json_t *keep = j->tools;
        j->tools = NULL;
        render_req = json_object();
        json_object_set_new(render_req, "tools", keep);
    }
    if (tools_active) j->skip_special = 0;  // as sglang: tool markers must reach the parser
    prepared = prepare_messages(messages, out);
    if (!prepared) goto fail;
    if (!render_req) render_req = json_object();
    json_object_set(render_req, "messages", prepared);
    if (j->tools) json_object_set(render_req, "tools", j->tools);
    json_object_set_new(render_req, "add_generation_prompt", json_true());
    json_t *effort = json_object_get(req, "reasoning_effort");
    if (effort && !json_is_null(effort)) {  // sglang passes it to the template before the kwargs
        static const char *efforts[] = {"none", "minimal", "low", "medium", "high", "xhigh", "max"};
        int known = json_is_number(effort);
        for (int e = 0; e < 7 && json_is_string(effort); e++) known |= !strcmp(json_string_value(effort), efforts[e]);
        if (!known) {
            set_error(out, 400, "BadRequestError",
                      "'reasoning_effort' must be none, minimal, low, medium, high, xhigh, max or a number");
            goto fail;
        }
        json_t *merged = json_pack("{s:O}", "reasoning_effort", effort);
        if (json_is_object(kwargs)) json_object_update(merged, kwargs);
        json_object_set_new(render_req, "chat_template_kwargs", merged);
    } else if (json_is_object(kwargs)) {
        json_object_set(render_req, "chat_template_kwargs", kwargs);
    }
    // continue_final_message: the trailing assistant message is continued, not answered anew.
    int continue_final = 0;
    if (get_bool(req, "continue_final_message", &continue_final, out) < 0) goto fail;
    json_t *last = json_array_get(prepared, json_array_size(prepared) - 1);
    const char *continued = NULL;
    if (continue_final && !strcmp(json_string_value(json_object_get(last, "role")), "assistant") &&
        json_is_string(json_object_get(last, "content"))) {
        continued = json_string_value(json_object_get(last, "content"));
        json_t *head = json_array();
        for (size_t i = 0; i + 1 < json_array_size(prepared); i++) json_array_append(head, json_array_get(prepared, i));
        json_object_set_new(render_req, "messages", head);
    }
    size_t prompt_len = 0;
    prompt = glint_chat_render(s->tmpl, render_req, s->special_tokens, &prompt_len);
    if (!prompt && j->tools) {
        // As sglang: one retry with the tools flattened to their function objects.
        char first_error[512];
        snprintf(first_error, sizeof first_error, "%s", glint_last_error());
        json_t *flat = json_array();
        for (size_t i = 0; i < json_array_size(j->tools); i++)
            json_array_append(flat, json_object_get(json_array_get(j->tools, i), "function"));
        json_object_set_new(render_req, "tools", flat);
        prompt = glint_chat_render(s->tmpl, render_req, s->special_tokens, &prompt_len);
        if (!prompt) glint_set_error("%s", first_error);
    }
    if (!prompt) {
        set_error(out, 400, "BadRequestError", "%s", glint_last_error());
        goto fail;
    }
    if (continued) {
        size_t extra = strlen(continued);
        char *longer = realloc(prompt, prompt_len + extra + 1);
        if (!longer) {
            set_error(out, 500, "InternalServerError", "out of memory");
            goto fail;
        }
        memcpy(longer + prompt_len, continued, extra + 1);
        prompt = longer;
        prompt_len += extra;
    }
    n_ids = glint_tokenizer_encode(s->tok, prompt, prompt_len, 0, &ids);
    if (n_ids < 0) {
        set_error(out, 400, "BadRequestError", "%s", glint_last_error());
        goto fail;
    }
    if (n_ids >= s->context_length) {
        set_error(out, 400, "BadRequestError",
                  "The input (%d tokens) is longer than the model's context length (%d tokens).", n_ids, s->context_length);
        goto fail;
    }
    if (!max_new_given) max_new = s->context_length - n_ids;
    if (max_new > s->context_length - n_ids) {
        set_error(out, 400, "BadRequestError",
                  "max_completion_tokens is too large: %lld.This model supports at most %d completion tokens.",
                  max_new, s->context_length - n_ids);
        goto fail;
    }
    if (max_new == 0) max_new = 1;  // sglang still runs one step; keep the answer well formed
    j->prompt_tokens = n_ids;
    int32_t *prompts[1] = {ids};
    if (submit_choices(s, j, prompts, &n_ids, 1, n, &sp, (int)max_new, stop_ids, n_stop_ids, ignore_eos, out)) goto fail;
    free(stop_ids), free(ids), free(prompt);
    json_decref(prepared), json_decref(render_req);
    finish_generation(j, gone, gone_arg, out);
    return;
fail:
    free(stop_ids), free(ids), free(prompt);
    json_decref(prepared), json_decref(render_req);
    job_free(j);
}

// prompt: str | [str] | [int] | [[int]] -> token id lists.
static int completion_prompts(glint_server *s, const json_t *p, int32_t **ids, int *n_ids, int *n_prompts,
                              glint_api_response *out) {
    *n_prompts = 0;
    const json_t *items[MAX_CHOICES];
    int n_items = 0, single_ids = 0;
    if (json_is_string(p)) items[n_items++] = p;
    else if (json_is_array(p) && json_array_size(p) && json_is_integer(json_array_get(p, 0))) single_ids = 1;
    else if (json_is_array(p) && json_array_size(p) && json_array_size(p) <= MAX_CHOICES)
        for (size_t i = 0; i < json_array_size(p); i++) items[n_items++] = json_array_get(p, i);
    else
        return set_error(out, 400, "BadRequestError", "'prompt' must be a string, a list of strings or token ids (at most %d prompts)", MAX_CHOICES), -1;
    if (single_ids) items[n_items++] = p;
    for (int i = 0; i < n_items; i++) {
        const json_t *it = items[i];
        if (json_is_string(it)) {
            n_ids[i] = glint_tokenizer_encode(s->tok, json_string_value(it), json_string_length(it), 1, &ids[i]);
            if (n_ids[i] < 0) return set_error(out, 400, "BadRequestError", "%s", glint_last_error()), -1;
        } else if (json_is_array(it) && json_array_size(it)) {
            ids[i] = malloc(json_array_size(it) * sizeof *ids[i]);
            n_ids[i] = 0;
            for (size_t k = 0; k < json_array_size(it); k++) {
                json_t *t = json_array_get(it, k);
                if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= s->model->cfg.vocab_size) {
                    *n_prompts = i + 1;
                    return set_error(out, 400, "BadRequestError", "'prompt' token ids must be integers in [0, %d)",
                                     s->model->cfg.vocab_size), -1;
                }
                ids[i][n_ids[i]++] = (int32_t)json_integer_value(t);
            }
        } else {
            *n_prompts = i;
            return set_error(out, 400, "BadRequestError", "'prompt' must be a string, a list of strings or token ids"), -1;
        }
        *n_prompts = i + 1;
        if (n_ids[i] == 0) return set_error(out, 400, "BadRequestError", "'prompt' is empty"), -1;
    }
    return 0;
}

static void handle_completions(glint_server *s, const json_t *req, glint_client_gone_fn gone, void *gone_arg,
                               glint_api_response *out) {
    if (check_model(s, req, out)) return;
    json_t *p = json_object_get(req, "prompt");
    if (!p) return set_error(out, 400, "BadRequestError", "'prompt' is required");
    glint_api_stream *j = new_job(s, req, 0);
    if (!j) return set_error(out, 500, "InternalServerError", "out of memory");
    int32_t *ids[MAX_CHOICES] = {0};
    int n_ids[MAX_CHOICES] = {0}, n_prompts = 0;
    int n, max_new_given, ignore_eos, n_stop_ids = 0, echo = 0;
    long long max_new = 16, lp = -1;
    glint_sampling_params sp;
    int32_t *stop_ids = NULL;
    if (parse_common(s, j, req, &n, &max_new, &max_new_given, &ignore_eos, out)) goto fail;
    if (parse_sampling(s, req, 0, &sp, out)) goto fail;
    if (parse_stop(j, req, &stop_ids, &n_stop_ids, out)) goto fail;
    if (get_bool(req, "echo", &echo, out) < 0) goto fail;
    int r = get_int(req, "logprobs", &lp, out);
    if (r < 0) goto fail;
    if (r) {
        if (lp < 0 || lp > GLINT_MAX_TOP_LOGPROBS) {
            set_error(out, 400, "BadRequestError", "logprobs must be in [0, %d]", GLINT_MAX_TOP_LOGPROBS);
            goto fail;
        }
        j->logprobs = 1;
        j->top_logprobs = (int)lp;
    }
    if (completion_prompts(s, p, ids, n_ids, &n_prompts, out)) goto fail;
    if (n_prompts * n > MAX_CHOICES) {
        set_error(out, 400, "BadRequestError", "prompts x n must be at most %d", MAX_CHOICES);
        goto fail;
    }
    for (int i = 0; i < n_prompts; i++) {
        if (n_ids[i] >= s->context_length) {
            set_error(out, 400, "BadRequestError",
                      "The input (%d tokens) is longer than the model's context length (%d tokens).", n_ids[i],
                      s->context_length);
            goto fail;
        }
        if (max_new > s->context_length - n_ids[i]) {
            set_error(out, 400, "BadRequestError",
                      "max_tokens is too large: %lld.This model supports at most %d completion tokens.", max_new,
                      s->context_length - n_ids[i]);
            goto fail;
        }
        j->prompt_tokens += n_ids[i];
        if (echo)
            for (int k = 0; k < n; k++) j->echo_text[i * n + k] = glint_tokenizer_decode(s->tok, ids[i], (size_t)n_ids[i], 1, NULL);
    }
    if (max_new == 0) max_new = 1;
    if (submit_choices(s, j, ids, n_ids, n_prompts, n, &sp, (int)max_new, stop_ids, n_stop_ids, ignore_eos, out)) goto fail;
    for (int i = 0; i < n_prompts; i++) free(ids[i]);
    free(stop_ids);
    finish_generation(j, gone, gone_arg, out);
    return;
fail:
    for (int i = 0; i < MAX_CHOICES; i++) free(ids[i]);
    free(stop_ids);
    job_free(j);
}

// ---------------------------------------------------------------- small endpoints

static void handle_models(glint_server *s, glint_api_response *out) {
    set_json(out, 200, json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:s, s:n, s:i}]}", "object", "list", "data", "id",
                                 s->served_model_name, "object", "model", "created", (json_int_t)s->created, "owned_by",
                                 "sglang", "root", s->served_model_name, "parent", "max_model_len", s->context_length));
}

static void handle_tokenize(glint_server *s, const json_t *req, glint_api_response *out) {
    json_t *prompt = json_object_get(req, "prompt");
    json_t *messages = json_object_get(req, "messages");
    if (!prompt == !messages)
        return set_error(out, 400, "BadRequestError", "Give exactly one of 'prompt' or 'messages'.");
    int add_special = 1;
    if (get_bool(req, "add_special_tokens", &add_special, out) < 0) return;
    json_t *tokens = NULL;
    int count = 0;
    if (messages) {
        if (!json_is_array(messages) || !json_array_size(messages))
            return set_error(out, 400, "BadRequestError", "Messages cannot be empty.");
        json_t *prepared = prepare_messages(messages, out);
        if (!prepared) return;
        json_t *tools = NULL;
        int active;
        if (prepare_tools(req, &tools, &active, out)) {
            json_decref(prepared);
            return;
        }
        json_t *render_req = json_pack("{s:o, s:b}", "messages", prepared, "add_generation_prompt", 1);
        if (tools) json_object_set_new(render_req, "tools", tools);
        json_t *kwargs = json_object_get(req, "chat_template_kwargs");
        if (json_is_object(kwargs)) json_object_set(render_req, "chat_template_kwargs", kwargs);
        size_t len;
        char *text = glint_chat_render(s->tmpl, render_req, s->special_tokens, &len);
        json_decref(render_req);
        if (!text) return set_error(out, 400, "BadRequestError", "%s", glint_last_error());
        int32_t *ids;
        int n = glint_tokenizer_encode(s->tok, text, len, 0, &ids);
        free(text);
        if (n < 0) return set_error(out, 400, "BadRequestError", "%s", glint_last_error());
        tokens = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(tokens, json_integer(ids[i]));
        free(ids);
        count = n;
    } else if (json_is_string(prompt) || json_is_array(prompt)) {
        int many = json_is_array(prompt);
        tokens = json_array();
        for (size_t k = 0; k < (many ? json_array_size(prompt) : 1); k++) {
            json_t *item = many ? json_array_get(prompt, k) : prompt;
            if (!json_is_string(item)) {
                json_decref(tokens);
                return set_error(out, 400, "BadRequestError", "'prompt' must be a string or a list of strings");
            }
            int32_t *ids;
            int n = glint_tokenizer_encode(s->tok, json_string_value(item), json_string_length(item), add_special, &ids);
            if (n < 0) {
                json_decref(tokens);
                return set_error(out, 400, "BadRequestError", "%s", glint_last_error());
            }
            json_t *list = json_array();
            for (int i = 0; i < n; i++) json_array_append_new(list, json_integer(ids[i]));
            free(ids);
            count += n;
            if (many) json_array_append_new(tokens, list);
            else json_array_extend(tokens, list), json_decref(list);
        }
    } else {
        return set_error(out, 400, "BadRequestError", "'prompt' must be a string or a list of strings");
    }
    set_json(out, 200, json_pack("{s:o, s:i, s:i}", "tokens", tokens, "count", count, "max_model_len", s->context_length));
}

static void handle_detokenize(glint_server *s, const json_t *req, glint_api_response *out) {
    json_t *tokens = json_object_get(req, "tokens");
    if (!json_is_array(tokens)) return set_error(out, 400, "BadRequestError", "'tokens' must be a list of token ids");
    int skip = 1;
    if (get_bool(req, "skip_special_tokens", &skip, out) < 0) return;
    size_t n = json_array_size(tokens);
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    int vocab = glint_tokenizer_vocab_size(s->tok);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tokens, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= vocab ||
            !glint_tokenizer_token_text(s->tok, (int32_t)json_integer_value(t))) {
            free(ids);
            return set_error(out, 400, "BadRequestError", "tokens[%zu] is not a token id of this tokenizer", i);
        }
        ids[i] = (int32_t)json_integer_value(t);
    }
    size_t len = 0;
    char *text = glint_tokenizer_decode(s->tok, ids, n, skip, &len);
    free(ids);
    if (!text) return set_error(out, 400, "BadRequestError", "%s", glint_last_error());
    set_json(out, 200, json_pack("{s:s%}", "text", text, len));
    free(text);
}

// One generated token through the engine: the model answers.
static void handle_health_generate(glint_server *s, glint_client_gone_fn gone, void *gone_arg, glint_api_response *out) {
    glint_gen_request *r = glint_gen_request_new();
    if (!r) return set_error(out, 503, "ServiceUnavailableError", "out of memory");
    r->prompt = malloc(sizeof *r->prompt);
    r->prompt[0] = 0;
    r->n_prompt = 1;
    glint_sampling_defaults(&r->sampling);
    r->sampling.rules.temperature = 0;
    r->max_new_tokens = 1;
    if (glint_engine_submit(s->engine, r) != GLINT_SUBMIT_OK) {
        glint_gen_request_release(r);
        return set_error(out, 503, "ServiceUnavailableError", "engine not accepting requests");
    }
    double deadline = glint_now_seconds() + 20;
    int ok = 0;
    pthread_mutex_lock(&r->mu);
    while (r->finish == GLINT_FINISH_NONE && glint_now_seconds() < deadline) {
        pthread_mutex_unlock(&r->mu);
        if (gone && gone(gone_arg)) break;
        pthread_mutex_lock(&r->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        if (r->finish == GLINT_FINISH_NONE) pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    ok = r->finish == GLINT_FINISH_LENGTH || r->finish == GLINT_FINISH_STOP;
    pthread_mutex_unlock(&r->mu);
    if (!ok) glint_engine_cancel(s->engine, r);
    glint_gen_request_release(r);
    out->status = ok ? 200 : 503;
    out->content_type = "text/plain";
}

static void metric(glint_buf *b, const char *name, const char *type, const char *help, double value) {
    char line[512];
    snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, value);
    glint_buf_puts(b, line);
}

static void histogram(glint_buf *b, const char *name, const char *help, const uint64_t *buckets, uint64_t count,
                      double sum) {
    char line[256];
    snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    glint_buf_puts(b, line);
    for (int i = 0; i < 8; i++) {
        snprintf(line, sizeof line, "%s_bucket{le=\"%g\"} %llu\n", name, glint_latency_bucket_bounds[i],
                 (unsigned long long)buckets[i]);
        glint_buf_puts(b, line);
    }
    snprintf(line, sizeof line, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name,
             (unsigned long long)count, name, sum, name, (unsigned long long)count);
    glint_buf_puts(b, line);
}

static void handle_metrics(glint_server *s, glint_api_response *out) {
    glint_engine_stats st;
    glint_engine_get_stats(s->engine, &st);
    glint_buf *b = &out->body;
    glint_buf_clear(b);
    static const char *routes[GLINT_ROUTE_COUNT] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health",
                                                    "/v1/tokenize", "/v1/detokenize", "/metrics", "other"};
    glint_buf_puts(b, "# HELP sglang:http_requests_total HTTP requests answered, by route and status class.\n"
                      "# TYPE sglang:http_requests_total counter\n");
    for (int r = 0; r < GLINT_ROUTE_COUNT; r++)
        for (int c = 0; c < 6; c++) {
            unsigned long long v = atomic_load(&s->http_requests[r][c]);
            if (!v) continue;
            char line[160];
            snprintf(line, sizeof line, "sglang:http_requests_total{route=\"%s\",status=\"%s\"} %llu\n", routes[r],
                     (const char *[]){"1xx", "2xx", "3xx", "4xx", "5xx", "other"}[c], v);
            glint_buf_puts(b, line);
        }
    metric(b, "sglang:num_requests_total", "counter", "Generation requests finished (all causes).",
           (double)(st.requests_finished + st.requests_aborted));
    metric(b, "sglang:num_aborted_requests_total", "counter", "Generation requests aborted or failed.",
           (double)st.requests_aborted);
    metric(b, "sglang:prompt_tokens_total", "counter", "Prompt tokens prefilled.", (double)st.prompt_tokens);
    metric(b, "sglang:cached_tokens_total", "counter", "Prompt tokens served from the prefix cache.",
           (double)st.cached_prompt_tokens);
    metric(b, "sglang:generation_tokens_total", "counter", "Tokens generated.", (double)st.generation_tokens);
    metric(b, "sglang:num_running_reqs", "gauge", "Sequences running.", st.running);
    metric(b, "sglang:num_queue_reqs", "gauge", "Requests waiting in the queue.", st.queued);
    metric(b, "sglang:kv_pages_used", "gauge", "KV pages held (running sequences + prefix cache).", (double)st.pages_used);
    metric(b, "sglang:kv_pages_total", "gauge", "KV pages in the pool.", (double)st.pages_total);
    metric(b, "sglang:prefix_cache_entries", "gauge", "Finished sequences kept for prefix reuse.", st.prefix_entries);
    metric(b, "sglang:num_retractions_total", "counter", "Sequences that gave their KV cache back to make room.",
           (double)st.retractions);
    metric(b, "glint:spec_draft_tokens_total", "counter", "MTP draft tokens verified (speculative decoding).",
           (double)st.spec_drafted);
    metric(b, "glint:spec_accepted_tokens_total", "counter", "MTP draft tokens accepted.", (double)st.spec_accepted);
    histogram(b, "sglang:time_to_first_token_seconds", "Time to first token.", st.ttft_buckets, st.ttft_count,
              st.ttft_sum);
    histogram(b, "sglang:inter_token_latency_seconds", "Time between consecutive tokens of a request.", st.itl_buckets,
              st.itl_count, st.itl_sum);
    out->status = 200;
    out->content_type = "text/plain; version=0.0.4";
}

// ---------------------------------------------------------------- dispatch

static int route_of(const char *path) {
    if (!strcmp(path, "/v1/chat/completions")) return GLINT_ROUTE_CHAT;
    if (!strcmp(path, "/v1/completions")) return GLINT_ROUTE_COMPLETIONS;
    if (!strcmp(path, "/v1/models")) return GLINT_ROUTE_MODELS;
    if (!strcmp(path, "/health") || !strcmp(path, "/health_generate")) return GLINT_ROUTE_HEALTH;
    if (!strcmp(path, "/v1/tokenize") || !strcmp(path, "/tokenize")) return GLINT_ROUTE_TOKENIZE;
    if (!strcmp(path, "/v1/detokenize") || !strcmp(path, "/detokenize")) return GLINT_ROUTE_DETOKENIZE;
    if (!strcmp(path, "/metrics")) return GLINT_ROUTE_METRICS;
    return GLINT_ROUTE_OTHER;
}

void glint_api_dispatch(glint_server *s, const char *method, const char *path, const char *content_type,
                        const char *authorization, const char *body, size_t len, int body_too_large,
                        glint_client_gone_fn gone, void *gone_arg, glint_api_response *out) {
    memset(out, 0, sizeof *out);
    out->route = route_of(path);
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");  // HEAD: GET's headers, no body (as Starlette)
    int is_post = !strcmp(method, "POST");
    int open_route = !strcmp(path, "/health") || !strcmp(path, "/health_generate");
    if (s->api_key && !open_route) {
        size_t kl = strlen(s->api_key);
        int ok = authorization && !strncmp(authorization, "Bearer ", 7) && strlen(authorization + 7) == kl;
        // Compare without an early exit so timing does not reveal the key.
        unsigned diff = ok ? 0 : 1;
        if (ok)
            for (size_t i = 0; i < kl; i++) diff |= (unsigned char)(authorization[7 + i] ^ s->api_key[i]);
        if (diff) {
            glint_buf_puts(&out->body, "{\"error\":\"Unauthorized\"}");
            out->status = 401;
            out->content_type = "application/json";
            return;
        }
    }
    if (is_get && !strcmp(path, "/health")) {
        out->status = 200;
        out->content_type = "text/plain";
        return;
    }
    if (is_get && !strcmp(path, "/health_generate")) return handle_health_generate(s, gone, gone_arg, out);
    if (is_get && !strcmp(path, "/v1/models")) return handle_models(s, out);
    if (is_get && !strncmp(path, "/v1/models/", 11)) {
        const char *name = path + 11;
        if (!strcmp(name, s->served_model_name)) {
            set_json(out, 200, json_pack("{s:s, s:s, s:I, s:s, s:s, s:n, s:i}", "id", s->served_model_name, "object",
                                         "model", "created", (json_int_t)s->created, "owned_by", "sglang", "root",
                                         s->served_model_name, "parent", "max_model_len", s->context_length));
        } else {  // the one route where sglang uses OpenAI's nested error form
            set_json(out, 404, json_pack("{s:{s:s++, s:s, s:s, s:s}}", "error", "message", "The model '", name,
                                         "' does not exist", "type", "invalid_request_error", "param", "model", "code",
                                         "model_not_found"));
        }
        out->route = GLINT_ROUTE_MODELS;
        return;
    }
    if (is_get && !strcmp(path, "/metrics")) return handle_metrics(s, out);
    if (is_get && !strcmp(path, "/")) {
        glint_buf_puts(&out->body, "glint is running");
        out->status = 200;
        out->content_type = "text/plain";
        return;
    }
    int post_route = out->route == GLINT_ROUTE_CHAT || out->route == GLINT_ROUTE_COMPLETIONS ||
                     out->route == GLINT_ROUTE_TOKENIZE || out->route == GLINT_ROUTE_DETOKENIZE;
    if (!post_route) {
        if (out->route != GLINT_ROUTE_OTHER)
            return set_error(out, 405, "MethodNotAllowed", "Method %s not allowed on %s", method, path);
        return set_error(out, 404, "NotFoundError", "Not Found: %s", path);
    }
    if (!is_post) return set_error(out, 405, "MethodNotAllowed", "Method %s not allowed on %s", method, path);
    if (body_too_large)
        return set_error(out, 413, "RequestTooLarge", "Request body exceeds the server limit of %zu bytes.",
                         s->max_body_bytes);
    if (!content_type || strncasecmp(content_type, "application/json", 16))
        return set_error(out, 400, "BadRequestError", "Unsupported Media Type: Only 'application/json' is allowed");
    json_error_t err;
    json_t *req = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &err);
    if (!req) {
        if (strstr(err.text, "decode byte") || strstr(err.text, "UTF-8"))
            return set_error(out, 400, "Bad Request", "Invalid UTF-8 in the request body at line %d column %d: %s",
                             err.line, err.column, err.text);
        if (strstr(err.text, "JSON_ALLOW_NUL"))  // text is handed on as C strings: a NUL would cut it short
            return set_error(out, 400, "Bad Request",
                             "Invalid JSON body at line %d column %d: strings may not contain \\u0000", err.line,
                             err.column);
        return set_error(out, 400, "Bad Request", "Invalid JSON body at line %d column %d: %s", err.line, err.column,
                         err.text);
    }
    if (!json_is_object(req)) {
        json_decref(req);
        return set_error(out, 400, "Bad Request", "The request body must be a JSON object");
    }
    switch (out->route) {
    case GLINT_ROUTE_CHAT: handle_chat(s, req, gone, gone_arg, out); break;
    case GLINT_ROUTE_COMPLETIONS: handle_completions(s, req, gone, gone_arg, out); break;
    case GLINT_ROUTE_TOKENIZE: handle_tokenize(s, req, out); break;
    case GLINT_ROUTE_DETOKENIZE: handle_detokenize(s, req, out); break;
    }
    json_decref(req);
}
