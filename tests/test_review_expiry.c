/*
 * test_review_expiry.c - review probe (round 7): the nowait calls and
 * ctx_context_info against idle time-to-live, on a fake clock.
 *
 * ctx.h (ctx_set_ttl): an expired context is gone for every call at once,
 * whether or not the reaper has dropped it; nothing brings it back; the
 * reaper drops it durably and watchers see CTX_EVENT_EXPIRED; commits count
 * as use. ctx_get_latest and ctx_drop_nowait say CTX_NOT_FOUND once it
 * expired; ctx_context_info is no access (it never keeps a context alive).
 * Checked here for the calls test_expiry_semantics.c does not cover: the
 * nowait ones (ctx_get_latest, ctx_txn_commit_nowait of a transaction begun
 * before, ctx_drop_nowait) and ctx_context_info, on a data directory
 * (durability always), and across a reopen.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static atomic_uint_fast64_t now_us;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return atomic_load(&now_us);
}

static ctx_options opts(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.clock_us = fake_clock;
	o.reaper_ms = 1000000; /* the test runs the reaper itself */
	return o;
}

static void wait_durable(ctx_store *s, uint64_t rev)
{
	uint64_t d = 0;
	while (ctx_durable_revision(s, &d) == CTX_OK && d < rev)
		;
	assert_true(d >= rev);
}

static void test_nowait_calls_after_expiry(void **state)
{
	(void)state;
	atomic_store(&now_us, 1000000000);
	char *dir = test_make_dir("review_expiry");
	ctx_options o = opts(dir);
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "e"));
	assert_ok(ctx_put(s, "e", "k", 1, "v", 1, NULL));
	assert_ok(ctx_set_ttl(s, "e", 1000)); /* 1 s */
	ctx_watch *w;
	assert_ok(ctx_watch_open(s, "e", false, 0, &w));

	/* ctx_context_info is no access: asked all along, it keeps nothing
	 * alive */
	ctx_context_status info;
	for (int i = 0; i < 9; i++) {
		atomic_fetch_add(&now_us, 100000);
		assert_ok(ctx_context_info(s, "e", &info));
		assert_int_equal(info.ttl_ms, 1000);
	}
	/* a nowait commit is use: durable, it moves the last access */
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "e", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "w", 1));
	uint64_t v, rev;
	assert_ok(ctx_txn_commit_nowait(t, 0, &v, &rev));
	wait_durable(s, rev);
	/* a transaction begun before the expiry (at the commit's time: a
	 * begin notes an access too) */
	ctx_txn *late;
	assert_ok(ctx_txn_begin(s, "e", &late));
	assert_ok(ctx_txn_put(late, "k", 1, "x", 1));
	atomic_fetch_add(&now_us, 900000); /* 0.9 s after the commit */
	assert_ok(ctx_context_info(s, "e", &info));
	assert_int_equal(info.version, v);
	atomic_fetch_add(&now_us, 200000); /* 1.1 s idle: expired */

	memset(&info, 0x5a, sizeof info);
	assert_int_equal(ctx_context_info(s, "e", &info), CTX_NOT_FOUND);
	assert_int_equal((unsigned char)info.id[0], 0x5a);
	ctx_state *st = NULL;
	assert_int_equal(ctx_get_latest(s, "e", &st), CTX_NOT_FOUND);
	assert_null(st);
	assert_int_equal(ctx_get(s, "e", &st), CTX_NOT_FOUND);
	uint64_t v2 = 77, r2 = 77;
	assert_int_equal(ctx_txn_commit_nowait(late, 0, &v2, &r2), CTX_NOT_FOUND);
	assert_int_equal(v2, 77);
	assert_int_equal(r2, 77);
	assert_int_equal(ctx_drop_nowait(s, "e", &r2), CTX_NOT_FOUND);
	assert_int_equal(r2, 77);
	/* (ctx_count counts it until the reaper drops it, which the calls
	 * above have woken: it may be done already) */
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	assert_int_equal(l.count, 0);
	ctx_list_free(&l);

	/* the reaper drops it durably: EXPIRED, never DROPPED */
	while (ctx_count(s) != 0) /* the woken reaper, or this call */
		assert_true(ctx_expire_now(s) <= 1);
	ctx_event *e;
	assert_ok(ctx_watch_wait(w, -1, &e));
	assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
	assert_int_equal(e->version, v);
	ctx_event_free(e);
	assert_ok(ctx_watch_wait(w, -1, &e));
	assert_int_equal(e->kind, CTX_EVENT_EXPIRED);
	ctx_event_free(e);
	assert_int_equal(ctx_watch_next(w, &e), CTX_NOT_FOUND);
	ctx_watch_close(w);

	/* nothing brings it back: a create makes a new, empty context */
	assert_ok(ctx_create(s, "e"));
	assert_ok(ctx_get(s, "e", &st));
	assert_int_equal(ctx_state_version(st), 1);
	assert_int_equal(ctx_state_count(st), 0);
	ctx_state_release(st);
	assert_ok(ctx_context_info(s, "e", &info));
	assert_int_equal(info.ttl_ms, 0); /* the new one has none */
	ctx_close(s);

	/* and so after a reopen */
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_get(s, "e", &st));
	assert_int_equal(ctx_state_version(st), 1);
	assert_int_equal(ctx_state_count(st), 0);
	ctx_state_release(st);
	assert_ok(ctx_context_info(s, "e", &info));
	assert_int_equal(info.ttl_ms, 0);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* Expired but not reaped when the store closes: after a reopen it is
 * still gone for every call (its ttl and last access were logged). */
static void test_expired_stays_gone_across_reopen(void **state)
{
	(void)state;
	atomic_store(&now_us, 2000000000);
	char *dir = test_make_dir("review_expiry_reopen");
	ctx_options o = opts(dir);
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "e"));
	assert_ok(ctx_put(s, "e", "k", 1, "v", 1, NULL));
	assert_ok(ctx_set_ttl(s, "e", 1000));
	atomic_fetch_add(&now_us, 5000000);
	ctx_state *st;
	assert_int_equal(ctx_get_latest(s, "e", &st), CTX_NOT_FOUND);
	ctx_close(s);
	assert_ok(ctx_open(&o, &s));
	ctx_context_status info;
	assert_int_equal(ctx_context_info(s, "e", &info), CTX_NOT_FOUND);
	assert_int_equal(ctx_get(s, "e", &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_latest(s, "e", &st), CTX_NOT_FOUND);
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	assert_int_equal(l.count, 0);
	ctx_list_free(&l);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_nowait_calls_after_expiry),
	    cmocka_unit_test(test_expired_stays_gone_across_reopen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
