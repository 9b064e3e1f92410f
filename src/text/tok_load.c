// Loading tokenizer.json / tokenizer_config.json into a glint_tokenizer, and the small accessors.
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "text/tok_internal.h"

// GPT-2's pre-tokenizer regex, used by ByteLevel(use_regex=true).
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    const char *path;  // for messages
} load_ctx;

// Ids index dense tables; real vocabularies stay far below this.
enum { MAX_TOKEN_ID = 1 << 26 };

static json_t *load_json_file(const char *path) {
    // Parsing from memory is several times faster than jansson's FILE* reader.
    size_t len;
    char *text = glint_check_regular_file(path) ? NULL : glint_read_text_file(path, &len);
    if (!text) return NULL;
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &err);  // vocabularies may hold "\u0000"
    free(text);
    if (!root) {
        glint_set_error("%s:%d:%d: malformed JSON: %s", path, err.line, err.column, err.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        glint_set_error("%s: expected a JSON object at the top level", path);
        json_decref(root);
        return NULL;
    }
    return root;
}

static bool get_bool(json_t *obj, const char *key, bool fallback) {
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : fallback;
}

static char *dup_bytes(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) {
        glint_set_error("tokenizer: out of memory");
        return NULL;
    }
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

// Reads {"String": s} or {"Regex": r} into a compiled regex (strings match literally).
static bool load_pattern(const load_ctx *ctx, json_t *pattern, tok_regex *out, const char *where) {
    json_t *s = json_object_get(pattern, "String");
    json_t *r = json_object_get(pattern, "Regex");
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s pattern", ctx->path, where);
    if (json_is_string(s)) return tok_regex_compile(out, json_string_value(s), json_string_length(s), true, msg);
    if (json_is_string(r)) return tok_regex_compile(out, json_string_value(r), json_string_length(r), false, msg);
    glint_set_error("%s: %s: pattern must be {\"String\": ...} or {\"Regex\": ...}", ctx->path, where);
    return false;
}

// ---- normalizers -------------------------------------------------------------------------------------
void tok_normalizer_free(tok_normalizer *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n_children; i++) tok_normalizer_free(&n->children[i]);
    free(n->children);
    tok_regex_free(&n->pattern);
    free(n->content);
}

static bool load_normalizer(const load_ctx *ctx, json_t *j, tok_normalizer *n) {
    memset(n, 0, sizeof *n);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) {
        glint_set_error("%s: normalizer without a \"type\"", ctx->path);
        return false;
    }
    if (!strcmp(type, "NFC")) n->kind = NORM_NFC;
    else if (!strcmp(type, "NFD")) n->kind = NORM_NFD;
    else if (!strcmp(type, "NFKC")) n->kind = NORM_NFKC;
    else if (!strcmp(type, "NFKD")) n->kind = NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) n->kind = NORM_LOWERCASE;
    else if (!strcmp(type, "Strip")) {
        n->kind = NORM_STRIP;
        n->strip_left = get_bool(j, "strip_left", true);
        n->strip_right = get_bool(j, "strip_right", true);
    } else if (!strcmp(type, "Replace") || !strcmp(type, "Prepend")) {
        bool replace = type[0] == 'R';
        n->kind = replace ? NORM_REPLACE : NORM_PREPEND;
        json_t *content = json_object_get(j, replace ? "content" : "prepend");
        if (!json_is_string(content)) {
            glint_set_error("%s: normalizer %s needs a string \"%s\"", ctx->path, type, replace ? "content" : "prepend");
            return false;
        }
        n->content_len = json_string_length(content);
        if (!(n->content = dup_bytes(json_string_value(content), n->content_len))) return false;
        if (replace && !load_pattern(ctx, json_object_get(j, "pattern"), &n->pattern, "normalizer Replace"))
            return false;
    } else if (!strcmp(type, "Sequence")) {
        n->kind = NORM_SEQUENCE;
        json_t *list = json_object_get(j, "normalizers");
        if (!json_is_array(list)) {
            glint_set_error("%s: normalizer Sequence needs a \"normalizers\" array", ctx->path);
            return false;
        }
        n->children = calloc(json_array_size(list) + 1, sizeof *n->children);
        if (!n->children) return false;
        for (size_t i = 0; i < json_array_size(list); i++) {
            n->n_children++;
            if (!load_normalizer(ctx, json_array_get(list, i), &n->children[i])) return false;
        }
    } else {
        glint_set_error("%s: unsupported normalizer type \"%s\"", ctx->path, type);
        return false;
    }
    return true;
}

// ---- pre-tokenizers -----------------------------------------------------------------------------------
static bool add_pretok(glint_tokenizer *tok, tok_pretokenizer **out) {
    tok_pretokenizer *p = realloc(tok->pretok, (tok->n_pretok + 1) * sizeof *p);
    if (!p) return false;
    tok->pretok = p;
    *out = &p[tok->n_pretok++];
    memset(*out, 0, sizeof **out);
    return true;
}

static bool load_prepend_scheme(const load_ctx *ctx, json_t *j, tok_prepend_scheme *scheme) {
    const char *s = json_string_value(json_object_get(j, "prepend_scheme"));
    if (!s) {  // older files: add_prefix_space
        *scheme = get_bool(j, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;
        return true;
    }
    if (!strcmp(s, "always")) *scheme = PREPEND_ALWAYS;
    else if (!strcmp(s, "first")) *scheme = PREPEND_FIRST;
    else if (!strcmp(s, "never")) *scheme = PREPEND_NEVER;
    else {
        glint_set_error("%s: Metaspace prepend_scheme \"%s\" is not always/first/never", ctx->path, s);
        return false;
    }
    return true;
}

static bool load_replacement(const load_ctx *ctx, json_t *j, char out[5], size_t *len) {
    json_t *r = json_object_get(j, "replacement");
    const char *s = json_is_string(r) ? json_string_value(r) : "\xE2\x96\x81";
    size_t n = strlen(s);
    if (n == 0 || n > 4 || tok_utf8_len_from_lead((unsigned char)s[0]) != (int)n) {
        glint_set_error("%s: Metaspace replacement must be one character", ctx->path);
        return false;
    }
    memcpy(out, s, n);
    out[n] = 0;
    *len = n;
    return true;
}

static bool load_pretokenizer(const load_ctx *ctx, glint_tokenizer *tok, json_t *j) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) {
        glint_set_error("%s: pre_tokenizer without a \"type\"", ctx->path);
        return false;
    }
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(j, "pretokenizers");
        if (!json_is_array(list)) {
            glint_set_error("%s: pre_tokenizer Sequence needs a \"pretokenizers\" array", ctx->path);
            return false;
        }
        for (size_t i = 0; i < json_array_size(list); i++)
            if (!load_pretokenizer(ctx, tok, json_array_get(list, i))) return false;
        return true;
    }
    tok_pretokenizer *p;
    if (!add_pretok(tok, &p)) return false;
    if (!strcmp(type, "Split")) {
        p->kind = PRETOK_SPLIT;
        const char *b = json_string_value(json_object_get(j, "behavior"));
        if (!b) b = "Isolated";
        if (!strcasecmp(b, "Removed")) p->behavior = SPLIT_REMOVED;
        else if (!strcasecmp(b, "Isolated")) p->behavior = SPLIT_ISOLATED;
        else if (!strcasecmp(b, "MergedWithPrevious") || !strcasecmp(b, "merged_with_previous")) p->behavior = SPLIT_MERGED_PREV;
        else if (!strcasecmp(b, "MergedWithNext") || !strcasecmp(b, "merged_with_next")) p->behavior = SPLIT_MERGED_NEXT;
        else if (!strcasecmp(b, "Contiguous")) p->behavior = SPLIT_CONTIGUOUS;
        else {
            glint_set_error("%s: unknown Split behavior \"%s\"", ctx->path, b);
            return false;
        }
        p->invert = get_bool(j, "invert", false);
        return load_pattern(ctx, json_object_get(j, "pattern"), &p->pattern, "pre_tokenizer Split");
    }
    if (!strcmp(type, "ByteLevel")) {
        p->kind = PRETOK_BYTELEVEL;
        p->add_prefix_space = get_bool(j, "add_prefix_space", true);
        p->use_regex = get_bool(j, "use_regex", true);
        if (p->use_regex) {
            char where[256];
            snprintf(where, sizeof where, "%s: ByteLevel regex", ctx->path);
            return tok_regex_compile(&p->pattern, GPT2_REGEX, sizeof GPT2_REGEX - 1, false, where);
        }
        return true;
    }
    if (!strcmp(type, "Digits")) {
        p->kind = PRETOK_DIGITS;
        p->individual_digits = get_bool(j, "individual_digits", false);
        return true;
    }
    if (!strcmp(type, "Metaspace")) {
        p->kind = PRETOK_METASPACE;
        p->split = get_bool(j, "split", true);
        return load_replacement(ctx, j, p->replacement, &p->replacement_len) &&
               load_prepend_scheme(ctx, j, &p->prepend_scheme);
    }
    if (!strcmp(type, "Whitespace") || !strcmp(type, "WhitespaceSplit")) {
        // Whitespace keeps runs of \w and of other non-space characters; WhitespaceSplit drops spaces.
        bool plain = type[10] == 0;
        const char *re = plain ? "\\w+|[^\\w\\s]+" : "\\s+";
        p->kind = PRETOK_SPLIT;
        p->behavior = SPLIT_REMOVED;
        p->invert = plain;
        return tok_regex_compile(&p->pattern, re, strlen(re), false, ctx->path);
    }
    glint_set_error("%s: unsupported pre_tokenizer type \"%s\"", ctx->path, type);
    return false;
}

// ---- decoders ------------------------------------------------------------------------------------------
static bool load_decoder(const load_ctx *ctx, glint_tokenizer *tok, json_t *j) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) {
        glint_set_error("%s: decoder without a \"type\"", ctx->path);
        return false;
    }
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(j, "decoders");
        if (!json_is_array(list)) {
            glint_set_error("%s: decoder Sequence needs a \"decoders\" array", ctx->path);
            return false;
        }
        for (size_t i = 0; i < json_array_size(list); i++)
            if (!load_decoder(ctx, tok, json_array_get(list, i))) return false;
        return true;
    }
    tok_decoder *all = realloc(tok->decoders, (tok->n_decoders + 1) * sizeof *all);
    if (!all) return false;
    tok->decoders = all;
    tok_decoder *d = &all[tok->n_decoders++];
    memset(d, 0, sizeof *d);
    if (!strcmp(type, "ByteLevel")) d->kind = DEC_BYTELEVEL;
    else if (!strcmp(type, "Fuse")) d->kind = DEC_FUSE;
    else if (!strcmp(type, "ByteFallback")) d->kind = DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Replace")) {
        d->kind = DEC_REPLACE;
        json_t *content = json_object_get(j, "content");
        if (!json_is_string(content)) {
            glint_set_error("%s: decoder Replace needs a string \"content\"", ctx->path);
            return false;
        }
        d->content_len = json_string_length(content);
        if (!(d->content = dup_bytes(json_string_value(content), d->content_len))) return false;
        return load_pattern(ctx, json_object_get(j, "pattern"), &d->pattern, "decoder Replace");
    } else if (!strcmp(type, "Strip")) {
        d->kind = DEC_STRIP;
        const char *c = json_string_value(json_object_get(j, "content"));
        if (!c || !*c) {
            glint_set_error("%s: decoder Strip needs a one-character \"content\"", ctx->path);
            return false;
        }
        tok_utf8_decode(c, strlen(c), &d->strip_char);
        d->strip_start = (int)json_integer_value(json_object_get(j, "start"));
        d->strip_stop = (int)json_integer_value(json_object_get(j, "stop"));
    } else if (!strcmp(type, "Metaspace")) {
        d->kind = DEC_METASPACE;
        tok_prepend_scheme scheme;
        if (!load_replacement(ctx, j, d->replacement, &d->replacement_len) || !load_prepend_scheme(ctx, j, &scheme))
            return false;
        d->prepend_first = scheme != PREPEND_NEVER;
    } else {
        glint_set_error("%s: unsupported decoder type \"%s\"", ctx->path, type);
        return false;
    }
    return true;
}

// ---- model -----------------------------------------------------------------------------------------------
// Resolves one merge ("a b" or ["a", "b"]) to (left id, right id, merged id). On failure returns
// false with out[0] = -2 for a malformed entry, else the ids found so far (-1 = missing); `joined`
// then holds the merged text.
static bool resolve_merge(const glint_tokenizer *tok, json_t *m, tok_buf *joined, int32_t out[3]) {
    const char *a, *b;
    size_t a_len, b_len;
    joined->len = 0;
    out[0] = out[1] = out[2] = -1;
    if (json_is_string(m)) {
        a = json_string_value(m);
        size_t len = json_string_length(m);
        const char *space = memchr(a, ' ', len);
        if (!space) {
            out[0] = -2;
            tok_buf_append(joined, a, len);
            return false;
        }
        a_len = (size_t)(space - a);
        b = space + 1;
        b_len = len - a_len - 1;
    } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
               json_is_string(json_array_get(m, 1))) {
        a = json_string_value(json_array_get(m, 0));
        a_len = json_string_length(json_array_get(m, 0));
        b = json_string_value(json_array_get(m, 1));
        b_len = json_string_length(json_array_get(m, 1));
    } else {
        out[0] = -2;
        return false;
    }
    // The merged token drops the right part's continuing-subword prefix ("##").
    size_t skip = 0;
    if (tok->subword_prefix && b_len >= tok->subword_prefix_len && !memcmp(b, tok->subword_prefix, tok->subword_prefix_len))
        skip = tok->subword_prefix_len;
    if (!tok_buf_append(joined, a, a_len) || !tok_buf_append(joined, b + skip, b_len - skip)) return false;
    out[0] = tok_strmap_get(&tok->vocab, a, a_len);
    out[1] = tok_strmap_get(&tok->vocab, b, b_len);
    out[2] = tok_strmap_get(&tok->vocab, joined->data, joined->len);
    return out[0] >= 0 && out[1] >= 0 && out[2] >= 0;
}

static bool load_model(const load_ctx *ctx, glint_tokenizer *tok, json_t *model) {
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE") != 0) {
        glint_set_error("%s: model type \"%s\" is not supported (only BPE)", ctx->path, type);
        return false;
    }
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) {
        glint_set_error("%s: model.vocab must be an object", ctx->path);
        return false;
    }
    if (merges && !json_is_array(merges)) {
        glint_set_error("%s: model.merges must be an array", ctx->path);
        return false;
    }
    json_t *dropout = json_object_get(model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0) {
        glint_set_error("%s: BPE dropout is not supported (it makes encoding random)", ctx->path);
        return false;
    }
    tok->ignore_merges = get_bool(model, "ignore_merges", false);
    tok->byte_fallback = get_bool(model, "byte_fallback", false);
    tok->fuse_unk = get_bool(model, "fuse_unk", false);
    const char *prefix = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *suffix = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if (prefix && *prefix) {
        tok->subword_prefix_len = strlen(prefix);
        if (!(tok->subword_prefix = dup_bytes(prefix, tok->subword_prefix_len))) return false;
    }
    if (suffix && *suffix) {
        tok->word_suffix_len = strlen(suffix);
        if (!(tok->word_suffix = dup_bytes(suffix, tok->word_suffix_len))) return false;
    }

    if (!tok_strmap_init(&tok->vocab, json_object_size(vocab))) return false;
    int32_t max_id = -1;
    for (void *it = json_object_iter(vocab); it; it = json_object_iter_next(vocab, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);  // keys may contain NUL
        json_t *value = json_object_iter_value(it);
        json_int_t id = json_integer_value(value);
        if (!json_is_integer(value) || id < 0 || id >= MAX_TOKEN_ID) {
            glint_set_error("%s: model.vocab[\"%s\"] must be an integer id in 0..%d", ctx->path, key, MAX_TOKEN_ID - 1);
            return false;
        }
        if (!tok_strmap_put(&tok->vocab, key, key_len, (int32_t)id)) return false;
        if (id > max_id) max_id = (int32_t)id;
    }
    tok->n_ids = max_id + 1;

    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    tok->unk_id = -1;
    if (unk) {
        tok->unk_id = tok_strmap_get(&tok->vocab, unk, strlen(unk));
        if (tok->unk_id < 0) {
            glint_set_error("%s: model.unk_token \"%s\" is not in the vocabulary", ctx->path, unk);
            return false;
        }
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_fallback_ids[b] = tok_strmap_get(&tok->vocab, name, 6);
    }

    size_t n_merges = merges ? json_array_size(merges) : 0;
    if (!tok_pairmap_init(&tok->merges, n_merges)) return false;
    // Resolving merges to ids is read-only work on the vocabulary, so it runs on all cores; the
    // inserts (in rank order) stay sequential.
    int32_t *resolved = malloc((n_merges + 1) * 3 * sizeof *resolved);
    if (!resolved) {
        glint_set_error("tokenizer: out of memory (%zu merges)", n_merges);
        return false;
    }
    long first_bad = -1;
#pragma omp parallel
    {
        tok_buf joined = {0};
        long my_bad = -1;
#pragma omp for schedule(static)
        for (long i = 0; i < (long)n_merges; i++) {
            int32_t *r = &resolved[3 * i];
            if (!resolve_merge(tok, json_array_get(merges, (size_t)i), &joined, r) && my_bad < 0) my_bad = i;
        }
#pragma omp critical
        if (my_bad >= 0 && (first_bad < 0 || my_bad < first_bad)) first_bad = my_bad;
        tok_buf_free(&joined);
    }
    if (first_bad >= 0) {
        tok_buf joined = {0};
        int32_t r[3];
        resolve_merge(tok, json_array_get(merges, (size_t)first_bad), &joined, r);  // again, for the message
        const char *what = r[0] == -2 ? "is not \"a b\" or [\"a\", \"b\"]"
                           : r[0] < 0  ? "has a left part that is not in the vocabulary"
                           : r[1] < 0  ? "has a right part that is not in the vocabulary"
                                       : "merges into a token that is not in the vocabulary";
        glint_set_error("%s: model.merges[%ld] %s%s%s", ctx->path, first_bad, what, joined.len ? ": " : "",
                        joined.len ? joined.data : "");
        tok_buf_free(&joined);
        free(resolved);
        return false;
    }
    for (size_t i = 0; i < n_merges; i++) {
        if (!tok_pairmap_put(&tok->merges, resolved[3 * i], resolved[3 * i + 1], (int32_t)i, resolved[3 * i + 2])) {
            free(resolved);
            return false;
        }
    }
    free(resolved);
    return true;
}

// ---- post-processor ---------------------------------------------------------------------------------------
static bool template_add_group(tok_template *t, const int32_t *ids, size_t n, int32_t *index) {
    int32_t **g = realloc(t->group_ids, (size_t)(t->n_template + 1) * sizeof *g);
    if (!g) return false;
    t->group_ids = g;
    size_t *gl = realloc(t->group_len, (size_t)(t->n_template + 1) * sizeof *gl);
    if (!gl) return false;
    t->group_len = gl;
    int32_t *items = realloc(t->items, (size_t)(t->n_template + 1) * sizeof *items);
    if (!items) return false;
    t->items = items;
    g[t->n_template] = NULL;
    if (n) {
        g[t->n_template] = malloc(n * sizeof(int32_t));
        if (!g[t->n_template]) return false;
        memcpy(g[t->n_template], ids, n * sizeof(int32_t));
    }
    gl[t->n_template] = n;
    items[t->n_template] = index ? *index : -1;
    t->n_template++;
    return true;
}

static bool load_post_processor(const load_ctx *ctx, glint_tokenizer *tok, json_t *j) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) {
        glint_set_error("%s: post_processor without a \"type\"", ctx->path);
        return false;
    }
    tok_template *t = &tok->post;
    if (!strcmp(type, "ByteLevel")) return true;  // only adjusts offsets
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(j, "processors");
        for (size_t i = 0; i < json_array_size(list); i++)
            if (!load_post_processor(ctx, tok, json_array_get(list, i))) return false;
        return true;
    }
    if (t->n_template) {
        glint_set_error("%s: more than one post-processor that adds tokens", ctx->path);
        return false;
    }
    int32_t group = 0;
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_object_get(j, "cls"), *sep = json_object_get(j, "sep");
        if (!json_is_array(cls) || !json_is_array(sep)) {
            glint_set_error("%s: %s needs \"cls\" and \"sep\"", ctx->path, type);
            return false;
        }
        int32_t cls_id = (int32_t)json_integer_value(json_array_get(cls, 1));
        int32_t sep_id = (int32_t)json_integer_value(json_array_get(sep, 1));
        int32_t g1 = 0, g2 = 1;
        return template_add_group(t, &cls_id, 1, &g1) && template_add_group(t, NULL, 0, NULL) &&
               template_add_group(t, &sep_id, 1, &g2);
    }
    if (strcmp(type, "TemplateProcessing") != 0) {
        glint_set_error("%s: unsupported post_processor type \"%s\"", ctx->path, type);
        return false;
    }
    json_t *single = json_object_get(j, "single");
    json_t *specials = json_object_get(j, "special_tokens");
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *item = json_array_get(single, i);
        json_t *special = json_object_get(item, "SpecialToken");
        if (json_object_get(item, "Sequence")) {
            if (!template_add_group(t, NULL, 0, NULL)) return false;
            continue;
        }
        const char *name = json_string_value(json_object_get(special, "id"));
        json_t *entry = name ? json_object_get(specials, name) : NULL;
        json_t *ids = json_object_get(entry, "ids");
        if (!json_is_array(ids)) {
            glint_set_error("%s: post_processor.single[%zu]: special token \"%s\" has no ids in special_tokens",
                            ctx->path, i, name ? name : "?");
            return false;
        }
        int32_t buf[64];
        size_t n = json_array_size(ids) < 64 ? json_array_size(ids) : 64;
        for (size_t k = 0; k < n; k++) buf[k] = (int32_t)json_integer_value(json_array_get(ids, k));
        if (!template_add_group(t, buf, n, &group)) return false;
        group++;
    }
    return true;
}

// ---- added tokens and tries -------------------------------------------------------------------------------
bool tok_trie_add(tok_trie *t, const char *s, size_t n, int32_t token_index) {
    if (!t->cap_nodes) {
        t->cap_nodes = 64;
        t->token_at = malloc(t->cap_nodes * sizeof *t->token_at);
        if (!t->token_at || !tok_pairmap_init(&t->edges, 64)) return false;
        t->token_at[0] = -1;
        t->n_nodes = 1;
    }
    if (n == 0) return true;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t rank, child;
        unsigned char c = (unsigned char)s[i];
        if (!tok_pairmap_get(&t->edges, node, c, &rank, &child)) {
            if (t->n_nodes == t->cap_nodes) {
                int32_t *p = realloc(t->token_at, 2 * t->cap_nodes * sizeof *p);
                if (!p) return false;
                t->token_at = p;
                t->cap_nodes *= 2;
            }
            child = (int32_t)t->n_nodes++;
            t->token_at[child] = -1;
            if (!tok_pairmap_put(&t->edges, node, c, 0, child)) return false;
        }
        node = child;
    }
    if (t->token_at[node] < 0) t->token_at[node] = token_index;  // the first token with this text wins
    t->first_byte[(unsigned char)s[0]] = 1;
    t->empty = false;
    return true;
}

void tok_trie_free(tok_trie *t) {
    tok_pairmap_free(&t->edges);
    free(t->token_at);
    memset(t, 0, sizeof *t);
}

static bool load_added_tokens(const load_ctx *ctx, glint_tokenizer *tok, json_t *list) {
    size_t n = json_array_size(list);
    tok->trie_raw.empty = tok->trie_normalized.empty = true;
    if (!tok_strmap_init(&tok->added_by_content, n + 1)) return false;
    if (!n) return true;
    tok->added = calloc(n, sizeof *tok->added);
    if (!tok->added) return false;
    tok_matcher matcher;
    if (!tok_matcher_init(&matcher)) return false;
    tok_buf normalized = {0};
    bool ok = true;
    // Like HF's AddedVocabulary::add_tokens, the ids in the file are not trusted: a token whose text
    // is already known keeps that id, a new one takes the next id after the model vocabulary.
    int32_t next_id = (int32_t)tok->vocab.count;
    for (size_t i = 0; i < n && ok; i++) {
        json_t *t = json_array_get(list, i);
        json_t *content = json_object_get(t, "content");
        if (!json_is_string(content)) {
            glint_set_error("%s: added_tokens[%zu] needs a string \"content\"", ctx->path, i);
            ok = false;
            break;
        }
        size_t len = json_string_length(content);
        if (len == 0) continue;
        const char *text = json_string_value(content);
        int32_t id = tok_strmap_get(&tok->added_by_content, text, len);
        tok_added_token *a = NULL;
        if (id >= 0) {  // same text again: HF updates the flags of the existing entry
            for (size_t k = 0; k < tok->n_added; k++)
                if (tok->added[k].id == id) a = &tok->added[k];
        }
        if (!a) {
            if (id < 0) id = tok_strmap_get(&tok->vocab, text, len);
            if (id < 0) id = next_id++;
            if (id >= MAX_TOKEN_ID) {
                glint_set_error("%s: added_tokens[%zu]: too many tokens", ctx->path, i);
                ok = false;
                break;
            }
            a = &tok->added[tok->n_added++];
            a->len = len;
            if (!(a->content = dup_bytes(text, len))) {
                ok = false;
                break;
            }
        }
        a->id = id;
        a->special = get_bool(t, "special", false);
        a->lstrip = get_bool(t, "lstrip", false);
        a->rstrip = get_bool(t, "rstrip", false);
        a->single_word = get_bool(t, "single_word", false);
        a->normalized = get_bool(t, "normalized", !a->special);
        if (a->id >= tok->n_ids) tok->n_ids = a->id + 1;
        ok = tok_strmap_put(&tok->added_by_content, a->content, a->len, a->id);
    }
    // Tries: normalized tokens are searched in normalized text, so their trie holds the normalized form.
    for (size_t i = 0; i < tok->n_added && ok; i++) {
        tok_added_token *a = &tok->added[i];
        if (a->normalized && tok->normalizer) {
            normalized.len = 0;
            ok = tok_buf_append(&normalized, "", 0) &&
                 tok_normalize(tok->normalizer, &matcher, a->content, a->len, &normalized) &&
                 tok_trie_add(&tok->trie_normalized, normalized.data, normalized.len, (int32_t)i);
            if (ok && (normalized.len != a->len || memcmp(normalized.data, a->content, a->len) != 0)) {
                // HF decodes such a token to its normalized text.
                a->decoded = dup_bytes(normalized.data, normalized.len);
                a->decoded_len = normalized.len;
                ok = a->decoded != NULL;
            }
        } else {
            ok = tok_trie_add(a->normalized ? &tok->trie_normalized : &tok->trie_raw, a->content, a->len, (int32_t)i);
        }
    }
    tok_buf_free(&normalized);
    tok_matcher_free(&matcher);
    return ok;
}

static bool read_config(glint_tokenizer *tok, json_t *config) {
    const char *keys[2] = {"bos_token", "eos_token"};
    char **dest[2] = {&tok->bos_token, &tok->eos_token};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(config, keys[k]);
        if (json_is_object(v)) v = json_object_get(v, "content");  // {"__type": "AddedToken", "content": ...}
        if (json_is_string(v) && !(*dest[k] = dup_bytes(json_string_value(v), json_string_length(v)))) return false;
    }
    return true;
}

static int compare_by_id(const void *a, const void *b) {
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "id"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "id"));
    return x < y ? -1 : x > y;
}

// tokenizer.json's added tokens, then (in id order) those of tokenizer_config.json's
// added_tokens_decoder that tokenizer.json lacks, with their flags — as transformers adds them.
static json_t *merge_config_added_tokens(json_t *added, json_t *config) {
    json_t *all = added ? json_copy(added) : json_array();
    json_t *decoder = json_object_get(config, "added_tokens_decoder");
    if (!all || !json_is_object(decoder) || !json_object_size(decoder)) return all;
    json_t **extra = calloc(json_object_size(decoder), sizeof *extra);
    size_t n_extra = 0;
    const char *key;
    json_t *entry;
    json_object_foreach(decoder, key, entry) {
        int64_t id;
        json_t *content = json_object_get(entry, "content");
        if (!extra || glint_parse_int64(key, &id) != 0 || !json_is_string(content)) continue;
        bool known = false;
        for (size_t i = 0; i < json_array_size(added) && !known; i++) {
            json_t *t = json_array_get(added, i);
            known = json_integer_value(json_object_get(t, "id")) == id || json_equal(json_object_get(t, "content"), content);
        }
        if (known) continue;
        json_t *t = json_deep_copy(entry);
        if (t) json_object_set_new(t, "id", json_integer(id));
        if (t) extra[n_extra++] = t;
    }
    qsort(extra, n_extra, sizeof *extra, compare_by_id);
    for (size_t i = 0; i < n_extra; i++) json_array_append_new(all, extra[i]);
    free(extra);
    return all;
}

static bool build_id_table(glint_tokenizer *tok) {
    tok->id_text = calloc((size_t)tok->n_ids + 1, sizeof *tok->id_text);
    tok->id_text_len = calloc((size_t)tok->n_ids + 1, sizeof *tok->id_text_len);
    tok->id_special = calloc((size_t)tok->n_ids + 1, 1);
    if (!tok->id_text || !tok->id_text_len || !tok->id_special) {
        glint_set_error("tokenizer: out of memory (id table)");
        return false;
    }
    const tok_strmap *v = &tok->vocab;
    for (size_t i = 0; i <= v->mask; i++) {
        const tok_strmap_slot *s = &v->slots[i];
        if (!s->hash) continue;
        tok->id_text[s->value] = v->keys.data + s->key_off;  // stable: the map is not modified after loading
        tok->id_text_len[s->value] = s->key_len;
    }
    for (size_t i = 0; i < tok->n_added; i++) {  // added tokens take precedence, as in HF decode
        tok_added_token *a = &tok->added[i];
        tok->id_text[a->id] = a->decoded ? a->decoded : a->content;
        tok->id_text_len[a->id] = (uint32_t)(a->decoded ? a->decoded_len : a->len);
        // HF skips a token when its decoded text is a special token's text.
        tok->id_special[a->id] = a->special && !a->decoded;
    }
    return true;
}

glint_tokenizer *glint_tokenizer_load(const char *tokenizer_json_path, const char *config_path) {
    json_t *root = load_json_file(tokenizer_json_path);
    if (!root) return NULL;
    load_ctx ctx = {tokenizer_json_path};
    glint_tokenizer *tok = calloc(1, sizeof *tok);
    bool ok = tok != NULL;
    if (ok) ok = load_model(&ctx, tok, json_object_get(root, "model"));
    json_t *norm = json_object_get(root, "normalizer");
    if (ok && json_is_object(norm)) {
        tok->normalizer = calloc(1, sizeof *tok->normalizer);
        ok = tok->normalizer && load_normalizer(&ctx, norm, tok->normalizer);
    }
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (ok && json_is_object(pre)) ok = load_pretokenizer(&ctx, tok, pre);
    json_t *dec = json_object_get(root, "decoder");
    if (ok && json_is_object(dec)) {
        tok->has_decoder = true;
        ok = load_decoder(&ctx, tok, dec);
    }
    json_t *post = json_object_get(root, "post_processor");
    if (ok && json_is_object(post)) ok = load_post_processor(&ctx, tok, post);
    json_t *config = NULL;
    if (ok && config_path) ok = (config = load_json_file(config_path)) != NULL && read_config(tok, config);
    json_t *added = json_object_get(root, "added_tokens");
    json_t *all_added = NULL;
    if (ok) ok = (all_added = merge_config_added_tokens(json_is_array(added) ? added : NULL, config)) != NULL;
    if (ok) ok = load_added_tokens(&ctx, tok, all_added);
    json_decref(all_added);
    json_decref(config);
    json_decref(root);
    if (ok) ok = build_id_table(tok);
    if (ok) {
        // When the last pre-tokenizer is ByteLevel, BPE runs on raw bytes (each byte stands for its
        // mapped character); otherwise on the characters of the piece.
        tok->bpe_on_bytes = tok->n_pretok && tok->pretok[tok->n_pretok - 1].kind == PRETOK_BYTELEVEL;
        for (int b = 0; b < 256; b++) {
            char mapped[4];
            int n = tok_utf8_encode(tok_byte_to_char[b], mapped);
            tok->byte_token_id[b] = tok_strmap_get(&tok->vocab, mapped, (size_t)n);
        }
        tok->cache = tok_cache_new();
        ok = tok->cache != NULL;
    }
    if (!ok) {
        glint_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

glint_tokenizer *glint_tokenizer_load_dir(const char *model_dir) {
    char *json_path = glint_path_join(model_dir, "tokenizer.json");
    char *config_path = glint_path_join(model_dir, "tokenizer_config.json");
    glint_tokenizer *tok = NULL;
    if (json_path && config_path)
        tok = glint_tokenizer_load(json_path, file_exists(config_path) ? config_path : NULL);
    free(json_path);
    free(config_path);
    return tok;
}

void glint_tokenizer_free(glint_tokenizer *tok) {
    if (!tok) return;
    tok_strmap_free(&tok->vocab);
    tok_pairmap_free(&tok->merges);
    free(tok->subword_prefix);
    free(tok->word_suffix);
    if (tok->normalizer) {
        tok_normalizer_free(tok->normalizer);
        free(tok->normalizer);
    }
    for (size_t i = 0; i < tok->n_pretok; i++) tok_regex_free(&tok->pretok[i].pattern);
    free(tok->pretok);
    for (size_t i = 0; i < tok->n_decoders; i++) {
        tok_regex_free(&tok->decoders[i].pattern);
        free(tok->decoders[i].content);
    }
    free(tok->decoders);
    for (int32_t i = 0; i < tok->post.n_template; i++) free(tok->post.group_ids[i]);
    free(tok->post.group_ids);
    free(tok->post.group_len);
    free(tok->post.items);
    for (size_t i = 0; i < tok->n_added; i++) {
        free(tok->added[i].content);
        free(tok->added[i].decoded);
    }
    free(tok->added);
    tok_trie_free(&tok->trie_raw);
    tok_trie_free(&tok->trie_normalized);
    tok_strmap_free(&tok->added_by_content);
    free(tok->id_text);
    free(tok->id_text_len);
    free(tok->id_special);
    free(tok->bos_token);
    free(tok->eos_token);
    tok_cache_free(tok->cache);
    free(tok);
}

// ---- accessors --------------------------------------------------------------------------------------------
int32_t glint_tokenizer_token_id(const glint_tokenizer *tok, const char *text) {
    size_t n = strlen(text);
    int32_t id = tok_strmap_get(&tok->added_by_content, text, n);
    return id >= 0 ? id : tok_strmap_get(&tok->vocab, text, n);
}

const char *glint_tokenizer_token_text(const glint_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= tok->n_ids) return NULL;
    return tok->id_text[id];
}

int glint_tokenizer_vocab_size(const glint_tokenizer *tok) { return tok->n_ids; }

int glint_tokenizer_is_special(const glint_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_ids && tok->id_special[id];
}

const char *glint_tokenizer_bos_token(const glint_tokenizer *tok) { return tok->bos_token; }
const char *glint_tokenizer_eos_token(const glint_tokenizer *tok) { return tok->eos_token; }
