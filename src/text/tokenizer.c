// Encoding: added-token extraction, normalizers, pre-tokenizers, BPE, post-processing — in the
// order of Hugging Face tokenizers' TokenizerImpl::encode.
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "common/util.h"
#include "text/tok_internal.h"

// ---- normalizers ------------------------------------------------------------------------------------
static bool is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static bool normalize_unicode(tok_norm_kind kind, const char *s, size_t n, tok_buf *out) {
    if (is_ascii(s, n)) return tok_buf_append(out, s, n);  // every normal form leaves ASCII alone
    int options = UTF8PROC_STABLE;
    if (kind == NORM_NFC || kind == NORM_NFKC) options |= UTF8PROC_COMPOSE;
    else options |= UTF8PROC_DECOMPOSE;
    if (kind == NORM_NFKC || kind == NORM_NFKD) options |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)options);
    if (r < 0) {
        glint_set_error("tokenizer: Unicode normalization failed: %s", utf8proc_errmsg(r));
        return false;
    }
    bool ok = tok_buf_append(out, dst, (size_t)r);
    free(dst);
    return ok;
}

static bool lowercase(const char *s, size_t n, tok_buf *out) {
    if (!tok_buf_reserve(out, n)) return false;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            if (!tok_buf_push(out, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c))) return false;
            i++;
            continue;
        }
        int32_t cp;
        i += (size_t)tok_utf8_decode(s + i, n - i, &cp);
        if (cp == 0x130) {  // the one unconditional multi-character lowercase mapping (Rust to_lowercase)
            if (!tok_buf_append(out, "i\xCC\x87", 3)) return false;
            continue;
        }
        char enc[4];
        int len = tok_utf8_encode(utf8proc_tolower(cp), enc);
        if (!tok_buf_append(out, enc, (size_t)len)) return false;
    }
    return true;
}

static bool strip(const char *s, size_t n, bool left, bool right, tok_buf *out) {
    size_t start = 0, end = n;
    while (left && start < end) {
        int32_t cp;
        int k = tok_utf8_decode(s + start, end - start, &cp);
        if (!tok_is_whitespace(cp)) break;
        start += (size_t)k;
    }
    while (right && end > start) {
        size_t k = end - 1;
        while (k > start && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        int32_t cp;
        tok_utf8_decode(s + k, end - k, &cp);
        if (!tok_is_whitespace(cp)) break;
        end = k;
    }
    return tok_buf_append(out, s + start, end - start);
}

// Replaces every non-empty match of re in s with content.
static bool replace_all(const tok_regex *re, tok_matcher *m, const char *s, size_t n, const char *content,
                        size_t content_len, tok_buf *out) {
    size_t pos = 0, copied = 0;
    while (pos <= n) {
        size_t ms, me;
        int r = tok_regex_next(re, m, s, n, pos, &ms, &me);
        if (r < 0) return false;
        if (r == 0) break;
        if (me == ms) {  // empty match: step over one character
            pos = ms + (ms < n ? (size_t)tok_utf8_len_from_lead((unsigned char)s[ms]) : 1);
            continue;
        }
        if (!tok_buf_append(out, s + copied, ms - copied) || !tok_buf_append(out, content, content_len)) return false;
        copied = pos = me;
    }
    return tok_buf_append(out, s + copied, n - copied);
}

bool tok_normalize(const tok_normalizer *nz, tok_matcher *m, const char *s, size_t n, tok_buf *out) {
    switch (nz->kind) {
    case NORM_NFC: case NORM_NFD: case NORM_NFKC: case NORM_NFKD:
        return normalize_unicode(nz->kind, s, n, out);
    case NORM_LOWERCASE:
        return lowercase(s, n, out);
    case NORM_STRIP:
        return strip(s, n, nz->strip_left, nz->strip_right, out);
    case NORM_REPLACE:
        return replace_all(&nz->pattern, m, s, n, nz->content, nz->content_len, out);
    case NORM_PREPEND:
        return (n == 0 || tok_buf_append(out, nz->content, nz->content_len)) && tok_buf_append(out, s, n);
    case NORM_SEQUENCE: {
        if (nz->n_children == 0) return tok_buf_append(out, s, n);
        tok_buf a = {0}, b = {0};
        bool ok = tok_buf_append(&a, s, n);
        for (size_t i = 0; ok && i < nz->n_children; i++) {
            b.len = 0;
            ok = tok_buf_append(&b, "", 0) && tok_normalize(&nz->children[i], m, a.data, a.len, &b);
            tok_buf t = a;
            a = b;
            b = t;
        }
        ok = ok && tok_buf_append(out, a.data, a.len);
        tok_buf_free(&a);
        tok_buf_free(&b);
        return ok;
    }
    }
    return false;
}

// ---- splitting ---------------------------------------------------------------------------------------------
typedef struct {
    size_t start, end;
    bool match;
} span;

typedef struct {
    span *items;
    size_t len, cap;
} span_list;

static bool spans_push(span_list *l, size_t start, size_t end, bool match) {
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        span *p = realloc(l->items, cap * sizeof *p);
        if (!p) {
            glint_set_error("tokenizer: out of memory (spans)");
            return false;
        }
        l->items = p;
        l->cap = cap;
    }
    l->items[l->len++] = (span){start, end, match};
    return true;
}

typedef struct {
    tok_matcher matcher;
    tok_scratch bpe;
    span_list spans, folded;
    tok_pieces pieces[2];
    tok_buf norm;
} encode_state;

// Matches of a regex as (span, is_match) covering the whole string, like HF's Pattern::find_matches.
static bool regex_spans(const tok_regex *re, tok_matcher *m, const char *s, size_t n, span_list *out) {
    out->len = 0;
    size_t prev = 0, pos = 0;
    while (pos <= n) {
        size_t ms, me;
        int r = tok_regex_next(re, m, s, n, pos, &ms, &me);
        if (r < 0) return false;
        if (r == 0) break;
        if (prev != ms && !spans_push(out, prev, ms, false)) return false;
        if (!spans_push(out, ms, me, true)) return false;
        prev = me;
        pos = me > ms ? me : ms + (ms < n ? (size_t)tok_utf8_len_from_lead((unsigned char)s[ms]) : 1);
    }
    if (prev != n && !spans_push(out, prev, n, false)) return false;
    return true;
}

typedef bool (*char_predicate)(int32_t cp, const void *arg);

// Each character satisfying pred is its own match; runs of the others are non-matches.
static bool char_spans(char_predicate pred, const void *arg, const char *s, size_t n, span_list *out) {
    out->len = 0;
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t k = (size_t)tok_utf8_decode(s + i, n - i, &cp);
        if (pred(cp, arg)) {
            if (last < i && !spans_push(out, last, i, false)) return false;
            if (!spans_push(out, i, i + k, true)) return false;
            last = i + k;
        }
        i += k;
    }
    if (last < n && !spans_push(out, last, n, false)) return false;
    return true;
}

// Applies a split behaviour to the spans and adds the non-empty resulting pieces.
static bool fold_and_add(span_list *spans, span_list *folded, tok_split_behavior behavior, bool invert,
                         const char *s, uint8_t first, tok_pieces *out) {
    if (invert)
        for (size_t i = 0; i < spans->len; i++) spans->items[i].match = !spans->items[i].match;
    folded->len = 0;
    span *in = spans->items;
    size_t n = spans->len;
    switch (behavior) {
    case SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!in[i].match && !spans_push(folded, in[i].start, in[i].end, false)) return false;
        break;
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++)
            if (!spans_push(folded, in[i].start, in[i].end, in[i].match)) return false;
        break;
    case SPLIT_MERGED_PREV: {
        bool previous_match = false;
        for (size_t i = 0; i < n; i++) {
            if (in[i].match && !previous_match && folded->len) folded->items[folded->len - 1].end = in[i].end;
            else if (!spans_push(folded, in[i].start, in[i].end, in[i].match)) return false;
            previous_match = in[i].match;
        }
        break;
    }
    case SPLIT_MERGED_NEXT: {
        bool previous_match = false;  // walks right to left, then reverses
        for (size_t k = n; k-- > 0;) {
            if (in[k].match && !previous_match && folded->len) folded->items[folded->len - 1].start = in[k].start;
            else if (!spans_push(folded, in[k].start, in[k].end, in[k].match)) return false;
            previous_match = in[k].match;
        }
        for (size_t a = 0, b = folded->len; a + 1 < b; a++, b--) {
            span t = folded->items[a];
            folded->items[a] = folded->items[b - 1];
            folded->items[b - 1] = t;
        }
        break;
    }
    case SPLIT_CONTIGUOUS: {
        bool previous_match = false;
        for (size_t i = 0; i < n; i++) {
            if (in[i].match == previous_match && folded->len) folded->items[folded->len - 1].end = in[i].end;
            else if (!spans_push(folded, in[i].start, in[i].end, in[i].match)) return false;
            previous_match = in[i].match;
        }
        break;
    }
    }
    for (size_t i = 0; i < folded->len; i++) {
        span *f = &folded->items[i];
        if (f->end > f->start && !tok_pieces_add(out, s + f->start, f->end - f->start, first && f->start == 0))
            return false;
    }
    return true;
}

static bool is_numeric_pred(int32_t cp, const void *arg) {
    (void)arg;
    return tok_is_numeric(cp);
}

static bool is_char_pred(int32_t cp, const void *arg) { return cp == *(const int32_t *)arg; }

// Appends the byte-level mapping of s (each byte as its GPT-2 alphabet character).
static bool map_bytes(const char *s, size_t n, tok_buf *out) {
    for (size_t i = 0; i < n; i++) {
        char enc[4];
        int k = tok_utf8_encode(tok_byte_to_char[(unsigned char)s[i]], enc);
        if (!tok_buf_append(out, enc, (size_t)k)) return false;
    }
    return true;
}

// Runs one pre-tokenizer over every piece of `in`, writing the new pieces to `out`.
static bool pretokenize_step(const glint_tokenizer *tok, size_t step, encode_state *st, tok_pieces *in,
                             tok_pieces *out) {
    const tok_pretokenizer *p = &tok->pretok[step];
    bool last = step + 1 == tok->n_pretok;
    tok_pieces_clear(out);
    for (size_t i = 0; i < in->count; i++) {
        const char *s = in->text.data + in->off[i];
        size_t n = in->len[i];
        uint8_t first = in->first[i];
        switch (p->kind) {
        case PRETOK_SPLIT:
            if (!regex_spans(&p->pattern, &st->matcher, s, n, &st->spans) ||
                !fold_and_add(&st->spans, &st->folded, p->behavior, p->invert, s, first, out))
                return false;
            break;
        case PRETOK_DIGITS:
            if (!char_spans(is_numeric_pred, NULL, s, n, &st->spans) ||
                !fold_and_add(&st->spans, &st->folded, p->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS,
                              false, s, first, out))
                return false;
            break;
        case PRETOK_BYTELEVEL: {
            st->norm.len = 0;
            if (p->add_prefix_space && (n == 0 || s[0] != ' ') && !tok_buf_push(&st->norm, ' ')) return false;
            if (!tok_buf_append(&st->norm, s, n)) return false;
            const char *t = st->norm.data;
            size_t tn = st->norm.len;
            size_t before = out->count;
            if (p->use_regex) {
                if (!regex_spans(&p->pattern, &st->matcher, t, tn, &st->spans) ||
                    !fold_and_add(&st->spans, &st->folded, SPLIT_ISOLATED, false, t, first, out))
                    return false;
            } else if (!tok_pieces_add(out, t, tn, first)) {
                return false;
            }
            if (!last) {
                // Later pre-tokenizers see the mapped characters, so map now (BPE maps lazily otherwise).
                tok_buf mapped = {0};
                for (size_t k = before; k < out->count; k++) {
                    size_t at = mapped.len;
                    if (!map_bytes(out->text.data + out->off[k], out->len[k], &mapped)) {
                        tok_buf_free(&mapped);
                        return false;
                    }
                    out->off[k] = at;  // temporarily relative to `mapped`
                    out->len[k] = mapped.len - at;
                }
                size_t text_at = out->text.len;
                if (!tok_buf_append(&out->text, mapped.data, mapped.len)) {
                    tok_buf_free(&mapped);
                    return false;
                }
                for (size_t k = before; k < out->count; k++) out->off[k] += text_at;
                tok_buf_free(&mapped);
            }
            break;
        }
        case PRETOK_METASPACE: {
            st->norm.len = 0;
            bool starts = n >= p->replacement_len && !memcmp(s, p->replacement, p->replacement_len);
            bool has_space = n > 0 && s[0] == ' ';
            bool prepend = p->prepend_scheme == PREPEND_ALWAYS || (p->prepend_scheme == PREPEND_FIRST && first);
            if (prepend && !starts && !has_space && !tok_buf_append(&st->norm, p->replacement, p->replacement_len))
                return false;
            for (size_t k = 0; k < n; k++) {
                bool ok = s[k] == ' ' ? tok_buf_append(&st->norm, p->replacement, p->replacement_len)
                                      : tok_buf_push(&st->norm, s[k]);
                if (!ok) return false;
            }
            const char *t = st->norm.data ? st->norm.data : "";
            if (p->split) {
                int32_t rep;
                tok_utf8_decode(p->replacement, p->replacement_len, &rep);
                if (!char_spans(is_char_pred, &rep, t, st->norm.len, &st->spans) ||
                    !fold_and_add(&st->spans, &st->folded, SPLIT_MERGED_NEXT, false, t, first, out))
                    return false;
            } else if (st->norm.len && !tok_pieces_add(out, t, st->norm.len, first)) {
                return false;
            }
            break;
        }
        }
    }
    return true;
}

// Pre-tokenizes one normalized piece and runs BPE on every resulting word.
static bool encode_piece(const glint_tokenizer *tok, encode_state *st, const char *s, size_t n, bool first,
                         tok_ids *out) {
    if (n == 0) return true;
    // A ByteLevel step that adds no prefix and does not split is only the (lazy) byte mapping.
    size_t steps = tok->n_pretok;
    if (tok->bpe_on_bytes && !tok->pretok[steps - 1].add_prefix_space && !tok->pretok[steps - 1].use_regex) steps--;
    if (steps == 0) return tok_bpe_word(tok, &st->bpe, s, n, out);
    tok_pieces *in = &st->pieces[0], *next = &st->pieces[1];
    tok_pieces_clear(in);
    if (!tok_pieces_add(in, s, n, first)) return false;
    for (size_t k = 0; k < steps; k++) {
        if (!pretokenize_step(tok, k, st, in, next)) return false;
        tok_pieces *t = in;
        in = next;
        next = t;
    }
    for (size_t i = 0; i < in->count; i++)
        if (!tok_bpe_word(tok, &st->bpe, in->text.data + in->off[i], in->len[i], out)) return false;
    return true;
}

// ---- added tokens ------------------------------------------------------------------------------------------
// Leftmost-longest match of an added token at or after `from`.
static bool trie_find(const tok_trie *t, const char *s, size_t n, size_t from, size_t *ms, size_t *me, int32_t *token) {
    for (size_t start = from; start < n; start++) {
        if (!t->first_byte[(unsigned char)s[start]]) continue;
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t i = start; i < n; i++) {
            int32_t rank, child;
            if (!tok_pairmap_get(&t->edges, node, (unsigned char)s[i], &rank, &child)) break;
            node = child;
            if (t->token_at[node] >= 0) {
                best = t->token_at[node];
                best_end = i + 1;
            }
        }
        if (best >= 0) {
            *ms = start;
            *me = best_end;
            *token = best;
            return true;
        }
    }
    return false;
}

static int32_t last_char(const char *s, size_t n) {
    if (n == 0) return -1;
    size_t k = n - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    int32_t cp;
    tok_utf8_decode(s + k, n - k, &cp);
    return cp;
}

// A segment of text between added tokens, or an added token (token >= 0).
typedef bool (*segment_fn)(const glint_tokenizer *tok, encode_state *st, const char *s, size_t n, bool first,
                           tok_ids *out);

// HF AddedVocabulary::find_matches: splits s on the trie's tokens, honouring single_word/lstrip/rstrip.
static bool split_added(const glint_tokenizer *tok, const tok_trie *trie, encode_state *st, const char *s, size_t n,
                        bool first, segment_fn on_text, tok_ids *out) {
    if (trie->empty) return on_text(tok, st, s, n, first, out);
    size_t done = 0, search = 0, ms, me;
    int32_t index;
    while (search < n && trie_find(trie, s, n, search, &ms, &me, &index)) {
        const tok_added_token *a = &tok->added[index];
        search = me;
        size_t start = ms, stop = me;
        if (a->single_word) {
            int32_t before = last_char(s, ms), after = -1;
            if (me < n) tok_utf8_decode(s + me, n - me, &after);
            if ((before >= 0 && tok_is_word_char(before)) || (after >= 0 && tok_is_word_char(after))) continue;
        }
        if (a->lstrip) {
            while (start > done) {
                int32_t cp = last_char(s, start);
                if (!tok_is_whitespace(cp)) break;
                size_t k = start - 1;
                while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
                start = k;
            }
        }
        if (a->rstrip) {
            while (stop < n) {
                int32_t cp;
                int k = tok_utf8_decode(s + stop, n - stop, &cp);
                if (!tok_is_whitespace(cp)) break;
                stop += (size_t)k;
            }
        }
        if (start < done) start = done;
        if (done < start && !on_text(tok, st, s + done, start - done, first && done == 0, out)) return false;
        if (!tok_ids_push(out, a->id)) return false;
        done = stop;
    }
    if (done < n) return on_text(tok, st, s + done, n - done, first && done == 0, out);
    return true;
}

// A piece outside the raw (non-normalized) added tokens: normalize it, then split on normalized ones.
static bool encode_segment(const glint_tokenizer *tok, encode_state *st, const char *s, size_t n, bool first,
                           tok_ids *out) {
    if (!tok->normalizer) return split_added(tok, &tok->trie_normalized, st, s, n, first, encode_piece, out);
    tok_buf normalized = {0};
    bool ok = tok_buf_append(&normalized, "", 0) && tok_normalize(tok->normalizer, &st->matcher, s, n, &normalized) &&
              split_added(tok, &tok->trie_normalized, st, normalized.data, normalized.len, first, encode_piece, out);
    tok_buf_free(&normalized);
    return ok;
}

int glint_tokenizer_encode(const glint_tokenizer *tok, const char *text, size_t len, int add_special_tokens,
                           int32_t **ids) {
    *ids = NULL;
    if (len && !text) {
        glint_set_error("tokenizer: NULL text");
        return -1;
    }
    size_t valid = tok_utf8_valid_prefix(text, len);
    if (valid != len) {
        glint_set_error("invalid UTF-8 in the input at byte offset %zu", valid);
        return -1;
    }
    if (len > (size_t)INT32_MAX / 2) {
        glint_set_error("tokenizer: input of %zu bytes is too large", len);
        return -1;
    }
    encode_state st;
    memset(&st, 0, sizeof st);
    tok_ids out = {0};
    bool ok = tok_matcher_init(&st.matcher) &&
              split_added(tok, &tok->trie_raw, &st, text ? text : "", len, true, encode_segment, &out);
    if (ok && add_special_tokens && tok->post.n_template) {
        tok_ids full = {0};
        for (int32_t i = 0; ok && i < tok->post.n_template; i++) {
            if (tok->post.items[i] < 0) ok = tok_ids_append(&full, out.data, out.len);
            else ok = tok_ids_append(&full, tok->post.group_ids[i], tok->post.group_len[i]);
        }
        free(out.data);
        out = full;
    }
    tok_matcher_free(&st.matcher);
    tok_scratch_free(&st.bpe);
    free(st.spans.items);
    free(st.folded.items);
    tok_pieces_free(&st.pieces[0]);
    tok_pieces_free(&st.pieces[1]);
    tok_buf_free(&st.norm);
    if (!ok || out.len > INT32_MAX) {
        free(out.data);
        return -1;
    }
    *ids = out.data;
    return (int)out.len;
}
