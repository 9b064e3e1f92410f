#include "engine/generate.h"

int glint_is_eos(const glint_config *cfg, int32_t id) {
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_ids[i] == id) return 1;
    return 0;
}

int glint_generate(glint_model *m, glint_state *st, glint_sampler *sampler, float *logits, int max_new,
                   int ignore_eos, int (*on_token)(int32_t id, void *user), void *user) {
    int generated = 0;
    while (generated < max_new) {
        int32_t next = glint_sampler_sample(sampler, logits);
        generated++;
        if (on_token && on_token(next, user)) break;
        if (!ignore_eos && glint_is_eos(&m->cfg, next)) break;
        if (generated < max_new && glint_forward(m, st, &next, 1, logits, 0)) return -1;
    }
    return generated;
}
