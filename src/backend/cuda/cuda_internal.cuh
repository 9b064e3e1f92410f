// CUDA backend internals shared by its .cu files: the device view of a weight, element decoding for
// every checkpoint format, launch-error reporting.
#ifndef GLINT_CUDA_INTERNAL_CUH
#define GLINT_CUDA_INTERNAL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend/backend.h"
#include "common/util.h"
}

// A weight (or a slice of its rows) as the kernels see it; passed by value.
struct dev_weight {
    const void *data, *scales, *zeros;
    int64_t rows, cols;  // of the view
    int64_t row0;        // first row of the view in the stored matrix (scales/zeros are indexed by stored row)
    int64_t all_rows;    // rows of the stored matrix (GPTQ lays rows along its minor axis)
    int format, dtype, scales_dtype, block;
    float global_scale;
};

static inline dev_weight dev_weight_of(const glint_weight *w) {
    dev_weight d;
    d.data = w->data, d.scales = w->scales, d.zeros = w->zeros;
    d.rows = w->rows, d.cols = w->cols > 0 ? w->cols : 1, d.row0 = 0, d.all_rows = w->rows;
    d.format = w->format, d.dtype = w->dtype, d.scales_dtype = w->scales_dtype, d.block = w->block;
    d.global_scale = w->global_scale;
    return d;
}

__device__ __forceinline__ float bf16_bits_to_float(uint32_t h) { return __uint_as_float(h << 16); }
__device__ __forceinline__ float f16_bits_to_float(uint32_t h) {
    return __half2float(__ushort_as_half((unsigned short)h));
}
// E4M3 -> f32 exactly (NaN codes aside): sign and 7 bits placed in an f16, times 2^8 for the bias gap.
__device__ __forceinline__ float fp8_bits_to_float(uint32_t b) {
    uint32_t h = ((b & 0x80u) << 8) | ((b & 0x7fu) << 7);
    return f16_bits_to_float(h) * 256.0f;
}
// E2M1 -> f32: sign, 2 exponent bits and the mantissa bit placed in an f16 give the value times
// 2^-14 (subnormal codes included), so no table (a local array would live in local memory).
__device__ __forceinline__ float e2m1_to_float(uint32_t code) {
    return f16_bits_to_float(((code & 8u) << 12) | ((code & 7u) << 9)) * 16384.0f;
}

__device__ __forceinline__ float dense_element(const void *data, int dtype, int64_t i) {
    switch (dtype) {
    case GLINT_DTYPE_F32: return ((const float *)data)[i];
    case GLINT_DTYPE_BF16: return bf16_bits_to_float(((const uint16_t *)data)[i]);
    case GLINT_DTYPE_F16: return f16_bits_to_float(((const uint16_t *)data)[i]);
    case GLINT_DTYPE_F8_E4M3: return fp8_bits_to_float(((const uint8_t *)data)[i]);
    default: return __int_as_float(0x7fc00000);
    }
}

// Programmatic dependent launch (sm_90+; launch_chained). A chained kernel may be scheduled while the
// kernel before it on the stream still runs, so every block calls chain_wait() before it reads what an
// earlier kernel wrote or writes anything, and before any early return: the next kernel's wait covers
// only this one, so this one must not finish before its predecessor. Only what no kernel writes (the
// weights) may be touched before it. After the wait the kernel lets its own successor be scheduled.
// Before sm_90 the launches are plain and this is nothing.
__device__ __forceinline__ void chain_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
// The GPU's global nanosecond timer (the same on every SM, unlike clock64), for waits with a timeout.
__device__ __forceinline__ unsigned long long global_now_ns(void) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
// Pool row of position p of batch sequence seq (backend.h, glint_cache_map).
__device__ __forceinline__ size_t cache_row(const glint_cache_map &map, int seq, int p) {
    return (size_t)map.page_table[(size_t)seq * map.pages_stride + p / map.page_size] * map.page_size +
           p % map.page_size;
}
// RoPE (backend.h: rope): inv_freq lives in host memory (the model config) and travels as a kernel
// argument, rope_dim / 2 pairs of it (rope_table, cuda_backend.cu, fills one; 0, or -1 with the error
// set when it does not fit).
enum { ROPE_MAX_PAIRS = 256 };
struct rope_freqs {
    float inv_freq[ROPE_MAX_PAIRS];
};
int rope_table(rope_freqs *f, const float *inv_freq, int rope_dim);
// Rotates the pair (a, b) by the angle pos · inv_freq, cos and sin times attn_factor: the fp32 angle
// exactly as the CPU reference (and transformers) forms it, the products and sums each rounded (no FMA
// contraction), so every kernel that rotates (rope, norm_rope_cache, the GEMVs' rope epilogue) gives
// the same bits.
__device__ __forceinline__ void rope_rotate(float &a, float &b, float inv_freq, int32_t pos, float attn_factor) {
    const float angle = inv_freq * (float)pos;
    const float c = cosf(angle) * attn_factor, s = sinf(angle) * attn_factor;
    const float x = a, y = b;
    a = __fsub_rn(__fmul_rn(x, c), __fmul_rn(y, s));
    b = __fadd_rn(__fmul_rn(y, c), __fmul_rn(x, s));
}
// Starts bringing the 128-byte line holding p into L2 (no register, no wait).
__device__ __forceinline__ void prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p)); }

// cp.async (sm_80+): global -> shared without passing through registers, so a block can load its
// next tile while it works on the current one.
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16, 4 or 8 bytes global -> shared; src_bytes 0 fills zeros (the source is not read).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async8(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 8 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
// The same with the count of groups left in flight known only at run time (0 to 3; more wait as for 3).
__device__ __forceinline__ void cp_async_wait_pending(int pending) {
    if (pending >= 3) cp_async_wait<3>();
    else if (pending == 2) cp_async_wait<2>();
    else if (pending == 1) cp_async_wait<1>();
    else cp_async_wait<0>();
}

// Tensor-core fragments (sm_80+): ldmatrix, mma.sync m16n8k16 BF16 -> FP32, BF16 pairs.
__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

__device__ __forceinline__ void mma_bf16(float *c, const uint32_t *a, const uint32_t *b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(const uint32_t *)&v;
}

// The part of (a, b) that bf16 rounding dropped, rounded to bf16 itself (x - hi is exact in FP32).
__device__ __forceinline__ uint32_t pack_bf16_residual(float a, float b, uint32_t hi_bits) {
    const float2 hi = __bfloat1622float2(*(const __nv_bfloat162 *)&hi_bits);
    return pack_bf16(a - hi.x, b - hi.y);
}

// dst[r·cols + c] = src[r·stride + c] for r < rows, 0 for rows <= r < rows_out, by the whole block.
// Each thread issues UNROLL loads before storing any (a plain loop waits a round trip per element).
template <typename V, int UNROLL>
__device__ __forceinline__ void stage_rows_as(V *dst, const V *src, int rows, int rows_out, int cols, size_t stride) {
    const int n = rows_out * cols;
    for (int i0 = threadIdx.x; i0 < n; i0 += UNROLL * blockDim.x) {
        V v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int i = i0 + u * blockDim.x, r = i / cols;
            v[u] = i < n && r < rows ? src[r * stride + i % cols] : V();
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
            if (i0 + u * (int)blockDim.x < n) dst[i0 + u * blockDim.x] = v[u];
    }
}
// stage_rows_as with 16-byte loads where the shapes and addresses allow
__device__ __forceinline__ void stage_rows(float *dst, const float *src, int rows, int rows_out, int cols,
                                           size_t stride) {
    if (cols % 4 == 0 && stride % 4 == 0 && ((uintptr_t)dst | (uintptr_t)src) % 16 == 0)
        stage_rows_as<float4, 4>((float4 *)dst, (const float4 *)src, rows, rows_out, cols / 4, stride / 4);
    else
        stage_rows_as<float, 8>(dst, src, rows, rows_out, cols, stride);
}

// Element (row n of the view, column k) of any format, dequantized to FP32 (spec/FORMATS.md).
__device__ __forceinline__ float weight_element(const dev_weight &w, int64_t n, int64_t k) {
    const int64_t r = w.row0 + n, K = w.cols;
    switch (w.format) {
    case GLINT_WFMT_NVFP4: {
        uint32_t byte = ((const uint8_t *)w.data)[r * (K / 2) + k / 2];
        float scale = fp8_bits_to_float(((const uint8_t *)w.scales)[r * (K / 16) + k / 16]);
        return e2m1_to_float(k & 1 ? byte >> 4 : byte & 15) * scale * w.global_scale;
    }
    case GLINT_WFMT_FP8_BLOCK: {
        const int64_t blocks_per_row = (K + w.block - 1) / w.block;
        float scale = ((const float *)w.scales)[(r / w.block) * blocks_per_row + k / w.block];
        return fp8_bits_to_float(((const uint8_t *)w.data)[r * K + k]) * scale;
    }
    case GLINT_WFMT_GPTQ_INT4: {
        const int64_t N = w.all_rows, g = k / w.block;
        uint32_t packed = (uint32_t)((const int32_t *)w.data)[(k / 8) * N + r];
        uint32_t zero = ((uint32_t)((const int32_t *)w.zeros)[g * (N / 8) + r / 8] >> (4 * (r % 8))) & 15u;
        float q = (float)((packed >> (4 * (k % 8))) & 15u) - (float)(zero + 1);
        return dense_element(w.scales, w.scales_dtype, g * N + r) * q;
    }
    default: return dense_element(w.data, w.dtype, r * K + k);
    }
}

// Several devices (tensor parallelism): each device has a backend instance and the state below;
// glint_backend_cuda(d) binds the calling thread to device d, and every op runs on the calling
// thread's device. A thread that never called it (e.g. a server's engine thread using a backend made
// on the main thread) is bound to the first device a backend was made for on its first use.
enum { GLINT_CUDA_MAX_DEVICES = 16 };
// The main stream and the side streams of backend.h's `branch` (stream slot 0 is the main one).
enum { GLINT_CUDA_BRANCHES = GLINT_BRANCHES, GLINT_CUDA_STREAMS = 1 + GLINT_CUDA_BRANCHES };
struct glint_cuda_device_state {
    // The stream every kernel, memset and device copy of the device's backend runs on (a blocking
    // stream made at startup: synchronous cudaMemcpy on the legacy stream still waits for it). Not the
    // legacy default stream because that one cannot be captured into a CUDA graph.
    cudaStream_t stream;
    // Side streams (made on the first branch), each forked from `stream` by fork_event and joined
    // back by join_event; pending_joins: the branches left since the last join.
    cudaStream_t side[GLINT_CUDA_BRANCHES];
    cudaEvent_t fork_event[GLINT_CUDA_BRANCHES], join_event[GLINT_CUDA_BRANCHES];
    unsigned pending_joins;
    // Bumped whenever a grow-only device buffer is reallocated (its address changes): captured graphs
    // made before then are stale.
    unsigned long long buffer_epoch;
    // Bumped by an op that reads back from the device or otherwise cannot be captured (e.g. the MoE's
    // host-planned path): a decode step that ran one is never captured.
    unsigned long long uncapturable;
    // Set when an op could not run (launch error, limits, out of memory): the next download returns
    // NaN instead of whatever the output buffers held, so a failed step never looks like a result.
    int op_failed;
};
extern glint_cuda_device_state glint_cuda_devices[GLINT_CUDA_MAX_DEVICES];
extern thread_local int glint_cuda_thread_device;  // -1 until the thread is bound
// Binds an unbound thread to the first device a backend was made for; that device (0 if none yet).
int glint_cuda_bind_first_device(void);

// The calling thread's device: indexes every per-device table of the backend.
static inline int glint_cuda_device(void) {
    const int d = glint_cuda_thread_device;
    return d >= 0 ? d : glint_cuda_bind_first_device();
}
static inline glint_cuda_device_state &glint_cuda_dev(void) { return glint_cuda_devices[glint_cuda_device()]; }
// The stream slot the calling thread issues to: 0 (the main stream) or branch k (backend.h: branch).
// Grow-only buffers of the ops are kept per device and slot, so ops on different streams never share one.
extern thread_local int glint_cuda_thread_branch;
static inline int glint_cuda_stream_slot(void) { return glint_cuda_thread_branch; }
static inline cudaStream_t glint_cuda_stream(void) {
    const glint_cuda_device_state &dev = glint_cuda_devices[glint_cuda_device()];
    return glint_cuda_thread_branch ? dev.side[glint_cuda_thread_branch - 1] : dev.stream;
}

// A GLINT_CUDA_* switch from the environment: unset, default_on; "0", off; any other value, on.
static inline int glint_cuda_switch(const char *name, int default_on) {
    const char *e = getenv(name);
    return e ? strcmp(e, "0") != 0 : default_on;
}

// Nonzero when kernels on the calling thread's device are launched chained (sm_90+, unless
// GLINT_CUDA_PDL=0).
int glint_cuda_chaining(void);

// kernel<<<grid, block, smem, glint_cuda_stream()>>>(args...), chained to the kernel before it when
// glint_cuda_chaining() (the kernel must call chain_wait(); see there).
template <typename... Params, typename... Args>
static inline void launch_chained(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Args &&...args) {
    cudaLaunchAttribute chained;
    chained.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    chained.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = grid, config.blockDim = block, config.dynamicSmemBytes = smem;
    config.stream = glint_cuda_stream();
    config.attrs = &chained, config.numAttrs = glint_cuda_chaining() ? 1 : 0;
    cudaLaunchKernelEx(&config, kernel, static_cast<Args &&>(args)...);
}

// Records a failed launch (or an earlier asynchronous fault) as the library error; 0 when fine.
int glint_cuda_check(const char *what);
// Marks the current step failed without a CUDA error (limits, memory): the next download is NaN.
void glint_cuda_fail(void);
// Grow-only device buffer: reallocates *buf (with 25% headroom, bumping glint_cuda_buffer_epoch) when
// it holds fewer than `bytes`; 0, or -1 with the error set and the step marked failed.
int glint_cuda_grow(void **buf, size_t *have, size_t bytes, const char *what);
// Nonzero when GLINT_CUDA_PROFILE is set (per-op timing, see cuda_backend.cu).
int glint_cuda_profiling(void);
// DSA top-k pieces shared by the selection (cuda_backend.cu) and the tensor-core scores
// (cuda_indexer.cu), which can run the multi-block selection's first histogram pass itself.
// Larger float -> larger unsigned key.
__device__ __forceinline__ uint32_t order_key(float f) {
    uint32_t b = __float_as_uint(f);
    return b & 0x80000000u ? ~b : b | 0x80000000u;
}

// Warp 0 of a block: the digit d (255 .. 0) where the count of keys with digit >= d first reaches
// `remaining`, and the count of keys with digit > d (as a serial scan from 255 down would find;
// digit 0 if none). Lane l holds digits 255-8l .. 248-8l; suffix sums by shuffles. GLOBAL: hist is
// global memory written by other blocks (read through L2), else shared memory.
template <bool GLOBAL>
__device__ void radix_digit_warp(const int *hist, int remaining, int *digit_out, int *above_out) {
    const int lane = threadIdx.x & 31;
    int c[8], lane_total = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int *h = hist + 255 - 8 * lane - j;
        c[j] = GLOBAL ? __ldcg(h) : *h;
        lane_total += c[j];
    }
    int above = lane_total;  // inclusive prefix over lanes
    for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, above, o);
        if (lane >= o) above += v;
    }
    above -= lane_total;  // digits above this lane's highest
    int found = -1, found_above = 0, run = above;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        if (found < 0 && run + c[j] >= remaining) found = 255 - 8 * lane - j, found_above = run;
        run += c[j];
    }
    const unsigned hit = __ballot_sync(0xffffffffu, found >= 0);
    const int first = hit ? __ffs(hit) - 1 : 31;
    int digit = __shfl_sync(0xffffffffu, found, first), dig_above = __shfl_sync(0xffffffffu, found_above, first);
    if (!hit) digit = 0, dig_above = __shfl_sync(0xffffffffu, run - c[7], 31);
    *digit_out = digit, *above_out = dig_above;
}

// The multi-block selection's state of one query: zeroed when allocated; every selection leaves
// hist and done zeroed again. gen: bumped by the last block of each pass of the one-launch selection
// (topk_resident_kernel), which the other blocks of the query wait for.
struct topk_state {
    uint32_t prefix;
    int remaining, done, gen;
    int hist[256];
};

// Every thread of one of the `blocks` blocks of a query: thread 0 counts the block's arrival in
// st->done; true in the last block to arrive (after the block's barrier). What the block published
// before must be fenced by the caller.
__device__ __forceinline__ bool topk_arrive(topk_state *st, int blocks) {
    __shared__ int last;
    if (threadIdx.x == 0) last = atomicAdd(&st->done, 1) == blocks - 1;
    __syncthreads();
    return last;
}

// Every thread of the block: its digit counts (block_hist [256], shared memory) into the query's,
// then fenced.
__device__ __forceinline__ void topk_add_hist(topk_state *st, const int *block_hist) {
    __syncthreads();
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
        if (block_hist[i]) atomicAdd(&st->hist[i], block_hist[i]);
    __threadfence();
    __syncthreads();
}

// Warp 0 of a pass's last block: the digit into st->prefix and st->remaining, the counts zeroed for
// the next pass.
__device__ __forceinline__ void topk_pick_digit(topk_state *st, uint32_t prefix, int remaining, int shift) {
    int digit, above;
    radix_digit_warp<true>(st->hist, remaining, &digit, &above);
    __syncwarp();
    for (int i = threadIdx.x; i < 256; i += 32) st->hist[i] = 0;
    if (threadIdx.x == 0) {
        st->prefix = prefix | ((uint32_t)digit << shift);
        st->remaining = remaining - above;
    }
}

// The end of a histogram pass of the multi-block selection, by every thread of one of the `blocks`
// blocks of a query that take part: the block's digit counts (block_hist [256], shared memory) go
// into the query's state; the last block to finish picks the digit (prefix and remaining for the
// next pass) and zeroes the counts and `done` again.
__device__ __forceinline__ void topk_pass_finish(topk_state *st, const int *block_hist, int blocks, uint32_t prefix,
                                                 int remaining, int shift) {
    topk_add_hist(st, block_hist);
    if (!topk_arrive(st, blocks)) return;
    __threadfence();
    if (threadIdx.x < 32) {
        topk_pick_digit(st, prefix, remaining, shift);
        if (threadIdx.x == 0) st->done = 0;
    }
}

// The indexer's scores [n, scores_stride] for queries s0 .. s0+n-1 on tensor cores (cuda_indexer.cu)
// where the shape is GLM-5's (32 heads of 128) and GLINT_CUDA_INDEXER_TC is not 0; 0 (nothing
// launched) otherwise. states (optional, [n]): also the multi-block selection's first histogram
// pass (top 8 bits) for the queries with more than topk keys.
int glint_cuda_indexer_scores_tc(float *scores, int scores_stride, const float *q, const float *w,
                                 const float *k_pool, const int32_t *pos, const glint_cache_map &map, int s0, int n,
                                 int max_visible, int n_heads, int head_dim, float scale, float weight_scale, int sms,
                                 topk_state *states, int topk);
// With GLINT_CUDA_KERNEL_TRACE=FILE: starts recording every kernel into FILE (cuda_trace.cu); once.
void glint_cuda_trace_start(void);

// y[b][T, N] = x[b][T, K] · W_b^T for `batch` problems: problem b uses rows [b·w_row_step, +N) of W
// (the view's rows), x + b·x_step, y + b·y_step. batch 1 is the plain matmul.
void glint_cuda_matmul_batched(float *y, int y_stride, const float *x, int x_stride, int T, const dev_weight &W,
                               int batch, int64_t w_row_step, int64_t x_step, int64_t y_step);

// The T > 64 paths: tensor cores for BF16 / NVFP4 weights, FP8 / FP8-block too with GLINT_CUDA_TC=bf16
// (cuda_gemm.cu; returns 0 without launching anything when the mode, W's format or alignment is not
// covered), and the FP32 SIMT tiles.
int glint_cuda_matmul_tc(float *y, int y_stride, const float *x, int x_stride, int T, const dev_weight &W, int batch,
                         int64_t w_row_step, int64_t x_step, int64_t y_step);
// The tensor-core format glint_cuda_matmul_tc gives W in the GLINT_CUDA_TC mode, or -1 (FP32 SIMT).
int glint_cuda_tc_format(const dev_weight &W);
// The routed experts' prefill products in one launch: for each work item {expert e, first row, rows,
// first row of the item among them (a multiple of 128)}, y[row] = tab[e] · x[row] over the item's
// rows (x, y: [rows][K], [rows][N] with the given strides). Every expert has W0's shape and tensor-core
// format (glint_cuda_tc_format). 0 when the mode or the format keeps W0 off the tensor cores.
int glint_cuda_matmul_tc_grouped(float *y, int y_stride, const float *x, int x_stride, int rows, const dev_weight &W0,
                                 const dev_weight *tab, const int4 *items, int n_items);
void glint_cuda_matmul_simt(float *y, int y_stride, const float *x, int x_stride, int T, const dev_weight &W, int batch,
                            int64_t w_row_step, int64_t x_step, int64_t y_step);

// Device-side routing result of one MoE layer (cuda_moe.cu): the experts that got tokens, in expert
// order, and each expert's rows [offsets[e], offsets[e+1]) of the (token, slot) pairs.
struct glint_moe_plan {
    const int32_t *n_active;     // [1]
    const int32_t *active;       // [n_active]
    const int32_t *offsets;      // [E + 1]
    const int32_t *pair_of_row;  // [pairs]: pair t·top_k + k of each row
    int top_k;
};

// Token rows split for the tensor-core NVFP4 expert kernels (cuda_moe_mma.cu): x·scale = hi + lo in
// f16, scale a power of two per row putting max|x·scale| in [2^13, 2^14) (so nothing overflows and
// hi + lo keeps ~22 bits); hi, lo [rows][K] with each 8 elements in the order 0 2 1 3 4 6 5 7.
struct glint_moe_split {
    __half *hi, *lo;
    float *scale;  // [rows]
};
enum { MOE_SPLIT_THREADS = 1024, MOE_SPLIT_PER_THREAD = 8 };  // rows of up to 8192

// Row `row` of K <= MOE_SPLIT_THREADS·MOE_SPLIT_PER_THREAD floats into split row r of s, by a whole
// block of MOE_SPLIT_THREADS threads (the row held in registers between the max and the split).
__device__ __forceinline__ void moe_split_row(const glint_moe_split &s, int64_t r, const float *row, int K) {
    __shared__ float warp_max[MOE_SPLIT_THREADS / 32];
    float v[MOE_SPLIT_PER_THREAD], m = 0.0f;
#pragma unroll
    for (int i = 0; i < MOE_SPLIT_PER_THREAD; i++) {
        const int k = threadIdx.x + i * MOE_SPLIT_THREADS;
        v[i] = k < K ? row[k] : 0.0f;
        m = fmaxf(m, fabsf(v[i]));
    }
#pragma unroll
    for (int o = 16; o; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = m;
    __syncthreads();
    m = 0.0f;
#pragma unroll
    for (int w = 0; w < MOE_SPLIT_THREADS / 32; w++) m = fmaxf(m, warp_max[w]);
    int e = 0;
    if (m > 0.0f && isfinite(m)) frexpf(m, &e);  // m = f · 2^e, f in [0.5, 1)
    const float sc = ldexpf(1.0f, 14 - e);      // max|x·sc| in [2^13, 2^14)
    if (threadIdx.x == 0) s.scale[r] = sc;
    __half *h = s.hi + r * K, *l = s.lo + r * K;
#pragma unroll
    for (int i = 0; i < MOE_SPLIT_PER_THREAD; i++) {
        const int k = threadIdx.x + i * MOE_SPLIT_THREADS;
        if (k >= K) break;
        const float xs = v[i] * sc;
        const __half xh = __float2half_rn(xs);
        const int p = (k & ~3) | (k & 1) << 1 | (k >> 1 & 1);  // per 8: 0 2 1 3 4 6 5 7 (bits 0 and 1 swapped)
        h[p] = xh, l[p] = __float2half_rn(xs - __half2float(xh));
    }
}

// The vector format the grouped expert kernels use for W (-1: W has none, or is misaligned).
int glint_cuda_moe_format(const dev_weight &W);
// out[row, D] = down_e(silu(gate_e x) ⊙ up_e x) of every (token, expert) row of the plan; tab is the
// device table [gate x E, up x E, down x E]; slots = the most experts that can be active; vf from
// glint_cuda_moe_format (the same for every expert matrix). x_split: x's rows already split by the
// caller into glint_cuda_moe_mma_split's buffers (NULL: the experts' kernels see to x themselves).
void glint_cuda_moe_experts(float *out, const float *x, int T, int D, int I, const dev_weight *tab, int E, int slots,
                            int vf, const glint_moe_plan &plan, const glint_moe_split *x_split);

// The same for NVFP4 experts on tensor cores (cuda_moe_mma.cu); 0 when it does not apply (shapes not
// multiples of 32, or GLINT_CUDA_MMA_DECODE=0) and nothing was launched.
int glint_cuda_moe_nvfp4_mma(float *out, const float *x, int T, int D, int I, const dev_weight *tab, int E, int slots,
                             const glint_moe_plan &plan, const glint_moe_split *x_split);
// The buffers the tensor-core path splits T token rows of D into, when it takes (T, D, I, top_k) with
// experts in NVFP4 (nvfp4_experts); all NULL when it does not (or on allocation failure, error set).
glint_moe_split glint_cuda_moe_mma_split(int T, int D, int I, int top_k, bool nvfp4_experts);

extern "C" void glint_cuda_moe(glint_backend *be, float *y, const float *x, int T, int D, int I,
                               const glint_weight *router, const glint_weight *bias, const glint_moe_routing *r,
                               const glint_experts *ex);
extern "C" int glint_cuda_synthesize(glint_backend *be, glint_weight *w, uint64_t seed, float lo, float hi);

// Tensor parallelism (cuda_tp.cu): backend.h's tp_connect, tp_disconnect and all_reduce_sum.
extern "C" int glint_cuda_tp_connect(glint_backend *be, glint_tp_link *link, int rank);
extern "C" void glint_cuda_tp_disconnect(glint_backend *be);
extern "C" void glint_cuda_all_reduce_sum(glint_backend *be, float *x, size_t n);
// The device a backend instance was made for.
extern "C" int glint_cuda_device_of(glint_backend *be);

extern "C" void glint_cuda_matmul(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                                  const glint_weight *W);
extern "C" int glint_cuda_swiglu_matmul(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                                        const glint_weight *gate, const glint_weight *up);
extern "C" int glint_cuda_matmul_rope(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                                      const glint_weight *W, int n_heads, int head_stride, int offset, int rope_dim,
                                      const int32_t *pos, const float *inv_freq, float attn_factor);

#endif
