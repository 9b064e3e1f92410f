// Chat request -> template context -> prompt, the way transformers' apply_chat_template builds
// the context (special tokens, then messages/tools/documents/add_generation_prompt, then the
// chat_template_kwargs spread in) after sglang's message preprocessing (arguments JSON -> object).
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "common/util.h"
#include "text/chat.h"

json_t *glint_chat_normalize_messages(const json_t *messages) {
    if (!json_is_array(messages)) { glint_set_error("request field 'messages' must be an array"); return NULL; }
    json_t *copy = json_deep_copy(messages);
    if (!copy) { glint_set_error("out of memory copying messages"); return NULL; }
    size_t i;
    json_t *msg;
    json_array_foreach(copy, i, msg) {
        if (!json_is_object(msg)) continue;
        const char *role = json_string_value(json_object_get(msg, "role"));
        json_t *calls = json_object_get(msg, "tool_calls");
        if (!role || strcmp(role, "assistant") != 0 || !json_is_array(calls)) continue;
        size_t k;
        json_t *call;
        json_array_foreach(calls, k, call) {
            json_t *fn = json_object_get(call, "function");
            json_t *args = json_object_get(fn, "arguments");
            if (!json_is_string(args)) continue;
            json_error_t err;
            json_t *parsed = json_loadb(json_string_value(args), json_string_length(args), JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
            if (!parsed) {
                glint_set_error("messages[%zu].tool_calls[%zu].function.arguments is not valid JSON (line %d column %d: %s)", i, k,
                                err.line, err.column, err.text);
                json_decref(copy);
                return NULL;
            }
            if (!json_is_object(parsed)) {
                glint_set_error("messages[%zu].tool_calls[%zu].function.arguments must be a JSON object", i, k);
                json_decref(parsed);
                json_decref(copy);
                return NULL;
            }
            json_object_set_new(fn, "arguments", parsed);
        }
    }
    return copy;
}

static const char *const SPECIAL_TOKEN_KEYS[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                                 "pad_token", "cls_token", "mask_token", NULL};

json_t *glint_chat_special_tokens(const json_t *config) {
    json_t *out = json_object();
    if (!out) { glint_set_error("out of memory"); return NULL; }
    for (int i = 0; SPECIAL_TOKEN_KEYS[i]; i++) {
        json_t *v = json_object_get(config, SPECIAL_TOKEN_KEYS[i]);
        if (json_is_object(v)) v = json_object_get(v, "content");  // AddedToken as a dict
        if (json_is_string(v)) json_object_set(out, SPECIAL_TOKEN_KEYS[i], v);
    }
    return out;
}

char *glint_chat_render(const glint_template *tmpl, const json_t *request, const json_t *special_tokens, size_t *out_len) {
    if (!json_is_object(request)) { glint_set_error("chat request must be a JSON object"); return NULL; }
    json_t *messages = json_object_get(request, "messages");
    if (!messages) { glint_set_error("chat request has no 'messages'"); return NULL; }
    json_t *tools = json_object_get(request, "tools");
    json_t *agp = json_object_get(request, "add_generation_prompt");
    json_t *kwargs = json_object_get(request, "chat_template_kwargs");
    if (tools && !json_is_array(tools) && !json_is_null(tools)) { glint_set_error("request field 'tools' must be an array"); return NULL; }
    if (agp && !json_is_boolean(agp)) { glint_set_error("request field 'add_generation_prompt' must be a boolean"); return NULL; }
    if (kwargs && !json_is_object(kwargs) && !json_is_null(kwargs)) { glint_set_error("request field 'chat_template_kwargs' must be an object"); return NULL; }

    json_t *normalized = glint_chat_normalize_messages(messages);
    if (!normalized) return NULL;
    json_t *ctx = json_object();
    if (!ctx) { json_decref(normalized); glint_set_error("out of memory"); return NULL; }
    if (special_tokens) json_object_update(ctx, (json_t *)special_tokens);
    json_object_set_new(ctx, "messages", normalized);
    json_object_set(ctx, "tools", tools ? tools : json_null());
    json_object_set_new(ctx, "documents", json_null());
    json_object_set_new(ctx, "add_generation_prompt", json_boolean(agp && json_is_true(agp)));
    if (json_is_object(kwargs)) {
        const char *key;
        json_t *val;
        json_object_foreach(kwargs, key, val) {
            // Python raises "got multiple values for keyword argument" for these.
            if (!strcmp(key, "messages") || !strcmp(key, "tools") || !strcmp(key, "documents") ||
                !strcmp(key, "add_generation_prompt")) {
                glint_set_error("chat_template_kwargs may not set '%s'", key);
                json_decref(ctx);
                return NULL;
            }
            json_object_set(ctx, key, val);
        }
    }
    char *text = glint_template_render(tmpl, ctx, out_len);
    json_decref(ctx);
    return text;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

glint_template *glint_chat_load_model_template(const char *dir, json_t **special_tokens) {
    char *tc_path = glint_path_join(dir, "tokenizer_config.json");
    char *jinja_path = glint_path_join(dir, "chat_template.jinja");
    json_t *config = NULL;
    glint_template *tmpl = NULL;
    if (!tc_path || !jinja_path) goto done;
    if (file_exists(tc_path)) {
        json_error_t err;
        config = json_load_file(tc_path, JSON_ALLOW_NUL, &err);
        if (!config) { glint_set_error("%s:%d:%d: %s", tc_path, err.line, err.column, err.text); goto done; }
        *special_tokens = glint_chat_special_tokens(config);
        if (!*special_tokens) goto done;
    }
    if (file_exists(jinja_path)) {
        size_t len;
        char *src = glint_read_text_file(jinja_path, &len);
        if (!src) goto done;
        tmpl = glint_template_parse(src, len, jinja_path);
        free(src);
        goto done;
    }
    json_t *ct = config ? json_object_get(config, "chat_template") : NULL;
    if (json_is_array(ct)) {  // [{"name": "default", "template": "..."}, ...]
        size_t i;
        json_t *entry, *found = NULL;
        json_array_foreach(ct, i, entry) {
            const char *name = json_string_value(json_object_get(entry, "name"));
            if (name && !strcmp(name, "default")) found = json_object_get(entry, "template");
        }
        ct = found;
    }
    if (!json_is_string(ct)) {
        glint_set_error("%s: no chat_template.jinja and no chat_template string in tokenizer_config.json", dir);
        goto done;
    }
    char name[4096];
    snprintf(name, sizeof name, "%s#chat_template", tc_path);
    tmpl = glint_template_parse(json_string_value(ct), json_string_length(ct), name);
done:
    json_decref(config);
    free(tc_path);
    free(jinja_path);
    return tmpl;
}

