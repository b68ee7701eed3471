/*
 * test_r14_review.c - round 14 review of round 13's library changes, kept
 * as pins (each reviewed path was judged correct; these fail if a later
 * change breaks what was checked):
 *
 * - the log flusher is signalled after the log lock is released (round 13):
 *   no commit waits for ever (a lost wake-up would hang the waiting commits
 *   and keep nowait ones from ever becoming durable: ctest's timeout), and a
 *   commit that returned under durability always is durable
 *   (ctx_durable_revision is at or past its revision when it returns), with
 *   many committers on few CPUs, under always and batch;
 * - the pool after a thread's exit destructor: a thread-specific destructor
 *   that runs after the pool's (a key created later) commits and reads;
 *   the pool then hands out and takes back malloc blocks only (no cache
 *   is kept for a thread that has exited: under ASan, LeakSanitizer would
 *   report its blocks), and the data is intact;
 * - the slab's free lists kept by chunk: blocks freed by threads that exit,
 *   in any order, are all handed out again (pool_slab_bytes does not grow
 *   while the same number of blocks is allocated again).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"

#define COMMITTERS 8
#define COMMITS    300

typedef struct committer {
	ctx_store *s;
	int idx;
	bool nowait;
	int bad; /* commits that returned before they were durable */
	uint64_t last_rev;
} committer;

static void *commit_main(void *arg)
{
	committer *c = arg;
	char id[16];
	snprintf(id, sizeof(id), "c%d", c->idx);
	for (int i = 0; i < COMMITS; i++) {
		ctx_txn *t;
		T_CHECK_STATUS(ctx_txn_begin(c->s, id, &t), CTX_OK);
		T_CHECK_STATUS(ctx_txn_put(t, "k", 1, &i, sizeof(i)), CTX_OK);
		uint64_t rev = 0, durable = 0;
		if (c->nowait) {
			T_CHECK_STATUS(ctx_txn_commit_nowait(t, 0, NULL, &rev), CTX_OK);
			c->last_rev = rev;
			continue;
		}
		T_CHECK_STATUS(ctx_txn_commit(t, 0, NULL), CTX_OK);
		/* the context is this thread's alone: its newest version is the
		 * one just committed */
		ctx_state *st;
		T_CHECK_STATUS(ctx_get_latest(c->s, id, &st), CTX_OK);
		rev = ctx_state_revision(st);
		ctx_state_release(st);
		T_CHECK_STATUS(ctx_durable_revision(c->s, &durable), CTX_OK);
		c->bad += durable < rev;
		c->last_rev = rev;
	}
	return NULL;
}

static void commit_storm(ctx_durability mode, bool nowait)
{
	char *dir = test_make_dir("r14_review_commits");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = mode;
	o.batch_ms = 2;
	ctx_store *s = test_open(&o);
	committer c[COMMITTERS];
	pthread_t th[COMMITTERS];
	for (int i = 0; i < COMMITTERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "c%d", i);
		assert_ok(ctx_create(s, id));
		c[i] = (committer){s, i, nowait, 0, 0};
		assert_int_equal(pthread_create(&th[i], NULL, commit_main, &c[i]), 0);
	}
	uint64_t most = 0;
	for (int i = 0; i < COMMITTERS; i++) {
		pthread_join(th[i], NULL);
		if (mode == CTX_DURABILITY_ALWAYS)
			assert_int_equal(c[i].bad, 0);
		most = c[i].last_rev > most ? c[i].last_rev : most;
	}
	/* every decided revision becomes durable without another commit to
	 * wake the flusher (a lost wake-up: this loop never ends) */
	for (;;) {
		uint64_t durable;
		assert_ok(ctx_durable_revision(s, &durable));
		if (durable >= most)
			break;
		usleep(1000);
	}
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_commits_durable_always(void **unused)
{
	(void)unused;
	commit_storm(CTX_DURABILITY_ALWAYS, false);
}

static void test_nowait_commits_become_durable(void **unused)
{
	(void)unused;
	commit_storm(CTX_DURABILITY_ALWAYS, true);
	commit_storm(CTX_DURABILITY_BATCH, true);
}

/* ---- the pool after a thread's exit destructor ----------------------------------------- */

static pthread_key_t late_key;
static ctx_store *late_store;
static atomic_int late_done;

/* Runs after the pool's destructor (keys are destroyed in creation order,
 * and this one is created after the pool has made its own). */
static void late_destructor(void *arg)
{
	int idx = (int)(intptr_t)arg - 1;
	char id[16];
	snprintf(id, sizeof(id), "late%d", idx);
	for (int i = 0; i < 50; i++) {
		char key[16];
		int n = snprintf(key, sizeof(key), "k%d", i);
		T_CHECK_STATUS(ctx_put(late_store, id, key, (size_t)n, &i, sizeof(i), NULL),
		               CTX_OK);
		void *b[20];
		for (int j = 0; j < 20; j++)
			b[j] = pool_alloc((size_t)(16 + 16 * j));
		for (int j = 20; j-- > 0;)
			pool_free(b[j]);
	}
	ctx_state *st;
	T_CHECK_STATUS(ctx_get(late_store, id, &st), CTX_OK);
	T_CHECK(ctx_state_count(st) == 50);
	ctx_state_release(st);
	atomic_fetch_add(&late_done, 1);
}

static void *late_main(void *arg)
{
	char id[16];
	snprintf(id, sizeof(id), "late%d", (int)(intptr_t)arg - 1);
	/* the pool's key exists now (this thread allocates), and its
	 * destructor is set for this thread */
	T_CHECK_STATUS(ctx_put(late_store, id, "first", 5, "x", 1, NULL), CTX_OK);
	T_CHECK(pthread_setspecific(late_key, arg) == 0);
	return NULL;
}

static void test_pool_after_exit_destructor(void **unused)
{
	(void)unused;
	late_store = test_open_memory();
	/* the pool's key is made by the first thread that keeps a block */
	assert_ok(ctx_create(late_store, "warm"));
	assert_ok(ctx_put(late_store, "warm", "k", 1, "v", 1, NULL));
	assert_int_equal(pthread_key_create(&late_key, late_destructor), 0);
	enum { THREADS = 6 };
	for (int i = 0; i < THREADS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "late%d", i);
		assert_ok(ctx_create(late_store, id));
	}
	for (int round = 0; round < 3; round++) {
		pthread_t th[THREADS];
		for (int i = 0; i < THREADS; i++)
			assert_int_equal(
			    pthread_create(&th[i], NULL, late_main, (void *)(intptr_t)(i + 1)), 0);
		for (int i = 0; i < THREADS; i++)
			pthread_join(th[i], NULL);
	}
	assert_int_equal(atomic_load(&late_done), 3 * THREADS);
	for (int i = 0; i < THREADS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "late%d", i);
		ctx_state *st;
		assert_ok(ctx_get(late_store, id, &st));
		assert_int_equal(ctx_state_count(st), 51);
		for (int k = 0; k < 50; k++) {
			char key[16];
			int n = snprintf(key, sizeof(key), "k%d", k);
			const void *v;
			size_t vn;
			assert_true(ctx_state_lookup(st, key, (size_t)n, &v, &vn));
			assert_int_equal(vn, sizeof(int));
			assert_memory_equal(v, &k, sizeof(int));
		}
		ctx_state_release(st);
	}
	pthread_key_delete(late_key);
	ctx_close(late_store);
}

/* Threads that commit in a destructor run after the library's own: the
 * versions those commits cut from history (one a commit, past the 64 the
 * context keeps) were kept in the thread's open batch of released
 * versions, which its exit destructor had already flushed and which nothing
 * flushed again: up to 31 versions lost per thread (round 14; LeakSanitizer
 * names them under ASan). Measured as the process's resident memory over
 * 2000 such threads, against the same commits made in the threads' bodies
 * (before the fix: 8.1 MB against 1.1 MB; after: 0.4 against 0.8). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

static ctx_store *churn_store;
static pthread_key_t churn_key;

static void churn_commits(void)
{
	for (int i = 0; i < 31; i++) {
		char key[16];
		int n = snprintf(key, sizeof(key), "k%d", i);
		T_CHECK_STATUS(ctx_put(churn_store, "churn", key, (size_t)n, &i, sizeof(i), NULL),
		               CTX_OK);
		ctx_state *st;
		T_CHECK_STATUS(ctx_get(churn_store, "churn", &st), CTX_OK);
		ctx_state_release(st);
	}
}

static void churn_destructor(void *arg)
{
	(void)arg;
	churn_commits();
}

/* One commit in the body either way: it cuts a version, so this thread's
 * release batch (and its exit destructor, set then) exists before the
 * destructor of churn_key is set. */
static void *churn_main(void *arg)
{
	T_CHECK_STATUS(ctx_put(churn_store, "churn", "first", 5, "x", 1, NULL), CTX_OK);
	if (arg)
		T_CHECK(pthread_setspecific(churn_key, arg) == 0);
	else
		churn_commits();
	return NULL;
}

/* The process's resident memory (malloc's per-thread arenas, which
 * mallinfo does not count, and slab chunks alike). */
static size_t held_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, resident = 0;
	T_CHECK(f && fscanf(f, "%lu %lu", &size, &resident) == 2);
	if (f)
		fclose(f);
	return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t churn_growth(bool in_destructor)
{
	size_t before = held_bytes();
	for (int i = 0; i < 2000; i++) {
		pthread_t th;
		assert_int_equal(
		    pthread_create(&th, NULL, churn_main, in_destructor ? (void *)1 : NULL), 0);
		pthread_join(th, NULL);
	}
	ctx_state_release(NULL);
	size_t after = held_bytes();
	return after > before ? after - before : 0;
}

static void test_commits_in_late_destructors_leak_nothing(void **unused)
{
	(void)unused;
	ctx_options o;
	ctx_options_init(&o);
	churn_store = test_open(&o);
	assert_ok(ctx_create(churn_store, "churn"));
	assert_ok(ctx_put(churn_store, "churn", "k", 1, "v", 1, NULL));
	assert_int_equal(pthread_key_create(&churn_key, churn_destructor), 0);
	churn_growth(false); /* warm: chunks and caches the churn needs */
	size_t body = churn_growth(false);
	size_t late = churn_growth(true);
	print_message("held: %zu bytes more after commits in bodies, %zu in late destructors\n",
	              body, late);
	/* Under ASan and TSan resident memory is their shadow and quarantine:
	 * LeakSanitizer checks this there (at exit). */
	if (!UNDER_SANITIZER && late > body + ((size_t)2 << 20))
		fail_msg("commits in late destructors: %zu bytes more held, in bodies %zu", late,
		         body);
	pthread_key_delete(churn_key);
	ctx_close(churn_store);
}

/* ---- slab blocks freed by exiting threads are all reused ------------------------------- */

enum { BLOCKS = 20000 };
static void *blocks[BLOCKS];

static void *free_slice(void *arg)
{
	int part = (int)(intptr_t)arg;
	/* every fourth block, from the end: scattered over the chunks */
	for (int i = BLOCKS - 1 - part; i >= 0; i -= 4)
		pool_free(blocks[i]);
	return NULL;
}

static void *alloc_all(void *arg)
{
	(void)arg;
	for (int i = 0; i < BLOCKS; i++)
		blocks[i] = pool_alloc(40);
	return NULL;
}

static void test_slab_blocks_reused_after_exits(void **unused)
{
	(void)unused;
	pthread_t th[4];
	assert_int_equal(pthread_create(&th[0], NULL, alloc_all, NULL), 0);
	pthread_join(th[0], NULL);
	for (int round = 0; round < 5; round++) {
		for (int p = 0; p < 4; p++)
			assert_int_equal(
			    pthread_create(&th[p], NULL, free_slice, (void *)(intptr_t)p), 0);
		for (int p = 0; p < 4; p++)
			pthread_join(th[p], NULL);
		size_t before = pool_slab_bytes();
		assert_int_equal(pthread_create(&th[0], NULL, alloc_all, NULL), 0);
		pthread_join(th[0], NULL);
		/* the same number of blocks again: taken from the freed ones
		 * (the exited threads' caches were passed on at their exit);
		 * at most one chunk carved */
		assert_true(pool_slab_bytes() <= before + (size_t)(2 << 20));
	}
	for (int i = 0; i < BLOCKS; i++)
		pool_free(blocks[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_commits_durable_always),
	    cmocka_unit_test(test_nowait_commits_become_durable),
	    cmocka_unit_test(test_pool_after_exit_destructor),
	    cmocka_unit_test(test_commits_in_late_destructors_leak_nothing),
	    cmocka_unit_test(test_slab_blocks_reused_after_exits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
