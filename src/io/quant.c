#include "io/quant.h"

#include <fnmatch.h>
#include <jansson.h>
#include <math.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_file.h"
#include "common/util.h"

// ---------------------------------------------------------------------------------------------
// Quantization config

static void add_excludes(glint_quant_config *qc, json_t *list) {
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (json_is_string(v) && qc->n_excludes < GLINT_MAX_EXCLUDES)
            qc->excludes[qc->n_excludes++] = glint_strdup(json_string_value(v));
    }
}

// An optional integer field in 1..2^20: the fallback when absent; else *failed with the error set.
static int int_field(json_t *obj, const char *key, int fallback, const glint_quant_config *qc, int *failed) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return fallback;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 20)) {
        if (!*failed) glint_set_error("%s: quantization field \"%s\" must be an integer in 1..%d", qc->source, key, 1 << 20);
        *failed = 1;
        return fallback;
    }
    return (int)json_integer_value(v);
}

// 0 when algo is a ModelOpt algorithm whose weights glint runs (MIXED_PRECISION only at the top level,
// where: "quant_algo"; else the module of quantized_layers); else -1 with the error set.
static int check_modelopt_algo(const glint_quant_config *qc, const char *algo, const char *where, int top) {
    static const char *algos[] = {"NVFP4", "W4A16_NVFP4", "W4A8_NVFP4_FP8", "FP8", "MIXED_PRECISION"};
    for (int i = 0; i < 5 - !top; i++)
        if (!strcmp(algo, algos[i])) return 0;
    glint_set_error("%s: %s \"%s\" is not supported (NVFP4, W4A16_NVFP4, W4A8_NVFP4_FP8, FP8%s are)", qc->source,
                    where, algo, top ? ", MIXED_PRECISION" : "");
    return -1;
}

// A compressed-tensors "re:" ignore pattern, compiled to match whole module names.
static pcre2_code *compile_exclude(const char *pattern, int *errcode, PCRE2_SIZE *erroffset) {
    return pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_ENDANCHORED, errcode,
                         erroffset, NULL);
}

// 0 when pattern compiles (compile_exclude); else -1 with the error set.
static int check_regex(const glint_quant_config *qc, const char *pattern) {
    int errcode;
    PCRE2_SIZE erroffset;
    pcre2_code *re = compile_exclude(pattern, &errcode, &erroffset);
    if (re) {
        pcre2_code_free(re);
        return 0;
    }
    PCRE2_UCHAR why[128];
    pcre2_get_error_message(errcode, why, sizeof why);
    glint_set_error("%s: ignore pattern 're:%s' is not a regular expression: %s at offset %zu", qc->source, pattern,
                    (const char *)why, (size_t)erroffset);
    return -1;
}

static int parse_quantization_config(json_t *q, glint_quant_config *qc) {
    const char *method = json_string_value(json_object_get(q, "quant_method"));
    if (!method) {
        glint_set_error("%s: quantization_config has no quant_method", qc->source);
        return -1;
    }
    const char *algo = json_string_value(json_object_get(q, "quant_algo"));
    snprintf(qc->algo, sizeof qc->algo, "%s", algo ? algo : "");
    int failed = 0;
    if (!strncmp(method, "modelopt", 8)) {
        qc->method = GLINT_QUANT_MODELOPT;
        // The formats are read from the tensors; an algorithm named here must be one whose weights are
        // just those (AWQ variants also scale the activations: pre_quant_scale, which glint does not apply).
        // W4A8_NVFP4_FP8 stores NVFP4 weights; glint runs them with higher-precision activations.
        if (algo && check_modelopt_algo(qc, algo, "quant_algo", 1)) return -1;
        const char *module;
        json_t *layer;
        json_object_foreach(json_object_get(q, "quantized_layers"), module, layer) {  // MIXED_PRECISION's map
            const char *layer_algo = json_string_value(json_object_get(layer, "quant_algo"));
            if (!layer_algo || check_modelopt_algo(qc, layer_algo, module, 0)) {
                if (!layer_algo) glint_set_error("%s: quantized_layers[\"%s\"] has no quant_algo", qc->source, module);
                return -1;
            }
        }
        qc->group_size = int_field(q, "group_size", 16, qc, &failed);
        if (!failed && algo && strstr(algo, "NVFP4") && qc->group_size != 16) {
            glint_set_error("%s: NVFP4 group_size is 16, found %d", qc->source, qc->group_size);
            return -1;
        }
        add_excludes(qc, json_object_get(q, "ignore"));
        add_excludes(qc, json_object_get(q, "exclude_modules"));
    } else if (!strcmp(method, "compressed-tensors")) {
        qc->method = GLINT_QUANT_COMPRESSED_TENSORS;
        const char *format = json_string_value(json_object_get(q, "format"));
        snprintf(qc->algo, sizeof qc->algo, "%s", format ? format : "");
        qc->group_size = 16;
        add_excludes(qc, json_object_get(q, "ignore"));
        for (int i = 0; i < qc->n_excludes; i++)  // a pattern that does not compile would match nothing
            if (!strncmp(qc->excludes[i], "re:", 3) && check_regex(qc, qc->excludes[i] + 3)) return -1;
    } else if (!strcmp(method, "fp8")) {
        qc->method = GLINT_QUANT_FP8;
        json_t *bs = json_object_get(q, "weight_block_size");
        qc->block_size = 128;
        if (bs && !json_is_null(bs)) {  // [B, B]: square blocks of 1..65536
            const json_t *b0 = json_array_get(bs, 0), *b1 = json_array_get(bs, 1);
            if (!json_is_array(bs) || json_array_size(bs) != 2 || !json_is_integer(b0) || !json_is_integer(b1) ||
                json_integer_value(b0) < 1 || json_integer_value(b0) > 65536) {
                glint_set_error("%s: weight_block_size must be [B, B] with B an integer in 1..65536", qc->source);
                return -1;
            }
            if (json_integer_value(b1) != json_integer_value(b0)) {
                glint_set_error("%s: only square FP8 weight_block_size is supported", qc->source);
                return -1;
            }
            qc->block_size = (int)json_integer_value(b0);
        }
        add_excludes(qc, json_object_get(q, "modules_to_not_convert"));
    } else if (!strcmp(method, "gptq")) {
        qc->method = GLINT_QUANT_GPTQ;
        qc->bits = int_field(q, "bits", 4, qc, &failed);
        qc->group_size = int_field(q, "group_size", 128, qc, &failed);
        if (failed) return -1;
        const char *fmt = json_string_value(json_object_get(q, "checkpoint_format"));
        if (qc->bits != 4 || json_is_true(json_object_get(q, "desc_act")) || json_is_false(json_object_get(q, "sym")) ||
            (fmt && strcmp(fmt, "gptq")) || qc->group_size <= 0) {
            glint_set_error("%s: GPTQ supported as 4-bit, sym, desc_act false, group_size > 0, checkpoint_format "
                            "gptq (found bits %d, group_size %d%s%s)",
                            qc->source, qc->bits, qc->group_size, fmt ? ", format " : "", fmt ? fmt : "");
            return -1;
        }
        json_t *mods = json_object_get(q, "modules_to_not_convert");
        if (json_is_array(mods)) add_excludes(qc, mods);
    } else {
        glint_set_error("%s: quant_method \"%s\" is not supported (modelopt, compressed-tensors, fp8, gptq are)",
                        qc->source, method);
        return -1;
    }
    return failed ? -1 : 0;
}

int glint_quant_config_load(const char *dir, glint_quant_config *qc) {
    memset(qc, 0, sizeof *qc);
    char *cfg_path = glint_path_join(dir, "config.json"), *hf_path = glint_path_join(dir, "hf_quant_config.json");
    json_t *cfg = NULL, *hf = NULL;
    int rc = -1;
    if (!cfg_path || !hf_path || glint_json_file(cfg_path, 0, &cfg)) goto done;  // (absent: the error says so)
    json_t *q = json_object_get(cfg, "quantization_config");
    if (q && !json_is_null(q) && !json_is_object(q)) {
        glint_set_error("%s: quantization_config must be an object", cfg_path);
        goto done;
    }
    if (json_is_object(q)) {
        snprintf(qc->source, sizeof qc->source, "config.json");
        rc = parse_quantization_config(q, qc);
        goto done;
    }
    const int got = glint_json_file(hf_path, 0, &hf);
    if (got) {
        if (got > 0) rc = 0;  // absent: not quantized
        goto done;
    }
    snprintf(qc->source, sizeof qc->source, "hf_quant_config.json");
    json_t *quant = json_object_get(hf, "quantization");
    if (!json_is_object(quant)) {
        glint_set_error("%s: no \"quantization\" object", hf_path);
        goto done;
    }
    json_t *copy = json_deep_copy(quant);
    json_object_set_new(copy, "quant_method", json_string("modelopt"));
    rc = parse_quantization_config(copy, qc);
    json_decref(copy);
done:
    if (rc) glint_quant_config_free(qc);  // the exclude patterns read before the error
    json_decref(cfg);
    json_decref(hf);
    free(cfg_path);
    free(hf_path);
    return rc;
}

void glint_quant_config_free(glint_quant_config *qc) {
    for (int i = 0; i < qc->n_excludes; i++) free(qc->excludes[i]);
    qc->n_excludes = 0;
}

static int regex_full_match(const char *pattern, const char *subject) {
    int errcode;
    PCRE2_SIZE erroffset;
    pcre2_code *re = compile_exclude(pattern, &errcode, &erroffset);
    if (!re) return 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int hit = md && pcre2_match(re, (PCRE2_SPTR)subject, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) >= 0;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return hit;
}

int glint_quant_is_excluded(const glint_quant_config *qc, const char *module) {
    for (int i = 0; i < qc->n_excludes; i++) {
        const char *p = qc->excludes[i];
        switch (qc->method) {
        case GLINT_QUANT_COMPRESSED_TENSORS:  // "re:<regex>" or a module name
            if (!strncmp(p, "re:", 3) ? regex_full_match(p + 3, module) : !strcmp(p, module)) return 1;
            break;
        case GLINT_QUANT_FP8:  // transformers matches modules_to_not_convert as substrings
        case GLINT_QUANT_GPTQ:
            if (strstr(module, p)) return 1;
            break;
        default:  // ModelOpt: fnmatch wildcards on module names ("foo*" covers foo and foo.*)
            if (!fnmatch(p, module, 0)) return 1;
            break;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Binding one linear

static const glint_st_tensor *find_suffix(const glint_checkpoint *ck, const char *module, const char *suffix) {
    char name[512];
    snprintf(name, sizeof name, "%s.%s", module, suffix);
    return glint_checkpoint_find(ck, name);
}

static int is_scalar(const glint_st_tensor *t) {
    return t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1);
}

static int shape_is(const glint_st_tensor *t, int64_t a, int64_t b) {
    return t->ndim == 2 && t->shape[0] == a && t->shape[1] == b;
}

static const char *shape_text(const glint_st_tensor *t, char *buf, size_t len) {
    snprintf(buf, len, "[");
    for (int d = 0; d < t->ndim; d++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    snprintf(buf + strlen(buf), len - strlen(buf), "]");
    return buf;
}

// Checks a companion tensor exists with the given dtype and 2-D shape (rows2 < 0: scalar).
static const glint_st_tensor *need(const glint_checkpoint *ck, const char *module, const char *suffix,
                                   glint_dtype dtype, int64_t rows2, int64_t cols2, const char *why) {
    const glint_st_tensor *t = find_suffix(ck, module, suffix);
    char got[96];
    if (!t) {
        if (rows2 < 0) glint_set_error("%s: %s.%s is missing (%s needs a %s scalar)", ck->files[0].path, module,
                                       suffix, why, glint_dtype_name(dtype));
        else glint_set_error("%s: %s.%s is missing (%s needs %s [%lld, %lld])", ck->files[0].path, module, suffix,
                             why, glint_dtype_name(dtype), (long long)rows2, (long long)cols2);
        return NULL;
    }
    if (t->dtype != dtype) {
        glint_set_error("%s: %s.%s has dtype %s, expected %s (%s)", t->file, module, suffix, glint_dtype_name(t->dtype),
                        glint_dtype_name(dtype), why);
        return NULL;
    }
    if (rows2 < 0 ? !is_scalar(t) : !shape_is(t, rows2, cols2)) {
        if (rows2 < 0) glint_set_error("%s: %s.%s has shape %s, expected a scalar (%s)", t->file, module, suffix,
                                       shape_text(t, got, sizeof got), why);
        else glint_set_error("%s: %s.%s has shape %s, expected [%lld, %lld] (%s)", t->file, module, suffix,
                             shape_text(t, got, sizeof got), (long long)rows2, (long long)cols2, why);
        return NULL;
    }
    return t;
}

// Block scales a quantizer writes are finite and not negative (a negative one flips its block's signs:
// a damaged file). E4M3: NaN is S.1111.111; -0 is harmless.
static int scales_bad_fp8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((s[i] & 0x7f) == 0x7f || (s[i] > 0x80)) return 1;
    return 0;
}

static int scales_bad_f32(const float *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(s[i]) || s[i] < 0) return 1;
    return 0;
}

static float scalar_f32(const glint_st_tensor *t) {
    float v;
    memcpy(&v, t->data, sizeof v);
    return v;
}

static int bind_nvfp4(const glint_checkpoint *ck, const char *module, const glint_st_tensor *codes,
                      const char *scale2_name, int inverse_scale2, int64_t N, int64_t K, glint_weight *w) {
    const char *why = inverse_scale2 ? "compressed-tensors NVFP4" : "ModelOpt NVFP4";
    char got[96];
    if (K % 16) {
        glint_set_error("%s: %s is NVFP4 but its input size %lld is not a multiple of 16", codes->file, module,
                        (long long)K);
        return -1;
    }
    if (!shape_is(codes, N, K / 2)) {
        glint_set_error("%s: %s has shape %s, expected [%lld, %lld] (NVFP4 codes for [%lld, %lld])", codes->file,
                        codes->name, shape_text(codes, got, sizeof got), (long long)N, (long long)K / 2, (long long)N,
                        (long long)K);
        return -1;
    }
    const glint_st_tensor *scale = need(ck, module, "weight_scale", GLINT_DTYPE_F8_E4M3, N, K / 16, why);
    const glint_st_tensor *scale2 = scale ? need(ck, module, scale2_name, GLINT_DTYPE_F32, -1, -1, why) : NULL;
    if (!scale2) return -1;
    float global = scalar_f32(scale2);
    if (inverse_scale2) global = 1.0f / global;
    if (!isfinite(global) || global < 0) {  // (0: an all-zero weight)
        glint_set_error("%s: %s has a %s that is not a finite number >= 0", scale2->file, module, scale2_name);
        return -1;
    }
    if (scales_bad_fp8(scale->data, scale->nbytes)) {
        glint_set_error("%s: %s has NaN or negative block scales (weight_scale)", scale->file, module);
        return -1;
    }
    *w = (glint_weight){.format = GLINT_WFMT_NVFP4, .dtype = GLINT_DTYPE_U8, .rows = N, .cols = K,
                        .data = codes->data, .name = codes->name, .scales = scale->data,
                        .scales_dtype = GLINT_DTYPE_F8_E4M3, .global_scale = global, .block = 16};
    return 1;
}

static int bind_fp8(const glint_checkpoint *ck, const glint_quant_config *qc, const char *module,
                    const glint_st_tensor *weight, int64_t N, int64_t K, glint_weight *w) {
    char got[96];
    if (!shape_is(weight, N, K)) {
        glint_set_error("%s: %s has shape %s, expected [%lld, %lld] from config.json", weight->file, weight->name,
                        shape_text(weight, got, sizeof got), (long long)N, (long long)K);
        return -1;
    }
    const glint_st_tensor *inv = find_suffix(ck, module, "weight_scale_inv");
    const glint_st_tensor *per_tensor = find_suffix(ck, module, "weight_scale");
    int block;
    const glint_st_tensor *scale;
    if (inv) {  // DeepSeek / zai-org: F32 [ceil(N/B), ceil(K/B)]
        block = qc->block_size ? qc->block_size : 128;
        scale = need(ck, module, "weight_scale_inv", GLINT_DTYPE_F32, (N + block - 1) / block, (K + block - 1) / block,
                     "FP8 block-scaled weight");
    } else if (per_tensor) {  // ModelOpt FP8: one F32 scale; one block covering the matrix
        block = (int)(N > K ? N : K);
        scale = need(ck, module, "weight_scale", GLINT_DTYPE_F32, -1, -1, "FP8 per-tensor weight");
    } else {
        glint_set_error("%s: %s.weight is F8_E4M3 but %s.weight_scale_inv (block scales) is missing", weight->file,
                        module, module);
        return -1;
    }
    if (!scale) return -1;
    if (scales_bad_f32(scale->data, scale->nbytes / 4)) {
        glint_set_error("%s: %s has NaN, infinite or negative scales", scale->file, scale->name);
        return -1;
    }
    *w = (glint_weight){.format = GLINT_WFMT_FP8_BLOCK, .dtype = GLINT_DTYPE_F8_E4M3, .rows = N, .cols = K,
                        .data = weight->data, .name = weight->name, .scales = scale->data,
                        .scales_dtype = GLINT_DTYPE_F32, .block = block};
    return 1;
}

static int bind_gptq(const glint_checkpoint *ck, const glint_quant_config *qc, const char *module,
                     const glint_st_tensor *qweight, int64_t N, int64_t K, glint_weight *w) {
    char got[96];
    const int G = qc->group_size > 0 ? qc->group_size : 128;
    const int64_t groups = (K + G - 1) / G;
    if (K % 8 || N % 8) {
        glint_set_error("%s: %s is GPTQ but its shape [%lld, %lld] is not a multiple of 8", qweight->file, module,
                        (long long)N, (long long)K);
        return -1;
    }
    if (qweight->dtype != GLINT_DTYPE_I32 || !shape_is(qweight, K / 8, N)) {
        glint_set_error("%s: %s is %s %s, expected I32 [%lld, %lld] (GPTQ, packed along the input)", qweight->file,
                        qweight->name, glint_dtype_name(qweight->dtype), shape_text(qweight, got, sizeof got),
                        (long long)K / 8, (long long)N);
        return -1;
    }
    const glint_st_tensor *zeros = need(ck, module, "qzeros", GLINT_DTYPE_I32, groups, N / 8, "GPTQ");
    if (!zeros) return -1;
    const glint_st_tensor *scales = find_suffix(ck, module, "scales");
    glint_dtype sd = scales && scales->dtype == GLINT_DTYPE_BF16 ? GLINT_DTYPE_BF16 : GLINT_DTYPE_F16;
    if (!(scales = need(ck, module, "scales", sd, groups, N, "GPTQ"))) return -1;
    for (size_t i = 0; i < scales->nbytes / 2; i++) {
        uint16_t h = ((const uint16_t *)scales->data)[i];
        float v = sd == GLINT_DTYPE_BF16 ? glint_bf16_to_f32(h) : glint_f16_to_f32(h);
        if (!isfinite(v)) {
            glint_set_error("%s: %s has NaN or infinite scales", scales->file, scales->name);
            return -1;
        }
    }
    const glint_st_tensor *g_idx = find_suffix(ck, module, "g_idx");
    if (g_idx) {  // desc_act false: the group of column k must be k / G
        if (g_idx->dtype != GLINT_DTYPE_I32 || g_idx->ndim != 1 || g_idx->shape[0] != K) {
            glint_set_error("%s: %s must be I32 [%lld]", g_idx->file, g_idx->name, (long long)K);
            return -1;
        }
        for (int64_t k = 0; k < K; k++)
            if (((const int32_t *)g_idx->data)[k] != k / G) {
                glint_set_error("%s: %s[%lld] = %d is not k / group_size: act-order (desc_act) GPTQ is not supported",
                                g_idx->file, g_idx->name, (long long)k, ((const int32_t *)g_idx->data)[k]);
                return -1;
            }
    }
    *w = (glint_weight){.format = GLINT_WFMT_GPTQ_INT4, .dtype = GLINT_DTYPE_I32, .rows = N, .cols = K,
                        .data = qweight->data, .name = qweight->name, .scales = scales->data, .scales_dtype = sd,
                        .block = G, .zeros = zeros->data};
    return 1;
}

int glint_bind_quantized_linear(const glint_checkpoint *ck, const glint_quant_config *qc, const char *module,
                                int64_t rows, int64_t cols, glint_weight *w, uint64_t *bytes) {
    const glint_st_tensor *weight = find_suffix(ck, module, "weight");
    const glint_st_tensor *packed = find_suffix(ck, module, "weight_packed");
    const glint_st_tensor *qweight = find_suffix(ck, module, "qweight");
    int rc = 0;
    if (weight && weight->dtype == GLINT_DTYPE_U8) rc = bind_nvfp4(ck, module, weight, "weight_scale_2", 0, rows, cols, w);
    else if (!weight && packed) rc = bind_nvfp4(ck, module, packed, "weight_global_scale", 1, rows, cols, w);
    else if (weight && weight->dtype == GLINT_DTYPE_F8_E4M3) rc = bind_fp8(ck, qc, module, weight, rows, cols, w);
    else if (!weight && qweight) rc = bind_gptq(ck, qc, module, qweight, rows, cols, w);
    if (rc < 0) return -1;
    // Cross-check with the config: a disagreement is an error, not a guess.
    int excluded = glint_quant_is_excluded(qc, module);
    if (rc == 1 && qc->method != GLINT_QUANT_NONE && excluded) {
        glint_set_error("%s is stored as %s but %s lists it as not quantized", module, glint_weight_format_name(w),
                        qc->source);
        return -1;
    }
    if (rc == 1 && qc->method == GLINT_QUANT_NONE) {
        glint_set_error("%s is stored as %s but the checkpoint has no quantization config (hf_quant_config.json or "
                        "config.json quantization_config)",
                        module, glint_weight_format_name(w));
        return -1;
    }
    int config_says_quantized =
        (qc->method == GLINT_QUANT_MODELOPT && (!strcmp(qc->algo, "NVFP4") || !strcmp(qc->algo, "W4A16_NVFP4"))) ||
        (qc->method == GLINT_QUANT_COMPRESSED_TENSORS && !strcmp(qc->algo, "nvfp4-pack-quantized"));
    if (rc == 0 && config_says_quantized && !excluded) {
        glint_set_error("%s is stored unquantized but %s (%s) does not exclude it", module, qc->source, qc->algo);
        return -1;
    }
    if (rc == 1) *bytes = glint_weight_stored_bytes(w);
    return rc;
}

const char *glint_weight_format_name(const glint_weight *w) {
    switch (w->format) {
    case GLINT_WFMT_NVFP4: return "NVFP4";
    case GLINT_WFMT_FP8_BLOCK: return "FP8-block";
    case GLINT_WFMT_GPTQ_INT4: return "GPTQ-int4";
    default: return glint_dtype_name(w->dtype);
    }
}

uint64_t glint_weight_stored_bytes(const glint_weight *w) {
    const uint64_t N = (uint64_t)w->rows, K = (uint64_t)w->cols;
    switch (w->format) {
    case GLINT_WFMT_NVFP4: return N * K / 2 + N * K / 16 + 4;
    case GLINT_WFMT_FP8_BLOCK: {
        uint64_t b = (uint64_t)w->block;
        return N * K + ((N + b - 1) / b) * ((K + b - 1) / b) * 4;
    }
    case GLINT_WFMT_GPTQ_INT4: {
        uint64_t groups = (K + (uint64_t)w->block - 1) / (uint64_t)w->block;
        return N * K / 2 + groups * N / 2 + groups * N * 2;
    }
    default: return N * K * glint_dtype_size(w->dtype);
    }
}

// ---------------------------------------------------------------------------------------------
// Parts of a weight (tensor parallelism)

// Copies `n` runs of `len` bytes, `src_stride` apart, to consecutive runs at dst.
static void copy_runs(uint8_t *dst, const uint8_t *src, int64_t n, size_t len, size_t src_stride) {
    for (int64_t i = 0; i < n; i++) memcpy(dst + (size_t)i * len, src + (size_t)i * src_stride, len);
}

static int part_error(const glint_weight *w, int axis, int64_t start, int64_t count, const char *why) {
    glint_set_error("%s (%s [%lld, %lld]): cannot take %s %lld..%lld for tensor parallelism: %s",
                    w->name ? w->name : "weight", glint_weight_format_name(w), (long long)w->rows,
                    (long long)w->cols, axis ? "columns" : "rows", (long long)start, (long long)(start + count - 1),
                    why);
    return -1;
}

int glint_weight_part(const glint_weight *w, int axis, int64_t start, int64_t count, glint_weight *out, void **copy) {
    *out = *w;
    if (copy) *copy = NULL;
    const int64_t N = w->rows, K = w->cols, extent = axis ? K : N;
    if (start < 0 || count < 1 || start + count > extent) return part_error(w, axis, start, count, "out of range");
    const int ends = start + count == extent;  // the last part may end inside a block
    const uint8_t *data = w->data;
    switch (w->format) {
    case GLINT_WFMT_DENSE: {
        const size_t es = glint_dtype_size(w->dtype);
        if (!axis) {
            out->rows = count, out->data = data + (size_t)start * (size_t)K * es;
            return 0;
        }
        if (!copy) {  // the shape only
            out->cols = count;
            return 1;
        }
        uint8_t *c = glint_malloc((size_t)N * (size_t)count * es, "weight columns");
        if (!c) return -1;
        copy_runs(c, data + (size_t)start * es, N, (size_t)count * es, (size_t)K * es);
        out->cols = count, out->data = c, *copy = c;
        return 0;
    }
    case GLINT_WFMT_NVFP4: {  // codes [N, K/2], E4M3 scales [N, K/16]
        const uint8_t *scales = w->scales;
        if (!axis) {
            out->rows = count, out->data = data + (size_t)start * (size_t)(K / 2);
            out->scales = scales + (size_t)start * (size_t)(K / 16);
            return 0;
        }
        if (start % 16 || count % 16) return part_error(w, axis, start, count, "NVFP4 cuts at multiples of 16 columns");
        if (!copy) {  // the shape only
            out->cols = count;
            return 1;
        }
        uint8_t *c = glint_malloc((size_t)N * (size_t)(count / 2 + count / 16), "weight columns");
        if (!c) return -1;
        copy_runs(c, data + start / 2, N, (size_t)count / 2, (size_t)K / 2);
        uint8_t *cs = c + (size_t)N * (size_t)(count / 2);
        copy_runs(cs, scales + start / 16, N, (size_t)count / 16, (size_t)K / 16);
        out->cols = count, out->data = c, out->scales = cs, *copy = c;
        return 0;
    }
    case GLINT_WFMT_FP8_BLOCK: {  // data [N, K], F32 scales [ceil(N/b), ceil(K/b)]
        const int64_t b = w->block, kb = (K + b - 1) / b;
        const float *scales = w->scales;
        if (start % b || (count % b && !ends))
            return part_error(w, axis, start, count, "FP8 block-scaled weights are cut at their block edge");
        if (!axis) {
            out->rows = count, out->data = data + (size_t)start * (size_t)K;
            out->scales = scales + (size_t)(start / b) * (size_t)kb;
            return 0;
        }
        if (!copy) {  // the shape only
            out->cols = count;
            return 1;
        }
        const int64_t nb = (N + b - 1) / b, cb = (count + b - 1) / b;
        uint8_t *c = glint_malloc((size_t)N * (size_t)count + (size_t)(nb * cb) * sizeof(float), "weight columns");
        if (!c) return -1;
        copy_runs(c, data + start, N, (size_t)count, (size_t)K);
        float *cs = (float *)(c + (size_t)N * (size_t)count);
        copy_runs((uint8_t *)cs, (const uint8_t *)(scales + start / b), nb, (size_t)cb * sizeof(float),
                  (size_t)kb * sizeof(float));
        out->cols = count, out->data = c, out->scales = cs, *copy = c;
        return 0;
    }
    case GLINT_WFMT_GPTQ_INT4: {  // qweight I32 [K/8, N], qzeros I32 [G, N/8], scales [G, N]; G = K/block
        const int64_t g = w->block, groups = (K + g - 1) / g;
        const size_t ss = glint_dtype_size(w->scales_dtype);
        if (axis) {  // whole groups of K: rows of every array, views
            if (start % g || (count % g && !ends) || start % 8 || count % 8)
                return part_error(w, axis, start, count, "GPTQ weights are cut at their group edge");
            out->cols = count, out->data = (const int32_t *)w->data + (size_t)(start / 8) * (size_t)N;
            out->zeros = (const int32_t *)w->zeros + (size_t)(start / g) * (size_t)(N / 8);
            out->scales = (const uint8_t *)w->scales + (size_t)(start / g) * (size_t)N * ss;
            return 0;
        }
        if (start % 8 || count % 8) return part_error(w, axis, start, count, "GPTQ packs 8 rows per zero word");
        if (!copy) {
            out->rows = count;
            return 1;
        }
        const size_t qbytes = (size_t)(K / 8) * (size_t)count * 4, zbytes = (size_t)groups * (size_t)(count / 8) * 4;
        uint8_t *c = glint_malloc(qbytes + zbytes + (size_t)groups * (size_t)count * ss, "weight rows");
        if (!c) return -1;
        copy_runs(c, (const uint8_t *)w->data + (size_t)start * 4, K / 8, (size_t)count * 4, (size_t)N * 4);
        copy_runs(c + qbytes, (const uint8_t *)w->zeros + (size_t)(start / 8) * 4, groups, (size_t)(count / 8) * 4,
                  (size_t)(N / 8) * 4);
        copy_runs(c + qbytes + zbytes, (const uint8_t *)w->scales + (size_t)start * ss, groups, (size_t)count * ss,
                  (size_t)N * ss);
        out->rows = count, out->data = c, out->zeros = c + qbytes, out->scales = c + qbytes + zbytes, *copy = c;
        return 0;
    }
    }
    return part_error(w, axis, start, count, "unknown format");
}
