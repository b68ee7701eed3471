/*
 * test_expiry_semantics.c - one meaning for a context past its time-to-live
 * that the reaper has not removed yet: it is gone for every call.
 *
 * Each call is made on such a context and must say CTX_NOT_FOUND (leaving
 * its outputs untouched), list nothing, and change nothing: in particular a
 * restore, a point or a commit must not bring it back to life. Then the
 * reaper, woken by those calls, drops it durably and watchers see
 * CTX_EVENT_EXPIRED (not CTX_EVENT_DROPPED: a ctx_drop on it was refused).
 *
 * Time is a fake clock the test sets. To keep the context expired but not
 * reaped while the calls run, the clock holds every thread but the test's
 * own (the reaper, woken by the first call, waits in its clock read) until
 * the test lets it go; the only wait is a bounded poll for the reaper to act
 * afterwards.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_clock.h" /* T0, the clock that holds the reaper */

#define MS  1000ull
#define TTL 1000u /* ms */

static ctx_store *open_store(fake_clock *fc, const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.reaper_ms = 3600000; /* the reaper runs only when woken */
	o.clock_us = fake_clock_read;
	o.clock_arg = fc;
	return test_open(&o);
}

static bool wait_count(ctx_store *s, size_t n)
{
	double until = test_now() + 60.0;
	while (ctx_count(s) != n && test_now() < until)
		usleep(1000);
	return ctx_count(s) == n;
}

#define SENTINEL ((void *)&sentinel_)
static char sentinel_;

/* Every reading call on "e": CTX_NOT_FOUND, outputs untouched. */
static void expect_reads_gone(ctx_store *s)
{
	ctx_state *st = SENTINEL;
	assert_int_equal(ctx_get(s, "e", &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_at(s, "e", 1, &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_at(s, "e", 3, &st), CTX_NOT_FOUND);
	assert_ptr_equal(st, SENTINEL);
	ctx_history_entry *h = SENTINEL;
	size_t n = 77;
	assert_int_equal(ctx_history(s, "e", &h, &n), CTX_NOT_FOUND);
	assert_ptr_equal(h, SENTINEL);
	assert_int_equal(n, 77);
	ctx_point *p = SENTINEL;
	assert_int_equal(ctx_point_list(s, "e", &p, &n), CTX_NOT_FOUND);
	assert_ptr_equal(p, SENTINEL);
	ctx_tracker *t = SENTINEL;
	assert_int_equal(ctx_tracker_open(s, "e", NULL, &t), CTX_NOT_FOUND);
	assert_ptr_equal(t, SENTINEL);
	ctx_txn *x = SENTINEL;
	assert_int_equal(ctx_txn_begin(s, "e", &x), CTX_NOT_FOUND);
	assert_ptr_equal(x, SENTINEL);
}

/* Every changing call on "e": CTX_NOT_FOUND. */
static void expect_changes_refused(ctx_store *s, uint64_t pinned)
{
	uint64_t v = 99;
	assert_int_equal(ctx_put(s, "e", "k", 1, "v", 1, &v), CTX_NOT_FOUND);
	assert_int_equal(ctx_del(s, "e", "a", 1, &v), CTX_NOT_FOUND);
	assert_int_equal(ctx_point_create(s, "e", "late", &v), CTX_NOT_FOUND);
	assert_int_equal(ctx_point_delete(s, "e", pinned), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore(s, "e", 1, &v), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_latest(s, "e", &v), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_label(s, "e", "L", &v), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_before(s, "e", T0 + 10 * TTL * MS, &v), CTX_NOT_FOUND);
	assert_int_equal(v, 99);
	assert_int_equal(ctx_set_ttl(s, "e", 0), CTX_NOT_FOUND);
	assert_int_equal(ctx_set_ttl(s, "e", 3600000), CTX_NOT_FOUND);
	assert_int_equal(ctx_drop(s, "e"), CTX_NOT_FOUND);
}

/* Listings leave "e" out; "live" stays. */
static void expect_unlisted(ctx_store *s)
{
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	assert_int_equal(l.count, 1);
	assert_string_equal(l.ids[0], "live");
	ctx_list_free(&l);
	assert_ok(ctx_list_ids(s, "e", NULL, 0, &l));
	assert_int_equal(l.count, 0);
	ctx_list_free(&l);
	ctx_context_status *v;
	size_t n;
	assert_ok(ctx_status_view(s, &v, &n));
	assert_int_equal(n, 1);
	assert_string_equal(v[0].id, "live");
	free(v);
	ctx_context_status one;
	memset(&one, 0x5a, sizeof(one));
	assert_int_equal(ctx_context_info(s, "e", &one), CTX_NOT_FOUND);
	assert_int_equal(one.version, 0x5a5a5a5a5a5a5a5aull);
}

/* The next event of w for "e" (failing after a bounded wait). */
static ctx_event_kind next_kind(ctx_watch *w, uint64_t *version)
{
	ctx_event *e = NULL;
	assert_ok(ctx_watch_wait(w, 20000, &e));
	assert_string_equal(e->id, "e");
	ctx_event_kind k = e->kind;
	*version = e->version;
	ctx_event_free(e);
	return k;
}

static void check_expired_is_gone(bool with_dir)
{
	fake_clock *fc = new_clock();
	char *dir = with_dir ? test_make_dir("expiry-semantics") : NULL;
	ctx_store *s = open_store(fc, dir);
	assert_ok(ctx_create(s, "e"));
	assert_ok(ctx_create(s, "live"));
	test_put_str(s, "e", "a", "1");
	uint64_t pinned;
	assert_ok(ctx_point_create(s, "e", "L", &pinned));
	test_put_str(s, "e", "b", "2"); /* e at version 3 */
	assert_ok(ctx_set_ttl(s, "e", TTL));
	ctx_watch *w;
	assert_ok(ctx_watch_open(s, "e", false, 0, &w));
	/* Begun while e was live: they must not commit after it expired. */
	ctx_txn *txn;
	assert_ok(ctx_txn_begin(s, "e", &txn));
	assert_ok(ctx_txn_put(txn, "t", 1, "x", 1));
	ctx_tracker *tr;
	assert_ok(ctx_tracker_open(s, "e", NULL, &tr));
	ctx_session *se;
	assert_ok(ctx_session_open(s, &se));
	assert_ok(ctx_session_activate(se, "e", false));

	/* Past the deadline; the reaper may wake but cannot act. */
	clock_hold_others(fc);
	atomic_store(&fc->now, T0 + (TTL + 1) * MS);

	for (int round = 0; round < 2; round++) { /* and again: nothing revived it */
		expect_reads_gone(s);
		expect_changes_refused(s, pinned);
		expect_unlisted(s);
		uint64_t v = 99;
		if (round == 0) /* a commit ends the transaction, failed or not */
			assert_int_equal(ctx_txn_commit(txn, 0, &v), CTX_NOT_FOUND);
		assert_int_equal(v, 99);
		assert_int_equal(ctx_tracker_put(tr, "k", 1, "v", 1), CTX_NOT_FOUND);
		assert_int_equal(ctx_tracker_sync(tr, &v), CTX_NOT_FOUND);
		assert_int_equal(ctx_tracker_refresh(tr), CTX_NOT_FOUND);
		ctx_state *st = SENTINEL;
		assert_int_equal(ctx_session_get(se, &st), CTX_NOT_FOUND);
		assert_ptr_equal(st, SENTINEL);
		assert_int_equal(ctx_session_activate(se, "e", false), CTX_NOT_FOUND);
		/* Not reaped yet: still counted (ctx_count is one atomic read). */
		assert_int_equal(ctx_count(s), 2);
	}
	ctx_tracker_close(tr);

	/* Let the reaper go: it was woken, and drops e as expired. Had any call
	 * above noted an access or committed, it would find e used since it
	 * went idle and leave it. */
	clock_release(fc);
	assert_true(wait_count(s, 1));
	uint64_t version;
	assert_int_equal(next_kind(w, &version), CTX_EVENT_EXPIRED);
	assert_int_equal(version, 0);
	ctx_event *e = SENTINEL;
	assert_int_equal(ctx_watch_next(w, &e), CTX_NOT_FOUND); /* nothing else */
	ctx_watch_close(w);
	expect_reads_gone(s);
	ctx_session_close(se);
	ctx_close(s);

	if (with_dir) { /* the drop is durable */
		s = open_store(fc, dir);
		assert_int_equal(ctx_count(s), 1);
		expect_reads_gone(s);
		expect_unlisted(s);
		ctx_close(s);
		test_remove_dir(dir);
		free(dir);
	}
}

static void test_expired_is_gone_memory(void **unused)
{
	(void)unused;
	check_expired_is_gone(false);
}

static void test_expired_is_gone_durable(void **unused)
{
	(void)unused;
	check_expired_is_gone(true);
}

/* Reads other than ctx_get count as accesses too: they postpone expiry. */
static void test_reads_postpone_expiry(void **unused)
{
	(void)unused;
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL);
	const char *ids[] = {"by-get-at", "by-history", "by-points", "idle"};
	for (int i = 0; i < 4; i++) {
		assert_ok(ctx_create(s, ids[i]));
		assert_ok(ctx_set_ttl(s, ids[i], TTL));
	}
	atomic_store(&fc->now, T0 + (TTL - 10) * MS);
	ctx_state *st;
	assert_ok(ctx_get_at(s, "by-get-at", 1, &st));
	ctx_state_release(st);
	ctx_history_entry *h;
	size_t n;
	assert_ok(ctx_history(s, "by-history", &h, &n));
	free(h);
	ctx_point *p;
	assert_ok(ctx_point_list(s, "by-points", &p, &n));
	free(p);
	/* Listing is no access. */
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	assert_int_equal(l.count, 4);
	ctx_list_free(&l);

	atomic_store(&fc->now, T0 + (TTL + 10) * MS);
	assert_int_equal(ctx_expire_now(s), 1);
	assert_int_equal(ctx_get(s, "idle", &st), CTX_NOT_FOUND);
	for (int i = 0; i < 3; i++) {
		assert_ok(ctx_get(s, ids[i], &st));
		ctx_state_release(st);
	}
	ctx_close(s);
}

/* ctx_context_info: what the status view says of one context, its errors,
 * and no access noted (a context looked at this way still expires). */
static void test_context_info(void **unused)
{
	(void)unused;
	fake_clock *fc = new_clock();
	ctx_store *s = open_store(fc, NULL);
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k1", "value");
	test_put_str(s, "a", "k2", "v");
	assert_ok(ctx_create(s, "b"));
	assert_ok(ctx_set_ttl(s, "b", TTL));

	ctx_context_status *v;
	size_t n;
	assert_ok(ctx_status_view(s, &v, &n));
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		ctx_context_status one;
		assert_ok(ctx_context_info(s, v[i].id, &one));
		assert_string_equal(one.id, v[i].id);
		assert_int_equal(one.version, v[i].version);
		assert_int_equal(one.keys, v[i].keys);
		assert_int_equal(one.bytes, v[i].bytes);
		assert_int_equal(one.created_us, v[i].created_us);
		assert_int_equal(one.last_access_us, v[i].last_access_us);
		assert_int_equal(one.ttl_ms, v[i].ttl_ms);
		assert_int_equal(one.points, v[i].points);
	}
	free(v);
	ctx_context_status a;
	assert_ok(ctx_context_info(s, "a", &a));
	assert_int_equal(a.version, 3);
	assert_int_equal(a.keys, 2);
	assert_int_equal(a.bytes, 2 + 5 + 2 + 1);
	assert_int_equal(a.ttl_ms, 0);

	ctx_context_status b;
	assert_int_equal(ctx_context_info(s, "nope", &b), CTX_NOT_FOUND);
	assert_int_equal(ctx_context_info(s, "", &b), CTX_INVALID);
	assert_int_equal(ctx_context_info(s, NULL, &b), CTX_INVALID);
	assert_int_equal(ctx_context_info(s, "b", NULL), CTX_INVALID);
	assert_int_equal(ctx_context_info(NULL, "b", &b), CTX_INVALID);

	/* No access: looked at just before its ttl ends, b still expires. */
	atomic_store(&fc->now, T0 + (TTL - 10) * MS);
	assert_ok(ctx_context_info(s, "b", &b));
	assert_int_equal(b.ttl_ms, TTL);
	assert_int_equal(b.last_access_us, T0);
	atomic_store(&fc->now, T0 + (TTL + 10) * MS);
	assert_int_equal(ctx_context_info(s, "b", &b), CTX_NOT_FOUND);
	assert_int_equal(ctx_expire_now(s), 1);
	assert_int_equal(ctx_context_info(s, "b", &b), CTX_NOT_FOUND);
	assert_ok(ctx_drop(s, "a"));
	assert_int_equal(ctx_context_info(s, "a", &a), CTX_NOT_FOUND);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_expired_is_gone_memory),
	    cmocka_unit_test(test_expired_is_gone_durable),
	    cmocka_unit_test(test_reads_postpone_expiry),
	    cmocka_unit_test(test_context_info),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
