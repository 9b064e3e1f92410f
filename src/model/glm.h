// GLM-MoE-DSA (GlmMoeDsaForCausalLM): the tensor table and the forward pass, written once against
// the backend contract (backend/backend.h). spec/GLM5.md is the reference for every step.
#ifndef GLINT_GLM_H
#define GLINT_GLM_H

#include <stdint.h>

#include "backend/backend.h"
#include "common/sampling.h"
#include "io/config.h"
#include "io/safetensors.h"

typedef struct {
    int is_moe, has_indexer;
    glint_weight input_norm, post_attn_norm;  // [D]
    // MLA
    glint_weight q_a;        // [Qr, D]
    glint_weight q_a_norm;   // [Qr]
    glint_weight q_b;        // [H·(Dn+Dr), Qr]
    glint_weight kv_a;       // [C+Dr, D]
    glint_weight kv_a_norm;  // [C]
    glint_weight kv_b;       // [H·(Dn+Dv), C]
    glint_weight o_proj;     // [D, H·Dv]
    // DSA indexer (F layers only)
    glint_weight idx_wq_b;          // [Hi·Di, Qr]
    glint_weight idx_wk;            // [Di, D]
    glint_weight idx_k_norm_w;      // [Di]
    glint_weight idx_k_norm_b;      // [Di]
    glint_weight idx_weights_proj;  // [Hi, D]
    // Dense MLP (is_moe == 0): gate/up [I, D], down [D, I]; MoE: shared expert with the same roles.
    glint_weight gate, up, down;
    // MoE (is_moe == 1)
    glint_weight router;       // [E, D]
    glint_weight router_bias;  // [E] e_score_correction_bias
    glint_weight *expert_gate, *expert_up, *expert_down;  // E each: [Im, D], [Im, D], [D, Im]
} glm_layer;

typedef struct glint_synthetic_block {
    struct glint_synthetic_block *next;
    _Alignas(64) unsigned char data[];
} glint_synthetic_block;

// Module kinds, for reporting formats and bytes (glint info, bench).
typedef enum {
    GLINT_KIND_EMBEDDING,
    GLINT_KIND_ATTENTION,
    GLINT_KIND_INDEXER,
    GLINT_KIND_DENSE_MLP,
    GLINT_KIND_ROUTER,
    GLINT_KIND_SHARED_EXPERT,
    GLINT_KIND_ROUTED_EXPERTS,
    GLINT_KIND_NORMS,
    GLINT_KIND_LM_HEAD,
    GLINT_KIND_COUNT
} glint_module_kind;

typedef struct {
    uint64_t stored_bytes;     // all weights of this kind
    uint64_t bytes_per_token;  // what one decode step reads of them
    uint64_t params;           // weight elements of this kind
    uint64_t params_per_token; // weight elements one token multiplies with (2 FLOPs each)
    uint32_t formats;          // bit d: dense dtype d; bit GLINT_DTYPE_COUNT + f: quantized format f
} glint_module_stats;

const char *glint_module_kind_name(glint_module_kind kind);

typedef struct glint_model glint_model;
struct glint_model {
    glint_config cfg;
    glint_checkpoint *ckpt;  // NULL for synthetic models
    glint_backend *be;
    glint_weight embed;       // [V, D]
    glint_weight final_norm;  // [D]
    glint_weight lm_head;     // [V, D]
    glm_layer *layers;
    // MTP / NextN layer (spec §2.10), when the checkpoint has one.
    int has_mtp;
    glm_layer mtp;
    glint_weight mtp_enorm, mtp_hnorm;  // [D]
    glint_weight mtp_eh_proj;           // [D, 2D], input [enorm(embed(next token)) | hnorm(hidden)]
    glint_weight mtp_head_norm;         // [D] shared_head.norm
    uint64_t mtp_bytes;
    uint64_t n_params;        // parameters of the main model (layers 0..L-1, embeddings, head)
    uint64_t weight_bytes;    // bytes of those weights as stored
    uint64_t bytes_per_token; // bytes a decode step reads: active experts only, lm_head, one embedding row
    uint64_t params_per_token;  // weight elements each token is multiplied with (not the embedding)
    glint_module_stats kinds[GLINT_KIND_COUNT];
    glint_synthetic_block *synthetic_blocks;  // synthetic models: the memory behind the weights
    void *forward_cache;  // decode activations kept across forwards when the backend replays steps (glm.c)
    // Tensor parallelism (docs/multi-gpu-plan.md). A model of tp_size > 1 holds no weights: ranks[r],
    // driven by a host thread of its own, holds rank r's share of every layer, and be is rank 0's
    // backend (for device queries; ops run on the ranks' threads). A rank's cfg has its share of the
    // attention heads and of the intermediate sizes; its stats count what its device holds and reads.
    int tp_size, tp_rank;
    glint_model **ranks;
    struct glint_tp *tp;
    int vocab_begin, vocab_rows;  // the lm_head rows (vocabulary entries) this model computes logits of
    int tied_lm_head;             // lm_head is (this model's rows of) the embedding
    void **weight_copies;         // host copies of weight parts (column cuts), NULL once the backend has its own
    size_t n_weight_copies, cap_weight_copies;
};

typedef struct {
    const char *override_json;  // --json-model-override-args
    const char *index_topk_pattern;  // --index-topk-pattern
    int show_progress;  // a progress line on stderr while the weights go to the backend (device upload)
    // Tensor parallelism over tp_size ranks (0 or 1: none). Rank r's backend is rank_backend(r, ctx),
    // called on rank r's thread; the loaders' `be` argument is not used then.
    int tp_size;
    glint_backend *(*rank_backend)(int rank, void *ctx);
    void *rank_backend_ctx;
} glint_load_options;

// Loads DIR (config.json + safetensors), checks every tensor's shape and dtype against the config.
// Returns NULL with the error set (naming file and tensor) on failure.
glint_model *glint_model_load(const char *dir, const glint_load_options *opts, glint_backend *be);
void glint_model_free(glint_model *m);
// A model of the config's shapes with random BF16 weights made in memory (benchmarks; no files).
glint_model *glint_model_synthetic(const glint_config *cfg, glint_backend *be);
// The same with the routed experts in `experts` format (GLINT_WFMT_DENSE: BF16, or GLINT_WFMT_NVFP4),
// made in backend memory when the backend can (be->synthesize).
glint_model *glint_model_synthetic_quant(const glint_config *cfg, glint_backend *be, glint_weight_format experts);
// The same split over opts->tp_size ranks (opts: tp_size, rank_backend, rank_backend_ctx).
glint_model *glint_model_synthetic_tp(const glint_config *cfg, glint_weight_format experts,
                                      const glint_load_options *opts);
// The smallest free and total memory of the model's devices (for KV pool sizing). 0, or -1 with the
// error set (also when the backend cannot tell).
int glint_model_memory_info(glint_model *m, size_t *free_bytes, size_t *total_bytes);

// A paged cache: per layer a pool of n_pages·page_size rows of MLA latents c_t [C] and rotated keys
// kpe_t [Dr] (spec §2.4) and, for layers with an indexer, indexer keys [Di]. Sequences (glint_state)
// hold pages; a page may be held by several (a shared prompt prefix) and is free when none does.
typedef struct {
    int page_size, n_pages, n_layers;
    int n_ranks;                       // tensor-parallel ranks: each keeps every layer's cache rows
    float **latent, **kpe, **index_k;  // [n_ranks·n_layers] each (rank r's layer l at r·n_layers + l):
                                       // backend memory [n_pages·page_size, width]
    int32_t *refs;                     // [n_pages] holders of each page
    int32_t *free_pages;               // stack of free page ids
    int n_free;
} glint_kv_pool;

// A pool of n_pages pages of page_size tokens for the main model's layers, plus the MTP layer's
// (layer num_layers) when with_mtp (the model must have one). NULL + error if the backend cannot
// allocate it.
glint_kv_pool *glint_kv_pool_new(const glint_model *m, int64_t n_pages, int page_size, int with_mtp);
void glint_kv_pool_free(const glint_model *m, glint_kv_pool *pool);

// One sequence: its pages (host list, in position order) and how many positions are cached.
typedef struct {
    glint_kv_pool *pool;
    int own_pool;  // made by glint_state_new: a private pool of one page, freed with the state
    int capacity;  // tokens the held pages can take (n_pages·page_size)
    int n_past;    // tokens already in the cache
    int mtp_past;  // pools with the MTP layer: positions whose MTP rows are in the cache
    int32_t *pages;
    int n_pages, cap_pages;
} glint_state;

// A sequence with a private contiguous cache of `capacity` tokens.
glint_state *glint_state_new(const glint_model *m, int capacity);
// An empty sequence in a shared pool (no pages until glint_state_reserve).
glint_state *glint_state_in_pool(glint_kv_pool *pool);
void glint_state_free(const glint_model *m, glint_state *st);
// Takes pages from the pool until the state can hold `tokens` tokens. Returns 0, or 1 (nothing
// taken) when the pool has too few free pages.
int glint_state_reserve(glint_state *st, int tokens);
// Gives back the pages beyond those holding the cached tokens.
void glint_state_trim(glint_state *st);
// Keeps the first n cached tokens (and at most n MTP rows) and gives back the pages after them. A page that would be written
// next but is shared with another holder is given back too (n is rounded down to its start).
// Returns the new n_past.
int glint_state_truncate(glint_state *st, int n);
// dst (empty, same pool) gets the first n cached tokens of src (and its MTP rows among them): whole
// pages are shared, the rows of a last partial page are copied into a page of dst's own. Returns 0,
// 1 when no page is free. (MTP row p pairs position p with token p + 1: a dst whose token n may
// differ from src's must not use row n - 1.)
int glint_state_share_prefix(const glint_model *m, glint_state *dst, const glint_state *src, int n);
// Bytes of cache per token of context.
uint64_t glint_state_bytes_per_token(const glint_config *cfg);

// The MTP layer's cache: one layer with its own indexer keys.
glint_state *glint_mtp_state_new(const glint_model *m, int capacity);

// One sequence's part of a batched forward: n_tokens new tokens appended at st->n_past.
typedef struct {
    glint_state *st;
    const int32_t *ids;
    int n_tokens;
    float *logits;   // host: [V] of the last token, [n_tokens, V] with all_logits, or NULL (none)
    int all_logits;
    float *hidden;   // host, optional: the final-norm hidden states of every row [n_tokens, D]
    const float *hidden_in;  // MTP forwards: the main model's hidden states the rows pair with [n_tokens, D]
    int32_t *argmax;  // host, optional: glint_argmax of the logits of the rows `logits` would get (the
                      // last, or every one with all_logits), computed where the logits are
    // host, optional, with argmax: argmax gets each row's draw instead (common/sampling.h's rules
    // sample[j] with the uniform uniforms[j]), made where the logits are when the model can
    // (glint_model_can_sample); -1 for a row it could not draw, whose logits then go to `logits`
    // (which must be set; only those rows are written).
    const glint_sample_params *sample;
    const double *uniforms;
    // host, optional, with argmax: before the argmax or draw, row j's logits get the edits
    // edits[o_j .. o_j + n_edits[j]) (o_j: the sum of the rows' counts before j), where the logits are
    // (glint_model_can_edit must hold); the logits of a row the backend declines to draw come edited.
    const glint_logit_edit *edits;
    const int *n_edits;
} glint_batch_item;

// 1 when the backend draws sampled tokens where the logits are (glint_batch_item.sample).
int glint_model_can_sample(const glint_model *m);
// 1 when the backend edits logits where they are (glint_batch_item.edits).
int glint_model_can_edit(const glint_model *m);

// Runs several sequences' tokens as one batch (every weight is read once for all of them); each
// row's result is the same as in a forward of its sequence alone. The states must share one pool
// (or be a single item). Returns 0, or -1 with the error set (nothing is appended then).
int glint_forward_batch(glint_model *m, glint_batch_item *items, int n_items);

// Runs T tokens at positions n_past.. and appends them to the cache. Writes logits of every
// position ([T, V]) when all_logits, else of the last position only ([V]), to host memory.
// Returns 0, or -1 with the error set (context full, out of memory).
int glint_forward(glint_model *m, glint_state *st, const int32_t *ids, int T, float *logits, int all_logits);
// The same, also writing the final-norm hidden states of the returned positions to hidden ([n, D]).
int glint_forward_hidden(glint_model *m, glint_state *st, const int32_t *ids, int T, float *logits, int all_logits,
                         float *hidden);
// MTP draft logits [T, V] for positions n_past.. of mtp_state: row t from the main model's final-norm
// hidden state at that position (hidden [T, D], host) and the token that follows it (next_ids).
// mtp_state is a private MTP cache (glint_mtp_state_new).
int glint_mtp_forward(glint_model *m, glint_state *mtp_state, const float *hidden, const int32_t *next_ids, int T,
                      float *logits);
// The MTP layer for several sequences of a pool made with_mtp: item i's rows are positions
// st->mtp_past.. (ids: the tokens that follow them, hidden_in: the main model's hidden states there;
// logits as in glint_forward_batch), and st->mtp_past advances. Row results do not depend on the batch.
int glint_mtp_forward_batch(glint_model *m, glint_batch_item *items, int n_items);

#endif
