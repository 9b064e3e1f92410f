// CUDA matrix multiply y = x · W^T with W in its checkpoint format and FP32 activations/accumulation.
// Small T (decode and batched decode, T <= 64): a warp streams 1-4 weight rows at once (more for the
// formats whose 16-byte chunks need more x: the x loads are shared by the rows), 16-byte weight loads,
// up to 8 tokens per pass (the passes of one row block run side by side, so the weight rows come from
// L2 after the first); long rows and small matrices are split over up to 8 warps (gemv_splits) so the
// grid ends in a short last wave. Every token's sum is formed in the same order whatever T is and
// whichever tokens share its pass: row t of a T-row product is bitwise the product of row t alone
// (the server batches decode rows and must match solo runs).
// Larger T (prefill): tensor cores (cuda_gemm.cu) for BF16/NVFP4 weights (and FP8 with
// GLINT_CUDA_TC=bf16); for the other formats a 64x64 FP32 tiled kernel that dequantizes each weight
// tile once into shared memory and reuses it for 64 tokens.
#include <cuda_fp8.h>

#include "backend/cuda/cuda_internal.cuh"

enum { GEMV_WARPS = 8, GEMV_MAX_T = 8, GEMV_T_LIMIT = 64 };

// Formats with a 16-byte vector path; the enum value selects the decode at compile time.
enum vec_format { VEC_F32, VEC_BF16, VEC_F16, VEC_FP8, VEC_FP8_BLOCK, VEC_NVFP4 };

template <int F> struct vec_traits;
template <> struct vec_traits<VEC_F32> { enum { ELEMS = 4 }; };
template <> struct vec_traits<VEC_BF16> { enum { ELEMS = 8 }; };
template <> struct vec_traits<VEC_F16> { enum { ELEMS = 8 }; };
template <> struct vec_traits<VEC_FP8> { enum { ELEMS = 16 }; };
template <> struct vec_traits<VEC_FP8_BLOCK> { enum { ELEMS = 16 }; };
template <> struct vec_traits<VEC_NVFP4> { enum { ELEMS = 32 }; };

// Elements j·8 .. j·8+7 of a 16-byte chunk (4 for F32), dequantized and times `scale` (the chunk's
// FP8 block scale, or the E4M3 group scale of NVFP4 sub-chunk j; 1 for the dense formats).
template <int F> struct sub_traits { enum { N = vec_traits<F>::ELEMS < 8 ? vec_traits<F>::ELEMS : 8 }; };

template <int F>
__device__ __forceinline__ void decode_sub(uint4 raw, int j, float scale, float *w) {
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
        // two E4M3 codes -> half2 in one conversion (exact: E4M3 values are all halves)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(
                (__nv_fp8x2_storage_t)((words[2 * j + i / 2] >> (16 * (i % 2))) & 0xffffu), __NV_E4M3);
            const float2 f = __half22float2(*(const __half2 *)&h);
            w[2 * i] = f.x * scale, w[2 * i + 1] = f.y * scale;
        }
    } else {  // NVFP4: word j holds elements 8j .. 8j+7, even element in the low nibble
        // An E2M1 code placed in an f16's sign, exponent low bits and mantissa top bit is the value
        // times 2^-14 (the factor is in `scale`); one byte_perm puts two nibbles at bytes 0 and 2.
        const uint32_t even = words[j] & 0x0f0f0f0fu, odd = (words[j] >> 4) & 0x0f0f0f0fu;
#pragma unroll
        for (int b = 0; b < 4; b++) {
            const uint32_t nib = __byte_perm(even, odd, (unsigned)(b | b << 4 | (4 + b) << 8 | (4 + b) << 12));
            const uint32_t pair = ((nib << 9) & 0x0e000e00u) | ((nib << 12) & 0x80008000u);
            const float2 f = __half22float2(*(const __half2 *)&pair);
            w[2 * b] = f.x * scale, w[2 * b + 1] = f.y * scale;  // exact: 2 x 4 significant bits
        }
    }
}

// The scale of sub-chunk j of chunk c of a row (see decode_sub); scale_row as scale_row_of gives it.
template <int F>
__device__ __forceinline__ float sub_scale(const void *scale_row, unsigned c, unsigned chunks_per_block, int j) {
    if (F == VEC_FP8_BLOCK) return __ldg((const float *)scale_row + c / chunks_per_block);
    if (F == VEC_NVFP4) return fp8_bits_to_float(__ldg((const uint8_t *)scale_row + 2 * c + j / 2)) * 16384.0f;
    return 1.0f;
}

enum { GEMV_LOADS = 8 };  // 16-byte weight loads in flight per lane (over the rows of a warp)
// Loads per row and lane of one step of rows_dot when a warp streams NR rows.
template <int NR> struct gemv_unroll { enum { U = GEMV_LOADS / NR > 0 ? GEMV_LOADS / NR : 1 }; };

// A 16-byte weight chunk, read once: with past_l1, without a place in L1 (ld.global.nc.L1::no_allocate),
// so that the streamed weights do not evict the x rows every warp reads again for each of its chunks
// (L2 serves them otherwise; for BF16 rows and T tokens they are T times the weight bytes). A uniform
// branch.
__device__ __forceinline__ uint4 load_weight_chunk(const uint4 *p, bool past_l1) {
    if (!past_l1) return __ldg(p);
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

// acc[r][t] += row r's chunks [c_begin, c_end) · x row t (chunk c at lane c % 32), for NR weight rows
// that share the x loads (a 16-byte chunk of NVFP4 needs 128 bytes of x: reading x once for several
// rows is what lets the weight stream run at HBM speed). Per token the arithmetic is the same
// whatever nt is (the server relies on batched rows matching solo rows bitwise).
template <int F, int NR, int MAX_T, bool PERMUTED>
__device__ __forceinline__ void rows_dot(const uint4 *const *rows, const void *const *scales, unsigned chunks_per_block,
                                         int64_t c_begin, int64_t c_end, int lane, const float *const *xr, int nt,
                                         float (*acc)[MAX_T], bool past_l1 = false) {
    constexpr int E = vec_traits<F>::ELEMS, SUB = sub_traits<F>::N, U = gemv_unroll<NR>::U;
    for (int64_t c0 = c_begin + lane; c0 < c_end; c0 += 32 * U) {
        uint4 raw[U][NR];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int r = 0; r < NR; r++)
                raw[u][r] = c0 + 32 * u < c_end ? load_weight_chunk(rows[r] + c0 + 32 * u, past_l1)
                                                : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (c0 + 32 * u >= c_end) break;
            const unsigned c = (unsigned)(c0 + 32 * u);
#pragma unroll
            for (int j = 0; j < E / SUB; j++) {
                float w[NR][SUB];
#pragma unroll
                for (int r = 0; r < NR; r++)
                    decode_sub<F>(raw[u][r], j, sub_scale<F>(scales[r], c, chunks_per_block, j), w[r]);
#pragma unroll
                for (int t = 0; t < MAX_T; t++) {
                    if (t >= nt) break;
#pragma unroll
                    for (int q = 0; q < SUB / 4; q++) {
                        const int i = j * (SUB / 4) + q;  // float4 i of the chunk
                        const float *xp = PERMUTED ? xr[t] + ((size_t)(c / 32) * (E / 4) + i) * 128 + (c % 32) * 4
                                                   : xr[t] + (size_t)c * E + 4 * i;
                        const float4 v = *(const float4 *)xp;
#pragma unroll
                        for (int r = 0; r < NR; r++) {
                            float a = acc[r][t];
                            a = fmaf(w[r][4 * q], v.x, a);
                            a = fmaf(w[r][4 * q + 1], v.y, a);
                            a = fmaf(w[r][4 * q + 2], v.z, a);
                            a = fmaf(w[r][4 * q + 3], v.w, a);
                            acc[r][t] = a;
                        }
                    }
                }
            }
        }
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <int F>
__device__ __forceinline__ const void *scale_row_of(const dev_weight &W, int64_t r, unsigned *chunks_per_block) {
    constexpr int E = vec_traits<F>::ELEMS;
    *chunks_per_block = 1;
    if (F == VEC_FP8_BLOCK) {
        *chunks_per_block = (unsigned)W.block / E;
        return (const float *)W.scales + (r / W.block) * ((W.cols + W.block - 1) / W.block);
    }
    if (F == VEC_NVFP4) return (const uint8_t *)W.scales + r * (W.cols / 16);
    return NULL;
}

template <int F>
__device__ __forceinline__ const uint4 *row_of(const dev_weight &W, int64_t r) {
    constexpr int E = vec_traits<F>::ELEMS;
    const size_t row_bytes = F == VEC_NVFP4 ? (size_t)W.cols / 2 : (size_t)W.cols * (E == 4 ? 4 : E == 8 ? 2 : 1);
    return (const uint4 *)((const char *)W.data + (size_t)r * row_bytes);
}

// Rows of W a warp streams together (sharing its x loads): more for the formats whose chunks need
// more x per weight byte.
template <int F> struct gemv_rows { enum { R = vec_traits<F>::ELEMS >= 16 ? 4 : vec_traits<F>::ELEMS == 8 ? 2 : 1 }; };
// Output rows of a row group: a SWIGLU group streams a gate and an up row per output row, so the
// FP8 / NVFP4 groups take half as many (registers).
template <int F, bool SWIGLU> struct gemv_group {
    enum { R = SWIGLU && vec_traits<F>::ELEMS >= 16 ? gemv_rows<F>::R / 2 : gemv_rows<F>::R };
};

// The rope epilogue of matmul_rope (backend.h): output rows h·head_stride + offset + 2i and the next
// (i < pairs) of token t rotated by pos[t]·inv_freq[i] (rope_rotate, as the rope kernel does). Empty
// when not asked, so the other GEMVs' launches carry nothing more.
template <bool ROPE> struct gemv_rope {};
template <> struct gemv_rope<true> {
    rope_freqs f;
    const int32_t *pos;
    int head_stride, offset, pairs;
    float attn_factor;
};

// Rotates the pairs among v (output rows n_first .. n_first + R - 1 of token t; n_first and R even, so
// a pair never straddles two groups) that fall in a head's rope slice.
template <int R>
__device__ __forceinline__ void gemv_rope_rows(float (&v)[R], int64_t n_first, int t, const gemv_rope<true> &rp) {
    static_assert(R % 2 == 0, "whole pairs per row group");
#pragma unroll
    for (int r = 0; r < R; r += 2) {
        const int d = (int)((n_first + r) % rp.head_stride) - rp.offset;
        if (d >= 0 && d < 2 * rp.pairs) rope_rotate(v[r], v[r + 1], rp.f.inv_freq[d / 2], rp.pos[t], rp.attn_factor);
    }
}

// A block of GEMV_WARPS warps = (GEMV_WARPS / splits) row groups x `splits` warps per group; a group
// owns R consecutive rows of W and its warps split their chunks into `splits` equal ranges (long rows
// and small matrices get more, shorter work units, so the grid ends in a short last wave). Partial
// sums meet in shared memory and are added in split order: each output is formed the same way for
// any T. Grid: (row blocks x token chunks of MAX_T, batch), the chunk index fastest, so the chunks of
// a row block share its weight rows in L2.
// SWIGLU: y[t, n] = silu(W[n] · x[t]) · (W2[n] · x[t]) (the gate and up rows of a group share the x
// loads: a dense MLP's or shared expert's first half in one kernel). ROPE: the rows rotated before
// they are written (gemv_rope; batch 1). No minimum of resident blocks in the launch bounds: even a
// minimum of 1 let ptxas give the plain kernels more registers (BF16 one-token 64 -> 72, NVFP4
// 127 -> 141), a quarter fewer resident blocks.
template <int F, int MAX_T, bool PERMUTED, bool SWIGLU, bool ROPE = false>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_vec_kernel(float *y, int y_stride, const float *x, int x_stride, int T, dev_weight W, int64_t w_row_step,
                    int64_t x_step, int64_t y_step, int splits, dev_weight W2, bool past_l1, gemv_rope<ROPE> rope) {
    constexpr int E = vec_traits<F>::ELEMS, R = gemv_group<F, SWIGLU>::R, NR = SWIGLU ? 2 * R : R;
    static_assert(!(SWIGLU && ROPE), "a rope epilogue on plain projections only");
    __shared__ float partial[GEMV_WARPS][NR][MAX_T];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int groups = GEMV_WARPS / splits, split = warp % splits, group = warp / splits;
    const unsigned token_chunks = (unsigned)(T + MAX_T - 1) / MAX_T;
    const int64_t n0 = ((int64_t)(blockIdx.x / token_chunks) * groups + group) * R;
    const int t0 = (int)(blockIdx.x % token_chunks) * MAX_T, nt = min(MAX_T, T - t0);
    const int64_t chunks = W.cols / E, per = (chunks + splits - 1) / splits;
    const int64_t c_begin = split * per, c_end = min(chunks, c_begin + per);
    const uint4 *rows[NR];
    const void *scales[NR];
    unsigned chunks_per_block = 1;
#pragma unroll
    for (int r = 0; r < NR; r++) {  // rows past the end re-read the last row; their sums are dropped
        const dev_weight &M = SWIGLU && r >= R ? W2 : W;
        const int64_t s = M.row0 + (int64_t)blockIdx.y * w_row_step + min(n0 + r % R, M.rows - 1);
        rows[r] = row_of<F>(M, s), scales[r] = scale_row_of<F>(M, s, &chunks_per_block);
    }
    // The weights are no earlier kernel's output: their first loads start on their way to L2 while the
    // kernel before this one finishes (launch_chained).
#pragma unroll
    for (int u = 0; u < gemv_unroll<NR>::U; u++)
#pragma unroll
        for (int r = 0; r < NR; r++)
            if (c_begin + lane + 32 * u < c_end) prefetch_l2(rows[r] + c_begin + lane + 32 * u);
    chain_wait();
    x += blockIdx.y * x_step + (int64_t)t0 * x_stride;
    const float *xr[MAX_T];
#pragma unroll
    for (int t = 0; t < MAX_T; t++) xr[t] = x + (size_t)(t < nt ? t : 0) * x_stride;
    float acc[NR][MAX_T];
#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
        for (int t = 0; t < MAX_T; t++) acc[r][t] = 0.0f;
    rows_dot<F, NR, MAX_T, PERMUTED>(rows, scales, chunks_per_block, c_begin, c_end, lane, xr, nt, acc, past_l1);
    y += blockIdx.y * y_step + (int64_t)t0 * y_stride;
    const float out_scale = F == VEC_NVFP4 ? W.global_scale : 1.0f;
    const float out_scale2 = F == VEC_NVFP4 ? W2.global_scale : 1.0f;
    // the output of row r of the group from its two (or one) sums
    auto out = [&](float a, float b) {
        a *= out_scale;
        return SWIGLU ? a / (1.0f + expf(-a)) * (b * out_scale2) : a;
    };
    if (splits == 1) {
        if constexpr (ROPE) {  // a token's R outputs together: the pairs to rotate are among them
#pragma unroll
            for (int t = 0; t < MAX_T; t++) {
                if (t >= nt) break;
                float v[R];
#pragma unroll
                for (int r = 0; r < R; r++) v[r] = out(warp_sum(acc[r][t]), 0.0f);
                gemv_rope_rows<R>(v, n0, t0 + t, rope);
#pragma unroll
                for (int r = 0; r < R; r++)
                    if (lane == 0 && n0 + r < W.rows) y[(size_t)t * y_stride + n0 + r] = v[r];
            }
        } else {
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int t = 0; t < MAX_T; t++) {
                    if (t >= nt) break;
                    const float a = warp_sum(acc[r][t]), b = SWIGLU ? warp_sum(acc[NR - R + r][t]) : 0.0f;
                    if (lane == 0 && n0 + r < W.rows) y[(size_t)t * y_stride + n0 + r] = out(a, b);
                }
        }
        return;
    }
#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
        for (int t = 0; t < MAX_T; t++) {
            if (t >= nt) break;
            const float v = warp_sum(acc[r][t]);
            if (lane == 0) partial[warp][r][t] = v;
        }
    __syncthreads();
    if constexpr (ROPE) {  // a thread per (group, token): its R outputs, then the rotation
        for (int i = threadIdx.x; i < groups * MAX_T; i += blockDim.x) {
            const int g = i / MAX_T, t = i % MAX_T;
            if (t >= nt) continue;
            const int64_t n_first = ((int64_t)(blockIdx.x / token_chunks) * groups + g) * R;
            float v[R];
#pragma unroll
            for (int r = 0; r < R; r++) {
                float a = partial[g * splits][r][t];
                for (int s = 1; s < splits; s++) a += partial[g * splits + s][r][t];
                v[r] = out(a, 0.0f);
            }
            gemv_rope_rows<R>(v, n_first, t0 + t, rope);
#pragma unroll
            for (int r = 0; r < R; r++)
                if (n_first + r < W.rows) y[(size_t)t * y_stride + n_first + r] = v[r];
        }
    } else {
        for (int i = threadIdx.x; i < groups * R * MAX_T; i += blockDim.x) {
            const int g = i / (R * MAX_T), r = i / MAX_T % R, t = i % MAX_T;
            const int64_t n = ((int64_t)(blockIdx.x / token_chunks) * groups + g) * R + r;
            if (t >= nt || n >= W.rows) continue;
            float a = partial[g * splits][r][t], b = SWIGLU ? partial[g * splits][NR - R + r][t] : 0.0f;
            for (int s = 1; s < splits; s++) {
                a += partial[g * splits + s][r][t];
                if (SWIGLU) b += partial[g * splits + s][NR - R + r][t];
            }
            y[(size_t)t * y_stride + n] = out(a, b);
        }
    }
}

// Any format and alignment: one warp per row, one element per lane step.
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_scalar_kernel(float *y, int y_stride, const float *x, int x_stride, int T, dev_weight W,
                       int64_t w_row_step, int64_t x_step, int64_t y_step) {
    chain_wait();
    const int lane = threadIdx.x & 31;
    const unsigned token_chunks = (unsigned)(T + GEMV_MAX_T - 1) / GEMV_MAX_T;
    const int64_t n = (int64_t)(blockIdx.x / token_chunks) * GEMV_WARPS + (threadIdx.x >> 5);
    if (n >= W.rows) return;
    const int t0 = (int)(blockIdx.x % token_chunks) * GEMV_MAX_T, nt = min(GEMV_MAX_T, T - t0);
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
    chain_wait();
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

void glint_cuda_matmul_simt(float *y, int y_stride, const float *x, int x_stride, int T, const dev_weight &W, int batch,
                            int64_t w_row_step, int64_t x_step, int64_t y_step) {
    dim3 grid((unsigned)((W.rows + TILE_N - 1) / TILE_N), (unsigned)((T + TILE_M - 1) / TILE_M), (unsigned)batch);
    gemm_tiled_kernel<<<grid, 256, 0, glint_cuda_stream()>>>(y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step);
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

// x rows reordered for the GEMV of E-element chunks: per group of 32 chunks, float4 i of lane l's
// chunk sits at (group·E/4 + i)·32 + l, so a warp's x loads are contiguous 512-byte runs (the
// natural order puts lanes E floats apart: a cache line per lane and load). One row per (batch, t).
__global__ void permute_x_kernel(float4 *xp, const float *x, int x_stride, int64_t x_step, int T, int E, int64_t chunks,
                                 int64_t row_float4s, size_t total) {
    chain_wait();
    const size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= total) return;
    const size_t row = o / row_float4s, q = o % row_float4s;
    const int64_t b = (int64_t)(row / T), t = (int64_t)(row % T);
    const int64_t per_group = (int64_t)E / 4 * 32, g = q / per_group, rem = q % per_group;
    const int64_t i = rem / 32, lane = rem % 32, c = g * 32 + lane;
    const float *src = x + b * x_step + t * x_stride + c * E + 4 * i;
    xp[o] = c < chunks ? make_float4(src[0], src[1], src[2], src[3]) : make_float4(0, 0, 0, 0);
}

// Grow-only device buffers of this file, per device and stream slot; stream order keeps one op's use
// before the next's rewrite.
static struct {
    float *permuted_x;      // matmul: x with 16-element chunks reordered
    float *moe_xp, *moe_h;  // grouped experts: permuted token rows, SwiGLU outputs
    size_t permuted_x_bytes, moe_xp_bytes, moe_h_bytes;
} buffers[GLINT_CUDA_MAX_DEVICES][GLINT_CUDA_STREAMS];

static int sm_count(void) {  // of the calling thread's device
    static int sm_counts[GLINT_CUDA_MAX_DEVICES];
    const int device = glint_cuda_device();
    int &sms = sm_counts[device];
    if (!sms && (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms < 1)) {
        cudaGetLastError();
        sms = 1;
    }
    return sms;
}

// Warps per row group of gemv_vec_kernel (1, 2, 4 or 8), from W's shape, the batch and the card, never
// from T (the split decides the order of the sums, which must not change with the number of tokens;
// `slots` is the one-token kernel's resident blocks per SM for every T). Picks the split whose grid
// fills its last wave best (blocks / (waves x resident blocks)); within 3% the smaller split, whose
// warps keep longer runs of loads. Each warp keeps at least a chunk per lane, and at least 128 chunks
// (2 KiB) over the streams_per_group rows it reads unless the grid does not fill the card once (a work
// unit's setup costs about as much as streaming a few KiB).
static int gemv_splits(int64_t rows, int64_t chunks, int rows_per_group, int streams_per_group, int batch,
                       int slots_per_sm) {
    const int64_t slots = (int64_t)sm_count() * (slots_per_sm > 0 ? slots_per_sm : 1);
    int best = 1;
    int64_t best_blocks = 0;
    double best_fill = 0.0;
    for (int splits = 1; splits <= GEMV_WARPS; splits *= 2) {
        if (splits > 1 && (chunks / splits < 32 || (chunks / splits * streams_per_group < 128 && best_blocks >= slots)))
            break;
        const int64_t rows_per_block = (int64_t)(GEMV_WARPS / splits) * rows_per_group;
        const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block * batch;
        const double fill = (double)blocks / (double)(((blocks + slots - 1) / slots) * slots);
        if (fill > best_fill * 1.03) best = splits, best_fill = fill, best_blocks = blocks;
    }
    return best;
}

// Resident blocks per SM of the one-token kernel for format F (fixed per device).
template <int F, bool SWIGLU> static int gemv_slots_per_sm() {
    static int slots_of_device[GLINT_CUDA_MAX_DEVICES];
    int &slots = slots_of_device[glint_cuda_device()];
    constexpr bool permuted = vec_traits<F>::ELEMS >= 16;
    if (!slots && cudaOccupancyMaxActiveBlocksPerMultiprocessor(&slots, gemv_vec_kernel<F, 1, permuted, SWIGLU>,
                                                                GEMV_WARPS * 32, 0) != cudaSuccess) {
        cudaGetLastError();
        slots = 1;
    }
    return slots;
}

// W2: the up projection of a SWIGLU launch (same shape and format as W), else unused; rope: the rope
// epilogue of a ROPE launch (batch 1). The split comes from the plain kernel's occupancy whatever ROPE
// is, so a ROPE launch sums as the plain one does (matmul_rope's bits = matmul then rope).
template <int F, bool SWIGLU = false, bool ROPE = false>
static void launch_vec(float *y, int y_stride, const float *x, int x_stride, int T, const dev_weight &W, int batch,
                       int64_t w_row_step, int64_t x_step, int64_t y_step, const dev_weight &W2 = dev_weight{},
                       const gemv_rope<ROPE> &rope = gemv_rope<ROPE>{}) {
    constexpr int E = vec_traits<F>::ELEMS, R = gemv_group<F, SWIGLU>::R;
    const int64_t chunks = W.cols / E;
    const int splits = gemv_splits(W.rows, chunks, R, SWIGLU ? 2 * R : R, batch, gemv_slots_per_sm<F, SWIGLU>());
    const int64_t rows_per_block = (int64_t)(GEMV_WARPS / splits) * R;
    const unsigned token_chunks = (unsigned)((T + GEMV_MAX_T - 1) / GEMV_MAX_T);
    const dim3 grid(token_chunks * (unsigned)((W.rows + rows_per_block - 1) / rows_per_block),
                    (unsigned)batch);
    // BF16 / F16 chunks (8 elements) put a warp's x loads 32 bytes apart per lane, twice the L1
    // wavefronts of a contiguous run; for T > 1 those loads (T per weight chunk) may bound the GEMV
    // (2 rows stream at ~60% of the 1-row rate on H200). GLINT_CUDA_GEMV_PERMUTE=1 reorders x for
    // them too when T > 1 (one more launch; the same sums, so rows stay bitwise the row alone).
    // Off by default: no gain seen on H200 (session 12, alternated: the 1-draft verify step 1.71x a
    // plain step both ways, 2 drafts 2.35, 2.35x -> 2.32, 2.31x, within the spread).
    static const int permute_8 = glint_cuda_switch("GLINT_CUDA_GEMV_PERMUTE", 0);
    const bool permute = E >= 16 || (E == 8 && T > 1 && permute_8);
    if (permute) {  // FP8 and NVFP4 chunks (and the above): reorder x first
        const int64_t row_floats = (chunks + 31) / 32 * 32 * E;
        const size_t rows = (size_t)batch * T, bytes = rows * (size_t)row_floats * sizeof(float);
        auto &buf = buffers[glint_cuda_device()][glint_cuda_stream_slot()];
        if (glint_cuda_grow((void **)&buf.permuted_x, &buf.permuted_x_bytes, bytes, "matmul")) return;
        const size_t total = rows * (size_t)(row_floats / 4);
        launch_chained(permute_x_kernel, (unsigned)((total + 255) / 256), 256, 0, (float4 *)buf.permuted_x, x, x_stride,
            x_step, T, E, chunks, row_floats / 4, total);
        x = buf.permuted_x, x_stride = (int)row_floats, x_step = (int64_t)T * row_floats;
    }
    constexpr bool P = E >= 16;
    // GLINT_CUDA_GEMV_PAST_L1: the weights past L1 for T > 1 (1, the default: an MTP verify step 2%
    // shorter on H200), for every T (2: no change at T = 1) or never (0)
    static const int past_l1_mode = [] {
        const char *v = getenv("GLINT_CUDA_GEMV_PAST_L1");
        return v && *v ? atoi(v) : 1;
    }();
    const bool past_l1 = past_l1_mode == 2 || (past_l1_mode == 1 && T > 1);
    // 2 and 4 rows take kernels for 2 and 4 tokens rather than the 8-token one, whose accumulators
    // for absent tokens cost registers (BF16: 110 against 64 for one token, 128 with spills for the
    // SwiGLU pair against 79: half the resident blocks). Each token's sums are formed alike at every
    // width. On H200 (session 12, alternated in one call) the 1-draft speculative step went from 1.71,
    // 1.71x a plain step to 1.59, 1.59x. GLINT_CUDA_GEMV_WIDTHS=0: the 8-token kernel for every T > 1.
    static const int widths = glint_cuda_switch("GLINT_CUDA_GEMV_WIDTHS", 1);
    const int width = T == 1 ? 1 : widths && T == 2 ? 2 : widths && T <= 4 ? 4 : GEMV_MAX_T;
    auto run = [&](auto kernel) {
        launch_chained(kernel, grid, GEMV_WARPS * 32, 0, y, y_stride, x, x_stride, T, W, w_row_step, x_step, y_step,
            splits, W2, past_l1, rope);
    };
    constexpr bool Q = E == 8 || P;  // the permuted layout where x may be reordered (E == 8: when T > 1 and asked)
    if (width == 1) run(gemv_vec_kernel<F, 1, P, SWIGLU, ROPE>);
    else if (width == 2)
        permute ? run(gemv_vec_kernel<F, 2, Q, SWIGLU, ROPE>) : run(gemv_vec_kernel<F, 2, P, SWIGLU, ROPE>);
    else if (width == 4)
        permute ? run(gemv_vec_kernel<F, 4, Q, SWIGLU, ROPE>) : run(gemv_vec_kernel<F, 4, P, SWIGLU, ROPE>);
    else
        permute ? run(gemv_vec_kernel<F, GEMV_MAX_T, Q, SWIGLU, ROPE>)
                : run(gemv_vec_kernel<F, GEMV_MAX_T, P, SWIGLU, ROPE>);
}

void glint_cuda_matmul_batched(float *y, int y_stride, const float *x, int x_stride, int T, const dev_weight &W,
                               int batch, int64_t w_row_step, int64_t x_step, int64_t y_step) {
    if (T <= 0 || W.rows <= 0 || batch <= 0) return;
    if (T > GEMV_T_LIMIT) {
        // tensor cores (cuda_gemm.cu) where the GLINT_CUDA_TC mode takes W's format; the FP32 tiles otherwise
        if (!glint_cuda_matmul_tc(y, y_stride, x, x_stride, T, W, batch, w_row_step, x_step, y_step))
            glint_cuda_matmul_simt(y, y_stride, x, x_stride, T, W, batch, w_row_step, x_step, y_step);
        return;
    }
    const unsigned token_chunks = (unsigned)((T + GEMV_MAX_T - 1) / GEMV_MAX_T);
    if (W.format == GLINT_WFMT_GPTQ_INT4) {
        dim3 grid((unsigned)((W.rows + GPTQ_COLS - 1) / GPTQ_COLS), (unsigned)batch, token_chunks);
        launch_chained(gemv_gptq_kernel, grid, dim3(GPTQ_COLS, GPTQ_SPLIT), 0, y, y_stride, x, x_stride, T, W,
            w_row_step, x_step, y_step);
        return;
    }
    const int vf = vec_format_of(W);
    // The vector path needs 16-byte aligned weight rows and float4-aligned activation rows.
    bool aligned = vf >= 0;
    if (aligned) {
        const size_t rb = row_bytes_of(W, vf);
        aligned = rb % 16 == 0 && ((uintptr_t)W.data + (size_t)W.row0 * rb) % 16 == 0 &&
                  ((size_t)w_row_step * rb) % 16 == 0 && (uintptr_t)x % 16 == 0 && x_stride % 4 == 0 && x_step % 4 == 0;
    }
    if (!aligned) {
        const dim3 grid(token_chunks * (unsigned)((W.rows + GEMV_WARPS - 1) / GEMV_WARPS), (unsigned)batch);
        launch_chained(gemv_scalar_kernel, grid, GEMV_WARPS * 32, 0, y, y_stride, x, x_stride, T, W, w_row_step, x_step,
            y_step);
        return;
    }
    switch (vf) {
    case VEC_F32: launch_vec<VEC_F32>(y, y_stride, x, x_stride, T, W, batch, w_row_step, x_step, y_step); break;
    case VEC_BF16: launch_vec<VEC_BF16>(y, y_stride, x, x_stride, T, W, batch, w_row_step, x_step, y_step); break;
    case VEC_F16: launch_vec<VEC_F16>(y, y_stride, x, x_stride, T, W, batch, w_row_step, x_step, y_step); break;
    case VEC_FP8: launch_vec<VEC_FP8>(y, y_stride, x, x_stride, T, W, batch, w_row_step, x_step, y_step); break;
    case VEC_FP8_BLOCK:
        launch_vec<VEC_FP8_BLOCK>(y, y_stride, x, x_stride, T, W, batch, w_row_step, x_step, y_step);
        break;
    default: launch_vec<VEC_NVFP4>(y, y_stride, x, x_stride, T, W, batch, w_row_step, x_step, y_step); break;
    }
}

// y[T, I] = silu(x · gate^T) ⊙ (x · up^T) in one launch for T <= 64 (backend.h: swiglu_matmul); 0 when
// the shapes, formats or alignment do not allow it and nothing was launched.
extern "C" int glint_cuda_swiglu_matmul(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                                        const glint_weight *gate, const glint_weight *up) {
    (void)be;
    const dev_weight G = dev_weight_of(gate), U = dev_weight_of(up);
    const int vf = vec_format_of(G);
    if (T <= 0 || T > GEMV_T_LIMIT || vf < 0 || vf != vec_format_of(U) || G.rows != U.rows || G.cols != U.cols ||
        (vf == VEC_FP8_BLOCK && G.block != U.block))
        return 0;
    const size_t rb = row_bytes_of(G, vf);
    if (rb % 16 || (uintptr_t)G.data % 16 || (uintptr_t)U.data % 16 || (uintptr_t)x % 16 || x_stride % 4) return 0;
    switch (vf) {
    case VEC_F32: launch_vec<VEC_F32, true>(y, y_stride, x, x_stride, T, G, 1, 0, 0, 0, U); break;
    case VEC_BF16: launch_vec<VEC_BF16, true>(y, y_stride, x, x_stride, T, G, 1, 0, 0, 0, U); break;
    case VEC_F16: launch_vec<VEC_F16, true>(y, y_stride, x, x_stride, T, G, 1, 0, 0, 0, U); break;
    case VEC_FP8: launch_vec<VEC_FP8, true>(y, y_stride, x, x_stride, T, G, 1, 0, 0, 0, U); break;
    case VEC_FP8_BLOCK: launch_vec<VEC_FP8_BLOCK, true>(y, y_stride, x, x_stride, T, G, 1, 0, 0, 0, U); break;
    default: launch_vec<VEC_NVFP4, true>(y, y_stride, x, x_stride, T, G, 1, 0, 0, 0, U); break;
    }
    glint_cuda_check("swiglu_matmul");
    return 1;
}

// y[T, N] = x · W^T and then RoPE on y's heads (backend.h: matmul_rope) in one launch for T <= 64: the
// GEMV's row groups hold whole pairs (BF16, FP8-block and NVFP4 rows: 2 or 4 per group), so the
// rotation happens before the write, saving the rope kernel's launch and its round trip on the
// critical path (the DSA indexer's queries, then the scores: in a session-12 H200 trace with it on,
// the scores started ~2 us after the GEMV instead of ~6). The same bits as the matmul and rope ops in
// turn. 0 when the case is not covered and nothing was launched.
extern "C" int glint_cuda_matmul_rope(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                                      const glint_weight *W, int n_heads, int head_stride, int offset, int rope_dim,
                                      const int32_t *pos, const float *inv_freq, float attn_factor) {
    (void)be;
    // GLINT_CUDA_MATMUL_ROPE=0 declines it. On by default since session 13: with the indexer's queries
    // fused (the model's only use) decode gained ~1 point of the copy bandwidth at 256, 4k and 128k on
    // H200 (bench/RESULTS.md); q_b fused as well had shown no gain in session 12.
    static const int on = glint_cuda_switch("GLINT_CUDA_MATMUL_ROPE", 1);
    const dev_weight D = dev_weight_of(W);
    const int vf = vec_format_of(D), pairs = rope_dim / 2;
    if (!on || T <= 0 || T > GEMV_T_LIMIT || (vf != VEC_BF16 && vf != VEC_FP8_BLOCK && vf != VEC_NVFP4) ||
        pairs <= 0 || pairs > ROPE_MAX_PAIRS || rope_dim % 2 || offset < 0 || offset % 2 || head_stride % 2 ||
        offset + rope_dim > head_stride || n_heads <= 0 || (int64_t)n_heads * head_stride != D.rows ||
        y_stride < D.rows)
        return 0;
    const size_t rb = row_bytes_of(D, vf);
    if (rb % 16 || ((uintptr_t)D.data + (size_t)D.row0 * rb) % 16 || (uintptr_t)x % 16 || x_stride % 4) return 0;
    gemv_rope<true> rope;
    if (rope_table(&rope.f, inv_freq, rope_dim)) return 0;
    rope.pos = pos, rope.head_stride = head_stride, rope.offset = offset, rope.pairs = pairs;
    rope.attn_factor = attn_factor;
    switch (vf) {
    case VEC_BF16:
        launch_vec<VEC_BF16, false, true>(y, y_stride, x, x_stride, T, D, 1, 0, 0, 0, dev_weight{}, rope);
        break;
    case VEC_FP8_BLOCK:
        launch_vec<VEC_FP8_BLOCK, false, true>(y, y_stride, x, x_stride, T, D, 1, 0, 0, 0, dev_weight{}, rope);
        break;
    default:
        launch_vec<VEC_NVFP4, false, true>(y, y_stride, x, x_stride, T, D, 1, 0, 0, 0, dev_weight{}, rope);
        break;
    }
    glint_cuda_check("matmul_rope");
    return 1;
}

// ---------------------------------------------------------------------------------------------
// Routed experts of one MoE layer for T <= 64 tokens, without a host round trip: a block owns 8 rows
// of one active expert (blockIdx.y: the j-th expert that got tokens, read from the device-side plan)
// and runs all of that expert's tokens through them, 8 per pass. Gate and up rows are streamed side
// by side and SwiGLU is applied before the write, so h is written once, in the order the down
// projection's kernel reads (lane-major for FP8/NVFP4 chunks). Every (token, expert) row is computed
// in the same order whatever else is batched with it.

// Float index of element k in a permuted row of E-element chunks (see permute_x_kernel).
__device__ __forceinline__ int64_t permuted_index(int64_t k, int E) {
    const int64_t c = k / E, e = k % E;
    return 4 * ((c / 32) * (E / 4) * 32 + (e / 4) * 32 + c % 32) + e % 4;
}

// GATE_UP: h[row, n] = silu(gate_e[n] · x[token(row)]) · (up_e[n] · x[token(row)]) for n < I (a warp:
// MOE_GU_ROWS gate rows and the same up rows, sharing the x loads); else out[row, n] = down_e[n] · h[row]
// for n < D (a warp: MOE_DOWN_ROWS rows). tab: [3][E] device weights (gate, up, down).
enum { MOE_GU_ROWS = 2, MOE_DOWN_ROWS = 4 };
template <int F, bool GATE_UP, int MAX_T>
__global__ void __launch_bounds__(GEMV_WARPS * 32, MAX_T == 1 ? 2 : 1)
    moe_gemv_kernel(float *out, const float *x, int64_t x_row_floats, const dev_weight *tab, int E, glint_moe_plan plan,
                    int64_t out_row_floats, int h_elems) {
    chain_wait();
    constexpr int EL = vec_traits<F>::ELEMS, R = GATE_UP ? MOE_GU_ROWS : MOE_DOWN_ROWS, NR = GATE_UP ? 2 * R : R;
    constexpr bool PERMUTED = EL >= 16;
    const int j = blockIdx.y;
    if (j >= *plan.n_active) return;
    const int e = plan.active[j], lane = threadIdx.x & 31;
    const dev_weight &A = tab[(GATE_UP ? 0 : 2) * E + e];
    const int64_t n0 = ((int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5)) * R;
    if (n0 >= A.rows) return;
    const int64_t chunks = A.cols / EL;
    const uint4 *rows[NR];
    const void *scales[NR];
    unsigned chunks_per_block = 1;
#pragma unroll
    for (int r = 0; r < NR; r++) {  // gate rows, then up rows; rows past the end re-read the last one
        const dev_weight &W = GATE_UP && r >= R ? tab[E + e] : A;
        const int64_t s = W.row0 + min(n0 + r % R, W.rows - 1);
        rows[r] = row_of<F>(W, s), scales[r] = scale_row_of<F>(W, s, &chunks_per_block);
    }
    const float gs_a = F == VEC_NVFP4 ? A.global_scale : 1.0f;
    const float gs_b = F == VEC_NVFP4 && GATE_UP ? tab[E + e].global_scale : 1.0f;
    const int first = plan.offsets[e], count = plan.offsets[e + 1] - first;
    for (int p0 = 0; p0 < count; p0 += MAX_T) {
        const int nt = min(MAX_T, count - p0);
        const float *xr[MAX_T];
#pragma unroll
        for (int t = 0; t < MAX_T; t++) {
            const int row = first + p0 + (t < nt ? t : 0);
            xr[t] = x + (GATE_UP ? (int64_t)(plan.pair_of_row[row] / plan.top_k) : (int64_t)row) * x_row_floats;
        }
        float acc[NR][MAX_T];
#pragma unroll
        for (int r = 0; r < NR; r++)
#pragma unroll
            for (int t = 0; t < MAX_T; t++) acc[r][t] = 0.0f;
        rows_dot<F, NR, MAX_T, PERMUTED>(rows, scales, chunks_per_block, 0, chunks, lane, xr, nt, acc);
#pragma unroll
        for (int t = 0; t < MAX_T; t++) {
            if (t >= nt) break;
            float *o = out + (int64_t)(first + p0 + t) * out_row_floats;
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float a = warp_sum(acc[r][t]) * gs_a;
                const int64_t n = n0 + r;
                if (GATE_UP) {
                    const float b = warp_sum(acc[R + r][t]) * gs_b;
                    if (lane == 0 && n < A.rows)
                        o[PERMUTED ? permuted_index(n, h_elems) : n] = a / (1.0f + expf(-a)) * b;
                } else if (lane == 0 && n < A.rows) {
                    o[n] = a;
                }
            }
        }
    }
}

int glint_cuda_grow(void **buf, size_t *have, size_t bytes, const char *what) {
    if (bytes <= *have) return 0;
    glint_cuda_dev().buffer_epoch++;
    cudaFree(*buf);
    *buf = NULL, *have = 0;
    if (cudaMalloc(buf, bytes + bytes / 4) != cudaSuccess) {
        cudaGetLastError();
        glint_set_error("CUDA %s: out of device memory for %zu bytes of activations", what, bytes);
        glint_cuda_fail();
        return -1;
    }
    *have = bytes + bytes / 4;
    return 0;
}

int glint_cuda_moe_format(const dev_weight &W) {
    const int vf = vec_format_of(W);
    if (vf < 0) return -1;
    const size_t rb = row_bytes_of(W, vf);
    if (rb % 16 || (uintptr_t)W.data % 16) return -1;
    return vf;
}

template <int F>
static void launch_moe(float *out, const float *x, int T, int D, int I, const dev_weight *tab, int E, int slots,
                       const glint_moe_plan &plan) {
    constexpr int EL = vec_traits<F>::ELEMS;
    const int64_t x_row = EL >= 16 ? ((int64_t)D / EL + 31) / 32 * 32 * EL : D;
    const int64_t h_row = EL >= 16 ? ((int64_t)I / EL + 31) / 32 * 32 * EL : I;
    const int pairs = T * plan.top_k;
    auto &buf = buffers[glint_cuda_device()][glint_cuda_stream_slot()];
    if (glint_cuda_grow((void **)&buf.moe_h, &buf.moe_h_bytes, sizeof(float) * (size_t)pairs * (size_t)h_row, "moe"))
        return;
    float *moe_h = buf.moe_h;
    if (EL >= 16) {
        if (glint_cuda_grow((void **)&buf.moe_xp, &buf.moe_xp_bytes, sizeof(float) * (size_t)T * (size_t)x_row, "moe"))
            return;
        const size_t total = (size_t)T * (size_t)(x_row / 4);
        launch_chained(permute_x_kernel, (unsigned)((total + 255) / 256), 256, 0, (float4 *)buf.moe_xp, x, D, 0, T, EL,
            D / EL, x_row / 4, total);
        x = buf.moe_xp;
    }
    // One token: the 1-token kernels (fewer registers, more warps per SM); the per-token
    // arithmetic is the same in both, so rows stay bitwise equal to their solo runs.
    const unsigned gu_rows = GEMV_WARPS * MOE_GU_ROWS, down_rows = GEMV_WARPS * MOE_DOWN_ROWS;
    const dim3 grid_gu((unsigned)((I + gu_rows - 1) / gu_rows), (unsigned)slots);
    const dim3 grid_down((unsigned)((D + down_rows - 1) / down_rows), (unsigned)slots);
    if (T == 1) {
        launch_chained(moe_gemv_kernel<F, true, 1>, grid_gu, GEMV_WARPS * 32, 0, moe_h, x, x_row, tab, E, plan, h_row,
            EL);
        launch_chained(moe_gemv_kernel<F, false, 1>, grid_down, GEMV_WARPS * 32, 0, out, moe_h, h_row, tab, E, plan, D,
            EL);
    } else {
        launch_chained(moe_gemv_kernel<F, true, GEMV_MAX_T>, grid_gu, GEMV_WARPS * 32, 0, moe_h, x, x_row, tab, E, plan,
            h_row, EL);
        launch_chained(moe_gemv_kernel<F, false, GEMV_MAX_T>, grid_down, GEMV_WARPS * 32, 0, out, moe_h, h_row, tab, E,
            plan, D, EL);
    }
}

void glint_cuda_moe_experts(float *out, const float *x, int T, int D, int I, const dev_weight *tab, int E, int slots,
                            int vf, const glint_moe_plan &plan, const glint_moe_split *x_split) {
    switch (vf) {
    case VEC_F32: launch_moe<VEC_F32>(out, x, T, D, I, tab, E, slots, plan); break;
    case VEC_BF16: launch_moe<VEC_BF16>(out, x, T, D, I, tab, E, slots, plan); break;
    case VEC_F16: launch_moe<VEC_F16>(out, x, T, D, I, tab, E, slots, plan); break;
    case VEC_FP8: launch_moe<VEC_FP8>(out, x, T, D, I, tab, E, slots, plan); break;
    case VEC_FP8_BLOCK: launch_moe<VEC_FP8_BLOCK>(out, x, T, D, I, tab, E, slots, plan); break;
    default:  // tensor cores where the shapes allow (cuda_moe_mma.cu)
        if (!glint_cuda_moe_nvfp4_mma(out, x, T, D, I, tab, E, slots, plan, x_split))
            launch_moe<VEC_NVFP4>(out, x, T, D, I, tab, E, slots, plan);
        break;
    }
}

extern "C" void glint_cuda_matmul(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                                  const glint_weight *W) {
    (void)be;
    glint_cuda_matmul_batched(y, y_stride, x, x_stride, T, dev_weight_of(W), 1, 0, 0, 0);
    if (!glint_cuda_profiling()) {
        glint_cuda_check("matmul");
        return;
    }
    // profile by module: "model.layers.12.self_attn.q_a_proj.weight" -> "matmul self_attn.q_a_proj"
    char label[64];
    const char *name = W->name ? W->name : "?";
    if (!strncmp(name, "model.layers.", 13)) {
        name += 13;
        while (*name >= '0' && *name <= '9') name++;
        if (*name == '.') name++;
    }
    snprintf(label, sizeof label, "matmul %.40s%s", name, T > GEMV_T_LIMIT ? " (prefill)" : "");
    char *suffix = strstr(label, ".weight");
    if (suffix) *suffix = 0;
    glint_cuda_check(label);
}
