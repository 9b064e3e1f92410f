// glint generate / logits / info / bench: the commands that run the model (DESIGN.md §6).
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "cli/commands.h"
#include "common/util.h"
#include "engine/sampler.h"
#include "io/quant.h"
#include "model/glm.h"

// Options shared by every command that loads a model.
typedef struct {
    const char *model_dir;
    const char *backend;
    int threads;
    int64_t context_length;  // 0: max_position_embeddings capped by memory
    glint_load_options load;
    // generate
    const char *prompt;
    const char *ids;
    int64_t n_predict;
    glint_sampling_params sampling;
    int temperature_set, top_p_set, top_k_set;
    int print_ids;
    // logits
    const char *output;
    // bench
    const char *synthetic;
    int64_t layers;
    const char *ctx_list;
    int64_t n_decode;
    int kernels;
} model_options;

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "glint %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 2;
}

static int parse_float(const char *s, float *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !*s || *end || !isfinite(v)) return -1;
    *out = (float)v;
    return 0;
}

// Parses argv into opts; returns 0, or the exit status for a usage error.
static int parse_options(const char *cmd, int argc, char **argv, model_options *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cpu";
    o->n_predict = 32;
    o->n_decode = 16;
    glint_sampling_defaults(&o->sampling);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = 1;
        int64_t n;
        if (!strcmp(a, "--print-ids")) o->print_ids = 1, takes_value = 0;
        else if (!strcmp(a, "--kernels")) o->kernels = 1, takes_value = 0;
        else if (!v) return usage_error(cmd, "option %s needs a value (see glint --help)", a);
        else if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--model-path")) o->model_dir = v;
        else if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--threads")) {
            if (glint_parse_int64(v, &n) || n < 1 || n > 1024) return usage_error(cmd, "bad --threads '%s'", v);
            o->threads = (int)n;
        } else if (!strcmp(a, "--context-length")) {
            if (glint_parse_int64(v, &o->context_length) || o->context_length < 1 || o->context_length > (1 << 26))
                return usage_error(cmd, "bad --context-length '%s'", v);
        } else if (!strcmp(a, "--tp-size") || !strcmp(a, "--tp")) {
            if (glint_parse_int64(v, &n) || n != 1)
                return usage_error(cmd, "--tp-size %s: the CPU backend runs on one device (tensor parallel "
                                        "arrives with the CUDA backend)", v);
        } else if (!strcmp(a, "--index-topk-pattern")) o->load.index_topk_pattern = v;
        else if (!strcmp(a, "--json-model-override-args")) o->load.override_json = v;
        else if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) o->prompt = v;
        else if (!strcmp(a, "--ids")) o->ids = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (glint_parse_int64(v, &o->n_predict)) return usage_error(cmd, "bad -n '%s'", v);
        } else if (!strcmp(a, "--temperature")) {
            if (parse_float(v, &o->sampling.temperature) || o->sampling.temperature < 0)
                return usage_error(cmd, "bad --temperature '%s'", v);
            o->temperature_set = 1;
        } else if (!strcmp(a, "--top-p")) {
            if (parse_float(v, &o->sampling.top_p) || o->sampling.top_p <= 0 || o->sampling.top_p > 1)
                return usage_error(cmd, "bad --top-p '%s' (0 < p <= 1)", v);
            o->top_p_set = 1;
        } else if (!strcmp(a, "--top-k")) {
            char *end;
            long k = strtol(v, &end, 10);
            if (*end || !*v || k < -1 || k > (1 << 30)) return usage_error(cmd, "bad --top-k '%s'", v);
            o->sampling.top_k = (int)k;
            o->top_k_set = 1;
        } else if (!strcmp(a, "--min-p")) {
            if (parse_float(v, &o->sampling.min_p) || o->sampling.min_p < 0 || o->sampling.min_p > 1)
                return usage_error(cmd, "bad --min-p '%s'", v);
        } else if (!strcmp(a, "--seed")) {
            if (glint_parse_int64(v, &n)) return usage_error(cmd, "bad --seed '%s'", v);
            o->sampling.seed = (uint64_t)n;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->output = v;
        else if (!strcmp(a, "--synthetic")) o->synthetic = v;
        else if (!strcmp(a, "--layers")) {
            if (glint_parse_int64(v, &o->layers) || o->layers < 1) return usage_error(cmd, "bad --layers '%s'", v);
        } else if (!strcmp(a, "--ctx")) o->ctx_list = v;
        else if (!strcmp(a, "--decode-tokens")) {
            if (glint_parse_int64(v, &o->n_decode) || o->n_decode < 1)
                return usage_error(cmd, "bad --decode-tokens '%s'", v);
        } else return usage_error(cmd, "unknown option %s (see glint --help)", a);
        i += takes_value;
    }
    if (strcmp(o->backend, "cpu")) {
        fprintf(stderr, "glint %s: --backend %s is not available in this build (cpu is)\n", cmd, o->backend);
        return 2;
    }
    return 0;
}

static glint_backend *make_backend(const model_options *o) {
    glint_backend *be = glint_backend_cpu(o->threads);
    omp_set_num_threads(be->n_threads);
    return be;
}

static glint_model *load_model(const char *cmd, const model_options *o, glint_backend *be) {
    if (!o->model_dir) {
        fprintf(stderr, "glint %s: -m DIR is required\n", cmd);
        return NULL;
    }
    glint_model *m = glint_model_load(o->model_dir, &o->load, be);
    if (!m) fprintf(stderr, "glint %s: %s\n", cmd, glint_last_error());
    return m;
}

// Context length: --context-length, else max_position_embeddings capped so the cache fits a quarter
// of physical memory.
static int context_for(const glint_model *m, const model_options *o) {
    if (o->context_length) return (int)o->context_length;
    uint64_t per_token = glint_state_bytes_per_token(&m->cfg);
    uint64_t mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t cap = mem / 4 / (per_token ? per_token : 1);
    uint64_t ctx = (uint64_t)m->cfg.max_position_embeddings;
    return (int)(ctx < cap ? ctx : cap);
}

// "1 2 3" -> ids; every id must be an integer within the vocabulary.
static int32_t *parse_ids(const char *cmd, const char *text, int vocab, int *n_out) {
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = text;
    while (ids) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= vocab) {
            fprintf(stderr, "glint %s: --ids: '%.*s' at offset %zu is not a token id in 0..%d\n", cmd,
                    (int)strcspn(p, " \t\n,"), p, (size_t)(p - text), vocab - 1);
            free(ids);
            return NULL;
        }
        if (n == cap) {
            int32_t *grown = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!grown) break;
            ids = grown;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (ids && n == 0) {
        fprintf(stderr, "glint %s: --ids is empty\n", cmd);
        free(ids);
        return NULL;
    }
    *n_out = (int)n;
    return ids;
}

static int is_eos(const glint_config *c, int32_t id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return 1;
    return 0;
}

int cmd_generate(int argc, char **argv) {
    model_options o;
    int rc = parse_options("generate", argc, argv, &o);
    if (rc) return rc;
    if (!o.prompt == !o.ids) {
        fprintf(stderr, "glint generate: give exactly one of --prompt TEXT or --ids \"1 2 3\"\n");
        return 2;
    }
    if (o.prompt) {
        fprintf(stderr, "glint generate: --prompt needs the tokenizer, which is not built into this version; "
                        "use --ids\n");
        return 2;
    }
    glint_backend *be = make_backend(&o);
    glint_model *m = load_model("generate", &o, be);
    if (!m) return 1;
    glint_sampling_params sp = o.sampling;
    glint_sampling_params defaults;
    glint_sampling_defaults(&defaults);
    if (glint_sampling_from_generation_config(o.model_dir, &defaults)) {
        fprintf(stderr, "glint generate: %s\n", glint_last_error());
        glint_model_free(m);
        return 1;
    }
    if (!o.temperature_set) sp.temperature = defaults.temperature;
    if (!o.top_p_set) sp.top_p = defaults.top_p;
    if (!o.top_k_set) sp.top_k = defaults.top_k;

    int n_prompt = 0;
    int32_t *prompt = parse_ids("generate", o.ids, m->cfg.vocab_size, &n_prompt);
    int ctx = context_for(m, &o);
    glint_state *st = prompt ? glint_state_new(m, ctx) : NULL;
    glint_sampler *sampler = st ? glint_sampler_new(&sp, m->cfg.vocab_size) : NULL;
    float *logits = sampler ? malloc(sizeof(float) * (size_t)m->cfg.vocab_size) : NULL;
    rc = 1;
    if (!logits) {
        if (prompt) fprintf(stderr, "glint generate: %s\n", glint_last_error());
        goto done;
    }
    if (n_prompt + o.n_predict > ctx) {
        fprintf(stderr, "glint generate: %d prompt tokens + %lld to generate exceed the context length %d\n", n_prompt,
                (long long)o.n_predict, ctx);
        goto done;
    }
    double t0 = glint_now_seconds();
    if (glint_forward(m, st, prompt, n_prompt, logits, 0)) {
        fprintf(stderr, "glint generate: %s\n", glint_last_error());
        goto done;
    }
    double t1 = glint_now_seconds();
    int generated = 0;
    for (; generated < o.n_predict; generated++) {
        int32_t next = glint_sampler_sample(sampler, logits);
        printf(generated ? " %d" : "%d", next);
        fflush(stdout);
        if (is_eos(&m->cfg, next)) {
            generated++;
            break;
        }
        if (generated + 1 < o.n_predict && glint_forward(m, st, &next, 1, logits, 0)) {
            fprintf(stderr, "\nglint generate: %s\n", glint_last_error());
            goto done;
        }
    }
    printf("\n");
    fflush(stdout);
    double t2 = glint_now_seconds();
    fprintf(stderr, "prompt: %d tokens in %.3f s (%.1f tok/s); generated: %d tokens in %.3f s (%.1f tok/s)\n",
            n_prompt, t1 - t0, n_prompt / (t1 - t0), generated, t2 - t1, generated > 1 ? (generated - 1) / (t2 - t1) : 0);
    rc = 0;
done:
    free(logits);
    glint_sampler_free(sampler);
    glint_state_free(m, st);
    free(prompt);
    glint_model_free(m);
    return rc;
}

int cmd_logits(int argc, char **argv) {
    model_options o;
    int rc = parse_options("logits", argc, argv, &o);
    if (rc) return rc;
    if (!o.ids || !o.output) {
        fprintf(stderr, "glint logits: --ids \"1 2 3\" and -o FILE are required\n");
        return 2;
    }
    glint_backend *be = make_backend(&o);
    glint_model *m = load_model("logits", &o, be);
    if (!m) return 1;
    int n = 0;
    int32_t *ids = parse_ids("logits", o.ids, m->cfg.vocab_size, &n);
    glint_state *st = ids ? glint_state_new(m, o.context_length ? (int)o.context_length : n) : NULL;
    float *logits = st ? malloc(sizeof(float) * (size_t)n * m->cfg.vocab_size) : NULL;
    rc = 1;
    if (!logits) {
        if (ids) fprintf(stderr, "glint logits: %s\n", glint_last_error());
    } else if (glint_forward(m, st, ids, n, logits, 1)) {
        fprintf(stderr, "glint logits: %s\n", glint_last_error());
    } else {
        FILE *f = fopen(o.output, "wb");
        size_t count = (size_t)n * m->cfg.vocab_size;
        if (!f || fwrite(logits, sizeof(float), count, f) != count || fclose(f)) {
            fprintf(stderr, "glint logits: cannot write %s: %s\n", o.output, strerror(errno));
        } else {
            rc = 0;
        }
    }
    free(logits);
    glint_state_free(m, st);
    free(ids);
    glint_model_free(m);
    return rc;
}

static void print_bytes(const char *label, double bytes) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    printf("%-28s %.2f %s\n", label, bytes, unit[u]);
}

int cmd_info(int argc, char **argv) {
    model_options o;
    int rc = parse_options("info", argc, argv, &o);
    if (rc) return rc;
    glint_backend *be = make_backend(&o);
    glint_model *m = load_model("info", &o, be);
    if (!m) return 1;
    const glint_config *c = &m->cfg;
    printf("%-28s GlmMoeDsaForCausalLM (%s)\n", "architecture", o.model_dir);
    printf("%-28s %d (+%d MTP, not run yet)\n", "layers", c->num_layers, c->num_nextn_predict_layers);
    char kinds[GLINT_MAX_LAYERS + 1], pattern[GLINT_MAX_LAYERS + 1];
    for (int l = 0; l < c->num_layers; l++) {
        kinds[l] = c->layer_is_moe[l] ? 'M' : 'D';
        pattern[l] = c->layer_has_indexer[l] ? 'F' : 'S';
    }
    kinds[c->num_layers] = pattern[c->num_layers] = 0;
    printf("%-28s %s (D dense MLP, M MoE)\n", "mlp kinds", kinds);
    printf("%-28s %s (F own indexer, S reuses)\n", "indexer pattern", pattern);
    printf("%-28s hidden %d, heads %d, q_lora %d, kv_lora %d, nope/rope/v %d/%d/%d\n", "attention (MLA)",
           c->hidden_size, c->num_heads, c->q_lora_rank, c->kv_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim,
           c->v_head_dim);
    printf("%-28s %d heads x %d, top-%d\n", "DSA indexer", c->index_n_heads, c->index_head_dim, c->index_topk);
    printf("%-28s %d routed (top-%d, %d groups keep %d, norm %s, scale %g) + %d shared, intermediate %d\n",
           "experts", c->n_routed_experts, c->num_experts_per_tok, c->n_group, c->topk_group,
           c->norm_topk_prob ? "yes" : "no", c->routed_scaling_factor, c->n_shared_experts, c->moe_intermediate_size);
    printf("%-28s %s, theta %g, attention factor %g, softmax scale %g\n", "rope", c->rope_type, c->rope_theta,
           c->rope_attention_factor, c->softmax_scale);
    printf("%-28s %d, max positions %d\n", "vocab", c->vocab_size, c->max_position_embeddings);
    // dtypes over every tensor of the checkpoint (including ones the model ignores)
    uint64_t by_dtype[GLINT_DTYPE_COUNT] = {0}, count_dtype[GLINT_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < m->ckpt->n_tensors; i++) {
        by_dtype[m->ckpt->tensors[i].dtype] += m->ckpt->tensors[i].nbytes;
        count_dtype[m->ckpt->tensors[i].dtype]++;
    }
    printf("%-28s", "dtypes in checkpoint");
    for (int d = 0; d < GLINT_DTYPE_COUNT; d++)
        if (count_dtype[d]) printf(" %s: %llu tensors;", glint_dtype_name(d), (unsigned long long)count_dtype[d]);
    printf(" %zu files\n", m->ckpt->n_files);
    printf("%-28s %-22s %14s %16s\n", "module kind", "formats", "stored", "read per token");
    for (int k = 0; k < GLINT_KIND_COUNT; k++) {
        const glint_module_stats *s = &m->kinds[k];
        if (!s->stored_bytes) continue;
        char formats[64] = "";
        for (unsigned bit = 0; bit < 32; bit++) {
            if (!(s->formats & (1u << bit))) continue;
            glint_weight probe = {0};
            if (bit < GLINT_DTYPE_COUNT) probe.dtype = (glint_dtype)bit;
            else probe.format = (glint_weight_format)(bit - GLINT_DTYPE_COUNT);
            snprintf(formats + strlen(formats), sizeof formats - strlen(formats), "%s%s", formats[0] ? "+" : "",
                     glint_weight_format_name(&probe));
        }
        printf("  %-26s %-22s %11.3f MB %13.3f MB\n", glint_module_kind_name((glint_module_kind)k), formats,
               s->stored_bytes / 1e6, s->bytes_per_token / 1e6);
    }
    printf("%-28s %llu (%.3f B)\n", "parameters used", (unsigned long long)m->n_params, m->n_params / 1e9);
    print_bytes("weight bytes used", (double)m->weight_bytes);
    print_bytes("checkpoint bytes", (double)glint_checkpoint_total_bytes(m->ckpt));
    print_bytes("bytes read per token", (double)m->bytes_per_token);
    print_bytes("KV cache per token", (double)glint_state_bytes_per_token(c));
    printf("%-28s %d\n", "default context", context_for(m, &o));
    glint_model_free(m);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// bench

// Named synthetic models: the real shapes (spec/GLM5.md §1), BF16 weights made in memory.
static const struct {
    const char *name;
    const char *config_json;
} synthetic_models[] = {
    {"glm-5.1-bf16",
     "{\"architectures\":[\"GlmMoeDsaForCausalLM\"],\"vocab_size\":154880,\"hidden_size\":6144,"
     "\"intermediate_size\":12288,\"moe_intermediate_size\":2048,\"num_hidden_layers\":78,"
     "\"num_attention_heads\":64,\"q_lora_rank\":2048,\"kv_lora_rank\":512,\"qk_nope_head_dim\":192,"
     "\"qk_rope_head_dim\":64,\"v_head_dim\":256,\"n_routed_experts\":256,\"n_shared_experts\":1,"
     "\"num_experts_per_tok\":8,\"n_group\":1,\"topk_group\":1,\"norm_topk_prob\":true,"
     "\"routed_scaling_factor\":2.5,\"rms_norm_eps\":1e-5,\"index_n_heads\":32,\"index_head_dim\":128,"
     "\"index_topk\":2048,\"first_k_dense_replace\":3,\"max_position_embeddings\":202752,"
     "\"rope_parameters\":{\"rope_theta\":1000000,\"rope_type\":\"default\"},\"eos_token_id\":[154820,154827,154829]}"},
    {"glm-5.1-reap-bf16",  // the REAP-pruned expert count of the flagship, BF16 weights on the CPU
     "{\"architectures\":[\"GlmMoeDsaForCausalLM\"],\"vocab_size\":154880,\"hidden_size\":6144,"
     "\"intermediate_size\":12288,\"moe_intermediate_size\":2048,\"num_hidden_layers\":78,"
     "\"num_attention_heads\":64,\"q_lora_rank\":2048,\"kv_lora_rank\":512,\"qk_nope_head_dim\":192,"
     "\"qk_rope_head_dim\":64,\"v_head_dim\":256,\"n_routed_experts\":160,\"n_shared_experts\":1,"
     "\"num_experts_per_tok\":8,\"n_group\":1,\"topk_group\":1,\"norm_topk_prob\":true,"
     "\"routed_scaling_factor\":2.5,\"rms_norm_eps\":1e-5,\"index_n_heads\":32,\"index_head_dim\":128,"
     "\"index_topk\":2048,\"first_k_dense_replace\":3,\"max_position_embeddings\":202752,"
     "\"rope_parameters\":{\"rope_theta\":1000000,\"rope_type\":\"default\"},\"eos_token_id\":[154820,154827,154829]}"},
};

// KV bytes one decode step reads at context ctx: the selected latents of every layer, and every
// cached indexer key of F layers.
static double kv_bytes_per_token(const glint_config *c, int ctx) {
    double sel = ctx < c->index_topk ? ctx : c->index_topk, bytes = 0;
    for (int l = 0; l < c->num_layers; l++) {
        bytes += sel * (c->kv_lora_rank + c->qk_rope_head_dim) * sizeof(float);
        if (c->layer_has_indexer[l]) bytes += (double)ctx * c->index_head_dim * sizeof(float);
    }
    return bytes;
}

// Weight streaming of the matrix-vector kernels, one format at a time, on matrices of ~10x the
// last-level cache (issue: quantized weights, CPU speed).
static int bench_kernels(glint_backend *be) {
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (llc <= 0) llc = 32l << 20;
    double copy_bw = 0, read_bw = 0;
    if (glint_cpu_measure_bandwidth(be->n_threads, &copy_bw, &read_bw)) {
        fprintf(stderr, "glint bench: %s\n", glint_last_error());
        return 1;
    }
    printf("machine: %d threads, kernels %s, last-level cache %.0f MiB; measured now: streaming copy %.2f GB/s "
           "(read + write), streaming read %.2f GB/s\n",
           be->n_threads, glint_cpu_isa(), llc / 1048576.0, copy_bw / 1e9, read_bw / 1e9);
    printf("%-10s %14s %12s %10s %10s %10s\n", "format", "matrix", "MB", "ms", "GB/s", "% of read");
    const int64_t K = 8192;
    const struct {
        const char *name;
        glint_weight_format format;
        glint_dtype dtype;
        double bytes_per_weight;
    } formats[] = {{"BF16", GLINT_WFMT_DENSE, GLINT_DTYPE_BF16, 2.0},
                   {"FP8-block", GLINT_WFMT_FP8_BLOCK, GLINT_DTYPE_F8_E4M3, 1.0 + 4.0 / (128 * 128)},
                   {"NVFP4", GLINT_WFMT_NVFP4, GLINT_DTYPE_U8, 0.5 + 1.0 / 16}};
    int rc = 0;
    for (size_t f = 0; f < sizeof formats / sizeof formats[0] && !rc; f++) {
        const int64_t N = ((int64_t)(10.0 * (double)llc / (formats[f].bytes_per_weight * (double)K)) + 127) / 128 * 128;
        size_t data_bytes = formats[f].format == GLINT_WFMT_NVFP4 ? (size_t)(N * K / 2)
                            : (size_t)(N * K) * glint_dtype_size(formats[f].dtype);
        size_t scale_bytes = formats[f].format == GLINT_WFMT_NVFP4       ? (size_t)(N * K / 16)
                             : formats[f].format == GLINT_WFMT_FP8_BLOCK ? (size_t)((N / 128) * (K / 128) * 4)
                                                                          : 0;
        uint8_t *data = malloc(data_bytes), *scales = scale_bytes ? malloc(scale_bytes) : NULL;
        float *x = malloc(sizeof(float) * K), *y = malloc(sizeof(float) * N);
        if (!data || (scale_bytes && !scales) || !x || !y) {
            fprintf(stderr, "glint bench: out of memory for the %s kernel matrix\n", formats[f].name);
            rc = 1;
        } else {
            uint64_t z = 0x9E3779B97F4A7C15ull;
            for (size_t i = 0; i < data_bytes; i++) {
                z ^= z << 13, z ^= z >> 7, z ^= z << 17;
                data[i] = (uint8_t)(formats[f].dtype == GLINT_DTYPE_BF16 && i % 2 ? 0x3c : z);  // BF16: |w| < 1
                if (formats[f].dtype == GLINT_DTYPE_F8_E4M3 && (data[i] & 0x7f) == 0x7f) data[i] = 0x30;
            }
            for (size_t i = 0; i < scale_bytes; i++)
                scales[i] = formats[f].format == GLINT_WFMT_NVFP4 ? 0x30 : (i % 4 == 3 ? 0x3c : 0);  // 0.5 / ~0.01
            for (int64_t k = 0; k < K; k++) x[k] = (float)(k % 7) * 0.1f;
            glint_weight W = {.dtype = formats[f].dtype, .rows = N, .cols = K, .data = data, .name = formats[f].name,
                              .format = formats[f].format, .scales = scales, .global_scale = 1.0f, .block = 128};
            if (formats[f].format == GLINT_WFMT_NVFP4) W.scales_dtype = GLINT_DTYPE_F8_E4M3, W.block = 16;
            double best = 1e30;
            for (int rep = 0; rep < 6; rep++) {
                double t0 = glint_now_seconds();
                be->matmul(be, y, (int)N, x, (int)K, 1, &W);
                double dt = glint_now_seconds() - t0;
                if (rep && dt < best) best = dt;  // first pass warms the pages
            }
            double bytes = (double)(data_bytes + scale_bytes);
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)N, (long long)K);
            printf("%-10s %14s %12.1f %10.2f %10.2f %9.1f%%\n", formats[f].name, shape, bytes / 1e6, best * 1e3,
                   bytes / best / 1e9, 100.0 * bytes / best / read_bw);
        }
        free(data), free(scales), free(x), free(y);
    }
    return rc;
}

int cmd_bench(int argc, char **argv) {
    model_options o;
    int rc = parse_options("bench", argc, argv, &o);
    if (rc) return rc;
    if (o.kernels) return bench_kernels(make_backend(&o));
    if (!o.model_dir == !o.synthetic) {
        fprintf(stderr, "glint bench: give -m DIR or --synthetic NAME\n");
        return 2;
    }
    glint_backend *be = make_backend(&o);
    glint_model *m = NULL;
    if (o.synthetic) {
        const char *json = NULL;
        for (size_t i = 0; i < sizeof synthetic_models / sizeof synthetic_models[0]; i++)
            if (!strcmp(o.synthetic, synthetic_models[i].name)) json = synthetic_models[i].config_json;
        if (!json) {
            fprintf(stderr, "glint bench: unknown synthetic model '%s' (known:", o.synthetic);
            for (size_t i = 0; i < sizeof synthetic_models / sizeof synthetic_models[0]; i++)
                fprintf(stderr, " %s", synthetic_models[i].name);
            fprintf(stderr, ")\n");
            return 2;
        }
        glint_config cfg;
        if (glint_config_parse(json, o.synthetic, o.load.override_json, o.load.index_topk_pattern, &cfg)) {
            fprintf(stderr, "glint bench: %s\n", glint_last_error());
            return 1;
        }
        if (o.layers) {
            if (o.layers > cfg.num_layers) {
                fprintf(stderr, "glint bench: --layers %lld exceeds the model's %d\n", (long long)o.layers,
                        cfg.num_layers);
                return 2;
            }
            cfg.num_layers = (int)o.layers;
        }
        fprintf(stderr, "bench: making %d layers of random %s weights in memory...\n", cfg.num_layers, o.synthetic);
        m = glint_model_synthetic(&cfg, be);
        if (!m) {
            fprintf(stderr, "glint bench: %s\n", glint_last_error());
            return 1;
        }
    } else {
        m = load_model("bench", &o, be);
        if (!m) return 1;
    }
    const glint_config *c = &m->cfg;
    double copy_bw = 0, read_bw = 0;
    if (glint_cpu_measure_bandwidth(be->n_threads, &copy_bw, &read_bw)) {
        fprintf(stderr, "glint bench: %s\n", glint_last_error());
        glint_model_free(m);
        return 1;
    }
    printf("machine: %s, %d threads, kernels %s; measured now: streaming copy %.2f GB/s (read + write), "
           "streaming read %.2f GB/s\n",
           be->name, be->n_threads, glint_cpu_isa(), copy_bw / 1e9, read_bw / 1e9);
    printf("model: %s, %d layers, %.3f B parameters, %.2f GB weights, %.2f GB read per token\n",
           o.synthetic ? o.synthetic : o.model_dir, c->num_layers, m->n_params / 1e9, m->weight_bytes / 1e9,
           m->bytes_per_token / 1e9);
    const char *list = o.ctx_list ? o.ctx_list : "256";
    float *logits = malloc(sizeof(float) * (size_t)c->vocab_size);
    rc = logits ? 0 : 1;
    printf("%8s %10s %12s %12s %10s %10s %10s\n", "context", "tok/s", "ms/token", "GB/token", "GB/s", "% of copy",
           "% of read");
    for (const char *p = list; *p && !rc;) {
        char *end;
        long ctx = strtol(p, &end, 10);
        if (end == p || ctx < 1 || ctx > c->max_position_embeddings) {
            fprintf(stderr, "glint bench: bad --ctx entry at '%s'\n", p);
            rc = 2;
            break;
        }
        p = *end == ',' ? end + 1 : end;
        glint_state *st = glint_state_new(m, (int)ctx + (int)o.n_decode + 1);
        if (!st) {
            fprintf(stderr, "glint bench: %s\n", glint_last_error());
            rc = 1;
            break;
        }
        // Decode speed does not depend on what the cache holds: start at position ctx over a zero cache.
        st->n_past = (int)ctx;
        int32_t token = 1;
        glint_forward(m, st, &token, 1, logits, 0);  // warm-up
        double t0 = glint_now_seconds();
        for (int i = 0; i < o.n_decode; i++)
            if (glint_forward(m, st, &token, 1, logits, 0)) {
                fprintf(stderr, "glint bench: %s\n", glint_last_error());
                rc = 1;
                break;
            }
        double dt = (glint_now_seconds() - t0) / (double)o.n_decode;
        double bytes = (double)m->bytes_per_token + kv_bytes_per_token(c, (int)ctx);
        printf("%8ld %10.2f %12.2f %12.3f %10.2f %9.1f%% %9.1f%%\n", ctx, 1.0 / dt, dt * 1e3, bytes / 1e9,
               bytes / dt / 1e9, 100.0 * bytes / dt / copy_bw, 100.0 * bytes / dt / read_bw);
        glint_state_free(m, st);
    }
    free(logits);
    glint_model_free(m);
    return rc;
}
