// The server engine with MTP speculative decoding (1 to GLINT_MAX_DRAFTS drafts per step) on the demo
// model (BF16, and NVFP4 whose quantized CPU kernels must be row-invariant for this): every request's
// tokens are the ones plain decoding gives (greedy and seeded sampling, its tokens drawn on the
// host), alone or 6 at a time, in a roomy pool and in one so small that sequences are retracted
// mid-decode and resumed (with and without the prefix cache), and the same drafts are made and
// accepted in every case (but several drafts per step in the small pool: see below). Sampled tokens are drawn
// beside the logits (the backend's sample op) when the backend can, on the host otherwise: the same;
// likewise the requests' penalties, logit bias and held-back stop tokens (the edit_logits op). Prompts
// are slices of the text in tests/fixtures/demo.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "engine/scheduler.h"

#include "../check.h"
#include "../test_model.h"

enum { N_REQ = 6, N_NEW = 40, MAX_PROMPT = 48 };

typedef struct {
    int32_t ids[MAX_PROMPT];
    int n;
    float temperature;
} prompt;

static int masks_off;  // make_request leaves out the held-back stop tokens (to see that they matter)

static glint_gen_request *make_request(const prompt *p, int i) {
    glint_gen_request *r = glint_gen_request_new();
    r->prompt = malloc(sizeof(int32_t) * (size_t)p->n);
    memcpy(r->prompt, p->ids, sizeof(int32_t) * (size_t)p->n);
    r->n_prompt = p->n;
    glint_sampling_defaults(&r->sampling);
    r->sampling.rules.temperature = p->temperature;
    r->sampling.rules.top_p = 0.95f;
    r->sampling.seed = 77 + (uint64_t)i;
    r->max_new_tokens = N_NEW;
    r->ignore_eos = 1;
    // logit edits (made where the logits are when the backend can), greedy (1, 3, 4) and sampled (2,
    // 5): penalties (1, 3, 5), logit bias on the prompt's first two tokens (1, 2, 4, 5), and EOS plus
    // the prompt's first 6 tokens as stop ids held back for the first 20 tokens (4, 5), after which
    // a stop may end the request
    if (i % 2 == 1) {
        r->sampling.frequency_penalty = 0.3f, r->sampling.presence_penalty = 0.4f;
        r->sampling.repetition_penalty = 1.15f;
    }
    if (i % 3 != 0) {
        r->n_logit_bias = 2;
        r->logit_bias_ids = malloc(sizeof(int32_t) * 2), r->logit_bias = malloc(sizeof(float) * 2);
        r->logit_bias_ids[0] = p->ids[0], r->logit_bias[0] = 2.5f;
        r->logit_bias_ids[1] = p->ids[1] == p->ids[0] ? (p->ids[0] + 1) % 4000 : p->ids[1], r->logit_bias[1] = -3.0f;
    }
    if (i >= 4) {
        r->ignore_eos = 0, r->min_new_tokens = masks_off ? 0 : 20;
        r->n_stop_ids = 6, r->stop_ids = malloc(sizeof(int32_t) * 6);
        memcpy(r->stop_ids, p->ids, sizeof(int32_t) * 6);
    }
    return r;
}

typedef struct {
    int32_t ids[N_REQ][N_NEW];
    int n[N_REQ], finish[N_REQ];
} outcome;

// Runs the prompts (all submitted at once when together, else one by one) and stores the tokens.
static void run(glint_model *m, const glint_engine_options *eo, const prompt *prompts, int together, outcome *out,
                glint_engine_stats *stats) {
    glint_engine *e = glint_engine_new(m, eo);
    CHECK(e != NULL, "engine: %s", glint_last_error());
    if (!e) return;
    glint_gen_request *reqs[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        reqs[i] = make_request(&prompts[i], i);
        CHECK(glint_engine_submit(e, reqs[i]) == GLINT_SUBMIT_OK, "submit %d", i);
        if (!together) glint_gen_request_wait(reqs[i]);
    }
    for (int i = 0; i < N_REQ; i++) {
        glint_gen_request_wait(reqs[i]);
        const glint_gen_request *r = reqs[i];
        CHECK((r->finish == GLINT_FINISH_LENGTH && r->n_tokens == N_NEW) ||
                  (r->finish == GLINT_FINISH_STOP && r->n_tokens >= r->min_new_tokens && r->n_tokens <= N_NEW),
              "request %d: finish %d, %d tokens (%s)", i, r->finish, r->n_tokens, r->error);
        out->n[i] = r->n_tokens < N_NEW ? r->n_tokens : N_NEW, out->finish[i] = r->finish;
        for (int k = 0; k < N_NEW; k++) out->ids[i][k] = k < out->n[i] ? r->tokens[k].id : -1;
        glint_gen_request_release(reqs[i]);
    }
    glint_engine_get_stats(e, stats);
    glint_engine_free(e);
}

// Every request's tokens and finish as expected.
static void compare(const outcome *got, const outcome *expect, const char *what) {
    for (int i = 0; i < N_REQ; i++) {
        CHECK(got->n[i] == expect->n[i] && got->finish[i] == expect->finish[i],
              "%s: request %d: %d tokens, finish %d; expected %d, %d", what, i, got->n[i], got->finish[i],
              expect->n[i], expect->finish[i]);
        for (int k = 0; k < N_NEW; k++)
            CHECK(got->ids[i][k] == expect->ids[i][k], "%s: request %d token %d: %d, expected %d", what, i, k,
                  got->ids[i][k], expect->ids[i][k]);
    }
}

// The backend's edit_logits and sample, wrapped: calls counted; the sample op declines every other
// row when decline_rows is set (the host then draws from the edited logits that come instead).
static int (*backend_edit)(glint_backend *, float *, int, const glint_logit_edit *, int);
static void (*backend_sample)(glint_backend *, int32_t *, const float *, int, int, const glint_sample_params *,
                              const double *);
static int edit_calls, decline_rows, considered, declined;
static int counted_edit(glint_backend *be, float *logits, int n, const glint_logit_edit *edits, int n_edits) {
    edit_calls++;
    return backend_edit(be, logits, n, edits, n_edits);
}
static void declining_sample(glint_backend *be, int32_t *ids, const float *logits, int rows, int n,
                             const glint_sample_params *params, const double *uniforms) {
    backend_sample(be, ids, logits, rows, n, params, uniforms);
    for (int r = 0; r < rows && decline_rows; r++)
        if (ids[r] >= 0 && considered++ % 2 == 0) ids[r] = -1, declined++;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_spec_engine MODEL_DIR FIXTURE_DIR\n");
        return 2;
    }
    char *ref_path = glint_path_join(argv[2], "mtp_reference.json");
    json_error_t err;
    json_t *ref = json_load_file(ref_path, 0, &err);
    // GLINT_TEST_BACKEND=cuda (scripts/gpu-test.sh engine): the same checks on the GPU; GLINT_TEST_TP=N:
    // on N tensor-parallel ranks.
    glint_model *m = ref ? load_test_model(argv[1], NULL) : NULL;
    if (!m || !m->has_mtp) {
        fprintf(stderr, "%s\n", ref ? (m ? "no MTP layer" : "the model did not load") : err.text);
        return 1;
    }
    json_t *text = json_object_get(ref, "ids");
    const int n_text = (int)json_array_size(text);
    prompt prompts[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        prompts[i].n = 8 + 7 * i < MAX_PROMPT ? 8 + 7 * i : MAX_PROMPT;
        prompts[i].temperature = i % 3 == 2 ? 0.9f : 0.0f;
        for (int k = 0; k < prompts[i].n; k++)
            prompts[i].ids[k] = (int32_t)json_integer_value(json_array_get(text, (size_t)((5 * i + k) % n_text)));
    }
    static outcome expect, got;
    glint_engine_stats st;
    const glint_engine_options plain = {.max_running = 8, .max_queued = 16, .page_size = 16, .total_pages = 64,
                                        .chunked_prefill = 32, .context_length = 128, .prefix_cache = 1};

    // the expectation with sampled tokens drawn and logits edited on the host from downloaded logits
    // (the backend's sample and edit_logits ops hidden); every case below draws and edits where the
    // logits are when the backend can (the same tokens, the same uniforms)
    backend_sample = m->be->sample, backend_edit = m->be->edit_logits;
    m->be->sample = NULL, m->be->edit_logits = NULL;
    run(m, &plain, prompts, 0, &expect, &st);
    masks_off = 1;  // the held-back stop tokens change what requests 4 and 5 say
    run(m, &plain, prompts, 0, &got, &st);
    masks_off = 0;
    CHECK(memcmp(got.ids[4], expect.ids[4], sizeof got.ids[4]) || memcmp(got.ids[5], expect.ids[5], sizeof got.ids[5]),
          "without min_tokens, requests 4 and 5 say the same: the masks are not tested");
    m->be->sample = backend_sample ? declining_sample : NULL, m->be->edit_logits = backend_edit ? counted_edit : NULL;
    run(m, &plain, prompts, 0, &got, &st);
    compare(&got, &expect, glint_model_can_edit(m) ? "plain, edited and drawn where the logits are" : "plain, the host");
    CHECK(!glint_model_can_edit(m) || edit_calls > 0, "the backend's edit_logits was never called");
    run(m, &plain, prompts, 1, &got, &st);
    compare(&got, &expect, "plain, together");
    decline_rows = 1;  // the host draws every other row from the edited logits
    run(m, &plain, prompts, 1, &got, &st);
    compare(&got, &expect, "plain, together, the backend declining every other draw");
    CHECK(!glint_model_can_sample(m) || declined > 0, "no draw was declined");
    decline_rows = 0;
    printf("plain: %d edit_logits calls, %d draws declined (%s)\n", edit_calls, declined,
           glint_model_can_edit(m) ? "where the logits are" : "the host edits");
    // 1 to GLINT_MAX_DRAFTS drafts per step (the MTP layer on its own output after the first)
    for (int steps = 1; steps <= GLINT_MAX_DRAFTS; steps++) {
        glint_engine_options spec = plain;
        spec.speculative = 1, spec.speculative_steps = steps;
        // Pages of 4 tokens; a request needs up to (43 + 40) / 4 = 21 of 30, growing 4 tokens at a time.
        glint_engine_options small = spec;
        small.page_size = 4, small.total_pages = 30, small.grow_tokens = 4;
        struct {
            const char *what;
            glint_engine_options eo;
            int together, cache, want_retractions;
            int decline;  // the backend declines every other draw (the host draws from the logits)
        } cases[] = {{"alone", spec, 0, 1, 0, 0},
                     {"together", spec, 1, 1, 0, 0},
                     {"together, the backend declining every other draw", spec, 1, 1, 0, 1},
                     {"small pool", small, 1, 1, 1, 0},
                     {"small pool, no prefix cache", small, 1, 0, 1, 0}};
        uint64_t first_drafted = 0, first_accepted = 0;
        static uint64_t one_draft_drafted, one_draft_accepted;  // alone with 1 draft per step
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            char what[128];
            snprintf(what, sizeof what, "speculative, %d draft%s per step, %s", steps, steps > 1 ? "s" : "",
                     cases[c].what);
            cases[c].eo.prefix_cache = cases[c].cache;
            decline_rows = cases[c].decline;
            run(m, &cases[c].eo, prompts, cases[c].together, &got, &st);
            decline_rows = 0;
            if (c == 0 && steps == 1) one_draft_drafted = st.spec_drafted, one_draft_accepted = st.spec_accepted;
            // (runs are deterministic: other counts show the drafts after the first were made)
            CHECK(c || steps == 1 || st.spec_drafted != one_draft_drafted || st.spec_accepted != one_draft_accepted,
                  "%s: the same drafts as with 1 per step: no chained draft was made", what);
            compare(&got, &expect, what);
            CHECK(st.spec_accepted > 0 && st.spec_accepted <= st.spec_drafted, "%s: %llu of %llu drafts accepted", what,
                  (unsigned long long)st.spec_accepted, (unsigned long long)st.spec_drafted);
            CHECK(!cases[c].want_retractions || st.retractions > 0, "%s: no retraction happened", what);
            // Drafts are deterministic too: the same drafts whatever runs beside a sequence (but for
            // a pool under pressure with several drafts per step: the drafts after the first stop where
            // the pages a sequence holds end, and those depend on the others)
            if (c == 0) first_drafted = st.spec_drafted, first_accepted = st.spec_accepted;
            CHECK((steps > 1 && cases[c].want_retractions) ||
                      (st.spec_drafted == first_drafted && st.spec_accepted == first_accepted),
                  "%s: %llu of %llu drafts accepted, alone %llu of %llu", what, (unsigned long long)st.spec_accepted,
                  (unsigned long long)st.spec_drafted, (unsigned long long)first_accepted,
                  (unsigned long long)first_drafted);
            printf("%s: %llu of %llu drafts accepted, %llu retractions\n", what, (unsigned long long)st.spec_accepted,
                   (unsigned long long)st.spec_drafted, (unsigned long long)st.retractions);
        }
    }
    glint_model_free(m);
    json_decref(ref);
    free(ref_path);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("speculative engine: all checks pass\n");
    return 0;
}
