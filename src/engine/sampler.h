// Token sampling with sglang's semantics (spec/SERVING.md §5): penalties from generated tokens,
// greedy below temperature 1e-6, else temperature -> softmax -> top-k -> top-p -> min-p -> draw.
#ifndef GLINT_SAMPLER_H
#define GLINT_SAMPLER_H

#include <stdint.h>

#include "common/sampling.h"

typedef struct {
    glint_sample_params rules;  // temperature (< 1e-6: greedy), top_k, top_p, min_p (common/sampling.h)
    float frequency_penalty;   // additive, per occurrence in the output
    float presence_penalty;    // additive, once per token seen in the output
    float repetition_penalty;  // multiplicative (1: off)
    uint64_t seed;
} glint_sampling_params;

void glint_sampling_defaults(glint_sampling_params *p);
// Reads temperature/top_p/top_k from DIR/generation_config.json when present (missing file: no change).
int glint_sampling_from_generation_config(const char *dir, glint_sampling_params *p);

typedef struct {
    glint_sampling_params params;
    uint64_t rng;
    int vocab;
    int32_t *counts;  // [vocab] occurrences in the generated output
    int32_t *seen;    // the tokens with counts > 0, in the order they first came
    int n_seen, cap_seen;
    glint_sample_scratch *scratch;
} glint_sampler;

glint_sampler *glint_sampler_new(const glint_sampling_params *p, int vocab);
void glint_sampler_free(glint_sampler *s);
// Picks the next token from logits [vocab] (modified in place) and records it as generated: the
// penalties, then common/sampling.h's draw with the next uniform number of the sampler's stream.
int32_t glint_sampler_sample(glint_sampler *s, float *logits);
// The same after the penalties: logits already hold them (and whatever else the caller applied).
int32_t glint_sampler_choose(glint_sampler *s, const float *logits);
// sglang's penalties (generated tokens only): logits[t] -= frequency · counts[t] + presence where
// counts[t] > 0, then the repetition penalty (divides positive logits, multiplies negative ones).
void glint_apply_penalties(const glint_sampling_params *p, const int32_t *counts, float *logits, int V);
// 1 when sampling is the argmax of the raw logits (greedy, no penalties): the token can be picked
// where the logits are (glint_argmax's rule) and recorded with glint_sampler_record.
int glint_sampler_is_plain_greedy(const glint_sampler *s);
void glint_sampler_record(glint_sampler *s, int32_t id);
// 1 when the next draw is common/sampling.h's with *out's rules and nothing else (not greedy, no
// penalties), so it can be made where the logits are: with glint_sampler_peek(s, 0) as the uniform
// (peek(s, 1): the draw after it), then handed back with glint_sampler_take.
int glint_sampler_draw_params(const glint_sampler *s, glint_sample_params *out);
// 1 when the sampler applies penalties (frequency, presence or repetition).
int glint_sampler_has_penalties(const glint_sampler *s);
// The rules of the next choice with the penalties left to the caller (glint_sampler_penalty_edit):
// 1 and *out for a draw, 0 for the argmax (greedy rules).
int glint_sampler_draw_rules(const glint_sampler *s, glint_sample_params *out);
// The penalty of token t as a logit edit (common/sampling.h) when counted `extra` more times than
// recorded (a draft row's token): 1 and *e's penalty fields set, or 0 when t has no penalty.
int glint_sampler_penalty_edit(const glint_sampler *s, int32_t t, int extra, glint_logit_edit *e);
double glint_sampler_peek(const glint_sampler *s, int ahead);
// Records a token drawn elsewhere with glint_sampler_peek(s, 0), and moves the stream past it.
void glint_sampler_take(glint_sampler *s, int32_t id);

// The min(k, n) largest of v[0..n) in order (value descending, then index ascending; NaN below every
// number) into ids / values, in one pass; returns how many.
int glint_top_k(const float *v, int n, int k, int32_t *ids, float *values);

#endif
