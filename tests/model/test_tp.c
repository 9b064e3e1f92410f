// Tensor parallelism on the CPU: the parts of a weight that ranks take (every format, against the
// whole weight's dequantized elements; cuts a format cannot make are refused with the weight's name),
// the greedy answer combined from the ranks' vocabulary parts against the argmax of the logits they
// return, batched rows equal to rows alone, the config checks, and a backend that keeps its own copy
// of the weights (column parts are then cut at upload and freed at once). The logits against
// transformers are model_forward_tp2 / _tp4 (tests/model/tests.cmake).
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/cpu.h"
#include "common/util.h"
#include "io/quant.h"
#include "model/glm.h"

#include "../check.h"

static uint64_t rng = 0x1234567;
static uint32_t next_u32(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

static glint_backend *cpu_test_rank(int rank, void *ctx) {
    (void)rank, (void)ctx;
    return glint_backend_cpu_rank(1);
}

// Every element of part (rows/cols of axis starting at start) equals the whole weight's.
static void check_part(const glint_weight *w, int axis, int64_t start, int64_t count, const char *what) {
    glint_weight part;
    void *copy = NULL;
    if (glint_weight_part(w, axis, start, count, &part, &copy)) {
        CHECK(0, "%s: part %s %lld+%lld refused: %s", what, axis ? "cols" : "rows", (long long)start, (long long)count,
              glint_last_error());
        return;
    }
    CHECK(part.rows == (axis ? w->rows : count) && part.cols == (axis ? count : w->cols), "%s: part shape", what);
    int bad = 0;
    for (int64_t r = 0; r < part.rows; r++)
        for (int64_t c = 0; c < part.cols; c++) {
            const float got = glint_cpu_weight_element(&part, r, c);
            const float want = glint_cpu_weight_element(w, axis ? r : start + r, axis ? start + c : c);
            if (memcmp(&got, &want, sizeof got)) bad++;
        }
    CHECK(!bad, "%s: %d elements of %s %lld..%lld differ from the whole weight's", what, bad, axis ? "columns" : "rows",
          (long long)start, (long long)(start + count - 1));
    free(copy);
}

static void check_refused(const glint_weight *w, int axis, int64_t start, int64_t count, const char *what) {
    glint_weight part;
    void *copy = NULL;
    const int rc = glint_weight_part(w, axis, start, count, &part, &copy);
    CHECK(rc == -1 && !copy && strstr(glint_last_error(), w->name), "%s: cut %lld+%lld accepted or unnamed (%s)", what,
          (long long)start, (long long)count, glint_last_error());
}

static void test_parts(void) {
    enum { N = 64, K = 96 };  // rows, cols
    static uint8_t bytes[N * K * 4], scales[N * K], zeros[N * K];
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)next_u32();
    for (size_t i = 0; i < sizeof scales; i++) scales[i] = (uint8_t)(0x20 + next_u32() % 0x40);  // finite E4M3
    for (size_t i = 0; i < sizeof zeros; i++) zeros[i] = (uint8_t)next_u32();

    uint16_t *bf16 = (uint16_t *)bytes;
    for (int i = 0; i < N * K; i++) bf16[i] = glint_f32_to_bf16((float)(next_u32() % 2001) / 1000.0f - 1.0f);
    glint_weight dense = {.dtype = GLINT_DTYPE_BF16, .rows = N, .cols = K, .data = bytes, .name = "dense.weight"};
    check_part(&dense, 0, 16, 32, "BF16 rows");
    check_part(&dense, 1, 40, 56, "BF16 cols");

    glint_weight nvfp4 = {.dtype = GLINT_DTYPE_U8, .rows = N, .cols = K, .data = bytes, .name = "nvfp4.weight",
                          .format = GLINT_WFMT_NVFP4, .scales = scales, .scales_dtype = GLINT_DTYPE_F8_E4M3,
                          .global_scale = 0.5f, .block = 16};
    check_part(&nvfp4, 0, 8, 24, "NVFP4 rows");
    check_part(&nvfp4, 1, 32, 48, "NVFP4 cols");
    check_refused(&nvfp4, 1, 8, 16, "NVFP4 cols inside a scale group");

    float fscales[(N / 16) * (K / 16)];
    for (size_t i = 0; i < sizeof fscales / sizeof fscales[0]; i++) fscales[i] = 0.01f * (float)(1 + i);
    uint8_t *fp8 = zeros;  // finite codes: no 0x7f / 0xff NaNs
    for (int i = 0; i < N * K; i++)
        if ((fp8[i] & 0x7f) == 0x7f) fp8[i] ^= 1;
    glint_weight fp8w = {.dtype = GLINT_DTYPE_F8_E4M3, .rows = N, .cols = K, .data = fp8, .name = "fp8.weight",
                         .format = GLINT_WFMT_FP8_BLOCK, .scales = fscales, .scales_dtype = GLINT_DTYPE_F32,
                         .block = 16};
    check_part(&fp8w, 0, 16, 32, "FP8-block rows");
    check_part(&fp8w, 1, 48, 48, "FP8-block cols");
    check_part(&fp8w, 1, 80, 16, "FP8-block last cols");
    check_refused(&fp8w, 0, 8, 16, "FP8-block rows inside a block");

    // GPTQ: qweight I32 [K/8, N], qzeros I32 [G, N/8], F16 scales [G, N], group 32 (G = 3)
    static uint16_t hscales[3 * N];
    for (int i = 0; i < 3 * N; i++) hscales[i] = (uint16_t)(0x2000 + next_u32() % 0x1000);  // small positive F16
    glint_weight gptq = {.dtype = GLINT_DTYPE_I32, .rows = N, .cols = K, .data = bytes, .name = "gptq.qweight",
                         .format = GLINT_WFMT_GPTQ_INT4, .scales = hscales, .scales_dtype = GLINT_DTYPE_F16,
                         .block = 32, .zeros = zeros};
    check_part(&gptq, 0, 24, 16, "GPTQ rows");
    check_part(&gptq, 1, 32, 64, "GPTQ cols");
    check_refused(&gptq, 1, 16, 32, "GPTQ cols inside a group");
    check_refused(&dense, 0, 60, 8, "rows out of range");
}

// The greedy answers of a tensor-parallel batched forward (combined from the ranks' parts) are the
// argmax of the logits it returns; rows batched equal rows alone; the logits match one rank's.
static void test_forward(const char *dir, int tp) {
    glint_load_options one = {0}, split = {.tp_size = tp, .rank_backend = cpu_test_rank};
    glint_model *whole = glint_model_load(dir, &one, glint_backend_cpu(1));
    glint_model *m = glint_model_load(dir, &split, NULL);
    CHECK(whole && m, "%s: load: %s", dir, glint_last_error());
    if (!whole || !m) {
        glint_model_free(whole), glint_model_free(m);
        return;
    }
    CHECK(m->n_params == whole->n_params && m->weight_bytes == whole->weight_bytes &&
              m->bytes_per_token == whole->bytes_per_token,
          "%s: stats of %d ranks (%llu params, %llu bytes, %llu per token) differ from the whole model's", dir, tp,
          (unsigned long long)m->n_params, (unsigned long long)m->weight_bytes, (unsigned long long)m->bytes_per_token);
    const int V = m->cfg.vocab_size, n_a = 9, n_b = 5;
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = (int32_t)(3 + i * 37 % (V - 3));
    float *solo = malloc(sizeof(float) * (size_t)(n_a + n_b) * V), *both = malloc(sizeof(float) * (size_t)(n_a + n_b) * V);
    float *ref = malloc(sizeof(float) * (size_t)n_a * V);
    glint_kv_pool *pool = glint_kv_pool_new(m, 8, 8, 0);  // pages of 8 tokens, shared by a and b
    glint_state *sa = glint_state_in_pool(pool), *sb = glint_state_in_pool(pool), *sw = glint_state_new(whole, 32);
    CHECK(pool && !glint_state_reserve(sa, 32) && !glint_state_reserve(sb, 32), "%s: pool: %s", dir,
          glint_last_error());
    CHECK(!glint_forward(m, sa, ids, n_a, solo, 1) && !glint_forward(m, sb, ids + 3, n_b, solo + (size_t)n_a * V, 1) &&
              !glint_forward(whole, sw, ids, n_a, ref, 1),
          "%s: forward: %s", dir, glint_last_error());
    double worst = 0, top = 0;
    for (size_t i = 0; i < (size_t)n_a * V; i++) {
        worst = fmax(worst, fabs(solo[i] - ref[i]));
        top = fmax(top, fabs(ref[i]));
    }
    CHECK(worst <= 1e-5 * top, "%s: %d ranks' logits differ from one's by %.3g of max|logit|", dir, tp, worst / top);
    // Both again in one batch, with greedy answers for every row of a and the last row of b.
    glint_state_truncate(sa, 0), glint_state_truncate(sb, 0);  // gives the pages back
    CHECK(!glint_state_reserve(sa, 32) && !glint_state_reserve(sb, 32), "%s: pool", dir);
    int32_t greedy[16];
    glint_batch_item items[2] = {{sa, ids, n_a, both, 1, NULL, NULL, greedy, NULL, NULL, NULL, NULL},
                                 {sb, ids + 3, n_b, NULL, 0, NULL, NULL, greedy + n_a, NULL, NULL, NULL, NULL}};
    CHECK(!glint_forward_batch(m, items, 2), "%s: batch: %s", dir, glint_last_error());
    CHECK(!memcmp(both, solo, sizeof(float) * (size_t)n_a * V), "%s: batched rows differ from rows alone", dir);
    for (int t = 0; t < n_a; t++)
        CHECK(greedy[t] == glint_argmax(solo + (size_t)t * V, V), "%s: row %d greedy %d, argmax of its logits %d", dir,
              t, greedy[t], glint_argmax(solo + (size_t)t * V, V));
    CHECK(greedy[n_a] == glint_argmax(solo + (size_t)(n_a + n_b - 1) * V, V), "%s: last row of b: greedy %d", dir,
          greedy[n_a]);
    glint_state_free(m, sa), glint_state_free(m, sb), glint_state_free(whole, sw);
    glint_kv_pool_free(m, pool);
    free(solo), free(both), free(ref);
    glint_model_free(m);
    glint_model_free(whole);
}

// A backend that, like a device, keeps its own copies of the weights: the column parts the model cut
// for it must then be freed at upload (ASan sees a leak or a use after free otherwise), and the
// logits must not change. Like the CUDA backend it takes weights on several threads at once
// (prepare_threads); it notes which threads called each instance, and can refuse its n-th weight.
static void *device_copies[1 << 16];
static size_t n_device_copies;
static pthread_mutex_t copies_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t callers_changed = PTHREAD_COND_INITIALIZER;
static struct {
    const glint_backend *be;
    pthread_t thread;
} prepare_callers[64];
static int n_prepare_callers, prepare_calls, refuse_call;  // refuse_call 0: none

static int callers_of(const glint_backend *be) {
    int n = 0;
    for (int i = 0; i < n_prepare_callers; i++) n += prepare_callers[i].be == be;
    return n;
}

static void *device_copy(const void *host, size_t bytes) {
    void *copy = malloc(bytes ? bytes : 1);
    if (copy && bytes) memcpy(copy, host, bytes);
    pthread_mutex_lock(&copies_lock);
    if (copy && n_device_copies < sizeof device_copies / sizeof device_copies[0]) device_copies[n_device_copies++] = copy;
    pthread_mutex_unlock(&copies_lock);
    return copy;
}

static int copying_prepare(glint_backend *be, glint_weight *w) {
    pthread_mutex_lock(&copies_lock);
    int seen = 0;
    for (int i = 0; i < n_prepare_callers; i++)
        seen |= prepare_callers[i].be == be && pthread_equal(prepare_callers[i].thread, pthread_self());
    if (!seen && n_prepare_callers < 64) {
        prepare_callers[n_prepare_callers].be = be, prepare_callers[n_prepare_callers++].thread = pthread_self();
        pthread_cond_broadcast(&callers_changed);
    }
    // While one thread alone has called this instance, each call waits (50 ms at most) for another
    // to come: a load on several threads is seen as such however the threads are scheduled.
    if (callers_of(be) < 2) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 50000000;
        if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
        while (callers_of(be) < 2 && !pthread_cond_timedwait(&callers_changed, &copies_lock, &until)) {
        }
    }
    const int call = ++prepare_calls;
    pthread_mutex_unlock(&copies_lock);
    if (call == refuse_call) {
        glint_set_error("test backend: refusing weight %s", w->name ? w->name : "?");
        return -1;
    }
    const size_t n = (size_t)w->rows * (size_t)w->cols;
    switch (w->format) {
    case GLINT_WFMT_DENSE: w->data = device_copy(w->data, n * glint_dtype_size(w->dtype)); return 0;
    case GLINT_WFMT_NVFP4:
        w->data = device_copy(w->data, n / 2);
        w->scales = device_copy(w->scales, n / 16);
        return 0;
    default: glint_set_error("test backend: format %d not copied", w->format); return -1;
    }
}

static glint_backend *copying_rank(int rank, void *ctx) {
    glint_backend *be = cpu_test_rank(rank, ctx);
    if (be) be->prepare_weight = copying_prepare, be->prepare_threads = 4;
    return be;
}

static void test_weights_on_a_device(const char *dir) {
    glint_load_options in_place = {.tp_size = 2, .rank_backend = cpu_test_rank};
    glint_load_options copied = {.tp_size = 2, .rank_backend = copying_rank};
    glint_model *a = glint_model_load(dir, &in_place, NULL);
    n_prepare_callers = 0;
    glint_model *b = glint_model_load(dir, &copied, NULL);
    CHECK(a && b, "%s: load: %s", dir, glint_last_error());
    if (a && b) {
        CHECK(b->ranks[0]->n_weight_copies == 0 && a->ranks[0]->n_weight_copies > 0,
              "%s: column parts kept: %zu with a copying backend, %zu in place", dir, b->ranks[0]->n_weight_copies,
              a->ranks[0]->n_weight_copies);
        const int V = a->cfg.vocab_size;
        int32_t ids[6] = {1, 17, 33, 5, 9, 2};
        float *la = malloc(sizeof(float) * 6 * (size_t)V), *lb = malloc(sizeof(float) * 6 * (size_t)V);
        glint_state *sa = glint_state_new(a, 8), *sb = glint_state_new(b, 8);
        CHECK(!glint_forward(a, sa, ids, 6, la, 1) && !glint_forward(b, sb, ids, 6, lb, 1) &&
                  !memcmp(la, lb, sizeof(float) * 6 * (size_t)V),
              "%s: logits with the weights copied differ from the weights in place", dir);
        glint_state_free(a, sa), glint_state_free(b, sb);
        free(la), free(lb);
    }
    if (b)
        for (int r = 0; r < 2; r++)
            CHECK(callers_of(b->ranks[r]->be) > 1, "%s: rank %d's weights taken on %d thread(s) of 4 upload threads",
                  dir, r, callers_of(b->ranks[r]->be));
    glint_model_free(a), glint_model_free(b);
    // a refusal on an upload thread reaches the caller with its message
    refuse_call = prepare_calls / 2, prepare_calls = 0, n_prepare_callers = 0;  // b's backends are gone
    glint_model *c = glint_model_load(dir, &copied, NULL);
    CHECK(!c && strstr(glint_last_error(), "test backend: refusing weight"),
          "%s: a refused weight fails the load with its message: %s", dir, c ? "(loaded)" : glint_last_error());
    glint_model_free(c);
    refuse_call = 0;
    for (size_t i = 0; i < n_device_copies; i++) free(device_copies[i]);
    n_device_copies = 0;
}

static void test_config_errors(const char *dir) {
    glint_load_options three = {.tp_size = 3, .rank_backend = cpu_test_rank};
    glint_model *m = glint_model_load(dir, &three, NULL);
    CHECK(!m && strstr(glint_last_error(), "num_attention_heads = 4 is not a multiple of 3"), "3 ranks: %s",
          m ? "loaded" : glint_last_error());
    glint_model_free(m);
    glint_load_options nine = {.tp_size = 9, .rank_backend = cpu_test_rank};
    m = glint_model_load(dir, &nine, NULL);
    CHECK(!m && strstr(glint_last_error(), "2 to 8 ranks"), "9 ranks: %s", m ? "loaded" : glint_last_error());
    glint_model_free(m);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_tp FOUR_HEAD_MODEL_DIR MODEL_DIR... (the last: BF16 / NVFP4 weights)\n");
        return 2;
    }
    test_parts();
    test_config_errors(argv[1]);
    test_weights_on_a_device(argv[argc - 1]);
    for (int i = 1; i < argc; i++) {
        test_forward(argv[i], 2);
        test_forward(argv[i], 4);
    }
    printf("%s\n", failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
