// Internals shared by the Jinja lexer/parser (jinja_parse.c), values (jinja_value.c) and the
// evaluator (jinja_eval.c). Not part of the public API.
#ifndef GLINT_JINJA_INTERNAL_H
#define GLINT_JINJA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "text/jinja.h"

// Limits that keep hostile templates and requests from exhausting the process.
#define JINJA_MAX_DEPTH 200                    // nesting of expressions / statements / macro calls
#define JINJA_MAX_OUTPUT ((size_t)256 << 20)   // bytes of any one string or the rendered output
#define JINJA_MAX_RANGE 100000                 // jinja2's sandbox MAX_RANGE

// ---------------------------------------------------------------- growable byte buffer
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;  // allocation failed or the size limit was hit
} strbuf;

void sb_init(strbuf *sb);
void sb_free(strbuf *sb);
bool sb_append(strbuf *sb, const char *s, size_t n);
bool sb_puts(strbuf *sb, const char *s);
bool sb_putc(strbuf *sb, char c);
bool sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *sb_take(strbuf *sb, size_t *len);  // NUL-terminated; sb is emptied

// ---------------------------------------------------------------- values
typedef enum {
    JV_UNDEFINED,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STRING,
    JV_LIST,       // Python list, or tuple when is_tuple
    JV_DICT,       // insertion-ordered, immutable once built (the sandbox forbids mutation)
    JV_NAMESPACE,  // namespace(): the only mutable object
    JV_MACRO,
    JV_FUNC,       // a builtin global or a bound method (receiver + name)
} jv_kind;

typedef struct jv_obj jv_obj;
typedef struct {
    jv_kind kind;
    union {
        bool b;
        int64_t i;
        double f;
        jv_obj *obj;  // STRING, LIST, DICT, NAMESPACE, MACRO, FUNC
    } u;
} jv;

struct jv_obj {
    int refs;
};

typedef struct {
    jv_obj h;
    size_t len;
    char data[];  // UTF-8, NUL-terminated
} jv_string;

// What a JV_LIST stands for besides a list/tuple: Python objects jinja2 filters and dict methods
// return, which print, test and index differently (a generator is truthy, has no len, is consumed
// by its first iteration; dict views print as dict_items([...]) and cannot be indexed).
typedef enum { SEQ_PLAIN, SEQ_GENERATOR, SEQ_REVERSE_ITER, SEQ_DICT_ITEMS, SEQ_DICT_KEYS, SEQ_DICT_VALUES,
               SEQ_GROUP } seq_flavor;  // SEQ_GROUP: groupby's (grouper, list) namedtuple

typedef struct {
    jv_obj h;
    size_t len, cap;
    jv *items;
    bool is_tuple;
    seq_flavor flavor;
    bool consumed;  // generators: already iterated once
} jv_list;

typedef struct {
    jv_obj h;
    size_t len, cap;
    jv *keys, *vals;
    bool is_loop;  // the `loop` object of a for loop (has loop.cycle; callable in recursive loops)
    const struct jnode *loop_node;  // N_FOR that made it
    struct jscope *loop_scope;      // scope the for statement runs in
    int loop_depth;                 // 1-based loop.depth
} jv_dict;

struct jnode;
struct jscope;
typedef struct {
    jv_obj h;
    const struct jnode *def;  // N_MACRO node
    struct jscope *closure;   // scope where the macro was defined (lives until the render ends)
} jv_macro;

typedef struct {
    jv_obj h;
    const char *name;  // static string: builtin name or method name
    jv self;           // receiver of a bound method, UNDEFINED for globals
} jv_func;

static inline jv jv_undefined(void) { jv v = {.kind = JV_UNDEFINED}; return v; }
static inline jv jv_none(void) { jv v = {.kind = JV_NONE}; return v; }
static inline jv jv_bool(bool b) { jv v = {.kind = JV_BOOL, .u.b = b}; return v; }
static inline jv jv_int(int64_t i) { jv v = {.kind = JV_INT, .u.i = i}; return v; }
static inline jv jv_float(double f) { jv v = {.kind = JV_FLOAT, .u.f = f}; return v; }
static inline bool jv_is_obj(jv v) { return v.kind >= JV_STRING; }

jv jv_incref(jv v);  // returns v
void jv_decref(jv v);

// Constructors return kind UNDEFINED with ok=false only on allocation failure; callers check jv_ok.
jv jv_string_n(const char *s, size_t n);
jv jv_string_c(const char *s);
jv jv_string_take(strbuf *sb);  // builds from a buffer and frees it
jv jv_list_new(size_t cap, bool is_tuple);
bool jv_list_push(jv list, jv item);  // takes ownership of item
jv jv_dict_new(size_t cap, jv_kind kind);  // JV_DICT or JV_NAMESPACE
bool jv_dict_set(jv dict, jv key, jv value);  // takes ownership of key and value; replaces in place
bool jv_dict_append_unique(jv dict, jv key, jv value);  // caller guarantees key is new
jv jv_macro_new(const struct jnode *def, struct jscope *closure);
jv jv_func_new(const char *name, jv self);  // self is borrowed (incref'ed)

static inline jv_string *jv_str(jv v) { return (jv_string *)v.u.obj; }
static inline jv_list *jv_lst(jv v) { return (jv_list *)v.u.obj; }
static inline jv_dict *jv_dct(jv v) { return (jv_dict *)v.u.obj; }

// Dictionary lookup with Python equality; returns a borrowed value or NULL.
const jv *jv_dict_get(jv dict, jv key);
const jv *jv_dict_get_c(jv dict, const char *key);

bool jv_truthy(jv v);
bool jv_equal(jv a, jv b);
bool jv_is_number(jv v);  // int, float or bool (Python numbers.Number)
double jv_as_double(jv v);
const char *jv_type_name(jv v);  // Python type name for error messages

// str(v) and repr(v) as Python prints them. Return false on allocation failure.
bool jv_to_str(strbuf *sb, jv v);
bool jv_repr(strbuf *sb, jv v);
void format_python_float(char *buf, size_t size, double f);  // repr(float)

// json.dumps(v, ensure_ascii, indent, separators, sort_keys). Returns false with *err set to a
// static message on a value JSON cannot hold (undefined, macro, ...).
typedef struct {
    bool ensure_ascii;
    bool has_indent;
    const char *indent;  // indentation unit when has_indent
    const char *item_sep, *key_sep;
    bool sort_keys;
} json_dump_opts;
bool jv_to_json(strbuf *sb, jv v, const json_dump_opts *opts, int level, const char **err);

jv jv_from_json(const json_t *j);  // UNDEFINED on allocation failure

// ---------------------------------------------------------------- UTF-8 helpers
size_t utf8_decode(const char *s, size_t len, size_t pos, uint32_t *cp);  // returns bytes consumed (>=1)
size_t utf8_encode(uint32_t cp, char *out);
size_t utf8_count(const char *s, size_t len);
bool py_isspace(uint32_t cp);

// ---------------------------------------------------------------- AST
typedef enum {
    // expressions
    N_CONST,     // value in cval
    N_NAME,      // str
    N_LIST,      // kids
    N_TUPLE,     // kids
    N_DICT,      // kids: key, value, key, value...
    N_GETATTR,   // a.str
    N_GETITEM,   // a[b]
    N_SLICE,     // a[b:c:d] (b/c/d may be NULL)
    N_CALL,      // a(args) : kids positional, kwnames/kwvals
    N_FILTER,    // a|str(args); a NULL inside a filter block
    N_TEST,      // a is [not] str(args); op = 1 when negated
    N_BINOP,     // op: '+','-','*','/','F'(//),'%','P'(**),'~'
    N_NEG,
    N_POS,
    N_NOT,
    N_AND,
    N_OR,
    N_COMPARE,   // a, then kids (operands) and cmp_ops
    N_CONDEXPR,  // b if a else c (c may be NULL)
    // statements
    N_BODY,      // kids
    N_DATA,      // str/len
    N_OUTPUT,    // a
    N_IF,        // kids: cond, body, cond, body, ...; c: else body or NULL
    N_FOR,       // a: target, b: iter, c: filter or NULL, d: body, e: else body or NULL; op = 1 when recursive
    N_SET,       // a: target, b: value
    N_SETBLOCK,  // a: target, d: body, b: filter chain applied to body (N_FILTER with NULL at its root)
    N_MACRO,     // str: name, kids: params (N_NAME), kwvals: defaults (NULL where none), d: body
    N_CALLBLOCK, // a: N_CALL of the macro, d: body (caller), kids: caller params
    N_FILTERBLOCK, // b: filter chain, d: body
    N_BREAK,
    N_CONTINUE,
    N_WITH,      // kids: targets (N_NAME), kwvals: values, d: body
} jnode_kind;

typedef enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN } cmp_op;

typedef struct jnode {
    jnode_kind kind;
    int line, col;
    int op;
    const char *str;  // names, data text (arena)
    size_t len;
    struct jnode *a, *b, *c, *d, *e;
    struct jnode **kids;
    size_t nkids;
    const char **kwnames;
    struct jnode **kwvals;
    size_t nkw;
    cmp_op *cmp_ops;
    // N_CONST: only immutable scalars and strings, materialized per render (thread safety).
    jv_kind ckind;
    int64_t ci;
    double cf;
} jnode;

struct glint_template {
    char *name;
    struct arena_block *arena;
    jnode *root;
};

#endif
