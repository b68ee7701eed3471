/*
 * test_r16_memb.c - grace periods and the threads that hold them (round 16).
 * Round 16 tried liburcu's membarrier flavour (urcu-memb), which waits only
 * for the threads registered with it, with libctx registering each thread on
 * its first read-side section and unregistering it at thread exit; it was
 * measured and not kept (docs/benchmarks.md, "Round 16: ... (r16-memb)").
 * These checks were written for it and hold for any flavour; they pin what
 * a later change of flavour, registration or release bound must keep:
 *
 * - a reader in a thread that never called libctx before holds grace
 *   periods: a synchronize_rcu started after its section began does not
 *   return before it ends, and writers that reach their release bound
 *   meanwhile (state.c's STATE_HOLD_MAX: they wait for a grace period) free
 *   nothing it reads: the values it saw are intact up to its last pair, every
 *   commit is there afterwards, and nothing leaks (LeakSanitizer, under ASan);
 * - a thread whose own destructor, run after libctx's, reads, commits and
 *   holds a section: a grace period waits for that section, and the commits
 *   are all kept;
 * - liburcu's call_rcu worker may enter a section of ours (a callback that
 *   queues another);
 * - 10,000 short-lived threads, each reading once (every tenth also
 *   committing), leave the store and grace periods sound;
 * - a process that exits (exit(), no thread destructors) while its threads
 *   are reading and committing ends normally.
 * With urcu-memb and its registration disabled (rcu.c's slow path not
 * registering) the first check failed: synchronize_rcu returned while the
 * section was open.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rcu.h"
#include "testutil.h"

#define KEYS 64

static void put_keys(ctx_store *s, const char *id, int tag)
{
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, id, &t));
	for (int i = 0; i < KEYS; i++) {
		char key[16], val[32];
		int kn = snprintf(key, sizeof(key), "k%d", i);
		int vn = snprintf(val, sizeof(val), "value-%d-%d", i, tag);
		assert_ok(ctx_txn_put(t, key, (size_t)kn, val, (size_t)vn));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

/* ---- synchronize_rcu in its own thread ------------------------------------------------- */

static atomic_int sync_done;

static void *sync_main(void *unused)
{
	(void)unused;
	synchronize_rcu();
	atomic_store(&sync_done, 1);
	return NULL;
}

/* ---- a long reader while writers reach their release bound ----------------------------- */

enum { WRITERS = 3 };

typedef struct seen {
	const void *val[KEYS];
	char copy[KEYS][32];
	size_t len[KEYS];
	int n;
} seen;

static ctx_store *hold_store;
static atomic_int hold_phase; /* 1: in the section; 2: leave it */
static atomic_long writer_commits;
static seen hold_seen;

static bool hold_pair(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	seen *w = arg;
	(void)key;
	(void)klen;
	if (w->n < KEYS && vlen < sizeof(w->copy[0])) {
		w->val[w->n] = val;
		w->len[w->n] = vlen;
		memcpy(w->copy[w->n], val, vlen);
		w->n++;
	}
	if (w->n == 1) {
		/* A reader preempted for a long time: ctx_get_each's callback
		 * runs inside the read-side section. */
		atomic_store(&hold_phase, 1);
		while (atomic_load(&hold_phase) != 2)
			usleep(1000);
	}
	/* Still inside the section: every value seen so far is intact (after
	 * the section they may be freed at once). */
	for (int i = 0; i < w->n; i++)
		T_CHECK(memcmp(w->val[i], w->copy[i], w->len[i]) == 0);
	return true;
}

static void *hold_main(void *unused)
{
	(void)unused;
	T_CHECK_STATUS(ctx_get_each(hold_store, "shared", hold_pair, &hold_seen), CTX_OK);
	return NULL;
}

static void *writer_main(void *arg)
{
	char id[16];
	snprintf(id, sizeof(id), "w%d", (int)(intptr_t)arg);
	long commits = test_iters(2000, 700); /* past STATE_HOLD_MAX (512) releases */
	for (long i = 0; i < commits; i++) {
		int v = (int)i;
		T_CHECK_STATUS(ctx_put(hold_store, id, "n", 1, &v, sizeof(v), NULL), CTX_OK);
		/* and the shared context, whose versions the holder reads */
		T_CHECK_STATUS(ctx_put(hold_store, "shared", "k0", 2, &v, sizeof(v), NULL), CTX_OK);
		atomic_fetch_add(&writer_commits, 1);
	}
	return NULL;
}

static void test_long_reader_holds_grace_periods(void **unused)
{
	(void)unused;
	reset_failures();
	hold_store = test_open_memory();
	assert_ok(ctx_create(hold_store, "shared"));
	put_keys(hold_store, "shared", 0);
	for (int i = 0; i < WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "w%d", i);
		assert_ok(ctx_create(hold_store, id));
	}
	/* the holder's section is a reference-free read of a context whose
	 * versions the writers then cut from history */
	pthread_t holder, sync, w[WRITERS];
	atomic_store(&hold_phase, 0);
	assert_int_equal(pthread_create(&holder, NULL, hold_main, NULL), 0);
	while (atomic_load(&hold_phase) != 1)
		usleep(1000);

	atomic_store(&sync_done, 0);
	assert_int_equal(pthread_create(&sync, NULL, sync_main, NULL), 0);
	atomic_store(&writer_commits, 0);
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&w[i], NULL, writer_main, (void *)(intptr_t)i), 0);
	/* Let the writers run until they stop making progress (blocked on the
	 * grace period the holder holds) or finish; a loaded machine may stop
	 * them early for other reasons, which only tests less. */
	long last = -1, now;
	int still = 0;
	while (still < 20) {
		usleep(10000);
		now = atomic_load(&writer_commits);
		still = now == last ? still + 1 : 0;
		last = now;
	}
	/* The grace period started after the section began has not ended. */
	assert_int_equal(atomic_load(&sync_done), 0);
	print_message("writers made %ld commits while the reader held its section\n", last);
	atomic_store(&hold_phase, 2);
	pthread_join(holder, NULL);
	pthread_join(sync, NULL);
	assert_int_equal(atomic_load(&sync_done), 1);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	assert_no_thread_failures();
	assert_int_equal(hold_seen.n, KEYS);

	long commits = test_iters(2000, 700);
	for (int i = 0; i < WRITERS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "w%d", i);
		int v = -1;
		size_t vn = 0;
		assert_ok(ctx_get_value(hold_store, id, "n", 1, &v, sizeof(v), &vn));
		assert_int_equal(vn, sizeof(v));
		assert_int_equal(v, (int)(commits - 1));
	}
	ctx_close(hold_store);
}

/* ---- reads and commits in a destructor run after libctx's ------------------------------ */

static pthread_key_t late_key;
static ctx_store *late_store;
static atomic_int late_done;
static atomic_int late_phase; /* 1: a late destructor is in its section; 2: leave it */

static void late_destructor(void *arg)
{
	int idx = (int)(intptr_t)arg - 1;
	char id[16];
	snprintf(id, sizeof(id), "late%d", idx);
	for (int i = 0; i < 40; i++) {
		char key[16];
		int n = snprintf(key, sizeof(key), "k%d", i);
		T_CHECK_STATUS(ctx_put(late_store, id, key, (size_t)n, &i, sizeof(i), NULL),
		               CTX_OK);
		int v = -1;
		size_t vn = 0;
		T_CHECK_STATUS(ctx_get_value(late_store, id, key, (size_t)n, &v, sizeof(v), &vn),
		               CTX_OK);
		T_CHECK(vn == sizeof(v) && v == i);
	}
	ctx_rcu_read_lock();
	if (idx == 0) { /* one of them holds a grace period */
		atomic_store(&late_phase, 1);
		while (atomic_load(&late_phase) != 2)
			usleep(1000);
	}
	ctx_rcu_read_unlock();
	atomic_fetch_add(&late_done, 1);
}

static void *late_main(void *arg)
{
	char id[16];
	snprintf(id, sizeof(id), "late%d", (int)(intptr_t)arg - 1);
	T_CHECK_STATUS(ctx_put(late_store, id, "first", 5, "x", 1, NULL), CTX_OK);
	int v;
	size_t vn;
	T_CHECK_STATUS(ctx_get_value(late_store, id, "first", 5, &v, sizeof(v), &vn), CTX_OK);
	T_CHECK(pthread_setspecific(late_key, arg) == 0);
	return NULL;
}

static void test_sections_in_late_destructors(void **unused)
{
	(void)unused;
	reset_failures();
	late_store = test_open_memory();
	/* libctx's key exists before late_key: its destructor runs first */
	size_t v;
	assert_int_equal(ctx_get_value(late_store, "none", "k", 1, NULL, 0, &v), CTX_NOT_FOUND);
	assert_int_equal(pthread_key_create(&late_key, late_destructor), 0);
	enum { THREADS = 4 };
	for (int i = 0; i < THREADS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "late%d", i);
		assert_ok(ctx_create(late_store, id));
	}
	atomic_store(&late_phase, 0);
	pthread_t th[THREADS], sync;
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, late_main, (void *)(intptr_t)(i + 1)),
		                 0);
	while (atomic_load(&late_phase) != 1)
		usleep(1000);
	atomic_store(&sync_done, 0);
	assert_int_equal(pthread_create(&sync, NULL, sync_main, NULL), 0);
	usleep(50000);
	assert_int_equal(atomic_load(&sync_done), 0); /* it waits for that section */
	atomic_store(&late_phase, 2);
	pthread_join(sync, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_no_thread_failures();
	assert_int_equal(atomic_load(&late_done), THREADS);
	for (int i = 0; i < THREADS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "late%d", i);
		ctx_state *st;
		assert_ok(ctx_get(late_store, id, &st));
		assert_int_equal(ctx_state_count(st), 41);
		ctx_state_release(st);
	}
	pthread_key_delete(late_key);
	ctx_close(late_store);
}

/* ---- liburcu's call_rcu worker -------------------------------------------------------- */

static struct rcu_head worker_head;
static struct rcu_head worker_again;
static atomic_int worker_runs;

static void worker_again_cb(struct rcu_head *head)
{
	(void)head;
	atomic_fetch_add(&worker_runs, 1);
}

static void worker_cb(struct rcu_head *head)
{
	(void)head;
	ctx_rcu_read_lock();
	atomic_fetch_add(&worker_runs, 1);
	ctx_rcu_read_unlock();
	ctx_call_rcu(&worker_again, worker_again_cb);
}

static void test_sections_in_the_worker(void **unused)
{
	(void)unused;
	ctx_call_rcu(&worker_head, worker_cb);
	rcu_barrier(); /* worker_cb, which queued worker_again_cb... */
	rcu_barrier(); /* ...which ran before this returned */
	assert_int_equal(atomic_load(&worker_runs), 2);
}

/* ---- many short-lived threads ---------------------------------------------------------- */

static ctx_store *churn_store;

static void *churn_main(void *arg)
{
	long i = (long)(intptr_t)arg;
	char key[16];
	int n = snprintf(key, sizeof(key), "k%ld", i % KEYS);
	char buf[32];
	size_t vn;
	T_CHECK_STATUS(ctx_get_value(churn_store, "churn", key, (size_t)n, buf, sizeof(buf), &vn),
	               CTX_OK);
	if (i % 10 == 0)
		T_CHECK_STATUS(ctx_put(churn_store, "churn", key, (size_t)n, "new", 3, NULL),
		               CTX_OK);
	return NULL;
}

static void test_thread_churn_leaves_no_registration(void **unused)
{
	(void)unused;
	reset_failures();
	churn_store = test_open_memory();
	assert_ok(ctx_create(churn_store, "churn"));
	put_keys(churn_store, "churn", 0);
	long threads = test_iters(10000, 1000);
	for (long i = 0; i < threads; i += 4) {
		pthread_t th[4];
		int k = 0;
		for (; k < 4 && i + k < threads; k++)
			assert_int_equal(
			    pthread_create(&th[k], NULL, churn_main, (void *)(intptr_t)(i + k)), 0);
		while (k-- > 0)
			pthread_join(th[k], NULL);
	}
	assert_no_thread_failures();
	synchronize_rcu(); /* no exited thread is waited for */
	ctx_state *st;
	assert_ok(ctx_get(churn_store, "churn", &st));
	assert_int_equal(ctx_state_count(st), KEYS);
	ctx_state_release(st);
	ctx_close(churn_store);
}

/* ---- exit() while threads read and commit ---------------------------------------------- */

static ctx_store *exit_store;
static atomic_int exit_running;

static void *exit_worker(void *arg)
{
	char id[16];
	snprintf(id, sizeof(id), "x%d", (int)(intptr_t)arg);
	atomic_fetch_add(&exit_running, 1);
	for (int i = 0;; i++) {
		if (ctx_put(exit_store, id, "n", 1, &i, sizeof(i), NULL) != CTX_OK)
			_exit(3);
		int v;
		size_t vn;
		if (ctx_get_value(exit_store, id, "n", 1, &v, sizeof(v), &vn) != CTX_OK)
			_exit(4);
	}
	return NULL;
}

static _Noreturn void exit_child(int fd)
{
	if (ctx_open(NULL, &exit_store) != CTX_OK)
		_exit(2);
	for (int i = 0; i < 4; i++) {
		char id[16];
		snprintf(id, sizeof(id), "x%d", i);
		if (ctx_create(exit_store, id) != CTX_OK)
			_exit(2);
		pthread_t th;
		if (pthread_create(&th, NULL, exit_worker, (void *)(intptr_t)i) != 0)
			_exit(2);
	}
	while (atomic_load(&exit_running) < 4)
		usleep(1000);
	usleep(20000);
	if (write(fd, "r", 1) != 1)
		_exit(2);
	exit(0); /* no ctx_close, no thread destructor */
}

static void test_exit_while_threads_read(void **unused)
{
	(void)unused;
	int rfd;
	pid_t pid = test_spawn_child((const char *const[]){NULL}, &rfd);
	char c = 0;
	assert_int_equal(read(rfd, &c, 1), 1);
	close(rfd);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--child") == 0)
		exit_child(atoi(argv[2]));
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_long_reader_holds_grace_periods),
	    cmocka_unit_test(test_sections_in_late_destructors),
	    cmocka_unit_test(test_sections_in_the_worker),
	    cmocka_unit_test(test_thread_churn_leaves_no_registration),
	    cmocka_unit_test(test_exit_while_threads_read),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
