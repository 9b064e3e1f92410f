// glint generate / logits / info / bench: the commands that run the model (DESIGN.md §6).
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#ifdef GLINT_HAVE_CUDA
#include "backend/cuda/cuda_bench.h"
#endif
#include "cli/commands.h"
#include "cli/options.h"
#include "common/util.h"
#include "engine/generate.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "io/quant.h"
#include "model/glm.h"
#include "text/tokenizer.h"

typedef struct {
    const glint_tokenizer *tok;  // NULL: print ids
    glint_detok_stream *detok;
    int count;
} generate_output;

static int print_token(int32_t id, void *user) {
    generate_output *out = user;
    if (!out->detok) {
        printf(out->count++ ? " %d" : "%d", id);
    } else {
        size_t len = 0;
        char *piece = glint_detok_stream_push(out->detok, id, &len);
        if (piece) fwrite(piece, 1, len, stdout);
        free(piece);
    }
    fflush(stdout);
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
    glint_sampling_params sp;
    if (resolve_sampling("generate", &o, &sp)) return 1;
    if (!o.n_predict) o.n_predict = 32;
    glint_backend *be = make_backend(&o);
    if (!be) return 1;
    glint_model *m = load_model("generate", &o, be);
    if (!m) return 1;
    glint_tokenizer *tok = NULL;
    int n_prompt = 0;
    int32_t *prompt = NULL;
    if (o.prompt) {  // text in: tokenized as transformers' tokenizer(text) does (with special tokens)
        tok = glint_tokenizer_load_dir(o.model_dir);
        if (!tok || (n_prompt = glint_tokenizer_encode(tok, o.prompt, strlen(o.prompt), 1, &prompt)) < 0) {
            fprintf(stderr, "glint generate: %s\n", glint_last_error());
            glint_tokenizer_free(tok);
            glint_model_free(m);
            return 1;
        }
        for (int i = 0; i < n_prompt; i++)
            if (prompt[i] >= m->cfg.vocab_size) {
                fprintf(stderr, "glint generate: the tokenizer produced id %d, outside the model's vocabulary (%d)\n",
                        prompt[i], m->cfg.vocab_size);
                n_prompt = -1;
                break;
            }
    } else {
        prompt = parse_ids("generate", o.ids, m->cfg.vocab_size, &n_prompt);
    }
    int ctx = context_for(m, &o);
    generate_output out = {tok, NULL, 0};
    glint_state *st = prompt && n_prompt > 0 ? glint_state_new(m, ctx) : NULL;
    glint_sampler *sampler = st ? glint_sampler_new(&sp, m->cfg.vocab_size) : NULL;
    float *logits = sampler ? malloc(sizeof(float) * (size_t)m->cfg.vocab_size) : NULL;
    if (tok && !o.print_ids) out.detok = glint_detok_stream_new(tok, 1);
    rc = 1;
    if (!logits || (tok && !o.print_ids && !out.detok)) {
        if (prompt && n_prompt > 0) fprintf(stderr, "glint generate: %s\n", glint_last_error());
        goto done;
    }
    if (n_prompt + o.n_predict + o.speculative > ctx) {
        fprintf(stderr, "glint generate: %d prompt tokens + %lld to generate exceed the context length %d\n", n_prompt,
                (long long)o.n_predict, ctx);
        goto done;
    }
    double t0 = glint_now_seconds(), t1 = t0;
    int generated;
    if (o.speculative) {  // greedy with MTP drafts: the prompt runs inside (the MTP cache needs it too)
        if (sp.rules.temperature >= 1e-6f || !m->has_mtp) {
            fprintf(stderr, "glint generate: --speculative %s\n",
                    m->has_mtp ? "is greedy only: add --temperature 0" : "needs a checkpoint with an MTP layer");
            goto done;
        }
        glint_state *mst = glint_mtp_state_new(m, ctx);
        int drafted = 0, accepted = 0;
        generated = mst ? glint_generate_speculative(m, st, mst, prompt, n_prompt, (int)o.n_predict, o.ignore_eos,
                                                     print_token, &out, &drafted, &accepted)
                        : -1;
        glint_state_free(m, mst);
        if (generated >= 0)
            fprintf(stderr, "speculative (MTP, 1 draft per step): %d of %d drafts accepted (%.1f%%), %d forward steps "
                            "for %d tokens\n",
                    accepted, drafted, drafted ? 100.0 * accepted / drafted : 0.0, drafted + 1, generated);
    } else {
        if (glint_forward(m, st, prompt, n_prompt, logits, 0)) {
            fprintf(stderr, "glint generate: %s\n", glint_last_error());
            goto done;
        }
        t1 = glint_now_seconds();
        generated = glint_generate(m, st, sampler, logits, (int)o.n_predict, o.ignore_eos, print_token, &out);
    }
    if (generated < 0) {
        fprintf(stderr, "\nglint generate: %s\n", glint_last_error());
        goto done;
    }
    if (out.detok) {
        size_t len = 0;
        char *rest = glint_detok_stream_flush(out.detok, &len);
        if (rest) fwrite(rest, 1, len, stdout);
        free(rest);
    }
    printf("\n");
    fflush(stdout);
    double t2 = glint_now_seconds();
    if (o.speculative)
        fprintf(stderr, "prompt (%d tokens) and %d generated tokens in %.3f s\n", n_prompt, generated, t2 - t0);
    else
        fprintf(stderr, "prompt: %d tokens in %.3f s (%.1f tok/s); generated: %d tokens in %.3f s (%.1f tok/s)\n",
                n_prompt, t1 - t0, n_prompt / (t1 - t0), generated, t2 - t1,
                generated > 1 ? (generated - 1) / (t2 - t1) : 0);
    rc = 0;
done:
    glint_detok_stream_free(out.detok);
    free(logits);
    glint_sampler_free(sampler);
    glint_state_free(m, st);
    free(prompt);
    glint_tokenizer_free(tok);
    glint_model_free(m);
    return rc;
}

// Perplexity of a text file: tokenized with special tokens (as transformers' tokenizer(text)),
// split into windows of --context-length tokens (default 512) from the start; each window is run
// from an empty cache and predicts its tokens 1.. (tools/demo/make_references.py does the same).
int cmd_perplexity(int argc, char **argv) {
    model_options o;
    int rc = parse_options("perplexity", argc, argv, &o);
    if (rc) return rc;
    const char *file = o.positional;
    if (!file || !o.model_dir) {
        fprintf(stderr, "usage: glint perplexity -m DIR FILE [--context-length WINDOW]\n");
        return 2;
    }
    size_t len = 0;
    char *text = glint_read_text_file(file, &len);
    if (!text || !len) {  // (an empty file would score the special tokens alone)
        if (text) fprintf(stderr, "glint perplexity: %s: the file is empty\n", file);
        else fprintf(stderr, "glint perplexity: %s\n", glint_last_error());
        free(text);
        return 1;
    }
    glint_backend *be = make_backend(&o);
    glint_model *m = be ? load_model("perplexity", &o, be) : NULL;
    glint_tokenizer *tok = m ? glint_tokenizer_load_dir(o.model_dir) : NULL;
    int32_t *ids = NULL;
    int n = tok ? glint_tokenizer_encode(tok, text, len, 1, &ids) : -1;
    const int window = o.context_length ? (int)o.context_length : 512;
    float *logits = n > 0 ? malloc(sizeof(float) * (size_t)window * (size_t)m->cfg.vocab_size) : NULL;
    glint_state *st = logits ? glint_state_new(m, window) : NULL;
    rc = 1;
    if (!st) {
        if (m) fprintf(stderr, "glint perplexity: %s: %s\n", file, n == 0 ? "no tokens" : glint_last_error());
        goto done;
    }
    double nll = 0, t0 = glint_now_seconds();
    long predicted = 0;
    for (int start = 0; start < n; start += window) {
        int count = n - start < window ? n - start : window;
        if (count < 2) continue;
        st->n_past = 0;
        if (glint_forward(m, st, ids + start, count, logits, 1)) {
            fprintf(stderr, "glint perplexity: %s\n", glint_last_error());
            goto done;
        }
        for (int t = 0; t + 1 < count; t++) {  // log-softmax of row t at the next token, in double
            const float *row = logits + (size_t)t * m->cfg.vocab_size;
            double maxv = row[0], sum = 0;
            for (int v = 1; v < m->cfg.vocab_size; v++) maxv = row[v] > maxv ? row[v] : maxv;
            for (int v = 0; v < m->cfg.vocab_size; v++) sum += exp(row[v] - maxv);
            nll += maxv + log(sum) - row[ids[start + t + 1]];
            predicted++;
        }
    }
    printf("perplexity %.4f over %ld predicted tokens (%d tokens, windows of %d) in %.2f s\n", exp(nll / predicted),
           predicted, n, window, glint_now_seconds() - t0);
    rc = 0;
done:
    glint_state_free(m, st);
    free(logits);
    free(ids);
    glint_tokenizer_free(tok);
    glint_model_free(m);
    free(text);
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
    if (!be) return 1;
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
    if (!be) return 1;
    glint_model *m = load_model("info", &o, be);
    if (!m) return 1;
    const glint_config *c = &m->cfg;
    printf("%-28s GlmMoeDsaForCausalLM (%s)\n", "architecture", o.model_dir);
    printf("%-28s %d (+%d MTP%s)\n", "layers", c->num_layers, c->num_nextn_predict_layers,
           m->has_mtp ? ", loaded: glint_mtp_forward drafts" : c->num_nextn_predict_layers ? ", not in the checkpoint" : "");
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
    // The product checkpoint (GLM-5.1-478B-A42B-REAP-NVFP4, spec/GLM5.md): 160 routed experts in
    // NVFP4 (E4M3 block scales per 16, weight_scale_2), everything else BF16; weights are made in
    // the backend's memory where it can (CUDA: a seeded fill kernel, no host copy).
    {"glm-5.1-478b-nvfp4", NULL},
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

// Weight bytes one decode step of the full model (config full) reads, scaled per module kind from
// the measured model m (the same shapes with fewer layers): attention and norms by layers,
// the indexer by F layers, the dense MLP by dense layers, router and experts by MoE layers.
static double full_model_bytes(const glint_model *m, const glint_config *full) {
    const glint_config *c = &m->cfg;
    int n[2][3] = {{0}};  // [measured, full][layers, F layers, MoE layers]
    for (int k = 0; k < 2; k++) {
        const glint_config *x = k ? full : c;
        n[k][0] = x->num_layers;
        for (int l = 0; l < x->num_layers; l++) n[k][1] += x->layer_has_indexer[l], n[k][2] += x->layer_is_moe[l];
    }
    const double by_layers = (double)n[1][0] / n[0][0], by_f = n[0][1] ? (double)n[1][1] / n[0][1] : 0;
    const double by_moe = n[0][2] ? (double)n[1][2] / n[0][2] : 0;
    const double by_dense = n[0][0] > n[0][2] ? (double)(n[1][0] - n[1][2]) / (n[0][0] - n[0][2]) : 0;
    double total = 0;
    for (int k = 0; k < GLINT_KIND_COUNT; k++) {
        double b = (double)m->kinds[k].bytes_per_token;
        switch (k) {
        case GLINT_KIND_ATTENTION:
        case GLINT_KIND_NORMS: b *= by_layers; break;
        case GLINT_KIND_INDEXER: b *= by_f; break;
        case GLINT_KIND_DENSE_MLP: b *= by_dense; break;
        case GLINT_KIND_ROUTER:
        case GLINT_KIND_SHARED_EXPERT:
        case GLINT_KIND_ROUTED_EXPERTS: b *= by_moe; break;
        default: break;
        }
        total += b;
    }
    return total;
}

// Weight streaming of the matrix-vector kernels, one format at a time, on matrices of ~10x the
// last-level cache (issue: quantized weights, CPU speed).
// Last-level cache size: sysfs first (sysconf reports the whole socket's L3 on some VMs).
static long last_level_cache_bytes(void) {
    long kib = 0;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    if (f) {
        if (fscanf(f, "%ldK", &kib) != 1) kib = 0;
        fclose(f);
    }
    if (kib > 0) return kib * 1024;
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return llc > 0 ? llc : 32l << 20;
}

static int bench_kernels(glint_backend *be) {
    long llc = last_level_cache_bytes();
    double copy_bw = 0, read_bw = 0;
    if (be->measure_bandwidth(be, &copy_bw, &read_bw)) {
        fprintf(stderr, "glint bench: %s\n", glint_last_error());
        return 1;
    }
    // Matrices of 10x the host's last-level cache, at least 1 GiB (well past a GPU's L2 too).
    const double matrix_bytes = 10.0 * (double)llc > 1073741824.0 ? 10.0 * (double)llc : 1073741824.0;
    printf("machine: %s (%s), %d threads, host last-level cache %.0f MiB; measured now: streaming copy %.2f GB/s "
           "(read + write), streaming read %.2f GB/s\n",
           be->name, be->describe(be), be->n_threads, llc / 1048576.0, copy_bw / 1e9, read_bw / 1e9);
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
        const int64_t N = ((int64_t)(matrix_bytes / (formats[f].bytes_per_weight * (double)K)) + 127) / 128 * 128;
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
            // backend memory for x and y; the weight goes where the backend wants it
            float *dx = be->alloc(be, sizeof(float) * (size_t)K, "x"), *dy = be->alloc(be, sizeof(float) * (size_t)N, "y");
            double best = 1e30;
            if (!dx || !dy || be->prepare_weight(be, &W)) {
                fprintf(stderr, "glint bench: %s\n", glint_last_error());
                rc = 1;
            } else {
                be->upload(be, dx, x, sizeof(float) * (size_t)K);
                for (int rep = 0; rep < 6 && !rc; rep++) {
                    double t0 = glint_now_seconds();
                    be->matmul(be, dy, (int)N, dx, (int)K, 1, &W);
                    be->download(be, y, dy, 1);  // waits for the kernel on device backends
                    double dt = glint_now_seconds() - t0;
                    if (rep && dt < best) best = dt;  // first pass warms the pages
                    if (isnan(y[0])) {  // a failed op downloads NaN
                        fprintf(stderr, "glint bench: the %s matmul failed: %s\n", formats[f].name, glint_last_error());
                        rc = 1;
                    }
                }
            }
            be->free(be, dx), be->free(be, dy);
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

// The host sampler over GLM-5's vocabulary (154880 tokens) per sampling setting: ms per drawn token.
// The logits: a flat spread plus a few hundred strong tokens (a broad next-token distribution, the
// costly case: the more tokens top-p keeps, the more the sampler sorts).
static int bench_sampler(void) {
    const int V = 154880;
    const glint_sample_params settings[] = {  // temperature, top_k, top_p, min_p
        {1.0f, -1, 0.95f, 0.0f}, {1.0f, -1, 1.0f, 0.0f}, {0.7f, 40, 0.8f, 0.05f}, {1.5f, -1, 0.99f, 0.0f}};
    float *logits = malloc(sizeof(float) * V), *work = malloc(sizeof(float) * V);
    if (!logits || !work) {
        free(logits), free(work);
        fprintf(stderr, "glint bench: out of memory for the sampler's logits\n");
        return 1;
    }
    uint64_t z = 0x9E3779B97F4A7C15ull;
    for (int t = 0; t < V; t++) {
        z ^= z << 13, z ^= z >> 7, z ^= z << 17;
        logits[t] = (float)(z >> 40) / (float)(1 << 24) * 8.0f - 4.0f + (z % 512 == 0 ? 8.0f : 0.0f);
    }
    printf("sampler over %d tokens (host):\n", V);
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        glint_sampling_params p;
        glint_sampling_defaults(&p);
        p.rules = settings[i], p.seed = 1;
        glint_sampler *s = glint_sampler_new(&p, V);
        if (!s) {
            free(logits), free(work);
            fprintf(stderr, "glint bench: %s\n", glint_last_error());
            return 1;
        }
        const int draws = 20;
        double t0 = glint_now_seconds();
        for (int d = 0; d < draws; d++) {
            memcpy(work, logits, sizeof(float) * V);
            glint_sampler_sample(s, work);
        }
        printf("  temperature %.2g top_p %.3g min_p %.2g top_k %d: %.3f ms per token\n", p.rules.temperature,
               p.rules.top_p, p.rules.min_p, p.rules.top_k, (glint_now_seconds() - t0) * 1e3 / draws);
        glint_sampler_free(s);
    }
    free(logits), free(work);
    return 0;
}

// The dense BF16 tensor-core rate of the card measured now (the larger of cuBLAS and glint's kernel
// on a square BF16 problem), and glint's prefill matmul per weight format and mode at T = 4096; 0
// when the backend is not CUDA (or the measurement failed).
static double bench_gemm_peak(glint_backend *be, int print_formats) {
#ifdef GLINT_HAVE_CUDA
    if (strcmp(be->name, "cuda")) return 0;
    const int sq = 8192, T = 4096, N = 6144, K = 6144;
    glint_cuda_gemm_rates r;
    if (glint_cuda_gemm_bench(sq, T, N, K, &r)) {
        fprintf(stderr, "glint bench: GEMM peak: %s\n", glint_last_error());
        return 0;
    }
    const double peak = r.cublas_bf16 > r.tc_bf16 ? r.cublas_bf16 : r.tc_bf16;
    printf("dense BF16 tensor-core peak, measured now on %dx%dx%d: cuBLAS %.1f TFLOP/s%s, glint mma.sync kernel "
           "%.1f TFLOP/s (%.1f%%); peak used: %.1f TFLOP/s\n",
           sq, sq, sq, r.cublas_bf16, r.cublas_bf16 > 0 ? "" : " (not linked)", r.tc_bf16,
           peak > 0 ? 100.0 * r.tc_bf16 / peak : 0.0, peak);
    if (print_formats) {
        // precise: the default (x as hi + lo BF16; cuBLAS where linked); fast: GLINT_CUDA_TC=bf16 (x
        // rounded to BF16); glint kernel: precise on glint's own kernel (GLINT_CUDA_CUBLAS=0); FLOPs
        // counted once (2·T·N·K) in all
        static const char *names[GLINT_GEMM_FORMATS] = {"BF16", "FP8-block", "NVFP4"};
        printf("prefill matmul (FP32 x in, FP32 y out) T=%d N=%d K=%d, TFLOP/s (%% of peak):\n%-10s %20s  %20s  %20s\n",
               T, N, K, "format", "precise (default)", "fast (TC=bf16)", "precise, glint kernel");
        for (int f = 0; f < GLINT_GEMM_FORMATS; f++) {
            char own[40] = "    (FP32 SIMT)";
            if (r.kernel_precise[f] > 0)
                snprintf(own, sizeof own, "%12.1f (%4.1f%%)", r.kernel_precise[f],
                         peak > 0 ? 100.0 * r.kernel_precise[f] / peak : 0.0);
            printf("%-10s %12.1f (%4.1f%%)  %12.1f (%4.1f%%)  %s\n", names[f], r.precise[f],
                   peak > 0 ? 100.0 * r.precise[f] / peak : 0.0, r.fast[f], peak > 0 ? 100.0 * r.fast[f] / peak : 0.0,
                   own);
        }
        printf("%-10s %12.1f (%4.1f%%)  (the FP32 SIMT kernel, GLINT_CUDA_TC=0)\n", "BF16 SIMT", r.simt_bf16,
               peak > 0 ? 100.0 * r.simt_bf16 / peak : 0.0);
    }
    return peak;
#else
    (void)be, (void)print_formats;
    return 0;
#endif
}

// Prefill: N tokens from an empty cache in chunks of --prefill-chunk (default 2048), as a server's
// chunked prefill runs them. FLOP/s counts the weight products only (2 per weight element per token).
static int bench_prefill(glint_model *m, const model_options *o, float *logits) {
    const glint_config *c = &m->cfg;
    const int chunk = o->prefill_chunk ? (int)o->prefill_chunk : 2048;
    const double peak = bench_gemm_peak(m->be, 1) * (m->tp_size > 1 ? m->tp_size : 1);  // every card's
    printf("%8s %10s %10s %14s %10s\n", "prefill", "tok/s", "seconds", "weight TFLOP/s", "% of peak");
    for (const char *p = o->prefill_list; *p;) {
        char *end;
        long n = strtol(p, &end, 10);
        if (end == p || n < 1 || n > c->max_position_embeddings) {
            fprintf(stderr, "glint bench: bad --prefill entry at '%s'\n", p);
            return 2;
        }
        p = *end == ',' ? end + 1 : end;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
        glint_state *st = ids ? glint_state_new(m, (int)n) : NULL;
        if (!st) {
            fprintf(stderr, "glint bench: %s\n", ids ? glint_last_error() : "out of memory");
            free(ids);
            return 1;
        }
        for (long i = 0; i < n; i++) ids[i] = (int32_t)(3 + (i * 7919) % (c->vocab_size - 3));
        double t0 = glint_now_seconds();
        int rc = 0;
        for (long at = 0; at < n && !rc; at += chunk) {
            int count = (int)(n - at < chunk ? n - at : chunk);
            rc = glint_forward(m, st, ids + at, count, logits, 0);  // the download of logits waits for the device
        }
        double dt = glint_now_seconds() - t0;
        if (rc) fprintf(stderr, "glint bench: %s\n", glint_last_error());
        else
        {
            const double tflops = 2.0 * (double)m->params_per_token * n / dt / 1e12;
            printf("%8ld %10.1f %10.3f %14.2f %9.1f%%\n", n, n / dt, dt, tflops, peak > 0 ? 100.0 * tflops / peak : 0.0);
        }
        glint_state_free(m, st);
        free(ids);
        if (rc) return 1;
    }
    return 0;
}

// The cost of a speculative decode step with k = 1..max_steps drafts, as the server engine runs one:
// the verify forward of the last token and k drafts (every row's argmax and hidden state), then the
// MTP layer on the row taken and, for k > 1, on k - 1 chained rows of its own (argmax and hidden
// state each). The drafts are rejected (random weights draft nothing useful); what a step costs hardly
// depends on how many are taken. Speculation with k drafts pays when a step takes more drafts on
// average than its cost over a plain step's, minus 1. full_dt > 0 (a synthetic model with fewer
// layers than full_layers; the plain step extrapolated to them): also the ratio for the full model,
// taken as the verify forward's ratio to a plain step (the layers' share grows alike in both) plus
// the MTP drafts' time once (one MTP layer whatever the depth). 0, or -1 with a message.
static int bench_speculative(glint_model *m, int ctx, int max_steps, int n_steps, double plain_dt, double full_dt,
                             int full_layers) {
    const size_t D = (size_t)m->cfg.hidden_size;
    const int page = 64, tokens = ctx + max_steps + 2;
    glint_kv_pool *pool = glint_kv_pool_new(m, (tokens + page - 1) / page, page, 1);
    glint_state *st = pool ? glint_state_in_pool(pool) : NULL;
    float *hidden = malloc(sizeof(float) * 2 * (size_t)(1 + max_steps) * D);
    int rc = !st || !hidden || glint_state_reserve(st, tokens) ? -1 : 0;
    for (int k = 1; k <= max_steps && !rc; k++) {
        double t0 = 0, verify_time = 0;  // (the forwards end when their token ids are on the host)
        for (int i = -1; i < n_steps && !rc; i++) {  // i = -1: a warm-up step
            if (i == 0) t0 = glint_now_seconds(), verify_time = 0;
            st->n_past = ctx, st->mtp_past = ctx;
            int32_t rows[1 + GLINT_MAX_DRAFTS] = {1, 2, 3, 4, 5}, chosen[1 + GLINT_MAX_DRAFTS];
            int32_t drafts[1 + GLINT_MAX_DRAFTS];
            glint_batch_item verify = {.st = st, .ids = rows, .n_tokens = 1 + k, .all_logits = 1, .hidden = hidden,
                                       .argmax = chosen};
            const double verify_start = glint_now_seconds();
            if ((rc = glint_forward_batch(m, &verify, 1))) break;
            verify_time += glint_now_seconds() - verify_start;
            st->n_past = ctx + 1;  // the drafts rejected
            drafts[0] = chosen[0];
            const float *h_in = hidden;  // row 0's, then each MTP step's (in the two halves by turns)
            for (int j = 0; j < k && !rc; j++) {
                float *h_out = j % 2 == 0 ? hidden + (size_t)(1 + max_steps) * D : hidden;
                glint_batch_item mtp = {.st = st, .ids = &drafts[j], .n_tokens = 1, .hidden_in = h_in,
                                        .hidden = k > 1 ? h_out : NULL, .argmax = &drafts[j + 1]};
                rc = glint_mtp_forward_batch(m, &mtp, 1);
                h_in = h_out;
            }
        }
        if (rc) break;
        const double dt = (glint_now_seconds() - t0) / n_steps, verify_dt = verify_time / n_steps;
        printf("%8s %10s %12.2f   speculative step with %d draft%s: %.2fx a plain step (pays when it takes more "
               "than %.2f drafts)", "", "", dt * 1e3, k, k > 1 ? "s" : "", dt / plain_dt, dt / plain_dt - 1.0);
        if (full_dt > 0) {
            const double full_ratio = (full_dt * verify_dt / plain_dt + (dt - verify_dt)) / full_dt;
            printf("; %d layers: about %.2fx (verify %.2fx a plain step, drafts %.2f ms)", full_layers, full_ratio,
                   verify_dt / plain_dt, (dt - verify_dt) * 1e3);
        }
        printf("\n");
    }
    if (rc) fprintf(stderr, "glint bench: speculative step: %s\n", hidden ? glint_last_error() : "out of memory");
    free(hidden);
    glint_state_free(m, st);
    glint_kv_pool_free(m, pool);
    return rc ? -1 : 0;
}

int cmd_bench(int argc, char **argv) {
    model_options o;
    int rc = parse_options("bench", argc, argv, &o);
    if (rc) return rc;
    if (o.kernels) {
        glint_backend *kbe = make_backend(&o);
        if (!kbe) return 1;
        rc = bench_kernels(kbe);
        if (!rc) rc = bench_sampler();
        if (!rc) bench_gemm_peak(kbe, 1);
        return rc;
    }
    if (!o.model_dir == !o.synthetic) {
        fprintf(stderr, "glint bench: give -m DIR or --synthetic NAME\n");
        return 2;
    }
    if (o.layers && o.model_dir) {
        fprintf(stderr, "glint bench: --layers is for --synthetic (a checkpoint runs all its layers)\n");
        return 2;
    }
    glint_backend *be = make_backend(&o);
    if (!be) return 1;
    glint_model *m = NULL;
    glint_config full_cfg;
    memset(&full_cfg, 0, sizeof full_cfg);
    int experts_nvfp4 = 0;
    if (o.synthetic) {
        const char *json = NULL;
        for (size_t i = 0; i < sizeof synthetic_models / sizeof synthetic_models[0]; i++)
            if (!strcmp(o.synthetic, synthetic_models[i].name)) json = synthetic_models[i].config_json;
        if (!strcmp(o.synthetic, "glm-5.1-478b-nvfp4")) json = synthetic_models[1].config_json, experts_nvfp4 = 1;
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
        full_cfg = cfg;
        if (o.layers) {
            if (o.layers > cfg.num_layers) {
                fprintf(stderr, "glint bench: --layers %lld exceeds the model's %d\n", (long long)o.layers,
                        cfg.num_layers);
                return 2;
            }
            cfg.num_layers = (int)o.layers;
        }
        cfg.num_nextn_predict_layers = o.spec_steps ? 1 : 0;  // the MTP layer only for the speculative step
        fprintf(stderr, "bench: making %d layers of random %s weights in memory%s...\n", cfg.num_layers, o.synthetic,
                o.spec_steps ? " (+ the MTP layer)" : "");
        const glint_weight_format experts = experts_nvfp4 ? GLINT_WFMT_NVFP4 : GLINT_WFMT_DENSE;
        glint_load_options tp = {.tp_size = o.load.tp_size, .rank_backend = rank_backend, .rank_backend_ctx = &o};
        m = tp.tp_size > 1 ? glint_model_synthetic_tp(&cfg, experts, &tp) : glint_model_synthetic_quant(&cfg, be, experts);
        if (!m) {
            fprintf(stderr, "glint bench: %s\n", glint_last_error());
            return 1;
        }
    } else {
        m = load_model("bench", &o, be);
        if (!m) return 1;
    }
    if (o.spec_steps && !m->has_mtp) {
        fprintf(stderr, "glint bench: --speculative-num-steps: this model has no MTP layer\n");
        glint_model_free(m);
        return 2;
    }
    const glint_config *c = &m->cfg;
    double copy_bw = 0, read_bw = 0;
    if (be->measure_bandwidth(be, &copy_bw, &read_bw)) {
        fprintf(stderr, "glint bench: %s\n", glint_last_error());
        glint_model_free(m);
        return 1;
    }
    printf("machine: %s (%s), %d threads; measured now: streaming copy %.2f GB/s (read + write), "
           "streaming read %.2f GB/s\n",
           be->name, be->describe(be), be->n_threads, copy_bw / 1e9, read_bw / 1e9);
    printf("model: %s, %d layers, %.3f B parameters, %.2f GB weights, %.2f GB read per token\n",
           o.synthetic ? o.synthetic : o.model_dir, c->num_layers, m->n_params / 1e9, m->weight_bytes / 1e9,
           m->bytes_per_token / 1e9);
    // With tensor parallelism the figures below are per card (rank 0's part; every card reads the
    // selected cache rows and indexer keys of every layer), against card 0's measured bandwidth.
    const glint_model *card = m->tp_size > 1 ? m->ranks[0] : m;
    if (card != m)
        printf("tensor parallel over %d ranks; per card: %.2f GB weights, %.2f GB read per token\n", m->tp_size,
               card->weight_bytes / 1e9, card->bytes_per_token / 1e9);
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
        // Greedy decoding as glint generate runs it: the argmax is taken where the logits are and only
        // the token id comes back, to be the next step's input.
        int32_t token = 1, next = 0;
        glint_batch_item item = {st, &token, 1, NULL, 0, NULL, NULL, &next, NULL, NULL, NULL, NULL};
        glint_forward_batch(m, &item, 1);  // warm-up
        double t0 = glint_now_seconds();
        for (int i = 0; i < o.n_decode; i++, token = next)
            if (glint_forward_batch(m, &item, 1)) {
                fprintf(stderr, "glint bench: %s\n", glint_last_error());
                rc = 1;
                break;
            }
        double dt = (glint_now_seconds() - t0) / (double)o.n_decode;
        double bytes = (double)card->bytes_per_token + kv_bytes_per_token(c, (int)ctx);
        printf("%8ld %10.2f %12.2f %12.3f %10.2f %9.1f%% %9.1f%%\n", ctx, 1.0 / dt, dt * 1e3, bytes / 1e9,
               bytes / dt / 1e9, 100.0 * bytes / dt / copy_bw, 100.0 * bytes / dt / read_bw);
        double full_dt = 0;  // the step extrapolated to the full model's layers (synthetic models with fewer)
        if (o.synthetic && full_cfg.num_layers > c->num_layers) {
            const double full = full_model_bytes(card, &full_cfg) + kv_bytes_per_token(&full_cfg, (int)ctx);
            full_dt = full / (bytes / dt);
            printf("%8s %10.2f %12.2f %12.3f   (%d layers at this GB/s; KV + indexer keys %.3f GB of it)\n", "",
                   bytes / dt / full, full / (bytes / dt) * 1e3, full / 1e9, full_cfg.num_layers,
                   kv_bytes_per_token(&full_cfg, (int)ctx) / 1e9);
        }
        glint_state_free(m, st);
        if (!rc && o.spec_steps)
            rc = bench_speculative(m, (int)ctx, (int)o.spec_steps, (int)o.n_decode, dt, full_dt,
                                   full_cfg.num_layers) != 0;
    }
    if (!rc && o.prefill_list) rc = bench_prefill(m, &o, logits);
    free(logits);
    glint_model_free(m);
    return rc;
}
