/*
 * test_r24_lib_tracker_fork.c - a tracker's counts in a child of fork
 * (round 24, r24-libreview).
 *
 * A tracker the child inherited is unusable there (ctx.h, fork): its calls
 * that return a ctx_status return CTX_CLOSED at once. ctx_tracker_pending
 * and round 23's ctx_tracker_pending_bytes took the tracker's lock all the
 * same; a fork while another thread of the parent held it (an edit being
 * recorded) left the child's copy locked by a thread the child does not
 * have, and the call never returned. Here a thread puts into the tracker
 * while the main thread forks again and again; each child calls both, and
 * must return (an alarm kills a child still in them after 20 s). Both now
 * answer 0 for an inherited tracker, without the lock, as does
 * ctx_tracker_edit_bytes (round 24's, which took the lock too).
 */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#if T_TSAN
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "die_after_fork=0";
}
#endif

#define FORKS 200

typedef struct editor {
	ctx_tracker *t;
	atomic_bool stop;
	atomic_long puts;
} editor;

static void *editor_main(void *p)
{
	editor *a = p;
	char key[32];
	for (long i = 0; !atomic_load(&a->stop); i++) {
		int n = snprintf(key, sizeof(key), "k%ld", i % 5000);
		T_CHECK_STATUS(ctx_tracker_put(a->t, key, (size_t)n, key, (size_t)n), CTX_OK);
		atomic_fetch_add(&a->puts, 1);
	}
	return NULL;
}

static void test_counts_in_child(void **state)
{
	(void)state;
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "c", NULL, &t));
	editor a = {t, false, 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, editor_main, &a), 0);
	double end = test_now() + 60;
	while (atomic_load(&a.puts) < 100 && test_now() < end)
		;
	int hung = 0, odd = 0;
	for (int f = 0; f < FORKS; f++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			alarm(20);
			size_t n = ctx_tracker_pending(t);
			size_t b = ctx_tracker_pending_bytes(t);
			size_t e = ctx_tracker_edit_bytes(t, "k0", 2);
			_exit(n == 0 && b == 0 && e == 0 ? 0 : 3);
		}
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
			hung++;
		else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			odd++;
		if (hung)
			break;
	}
	atomic_store(&a.stop, true);
	pthread_join(th, NULL);
	assert_no_thread_failures();
	if (hung || odd)
		fail_msg("children of fork: %d hung in ctx_tracker_pending(_bytes), %d failed",
		         hung, odd);
	/* The parent's tracker is unharmed. */
	assert_true(ctx_tracker_pending(t) > 0);
	assert_true(ctx_tracker_pending_bytes(t) > 0);
	assert_ok(ctx_tracker_sync(t, NULL));
	assert_int_equal(ctx_tracker_pending_bytes(t), 0);
	ctx_tracker_close(t);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counts_in_child),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
