// Hugging Face tokenizer.json (BPE model) in C: encode text to ids and decode ids to text,
// byte-exact with the Python `tokenizers` library (tests/fixtures/tokenizer hold the references).
//
// A loaded tokenizer is immutable except for an internal word cache guarded by its own locks, so
// every function below may be called from several threads at once on one tokenizer.
#ifndef GLINT_TOKENIZER_H
#define GLINT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct glint_tokenizer glint_tokenizer;

// Loads tokenizer.json and, when the path is not NULL, tokenizer_config.json (bos/eos tokens).
// NULL + glint_set_error (file, line:column for malformed JSON, unsupported component) on failure.
glint_tokenizer *glint_tokenizer_load(const char *tokenizer_json_path, const char *tokenizer_config_path_or_NULL);
// DIR/tokenizer.json and, if present, DIR/tokenizer_config.json.
glint_tokenizer *glint_tokenizer_load_dir(const char *model_dir);
void glint_tokenizer_free(glint_tokenizer *tok);

// Encodes len bytes of UTF-8 text. Returns the number of ids (>= 0) and a malloc'ed array in *ids
// (NULL when 0 ids), or -1 + glint_set_error (invalid UTF-8 with its byte offset, out of memory).
int glint_tokenizer_encode(const glint_tokenizer *tok, const char *text, size_t len, int add_special_tokens,
                           int32_t **ids);
// Decodes ids to a malloc'ed NUL-terminated string (length in *out_len when not NULL).
// NULL + glint_set_error on an id the tokenizer does not know.
char *glint_tokenizer_decode(const glint_tokenizer *tok, const int32_t *ids, size_t n, int skip_special_tokens,
                             size_t *out_len);

int32_t glint_tokenizer_token_id(const glint_tokenizer *tok, const char *token_text);  // -1 if absent
const char *glint_tokenizer_token_text(const glint_tokenizer *tok, int32_t id);      // NULL if no such id
int glint_tokenizer_vocab_size(const glint_tokenizer *tok);  // 1 + the largest id (model + added tokens)
int glint_tokenizer_is_special(const glint_tokenizer *tok, int32_t id);
// bos/eos token strings from tokenizer_config.json (NULL if absent or null there).
const char *glint_tokenizer_bos_token(const glint_tokenizer *tok);
const char *glint_tokenizer_eos_token(const glint_tokenizer *tok);

// Streaming detokenizer (Hugging Face DecodeStream semantics): push ids one at a time; each push
// returns the text that became complete (possibly ""), malloc'ed. Text is only released once it
// forms complete UTF-8, and the concatenation of all pieces plus flush equals the full decode.
typedef struct glint_detok_stream glint_detok_stream;
glint_detok_stream *glint_detok_stream_new(const glint_tokenizer *tok, int skip_special_tokens);
char *glint_detok_stream_push(glint_detok_stream *stream, int32_t id, size_t *out_len);  // NULL on unknown id
// Whatever remains (an incomplete UTF-8 tail comes out as U+FFFD, like the full decode).
char *glint_detok_stream_flush(glint_detok_stream *stream, size_t *out_len);
void glint_detok_stream_free(glint_detok_stream *stream);

#endif
