// CPU reference backend: FP32 activations and accumulation, OpenMP across cores.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "common/util.h"

float glint_weight_get(const glint_weight *w, int64_t i) {
    switch (w->dtype) {
    case GLINT_DTYPE_F32: return ((const float *)w->data)[i];
    case GLINT_DTYPE_BF16: return glint_bf16_to_f32(((const uint16_t *)w->data)[i]);
    case GLINT_DTYPE_F16: return glint_f16_to_f32(((const uint16_t *)w->data)[i]);
    case GLINT_DTYPE_F8_E4M3: return glint_fp8e4m3_to_f32(((const uint8_t *)w->data)[i]);
    default: return NAN;
    }
}

static void *cpu_alloc(glint_backend *be, size_t bytes, const char *what) {
    (void)be;
    // calloc: large blocks come zeroed from mmap and are only backed by memory once touched,
    // so a KV cache sized for the full context costs what is used.
    return glint_calloc(1, bytes, what);
}

static void cpu_free(glint_backend *be, void *p) {
    (void)be;
    free(p);
}

static void cpu_download(glint_backend *be, float *host, const float *src, size_t n) {
    (void)be;
    if (host != src) memcpy(host, src, n * sizeof *host);
}

static void cpu_upload(glint_backend *be, void *dst, const void *host, size_t bytes) {
    (void)be;
    if (dst != host) memcpy(dst, host, bytes);
}

static int cpu_prepare_weight(glint_backend *be, glint_weight *w) {
    (void)be, (void)w;
    return 0;
}

static int cpu_measure_bandwidth(glint_backend *be, double *copy, double *read) {
    return glint_cpu_measure_bandwidth(be->n_threads, copy, read);
}

static const char *cpu_describe(glint_backend *be) {
    (void)be;
    return glint_cpu_isa();
}

static void cpu_embed(glint_backend *be, float *x, const glint_weight *table, const int32_t *ids, int T) {
    (void)be;
    const int64_t D = table->cols;
    for (int t = 0; t < T; t++) glint_cpu_weight_row_f32(table, ids[t], x + (size_t)t * D);
}

static void cpu_rmsnorm(glint_backend *be, float *y, const float *x, int stride, int T, int D, const glint_weight *w,
                        float eps) {
    (void)be;
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * stride;
        float *yr = y + (size_t)t * stride;
        float ss = 0;
        for (int d = 0; d < D; d++) ss += xr[d] * xr[d];
        float inv = 1.0f / sqrtf(ss / (float)D + eps);
        for (int d = 0; d < D; d++) yr[d] = glint_weight_get(w, d) * (xr[d] * inv);
    }
}

static void cpu_layernorm(glint_backend *be, float *y, const float *x, int stride, int T, int D,
                          const glint_weight *w, const glint_weight *b, float eps) {
    (void)be;
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * stride;
        float *yr = y + (size_t)t * stride;
        float mean = 0, var = 0;
        for (int d = 0; d < D; d++) mean += xr[d];
        mean /= (float)D;
        for (int d = 0; d < D; d++) var += (xr[d] - mean) * (xr[d] - mean);
        float inv = 1.0f / sqrtf(var / (float)D + eps);
        for (int d = 0; d < D; d++) yr[d] = (xr[d] - mean) * inv * glint_weight_get(w, d) + glint_weight_get(b, d);
    }
}

static void cpu_rope(glint_backend *be, float *x, int T, int n_heads, int head_stride, int row_stride, int offset,
                     int rope_dim, const int32_t *pos, const float *inv_freq, float attn_factor) {
    (void)be;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < rope_dim / 2; i++) {
            // fp32 angle as transformers forms it (inv_freq · position in float32)
            float angle = inv_freq[i] * (float)pos[t];
            float c = cosf(angle) * attn_factor, s = sinf(angle) * attn_factor;
            for (int h = 0; h < n_heads; h++) {
                float *p = x + (size_t)t * row_stride + (size_t)h * head_stride + offset + 2 * i;
                float a = p[0], b = p[1];
                p[0] = a * c - b * s;
                p[1] = b * c + a * s;
            }
        }
}

static void cpu_silu_mul(glint_backend *be, float *y, const float *g, const float *u, int stride, int T, int I) {
    (void)be;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < I; i++) {
            float gv = g[(size_t)t * stride + i];
            y[(size_t)t * I + i] = gv / (1.0f + expf(-gv)) * u[(size_t)t * stride + i];
        }
}

static void cpu_add(glint_backend *be, float *y, const float *x, size_t n) {
    (void)be;
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_copy_rows(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T, int n) {
    (void)be;
    for (int t = 0; t < T; t++) memcpy(y + (size_t)t * y_stride, x + (size_t)t * x_stride, (size_t)n * sizeof *y);
}

typedef struct {
    float score;
    int32_t index;
} scored;

// Total order: higher score first, then lower index — deterministic top-k under ties.
static int ranks_before(const scored *a, const scored *b) {
    return a->score > b->score || (a->score == b->score && a->index < b->index);
}

// Moves the k best entries of v[0..n) to the front (any order), quickselect.
static void select_top(scored *v, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        scored pivot = v[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (ranks_before(&v[i], &pivot)) i++;
            while (ranks_before(&pivot, &v[j])) j--;
            if (i <= j) {
                scored tmp = v[i];
                v[i] = v[j];
                v[j] = tmp;
                i++, j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static void cpu_write_cache(glint_backend *be, float *pool, int pool_stride, const float *x, int x_stride, int T,
                            int n, const int32_t *pos, const glint_cache_map *map) {
    (void)be;
    for (int t = 0; t < T; t++)
        memcpy(pool + (size_t)glint_cache_row(map, map->row_seq[t], pos[t]) * pool_stride, x + (size_t)t * x_stride,
               (size_t)n * sizeof *pool);
}

static void cpu_indexer_select(glint_backend *be, int32_t *sel, int32_t *n_sel, const float *q, const float *w,
                               const float *k_pool, int T, const int32_t *pos, const glint_cache_map *map,
                               int n_heads, int head_dim, int topk, float scale, float weight_scale) {
    const int max_visible = map->max_position + 1;
    scored *buf = NULL;
    uint8_t *chosen = NULL;
    for (int s = 0; s < T; s++) {
        const int visible = pos[s] + 1, seq = map->row_seq[s];
        int32_t *out = sel + (size_t)s * topk;
        if (visible <= topk) {  // every visible key is selected; scores cannot matter
            for (int t = 0; t < visible; t++) out[t] = (int32_t)glint_cache_row(map, seq, t);
            n_sel[s] = visible;
            continue;
        }
        if (!buf && (!(buf = malloc((size_t)max_visible * sizeof *buf)) || !(chosen = malloc((size_t)max_visible)))) {
            n_sel[s] = 0;  // out of memory: attend to nothing rather than crash
            free(buf), buf = NULL;
            continue;
        }
        const float *qs = q + (size_t)s * n_heads * head_dim, *ws = w + (size_t)s * n_heads;
        // Threads only pay off once there is real work (waking them costs microseconds).
        int threads = (double)visible * n_heads * head_dim > 2e5 ? be->n_threads : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int t = 0; t < visible; t++) {
            const float *kt = k_pool + (size_t)glint_cache_row(map, seq, t) * head_dim;
            float total = 0;
            for (int h = 0; h < n_heads; h++) {
                float dot = glint_cpu_dot_f32(qs + (size_t)h * head_dim, kt, head_dim) * scale;
                total += ws[h] * weight_scale * (dot > 0 ? dot : 0);
            }
            buf[t].score = total;
            buf[t].index = t;
        }
        select_top(buf, visible, topk);
        memset(chosen, 0, (size_t)visible);
        for (int i = 0; i < topk; i++) chosen[buf[i].index] = 1;
        for (int t = 0, i = 0; t < visible; t++)
            if (chosen[t]) out[i++] = (int32_t)glint_cache_row(map, seq, t);
        n_sel[s] = topk;
    }
    free(buf);
    free(chosen);
}

static void cpu_mla_absorb_q(glint_backend *be, float *q_lat, const float *q, int T, int H, int q_head_stride,
                             int Dn, int Dv, const glint_weight *kv_b) {
    const int C = (int)kv_b->cols;
    const size_t row_bytes = (size_t)C * glint_dtype_size(kv_b->dtype);
    memset(q_lat, 0, (size_t)T * H * C * sizeof *q_lat);
    int threads = (double)T * H * Dn * C > 1e6 ? be->n_threads : 1;
    const int dense = kv_b->format == GLINT_WFMT_DENSE;
#pragma omp parallel num_threads(threads)
    {
        float *dequantized = dense ? NULL : malloc((size_t)C * sizeof(float));
#pragma omp for schedule(static)
        for (int h = 0; h < H; h++)
            for (int j = 0; j < Dn; j++) {  // q_lat[t,h] += q_nope[t,h,j] · W_UK[h][j, :]
                const int64_t r = (int64_t)h * (Dn + Dv) + j;
                const void *row = (const char *)kv_b->data + (size_t)r * row_bytes;
                glint_dtype dtype = kv_b->dtype;
                if (!dense) {
                    if (!dequantized) continue;
                    glint_cpu_weight_row_f32(kv_b, r, dequantized);
                    row = dequantized, dtype = GLINT_DTYPE_F32;
                }
                for (int t = 0; t < T; t++)
                    glint_cpu_axpy(q_lat + ((size_t)t * H + h) * C, row, dtype, q[((size_t)t * H + h) * q_head_stride + j],
                                   C);
            }
        free(dequantized);
    }
}

enum { ATTEND_HEAD_BLOCK = 16, ATTEND_KEY_TILE = 64 };

// Flash-decoding style: a block of heads walks the selected keys in tiles (a tile stays in L2 while
// every head of the block uses it) with an online softmax, so the cache is read once per block.
static void cpu_mla_attend(glint_backend *be, float *o_lat, const float *q_lat, const float *q, int q_head_stride,
                           int pe_offset, const float *latent_cache, const float *kpe_cache, const int32_t *sel,
                           const int32_t *n_sel, int sel_stride, int T, int H, int C, int Dr, float scale) {
    double work = 0;
    for (int s = 0; s < T; s++) work += (double)n_sel[s] * H * (C + Dr);
    const int threads = work > 1e6 ? be->n_threads : 1;
    const int blocks = (H + ATTEND_HEAD_BLOCK - 1) / ATTEND_HEAD_BLOCK;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads)
    for (int s = 0; s < T; s++)
        for (int blk = 0; blk < blocks; blk++) {
            const int h0 = blk * ATTEND_HEAD_BLOCK, nh = H - h0 < ATTEND_HEAD_BLOCK ? H - h0 : ATTEND_HEAD_BLOCK;
            const int32_t *idx = sel + (size_t)s * sel_stride;
            const int n = n_sel[s];
            float running_max[ATTEND_HEAD_BLOCK], running_sum[ATTEND_HEAD_BLOCK];
            float scores[ATTEND_HEAD_BLOCK][ATTEND_KEY_TILE];
            for (int hh = 0; hh < nh; hh++) {
                running_max[hh] = -INFINITY, running_sum[hh] = 0;
                memset(o_lat + ((size_t)s * H + h0 + hh) * C, 0, (size_t)C * sizeof(float));
            }
            for (int i0 = 0; i0 < n; i0 += ATTEND_KEY_TILE) {
                const int ni = n - i0 < ATTEND_KEY_TILE ? n - i0 : ATTEND_KEY_TILE;
                for (int hh = 0; hh < nh; hh++) {
                    const size_t qh = (size_t)s * H + h0 + hh;
                    const float *ql = q_lat + qh * C, *qp = q + qh * q_head_stride + pe_offset;
                    float *out = o_lat + qh * C;
                    float tile_max = -INFINITY;
                    for (int i = 0; i < ni; i++) {
                        const size_t t = (size_t)idx[i0 + i];
                        float dot = glint_cpu_dot_f32(ql, latent_cache + t * C, C) +
                                    glint_cpu_dot_f32(qp, kpe_cache + t * Dr, Dr);
                        scores[hh][i] = dot * scale;
                        if (scores[hh][i] > tile_max) tile_max = scores[hh][i];
                    }
                    float new_max = tile_max > running_max[hh] ? tile_max : running_max[hh];
                    float rescale = expf(running_max[hh] - new_max);  // exp(-inf) = 0 on the first tile
                    if (rescale != 1.0f) {
                        running_sum[hh] *= rescale;
                        for (int c = 0; c < C; c++) out[c] *= rescale;
                    }
                    running_max[hh] = new_max;
                    for (int i = 0; i < ni; i++) {
                        float p = expf(scores[hh][i] - new_max);
                        running_sum[hh] += p;
                        glint_cpu_axpy(out, latent_cache + (size_t)idx[i0 + i] * C, GLINT_DTYPE_F32, p, C);
                    }
                }
            }
            for (int hh = 0; hh < nh; hh++) {
                float *out = o_lat + ((size_t)s * H + h0 + hh) * C;
                float inv = running_sum[hh] > 0 ? 1.0f / running_sum[hh] : 0.0f;
                for (int c = 0; c < C; c++) out[c] *= inv;
            }
        }
}

static void cpu_mla_up_v(glint_backend *be, float *o, const float *o_lat, int T, int H, int C, int Dn, int Dv,
                         const glint_weight *kv_b) {
    if (kv_b->format == GLINT_WFMT_DENSE) {
        const size_t row_bytes = (size_t)C * glint_dtype_size(kv_b->dtype);
        for (int h = 0; h < H; h++) {
            // W_UV[h] is a contiguous [Dv, C] block of kv_b: a matmul on a row slice.
            glint_weight wuv = {.dtype = kv_b->dtype, .rows = Dv, .cols = C, .name = kv_b->name,
                                .data = (const char *)kv_b->data + ((size_t)h * (Dn + Dv) + Dn) * row_bytes};
            glint_cpu_matmul(be, o + (size_t)h * Dv, H * Dv, o_lat + (size_t)h * C, H * C, T, &wuv);
        }
        return;
    }
    // Quantized kv_b: dequantize each W_UV row once and use it for every token.
#pragma omp parallel num_threads(be->n_threads)
    {
        float *row = malloc((size_t)C * sizeof *row);
#pragma omp for schedule(static)
        for (int h = 0; h < H; h++)
            for (int v = 0; v < Dv && row; v++) {
                glint_cpu_weight_row_f32(kv_b, (int64_t)h * (Dn + Dv) + Dn + v, row);
                for (int t = 0; t < T; t++)
                    o[((size_t)t * H + h) * Dv + v] = glint_cpu_dot_f32(row, o_lat + ((size_t)t * H + h) * C, C);
            }
        free(row);
    }
}

// Router for one token (spec §2.8); writes top_k expert ids and weights.
static void route_token(const float *logits, const glint_weight *bias, const glint_moe_routing *r, int32_t *ids,
                        float *weights, scored *work) {
    const int E = r->n_experts, per_group = E / r->n_group;
    float sig[1024], choice[1024];
    for (int e = 0; e < E; e++) {
        sig[e] = 1.0f / (1.0f + expf(-logits[e]));
        choice[e] = sig[e] + (bias ? glint_weight_get(bias, e) : 0.0f);
    }
    if (r->n_group > 1) {  // keep the topk_group groups with the largest sum of their top-2 scores
        for (int g = 0; g < r->n_group; g++) {
            float a = -INFINITY, b = -INFINITY;
            for (int e = g * per_group; e < (g + 1) * per_group; e++) {
                if (choice[e] > a) b = a, a = choice[e];
                else if (choice[e] > b) b = choice[e];
            }
            work[g].score = a + b;
            work[g].index = g;
        }
        select_top(work, r->n_group, r->topk_group);
        uint8_t keep[1024] = {0};
        for (int i = 0; i < r->topk_group; i++) keep[work[i].index] = 1;
        for (int e = 0; e < E; e++)
            if (!keep[e / per_group]) choice[e] = -INFINITY;
    }
    for (int e = 0; e < E; e++) work[e].score = choice[e], work[e].index = e;
    select_top(work, E, r->top_k);
    float sum = 0;
    for (int k = 0; k < r->top_k; k++) {
        ids[k] = work[k].index;
        weights[k] = sig[ids[k]];
        sum += weights[k];
    }
    for (int k = 0; k < r->top_k; k++) {
        if (r->norm_topk_prob) weights[k] /= sum + 1e-20f;
        weights[k] *= r->routed_scaling_factor;
    }
}

static void cpu_moe(glint_backend *be, float *y, const float *x, int T, int D, int I, const glint_weight *router,
                    const glint_weight *bias, const glint_moe_routing *r, const glint_experts *ex) {
    const int E = r->n_experts, K = r->top_k;
    float *logits = malloc((size_t)T * E * sizeof *logits);
    int32_t *ids = malloc((size_t)T * K * sizeof *ids);
    float *wts = malloc((size_t)T * K * sizeof *wts);
    scored *work = malloc((size_t)E * sizeof *work);
    // Per expert: the (token, slot) pairs routed to it, gathered rows, and per-slot outputs.
    int32_t *pairs = malloc((size_t)T * K * sizeof *pairs);
    float *xg = malloc((size_t)T * D * sizeof *xg), *gu = malloc((size_t)T * 2 * I * sizeof *gu);
    float *h = malloc((size_t)T * I * sizeof *h), *outg = malloc((size_t)T * D * sizeof *outg);
    float *slot_out = malloc((size_t)T * K * D * sizeof *slot_out);
    if (!logits || !ids || !wts || !work || !pairs || !xg || !gu || !h || !outg || !slot_out) {
        // Out of memory mid-forward: leave a NaN result the caller will see rather than crash.
        for (size_t i = 0; i < (size_t)T * D; i++) y[i] = NAN;
        goto done;
    }
    glint_cpu_matmul(be, logits, E, x, D, T, router);
    for (int t = 0; t < T; t++) route_token(logits + (size_t)t * E, bias, r, ids + (size_t)t * K, wts + (size_t)t * K, work);
    for (int e = 0; e < E; e++) {
        int n = 0;
        for (int i = 0; i < T * K; i++)
            if (ids[i] == e) pairs[n++] = i;
        if (!n) continue;
        for (int j = 0; j < n; j++) memcpy(xg + (size_t)j * D, x + (size_t)(pairs[j] / K) * D, (size_t)D * sizeof *xg);
        glint_cpu_matmul(be, gu, 2 * I, xg, D, n, &ex->gate[e]);
        glint_cpu_matmul(be, gu + I, 2 * I, xg, D, n, &ex->up[e]);
        cpu_silu_mul(be, h, gu, gu + I, 2 * I, n, I);
        glint_cpu_matmul(be, outg, D, h, I, n, &ex->down[e]);
        for (int j = 0; j < n; j++) {
            float wgt = wts[pairs[j]];
            for (int d = 0; d < D; d++) slot_out[(size_t)pairs[j] * D + d] = wgt * outg[(size_t)j * D + d];
        }
    }
    for (int t = 0; t < T; t++)  // fixed summation order: slot 0..K-1
        for (int d = 0; d < D; d++) {
            float acc = 0;
            for (int k = 0; k < K; k++) acc += slot_out[((size_t)t * K + k) * D + d];
            y[(size_t)t * D + d] = acc;
        }
done:
    free(logits), free(ids), free(wts), free(work), free(pairs);
    free(xg), free(gu), free(h), free(outg), free(slot_out);
}

static void cpu_sample(glint_backend *be, int32_t *ids, const float *logits, int rows, int n,
                       const glint_sample_params *params, const double *uniforms) {
    (void)be;
    glint_sample_scratch *w = glint_sample_scratch_new(n);
    for (int r = 0; r < rows; r++)
        ids[r] = w ? glint_sample_draw(&params[r], logits + (size_t)r * n, n, uniforms[r], w) : -1;
    glint_sample_scratch_free(w);
}

static int cpu_edit_logits(glint_backend *be, float *logits, int n, const glint_logit_edit *edits, int n_edits) {
    (void)be, (void)n;
    for (int i = 0; i < n_edits; i++) {
        float *logit = logits + edits[i].token;
        *logit = glint_logit_edit_apply(edits + i, *logit);
    }
    return 0;
}

static void cpu_argmax(glint_backend *be, int32_t *ids, float *values, const float *logits, int rows, int n) {
    (void)be;
    for (int r = 0; r < rows; r++) {
        ids[r] = glint_argmax(logits + (size_t)r * n, n);
        if (values) values[r] = logits[(size_t)r * n + ids[r]];
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor parallelism on one machine: each rank is a thread with its own backend instance; the
// all-reduce publishes each rank's buffer, every rank sums a slice of the elements over all ranks in
// rank order into a shared result, and every rank copies the whole result back.

typedef struct {
    glint_backend base;
    glint_tp_link *link;
    int rank;
} cpu_rank_backend;

typedef struct {  // link->slots[0], made by rank 0
    float *parts[GLINT_MAX_TP];  // each rank's x of the current all-reduce
    float *sum;
    size_t sum_cap;
} cpu_tp_shared;

void glint_tp_link_wait(glint_tp_link *link) { pthread_barrier_wait(&link->barrier); }

static int cpu_tp_connect(glint_backend *be, glint_tp_link *link, int rank) {
    cpu_rank_backend *rb = (cpu_rank_backend *)be;
    if (rank == 0) {
        link->slots[0] = glint_calloc(1, sizeof(cpu_tp_shared), "tensor-parallel state");
        if (!link->slots[0]) link->failed = 1;
    }
    glint_tp_link_wait(link);
    rb->link = link, rb->rank = rank;
    return link->failed ? -1 : 0;
}

static void cpu_tp_disconnect(glint_backend *be) {
    cpu_rank_backend *rb = (cpu_rank_backend *)be;
    if (!rb->link) return;
    glint_tp_link_wait(rb->link);  // no rank is inside an all-reduce
    if (rb->rank == 0) {
        cpu_tp_shared *sh = rb->link->slots[0];
        if (sh) free(sh->sum);
        free(sh);
        rb->link->slots[0] = NULL;
    }
    rb->link = NULL;
}

static void cpu_all_reduce_sum(glint_backend *be, float *x, size_t n) {
    cpu_rank_backend *rb = (cpu_rank_backend *)be;
    glint_tp_link *link = rb->link;
    cpu_tp_shared *sh = link->slots[0];
    const int N = link->n_ranks;
    sh->parts[rb->rank] = x;
    if (rb->rank == 0 && sh->sum_cap < n) {  // before the wait: nobody uses sum until after it
        free(sh->sum);
        sh->sum = glint_malloc(n * sizeof(float), "all-reduce sum");
        sh->sum_cap = sh->sum ? n : 0;
        if (!sh->sum) link->failed = 1;
    }
    glint_tp_link_wait(link);
    if (link->failed) {  // out of memory: every rank gets NaN rather than a partial sum
        for (size_t i = 0; i < n; i++) x[i] = NAN;
        glint_tp_link_wait(link);
        glint_tp_link_wait(link);
        return;
    }
    const size_t lo = n * (size_t)rb->rank / (size_t)N, hi = n * (size_t)(rb->rank + 1) / (size_t)N;
    for (size_t i = lo; i < hi; i++) {
        float s = sh->parts[0][i];
        for (int r = 1; r < N; r++) s += sh->parts[r][i];
        sh->sum[i] = s;
    }
    glint_tp_link_wait(link);  // every slice summed, every part read
    memcpy(x, sh->sum, n * sizeof(float));
    glint_tp_link_wait(link);  // every rank copied: the next all-reduce may overwrite sum
}

static void cpu_fill(glint_backend *be, int n_threads) {
    *be = (glint_backend){
        .name = "cpu",
        .n_threads = n_threads > 0 ? n_threads : omp_get_num_procs(),
        .alloc = cpu_alloc,
        .free = cpu_free,
        .download = cpu_download,
        .upload = cpu_upload,
        .prepare_weight = cpu_prepare_weight,
        .measure_bandwidth = cpu_measure_bandwidth,
        .describe = cpu_describe,
        .embed = cpu_embed,
        .matmul = glint_cpu_matmul,
        .rmsnorm = cpu_rmsnorm,
        .layernorm = cpu_layernorm,
        .rope = cpu_rope,
        .silu_mul = cpu_silu_mul,
        .add = cpu_add,
        .copy_rows = cpu_copy_rows,
        .write_cache = cpu_write_cache,
        .indexer_select = cpu_indexer_select,
        .mla_absorb_q = cpu_mla_absorb_q,
        .mla_attend = cpu_mla_attend,
        .mla_up_v = cpu_mla_up_v,
        .moe = cpu_moe,
        .argmax = cpu_argmax,
        .sample = cpu_sample,
        .edit_logits = cpu_edit_logits,
    };
}

glint_backend *glint_backend_cpu(int n_threads) {
    static glint_backend be;
    cpu_fill(&be, n_threads);
    return &be;
}

static void cpu_release(glint_backend *be) { free(be); }

glint_backend *glint_backend_cpu_rank(int n_threads) {
    cpu_rank_backend *rb = glint_calloc(1, sizeof *rb, "CPU rank backend");
    if (!rb) return NULL;
    cpu_fill(&rb->base, n_threads);
    rb->base.tp_connect = cpu_tp_connect;
    rb->base.tp_disconnect = cpu_tp_disconnect;
    rb->base.all_reduce_sum = cpu_all_reduce_sum;
    rb->base.release = cpu_release;
    return &rb->base;
}
