/*
 * test_r13_flusher.c - the log's flusher thread is named "ctx-flusher", and
 * under durability none (nothing waits for it: it only hands records to the
 * kernel) it runs under SCHED_BATCH, so that the wake-up a commit gives it
 * does not preempt the committing thread when no CPU is idle (round 13,
 * r13-ckpt: with a checkpoint busy on the other CPU of two, the wake-ups
 * took a commit's p99 from 2.7 to 15 us). Under batch and always, where
 * commits or their readers wait for its sync, it stays SCHED_OTHER.
 */
#include <dirent.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "testutil.h"

/* The policies of this process's threads named "ctx-flusher" (at most n);
 * returns how many there are. */
static int flusher_policies(int *policy, int n)
{
	DIR *d = opendir("/proc/self/task");
	assert_non_null(d);
	int found = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[320], comm[32] = {0};
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue; /* the thread has gone */
		bool named = fgets(comm, sizeof(comm), f) && strcmp(comm, "ctx-flusher\n") == 0;
		fclose(f);
		if (!named)
			continue;
		int p = sched_getscheduler((pid_t)atoi(e->d_name));
		assert_true(p >= 0);
		if (found < n)
			policy[found] = p;
		found++;
	}
	closedir(d);
	return found;
}

static ctx_store *open_mode(const char *dir, ctx_durability d)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = d;
	o.unsafe_no_sync = d == CTX_DURABILITY_NONE;
	return test_open(&o);
}

/* The flusher sets its policy as it starts: a commit and its wait for the
 * log to reach the kernel (ctx_checkpoint rotates the log through the
 * flusher) make sure it has run. */
static void settle(ctx_store *s)
{
	assert_ok(ctx_create(s, "c"));
	assert_ok(ctx_put(s, "c", "k", 1, "v", 1, NULL));
	assert_ok(ctx_checkpoint(s));
}

static void test_flusher_policy_by_durability(void **unused)
{
	(void)unused;
	int policy[4];
	assert_int_equal(flusher_policies(policy, 4), 0);

	char *dir = test_make_dir("r13_flusher_none");
	ctx_store *s = open_mode(dir, CTX_DURABILITY_NONE);
	settle(s);
	assert_int_equal(flusher_policies(policy, 4), 1);
	assert_int_equal(policy[0], SCHED_BATCH);
	ctx_close(s);
	assert_int_equal(flusher_policies(policy, 4), 0);
	test_remove_dir(dir);
	free(dir);

	ctx_durability waited[2] = {CTX_DURABILITY_BATCH, CTX_DURABILITY_ALWAYS};
	for (int i = 0; i < 2; i++) {
		dir = test_make_dir("r13_flusher_sync");
		s = open_mode(dir, waited[i]);
		settle(s);
		assert_int_equal(flusher_policies(policy, 4), 1);
		assert_int_equal(policy[0], SCHED_OTHER);
		ctx_close(s);
		test_remove_dir(dir);
		free(dir);
	}
}

/* Under none the flusher still writes every record to the log before a
 * reopen reads it (its policy changes when it runs, not what it writes). */
static void test_none_log_complete(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r13_flusher_log");
	ctx_store *s = open_mode(dir, CTX_DURABILITY_NONE);
	assert_ok(ctx_create(s, "c"));
	char key[16];
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(key, sizeof(key), "k%d", i);
		assert_ok(ctx_put(s, "c", key, (size_t)n, &i, sizeof(i), NULL));
	}
	ctx_close(s);
	s = open_mode(dir, CTX_DURABILITY_NONE);
	ctx_state *st;
	assert_ok(ctx_get(s, "c", &st));
	assert_int_equal(ctx_state_count(st), 1000);
	assert_int_equal(ctx_state_version(st), 1001);
	ctx_state_release(st);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_flusher_policy_by_durability),
	    cmocka_unit_test(test_none_log_complete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
