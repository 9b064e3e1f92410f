// Options and helpers shared by the commands that load a model (generate, logits, info, bench,
// perplexity, run).
#ifndef GLINT_CLI_OPTIONS_H
#define GLINT_CLI_OPTIONS_H

#include <stdint.h>

#include "backend/backend.h"
#include "engine/sampler.h"
#include "model/glm.h"

enum { GLINT_MAX_N_PREDICT = 1 << 30 };  // tokens; far past any context, no int overflow in sums

typedef struct {
    const char *model_dir;
    const char *backend;
    int threads;
    int64_t context_length;  // 0: max_position_embeddings capped by memory
    glint_load_options load;
    // generate
    const char *prompt;
    const char *ids;
    int64_t n_predict;  // -n; 0: the command's default; at most GLINT_MAX_N_PREDICT
    glint_sampling_params sampling;
    int temperature_set, top_p_set, top_k_set;
    int print_ids;
    const char *positional;  // the one argument without a flag (perplexity's FILE)
    int ignore_eos;
    int speculative;  // generate: greedy decoding with MTP drafts
    // logits
    const char *output;
    // bench
    const char *synthetic;
    int64_t layers;
    const char *ctx_list;
    const char *prefill_list;  // bench --prefill 4096,16384
    int64_t prefill_chunk;     // tokens per forward call in the prefill bench
    int64_t n_decode;
    int64_t spec_steps;  // bench --speculative-num-steps N: also the speculative step with 1..N drafts
    int kernels;
    // --triton-attention-num-kv-splits: the CUDA decode attention's key chunks per query (0: chosen
    // from the shape and the card)
    int kv_splits;
} model_options;

// Parses argv into o; returns 0, or the exit status of a usage error (already reported).
int parse_options(const char *cmd, int argc, char **argv, model_options *o);
// The notice that --triton-attention-num-kv-splits does nothing off the CUDA backend.
void kv_splits_notice(const char *cmd);
// --backend auto (the default): cuda when this build has it and the machine a CUDA device, else cpu;
// other names as given.
const char *resolve_backend(const char *name);
glint_backend *make_backend(const model_options *o);
// The backend of tensor-parallel rank `rank` (glint_load_options.rank_backend; ctx: the model_options).
glint_backend *rank_backend(int rank, void *ctx);
// Loads -m DIR; NULL after printing the error.
// Whether loading shows the weight-upload progress line: GLINT_PROGRESS=1 / 0, else when stderr is a
// terminal and the backend is a device.
int want_load_progress(const glint_backend *be);
glint_model *load_model(const char *cmd, const model_options *o, glint_backend *be);
// --context-length, else max_position_embeddings capped so the cache fits a quarter of RAM.
int context_for(const glint_model *m, const model_options *o);
// "1 2 3" -> ids within the vocabulary; NULL after printing the error.
int32_t *parse_ids(const char *cmd, const char *text, int vocab, int *n_out);
// Sampling: command-line values over generation_config.json's over glint's defaults.
int resolve_sampling(const char *cmd, const model_options *o, glint_sampling_params *out);
// The model directory: -m DIR, else the embedded demo model.
const char *model_dir_or_demo(const model_options *o);

#endif
