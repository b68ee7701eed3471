/*
 * test_release_arrays.c - released versions freed from their home's arrays
 * (state.c, "ADDRESSES BESIDE THE LISTS"; docs/benchmarks.md, round 11).
 *
 * A thread frees its batches of released versions from arrays of their
 * addresses kept beside the lists linked through them. If an array and its
 * list ever disagreed, a version would be freed before its grace period
 * (a reader in its trie reads freed memory: torn pairs here, a
 * use-after-free under ASan), twice, or never (a leak under ASan). So:
 * writer threads, started and ended in waves (a thread's exit hands its
 * batches over through the lists), commit two keys with one value per
 * transaction to contexts whose history keeps 2 versions (every commit cuts
 * and releases one), while readers read whole contexts without references
 * (ctx_get_each) and with them (ctx_get, held across yields); every read
 * must see the two keys equal, and at the end every acknowledged commit is
 * there: each context's version is 1 plus its commits, each writer's own
 * counter key holds its number of commits to that context (no lost update).
 */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCTX    4
#define WRITERS 8
#define WAVES   4
#define COMMITS 3000 /* per writer and wave */
#define READERS 3

typedef struct shared {
	ctx_store *s;
	atomic_int stop;
	atomic_long torn, reads, errors;
	atomic_long commits[NCTX];
	long mine[WRITERS][NCTX]; /* each writer's own, summed over waves */
} shared;

typedef struct warg {
	shared *sh;
	int tid;
} warg;

static const char *ids[NCTX] = {"r0", "r1", "r2", "r3"};

static void *writer(void *p)
{
	warg *a = p;
	shared *sh = a->sh;
	uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(a->tid + 1);
	char key[16], val[32];
	snprintf(key, sizeof(key), "w%d", a->tid);
	for (int i = 0; i < COMMITS; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		int k = (int)((rng >> 33) % NCTX);
		long n = sh->mine[a->tid][k] + 1;
		char cnt[24];
		int vl = snprintf(val, sizeof(val), "%d:%d:%d", a->tid, i, k);
		int cl = snprintf(cnt, sizeof(cnt), "%ld", n);
		ctx_txn *t;
		if (ctx_txn_begin(sh->s, ids[k], &t) != CTX_OK) {
			atomic_fetch_add(&sh->errors, 1);
			continue;
		}
		if (ctx_txn_put(t, "a", 1, val, (size_t)vl) != CTX_OK ||
		    ctx_txn_put(t, "b", 1, val, (size_t)vl) != CTX_OK ||
		    ctx_txn_put(t, key, strlen(key), cnt, (size_t)cl) != CTX_OK) {
			ctx_txn_abort(t);
			atomic_fetch_add(&sh->errors, 1);
			continue;
		}
		if (ctx_txn_commit(t, 0, NULL) != CTX_OK) {
			atomic_fetch_add(&sh->errors, 1);
			continue;
		}
		sh->mine[a->tid][k] = n;
		atomic_fetch_add(&sh->commits[k], 1);
	}
	return NULL;
}

typedef struct pair_seen {
	char a[32], b[32];
	size_t alen, blen;
} pair_seen;

static bool see_pair(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	pair_seen *ps = arg;
	if (klen == 1 && vlen < sizeof(ps->a)) {
		if (*(const char *)key == 'a') {
			memcpy(ps->a, val, vlen);
			ps->alen = vlen;
		} else if (*(const char *)key == 'b') {
			memcpy(ps->b, val, vlen);
			ps->blen = vlen;
		}
	}
	return true;
}

static void *reader(void *p)
{
	shared *sh = p;
	unsigned i = 0;
	while (!atomic_load(&sh->stop)) {
		const char *id = ids[i++ % NCTX];
		pair_seen ps = {0};
		if (ctx_get_each(sh->s, id, see_pair, &ps) != CTX_OK)
			atomic_fetch_add(&sh->errors, 1);
		else if (ps.alen != ps.blen || memcmp(ps.a, ps.b, ps.alen) != 0)
			atomic_fetch_add(&sh->torn, 1);
		ctx_state *st;
		if (ctx_get(sh->s, id, &st) != CTX_OK) {
			atomic_fetch_add(&sh->errors, 1);
			continue;
		}
		const void *va, *vb;
		size_t la, lb;
		sched_yield(); /* hold the version while writers cut it */
		if (!ctx_state_lookup(st, "a", 1, &va, &la) ||
		    !ctx_state_lookup(st, "b", 1, &vb, &lb) || la != lb || memcmp(va, vb, la) != 0)
			atomic_fetch_add(&sh->torn, 1);
		ctx_state_release(st);
		atomic_fetch_add(&sh->reads, 1);
	}
	return NULL;
}

static void test_release_arrays_under_readers(void **state)
{
	(void)state;
	static shared sh; /* large: not on the stack */
	memset(&sh, 0, sizeof(sh));
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = 2; /* every commit cuts and releases a version */
	assert_ok(ctx_open(&o, &sh.s));
	for (int k = 0; k < NCTX; k++) {
		ctx_txn *t;
		assert_ok(ctx_txn_begin_create(sh.s, ids[k], &t));
		assert_ok(ctx_txn_put(t, "a", 1, "x", 1));
		assert_ok(ctx_txn_put(t, "b", 1, "x", 1));
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
	pthread_t rt[READERS], wt[WRITERS];
	for (int r = 0; r < READERS; r++)
		assert_int_equal(pthread_create(&rt[r], NULL, reader, &sh), 0);
	warg wa[WRITERS];
	for (int wave = 0; wave < WAVES; wave++) {
		for (int w = 0; w < WRITERS; w++) {
			wa[w] = (warg){&sh, w};
			assert_int_equal(pthread_create(&wt[w], NULL, writer, &wa[w]), 0);
		}
		for (int w = 0; w < WRITERS; w++)
			pthread_join(wt[w], NULL);
	}
	atomic_store(&sh.stop, 1);
	for (int r = 0; r < READERS; r++)
		pthread_join(rt[r], NULL);

	assert_int_equal(atomic_load(&sh.errors), 0);
	assert_int_equal(atomic_load(&sh.torn), 0);
	assert_true(atomic_load(&sh.reads) > 0);
	long total = 0;
	for (int k = 0; k < NCTX; k++) {
		ctx_state *st;
		assert_ok(ctx_get(sh.s, ids[k], &st));
		assert_int_equal(ctx_state_version(st), 1 + atomic_load(&sh.commits[k]));
		for (int w = 0; w < WRITERS; w++) {
			char key[16], want[24];
			snprintf(key, sizeof(key), "w%d", w);
			const void *v;
			size_t vl;
			if (!sh.mine[w][k]) {
				assert_false(ctx_state_lookup(st, key, strlen(key), &v, &vl));
				continue;
			}
			snprintf(want, sizeof(want), "%ld", sh.mine[w][k]);
			assert_true(ctx_state_lookup(st, key, strlen(key), &v, &vl));
			assert_int_equal(vl, strlen(want));
			assert_memory_equal(v, want, vl);
		}
		total += atomic_load(&sh.commits[k]);
		ctx_state_release(st);
	}
	assert_int_equal(total, (long)WAVES * WRITERS * COMMITS);
	ctx_close(sh.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_release_arrays_under_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
