#include "common/json_file.h"

#include <errno.h>

#include "common/util.h"

int glint_json_file(const char *path, size_t flags, json_t **out) {
    *out = NULL;
    if (glint_check_regular_file(path)) return errno == ENOENT ? 1 : -1;
    json_error_t err;
    *out = json_load_file(path, flags, &err);
    if (*out) return 0;
    glint_set_error("%s: not valid JSON at line %d column %d: %s", path, err.line, err.column, err.text);
    return -1;
}
