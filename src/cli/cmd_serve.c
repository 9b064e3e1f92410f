// glint serve: the OpenAI-compatible server, started with sglang's launch_server command line
// (DESIGN.md §6). Flags that select GPU kernels or parallelism do not apply to this build: each
// gets a one-line notice. Unknown flags are errors that name the flag.
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "common/util.h"
#include "server/server.h"

typedef struct {
    const char *name;
    int takes_value;
    const char *notice;  // non-NULL: accepted, has no effect here, print this
} flag_spec;

// Every flag of the seed's sglang launch line, plus glint's own and a few sglang extras.
static const flag_spec FLAGS[] = {
    {"--model-path", 1, NULL}, {"-m", 1, NULL}, {"--model", 1, NULL},
    {"--served-model-name", 1, NULL}, {"--host", 1, NULL}, {"--port", 1, NULL},
    {"--trust-remote-code", 0, "no checkpoint code is executed by glint; --trust-remote-code has no effect"},
    {"--tensor-parallel-size", 1, NULL}, {"--tp-size", 1, NULL}, {"--tp", 1, NULL},
    {"--pipeline-parallel-size", 1, NULL}, {"--pp-size", 1, NULL},
    {"--context-length", 1, NULL}, {"--max-running-requests", 1, NULL}, {"--mem-fraction-static", 1, NULL},
    {"--chunked-prefill-size", 1, NULL}, {"--page-size", 1, NULL},
    {"--quantization", 1, "the weight format is read from the checkpoint's config; --quantization is not needed"},
    {"--kv-cache-dtype", 1, "glint keeps the KV cache in float32 on every backend; --kv-cache-dtype has no effect"},
    {"--triton-attention-num-kv-splits", 1, NULL},
    {"--moe-runner-backend", 1, "--moe-runner-backend selects an sglang kernel; glint has its own"},
    {"--fp4-gemm-backend", 1, "--fp4-gemm-backend selects an sglang kernel; glint has its own"},
    {"--attention-backend", 1, "--attention-backend selects an sglang kernel; glint has its own"},
    {"--cuda-graph-max-bs", 1, "--cuda-graph-max-bs: glint's CUDA backend replays graphs of decode steps of up to 64 "
                               "rows; the value has no effect"},
    {"--pre-warm-nccl", 0, "--pre-warm-nccl: glint's GPUs meet through an all-reduce of its own, not NCCL"},
    {"--tool-call-parser", 1, NULL}, {"--reasoning-parser", 1, NULL}, {"--chat-template", 1, NULL},
    {"--model-loader-extra-config", 1, "--model-loader-extra-config: checkpoints are mmapped; loader options have no effect"},
    {"--watchdog-timeout", 1, NULL},
    {"--json-model-override-args", 1, NULL}, {"--api-key", 1, NULL},
    {"--speculative-algorithm", 1, NULL},
    {"--speculative-num-steps", 1, NULL}, {"--speculative-eagle-topk", 1, NULL},
    {"--speculative-num-draft-tokens", 1, NULL},
    {"--speculative-attention-mode", 1, "--speculative-attention-mode: glint's MTP drafts run its own kernels; the "
                                        "value has no effect"},
    {"--speculative-moe-runner-backend", 1, "--speculative-moe-runner-backend: glint's MTP drafts run its own "
                                            "kernels; the value has no effect"},
    // glint and sglang extras
    {"--threads", 1, NULL}, {"--backend", 1, NULL}, {"--index-topk-pattern", 1, NULL},
    {"--max-total-tokens", 1, NULL}, {"--max-queued-requests", 1, NULL}, {"--disable-radix-cache", 0, NULL},
    {"--max-request-bytes", 1, NULL}, {"--timeout-keep-alive", 1, NULL},
};

static int bad_value(const char *flag, const char *value, const char *want) {
    fprintf(stderr, "glint serve: %s '%s': %s\n", flag, value, want);
    return 2;
}

static int int_value(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || !*v || *end || x < lo || x > hi) {
        char want[96];
        snprintf(want, sizeof want, "expected an integer in [%lld, %lld]", (long long)lo, (long long)hi);
        return bad_value(flag, v, want);
    }
    *out = x;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    glint_server s = {0};
    s.host = "127.0.0.1";
    s.port = 8000;
    s.max_body_bytes = 32u << 20;
    s.max_connections = 1024;
    s.idle_timeout = 30;
    const char *chat_template = NULL, *backend = "auto";
    glint_load_options load = {0};
    int64_t threads = 0, context = 0, max_running = 64, chunked = 2048, page_size = 1, max_total_tokens = 0;
    int64_t max_queued = 256, tp = 1, pp = 1, kv_splits = 0;
    double mem_fraction = 0.5;
    int no_prefix_cache = 0;
    const char *speculative = NULL;  // --speculative-algorithm
    int64_t spec_steps = 1, spec_topk = 1, spec_draft_tokens = 0;  // --speculative-num-steps, -eagle-topk, -num-draft-tokens
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        char name[64];
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        if (nl >= sizeof name) nl = sizeof name - 1;
        memcpy(name, a, nl);
        name[nl] = 0;
        const flag_spec *f = NULL;
        for (size_t k = 0; k < sizeof FLAGS / sizeof FLAGS[0]; k++)
            if (!strcmp(FLAGS[k].name, name)) f = &FLAGS[k];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: glint serve -m DIR [--host 127.0.0.1] [--port 8000] [sglang launch_server flags]\nflags:");
            for (size_t k = 0; k < sizeof FLAGS / sizeof FLAGS[0]; k++) printf(" %s", FLAGS[k].name);
            printf("\n");
            return 0;
        }
        if (!f) {
            fprintf(stderr, "glint serve: unknown flag %s (see glint serve --help)\n", name);
            return 2;
        }
        const char *v = NULL;
        if (f->takes_value) {
            if (eq) v = eq + 1;
            else if (i + 1 < argc) v = argv[++i];
            else {
                fprintf(stderr, "glint serve: %s needs a value\n", name);
                return 2;
            }
        } else if (eq) {
            fprintf(stderr, "glint serve: %s takes no value\n", name);
            return 2;
        }
        if (f->notice) {
            fprintf(stderr, "glint serve: notice: %s\n", f->notice);
            continue;
        }
        int64_t n;
        if (!strcmp(name, "--model-path") || !strcmp(name, "-m") || !strcmp(name, "--model")) s.model_path = v;
        else if (!strcmp(name, "--speculative-algorithm")) speculative = v;
        else if (!strcmp(name, "--speculative-num-steps")) {
            if (int_value(name, v, 1, 64, &spec_steps)) return 2;
        } else if (!strcmp(name, "--speculative-eagle-topk")) {
            if (int_value(name, v, 1, 64, &spec_topk)) return 2;
        } else if (!strcmp(name, "--speculative-num-draft-tokens")) {
            if (int_value(name, v, 1, 256, &spec_draft_tokens)) return 2;
        }
        else if (!strcmp(name, "--served-model-name")) s.served_model_name = v;
        else if (!strcmp(name, "--host")) s.host = v;
        else if (!strcmp(name, "--port")) {
            if (int_value(name, v, 0, 65535, &n)) return 2;
            s.port = (int)n;
        } else if (!strcmp(name, "--tensor-parallel-size") || !strcmp(name, "--tp-size") || !strcmp(name, "--tp")) {
            if (int_value(name, v, 1, GLINT_MAX_TP, &tp)) return 2;
        } else if (!strcmp(name, "--pipeline-parallel-size") || !strcmp(name, "--pp-size")) {
            if (int_value(name, v, 1, 1024, &pp)) return 2;
        } else if (!strcmp(name, "--context-length")) {
            if (int_value(name, v, 2, 1 << 26, &context)) return 2;
        } else if (!strcmp(name, "--max-running-requests")) {
            if (int_value(name, v, 1, 4096, &max_running)) return 2;
        } else if (!strcmp(name, "--mem-fraction-static")) {
            char *end;
            mem_fraction = strtod(v, &end);
            if (*end || !*v || !(mem_fraction > 0 && mem_fraction <= 1)) return bad_value(name, v, "expected a number in (0, 1]");
        } else if (!strcmp(name, "--chunked-prefill-size")) {
            if (int_value(name, v, -1, 1 << 26, &chunked)) return 2;
        } else if (!strcmp(name, "--page-size")) {
            if (int_value(name, v, 1, 1 << 20, &page_size)) return 2;
        } else if (!strcmp(name, "--tool-call-parser")) {
            if (strcmp(v, "glm47")) return bad_value(name, v, "glint implements the glm47 tool-call parser (GLM-4.7/GLM-5)");
            s.tool_parser = 1;
        } else if (!strcmp(name, "--reasoning-parser")) {
            if (strcmp(v, "glm45")) return bad_value(name, v, "glint implements the glm45 reasoning parser");
            s.reasoning_parser = 1;
        } else if (!strcmp(name, "--chat-template")) chat_template = v;
        else if (!strcmp(name, "--watchdog-timeout")) {
            char *end;
            double t = strtod(v, &end);
            if (*end || !*v || !isfinite(t)) return bad_value(name, v, "expected seconds");
            fprintf(stderr, "glint serve: notice: --watchdog-timeout: the engine has no watchdog yet; ignored\n");
        } else if (!strcmp(name, "--json-model-override-args")) load.override_json = v;
        else if (!strcmp(name, "--api-key")) s.api_key = v;
        else if (!strcmp(name, "--threads")) {
            if (int_value(name, v, 1, 1024, &threads)) return 2;
        } else if (!strcmp(name, "--backend")) backend = v;
        else if (!strcmp(name, "--index-topk-pattern")) load.index_topk_pattern = v;
        else if (!strcmp(name, "--max-total-tokens")) {
            if (int_value(name, v, 1, (int64_t)1 << 40, &max_total_tokens)) return 2;
        } else if (!strcmp(name, "--max-queued-requests")) {
            if (int_value(name, v, 1, 1 << 20, &max_queued)) return 2;
        } else if (!strcmp(name, "--disable-radix-cache")) no_prefix_cache = 1;
        else if (!strcmp(name, "--triton-attention-num-kv-splits")) {
            if (int_value(name, v, 1, GLINT_MAX_ATTENTION_SPLITS, &kv_splits)) return 2;
        }
        else if (!strcmp(name, "--max-request-bytes")) {
            if (int_value(name, v, 1024, (int64_t)1 << 32, &n)) return 2;
            s.max_body_bytes = (size_t)n;
        } else if (!strcmp(name, "--timeout-keep-alive")) {  // uvicorn's name
            if (int_value(name, v, 1, 86400, &n)) return 2;
            s.idle_timeout = (int)n;
        }
    }
    if (!s.model_path) {
        fprintf(stderr, "glint serve: --model-path DIR (or -m DIR) is required\n");
        return 2;
    }
    backend = resolve_backend(backend);
    int want_cuda = !strcmp(backend, "cuda");
#ifndef GLINT_HAVE_CUDA
    if (want_cuda) {
        fprintf(stderr, "glint serve: --backend cuda is not available in this build (cpu is)\n");
        return 2;
    }
#endif
    if (strcmp(backend, "cpu") && !want_cuda) {
        fprintf(stderr, "glint serve: unknown --backend %s (auto, cpu or cuda)\n", backend);
        return 2;
    }
    if (pp > 1)
        fprintf(stderr, "glint serve: notice: --pipeline-parallel-size %lld does not apply (glint splits a model "
                        "with --tensor-parallel-size)\n", (long long)pp);
    // Tensor parallelism: rank r on GPU r (CPU ranks share the cores; for testing)
    if (kv_splits && !want_cuda) kv_splits_notice("serve");
    model_options ranks = {.backend = backend, .threads = (int)threads};
    ranks.load.tp_size = (int)tp;
    load.tp_size = (int)tp, load.rank_backend = rank_backend, load.rank_backend_ctx = &ranks;
    if (!s.served_model_name) s.served_model_name = s.model_path;

    glint_backend *be = NULL;
#ifdef GLINT_HAVE_CUDA
    if (want_cuda) glint_cuda_set_attention_splits((int)kv_splits);
    if (want_cuda && !(be = glint_backend_cuda(0))) {
        fprintf(stderr, "glint serve: --backend cuda: %s\n", glint_last_error());
        return 1;
    }
#endif
    if (!be) {
        // One core is left to the HTTP threads by default: when they must preempt a compute thread
        // to send a token, the whole parallel region waits for it (on 2 cores this cost 5x per token
        // on the demo model; tools/server/bench.py).
        if (!threads) threads = omp_get_num_procs() > 1 ? omp_get_num_procs() - 1 : 1;
        be = glint_backend_cpu((int)threads);
        omp_set_num_threads(be->n_threads);
        fprintf(stderr, "glint serve: CPU backend, %d compute threads\n", be->n_threads);
    }
    load.show_progress = want_load_progress(be);
    s.model = glint_model_load(s.model_path, &load, be);
    if (!s.model) {
        fprintf(stderr, "glint serve: %s\n", glint_last_error());
        return 1;
    }
    if (s.model->tp_size > 1)
        fprintf(stderr, "glint serve: tensor parallel over %d ranks (%s)\n", s.model->tp_size,
                want_cuda ? "rank r on GPU r" : "CPU backend instances");
    int rc = 1;
    s.tok = glint_tokenizer_load_dir(s.model_path);
    if (!s.tok) {
        fprintf(stderr, "glint serve: %s\n", glint_last_error());
        goto done;
    }
    if (chat_template) {
        size_t len;
        char *src = glint_read_text_file(chat_template, &len);
        s.tmpl = src ? glint_template_parse(src, len, chat_template) : NULL;
        free(src);
        json_t *ignored = NULL;
        glint_template *model_tmpl = glint_chat_load_model_template(s.model_path, &ignored);
        if (model_tmpl) glint_template_free(model_tmpl);
        s.special_tokens = ignored;
    } else {
        s.tmpl = glint_chat_load_model_template(s.model_path, &s.special_tokens);
    }
    if (!s.tmpl) {
        fprintf(stderr, "glint serve: chat template: %s\n", glint_last_error());
        goto done;
    }
    glint_sampling_defaults(&s.defaults);
    if (glint_sampling_from_generation_config(s.model_path, &s.defaults)) {
        fprintf(stderr, "glint serve: %s\n", glint_last_error());
        goto done;
    }
    static const char *markers[] = {"<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>",
                                    "<arg_value>", "</arg_value>"};
    for (size_t k = 0; k < sizeof markers / sizeof markers[0]; k++) {
        int32_t id = glint_tokenizer_token_id(s.tok, markers[k]);
        if (id >= 0) s.marker_ids[s.n_marker_ids++] = id;
    }
    // --speculative-algorithm: sglang runs GLM's MTP layer as EAGLE (or NEXTN); glint does the same
    // with the checkpoint's MTP layer.
    int use_mtp = 0;
    if (speculative) {
        const char *names[] = {"EAGLE", "EAGLE3", "NEXTN", "MTP"};
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) use_mtp |= !strcasecmp(speculative, names[k]);
        if (!use_mtp)
            fprintf(stderr, "glint serve: notice: --speculative-algorithm %s is not supported (EAGLE, NEXTN: the "
                            "MTP layer); speculative decoding is off\n", speculative);
        else if (!s.model->has_mtp)
            fprintf(stderr, "glint serve: notice: %s has no MTP layer; speculative decoding is off\n", s.model_path);
        use_mtp = use_mtp && s.model->has_mtp;
    }
    // sglang's draft settings: a chain of --speculative-num-steps drafts (topk 1), verified as that
    // many tokens + 1; glint makes up to GLINT_MAX_DRAFTS
    if (use_mtp && spec_steps > GLINT_MAX_DRAFTS) {
        fprintf(stderr, "glint serve: notice: --speculative-num-steps %lld: glint drafts at most %d tokens per step\n",
                (long long)spec_steps, GLINT_MAX_DRAFTS);
        spec_steps = GLINT_MAX_DRAFTS;
    }
    if (use_mtp && spec_topk != 1)
        fprintf(stderr, "glint serve: notice: --speculative-eagle-topk %lld: glint drafts one chain (topk 1)\n",
                (long long)spec_topk);
    if (use_mtp && spec_draft_tokens && spec_draft_tokens != spec_steps + 1)
        fprintf(stderr, "glint serve: notice: --speculative-num-draft-tokens %lld: glint verifies its drafts and the "
                        "token before them (%lld with --speculative-num-steps %lld)\n", (long long)spec_draft_tokens,
                (long long)spec_steps + 1, (long long)spec_steps);
    uint64_t per_token = glint_state_bytes_per_token(&s.model->cfg);
    if (use_mtp)  // the MTP layer's rows live in the same pages
        per_token += (uint64_t)(s.model->cfg.kv_lora_rank + s.model->cfg.qk_rope_head_dim + s.model->cfg.index_head_dim) *
                     sizeof(float);
    double budget;
    const char *budget_of = "RAM";
#ifdef GLINT_HAVE_CUDA
    if (want_cuda) {
        // sglang's meaning: weights + KV pool take at most this fraction of the card's memory; the
        // rest is left for activations. The weights are on the card now: pool = free - (1 - f) total.
        size_t free_bytes, total_bytes;
        if (glint_model_memory_info(s.model, &free_bytes, &total_bytes)) {
            fprintf(stderr, "glint serve: %s\n", glint_last_error());
            goto done;
        }
        budget = (double)free_bytes - (1.0 - mem_fraction) * (double)total_bytes;
        budget_of = "GPU memory";
        fprintf(stderr, "glint serve: GPU memory %.1f GiB, %.1f GiB in use after loading the weights; KV pool %.1f GiB "
                        "(--mem-fraction-static %.2f)\n", total_bytes / 1073741824.0,
                (total_bytes - free_bytes) / 1073741824.0, budget > 0 ? budget / 1073741824.0 : 0.0, mem_fraction);
    } else
#endif
    {
        uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
        budget = mem_fraction * (double)ram - (double)s.model->weight_bytes;
    }
    if (budget < 0) budget = 0;
    int64_t pool_tokens = max_total_tokens ? max_total_tokens : (int64_t)(budget / (double)(per_token ? per_token : 1));
    int64_t ctx = context ? context : s.model->cfg.max_position_embeddings;
    if (ctx > pool_tokens) ctx = pool_tokens;
    if (ctx < 2) {
        if (max_total_tokens)
            fprintf(stderr, "glint serve: the KV pool (--max-total-tokens %lld) cannot hold a sequence of 2 tokens\n",
                    (long long)max_total_tokens);
        else
            fprintf(stderr, "glint serve: the KV pool (%lld tokens from --mem-fraction-static %.2f of the %s) cannot "
                            "hold a sequence\n", (long long)pool_tokens, mem_fraction, budget_of);
        goto done;
    }
    s.context_length = (int)ctx;
    glint_engine_options eo = {.max_running = (int)max_running, .max_queued = (int)max_queued,
                               .page_size = (int)page_size, .total_pages = pool_tokens / page_size,
                               .chunked_prefill = (int)chunked, .context_length = (int)ctx,
                               .prefix_cache = !no_prefix_cache, .speculative = use_mtp,
                               .speculative_steps = (int)spec_steps};
    s.engine = glint_engine_new(s.model, &eo);
    if (!s.engine) {
        fprintf(stderr, "glint serve: %s\n", glint_last_error());
        goto done;
    }
    s.created = time(NULL);
    char spec_text[64] = "off";
    if (use_mtp)
        snprintf(spec_text, sizeof spec_text, "MTP (%lld draft token%s per step)", (long long)spec_steps,
                 spec_steps > 1 ? "s" : "");
    fprintf(stderr, "glint serve: context %d tokens, KV pool %lld pages of %lld tokens, %lld running at most, "
                    "chunked prefill %lld, prefix cache %s, speculative decoding %s\n", s.context_length,
            (long long)eo.total_pages, (long long)page_size, (long long)max_running, (long long)chunked,
            no_prefix_cache ? "off" : "on", spec_text);
    rc = glint_http_serve(&s);
done:
    glint_engine_free(s.engine);
    if (s.tmpl) glint_template_free(s.tmpl);
    json_decref(s.special_tokens);
    glint_tokenizer_free(s.tok);
    glint_model_free(s.model);
    return rc;
}
