// Small SIMD helpers shared by the CPU kernels (cpu_matmul.c, cpu_quant.c).
#ifndef GLINT_CPU_SIMD_H
#define GLINT_CPU_SIMD_H

#include <immintrin.h>

// Sum of the 8 lanes: halves added, then two horizontal adds (the order every AVX2 kernel uses).
__attribute__((target("avx2,fma"), always_inline)) static inline float glint_hsum256(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_hadd_ps(r, r);
    r = _mm_hadd_ps(r, r);
    return _mm_cvtss_f32(r);
}

#endif
