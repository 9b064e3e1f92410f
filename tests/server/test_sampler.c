// The sampler (src/engine/sampler.c, common/sampling.c) against the plain implementation of sglang's
// semantics it replaced (spec/SERVING.md §5, kept below as the reference, with the probabilities of
// common/sampling.h): penalties from generated tokens, then softmax(logits / T), the whole
// vocabulary sorted by probability (ties by id), top-k, top-p with the
// exclusive cumulative sum (the token that crosses top_p stays), min-p, and a draw over the kept
// tokens in that order. The sampler sorts only the candidates that can be kept, so the same seed must
// give the same tokens bit for bit, over vocabularies of 1 to 154880 (GLM-5's) tokens, flat and
// peaked distributions, ties and -inf logits. Then the drawn frequencies of a small case against the
// probabilities the spec's rules give by hand.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "common/util.h"
#include "common/sampling.h"
#include "engine/sampler.h"

typedef struct {
    glint_sampling_params p;
    uint64_t rng;
    int V;
    int32_t *counts, *order;
    float *work;
} reference_sampler;

static double reference_uniform(uint64_t *state) {  // splitmix64 -> [0, 1), as the sampler draws
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int by_prob_desc(const void *a, const void *b, void *keys) {
    const float *probs = keys;
    float x = probs[*(const int32_t *)a], y = probs[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

static int32_t reference_sample(reference_sampler *s, float *logits) {
    const glint_sampling_params *p = &s->p;
    const int V = s->V;
    glint_apply_penalties(p, s->counts, logits, V);  // unchanged by the new draw: shared
    int32_t chosen;
    if (p->rules.temperature < 1e-6f || p->rules.top_k == 1) {
        chosen = glint_argmax(logits, V);
    } else {
        // the probabilities as every sampler computes them (common/sampling.h); the rest is the old code
        glint_sample_probs(s->work, logits, V, p->rules.temperature);
        for (int t = 0; t < V; t++) s->order[t] = t;
        qsort_r(s->order, (size_t)V, sizeof *s->order, by_prob_desc, s->work);
        int keep = p->rules.top_k > 0 && p->rules.top_k < V ? p->rules.top_k : V;
        double cumulative = 0, kept_mass = 0;
        float pmax = s->work[s->order[0]];
        int n = 0;
        for (; n < keep; n++) {
            float pr = s->work[s->order[n]];
            if (cumulative > p->rules.top_p) break;
            if (pr < p->rules.min_p * pmax) break;
            cumulative += pr;
            kept_mass += pr;
        }
        if (n == 0) n = 1, kept_mass = pmax;
        double u = reference_uniform(&s->rng) * kept_mass, acc = 0;
        chosen = s->order[n - 1];
        for (int i = 0; i < n; i++) {
            acc += s->work[s->order[i]];
            if (u < acc) {
                chosen = s->order[i];
                break;
            }
        }
    }
    s->counts[chosen]++;
    return chosen;
}

static uint64_t test_rng = 12345;
static float uniform01(void) { return (float)reference_uniform(&test_rng); }

// kind 0: flat (uniform logits), 1: peaked (a few large), 2: ties (few distinct values), 3: with -inf
static void make_logits(float *l, int V, int kind) {
    for (int t = 0; t < V; t++) {
        switch (kind) {
        case 0: l[t] = uniform01() * 8.0f - 4.0f; break;
        case 1: l[t] = uniform01() * 4.0f - 2.0f + (uniform01() < 0.001f ? 12.0f : 0.0f); break;
        case 2: l[t] = (float)(int)(uniform01() * 5.0f); break;
        default: l[t] = uniform01() < 0.3f ? -INFINITY : uniform01() * 10.0f - 5.0f; break;
        }
    }
    if (V > 3) l[V / 3] = 9.0f;  // at least one clear favourite past the start
    if (kind == 3) l[V - 1] = 1.0f;  // one finite logit at least (every one -inf: see main)
}

static void compare_case(int V, int kind, const glint_sampling_params *p, int steps) {
    float *logits = malloc(sizeof(float) * V), *a = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V);
    reference_sampler r = {*p, p->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull, V,
                           calloc((size_t)V, sizeof(int32_t)), malloc(sizeof(int32_t) * V), malloc(sizeof(float) * V)};
    glint_sampler *s = glint_sampler_new(p, V);
    make_logits(logits, V, kind);
    int same = 1, first_diff = -1;
    int32_t got = -1, want = -1;
    for (int i = 0; i < steps && same; i++) {
        memcpy(a, logits, sizeof(float) * V), memcpy(b, logits, sizeof(float) * V);
        got = glint_sampler_sample(s, a), want = reference_sample(&r, b);
        if (got != want) same = 0, first_diff = i;
    }
    CHECK(same, "V=%d kind %d T=%g top_k %d top_p %g min_p %g penalties %g/%g/%g: step %d drew %d, reference %d", V,
          kind, p->rules.temperature, p->rules.top_k, p->rules.top_p, p->rules.min_p, p->frequency_penalty,
          p->presence_penalty, p->repetition_penalty, first_diff, got, want);
    glint_sampler_free(s);
    free(r.counts), free(r.order), free(r.work), free(logits), free(a), free(b);
}

// Five tokens with probabilities 0.4 0.25 0.2 0.1 0.05 (logits = their logs, T = 1). top_p 0.6 keeps
// the first two and the one that crosses 0.6 (exclusive sums 0, 0.4, 0.65 > 0.6: tokens 0 and 1; the
// third's exclusive sum 0.65 > 0.6 drops it): {0.4, 0.25} renormalized to {0.615, 0.385}. With
// min_p 0.4 (cut 0.16) and top_p 1: {0.4, 0.25, 0.2} -> {0.471, 0.294, 0.235}. With top_k 4 and
// top_p 0.9: exclusive sums 0 .4 .65 .85 -> the first four -> {0.421, 0.263, 0.211, 0.105}.
static void frequencies_case(float top_p, float min_p, int top_k, const double *expect) {
    const float probs[5] = {0.4f, 0.25f, 0.2f, 0.1f, 0.05f};
    glint_sampling_params p;
    glint_sampling_defaults(&p);
    p.rules.top_p = top_p, p.rules.min_p = min_p, p.rules.top_k = top_k, p.seed = 99;
    glint_sampler *s = glint_sampler_new(&p, 5);
    const int draws = 200000;
    int hits[5] = {0};
    float l[5];
    for (int i = 0; i < draws; i++) {
        for (int t = 0; t < 5; t++) l[t] = logf(probs[t]);
        memset(s->counts, 0, sizeof(int32_t) * 5);  // no penalties are set; keep the counts small
        hits[glint_sampler_sample(s, l)]++;
    }
    for (int t = 0; t < 5; t++) {
        const double f = (double)hits[t] / draws, sd = sqrt(expect[t] * (1 - expect[t]) / draws);
        CHECK(fabs(f - expect[t]) <= 5 * sd + 1e-12, "top_p %g min_p %g top_k %d: token %d drawn %.4f, expected %.4f",
              top_p, min_p, top_k, t, f, expect[t]);
    }
    glint_sampler_free(s);
}

// glint_top_k (the server's top_logprobs) against the repeated scans it replaced: k rounds, each the
// first index of the largest value not yet taken. Ties everywhere, k past n, no NaN (where the old
// scans' answer depends on where the NaN stands).
static void top_k_cases(void) {
    float v[300];
    int32_t ids[20], want_ids[20];
    float vals[20];
    for (int c = 0; c < 200; c++) {
        const int n = 1 + c % 300 / (c % 7 + 1), k = c % 21, distinct = 2 + c % 13;
        for (int i = 0; i < n; i++) v[i] = c % 2 ? (float)(int)(uniform01() * (float)distinct) : uniform01();
        const int got = glint_top_k(v, n, k, ids, vals), want = k < n ? k : n;
        int same = got == want;
        for (int j = 0; j < want && same; j++) {
            int best = -1;
            for (int i = 0; i < n; i++) {
                int taken = 0;
                for (int q = 0; q < j; q++) taken |= want_ids[q] == i;
                if (!taken && (best < 0 || v[i] > v[best])) best = i;
            }
            want_ids[j] = best;
            same = ids[j] == best && vals[j] == v[best];
        }
        CHECK(same, "top_k case %d (n %d, k %d): differs from the repeated scans", c, n, k);
    }
    const float with_nan[5] = {NAN, 1.0f, NAN, 3.0f, 2.0f};
    const int got = glint_top_k(with_nan, 5, 4, ids, vals);
    CHECK(got == 4 && ids[0] == 3 && ids[1] == 4 && ids[2] == 1 && ids[3] == 0, "top_k with NaN: %d %d %d %d", ids[0],
          ids[1], ids[2], ids[3]);
}

int main(void) {
    const int vocabs[] = {1, 2, 7, 1000, 154880};
    const float temps[] = {0.3f, 1.0f, 1.5f}, top_ps[] = {0.1f, 0.9f, 0.95f, 0.999f, 1.0f}, min_ps[] = {0.0f, 0.05f};
    const int top_ks[] = {-1, 1, 5, 200};
    int cases = 0;
    for (size_t v = 0; v < sizeof vocabs / sizeof *vocabs; v++)
        for (int kind = 0; kind < 4; kind++)
            for (size_t ti = 0; ti < sizeof temps / sizeof *temps; ti++)
                for (size_t pi = 0; pi < sizeof top_ps / sizeof *top_ps; pi++)
                    for (size_t mi = 0; mi < sizeof min_ps / sizeof *min_ps; mi++)
                        for (size_t ki = 0; ki < sizeof top_ks / sizeof *top_ks; ki++) {
                            const int big = vocabs[v] > 1000;
                            // the full vocabulary: fewer combinations (each reference draw sorts 155k tokens)
                            if (big && (ti != 1 || mi != 0 || (ki != 0 && ki != 2))) continue;
                            glint_sampling_params p;
                            glint_sampling_defaults(&p);
                            p.rules = (glint_sample_params){temps[ti], top_ks[ki], top_ps[pi], min_ps[mi]};
                            p.seed = (uint64_t)(cases * 7919 + 1);
                            if (cases % 3 == 1) p.frequency_penalty = 0.5f, p.presence_penalty = 0.25f;
                            if (cases % 5 == 2) p.repetition_penalty = 1.3f;
                            compare_case(vocabs[v], kind, &p, big ? 4 : 24);
                            cases++;
                        }
    printf("sampler == reference on %d cases\n", cases);
    top_k_cases();
    {  // no distribution (every logit -inf or NaN): the argmax's token, as greedy decoding picks it
        glint_sampling_params p;
        glint_sampling_defaults(&p);
        glint_sampler *s = glint_sampler_new(&p, 3);
        float l[3] = {-INFINITY, -INFINITY, -INFINITY}, m[3] = {NAN, 2.0f, NAN};
        const int32_t want = glint_argmax(l, 3), got = glint_sampler_sample(s, l);
        CHECK(got == want, "every logit -inf: drew %d, the argmax is %d", got, want);
        const int32_t want_nan = glint_argmax(m, 3), got_nan = glint_sampler_sample(s, m);
        CHECK(got_nan == want_nan && got_nan >= 0 && got_nan < 3, "NaN logits: drew %d, the argmax is %d", got_nan,
              want_nan);
        glint_sampler_free(s);
    }
    const double top_p_only[5] = {0.4 / 0.65, 0.25 / 0.65, 0, 0, 0};
    const double min_p_only[5] = {0.4 / 0.85, 0.25 / 0.85, 0.2 / 0.85, 0, 0};
    const double top_k_top_p[5] = {0.4 / 0.95, 0.25 / 0.95, 0.2 / 0.95, 0.1 / 0.95, 0};
    frequencies_case(0.6f, 0.0f, -1, top_p_only);
    frequencies_case(1.0f, 0.4f, -1, min_p_only);
    frequencies_case(0.9f, 0.0f, 4, top_k_top_p);
    printf("%s: %d failures\n", failures ? "FAIL" : "ok", failures);
    return failures != 0;
}
