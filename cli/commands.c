// cli/commands.c — the command table.
#include "commands.h"
#include "version.h"
#include "../kernels/backend.h"
#include <stdio.h>

const command quarry_commands[] = {
    {"info", cmd_info, "backends compiled in, CUDA/NCCL versions, GPUs"},
    {"validate", cmd_validate, "check Bedrock JSONL training data and report what a run will cost"},
    {"tokenize", cmd_tokenize, "encode or decode text with a model's tokenizer.json"},
    {"render", cmd_render, "render records with the model's chat template (and loss mask)"},
    {"init", cmd_init, "write a randomly initialised Hugging Face checkpoint from a config"},
    {"plan", cmd_plan, "memory plan of a fine-tune from a config alone; what fits which GPU"},
    {"train", cmd_train, "fine-tune (LoRA or all weights) on Bedrock data"},
    {"eval", cmd_eval, "loss and perplexity of a model on Bedrock data"},
    {"generate", cmd_generate, "generate text from a model or a run"},
    {"leakcheck", cmd_leakcheck, "check that a trained run does not give back secrets of its data"},
    {"export", cmd_export, "package a run for Bedrock Custom Model Import"},
    {"preflight", cmd_preflight, "check a package against Custom Model Import's requirements"},
    {"upload", cmd_upload, "upload a package to S3 (multipart, resumable)"},
    {"import", cmd_import, "start a Bedrock Custom Model Import job"},
    {"cache", cmd_cache, "where the token cache is, what it holds; clear it"},
    {"cost", cmd_cost, "compare the cost of training here with Bedrock's managed jobs"},
    {"report", cmd_report, "write a run's self-contained HTML report: curves, data, cost, answers"},
    {"completion", cmd_completion, "print a bash completion script (generated from these commands)"},
    {"manpage", cmd_manpage, "print the man page quarry(1) in roff"},
};
const int quarry_ncommands = (int)(sizeof quarry_commands / sizeof quarry_commands[0]);

void print_version(void) {
    cuda_report r;
    cuda_query(&r);
    printf("quarry %s (commit %s; ", QUARRY_VERSION, QUARRY_GIT_COMMIT);
    if (r.cuda_compiled)
        printf("CUDA %d.%d compiled in; NCCL %s)\n", r.runtime_version / 1000, (r.runtime_version % 1000) / 10,
               r.nccl_compiled ? "compiled in" : "not compiled in");
    else
        printf("CUDA not compiled in; NCCL not compiled in)\n");
}
