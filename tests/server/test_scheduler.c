// Engine tests on the tiny random model (made by setup_fixtures.py): paged prefix sharing and the
// batched forward are exact, a page
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
#include "../test_model.h"

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
    r->sampling.rules.temperature = 0;
    r->max_new_tokens = max_new;
    r->ignore_eos = 1;
    return r;
}

// A prefix shared from another sequence's pages (two whole pages by reference, one row copied)
// continues exactly like a full prefill; the pages go back to the pool when both are freed.
static void test_share_prefix(glint_model *m) {
    int32_t ids[N_PROMPT];
    make_prompt(0, ids);
    int V = m->cfg.vocab_size;
    float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
    glint_kv_pool *pool = glint_kv_pool_new(m, 12, 8, 0);
    glint_state *full = glint_state_in_pool(pool), *copy = glint_state_in_pool(pool);
    CHECK(!glint_state_reserve(full, N_PROMPT) && full->n_pages == 3, "reserve 3 pages");
    glint_forward(m, full, ids, N_PROMPT, a, 0);
    CHECK(!glint_state_share_prefix(m, copy, full, 17), "share 17 tokens");
    CHECK(copy->n_past == 17 && copy->n_pages == 3, "n_past %d, pages %d after sharing", copy->n_past, copy->n_pages);
    CHECK(copy->pages[0] == full->pages[0] && copy->pages[1] == full->pages[1] && copy->pages[2] != full->pages[2],
          "whole pages shared, the partial one copied");
    CHECK(pool->refs[full->pages[0]] == 2 && pool->n_free == 8, "refs %d, free %d", pool->refs[full->pages[0]],
          pool->n_free);
    CHECK(!glint_state_reserve(copy, N_PROMPT), "reserve for the rest");
    glint_forward(m, copy, ids + 17, N_PROMPT - 17, b, 0);
    CHECK(!memcmp(a, b, sizeof(float) * (size_t)V), "logits after a shared prefix differ from a full prefill");
    CHECK(glint_state_reserve(copy, 8 * 13) == 1 && copy->n_pages == 3, "over-reserve must fail without taking pages");
    glint_state_free(m, full);
    CHECK(pool->refs[copy->pages[0]] == 1 && pool->n_free == 9, "after freeing the source: free %d", pool->n_free);
    glint_state_free(m, copy);
    CHECK(pool->n_free == 12, "all pages back: %d", pool->n_free);
    glint_kv_pool_free(m, pool);
    free(a), free(b);
}

// Sequences batched together, with pages scattered through the pool (interleaved allocation, a
// page size that splits the prompts), give bitwise the logits they get alone in a private
// contiguous cache, at every decode step.
static void test_batched_forward(glint_model *m) {
    enum { N_SEQ = 4, PS = 5, STEPS = 6 };
    const int V = m->cfg.vocab_size, lens[N_SEQ] = {N_PROMPT, 9, 1, 17};
    int32_t prompts[N_SEQ][N_PROMPT];
    float *solo = malloc(sizeof(float) * (size_t)V * N_SEQ * STEPS), *batched = malloc(sizeof(float) * (size_t)V * N_SEQ);
    int32_t next[N_SEQ][STEPS];
    for (int i = 0; i < N_SEQ; i++) {
        make_prompt(20 + i, prompts[i]);
        glint_state *st = glint_state_new(m, N_PROMPT + STEPS);
        float *l = solo + (size_t)i * STEPS * V;
        glint_forward(m, st, prompts[i], lens[i], l, 0);
        for (int k = 0; k < STEPS; k++) {
            next[i][k] = argmax(l + (size_t)k * V, V);
            if (k + 1 < STEPS) glint_forward(m, st, &next[i][k], 1, l + (size_t)(k + 1) * V, 0);
        }
        glint_state_free(m, st);
    }
    glint_kv_pool *pool = glint_kv_pool_new(m, 64, PS, 0);
    glint_state *sts[N_SEQ];
    for (int i = 0; i < N_SEQ; i++) sts[i] = glint_state_in_pool(pool);
    for (int grow = PS; grow <= N_PROMPT + STEPS; grow += PS)  // page by page, round robin
        for (int i = 0; i < N_SEQ; i++) glint_state_reserve(sts[i], grow);
    glint_batch_item items[N_SEQ];
    for (int i = 0; i < N_SEQ; i++)
        items[i] = (glint_batch_item){.st = sts[i], .ids = prompts[i], .n_tokens = lens[i],
                                      .logits = batched + (size_t)i * V};
    CHECK(!glint_forward_batch(m, items, N_SEQ), "batched prefill: %s", glint_last_error());
    for (int k = 0; k < STEPS; k++) {
        for (int i = 0; i < N_SEQ; i++)
            CHECK(!memcmp(batched + (size_t)i * V, solo + ((size_t)i * STEPS + k) * V, sizeof(float) * (size_t)V),
                  "sequence %d step %d: batched logits differ from solo", i, k);
        if (k + 1 == STEPS) break;
        for (int i = 0; i < N_SEQ; i++)
            items[i] = (glint_batch_item){.st = sts[i], .ids = &next[i][k], .n_tokens = 1,
                                          .logits = batched + (size_t)i * V};
        CHECK(!glint_forward_batch(m, items, N_SEQ), "batched decode: %s", glint_last_error());
    }
    // A batch that does not fit is refused whole: nothing is appended.
    items[0] = (glint_batch_item){.st = sts[0], .ids = prompts[0], .n_tokens = 1};
    items[1] = (glint_batch_item){.st = sts[1], .ids = prompts[1], .n_tokens = N_PROMPT};
    const int before0 = sts[0]->n_past;
    CHECK(glint_forward_batch(m, items, 2) == -1 && sts[0]->n_past == before0, "overfull batch accepted");
    for (int i = 0; i < N_SEQ; i++) glint_state_free(m, sts[i]);
    CHECK(pool->n_free == 64, "pages leaked: %d free", pool->n_free);
    glint_kv_pool_free(m, pool);
    free(solo), free(batched);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_scheduler MODEL_DIR\n");
        return 2;
    }
    glint_model *m = load_test_model(argv[1], NULL);  // GLINT_TEST_TP=N: over N tensor-parallel ranks
    if (!m) return 1;
    test_share_prefix(m);
    test_batched_forward(m);

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
        glint_gen_request_wait(reqs[i]);
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
    glint_gen_request_wait(again);
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
    glint_gen_request_wait(cancel);
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
            glint_gen_request_wait(reqs[i]);
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
    // A shared prefix stays cached: later requests with the same start still find it.
    glint_engine_options roomy = {.max_running = 4, .max_queued = 16, .page_size = 16, .total_pages = 1000,
                                .chunked_prefill = 64, .context_length = 64, .prefix_cache = 1};
    e = glint_engine_new(m, &roomy);
    for (int i = 0; i < 3; i++) {
        int32_t p[N_PROMPT];
        make_prompt(7, p);
        p[N_PROMPT - 2] = 100 + i, p[N_PROMPT - 1] = 200 + i;  // same first 22 tokens
        glint_gen_request *r = make_request(p, 4);
        glint_engine_submit(e, r);
        glint_gen_request_wait(r);
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
