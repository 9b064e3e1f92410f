// Safetensors checkpoints: one file or shards listed in model.safetensors.index.json.
// Files are mmapped read-only; tensor data pointers point into the mappings.
#ifndef GLINT_SAFETENSORS_H
#define GLINT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    GLINT_DTYPE_F32,
    GLINT_DTYPE_F16,
    GLINT_DTYPE_BF16,
    GLINT_DTYPE_F8_E4M3,
    GLINT_DTYPE_U8,
    GLINT_DTYPE_I8,
    GLINT_DTYPE_I32,
    GLINT_DTYPE_I64,
    GLINT_DTYPE_COUNT
} glint_dtype;

const char *glint_dtype_name(glint_dtype dtype);
size_t glint_dtype_size(glint_dtype dtype);

#define GLINT_MAX_DIMS 4

typedef struct {
    char *name;
    glint_dtype dtype;
    int ndim;
    int64_t shape[GLINT_MAX_DIMS];
    const void *data;  // into the file mapping
    size_t nbytes;
    const char *file;  // the shard that holds it (for error messages)
} glint_st_tensor;

typedef struct {
    void *base;
    size_t size;
    char *path;
} glint_st_mapping;

typedef struct {
    glint_st_tensor *tensors;  // sorted by name
    size_t n_tensors;
    glint_st_mapping *files;
    size_t n_files;
} glint_checkpoint;

// Opens DIR/model.safetensors.index.json (shards) or DIR/model.safetensors.
// Returns NULL and sets the error (naming file and problem) on failure.
glint_checkpoint *glint_checkpoint_open(const char *dir);
// Opens one safetensors file.
glint_checkpoint *glint_checkpoint_open_file(const char *path);
void glint_checkpoint_close(glint_checkpoint *ckpt);
const glint_st_tensor *glint_checkpoint_find(const glint_checkpoint *ckpt, const char *name);
uint64_t glint_checkpoint_total_bytes(const glint_checkpoint *ckpt);

#endif
