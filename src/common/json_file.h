// JSON files of a checkpoint (config.json, generation_config.json, hf_quant_config.json, the
// safetensors index), read one way.
#ifndef GLINT_JSON_FILE_H
#define GLINT_JSON_FILE_H

#include <jansson.h>

// Loads path with jansson's flags; it must be a regular file (glint_check_regular_file). 0: *out
// holds the document; 1: nothing is there (an optional file is skipped; the error names the path for
// a caller that needs it); -1: the error is set, naming the file and, for bad JSON, line and column.
int glint_json_file(const char *path, size_t flags, json_t **out);

#endif
