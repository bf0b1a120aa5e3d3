/* replay.c -- the main() of tests/fuzz/replay_<name>: runs a target (fuzz.h) once on every file of its
 * corpus, tests/fuzz/corpus/<name> (the name is the program's, after "replay_"), or on the files and
 * folders given as arguments. Without libFuzzer, so `make check` runs it in every build: the seeds and
 * every crash input found so far stay fixed. Fails when the corpus is missing or empty (a corpus that
 * vanished would make this test pass without testing anything).
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FUZZ_CORPUS_ROOT
#error "FUZZ_CORPUS_ROOT (the folder holding corpus/<name>) must be defined"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Run the target on one file; the input is in a buffer of exactly its size, as libFuzzer does, so
 * reading past it is a sanitizer report. Returns 0, or -1 when the file cannot be read. */
static int run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
        if (fp != NULL)
            fclose(fp);
        return -1;
    }
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        fclose(fp);
        return -1;
    }
    fclose(fp);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Every regular file in dir, in name order. Returns how many ran, or -1. */
static int run_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, by_name), ran = 0;

    if (n < 0) {
        fprintf(stderr, "replay: cannot list %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path) != 0)
                ran = -1;
            else if (ran >= 0)
                ran++;
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode))
        return run_dir(path);
    return run_file(path) == 0 ? 1 : -1;
}

int main(int argc, char **argv)
{
    const char *base = strrchr(argv[0], '/');
    char dir[4096];
    int total = 0, n;

    base = base ? base + 1 : argv[0];
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            if ((n = run_path(argv[i])) < 0)
                return 1;
            total += n;
        }
    } else {
        if (strncmp(base, "replay_", 7) != 0) {
            fprintf(stderr, "replay: cannot tell the target from the program name %s\n", base);
            return 1;
        }
        snprintf(dir, sizeof(dir), "%s/%s", FUZZ_CORPUS_ROOT, base + 7);
        if ((n = run_dir(dir)) <= 0) {
            fprintf(stderr, "replay: no corpus in %s\n", dir);
            return 1;
        }
        total = n;
    }
    printf("%s: %d inputs replayed, no crash\n", base, total);
    return 0;
}
