#include "io/config.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_file.h"
#include "common/util.h"

typedef struct {
    json_t *root;
    const char *name;
    int failed;
} reader;

static int get_int(reader *r, const char *key, int fallback, int required) {
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        if (required && !r->failed) {
            glint_set_error("%s: missing required field \"%s\"", r->name, key);
            r->failed = 1;
        }
        return fallback;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000000) {
        if (!r->failed) glint_set_error("%s: field \"%s\" must be an integer in 0..1000000000", r->name, key);
        r->failed = 1;
        return fallback;
    }
    return (int)json_integer_value(v);
}

static double get_num(reader *r, const char *key, double fallback) {
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) return fallback;
    if (!json_is_number(v)) {
        if (!r->failed) glint_set_error("%s: field \"%s\" must be a number", r->name, key);
        r->failed = 1;
        return fallback;
    }
    return json_number_value(v);
}

static int get_bool(reader *r, const char *key, int fallback) {
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) return fallback;
    if (!json_is_boolean(v)) {
        if (!r->failed) glint_set_error("%s: field \"%s\" must be true or false", r->name, key);
        r->failed = 1;
        return fallback;
    }
    return json_is_true(v);
}

static double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0; }

static double yarn_correction_dim(double rotations, int dim, double base, double max_pos) {
    return (dim * log(max_pos / (rotations * 2 * M_PI))) / (2 * log(base));
}

// Frequencies as transformers computes them (float32 arithmetic), so rope angles match the oracle.
static int setup_rope(reader *r, glint_config *c) {
    json_t *rp = json_object_get(r->root, "rope_parameters");
    json_t *legacy = json_object_get(r->root, "rope_scaling");
    if (!json_is_object(rp)) rp = json_is_object(legacy) ? legacy : NULL;
    double theta = get_num(r, "rope_theta", 10000.0);
    const char *type = "default";
    if (rp) {
        json_t *t = json_object_get(rp, "rope_type");
        if (!json_is_string(t)) t = json_object_get(rp, "type");
        if (json_is_string(t)) type = json_string_value(t);
        json_t *th = json_object_get(rp, "rope_theta");
        if (json_is_number(th)) theta = json_number_value(th);
        else if (th && !json_is_null(th)) r->failed = 1, glint_set_error("%s: rope_theta must be a number", r->name);
    }
    if (r->failed) return -1;
    if (!(theta > 0) || !isfinite((float)theta)) {
        glint_set_error("%s: rope_theta %g must be a positive number", r->name, theta);
        return -1;
    }
    snprintf(c->rope_type, sizeof c->rope_type, "%s", type);
    c->rope_theta = (float)theta;
    int dim = c->qk_rope_head_dim;
    if (dim <= 0 || dim % 2 || dim / 2 > 128) {
        glint_set_error("%s: qk_rope_head_dim %d must be even and at most 256", r->name, dim);
        return -1;
    }
    float pos_freq[128];
    for (int i = 0; i < dim / 2; i++) {
        float exponent = (float)(2 * i) / (float)dim;
        pos_freq[i] = powf((float)theta, exponent);
        c->rope_inv_freq[i] = 1.0f / pos_freq[i];
    }
    c->rope_attention_factor = 1.0f;
    c->softmax_scale = (float)(1.0 / sqrt((double)(c->qk_nope_head_dim + c->qk_rope_head_dim)));
    if (!strcmp(type, "default")) return 0;
    if (strcmp(type, "yarn")) {
        glint_set_error("%s: rope type \"%s\" is not supported (default and yarn are)", r->name, type);
        return -1;
    }
    reader rr = {rp, r->name, 0};
    double original = get_num(&rr, "original_max_position_embeddings", 0);
    double factor = get_num(&rr, "factor", 0);
    if (rr.failed) return -1;  // (the error names the field)
    if (json_object_get(rp, "factor") && !json_is_null(json_object_get(rp, "factor")) && !(factor > 0)) {
        glint_set_error("%s: yarn factor %g must be positive", r->name, factor);
        return -1;
    }
    if (original <= 0) {
        glint_set_error("%s: yarn rope_parameters need original_max_position_embeddings", r->name);
        return -1;
    }
    if (factor <= 0) factor = c->max_position_embeddings / original;
    double mscale = get_num(&rr, "mscale", 0), mscale_all_dim = get_num(&rr, "mscale_all_dim", 0);
    json_t *af = json_object_get(rp, "attention_factor");
    if (json_is_number(af)) c->rope_attention_factor = (float)json_number_value(af);
    else if (mscale != 0 && mscale_all_dim != 0)
        c->rope_attention_factor = (float)(yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim));
    else c->rope_attention_factor = (float)yarn_mscale(factor, 1.0);
    double beta_fast = get_num(&rr, "beta_fast", 0), beta_slow = get_num(&rr, "beta_slow", 0);
    if (rr.failed) return -1;
    if (beta_fast == 0) beta_fast = 32;
    if (beta_slow == 0) beta_slow = 1;
    json_t *tr = json_object_get(rp, "truncate");
    int truncate = tr ? json_is_true(tr) : 1;
    double low = yarn_correction_dim(beta_fast, dim, theta, original);
    double high = yarn_correction_dim(beta_slow, dim, theta, original);
    if (truncate) low = floor(low), high = ceil(high);
    if (low < 0) low = 0;
    if (high > dim - 1) high = dim - 1;
    if (low == high) high += 0.001;
    for (int i = 0; i < dim / 2; i++) {
        float ramp = ((float)i - (float)low) / (float)(high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float extrapolation_weight = 1.0f - ramp;
        float extrapolated = 1.0f / pos_freq[i];
        float interpolated = 1.0f / ((float)factor * pos_freq[i]);
        c->rope_inv_freq[i] = interpolated * (1.0f - extrapolation_weight) + extrapolated * extrapolation_weight;
    }
    if (mscale_all_dim != 0) {
        double m = yarn_mscale(factor, mscale_all_dim);
        c->softmax_scale = (float)(c->softmax_scale * m * m);
    }
    return 0;
}

// Layer i runs its own indexer per indexer_types, index_topk_pattern, or index_topk_freq/offset.
static int setup_indexer_layers(reader *r, glint_config *c, const char *cli_pattern) {
    int n = c->num_layers;
    json_t *types = json_object_get(r->root, "indexer_types");
    json_t *pattern = json_object_get(r->root, "index_topk_pattern");
    const char *pat = cli_pattern ? cli_pattern : json_is_string(pattern) ? json_string_value(pattern) : NULL;
    if (pat) {
        size_t len = strlen(pat);
        if ((int)len != n && (int)len != n + c->num_nextn_predict_layers) {
            glint_set_error("%s: index_topk_pattern has %zu letters but the model has %d layers", r->name, len, n);
            return -1;
        }
        for (int i = 0; i < n; i++) {
            if (pat[i] != 'F' && pat[i] != 'S') {
                glint_set_error("%s: index_topk_pattern letter %d is '%c' (only F and S are allowed)", r->name, i + 1,
                                pat[i]);
                return -1;
            }
            c->layer_has_indexer[i] = pat[i] == 'F';
        }
    } else if (json_is_array(types)) {
        if ((int)json_array_size(types) != n) {
            glint_set_error("%s: indexer_types has %zu entries but the model has %d layers", r->name,
                            json_array_size(types), n);
            return -1;
        }
        for (int i = 0; i < n; i++) {
            const char *s = json_string_value(json_array_get(types, (size_t)i));
            if (!s || (strcmp(s, "full") && strcmp(s, "shared"))) {
                glint_set_error("%s: indexer_types[%d] must be \"full\" or \"shared\"", r->name, i);
                return -1;
            }
            c->layer_has_indexer[i] = !strcmp(s, "full");
        }
    } else {
        int freq = get_int(r, "index_topk_freq", 1, 0), offset = get_int(r, "index_skip_topk_offset", 2, 0);
        if (freq < 1) freq = 1;
        for (int i = 0; i < n; i++) {
            int k = i - offset + 1;
            c->layer_has_indexer[i] = ((k > 0 ? k : 0) % freq) == 0;
        }
    }
    if (!c->layer_has_indexer[0]) {
        glint_set_error("%s: layer 0 must run its own indexer (pattern must start with F)", r->name);
        return -1;
    }
    return 0;
}

static int setup_mlp_layers(reader *r, glint_config *c) {
    json_t *types = json_object_get(r->root, "mlp_layer_types");
    if (json_is_array(types)) {
        if ((int)json_array_size(types) != c->num_layers) {
            glint_set_error("%s: mlp_layer_types has %zu entries but the model has %d layers", r->name,
                            json_array_size(types), c->num_layers);
            return -1;
        }
        for (int i = 0; i < c->num_layers; i++) {
            const char *s = json_string_value(json_array_get(types, (size_t)i));
            if (!s || (strcmp(s, "dense") && strcmp(s, "sparse"))) {
                glint_set_error("%s: mlp_layer_types[%d] must be \"dense\" or \"sparse\"", r->name, i);
                return -1;
            }
            c->layer_is_moe[i] = !strcmp(s, "sparse");
        }
        return 0;
    }
    int first_dense = get_int(r, "first_k_dense_replace", 3, 0), freq = get_int(r, "moe_layer_freq", 1, 0);
    if (r->failed) return -1;  // (the error names the field)
    if (freq < 1) freq = 1;
    for (int i = 0; i < c->num_layers; i++) c->layer_is_moe[i] = i >= first_dense && i % freq == 0;
    return 0;
}

// eos_token_id: an integer or a list of at most GLINT_MAX_EOS, each a token of the vocabulary (file
// `name`, for the message); appended to c->eos_ids unless there already.
static int add_eos_ids(const json_t *eos, const char *name, glint_config *c) {
    const size_t n = json_is_array(eos) ? json_array_size(eos) : 1;
    if (!eos || json_is_null(eos)) return 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_is_array(eos) ? json_array_get(eos, i) : eos;
        if (!json_is_integer(v) || n > GLINT_MAX_EOS) {
            glint_set_error("%s: eos_token_id must be an integer or a list of at most %d integers", name, GLINT_MAX_EOS);
            return -1;
        }
        const json_int_t id = json_integer_value(v);
        if (id < 0 || id >= c->vocab_size) {
            glint_set_error("%s: eos_token_id %lld is not a token id (0..%d)", name, (long long)id, c->vocab_size - 1);
            return -1;
        }
        int seen = 0;
        for (int k = 0; k < c->n_eos; k++) seen |= c->eos_ids[k] == (int)id;
        if (!seen && c->n_eos < GLINT_MAX_EOS) c->eos_ids[c->n_eos++] = (int)id;
    }
    return 0;
}

static int setup_special_ids(reader *r, glint_config *c) {
    c->n_eos = 0;
    if (add_eos_ids(json_object_get(r->root, "eos_token_id"), r->name, c)) return -1;
    json_t *bos = json_object_get(r->root, "bos_token_id"), *pad = json_object_get(r->root, "pad_token_id");
    c->bos_id = json_is_integer(bos) ? (int)json_integer_value(bos) : -1;
    c->pad_id = json_is_integer(pad) ? (int)json_integer_value(pad) : -1;
    return 0;
}

static int is_supported_architecture(json_t *root) {
    json_t *archs = json_object_get(root, "architectures"), *mt = json_object_get(root, "model_type");
    size_t i;
    json_t *v;
    if (json_is_array(archs) && json_array_size(archs)) {  // what transformers instantiates: it decides
        json_array_foreach(archs, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), "GlmMoeDsaForCausalLM"))
            return 1;
        return 0;
    }
    return json_is_string(mt) && !strcmp(json_string_value(mt), "glm_moe_dsa");
}

static int fill_config(reader *r, const char *cli_pattern, glint_config *c) {
    memset(c, 0, sizeof *c);
    if (!is_supported_architecture(r->root)) {
        json_t *archs = json_object_get(r->root, "architectures");
        char *found = archs ? json_dumps(archs, JSON_COMPACT) : NULL;
        glint_set_error("%s: unsupported architecture %s (glint runs GlmMoeDsaForCausalLM / glm_moe_dsa)", r->name,
                        found ? found : "(none given)");
        free(found);
        return -1;
    }
    c->vocab_size = get_int(r, "vocab_size", 0, 1);
    c->hidden_size = get_int(r, "hidden_size", 0, 1);
    c->intermediate_size = get_int(r, "intermediate_size", 0, 1);
    c->moe_intermediate_size = get_int(r, "moe_intermediate_size", 0, 1);
    c->num_layers = get_int(r, "num_hidden_layers", 0, 1);
    c->num_heads = get_int(r, "num_attention_heads", 0, 1);
    c->q_lora_rank = get_int(r, "q_lora_rank", 0, 1);
    c->kv_lora_rank = get_int(r, "kv_lora_rank", 0, 1);
    c->qk_nope_head_dim = get_int(r, "qk_nope_head_dim", 0, 1);
    c->qk_rope_head_dim = get_int(r, "qk_rope_head_dim", 0, 1);
    c->v_head_dim = get_int(r, "v_head_dim", 0, 1);
    c->n_routed_experts = get_int(r, "n_routed_experts", 0, 1);
    c->n_shared_experts = get_int(r, "n_shared_experts", 1, 0);
    c->num_experts_per_tok = get_int(r, "num_experts_per_tok", 0, 1);
    c->n_group = get_int(r, "n_group", 1, 0);
    c->topk_group = get_int(r, "topk_group", 1, 0);
    c->norm_topk_prob = get_bool(r, "norm_topk_prob", 1);
    c->routed_scaling_factor = (float)get_num(r, "routed_scaling_factor", 1.0);
    c->rms_norm_eps = (float)get_num(r, "rms_norm_eps", 1e-6);
    c->index_n_heads = get_int(r, "index_n_heads", 32, 0);
    c->index_head_dim = get_int(r, "index_head_dim", 128, 0);
    c->index_topk = get_int(r, "index_topk", 2048, 0);
    c->max_position_embeddings = get_int(r, "max_position_embeddings", 0, 1);
    c->num_nextn_predict_layers = get_int(r, "num_nextn_predict_layers", 0, 0);
    c->tie_word_embeddings = get_bool(r, "tie_word_embeddings", 0);
    if (r->failed) return -1;
    json_t *act = json_object_get(r->root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu"))) {
        glint_set_error("%s: hidden_act must be \"silu\"", r->name);
        return -1;
    }
    if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps) || !(c->routed_scaling_factor > 0) ||
        !isfinite(c->routed_scaling_factor)) {  // (as floats: 1e300 is no float)
        glint_set_error("%s: rms_norm_eps (%g) and routed_scaling_factor (%g) must be positive float numbers", r->name,
                        (double)c->rms_norm_eps, (double)c->routed_scaling_factor);
        return -1;
    }
    if (get_bool(r, "attention_bias", 0)) {
        glint_set_error("%s: attention_bias true is not supported (GLM-5 has no attention biases)", r->name);
        return -1;
    }
    if (c->num_layers < 1 || c->num_layers > GLINT_MAX_LAYERS) {
        glint_set_error("%s: num_hidden_layers %d out of range 1..%d", r->name, c->num_layers, GLINT_MAX_LAYERS);
        return -1;
    }
    if (c->hidden_size < 1 || c->vocab_size < 1 || c->num_heads < 1 || c->kv_lora_rank < 1 || c->q_lora_rank < 1 ||
        c->v_head_dim < 1 || c->index_n_heads < 1 || c->index_topk < 1 || c->max_position_embeddings < 1) {
        glint_set_error("%s: hidden_size, vocab_size, heads, lora ranks, v_head_dim, index sizes and "
                        "max_position_embeddings must be positive",
                        r->name);
        return -1;
    }
    // Sizes the model forms as products of these fields (ints): each must stay below 2^31.
    const struct {
        const char *what;
        int64_t a, b;
    } products[] = {
        {"moe_intermediate_size x n_shared_experts", c->moe_intermediate_size, c->n_shared_experts},
        {"num_attention_heads x (qk_nope_head_dim + qk_rope_head_dim)", c->num_heads,
         (int64_t)c->qk_nope_head_dim + c->qk_rope_head_dim},
        {"num_attention_heads x v_head_dim", c->num_heads, c->v_head_dim},
        {"num_attention_heads x kv_lora_rank", c->num_heads, c->kv_lora_rank},
        {"index_n_heads x index_head_dim", c->index_n_heads, c->index_head_dim},
    };
    for (size_t i = 0; i < sizeof products / sizeof products[0]; i++)
        if (products[i].a * products[i].b > INT32_MAX) {
            glint_set_error("%s: %s = %lld x %lld is too large (at most %d)", r->name, products[i].what,
                            (long long)products[i].a, (long long)products[i].b, INT32_MAX);
            return -1;
        }
    if (c->index_head_dim < c->qk_rope_head_dim) {
        glint_set_error("%s: index_head_dim %d is smaller than qk_rope_head_dim %d", r->name, c->index_head_dim,
                        c->qk_rope_head_dim);
        return -1;
    }
    if (setup_mlp_layers(r, c)) return -1;
    int any_moe = 0;
    for (int i = 0; i < c->num_layers; i++) any_moe |= c->layer_is_moe[i];
    if (any_moe) {
        if (c->n_routed_experts < 1 || c->num_experts_per_tok < 1 || c->num_experts_per_tok > c->n_routed_experts ||
            c->n_group < 1 || c->n_routed_experts % c->n_group || c->topk_group < 1 || c->topk_group > c->n_group ||
            c->num_experts_per_tok > c->topk_group * (c->n_routed_experts / c->n_group)) {
            glint_set_error("%s: inconsistent routing: %d experts, top-%d, %d groups keeping %d", r->name,
                            c->n_routed_experts, c->num_experts_per_tok, c->n_group, c->topk_group);
            return -1;
        }
        if (c->n_routed_experts > 1024) {
            glint_set_error("%s: %d routed experts (at most 1024 supported)", r->name, c->n_routed_experts);
            return -1;
        }
        if (c->n_group > 1 && c->n_routed_experts / c->n_group < 2) {
            glint_set_error("%s: n_group > 1 needs at least 2 experts per group", r->name);
            return -1;
        }
    }
    if (setup_rope(r, c) || setup_indexer_layers(r, c, cli_pattern) || setup_special_ids(r, c)) return -1;
    return 0;
}

int glint_config_parse(const char *json_text, const char *name, const char *override_json,
                       const char *index_topk_pattern, glint_config *cfg) {
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr);
    if (!root || !json_is_object(root)) {
        if (root) glint_set_error("%s: not a JSON object", name);
        else glint_set_error("%s: not valid JSON at line %d column %d: %s", name, jerr.line, jerr.column, jerr.text);
        json_decref(root);
        return -1;
    }
    if (override_json) {
        json_t *ov = json_loads(override_json, 0, &jerr);
        if (!ov || !json_is_object(ov)) {
            if (ov) glint_set_error("--json-model-override-args: must be a JSON object");
            else glint_set_error("--json-model-override-args: not valid JSON at column %d: %s", jerr.column, jerr.text);
            json_decref(ov);
            json_decref(root);
            return -1;
        }
        // An override that re-specifies the indexer schedule replaces the one stored in the file.
        if (json_object_get(ov, "index_topk_pattern") || json_object_get(ov, "index_topk_freq") ||
            json_object_get(ov, "index_skip_topk_offset"))
            json_object_del(root, "indexer_types");
        json_object_update(root, ov);
        json_decref(ov);
    }
    reader r = {root, name, 0};
    int rc = fill_config(&r, index_topk_pattern, cfg);
    json_decref(root);
    return rc;
}

int glint_config_load(const char *dir, const char *override_json, const char *index_topk_pattern,
                      glint_config *cfg) {
    char *path = glint_path_join(dir, "config.json");
    if (!path) return -1;
    char *text = glint_check_regular_file(path) ? NULL : glint_read_text_file(path, NULL);
    int rc = text ? glint_config_parse(text, path, override_json, index_topk_pattern, cfg) : -1;
    free(text);
    free(path);
    return rc;
}

int glint_config_merge_generation_eos(const char *dir, glint_config *cfg) {
    char *path = glint_path_join(dir, "generation_config.json");
    if (!path) return -1;
    json_t *root;
    int rc = glint_json_file(path, 0, &root) < 0 ? -1 : 0;  // an optional file
    if (root && add_eos_ids(json_object_get(root, "eos_token_id"), path, cfg)) rc = -1;
    json_decref(root);
    free(path);
    return rc;
}
