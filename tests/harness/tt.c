#include "tests/harness/tt.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/mem.h"

static char tt_dir[256];

static void tt_cleanup(void)
{
    if (tt_dir[0] && getenv("TT_KEEP") == NULL) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tt_dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "warning: could not remove %s\n", tt_dir);
        }
    }
}

const char *tt_tmpdir(void)
{
    if (tt_dir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        snprintf(tt_dir, sizeof(tt_dir), "%s/jitrca-test-XXXXXX", base ? base : "/tmp");
        if (mkdtemp(tt_dir) == NULL) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(tt_cleanup);
    }
    return tt_dir;
}

int tt_sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) {
        return -1;
    }
    return WEXITSTATUS(st);
}

int tt_main(int argc, char **argv, const struct tt_case *cases, size_t n)
{
    int failed = 0, ran = 0, skipped = 0;
    mem_install();
    for (size_t i = 0; i < n; i++) {
        int selected = argc <= 1;
        for (int a = 1; a < argc; a++) {
            if (strcmp(argv[a], cases[i].name) == 0) {
                selected = 1;
            }
        }
        if (!selected) {
            continue;
        }
        fprintf(stderr, "-- %s\n", cases[i].name);
        int rc = cases[i].fn();
        if (rc == TT_SKIP) {
            skipped++;
            fprintf(stderr, "   SKIP %s\n", cases[i].name);
            continue;
        }
        ran++;
        if (rc != 0) {
            failed++;
            fprintf(stderr, "   FAILED %s\n", cases[i].name);
        }
    }
    fprintf(stderr, "%d passed, %d failed, %d skipped\n", ran - failed, failed, skipped);
    if (ran == 0 && skipped > 0) {
        return TT_SKIP;
    }
    return failed ? 1 : (ran == 0 ? 1 : 0);
}
