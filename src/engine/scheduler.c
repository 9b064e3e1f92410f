// Continuous batching engine (see scheduler.h for the design and what is paged).
#include "engine/scheduler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define MAX_PREFIX_ENTRIES 1024
// Rows per batched decode forward (a backend's small-batch kernels are row-invariant up to this).
#define GLINT_DECODE_BATCH 64

const double glint_latency_bucket_bounds[8] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0};

typedef struct {
    glint_gen_request *req;
    glint_state *st;
    glint_sampler *sampler;
    int full_capacity;    // prompt + max_new_tokens (capped by the context); st grows up to it
    const int32_t *fill;  // tokens to put in the cache before decoding: the prompt, or after a
    int n_fill;           // retraction the prompt + output so far (minus the last sampled token)
    int sample_after_fill;  // a fresh request samples its first token from the fill's logits
    int n_prefilled;      // fill tokens already in the cache
    int n_generated;
    int n_forced_done;    // of the request's forced ids, emitted so far
    int reasoning_over;   // think_end_id was generated (forcing may start)
    int call_state;       // where a forced tool call is (CALL_*)
    int32_t last_token;   // sampled, not yet forwarded
    int decode_now;       // this engine step decodes it (its fill was cached when the step began)
    int spec;             // drafts with the MTP layer
    int n_drafts;         // the MTP layer's guesses of the tokens after last_token, each after the one before
    int32_t step_ids[1 + GLINT_MAX_DRAFTS];  // this step's rows: last_token, the drafts
    int32_t *history;     // prompt + generated (for the prefix cache)
    int n_history;
} sequence;

typedef struct {
    glint_state *st;
    int32_t *tokens;  // the tokens whose rows are in st (st->n_past of them)
    uint64_t last_used;
} prefix_entry;

struct glint_engine {
    glint_model *m;
    glint_engine_options opt;
    pthread_t thread;
    pthread_mutex_t mu;  // queue, stats, stop flag
    pthread_cond_t cv;
    glint_gen_request *queue_head, *queue_tail;
    int n_queued;
    int stop;
    atomic_int wake_pending;  // a cancel arrived
    // Engine thread only:
    sequence *running;
    int n_running;
    sequence *retracted;  // sequences that gave their cache back; resumed before new requests
    int n_retracted;
    prefix_entry *prefix;
    int n_prefix, cap_prefix;
    uint64_t clock;
    glint_kv_pool *pool;  // every sequence's and cached prefix's pages
    float *logits;        // [GLINT_DECODE_BATCH, V] a decode batch's logits (a row per token row)
    float *hidden;        // [GLINT_DECODE_BATCH, D] its final-norm hidden states (speculative)
    float *draft_hidden;  // [3 · GLINT_DECODE_BATCH, D] the MTP layer's, for chained drafts (draft_batch)
    float *scratch;       // [V]
    int32_t *edit_slot;   // [V] a token's entry in the row edits being built (row_edits), else -1
    glint_engine_stats stats;  // guarded by mu
};

// ---------------------------------------------------------------- requests

glint_gen_request *glint_gen_request_new(void) {
    glint_gen_request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    atomic_init(&r->refs, 1);
    atomic_init(&r->cancelled, 0);
    atomic_init(&r->stop_string_hit, 0);
    r->matched_stop_id = -1;
    return r;
}

void glint_gen_request_release(glint_gen_request *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->prompt), free(r->stop_ids), free(r->tokens), free(r->logit_bias_ids), free(r->logit_bias);
    free(r->forced_ids), free(r->special_ids);
    free(r);
}

void glint_gen_request_wait(glint_gen_request *r) {
    pthread_mutex_lock(&r->mu);
    while (r->finish == GLINT_FINISH_NONE) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void finish_request(glint_engine *e, glint_gen_request *r, glint_finish_reason why, const char *error) {
    pthread_mutex_lock(&r->mu);
    if (r->finish == GLINT_FINISH_NONE) {
        r->finish = why;
        if (error) snprintf(r->error, sizeof r->error, "%s", error);
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&e->mu);
    if (why == GLINT_FINISH_ERROR || (why == GLINT_FINISH_ABORT && !atomic_load(&r->stop_string_hit)))
        e->stats.requests_aborted++;
    else e->stats.requests_finished++;
    pthread_mutex_unlock(&e->mu);
    glint_gen_request_release(r);
}

// ---------------------------------------------------------------- pages and the prefix cache

static int64_t pages_for(const glint_engine *e, int tokens) {
    return ((int64_t)tokens + e->opt.page_size - 1) / e->opt.page_size;
}

static void prefix_evict(glint_engine *e, int i) {
    glint_state_free(e->m, e->prefix[i].st);
    free(e->prefix[i].tokens);
    e->prefix[i] = e->prefix[--e->n_prefix];
}

// Keeps a finished sequence's cache for later prompts that start with the same tokens.
static void prefix_insert(glint_engine *e, sequence *s) {
    int n = s->st->n_past;
    if (!e->opt.prefix_cache || n < 1) {
        glint_state_free(e->m, s->st);
        return;
    }
    // An entry that is a prefix of this one is now redundant.
    for (int i = 0; i < e->n_prefix;) {
        prefix_entry *p = &e->prefix[i];
        if (p->st->n_past <= n && !memcmp(p->tokens, s->history, (size_t)p->st->n_past * sizeof(int32_t)))
            prefix_evict(e, i);
        else
            i++;
    }
    // Lookups scan every entry: keep their number bounded (the least recently used goes).
    while (e->n_prefix >= MAX_PREFIX_ENTRIES) {
        int oldest = 0;
        for (int i = 1; i < e->n_prefix; i++)
            if (e->prefix[i].last_used < e->prefix[oldest].last_used) oldest = i;
        prefix_evict(e, oldest);
    }
    if (e->n_prefix == e->cap_prefix) {
        int cap = e->cap_prefix ? 2 * e->cap_prefix : 16;
        prefix_entry *grown = realloc(e->prefix, (size_t)cap * sizeof *grown);
        if (!grown) {
            glint_state_free(e->m, s->st);
            return;
        }
        e->prefix = grown;
        e->cap_prefix = cap;
    }
    int32_t *tokens = malloc((size_t)n * sizeof *tokens);
    if (!tokens) {
        glint_state_free(e->m, s->st);
        return;
    }
    memcpy(tokens, s->history, (size_t)n * sizeof *tokens);
    glint_state_trim(s->st);  // pages reserved beyond the cached tokens go back to the pool
    e->prefix[e->n_prefix++] = (prefix_entry){.st = s->st, .tokens = tokens, .last_used = ++e->clock};
}

// The entry sharing the longest token prefix with the prompt (at most n_prompt - 1 tokens, so at
// least one token is run to produce logits).
static int prefix_lookup(glint_engine *e, const int32_t *prompt, int max_match, int *match) {
    int best = -1;
    *match = 0;
    for (int i = 0; i < e->n_prefix; i++) {
        const prefix_entry *p = &e->prefix[i];
        int limit = p->st->n_past < max_match ? p->st->n_past : max_match;
        int k = 0;
        while (k < limit && p->tokens[k] == prompt[k]) k++;
        if (k > *match) *match = k, best = i;
    }
    return best;
}

// ---------------------------------------------------------------- admission

static int request_capacity(const glint_engine *e, const glint_gen_request *r) {
    int64_t cap = (int64_t)r->n_prompt + r->max_new_tokens;
    return (int)(cap < e->opt.context_length ? cap : e->opt.context_length);
}

glint_submit_result glint_engine_submit(glint_engine *e, glint_gen_request *r) {
    if (r->n_prompt < 1 || r->n_prompt >= e->opt.context_length || pages_for(e, request_capacity(e, r)) > e->opt.total_pages)
        return GLINT_SUBMIT_TOO_LARGE;
    pthread_mutex_lock(&e->mu);
    glint_submit_result result = GLINT_SUBMIT_OK;
    if (e->stop) result = GLINT_SUBMIT_STOPPED;
    else if (e->n_queued >= e->opt.max_queued) result = GLINT_SUBMIT_QUEUE_FULL;
    else {
        atomic_fetch_add(&r->refs, 1);
        r->t_submit = glint_now_seconds();
        r->next_in_queue = NULL;
        if (e->queue_tail) e->queue_tail->next_in_queue = r;
        else e->queue_head = r;
        e->queue_tail = r;
        e->n_queued++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return result;
}

void glint_engine_cancel(glint_engine *e, glint_gen_request *r) {
    atomic_store(&r->cancelled, 1);
    pthread_mutex_lock(&e->mu);
    atomic_store(&e->wake_pending, 1);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

// Makes `pages` pages free by evicting least recently used cached prefixes (never the entry whose
// tokens are `keep`; an evicted entry frees only the pages no sequence shares). Returns 0, or 1
// when what is left is held by running sequences (and `keep`).
static int make_room(glint_engine *e, int64_t pages, const int32_t *keep) {
    while (e->pool->n_free < pages) {
        int victim = -1;
        for (int i = 0; i < e->n_prefix; i++)
            if (e->prefix[i].tokens != keep && (victim < 0 || e->prefix[i].last_used < e->prefix[victim].last_used))
                victim = i;
        if (victim < 0) return 1;
        prefix_evict(e, victim);
    }
    return 0;
}

// A new sequence for r (sampler, history); its cache comes from place_sequence.
static int init_sequence(glint_engine *e, glint_gen_request *r, sequence *s) {
    memset(s, 0, sizeof *s);
    s->req = r;
    s->spec = e->opt.speculative;
    s->full_capacity = request_capacity(e, r);
    s->sampler = glint_sampler_new(&r->sampling, e->m->cfg.vocab_size);
    s->history = malloc((size_t)s->full_capacity * sizeof *s->history);
    if (!s->sampler || !s->history) {
        glint_sampler_free(s->sampler);
        free(s->history);
        return -1;
    }
    memcpy(s->history, r->prompt, (size_t)r->n_prompt * sizeof *s->history);
    s->n_history = r->n_prompt;
    s->fill = s->history;
    s->n_fill = r->n_prompt;
    s->sample_after_fill = 1;
    return 0;
}

// Reserves pages for `tokens` tokens of st, evicting cached prefixes if needed. 0, 1 (no room), -1.
static int reserve_with_room(glint_engine *e, glint_state *st, int tokens) {
    if (make_room(e, pages_for(e, tokens) - st->n_pages, NULL)) return 1;
    return glint_state_reserve(st, tokens) ? -1 : 0;
}

// Gives s a cache for its fill tokens plus a first stretch of output (it grows on demand, see
// grow_state), starting from the longest cached prefix: its whole pages are shared (the rows of a
// last partial page copied) when the pool has room, else the entry is taken over (its pages become
// s's). Returns 0, 1 when the pool is full for now, -1 on error.
static int place_sequence(glint_engine *e, sequence *s) {
    int initial = s->n_fill + e->opt.grow_tokens;
    if (initial > s->full_capacity) initial = s->full_capacity;
    int match = 0;
    // A fresh request must run at least one token to get logits; a resumed one need not.
    int max_match = s->sample_after_fill ? s->n_fill - 1 : s->n_fill;
    int entry = e->opt.prefix_cache ? prefix_lookup(e, s->fill, max_match, &match) : -1;
    if (match == 0) entry = -1;
    const int32_t *keep = entry >= 0 ? e->prefix[entry].tokens : NULL;
    const int share = entry >= 0 && !make_room(e, pages_for(e, initial) - match / e->opt.page_size, keep);
    if (keep)  // eviction compacts the array
        for (int i = 0; i < e->n_prefix; i++)
            if (e->prefix[i].tokens == keep) entry = i;
    if (entry >= 0 && !share) {  // take the entry over
        s->st = e->prefix[entry].st;
        free(e->prefix[entry].tokens);
        e->prefix[entry] = e->prefix[--e->n_prefix];
        match = glint_state_truncate(s->st, match);
        if (make_room(e, pages_for(e, initial) - s->st->n_pages, NULL)) {
            prefix_insert(e, s);  // back to the cache: s waits for running sequences to finish
            s->st = NULL;
            return 1;
        }
    } else {
        if (entry < 0 && make_room(e, pages_for(e, initial), NULL)) return 1;
        s->st = glint_state_in_pool(e->pool);
        if (!s->st) return -1;
        if (entry >= 0 && glint_state_share_prefix(e->m, s->st, e->prefix[entry].st, match)) {
            glint_state_free(e->m, s->st);  // room was made above: only an allocation can fail
            s->st = NULL;
            return -1;
        }
        if (entry >= 0) e->prefix[entry].last_used = ++e->clock;
    }
    if (s->spec) {
        // Speculation needs the MTP rows of every cached position. Row p pairs position p with token
        // p + 1, so the entry's row match - 1 saw the entry's next token, not necessarily s's: it is
        // recomputed, with whatever else is missing.
        if (s->st->mtp_past > match - 1) s->st->mtp_past = match > 0 ? match - 1 : 0;
        match = glint_state_truncate(s->st, s->st->mtp_past);
    }
    int rc = reserve_with_room(e, s->st, initial);
    if (rc) {
        if (rc > 0 && !e->n_running) rc = -1;  // cannot happen: submit checked the request fits
        prefix_insert(e, s);  // its pages stay cached for when it is placed again
        s->st = NULL;
        return rc;
    }
    s->n_drafts = 0;
    s->n_prefilled = match;
    return 0;
}

static void end_sequence(glint_engine *e, sequence *s, glint_finish_reason why, const char *error) {
    glint_sampler_free(s->sampler);
    if (why == GLINT_FINISH_ERROR || !s->st) {
        glint_state_free(e->m, s->st);
    } else {
        prefix_insert(e, s);
    }
    free(s->history);
    finish_request(e, s->req, why, error);
}

// ---------------------------------------------------------------- one step

static int is_stop_token(const glint_engine *e, const glint_gen_request *r, int32_t id) {
    if (!r->ignore_eos)
        for (int i = 0; i < e->m->cfg.n_eos; i++)
            if (e->m->cfg.eos_ids[i] == id) return 1;
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == id) return 1;
    return 0;
}

static void bucket(uint64_t *buckets, double seconds) {
    for (int i = 0; i < 8; i++)
        if (seconds <= glint_latency_bucket_bounds[i]) buckets[i]++;
}

// Samples the next token of s from logits [V] (modified) and publishes it. Returns 1 when s is finished.

// A forced tool call after its forced prefix (spec/SERVING.md §2.2 layout):
//   NAME (free text) | AFTER_NAME/AFTER_VALUE: <arg_key> or </tool_call> | KEY (free text) </arg_key>
//   | <arg_value> | VALUE (free text) </arg_value> | DONE after </tool_call>.
enum { CALL_NONE, CALL_NAME, CALL_AFTER_NAME, CALL_KEY, CALL_AFTER_KEY, CALL_VALUE, CALL_AFTER_VALUE, CALL_DONE };
enum { TAG_OPEN, TAG_CLOSE, TAG_KEY, TAG_KEY_END, TAG_VALUE, TAG_VALUE_END };

static void allow_only(float *logits, int V, const int32_t *ids, int n) {
    float keep[2];
    for (int i = 0; i < n; i++) keep[i] = logits[ids[i]];
    for (int i = 0; i < V; i++) logits[i] = -INFINITY;
    for (int i = 0; i < n; i++) logits[ids[i]] = isfinite(keep[i]) ? keep[i] : 0.0f;
}

// Free text inside a name, key or value: no special token but the one that closes it (and, in a
// name, <arg_key> / </tool_call>, which end it).
static void forbid_specials(const glint_gen_request *r, float *logits, const int32_t *except, int n_except) {
    for (int i = 0; i < r->n_special; i++) {
        int allowed = 0;
        for (int k = 0; k < n_except; k++) allowed |= r->special_ids[i] == except[k];
        if (!allowed) logits[r->special_ids[i]] = -INFINITY;
    }
}

static void constrain_tool_call(const glint_gen_request *r, const sequence *s, float *logits, int V) {
    const int32_t *t = r->call_tags;
    const int32_t key_or_close[2] = {t[TAG_KEY], t[TAG_CLOSE]};
    switch (s->call_state) {
    case CALL_NAME: forbid_specials(r, logits, key_or_close, 2); break;
    case CALL_AFTER_NAME:
    case CALL_AFTER_VALUE: allow_only(logits, V, key_or_close, 2); break;
    case CALL_KEY: forbid_specials(r, logits, &t[TAG_KEY_END], 1); break;
    case CALL_AFTER_KEY: allow_only(logits, V, &t[TAG_VALUE], 1); break;
    case CALL_VALUE: forbid_specials(r, logits, &t[TAG_VALUE_END], 1); break;
    default: break;
    }
}

static void advance_call_state(const glint_gen_request *r, sequence *s, int32_t id) {
    const int32_t *t = r->call_tags;
    if (s->call_state == CALL_NONE || s->call_state == CALL_DONE) return;
    if (id == t[TAG_CLOSE]) s->call_state = CALL_DONE;
    else if (id == t[TAG_KEY]) s->call_state = CALL_KEY;
    else if (id == t[TAG_KEY_END]) s->call_state = CALL_AFTER_KEY;
    else if (id == t[TAG_VALUE]) s->call_state = CALL_VALUE;
    else if (id == t[TAG_VALUE_END]) s->call_state = CALL_AFTER_VALUE;
}

static int emit_token(glint_engine *e, sequence *s, int32_t id, glint_token_out out, int forcing_now);

// chosen >= 0: the token was chosen where the logits are, the argmax (greedy_ids_only: no logits came)
// or a draw with the sampler's next uniform (drawn_ids_only: logits come only for the rows the backend
// declines); else the logits decide here. edited: the logits came with the row's edits made
// (row_edits: a draw the backend declined), so only the draw is left.
static int sample_and_emit(glint_engine *e, sequence *s, float *logits, int32_t chosen, int edited) {
    glint_gen_request *r = s->req;
    const int V = e->m->cfg.vocab_size;
    glint_token_out out = {0};
    if (chosen >= 0) {
        if (logits) glint_sampler_take(s->sampler, chosen);
        else glint_sampler_record(s->sampler, chosen);
        return emit_token(e, s, chosen, out, 0);
    }
    if (edited) return emit_token(e, s, glint_sampler_choose(s->sampler, logits), out, 0);
    if (r->logprobs) {  // log_softmax of the raw logits, before penalties and temperature
        float mx = logits[0];
        for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
        double sum = 0;
        for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
        float lse = mx + (float)log(sum);
        for (int i = 0; i < V; i++) e->scratch[i] = logits[i] - lse;
        out.n_top = glint_top_k(e->scratch, V, r->top_logprobs, out.top_ids, out.top_logprobs);
    }
    if (s->n_generated < r->min_new_tokens) {  // stop tokens may not end the output yet
        if (!r->ignore_eos)
            for (int i = 0; i < e->m->cfg.n_eos; i++) logits[e->m->cfg.eos_ids[i]] = -INFINITY;
        for (int i = 0; i < r->n_stop_ids; i++) logits[r->stop_ids[i]] = -INFINITY;
    }
    for (int i = 0; i < r->n_logit_bias; i++) logits[r->logit_bias_ids[i]] += r->logit_bias[i];
    constrain_tool_call(r, s, logits, V);
    const int forcing_pending = s->n_forced_done < r->n_forced;
    const int forcing_now = forcing_pending && (!r->reasoning_first || s->reasoning_over);
    const int call_open = s->call_state != CALL_NONE && s->call_state != CALL_DONE;
    if ((forcing_pending && !forcing_now) || call_open) {  // the call must still come or end first
        if (!r->ignore_eos)
            for (int i = 0; i < e->m->cfg.n_eos; i++) logits[e->m->cfg.eos_ids[i]] = -INFINITY;
        for (int i = 0; i < r->n_stop_ids; i++) logits[r->stop_ids[i]] = -INFINITY;
    }
    if (forcing_now) {  // only the next forced id can be chosen
        const int32_t forced = r->forced_ids[s->n_forced_done];
        const float keep = logits[forced];
        for (int i = 0; i < V; i++) logits[i] = -INFINITY;
        logits[forced] = isfinite(keep) ? keep : 0.0f;
    }
    return emit_token(e, s, glint_sampler_sample(s->sampler, logits), out, forcing_now);
}

// Publishes the chosen token id of s (out: its logprobs, when asked for) and ends s on a stop
// token or the length limit. Returns 1 when s ended.
static int emit_token(glint_engine *e, sequence *s, int32_t id, glint_token_out out, int forcing_now) {
    glint_gen_request *r = s->req;
    if (forcing_now && ++s->n_forced_done == r->n_forced && r->n_special)  // n_special: the tags are known
        s->call_state = r->forced_named ? CALL_AFTER_NAME : CALL_NAME;
    else if (!forcing_now) advance_call_state(r, s, id);
    if (id == r->think_end_id) s->reasoning_over = 1;
    out.id = id;
    if (r->logprobs) out.logprob = e->scratch[id];
    out.is_stop = is_stop_token(e, r, id);
    s->n_generated++;
    s->last_token = id;
    double now = glint_now_seconds();

    pthread_mutex_lock(&r->mu);
    if (r->n_tokens == r->cap_tokens) {
        int cap = r->cap_tokens ? 2 * r->cap_tokens : 32;
        glint_token_out *grown = realloc(r->tokens, (size_t)cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&r->mu);
            end_sequence(e, s, GLINT_FINISH_ERROR, "out of memory for the output");
            return 1;
        }
        r->tokens = grown;
        r->cap_tokens = cap;
    }
    r->tokens[r->n_tokens++] = out;
    double previous = r->t_last_token;
    if (r->n_tokens == 1) r->t_first_token = now;
    r->t_last_token = now;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);

    pthread_mutex_lock(&e->mu);
    e->stats.generation_tokens++;
    if (s->n_generated == 1) {
        e->stats.ttft_sum += now - r->t_submit, e->stats.ttft_count++;
        bucket(e->stats.ttft_buckets, now - r->t_submit);
    } else {
        e->stats.itl_sum += now - previous, e->stats.itl_count++;
        bucket(e->stats.itl_buckets, now - previous);
    }
    pthread_mutex_unlock(&e->mu);

    if (out.is_stop) {
        pthread_mutex_lock(&r->mu);
        r->matched_stop_id = id;
        pthread_mutex_unlock(&r->mu);
        end_sequence(e, s, GLINT_FINISH_STOP, NULL);
        return 1;
    }
    s->history[s->n_history++] = id;
    if (s->n_generated >= r->max_new_tokens || s->st->n_past + 1 >= s->full_capacity) {
        end_sequence(e, s, GLINT_FINISH_LENGTH, NULL);
        return 1;
    }
    return 0;
}

// Makes room in s's cache for `needed` tokens (pages from the pool, evicting cached prefixes when
// needed). Returns 0, 1 when the pool cannot give them, -1 on error.
static int grow_state(glint_engine *e, sequence *s, int needed) {
    if (needed > s->full_capacity) needed = s->full_capacity;
    if (needed <= s->st->capacity) return 0;
    return reserve_with_room(e, s->st, needed);
}

// Gives s's cache back to the pool (as a prefix-cache entry, so resuming usually takes it back
// without recomputing) and parks s until pages are free: sglang's retraction. Its output so far,
// sampler and RNG state are kept, so the continuation is the same as without the pause.
static void retract(glint_engine *e, sequence *s) {
    prefix_insert(e, s);
    s->st = NULL;
    if (s->n_generated > 0) {  // resume by refilling everything but the last sampled token
        s->fill = s->history;
        s->n_fill = s->n_history - 1;
        s->sample_after_fill = 0;
    }
    s->n_prefilled = 0;
    e->retracted[e->n_retracted++] = *s;
    pthread_mutex_lock(&e->mu);
    e->stats.retractions++;
    pthread_mutex_unlock(&e->mu);
}

static int live_sequences(const glint_engine *e) {
    int n = 0;
    for (int i = 0; i < e->n_running; i++) n += e->running[i].req != NULL;
    return n;
}

// Makes room for s's next `needed` tokens; when the pool cannot, s is retracted (or, alone, ends
// with an error). Returns 1 when s left the running set.
static int ensure_room(glint_engine *e, sequence *s, int needed) {
    int grown = grow_state(e, s, needed);
    if (!grown) return 0;
    if (grown > 0 && live_sequences(e) > 1) retract(e, s);
    else end_sequence(e, s, GLINT_FINISH_ERROR, grown > 0 ? "KV pool exhausted" : glint_last_error());
    s->req = NULL;
    return 1;
}

// Ends the sequences of a failed batched forward with its error.
static void end_all_with_error(glint_engine *e, sequence **seqs, int n) {
    char error[256];
    snprintf(error, sizeof error, "%s", glint_last_error());  // end_sequence may set another
    for (int k = 0; k < n; k++) end_sequence(e, seqs[k], GLINT_FINISH_ERROR, error), seqs[k]->req = NULL;
}

// The MTP layer on the given rows of several sequences (rows pairing the main model's hidden states
// with the tokens after them): the guess of an item's last row is its sequence's first draft. Up to
// speculative_steps, the layer then runs again on one row per sequence, its own last hidden state
// with the draft before, for the next draft. Those rows lie past the sequence's valid MTP rows and
// are dropped again (the next step's first pass writes their positions from the main model's states);
// the drafts stop where the held pages or the request's length end. A failure ends the sequences
// with the error. Drafts are argmaxes taken where the logits are (only ids cross).
static void draft_batch(glint_engine *e, sequence **seqs, glint_batch_item *items, int n) {
    const size_t D = (size_t)e->m->cfg.hidden_size;
    size_t rows = 0, first_row[GLINT_DECODE_BATCH];
    for (int k = 0; k < n; k++) first_row[k] = rows, rows += (size_t)items[k].n_tokens;
    // hidden states: [rows, D] of the first pass, then [n, D] per further step (two, in turn); not for
    // a first pass of more rows than a decode batch (a prefill chunk's: one draft for its first step)
    const int steps = e->opt.speculative_steps;
    float *hidden = steps > 1 && rows <= GLINT_DECODE_BATCH ? e->draft_hidden : NULL;
    for (int k = 0; k < n; k++) {
        items[k].logits = NULL, items[k].all_logits = 0, items[k].argmax = &seqs[k]->step_ids[1];
        items[k].hidden = hidden ? hidden + first_row[k] * D : NULL;
    }
    if (glint_mtp_forward_batch(e->m, items, n)) {
        end_all_with_error(e, seqs, n);
        return;
    }
    const float *last[GLINT_DECODE_BATCH];  // each sequence's latest MTP hidden state
    for (int k = 0; k < n; k++)
        seqs[k]->n_drafts = 1, last[k] = hidden ? hidden + (first_row[k] + (size_t)items[k].n_tokens - 1) * D : NULL;
    for (int step = 2; hidden && step <= steps; step++) {
        glint_batch_item chain[GLINT_DECODE_BATCH];
        sequence *who[GLINT_DECODE_BATCH];
        int of[GLINT_DECODE_BATCH], m = 0;
        float *out = hidden + (rows + (size_t)(step % 2) * (size_t)n) * D;
        for (int k = 0; k < n; k++) {
            sequence *s = seqs[k];
            // (the next step verifies rows up to n_past + step: within the held pages, so drafts never
            // make a sequence grow, and within the request; the MTP row written now lies below them)
            if (!s->req || s->n_drafts != step - 1 || s->st->n_past + 1 + step > s->st->capacity ||
                s->st->n_past + 1 + step > s->full_capacity)
                continue;
            chain[m] = (glint_batch_item){.st = s->st, .ids = &s->step_ids[step - 1], .n_tokens = 1,
                                          .hidden = out + (size_t)m * D, .hidden_in = last[k],
                                          .argmax = &s->step_ids[step]};
            who[m] = s, of[m++] = k;
        }
        if (!m) break;
        if (glint_mtp_forward_batch(e->m, chain, m)) {
            end_all_with_error(e, who, m);  // (their states are freed, not cached)
            break;
        }
        for (int j = 0; j < m; j++) who[j]->n_drafts = step, last[of[j]] = out + (size_t)j * D;
    }
    for (int k = 0; k < n; k++)
        if (seqs[k]->req) seqs[k]->st->mtp_past -= seqs[k]->n_drafts - 1;
}

// 1 when nothing but the sampler decides s's next tokens from the raw logits: no logprobs or logit
// bias, no stop tokens held back (min_new_tokens), no forced or open tool call. These hold for the
// step's draft row too.
static int raw_logits_decide(const sequence *s) {
    const glint_gen_request *r = s->req;
    return !r->logprobs && r->n_logit_bias == 0 && s->n_generated >= r->min_new_tokens &&
           s->n_forced_done >= r->n_forced && (s->call_state == CALL_NONE || s->call_state == CALL_DONE);
}

// 1 when s's next tokens are the argmax of the raw logits (greedy, no penalties), so the forward can
// return ids instead of logits.
static int greedy_ids_only(const sequence *s) {
    return glint_sampler_is_plain_greedy(s->sampler) && raw_logits_decide(s);
}

// 1 when s's next tokens are draws with *params' rules alone (no penalties) and the model can make
// them where the logits are: the forward returns ids drawn with s's next uniforms (glint_sampler_peek).
static int drawn_ids_only(const glint_engine *e, const sequence *s, glint_sample_params *params) {
    return glint_model_can_sample(e->m) && glint_sampler_draw_params(s->sampler, params) &&
           raw_logits_decide(s);
}

// 1 when s's next tokens are the argmax or a draw of its logits after per-token edits (penalties,
// logit bias, stop tokens held back by min_new_tokens) that the model makes where the logits are; the
// forward then returns ids. Not with logprobs (they come from the raw logits) or a forced or open
// tool call (host rules).
static int edited_ids_only(const glint_engine *e, const sequence *s) {
    const glint_gen_request *r = s->req;
    glint_sample_params rules;
    // (penalties need the list of generated tokens, and past V/8 of them their upload would near the
    // logits' download: the host path)
    const glint_sampler *sp = s->sampler;
    return glint_model_can_edit(e->m) &&
           (!glint_sampler_has_penalties(sp) || (sp->n_seen >= 0 && sp->n_seen <= sp->vocab / 8)) && !r->logprobs &&
           s->n_forced_done >= r->n_forced && (s->call_state == CALL_NONE || s->call_state == CALL_DONE) &&
           (!glint_sampler_draw_rules(s->sampler, &rules) || glint_model_can_sample(e->m));
}

// Token t's entry among out[0..*n): the one slot[t] names, or a new one without edits.
static glint_logit_edit *edit_of(int32_t *slot, glint_logit_edit *out, int *n, int32_t t) {
    if (slot[t] < 0) slot[t] = (*n)++, out[slot[t]] = (glint_logit_edit){t, 0, 0.0f, 0.0f, 1.0f};
    return &out[slot[t]];
}

// Times token t is among taken[0..n).
static int times_taken(const int32_t *taken, int n, int32_t t) {
    int c = 0;
    for (int i = 0; i < n; i++) c += taken[i] == t;
    return c;
}

// The edits of a row of s into out (one entry per token), as sample_and_emit and the sampler apply
// them on the host: the row after the drafts taken[0..n_taken) are taken (each counted once more, as
// many more tokens generated; none for row 0). Returns how many, or -1 for a row the host must take
// (a token biased twice).
static int row_edits(glint_engine *e, const sequence *s, const int32_t *taken, int n_taken, glint_logit_edit *out) {
    const glint_gen_request *r = s->req;
    const glint_sampler *sp = s->sampler;
    int32_t *slot = e->edit_slot;
    int n = 0, ok = 1;
    if (s->n_generated + n_taken < r->min_new_tokens) {  // stop tokens may not end the output yet
        for (int i = 0; !r->ignore_eos && i < e->m->cfg.n_eos; i++)
            edit_of(slot, out, &n, e->m->cfg.eos_ids[i])->flags |= GLINT_EDIT_MASK;
        for (int i = 0; i < r->n_stop_ids; i++) edit_of(slot, out, &n, r->stop_ids[i])->flags |= GLINT_EDIT_MASK;
    }
    for (int i = 0; i < r->n_logit_bias; i++) {
        glint_logit_edit *ed = edit_of(slot, out, &n, r->logit_bias_ids[i]);
        ok = ok && !(ed->flags & GLINT_EDIT_BIAS);  // twice: two rounded sums on the host
        ed->flags |= GLINT_EDIT_BIAS, ed->bias = r->logit_bias[i];
    }
    if (glint_sampler_has_penalties(sp)) {
        for (int i = 0; i < sp->n_seen; i++) {
            const int32_t t = sp->seen[i];
            glint_sampler_penalty_edit(sp, t, times_taken(taken, n_taken, t), edit_of(slot, out, &n, t));
        }
        for (int i = 0; i < n_taken; i++) {  // drafts not generated before
            const int32_t t = taken[i];
            glint_logit_edit *ed = sp->counts[t] ? NULL : edit_of(slot, out, &n, t);
            if (ed && !(ed->flags & GLINT_EDIT_PENALTY)) glint_sampler_penalty_edit(sp, t, times_taken(taken, n_taken, t), ed);
        }
    }
    for (int i = 0; i < n; i++) slot[out[i].token] = -1;
    return ok ? n : -1;
}

// Entries row_edits may make for a row of s.
static int row_edits_bound(const glint_engine *e, const sequence *s) {
    const glint_gen_request *r = s->req;
    return e->m->cfg.n_eos + r->n_stop_ids + r->n_logit_bias + (s->sampler->n_seen > 0 ? s->sampler->n_seen : 0) +
           GLINT_MAX_DRAFTS;
}

// The next token of the sequences in batch[0..n) (with its draft when it has one: two rows): one
// forward for all of them (each row's result is the one it gets alone), then sampling in admission
// order, then the MTP drafts of the speculating ones.
static void decode_batch(glint_engine *e, sequence **batch, int n) {
    enum { R = 1 + GLINT_MAX_DRAFTS };  // rows per sequence at most
    const int V = e->m->cfg.vocab_size, D = e->m->cfg.hidden_size;
    glint_batch_item items[GLINT_DECODE_BATCH], drafts[GLINT_DECODE_BATCH];
    sequence *drafting[GLINT_DECODE_BATCH];
    int32_t next_ids[GLINT_DECODE_BATCH][R];
    glint_sample_params draw_rules[GLINT_DECODE_BATCH][R];
    double draw_uniforms[GLINT_DECODE_BATCH][R];
    int n_edits[GLINT_DECODE_BATCH][R], ids_only[GLINT_DECODE_BATCH], drawn[GLINT_DECODE_BATCH];
    int edited[GLINT_DECODE_BATCH];
    // How each sequence's tokens are chosen: ids_only, the argmax where the logits are; drawn, a draw
    // there (the logits only the fallback for rows the backend declines); edited, either of them after
    // the rows' logit edits, made there too (row j's as if the drafts before it were taken). The edits
    // go into one buffer for the batch.
    size_t edit_cap = 0, edit_used = 0;
    for (int k = 0; k < n; k++) {
        ids_only[k] = greedy_ids_only(batch[k]);
        drawn[k] = !ids_only[k] && drawn_ids_only(e, batch[k], &draw_rules[k][0]);
        edited[k] = !ids_only[k] && !drawn[k] && edited_ids_only(e, batch[k]);
        if (edited[k]) edit_cap += (size_t)(1 + batch[k]->n_drafts) * row_edits_bound(e, batch[k]);
    }
    glint_logit_edit *edits = edit_cap ? malloc(sizeof(glint_logit_edit) * edit_cap) : NULL;
    for (int k = 0, row = 0; k < n; row += items[k].n_tokens, k++) {
        sequence *s = batch[k];
        const int rows = 1 + s->n_drafts;
        s->step_ids[0] = s->last_token;
        edited[k] = edited[k] && edits;
        const size_t first_edit = edit_used;
        for (int j = 0; edited[k] && j < rows; j++) {
            n_edits[k][j] = row_edits(e, s, s->step_ids + 1, j, edits + edit_used);
            if (n_edits[k][j] < 0) edited[k] = 0, edit_used = first_edit;  // the host takes the rows
            else edit_used += (size_t)n_edits[k][j];
        }
        if (edited[k]) {
            drawn[k] = glint_sampler_draw_rules(s->sampler, &draw_rules[k][0]);
            ids_only[k] = !drawn[k];
        }
        float *logits = ids_only[k] ? NULL : e->logits + (size_t)row * V;
        float *hidden = s->spec ? e->hidden + (size_t)row * D : NULL;
        items[k] = (glint_batch_item){s->st, s->step_ids, rows, logits, 1, hidden, NULL,
                                      ids_only[k] || drawn[k] ? next_ids[k] : NULL, NULL, NULL, NULL, NULL};
        if (edited[k]) items[k].edits = edits + first_edit, items[k].n_edits = n_edits[k];
        if (drawn[k]) {  // row j counts only when the rows before take the drafts: the j-th uniform ahead
            for (int j = 0; j < rows; j++)
                draw_rules[k][j] = draw_rules[k][0], draw_uniforms[k][j] = glint_sampler_peek(s->sampler, j);
            items[k].sample = draw_rules[k], items[k].uniforms = draw_uniforms[k];
        }
    }
    const int failed = glint_forward_batch(e->m, items, n);
    free(edits);
    if (failed) {
        end_all_with_error(e, batch, n);
        return;
    }
    int n_drafting = 0;
    for (int k = 0; k < n; k++) {
        sequence *s = batch[k];
        float *logits = items[k].logits, *hidden = items[k].hidden;
        const int had_drafts = s->n_drafts;
        s->n_drafts = 0;
        s->st->n_past -= had_drafts;  // a draft's row counts once its token is chosen
        if (sample_and_emit(e, s, logits, items[k].argmax ? items[k].argmax[0] : -1, edited[k])) {
            s->req = NULL;
            continue;
        }
        int n_rows = 1;
        next_ids[k][0] = s->last_token;
        for (int j = 1; j <= had_drafts; j++) {
            const int accepted = s->last_token == s->step_ids[j];  // row j ran on the chosen token
            // Counted before row j's token is published: stats are complete when its waiter wakes.
            pthread_mutex_lock(&e->mu);
            e->stats.spec_drafted++, e->stats.spec_accepted += (uint64_t)accepted;
            pthread_mutex_unlock(&e->mu);
            if (!accepted) break;
            s->st->n_past += 1;
            if (sample_and_emit(e, s, logits ? logits + (size_t)j * V : NULL, items[k].argmax ? items[k].argmax[j] : -1,
                                edited[k])) {
                s->req = NULL;
                break;
            }
            next_ids[k][n_rows++] = s->last_token;
        }
        if (!s->req || !s->spec) continue;
        drafting[n_drafting] = s;
        drafts[n_drafting++] =
            (glint_batch_item){s->st, next_ids[k], n_rows, NULL, 0, NULL, hidden, NULL, NULL, NULL, NULL, NULL};
    }
    if (n_drafting) draft_batch(e, drafting, drafts, n_drafting);
}

// A prefill chunk of s (one forward of its own, so a prompt is computed as it would be alone; with
// speculation also the MTP rows of its positions). Returns 1 when s left the running set.
static int prefill_chunk(glint_engine *e, sequence *s, int chunk) {
    const int D = e->m->cfg.hidden_size, start = s->n_prefilled, end = start + chunk;
    const int last = end == s->n_fill && s->sample_after_fill;
    float *hidden = s->spec ? glint_malloc(sizeof(float) * (size_t)chunk * D, "prefill hidden states") : NULL;
    glint_batch_item item = {s->st, s->fill + start, chunk, last ? e->logits : NULL, 0, hidden, NULL, NULL, NULL, NULL,
                             NULL, NULL};
    const char *error = NULL;
    if (s->spec && (!hidden || s->st->mtp_past != start)) error = hidden ? "MTP cache out of step" : glint_last_error();
    else if (glint_forward_batch(e->m, &item, 1)) error = glint_last_error();
    if (!error && s->spec) {
        // Row p pairs with the token after p: the prompt's, or at the end of a resumed fill the
        // last sampled token; a fresh prompt's last row waits for its first output token.
        int32_t *next = glint_malloc(sizeof(int32_t) * (size_t)chunk, "MTP ids");
        int pairs = 0;
        for (; next && pairs < chunk; pairs++) {
            const int p = start + pairs + 1;
            if (p < s->n_fill) next[pairs] = s->fill[p];
            else if (!s->sample_after_fill) next[pairs] = s->last_token;
            else break;
        }
        glint_batch_item mtp = {s->st, next, pairs, NULL, 0, NULL, hidden, NULL, NULL, NULL, NULL, NULL};
        sequence *self = s;
        if (!next) error = glint_last_error();
        else if (pairs && end == s->n_fill && !s->sample_after_fill) draft_batch(e, &self, &mtp, 1);
        else if (pairs && glint_mtp_forward_batch(e->m, &mtp, 1)) error = glint_last_error();
        free(next);
        if (!s->req) {  // draft_batch ended it
            free(hidden);
            return 1;
        }
    }
    if (error) {
        end_sequence(e, s, GLINT_FINISH_ERROR, error);
        s->req = NULL;
        free(hidden);
        return 1;
    }
    s->n_prefilled = end;
    pthread_mutex_lock(&e->mu);
    e->stats.prompt_tokens += (uint64_t)chunk;
    pthread_mutex_unlock(&e->mu);
    int left = 0;
    if (last && (left = sample_and_emit(e, s, e->logits, -1, 0))) s->req = NULL;
    if (last && !left && s->spec) {  // the last prompt row with the first output token: the first draft
        glint_batch_item mtp = {s->st, &s->last_token, 1, NULL, 0, NULL, hidden + (size_t)(chunk - 1) * D, NULL,
                                NULL, NULL, NULL, NULL};
        sequence *self = s;
        draft_batch(e, &self, &mtp, 1);
        left = !s->req;
    }
    free(hidden);
    return left;
}

// One engine step over the running sequences: prefill chunks (sharing the step's token budget),
// then every sequence that was already decoding advances by one token (two when its draft is
// accepted), in batched forwards of at most GLINT_DECODE_BATCH rows.
static void engine_step(glint_engine *e) {
    int budget = e->opt.chunked_prefill > 0 ? e->opt.chunked_prefill : 1 << 30;
    const int n = e->n_running;
    for (int i = 0; i < n; i++) {
        sequence *s = &e->running[i];
        s->decode_now = s->req && s->n_prefilled >= s->n_fill;
        if (s->req && atomic_load(&s->req->cancelled)) {
            end_sequence(e, s, GLINT_FINISH_ABORT, NULL);
            s->req = NULL;
        }
    }
    for (int i = 0; i < n; i++) {
        sequence *s = &e->running[i];
        if (!s->req || s->decode_now || budget <= 0) continue;
        int chunk = s->n_fill - s->n_prefilled;
        if (chunk > budget) chunk = budget;
        budget -= chunk;
        if (!ensure_room(e, s, s->n_prefilled + chunk)) prefill_chunk(e, s, chunk);
    }
    sequence *batch[GLINT_DECODE_BATCH];
    int n_batch = 0, rows = 0;
    for (int i = 0; i < n; i++) {
        sequence *s = &e->running[i];
        if (!s->req || !s->decode_now) continue;
        // Drafts need rows in the cache; near the end of the request they are dropped.
        if (s->st->n_past + 1 + s->n_drafts > s->full_capacity) s->n_drafts = s->full_capacity - s->st->n_past - 1;
        if (s->n_drafts < 0) s->n_drafts = 0;
        // (the MTP rows of the next step's further drafts use only pages already held: draft_batch)
        if (ensure_room(e, s, s->st->n_past + 1 + s->n_drafts)) continue;
        if (rows + 1 + s->n_drafts > GLINT_DECODE_BATCH) decode_batch(e, batch, n_batch), n_batch = 0, rows = 0;
        batch[n_batch++] = s;
        rows += 1 + s->n_drafts;
    }
    if (n_batch) decode_batch(e, batch, n_batch);
    // Compact the running list, keeping admission order.
    int kept = 0;
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i].req) e->running[kept++] = e->running[i];
    e->n_running = kept;
}

static void *engine_main(void *arg) {
    glint_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && !e->n_running && !e->n_retracted && !e->queue_head) pthread_cond_wait(&e->cv, &e->mu);
        if (e->stop) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        atomic_store(&e->wake_pending, 0);
        pthread_mutex_unlock(&e->mu);
        // Retracted sequences come back first, in the order they left.
        int pool_full = 0;
        while (e->n_retracted && e->n_running < e->opt.max_running) {
            sequence *s = &e->retracted[0];
            int placed = atomic_load(&s->req->cancelled) ? 2 : place_sequence(e, s);
            if (placed == 1) {
                pool_full = 1;
                break;
            }
            sequence back = *s;
            memmove(e->retracted, e->retracted + 1, (size_t)--e->n_retracted * sizeof *e->retracted);
            if (placed == 0) e->running[e->n_running++] = back;
            else end_sequence(e, &back, placed == 2 ? GLINT_FINISH_ABORT : GLINT_FINISH_ERROR, placed == 2 ? NULL : glint_last_error());
        }
        pthread_mutex_lock(&e->mu);
        // Then new requests in arrival order while there is room (no overtaking: a large request
        // at the head waits for pages rather than starving).
        while (!pool_full && !e->n_retracted && e->queue_head && e->n_running < e->opt.max_running) {
            glint_gen_request *r = e->queue_head;
            if (atomic_load(&r->cancelled)) {
                e->queue_head = r->next_in_queue;
                if (!e->queue_head) e->queue_tail = NULL;
                e->n_queued--;
                pthread_mutex_unlock(&e->mu);
                finish_request(e, r, GLINT_FINISH_ABORT, NULL);
                pthread_mutex_lock(&e->mu);
                continue;
            }
            pthread_mutex_unlock(&e->mu);
            sequence s;
            int started = init_sequence(e, r, &s);
            if (started == 0) {
                started = place_sequence(e, &s);
                if (started) glint_sampler_free(s.sampler), free(s.history);
            }
            pthread_mutex_lock(&e->mu);
            if (started == 1) break;  // pool full until running sequences finish
            e->queue_head = r->next_in_queue;
            if (!e->queue_head) e->queue_tail = NULL;
            e->n_queued--;
            if (started < 0) {
                pthread_mutex_unlock(&e->mu);
                finish_request(e, r, GLINT_FINISH_ERROR, glint_last_error());
                pthread_mutex_lock(&e->mu);
                continue;
            }
            r->cached_tokens = s.n_prefilled;
            e->running[e->n_running++] = s;
            e->stats.cached_prompt_tokens += (uint64_t)r->cached_tokens;
        }
        e->stats.running = e->n_running;
        e->stats.queued = e->n_queued + e->n_retracted;
        e->stats.pages_used = e->pool->n_pages - e->pool->n_free;
        e->stats.prefix_entries = e->n_prefix;
        pthread_mutex_unlock(&e->mu);
        if (e->n_running) {
            engine_step(e);
            pthread_mutex_lock(&e->mu);
            e->stats.running = e->n_running;
            e->stats.pages_used = e->pool->n_pages - e->pool->n_free;
            e->stats.prefix_entries = e->n_prefix;
            pthread_mutex_unlock(&e->mu);
        } else {  // queue head is waiting for pages that nobody holds: cannot happen (submit checks)
            pthread_mutex_lock(&e->mu);
            if (!e->stop && !atomic_load(&e->wake_pending)) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 10 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
                pthread_cond_timedwait(&e->cv, &e->mu, &ts);
            }
            pthread_mutex_unlock(&e->mu);
        }
    }
    return NULL;
}

// Everything glint_engine_new allocates (what it got so far), and e itself.
static void engine_release(glint_engine *e) {
    glint_kv_pool_free(e->m, e->pool);
    free(e->prefix), free(e->running), free(e->retracted), free(e->logits), free(e->scratch), free(e->hidden);
    free(e->edit_slot), free(e->draft_hidden);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

glint_engine *glint_engine_new(glint_model *m, const glint_engine_options *opts) {
    glint_engine *e = glint_calloc(1, sizeof *e, "engine");
    if (!e) return NULL;
    e->m = m;
    e->opt = *opts;
    if (e->opt.page_size < 1) e->opt.page_size = 1;
    if (e->opt.max_running < 1) e->opt.max_running = 1;
    if (e->opt.max_queued < 1) e->opt.max_queued = 1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (e->opt.grow_tokens < 1) e->opt.grow_tokens = 256;
    if (e->opt.speculative_steps < 1) e->opt.speculative_steps = 1;
    if (e->opt.speculative_steps > GLINT_MAX_DRAFTS) e->opt.speculative_steps = GLINT_MAX_DRAFTS;
    e->running = glint_calloc((size_t)e->opt.max_running, sizeof *e->running, "running sequences");
    e->retracted = glint_calloc((size_t)e->opt.max_running, sizeof *e->retracted, "retracted sequences");
    const size_t V = (size_t)m->cfg.vocab_size, D = (size_t)m->cfg.hidden_size;
    e->logits = glint_malloc(sizeof(float) * GLINT_DECODE_BATCH * V, "logits");
    if (e->opt.speculative) e->hidden = glint_malloc(sizeof(float) * GLINT_DECODE_BATCH * D, "hidden states");
    if (e->opt.speculative && e->opt.speculative_steps > 1)  // (without it: one draft per step)
        e->draft_hidden = malloc(sizeof(float) * 3 * GLINT_DECODE_BATCH * D);
    e->pool = glint_kv_pool_new(m, e->opt.total_pages, e->opt.page_size, e->opt.speculative);
    e->scratch = glint_malloc(sizeof(float) * (size_t)m->cfg.vocab_size, "logprobs");
    e->edit_slot = glint_malloc(sizeof(int32_t) * (size_t)m->cfg.vocab_size, "logit edits");
    for (size_t t = 0; e->edit_slot && t < V; t++) e->edit_slot[t] = -1;
    e->stats.pages_total = e->opt.total_pages;
    if (!e->running || !e->retracted || !e->logits || !e->scratch || !e->edit_slot || !e->pool ||
        (e->opt.speculative && !e->hidden)) {
        engine_release(e);
        return NULL;
    }
    if (pthread_create(&e->thread, NULL, engine_main, e)) {
        engine_release(e);
        glint_set_error("cannot start the engine thread");
        return NULL;
    }
    return e;
}

void glint_engine_shutdown(glint_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    int already = e->stop;
    e->stop = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (already) return;
    pthread_join(e->thread, NULL);
    for (int i = 0; i < e->n_running; i++) end_sequence(e, &e->running[i], GLINT_FINISH_ABORT, "server shutting down");
    e->n_running = 0;
    for (int i = 0; i < e->n_retracted; i++) end_sequence(e, &e->retracted[i], GLINT_FINISH_ABORT, "server shutting down");
    e->n_retracted = 0;
    pthread_mutex_lock(&e->mu);
    while (e->queue_head) {
        glint_gen_request *r = e->queue_head;
        e->queue_head = r->next_in_queue;
        e->n_queued--;
        pthread_mutex_unlock(&e->mu);
        finish_request(e, r, GLINT_FINISH_ABORT, "server shutting down");
        pthread_mutex_lock(&e->mu);
    }
    e->queue_tail = NULL;
    pthread_mutex_unlock(&e->mu);
}

void glint_engine_free(glint_engine *e) {
    if (!e) return;
    glint_engine_shutdown(e);
    while (e->n_prefix) prefix_evict(e, e->n_prefix - 1);
    engine_release(e);
}

void glint_engine_get_stats(glint_engine *e, glint_engine_stats *s) {
    pthread_mutex_lock(&e->mu);
    *s = e->stats;
    pthread_mutex_unlock(&e->mu);
}
