/*
 * test_history_accounting.c - every trie node, leaf and version struct that a
 * context's history makes is freed exactly once (hamt.c: node_release and the
 * borrow chains; state.c: the cut and the batches; reclaim.c; points,
 * restores, trackers and versions held by readers across their cut).
 *
 * Accounting: the heap's live bytes (glibc's mallinfo2 in a normal
 * build, run with its per-thread cache off and one arena so that a freed
 * block stops counting at once, see main(); the sanitizer allocator's own
 * count under ASan and TSan) are measured after a
 * warm-up context went through the same operations and was dropped; then a
 * context goes through them again - commits of one key and of many,
 * deletes, points made and pushed out, restores of points and of versions
 * in history, tracker syncs, versions and iterators held by the test while
 * history cuts them, a diff of two held versions, reference-free reads
 * from another thread - and is dropped. Once every deferred free has run
 * (state_drain), the
 * heap must hold as many bytes as before, within 256 (see test_depth):
 * a node, leaf or version leaked per cut is thousands of bytes too many;
 * one freed while something still held it is freed twice (the allocator
 * aborts, ASan reports it) or shows as too few.
 * While it runs, every held version keeps its content (a checksum of its
 * pairs, taken when it was held, is the same when it is let go), and the
 * history lists history_depth consecutive versions.
 *
 * Nothing here depends on timing: whether a cut version's trie is freed at
 * once or after a grace period, by this thread or the call_rcu worker,
 * every path ends before the count is taken.
 */
#include "testutil.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "store.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ACCT_SANITIZER 1
#endif
#if __has_feature(thread_sanitizer)
#define ACCT_SANITIZER 1
#define ACCT_TSAN      1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ACCT_SANITIZER 1
#endif
#if defined(__SANITIZE_THREAD__)
#define ACCT_SANITIZER 1
#define ACCT_TSAN      1
#endif

#ifdef ACCT_SANITIZER
#include <sanitizer/allocator_interface.h>
static size_t heap_bytes(void)
{
	return __sanitizer_get_current_allocated_bytes();
}
#else
static size_t heap_bytes(void)
{
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}
#endif

#define KEYS   24
#define HOLD   4
#define ROUNDS 30

/* Live heap bytes once every deferred free of this process has run: the
 * caller's open batch, the grace periods and the worker's callbacks
 * (state_drain), and this thread's block cache. */
static size_t settled_bytes(void)
{
	state_drain();
	state_drain(); /* versions the first drain's callbacks released in turn */
	return heap_bytes();
}

static ctx_store *open_depth(size_t depth)
{
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = depth;
	o.max_points = 3;
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	return s;
}

/* An order-independent checksum of a version's pairs. */
static uint64_t state_sum(const ctx_state *st)
{
	ctx_iter_stack it;
	assert_ok(ctx_iter_init(&it, st));
	const void *k, *v;
	size_t kl, vl;
	uint64_t sum = 0;
	while (ctx_iter_stack_next(&it, &k, &kl, &v, &vl)) {
		uint64_t h = 1469598103934665603ull;
		for (size_t i = 0; i < kl; i++)
			h = (h ^ ((const unsigned char *)k)[i]) * 1099511628211ull;
		for (size_t i = 0; i < vl; i++)
			h = (h ^ ((const unsigned char *)v)[i]) * 1099511628211ull;
		sum += h;
	}
	return sum;
}

typedef struct held {
	ctx_state *st;
	uint64_t sum;
	ctx_iter *it; /* an iterator holding st too */
} held;

static void hold(held *h, ctx_state *st)
{
	h->st = st;
	h->sum = state_sum(st);
	assert_ok(ctx_iter_begin(st, &h->it));
}

static void let_go(held *h)
{
	if (!h->st)
		return;
	assert_true(state_sum(h->st) == h->sum);
	const void *k;
	size_t kl, n = 0;
	while (ctx_iter_next(h->it, &k, &kl, NULL, NULL))
		n++;
	assert_int_equal(n, ctx_state_count(h->st));
	ctx_iter_free(h->it);
	ctx_state_release(h->st);
	h->st = NULL;
}

/* A value of key k for round r: sizes from 1 to 400 bytes, so that leaves
 * both below and above HAMT_BORROW_SMALL are replaced (a borrowing node
 * lets go of small ones only). */
static size_t value_of(int r, int k, char *buf)
{
	size_t len = 1 + (size_t)((r * 37 + k * 11) % 400);
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)('a' + (r + k + (int)i) % 26);
	return len;
}

static void key_of(int k, char *buf)
{
	snprintf(buf, 16, "key%02d", k);
}

static void put(ctx_store *s, const char *id, int r, int k)
{
	char key[16], val[512];
	key_of(k, key);
	size_t len = value_of(r, k, val);
	assert_ok(ctx_put(s, id, key, strlen(key), val, len, NULL));
}

/* A transaction of many changes: not light, so the version it cuts goes
 * to the reclaimer (reclaim.c). */
static void big_txn(ctx_store *s, const char *id, int r)
{
	ctx_txn *t;
	char key[16], val[512];
	assert_ok(ctx_txn_begin(s, id, &t));
	for (int k = 0; k < KEYS; k++) {
		key_of(k, key);
		if ((k + r) % 5 == 0) {
			assert_ok(ctx_txn_del(t, key, strlen(key)));
		} else {
			size_t len = value_of(r + 1, k, val);
			assert_ok(ctx_txn_put(t, key, strlen(key), val, len));
		}
	}
	assert_ok(ctx_txn_meta_put(t, "m", 1, &r, sizeof(r)));
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

static void tracker_round(ctx_store *s, const char *id, int r)
{
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, id, NULL, &t));
	put(s, id, r + 7, 3); /* the tracker's base falls behind */
	char val[512];
	size_t len = value_of(r + 3, 5, val);
	assert_ok(ctx_tracker_put(t, "key05", 5, val, len));
	assert_ok(ctx_tracker_del(t, "key06", 5));
	assert_ok(ctx_tracker_sync(t, NULL));
	ctx_tracker_close(t);
}

/* History: increasing versions ending at the head, at most depth of them
 * besides the (at most 3) that points pin. */
static void check_history(ctx_store *s, const char *id, size_t depth)
{
	ctx_history_entry *h = NULL;
	size_t n = 0;
	ctx_state *head;
	assert_ok(ctx_history(s, id, &h, &n));
	assert_ok(ctx_get(s, id, &head));
	assert_true(n >= 1 && n <= depth + 3);
	for (size_t i = 1; i < n; i++)
		assert_true(h[i].version > h[i - 1].version);
	assert_int_equal(h[n - 1].version, ctx_state_version(head));
	ctx_state_release(head);
	free(h);
}

static void churn(ctx_store *s, const char *id, size_t depth)
{
	held hd[HOLD] = {0};
	ctx_state *head;
	char buf[512];
	size_t vlen;
	assert_ok(ctx_create(s, id));
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < 3 * KEYS; i++)
			put(s, id, r, (r * 7 + i * 5) % KEYS);
		/* A reference-free read: from now on a hidden version's trie
		 * waits for a grace period unless a later tick completed. */
		ctx_get_value(s, id, "key01", 5, buf, sizeof(buf), &vlen);
		assert_ok(ctx_get(s, id, &head));
		let_go(&hd[r % HOLD]);
		hold(&hd[r % HOLD], head);
		if (r % 3 == 0)
			assert_ok(ctx_point_create(s, id, "p", NULL));
		big_txn(s, id, r);
		char key[16];
		key_of(r % KEYS, key);
		ctx_del(s, id, key, strlen(key), NULL);
		uint64_t v = ctx_state_version(head);
		ctx_status st = ctx_restore(s, id, v, NULL);
		assert_true(st == CTX_OK || st == CTX_NOT_FOUND); /* cut already */
		if (r % 2)
			assert_ok(ctx_restore_latest(s, id, NULL));
		if (r % 4 == 1)
			tracker_round(s, id, r);
		if (r % 5 == 4) {
			ctx_diff *d;
			const held *a = &hd[(r + 1) % HOLD], *b = &hd[r % HOLD];
			if (a->st && b->st) {
				assert_ok(ctx_diff_states(a->st, b->st, &d));
				ctx_diff_free(d);
			}
		}
		check_history(s, id, depth);
	}
	for (int i = 0; i < HOLD; i++)
		let_go(&hd[i]);
}

/* A thread doing reference-free reads of the context in `id` (NULL: none)
 * all along: started before the first count and stopped after the last,
 * so that no thread starts or ends between them (glibc and liburcu free a
 * finished thread's bits at times of their own: +-64 bytes). */
typedef struct reader {
	ctx_store *s;
	_Atomic(const char *) id;
	atomic_bool stop;
} reader;

static void *read_loop(void *arg)
{
	reader *rd = arg;
	char buf[512], key[16];
	size_t vlen;
	for (unsigned i = 0; !atomic_load(&rd->stop); i++) {
		const char *id = atomic_load(&rd->id);
		key_of((int)(i % KEYS), key);
		if (id)
			ctx_get_value(rd->s, id, key, strlen(key), buf, sizeof(buf), &vlen);
	}
	return NULL;
}

/* One context through churn, and dropped, while rd reads it. */
static void one_life(ctx_store *s, reader *rd, const char *id, size_t depth)
{
	atomic_store(&rd->id, id);
	churn(s, id, depth);
	atomic_store(&rd->id, NULL);
	assert_ok(ctx_drop(s, id));
}

static void test_depth(size_t depth)
{
	ctx_store *s = open_depth(depth);
	reader rd = {s, NULL, false};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, read_loop, &rd), 0);
	/* Warm-up: whatever the process allocates once (liburcu's worker,
	 * this thread's batch home, the context table) is there before the
	 * count is taken. */
	one_life(s, &rd, "warm", depth);
	size_t before = settled_bytes();
	one_life(s, &rd, "ctx", depth);
	size_t after = settled_bytes();
	atomic_store(&rd.stop, true);
	pthread_join(th, NULL);
	if (after != before)
		print_error("history_depth %zu: %zu live bytes before, %zu after\n", depth, before,
		            after);
	/* Within 256 bytes, not exact: something outside the history (not
	 * found yet; the count moves by one 64-byte chunk, either way, from
	 * run to run; TSan's runtime by 48) is allocated or not at the moment
	 * of the count. A node, leaf or version leaked or freed twice per cut,
	 * per point or per restore is thousands of bytes over the ~3,000
	 * commits here (a base chain not released: +1,456 at depth 64, +7,456
	 * at depth 1). */
	assert_true(after <= before + 256 && before <= after + 256);
	ctx_close(s);
}

static void test_depth_1(void **unused)
{
	(void)unused;
	test_depth(1);
}

static void test_depth_4(void **unused)
{
	(void)unused;
	test_depth(4);
}

static void test_depth_64(void **unused)
{
	(void)unused;
	test_depth(64);
}

int main(int argc, char **argv)
{
	pool_use_slabs(false); /* mallinfo2 counts malloc's blocks only (pool.c) */
#ifndef ACCT_SANITIZER
	/* glibc keeps freed blocks in per-thread caches that still count as
	 * in use, and mallinfo2 counts only the main arena: run once more
	 * with the caches off and one arena, so its count is exact. */
	if (!getenv("CTX_ACCT_EXEC")) {
		setenv("CTX_ACCT_EXEC", "1", 1);
		setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=1", 1);
		execv("/proc/self/exe", argv);
		perror("execv");
		return 1;
	}
#endif
	(void)argc;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_depth_1),
	    cmocka_unit_test(test_depth_4),
	    cmocka_unit_test(test_depth_64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
