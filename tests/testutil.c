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

int test_slowdown(void)
{
#if defined(__SANITIZE_THREAD__)
	return 4;
#elif defined(__SANITIZE_ADDRESS__)
	return 2;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
	return 4;
#elif __has_feature(address_sanitizer)
	return 2;
#else
	return 1;
#endif
#else
	return 1;
#endif
}

long test_iters(long normal, long minimum)
{
	long n = normal * test_scale() / test_slowdown();
	return n < minimum ? minimum : n;
}

uint64_t test_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t test_rand_below(uint64_t *state, uint64_t n)
{
	return n ? test_rand(state) % n : 0;
}

uint64_t test_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t test_seed(const char *test_name, uint64_t fallback)
{
	const char *s = getenv("CTX_TEST_SEED");
	uint64_t seed = s ? strtoull(s, NULL, 0) : fallback;
	print_message("%s: seed %llu (set CTX_TEST_SEED to repeat)\n", test_name,
	              (unsigned long long)seed);
	return seed;
}
