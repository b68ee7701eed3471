/*
 * fuzz_common.h - what the libFuzzer targets share.
 *
 * Each target turns its input into files (a log segment, a checkpoint, a
 * whole data directory), writes them into a private scratch directory on
 * tmpfs (/dev/shm, else $TMPDIR or /tmp; one per process, emptied before each
 * input, removed at exit), and runs the library's own reading code on them.
 *
 * The contract every input is held to: the library returns CTX_OK, or
 * CTX_CORRUPT / CTX_IO with a message, and whatever it loaded can be walked
 * through the public API. Anything else (another status, an empty message,
 * an inconsistency between two ways of reading the same files) is reported
 * by fuzz_fail, which aborts: libFuzzer records the input as a crash. Memory
 * errors, leaks and undefined behaviour are the sanitizers' to catch.
 */
#ifndef CTX_FUZZ_COMMON_H
#define CTX_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

/* The entry point every target defines (libFuzzer calls it per input). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The scratch directory, created on first use. */
const char *fuzz_dir(void);

/* Remove every file in the scratch directory. */
void fuzz_clear_dir(void);

/* Write n bytes to the file `name` in the scratch directory; its full path
 * goes to path (PATH_MAX bytes) if not NULL. */
void fuzz_write(const char *name, const void *p, size_t n, char *path);

/* Report a broken contract and abort. */
_Noreturn void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Check st is CTX_OK, CTX_CORRUPT or CTX_IO, and that a failure has a message.
 * With CTX_FUZZ_VERBOSE set in the environment, print every status (for
 * looking at what a corpus exercises). */
void fuzz_check_status(ctx_status st, const char *what);

/* A clock stopped at 0: nothing loaded from the input expires while a target
 * looks at it. */
uint64_t fuzz_clock(void *arg);

/* A memory-only store (clock stopped at 0, no context limit) kept for the
 * whole process and emptied before it is returned: opening and closing one
 * per input would cost most of each run (closing waits for RCU callbacks). */
ctx_store *fuzz_memory_store(void);

/* Walk every context of s through the public API: ids, head state, pairs,
 * metadata, every kept version and the diff from it to the head, the points.
 * Returns the number of keys in the heads; fails on any error. */
uint64_t fuzz_walk_store(ctx_store *s);

#endif
