// Subcommands of the glint binary (DESIGN.md §6). Each returns the process exit status.
#ifndef GLINT_COMMANDS_H
#define GLINT_COMMANDS_H

int cmd_generate(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_render_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
