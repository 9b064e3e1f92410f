// CUDA matrix multiply y = x · W^T with W in its checkpoint format and FP32 activations/accumulation.
// Small T (decode): one warp per weight row, 16-byte weight loads, up to 8 tokens per pass, so the
// weight stream runs at HBM speed. Larger T (prefill): a 64x64 tiled kernel that dequantizes each
// weight tile once into shared memory and reuses it for 64 tokens.
#include "backend/cuda/cuda_internal.cuh"

enum { GEMV_WARPS = 8, GEMV_MAX_T = 8, GEMV_T_LIMIT = 16 };

// Formats with a 16-byte vector path; the enum value selects the decode at compile time.
enum vec_format { VEC_F32, VEC_BF16, VEC_F16, VEC_FP8, VEC_FP8_BLOCK, VEC_NVFP4 };

template <int F> struct vec_traits;
template <> struct vec_traits<VEC_F32> { enum { ELEMS = 4 }; };
template <> struct vec_traits<VEC_BF16> { enum { ELEMS = 8 }; };
template <> struct vec_traits<VEC_F16> { enum { ELEMS = 8 }; };
template <> struct vec_traits<VEC_FP8> { enum { ELEMS = 16 }; };
template <> struct vec_traits<VEC_FP8_BLOCK> { enum { ELEMS = 16 }; };
template <> struct vec_traits<VEC_NVFP4> { enum { ELEMS = 32 }; };

// Decodes the 16 bytes `raw` (elements k0 .. k0+ELEMS of stored row r) into w[], scale applied.
template <int F>
__device__ __forceinline__ void decode_chunk(const dev_weight &W, uint4 raw, int64_t r, int64_t k0, float *w) {
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
    if (F == VEC_F32) {
#pragma unroll
        for (int i = 0; i < 4; i++) w[i] = __uint_as_float(words[i]);
    } else if (F == VEC_BF16 || F == VEC_F16) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[2 * i] = F == VEC_BF16 ? bf16_bits_to_float(words[i] & 0xffffu) : f16_bits_to_float(words[i] & 0xffffu);
            w[2 * i + 1] = F == VEC_BF16 ? bf16_bits_to_float(words[i] >> 16) : f16_bits_to_float(words[i] >> 16);
        }
    } else if (F == VEC_FP8 || F == VEC_FP8_BLOCK) {
        float scale = 1.0f;
        if (F == VEC_FP8_BLOCK) {
            const int64_t blocks_per_row = (W.cols + W.block - 1) / W.block;
            scale = ((const float *)W.scales)[(r / W.block) * blocks_per_row + k0 / W.block];
        }
#pragma unroll
        for (int i = 0; i < 16; i++) w[i] = fp8_bits_to_float((words[i / 4] >> (8 * (i % 4))) & 0xffu) * scale;
    } else {  // NVFP4: 32 codes, two 16-element scale blocks; even element in the low nibble
        const uint8_t *sc = (const uint8_t *)W.scales + r * (W.cols / 16) + k0 / 16;
        const float s0 = fp8_bits_to_float(sc[0]), s1 = fp8_bits_to_float(sc[1]);
#pragma unroll
        for (int i = 0; i < 32; i++) w[i] = e2m1_to_float((words[i / 8] >> (4 * (i % 8))) & 15u) * (i < 16 ? s0 : s1);
    }
}

// One warp per row of W; grid (rows / GEMV_WARPS, batch, token chunks of MAX_T).
template <int F, int MAX_T>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_vec_kernel(float *y, int y_stride, const float *x, int x_stride, int T, dev_weight W, int64_t w_row_step,
                    int64_t x_step, int64_t y_step) {
    constexpr int E = vec_traits<F>::ELEMS;
    const int lane = threadIdx.x & 31;
    const int64_t n = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (n >= W.rows) return;
    const int t0 = blockIdx.z * MAX_T, nt = min(MAX_T, T - t0);
    const int64_t r = W.row0 + (int64_t)blockIdx.y * w_row_step + n, K = W.cols, chunks = K / E;
    const size_t row_bytes = F == VEC_NVFP4 ? (size_t)K / 2 : (size_t)K * (E == 4 ? 4 : E == 8 ? 2 : 1);
    const uint4 *row = (const uint4 *)((const char *)W.data + (size_t)r * row_bytes);
    x += blockIdx.y * x_step + (int64_t)t0 * x_stride;
    float acc[MAX_T];
#pragma unroll
    for (int t = 0; t < MAX_T; t++) acc[t] = 0.0f;
    for (int64_t c = lane; c < chunks; c += 64) {
        // two independent 16-byte loads in flight per lane
        const uint4 raw0 = __ldg(row + c);
        const uint4 raw1 = c + 32 < chunks ? __ldg(row + c + 32) : make_uint4(0, 0, 0, 0);
        float w[E];
        decode_chunk<F>(W, raw0, r, c * E, w);
#pragma unroll
        for (int t = 0; t < MAX_T; t++) {
            if (t >= nt) break;
            const float4 *xv = (const float4 *)(x + (size_t)t * x_stride + c * E);
#pragma unroll
            for (int i = 0; i < E / 4; i++) {
                float4 v = xv[i];
                acc[t] += w[4 * i] * v.x + w[4 * i + 1] * v.y + w[4 * i + 2] * v.z + w[4 * i + 3] * v.w;
            }
        }
        if (c + 32 < chunks) {
            decode_chunk<F>(W, raw1, r, (c + 32) * E, w);
#pragma unroll
            for (int t = 0; t < MAX_T; t++) {
                if (t >= nt) break;
                const float4 *xv = (const float4 *)(x + (size_t)t * x_stride + (c + 32) * E);
#pragma unroll
                for (int i = 0; i < E / 4; i++) {
                    float4 v = xv[i];
                    acc[t] += w[4 * i] * v.x + w[4 * i + 1] * v.y + w[4 * i + 2] * v.z + w[4 * i + 3] * v.w;
                }
            }
        }
    }
    const float post = F == VEC_NVFP4 ? W.global_scale : 1.0f;
    y += blockIdx.y * y_step + (int64_t)t0 * y_stride;
#pragma unroll
    for (int t = 0; t < MAX_T; t++) {
        if (t >= nt) break;
        float v = acc[t];
#pragma unroll
        for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) y[(size_t)t * y_stride + n] = v * post;
    }
}

// Any format and alignment: one warp per row, one element per lane step.
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_scalar_kernel(float *y, int y_stride, const float *x, int x_stride, int T, dev_weight W,
                       int64_t w_row_step, int64_t x_step, int64_t y_step) {
    const int lane = threadIdx.x & 31;
    const int64_t n = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (n >= W.rows) return;
    const int t0 = blockIdx.z * GEMV_MAX_T, nt = min(GEMV_MAX_T, T - t0);
    const int64_t nb = (int64_t)blockIdx.y * w_row_step + n;
    x += blockIdx.y * x_step + (int64_t)t0 * x_stride;
    float acc[GEMV_MAX_T];
#pragma unroll
    for (int t = 0; t < GEMV_MAX_T; t++) acc[t] = 0.0f;
    for (int64_t k = lane; k < W.cols; k += 32) {
        const float w = weight_element(W, nb, k);
#pragma unroll
        for (int t = 0; t < GEMV_MAX_T; t++)
            if (t < nt) acc[t] += w * x[(size_t)t * x_stride + k];
    }
    y += blockIdx.y * y_step + (int64_t)t0 * y_stride;
#pragma unroll
    for (int t = 0; t < GEMV_MAX_T; t++) {
        if (t >= nt) break;
        float v = acc[t];
#pragma unroll
        for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) y[(size_t)t * y_stride + n] = v;
    }
}

// GPTQ: qweight [K/8, N] keeps rows of W contiguous along N, so a thread owns an output column
// (coalesced 4-byte loads) and the 8 thread rows of a block split the groups. Per group the codes
// are summed against x and the zero point enters once: s·(Σ q·x - (z+1)·Σ x).
enum { GPTQ_COLS = 32, GPTQ_SPLIT = 8 };
__global__ void __launch_bounds__(GPTQ_COLS * GPTQ_SPLIT)
    gemv_gptq_kernel(float *y, int y_stride, const float *x, int x_stride, int T, dev_weight W,
                     int64_t w_row_step, int64_t x_step, int64_t y_step) {
    __shared__ float partial[GPTQ_SPLIT][GEMV_MAX_T][GPTQ_COLS];
    const int64_t n = (int64_t)blockIdx.x * GPTQ_COLS + threadIdx.x;
    const int t0 = blockIdx.z * GEMV_MAX_T, nt = min(GEMV_MAX_T, T - t0);
    const int64_t N = W.all_rows, K = W.cols, G = W.block, groups = (K + G - 1) / G;
    const int64_t r = W.row0 + (int64_t)blockIdx.y * w_row_step + n;
    x += blockIdx.y * x_step + (int64_t)t0 * x_stride;
    float acc[GEMV_MAX_T];
#pragma unroll
    for (int t = 0; t < GEMV_MAX_T; t++) acc[t] = 0.0f;
    if (n < W.rows)
        for (int64_t g = threadIdx.y; g < groups; g += GPTQ_SPLIT) {
            const int64_t k_begin = g * G, k_end = min(K, k_begin + G);
            const uint32_t zero = ((uint32_t)((const int32_t *)W.zeros)[g * (N / 8) + r / 8] >> (4 * (r % 8))) & 15u;
            const float scale = dense_element(W.scales, W.scales_dtype, g * N + r);
            float codes_x[GEMV_MAX_T], x_sum[GEMV_MAX_T];
#pragma unroll
            for (int t = 0; t < GEMV_MAX_T; t++) codes_x[t] = 0.0f, x_sum[t] = 0.0f;
            for (int64_t k8 = k_begin; k8 < k_end; k8 += 8) {
                const uint32_t packed = (uint32_t)__ldg((const int32_t *)W.data + (k8 / 8) * N + r);
                const int jn = (int)min((int64_t)8, k_end - k8);
                for (int j = 0; j < jn; j++) {
                    const float q = (float)((packed >> (4 * j)) & 15u);
#pragma unroll
                    for (int t = 0; t < GEMV_MAX_T; t++)
                        if (t < nt) {
                            const float xv = x[(size_t)t * x_stride + k8 + j];
                            codes_x[t] += q * xv, x_sum[t] += xv;
                        }
                }
            }
#pragma unroll
            for (int t = 0; t < GEMV_MAX_T; t++) acc[t] += scale * (codes_x[t] - (float)(zero + 1) * x_sum[t]);
        }
#pragma unroll
    for (int t = 0; t < GEMV_MAX_T; t++) partial[threadIdx.y][t][threadIdx.x] = acc[t];
    __syncthreads();
    if (threadIdx.y == 0 && n < W.rows) {
        y += blockIdx.y * y_step + (int64_t)t0 * y_stride;
        for (int t = 0; t < nt; t++) {
            float v = 0.0f;
            for (int s = 0; s < GPTQ_SPLIT; s++) v += partial[s][t][threadIdx.x];
            y[(size_t)t * y_stride + n] = v;
        }
    }
}

// Prefill: block tile of 64 tokens x 64 rows of W, K in steps of 16; each thread computes 4x4.
enum { TILE_M = 64, TILE_N = 64, TILE_K = 16 };
__global__ void __launch_bounds__(256)
    gemm_tiled_kernel(float *y, int y_stride, const float *x, int x_stride, int T, dev_weight W, int64_t w_row_step,
                      int64_t x_step, int64_t y_step) {
    __shared__ float xs[TILE_K][TILE_M + 4];
    __shared__ float ws[TILE_K][TILE_N + 4];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int m0 = blockIdx.y * TILE_M;
    const int64_t n0 = (int64_t)blockIdx.x * TILE_N, K = W.cols;
    const int64_t nb = (int64_t)blockIdx.z * w_row_step;
    x += blockIdx.z * x_step;
    y += blockIdx.z * y_step;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < K; k0 += TILE_K) {
#pragma unroll
        for (int j = 0; j < 4; j++) {  // 1024 elements of each tile, consecutive threads along k
            const int idx = tid + j * 256, row = idx / TILE_K, kk = idx % TILE_K;
            const int64_t k = k0 + kk;
            const int m = m0 + row;
            const int64_t n = n0 + row;
            xs[kk][row] = m < T && k < K ? x[(size_t)m * x_stride + k] : 0.0f;
            ws[kk][row] = n < W.rows && k < K ? weight_element(W, nb + n, k) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TILE_K; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = xs[kk][ty * 4 + i], b[i] = ws[kk][tx * 4 + i];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int m = m0 + ty * 4 + i;
        if (m >= T) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t n = n0 + tx * 4 + j;
            if (n < W.rows) y[(size_t)m * y_stride + n] = acc[i][j];
        }
    }
}

static int vec_format_of(const dev_weight &W) {
    if (W.format == GLINT_WFMT_NVFP4) return W.cols % 32 == 0 ? VEC_NVFP4 : -1;
    if (W.format == GLINT_WFMT_FP8_BLOCK) return W.block % 16 == 0 ? VEC_FP8_BLOCK : -1;
    if (W.format != GLINT_WFMT_DENSE) return -1;
    switch (W.dtype) {
    case GLINT_DTYPE_F32: return VEC_F32;
    case GLINT_DTYPE_BF16: return VEC_BF16;
    case GLINT_DTYPE_F16: return VEC_F16;
    case GLINT_DTYPE_F8_E4M3: return VEC_FP8;
    default: return -1;
    }
}

static size_t row_bytes_of(const dev_weight &W, int vf) {
    switch (vf) {
    case VEC_F32: return (size_t)W.cols * 4;
    case VEC_BF16:
    case VEC_F16: return (size_t)W.cols * 2;
    case VEC_NVFP4: return (size_t)W.cols / 2;
    default: return (size_t)W.cols;
    }
}

template <int F>
static void launch_vec(dim3 grid, float *y, int y_stride, const float *x, int x_stride, int T, const dev_weight &W,
                       int64_t w_row_step, int64_t x_step, int64_t y_step) {
    if (T == 1)
        gemv_vec_kernel<F, 1><<<grid, GEMV_WARPS * 32>>>(y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step);
    else
        gemv_vec_kernel<F, GEMV_MAX_T>
            <<<grid, GEMV_WARPS * 32>>>(y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step);
}

void glint_cuda_matmul_batched(float *y, int y_stride, const float *x, int x_stride, int T, const dev_weight &W,
                               int batch, int64_t w_row_step, int64_t x_step, int64_t y_step) {
    if (T <= 0 || W.rows <= 0 || batch <= 0) return;
    if (T > GEMV_T_LIMIT) {
        dim3 grid((unsigned)((W.rows + TILE_N - 1) / TILE_N), (unsigned)((T + TILE_M - 1) / TILE_M), (unsigned)batch);
        gemm_tiled_kernel<<<grid, 256>>>(y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step);
        return;
    }
    const unsigned token_chunks = (unsigned)((T + GEMV_MAX_T - 1) / GEMV_MAX_T);
    if (W.format == GLINT_WFMT_GPTQ_INT4) {
        dim3 grid((unsigned)((W.rows + GPTQ_COLS - 1) / GPTQ_COLS), (unsigned)batch, token_chunks);
        gemv_gptq_kernel<<<grid, dim3(GPTQ_COLS, GPTQ_SPLIT)>>>(y, y_stride, x, x_stride, T, W, w_row_step, x_step,
                                                                y_step);
        return;
    }
    dim3 grid((unsigned)((W.rows + GEMV_WARPS - 1) / GEMV_WARPS), (unsigned)batch, token_chunks);
    const int vf = vec_format_of(W);
    // The vector path needs 16-byte aligned weight rows and float4-aligned activation rows.
    bool aligned = vf >= 0;
    if (aligned) {
        const size_t rb = row_bytes_of(W, vf);
        aligned = rb % 16 == 0 && ((uintptr_t)W.data + (size_t)W.row0 * rb) % 16 == 0 &&
                  ((size_t)w_row_step * rb) % 16 == 0 && (uintptr_t)x % 16 == 0 && x_stride % 4 == 0 && x_step % 4 == 0;
    }
    if (!aligned) {
        gemv_scalar_kernel<<<grid, GEMV_WARPS * 32>>>(y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step);
        return;
    }
    switch (vf) {
    case VEC_F32: launch_vec<VEC_F32>(grid, y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step); break;
    case VEC_BF16: launch_vec<VEC_BF16>(grid, y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step); break;
    case VEC_F16: launch_vec<VEC_F16>(grid, y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step); break;
    case VEC_FP8: launch_vec<VEC_FP8>(grid, y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step); break;
    case VEC_FP8_BLOCK:
        launch_vec<VEC_FP8_BLOCK>(grid, y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step);
        break;
    default: launch_vec<VEC_NVFP4>(grid, y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step); break;
    }
}

extern "C" void glint_cuda_matmul(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                                  const glint_weight *W) {
    (void)be;
    glint_cuda_matmul_batched(y, y_stride, x, x_stride, T, dev_weight_of(W), 1, 0, 0, 0);
    glint_cuda_check("matmul");
}
