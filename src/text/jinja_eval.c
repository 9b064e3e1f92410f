// Jinja evaluator: renders an AST with Python/jinja2 semantics (default Undefined, sandboxed
// immutable objects, per-iteration loop scopes, transformers' globals).
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "common/util.h"
#include "text/jinja_internal.h"

// ---------------------------------------------------------------- scopes and render state
typedef struct jscope {
    struct jscope *parent;
    struct jscope *next_deferred;
    char **names;
    jv *vals;
    size_t n, cap;
    bool captured;  // a macro closes over it: keep it until the render ends
} jscope;

typedef struct {
    const glint_template *t;
    strbuf *out;
    jscope *deferred;
    int depth;
    int macro_depth;
    bool failed;
    jv *namespaces;  // every namespace() made, emptied at the end so self-references cannot leak
    size_t n_namespaces, cap_namespaces;
} rctx;

enum { EXEC_OK = 0, EXEC_ERR, EXEC_BREAK, EXEC_CONTINUE };

static void rt_fail(rctx *rc, const jnode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void rt_fail(rctx *rc, const jnode *at, const char *fmt, ...) {
    if (rc->failed) return;
    rc->failed = true;
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    glint_set_error("%s:%d:%d: %s", rc->t->name, at ? at->line : 0, at ? at->col : 0, msg);
}

static jscope *scope_new(rctx *rc, jscope *parent, const jnode *at) {
    jscope *s = calloc(1, sizeof *s);
    if (!s) rt_fail(rc, at, "out of memory");
    else s->parent = parent;
    return s;
}

static void scope_clear(jscope *s) {
    for (size_t i = 0; i < s->n; i++) { free(s->names[i]); jv_decref(s->vals[i]); }
    free(s->names);
    free(s->vals);
}

static void scope_pop(rctx *rc, jscope *s) {
    if (!s) return;
    if (s->captured) {
        s->next_deferred = rc->deferred;
        rc->deferred = s;
        return;
    }
    scope_clear(s);
    free(s);
}

static void scope_capture(jscope *s) {
    for (; s && !s->captured; s = s->parent) s->captured = true;
}

// Takes ownership of v.
static bool scope_set(rctx *rc, jscope *s, const char *name, jv v, const jnode *at) {
    for (size_t i = 0; i < s->n; i++) {
        if (!strcmp(s->names[i], name)) {
            jv_decref(s->vals[i]);
            s->vals[i] = v;
            return true;
        }
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **nn = realloc(s->names, cap * sizeof *nn);
        if (nn) s->names = nn;
        jv *nv = nn ? realloc(s->vals, cap * sizeof *nv) : NULL;
        if (!nn || !nv) { jv_decref(v); rt_fail(rc, at, "out of memory"); return false; }
        s->vals = nv;
        s->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) { jv_decref(v); rt_fail(rc, at, "out of memory"); return false; }
    s->names[s->n] = copy;
    s->vals[s->n] = v;
    s->n++;
    return true;
}

static const jv *scope_lookup(const jscope *s, const char *name) {
    for (; s; s = s->parent)
        for (size_t i = 0; i < s->n; i++)
            if (!strcmp(s->names[i], name)) return &s->vals[i];
    return NULL;
}

static const char *const GLOBAL_FUNCS[] = {"range", "namespace", "dict", "raise_exception", "strftime_now", "lipsum", NULL};

// ---------------------------------------------------------------- call arguments
typedef struct {
    jv *pos;
    size_t npos;
    const char **kwn;
    jv *kwv;
    size_t nkw;
} callargs;

static const jv *arg_get(const callargs *a, size_t idx, const char *name) {
    if (idx < a->npos) return &a->pos[idx];
    for (size_t i = 0; name && i < a->nkw; i++)
        if (!strcmp(a->kwn[i], name)) return &a->kwv[i];
    return NULL;
}

static void args_free(callargs *a) {
    for (size_t i = 0; i < a->npos; i++) jv_decref(a->pos[i]);
    for (size_t i = 0; i < a->nkw; i++) jv_decref(a->kwv[i]);
    free(a->pos);
    free(a->kwv);
    memset(a, 0, sizeof *a);
}

static bool eval(rctx *rc, jscope *sc, const jnode *n, jv *out);
static int exec_node(rctx *rc, jscope *sc, const jnode *n);
static int exec_for_items(rctx *rc, jscope *sc, const jnode *n, jv iterable, int depth);

// Evaluates node's kids (positional) and kwnames/kwvals; skip_first prepends nothing.
static bool eval_args(rctx *rc, jscope *sc, const jnode *n, callargs *a) {
    memset(a, 0, sizeof *a);
    a->pos = calloc(n->nkids + 1, sizeof(jv));
    a->kwv = calloc(n->nkw + 1, sizeof(jv));
    if (!a->pos || !a->kwv) { args_free(a); rt_fail(rc, n, "out of memory"); return false; }
    for (size_t i = 0; i < n->nkids; i++) {
        if (!eval(rc, sc, n->kids[i], &a->pos[i])) { args_free(a); return false; }
        a->npos++;
    }
    a->kwn = n->kwnames;
    for (size_t i = 0; i < n->nkw; i++) {
        if (!eval(rc, sc, n->kwvals[i], &a->kwv[i])) { args_free(a); return false; }
        a->nkw++;
    }
    return true;
}

static int64_t as_int(jv v) { return v.kind == JV_BOOL ? v.u.b : v.u.i; }
static bool is_intlike(jv v) { return v.kind == JV_INT || v.kind == JV_BOOL; }

// ---------------------------------------------------------------- string helpers
static jv make_str(rctx *rc, const jnode *at, const char *s, size_t n) {
    jv v = jv_string_n(s, n);
    if (v.kind == JV_UNDEFINED) rt_fail(rc, at, "out of memory or string too large");
    return v;
}

static bool to_str_value(rctx *rc, const jnode *at, jv v, jv *out) {
    if (v.kind == JV_STRING) { *out = jv_incref(v); return true; }
    strbuf sb;
    sb_init(&sb);
    jv_to_str(&sb, v);
    *out = jv_string_take(&sb);
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory or string too large"); return false; }
    return true;
}

// Code points of a string, for indexing/slicing by character as Python does.
static size_t *char_offsets(const jv_string *s, size_t *count) {
    size_t n = utf8_count(s->data, s->len);
    size_t *off = malloc((n + 1) * sizeof *off);
    if (!off) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->len; i++)
        if (((unsigned char)s->data[i] & 0xc0) != 0x80) off[k++] = i;
    off[n] = s->len;
    *count = n;
    return off;
}

static bool in_charset(uint32_t cp, const jv_string *chars) {
    if (!chars) return py_isspace(cp);
    for (size_t i = 0; i < chars->len;) {
        uint32_t c;
        i += utf8_decode(chars->data, chars->len, i, &c);
        if (c == cp) return true;
    }
    return false;
}

// Python str.strip/lstrip/rstrip with optional chars.
static jv str_strip(rctx *rc, const jnode *at, const jv_string *s, const jv_string *chars, bool left, bool right) {
    size_t b = 0, e = s->len;
    if (left) {
        while (b < e) {
            uint32_t cp;
            size_t k = utf8_decode(s->data, s->len, b, &cp);
            if (!in_charset(cp, chars)) break;
            b += k;
        }
    }
    if (right) {
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)s->data[st] & 0xc0) == 0x80) st--;
            uint32_t cp;
            utf8_decode(s->data, e, st, &cp);
            if (!in_charset(cp, chars)) break;
            e = st;
        }
    }
    return make_str(rc, at, s->data + b, e - b);
}

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0) return h;
    if (nn > hn) return NULL;
    return memmem(h, hn, nd, nn);
}

// str.split / str.rsplit
static jv str_split(rctx *rc, const jnode *at, const jv_string *s, const jv_string *sep, int64_t maxsplit, bool from_right) {
    jv list = jv_list_new(0, false);
    if (list.kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return list; }
    if (sep && sep->len == 0) { jv_decref(list); rt_fail(rc, at, "ValueError: empty separator"); return jv_undefined(); }
    // collect [start,end) pieces; rsplit collects from the right then reverses
    size_t cap = 16, np = 0;
    size_t *pieces = malloc(cap * 2 * sizeof *pieces);
    if (!pieces) { jv_decref(list); rt_fail(rc, at, "out of memory"); return jv_undefined(); }
#define ADD_PIECE(b_, e_)                                                                   \
    do {                                                                                    \
        if (np == cap) {                                                                    \
            cap *= 2;                                                                       \
            size_t *np_ = realloc(pieces, cap * 2 * sizeof *pieces);                        \
            if (!np_) { free(pieces); jv_decref(list); rt_fail(rc, at, "out of memory"); return jv_undefined(); } \
            pieces = np_;                                                                   \
        }                                                                                   \
        pieces[2 * np] = (b_);                                                              \
        pieces[2 * np + 1] = (e_);                                                          \
        np++;                                                                               \
    } while (0)
    const char *d = s->data;
    size_t n = s->len;
    int64_t splits = 0;
    if (!sep) {
        if (!from_right) {
            size_t i = 0;
            for (;;) {
                // skip whitespace
                while (i < n) { uint32_t cp; size_t k = utf8_decode(d, n, i, &cp); if (!py_isspace(cp)) break; i += k; }
                if (i >= n) break;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    ADD_PIECE(i, n);  // Python keeps the remainder's trailing whitespace
                    break;
                }
                size_t b = i;
                while (i < n) { uint32_t cp; size_t k = utf8_decode(d, n, i, &cp); if (py_isspace(cp)) break; i += k; }
                ADD_PIECE(b, i);
                splits++;
            }
        } else {
            size_t e = n;
            for (;;) {
                while (e > 0) { size_t st = e - 1; while (st > 0 && ((unsigned char)d[st] & 0xc0) == 0x80) st--; uint32_t cp; utf8_decode(d, e, st, &cp); if (!py_isspace(cp)) break; e = st; }
                if (e == 0) break;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    ADD_PIECE(0, e);  // and rsplit keeps its leading whitespace
                    break;
                }
                size_t b = e;
                while (b > 0) { size_t st = b - 1; while (st > 0 && ((unsigned char)d[st] & 0xc0) == 0x80) st--; uint32_t cp; utf8_decode(d, b, st, &cp); if (py_isspace(cp)) break; b = st; }
                ADD_PIECE(b, e);
                e = b;
                splits++;
            }
        }
    } else if (!from_right) {
        size_t i = 0;
        for (;;) {
            const char *hit = (maxsplit < 0 || splits < maxsplit) ? find_bytes(d + i, n - i, sep->data, sep->len) : NULL;
            if (!hit) { ADD_PIECE(i, n); break; }
            size_t h = (size_t)(hit - d);
            ADD_PIECE(i, h);
            i = h + sep->len;
            splits++;
        }
    } else {
        size_t e = n;
        for (;;) {
            const char *hit = NULL;
            if (maxsplit < 0 || splits < maxsplit) {
                for (size_t k = e >= sep->len ? e - sep->len + 1 : 0; k-- > 0;)
                    if (memcmp(d + k, sep->data, sep->len) == 0) { hit = d + k; break; }
            }
            if (!hit) { ADD_PIECE(0, e); break; }
            size_t h = (size_t)(hit - d);
            ADD_PIECE(h + sep->len, e);
            e = h;
            splits++;
        }
    }
#undef ADD_PIECE
    for (size_t k = 0; k < np; k++) {
        size_t idx = from_right ? np - 1 - k : k;
        jv piece = make_str(rc, at, d + pieces[2 * idx], pieces[2 * idx + 1] - pieces[2 * idx]);
        if (piece.kind == JV_UNDEFINED || !jv_list_push(list, piece)) {
            free(pieces);
            jv_decref(list);
            rt_fail(rc, at, "out of memory");
            return jv_undefined();
        }
    }
    free(pieces);
    return list;
}

static jv str_replace(rctx *rc, const jnode *at, const jv_string *s, const jv_string *old, const jv_string *new_,
                      int64_t count) {
    strbuf sb;
    sb_init(&sb);
    if (old->len == 0) {
        // Python inserts new before every character and at the end
        int64_t done = 0;
        for (size_t i = 0; i <= s->len;) {
            if (count < 0 || done < count) { sb_append(&sb, new_->data, new_->len); done++; }
            if (i == s->len) break;
            uint32_t cp;
            size_t k = utf8_decode(s->data, s->len, i, &cp);
            sb_append(&sb, s->data + i, k);
            i += k;
        }
    } else {
        size_t i = 0;
        int64_t done = 0;
        while (i <= s->len) {
            const char *hit = (count < 0 || done < count) ? find_bytes(s->data + i, s->len - i, old->data, old->len) : NULL;
            if (!hit) { sb_append(&sb, s->data + i, s->len - i); break; }
            size_t h = (size_t)(hit - s->data);
            sb_append(&sb, s->data + i, h - i);
            sb_append(&sb, new_->data, new_->len);
            i = h + old->len;
            done++;
        }
    }
    jv v = jv_string_take(&sb);
    if (v.kind == JV_UNDEFINED) rt_fail(rc, at, "out of memory or string too large");
    return v;
}

typedef enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_TITLE, CASE_TITLE_FILTER } case_mode;

// Full-case mappings Python applies that a single code point cannot express.
static bool special_upper(uint32_t cp, bool title, strbuf *sb) {
    if (cp == 0xdf) { sb_puts(sb, title ? "Ss" : "SS"); return true; }
    return false;
}

static jv str_case(rctx *rc, const jnode *at, const jv_string *s, case_mode mode) {
    strbuf sb;
    sb_init(&sb);
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s->len;) {
        uint32_t cp;
        i += utf8_decode(s->data, s->len, i, &cp);
        uint32_t r = cp;
        bool to_title = false, to_upper = false;
        switch (mode) {
        case CASE_UPPER: to_upper = true; break;
        case CASE_LOWER: r = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp); break;
        case CASE_CAPITALIZE:
            if (first) to_title = true;
            else r = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
            break;
        case CASE_TITLE: {
            if (prev_cased) r = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
            else to_title = true;
            utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
            prev_cased = c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
            break;
        }
        case CASE_TITLE_FILTER: {
            // jinja2 do_title: pieces split on [-\s({\[<]+, each piece's first char upper, rest lower
            bool sep = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || py_isspace(cp);
            if (sep) r = cp;
            else if (!prev_cased) to_upper = true;
            else r = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
            prev_cased = !sep;
            break;
        }
        }
        first = false;
        if ((to_upper || to_title) && special_upper(cp, to_title, &sb)) continue;
        if (to_upper) r = (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp);
        if (to_title) r = (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp);
        char buf[4];
        sb_append(&sb, buf, utf8_encode(r, buf));
    }
    jv v = jv_string_take(&sb);
    if (v.kind == JV_UNDEFINED) rt_fail(rc, at, "out of memory or string too large");
    return v;
}

// Python int(str) / float(str): surrounding whitespace allowed, '_' between digits, no hex.
static bool py_parse_number(const char *s, bool want_int, double *f, int64_t *i) {
    while (*s && py_isspace((unsigned char)*s)) s++;
    char buf[128];
    size_t n = 0;
    const char *p = s;
    if (*p == '+' || *p == '-') buf[n++] = *p++;
    bool digits = false, dot = false, exp = false;
    for (; *p && !py_isspace((unsigned char)*p); p++) {
        char c = *p;
        if (n >= sizeof buf - 1) return false;
        if (c >= '0' && c <= '9') { digits = true; buf[n++] = c; }
        else if (c == '_' && digits && p[1] >= '0' && p[1] <= '9') continue;
        else if (!want_int && c == '.' && !dot && !exp) { dot = true; buf[n++] = c; }
        else if (!want_int && (c == 'e' || c == 'E') && digits && !exp) {
            exp = true;
            buf[n++] = c;
            if (p[1] == '+' || p[1] == '-') buf[n++] = *++p;
            digits = false;
        } else break;
    }
    buf[n] = 0;
    const char *rest = p;
    while (*rest && py_isspace((unsigned char)*rest)) rest++;
    if (*rest) {
        if (want_int) return false;
        // inf / nan spellings
        char word[16];
        size_t k = 0;
        const char *q = s;
        if (*q == '+' || *q == '-') q++;
        while (*q && !py_isspace((unsigned char)*q) && k < sizeof word - 1) word[k++] = (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q), q++;
        word[k] = 0;
        while (*q && py_isspace((unsigned char)*q)) q++;
        if (*q || (strcmp(word, "inf") && strcmp(word, "infinity") && strcmp(word, "nan"))) return false;
        *f = word[0] == 'n' ? NAN : (*s == '-' ? -INFINITY : INFINITY);
        return true;
    }
    if (!digits) return false;
    if (want_int) {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno) return false;
        *i = v;
    } else *f = strtod(buf, NULL);
    return true;
}

// printf-style "fmt % args" as Python's str.__mod__ for the common conversions.
static bool percent_format(rctx *rc, const jnode *at, const jv_string *fmt, jv args, jv *out) {
    const jv *items = &args;
    size_t nitems = 1, next = 0;
    if (args.kind == JV_LIST && jv_lst(args)->is_tuple) { items = jv_lst(args)->items; nitems = jv_lst(args)->len; }
    strbuf sb;
    sb_init(&sb);
    for (size_t i = 0; i < fmt->len; i++) {
        char c = fmt->data[i];
        if (c != '%') { sb_putc(&sb, c); continue; }
        size_t j = i + 1;
        char spec[32];
        size_t sn = 0;
        spec[sn++] = '%';
        while (j < fmt->len && strchr("-+ 0#", fmt->data[j]) && sn < 8) spec[sn++] = fmt->data[j++];
        while (j < fmt->len && fmt->data[j] >= '0' && fmt->data[j] <= '9' && sn < 16) spec[sn++] = fmt->data[j++];
        if (j < fmt->len && fmt->data[j] == '.') {
            spec[sn++] = fmt->data[j++];
            while (j < fmt->len && fmt->data[j] >= '0' && fmt->data[j] <= '9' && sn < 24) spec[sn++] = fmt->data[j++];
        }
        if (j >= fmt->len) { sb_free(&sb); rt_fail(rc, at, "ValueError: incomplete format"); return false; }
        char conv = fmt->data[j];
        i = j;
        if (conv == '%') { sb_putc(&sb, '%'); continue; }
        if (next >= nitems) { sb_free(&sb); rt_fail(rc, at, "TypeError: not enough arguments for format string"); return false; }
        jv v = items[next++];
        spec[sn] = 0;
        char buf[512];
        if (conv == 's' || conv == 'r') {
            strbuf tmp;
            sb_init(&tmp);
            if (conv == 's') jv_to_str(&tmp, v); else jv_repr(&tmp, v);
            spec[sn++] = 's';
            spec[sn] = 0;
            if (sn == 2) sb_append(&sb, tmp.data ? tmp.data : "", tmp.len);
            else { snprintf(buf, sizeof buf, spec, tmp.data ? tmp.data : ""); sb_puts(&sb, buf); }
            sb_free(&tmp);
        } else if (strchr("dixXo", conv)) {
            if (!jv_is_number(v)) { sb_free(&sb); rt_fail(rc, at, "TypeError: %%%c format: a real number is required, not %s", conv, jv_type_name(v)); return false; }
            if (v.kind == JV_FLOAT && !(fabs(v.u.f) < 9.2e18)) { sb_free(&sb); rt_fail(rc, at, "OverflowError: cannot format %g as an integer", v.u.f); return false; }
            long long x = v.kind == JV_FLOAT ? (long long)v.u.f : (long long)as_int(v);
            spec[sn++] = 'l'; spec[sn++] = 'l'; spec[sn++] = conv == 'i' ? 'd' : conv; spec[sn] = 0;
            snprintf(buf, sizeof buf, spec, x);
            sb_puts(&sb, buf);
        } else if (strchr("feEgG", conv)) {
            if (!jv_is_number(v)) { sb_free(&sb); rt_fail(rc, at, "TypeError: must be real number, not %s", jv_type_name(v)); return false; }
            spec[sn++] = conv; spec[sn] = 0;
            snprintf(buf, sizeof buf, spec, jv_as_double(v));
            sb_puts(&sb, buf);
        } else { sb_free(&sb); rt_fail(rc, at, "ValueError: unsupported format character '%c'", conv); return false; }
    }
    if (next < nitems && args.kind != JV_DICT && args.kind != JV_UNDEFINED) { sb_free(&sb); rt_fail(rc, at, "TypeError: not all arguments converted during string formatting"); return false; }
    *out = jv_string_take(&sb);
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory or string too large"); return false; }
    return true;
}

// ---------------------------------------------------------------- iteration
// Materializes what a for loop / filter iterates over. Owned list on success.
static bool iterate(rctx *rc, const jnode *at, jv v, jv *out) {
    switch (v.kind) {
    case JV_UNDEFINED: *out = jv_list_new(0, false); break;
    case JV_LIST: {
        jv_list *l = jv_lst(v);
        if (l->flavor == SEQ_PLAIN || l->flavor == SEQ_GROUP) { *out = jv_incref(v); return true; }
        bool exhausted = (l->flavor == SEQ_GENERATOR || l->flavor == SEQ_REVERSE_ITER) && l->consumed;
        if (l->flavor == SEQ_GENERATOR || l->flavor == SEQ_REVERSE_ITER) l->consumed = true;
        *out = jv_list_new(exhausted ? 0 : l->len, false);
        if (out->kind == JV_UNDEFINED) break;
        for (size_t i = 0; !exhausted && i < l->len; i++) jv_list_push(*out, jv_incref(l->items[i]));
        return true;
    }
    case JV_DICT: {
        jv_dict *d = jv_dct(v);
        *out = jv_list_new(d->len, false);
        if (out->kind == JV_UNDEFINED) break;
        for (size_t i = 0; i < d->len; i++) jv_list_push(*out, jv_incref(d->keys[i]));
        return true;
    }
    case JV_STRING: {
        jv_string *s = jv_str(v);
        *out = jv_list_new(0, false);
        if (out->kind == JV_UNDEFINED) break;
        for (size_t i = 0; i < s->len;) {
            uint32_t cp;
            size_t k = utf8_decode(s->data, s->len, i, &cp);
            jv ch = jv_string_n(s->data + i, k);
            if (ch.kind == JV_UNDEFINED || !jv_list_push(*out, ch)) { jv_decref(*out); rt_fail(rc, at, "out of memory"); return false; }
            i += k;
        }
        return true;
    }
    default: rt_fail(rc, at, "TypeError: '%s' object is not iterable", jv_type_name(v)); return false;
    }
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
    return true;
}

static jv flavored(jv list, seq_flavor flavor) {
    if (list.kind == JV_LIST) jv_lst(list)->flavor = flavor;
    return list;
}

static bool is_iterator(jv v) {
    return v.kind == JV_LIST && (jv_lst(v)->flavor == SEQ_GENERATOR || jv_lst(v)->flavor == SEQ_REVERSE_ITER);
}

// ---------------------------------------------------------------- attribute / item access
static const char *const STR_METHODS[] = {"strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith",
                                          "upper", "lower", "title", "capitalize", "replace", "find", "rfind",
                                          "count", "join", "isdigit", "isalpha", "isalnum", "isspace", "isupper",
                                          "islower", "splitlines", "format", "index", NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", NULL};
static const char *const LIST_METHODS[] = {"index", "count", NULL};

static const char *find_name(const char *const *list, const char *name) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], name)) return list[i];
    return NULL;
}

static bool make_method(rctx *rc, const jnode *at, const char *static_name, jv self, jv *out) {
    *out = jv_func_new(static_name, self);
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
    return true;
}

// obj.name: Python attribute first, then item (jinja2 Environment.getattr).
static bool get_attr(rctx *rc, const jnode *at, jv obj, const char *name, jv *out) {
    const char *m;
    *out = jv_undefined();
    switch (obj.kind) {
    case JV_UNDEFINED: rt_fail(rc, at, "UndefinedError: undefined value has no attribute '%s'", name); return false;
    case JV_DICT:
        if (jv_dct(obj)->is_loop && !strcmp(name, "cycle")) return make_method(rc, at, "cycle", obj, out);
        if ((m = find_name(DICT_METHODS, name))) return make_method(rc, at, m, obj, out);
        /* fallthrough */
    case JV_NAMESPACE: {
        const jv *v = jv_dict_get_c(obj, name);
        if (v) *out = jv_incref(*v);
        return true;
    }
    case JV_STRING:
        if ((m = find_name(STR_METHODS, name))) return make_method(rc, at, m, obj, out);
        return true;
    case JV_LIST:
        if (jv_lst(obj)->flavor == SEQ_GROUP && (!strcmp(name, "grouper") || !strcmp(name, "list"))) {
            *out = jv_incref(jv_lst(obj)->items[name[0] == 'g' ? 0 : 1]);
            return true;
        }
        if ((jv_lst(obj)->flavor == SEQ_PLAIN || jv_lst(obj)->flavor == SEQ_GROUP) && (m = find_name(LIST_METHODS, name)))
            return make_method(rc, at, m, obj, out);
        return true;
    default: return true;
    }
}

static bool index_of(jv key, size_t len, size_t *idx) {
    int64_t i;
    if (key.kind == JV_INT) i = key.u.i;
    else if (key.kind == JV_BOOL) i = key.u.b;
    else return false;
    if (i < 0) i += (int64_t)len;
    if (i < 0 || (uint64_t)i >= len) return false;
    *idx = (size_t)i;
    return true;
}

// obj[key]: item first, then attribute for string keys (jinja2 Environment.getitem).
static bool get_item(rctx *rc, const jnode *at, jv obj, jv key, jv *out) {
    *out = jv_undefined();
    size_t idx;
    switch (obj.kind) {
    case JV_UNDEFINED: rt_fail(rc, at, "UndefinedError: undefined value has no item"); return false;
    case JV_DICT:
    case JV_NAMESPACE: {
        if (key.kind == JV_LIST || key.kind == JV_DICT) {
            if (key.kind == JV_DICT || !jv_lst(key)->is_tuple) return true;  // unhashable -> TypeError -> undefined
        }
        const jv *v = jv_dict_get(obj, key);
        if (v) { *out = jv_incref(*v); return true; }
        break;
    }
    case JV_LIST:
        if (jv_lst(obj)->flavor != SEQ_PLAIN && jv_lst(obj)->flavor != SEQ_GROUP) break;  // not subscriptable -> undefined
        if (index_of(key, jv_lst(obj)->len, &idx)) { *out = jv_incref(jv_lst(obj)->items[idx]); return true; }
        break;
    case JV_STRING: {
        size_t count;
        if (key.kind != JV_INT && key.kind != JV_BOOL) break;
        size_t *off = char_offsets(jv_str(obj), &count);
        if (!off) { rt_fail(rc, at, "out of memory"); return false; }
        if (index_of(key, count, &idx)) *out = make_str(rc, at, jv_str(obj)->data + off[idx], off[idx + 1] - off[idx]);
        free(off);
        return !rc->failed;
    }
    default: break;
    }
    if (key.kind == JV_STRING && obj.kind != JV_NAMESPACE) return get_attr(rc, at, obj, jv_str(key)->data, out);
    return true;
}

static bool slice_bound(rctx *rc, const jnode *at, jv v, bool *given, int64_t *out) {
    *given = false;
    if (v.kind == JV_NONE || v.kind == JV_UNDEFINED) return true;
    if (v.kind == JV_INT) { *out = v.u.i; *given = true; return true; }
    if (v.kind == JV_BOOL) { *out = v.u.b; *given = true; return true; }
    rt_fail(rc, at, "TypeError: slice indices must be integers or None");
    return false;
}

// Python slice semantics over n elements; fills the selected indices.
static bool slice_indices(rctx *rc, const jnode *at, size_t n, jv start_v, jv stop_v, jv step_v, size_t **idx,
                          size_t *count) {
    bool has_start, has_stop, has_step;
    int64_t start = 0, stop = 0, step = 1;
    if (!slice_bound(rc, at, start_v, &has_start, &start) || !slice_bound(rc, at, stop_v, &has_stop, &stop) ||
        !slice_bound(rc, at, step_v, &has_step, &step))
        return false;
    if (!has_step) step = 1;
    if (step == 0) { rt_fail(rc, at, "ValueError: slice step cannot be zero"); return false; }
    int64_t len = (int64_t)n;
    if (step > 0) {
        if (!has_start) start = 0;
        else if (start < 0) { start += len; if (start < 0) start = 0; }
        else if (start > len) start = len;
        if (!has_stop) stop = len;
        else if (stop < 0) { stop += len; if (stop < 0) stop = 0; }
        else if (stop > len) stop = len;
    } else {
        if (!has_start) start = len - 1;
        else if (start < 0) { start += len; if (start < 0) start = -1; }
        else if (start >= len) start = len - 1;
        if (!has_stop) stop = -1;
        else if (stop < 0) { stop += len; if (stop < 0) stop = -1; }
        else if (stop >= len) stop = len - 1;
    }
    *idx = malloc((n + 1) * sizeof **idx);
    if (!*idx) { rt_fail(rc, at, "out of memory"); return false; }
    *count = 0;
    // i stays within [-1, len] so adding step can only overflow for absurd steps: stop there
    for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
        (*idx)[(*count)++] = (size_t)i;
        if (__builtin_add_overflow(i, step, &i)) break;
    }
    return true;
}

static bool do_slice(rctx *rc, const jnode *at, jv obj, jv b, jv c, jv d, jv *out) {
    *out = jv_undefined();
    if (obj.kind == JV_UNDEFINED) { rt_fail(rc, at, "UndefinedError: undefined value has no item"); return false; }
    size_t *idx = NULL, count = 0;
    if (obj.kind == JV_LIST && (jv_lst(obj)->flavor == SEQ_PLAIN || jv_lst(obj)->flavor == SEQ_GROUP)) {
        jv_list *l = jv_lst(obj);
        if (!slice_indices(rc, at, l->len, b, c, d, &idx, &count)) return false;
        *out = jv_list_new(count, l->is_tuple);
        if (out->kind != JV_UNDEFINED)
            for (size_t i = 0; i < count; i++) jv_list_push(*out, jv_incref(l->items[idx[i]]));
    } else if (obj.kind == JV_STRING) {
        size_t nchars;
        size_t *off = char_offsets(jv_str(obj), &nchars);
        if (!off) { rt_fail(rc, at, "out of memory"); return false; }
        if (!slice_indices(rc, at, nchars, b, c, d, &idx, &count)) { free(off); return false; }
        strbuf sb;
        sb_init(&sb);
        for (size_t i = 0; i < count; i++) sb_append(&sb, jv_str(obj)->data + off[idx[i]], off[idx[i] + 1] - off[idx[i]]);
        free(off);
        *out = jv_string_take(&sb);
    } else {
        if (obj.kind == JV_DICT || obj.kind == JV_NAMESPACE) rt_fail(rc, at, "TypeError: unhashable type: 'slice'");
        else rt_fail(rc, at, "TypeError: '%s' object is not subscriptable", jv_type_name(obj));
        return false;
    }
    free(idx);
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
    return true;
}

// ---------------------------------------------------------------- operators
static bool fail_undefined_op(rctx *rc, const jnode *at, jv a, jv b) {
    if (a.kind == JV_UNDEFINED || b.kind == JV_UNDEFINED) {
        rt_fail(rc, at, "UndefinedError: operation on an undefined value");
        return true;
    }
    return false;
}


static bool repeat_seq(rctx *rc, const jnode *at, jv seq, int64_t times, jv *out) {
    if (times < 0) times = 0;
    if (seq.kind == JV_STRING) {
        jv_string *s = jv_str(seq);
        if (s->len && (uint64_t)times > JINJA_MAX_OUTPUT / s->len) { rt_fail(rc, at, "string too large"); return false; }
        strbuf sb;
        sb_init(&sb);
        for (int64_t i = 0; i < times; i++) sb_append(&sb, s->data, s->len);
        *out = jv_string_take(&sb);
    } else {
        jv_list *l = jv_lst(seq);
        if (l->len && (uint64_t)times > (JINJA_MAX_OUTPUT / 16) / l->len) { rt_fail(rc, at, "list too large"); return false; }
        *out = jv_list_new(l->len * (size_t)times, l->is_tuple);
        if (out->kind != JV_UNDEFINED)
            for (int64_t i = 0; i < times; i++)
                for (size_t k = 0; k < l->len; k++) jv_list_push(*out, jv_incref(l->items[k]));
    }
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
    return true;
}

static double py_fmod(double a, double b) {
    double m = fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0))) m += b;
    return m;
}

static bool binop(rctx *rc, const jnode *at, int op, jv a, jv b, jv *out) {
    *out = jv_undefined();
    if (op == '~') {
        strbuf sb;
        sb_init(&sb);
        jv_to_str(&sb, a);
        jv_to_str(&sb, b);
        *out = jv_string_take(&sb);
        if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory or string too large"); return false; }
        return true;
    }
    // str % x treats anything with __getitem__ (Undefined included) as a mapping argument
    if (op == '%' && a.kind == JV_STRING && b.kind == JV_UNDEFINED) return percent_format(rc, at, jv_str(a), b, out);
    if (fail_undefined_op(rc, at, a, b)) return false;
    if ((a.kind == JV_LIST && jv_lst(a)->flavor != SEQ_PLAIN) || (b.kind == JV_LIST && jv_lst(b)->flavor != SEQ_PLAIN)) {
        if (!(op == '%' && a.kind == JV_STRING)) {
            rt_fail(rc, at, "TypeError: unsupported operand type(s) for %c: '%s' and '%s'", op, jv_type_name(a), jv_type_name(b));
            return false;
        }
    }
    bool num = jv_is_number(a) && jv_is_number(b);
    bool ints = is_intlike(a) && is_intlike(b);
    int64_t x = ints ? as_int(a) : 0, y = ints ? as_int(b) : 0, r;
    double fx = jv_as_double(a), fy = jv_as_double(b);
    switch (op) {
    case '+':
        if (ints) {
            if (__builtin_add_overflow(x, y, &r)) break;
            *out = jv_int(r);
            return true;
        }
        if (num) { *out = jv_float(fx + fy); return true; }
        if (a.kind == JV_STRING && b.kind == JV_STRING) {
            strbuf sb;
            sb_init(&sb);
            sb_append(&sb, jv_str(a)->data, jv_str(a)->len);
            sb_append(&sb, jv_str(b)->data, jv_str(b)->len);
            *out = jv_string_take(&sb);
            if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory or string too large"); return false; }
            return true;
        }
        if (a.kind == JV_LIST && b.kind == JV_LIST && jv_lst(a)->is_tuple == jv_lst(b)->is_tuple) {
            jv_list *la = jv_lst(a), *lb = jv_lst(b);
            *out = jv_list_new(la->len + lb->len, la->is_tuple);
            if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
            for (size_t i = 0; i < la->len; i++) jv_list_push(*out, jv_incref(la->items[i]));
            for (size_t i = 0; i < lb->len; i++) jv_list_push(*out, jv_incref(lb->items[i]));
            return true;
        }
        if (a.kind == JV_STRING) {
            rt_fail(rc, at, "TypeError: can only concatenate str (not \"%s\") to str", jv_type_name(b));
            return false;
        }
        if (a.kind == JV_LIST) {
            rt_fail(rc, at, "TypeError: can only concatenate %s (not \"%s\") to %s", jv_type_name(a), jv_type_name(b), jv_type_name(a));
            return false;
        }
        rt_fail(rc, at, "TypeError: unsupported operand type(s) for +: '%s' and '%s'", jv_type_name(a), jv_type_name(b));
        return false;
    case '-':
        if (ints) {
            if (__builtin_sub_overflow(x, y, &r)) break;
            *out = jv_int(r);
            return true;
        }
        if (num) { *out = jv_float(fx - fy); return true; }
        break;
    case '*':
        if (ints) {
            if (__builtin_mul_overflow(x, y, &r)) break;
            *out = jv_int(r);
            return true;
        }
        if (num) { *out = jv_float(fx * fy); return true; }
        if ((a.kind == JV_STRING || a.kind == JV_LIST) && is_intlike(b)) return repeat_seq(rc, at, a, as_int(b), out);
        if ((b.kind == JV_STRING || b.kind == JV_LIST) && is_intlike(a)) return repeat_seq(rc, at, b, as_int(a), out);
        break;
    case '/':
        if (num) {
            if (fy == 0) { rt_fail(rc, at, "ZeroDivisionError: division by zero"); return false; }
            *out = jv_float(fx / fy);
            return true;
        }
        break;
    case 'F':
        if (num) {
            if (fy == 0) { rt_fail(rc, at, "ZeroDivisionError: integer division or modulo by zero"); return false; }
            if (ints) {
                if (x == INT64_MIN && y == -1) break;
                int64_t q = x / y;
                if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
                *out = jv_int(q);
            } else *out = jv_float(floor(fx / fy));
            return true;
        }
        break;
    case '%':
        if (num) {
            if (fy == 0) { rt_fail(rc, at, "ZeroDivisionError: integer division or modulo by zero"); return false; }
            if (ints) {
                if (y == -1) { *out = jv_int(0); return true; }
                int64_t m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) m += y;
                *out = jv_int(m);
            } else *out = jv_float(py_fmod(fx, fy));
            return true;
        }
        if (a.kind == JV_STRING) return percent_format(rc, at, jv_str(a), b, out);
        break;
    case 'P':
        if (ints && y >= 0) {
            int64_t acc = 1, base = x;
            int64_t e = y;
            bool overflow = false;
            while (e > 0 && !overflow) {
                if (e & 1) overflow |= __builtin_mul_overflow(acc, base, &acc);
                e >>= 1;
                if (e) overflow |= __builtin_mul_overflow(base, base, &base);
            }
            if (overflow) break;
            *out = jv_int(acc);
            return true;
        }
        if (num) { *out = jv_float(pow(fx, fy)); return true; }
        break;
    }
    if (ints) { rt_fail(rc, at, "integer overflow (values beyond 64 bits are not supported)"); return false; }
    const char *sym = op == 'F' ? "//" : op == 'P' ? "**" : (op == '-' ? "-" : op == '*' ? "*" : op == '/' ? "/" : "%");
    rt_fail(rc, at, "TypeError: unsupported operand type(s) for %s: '%s' and '%s'", sym, jv_type_name(a), jv_type_name(b));
    return false;
}

// Python ordering; returns false with an error for incomparable types.
static bool compare_lt(rctx *rc, const jnode *at, jv a, jv b, int *cmp) {
    if (fail_undefined_op(rc, at, a, b)) return false;
    if (jv_is_number(a) && jv_is_number(b)) {
        if (is_intlike(a) && is_intlike(b)) *cmp = as_int(a) < as_int(b) ? -1 : as_int(a) > as_int(b);
        else {
            double x = jv_as_double(a), y = jv_as_double(b);
            *cmp = x < y ? -1 : x > y ? 1 : (x == y ? 0 : 2);  // 2: unordered (nan)
        }
        return true;
    }
    if (a.kind == JV_STRING && b.kind == JV_STRING) {
        jv_string *s = jv_str(a), *t = jv_str(b);
        size_t n = s->len < t->len ? s->len : t->len;
        int c = memcmp(s->data, t->data, n);
        *cmp = c < 0 ? -1 : c > 0 ? 1 : (s->len < t->len ? -1 : s->len > t->len);
        return true;
    }
    if (a.kind == JV_LIST && b.kind == JV_LIST && jv_lst(a)->is_tuple == jv_lst(b)->is_tuple &&
        jv_lst(a)->flavor == SEQ_PLAIN && jv_lst(b)->flavor == SEQ_PLAIN) {
        jv_list *x = jv_lst(a), *y = jv_lst(b);
        for (size_t i = 0; i < x->len && i < y->len; i++) {
            if (jv_equal(x->items[i], y->items[i])) continue;
            return compare_lt(rc, at, x->items[i], y->items[i], cmp);
        }
        *cmp = x->len < y->len ? -1 : x->len > y->len;
        return true;
    }
    rt_fail(rc, at, "TypeError: '<' not supported between instances of '%s' and '%s'", jv_type_name(a), jv_type_name(b));
    return false;
}

static bool contains(rctx *rc, const jnode *at, jv needle, jv hay, bool *result) {
    *result = false;
    switch (hay.kind) {
    case JV_UNDEFINED: return true;
    case JV_STRING:
        if (needle.kind != JV_STRING) {
            rt_fail(rc, at, "TypeError: 'in <string>' requires string as left operand, not %s", jv_type_name(needle));
            return false;
        }
        *result = find_bytes(jv_str(hay)->data, jv_str(hay)->len, jv_str(needle)->data, jv_str(needle)->len) != NULL;
        return true;
    case JV_LIST: {
        jv items;
        if (!iterate(rc, at, hay, &items)) return false;  // consumes a generator, as Python's `in` does
        for (size_t i = 0; i < jv_lst(items)->len; i++)
            if (jv_equal(jv_lst(items)->items[i], needle)) { *result = true; break; }
        jv_decref(items);
        return true;
    }
    case JV_DICT:
        if (needle.kind == JV_DICT || needle.kind == JV_NAMESPACE || (needle.kind == JV_LIST && !jv_lst(needle)->is_tuple)) {
            rt_fail(rc, at, "TypeError: unhashable type: '%s'", jv_type_name(needle));
            return false;
        }
        *result = jv_dict_get(hay, needle) != NULL;
        return true;
    default:
        rt_fail(rc, at, "TypeError: argument of type '%s' is not iterable", jv_type_name(hay));
        return false;
    }
}

// ---------------------------------------------------------------- tests
static const char *const TESTS_WITH_ARG[] = {"divisibleby", "eq", "equalto", "==", "ne", "!=", "sameas", "lt", "<", "le",
                                             "<=", "gt", ">", "ge", ">=", "lessthan", "greaterthan", "in", NULL};
static const char *find_name(const char *const *list, const char *name);

static bool apply_test(rctx *rc, const jnode *at, const char *name, jv v, const callargs *a, bool *result) {
    const jv *arg0 = arg_get(a, 0, NULL);
    if ((a->npos || a->nkw) && !find_name(TESTS_WITH_ARG, name)) {
        rt_fail(rc, at, "TypeError: test '%s' takes no arguments", name);
        return false;
    }
    if (!strcmp(name, "defined")) *result = v.kind != JV_UNDEFINED;
    else if (!strcmp(name, "undefined")) *result = v.kind == JV_UNDEFINED;
    else if (!strcmp(name, "none")) *result = v.kind == JV_NONE;
    else if (!strcmp(name, "string")) *result = v.kind == JV_STRING;
    else if (!strcmp(name, "mapping")) *result = v.kind == JV_DICT;
    else if (!strcmp(name, "iterable")) *result = v.kind == JV_UNDEFINED || v.kind == JV_STRING || v.kind == JV_LIST || v.kind == JV_DICT;
    else if (!strcmp(name, "sequence")) *result = v.kind == JV_UNDEFINED || v.kind == JV_STRING || (v.kind == JV_LIST && !is_iterator(v)) || v.kind == JV_DICT;
    else if (!strcmp(name, "number")) *result = jv_is_number(v);
    else if (!strcmp(name, "integer")) *result = v.kind == JV_INT;
    else if (!strcmp(name, "float")) *result = v.kind == JV_FLOAT;
    else if (!strcmp(name, "boolean")) *result = v.kind == JV_BOOL;
    else if (!strcmp(name, "true")) *result = v.kind == JV_BOOL && v.u.b;
    else if (!strcmp(name, "false")) *result = v.kind == JV_BOOL && !v.u.b;
    else if (!strcmp(name, "callable")) *result = v.kind == JV_MACRO || v.kind == JV_FUNC || v.kind == JV_UNDEFINED;
    else if (!strcmp(name, "escaped")) *result = false;
    else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        // jinja2: str(value).islower() / isupper(): a cased character and none of the other case
        strbuf sb;
        sb_init(&sb);
        jv_to_str(&sb, v);
        bool cased = false, ok = true;
        for (size_t i = 0; i < sb.len && ok;) {
            uint32_t cp;
            i += utf8_decode(sb.data, sb.len, i, &cp);
            utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
            if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT) { if (name[0] == 'l') ok = false; else cased = true; }
            if (c == UTF8PROC_CATEGORY_LL) { if (name[0] == 'u') ok = false; else cased = true; }
        }
        sb_free(&sb);
        *result = ok && cased;
    } else if (!strcmp(name, "even") || !strcmp(name, "odd")) {
        // jinja2: value % 2 == 0 / == 1 (Python semantics, floats allowed)
        jv m;
        if (!binop(rc, at, '%', v, jv_int(2), &m)) return false;
        bool eq = jv_equal(m, jv_int(name[0] == 'e' ? 0 : 1));
        jv_decref(m);
        *result = eq;
    } else if (!strcmp(name, "divisibleby")) {
        if (!arg0) { rt_fail(rc, at, "divisibleby needs an argument"); return false; }
        jv m;
        if (!binop(rc, at, '%', v, *arg0, &m)) return false;
        *result = jv_equal(m, jv_int(0));
        jv_decref(m);
    } else if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==") || !strcmp(name, "ne") || !strcmp(name, "!=") || !strcmp(name, "sameas")) {
        if (!arg0) { rt_fail(rc, at, "test '%s' needs an argument", name); return false; }
        if (!strcmp(name, "sameas")) *result = v.kind == arg0->kind && (jv_is_obj(v) ? v.u.obj == arg0->u.obj : jv_equal(v, *arg0));
        else *result = jv_equal(v, *arg0) == (name[0] == 'e' || name[0] == '=');
    } else if (!strcmp(name, "lt") || !strcmp(name, "<") || !strcmp(name, "le") || !strcmp(name, "<=") || !strcmp(name, "gt") ||
               !strcmp(name, ">") || !strcmp(name, "ge") || !strcmp(name, ">=") || !strcmp(name, "lessthan") || !strcmp(name, "greaterthan")) {
        if (!arg0) { rt_fail(rc, at, "test '%s' needs an argument", name); return false; }
        int c;
        if (!compare_lt(rc, at, v, *arg0, &c)) return false;
        bool lt = name[0] == 'l' || name[0] == '<', eq = !strcmp(name, "le") || !strcmp(name, "<=") || !strcmp(name, "ge") || !strcmp(name, ">=");
        *result = c != 2 && (lt ? (c < 0 || (eq && c == 0)) : (c > 0 || (eq && c == 0)));
        if (c == 2) *result = false;
    } else if (!strcmp(name, "in")) {
        if (!arg0) { rt_fail(rc, at, "test 'in' needs an argument"); return false; }
        return contains(rc, at, v, *arg0, result);
    } else {
        rt_fail(rc, at, "no test named '%s'", name);
        return false;
    }
    return true;
}

// ---------------------------------------------------------------- filters
static bool call_value(rctx *rc, const jnode *at, jv callee, callargs *a, jv caller, jv *out);

static bool want_string(rctx *rc, const jnode *at, const jv *v, const char *what) {
    if (!v || v->kind != JV_STRING) { rt_fail(rc, at, "TypeError: %s must be a string", what); return false; }
    return true;
}

// jinja2's make_attrgetter: "a.b" / "0" paths, item lookup via environment.getitem.
static bool attr_path(rctx *rc, const jnode *at, jv item, jv attribute, jv *out) {
    if (attribute.kind != JV_STRING) return get_item(rc, at, item, attribute, out);
    jv cur = jv_incref(item);
    const char *path = jv_str(attribute)->data;
    while (true) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        jv key;
        bool numeric = n > 0;
        for (size_t i = 0; i < n; i++) if (path[i] < '0' || path[i] > '9') numeric = false;
        if (numeric) key = jv_int(strtoll(path, NULL, 10));
        else key = make_str(rc, at, path, n);
        if (rc->failed) { jv_decref(cur); return false; }
        jv next;
        bool ok = get_item(rc, at, cur, key, &next);
        jv_decref(key);
        jv_decref(cur);
        if (!ok) return false;
        cur = next;
        if (!dot) break;
        path = dot + 1;
    }
    *out = cur;
    return true;
}

static bool filter_tojson(rctx *rc, const jnode *at, jv v, const callargs *a, jv *out) {
    const jv *ea = arg_get(a, 0, "ensure_ascii"), *ind = arg_get(a, 1, "indent"), *sep = arg_get(a, 2, "separators"),
             *sk = arg_get(a, 3, "sort_keys");
    json_dump_opts o = {.ensure_ascii = ea && jv_truthy(*ea), .item_sep = ", ", .key_sep = ": ",
                        .sort_keys = sk && jv_truthy(*sk)};
    char spaces[256];
    if (ind && ind->kind != JV_NONE) {
        o.has_indent = true;
        o.item_sep = ",";
        if (ind->kind == JV_STRING) o.indent = jv_str(*ind)->data;
        else if (is_intlike(*ind)) {
            int64_t w = as_int(*ind);
            if (w < 0) w = 0;
            if (w > 255) w = 255;
            memset(spaces, ' ', (size_t)w);
            spaces[w] = 0;
            o.indent = spaces;
        } else { rt_fail(rc, at, "TypeError: tojson indent must be an int or a string"); return false; }
    }
    if (sep && sep->kind != JV_NONE) {
        if (sep->kind != JV_LIST || jv_lst(*sep)->len != 2 || jv_lst(*sep)->items[0].kind != JV_STRING || jv_lst(*sep)->items[1].kind != JV_STRING) {
            rt_fail(rc, at, "tojson separators must be a pair of strings");
            return false;
        }
        o.item_sep = jv_str(jv_lst(*sep)->items[0])->data;
        o.key_sep = jv_str(jv_lst(*sep)->items[1])->data;
    }
    strbuf sb;
    sb_init(&sb);
    const char *err = NULL;
    if (!jv_to_json(&sb, v, &o, 0, &err)) {
        sb_free(&sb);
        rt_fail(rc, at, "TypeError: tojson: %s", err ? err : "out of memory");
        return false;
    }
    *out = jv_string_take(&sb);
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory or string too large"); return false; }
    return true;
}

static int compare_for_sort(rctx *rc, const jnode *at, jv a, jv b, bool case_sensitive) {
    int c = 0;
    if (!case_sensitive && a.kind == JV_STRING && b.kind == JV_STRING) {
        jv la = str_case(rc, at, jv_str(a), CASE_LOWER), lb = str_case(rc, at, jv_str(b), CASE_LOWER);
        if (!rc->failed) compare_lt(rc, at, la, lb, &c);
        jv_decref(la);
        jv_decref(lb);
        return c;
    }
    compare_lt(rc, at, a, b, &c);
    return c;
}

// Stable insertion/merge sort of (key, value) pairs by key.
static bool sort_values(rctx *rc, const jnode *at, jv *keys, jv *vals, size_t n, bool reverse, bool case_sensitive) {
    for (size_t i = 1; i < n && !rc->failed; i++) {
        jv k = keys[i], v = vals[i];
        size_t j = i;
        while (j > 0) {
            int c = compare_for_sort(rc, at, keys[j - 1], k, case_sensitive);
            if (rc->failed) return false;
            if (reverse ? c < 0 : c > 0) { keys[j] = keys[j - 1]; vals[j] = vals[j - 1]; j--; }
            else break;
        }
        keys[j] = k;
        vals[j] = v;
    }
    return !rc->failed;
}

static bool select_like(rctx *rc, const jnode *at, jv v, const callargs *a, bool by_attr, bool keep_when, jv *out) {
    jv items;
    if (!iterate(rc, at, v, &items)) return false;
    *out = jv_list_new(0, false);
    size_t base = by_attr ? 1 : 0;
    const jv *attr = by_attr ? arg_get(a, 0, NULL) : NULL;
    const jv *test = arg_get(a, base, NULL);
    if (by_attr && !attr) { jv_decref(items); jv_decref(*out); rt_fail(rc, at, "selectattr/rejectattr need an attribute"); return false; }
    if (test && test->kind != JV_STRING) { jv_decref(items); jv_decref(*out); rt_fail(rc, at, "test name must be a string"); return false; }
    callargs rest = {0};
    if (a->npos > base + 1) { rest.pos = a->pos + base + 1; rest.npos = a->npos - base - 1; }
    jv_list *l = jv_lst(items);
    for (size_t i = 0; i < l->len; i++) {
        jv subject;
        if (by_attr) {
            if (!attr_path(rc, at, l->items[i], *attr, &subject)) break;
        } else subject = jv_incref(l->items[i]);
        bool r;
        bool ok = test ? apply_test(rc, at, jv_str(*test)->data, subject, &rest, &r) : (r = jv_truthy(subject), true);
        jv_decref(subject);
        if (!ok) break;
        if (r == keep_when) jv_list_push(*out, jv_incref(l->items[i]));
    }
    jv_decref(items);
    if (rc->failed) { jv_decref(*out); return false; }
    return true;
}

static bool apply_filter(rctx *rc, jscope *sc, const jnode *at, const char *name, jv v, callargs *a, jv *out);

static bool filter_map(rctx *rc, jscope *sc, const jnode *at, jv v, callargs *a, jv *out) {
    jv items;
    if (!iterate(rc, at, v, &items)) return false;
    *out = jv_list_new(0, false);
    const jv *attribute = arg_get(a, 99, "attribute"), *def = arg_get(a, 99, "default");
    const jv *fname = a->npos ? &a->pos[0] : NULL;
    if (!attribute && (!fname || fname->kind != JV_STRING)) { jv_decref(items); jv_decref(*out); rt_fail(rc, at, "map needs a filter name or attribute="); return false; }
    callargs rest = {0};
    if (!attribute && a->npos > 1) { rest.pos = a->pos + 1; rest.npos = a->npos - 1; }
    if (!attribute) { rest.kwn = a->kwn; rest.kwv = a->kwv; rest.nkw = a->nkw; }
    jv_list *l = jv_lst(items);
    for (size_t i = 0; i < l->len; i++) {
        jv r;
        bool ok;
        if (attribute) {
            ok = attr_path(rc, at, l->items[i], *attribute, &r);
            if (ok && r.kind == JV_UNDEFINED && def) r = jv_incref(*def);
        } else ok = apply_filter(rc, sc, at, jv_str(*fname)->data, l->items[i], &rest, &r);
        if (!ok) break;
        jv_list_push(*out, r);
    }
    jv_decref(items);
    if (rc->failed) { jv_decref(*out); return false; }
    return true;
}

static bool filter_join(rctx *rc, const jnode *at, jv v, const callargs *a, jv *out) {
    const jv *sep = arg_get(a, 0, "d"), *attribute = arg_get(a, 1, "attribute");
    jv items;
    if (!iterate(rc, at, v, &items)) return false;
    strbuf sb;
    sb_init(&sb);
    jv_list *l = jv_lst(items);
    for (size_t i = 0; i < l->len && !rc->failed; i++) {
        if (i && sep) jv_to_str(&sb, *sep);
        if (attribute && attribute->kind != JV_NONE) {
            jv x;
            if (!attr_path(rc, at, l->items[i], *attribute, &x)) break;
            jv_to_str(&sb, x);
            jv_decref(x);
        } else jv_to_str(&sb, l->items[i]);
    }
    jv_decref(items);
    if (rc->failed) { sb_free(&sb); return false; }
    *out = jv_string_take(&sb);
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory or string too large"); return false; }
    return true;
}

static bool filter_indent(rctx *rc, const jnode *at, jv v, const callargs *a, jv *out) {
    const jv *width = arg_get(a, 0, "width"), *first = arg_get(a, 1, "first"), *blank = arg_get(a, 2, "blank");
    strbuf pad;
    sb_init(&pad);
    if (width && width->kind == JV_STRING) sb_append(&pad, jv_str(*width)->data, jv_str(*width)->len);
    else for (int64_t i = 0; i < (width && is_intlike(*width) ? as_int(*width) : 4) && i < 1000; i++) sb_putc(&pad, ' ');
    if (v.kind != JV_STRING) { sb_free(&pad); rt_fail(rc, at, "TypeError: unsupported operand type(s) for +=: '%s' and 'str'", jv_type_name(v)); return false; }
    jv s = jv_incref(v);
    jv_string *str = jv_str(s);
    strbuf sb;
    sb_init(&sb);
    // jinja2: newline "\n"; lines after the first get the pad unless blank (and blank=False)
    size_t i = 0;
    bool first_line = true;
    while (i <= str->len) {
        const char *nl = memchr(str->data + i, '\n', str->len - i);
        size_t e = nl ? (size_t)(nl - str->data) : str->len;
        bool is_blank = true;
        for (size_t k = i; k < e; k++) if (!py_isspace((unsigned char)str->data[k])) { is_blank = false; break; }
        bool do_pad = first_line ? (first && jv_truthy(*first)) : (!is_blank || (blank && jv_truthy(*blank)));
        if (first_line && do_pad && is_blank && !(blank && jv_truthy(*blank)) && e == i) do_pad = true;
        if (do_pad) sb_append(&sb, pad.data ? pad.data : "", pad.len);
        sb_append(&sb, str->data + i, e - i);
        if (!nl) break;
        sb_putc(&sb, '\n');
        i = e + 1;
        first_line = false;
    }
    sb_free(&pad);
    jv_decref(s);
    *out = jv_string_take(&sb);
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory or string too large"); return false; }
    return true;
}

static bool apply_filter_inner(rctx *rc, jscope *sc, const jnode *at, const char *name, jv v, callargs *a, jv *out);

// jinja2 filters that return generators/iterators rather than lists.
static const char *const GENERATOR_FILTERS[] = {"map", "select", "reject", "selectattr", "rejectattr", "unique",
                                                "items", "batch", NULL};

static bool apply_filter(rctx *rc, jscope *sc, const jnode *at, const char *name, jv v, callargs *a, jv *out) {
    if (!apply_filter_inner(rc, sc, at, name, v, a, out)) return false;
    if (out->kind == JV_LIST && find_name(GENERATOR_FILTERS, name)) flavored(*out, SEQ_GENERATOR);
    else if (out->kind == JV_LIST && !strcmp(name, "reverse")) flavored(*out, SEQ_REVERSE_ITER);
    return true;
}

static bool apply_filter_inner(rctx *rc, jscope *sc, const jnode *at, const char *name, jv v, callargs *a, jv *out) {
    *out = jv_undefined();
    if (!strcmp(name, "tojson")) return filter_tojson(rc, at, v, a, out);
    if (!strcmp(name, "safe") || !strcmp(name, "e") || !strcmp(name, "escape") || !strcmp(name, "forceescape")) {
        if (name[0] == 's') { *out = jv_incref(v); return true; }
        jv s;
        if (!to_str_value(rc, at, v, &s)) return false;
        strbuf sb;
        sb_init(&sb);
        for (size_t i = 0; i < jv_str(s)->len; i++) {
            char c = jv_str(s)->data[i];
            if (c == '&') sb_puts(&sb, "&amp;");
            else if (c == '<') sb_puts(&sb, "&lt;");
            else if (c == '>') sb_puts(&sb, "&gt;");
            else if (c == '"') sb_puts(&sb, "&#34;");
            else if (c == '\'') sb_puts(&sb, "&#39;");
            else sb_putc(&sb, c);
        }
        jv_decref(s);
        *out = jv_string_take(&sb);
        return out->kind != JV_UNDEFINED || (rt_fail(rc, at, "out of memory"), false);
    }
    if (!strcmp(name, "trim")) {
        const jv *chars = arg_get(a, 0, "chars");
        jv s;
        if (!to_str_value(rc, at, v, &s)) return false;
        *out = str_strip(rc, at, jv_str(s), chars && chars->kind == JV_STRING ? jv_str(*chars) : NULL, true, true);
        jv_decref(s);
        return !rc->failed;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (v.kind) {
        case JV_UNDEFINED: *out = jv_int(0); return true;
        case JV_STRING: *out = jv_int((int64_t)utf8_count(jv_str(v)->data, jv_str(v)->len)); return true;
        case JV_LIST:
            if (is_iterator(v)) break;
            *out = jv_int((int64_t)jv_lst(v)->len);
            return true;
        case JV_DICT: *out = jv_int((int64_t)jv_dct(v)->len); return true;
        default: break;
        }
        rt_fail(rc, at, "TypeError: object of type '%s' has no len()", jv_type_name(v));
        return false;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jv items;
        if (v.kind == JV_LIST && jv_lst(v)->flavor == SEQ_GENERATOR && name[0] == 'l') {
            rt_fail(rc, at, "TypeError: '%s' object is not reversible", jv_type_name(v));
            return false;
        }
        if (!iterate(rc, at, v, &items)) return false;
        jv_list *l = jv_lst(items);
        if (l->len) *out = jv_incref(l->items[name[0] == 'f' ? 0 : l->len - 1]);
        jv_decref(items);
        return true;
    }
    if (!strcmp(name, "join")) return filter_join(rc, at, v, a, out);
    if (!strcmp(name, "replace")) {
        const jv *old = arg_get(a, 0, "old"), *new_ = arg_get(a, 1, "new"), *count = arg_get(a, 2, "count");
        jv s, o = jv_undefined(), n = jv_undefined();
        if (!old || !new_) { rt_fail(rc, at, "replace needs old and new"); return false; }
        if (!to_str_value(rc, at, v, &s)) return false;
        bool ok = to_str_value(rc, at, *old, &o) && to_str_value(rc, at, *new_, &n);
        if (ok) *out = str_replace(rc, at, jv_str(s), jv_str(o), jv_str(n), count && is_intlike(*count) ? as_int(*count) : -1);
        jv_decref(s);
        jv_decref(o);
        jv_decref(n);
        return !rc->failed;
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper") || !strcmp(name, "capitalize") || !strcmp(name, "title")) {
        jv s;
        if (!to_str_value(rc, at, v, &s)) return false;
        case_mode m = name[0] == 'l' ? CASE_LOWER : name[0] == 'u' ? CASE_UPPER : name[0] == 'c' ? CASE_CAPITALIZE : CASE_TITLE;
        if (m == CASE_TITLE) m = CASE_TITLE_FILTER;
        *out = str_case(rc, at, jv_str(s), m);
        jv_decref(s);
        return !rc->failed;
    }
    if (!strcmp(name, "string")) return to_str_value(rc, at, v, out);
    if (!strcmp(name, "items")) {
        if (v.kind == JV_UNDEFINED) { *out = jv_list_new(0, false); return true; }
        if (v.kind != JV_DICT) { rt_fail(rc, at, "TypeError: Can only get item pairs from a mapping."); return false; }
        jv_dict *d = jv_dct(v);
        *out = jv_list_new(d->len, false);
        for (size_t i = 0; i < d->len; i++) {
            jv pair = jv_list_new(2, true);
            jv_list_push(pair, jv_incref(d->keys[i]));
            jv_list_push(pair, jv_incref(d->vals[i]));
            jv_list_push(*out, pair);
        }
        return true;
    }
    if (!strcmp(name, "list")) return iterate(rc, at, v, out);
    if (!strcmp(name, "map")) return filter_map(rc, sc, at, v, a, out);
    if (!strcmp(name, "selectattr")) return select_like(rc, at, v, a, true, true, out);
    if (!strcmp(name, "rejectattr")) return select_like(rc, at, v, a, true, false, out);
    if (!strcmp(name, "select")) return select_like(rc, at, v, a, false, true, out);
    if (!strcmp(name, "reject")) return select_like(rc, at, v, a, false, false, out);
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        const jv *def = arg_get(a, 0, "default_value"), *boolean = arg_get(a, 1, "boolean");
        bool use_default = v.kind == JV_UNDEFINED || (boolean && jv_truthy(*boolean) && !jv_truthy(v));
        if (use_default) *out = def ? jv_incref(*def) : make_str(rc, at, "", 0);
        else *out = jv_incref(v);
        return !rc->failed;
    }
    if ((!strcmp(name, "int") || !strcmp(name, "float")) && v.kind == JV_UNDEFINED) {
        rt_fail(rc, at, "UndefinedError: %s() of an undefined value", name);  // Undefined.__int__ raises
        return false;
    }
    if (!strcmp(name, "int")) {
        const jv *def = arg_get(a, 0, "default");
        if (is_intlike(v)) { *out = jv_int(as_int(v)); return true; }
        if (v.kind == JV_FLOAT && isfinite(v.u.f) && fabs(v.u.f) < 9.2e18) { *out = jv_int((int64_t)v.u.f); return true; }
        if (v.kind == JV_STRING) {
            int64_t x;
            double f;
            if (py_parse_number(jv_str(v)->data, true, &f, &x)) { *out = jv_int(x); return true; }
            if (py_parse_number(jv_str(v)->data, false, &f, &x) && isfinite(f) && fabs(f) < 9.2e18) { *out = jv_int((int64_t)f); return true; }
        }
        *out = def ? jv_incref(*def) : jv_int(0);
        return true;
    }
    if (!strcmp(name, "float")) {
        const jv *def = arg_get(a, 0, "default");
        if (jv_is_number(v)) { *out = jv_float(jv_as_double(v)); return true; }
        if (v.kind == JV_STRING) {
            double f;
            int64_t unused;
            if (py_parse_number(jv_str(v)->data, false, &f, &unused)) { *out = jv_float(f); return true; }
        }
        *out = def ? jv_incref(*def) : jv_float(0.0);
        return true;
    }
    if (!strcmp(name, "abs")) {
        if (is_intlike(v)) {
            if (as_int(v) == INT64_MIN) { rt_fail(rc, at, "integer overflow"); return false; }
            *out = jv_int(as_int(v) < 0 ? -as_int(v) : as_int(v));
            return true;
        }
        if (v.kind == JV_FLOAT) { *out = jv_float(fabs(v.u.f)); return true; }
        rt_fail(rc, at, "TypeError: bad operand type for abs(): '%s'", jv_type_name(v));
        return false;
    }
    if (!strcmp(name, "round")) {
        const jv *prec = arg_get(a, 0, "precision"), *method = arg_get(a, 1, "method");
        if (!jv_is_number(v)) { rt_fail(rc, at, "TypeError: round needs a number"); return false; }
        int64_t digits = prec && is_intlike(*prec) ? as_int(*prec) : 0;
        const char *how0 = method && method->kind == JV_STRING ? jv_str(*method)->data : "common";
        if (is_intlike(v) && digits >= 0 && !strcmp(how0, "common")) { *out = jv_int(as_int(v)); return true; }  // round(int) is int
        double x = jv_as_double(v), m = pow(10, (double)digits);
        const char *how = method && method->kind == JV_STRING ? jv_str(*method)->data : "common";
        double r;
        if (!strcmp(how, "ceil")) r = ceil(x * m) / m;
        else if (!strcmp(how, "floor")) r = floor(x * m) / m;
        else if (digits >= 0 && digits <= 300 && isfinite(x)) {
            // Python's round(): half-to-even on the exact binary value, which glibc's %.Nf also does
            char buf[512];
            snprintf(buf, sizeof buf, "%.*f", (int)digits, x);
            r = strtod(buf, NULL);
        } else r = round(x * m) / m;
        *out = jv_float(r);
        return true;
    }
    if (!strcmp(name, "reverse")) {
        if (v.kind == JV_STRING) {
            size_t n;
            size_t *off = char_offsets(jv_str(v), &n);
            if (!off) { rt_fail(rc, at, "out of memory"); return false; }
            strbuf sb;
            sb_init(&sb);
            for (size_t i = n; i-- > 0;) sb_append(&sb, jv_str(v)->data + off[i], off[i + 1] - off[i]);
            free(off);
            *out = jv_string_take(&sb);
            return true;
        }
        jv items;
        if (!iterate(rc, at, v, &items)) return false;
        jv_list *l = jv_lst(items);
        *out = jv_list_new(l->len, false);
        for (size_t i = l->len; i-- > 0;) jv_list_push(*out, jv_incref(l->items[i]));
        jv_decref(items);
        return true;
    }
    if (!strcmp(name, "sort") || !strcmp(name, "unique") || !strcmp(name, "min") || !strcmp(name, "max") || !strcmp(name, "dictsort")) {
        bool is_sort = name[0] == 's', is_dictsort = name[0] == 'd';
        const jv *reverse = is_sort ? arg_get(a, 0, "reverse") : is_dictsort ? arg_get(a, 2, "reverse") : NULL;
        const jv *cs = arg_get(a, is_sort ? 1 : 0, "case_sensitive");
        const jv *attribute = is_dictsort ? NULL : arg_get(a, is_sort ? 2 : 1, "attribute");
        const jv *by = is_dictsort ? arg_get(a, 1, "by") : NULL;
        jv items;
        if (is_dictsort && v.kind != JV_DICT) {
            if (v.kind == JV_UNDEFINED) rt_fail(rc, at, "UndefinedError: dictsort of an undefined value");
            else rt_fail(rc, at, "AttributeError: '%s' object has no attribute 'items'", jv_type_name(v));
            return false;
        }
        if (is_dictsort) {
            jv tmp;
            callargs none = {0};
            if (!apply_filter(rc, sc, at, "items", v, &none, &tmp)) return false;
            items = tmp;
        } else if (!iterate(rc, at, v, &items)) return false;
        jv_list *l = jv_lst(items);
        size_t n = l->len;
        jv *keys = calloc(n + 1, sizeof(jv)), *vals = calloc(n + 1, sizeof(jv));
        if (!keys || !vals) { free(keys); free(vals); jv_decref(items); rt_fail(rc, at, "out of memory"); return false; }
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            vals[i] = l->items[i];
            if (is_dictsort) {
                bool by_value = by && by->kind == JV_STRING && !strcmp(jv_str(*by)->data, "value");
                keys[i] = jv_incref(jv_lst(l->items[i])->items[by_value ? 1 : 0]);
            } else if (attribute && attribute->kind != JV_NONE) ok = attr_path(rc, at, l->items[i], *attribute, &keys[i]);
            else keys[i] = jv_incref(l->items[i]);
        }
        bool case_sensitive = cs && jv_truthy(*cs);
        if (ok && (is_sort || is_dictsort)) {
            ok = sort_values(rc, at, keys, vals, n, reverse && jv_truthy(*reverse), case_sensitive);
            if (ok) {
                *out = jv_list_new(n, false);
                for (size_t i = 0; i < n; i++) jv_list_push(*out, jv_incref(vals[i]));
            }
        } else if (ok && name[0] == 'u') {
            *out = jv_list_new(0, false);
            for (size_t i = 0; i < n && ok; i++) {
                bool seen = false;
                for (size_t j = 0; j < i && !seen; j++) {
                    if (!case_sensitive && keys[i].kind == JV_STRING && keys[j].kind == JV_STRING) seen = compare_for_sort(rc, at, keys[i], keys[j], false) == 0;
                    else seen = jv_equal(keys[i], keys[j]);
                }
                if (!seen) jv_list_push(*out, jv_incref(vals[i]));
            }
        } else if (ok) {
            size_t best = 0;
            for (size_t i = 1; i < n && !rc->failed; i++) {
                int c = compare_for_sort(rc, at, keys[i], keys[best], case_sensitive);
                if (name[1] == 'i' ? c < 0 : c > 0) best = i;
            }
            if (n && !rc->failed) *out = jv_incref(vals[best]);
        }
        for (size_t i = 0; i < n; i++) jv_decref(keys[i]);
        free(keys);
        free(vals);
        jv_decref(items);
        return !rc->failed && ok;
    }
    if (!strcmp(name, "sum")) {
        const jv *attribute = arg_get(a, 0, "attribute"), *start = arg_get(a, 1, "start");
        jv items;
        if (!iterate(rc, at, v, &items)) return false;
        jv acc = start ? jv_incref(*start) : jv_int(0);
        for (size_t i = 0; i < jv_lst(items)->len; i++) {
            jv x, r;
            if (attribute && attribute->kind != JV_NONE) { if (!attr_path(rc, at, jv_lst(items)->items[i], *attribute, &x)) break; }
            else x = jv_incref(jv_lst(items)->items[i]);
            bool ok = binop(rc, at, '+', acc, x, &r);
            jv_decref(x);
            if (!ok) break;
            jv_decref(acc);
            acc = r;
        }
        jv_decref(items);
        if (rc->failed) { jv_decref(acc); return false; }
        *out = acc;
        return true;
    }
    if (!strcmp(name, "attr")) {
        const jv *n = arg_get(a, 0, "name");
        if (!want_string(rc, at, n, "attr name")) return false;
        if (v.kind == JV_DICT && !find_name(DICT_METHODS, jv_str(*n)->data)) return true;  // getattr only, no item lookup
        return get_attr(rc, at, v, jv_str(*n)->data, out);
    }
    if (!strcmp(name, "indent")) return filter_indent(rc, at, v, a, out);
    if (!strcmp(name, "groupby")) {
        // sorted by the attribute (case-insensitive unless case_sensitive), one (grouper, list) per value;
        // the grouper keeps the case of the group's first item
        const jv *attribute = arg_get(a, 0, "attribute"), *def = arg_get(a, 1, "default"), *cs = arg_get(a, 2, "case_sensitive");
        if (!attribute) { rt_fail(rc, at, "groupby needs an attribute"); return false; }
        bool case_sensitive = cs && jv_truthy(*cs);
        jv items;
        if (!iterate(rc, at, v, &items)) return false;
        size_t n = jv_lst(items)->len;
        jv *keys = calloc(n + 1, sizeof(jv)), *vals = calloc(n + 1, sizeof(jv));
        bool ok = keys && vals;
        for (size_t i = 0; ok && i < n; i++) {
            vals[i] = jv_lst(items)->items[i];
            ok = attr_path(rc, at, vals[i], *attribute, &keys[i]);
            if (ok && keys[i].kind == JV_UNDEFINED && def) keys[i] = jv_incref(*def);
        }
        if (ok) ok = sort_values(rc, at, keys, vals, n, false, case_sensitive);
        if (ok) {
            *out = jv_list_new(0, false);
            for (size_t i = 0; i < n && ok;) {
                size_t j = i + 1;
                while (j < n && compare_for_sort(rc, at, keys[i], keys[j], case_sensitive) == 0 && !rc->failed) j++;
                jv group = jv_list_new(2, true), members = jv_list_new(j - i, false);
                jv_lst(group)->flavor = SEQ_GROUP;
                for (size_t k = i; k < j; k++) jv_list_push(members, jv_incref(vals[k]));
                jv_list_push(group, jv_incref(keys[i]));
                jv_list_push(group, members);
                jv_list_push(*out, group);
                i = j;
                ok = !rc->failed;
            }
        }
        for (size_t i = 0; keys && i < n; i++) jv_decref(keys[i]);
        free(keys);
        free(vals);
        jv_decref(items);
        if (!ok) { jv_decref(*out); *out = jv_undefined(); if (!rc->failed) rt_fail(rc, at, "out of memory"); return false; }
        return true;
    }
    if (!strcmp(name, "truncate")) {
        // jinja2 do_truncate: leeway 5; cut at length-len(end) and drop the partial last word
        const jv *lenv = arg_get(a, 0, "length"), *kill = arg_get(a, 1, "killwords"), *endv = arg_get(a, 2, "end"),
                 *leev = arg_get(a, 3, "leeway");
        jv s;
        if (!to_str_value(rc, at, v, &s)) return false;
        const char *end = endv && endv->kind == JV_STRING ? jv_str(*endv)->data : "...";
        size_t end_len = endv && endv->kind == JV_STRING ? jv_str(*endv)->len : 3;
        int64_t length = lenv && is_intlike(*lenv) ? as_int(*lenv) : 255, leeway = leev && is_intlike(*leev) ? as_int(*leev) : 5;
        int64_t end_chars = (int64_t)utf8_count(end, end_len);
        if (length < end_chars || leeway < 0) { jv_decref(s); rt_fail(rc, at, "AssertionError: truncate length/leeway out of range"); return false; }
        size_t nchars;
        size_t *off = char_offsets(jv_str(s), &nchars);
        if (!off) { jv_decref(s); rt_fail(rc, at, "out of memory"); return false; }
        if ((int64_t)nchars <= length + leeway) { *out = s; free(off); return true; }
        size_t cut = off[length - end_chars];
        if (!(kill && jv_truthy(*kill))) {
            const char *space = NULL;
            for (size_t k = cut; k-- > 0;) if (jv_str(s)->data[k] == ' ') { space = jv_str(s)->data + k; break; }
            if (space) cut = (size_t)(space - jv_str(s)->data);
        }
        strbuf sb;
        sb_init(&sb);
        sb_append(&sb, jv_str(s)->data, cut);
        sb_append(&sb, end, end_len);
        free(off);
        jv_decref(s);
        *out = jv_string_take(&sb);
        return out->kind != JV_UNDEFINED || (rt_fail(rc, at, "out of memory"), false);
    }
    if (!strcmp(name, "format")) {
        // jinja2: value % args (or % kwargs)
        if (v.kind != JV_STRING) { rt_fail(rc, at, "format filter needs a string"); return false; }
        jv tuple = jv_list_new(a->npos, true);
        if (tuple.kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
        for (size_t i = 0; i < a->npos; i++) jv_list_push(tuple, jv_incref(a->pos[i]));
        bool ok = percent_format(rc, at, jv_str(v), tuple, out);
        jv_decref(tuple);
        return ok;
    }
    if (!strcmp(name, "wordcount")) {
        jv s;
        if (!to_str_value(rc, at, v, &s)) return false;
        // jinja2 counts regex \w+ runs
        int64_t words = 0;
        bool in_word = false;
        for (size_t i = 0; i < jv_str(s)->len;) {
            uint32_t cp;
            i += utf8_decode(jv_str(s)->data, jv_str(s)->len, i, &cp);
            utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
            bool w = cp == '_' || (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) || (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
            if (w && !in_word) words++;
            in_word = w;
        }
        jv_decref(s);
        *out = jv_int(words);
        return true;
    }
    if (!strcmp(name, "batch")) {
        const jv *size = arg_get(a, 0, "linecount"), *fill = arg_get(a, 1, "fill_with");
        if (!size || !is_intlike(*size) || as_int(*size) <= 0 || as_int(*size) > JINJA_MAX_RANGE) { rt_fail(rc, at, "batch needs a size from 1 to %d", JINJA_MAX_RANGE); return false; }
        jv items;
        if (!iterate(rc, at, v, &items)) return false;
        *out = jv_list_new(0, false);
        size_t k = (size_t)as_int(*size), n = jv_lst(items)->len;
        for (size_t i = 0; i < n; i += k) {
            jv chunk = jv_list_new(k, false);
            for (size_t j = i; j < i + k; j++) {
                if (j < n) jv_list_push(chunk, jv_incref(jv_lst(items)->items[j]));
                else if (fill) jv_list_push(chunk, jv_incref(*fill));
            }
            jv_list_push(*out, chunk);
        }
        jv_decref(items);
        return true;
    }
    if (!strcmp(name, "center")) {
        const jv *width = arg_get(a, 0, "width");
        jv s;
        if (!to_str_value(rc, at, v, &s)) return false;
        int64_t w = width && is_intlike(*width) ? as_int(*width) : 80, len = (int64_t)utf8_count(jv_str(s)->data, jv_str(s)->len);
        strbuf sb;
        sb_init(&sb);
        if (w > len && w < 100000) {
            int64_t marg = w - len, left = marg / 2 + (marg & w & 1);
            for (int64_t i = 0; i < left; i++) sb_putc(&sb, ' ');
            sb_append(&sb, jv_str(s)->data, jv_str(s)->len);
            for (int64_t i = 0; i < marg - left; i++) sb_putc(&sb, ' ');
        } else sb_append(&sb, jv_str(s)->data, jv_str(s)->len);
        jv_decref(s);
        *out = jv_string_take(&sb);
        return true;
    }
    rt_fail(rc, at, "no filter named '%s'", name);
    return false;
}

// ---------------------------------------------------------------- methods and globals
static bool str_arg(rctx *rc, const jnode *at, const jv *v, const jv_string **out, bool allow_none) {
    *out = NULL;
    if (!v || (allow_none && v->kind == JV_NONE)) return true;
    if (v->kind != JV_STRING) { rt_fail(rc, at, "TypeError: expected a string argument, got %s", jv_type_name(*v)); return false; }
    *out = jv_str(*v);
    return true;
}

static bool string_method(rctx *rc, const jnode *at, const char *m, jv self, callargs *a, jv *out) {
    const jv_string *s = jv_str(self), *x = NULL;
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        if (!str_arg(rc, at, arg_get(a, 0, "chars"), &x, true)) return false;
        *out = str_strip(rc, at, s, x, m[0] != 'r', m[0] != 'l');
        return !rc->failed;
    }
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        const jv *mx = arg_get(a, 1, "maxsplit");
        if (!str_arg(rc, at, arg_get(a, 0, "sep"), &x, true)) return false;
        *out = str_split(rc, at, s, x, mx && is_intlike(*mx) ? as_int(*mx) : -1, m[0] == 'r');
        return !rc->failed;
    }
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        const jv *p = arg_get(a, 0, NULL);
        if (!p) { rt_fail(rc, at, "%s needs an argument", m); return false; }
        size_t nprefix = 1;
        const jv *cands = p;
        if (p->kind == JV_LIST && jv_lst(*p)->is_tuple) { nprefix = jv_lst(*p)->len; cands = jv_lst(*p)->items; }
        *out = jv_bool(false);
        for (size_t i = 0; i < nprefix; i++) {
            if (cands[i].kind != JV_STRING) { rt_fail(rc, at, "TypeError: %s arg must be str or a tuple of str", m); return false; }
            const jv_string *c = jv_str(cands[i]);
            if (c->len <= s->len && memcmp(m[0] == 's' ? s->data : s->data + s->len - c->len, c->data, c->len) == 0) *out = jv_bool(true);
        }
        return true;
    }
    if (!strcmp(m, "upper") || !strcmp(m, "lower") || !strcmp(m, "title") || !strcmp(m, "capitalize")) {
        *out = str_case(rc, at, s, m[0] == 'u' ? CASE_UPPER : m[0] == 'l' ? CASE_LOWER : m[0] == 't' ? CASE_TITLE : CASE_CAPITALIZE);
        return !rc->failed;
    }
    if (!strcmp(m, "replace")) {
        const jv_string *n = NULL;
        const jv *cnt = arg_get(a, 2, "count");
        if (!str_arg(rc, at, arg_get(a, 0, "old"), &x, false) || !str_arg(rc, at, arg_get(a, 1, "new"), &n, false)) return false;
        if (!x || !n) { rt_fail(rc, at, "replace needs two arguments"); return false; }
        *out = str_replace(rc, at, s, x, n, cnt && is_intlike(*cnt) ? as_int(*cnt) : -1);
        return !rc->failed;
    }
    if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "index") || !strcmp(m, "count")) {
        if (!str_arg(rc, at, arg_get(a, 0, NULL), &x, false)) return false;
        if (!x) { rt_fail(rc, at, "%s needs an argument", m); return false; }
        if (!strcmp(m, "count")) {
            int64_t c = 0;
            if (!x->len) c = (int64_t)utf8_count(s->data, s->len) + 1;
            else for (const char *p = s->data; (p = find_bytes(p, s->len - (size_t)(p - s->data), x->data, x->len)); p += x->len) c++;
            *out = jv_int(c);
            return true;
        }
        const char *hit = NULL;
        if (m[0] == 'r') {
            for (size_t k = s->len >= x->len ? s->len - x->len + 1 : 0; k-- > 0;)
                if (memcmp(s->data + k, x->data, x->len) == 0) { hit = s->data + k; break; }
        } else hit = find_bytes(s->data, s->len, x->data, x->len);
        if (!hit && m[0] == 'i') { rt_fail(rc, at, "ValueError: substring not found"); return false; }
        *out = jv_int(hit ? (int64_t)utf8_count(s->data, (size_t)(hit - s->data)) : -1);
        return true;
    }
    if (!strcmp(m, "join")) {
        const jv *it = arg_get(a, 0, NULL);
        if (!it) { rt_fail(rc, at, "join needs an argument"); return false; }
        jv items;
        if (!iterate(rc, at, *it, &items)) return false;
        strbuf sb;
        sb_init(&sb);
        for (size_t i = 0; i < jv_lst(items)->len; i++) {
            jv e = jv_lst(items)->items[i];
            if (e.kind != JV_STRING) { sb_free(&sb); jv_decref(items); rt_fail(rc, at, "TypeError: sequence item %zu: expected str instance, %s found", i, jv_type_name(e)); return false; }
            if (i) sb_append(&sb, s->data, s->len);
            sb_append(&sb, jv_str(e)->data, jv_str(e)->len);
        }
        jv_decref(items);
        *out = jv_string_take(&sb);
        return out->kind != JV_UNDEFINED || (rt_fail(rc, at, "out of memory"), false);
    }
    if (!strncmp(m, "is", 2)) {
        bool all = s->len > 0, cased = false;
        for (size_t i = 0; i < s->len && all;) {
            uint32_t cp;
            i += utf8_decode(s->data, s->len, i, &cp);
            utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
            bool letter = c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
            bool digit = c == UTF8PROC_CATEGORY_ND;
            if (!strcmp(m, "isdigit")) all = digit;
            else if (!strcmp(m, "isalpha")) all = letter;
            else if (!strcmp(m, "isalnum")) all = letter || digit;
            else if (!strcmp(m, "isspace")) all = py_isspace(cp);
            else if (!strcmp(m, "isupper")) { if (c == UTF8PROC_CATEGORY_LL) all = false; if (c == UTF8PROC_CATEGORY_LU) cased = true; }
            else if (!strcmp(m, "islower")) { if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT) all = false; if (c == UTF8PROC_CATEGORY_LL) cased = true; }
        }
        if (!strcmp(m, "isupper") || !strcmp(m, "islower")) all = all && cased;
        *out = jv_bool(all);
        return true;
    }
    if (!strcmp(m, "splitlines")) {
        jv list = jv_list_new(0, false);
        size_t b = 0;
        for (size_t i = 0; i < s->len; i++) {
            if (s->data[i] == '\n' || s->data[i] == '\r') {
                jv_list_push(list, make_str(rc, at, s->data + b, i - b));
                if (s->data[i] == '\r' && i + 1 < s->len && s->data[i + 1] == '\n') i++;
                b = i + 1;
            }
        }
        if (b < s->len) jv_list_push(list, make_str(rc, at, s->data + b, s->len - b));
        *out = list;
        return !rc->failed;
    }
    if (!strcmp(m, "format")) {
        // positional "{}" / "{0}" and keyword "{name}" fields, as str.format
        strbuf sb;
        sb_init(&sb);
        size_t auto_idx = 0;
        for (size_t i = 0; i < s->len; i++) {
            char c = s->data[i];
            if (c == '{' && i + 1 < s->len && s->data[i + 1] == '{') { sb_putc(&sb, '{'); i++; continue; }
            if (c == '}' && i + 1 < s->len && s->data[i + 1] == '}') { sb_putc(&sb, '}'); i++; continue; }
            if (c != '{') { sb_putc(&sb, c); continue; }
            const char *close = memchr(s->data + i, '}', s->len - i);
            if (!close) { sb_free(&sb); rt_fail(rc, at, "ValueError: Single '{' encountered in format string"); return false; }
            size_t fl = (size_t)(close - s->data) - i - 1;
            char field[128];
            if (fl >= sizeof field) fl = sizeof field - 1;
            memcpy(field, s->data + i + 1, fl);
            field[fl] = 0;
            const jv *val = NULL;
            if (!fl) val = arg_get(a, auto_idx++, NULL);
            else if (field[0] >= '0' && field[0] <= '9') val = arg_get(a, (size_t)atoi(field), NULL);
            else val = arg_get(a, (size_t)-1, field);
            if (!val) { sb_free(&sb); rt_fail(rc, at, "IndexError/KeyError: format field '%s' has no value", field); return false; }
            jv_to_str(&sb, *val);
            i = (size_t)(close - s->data);
        }
        *out = jv_string_take(&sb);
        return out->kind != JV_UNDEFINED || (rt_fail(rc, at, "out of memory"), false);
    }
    rt_fail(rc, at, "str has no method '%s'", m);
    return false;
}

static bool call_method(rctx *rc, const jnode *at, jv_func *f, callargs *a, jv *out) {
    jv self = f->self;
    const char *m = f->name;
    *out = jv_undefined();
    if (self.kind == JV_STRING) return string_method(rc, at, m, self, a, out);
    if (self.kind == JV_DICT && !strcmp(m, "cycle")) {
        if (!a->npos) { rt_fail(rc, at, "loop.cycle needs at least one argument"); return false; }
        const jv *idx = jv_dict_get_c(self, "index0");
        *out = jv_incref(a->pos[(size_t)(idx ? as_int(*idx) : 0) % a->npos]);
        return true;
    }
    if (self.kind == JV_DICT) {
        jv_dict *d = jv_dct(self);
        if (!strcmp(m, "get")) {
            const jv *key = arg_get(a, 0, NULL), *def = arg_get(a, 1, NULL);
            if (!key) { rt_fail(rc, at, "get expected at least 1 argument"); return false; }
            const jv *v = jv_dict_get(self, *key);
            *out = v ? jv_incref(*v) : def ? jv_incref(*def) : jv_none();
            return true;
        }
        *out = jv_list_new(d->len, false);
        if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
        flavored(*out, !strcmp(m, "keys") ? SEQ_DICT_KEYS : !strcmp(m, "values") ? SEQ_DICT_VALUES : SEQ_DICT_ITEMS);
        for (size_t i = 0; i < d->len; i++) {
            if (!strcmp(m, "keys")) jv_list_push(*out, jv_incref(d->keys[i]));
            else if (!strcmp(m, "values")) jv_list_push(*out, jv_incref(d->vals[i]));
            else {
                jv pair = jv_list_new(2, true);
                jv_list_push(pair, jv_incref(d->keys[i]));
                jv_list_push(pair, jv_incref(d->vals[i]));
                jv_list_push(*out, pair);
            }
        }
        return true;
    }
    if (self.kind == JV_LIST) {
        const jv *x = arg_get(a, 0, NULL);
        if (!x) { rt_fail(rc, at, "%s needs an argument", m); return false; }
        jv_list *l = jv_lst(self);
        int64_t count = 0, first = -1;
        for (size_t i = 0; i < l->len; i++)
            if (jv_equal(l->items[i], *x)) { count++; if (first < 0) first = (int64_t)i; }
        if (!strcmp(m, "count")) { *out = jv_int(count); return true; }
        if (first < 0) { rt_fail(rc, at, "ValueError: value is not in list"); return false; }
        *out = jv_int(first);
        return true;
    }
    rt_fail(rc, at, "cannot call method '%s'", m);
    return false;
}

static bool fixed_time(struct tm *tm) {
    const char *fixed = getenv("GLINT_FIXED_DATE");
    if (!fixed || !*fixed) return false;
    memset(tm, 0, sizeof *tm);
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    int got = sscanf(fixed, "%d-%d-%d%*[ T]%d:%d:%d", &y, &mo, &d, &h, &mi, &s);
    if (got < 3) return false;
    tm->tm_year = y - 1900;
    tm->tm_mon = mo - 1;
    tm->tm_mday = d;
    tm->tm_hour = h;
    tm->tm_min = mi;
    tm->tm_sec = s;
    tm->tm_isdst = -1;
    time_t t = timegm(tm);  // normalizes and fills tm_wday / tm_yday
    gmtime_r(&t, tm);
    return true;
}

static bool call_global(rctx *rc, const jnode *at, const char *name, callargs *a, jv *out) {
    *out = jv_undefined();
    if (!strcmp(name, "range")) {
        int64_t start = 0, stop, step = 1;
        for (size_t i = 0; i < a->npos; i++)
            if (!is_intlike(a->pos[i])) { rt_fail(rc, at, "TypeError: range() arguments must be integers"); return false; }
        if (a->npos == 1) stop = as_int(a->pos[0]);
        else if (a->npos == 2 || a->npos == 3) {
            start = as_int(a->pos[0]);
            stop = as_int(a->pos[1]);
            if (a->npos == 3) step = as_int(a->pos[2]);
        } else { rt_fail(rc, at, "TypeError: range expected 1 to 3 arguments"); return false; }
        if (step == 0) { rt_fail(rc, at, "ValueError: range() arg 3 must not be zero"); return false; }
        double count = ceil(((double)stop - (double)start) / (double)step);
        if (count > JINJA_MAX_RANGE) { rt_fail(rc, at, "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", JINJA_MAX_RANGE); return false; }
        *out = jv_list_new(count > 0 ? (size_t)count : 0, false);
        if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
        for (int64_t k = 0; k < (int64_t)count; k++) jv_list_push(*out, jv_int(start + k * step));
        return true;
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        *out = jv_dict_new(0, name[0] == 'n' ? JV_NAMESPACE : JV_DICT);
        if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
        if (out->kind == JV_NAMESPACE) {
            if (rc->n_namespaces == rc->cap_namespaces) {
                size_t cap = rc->cap_namespaces ? rc->cap_namespaces * 2 : 8;
                jv *grown = realloc(rc->namespaces, cap * sizeof *grown);
                if (!grown) { jv_decref(*out); rt_fail(rc, at, "out of memory"); return false; }
                rc->namespaces = grown;
                rc->cap_namespaces = cap;
            }
            rc->namespaces[rc->n_namespaces++] = jv_incref(*out);
        }
        for (size_t i = 0; i < a->npos; i++) {
            if (a->pos[i].kind != JV_DICT && a->pos[i].kind != JV_NAMESPACE) { jv_decref(*out); rt_fail(rc, at, "TypeError: %s() positional argument must be a mapping", name); return false; }
            jv_dict *d = jv_dct(a->pos[i]);
            for (size_t k = 0; k < d->len; k++) jv_dict_set(*out, jv_incref(d->keys[k]), jv_incref(d->vals[k]));
        }
        for (size_t i = 0; i < a->nkw; i++) jv_dict_set(*out, jv_string_c(a->kwn[i]), jv_incref(a->kwv[i]));
        return true;
    }
    if (!strcmp(name, "raise_exception")) {
        const jv *msg = arg_get(a, 0, "message");
        strbuf sb;
        sb_init(&sb);
        if (msg) jv_to_str(&sb, *msg);
        rt_fail(rc, at, "raise_exception: %s", sb.data ? sb.data : "");
        sb_free(&sb);
        return false;
    }
    if (!strcmp(name, "strftime_now")) {
        const jv *fmt = arg_get(a, 0, "format");
        if (!fmt || fmt->kind != JV_STRING) { rt_fail(rc, at, "strftime_now needs a format string"); return false; }
        struct tm tm;
        if (!fixed_time(&tm)) {
            time_t now = time(NULL);
            localtime_r(&now, &tm);
        }
        char buf[1024];
        size_t n = jv_str(*fmt)->len ? strftime(buf, sizeof buf, jv_str(*fmt)->data, &tm) : 0;
        *out = make_str(rc, at, buf, n);
        return !rc->failed;
    }
    rt_fail(rc, at, "'%s' is not callable here", name);
    return false;
}

// ---------------------------------------------------------------- macros
static bool names_var(const jnode *n, const char *name) {
    if (!n) return false;
    if (n->kind == N_NAME && !strcmp(n->str, name)) return true;
    if (n->kind == N_MACRO) return false;  // a nested macro has its own varargs
    if (names_var(n->a, name) || names_var(n->b, name) || names_var(n->c, name) || names_var(n->d, name) || names_var(n->e, name)) return true;
    for (size_t i = 0; i < n->nkids; i++) if (names_var(n->kids[i], name)) return true;
    for (size_t i = 0; i < n->nkw; i++) if (names_var(n->kwvals[i], name)) return true;
    return false;
}

static bool call_macro(rctx *rc, const jnode *at, jv_macro *m, callargs *a, jv caller, jv *out) {
    const jnode *def = m->def;
    if (rc->macro_depth >= JINJA_MAX_DEPTH / 2) { rt_fail(rc, at, "macro calls nested too deeply (recursion limit)"); return false; }
    const char *mname = def->kind == N_MACRO ? def->str : "caller";
    jscope *sc = scope_new(rc, m->closure, at);
    if (!sc) return false;
    bool ok = true;
    size_t nparams = def->nkids;
    if (a->npos > nparams && !names_var(def->d, "varargs")) {
        rt_fail(rc, at, "TypeError: macro '%s' takes not more than %zu argument(s)", mname, nparams);
        ok = false;
    }
    for (size_t i = 0; ok && i < a->nkw; i++) {
        bool known = false;
        for (size_t k = 0; k < nparams; k++) if (!strcmp(def->kids[k]->str, a->kwn[i])) known = true;
        if (!known && !names_var(def->d, "kwargs")) {
            rt_fail(rc, at, "TypeError: macro '%s' takes no keyword argument '%s'", mname, a->kwn[i]);
            ok = false;
        }
    }
    for (size_t k = 0; ok && k < nparams; k++) {
        const char *pname = def->kids[k]->str;
        jv v = jv_undefined();
        bool found = false;
        if (k < a->npos) { v = jv_incref(a->pos[k]); found = true; }
        for (size_t i = 0; !found && i < a->nkw; i++)
            if (!strcmp(a->kwn[i], pname)) { v = jv_incref(a->kwv[i]); found = true; }
        if (!found && k < def->nkw && def->kwvals[k]) ok = eval(rc, sc, def->kwvals[k], &v);
        if (ok) ok = scope_set(rc, sc, pname, v, at);
    }
    if (ok) {
        jv varargs = jv_list_new(0, true), kwargs = jv_dict_new(0, JV_DICT);
        for (size_t i = nparams; i < a->npos; i++) jv_list_push(varargs, jv_incref(a->pos[i]));
        for (size_t i = 0; i < a->nkw; i++) {
            bool known = false;
            for (size_t k = 0; k < nparams; k++) if (!strcmp(def->kids[k]->str, a->kwn[i])) known = true;
            if (!known) jv_dict_set(kwargs, jv_string_c(a->kwn[i]), jv_incref(a->kwv[i]));
        }
        ok = scope_set(rc, sc, "varargs", varargs, at) && scope_set(rc, sc, "kwargs", kwargs, at);
        if (ok && caller.kind != JV_UNDEFINED) ok = scope_set(rc, sc, "caller", jv_incref(caller), at);
    }
    strbuf body;
    sb_init(&body);
    if (ok) {
        strbuf *saved = rc->out;
        rc->out = &body;
        rc->macro_depth++;
        int r = exec_node(rc, sc, def->d);
        rc->macro_depth--;
        rc->out = saved;
        ok = r == EXEC_OK || r == EXEC_BREAK || r == EXEC_CONTINUE;
        if (ok && body.failed) { rt_fail(rc, at, "macro output too large"); ok = false; }
    }
    scope_pop(rc, sc);
    if (!ok) { sb_free(&body); return false; }
    *out = jv_string_take(&body);
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
    return true;
}

static bool call_value(rctx *rc, const jnode *at, jv callee, callargs *a, jv caller, jv *out) {
    *out = jv_undefined();
    switch (callee.kind) {
    case JV_MACRO: return call_macro(rc, at, (jv_macro *)callee.u.obj, a, caller, out);
    case JV_FUNC: {
        jv_func *f = (jv_func *)callee.u.obj;
        if (f->self.kind == JV_UNDEFINED) return call_global(rc, at, f->name, a, out);
        return call_method(rc, at, f, a, out);
    }
    case JV_UNDEFINED: rt_fail(rc, at, "UndefinedError: undefined value is not callable"); return false;
    case JV_DICT:
        if (jv_dct(callee)->is_loop && jv_dct(callee)->loop_node->op == 1) {
            jv_dict *loop = jv_dct(callee);
            if (a->npos != 1) { rt_fail(rc, at, "loop() takes exactly one argument"); return false; }
            strbuf buf;
            sb_init(&buf);
            strbuf *saved = rc->out;
            rc->out = &buf;
            int r = exec_for_items(rc, loop->loop_scope, loop->loop_node, a->pos[0], loop->loop_depth + 1);
            rc->out = saved;
            if (r == EXEC_ERR) { sb_free(&buf); return false; }
            *out = jv_string_take(&buf);
            if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return false; }
            return true;
        }
        /* fallthrough */
    default: rt_fail(rc, at, "TypeError: '%s' object is not callable", jv_type_name(callee)); return false;
    }
}

// ---------------------------------------------------------------- expression evaluation
static bool apply_filter_node(rctx *rc, jscope *sc, const jnode *f, jv input, jv *out);

static bool eval_inner(rctx *rc, jscope *sc, const jnode *n, jv *out) {
    *out = jv_undefined();
    switch (n->kind) {
    case N_CONST:
        switch (n->ckind) {
        case JV_BOOL: *out = jv_bool(n->ci != 0); return true;
        case JV_NONE: *out = jv_none(); return true;
        case JV_INT: *out = jv_int(n->ci); return true;
        case JV_FLOAT: *out = jv_float(n->cf); return true;
        case JV_STRING: *out = make_str(rc, n, n->str, n->len); return !rc->failed;
        default: return true;
        }
    case N_NAME: {
        const jv *v = scope_lookup(sc, n->str);
        if (v) { *out = jv_incref(*v); return true; }
        for (int i = 0; GLOBAL_FUNCS[i]; i++)
            if (!strcmp(GLOBAL_FUNCS[i], n->str)) {
                *out = jv_func_new(GLOBAL_FUNCS[i], jv_undefined());
                if (out->kind == JV_UNDEFINED) { rt_fail(rc, n, "out of memory"); return false; }
                return true;
            }
        return true;  // undefined
    }
    case N_LIST:
    case N_TUPLE: {
        *out = jv_list_new(n->nkids, n->kind == N_TUPLE);
        if (out->kind == JV_UNDEFINED) { rt_fail(rc, n, "out of memory"); return false; }
        for (size_t i = 0; i < n->nkids; i++) {
            jv item;
            if (!eval(rc, sc, n->kids[i], &item)) { jv_decref(*out); *out = jv_undefined(); return false; }
            jv_list_push(*out, item);
        }
        return true;
    }
    case N_DICT: {
        *out = jv_dict_new(n->nkids / 2, JV_DICT);
        if (out->kind == JV_UNDEFINED) { rt_fail(rc, n, "out of memory"); return false; }
        for (size_t i = 0; i + 1 < n->nkids; i += 2) {
            jv k, v;
            if (!eval(rc, sc, n->kids[i], &k)) { jv_decref(*out); return false; }
            if (k.kind == JV_LIST || k.kind == JV_DICT || k.kind == JV_NAMESPACE || k.kind == JV_UNDEFINED) {
                if (!(k.kind == JV_LIST && jv_lst(k)->is_tuple)) {
                    jv_decref(k);
                    jv_decref(*out);
                    rt_fail(rc, n, "TypeError: unhashable dict key");
                    return false;
                }
            }
            if (!eval(rc, sc, n->kids[i + 1], &v)) { jv_decref(k); jv_decref(*out); return false; }
            jv_dict_set(*out, k, v);
        }
        return true;
    }
    case N_GETATTR: {
        jv obj;
        if (!eval(rc, sc, n->a, &obj)) return false;
        bool ok = get_attr(rc, n, obj, n->str, out);
        jv_decref(obj);
        return ok;
    }
    case N_GETITEM: {
        jv obj, key;
        if (!eval(rc, sc, n->a, &obj)) return false;
        if (!eval(rc, sc, n->b, &key)) { jv_decref(obj); return false; }
        bool ok = get_item(rc, n, obj, key, out);
        jv_decref(obj);
        jv_decref(key);
        return ok;
    }
    case N_SLICE: {
        jv obj, parts[3] = {jv_none(), jv_none(), jv_none()};
        const jnode *pn[3] = {n->b, n->c, n->d};
        if (!eval(rc, sc, n->a, &obj)) return false;
        bool ok = true;
        for (int i = 0; i < 3 && ok; i++)
            if (pn[i]) ok = eval(rc, sc, pn[i], &parts[i]);
        if (ok) ok = do_slice(rc, n, obj, parts[0], parts[1], parts[2], out);
        jv_decref(obj);
        for (int i = 0; i < 3; i++) jv_decref(parts[i]);
        return ok;
    }
    case N_CALL: {
        jv callee;
        callargs a;
        if (!eval(rc, sc, n->a, &callee)) return false;
        if (!eval_args(rc, sc, n, &a)) { jv_decref(callee); return false; }
        bool ok = call_value(rc, n, callee, &a, jv_undefined(), out);
        args_free(&a);
        jv_decref(callee);
        return ok;
    }
    case N_FILTER: {
        jv input;
        if (!eval(rc, sc, n->a, &input)) return false;
        bool ok = apply_filter_node(rc, sc, n, input, out);
        jv_decref(input);
        return ok;
    }
    case N_TEST: {
        jv v;
        callargs a;
        if (!eval(rc, sc, n->a, &v)) return false;
        if (!eval_args(rc, sc, n, &a)) { jv_decref(v); return false; }
        bool r = false;
        bool ok = apply_test(rc, n, n->str, v, &a, &r);
        args_free(&a);
        jv_decref(v);
        *out = jv_bool(n->op ? !r : r);
        return ok;
    }
    case N_BINOP: {
        jv x, y;
        if (!eval(rc, sc, n->a, &x)) return false;
        if (!eval(rc, sc, n->b, &y)) { jv_decref(x); return false; }
        bool ok = binop(rc, n, n->op, x, y, out);
        jv_decref(x);
        jv_decref(y);
        return ok;
    }
    case N_NEG:
    case N_POS: {
        jv x;
        if (!eval(rc, sc, n->a, &x)) return false;
        if (x.kind == JV_UNDEFINED) { rt_fail(rc, n, "UndefinedError: operation on an undefined value"); return false; }
        if (is_intlike(x)) {
            if (n->kind == N_NEG && as_int(x) == INT64_MIN) { rt_fail(rc, n, "integer overflow"); return false; }
            *out = jv_int(n->kind == N_NEG ? -as_int(x) : as_int(x));
        } else if (x.kind == JV_FLOAT) *out = jv_float(n->kind == N_NEG ? -x.u.f : x.u.f);
        else {
            rt_fail(rc, n, "TypeError: bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+', jv_type_name(x));
            jv_decref(x);
            return false;
        }
        return true;
    }
    case N_NOT: {
        jv x;
        if (!eval(rc, sc, n->a, &x)) return false;
        *out = jv_bool(!jv_truthy(x));
        jv_decref(x);
        return true;
    }
    case N_AND:
    case N_OR: {
        // Python returns the deciding operand itself
        jv x;
        if (!eval(rc, sc, n->a, &x)) return false;
        bool t = jv_truthy(x);
        if ((n->kind == N_AND) ? !t : t) { *out = x; return true; }
        jv_decref(x);
        return eval(rc, sc, n->b, out);
    }
    case N_COMPARE: {
        jv left;
        if (!eval(rc, sc, n->a, &left)) return false;
        bool result = true;
        for (size_t i = 0; i < n->nkids && result; i++) {
            jv right;
            if (!eval(rc, sc, n->kids[i], &right)) { jv_decref(left); return false; }
            bool r = false, ok = true;
            int c = 0;
            switch (n->cmp_ops[i]) {
            case CMP_EQ: r = jv_equal(left, right); break;
            case CMP_NE: r = !jv_equal(left, right); break;
            case CMP_IN: ok = contains(rc, n, left, right, &r); break;
            case CMP_NOTIN: ok = contains(rc, n, left, right, &r); r = !r; break;
            default:
                ok = compare_lt(rc, n, left, right, &c);
                if (c == 2) r = false;
                else if (n->cmp_ops[i] == CMP_LT) r = c < 0;
                else if (n->cmp_ops[i] == CMP_LE) r = c <= 0;
                else if (n->cmp_ops[i] == CMP_GT) r = c > 0;
                else r = c >= 0;
            }
            jv_decref(left);
            left = right;
            if (!ok) { jv_decref(left); return false; }
            result = r;
        }
        jv_decref(left);
        *out = jv_bool(result);
        return true;
    }
    case N_CONDEXPR: {
        jv c;
        if (!eval(rc, sc, n->a, &c)) return false;
        bool t = jv_truthy(c);
        jv_decref(c);
        if (t) return eval(rc, sc, n->b, out);
        if (n->c) return eval(rc, sc, n->c, out);
        return true;  // undefined
    }
    default: rt_fail(rc, n, "internal error: not an expression"); return false;
    }
}

static bool eval(rctx *rc, jscope *sc, const jnode *n, jv *out) {
    *out = jv_undefined();
    if (rc->failed) return false;
    if (++rc->depth > JINJA_MAX_DEPTH * 4) { rt_fail(rc, n, "expression nested too deeply"); rc->depth--; return false; }
    bool ok = eval_inner(rc, sc, n, out);
    rc->depth--;
    if (!ok) { jv_decref(*out); *out = jv_undefined(); }
    return ok;
}

// Applies one N_FILTER node (its name and arguments) to an already evaluated input.
static bool apply_filter_node(rctx *rc, jscope *sc, const jnode *f, jv input, jv *out) {
    callargs a;
    if (!eval_args(rc, sc, f, &a)) return false;
    bool ok = apply_filter(rc, sc, f, f->str, input, &a, out);
    args_free(&a);
    return ok;
}

// A block filter chain (set block / filter block): N_FILTER nodes whose innermost a is NULL.
static bool apply_block_filters(rctx *rc, jscope *sc, const jnode *f, jv input, jv *out) {
    if (!f) { *out = jv_incref(input); return true; }
    jv inner;
    if (!apply_block_filters(rc, sc, f->a, input, &inner)) return false;
    bool ok = apply_filter_node(rc, sc, f, inner, out);
    jv_decref(inner);
    return ok;
}

// ---------------------------------------------------------------- statements
static bool assign(rctx *rc, jscope *sc, const jnode *target, jv v) {
    if (target->kind == N_NAME) return scope_set(rc, sc, target->str, v, target);
    if (target->kind == N_GETATTR) {
        const jv *ns = scope_lookup(sc, target->a->str);
        if (!ns || ns->kind != JV_NAMESPACE) {
            jv_decref(v);
            rt_fail(rc, target, "TemplateRuntimeError: cannot assign attribute on non-namespace object");
            return false;
        }
        jv key = jv_string_c(target->str);
        if (key.kind == JV_UNDEFINED) { jv_decref(v); rt_fail(rc, target, "out of memory"); return false; }
        return jv_dict_set(*ns, key, v) || (rt_fail(rc, target, "out of memory"), false);
    }
    // tuple unpacking
    jv items;
    if (!iterate(rc, target, v, &items)) { jv_decref(v); return false; }
    jv_decref(v);
    jv_list *l = jv_lst(items);
    if (l->len != target->nkids) {
        rt_fail(rc, target, "ValueError: %s values to unpack (expected %zu, got %zu)", l->len > target->nkids ? "too many" : "not enough", target->nkids, l->len);
        jv_decref(items);
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < l->len && ok; i++) ok = assign(rc, sc, target->kids[i], jv_incref(l->items[i]));
    jv_decref(items);
    return ok;
}

static bool emit(rctx *rc, const jnode *at, jv v) {
    if (!jv_to_str(rc->out, v) || rc->out->failed) {
        rt_fail(rc, at, "rendered output too large (limit %zu bytes) or out of memory", (size_t)JINJA_MAX_OUTPUT);
        return false;
    }
    return true;
}

static jv make_loop(rctx *rc, const jnode *at, jv_list *items, size_t i, jscope *sc, int depth) {
    jv loop = jv_dict_new(12, JV_DICT);
    if (loop.kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory"); return loop; }
    jv_dct(loop)->is_loop = true;
    jv_dct(loop)->loop_node = at;
    jv_dct(loop)->loop_scope = sc;
    jv_dct(loop)->loop_depth = depth;
    size_t n = items->len;
    struct { const char *k; jv v; } fields[] = {
        {"index", jv_int((int64_t)i + 1)},        {"index0", jv_int((int64_t)i)},
        {"revindex", jv_int((int64_t)(n - i))},   {"revindex0", jv_int((int64_t)(n - i - 1))},
        {"first", jv_bool(i == 0)},               {"last", jv_bool(i + 1 == n)},
        {"length", jv_int((int64_t)n)},           {"depth", jv_int(depth)},
        {"depth0", jv_int(depth - 1)},
    };
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) jv_dict_append_unique(loop, jv_string_c(fields[k].k), fields[k].v);
    if (i > 0) jv_dict_append_unique(loop, jv_string_c("previtem"), jv_incref(items->items[i - 1]));
    if (i + 1 < n) jv_dict_append_unique(loop, jv_string_c("nextitem"), jv_incref(items->items[i + 1]));
    return loop;
}

static int exec_for(rctx *rc, jscope *sc, const jnode *n) {
    jv iterable;
    if (!eval(rc, sc, n->b, &iterable)) return EXEC_ERR;
    int r = exec_for_items(rc, sc, n, iterable, 1);
    jv_decref(iterable);
    return r;
}

// Runs a for loop over iterable (borrowed); recursive loops re-enter here through loop(items).
static int exec_for_items(rctx *rc, jscope *sc, const jnode *n, jv iterable, int depth) {
    jv items;
    if (depth > JINJA_MAX_DEPTH / 2) { rt_fail(rc, n, "recursive loop nested too deeply"); return EXEC_ERR; }
    bool ok = iterate(rc, n->b, iterable, &items);
    if (!ok) return EXEC_ERR;
    if (n->c) {
        // loop filter: "for x in xs if cond" evaluates cond with the loop target bound
        jv kept = jv_list_new(0, false);
        for (size_t i = 0; i < jv_lst(items)->len && ok; i++) {
            jscope *fs = scope_new(rc, sc, n);
            ok = fs && assign(rc, fs, n->a, jv_incref(jv_lst(items)->items[i]));
            jv c = jv_undefined();
            if (ok) ok = eval(rc, fs, n->c, &c);
            if (ok && jv_truthy(c)) jv_list_push(kept, jv_incref(jv_lst(items)->items[i]));
            jv_decref(c);
            scope_pop(rc, fs);
        }
        jv_decref(items);
        items = kept;
        if (!ok) { jv_decref(items); return EXEC_ERR; }
    }
    jv_list *l = jv_lst(items);
    int result = EXEC_OK;
    for (size_t i = 0; i < l->len; i++) {
        jscope *it = scope_new(rc, sc, n);
        if (!it) { result = EXEC_ERR; break; }
        jv loop = make_loop(rc, n, l, i, sc, depth);
        bool ok2 = !rc->failed && scope_set(rc, it, "loop", loop, n) && assign(rc, it, n->a, jv_incref(l->items[i]));
        int r = ok2 ? exec_node(rc, it, n->d) : EXEC_ERR;
        scope_pop(rc, it);
        if (r == EXEC_ERR) { result = EXEC_ERR; break; }
        if (r == EXEC_BREAK) break;
    }
    if (result == EXEC_OK && l->len == 0 && n->e) result = exec_node(rc, sc, n->e);
    jv_decref(items);
    return result == EXEC_ERR ? EXEC_ERR : EXEC_OK;
}

static bool render_capture(rctx *rc, jscope *sc, const jnode *body, const jnode *at, jv *out) {
    strbuf buf;
    sb_init(&buf);
    strbuf *saved = rc->out;
    rc->out = &buf;
    int r = exec_node(rc, sc, body);
    rc->out = saved;
    if (r == EXEC_ERR) { sb_free(&buf); return false; }
    *out = jv_string_take(&buf);
    if (out->kind == JV_UNDEFINED) { rt_fail(rc, at, "out of memory or output too large"); return false; }
    return true;
}

static int exec_inner(rctx *rc, jscope *sc, const jnode *n) {
    switch (n->kind) {
    case N_BODY:
        for (size_t i = 0; i < n->nkids; i++) {
            int r = exec_node(rc, sc, n->kids[i]);
            if (r != EXEC_OK) return r;
        }
        return EXEC_OK;
    case N_DATA:
        if (!sb_append(rc->out, n->str, n->len)) { rt_fail(rc, n, "rendered output too large or out of memory"); return EXEC_ERR; }
        return EXEC_OK;
    case N_OUTPUT: {
        jv v;
        if (!eval(rc, sc, n->a, &v)) return EXEC_ERR;
        bool ok = emit(rc, n, v);
        jv_decref(v);
        return ok ? EXEC_OK : EXEC_ERR;
    }
    case N_IF:
        for (size_t i = 0; i + 1 < n->nkids; i += 2) {
            jv c;
            if (!eval(rc, sc, n->kids[i], &c)) return EXEC_ERR;
            bool t = jv_truthy(c);
            jv_decref(c);
            if (t) return exec_node(rc, sc, n->kids[i + 1]);
        }
        return n->c ? exec_node(rc, sc, n->c) : EXEC_OK;
    case N_FOR: return exec_for(rc, sc, n);
    case N_SET: {
        jv v;
        if (!eval(rc, sc, n->b, &v)) return EXEC_ERR;
        return assign(rc, sc, n->a, v) ? EXEC_OK : EXEC_ERR;
    }
    case N_SETBLOCK: {
        jv body, v;
        if (!render_capture(rc, sc, n->d, n, &body)) return EXEC_ERR;
        bool ok = apply_block_filters(rc, sc, n->b, body, &v);
        jv_decref(body);
        if (!ok) return EXEC_ERR;
        return assign(rc, sc, n->a, v) ? EXEC_OK : EXEC_ERR;
    }
    case N_FILTERBLOCK: {
        jv body, v;
        if (!render_capture(rc, sc, n->d, n, &body)) return EXEC_ERR;
        bool ok = apply_block_filters(rc, sc, n->b, body, &v);
        jv_decref(body);
        if (!ok) return EXEC_ERR;
        ok = emit(rc, n, v);
        jv_decref(v);
        return ok ? EXEC_OK : EXEC_ERR;
    }
    case N_MACRO: {
        scope_capture(sc);
        jv m = jv_macro_new(n, sc);
        if (m.kind == JV_UNDEFINED) { rt_fail(rc, n, "out of memory"); return EXEC_ERR; }
        return scope_set(rc, sc, n->str, m, n) ? EXEC_OK : EXEC_ERR;
    }
    case N_CALLBLOCK: {
        const jnode *call = n->a;
        jv callee;
        callargs a;
        if (!eval(rc, sc, call->a, &callee)) return EXEC_ERR;
        if (!eval_args(rc, sc, call, &a)) { jv_decref(callee); return EXEC_ERR; }
        scope_capture(sc);
        jv caller = jv_macro_new(n, sc), v = jv_undefined();
        bool ok = caller.kind != JV_UNDEFINED && call_value(rc, call, callee, &a, caller, &v);
        jv_decref(caller);
        args_free(&a);
        jv_decref(callee);
        if (ok) ok = emit(rc, n, v);
        jv_decref(v);
        return ok ? EXEC_OK : EXEC_ERR;
    }
    case N_WITH: {
        jscope *inner = scope_new(rc, sc, n);
        if (!inner) return EXEC_ERR;
        bool ok = true;
        for (size_t i = 0; i < n->nkids && ok; i++) {
            jv v;
            ok = eval(rc, sc, n->kwvals[i], &v) && scope_set(rc, inner, n->kids[i]->str, v, n);
        }
        int r = ok ? exec_node(rc, inner, n->d) : EXEC_ERR;
        scope_pop(rc, inner);
        return r;
    }
    case N_BREAK: return EXEC_BREAK;
    case N_CONTINUE: return EXEC_CONTINUE;
    default: rt_fail(rc, n, "internal error: not a statement"); return EXEC_ERR;
    }
}

static int exec_node(rctx *rc, jscope *sc, const jnode *n) {
    if (rc->failed) return EXEC_ERR;
    if (++rc->depth > JINJA_MAX_DEPTH * 4) { rt_fail(rc, n, "template nested too deeply"); rc->depth--; return EXEC_ERR; }
    int r = exec_inner(rc, sc, n);
    rc->depth--;
    if (rc->failed) r = EXEC_ERR;
    return r;
}

char *glint_template_render(const glint_template *t, const json_t *context, size_t *out_len) {
    if (!t || !t->root) { glint_set_error("render: no template"); return NULL; }
    if (context && !json_is_object(context)) { glint_set_error("%s: render context must be a JSON object", t->name); return NULL; }
    strbuf out;
    sb_init(&out);
    rctx rc = {.t = t, .out = &out};
    jscope *root = scope_new(&rc, NULL, t->root);
    if (!root) return NULL;
    const char *key;
    json_t *val;
    bool ok = true;
    if (context) {
        json_object_foreach((json_t *)context, key, val) {
            jv v = jv_from_json(val);
            if (v.kind == JV_UNDEFINED) { glint_set_error("%s: out of memory converting the context", t->name); ok = false; break; }
            if (!scope_set(&rc, root, key, v, t->root)) { ok = false; break; }
        }
    }
    if (ok) ok = exec_node(&rc, root, t->root) == EXEC_OK && !rc.failed;
    scope_pop(&rc, root);
    while (rc.deferred) {
        jscope *next = rc.deferred->next_deferred;
        scope_clear(rc.deferred);
        free(rc.deferred);
        rc.deferred = next;
    }
    for (size_t i = 0; i < rc.n_namespaces; i++) {
        jv_dict *d = jv_dct(rc.namespaces[i]);
        size_t n = d->len;
        d->len = 0;  // detach first: values may point back at this namespace
        for (size_t k = 0; k < n; k++) { jv_decref(d->keys[k]); jv_decref(d->vals[k]); }
        jv_decref(rc.namespaces[i]);
    }
    free(rc.namespaces);
    if (!ok) { sb_free(&out); return NULL; }
    return sb_take(&out, out_len);
}
