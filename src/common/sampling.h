// One draw with sglang's sampling rules (spec/SERVING.md §5) from a row of logits and a given uniform
// number, the same on the host and on a GPU: softmax(logits / temperature), then in descending order
// of probability (ties by id) the tokens kept while fewer than top_k, their exclusive cumulative
// probability <= top_p (the token that crosses top_p stays) and their probability >= min_p · max; the
// draw walks the kept tokens in that order. Penalties, logit bias and the random state are the
// caller's (engine/sampler.h).
//
// The probabilities are computed the same way bit for bit wherever this header is compiled (C or
// CUDA): glint_sample_exp uses only separately rounded products and sums (nothing contracted into an
// FMA), and the sum goes through a fixed tree (GLINT_SAMPLE_LANES sequential partial sums, then
// pairwise). So a backend that samples on the device picks the token the host would.
#ifndef GLINT_SAMPLING_H
#define GLINT_SAMPLING_H

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    float temperature;  // < 1e-6: greedy
    int top_k;          // <= 0: whole vocabulary
    float top_p;        // 1: off
    float min_p;        // 0: off
} glint_sample_params;

enum { GLINT_SAMPLE_LANES = 1024 };  // partial sums of the softmax denominator (a power of two)

#if defined(__CUDACC__)
#define GLINT_SAMPLE_FN __host__ __device__ __forceinline__
#else
#define GLINT_SAMPLE_FN static inline
#endif
#if defined(__CUDA_ARCH__)
#define GLINT_SAMPLE_MUL(a, b) __fmul_rn(a, b)
#define GLINT_SAMPLE_ADD(a, b) __fadd_rn(a, b)
#define GLINT_SAMPLE_DIV(a, b) __fdiv_rn(a, b)
#else  // ISO C (the build's -std=c11) contracts nothing by itself
#define GLINT_SAMPLE_MUL(a, b) ((a) * (b))
#define GLINT_SAMPLE_ADD(a, b) ((a) + (b))
#define GLINT_SAMPLE_DIV(a, b) ((a) / (b))
#endif

// A change to one token's logit before the argmax or the draw, made where the logits are: the engine's
// per-request edits (stop tokens held back by min_new_tokens, logit bias, then the penalties of
// engine/sampler.h, in the order the host applies them), one entry per token.
enum { GLINT_EDIT_MASK = 1, GLINT_EDIT_BIAS = 2, GLINT_EDIT_PENALTY = 4 };
typedef struct {
    int32_t token;
    int32_t flags;  // GLINT_EDIT_*
    float bias;     // added (GLINT_EDIT_BIAS)
    float sub;      // frequency · count + presence, subtracted (GLINT_EDIT_PENALTY) ...
    float rep;      // ... then the repetition penalty (1: none)
} glint_logit_edit;

GLINT_SAMPLE_FN float glint_logit_edit_apply(const glint_logit_edit *e, float logit) {
    if (e->flags & GLINT_EDIT_MASK) logit = -INFINITY;  // (then the rest, as the host: -inf + inf is NaN)
    if (e->flags & GLINT_EDIT_BIAS) logit = GLINT_SAMPLE_ADD(logit, e->bias);
    if (e->flags & GLINT_EDIT_PENALTY) {
        logit = GLINT_SAMPLE_ADD(logit, -e->sub);
        if (e->rep != 1.0f) logit = logit < 0 ? GLINT_SAMPLE_MUL(logit, e->rep) : GLINT_SAMPLE_DIV(logit, e->rep);
    }
    return logit;
}

// sglang's greedy rules: the argmax, no draw.
GLINT_SAMPLE_FN int glint_sample_is_greedy(const glint_sample_params *p) {
    return p->temperature < 1e-6f || p->top_k == 1;
}

// Whether every token of a vocabulary of V stays a candidate (no top-k, top-p or min-p cut): a draw
// then walks the whole sorted vocabulary, which a backend that sorts at most a few thousand
// candidates on the device leaves to the host (a request that sets none of them, when the model's
// generation_config.json sets none either, is such a row).
GLINT_SAMPLE_FN int glint_sample_keeps_all(const glint_sample_params *p, int V) {
    return p->top_p >= 1.0f && (p->top_k <= 0 || p->top_k >= V) && p->min_p <= 0.0f;
}

// y · 2^k, correctly rounded (as ldexpf), for y in [0.5, 2) and -160 < k <= 0 without library calls:
// 2^k from its bits, in two factors when the result is subnormal (one rounding, in the last product).
GLINT_SAMPLE_FN float glint_sample_pow2_bits(int e) {  // 2^e for -126 <= e <= 127
    const uint32_t bits = (uint32_t)(e + 127) << 23;
#if defined(__CUDA_ARCH__)
    return __uint_as_float(bits);
#else
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
#endif
}
GLINT_SAMPLE_FN float glint_sample_scale(float y, int k) {
    if (k >= -125) return GLINT_SAMPLE_MUL(y, glint_sample_pow2_bits(k));
    return GLINT_SAMPLE_MUL(GLINT_SAMPLE_MUL(y, glint_sample_pow2_bits(k + 64)), glint_sample_pow2_bits(-64));
}

// exp(x) for x <= 0 (Cephes' expf: x = k·ln2 + r, a degree-7 polynomial for e^r; ~2 ulp), in
// separately rounded products and sums: a host without FMA instructions computes the same bits fast.
GLINT_SAMPLE_FN float glint_sample_exp(float x) {
    if (x != x) return x;
    if (!(x > -104.0f)) return 0.0f;  // e^-104 is below the least subnormal
    if (x > 0.0f) x = 0.0f;
    // k = round-to-nearest-even(x · log2 e): adding and taking away 1.5 · 2^23 rounds in the add
    const float k = GLINT_SAMPLE_ADD(GLINT_SAMPLE_ADD(GLINT_SAMPLE_MUL(x, 1.44269504088896341f), 12582912.0f),
                                     -12582912.0f);
    // r = x - k·ln2 with ln2 = 0.693359375 - 2.12194440e-4 (k · 0.693359375 is exact: 8 + 9 bits)
    const float r = GLINT_SAMPLE_ADD(GLINT_SAMPLE_ADD(x, GLINT_SAMPLE_MUL(k, -0.693359375f)),
                                     GLINT_SAMPLE_MUL(k, 2.12194440e-4f));
    float q = 1.9875691500e-4f;
    q = GLINT_SAMPLE_ADD(GLINT_SAMPLE_MUL(q, r), 1.3981999507e-3f);
    q = GLINT_SAMPLE_ADD(GLINT_SAMPLE_MUL(q, r), 8.3333039773e-3f);
    q = GLINT_SAMPLE_ADD(GLINT_SAMPLE_MUL(q, r), 4.1665795894e-2f);
    q = GLINT_SAMPLE_ADD(GLINT_SAMPLE_MUL(q, r), 1.6666665459e-1f);
    q = GLINT_SAMPLE_ADD(GLINT_SAMPLE_MUL(q, r), 5.0000001201e-1f);
    const float y = GLINT_SAMPLE_ADD(GLINT_SAMPLE_ADD(GLINT_SAMPLE_MUL(q, GLINT_SAMPLE_MUL(r, r)), r), 1.0f);
    return glint_sample_scale(y, (int)k);
}

// e^(logit / temperature - maxv), maxv the largest logit / temperature of the row.
GLINT_SAMPLE_FN float glint_sample_weight(float logit, float temperature, float maxv) {
    return glint_sample_exp(GLINT_SAMPLE_ADD(GLINT_SAMPLE_DIV(logit, temperature), -maxv));
}

// Scratch of glint_sample_draw for a vocabulary of V tokens.
typedef struct {
    int V;
    float *probs;                 // [V]
    int32_t *order, *spare;       // [V] candidates, sorted
    uint32_t *keys, *spare_keys;  // [V] the sort's keys
} glint_sample_scratch;

#ifndef __CUDACC__
// NULL with the error set when memory runs out.
glint_sample_scratch *glint_sample_scratch_new(int V);
void glint_sample_scratch_free(glint_sample_scratch *w);
// probs[t] = softmax(logits / temperature)[t] as computed everywhere (see above); returns the largest.
float glint_sample_probs(float *probs, const float *logits, int V, float temperature);
// The token drawn with p's rules and the uniform u in [0, 1) (p greedy, or no distribution because
// every logit is -inf or NaN: glint_argmax of the logits).
int32_t glint_sample_draw(const glint_sample_params *p, const float *logits, int V, double u, glint_sample_scratch *w);
#endif

#endif
