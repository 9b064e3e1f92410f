#include "io/quantize.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "io/config.h"
#include "io/quant.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"

// ---------------------------------------------------------------------------------------------
// NVFP4 math

uint8_t glint_f32_to_fp8e4m3(float f) {
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (isnan(f)) return 0x7f;
    if (a == 0) return sign;
    if (a >= 448.0f) return sign | 0x7e;
    int e;
    frexpf(a, &e);  // a = m · 2^e, m in [0.5, 1): the normal exponent is e - 1
    int exponent = e - 1;
    if (exponent < -6) {  // subnormal: multiples of 2^-9
        int m = (int)nearbyintf(ldexpf(a, 9));
        return sign | (uint8_t)m;  // m == 8 is exactly the smallest normal, code 0x08
    }
    int m = (int)nearbyintf((ldexpf(a, -exponent) - 1.0f) * 8.0f);  // ties to even
    if (m == 8) m = 0, exponent++;
    int code = ((exponent + 7) << 3) | m;
    return sign | (uint8_t)(code > 0x7e ? 0x7e : code);
}

// Nearest E2M1 code, ties to even, saturating at 6: the number of decision bounds below |x|, plus
// one at the three bounds where the tie goes up to the even code.
static uint8_t e2m1_code(float x) {
    static const float bounds[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    float m = fabsf(x);
    uint8_t code = 0;
    for (int i = 0; i < 7; i++) code += bounds[i] < m;
    code += m == 0.75f || m == 1.75f || m == 3.5f;
    return (uint8_t)((x < 0 ? 8 : 0) + code);
}

void glint_nvfp4_quantize_matrix(const float *w, int64_t N, int64_t K, float ws2, uint8_t *codes, uint8_t *scales) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < K / 16; b++) {
            const float *blk = w + n * K + b * 16;
            float amax = 0;
            for (int j = 0; j < 16; j++) amax = fabsf(blk[j]) > amax ? fabsf(blk[j]) : amax;
            float scale = amax / (6.0f * ws2);
            if (scale == 0) scale = 1.0f;
            scale = scale < 0x1p-9f ? 0x1p-9f : scale > 448.0f ? 448.0f : scale;
            uint8_t s8 = glint_f32_to_fp8e4m3(scale);
            scales[n * (K / 16) + b] = s8;
            float divisor = glint_fp8e4m3_to_f32(s8) * ws2;
            for (int j = 0; j < 16; j += 2)
                codes[n * (K / 2) + b * 8 + j / 2] =
                    (uint8_t)(e2m1_code(blk[j] / divisor) | (e2m1_code(blk[j + 1] / divisor) << 4));
        }
}

// ---------------------------------------------------------------------------------------------
// Which modules are quantized

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int is_linear_module(const char *module) {
    return ends_with(module, "_proj") || ends_with(module, "_proj_with_mqa") || ends_with(module, ".wq_b") ||
           ends_with(module, ".wk") || !strcmp(module, "lm_head");
}

static int layer_of(const char *module) {
    int layer = -1;
    return sscanf(module, "model.layers.%d.", &layer) == 1 ? layer : -1;
}

// The rule tools/fixtures/make_quant_fixtures.py's quantizer_scope mirrors. MTP layers (index >=
// num_hidden_layers) stay as they are.
static int in_scope(const char *module, glint_quant_scope scope, int n_layers) {
    if (!is_linear_module(module) || layer_of(module) >= n_layers) return 0;
    if (strstr(module, ".mlp.experts.")) return 1;
    if (scope == GLINT_SCOPE_EXPERTS) return 0;
    return strcmp(module, "lm_head") && !ends_with(module, "kv_b_proj") && !ends_with(module, "weights_proj");
}

// ---------------------------------------------------------------------------------------------
// Reading source tensors as float

typedef struct {
    const glint_checkpoint *ckpt;
    glint_quant_config qc;
} source;

// Fills out[N·K] with the tensor's values; FP8 weights are multiplied by their block scales.
static int tensor_values(const source *src, const glint_st_tensor *t, float *out) {
    size_t n = t->nbytes / glint_dtype_size(t->dtype);
    switch (t->dtype) {
    case GLINT_DTYPE_F32: memcpy(out, t->data, n * sizeof *out); return 0;
    case GLINT_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) out[i] = glint_bf16_to_f32(((const uint16_t *)t->data)[i]);
        return 0;
    case GLINT_DTYPE_F16:
        for (size_t i = 0; i < n; i++) out[i] = glint_f16_to_f32(((const uint16_t *)t->data)[i]);
        return 0;
    case GLINT_DTYPE_F8_E4M3: {
        char module[512];
        snprintf(module, sizeof module, "%.*s", (int)(strlen(t->name) - strlen(".weight")), t->name);
        glint_weight w;
        uint64_t bytes;
        if (t->ndim != 2 ||
            glint_bind_quantized_linear(src->ckpt, &src->qc, module, t->shape[0], t->shape[1], &w, &bytes) != 1)
            return -1;
        for (int64_t r = 0; r < w.rows; r++)
            for (int64_t c = 0; c < w.cols; c++) {
                int64_t blocks = (w.cols + w.block - 1) / w.block;
                out[r * w.cols + c] = glint_fp8e4m3_to_f32(((const uint8_t *)w.data)[r * w.cols + c]) *
                                      ((const float *)w.scales)[(r / w.block) * blocks + c / w.block];
            }
        return 0;
    }
    default:
        glint_set_error("%s: tensor '%s' has dtype %s, which glint quantize cannot read", t->file, t->name,
                        glint_dtype_name(t->dtype));
        return -1;
    }
}

// tensor_values, refusing NaN and Inf: a quantized block cannot hold them (E2M1 has none; the block's
// scale would become NaN), a BF16 copy would carry them on, and writing zeros instead would hide a
// damaged input.
static int tensor_to_f32(const source *src, const glint_st_tensor *t, float *out) {
    if (tensor_values(src, t, out)) return -1;
    const size_t n = t->nbytes / glint_dtype_size(t->dtype);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(out[i])) {
            glint_set_error("%s: tensor '%s' holds %s at element %zu: glint quantize does not write it", t->file,
                            t->name, isnan(out[i]) ? "NaN" : "Inf", i);
            return -1;
        }
    return 0;
}

static float max_abs(const float *v, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    return m;
}

// gate_proj <-> up_proj of the same MLP, or NULL.
static const glint_st_tensor *partner_of(const glint_checkpoint *ck, const char *weight_name) {
    char name[512];
    const char *gate = strstr(weight_name, "gate_proj.weight"), *up = strstr(weight_name, "up_proj.weight");
    if (gate) snprintf(name, sizeof name, "%.*sup_proj.weight", (int)(gate - weight_name), weight_name);
    else if (up) snprintf(name, sizeof name, "%.*sgate_proj.weight", (int)(up - weight_name), weight_name);
    else return NULL;
    return glint_checkpoint_find(ck, name);
}

// ---------------------------------------------------------------------------------------------
// The command

typedef enum { OUT_COPY, OUT_TO_BF16, OUT_NVFP4 } out_kind;

static int remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = glint_path_join(dir, e->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
    return rmdir(dir);
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    int rc = in && out ? 0 : -1;
    char buf[1 << 16];
    size_t got;
    while (!rc && (got = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, got, out) != got) rc = -1;
    if (in && ferror(in)) rc = -1;
    if (in) fclose(in);
    if (out && fclose(out)) rc = -1;
    if (rc) glint_set_error("copying %s to %s: %s", from, to, strerror(errno));
    return rc;
}

// Every file of the source that is not weights or configs (tokenizer, template, generation config).
static int copy_side_files(const char *in_dir, const char *out_dir) {
    DIR *d = opendir(in_dir);
    if (!d) {
        glint_set_error("%s: %s", in_dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] == '.' || ends_with(n, ".safetensors") || !strcmp(n, "model.safetensors.index.json") ||
            !strcmp(n, "config.json") || !strcmp(n, "hf_quant_config.json"))
            continue;
        char *from = glint_path_join(in_dir, n), *to = glint_path_join(out_dir, n);
        struct stat st;
        if (from && to && stat(from, &st) == 0 && S_ISREG(st.st_mode)) rc = copy_file(from, to);
        free(from), free(to);
    }
    closedir(d);
    return rc;
}

static json_t *exclude_list(const glint_config *cfg, glint_quant_scope scope, int n_layers_stored) {
    json_t *ex = json_array();
    char buf[96];
    json_array_append_new(ex, json_string("lm_head"));
    if (scope == GLINT_SCOPE_EXPERTS) {
        json_array_append_new(ex, json_string("model.layers.*.self_attn*"));
        json_array_append_new(ex, json_string("model.layers.*.mlp.shared_experts*"));
        for (int l = 0; l < cfg->num_layers; l++)
            if (!cfg->layer_is_moe[l]) {
                snprintf(buf, sizeof buf, "model.layers.%d.mlp*", l);
                json_array_append_new(ex, json_string(buf));
            }
    } else {
        json_array_append_new(ex, json_string("model.layers.*.self_attn.kv_b_proj"));
        json_array_append_new(ex, json_string("model.layers.*.self_attn.indexer.weights_proj"));
    }
    json_array_append_new(ex, json_string("model.layers.*.mlp.gate"));
    for (int l = cfg->num_layers; l < n_layers_stored; l++) {  // MTP layers stay unquantized
        snprintf(buf, sizeof buf, "model.layers.%d*", l);
        json_array_append_new(ex, json_string(buf));
    }
    return ex;
}

static int write_configs(const char *in_dir, const char *out_dir, const glint_config *cfg, glint_quant_scope scope,
                         int n_layers_stored) {
    char *in_cfg = glint_path_join(in_dir, "config.json"), *out_cfg = glint_path_join(out_dir, "config.json");
    char *out_hf = glint_path_join(out_dir, "hf_quant_config.json");
    json_error_t err;
    json_t *config = in_cfg ? json_load_file(in_cfg, JSON_PRESERVE_ORDER, &err) : NULL;
    int rc = -1;
    if (!config) {
        glint_set_error("%s: cannot read", in_cfg ? in_cfg : in_dir);
        goto done;
    }
    // Weight-only: no activation calibration was run, so no input_scale (W4A16, as Hopper runs it).
    json_t *hf = json_pack("{s:{s:s, s:s}, s:{s:s, s:n, s:i, s:o}}", "producer", "name", "glint", "version", "0.1",
                           "quantization", "quant_algo", "W4A16_NVFP4", "kv_cache_quant_algo", "group_size", 16,
                           "exclude_modules", exclude_list(cfg, scope, n_layers_stored));
    json_t *qc = json_pack("{s:s, s:s, s:o, s:n, s:{s:{s:{s:i, s:s, s:i, s:b}, s:[s]}}}", "quant_method", "modelopt",
                           "quant_algo", "W4A16_NVFP4", "ignore", exclude_list(cfg, scope, n_layers_stored),
                           "kv_cache_scheme", "config_groups", "group_0", "weights", "num_bits", 4, "type", "float",
                           "group_size", 16, "dynamic", 0, "targets", "Linear");
    json_object_set_new(config, "quantization_config", qc);
    if (json_dump_file(config, out_cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER) ||
        json_dump_file(hf, out_hf, JSON_INDENT(2) | JSON_PRESERVE_ORDER))
        glint_set_error("%s: cannot write configs", out_dir);
    else rc = 0;
    json_decref(hf);
done:
    json_decref(config);
    free(in_cfg), free(out_cfg), free(out_hf);
    return rc;
}

static int plan_output(const source *src, const glint_config *cfg, glint_quant_scope scope, glint_st_plan *plan,
                       out_kind *kinds, int *n_layers_stored) {
    const glint_checkpoint *ck = src->ckpt;
    for (size_t i = 0; i < ck->n_tensors; i++) {
        const glint_st_tensor *t = &ck->tensors[i];
        char module[512];
        snprintf(module, sizeof module, "%s", t->name);
        int is_weight = ends_with(module, ".weight");
        if (is_weight) module[strlen(module) - strlen(".weight")] = 0;
        int layer = layer_of(t->name);
        if (layer + 1 > *n_layers_stored) *n_layers_stored = layer + 1;
        kinds[i] = OUT_COPY;
        if (ends_with(t->name, ".weight_scale_inv")) continue;  // consumed with its FP8 weight
        if (t->dtype == GLINT_DTYPE_U8 || t->dtype == GLINT_DTYPE_I32 || ends_with(t->name, ".weight_scale_2") ||
            ends_with(t->name, ".qweight")) {
            glint_set_error("%s: tensor '%s' is already quantized; glint quantize reads BF16, F32, F16 or FP8 "
                            "checkpoints",
                            t->file, t->name);
            return -1;
        }
        if (is_weight && t->ndim == 2 && in_scope(module, scope, cfg->num_layers)) {
            int64_t N = t->shape[0], K = t->shape[1];
            if (K % 16) {
                glint_set_error("%s: tensor '%s' [%lld, %lld]: NVFP4 needs the input size to be a multiple of 16",
                                t->file, t->name, (long long)N, (long long)K);
                return -1;
            }
            char name[600];
            int64_t codes[2] = {N, K / 2}, scales[2] = {N, K / 16};
            kinds[i] = OUT_NVFP4;
            if (glint_st_plan_add(plan, t->name, GLINT_DTYPE_U8, 2, codes)) return -1;
            snprintf(name, sizeof name, "%s.weight_scale", module);
            if (glint_st_plan_add(plan, name, GLINT_DTYPE_F8_E4M3, 2, scales)) return -1;
            snprintf(name, sizeof name, "%s.weight_scale_2", module);
            if (glint_st_plan_add(plan, name, GLINT_DTYPE_F32, 0, NULL)) return -1;
            continue;
        }
        if (t->dtype == GLINT_DTYPE_F8_E4M3 && is_weight) {  // FP8 outside the scope: stored as BF16
            kinds[i] = OUT_TO_BF16;
            if (glint_st_plan_add(plan, t->name, GLINT_DTYPE_BF16, t->ndim, t->shape)) return -1;
            continue;
        }
        if (glint_st_plan_add(plan, t->name, t->dtype, t->ndim, t->shape)) return -1;
    }
    return 0;
}

// Writes every planned tensor, shard by shard, computing quantized tensors as they come.
static int write_shards(const source *src, const glint_st_plan *plan, const out_kind *kinds, const char *dir,
                        int progress) {
    const glint_checkpoint *ck = src->ckpt;
    size_t p = 0;  // position in the plan
    FILE *f = NULL;
    int shard = -1, rc = 0;
    float *buf = NULL, *partner_buf = NULL;
    uint8_t *codes = NULL, *scales = NULL;
    for (size_t i = 0; i < ck->n_tensors && !rc; i++) {
        const glint_st_tensor *t = &ck->tensors[i];
        if (ends_with(t->name, ".weight_scale_inv")) continue;
        if (progress) fprintf(stderr, "\rquantize: tensor %zu/%zu", i + 1, ck->n_tensors);
        const void *chunks[3];
        size_t sizes[3];
        int n_chunks = 1;
        float ws2 = 0;
        size_t count = t->nbytes / glint_dtype_size(t->dtype);
        if (kinds[i] == OUT_COPY) {
            chunks[0] = t->data, sizes[0] = t->nbytes;
        } else {
            float *grown = realloc(buf, count * sizeof *buf);
            if (!grown) {
                glint_set_error("out of memory converting %s", t->name);
                rc = -1;
                break;
            }
            buf = grown;
            if (tensor_to_f32(src, t, buf)) {
                rc = -1;
                break;
            }
            if (kinds[i] == OUT_TO_BF16) {
                uint16_t *h = (uint16_t *)buf;  // in place: each bf16 is written behind its float
                for (size_t k = 0; k < count; k++) h[k] = glint_f32_to_bf16(buf[k]);
                chunks[0] = h, sizes[0] = count * 2;
            } else {
                float amax = max_abs(buf, count);
                const glint_st_tensor *partner = partner_of(ck, t->name);
                if (partner) {  // gate and up of one MLP share weight_scale_2
                    size_t pc = partner->nbytes / glint_dtype_size(partner->dtype);
                    float *g = realloc(partner_buf, pc * sizeof *g);
                    if (g) partner_buf = g;  // before any early exit: realloc may have moved it
                    if (!g || tensor_to_f32(src, partner, g)) {
                        if (!g) glint_set_error("out of memory reading %s", partner->name);
                        rc = -1;
                        break;
                    }
                    float pm = max_abs(g, pc);
                    amax = pm > amax ? pm : amax;
                }
                ws2 = amax / 2688.0f;
                int64_t N = t->shape[0], K = t->shape[1];
                uint8_t *c2 = realloc(codes, (size_t)(N * K / 2)), *s2 = realloc(scales, (size_t)(N * K / 16));
                if (c2) codes = c2;
                if (s2) scales = s2;
                if (!c2 || !s2) {
                    glint_set_error("out of memory quantizing %s", t->name);
                    rc = -1;
                    break;
                }
                glint_nvfp4_quantize_matrix(buf, N, K, ws2, codes, scales);
                chunks[0] = codes, sizes[0] = (size_t)(N * K / 2);
                chunks[1] = scales, sizes[1] = (size_t)(N * K / 16);
                chunks[2] = &ws2, sizes[2] = sizeof ws2;
                n_chunks = 3;
            }
        }
        for (int c = 0; c < n_chunks && !rc; c++, p++) {
            const glint_st_out_tensor *o = &plan->tensors[p];
            if (o->nbytes != sizes[c]) {
                glint_set_error("internal error: %s planned %llu bytes, produced %zu", o->name,
                                (unsigned long long)o->nbytes, sizes[c]);
                rc = -1;
                break;
            }
            if (o->shard != shard) {
                if (f && fclose(f)) rc = -1;
                f = NULL;
                shard = o->shard;
                if (!rc && !(f = glint_st_begin_shard(plan, dir, shard))) rc = -1;
            }
            if (!rc && fwrite(chunks[c], 1, sizes[c], f) != sizes[c]) {
                glint_set_error("%s: write failed: %s", dir, strerror(errno));
                rc = -1;
            }
        }
    }
    if (progress) fprintf(stderr, "\n");
    if (f && fclose(f) && !rc) {
        glint_set_error("%s: write failed: %s", dir, strerror(errno));
        rc = -1;
    }
    free(buf), free(partner_buf), free(codes), free(scales);
    return rc;
}

int glint_quantize_checkpoint(const char *in_dir, const char *out_dir, const glint_quantize_options *opts) {
    struct stat st;
    if (stat(out_dir, &st) == 0) {
        glint_set_error("%s: output directory already exists (glint quantize never overwrites)", out_dir);
        return -1;
    }
    glint_config cfg;
    source src = {0};
    if (glint_config_load(in_dir, NULL, NULL, &cfg) || glint_quant_config_load(in_dir, &src.qc)) return -1;
    if (src.qc.method != GLINT_QUANT_NONE && src.qc.method != GLINT_QUANT_FP8) {
        glint_set_error("%s: already quantized (%s); glint quantize reads BF16, F32, F16 or FP8 checkpoints", in_dir,
                        src.qc.source);
        glint_quant_config_free(&src.qc);
        return -1;
    }
    glint_checkpoint *ck = glint_checkpoint_open(in_dir);
    src.ckpt = ck;
    glint_st_plan plan = {0};
    out_kind *kinds = ck ? glint_calloc(ck->n_tensors, sizeof *kinds, "plan") : NULL;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.partial-%d", out_dir, (int)getpid());
    int rc = -1, made_dir = 0, n_layers_stored = 0;
    if (!kinds) goto done;
    if (plan_output(&src, &cfg, opts->scope, &plan, kinds, &n_layers_stored)) goto done;
    glint_st_plan_shards(&plan, opts->max_shard_bytes ? opts->max_shard_bytes : 5000000000ull);
    if (mkdir(tmp, 0755)) {
        glint_set_error("%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    made_dir = 1;
    if (write_shards(&src, &plan, kinds, tmp, opts->show_progress) || glint_st_write_index(&plan, tmp) ||
        write_configs(in_dir, tmp, &cfg, opts->scope, n_layers_stored) || copy_side_files(in_dir, tmp))
        goto done;
    if (rename(tmp, out_dir)) {
        glint_set_error("renaming %s to %s: %s", tmp, out_dir, strerror(errno));
        goto done;
    }
    made_dir = 0;
    rc = 0;
done:
    if (made_dir) remove_tree(tmp);  // never leave a half-written output behind
    glint_st_plan_free(&plan);
    free(kinds);
    glint_checkpoint_close(ck);
    glint_quant_config_free(&src.qc);
    return rc;
}
