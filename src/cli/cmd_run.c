// glint run [-m DIR] [-p TEXT]: a chat with the model — a REPL with history and streaming output,
// or one answer with -p. Without -m it uses the embedded demo model (models/demo).
// Commands in the REPL: /reset (forget the conversation), /think on|off, /quit, /help.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/util.h"
#include "engine/generate.h"
#include "text/chat.h"
#include "text/jinja.h"
#include "text/tokenizer.h"

typedef struct {
    glint_model *m;
    glint_tokenizer *tok;
    glint_template *tmpl;
    json_t *special_tokens;
    glint_state *st;
    glint_sampler *sampler;
    float *logits;
    int32_t *cached;  // the tokens in st, in order
    int n_cached, context, max_new, think, on_terminal;
    int one_question;  // -p: no REPL (its commands do not exist)
    int32_t think_end;  // id of </think>
    json_t *history;    // messages
} chat;

typedef struct {
    chat *c;
    glint_detok_stream *detok;
    int in_reasoning;
    char *reasoning, *answer;  // accumulated text
    size_t reasoning_len, answer_len;
} turn;

static void append(char **buf, size_t *len, const char *piece, size_t n) {
    char *grown = realloc(*buf, *len + n + 1);
    if (!grown) return;
    memcpy(grown + *len, piece, n);
    *len += n;
    grown[*len] = 0;
    *buf = grown;
}

static int remember(chat *c, int32_t id) {
    if (c->n_cached < c->context) c->cached[c->n_cached++] = id;
    return 0;
}

// Streams one generated token: reasoning (dim on a terminal, hidden otherwise) until </think>.
static int on_token(int32_t id, void *user) {
    turn *t = user;
    chat *c = t->c;
    if (glint_is_eos(&c->m->cfg, id)) return 0;
    remember(c, id);  // fed back into the cache unless it is the last token
    if (id == c->think_end && t->in_reasoning) {
        t->in_reasoning = 0;
        if (c->on_terminal) fputs("\033[0m\n", stdout);
        fflush(stdout);
        return 0;
    }
    if (glint_tokenizer_is_special(c->tok, id)) {  // tool-call markup: shown, not swallowed
        const char *text = glint_tokenizer_token_text(c->tok, id);
        if (text && !t->in_reasoning) {
            append(&t->answer, &t->answer_len, text, strlen(text));
            fputs(text, stdout);
            fflush(stdout);
        }
        return 0;
    }
    size_t len = 0;
    char *piece = glint_detok_stream_push(t->detok, id, &len);
    if (!piece) return 1;
    if (t->in_reasoning) {
        append(&t->reasoning, &t->reasoning_len, piece, len);
        if (c->on_terminal) fwrite(piece, 1, len, stdout);
    } else {
        append(&t->answer, &t->answer_len, piece, len);
        fwrite(piece, 1, len, stdout);
    }
    fflush(stdout);
    free(piece);
    return 0;
}

// Renders the history, reuses the cached prefix, generates and streams the answer.
static int respond(chat *c) {
    json_t *kwargs = json_pack("{s:b}", "enable_thinking", c->think);
    json_t *request = json_pack("{s:O, s:b, s:o}", "messages", c->history, "add_generation_prompt", 1,
                                "chat_template_kwargs", kwargs);
    size_t len = 0;
    char *prompt = glint_chat_render(c->tmpl, request, c->special_tokens, &len);
    json_decref(request);
    int32_t *ids = NULL;
    int n = prompt ? glint_tokenizer_encode(c->tok, prompt, len, 0, &ids) : -1;
    free(prompt);
    if (n <= 0) {
        fprintf(stderr, "glint run: %s\n", n == 0 ? "empty prompt" : glint_last_error());
        free(ids);
        return -1;
    }
    if (n + c->max_new > c->context) {
        fprintf(stderr, "glint run: the conversation (%d tokens) no longer fits the context of %d%s\n", n, c->context,
                c->one_question ? " (--context-length sets it)" : "; /reset starts over");
        free(ids);
        return -1;
    }
    // Keep the cache rows of the common prefix; at least one token must be fed for fresh logits.
    int common = 0;
    while (common < n - 1 && common < c->n_cached && c->cached[common] == ids[common]) common++;
    c->st->n_past = common;
    c->n_cached = common;
    for (int i = common; i < n; i++) remember(c, ids[i]);
    int rc = glint_forward(c->m, c->st, ids + common, n - common, c->logits, 0);
    free(ids);
    if (rc) {
        fprintf(stderr, "glint run: %s\n", glint_last_error());
        return -1;
    }
    turn t = {c, glint_detok_stream_new(c->tok, 1), c->think, NULL, NULL, 0, 0};
    if (!t.detok) return -1;
    if (c->think && c->on_terminal) fputs("\033[2m", stdout);
    int generated = glint_generate(c->m, c->st, c->sampler, c->logits, c->max_new, 0, on_token, &t);
    size_t rest_len = 0;
    char *rest = glint_detok_stream_flush(t.detok, &rest_len);
    if (rest && rest_len) {
        append(t.in_reasoning ? &t.reasoning : &t.answer, t.in_reasoning ? &t.reasoning_len : &t.answer_len, rest,
               rest_len);
        if (!t.in_reasoning || c->on_terminal) fwrite(rest, 1, rest_len, stdout);
    }
    free(rest);
    if (c->on_terminal) fputs("\033[0m", stdout);
    fputs("\n", stdout);
    fflush(stdout);
    // The last sampled token was never fed: the cache ends one before the remembered tokens.
    if (generated > 0 && c->n_cached > c->st->n_past) c->n_cached = c->st->n_past;
    if (generated >= 0) {
        json_t *msg = json_pack("{s:s, s:s}", "role", "assistant", "content", t.answer ? t.answer : "");
        if (t.reasoning) json_object_set_new(msg, "reasoning_content", json_string(t.reasoning));
        json_array_append_new(c->history, msg);
    }
    glint_detok_stream_free(t.detok);
    free(t.reasoning), free(t.answer);
    if (generated < 0) fprintf(stderr, "glint run: %s\n", glint_last_error());
    return generated < 0 ? -1 : 0;
}

static int user_turn(chat *c, const char *text) {
    json_t *msg = json_pack("{s:s, s:s}", "role", "user", "content", text);
    if (!msg) {  // jansson takes UTF-8 only; the tokenizer names the first bad byte
        int32_t *ids = NULL;
        const int n = glint_tokenizer_encode(c->tok, text, strlen(text), 0, &ids);
        free(ids);
        fprintf(stderr, "glint run: the question was not taken: %s\n",
                n < 0 ? glint_last_error() : "it is not valid UTF-8");
        return -1;
    }
    json_array_append_new(c->history, msg);
    return respond(c);
}

static void help(void) {
    printf("commands: /reset  forget the conversation   /think on|off  reasoning   /quit\n");
}

int cmd_run(int argc, char **argv) {
    model_options o;
    int rc = parse_options("run", argc, argv, &o);
    if (rc) return rc;
    if (o.ids) {
        fprintf(stderr, "glint run: --ids is for glint generate\n");
        return 2;
    }
    o.model_dir = model_dir_or_demo(&o);
    glint_sampling_params sp;
    if (resolve_sampling("run", &o, &sp)) return 1;
    chat c = {0};
    c.think = 1;
    c.on_terminal = isatty(1);
    c.max_new = o.n_predict > 0 ? (int)o.n_predict : 512;  // tokens per answer
    glint_backend *be = make_backend(&o);
    rc = 1;
    if (!be) return 1;
    if (!(c.m = load_model("run", &o, be))) return 1;
    c.context = context_for(c.m, &o);
    c.tok = glint_tokenizer_load_dir(o.model_dir);
    c.tmpl = c.tok ? glint_chat_load_model_template(o.model_dir, &c.special_tokens) : NULL;
    c.st = c.tmpl ? glint_state_new(c.m, c.context) : NULL;
    c.sampler = c.st ? glint_sampler_new(&sp, c.m->cfg.vocab_size) : NULL;
    c.logits = c.sampler ? malloc(sizeof(float) * (size_t)c.m->cfg.vocab_size) : NULL;
    c.cached = c.logits ? malloc(sizeof(int32_t) * (size_t)c.context) : NULL;
    c.history = json_array();
    c.think_end = c.tok ? glint_tokenizer_token_id(c.tok, "</think>") : -1;
    if (!c.cached) {
        fprintf(stderr, "glint run: %s\n", glint_last_error());
        goto done;
    }
    if (o.prompt) {
        c.one_question = 1;
        rc = user_turn(&c, o.prompt) ? 1 : 0;
        goto done;
    }
    int interactive = isatty(0);
    if (interactive)
        printf("glint %s (%s) — /help for commands\n", o.model_dir, c.m->ckpt ? "loaded" : "synthetic"), help();
    char *line = NULL;
    size_t cap = 0;
    rc = 0;
    for (;;) {
        if (interactive) {
            printf("> ");
            fflush(stdout);
        }
        ssize_t got = getline(&line, &cap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (!got) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/help")) help();
        else if (!strcmp(line, "/reset")) {
            json_array_clear(c.history);
            c.n_cached = 0;
            c.st->n_past = 0;
            printf("(conversation reset)\n");
        } else if (!strcmp(line, "/think on") || !strcmp(line, "/think off")) {
            c.think = !strcmp(line, "/think on");
            printf("(reasoning %s)\n", c.think ? "on" : "off");
        } else if (line[0] == '/') {
            printf("unknown command %s\n", line);
            help();
        } else if (user_turn(&c, line)) {
            json_array_remove(c.history, json_array_size(c.history) - 1);  // drop the unanswered question
        }
        fflush(stdout);
    }
    free(line);
done:
    json_decref(c.history);
    free(c.cached);
    free(c.logits);
    glint_sampler_free(c.sampler);
    glint_state_free(c.m, c.st);
    glint_template_free(c.tmpl);
    json_decref(c.special_tokens);
    glint_tokenizer_free(c.tok);
    glint_model_free(c.m);
    return rc;
}
