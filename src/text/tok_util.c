// Tokenizer building blocks: buffers, hash maps, UTF-8 helpers, PCRE2 wrappers, byte-level alphabet.
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "common/util.h"
#include "text/tok_internal.h"

// ---- buffers ------------------------------------------------------------------------------------
bool tok_buf_reserve(tok_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        glint_set_error("tokenizer: out of memory (%zu bytes)", cap);
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

bool tok_buf_append(tok_buf *b, const void *bytes, size_t n) {
    if (!tok_buf_reserve(b, n)) return false;
    if (n) memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = 0;
    return true;
}

void tok_buf_free(tok_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

bool tok_ids_push(tok_ids *v, int32_t id) { return tok_ids_append(v, &id, 1); }

bool tok_ids_append(tok_ids *v, const int32_t *ids, size_t n) {
    if (v->len + n > v->cap) {
        size_t cap = v->cap ? v->cap : 64;
        while (cap < v->len + n) cap *= 2;
        int32_t *p = realloc(v->data, cap * sizeof *p);
        if (!p) {
            glint_set_error("tokenizer: out of memory (%zu ids)", cap);
            return false;
        }
        v->data = p;
        v->cap = cap;
    }
    if (n) memcpy(v->data + v->len, ids, n * sizeof *ids);
    v->len += n;
    return true;
}

bool tok_pieces_add(tok_pieces *p, const char *s, size_t n, uint8_t first) {
    if (p->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        size_t *off = realloc(p->off, cap * sizeof *off);
        if (off) p->off = off;
        size_t *len = realloc(p->len, cap * sizeof *len);
        if (len) p->len = len;
        uint8_t *fst = realloc(p->first, cap);
        if (fst) p->first = fst;
        if (!off || !len || !fst) {
            glint_set_error("tokenizer: out of memory (%zu pieces)", cap);
            return false;
        }
        p->cap = cap;
    }
    size_t at = p->text.len;
    if (!tok_buf_append(&p->text, s, n)) return false;
    p->off[p->count] = at;
    p->len[p->count] = n;
    p->first[p->count] = first;
    p->count++;
    return true;
}

void tok_pieces_clear(tok_pieces *p) {
    p->count = 0;
    p->text.len = 0;
}

void tok_pieces_free(tok_pieces *p) {
    tok_buf_free(&p->text);
    free(p->off);
    free(p->len);
    free(p->first);
    memset(p, 0, sizeof *p);
}

// ---- hashing ---------------------------------------------------------------------------------------
// 64-bit FNV-1a over 8-byte words then a final mix: fast for short keys, never returns 0.
uint64_t tok_hash_bytes(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ (n * 0x9E3779B97F4A7C15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    if (n) memcpy(&w, p, n);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 32;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

static size_t table_size_for(size_t expected) {
    size_t size = 16;
    while (size < expected * 2) size *= 2;
    return size;
}

bool tok_strmap_init(tok_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t size = table_size_for(expected);
    m->slots = calloc(size, sizeof *m->slots);
    if (!m->slots) {
        glint_set_error("tokenizer: out of memory (hash table of %zu)", size);
        return false;
    }
    m->mask = size - 1;
    return true;
}

static bool strmap_grow(tok_strmap *m) {
    size_t size = 2 * (m->mask + 1);
    tok_strmap_slot *slots = calloc(size, sizeof *slots);
    if (!slots) {
        glint_set_error("tokenizer: out of memory (hash table of %zu)", size);
        return false;
    }
    for (size_t i = 0; i <= m->mask; i++) {
        if (!m->slots[i].hash) continue;
        size_t j = (size_t)m->slots[i].hash & (size - 1);
        while (slots[j].hash) j = (j + 1) & (size - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->mask = size - 1;
    return true;
}

bool tok_strmap_put(tok_strmap *m, const char *key, size_t n, int32_t value) {
    if ((m->count + 1) * 2 > m->mask + 1 && !strmap_grow(m)) return false;
    uint64_t h = tok_hash_bytes(key, n);
    size_t i = (size_t)h & m->mask;
    while (m->slots[i].hash) {
        tok_strmap_slot *s = &m->slots[i];
        if (s->hash == h && s->key_len == n && memcmp(m->keys.data + s->key_off, key, n) == 0) {
            s->value = value;
            return true;
        }
        i = (i + 1) & m->mask;
    }
    if (m->keys.len + n + 1 > UINT32_MAX) {
        glint_set_error("tokenizer: vocabulary text larger than 4 GiB");
        return false;
    }
    uint32_t off = (uint32_t)m->keys.len;
    // Each key is stored NUL-terminated so callers can hand it out as a C string.
    if (!tok_buf_append(&m->keys, key, n) || !tok_buf_push(&m->keys, 0)) return false;
    m->slots[i] = (tok_strmap_slot){h, off, (uint32_t)n, value};
    m->count++;
    return true;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t n) {
    if (!m->slots) return -1;
    uint64_t h = tok_hash_bytes(key, n);
    size_t i = (size_t)h & m->mask;
    while (m->slots[i].hash) {
        const tok_strmap_slot *s = &m->slots[i];
        if (s->hash == h && s->key_len == n && memcmp(m->keys.data + s->key_off, key, n) == 0) return s->value;
        i = (i + 1) & m->mask;
    }
    return -1;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    tok_buf_free(&m->keys);
    memset(m, 0, sizeof *m);
}

bool tok_pairmap_init(tok_pairmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t size = table_size_for(expected);
    m->slots = malloc(size * sizeof *m->slots);
    if (!m->slots) {
        glint_set_error("tokenizer: out of memory (pair table of %zu)", size);
        return false;
    }
    for (size_t i = 0; i < size; i++) m->slots[i].key = UINT64_MAX;
    m->mask = size - 1;
    return true;
}

bool tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    if ((m->count + 1) * 2 > m->mask + 1) {
        tok_pairmap bigger;
        if (!tok_pairmap_init(&bigger, m->mask + 1)) return false;
        for (size_t i = 0; i <= m->mask; i++) {
            if (m->slots[i].key == UINT64_MAX) continue;
            size_t j = (size_t)tok_pair_hash(m->slots[i].key) & bigger.mask;
            while (bigger.slots[j].key != UINT64_MAX) j = (j + 1) & bigger.mask;
            bigger.slots[j] = m->slots[i];
        }
        bigger.count = m->count;
        tok_pairmap_free(m);
        *m = bigger;
    }
    uint64_t key = tok_pair_key(a, b);
    size_t i = (size_t)tok_pair_hash(key) & m->mask;
    while (m->slots[i].key != UINT64_MAX) {
        if (m->slots[i].key == key) return true;  // the first (lowest-rank) entry wins
        i = (i + 1) & m->mask;
    }
    m->slots[i] = (tok_pairmap_slot){key, rank, merged};
    m->count++;
    return true;
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

// ---- UTF-8 -----------------------------------------------------------------------------------------
// Length of the valid sequence starting at s (1..4), or 0 if invalid; *maximal gets the length of
// the maximal subpart of an ill-formed sequence (what one U+FFFD replaces, per Unicode §3.9).
static int utf8_sequence(const unsigned char *s, size_t n, int *maximal) {
    unsigned char c = s[0];
    *maximal = 1;
    if (c < 0x80) return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    else return 0;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n) return 0;  // truncated: the maximal subpart is what we saw
        unsigned char cc = s[k];
        if (cc < lo || cc > hi) return 0;
        lo = 0x80, hi = 0xBF;
        *maximal = k + 1;
    }
    return need + 1;
}

size_t tok_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        // fast path: 8 ASCII bytes at a time
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, u + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int maximal;
        int k = utf8_sequence(u + i, n - i, &maximal);
        if (!k) return i;
        i += (size_t)k;
    }
    return n;
}

int tok_utf8_decode(const char *s, size_t n, int32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    int len = tok_utf8_len_from_lead(u[0]);
    if ((size_t)len > n) len = (int)n;
    int32_t c;
    switch (len) {
    case 1: c = u[0]; break;
    case 2: c = ((u[0] & 0x1F) << 6) | (u[1] & 0x3F); break;
    case 3: c = ((u[0] & 0x0F) << 12) | ((u[1] & 0x3F) << 6) | (u[2] & 0x3F); break;
    default: c = ((u[0] & 0x07) << 18) | ((u[1] & 0x3F) << 12) | ((u[2] & 0x3F) << 6) | (u[3] & 0x3F); break;
    }
    *cp = c;
    return len;
}

int tok_utf8_encode(int32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool tok_utf8_lossy_append(tok_buf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;  // [run, i) is valid text not yet copied
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int maximal;
        int k = utf8_sequence(u + i, n - i, &maximal);
        if (k) {
            i += (size_t)k;
            continue;
        }
        if (!tok_buf_append(out, s + run, i - run) || !tok_buf_append(out, "\xEF\xBF\xBD", 3)) return false;
        i += (size_t)maximal;
        run = i;
    }
    return tok_buf_append(out, s + run, n - run);
}

bool tok_is_whitespace(int32_t cp) {
    switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

bool tok_is_numeric(int32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    utf8proc_propval_t cat = utf8proc_category(cp);
    return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

// Rust regex \\w: Alphabetic, marks, decimal digits, connector punctuation, joiners (approximated
// by general categories: letters, marks, Nd, Nl, Pc).
bool tok_is_word_char(int32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return cp == 0x200C || cp == 0x200D;
    }
}

// ---- regex -----------------------------------------------------------------------------------------
bool tok_regex_compile(tok_regex *re, const char *pattern, size_t len, bool literal, const char *where) {
    int err;
    PCRE2_SIZE err_off;
    uint32_t flags = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);  // UCP is not allowed with LITERAL
    re->code = pcre2_compile((PCRE2_SPTR)pattern, len, flags, &err, &err_off, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        glint_set_error("%s: cannot compile regex at offset %zu: %s", where, (size_t)err_off, (char *)msg);
        return false;
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
    return true;
}

void tok_regex_free(tok_regex *re) {
    pcre2_code_free(re->code);
    re->code = NULL;
}

bool tok_matcher_init(tok_matcher *m) {
    memset(m, 0, sizeof *m);
    m->match_data = pcre2_match_data_create(1, NULL);
    if (!m->match_data) {
        glint_set_error("tokenizer: out of memory (regex match data)");
        return false;
    }
    return true;
}

void tok_matcher_free(tok_matcher *m) {
    pcre2_match_data_free(m->match_data);
    pcre2_match_context_free(m->match_context);
    pcre2_jit_stack_free(m->jit_stack);
    memset(m, 0, sizeof *m);
}

int tok_regex_next(const tok_regex *re, tok_matcher *m, const char *s, size_t n, size_t start, size_t *ms,
                   size_t *me) {
    for (;;) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, m->match_data, m->match_context);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !m->jit_stack) {
            // Long runs (e.g. megabytes of spaces) need more than the default 32 KiB JIT stack.
            m->jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
            m->match_context = pcre2_match_context_create(NULL);
            if (!m->jit_stack || !m->match_context) {
                glint_set_error("tokenizer: out of memory (regex stack)");
                return -1;
            }
            pcre2_jit_stack_assign(m->match_context, NULL, m->jit_stack);
            continue;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            glint_set_error("tokenizer: regex match failed: %s", (char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->match_data);
        *ms = ov[0];
        *me = ov[1];
        return 1;
    }
}

// ---- GPT-2 byte-level alphabet ---------------------------------------------------------------------
// Printable bytes map to themselves; the other 68 bytes map to U+0100.. in byte order.
const uint16_t tok_byte_to_char[256] = {
    256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271,
    272, 273, 274, 275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287,
    288, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
    48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 289,
    290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305,
    306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
    322, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 323, 174, 175,
    176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
    192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207,
    208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223,
    224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255,
};

int tok_char_to_byte(int32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return cp;
    // U+0100 + k is the k-th non-printable byte in increasing order: 0..32, 127..160, 173.
    int k = cp - 256;
    if (k < 0 || k > 67) return -1;
    if (k < 33) return k;
    if (k < 67) return 127 + (k - 33);
    return 173;
}
