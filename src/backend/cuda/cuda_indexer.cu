// DSA indexer scores on tensor cores (sm_80+ mma.sync m16n8k8 TF32 -> FP32) for the GLM-5 indexer
// shape (32 heads of 128): scores[s, t] = Σ_h w[s,h]·weight_scale · relu(q[s,h]·k[t] · scale).
//
// Why: at long contexts the FP32 kernel (cuda_backend.cu) read its keys at a quarter of the copy
// bandwidth (one tile loaded, then computed, per block; bound by shared-memory reads of q and keys).
// Here each lane loads its keys straight into registers (every byte once, 64-byte runs), and the
// dot products run on tensor cores.
//
// FP32 accuracy from TF32 units ("3xTF32"): x = hi + lo with hi = tf32(x) and lo = tf32(x - hi), and
// q·k = q_hi·k_lo + q_lo·k_hi + q_hi·k_hi (q_lo·k_lo, ~2^-22 relative, dropped). The sums come out
// in another order than the CPU's, so scores differ in the last bits: a key whose score ties the
// top-k boundary that closely may be swapped (the op test allows exactly that).
#include <stdio.h>

#include "cuda_internal.cuh"

namespace {

enum {
    ITC_WARPS = 4,
    ITC_HEADS = 32,                // two 16-row m-tiles of heads
    ITC_DIM = 128,                 // head_dim
    ITC_STEPS = ITC_DIM / 8,       // k-steps of 8 per dot product
    ITC_VECS = ITC_DIM / 16,       // 16-byte loads per lane per key (a quarter of it; step_dim)
};

__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ void mma_tf32(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Which element of a 128-wide row the fragments' k index takes. A lane (group g = lane/4, tig =
// lane%4) loads the 16 bytes at d = 16i + 4·tig (i = 0..7) of its key: the four lanes of a key read 64
// contiguous bytes per load, every byte once. Load i feeds k-steps j = 2i (its .x, .y) and 2i + 1
// (.z, .w), so at step j = 2i + e the B rows tig and tig + 4 are d0 = 16i + 4·tig + 2e and d0 + 1;
// the A (q) columns use the same map.
__device__ __forceinline__ int step_dim(int j, int tig) { return 16 * (j / 2) + 4 * tig + 2 * (j % 2); }

// grid (blocks of chunks, queries), ITC_WARPS warps. A chunk is ITC_WARPS·NT·8 keys, a warp's share
// NT n-tiles of 8 keys; blocks stride over the chunks. AHEAD: 16-byte loads per lane in flight ahead
// of the one being used (per n-tile). Shared: q as A fragments, hi and lo, [m-tile][step][lane].
// FUSED: the multi-block selection's first histogram pass (the top 8 bits of each score's order key)
// is done here into states for the queries with more than topk keys, sparing its launch (a variant
// of its own, so the plain kernel keeps its registers).
template <int NT, int AHEAD, bool FUSED>
__global__ void __launch_bounds__(ITC_WARPS * 32)
    indexer_scores_tc_kernel(float *scores, int scores_stride, const float *q, const float *w, const float *k_pool,
                             const int32_t *pos, glint_cache_map map, int s0, float scale, float weight_scale,
                             topk_state *states, int topk) {
    chain_wait();
    __shared__ float4 frag_hi[2][ITC_STEPS][32], frag_lo[2][ITC_STEPS][32];  // 32 KB
    __shared__ int hist[256];  // with states: the block's counts of the scores' top 8 bits
    const int s = s0 + blockIdx.y, visible = pos[s] + 1, seq = map.row_seq[s];
    const int chunk_keys = ITC_WARPS * NT * 8;
    if ((int)blockIdx.x * chunk_keys >= visible) return;
    const bool histogram = FUSED && visible > topk;  // the same for the whole block
    if (histogram)
        for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;  // (the staging's barrier follows)
    const float *qs = q + (size_t)s * ITC_HEADS * ITC_DIM;
    for (int i = threadIdx.x; i < 2 * ITC_STEPS * 32; i += blockDim.x) {
        const int mt = i / (ITC_STEPS * 32), j = i / 32 % ITC_STEPS, l = i % 32;
        const int h = 16 * mt + l / 4, d = step_dim(j, l % 4);
        // a0 (row g, col tig), a1 (row g+8, col tig), a2 (row g, col tig+4), a3 (row g+8, col tig+4)
        const float v[4] = {qs[h * ITC_DIM + d], qs[(h + 8) * ITC_DIM + d], qs[h * ITC_DIM + d + 1],
                            qs[(h + 8) * ITC_DIM + d + 1]};
        uint32_t hi[4], lo[4];
#pragma unroll
        for (int r = 0; r < 4; r++) hi[r] = to_tf32(v[r]), lo[r] = to_tf32(v[r] - __uint_as_float(hi[r]));
        frag_hi[mt][j][l] = make_float4(__uint_as_float(hi[0]), __uint_as_float(hi[1]), __uint_as_float(hi[2]),
                                        __uint_as_float(hi[3]));
        frag_lo[mt][j][l] = make_float4(__uint_as_float(lo[0]), __uint_as_float(lo[1]), __uint_as_float(lo[2]),
                                        __uint_as_float(lo[3]));
    }
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
    // this lane's accumulator rows are heads g, g + 8 (m-tile 0), g + 16, g + 24 (m-tile 1)
    const float *ws = w + (size_t)s * ITC_HEADS;
    const float wh[4] = {ws[g] * weight_scale, ws[g + 8] * weight_scale, ws[g + 16] * weight_scale,
                         ws[g + 24] * weight_scale};
    float *out = scores + (size_t)blockIdx.y * scores_stride;
    for (int t0 = blockIdx.x * chunk_keys + warp * NT * 8; t0 < visible; t0 += gridDim.x * chunk_keys) {
        const float4 *key[NT];  // this lane's quarter of its key in each n-tile (past the end: the last key)
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const int t = min(t0 + 8 * nt + g, visible - 1);
            key[nt] = (const float4 *)(k_pool + cache_row(map, seq, t) * ITC_DIM) + tig;
        }
        float acc[NT][2][4] = {};
        float4 kv[ITC_VECS][NT];  // fully unrolled: only AHEAD + 1 of them live at a time
#pragma unroll
        for (int i = 0; i < AHEAD && i < ITC_VECS; i++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++) kv[i][nt] = __ldg(key[nt] + 4 * i);
#pragma unroll
        for (int i = 0; i < ITC_VECS; i++) {
            if (i + AHEAD < ITC_VECS)
#pragma unroll
                for (int nt = 0; nt < NT; nt++) kv[i + AHEAD][nt] = __ldg(key[nt] + 4 * (i + AHEAD));
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int j = 2 * i + e;
                uint32_t a_hi[2][4], a_lo[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    const float4 h = frag_hi[mt][j][lane], l = frag_lo[mt][j][lane];
                    a_hi[mt][0] = __float_as_uint(h.x), a_hi[mt][1] = __float_as_uint(h.y);
                    a_hi[mt][2] = __float_as_uint(h.z), a_hi[mt][3] = __float_as_uint(h.w);
                    a_lo[mt][0] = __float_as_uint(l.x), a_lo[mt][1] = __float_as_uint(l.y);
                    a_lo[mt][2] = __float_as_uint(l.z), a_lo[mt][3] = __float_as_uint(l.w);
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    const float b0 = e ? kv[i][nt].z : kv[i][nt].x, b1 = e ? kv[i][nt].w : kv[i][nt].y;
                    const uint32_t b0_hi = to_tf32(b0), b1_hi = to_tf32(b1);
                    const uint32_t b0_lo = to_tf32(b0 - __uint_as_float(b0_hi)),
                                   b1_lo = to_tf32(b1 - __uint_as_float(b1_hi));
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {  // the small products first
                        mma_tf32(acc[nt][mt], a_lo[mt], b0_hi, b1_hi);
                        mma_tf32(acc[nt][mt], a_hi[mt], b0_lo, b1_lo);
                        mma_tf32(acc[nt][mt], a_hi[mt], b0_hi, b1_hi);
                    }
                }
            }
        }
        // c0, c1: head row g, keys 2·tig, 2·tig + 1 of the n-tile; c2, c3: head row g + 8
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int col = 0; col < 2; col++) {
                const float dots[4] = {acc[nt][0][col], acc[nt][0][2 + col], acc[nt][1][col], acc[nt][1][2 + col]};
                float total = 0.0f;
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const float dot = dots[r] * scale;
                    total += wh[r] * (dot > 0.0f ? dot : 0.0f);
                }
                total += __shfl_xor_sync(0xffffffffu, total, 4);  // over the 8 groups: all 32 heads
                total += __shfl_xor_sync(0xffffffffu, total, 8);
                total += __shfl_xor_sync(0xffffffffu, total, 16);
                const int t = t0 + 8 * nt + 2 * tig + col;
                if (g == 0 && t < visible) {
                    out[t] = total;
                    if (histogram) atomicAdd(&hist[order_key(total) >> 24], 1);
                }
            }
    }
    if (histogram) {  // the blocks that took part: those with a chunk below visible
        const int blocks = min((int)gridDim.x, (visible + chunk_keys - 1) / chunk_keys);
        topk_pass_finish(states + blockIdx.y, hist, blocks, 0u, topk, 24);
    }
}

// Blocks of the kernel resident per SM (its registers and shared memory), measured once per variant
// on the first device that launches it (a process with cards of different kinds gets that one's).
template <int NT, int AHEAD, bool FUSED>
int resident_blocks() {
    static int resident;  // 0: not measured yet (ranks' threads may measure at once: same answer)
    int r = __atomic_load_n(&resident, __ATOMIC_RELAXED);
    if (!r) {
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&r, indexer_scores_tc_kernel<NT, AHEAD, FUSED>,
                                                          ITC_WARPS * 32, 0) != cudaSuccess || r < 1) {
            cudaGetLastError();
            r = 1;
        }
        __atomic_store_n(&resident, r, __ATOMIC_RELAXED);
    }
    return r;
}

template <int NT, int AHEAD>
void launch_scores(float *scores, int scores_stride, const float *q, const float *w, const float *k_pool,
                   const int32_t *pos, const glint_cache_map &map, int s0, int n, int max_visible, int sms,
                   float scale, float weight_scale, topk_state *states, int topk) {
    const int chunk_keys = ITC_WARPS * NT * 8, chunks = (max_visible + chunk_keys - 1) / chunk_keys;
    // one wave of resident blocks over all queries, at most four per SM (what every variant had before
    // session 15: the grid is unchanged on sm_80 / sm_90 cards; the experimental variants, and cards
    // with less shared memory per SM, fit fewer); each block stages q once for all its chunks
    const int fit = states ? resident_blocks<NT, AHEAD, true>() : resident_blocks<NT, AHEAD, false>();
    const int per_query = ((fit < 4 ? fit : 4) * sms + n - 1) / n;
    const dim3 grid((unsigned)(chunks < per_query ? chunks : per_query), (unsigned)n);
    auto kernel = states ? indexer_scores_tc_kernel<NT, AHEAD, true> : indexer_scores_tc_kernel<NT, AHEAD, false>;
    launch_chained(kernel, grid, ITC_WARPS * 32, 0, scores, scores_stride, q, w, k_pool, pos, map, s0, scale,
        weight_scale, states, topk);
}

typedef void (*scores_launcher)(float *, int, const float *, const float *, const float *, const int32_t *,
                                const glint_cache_map &, int, int, int, int, float, float, topk_state *, int);

// GLINT_CUDA_INDEXER_LONG="NT,AHEAD": the long-context variant's n-tiles per warp and loads in flight
// ahead, one of 4,2 (the default), 4,3, 4,4 and 2,8 (an experiment: more loads in flight per lane,
// bench/RESULTS.md session 15); an unknown value gets the default, with a message.
scores_launcher long_variant() {
    static const scores_launcher variant = [] {
        const char *v = getenv("GLINT_CUDA_INDEXER_LONG");
        if (!v || !strcmp(v, "4,2")) return launch_scores<4, 2>;
        if (!strcmp(v, "4,3")) return launch_scores<4, 3>;
        if (!strcmp(v, "4,4")) return launch_scores<4, 4>;
        if (!strcmp(v, "2,8")) return launch_scores<2, 8>;
        fprintf(stderr, "glint: GLINT_CUDA_INDEXER_LONG='%s' is not one of 4,2 4,3 4,4 2,8; using 4,2\n", v);
        return launch_scores<4, 2>;
    }();
    return variant;
}

}  // namespace

int glint_cuda_indexer_scores_tc(float *scores, int scores_stride, const float *q, const float *w,
                                 const float *k_pool, const int32_t *pos, const glint_cache_map &map, int s0, int n,
                                 int max_visible, int n_heads, int head_dim, float scale, float weight_scale, int sms,
                                 topk_state *states, int topk) {
    static const int enabled = glint_cuda_switch("GLINT_CUDA_INDEXER_TC", 1);
    if (!enabled || n_heads != ITC_HEADS || head_dim != ITC_DIM || (uintptr_t)k_pool % 16 != 0) return 0;
    // Short contexts: one n-tile per warp with all of its loads in flight at once (latency: the
    // kernel starts beside q_b's GEMV); long ones: four n-tiles per warp, two loads ahead.
    const int long_chunks = (max_visible + ITC_WARPS * 32 - 1) / (ITC_WARPS * 32);
    const scores_launcher launch = (long)long_chunks * n >= 2L * sms ? long_variant() : launch_scores<1, ITC_VECS>;
    launch(scores, scores_stride, q, w, k_pool, pos, map, s0, n, max_visible, sms, scale, weight_scale, states, topk);
    return 1;
}
