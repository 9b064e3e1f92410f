// glint render-chat (-m DIR | --template FILE): chat request JSON on stdin -> prompt text on stdout.
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "common/util.h"
#include "text/chat.h"


// Errors are one line on stderr: newlines inside a message (e.g. a raise_exception text) are escaped.
static void print_error(void) {
    fputs("glint render-chat: ", stderr);
    for (const char *p = glint_last_error(); *p; p++) {
        if (*p == '\n') fputs("\\n", stderr);
        else if (*p == '\r') fputs("\\r", stderr);
        else fputc(*p, stderr);
    }
    fputc('\n', stderr);
}

int cmd_render_chat(int argc, char **argv) {
    const char *model_dir = NULL, *template_path = NULL;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model_dir = argv[++i];
        else if (!strcmp(argv[i], "--template") && i + 1 < argc) template_path = argv[++i];
        else {
            fprintf(stderr, "glint render-chat: unknown argument '%s'\nusage: glint render-chat (-m DIR | --template FILE) < request.json\n", argv[i]);
            return 1;
        }
    }
    if (!model_dir == !template_path) {
        fprintf(stderr, "usage: glint render-chat (-m DIR | --template FILE) < request.json\n");
        return 1;
    }
    json_t *special = NULL;
    glint_template *tmpl = NULL;
    if (template_path) {
        size_t len;
        char *src = glint_read_text_file(template_path, &len);
        if (src) tmpl = glint_template_parse(src, len, template_path);
        free(src);
    } else {
        tmpl = glint_chat_load_model_template(model_dir, &special);
    }
    if (!tmpl) {
        print_error();
        json_decref(special);
        return 1;
    }
    size_t in_len = 0;
    char *input = glint_read_stream(stdin, "stdin", &in_len);
    int status = 1;
    json_t *request = NULL;
    if (!input) {
        fprintf(stderr, "glint render-chat: cannot read stdin\n");
        goto out;
    }
    json_error_t err;
    request = json_loadb(input, in_len, JSON_ALLOW_NUL, &err);
    if (!request) {
        fprintf(stderr, "glint render-chat: request JSON: line %d column %d: %s\n", err.line, err.column, err.text);
        goto out;
    }
    size_t out_len = 0;
    char *text = glint_chat_render(tmpl, request, special, &out_len);
    if (!text) {
        print_error();
        goto out;
    }
    status = fwrite(text, 1, out_len, stdout) == out_len && fflush(stdout) == 0 ? 0 : 1;
    if (status) fprintf(stderr, "glint render-chat: write error on stdout\n");
    free(text);
out:
    free(input);
    json_decref(request);
    json_decref(special);
    glint_template_free(tmpl);
    return status;
}
