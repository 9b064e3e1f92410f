// CUDA MoE (routed experts of one layer): router matmul, routing on the GPU (sigmoid + bias, groups,
// top-k, renormalize, scale), then
//   T <= 64 (decode, batched decode): a device-side plan (per-expert counts, offsets, the list of
//     active experts) feeds the grouped expert kernels of cuda_matmul.cu directly; nothing is read
//     back, so the step can be queued (and captured) without waiting for the GPU;
//   T > 64 (prefill): the per-expert counts are read back and each active expert runs the tiled
//     matmuls on its rows.
// The weighted sum over a token's experts runs in slot order (fixed summation order), so a token's
// output does not depend on the other tokens of the batch.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

enum { MOE_MAX_TOPK = 64, MOE_MAX_GROUPS = 64, MOE_MAX_EXPERTS = 1024, MOE_GROUPED_T = 64 };

// True when (a_score, a_index) ranks before (b_score, b_index): the CPU's total order.
__device__ __forceinline__ bool moe_ranks_before(float as, int ai, float bs, int bi) {
    return as > bs || (as == bs && ai < bi);
}

struct moe_routing_args {
    int n_experts, top_k, n_group, topk_group, norm_topk_prob, has_bias;
    float routed_scaling_factor;
};

// Device-side plan of a decode step's MoE (T <= MOE_GROUPED_T): the experts with tokens and their rows.
// offsets NULL: prefill, where the host reads the counts back and plans.
struct moe_plan_out {
    int32_t *offsets, *active, *n_active, *row_of_pair, *pair_of_row;
    int32_t *done;  // blocks that finished routing; the last one plans, then resets it to 0
    int pairs;
};

// By one block of 1024 threads (E <= 1024): offsets = exclusive scan of counts, the list of experts
// with tokens (in expert order), every (token, slot) pair placed in its expert's rows (order within an
// expert is arbitrary: rows are computed independently). Resets counts for the next layer. Counts and
// ids come from other blocks of the grid: read past L1.
__device__ void moe_plan_block(int32_t *counts, const int32_t *ids, int E, const moe_plan_out &p) {
    __shared__ int32_t warp_sum[2][32], fill[MOE_MAX_EXPERTS], start[MOE_MAX_EXPERTS];
    const int e = threadIdx.x, lane = e & 31, warp = e >> 5;
    const int c = e < E ? __ldcg(&counts[e]) : 0, has = c > 0;
    int inc_c = c, inc_a = has;
    for (int o = 1; o < 32; o <<= 1) {
        const int nc = __shfl_up_sync(0xffffffffu, inc_c, o), na = __shfl_up_sync(0xffffffffu, inc_a, o);
        if (lane >= o) inc_c += nc, inc_a += na;
    }
    if (lane == 31) warp_sum[0][warp] = inc_c, warp_sum[1][warp] = inc_a;
    __syncthreads();
    if (warp == 0) {
        int sc = warp_sum[0][lane], sa = warp_sum[1][lane];
        for (int o = 1; o < 32; o <<= 1) {
            const int nc = __shfl_up_sync(0xffffffffu, sc, o), na = __shfl_up_sync(0xffffffffu, sa, o);
            if (lane >= o) sc += nc, sa += na;
        }
        warp_sum[0][lane] = sc, warp_sum[1][lane] = sa;  // inclusive over warps
    }
    __syncthreads();
    const int before_c = (warp ? warp_sum[0][warp - 1] : 0) + inc_c - c;
    const int before_a = (warp ? warp_sum[1][warp - 1] : 0) + inc_a - has;
    if (e < E) {
        p.offsets[e] = before_c, start[e] = before_c, fill[e] = 0;
        if (has) p.active[before_a] = e;
        counts[e] = 0;
    }
    if (e == 0) p.offsets[E] = warp_sum[0][31], *p.n_active = warp_sum[1][31];
    __syncthreads();
    for (int i = threadIdx.x; i < p.pairs; i += blockDim.x) {
        const int x = __ldcg(&ids[i]), row = start[x] + atomicAdd(&fill[x], 1);
        p.row_of_pair[i] = row, p.pair_of_row[row] = i;
    }
}

// A block of 1024 threads per token, a thread per expert (spec §2.8): sigmoid + bias into shared
// memory; with groups, the topk_group groups with the best top-2 sums (masked experts score -inf but
// stay selectable, as on the CPU); then each expert's rank under the CPU's total order (score, then
// index), the top_k ranks being the CPU's top_k argmax rounds in order. Weights are the sigmoids,
// renormalized and scaled; counts[e] counts the tokens of expert e. With split.hi, the block also
// splits its token's row of x for the tensor-core experts; with plan.offsets, the last block to finish
// makes the plan (moe_plan_block), so a decode step's routing is one launch.
__global__ void __launch_bounds__(1024)
    moe_route_kernel(int32_t *ids, float *weights, int32_t *counts, const float *logits, dev_weight bias,
                     moe_routing_args r, int T, moe_plan_out plan, glint_moe_split split, const float *x, int D) {
    chain_wait();
    __shared__ float sig[MOE_MAX_EXPERTS], choice[MOE_MAX_EXPERTS], group_score[MOE_MAX_GROUPS];
    __shared__ int chosen[MOE_MAX_TOPK];
    __shared__ uint64_t keep;
    __shared__ int last;
    const int t = blockIdx.x, e = threadIdx.x, E = r.n_experts;
    // This token's logit and bias are on their way while the x row is split (it needs no routing).
    const float logit = e < E ? logits[(size_t)t * E + e] : 0.0f;
    const float bias_e = e < E && r.has_bias ? dense_element(bias.data, bias.dtype, e) : 0.0f;
    if (split.hi) moe_split_row(split, t, x + (size_t)t * D, D);
    if (e < E) {
        sig[e] = 1.0f / (1.0f + expf(-logit));
        choice[e] = sig[e] + bias_e;
    }
    // NaN scores (a failed op's output) rank nothing before them, so their ranks collide and leave
    // slots unwritten below: those keep a valid expert (finite rows overwrite every slot)
    if (e < r.top_k) chosen[e] = e;
    __syncthreads();
    if (r.n_group > 1) {
        const int per_group = E / r.n_group;
        if (e < r.n_group) {
            float a = -INFINITY, b = -INFINITY;
            for (int j = e * per_group; j < (e + 1) * per_group; j++) {
                if (choice[j] > a) b = a, a = choice[j];
                else if (choice[j] > b) b = choice[j];
            }
            group_score[e] = a + b;
        }
        __syncthreads();
        if (e == 0) {
            uint64_t kept = 0;
            for (int i = 0; i < r.topk_group; i++) {
                int best = -1;
                for (int g = 0; g < r.n_group; g++)
                    if (!(kept >> g & 1) && (best < 0 || moe_ranks_before(group_score[g], g, group_score[best], best)))
                        best = g;
                kept |= 1ull << best;
            }
            keep = kept;
        }
        __syncthreads();
        if (e < E && !(keep >> (e / per_group) & 1)) choice[e] = -INFINITY;
        __syncthreads();
    }
    if (e < E) {
        const float mine = choice[e];
        int rank = 0;  // no early exit: the shared loads of 8 steps go out together
#pragma unroll 8
        for (int j = 0; j < E; j++) rank += moe_ranks_before(choice[j], j, mine, e);
        if (rank < r.top_k) chosen[rank] = e;
    }
    __syncthreads();
    if (e == 0) {
        float sum = 0.0f;
        for (int k = 0; k < r.top_k; k++) sum += sig[chosen[k]];
        for (int k = 0; k < r.top_k; k++) {
            float w = sig[chosen[k]];
            if (r.norm_topk_prob) w /= sum + 1e-20f;
            ids[(size_t)t * r.top_k + k] = chosen[k];
            weights[(size_t)t * r.top_k + k] = w * r.routed_scaling_factor;
        }
    }
    if (e < r.top_k) atomicAdd(&counts[chosen[e]], 1);
    if (!plan.offsets) return;
    if (T > 1) {  // the last block to arrive plans; one block (a single token) is its own last
        __threadfence();  // this block's ids and counts before its arrival
        __syncthreads();
        if (e == 0) last = atomicAdd(plan.done, 1) == T - 1;
        __syncthreads();
        if (!last) return;
        __threadfence();
    } else {
        __syncthreads();  // the block's ids and counts
    }
    moe_plan_block(counts, ids, E, plan);
    if (e == 0) *plan.done = 0;
}

__global__ void moe_place_kernel(int32_t *row_of_pair, int32_t *pair_of_row, int32_t *fill, const int32_t *offsets,
                                 const int32_t *ids, int pairs) {
    chain_wait();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= pairs) return;
    const int e = ids[i], row = offsets[e] + atomicAdd(&fill[e], 1);
    row_of_pair[i] = row, pair_of_row[row] = i;
}

__global__ void moe_gather_kernel(float *xg, const float *x, const int32_t *pair_of_row, int top_k, int D, int rows) {
    chain_wait();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * D) return;
    const size_t row = i / D, d = i % D;
    xg[i] = x[(size_t)(pair_of_row[row] / top_k) * D + d];
}

__global__ void moe_silu_mul_kernel(float *y, const float *gu, int I, int rows) {
    chain_wait();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * I) return;
    const size_t t = i / I, c = i % I;
    const float g = gu[t * 2 * I + c];
    y[i] = g / (1.0f + expf(-g)) * gu[t * 2 * I + I + c];
}

// y[t, d] = Σ_k w[t, k] · out[row(t, k), d], slots in order (fixed summation order).
__global__ void moe_combine_kernel(float *y, const float *out, const float *weights, const int32_t *row_of_pair,
                                   int top_k, int D, int T) {
    chain_wait();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)T * D) return;
    const size_t t = i / D, d = i % D;
    float acc = 0.0f;
    for (int k = 0; k < top_k; k++) acc += weights[t * top_k + k] * out[(size_t)row_of_pair[t * top_k + k] * D + d];
    y[i] = acc;
}

__global__ void moe_fill_nan_kernel(float *y, size_t n) {
    chain_wait();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __int_as_float(0x7fc00000);
}

static unsigned moe_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 1u << 30 ? 1u << 30 : b);
}

// Grow-only device buffers of this file, per device and stream slot.
enum { B_LOGITS, B_IDS, B_WTS, B_COUNTS, B_OFFSETS, B_ACTIVE, B_ROW_OF_PAIR, B_PAIR_OF_ROW, B_XG, B_GU, B_H, B_OUT, B_ITEMS, B_N };
static struct {
    void *ptr[B_N];
    size_t bytes[B_N];
} moe_buffers[GLINT_CUDA_MAX_DEVICES][GLINT_CUDA_STREAMS];

static void *moe_buffer(int slot, size_t bytes, int zero) {
    void **bufs = moe_buffers[glint_cuda_device()][glint_cuda_stream_slot()].ptr;  // this device's, this stream's
    size_t *buf_bytes = moe_buffers[glint_cuda_device()][glint_cuda_stream_slot()].bytes;
    if (bytes == 0) bytes = 16;
    if (buf_bytes[slot] >= bytes) return bufs[slot];
    glint_cuda_dev().buffer_epoch++;
    cudaFree(bufs[slot]);
    bufs[slot] = NULL, buf_bytes[slot] = 0;
    const size_t want = bytes + bytes / 4;
    if (cudaMalloc(&bufs[slot], want) != cudaSuccess) {
        cudaGetLastError();
        bufs[slot] = NULL;
        glint_set_error("CUDA moe: out of device memory for %zu bytes of scratch", want);
        glint_cuda_fail();
        return NULL;
    }
    if (zero) cudaMemset(bufs[slot], 0, want);
    buf_bytes[slot] = want;
    return bufs[slot];
}

// Device tables of the experts' weights [gate x E, up x E, down x E], one per MoE layer, found by
// the host table's address and checked against its weights' device pointers (a freed and reused
// host table gets a new device table).
struct expert_table {
    const glint_weight *gate;
    int E, vf;
    const void **ptrs;  // data and scales pointers of the 3E weights when the table was made
    dev_weight *dev;
};
static struct {
    expert_table *all;
    size_t n, cap;
} expert_tables[GLINT_CUDA_MAX_DEVICES];

static const expert_table *expert_table_of(const glint_experts *ex) {
    expert_table *&tables = expert_tables[glint_cuda_device()].all;  // this device's
    size_t &n_tables = expert_tables[glint_cuda_device()].n, &cap_tables = expert_tables[glint_cuda_device()].cap;
    const int E = ex->n_experts;
    for (size_t i = 0; i < n_tables; i++) {
        expert_table *t = &tables[i];
        if (t->gate != ex->gate || t->E != E) continue;
        int same = 1;
        for (int e = 0; e < E && same; e++) {
            const glint_weight *w[3] = {&ex->gate[e], &ex->up[e], &ex->down[e]};
            for (int m = 0; m < 3; m++)
                if (t->ptrs[2 * (m * E + e)] != w[m]->data || t->ptrs[2 * (m * E + e) + 1] != w[m]->scales) same = 0;
        }
        if (same) return t;
        // stale: rebuild in place
        glint_cuda_dev().buffer_epoch++;
        cudaFree(t->dev);
        free(t->ptrs);
        *t = tables[--n_tables];
        break;
    }
    dev_weight *host = (dev_weight *)malloc(sizeof(dev_weight) * 3 * (size_t)E);
    const void **ptrs = (const void **)malloc(sizeof(void *) * 6 * (size_t)E);
    if (!host || !ptrs) {
        free(host), free(ptrs);
        return NULL;
    }
    int vf = glint_cuda_moe_format(dev_weight_of(&ex->gate[0]));
    for (int m = 0; m < 3; m++)
        for (int e = 0; e < E; e++) {
            const glint_weight *w = m == 0 ? &ex->gate[e] : m == 1 ? &ex->up[e] : &ex->down[e];
            host[m * E + e] = dev_weight_of(w);
            ptrs[2 * (m * E + e)] = w->data, ptrs[2 * (m * E + e) + 1] = w->scales;
            if (glint_cuda_moe_format(host[m * E + e]) != vf) vf = -1;
        }
    dev_weight *dev = NULL;
    if (cudaMalloc(&dev, sizeof(dev_weight) * 3 * (size_t)E) != cudaSuccess ||
        cudaMemcpy(dev, host, sizeof(dev_weight) * 3 * (size_t)E, cudaMemcpyHostToDevice) != cudaSuccess) {
        cudaGetLastError();
        cudaFree(dev);
        free(host), free(ptrs);
        return NULL;
    }
    free(host);
    if (n_tables == cap_tables) {
        size_t cap = cap_tables ? 2 * cap_tables : 64;
        expert_table *grown = (expert_table *)realloc(tables, cap * sizeof *grown);
        if (!grown) {
            cudaFree(dev), free(ptrs);
            return NULL;
        }
        tables = grown, cap_tables = cap;
    }
    expert_table *t = &tables[n_tables++];
    t->gate = ex->gate, t->E = E, t->vf = vf, t->ptrs = ptrs, t->dev = dev;
    return t;
}

// Prefill on tensor cores, one launch per matrix for all experts (glint_cuda_matmul_tc_grouped): the
// expert matmuls one by one leave most of the card idle (an expert's ~100 rows of a 2048-token chunk
// fill one 128-row tile). counts / offsets: the host's per-expert rows. 0 (nothing launched) when the
// experts' weights are not all of one tensor-core format in this mode.
static int moe_prefill_grouped(float *out, float *gu, float *h, const float *xg, int pairs, int D, int I,
                               const glint_experts *ex, const int32_t *counts, const int32_t *offsets) {
    const int E = ex->n_experts;
    const expert_table *tab = expert_table_of(ex);
    if (!tab) return 0;
    const dev_weight gate0 = dev_weight_of(&ex->gate[0]), down0 = dev_weight_of(&ex->down[0]);
    const int f_gate = glint_cuda_tc_format(gate0), f_down = glint_cuda_tc_format(down0);
    if (f_gate < 0 || f_down < 0) return 0;
    for (int e = 0; e < E; e++)
        if (glint_cuda_tc_format(dev_weight_of(&ex->gate[e])) != f_gate ||
            glint_cuda_tc_format(dev_weight_of(&ex->up[e])) != f_gate ||
            glint_cuda_tc_format(dev_weight_of(&ex->down[e])) != f_down || ex->gate[e].rows != I ||
            ex->up[e].rows != I || ex->down[e].rows != D)
            return 0;
    // work items: {expert, its first row, its rows, the item's first row among them}, 128 rows each
    const size_t max_items = (size_t)E + (size_t)pairs / 128 + 1;
    int4 *items = (int4 *)malloc(sizeof(int4) * max_items);
    int4 *dev_items = (int4 *)moe_buffer(B_ITEMS, sizeof(int4) * max_items, 0);
    if (!items || !dev_items) {
        free(items);
        return 0;
    }
    int n = 0;
    for (int e = 0; e < E; e++)
        for (int m0 = 0; m0 < counts[e]; m0 += 128) items[n++] = make_int4(e, offsets[e], counts[e], m0);
    const bool ok = n > 0 && cudaMemcpy(dev_items, items, sizeof(int4) * (size_t)n, cudaMemcpyHostToDevice) == cudaSuccess;
    free(items);
    if (!ok || !glint_cuda_matmul_tc_grouped(gu, 2 * I, xg, D, pairs, gate0, tab->dev, dev_items, n)) return 0;
    // from here on a failure poisons the step (glint_cuda_check) rather than falling back
    if (!glint_cuda_matmul_tc_grouped(gu + I, 2 * I, xg, D, pairs, dev_weight_of(&ex->up[0]), tab->dev + E,
                                      dev_items, n)) {
        glint_set_error("CUDA moe: the grouped up products could not run");
        glint_cuda_fail();
        return 1;
    }
    launch_chained(moe_silu_mul_kernel, moe_blocks((size_t)pairs * I, 256), 256, 0, h, gu, I, pairs);
    if (!glint_cuda_matmul_tc_grouped(out, D, h, I, pairs, down0, tab->dev + 2 * E, dev_items, n)) {
        glint_set_error("CUDA moe: the grouped down products could not run");
        glint_cuda_fail();
    }
    return 1;
}

// Prefill one expert matmul at a time (formats or modes the grouped launch does not take).
static void moe_prefill_each(float *out, float *gu, float *h, const float *xg, int pairs, int D, int I,
                             const glint_experts *ex, const int32_t *counts, const int32_t *offsets) {
    for (int e = 0; e < ex->n_experts; e++) {
        if (!counts[e]) continue;
        const float *xe = xg + (size_t)offsets[e] * D;
        float *gue = gu + (size_t)offsets[e] * 2 * I;
        glint_cuda_matmul_batched(gue, 2 * I, xe, D, counts[e], dev_weight_of(&ex->gate[e]), 1, 0, 0, 0);
        glint_cuda_matmul_batched(gue + I, 2 * I, xe, D, counts[e], dev_weight_of(&ex->up[e]), 1, 0, 0, 0);
    }
    launch_chained(moe_silu_mul_kernel, moe_blocks((size_t)pairs * I, 256), 256, 0, h, gu, I, pairs);
    for (int e = 0; e < ex->n_experts; e++)
        if (counts[e])
            glint_cuda_matmul_batched(out + (size_t)offsets[e] * D, D, h + (size_t)offsets[e] * I, I, counts[e],
                                      dev_weight_of(&ex->down[e]), 1, 0, 0, 0);
}

static void moe_fail(float *y, size_t n) {
    glint_cuda_fail();
    launch_chained(moe_fill_nan_kernel, moe_blocks(n, 256), 256, 0, y, n);
}

extern "C" void glint_cuda_moe(glint_backend *be, float *y, const float *x, int T, int D, int I,
                               const glint_weight *router, const glint_weight *bias, const glint_moe_routing *r,
                               const glint_experts *ex) {
    (void)be;
    if (T <= 0) return;
    const int E = r->n_experts, K = r->top_k, pairs = T * K;
    if (E > MOE_MAX_EXPERTS || K > MOE_MAX_TOPK || r->n_group > MOE_MAX_GROUPS || r->n_group < 1 || K > E) {
        glint_set_error("CUDA moe: %d experts, top-%d, %d groups exceed the kernel's limits", E, K, r->n_group);
        moe_fail(y, (size_t)T * D);
        return;
    }
    float *logits = (float *)moe_buffer(B_LOGITS, sizeof(float) * (size_t)T * E, 0);
    int32_t *ids = (int32_t *)moe_buffer(B_IDS, sizeof(int32_t) * (size_t)pairs, 0);
    float *wts = (float *)moe_buffer(B_WTS, sizeof(float) * (size_t)pairs, 0);
    // counts, fill and the routing blocks' arrival count; kept zero between calls (the plan resets
    // counts and arrivals, the prefill path counts and fill)
    int32_t *counts = (int32_t *)moe_buffer(B_COUNTS, sizeof(int32_t) * (2 * MOE_MAX_EXPERTS + 1), 1);
    int32_t *offsets = (int32_t *)moe_buffer(B_OFFSETS, sizeof(int32_t) * (MOE_MAX_EXPERTS + 2), 0);
    int32_t *active = (int32_t *)moe_buffer(B_ACTIVE, sizeof(int32_t) * MOE_MAX_EXPERTS, 0);
    int32_t *row_of_pair = (int32_t *)moe_buffer(B_ROW_OF_PAIR, sizeof(int32_t) * (size_t)pairs, 0);
    int32_t *pair_of_row = (int32_t *)moe_buffer(B_PAIR_OF_ROW, sizeof(int32_t) * (size_t)pairs, 0);
    float *out = (float *)moe_buffer(B_OUT, sizeof(float) * (size_t)pairs * D, 0);
    if (!logits || !ids || !wts || !counts || !offsets || !active || !row_of_pair || !pair_of_row || !out) {
        moe_fail(y, (size_t)T * D);
        return;
    }
    glint_cuda_matmul_batched(logits, E, x, D, T, dev_weight_of(router), 1, 0, 0, 0);
    moe_routing_args ra = {E, K, r->n_group, r->topk_group, r->norm_topk_prob, bias && bias->data,
                           r->routed_scaling_factor};
    dev_weight bias_w = bias ? dev_weight_of(bias) : dev_weight{};
    const expert_table *tab = T <= MOE_GROUPED_T ? expert_table_of(ex) : NULL;
    const bool decode = tab && tab->vf >= 0;  // everything stays on the device
    int32_t *n_active = offsets + MOE_MAX_EXPERTS + 1;
    const moe_plan_out plan_out = decode ? moe_plan_out{offsets, active, n_active, row_of_pair, pair_of_row,
                                                        counts + 2 * MOE_MAX_EXPERTS, pairs}
                                         : moe_plan_out{};
    const glint_moe_split split =
        decode ? glint_cuda_moe_mma_split(T, D, I, K, ex->gate[0].format == GLINT_WFMT_NVFP4) : glint_moe_split{};
    launch_chained(moe_route_kernel, T, 1024, 0, ids, wts, counts, logits, bias_w, ra, T, plan_out, split, x, D);
    if (decode) {
        glint_moe_plan plan = {n_active, active, offsets, pair_of_row, K};
        glint_cuda_moe_experts(out, x, T, D, I, tab->dev, E, pairs < E ? pairs : E, tab->vf, plan,
                               split.hi ? &split : NULL);
    } else {
        // Prefill: the per-expert counts decide which expert matmuls to launch, and their sizes.
        glint_cuda_dev().uncapturable++;  // reads the counts back
        float *xg = (float *)moe_buffer(B_XG, sizeof(float) * (size_t)pairs * D, 0);
        float *gu = (float *)moe_buffer(B_GU, sizeof(float) * (size_t)pairs * 2 * I, 0);
        float *h = (float *)moe_buffer(B_H, sizeof(float) * (size_t)pairs * I, 0);
        int32_t *host = (int32_t *)malloc(sizeof(int32_t) * (size_t)(2 * E + 1));
        if (!xg || !gu || !h || !host) {
            free(host);
            moe_fail(y, (size_t)T * D);
            return;
        }
        cudaMemcpy(host, counts, sizeof(int32_t) * (size_t)E, cudaMemcpyDeviceToHost);
        cudaMemsetAsync(counts, 0, sizeof(int32_t) * (size_t)E, glint_cuda_stream());
        if (glint_cuda_check("moe routing")) {
            free(host);
            return;
        }
        int32_t *host_offsets = host + E;
        host_offsets[0] = 0;
        for (int e = 0; e < E; e++) host_offsets[e + 1] = host_offsets[e] + host[e];
        cudaMemcpy(offsets, host_offsets, sizeof(int32_t) * ((size_t)E + 1), cudaMemcpyHostToDevice);
        int32_t *fill = counts + MOE_MAX_EXPERTS;
        cudaMemsetAsync(fill, 0, sizeof(int32_t) * (size_t)E, glint_cuda_stream());
        launch_chained(moe_place_kernel, moe_blocks((size_t)pairs, 256), 256, 0, row_of_pair, pair_of_row, fill,
            offsets, ids, pairs);
        launch_chained(moe_gather_kernel, moe_blocks((size_t)pairs * D, 256), 256, 0, xg, x, pair_of_row, K, D, pairs);
        if (!moe_prefill_grouped(out, gu, h, xg, pairs, D, I, ex, host, host_offsets))
            moe_prefill_each(out, gu, h, xg, pairs, D, I, ex, host, host_offsets);
        free(host);
    }
    launch_chained(moe_combine_kernel, moe_blocks((size_t)T * D, 256), 256, 0, y, out, wts, row_of_pair, K, D, T);
    glint_cuda_check("moe");
}
