// GLM-MoE-DSA (GlmMoeDsaForCausalLM): the tensor table and the forward pass, written once against
// the backend contract (backend/backend.h). spec/GLM5.md is the reference for every step.
#ifndef GLINT_GLM_H
#define GLINT_GLM_H

#include <stdint.h>

#include "backend/backend.h"
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

typedef struct {
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
} glint_model;

typedef struct {
    const char *override_json;  // --json-model-override-args
    const char *index_topk_pattern;  // --index-topk-pattern
} glint_load_options;

// Loads DIR (config.json + safetensors), checks every tensor's shape and dtype against the config.
// Returns NULL with the error set (naming file and tensor) on failure.
glint_model *glint_model_load(const char *dir, const glint_load_options *opts, glint_backend *be);
void glint_model_free(glint_model *m);
// A model of the config's shapes with random BF16 weights made in memory (benchmarks; no files).
glint_model *glint_model_synthetic(const glint_config *cfg, glint_backend *be);

// One sequence's caches: per layer the MLA latent c_t [ctx, C] and rotated key kpe_t [ctx, Dr]
// (spec §2.4), and for F layers the indexer keys [ctx, Di].
typedef struct {
    int capacity;  // tokens
    int n_past;    // tokens already in the cache
    float **latent, **kpe, **index_k;
    int n_layers;
} glint_state;

glint_state *glint_state_new(const glint_model *m, int capacity);
void glint_state_free(const glint_model *m, glint_state *st);
// Bytes of cache per token of context.
uint64_t glint_state_bytes_per_token(const glint_config *cfg);

// The MTP layer's cache: one layer with its own indexer keys.
glint_state *glint_mtp_state_new(const glint_model *m, int capacity);

// Runs T tokens at positions n_past.. and appends them to the cache. Writes logits of every
// position ([T, V]) when all_logits, else of the last position only ([V]), to host memory.
// Returns 0, or -1 with the error set (context full, out of memory).
int glint_forward(glint_model *m, glint_state *st, const int32_t *ids, int T, float *logits, int all_logits);
// The same, also writing the final-norm hidden states of the returned positions to hidden ([n, D]).
int glint_forward_hidden(glint_model *m, glint_state *st, const int32_t *ids, int T, float *logits, int all_logits,
                         float *hidden);
// MTP draft logits [T, V] for positions n_past.. of mtp_state: row t from the main model's final-norm
// hidden state at that position (hidden [T, D], host) and the token that follows it (next_ids).
int glint_mtp_forward(glint_model *m, glint_state *mtp_state, const float *hidden, const int32_t *next_ids, int T,
                      float *logits);

#endif
