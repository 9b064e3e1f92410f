#include "io/safetensors_write.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int glint_st_plan_add(glint_st_plan *plan, const char *name, glint_dtype dtype, int ndim, const int64_t *shape) {
    if (plan->n == plan->cap) {
        size_t cap = plan->cap ? plan->cap * 2 : 256;
        glint_st_out_tensor *grown = realloc(plan->tensors, cap * sizeof *grown);
        if (!grown) {
            glint_set_error("out of memory planning output tensors");
            return -1;
        }
        plan->tensors = grown;
        plan->cap = cap;
    }
    glint_st_out_tensor *t = &plan->tensors[plan->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = glint_strdup(name))) return -1;
    t->dtype = dtype;
    t->ndim = ndim;
    t->nbytes = glint_dtype_size(dtype);
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->nbytes *= (uint64_t)shape[d];
    }
    plan->n++;
    return 0;
}

void glint_st_plan_shards(glint_st_plan *plan, uint64_t max_shard_bytes) {
    int shard = 0;
    uint64_t used = 0;
    for (size_t i = 0; i < plan->n; i++) {
        glint_st_out_tensor *t = &plan->tensors[i];
        if (used > 0 && used + t->nbytes > max_shard_bytes) shard++, used = 0;
        t->shard = shard;
        t->offset = used;
        used += t->nbytes;
    }
    plan->n_shards = plan->n ? shard + 1 : 0;
}

void glint_st_plan_free(glint_st_plan *plan) {
    for (size_t i = 0; i < plan->n; i++) free(plan->tensors[i].name);
    free(plan->tensors);
    memset(plan, 0, sizeof *plan);
}

void glint_st_shard_name(const glint_st_plan *plan, int shard, char *buf, size_t len) {
    snprintf(buf, len, "model-%05d-of-%05d.safetensors", shard + 1, plan->n_shards);
}

FILE *glint_st_begin_shard(const glint_st_plan *plan, const char *dir, int shard) {
    json_t *header = json_object();
    for (size_t i = 0; i < plan->n; i++) {
        const glint_st_out_tensor *t = &plan->tensors[i];
        if (t->shard != shard) continue;
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_object_set_new(header, t->name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", glint_dtype_name(t->dtype), "shape", shape,
                                      "data_offsets", (json_int_t)t->offset, (json_int_t)(t->offset + t->nbytes)));
    }
    json_object_set_new(header, "__metadata__", json_pack("{s:s}", "format", "pt"));
    char *text = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(header);
    char name[64];
    glint_st_shard_name(plan, shard, name, sizeof name);
    char *path = glint_path_join(dir, name);
    FILE *f = NULL;
    if (text && path) {
        size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;  // data section 8-byte aligned
        uint64_t header_len = padded;
        f = fopen(path, "wb");
        if (!f) glint_set_error("%s: cannot create: %s", path, strerror(errno));
        else if (fwrite(&header_len, 8, 1, f) != 1 || fwrite(text, 1, len, f) != len ||
                 fwrite("        ", 1, padded - len, f) != padded - len) {
            glint_set_error("%s: write failed: %s", path, strerror(errno));
            fclose(f);
            f = NULL;
        }
    }
    free(text);
    free(path);
    return f;
}

int glint_st_write_index(const glint_st_plan *plan, const char *dir) {
    uint64_t total = 0;
    json_t *map = json_object();
    for (size_t i = 0; i < plan->n; i++) {
        char name[64];
        glint_st_shard_name(plan, plan->tensors[i].shard, name, sizeof name);
        json_object_set_new(map, plan->tensors[i].name, json_string(name));
        total += plan->tensors[i].nbytes;
    }
    json_t *root = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", map);
    char *path = glint_path_join(dir, "model.safetensors.index.json");
    int rc = path && !json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) ? 0 : -1;
    if (rc) glint_set_error("%s: cannot write", path ? path : dir);
    free(path);
    json_decref(root);
    return rc;
}
