// CPU matrix multiply y = x · W^T with weights in checkpoint format (F32, BF16, F16, FP8 E4M3
// without scales), FP32 accumulation. AVX-512 / AVX2 paths are chosen at run time.
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_simd.h"
#include "common/util.h"

// Reference dot products (any x86-64).
static float dot_f32_generic(const float *w, const float *x, int64_t K) {
    float acc = 0;
    for (int64_t k = 0; k < K; k++) acc += w[k] * x[k];
    return acc;
}
static float dot_bf16_generic(const uint16_t *w, const float *x, int64_t K) {
    float acc = 0;
    for (int64_t k = 0; k < K; k++) acc += glint_bf16_to_f32(w[k]) * x[k];
    return acc;
}
static float dot_f16_generic(const uint16_t *w, const float *x, int64_t K) {
    float acc = 0;
    for (int64_t k = 0; k < K; k++) acc += glint_f16_to_f32(w[k]) * x[k];
    return acc;
}
static float dot_fp8_generic(const uint8_t *w, const float *x, int64_t K) {
    float acc = 0;
    for (int64_t k = 0; k < K; k++) acc += glint_fp8e4m3_to_f32(w[k]) * x[k];
    return acc;
}

__attribute__((target("avx2,fma"))) static float dot_f32_avx2(const float *w, const float *x, int64_t K) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
    }
    float acc = glint_hsum256(_mm256_add_ps(a0, a1));
    for (; k < K; k++) acc += w[k] * x[k];
    return acc;
}

__attribute__((target("avx2,fma"))) static inline __m256 bf16x8_to_f32(const uint16_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2,fma"))) static float dot_bf16_avx2(const uint16_t *w, const float *x, int64_t K) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        a0 = _mm256_fmadd_ps(bf16x8_to_f32(w + k), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(bf16x8_to_f32(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
    }
    float acc = glint_hsum256(_mm256_add_ps(a0, a1));
    for (; k < K; k++) acc += glint_bf16_to_f32(w[k]) * x[k];
    return acc;
}

__attribute__((target("avx2,fma,f16c"))) static float dot_f16_avx2(const uint16_t *w, const float *x, int64_t K) {
    __m256 a0 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + k))), _mm256_loadu_ps(x + k), a0);
    float acc = glint_hsum256(a0);
    for (; k < K; k++) acc += glint_f16_to_f32(w[k]) * x[k];
    return acc;
}

// prefetch: far ahead for one token streaming rows from memory (see cpu_quant.c); for more tokens
// the rows come from the caches and the prefetches only cost issue slots.
__attribute__((target("avx512f,avx512bw"))) static inline __attribute__((always_inline)) float
bf16_dot_avx512(const uint16_t *w, const float *x, int64_t K, const int prefetch) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        if (prefetch) _mm_prefetch((const char *)(w + k) + 6144, _MM_HINT_T0);
        __m512 w0 = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + k))), 16));
        __m512 w1 = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + k + 16))), 16));
        a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + k + 16), a1);
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; k < K; k++) acc += glint_bf16_to_f32(w[k]) * x[k];
    return acc;
}
__attribute__((target("avx512f,avx512bw"))) static float dot_bf16_avx512(const uint16_t *w, const float *x,
                                                                         int64_t K) {
    return bf16_dot_avx512(w, x, K, 0);
}
__attribute__((target("avx512f,avx512bw"))) static float dot_bf16_avx512_stream(const uint16_t *w, const float *x,
                                                                                int64_t K) {
    return bf16_dot_avx512(w, x, K, 1);
}

__attribute__((target("avx512f"))) static float dot_f32_avx512(const float *w, const float *x, int64_t K) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 16), _mm512_loadu_ps(x + k + 16), a1);
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; k < K; k++) acc += w[k] * x[k];
    return acc;
}

// y[0..n) += a · row[0..n), row in BF16 or F32.
static void axpy_generic(float *y, const void *row, glint_dtype dtype, float a, int64_t n) {
    if (dtype == GLINT_DTYPE_BF16)
        for (int64_t i = 0; i < n; i++) y[i] += a * glint_bf16_to_f32(((const uint16_t *)row)[i]);
    else if (dtype == GLINT_DTYPE_F32)
        for (int64_t i = 0; i < n; i++) y[i] += a * ((const float *)row)[i];
    else if (dtype == GLINT_DTYPE_F16)
        for (int64_t i = 0; i < n; i++) y[i] += a * glint_f16_to_f32(((const uint16_t *)row)[i]);
    else
        for (int64_t i = 0; i < n; i++) y[i] += a * glint_fp8e4m3_to_f32(((const uint8_t *)row)[i]);
}

__attribute__((target("avx512f,avx512bw"))) static void axpy_avx512(float *y, const void *row, glint_dtype dtype,
                                                                     float a, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    if (dtype == GLINT_DTYPE_BF16) {
        const uint16_t *r = row;
        for (; i + 16 <= n; i += 16) {
            __m512 w = _mm512_castsi512_ps(
                _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(r + i))), 16));
            _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, w, _mm512_loadu_ps(y + i)));
        }
    } else if (dtype == GLINT_DTYPE_F32) {
        const float *r = row;
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(r + i), _mm512_loadu_ps(y + i)));
    }
    if (i < n) axpy_generic(y + i, (const char *)row + i * glint_dtype_size(dtype), dtype, a, n - i);
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, const void *row, glint_dtype dtype, float a,
                                                           int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    if (dtype == GLINT_DTYPE_BF16) {
        const uint16_t *r = row;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, bf16x8_to_f32(r + i), _mm256_loadu_ps(y + i)));
    } else if (dtype == GLINT_DTYPE_F32) {
        const float *r = row;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(r + i), _mm256_loadu_ps(y + i)));
    }
    if (i < n) axpy_generic(y + i, (const char *)row + i * glint_dtype_size(dtype), dtype, a, n - i);
}

typedef float (*dot_fn)(const void *w, const float *x, int64_t K);
typedef void (*axpy_fn)(float *y, const void *row, glint_dtype dtype, float a, int64_t n);

static struct {
    int ready;
    dot_fn f32, bf16, f16, fp8;
    axpy_fn axpy;
    const char *isa;
    int bf16_dots;  // AVX512-BF16 dot products allowed (quantized kernels)
} kernels;

void glint_cpu_select_kernels(const char *force_isa) {
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (force_isa && !strcmp(force_isa, "generic")) avx512 = avx2 = 0;
    if (force_isa && !strcmp(force_isa, "avx2")) avx512 = 0;
    // The AVX512-BF16 NVFP4 kernel is opt-in ("avx512-bf16"): one run on another machine returned
    // NaN from it that could not be reproduced, and it measured only a few % faster here.
    kernels.bf16_dots = avx512 && __builtin_cpu_supports("avx512bf16") && force_isa && !strcmp(force_isa, "avx512-bf16");
    kernels.fp8 = (dot_fn)dot_fp8_generic;
    if (avx512) {
        kernels.f32 = (dot_fn)dot_f32_avx512, kernels.bf16 = (dot_fn)dot_bf16_avx512;
        kernels.f16 = (dot_fn)dot_f16_avx2, kernels.isa = "avx512", kernels.axpy = axpy_avx512;
    } else if (avx2) {
        kernels.f32 = (dot_fn)dot_f32_avx2, kernels.bf16 = (dot_fn)dot_bf16_avx2;
        kernels.f16 = (dot_fn)dot_f16_avx2, kernels.isa = "avx2", kernels.axpy = axpy_avx2;
    } else {
        kernels.f32 = (dot_fn)dot_f32_generic, kernels.bf16 = (dot_fn)dot_bf16_generic;
        kernels.f16 = (dot_fn)dot_f16_generic, kernels.isa = "generic", kernels.axpy = axpy_generic;
    }
    kernels.ready = 1;
}

const char *glint_cpu_isa(void) {
    if (!kernels.ready) glint_cpu_select_kernels(getenv("GLINT_CPU_ISA"));
    return kernels.bf16_dots ? "avx512+bf16" : kernels.isa;
}

int glint_cpu_use_bf16(void) {
    if (!kernels.ready) glint_cpu_select_kernels(getenv("GLINT_CPU_ISA"));
    return kernels.bf16_dots;
}

static dot_fn dot_for(glint_dtype dtype) {
    if (!kernels.ready) glint_cpu_select_kernels(getenv("GLINT_CPU_ISA"));
    switch (dtype) {
    case GLINT_DTYPE_F32: return kernels.f32;
    case GLINT_DTYPE_BF16: return kernels.bf16;
    case GLINT_DTYPE_F16: return kernels.f16;
    case GLINT_DTYPE_F8_E4M3: return kernels.fp8;
    default: return NULL;
    }
}

float glint_cpu_dot_f32(const float *a, const float *b, int64_t n) { return dot_for(GLINT_DTYPE_F32)(a, b, n); }

void glint_cpu_axpy(float *y, const void *row, glint_dtype dtype, float a, int64_t n) {
    if (!kernels.ready) glint_cpu_select_kernels(getenv("GLINT_CPU_ISA"));
    kernels.axpy(y, row, dtype, a, n);
}

void *glint_cpu_alloc_aligned(size_t bytes) { return aligned_alloc(64, (bytes + 63) / 64 * 64); }

const float *glint_cpu_aligned_rows(const float *x, int x_stride, int T, int64_t K, int *stride, void **copy) {
    *copy = NULL, *stride = x_stride;
    if ((uintptr_t)x % 64 == 0 && ((size_t)x_stride * sizeof(float) % 64 == 0 || T == 1)) return x;
    const int s = (int)((K + 15) / 16 * 16);
    float *c = glint_cpu_alloc_aligned(sizeof(float) * (size_t)s * (size_t)T);
    if (!c) return NULL;
    for (int t = 0; t < T; t++) memcpy(c + (size_t)t * s, x + (size_t)t * x_stride, sizeof(float) * (size_t)K);
    *copy = c, *stride = s;
    return c;
}

// Rows of W are split across threads; each row is read once for all T tokens (decode: T = 1).
void glint_cpu_matmul(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                      const glint_weight *W) {
    if (W->format != GLINT_WFMT_DENSE) {
        glint_cpu_matmul_quantized(be, y, y_stride, x, x_stride, T, W);
        return;
    }
    dot_fn dot = dot_for(W->dtype);
    if (T == 1 && dot == (dot_fn)dot_bf16_avx512) dot = (dot_fn)dot_bf16_avx512_stream;  // same arithmetic
    const int64_t N = W->rows, K = W->cols;
    const size_t row_bytes = (size_t)K * glint_dtype_size(W->dtype);
    // Aligned rows of x where copying them costs little next to reading the weights (x is read
    // from the caches for every row; the values, and so the results, are the same either way).
    void *copy = NULL;
    int aligned_stride = x_stride;
    const float *xa = kernels.f32 != (dot_fn)dot_f32_generic && (int64_t)T * 16 <= N * (int64_t)glint_dtype_size(W->dtype)
                          ? glint_cpu_aligned_rows(x, x_stride, T, K, &aligned_stride, &copy)
                          : NULL;
    // plain locals for the loop below (not address-taken, so OpenMP passes them by value)
    const float *const xr = xa ? xa : x;  // NULL: not needed, or out of memory
    const int xs = xa ? aligned_stride : x_stride;
    const char *base = W->data;
    int threads = N * K < 65536 ? 1 : be->n_threads;
    // Dynamic chunks (a core slowed by other work gets fewer rows): for one token up to 1 MiB of
    // weights, so that the kernels' prefetch runs ahead within a chunk's consecutive rows; for
    // more tokens ~64 KiB, each row being used T times.
    int64_t chunk_bytes = T > 1 ? 65536 : (int64_t)(N * (int64_t)row_bytes) / (4 * threads);
    chunk_bytes = chunk_bytes > (1 << 20) ? (1 << 20) : chunk_bytes < 65536 ? 65536 : chunk_bytes;
    int chunk = (int)(chunk_bytes / (int64_t)(row_bytes ? row_bytes : 1));
    chunk = chunk < 1 ? 1 : chunk;
#pragma omp parallel for schedule(dynamic, chunk) num_threads(threads)
    for (int64_t n = 0; n < N; n++) {
        const void *row = base + (size_t)n * row_bytes;
        for (int t = 0; t < T; t++) y[(size_t)t * y_stride + n] = dot(row, xr + (size_t)t * xs, K);
    }
    free(copy);
}
