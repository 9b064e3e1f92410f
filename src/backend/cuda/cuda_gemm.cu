// Prefill matrix multiply on tensor cores (T > 64): y[T, N] = x[T, K] · W^T with mma.sync m16n8k16
// BF16 x BF16 -> FP32, portable to sm_80+ (mma.sync, ldmatrix, cp.async).
// x (FP32) is first converted into a scratch buffer [batch][T][Kp] (Kp = K rounded up to the k tile,
// zeros past K). Modes (env GLINT_CUDA_TC, read once):
//   unset or 1 (or anything but the two below), precise, the default: x = hi + lo, hi = bf16(x),
//     lo = bf16(x - hi) (relative error <= 2^-16, vs 2^-8 for hi alone); each tile runs two MMAs on
//     the same weight fragments. Only weights whose BF16 form is exact (BF16, NVFP4) take it; FP8 /
//     FP8-block stay on the SIMT kernel (their code times block scale is rounded to BF16).
//   bf16, fast: x rounded to BF16 once, one MMA per tile, BF16 / FP8 / FP8-block / NVFP4 weights.
//     Rounding x flips MoE routing and DSA top-k on the small test models' long prompts
//     (bench/cuda-first.md), so it is opt-in.
//   0, off: every format on the FP32 SIMT kernel.
// The weight stays in its checkpoint format:
//   BF16: tiles copied into shared memory as they are (cp.async);
//   FP8-block / FP8: the E4M3 codes copied raw (cp.async), then each thread turns its own 16 codes
//     into BF16 times their block scale (rounded to BF16);
//   NVFP4: the packed E2M1 codes copied raw, turned into BF16 times their E4M3 group scale (exact in
//     BF16: 2 x 4 significant bits); the global scale is applied to the FP32 sums.
// Block tile 128 tokens x 128 weight rows x 32 k, 4-stage cp.async pipeline, 8 warps each owning
// 64 x 32 of the tile; shared tiles are rows of 64 bytes with the 16-byte chunks XOR-swizzled so
// ldmatrix reads are conflict free. Other formats (F32/F16 dense, GPTQ) and misaligned weights stay
// on the FP32 SIMT kernel (cuda_matmul.cu).
#include <cuda_bf16.h>
#include <stdlib.h>

#include <algorithm>
#include <string.h>

#include "backend/cuda/cuda_bench.h"
#include "backend/cuda/cuda_internal.cuh"

#ifdef GLINT_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

enum { TC_BM = 128, TC_BN = 128, TC_BK = 32, TC_STAGES = 4, TC_THREADS = 256 };
enum tc_format { TC_BF16, TC_FP8, TC_NVFP4 };

enum {
    TC_TILE_BYTES = TC_BM * TC_BK * 2,  // one BF16 tile (A or B), 8 KiB
    TC_SMEM_BF16 = 2 * TC_STAGES * TC_TILE_BYTES,
    TC_RAW_FP8 = TC_BN * TC_BK,  // E4M3 codes of one B tile
    TC_RAW_NVFP4 = TC_BN * TC_BK / 2,
    TC_SMEM_FP8 = TC_STAGES * TC_TILE_BYTES + TC_STAGES * TC_RAW_FP8 + 2 * TC_TILE_BYTES,
    TC_SMEM_NVFP4 = TC_STAGES * TC_TILE_BYTES + TC_STAGES * TC_RAW_NVFP4 + 2 * TC_TILE_BYTES,
    // hi + lo activations: the lo A tiles of every stage, after the hi ones (BF16 96 KiB, NVFP4
    // 88 KiB: still 2 blocks per SM on sm_90's 227 KiB, 1 on sm_80's 164 KiB)
    TC_SMEM_LO = TC_STAGES * TC_TILE_BYTES,
};
enum tc_mode { TC_MODE_OFF, TC_MODE_PRECISE, TC_MODE_FAST };

template <int F, bool SPLIT> constexpr int tc_smem_bytes() {
    return (F == TC_BF16 ? TC_SMEM_BF16 : F == TC_FP8 ? TC_SMEM_FP8 : TC_SMEM_NVFP4) + (SPLIT ? TC_SMEM_LO : 0);
}

// Byte offset of 16-byte chunk `ch` (0..3) of row r in a [rows][32] BF16 tile.
__device__ __forceinline__ uint32_t tc_swz(int r, int ch) { return (uint32_t)(r * 64 + ((ch ^ ((r >> 1) & 3)) << 4)); }

// hi[o] = the 8 values v rounded to BF16; lo[o] (when given) = what that rounding dropped, in BF16.
__device__ __forceinline__ void store_bf16_split8(uint4 *hi, uint4 *lo, size_t o, const float (&v)[8]) {
    const uint4 h =
        make_uint4(pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]), pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7]));
    hi[o] = h;
    if (lo)
        lo[o] = make_uint4(pack_bf16_residual(v[0], v[1], h.x), pack_bf16_residual(v[2], v[3], h.y),
                           pack_bf16_residual(v[4], v[5], h.z), pack_bf16_residual(v[6], v[7], h.w));
}

// xb_hi[b][t][k] = bf16(x[b·x_step + t·x_stride + k]) for k < K, 0 up to Kp; with xb_lo (precise
// mode) also xb_lo[b][t][k] = bf16(x - xb_hi). 8 elements per thread.
__global__ void tc_convert_x_kernel(uint4 *xb_hi, uint4 *xb_lo, const float *x, int x_stride, int64_t x_step, int T,
                                    int64_t K, int64_t Kp, size_t total) {
    const size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= total) return;
    const int64_t per_row = Kp / 8, row = (int64_t)(o / per_row), k0 = (int64_t)(o % per_row) * 8;
    const int64_t b = row / T, t = row % T;
    const float *src = x + b * x_step + t * x_stride;
    float v[8];
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = k0 + i < K ? src[k0 + i] : 0.0f;
    store_bf16_split8(xb_hi, xb_lo, o, v);
}

struct tc_args {
    float *y;
    const __nv_bfloat16 *xb;     // [batch][T][Kp] hi (or only) parts
    const __nv_bfloat16 *xb_lo;  // [batch][T][Kp] lo parts (SPLIT kernels)
    int y_stride, T;
    int64_t Kp, y_step, w_row_step;
    float out_scale;  // NVFP4 global scale, else 1
    // Grouped launches (the routed experts' prefill): blockIdx.z is a work item {expert, its first row
    // in x and y, its rows, the item's first row among them}; the weight is tab[expert] (out_scale
    // its global scale), y_step / w_row_step are unused. NULL: a plain (batched) product.
    const int4 *items;
    const dev_weight *tab;
};

// SPLIT: x comes as hi + lo parts (precise mode); each k step runs the MMAs of the hi tile, then
// reloads the same A fragment registers from the lo tile and runs them again with the same B
// fragments (both A sets at once would cost 16 more registers; the kernel is near its 128).
template <int F, bool SPLIT, bool GROUPED>
__global__ void __launch_bounds__(TC_THREADS, 2) tc_gemm_kernel(tc_args a, dev_weight W_arg) {
    extern __shared__ __align__(128) unsigned char smem[];
    unsigned char *As = smem;  // [STAGES][128][32] bf16, swizzled; SPLIT: then [STAGES] lo tiles
    // BF16: [STAGES] tiles; else raw codes
    unsigned char *Bs = smem + TC_STAGES * TC_TILE_BYTES + (SPLIT ? TC_SMEM_LO : 0);
    constexpr int RAW = F == TC_FP8 ? TC_RAW_FP8 : TC_RAW_NVFP4;
    unsigned char *Bc = Bs + TC_STAGES * RAW;                 // quantized: [2] converted BF16 tiles
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp & 1, wn = warp >> 1;  // warp tile: rows wm·64.. of tokens, wn·32.. of weight rows
    const int4 item = GROUPED ? a.items[blockIdx.z] : make_int4(0, 0, 0, 0);
    const dev_weight W = GROUPED ? a.tab[item.x] : W_arg;
    const int T = GROUPED ? item.z : a.T, m0 = GROUPED ? item.w : blockIdx.x * TC_BM;
    const int64_t n0 = (int64_t)blockIdx.y * TC_BN, N = W.rows, K = W.cols;
    const int64_t nb = GROUPED ? 0 : (int64_t)blockIdx.z * a.w_row_step;  // the batch's first row in the view
    const size_t x_row0 = GROUPED ? (size_t)item.y : (size_t)blockIdx.z * a.T;
    const __nv_bfloat16 *xb = a.xb + x_row0 * a.Kp;
    const __nv_bfloat16 *xb_lo = SPLIT ? a.xb_lo + x_row0 * a.Kp : NULL;
    const int KT = (int)((K + TC_BK - 1) / TC_BK);

    // The raw-code share of this thread (quantized formats): weight row qr of the tile, 16 k at qh·16.
    const int qr = tid >> 1, qh = tid & 1;
    const bool q_row_in = n0 + qr < N;
    const int64_t q_stored = W.row0 + nb + n0 + (q_row_in ? qr : 0);

    auto load_tile = [&](int stage, int kt) {
        const int64_t k0 = (int64_t)kt * TC_BK;
        const uint32_t a_base = smem_u32(As + stage * TC_TILE_BYTES);
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const int i = tid + j * TC_THREADS, r = i >> 2, ch = i & 3;
            const bool ok = m0 + r < T;
            const size_t src = (size_t)(ok ? m0 + r : 0) * a.Kp + k0 + ch * 8;
            cp_async16(a_base + tc_swz(r, ch), xb + src, ok);
            if (SPLIT) cp_async16(a_base + TC_SMEM_LO + tc_swz(r, ch), xb_lo + src, ok);
        }
        if (F == TC_BF16) {
            const uint32_t b_base = smem_u32(Bs + stage * TC_TILE_BYTES);
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int i = tid + j * TC_THREADS, r = i >> 2, ch = i & 3;
                const int64_t k = k0 + ch * 8;
                const bool ok = n0 + r < N && k < K;
                const int64_t row = W.row0 + nb + n0 + (ok ? r : 0);
                cp_async16(b_base + tc_swz(r, ch), (const uint16_t *)W.data + (size_t)row * K + (ok ? k : 0), ok);
            }
        } else if (F == TC_FP8) {
            const int64_t k = k0 + qh * 16;
            const bool ok = q_row_in && k < K;
            cp_async16(smem_u32(Bs + stage * RAW + qr * 32 + qh * 16),
                       (const uint8_t *)W.data + (size_t)q_stored * K + (ok ? k : 0), ok);
        } else {
            const int64_t k = k0 + qh * 16;
            const bool ok = q_row_in && k < K;
            cp_async8(smem_u32(Bs + stage * RAW + qr * 16 + qh * 8),
                      (const uint8_t *)W.data + (size_t)q_stored * (K / 2) + (ok ? k / 2 : 0), ok);
        }
    };
    // The scale of this thread's 16 codes in k tile kt (quantized formats).
    auto scale_of = [&](int kt) -> float {
        const int64_t k = (int64_t)kt * TC_BK + qh * 16;
        if (k >= K) return 0.0f;
        if (F == TC_NVFP4) return fp8_bits_to_float(__ldg((const uint8_t *)W.scales + q_stored * (K / 16) + k / 16));
        if (W.format != GLINT_WFMT_FP8_BLOCK) return 1.0f;
        return __ldg((const float *)W.scales + (q_stored / W.block) * ((K + W.block - 1) / W.block) + k / W.block);
    };

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;

#pragma unroll
    for (int s = 0; s < TC_STAGES - 1; s++) {
        if (s < KT) load_tile(s, s);
        cp_async_commit();
    }
    float scale = F == TC_BF16 ? 1.0f : scale_of(0);
    // Quantized formats: this thread turns its own 16 codes of k tile kt (raw stage kt % STAGES, its
    // own copies complete) into BF16 times their scale, in converted buffer kt % 2.
    auto convert = [&](int kt) {
        const unsigned char *raw = Bs + (kt % TC_STAGES) * RAW + qr * (RAW / TC_BN) + qh * (RAW / TC_BN / 2);
        float w[16];
        if (F == TC_FP8) {
            const uint4 v = *(const uint4 *)raw;
            const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const uint32_t pair = (words[i / 2] >> (16 * (i % 2))) & 0xffffu;
                w[2 * i] = fp8_bits_to_float(pair & 0xffu) * scale;
                w[2 * i + 1] = fp8_bits_to_float(pair >> 8) * scale;
            }
        } else {
            const uint2 v = *(const uint2 *)raw;
            const uint32_t words[2] = {v.x, v.y};
            const float s = scale * 16384.0f;  // the f16 placement below is the value times 2^-14
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const uint32_t byte = (words[i / 4] >> (8 * (i % 4))) & 0xffu;
                const uint32_t lo = byte & 15u, hi = byte >> 4;
                w[2 * i] = f16_bits_to_float(((lo & 8u) << 12) | ((lo & 7u) << 9)) * s;
                w[2 * i + 1] = f16_bits_to_float(((hi & 8u) << 12) | ((hi & 7u) << 9)) * s;
            }
        }
        unsigned char *dst = Bc + (kt & 1) * TC_TILE_BYTES;
#pragma unroll
        for (int c = 0; c < 2; c++)
            *(uint4 *)(dst + tc_swz(qr, 2 * qh + c)) =
                make_uint4(pack_bf16(w[8 * c], w[8 * c + 1]), pack_bf16(w[8 * c + 2], w[8 * c + 3]),
                           pack_bf16(w[8 * c + 4], w[8 * c + 5]), pack_bf16(w[8 * c + 6], w[8 * c + 7]));
        if (kt + 1 < KT) scale = scale_of(kt + 1);
    };
    if (F != TC_BF16) {
        cp_async_wait<TC_STAGES - 2>();  // tile 0
        convert(0);
    }

    for (int kt = 0; kt < KT; kt++) {
        const int stage = kt % TC_STAGES;
        // BF16: tile kt complete; quantized: tile kt+1 too (its codes are converted during this step,
        // off the barrier's path, while tile kt's converted copy waits in buffer kt % 2)
        if (F == TC_BF16) cp_async_wait<TC_STAGES - 2>();
        else cp_async_wait<TC_STAGES - 3>();
        __syncthreads();
        {
            const int nk = kt + TC_STAGES - 1;
            if (nk < KT) load_tile(nk % TC_STAGES, nk);
            cp_async_commit();
        }
        const uint32_t a_base = smem_u32(As + stage * TC_TILE_BYTES),
                       b_base = smem_u32(F == TC_BF16 ? Bs + stage * TC_TILE_BYTES : Bc + (kt & 1) * TC_TILE_BYTES);
#pragma unroll
        for (int ks = 0; ks < 2; ks++) {
            if (F != TC_BF16 && ks == 1 && kt + 1 < KT) convert(kt + 1);
            uint32_t af[4][4], bf[4][2];
#pragma unroll
            for (int mi = 0; mi < 4; mi++) {
                const int r = wm * 64 + mi * 16 + (lane & 15), ch = ks * 2 + (lane >> 4);
                ldmatrix_x4(a_base + tc_swz(r, ch), af[mi][0], af[mi][1], af[mi][2], af[mi][3]);
            }
#pragma unroll
            for (int nj = 0; nj < 2; nj++) {
                const int r = wn * 32 + nj * 16 + (lane >> 4) * 8 + (lane & 7), ch = ks * 2 + ((lane >> 3) & 1);
                ldmatrix_x4(b_base + tc_swz(r, ch), bf[2 * nj][0], bf[2 * nj][1], bf[2 * nj + 1][0], bf[2 * nj + 1][1]);
            }
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++) mma_bf16(acc[mi][ni], af[mi], bf[ni]);
            if (SPLIT) {  // the lo parts of x, into the same registers
#pragma unroll
                for (int mi = 0; mi < 4; mi++) {
                    const int r = wm * 64 + mi * 16 + (lane & 15), ch = ks * 2 + (lane >> 4);
                    ldmatrix_x4(a_base + TC_SMEM_LO + tc_swz(r, ch), af[mi][0], af[mi][1], af[mi][2], af[mi][3]);
                }
#pragma unroll
                for (int mi = 0; mi < 4; mi++)
#pragma unroll
                    for (int ni = 0; ni < 4; ni++) mma_bf16(acc[mi][ni], af[mi], bf[ni]);
            }
        }
    }
    cp_async_wait<0>();

    float *y = GROUPED ? a.y + (size_t)item.y * a.y_stride : a.y + (size_t)blockIdx.z * a.y_step;
    const float out_scale = GROUPED ? (F == TC_NVFP4 ? W.global_scale : 1.0f) : a.out_scale;
    const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int m = m0 + wm * 64 + mi * 16 + g + 8 * h;
            if (m >= T) continue;
            float *yr = y + (size_t)m * a.y_stride;
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                const int64_t n = n0 + wn * 32 + ni * 8 + 2 * t4;
                if (n < N) yr[n] = acc[mi][ni][2 * h] * out_scale;
                if (n + 1 < N) yr[n + 1] = acc[mi][ni][2 * h + 1] * out_scale;
            }
        }
}

// Grow-only BF16 activations per device and stream slot (precise mode: the hi parts, then the lo
// parts); stream order keeps one use before the next.
static struct {
    __nv_bfloat16 *xb;
    size_t bytes;
} tc_x[GLINT_CUDA_MAX_DEVICES][GLINT_CUDA_STREAMS];

// GLINT_CUDA_TC: unset, 1 (or any other value): precise; bf16: fast; 0: off. The fast mode's BF16
// activations change the logits of long prompts on the small test models by 0.2-1.2 of max|logit|
// (tests/cuda/test_e2e_long.py): routing and DSA top-k decisions flip. A CPU emulation of hi + lo
// activations on BF16 / NVFP4 weights stays within 2.9e-5 of FP32 there, hence the default.
static int tc_mode(void) {
    static const int mode = [] {  // a function-local static: read once, also when ranks' threads race
        const char *e = getenv("GLINT_CUDA_TC");
        return e && !strcmp(e, "0") ? TC_MODE_OFF : e && !strcmp(e, "bf16") ? TC_MODE_FAST : TC_MODE_PRECISE;
    }();
    return mode;
}

// The tensor-core format of W in `mode`, or -1 (stays on the SIMT kernel).
static int tc_format_of(const dev_weight &W, int mode) {
    const uintptr_t base = (uintptr_t)W.data;
    if (mode == TC_MODE_OFF) return -1;
    if (W.format == GLINT_WFMT_NVFP4)
        return W.cols % 16 == 0 && base % 8 == 0 ? TC_NVFP4 : -1;
    // FP8 code times scale rounded to BF16 is not exact: precise mode keeps FP8 on FP32
    const bool fp8_ok = mode == TC_MODE_FAST;
    if (W.format == GLINT_WFMT_FP8_BLOCK)
        return fp8_ok && W.cols % 16 == 0 && base % 16 == 0 && W.block > 0 && W.block % 16 == 0 ? TC_FP8 : -1;
    if (W.format != GLINT_WFMT_DENSE) return -1;
    if (W.dtype == GLINT_DTYPE_F8_E4M3) return fp8_ok && W.cols % 16 == 0 && base % 16 == 0 ? TC_FP8 : -1;
    if (W.dtype == GLINT_DTYPE_BF16) return W.cols % 8 == 0 && base % 16 == 0 ? TC_BF16 : -1;
    return -1;
}

// batch: the batch entries, or the work items of a grouped launch (a.items set; W: any expert's).
template <int F, bool SPLIT> static void tc_launch(const tc_args &a, const dev_weight &W, int batch) {
    static bool configured[GLINT_CUDA_MAX_DEVICES];  // the attribute is per device
    constexpr int smem = tc_smem_bytes<F, SPLIT>();
    if (!configured[glint_cuda_device()]) {
        cudaFuncSetAttribute(tc_gemm_kernel<F, SPLIT, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        cudaFuncSetAttribute(tc_gemm_kernel<F, SPLIT, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        configured[glint_cuda_device()] = true;
    }
    const unsigned n_tiles = (unsigned)((W.rows + TC_BN - 1) / TC_BN);
    if (a.items)
        tc_gemm_kernel<F, SPLIT, true><<<dim3(1, n_tiles, (unsigned)batch), TC_THREADS, smem, glint_cuda_stream()>>>(a, W);
    else
        tc_gemm_kernel<F, SPLIT, false>
            <<<dim3((unsigned)((a.T + TC_BM - 1) / TC_BM), n_tiles, (unsigned)batch), TC_THREADS, smem,
               glint_cuda_stream()>>>(a, W);
}

// xb_lo NULL: x as BF16 only (fast); else hi + lo (BF16 and NVFP4 weights only).
static void tc_dispatch(int F, const tc_args &a, const dev_weight &W, int batch) {
    if (a.xb_lo) {
        if (F == TC_BF16) tc_launch<TC_BF16, true>(a, W, batch);
        else tc_launch<TC_NVFP4, true>(a, W, batch);
    } else if (F == TC_BF16) {
        tc_launch<TC_BF16, false>(a, W, batch);
    } else if (F == TC_FP8) {
        tc_launch<TC_FP8, false>(a, W, batch);
    } else {
        tc_launch<TC_NVFP4, false>(a, W, batch);
    }
}

static void tc_run(int F, float *y, int y_stride, const __nv_bfloat16 *xb, const __nv_bfloat16 *xb_lo, int64_t Kp,
                   int T, const dev_weight &W, int batch, int64_t w_row_step, int64_t y_step) {
    tc_args a = {y, xb, xb_lo, y_stride, T, Kp, y_step, w_row_step, F == TC_NVFP4 ? W.global_scale : 1.0f, NULL, NULL};
    tc_dispatch(F, a, W, batch);
}

// ---------------------------------------------------------------------------------------------
// cuBLAS for the prefill products where it wins (GLINT_CUDA_CUBLAS=0 keeps the kernel above). cuBLAS
// multiplies BF16 by BF16 into FP32 sums; the modes keep their meaning:
//   precise: y = W·x_lo + W·x_hi, two GEMMs into the same FP32 output (beta = 1 for the second);
//     FP8-block weights (code times an FP32 block scale: not exact in BF16) are split too,
//     W = W_hi + W_lo, and take a third product W_lo·x_hi (W_lo·x_lo, ~2^-16 relative, is dropped);
//   fast: y = W·bf16(x), one GEMM.
// BF16 weights are read where they lie. NVFP4 (E2M1 code times E4M3 group scale: exact in BF16, the
// global scale becomes cuBLAS's alpha), plain FP8 (exact) and FP8-block are first dequantized into a
// BF16 scratch, at most LIB_SLICE_BYTES per part, so large matrices go in slices of rows. Dequantizing
// costs ~4.5 bytes of traffic per weight, which T >= LIB_MIN_T_QUANT tokens repay against the kernel
// above (measured on the H100: bench/RESULTS.md).
#ifdef GLINT_HAVE_CUBLAS
enum { LIB_MIN_T_QUANT = 256 };
static const size_t LIB_SLICE_BYTES = (size_t)64 << 20;
enum lib_form { LIB_BF16, LIB_NVFP4, LIB_FP8, LIB_FP8_BLOCK };

static struct {  // per device and stream slot
    cublasHandle_t handle;
    int failed;        // cublasCreate failed: the kernel above only
    __nv_bfloat16 *w;  // dequantized weight slice: hi part, then (FP8-block, precise) lo part
    size_t w_bytes;
} lib_state[GLINT_CUDA_MAX_DEVICES][GLINT_CUDA_STREAMS];

static int lib_enabled(void) {
    static const int on = glint_cuda_switch("GLINT_CUDA_CUBLAS", 1);
    return on;
}

// W's form for the cuBLAS path, or -1. Rows of 8 BF16 (16 bytes) so every dequantized row is aligned.
static int lib_form_of(const dev_weight &W, int T) {
    if (W.cols % 8 || W.cols > INT32_MAX || W.rows > INT32_MAX) return -1;
    if (W.format == GLINT_WFMT_DENSE && W.dtype == GLINT_DTYPE_BF16) return LIB_BF16;
    if (T < LIB_MIN_T_QUANT) return -1;
    if (W.format == GLINT_WFMT_NVFP4) return W.cols % 16 == 0 ? LIB_NVFP4 : -1;
    if (W.format == GLINT_WFMT_FP8_BLOCK) return W.block > 0 && W.block % 8 == 0 ? LIB_FP8_BLOCK : -1;
    if (W.format == GLINT_WFMT_DENSE && W.dtype == GLINT_DTYPE_F8_E4M3) return LIB_FP8;
    return -1;
}

// hi[r][k] (+ lo[r][k] for FP8-block when lo is set) = rows [first, first + rows) of the view, as
// BF16; 8 weights per thread. NVFP4 leaves out the global scale (the GEMM's alpha).
template <int FORM>
__global__ void lib_dequant_kernel(uint4 *hi, uint4 *lo, dev_weight W, int64_t first, int64_t rows) {
    const int64_t K = W.cols, per_row = K / 8;
    const int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= rows * per_row) return;
    const int64_t r = W.row0 + first + o / per_row, k = o % per_row * 8;
    float v[8];
    if (FORM == LIB_NVFP4) {
        const uint32_t codes = __ldg((const uint32_t *)((const uint8_t *)W.data + r * (K / 2) + k / 2));
        const float s = fp8_bits_to_float(__ldg((const uint8_t *)W.scales + r * (K / 16) + k / 16));
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = e2m1_to_float(codes >> (4 * i) & 15u) * s;
    } else {
        const uint2 codes = __ldg((const uint2 *)((const uint8_t *)W.data + r * K + k));
        const float s = FORM == LIB_FP8 ? 1.0f
                                        : __ldg((const float *)W.scales + (r / W.block) * ((K + W.block - 1) / W.block) +
                                                k / W.block);
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = fp8_bits_to_float((i < 4 ? codes.x : codes.y) >> (8 * (i & 3)) & 0xffu) * s;
    }
    store_bf16_split8(hi, lo, o, v);
}

// y[b][t][n] (+)= alpha · A[b][n] · B[b][t] over k < K for n < N, t < T (row-major on both sides, which
// cuBLAS's column-major sees as y^T = A^T' · B); FP32 sums.
static bool lib_gemm(cublasHandle_t h, float alpha, const __nv_bfloat16 *A, int64_t a_batch_step, int64_t N,
                     const __nv_bfloat16 *B, int64_t ldb, int64_t b_batch_step, int T, int64_t K, float beta, float *y,
                     int64_t ldy, int64_t y_batch_step, int batch) {
    return cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, T, (int)K, &alpha, A, CUDA_R_16BF, (int)K,
                                      a_batch_step, B, CUDA_R_16BF, (int)ldb, b_batch_step, &beta, y, CUDA_R_32F,
                                      (int)ldy, y_batch_step, batch, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
}

// The sum of the parts' products (see above) for weight rows of one batch entry, or of every entry
// when W is BF16: a, a_lo (NULL but for FP8-block in precise mode) hold those rows.
static bool lib_products(cublasHandle_t h, float alpha, const __nv_bfloat16 *a, const __nv_bfloat16 *a_lo,
                         int64_t a_batch_step, int64_t N, const __nv_bfloat16 *xb, const __nv_bfloat16 *xb_lo,
                         int64_t Kp, int T, int64_t K, float *y, int y_stride, int64_t y_step, int batch) {
    const int64_t x_step = (int64_t)T * Kp;
    bool ok = true;
    float beta = 0.0f;  // the small terms first, the big one last
    if (xb_lo) ok = ok && lib_gemm(h, alpha, a, a_batch_step, N, xb_lo, Kp, x_step, T, K, beta, y, y_stride, y_step, batch), beta = 1.0f;
    if (a_lo) ok = ok && lib_gemm(h, alpha, a_lo, a_batch_step, N, xb, Kp, x_step, T, K, beta, y, y_stride, y_step, batch), beta = 1.0f;
    return ok && lib_gemm(h, alpha, a, a_batch_step, N, xb, Kp, x_step, T, K, beta, y, y_stride, y_step, batch);
}

// 1 when cuBLAS computed y; 0 when it could not (nothing usable written: the caller recomputes all of y).
static int lib_matmul(int form, float *y, int y_stride, const __nv_bfloat16 *xb, const __nv_bfloat16 *xb_lo,
                      int64_t Kp, int T, const dev_weight &W, int batch, int64_t w_row_step, int64_t y_step) {
    auto &st = lib_state[glint_cuda_device()][glint_cuda_stream_slot()];
    if (st.failed) return 0;
    if (!st.handle && cublasCreate(&st.handle) != CUBLAS_STATUS_SUCCESS) {
        st.failed = 1, st.handle = NULL;
        return 0;
    }
    if (cublasSetStream(st.handle, glint_cuda_stream()) != CUBLAS_STATUS_SUCCESS) return 0;
    const int64_t N = W.rows, K = W.cols;
    if (form == LIB_BF16) {
        const __nv_bfloat16 *a = (const __nv_bfloat16 *)W.data + W.row0 * K;
        return lib_products(st.handle, 1.0f, a, NULL, w_row_step * K, N, xb, xb_lo, Kp, T, K, y, y_stride, y_step,
                            batch);
    }
    const bool split_w = form == LIB_FP8_BLOCK && xb_lo;
    // equal slices of whole 128-row tiles (an odd slice height or a misaligned y makes cuBLAS pick slow kernels)
    const int64_t max_rows = std::max<int64_t>(128, (int64_t)(LIB_SLICE_BYTES / (2 * K)) / 128 * 128);
    const int64_t n_slices = (N + max_rows - 1) / max_rows;
    const int64_t slice = std::min<int64_t>(N, ((N + n_slices - 1) / n_slices + 127) / 128 * 128);
    const size_t part = (size_t)slice * K;  // BF16 elements
    if (glint_cuda_grow((void **)&st.w, &st.w_bytes, sizeof(__nv_bfloat16) * part * (split_w ? 2 : 1), "cuBLAS"))
        return 0;
    const float alpha = form == LIB_NVFP4 ? W.global_scale : 1.0f;
    for (int b = 0; b < batch; b++)
        for (int64_t n0 = 0; n0 < N; n0 += slice) {
            const int64_t rows = std::min(slice, N - n0), first = (int64_t)b * w_row_step + n0;
            const size_t total = (size_t)rows * (K / 8);
            const unsigned blocks = (unsigned)((total + 255) / 256);
            uint4 *hi = (uint4 *)st.w, *lo = split_w ? (uint4 *)(st.w + part) : NULL;
            if (form == LIB_NVFP4) lib_dequant_kernel<LIB_NVFP4><<<blocks, 256, 0, glint_cuda_stream()>>>(hi, lo, W, first, rows);
            else if (form == LIB_FP8) lib_dequant_kernel<LIB_FP8><<<blocks, 256, 0, glint_cuda_stream()>>>(hi, lo, W, first, rows);
            else lib_dequant_kernel<LIB_FP8_BLOCK><<<blocks, 256, 0, glint_cuda_stream()>>>(hi, lo, W, first, rows);
            const int64_t x_off = (int64_t)b * T * Kp;
            if (!lib_products(st.handle, alpha, st.w, lo ? st.w + part : NULL, 0, rows, xb + x_off,
                              xb_lo ? xb_lo + x_off : NULL, Kp, T, K, y + b * y_step + n0, y_stride, 0, 1))
                return 0;
        }
    return 1;
}
#else
static int lib_enabled(void) { return 0; }
static int lib_form_of(const dev_weight &, int) { return -1; }
static int lib_matmul(int, float *, int, const __nv_bfloat16 *, const __nv_bfloat16 *, int64_t, int, const dev_weight &,
                      int, int64_t, int64_t) {
    return 0;
}
#endif

// x[batch][T][K] (rows x_stride apart, batches x_step) -> the BF16 scratch [batch][T][Kp] (*xb), plus
// the lo parts after it (*xb_lo, precise mode; else NULL); false when the scratch cannot be had.
static bool tc_stage_x(const float *x, int x_stride, int64_t x_step, int T, int batch, int64_t K, bool split,
                       __nv_bfloat16 **xb, __nv_bfloat16 **xb_lo) {
    const int64_t Kp = (K + TC_BK - 1) / TC_BK * TC_BK;
    const size_t part_bytes = (size_t)batch * (size_t)T * (size_t)Kp * 2, bytes = split ? 2 * part_bytes : part_bytes;
    auto &tc = tc_x[glint_cuda_device()][glint_cuda_stream_slot()];
    if (bytes > tc.bytes) {
        glint_cuda_dev().buffer_epoch++;
        cudaFree(tc.xb);
        tc.xb = NULL, tc.bytes = 0;
        if (cudaMalloc(&tc.xb, bytes + bytes / 4) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        tc.bytes = bytes + bytes / 4;
    }
    *xb = tc.xb, *xb_lo = split ? tc.xb + part_bytes / 2 : NULL;
    const size_t total = part_bytes / 16;
    tc_convert_x_kernel<<<(unsigned)((total + 255) / 256), 256, 0, glint_cuda_stream()>>>(
        (uint4 *)*xb, (uint4 *)*xb_lo, x, x_stride, x_step, T, K, Kp, total);
    return true;
}

// use_lib: cuBLAS where lib_form_of takes W (else glint's kernel only).
static int tc_matmul(int mode, bool use_lib, float *y, int y_stride, const float *x, int x_stride, int T,
                     const dev_weight &W, int batch, int64_t w_row_step, int64_t x_step, int64_t y_step) {
    if (mode == TC_MODE_OFF) return 0;
    const int form = use_lib ? lib_form_of(W, T) : -1, F = tc_format_of(W, mode);
    const bool kernel_ok = F >= 0 && W.rows <= 65535LL * TC_BN && batch <= 65535;
    if (form < 0 && !kernel_ok) return 0;
    const int64_t Kp = (W.cols + TC_BK - 1) / TC_BK * TC_BK;
    __nv_bfloat16 *xb, *xb_lo;
    if (!tc_stage_x(x, x_stride, x_step, T, batch, W.cols, mode == TC_MODE_PRECISE, &xb, &xb_lo))
        return 0;  // the SIMT kernel needs no scratch
    if (form >= 0 && lib_matmul(form, y, y_stride, xb, xb_lo, Kp, T, W, batch, w_row_step, y_step)) return 1;
    if (!kernel_ok) return 0;  // the SIMT kernel, from x again
    tc_run(F, y, y_stride, xb, xb_lo, Kp, T, W, batch, w_row_step, y_step);
    return 1;
}

int glint_cuda_matmul_tc(float *y, int y_stride, const float *x, int x_stride, int T, const dev_weight &W, int batch,
                         int64_t w_row_step, int64_t x_step, int64_t y_step) {
    return tc_matmul(tc_mode(), lib_enabled(), y, y_stride, x, x_stride, T, W, batch, w_row_step, x_step, y_step);
}

int glint_cuda_tc_format(const dev_weight &W) { return tc_format_of(W, tc_mode()); }

int glint_cuda_matmul_tc_grouped(float *y, int y_stride, const float *x, int x_stride, int rows, const dev_weight &W0,
                                 const dev_weight *tab, const int4 *items, int n_items) {
    const int F = tc_format_of(W0, tc_mode());
    if (F < 0 || W0.rows > 65535LL * TC_BN || n_items > 65535 || n_items < 1) return 0;
    __nv_bfloat16 *xb, *xb_lo;
    if (!tc_stage_x(x, x_stride, 0, rows, 1, W0.cols, tc_mode() == TC_MODE_PRECISE, &xb, &xb_lo)) return 0;
    const int64_t Kp = (W0.cols + TC_BK - 1) / TC_BK * TC_BK;
    tc_args a = {y, xb, xb_lo, y_stride, rows, Kp, 0, 0, 1.0f, items, tab};
    tc_dispatch(F, a, W0, n_items);
    return 1;
}

// ---------------------------------------------------------------------------------------------
// Benchmarks (glint bench): the card's dense BF16 tensor-core rate and this kernel's rate per format
// and mode.

__global__ void tc_fill_kernel(uint8_t *p, size_t n, int kind) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t z = (uint32_t)(i * 2654435761u) ^ (uint32_t)(i >> 13);
        z ^= z >> 15, z *= 0x2c1b3c6du, z ^= z >> 12;
        uint8_t b = (uint8_t)z;
        if (kind == 1) b = i % 2 ? (uint8_t)(0x3c | (z & 0x80)) : b;  // BF16 bytes: |w| in [2^-7, 1)
        if (kind == 2 && (b & 0x7f) == 0x7f) b = 0x30;                // E4M3 without NaN
        if (kind == 3) b = 0x30;                                      // E4M3 scale 0.5
        p[i] = b;
    }
}

static void *bench_buffer(size_t bytes, int kind) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    tc_fill_kernel<<<1024, 256, 0, glint_cuda_stream()>>>((uint8_t *)p, bytes, kind);
    return p;
}

// Best of `reps` timed runs of fn (after one warm-up), seconds.
template <class Fn> static double time_best(Fn fn, int reps) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    fn();
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        cudaEventRecord(e0);
        fn();
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (ms * 1e-3 < best) best = ms * 1e-3;
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    return best;
}

extern "C" int glint_cuda_gemm_bench(int square, int T, int N, int K, glint_cuda_gemm_rates *out) {
    memset(out, 0, sizeof *out);
    const double sq_flop = 2.0 * square * (double)square * square, flop = 2.0 * T * (double)N * K;
    // the square BF16 problem: activations already BF16
    __nv_bfloat16 *xs = (__nv_bfloat16 *)bench_buffer((size_t)square * square * 2, 1);
    void *ws = bench_buffer((size_t)square * square * 2, 1);
    float *ys = NULL;
    if (cudaMalloc(&ys, (size_t)square * square * 4) != cudaSuccess || !xs || !ws) {
        cudaGetLastError();
        cudaFree(xs), cudaFree(ws), cudaFree(ys);
        glint_set_error("CUDA gemm bench: out of device memory");
        return -1;
    }
    dev_weight Wsq = {};
    Wsq.data = ws, Wsq.rows = square, Wsq.cols = square, Wsq.all_rows = square, Wsq.format = GLINT_WFMT_DENSE;
    Wsq.dtype = GLINT_DTYPE_BF16, Wsq.global_scale = 1.0f;
    out->tc_bf16 =
        sq_flop / time_best([&] { tc_run(TC_BF16, ys, square, xs, NULL, square, square, Wsq, 1, 0, 0); }, 5) / 1e12;
#ifdef GLINT_HAVE_CUBLAS
    cublasHandle_t h = NULL;
    if (cublasCreate(&h) == CUBLAS_STATUS_SUCCESS) {
        const float one = 1.0f, zero = 0.0f;
        cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
        // column-major: y^T[N, M] = W[N, K] (stored [N][K] row-major = K x N column-major, transposed) · x^T
        out->cublas_bf16 = sq_flop /
                           time_best(
                               [&] {
                                   st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, square, square, square, &one, ws,
                                                     CUDA_R_16BF, square, xs, CUDA_R_16BF, square, &zero, ys,
                                                     CUDA_R_32F, square, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
                               },
                               5) /
                           1e12;
        if (st != CUBLAS_STATUS_SUCCESS) out->cublas_bf16 = 0;
        cublasDestroy(h);
    }
#endif
    cudaFree(xs), cudaFree(ws), cudaFree(ys);

    // per format through the whole matmul path (FP32 x converted, FP32 y)
    float *x = (float *)bench_buffer((size_t)T * K * 4, 0), *y = NULL;
    if (x) cudaMemset(x, 0x3c, (size_t)T * K * 4);  // FP32 0x3c3c3c3c = 0.0115
    if (cudaMalloc(&y, (size_t)T * N * 4) != cudaSuccess || !x) {
        cudaGetLastError();
        cudaFree(x), cudaFree(y);
        glint_set_error("CUDA gemm bench: out of device memory");
        return -1;
    }
    for (int f = 0; f < GLINT_GEMM_FORMATS; f++) {
        dev_weight W = {};
        W.rows = N, W.cols = K, W.all_rows = N, W.global_scale = 1.0f, W.block = 128;
        void *data = NULL, *scales = NULL;
        if (f == GLINT_GEMM_BF16) {
            W.format = GLINT_WFMT_DENSE, W.dtype = GLINT_DTYPE_BF16, data = bench_buffer((size_t)N * K * 2, 1);
        } else if (f == GLINT_GEMM_FP8_BLOCK) {
            W.format = GLINT_WFMT_FP8_BLOCK, W.dtype = GLINT_DTYPE_F8_E4M3, data = bench_buffer((size_t)N * K, 2);
            scales = bench_buffer((size_t)((N + 127) / 128) * ((K + 127) / 128) * 4, 0);
            if (scales) cudaMemset(scales, 0x3c, (size_t)((N + 127) / 128) * ((K + 127) / 128) * 4);
        } else {
            W.format = GLINT_WFMT_NVFP4, W.dtype = GLINT_DTYPE_U8, W.block = 16, W.scales_dtype = GLINT_DTYPE_F8_E4M3;
            data = bench_buffer((size_t)N * K / 2, 0), scales = bench_buffer((size_t)N * K / 16, 3);
        }
        W.data = data, W.scales = scales;
        if (data && (f == GLINT_GEMM_BF16 || scales)) {
            // each mode as the matmul path runs it: a format a mode leaves off tensor cores is timed
            // on the FP32 SIMT kernel (fewer repetitions: it is slow)
            const int modes[2] = {TC_MODE_PRECISE, TC_MODE_FAST};
            for (int mode : modes) {
                double dt;
                if (tc_format_of(W, mode) >= 0 || (lib_enabled() && lib_form_of(W, T) >= 0))
                    dt = time_best([&] { tc_matmul(mode, lib_enabled(), y, N, x, K, T, W, 1, 0, 0, 0); }, 5);
                else
                    dt = time_best([&] { glint_cuda_matmul_simt(y, N, x, K, T, W, 1, 0, 0, 0); }, 2);
                (mode == TC_MODE_PRECISE ? out->precise : out->fast)[f] = flop / dt / 1e12;
            }
            // glint's own kernel in precise mode (what GLINT_CUDA_CUBLAS=0 runs)
            if (tc_format_of(W, TC_MODE_PRECISE) >= 0)
                out->kernel_precise[f] =
                    flop / time_best([&] { tc_matmul(TC_MODE_PRECISE, false, y, N, x, K, T, W, 1, 0, 0, 0); }, 5) / 1e12;
            if (f == GLINT_GEMM_BF16)  // the FP32 SIMT kernel the tensor cores replace
                out->simt_bf16 =
                    flop / time_best([&] { glint_cuda_matmul_simt(y, N, x, K, T, W, 1, 0, 0, 0); }, 2) / 1e12;
        }
        cudaFree(data), cudaFree(scales);
    }
    cudaFree(x), cudaFree(y);
    return glint_cuda_check("gemm bench") ? -1 : 0;
}
