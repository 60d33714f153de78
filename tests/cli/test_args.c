// Argument parsing: every kind of option, both spellings, and each misuse gives exit 2.
#include "cli/args.h"
#include "test.h"

static int parse(const char *line, int *flag, const char **str, int *num, double *f, long long *bytes,
                 const char **pos, int *npos) {
    static char buf[512];
    static char *argv[32];
    snprintf(buf, sizeof buf, "%s", line);
    int argc = 0;
    for (char *t = strtok(buf, " "); t && argc < 32; t = strtok(NULL, " ")) argv[argc++] = t;
    const arg_spec specs[] = {
        {"json", ARG_FLAG, flag, NULL, "json"},
        {"name", ARG_STRING, str, "NAME", "a name"},
        {"steps", ARG_INT, num, "N", "steps"},
        {"lr", ARG_FLOAT, f, "LR", "learning rate"},
        {"part-size", ARG_BYTES, bytes, "SIZE", "part size"},
    };
    const arg_parser p = {"test", "quarry test FILE [options]", NULL, specs, 5, 1, 2};
    return args_parse(&p, argc, argv, pos, npos);
}

int main(void) {
    int flag = 0, num = 0, npos = 0;
    const char *str = NULL, *pos[4];
    double f = 0;
    long long bytes = 0;

    int rc = parse("data.jsonl --json --name=x --steps 12 --lr 3e-4 --part-size 64MiB", &flag, &str, &num, &f, &bytes, pos, &npos);
    CHECK(rc == 0, "rc %d", rc);
    CHECK(flag == 1 && str && !strcmp(str, "x") && num == 12, "flag %d name %s steps %d", flag, str, num);
    CHECK(fabs(f - 3e-4) < 1e-12, "lr %g", f);
    CHECK(bytes == 64LL << 20, "bytes %lld", bytes);
    CHECK(npos == 1 && !strcmp(pos[0], "data.jsonl"), "npos %d", npos);

    CHECK(parse("a --bogus", &flag, &str, &num, &f, &bytes, pos, &npos) == 2, "unknown option");
    CHECK(parse("a --steps", &flag, &str, &num, &f, &bytes, pos, &npos) == 2, "missing value");
    CHECK(parse("a --steps x1", &flag, &str, &num, &f, &bytes, pos, &npos) == 2, "bad integer");
    CHECK(parse("a --lr abc", &flag, &str, &num, &f, &bytes, pos, &npos) == 2, "bad float");
    CHECK(parse("a --part-size 5XB", &flag, &str, &num, &f, &bytes, pos, &npos) == 2, "bad size");
    CHECK(parse("a --json=1", &flag, &str, &num, &f, &bytes, pos, &npos) == 2, "flag with value");
    CHECK(parse("--json", &flag, &str, &num, &f, &bytes, pos, &npos) == 2, "missing positional");
    CHECK(parse("a b c", &flag, &str, &num, &f, &bytes, pos, &npos) == 2, "too many positionals");
    CHECK(parse("a -- --json", &flag, &str, &num, &f, &bytes, pos, &npos) == 0 && npos == 2, "-- ends options");

    CHECK(args_parse_bytes("5GB") == 5000000000LL, "5GB");
    CHECK(args_parse_bytes("1.5GiB") == 1610612736LL, "1.5GiB");
    CHECK(args_parse_bytes("1024") == 1024, "1024");
    CHECK(args_parse_bytes("-1") == -1, "negative");
    CHECK(args_parse_bytes("") == -1, "empty");
    return test_finish("test_args");
}
