// Writing safetensors shards: the tensor list is planned first (names, dtypes, shapes), so each
// shard's header is written before its data, and data is then streamed one tensor at a time.
#ifndef GLINT_SAFETENSORS_WRITE_H
#define GLINT_SAFETENSORS_WRITE_H

#include <stdint.h>
#include <stdio.h>

#include "io/safetensors.h"

typedef struct {
    char *name;
    glint_dtype dtype;
    int ndim;
    int64_t shape[GLINT_MAX_DIMS];
    uint64_t nbytes;
    int shard;        // assigned by glint_st_plan_shards
    uint64_t offset;  // within its shard's data section
} glint_st_out_tensor;

typedef struct {
    glint_st_out_tensor *tensors;
    size_t n, cap;
    int n_shards;
} glint_st_plan;

// Adds a tensor to the plan (shape of ndim dims; ndim 0 = scalar). Returns 0 or -1.
int glint_st_plan_add(glint_st_plan *plan, const char *name, glint_dtype dtype, int ndim, const int64_t *shape);
// Splits the tensors, in the order added, into shards of at most max_shard_bytes (a larger tensor
// gets a shard of its own).
void glint_st_plan_shards(glint_st_plan *plan, uint64_t max_shard_bytes);
void glint_st_plan_free(glint_st_plan *plan);
// "model-00001-of-00003.safetensors"
void glint_st_shard_name(const glint_st_plan *plan, int shard, char *buf, size_t len);

// Opens shard `shard` in dir and writes its header; the caller then writes each of its tensors'
// bytes in plan order with fwrite. Returns NULL with the error set on failure.
FILE *glint_st_begin_shard(const glint_st_plan *plan, const char *dir, int shard);
// Writes dir/model.safetensors.index.json for the plan.
int glint_st_write_index(const glint_st_plan *plan, const char *dir);

#endif
