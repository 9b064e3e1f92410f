// The decode loop shared by glint generate, glint run and the server's single-sequence path.
#ifndef GLINT_GENERATE_H
#define GLINT_GENERATE_H

#include <stdint.h>

#include "engine/sampler.h"
#include "model/glm.h"

int glint_is_eos(const glint_config *cfg, int32_t id);

// Samples up to max_new tokens, starting from `logits` (the last fed position's, [vocab]; scratch
// afterwards), feeding each token back into the model except the last. The tokens after the first
// are chosen where the logits are when the sampler and backend allow (the argmax; draws with the
// sampler's uniforms, glint_model_can_sample): the same tokens, without moving logits. on_token(id, user) sees every token;
// returning nonzero from it stops. Stops after an EOS id unless ignore_eos. Returns the number of
// tokens generated, or -1 with the error set.
int glint_generate(glint_model *m, glint_state *st, glint_sampler *sampler, float *logits, int max_new,
                   int ignore_eos, int (*on_token)(int32_t id, void *user), void *user);

// Greedy decoding with the MTP layer drafting one token per step (spec §2.10): the prompt is run,
// then each step feeds the pending token and the draft together and keeps the draft when the main
// model's greedy choice agrees, so the output equals plain greedy decoding. st and mtp_state must be
// empty and hold n_prompt + max_new + 1 tokens. Returns the tokens generated (or -1 with the error
// set); *drafted / *accepted count the drafts.
int glint_generate_speculative(glint_model *m, glint_state *st, glint_state *mtp_state, const int32_t *prompt,
                               int n_prompt, int max_new, int ignore_eos, int (*on_token)(int32_t id, void *user),
                               void *user, int *drafted, int *accepted);

#endif
