/*
 * test_review_restore.c - review probe (round 7): restores of recovery
 * points and of older versions while writers commit (waiting and nowait)
 * and a watcher follows the context.
 *
 * Checked after the run, with every version still in history:
 *   - the watcher got every version of the context exactly once, in
 *     revision order, versions 2..N contiguous;
 *   - each COMMITTED or RESTORED event of version v names exactly the keys
 *     that differ between versions v-1 and v (ctx_diff_states);
 *   - each restore's new version has the content of the version it
 *     restored (point, label, exact version), and its event is RESTORED;
 *   - the points listed at the end pin versions whose content matches
 *     their checksum (a restore of each succeeds: no CTX_CORRUPT);
 *   - the directory reopens to the same states.
 * Every put writes a value never written before, so that a key's presence
 * in an event and in the diff mean the same thing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define NKEYS 12
#define MAXV  3000

static ctx_store *g_store;
static atomic_bool g_stop;
static atomic_uint_fast64_t g_uniq;

typedef struct restore_rec {
	uint64_t new_version, target; /* target 0: unknown (latest point) */
} restore_rec;

static restore_rec g_restores[MAXV];
static atomic_size_t g_nrestores;
static atomic_uint_fast64_t g_versions; /* newest version handed out */

static void note_version(uint64_t v)
{
	uint64_t cur = atomic_load(&g_versions);
	while (cur < v && !atomic_compare_exchange_weak(&g_versions, &cur, v))
		;
}

static void *writer(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 6151 + 5;
	bool nowait = (uintptr_t)arg & 1;
	while (!atomic_load(&g_stop) && atomic_load(&g_versions) < MAXV - 200) {
		char k[8], val[32];
		int kl = snprintf(k, sizeof k, "k%u", (unsigned)test_rand_below(&rng, NKEYS));
		int vl = snprintf(val, sizeof val, "u%llu",
		                  (unsigned long long)atomic_fetch_add(&g_uniq, 1));
		uint64_t v = 0, rev;
		if (test_rand_below(&rng, 5) == 0) {
			ctx_status st = ctx_del(g_store, "x", k, (size_t)kl, &v);
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
		} else if (nowait) {
			ctx_txn *t;
			T_CHECK_STATUS(ctx_txn_begin(g_store, "x", &t), CTX_OK);
			T_CHECK_STATUS(ctx_txn_put(t, k, (size_t)kl, val, (size_t)vl), CTX_OK);
			T_CHECK_STATUS(ctx_txn_commit_nowait(t, 0, &v, &rev), CTX_OK);
		} else {
			T_CHECK_STATUS(ctx_put(g_store, "x", k, (size_t)kl, val, (size_t)vl, &v),
			               CTX_OK);
		}
		note_version(v);
	}
	return NULL;
}

static void *restorer(void *arg)
{
	(void)arg;
	uint64_t rng = 99;
	unsigned label_n = 0;
	while (!atomic_load(&g_stop) && atomic_load(&g_versions) < MAXV - 200) {
		unsigned r = (unsigned)test_rand_below(&rng, 4);
		uint64_t nv = 0, target = 0, pv;
		ctx_status st;
		if (r == 0) {
			char label[16];
			snprintf(label, sizeof label, "L%u", label_n++ % 4);
			st = ctx_point_create(g_store, "x", label, &pv);
			T_CHECK_STATUS(st, CTX_OK);
			continue;
		} else if (r == 1) {
			st = ctx_restore_latest(g_store, "x", &nv);
		} else if (r == 2) {
			char label[16];
			snprintf(label, sizeof label, "L%u", (unsigned)test_rand_below(&rng, 4));
			st = ctx_restore_label(g_store, "x", label, &nv);
		} else {
			ctx_state *h;
			T_CHECK_STATUS(ctx_get(g_store, "x", &h), CTX_OK);
			target = ctx_state_version(h) > 5 ? ctx_state_version(h) - 5 : 1;
			ctx_state_release(h);
			st = ctx_restore(g_store, "x", target, &nv);
		}
		T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND); /* no label yet */
		if (st == CTX_OK) {
			size_t i = atomic_fetch_add(&g_nrestores, 1);
			if (i < MAXV)
				g_restores[i] = (restore_rec){nv, target};
			note_version(nv);
		}
	}
	return NULL;
}

typedef struct ev_rec {
	ctx_event_kind kind;
	uint64_t revision, version;
	size_t nkeys;
	char keys[NKEYS][8];
} ev_rec;

static ev_rec *g_events;
static size_t g_nevents;

static void *watcher(void *arg)
{
	ctx_watch *w = arg;
	ctx_event *e;
	for (;;) {
		ctx_status st = ctx_watch_wait(w, 50, &e);
		if (st == CTX_NOT_FOUND) {
			if (atomic_load(&g_stop))
				break;
			continue;
		}
		T_CHECK_STATUS(st, CTX_OK);
		if (st != CTX_OK)
			break;
		T_CHECK(e->kind != CTX_EVENT_LAGGED);
		T_CHECK(g_nevents < MAXV);
		if (g_nevents < MAXV) {
			ev_rec *r = &g_events[g_nevents++];
			r->kind = e->kind;
			r->revision = e->revision;
			r->version = e->version;
			r->nkeys = e->nkeys;
			T_CHECK(e->nkeys <= NKEYS);
			for (size_t i = 0; i < e->nkeys && i < NKEYS; i++) {
				T_CHECK(e->klens[i] < 8);
				memcpy(r->keys[i], e->keys[i], e->klens[i]);
				r->keys[i][e->klens[i]] = 0;
			}
		}
		ctx_event_free(e);
	}
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The keys that differ from version v-1 to v, sorted, into out. */
static size_t diff_keys(uint64_t v, char out[NKEYS][8])
{
	ctx_state *a, *b;
	assert_ok(ctx_get_at(g_store, "x", v - 1, &a));
	assert_ok(ctx_get_at(g_store, "x", v, &b));
	ctx_diff *d;
	assert_ok(ctx_diff_states(a, b, &d));
	size_t n = ctx_diff_count(d);
	assert_true(n <= NKEYS);
	for (size_t i = 0; i < n; i++) {
		const ctx_change *c = ctx_diff_get(d, i);
		assert_true(c->klen < 8);
		memcpy(out[i], c->key, c->klen);
		out[i][c->klen] = 0;
	}
	ctx_diff_free(d);
	ctx_state_release(a);
	ctx_state_release(b);
	qsort(out, n, 8, cmp_str);
	return n;
}

static bool same_content(uint64_t v1, uint64_t v2)
{
	ctx_state *a, *b;
	assert_ok(ctx_get_at(g_store, "x", v1, &a));
	assert_ok(ctx_get_at(g_store, "x", v2, &b));
	ctx_diff *d;
	assert_ok(ctx_diff_states(a, b, &d));
	bool same = ctx_diff_count(d) == 0 && ctx_state_count(a) == ctx_state_count(b);
	ctx_diff_free(d);
	ctx_state_release(a);
	ctx_state_release(b);
	return same;
}

static void test_restore_under_writers_and_watcher(void **state)
{
	(void)state;
	reset_failures();
	char *dir = test_make_dir("review_restore");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = MAXV + 10; /* every version stays readable */
	o.max_points = 4;
	assert_ok(ctx_open(&o, &g_store));
	assert_ok(ctx_create(g_store, "x"));
	atomic_store(&g_versions, 1);
	g_events = calloc(MAXV, sizeof(*g_events));
	assert_non_null(g_events);
	ctx_watch *w;
	assert_ok(ctx_watch_open(g_store, "x", false, 0, &w));
	atomic_store(&g_stop, false);
	pthread_t wt[2], rt, ww;
	pthread_create(&ww, NULL, watcher, w);
	for (uintptr_t i = 0; i < 2; i++)
		pthread_create(&wt[i], NULL, writer, (void *)i);
	pthread_create(&rt, NULL, restorer, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(wt[i], NULL);
	pthread_join(rt, NULL);
	/* everything decided is durable once a waiting commit is */
	uint64_t last;
	assert_ok(ctx_put(g_store, "x", "end", 3, "e", 1, &last));
	ctx_event *e;
	(void)e;
	atomic_store(&g_stop, true);
	pthread_join(ww, NULL);
	assert_no_thread_failures();
	/* the watcher may have stopped before the last events: read them */
	while (ctx_watch_next(w, &e) == CTX_OK) {
		assert_true(g_nevents < MAXV);
		ev_rec *r = &g_events[g_nevents++];
		r->kind = e->kind;
		r->revision = e->revision;
		r->version = e->version;
		r->nkeys = e->nkeys;
		for (size_t i = 0; i < e->nkeys; i++) {
			memcpy(r->keys[i], e->keys[i], e->klens[i]);
			r->keys[i][e->klens[i]] = 0;
		}
		ctx_event_free(e);
	}
	ctx_watch_close(w);
	/* every version 2..last exactly once, in revision order */
	assert_int_equal(g_nevents, last - 1);
	for (size_t i = 0; i < g_nevents; i++) {
		ev_rec *r = &g_events[i];
		assert_int_equal(r->version, i + 2);
		if (i)
			assert_true(r->revision > g_events[i - 1].revision);
		ctx_state *st;
		assert_ok(ctx_get_at(g_store, "x", r->version, &st));
		assert_int_equal(ctx_state_revision(st), r->revision);
		ctx_state_release(st);
		char want[NKEYS][8];
		size_t n = diff_keys(r->version, want);
		qsort(r->keys, r->nkeys, 8, cmp_str);
		if (n != r->nkeys)
			fail_msg("version %llu (%s): event names %zu keys, the diff %zu",
			         (unsigned long long)r->version,
			         r->kind == CTX_EVENT_RESTORED ? "restored" : "committed", r->nkeys,
			         n);
		for (size_t k = 0; k < n; k++)
			assert_string_equal(r->keys[k], want[k]);
	}
	size_t nr = atomic_load(&g_nrestores);
	assert_true(nr > 0);
	for (size_t i = 0; i < nr && i < MAXV; i++) {
		restore_rec *r = &g_restores[i];
		assert_int_equal(g_events[r->new_version - 2].kind, CTX_EVENT_RESTORED);
		if (r->target)
			assert_true(same_content(r->new_version, r->target));
	}
	size_t restored = 0;
	for (size_t i = 0; i < g_nevents; i++)
		restored += g_events[i].kind == CTX_EVENT_RESTORED;
	assert_int_equal(restored, nr);
	ctx_point *p;
	size_t np;
	assert_ok(ctx_point_list(g_store, "x", &p, &np));
	for (size_t i = 0; i < np; i++) {
		uint64_t nv;
		assert_ok(ctx_restore(g_store, "x", p[i].version, &nv));
		assert_true(same_content(nv, p[i].version));
	}
	free(p);
	print_message("%zu events, %zu restores, %zu points at the end\n", g_nevents, nr, np);
	test_reopen_same(&g_store, &o, true, "reopened after the run");
	ctx_close(g_store);
	free(g_events);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_restore_under_writers_and_watcher),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
