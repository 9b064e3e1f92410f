#include "common/sampling.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

glint_sample_scratch *glint_sample_scratch_new(int V) {
    glint_sample_scratch *w = glint_calloc(1, sizeof *w, "sampler");
    if (!w) return NULL;
    w->V = V;
    w->probs = glint_malloc(sizeof *w->probs * (size_t)V, "sampler probabilities");
    w->order = glint_malloc(sizeof *w->order * (size_t)V, "sampler order");
    w->spare = glint_malloc(sizeof *w->spare * (size_t)V, "sampler order");
    w->keys = glint_malloc(sizeof *w->keys * (size_t)V, "sampler keys");
    w->spare_keys = glint_malloc(sizeof *w->spare_keys * (size_t)V, "sampler keys");
    if (!w->probs || !w->order || !w->spare || !w->keys || !w->spare_keys) {
        glint_sample_scratch_free(w);
        return NULL;
    }
    return w;
}

void glint_sample_scratch_free(glint_sample_scratch *w) {
    if (!w) return;
    free(w->probs), free(w->order), free(w->spare), free(w->keys), free(w->spare_keys);
    free(w);
}

float glint_sample_probs(float *probs, const float *logits, int V, float temperature) {
    float maxv = -INFINITY;
    for (int t = 0; t < V; t++) maxv = logits[t] / temperature > maxv ? logits[t] / temperature : maxv;
    double part[GLINT_SAMPLE_LANES] = {0};  // lane j: tokens j, j + LANES, ... in order
    for (int t = 0; t < V; t++)
        part[(unsigned)t & (GLINT_SAMPLE_LANES - 1)] += probs[t] = glint_sample_weight(logits[t], temperature, maxv);
    for (int stride = GLINT_SAMPLE_LANES / 2; stride; stride /= 2)
        for (int j = 0; j < stride; j++) part[j] += part[j + stride];
    const double inv = 1.0 / part[0];
    float pmax = 0.0f;
    for (int t = 0; t < V; t++) {
        probs[t] = (float)(probs[t] * inv);
        pmax = probs[t] > pmax ? probs[t] : pmax;
    }
    return pmax;
}

// ids[0..n) (in increasing id order) sorted by probability, largest first, ties by id: a stable LSD
// radix sort on the complement of the probabilities' bits (non-negative floats order as their bits).
// Passes whose byte is the same for every key are skipped. Returns the buffer holding the result.
static int32_t *sort_by_prob_desc(glint_sample_scratch *w, int32_t *ids, int n) {
    uint32_t *keys = w->keys, *keys_out = w->spare_keys;
    int32_t *out = ids == w->order ? w->spare : w->order;
    uint32_t all_or = 0, all_and = ~0u;
    for (int i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &w->probs[ids[i]], sizeof bits);
        keys[i] = ~bits;
        all_or |= keys[i], all_and &= keys[i];
    }
    for (int shift = 0; shift < 32; shift += 8) {
        if ((((all_or ^ all_and) >> shift) & 0xffu) == 0) continue;  // one byte value: nothing moves
        int count[257] = {0};
        for (int i = 0; i < n; i++) count[((keys[i] >> shift) & 0xffu) + 1]++;
        for (int b = 0; b < 256; b++) count[b + 1] += count[b];
        for (int i = 0; i < n; i++) {
            const int at = count[(keys[i] >> shift) & 0xffu]++;
            out[at] = ids[i], keys_out[at] = keys[i];
        }
        int32_t *t = ids;
        ids = out, out = t;
        uint32_t *tk = keys;
        keys = keys_out, keys_out = tk;
    }
    return ids;
}

int32_t glint_sample_draw(const glint_sample_params *p, const float *logits, int V, double u, glint_sample_scratch *w) {
    if (glint_sample_is_greedy(p)) return glint_argmax(logits, V);
    const float pmax = glint_sample_probs(w->probs, logits, V, p->temperature);
    if (!(pmax > 0.0f)) return glint_argmax(logits, V);  // every logit -inf, or NaN
    // In descending order (ties by id) the tokens are kept while the probability mass before them is
    // <= top_p (the one that crosses top_p stays), their probability >= min_p · pmax, and fewer than
    // top_k are kept. Only the order of the kept tokens matters, so only the candidates with
    // probability >= floor are sorted: the kept tokens are a prefix of the whole order, and the prefix
    // is known to be whole once the walk below stops inside the candidates, or at their end for a
    // reason the next token (probability < floor) would stop it too. Otherwise the floor comes down.
    // The result is the whole sort's, bit for bit.
    const int keep = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    const float min_keep = p->min_p * pmax;
    float floor = min_keep > pmax * 0x1p-12f ? min_keep : pmax * 0x1p-12f;
    if (floor > pmax) floor = pmax;  // min_p > 1: the largest stays a candidate (and is drawn)
    if (p->top_p >= 1.0f && keep == V && min_keep <= 0.0f) floor = 0.0f;  // every token is kept
    const int32_t *sorted = NULL;
    int n = 0;
    double cumulative = 0;  // the kept tokens' probability mass
    for (;;) {
        int candidates = 0;
        for (int t = 0; t < V; t++)
            if (floor <= 0.0f || w->probs[t] >= floor) w->order[candidates++] = t;
        sorted = sort_by_prob_desc(w, w->order, candidates);
        int stopped = 0;
        n = 0, cumulative = 0;
        for (; n < keep; n++) {
            if (n == candidates) break;
            const float pr = w->probs[sorted[n]];
            if (cumulative > p->top_p || pr < min_keep) {  // exclusive cumsum: the token that crosses top_p stays
                stopped = 1;
                break;
            }
            cumulative += pr;
        }
        // at the candidates' end: the next token would be refused by top_k, top_p, or min_p
        if (stopped || n == keep || candidates == V || cumulative > p->top_p || floor <= min_keep) break;
        floor = floor > 1e-30f ? floor * 0x1p-8f : 0.0f;  // 0: every token
    }
    if (n == 0) n = 1, cumulative = pmax;
    const double target = u * cumulative;
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += w->probs[sorted[i]];
        if (target < acc) return sorted[i];
    }
    return sorted[n - 1];
}
