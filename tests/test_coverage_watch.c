/*
 * test_coverage_watch.c - edge cases of the change feed and of watches
 * (src/lib/watch.h, ctx_watch_* in ctx.h) that the other tests do not reach.
 *
 *   - a report whose keys cannot be held (sizes past any memory) is
 *     recorded and delivered without its keys, never dropped, so the events
 *     after it still flow;
 *   - reports far ahead of the frontier (a stalled writer): the ring grows,
 *     nothing pending is lost, the log keeps its bound (a watcher that had
 *     not read lags at the first revision it missed), and the history a
 *     watch may start from moves on correctly afterwards;
 *   - a watch cannot be opened without a file descriptor (CTX_IO, errno
 *     kept), and the feed is unharmed; ctx_watch_wait reports a failing
 *     poll as CTX_IO;
 *   - many watchers (more than the wake-ups kept on the stack), opened and
 *     closed while events flow;
 *   - option limits: a watch history or queue too large is refused by
 *     ctx_open (CTX_INVALID), also after a directory was recovered.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "watch.h"

/* Keys whose sizes no event could hold: the event comes without them. */
static void test_unholdable_keys(void **unused)
{
	feed *f;
	assert_ok(feed_open(1, &(feed_config){.history = 64, .queue = 64}, &f));
	ctx_watch *w;
	assert_ok(feed_watch_open(f, "", true, 0, &w));
	const void *keys[2] = {"a", "b"};

	/* A key count no allocation can cover (only its size is looked at). */
	size_t klens1[1] = {1};
	feed_record(f, 1, CTX_EVENT_COMMITTED, "x", 1, 2, SIZE_MAX / 4, keys, klens1);
	/* A key length no allocation can cover. */
	size_t klens2[2] = {SIZE_MAX / 2, 1};
	feed_record(f, 2, CTX_EVENT_COMMITTED, "y", 1, 3, 2, keys, klens2);
	/* And an ordinary one after them. */
	size_t klens3[2] = {1, 1};
	feed_record(f, 3, CTX_EVENT_RESTORED, "z", 1, 4, 2, keys, klens3);

	ctx_event *e = test_next_event(w);
	assert_int_equal(e->revision, 1);
	assert_string_equal(e->id, "x");
	assert_int_equal(e->version, 2);
	assert_int_equal(e->nkeys, 0);
	assert_null(e->keys);
	ctx_event_free(e);
	e = test_next_event(w);
	assert_int_equal(e->revision, 2);
	assert_string_equal(e->id, "y");
	assert_int_equal(e->nkeys, 0);
	ctx_event_free(e);
	e = test_next_event(w);
	assert_int_equal(e->revision, 3);
	assert_int_equal(e->kind, CTX_EVENT_RESTORED);
	assert_int_equal(e->nkeys, 2);
	assert_memory_equal(e->keys[1], "b", 1);
	ctx_event_free(e);
	test_expect_no_event(w);
	ctx_watch_close(w);
	feed_close(f);
	feed_close(NULL); /* a no-op */
}

/* A history of 4 (a ring of 8) and reports up to 40 ahead of the frontier,
 * in a shuffled order: all kept until the gap closes, then the log keeps the
 * last 4; afterwards the history is the last 4 revisions. */
static void test_ring_growth(void **unused)
{
	uint64_t rng = test_seed("ring", 3);
	for (int round = 0; round < 20; round++) {
		feed *f;
		assert_ok(feed_open(1, &(feed_config){.history = 4, .queue = 1000}, &f));
		ctx_watch *w;
		assert_ok(feed_watch_open(f, "", true, 0, &w));
		enum { N = 40 };
		unsigned order[N];
		for (unsigned i = 0; i < N; i++)
			order[i] = i + 2; /* revisions 2..41, 1 comes last */
		for (unsigned i = N - 1; i > 0; i--) {
			unsigned j = (unsigned)test_rand_below(&rng, i + 1);
			unsigned t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		size_t klen = 1;
		const void *key = "k";
		for (unsigned i = 0; i < N; i++) {
			if (order[i] % 7 == 0)
				feed_skip(f, order[i]);
			else
				feed_record(f, order[i], CTX_EVENT_COMMITTED, "c", 1, order[i], 1, &key,
				            &klen);
			test_expect_no_event(w); /* revision 1 is missing: nothing is deliverable */
		}
		feed_stats st;
		feed_get_stats(f, &st);
		assert_int_equal(st.ring_slots, 64); /* 8 at first */
		feed_record(f, 1, CTX_EVENT_CREATED, "c", 1, 1, 0, NULL, NULL);
		/* All 41 delivered at once; the shared log keeps the last 4, so
		 * the watcher that had not read them lags at 1 (before issue 11
		 * its own queue kept them, and the history grew with the ring). */
		ctx_event *e = test_next_event(w);
		assert_int_equal(e->kind, CTX_EVENT_LAGGED);
		assert_int_equal(e->resume_from, 1);
		ctx_event_free(e);
		test_expect_no_event(w);
		ctx_watch *h, *lagged = w; /* open while the lagged one keeps the log */
		assert_int_equal(feed_watch_open(f, "c", false, N + 1 - 4, &h), CTX_NOT_FOUND);
		assert_ok(feed_watch_open(f, "", true, N + 2 - 4, &w));
		ctx_watch_close(lagged);
		for (uint64_t rev = N + 2 - 4; rev <= N + 1; rev++) {
			if (rev % 7 == 0)
				continue;
			e = test_next_event(w);
			assert_int_equal(e->revision, rev);
			ctx_event_free(e);
		}
		test_expect_no_event(w);
		/* 100 more in order, read as they come: the oldest kept revision
		 * moves on with the frontier, and a watch from before it is
		 * refused. */
		for (uint64_t rev = N + 2; rev < N + 102; rev++) {
			feed_record(f, rev, CTX_EVENT_COMMITTED, "c", 1, rev, 1, &key, &klen);
			e = test_next_event(w);
			assert_int_equal(e->revision, rev);
			ctx_event_free(e);
		}
		uint64_t frontier = N + 101;
		assert_int_equal(feed_watch_open(f, "c", false, frontier - 4, &h), CTX_NOT_FOUND);
		assert_ok(feed_watch_open(f, "c", false, frontier - 3, &h));
		for (uint64_t rev = frontier - 3; rev <= frontier; rev++) {
			e = test_next_event(h);
			assert_int_equal(e->revision, rev);
			ctx_event_free(e);
		}
		test_expect_no_event(h);
		ctx_watch_close(h);
		/* A report for a revision already delivered is ignored. */
		feed_record(f, 5, CTX_EVENT_COMMITTED, "c", 1, 5, 0, NULL, NULL);
		test_expect_no_event(w);
		ctx_watch_close(w);
		feed_close(f);
	}
}

/* Without a file descriptor to spare, a watch cannot be opened; the store
 * and its feed go on. */
static void test_no_fd_for_a_watch(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	ctx_watch *ok;
	assert_ok(ctx_watch_open(s, "a", false, 0, &ok));

	struct rlimit old;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC); /* all below it are in use */
	assert_true(lowest >= 0);
	close(lowest);
	struct rlimit tight = old;
	tight.rlim_cur = (rlim_t)lowest;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
	ctx_watch *w = NULL;
	errno = 0;
	ctx_status st = ctx_watch_open(s, "a", false, 0, &w);
	int err = errno;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(st, CTX_IO);
	assert_int_equal(err, EMFILE);
	assert_null(w);
	assert_non_null(strstr(ctx_last_error(), "eventfd"));

	/* The feed delivers to the watch that exists, and a new one opens. */
	assert_ok(ctx_put(s, "a", "k", 1, "v", 1, NULL));
	ctx_event *e;
	assert_ok(ctx_watch_wait(ok, 5000, &e));
	assert_int_equal(e->version, 2);
	ctx_event_free(e);
	assert_ok(ctx_watch_open(s, "a", false, 2, &w));
	e = test_next_event(w);
	assert_int_equal(e->version, 2);
	ctx_event_free(e);
	ctx_watch_close(w);
	ctx_watch_close(ok);
	ctx_close(s);
}

/* poll() failing (here: more descriptors asked for than allowed) is
 * reported, not retried forever. */
static void test_wait_poll_failure(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	ctx_watch *w;
	assert_ok(ctx_watch_open(s, "a", false, 0, &w));
	struct rlimit old;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	struct rlimit none = old;
	none.rlim_cur = 0;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0);
	ctx_event *e = NULL;
	ctx_status st = ctx_watch_wait(w, 1000, &e);
	int err = errno;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(st, CTX_IO);
	assert_int_equal(err, EINVAL);
	assert_null(e);
	assert_non_null(strstr(ctx_last_error(), "poll"));
	/* And it works again with the limit back. */
	assert_ok(ctx_put(s, "a", "k", 1, "v", 1, NULL));
	assert_ok(ctx_watch_wait(w, 5000, &e));
	ctx_event_free(e);
	ctx_watch_close(w);
	ctx_close(s);
}

/* 40 watchers while a writer commits: each gets every event of its
 * context, in order; watchers come and go meanwhile. */
typedef struct writer_arg {
	ctx_store *s;
	int n;
	atomic_int failures;
	atomic_bool done;
} writer_arg;

static void *writer(void *p)
{
	writer_arg *a = p;
	for (int i = 0; i < a->n; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		if (ctx_put(a->s, i % 2 ? "odd" : "even", k, strlen(k), "v", 1, NULL) != CTX_OK)
			atomic_fetch_add(&a->failures, 1);
	}
	atomic_store(&a->done, true);
	return NULL;
}

static void test_many_watchers(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "odd"));
	assert_ok(ctx_create(s, "even"));
	enum { W = 40 };
	ctx_watch *w[W];
	for (int i = 0; i < W; i++)
		assert_ok(ctx_watch_open(s, i % 2 ? "odd" : "even", false, 0, &w[i]));
	writer_arg a = {s, (int)test_iters(2000, 400), 0, false};
	if (a.n > 4000) /* within the default queue of 4096 */
		a.n = 4000;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, writer, &a), 0);
	/* Watchers opened and closed while the writer runs (at least once: the
	 * writer may be done before this loop starts). */
	do {
		ctx_watch *x;
		assert_ok(ctx_watch_open(s, "", true, 0, &x));
		ctx_watch_close(x);
	} while (!atomic_load(&a.done));
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(atomic_load(&a.failures), 0);
	for (int i = 0; i < W; i++) {
		uint64_t last = 0, version = 1;
		int n = 0;
		ctx_event *e;
		while (ctx_watch_next(w[i], &e) == CTX_OK) {
			assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
			assert_string_equal(e->id, i % 2 ? "odd" : "even");
			assert_true(e->revision > last);
			assert_int_equal(e->version, ++version);
			last = e->revision;
			n++;
			ctx_event_free(e);
		}
		assert_int_equal(n, i % 2 ? a.n / 2 : (a.n + 1) / 2);
		ctx_watch_close(w[i]);
	}
	ctx_close(s);
}

/* Limits of the watch options, checked at open, also after recovery. */
static void test_watch_option_limits(void **unused)
{
	ctx_options o;
	ctx_options_init(&o);
	o.watch_history = (size_t)1 << 41;
	ctx_store *s = NULL;
	assert_int_equal(ctx_open(&o, &s), CTX_INVALID);
	assert_null(s);
	ctx_options_init(&o);
	o.watch_queue = SIZE_MAX / 2;
	assert_int_equal(ctx_open(&o, &s), CTX_INVALID);
	assert_null(s);

	/* With a directory: recovered and its log opened, then refused; the
	 * directory is unharmed and unlocked. */
	char *dir = test_make_dir("covwatch-limits");
	ctx_options_init(&o);
	o.dir = dir;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "kept"));
	ctx_close(s);
	o.watch_history = (size_t)1 << 41;
	s = NULL;
	assert_int_equal(ctx_open(&o, &s), CTX_INVALID);
	assert_null(s);
	o.watch_history = 0;
	assert_ok(ctx_open(&o, &s));
	ctx_state *st;
	assert_ok(ctx_get(s, "kept", &st));
	ctx_state_release(st);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_unholdable_keys),   cmocka_unit_test(test_ring_growth),
	        cmocka_unit_test(test_no_fd_for_a_watch), cmocka_unit_test(test_wait_poll_failure),
	        cmocka_unit_test(test_many_watchers),     cmocka_unit_test(test_watch_option_limits),
	};
	if (getenv("CTX_TEST_FILTER"))
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
