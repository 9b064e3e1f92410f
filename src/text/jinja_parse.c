// Jinja lexer and parser: template source -> immutable AST (jinja_internal.h).
// Whitespace rules follow jinja2's lexer with trim_blocks=True, lstrip_blocks=True,
// keep_trailing_newline=False; the grammar and precedence follow jinja2's parser.
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "text/jinja_internal.h"
#include "text/tok_internal.h"

// ---------------------------------------------------------------- arena (AST lifetime = template)
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) char data[];
} arena_block;

static void *arena_alloc(glint_template *t, size_t n) {
    n = (n + 15) & ~(size_t)15;
    arena_block *b = t->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = t->arena;
        b->used = 0;
        b->cap = cap;
        t->arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

static char *arena_strndup(glint_template *t, const char *s, size_t n) {
    char *d = arena_alloc(t, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

void glint_template_free(glint_template *t) {
    if (!t) return;
    arena_block *b = t->arena;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(t->name);
    free(t);
}

// ---------------------------------------------------------------- tokens
typedef enum {
    T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
    T_NAME, T_STRING, T_INT, T_FLOAT, T_OP, T_EOF
} tok_kind;

typedef struct {
    tok_kind kind;
    int line, col;
    const char *s;  // NAME/OP/STRING/DATA text (arena), NUL-terminated
    size_t n;
    int64_t i;
    double f;
} token;

typedef struct {
    glint_template *t;
    const char *src;
    size_t len;
    token *toks;
    size_t ntoks, cap;
    // incremental position -> line:col
    size_t loc_pos;
    int loc_line, loc_col;
    bool failed;
    // parser
    size_t pos;
    int depth;
} parser;

static void locate(parser *p, size_t pos, int *line, int *col) {
    if (pos < p->loc_pos) { p->loc_pos = 0; p->loc_line = 1; p->loc_col = 1; }
    while (p->loc_pos < pos && p->loc_pos < p->len) {
        if (p->src[p->loc_pos] == '\n') { p->loc_line++; p->loc_col = 1; }
        else if (((unsigned char)p->src[p->loc_pos] & 0xc0) != 0x80) p->loc_col++;
        p->loc_pos++;
    }
    *line = p->loc_line;
    *col = p->loc_col;
}

static void fail_at(parser *p, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail_at(parser *p, int line, int col, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = true;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    glint_set_error("%s:%d:%d: %s", p->t->name, line, col, msg);
}

static void fail_pos(parser *p, size_t pos, const char *msg) {
    int line, col;
    locate(p, pos, &line, &col);
    fail_at(p, line, col, "%s", msg);
}

static token *push_tok(parser *p, tok_kind kind, size_t pos) {
    if (p->ntoks == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        token *nt = realloc(p->toks, cap * sizeof *nt);
        if (!nt) { fail_pos(p, pos, "out of memory"); return NULL; }
        p->toks = nt;
        p->cap = cap;
    }
    token *tk = &p->toks[p->ntoks++];
    memset(tk, 0, sizeof *tk);
    tk->kind = kind;
    locate(p, pos, &tk->line, &tk->col);
    return tk;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Length of trailing Python whitespace of s[0..n) (ASCII plus the multibyte spaces rstrip() removes).
static size_t rstrip_len(const char *s, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && ((unsigned char)s[start] & 0xc0) == 0x80) start--;
        uint32_t cp;
        utf8_decode(s, end, start, &cp);
        if (!py_isspace(cp)) break;
        end = start;
    }
    return n - end;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Python's unicode-escape decoding of a string literal body, as jinja2 does it.
static bool unescape_string(parser *p, const char *s, size_t n, size_t pos, strbuf *out) {
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\' || i + 1 >= n) { sb_putc(out, s[i]); i++; continue; }
        char c = s[i + 1];
        i += 2;
        switch (c) {
        case '\n': break;
        case '\\': sb_putc(out, '\\'); break;
        case '\'': sb_putc(out, '\''); break;
        case '"': sb_putc(out, '"'); break;
        case 'a': sb_putc(out, '\a'); break;
        case 'b': sb_putc(out, '\b'); break;
        case 'f': sb_putc(out, '\f'); break;
        case 'n': sb_putc(out, '\n'); break;
        case 'r': sb_putc(out, '\r'); break;
        case 't': sb_putc(out, '\t'); break;
        case 'v': sb_putc(out, '\v'); break;
        case 'x': case 'u': case 'U': {
            int digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = i + (size_t)k < n ? hexval(s[i + (size_t)k]) : -1;
                if (h < 0) { fail_pos(p, pos, "truncated \\xXX / \\uXXXX escape in string literal"); return false; }
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10ffff) { fail_pos(p, pos, "illegal Unicode character in string literal"); return false; }
            i += (size_t)digits;
            char buf[4];
            sb_append(out, buf, utf8_encode(cp, buf));
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                uint32_t cp = (uint32_t)(c - '0');
                for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++) cp = cp * 8 + (uint32_t)(s[i++] - '0');
                char buf[4];
                sb_append(out, buf, utf8_encode(cp, buf));
            } else if ((unsigned char)c >= 0x80) {
                // backslashreplace turned the character into \xNN / \uNNNN text after a literal backslash
                uint32_t cp;
                size_t used = utf8_decode(s, n, i - 1, &cp);
                i = i - 1 + used;
                if (cp < 0x100) sb_printf(out, "\\x%02x", cp);
                else if (cp < 0x10000) sb_printf(out, "\\u%04x", cp);
                else sb_printf(out, "\\U%08x", cp);
            } else {
                sb_putc(out, '\\');
                sb_putc(out, c);
            }
        }
    }
    return !out->failed;
}

static const char *const OPERATORS[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                        "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", ";", NULL};

// Lexes the expression tokens of one tag starting at *pos until its end delimiter.
// is_block: block/comment style end (%}); else variable end (}}).
static bool lex_tag(parser *p, size_t *pos, bool is_block, bool *line_starting) {
    const char *src = p->src;
    size_t i = *pos, n = p->len;
    int balance = 0;
    char end_ch = is_block ? '%' : '}';
    for (;;) {
        while (i < n && is_ws(src[i])) i++;
        if (i >= n) { fail_pos(p, i, is_block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'"); return false; }
        if (balance == 0) {
            // end delimiters: "-%}" (strip following whitespace), "+%}" (keep newline), "%}" (trim one newline)
            char c0 = src[i];
            size_t k = (c0 == '-' || c0 == '+') ? i + 1 : i;
            if (k + 1 < n && src[k] == end_ch && src[k + 1] == '}') {
                if (!push_tok(p, is_block ? T_BLOCK_END : T_VAR_END, i)) return false;
                i = k + 2;
                if (c0 == '-') {
                    while (i < n && is_ws(src[i])) i++;  // jinja: \s* (ASCII + unicode; ASCII suffices here)
                } else if (c0 != '+' && is_block && i < n && src[i] == '\n') {
                    i++;
                }
                *line_starting = i > 0 && src[i - 1] == '\n';
                *pos = i;
                return true;
            }
        }
        char c = src[i];
        if (is_name_start(c)) {
            size_t s = i;
            while (i < n && is_name_char(src[i])) i++;
            token *tk = push_tok(p, T_NAME, s);
            if (!tk) return false;
            tk->s = arena_strndup(p->t, src + s, i - s);
            tk->n = i - s;
            continue;
        }
        if (is_digit(c)) {
            size_t s = i;
            while (i < n && (is_digit(src[i]) || src[i] == '_')) i++;
            bool is_float = false;
            if (i + 1 < n && src[i] == '.' && is_digit(src[i + 1])) {
                is_float = true;
                i++;
                while (i < n && (is_digit(src[i]) || src[i] == '_')) i++;
            }
            if (i < n && (src[i] == 'e' || src[i] == 'E')) {
                size_t k = i + 1;
                if (k < n && (src[k] == '+' || src[k] == '-')) k++;
                if (k < n && is_digit(src[k])) {
                    is_float = true;
                    i = k;
                    while (i < n && is_digit(src[i])) i++;
                }
            }
            char buf[64];
            size_t m = 0;
            for (size_t k = s; k < i && m < sizeof buf - 1; k++)
                if (src[k] != '_') buf[m++] = src[k];
            buf[m] = 0;
            token *tk = push_tok(p, is_float ? T_FLOAT : T_INT, s);
            if (!tk) return false;
            if (is_float) tk->f = strtod(buf, NULL);
            else {
                errno = 0;
                tk->i = strtoll(buf, NULL, 10);
                if (errno == ERANGE) { fail_pos(p, s, "integer literal does not fit in 64 bits"); return false; }
            }
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t s = i++;
            while (i < n && src[i] != c) i += src[i] == '\\' && i + 1 < n ? 2 : 1;
            if (i >= n) { fail_pos(p, s, "unterminated string literal"); return false; }
            strbuf sb;
            sb_init(&sb);
            if (!unescape_string(p, src + s + 1, i - s - 1, s, &sb)) { sb_free(&sb); return false; }
            token *tk = push_tok(p, T_STRING, s);
            if (!tk) { sb_free(&sb); return false; }
            tk->s = arena_strndup(p->t, sb.data ? sb.data : "", sb.len);
            tk->n = sb.len;
            sb_free(&sb);
            i++;
            continue;
        }
        const char *op = NULL;
        for (int k = 0; OPERATORS[k]; k++) {
            size_t ol = strlen(OPERATORS[k]);
            if (i + ol <= n && memcmp(src + i, OPERATORS[k], ol) == 0) { op = OPERATORS[k]; break; }
        }
        if (!op) {
            char msg[64];
            snprintf(msg, sizeof msg, "unexpected char '%c'", c);
            fail_pos(p, i, msg);
            return false;
        }
        if (op[0] == '(' || op[0] == '[' || op[0] == '{') balance++;
        if (op[0] == ')' || op[0] == ']' || op[0] == '}') {
            if (balance == 0) { fail_pos(p, i, "unexpected closing bracket"); return false; }
            balance--;
        }
        token *tk = push_tok(p, T_OP, i);
        if (!tk) return false;
        tk->s = op;
        tk->n = strlen(op);
        i += tk->n;
    }
}

// Is there "{%[-+]? raw [-]?%}" at pos? Returns the end of the tag or 0.
static size_t match_raw_tag(const char *src, size_t n, size_t pos, const char *word, char *sign_before, char *sign_after) {
    size_t i = pos + 2;
    *sign_before = 0;
    if (i < n && (src[i] == '-' || src[i] == '+')) *sign_before = src[i++];
    while (i < n && is_ws(src[i])) i++;
    size_t wl = strlen(word);
    if (i + wl > n || memcmp(src + i, word, wl) != 0 || (i + wl < n && is_name_char(src[i + wl]))) return 0;
    i += wl;
    while (i < n && is_ws(src[i])) i++;
    *sign_after = 0;
    if (i < n && (src[i] == '-' || src[i] == '+')) *sign_after = src[i++];
    if (i + 1 < n && src[i] == '%' && src[i + 1] == '}') return i + 2;
    return 0;
}

static bool emit_data(parser *p, size_t pos, const char *s, size_t n) {
    if (!n) return true;
    token *tk = push_tok(p, T_DATA, pos);
    if (!tk) return false;
    tk->s = arena_strndup(p->t, s, n);
    tk->n = n;
    return tk->s != NULL;
}

static bool lex(parser *p) {
    const char *src = p->src;
    size_t n = p->len, i = 0;
    bool line_starting = true;
    while (i < n) {
        // find the next tag start
        size_t j = i;
        while (j + 1 < n && !(src[j] == '{' && (src[j + 1] == '{' || src[j + 1] == '%' || src[j + 1] == '#'))) j++;
        if (j + 1 >= n) { if (!emit_data(p, i, src + i, n - i)) return false; break; }
        char kind = src[j + 1];
        char sign = j + 2 < n ? src[j + 2] : 0;
        size_t text_len = j - i;
        if (sign == '-') {
            text_len -= rstrip_len(src + i, text_len);
        } else if (sign != '+' && kind != '{') {
            // lstrip_blocks: drop spaces between the line start and a block/comment tag
            size_t l_pos = 0;
            for (size_t k = text_len; k > 0; k--)
                if (src[i + k - 1] == '\n') { l_pos = k; break; }
            if (l_pos > 0 || line_starting) {
                bool only_ws = l_pos < text_len;
                for (size_t k = l_pos; k < text_len && only_ws; k++)
                    if (!is_ws(src[i + k])) only_ws = false;
                if (only_ws) text_len = l_pos;
            }
        }
        if (!emit_data(p, i, src + i, text_len)) return false;
        size_t body = j + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
        if (kind == '#') {
            size_t k = body;
            while (k + 1 < n && !(src[k] == '#' && src[k + 1] == '}')) k++;
            if (k + 1 >= n) { fail_pos(p, j, "missing end of comment tag"); return false; }
            char before = k > body ? src[k - 1] : 0;
            i = k + 2;
            if (before == '-') while (i < n && is_ws(src[i])) i++;
            else if (before != '+' && i < n && src[i] == '\n') i++;
            line_starting = src[i - 1] == '\n';
            continue;
        }
        if (kind == '%') {
            char sb_, sa_;
            size_t raw_end = match_raw_tag(src, n, j, "raw", &sb_, &sa_);
            // jinja2's raw_begin accepts "raw %}" and "raw -%}" only, and does not trim a newline after it
            if (raw_end && sa_ != '+') {
                size_t k = raw_end;
                if (sa_ == '-') while (k < n && is_ws(src[k])) k++;
                bool raw_line_starting = src[k - 1] == '\n';
                // find {% endraw %}
                size_t m = k, end_tag = 0;
                char eb = 0, ea = 0;
                for (; m + 1 < n; m++)
                    if (src[m] == '{' && src[m + 1] == '%' && (end_tag = match_raw_tag(src, n, m, "endraw", &eb, &ea))) break;
                if (!end_tag) { fail_pos(p, j, "missing {% endraw %}"); return false; }
                size_t raw_len = m - k;
                if (eb == '-') raw_len -= rstrip_len(src + k, raw_len);
                else if (eb != '+') {
                    // lstrip_blocks applies to the endraw tag too
                    size_t l_pos = 0;
                    for (size_t q = raw_len; q > 0; q--)
                        if (src[k + q - 1] == '\n') { l_pos = q; break; }
                    if (l_pos > 0 || raw_line_starting) {
                        bool only_ws = l_pos < raw_len;
                        for (size_t q = l_pos; q < raw_len && only_ws; q++)
                            if (!is_ws(src[k + q])) only_ws = false;
                        if (only_ws) raw_len = l_pos;
                    }
                }
                if (!emit_data(p, k, src + k, raw_len)) return false;
                i = end_tag;
                if (ea == '-') while (i < n && is_ws(src[i])) i++;
                else if (ea != '+' && i < n && src[i] == '\n') i++;
                line_starting = src[i - 1] == '\n';
                continue;
            }
        }
        if (!push_tok(p, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, j)) return false;
        i = body;
        if (!lex_tag(p, &i, kind == '%', &line_starting)) return false;
    }
    return push_tok(p, T_EOF, n) != NULL;
}

// ---------------------------------------------------------------- parser helpers
static token *cur(parser *p) { return &p->toks[p->pos]; }
static token *peek_at(parser *p, size_t k) {
    size_t i = p->pos + k;
    return &p->toks[i < p->ntoks ? i : p->ntoks - 1];
}
static void advance(parser *p) { if (p->pos + 1 < p->ntoks) p->pos++; }
static bool is_op(token *t, const char *op) { return t->kind == T_OP && strcmp(t->s, op) == 0; }
static bool is_name(token *t, const char *name) { return t->kind == T_NAME && strcmp(t->s, name) == 0; }

static const char *describe(token *t) {
    switch (t->kind) {
    case T_DATA: return "template data";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "end of statement block";
    case T_NAME: return t->s;
    case T_STRING: return "string";
    case T_INT: return "integer";
    case T_FLOAT: return "float";
    case T_OP: return t->s;
    case T_EOF: return "end of template";
    }
    return "token";
}

static void fail_tok(parser *p, token *t, const char *fmt, const char *arg) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    fail_at(p, t->line, t->col, "%s", msg);
}

static bool expect_op(parser *p, const char *op) {
    if (p->failed) return false;
    if (!is_op(cur(p), op)) {
        char msg[256];
        snprintf(msg, sizeof msg, "expected '%s', got '%s'", op, describe(cur(p)));
        fail_at(p, cur(p)->line, cur(p)->col, "%s", msg);
        return false;
    }
    advance(p);
    return true;
}

static bool expect_kind(parser *p, tok_kind k, const char *what) {
    if (p->failed) return false;
    if (cur(p)->kind != k) {
        char msg[256];
        snprintf(msg, sizeof msg, "expected %s, got '%s'", what, describe(cur(p)));
        fail_at(p, cur(p)->line, cur(p)->col, "%s", msg);
        return false;
    }
    advance(p);
    return true;
}

static jnode *new_node(parser *p, jnode_kind kind, token *at) {
    jnode *nd = arena_alloc(p->t, sizeof *nd);
    if (!nd) { fail_at(p, at->line, at->col, "out of memory"); return NULL; }
    nd->kind = kind;
    nd->line = at->line;
    nd->col = at->col;
    return nd;
}

// Temporary growable list of nodes, copied into the arena when done.
typedef struct {
    jnode **items;
    const char **names;
    size_t n, cap;
} nodevec;

static bool nv_push(parser *p, nodevec *v, jnode *nd, const char *name) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        jnode **ni = realloc(v->items, cap * sizeof *ni);
        if (ni) v->items = ni;
        const char **nn = ni ? realloc(v->names, cap * sizeof *nn) : NULL;
        if (!ni || !nn) { fail_at(p, cur(p)->line, cur(p)->col, "out of memory"); return false; }
        v->names = nn;
        v->cap = cap;
    }
    v->items[v->n] = nd;
    v->names[v->n] = name;
    v->n++;
    return true;
}

static jnode **nv_finish(parser *p, nodevec *v) {
    jnode **out = v->n ? arena_alloc(p->t, v->n * sizeof *out) : NULL;
    if (out) memcpy(out, v->items, v->n * sizeof *out);
    return out;
}
static const char **nv_finish_names(parser *p, nodevec *v) {
    const char **out = v->n ? arena_alloc(p->t, v->n * sizeof *out) : NULL;
    if (out) memcpy(out, v->names, v->n * sizeof *out);
    return out;
}
static void nv_free(nodevec *v) { free(v->items); free(v->names); memset(v, 0, sizeof *v); }

// ---------------------------------------------------------------- expressions
static jnode *parse_expression(parser *p, bool with_condexpr);
static jnode *parse_or(parser *p);
static jnode *parse_unary(parser *p, bool with_filter);
static jnode *parse_primary(parser *p);
static jnode *parse_postfix(parser *p, jnode *node);

static bool enter(parser *p) {
    if (++p->depth > JINJA_MAX_DEPTH) {
        fail_at(p, cur(p)->line, cur(p)->col, "expression nested too deeply");
        return false;
    }
    return true;
}

static bool is_tuple_end(parser *p, const char *extra_end) {
    token *t = cur(p);
    if (t->kind == T_VAR_END || t->kind == T_BLOCK_END || t->kind == T_EOF || is_op(t, ")")) return true;
    return extra_end && is_name(t, extra_end);
}

// parse_tuple: "a, b" -> tuple, "a" -> a. explicit_parens allows "()".
static jnode *parse_tuple(parser *p, bool with_condexpr, const char *extra_end, bool explicit_parens) {
    token *start = cur(p);
    nodevec items = {0};
    bool is_tuple = false;
    for (;;) {
        if (items.n) {
            if (!expect_op(p, ",")) break;
        }
        if (is_tuple_end(p, extra_end)) break;
        jnode *e = parse_expression(p, with_condexpr);
        if (!e || !nv_push(p, &items, e, NULL)) break;
        if (is_op(cur(p), ",")) is_tuple = true;
        else break;
    }
    jnode *result = NULL;
    if (!p->failed) {
        if (!is_tuple) {
            if (items.n) result = items.items[0];
            else if (explicit_parens) {
                result = new_node(p, N_TUPLE, start);
            } else fail_tok(p, cur(p), "expected an expression, got '%s'", describe(cur(p)));
        } else {
            result = new_node(p, N_TUPLE, start);
            if (result) { result->nkids = items.n; result->kids = nv_finish(p, &items); }
        }
    }
    nv_free(&items);
    return p->failed ? NULL : result;
}

static jnode *parse_condexpr(parser *p) {
    jnode *expr1 = parse_or(p);
    while (expr1 && is_name(cur(p), "if")) {
        token *at = cur(p);
        advance(p);
        jnode *cond = parse_or(p);
        jnode *other = NULL;
        if (!cond) return NULL;
        if (is_name(cur(p), "else")) {
            advance(p);
            other = parse_condexpr(p);
            if (!other) return NULL;
        }
        jnode *nd = new_node(p, N_CONDEXPR, at);
        if (!nd) return NULL;
        nd->a = cond;
        nd->b = expr1;
        nd->c = other;
        expr1 = nd;
    }
    return expr1;
}

static jnode *parse_expression(parser *p, bool with_condexpr) {
    if (!enter(p)) return NULL;
    jnode *r = with_condexpr ? parse_condexpr(p) : parse_or(p);
    p->depth--;
    return r;
}

static jnode *binary(parser *p, jnode_kind kind, int op, token *at, jnode *a, jnode *b) {
    if (!a || !b) return NULL;
    jnode *nd = new_node(p, kind, at);
    if (!nd) return NULL;
    nd->op = op;
    nd->a = a;
    nd->b = b;
    return nd;
}

static jnode *parse_not(parser *p);
static jnode *parse_and(parser *p) {
    jnode *left = parse_not(p);
    while (left && is_name(cur(p), "and")) {
        token *at = cur(p);
        advance(p);
        left = binary(p, N_AND, 0, at, left, parse_not(p));
    }
    return left;
}
static jnode *parse_or(parser *p) {
    jnode *left = parse_and(p);
    while (left && is_name(cur(p), "or")) {
        token *at = cur(p);
        advance(p);
        left = binary(p, N_OR, 0, at, left, parse_and(p));
    }
    return left;
}

static jnode *parse_math1(parser *p);
static jnode *parse_compare(parser *p) {
    token *start = cur(p);
    jnode *expr = parse_math1(p);
    if (!expr) return NULL;
    nodevec ops = {0};
    cmp_op opbuf[64];
    size_t nops = 0;
    for (;;) {
        token *t = cur(p);
        cmp_op op;
        if (is_op(t, "==")) op = CMP_EQ;
        else if (is_op(t, "!=")) op = CMP_NE;
        else if (is_op(t, "<")) op = CMP_LT;
        else if (is_op(t, "<=")) op = CMP_LE;
        else if (is_op(t, ">")) op = CMP_GT;
        else if (is_op(t, ">=")) op = CMP_GE;
        else if (is_name(t, "in")) op = CMP_IN;
        else if (is_name(t, "not") && is_name(peek_at(p, 1), "in")) { op = CMP_NOTIN; advance(p); }
        else break;
        advance(p);
        if (nops == 64) { fail_tok(p, t, "%s", "too many chained comparisons"); break; }
        jnode *rhs = parse_math1(p);
        if (!rhs || !nv_push(p, &ops, rhs, NULL)) break;
        opbuf[nops++] = op;
    }
    jnode *result = expr;
    if (!p->failed && nops) {
        result = new_node(p, N_COMPARE, start);
        if (result) {
            result->a = expr;
            result->nkids = ops.n;
            result->kids = nv_finish(p, &ops);
            result->cmp_ops = arena_alloc(p->t, nops * sizeof(cmp_op));
            if (result->cmp_ops) memcpy(result->cmp_ops, opbuf, nops * sizeof(cmp_op));
        }
    }
    nv_free(&ops);
    return p->failed ? NULL : result;
}

static jnode *parse_not(parser *p) {
    if (is_name(cur(p), "not")) {
        token *at = cur(p);
        advance(p);
        if (!enter(p)) return NULL;
        jnode *operand = parse_not(p);
        p->depth--;
        if (!operand) return NULL;
        jnode *nd = new_node(p, N_NOT, at);
        if (nd) nd->a = operand;
        return nd;
    }
    return parse_compare(p);
}

static jnode *parse_pow(parser *p) {
    jnode *left = parse_unary(p, true);
    while (left && is_op(cur(p), "**")) {
        token *at = cur(p);
        advance(p);
        left = binary(p, N_BINOP, 'P', at, left, parse_unary(p, true));
    }
    return left;
}
static jnode *parse_math2(parser *p) {
    jnode *left = parse_pow(p);
    for (;;) {
        token *t = cur(p);
        int op = is_op(t, "*") ? '*' : is_op(t, "/") ? '/' : is_op(t, "//") ? 'F' : is_op(t, "%") ? '%' : 0;
        if (!left || !op) return left;
        advance(p);
        left = binary(p, N_BINOP, op, t, left, parse_pow(p));
    }
}
static jnode *parse_concat(parser *p) {
    jnode *left = parse_math2(p);
    while (left && is_op(cur(p), "~")) {
        token *at = cur(p);
        advance(p);
        left = binary(p, N_BINOP, '~', at, left, parse_math2(p));
    }
    return left;
}
static jnode *parse_math1(parser *p) {
    jnode *left = parse_concat(p);
    for (;;) {
        token *t = cur(p);
        int op = is_op(t, "+") ? '+' : is_op(t, "-") ? '-' : 0;
        if (!left || !op) return left;
        advance(p);
        left = binary(p, N_BINOP, op, t, left, parse_concat(p));
    }
}

// "(args, name=value)" after the opening parenthesis is the current token.
static bool parse_call_args(parser *p, jnode *call) {
    if (!expect_op(p, "(")) return false;
    nodevec pos = {0}, kw = {0};
    while (!p->failed && !is_op(cur(p), ")")) {
        if (pos.n || kw.n) {
            if (!expect_op(p, ",")) break;
            if (is_op(cur(p), ")")) break;
        }
        if (is_op(cur(p), "*") || is_op(cur(p), "**")) {
            fail_tok(p, cur(p), "%s", "*args / **kwargs in calls are not supported");
            break;
        }
        if (cur(p)->kind == T_NAME && is_op(peek_at(p, 1), "=")) {
            const char *name = cur(p)->s;
            advance(p);
            advance(p);
            jnode *v = parse_expression(p, true);
            if (!v || !nv_push(p, &kw, v, name)) break;
        } else {
            if (kw.n) { fail_tok(p, cur(p), "%s", "positional argument after keyword argument"); break; }
            jnode *v = parse_expression(p, true);
            if (!v || !nv_push(p, &pos, v, NULL)) break;
        }
    }
    if (!p->failed) expect_op(p, ")");
    if (!p->failed) {
        call->nkids = pos.n;
        call->kids = nv_finish(p, &pos);
        call->nkw = kw.n;
        call->kwvals = nv_finish(p, &kw);
        call->kwnames = nv_finish_names(p, &kw);
    }
    nv_free(&pos);
    nv_free(&kw);
    return !p->failed;
}

// Dotted filter/test names ("a.b") are joined into one string.
static const char *parse_dotted_name(parser *p) {
    if (cur(p)->kind != T_NAME) { fail_tok(p, cur(p), "expected a name, got '%s'", describe(cur(p))); return NULL; }
    const char *name = cur(p)->s;
    advance(p);
    while (is_op(cur(p), ".") && peek_at(p, 1)->kind == T_NAME) {
        advance(p);
        size_t a = strlen(name), b = strlen(cur(p)->s);
        char *joined = arena_alloc(p->t, a + b + 2);
        if (!joined) return NULL;
        memcpy(joined, name, a);
        joined[a] = '.';
        memcpy(joined + a + 1, cur(p)->s, b + 1);
        name = joined;
        advance(p);
    }
    return name;
}

static jnode *parse_filter(parser *p, jnode *operand) {
    token *at = cur(p);  // the '|'
    advance(p);
    jnode *nd = new_node(p, N_FILTER, at);
    if (!nd) return NULL;
    nd->a = operand;
    nd->str = parse_dotted_name(p);
    if (!nd->str) return NULL;
    if (is_op(cur(p), "(") && !parse_call_args(p, nd)) return NULL;
    return nd;
}

static jnode *parse_test(parser *p, jnode *operand) {
    token *at = cur(p);  // 'is'
    advance(p);
    jnode *nd = new_node(p, N_TEST, at);
    if (!nd) return NULL;
    nd->a = operand;
    if (is_name(cur(p), "not")) { nd->op = 1; advance(p); }
    nd->str = parse_dotted_name(p);
    if (!nd->str) return NULL;
    token *t = cur(p);
    if (is_op(t, "(")) {
        if (!parse_call_args(p, nd)) return NULL;
    } else if ((t->kind == T_NAME || t->kind == T_STRING || t->kind == T_INT || t->kind == T_FLOAT || is_op(t, "[") ||
                is_op(t, "{")) &&
               !is_name(t, "else") && !is_name(t, "or") && !is_name(t, "and")) {
        if (is_name(t, "is")) { fail_tok(p, t, "%s", "You cannot chain multiple tests with is"); return NULL; }
        jnode *arg = parse_primary(p);
        if (arg) arg = parse_postfix(p, arg);
        if (!arg) return NULL;
        nd->kids = arena_alloc(p->t, sizeof(jnode *));
        if (!nd->kids) return NULL;
        nd->kids[0] = arg;
        nd->nkids = 1;
    }
    return nd;
}

static jnode *parse_filter_expr(parser *p, jnode *node) {
    while (node && !p->failed) {
        if (is_op(cur(p), "|")) node = parse_filter(p, node);
        else if (is_name(cur(p), "is")) node = parse_test(p, node);
        else if (is_op(cur(p), "(")) {
            jnode *call = new_node(p, N_CALL, cur(p));
            if (!call) return NULL;
            call->a = node;
            call->line = node->line;  // report calls where the callee starts
            call->col = node->col;
            if (!parse_call_args(p, call)) return NULL;
            node = call;
        } else break;
    }
    return p->failed ? NULL : node;
}

static jnode *parse_unary(parser *p, bool with_filter) {
    if (!enter(p)) return NULL;
    token *t = cur(p);
    jnode *node;
    if (is_op(t, "-") || is_op(t, "+")) {
        advance(p);
        jnode *operand = parse_unary(p, false);
        node = operand ? new_node(p, is_op(t, "-") ? N_NEG : N_POS, t) : NULL;
        if (node) node->a = operand;
    } else {
        node = parse_primary(p);
    }
    if (node) node = parse_postfix(p, node);
    if (node && with_filter) node = parse_filter_expr(p, node);
    p->depth--;
    return node;
}

static jnode *parse_subscribed(parser *p) {
    token *at = cur(p);
    jnode *parts[3] = {NULL, NULL, NULL};
    if (!is_op(cur(p), ":")) {
        parts[0] = parse_expression(p, true);
        if (!parts[0]) return NULL;
        if (!is_op(cur(p), ":")) return parts[0];
    }
    advance(p);  // ':'
    if (!is_op(cur(p), "]") && !is_op(cur(p), ",") && !is_op(cur(p), ":")) {
        parts[1] = parse_expression(p, true);
        if (!parts[1]) return NULL;
    }
    if (is_op(cur(p), ":")) {
        advance(p);
        if (!is_op(cur(p), "]") && !is_op(cur(p), ",")) {
            parts[2] = parse_expression(p, true);
            if (!parts[2]) return NULL;
        }
    }
    jnode *nd = new_node(p, N_SLICE, at);
    if (!nd) return NULL;
    nd->b = parts[0];
    nd->c = parts[1];
    nd->d = parts[2];
    return nd;
}

static jnode *parse_postfix(parser *p, jnode *node) {
    while (node && !p->failed) {
        token *t = cur(p);
        if (is_op(t, ".")) {
            advance(p);
            token *attr = cur(p);
            if (attr->kind == T_NAME) {
                jnode *nd = new_node(p, N_GETATTR, t);
                if (!nd) return NULL;
                nd->a = node;
                nd->str = attr->s;
                advance(p);
                node = nd;
            } else if (attr->kind == T_INT) {
                jnode *idx = new_node(p, N_CONST, attr), *nd = new_node(p, N_GETITEM, t);
                if (!idx || !nd) return NULL;
                idx->ckind = JV_INT;
                idx->ci = attr->i;
                nd->a = node;
                nd->b = idx;
                advance(p);
                node = nd;
            } else {
                fail_tok(p, attr, "expected name or number after '.', got '%s'", describe(attr));
                return NULL;
            }
        } else if (is_op(t, "[")) {
            advance(p);
            nodevec args = {0};
            while (!p->failed && !is_op(cur(p), "]")) {
                if (args.n && !expect_op(p, ",")) break;
                if (is_op(cur(p), "]")) break;
                jnode *s = parse_subscribed(p);
                if (!s || !nv_push(p, &args, s, NULL)) break;
            }
            if (!p->failed && !args.n) fail_tok(p, cur(p), "%s", "expected subscript expression");
            if (!p->failed) expect_op(p, "]");
            jnode *index = NULL;
            if (!p->failed) {
                if (args.n == 1) index = args.items[0];
                else {
                    index = new_node(p, N_TUPLE, t);
                    if (index) { index->nkids = args.n; index->kids = nv_finish(p, &args); }
                }
            }
            nv_free(&args);
            if (!index) return NULL;
            if (index->kind == N_SLICE) {
                index->a = node;
                node = index;
            } else {
                jnode *nd = new_node(p, N_GETITEM, t);
                if (!nd) return NULL;
                nd->a = node;
                nd->b = index;
                node = nd;
            }
        } else if (is_op(t, "(")) {
            jnode *call = new_node(p, N_CALL, t);
            if (!call) return NULL;
            call->a = node;
            call->line = node->line;
            call->col = node->col;
            if (!parse_call_args(p, call)) return NULL;
            node = call;
        } else break;
    }
    return p->failed ? NULL : node;
}

static jnode *parse_primary(parser *p) {
    token *t = cur(p);
    jnode *nd;
    switch (t->kind) {
    case T_NAME:
        nd = new_node(p, N_CONST, t);
        if (!nd) return NULL;
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) { nd->ckind = JV_BOOL; nd->ci = 1; }
        else if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) { nd->ckind = JV_BOOL; nd->ci = 0; }
        else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) nd->ckind = JV_NONE;
        else { nd->kind = N_NAME; nd->str = t->s; }
        advance(p);
        return nd;
    case T_STRING: {
        nd = new_node(p, N_CONST, t);
        if (!nd) return NULL;
        nd->ckind = JV_STRING;
        nd->str = t->s;
        nd->len = t->n;
        advance(p);
        // adjacent string literals concatenate
        while (cur(p)->kind == T_STRING) {
            char *joined = arena_alloc(p->t, nd->len + cur(p)->n + 1);
            if (!joined) return NULL;
            memcpy(joined, nd->str, nd->len);
            memcpy(joined + nd->len, cur(p)->s, cur(p)->n + 1);
            nd->str = joined;
            nd->len += cur(p)->n;
            advance(p);
        }
        return nd;
    }
    case T_INT:
    case T_FLOAT:
        nd = new_node(p, N_CONST, t);
        if (!nd) return NULL;
        nd->ckind = t->kind == T_INT ? JV_INT : JV_FLOAT;
        nd->ci = t->i;
        nd->cf = t->f;
        advance(p);
        return nd;
    case T_OP:
        if (is_op(t, "(")) {
            advance(p);
            if (!enter(p)) return NULL;
            nd = parse_tuple(p, true, NULL, true);
            p->depth--;
            if (!nd || !expect_op(p, ")")) return NULL;
            return nd;
        }
        if (is_op(t, "[") || is_op(t, "{")) {
            bool is_dict = is_op(t, "{");
            const char *close = is_dict ? "}" : "]";
            advance(p);
            if (!enter(p)) return NULL;
            nodevec items = {0};
            while (!p->failed && !is_op(cur(p), close)) {
                if (items.n && !expect_op(p, ",")) break;
                if (is_op(cur(p), close)) break;
                jnode *k = parse_expression(p, true);
                if (!k || !nv_push(p, &items, k, NULL)) break;
                if (is_dict) {
                    if (!expect_op(p, ":")) break;
                    jnode *v = parse_expression(p, true);
                    if (!v || !nv_push(p, &items, v, NULL)) break;
                }
            }
            p->depth--;
            if (!p->failed) expect_op(p, close);
            nd = p->failed ? NULL : new_node(p, is_dict ? N_DICT : N_LIST, t);
            if (nd) { nd->nkids = items.n; nd->kids = nv_finish(p, &items); }
            nv_free(&items);
            return nd;
        }
        break;
    default: break;
    }
    fail_tok(p, t, "unexpected '%s'", describe(t));
    return NULL;
}

// ---------------------------------------------------------------- statements
static jnode *parse_body(parser *p, const char *const *ends);

static bool at_end_tag(parser *p, const char *const *ends) {
    if (cur(p)->kind != T_BLOCK_BEGIN) return false;
    token *name = peek_at(p, 1);
    if (name->kind != T_NAME) return false;
    for (int i = 0; ends && ends[i]; i++)
        if (!strcmp(name->s, ends[i])) return true;
    return false;
}

// Consumes "{% name" of the end tag the body stopped at; returns its name.
static const char *take_end_tag(parser *p) {
    advance(p);
    const char *name = cur(p)->s;
    advance(p);
    return name;
}

static jnode *parse_target(parser *p, bool allow_namespace) {
    token *t = cur(p);
    bool parens = false;
    if (is_op(t, "(")) { parens = true; advance(p); }
    nodevec names = {0};
    bool saw_comma = false;
    for (;;) {
        token *nt = cur(p);
        if (nt->kind != T_NAME) { fail_tok(p, nt, "expected a name to assign to, got '%s'", describe(nt)); break; }
        jnode *nd = new_node(p, N_NAME, nt);
        if (!nd) break;
        nd->str = nt->s;
        advance(p);
        if (allow_namespace && !names.n && is_op(cur(p), ".") && peek_at(p, 1)->kind == T_NAME) {
            advance(p);
            jnode *attr = new_node(p, N_GETATTR, nt);
            if (!attr) break;
            attr->a = nd;
            attr->str = cur(p)->s;
            advance(p);
            nv_free(&names);
            return attr;
        }
        if (!nv_push(p, &names, nd, NULL)) break;
        if (!is_op(cur(p), ",")) break;
        advance(p);
        saw_comma = true;
        if (cur(p)->kind != T_NAME) break;
    }
    if (!p->failed && parens) expect_op(p, ")");
    jnode *result = NULL;
    if (!p->failed) {
        if (names.n == 1 && !saw_comma) result = names.items[0];
        else {
            result = new_node(p, N_TUPLE, t);
            if (result) { result->nkids = names.n; result->kids = nv_finish(p, &names); }
        }
    }
    nv_free(&names);
    return result;
}

static jnode *parse_filter_chain(parser *p) {
    jnode *chain = NULL;
    while (is_op(cur(p), "|")) {
        chain = parse_filter(p, chain);
        if (!chain) return NULL;
    }
    return chain;
}

static const char *const ENDS_IF[] = {"elif", "else", "endif", NULL};
static const char *const ENDS_ENDIF[] = {"endif", NULL};
static const char *const ENDS_FOR[] = {"endfor", "else", NULL};
static const char *const ENDS_ENDFOR[] = {"endfor", NULL};
static const char *const ENDS_SET[] = {"endset", NULL};
static const char *const ENDS_MACRO[] = {"endmacro", NULL};
static const char *const ENDS_CALL[] = {"endcall", NULL};
static const char *const ENDS_FILTER[] = {"endfilter", NULL};
static const char *const ENDS_GENERATION[] = {"endgeneration", NULL};
static const char *const ENDS_WITH[] = {"endwith", NULL};

static jnode *parse_statement(parser *p) {
    token *t = cur(p);  // the tag name
    if (t->kind != T_NAME) { fail_tok(p, t, "expected a tag name, got '%s'", describe(t)); return NULL; }
    const char *tag = t->s;
    if (!strcmp(tag, "if")) {
        jnode *nd = new_node(p, N_IF, t);
        nodevec parts = {0};
        if (!nd) return NULL;
        advance(p);
        for (;;) {
            jnode *cond = parse_tuple(p, false, NULL, false);
            if (!cond || !expect_kind(p, T_BLOCK_END, "end of statement block")) break;
            jnode *body = parse_body(p, ENDS_IF);
            if (!body || !nv_push(p, &parts, cond, NULL) || !nv_push(p, &parts, body, NULL)) break;
            const char *end = take_end_tag(p);
            if (!strcmp(end, "elif")) continue;
            if (!strcmp(end, "else")) {
                if (!expect_kind(p, T_BLOCK_END, "end of statement block")) break;
                nd->c = parse_body(p, ENDS_ENDIF);
                if (!nd->c) break;
                take_end_tag(p);
            }
            expect_kind(p, T_BLOCK_END, "end of statement block");
            break;
        }
        if (!p->failed) { nd->nkids = parts.n; nd->kids = nv_finish(p, &parts); }
        nv_free(&parts);
        return p->failed ? NULL : nd;
    }
    if (!strcmp(tag, "for")) {
        jnode *nd = new_node(p, N_FOR, t);
        if (!nd) return NULL;
        advance(p);
        nd->a = parse_target(p, false);
        if (!nd->a) return NULL;
        if (!is_name(cur(p), "in")) { fail_tok(p, cur(p), "expected 'in', got '%s'", describe(cur(p))); return NULL; }
        advance(p);
        nd->b = parse_tuple(p, false, "recursive", false);
        if (!nd->b) return NULL;
        if (is_name(cur(p), "if")) {
            advance(p);
            nd->c = parse_expression(p, true);
            if (!nd->c) return NULL;
        }
        if (is_name(cur(p), "recursive")) { nd->op = 1; advance(p); }
        if (!expect_kind(p, T_BLOCK_END, "end of statement block")) return NULL;
        nd->d = parse_body(p, ENDS_FOR);
        if (!nd->d) return NULL;
        if (!strcmp(take_end_tag(p), "else")) {
            if (!expect_kind(p, T_BLOCK_END, "end of statement block")) return NULL;
            nd->e = parse_body(p, ENDS_ENDFOR);
            if (!nd->e) return NULL;
            take_end_tag(p);
        }
        return expect_kind(p, T_BLOCK_END, "end of statement block") ? nd : NULL;
    }
    if (!strcmp(tag, "set")) {
        advance(p);
        jnode *target = parse_target(p, true);
        if (!target) return NULL;
        if (is_op(cur(p), "=")) {
            jnode *nd = new_node(p, N_SET, t);
            if (!nd) return NULL;
            advance(p);
            nd->a = target;
            nd->b = parse_tuple(p, true, NULL, false);
            if (!nd->b || !expect_kind(p, T_BLOCK_END, "end of statement block")) return NULL;
            return nd;
        }
        jnode *nd = new_node(p, N_SETBLOCK, t);
        if (!nd) return NULL;
        nd->a = target;
        nd->b = parse_filter_chain(p);
        if (p->failed || !expect_kind(p, T_BLOCK_END, "end of statement block")) return NULL;
        nd->d = parse_body(p, ENDS_SET);
        if (!nd->d) return NULL;
        take_end_tag(p);
        return expect_kind(p, T_BLOCK_END, "end of statement block") ? nd : NULL;
    }
    if (!strcmp(tag, "macro") || !strcmp(tag, "call")) {
        bool is_call = tag[0] == 'c';
        jnode *nd = new_node(p, is_call ? N_CALLBLOCK : N_MACRO, t);
        if (!nd) return NULL;
        advance(p);
        jnode *params_owner = nd;
        if (!is_call) {
            if (cur(p)->kind != T_NAME) { fail_tok(p, cur(p), "expected macro name, got '%s'", describe(cur(p))); return NULL; }
            nd->str = cur(p)->s;
            advance(p);
        }
        // parameter list: name [= default], ...
        if (!is_call || is_op(cur(p), "(")) {
            if (!expect_op(p, "(")) return NULL;
            nodevec params = {0}, defaults = {0};
            while (!p->failed && !is_op(cur(p), ")")) {
                if (params.n && !expect_op(p, ",")) break;
                if (is_op(cur(p), ")")) break;
                token *nt = cur(p);
                if (nt->kind != T_NAME) { fail_tok(p, nt, "expected parameter name, got '%s'", describe(nt)); break; }
                jnode *pn = new_node(p, N_NAME, nt);
                if (!pn) break;
                pn->str = nt->s;
                advance(p);
                jnode *def = NULL;
                if (is_op(cur(p), "=")) {
                    advance(p);
                    def = parse_expression(p, true);
                    if (!def) break;
                } else if (defaults.n && defaults.items[defaults.n - 1]) {
                    fail_tok(p, nt, "%s", "non-default argument follows default argument");
                    break;
                }
                if (!nv_push(p, &params, pn, NULL) || !nv_push(p, &defaults, def, NULL)) break;
            }
            if (!p->failed) expect_op(p, ")");
            if (!p->failed) {
                params_owner->nkids = params.n;
                params_owner->kids = nv_finish(p, &params);
                params_owner->nkw = defaults.n;
                params_owner->kwvals = nv_finish(p, &defaults);
            }
            nv_free(&params);
            nv_free(&defaults);
            if (p->failed) return NULL;
        }
        if (is_call) {
            jnode *callee = parse_expression(p, true);
            if (!callee) return NULL;
            if (callee->kind != N_CALL) { fail_tok(p, t, "%s", "expected a call after 'call'"); return NULL; }
            nd->a = callee;
        }
        if (!expect_kind(p, T_BLOCK_END, "end of statement block")) return NULL;
        nd->d = parse_body(p, is_call ? ENDS_CALL : ENDS_MACRO);
        if (!nd->d) return NULL;
        take_end_tag(p);
        if (!is_call && cur(p)->kind == T_NAME) advance(p);  // {% endmacro name %}
        return expect_kind(p, T_BLOCK_END, "end of statement block") ? nd : NULL;
    }
    if (!strcmp(tag, "filter")) {
        jnode *nd = new_node(p, N_FILTERBLOCK, t);
        if (!nd) return NULL;
        advance(p);
        // "{% filter upper %}" has no leading '|': parse the first filter by hand
        token *nt = cur(p);
        jnode *first = new_node(p, N_FILTER, nt);
        if (!first) return NULL;
        first->str = parse_dotted_name(p);
        if (!first->str) return NULL;
        if (is_op(cur(p), "(") && !parse_call_args(p, first)) return NULL;
        jnode *chain = first;
        while (is_op(cur(p), "|")) {
            chain = parse_filter(p, chain);
            if (!chain) return NULL;
        }
        nd->b = chain;
        if (!expect_kind(p, T_BLOCK_END, "end of statement block")) return NULL;
        nd->d = parse_body(p, ENDS_FILTER);
        if (!nd->d) return NULL;
        take_end_tag(p);
        return expect_kind(p, T_BLOCK_END, "end of statement block") ? nd : NULL;
    }
    if (!strcmp(tag, "break") || !strcmp(tag, "continue")) {
        jnode *nd = new_node(p, tag[0] == 'b' ? N_BREAK : N_CONTINUE, t);
        advance(p);
        return nd && expect_kind(p, T_BLOCK_END, "end of statement block") ? nd : NULL;
    }
    if (!strcmp(tag, "with")) {
        // {% with a = 1, b = x %} ... {% endwith %}: a scope with those names
        jnode *nd = new_node(p, N_WITH, t);
        nodevec names = {0}, values = {0};
        if (!nd) return NULL;
        advance(p);
        while (!p->failed && cur(p)->kind != T_BLOCK_END) {
            if (names.n && !expect_op(p, ",")) break;
            token *nt = cur(p);
            if (nt->kind != T_NAME) { fail_tok(p, nt, "expected a name, got '%s'", describe(nt)); break; }
            jnode *name = new_node(p, N_NAME, nt);
            if (!name) break;
            name->str = nt->s;
            advance(p);
            if (!expect_op(p, "=")) break;
            jnode *v = parse_expression(p, true);
            if (!v || !nv_push(p, &names, name, NULL) || !nv_push(p, &values, v, NULL)) break;
        }
        if (!p->failed) {
            nd->nkids = names.n;
            nd->kids = nv_finish(p, &names);
            nd->nkw = values.n;
            nd->kwvals = nv_finish(p, &values);
        }
        nv_free(&names);
        nv_free(&values);
        if (p->failed || !expect_kind(p, T_BLOCK_END, "end of statement block")) return NULL;
        nd->d = parse_body(p, ENDS_WITH);
        if (!nd->d) return NULL;
        take_end_tag(p);
        return expect_kind(p, T_BLOCK_END, "end of statement block") ? nd : NULL;
    }
    if (!strcmp(tag, "generation")) {
        // transformers' AssistantTracker: renders its body unchanged
        advance(p);
        if (!expect_kind(p, T_BLOCK_END, "end of statement block")) return NULL;
        jnode *body = parse_body(p, ENDS_GENERATION);
        if (!body) return NULL;
        take_end_tag(p);
        return expect_kind(p, T_BLOCK_END, "end of statement block") ? body : NULL;
    }
    fail_tok(p, t, "Encountered unknown tag '%s'", tag);
    return NULL;
}

static jnode *parse_body(parser *p, const char *const *ends) {
    token *start = cur(p);
    jnode *body = new_node(p, N_BODY, start);
    if (!body) return NULL;
    if (!enter(p)) return NULL;
    nodevec kids = {0};
    while (!p->failed) {
        token *t = cur(p);
        if (t->kind == T_EOF) {
            if (ends) {
                char msg[256];
                snprintf(msg, sizeof msg, "unexpected end of template, expected '%s'", ends[0]);
                for (int i = 0; ends[i]; i++) if (!strncmp(ends[i], "end", 3)) snprintf(msg, sizeof msg, "unexpected end of template, expected '%s'", ends[i]);
                fail_at(p, t->line, t->col, "%s", msg);
            }
            break;
        }
        if (at_end_tag(p, ends)) break;
        jnode *nd = NULL;
        if (t->kind == T_DATA) {
            nd = new_node(p, N_DATA, t);
            if (nd) { nd->str = t->s; nd->len = t->n; }
            advance(p);
        } else if (t->kind == T_VAR_BEGIN) {
            advance(p);
            nd = new_node(p, N_OUTPUT, t);
            if (nd) {
                nd->a = parse_tuple(p, true, NULL, false);
                if (!nd->a || !expect_kind(p, T_VAR_END, "'}}'")) nd = NULL;
            }
        } else if (t->kind == T_BLOCK_BEGIN) {
            advance(p);
            token *name = cur(p);
            if (name->kind == T_NAME && (!strncmp(name->s, "end", 3) || !strcmp(name->s, "elif") || !strcmp(name->s, "else"))) {
                fail_tok(p, name, "unexpected '%s'", name->s);
                break;
            }
            nd = parse_statement(p);
        } else {
            fail_tok(p, t, "unexpected '%s'", describe(t));
        }
        if (!nd || !nv_push(p, &kids, nd, NULL)) break;
    }
    p->depth--;
    if (!p->failed) { body->nkids = kids.n; body->kids = nv_finish(p, &kids); }
    nv_free(&kids);
    return p->failed ? NULL : body;
}

// jinja2's builtin filters and tests (plus transformers' tojson). Unknown names outside any
// if/conditional expression are compile-time errors in jinja2; inside one they fail when evaluated.
static const char *const KNOWN_FILTERS[] = {
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
    "last", "length", "list", "lower", "map", "max", "min", "pprint", "random", "reject", "rejectattr",
    "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags",
    "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount",
    "wordwrap", "xmlattr", NULL};
static const char *const KNOWN_TESTS[] = {
    "!=", "<", "<=", "==", ">", ">=", "boolean", "callable", "defined", "divisibleby", "eq", "equalto",
    "escaped", "even", "false", "filter", "float", "ge", "greaterthan", "gt", "in", "integer", "iterable",
    "le", "lessthan", "lower", "lt", "mapping", "ne", "none", "number", "odd", "sameas", "sequence",
    "string", "test", "true", "undefined", "upper", NULL};

static bool known_name(const char *const *list, const char *name) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], name)) return true;
    return false;
}

static bool check_names(parser *p, const jnode *n, bool in_if, int depth) {
    if (!n || depth > 4 * JINJA_MAX_DEPTH) return true;
    if (n->kind == N_IF || n->kind == N_CONDEXPR) in_if = true;
    if (!in_if && n->kind == N_FILTER && !known_name(KNOWN_FILTERS, n->str)) {
        fail_at(p, n->line, n->col, "No filter named '%s'.", n->str);
        return false;
    }
    if (!in_if && n->kind == N_TEST && !known_name(KNOWN_TESTS, n->str)) {
        fail_at(p, n->line, n->col, "No test named '%s'.", n->str);
        return false;
    }
    const jnode *subs[5] = {n->a, n->b, n->c, n->d, n->e};
    for (int i = 0; i < 5; i++)
        if (!check_names(p, subs[i], in_if, depth + 1)) return false;
    for (size_t i = 0; i < n->nkids; i++)
        if (!check_names(p, n->kids[i], in_if, depth + 1)) return false;
    for (size_t i = 0; i < n->nkw; i++)
        if (!check_names(p, n->kwvals[i], in_if, depth + 1)) return false;
    return true;
}

glint_template *glint_template_parse(const char *source, size_t len, const char *name_for_errors) {
    // jinja2 reads a template as text: bytes that are not UTF-8 are its error (and would reach the
    // tokenizer inside every prompt, reported there without the file's name)
    const size_t valid = tok_utf8_valid_prefix(source, len);
    if (valid < len) {
        glint_set_error("%s: invalid UTF-8 at byte %zu", name_for_errors ? name_for_errors : "<template>", valid);
        return NULL;
    }
    glint_template *t = calloc(1, sizeof *t);
    if (!t) { glint_set_error("out of memory parsing template"); return NULL; }
    t->name = glint_strdup(name_for_errors ? name_for_errors : "<template>");
    if (!t->name) { free(t); return NULL; }
    // jinja2 normalizes \r\n and \r to \n and drops one trailing newline (keep_trailing_newline=False).
    char *norm = arena_alloc(t, len + 1);
    if (!norm) { glint_template_free(t); glint_set_error("out of memory parsing template"); return NULL; }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (source[i] == '\r') {
            norm[n++] = '\n';
            if (i + 1 < len && source[i + 1] == '\n') i++;
        } else norm[n++] = source[i];
    }
    if (n && norm[n - 1] == '\n') n--;
    norm[n] = 0;

    parser p = {.t = t, .src = norm, .len = n, .loc_line = 1, .loc_col = 1};
    if (lex(&p)) t->root = parse_body(&p, NULL);
    if (t->root && !p.failed) check_names(&p, t->root, false, 0);
    free(p.toks);
    if (p.failed || !t->root) {
        if (!p.failed) glint_set_error("%s: failed to parse template", t->name);
        glint_template_free(t);
        return NULL;
    }
    return t;
}
