// Parity with Hugging Face `tokenizers`: for every corpus string of a fixture's reference.json,
// encode (with and without special tokens), decode (with and without skipping specials) and the
// streaming detokenizer must give exactly what tools/tokenizer/make_references.py recorded.
// Usage: test_tokenizer_parity TOKENIZER_JSON REFERENCE_JSON
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "text/tokenizer.h"

static int failures, checks;

static void fail(const char *what, size_t case_index, const char *text) {
    failures++;
    if (failures <= 20) fprintf(stderr, "FAIL case %zu (%s): text=\"%.80s\"\n", case_index, what, text);
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

// True when s[0..n) is complete, valid UTF-8 (what a streamed piece must be).
static int valid_utf8(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n || (k == 2 && c < 0xC2)) return 0;
        for (size_t j = 1; j < k; j++)
            if ((u[i + j] & 0xC0) != 0x80) return 0;
        uint32_t cp = k == 1 ? c : k == 2 ? (c & 0x1Fu) : k == 3 ? (c & 0x0Fu) : (c & 0x07u);
        for (size_t j = 1; j < k; j++) cp = (cp << 6) | (u[i + j] & 0x3Fu);
        if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += k;
    }
    return 1;
}

static int32_t *json_ids(json_t *arr, size_t *n) {
    *n = json_array_size(arr);
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    for (size_t i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return ids;
}

static void check_encode(const glint_tokenizer *tok, size_t ci, const char *text, size_t len, int special,
                         json_t *expected_json) {
    size_t n_expected;
    int32_t *expected = json_ids(expected_json, &n_expected);
    int32_t *ids = NULL;
    int n = glint_tokenizer_encode(tok, text, len, special, &ids);
    checks++;
    if (n < 0 || (size_t)n != n_expected || (n && memcmp(ids, expected, (size_t)n * sizeof *ids) != 0)) {
        fail(special ? "encode add_special_tokens" : "encode", ci, text);
        if (failures <= 20) {
            if (n < 0) fprintf(stderr, "  error: %s\n", glint_last_error());
            else print_ids("got     ", ids, (size_t)n);
            print_ids("expected", expected, n_expected);
        }
    }
    free(ids);
    free(expected);
}

static void check_decode(const glint_tokenizer *tok, size_t ci, const char *text, const int32_t *ids, size_t n,
                         int skip, json_t *expected_json, json_t *expected_pieces) {
    const char *expected = json_string_value(expected_json);
    size_t expected_len = json_string_length(expected_json);
    size_t len = 0;
    char *got = glint_tokenizer_decode(tok, ids, n, skip, &len);
    checks++;
    if (!got || len != expected_len || memcmp(got, expected, len) != 0) {
        fail(skip ? "decode skip_special_tokens" : "decode", ci, text);
        if (failures <= 20) fprintf(stderr, "  got      \"%s\"\n  expected \"%s\"\n", got ? got : glint_last_error(), expected);
    }
    free(got);

    // Streaming: each piece equals what HF's DecodeStream returned for that id, and the pieces plus
    // flush concatenate to the full decode.
    glint_detok_stream *stream = glint_detok_stream_new(tok, skip);
    char *joined = calloc(1, 1);
    size_t joined_len = 0;
    int bad_utf8_piece = 0, piece_mismatch = -1;
    for (size_t i = 0; i <= n; i++) {
        size_t piece_len = 0;
        char *piece = i < n ? glint_detok_stream_push(stream, ids[i], &piece_len) : glint_detok_stream_flush(stream, &piece_len);
        if (!piece) break;
        json_t *hf_piece = i < n ? json_array_get(expected_pieces, i) : NULL;
        if (hf_piece && piece_mismatch < 0 &&
            (json_string_length(hf_piece) != piece_len || memcmp(json_string_value(hf_piece), piece, piece_len) != 0))
            piece_mismatch = (int)i;
        // Every piece must be complete UTF-8 on its own.
        if (!valid_utf8(piece, piece_len)) bad_utf8_piece = 1;
        joined = realloc(joined, joined_len + piece_len + 1);
        memcpy(joined + joined_len, piece, piece_len);
        joined_len += piece_len;
        joined[joined_len] = 0;
        free(piece);
    }
    glint_detok_stream_free(stream);
    checks++;
    if (piece_mismatch >= 0 || json_array_size(expected_pieces) != n) {
        fail(skip ? "stream pieces vs HF DecodeStream (skip_special_tokens)" : "stream pieces vs HF DecodeStream", ci, text);
        if (failures <= 20) fprintf(stderr, "  first differing piece: id #%d\n", piece_mismatch);
    }
    checks++;
    if (joined_len != expected_len || memcmp(joined, expected, joined_len) != 0 || bad_utf8_piece) {
        fail(skip ? "stream skip_special_tokens" : "stream", ci, text);
        if (failures <= 20) fprintf(stderr, "  got      \"%s\"\n  expected \"%s\"\n", joined, expected);
    }
    free(joined);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s TOKENIZER_JSON REFERENCE_JSON\n", argv[0]);
        return 2;
    }
    glint_tokenizer *tok = glint_tokenizer_load(argv[1], NULL);
    if (!tok) {
        fprintf(stderr, "load failed: %s\n", glint_last_error());
        return 1;
    }
    json_error_t err;
    json_t *ref = json_load_file(argv[2], 0, &err);
    if (!ref) {
        fprintf(stderr, "%s:%d:%d: %s\n", argv[2], err.line, err.column, err.text);
        glint_tokenizer_free(tok);
        return 1;
    }
    json_t *cases = json_object_get(ref, "cases");
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *c = json_array_get(cases, ci);
        json_t *text_json = json_object_get(c, "text");
        const char *text = json_string_value(text_json);
        size_t len = json_string_length(text_json);
        check_encode(tok, ci, text, len, 0, json_object_get(c, "ids"));
        check_encode(tok, ci, text, len, 1, json_object_get(c, "ids_with_special"));
        size_t n;
        int32_t *ids = json_ids(json_object_get(c, "ids_with_special"), &n);
        check_decode(tok, ci, text, ids, n, 0, json_object_get(c, "decoded"), json_object_get(c, "stream"));
        check_decode(tok, ci, text, ids, n, 1, json_object_get(c, "decoded_skip_special"),
                     json_object_get(c, "stream_skip_special"));
        free(ids);
    }
    size_t n_cases = json_array_size(cases);
    json_decref(ref);
    glint_tokenizer_free(tok);
    if (n_cases < 100) {
        fprintf(stderr, "reference has only %zu cases (need >= 100)\n", n_cases);
        return 1;
    }
    printf("%s: %zu strings, %d passed, %d failed\n", argv[1], n_cases, checks - failures, failures);
    return failures ? 1 : 0;
}
