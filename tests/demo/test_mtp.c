// The demo model's MTP layer vs the training code's PyTorch module (tests/fixtures/demo/
// mtp_reference.json + mtp_logits.f32, made by tools/demo/make_mtp_reference.py): every position's
// draft logits within 1e-4 of max|ref| and the same argmax, for one call over the whole sequence and
// for position-by-position drafting with the MTP cache.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/util.h"
#include "model/glm.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_mtp MODEL_DIR FIXTURE_DIR\n");
        return 2;
    }
    char *ref_path = glint_path_join(argv[2], "mtp_reference.json"), *bin_path = glint_path_join(argv[2], "mtp_logits.f32");
    json_error_t err;
    json_t *ref = json_load_file(ref_path, 0, &err);
    glint_model *m = ref ? glint_model_load(argv[1], NULL, glint_backend_cpu(0)) : NULL;
    if (!m || !m->has_mtp) {
        fprintf(stderr, "%s\n", ref ? (m ? "no MTP layer" : glint_last_error()) : err.text);
        return 1;
    }
    const int V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    json_t *ids_j = json_object_get(ref, "ids"), *argmax_j = json_object_get(ref, "argmax");
    const int S = (int)json_array_size(ids_j), T = S - 1;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)S);
    for (int i = 0; i < S; i++) ids[i] = (int32_t)json_integer_value(json_array_get(ids_j, (size_t)i));
    float *want = malloc(sizeof(float) * (size_t)T * V), *got = malloc(sizeof(float) * (size_t)T * V);
    float *main_logits = malloc(sizeof(float) * (size_t)S * V), *hidden = malloc(sizeof(float) * (size_t)S * D);
    FILE *f = fopen(bin_path, "rb");
    if (!f || fread(want, sizeof(float), (size_t)T * V, f) != (size_t)T * V) {
        fprintf(stderr, "%s: cannot read %d x %d floats\n", bin_path, T, V);
        return 1;
    }
    fclose(f);
    double max_ref = 0;
    for (size_t i = 0; i < (size_t)T * V; i++) max_ref = fabs(want[i]) > max_ref ? fabs(want[i]) : max_ref;

    // Main model over the sequence: final-norm hidden states of every position.
    glint_state *st = glint_state_new(m, S);
    if (glint_forward_hidden(m, st, ids, S, main_logits, 1, hidden)) {
        fprintf(stderr, "%s\n", glint_last_error());
        return 1;
    }
    int failures = 0;
    for (int mode = 0; mode < 2; mode++) {  // 0: one call for all positions; 1: one position per call
        glint_state *mst = glint_mtp_state_new(m, S);
        int rc = 0;
        if (mode == 0) rc = glint_mtp_forward(m, mst, hidden, ids + 1, T, got);
        else
            for (int t = 0; t < T && !rc; t++)
                rc = glint_mtp_forward(m, mst, hidden + (size_t)t * D, ids + 1 + t, 1, got + (size_t)t * V);
        if (rc) {
            fprintf(stderr, "%s\n", glint_last_error());
            return 1;
        }
        double worst = 0;
        int argmax_diff = 0;
        for (int t = 0; t < T; t++) {
            int best = 0;
            for (int v = 0; v < V; v++) {
                double d = fabs((double)got[(size_t)t * V + v] - want[(size_t)t * V + v]);
                if (!(d <= worst)) worst = d;
                if (got[(size_t)t * V + v] > got[(size_t)t * V + best]) best = v;
            }
            argmax_diff += best != json_integer_value(json_array_get(argmax_j, (size_t)t));
        }
        int ok = worst / max_ref <= 1e-4 && !argmax_diff;
        printf("MTP %-22s max|Δ|/max|ref| = %.3e, argmax differs at %d of %d positions %s\n",
               mode ? "position by position" : "one call", worst / max_ref, argmax_diff, T, ok ? "ok" : "FAIL");
        failures += !ok;
        glint_state_free(m, mst);
    }
    glint_state_free(m, st);
    glint_model_free(m);
    free(ids), free(want), free(got), free(main_logits), free(hidden), free(ref_path), free(bin_path);
    json_decref(ref);
    printf("%s\n", failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
