// Tokenizer API behaviour outside the parity corpus: error reporting (missing file, malformed JSON
// with line:column, unsupported components, invalid UTF-8, unknown ids), accessors, tokenizer_config
// tokens, the streaming detokenizer on split characters, and concurrent encoding from several threads.
// Usage: test_tokenizer_api FIXTURES_TOKENIZER_DIR SCRATCH_DIR
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "text/tokenizer.h"

static int passed, failed;

#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (cond) {                                             \
            passed++;                                           \
        } else {                                                \
            failed++;                                           \
            fprintf(stderr, "FAIL line %d: ", __LINE__);        \
            fprintf(stderr, __VA_ARGS__);                       \
            fprintf(stderr, " [last error: %s]\n", glint_last_error()); \
        }                                                       \
    } while (0)

static const char *scratch;

static char *write_file(const char *name, const char *content) {
    char *path = glint_path_join(scratch, name);
    FILE *f = fopen(path, "wb");
    fputs(content, f);
    fclose(f);
    return path;
}

static void test_load_errors(void) {
    glint_tokenizer *tok = glint_tokenizer_load("/nonexistent/tokenizer.json", NULL);
    CHECK(!tok && strstr(glint_last_error(), "/nonexistent/tokenizer.json"), "missing file is named");

    char *bad = write_file("bad.json", "{\n  \"model\": {\n    \"vocab\": {\"a\": 0 \"b\": 1}\n  }\n}\n");
    tok = glint_tokenizer_load(bad, NULL);
    CHECK(!tok && strstr(glint_last_error(), "bad.json:3:"), "malformed JSON gives file:line:column");
    free(bad);

    char *wordpiece = write_file("wp.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
    tok = glint_tokenizer_load(wordpiece, NULL);
    CHECK(!tok && strstr(glint_last_error(), "WordPiece"), "unsupported model type is named");
    free(wordpiece);

    char *merge = write_file("merge.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}");
    tok = glint_tokenizer_load(merge, NULL);
    CHECK(!tok && strstr(glint_last_error(), "merges[0]"), "merge whose result is not in the vocabulary");
    free(merge);

    char *regex = write_file("regex.json",
                             "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                             " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"},"
                             " \"behavior\": \"Isolated\", \"invert\": false}}");
    tok = glint_tokenizer_load(regex, NULL);
    CHECK(!tok && strstr(glint_last_error(), "regex"), "bad regex is reported");
    free(regex);

    char *array = write_file("array.json", "[1, 2]");
    tok = glint_tokenizer_load(array, NULL);
    CHECK(!tok, "top-level array rejected");
    free(array);
}

static void test_glm(const char *dir) {
    glint_tokenizer *tok = glint_tokenizer_load_dir(dir);
    CHECK(tok != NULL, "load_dir %s", dir);
    if (!tok) return;
    CHECK(glint_tokenizer_vocab_size(tok) == 6036, "vocab size %d", glint_tokenizer_vocab_size(tok));
    int32_t eot = glint_tokenizer_token_id(tok, "<|endoftext|>");
    CHECK(eot == 6000, "<|endoftext|> id %d", (int)eot);
    CHECK(glint_tokenizer_is_special(tok, eot) && !glint_tokenizer_is_special(tok, 100), "special flags");
    CHECK(glint_tokenizer_token_text(tok, eot) && !strcmp(glint_tokenizer_token_text(tok, eot), "<|endoftext|>"),
          "token_text of a special token");
    CHECK(glint_tokenizer_token_text(tok, 6036) == NULL && glint_tokenizer_token_text(tok, -1) == NULL,
          "token_text out of range");
    CHECK(glint_tokenizer_token_id(tok, "no such token at all") == -1, "absent token");
    CHECK(glint_tokenizer_eos_token(tok) && !strcmp(glint_tokenizer_eos_token(tok), "<|endoftext|>"), "eos from config");
    CHECK(glint_tokenizer_bos_token(tok) == NULL, "bos is null in the GLM config");
    int32_t a = glint_tokenizer_token_id(tok, "a");
    CHECK(a >= 0 && !strcmp(glint_tokenizer_token_text(tok, a), "a"), "token_text is a C string");

    int32_t *ids = NULL;
    CHECK(glint_tokenizer_encode(tok, "ok \xC3\x28", 5, 0, &ids) == -1 && strstr(glint_last_error(), "offset 3"),
          "invalid UTF-8 rejected with its offset");
    CHECK(glint_tokenizer_encode(tok, "\xED\xA0\x80", 3, 0, &ids) == -1, "UTF-16 surrogate rejected");
    CHECK(glint_tokenizer_encode(tok, "\xC0\xAF", 2, 0, &ids) == -1, "overlong encoding rejected");
    CHECK(glint_tokenizer_encode(tok, "\xF0\x9F\x98", 3, 0, &ids) == -1, "truncated sequence rejected");
    int n = glint_tokenizer_encode(tok, "a\0b", 3, 0, &ids);
    CHECK(n > 0, "embedded NUL encodes");
    size_t len = 0;
    char *text = n > 0 ? glint_tokenizer_decode(tok, ids, (size_t)n, 0, &len) : NULL;
    CHECK(text && len == 3 && !memcmp(text, "a\0b", 3), "embedded NUL round trip");
    free(text);
    free(ids);
    CHECK(glint_tokenizer_encode(tok, "", 0, 0, &ids) == 0 && ids == NULL, "empty text gives no ids");

    int32_t unknown[2] = {5, 99999};
    CHECK(glint_tokenizer_decode(tok, unknown, 2, 0, &len) == NULL && strstr(glint_last_error(), "99999"),
          "unknown id in decode");
    int32_t negative = -3;
    CHECK(glint_tokenizer_decode(tok, &negative, 1, 0, &len) == NULL, "negative id in decode");

    // Streaming an emoji whose bytes are separate tokens: nothing until the character is complete.
    const char *emoji = "x\xF0\x9F\x98\x80y";
    n = glint_tokenizer_encode(tok, emoji, strlen(emoji), 0, &ids);
    glint_detok_stream *s = glint_detok_stream_new(tok, 0);
    char joined[64] = {0};
    size_t joined_len = 0;
    int partial_pieces = 0;
    for (int i = 0; i < n; i++) {
        char *piece = glint_detok_stream_push(s, ids[i], &len);
        if (!piece) break;
        if (len && (size_t)n > 1 && len != strlen(piece)) partial_pieces++;
        for (size_t k = 0; k < len; k++)
            if (((unsigned char)piece[k] & 0xC0) == 0x80 && (k == 0)) partial_pieces++;
        memcpy(joined + joined_len, piece, len);
        joined_len += len;
        free(piece);
    }
    char *rest = glint_detok_stream_flush(s, &len);
    CHECK(rest && len == 0, "nothing left after a complete character");
    free(rest);
    CHECK(joined_len == strlen(emoji) && !memcmp(joined, emoji, joined_len) && !partial_pieces,
          "stream releases the emoji whole");
    CHECK(glint_detok_stream_push(s, 99999, &len) == NULL, "stream rejects an unknown id");
    glint_detok_stream_free(s);

    // An incomplete character at the end comes out of flush as U+FFFD, like the full decode.
    s = glint_detok_stream_new(tok, 0);
    int32_t truncated[3] = {ids[0], ids[1], ids[2]};  // "x" + the first bytes of the emoji
    size_t total = 0;
    for (int i = 0; i < 3 && n >= 3; i++) {
        char *piece = glint_detok_stream_push(s, truncated[i], &len);
        total += piece ? len : 0;
        free(piece);
    }
    rest = glint_detok_stream_flush(s, &len);
    char *full = glint_tokenizer_decode(tok, truncated, 3, 0, &joined_len);
    CHECK(rest && full && total + len == joined_len && !memcmp(full + total, rest, len) &&
              strstr(full, "\xEF\xBF\xBD"),
          "flush gives the replacement character");
    free(rest);
    free(full);
    glint_detok_stream_free(s);
    free(ids);
    glint_tokenizer_free(tok);
}

// tokenizer_config.json: bos/eos as AddedToken objects, and an added_tokens_decoder entry that
// tokenizer.json lacks (transformers adds it, with its flags, after the existing ids).
static void test_config_tokens(const char *dir) {
    char *json = glint_path_join(dir, "tokenizer.json");
    char *config = write_file("config.json",
                              "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<sop>\"},"
                              " \"eos_token\": \"<|user|>\", \"added_tokens_decoder\": {"
                              " \"6000\": {\"content\": \"<|endoftext|>\", \"special\": true},"
                              " \"6036\": {\"content\": \"<|newtok|>\", \"special\": true, \"normalized\": false,"
                              " \"lstrip\": false, \"rstrip\": false, \"single_word\": false}}}");
    glint_tokenizer *tok = glint_tokenizer_load(json, config);
    CHECK(tok != NULL, "load with a config");
    if (tok) {
        CHECK(!strcmp(glint_tokenizer_bos_token(tok), "<sop>") && !strcmp(glint_tokenizer_eos_token(tok), "<|user|>"),
              "bos/eos from the config (object and string forms)");
        CHECK(glint_tokenizer_token_id(tok, "<|newtok|>") == 6036 && glint_tokenizer_is_special(tok, 6036) &&
                  glint_tokenizer_vocab_size(tok) == 6037,
              "config-only added token gets the next id");
        int32_t *ids = NULL;
        int n = glint_tokenizer_encode(tok, "a<|newtok|>b", 12, 0, &ids);
        CHECK(n == 3 && ids[1] == 6036, "config-only added token is matched in text");
        size_t len;
        char *text = n > 0 ? glint_tokenizer_decode(tok, ids, (size_t)n, 1, &len) : NULL;
        CHECK(text && !strcmp(text, "ab"), "and skipped as special");
        free(text);
        free(ids);
        glint_tokenizer_free(tok);
    }
    char *bad = write_file("bad_config.json", "{\"eos_token\": }");
    tok = glint_tokenizer_load(json, bad);
    CHECK(!tok && strstr(glint_last_error(), "bad_config.json:1:"), "malformed config reports line:column");
    free(bad);
    free(config);
    free(json);
}

// ---- concurrency: several threads encode and decode the same texts on one tokenizer --------------
static const char *thread_texts[] = {
    "The quick brown fox jumps over the lazy dog. 12345 6789",
    "你好，世界！こんにちは 한국어 Привет мир 🎉👩🏽‍💻",
    "<|user|>hello<|assistant|><think>x</think>answer",
    "def f(x):\n    return x * 2\n\n\n    indented   spaces",
};
enum { N_THREAD_TEXTS = 4, N_THREADS = 4, ROUNDS = 300 };

typedef struct {
    const glint_tokenizer *tok;
    int32_t *expected[N_THREAD_TEXTS];
    int expected_n[N_THREAD_TEXTS];
    int mismatches;
} thread_job;

static void *encode_worker(void *arg) {
    thread_job *job = arg;
    for (int r = 0; r < ROUNDS; r++) {
        int t = r % N_THREAD_TEXTS;
        int32_t *ids = NULL;
        int n = glint_tokenizer_encode(job->tok, thread_texts[t], strlen(thread_texts[t]), r & 1, &ids);
        int skip = (r & 1) ? 2 : 0;  // with special tokens: "[gMASK]<sop>" first
        if (n != job->expected_n[t] + skip || memcmp(ids + skip, job->expected[t], (size_t)job->expected_n[t] * 4))
            job->mismatches++;
        size_t len;
        char *text = glint_tokenizer_decode(job->tok, ids + skip, (size_t)job->expected_n[t], 0, &len);
        if (!text || strcmp(text, thread_texts[t]) != 0) job->mismatches++;
        free(text);
        free(ids);
    }
    return NULL;
}

static void test_threads(const char *dir) {
    glint_tokenizer *tok = glint_tokenizer_load_dir(dir);
    if (!tok) return;
    thread_job jobs[N_THREADS];
    for (int j = 0; j < N_THREADS; j++) {
        jobs[j].tok = tok;
        jobs[j].mismatches = 0;
        for (int t = 0; t < N_THREAD_TEXTS; t++)
            jobs[j].expected_n[t] = glint_tokenizer_encode(tok, thread_texts[t], strlen(thread_texts[t]), 0,
                                                           &jobs[j].expected[t]);
    }
    pthread_t threads[N_THREADS];
    for (int j = 0; j < N_THREADS; j++) pthread_create(&threads[j], NULL, encode_worker, &jobs[j]);
    int mismatches = 0;
    for (int j = 0; j < N_THREADS; j++) {
        pthread_join(threads[j], NULL);
        mismatches += jobs[j].mismatches;
        for (int t = 0; t < N_THREAD_TEXTS; t++) free(jobs[j].expected[t]);
    }
    CHECK(mismatches == 0, "%d mismatches from concurrent encode/decode", mismatches);
    glint_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s FIXTURES_TOKENIZER_DIR SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    scratch = argv[2];
    char *glm = glint_path_join(argv[1], "glm5-style");
    test_load_errors();
    test_glm(glm);
    test_config_tokens(glm);
    test_threads(glm);
    free(glm);
    printf("tokenizer api: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
