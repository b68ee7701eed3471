/*
 * test_review_pending.c - review probe (round 7): what each call answers
 * while a nowait change is decided but not durable, with the window held
 * open deterministically.
 *
 * The test defines fdatasync itself (tests/held_sync.h: libctx's vfs_sync
 * calls it; the executable's definition wins at link time): while `hold` is
 * set, a sync waits until the test lets it go. So a nowait commit, create or drop stays
 * decided-but-not-durable for exactly as long as the test looks at it, and
 * no check depends on timing.
 *
 * Checked against ctx.h:
 *   - a pending nowait commit: ctx_get shows the version before it,
 *     ctx_get_latest shows it; ctx_get_at, ctx_history, ctx_status_view and
 *     ctx_context_info show only durable versions; no watch event; a
 *     guarded commit built on the shown version does not answer before the
 *     newer one is shown, then answers CTX_CONFLICT; after the sync all
 *     agree;
 *   - a pending nowait create: ctx_get and ctx_context_info NOT_FOUND,
 *     ctx_get_latest version 1, a put on it succeeds once durable;
 *   - a pending nowait drop: ctx_get keeps showing the last version,
 *     ctx_get_latest, writes, points, ttl and a second drop say
 *     CTX_NOT_FOUND; a create of the same id waits for the drop and then
 *     succeeds (never CTX_EXISTS); the watch sees DROPPED then CREATED;
 *     ctx_list_ids, ctx_status_view and ctx_context_info leave it out at once;
 *   - a create of the id of a nowait drop whose sync failed answers
 *     CTX_CLOSED, not CTX_EXISTS (round 8's review);
 *   - failed calls leave their outputs untouched (ctx_watch_next and
 *     ctx_watch_wait set theirs to NULL before round 7's fix:
 *     tests/probes/probe_outputs_untouched.c).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "held_sync.h" /* fdatasync, held while `hold` is set */

static ctx_store *open_dir(char **dir, const char *name)
{
	*dir = test_make_dir(name);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = *dir;
	o.log_prealloc_bytes = 1; /* no zeroer syncs in the picture */
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	return s;
}

static void wait_durable(ctx_store *s, uint64_t rev)
{
	uint64_t d = 0;
	while (ctx_durable_revision(s, &d) == CTX_OK && d < rev) {
		struct timespec ts = {0, 100 * 1000};
		nanosleep(&ts, NULL);
	}
	assert_true(d >= rev);
}

static uint64_t shown_version(ctx_store *s, const char *id)
{
	ctx_state *st;
	if (ctx_get(s, id, &st) != CTX_OK)
		return 0;
	uint64_t v = ctx_state_version(st);
	ctx_state_release(st);
	return v;
}

typedef struct guarded_arg {
	ctx_store *s;
	uint64_t expected;
	ctx_status result;
	atomic_bool done;
} guarded_arg;

static void *guarded_commit(void *p)
{
	guarded_arg *a = p;
	ctx_txn *t;
	a->result = ctx_txn_begin(a->s, "c", &t);
	if (a->result == CTX_OK) {
		ctx_txn_put(t, "g", 1, "g", 1);
		a->result = ctx_txn_commit(t, a->expected, NULL);
	}
	atomic_store(&a->done, true);
	return NULL;
}

static void test_pending_commit(void **state)
{
	(void)state;
	char *dir;
	ctx_store *s = open_dir(&dir, "review_pending_commit");
	assert_ok(ctx_create(s, "c"));
	assert_ok(ctx_put(s, "c", "k", 1, "1", 1, NULL)); /* v2, durable */
	ctx_watch *w;
	assert_ok(ctx_watch_open(s, "c", false, 0, &w));
	atomic_store(&hold, true);
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "2", 1));
	uint64_t v = 0, rev = 0;
	assert_ok(ctx_txn_commit_nowait(t, 0, &v, &rev));
	assert_int_equal(v, 3);
	/* decided, not durable */
	assert_int_equal(shown_version(s, "c"), 2);
	ctx_state *st = (ctx_state *)0x1;
	assert_ok(ctx_get_latest(s, "c", &st));
	assert_int_equal(ctx_state_version(st), 3);
	assert_int_equal(ctx_state_revision(st), rev);
	ctx_state_release(st);
	st = (ctx_state *)0x1;
	assert_int_equal(ctx_get_at(s, "c", 3, &st), CTX_NOT_FOUND);
	assert_ptr_equal(st, (ctx_state *)0x1); /* untouched */
	ctx_history_entry *h;
	size_t n;
	assert_ok(ctx_history(s, "c", &h, &n));
	assert_int_equal(h[n - 1].version, 2);
	free(h);
	ctx_context_status info;
	assert_ok(ctx_context_info(s, "c", &info));
	assert_int_equal(info.version, 2);
	ctx_context_status *view;
	assert_ok(ctx_status_view(s, &view, &n));
	assert_int_equal(n, 1);
	assert_int_equal(view[0].version, 2);
	free(view);
	ctx_event *e;
	assert_int_equal(ctx_watch_next(w, &e), CTX_NOT_FOUND);
	/* a guarded commit on the shown version: no answer while hidden */
	guarded_arg ga = {s, 2, CTX_OK, false};
	pthread_t th;
	pthread_create(&th, NULL, guarded_commit, &ga);
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL); /* give it the chance to answer too early */
	bool early = atomic_load(&ga.done);
	atomic_store(&hold, false);
	pthread_join(th, NULL);
	assert_false(early); /* it answered only after version 3 was shown */
	assert_int_equal(ga.result, CTX_CONFLICT);
	wait_durable(s, rev);
	assert_int_equal(shown_version(s, "c"), 3);
	assert_ok(ctx_get_at(s, "c", 3, &st));
	ctx_state_release(st);
	assert_ok(ctx_watch_wait(w, -1, &e));
	assert_int_equal(e->kind, CTX_EVENT_COMMITTED);
	assert_int_equal(e->version, 3);
	assert_int_equal(e->revision, rev);
	ctx_event_free(e);
	ctx_watch_close(w);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

typedef struct create_arg {
	ctx_store *s;
	ctx_status result;
	atomic_bool done;
} create_arg;

static void *create_again(void *p)
{
	create_arg *a = p;
	a->result = ctx_create(a->s, "c");
	atomic_store(&a->done, true);
	return NULL;
}

static void *put_on(void *p)
{
	create_arg *a = p;
	a->result = ctx_put(a->s, "c", "p", 1, "p", 1, NULL);
	atomic_store(&a->done, true);
	return NULL;
}

static void test_pending_create(void **state)
{
	(void)state;
	char *dir;
	ctx_store *s = open_dir(&dir, "review_pending_create");
	atomic_store(&hold, true);
	ctx_txn *t;
	assert_ok(ctx_txn_begin_create(s, "c", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "v", 1));
	uint64_t v = 0, rev = 0;
	assert_ok(ctx_txn_commit_nowait(t, 0, &v, &rev));
	assert_int_equal(v, 1);
	ctx_state *st = (ctx_state *)0x1;
	assert_int_equal(ctx_get(s, "c", &st), CTX_NOT_FOUND);
	assert_ptr_equal(st, (ctx_state *)0x1);
	ctx_context_status info;
	memset(&info, 0x5a, sizeof info);
	assert_int_equal(ctx_context_info(s, "c", &info), CTX_NOT_FOUND);
	assert_int_equal((unsigned char)info.id[0], 0x5a); /* untouched */
	assert_ok(ctx_get_latest(s, "c", &st));
	assert_int_equal(ctx_state_version(st), 1);
	ctx_state_release(st);
	/* a put on it is decided on top of it and waits for its own sync */
	create_arg pa = {s, CTX_OK, false};
	pthread_t th;
	pthread_create(&th, NULL, put_on, &pa);
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
	bool early = atomic_load(&pa.done);
	atomic_store(&hold, false);
	pthread_join(th, NULL);
	assert_false(early); /* durability always: not before its sync */
	assert_ok(pa.result);
	assert_int_equal(shown_version(s, "c"), 2);
	assert_ok(ctx_context_info(s, "c", &info));
	assert_int_equal(info.version, 2);
	assert_int_equal(info.keys, 2);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_pending_drop(void **state)
{
	(void)state;
	char *dir;
	ctx_store *s = open_dir(&dir, "review_pending_drop");
	assert_ok(ctx_create(s, "c"));
	assert_ok(ctx_put(s, "c", "k", 1, "v", 1, NULL));
	assert_ok(ctx_point_create(s, "c", "p", NULL));
	ctx_watch *w;
	assert_ok(ctx_watch_open(s, "c", false, 0, &w));
	atomic_store(&hold, true);
	uint64_t rev = 0;
	assert_ok(ctx_drop_nowait(s, "c", &rev));
	/* readers of durable versions still see it */
	assert_int_equal(shown_version(s, "c"), 2);
	/* gone for ctx_get_latest and every write, at once */
	ctx_state *st = (ctx_state *)0x1;
	assert_int_equal(ctx_get_latest(s, "c", &st), CTX_NOT_FOUND);
	assert_ptr_equal(st, (ctx_state *)0x1);
	uint64_t vout = 77;
	assert_int_equal(ctx_put(s, "c", "k", 1, "w", 1, &vout), CTX_NOT_FOUND);
	assert_int_equal(vout, 77);
	assert_int_equal(ctx_del(s, "c", "k", 1, &vout), CTX_NOT_FOUND);
	assert_int_equal(vout, 77);
	ctx_txn *t;
	assert_int_equal(ctx_txn_begin(s, "c", &t), CTX_NOT_FOUND);
	assert_int_equal(ctx_point_create(s, "c", NULL, &vout), CTX_NOT_FOUND);
	assert_int_equal(vout, 77);
	assert_int_equal(ctx_set_ttl(s, "c", 1000), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_latest(s, "c", &vout), CTX_NOT_FOUND);
	assert_int_equal(vout, 77);
	uint64_t r2 = 55;
	assert_int_equal(ctx_drop_nowait(s, "c", &r2), CTX_NOT_FOUND);
	assert_int_equal(r2, 55);
	ctx_event *e = (ctx_event *)0x1;
	assert_int_equal(ctx_watch_next(w, &e), CTX_NOT_FOUND);
	assert_ptr_equal(e, (ctx_event *)0x1); /* untouched on failure */
	assert_int_equal(ctx_watch_wait(w, 0, &e), CTX_NOT_FOUND);
	assert_ptr_equal(e, (ctx_event *)0x1);
	/* gone for listing at once: ctx_list_ids, the status view and
	 * ctx_context_info (tests/probes/probe_info_after_drop_nowait.c) */
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	for (size_t i = 0; i < l.count; i++)
		assert_string_not_equal(l.ids[i], "c");
	ctx_list_free(&l);
	ctx_context_status info;
	assert_int_equal(ctx_context_info(s, "c", &info), CTX_NOT_FOUND);
	ctx_context_status *view;
	size_t nview;
	assert_ok(ctx_status_view(s, &view, &nview));
	for (size_t i = 0; i < nview; i++)
		assert_string_not_equal(view[i].id, "c");
	free(view);
	/* a create waits for the drop, then succeeds */
	create_arg ca = {s, CTX_OK, false};
	pthread_t th;
	pthread_create(&th, NULL, create_again, &ca);
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
	bool early = atomic_load(&ca.done);
	atomic_store(&hold, false);
	pthread_join(th, NULL);
	assert_false(early);
	assert_ok(ca.result); /* never CTX_EXISTS because of a decided drop */
	assert_int_equal(shown_version(s, "c"), 1);
	ctx_point *p;
	size_t np;
	assert_ok(ctx_point_list(s, "c", &p, &np));
	assert_int_equal(np, 0); /* another context: no points */
	free(p);
	assert_ok(ctx_watch_wait(w, -1, &e));
	assert_int_equal(e->kind, CTX_EVENT_DROPPED);
	assert_int_equal(e->revision, rev);
	ctx_event_free(e);
	assert_ok(ctx_watch_wait(w, -1, &e));
	assert_int_equal(e->kind, CTX_EVENT_CREATED);
	assert_true(e->revision > rev);
	ctx_event_free(e);
	ctx_watch_close(w);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A nowait drop whose sync fails never becomes durable, so the context
 * never leaves the table: a create of its id after that answers
 * CTX_CLOSED (the log refuses writes), not CTX_EXISTS (no retry can
 * succeed, and the context is gone for every writer). */
static void test_create_after_failed_drop(void **state)
{
	(void)state;
	char *dir;
	ctx_store *s = open_dir(&dir, "review_pending_failed_drop");
	assert_ok(ctx_create(s, "c"));
	assert_ok(ctx_put(s, "c", "k", 1, "v", 1, NULL));
	atomic_store(&hold, true);
	uint64_t rev = 0;
	assert_ok(ctx_drop_nowait(s, "c", &rev));
	atomic_store(&fail_eio, 1);
	atomic_store(&hold, false);
	assert_int_equal(ctx_create(s, "c"), CTX_CLOSED);
	assert_int_equal(ctx_create(s, "d"), CTX_CLOSED); /* as for any id */
	atomic_store(&fail_eio, 0);
	ctx_close(s);
	/* Reopened: the drop's outcome is unknown (its record was written,
	 * its sync failed), but the store opens with "c" either version 2 or
	 * dropped, and takes writes again. */
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	assert_ok(ctx_open(&o, &s));
	uint64_t v = shown_version(s, "c");
	assert_true(v == 2 || v == 0);
	assert_ok(ctx_create(s, "d"));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* A failed test leaves the syncs held or failing: let them go for the next. */
static int let_go(void **state)
{
	(void)state;
	atomic_store(&hold, false);
	atomic_store(&fail_eio, 0);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_pending_commit, let_go),
	    cmocka_unit_test_teardown(test_pending_create, let_go),
	    cmocka_unit_test_teardown(test_pending_drop, let_go),
	    cmocka_unit_test_teardown(test_create_after_failed_drop, let_go),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
