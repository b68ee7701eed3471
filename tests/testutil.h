/* testutil.h - helpers shared by the test programs. */
#ifndef CTX_TESTUTIL_H
#define CTX_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ctx.h"

/* Open a memory-only store with default options, failing the test if not. */
ctx_store *test_open_memory(void);

/* A fresh, empty directory for this test under $CTX_TEST_TMP (or /tmp). */
char *test_make_dir(const char *name);
void test_remove_dir(const char *path);

/* Seconds since an arbitrary start, for bounding stress loops. */
double test_now(void);

/* Stress scale: 1 normally, larger when CTX_STRESS_SCALE is set. */
int test_scale(void);

#define assert_ok(call) assert_int_equal((call), CTX_OK)

#endif
