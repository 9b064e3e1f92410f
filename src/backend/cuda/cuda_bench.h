// CUDA-only benchmark entry points for glint bench (C callable; only with GLINT_HAVE_CUDA).
#ifndef GLINT_CUDA_BENCH_H
#define GLINT_CUDA_BENCH_H

#ifdef __cplusplus
extern "C" {
#endif

// TFLOP/s measured now on the current device. cublas_bf16 / tc_bf16: a square BF16 x BF16 -> FP32
// GEMM (square^3) by cuBLAS (0 when not linked) and by glint's tensor-core kernel with BF16
// activations; format[]: glint's T > 64 matmul path (FP32 activations in and out) on [T, K] x [N, K]^T
// with BF16, FP8-block, NVFP4 weights, and [3] the FP32 SIMT tile kernel with BF16 weights.
typedef struct {
    double cublas_bf16, tc_bf16;
    double format[4];
} glint_cuda_gemm_rates;

int glint_cuda_gemm_bench(int square, int T, int N, int K, glint_cuda_gemm_rates *out);

#ifdef __cplusplus
}
#endif

#endif
