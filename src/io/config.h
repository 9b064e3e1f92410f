// config.json of a GlmMoeDsaForCausalLM checkpoint (spec/GLM5.md §1), with sglang-style overrides.
#ifndef GLINT_CONFIG_H
#define GLINT_CONFIG_H

#include <stdint.h>

#define GLINT_MAX_LAYERS 256
#define GLINT_MAX_EOS 16

typedef struct {
    int vocab_size;
    int hidden_size;            // D
    int intermediate_size;      // dense MLP
    int moe_intermediate_size;  // each routed expert
    int num_layers;
    int num_heads;              // H
    int q_lora_rank;            // Qr
    int kv_lora_rank;           // C
    int qk_nope_head_dim;       // Dn
    int qk_rope_head_dim;       // Dr
    int v_head_dim;             // Dv
    int n_routed_experts;       // E
    int n_shared_experts;
    int num_experts_per_tok;    // top-k experts
    int n_group, topk_group;
    int norm_topk_prob;
    float routed_scaling_factor;
    float rms_norm_eps;
    int index_n_heads;          // Hi
    int index_head_dim;         // Di
    int index_topk;             // K
    int max_position_embeddings;
    int num_nextn_predict_layers;
    int tie_word_embeddings;
    // Per layer: MoE (1) or dense MLP (0); runs its own indexer (1, "F") or reuses the last one (0, "S").
    uint8_t layer_is_moe[GLINT_MAX_LAYERS];
    uint8_t layer_has_indexer[GLINT_MAX_LAYERS];
    // RoPE: inverse frequencies of the Dr/2 pairs, the cos/sin scale (YaRN attention factor) and the
    // softmax scale 1/sqrt(Dn+Dr) times the YaRN mscale^2 when rope_type is not default.
    char rope_type[32];
    float rope_theta;
    float rope_inv_freq[128];
    float rope_attention_factor;
    float softmax_scale;
    int eos_ids[GLINT_MAX_EOS];
    int n_eos;
    int bos_id, pad_id;  // -1 if absent
} glint_config;

// Reads DIR/config.json, merges the JSON object override_json (may be NULL) into it, applies an
// F/S pattern override (may be NULL), validates. Returns 0, or -1 with the error set.
int glint_config_load(const char *dir, const char *override_json, const char *index_topk_pattern,
                      glint_config *cfg);
// Same from a JSON text (for synthetic models and tests); name is used in error messages.
int glint_config_parse(const char *json_text, const char *name, const char *override_json,
                       const char *index_topk_pattern, glint_config *cfg);

// Adds the eos_token_id(s) of DIR/generation_config.json (if the file exists) to cfg's stop ids.
int glint_config_merge_generation_eos(const char *dir, glint_config *cfg);

#endif
