// glint: one binary, subcommands (DESIGN.md §6).
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} subcommand;

static const subcommand subcommands[] = {
    {"run", cmd_run, "run [-m DIR] [-p TEXT]         chat (REPL, or one answer with -p); default: the demo model"},
    {"generate", cmd_generate, "generate -m DIR (--prompt TEXT | --ids \"1 2 3\") [-n N] [--temperature T] ..."},
    {"logits", cmd_logits, "logits -m DIR --ids \"1 2 3\" -o FILE   float32 logits of every position"},
    {"info", cmd_info, "info -m DIR                 architecture, layer kinds, dtypes, sizes"},
    {"bench", cmd_bench, "bench (-m DIR | --synthetic NAME [--layers N] | --kernels) [--ctx 256,...] [--prefill 4096,...] [--speculative-num-steps N] [--backend auto|cpu|cuda] [--tp N]"},
    {"perplexity", cmd_perplexity, "perplexity -m DIR FILE        perplexity of a UTF-8 text file"},
    {"quantize", cmd_quantize, "quantize -m IN -o OUT --format nvfp4 [--scope experts|all-linear]"},
    {"tokenize", cmd_tokenize, "tokenize (-m DIR | --tokenizer FILE) [--add-special-tokens]   stdin text -> ids"},
    {"detokenize", cmd_detokenize, "detokenize (-m DIR | --tokenizer FILE) [--skip-special-tokens] stdin ids -> text"},
    {"serve", cmd_serve, "serve -m DIR [--host 127.0.0.1] [--port 8000] [sglang launch_server flags]"},
    {"render-chat", cmd_render_chat, "render-chat (-m DIR | --template FILE)  stdin chat JSON -> prompt text"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: glint <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %s\n", subcommands[i].help);
    fprintf(out, "\ncommon options: --backend auto|cpu|cuda (auto: the GPU when there is one), --tp N (the model split "
                 "over N GPUs), --threads N, --context-length N, --index-topk-pattern FSFS..., "
                 "--json-model-override-args JSON, --triton-attention-num-kv-splits N (the CUDA decode attention's "
                 "key chunks per query)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(argv[1], subcommands[i].name)) return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "glint: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
