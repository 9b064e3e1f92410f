// The model's use of the backend's side lines (backend.h: branch / join / branch_wait) on a CPU
// backend that records them: every op that reads what side lines write (the MLA attention reads the
// latent cache and the indexer's selection; the next layer reads the shared expert's and the routed
// experts' outputs) must come after a join, and so must every download and the end of every forward;
// the indexer's selection reads the indexer keys and head weights, so it runs on their line, or
// after waiting for it (branch_wait), or after a join; a branch names a line 0..GLINT_BRANCHES. The
// logits with the hooks equal those without.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "common/util.h"
#include "model/glm.h"

#include "../check.h"

static glint_backend plain;  // the CPU instance's own ops, called by the checking ones
static int line;             // the line ops go to now (0: main)
static unsigned pending;     // side lines left since the last join
static int branch_calls[GLINT_BRANCHES + 1], bad_lines, unjoined_attend, unjoined_moe_reads, unjoined_downloads;
// The line that last wrote the indexer keys the next selection reads (the cache pool it is given) and
// the lines that have seen that write since (waited for its line, or joined).
static const float *index_key_pool;
static int index_key_line;
static unsigned index_key_seen_by;
static int selections, checked_selections, unseen_selections, bad_waits;

static void record_branch(glint_backend *be, int k) {
    (void)be;
    if (k < 0 || k > GLINT_BRANCHES) {
        bad_lines++;
        return;
    }
    if (line) pending |= 1u << line;
    line = k;
    branch_calls[k]++;
}

static void record_join(glint_backend *be) {
    (void)be;
    line = 0, pending = 0;
    index_key_seen_by = ~0u;
}

static void record_branch_wait(glint_backend *be, int k) {
    (void)be;
    if (k < 1 || k > GLINT_BRANCHES || !(pending & (1u << k))) {  // a line not left since the last join
        bad_waits++;
        return;
    }
    if (k == index_key_line) index_key_seen_by |= 1u << line;
}

// A cache write: remembered as the indexer keys' when a later selection reads that pool.
static void wrote_cache(const float *pool) {
    index_key_pool = pool, index_key_line = line, index_key_seen_by = 0;
}

static void checked_norm_rope_cache(glint_backend *be, float *x, int x_stride, int T, int n_norm,
                                    const glint_weight *w, const glint_weight *b, float eps, int rope_offset,
                                    int rope_dim, const int32_t *pos, const float *inv_freq, float attn_factor,
                                    float *pool_a, int split, float *pool_b, int width, const glint_cache_map *map) {
    if (!pool_b) wrote_cache(pool_a);
    plain.norm_rope_cache(be, x, x_stride, T, n_norm, w, b, eps, rope_offset, rope_dim, pos, inv_freq, attn_factor,
                          pool_a, split, pool_b, width, map);
}

static void checked_write_cache(glint_backend *be, float *pool, int width, const float *x, int x_stride, int T,
                                int n, const int32_t *pos, const glint_cache_map *map) {
    wrote_cache(pool);
    plain.write_cache(be, pool, width, x, x_stride, T, n, pos, map);
}

static void checked_indexer_select(glint_backend *be, int32_t *sel, int32_t *n_sel, const float *q, const float *w,
                                   const float *k_pool, int T, const int32_t *pos, const glint_cache_map *map,
                                   int n_heads, int head_dim, int topk, float scale, float weight_scale) {
    selections++;
    if (k_pool == index_key_pool) {
        checked_selections++;
        if (index_key_line != line && index_key_line != 0 && !(index_key_seen_by & (1u << line))) unseen_selections++;
    }
    plain.indexer_select(be, sel, n_sel, q, w, k_pool, T, pos, map, n_heads, head_dim, topk, scale, weight_scale);
}

static void checked_attend(glint_backend *be, float *o_lat, const float *q_lat, const float *q, int q_head_stride,
                           int pe_offset, const float *latent_cache, const float *kpe_cache, const int32_t *sel,
                           const int32_t *n_sel, int sel_stride, int T, int H, int C, int Dr, float scale) {
    if (line || pending) unjoined_attend++;
    plain.mla_attend(be, o_lat, q_lat, q, q_head_stride, pe_offset, latent_cache, kpe_cache, sel, n_sel, sel_stride,
                     T, H, C, Dr, scale);
}

// The residual add of the next layer (or the final norm) reads the MoE block's outputs.
static void checked_add_rmsnorm(glint_backend *be, float *x, float *a, const float *b, float *xn, int T, int D,
                                const glint_weight *w, float eps) {
    if (line || pending) unjoined_moe_reads++;
    plain.add_rmsnorm(be, x, a, b, xn, T, D, w, eps);
}

static void checked_add(glint_backend *be, float *y, const float *x, size_t n) {
    if (line || pending) unjoined_moe_reads++;
    plain.add(be, y, x, n);
}

static void checked_download(glint_backend *be, float *host, const float *src, size_t n) {
    if (line || pending) unjoined_downloads++;
    plain.download(be, host, src, n);
}

static glint_backend *checking_backend(void) {
    glint_backend *be = glint_backend_cpu_rank(1);
    if (!be) return NULL;
    plain = *be;
    be->branch = record_branch, be->join = record_join, be->branch_wait = record_branch_wait;
    be->mla_attend = checked_attend, be->download = checked_download, be->add = checked_add;
    be->indexer_select = checked_indexer_select;
    if (be->norm_rope_cache) be->norm_rope_cache = checked_norm_rope_cache;
    be->write_cache = checked_write_cache;
    if (be->add_rmsnorm) be->add_rmsnorm = checked_add_rmsnorm;
    return be;
}

static void test_model(const char *dir) {
    glint_backend *be = checking_backend();
    glint_load_options opts = {0};
    glint_model *m = be ? glint_model_load(dir, &opts, be) : NULL;
    glint_model *ref = glint_model_load(dir, &opts, glint_backend_cpu(1));
    CHECK(m && ref, "%s: load: %s", dir, glint_last_error());
    if (m && ref) {
        memset(branch_calls, 0, sizeof branch_calls);
        bad_lines = unjoined_attend = unjoined_moe_reads = unjoined_downloads = 0;
        selections = checked_selections = unseen_selections = bad_waits = 0, index_key_pool = NULL, index_key_line = 0;
        const int V = m->cfg.vocab_size;
        const int32_t prompt[7] = {1, 17, 33, 5, 9, 2, 40};
        float *got = malloc(sizeof(float) * 7 * (size_t)V), *want = malloc(sizeof(float) * 7 * (size_t)V);
        glint_state *s = glint_state_new(m, 16), *rs = glint_state_new(ref, 16);
        int same = 1, ends_joined = 1;
        // a prefill of 5 tokens, then two decode steps
        for (int at = 0, n = 5; at < 7; at += n, n = 1) {
            CHECK(!glint_forward(m, s, prompt + at, n, got, 1) && !glint_forward(ref, rs, prompt + at, n, want, 1),
                  "%s: forward: %s", dir, glint_last_error());
            same &= !memcmp(got, want, sizeof(float) * (size_t)n * V);
            ends_joined &= !line && !pending;
        }
        CHECK(branch_calls[1] > 0 && branch_calls[0] > 0, "%s: the model used no side line (%d calls of line 1)", dir,
              branch_calls[1]);
        CHECK(!bad_lines, "%s: %d branches to lines outside 0..%d", dir, bad_lines, GLINT_BRANCHES);
        CHECK(!unjoined_attend, "%s: %d attention calls before the side lines were joined", dir, unjoined_attend);
        CHECK(!unjoined_moe_reads, "%s: %d reads of a block's output before the side lines were joined", dir,
              unjoined_moe_reads);
        CHECK(!unjoined_downloads, "%s: %d downloads before the side lines were joined", dir, unjoined_downloads);
        CHECK(ends_joined, "%s: a forward ended with side lines not joined", dir);
        CHECK(selections > 0 && checked_selections > 0,
              "%s: of %d indexer selections, %d came right after their keys' cache write", dir, selections,
              checked_selections);
        CHECK(!unseen_selections, "%s: %d of %d indexer selections before their keys' line was waited for", dir,
              unseen_selections, selections);
        CHECK(!bad_waits, "%s: %d waits for a line outside 1..%d or not left since the last join", dir, bad_waits,
              GLINT_BRANCHES);
        CHECK(same, "%s: logits with the side-line hooks differ from the plain CPU's", dir);
        glint_state_free(m, s), glint_state_free(ref, rs);
        free(got), free(want);
    }
    glint_model_free(m), glint_model_free(ref);
    if (be && be->release) be->release(be);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_branch MODEL_DIR...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) test_model(argv[i]);
    if (failures) {
        fprintf(stderr, "FAILED\n");
        return 1;
    }
    printf("all ok\n");
    return 0;
}
