#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int glint_is_eos(const glint_config *cfg, int32_t id) {
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_ids[i] == id) return 1;
    return 0;
}

// The forward of `token` and the choice of the one after it: where the logits are when the sampler
// allows (greedy: the argmax; a draw with its next uniform, glint_model_can_sample), else from the
// logits on the host. Returns 0, or -1 with the error set.
static int step(glint_model *m, glint_state *st, glint_sampler *sampler, float *logits, int32_t token, int32_t *next) {
    glint_sample_params rules;
    const double uniform = glint_sampler_peek(sampler, 0);
    const int greedy = glint_sampler_is_plain_greedy(sampler);
    const int drawn = !greedy && glint_model_can_sample(m) && glint_sampler_draw_params(sampler, &rules);
    int32_t chosen = -1;
    glint_batch_item item = {st,     &token, 1,    greedy ? NULL : logits, 0, NULL, NULL, greedy || drawn ? &chosen : NULL,
                             drawn ? &rules : NULL, drawn ? &uniform : NULL, NULL, NULL};
    if (glint_forward_batch(m, &item, 1)) return -1;
    if (greedy) glint_sampler_record(sampler, chosen);
    else if (drawn && chosen >= 0) glint_sampler_take(sampler, chosen);
    else chosen = glint_sampler_sample(sampler, logits);  // the logits came (declined, or not drawable)
    *next = chosen;
    return 0;
}

int glint_generate(glint_model *m, glint_state *st, glint_sampler *sampler, float *logits, int max_new,
                   int ignore_eos, int (*on_token)(int32_t id, void *user), void *user) {
    int generated = 0;
    int32_t next = glint_sampler_sample(sampler, logits);  // from the prompt's logits
    while (generated < max_new) {
        generated++;
        if (on_token && on_token(next, user)) break;
        if (!ignore_eos && glint_is_eos(&m->cfg, next)) break;
        if (generated < max_new && step(m, st, sampler, logits, next, &next)) return -1;
    }
    return generated;
}

typedef struct {
    int (*on_token)(int32_t id, void *user);
    void *user;
    const glint_config *cfg;
    int max_new, ignore_eos, emitted, stop;
} emitter;

// Hands a token out; sets stop on EOS, the length limit or the callback's request.
static void emit(emitter *e, int32_t id) {
    if (e->stop) return;
    e->emitted++;
    if ((e->on_token && e->on_token(id, e->user)) || e->emitted >= e->max_new ||
        (!e->ignore_eos && glint_is_eos(e->cfg, id)))
        e->stop = 1;
}

int glint_generate_speculative(glint_model *m, glint_state *st, glint_state *mtp_state, const int32_t *prompt,
                               int n_prompt, int max_new, int ignore_eos, int (*on_token)(int32_t id, void *user),
                               void *user, int *drafted, int *accepted) {
    enum { CHUNK = 64 };
    const int V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    float *logits = glint_malloc(sizeof(float) * CHUNK * (size_t)V, "logits");        // main model rows
    float *draft_logits = glint_malloc(sizeof(float) * CHUNK * (size_t)V, "logits");  // MTP rows
    float *hidden = glint_malloc(sizeof(float) * CHUNK * (size_t)D, "hidden states");
    emitter out = {on_token, user, &m->cfg, max_new, ignore_eos, 0, max_new <= 0};
    int ok = 0;
    *drafted = *accepted = 0;
    if (!logits || !draft_logits || !hidden || n_prompt < 1) goto done;
    // Prompt in chunks: the main model's final-norm hidden states give the MTP layer its (h_p, token
    // p+1) pairs, so its cache covers the prompt before drafting starts.
    int n = 0;
    for (int a = 0; a < n_prompt; a += n) {
        n = n_prompt - a < CHUNK ? n_prompt - a : CHUNK;
        if (glint_forward_hidden(m, st, prompt + a, n, logits, 1, hidden)) goto done;
        int pairs = a + n < n_prompt ? n : n - 1;  // the last position pairs with the first output token
        if (pairs > 0 && glint_mtp_forward(m, mtp_state, hidden, prompt + a + 1, pairs, draft_logits)) goto done;
    }
    // Row n-1 of logits/hidden is the last prompt position.
    int32_t pending = glint_argmax(logits + (size_t)(n - 1) * V, V);
    emit(&out, pending);
    if (!out.stop && glint_mtp_forward(m, mtp_state, hidden + (size_t)(n - 1) * D, &pending, 1, draft_logits)) goto done;
    int32_t draft = glint_argmax(draft_logits, V);
    while (!out.stop) {
        // Verify: the pending token and the draft in one step; row 0 predicts the draft's position.
        const int32_t pair[2] = {pending, draft};
        if (glint_forward_hidden(m, st, pair, 2, logits, 1, hidden)) goto done;
        (*drafted)++;
        const int32_t target = glint_argmax(logits, V);
        int32_t next_ids[2];
        int pairs;
        if (target == draft) {  // accepted: the draft and the token after it are both the greedy ones
            (*accepted)++;
            emit(&out, draft);
            pending = glint_argmax(logits + V, V);
            emit(&out, pending);
            next_ids[0] = draft, next_ids[1] = pending, pairs = 2;
        } else {  // rejected: the cache drops the draft's row; the main model's token goes on
            st->n_past -= 1;
            pending = target;
            emit(&out, pending);
            next_ids[0] = pending, pairs = 1;
        }
        if (out.stop) break;
        if (glint_mtp_forward(m, mtp_state, hidden, next_ids, pairs, draft_logits)) goto done;
        draft = glint_argmax(draft_logits + (size_t)(pairs - 1) * V, V);
    }
    ok = 1;
done:
    free(logits), free(draft_logits), free(hidden);
    return ok ? out.emitted : -1;
}
