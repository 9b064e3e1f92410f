// The BPE model: splits one pre-tokenized word into symbols and applies merges by rank, plus a
// word cache shared by all threads (sharded, one mutex per shard).
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "text/tok_internal.h"

// ---- word cache --------------------------------------------------------------------------------------
enum { CACHE_SHARDS = 64, CACHE_SLOTS = 1024, CACHE_MAX_WORD = 64 };

typedef struct {
    uint64_t hash;
    uint32_t len, n_ids;
    char *blob;  // len bytes of word, then n_ids int32 ids (aligned)
} cache_entry;

typedef struct {
    pthread_mutex_t lock;
    cache_entry slots[CACHE_SLOTS];
} cache_shard;

struct tok_cache {
    cache_shard shards[CACHE_SHARDS];
};

tok_cache *tok_cache_new(void) {
    tok_cache *c = calloc(1, sizeof *c);
    if (!c) {
        glint_set_error("tokenizer: out of memory (word cache)");
        return NULL;
    }
    for (int i = 0; i < CACHE_SHARDS; i++) pthread_mutex_init(&c->shards[i].lock, NULL);
    return c;
}

void tok_cache_free(tok_cache *c) {
    if (!c) return;
    for (int i = 0; i < CACHE_SHARDS; i++) {
        for (int k = 0; k < CACHE_SLOTS; k++) free(c->shards[i].slots[k].blob);
        pthread_mutex_destroy(&c->shards[i].lock);
    }
    free(c);
}

static size_t blob_ids_offset(size_t len) { return (len + 3) & ~(size_t)3; }

static bool cache_get(tok_cache *c, uint64_t hash, const char *word, size_t len, tok_ids *out, bool *ok) {
    cache_shard *shard = &c->shards[hash % CACHE_SHARDS];
    cache_entry *e = &shard->slots[(hash / CACHE_SHARDS) % CACHE_SLOTS];
    bool hit = false;
    pthread_mutex_lock(&shard->lock);
    if (e->blob && e->hash == hash && e->len == len && memcmp(e->blob, word, len) == 0) {
        hit = true;
        *ok = tok_ids_append(out, (const int32_t *)(void *)(e->blob + blob_ids_offset(len)), e->n_ids);
    }
    pthread_mutex_unlock(&shard->lock);
    return hit;
}

static void cache_put(tok_cache *c, uint64_t hash, const char *word, size_t len, const int32_t *ids, size_t n) {
    char *blob = malloc(blob_ids_offset(len) + n * sizeof(int32_t));
    if (!blob) return;  // the cache is only an optimization
    memcpy(blob, word, len);
    memcpy(blob + blob_ids_offset(len), ids, n * sizeof(int32_t));
    cache_shard *shard = &c->shards[hash % CACHE_SHARDS];
    cache_entry *e = &shard->slots[(hash / CACHE_SHARDS) % CACHE_SLOTS];
    pthread_mutex_lock(&shard->lock);
    char *old = e->blob;
    e->blob = blob;
    e->hash = hash;
    e->len = (uint32_t)len;
    e->n_ids = (uint32_t)n;
    pthread_mutex_unlock(&shard->lock);
    free(old);
}

// ---- scratch ------------------------------------------------------------------------------------------
void tok_scratch_free(tok_scratch *s) {
    free(s->sym);
    free(s->prev);
    free(s->next);
    free(s->heap);
    tok_buf_free(&s->word);
    memset(s, 0, sizeof *s);
}

static bool scratch_symbols(tok_scratch *s, size_t n) {
    if (n <= s->sym_cap) return true;
    size_t cap = s->sym_cap ? s->sym_cap : 64;
    while (cap < n) cap *= 2;
    int32_t *a = realloc(s->sym, cap * sizeof *a);
    if (a) s->sym = a;
    int32_t *b = realloc(s->prev, cap * sizeof *b);
    if (b) s->prev = b;
    int32_t *c = realloc(s->next, cap * sizeof *c);
    if (c) s->next = c;
    if (!a || !b || !c) {
        glint_set_error("tokenizer: out of memory (%zu symbols)", cap);
        return false;
    }
    s->sym_cap = cap;
    return true;
}

// ---- initial symbols -----------------------------------------------------------------------------------
typedef struct {
    int32_t unk_pending;  // -1: none
    size_t count;
} symbol_builder;

static bool push_symbol(tok_scratch *s, symbol_builder *b, int32_t id) {
    if (!scratch_symbols(s, b->count + 1)) return false;
    s->sym[b->count++] = id;
    return true;
}

// Adds the symbol(s) for one character string `ch` (already with prefix/suffix); HF merge_word order:
// the vocab entry, else its <0xXX> byte tokens, else the unknown token (fused if asked), else nothing.
static bool add_char(const glint_tokenizer *tok, tok_scratch *s, symbol_builder *b, const char *ch, size_t n,
                     int32_t id) {
    if (id >= 0) {
        if (b->unk_pending >= 0) {
            if (!push_symbol(s, b, b->unk_pending)) return false;
            b->unk_pending = -1;
        }
        return push_symbol(s, b, id);
    }
    if (tok->byte_fallback) {
        bool all = true;
        for (size_t k = 0; k < n; k++) all = all && tok->byte_fallback_ids[(unsigned char)ch[k]] >= 0;
        if (all) {
            // HF adds byte tokens without flushing a pending unknown first; keep that order.
            for (size_t k = 0; k < n; k++)
                if (!push_symbol(s, b, tok->byte_fallback_ids[(unsigned char)ch[k]])) return false;
            return true;
        }
    }
    if (tok->unk_id >= 0) {
        if (b->unk_pending >= 0 && !tok->fuse_unk && !push_symbol(s, b, b->unk_pending)) return false;
        b->unk_pending = tok->unk_id;
    }
    return true;
}

// Looks up one character with the continuing-subword prefix / end-of-word suffix when the model has them.
static int32_t lookup_affixed(const glint_tokenizer *tok, tok_scratch *s, const char *ch, size_t n, bool first,
                              bool last, const char **text, size_t *text_len) {
    s->word.len = 0;
    if (!first && tok->subword_prefix) tok_buf_append(&s->word, tok->subword_prefix, tok->subword_prefix_len);
    tok_buf_append(&s->word, ch, n);
    if (last && tok->word_suffix) tok_buf_append(&s->word, tok->word_suffix, tok->word_suffix_len);
    *text = s->word.data;
    *text_len = s->word.len;
    return tok_strmap_get(&tok->vocab, s->word.data, s->word.len);
}

static bool initial_symbols(const glint_tokenizer *tok, tok_scratch *s, const char *word, size_t len, size_t *count) {
    symbol_builder b = {-1, 0};
    bool affixes = tok->subword_prefix || tok->word_suffix;
    if (tok->bpe_on_bytes) {
        for (size_t i = 0; i < len; i++) {
            unsigned char byte = (unsigned char)word[i];
            int32_t id = tok->byte_token_id[byte];
            char mapped[4];
            size_t mapped_len = (size_t)tok_utf8_encode(tok_byte_to_char[byte], mapped);
            const char *text = mapped;
            size_t text_len = mapped_len;
            if (affixes) id = lookup_affixed(tok, s, mapped, mapped_len, i == 0, i + 1 == len, &text, &text_len);
            if (id >= 0 && b.unk_pending < 0) {
                if (!push_symbol(s, &b, id)) return false;
            } else if (!add_char(tok, s, &b, text, text_len, id)) {
                return false;
            }
        }
    } else {
        for (size_t i = 0; i < len;) {
            size_t n = (size_t)tok_utf8_len_from_lead((unsigned char)word[i]);
            if (n > len - i) n = len - i;
            const char *text = word + i;
            size_t text_len = n;
            int32_t id = affixes ? lookup_affixed(tok, s, word + i, n, i == 0, i + n == len, &text, &text_len)
                                 : tok_strmap_get(&tok->vocab, word + i, n);
            if (!add_char(tok, s, &b, text, text_len, id)) return false;
            i += n;
        }
    }
    if (b.unk_pending >= 0 && !push_symbol(s, &b, b.unk_pending)) return false;
    *count = b.count;
    return true;
}

// ---- merging -----------------------------------------------------------------------------------------------
static bool heap_less(const tok_merge_candidate *a, const tok_merge_candidate *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static bool heap_push(tok_scratch *s, int32_t rank, int32_t pos, int32_t merged) {
    if (s->heap_len == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        tok_merge_candidate *h = realloc(s->heap, cap * sizeof *h);
        if (!h) {
            glint_set_error("tokenizer: out of memory (merge queue)");
            return false;
        }
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_len++;
    tok_merge_candidate c = {rank, pos, merged};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&c, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = c;
    return true;
}

static tok_merge_candidate heap_pop(tok_scratch *s) {
    tok_merge_candidate top = s->heap[0];
    tok_merge_candidate last = s->heap[--s->heap_len];
    size_t i = 0, n = s->heap_len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && heap_less(&s->heap[child + 1], &s->heap[child])) child++;
        if (!heap_less(&s->heap[child], &last)) break;
        s->heap[i] = s->heap[child];
        i = child;
    }
    if (n) s->heap[i] = last;
    return top;
}

// Merges the lowest-rank adjacent pair (leftmost on ties) until none can merge. Short words scan the
// list each round; long ones use a priority queue with lazy deletion (same order, fewer lookups).
static bool merge_symbols(const glint_tokenizer *tok, tok_scratch *s, size_t n) {
    int32_t *sym = s->sym, *prev = s->prev, *next = s->next;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    if (n <= 24) {
        for (;;) {
            int32_t best_rank = INT32_MAX, best_pos = -1, best_merged = -1;
            for (int32_t i = 0; i >= 0 && next[i] >= 0; i = next[i]) {
                int32_t rank, merged;
                if (tok_pairmap_get(&tok->merges, sym[i], sym[next[i]], &rank, &merged) && rank < best_rank) {
                    best_rank = rank;
                    best_pos = i;
                    best_merged = merged;
                }
            }
            if (best_pos < 0) return true;
            int32_t right = next[best_pos];
            sym[best_pos] = best_merged;
            next[best_pos] = next[right];
            if (next[right] >= 0) prev[next[right]] = best_pos;
            sym[right] = -1;
        }
    }
    s->heap_len = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t rank, merged;
        if (tok_pairmap_get(&tok->merges, sym[i], sym[i + 1], &rank, &merged) &&
            !heap_push(s, rank, (int32_t)i, merged))
            return false;
    }
    while (s->heap_len) {
        tok_merge_candidate top = heap_pop(s);
        int32_t pos = top.pos;
        if (sym[pos] < 0 || next[pos] < 0) continue;  // removed, or now the last symbol
        int32_t right = next[pos];
        int32_t rank, merged;
        if (!tok_pairmap_get(&tok->merges, sym[pos], sym[right], &rank, &merged) || merged != top.merged)
            continue;  // stale entry: one side merged with something else meanwhile
        sym[pos] = merged;
        next[pos] = next[right];
        if (next[right] >= 0) prev[next[right]] = pos;
        sym[right] = -1;
        if (prev[pos] >= 0 && tok_pairmap_get(&tok->merges, sym[prev[pos]], sym[pos], &rank, &merged) &&
            !heap_push(s, rank, prev[pos], merged))
            return false;
        if (next[pos] >= 0 && tok_pairmap_get(&tok->merges, sym[pos], sym[next[pos]], &rank, &merged) &&
            !heap_push(s, rank, pos, merged))
            return false;
    }
    return true;
}

bool tok_bpe_word(const glint_tokenizer *tok, tok_scratch *s, const char *word, size_t len, tok_ids *out) {
    if (len == 0) return true;
    uint64_t hash = 0;
    if (len <= CACHE_MAX_WORD) {
        bool ok = true;
        hash = tok_hash_bytes(word, len);
        if (cache_get(tok->cache, hash, word, len, out, &ok)) return ok;
    }
    size_t first_out = out->len;
    bool whole = false;
    if (tok->ignore_merges) {  // a word that is itself in the vocabulary is one token
        const char *key = word;
        size_t key_len = len;
        if (tok->bpe_on_bytes) {
            s->word.len = 0;
            for (size_t i = 0; i < len; i++) {
                char mapped[4];
                int m = tok_utf8_encode(tok_byte_to_char[(unsigned char)word[i]], mapped);
                if (!tok_buf_append(&s->word, mapped, (size_t)m)) return false;
            }
            key = s->word.data;
            key_len = s->word.len;
        }
        int32_t id = tok_strmap_get(&tok->vocab, key, key_len);
        if (id >= 0) {
            if (!tok_ids_push(out, id)) return false;
            whole = true;
        }
    }
    if (!whole) {
        size_t n;
        if (!initial_symbols(tok, s, word, len, &n)) return false;
        if (n == 0) return true;
        if (!merge_symbols(tok, s, n)) return false;
        for (int32_t i = 0; i >= 0; i = s->next[i])
            if (!tok_ids_push(out, s->sym[i])) return false;
    }
    if (len <= CACHE_MAX_WORD) cache_put(tok->cache, hash, word, len, out->data + first_out, out->len - first_out);
    return true;
}
