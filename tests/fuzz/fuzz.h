/* fuzz.h -- what every target in tests/fuzz defines (tests/fuzz/README.md).
 *
 * A target is one file, fuzz_<name>.c, that feeds its input to one parser entry point and aborts when an
 * invariant of the parser's contract breaks (a sanitizer report is a crash too). It is linked twice:
 * with libFuzzer (tests/fuzz/<name>, `make fuzz-targets` in a build configured with --enable-fuzzing) to
 * search for new inputs, and with replay.c (tests/fuzz/replay_<name>, `make check`) to run every input
 * of tests/fuzz/corpus/<name> once, so the corpus and each crash found so far are regression tests in
 * every build, sanitizer build included.
 */
#ifndef MAGPIE_FUZZ_H
#define MAGPIE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken invariant: say which, then abort (libFuzzer keeps the input as a crash). */
#define FUZZ_CHECK(cond)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                     \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

#endif
