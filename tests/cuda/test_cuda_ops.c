// Every op of the CUDA backend against the CPU reference on random inputs, tiny shapes and the real
// GLM-5.1 shapes, every weight format. GPU outputs are poisoned with NaN before each op, so an
// element the kernel forgot to write fails the comparison. Needs a GPU (scripts/gpu-test.sh).
//   test_cuda_ops [--quick]     --quick skips the large shapes (for compute-sanitizer)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "common/sampling.h"
#include "common/util.h"

static const double TOLERANCE = 1e-3;  // max|Δ| / max|ref|; the math is FP32, expect far better
// T > 64 runs BF16 and NVFP4 weights on tensor cores with x split into hi + lo BF16 parts (relative
// error <= 2^-16), held to TOLERANCE like the FP32 paths. With GLINT_CUDA_TC=bf16, x is rounded to
// BF16 (8 significant bits: <= 2^-8 relative per element) and FP8 / FP8-block weights join, times
// their scale rounded to BF16 too.
static const double FAST_TC_TOLERANCE = 1e-2;
static double prefill_tolerance = 1e-3;  // for T > 64; main sets it from GLINT_CUDA_TC
static double tolerance = 1e-3;          // the one check_rows applies
static int prefill_check;                // the checks now compare T > 64 rows
static double worst_tc_error;
static glint_backend *cpu, *gpu;
static int failures, checks;
static double worst_error;

// ---------------------------------------------------------------------------------------------
// Random data, device copies, comparison

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(void) { return (float)(next_u32() & 0xffffff) / 8388608.0f - 1.0f; }  // [-1, 1)

static float *rand_floats(size_t n, float amplitude) {
    float *v = malloc(sizeof *v * (n ? n : 1));
    for (size_t i = 0; i < n; i++) v[i] = frand() * amplitude;
    return v;
}

static void *to_device(const void *host, size_t bytes) {
    void *d = gpu->alloc(gpu, bytes, "test");
    if (d && host) gpu->upload(gpu, d, host, bytes);
    return d;
}

static void poison(float *dev, size_t n) {
    float *nan = malloc(sizeof *nan * (n ? n : 1));
    for (size_t i = 0; i < n; i++) nan[i] = NAN;
    gpu->upload(gpu, dev, nan, sizeof *nan * n);
    free(nan);
}

static float *from_device(const float *dev, size_t n) {
    float *h = malloc(sizeof *h * (n ? n : 1));
    gpu->download(gpu, h, dev, n);
    return h;
}

// Compares rows x cols elements laid out `stride` apart; NaN anywhere fails.
static int check_rows(const char *what, const float *got, const float *ref, size_t rows, size_t cols, size_t stride) {
    double max_ref = 0, max_diff = 0;
    size_t nan_got = 0, nan_ref = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            double a = got[r * stride + c], b = ref[r * stride + c];
            nan_got += isnan(a), nan_ref += isnan(b);
            if (fabs(b) > max_ref) max_ref = fabs(b);
            double d = fabs(a - b);
            if (!(d <= max_diff)) max_diff = d;  // NaN propagates
        }
    double err = max_ref > 0 ? max_diff / max_ref : max_diff;
    int ok = err <= tolerance;
    checks++;
    if (ok && !prefill_check && err > worst_error) worst_error = err;
    if (ok && prefill_check && err > worst_tc_error) worst_tc_error = err;
    if (!ok) failures++;
    printf("  %-62s max|Δ|/max|ref| = %.2e %s\n", what, err, ok ? "ok" : "FAIL");
    if (nan_got || nan_ref) printf("    NaN: %zu in the CUDA result, %zu in the CPU reference\n", nan_got, nan_ref);
    return ok;
}

static int check(const char *what, const float *got, const float *ref, size_t n) {
    return check_rows(what, got, ref, 1, n, n);
}

static void expect(int cond, const char *what) {
    checks++;
    if (!cond) failures++;
    printf("  %-62s %s\n", what, cond ? "ok" : "FAIL");
}

// ---------------------------------------------------------------------------------------------
// Weights in every format: a host copy for the CPU and a prepared (device) copy for the GPU.

typedef struct {
    glint_weight host, dev;
} test_weight;

static uint8_t rand_fp8(void) {  // E4M3 with exponent 4..9: magnitudes ~1/8 .. 4, no NaN
    return (uint8_t)(((next_u32() & 1) << 7) | ((4 + next_u32() % 6) << 3) | (next_u32() & 7));
}
static uint16_t rand_f16(int lo_exp, int hi_exp) {
    return (uint16_t)(((next_u32() & 1) << 15) | ((uint32_t)(lo_exp + (int)(next_u32() % (uint32_t)(hi_exp - lo_exp))) << 10) |
                      (next_u32() & 0x3ff));
}

static const char *format_name(glint_weight_format f, glint_dtype d) {
    if (f == GLINT_WFMT_NVFP4) return "NVFP4";
    if (f == GLINT_WFMT_FP8_BLOCK) return "FP8-block";
    if (f == GLINT_WFMT_GPTQ_INT4) return "GPTQ-int4";
    return glint_dtype_name(d);
}

// Host data for a weight; `shared_data` (if not NULL) is used instead of new codes (MoE experts).
static glint_weight make_host_weight(glint_weight_format format, glint_dtype dtype, int64_t rows, int64_t cols,
                                     int block, const void *shared_data) {
    glint_weight w = {.dtype = dtype, .rows = rows, .cols = cols, .format = format, .name = "test", .block = block};
    const size_t n = (size_t)rows * (size_t)cols;
    void *data = NULL;
    if (format == GLINT_WFMT_DENSE) {
        data = malloc(n * glint_dtype_size(dtype));
        for (size_t i = 0; i < n; i++) switch (dtype) {
            case GLINT_DTYPE_F32: ((float *)data)[i] = frand(); break;
            case GLINT_DTYPE_BF16: ((uint16_t *)data)[i] = glint_f32_to_bf16(frand()); break;
            case GLINT_DTYPE_F16: ((uint16_t *)data)[i] = rand_f16(10, 16); break;
            default: ((uint8_t *)data)[i] = rand_fp8(); break;
            }
    } else if (format == GLINT_WFMT_NVFP4) {
        w.dtype = GLINT_DTYPE_U8, w.scales_dtype = GLINT_DTYPE_F8_E4M3, w.global_scale = 0.05f, w.block = 16;
        if (!shared_data) {
            data = malloc(n / 2);
            for (size_t i = 0; i < n / 2; i++) ((uint8_t *)data)[i] = (uint8_t)next_u32();
        }
        uint8_t *sc = malloc(n / 16);
        for (size_t i = 0; i < n / 16; i++) sc[i] = (uint8_t)(((5 + next_u32() % 4) << 3) | (next_u32() & 7));
        w.scales = sc;
    } else if (format == GLINT_WFMT_FP8_BLOCK) {
        w.dtype = GLINT_DTYPE_F8_E4M3, w.scales_dtype = GLINT_DTYPE_F32;
        if (!shared_data) {
            data = malloc(n);
            for (size_t i = 0; i < n; i++) ((uint8_t *)data)[i] = rand_fp8();
        }
        const size_t nb = (size_t)((rows + block - 1) / block) * (size_t)((cols + block - 1) / block);
        float *sc = malloc(sizeof(float) * nb);
        for (size_t i = 0; i < nb; i++) sc[i] = 0.01f * (1.0f + 0.5f * frand());
        w.scales = sc;
    } else {  // GPTQ: qweight [cols/8, rows], qzeros [groups, rows/8], scales [groups, rows]
        w.dtype = GLINT_DTYPE_I32, w.scales_dtype = dtype;  // dtype argument: the scales' type
        const size_t groups = (size_t)((cols + block - 1) / block);
        data = malloc(n / 8 * 4);
        for (size_t i = 0; i < n / 8; i++) ((uint32_t *)data)[i] = next_u32() ^ (next_u32() << 16);
        uint32_t *z = malloc(groups * (size_t)rows / 8 * 4);
        for (size_t i = 0; i < groups * (size_t)rows / 8; i++) z[i] = next_u32() ^ (next_u32() << 16);
        uint16_t *sc = malloc(groups * (size_t)rows * 2);
        for (size_t i = 0; i < groups * (size_t)rows; i++)
            sc[i] = dtype == GLINT_DTYPE_BF16 ? glint_f32_to_bf16(0.01f * (1.0f + frand() * 0.5f)) : rand_f16(7, 10);
        w.zeros = z, w.scales = sc;
    }
    w.data = shared_data ? shared_data : data;
    return w;
}

static test_weight prepare(glint_weight host) {
    test_weight t = {.host = host, .dev = host};
    if (gpu->prepare_weight(gpu, &t.dev)) {
        fprintf(stderr, "prepare_weight: %s\n", glint_last_error());
        exit(1);
    }
    return t;
}

static test_weight make_weight(glint_weight_format format, glint_dtype dtype, int64_t rows, int64_t cols, int block) {
    return prepare(make_host_weight(format, dtype, rows, cols, block, NULL));
}

static void free_host_weight(glint_weight *w, int keep_data) {
    if (!keep_data) free((void *)w->data);
    free((void *)w->scales), free((void *)w->zeros);
}

// The tolerance of the checks that follow, for products of T rows.
static void use_tolerance_for(int T) {
    prefill_check = T > 64;
    tolerance = prefill_check ? prefill_tolerance : TOLERANCE;
}

// ---------------------------------------------------------------------------------------------
// Ops

// y[T, N] (rows y_stride apart) = x[T, K] (rows x_stride apart) · W^T on both backends.
static void test_matmul_case(const test_weight *w, int T, int x_stride, int y_stride, int x_offset) {
    const int64_t N = w->host.rows, K = w->host.cols;
    const size_t xn = (size_t)T * x_stride + x_offset, yn = (size_t)T * y_stride;
    float *x = rand_floats(xn, 1.0f), *ref = malloc(sizeof(float) * yn);
    for (size_t i = 0; i < yn; i++) ref[i] = NAN;
    cpu->matmul(cpu, ref, y_stride, x + x_offset, x_stride, T, &w->host);
    float *dx = to_device(x, sizeof(float) * xn), *dy = to_device(NULL, sizeof(float) * yn);
    poison(dy, yn);
    gpu->matmul(gpu, dy, y_stride, dx + x_offset, x_stride, T, &w->dev);
    float *got = from_device(dy, yn);
    char what[160];
    snprintf(what, sizeof what, "matmul %-9s [%lld x %lld] T=%d x_stride %d%s", format_name(w->host.format, w->host.dtype),
             (long long)N, (long long)K, T, x_stride, x_offset ? " (unaligned x)" : "");
    use_tolerance_for(T);
    check_rows(what, got, ref, (size_t)T, (size_t)N, (size_t)y_stride);
    use_tolerance_for(0);
    // the poisoned padding between output rows stays untouched
    int pad_ok = 1;
    for (int t = 0; t < T && pad_ok; t++)
        for (int64_t c = N; c < y_stride; c++) pad_ok &= isnan(got[(size_t)t * y_stride + c]);
    if (y_stride > N) expect(pad_ok, "  ... and the output padding is not written");
    gpu->free(gpu, dx), gpu->free(gpu, dy);
    free(x), free(ref), free(got);
}

// Every weight format the kernels take, with the block (group) size used for it.
typedef struct {
    glint_weight_format f;
    glint_dtype d;
    int block;
} test_format;
static const test_format ALL_FORMATS[] = {
    {GLINT_WFMT_DENSE, GLINT_DTYPE_F32, 0},       {GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 0},
    {GLINT_WFMT_DENSE, GLINT_DTYPE_F16, 0},       {GLINT_WFMT_DENSE, GLINT_DTYPE_F8_E4M3, 0},
    {GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 16},       {GLINT_WFMT_FP8_BLOCK, GLINT_DTYPE_F8_E4M3, 128},
    {GLINT_WFMT_GPTQ_INT4, GLINT_DTYPE_F16, 128}, {GLINT_WFMT_GPTQ_INT4, GLINT_DTYPE_BF16, 32}};
enum { N_FORMATS = sizeof ALL_FORMATS / sizeof ALL_FORMATS[0] };

static void test_matmul(int quick) {
    printf("matmul\n");
    const test_format *formats = ALL_FORMATS;
    for (size_t f = 0; f < N_FORMATS; f++) {
        // tiny: odd row count, K not a multiple of the vector width for dense (scalar path)
        const int64_t tiny_k = formats[f].f == GLINT_WFMT_DENSE ? 100 : formats[f].f == GLINT_WFMT_NVFP4 ? 48 : 96;
        const int tiny_block = formats[f].f == GLINT_WFMT_FP8_BLOCK ? 32 : formats[f].block;
        test_weight w = make_weight(formats[f].f, formats[f].d, formats[f].f == GLINT_WFMT_GPTQ_INT4 ? 40 : 37, tiny_k,
                                    tiny_block);
        const int Ts[] = {1, 3, 8, 13, 40, 64, 65};
        for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) test_matmul_case(&w, Ts[i], (int)tiny_k, (int)w.host.rows, 0);
        test_matmul_case(&w, 2, (int)tiny_k + 3, (int)w.host.rows + 5, 1);
        free_host_weight(&w.host, 0);
        if (quick) continue;
        // real: q_a_proj [2048, 6144]; decode, a few tokens, prefill; strided output as in the model
        w = make_weight(formats[f].f, formats[f].d, 2048, 6144, formats[f].block);
        test_matmul_case(&w, 1, 6144, 2048, 0);
        test_matmul_case(&w, 5, 6144, 4096, 0);
        test_matmul_case(&w, 70, 6144, 2048, 0);
        test_matmul_case(&w, 1, 6145, 2048, 1);
        free_host_weight(&w.host, 0);
    }
}

// Prefill (T > 64: tensor cores for BF16 / FP8 / FP8-block / NVFP4, FP32 tiles for the rest) at
// GLM-5.1 shapes: q_a-like [6144 x 2048]... both ways round, T in {65, 100, 512, 4096}, odd row
// counts and K tails, strided and unaligned activations, poisoned outputs.
static void test_matmul_prefill(int quick) {
    printf("matmul prefill (T > 64)\n");
    const test_format formats[] = {
        {GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 0},    {GLINT_WFMT_FP8_BLOCK, GLINT_DTYPE_F8_E4M3, 128},
        {GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 16},     {GLINT_WFMT_DENSE, GLINT_DTYPE_F8_E4M3, 0},
        {GLINT_WFMT_DENSE, GLINT_DTYPE_F16, 0},     {GLINT_WFMT_GPTQ_INT4, GLINT_DTYPE_BF16, 128}};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        const int main_format = f < 3;
        // small: K tails (not a multiple of the 32-wide k tile), rows not a multiple of 128
        const int64_t odd_k = formats[f].f == GLINT_WFMT_GPTQ_INT4 ? 384 : formats[f].f == GLINT_WFMT_NVFP4 ? 208 : 200;
        test_weight w = make_weight(formats[f].f, formats[f].d, formats[f].f == GLINT_WFMT_GPTQ_INT4 ? 200 : 203, odd_k,
                                    formats[f].f == GLINT_WFMT_FP8_BLOCK ? 32 : formats[f].block);
        test_matmul_case(&w, 65, (int)odd_k, (int)w.host.rows, 0);
        test_matmul_case(&w, 129, (int)odd_k + 5, (int)w.host.rows + 3, 1);
        free_host_weight(&w.host, 0);
        if (quick) continue;
        w = make_weight(formats[f].f, formats[f].d, 6144, 2048, formats[f].block);
        test_matmul_case(&w, 100, 2048, 6144, 0);
        // T >= 256: quantized weights dequantized for cuBLAS (plain FP8 too)
        if (main_format || formats[f].d == GLINT_DTYPE_F8_E4M3) test_matmul_case(&w, 512, 2048, 6160, 0);
        free_host_weight(&w.host, 0);
        w = make_weight(formats[f].f, formats[f].d, 2048, 6144, formats[f].block);
        test_matmul_case(&w, 65, 6144, 2048, 0);
        if (main_format) test_matmul_case(&w, 512, 6145, 2048, 1);
        free_host_weight(&w.host, 0);
        if (!main_format) continue;
        w = make_weight(formats[f].f, formats[f].d, 3000, 2048, formats[f].block);  // lm_head-like: a few thousand rows
        test_matmul_case(&w, 4096, 2048, 3000, 0);
        free_host_weight(&w.host, 0);
    }
}

// Row invariance: row t of a T-row product is bitwise the product of row t alone, for every T the
// server batches (decode rows, T <= 64) and every weight format.
static void test_row_invariance(void) {
    printf("row invariance (bitwise, T <= 64)\n");
    const test_format *formats = ALL_FORMATS;
    const int Ts[] = {1, 2, 3, 4, 5, 16, 32, 64}, N = 136, K = 2048, maxT = 64;
    float *x = rand_floats((size_t)maxT * K, 1.0f);
    float *dx = to_device(x, sizeof(float) * maxT * K), *dy = to_device(NULL, sizeof(float) * maxT * N);
    for (size_t f = 0; f < N_FORMATS; f++) {
        test_weight w = make_weight(formats[f].f, formats[f].d, N, K, formats[f].block);
        float *solo = malloc(sizeof(float) * maxT * N);
        for (int t = 0; t < maxT; t++) {
            gpu->matmul(gpu, dy, N, dx + (size_t)t * K, K, 1, &w.dev);
            gpu->download(gpu, solo + (size_t)t * N, dy, N);
        }
        int ok = 1;
        for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
            poison(dy, (size_t)maxT * N);
            gpu->matmul(gpu, dy, N, dx, K, Ts[i], &w.dev);
            float *got = from_device(dy, (size_t)Ts[i] * N);
            if (memcmp(got, solo, sizeof(float) * Ts[i] * N)) {
                ok = 0;
                printf("    T=%d differs from the rows alone\n", Ts[i]);
            }
            free(got);
        }
        char what[128];
        snprintf(what, sizeof what, "matmul %-9s [%d x %d] T in {1,2,3,4,5,16,32,64} = rows alone",
                 format_name(formats[f].f, formats[f].d), N, K);
        expect(ok, what);
        free(solo), free_host_weight(&w.host, 0);
    }
    gpu->free(gpu, dx), gpu->free(gpu, dy), free(x);
}

static void test_embed_norms(void) {
    printf("embed, rmsnorm, layernorm, silu_mul, add, copy_rows, rope\n");
    {
        test_weight table = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 300, 6144, 0);
        const int32_t ids[] = {0, 299, 17, 17, 150};
        const int T = 5, D = 6144;
        float *ref = malloc(sizeof(float) * T * D), *dx = to_device(NULL, sizeof(float) * T * D);
        cpu->embed(cpu, ref, &table.host, ids, T);
        poison(dx, (size_t)T * D);
        gpu->embed(gpu, dx, &table.dev, ids, T);
        float *got = from_device(dx, (size_t)T * D);
        check("embed BF16 [300 x 6144], 5 ids", got, ref, (size_t)T * D);
        free(ref), free(got), gpu->free(gpu, dx), free_host_weight(&table.host, 0);
    }
    // T, D, stride; 7168 (DeepSeek-V3's hidden size) is past the kernels' register rows: their loops
    const int shapes[][3] = {{3, 7, 9}, {4, 6144, 6144}, {5, 512, 576}, {2, 2048, 2048}, {2, 7168, 7200}, {1, 7168, 7168}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int T = shapes[i][0], D = shapes[i][1], stride = shapes[i][2];
        const size_t n = (size_t)T * stride;
        float *x = rand_floats(n, 3.0f), *ref = malloc(sizeof(float) * n);
        test_weight w = make_weight(GLINT_WFMT_DENSE, i % 2 ? GLINT_DTYPE_BF16 : GLINT_DTYPE_F32, D, 1, 0);
        test_weight b = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_F32, D, 1, 0);
        char what[128];
        // in place, as the model calls it: untouched columns past D must survive
        memcpy(ref, x, sizeof(float) * n);
        cpu->rmsnorm(cpu, ref, ref, stride, T, D, &w.host, 1e-5f);
        float *dx = to_device(x, sizeof(float) * n);
        gpu->rmsnorm(gpu, dx, dx, stride, T, D, &w.dev, 1e-5f);
        float *got = from_device(dx, n);
        snprintf(what, sizeof what, "rmsnorm in place T=%d D=%d stride %d", T, D, stride);
        check_rows(what, got, ref, (size_t)T, (size_t)stride, (size_t)stride);
        free(got);
        memcpy(ref, x, sizeof(float) * n);
        cpu->layernorm(cpu, ref, ref, stride, T, D, &w.host, &b.host, 1e-6f);
        gpu->upload(gpu, dx, x, sizeof(float) * n);
        gpu->layernorm(gpu, dx, dx, stride, T, D, &w.dev, &b.dev, 1e-6f);
        got = from_device(dx, n);
        snprintf(what, sizeof what, "layernorm in place T=%d D=%d stride %d", T, D, stride);
        check_rows(what, got, ref, (size_t)T, (size_t)stride, (size_t)stride);
        free(got), gpu->free(gpu, dx), free(x), free(ref);
        free_host_weight(&w.host, 0), free_host_weight(&b.host, 0);
    }
    {  // silu_mul on the side-by-side gate/up layout, add, copy_rows
        const int T = 6, I = 2048;
        float *gu = rand_floats((size_t)T * 2 * I, 4.0f), *ref = malloc(sizeof(float) * T * I);
        cpu->silu_mul(cpu, ref, gu, gu + I, 2 * I, T, I);
        float *dgu = to_device(gu, sizeof(float) * T * 2 * I), *dy = to_device(NULL, sizeof(float) * T * I);
        poison(dy, (size_t)T * I);
        gpu->silu_mul(gpu, dy, dgu, dgu + I, 2 * I, T, I);
        float *got = from_device(dy, (size_t)T * I);
        check("silu_mul T=6 I=2048 stride 4096", got, ref, (size_t)T * I);
        free(got);
        float *a = rand_floats((size_t)T * I, 1.0f);
        gpu->upload(gpu, dy, a, sizeof(float) * T * I);
        cpu->add(cpu, a, gu, (size_t)T * I);
        gpu->add(gpu, dy, dgu, (size_t)T * I);
        got = from_device(dy, (size_t)T * I);
        check("add 12288", got, a, (size_t)T * I);
        free(got);
        float *rows = malloc(sizeof(float) * T * 512);
        cpu->copy_rows(cpu, rows, 512, gu + 3, 2 * I, T, 512);
        poison(dy, (size_t)T * 512);
        gpu->copy_rows(gpu, dy, 512, dgu + 3, 2 * I, T, 512);
        got = from_device(dy, (size_t)T * 512);
        check("copy_rows 6 x 512 from stride 4096", got, rows, (size_t)T * 512);
        free(got), free(rows), free(a), free(gu), free(ref), gpu->free(gpu, dgu), gpu->free(gpu, dy);
    }
    {  // rope on MLA q heads (slice at the end of each head) and indexer heads (at the start)
        const int T = 5, H = 64, head_stride = 256, offset = 192, rope_dim = 64;
        const int32_t pos[] = {0, 7, 1000, 50000, 202000};
        float inv_freq[32];
        for (int i = 0; i < 32; i++) inv_freq[i] = (float)pow(1e6, -2.0 * i / 64.0);
        const size_t n = (size_t)T * H * head_stride;
        float *x = rand_floats(n, 1.0f), *ref = malloc(sizeof(float) * n);
        memcpy(ref, x, sizeof(float) * n);
        cpu->rope(cpu, ref, T, H, head_stride, H * head_stride, offset, rope_dim, pos, inv_freq, 1.3f);
        float *dx = to_device(x, sizeof(float) * n);
        int32_t *dpos = to_device(pos, sizeof pos);
        gpu->rope(gpu, dx, T, H, head_stride, H * head_stride, offset, rope_dim, dpos, inv_freq, 1.3f);
        float *got = from_device(dx, n);
        check("rope 64 heads x 256, slice [192, 256), positions up to 202000", got, ref, n);
        free(got);
        memcpy(ref, x, sizeof(float) * n);
        cpu->rope(cpu, ref, T, 32, 128, 32 * 128, 0, rope_dim, pos, inv_freq, 1.0f);
        gpu->upload(gpu, dx, x, sizeof(float) * n);
        gpu->rope(gpu, dx, T, 32, 128, 32 * 128, 0, rope_dim, dpos, inv_freq, 1.0f);
        got = from_device(dx, n);
        check("rope 32 indexer heads x 128, slice [0, 64)", got, ref, (size_t)T * 32 * 128);
        free(got), free(x), free(ref), gpu->free(gpu, dx), gpu->free(gpu, dpos);
    }
}

// The fused ops (backend.h: add_rmsnorm, norm_rope_cache) against the CPU's sequence of plain ops, and
// bitwise against the CUDA backend's own plain ops (the model may take either path).
static void test_fused_ops(void) {
    printf("add_rmsnorm, swiglu_matmul, norm_rope_cache\n");
    if (!gpu->add_rmsnorm || !gpu->swiglu_matmul || !gpu->norm_rope_cache) {
        printf("  not tested: the backend has them off (GLINT_CUDA_FUSED=0)\n");
        return;
    }
    {
        const int T = 4, D = 6144;
        const size_t n = (size_t)T * D;
        float *x = rand_floats(n, 3.0f), *a = rand_floats(n, 1.0f), *b = rand_floats(n, 1.0f);
        test_weight w = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, D, 1, 0);
        for (int with_b = 0; with_b < 2; with_b++) {
            float *rx = malloc(sizeof(float) * n), *ra = malloc(sizeof(float) * n), *rn = malloc(sizeof(float) * n);
            memcpy(rx, x, sizeof(float) * n), memcpy(ra, a, sizeof(float) * n);
            if (with_b) cpu->add(cpu, ra, b, n);
            cpu->add(cpu, rx, ra, n);
            cpu->rmsnorm(cpu, rn, rx, D, T, D, &w.host, 1e-5f);
            float *dx = to_device(x, sizeof(float) * n), *da = to_device(a, sizeof(float) * n);
            float *db = to_device(b, sizeof(float) * n), *dn = to_device(NULL, sizeof(float) * n);
            float *ux = to_device(x, sizeof(float) * n), *ua = to_device(a, sizeof(float) * n);
            float *un = to_device(NULL, sizeof(float) * n);
            poison(dn, n), poison(un, n);
            gpu->add_rmsnorm(gpu, dx, da, with_b ? db : NULL, dn, T, D, &w.dev, 1e-5f);
            if (with_b) gpu->add(gpu, ua, db, n);
            gpu->add(gpu, ux, ua, n);
            gpu->rmsnorm(gpu, un, ux, D, T, D, &w.dev, 1e-5f);
            float *gx = from_device(dx, n), *ga = from_device(da, n), *gn = from_device(dn, n);
            float *px = from_device(ux, n), *pa = from_device(ua, n), *pn = from_device(un, n);
            char what[96];
            snprintf(what, sizeof what, "add_rmsnorm T=4 D=6144%s: x", with_b ? ", b given" : "");
            check(what, gx, rx, n);
            snprintf(what, sizeof what, "add_rmsnorm T=4 D=6144%s: norm", with_b ? ", b given" : "");
            check(what, gn, rn, n);
            snprintf(what, sizeof what, "add_rmsnorm%s bitwise = add, add, rmsnorm on the GPU", with_b ? " (b)" : "");
            expect(!memcmp(gx, px, sizeof(float) * n) && !memcmp(ga, pa, sizeof(float) * n) &&
                       !memcmp(gn, pn, sizeof(float) * n),
                   what);
            gpu->add_rmsnorm(gpu, dx, da, NULL, NULL, T, D, NULL, 0.0f);  // adds only
            gpu->add(gpu, ux, ua, n);
            free(gx), free(px);
            gx = from_device(dx, n), px = from_device(ux, n);
            expect(!memcmp(gx, px, sizeof(float) * n), "add_rmsnorm without a norm bitwise = add");
            free(gx), free(ga), free(gn), free(px), free(pa), free(pn), free(rx), free(ra), free(rn);
            gpu->free(gpu, dx), gpu->free(gpu, da), gpu->free(gpu, db), gpu->free(gpu, dn);
            gpu->free(gpu, ux), gpu->free(gpu, ua), gpu->free(gpu, un);
        }
        free(x), free(a), free(b), free_host_weight(&w.host, 0);
    }
    // swiglu_matmul: the shared expert's / dense MLP's first half in one kernel, every format; against the
    // CPU's matmul, matmul, silu_mul, and each row of a batch bitwise the row alone
    // (T = 2-5: the MTP verify rows and small batches)
    static const int swiglu_Ts[] = {2, 3, 4, 5};
    const size_t n_Ts = sizeof swiglu_Ts / sizeof swiglu_Ts[0];
    for (size_t fk = 0; fk < sizeof ALL_FORMATS / sizeof ALL_FORMATS[0] * n_Ts; fk++) {
        const size_t f = fk / n_Ts;
        const int I = 2048, D = 6144, T = swiglu_Ts[fk % n_Ts];
        const test_format *tf = &ALL_FORMATS[f];
        if (tf->f == GLINT_WFMT_GPTQ_INT4) continue;  // not covered: the op declines (tested below)
        test_weight g = make_weight(tf->f, tf->d, I, D, tf->block), u = make_weight(tf->f, tf->d, I, D, tf->block);
        float *x = rand_floats((size_t)T * D, 1.0f), *gu = malloc(sizeof(float) * T * 2 * I);
        float *ref = malloc(sizeof(float) * T * I);
        cpu->matmul(cpu, gu, 2 * I, x, D, T, &g.host);
        cpu->matmul(cpu, gu + I, 2 * I, x, D, T, &u.host);
        cpu->silu_mul(cpu, ref, gu, gu + I, 2 * I, T, I);
        float *dx = to_device(x, sizeof(float) * T * D), *dy = to_device(NULL, sizeof(float) * T * I);
        poison(dy, (size_t)T * I);
        const int handled = gpu->swiglu_matmul(gpu, dy, I, dx, D, T, &g.dev, &u.dev);
        char what[128];
        snprintf(what, sizeof what, "swiglu_matmul %s [%d x %d] T=%d", format_name(tf->f, tf->d), I, D, T);
        expect(handled, what);
        float *got = from_device(dy, (size_t)T * I);
        check(what, got, ref, (size_t)T * I);
        int same = 1;
        for (int t = 0; t < T; t++) {
            poison(dy, (size_t)I);
            gpu->swiglu_matmul(gpu, dy, I, dx + (size_t)t * D, D, 1, &g.dev, &u.dev);
            float *alone = from_device(dy, (size_t)I);
            same &= !memcmp(alone, got + (size_t)t * I, sizeof(float) * I);
            free(alone);
        }
        snprintf(what, sizeof what, "swiglu_matmul %s T=%d: rows alone bitwise = batched", format_name(tf->f, tf->d),
                 T);
        expect(same, what);
        free(got), free(x), free(gu), free(ref), gpu->free(gpu, dx), gpu->free(gpu, dy);
        free_host_weight(&g.host, 0), free_host_weight(&u.host, 0);
    }
    {
        test_weight g = make_weight(GLINT_WFMT_GPTQ_INT4, GLINT_DTYPE_BF16, 256, 512, 128);
        float *dx = to_device(NULL, sizeof(float) * 512), *dy = to_device(NULL, sizeof(float) * 256);
        expect(!gpu->swiglu_matmul(gpu, dy, 256, dx, 512, 1, &g.dev, &g.dev), "swiglu_matmul declines GPTQ");
        expect(!gpu->swiglu_matmul(gpu, dy, 256, dx, 512, 65, &g.dev, &g.dev), "swiglu_matmul declines T > 64");
        gpu->free(gpu, dx), gpu->free(gpu, dy), free_host_weight(&g.host, 0);
    }
    // the MLA latent + rope key rows (rmsnorm of 512, rope on [512, 576), two pools) and the indexer key
    // rows (layernorm of 128, rope on [0, 64), one pool), through pages in reverse order
    const int cases[][4] = {{512, 576, 512, 0}, {128, 128, 0, 1}};  // n_norm, width, rope offset, layernorm
    for (int ci = 0; ci < 2; ci++) {
        const int n_norm = cases[ci][0], width = cases[ci][1], rope_offset = cases[ci][2], layer = cases[ci][3];
        const int T = 3, ps = 16, n_pages = 4, rows = ps * n_pages, split = layer ? width : n_norm;
        const int32_t pos[] = {5, 17, 40}, row_seq[] = {0, 0, 0}, page_table[] = {3, 2, 1, 0};
        const glint_cache_map map = {row_seq, page_table, n_pages, ps, 40};
        float inv_freq[32];
        for (int i = 0; i < 32; i++) inv_freq[i] = (float)pow(1e6, -2.0 * i / 64.0);
        const size_t n = (size_t)T * width;
        float *x = rand_floats(n, 2.0f);
        test_weight w = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, n_norm, 1, 0);
        test_weight b = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_F32, n_norm, 1, 0);
        float *rx = malloc(sizeof(float) * n), *ra = calloc((size_t)rows * split, sizeof(float));
        float *rb = calloc((size_t)rows * (width - split + 1), sizeof(float));
        memcpy(rx, x, sizeof(float) * n);
        if (layer) cpu->layernorm(cpu, rx, rx, width, T, n_norm, &w.host, &b.host, 1e-6f);
        else cpu->rmsnorm(cpu, rx, rx, width, T, n_norm, &w.host, 1e-5f);
        cpu->rope(cpu, rx, T, 1, width, width, rope_offset, 64, pos, inv_freq, 1.2f);
        cpu->write_cache(cpu, ra, split, rx, width, T, split, pos, &map);
        if (!layer) cpu->write_cache(cpu, rb, width - split, rx + split, width, T, width - split, pos, &map);
        int32_t *dpos = to_device(pos, sizeof pos);
        glint_cache_map dmap = {to_device(row_seq, sizeof row_seq), to_device(page_table, sizeof page_table), n_pages,
                                ps, 40};
        float *dx = to_device(x, sizeof(float) * n), *ux = to_device(x, sizeof(float) * n);
        float *dpa = to_device(NULL, sizeof(float) * rows * split);
        float *upa = to_device(NULL, sizeof(float) * rows * split);
        float *dpb = to_device(NULL, sizeof(float) * rows * (width - split + 1));
        float *upb = to_device(NULL, sizeof(float) * rows * (width - split + 1));
        gpu->norm_rope_cache(gpu, dx, width, T, n_norm, &w.dev, layer ? &b.dev : NULL, layer ? 1e-6f : 1e-5f,
                             rope_offset, 64, dpos, inv_freq, 1.2f, dpa, split, layer ? NULL : dpb, width, &dmap);
        if (layer) gpu->layernorm(gpu, ux, ux, width, T, n_norm, &w.dev, &b.dev, 1e-6f);
        else gpu->rmsnorm(gpu, ux, ux, width, T, n_norm, &w.dev, 1e-5f);
        gpu->rope(gpu, ux, T, 1, width, width, rope_offset, 64, dpos, inv_freq, 1.2f);
        gpu->write_cache(gpu, upa, split, ux, width, T, split, dpos, &dmap);
        if (!layer) gpu->write_cache(gpu, upb, width - split, ux + split, width, T, width - split, dpos, &dmap);
        float *gx = from_device(dx, n), *ga = from_device(dpa, (size_t)rows * split);
        float *gb = from_device(dpb, (size_t)rows * (width - split + 1)), *px = from_device(ux, n);
        float *pa = from_device(upa, (size_t)rows * split), *pb = from_device(upb, (size_t)rows * (width - split + 1));
        char what[128];
        snprintf(what, sizeof what, "norm_rope_cache %s of %d, rope at %d, pages of %d: rows",
                 layer ? "layernorm" : "rmsnorm", n_norm, rope_offset, ps);
        check(what, gx, rx, n);
        snprintf(what, sizeof what, "norm_rope_cache %s of %d: first pool", layer ? "layernorm" : "rmsnorm", n_norm);
        check(what, ga, ra, (size_t)rows * split);
        if (!layer) check("norm_rope_cache rmsnorm of 512: second pool", gb, rb, (size_t)rows * (width - split));
        snprintf(what, sizeof what, "norm_rope_cache %s bitwise = norm, rope, write_cache on the GPU",
                 layer ? "layernorm" : "rmsnorm");
        expect(!memcmp(gx, px, sizeof(float) * n) && !memcmp(ga, pa, sizeof(float) * rows * split) &&
                   !memcmp(gb, pb, sizeof(float) * rows * (width - split + 1)),
               what);
        free(gx), free(ga), free(gb), free(px), free(pa), free(pb), free(x), free(rx), free(ra), free(rb);
        gpu->free(gpu, dx), gpu->free(gpu, ux), gpu->free(gpu, dpa), gpu->free(gpu, upa), gpu->free(gpu, dpb);
        gpu->free(gpu, upb), gpu->free(gpu, dpos), gpu->free(gpu, (void *)dmap.row_seq);
        gpu->free(gpu, (void *)dmap.page_table);
        free_host_weight(&w.host, 0), free_host_weight(&b.host, 0);
    }
}

// argmax (greedy decoding on the device) against glint_argmax: ties, NaNs, infinities, odd widths.
static void test_argmax(void) {
    printf("argmax\n");
    const int widths[] = {154880, 7, 1025};
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        const int n = widths[wi], rows = 8;
        float *x = rand_floats((size_t)rows * n, 10.0f);
        float *r1 = x + n, *r2 = x + 2 * n, *r3 = x + 3 * n, *r4 = x + 4 * n, *r5 = x + 5 * n, *r6 = x + 6 * n;
        r1[n / 3] = 50.0f, r1[n - 1] = 50.0f;        // tie: the first wins
        r2[0] = NAN, r2[n / 2] = 99.0f;              // NaN first: index 0
        r3[n / 2] = NAN, r3[n - 1] = 60.0f;          // NaN later: skipped
        for (int i = 0; i < n; i++) r4[i] = -INFINITY;  // all -inf: index 0
        r5[n / 4] = INFINITY, r5[n / 2] = INFINITY;  // the first +inf
        for (int i = 0; i < n; i++) r6[i] = 1.0f;    // all equal: index 0
        int32_t ref[8], got[8];
        for (int r = 0; r < rows; r++) ref[r] = glint_argmax(x + (size_t)r * n, n);
        float *dx = to_device(x, sizeof(float) * rows * n);
        for (int r = 0; r < rows; r++) got[r] = -7;
        gpu->argmax(gpu, got, NULL, dx, rows, n);
        char what[96];
        snprintf(what, sizeof what, "argmax of 8 rows of %d (ties, NaN, inf) = glint_argmax", n);
        expect(!memcmp(got, ref, sizeof ref), what);
        free(x), gpu->free(gpu, dx);
    }
}

// edit_logits: the engine's per-token edits (masks, bias, penalties with and without the repetition
// factor, on positive, negative and zero logits) = common/sampling.h's glint_logit_edit_apply on the
// host, bitwise; the other logits untouched.
static void test_edit_logits(void) {
    printf("edit_logits\n");
    const int n = 154880, n_edits = 3000;
    float *x = rand_floats((size_t)n, 5.0f), *ref = malloc(sizeof(float) * n);
    x[10] = 0.0f, x[11] = -0.0f;
    glint_logit_edit *edits = calloc((size_t)n_edits, sizeof *edits);
    for (int i = 0; i < n_edits; i++) {  // distinct tokens: a stride through the vocabulary
        glint_logit_edit *e = edits + i;
        e->token = 50 * i + 7;
        e->flags = 1 + i % 7;  // every combination of MASK, BIAS, PENALTY
        e->bias = (float)(i % 13) * 0.37f - 2.0f;
        e->sub = 0.3f * (float)(1 + i % 5) + 0.4f;
        e->rep = i % 3 ? 1.15f + 0.01f * (float)(i % 4) : 1.0f;
    }
    for (int i = 0; i < 2; i++)  // a repetition penalty alone on +0 and -0 (they keep their signs)
        edits[i] = (glint_logit_edit){10 + i, GLINT_EDIT_PENALTY, 0.0f, 0.0f, 1.2f};
    memcpy(ref, x, sizeof(float) * n);
    for (int i = 0; i < n_edits; i++) ref[edits[i].token] = glint_logit_edit_apply(edits + i, ref[edits[i].token]);
    float *dx = to_device(x, sizeof(float) * n);
    gpu->edit_logits(gpu, dx, n, edits, n_edits);
    float *got = from_device(dx, (size_t)n);
    expect(!memcmp(got, ref, sizeof(float) * n), "3000 logit edits (mask, bias, penalties) = the host's, bitwise");
    free(x), free(ref), free(edits), free(got), gpu->free(gpu, dx);
}

// Indexer: selections compared as sets. Elements in only one of the two sets are accepted only
// when their exact (double) score ties the boundary score to within FP32 rounding. With page_size
// > 0 the keys sit in a paged pool (pages in reverse order) and the selected pool rows are mapped
// back to positions; else the cache is contiguous (one page of ctx rows).
static void test_indexer_case(int T, const int32_t *pos, int Hi, int Di, int topk, int ctx, int all_keys_equal,
                              int page_size) {
    float *q = rand_floats((size_t)T * Hi * Di, 1.0f), *w = rand_floats((size_t)T * Hi, 1.0f);
    float *k = rand_floats((size_t)ctx * Di, 1.0f);
    if (all_keys_equal)
        for (int t = 1; t < ctx; t++) memcpy(k + (size_t)t * Di, k, sizeof(float) * Di);
    const float scale = 1.0f / sqrtf((float)Di), wscale = 1.0f / sqrtf((float)Hi);
    const int ps = page_size > 0 ? page_size : ctx, n_pages = (ctx + ps - 1) / ps, rows = n_pages * ps;
    int32_t *page_table = malloc(sizeof(int32_t) * n_pages), *row_seq = calloc((size_t)T, sizeof(int32_t));
    int32_t *position_of_row = malloc(sizeof(int32_t) * rows);
    float *k_pool = calloc((size_t)rows * Di, sizeof(float));
    for (int p = 0; p < n_pages; p++) page_table[p] = n_pages - 1 - p;
    int max_position = 0;
    for (int s = 0; s < T; s++) max_position = pos[s] > max_position ? pos[s] : max_position;
    glint_cache_map map = {row_seq, page_table, n_pages, ps, max_position};
    for (int r = 0; r < rows; r++) position_of_row[r] = -1;
    for (int t = 0; t < ctx; t++) {
        const int64_t r = glint_cache_row(&map, 0, t);
        position_of_row[r] = t;
        memcpy(k_pool + (size_t)r * Di, k + (size_t)t * Di, sizeof(float) * Di);
    }
    int32_t *ref_sel = malloc(sizeof(int32_t) * T * topk), ref_n[64];
    for (int i = 0; i < T * topk; i++) ref_sel[i] = -1;
    cpu->indexer_select(cpu, ref_sel, ref_n, q, w, k_pool, T, pos, &map, Hi, Di, topk, scale, wscale);
    float *dq = to_device(q, sizeof(float) * T * Hi * Di), *dw = to_device(w, sizeof(float) * T * Hi);
    float *dk = to_device(k_pool, sizeof(float) * rows * Di);
    int32_t *dpos = to_device(pos, sizeof(int32_t) * T), *dsel = to_device(NULL, sizeof(int32_t) * T * topk);
    int32_t *dn = to_device(NULL, sizeof(int32_t) * T);
    glint_cache_map dmap = {to_device(row_seq, sizeof(int32_t) * T), to_device(page_table, sizeof(int32_t) * n_pages),
                            n_pages, ps, max_position};
    {  // write_cache: the contiguous keys written through the map give the same pool
        int32_t *all_pos = malloc(sizeof(int32_t) * ctx), *zeros = calloc((size_t)ctx, sizeof(int32_t));
        for (int t = 0; t < ctx; t++) all_pos[t] = t;
        glint_cache_map wmap = {to_device(zeros, sizeof(int32_t) * ctx), dmap.page_table, n_pages, ps, ctx - 1};
        float *dk_rows = to_device(k, sizeof(float) * ctx * Di), *dpool = to_device(NULL, sizeof(float) * rows * Di);
        int32_t *dall = to_device(all_pos, sizeof(int32_t) * ctx);
        gpu->upload(gpu, dpool, k_pool, sizeof(float) * rows * Di);  // rows beyond ctx stay as they are
        for (int t = 0; t < ctx; t++) poison(dpool + glint_cache_row(&map, 0, t) * Di, (size_t)Di);
        gpu->write_cache(gpu, dpool, Di, dk_rows, Di, ctx, Di, dall, &wmap);
        float *got = from_device(dpool, (size_t)rows * Di);
        char what_w[96];
        snprintf(what_w, sizeof what_w, "write_cache %d rows of %d into pages of %d", ctx, Di, ps);
        expect(!memcmp(got, k_pool, sizeof(float) * rows * Di), what_w);
        free(got), free(all_pos), free(zeros);
        gpu->free(gpu, (void *)wmap.row_seq), gpu->free(gpu, dk_rows), gpu->free(gpu, dpool), gpu->free(gpu, dall);
    }
    poison((float *)dsel, (size_t)T * topk);
    poison((float *)dn, (size_t)T);
    gpu->indexer_select(gpu, dsel, dn, dq, dw, dk, T, dpos, &dmap, Hi, Di, topk, scale, wscale);
    int32_t *sel = malloc(sizeof(int32_t) * T * topk), n_sel[64];
    gpu->download(gpu, (float *)sel, (const float *)dsel, (size_t)T * topk);
    gpu->download(gpu, (float *)n_sel, (const float *)dn, (size_t)T);
    for (int i = 0; i < T * topk; i++) {  // pool rows -> positions (-1: not a cached position)
        ref_sel[i] = ref_sel[i] >= 0 && ref_sel[i] < rows ? position_of_row[ref_sel[i]] : -1;
        sel[i] = sel[i] >= 0 && sel[i] < rows ? position_of_row[sel[i]] : -1;
    }
    int ok = 1, loose = 0, ordered = 1;
    for (int s = 0; s < T && ok; s++) {
        if (n_sel[s] != ref_n[s]) {
            printf("    query %d: n_sel %d, CPU %d\n", s, n_sel[s], ref_n[s]);
            ok = 0;
            break;
        }
        const int visible = pos[s] + 1;
        char *in_ref = calloc((size_t)visible, 1), *in_got = calloc((size_t)visible, 1);
        for (int i = 0, last = -1; i < n_sel[s]; i++) {
            int a = ref_sel[(size_t)s * topk + i], b = sel[(size_t)s * topk + i];
            if (a < 0 || a >= visible || b < 0 || b >= visible || in_got[b]) ok = 0;  // range, duplicates
            else in_ref[a] = 1, in_got[b] = 1;
            if (b <= last) ordered = 0;  // every GPU selection writes ascending positions
            last = b;
        }
        // exact scores for the boundary test
        double *score = malloc(sizeof(double) * visible), boundary = INFINITY, max_abs = 0;
        for (int t = 0; t < visible; t++) {
            double total = 0;
            for (int h = 0; h < Hi; h++) {
                double dot = 0;
                for (int d = 0; d < Di; d++) dot += (double)q[((size_t)s * Hi + h) * Di + d] * k[(size_t)t * Di + d];
                dot *= scale;
                total += (double)w[(size_t)s * Hi + h] * wscale * (dot > 0 ? dot : 0);
            }
            score[t] = total;
            if (fabs(total) > max_abs) max_abs = fabs(total);
            if (in_ref[t] && total < boundary) boundary = total;
        }
        for (int t = 0; t < visible && ok; t++)
            if (in_ref[t] != in_got[t]) {
                if (all_keys_equal || fabs(score[t] - boundary) > 1e-5 * max_abs) ok = 0;
                else loose++;
            }
        free(in_ref), free(in_got), free(score);
    }
    char what[160];
    snprintf(what, sizeof what, "indexer_select %d x %d top-%d, %d queries, ctx %d%s%s: same sets%s", Hi, Di, topk, T,
             ctx, all_keys_equal ? " (all tied: lowest positions)" : "", page_size > 0 ? ", paged" : "",
             loose ? " (boundary ties)" : "");
    expect(ok, what);
    snprintf(what, sizeof what, "indexer_select %d x %d top-%d, %d queries, ctx %d: ascending positions", Hi, Di, topk,
             T, ctx);
    expect(ordered, what);
    gpu->free(gpu, dq), gpu->free(gpu, dw), gpu->free(gpu, dk), gpu->free(gpu, dpos), gpu->free(gpu, dsel),
        gpu->free(gpu, dn), gpu->free(gpu, (void *)dmap.row_seq), gpu->free(gpu, (void *)dmap.page_table);
    free(q), free(w), free(k), free(ref_sel), free(sel);
    free(page_table), free(row_seq), free(position_of_row), free(k_pool);
}

static void test_indexer(int quick) {
    printf("indexer_select\n");
    const int32_t tiny_pos[] = {0, 3, 8, 20, 39, 39};
    test_indexer_case(6, tiny_pos, 4, 16, 8, 40, 0, 0);
    test_indexer_case(6, tiny_pos, 4, 16, 8, 40, 1, 0);
    test_indexer_case(6, tiny_pos, 4, 16, 8, 40, 0, 16);
    test_indexer_case(6, tiny_pos, 4, 16, 8, 40, 1, 7);
    // past 16384 keys the top-k runs on many blocks per query (also under compute-sanitizer)
    const int32_t long_pos[] = {100, 16500, 17000};
    test_indexer_case(3, long_pos, 4, 16, 64, 17001, 0, 0);
    test_indexer_case(3, long_pos, 4, 16, 64, 17001, 1, 0);
    test_indexer_case(3, long_pos, 4, 16, 64, 17001, 0, 256);
    // GLM-5's indexer shape (32 heads of 128) takes the tensor-core scores (cuda_indexer.cu): one
    // n-tile per warp for few keys; four per warp, blocks striding over the chunks, for many queries
    const int32_t few_pos[] = {1500, 2099, 2099};
    test_indexer_case(3, few_pos, 32, 128, 256, 2100, 0, 0);
    test_indexer_case(3, few_pos, 32, 128, 256, 2100, 0, 48);
    int32_t many_pos[24];
    for (int s = 0; s < 24; s++) many_pos[s] = 600 + 100 * s + s % 7;  // up to 2902: 23 chunks of 128
    test_indexer_case(24, many_pos, 32, 128, 512, 3000, 0, 0);
    test_indexer_case(24, many_pos, 32, 128, 512, 3000, 1, 32);
    if (quick) return;
    const int32_t pos[] = {100, 2047, 2048, 2500, 4999};
    test_indexer_case(5, pos, 32, 128, 2048, 5000, 0, 0);
    test_indexer_case(5, pos, 32, 128, 2048, 5000, 1, 0);
    test_indexer_case(5, pos, 32, 128, 2048, 5000, 0, 64);
    const int32_t far[] = {70000};
    test_indexer_case(1, far, 32, 128, 2048, 70001, 0, 0);
    test_indexer_case(1, far, 32, 128, 2048, 70001, 1, 0);
    const int32_t far2[] = {30000, 70000};
    test_indexer_case(2, far2, 32, 128, 2048, 70001, 0, 4096);
    // many queries past 16384 keys: the tensor-core scores' blocks stride over ~155 chunks on any
    // card, and the multi-block top-k reuses its states row after row (one row needing no selection)
    int32_t long_many[24];
    for (int s = 0; s < 24; s++) long_many[s] = s == 5 ? 1000 : 17000 + 120 * s;
    test_indexer_case(24, long_many, 32, 128, 2048, 19761, 0, 256);
}

// Absorbed MLA: q_lat, attention over selected keys, up-projection, for a kv_b in each format.
static void test_mla_case(const test_weight *kv_b, int T, int H, int Dn, int Dr, int Dv, int C, int ctx, int topk) {
    const int Dq = Dn + Dr;
    const char *fmt = format_name(kv_b->host.format, kv_b->host.dtype);
    char what[160];
    float *q = rand_floats((size_t)T * H * Dq, 1.0f), *ref_lat = malloc(sizeof(float) * T * H * C);
    float *dq = to_device(q, sizeof(float) * T * H * Dq), *dlat = to_device(NULL, sizeof(float) * T * H * C);
    cpu->mla_absorb_q(cpu, ref_lat, q, T, H, Dq, Dn, Dv, &kv_b->host);
    poison(dlat, (size_t)T * H * C);
    gpu->mla_absorb_q(gpu, dlat, dq, T, H, Dq, Dn, Dv, &kv_b->dev);
    float *got = from_device(dlat, (size_t)T * H * C);
    snprintf(what, sizeof what, "mla_absorb_q %s H=%d Dn=%d C=%d T=%d", fmt, H, Dn, C, T);
    check(what, got, ref_lat, (size_t)T * H * C);
    free(got);

    // attention over random selections (one query selects nothing, one selects a few)
    float *latent = rand_floats((size_t)ctx * C, 1.0f), *kpe = rand_floats((size_t)ctx * Dr, 1.0f);
    int32_t *sel = malloc(sizeof(int32_t) * T * topk), *n_sel = malloc(sizeof(int32_t) * T);
    for (int s = 0; s < T; s++) {
        n_sel[s] = s == 0 ? 0 : s == 1 ? 5 : topk;
        for (int i = 0; i < topk; i++) sel[(size_t)s * topk + i] = (int32_t)(next_u32() % (uint32_t)ctx);
    }
    float *ref_o = malloc(sizeof(float) * T * H * C);
    const float scale = 1.0f / sqrtf((float)Dq);
    cpu->mla_attend(cpu, ref_o, ref_lat, q, Dq, Dn, latent, kpe, sel, n_sel, topk, T, H, C, Dr, scale);
    float *dlatent = to_device(latent, sizeof(float) * ctx * C), *dkpe = to_device(kpe, sizeof(float) * ctx * Dr);
    int32_t *dsel = to_device(sel, sizeof(int32_t) * T * topk), *dn = to_device(n_sel, sizeof(int32_t) * T);
    float *do_lat = to_device(NULL, sizeof(float) * T * H * C);
    gpu->upload(gpu, dlat, ref_lat, sizeof(float) * T * H * C);  // same q_lat on both sides
    poison(do_lat, (size_t)T * H * C);
    gpu->mla_attend(gpu, do_lat, dlat, dq, Dq, Dn, dlatent, dkpe, dsel, dn, topk, T, H, C, Dr, scale);
    got = from_device(do_lat, (size_t)T * H * C);
    snprintf(what, sizeof what, "mla_attend H=%d C=%d Dr=%d T=%d top-%d of ctx %d", H, C, Dr, T, topk, ctx);
    check(what, got, ref_o, (size_t)T * H * C);
    free(got);

    float *ref_v = malloc(sizeof(float) * T * H * Dv), *dv = to_device(NULL, sizeof(float) * T * H * Dv);
    cpu->mla_up_v(cpu, ref_v, ref_o, T, H, C, Dn, Dv, &kv_b->host);
    gpu->upload(gpu, do_lat, ref_o, sizeof(float) * T * H * C);
    poison(dv, (size_t)T * H * Dv);
    gpu->mla_up_v(gpu, dv, do_lat, T, H, C, Dn, Dv, &kv_b->dev);
    got = from_device(dv, (size_t)T * H * Dv);
    snprintf(what, sizeof what, "mla_up_v %s H=%d Dv=%d C=%d T=%d", fmt, H, Dv, C, T);
    use_tolerance_for(T);  // T > 64: the prefill matmul's
    check(what, got, ref_v, (size_t)T * H * Dv);
    use_tolerance_for(0);
    free(got);
    if (T > 1 && T <= 64) {  // rows alone vs the batch (the server batches decode rows)
        const size_t lat_row = (size_t)H * C, v_row = (size_t)H * Dv;
        float *b_lat, *b_o, *b_v, *a_lat, *a_o, *a_v;
        gpu->mla_absorb_q(gpu, dlat, dq, T, H, Dq, Dn, Dv, &kv_b->dev);
        b_lat = from_device(dlat, (size_t)T * lat_row);
        gpu->upload(gpu, dlat, ref_lat, sizeof(float) * T * lat_row);
        gpu->mla_attend(gpu, do_lat, dlat, dq, Dq, Dn, dlatent, dkpe, dsel, dn, topk, T, H, C, Dr, scale);
        b_o = from_device(do_lat, (size_t)T * lat_row);
        gpu->mla_up_v(gpu, dv, do_lat, T, H, C, Dn, Dv, &kv_b->dev);
        b_v = from_device(dv, (size_t)T * v_row);
        int same = 1, same_attend = 1;  // bitwise: the attention's key chunks are fixed per shape
        for (int r = 1; r < T; r += T > 4 ? T / 4 : 1) {
            gpu->mla_absorb_q(gpu, dlat, dq + (size_t)r * H * Dq, 1, H, Dq, Dn, Dv, &kv_b->dev);
            a_lat = from_device(dlat, lat_row);
            gpu->upload(gpu, dlat, ref_lat + (size_t)r * lat_row, sizeof(float) * lat_row);
            gpu->mla_attend(gpu, do_lat, dlat, dq + (size_t)r * H * Dq, Dq, Dn, dlatent, dkpe, dsel + (size_t)r * topk,
                            dn + r, topk, 1, H, C, Dr, scale);
            a_o = from_device(do_lat, lat_row);
            gpu->upload(gpu, do_lat, b_o + (size_t)r * lat_row, sizeof(float) * lat_row);  // up_v: same input
            gpu->mla_up_v(gpu, dv, do_lat, 1, H, C, Dn, Dv, &kv_b->dev);
            a_v = from_device(dv, v_row);
            same_attend &= !memcmp(a_o, b_o + (size_t)r * lat_row, sizeof(float) * lat_row);
            same &= !memcmp(a_lat, b_lat + (size_t)r * lat_row, sizeof(float) * lat_row) &&
                    !memcmp(a_v, b_v + (size_t)r * v_row, sizeof(float) * v_row);
            free(a_lat), free(a_o), free(a_v);
        }
        snprintf(what, sizeof what, "mla_absorb_q / up_v %s T=%d: rows alone bitwise = batched", fmt, T);
        expect(same, what);
        snprintf(what, sizeof what, "mla_attend H=%d T=%d top-%d: rows alone bitwise = batched", H, T, topk);
        expect(same_attend, what);
        free(b_lat), free(b_o), free(b_v);
    }
    gpu->free(gpu, dq), gpu->free(gpu, dlat), gpu->free(gpu, dlatent), gpu->free(gpu, dkpe), gpu->free(gpu, dsel);
    gpu->free(gpu, dn), gpu->free(gpu, do_lat), gpu->free(gpu, dv);
    free(q), free(ref_lat), free(latent), free(kpe), free(sel), free(n_sel), free(ref_o), free(ref_v);
}

static void test_mla(int quick) {
    printf("absorbed MLA\n");
    {
        test_weight kv_b = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_F32, 3 * (8 + 6), 16, 0);
        test_mla_case(&kv_b, 3, 3, 8, 4, 6, 16, 30, 7);
        free_host_weight(&kv_b.host, 0);
        // C and Dr not multiples of 4: the attention's scalar tile loads
        kv_b = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 2 * (5 + 3), 18, 0);
        test_mla_case(&kv_b, 3, 2, 5, 6, 3, 18, 40, 9);
        free_host_weight(&kv_b.host, 0);
    }
    if (quick) return;
    const int H = 64, Dn = 192, Dr = 64, Dv = 256, C = 512;
    const test_format formats[] = {{GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 0},
                                   {GLINT_WFMT_FP8_BLOCK, GLINT_DTYPE_F8_E4M3, 128},
                                   {GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 16},
                                   {GLINT_WFMT_GPTQ_INT4, GLINT_DTYPE_BF16, 128}};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        test_weight kv_b = make_weight(formats[f].f, formats[f].d, H * (Dn + Dv), C, formats[f].block);
        test_mla_case(&kv_b, f == 0 ? 20 : 3, H, Dn, Dr, Dv, C, 3000, 2048);
        // prefill: up_v's per-head products batched on tensor cores (cuBLAS strided batches)
        if (f == 0) test_mla_case(&kv_b, 100, H, Dn, Dr, Dv, C, 3000, 2048);
        free_host_weight(&kv_b.host, 0);
    }
    // One rank's 16 heads of a 4-GPU split: more key chunks per head group (a block per 16-key tile
    // for one query); 40 rows fold their chunks in the block, a row alone goes through the combine.
    test_weight kv_b = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 16 * (Dn + Dv), C, 0);
    test_mla_case(&kv_b, 40, 16, Dn, Dr, Dv, C, 5000, 2048);
    // --triton-attention-num-kv-splits: one chunk (no combine), an odd count, more than the 128 tiles
    const int splits[] = {1, 5, 1024};
    for (int i = 0; i < 3; i++) {
        printf("attention key splits %d\n", splits[i]);
        glint_cuda_set_attention_splits(splits[i]);
        test_mla_case(&kv_b, 20, 16, Dn, Dr, Dv, C, 5000, 2048);
    }
    glint_cuda_set_attention_splits(0);
    free_host_weight(&kv_b.host, 0);
}

// MoE: E experts; with shared_codes every expert shares one code buffer per matrix and differs by
// its scales (keeps the real 160-expert case small in host memory).
static void test_moe_case(int T, int D, int I, glint_moe_routing r, glint_weight_format f, glint_dtype dt, int block,
                          int shared_codes) {
    const int E = r.n_experts;
    use_tolerance_for(T);
    glint_weight *hg = calloc((size_t)E * 3, sizeof *hg), *dg = calloc((size_t)E * 3, sizeof *dg);
    glint_weight shared[3] = {{0}};
    if (shared_codes) {
        shared[0] = make_host_weight(f, dt, I, D, block, NULL);
        shared[1] = make_host_weight(f, dt, I, D, block, NULL);
        shared[2] = make_host_weight(f, dt, D, I, block, NULL);
    }
    for (int m = 0; m < 3; m++)
        for (int e = 0; e < E; e++) {
            const int64_t rows = m == 2 ? D : I, cols = m == 2 ? I : D;
            test_weight w = prepare(make_host_weight(f, dt, rows, cols, block, shared_codes ? shared[m].data : NULL));
            hg[m * E + e] = w.host, dg[m * E + e] = w.dev;
        }
    test_weight router = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_F32, E, D, 0);
    test_weight bias = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_F32, E, 1, 0);
    glint_experts hx = {hg, hg + E, hg + 2 * E, E}, dx_experts = {dg, dg + E, dg + 2 * E, E};
    float *x = rand_floats((size_t)T * D, 1.0f), *ref = malloc(sizeof(float) * T * D);
    cpu->moe(cpu, ref, x, T, D, I, &router.host, &bias.host, &r, &hx);
    float *dx = to_device(x, sizeof(float) * T * D), *dy = to_device(NULL, sizeof(float) * T * D);
    poison(dy, (size_t)T * D);
    gpu->moe(gpu, dy, dx, T, D, I, &router.dev, &bias.dev, &r, &dx_experts);
    float *got = from_device(dy, (size_t)T * D);
    char what[160];
    snprintf(what, sizeof what, "moe %s E=%d top-%d groups %d/%d D=%d I=%d T=%d", format_name(f, dt), E, r.top_k,
             r.topk_group, r.n_group, D, I, T);
    check(what, got, ref, (size_t)T * D);
    use_tolerance_for(0);
    free(got), free(x), free(ref), gpu->free(gpu, dx), gpu->free(gpu, dy);
    for (int i = 0; i < 3 * E; i++) free_host_weight(&hg[i], shared_codes);
    for (int m = 0; m < 3 && shared_codes; m++) free_host_weight(&shared[m], 0);
    free_host_weight(&router.host, 0), free_host_weight(&bias.host, 0);
    free(hg), free(dg);
}

// The MoE's rows alone vs batched (bitwise), E experts in one format.
static void test_moe_row_invariance(glint_weight_format f, glint_dtype dt, int block, int E, int D, int I) {
    glint_moe_routing r = {.n_experts = E, .top_k = 8, .n_group = 1, .topk_group = 1, .norm_topk_prob = 1,
                           .routed_scaling_factor = 2.5f};
    glint_weight *dg = calloc((size_t)E * 3, sizeof *dg), *hg = calloc((size_t)E * 3, sizeof *hg);
    for (int m = 0; m < 3; m++)
        for (int e = 0; e < E; e++) {
            test_weight w = prepare(make_host_weight(f, dt, m == 2 ? D : I, m == 2 ? I : D, block, NULL));
            hg[m * E + e] = w.host, dg[m * E + e] = w.dev;
        }
    test_weight router = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, E, D, 0);
    test_weight bias = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_F32, E, 1, 0);
    glint_experts ex = {dg, dg + E, dg + 2 * E, E};
    const int Ts[] = {1, 2, 5, 16, 32, 64}, maxT = 64;
    float *x = rand_floats((size_t)maxT * D, 1.0f), *solo = malloc(sizeof(float) * maxT * D);
    float *dx = to_device(x, sizeof(float) * maxT * D), *dy = to_device(NULL, sizeof(float) * maxT * D);
    for (int t = 0; t < maxT; t++) {
        gpu->moe(gpu, dy, dx + (size_t)t * D, 1, D, I, &router.dev, &bias.dev, &r, &ex);
        gpu->download(gpu, solo + (size_t)t * D, dy, D);
    }
    int ok = 1;
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
        poison(dy, (size_t)maxT * D);
        gpu->moe(gpu, dy, dx, Ts[i], D, I, &router.dev, &bias.dev, &r, &ex);
        float *got = from_device(dy, (size_t)Ts[i] * D);
        if (memcmp(got, solo, sizeof(float) * Ts[i] * D)) {
            ok = 0;
            printf("    T=%d differs from the rows alone\n", Ts[i]);
        }
        free(got);
    }
    char what[128];
    snprintf(what, sizeof what, "moe %s E=%d top-8 D=%d I=%d: T in {1,2,5,16,32,64} = rows alone", format_name(f, dt), E,
             D, I);
    expect(ok, what);
    for (int i = 0; i < 3 * E; i++) free_host_weight(&hg[i], 0);
    free_host_weight(&router.host, 0), free_host_weight(&bias.host, 0);
    free(hg), free(dg), free(x), free(solo), gpu->free(gpu, dx), gpu->free(gpu, dy);
}

static void test_moe(int quick) {
    printf("moe\n");
    glint_moe_routing grouped = {.n_experts = 16, .top_k = 4, .n_group = 4, .topk_group = 2, .norm_topk_prob = 1,
                                 .routed_scaling_factor = 2.5f};
    test_moe_case(5, 64, 32, grouped, GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 0, 0);
    test_moe_case(20, 64, 32, grouped, GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 16, 0);
    glint_moe_routing plain = {.n_experts = 8, .top_k = 2, .n_group = 1, .topk_group = 1, .norm_topk_prob = 0,
                               .routed_scaling_factor = 1.0f};
    test_moe_case(3, 96, 64, plain, GLINT_WFMT_GPTQ_INT4, GLINT_DTYPE_F16, 32, 0);
    test_moe_case(3, 64, 32, plain, GLINT_WFMT_FP8_BLOCK, GLINT_DTYPE_F8_E4M3, 32, 0);
    glint_moe_routing wide = {.n_experts = 256, .top_k = 8, .n_group = 8, .topk_group = 4, .norm_topk_prob = 1,
                              .routed_scaling_factor = 2.5f};
    test_moe_case(9, 64, 32, wide, GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 0, 0);
    test_moe_case(64, 64, 32, wide, GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 16, 0);
    test_moe_case(65, 64, 32, grouped, GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 16, 0);
    test_moe_row_invariance(GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 16, 32, 256, 128);
    test_moe_row_invariance(GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 0, 32, 256, 128);
    if (quick) return;
    test_moe_row_invariance(GLINT_WFMT_FP8_BLOCK, GLINT_DTYPE_F8_E4M3, 128, 32, 512, 256);
    glint_moe_routing glm = {.n_experts = 160, .top_k = 8, .n_group = 1, .topk_group = 1, .norm_topk_prob = 1,
                             .routed_scaling_factor = 2.5f};
    test_moe_case(1, 6144, 2048, glm, GLINT_WFMT_FP8_BLOCK, GLINT_DTYPE_F8_E4M3, 128, 1);
    test_moe_case(24, 6144, 2048, glm, GLINT_WFMT_FP8_BLOCK, GLINT_DTYPE_F8_E4M3, 128, 1);
    test_moe_case(1, 6144, 2048, glm, GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 16, 1);
    test_moe_case(7, 6144, 2048, glm, GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 16, 1);
    // prefill: ~128 tokens per expert, so the expert matmuls run on tensor cores
    test_moe_case(512, 1024, 256, grouped, GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 16, 0);
    test_moe_case(512, 1024, 256, grouped, GLINT_WFMT_FP8_BLOCK, GLINT_DTYPE_F8_E4M3, 128, 0);
    test_moe_case(512, 1024, 256, grouped, GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 0, 0);
    use_tolerance_for(0);
}

// A launch the kernels refuse must set the error and leave NaN, not crash.
static void test_errors(void) {
    printf("errors\n");
    glint_moe_routing too_many = {.n_experts = 2048, .top_k = 2, .n_group = 1, .topk_group = 1,
                                  .routed_scaling_factor = 1.0f};
    glint_clear_error();
    float *dy = to_device(NULL, sizeof(float) * 8), *dx = to_device(NULL, sizeof(float) * 8);
    glint_weight none = {0};
    glint_experts ex = {&none, &none, &none, 2048};
    gpu->moe(gpu, dy, dx, 1, 8, 4, &none, NULL, &too_many, &ex);
    float *got = from_device(dy, 8);
    expect(isnan(got[0]) && isnan(got[7]) && glint_last_error()[0], "moe over the expert limit: error + NaN output");
    free(got);
    // an op refused before any launch: the next download is NaN even though dy holds numbers
    const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    const int32_t pos0 = 0;
    float freqs[600] = {0};
    int32_t *dpos = to_device(&pos0, sizeof pos0);
    gpu->upload(gpu, dy, ones, sizeof ones);
    glint_clear_error();
    gpu->rope(gpu, dy, 1, 1, 8, 8, 0, 1200, dpos, freqs, 1.0f);
    got = from_device(dy, 8);
    expect(isnan(got[0]) && glint_last_error()[0], "rope over the pair limit: error + NaN at the next download");
    free(got);
    got = from_device(dy, 8);
    expect(got[0] == 1.0f, "the download after that one returns the data again");
    free(got), gpu->free(gpu, dx), gpu->free(gpu, dy), gpu->free(gpu, dpos);
}

// sample (sampled decoding on the device) against the host's glint_sample_draw: the same token bit for
// bit for each row's rules and uniform, over GLM-5's vocabulary and small ones. The device may decline
// (-1) only a row whose kept tokens can outgrow its shared memory: a flat row, a row keeping every
// token (top_p 1 without top-k or min-p) of a large vocabulary, and the row without a distribution
// (every logit -inf); the peaked rows (a few tokens far above the rest) it must draw itself.
static void test_sample(void) {
    printf("sample\n");
    const int widths[] = {154880, 7, 1000};
    const glint_sample_params rules[] = {{1.0f, -1, 0.95f, 0.0f}, {0.7f, 40, 0.8f, 0.05f}, {1.0f, -1, 1.0f, 0.0f},
                                         {1.3f, 5, 1.0f, 0.0f},   {0.5f, -1, 0.5f, 0.1f},  {1.0f, 200, 0.999f, 0.0f},
                                         {1.0f, -1, 0.9f, 2.0f}};
    const int n_rules = (int)(sizeof rules / sizeof rules[0]), rows = 2 * n_rules + 1;
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        const int n = widths[wi];
        glint_sample_scratch *w = glint_sample_scratch_new(n);
        float *x = rand_floats((size_t)rows * n, 3.0f);
        glint_sample_params params[2 * 7 + 1];
        double uniforms[2 * 7 + 1];
        for (int r = 0; r < rows; r++) {
            float *row = x + (size_t)r * n;
            params[r] = rules[r % n_rules];
            uniforms[r] = (double)((r * 7919) % 1000) / 1000.0 + 0.0003;
            if (r < n_rules)  // peaked: a few tokens far above the other 154k
                for (int k = 0; k < 12; k++) row[(k * 104729 + r) % n] += 30.0f - (float)k;
        }
        for (int i = 0; i < n; i++) x[(size_t)(rows - 1) * n + i] = -INFINITY;  // no distribution
        int32_t want[2 * 7 + 1], got[2 * 7 + 1];
        for (int r = 0; r < rows; r++) want[r] = glint_sample_draw(&params[r], x + (size_t)r * n, n, uniforms[r], w);
        float *dx = to_device(x, sizeof(float) * rows * n);
        for (int r = 0; r < rows; r++) got[r] = -7;
        gpu->sample(gpu, got, dx, rows, n, params, uniforms);
        int same = 1, declined = 0;
        for (int r = 0; r < rows; r++) {
            const int keeps_all = params[r].top_p >= 1.0f && params[r].top_k <= 0 && params[r].min_p <= 0.0f;
            const int may_decline = r >= n_rules || (keeps_all && n > 2048);  // flat, -inf, or every token kept
            if (got[r] == -1 && may_decline) {
                declined++;
                continue;
            }
            if (got[r] != want[r]) {
                same = 0;
                fprintf(stderr, "  sample row %d of %d: device %d, host %d\n", r, n, got[r], want[r]);
            }
        }
        char what[120];
        snprintf(what, sizeof what, "sample %d rows of %d = glint_sample_draw (%d flat / -inf rows declined)", rows, n,
                 declined);
        expect(same && got[rows - 1] == -1, what);
        free(x), gpu->free(gpu, dx);
        glint_sample_scratch_free(w);
    }
}

// Side lines: a line that waits for another (branch_wait) sees what that line wrote. Line 3 makes y
// with a ~100 MB matmul while line 2, told to wait for it, copies y; without the wait the copy would
// run at once and read the poison.
static void test_branch_wait(void) {
    printf("branch_wait\n");
    const int64_t N = 6144, K = 8192;
    test_weight w = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, N, K, 0);
    float *x = rand_floats((size_t)K, 1.0f), *ref = malloc(sizeof(float) * N);
    cpu->matmul(cpu, ref, (int)N, x, (int)K, 1, &w.host);
    float *dx = to_device(x, sizeof(float) * K), *dy = to_device(NULL, sizeof(float) * N);
    float *dz = to_device(NULL, sizeof(float) * N);
    poison(dy, (size_t)N), poison(dz, (size_t)N);
    gpu->branch(gpu, 3);
    gpu->matmul(gpu, dy, (int)N, dx, (int)K, 1, &w.dev);
    gpu->branch(gpu, 2);
    gpu->branch_wait(gpu, 3);
    gpu->copy_rows(gpu, dz, (int)N, dy, (int)N, 1, (int)N);
    gpu->branch(gpu, 0);
    gpu->join(gpu);
    float *got = from_device(dz, (size_t)N);
    check("line 2 copies what line 3 made (branch_wait)", got, ref, (size_t)N);
    // a line with nothing to wait for is an error, not a silent no-op
    gpu->branch_wait(gpu, 1);
    expect(strstr(glint_last_error(), "side line 1") != NULL, "branch_wait on a line with no work: error");
    free(from_device(dz, 1));  // the failed op's step ends here (its download is NaN)
    gpu->free(gpu, dx), gpu->free(gpu, dy), gpu->free(gpu, dz);
    free_host_weight(&w.host, 0);
    free(x), free(ref), free(got);
}

// matmul_rope (backend.h): the projections the model ropes right after (the DSA indexer's queries,
// 32 heads of 128 roped at [0, 64); q_b, heads of 256 roped at [192, 256)) in one launch, bitwise the
// GPU's matmul then rope, near the CPU's, and each row of a batch bitwise the row alone; declined
// (nothing done) where it does not apply. Declined everywhere with GLINT_CUDA_MATMUL_ROPE=0 (on by
// default). The shapes reach both of the GEMV's epilogues (q_b's
// 16384 BF16 rows take one warp per row group on H200, the 4096-row ones two or more) and T = 17 and
// 64 its later token chunks.
static void test_matmul_rope(void) {
    printf("matmul_rope\n");
    if (!gpu->matmul_rope) {
        printf("  not tested: the backend has it off (GLINT_CUDA_FUSED=0)\n");
        return;
    }
    const char *mode = getenv("GLINT_CUDA_MATMUL_ROPE");
    const int enabled = !mode || strcmp(mode, "0") != 0;  // as glint_cuda_switch reads it (default on)
    const int rope_dim = 64, K = 2048;
    float inv_freq[32];
    for (int i = 0; i < 32; i++) inv_freq[i] = (float)pow(1e6, -2.0 * i / 64.0);
    int32_t pos[64] = {0, 7, 1000, 50000, 202000, 3, 9, 4096};
    for (int i = 8; i < 64; i++) pos[i] = (int32_t)(((uint32_t)i * 2654435761u) % 202753u);
    int32_t *dpos = to_device(pos, sizeof pos);
    static const int heads[][3] = {{32, 128, 0}, {16, 256, 192}, {64, 256, 192}};  // n_heads, head_stride, offset
    static const int Ts[] = {1, 2, 3, 5, 8, 17, 64};
    for (size_t f = 0; f < N_FORMATS; f++) {
        const test_format *tf = &ALL_FORMATS[f];
        const int covered = (tf->f == GLINT_WFMT_DENSE && tf->d == GLINT_DTYPE_BF16) || tf->f == GLINT_WFMT_NVFP4 ||
                            tf->f == GLINT_WFMT_FP8_BLOCK;
        for (int hc = 0; hc < 3; hc++) {
            const int H = heads[hc][0], hs = heads[hc][1], offset = heads[hc][2], N = H * hs;
            test_weight w = make_weight(tf->f, tf->d, N, K, tf->block);
            for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
                const int T = Ts[ti];
                if (!covered && T > 1) break;  // one declined call per format and shape
                float *x = rand_floats((size_t)T * K, 1.0f), *ref = malloc(sizeof(float) * T * N);
                float *dx = to_device(x, sizeof(float) * T * K), *dy = to_device(NULL, sizeof(float) * T * N);
                float *dp = to_device(NULL, sizeof(float) * T * N);
                poison(dy, (size_t)T * N);
                const int handled = gpu->matmul_rope(gpu, dy, N, dx, K, T, &w.dev, H, hs, offset, rope_dim, dpos,
                                                     inv_freq, 1.3f);
                char what[128];
                snprintf(what, sizeof what, "matmul_rope %s %dx%d at [%d, %d) T=%d: %s", format_name(tf->f, tf->d), H,
                         hs, offset, offset + rope_dim, T, enabled && covered ? "taken" : "declined");
                expect(handled == (enabled && covered), what);
                if (handled) {
                    cpu->matmul(cpu, ref, N, x, K, T, &w.host);
                    cpu->rope(cpu, ref, T, H, hs, N, offset, rope_dim, pos, inv_freq, 1.3f);
                    float *got = from_device(dy, (size_t)T * N);
                    snprintf(what, sizeof what, "matmul_rope %s %dx%d T=%d vs the CPU", format_name(tf->f, tf->d), H,
                             hs, T);
                    check(what, got, ref, (size_t)T * N);
                    poison(dp, (size_t)T * N);
                    gpu->matmul(gpu, dp, N, dx, K, T, &w.dev);
                    gpu->rope(gpu, dp, T, H, hs, N, offset, rope_dim, dpos, inv_freq, 1.3f);
                    float *plain = from_device(dp, (size_t)T * N);
                    snprintf(what, sizeof what, "matmul_rope %s T=%d bitwise = matmul, rope", format_name(tf->f, tf->d),
                             T);
                    expect(!memcmp(got, plain, sizeof(float) * T * N), what);
                    int same = 1;
                    for (int t = 0; t < T && T > 1; t++) {
                        poison(dp, (size_t)N);
                        gpu->matmul_rope(gpu, dp, N, dx + (size_t)t * K, K, 1, &w.dev, H, hs, offset, rope_dim,
                                         dpos + t, inv_freq, 1.3f);
                        float *alone = from_device(dp, (size_t)N);
                        same &= !memcmp(alone, got + (size_t)t * N, sizeof(float) * N);
                        free(alone);
                    }
                    snprintf(what, sizeof what, "matmul_rope %s T=%d: rows alone bitwise = batched",
                             format_name(tf->f, tf->d), T);
                    if (T > 1) expect(same, what);
                    free(got), free(plain);
                } else {  // nothing written
                    float *got = from_device(dy, (size_t)T * N);
                    int untouched = 1;
                    for (size_t i = 0; i < (size_t)T * N; i++) untouched &= isnan(got[i]);
                    expect(untouched, "matmul_rope declined: nothing written");
                    free(got);
                }
                free(x), free(ref), gpu->free(gpu, dx), gpu->free(gpu, dy), gpu->free(gpu, dp);
            }
            free_host_weight(&w.host, 0);
        }
    }
    {  // shapes it does not take (nothing written): T > 64, heads that do not tile the rows, an odd offset
        test_weight w = make_weight(GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 32 * 128, 256, 0);
        float *dx = to_device(NULL, sizeof(float) * 65 * 256), *dy = to_device(NULL, sizeof(float) * 65 * 4096);
        int32_t *dpos65 = to_device(NULL, sizeof(int32_t) * 65);
        poison(dy, (size_t)65 * 4096);
        int declined = !gpu->matmul_rope(gpu, dy, 4096, dx, 256, 65, &w.dev, 32, 128, 0, 64, dpos65, inv_freq, 1.0f);
        expect(declined, "matmul_rope declines T > 64");
        declined = !gpu->matmul_rope(gpu, dy, 4096, dx, 256, 1, &w.dev, 31, 128, 0, 64, dpos, inv_freq, 1.0f);
        expect(declined, "matmul_rope declines heads that do not tile the rows");
        declined = !gpu->matmul_rope(gpu, dy, 4096, dx, 256, 1, &w.dev, 32, 128, 1, 64, dpos, inv_freq, 1.0f);
        expect(declined, "matmul_rope declines an odd offset");
        float *got = from_device(dy, (size_t)65 * 4096);
        int untouched = 1;
        for (size_t i = 0; i < (size_t)65 * 4096; i++) untouched &= isnan(got[i]);
        expect(untouched, "matmul_rope declined shapes: nothing written");
        free(got), gpu->free(gpu, dx), gpu->free(gpu, dy), gpu->free(gpu, dpos65), free_host_weight(&w.host, 0);
    }
    gpu->free(gpu, dpos);
}

int main(int argc, char **argv) {
    const int quick = argc > 1 && !strcmp(argv[1], "--quick");
    cpu = glint_backend_cpu(0);
    gpu = glint_backend_cuda(0);
    if (!gpu) {
        fprintf(stderr, "test_cuda_ops: %s\n", glint_last_error());
        return 1;
    }
    const char *tc_mode = getenv("GLINT_CUDA_TC");
    if (tc_mode && !strcmp(tc_mode, "bf16")) prefill_tolerance = FAST_TC_TOLERANCE;
    printf("device: %s%s; GLINT_CUDA_TC=%s, T > 64 tolerance %.0e\n", gpu->describe(gpu), quick ? " (quick)" : "",
           tc_mode ? tc_mode : "(unset)", prefill_tolerance);
    test_matmul(quick);
    test_matmul_prefill(quick);
    test_row_invariance();
    test_embed_norms();
    test_fused_ops();
    test_matmul_rope();
    test_argmax();
    test_sample();
    test_edit_logits();
    test_indexer(quick);
    test_mla(quick);
    test_moe(quick);
    test_branch_wait();
    test_errors();
    printf("%d of %d checks failed; worst passing error %.2e (all but T > 64), %.2e (T > 64 matmul / MoE)\n",
           failures, checks, worst_error, worst_tc_error);
    return failures ? 1 : 0;
}
