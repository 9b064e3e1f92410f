#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json_file.h"
#include "common/util.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[GLINT_DTYPE_COUNT] = {
    [GLINT_DTYPE_F32] = {"F32", 4},     [GLINT_DTYPE_F16] = {"F16", 2}, [GLINT_DTYPE_BF16] = {"BF16", 2},
    [GLINT_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [GLINT_DTYPE_U8] = {"U8", 1},  [GLINT_DTYPE_I8] = {"I8", 1},
    [GLINT_DTYPE_I32] = {"I32", 4},     [GLINT_DTYPE_I64] = {"I64", 8},
};

const char *glint_dtype_name(glint_dtype dtype) { return dtype < GLINT_DTYPE_COUNT ? dtype_info[dtype].name : "?"; }
size_t glint_dtype_size(glint_dtype dtype) { return dtype < GLINT_DTYPE_COUNT ? dtype_info[dtype].size : 0; }

static int dtype_from_name(const char *s, glint_dtype *out) {
    for (int i = 0; i < GLINT_DTYPE_COUNT; i++)
        if (!strcmp(s, dtype_info[i].name)) {
            *out = (glint_dtype)i;
            return 0;
        }
    return -1;
}

static int compare_tensor_names(const void *a, const void *b) {
    return strcmp(((const glint_st_tensor *)a)->name, ((const glint_st_tensor *)b)->name);
}

static int map_file(const char *path, glint_st_mapping *m) {
    if (glint_check_regular_file(path)) return -1;  // (names what it is instead)
    int fd = open(path, O_RDONLY | O_NONBLOCK);      // a FIFO swapped in since would block a plain open
    if (fd < 0) {
        glint_set_error("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        glint_set_error("%s: not a regular file", path);
        close(fd);
        return -1;
    }
    m->size = (size_t)st.st_size;
    m->base = NULL;
    if (m->size > 0) {
        m->base = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m->base == MAP_FAILED) {
            glint_set_error("%s: mmap failed: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    close(fd);
    m->path = glint_strdup(path);
    return m->path ? 0 : -1;
}

static int compare_tensor_data(const void *a, const void *b) {
    const char *x = ((const glint_st_tensor *const *)a)[0]->data, *y = ((const glint_st_tensor *const *)b)[0]->data;
    return x < y ? -1 : x > y;
}

// The byte ranges of one file's n tensors must not overlap (two names for the same bytes would
// load, and one of them be wrong).
static int check_disjoint(const glint_st_mapping *m, glint_st_tensor *tensors, size_t n) {
    if (n < 2) return 0;
    const glint_st_tensor **order = glint_malloc(n * sizeof *order, "tensor order");
    if (!order) return -1;
    for (size_t i = 0; i < n; i++) order[i] = &tensors[i];
    qsort(order, n, sizeof *order, compare_tensor_data);
    int rc = 0;
    const glint_st_tensor *prev = NULL;  // the last non-empty one (empty tensors take no bytes)
    for (size_t i = 0; i < n && !rc; i++) {
        if (!order[i]->nbytes) continue;
        if (prev && order[i]->data < prev->data + prev->nbytes) {
            glint_set_error("%s: tensors '%s' and '%s' overlap in the data section", m->path, prev->name,
                            order[i]->name);
            rc = -1;
        }
        prev = order[i];
    }
    free(order);
    return rc;
}

// Parses the header of one mapped file and appends its tensors to *list.
static int parse_header(const glint_st_mapping *m, glint_st_tensor **list, size_t *count, size_t *cap) {
    if (m->size < 8) {
        glint_set_error("%s: truncated file (%zu bytes; a safetensors file starts with an 8-byte header length)",
                        m->path, m->size);
        return -1;
    }
    uint64_t header_len;
    memcpy(&header_len, m->base, 8);  // little-endian on every supported host
    if (header_len > m->size - 8) {
        glint_set_error("%s: truncated file: header claims %llu bytes but only %zu follow its 8-byte length", m->path,
                        (unsigned long long)header_len, m->size - 8);
        return -1;
    }
    const char *header = (const char *)m->base + 8;
    size_t data_start = 8 + (size_t)header_len, data_size = m->size - data_start;
    json_error_t jerr;
    json_t *root = json_loadb(header, (size_t)header_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        glint_set_error("%s: header is not valid JSON at line %d column %d: %s", m->path, jerr.line, jerr.column,
                        jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        glint_set_error("%s: header is not a JSON object", m->path);
        json_decref(root);
        return -1;
    }
    const size_t first = *count;  // this file's tensors start here in *list
    const char *key;
    json_t *entry;
    json_object_foreach(root, key, entry) {
        if (!strcmp(key, "__metadata__")) {  // the format's optional string -> string map
            if (!json_is_object(entry)) {
                glint_set_error("%s: __metadata__ must be an object", m->path);
                goto fail;
            }
            continue;
        }
        json_t *jd = json_object_get(entry, "dtype"), *js = json_object_get(entry, "shape"),
               *jo = json_object_get(entry, "data_offsets");
        if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2) {
            glint_set_error("%s: tensor '%s': header entry needs dtype, shape and data_offsets", m->path, key);
            goto fail;
        }
        glint_st_tensor t = {0};
        if (dtype_from_name(json_string_value(jd), &t.dtype)) {
            glint_set_error("%s: tensor '%s': unsupported dtype %s", m->path, key, json_string_value(jd));
            goto fail;
        }
        if (json_array_size(js) > GLINT_MAX_DIMS) {
            glint_set_error("%s: tensor '%s': %zu dimensions (at most %d supported)", m->path, key,
                            json_array_size(js), GLINT_MAX_DIMS);
            goto fail;
        }
        t.ndim = (int)json_array_size(js);
        uint64_t elements = 1;
        for (int d = 0; d < t.ndim; d++) {
            json_t *v = json_array_get(js, (size_t)d);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1ll << 40)) {
                glint_set_error("%s: tensor '%s': bad shape", m->path, key);
                goto fail;
            }
            t.shape[d] = json_integer_value(v);
            if (__builtin_mul_overflow(elements, (uint64_t)t.shape[d], &elements)) {
                glint_set_error("%s: tensor '%s': its shape holds 2^64 elements or more", m->path, key);
                goto fail;
            }
        }
        json_t *b0 = json_array_get(jo, 0), *b1 = json_array_get(jo, 1);
        if (!json_is_integer(b0) || !json_is_integer(b1)) {
            glint_set_error("%s: tensor '%s': data_offsets must be integers", m->path, key);
            goto fail;
        }
        json_int_t begin = json_integer_value(b0), end = json_integer_value(b1);
        uint64_t expect;
        if (__builtin_mul_overflow(elements, (uint64_t)glint_dtype_size(t.dtype), &expect)) expect = UINT64_MAX;
        if (begin < 0 || end < begin || (uint64_t)(end - begin) != expect) {
            glint_set_error("%s: tensor '%s': data_offsets [%lld, %lld] do not match %s shape (%llu bytes)", m->path,
                            key, (long long)begin, (long long)end, json_string_value(jd), (unsigned long long)expect);
            goto fail;
        }
        if ((uint64_t)end > data_size) {
            glint_set_error("%s: truncated file: tensor '%s' ends at byte %lld of the data section, which has %zu",
                            m->path, key, (long long)end, data_size);
            goto fail;
        }
        t.data = (const char *)m->base + data_start + begin;
        t.nbytes = (size_t)expect;
        t.file = m->path;
        t.name = glint_strdup(key);
        if (!t.name) goto fail;
        if (*count == *cap) {
            size_t ncap = *cap ? *cap * 2 : 256;
            glint_st_tensor *nl = realloc(*list, ncap * sizeof **list);
            if (!nl) {
                free(t.name);
                glint_set_error("out of memory reading %s", m->path);
                goto fail;
            }
            *list = nl;
            *cap = ncap;
        }
        (*list)[(*count)++] = t;
    }
    json_decref(root);
    return check_disjoint(m, *list + first, *count - first);
fail:
    json_decref(root);
    return -1;
}

static glint_checkpoint *open_files(char **paths, size_t n_paths) {
    glint_checkpoint *ck = glint_calloc(1, sizeof *ck, "checkpoint");
    if (!ck) return NULL;
    ck->files = glint_calloc(n_paths, sizeof *ck->files, "checkpoint files");
    if (!ck->files) goto fail;
    size_t cap = 0;
    for (size_t i = 0; i < n_paths; i++) {
        if (map_file(paths[i], &ck->files[i])) goto fail;
        ck->n_files++;
        if (parse_header(&ck->files[i], &ck->tensors, &ck->n_tensors, &cap)) goto fail;
    }
    if (ck->n_tensors) qsort(ck->tensors, ck->n_tensors, sizeof *ck->tensors, compare_tensor_names);
    for (size_t i = 1; i < ck->n_tensors; i++)
        if (!strcmp(ck->tensors[i].name, ck->tensors[i - 1].name)) {
            glint_set_error("tensor '%s' appears in both %s and %s", ck->tensors[i].name, ck->tensors[i - 1].file,
                            ck->tensors[i].file);
            goto fail;
        }
    return ck;
fail:
    glint_checkpoint_close(ck);
    return NULL;
}

glint_checkpoint *glint_checkpoint_open_file(const char *path) {
    char *paths[1] = {(char *)path};
    return open_files(paths, 1);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Opens the shards model.safetensors.index.json (root, taken over) lists: the distinct files of
// weight_map, in first-seen order.
static glint_checkpoint *open_index(const char *dir, const char *index_path, json_t *root) {
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        glint_set_error("%s: no \"weight_map\" object", index_path);
        json_decref(root);
        return NULL;
    }
    size_t n = 0, cap = json_object_size(map);
    char **paths = glint_calloc(cap ? cap : 1, sizeof *paths, "shard list");
    glint_checkpoint *ck = NULL;
    if (!paths) goto done;
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        if (!json_is_string(val) || strchr(json_string_value(val), '/')) {
            glint_set_error("%s: weight_map[\"%s\"] must be a file name in the same directory", index_path, key);
            goto done;
        }
        const char *file = json_string_value(val);
        int seen = 0;
        for (size_t i = 0; i < n && !seen; i++) seen = !strcmp(strrchr(paths[i], '/') + 1, file);
        if (seen) continue;
        paths[n] = glint_path_join(dir, file);
        if (!paths[n]) goto done;
        if (!file_exists(paths[n])) {
            glint_set_error("%s: shard listed in %s is missing", paths[n], index_path);
            n++;
            goto done;
        }
        n++;
    }
    ck = open_files(paths, n);
    if (ck)  // every tensor the index names must be in the shard it names
        json_object_foreach(map, key, val) {
            const glint_st_tensor *t = glint_checkpoint_find(ck, key);
            char *listed = glint_path_join(dir, json_string_value(val));
            const int elsewhere = t && listed && strcmp(t->file, listed);
            if (!t || !listed || elsewhere) {
                if (!t) glint_set_error("%s: tensor '%s' listed in the index is not in %s", index_path, key,
                                        json_string_value(val));
                else if (elsewhere)
                    glint_set_error("%s: tensor '%s' is listed in %s but stored in %s", index_path, key,
                                    json_string_value(val), t->file);
                free(listed);
                glint_checkpoint_close(ck);
                ck = NULL;
                break;
            }
            free(listed);
        }
done:
    for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
    json_decref(root);
    return ck;
}

glint_checkpoint *glint_checkpoint_open(const char *dir) {
    struct stat st;
    const int exists = stat(dir, &st) == 0;
    if (!exists || !S_ISDIR(st.st_mode)) {
        glint_set_error("%s: %s", dir, exists ? "not a directory (a model is the checkpoint's directory)"
                                              : "model directory does not exist");
        return NULL;
    }
    char *index = glint_path_join(dir, "model.safetensors.index.json");
    char *single = glint_path_join(dir, "model.safetensors");
    glint_checkpoint *ck = NULL;
    if (index && single) {
        json_t *root;  // the index when there is one (not a directory, FIFO or link to nothing: the error says)
        const int got = glint_json_file(index, JSON_REJECT_DUPLICATES, &root);  // one shard per tensor
        if (!got) ck = open_index(dir, index, root);
        else if (got > 0 && !glint_check_regular_file(single)) ck = glint_checkpoint_open_file(single);
        else if (got > 0 && errno == ENOENT)
            glint_set_error("%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    free(index);
    free(single);
    return ck;
}

void glint_checkpoint_close(glint_checkpoint *ck) {
    if (!ck) return;
    for (size_t i = 0; i < ck->n_tensors; i++) free(ck->tensors[i].name);
    free(ck->tensors);
    for (size_t i = 0; i < ck->n_files; i++) {
        if (ck->files[i].base) munmap(ck->files[i].base, ck->files[i].size);
        free(ck->files[i].path);
    }
    free(ck->files);
    free(ck);
}

const glint_st_tensor *glint_checkpoint_find(const glint_checkpoint *ck, const char *name) {
    size_t lo = 0, hi = ck->n_tensors;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ck->tensors[mid].name, name);
        if (!c) return &ck->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

uint64_t glint_checkpoint_total_bytes(const glint_checkpoint *ck) {
    uint64_t total = 0;
    for (size_t i = 0; i < ck->n_tensors; i++) total += ck->tensors[i].nbytes;
    return total;
}
