/*
 * test_r24_lib_huge_race.c - ctx_use_huge_pages against the first ctx_open
 * (round 24, r24-libreview).
 *
 * ctx.h: it takes effect only before the process's first ctx_open, and
 * returns true if the setting took, false if called after it. Round 23's
 * pool_slab_use_huge checked "slab_init ran", then stored the setting: a
 * call whose check came before the first open's slab_init and whose store
 * came after slab_init read the setting returned true, its setting never
 * read (the slab got huge pages all the same, where THP allows them).
 * pool_test_use_huge_hook holds a call inside that window while the first
 * open runs, so the interleaving happens every run: the call must return
 * false. Before that, a child of fork of this process (which has opened
 * nothing yet) may still choose, and the parent's choice is its own.
 *
 * Builds without the slab (AddressSanitizer) have nothing to set: the call
 * returns true there and the window does not exist; only the fork test runs.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

extern void (*pool_test_use_huge_hook)(void); /* pool.c */

#if T_TSAN
/* The child of fork opens a store (threads): ThreadSanitizer would kill it
 * (test_r18_fork.c). */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "die_after_fork=0";
}
#endif

#if !T_ASAN
static atomic_bool in_window, open_done;

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Inside pool_slab_use_huge, between reading the setting and changing it:
 * wait there (up to 60 s) until the main thread's first open is done. */
static void hold_in_window(void)
{
	if (atomic_exchange(&in_window, true))
		return; /* held once */
	double end = test_now() + 60;
	while (!atomic_load(&open_done) && test_now() < end)
		sleep_ms(1);
}

static atomic_int call_result = -1;

static void *caller_main(void *arg)
{
	(void)arg;
	atomic_store(&call_result, ctx_use_huge_pages(false));
	return NULL;
}

#endif

/* Runs first: nothing opened in this process yet. */
static void test_child_of_fork_chooses(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int bad = 0;
		bad |= !ctx_use_huge_pages(false) << 0;
		ctx_store *s;
		if (ctx_open(NULL, &s) != CTX_OK)
			_exit(100);
		bad |= (ctx_create(s, "c") != CTX_OK) << 1;
		bad |= pool_slab_huge() << 2; /* off, as chosen */
#if !T_ASAN
		bad |= ctx_use_huge_pages(true) << 3; /* too late now */
#endif
		ctx_close(s);
		_exit(bad);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status))
		fail_msg("child of fork: failed checks 0x%x", WEXITSTATUS(status));
}

static void test_call_racing_the_first_open(void **state)
{
	(void)state;
#if T_ASAN
	skip(); /* no slab: no window */
#else
	pool_test_use_huge_hook = hold_in_window;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, caller_main, NULL), 0);
	double end = test_now() + 60;
	while (!atomic_load(&in_window) && test_now() < end)
		sleep_ms(1);
	assert_true(atomic_load(&in_window));
	/* The first open, while the call has read the setting but not yet
	 * changed it. */
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	atomic_store(&open_done, true);
	pthread_join(th, NULL);
	pool_test_use_huge_hook = NULL;
	/* The open read the setting first: the call came too late. */
	if (atomic_load(&call_result) != 0)
		fail_msg("ctx_use_huge_pages(false) returned true after the first open had "
		         "set the memory up (huge pages there: %d)",
		         (int)pool_slab_huge());
	assert_false(ctx_use_huge_pages(false));
	assert_false(ctx_use_huge_pages(true));
	/* The store works. */
	assert_ok(ctx_put(s, "c", "k", 1, "v", 1, NULL));
	char buf[4];
	size_t vlen;
	assert_ok(ctx_get_value(s, "c", "k", 1, buf, sizeof(buf), &vlen));
	assert_int_equal(vlen, 1);
	ctx_close(s);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_child_of_fork_chooses),
	    cmocka_unit_test(test_call_racing_the_first_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
