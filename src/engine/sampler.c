#include "engine/sampler.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_file.h"
#include "common/util.h"

void glint_sampling_defaults(glint_sampling_params *p) {
    *p = (glint_sampling_params){.rules = {.temperature = 1.0f, .top_k = -1, .top_p = 1.0f, .min_p = 0.0f},
                                 .repetition_penalty = 1.0f, .seed = 0};
}

int glint_sampling_from_generation_config(const char *dir, glint_sampling_params *p) {
    char *path = glint_path_join(dir, "generation_config.json");
    if (!path) return -1;
    json_t *root;
    const int got = glint_json_file(path, 0, &root);
    if (got) {  // an optional file: absent (1) is fine
        free(path);
        return got < 0 ? -1 : 0;
    }
    // The same ranges the command line and the server hold requests to.
    json_t *t = json_object_get(root, "temperature"), *tp = json_object_get(root, "top_p");
    json_t *tk = json_object_get(root, "top_k");
    const char *bad = NULL;
    if (t && !json_is_null(t) && !(json_is_number(t) && json_number_value(t) >= 0 && isfinite((float)json_number_value(t))))
        bad = "temperature must be a number >= 0";
    else if (tp && !json_is_null(tp) && !(json_is_number(tp) && json_number_value(tp) > 0 && json_number_value(tp) <= 1))
        bad = "top_p must be a number in (0, 1]";
    else if (tk && !json_is_null(tk) && !(json_is_integer(tk) && json_integer_value(tk) >= -1))
        bad = "top_k must be an integer >= -1 (0 or -1: no cut)";
    if (bad) {
        glint_set_error("%s: %s", path, bad);
        json_decref(root);
        free(path);
        return -1;
    }
    if (json_is_number(t)) p->rules.temperature = (float)json_number_value(t);
    if (json_is_number(tp)) p->rules.top_p = (float)json_number_value(tp);
    if (json_is_integer(tk))
        p->rules.top_k = json_integer_value(tk) > (1 << 30) ? 1 << 30 : (int)json_integer_value(tk);
    if (json_is_false(json_object_get(root, "do_sample"))) p->rules.temperature = 0.0f;
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
    // a draw's working memory (5 words per token); greedy rules never draw
    const int draws = !glint_sample_is_greedy(&p->rules);
    s->scratch = draws ? glint_sample_scratch_new(vocab) : NULL;
    if (!s->counts || (draws && !s->scratch)) {
        glint_sampler_free(s);
        return NULL;
    }
    return s;
}

void glint_sampler_free(glint_sampler *s) {
    if (!s) return;
    free(s->counts), free(s->seen);
    glint_sample_scratch_free(s->scratch);
    free(s);
}

// splitmix64 -> [0, 1): the uniform of draw `ahead` (0: the next) after state
static double uniform_after(uint64_t state, int ahead) {
    uint64_t z = state + 0x9E3779B97F4A7C15ull * (uint64_t)(ahead + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int has_penalties(const glint_sampling_params *p) {
    return p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f || p->repetition_penalty != 1.0f;
}

int glint_sampler_is_plain_greedy(const glint_sampler *s) {
    const glint_sampling_params *p = &s->params;
    return glint_sample_is_greedy(&p->rules) && !has_penalties(p);
}

// counts[id] + 1, and id into the seen list on its first time (when that list cannot grow, it is
// dropped for good: glint_sampler_penalty_edit's callers then see n_seen < 0 and take the host path).
static void count(glint_sampler *s, int32_t id) {
    if (s->counts[id]++ || s->n_seen < 0) return;
    if (s->n_seen == s->cap_seen) {
        const int cap = s->cap_seen ? 2 * s->cap_seen : 64;
        int32_t *grown = realloc(s->seen, sizeof(int32_t) * (size_t)cap);
        if (!grown) {
            free(s->seen);
            s->seen = NULL, s->n_seen = -1, s->cap_seen = 0;
            return;
        }
        s->seen = grown, s->cap_seen = cap;
    }
    s->seen[s->n_seen++] = id;
}

void glint_sampler_record(glint_sampler *s, int32_t id) { count(s, id); }

int glint_sampler_draw_rules(const glint_sampler *s, glint_sample_params *out) {
    if (glint_sample_is_greedy(&s->params.rules)) return 0;
    *out = s->params.rules;
    return 1;
}

int glint_sampler_draw_params(const glint_sampler *s, glint_sample_params *out) {
    return !has_penalties(&s->params) && glint_sampler_draw_rules(s, out);
}

int glint_sampler_has_penalties(const glint_sampler *s) { return has_penalties(&s->params); }

int glint_sampler_penalty_edit(const glint_sampler *s, int32_t t, int extra, glint_logit_edit *e) {
    const glint_sampling_params *p = &s->params;
    const int32_t c = s->counts[t] + extra;
    if (!c || !has_penalties(p)) return 0;
    e->flags |= GLINT_EDIT_PENALTY;
    e->sub = p->frequency_penalty * (float)c + p->presence_penalty;  // as glint_apply_penalties
    e->rep = p->repetition_penalty;
    return 1;
}

double glint_sampler_peek(const glint_sampler *s, int ahead) { return uniform_after(s->rng, ahead); }

void glint_sampler_take(glint_sampler *s, int32_t id) {
    s->rng += 0x9E3779B97F4A7C15ull;
    count(s, id);
}

void glint_apply_penalties(const glint_sampling_params *p, const int32_t *counts, float *logits, int V) {
    for (int t = 0; t < V; t++) {
        if (!counts[t]) continue;
        logits[t] -= p->frequency_penalty * (float)counts[t] + p->presence_penalty;
        if (p->repetition_penalty != 1.0f)
            logits[t] = logits[t] < 0 ? logits[t] * p->repetition_penalty : logits[t] / p->repetition_penalty;
    }
}

int32_t glint_sampler_sample(glint_sampler *s, float *logits) {
    glint_apply_penalties(&s->params, s->counts, logits, s->vocab);
    return glint_sampler_choose(s, logits);
}

int32_t glint_sampler_choose(glint_sampler *s, const float *logits) {
    const glint_sampling_params *p = &s->params;
    const int V = s->vocab;
    if (glint_sample_is_greedy(&p->rules)) {
        const int32_t chosen = glint_argmax(logits, V);
        glint_sampler_record(s, chosen);
        return chosen;
    }
    const int32_t chosen = glint_sample_draw(&p->rules, logits, V, glint_sampler_peek(s, 0), s->scratch);
    glint_sampler_take(s, chosen);
    return chosen;
}

// x before y in glint_top_k's order: larger, or a number where y is NaN
static int ranks_above(float x, float y) { return x > y || (y != y && x == x); }

int glint_top_k(const float *v, int n, int k, int32_t *ids, float *values) {
    // a value goes in only when strictly above the k-th (so after the equal ones already in, whose
    // ids are lower), moving the ones below it down one place
    int have = 0;
    for (int i = 0; i < n && k > 0; i++) {
        const float x = v[i];
        if (have == k && !ranks_above(x, values[k - 1])) continue;
        int at = have < k ? have : k - 1;
        for (; at > 0 && ranks_above(x, values[at - 1]); at--) ids[at] = ids[at - 1], values[at] = values[at - 1];
        ids[at] = i, values[at] = x;
        if (have < k) have++;
    }
    return have;
}
