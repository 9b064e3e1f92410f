// generate / logits / info / bench. Being written.
#include <stdio.h>

#include "cli/commands.h"

#define NOT_YET(fn, name)                                              \
    int fn(int argc, char **argv) {                                    \
        (void)argc, (void)argv;                                        \
        fprintf(stderr, "glint " name ": not implemented yet\n");      \
        return 1;                                                      \
    }
NOT_YET(cmd_generate, "generate")
NOT_YET(cmd_logits, "logits")
NOT_YET(cmd_info, "info")
NOT_YET(cmd_bench, "bench")
