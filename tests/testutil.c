/* testutil.c - helpers shared by the test programs. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

ctx_store *test_open_memory(void)
{
	ctx_store *s = NULL;
	assert_int_equal(ctx_open(NULL, &s), CTX_OK);
	assert_non_null(s);
	return s;
}

char *test_make_dir(const char *name)
{
	const char *base = getenv("CTX_TEST_TMP");
	if (!base)
		base = "/tmp";
	mkdir(base, 0755);
	char *path = malloc(strlen(base) + strlen(name) + 32);
	assert_non_null(path);
	sprintf(path, "%s/%s.%d", base, name, (int)getpid());
	test_remove_dir(path);
	assert_int_equal(mkdir(path, 0755), 0);
	return path;
}

void test_remove_dir(const char *path)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fail_msg("could not remove %s", path);
}

double test_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int test_scale(void)
{
	const char *s = getenv("CTX_STRESS_SCALE");
	int n = s ? atoi(s) : 1;
	return n > 0 ? n : 1;
}
