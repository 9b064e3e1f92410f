// Shared helpers: error reporting, numeric conversions, timing, small allocation wrappers.
#ifndef GLINT_UTIL_H
#define GLINT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

// Errors: library code records one message (what and where) and returns a failure code;
// the CLI prints it on stderr, the server returns it to the client.
void glint_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prefixes the current error with more context ("loading DIR: " + old message).
void glint_prefix_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *glint_last_error(void);
void glint_clear_error(void);

// Allocation that reports failure through glint_set_error (callers still check for NULL).
void *glint_malloc(size_t bytes, const char *what);
void *glint_calloc(size_t count, size_t size, const char *what);
char *glint_strdup(const char *s);

// bfloat16 / float16 / fp8 e4m3 -> float32 (exact conversions).
static inline float glint_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
// float32 -> bfloat16, round to nearest even (as torch does); NaN stays NaN.
static inline uint16_t glint_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}
float glint_f16_to_f32(uint16_t h);
float glint_fp8e4m3_to_f32(uint8_t v);

double glint_now_seconds(void);

// Index of the first largest value of v[0..n) (greedy decoding): a NaN never beats an earlier value,
// so a NaN first value stays and later NaNs are skipped.
static inline int32_t glint_argmax(const float *v, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

// Parses a non-negative decimal integer that must fill the whole string.
int glint_parse_int64(const char *s, int64_t *out);

// Reads a whole stream / file into a NUL-terminated buffer. NULL + error (naming `name`/path) on failure.
char *glint_read_stream(FILE *f, const char *name, size_t *len_out);
char *glint_read_text_file(const char *path, size_t *len_out);
// 0 when path is a regular file (symlinks followed). Otherwise -1 with the error set and errno ENOENT
// when nothing is there (optional files are skipped), EINVAL for a directory, FIFO (it would block
// the reader forever), device or a link to nothing, or stat's error. Checked before a checkpoint's
// files are opened (a user's text file may well be a pipe).
int glint_check_regular_file(const char *path);

// Joins dir + "/" + name into a new string.
char *glint_path_join(const char *dir, const char *name);

#endif
