// glint quantize -m IN -o OUT --format nvfp4 [--scope experts|all-linear] [--max-shard-size BYTES]
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "common/util.h"
#include "io/quantize.h"

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *format = NULL;
    glint_quantize_options opts = {.scope = GLINT_SCOPE_EXPERTS, .show_progress = isatty(2)};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "glint quantize: option %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) in = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--format")) format = v;
        else if (!strcmp(a, "--scope")) {
            if (!strcmp(v, "experts")) opts.scope = GLINT_SCOPE_EXPERTS;
            else if (!strcmp(v, "all-linear")) opts.scope = GLINT_SCOPE_ALL_LINEAR;
            else {
                fprintf(stderr, "glint quantize: --scope must be experts or all-linear, not '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--max-shard-size")) {
            int64_t n;
            if (glint_parse_int64(v, &n) || n < 1) {
                fprintf(stderr, "glint quantize: bad --max-shard-size '%s'\n", v);
                return 2;
            }
            opts.max_shard_bytes = (uint64_t)n;
        } else {
            fprintf(stderr, "glint quantize: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (!in || !out || !format) {
        fprintf(stderr, "usage: glint quantize -m IN -o OUT --format nvfp4 [--scope experts|all-linear]\n");
        return 2;
    }
    if (strcmp(format, "nvfp4")) {
        fprintf(stderr, "glint quantize: --format %s is not supported (nvfp4 is)\n", format);
        return 2;
    }
    if (glint_quantize_checkpoint(in, out, &opts)) {
        fprintf(stderr, "glint quantize: %s\n", glint_last_error());
        return 1;
    }
    fprintf(stderr, "glint quantize: wrote %s\n", out);
    return 0;
}
