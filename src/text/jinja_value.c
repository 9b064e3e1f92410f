// Values of the Jinja interpreter with Python semantics: printing (str/repr), equality,
// truthiness, json.dumps, and conversion from jansson.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "common/util.h"
#include "text/jinja_internal.h"

// ---------------------------------------------------------------- strbuf
void sb_init(strbuf *sb) { memset(sb, 0, sizeof *sb); }
void sb_free(strbuf *sb) { free(sb->data); sb_init(sb); }

bool sb_append(strbuf *sb, const char *s, size_t n) {
    if (sb->failed) return false;
    if (n > JINJA_MAX_OUTPUT || sb->len + n > JINJA_MAX_OUTPUT) { sb->failed = true; return false; }
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 64;
        while (cap < sb->len + n + 1) cap *= 2;
        char *p = realloc(sb->data, cap);
        if (!p) { sb->failed = true; return false; }
        sb->data = p;
        sb->cap = cap;
    }
    if (n) memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = 0;
    return true;
}
bool sb_puts(strbuf *sb, const char *s) { return sb_append(sb, s, strlen(s)); }
bool sb_putc(strbuf *sb, char c) { return sb_append(sb, &c, 1); }
bool sb_printf(strbuf *sb, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return false;
    return sb_append(sb, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}
char *sb_take(strbuf *sb, size_t *len) {
    if (!sb->data && !sb->failed) sb_append(sb, "", 0);
    char *d = sb->data;
    if (len) *len = sb->len;
    sb_init(sb);
    return d;
}

// ---------------------------------------------------------------- UTF-8
size_t utf8_decode(const char *s, size_t len, size_t pos, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s + pos;
    size_t left = len - pos;
    if (u[0] < 0x80 || left < 2) { *cp = u[0]; return 1; }
    if ((u[0] & 0xe0) == 0xc0) { *cp = ((uint32_t)(u[0] & 0x1f) << 6) | (u[1] & 0x3f); return 2; }
    if ((u[0] & 0xf0) == 0xe0 && left >= 3) {
        *cp = ((uint32_t)(u[0] & 0x0f) << 12) | ((uint32_t)(u[1] & 0x3f) << 6) | (u[2] & 0x3f);
        return 3;
    }
    if ((u[0] & 0xf8) == 0xf0 && left >= 4) {
        *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3f) << 12) | ((uint32_t)(u[2] & 0x3f) << 6) |
              (u[3] & 0x3f);
        return 4;
    }
    *cp = u[0];
    return 1;
}

size_t utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xc0 | (cp >> 6)); o[1] = (unsigned char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t utf8_count(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) n++;
    return n;
}

// Python str.isspace().
bool py_isspace(uint32_t c) {
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return true;
    if (c < 0x85) return false;
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

// ---------------------------------------------------------------- construction / refcounts
jv jv_incref(jv v) {
    if (jv_is_obj(v)) v.u.obj->refs++;
    return v;
}

void jv_decref(jv v) {
    if (!jv_is_obj(v)) return;
    if (--v.u.obj->refs > 0) return;
    switch (v.kind) {
    case JV_LIST: {
        jv_list *l = jv_lst(v);
        for (size_t i = 0; i < l->len; i++) jv_decref(l->items[i]);
        free(l->items);
        break;
    }
    case JV_DICT:
    case JV_NAMESPACE: {
        jv_dict *d = jv_dct(v);
        for (size_t i = 0; i < d->len; i++) { jv_decref(d->keys[i]); jv_decref(d->vals[i]); }
        free(d->keys);
        free(d->vals);
        break;
    }
    case JV_FUNC: jv_decref(((jv_func *)v.u.obj)->self); break;
    default: break;
    }
    free(v.u.obj);
}

jv jv_string_n(const char *s, size_t n) {
    if (n > JINJA_MAX_OUTPUT) return jv_undefined();
    jv_string *p = malloc(sizeof *p + n + 1);
    if (!p) return jv_undefined();
    p->h.refs = 1;
    p->len = n;
    if (n) memcpy(p->data, s, n);
    p->data[n] = 0;
    jv v = {.kind = JV_STRING, .u.obj = &p->h};
    return v;
}
jv jv_string_c(const char *s) { return jv_string_n(s, strlen(s)); }
jv jv_string_take(strbuf *sb) {
    if (sb->failed) { sb_free(sb); return jv_undefined(); }
    jv v = jv_string_n(sb->data ? sb->data : "", sb->len);
    sb_free(sb);
    return v;
}

jv jv_list_new(size_t cap, bool is_tuple) {
    jv_list *l = calloc(1, sizeof *l);
    if (!l) return jv_undefined();
    l->h.refs = 1;
    l->is_tuple = is_tuple;
    if (cap) {
        l->items = malloc(cap * sizeof(jv));
        if (!l->items) { free(l); return jv_undefined(); }
        l->cap = cap;
    }
    jv v = {.kind = JV_LIST, .u.obj = &l->h};
    return v;
}

bool jv_list_push(jv list, jv item) {
    jv_list *l = jv_lst(list);
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jv *p = realloc(l->items, cap * sizeof(jv));
        if (!p) { jv_decref(item); return false; }
        l->items = p;
        l->cap = cap;
    }
    l->items[l->len++] = item;
    return true;
}

jv jv_dict_new(size_t cap, jv_kind kind) {
    jv_dict *d = calloc(1, sizeof *d);
    if (!d) return jv_undefined();
    d->h.refs = 1;
    if (cap) {
        d->keys = malloc(cap * sizeof(jv));
        d->vals = malloc(cap * sizeof(jv));
        if (!d->keys || !d->vals) { free(d->keys); free(d->vals); free(d); return jv_undefined(); }
        d->cap = cap;
    }
    jv v = {.kind = kind, .u.obj = &d->h};
    return v;
}

bool jv_dict_append_unique(jv dict, jv key, jv value) {
    jv_dict *d = jv_dct(dict);
    if (d->len == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jv *k = realloc(d->keys, cap * sizeof(jv));
        if (k) d->keys = k;
        jv *vv = k ? realloc(d->vals, cap * sizeof(jv)) : NULL;
        if (!k || !vv) { jv_decref(key); jv_decref(value); return false; }
        d->vals = vv;
        d->cap = cap;
    }
    d->keys[d->len] = key;
    d->vals[d->len] = value;
    d->len++;
    return true;
}

bool jv_dict_set(jv dict, jv key, jv value) {
    jv_dict *d = jv_dct(dict);
    for (size_t i = 0; i < d->len; i++) {
        if (jv_equal(d->keys[i], key)) {
            jv_decref(key);
            jv_decref(d->vals[i]);
            d->vals[i] = value;
            return true;
        }
    }
    return jv_dict_append_unique(dict, key, value);
}

const jv *jv_dict_get(jv dict, jv key) {
    jv_dict *d = jv_dct(dict);
    for (size_t i = 0; i < d->len; i++)
        if (jv_equal(d->keys[i], key)) return &d->vals[i];
    return NULL;
}

const jv *jv_dict_get_c(jv dict, const char *key) {
    jv_dict *d = jv_dct(dict);
    size_t n = strlen(key);
    for (size_t i = 0; i < d->len; i++) {
        jv k = d->keys[i];
        if (k.kind == JV_STRING && jv_str(k)->len == n && memcmp(jv_str(k)->data, key, n) == 0) return &d->vals[i];
    }
    return NULL;
}

jv jv_macro_new(const struct jnode *def, struct jscope *closure) {
    jv_macro *m = calloc(1, sizeof *m);
    if (!m) return jv_undefined();
    m->h.refs = 1;
    m->def = def;
    m->closure = closure;
    jv v = {.kind = JV_MACRO, .u.obj = &m->h};
    return v;
}

jv jv_func_new(const char *name, jv self) {
    jv_func *f = calloc(1, sizeof *f);
    if (!f) return jv_undefined();
    f->h.refs = 1;
    f->name = name;
    f->self = jv_incref(self);
    jv v = {.kind = JV_FUNC, .u.obj = &f->h};
    return v;
}

// ---------------------------------------------------------------- Python semantics
bool jv_truthy(jv v) {
    switch (v.kind) {
    case JV_UNDEFINED:
    case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STRING: return jv_str(v)->len != 0;
    case JV_LIST: return jv_lst(v)->flavor == SEQ_GENERATOR || jv_lst(v)->flavor == SEQ_REVERSE_ITER || jv_lst(v)->len != 0;
    case JV_DICT: return jv_dct(v)->len != 0;
    default: return true;
    }
}

bool jv_is_number(jv v) { return v.kind == JV_INT || v.kind == JV_FLOAT || v.kind == JV_BOOL; }

double jv_as_double(jv v) {
    if (v.kind == JV_FLOAT) return v.u.f;
    if (v.kind == JV_INT) return (double)v.u.i;
    if (v.kind == JV_BOOL) return v.u.b ? 1.0 : 0.0;
    return 0.0;
}

bool jv_equal(jv a, jv b) {
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) {
            int64_t x = a.kind == JV_BOOL ? a.u.b : a.u.i, y = b.kind == JV_BOOL ? b.u.b : b.u.i;
            return x == y;
        }
        return jv_as_double(a) == jv_as_double(b);
    }
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case JV_UNDEFINED:
    case JV_NONE: return true;
    case JV_STRING: return jv_str(a)->len == jv_str(b)->len && memcmp(jv_str(a)->data, jv_str(b)->data, jv_str(a)->len) == 0;
    case JV_LIST: {
        jv_list *x = jv_lst(a), *y = jv_lst(b);
        if (x == y) return true;
        if ((x->flavor == SEQ_GROUP ? SEQ_PLAIN : x->flavor) != (y->flavor == SEQ_GROUP ? SEQ_PLAIN : y->flavor) ||
            x->flavor == SEQ_GENERATOR || x->flavor == SEQ_REVERSE_ITER)
            return false;
        if (x->is_tuple != y->is_tuple || x->len != y->len) return false;
        for (size_t i = 0; i < x->len; i++)
            if (!jv_equal(x->items[i], y->items[i])) return false;
        return true;
    }
    case JV_DICT: {
        jv_dict *x = jv_dct(a), *y = jv_dct(b);
        if (x->len != y->len) return false;
        for (size_t i = 0; i < x->len; i++) {
            const jv *o = jv_dict_get(b, x->keys[i]);
            if (!o || !jv_equal(x->vals[i], *o)) return false;
        }
        return true;
    }
    default: return a.u.obj == b.u.obj;
    }
}

const char *jv_type_name(jv v) {
    switch (v.kind) {
    case JV_UNDEFINED: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STRING: return "str";
    case JV_LIST:
        switch (jv_lst(v)->flavor) {
        case SEQ_GENERATOR: return "generator";
        case SEQ_REVERSE_ITER: return "list_reverseiterator";
        case SEQ_DICT_ITEMS: return "dict_items";
        case SEQ_DICT_KEYS: return "dict_keys";
        case SEQ_DICT_VALUES: return "dict_values";
        default: return jv_lst(v)->is_tuple ? "tuple" : "list";
        }
    case JV_DICT: return "dict";
    case JV_NAMESPACE: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "function";
    }
    return "object";
}

// repr(float): the shortest digits that round-trip, laid out as Python's float_repr_style 'short'.
void format_python_float(char *buf, size_t size, double f) {
    if (isnan(f)) { snprintf(buf, size, "nan"); return; }
    if (isinf(f)) { snprintf(buf, size, f < 0 ? "-inf" : "inf"); return; }
    char digits[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(digits, sizeof digits, "%.*e", prec - 1, f);
        if (strtod(digits, NULL) == f) break;
    }
    // digits looks like "-d.ddde+XX": collect mantissa digits and exponent.
    const char *p = digits;
    bool neg = false;
    if (*p == '-') { neg = true; p++; }
    char mant[40];
    size_t nm = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') mant[nm++] = *p;
    while (nm > 1 && mant[nm - 1] == '0') nm--;
    mant[nm] = 0;
    int exp10 = atoi(p + 1);
    int decpt = exp10 + 1;  // position of the decimal point relative to the digits
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (decpt > 16 || decpt < -3) {
        out[o++] = mant[0];
        if (nm > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nm; i++) out[o++] = mant[i];
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    } else if (decpt <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -decpt; i++) out[o++] = '0';
        for (size_t i = 0; i < nm; i++) out[o++] = mant[i];
    } else {
        for (int i = 0; i < decpt; i++) out[o++] = (size_t)i < nm ? mant[i] : '0';
        out[o++] = '.';
        if ((size_t)decpt < nm)
            for (size_t i = (size_t)decpt; i < nm; i++) out[o++] = mant[i];
        else
            out[o++] = '0';
    }
    out[o] = 0;
    snprintf(buf, size, "%s", out);
}

// Python's str.isprintable() per code point (used by repr of strings).
static bool py_isprintable(uint32_t c) {
    if (c == ' ') return true;
    if (c < 0x20 || c == 0x7f) return false;
    if (c < 0x7f) return true;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    switch (cat) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
    }
}

static bool repr_string(strbuf *sb, const char *s, size_t len) {
    bool has_single = memchr(s, '\'', len) != NULL, has_double = memchr(s, '"', len) != NULL;
    char quote = has_single && !has_double ? '"' : '\'';
    sb_putc(sb, quote);
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t n = utf8_decode(s, len, i, &c);
        if (c == (uint32_t)quote || c == '\\') { sb_putc(sb, '\\'); sb_putc(sb, (char)c); }
        else if (c == '\n') sb_puts(sb, "\\n");
        else if (c == '\r') sb_puts(sb, "\\r");
        else if (c == '\t') sb_puts(sb, "\\t");
        else if (!py_isprintable(c)) {
            if (c < 0x100) sb_printf(sb, "\\x%02x", c);
            else if (c < 0x10000) sb_printf(sb, "\\u%04x", c);
            else sb_printf(sb, "\\U%08x", c);
        } else sb_append(sb, s + i, n);
        i += n;
    }
    return sb_putc(sb, quote);
}

bool jv_repr(strbuf *sb, jv v) {
    switch (v.kind) {
    case JV_STRING: return repr_string(sb, jv_str(v)->data, jv_str(v)->len);
    case JV_LIST: {
        jv_list *l = jv_lst(v);
        if (l->flavor == SEQ_GENERATOR || l->flavor == SEQ_REVERSE_ITER)  // CPython prints an address here
            return sb_printf(sb, "<%s object>", jv_type_name(v));
        if (l->flavor != SEQ_PLAIN && l->flavor != SEQ_GROUP) {  // jinja2's _GroupTuple prints as a tuple
            sb_printf(sb, "%s([", jv_type_name(v));
            for (size_t i = 0; i < l->len; i++) {
                if (i) sb_puts(sb, ", ");
                jv_repr(sb, l->items[i]);
            }
            return sb_puts(sb, "])");
        }
        sb_putc(sb, l->is_tuple ? '(' : '[');
        for (size_t i = 0; i < l->len; i++) {
            if (i) sb_puts(sb, ", ");
            jv_repr(sb, l->items[i]);
        }
        if (l->is_tuple && l->len == 1) sb_putc(sb, ',');
        return sb_putc(sb, l->is_tuple ? ')' : ']');
    }
    case JV_DICT: {
        jv_dict *d = jv_dct(v);
        sb_putc(sb, '{');
        for (size_t i = 0; i < d->len; i++) {
            if (i) sb_puts(sb, ", ");
            jv_repr(sb, d->keys[i]);
            sb_puts(sb, ": ");
            jv_repr(sb, d->vals[i]);
        }
        return sb_putc(sb, '}');
    }
    case JV_NAMESPACE: {
        jv_dict *d = jv_dct(v);
        sb_puts(sb, "<Namespace {");
        for (size_t i = 0; i < d->len; i++) {
            if (i) sb_puts(sb, ", ");
            jv_repr(sb, d->keys[i]);
            sb_puts(sb, ": ");
            jv_repr(sb, d->vals[i]);
        }
        return sb_puts(sb, "}>");
    }
    case JV_UNDEFINED: return sb_puts(sb, "Undefined");
    default: return jv_to_str(sb, v);
    }
}

bool jv_to_str(strbuf *sb, jv v) {
    char buf[64];
    switch (v.kind) {
    case JV_UNDEFINED: return !sb->failed;
    case JV_NONE: return sb_puts(sb, "None");
    case JV_BOOL: return sb_puts(sb, v.u.b ? "True" : "False");
    case JV_INT: return sb_printf(sb, "%lld", (long long)v.u.i);
    case JV_FLOAT: format_python_float(buf, sizeof buf, v.u.f); return sb_puts(sb, buf);
    case JV_STRING: return sb_append(sb, jv_str(v)->data, jv_str(v)->len);
    case JV_MACRO: return sb_puts(sb, "<Macro>");
    case JV_FUNC: return sb_printf(sb, "<built-in method %s>", ((jv_func *)v.u.obj)->name);
    default: return jv_repr(sb, v);
    }
}

// ---------------------------------------------------------------- json.dumps
static bool json_str_out(strbuf *sb, const char *s, size_t len, bool ensure_ascii) {
    sb_putc(sb, '"');
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t n = utf8_decode(s, len, i, &c);
        switch (c) {
        case '"': sb_puts(sb, "\\\""); break;
        case '\\': sb_puts(sb, "\\\\"); break;
        case '\n': sb_puts(sb, "\\n"); break;
        case '\r': sb_puts(sb, "\\r"); break;
        case '\t': sb_puts(sb, "\\t"); break;
        case '\b': sb_puts(sb, "\\b"); break;
        case '\f': sb_puts(sb, "\\f"); break;
        default:
            if (c < 0x20 || (ensure_ascii && c >= 0x7f)) {
                if (c >= 0x10000) {
                    uint32_t x = c - 0x10000;
                    sb_printf(sb, "\\u%04x\\u%04x", 0xd800 + (x >> 10), 0xdc00 + (x & 0x3ff));
                } else sb_printf(sb, "\\u%04x", c);
            } else sb_append(sb, s + i, n);
        }
        i += n;
    }
    return sb_putc(sb, '"');
}

static void json_newline(strbuf *sb, const json_dump_opts *o, int level) {
    sb_putc(sb, '\n');
    for (int i = 0; i < level; i++) sb_puts(sb, o->indent);
}

// Python json converts non-string keys: True->"true", None->"null", numbers via repr.
static bool json_key(strbuf *sb, jv k, const json_dump_opts *o, const char **err) {
    char buf[64];
    switch (k.kind) {
    case JV_STRING: return json_str_out(sb, jv_str(k)->data, jv_str(k)->len, o->ensure_ascii);
    case JV_BOOL: return sb_puts(sb, k.u.b ? "\"true\"" : "\"false\"");
    case JV_NONE: return sb_puts(sb, "\"null\"");
    case JV_INT: return sb_printf(sb, "\"%lld\"", (long long)k.u.i);
    case JV_FLOAT: format_python_float(buf, sizeof buf, k.u.f); return sb_printf(sb, "\"%s\"", buf);
    default: *err = "keys must be str, int, float, bool or None"; return false;
    }
}

static int compare_str_keys(const void *a, const void *b) {
    const jv *x = *(const jv *const *)a, *y = *(const jv *const *)b;
    jv_string *s = jv_str(*x), *t = jv_str(*y);
    size_t n = s->len < t->len ? s->len : t->len;
    int c = memcmp(s->data, t->data, n);
    if (c) return c;
    return s->len < t->len ? -1 : s->len > t->len;
}

bool jv_to_json(strbuf *sb, jv v, const json_dump_opts *o, int level, const char **err) {
    char buf[64];
    if (level > JINJA_MAX_DEPTH) { *err = "nesting too deep"; return false; }
    switch (v.kind) {
    case JV_NONE: return sb_puts(sb, "null");
    case JV_BOOL: return sb_puts(sb, v.u.b ? "true" : "false");
    case JV_INT: return sb_printf(sb, "%lld", (long long)v.u.i);
    case JV_FLOAT:
        if (isnan(v.u.f)) return sb_puts(sb, "NaN");
        if (isinf(v.u.f)) return sb_puts(sb, v.u.f < 0 ? "-Infinity" : "Infinity");
        format_python_float(buf, sizeof buf, v.u.f);
        return sb_puts(sb, buf);
    case JV_STRING: return json_str_out(sb, jv_str(v)->data, jv_str(v)->len, o->ensure_ascii);
    case JV_LIST: {
        jv_list *l = jv_lst(v);
        if (l->flavor != SEQ_PLAIN && l->flavor != SEQ_GROUP) { *err = "Object of this type (generator / dict view) is not JSON serializable"; return false; }
        if (!l->len) return sb_puts(sb, "[]");
        sb_putc(sb, '[');
        for (size_t i = 0; i < l->len; i++) {
            if (i) sb_puts(sb, o->item_sep);
            if (o->has_indent) json_newline(sb, o, level + 1);
            if (!jv_to_json(sb, l->items[i], o, level + 1, err)) return false;
        }
        if (o->has_indent) json_newline(sb, o, level);
        return sb_putc(sb, ']');
    }
    case JV_DICT: {
        jv_dict *d = jv_dct(v);
        if (!d->len) return sb_puts(sb, "{}");
        const jv **order = malloc(d->len * sizeof *order);
        if (!order) { *err = "out of memory"; return false; }
        bool all_str = true;
        for (size_t i = 0; i < d->len; i++) {
            order[i] = &d->keys[i];
            if (d->keys[i].kind != JV_STRING) all_str = false;
        }
        if (o->sort_keys) {
            if (!all_str) { free(order); *err = "sort_keys needs string keys"; return false; }
            qsort(order, d->len, sizeof *order, compare_str_keys);
        }
        sb_putc(sb, '{');
        bool ok = true;
        for (size_t i = 0; i < d->len && ok; i++) {
            if (i) sb_puts(sb, o->item_sep);
            if (o->has_indent) json_newline(sb, o, level + 1);
            size_t idx = (size_t)(order[i] - d->keys);
            ok = json_key(sb, d->keys[idx], o, err) && sb_puts(sb, o->key_sep) &&
                 jv_to_json(sb, d->vals[idx], o, level + 1, err);
        }
        free(order);
        if (!ok) return false;
        if (o->has_indent) json_newline(sb, o, level);
        return sb_putc(sb, '}');
    }
    case JV_UNDEFINED: *err = "Object of type Undefined is not JSON serializable"; return false;
    case JV_NAMESPACE: *err = "Object of type Namespace is not JSON serializable"; return false;
    case JV_MACRO: *err = "Object of type Macro is not JSON serializable"; return false;
    case JV_FUNC: *err = "Object of type function is not JSON serializable"; return false;
    }
    return false;
}

// ---------------------------------------------------------------- from jansson
jv jv_from_json(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_NULL: return jv_none();
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_STRING: return jv_string_n(json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        jv l = jv_list_new(n, false);
        if (l.kind == JV_UNDEFINED) return l;
        for (size_t i = 0; i < n; i++) {
            jv item = jv_from_json(json_array_get(j, i));
            if (item.kind == JV_UNDEFINED || !jv_list_push(l, item)) { jv_decref(l); return jv_undefined(); }
        }
        return l;
    }
    case JSON_OBJECT: {
        jv d = jv_dict_new(json_object_size(j), JV_DICT);
        if (d.kind == JV_UNDEFINED) return d;
        const char *key;
        size_t key_len;
        json_t *val;
        json_object_keylen_foreach((json_t *)j, key, key_len, val) {
            jv k = jv_string_n(key, key_len), x = jv_from_json(val);
            if (k.kind == JV_UNDEFINED || x.kind == JV_UNDEFINED) {
                jv_decref(k);
                jv_decref(x);
                jv_decref(d);
                return jv_undefined();
            }
            if (!jv_dict_append_unique(d, k, x)) { jv_decref(d); return jv_undefined(); }
        }
        return d;
    }
    }
    return jv_undefined();
}
