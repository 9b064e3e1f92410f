// Decode with CUDA graphs (the layer stack captured once per key and replayed) against the same
// decode with every op launched (graph hooks off): logits and hidden states bitwise equal, over
// batched sequences of a shared paged pool whose contexts cross several max_position buckets and
// page-table strides, with batch sizes changing from step to step, plus MTP forwards on the pool.
//   usage: test_cuda_graphs MODEL_DIR
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "common/util.h"
#include "model/glm.h"

enum { N_SEQ = 3, STEPS = 420, PAGE = 16 };

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

// Prefill, then STEPS batched decode steps; every step's logits and hidden states appended to out.
static int run(glint_model *m, float *out, size_t *n_out) {
    const int V = m->cfg.vocab_size, D = m->cfg.hidden_size, mtp = m->has_mtp;
    glint_kv_pool *pool = glint_kv_pool_new(m, N_SEQ * 64, PAGE, mtp);
    if (!pool) return -1;
    glint_state *st[N_SEQ];
    int32_t next[N_SEQ];
    float *logits = calloc((size_t)V * 128, sizeof(float)), *hidden = calloc((size_t)D * 128, sizeof(float));
    int32_t ids[128];
    size_t at = 0;
    int rc = 0;
    for (int i = 0; i < N_SEQ && !rc; i++) {  // prompts of 100 (T > 64: not replayed), 37 and 5 tokens
        st[i] = glint_state_in_pool(pool);
        const int n = i == 0 ? 100 : i == 1 ? 37 : 5;
        for (int k = 0; k < n; k++) ids[k] = (int32_t)((k * 7919 + 13 * i + 1) % V);
        rc = glint_state_reserve(st[i], n + 2 * STEPS + 8) || glint_forward(m, st[i], ids, n, logits, 0);
        next[i] = argmax(logits, V);
    }
    for (int step = 0; step < STEPS && !rc; step++) {
        // batch shapes vary: all three, two, or one sequence; two tokens each every 5th step
        const int n_items = step % 7 == 3 ? 1 : step % 3 == 1 ? 2 : 3, per = step % 5 == 2 ? 2 : 1;
        glint_batch_item items[N_SEQ];
        int32_t tok[N_SEQ][2];
        for (int j = 0; j < n_items; j++) {
            const int i = (step + j) % N_SEQ;
            tok[j][0] = next[i], tok[j][1] = (next[i] * 31 + 7) % V;
            items[j] = (glint_batch_item){st[i], tok[j], per, logits + (size_t)j * 2 * V, 1, hidden + (size_t)j * 2 * D,
                                          NULL, NULL, NULL, NULL, NULL, NULL};
        }
        if ((rc = glint_forward_batch(m, items, n_items))) break;
        for (int j = 0; j < n_items; j++) {
            const int i = (step + j) % N_SEQ;
            next[i] = argmax(logits + (size_t)j * 2 * V + (size_t)(per - 1) * V, V);
            memcpy(out + at, logits + (size_t)j * 2 * V, sizeof(float) * (size_t)per * V), at += (size_t)per * V;
            memcpy(out + at, hidden + (size_t)j * 2 * D, sizeof(float) * (size_t)per * D), at += (size_t)per * D;
        }
        if (mtp && step % 2 == 0) {  // the MTP layer over the batch's rows (its cache rows trail n_past)
            glint_batch_item mi[N_SEQ];
            int n_mtp = 0;
            for (int j = 0; j < n_items; j++) {
                glint_state *s = items[j].st;
                const int rows = s->n_past - s->mtp_past < 2 ? s->n_past - s->mtp_past : 2;
                if (rows < 1) continue;
                mi[n_mtp] = (glint_batch_item){s, tok[j], rows, logits + (size_t)n_mtp * 2 * V, 1, NULL,
                                               hidden + (size_t)j * 2 * D, NULL, NULL, NULL, NULL, NULL};
                n_mtp++;
            }
            if (n_mtp && (rc = glint_mtp_forward_batch(m, mi, n_mtp))) break;
            for (int j = 0; j < n_mtp; j++) {
                memcpy(out + at, logits + (size_t)j * 2 * V, sizeof(float) * (size_t)mi[j].n_tokens * V);
                at += (size_t)mi[j].n_tokens * V;
            }
        }
    }
    if (rc) fprintf(stderr, "forward failed: %s\n", glint_last_error());
    for (int i = 0; i < N_SEQ; i++) glint_state_free(m, st[i]);
    glint_kv_pool_free(m, pool);
    free(logits), free(hidden);
    *n_out = at;
    return rc ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_cuda_graphs MODEL_DIR\n");
        return 2;
    }
    glint_backend *be = glint_backend_cuda(0);
    if (!be) {
        fprintf(stderr, "%s\n", glint_last_error());
        return 1;
    }
    if (!be->graph_begin) {
        fprintf(stderr, "graphs are off (GLINT_CUDA_GRAPHS=0?): nothing to compare\n");
        return 1;
    }
    glint_model *m = glint_model_load(argv[1], NULL, be);
    if (!m) {
        fprintf(stderr, "%s\n", glint_last_error());
        return 1;
    }
    const size_t cap = (size_t)STEPS * N_SEQ * 2 * 2 * (m->cfg.vocab_size + m->cfg.hidden_size);
    float *with = malloc(sizeof(float) * cap), *without = malloc(sizeof(float) * cap),
          *again = malloc(sizeof(float) * cap);
    int (*begin)(glint_backend *, uint64_t) = be->graph_begin;
    int (*end)(glint_backend *) = be->graph_end;
    size_t n_with = 0, n_without = 0, n_again = 0;
    double t0 = glint_now_seconds();
    int rc = run(m, with, &n_with);  // graphs: each key runs eagerly, is captured, then replayed
    const double t_with = glint_now_seconds() - t0;
    be->graph_begin = NULL, be->graph_end = NULL;  // every op launched, no buckets, per-forward buffers
    t0 = glint_now_seconds();
    if (!rc) rc = run(m, without, &n_without);
    const double t_without = glint_now_seconds() - t0;
    be->graph_begin = begin, be->graph_end = end;
    t0 = glint_now_seconds();
    if (!rc) rc = run(m, again, &n_again);  // graphs again: mostly replays of the first run's keys
    const double t_again = glint_now_seconds() - t0;
    int fails = rc != 0;
    if (!rc && (n_with != n_without || n_again != n_with || n_with == 0)) {
        fprintf(stderr, "FAIL: %zu / %zu / %zu values\n", n_with, n_without, n_again);
        fails++;
    }
    for (size_t i = 0; !fails && i < n_with; i++)
        if (memcmp(&with[i], &without[i], sizeof(float)) || memcmp(&again[i], &without[i], sizeof(float))) {
            fprintf(stderr, "FAIL: value %zu: graphs %.9g, again %.9g, no graphs %.9g\n", i, with[i], again[i],
                    without[i]);
            fails++;
        }
    printf("%s: %zu logits and hidden values of %d batched decode steps (+ MTP) bitwise equal with and without "
           "CUDA graphs (%.2f s / %.2f s replaying / %.2f s without)\n",
           fails ? "FAILED" : "ok", n_with, STEPS, t_with, t_again, t_without);
    free(again);
    free(with), free(without);
    glint_model_free(m);
    return fails;
}
