// glint quantize: writes a ModelOpt-layout NVFP4 checkpoint from a BF16/F32/FP8-block one.
#ifndef GLINT_QUANTIZE_H
#define GLINT_QUANTIZE_H

#include <stdint.h>

typedef enum { GLINT_SCOPE_EXPERTS, GLINT_SCOPE_ALL_LINEAR } glint_quant_scope;

typedef struct {
    glint_quant_scope scope;
    uint64_t max_shard_bytes;  // default 5 GB
    int show_progress;         // a progress line on stderr
} glint_quantize_options;

// Quantizes IN into OUT (which must not exist). Writes into OUT.partial-PID and renames it at the
// end; on any failure that directory is removed. Returns 0 or -1 with the error set.
int glint_quantize_checkpoint(const char *in_dir, const char *out_dir, const glint_quantize_options *opts);

// The NVFP4 math (ModelOpt's formulas; tools/quant/reference.py is the Python twin):
// f32 -> FP8 E4M3 (round to nearest even, saturating at 448).
uint8_t glint_f32_to_fp8e4m3(float f);
// Quantizes one row-major [N, K] float matrix: codes [N, K/2], block scales [N, K/16], given the
// global scale ws2 = amax / 2688 (shared by gate and up of one MLP).
void glint_nvfp4_quantize_matrix(const float *w, int64_t N, int64_t K, float ws2, uint8_t *codes, uint8_t *scales);

#endif
