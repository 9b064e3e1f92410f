// Synthetic weights made directly in device memory (benchmarks of the real shapes without files or
// multi-GB host buffers): a seeded hash per element, the same values for the same seed.
#include <math.h>

#include "backend/cuda/cuda_internal.cuh"

__device__ __forceinline__ uint64_t synth_hash(uint64_t seed, uint64_t i) {
    uint64_t z = seed + i * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
    return z ^ (z >> 29);
}

// Dense: uniform in [lo, hi] as BF16/F16/F32.
__global__ void synth_dense_kernel(void *data, int dtype, size_t n, uint64_t seed, float lo, float hi) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float u = (float)(synth_hash(seed, i) >> 40) * (1.0f / 16777216.0f);
        const float v = lo + (hi - lo) * u;
        if (dtype == GLINT_DTYPE_F32) ((float *)data)[i] = v;
        else if (dtype == GLINT_DTYPE_F16) ((__half *)data)[i] = __float2half(v);
        else {  // BF16, round to nearest even
            uint32_t b = __float_as_uint(v);
            ((uint16_t *)data)[i] = (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
        }
    }
}

// Bytes: random (NVFP4 codes: every E2M1 value equally likely) or the constant `fill`.
__global__ void synth_bytes_kernel(uint8_t *data, size_t n, uint64_t seed, int fill) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        data[i] = fill >= 0 ? (uint8_t)fill : (uint8_t)(synth_hash(seed, i) >> 24);
}

// The E4M3 code nearest below |v| (normal range), for block scales.
static uint8_t e4m3_of(float v) {
    uint8_t best = 0x08;  // 2^-6
    for (int code = 0x08; code < 0x7f; code++) {
        const int e = code >> 3, m = code & 7;
        const float value = ldexpf(1.0f + m / 8.0f, e - 7);
        if (value <= v) best = (uint8_t)code;
    }
    return best;
}

static void *device_bytes(size_t bytes, const char *what) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess) {
        cudaGetLastError();
        glint_set_error("CUDA: out of device memory for synthetic weight %s (%zu bytes)", what, bytes);
        return NULL;
    }
    return p;
}

extern "C" int glint_cuda_synthesize(glint_backend *be, glint_weight *w, uint64_t seed, float lo, float hi) {
    const size_t rows = (size_t)w->rows, cols = (size_t)(w->cols > 0 ? w->cols : 1), n = rows * cols;
    const unsigned blocks = (unsigned)(be->n_threads > 0 ? be->n_threads * 8 : 1024);
    const char *what = w->name ? w->name : "?";
    if (w->format == GLINT_WFMT_NVFP4) {
        if (cols % 32) {
            glint_set_error("synthetic NVFP4 weight %s: %zu columns, not a multiple of 32", what, cols);
            return -1;
        }
        uint8_t *codes = (uint8_t *)device_bytes(n / 2, what), *scales = (uint8_t *)device_bytes(n / 16, what);
        if (!codes || !scales) {
            cudaFree(codes);
            return -1;
        }
        synth_bytes_kernel<<<blocks, 256, 0, glint_cuda_stream()>>>(codes, n / 2, seed, -1);
        // |E2M1| <= 6: block scale hi/6 (E4M3) makes the weights span about [-hi, hi]
        synth_bytes_kernel<<<blocks, 256, 0, glint_cuda_stream()>>>(scales, n / 16, seed, e4m3_of(fmaxf(fabsf(hi), fabsf(lo)) / 6.0f));
        w->data = codes, w->scales = scales, w->dtype = GLINT_DTYPE_U8, w->scales_dtype = GLINT_DTYPE_F8_E4M3;
        w->block = 16, w->global_scale = 1.0f;
    } else if (w->format == GLINT_WFMT_DENSE &&
               (w->dtype == GLINT_DTYPE_BF16 || w->dtype == GLINT_DTYPE_F16 || w->dtype == GLINT_DTYPE_F32)) {
        void *data = device_bytes(n * glint_dtype_size(w->dtype), what);
        if (!data) return -1;
        synth_dense_kernel<<<blocks, 256, 0, glint_cuda_stream()>>>(data, w->dtype, n, seed, lo, hi);
        w->data = data;
    } else {
        glint_set_error("synthetic weight %s: format not supported", what);
        return -1;
    }
    return glint_cuda_check("synthetic weight");
}
