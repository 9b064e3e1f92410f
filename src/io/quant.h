// Quantized checkpoints (spec/FORMATS.md): which format a linear layer is stored in, decided from
// the safetensors header, cross-checked against the checkpoint's quantization config.
#ifndef GLINT_QUANT_H
#define GLINT_QUANT_H

#include <stdint.h>

#include "backend/backend.h"
#include "io/safetensors.h"

typedef enum {
    GLINT_QUANT_NONE,
    GLINT_QUANT_MODELOPT,            // hf_quant_config.json or quantization_config.quant_method "modelopt"
    GLINT_QUANT_COMPRESSED_TENSORS,  // quant_method "compressed-tensors" (nvfp4-pack-quantized)
    GLINT_QUANT_FP8,                 // quant_method "fp8" (block-scaled, weight_scale_inv)
    GLINT_QUANT_GPTQ,                // quant_method "gptq"
} glint_quant_method;

#define GLINT_MAX_EXCLUDES 512

typedef struct {
    glint_quant_method method;
    char algo[32];      // ModelOpt quant_algo ("NVFP4", "MIXED_PRECISION", "FP8", ...)
    char source[64];    // file that described it, for messages
    int group_size;     // NVFP4: 16; GPTQ: group size
    int block_size;     // FP8: weight_block_size edge
    int bits;           // GPTQ
    int n_excludes;
    char *excludes[GLINT_MAX_EXCLUDES];  // module patterns that stay unquantized
} glint_quant_config;

// Reads DIR/hf_quant_config.json or config.json's quantization_config. Absent: method NONE.
int glint_quant_config_load(const char *dir, glint_quant_config *qc);
void glint_quant_config_free(glint_quant_config *qc);
// Whether the config lists MODULE (e.g. "model.layers.3.self_attn.q_a_proj") as not quantized.
int glint_quant_is_excluded(const glint_quant_config *qc, const char *module);

// Binds the linear MODULE of logical shape [rows, cols] if it is stored quantized: returns 1 and
// fills *w (with *bytes the bytes it occupies), 0 if MODULE.weight is a plain float tensor (the
// caller binds it), -1 with the error set when the tensors are inconsistent or disagree with qc.
int glint_bind_quantized_linear(const glint_checkpoint *ckpt, const glint_quant_config *qc, const char *module,
                                int64_t rows, int64_t cols, glint_weight *w, uint64_t *bytes);

const char *glint_weight_format_name(const glint_weight *w);
// Bytes a weight occupies as stored (codes + scales).
uint64_t glint_weight_stored_bytes(const glint_weight *w);
// w's rows [start, start + count) (axis 0) or columns (axis 1) as a weight of its own (tensor
// parallelism). Row parts of BF16 / NVFP4 / FP8-block weights and column parts of GPTQ weights are
// views into w's memory (*copy = NULL); the others are copied into *copy, which the caller frees once
// the part is no longer used. 0, or -1 with the error set (naming the weight) when the format's
// blocks do not allow the cut. copy NULL: nothing is copied; a part that needs a copy returns 1
// with only its shape in *out (the cut is checked all the same).
int glint_weight_part(const glint_weight *w, int axis, int64_t start, int64_t count, glint_weight *out, void **copy);

#endif
