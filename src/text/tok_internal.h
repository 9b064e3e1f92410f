// Internal structures of the tokenizer (src/text/tok_*.c). Not part of the public API.
#ifndef GLINT_TOK_INTERNAL_H
#define GLINT_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

// ---- growable buffers -------------------------------------------------------------------------
typedef struct {
    char *data;
    size_t len, cap;
} tok_buf;
bool tok_buf_reserve(tok_buf *b, size_t extra);
bool tok_buf_append(tok_buf *b, const void *bytes, size_t n);
static inline bool tok_buf_push(tok_buf *b, char c) { return tok_buf_append(b, &c, 1); }
void tok_buf_free(tok_buf *b);

typedef struct {
    int32_t *data;
    size_t len, cap;
} tok_ids;
bool tok_ids_push(tok_ids *v, int32_t id);
bool tok_ids_append(tok_ids *v, const int32_t *ids, size_t n);

// A list of strings stored back to back in one buffer: piece i is text.data[off[i] .. off[i]+len[i]).
typedef struct {
    tok_buf text;
    size_t *off, *len;
    uint8_t *first;  // 1 if the piece starts at offset 0 of the original input (Metaspace "first")
    size_t count, cap;
} tok_pieces;
bool tok_pieces_add(tok_pieces *p, const char *s, size_t n, uint8_t first);
void tok_pieces_clear(tok_pieces *p);
void tok_pieces_free(tok_pieces *p);

// ---- hashing and maps ---------------------------------------------------------------------------
uint64_t tok_hash_bytes(const void *data, size_t n);

// string -> int32 (vocab). Keys are copied into an arena owned by the map.
typedef struct {
    uint64_t hash;  // 0 = empty slot
    uint32_t key_off, key_len;
    int32_t value;
} tok_strmap_slot;
typedef struct {
    tok_strmap_slot *slots;  // one array of structs: one cache miss per probe
    size_t mask, count;
    tok_buf keys;
} tok_strmap;
bool tok_strmap_init(tok_strmap *m, size_t expected);
bool tok_strmap_put(tok_strmap *m, const char *key, size_t n, int32_t value);  // overwrites
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t n);        // -1 if absent
void tok_strmap_free(tok_strmap *m);

// (left id, right id) -> (rank, merged id): the BPE merges.
typedef struct {
    uint64_t key;  // UINT64_MAX = empty
    int32_t rank, merged;
} tok_pairmap_slot;
typedef struct {
    tok_pairmap_slot *slots;
    size_t mask, count;
} tok_pairmap;
bool tok_pairmap_init(tok_pairmap *m, size_t expected);
bool tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged);  // keeps first
static inline uint64_t tok_pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }
static inline uint64_t tok_pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}
// Returns true and fills rank/merged when the pair can merge.
static inline bool tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged) {
    uint64_t key = tok_pair_key(a, b);
    size_t i = (size_t)tok_pair_hash(key) & m->mask;
    for (;;) {
        const tok_pairmap_slot *slot = &m->slots[i];
        uint64_t k = slot->key;
        if (k == key) {
            *rank = slot->rank;
            *merged = slot->merged;
            return true;
        }
        if (k == UINT64_MAX) return false;
        i = (i + 1) & m->mask;
    }
}
void tok_pairmap_free(tok_pairmap *m);

// ---- UTF-8 ----------------------------------------------------------------------------------------
// Length of the valid UTF-8 prefix of s (== n when all of it is valid).
size_t tok_utf8_valid_prefix(const char *s, size_t n);
// Decodes one code point from valid UTF-8; returns its byte length.
int tok_utf8_decode(const char *s, size_t n, int32_t *cp);
int tok_utf8_encode(int32_t cp, char out[4]);
static inline int tok_utf8_len_from_lead(unsigned char c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}
// Appends s with invalid sequences replaced by U+FFFD, like Rust's String::from_utf8_lossy.
bool tok_utf8_lossy_append(tok_buf *out, const char *s, size_t n);
bool tok_is_whitespace(int32_t cp);  // Rust char::is_whitespace (Unicode White_Space)
bool tok_is_word_char(int32_t cp);   // regex \w as in Rust's regex crate
bool tok_is_numeric(int32_t cp);     // Rust char::is_numeric: categories Nd, Nl, No

// ---- regex (PCRE2, UTF + UCP, JIT) ------------------------------------------------------------
typedef struct {
    pcre2_code *code;
} tok_regex;
bool tok_regex_compile(tok_regex *re, const char *pattern, size_t len, bool literal, const char *where);
void tok_regex_free(tok_regex *re);

// Per-call scratch state: match data and a lazily created JIT stack (never shared between threads).
typedef struct {
    pcre2_match_data *match_data;
    pcre2_match_context *match_context;
    pcre2_jit_stack *jit_stack;
} tok_matcher;
bool tok_matcher_init(tok_matcher *m);
void tok_matcher_free(tok_matcher *m);
// Finds the next match at or after `start`; returns 1 with [*ms, *me), 0 if none, -1 on error.
int tok_regex_next(const tok_regex *re, tok_matcher *m, const char *s, size_t n, size_t start, size_t *ms,
                   size_t *me);

// ---- components ------------------------------------------------------------------------------------
typedef enum {
    NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWERCASE, NORM_STRIP, NORM_REPLACE, NORM_PREPEND,
    NORM_SEQUENCE
} tok_norm_kind;
typedef struct tok_normalizer {
    tok_norm_kind kind;
    bool strip_left, strip_right;
    tok_regex pattern;  // Replace
    char *content;      // Replace content / Prepend text
    size_t content_len;
    struct tok_normalizer *children;
    size_t n_children;
} tok_normalizer;

typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } tok_split_behavior;
typedef enum { PRETOK_SPLIT, PRETOK_BYTELEVEL, PRETOK_DIGITS, PRETOK_METASPACE } tok_pretok_kind;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } tok_prepend_scheme;
typedef struct {
    tok_pretok_kind kind;
    tok_regex pattern;  // Split; ByteLevel with use_regex uses the GPT-2 pattern
    tok_split_behavior behavior;
    bool invert;
    bool add_prefix_space, use_regex;  // ByteLevel
    bool individual_digits;            // Digits
    char replacement[5];               // Metaspace (UTF-8 of the replacement char)
    size_t replacement_len;
    tok_prepend_scheme prepend_scheme;
    bool split;
} tok_pretokenizer;

typedef enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_FUSE, DEC_STRIP, DEC_BYTEFALLBACK, DEC_METASPACE } tok_decoder_kind;
typedef struct {
    tok_decoder_kind kind;
    tok_regex pattern;  // Replace
    char *content;      // Replace content
    size_t content_len;
    int32_t strip_char;  // Strip
    int strip_start, strip_stop;
    char replacement[5];  // Metaspace
    size_t replacement_len;
    bool prepend_first;  // Metaspace: drop the replacement in the first token (scheme != never)
} tok_decoder;

typedef struct {
    char *content;
    size_t len;
    char *decoded;  // normalized text when that differs (HF decodes to it), else NULL
    size_t decoded_len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} tok_added_token;

// Byte trie over added-token contents for leftmost-longest matching.
typedef struct {
    tok_pairmap edges;    // (node, byte) -> child node (in .merged); rank unused
    int32_t *token_at;    // node -> index into added tokens, -1 if no token ends there
    size_t n_nodes, cap_nodes;
    uint8_t first_byte[256];
    bool empty;
} tok_trie;

// Post-processor as a list of items: item i is either the encoded sequence (items[i] < 0) or the
// fixed ids group_ids[i][0 .. group_len[i]) of a special token.
typedef struct {
    int32_t n_template;
    int32_t *items;
    int32_t **group_ids;
    size_t *group_len;
} tok_template;

typedef struct tok_cache tok_cache;

struct glint_tokenizer {
    // model
    tok_strmap vocab;
    tok_pairmap merges;
    bool ignore_merges, byte_fallback, fuse_unk;
    int32_t unk_id;
    char *subword_prefix, *word_suffix;
    size_t subword_prefix_len, word_suffix_len;
    int32_t byte_fallback_ids[256];  // <0xXX> ids, -1 if absent
    // byte-level: BPE works on raw bytes; byte_token_id maps each byte to its mapped char's id
    bool bpe_on_bytes;
    int32_t byte_token_id[256];
    // pipeline
    tok_normalizer *normalizer;  // NULL = none
    tok_pretokenizer *pretok;
    size_t n_pretok;
    tok_decoder *decoders;
    size_t n_decoders;
    bool has_decoder;
    tok_template post;  // n_template == 0: nothing added
    // added tokens
    tok_added_token *added;
    size_t n_added;
    tok_trie trie_raw, trie_normalized;
    tok_strmap added_by_content;
    // id -> text and flags
    char **id_text;
    uint32_t *id_text_len;
    uint8_t *id_special;
    int32_t n_ids;
    char *bos_token, *eos_token;
    tok_cache *cache;
};

// byte <-> char map of the GPT-2 byte-level alphabet
extern const uint16_t tok_byte_to_char[256];
int tok_char_to_byte(int32_t cp);  // -1 if cp is not in the byte-level alphabet

// Scratch memory of one encode call (never shared between threads).
typedef struct {
    int32_t rank, pos, merged;
} tok_merge_candidate;
typedef struct {
    int32_t *sym, *prev, *next;
    size_t sym_cap;
    tok_merge_candidate *heap;
    size_t heap_len, heap_cap;
    tok_buf word;  // mapped text of a word (ignore_merges lookups, prefixes)
} tok_scratch;
void tok_scratch_free(tok_scratch *s);

// stages (tokenizer.c, tok_bpe.c, tok_decode.c)
bool tok_normalize(const tok_normalizer *n, tok_matcher *m, const char *s, size_t len, tok_buf *out);
bool tok_bpe_word(const glint_tokenizer *tok, tok_scratch *scratch, const char *word, size_t len, tok_ids *out);
tok_cache *tok_cache_new(void);
void tok_cache_free(tok_cache *c);
bool tok_trie_add(tok_trie *t, const char *s, size_t n, int32_t token_index);
void tok_trie_free(tok_trie *t);
void tok_normalizer_free(tok_normalizer *n);
char *tok_decode_impl(const glint_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special, size_t *out_len);

#endif
