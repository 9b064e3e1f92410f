#include "engine/sampler.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

void glint_sampling_defaults(glint_sampling_params *p) {
    *p = (glint_sampling_params){.temperature = 1.0f, .top_k = -1, .top_p = 1.0f, .min_p = 0.0f,
                                 .repetition_penalty = 1.0f, .seed = 0};
}

int glint_sampling_from_generation_config(const char *dir, glint_sampling_params *p) {
    char *path = glint_path_join(dir, "generation_config.json");
    if (!path) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) {  // optional file
        free(path);
        return 0;
    }
    fclose(f);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        glint_set_error("%s: not valid JSON at line %d column %d: %s", path, err.line, err.column, err.text);
        free(path);
        return -1;
    }
    json_t *v;
    if (json_is_number(v = json_object_get(root, "temperature"))) p->temperature = (float)json_number_value(v);
    if (json_is_number(v = json_object_get(root, "top_p"))) p->top_p = (float)json_number_value(v);
    if (json_is_integer(v = json_object_get(root, "top_k"))) p->top_k = (int)json_integer_value(v);
    if (json_is_false(json_object_get(root, "do_sample"))) p->temperature = 0.0f;
    json_decref(root);
    free(path);
    return 0;
}

glint_sampler *glint_sampler_new(const glint_sampling_params *p, int vocab) {
    glint_sampler *s = glint_calloc(1, sizeof *s, "sampler");
    if (!s) return NULL;
    s->params = *p;
    s->vocab = vocab;
    s->rng = p->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    s->counts = glint_calloc((size_t)vocab, sizeof *s->counts, "sampler counts");
    s->work = glint_calloc((size_t)vocab, sizeof *s->work, "sampler probabilities");
    s->order = glint_calloc((size_t)vocab, sizeof *s->order, "sampler order");
    s->spare = glint_calloc((size_t)vocab, sizeof *s->spare, "sampler order");
    s->keys = glint_calloc((size_t)vocab, sizeof *s->keys, "sampler keys");
    s->spare_keys = glint_calloc((size_t)vocab, sizeof *s->spare_keys, "sampler keys");
    if (!s->counts || !s->work || !s->order || !s->spare || !s->keys || !s->spare_keys) {
        glint_sampler_free(s);
        return NULL;
    }
    return s;
}

void glint_sampler_free(glint_sampler *s) {
    if (!s) return;
    free(s->counts), free(s->work), free(s->order), free(s->spare), free(s->keys), free(s->spare_keys);
    free(s);
}

static double next_uniform(uint64_t *state) {  // splitmix64 -> [0, 1)
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

// ids[0..n) (in increasing id order) sorted by probability, largest first, ties by id: a stable LSD
// radix sort on the complement of the probabilities' bits (non-negative floats order as their bits).
// Passes whose byte is the same for every key are skipped. Returns the buffer holding the result.
static int32_t *sort_by_prob_desc(glint_sampler *s, int32_t *ids, int n) {
    uint32_t *keys = s->keys, *keys_out = s->spare_keys;
    int32_t *out = ids == s->order ? s->spare : s->order;
    uint32_t all_or = 0, all_and = ~0u;
    for (int i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &s->work[ids[i]], sizeof bits);
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

int glint_sampler_is_plain_greedy(const glint_sampler *s) {
    const glint_sampling_params *p = &s->params;
    return (p->temperature < 1e-6f || p->top_k == 1) && p->frequency_penalty == 0.0f && p->presence_penalty == 0.0f &&
           p->repetition_penalty == 1.0f;
}

void glint_sampler_record(glint_sampler *s, int32_t id) { s->counts[id]++; }

int32_t glint_sampler_sample(glint_sampler *s, float *logits) {
    const glint_sampling_params *p = &s->params;
    const int V = s->vocab;
    for (int t = 0; t < V; t++) {
        if (!s->counts[t]) continue;
        logits[t] -= p->frequency_penalty * (float)s->counts[t] + p->presence_penalty;
        if (p->repetition_penalty != 1.0f)
            logits[t] = logits[t] < 0 ? logits[t] * p->repetition_penalty : logits[t] / p->repetition_penalty;
    }
    float pmax = 0.0f;
    if (p->temperature >= 1e-6f && p->top_k != 1) {
        float maxv = -INFINITY;
        for (int t = 0; t < V; t++) maxv = logits[t] / p->temperature > maxv ? logits[t] / p->temperature : maxv;
        double sum = 0;
        for (int t = 0; t < V; t++) sum += s->work[t] = expf(logits[t] / p->temperature - maxv);
        for (int t = 0; t < V; t++) {
            s->work[t] = (float)(s->work[t] / sum);
            pmax = s->work[t] > pmax ? s->work[t] : pmax;
        }
    }
    int32_t chosen;
    if (!(pmax > 0.0f)) {  // greedy, or no distribution (every logit -inf, or NaN): the argmax
        chosen = glint_argmax(logits, V);
    } else {
        // In descending order (ties by id) the tokens are kept while the probability mass before them
        // is <= top_p (the one that crosses top_p stays), their probability >= min_p · pmax, and
        // fewer than top_k are kept. Only the order of the kept tokens matters, so only the candidates
        // with probability >= floor are sorted: the kept tokens are a prefix of the whole order, and
        // the prefix is known to be whole once the walk below stops inside the candidates, or at
        // their end for a reason the next token (probability < floor) would stop it too. Otherwise
        // the floor comes down. The result is the whole sort's, bit for bit.
        const int keep = p->top_k > 0 && p->top_k < V ? p->top_k : V;
        const float min_keep = p->min_p * pmax;
        float floor = min_keep > pmax * 0x1p-12f ? min_keep : pmax * 0x1p-12f;
        if (p->top_p >= 1.0f && keep == V && min_keep <= 0.0f) floor = 0.0f;  // every token is kept
        const int32_t *sorted = NULL;
        int n = 0;
        double kept_mass = 0;
        for (;;) {
            int candidates = 0;
            for (int t = 0; t < V; t++)
                if (floor <= 0.0f || s->work[t] >= floor) s->order[candidates++] = t;
            sorted = sort_by_prob_desc(s, s->order, candidates);
            double cumulative = 0;
            int stopped = 0;
            n = 0, kept_mass = 0;
            for (; n < keep; n++) {
                if (n == candidates) break;
                float pr = s->work[sorted[n]];
                if (cumulative > p->top_p || pr < min_keep) {  // exclusive cumsum: the token that crosses top_p stays
                    stopped = 1;
                    break;
                }
                cumulative += pr;
                kept_mass += pr;
            }
            // at the candidates' end: the next token would be refused by top_k, top_p, or min_p
            if (stopped || n == keep || candidates == V || cumulative > p->top_p || floor <= min_keep) break;
            floor = floor > 1e-30f ? floor * 0x1p-8f : 0.0f;  // 0: every token
        }
        if (n == 0) n = 1, kept_mass = pmax;
        double u = next_uniform(&s->rng) * kept_mass, acc = 0;
        chosen = sorted[n - 1];
        for (int i = 0; i < n; i++) {
            acc += s->work[sorted[i]];
            if (u < acc) {
                chosen = sorted[i];
                break;
            }
        }
    }
    s->counts[chosen]++;
    return chosen;
}
