/*
 * test_review_reads.c - review probe (round 7): reads never see a version
 * that is not in the history, and the four ways of reading agree, while
 * writers commit with and without waiting, make points, restore them, and
 * drop and create the same ids again.
 *
 * Writers (durability always, on a data directory, so that nowait commits
 * really are pending for a while) pick at random: a nowait commit, a
 * waiting put, a point, a restore of the newest point or of an older
 * version, a nowait drop followed by a create of the same id. Every commit
 * writes key "w" = its writer's sequence number and key "v" = the version
 * it expects (0 for restores, which copy an older "v").
 * Readers check, for each state S of context id (incarnation = its
 * creation time):
 *   - ctx_get_at(version(S)) of the same incarnation is S's version with
 *     S's revision;
 *   - ctx_get_latest after it, same incarnation: a version >= S's and a
 *     revision >= S's;
 *   - ctx_history after it, same incarnation: versions ascending, the
 *     chained ones contiguous, revisions growing with versions, the
 *     newest >= S's; and S's predecessor, if the newest is within
 *     history_depth of it, is listed and readable with ctx_get_at;
 *   - ctx_get never goes back: within one incarnation a reader never sees
 *     a version lower than one it saw before;
 *   - S itself never changes while held (its "w" and revision read again
 *     at the end of the checks);
 *   - ctx_context_info, when it finds the same incarnation, gives a
 *     version >= S's (it reads what ctx_get reads).
 * No timing is asserted; the run is bounded by iteration counts.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define NIDS     3
#define DEPTH    8
#define NWRITERS 2
#define NREADERS 2

static ctx_store *g_store;
static atomic_bool g_stop;
static atomic_long g_checks, g_pred_checks, g_restores, g_recreates;

static const char *ids[NIDS] = {"r0", "r1", "r2"};

static uint64_t get_u64(const ctx_state *st, const char *k)
{
	const void *v;
	size_t n;
	uint64_t x = 0;
	if (ctx_state_lookup(st, k, 1, &v, &n) && n == sizeof x)
		memcpy(&x, v, sizeof x);
	return x;
}

static void writer_commit(const char *id, uint64_t seq, bool wait)
{
	ctx_state *head;
	if (ctx_get_latest(g_store, id, &head) != CTX_OK)
		return; /* dropped meanwhile */
	uint64_t expect = ctx_state_version(head) + 1;
	ctx_state_release(head);
	ctx_txn *t;
	if (ctx_txn_begin(g_store, id, &t) != CTX_OK)
		return;
	T_CHECK_STATUS(ctx_txn_put(t, "w", 1, &seq, sizeof seq), CTX_OK);
	T_CHECK_STATUS(ctx_txn_put(t, "v", 1, &expect, sizeof expect), CTX_OK);
	uint64_t v = 0, rev = 0;
	ctx_status st = wait ? ctx_txn_commit(t, expect - 1, &v)
	                     : ctx_txn_commit_nowait(t, expect - 1, &v, &rev);
	if (st == CTX_OK)
		T_CHECK(v == expect);
	else
		T_CHECK(st == CTX_CONFLICT || st == CTX_NOT_FOUND);
}

static void *writer(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 7919 + 11;
	uint64_t seq = 0;
	while (!atomic_load(&g_stop)) {
		const char *id = ids[test_rand_below(&rng, NIDS)];
		unsigned r = (unsigned)test_rand_below(&rng, 100);
		seq++;
		if (r < 55) {
			writer_commit(id, seq, false);
		} else if (r < 75) {
			writer_commit(id, seq, true);
		} else if (r < 85) {
			ctx_status st = ctx_point_create(g_store, id, NULL, NULL);
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
		} else if (r < 95) {
			uint64_t nv;
			ctx_status st;
			if (r & 1) {
				st = ctx_restore_latest(g_store, id, &nv);
			} else {
				ctx_state *h;
				st = ctx_get(g_store, id, &h);
				if (st == CTX_OK) {
					uint64_t back =
					    ctx_state_version(h) > 3 ? ctx_state_version(h) - 3 : 1;
					ctx_state_release(h);
					st = ctx_restore(g_store, id, back, &nv);
				}
			}
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
			if (st == CTX_OK)
				atomic_fetch_add(&g_restores, 1);
		} else {
			uint64_t rev;
			ctx_status st = ctx_drop_nowait(g_store, id, &rev);
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
			st = ctx_create(g_store, id); /* waits for the drop */
			T_CHECK(st == CTX_OK || st == CTX_EXISTS);
			if (st == CTX_OK)
				atomic_fetch_add(&g_recreates, 1);
		}
	}
	return NULL;
}

typedef struct seen_ver {
	uint64_t created, version;
} seen_ver;

static void check_history(const char *id, ctx_state *s)
{
	uint64_t created = ctx_state_created_us(s), ver = ctx_state_version(s);
	ctx_history_entry *h;
	size_t n;
	if (ctx_history(g_store, id, &h, &n) != CTX_OK)
		return;
	/* Same incarnation? Its newest listed version's state tells. */
	ctx_state *newest = NULL;
	if (n == 0 || ctx_get_at(g_store, id, h[n - 1].version, &newest) != CTX_OK ||
	    ctx_state_created_us(newest) != created) {
		ctx_state_release(newest);
		free(h);
		return;
	}
	ctx_state_release(newest);
	T_CHECK(h[n - 1].version >= ver);
	for (size_t i = 1; i < n; i++) {
		T_CHECK(h[i].version > h[i - 1].version);
		T_CHECK(h[i].revision > h[i - 1].revision);
	}
	/* the chained (unpinned) part ends contiguous at the newest */
	size_t i = n - 1;
	while (i > 0 && h[i - 1].version == h[i].version - 1)
		i--;
	for (size_t j = 0; j < i; j++)
		T_CHECK(h[j].pinned); /* a gap only below pinned versions */
	/* The chain is cut DEPTH versions below the decided head, which may be
	 * ahead of what ctx_history lists; the head read after the listing
	 * is at least the one it was cut against. */
	ctx_state *l;
	uint64_t head = UINT64_MAX;
	if (ctx_get_latest(g_store, id, &l) == CTX_OK) {
		if (ctx_state_created_us(l) == created)
			head = ctx_state_version(l);
		ctx_state_release(l);
	}
	if (ver > 1 && head != UINT64_MAX && head - (ver - 1) < DEPTH) {
		bool listed = false;
		for (size_t j = 0; j < n; j++)
			listed |= h[j].version == ver - 1;
		T_CHECK(listed);
		ctx_state *p;
		ctx_status st = ctx_get_at(g_store, id, ver - 1, &p);
		if (st == CTX_OK) {
			T_CHECK(ctx_state_version(p) == ver - 1);
			T_CHECK(ctx_state_revision(p) < ctx_state_revision(s) ||
			        ctx_state_created_us(p) != created);
			ctx_state_release(p);
		} else {
			/* dropped since, or cut by commits after the history read */
			T_CHECK(st == CTX_NOT_FOUND);
		}
		atomic_fetch_add(&g_pred_checks, 1);
	}
	free(h);
}

static void check_one(const char *id, seen_ver *last)
{
	ctx_state *s;
	if (ctx_get(g_store, id, &s) != CTX_OK)
		return;
	uint64_t created = ctx_state_created_us(s), ver = ctx_state_version(s);
	uint64_t rev = ctx_state_revision(s), w = get_u64(s, "w");
	if (last->created == created)
		T_CHECK(ver >= last->version); /* never back */
	*last = (seen_ver){created, ver};
	ctx_state *a;
	if (ctx_get_at(g_store, id, ver, &a) == CTX_OK) {
		if (ctx_state_created_us(a) == created) {
			T_CHECK(ctx_state_version(a) == ver);
			T_CHECK(ctx_state_revision(a) == rev);
		}
		ctx_state_release(a);
	}
	ctx_state *l;
	if (ctx_get_latest(g_store, id, &l) == CTX_OK) {
		if (ctx_state_created_us(l) == created) {
			T_CHECK(ctx_state_version(l) >= ver);
			T_CHECK(ctx_state_revision(l) >= rev);
		}
		ctx_state_release(l);
	}
	ctx_context_status info;
	if (ctx_context_info(g_store, id, &info) == CTX_OK && info.created_us == created)
		T_CHECK(info.version >= ver);
	check_history(id, s);
	/* immutable while held */
	T_CHECK(get_u64(s, "w") == w);
	T_CHECK(ctx_state_revision(s) == rev);
	T_CHECK(ctx_state_version(s) == ver);
	ctx_state_release(s);
	atomic_fetch_add(&g_checks, 1);
}

static void *reader(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 104729 + 3;
	seen_ver last[NIDS] = {{0}};
	while (!atomic_load(&g_stop)) {
		size_t i = test_rand_below(&rng, NIDS);
		check_one(ids[i], &last[i]);
	}
	return NULL;
}

static void test_reads_agree(void **state)
{
	(void)state;
	reset_failures();
	char *dir = test_make_dir("review_reads");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = DEPTH;
	o.max_points = 3;
	assert_ok(ctx_open(&o, &g_store));
	for (int i = 0; i < NIDS; i++)
		assert_ok(ctx_create(g_store, ids[i]));
	atomic_store(&g_stop, false);
	pthread_t w[NWRITERS], r[NREADERS];
	for (uintptr_t i = 0; i < NWRITERS; i++)
		pthread_create(&w[i], NULL, writer, (void *)(i + 1));
	for (uintptr_t i = 0; i < NREADERS; i++)
		pthread_create(&r[i], NULL, reader, (void *)(i + 1));
	long want = test_iters(60000, 5000);
	long want_w = test_iters(150, 30); /* restores and re-creates each */
	while ((atomic_load(&g_checks) < want || atomic_load(&g_restores) < want_w ||
	        atomic_load(&g_recreates) < want_w) &&
	       thread_failures() == 0) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	atomic_store(&g_stop, true);
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(w[i], NULL);
	for (int i = 0; i < NREADERS; i++)
		pthread_join(r[i], NULL);
	print_message("%ld reads checked, %ld predecessor checks, %ld restores, %ld re-creates\n",
	              atomic_load(&g_checks), atomic_load(&g_pred_checks), atomic_load(&g_restores),
	              atomic_load(&g_recreates));
	assert_no_thread_failures();
	/* and the directory recovers to what the store showed last */
	test_reopen_same(&g_store, &o, true, "reopened after the run");
	ctx_close(g_store);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reads_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
