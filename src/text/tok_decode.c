// Decoding ids to text through the decoder chain, and the streaming detokenizer.
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "text/tok_internal.h"

// Applies one decoder to the token list `in`, producing `out` (HF Decoder::decode_chain).
static bool decode_step(const tok_decoder *d, tok_matcher *m, tok_pieces *in, tok_pieces *out) {
    tok_pieces_clear(out);
    switch (d->kind) {
    case DEC_BYTELEVEL: {
        // Each token's characters map back to bytes; a token with a character outside the byte
        // alphabet contributes its UTF-8 as is. Invalid UTF-8 in the result becomes U+FFFD.
        tok_buf bytes = {0}, text = {0};
        bool ok = true;
        for (size_t i = 0; ok && i < in->count; i++) {
            const char *s = in->text.data + in->off[i];
            size_t n = in->len[i], start = bytes.len;
            bool mapped = true;
            for (size_t k = 0; k < n && ok;) {
                int32_t cp;
                k += (size_t)tok_utf8_decode(s + k, n - k, &cp);
                int b = tok_char_to_byte(cp);
                if (b < 0) {
                    mapped = false;
                    break;
                }
                ok = tok_buf_push(&bytes, (char)b);
            }
            if (ok && !mapped) {
                bytes.len = start;
                ok = tok_buf_append(&bytes, s, n);
            }
        }
        ok = ok && tok_buf_append(&text, "", 0) && tok_utf8_lossy_append(&text, bytes.data ? bytes.data : "", bytes.len) &&
             tok_pieces_add(out, text.data, text.len, 0);
        tok_buf_free(&bytes);
        tok_buf_free(&text);
        return ok;
    }
    case DEC_FUSE: {
        tok_buf all = {0};
        bool ok = tok_buf_append(&all, "", 0);
        for (size_t i = 0; ok && i < in->count; i++) ok = tok_buf_append(&all, in->text.data + in->off[i], in->len[i]);
        ok = ok && tok_pieces_add(out, all.data, all.len, 0);
        tok_buf_free(&all);
        return ok;
    }
    case DEC_REPLACE: {
        tok_buf t = {0};
        bool ok = true;
        for (size_t i = 0; ok && i < in->count; i++) {
            const char *s = in->text.data + in->off[i];
            size_t n = in->len[i], pos = 0, copied = 0;
            t.len = 0;
            ok = tok_buf_append(&t, "", 0);
            while (ok && pos <= n) {
                size_t ms, me;
                int r = tok_regex_next(&d->pattern, m, s, n, pos, &ms, &me);
                if (r <= 0) {
                    ok = r == 0;
                    break;
                }
                if (me == ms) {
                    pos = ms + (ms < n ? (size_t)tok_utf8_len_from_lead((unsigned char)s[ms]) : 1);
                    continue;
                }
                ok = tok_buf_append(&t, s + copied, ms - copied) && tok_buf_append(&t, d->content, d->content_len);
                copied = pos = me;
            }
            ok = ok && tok_buf_append(&t, s + copied, n - copied) && tok_pieces_add(out, t.data, t.len, 0);
        }
        tok_buf_free(&t);
        return ok;
    }
    case DEC_STRIP:
        for (size_t i = 0; i < in->count; i++) {
            const char *s = in->text.data + in->off[i];
            size_t n = in->len[i], start = 0, end = n;
            for (int k = 0; k < d->strip_start && start < end; k++) {
                int32_t cp;
                int len = tok_utf8_decode(s + start, end - start, &cp);
                if (cp != d->strip_char) break;
                start += (size_t)len;
            }
            for (int k = 0; k < d->strip_stop && end > start; k++) {
                size_t j = end - 1;
                while (j > start && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
                int32_t cp;
                tok_utf8_decode(s + j, end - j, &cp);
                if (cp != d->strip_char) break;
                end = j;
            }
            if (!tok_pieces_add(out, s + start, end - start, 0)) return false;
        }
        return true;
    case DEC_BYTEFALLBACK: {
        // Runs of <0xXX> tokens become their bytes when those form valid UTF-8, else one U+FFFD each.
        tok_buf run = {0};
        bool ok = true;
        for (size_t i = 0; ok && i <= in->count; i++) {
            const char *s = i < in->count ? in->text.data + in->off[i] : NULL;
            size_t n = i < in->count ? in->len[i] : 0;
            int byte = -1;
            if (s && n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
                char hex[3] = {s[3], s[4], 0};
                char *end;
                long v = strtol(hex, &end, 16);
                bool hex_ok = end == hex + 2 && ((hex[0] >= '0' && hex[0] <= '9') || (hex[0] >= 'A' && hex[0] <= 'F') ||
                                                 (hex[0] >= 'a' && hex[0] <= 'f'));
                if (hex_ok) byte = (int)v;
            }
            if (byte >= 0) {
                ok = tok_buf_push(&run, (char)byte);
                continue;
            }
            if (run.len) {
                if (tok_utf8_valid_prefix(run.data, run.len) == run.len) {
                    ok = tok_pieces_add(out, run.data, run.len, 0);
                } else {
                    for (size_t k = 0; ok && k < run.len; k++) ok = tok_pieces_add(out, "\xEF\xBF\xBD", 3, 0);
                }
                run.len = 0;
            }
            if (ok && s) ok = tok_pieces_add(out, s, n, 0);
        }
        tok_buf_free(&run);
        return ok;
    }
    case DEC_METASPACE: {
        tok_buf t = {0};
        bool ok = true;
        for (size_t i = 0; ok && i < in->count; i++) {
            const char *s = in->text.data + in->off[i];
            size_t n = in->len[i];
            t.len = 0;
            ok = tok_buf_append(&t, "", 0);
            for (size_t k = 0; ok && k < n;) {
                if (n - k >= d->replacement_len && !memcmp(s + k, d->replacement, d->replacement_len)) {
                    if (!(i == 0 && d->prepend_first)) ok = tok_buf_push(&t, ' ');
                    k += d->replacement_len;
                } else {
                    ok = tok_buf_push(&t, s[k++]);
                }
            }
            ok = ok && tok_pieces_add(out, t.data, t.len, 0);
        }
        tok_buf_free(&t);
        return ok;
    }
    }
    return false;
}

char *tok_decode_impl(const glint_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special, size_t *out_len) {
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_ids || !tok->id_text[ids[i]]) {
            glint_set_error("unknown token id %d (the vocabulary has ids 0..%d)", (int)ids[i], (int)tok->n_ids - 1);
            return NULL;
        }
    }
    tok_pieces a = {0}, b = {0};
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        if (skip_special && tok->id_special[ids[i]]) continue;
        ok = tok_pieces_add(&a, tok->id_text[ids[i]], tok->id_text_len[ids[i]], 0);
    }
    tok_matcher matcher = {0};
    if (ok && tok->has_decoder) {
        ok = tok_matcher_init(&matcher);
        for (size_t k = 0; ok && k < tok->n_decoders; k++) {
            ok = decode_step(&tok->decoders[k], &matcher, &a, &b);
            tok_pieces t = a;
            a = b;
            b = t;
        }
    }
    tok_buf result = {0};
    ok = ok && tok_buf_append(&result, "", 0);
    for (size_t i = 0; ok && i < a.count; i++) {
        if (!tok->has_decoder && i > 0) ok = tok_buf_push(&result, ' ');  // no decoder: tokens joined by spaces
        ok = ok && tok_buf_append(&result, a.text.data + a.off[i], a.len[i]);
    }
    tok_matcher_free(&matcher);
    tok_pieces_free(&a);
    tok_pieces_free(&b);
    if (!ok) {
        tok_buf_free(&result);
        return NULL;
    }
    if (out_len) *out_len = result.len;
    return result.data;
}

char *glint_tokenizer_decode(const glint_tokenizer *tok, const int32_t *ids, size_t n, int skip_special_tokens,
                             size_t *out_len) {
    return tok_decode_impl(tok, ids, n, skip_special_tokens != 0, out_len);
}

// ---- streaming -------------------------------------------------------------------------------------------
// HF DecodeStream: keep a window of ids whose decode starts with `prefix` (text already emitted
// from those ids); a new id is released once the window decodes to more text than the prefix
// and does not end in U+FFFD (an incomplete character).
struct glint_detok_stream {
    const glint_tokenizer *tok;
    bool skip_special;
    tok_ids ids;
    char *prefix;
    size_t prefix_len;
    size_t prefix_index;
};

glint_detok_stream *glint_detok_stream_new(const glint_tokenizer *tok, int skip_special_tokens) {
    glint_detok_stream *s = calloc(1, sizeof *s);
    if (!s) {
        glint_set_error("tokenizer: out of memory (stream)");
        return NULL;
    }
    s->tok = tok;
    s->skip_special = skip_special_tokens != 0;
    return s;
}

static bool ends_with_replacement(const char *s, size_t n) { return n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3); }

static char *empty_string(size_t *out_len) {
    char *e = calloc(1, 1);
    if (!e) glint_set_error("tokenizer: out of memory");
    if (out_len) *out_len = 0;
    return e;
}

char *glint_detok_stream_push(glint_detok_stream *s, int32_t id, size_t *out_len) {
    const glint_tokenizer *tok = s->tok;
    if (id < 0 || id >= tok->n_ids || !tok->id_text[id]) {
        glint_set_error("unknown token id %d (the vocabulary has ids 0..%d)", (int)id, (int)tok->n_ids - 1);
        return NULL;
    }
    if (s->prefix_len == 0 && s->ids.len) {
        size_t n;
        char *p = tok_decode_impl(tok, s->ids.data, s->ids.len, s->skip_special, &n);
        if (!p) return NULL;
        if (!ends_with_replacement(p, n)) {
            free(s->prefix);
            s->prefix = p;
            s->prefix_len = n;
            s->prefix_index = s->ids.len;
        } else {
            free(p);
        }
    }
    if (!tok_ids_push(&s->ids, id)) return NULL;
    size_t n;
    char *full = tok_decode_impl(tok, s->ids.data, s->ids.len, s->skip_special, &n);
    if (!full) return NULL;
    if (n <= s->prefix_len || ends_with_replacement(full, n)) {
        free(full);
        return empty_string(out_len);
    }
    if (s->prefix_len && memcmp(full, s->prefix, s->prefix_len) != 0) {
        glint_set_error("streaming decode: token %d changed text that was already emitted", (int)id);
        free(full);
        return NULL;
    }
    size_t new_len = n - s->prefix_len;
    memmove(full, full + s->prefix_len, new_len);
    full[new_len] = 0;
    // Keep only the ids from the old prefix start: they give the next window its left context.
    size_t new_prefix_index = s->ids.len - s->prefix_index;
    memmove(s->ids.data, s->ids.data + s->prefix_index, new_prefix_index * sizeof(int32_t));
    s->ids.len = new_prefix_index;
    free(s->prefix);
    s->prefix = tok_decode_impl(tok, s->ids.data, s->ids.len, s->skip_special, &s->prefix_len);
    s->prefix_index = new_prefix_index;
    if (!s->prefix) {
        free(full);
        return NULL;
    }
    if (out_len) *out_len = new_len;
    return full;
}

char *glint_detok_stream_flush(glint_detok_stream *s, size_t *out_len) {
    if (!s->ids.len) return empty_string(out_len);
    size_t n;
    char *full = tok_decode_impl(s->tok, s->ids.data, s->ids.len, s->skip_special, &n);
    if (!full) return NULL;
    size_t keep = s->prefix_len <= n && !memcmp(full, s->prefix ? s->prefix : "", s->prefix_len) ? s->prefix_len : 0;
    if (n <= keep) {
        free(full);
        s->ids.len = 0;
        return empty_string(out_len);
    }
    memmove(full, full + keep, n - keep);
    full[n - keep] = 0;
    if (out_len) *out_len = n - keep;
    // Everything has been emitted: the window restarts empty.
    s->ids.len = 0;
    free(s->prefix);
    s->prefix = NULL;
    s->prefix_len = 0;
    s->prefix_index = 0;
    return full;
}

void glint_detok_stream_free(glint_detok_stream *s) {
    if (!s) return;
    free(s->ids.data);
    free(s->prefix);
    free(s);
}
