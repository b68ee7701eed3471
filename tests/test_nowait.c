/*
 * test_nowait.c - commits that do not wait for durability (the server's path),
 * the durable revision and its notifier, ctx_get_latest, and compare-and-set
 * retry loops that converge under durability always.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "testutil.h"

static ctx_store *open_dir(const char *dir, ctx_durability d)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = d;
	return test_open(&o);
}

/* Wait (poll on the notifier) until revision rev may be acknowledged. */
static void wait_durable(ctx_store *s, ctx_notifier *n, uint64_t rev)
{
	for (;;) {
		uint64_t d = 0;
		assert_ok(ctx_durable_revision(s, &d));
		if (d >= rev)
			return;
		struct pollfd p = {ctx_notifier_fd(n), POLLIN, 0};
		assert_true(poll(&p, 1, 30000) == 1); /* never silent while one is pending */
		ctx_notifier_clear(n);
	}
}

static uint64_t commit_put(ctx_store *s, const char *id, const char *k, const char *v,
                           uint64_t expected, uint64_t *version)
{
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, id, &t));
	assert_ok(ctx_txn_put(t, k, strlen(k), v, strlen(v)));
	uint64_t rev = 0;
	assert_ok(ctx_txn_commit_nowait(t, expected, version, &rev));
	return rev;
}

static void check_value(ctx_state *st, const char *k, const char *v)
{
	const void *got;
	size_t n;
	assert_true(ctx_state_lookup(st, k, strlen(k), &got, &n));
	assert_int_equal(n, strlen(v));
	assert_memory_equal(got, v, n);
}

static void test_nowait_commit_becomes_visible_and_durable(void **unused)
{
	char *dir = test_make_dir("nowait_commit");
	ctx_store *s = open_dir(dir, CTX_DURABILITY_ALWAYS);
	ctx_notifier *n;
	assert_ok(ctx_notifier_open(s, &n));
	assert_true(ctx_notifier_fd(n) >= 0);

	/* A create with data, then commits on top of it, none waited for. */
	ctx_txn *t;
	assert_ok(ctx_txn_begin_create(s, "c", &t));
	assert_ok(ctx_txn_put(t, "a", 1, "1", 1));
	uint64_t v = 0, rev_create = 0;
	assert_ok(ctx_txn_commit_nowait(t, 0, &v, &rev_create));
	assert_int_equal(v, 1);
	assert_true(rev_create > 0);

	/* The latest version is there at once, durable or not. */
	ctx_state *st;
	assert_ok(ctx_get_latest(s, "c", &st));
	assert_int_equal(ctx_state_version(st), 1);
	assert_int_equal(ctx_state_revision(st), rev_create);
	ctx_state_release(st);

	uint64_t last = 0;
	for (int i = 0; i < 50; i++) {
		char val[16];
		snprintf(val, sizeof(val), "%d", i);
		uint64_t rev = commit_put(s, "c", "a", val, 0, &v);
		assert_int_equal(v, (uint64_t)i + 2);
		assert_true(rev > last);
		last = rev;
	}
	wait_durable(s, n, last);
	/* Durable means visible to ctx_get, with the last value. */
	assert_ok(ctx_get(s, "c", &st));
	assert_int_equal(ctx_state_version(st), 51);
	check_value(st, "a", "49");
	ctx_state_release(st);

	/* A guarded nowait commit on the latest version succeeds; a stale guard
	 * conflicts and changes nothing. */
	uint64_t rev = commit_put(s, "c", "b", "x", 51, &v);
	assert_int_equal(v, 52);
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_put(t, "b", 1, "y", 1));
	assert_int_equal(ctx_txn_commit_nowait(t, 51, NULL, NULL), CTX_CONFLICT);
	wait_durable(s, n, rev);

	/* A drop without waiting: gone for get_latest and writes at once. */
	uint64_t drop_rev = 0;
	assert_ok(ctx_drop_nowait(s, "c", &drop_rev));
	assert_true(drop_rev > rev);
	assert_int_equal(ctx_get_latest(s, "c", &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_txn_begin(s, "c", &t), CTX_NOT_FOUND);
	wait_durable(s, n, drop_rev);
	assert_int_equal(ctx_get(s, "c", &st), CTX_NOT_FOUND);

	/* Another context survives a reopen with every durable nowait commit. */
	assert_ok(ctx_create(s, "d"));
	rev = commit_put(s, "d", "k", "v", 0, NULL);
	wait_durable(s, n, rev);
	ctx_notifier_close(n);
	ctx_close(s);
	s = open_dir(dir, CTX_DURABILITY_ALWAYS);
	assert_ok(ctx_get(s, "d", &st));
	check_value(st, "k", "v");
	ctx_state_release(st);
	assert_int_equal(ctx_get(s, "c", &st), CTX_NOT_FOUND);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* Batch and memory stores acknowledge at once: the durable revision is the
 * one just handed out. */
static void test_nowait_batch_and_memory_ack_at_once(void **unused)
{
	char *dir = test_make_dir("nowait_batch");
	ctx_store *stores[2] = {open_dir(dir, CTX_DURABILITY_BATCH), test_open_memory()};
	for (int i = 0; i < 2; i++) {
		ctx_store *s = stores[i];
		assert_ok(ctx_create(s, "c"));
		uint64_t v = 0;
		uint64_t rev = commit_put(s, "c", "k", "v", 0, &v);
		assert_int_equal(v, 2);
		uint64_t d = 0;
		assert_ok(ctx_durable_revision(s, &d));
		assert_true(d >= rev);
		ctx_state *st;
		assert_ok(ctx_get(s, "c", &st));
		check_value(st, "k", "v");
		ctx_state_release(st);
		uint64_t drop_rev = 0;
		assert_ok(ctx_drop_nowait(s, "c", &drop_rev));
		assert_int_equal(drop_rev, rev + 1);
		assert_int_equal(ctx_get(s, "c", &st), CTX_NOT_FOUND);
		ctx_close(s);
	}
	test_remove_dir(dir);
	free(dir);
}

static void test_nowait_bad_arguments(void **unused)
{
	ctx_store *s = test_open_memory();
	uint64_t r;
	ctx_state *st;
	ctx_notifier *n;
	assert_int_equal(ctx_txn_commit_nowait(NULL, 0, NULL, NULL), CTX_INVALID);
	assert_int_equal(ctx_drop_nowait(s, "", &r), CTX_INVALID);
	assert_int_equal(ctx_drop_nowait(s, "absent", &r), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_latest(s, "absent", &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_latest(s, "a\x01", &st), CTX_INVALID);
	assert_int_equal(ctx_get_latest(s, "x", NULL), CTX_INVALID);
	assert_int_equal(ctx_durable_revision(NULL, &r), CTX_INVALID);
	assert_int_equal(ctx_durable_revision(s, NULL), CTX_INVALID);
	assert_int_equal(ctx_notifier_open(NULL, &n), CTX_INVALID);
	assert_int_equal(ctx_notifier_open(s, NULL), CTX_INVALID);
	assert_int_equal(ctx_notifier_fd(NULL), -1);
	ctx_notifier_clear(NULL);
	ctx_notifier_close(NULL);
	/* A create that meets an existing id. */
	assert_ok(ctx_create(s, "x"));
	ctx_txn *t;
	assert_ok(ctx_txn_begin_create(s, "x", &t));
	assert_int_equal(ctx_txn_commit_nowait(t, 0, NULL, &r), CTX_EXISTS);
	ctx_close(s);
}

/* ---- compare-and-set retry loops under durability always ------------------ */

typedef struct cas_arg {
	ctx_store *s;
	int increments;
	bool latest; /* read with ctx_get_latest, not ctx_get */
	atomic_long attempts;
	atomic_long stale; /* retries that read no newer version than the conflict */
	atomic_bool stop;
} cas_arg;

static void *cas_worker(void *p)
{
	cas_arg *a = p;
	uint64_t conflicted = 0; /* the version the last conflicting attempt expected */
	for (int i = 0; i < a->increments; i++) {
		for (;;) {
			atomic_fetch_add(&a->attempts, 1);
			ctx_state *st;
			T_CHECK_STATUS((a->latest ? ctx_get_latest : ctx_get)(a->s, "counter", &st), CTX_OK);
			const void *v;
			size_t n;
			long cur = 0;
			if (ctx_state_lookup(st, "n", 1, &v, &n)) {
				char buf[32] = {0};
				memcpy(buf, v, n < 31 ? n : 31);
				cur = atol(buf);
			}
			uint64_t seen = ctx_state_version(st);
			ctx_state_release(st);
			if (conflicted && seen <= conflicted)
				atomic_fetch_add(&a->stale, 1);
			conflicted = 0;
			char buf[32];
			int len = snprintf(buf, sizeof(buf), "%ld", cur + 1);
			ctx_txn *t;
			T_CHECK_STATUS(ctx_txn_begin(a->s, "counter", &t), CTX_OK);
			T_CHECK_STATUS(ctx_txn_put(t, "n", 1, buf, (size_t)len), CTX_OK);
			ctx_status r = ctx_txn_commit(t, seen, NULL);
			if (r == CTX_OK)
				break;
			conflicted = seen;
			T_CHECK_STATUS(r, CTX_CONFLICT);
			if (r != CTX_CONFLICT)
				return NULL;
		}
	}
	return NULL;
}

static void *plain_writer(void *p)
{
	cas_arg *a = p;
	long i = 0;
	while (!atomic_load(&a->stop)) {
		char buf[32];
		int len = snprintf(buf, sizeof(buf), "%ld", i++);
		T_CHECK_STATUS(ctx_put(a->s, "counter", "other", 5, buf, (size_t)len, NULL), CTX_OK);
	}
	return NULL;
}

/* Four threads increment one counter with guarded commits beside a thread of
 * plain puts; returns attempts per increment. Whatever the timing, a retry
 * after CTX_CONFLICT reads a newer version than the one that conflicted: the
 * commit waits until the version it met is visible. Attempts per increment
 * depend on how fast the plain writer is, so they are printed, not bounded;
 * stale retries are counted and must be rare. */
static double cas_run(bool latest)
{
	char *dir = test_make_dir("cas_always");
	cas_arg a = {.s = open_dir(dir, CTX_DURABILITY_ALWAYS), .latest = latest};
	a.increments = (int)test_iters(150, 20);
	assert_ok(ctx_create(a.s, "counter"));
	reset_failures();
	pthread_t w, th[4];
	pthread_create(&w, NULL, plain_writer, &a);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, cas_worker, &a);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	atomic_store(&a.stop, true);
	pthread_join(w, NULL);
	assert_no_thread_failures();

	ctx_state *st;
	assert_ok(ctx_get(a.s, "counter", &st));
	const void *v;
	size_t n;
	assert_true(ctx_state_lookup(st, "n", 1, &v, &n));
	char buf[32] = {0};
	memcpy(buf, v, n);
	assert_int_equal(atol(buf), 4 * a.increments); /* no lost increment */
	ctx_state_release(st);
	double per = (double)atomic_load(&a.attempts) / (4.0 * a.increments);
	long stale = atomic_load(&a.stale);
	printf("cas: %.2f attempts per increment, %ld stale retries, reading with %s (4 guarded "
	       "writers, 1 plain writer)\n",
	       per, stale, latest ? "ctx_get_latest" : "ctx_get");
	/* Only wait_visible's give-up after 10,000 yields (a publisher preempted
	 * that long, on a loaded machine) leaves a retry stale: 0-5 per run
	 * measured with two runs on 2 cores, but up to 132 of 600 increments
	 * (normal build) and 41 of 148 (TSan) on 2 cores under a load of 30,
	 * where the old bound of 4 per increment was a quarter away. Counted
	 * against the retries instead: at most 1 in 500 stale there. Without
	 * the wait nearly every retry is: 6,000-11,000 attempts per increment,
	 * millions stale per run. */
	long retries = atomic_load(&a.attempts) - 4L * a.increments;
	assert_true(stale * 4 <= retries);
	ctx_close(a.s);
	test_remove_dir(dir);
	free(dir);
	return per;
}

/* Reading the visible version: a guarded commit that meets a pending version
 * waits for it to become visible, so no retry rereads the version that
 * conflicted. */
static void test_cas_converges_reading_visible(void **unused)
{
	cas_run(false);
}

/* Reading the latest decided version, as ctx.h recommends for
 * read-modify-write: about one attempt per increment. */
static void test_cas_converges_reading_latest(void **unused)
{
	assert_true(cas_run(true) < 10.0);
}

/* One large transaction goes through the log without leaving a buffer of
 * its size behind (before: the batch buffers grew to the largest batch and
 * stayed so; two 96 MiB transactions left 195 MiB resident). Records over
 * 64 KiB are built before the log lock is taken and freed once written;
 * smaller ones fill pooled chunks, so the pending batch is never copied
 * under the lock either. */
static void test_log_buffers_stay_bounded(void **unused)
{
	char *dir = test_make_dir("log_buffers");
	ctx_store *s = open_dir(dir, CTX_DURABILITY_ALWAYS);
	assert_ok(ctx_create(s, "big"));
	size_t before = log_buffer_bytes(s->log);
	static char val[8192];
	memset(val, 'v', sizeof(val));
	for (int round = 0; round < 2; round++) {
		ctx_txn *t;
		assert_ok(ctx_txn_begin(s, "big", &t));
		for (int i = 0; i < 1024; i++) { /* 8 MiB */
			char key[16];
			int kn = snprintf(key, sizeof(key), "k%d", i);
			assert_ok(ctx_txn_put(t, key, (size_t)kn, val, sizeof(val)));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
		/* Small commits around it still work and share the buffers. */
		assert_ok(ctx_put(s, "big", "small", 5, "x", 1, NULL));
	}
	size_t after = log_buffer_bytes(s->log);
	printf("log batch buffers: %zu bytes before, %zu after two 8 MiB transactions\n", before,
	       after);
	assert_true(after <= before);
	assert_true(after < (1u << 20));
	ctx_close(s);
	/* Everything is there after a reopen. */
	s = open_dir(dir, CTX_DURABILITY_ALWAYS);
	ctx_state *st;
	assert_ok(ctx_get(s, "big", &st));
	assert_int_equal(ctx_state_count(st), 1025);
	ctx_state_release(st);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* Under durability batch a change is visible at once, but watchers get its
 * event only once the sync that covers it is done (before, events were
 * delivered before the fsync, against what ctx.h promised). */
static void test_batch_events_only_once_durable(void **unused)
{
	char *dir = test_make_dir("batch_events");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	o.batch_ms = 1500;
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	ctx_watch *w;
	assert_ok(ctx_watch_open(s, "", true, 0, &w));
	/* The flusher syncs the first batch at once, then sleeps batch_ms. */
	assert_ok(ctx_create(s, "c"));
	ctx_event *e;
	assert_ok(ctx_watch_wait(w, 10000, &e));
	assert_int_equal(e->kind, CTX_EVENT_CREATED);
	assert_true(log_synced_revision(s->log) >= e->revision);
	ctx_event_free(e);
	uint64_t v;
	assert_ok(ctx_put(s, "c", "k", 1, "v", 1, &v));
	ctx_state *st;
	assert_ok(ctx_get(s, "c", &st)); /* visible at once */
	assert_int_equal(ctx_state_version(st), v);
	uint64_t rev = ctx_state_revision(st);
	ctx_state_release(st);
	/* Each event that arrives is durable; the put's arrives after its sync. */
	for (;;) {
		assert_ok(ctx_watch_wait(w, 10000, &e));
		uint64_t synced = log_synced_revision(s->log);
		assert_true(synced >= e->revision);
		bool done = e->revision == rev;
		ctx_event_free(e);
		if (done)
			break;
	}
	ctx_watch_close(w);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A create of an id whose drop is decided but not durable yet (a server's
 * DEL then HSET of one key, pipelined) creates once the drop is durable,
 * through ctx_create or a nowait commit of ctx_txn_begin_create: before,
 * it failed with CTX_EXISTS while ctx_get_latest and ctx_drop already said
 * CTX_NOT_FOUND. */
static void test_create_after_nowait_drop(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("nowait-drop-create");
	ctx_store *s = open_dir(dir, CTX_DURABILITY_ALWAYS);
	assert_ok(ctx_create(s, "k"));
	commit_put(s, "k", "a", "old", 0, NULL);
	char val[16];
	for (int round = 0; round < 20; round++) {
		uint64_t drev = 0, rev = 0;
		assert_ok(ctx_drop_nowait(s, "k", &drev));
		ctx_state *st = NULL;
		assert_int_equal(ctx_get_latest(s, "k", &st), CTX_NOT_FOUND);
		snprintf(val, sizeof(val), "v%d", round);
		if (round % 2) {
			assert_ok(ctx_create(s, "k"));
			rev = commit_put(s, "k", "b", val, 0, NULL);
		} else {
			ctx_txn *t;
			assert_ok(ctx_txn_begin_create(s, "k", &t));
			assert_ok(ctx_txn_put(t, "b", 1, val, strlen(val)));
			assert_ok(ctx_txn_commit_nowait(t, 0, NULL, &rev));
		}
		assert_true(rev > drev);
		assert_ok(ctx_get_latest(s, "k", &st));
		check_value(st, "b", val);
		assert_false(ctx_state_lookup(st, "a", 1, NULL, NULL));
		ctx_state_release(st);
	}
	ctx_close(s);
	s = open_dir(dir, CTX_DURABILITY_ALWAYS);
	ctx_state *st = NULL;
	assert_ok(ctx_get(s, "k", &st));
	check_value(st, "b", "v19");
	assert_false(ctx_state_lookup(st, "a", 1, NULL, NULL));
	ctx_state_release(st);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A nowait commit hands its version to the log before it links it into
 * the history chain; the flusher used to be able to publish it in between:
 * a reader then saw version V with V - 1 missing from its history and
 * ctx_get_latest behind ctx_get (found in review, round 6). Writers with one
 * nowait commit in flight each, threads that keep both CPUs busy so that
 * committers get preempted, and readers checking both after every read. */
enum { NW_WRITERS = 4, NW_COMMITS = 1500, NW_SPINNERS = 3, NW_READERS = 2 };

typedef struct nw_shared {
	ctx_store *s;
	atomic_bool stop;
	atomic_int writers_left;
	atomic_ulong missing, behind, checks;
} nw_shared;

static void *nw_writer(void *arg)
{
	nw_shared *sh = arg;
	for (int i = 0; i < NW_COMMITS; i++) {
		ctx_txn *t;
		assert_ok(ctx_txn_begin(sh->s, "h", &t));
		assert_ok(ctx_txn_put(t, "k", 1, &i, sizeof(i)));
		uint64_t rev = 0, d = 0;
		assert_ok(ctx_txn_commit_nowait(t, 0, NULL, &rev));
		for (;;) {
			assert_ok(ctx_durable_revision(sh->s, &d));
			if (d >= rev)
				break;
			sched_yield();
		}
	}
	if (atomic_fetch_sub(&sh->writers_left, 1) == 1)
		atomic_store(&sh->stop, true);
	return NULL;
}

static void *nw_spinner(void *arg)
{
	nw_shared *sh = arg;
	volatile unsigned long x = 0;
	while (!atomic_load(&sh->stop))
		for (int i = 0; i < 10000; i++)
			x++;
	return NULL;
}

static void *nw_reader(void *arg)
{
	nw_shared *sh = arg;
	while (!atomic_load(&sh->stop)) {
		ctx_state *st, *lt, *p;
		assert_ok(ctx_get(sh->s, "h", &st));
		uint64_t v = ctx_state_version(st);
		ctx_state_release(st);
		assert_ok(ctx_get_latest(sh->s, "h", &lt));
		if (ctx_state_version(lt) < v)
			atomic_fetch_add(&sh->behind, 1);
		ctx_state_release(lt);
		if (v < 2)
			continue;
		atomic_fetch_add(&sh->checks, 1);
		if (ctx_get_at(sh->s, "h", v - 1, &p) == CTX_OK) {
			ctx_state_release(p);
			continue;
		}
		/* The chain keeps the newest 64 versions (history_depth): v - 1
		 * was cut only if the head is at v + 63 or later now (a reader
		 * preempted between its calls can be that far behind). */
		assert_ok(ctx_get_latest(sh->s, "h", &lt));
		if (ctx_state_version(lt) < v + 60)
			atomic_fetch_add(&sh->missing, 1);
		ctx_state_release(lt);
	}
	return NULL;
}

static void test_nowait_visible_is_in_history(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("nowait-linked");
	nw_shared sh = {.s = open_dir(dir, CTX_DURABILITY_ALWAYS), .writers_left = NW_WRITERS};
	assert_ok(ctx_create(sh.s, "h"));
	pthread_t t[NW_WRITERS + NW_SPINNERS + NW_READERS];
	int n = 0;
	for (int i = 0; i < NW_READERS; i++)
		assert_int_equal(pthread_create(&t[n++], NULL, nw_reader, &sh), 0);
	for (int i = 0; i < NW_SPINNERS; i++)
		assert_int_equal(pthread_create(&t[n++], NULL, nw_spinner, &sh), 0);
	for (int i = 0; i < NW_WRITERS; i++)
		assert_int_equal(pthread_create(&t[n++], NULL, nw_writer, &sh), 0);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	assert_true(atomic_load(&sh.checks) > 0);
	assert_int_equal(atomic_load(&sh.missing), 0);
	assert_int_equal(atomic_load(&sh.behind), 0);
	ctx_state *st;
	assert_ok(ctx_get(sh.s, "h", &st));
	assert_int_equal(ctx_state_version(st), 1 + NW_WRITERS * NW_COMMITS);
	ctx_state_release(st);
	ctx_close(sh.s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_nowait_commit_becomes_visible_and_durable),
	        cmocka_unit_test(test_nowait_batch_and_memory_ack_at_once),
	        cmocka_unit_test(test_nowait_bad_arguments),
	        cmocka_unit_test(test_cas_converges_reading_visible),
	        cmocka_unit_test(test_cas_converges_reading_latest),
	        cmocka_unit_test(test_log_buffers_stay_bounded),
	        cmocka_unit_test(test_batch_events_only_once_durable),
	        cmocka_unit_test(test_create_after_nowait_drop),
	        cmocka_unit_test(test_nowait_visible_is_in_history),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
