// CPU backend internals shared by its source files.
#ifndef GLINT_CPU_H
#define GLINT_CPU_H

#include "backend/backend.h"

void glint_cpu_matmul(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                      const glint_weight *W);
// y = x · W^T for NVFP4, FP8-block and GPTQ weights (cpu_quant.c).
void glint_cpu_matmul_quantized(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                                const glint_weight *W);
// x (T rows of K, stride x_stride floats) with every row 64-byte aligned: x itself when it already
// is (*copy = NULL), else an aligned copy (*copy to free; NULL returned if out of memory). Vector
// loads of x that split cache lines make the matrix-vector kernels ~2.5x slower while weights
// stream from memory.
const float *glint_cpu_aligned_rows(const float *x, int x_stride, int T, int64_t K, int *stride, void **copy);
// 64-byte aligned allocation (free with free()).
void *glint_cpu_alloc_aligned(size_t bytes);
// One element / one row of any weight format, dequantized to FP32.
float glint_cpu_weight_element(const glint_weight *W, int64_t row, int64_t col);
void glint_cpu_weight_row_f32(const glint_weight *W, int64_t row, float *out);
// Vector kernels on the selected ISA: a·b over n floats; y += a · row (row BF16/F16/F32/FP8).
float glint_cpu_dot_f32(const float *a, const float *b, int64_t n);
void glint_cpu_axpy(float *y, const void *row, glint_dtype dtype, float a, int64_t n);
// Picks the kernels: "generic", "avx2", "avx512-bf16" (AVX-512 plus the opt-in BF16 dot-product
// NVFP4 kernel), or NULL/anything else for the best available AVX-512/AVX2/generic kernels.
void glint_cpu_select_kernels(const char *force_isa);
const char *glint_cpu_isa(void);
int glint_cpu_use_bf16(void);  // AVX512-BF16 dot products in the quantized kernels
// Streaming copy (read + write bytes per second) and streaming read bandwidth with `threads` threads.
int glint_cpu_measure_bandwidth(int threads, double *copy_bytes_per_s, double *read_bytes_per_s);

#endif
