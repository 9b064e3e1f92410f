// CPU kernels for quantized weights (spec/FORMATS.md): NVFP4 (ModelOpt / compressed-tensors),
// FP8 E4M3 with 128x128 block scales, GPTQ int4. Weights are dequantized in registers (batches of
// 4+ tokens: once per row into memory, then the same operations per token); activations stay FP32
// and accumulation is FP32, so results match a dequantized FP32 model closely. Each output's
// operations do not depend on T (see the dispatch below).
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_simd.h"
#include "common/util.h"

static const float e2m1_values[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

static float fp8_table[256];
static pthread_once_t fp8_table_once = PTHREAD_ONCE_INIT;

static void fill_tables(void) {
    for (int i = 0; i < 256; i++) fp8_table[i] = glint_fp8e4m3_to_f32((uint8_t)i);
}

// Tensor-parallel ranks run these kernels on several threads at once.
static void init_tables(void) { pthread_once(&fp8_table_once, fill_tables); }

// ---------------------------------------------------------------------------------------------
// NVFP4: one row of [K] against x[K]

static float nvfp4_dot_generic(const uint8_t *codes, const uint8_t *scales, const float *x, int64_t K) {
    float acc = 0;
    for (int64_t b = 0; b < K / 16; b++) {
        float block = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t byte = codes[b * 8 + j];
            block += e2m1_values[byte & 15] * x[b * 16 + 2 * j] + e2m1_values[byte >> 4] * x[b * 16 + 2 * j + 1];
        }
        acc += block * fp8_table[scales[b]];
    }
    return acc;
}

// Plain element order (only when there is no memory for the grouped kernel's copy of x).
__attribute__((target("avx512f,avx512bw"))) static float nvfp4_dot_avx512_plain(const uint8_t *codes,
                                                                                const uint8_t *scales,
                                                                                const float *x, int64_t K) {
    const __m512 lut = _mm512_loadu_ps(e2m1_values);
    const __m128i low_mask = _mm_set1_epi8(0x0f);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= K / 16; b += 2) {  // 32 weights: 16 bytes of codes
        __m128i raw = _mm_loadu_si128((const __m128i *)(codes + b * 8));
        __m128i lo = _mm_and_si128(raw, low_mask), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low_mask);
        // element order: byte j holds elements 2j (low) and 2j+1 (high)
        __m512 w0 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)), lut);
        __m512 w1 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi)), lut);
        acc0 = _mm512_fmadd_ps(_mm512_mul_ps(w0, _mm512_loadu_ps(x + b * 16)), _mm512_set1_ps(fp8_table[scales[b]]),
                               acc0);
        acc1 = _mm512_fmadd_ps(_mm512_mul_ps(w1, _mm512_loadu_ps(x + b * 16 + 16)),
                               _mm512_set1_ps(fp8_table[scales[b + 1]]), acc1);
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (b < K / 16) acc += nvfp4_dot_generic(codes + b * 8, scales + b, x + b * 16, 16);
    return acc;
}

// NVFP4 with AVX512-BF16 dot products. E2M1 values are exact in BF16, and x is split into two BF16
// parts (x = hi + lo, exact to ~2^-17 relative), so two VDPBF16PS per weight pair give FP32-class
// products at half the instructions of the FP32 path. x_prep holds, per 64 elements, the BF16
// [even hi | odd hi | even lo | odd lo] (32 each); a tail of fewer than 64 elements uses x directly.
// Each FP32 lane of a dot covers 4 consecutive elements, so lanes 4j..4j+3 are one block.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static float nvfp4_dot_bf16(const uint8_t *codes,
                                                                                 const uint8_t *scales,
                                                                                 const uint16_t *x_prep,
                                                                                 const float *x, int64_t K) {
    static const uint16_t lut_bf16[32] = {0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0,
                                          0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0,
                                          0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0,
                                          0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0};
    const __m512i lut = _mm512_loadu_si512(lut_bf16);  // indexed by the low 5 bits: two copies
    const __m512i clear_bit14 = _mm512_set1_epi16((short)0xBFFF);
    const __m512i four_blocks = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 16 <= K / 16; b += 16) {  // 256 weights: 16 block scales decoded at once (E4M3 -> F16)
        __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(scales + b)));
        __m512 svec = _mm512_mul_ps(
            _mm512_cvtph_ps(_mm256_and_si256(_mm256_slli_epi16(s16, 7), _mm512_castsi512_si256(clear_bit14))),
            _mm512_set1_ps(256.0f));
        for (int j = 0; j < 16; j += 4) {  // 64 weights = 32 code bytes
            const int64_t bb = b + j;
            const uint16_t *xp = x_prep + (bb / 4) * 128;
            __m512i lanes = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(codes + bb * 8)));
            __m512bh w_even = (__m512bh)_mm512_permutexvar_epi16(lanes, lut);
            __m512bh w_odd = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(lanes, 4), lut);
            __m512 p0 = _mm512_dpbf16_ps(_mm512_setzero_ps(), w_even, (__m512bh)_mm512_loadu_si512(xp));
            __m512 p1 = _mm512_dpbf16_ps(_mm512_setzero_ps(), w_odd, (__m512bh)_mm512_loadu_si512(xp + 32));
            p0 = _mm512_dpbf16_ps(p0, w_even, (__m512bh)_mm512_loadu_si512(xp + 64));
            p1 = _mm512_dpbf16_ps(p1, w_odd, (__m512bh)_mm512_loadu_si512(xp + 96));
            __m512 s = _mm512_permutexvar_ps(_mm512_add_epi32(four_blocks, _mm512_set1_epi32(j)), svec);
            if (j & 4) acc1 = _mm512_fmadd_ps(_mm512_add_ps(p0, p1), s, acc1);
            else acc0 = _mm512_fmadd_ps(_mm512_add_ps(p0, p1), s, acc0);
        }
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (b < K / 16) acc += nvfp4_dot_generic(codes + b * 8, scales + b, x + b * 16, K - b * 16);
    return acc;
}

// x -> the layout nvfp4_dot_bf16 reads (whole groups of 256 elements; the rest stays in x).
static void prepare_bf16_pairs(const float *x, uint16_t *out, int64_t K) {
    for (int64_t g = 0; g < K / 256 * 256; g += 64) {
        uint16_t *o = out + (g / 64) * 128;
        for (int j = 0; j < 32; j++) {
            float even = x[g + 2 * j], odd = x[g + 2 * j + 1];
            uint16_t eh = glint_f32_to_bf16(even), oh = glint_f32_to_bf16(odd);
            o[j] = eh, o[32 + j] = oh;
            o[64 + j] = glint_f32_to_bf16(even - glint_bf16_to_f32(eh));
            o[96 + j] = glint_f32_to_bf16(odd - glint_bf16_to_f32(oh));
        }
    }
}

// NVFP4 on AVX-512, grouped. Per group of 128 elements (8 blocks of 16, 64 code bytes) one VPERMD
// puts into lane i the 4 code bytes 4·(i / 8) .. 4·(i / 8) + 3 of block i % 8, so every lane stays
// in one block: vector j (j = 0..3) takes byte j of each lane, i.e. elements 2(j + 4·(i / 8)) (low
// nibble) and that + 1 (high nibble), by a shift. The E2M1 table lookup is one VPERMPS per 16
// weights, and the block scales are applied once per group: a lane-wise vector of the 8 scales
// (twice). x is permuted once per call into the same lane order (nvfp4_prep_x_grouped).
//
// The arithmetic of one output is fixed (it defines the result, which batching must not change):
// per group g, with W[0..7] the decoded vectors [even_0, odd_0, .., even_3, odd_3] and X[0..7] the
// matching x vectors, a = W0·X0 then a += Wi·Xi for i = 1..7 (FMAs, one chain), tot += a · S_g
// (FMA), S_g the group's scales F16-decoded (true value / 256); the row is reduce(tot) · 256 plus
// the tail blocks past the last whole group (nvfp4_dot_generic on x in plain order). The T = 1
// kernel decodes in registers; the batched one decodes rows once into memory and runs the same
// operations on them, several rows and tokens at a time (an outer product in registers).
#define T_NV __attribute__((target("avx512f,avx512bw,f16c")))
#define ALWAYS_INLINE __attribute__((always_inline)) inline
enum { NV_GROUP_FLOATS = 144, NV_PREFETCH = 8192 };  // decoded group: 8 W vectors + S_g

T_NV static ALWAYS_INLINE void nv_decode_group(const uint8_t *c, __m512 lut, __m512 w[8]) {
    // lane i <- the dword holding bytes (i % 8)·8 + 4·(i / 8) .. + 3; byte j of it is vector j's code pair
    const __m512i dwords = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i v = _mm512_permutexvar_epi32(dwords, _mm512_loadu_si512(c));
    w[0] = _mm512_permutexvar_ps(v, lut);  // VPERMPS reads the low 4 bits of each lane
    w[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut);
#pragma GCC unroll 3
    for (int j = 1; j < 4; j++) {
        w[2 * j] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 8 * j), lut);
        w[2 * j + 1] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 8 * j + 4), lut);
    }
}

// The FP8 E4M3 block scales of 16 blocks (groups g, g+1) as F16-decoded values (true / 256): lanes
// [s0..s7 s0..s7] and [s8..s15 s8..s15]. E4M3 -> F16: sign-extend, shift left by 7, clear bit 14.
T_NV static ALWAYS_INLINE void nv_scales16(const uint8_t *s, __m512 *lo, __m512 *hi) {
    __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)s));
    __m512 v = _mm512_cvtph_ps(_mm256_and_si256(_mm256_slli_epi16(s16, 7), _mm256_set1_epi16((short)0xBFFF)));
    *lo = _mm512_permutexvar_ps(_mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0), v);
    *hi = _mm512_permutexvar_ps(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 15, 14, 13, 12, 11, 10, 9, 8), v);
}
T_NV static ALWAYS_INLINE __m512 nv_scales8(const uint8_t *s) {
    __m128i s16 = _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)s));
    __m256 v = _mm256_cvtph_ps(_mm_and_si128(_mm_slli_epi16(s16, 7), _mm_set1_epi16((short)0xBFFF)));
    return _mm512_permutexvar_ps(_mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0),
                                 _mm512_castps256_ps512(v));
}

T_NV static ALWAYS_INLINE __m512 nv_group_dot(const __m512 w[8], const float *xg) {
    __m512 a = _mm512_mul_ps(w[0], _mm512_loadu_ps(xg));
#pragma GCC unroll 8
    for (int i = 1; i < 8; i++) a = _mm512_fmadd_ps(w[i], _mm512_loadu_ps(xg + 16 * i), a);
    return a;
}

// x -> the lane order of nvfp4_dot_grouped: per group of 128, [even_j | odd_j] for j = 0..3 (see
// above), one gather per vector; the elements past the last whole group stay in plain order.
T_NV static void nvfp4_prep_x_grouped(const float *x, float *xq, int64_t K) {
    __m512i idx[8];
    for (int v = 0; v < 8; v++) {  // vector v = 2j + (odd): lane i <- element (i % 8)·16 + 2(j + 4(i / 8)) + odd
        int32_t lanes[16];
        for (int i = 0; i < 16; i++) lanes[i] = (i & 7) * 16 + 2 * (v / 2 + 4 * (i >> 3)) + v % 2;
        idx[v] = _mm512_loadu_si512(lanes);
    }
    int64_t g0 = 0;
    for (; g0 + 128 <= K; g0 += 128)
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) _mm512_storeu_ps(xq + g0 + 16 * v, _mm512_i32gather_ps(idx[v], x + g0, 4));
    for (int64_t k = g0; k < K; k++) xq[k] = x[k];
}

T_NV static float nvfp4_dot_grouped(const uint8_t *codes, const uint8_t *scales, const float *xq, int64_t K) {
    const __m512 lut = _mm512_loadu_ps(e2m1_values);
    const int64_t G = K / 128;
    __m512 tot = _mm512_setzero_ps(), w[8], s0, s1;
    int64_t g = 0;
    for (; g + 2 <= G; g += 2) {
        // far ahead: at two cores the hardware prefetcher alone leaves the memory bus idle
        _mm_prefetch((const char *)codes + g * 64 + NV_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)codes + g * 64 + 64 + NV_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)scales + g * 8 + NV_PREFETCH / 8, _MM_HINT_T0);
        nv_scales16(scales + g * 8, &s0, &s1);
        nv_decode_group(codes + g * 64, lut, w);
        tot = _mm512_fmadd_ps(nv_group_dot(w, xq + g * 128), s0, tot);
        nv_decode_group(codes + g * 64 + 64, lut, w);
        tot = _mm512_fmadd_ps(nv_group_dot(w, xq + g * 128 + 128), s1, tot);
    }
    if (g < G) {
        nv_decode_group(codes + g * 64, lut, w);
        tot = _mm512_fmadd_ps(nv_group_dot(w, xq + g * 128), nv_scales8(scales + g * 8), tot);
    }
    float acc = _mm512_reduce_add_ps(tot) * 256.0f;
    if (G * 128 < K) acc += nvfp4_dot_generic(codes + G * 64, scales + G * 8, xq + G * 128, K - G * 128);
    return acc;
}

// One row decoded for the batched kernel: per group the 8 W vectors and S_g (NV_GROUP_FLOATS).
T_NV static void nvfp4_decode_row_grouped(const uint8_t *codes, const uint8_t *scales, float *d, int64_t K) {
    const __m512 lut = _mm512_loadu_ps(e2m1_values);
    const int64_t G = K / 128;
    __m512 w[8], s[2];
    for (int64_t g = 0; g < G; g++) {
        nv_decode_group(codes + g * 64, lut, w);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) _mm512_storeu_ps(d + g * NV_GROUP_FLOATS + 16 * i, w[i]);
        if (g % 2 == 0 && g + 2 <= G) nv_scales16(scales + g * 8, &s[0], &s[1]);
        else if (g % 2 == 0) s[0] = nv_scales8(scales + g * 8);
        _mm512_storeu_ps(d + g * NV_GROUP_FLOATS + 128, s[g % 2]);
    }
}

// Two decoded rows d0, d1 times C tokens xs[0..C) (xs[t] in nvfp4_prep_x_grouped order), the
// operations of nvfp4_dot_grouped per output without the tail blocks: out[r·C + t] = row r · token t.
T_NV static ALWAYS_INLINE void nv_tile(const float *d0, const float *d1, const float *const *xs, int64_t G,
                                          const int C, float *out) {
    __m512 tot[2][4], a[2][4];
#pragma GCC unroll 4
    for (int t = 0; t < C; t++) tot[0][t] = tot[1][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; g++) {
        const float *e0 = d0 + g * NV_GROUP_FLOATS, *e1 = d1 + g * NV_GROUP_FLOATS;
        __m512 w0 = _mm512_loadu_ps(e0), w1 = _mm512_loadu_ps(e1);
#pragma GCC unroll 4
        for (int t = 0; t < C; t++) {
            __m512 xv = _mm512_loadu_ps(xs[t] + g * 128);
            a[0][t] = _mm512_mul_ps(w0, xv), a[1][t] = _mm512_mul_ps(w1, xv);
        }
#pragma GCC unroll 8
        for (int i = 1; i < 8; i++) {
            w0 = _mm512_loadu_ps(e0 + 16 * i), w1 = _mm512_loadu_ps(e1 + 16 * i);
#pragma GCC unroll 4
            for (int t = 0; t < C; t++) {
                __m512 xv = _mm512_loadu_ps(xs[t] + g * 128 + 16 * i);
                a[0][t] = _mm512_fmadd_ps(w0, xv, a[0][t]), a[1][t] = _mm512_fmadd_ps(w1, xv, a[1][t]);
            }
        }
        const __m512 s0 = _mm512_loadu_ps(e0 + 128), s1 = _mm512_loadu_ps(e1 + 128);
#pragma GCC unroll 4
        for (int t = 0; t < C; t++)
            tot[0][t] = _mm512_fmadd_ps(a[0][t], s0, tot[0][t]), tot[1][t] = _mm512_fmadd_ps(a[1][t], s1, tot[1][t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < C; t++)
        out[t] = _mm512_reduce_add_ps(tot[0][t]) * 256.0f, out[C + t] = _mm512_reduce_add_ps(tot[1][t]) * 256.0f;
}
T_NV static void nvfp4_tile4_grouped(const float *d0, const float *d1, const float *const *xs, int64_t K, float *out) {
    nv_tile(d0, d1, xs, K / 128, 4, out);
}
T_NV static void nvfp4_tile1_grouped(const float *d0, const float *d1, const float *const *xs, int64_t K, float *out) {
    nv_tile(d0, d1, xs, K / 128, 1, out);
}

#define T_AVX2 __attribute__((target("avx2,fma,f16c")))

// The 16 E2M1 values of one NVFP4 block (8 code bytes), element order, into v[0..1].
T_AVX2 static ALWAYS_INLINE void nv_decode_block_avx2(const uint8_t *codes, __m256 lut_lo, __m256 lut_hi, __m256 v[2]) {
    const __m128i low_mask = _mm_set1_epi8(0x0f);
    __m128i raw = _mm_loadl_epi64((const __m128i *)codes);
    __m128i lo = _mm_and_si128(raw, low_mask), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low_mask);
    __m128i idx = _mm_unpacklo_epi8(lo, hi);  // 16 codes in element order
    for (int half = 0; half < 2; half++) {
        __m256i i8 = _mm256_cvtepu8_epi32(half ? _mm_srli_si128(idx, 8) : idx);
        // codes 0-7 from lut_lo, 8-15 from lut_hi (bit 3 selects)
        v[half] = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lut_lo, i8), _mm256_permutevar8x32_ps(lut_hi, i8),
                                   _mm256_castsi256_ps(_mm256_slli_epi32(i8, 28)));
    }
}

// NVFP4 on AVX2. Per output: acc += (v · x) · s per 8 elements (a multiply and an FMA) in element
// order, s the block's scale, one vector accumulator; then glint_hsum256. The batched kernel decodes
// rows into memory (nvfp4_decode_row_avx2) and runs the same operations.
T_AVX2 static float nvfp4_dot_avx2(const uint8_t *codes, const uint8_t *scales, const float *x, int64_t K) {
    const __m256 lut_lo = _mm256_loadu_ps(e2m1_values), lut_hi = _mm256_loadu_ps(e2m1_values + 8);
    __m256 acc = _mm256_setzero_ps(), v[2];
    for (int64_t b = 0; b < K / 16; b++) {
        _mm_prefetch((const char *)codes + b * 8 + 4096, _MM_HINT_T0);
        nv_decode_block_avx2(codes + b * 8, lut_lo, lut_hi, v);
        __m256 s = _mm256_set1_ps(fp8_table[scales[b]]);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(v[0], _mm256_loadu_ps(x + b * 16)), s, acc);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(v[1], _mm256_loadu_ps(x + b * 16 + 8)), s, acc);
    }
    return glint_hsum256(acc);
}

// One row for the batched AVX2 kernel: K decoded values, then the K / 16 block scales.
T_AVX2 static void nvfp4_decode_row_avx2(const uint8_t *codes, const uint8_t *scales, float *d, int64_t K) {
    const __m256 lut_lo = _mm256_loadu_ps(e2m1_values), lut_hi = _mm256_loadu_ps(e2m1_values + 8);
    __m256 v[2];
    for (int64_t b = 0; b < K / 16; b++) {
        nv_decode_block_avx2(codes + b * 8, lut_lo, lut_hi, v);
        _mm256_storeu_ps(d + b * 16, v[0]), _mm256_storeu_ps(d + b * 16 + 8, v[1]);
        d[K + b] = fp8_table[scales[b]];
    }
}

// Two decoded rows times C (1 or 2) tokens, nvfp4_dot_avx2's operations: out[r·C + t].
T_AVX2 static ALWAYS_INLINE void nv_tile_avx2(const float *d0, const float *d1, const float *const *xs, int64_t K,
                                               const int C, float *out) {
    __m256 acc[2][2];
    for (int t = 0; t < C; t++) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < K / 16; b++) {
        const __m256 s0 = _mm256_set1_ps(d0[K + b]), s1 = _mm256_set1_ps(d1[K + b]);
        for (int half = 0; half < 2; half++) {
            const __m256 w0 = _mm256_loadu_ps(d0 + b * 16 + 8 * half), w1 = _mm256_loadu_ps(d1 + b * 16 + 8 * half);
            for (int t = 0; t < C; t++) {
                const __m256 xv = _mm256_loadu_ps(xs[t] + b * 16 + 8 * half);
                acc[0][t] = _mm256_fmadd_ps(_mm256_mul_ps(w0, xv), s0, acc[0][t]);
                acc[1][t] = _mm256_fmadd_ps(_mm256_mul_ps(w1, xv), s1, acc[1][t]);
            }
        }
    }
    for (int t = 0; t < C; t++) out[t] = glint_hsum256(acc[0][t]), out[C + t] = glint_hsum256(acc[1][t]);
}
T_AVX2 static void nvfp4_tile2_avx2(const float *d0, const float *d1, const float *const *xs, int64_t K, float *out) {
    nv_tile_avx2(d0, d1, xs, K, 2, out);
}
T_AVX2 static void nvfp4_tile1_avx2(const float *d0, const float *d1, const float *const *xs, int64_t K, float *out) {
    nv_tile_avx2(d0, d1, xs, K, 1, out);
}

// ---------------------------------------------------------------------------------------------
// FP8 E4M3 with block scales: one row against x, the scale changing every `block` columns

static float fp8_span_generic(const uint8_t *w, const float *x, int64_t n) {
    float acc = 0;
    for (int64_t k = 0; k < n; k++) acc += fp8_table[w[k]] * x[k];
    return acc;
}

// E4M3 -> F16 in two integer ops: sign-extend the byte to 16 bits and shift left by 7, which puts
// exponent and mantissa into the f16 fields and the sign in bit 15, then clear bit 14 (a copy of
// the sign). The f16 is the E4M3 value times 2^-8 (bias 15 vs 7; subnormals map exactly), undone
// once per span; cvtph converts to f32 in hardware.
__attribute__((target("avx512f,avx512bw"))) static float fp8_span_avx512(const uint8_t *w, const float *x,
                                                                         int64_t n) {
    const __m512i clear_bit14 = _mm512_set1_epi16((short)0xBFFF);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        __m512i h = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + k)));
        h = _mm512_and_si512(_mm512_slli_epi16(h, 7), clear_bit14);
        acc0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), _mm512_loadu_ps(x + k), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), _mm512_loadu_ps(x + k + 16), acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) * 256.0f + fp8_span_generic(w + k, x + k, n - k);
}

#define T512 __attribute__((target("avx512f,avx512bw")))

// A whole FP8-block row on AVX-512 (block sizes that are multiples of 16; others take the span
// path). The arithmetic of one output, shared by the T = 1 kernel and the batched one: weights
// decoded E4M3 -> F16 (value / 256) -> F32; per whole block of B columns, with W_v, X_v its
// 16-column vectors, a = W_0·X_0 then a += W_v·X_v for v = 1..B/16-1 (FMAs, one chain), total +=
// a · (scale · 256) (FMA); the row is reduce(total) plus the columns past the last whole block
// (fp8_span_generic · their scale).
enum { F8_PREFETCH = 12288 };

T512 static ALWAYS_INLINE __m512i f8_to_f16x32(const uint8_t *w) {
    __m512i h = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)w));
    return _mm512_and_si512(_mm512_slli_epi16(h, 7), _mm512_set1_epi16((short)0xBFFF));
}
T512 static ALWAYS_INLINE __m512 f8_to_f32x16(const uint8_t *w) {
    __m256i h = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w));
    return _mm512_cvtph_ps(_mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16((short)0xBFFF)));
}

T512 static float fp8_row_avx512(const uint8_t *w, const float *scales, const float *x, int64_t K, int block) {
    __m512 total = _mm512_setzero_ps();
    int64_t k0 = 0;
    for (; k0 + block <= K; k0 += block) {
        for (int p = 0; p < block; p += 64) _mm_prefetch((const char *)w + k0 + p + F8_PREFETCH, _MM_HINT_T0);
        __m512 a;
        int64_t k = k0 + 32;
        if (block % 32 == 0) {
            __m512i h = f8_to_f16x32(w + k0);
            a = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), _mm512_loadu_ps(x + k0));
            a = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), _mm512_loadu_ps(x + k0 + 16), a);
        } else
            a = _mm512_mul_ps(f8_to_f32x16(w + k0), _mm512_loadu_ps(x + k0)), k = k0 + 16;
        for (; k + 32 <= k0 + block; k += 32) {
            __m512i h = f8_to_f16x32(w + k);
            a = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), _mm512_loadu_ps(x + k), a);
            a = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), _mm512_loadu_ps(x + k + 16), a);
        }
        total = _mm512_fmadd_ps(a, _mm512_set1_ps(scales[k0 / block] * 256.0f), total);
    }
    float acc = _mm512_reduce_add_ps(total);
    if (k0 < K) acc += fp8_span_generic(w + k0, x + k0, K - k0) * scales[k0 / block];
    return acc;
}

// The whole blocks of one row decoded to F32 (the values fp8_row_avx512 multiplies).
T512 static void fp8_decode_row_avx512(const uint8_t *w, float *d, int64_t K, int block) {
    for (int64_t k = 0; k + 16 <= K / block * block; k += 16) _mm512_storeu_ps(d + k, f8_to_f32x16(w + k));
}

// Two decoded rows d0, d1 (scales sc0, sc1) times C tokens xs[0..C), the operations of
// fp8_row_avx512 per output without the columns past the last whole block: out[r·C + t].
T512 static ALWAYS_INLINE void f8_tile(const float *d0, const float *d1, const float *sc0, const float *sc1,
                                        const float *const *xs, int64_t K, int block, const int C, float *out) {
    __m512 tot[2][4], a[2][4];
#pragma GCC unroll 4
    for (int t = 0; t < C; t++) tot[0][t] = tot[1][t] = _mm512_setzero_ps();
    for (int64_t k0 = 0; k0 + block <= K; k0 += block) {
        __m512 w0 = _mm512_loadu_ps(d0 + k0), w1 = _mm512_loadu_ps(d1 + k0);
#pragma GCC unroll 4
        for (int t = 0; t < C; t++) {
            __m512 xv = _mm512_loadu_ps(xs[t] + k0);
            a[0][t] = _mm512_mul_ps(w0, xv), a[1][t] = _mm512_mul_ps(w1, xv);
        }
        for (int64_t k = k0 + 16; k < k0 + block; k += 16) {
            w0 = _mm512_loadu_ps(d0 + k), w1 = _mm512_loadu_ps(d1 + k);
#pragma GCC unroll 4
            for (int t = 0; t < C; t++) {
                __m512 xv = _mm512_loadu_ps(xs[t] + k);
                a[0][t] = _mm512_fmadd_ps(w0, xv, a[0][t]), a[1][t] = _mm512_fmadd_ps(w1, xv, a[1][t]);
            }
        }
        const __m512 s0 = _mm512_set1_ps(sc0[k0 / block] * 256.0f), s1 = _mm512_set1_ps(sc1[k0 / block] * 256.0f);
#pragma GCC unroll 4
        for (int t = 0; t < C; t++)
            tot[0][t] = _mm512_fmadd_ps(a[0][t], s0, tot[0][t]), tot[1][t] = _mm512_fmadd_ps(a[1][t], s1, tot[1][t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < C; t++) out[t] = _mm512_reduce_add_ps(tot[0][t]), out[C + t] = _mm512_reduce_add_ps(tot[1][t]);
}
T512 static void fp8_tile4_avx512(const float *d0, const float *d1, const float *sc0, const float *sc1,
                                  const float *const *xs, int64_t K, int block, float *out) {
    f8_tile(d0, d1, sc0, sc1, xs, K, block, 4, out);
}
T512 static void fp8_tile1_avx512(const float *d0, const float *d1, const float *sc0, const float *sc1,
                                  const float *const *xs, int64_t K, int block, float *out) {
    f8_tile(d0, d1, sc0, sc1, xs, K, block, 1, out);
}

T_AVX2 static ALWAYS_INLINE __m256 f8_to_f32x8(const uint8_t *w) {
    __m128i b16 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)w));
    __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b16, _mm_set1_epi16(0x80)), 8),
                             _mm_slli_epi16(_mm_and_si128(b16, _mm_set1_epi16(0x7f)), 7));
    return _mm256_cvtph_ps(h);
}

T_AVX2 static float fp8_span_avx2(const uint8_t *w, const float *x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) acc = _mm256_fmadd_ps(f8_to_f32x8(w + k), _mm256_loadu_ps(x + k), acc);
    return glint_hsum256(acc) * 256.0f + fp8_span_generic(w + k, x + k, n - k);
}

// A whole FP8-block row on AVX2 (block sizes that are multiples of 8; others take the span path),
// the AVX-512 row kernel's scheme on 8 lanes: per whole block a = W_0·X_0, a += W_v·X_v (one FMA
// chain over its 8-column vectors), total += a · (scale · 256); the row is glint_hsum256(total) plus
// the columns past the last whole block (fp8_span_generic · their scale).
T_AVX2 static float fp8_row_avx2(const uint8_t *w, const float *scales, const float *x, int64_t K, int block) {
    __m256 total = _mm256_setzero_ps();
    int64_t k0 = 0;
    for (; k0 + block <= K; k0 += block) {
        for (int p = 0; p < block; p += 64) _mm_prefetch((const char *)w + k0 + p + 4096, _MM_HINT_T0);
        __m256 a = _mm256_mul_ps(f8_to_f32x8(w + k0), _mm256_loadu_ps(x + k0));
        for (int64_t k = k0 + 8; k < k0 + block; k += 8) a = _mm256_fmadd_ps(f8_to_f32x8(w + k), _mm256_loadu_ps(x + k), a);
        total = _mm256_fmadd_ps(a, _mm256_set1_ps(scales[k0 / block] * 256.0f), total);
    }
    float acc = glint_hsum256(total);
    if (k0 < K) acc += fp8_span_generic(w + k0, x + k0, K - k0) * scales[k0 / block];
    return acc;
}

T_AVX2 static void fp8_decode_row_avx2(const uint8_t *w, float *d, int64_t K, int block) {
    for (int64_t k = 0; k + 8 <= K / block * block; k += 8) _mm256_storeu_ps(d + k, f8_to_f32x8(w + k));
}

// Two decoded rows times C (1 or 2) tokens, fp8_row_avx2's operations (whole blocks): out[r·C + t].
T_AVX2 static ALWAYS_INLINE void f8_tile_avx2(const float *d0, const float *d1, const float *sc0, const float *sc1,
                                               const float *const *xs, int64_t K, int block, const int C, float *out) {
    __m256 tot[2][2], a[2][2];
    for (int t = 0; t < C; t++) tot[0][t] = tot[1][t] = _mm256_setzero_ps();
    for (int64_t k0 = 0; k0 + block <= K; k0 += block) {
        __m256 w0 = _mm256_loadu_ps(d0 + k0), w1 = _mm256_loadu_ps(d1 + k0);
        for (int t = 0; t < C; t++) {
            const __m256 xv = _mm256_loadu_ps(xs[t] + k0);
            a[0][t] = _mm256_mul_ps(w0, xv), a[1][t] = _mm256_mul_ps(w1, xv);
        }
        for (int64_t k = k0 + 8; k < k0 + block; k += 8) {
            w0 = _mm256_loadu_ps(d0 + k), w1 = _mm256_loadu_ps(d1 + k);
            for (int t = 0; t < C; t++) {
                const __m256 xv = _mm256_loadu_ps(xs[t] + k);
                a[0][t] = _mm256_fmadd_ps(w0, xv, a[0][t]), a[1][t] = _mm256_fmadd_ps(w1, xv, a[1][t]);
            }
        }
        const __m256 s0 = _mm256_set1_ps(sc0[k0 / block] * 256.0f), s1 = _mm256_set1_ps(sc1[k0 / block] * 256.0f);
        for (int t = 0; t < C; t++)
            tot[0][t] = _mm256_fmadd_ps(a[0][t], s0, tot[0][t]), tot[1][t] = _mm256_fmadd_ps(a[1][t], s1, tot[1][t]);
    }
    for (int t = 0; t < C; t++) out[t] = glint_hsum256(tot[0][t]), out[C + t] = glint_hsum256(tot[1][t]);
}
T_AVX2 static void fp8_tile2_avx2(const float *d0, const float *d1, const float *sc0, const float *sc1,
                                  const float *const *xs, int64_t K, int block, float *out) {
    f8_tile_avx2(d0, d1, sc0, sc1, xs, K, block, 2, out);
}
T_AVX2 static void fp8_tile1_avx2(const float *d0, const float *d1, const float *sc0, const float *sc1,
                                  const float *const *xs, int64_t K, int block, float *out) {
    f8_tile_avx2(d0, d1, sc0, sc1, xs, K, block, 1, out);
}

// ---------------------------------------------------------------------------------------------
// Dispatch. Every output y[t, n] is computed by the same sequence of floating-point operations
// whatever T is and wherever the row falls in a batch (row invariance: a token's result does not
// depend on the other tokens batched with it). On AVX-512 a batch of four or more tokens decodes
// each row once into memory and runs the T = 1 kernel's operations on it (tiles of 2 rows x 4
// tokens); smaller batches and the other paths run the T = 1 kernel for every token.

typedef float (*nvfp4_dot_fn)(const uint8_t *codes, const uint8_t *scales, const float *x, int64_t K);
typedef float (*fp8_span_fn)(const uint8_t *w, const float *x, int64_t n);

static float fp8_block_scale(const glint_weight *W, int64_t row, int64_t col) {
    int64_t blocks_per_row = (W->cols + W->block - 1) / W->block;
    return ((const float *)W->scales)[(row / W->block) * blocks_per_row + col / W->block];
}

// FP8-block row against x with a span kernel (block sizes the AVX-512 row kernel does not take).
static float fp8_row_spans(const glint_weight *W, int64_t n, const float *x, fp8_span_fn f8) {
    const int64_t K = W->cols;
    const uint8_t *row = (const uint8_t *)W->data + n * K;
    float acc = 0;
    for (int64_t k0 = 0; k0 < K; k0 += W->block) {
        int64_t len = K - k0 < W->block ? K - k0 : W->block;
        acc += f8(row + k0, x + k0, len) * fp8_block_scale(W, n, k0);
    }
    return acc;
}

static float scale_value(const glint_weight *W, size_t index) {
    const uint16_t *s = W->scales;
    return W->scales_dtype == GLINT_DTYPE_BF16 ? glint_bf16_to_f32(s[index]) : glint_f16_to_f32(s[index]);
}

// GPTQ (desc_act false, checked at load: group of column k is k / G): qweight is [K/8, N], so
// outputs are contiguous. Per group the integer codes are accumulated against x, and the zero point
// enters once through the group's sum of x: Σ s·(q - z - 1)·x = s·(Σ q·x - (z + 1)·Σ x).
// Each token runs the same loop, so results do not depend on T.
static void gptq_matmul(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                        const glint_weight *W) {
    enum { COLS = 64 };
    const int64_t N = W->rows, K = W->cols, G = W->block;
    const int32_t *qw = W->data, *qz = W->zeros;
    int threads = N * K < 65536 ? 1 : be->n_threads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t n0 = 0; n0 < N; n0 += COLS) {
        const int nn = (int)(N - n0 < COLS ? N - n0 : COLS);
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * x_stride;
            float acc[COLS] = {0}, group_acc[COLS];
            for (int64_t g0 = 0; g0 < K; g0 += G) {
                const int64_t g1 = g0 + G < K ? g0 + G : K, g = g0 / G;
                float x_sum = 0;
                for (int c = 0; c < nn; c++) group_acc[c] = 0;
                for (int64_t k = g0; k < g1; k++) x_sum += xt[k];
                for (int64_t k8 = g0; k8 < g1; k8 += 8) {
                    const int32_t *packed_row = qw + (k8 / 8) * N + n0;
                    const int jn = (int)(g1 - k8 < 8 ? g1 - k8 : 8);
                    for (int j = 0; j < jn; j++) {
                        const float xk = xt[k8 + j];
                        for (int c = 0; c < nn; c++)
                            group_acc[c] += (float)(((uint32_t)packed_row[c] >> (4 * j)) & 15u) * xk;
                    }
                }
                for (int c = 0; c < nn; c++) {
                    const int64_t n = n0 + c;
                    uint32_t zero = ((uint32_t)qz[g * (N / 8) + n / 8] >> (4 * (n % 8))) & 15u;
                    acc[c] += scale_value(W, (size_t)g * N + n) * (group_acc[c] - (float)(zero + 1) * x_sum);
                }
            }
            for (int c = 0; c < nn; c++) y[(size_t)t * y_stride + n0 + c] = acc[c];
        }
    }
}

typedef enum {
    PATH_NV_GROUPED,  // AVX-512 (batched too)
    PATH_NV_AVX2,     // (batched too)
    PATH_NV_BF16,     // the opt-in AVX512-BF16 kernel
    PATH_NV_PLAIN,    // generic, or AVX-512 when there is no memory for the grouped x
    PATH_F8_AVX512,   // block % 16 == 0 (batched too)
    PATH_F8_AVX2,     // block % 8 == 0 (batched too)
    PATH_F8_SPANS,    // other block sizes, and generic
} quant_path;

typedef struct {
    const glint_weight *W;
    quant_path path;
    nvfp4_dot_fn nv;  // PATH_NV_PLAIN
    fp8_span_fn f8;   // PATH_F8_SPANS
    const float *x;   // x as the kernel reads it (prepared copy or the caller's)
    int64_t x_stride;
    const uint16_t *x_bf16;  // PATH_NV_BF16
    const float *x_plain;    // the caller's x (PATH_NV_BF16 tail)
    int plain_stride;
} quant_job;

// y[t, n] by the T = 1 kernel.
static float quant_dot(const quant_job *j, int64_t n, int t) {
    const glint_weight *W = j->W;
    const int64_t K = W->cols;
    const float *xt = j->x + (size_t)t * (size_t)j->x_stride;
    if (W->format == GLINT_WFMT_NVFP4) {
        const uint8_t *codes = (const uint8_t *)W->data + n * (K / 2), *sc = (const uint8_t *)W->scales + n * (K / 16);
        float d;
        switch (j->path) {
        case PATH_NV_GROUPED: d = nvfp4_dot_grouped(codes, sc, xt, K); break;
        case PATH_NV_AVX2: d = nvfp4_dot_avx2(codes, sc, xt, K); break;
        case PATH_NV_BF16:
            d = nvfp4_dot_bf16(codes, sc, j->x_bf16 + (size_t)t * 2 * (size_t)K,
                               j->x_plain + (size_t)t * (size_t)j->plain_stride, K);
            break;
        default: d = j->nv(codes, sc, xt, K);
        }
        return d * W->global_scale;
    }
    const float *scales = (const float *)W->scales + (n / W->block) * ((K + W->block - 1) / W->block);
    if (j->path == PATH_F8_AVX512) return fp8_row_avx512((const uint8_t *)W->data + n * K, scales, xt, K, W->block);
    if (j->path == PATH_F8_AVX2) return fp8_row_avx2((const uint8_t *)W->data + n * K, scales, xt, K, W->block);
    return fp8_row_spans(W, n, xt, j->f8);
}

// Batched paths: rows [n0, n1) decoded into d (row_floats each), then every token against them in
// tiles of 2 rows x 4 tokens on AVX-512, 2 x 2 on AVX2 (then 2 x 1 for the last tokens; an odd
// last row is paired with itself).
static void quant_rows_batched(const quant_job *j, int64_t n0, int64_t n1, int T, float *d, int64_t row_floats,
                               float *y, int y_stride) {
    const glint_weight *W = j->W;
    const int64_t K = W->cols;
    const int nvfp4 = W->format == GLINT_WFMT_NVFP4, wide = j->path == PATH_NV_GROUPED || j->path == PATH_F8_AVX512;
    const int64_t blocks_per_row = (K + W->block - 1) / W->block;
    for (int64_t n = n0; n < n1; n++) {
        float *dn = d + (n - n0) * row_floats;
        const uint8_t *codes = (const uint8_t *)W->data + n * (nvfp4 ? K / 2 : K);
        const uint8_t *nv_scales = nvfp4 ? (const uint8_t *)W->scales + n * (K / 16) : NULL;
        switch (j->path) {
        case PATH_NV_GROUPED: nvfp4_decode_row_grouped(codes, nv_scales, dn, K); break;
        case PATH_NV_AVX2: nvfp4_decode_row_avx2(codes, nv_scales, dn, K); break;
        case PATH_F8_AVX512: fp8_decode_row_avx512(codes, dn, K, W->block); break;
        default: fp8_decode_row_avx2(codes, dn, K, W->block);
        }
    }
    // columns the tiles cover; the rest goes through the generic code as in the T = 1 kernels
    const int64_t done = j->path == PATH_NV_GROUPED ? K / 128 * 128 : nvfp4 ? K : K / W->block * W->block;
    for (int t = 0; t < T;) {
        const int C = T - t >= (wide ? 4 : 2) ? (wide ? 4 : 2) : 1;
        const float *xs[4];
        for (int c = 0; c < C; c++) xs[c] = j->x + (size_t)(t + c) * (size_t)j->x_stride;
        for (int64_t n = n0; n < n1; n += 2) {
            const int64_t m = n + 1 < n1 ? n + 1 : n;
            const float *d0 = d + (n - n0) * row_floats, *d1 = d + (m - n0) * row_floats;
            const float *sc0 = nvfp4 ? NULL : (const float *)W->scales + (n / W->block) * blocks_per_row;
            const float *sc1 = nvfp4 ? NULL : (const float *)W->scales + (m / W->block) * blocks_per_row;
            float out[8];
            switch (j->path) {
            case PATH_NV_GROUPED: (C == 4 ? nvfp4_tile4_grouped : nvfp4_tile1_grouped)(d0, d1, xs, K, out); break;
            case PATH_NV_AVX2: (C == 2 ? nvfp4_tile2_avx2 : nvfp4_tile1_avx2)(d0, d1, xs, K, out); break;
            case PATH_F8_AVX512:
                (C == 4 ? fp8_tile4_avx512 : fp8_tile1_avx512)(d0, d1, sc0, sc1, xs, K, W->block, out);
                break;
            default: (C == 2 ? fp8_tile2_avx2 : fp8_tile1_avx2)(d0, d1, sc0, sc1, xs, K, W->block, out);
            }
            for (int r = 0; r < 2; r++)
                for (int c = 0; c < C; c++) {
                    const int64_t row = r ? m : n;
                    float acc = out[r * C + c];
                    if (done < K && nvfp4)
                        acc += nvfp4_dot_generic((const uint8_t *)W->data + row * (K / 2) + done / 2,
                                                 (const uint8_t *)W->scales + row * (K / 16) + done / 16, xs[c] + done,
                                                 K - done);
                    else if (done < K)
                        acc += fp8_span_generic((const uint8_t *)W->data + row * K + done, xs[c] + done, K - done) *
                               (r ? sc1 : sc0)[done / W->block];
                    y[(size_t)(t + c) * (size_t)y_stride + row] = nvfp4 ? acc * W->global_scale : acc;
                }
        }
        t += C;
    }
}

void glint_cpu_matmul_quantized(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                                const glint_weight *W) {
    init_tables();
    if (W->format == GLINT_WFMT_GPTQ_INT4) {
        gptq_matmul(be, y, y_stride, x, x_stride, T, W);
        return;
    }
    const char *isa = glint_cpu_isa();
    const int avx512 = !strncmp(isa, "avx512", 6), avx2 = !strcmp(isa, "avx2");
    const int64_t N = W->rows, K = W->cols;
    quant_job j = {.W = W, .x = x, .x_stride = x_stride, .x_plain = x, .plain_stride = x_stride};
    void *prepared = NULL;
    if (W->format == GLINT_WFMT_NVFP4) {
        j.path = avx2 ? PATH_NV_AVX2 : !avx512 ? PATH_NV_PLAIN : glint_cpu_use_bf16() ? PATH_NV_BF16 : PATH_NV_GROUPED;
        j.nv = nvfp4_dot_generic;
        if (j.path == PATH_NV_BF16) {
            uint16_t *xb = prepared = glint_cpu_alloc_aligned(sizeof(uint16_t) * 2 * (size_t)T * (size_t)K + 64);
            if (!xb) j.path = PATH_NV_GROUPED;
            else
                for (int t = 0; t < T; t++) prepare_bf16_pairs(x + (size_t)t * x_stride, xb + (size_t)t * 2 * K, K);
            j.x_bf16 = xb;
        }
        if (j.path == PATH_NV_GROUPED) {
            const int64_t stride = (K + 15) / 16 * 16;  // rows 64-byte aligned
            float *xp = prepared = glint_cpu_alloc_aligned(sizeof(float) * (size_t)T * (size_t)stride);
            if (!xp) j.path = PATH_NV_PLAIN, j.nv = nvfp4_dot_avx512_plain;
            else {
                for (int t = 0; t < T; t++) nvfp4_prep_x_grouped(x + (size_t)t * x_stride, xp + (size_t)t * stride, K);
                j.x = xp, j.x_stride = stride;
            }
        }
    } else {
        j.path = avx512 && W->block % 16 == 0 ? PATH_F8_AVX512 : avx2 && W->block % 8 == 0 ? PATH_F8_AVX2 : PATH_F8_SPANS;
        j.f8 = avx512 ? fp8_span_avx512 : avx2 ? fp8_span_avx2 : fp8_span_generic;
    }
    if (!prepared && (avx512 || avx2)) {  // aligned rows of x: the copy is cheap next to decoding N rows
        int stride;
        const float *xa = glint_cpu_aligned_rows(x, x_stride, T, K, &stride, &prepared);
        if (xa) j.x = xa, j.x_stride = stride;
    }
    const size_t row_bytes = W->format == GLINT_WFMT_NVFP4 ? (size_t)K / 2 + (size_t)K / 16 : (size_t)K;
    const int threads = N * K < 65536 ? 1 : be->n_threads;
    // From 4 tokens on, decoding rows into memory once beats decoding them in registers per token.
    const int batched = T >= 4 && j.path != PATH_NV_BF16 && j.path != PATH_NV_PLAIN && j.path != PATH_F8_SPANS;
    if (!batched) {
        // Chunks of up to 1 MiB of weights for one token (the kernels prefetch ahead within a
        // chunk's consecutive rows), ~64 KiB for 2-3.
        int64_t chunk_bytes = T > 1 ? 65536 : (int64_t)(N * row_bytes) / (4 * threads);
        chunk_bytes = chunk_bytes > (1 << 20) ? (1 << 20) : chunk_bytes < 65536 ? 65536 : chunk_bytes;
        int chunk = (int)(chunk_bytes / (int64_t)row_bytes);
        chunk = chunk < 1 ? 1 : chunk;
#pragma omp parallel for schedule(dynamic, chunk) num_threads(threads)
        for (int64_t n = 0; n < N; n++)
            for (int t = 0; t < T; t++) y[(size_t)t * y_stride + n] = quant_dot(&j, n, t);
    } else {
        // Rows in groups whose decoded F32 copies stay in the L2 (~256 KiB), every token against them.
        const int64_t row_floats_used = j.path == PATH_NV_GROUPED ? K / 128 * NV_GROUP_FLOATS
                                   : j.path == PATH_NV_AVX2  ? K + K / 16
                                                             : K / W->block * W->block;
        const int64_t row_floats = (row_floats_used + 15) / 16 * 16;  // rows 64-byte aligned
        int64_t rows = (int64_t)(65536 / (row_floats + 1));
        rows = rows < 2 ? 2 : rows > 16 ? 16 : rows;
#pragma omp parallel num_threads(threads)
        {
            float *d = glint_cpu_alloc_aligned(sizeof(float) * (size_t)(rows * row_floats + 16));
#pragma omp for schedule(dynamic, 1)
            for (int64_t n0 = 0; n0 < N; n0 += rows) {
                const int64_t n1 = n0 + rows < N ? n0 + rows : N;
                if (d) quant_rows_batched(&j, n0, n1, T, d, row_floats, y, y_stride);
                else {  // no memory for the decoded rows: the T = 1 kernel, same results
                    for (int64_t n = n0; n < n1; n++)
                        for (int t = 0; t < T; t++) y[(size_t)t * y_stride + n] = quant_dot(&j, n, t);
                }
            }
            free(d);
        }
    }
    free(prepared);
}

float glint_cpu_weight_element(const glint_weight *W, int64_t row, int64_t col) {
    init_tables();
    switch (W->format) {
    case GLINT_WFMT_NVFP4: {
        uint8_t byte = ((const uint8_t *)W->data)[row * (W->cols / 2) + col / 2];
        float scale = fp8_table[((const uint8_t *)W->scales)[row * (W->cols / 16) + col / 16]];
        return e2m1_values[col & 1 ? byte >> 4 : byte & 15] * scale * W->global_scale;
    }
    case GLINT_WFMT_FP8_BLOCK:
        return fp8_table[((const uint8_t *)W->data)[row * W->cols + col]] * fp8_block_scale(W, row, col);
    case GLINT_WFMT_GPTQ_INT4: {
        const int64_t N = W->rows;
        int64_t g = col / W->block;
        uint32_t packed = (uint32_t)((const int32_t *)W->data)[(col / 8) * N + row];
        uint32_t zero = ((uint32_t)((const int32_t *)W->zeros)[g * (N / 8) + row / 8] >> (4 * (row % 8))) & 15u;
        float q = (float)((packed >> (4 * (col % 8))) & 15u) - (float)(zero + 1);
        return scale_value(W, (size_t)g * N + row) * q;
    }
    default: return glint_weight_get(W, row * W->cols + col);
    }
}

void glint_cpu_weight_row_f32(const glint_weight *W, int64_t row, float *out) {
    init_tables();
    const int64_t K = W->cols;
    switch (W->format) {
    case GLINT_WFMT_DENSE:
        for (int64_t c = 0; c < K; c++) out[c] = glint_weight_get(W, row * K + c);
        return;
    case GLINT_WFMT_NVFP4: {
        const uint8_t *codes = (const uint8_t *)W->data + row * (K / 2), *sc = (const uint8_t *)W->scales + row * (K / 16);
        for (int64_t b = 0; b < K / 16; b++) {
            const float scale = fp8_table[sc[b]] * W->global_scale;
            for (int j = 0; j < 8; j++) {
                out[b * 16 + 2 * j] = e2m1_values[codes[b * 8 + j] & 15] * scale;
                out[b * 16 + 2 * j + 1] = e2m1_values[codes[b * 8 + j] >> 4] * scale;
            }
        }
        return;
    }
    case GLINT_WFMT_FP8_BLOCK: {
        const uint8_t *w = (const uint8_t *)W->data + row * K;
        for (int64_t k0 = 0; k0 < K; k0 += W->block) {
            const float scale = fp8_block_scale(W, row, k0);
            for (int64_t k = k0; k < K && k < k0 + W->block; k++) out[k] = fp8_table[w[k]] * scale;
        }
        return;
    }
    default:
        for (int64_t c = 0; c < K; c++) out[c] = glint_cpu_weight_element(W, row, c);
    }
}
