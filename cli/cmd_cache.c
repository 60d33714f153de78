// cli/cmd_cache.c — `quarry cache info|clear`: where the token cache is, what it holds, and
// deleting it. The cache holds training text as token ids (data/token_cache), so a team that
// must not keep the data after a run purges it here.
#include "args.h"
#include "commands.h"
#include "../data/token_cache.h"
#include <stdio.h>
#include <string.h>

static void print_size(unsigned long long b) {
    if (b >= 1ull << 30) printf("%.2f GiB", (double)b / (double)(1ull << 30));
    else if (b >= 1ull << 20) printf("%.2f MiB", (double)b / (double)(1ull << 20));
    else if (b >= 1ull << 10) printf("%.1f KiB", (double)b / 1024.0);
    else printf("%llu bytes", b);
}

int cmd_cache(int argc, char **argv) {
    const arg_parser p = {"cache", "quarry cache info|clear",
                          "The token cache keeps tokenized training data between runs (training text as\n"
                          "token ids) in $QUARRY_CACHE_DIR, else $XDG_CACHE_HOME/quarry/tokens, else\n"
                          "~/.cache/quarry/tokens; owner-only (0700, files 0600).\n"
                          "  info   where it is, how many entries and bytes\n"
                          "  clear  delete its entries (only quarry's own files in that directory)\n"
                          "Exit 0 done, 1 failure, 2 usage error.",
                          NULL, 0, 1, 1};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    int clear = !strcmp(pos[0], "clear");
    if (!clear && strcmp(pos[0], "info")) {
        fprintf(stderr, "quarry cache: error: unknown action '%s'; use info or clear\nusage: %s\n", pos[0], p.usage);
        return 2;
    }
    token_cache_usage u;
    char err[4400];
    if (clear ? token_cache_clear(&u, err, sizeof err) : token_cache_usage_get(&u, err, sizeof err)) {
        if (!strcmp(err, "the token cache is off")) {
            printf("token cache: off (QUARRY_TOKEN_CACHE=off, or no HOME); nothing to %s\n", clear ? "clear" : "show");
            return 0;
        }
        fprintf(stderr, "quarry cache: error: %s\n", err);
        return 1;
    }
    if (clear) {
        printf("token cache: %s: removed %ld entr%s (", u.dir, u.entries, u.entries == 1 ? "y" : "ies");
        print_size(u.bytes);
        printf(")\n");
        return 0;
    }
    printf("location: %s", u.dir);
    if (!u.exists) printf(" (not created yet)\n");
    else printf(" (mode %03o%s)\n", (unsigned)u.mode, u.mode & 077 ? "; readable by others: the next train makes it 0700" : "");
    printf("entries:  %ld\nsize:     ", u.entries);
    print_size(u.bytes);
    printf("\n");
    return 0;
}
