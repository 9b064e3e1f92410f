// Chat request -> prompt text, as transformers' apply_chat_template (called the way sglang does).
#ifndef GLINT_CHAT_H
#define GLINT_CHAT_H

#include <stddef.h>
#include <jansson.h>

#include "text/jinja.h"

// Builds the template context from a chat request {messages, tools?, add_generation_prompt?,
// chat_template_kwargs?} and renders it. special_tokens (may be NULL) is an object of
// name -> string (bos_token, eos_token, ...). Returns malloc'ed text or NULL + error.
char *glint_chat_render(const glint_template *tmpl, const json_t *request, const json_t *special_tokens_or_NULL,
                        size_t *out_len);

// Returns a deep copy of messages where every assistant tool_calls[].function.arguments given as a
// JSON string is parsed into its value (what sglang does before templating). NULL + error when a
// string is not valid JSON or not an object.
json_t *glint_chat_normalize_messages(const json_t *messages);

// Reads the special tokens (bos_token, eos_token, unk_token, pad_token, ...) of a tokenizer_config.json
// object into a new object of strings (AddedToken dicts contribute their "content").
json_t *glint_chat_special_tokens(const json_t *tokenizer_config);

// Loads DIR/chat_template.jinja, else the chat_template string (or the "default" entry of a list)
// of DIR/tokenizer_config.json, and the special tokens of tokenizer_config.json into
// *special_tokens (NULL when there is no tokenizer_config.json). NULL + error on failure.
glint_template *glint_chat_load_model_template(const char *dir, json_t **special_tokens);

#endif
