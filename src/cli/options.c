#include "cli/options.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "engine/scheduler.h"

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
    if (errno || !*s || *end || !isfinite(v) || !isfinite((float)v)) return -1;  // (1e39 is no float)
    *out = (float)v;
    return 0;
}

_Static_assert(GLINT_MAX_N_PREDICT == 1073741824, "the -n usage message names the limit");

// Parses argv into opts; returns 0, or the exit status for a usage error.
int parse_options(const char *cmd, int argc, char **argv, model_options *o) {
    memset(o, 0, sizeof *o);
    o->backend = "auto";
    o->n_decode = 16;
    glint_sampling_defaults(&o->sampling);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = 1;
        int64_t n;
        if (a[0] != '-' && (o->positional || strcmp(cmd, "perplexity")))  // perplexity's FILE is the only one
            return usage_error(cmd, "unexpected argument '%s' (see glint --help)", a);
        else if (a[0] != '-') o->positional = a, takes_value = 0;
        else if (!strcmp(a, "--print-ids")) o->print_ids = 1, takes_value = 0;
        else if (!strcmp(a, "--kernels")) o->kernels = 1, takes_value = 0;
        else if (!strcmp(a, "--ignore-eos")) o->ignore_eos = 1, takes_value = 0;
        else if (!strcmp(a, "--speculative")) o->speculative = 1, takes_value = 0;
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
            if (glint_parse_int64(v, &n) || n < 1 || n > GLINT_MAX_TP)
                return usage_error(cmd, "bad --tp-size '%s' (tensor-parallel ranks: 1 to 8)", v);
            o->load.tp_size = (int)n;
        } else if (!strcmp(a, "--index-topk-pattern")) o->load.index_topk_pattern = v;
        else if (!strcmp(a, "--json-model-override-args")) o->load.override_json = v;
        else if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) o->prompt = v;
        else if (!strcmp(a, "--ids")) o->ids = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (glint_parse_int64(v, &o->n_predict) || o->n_predict > GLINT_MAX_N_PREDICT)
                return usage_error(cmd, "bad -n '%s' (0: the default; at most 1073741824)", v);
        } else if (!strcmp(a, "--temperature")) {
            if (parse_float(v, &o->sampling.rules.temperature) || o->sampling.rules.temperature < 0)
                return usage_error(cmd, "bad --temperature '%s'", v);
            o->temperature_set = 1;
        } else if (!strcmp(a, "--top-p")) {
            if (parse_float(v, &o->sampling.rules.top_p) || o->sampling.rules.top_p <= 0 || o->sampling.rules.top_p > 1)
                return usage_error(cmd, "bad --top-p '%s' (0 < p <= 1)", v);
            o->top_p_set = 1;
        } else if (!strcmp(a, "--top-k")) {
            char *end;
            long k = strtol(v, &end, 10);
            if (*end || !*v || k < -1 || k > (1 << 30)) return usage_error(cmd, "bad --top-k '%s'", v);
            o->sampling.rules.top_k = (int)k;
            o->top_k_set = 1;
        } else if (!strcmp(a, "--min-p")) {
            if (parse_float(v, &o->sampling.rules.min_p) || o->sampling.rules.min_p < 0 || o->sampling.rules.min_p > 1)
                return usage_error(cmd, "bad --min-p '%s'", v);
        } else if (!strcmp(a, "--seed")) {
            if (glint_parse_int64(v, &n)) return usage_error(cmd, "bad --seed '%s'", v);
            o->sampling.seed = (uint64_t)n;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->output = v;
        else if (!strcmp(a, "--synthetic")) o->synthetic = v;
        else if (!strcmp(a, "--layers")) {
            if (glint_parse_int64(v, &o->layers) || o->layers < 1) return usage_error(cmd, "bad --layers '%s'", v);
        } else if (!strcmp(a, "--ctx")) {
            if (!*v) return usage_error(cmd, "bad --ctx '%s' (contexts, e.g. 256,4096)", v);
            o->ctx_list = v;
        }
        else if (!strcmp(a, "--prefill")) o->prefill_list = v;
        else if (!strcmp(a, "--prefill-chunk")) {
            if (glint_parse_int64(v, &o->prefill_chunk) || o->prefill_chunk < 1 || o->prefill_chunk > (1 << 20))
                return usage_error(cmd, "bad --prefill-chunk '%s'", v);
        }
        else if (!strcmp(a, "--triton-attention-num-kv-splits")) {
            _Static_assert(GLINT_MAX_ATTENTION_SPLITS == 1024, "the message below names the limit");
            if (glint_parse_int64(v, &n) || n < 1 || n > GLINT_MAX_ATTENTION_SPLITS)
                return usage_error(cmd, "bad --triton-attention-num-kv-splits '%s' (1 to 1024)", v);
            o->kv_splits = (int)n;
        } else if (!strcmp(a, "--speculative-num-steps") && !strcmp(cmd, "bench")) {
            _Static_assert(GLINT_MAX_DRAFTS == 4, "the message below names the limit");
            if (glint_parse_int64(v, &o->spec_steps) || o->spec_steps < 1 || o->spec_steps > GLINT_MAX_DRAFTS)
                return usage_error(cmd, "bad --speculative-num-steps '%s' (1 to 4)", v);
        } else if (!strcmp(a, "--decode-tokens")) {
            if (glint_parse_int64(v, &o->n_decode) || o->n_decode < 1 || o->n_decode > (1 << 20))
                return usage_error(cmd, "bad --decode-tokens '%s' (1 to 1048576)", v);
        } else return usage_error(cmd, "unknown option %s (see glint --help)", a);
        i += takes_value;
    }
#ifdef GLINT_HAVE_CUDA
    const int cuda_built = 1;
#else
    const int cuda_built = 0;
#endif
    o->backend = resolve_backend(o->backend);
    if (strcmp(o->backend, "cpu") && !(cuda_built && !strcmp(o->backend, "cuda"))) {
        fprintf(stderr, "glint %s: --backend %s is not available in this build (%s)\n", cmd, o->backend,
                cuda_built ? "cpu and cuda are" : "cpu is; cuda needs the CUDA toolkit at build time");
        return 2;
    }
    if (o->kv_splits && strcmp(o->backend, "cuda")) kv_splits_notice(cmd);
    return 0;
}

void kv_splits_notice(const char *cmd) {
    fprintf(stderr, "glint %s: notice: --triton-attention-num-kv-splits applies to the CUDA backend's attention; "
                    "the CPU's has no key split\n", cmd);
}

const char *resolve_backend(const char *name) {
    if (strcmp(name, "auto")) return name;
#ifdef GLINT_HAVE_CUDA
    if (glint_cuda_device_count() > 0) return "cuda";
#endif
    return "cpu";
}

glint_backend *make_backend(const model_options *o) {
#ifdef GLINT_HAVE_CUDA
    if (!strcmp(o->backend, "cuda")) {
        glint_cuda_set_attention_splits(o->kv_splits);
        glint_backend *be = glint_backend_cuda(0);
        if (!be) fprintf(stderr, "glint: --backend cuda: %s\n", glint_last_error());
        return be;
    }
#endif
    glint_backend *be = glint_backend_cpu(o->threads);
    omp_set_num_threads(be->n_threads);
    return be;
}

glint_backend *rank_backend(int rank, void *ctx) {
    const model_options *o = ctx;
    (void)rank;  // used by CUDA builds only
#ifdef GLINT_HAVE_CUDA
    if (!strcmp(o->backend, "cuda")) return glint_backend_cuda(rank);  // rank r on GPU r (splits: make_backend)
#endif
    // CPU ranks share the cores (tensor parallelism on the CPU is for testing the sharding)
    const int n = o->load.tp_size > 1 ? o->load.tp_size : 1;
    int threads = (o->threads ? o->threads : omp_get_num_procs()) / n;
    glint_backend *be = glint_backend_cpu_rank(threads > 0 ? threads : 1);
    if (be) omp_set_num_threads(be->n_threads);  // this rank's thread
    return be;
}

int want_load_progress(const glint_backend *be) {
    const char *e = getenv("GLINT_PROGRESS");  // 1 / 0: always / never; else on a terminal, for devices
    if (e && *e) return strcmp(e, "0") != 0;
    return isatty(2) && strcmp(be->name, "cpu") != 0;
}

glint_model *load_model(const char *cmd, const model_options *o, glint_backend *be) {
    if (!o->model_dir) {
        fprintf(stderr, "glint %s: -m DIR is required\n", cmd);
        return NULL;
    }
    glint_load_options load = o->load;
    load.show_progress = want_load_progress(be);
    load.rank_backend = rank_backend, load.rank_backend_ctx = (void *)o;
    glint_model *m = glint_model_load(o->model_dir, &load, be);
    if (!m) fprintf(stderr, "glint %s: %s\n", cmd, glint_last_error());
    return m;
}

// Context length: --context-length, else max_position_embeddings capped so the cache fits a quarter
// of physical memory.
int context_for(const glint_model *m, const model_options *o) {
    if (o->context_length) return (int)o->context_length;
    uint64_t per_token = glint_state_bytes_per_token(&m->cfg);
    uint64_t mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t cap = mem / 4 / (per_token ? per_token : 1);
    uint64_t ctx = (uint64_t)m->cfg.max_position_embeddings;
    return (int)(ctx < cap ? ctx : cap);
}

// "1 2 3" -> ids; every id must be an integer within the vocabulary.
int32_t *parse_ids(const char *cmd, const char *text, int vocab, int *n_out) {
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


int resolve_sampling(const char *cmd, const model_options *o, glint_sampling_params *out) {
    glint_sampling_params defaults;
    glint_sampling_defaults(&defaults);
    if (o->model_dir && glint_sampling_from_generation_config(o->model_dir, &defaults)) {
        fprintf(stderr, "glint %s: %s\n", cmd, glint_last_error());
        return -1;
    }
    *out = o->sampling;
    if (!o->temperature_set) out->rules.temperature = defaults.rules.temperature;
    if (!o->top_p_set) out->rules.top_p = defaults.rules.top_p;
    if (!o->top_k_set) out->rules.top_k = defaults.rules.top_k;
    return 0;
}

const char *model_dir_or_demo(const model_options *o) {
    if (o->model_dir) return o->model_dir;
    static char path[4096];
    struct stat st;
    // the source tree's models/demo (compiled in), else next to the binary's parent directory
    if (stat(GLINT_DEMO_MODEL_DIR, &st) == 0) return GLINT_DEMO_MODEL_DIR;
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
    if (n > 0) {
        path[n] = 0;
        char *slash = strrchr(path, '/');
        if (slash) {
            strcpy(slash, "/../models/demo");
            if (stat(path, &st) == 0) return path;
        }
    }
    return "models/demo";
}
