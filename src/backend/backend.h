// The backend contract: the ops the GLM-MoE-DSA forward pass needs, on activations in the backend's
// memory (float32 on the CPU) and weights kept in their checkpoint format. The model (model/glm.c) is
// written once against this table; cpu/ is the reference implementation, CUDA implements the same
// table in its own issue. Every op is tested against the CPU reference on both backends.
#ifndef GLINT_BACKEND_H
#define GLINT_BACKEND_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sampling.h"
#include "io/safetensors.h"

// How a weight is stored (spec/FORMATS.md). Every format is used as stored and dequantized
// inside the kernels.
typedef enum {
    GLINT_WFMT_DENSE,      // data: dtype [rows, cols] (F32, BF16, F16; F8_E4M3 without scales)
    GLINT_WFMT_NVFP4,      // data: U8 [rows, cols/2], E2M1 codes, even column in the low nibble;
                           // scales: F8_E4M3 [rows, cols/16]; w = e2m1 · scale · global_scale
    GLINT_WFMT_FP8_BLOCK,  // data: F8_E4M3 [rows, cols]; scales: F32 [ceil(rows/block), ceil(cols/block)]
                           // (weight_scale_inv); w = fp8 · scale of its block
    GLINT_WFMT_GPTQ_INT4,  // data: I32 qweight [cols/8, rows], packed along cols (K), low nibble first;
                           // zeros: I32 qzeros [groups, rows/8]; scales: F16/BF16 [groups, rows];
                           // column k is in group k / block (desc_act false); w = scale · (q - (zero + 1))
} glint_weight_format;

// A weight as stored in the checkpoint: 2-D [rows, cols] (out, in) or 1-D [rows].
typedef struct {
    glint_dtype dtype;  // DENSE: the element type
    int64_t rows, cols;
    const void *data;
    const char *name;
    // Quantized formats (zero for DENSE):
    glint_weight_format format;
    const void *scales;
    glint_dtype scales_dtype;
    float global_scale;     // NVFP4: weight_scale_2 (compressed-tensors' 1/global_scale)
    int block;              // FP8_BLOCK: block edge (128); GPTQ: group size
    const void *zeros;      // GPTQ qzeros
} glint_weight;

// Routing parameters of one MoE layer (spec/GLM5.md §2.8).
typedef struct {
    int n_experts, top_k, n_group, topk_group, norm_topk_prob;
    float routed_scaling_factor;
} glint_moe_routing;

// One MoE layer's routed experts: E x {gate [I, D], up [I, D], down [D, I]}.
typedef struct {
    const glint_weight *gate, *up, *down;  // arrays of n_experts
    int n_experts;
} glint_experts;

// Where the cache rows of a batch live (paged KV cache). A cache is a pool of rows ([rows, width]
// per layer); token row t of a batch belongs to batch sequence row_seq[t], and position p of batch
// sequence s is pool row page_table[s·pages_stride + p / page_size]·page_size + p % page_size.
// One sequence with a contiguous cache is page_size = its capacity, page_table = {0}.
typedef struct {
    const int32_t *row_seq;     // backend memory [T]
    const int32_t *page_table;  // backend memory [batch sequences, pages_stride]
    int pages_stride, page_size;
    int max_position;  // the largest pos[t] of the batch (host value: sizes grids without a readback)
} glint_cache_map;

// The pool row of position p of batch sequence seq (for maps in host memory, e.g. the CPU's).
static inline int64_t glint_cache_row(const glint_cache_map *map, int seq, int p) {
    return (int64_t)map->page_table[(size_t)seq * map->pages_stride + p / map->page_size] * map->page_size +
           p % map->page_size;
}

// Tensor parallelism (docs/multi-gpu-plan.md): a model split over n ranks, each rank a backend instance
// of its own driven by a host thread of its own. The ranks' backends meet through a link the model
// makes: a barrier and a slot per rank for what a backend publishes to the others.
enum { GLINT_MAX_TP = 8 };
enum { GLINT_BRANCHES = 3 };  // side lines of glint_backend.branch
enum { GLINT_MAX_PREPARE_THREADS = 32 };  // glint_backend.prepare_threads at most
typedef struct {
    int n_ranks;
    pthread_barrier_t barrier;
    void *slots[GLINT_MAX_TP];  // backend use: slot r is written by rank r before a wait, read after
    int failed;                 // set by a rank before a wait when it cannot go on (the others see it after)
} glint_tp_link;
// Blocks until every rank of the link has called it.
void glint_tp_link_wait(glint_tp_link *link);

typedef struct glint_backend glint_backend;
struct glint_backend {
    const char *name;
    int n_threads;
    // Memory for activations and caches (zeroed). NULL + error when out of memory.
    void *(*alloc)(glint_backend *be, size_t bytes, const char *what);
    void (*free)(glint_backend *be, void *ptr);
    // Copies n floats from backend memory to the host.
    void (*download)(glint_backend *be, float *host, const float *src, size_t n);
    // Copies bytes from the host into backend memory.
    void (*upload)(glint_backend *be, void *dst, const void *host, size_t bytes);
    // Makes a weight usable by this backend's kernels (e.g. copies data/scales/zeros to device memory
    // and points the weight at the copies). The CPU uses weights where they are (mmapped). 0 or -1.
    int (*prepare_weight)(glint_backend *be, glint_weight *w);
    // prepare_weight may run on this many threads at once (0 or 1: one at a time); the model uses them
    // to read the checkpoint and copy it to the device in parallel.
    int prepare_threads;
    // Memory bandwidth measured now: streaming copy (bytes read + written per second) and read.
    int (*measure_bandwidth)(glint_backend *be, double *copy_bytes_per_s, double *read_bytes_per_s);
    // Kernel ISA / device name, for reports.
    const char *(*describe)(glint_backend *be);
    // Optional: free and total memory of the device (device backends). 0, or -1 with the error set.
    int (*memory_info)(glint_backend *be, size_t *free_bytes, size_t *total_bytes);
    // Optional: frees an instance made for its holder (glint_backend_cpu_rank); NULL for instances
    // that live as long as the process.
    void (*release)(glint_backend *be);

    // x[T, D] <- rows of the embedding table [V, D]; ids are in host memory. Every other pointer
    // argument of the ops below is backend memory (including pos and sel/n_sel), except rope's
    // inv_freq table, a small host array passed by value into the kernels.
    void (*embed)(glint_backend *be, float *x, const glint_weight *table, const int32_t *ids, int T);
    // y[T, N] = x[T, K] · W^T for W [N, K]; x rows are x_stride floats apart, y rows y_stride apart.
    void (*matmul)(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                   const glint_weight *W);
    // y[T, D] = w ⊙ x / sqrt(mean(x²) + eps); rows stride floats apart (in place allowed).
    void (*rmsnorm)(glint_backend *be, float *y, const float *x, int stride, int T, int D, const glint_weight *w,
                    float eps);
    // y[T, D] = (x - mean) / sqrt(var + eps) ⊙ w + b (in place allowed)
    void (*layernorm)(glint_backend *be, float *y, const float *x, int stride, int T, int D, const glint_weight *w,
                      const glint_weight *b, float eps);
    // Interleaved (pair) RoPE on x[T, n_heads, head_stride] at offset `offset` of each head, dims rope_dim:
    // pair (2i, 2i+1) rotated by angle pos[t] * inv_freq[i]; cos and sin are multiplied by attn_factor.
    void (*rope)(glint_backend *be, float *x, int T, int n_heads, int head_stride, int row_stride, int offset,
                 int rope_dim, const int32_t *pos, const float *inv_freq, float attn_factor);
    // y[T, I] = silu(g) ⊙ u, g and u rows stride floats apart
    void (*silu_mul)(glint_backend *be, float *y, const float *g, const float *u, int stride, int T, int I);
    // y[n] += x[n]
    void (*add)(glint_backend *be, float *y, const float *x, size_t n);
    // y[T, n] <- x[T, n], rows y_stride and x_stride floats apart (e.g. new latents into the cache).
    void (*copy_rows)(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T, int n);

    // Cache write through the page table: x[t, 0..n) -> the pool row of (row_seq[t], pos[t]) of pool
    // [rows, pool_stride].
    void (*write_cache)(glint_backend *be, float *pool, int pool_stride, const float *x, int x_stride, int T, int n,
                        const int32_t *pos, const glint_cache_map *map);
    // DSA lightning indexer (spec §2.5-2.6): for each query row s (absolute position pos[s]) scores
    // every cached key t <= pos[s] of its sequence (k_pool, rows found through map):
    // I = Σ_h w[s,h]·weight_scale · relu(q[s,h]·k[t] · scale), and writes the POOL ROWS of the
    // top-min(topk, pos[s]+1) positions (ties: lower position first) to sel[s, 0..n_sel[s]), in
    // ascending position order, so the result does not depend on the page layout.
    void (*indexer_select)(glint_backend *be, int32_t *sel, int32_t *n_sel, const float *q, const float *w,
                           const float *k_pool, int T, const int32_t *pos, const glint_cache_map *map, int n_heads,
                           int head_dim, int topk, float scale, float weight_scale);
    // Absorbed MLA (spec §2.4). q_lat[T, H, C] = W_UK[h]^T · q_nope, with q_nope the first Dn of each
    // head of q [T, H, q_head_stride] and W_UK[h] rows [h·(Dn+Dv), h·(Dn+Dv)+Dn) of kv_b [H·(Dn+Dv), C].
    void (*mla_absorb_q)(glint_backend *be, float *q_lat, const float *q, int T, int H, int q_head_stride, int Dn,
                         int Dv, const glint_weight *kv_b);
    // o_lat[T, H, C] = Σ_{t∈sel[s]} softmax(scale·(q_lat·c_t + q_pe·kpe_t)) · c_t, with q_pe at offset
    // pe_offset of each q head and the pools latent [rows, C], kpe [rows, Dr]; sel holds pool rows.
    void (*mla_attend)(glint_backend *be, float *o_lat, const float *q_lat, const float *q, int q_head_stride,
                       int pe_offset, const float *latent_cache, const float *kpe_cache, const int32_t *sel,
                       const int32_t *n_sel, int sel_stride, int T, int H, int C, int Dr, float scale);
    // o[T, H, Dv] = W_UV[h] · o_lat[t, h] with W_UV[h] rows [h·(Dn+Dv)+Dn, (h+1)·(Dn+Dv)) of kv_b.
    void (*mla_up_v)(glint_backend *be, float *o, const float *o_lat, int T, int H, int C, int Dn, int Dv,
                     const glint_weight *kv_b);
    // Routed experts of one MoE layer: router (sigmoid + bias, groups, top-k, renormalize, scale) and
    // y[T, D] = Σ_k w_k · down_e(silu(gate_e x) ⊙ up_e x). Shared experts are not included.
    void (*moe)(glint_backend *be, float *y, const float *x, int T, int D, int I, const glint_weight *router,
                const glint_weight *bias, const glint_moe_routing *routing, const glint_experts *experts);
    // ids (host memory) [rows] = glint_argmax of each row of logits [rows, n] (backend memory): greedy
    // decoding moves token ids, not logits, off the device. values (host, optional): the logit each id
    // names (how ranks holding slices of the vocabulary combine their answers).
    void (*argmax)(glint_backend *be, int32_t *ids, float *values, const float *logits, int rows, int n);
    // Optional: logits[edits[i].token] (a row [n] in backend memory) = glint_logit_edit_apply(edits + i,
    // that logit) for the n_edits entries (host memory, distinct tokens < n), bit for bit: penalties,
    // logit bias and held-back stop tokens applied where the logits are, before argmax or sample.
    // 0, or -1 with the error set (the row is then not to be used).
    int (*edit_logits)(glint_backend *be, float *logits, int n, const glint_logit_edit *edits, int n_edits);
    // Optional: ids (host memory) [rows] = the token common/sampling.h's glint_sample_draw gives for
    // each row of logits [rows, n] (backend memory) with the row's rules params[r] and uniform
    // uniforms[r] (host memory), bit for bit; -1 for a row the backend declines (the caller then
    // draws it on the host). Sampled decoding then moves token ids, not logits, off the device.
    void (*sample)(glint_backend *be, int32_t *ids, const float *logits, int rows, int n,
                   const glint_sample_params *params, const double *uniforms);
    // Optional (NULL: the model makes host data and prepare_weight copies it): makes w's storage in
    // backend memory, filled from seed, for synthetic benchmarks of the real shapes. rows, cols,
    // format (DENSE BF16/F16/F32, or NVFP4) and name are set by the caller; values uniform in
    // [lo, hi] (NVFP4: random E2M1 codes, block scales making them span about ±max(|lo|, |hi|)).
    // prepare_weight leaves such a weight where it is.
    int (*synthesize)(glint_backend *be, glint_weight *w, uint64_t seed, float lo, float hi);
    // Optional (NULL: the ops are called every step), for replaying a decode step's layer stack
    // (CUDA graphs). The model calls graph_begin(key) before the stack's ops and graph_end after;
    // key stands for everything the ops' arguments hold (sizes, buffer addresses, which layers),
    // so equal keys make equal op sequences. graph_begin: 1 = the backend has this key's ops
    // recorded: the model skips them and graph_end replays them; 0 = the model calls the ops (the
    // backend runs them, or records them and graph_end runs the record). Every pointer argument of
    // the ops must then stay valid and hold the step's inputs before graph_begin (uploads go first).
    // graph_end: 0, or -1 when recording failed and nothing ran: the model calls the ops again
    // without graph_begin.
    int (*graph_begin)(glint_backend *be, uint64_t key);
    int (*graph_end)(glint_backend *be);
    // Optional fusions (NULL: the model calls the ops they stand for; results must be what those
    // give). add_rmsnorm: a += b when b is given, x += a, then xn = rmsnorm(x) with w when xn is given
    // (rows D apart).
    void (*add_rmsnorm)(glint_backend *be, float *x, float *a, const float *b, float *xn, int T, int D,
                        const glint_weight *w, float eps);
    // norm_rope_cache: per row t of x [T, width] (rows x_stride apart): x[t, 0..n_norm) normalized in
    // place (rmsnorm with w, or layernorm with w and b when b is given), then the RoPE op on
    // x[t, rope_offset .. + rope_dim) (one head), then x[t, 0..split) written to the cache rows of
    // pool_a (stride split) and, when pool_b is given, x[t, split..width) to pool_b (stride width - split).
    void (*norm_rope_cache)(glint_backend *be, float *x, int x_stride, int T, int n_norm, const glint_weight *w,
                            const glint_weight *b, float eps, int rope_offset, int rope_dim, const int32_t *pos,
                            const float *inv_freq, float attn_factor, float *pool_a, int split, float *pool_b,
                            int width, const glint_cache_map *map);
    // Optional (NULL: every op runs after the one before): ops that do not depend on each other
    // overlap. After branch(be, k) with k in 1..GLINT_BRANCHES, the ops run on side line k, after
    // the main line's ops issued before the call and the line's own earlier ops (not the other side
    // lines'); branch(be, 0) goes back to the main line, whose ops do not wait for the side lines
    // until join(be), after which they wait for everything issued before.
    // Ops of different lines must not write what the other reads before the join; the model joins
    // before a layer's results are used, and always before graph_end or a download.
    void (*branch)(glint_backend *be, int k);
    void (*join)(glint_backend *be);
    // Optional with branch: the current line's later ops also wait for the ops side line k (1..
    // GLINT_BRANCHES) was given up to the last time it was left.
    void (*branch_wait)(glint_backend *be, int k);
    // Optional: y[T, I] = silu(x · gate^T) ⊙ (x · up^T) (rows y_stride / x_stride floats apart), the same
    // values as two matmuls and silu_mul up to the order of the FP32 sums. Returns 0 without doing
    // anything when it does not cover the case (the model then calls those ops).
    int (*swiglu_matmul)(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                         const glint_weight *gate, const glint_weight *up);
    // Optional: y = x · W^T (as matmul) and then rope on y (row_stride y_stride; the other arguments as
    // rope's), the same bits as the two ops in turn, one step shorter where they are chained. Returns 0
    // without doing anything when it does not cover the case (the model then calls both).
    int (*matmul_rope)(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                       const glint_weight *W, int n_heads, int head_stride, int offset, int rope_dim,
                       const int32_t *pos, const float *inv_freq, float attn_factor);

    // Tensor parallelism (optional: NULL means one rank only). tp_connect is called once by every rank
    // on its own thread, all at the same time, before any all_reduce_sum: this backend becomes rank
    // `rank` of link->n_ranks. 0, or -1 with the error set; every rank passes the same waits on the link
    // whether it failed or not, so no rank is left waiting.
    int (*tp_connect)(glint_backend *be, glint_tp_link *link, int rank);
    // Called by every rank on its own thread, all at the same time, when the model is freed: releases
    // what tp_connect made (the link is freed after).
    void (*tp_disconnect)(glint_backend *be);
    // x[n] (backend memory) <- the sum over the ranks of their x[n], added in rank order so that every
    // rank gets the same bits. Every rank calls it with the same n, at the same point of the same ops.
    void (*all_reduce_sum)(glint_backend *be, float *x, size_t n);

};

glint_backend *glint_backend_cpu(int n_threads);
// A new CPU backend instance for a tensor-parallel rank, with tp_connect and all_reduce_sum; its holder
// frees it with release. NULL + error when out of memory.
glint_backend *glint_backend_cpu_rank(int n_threads);
enum { GLINT_MAX_ATTENTION_SPLITS = 1024 };
#ifdef GLINT_HAVE_CUDA
// The CUDA backend on device `device` (backend/cuda/); NULL with the error set if unavailable. One
// instance per device. The calling thread is bound to the device: for tensor parallelism each rank's
// thread calls this for its own device and runs every op of that rank; a single-device backend may
// be used from any thread.
glint_backend *glint_backend_cuda(int device);
// Free and total memory of the device the CUDA backend runs on. 0, or -1 with the error set.
int glint_cuda_memory_info(size_t *free_bytes, size_t *total_bytes);
// CUDA devices this machine has (0 without a driver or a device).
int glint_cuda_device_count(void);
// Key chunks per query of the CUDA decode attention (sglang's --triton-attention-num-kv-splits):
// 1..GLINT_MAX_ATTENTION_SPLITS, or 0 (the default) to choose from the shape and the card. For the
// whole process; set before the first forward pass.
void glint_cuda_set_attention_splits(int splits);
#endif
// Reads a float from a weight of any float dtype (host-visible weights only).
float glint_weight_get(const glint_weight *w, int64_t index);

#endif
