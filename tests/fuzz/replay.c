/*
 * Replays fuzz corpora without libFuzzer (Jansson's standaloneengine): runs
 * LLVMFuzzerTestOneInput over every regular file of each directory or file argument. Registered
 * as a ctest test (label fuzz-replay) so every build replays the committed corpus and crashers.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    struct buf b = BUF_INIT;
    struct err e = ERR_INIT;
    if (file_read_all(path, 1 << 20, &b, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)(b.data ? b.data : ""), b.len);
    buf_release(&b);
    return 0;
}

int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: cannot stat %s\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]) != 0) {
                return 1;
            }
            n++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *de;
        if (d == NULL) {
            fprintf(stderr, "replay: cannot open %s\n", argv[i]);
            return 1;
        }
        while ((de = readdir(d)) != NULL) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
            if (de->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
                continue;
            }
            if (run_file(path) != 0) {
                closedir(d);
                return 1;
            }
            n++;
        }
        closedir(d);
    }
    fprintf(stderr, "replay: %d inputs\n", n);
    return n > 0 ? 0 : 1;
}
