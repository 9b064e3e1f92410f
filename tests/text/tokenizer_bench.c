// Encode-throughput benchmark used by tools/tokenizer/bench.py (not a test).
// Usage: tokenizer_bench TOKENIZER_JSON CORPUS_FILE [REPEATS]
// CORPUS_FILE holds documents separated by NUL bytes; each document is encoded separately
// (add_special_tokens off). Prints one JSON line: load time, best encode time, ids and a checksum
// of all ids so the caller can check that the ids equal Hugging Face's.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "text/tokenizer.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER_JSON CORPUS_FILE [REPEATS]\n", argv[0]);
        return 2;
    }
    int repeats = argc > 3 ? atoi(argv[3]) : 3;
    double t0 = glint_now_seconds();
    glint_tokenizer *tok = glint_tokenizer_load(argv[1], NULL);
    double load_s = glint_now_seconds() - t0;
    if (!tok) {
        fprintf(stderr, "%s\n", glint_last_error());
        return 1;
    }
    size_t len;
    char *corpus = glint_read_text_file(argv[2], &len);
    if (!corpus) {
        fprintf(stderr, "%s\n", glint_last_error());
        glint_tokenizer_free(tok);
        return 1;
    }
    double best = 1e30;
    uint64_t n_ids = 0, checksum = 0;
    size_t n_docs = 0;
    for (int r = 0; r < repeats; r++) {
        n_ids = 0;
        checksum = 1469598103934665603ULL;
        n_docs = 0;
        double start = glint_now_seconds();
        for (size_t pos = 0; pos < len;) {
            const char *doc = corpus + pos;
            size_t doc_len = strnlen(doc, len - pos);
            int32_t *ids = NULL;
            int n = glint_tokenizer_encode(tok, doc, doc_len, 0, &ids);
            if (n < 0) {
                fprintf(stderr, "document %zu: %s\n", n_docs, glint_last_error());
                return 1;
            }
            for (int i = 0; i < n; i++) checksum = (checksum ^ (uint32_t)ids[i]) * 1099511628211ULL;
            n_ids += (uint64_t)n;
            free(ids);
            n_docs++;
            pos += doc_len + 1;
        }
        double elapsed = glint_now_seconds() - start;
        if (elapsed < best) best = elapsed;
    }
    printf("{\"load_s\": %.4f, \"encode_s\": %.4f, \"bytes\": %zu, \"docs\": %zu, \"ids\": %llu, \"checksum\": %llu}\n",
           load_s, best, len, n_docs, (unsigned long long)n_ids, (unsigned long long)checksum);
    free(corpus);
    glint_tokenizer_free(tok);
    return 0;
}
