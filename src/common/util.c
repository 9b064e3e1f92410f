#include "common/util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

static _Thread_local char error_buffer[2048];

void glint_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_buffer, sizeof error_buffer, fmt, ap);
    va_end(ap);
}

void glint_prefix_error(const char *fmt, ...) {
    char prefix[1024];
    char old[sizeof error_buffer];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_buffer, sizeof old);
    // Truncation of very long messages is acceptable; copy by hand so the compiler sees bounds.
    size_t a = strlen(prefix), b = strlen(old);
    if (a > sizeof error_buffer - 1) a = sizeof error_buffer - 1;
    if (b > sizeof error_buffer - 1 - a) b = sizeof error_buffer - 1 - a;
    memcpy(error_buffer, prefix, a);
    memcpy(error_buffer + a, old, b);
    error_buffer[a + b] = 0;
}

const char *glint_last_error(void) { return error_buffer[0] ? error_buffer : "unknown error"; }
void glint_clear_error(void) { error_buffer[0] = 0; }

void *glint_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) glint_set_error("out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *glint_calloc(size_t count, size_t size, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) glint_set_error("out of memory allocating %zu x %zu bytes for %s", count, size, what);
    return p;
}

char *glint_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = glint_malloc(n, "string");
    if (d) memcpy(d, s, n);
    return d;
}

float glint_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) & 1u, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    float v;
    if (exp == 0) v = ldexpf((float)mant, -24);
    else if (exp == 31) v = mant ? NAN : INFINITY;
    else v = ldexpf((float)(mant | 0x400u), (int)exp - 25);
    return sign ? -v : v;
}

// E4M3 "fn" variant: no infinities, 0x7f/0xff are NaN, bias 7, subnormals 2^-6 * m/8.
float glint_fp8e4m3_to_f32(uint8_t x) {
    uint32_t sign = x >> 7, exp = (x >> 3) & 0xfu, mant = x & 0x7u;
    float v;
    if (exp == 15 && mant == 7) v = NAN;
    else if (exp == 0) v = ldexpf((float)mant, -9);
    else v = ldexpf((float)(mant | 8u), (int)exp - 10);
    return sign ? -v : v;
}

double glint_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int glint_parse_int64(const char *s, int64_t *out) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0) return -1;
    *out = v;
    return 0;
}

char *glint_read_stream(FILE *f, const char *name, size_t *len_out) {
    size_t cap = 1 << 16, len = 0;
    char *buf = glint_malloc(cap, name);
    while (buf) {
        if (len + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                glint_set_error("%s: out of memory", name);
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) break;
    }
    if (buf && ferror(f)) {
        glint_set_error("%s: read error: %s", name, strerror(errno));
        free(buf);
        buf = NULL;
    }
    if (!buf) return NULL;
    buf[len] = 0;
    if (len_out) *len_out = len;
    return buf;
}

int glint_check_regular_file(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        if (e == ENOENT && !lstat(path, &st)) {  // a link to nothing is not "absent": say what it is
            glint_set_error("%s: a symbolic link to a missing file", path);
            e = EINVAL;
        } else {
            glint_set_error("%s: %s", path, strerror(e));
        }
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        glint_set_error("%s: not a regular file (%s)", path,
                        S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : "a device or socket");
        errno = EINVAL;
        return -1;
    }
    return 0;
}

char *glint_read_text_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        glint_set_error("%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = glint_read_stream(f, path, len_out);
    fclose(f);
    return buf;
}

char *glint_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = glint_malloc(a + b + 2, "path");
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}
