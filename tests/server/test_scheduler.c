// Engine tests on the tiny random model (made by setup_fixtures.py): prefix copy is exact, a page
// pool that fits one sequence at a time still finishes every request with the answer it gets
// alone, the prefix cache serves a repeated prompt, cancel and oversize requests are handled.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "common/util.h"
#include "engine/scheduler.h"

#include "../check.h"

enum { N_PROMPT = 24, N_NEW = 12, N_REQ = 5 };

static void make_prompt(int which, int32_t *ids) {
    for (int i = 0; i < N_PROMPT; i++) ids[i] = (int32_t)((which * 131 + i * 37 + 11) % 6000);
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

// Greedy continuation computed directly with glint_forward (the reference).
static void reference(glint_model *m, const int32_t *prompt, int32_t *out) {
    glint_state *st = glint_state_new(m, N_PROMPT + N_NEW);
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
    glint_forward(m, st, prompt, N_PROMPT, logits, 0);
    for (int k = 0; k < N_NEW; k++) {
        out[k] = argmax(logits, m->cfg.vocab_size);
        if (k + 1 < N_NEW) glint_forward(m, st, &out[k], 1, logits, 0);
    }
    free(logits);
    glint_state_free(m, st);
}

static glint_gen_request *make_request(const int32_t *prompt, int max_new) {
    glint_gen_request *r = glint_gen_request_new();
    r->prompt = malloc(N_PROMPT * sizeof *r->prompt);
    memcpy(r->prompt, prompt, N_PROMPT * sizeof *r->prompt);
    r->n_prompt = N_PROMPT;
    glint_sampling_defaults(&r->sampling);
    r->sampling.temperature = 0;
    r->max_new_tokens = max_new;
    r->ignore_eos = 1;
    return r;
}

static void wait_done(glint_gen_request *r) {
    pthread_mutex_lock(&r->mu);
    while (r->finish == GLINT_FINISH_NONE) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void test_copy_prefix(glint_model *m) {
    int32_t ids[N_PROMPT];
    make_prompt(0, ids);
    int V = m->cfg.vocab_size;
    float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
    glint_state *full = glint_state_new(m, 64), *copy = glint_state_new(m, 64);
    glint_forward(m, full, ids, N_PROMPT, a, 0);
    glint_state_copy_prefix(m, copy, full, 17);
    CHECK(copy->n_past == 17, "n_past after copy");
    glint_forward(m, copy, ids + 17, N_PROMPT - 17, b, 0);
    CHECK(!memcmp(a, b, sizeof(float) * (size_t)V), "logits after a copied prefix differ from a full prefill");
    glint_state_free(m, full), glint_state_free(m, copy);
    free(a), free(b);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_scheduler MODEL_DIR\n");
        return 2;
    }
    glint_backend *be = glint_backend_cpu(0);
    glint_load_options lo = {0};
    glint_model *m = glint_model_load(argv[1], &lo, be);
    if (!m) {
        fprintf(stderr, "%s\n", glint_last_error());
        return 1;
    }
    test_copy_prefix(m);

    int32_t prompts[N_REQ][N_PROMPT], expect[N_REQ][N_NEW];
    for (int i = 0; i < N_REQ; i++) {
        make_prompt(i + 1, prompts[i]);
        reference(m, prompts[i], expect[i]);
    }
    // Pages of 8 tokens; one sequence needs ceil(36 / 8) = 5; the pool holds 7: one at a time.
    glint_engine_options eo = {.max_running = 4, .max_queued = 16, .page_size = 8, .total_pages = 7,
                               .chunked_prefill = 10, .context_length = 64, .prefix_cache = 1};
    glint_engine *e = glint_engine_new(m, &eo);
    glint_gen_request *reqs[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        reqs[i] = make_request(prompts[i], N_NEW);
        CHECK(glint_engine_submit(e, reqs[i]) == GLINT_SUBMIT_OK, "submit %d", i);
    }
    for (int i = 0; i < N_REQ; i++) {
        wait_done(reqs[i]);
        CHECK(reqs[i]->finish == GLINT_FINISH_LENGTH && reqs[i]->n_tokens == N_NEW, "request %d finish %d, %d tokens",
              i, reqs[i]->finish, reqs[i]->n_tokens);
        for (int k = 0; k < reqs[i]->n_tokens && k < N_NEW; k++)
            CHECK(reqs[i]->tokens[k].id == expect[i][k], "request %d token %d: %d, alone %d", i, k, reqs[i]->tokens[k].id,
                  expect[i][k]);
        glint_gen_request_release(reqs[i]);
    }
    glint_engine_stats st;
    glint_engine_get_stats(e, &st);
    CHECK(st.pages_used <= eo.total_pages, "pages used %lld of %lld", (long long)st.pages_used, (long long)eo.total_pages);

    // The last prompt again: its cache entry (prompt + all but the last token) is reused.
    glint_gen_request *again = make_request(prompts[N_REQ - 1], N_NEW);
    CHECK(glint_engine_submit(e, again) == GLINT_SUBMIT_OK, "submit again");
    wait_done(again);
    CHECK(again->cached_tokens == N_PROMPT - 1, "cached tokens %d, want %d", again->cached_tokens, N_PROMPT - 1);
    for (int k = 0; k < again->n_tokens && k < N_NEW; k++)
        CHECK(again->tokens[k].id == expect[N_REQ - 1][k], "prefix-cached token %d differs", k);
    glint_gen_request_release(again);

    // Oversize: never fits the pool.
    glint_gen_request *big = make_request(prompts[0], 40);
    CHECK(glint_engine_submit(e, big) == GLINT_SUBMIT_TOO_LARGE, "oversize request accepted");
    glint_gen_request_release(big);

    // Cancel: finishes as ABORT, promptly.
    glint_gen_request *cancel = make_request(prompts[1], N_NEW);
    glint_engine_submit(e, cancel);
    glint_engine_cancel(e, cancel);
    wait_done(cancel);
    CHECK(cancel->finish == GLINT_FINISH_ABORT || cancel->n_tokens == N_NEW, "cancel finish %d", cancel->finish);
    glint_gen_request_release(cancel);

    // Shutdown with queued work: everything is answered.
    glint_gen_request *late[3];
    for (int i = 0; i < 3; i++) {
        late[i] = make_request(prompts[i], N_NEW);
        glint_engine_submit(e, late[i]);
    }
    glint_engine_shutdown(e);
    for (int i = 0; i < 3; i++) {
        CHECK(late[i]->finish != GLINT_FINISH_NONE, "request %d left unanswered at shutdown", i);
        glint_gen_request_release(late[i]);
    }
    glint_gen_request *after = make_request(prompts[0], 2);
    CHECK(glint_engine_submit(e, after) == GLINT_SUBMIT_STOPPED, "submit after shutdown");
    glint_gen_request_release(after);
    glint_engine_free(e);

    // A pool too small for every sequence to grow: some are retracted mid-decode (their cache goes
    // to the prefix cache), resume later, and still produce exactly the answers they get alone.
    glint_engine_options small = {.max_running = 4, .max_queued = 16, .page_size = 8, .total_pages = 9,
                                  .chunked_prefill = 64, .context_length = 64, .prefix_cache = 1, .grow_tokens = 4};
    for (int cache = 1; cache >= 0; cache--) {
        small.prefix_cache = cache;
        e = glint_engine_new(m, &small);
        for (int i = 0; i < N_REQ; i++) {
            reqs[i] = make_request(prompts[i], N_NEW);
            CHECK(glint_engine_submit(e, reqs[i]) == GLINT_SUBMIT_OK, "submit %d", i);
        }
        for (int i = 0; i < N_REQ; i++) {
            wait_done(reqs[i]);
            CHECK(reqs[i]->finish == GLINT_FINISH_LENGTH && reqs[i]->n_tokens == N_NEW, "small pool: request %d finish %d",
                  i, reqs[i]->finish);
            for (int k = 0; k < reqs[i]->n_tokens && k < N_NEW; k++)
                CHECK(reqs[i]->tokens[k].id == expect[i][k], "small pool (cache %d): request %d token %d differs", cache,
                      i, k);
            glint_gen_request_release(reqs[i]);
        }
        glint_engine_get_stats(e, &st);
        CHECK(st.retractions > 0, "no sequence was retracted (cache %d)", cache);
        CHECK(st.pages_used <= small.total_pages, "small pool over budget");
        glint_engine_free(e);
    }
    // A shared prefix is copied, not taken: later requests with the same start still find it.
    glint_engine_options roomy = {.max_running = 4, .max_queued = 16, .page_size = 16, .total_pages = 1000,
                                .chunked_prefill = 64, .context_length = 64, .prefix_cache = 1};
    e = glint_engine_new(m, &roomy);
    for (int i = 0; i < 3; i++) {
        int32_t p[N_PROMPT];
        make_prompt(7, p);
        p[N_PROMPT - 2] = 100 + i, p[N_PROMPT - 1] = 200 + i;  // same first 22 tokens
        glint_gen_request *r = make_request(p, 4);
        glint_engine_submit(e, r);
        wait_done(r);
        CHECK(r->cached_tokens == (i ? N_PROMPT - 2 : 0), "shared prefix request %d: %d cached", i, r->cached_tokens);
        glint_gen_request_release(r);
    }
    glint_engine_free(e);
    glint_model_free(m);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("scheduler: all checks pass\n");
    return 0;
}
