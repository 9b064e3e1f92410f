// render-chat (issue: text in and out). Being written.
#include <stdio.h>

#include "cli/commands.h"

int cmd_render_chat(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "glint render-chat: not implemented yet\n");
    return 1;
}
