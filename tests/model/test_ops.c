// CPU kernels: every ISA path (generic, AVX2, AVX-512 where the machine has it) against the generic
// reference, for every weight dtype, on shapes that exercise the vector tails; and F16/BF16 weights
// against F32 weights holding the same (exactly representable) values. Then row invariance: for
// every weight format and ISA path, row t of a T-row matmul is bitwise the matmul of that row alone.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "common/util.h"

static uint64_t rng = 88172645463325252ull;
static float uniform(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)(rng >> 40) / 16777216.0f * 2.0f - 1.0f;
}

// f32 -> f16 bits for values that are exact in f16 (we only feed such values).
static uint16_t f32_to_f16_exact(float f) {
    if (f == 0) return 0;
    uint16_t sign = f < 0 ? 0x8000 : 0;
    f = fabsf(f);
    int e;
    float m = frexpf(f, &e);  // f = m · 2^e, m in [0.5, 1)
    int exp16 = e - 1 + 15;
    uint16_t mant = (uint16_t)((m * 2.0f - 1.0f) * 1024.0f + 0.5f);
    return sign | (uint16_t)(exp16 << 10) | mant;
}

static int failures;

static void expect_close(const char *what, const float *a, const float *b, size_t n) {
    double worst = 0, scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= worst)) worst = d;
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    }
    int ok = worst / scale <= 1e-5;
    printf("%-52s rel %.2e %s\n", what, worst / scale, ok ? "ok" : "FAIL");
    failures += !ok;
}

// Row invariance (exact batched decoding needs it): glint_cpu_matmul on T rows of x must give, for
// each row t, the same bits as on row t alone, for every weight format, ISA path and T.
static void row_invariance(glint_backend *be) {
    enum { N = 97, MAXK = 1040, MAXT = 130 };  // N odd and N·K > 65536 for the larger K: two threads
    const int stride = MAXK + 3;                // rows of x and y not packed
    float *x = malloc(sizeof(float) * (size_t)MAXT * stride), *y = malloc(sizeof(float) * (size_t)MAXT * (N + 5));
    float *w32 = malloc(sizeof(float) * N * MAXK), one[N];
    uint16_t *wb16 = malloc(2 * (size_t)N * MAXK), *wh16 = malloc(2 * (size_t)N * MAXK);
    uint16_t *gscales = malloc(2 * (size_t)N * (MAXK / 32 + 1));
    uint8_t *w8 = malloc((size_t)N * MAXK), *codes = malloc((size_t)N * MAXK / 2), *bscales = malloc((size_t)N * MAXK / 16);
    float *fscales = malloc(sizeof(float) * ((N + 31) / 32) * (MAXK / 32 + 1));
    int32_t *qweight = malloc(sizeof(int32_t) * (MAXK / 8) * N), *qzeros = malloc(sizeof(int32_t) * ((MAXK / 32 + 1) * N / 8 + 64));
    for (int i = 0; i < MAXT * stride; i++) x[i] = uniform() * (i % 5 == 0 ? 40.0f : 1.0f);
    for (int i = 0; i < N * MAXK; i++) {
        w32[i] = uniform();
        wb16[i] = glint_f32_to_bf16(w32[i]);
        wh16[i] = f32_to_f16_exact(roundf(w32[i] * 256.0f) / 256.0f);
        w8[i] = (uint8_t)(rng >> 32);
        if ((w8[i] & 0x7f) == 0x7f) w8[i] = 0x38;
    }
    for (int i = 0; i < N * MAXK / 2; i++) codes[i] = (uint8_t)(rng >> 24), uniform();
    for (int i = 0; i < N * MAXK / 16; i++) bscales[i] = (uint8_t)(0x08 + (rng >> 40) % 0x60), uniform();
    for (int i = 0; i < ((N + 31) / 32) * (MAXK / 32 + 1); i++) fscales[i] = 0.001f * (float)(1 + i % 7);
    for (int i = 0; i < (MAXK / 8) * N; i++) qweight[i] = (int32_t)(rng >> 16), uniform();
    for (int i = 0; i < (MAXK / 32 + 1) * N / 8 + 64; i++) qzeros[i] = (int32_t)(rng >> 20), uniform();
    for (int i = 0; i < N * (MAXK / 32 + 1); i++) gscales[i] = f32_to_f16_exact(0.0625f * (float)(1 + i % 3));
    const int Ts[] = {1, 2, 3, 4, 5, 16, 33, 64, 130};
    const char *isas[] = {"generic", "avx2", "avx512-bf16", "best"};
    struct {
        glint_weight w;
        int64_t Ks[3];
    } cases[] = {
        {{.dtype = GLINT_DTYPE_F32, .data = w32, .name = "F32"}, {203, 1040, 0}},
        {{.dtype = GLINT_DTYPE_BF16, .data = wb16, .name = "BF16"}, {203, 1040, 0}},
        {{.dtype = GLINT_DTYPE_F16, .data = wh16, .name = "F16"}, {203, 1040, 0}},
        {{.dtype = GLINT_DTYPE_F8_E4M3, .data = w8, .name = "F8_E4M3"}, {203, 1040, 0}},
        {{.format = GLINT_WFMT_NVFP4, .dtype = GLINT_DTYPE_U8, .data = codes, .scales = bscales,
          .scales_dtype = GLINT_DTYPE_F8_E4M3, .global_scale = 0.75f, .block = 16, .name = "NVFP4"},
         {80, 384, 1040}},
        {{.format = GLINT_WFMT_FP8_BLOCK, .dtype = GLINT_DTYPE_F8_E4M3, .data = w8, .scales = fscales,
          .scales_dtype = GLINT_DTYPE_F32, .block = 32, .name = "FP8-block 32"},
         {80, 1040, 0}},
        {{.format = GLINT_WFMT_FP8_BLOCK, .dtype = GLINT_DTYPE_F8_E4M3, .data = w8, .scales = fscales,
          .scales_dtype = GLINT_DTYPE_F32, .block = 128, .name = "FP8-block 128"},
         {200, 1040, 0}},
        {{.format = GLINT_WFMT_FP8_BLOCK, .dtype = GLINT_DTYPE_F8_E4M3, .data = w8, .scales = fscales,
          .scales_dtype = GLINT_DTYPE_F32, .block = 48, .name = "FP8-block 48"},
         {1040, 0, 0}},
        {{.format = GLINT_WFMT_FP8_BLOCK, .dtype = GLINT_DTYPE_F8_E4M3, .data = w8, .scales = fscales,
          .scales_dtype = GLINT_DTYPE_F32, .block = 36, .name = "FP8-block 36"},
         {1040, 0, 0}},
        {{.format = GLINT_WFMT_GPTQ_INT4, .dtype = GLINT_DTYPE_I32, .data = qweight, .scales = gscales,
          .scales_dtype = GLINT_DTYPE_F16, .block = 32, .zeros = qzeros, .name = "GPTQ"},
         {96, 1024, 0}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int ki = 0; ki < 3 && cases[c].Ks[ki]; ki++)
            for (int i = 0; i < 4; i++) {
                glint_weight W = cases[c].w;
                W.rows = N, W.cols = cases[c].Ks[ki];
                glint_cpu_select_kernels(isas[i]);
                int bad_t = -1, bad_T = 0;
                for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0] && bad_t < 0; ti++) {
                    const int T = Ts[ti];
                    for (int k = 0; k < T * (N + 5); k++) y[k] = NAN;
                    glint_cpu_matmul(be, y, N + 5, x, stride, T, &W);
                    for (int t = 0; t < T && bad_t < 0; t++) {
                        glint_cpu_matmul(be, one, N, x + (size_t)t * stride, stride, 1, &W);
                        if (memcmp(one, y + (size_t)t * (N + 5), sizeof one)) bad_t = t, bad_T = T;
                    }
                }
                char what[96];
                snprintf(what, sizeof what, "row invariance %s K=%lld, %s kernels (%s)", W.name, (long long)W.cols,
                         isas[i], glint_cpu_isa());
                if (bad_t < 0) printf("%-64s bitwise ok\n", what);
                else printf("%-64s FAIL: row %d of T=%d differs from T=1\n", what, bad_t, bad_T);
                failures += bad_t >= 0;
            }
    free(x), free(y), free(w32), free(wb16), free(wh16), free(gscales), free(w8), free(codes), free(bscales);
    free(fscales), free(qweight), free(qzeros);
}

int main(void) {
    glint_backend *be = glint_backend_cpu(2);
    const int N = 37, K = 203, T = 3;  // odd sizes: vector tails everywhere
    float *w32 = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * T * K);
    uint16_t *w16 = malloc(2 * (size_t)N * K), *wb16 = malloc(2 * (size_t)N * K);
    uint8_t *w8 = malloc((size_t)N * K);
    float *w8_as_f32 = malloc(sizeof(float) * N * K);
    for (int i = 0; i < N * K; i++) {
        // a multiple of 2^-8 in [-1, 1): exact in BF16 (8 bits of mantissa) and F16
        w32[i] = roundf(uniform() * 128.0f) / 256.0f;
        wb16[i] = glint_f32_to_bf16(w32[i]);
        w16[i] = f32_to_f16_exact(w32[i]);
        w8[i] = (uint8_t)(rng >> 32);
        if ((w8[i] & 0x7f) == 0x7f) w8[i] = 0x38;  // avoid the NaN encoding
        w8_as_f32[i] = glint_fp8e4m3_to_f32(w8[i]);
    }
    for (int i = 0; i < T * K; i++) x[i] = uniform();
    glint_weight W32 = {.dtype = GLINT_DTYPE_F32, .rows = N, .cols = K, .data = w32, .name = "w32"};
    glint_weight WB = {.dtype = GLINT_DTYPE_BF16, .rows = N, .cols = K, .data = wb16, .name = "wbf16"};
    glint_weight WH = {.dtype = GLINT_DTYPE_F16, .rows = N, .cols = K, .data = w16, .name = "wf16"};
    glint_weight W8 = {.dtype = GLINT_DTYPE_F8_E4M3, .rows = N, .cols = K, .data = w8, .name = "wf8"};
    glint_weight W8F = {.dtype = GLINT_DTYPE_F32, .rows = N, .cols = K, .data = w8_as_f32, .name = "w8f32"};
    float ref[T * N], got[T * N], ref8[T * N];
    glint_cpu_select_kernels("generic");
    glint_cpu_matmul(be, ref, N, x, K, T, &W32);
    glint_cpu_matmul(be, ref8, N, x, K, T, &W8F);
    const char *isas[] = {"generic", "avx2", "avx512-bf16", "best"};
    for (int i = 0; i < 4; i++) {
        glint_cpu_select_kernels(isas[i]);
        char what[96];
        const glint_weight *ws[] = {&W32, &WB, &WH};
        for (int d = 0; d < 3; d++) {
            glint_cpu_matmul(be, got, N, x, K, T, ws[d]);
            snprintf(what, sizeof what, "matmul %s weights, %s kernels (%s)", glint_dtype_name(ws[d]->dtype), isas[i],
                     glint_cpu_isa());
            expect_close(what, got, ref, (size_t)T * N);
        }
        glint_cpu_matmul(be, got, N, x, K, T, &W8);
        snprintf(what, sizeof what, "matmul F8_E4M3 weights, %s kernels", isas[i]);
        expect_close(what, got, ref8, (size_t)T * N);
        // axpy: y += a · row for each dtype
        float y_ref[K], y[K];
        for (int d = 0; d < 3; d++) {
            for (int k = 0; k < K; k++) y_ref[k] = y[k] = x[k];
            for (int k = 0; k < K; k++) y_ref[k] += 0.75f * w32[k];
            glint_cpu_axpy(y, ws[d]->data, ws[d]->dtype, 0.75f, K);
            snprintf(what, sizeof what, "axpy %s row, %s kernels", glint_dtype_name(ws[d]->dtype), isas[i]);
            expect_close(what, y, y_ref, K);
        }
        float dot_ref = 0;
        for (int k = 0; k < K; k++) dot_ref += x[k] * x[K + k];
        float dot = glint_cpu_dot_f32(x, x + K, K);
        snprintf(what, sizeof what, "dot f32, %s kernels", isas[i]);
        expect_close(what, &dot, &dot_ref, 1);
    }
    free(w32), free(x), free(w16), free(wb16), free(w8), free(w8_as_f32);

    // Quantized formats: every ISA against the same weights dequantized to F32 (generic kernels).
    const int64_t Ks[] = {16, 48, 80, 96, 208, 256, 768, 1040};
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
        const int64_t QK = Ks[ki], QN = 40;
        uint8_t *codes = malloc((size_t)(QN * QK)), *bscales = malloc((size_t)(QN * QK / 16));
        const int64_t fp8_blocks = ((QN + 31) / 32) * ((QK + 31) / 32), groups = (QK + 31) / 32;  // block/group 32
        float *fscales = malloc(sizeof(float) * fp8_blocks), *deq = malloc(sizeof(float) * QN * QK);
        float *qx = malloc(sizeof(float) * 3 * QK), qref[3 * 40], qgot[3 * 40];
        int32_t *qweight = malloc(sizeof(int32_t) * (QK / 8) * QN), *qzeros = malloc(sizeof(int32_t) * groups * QN / 8);
        uint16_t *gscales = malloc(sizeof(uint16_t) * groups * QN);
        for (int64_t i = 0; i < QN * QK; i++) {
            codes[i] = (uint8_t)(rng >> 24), uniform();
            if ((codes[i] & 0x7f) == 0x7f) codes[i] = 0x31;
        }
        for (int64_t i = 0; i < QN * QK / 16; i++) bscales[i] = (uint8_t)(0x20 + (i * 7) % 40);
        for (int64_t i = 0; i < fp8_blocks; i++) fscales[i] = 0.01f * (float)(1 + i % 5);
        for (int64_t i = 0; i < (QK / 8) * QN; i++) qweight[i] = (int32_t)(rng >> 16), uniform();
        for (int64_t i = 0; i < groups * QN / 8; i++) qzeros[i] = 0x77777777;
        for (int64_t i = 0; i < groups * QN; i++) gscales[i] = f32_to_f16_exact(0.0625f * (float)(1 + i % 3));
        for (int64_t i = 0; i < 3 * QK; i++) qx[i] = uniform();
        glint_weight qws[3] = {
            {.format = GLINT_WFMT_NVFP4, .dtype = GLINT_DTYPE_U8, .rows = QN, .cols = QK, .data = codes,
             .scales = bscales, .scales_dtype = GLINT_DTYPE_F8_E4M3, .global_scale = 0.75f, .block = 16, .name = "nvfp4"},
            {.format = GLINT_WFMT_FP8_BLOCK, .dtype = GLINT_DTYPE_F8_E4M3, .rows = QN, .cols = QK, .data = codes,
             .scales = fscales, .scales_dtype = GLINT_DTYPE_F32, .block = 32, .name = "fp8-block"},
            {.format = GLINT_WFMT_GPTQ_INT4, .dtype = GLINT_DTYPE_I32, .rows = QN, .cols = QK, .data = qweight,
             .scales = gscales, .scales_dtype = GLINT_DTYPE_F16, .block = 32, .zeros = qzeros, .name = "gptq"}};
        for (int f = 0; f < 3; f++) {
            if (qws[f].format == GLINT_WFMT_GPTQ_INT4 && QK % 32) continue;  // whole groups only
            glint_cpu_select_kernels("generic");
            for (int64_t r = 0; r < QN; r++) glint_cpu_weight_row_f32(&qws[f], r, deq + r * QK);
            glint_weight dense = {.dtype = GLINT_DTYPE_F32, .rows = QN, .cols = QK, .data = deq, .name = "deq"};
            glint_cpu_matmul(be, qref, QN, qx, (int)QK, 3, &dense);
            for (int i = 0; i < 4; i++) {
                glint_cpu_select_kernels(isas[i]);
                glint_cpu_matmul(be, qgot, QN, qx, (int)QK, 3, &qws[f]);
                char what[96];
                snprintf(what, sizeof what, "matmul %s K=%lld, %s kernels", qws[f].name, (long long)QK, isas[i]);
                expect_close(what, qgot, qref, 3 * QN);
            }
        }
        free(codes), free(bscales), free(fscales), free(deq), free(qx), free(qweight), free(qzeros), free(gscales);
    }
    row_invariance(be);
    printf("%s\n", failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
