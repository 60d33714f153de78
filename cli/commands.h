// cli/commands.h — the subcommands of `quarry`; each lives in cli/cmd_NAME.c and returns the
// process exit code (0 ok, 1 failure/invalid input, 2 usage).
#pragma once

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);   // argv excludes the command name
    const char *summary;
} command;

extern const command quarry_commands[];
extern const int quarry_ncommands;

int cmd_info(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_leakcheck(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_preflight(int argc, char **argv);
int cmd_upload(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_cost(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_completion(int argc, char **argv);
int cmd_manpage(int argc, char **argv);

// The version line: "quarry 0.1.0 (commit abc1234; CUDA 13.0 compiled in; NCCL compiled in)".
void print_version(void);
