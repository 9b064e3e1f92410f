// tokenize / detokenize / render-chat (issue: text in and out). Being written.
#include <stdio.h>

#include "cli/commands.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "glint tokenize: not implemented yet\n");
    return 1;
}
int cmd_detokenize(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "glint detokenize: not implemented yet\n");
    return 1;
}
