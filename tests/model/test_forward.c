// Forward pass vs transformers 5.17 (tests/fixtures/models/*/reference.json, made by
// tools/fixtures/make_fixtures.py): logits of every prompt position within 1e-4 of max|ref|, for one
// prefill, token-by-token decode and chunked prefill; and the 24-token greedy continuation with the
// cache identical to the oracle's. GLINT_TEST_TP=N: the model split over N tensor-parallel ranks.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/glm.h"

#include "../test_model.h"

static const double TOLERANCE = 1e-4;

typedef struct {
    int32_t *prompt, *greedy;
    int n_prompt, n_greedy;
    float *logits;  // [n_prompt, vocab]
    double max_ref;
    glint_load_options opts;
    char pattern[256];
} reference;

static int32_t *read_ids(json_t *arr, int *n) {
    *n = (int)json_array_size(arr);
    int32_t *ids = malloc(sizeof *ids * (size_t)(*n ? *n : 1));
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return ids;
}

static int load_reference(const char *dir, int vocab, reference *ref) {
    memset(ref, 0, sizeof *ref);
    char *path = glint_path_join(dir, "reference.json");
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    free(path);
    if (!root) {
        fprintf(stderr, "%s/reference.json: %s\n", dir, err.text);
        return -1;
    }
    ref->prompt = read_ids(json_object_get(root, "prompt_ids"), &ref->n_prompt);
    ref->greedy = read_ids(json_object_get(root, "greedy_ids"), &ref->n_greedy);
    json_t *rows = json_object_get(root, "logits");
    ref->logits = malloc(sizeof(float) * (size_t)ref->n_prompt * vocab);
    for (int t = 0; t < ref->n_prompt; t++) {
        json_t *row = json_array_get(rows, (size_t)t);
        if ((int)json_array_size(row) != vocab) {
            fprintf(stderr, "%s: reference logits row %d has %zu entries, vocab is %d\n", dir, t, json_array_size(row),
                    vocab);
            json_decref(root);
            return -1;
        }
        for (int v = 0; v < vocab; v++) {
            float x = (float)json_number_value(json_array_get(row, (size_t)v));
            ref->logits[(size_t)t * vocab + v] = x;
            if (fabs(x) > ref->max_ref) ref->max_ref = fabs(x);
        }
    }
    json_t *args = json_object_get(root, "glint_args");
    for (size_t i = 0; i + 1 < json_array_size(args); i += 2)
        if (!strcmp(json_string_value(json_array_get(args, i)), "--index-topk-pattern")) {
            snprintf(ref->pattern, sizeof ref->pattern, "%s", json_string_value(json_array_get(args, i + 1)));
            ref->opts.index_topk_pattern = ref->pattern;
        }
    json_decref(root);
    return 0;
}

// Largest |a - b| over rows [row0, row0+n) of the reference, relative to max|ref|.
static double rel_error(const reference *ref, int vocab, int row0, const float *got, int n) {
    double worst = 0;
    for (size_t i = 0; i < (size_t)n * vocab; i++) {
        double d = fabs((double)got[i] - ref->logits[(size_t)row0 * vocab + i]);
        if (!(d <= worst)) worst = d;  // NaN propagates as a failure
    }
    return worst / ref->max_ref;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

static int check(const char *what, double err, int *failures) {
    int ok = err <= TOLERANCE;
    printf("  %-34s max|Δ|/max|ref| = %.3e %s\n", what, err, ok ? "ok" : "FAIL");
    if (!ok) (*failures)++;
    return ok;
}

// Runs the prompt in chunks of `chunk` tokens (0 = all at once); compares every position.
static double run_chunked(glint_model *m, const reference *ref, int chunk) {
    const int V = m->cfg.vocab_size;
    glint_state *st = glint_state_new(m, ref->n_prompt + ref->n_greedy);
    float *logits = malloc(sizeof(float) * (size_t)ref->n_prompt * V);
    double worst = INFINITY;
    if (!st || !logits) goto done;
    worst = 0;
    if (chunk <= 0) chunk = ref->n_prompt;
    for (int t = 0; t < ref->n_prompt; t += chunk) {
        int n = ref->n_prompt - t < chunk ? ref->n_prompt - t : chunk;
        if (glint_forward(m, st, ref->prompt + t, n, logits, 1)) {
            fprintf(stderr, "forward failed: %s\n", glint_last_error());
            worst = INFINITY;
            break;
        }
        double e = rel_error(ref, V, t, logits, n);
        if (!(e <= TOLERANCE) && n < ref->n_prompt)  // which call of a chunked run went wrong
            printf("    positions %d..%d (call %d): max|Δ|/max|ref| = %.3e\n", t, t + n - 1, t / chunk + 1, e);
        if (!(e <= worst)) worst = e;
    }
done:
    free(logits);
    glint_state_free(m, st);
    return worst;
}

static int test_model(const char *dir) {
    int failures = 0;
    reference ref;
    glint_config probe;
    if (glint_config_load(dir, NULL, NULL, &probe) || load_reference(dir, probe.vocab_size, &ref)) {
        fprintf(stderr, "%s: %s\n", dir, glint_last_error());
        return 1;
    }
    glint_model *m = load_test_model(dir, &ref.opts);  // GLINT_TEST_TP: split over that many ranks
    if (!m) return 1;
    const int V = m->cfg.vocab_size;
    printf("%s (%d prompt tokens, index_topk %d%s%s%s)\n", dir, ref.n_prompt, m->cfg.index_topk,
           ref.pattern[0] ? ", pattern " : "", ref.pattern, m->tp_size > 1 ? ", tensor parallel" : "");
    check("prefill, all positions", run_chunked(m, &ref, 0), &failures);
    check("token-by-token decode", run_chunked(m, &ref, 1), &failures);
    check("chunked prefill (7 per chunk)", run_chunked(m, &ref, 7), &failures);

    // Greedy continuation using the cache: prefill, then one token per step.
    glint_state *st = glint_state_new(m, ref.n_prompt + ref.n_greedy);
    float *logits = malloc(sizeof(float) * V);
    int mismatch = -1;
    if (!st || glint_forward(m, st, ref.prompt, ref.n_prompt, logits, 0)) mismatch = 0;
    for (int i = 0; i < ref.n_greedy && mismatch < 0; i++) {
        int32_t next = argmax(logits, V);
        if (next != ref.greedy[i]) mismatch = i;
        else if (i + 1 < ref.n_greedy && glint_forward(m, st, &next, 1, logits, 0)) mismatch = i + 1;
    }
    printf("  %-34s %s", "greedy continuation (24, cached)", mismatch < 0 ? "identical ok\n" : "");
    if (mismatch >= 0) {
        printf("differs at step %d FAIL\n", mismatch);
        failures++;
    }
    free(logits);
    glint_state_free(m, st);
    glint_model_free(m);
    free(ref.prompt), free(ref.greedy), free(ref.logits);
    return failures;
}

int main(int argc, char **argv) {
    int failures = 0;
    for (int i = 1; i < argc; i++) failures += test_model(argv[i]);
    printf("%s\n", failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
