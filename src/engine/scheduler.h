// The engine loop behind `glint serve`: continuous batching over one model.
//
// Requests are queued (bounded), admitted while --max-running-requests and the KV pages allow,
// prefilled in chunks of at most --chunked-prefill-size tokens per engine step (one forward per
// sequence), and decoded one token per step each, all decoding sequences in one batched forward
// (glint_forward_batch: weights are read once per step; every row's result is what it would be
// alone, so temperature-0 output does not depend on what else runs).
//
// KV memory is paged: one pool (glint_kv_pool) of --page-size token pages, its size from
// --mem-fraction-static (or --max-total-tokens), allocated at start. A sequence takes pages as it
// grows (its prompt plus `grow_tokens` at admission, then as needed). When the pool cannot give a
// growing sequence a page (after evicting cached prefixes), that sequence is retracted as sglang
// does: its cache goes to the prefix cache, it waits, and it resumes first, sharing its pages back
// (or recomputing them) with its sampler state intact, so the output is the same. The prefix cache
// keeps finished sequences' pages (LRU); a new sequence shares the whole pages of the longest
// matching token prefix by reference and copies the rows of a last partial page, so a repeated
// system prompt or the earlier turns of a chat are neither prefilled again nor stored twice.
//
// Speculative decoding (options.speculative): the model's MTP layer, whose cache rows live in the
// same pages (an extra pool layer), drafts up to speculative_steps tokens per step, each from the one
// before (the layer applied again to its own output, as sglang's EAGLE steps do with GLM's one MTP
// layer); the decode forward runs the last token and the drafts as rows; the sequence's own sampler
// picks the token of row 0 and, while the token picked equals the next draft, the token of the row
// after. Tokens are sampled from exactly the logits and in the order of plain decoding, so the output
// is the same with or without speculation, for every sampling setting; only the number of tokens
// per step changes.
#ifndef GLINT_SCHEDULER_H
#define GLINT_SCHEDULER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "engine/sampler.h"
#include "model/glm.h"

#define GLINT_MAX_TOP_LOGPROBS 20

typedef enum {
    GLINT_FINISH_NONE = 0,
    GLINT_FINISH_STOP,    // EOS or a stop token id (matched_stop_id), or the client's stop string
    GLINT_FINISH_LENGTH,  // max_new_tokens or the context is full
    GLINT_FINISH_ABORT,   // cancelled (client gone, stop string matched upstream, shutdown)
    GLINT_FINISH_ERROR,   // engine error (message in error)
} glint_finish_reason;

typedef struct {
    int32_t id;
    int is_stop;    // the EOS / stop id that ended the sequence (counted, not shown as text)
    float logprob;  // log_softmax of the raw logits (when logprobs were asked for)
    int n_top;
    int32_t top_ids[GLINT_MAX_TOP_LOGPROBS];
    float top_logprobs[GLINT_MAX_TOP_LOGPROBS];
} glint_token_out;

typedef struct glint_gen_request {
    // Set before glint_engine_submit, read-only afterwards.
    int32_t *prompt;
    int n_prompt;
    glint_sampling_params sampling;
    int max_new_tokens;
    int32_t *stop_ids;  // extra stop token ids (EOS ids of the model stop too unless ignore_eos)
    int n_stop_ids;
    int ignore_eos;
    int min_new_tokens;        // EOS / stop ids are masked until this many tokens exist
    int32_t *logit_bias_ids;   // added to the logits before the sampler (so before penalties:
    float *logit_bias;         // sglang adds them after; only repetition_penalty makes that differ)
    int n_logit_bias;
    // A forced output prefix (tool_choice required / named): once the reasoning is over (after
    // think_end_id when the prompt opened a <think> block, else from the first token) these ids are
    // emitted in order; EOS / stop ids are masked until they have been.
    int32_t *forced_ids;
    int n_forced;
    int reasoning_first;
    int32_t think_end_id;
    // With forced ids the rest of the call keeps the glm47 layout until </tool_call>: where a tag
    // must come only the tags that may come there are allowed, and no special token may appear
    // inside the name, a key or a value. call_tags: <tool_call> </tool_call> <arg_key> </arg_key>
    // <arg_value> </arg_value>; special_ids: every special token of the vocabulary.
    int32_t call_tags[6];
    int32_t *special_ids;
    int n_special;
    int forced_named;  // the forced ids end with the tool's name
    int logprobs;      // 0: none; 1: chosen token; plus top_logprobs alternatives
    int top_logprobs;  // 0..GLINT_MAX_TOP_LOGPROBS

    // Output, guarded by mu; waiters sleep on cv.
    pthread_mutex_t mu;
    pthread_cond_t cv;
    glint_token_out *tokens;
    int n_tokens, cap_tokens;
    glint_finish_reason finish;  // NONE while running
    int32_t matched_stop_id;     // -1 unless finished on a stop id
    int cached_tokens;           // prompt tokens taken from the prefix cache
    char error[256];
    double t_submit, t_first_token, t_last_token;

    atomic_int cancelled;
    atomic_int stop_string_hit;  // cancelled because the client side matched a stop string
    atomic_int refs;
    struct glint_gen_request *next_in_queue;
} glint_gen_request;

enum { GLINT_MAX_DRAFTS = 4 };  // MTP drafts per step at most

typedef struct {
    int max_running;        // --max-running-requests
    int max_queued;         // queued requests beyond which submit answers "full"
    int page_size;          // --page-size (tokens per KV page)
    int64_t total_pages;    // page budget (from --mem-fraction-static or --max-total-tokens)
    int chunked_prefill;    // tokens of prefill per engine step (<= 0: whole prompt)
    int context_length;     // longest sequence (prompt + output)
    int prefix_cache;       // 0 disables the prefix cache (--disable-radix-cache)
    int grow_tokens;        // pages reserved at admission beyond the prompt, in tokens (256)
    int speculative;        // MTP speculative decoding (the model must have an MTP layer)
    int speculative_steps;  // drafts per step (--speculative-num-steps; 1..GLINT_MAX_DRAFTS, 0: 1)
} glint_engine_options;

typedef struct {
    uint64_t requests_finished, requests_aborted, prompt_tokens, cached_prompt_tokens, generation_tokens;
    int running, queued;
    int64_t pages_used, pages_total;
    int prefix_entries;
    uint64_t retractions;  // sequences that gave their cache back to make room
    uint64_t spec_drafted, spec_accepted;  // MTP draft tokens verified, and accepted
    double ttft_sum, itl_sum;  // seconds
    uint64_t ttft_count, itl_count;
    uint64_t ttft_buckets[8], itl_buckets[8];  // cumulative counts at the bounds below
} glint_engine_stats;
extern const double glint_latency_bucket_bounds[8];

typedef struct glint_engine glint_engine;

glint_engine *glint_engine_new(glint_model *m, const glint_engine_options *opts);
// Stops the loop and aborts what is queued or running (their waiters wake up); the engine stays
// valid for glint_engine_cancel and answers submits with STOPPED. Idempotent.
void glint_engine_shutdown(glint_engine *e);
// Shuts down (if not yet) and frees everything. No other thread may use e afterwards.
void glint_engine_free(glint_engine *e);

// A new request with refs = 1 (the caller's). NULL on allocation failure.
glint_gen_request *glint_gen_request_new(void);
void glint_gen_request_release(glint_gen_request *r);
// Blocks until r has finished (any reason).
void glint_gen_request_wait(glint_gen_request *r);

typedef enum { GLINT_SUBMIT_OK = 0, GLINT_SUBMIT_QUEUE_FULL, GLINT_SUBMIT_TOO_LARGE, GLINT_SUBMIT_STOPPED } glint_submit_result;
// Queues r (the engine takes its own reference). TOO_LARGE: prompt + max_new_tokens can never
// fit the context or the page pool.
glint_submit_result glint_engine_submit(glint_engine *e, glint_gen_request *r);
// Asks the engine to stop r; it finishes with GLINT_FINISH_ABORT at the next step boundary.
void glint_engine_cancel(glint_engine *e, glint_gen_request *r);
void glint_engine_get_stats(glint_engine *e, glint_engine_stats *s);

#endif
