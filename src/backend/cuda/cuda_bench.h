// CUDA-only benchmark entry points for glint bench (C callable; only with GLINT_HAVE_CUDA).
#ifndef GLINT_CUDA_BENCH_H
#define GLINT_CUDA_BENCH_H

#ifdef __cplusplus
extern "C" {
#endif

// Weight formats of glint_cuda_gemm_rates' per-format rates.
enum { GLINT_GEMM_BF16, GLINT_GEMM_FP8_BLOCK, GLINT_GEMM_NVFP4, GLINT_GEMM_FORMATS };

// TFLOP/s measured now on the current device. cublas_bf16 / tc_bf16: a square BF16 x BF16 -> FP32
// GEMM (square^3) by cuBLAS (0 when not linked) and by glint's tensor-core kernel with BF16
// activations. The rest: glint's T > 64 matmul path (FP32 activations in and out) on [T, K] x [N, K]^T
// per weight format, FLOPs counted once (2·T·N·K) whatever runs: precise[] in the default mode (x as
// hi + lo BF16 parts: cuBLAS where it is linked, see cuda_gemm.cu), fast[] with x rounded to BF16
// (GLINT_CUDA_TC=bf16), kernel_precise[] glint's own tensor-core kernel in precise mode
// (GLINT_CUDA_CUBLAS=0; 0 for FP8-block, which that mode leaves to the FP32 SIMT kernel), simt_bf16 the
// FP32 SIMT tile kernel with BF16 weights (GLINT_CUDA_TC=0).
typedef struct {
    double cublas_bf16, tc_bf16;
    double precise[GLINT_GEMM_FORMATS], fast[GLINT_GEMM_FORMATS], kernel_precise[GLINT_GEMM_FORMATS];
    double simt_bf16;
} glint_cuda_gemm_rates;

int glint_cuda_gemm_bench(int square, int T, int N, int K, glint_cuda_gemm_rates *out);

#ifdef __cplusplus
}
#endif

#endif
