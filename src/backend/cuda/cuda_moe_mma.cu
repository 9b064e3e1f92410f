// Routed experts with NVFP4 weights for T <= 64 tokens on tensor cores (mma.sync m16n8k16 F16 -> FP32,
// sm_80+). The one-token FP32 kernels of cuda_matmul.cu spend ~5 instructions per weight (E2M1 decode,
// conversion, scale, FMA) and so stream NVFP4 at about half the card's bandwidth; here the tensor core
// does the products and sums, leaving ~2.5 instructions per weight for the decode.
//
// Exactness: an E2M1 code placed in an f16 (sign, exponent low bits, mantissa top bit) is its value
// times 2^-14; times the E4M3 group scale (an f16, exactly) the product is exact in f16 (at most 6
// significant bits, smallest 2^-15 · 2^-9 = 2^-24, the least f16 subnormal; largest 6·448·2^-14).
// Activations are split x·s = hi + lo in f16 (s: a power of two per token row putting max|x·s| in
// [2^13, 2^14), so nothing overflows; hi + lo keeps ~22 bits), two MMAs per weight fragment; the sums
// are FP32 and the result is scaled by 2^14 · global scale / s. The group scale multiplies each code
// before its MMA: the 4 lanes whose products an MMA sums hold different chunks, so different scales.
//
// Layout: a warp owns 16 weight rows (per matrix) and a range of K; lane (g = lane/4, t = lane%4) takes
// UNROLL consecutive 16-byte chunks (32 codes each) of rows g and g+8 per step, the 4 lanes of a row
// covering 64·UNROLL contiguous bytes. A chunk feeds 8 k16 steps: step j = 2w + s takes the codes (4s,
// 4s+2) and (4s+1, 4s+3) of its word w as the fragment's k = (2t, 2t+1) and (2t+8, 2t+9) (the dot product
// does not care which k is which, as long as x is permuted alike: lane (g, t) reads token g's x at the
// same chunk, stored with each 8 elements in the order 0 2 1 3 4 6 5 7). The C fragment holds (row g |
// g+8, token 2t | 2t+1). Warps splitting K add their partial sums in shared memory in a fixed order, so
// each (row, token) output is computed the same way whatever the number of tokens (the server's batched
// rows match solo rows bitwise).
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdio.h>

#include "backend/cuda/cuda_internal.cuh"

enum { MMA_GU_SPLIT = 4, MMA_DOWN_SPLIT = 2, MMA_TOKENS = 8, MMA_ROWS = 16 };

// rows [rows][K] FP32 (row r at x + r·x_stride) -> split rows of s (glint_moe_split), a block per row.
__global__ void __launch_bounds__(MOE_SPLIT_THREADS)
    mma_split_x_kernel(glint_moe_split s, const float *x, int64_t x_stride, int K) {
    chain_wait();
    moe_split_row(s, blockIdx.x, x + (int64_t)blockIdx.x * x_stride, K);
}

__device__ __forceinline__ void mma_f16(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// A word's 8 E2M1 codes (nibble k at bits 4k) as f16 high bytes, each the E2M1 value times 2^-14 once
// in an f16's high byte (magnitude to byte bits 1-3, i.e. f16 bits 9-11; sign to byte bit 7): even codes
// (byte b = code 2b; 4 instructions) and odd codes (byte b = code 2b+1; 3 instructions). One PRMT with
// a zero register then makes each f16 pair: e2m1_pair_lo -> (bytes 0, 1), e2m1_pair_hi -> (bytes 2, 3).
// (Shifting each pair out of the word separately costs 4 instructions a pair: LOP3 takes one constant.)
__device__ __forceinline__ uint32_t e2m1_even_bytes(uint32_t q) {
    return ((q << 4) & 0x80808080u) | ((q << 1) & 0x0e0e0e0eu);
}
__device__ __forceinline__ uint32_t e2m1_odd_bytes(uint32_t q) {
    return (q & 0x80808080u) | ((q >> 3) & 0x0e0e0e0eu);
}
__device__ __forceinline__ uint32_t e2m1_pair_lo(uint32_t bytes) { return __byte_perm(bytes, 0u, 0x1404); }
__device__ __forceinline__ uint32_t e2m1_pair_hi(uint32_t bytes) { return __byte_perm(bytes, 0u, 0x3424); }

__device__ __forceinline__ uint32_t hmul2_bits(uint32_t a, uint32_t b) {
    const __half2 r = __hmul2(*(const __half2 *)&a, *(const __half2 *)&b);
    return *(const uint32_t *)&r;
}

// One pass of nvfp4_mma_rows (chunks cb + UNROLL·t + u of rows g and g+8, their codes in raw and
// group scales in sc): the products into c[m] (hi) and c_lo[m] (lo, with CHAINS 2; else c[m]).
template <int NW, int UNROLL, bool TAIL, int CHAINS>
__device__ __forceinline__ void nvfp4_mma_pass(const uint4 (&raw)[UNROLL][NW][2], const uint32_t (&sc)[UNROLL][NW][2],
                                               int cb, int c_end, const uint4 *xh, const uint4 *xl, float (&c)[NW][4],
                                               float (&c_lo)[NW][4]) {
    const int t = threadIdx.x & 3;
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
        const int ch = cb + UNROLL * t + u;
        const bool ok = (!TAIL || ch < c_end) && xh;
        uint4 xhi[4], xlo[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            xhi[i] = ok ? __ldg(xh + ch * 4 + i) : make_uint4(0, 0, 0, 0);
            xlo[i] = ok ? __ldg(xl + ch * 4 + i) : make_uint4(0, 0, 0, 0);
        }
        // group scales of rows g, g+8 per matrix as f16 pairs: (group 0, group 1)
        uint32_t sp[NW][2];
#pragma unroll
        for (int m = 0; m < NW; m++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const __half2_raw s2 = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)sc[u][m][h], __NV_E4M3);
                sp[m][h] = (uint32_t)s2.x | (uint32_t)s2.y << 16;
            }
#pragma unroll
        for (int w = 0; w < 4; w++) {  // word w of the chunk: k16 steps 2w (s = 0) and 2w+1 (s = 1)
            const uint32_t *xhw = (const uint32_t *)&xhi[w], *xlw = (const uint32_t *)&xlo[w];
#pragma unroll
            for (int m = 0; m < NW; m++) {
                uint32_t even[2], odd[2], scale[2];  // [row g | g+8]
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const uint32_t word = ((const uint32_t *)&raw[u][m][h])[w];
                    even[h] = e2m1_even_bytes(word), odd[h] = e2m1_odd_bytes(word);
                    scale[h] = w < 2 ? (sp[m][h] & 0xffffu) * 0x10001u : (sp[m][h] >> 16) * 0x10001u;
                }
#pragma unroll
                for (int s = 0; s < 2; s++) {
                    uint32_t a[2][2];  // [row g | g+8][k 2t.. | 2t+8..]: codes (4s, 4s+2) | (4s+1, 4s+3)
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        a[h][0] = hmul2_bits(s ? e2m1_pair_hi(even[h]) : e2m1_pair_lo(even[h]), scale[h]);
                        a[h][1] = hmul2_bits(s ? e2m1_pair_hi(odd[h]) : e2m1_pair_lo(odd[h]), scale[h]);
                    }
                    mma_f16(c[m], a[0][0], a[1][0], a[0][1], a[1][1], xhw[2 * s], xhw[2 * s + 1]);
                    mma_f16(CHAINS == 2 ? c_lo[m] : c[m], a[0][0], a[1][0], a[0][1], a[1][1], xlw[2 * s],
                            xlw[2 * s + 1]);
                }
            }
        }
    }
}

// A warp's ring of two passes' weights in shared memory (nvfp4_mma_rows with STAGED), each lane's
// pieces its own: codes [u][m][h][lane] (16 bytes), group scales [m][h][lane] (UNROLL · 2 bytes).
template <int NW, int UNROLL>
struct nvfp4_stage {
    uint4 raw[UNROLL][NW][2][32];
    uint32_t sc[NW][2][32][UNROLL / 2];
};

// c[m] += rows {g, g+8} of matrix m · token g's x over chunks [c_begin, c_end) (32 codes each).
// rows[m]: row g's codes, scales[m]: its E4M3 group scales; row g+8's are row_step chunks further
// (one offset for all matrices: they have the same rows; it saves registers); xh/xl: token g's split x
// (NULL: no token in this column, zeros; not the first token's x again: those loads cost more than the
// predicate).
// TAIL: the lanes' chunk ranges may end inside a pass (chunks past c_end read as zeros); without it
// every pass is whole and no weight load is predicated (with the one row pointer per matrix, a
// gate/up pass's SASS went from 906 to 819 instructions, down's from 934 to 858).
// CHAINS 2: the lo products add into accumulators of their own, added into c at the end (a pass's
// MMAs otherwise all add into c[m]: one chain of 32 dependent MMAs for gate/up, 64 for down). Four
// chains made the down kernel spill.
// ring (whole passes only; NULL: plain loads): the next pass's weights go global -> shared by
// cp.async while this pass is computed, two passes in flight per warp without their registers
// (an experiment, GLINT_CUDA_MMA_STAGED=1). Each lane reads back only what it copied itself, so
// the wait needs no barrier; in-order issue has a pass's shared reads consumed before its slot is
// refilled two passes later.
template <int NW, int UNROLL, bool TAIL, int CHAINS>
__device__ __forceinline__ void nvfp4_mma_rows(const uint4 *const (&rows)[NW], const uint16_t *const (&scales)[NW],
                                               int row_step, int c_begin, int c_end, const uint4 *xh,
                                               const uint4 *xl, float (&c)[NW][4],
                                               nvfp4_stage<NW, UNROLL> *ring = nullptr) {
    static_assert(CHAINS == 1 || CHAINS == 2, "one or two accumulator chains");
    float c_lo[NW][4];
#pragma unroll
    for (int m = 0; m < NW; m++)
#pragma unroll
        for (int i = 0; i < 4; i++) c_lo[m][i] = 0.0f;
    const int t = threadIdx.x & 3, lane = threadIdx.x & 31;
    if (!TAIL && ring) {
        // pass at chunk cb into ring slot `slot`, one cp.async group
        auto issue = [&](int cb, int slot) {
            asm volatile("" ::: "memory");  // shared reads before the refill stay before it
#pragma unroll
            for (int u = 0; u < UNROLL; u++)
#pragma unroll
                for (int m = 0; m < NW; m++)
#pragma unroll
                    for (int h = 0; h < 2; h++)
                        cp_async16(smem_u32(&ring[slot].raw[u][m][h][lane]),
                                   rows[m] + (cb + UNROLL * t + u + h * row_step), true);
#pragma unroll
            for (int m = 0; m < NW; m++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const uint16_t *src = scales[m] + (cb + UNROLL * t + h * row_step);
                    if (UNROLL == 2) cp_async4(smem_u32(ring[slot].sc[m][h][lane]), src, true);
                    else cp_async8(smem_u32(ring[slot].sc[m][h][lane]), src, true);
                }
            cp_async_commit();
        };
        if (c_begin < c_end) issue(c_begin, 0);
        for (int cb = c_begin, k = 0; cb < c_end; cb += 4 * UNROLL, k++) {
            if (cb + 4 * UNROLL < c_end) issue(cb + 4 * UNROLL, (k + 1) & 1);
            else cp_async_commit();  // an empty group: the wait below counts the same every pass
            cp_async_wait<1>();
            asm volatile("" ::: "memory");  // the reads below stay after the wait
            const nvfp4_stage<NW, UNROLL> &st = ring[k & 1];
            uint4 raw[UNROLL][NW][2];
            uint32_t sc[UNROLL][NW][2];
#pragma unroll
            for (int m = 0; m < NW; m++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
#pragma unroll
                    for (int u = 0; u < UNROLL; u++) {
                        raw[u][m][h] = st.raw[u][m][h][lane];
                        sc[u][m][h] = st.sc[m][h][lane][u / 2] >> (16 * (u % 2)) & 0xffffu;
                    }
                }
            nvfp4_mma_pass<NW, UNROLL, TAIL, CHAINS>(raw, sc, cb, c_end, xh, xl, c, c_lo);
        }
        cp_async_wait<0>();
    } else {
        for (int cb = c_begin; cb < c_end; cb += 4 * UNROLL) {
            uint4 raw[UNROLL][NW][2];
            uint32_t sc[UNROLL][NW][2];
#pragma unroll
            for (int u = 0; u < UNROLL; u++) {
                const int ch = cb + UNROLL * t + u;
                const bool ok = !TAIL || ch < c_end;
#pragma unroll
                for (int m = 0; m < NW; m++)
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        raw[u][m][h] = ok ? __ldg(rows[m] + (ch + h * row_step)) : make_uint4(0, 0, 0, 0);
                        sc[u][m][h] = ok ? __ldg(scales[m] + (ch + h * row_step)) : 0u;
                    }
            }
            nvfp4_mma_pass<NW, UNROLL, TAIL, CHAINS>(raw, sc, cb, c_end, xh, xl, c, c_lo);
        }
    }
    if (CHAINS == 2) {
#pragma unroll
        for (int m = 0; m < NW; m++)
#pragma unroll
            for (int i = 0; i < 4; i++) c[m][i] += c_lo[m][i];
    }
}

// Sums the SPLIT warps' fragments of a block in warp order into warp 0's c (shared memory).
template <int NW, int SPLIT>
__device__ __forceinline__ bool reduce_split(float (&c)[NW][4], float (*part)[NW][4][32]) {
    if constexpr (SPLIT == 1) {
        return true;
    } else {
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
        for (int m = 0; m < NW; m++)
#pragma unroll
            for (int i = 0; i < 4; i++) part[warp][m][i][lane] = c[m][i];
        __syncthreads();
        if (warp) return false;
#pragma unroll
        for (int m = 0; m < NW; m++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float v = part[0][m][i][lane];
                for (int w = 1; w < SPLIT; w++) v += part[w][m][i][lane];
                c[m][i] = v;
            }
        return true;
    }
}

// GATE_UP: h[row, n] = silu(gate_e[n] · x[token(row)]) · (up_e[n] · x[token(row)]) (FP32, [pairs][I]);
// else out[row, n] = down_e[n] · h[row] ([pairs][D]). A block: SPLIT warps over K for 16 rows of one
// active expert (blockIdx.y: the j-th expert that got tokens), tokens in passes of 8. STAGED: each
// warp streams its weights through a ring in shared memory (nvfp4_mma_rows) where they are aligned
// for it (4.5 KB per warp and pass).
template <bool GATE_UP, int SPLIT, int CHAINS, bool STAGED>
__global__ void __launch_bounds__(32 * SPLIT, 16 / SPLIT)
    moe_nvfp4_mma_kernel(float *out, int64_t out_row, glint_moe_split x, const dev_weight *tab, int E,
                         glint_moe_plan plan) {
    chain_wait();
    constexpr int NW = GATE_UP ? 2 : 1, UNROLL = GATE_UP ? 2 : 4;
    __shared__ float part[SPLIT][NW][4][32];
    // the STAGED ring: two passes per warp (16 bytes without it, which the compiler drops)
    __shared__ __align__(16) unsigned char ring_mem[STAGED ? SPLIT * 2 * sizeof(nvfp4_stage<NW, UNROLL>) : 16];
    const int j = blockIdx.y;
    if (j >= *plan.n_active) return;
    const int e = plan.active[j], warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const dev_weight &A = tab[(GATE_UP ? 0 : 2) * E + e];
    const int64_t n0 = (int64_t)blockIdx.x * MMA_ROWS, K = A.cols;
    const int chunks = (int)(K / 32), per = (chunks + SPLIT - 1) / SPLIT, c_begin = warp * per,
              c_end = min(chunks, c_begin + per);
    const bool whole_passes = (c_end - c_begin) % (4 * UNROLL) == 0;  // warp-uniform
    const uint4 *rows[NW];
    const uint16_t *scales[NW];
    float gs[NW];
    // rows past the end re-read the last row; their sums are dropped
    const int64_t r_lo = min(n0 + g, A.rows - 1), r_hi = min(n0 + g + 8, A.rows - 1);
    const int row_step = (int)(r_hi - r_lo) * chunks;  // chunks from row g to row g+8
#pragma unroll
    for (int m = 0; m < NW; m++) {
        const dev_weight &W = m ? tab[E + e] : A;
        gs[m] = W.global_scale * 16384.0f;  // the f16 code placement's 2^-14
        rows[m] = (const uint4 *)((const uint8_t *)W.data + (W.row0 + r_lo) * (K / 2));
        scales[m] = (const uint16_t *)((const uint8_t *)W.scales + (W.row0 + r_lo) * (K / 16));
    }
    // the ring's scale copies (UNROLL · 2 bytes) need that alignment: the rows' bases, the step to row g+8
    // and the warp's first chunk, in every lane (the MMAs need the whole warp on one path; a last row
    // tile's clamped rows differ per lane)
    bool ring_aligned = STAGED && row_step % UNROLL == 0 && c_begin % UNROLL == 0;
#pragma unroll
    for (int m = 0; m < NW; m++) ring_aligned = ring_aligned && (uintptr_t)scales[m] % (2 * UNROLL) == 0;
    if (STAGED) ring_aligned = __all_sync(0xffffffffu, ring_aligned);
    nvfp4_stage<NW, UNROLL> *const ring = ring_aligned ? (nvfp4_stage<NW, UNROLL> *)ring_mem + 2 * warp : nullptr;
    const int first = plan.offsets[e], count = plan.offsets[e + 1] - first;
    for (int p0 = 0; p0 < count; p0 += MMA_TOKENS) {
        const int nt = min(MMA_TOKENS, count - p0);
        // this lane's token column g: its x row (the token for gate/up, the pair row for down)
        const uint4 *xh = NULL, *xl = NULL;
        if (g < nt) {
            const int row = first + p0 + g;
            const int64_t xr = GATE_UP ? plan.pair_of_row[row] / plan.top_k : row;
            xh = (const uint4 *)(x.hi + xr * K), xl = (const uint4 *)(x.lo + xr * K);
        }
        // the output scales of this lane's token columns 2t and 2t + 1 (warp 0 writes), loaded before the
        // weights' passes so that their two dependent loads are not waited for after them
        float inv[2] = {0.0f, 0.0f};
        if (warp == 0)
#pragma unroll
            for (int k = 0; k < 2; k++) {
                const int tok = 2 * t + k;
                if (tok >= nt) continue;
                const int row = first + p0 + tok;
                inv[k] = 1.0f / x.scale[GATE_UP ? plan.pair_of_row[row] / plan.top_k : row];
            }
        float c[NW][4];
#pragma unroll
        for (int m = 0; m < NW; m++)
#pragma unroll
            for (int i = 0; i < 4; i++) c[m][i] = 0.0f;
        if (whole_passes)
            nvfp4_mma_rows<NW, UNROLL, false, CHAINS>(rows, scales, row_step, c_begin, c_end, xh, xl, c, ring);
        else
            nvfp4_mma_rows<NW, UNROLL, true, CHAINS>(rows, scales, row_step, c_begin, c_end, xh, xl, c);
        if (reduce_split<NW, SPLIT>(c, part)) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int tok = 2 * t + (i & 1);
                const int64_t n = n0 + g + 8 * (i >> 1);
                if (tok >= nt || n >= A.rows) continue;
                const int row = first + p0 + tok;
                const float a = c[0][i] * gs[0] * inv[i & 1];
                if (GATE_UP) {
                    const float b = c[NW - 1][i] * gs[NW - 1] * inv[i & 1];
                    out[(int64_t)row * out_row + n] = a / (1.0f + expf(-a)) * b;
                } else {
                    out[(int64_t)row * out_row + n] = a;
                }
            }
        }
        if (SPLIT > 1) __syncthreads();  // part[] is reused by the next pass
    }
}

static struct {  // grow-only, per device and stream slot
    __half *x;      // split token rows, then split SwiGLU rows (hi, lo)
    float *h;       // [pairs][I] SwiGLU outputs
    float *scales;  // [T] token rows, then [pairs] h rows
    size_t x_bytes, h_bytes, scales_bytes;
} mma_buffers[GLINT_CUDA_MAX_DEVICES][GLINT_CUDA_STREAMS];

static int mma_decode_enabled(void) {
    // read once (a function-local static, also when ranks' threads race); 0: the FP32 kernels of cuda_matmul.cu
    static const int on = glint_cuda_switch("GLINT_CUDA_MMA_DECODE", 1);
    return on;
}

static bool mma_takes(int D, int I) {
    return mma_decode_enabled() && D % 32 == 0 && I % 32 == 0 && D <= MOE_SPLIT_THREADS * MOE_SPLIT_PER_THREAD &&
           I <= MOE_SPLIT_THREADS * MOE_SPLIT_PER_THREAD;
}

// The slot's buffers for T token rows and T·top_k SwiGLU rows; false with the error set.
static bool mma_grow(int T, int D, int I, int top_k) {
    const int pairs = T * top_k;
    auto &buf = mma_buffers[glint_cuda_device()][glint_cuda_stream_slot()];
    const size_t split_halves = 2 * ((size_t)T * D > (size_t)pairs * I ? (size_t)T * D : (size_t)pairs * I);
    return !glint_cuda_grow((void **)&buf.x, &buf.x_bytes, sizeof(__half) * split_halves, "moe") &&
           !glint_cuda_grow((void **)&buf.h, &buf.h_bytes, sizeof(float) * (size_t)pairs * I, "moe") &&
           !glint_cuda_grow((void **)&buf.scales, &buf.scales_bytes, sizeof(float) * (size_t)(T > pairs ? T : pairs),
                            "moe");
}

glint_moe_split glint_cuda_moe_mma_split(int T, int D, int I, int top_k, bool nvfp4_experts) {
    if (!nvfp4_experts || !mma_takes(D, I) || !mma_grow(T, D, I, top_k)) return glint_moe_split{};
    auto &buf = mma_buffers[glint_cuda_device()][glint_cuda_stream_slot()];
    return glint_moe_split{buf.x, buf.x + (size_t)T * D, buf.scales};
}

// Experiments, the defaults when unset: GLINT_CUDA_MMA_CHAINS="G,D", accumulator chains of the gate/up
// and down kernels (nvfp4_mma_rows' CHAINS), 1 or 2 each (default 1,1); GLINT_CUDA_MMA_SPLIT="G,D",
// warps splitting K per block (fewer: more passes per warp, half the warps), gate/up 4 or 2, down 2 or
// 1 (default 4,2). GLINT_CUDA_MMA_STAGED=1: the weights through a ring in shared memory (the kernel's
// STAGED; default off). Two chains spill a few bytes with split 1 (down) and with STAGED (128 registers).
struct mma_setting {
    int gu_chains, down_chains, gu_split, down_split, staged;
};
// "A,B" from the environment variable name into *a, *b when both are among the allowed pairs' values.
static void read_pair(const char *name, int *a, int *b, int a1, int a2, int b1, int b2) {
    const char *v = getenv(name);
    int x, y;
    if (!v) return;
    if (sscanf(v, "%d,%d", &x, &y) == 2 && (x == a1 || x == a2) && (y == b1 || y == b2)) {
        *a = x, *b = y;
        return;
    }
    fprintf(stderr, "glint: %s='%s' is not \"G,D\" with G %d or %d and D %d or %d; using %d,%d\n", name, v, a1, a2,
            b1, b2, *a, *b);
}
static mma_setting mma_setting_now(void) {
    static const mma_setting setting = [] {
        mma_setting st = {1, 1, MMA_GU_SPLIT, MMA_DOWN_SPLIT, glint_cuda_switch("GLINT_CUDA_MMA_STAGED", 0)};
        read_pair("GLINT_CUDA_MMA_CHAINS", &st.gu_chains, &st.down_chains, 1, 2, 1, 2);
        read_pair("GLINT_CUDA_MMA_SPLIT", &st.gu_split, &st.down_split, MMA_GU_SPLIT, 2, MMA_DOWN_SPLIT, 1);
        return st;
    }();
    return setting;
}

template <bool GATE_UP, int SPLIT>
static void launch_mma(int chains, bool staged, int n_rows, int slots, float *out, int64_t out_row,
                       const glint_moe_split &x, const dev_weight *tab, int E, const glint_moe_plan &plan) {
    auto kernel = staged ? (chains == 2 ? moe_nvfp4_mma_kernel<GATE_UP, SPLIT, 2, true>
                                        : moe_nvfp4_mma_kernel<GATE_UP, SPLIT, 1, true>)
                         : (chains == 2 ? moe_nvfp4_mma_kernel<GATE_UP, SPLIT, 2, false>
                                        : moe_nvfp4_mma_kernel<GATE_UP, SPLIT, 1, false>);
    launch_chained(kernel, dim3((unsigned)((n_rows + MMA_ROWS - 1) / MMA_ROWS), (unsigned)slots), 32 * SPLIT, 0, out,
        out_row, x, tab, E, plan);
}

int glint_cuda_moe_nvfp4_mma(float *out, const float *x, int T, int D, int I, const dev_weight *tab, int E, int slots,
                             const glint_moe_plan &plan, const glint_moe_split *x_split) {
    if (!mma_takes(D, I)) return 0;
    const int pairs = T * plan.top_k;
    if (!mma_grow(T, D, I, plan.top_k)) return 1;  // the error is set; the step's output is poisoned
    auto &buf = mma_buffers[glint_cuda_device()][glint_cuda_stream_slot()];
    const glint_moe_split xs = x_split ? *x_split : glint_moe_split{buf.x, buf.x + (size_t)T * D, buf.scales};
    if (!x_split) launch_chained(mma_split_x_kernel, T, MOE_SPLIT_THREADS, 0, xs, x, D, D);
    const mma_setting st = mma_setting_now();
    if (st.gu_split == MMA_GU_SPLIT)
        launch_mma<true, MMA_GU_SPLIT>(st.gu_chains, st.staged, I, slots, buf.h, I, xs, tab, E, plan);
    else
        launch_mma<true, 2>(st.gu_chains, st.staged, I, slots, buf.h, I, xs, tab, E, plan);
    const glint_moe_split hs = {buf.x, buf.x + (size_t)pairs * I, buf.scales};
    launch_chained(mma_split_x_kernel, pairs, MOE_SPLIT_THREADS, 0, hs, buf.h, I, I);
    if (st.down_split == MMA_DOWN_SPLIT)
        launch_mma<false, MMA_DOWN_SPLIT>(st.down_chains, st.staged, D, slots, out, D, hs, tab, E, plan);
    else
        launch_mma<false, 1>(st.down_chains, st.staged, D, slots, out, D, hs, tab, E, plan);
    return 1;
}
