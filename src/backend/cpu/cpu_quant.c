// CPU kernels for quantized weights (spec/FORMATS.md): NVFP4 (ModelOpt / compressed-tensors),
// FP8 E4M3 with 128x128 block scales, GPTQ int4. Weights are dequantized in registers; activations
// stay FP32 and accumulation is FP32, so results match a dequantized FP32 model closely.
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "common/util.h"

static const float e2m1_values[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

static float fp8_table[256];
static int fp8_table_ready;

static void init_tables(void) {
    if (fp8_table_ready) return;
    for (int i = 0; i < 256; i++) fp8_table[i] = glint_fp8e4m3_to_f32((uint8_t)i);
    fp8_table_ready = 1;
}

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

__attribute__((target("avx512f,avx512bw"))) static float nvfp4_dot_avx512(const uint8_t *codes,
                                                                          const uint8_t *scales, const float *x,
                                                                          int64_t K) {
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

// Faster AVX-512 form on x "deinterleaved" per 32 elements ([x0 x2 .. x30 | x1 x3 .. x31]): a 32-bit
// lane holding one code byte indexes the E2M1 table with its low nibble (even element) and, shifted,
// its high nibble (odd element), so no nibble shuffling is needed. Lanes 0-7 belong to block b, 8-15
// to block b+1, hence the two-scale vectors s0 (blocks b, b+1) and s1 (b+2, b+3).
// 64 weights from block b on, into two independent accumulator chains.
__attribute__((target("avx512f,avx512bw"))) static inline void nvfp4_64(const uint8_t *codes, const float *x_deint,
                                                                        int64_t b, __m512 lut, __m512 s0, __m512 s1,
                                                                        __m512 *acc0, __m512 *acc1) {
    __m512i v0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + b * 8)));
    __m512i v1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + b * 8 + 16)));
    __m512 p0 = _mm512_mul_ps(_mm512_permutexvar_ps(v0, lut), _mm512_loadu_ps(x_deint + b * 16));
    __m512 p1 = _mm512_mul_ps(_mm512_permutexvar_ps(v1, lut), _mm512_loadu_ps(x_deint + b * 16 + 32));
    p0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v0, 4), lut), _mm512_loadu_ps(x_deint + b * 16 + 16),
                         p0);
    p1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v1, 4), lut), _mm512_loadu_ps(x_deint + b * 16 + 48),
                         p1);
    *acc0 = _mm512_fmadd_ps(p0, s0, *acc0);
    *acc1 = _mm512_fmadd_ps(p1, s1, *acc1);
}

__attribute__((target("avx512f,avx512bw"))) static float nvfp4_dot_avx512_deinterleaved(const uint8_t *codes,
                                                                                        const uint8_t *scales,
                                                                                        const float *x_deint,
                                                                                        int64_t K) {
    const __m512 lut = _mm512_loadu_ps(e2m1_values);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    // 256 weights (16 blocks) per outer step: the 16 FP8 block scales are decoded at once (E4M3 ->
    // F16 by a shift, times 2^8), then spread to block pairs.
    const __m512i clear_bit14 = _mm512_set1_epi16((short)0xBFFF);
    for (; b + 16 <= K / 16; b += 16) {
        __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(scales + b)));
        __m512 svec = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_and_si256(_mm256_slli_epi16(s16, 7),
                                                                     _mm512_castsi512_si256(clear_bit14))),
                                    _mm512_set1_ps(256.0f));
        for (int j = 0; j < 16; j += 4) {
            __m512 s0 = _mm512_permutexvar_ps(
                _mm512_set_epi32(j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j, j, j, j, j, j, j, j), svec);
            __m512 s1 = _mm512_permutexvar_ps(_mm512_set_epi32(j + 3, j + 3, j + 3, j + 3, j + 3, j + 3, j + 3, j + 3,
                                                               j + 2, j + 2, j + 2, j + 2, j + 2, j + 2, j + 2, j + 2),
                                              svec);
            nvfp4_64(codes, x_deint, b + j, lut, s0, s1, &acc0, &acc1);
        }
    }
    for (; b + 4 <= K / 16; b += 4) {
        __m512 s0 = _mm512_mask_broadcastss_ps(_mm512_set1_ps(fp8_table[scales[b]]), 0xFF00,
                                               _mm_set_ss(fp8_table[scales[b + 1]]));
        __m512 s1 = _mm512_mask_broadcastss_ps(_mm512_set1_ps(fp8_table[scales[b + 2]]), 0xFF00,
                                               _mm_set_ss(fp8_table[scales[b + 3]]));
        nvfp4_64(codes, x_deint, b, lut, s0, s1, &acc0, &acc1);
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; b < K / 16; b++) {  // tail blocks: x_deint holds pairs of blocks; a lone last block is plain order
        const float *xb = x_deint + b * 16;
        float block = 0;
        if ((K / 16) % 2 && b == K / 16 - 1)
            for (int j = 0; j < 8; j++)
                block += e2m1_values[codes[b * 8 + j] & 15] * xb[2 * j] + e2m1_values[codes[b * 8 + j] >> 4] * xb[2 * j + 1];
        else {
            const float *pair = x_deint + (b & ~(int64_t)1) * 16;
            int half = (int)(b & 1) * 8;
            for (int j = 0; j < 8; j++)
                block += e2m1_values[codes[b * 8 + j] & 15] * pair[half + j] +
                         e2m1_values[codes[b * 8 + j] >> 4] * pair[16 + half + j];
        }
        acc += block * fp8_table[scales[b]];
    }
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

// x -> per 32 elements [even | odd], the order nvfp4_dot_avx512_deinterleaved reads; a trailing
// group of 16 stays in plain order.
static void deinterleave_pairs(const float *x, float *out, int64_t K) {
    int64_t k = 0;
    for (; k + 32 <= K; k += 32)
        for (int j = 0; j < 16; j++) out[k + j] = x[k + 2 * j], out[k + 16 + j] = x[k + 2 * j + 1];
    for (; k < K; k++) out[k] = x[k];
}

__attribute__((target("avx2,fma"))) static float nvfp4_dot_avx2(const uint8_t *codes, const uint8_t *scales,
                                                                const float *x, int64_t K) {
    const __m256 lut_lo = _mm256_loadu_ps(e2m1_values), lut_hi = _mm256_loadu_ps(e2m1_values + 8);
    const __m128i low_mask = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < K / 16; b++) {
        __m128i raw = _mm_loadl_epi64((const __m128i *)(codes + b * 8));
        __m128i lo = _mm_and_si128(raw, low_mask), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low_mask);
        __m128i idx = _mm_unpacklo_epi8(lo, hi);  // 16 codes in element order
        __m256 s = _mm256_set1_ps(fp8_table[scales[b]]);
        for (int half = 0; half < 2; half++) {
            __m256i i8 = _mm256_cvtepu8_epi32(half ? _mm_srli_si128(idx, 8) : idx);
            // codes 0-7 from lut_lo, 8-15 from lut_hi (bit 3 selects)
            __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lut_lo, i8), _mm256_permutevar8x32_ps(lut_hi, i8),
                                        _mm256_castsi256_ps(_mm256_slli_epi32(i8, 28)));
            acc = _mm256_fmadd_ps(_mm256_mul_ps(v, _mm256_loadu_ps(x + b * 16 + half * 8)), s, acc);
        }
    }
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    r = _mm_hadd_ps(r, r);
    r = _mm_hadd_ps(r, r);
    return _mm_cvtss_f32(r);
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

// A whole FP8-block row: per block a vector accumulator scaled once by its block scale, one
// horizontal sum per row (block sizes that are multiples of 32; others take the span path).
__attribute__((target("avx512f,avx512bw"))) static float fp8_row_avx512(const uint8_t *w, const float *scales,
                                                                        const float *x, int64_t K, int block) {
    const __m512i clear_bit14 = _mm512_set1_epi16((short)0xBFFF);
    __m512 total = _mm512_setzero_ps();
    int64_t k0 = 0;
    for (; k0 + block <= K; k0 += block) {
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps(),
               acc3 = _mm512_setzero_ps();
        int64_t k = k0;
        for (; k + 64 <= k0 + block; k += 64) {  // 64 weights, four independent chains
            __m512i a = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + k)));
            __m512i b = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + k + 32)));
            a = _mm512_and_si512(_mm512_slli_epi16(a, 7), clear_bit14);
            b = _mm512_and_si512(_mm512_slli_epi16(b, 7), clear_bit14);
            acc0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(a)), _mm512_loadu_ps(x + k), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(a, 1)), _mm512_loadu_ps(x + k + 16), acc1);
            acc2 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(b)), _mm512_loadu_ps(x + k + 32), acc2);
            acc3 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(b, 1)), _mm512_loadu_ps(x + k + 48), acc3);
        }
        for (; k < k0 + block; k += 32) {
            __m512i a = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + k)));
            a = _mm512_and_si512(_mm512_slli_epi16(a, 7), clear_bit14);
            acc0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(a)), _mm512_loadu_ps(x + k), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(a, 1)), _mm512_loadu_ps(x + k + 16), acc1);
        }
        __m512 sum = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
        total = _mm512_fmadd_ps(sum, _mm512_set1_ps(scales[k0 / block] * 256.0f), total);
    }
    float acc = _mm512_reduce_add_ps(total);
    if (k0 < K) acc += fp8_span_generic(w + k0, x + k0, K - k0) * scales[k0 / block];
    return acc;
}

__attribute__((target("avx2,fma,f16c"))) static float fp8_span_avx2(const uint8_t *w, const float *x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m128i b16 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(w + k)));
        __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b16, _mm_set1_epi16(0x80)), 8),
                                 _mm_slli_epi16(_mm_and_si128(b16, _mm_set1_epi16(0x7f)), 7));
        acc = _mm256_fmadd_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(x + k), acc);
    }
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    r = _mm_hadd_ps(r, r);
    r = _mm_hadd_ps(r, r);
    return _mm_cvtss_f32(r) * 256.0f + fp8_span_generic(w + k, x + k, n - k);
}

// ---------------------------------------------------------------------------------------------
// Dispatch

typedef float (*nvfp4_dot_fn)(const uint8_t *codes, const uint8_t *scales, const float *x, int64_t K);
typedef float (*fp8_span_fn)(const uint8_t *w, const float *x, int64_t n);

static nvfp4_dot_fn pick_nvfp4(void) {
    const char *isa = glint_cpu_isa();
    return !strncmp(isa, "avx512", 6) ? nvfp4_dot_avx512 : !strcmp(isa, "avx2") ? nvfp4_dot_avx2 : nvfp4_dot_generic;
}

static fp8_span_fn pick_fp8(void) {
    const char *isa = glint_cpu_isa();
    return !strncmp(isa, "avx512", 6) ? fp8_span_avx512 : !strcmp(isa, "avx2") ? fp8_span_avx2 : fp8_span_generic;
}

static float fp8_block_scale(const glint_weight *W, int64_t row, int64_t col) {
    int64_t blocks_per_row = (W->cols + W->block - 1) / W->block;
    return ((const float *)W->scales)[(row / W->block) * blocks_per_row + col / W->block];
}

// y[t, n] for one row n of an NVFP4 or FP8-block weight.
static void quant_row_dots(const glint_weight *W, int64_t n, const float *x, int x_stride, int T, float *y,
                           int y_stride, nvfp4_dot_fn nv, fp8_span_fn f8) {
    const int64_t K = W->cols;
    if (W->format == GLINT_WFMT_NVFP4) {
        const uint8_t *codes = (const uint8_t *)W->data + n * (K / 2), *sc = (const uint8_t *)W->scales + n * (K / 16);
        for (int t = 0; t < T; t++) y[(size_t)t * y_stride + n] = nv(codes, sc, x + (size_t)t * x_stride, K) * W->global_scale;
        return;
    }
    const uint8_t *row = (const uint8_t *)W->data + n * K;
    if (f8 == fp8_span_avx512 && W->block % 32 == 0) {
        const float *scales = (const float *)W->scales + (n / W->block) * ((K + W->block - 1) / W->block);
        for (int t = 0; t < T; t++) y[(size_t)t * y_stride + n] = fp8_row_avx512(row, scales, x + (size_t)t * x_stride, K, W->block);
        return;
    }
    for (int t = 0; t < T; t++) {
        float acc = 0;
        for (int64_t k0 = 0; k0 < K; k0 += W->block) {
            int64_t len = K - k0 < W->block ? K - k0 : W->block;
            acc += f8(row + k0, x + (size_t)t * x_stride + k0, len) * fp8_block_scale(W, n, k0);
        }
        y[(size_t)t * y_stride + n] = acc;
    }
}

static float scale_value(const glint_weight *W, size_t index) {
    const uint16_t *s = W->scales;
    return W->scales_dtype == GLINT_DTYPE_BF16 ? glint_bf16_to_f32(s[index]) : glint_f16_to_f32(s[index]);
}

// GPTQ (desc_act false, checked at load: group of column k is k / G): qweight is [K/8, N], so
// outputs are contiguous. Per group the integer codes are accumulated against x, and the zero point
// enters once through the group's sum of x: Σ s·(q - z - 1)·x = s·(Σ q·x - (z + 1)·Σ x).
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

void glint_cpu_matmul_quantized(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                                const glint_weight *W) {
    init_tables();
    if (W->format == GLINT_WFMT_GPTQ_INT4) {
        gptq_matmul(be, y, y_stride, x, x_stride, T, W);
        return;
    }
    nvfp4_dot_fn nv = pick_nvfp4();
    fp8_span_fn f8 = pick_fp8();
    const int64_t N = W->rows, K = W->cols;
    const size_t row_bytes = W->format == GLINT_WFMT_NVFP4 ? (size_t)K / 2 : (size_t)K;
    int threads = N * K < 65536 ? 1 : be->n_threads;
    int chunk = (int)(65536 / (row_bytes ? row_bytes : 1));
    chunk = chunk < 1 ? 1 : chunk;
    if (T >= 4) {  // prefill: dequantize each row once and reuse it for every token
#pragma omp parallel num_threads(threads)
        {
            float *row = malloc(sizeof(float) * (size_t)K);
#pragma omp for schedule(dynamic, chunk)
            for (int64_t n = 0; n < N; n++) {
                if (!row) continue;
                glint_cpu_weight_row_f32(W, n, row);
                for (int t = 0; t < T; t++) y[(size_t)t * y_stride + n] = glint_cpu_dot_f32(row, x + (size_t)t * x_stride, K);
            }
            free(row);
        }
        return;
    }
    if (W->format == GLINT_WFMT_NVFP4 && nv == nvfp4_dot_avx512 && glint_cpu_use_bf16()) {
        uint16_t *x_prep = malloc(sizeof(uint16_t) * 2 * (size_t)T * (size_t)K + 64);
        if (x_prep) {
            for (int t = 0; t < T; t++) prepare_bf16_pairs(x + (size_t)t * x_stride, x_prep + (size_t)t * 2 * K, K);
            const int64_t scales_per_row = K / 16;
#pragma omp parallel for schedule(dynamic, chunk) num_threads(threads)
            for (int64_t n = 0; n < N; n++) {
                const uint8_t *codes = (const uint8_t *)W->data + n * (K / 2);
                const uint8_t *sc = (const uint8_t *)W->scales + n * scales_per_row;
                for (int t = 0; t < T; t++)
                    y[(size_t)t * y_stride + n] =
                        nvfp4_dot_bf16(codes, sc, x_prep + (size_t)t * 2 * K, x + (size_t)t * x_stride, K) *
                        W->global_scale;
            }
            free(x_prep);
            return;
        }
    }
    float *x_deint = NULL;  // AVX-512 NVFP4 reads x in deinterleaved order
    if (W->format == GLINT_WFMT_NVFP4 && nv == nvfp4_dot_avx512 &&
        (x_deint = malloc(sizeof(float) * (size_t)T * (size_t)K))) {
        for (int t = 0; t < T; t++) deinterleave_pairs(x + (size_t)t * x_stride, x_deint + (size_t)t * K, K);
        x = x_deint, x_stride = (int)K, nv = nvfp4_dot_avx512_deinterleaved;
    }
#pragma omp parallel for schedule(dynamic, chunk) num_threads(threads)
    for (int64_t n = 0; n < N; n++) quant_row_dots(W, n, x, x_stride, T, y, y_stride, nv, f8);
    free(x_deint);
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
