/*
 * test_concurrency.c - the concurrency contract of include/ctx.h under stress.
 *
 * Every test asserts exact final results (counts, versions, values), never
 * timing or throughput. Worker threads do not call cmocka's asserts (they are
 * not thread-safe): they count failures with T_CHECK, and the main thread
 * asserts that there were none after joining them.
 *
 * Sizes scale with test_iters() (CTX_STRESS_SCALE raises them; sanitizer
 * builds lower them) so that each test takes a few seconds at most.
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hamt.h"
#include "store.h"

/* ---- threads -------------------------------------------------------------------- */

typedef struct worker {
	pthread_t th;
	int id;
	uint64_t rng;
	void *shared;
	/* Per-worker results, read by the main thread after joining. */
	uint64_t done;
	uint64_t extra;
} worker;

static worker *start_workers(int n, void *(*fn)(void *), void *shared, int first_id)
{
	worker *w = calloc((size_t)n, sizeof(*w));
	assert_non_null(w);
	for (int i = 0; i < n; i++) {
		w[i].id = first_id + i;
		w[i].rng = 0x1234567ull * (uint64_t)(first_id + i + 1);
		w[i].shared = shared;
		assert_int_equal(pthread_create(&w[i].th, NULL, fn, &w[i]), 0);
	}
	return w;
}

static void join_workers(worker *w, int n)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_join(w[i].th, NULL), 0);
}

static void put_u64le(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64le(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The 8-byte value of key in st, or UINT64_MAX if absent or not 8 bytes. */
static uint64_t lookup_u64(const ctx_state *st, const char *key)
{
	const void *v;
	size_t vl;
	if (!ctx_state_lookup(st, key, strlen(key), &v, &vl) || vl != 8)
		return UINT64_MAX;
	return get_u64le(v);
}

/* ---- (a) 64 threads, unguarded puts of distinct keys to one context ------------- */

typedef struct distinct_shared {
	ctx_store *s;
	long per_thread;
	uint64_t max_version;
	atomic_uchar *seen_version; /* index: version */
} distinct_shared;

static void *distinct_worker(void *arg)
{
	worker *w = arg;
	distinct_shared *sh = w->shared;
	uint64_t last = 0;
	for (long i = 0; i < sh->per_thread; i++) {
		char key[32];
		unsigned char val[8];
		int kl = snprintf(key, sizeof(key), "t%02d/%06ld", w->id, i);
		put_u64le(val, (uint64_t)w->id << 32 | (uint64_t)i);
		uint64_t v = 0;
		T_CHECK_STATUS(ctx_put(sh->s, "shared", key, (size_t)kl, val, 8, &v), CTX_OK);
		/* Versions handed to one thread grow, and each is unique. */
		T_CHECK(v > last);
		T_CHECK(v >= 2 && v <= sh->max_version);
		if (v >= 2 && v <= sh->max_version)
			atomic_fetch_add(&sh->seen_version[v], 1);
		last = v;
		if (i % 50 == 0) {
			/* Read your writes: a later get sees this commit. */
			ctx_state *st = NULL;
			T_CHECK_STATUS(ctx_get(sh->s, "shared", &st), CTX_OK);
			if (st) {
				T_CHECK(ctx_state_version(st) >= v);
				T_CHECK(ctx_state_lookup(st, key, (size_t)kl, NULL, NULL));
				ctx_state_release(st);
			}
		}
	}
	return NULL;
}

static void test_distinct_keys_64_threads(void **unused)
{
	enum { T = 64 };
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "shared"));
	distinct_shared sh = {s, test_iters(2500, 40), 0, NULL};
	uint64_t total = (uint64_t)T * (uint64_t)sh.per_thread;
	sh.max_version = 1 + total;
	sh.seen_version = calloc(sh.max_version + 1, sizeof(atomic_uchar));
	assert_non_null(sh.seen_version);

	worker *w = start_workers(T, distinct_worker, &sh, 0);
	join_workers(w, T);
	free(w);
	assert_no_thread_failures();

	ctx_state *st;
	assert_ok(ctx_get(s, "shared", &st));
	assert_int_equal(ctx_state_version(st), 1 + total);
	assert_int_equal(ctx_state_count(st), total);
	size_t bytes = 0;
	for (int t = 0; t < T; t++) {
		for (long i = 0; i < sh.per_thread; i++) {
			char key[32];
			int kl = snprintf(key, sizeof(key), "t%02d/%06ld", t, i);
			bytes += (size_t)kl + 8;
			const void *v;
			size_t vl;
			assert_true(ctx_state_lookup(st, key, (size_t)kl, &v, &vl));
			assert_int_equal(vl, 8);
			assert_int_equal(get_u64le(v), (uint64_t)t << 32 | (uint64_t)i);
		}
	}
	assert_int_equal(ctx_state_bytes(st), bytes);
	/* Every version from 2 to 1 + total went to exactly one put. */
	for (uint64_t v = 2; v <= sh.max_version; v++)
		if (atomic_load(&sh.seen_version[v]) != 1)
			fail_msg("version %" PRIu64 " handed out %d times", v,
			         (int)atomic_load(&sh.seen_version[v]));
	ctx_state_release(st);
	free(sh.seen_version);
	ctx_close(s);
}

/* ---- (b) 64 threads, compare-and-set increments of one counter ------------------- */

typedef struct counter_shared {
	ctx_store *s;
	long per_thread;
	uint64_t total;
	atomic_uchar *seen_value; /* index: value written */
	atomic_long conflicts;
} counter_shared;

static void *counter_worker(void *arg)
{
	worker *w = arg;
	counter_shared *sh = w->shared;
	for (long i = 0; i < sh->per_thread; i++) {
		for (;;) {
			ctx_state *st = NULL;
			ctx_status r = ctx_get(sh->s, "counter", &st);
			T_CHECK_STATUS(r, CTX_OK);
			if (r != CTX_OK)
				return NULL;
			uint64_t version = ctx_state_version(st);
			uint64_t n = lookup_u64(st, "n");
			ctx_state_release(st);
			T_CHECK(n < sh->total);
			if (n >= sh->total)
				return NULL;
			unsigned char val[8];
			put_u64le(val, n + 1);
			ctx_txn *t = NULL;
			T_CHECK_STATUS(ctx_txn_begin(sh->s, "counter", &t), CTX_OK);
			if (!t)
				return NULL;
			T_CHECK_STATUS(ctx_txn_put(t, "n", 1, val, 8), CTX_OK);
			uint64_t nv = 0;
			r = ctx_txn_commit(t, version, &nv);
			if (r == CTX_OK) {
				T_CHECK(nv == version + 1);
				/* Each value is written by exactly one increment. */
				atomic_fetch_add(&sh->seen_value[n + 1], 1);
				break;
			}
			T_CHECK_STATUS(r, CTX_CONFLICT);
			if (r != CTX_CONFLICT)
				return NULL;
			atomic_fetch_add(&sh->conflicts, 1);
			if (atomic_load(&sh->conflicts) % 64 == 0)
				sched_yield();
		}
	}
	return NULL;
}

static void test_cas_counter_64_threads(void **unused)
{
	enum { T = 64 };
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "counter"));
	unsigned char zero[8] = {0};
	assert_ok(ctx_put(s, "counter", "n", 1, zero, 8, NULL));
	counter_shared sh = {.s = s, .per_thread = test_iters(5000, 20)};
	sh.total = (uint64_t)T * (uint64_t)sh.per_thread;
	sh.seen_value = calloc(sh.total + 2, sizeof(atomic_uchar));
	assert_non_null(sh.seen_value);
	atomic_init(&sh.conflicts, 0);

	worker *w = start_workers(T, counter_worker, &sh, 0);
	join_workers(w, T);
	free(w);
	assert_no_thread_failures();

	ctx_state *st;
	assert_ok(ctx_get(s, "counter", &st));
	assert_int_equal(lookup_u64(st, "n"), sh.total);
	/* Version 1 (create) + 1 (initial put) + one per increment: failed
	 * guarded commits made no version. */
	assert_int_equal(ctx_state_version(st), 2 + sh.total);
	assert_int_equal(ctx_state_count(st), 1);
	ctx_state_release(st);
	for (uint64_t v = 1; v <= sh.total; v++)
		if (atomic_load(&sh.seen_value[v]) != 1)
			fail_msg("value %" PRIu64 " written %d times", v,
			         (int)atomic_load(&sh.seen_value[v]));
	print_message("cas counter: %" PRIu64 " increments, %ld conflicts\n", sh.total,
	              atomic_load(&sh.conflicts));
	free(sh.seen_value);
	ctx_close(s);
}

/* ---- (c) atomic multi-key transactions seen by readers ------------------------------ */

typedef struct pair_shared {
	ctx_store *s;
	long per_writer;
	atomic_int writers_left;
	atomic_long noise_puts;
	atomic_long reads;
} pair_shared;

static void *pair_writer(void *arg)
{
	worker *w = arg;
	pair_shared *sh = w->shared;
	for (long i = 0; i < sh->per_writer; i++) {
		unsigned char val[16];
		put_u64le(val, (uint64_t)w->id);
		put_u64le(val + 8, (uint64_t)i);
		ctx_txn *t = NULL;
		T_CHECK_STATUS(ctx_txn_begin(sh->s, "pair", &t), CTX_OK);
		if (!t)
			break;
		/* Vary the shape: sometimes the same key twice, sometimes a delete
		 * first; the committed result is always a == b. */
		if (i % 3 == 0)
			T_CHECK_STATUS(ctx_txn_put(t, "a", 1, "partial", 7), CTX_OK);
		if (i % 5 == 0)
			T_CHECK_STATUS(ctx_txn_del(t, "b", 1), CTX_OK);
		T_CHECK_STATUS(ctx_txn_put(t, "a", 1, val, sizeof(val)), CTX_OK);
		T_CHECK_STATUS(ctx_txn_put(t, "b", 1, val, sizeof(val)), CTX_OK);
		T_CHECK_STATUS(ctx_txn_commit(t, 0, NULL), CTX_OK);
		if (i % 7 == 0) {
			/* A single put of another key in between. */
			T_CHECK_STATUS(ctx_put(sh->s, "pair", "noise", 5, val, 8, NULL), CTX_OK);
			atomic_fetch_add(&sh->noise_puts, 1);
		}
	}
	atomic_fetch_sub(&sh->writers_left, 1);
	return NULL;
}

/* a and b of st, which must be present and equal; returns a's bytes. */
static bool pair_consistent(const ctx_state *st, unsigned char out[16])
{
	const void *a, *b;
	size_t al, bl;
	if (!ctx_state_lookup(st, "a", 1, &a, &al) || !ctx_state_lookup(st, "b", 1, &b, &bl))
		return false;
	if (al != 16 || bl != 16 || memcmp(a, b, 16) != 0)
		return false;
	memcpy(out, a, 16);
	return true;
}

static void *pair_reader(void *arg)
{
	worker *w = arg;
	pair_shared *sh = w->shared;
	uint64_t last_version = 0, last_revision = 0;
	unsigned char last_val[16] = {0};
	ctx_state *prev = NULL;
	long n = 0;
	do {
		ctx_state *st = NULL;
		T_CHECK_STATUS(ctx_get(sh->s, "pair", &st), CTX_OK);
		if (!st)
			break;
		unsigned char val[16];
		bool ok = pair_consistent(st, val);
		T_CHECK(ok);
		uint64_t v = ctx_state_version(st);
		/* Versions seen by one reader never go backwards, and one version
		 * always shows the same data. */
		T_CHECK(v >= last_version);
		T_CHECK(ctx_state_revision(st) >= last_revision);
		if (v == last_version)
			T_CHECK(memcmp(val, last_val, 16) == 0 &&
			        ctx_state_revision(st) == last_revision);
		size_t count = ctx_state_count(st);
		T_CHECK(count == 2 || count == 3);
		if (n % 16 == 0) {
			/* A full iteration of the snapshot agrees with the lookups. */
			ctx_iter *it = NULL;
			T_CHECK_STATUS(ctx_iter_begin(st, &it), CTX_OK);
			const void *k, *iv;
			size_t kl, ivl, seen = 0;
			while (it && ctx_iter_next(it, &k, &kl, &iv, &ivl)) {
				seen++;
				if (kl == 1 && (memcmp(k, "a", 1) == 0 || memcmp(k, "b", 1) == 0))
					T_CHECK(ivl == 16 && memcmp(iv, val, 16) == 0);
			}
			T_CHECK(seen == count);
			ctx_iter_free(it);
		}
		/* The previous snapshot has not changed meanwhile. */
		if (prev) {
			unsigned char pv[16];
			T_CHECK(pair_consistent(prev, pv) && memcmp(pv, last_val, 16) == 0);
			T_CHECK(ctx_state_version(prev) == last_version);
			ctx_state_release(prev);
		}
		prev = st;
		last_version = v;
		last_revision = ctx_state_revision(st);
		memcpy(last_val, val, 16);
		n++;
	} while (atomic_load(&sh->writers_left) > 0);
	ctx_state_release(prev);
	atomic_fetch_add(&sh->reads, n);
	w->done = (uint64_t)n;
	return NULL;
}

static void test_multi_key_atomicity(void **unused)
{
	enum { W = 6, R = 6 };
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "pair"));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "pair", &t));
	unsigned char init[16] = {0};
	assert_ok(ctx_txn_put(t, "a", 1, init, 16));
	assert_ok(ctx_txn_put(t, "b", 1, init, 16));
	assert_ok(ctx_txn_commit(t, 1, NULL));

	pair_shared sh = {.s = s, .per_writer = test_iters(20000, 300)};
	atomic_init(&sh.writers_left, W);
	atomic_init(&sh.noise_puts, 0);
	atomic_init(&sh.reads, 0);
	worker *r = start_workers(R, pair_reader, &sh, 100);
	worker *w = start_workers(W, pair_writer, &sh, 0);
	join_workers(w, W);
	join_workers(r, R);
	for (int i = 0; i < R; i++)
		assert_true(r[i].done >= 1);
	free(w);
	free(r);
	assert_no_thread_failures();

	ctx_state *st;
	assert_ok(ctx_get(s, "pair", &st));
	uint64_t commits = (uint64_t)W * (uint64_t)sh.per_writer + (uint64_t)sh.noise_puts;
	assert_int_equal(ctx_state_version(st), 2 + commits);
	unsigned char val[16];
	assert_true(pair_consistent(st, val));
	/* The last transaction of some writer won. */
	assert_int_equal(get_u64le(val + 8), (uint64_t)sh.per_writer - 1);
	assert_true(get_u64le(val) < W);
	ctx_state_release(st);
	ctx_close(s);
}

/* ---- (d) an old state held while writers commit thousands of versions ---------- */

typedef struct old_shared {
	ctx_store *s;
	ctx_state *old;
	int nkeys;
	int rounds;
	int writers;
	atomic_int writers_left;
} old_shared;

static int old_key(int i, char *buf)
{
	return snprintf(buf, 32, "key%05d", i);
}

static int old_value(int i, char *buf)
{
	/* Different lengths so that bytes are meaningful. */
	return snprintf(buf, 64, "old-value-%d-%.*s", i, i % 17, "xxxxxxxxxxxxxxxxx");
}

static void *old_writer(void *arg)
{
	worker *w = arg;
	old_shared *sh = w->shared;
	for (int round = 0; round < sh->rounds; round++) {
		for (int i = w->id; i < sh->nkeys; i += sh->writers) {
			char key[32], val[64];
			int kl = old_key(i, key);
			int vl = snprintf(val, sizeof(val), "new-%d-%d", round, i);
			if (round % 2 == 1 && i % 3 == 0) {
				/* Delete, then put back below in the same round. */
				T_CHECK_STATUS(ctx_del(sh->s, "hist", key, (size_t)kl, NULL),
				               CTX_OK);
			}
			T_CHECK_STATUS(
			    ctx_put(sh->s, "hist", key, (size_t)kl, val, (size_t)vl, NULL), CTX_OK);
			w->done++;
		}
		/* Some keys that never existed in the old state. */
		char extra[32];
		int el = snprintf(extra, sizeof(extra), "extra-%d-%d", w->id, round);
		T_CHECK_STATUS(ctx_put(sh->s, "hist", extra, (size_t)el, "e", 1, NULL), CTX_OK);
		w->done++;
	}
	atomic_fetch_sub(&sh->writers_left, 1);
	return NULL;
}

static bool old_state_intact(const old_shared *sh, const ctx_state *st, size_t bytes)
{
	bool ok = ctx_state_version(st) == 2 && ctx_state_count(st) == (size_t)sh->nkeys &&
	          ctx_state_bytes(st) == bytes;
	for (int i = 0; i < sh->nkeys && ok; i++) {
		char key[32], want[64];
		int kl = old_key(i, key), wl = old_value(i, want);
		const void *v;
		size_t vl;
		ok = ctx_state_lookup(st, key, (size_t)kl, &v, &vl) && vl == (size_t)wl &&
		     memcmp(v, want, vl) == 0;
	}
	ok = ok && !ctx_state_lookup(st, "extra-0-0", 9, NULL, NULL);
	return ok;
}

typedef struct old_checker_arg {
	old_shared *sh;
	ctx_state *st; /* its own reference */
	size_t bytes;
	long scans;
} old_checker_arg;

static void *old_checker(void *arg)
{
	old_checker_arg *a = arg;
	do {
		T_CHECK(old_state_intact(a->sh, a->st, a->bytes));
		a->scans++;
	} while (atomic_load(&a->sh->writers_left) > 0);
	ctx_state_release(a->st);
	return NULL;
}

static void test_old_state_survives_writers(void **unused)
{
	enum { W = 4 };
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "hist"));
	old_shared sh = {.s = s, .nkeys = (int)test_iters(5000, 300), .rounds = 10, .writers = W};
	atomic_init(&sh.writers_left, W);

	/* Version 2: nkeys keys in one transaction. */
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "hist", &t));
	size_t bytes = 0;
	for (int i = 0; i < sh.nkeys; i++) {
		char key[32], val[64];
		int kl = old_key(i, key), vl = old_value(i, val);
		assert_ok(ctx_txn_put(t, key, (size_t)kl, val, (size_t)vl));
		bytes += (size_t)(kl + vl);
	}
	assert_ok(ctx_txn_commit(t, 1, NULL));
	assert_ok(ctx_get(s, "hist", &sh.old));
	assert_true(old_state_intact(&sh, sh.old, bytes));

	/* Take our own reference to every leaf of the old version (the trie's
	 * leaves are reference counted, hamt.h), to see below that the old
	 * version let go of them once released. */
	hamt_leaf **leaves = calloc((size_t)sh.nkeys, sizeof(*leaves));
	assert_non_null(leaves);
	ctx_iter *it;
	assert_ok(ctx_iter_begin(sh.old, &it));
	const void *k;
	size_t kl, n = 0;
	while (ctx_iter_next(it, &k, &kl, NULL, NULL)) {
		assert_true(n < (size_t)sh.nkeys);
		assert_true(kl < HAMT_KLEN_LONG); /* the key right after the header */
		hamt_leaf *l = (hamt_leaf *)((const unsigned char *)k - offsetof(hamt_leaf, data));
		assert_ptr_equal(hamt_leaf_key(l), k);
		assert_int_equal(hamt_leaf_klen(l), kl);
		atomic_fetch_add(&l->refs, 1);
		leaves[n++] = l;
	}
	ctx_iter_free(it);
	assert_int_equal(n, (size_t)sh.nkeys);

	old_checker_arg ca = {&sh, ctx_state_retain(sh.old), bytes, 0};
	pthread_t checker;
	assert_int_equal(pthread_create(&checker, NULL, old_checker, &ca), 0);
	worker *w = start_workers(W, old_writer, &sh, 0);
	join_workers(w, W);
	assert_int_equal(pthread_join(checker, NULL), 0);
	assert_no_thread_failures();
	assert_true(ca.scans >= 1);

	/* The old view never changed. */
	assert_true(old_state_intact(&sh, sh.old, bytes));

	/* Thousands of versions were made, exactly one per write. */
	uint64_t writes = 0;
	for (int i = 0; i < W; i++)
		writes += w[i].done;
	free(w);
	uint64_t deletes = 0;
	for (int round = 1; round < sh.rounds; round += 2)
		for (int i = 0; i < sh.nkeys; i += 3)
			deletes++;
	ctx_state *now;
	assert_ok(ctx_get(s, "hist", &now));
	assert_int_equal(ctx_state_version(now), 2 + writes + deletes);
	assert_int_equal(ctx_state_count(now), (size_t)sh.nkeys + (size_t)(W * sh.rounds));
	char key[32], val[64];
	int kl2 = old_key(7, key), vl2 = snprintf(val, sizeof(val), "new-%d-%d", sh.rounds - 1, 7);
	const void *v;
	size_t vl;
	assert_true(ctx_state_lookup(now, key, (size_t)kl2, &v, &vl));
	assert_int_equal(vl, (size_t)vl2);
	assert_memory_equal(v, val, vl);
	ctx_state_release(now);

	/* Every old leaf is still held by the old version... */
	for (size_t i = 0; i < n; i++)
		assert_true(atomic_load(&leaves[i]->refs) >= 2);
	/* ...and by nothing else once it is released: all keys were rewritten,
	 * so the old version's memory is reclaimed. */
	ctx_state_release(sh.old);
	state_drain(); /* its maps go one grace period later (state.c) */
	for (size_t i = 0; i < n; i++) {
		if (atomic_load(&leaves[i]->refs) != 1)
			fail_msg("old leaf %zu still has %u references after release", i,
			         atomic_load(&leaves[i]->refs));
		hamt_leaf_release(leaves[i]);
	}
	free(leaves);
	ctx_close(s);
}

/* ---- (e) concurrent create/drop/get/put of a few ids -------------------------------- */

#define CHURN_IDS 6

typedef struct churn_shared {
	ctx_store *s;
	long per_thread;
	atomic_long creates[CHURN_IDS];
	atomic_long drops[CHURN_IDS];
	atomic_long ok_ops;
} churn_shared;

static void churn_id(int i, char *buf)
{
	snprintf(buf, 32, "churn/%d", i);
}

static void *churn_worker(void *arg)
{
	worker *w = arg;
	churn_shared *sh = w->shared;
	for (long n = 0; n < sh->per_thread; n++) {
		int i = (int)test_rand_below(&w->rng, CHURN_IDS);
		char id[32];
		churn_id(i, id);
		size_t idlen = strlen(id);
		ctx_status r;
		uint64_t v = 0;
		switch (test_rand_below(&w->rng, 10)) {
		case 0:
		case 1:
			r = ctx_create(sh->s, id);
			T_CHECK(r == CTX_OK || r == CTX_EXISTS);
			if (r == CTX_OK)
				atomic_fetch_add(&sh->creates[i], 1);
			break;
		case 2:
			r = ctx_drop(sh->s, id);
			T_CHECK(r == CTX_OK || r == CTX_NOT_FOUND);
			if (r == CTX_OK)
				atomic_fetch_add(&sh->drops[i], 1);
			break;
		case 3:
		case 4: {
			ctx_state *st = NULL;
			r = ctx_get(sh->s, id, &st);
			T_CHECK(r == CTX_OK || r == CTX_NOT_FOUND);
			if (r != CTX_OK)
				break;
			T_CHECK(strcmp(ctx_state_id(st), id) == 0);
			T_CHECK(ctx_state_version(st) >= 1);
			/* Writes only ever put the context's own id as "owner". */
			const void *val;
			size_t vl;
			if (ctx_state_lookup(st, "owner", 5, &val, &vl))
				T_CHECK(vl == idlen && memcmp(val, id, idlen) == 0);
			T_CHECK(ctx_state_count(st) <= 2);
			ctx_state_release(st);
			break;
		}
		case 5:
		case 6:
			r = ctx_put(sh->s, id, "owner", 5, id, idlen, &v);
			T_CHECK(r == CTX_OK || r == CTX_NOT_FOUND);
			if (r == CTX_OK)
				T_CHECK(v >= 2);
			break;
		case 7:
			r = ctx_del(sh->s, id, "owner", 5, &v);
			T_CHECK(r == CTX_OK || r == CTX_NOT_FOUND);
			break;
		case 8: {
			ctx_txn *t = NULL;
			r = ctx_txn_begin(sh->s, id, &t);
			T_CHECK(r == CTX_OK || r == CTX_NOT_FOUND);
			if (r != CTX_OK)
				break;
			T_CHECK_STATUS(ctx_txn_put(t, "owner", 5, id, idlen), CTX_OK);
			T_CHECK_STATUS(ctx_txn_put(t, "txn", 3, "1", 1), CTX_OK);
			uint64_t expect =
			    test_rand_below(&w->rng, 2) ? 0 : 1 + test_rand_below(&w->rng, 4);
			r = ctx_txn_commit(t, expect, &v);
			T_CHECK(r == CTX_OK || r == CTX_NOT_FOUND || (expect && r == CTX_CONFLICT));
			if (r == CTX_OK && expect)
				T_CHECK(v == expect + 1);
			break;
		}
		default: {
			ctx_list l;
			r = ctx_list_ids(sh->s, "churn/", NULL, 0, &l);
			T_CHECK_STATUS(r, CTX_OK);
			if (r != CTX_OK)
				break;
			T_CHECK(l.count <= CHURN_IDS);
			for (size_t j = 0; j < l.count; j++) {
				T_CHECK(strncmp(l.ids[j], "churn/", 6) == 0);
				if (j)
					T_CHECK(strcmp(l.ids[j - 1], l.ids[j]) < 0);
			}
			ctx_list_free(&l);
			(void)ctx_count(sh->s);
			r = CTX_OK;
			break;
		}
		}
		if (r == CTX_OK)
			atomic_fetch_add(&sh->ok_ops, 1);
	}
	return NULL;
}

static void test_create_drop_churn(void **unused)
{
	enum { T = 16 };
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "bystander"));
	assert_ok(ctx_put(s, "bystander", "k", 1, "v", 1, NULL));
	churn_shared sh = {.s = s, .per_thread = test_iters(80000, 3000)};
	for (int i = 0; i < CHURN_IDS; i++) {
		atomic_init(&sh.creates[i], 0);
		atomic_init(&sh.drops[i], 0);
	}
	atomic_init(&sh.ok_ops, 0);
	worker *w = start_workers(T, churn_worker, &sh, 0);
	join_workers(w, T);
	free(w);
	assert_no_thread_failures();
	assert_true(atomic_load(&sh.ok_ops) > 0);

	/* Each id exists now iff it was created once more than dropped. */
	size_t live = 0;
	ctx_list l;
	assert_ok(ctx_list_ids(s, "churn/", NULL, 0, &l));
	size_t listed = 0;
	for (int i = 0; i < CHURN_IDS; i++) {
		char id[32];
		churn_id(i, id);
		long c = atomic_load(&sh.creates[i]), d = atomic_load(&sh.drops[i]);
		ctx_state *st = NULL;
		ctx_status r = ctx_get(s, id, &st);
		if (r == CTX_OK) {
			assert_int_equal(c - d, 1);
			assert_string_equal(ctx_state_id(st), id);
			ctx_state_release(st);
			live++;
			assert_true(listed < l.count);
			assert_string_equal(l.ids[listed], id);
			listed++;
			/* Still fully usable. */
			uint64_t v;
			assert_ok(ctx_put(s, id, "after", 5, "x", 1, &v));
		} else {
			assert_int_equal(r, CTX_NOT_FOUND);
			assert_int_equal(c - d, 0);
			assert_int_equal(ctx_create(s, id), CTX_OK);
			assert_ok(ctx_drop(s, id));
		}
		print_message("%s: %ld creates, %ld drops\n", id, c, d);
	}
	assert_int_equal(listed, l.count);
	ctx_list_free(&l);
	assert_int_equal(ctx_count(s), live + 1);
	ctx_state *st;
	assert_ok(ctx_get(s, "bystander", &st));
	assert_int_equal(ctx_state_version(st), 2);
	ctx_state_release(st);
	ctx_close(s);
}

/* ---- (e2) max_contexts is not hit by creates that fail with EXISTS ---------------- */

typedef struct limit_shared {
	ctx_store *s;
	long cycles;
	atomic_int churner_done;
	atomic_long spurious_limit;
	atomic_long hammer_calls;
} limit_shared;

static void *limit_hammer(void *arg)
{
	worker *w = arg;
	limit_shared *sh = w->shared;
	long n = 0;
	while (!atomic_load(&sh->churner_done)) {
		ctx_status r = ctx_create(sh->s, "base0");
		/* "base0" exists: EXISTS, or LIMIT while "fresh" exists too. */
		T_CHECK(r == CTX_EXISTS || r == CTX_LIMIT);
		n++;
	}
	atomic_fetch_add(&sh->hammer_calls, n);
	return NULL;
}

static void *limit_churner(void *arg)
{
	worker *w = arg;
	limit_shared *sh = w->shared;
	for (long i = 0; i < sh->cycles; i++) {
		/* Only three contexts exist besides "fresh", and the limit is four:
		 * creating "fresh" must succeed every time. */
		ctx_status r = ctx_create(sh->s, "fresh");
		if (r == CTX_LIMIT) {
			atomic_fetch_add(&sh->spurious_limit, 1);
			continue;
		}
		T_CHECK_STATUS(r, CTX_OK);
		T_CHECK_STATUS(ctx_drop(sh->s, "fresh"), CTX_OK);
	}
	atomic_store(&sh->churner_done, 1);
	return NULL;
}

static void test_limit_not_taken_by_failed_creates(void **unused)
{
	enum { H = 6 };
	reset_failures();
	ctx_options o;
	ctx_options_init(&o);
	o.max_contexts = 4;
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "base0"));
	assert_ok(ctx_create(s, "base1"));
	assert_ok(ctx_create(s, "base2"));
	limit_shared sh = {.s = s, .cycles = test_iters(20000, 2000)};
	atomic_init(&sh.churner_done, 0);
	atomic_init(&sh.spurious_limit, 0);
	atomic_init(&sh.hammer_calls, 0);
	worker *h = start_workers(H, limit_hammer, &sh, 1);
	worker *c = start_workers(1, limit_churner, &sh, 0);
	join_workers(c, 1);
	join_workers(h, H);
	free(c);
	free(h);
	assert_no_thread_failures();
	size_t count = ctx_count(s);
	ctx_close(s);
	assert_int_equal(count, 3);
	long spurious = atomic_load(&sh.spurious_limit);
	if (spurious)
		fail_msg("ctx_create(\"fresh\") gave CTX_LIMIT %ld times of %ld while only 3 of "
		         "max_contexts 4 contexts existed (concurrent creates of an existing id "
		         "hold a slot: reserve_slot() runs before the EXISTS check in "
		         "ctx_create)",
		         spurious, sh.cycles);
}

/* ---- (f) readers are never blocked by a writer -------------------------------------- */

typedef struct blocked_shared {
	ctx_store *s;
	atomic_int done;
	uint64_t version_seen;
} blocked_shared;

/* Every read path on "hot" (whose write lock the main thread holds, as a
 * writer in the middle of a commit would), plus a write to another context
 * and the start of a transaction on "hot", which takes no lock either. */
static void *blocked_reader(void *arg)
{
	blocked_shared *sh = arg;
	for (int i = 0; i < 100; i++) {
		ctx_state *st = NULL;
		T_CHECK_STATUS(ctx_get(sh->s, "hot", &st), CTX_OK);
		if (!st)
			break;
		sh->version_seen = ctx_state_version(st);
		T_CHECK(ctx_state_lookup(st, "k", 1, NULL, NULL));
		ctx_iter *it = NULL;
		T_CHECK_STATUS(ctx_iter_begin(st, &it), CTX_OK);
		size_t n = 0;
		while (it && ctx_iter_next(it, NULL, NULL, NULL, NULL))
			n++;
		T_CHECK(n == ctx_state_count(st));
		ctx_iter_free(it);
		ctx_state_release(st);
	}
	ctx_list l;
	T_CHECK_STATUS(ctx_list_ids(sh->s, NULL, NULL, 0, &l), CTX_OK);
	T_CHECK(l.count == 2);
	ctx_list_free(&l);
	T_CHECK(ctx_count(sh->s) == 2);
	ctx_txn *t = NULL;
	T_CHECK_STATUS(ctx_txn_begin(sh->s, "hot", &t), CTX_OK);
	T_CHECK_STATUS(ctx_txn_put(t, "k", 1, "never", 5), CTX_OK);
	ctx_txn_abort(t);
	/* Writers to another context share no lock with "hot". */
	T_CHECK_STATUS(ctx_put(sh->s, "cold", "k", 1, "v", 1, NULL), CTX_OK);
	atomic_store(&sh->done, 1);
	return NULL;
}

static void test_readers_not_blocked_by_write_lock(void **unused)
{
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "hot"));
	assert_ok(ctx_create(s, "cold"));
	for (int i = 0; i < 10; i++)
		assert_ok(ctx_put(s, "hot", "k", 1, "v", 1, NULL));
	blocked_shared sh = {.s = s};
	atomic_init(&sh.done, 0);

	/* Hold hot's write lock (src/lib/store.h) for the whole read burst. */
	ctx_context *c = store_find_context(s, "hot", 3);
	assert_non_null(c);
	context_lock(c);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, blocked_reader, &sh), 0);
	/* Generous: the reads take microseconds; a blocked reader never ends. */
	double deadline = test_now() + 60;
	while (!atomic_load(&sh.done) && test_now() < deadline)
		usleep(1000);
	int finished = atomic_load(&sh.done);
	context_unlock(c);
	assert_int_equal(pthread_join(th, NULL), 0);
	context_release(c);
	if (!finished)
		fail_msg("reads did not complete while a writer held the context's write lock");
	assert_no_thread_failures();
	assert_int_equal(sh.version_seen, 11);
	ctx_close(s);
}

typedef struct stream_shared {
	ctx_store *s;
	int readers;
	long min_commits;
	int txn_size;
	atomic_ulong commit_seq; /* odd while the writer is inside a commit */
	atomic_int readers_progressed;
	atomic_int stop;
	uint64_t commits;
} stream_shared;

static void *stream_writer(void *arg)
{
	worker *w = arg;
	stream_shared *sh = w->shared;
	long cap = sh->min_commits * 50;
	uint64_t n = 0;
	/* Keep committing at least min_commits times, and until every reader
	 * made progress during a commit (bounded by cap). */
	while ((long)n < sh->min_commits ||
	       (atomic_load(&sh->readers_progressed) < sh->readers && (long)n < cap)) {
		ctx_txn *t = NULL;
		T_CHECK_STATUS(ctx_txn_begin(sh->s, "stream", &t), CTX_OK);
		if (!t)
			break;
		for (int i = 0; i < sh->txn_size; i++) {
			char key[16];
			unsigned char val[8];
			int kl = snprintf(key, sizeof(key), "k%d", i);
			put_u64le(val, n + 1);
			T_CHECK_STATUS(ctx_txn_put(t, key, (size_t)kl, val, 8), CTX_OK);
		}
		atomic_fetch_add(&sh->commit_seq, 1);
		T_CHECK_STATUS(ctx_txn_commit(t, 0, NULL), CTX_OK);
		atomic_fetch_add(&sh->commit_seq, 1);
		n++;
	}
	sh->commits = n;
	atomic_store(&sh->stop, 1);
	return NULL;
}

static void *stream_reader(void *arg)
{
	worker *w = arg;
	stream_shared *sh = w->shared;
	uint64_t last = 0, inside = 0;
	bool counted = false;
	while (!atomic_load(&sh->stop)) {
		unsigned long before = atomic_load(&sh->commit_seq);
		ctx_state *st = NULL;
		T_CHECK_STATUS(ctx_get(sh->s, "stream", &st), CTX_OK);
		if (!st)
			break;
		uint64_t v = ctx_state_version(st);
		T_CHECK(v >= last);
		last = v;
		/* Each version's keys all carry the same value: version - 1. */
		if (v > 1) {
			T_CHECK(lookup_u64(st, "k0") == v - 1);
			T_CHECK(lookup_u64(st, "k1") == v - 1);
		}
		ctx_state_release(st);
		unsigned long after = atomic_load(&sh->commit_seq);
		/* The whole read happened inside one commit. */
		if (before == after && (before & 1)) {
			inside++;
			if (!counted) {
				counted = true;
				atomic_fetch_add(&sh->readers_progressed, 1);
			}
		}
		w->done++;
	}
	w->extra = inside;
	return NULL;
}

static void test_readers_progress_during_commit_stream(void **unused)
{
	enum { R = 3 };
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "stream"));
	stream_shared sh = {
	    .s = s, .readers = R, .min_commits = test_iters(300, 40), .txn_size = 3000};
	atomic_init(&sh.commit_seq, 0);
	atomic_init(&sh.readers_progressed, 0);
	atomic_init(&sh.stop, 0);
	worker *r = start_workers(R, stream_reader, &sh, 1);
	worker *w = start_workers(1, stream_writer, &sh, 0);
	join_workers(w, 1);
	join_workers(r, R);
	assert_no_thread_failures();
	for (int i = 0; i < R; i++) {
		print_message("reader %d: %" PRIu64 " reads, %" PRIu64 " inside a commit\n", i,
		              r[i].done, r[i].extra);
		assert_true(r[i].done >= 1);
		assert_true(r[i].extra >= 1);
	}
	free(w);
	free(r);
	ctx_state *st;
	assert_ok(ctx_get(s, "stream", &st));
	assert_int_equal(ctx_state_version(st), 1 + sh.commits);
	assert_int_equal(ctx_state_count(st), (size_t)sh.txn_size);
	assert_int_equal(lookup_u64(st, "k0"), sh.commits);
	ctx_state_release(st);
	ctx_close(s);
}

/* ---- states handed between threads -------------------------------------------------- */

typedef struct handoff_shared {
	ctx_store *s;
	long puts;
	_Atomic(ctx_state *) mailbox;
	atomic_int writer_done;
	atomic_long received;
} handoff_shared;

static void *handoff_writer(void *arg)
{
	worker *w = arg;
	handoff_shared *sh = w->shared;
	for (long i = 1; i <= sh->puts; i++) {
		unsigned char val[8];
		put_u64le(val, (uint64_t)i);
		uint64_t v = 0;
		T_CHECK_STATUS(ctx_put(sh->s, "box", "n", 1, val, 8, &v), CTX_OK);
		/* A single writer: the version follows from i. */
		T_CHECK(v == (uint64_t)i + 1);
	}
	atomic_store(&sh->writer_done, 1);
	return NULL;
}

static void *handoff_producer(void *arg)
{
	worker *w = arg;
	handoff_shared *sh = w->shared;
	while (!atomic_load(&sh->writer_done)) {
		ctx_state *st = NULL;
		T_CHECK_STATUS(ctx_get(sh->s, "box", &st), CTX_OK);
		if (!st)
			break;
		/* Hand a second reference to the consumer, drop ours. */
		ctx_state *old = atomic_exchange(&sh->mailbox, ctx_state_retain(st));
		ctx_state_release(old);
		ctx_state_release(st);
	}
	return NULL;
}

static void *handoff_consumer(void *arg)
{
	worker *w = arg;
	handoff_shared *sh = w->shared;
	uint64_t last_rev = 0, last_version = 0;
	for (;;) {
		int finished = atomic_load(&sh->writer_done);
		ctx_state *st = atomic_exchange(&sh->mailbox, NULL);
		if (st) {
			uint64_t v = ctx_state_version(st);
			uint64_t n = lookup_u64(st, "n");
			/* Content matches the version exactly. */
			T_CHECK(v == 1 ? n == UINT64_MAX : n == v - 1);
			/* Revisions grow with versions. */
			if (v > last_version)
				T_CHECK(ctx_state_revision(st) > last_rev);
			if (v == last_version)
				T_CHECK(ctx_state_revision(st) == last_rev);
			if (v >= last_version) {
				last_version = v;
				last_rev = ctx_state_revision(st);
			}
			ctx_state_release(st);
			atomic_fetch_add(&sh->received, 1);
		} else if (finished) {
			break;
		} else {
			sched_yield();
		}
	}
	return NULL;
}

static void test_states_handed_between_threads(void **unused)
{
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "box"));
	handoff_shared sh = {.s = s, .puts = test_iters(500000, 10000)};
	atomic_init(&sh.mailbox, NULL);
	atomic_init(&sh.writer_done, 0);
	atomic_init(&sh.received, 0);
	worker *p = start_workers(2, handoff_producer, &sh, 10);
	worker *c = start_workers(2, handoff_consumer, &sh, 20);
	worker *w = start_workers(1, handoff_writer, &sh, 0);
	join_workers(w, 1);
	join_workers(p, 2);
	join_workers(c, 2);
	free(w);
	free(p);
	free(c);
	ctx_state_release(atomic_exchange(&sh.mailbox, NULL));
	assert_no_thread_failures();
	assert_true(atomic_load(&sh.received) >= 1);
	ctx_state *st;
	assert_ok(ctx_get(s, "box", &st));
	assert_int_equal(ctx_state_version(st), 1 + (uint64_t)sh.puts);
	assert_int_equal(lookup_u64(st, "n"), (uint64_t)sh.puts);
	ctx_state_release(st);
	ctx_close(s);
}

/* ---- many contexts, one writer each, plus readers across all ------------------------ */

#define MANY_CTX 8

typedef struct many_shared {
	ctx_store *s;
	long puts;
	atomic_int writers_left;
} many_shared;

static void *many_writer(void *arg)
{
	worker *w = arg;
	many_shared *sh = w->shared;
	char id[16];
	snprintf(id, sizeof(id), "m%d", w->id);
	for (long i = 1; i <= sh->puts; i++) {
		unsigned char val[8];
		put_u64le(val, (uint64_t)i);
		ctx_txn *t = NULL;
		T_CHECK_STATUS(ctx_txn_begin(sh->s, id, &t), CTX_OK);
		if (!t)
			break;
		T_CHECK_STATUS(ctx_txn_put(t, "n", 1, val, 8), CTX_OK);
		T_CHECK_STATUS(ctx_txn_put(t, id, strlen(id), val, 8), CTX_OK);
		uint64_t v = 0;
		/* Alone on its context: the guarded commit never conflicts. */
		T_CHECK_STATUS(ctx_txn_commit(t, (uint64_t)i, &v), CTX_OK);
		T_CHECK(v == (uint64_t)i + 1);
	}
	atomic_fetch_sub(&sh->writers_left, 1);
	return NULL;
}

static void *many_reader(void *arg)
{
	worker *w = arg;
	many_shared *sh = w->shared;
	uint64_t last[MANY_CTX] = {0};
	do {
		int c = (int)test_rand_below(&w->rng, MANY_CTX);
		char id[16];
		snprintf(id, sizeof(id), "m%d", c);
		ctx_state *st = NULL;
		T_CHECK_STATUS(ctx_get(sh->s, id, &st), CTX_OK);
		if (!st)
			break;
		uint64_t v = ctx_state_version(st);
		T_CHECK(v >= last[c]);
		last[c] = v;
		T_CHECK(strcmp(ctx_state_id(st), id) == 0);
		if (v > 1) {
			T_CHECK(lookup_u64(st, "n") == v - 1);
			T_CHECK(lookup_u64(st, id) == v - 1);
			T_CHECK(ctx_state_count(st) == 2);
		}
		ctx_state_release(st);
		w->done++;
	} while (atomic_load(&sh->writers_left) > 0);
	return NULL;
}

static void test_many_contexts_in_parallel(void **unused)
{
	enum { R = 4 };
	reset_failures();
	ctx_store *s = test_open_memory();
	for (int i = 0; i < MANY_CTX; i++) {
		char id[16];
		snprintf(id, sizeof(id), "m%d", i);
		assert_ok(ctx_create(s, id));
	}
	many_shared sh = {.s = s, .puts = test_iters(60000, 2000)};
	atomic_init(&sh.writers_left, MANY_CTX);
	worker *r = start_workers(R, many_reader, &sh, 100);
	worker *w = start_workers(MANY_CTX, many_writer, &sh, 0);
	join_workers(w, MANY_CTX);
	join_workers(r, R);
	free(w);
	free(r);
	assert_no_thread_failures();
	uint64_t max_rev = 0;
	for (int i = 0; i < MANY_CTX; i++) {
		char id[16];
		snprintf(id, sizeof(id), "m%d", i);
		ctx_state *st;
		assert_ok(ctx_get(s, id, &st));
		assert_int_equal(ctx_state_version(st), 1 + (uint64_t)sh.puts);
		assert_int_equal(lookup_u64(st, "n"), (uint64_t)sh.puts);
		if (ctx_state_revision(st) > max_rev)
			max_rev = ctx_state_revision(st);
		ctx_state_release(st);
	}
	/* A distinct revision for every create and commit, store-wide. */
	assert_true(max_rev >= MANY_CTX + MANY_CTX * (uint64_t)sh.puts);
	ctx_close(s);
}

/* Each test prints how long it took (testutil.h). */
#define TIMED(f) TEST_TIMED(f)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TIMED(test_distinct_keys_64_threads),
	    TIMED(test_cas_counter_64_threads),
	    TIMED(test_multi_key_atomicity),
	    TIMED(test_old_state_survives_writers),
	    TIMED(test_create_drop_churn),
	    TIMED(test_limit_not_taken_by_failed_creates),
	    TIMED(test_readers_not_blocked_by_write_lock),
	    TIMED(test_readers_progress_during_commit_stream),
	    TIMED(test_states_handed_between_threads),
	    TIMED(test_many_contexts_in_parallel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
