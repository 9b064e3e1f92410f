// A growable byte string for building responses and parser output. Allocation failure aborts:
// the server cannot answer anything sensible without memory, and a NULL check on every append
// would hide the logic.
#ifndef GLINT_SERVER_BUF_H
#define GLINT_SERVER_BUF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;  // NUL-terminated when not NULL
    size_t len, cap;
} glint_buf;

static inline void glint_buf_reserve(glint_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) {
        fprintf(stderr, "glint serve: out of memory\n");
        abort();
    }
    b->data = grown;
    b->cap = cap;
}

static inline void glint_buf_append(glint_buf *b, const char *s, size_t n) {
    glint_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static inline void glint_buf_puts(glint_buf *b, const char *s) { glint_buf_append(b, s, strlen(s)); }

static inline void glint_buf_clear(glint_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

static inline void glint_buf_free(glint_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

// Removes the first n bytes.
static inline void glint_buf_consume(glint_buf *b, size_t n) {
    if (n >= b->len) {
        glint_buf_clear(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = 0;
}

#endif
