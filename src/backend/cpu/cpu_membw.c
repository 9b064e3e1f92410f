// Memory bandwidth of this machine, measured in the same run as a benchmark (DESIGN.md §5):
// a streaming copy (bytes read + written) and a streaming read, each the best of a few passes
// over buffers far larger than the last-level cache.
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "common/util.h"

__attribute__((target("avx2"))) static void copy_avx2(float *dst, const float *src, size_t n) {
    for (size_t i = 0; i + 32 <= n; i += 32)
        for (int j = 0; j < 32; j += 8) _mm256_storeu_ps(dst + i + j, _mm256_loadu_ps(src + i + j));
}

__attribute__((target("avx2"))) static float read_avx2(const float *src, size_t n) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps(), c = _mm256_setzero_ps(), d = _mm256_setzero_ps();
    for (size_t i = 0; i + 32 <= n; i += 32) {
        a = _mm256_add_ps(a, _mm256_loadu_ps(src + i));
        b = _mm256_add_ps(b, _mm256_loadu_ps(src + i + 8));
        c = _mm256_add_ps(c, _mm256_loadu_ps(src + i + 16));
        d = _mm256_add_ps(d, _mm256_loadu_ps(src + i + 24));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
    return out[0] + out[7];
}

int glint_cpu_measure_bandwidth(int threads, double *copy_bytes_per_s, double *read_bytes_per_s) {
    const size_t n = (size_t)256 << 20;  // 1 GiB per buffer
    float *a = glint_malloc(n * sizeof *a, "bandwidth test"), *b = glint_malloc(n * sizeof *b, "bandwidth test");
    if (!a || !b) {
        free(a), free(b);
        return -1;
    }
    const int avx2 = __builtin_cpu_supports("avx2");
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023), b[i] = 0;
    double best_copy = 0, best_read = 0;
    volatile float sink = 0;
    const size_t per = n / (size_t)threads & ~(size_t)31;
    for (int rep = 0; rep < 4; rep++) {
        double t0 = glint_now_seconds();
#pragma omp parallel num_threads(threads)
        {
            size_t lo = (size_t)omp_get_thread_num() * per;
            if (avx2) copy_avx2(b + lo, a + lo, per);
            else memcpy(b + lo, a + lo, per * sizeof *a);
        }
        double t1 = glint_now_seconds();
        float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            size_t lo = (size_t)omp_get_thread_num() * per;
            if (avx2) total += read_avx2(a + lo, per);
            else
                for (size_t i = lo; i < lo + per; i += 16) total += a[i];
        }
        double t2 = glint_now_seconds();
        sink += total + b[n / 3];
        double bytes = (double)per * threads * sizeof(float);
        if (2 * bytes / (t1 - t0) > best_copy) best_copy = 2 * bytes / (t1 - t0);
        if (bytes / (t2 - t1) > best_read) best_read = bytes / (t2 - t1);
    }
    (void)sink;
    free(a), free(b);
    *copy_bytes_per_s = best_copy;
    *read_bytes_per_s = best_read;
    return 0;
}
