// glint tokenize / glint detokenize (DESIGN.md §6): text <-> ids through a tokenizer.json.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "common/util.h"
#include "text/tokenizer.h"

typedef struct {
    const char *model_dir;
    const char *tokenizer_file;
    int flag;  // --add-special-tokens / --skip-special-tokens
} text_args;

static int parse_args(const char *command, const char *flag_name, int argc, char **argv, text_args *args) {
    memset(args, 0, sizeof *args);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            args->model_dir = argv[++i];
        } else if (!strcmp(a, "--tokenizer") && i + 1 < argc) {
            args->tokenizer_file = argv[++i];
        } else if (!strcmp(a, flag_name)) {
            args->flag = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: glint %s (-m DIR | --tokenizer FILE) [%s]\n", command, flag_name);
            return 0;
        } else {
            fprintf(stderr, "glint %s: unknown or incomplete option '%s' (usage: glint %s (-m DIR | --tokenizer FILE) [%s])\n",
                    command, a, command, flag_name);
            return -1;
        }
    }
    if (!!args->model_dir == !!args->tokenizer_file) {
        fprintf(stderr, "glint %s: give exactly one of -m DIR or --tokenizer FILE\n", command);
        return -1;
    }
    return 1;
}

static glint_tokenizer *load(const char *command, const text_args *args) {
    glint_tokenizer *tok = args->model_dir ? glint_tokenizer_load_dir(args->model_dir)
                                           : glint_tokenizer_load(args->tokenizer_file, NULL);
    if (!tok) fprintf(stderr, "glint %s: %s\n", command, glint_last_error());
    return tok;
}

int cmd_tokenize(int argc, char **argv) {
    text_args args;
    int r = parse_args("tokenize", "--add-special-tokens", argc, argv, &args);
    if (r <= 0) return r < 0 ? 1 : 0;
    glint_tokenizer *tok = load("tokenize", &args);
    if (!tok) return 1;
    size_t len;
    char *text = glint_read_stream(stdin, "stdin", &len);
    int32_t *ids = NULL;
    int n = text ? glint_tokenizer_encode(tok, text, len, args.flag, &ids) : -1;
    if (n < 0) {
        fprintf(stderr, "glint tokenize: stdin: %s\n", glint_last_error());
        free(text);
        glint_tokenizer_free(tok);
        return 1;
    }
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
    printf("\n");
    free(ids);
    free(text);
    glint_tokenizer_free(tok);
    return fflush(stdout) == 0 ? 0 : 1;
}

int cmd_detokenize(int argc, char **argv) {
    text_args args;
    int r = parse_args("detokenize", "--skip-special-tokens", argc, argv, &args);
    if (r <= 0) return r < 0 ? 1 : 0;
    glint_tokenizer *tok = load("detokenize", &args);
    if (!tok) return 1;
    size_t len;
    char *text = glint_read_stream(stdin, "stdin", &len);
    int status = 1;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    if (!text) {
        fprintf(stderr, "glint detokenize: %s\n", glint_last_error());
        goto done;
    }
    for (char *p = text; *p;) {
        p += strspn(p, " \t\r\n\v\f");
        if (!*p) break;
        size_t word_len = strcspn(p, " \t\r\n\v\f");
        char saved = p[word_len];
        p[word_len] = 0;
        int64_t value;
        if (glint_parse_int64(p, &value) != 0 || value > INT32_MAX) {
            fprintf(stderr, "glint detokenize: stdin: '%.40s' (item %zu) is not a token id\n", p, n + 1);
            goto done;
        }
        p[word_len] = saved;
        p += word_len;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            int32_t *bigger = realloc(ids, cap * sizeof *ids);
            if (!bigger) {
                fprintf(stderr, "glint detokenize: out of memory\n");
                goto done;
            }
            ids = bigger;
        }
        ids[n++] = (int32_t)value;
    }
    size_t out_len;
    char *out = glint_tokenizer_decode(tok, ids, n, args.flag, &out_len);
    if (!out) {
        fprintf(stderr, "glint detokenize: stdin: %s\n", glint_last_error());
        goto done;
    }
    fwrite(out, 1, out_len, stdout);
    free(out);
    status = fflush(stdout) == 0 ? 0 : 1;
done:
    free(ids);
    free(text);
    glint_tokenizer_free(tok);
    return status;
}
