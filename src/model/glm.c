#include "model/glm.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "io/quant.h"

// ---------------------------------------------------------------------------------------------
// Tensor table

typedef struct binder binder;
struct binder {
    const glint_checkpoint *ckpt;  // NULL: synthetic weights are made instead of looked up
    const char *dir;
    glint_model *m;
    int failed;
    uint64_t rng;
    const glint_quant_config *qc;
    glint_weight_format synthetic_experts;  // format of synthetic routed experts (DENSE: BF16)
    int tp_rank, tp_size;  // tensor parallelism: the part of the split weights this model takes
    // Tensor parallelism: what this rank adds to the whole model's stats (split weights: its part;
    // weights every rank holds: rank 0 only). NULL without tensor parallelism.
    glint_module_stats *share;
    // Parts that are copies (column cuts) are made when their weight goes to the backend, one at a
    // time, not while binding: a rank of a large model would otherwise hold all of them at once.
    struct weight_cut *cuts;
    size_t n_cuts, cap_cuts;
};

// A weight bound whole whose part this model takes at upload (see binder.cuts).
typedef struct weight_cut {
    glint_weight *dest;
    int axis;
    int64_t start, count;
} weight_cut;

static int is_float_dtype(glint_dtype d) {
    return d == GLINT_DTYPE_F32 || d == GLINT_DTYPE_BF16 || d == GLINT_DTYPE_F16;
}

// Synthetic weights (benchmarks): BF16 uniform in ±1/sqrt(cols) (routed experts optionally NVFP4
// of about that range), norms 1, router bias F32 0. Made in backend memory when the backend can.
static glint_weight make_synthetic(binder *b, const char *name, int64_t rows, int64_t cols) {
    glint_weight w = {.dtype = GLINT_DTYPE_BF16, .rows = rows, .cols = cols ? cols : 1, .name = "synthetic"};
    int is_bias = strstr(name, "e_score_correction_bias") != NULL;
    if (is_bias) w.dtype = GLINT_DTYPE_F32;
    const int nvfp4 = cols && b->synthetic_experts == GLINT_WFMT_NVFP4 && strstr(name, ".mlp.experts.") != NULL;
    if (nvfp4) {
        w.format = GLINT_WFMT_NVFP4, w.dtype = GLINT_DTYPE_U8, w.scales_dtype = GLINT_DTYPE_F8_E4M3, w.block = 16;
        w.global_scale = 1.0f;
    }
    size_t n = (size_t)w.rows * (size_t)w.cols, bytes = nvfp4 ? n / 2 + n / 16 : n * glint_dtype_size(w.dtype);
    const float amplitude = cols ? 1.0f / sqrtf((float)cols) : 1.0f;
    const uint64_t seed = b->rng += 0x9E3779B97F4A7C15ull;
    glint_backend *be = b->m->be;
    if (be && be->synthesize) {
        const float lo = is_bias ? 0.0f : cols ? -amplitude : 1.0f, hi = is_bias ? 0.0f : amplitude;
        if (be->synthesize(be, &w, seed, lo, hi)) b->failed = 1;
        return w;
    }
    // its data is 64-byte aligned (the struct says so; malloc's 16 bytes broke that under UBSan)
    const size_t total = (sizeof(glint_synthetic_block) + bytes + 63) / 64 * 64;
    glint_synthetic_block *blk = aligned_alloc(64, total);
    if (!blk) {
        glint_set_error("out of memory allocating %zu bytes for %s", total, name);
        b->failed = 1;
        return w;
    }
    blk->next = b->m->synthetic_blocks;
    b->m->synthetic_blocks = blk;
    if (is_bias) memset(blk->data, 0, bytes);
    else if (!cols) {
        for (size_t i = 0; i < n; i++) ((uint16_t *)blk->data)[i] = glint_f32_to_bf16(1.0f);
    } else if (nvfp4) {  // random E2M1 codes; E4M3 block scale ~amplitude/6 (|E2M1| <= 6)
        uint8_t *codes = (uint8_t *)blk->data, *scales = codes + n / 2, scale_code = 0x08;
        for (int code = 0x08; code < 0x7f; code++)
            if (ldexpf(1.0f + (float)(code & 7) / 8.0f, (code >> 3) - 7) <= amplitude / 6.0f) scale_code = (uint8_t)code;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n / 2; i++) {
            uint64_t z = seed + i * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
            codes[i] = (uint8_t)(z >> 24);
        }
        memset(scales, scale_code, n / 16);
        w.scales = scales;
    } else {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            uint64_t z = seed + i * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
            float u = (float)(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
            ((uint16_t *)blk->data)[i] = glint_f32_to_bf16(u * amplitude);
        }
    }
    w.data = blk->data;
    return w;
}

// Looks up NAME, checks it is a float tensor of shape [rows] (cols == 0) or [rows, cols].
static glint_weight bind(binder *b, const char *name, int64_t rows, int64_t cols) {
    glint_weight w = {0};
    if (b->failed) return w;
    if (!b->ckpt) return make_synthetic(b, name, rows, cols);
    const glint_st_tensor *t = glint_checkpoint_find(b->ckpt, name);
    if (!t) {
        if (cols)
            glint_set_error("%s: tensor '%s' is missing (expected shape [%lld, %lld])", b->dir, name, (long long)rows,
                            (long long)cols);
        else
            glint_set_error("%s: tensor '%s' is missing (expected shape [%lld])", b->dir, name, (long long)rows);
        b->failed = 1;
        return w;
    }
    int want_ndim = cols ? 2 : 1;
    if (t->ndim != want_ndim || t->shape[0] != rows || (cols && t->shape[1] != cols)) {
        char got[96] = "[";
        for (int d = 0; d < t->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        strcat(got, "]");
        if (cols)
            glint_set_error("%s: tensor '%s' has shape %s, expected [%lld, %lld] from config.json", t->file, name, got,
                            (long long)rows, (long long)cols);
        else
            glint_set_error("%s: tensor '%s' has shape %s, expected [%lld] from config.json", t->file, name, got,
                            (long long)rows);
        b->failed = 1;
        return w;
    }
    if (!is_float_dtype(t->dtype)) {
        glint_set_error("%s: tensor '%s' has dtype %s, expected F32, BF16 or F16", t->file, name,
                        glint_dtype_name(t->dtype));
        b->failed = 1;
        return w;
    }
    // Vectors (norm weights, biases) are small enough to check: a NaN or Inf in one turns every
    // activation after it into NaN, and the answer into token 0 again and again.
    for (int64_t i = 0; !cols && i < rows; i++) {
        float v;
        if (t->dtype == GLINT_DTYPE_F32) memcpy(&v, (const char *)t->data + 4 * i, sizeof v);
        else {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * i, sizeof h);
            v = t->dtype == GLINT_DTYPE_BF16 ? glint_bf16_to_f32(h) : glint_f16_to_f32(h);
        }
        if (!isfinite(v)) {
            glint_set_error("%s: tensor '%s' holds %s at [%lld]", t->file, name, isnan(v) ? "NaN" : "Inf", (long long)i);
            b->failed = 1;
            return w;
        }
    }
    w.dtype = t->dtype;
    w.rows = rows;
    w.cols = cols ? cols : 1;
    w.data = t->data;
    w.name = t->name;
    return w;
}

static glint_weight bind_layer(binder *b, int layer, const char *suffix, int64_t rows, int64_t cols) {
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.%s", layer, suffix);
    return bind(b, name, rows, cols);
}

static void add_stats(glint_module_stats *k, const glint_weight *w) {
    k->stored_bytes += glint_weight_stored_bytes(w);
    k->params += (uint64_t)w->rows * (uint64_t)w->cols;
    k->formats |= 1u << (w->format == GLINT_WFMT_DENSE ? (unsigned)w->dtype : GLINT_DTYPE_COUNT + (unsigned)w->format);
}

// Counts a bound weight in the model's stats (and, for a tensor-parallel rank, in its share of the
// whole model's: its part of a split weight, or a weight every rank holds once, from rank 0).
static void count(binder *b, glint_module_kind kind, const glint_weight *w, int split) {
    add_stats(&b->m->kinds[kind], w);
    if (b->share && (split || b->tp_rank == 0)) add_stats(&b->share[kind], w);
}

// A projection MODULE (e.g. "self_attn.q_a_proj") [rows, cols] of layer L (or of the model when
// layer < 0): quantized formats are recognised from the header, else a float tensor.
static glint_weight bind_linear(binder *b, int layer, const char *module, int64_t rows, int64_t cols,
                                glint_module_kind kind) {
    char name[256];
    if (layer >= 0) snprintf(name, sizeof name, "model.layers.%d.%s", layer, module);
    else snprintf(name, sizeof name, "%s", module);
    glint_weight w = {0};
    if (b->failed) return w;
    uint64_t bytes = 0;
    int rc = b->ckpt ? glint_bind_quantized_linear(b->ckpt, b->qc, name, rows, cols, &w, &bytes) : 0;
    if (rc < 0) {
        b->failed = 1;
        return w;
    }
    if (rc == 0) {
        snprintf(name + strlen(name), sizeof name - strlen(name), ".weight");
        w = bind(b, name, rows, cols);
    }
    if (!b->failed) count(b, kind, &w, 0);
    return w;
}

// The part [*start, *start + *count) of extent for rank r of N: equal parts, rounded down.
static void part_of(int64_t extent, int r, int N, int64_t *start, int64_t *count) {
    *start = extent * r / N;
    *count = extent * (r + 1) / N - *start;
}

// Tensor parallelism: how a rank takes its part of a weight (docs/multi-gpu-plan.md).
typedef enum { SPLIT_ROWS, SPLIT_COLS } split_axis;

// The growing table `items` of n entries of `size` bytes (capacity *cap), with room for one more:
// items, or its reallocation; NULL with the error set when out of memory (items stays valid).
static void *table_room(void *items, size_t n, size_t *cap, size_t size, const char *what) {
    if (n < *cap) return items;
    const size_t want = *cap ? 2 * *cap : 256;
    void *grown = realloc(items, want * size);
    if (!grown) {
        glint_set_error("out of memory for the table of %s", what);
        return NULL;
    }
    *cap = want;
    return grown;
}

// Remembers a host copy the model keeps (a column part of a weight that the backend uses in place).
static int keep_copy(glint_model *m, void *copy) {
    void **copies = table_room(m->weight_copies, m->n_weight_copies, &m->cap_weight_copies, sizeof *copies,
                               "weight parts");
    if (!copies) {
        free(copy);
        return -1;
    }
    m->weight_copies = copies;
    m->weight_copies[m->n_weight_copies++] = copy;
    return 0;
}

static int add_cut(binder *b, glint_weight *dest, int axis, int64_t start, int64_t count) {
    weight_cut *cuts = table_room(b->cuts, b->n_cuts, &b->cap_cuts, sizeof *cuts, "weight parts");
    if (!cuts) return -1;
    b->cuts = cuts;
    b->cuts[b->n_cuts++] = (weight_cut){dest, axis, start, count};
    return 0;
}

// *dest = this rank's part of the linear MODULE of full shape [rows, cols], split along `axis`;
// the whole weight without tensor parallelism. Synthetic weights are made at the part's shape. A
// part that is a copy stays the whole weight in *dest until the upload cuts it (binder.cuts); its
// cut is checked here.
static void bind_split(binder *b, glint_weight *dest, int layer, const char *module, int64_t rows, int64_t cols,
                       glint_module_kind kind, split_axis axis) {
    if (b->tp_size <= 1) {
        *dest = bind_linear(b, layer, module, rows, cols, kind);
        return;
    }
    int64_t start, n;
    part_of(axis == SPLIT_ROWS ? rows : cols, b->tp_rank, b->tp_size, &start, &n);
    glint_module_stats *share = b->share;
    b->share = NULL;  // bind_linear counts what the model holds; the rank's share is its part, below
    glint_weight part = {0};
    if (!b->ckpt) {
        part = *dest =
            bind_linear(b, layer, module, axis == SPLIT_ROWS ? n : rows, axis == SPLIT_COLS ? n : cols, kind);
    } else {
        const glint_weight whole = bind_linear(b, layer, module, rows, cols, kind);
        if (!b->failed) {
            glint_module_stats *held = &b->m->kinds[kind];  // the part is held, not the whole
            held->stored_bytes -= glint_weight_stored_bytes(&whole);
            held->params -= (uint64_t)whole.rows * (uint64_t)whole.cols;
            const int rc = glint_weight_part(&whole, axis == SPLIT_COLS, start, n, &part, NULL);
            if (rc < 0 || (rc == 1 && add_cut(b, dest, axis == SPLIT_COLS, start, n))) b->failed = 1;
            else add_stats(held, &part);
            *dest = rc == 1 ? whole : part;  // a view now, or the whole until the upload
        }
    }
    b->share = share;
    if (share && !b->failed) {
        add_stats(&share[kind], &part);
        // what a part holds whatever its size (NVFP4's global scale) counts once in the whole model
        glint_weight empty = part;
        empty.rows = empty.cols = 0;
        if (b->tp_rank > 0) share[kind].stored_bytes -= glint_weight_stored_bytes(&empty);
    }
}

static glint_weight bind_vector(binder *b, int layer, const char *suffix, int64_t rows, glint_module_kind kind) {
    glint_weight w = layer >= 0 ? bind_layer(b, layer, suffix, rows, 0) : bind(b, suffix, rows, 0);
    if (!b->failed) count(b, kind, &w, 0);
    return w;
}

static glint_weight bind_vector_2d(binder *b, const char *name, int64_t rows, int64_t cols, glint_module_kind kind) {
    glint_weight w = bind(b, name, rows, cols);
    if (!b->failed) count(b, kind, &w, 0);
    return w;
}

// The weights of decoder block l into L (L->is_moe and L->has_indexer set by the caller).
// With tensor parallelism the model's cfg holds the rank's share of the heads and intermediate sizes;
// the checkpoint's tensors have N times that.
static int bind_decoder_layer(binder *b, int l, glm_layer *L) {
    const glint_config *c = &b->m->cfg;
    const int N = b->tp_size > 1 ? b->tp_size : 1;
    const int D = c->hidden_size, H = c->num_heads * N, C = c->kv_lora_rank, Dr = c->qk_rope_head_dim;
    const int Dn = c->qk_nope_head_dim, Dv = c->v_head_dim, Qr = c->q_lora_rank;
    L->input_norm = bind_vector(b, l, "input_layernorm.weight", D, GLINT_KIND_NORMS);
    L->post_attn_norm = bind_vector(b, l, "post_attention_layernorm.weight", D, GLINT_KIND_NORMS);
    L->q_a = bind_linear(b, l, "self_attn.q_a_proj", Qr, D, GLINT_KIND_ATTENTION);
    L->q_a_norm = bind_vector(b, l, "self_attn.q_a_layernorm.weight", Qr, GLINT_KIND_NORMS);
    bind_split(b, &L->q_b, l, "self_attn.q_b_proj", (int64_t)H * (Dn + Dr), Qr, GLINT_KIND_ATTENTION, SPLIT_ROWS);
    L->kv_a = bind_linear(b, l, "self_attn.kv_a_proj_with_mqa", C + Dr, D, GLINT_KIND_ATTENTION);
    L->kv_a_norm = bind_vector(b, l, "self_attn.kv_a_layernorm.weight", C, GLINT_KIND_NORMS);
    bind_split(b, &L->kv_b, l, "self_attn.kv_b_proj", (int64_t)H * (Dn + Dv), C, GLINT_KIND_ATTENTION,
                                SPLIT_ROWS);
    bind_split(b, &L->o_proj, l, "self_attn.o_proj", D, (int64_t)H * Dv, GLINT_KIND_ATTENTION, SPLIT_COLS);
    if (L->has_indexer) {  // S layers ignore indexer weights even when the checkpoint has them
        const int Hi = c->index_n_heads, Di = c->index_head_dim;
        L->idx_wq_b = bind_linear(b, l, "self_attn.indexer.wq_b", (int64_t)Hi * Di, Qr, GLINT_KIND_INDEXER);
        L->idx_wk = bind_linear(b, l, "self_attn.indexer.wk", Di, D, GLINT_KIND_INDEXER);
        L->idx_k_norm_w = bind_vector(b, l, "self_attn.indexer.k_norm.weight", Di, GLINT_KIND_INDEXER);
        L->idx_k_norm_b = bind_vector(b, l, "self_attn.indexer.k_norm.bias", Di, GLINT_KIND_INDEXER);
        L->idx_weights_proj = bind_linear(b, l, "self_attn.indexer.weights_proj", Hi, D, GLINT_KIND_INDEXER);
    }
    if (!L->is_moe) {
        const int64_t I = (int64_t)c->intermediate_size * N;
        bind_split(b, &L->gate, l, "mlp.gate_proj", I, D, GLINT_KIND_DENSE_MLP, SPLIT_ROWS);
        bind_split(b, &L->up, l, "mlp.up_proj", I, D, GLINT_KIND_DENSE_MLP, SPLIT_ROWS);
        bind_split(b, &L->down, l, "mlp.down_proj", D, I, GLINT_KIND_DENSE_MLP, SPLIT_COLS);
        return b->failed ? -1 : 0;
    }
    const int E = c->n_routed_experts, Im = c->moe_intermediate_size * N, Is = Im * c->n_shared_experts;
    char router[64];
    snprintf(router, sizeof router, "model.layers.%d.mlp.gate.weight", l);
    L->router = bind_vector_2d(b, router, E, D, GLINT_KIND_ROUTER);
    L->router_bias = bind_vector(b, l, "mlp.gate.e_score_correction_bias", E, GLINT_KIND_ROUTER);
    if (c->n_shared_experts > 0) {
        bind_split(b, &L->gate, l, "mlp.shared_experts.gate_proj", Is, D, GLINT_KIND_SHARED_EXPERT, SPLIT_ROWS);
        bind_split(b, &L->up, l, "mlp.shared_experts.up_proj", Is, D, GLINT_KIND_SHARED_EXPERT, SPLIT_ROWS);
        bind_split(b, &L->down, l, "mlp.shared_experts.down_proj", D, Is, GLINT_KIND_SHARED_EXPERT, SPLIT_COLS);
    }
    L->expert_gate = glint_calloc((size_t)E * 3, sizeof(glint_weight), "expert table");
    if (!L->expert_gate) return -1;
    L->expert_up = L->expert_gate + E;
    L->expert_down = L->expert_gate + 2 * E;
    for (int e = 0; e < E && !b->failed; e++) {
        char name[128];
        snprintf(name, sizeof name, "mlp.experts.%d.gate_proj", e);
        bind_split(b, &L->expert_gate[e], l, name, Im, D, GLINT_KIND_ROUTED_EXPERTS, SPLIT_ROWS);
        snprintf(name, sizeof name, "mlp.experts.%d.up_proj", e);
        bind_split(b, &L->expert_up[e], l, name, Im, D, GLINT_KIND_ROUTED_EXPERTS, SPLIT_ROWS);
        snprintf(name, sizeof name, "mlp.experts.%d.down_proj", e);
        bind_split(b, &L->expert_down[e], l, name, D, Im, GLINT_KIND_ROUTED_EXPERTS, SPLIT_COLS);
    }
    return b->failed ? -1 : 0;
}

// The MTP / NextN layer (spec §2.10), stored after the main layers: a MoE block that runs its own
// indexer, plus enorm, hnorm, eh_proj and shared_head.norm. Optional; not counted in the model's
// per-token bytes (it only runs for speculative decoding). A synthetic model (no checkpoint) gets
// one of random weights when its config asks for it.
static int bind_mtp(binder *b) {
    glint_model *m = b->m;
    const glint_config *c = &m->cfg;
    const int l = c->num_layers, D = c->hidden_size;
    char probe[96];
    snprintf(probe, sizeof probe, "model.layers.%d.eh_proj.weight", l);
    if (c->num_nextn_predict_layers < 1 || (b->ckpt && !glint_checkpoint_find(b->ckpt, probe))) return 0;
    glint_module_stats kinds[GLINT_KIND_COUNT], share[GLINT_KIND_COUNT];
    memcpy(kinds, m->kinds, sizeof kinds);
    if (b->share) memcpy(share, b->share, sizeof share);
    m->mtp.is_moe = 1;
    m->mtp.has_indexer = 1;
    if (bind_decoder_layer(b, l, &m->mtp)) return -1;
    m->mtp_enorm = bind_vector(b, l, "enorm.weight", D, GLINT_KIND_NORMS);
    m->mtp_hnorm = bind_vector(b, l, "hnorm.weight", D, GLINT_KIND_NORMS);
    m->mtp_eh_proj = bind_linear(b, l, "eh_proj", D, 2 * (int64_t)D, GLINT_KIND_ATTENTION);
    m->mtp_head_norm = bind_vector(b, l, "shared_head.norm.weight", D, GLINT_KIND_NORMS);
    m->mtp_bytes = 0;
    for (int k = 0; k < GLINT_KIND_COUNT; k++) m->mtp_bytes += m->kinds[k].stored_bytes - kinds[k].stored_bytes;
    memcpy(m->kinds, kinds, sizeof kinds);  // the main model's stats leave the MTP layer out
    if (b->share) memcpy(b->share, share, sizeof share);
    m->has_mtp = !b->failed;
    return b->failed ? -1 : 0;
}

static void finish_stats(glint_model *m);

// A tied lm_head: the embedding's rows of this model's vocabulary part (all of them without tensor
// parallelism); a view, so it follows the embedding to the backend.
static int tied_lm_head_part(glint_model *m) {
    void *copy = NULL;
    if (m->vocab_rows == m->cfg.vocab_size) {
        m->lm_head = m->embed;
        return 0;
    }
    if (glint_weight_part(&m->embed, 0, m->vocab_begin, m->vocab_rows, &m->lm_head, &copy)) return -1;
    if (copy) {  // a format whose row parts are copies cannot follow the embedding to the device
        free(copy);
        glint_set_error("the tied embedding's format cannot be split for tensor parallelism");
        return -1;
    }
    return 0;
}

static int bind_all(binder *b) {
    glint_model *m = b->m;
    const glint_config *c = &m->cfg;
    const int D = c->hidden_size;
    // The embedding is not a linear layer: quantization configs do not list it, so only an NVFP4
    // table (U8 codes, "nvfp4_embed") goes through the quantized path.
    const glint_st_tensor *embed = b->ckpt ? glint_checkpoint_find(b->ckpt, "model.embed_tokens.weight") : NULL;
    if (embed && embed->dtype == GLINT_DTYPE_U8)
        m->embed = bind_linear(b, -1, "model.embed_tokens", c->vocab_size, D, GLINT_KIND_EMBEDDING);
    else m->embed = bind_vector_2d(b, "model.embed_tokens.weight", c->vocab_size, D, GLINT_KIND_EMBEDDING);
    m->final_norm = bind_vector(b, -1, "model.norm.weight", D, GLINT_KIND_NORMS);
    m->tied_lm_head = c->tie_word_embeddings && (!b->ckpt || !glint_checkpoint_find(b->ckpt, "lm_head.weight"));
    if (m->tied_lm_head) {
        if (tied_lm_head_part(m)) return -1;
    } else bind_split(b, &m->lm_head, -1, "lm_head", c->vocab_size, D, GLINT_KIND_LM_HEAD, SPLIT_ROWS);
    m->layers = glint_calloc((size_t)c->num_layers, sizeof *m->layers, "layer table");
    if (!m->layers) return -1;
    for (int l = 0; l < c->num_layers && !b->failed; l++) {
        glm_layer *L = &m->layers[l];
        L->is_moe = c->layer_is_moe[l];
        L->has_indexer = c->layer_has_indexer[l];
        if (bind_decoder_layer(b, l, L)) return -1;
    }
    if (b->failed || bind_mtp(b)) return -1;
    finish_stats(m);
    return 0;
}

// The totals and per-token figures of m->kinds: bytes one decode step reads are everything used
// once per token, one embedding row, and the routed experts' share top_k / E.
static void finish_stats(glint_model *m) {
    const glint_config *c = &m->cfg;
    m->n_params = m->weight_bytes = m->bytes_per_token = m->params_per_token = 0;
    for (int k = 0; k < GLINT_KIND_COUNT; k++) {
        glint_module_stats *s = &m->kinds[k];
        s->bytes_per_token = s->stored_bytes;
        s->params_per_token = s->params;
        if (k == GLINT_KIND_ROUTED_EXPERTS) {
            const uint64_t E = (uint64_t)(c->n_routed_experts ? c->n_routed_experts : 1);
            s->bytes_per_token = s->stored_bytes * (uint64_t)c->num_experts_per_tok / E;
            s->params_per_token = s->params * (uint64_t)c->num_experts_per_tok / E;
        }
        if (k == GLINT_KIND_EMBEDDING) s->bytes_per_token = s->stored_bytes / (uint64_t)c->vocab_size;
        if (k == GLINT_KIND_EMBEDDING || k == GLINT_KIND_NORMS) s->params_per_token = 0;  // lookups, not products
        m->bytes_per_token += s->bytes_per_token;
        m->params_per_token += s->params_per_token;
        m->n_params += s->params;
        m->weight_bytes += s->stored_bytes;
    }
}

// Handing the weights to the backend, with an optional progress line (bytes as stored). Several
// threads hand weights over at once where the backend allows it (prepare_threads): reading the
// checkpoint's pages and copying them to a device overlap. `lock` guards what they share.
typedef struct {
    glint_model *m;
    glint_backend *be;
    int show;
    uint64_t done, total;
    double start, last_print;
    const weight_cut *cuts;  // sorted by dest
    size_t n_cuts;
    pthread_mutex_t lock;
    glint_weight **queue;  // the weights the threads take in order
    size_t n_queue, cap_queue, next;
    int failed;
    char error[512];  // the first failure's message (errors are per thread)
} weight_upload;

static void upload_progress(weight_upload *u, int final) {
    const double now = glint_now_seconds();
    if (!u->show || (!final && now - u->last_print < 0.25)) return;
    u->last_print = now;
    const double gb = 1e-9, rate = now > u->start ? (double)u->done / (now - u->start) : 0;
    fprintf(stderr, "\rloading weights: %.2f / %.2f GB (%3.0f%%), %.2f GB/s", (double)u->done * gb,
            (double)u->total * gb, u->total ? 100.0 * (double)u->done / (double)u->total : 100.0, rate * gb);
    if (final) fprintf(stderr, ", %.1f s\n", now - u->start);
}

static int cut_order(const void *a, const void *b) {
    const uintptr_t x = (uintptr_t)((const weight_cut *)a)->dest, y = (uintptr_t)((const weight_cut *)b)->dest;
    return x < y ? -1 : x > y;
}

// Hands w to the backend; a weight with a pending cut is cut first, and the copy is freed at once
// when the backend made its own (device memory), else the model keeps it.
static int upload_weight(weight_upload *u, glint_weight *w) {
    const weight_cut key = {.dest = w};
    const weight_cut *cut = u->n_cuts ? bsearch(&key, u->cuts, u->n_cuts, sizeof key, cut_order) : NULL;
    void *copy = NULL;
    if (cut) {
        glint_weight part;
        if (glint_weight_part(w, cut->axis, cut->start, cut->count, &part, &copy)) return -1;
        *w = part;
    }
    const void *before = w->data;
    if (u->be->prepare_weight(u->be, w)) {
        free(copy);  // the model is being given up
        return -1;
    }
    pthread_mutex_lock(&u->lock);
    int rc = 0;
    if (copy && w->data == before) rc = keep_copy(u->m, copy);  // used in place (the CPU)
    else free(copy);
    u->done += glint_weight_stored_bytes(w);
    upload_progress(u, 0);
    pthread_mutex_unlock(&u->lock);
    return rc;
}

// An upload thread: takes the queue's next weight until none is left or one failed.
static void *upload_worker(void *arg) {
    weight_upload *u = arg;
    for (;;) {
        pthread_mutex_lock(&u->lock);
        glint_weight *w = !u->failed && u->next < u->n_queue ? u->queue[u->next++] : NULL;
        pthread_mutex_unlock(&u->lock);
        if (!w) return NULL;
        if (upload_weight(u, w)) {
            pthread_mutex_lock(&u->lock);
            if (!u->failed) snprintf(u->error, sizeof u->error, "%s", glint_last_error());
            u->failed = 1;
            pthread_mutex_unlock(&u->lock);
            return NULL;
        }
    }
}

// Uploads the queued weights on up to be->prepare_threads threads (this one among them).
static int upload_queue(weight_upload *u) {
    int n_threads = u->be->prepare_threads > 1 ? u->be->prepare_threads : 1;
    if ((size_t)n_threads > u->n_queue) n_threads = u->n_queue > 0 ? (int)u->n_queue : 1;
    pthread_t threads[GLINT_MAX_PREPARE_THREADS];
    if (n_threads > GLINT_MAX_PREPARE_THREADS) n_threads = GLINT_MAX_PREPARE_THREADS;
    int started = 0;
    while (started < n_threads - 1 && !pthread_create(&threads[started], NULL, upload_worker, u)) started++;
    upload_worker(u);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    if (u->failed) glint_set_error("%s", u->error);
    return u->failed ? -1 : 0;
}

static void free_weight_copies(glint_model *m) {
    for (size_t i = 0; i < m->n_weight_copies; i++) free(m->weight_copies[i]);
    free(m->weight_copies);
    m->weight_copies = NULL, m->n_weight_copies = m->cap_weight_copies = 0;
}

// Queues w when it holds a tensor; -1 when the queue cannot grow.
static int enqueue_weight(weight_upload *u, glint_weight *w) {
    if (!w->data) return 0;
    glint_weight **queue = table_room(u->queue, u->n_queue, &u->cap_queue, sizeof *queue, "weights to upload");
    if (!queue) return -1;
    u->queue = queue;
    u->queue[u->n_queue++] = w;
    return 0;
}

// Queues every bound weight of a layer (device backends copy them to device memory).
static int queue_layer(weight_upload *u, glm_layer *L, int n_experts) {
    glint_weight *ws[] = {&L->input_norm, &L->post_attn_norm, &L->q_a, &L->q_a_norm, &L->q_b, &L->kv_a,
                          &L->kv_a_norm, &L->kv_b, &L->o_proj, &L->idx_wq_b, &L->idx_wk, &L->idx_k_norm_w,
                          &L->idx_k_norm_b, &L->idx_weights_proj, &L->gate, &L->up, &L->down, &L->router,
                          &L->router_bias};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        if (enqueue_weight(u, ws[i])) return -1;
    if (L->is_moe)
        for (int e = 0; e < 3 * n_experts; e++)
            if (enqueue_weight(u, &L->expert_gate[e])) return -1;
    return 0;
}

static int prepare_weights(glint_model *m, int show_progress, weight_cut *cuts, size_t n_cuts) {
    if (n_cuts) qsort(cuts, n_cuts, sizeof *cuts, cut_order);
    weight_upload u = {.m = m, .be = m->be, .show = show_progress,
                       .total = m->weight_bytes + (m->has_mtp ? m->mtp_bytes : 0), .start = glint_now_seconds(),
                       .cuts = cuts, .n_cuts = n_cuts};
    pthread_mutex_init(&u.lock, NULL);
    int rc = upload_weight(&u, &m->embed) || upload_weight(&u, &m->final_norm) ? -1 : 0;
    if (!rc && m->tied_lm_head) rc = tied_lm_head_part(m);  // shares the prepared embedding
    else if (!rc) rc = upload_weight(&u, &m->lm_head);
    for (int l = 0; !rc && l < m->cfg.num_layers; l++)
        rc = queue_layer(&u, &m->layers[l], m->cfg.n_routed_experts);
    if (!rc && m->has_mtp) {
        glint_weight *mtp_ws[] = {&m->mtp_enorm, &m->mtp_hnorm, &m->mtp_eh_proj, &m->mtp_head_norm};
        rc = queue_layer(&u, &m->mtp, m->cfg.n_routed_experts);
        for (size_t i = 0; !rc && i < sizeof mtp_ws / sizeof mtp_ws[0]; i++) rc = enqueue_weight(&u, mtp_ws[i]);
    }
    if (!rc) rc = upload_queue(&u);
    if (!rc) upload_progress(&u, 1);
    free(u.queue);
    pthread_mutex_destroy(&u.lock);
    return rc;
}

const char *glint_module_kind_name(glint_module_kind kind) {
    static const char *names[GLINT_KIND_COUNT] = {"embedding", "attention (MLA)", "DSA indexer", "dense MLP",
                                                  "router",    "shared expert",   "routed experts", "norms",
                                                  "lm_head"};
    return kind < GLINT_KIND_COUNT ? names[kind] : "?";
}

static void free_layers(glint_model *m) {
    if (!m->layers) return;
    for (int l = 0; l < m->cfg.num_layers; l++) free(m->layers[l].expert_gate);
    free(m->mtp.expert_gate);
    free(m->layers);
    m->layers = NULL;
}

// What a model (or each rank of one) is made from: a checkpoint, or random weights of its shapes.
typedef struct {
    const char *dir;  // NULL: synthetic
    const glint_checkpoint *ckpt;
    const glint_quant_config *qc;
    glint_weight_format synthetic_experts;
    int show_progress;
} model_source;

// Binds and prepares the weights of m, whose cfg, be, rank and vocabulary part are set.
static int build_model(glint_model *m, const model_source *src, glint_module_stats *share) {
    static const glint_quant_config no_quantization;
    binder b = {src->ckpt, src->dir ? src->dir : "synthetic model", m, 0, 12345, src->qc ? src->qc : &no_quantization,
                src->synthetic_experts, m->tp_rank, m->tp_size, share, NULL, 0, 0};
    int rc = bind_all(&b);
    if (rc && src->dir) glint_prefix_error("%s: ", src->dir);
    if (!rc) rc = prepare_weights(m, src->show_progress, b.cuts, b.n_cuts);
    free(b.cuts);
    return rc;
}

static glint_model *model_new_tp(const glint_config *cfg, const model_source *src, const glint_load_options *opts);

glint_model *glint_model_load(const char *dir, const glint_load_options *opts, glint_backend *be) {
    glint_model *m = glint_calloc(1, sizeof *m, "model");
    if (!m) return NULL;
    glint_quant_config qc = {0};
    struct stat st;
    const int exists = stat(dir, &st) == 0;
    if (!exists || !S_ISDIR(st.st_mode)) {
        glint_set_error("%s: %s", dir, exists ? "not a directory (a model is the checkpoint's directory)"
                                              : "model directory does not exist");
        goto fail;
    }
    if (glint_config_load(dir, opts ? opts->override_json : NULL, opts ? opts->index_topk_pattern : NULL, &m->cfg) ||
        glint_config_merge_generation_eos(dir, &m->cfg))
        goto fail;
    m->ckpt = glint_checkpoint_open(dir);
    if (!m->ckpt || glint_quant_config_load(dir, &qc)) goto fail;
    const model_source src = {dir, m->ckpt, &qc, GLINT_WFMT_DENSE, opts && opts->show_progress};
    if (opts && opts->tp_size > 1) {
        glint_model *tp = model_new_tp(&m->cfg, &src, opts);
        if (!tp) goto fail;
        tp->ckpt = m->ckpt;  // the ranks' weights point into it (until they are on their devices)
        m->ckpt = NULL;
        glint_quant_config_free(&qc);
        glint_model_free(m);
        return tp;
    }
    m->be = be;
    m->vocab_rows = m->cfg.vocab_size;
    if (build_model(m, &src, NULL)) goto fail;
    glint_quant_config_free(&qc);
    return m;
fail:
    glint_quant_config_free(&qc);
    glint_model_free(m);
    return NULL;
}

glint_model *glint_model_synthetic(const glint_config *cfg, glint_backend *be) {
    return glint_model_synthetic_quant(cfg, be, GLINT_WFMT_DENSE);
}

glint_model *glint_model_synthetic_quant(const glint_config *cfg, glint_backend *be, glint_weight_format experts) {
    glint_model *m = glint_calloc(1, sizeof *m, "model");
    if (!m) return NULL;
    m->be = be;
    m->cfg = *cfg;
    m->vocab_rows = cfg->vocab_size;
    const model_source src = {NULL, NULL, NULL, experts, 0};
    if (build_model(m, &src, NULL)) {
        glint_model_free(m);
        return NULL;
    }
    return m;
}

glint_model *glint_model_synthetic_tp(const glint_config *cfg, glint_weight_format experts,
                                      const glint_load_options *opts) {
    const model_source src = {NULL, NULL, NULL, experts, 0};
    return model_new_tp(cfg, &src, opts);
}

static void forward_cache_free(glint_model *m);

static void tp_free(glint_model *m);

void glint_model_free(glint_model *m) {
    if (!m) return;
    tp_free(m);
    forward_cache_free(m);
    free_layers(m);
    free_weight_copies(m);
    glint_checkpoint_close(m->ckpt);
    while (m->synthetic_blocks) {
        glint_synthetic_block *next = m->synthetic_blocks->next;
        free(m->synthetic_blocks);
        m->synthetic_blocks = next;
    }
    free(m);
}

// ---------------------------------------------------------------------------------------------
// Caches

uint64_t glint_state_bytes_per_token(const glint_config *c) {
    uint64_t per = 0;
    for (int l = 0; l < c->num_layers; l++)
        per += (uint64_t)(c->kv_lora_rank + c->qk_rope_head_dim + (c->layer_has_indexer[l] ? c->index_head_dim : 0)) *
               sizeof(float);
    return per;
}

static int tp_run(const glint_model *m, int (*task)(glint_model *rank, int r, void *arg), void *arg);

// task on every rank's model (on its thread), or on m itself without tensor parallelism.
static int each_rank(const glint_model *m, int (*task)(glint_model *rank, int r, void *arg), void *arg) {
    return m->tp ? tp_run(m, task, arg) : task((glint_model *)m, 0, arg);
}

// Rank r's caches of a pool: layer l of rank r is entry r·n_layers + l of latent, kpe and index_k.
static size_t rank_offset(const glint_model *m, const glint_kv_pool *pool) {
    return (size_t)(m->tp_size > 1 ? m->tp_rank : 0) * (size_t)pool->n_layers;
}

typedef struct {
    glint_kv_pool *pool;
    const uint8_t *has_indexer;
} pool_job;

// The cache memory of one rank's (or the whole model's) layers.
static int pool_alloc_rank(glint_model *m, int r, void *arg) {
    (void)r;
    const pool_job *job = arg;
    glint_kv_pool *pool = job->pool;
    const glint_config *c = &m->cfg;
    glint_backend *be = m->be;
    const size_t rows = (size_t)pool->n_pages * pool->page_size, off = rank_offset(m, pool);
    for (int l = 0; l < pool->n_layers; l++) {
        float **latent = &pool->latent[off + l], **kpe = &pool->kpe[off + l], **index_k = &pool->index_k[off + l];
        *latent = be->alloc(be, rows * c->kv_lora_rank * sizeof(float), "MLA latent cache");
        *kpe = be->alloc(be, rows * c->qk_rope_head_dim * sizeof(float), "MLA rope-key cache");
        if (!*latent || !*kpe) return -1;
        if (job->has_indexer[l]) {
            *index_k = be->alloc(be, rows * c->index_head_dim * sizeof(float), "indexer key cache");
            if (!*index_k) return -1;
        }
    }
    return 0;
}

static int pool_free_rank(glint_model *m, int r, void *arg) {
    (void)r;
    glint_kv_pool *pool = arg;
    const size_t off = rank_offset(m, pool);
    for (int l = 0; l < pool->n_layers; l++) {
        m->be->free(m->be, pool->latent[off + l]);
        m->be->free(m->be, pool->kpe[off + l]);
        m->be->free(m->be, pool->index_k[off + l]);
    }
    return 0;
}

// A pool for n_layers layers; layer l keeps indexer keys when has_indexer[l].
static glint_kv_pool *pool_new(const glint_model *m, int64_t n_pages, int page_size, int n_layers,
                               const uint8_t *has_indexer) {
    if (n_pages < 1 || page_size < 1 || n_pages * page_size > INT32_MAX) {
        glint_set_error("KV pool of %lld pages of %d tokens: out of range", (long long)n_pages, page_size);
        return NULL;
    }
    glint_kv_pool *pool = glint_calloc(1, sizeof *pool, "KV pool");
    if (!pool) return NULL;
    pool->page_size = page_size;
    pool->n_pages = (int)n_pages;
    pool->n_layers = n_layers;
    pool->n_ranks = m->tp_size > 1 ? m->tp_size : 1;
    const size_t tables = (size_t)pool->n_ranks * (size_t)n_layers;
    pool->latent = glint_calloc(tables * 3, sizeof(float *), "cache table");
    pool->refs = glint_calloc((size_t)n_pages, sizeof(int32_t), "page references");
    pool->free_pages = glint_malloc((size_t)n_pages * sizeof(int32_t), "free pages");
    if (!pool->latent || !pool->refs || !pool->free_pages) goto fail;
    pool->kpe = pool->latent + tables;
    pool->index_k = pool->latent + 2 * tables;
    pool_job job = {pool, has_indexer};
    if (each_rank(m, pool_alloc_rank, &job)) goto fail;
    // Lowest page ids first (pops from the end).
    for (int i = 0; i < pool->n_pages; i++) pool->free_pages[i] = pool->n_pages - 1 - i;
    pool->n_free = pool->n_pages;
    return pool;
fail:
    glint_kv_pool_free(m, pool);
    return NULL;
}

glint_kv_pool *glint_kv_pool_new(const glint_model *m, int64_t n_pages, int page_size, int with_mtp) {
    const int L = m->cfg.num_layers;
    if (with_mtp && !m->has_mtp) {
        glint_set_error("this checkpoint has no MTP layer");
        return NULL;
    }
    uint8_t *has_indexer = glint_malloc((size_t)L + 1, "pool layers");
    if (!has_indexer) return NULL;
    memcpy(has_indexer, m->cfg.layer_has_indexer, (size_t)L);
    has_indexer[L] = 1;  // the MTP layer runs its own indexer
    glint_kv_pool *pool = pool_new(m, n_pages, page_size, L + (with_mtp ? 1 : 0), has_indexer);
    free(has_indexer);
    return pool;
}

void glint_kv_pool_free(const glint_model *m, glint_kv_pool *pool) {
    if (!pool) return;
    if (pool->latent) each_rank(m, pool_free_rank, pool);
    free(pool->latent);
    free(pool->refs);
    free(pool->free_pages);
    free(pool);
}

glint_state *glint_state_in_pool(glint_kv_pool *pool) {
    glint_state *st = glint_calloc(1, sizeof *st, "sequence state");
    if (st) st->pool = pool;
    return st;
}

int glint_state_reserve(glint_state *st, int tokens) {
    glint_kv_pool *pool = st->pool;
    const int need = (int)(((int64_t)tokens + pool->page_size - 1) / pool->page_size) - st->n_pages;
    if (need <= 0) return 0;
    if (need > pool->n_free) return 1;
    if (st->n_pages + need > st->cap_pages) {
        int cap = st->cap_pages ? 2 * st->cap_pages : 16;
        if (cap < st->n_pages + need) cap = st->n_pages + need;
        int32_t *grown = realloc(st->pages, (size_t)cap * sizeof *grown);
        if (!grown) {
            glint_set_error("out of memory for a page table");
            return -1;
        }
        st->pages = grown, st->cap_pages = cap;
    }
    for (int i = 0; i < need; i++) {
        const int32_t page = pool->free_pages[--pool->n_free];
        pool->refs[page] = 1;
        st->pages[st->n_pages++] = page;
    }
    st->capacity = st->n_pages * pool->page_size;
    return 0;
}

static void release_pages(glint_state *st, int keep) {
    glint_kv_pool *pool = st->pool;
    for (int i = keep; i < st->n_pages; i++)
        if (--pool->refs[st->pages[i]] == 0) pool->free_pages[pool->n_free++] = st->pages[i];
    st->n_pages = keep < st->n_pages ? keep : st->n_pages;
    st->capacity = st->n_pages * pool->page_size;
}

void glint_state_trim(glint_state *st) {
    if (!st->own_pool) release_pages(st, (st->n_past + st->pool->page_size - 1) / st->pool->page_size);
}

int glint_state_truncate(glint_state *st, int n) {
    if (n > st->n_past) n = st->n_past;
    if (!st->own_pool) {
        const int ps = st->pool->page_size;
        if (n % ps && st->pool->refs[st->pages[n / ps]] > 1) n -= n % ps;
        release_pages(st, (n + ps - 1) / ps);
    }
    st->n_past = n;
    if (st->mtp_past > n) st->mtp_past = n;
    return n;
}

typedef struct {
    const glint_kv_pool *pool;
    size_t from, to;  // first pool rows
    int rows;
} page_copy;

// Cache rows [from, from + rows) to [to, ..) in every layer of one rank (or the whole model).
static int copy_page_rows(glint_model *m, int r, void *arg) {
    (void)r;
    const page_copy *job = arg;
    const glint_kv_pool *pool = job->pool;
    const glint_config *c = &m->cfg;
    glint_backend *be = m->be;
    const int C = c->kv_lora_rank, Dr = c->qk_rope_head_dim, Di = c->index_head_dim;
    const size_t off = rank_offset(m, pool), from = job->from, to = job->to;
    for (int l = 0; l < pool->n_layers; l++) {
        float *latent = pool->latent[off + l], *kpe = pool->kpe[off + l], *index_k = pool->index_k[off + l];
        be->copy_rows(be, latent + to * C, C, latent + from * C, C, job->rows, C);
        be->copy_rows(be, kpe + to * Dr, Dr, kpe + from * Dr, Dr, job->rows, Dr);
        if (index_k) be->copy_rows(be, index_k + to * Di, Di, index_k + from * Di, Di, job->rows, Di);
    }
    return 0;
}

int glint_state_share_prefix(const glint_model *m, glint_state *dst, const glint_state *src, int n) {
    glint_kv_pool *pool = dst->pool;
    const int ps = pool->page_size, whole = n / ps, rest = n % ps;
    if (dst->n_pages || dst->n_past || src->pool != pool || n > src->n_past) {
        glint_set_error("prefix sharing needs an empty state in the source's pool");
        return -1;
    }
    if (rest && pool->n_free < 1) return 1;
    if (whole) {  // room for the shared pages; the partial one is added by reserve
        dst->pages = glint_malloc((size_t)(whole + 16) * sizeof *dst->pages, "page table");
        if (!dst->pages) return -1;
        dst->cap_pages = whole + 16;
        for (int i = 0; i < whole; i++) pool->refs[dst->pages[i] = src->pages[i]]++;
        dst->n_pages = whole;
        dst->capacity = whole * ps;
    }
    if (rest) {
        if (glint_state_reserve(dst, n)) return -1;  // a free page was checked above
        page_copy job = {pool, (size_t)src->pages[whole] * ps, (size_t)dst->pages[whole] * ps, rest};
        each_rank(m, copy_page_rows, &job);
    }
    dst->n_past = n;
    dst->mtp_past = src->mtp_past < n ? src->mtp_past : n;
    return 0;
}

// A state owning a pool of one page of `capacity` tokens.
static glint_state *private_state(const glint_model *m, int capacity, int n_layers, const uint8_t *has_indexer) {
    glint_kv_pool *pool = pool_new(m, 1, capacity, n_layers, has_indexer);
    glint_state *st = pool ? glint_state_in_pool(pool) : NULL;
    if (!st || glint_state_reserve(st, capacity)) {
        free(st);
        glint_kv_pool_free(m, pool);
        return NULL;
    }
    st->own_pool = 1;
    return st;
}

glint_state *glint_state_new(const glint_model *m, int capacity) {
    return private_state(m, capacity, m->cfg.num_layers, m->cfg.layer_has_indexer);
}

glint_state *glint_mtp_state_new(const glint_model *m, int capacity) {
    static const uint8_t runs_indexer[1] = {1};
    if (!m->has_mtp) {
        glint_set_error("this checkpoint has no MTP layer");
        return NULL;
    }
    return private_state(m, capacity, 1, runs_indexer);
}

void glint_state_free(const glint_model *m, glint_state *st) {
    if (!st) return;
    release_pages(st, 0);
    free(st->pages);
    if (st->own_pool) glint_kv_pool_free(m, st->pool);
    free(st);
}

// ---------------------------------------------------------------------------------------------
// Forward pass

// Activation buffers for a chunk of T tokens (backend memory).
typedef struct {
    float *x;       // [T, D] residual stream
    float *xn;      // [T, D] normalized
    float *qa;      // [T, Qr]
    float *q;       // [T, H, Dn+Dr]
    float *kv;      // [T, C+Dr]
    float *q_lat;   // [T, H, C]
    float *o_lat;   // [T, H, C]
    float *o;       // [T, H·Dv]
    float *qi;      // [T, Hi, Di]
    float *ki;      // [T, Di]
    float *iw;      // [T, Hi]
    int32_t *sel;   // [T, K] positions each query attends to
    int32_t *n_sel; // [T]
    int32_t *pos;   // [T]
    float *mlp_gu;  // [T, 2·I] gate and up, side by side
    float *mlp_h;   // [T, I]
    float *y;       // [T, D]
    float *y2;      // [T, D]
} scratch;

static void scratch_free(glint_backend *be, scratch *s) {
    void **p = (void **)s;
    for (size_t i = 0; i < sizeof *s / sizeof(void *); i++) be->free(be, p[i]);
}

static int scratch_alloc(glint_backend *be, const glint_config *c, int T, scratch *s) {
    memset(s, 0, sizeof *s);
    const size_t D = c->hidden_size, H = c->num_heads, C = c->kv_lora_rank, Dr = c->qk_rope_head_dim;
    const size_t Dn = c->qk_nope_head_dim, Dv = c->v_head_dim, Qr = c->q_lora_rank;
    const size_t Hi = c->index_n_heads, Di = c->index_head_dim, K = c->index_topk;
    size_t I = c->intermediate_size > c->moe_intermediate_size * c->n_shared_experts
                   ? (size_t)c->intermediate_size
                   : (size_t)c->moe_intermediate_size * c->n_shared_experts;
    const size_t sizes[] = {T * D * 4,  T * D * 4,      T * Qr * 4, T * H * (Dn + Dr) * 4, T * (C + Dr) * 4,
                            T * H * C * 4, T * H * C * 4, T * H * Dv * 4, T * Hi * Di * 4,  T * Di * 4,
                            T * Hi * 4, T * K * 4,      T * 4,      T * 4,                 T * 2 * I * 4,
                            T * I * 4,  T * D * 4,      T * D * 4};
    _Static_assert(sizeof(sizes) / sizeof(sizes[0]) == sizeof(scratch) / sizeof(void *), "scratch table");
    void **p = (void **)s;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        p[i] = be->alloc(be, sizes[i], "activations");
        if (!p[i]) {
            scratch_free(be, s);
            return -1;
        }
    }
    return 0;
}

// Decode batches (T <= GRAPH_MAX_T) on a backend that replays layer stacks (be->graph_begin) use
// activations and tables kept with the model, so the addresses a recorded stack holds stay valid
// from step to step; their page-table stride and max_position are rounded up (buckets) so that
// steps of a growing context make equal op arguments (the kernels read the real positions).
enum { GRAPH_MAX_T = 64 };
typedef struct {
    scratch s;  // GRAPH_MAX_T rows
    int32_t *tables;
    size_t table_ints;
    uint64_t id;  // a later model may get a freed one's addresses: keys differ by id
} forward_cache;

static void forward_cache_free(glint_model *m) {
    forward_cache *fc = m->forward_cache;
    if (!fc) return;
    scratch_free(m->be, &fc->s);
    m->be->free(m->be, fc->tables);
    free(fc);
    m->forward_cache = NULL;
}

// The model's cache with tables of at least table_ints ints; NULL + error when out of memory.
static forward_cache *forward_cache_get(glint_model *m, size_t table_ints) {
    static _Atomic uint64_t next_id;  // tensor-parallel ranks make theirs at once
    forward_cache *fc = m->forward_cache;
    if (!fc) {
        fc = glint_calloc(1, sizeof *fc, "forward cache");
        if (!fc) return NULL;
        if (scratch_alloc(m->be, &m->cfg, GRAPH_MAX_T, &fc->s)) {
            free(fc);
            return NULL;
        }
        fc->id = atomic_fetch_add(&next_id, 1) + 1;
        m->forward_cache = fc;
    }
    if (fc->table_ints < table_ints) {
        m->be->free(m->be, fc->tables);
        const size_t want = table_ints + table_ints / 2;
        fc->tables = m->be->alloc(m->be, sizeof(int32_t) * want, "page tables");
        fc->table_ints = fc->tables ? want : 0;
        if (!fc->tables) return NULL;
    }
    return fc;
}

// v rounded up to a quarter octave (v <= 2^k: a multiple of 2^(k-3)), at least lo.
static int bucket_up(int v, int lo) {
    if (v <= lo) return lo;
    long p = 1;
    while (p < v) p <<= 1;
    const long step = p >= 8 ? p / 8 : 1;
    return (int)((v + step - 1) / step * step);
}

static uint64_t key_mix(uint64_t h, uint64_t v) {
    uint64_t z = (h ^ v) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// down(silu(gate x) ⊙ up x) for a dense MLP or the shared expert; y[T, D].
static void mlp(glint_backend *be, const glm_layer *L, const float *xn, int T, int D, scratch *s, float *y) {
    const int I = (int)L->gate.rows;
    if (!be->swiglu_matmul || !be->swiglu_matmul(be, s->mlp_h, I, xn, D, T, &L->gate, &L->up)) {
        be->matmul(be, s->mlp_gu, 2 * I, xn, D, T, &L->gate);
        be->matmul(be, s->mlp_gu + I, 2 * I, xn, D, T, &L->up);
        be->silu_mul(be, s->mlp_h, s->mlp_gu, s->mlp_gu + I, 2 * I, T, I);
    }
    be->matmul(be, y, D, s->mlp_h, I, T, &L->down);
}

// x += a (+ b, added to a first), then xn = rmsnorm(x) when xn is given: one fused op where the backend
// has it.
static void residual_norm(glint_backend *be, float *x, float *a, const float *b, float *xn, int T, int D,
                          const glint_weight *w, float eps) {
    if (be->add_rmsnorm) {
        be->add_rmsnorm(be, x, a, b, xn, T, D, w, eps);
        return;
    }
    if (b) be->add(be, a, b, (size_t)T * D);
    be->add(be, x, a, (size_t)T * D);
    if (xn) be->rmsnorm(be, xn, x, D, T, D, w, eps);
}

// New rows of a cache: norm, RoPE, then the cache writes (see backend.h, norm_rope_cache).
static void norm_rope_cache(glint_backend *be, const glint_config *c, float *x, int x_stride, int T, int n_norm,
                            const glint_weight *w, const glint_weight *b, float eps, int rope_offset,
                            const int32_t *pos, float *pool_a, int split, float *pool_b, int width,
                            const glint_cache_map *map) {
    const int Dr = c->qk_rope_head_dim;
    if (be->norm_rope_cache) {
        be->norm_rope_cache(be, x, x_stride, T, n_norm, w, b, eps, rope_offset, Dr, pos, c->rope_inv_freq,
                            c->rope_attention_factor, pool_a, split, pool_b, width, map);
        return;
    }
    if (b) be->layernorm(be, x, x, x_stride, T, n_norm, w, b, eps);
    else be->rmsnorm(be, x, x, x_stride, T, n_norm, w, eps);
    be->rope(be, x, T, 1, x_stride, x_stride, rope_offset, Dr, pos, c->rope_inv_freq, c->rope_attention_factor);
    be->write_cache(be, pool_a, split, x, x_stride, T, split, pos, map);
    if (pool_b) be->write_cache(be, pool_b, width - split, x + split, x_stride, T, width - split, pos, map);
}

// The caches a batch works on: the pool and where each row's positions live in it.
typedef struct {
    glint_kv_pool *pool;
    float *const *latent, *const *kpe, *const *index_k;  // this model's (rank's) caches of the pool's layers
    glint_cache_map map;  // row_seq and page_table point into tables (backend memory)
    int32_t *tables;
    forward_cache *cached;  // scratch and tables are the model's forward cache (replayable steps)
} batch_caches;

// backend.h: branch / join (ops in issue order where the backend has no side lines)
static void branch(glint_backend *be, int k) {
    if (be->branch) be->branch(be, k);
}
static void join(glint_backend *be) {
    if (be->join) be->join(be);
}

// y[T, n_heads · head_stride] = x · W^T, then RoPE on each head's dims [offset, offset + rope dim):
// one backend op where the backend has it (backend.h: matmul_rope), else the two.
static void matmul_rope(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                        const glint_weight *W, int n_heads, int head_stride, int offset, const glint_config *c,
                        const int32_t *pos) {
    const int rope_dim = c->qk_rope_head_dim;
    if (be->matmul_rope && be->matmul_rope(be, y, y_stride, x, x_stride, T, W, n_heads, head_stride, offset, rope_dim,
                                           pos, c->rope_inv_freq, c->rope_attention_factor))
        return;
    be->matmul(be, y, y_stride, x, x_stride, T, W);
    be->rope(be, y, T, n_heads, head_stride, y_stride, offset, rope_dim, pos, c->rope_inv_freq,
             c->rope_attention_factor);
}

// MLA with DSA selection (spec §2.3-2.6) of layer L, whose caches are the pool's layer l; leaves the
// attention output in s->y (the caller adds it to s->x).
static void attention(glint_model *m, const batch_caches *bc, int l, const glm_layer *L, int T, scratch *s) {
    const glint_config *c = &m->cfg;
    glint_backend *be = m->be;
    const int D = c->hidden_size, H = c->num_heads, C = c->kv_lora_rank, Dr = c->qk_rope_head_dim;
    const int Dn = c->qk_nope_head_dim, Dv = c->v_head_dim, Qr = c->q_lora_rank, Dq = Dn + Dr;

    // Four lines that overlap where the backend can (branch): the new latents and rotated keys (side
    // line 1), the indexer's keys and head weights (line 3, below) and its queries and selection (line 2)
    // while the main line makes the queries. New latents and rotated keys go into the cache rows of
    // their positions before anything reads the cache (the join below, and line 2's wait for line 3):
    // a token attends to itself and to the earlier tokens of its chunk.
    branch(be, 1);
    be->matmul(be, s->kv, C + Dr, s->xn, D, T, &L->kv_a);
    norm_rope_cache(be, c, s->kv, C + Dr, T, C, &L->kv_a_norm, NULL, c->rms_norm_eps, C, s->pos, bc->latent[l], C,
                    bc->kpe[l], C + Dr, &bc->map);
    branch(be, 0);
    const int Hi = c->index_n_heads, Di = c->index_head_dim;
    // The indexer's key path gets line 3 where the selection (line 2) can wait for it, else line 2.
    const int key_line = be->branch && be->branch_wait ? 3 : 2;
    if (L->has_indexer) {  // the indexer's keys and head weights need only xn: they start with the latents
        branch(be, key_line);
        be->matmul(be, s->ki, Di, s->xn, D, T, &L->idx_wk);
        norm_rope_cache(be, c, s->ki, Di, T, Di, &L->idx_k_norm_w, &L->idx_k_norm_b, 1e-6f, 0, s->pos,
                        bc->index_k[l], Di, NULL, Di, &bc->map);
        be->matmul(be, s->iw, Hi, s->xn, D, T, &L->idx_weights_proj);
        branch(be, 0);
    }

    be->matmul(be, s->qa, Qr, s->xn, D, T, &L->q_a);
    be->rmsnorm(be, s->qa, s->qa, Qr, T, Qr, &L->q_a_norm, c->rms_norm_eps);
    if (L->has_indexer) {  // its queries need the normalized q_a (forked from here), the selection the keys
        branch(be, 2);
        matmul_rope(be, s->qi, Hi * Di, s->qa, Qr, T, &L->idx_wq_b, Hi, Di, 0, c, s->pos);
        if (key_line != 2) be->branch_wait(be, key_line);
        be->indexer_select(be, s->sel, s->n_sel, s->qi, s->iw, bc->index_k[l], T, s->pos, &bc->map, Hi, Di,
                           c->index_topk, 1.0f / sqrtf((float)Di), 1.0f / sqrtf((float)Hi));
        branch(be, 0);
    }
    // S layers reuse the selection left in s->sel by the last F layer (layer 0 is always F).
    // q_b stays two ops: the rope kernel after it is not on the critical path (the indexer's is), and
    // its GEMV with the CUDA backend's rope epilogue took 39.5 us against 29 on H200 (session 12 trace).
    be->matmul(be, s->q, H * Dq, s->qa, Qr, T, &L->q_b);
    be->rope(be, s->q, T, H, Dq, H * Dq, Dn, Dr, s->pos, c->rope_inv_freq, c->rope_attention_factor);
    be->mla_absorb_q(be, s->q_lat, s->q, T, H, Dq, Dn, Dv, &L->kv_b);
    join(be);
    be->mla_attend(be, s->o_lat, s->q_lat, s->q, Dq, Dn, bc->latent[l], bc->kpe[l], s->sel, s->n_sel,
                   c->index_topk, T, H, C, Dr, c->softmax_scale);
    be->mla_up_v(be, s->o, s->o_lat, T, H, C, Dn, Dv, &L->kv_b);
    be->matmul(be, s->y, D, s->o, H * Dv, T, &L->o_proj);
    if (m->tp_size > 1) be->all_reduce_sum(be, s->y, (size_t)T * D);  // the other ranks' heads
}

// The block output a decoder layer leaves in s->y, plus s->y2 (the shared expert) when it returns 1.
// Tensor-parallel ranks add the two before their all-reduce.
static int leaves_y2(const glint_model *m, const glm_layer *L) {
    return L->is_moe && m->cfg.n_shared_experts > 0 && m->tp_size <= 1;
}

// One decoder block (pre-norm attention, then dense MLP or MoE + shared expert) on s->x. The output of
// `prev` (the previous block, NULL for the first) is still in s->y (+ s->y2): it is added to s->x
// together with this block's input norm. Leaves its own output there the same way.
static void decoder_layer(glint_model *m, const batch_caches *bc, int l, const glm_layer *L, const glm_layer *prev,
                          int T, scratch *s) {
    const glint_config *c = &m->cfg;
    glint_backend *be = m->be;
    const int D = c->hidden_size;
    if (prev)
        residual_norm(be, s->x, s->y, leaves_y2(m, prev) ? s->y2 : NULL, s->xn, T, D, &L->input_norm,
                      c->rms_norm_eps);
    else be->rmsnorm(be, s->xn, s->x, D, T, D, &L->input_norm, c->rms_norm_eps);
    attention(m, bc, l, L, T, s);
    residual_norm(be, s->x, s->y, NULL, s->xn, T, D, &L->post_attn_norm, c->rms_norm_eps);
    if (L->is_moe) {
        glint_moe_routing routing = {c->n_routed_experts, c->num_experts_per_tok, c->n_group, c->topk_group,
                                     c->norm_topk_prob, c->routed_scaling_factor};
        glint_experts experts = {L->expert_gate, L->expert_up, L->expert_down, c->n_routed_experts};
        // the routing and the routed experts (a side line) overlap the shared expert
        branch(be, 1);
        be->moe(be, s->y, s->xn, T, D, c->moe_intermediate_size, &L->router, &L->router_bias, &routing, &experts);
        branch(be, 0);
        if (c->n_shared_experts > 0) mlp(be, L, s->xn, T, D, s, s->y2);
        join(be);
        if (c->n_shared_experts > 0 && m->tp_size > 1) be->add(be, s->y, s->y2, (size_t)T * D);
    } else {
        mlp(be, L, s->xn, T, D, s, s->y);
    }
    // Each rank has its part of the intermediate dimension: the sum is the block's output.
    if (m->tp_size > 1) be->all_reduce_sum(be, s->y, (size_t)T * D);
}

// Layers [first, end) of the layer stack of a forward, or the MTP layer as layer mtp_layer (>= 0): the
// output of the block before `first` is still in s->y; the last block's output is added to s->x at the
// end of the stack.
static void layer_range(glint_model *m, const batch_caches *bc, int T, scratch *s, int mtp_layer, int first, int end) {
    const glm_layer *last = NULL;
    if (mtp_layer >= 0) {
        decoder_layer(m, bc, mtp_layer, &m->mtp, NULL, T, s);
        last = &m->mtp;
    } else {
        for (int l = first; l < end; l++) decoder_layer(m, bc, l, &m->layers[l], l ? &m->layers[l - 1] : NULL, T, s);
        if (end == m->cfg.num_layers && end > first) last = &m->layers[end - 1];
    }
    if (last)
        residual_norm(m->be, s->x, s->y, leaves_y2(m, last) ? s->y2 : NULL, NULL, T, m->cfg.hidden_size, NULL, 0);
}

// Replayed layer stacks are launched in pieces of 1, 2, 4, ... layers (at most GRAPH_PIECE_MAX): the
// host spends about a microsecond per kernel launching a graph and the GPU starts it only once it is
// all submitted, so the first piece is small and the host submits the rest while the GPU runs.
// GLINT_GRAPH_PIECES=0: the whole stack as one graph. Tensor-parallel ranks replay one graph too: with
// pieces, the CUDA test of the fixture models split over 2 GPUs (model_forward) went wrong in 6 of 8
// runs (a step whose new pieces ran eagerly after replays gave wrong logits, or a rank waited for the
// other's all-reduce in vain), and in none of 8 without them (3 with GLINT_GRAPH_PIECES=0, 5 with this
// rule); the cause is not found yet.
enum { GRAPH_PIECE_MAX = 16 };
static int graph_pieces_on(void) {
    static _Atomic int on = -1;  // tensor-parallel ranks ask at once
    if (on < 0) {
        const char *v = getenv("GLINT_GRAPH_PIECES");
        on = !(v && strcmp(v, "0") == 0);
    }
    return on;
}

// The layer stack, recorded and replayed by the backend when the batch uses the forward cache: each
// piece's key holds everything its ops' arguments depend on beyond the model's weights and the cache.
static void run_layers(glint_model *m, const batch_caches *bc, int T, scratch *s, int mtp_layer) {
    glint_backend *be = m->be;
    const int n_layers = mtp_layer >= 0 ? 1 : m->cfg.num_layers;
    if (!bc->cached) {
        layer_range(m, bc, T, s, mtp_layer, 0, n_layers);
        return;
    }
    uint64_t common = key_mix(bc->cached->id, (uint64_t)T);
    common = key_mix(common, (uint64_t)(uint32_t)mtp_layer);
    common = key_mix(common, (uint64_t)bc->map.pages_stride << 32 | (uint32_t)bc->map.page_size);
    common = key_mix(common, (uint64_t)bc->map.max_position);
    common = key_mix(common, (uint64_t)(uintptr_t)bc->tables);
    const int pieces = graph_pieces_on() && m->tp_size <= 1;
    for (int first = 0, size = 1, end; first < n_layers; first = end) {
        end = pieces ? first + size : n_layers;
        end = end < n_layers ? end : n_layers;
        size = size < GRAPH_PIECE_MAX ? 2 * size : size;
        uint64_t key = key_mix(common, (uint64_t)first << 32 | (uint32_t)end);
        for (int i = first; i < end; i++) {
            const int l = mtp_layer >= 0 ? mtp_layer : i;
            key = key_mix(key, (uint64_t)(uintptr_t)bc->latent[l]);
            key = key_mix(key, (uint64_t)(uintptr_t)bc->kpe[l]);
            key = key_mix(key, (uint64_t)(uintptr_t)bc->index_k[l]);
        }
        if (!be->graph_begin(be, key)) layer_range(m, bc, T, s, mtp_layer, first, end);
        if (be->graph_end(be)) layer_range(m, bc, T, s, mtp_layer, first, end);  // recording failed: nothing ran
    }
}

static void end_forward(glint_backend *be, scratch *s, batch_caches *bc) {
    if (bc->cached) return;  // the model keeps them
    scratch_free(be, s);
    be->free(be, bc->tables);
}

// Where item's rows start: the MTP layer of a shared pool has its own count.
static int first_position(const glint_state *st, int mtp) { return mtp && !st->own_pool ? st->mtp_past : st->n_past; }

// Scratch, positions and the page tables for a batch (of the MTP layer when mtp); *T_out =
// its rows, *ids_out = their token ids side by side (host, caller frees).
static int begin_forward(glint_model *m, const glint_batch_item *items, int n_items, int mtp, scratch *s,
                         batch_caches *bc, int *T_out, int32_t **ids_out) {
    const glint_config *c = &m->cfg;
    glint_backend *be = m->be;
    int T = 0, stride = 1, max_position = 0;
    glint_kv_pool *pool = items[0].st->pool;
    for (int i = 0; i < n_items; i++) {  // the batch passed check_batch
        const int end = first_position(items[i].st, mtp) + items[i].n_tokens;
        const int pages = (end + pool->page_size - 1) / pool->page_size;
        stride = pages > stride ? pages : stride;
        max_position = end - 1 > max_position ? end - 1 : max_position;
        T += items[i].n_tokens;
    }
    memset(bc, 0, sizeof *bc);
    const int replayable = be->graph_begin && be->graph_end && T > 0 && T <= GRAPH_MAX_T;
    if (replayable) {
        int p = 1;
        while (p < stride) p <<= 1;
        stride = p;
        max_position = bucket_up(max_position + 1, 256) - 1;
    }
    // Host side: ids [T], positions [T], then the tables as uploaded: row_seq [T], pages [n_items, stride].
    const size_t table_ints = (size_t)T + (size_t)n_items * stride;
    int32_t *ids = glint_malloc(sizeof(int32_t) * (2 * (size_t)T + table_ints), "batch tables");
    if (!ids) return -1;
    int32_t *positions = ids + T, *row_seq = positions + T, *page_table = row_seq + T;
    for (int i = 0, row = 0; i < n_items; i++) {
        const glint_state *st = items[i].st;
        for (int t = 0; t < items[i].n_tokens; t++, row++) {
            ids[row] = items[i].ids ? items[i].ids[t] : 0;
            positions[row] = first_position(st, mtp) + t;
            row_seq[row] = i;
        }
        // The pages holding positions < n_past + n_tokens (reserved pages beyond are not needed).
        const int used = st->n_pages < stride ? st->n_pages : stride;
        memcpy(page_table + (size_t)i * stride, st->pages, sizeof(int32_t) * (size_t)used);
        for (int p = used; p < stride; p++) page_table[(size_t)i * stride + p] = 0;  // never read
    }
    bc->pool = pool;
    bc->latent = pool->latent + rank_offset(m, pool);
    bc->kpe = pool->kpe + rank_offset(m, pool);
    bc->index_k = pool->index_k + rank_offset(m, pool);
    if (replayable) {
        bc->cached = forward_cache_get(m, table_ints);
        if (!bc->cached) {
            free(ids);
            return -1;
        }
        *s = bc->cached->s;
        bc->tables = bc->cached->tables;
    } else if (scratch_alloc(be, c, T, s)) {
        free(ids);
        return -1;
    } else {
        bc->tables = be->alloc(be, sizeof(int32_t) * table_ints, "page tables");
    }
    if (!bc->tables) {
        end_forward(be, s, bc);
        free(ids);
        return -1;
    }
    be->upload(be, s->pos, positions, sizeof(int32_t) * (size_t)T);
    be->upload(be, bc->tables, row_seq, sizeof(int32_t) * table_ints);
    bc->map = (glint_cache_map){.row_seq = bc->tables, .page_table = bc->tables + T, .pages_stride = stride,
                                .page_size = pool->page_size, .max_position = max_position};
    *T_out = T;
    *ids_out = ids;
    return 0;
}

// Tensor-parallel ranks' greedy answers for their vocabulary parts: [rows asking for argmax] each.
typedef struct {
    int32_t *ids[GLINT_MAX_TP];
    float *values[GLINT_MAX_TP];
} rank_argmax;

// Final norm (weight `norm`) of the items' rows: the hidden states they ask for and the logits of
// the rows they ask for, to the host. A tensor-parallel rank computes the logits of its vocabulary
// part: it writes those columns of the items' logits, and its greedy answers to ranked.
static int finish_forward(glint_model *m, const glint_weight *norm, const glint_batch_item *items, int n_items,
                          scratch *s, rank_argmax *ranked) {
    const glint_config *c = &m->cfg;
    glint_backend *be = m->be;
    const int D = c->hidden_size, V = c->vocab_size, Vr = m->vocab_rows, r = m->tp_size > 1 ? m->tp_rank : 0;
    for (int i = 0, row = 0; i < n_items; row += items[i].n_tokens, i++)
        if (items[i].hidden && r == 0) {  // every row's final-norm state (s->y is free scratch [T, D])
            be->rmsnorm(be, s->y, s->x + (size_t)row * D, D, items[i].n_tokens, D, norm, c->rms_norm_eps);
            be->download(be, items[i].hidden, s->y, (size_t)items[i].n_tokens * D);
        }
    int n_out = 0;
    for (int i = 0; i < n_items; i++)
        if (items[i].logits || items[i].argmax) n_out += items[i].all_logits ? items[i].n_tokens : 1;
    if (!n_out) return 0;
    // Gather the rows into s->y (free now: [T, D] >= [n_out, D]), normalize into s->xn.
    for (int i = 0, row = 0, out = 0; i < n_items; row += items[i].n_tokens, i++) {
        if (!items[i].logits && !items[i].argmax) continue;
        const int n = items[i].all_logits ? items[i].n_tokens : 1, first = row + items[i].n_tokens - n;
        be->copy_rows(be, s->y + (size_t)out * D, D, s->x + (size_t)first * D, D, n, D);
        out += n;
    }
    be->rmsnorm(be, s->xn, s->y, D, n_out, D, norm, c->rms_norm_eps);
    float *dev_logits = be->alloc(be, (size_t)n_out * Vr * sizeof(float), "logits");
    float *part = Vr < V ? glint_malloc((size_t)n_out * Vr * sizeof(float), "logits part") : NULL;
    if (!dev_logits || (Vr < V && !part)) {
        be->free(be, dev_logits);
        return -1;
    }
    be->matmul(be, dev_logits, Vr, s->xn, D, n_out, &m->lm_head);
    for (int i = 0, out = 0, asked = 0; i < n_items; i++) {
        if (!items[i].logits && !items[i].argmax) continue;
        const int n = items[i].all_logits ? items[i].n_tokens : 1;
        const float *rows = dev_logits + (size_t)out * Vr;
        out += n;
        const int draws = items[i].sample && items[i].argmax;
        if (items[i].n_edits) {  // penalties, bias, held-back stop tokens: in place, before the choice
            int failed = !items[i].argmax || !be->edit_logits || ranked || Vr != V;
            if (failed) glint_set_error("logit edits need the argmax or a draw on a backend that edits logits, one rank");
            for (int j = 0, at = 0; j < n && !failed; at += items[i].n_edits[j], j++)
                failed = be->edit_logits(be, dev_logits + (size_t)(out - n + j) * Vr, V, items[i].edits + at,
                                         items[i].n_edits[j]) != 0;
            if (failed) {
                free(part);
                be->free(be, dev_logits);
                return -1;
            }
        }
        const int on_device = draws && be->sample && !ranked && Vr == V;
        if (on_device) {  // the draws where the logits are; the rows it declines go to the host
            be->sample(be, items[i].argmax, rows, n, V, items[i].sample, items[i].uniforms);
            for (int j = 0; j < n; j++)
                if (items[i].argmax[j] < 0) be->download(be, items[i].logits + (size_t)j * V, rows + (size_t)j * V, V);
            continue;
        }
        if (items[i].logits && Vr == V) be->download(be, items[i].logits, rows, (size_t)n * V);
        else if (items[i].logits) {  // this rank's columns of the rows
            be->download(be, part, rows, (size_t)n * Vr);
            for (int j = 0; j < n; j++)
                memcpy(items[i].logits + (size_t)j * V + m->vocab_begin, part + (size_t)j * Vr, sizeof(float) * Vr);
        }
        if (draws) {  // the caller draws every row from the logits (rank 0 says so: one writer)
            for (int j = 0; j < n && r == 0; j++) items[i].argmax[j] = -1;
        } else if (items[i].argmax && ranked) {
            be->argmax(be, ranked->ids[r] + asked, ranked->values[r] + asked, rows, n, Vr);
            asked += n;
        } else if (items[i].argmax) be->argmax(be, items[i].argmax, NULL, rows, n, V);
    }
    free(part);
    be->free(be, dev_logits);
    return 0;
}

// Checks a batch before anything runs (of the MTP layer when mtp): room in the cache, one pool,
// token ids in the vocabulary.
static int check_batch(const glint_model *m, const glint_batch_item *items, int n_items, int mtp) {
    const glint_kv_pool *pool = items[0].st->pool;
    for (int i = 0; i < n_items; i++) {
        const glint_state *st = items[i].st;
        const int start = first_position(st, mtp);
        if (start + items[i].n_tokens > st->capacity) {
            glint_set_error("context full: %d cached + %d new tokens exceed the context length %d", start,
                            items[i].n_tokens, st->capacity);
            return -1;
        }
        if (st->pool != pool) {
            glint_set_error("batched sequences must share one KV pool");
            return -1;
        }
        for (int t = 0; items[i].ids && t < items[i].n_tokens; t++)
            if (items[i].ids[t] < 0 || items[i].ids[t] >= m->cfg.vocab_size) {
                glint_set_error("token id %d at position %d is outside the vocabulary (0..%d)", items[i].ids[t], t,
                                m->cfg.vocab_size - 1);
                return -1;
            }
    }
    return 0;
}

// The main model's forward of a batch on one rank (or the whole model); positions are not advanced.
static int forward_items(glint_model *m, glint_batch_item *items, int n_items, rank_argmax *ranked) {
    scratch s;
    batch_caches bc;
    int T;
    int32_t *ids;
    if (begin_forward(m, items, n_items, 0, &s, &bc, &T, &ids)) return -1;
    if (T > 0) {
        m->be->embed(m->be, s.x, &m->embed, ids, T);
        run_layers(m, &bc, T, &s, -1);
    }
    int rc = T > 0 ? finish_forward(m, &m->final_norm, items, n_items, &s, ranked) : 0;
    end_forward(m->be, &s, &bc);
    free(ids);
    return rc;
}

// The MTP layer (spec §2.10) on a batch on one rank (or the whole model): layer index `layer` of the
// items' pool.
static int mtp_items(glint_model *m, glint_batch_item *items, int n_items, int layer, rank_argmax *ranked) {
    const glint_config *c = &m->cfg;
    glint_backend *be = m->be;
    const int D = c->hidden_size;
    scratch s;
    batch_caches bc;
    int T;
    int32_t *ids;
    if (begin_forward(m, items, n_items, 1, &s, &bc, &T, &ids)) return -1;
    float *joined = T > 0 ? be->alloc(be, sizeof(float) * 2 * (size_t)T * D, "MTP input") : NULL;  // [T, 2D]
    int rc = T > 0 ? -1 : 0;
    if (joined) {
        // [enorm(embed(token p+1)) | hnorm(h_p)] -> eh_proj -> the MTP decoder block
        be->embed(be, s.y, &m->embed, ids, T);
        be->rmsnorm(be, s.y, s.y, D, T, D, &m->mtp_enorm, c->rms_norm_eps);
        be->copy_rows(be, joined, 2 * D, s.y, D, T, D);
        for (int i = 0, row = 0; i < n_items; row += items[i].n_tokens, i++)
            be->upload(be, s.y2 + (size_t)row * D, items[i].hidden_in, sizeof(float) * (size_t)items[i].n_tokens * D);
        be->rmsnorm(be, s.y2, s.y2, D, T, D, &m->mtp_hnorm, c->rms_norm_eps);
        be->copy_rows(be, joined + D, 2 * D, s.y2, D, T, D);
        be->matmul(be, s.x, D, joined, 2 * D, T, &m->mtp_eh_proj);
        run_layers(m, &bc, T, &s, layer);
        rc = finish_forward(m, &m->mtp_head_norm, items, n_items, &s, ranked);
        be->free(be, joined);
    }
    end_forward(be, &s, &bc);
    free(ids);
    return rc;
}

static int tp_forward(glint_model *m, glint_batch_item *items, int n_items, int mtp_layer);

// A forward of the main model (mtp_layer < 0) or of the MTP layer, on every rank or on the model.
static int forward(glint_model *m, glint_batch_item *items, int n_items, int mtp_layer) {
    if (check_batch(m, items, n_items, mtp_layer >= 0)) return -1;
    if (m->tp) return tp_forward(m, items, n_items, mtp_layer);
    return mtp_layer >= 0 ? mtp_items(m, items, n_items, mtp_layer, NULL) : forward_items(m, items, n_items, NULL);
}

int glint_forward_batch(glint_model *m, glint_batch_item *items, int n_items) {
    if (n_items <= 0) return 0;
    if (forward(m, items, n_items, -1)) return -1;
    for (int i = 0; i < n_items; i++) items[i].st->n_past += items[i].n_tokens;
    return 0;
}

int glint_forward_hidden(glint_model *m, glint_state *st, const int32_t *ids, int T, float *logits, int all_logits,
                         float *hidden) {
    if (T <= 0) return 0;
    glint_batch_item item = {st, ids, T, logits, all_logits, hidden, NULL, NULL, NULL, NULL, NULL, NULL};
    return glint_forward_batch(m, &item, 1);
}

int glint_forward(glint_model *m, glint_state *st, const int32_t *ids, int T, float *logits, int all_logits) {
    return glint_forward_hidden(m, st, ids, T, logits, all_logits, NULL);
}

static int mtp_forward(glint_model *m, glint_batch_item *items, int n_items, int layer) {
    if (!m->has_mtp) {
        glint_set_error("this checkpoint has no MTP layer");
        return -1;
    }
    return forward(m, items, n_items, layer);
}

int glint_mtp_forward(glint_model *m, glint_state *mtp_state, const float *hidden, const int32_t *next_ids, int T,
                      float *logits) {
    if (T <= 0) return 0;
    if (!mtp_state->own_pool || mtp_state->pool->n_layers != 1) {
        glint_set_error("glint_mtp_forward needs a state from glint_mtp_state_new");
        return -1;
    }
    glint_batch_item item = {mtp_state, next_ids, T, logits, 1, NULL, hidden, NULL, NULL, NULL, NULL, NULL};
    if (mtp_forward(m, &item, 1, 0)) return -1;
    mtp_state->n_past += T;
    return 0;
}

int glint_mtp_forward_batch(glint_model *m, glint_batch_item *items, int n_items) {
    if (n_items <= 0) return 0;
    const glint_kv_pool *pool = items[0].st->pool;
    if (items[0].st->own_pool || pool->n_layers != m->cfg.num_layers + 1) {
        glint_set_error("the MTP layer's cache is not in this KV pool (made without with_mtp)");
        return -1;
    }
    if (mtp_forward(m, items, n_items, m->cfg.num_layers)) return -1;
    for (int i = 0; i < n_items; i++) items[i].st->mtp_past += items[i].n_tokens;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Tensor parallelism (docs/multi-gpu-plan.md): rank r's model lives on a host thread of its own (a
// device backend's state belongs to the thread that drives it). Every call on the whole model runs
// its rank part on all the threads at once and waits for them; the ranks meet inside the forward at
// the backends' all-reduces.

typedef int (*rank_task)(glint_model *rank, int r, void *arg);

struct glint_tp {
    int n;
    glint_model *owner;
    glint_tp_link link;
    int connected;
    pthread_t threads[GLINT_MAX_TP];
    int started;
    pthread_mutex_t call_mu;  // one call at a time (threads of the caller's own, e.g. a server's, may race)
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    uint64_t generation;  // bumped for every task
    int pending, quit;
    rank_task task;
    void *arg;
    int rc[GLINT_MAX_TP];
    char error[GLINT_MAX_TP][1024];
};

typedef struct {
    struct glint_tp *tp;
    int rank;
} tp_thread_arg;

static void *tp_worker(void *p) {
    struct glint_tp *tp = ((tp_thread_arg *)p)->tp;
    const int r = ((tp_thread_arg *)p)->rank;
    free(p);
    uint64_t seen = 0;
    pthread_mutex_lock(&tp->mu);
    for (;;) {
        while (tp->generation == seen && !tp->quit) pthread_cond_wait(&tp->wake, &tp->mu);
        if (tp->quit) break;
        seen = tp->generation;
        const rank_task task = tp->task;
        void *arg = tp->arg;
        glint_model *rank = tp->owner->ranks[r];
        pthread_mutex_unlock(&tp->mu);
        const int rc = task(rank, r, arg);
        if (rc) snprintf(tp->error[r], sizeof tp->error[r], "%s", glint_last_error());
        pthread_mutex_lock(&tp->mu);
        tp->rc[r] = rc;
        if (--tp->pending == 0) pthread_cond_signal(&tp->done);
    }
    pthread_mutex_unlock(&tp->mu);
    return NULL;
}

// Runs task on every rank's thread and waits for all of them. 0, or -1 with the error of the first
// rank that failed.
static int tp_run(const glint_model *m, rank_task task, void *arg) {
    struct glint_tp *tp = m->tp;
    pthread_mutex_lock(&tp->call_mu);
    pthread_mutex_lock(&tp->mu);
    tp->task = task, tp->arg = arg, tp->pending = tp->n;
    tp->generation++;
    pthread_cond_broadcast(&tp->wake);
    while (tp->pending) pthread_cond_wait(&tp->done, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
    int rc = 0;
    for (int r = 0; r < tp->n && !rc; r++)
        if (tp->rc[r]) {
            glint_set_error("%s", tp->error[r]);
            if (tp->n > 1) glint_prefix_error("tensor-parallel rank %d: ", r);
            rc = -1;
        }
    pthread_mutex_unlock(&tp->call_mu);
    return rc;
}

typedef struct {
    glint_model *owner;
    const model_source *src;
    const glint_load_options *opts;
    glint_module_stats share[GLINT_MAX_TP][GLINT_KIND_COUNT];
} rank_load_job;

// Makes rank r's backend and model: its share of the heads, intermediate sizes and vocabulary.
static int rank_load(glint_model *unused, int r, void *arg) {
    (void)unused;
    rank_load_job *job = arg;
    const glint_config *cfg = &job->owner->cfg;
    const int N = job->opts->tp_size;
    glint_backend *be = job->opts->rank_backend(r, job->opts->rank_backend_ctx);
    glint_model *rm = be ? glint_calloc(1, sizeof *rm, "rank model") : NULL;
    if (!rm) {
        if (be && be->release) be->release(be);
        return -1;
    }
    job->owner->ranks[r] = rm;  // freed with the others if building it fails
    rm->be = be;
    rm->cfg = *cfg;
    rm->cfg.num_heads /= N;
    rm->cfg.moe_intermediate_size /= N;
    rm->cfg.intermediate_size /= N;
    rm->tp_size = N, rm->tp_rank = r;
    int64_t begin, rows;
    part_of(cfg->vocab_size, r, N, &begin, &rows);
    rm->vocab_begin = (int)begin, rm->vocab_rows = (int)rows;
    model_source src = *job->src;
    src.show_progress = src.show_progress && r == 0;  // the ranks load at once: rank 0's line stands for all
    return build_model(rm, &src, job->share[r]);
}

static int rank_connect(glint_model *rm, int r, void *arg) { return rm->be->tp_connect(rm->be, arg, r); }

static int rank_disconnect(glint_model *rm, int r, void *arg) {
    (void)r, (void)arg;
    rm->be->tp_disconnect(rm->be);
    return 0;
}

// The rank's model, then its backend when the rank holds it.
static int rank_free(glint_model *rm, int r, void *arg) {
    (void)r, (void)arg;
    glint_backend *be = rm ? rm->be : NULL;
    glint_model_free(rm);
    if (be && be->release) be->release(be);
    return 0;
}

// Frees the ranks' models (on their threads), then stops the threads.
static void tp_free(glint_model *m) {
    struct glint_tp *tp = m->tp;
    if (!tp) return;
    if (tp->started == tp->n) {
        if (tp->connected) tp_run(m, rank_disconnect, NULL);
        tp_run(m, rank_free, NULL);
    }
    pthread_mutex_lock(&tp->mu);
    tp->quit = 1;
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    for (int r = 0; r < tp->started; r++) pthread_join(tp->threads[r], NULL);
    pthread_barrier_destroy(&tp->link.barrier);
    pthread_cond_destroy(&tp->wake);
    pthread_cond_destroy(&tp->done);
    pthread_mutex_destroy(&tp->mu);
    pthread_mutex_destroy(&tp->call_mu);
    free(tp);
    free(m->ranks);
    m->tp = NULL, m->ranks = NULL;
}

// What tensor parallelism over N ranks needs of the config; 0, or -1 with the error set.
static int check_tp_config(const glint_config *c, int N) {
    int dense = 0, moe = 0;
    for (int l = 0; l < c->num_layers; l++) {
        if (c->layer_is_moe[l]) moe = 1;
        else dense = 1;
    }
    const char *what = NULL;
    int value = 0;
    if (c->num_heads % N) what = "num_attention_heads", value = c->num_heads;
    else if (moe && c->moe_intermediate_size % N) what = "moe_intermediate_size", value = c->moe_intermediate_size;
    else if (dense && c->intermediate_size % N) what = "intermediate_size", value = c->intermediate_size;
    if (what) {
        glint_set_error("tensor parallelism over %d ranks: %s = %d is not a multiple of %d", N, what, value, N);
        return -1;
    }
    return 0;
}

static glint_model *model_new_tp(const glint_config *cfg, const model_source *src, const glint_load_options *opts) {
    const int N = opts->tp_size;
    if (N < 2 || N > GLINT_MAX_TP || !opts->rank_backend) {
        glint_set_error("tensor parallelism over %d ranks: 2 to %d ranks, each with a backend", N, GLINT_MAX_TP);
        return NULL;
    }
    if (check_tp_config(cfg, N)) return NULL;
    glint_model *m = glint_calloc(1, sizeof *m, "model");
    struct glint_tp *tp = m ? glint_calloc(1, sizeof *tp, "tensor-parallel state") : NULL;
    rank_load_job *job = tp ? glint_calloc(1, sizeof *job, "rank load") : NULL;
    glint_model **ranks = job ? glint_calloc((size_t)N, sizeof *ranks, "rank table") : NULL;
    if (!ranks) {
        free(job), free(tp), free(m);
        return NULL;
    }
    m->cfg = *cfg;
    m->tp_size = N, m->vocab_rows = cfg->vocab_size;
    m->ranks = ranks, m->tp = tp;
    tp->n = N, tp->owner = m, tp->link.n_ranks = N;
    pthread_mutex_init(&tp->call_mu, NULL);
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->wake, NULL);
    pthread_cond_init(&tp->done, NULL);
    pthread_barrier_init(&tp->link.barrier, NULL, (unsigned)N);
    for (int r = 0; r < N; r++) {
        tp_thread_arg *arg = malloc(sizeof *arg);
        if (arg) arg->tp = tp, arg->rank = r;
        if (!arg || pthread_create(&tp->threads[r], NULL, tp_worker, arg)) {
            free(arg);
            glint_set_error("cannot start the thread of tensor-parallel rank %d", r);
            goto fail;
        }
        tp->started++;
    }
    job->owner = m, job->src = src, job->opts = opts;
    if (tp_run(m, rank_load, job)) goto fail;
    for (int r = 0; r < N; r++)
        if (!m->ranks[r]->be->tp_connect || !m->ranks[r]->be->tp_disconnect || !m->ranks[r]->be->all_reduce_sum) {
            glint_set_error("the %s backend cannot run tensor parallelism", m->ranks[r]->be->name);
            goto fail;
        }
    if (tp_run(m, rank_connect, &tp->link)) goto fail;
    tp->connected = 1;
    // The whole model's stats: every rank's part of the split weights, the others once.
    for (int r = 0; r < N; r++)
        for (int k = 0; k < GLINT_KIND_COUNT; k++) {
            m->kinds[k].stored_bytes += job->share[r][k].stored_bytes;
            m->kinds[k].params += job->share[r][k].params;
            m->kinds[k].formats |= job->share[r][k].formats;
        }
    finish_stats(m);
    m->be = m->ranks[0]->be;
    m->has_mtp = m->ranks[0]->has_mtp;
    for (int r = 0; r < N; r++) m->mtp_bytes += m->ranks[r]->mtp_bytes;
    free(job);
    return m;
fail:
    free(job);
    glint_model_free(m);
    return NULL;
}

typedef struct {
    glint_batch_item *items;
    int n_items, mtp_layer;
    rank_argmax ranked;
} tp_forward_job;

static int rank_forward(glint_model *rm, int r, void *arg) {
    (void)r;
    tp_forward_job *job = arg;
    return job->mtp_layer >= 0 ? mtp_items(rm, job->items, job->n_items, job->mtp_layer, &job->ranked)
                               : forward_items(rm, job->items, job->n_items, &job->ranked);
}

// Every rank runs the batch; the greedy answer of a row is the best of the ranks' answers for their
// vocabulary parts (ties: the lower rank, i.e. the lower id, as glint_argmax). A rank's part that
// starts with a NaN answers its first id with a NaN value, which never wins: only rank 0's NaN
// (the whole row's first value) is kept, as glint_argmax keeps it.
static int tp_forward(glint_model *m, glint_batch_item *items, int n_items, int mtp_layer) {
    const int N = m->tp_size;
    int asked = 0;
    for (int i = 0; i < n_items; i++)
        if (items[i].argmax && !items[i].sample) asked += items[i].all_logits ? items[i].n_tokens : 1;
    tp_forward_job job = {items, n_items, mtp_layer, {{0}, {0}}};
    int32_t *ids = asked ? glint_malloc((size_t)N * asked * (sizeof(int32_t) + sizeof(float)), "rank answers") : NULL;
    if (asked && !ids) return -1;
    for (int r = 0; r < N && asked; r++) {
        job.ranked.ids[r] = ids + (size_t)r * asked;
        job.ranked.values[r] = (float *)(ids + (size_t)N * asked) + (size_t)r * asked;
    }
    const int rc = tp_run(m, rank_forward, &job);
    for (int i = 0, k = 0; !rc && i < n_items; i++) {
        if (!items[i].argmax || items[i].sample) continue;  // draws: rank 0 declined them (finish_forward)
        const int n = items[i].all_logits ? items[i].n_tokens : 1;
        for (int j = 0; j < n; j++, k++) {
            int best = 0;
            for (int r = 1; r < N; r++)
                if (job.ranked.values[r][k] > job.ranked.values[best][k]) best = r;
            items[i].argmax[j] = job.ranked.ids[best][k] + m->ranks[best]->vocab_begin;
        }
    }
    free(ids);
    return rc;
}

static int rank_memory_info(glint_model *rm, int r, void *arg) {
    size_t *out = (size_t *)arg + 2 * r;
    if (!rm->be->memory_info) {
        glint_set_error("the %s backend does not report device memory", rm->be->name);
        return -1;
    }
    return rm->be->memory_info(rm->be, &out[0], &out[1]);
}

int glint_model_memory_info(glint_model *m, size_t *free_bytes, size_t *total_bytes) {
    size_t info[2 * GLINT_MAX_TP];
    const int N = m->tp ? m->tp_size : 1;
    if (each_rank(m, rank_memory_info, info)) return -1;
    *free_bytes = info[0], *total_bytes = info[1];
    for (int r = 1; r < N; r++) {
        if (info[2 * r] < *free_bytes) *free_bytes = info[2 * r];
        if (info[2 * r + 1] < *total_bytes) *total_bytes = info[2 * r + 1];
    }
    return 0;
}

int glint_model_can_sample(const glint_model *m) { return m->be && m->be->sample && m->tp_size <= 1; }
int glint_model_can_edit(const glint_model *m) { return m->be && m->be->edit_logits && m->tp_size <= 1; }
