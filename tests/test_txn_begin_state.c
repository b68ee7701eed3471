/*
 * test_txn_begin_state.c - ctx_txn_begin_state (src/lib/txn.c) and
 * ctx_prefetch (src/lib/store.c), the two calls ctxd's write path uses to
 * avoid a second context-table walk per write and to overlap the table's
 * cache misses over a pipelined read.
 *
 * ctx_txn_begin_state starts a transaction on the context a version read
 * before belongs to: a guarded commit applies exactly on top of that
 * version, and a context dropped and created again under the same id (even
 * back at the same version number) is not that context any more.
 * ctx_prefetch is a hint: it changes nothing, takes no reference and
 * accepts ids of any kind; ctx_prefetch_keys also follows each key's path
 * in its context's trie (r8-ctxd), and is a hint as well.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Put k = v in context id; an absent one is created with it (version 1). */
static void put(ctx_store *s, const char *id, const char *k, const char *v)
{
	ctx_status st = ctx_put(s, id, k, strlen(k), v, strlen(v), NULL);
	if (st == CTX_NOT_FOUND) {
		ctx_txn *t;
		assert_ok(ctx_txn_begin_create(s, id, &t));
		assert_ok(ctx_txn_put(t, k, strlen(k), v, strlen(v)));
		st = ctx_txn_commit(t, 0, NULL);
	}
	assert_ok(st);
}

/* Whether the latest version of id holds k = want. */
static bool has(ctx_store *s, const char *id, const char *k, const char *want)
{
	ctx_state *st;
	if (ctx_get_latest(s, id, &st) != CTX_OK)
		return false;
	bool ok = test_state_has_str(st, k, want);
	ctx_state_release(st);
	return ok;
}

/* A memory store whose context h is at version 1 (a = 1), and that version
 * read (ctx_get_latest) into *base: the start of most tests here. */
static ctx_store *store_with_base(ctx_state **base)
{
	ctx_store *s = test_open_memory();
	put(s, "h", "a", "1");
	assert_ok(ctx_get_latest(s, "h", base));
	return s;
}

/* A guarded commit from the version read: applied, one version more. */
static void test_commit_from_state(void **unused)
{
	(void)unused;
	ctx_state *base;
	ctx_store *s = store_with_base(&base);
	ctx_txn *t;
	assert_ok(ctx_txn_begin_state(base, &t));
	assert_ok(ctx_txn_put(t, "b", 1, "2", 1));
	uint64_t v = 0;
	assert_ok(ctx_txn_commit(t, ctx_state_version(base), &v));
	assert_int_equal(v, ctx_state_version(base) + 1);
	assert_true(has(s, "h", "a", "1"));
	assert_true(has(s, "h", "b", "2"));
	ctx_state_release(base);
	ctx_close(s);
}

/* Another commit got in after the read: the guard sees it. */
static void test_conflict_after_read(void **unused)
{
	(void)unused;
	ctx_state *base;
	ctx_store *s = store_with_base(&base);
	put(s, "h", "a", "2");
	ctx_txn *t;
	assert_ok(ctx_txn_begin_state(base, &t));
	assert_ok(ctx_txn_put(t, "a", 1, "3", 1));
	assert_int_equal(ctx_txn_commit(t, ctx_state_version(base), NULL), CTX_CONFLICT);
	assert_true(has(s, "h", "a", "2"));
	ctx_state_release(base);
	ctx_close(s);
}

/* Dropped and created again at the same version number: a transaction by
 * id would apply to the new context (the guard cannot tell them apart);
 * one begun from the old version fails and changes nothing. */
static void test_dropped_and_recreated(void **unused)
{
	(void)unused;
	ctx_state *base;
	ctx_store *s = store_with_base(&base);
	assert_int_equal(ctx_state_version(base), 1);
	assert_ok(ctx_drop(s, "h"));
	ctx_txn *c; /* version 1 of a new context */
	assert_ok(ctx_txn_begin_create(s, "h", &c));
	assert_ok(ctx_txn_put(c, "new", 3, "y", 1));
	assert_ok(ctx_txn_commit(c, 0, NULL));
	ctx_state *now;
	assert_ok(ctx_get_latest(s, "h", &now));
	assert_int_equal(ctx_state_version(now), ctx_state_version(base));
	ctx_state_release(now);
	ctx_txn *t; /* begun after the new context exists, from the old version */
	assert_ok(ctx_txn_begin_state(base, &t));
	assert_ok(ctx_txn_put(t, "old", 3, "x", 1));
	assert_int_equal(ctx_txn_commit(t, ctx_state_version(base), NULL), CTX_NOT_FOUND);
	assert_false(has(s, "h", "old", "x"));
	assert_true(has(s, "h", "new", "y"));
	ctx_state_release(base);
	ctx_close(s);
}

/* Aborted without a commit, and the state released first: no leak (ASan),
 * the context still there. */
static void test_abort_and_release_order(void **unused)
{
	(void)unused;
	ctx_state *base;
	ctx_store *s = store_with_base(&base);
	ctx_txn *t;
	assert_ok(ctx_txn_begin_state(base, &t));
	ctx_state_release(base);
	assert_ok(ctx_txn_put(t, "b", 1, "2", 1));
	ctx_txn_abort(t);
	assert_true(has(s, "h", "a", "1"));
	assert_false(has(s, "h", "b", "2"));
	assert_ok(ctx_get_latest(s, "h", &base));
	assert_ok(ctx_txn_begin_state(base, &t));
	ctx_state_release(base);
	assert_ok(ctx_txn_put(t, "b", 1, "2", 1));
	assert_ok(ctx_txn_commit(t, 1, NULL)); /* the context outlives the state */
	assert_true(has(s, "h", "b", "2"));
	ctx_close(s);
}

static void test_begin_state_errors(void **unused)
{
	(void)unused;
	ctx_txn *t = NULL;
	assert_int_equal(ctx_txn_begin_state(NULL, &t), CTX_INVALID);
	assert_null(t);
	ctx_state *base;
	ctx_store *s = store_with_base(&base);
	assert_int_equal(ctx_txn_begin_state(base, NULL), CTX_INVALID);
	ctx_state_release(base);
	ctx_close(s);
}

/* A hint changes nothing: ids present, absent, empty, long, repeated, more
 * than one round; afterwards every context reads as before. */
static void test_prefetch_is_a_hint(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	enum { N = 100 };
	char names[N][16];
	const char *ids[N + 4];
	size_t lens[N + 4];
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "k%d", i);
		if (i % 2 == 0)
			put(s, names[i], "f", names[i]);
		ids[i] = names[i];
		lens[i] = strlen(names[i]);
	}
	static char longid[CTX_ID_MAX + 10];
	memset(longid, 'x', sizeof(longid));
	ids[N] = "";
	lens[N] = 0;
	ids[N + 1] = longid;
	lens[N + 1] = sizeof(longid); /* longer than any id: finds nothing */
	ids[N + 2] = "k0 and more";   /* not NUL-terminated at its length */
	lens[N + 2] = 2;
	ids[N + 3] = names[2];
	lens[N + 3] = strlen(names[2]);
	ctx_prefetch(s, ids, lens, N + 4);
	ctx_prefetch(s, ids, lens, 0);
	ctx_prefetch(NULL, ids, lens, N);
	ctx_prefetch(s, NULL, lens, N);
	assert_int_equal(ctx_count(s), N / 2);
	for (int i = 0; i < N; i++) {
		ctx_state *st;
		ctx_status got = ctx_get_latest(s, names[i], &st);
		assert_int_equal(got, i % 2 == 0 ? CTX_OK : CTX_NOT_FOUND);
		if (got == CTX_OK) {
			assert_int_equal(ctx_state_version(st), 1);
			ctx_state_release(st);
			assert_true(has(s, names[i], "f", names[i]));
		}
	}
	/* A dropped context: still a hint, the drop stands. */
	assert_ok(ctx_drop(s, "k0"));
	ctx_prefetch(s, ids, lens, 1);
	assert_false(has(s, "k0", "f", "k0"));
	ctx_close(s);
}

/* ctx_prefetch_keys is a hint too: contexts of 1 to 20,000 keys (tries of
 * one to four levels, pair nodes), keys present and absent, NULL keys,
 * empty keys, absent contexts, more ids than one round; afterwards every
 * key reads as before. */
static void test_prefetch_keys_is_a_hint(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	enum { N = 40 };
	char names[N][16], fields[N][16];
	const char *ids[N];
	const void *keys[N];
	size_t lens[N], klens[N];
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "p%d", i);
		ids[i] = names[i];
		lens[i] = strlen(names[i]);
		int nkeys = i % 5 == 4 ? 0 : i < 4 ? 20000 : i * 7 + 1; /* 0: absent */
		for (int k = 0; k < nkeys; k += 1000) {
			ctx_txn *t;
			ctx_status st = ctx_txn_begin(s, names[i], &t);
			if (st == CTX_NOT_FOUND)
				st = ctx_txn_begin_create(s, names[i], &t);
			assert_ok(st);
			for (int j = k; j < nkeys && j < k + 1000; j++) {
				char f[16];
				snprintf(f, sizeof(f), "f%d", j);
				assert_ok(ctx_txn_put(t, f, strlen(f), names[i], lens[i]));
			}
			assert_ok(ctx_txn_commit(t, 0, NULL));
		}
		snprintf(fields[i], sizeof(fields[i]), "f%d", i % 3 == 2 ? 999999 : i * 3);
		keys[i] = i % 6 == 5 ? NULL : fields[i];
		klens[i] = i % 11 == 10 ? 0 : strlen(fields[i]);
	}
	ctx_prefetch_keys(s, ids, lens, keys, klens, N);
	ctx_prefetch_keys(s, ids, lens, NULL, NULL, N);
	ctx_prefetch_keys(s, ids, lens, keys, NULL, N);
	ctx_prefetch_keys(NULL, ids, lens, keys, klens, N);
	ctx_prefetch_keys(s, ids, lens, keys, klens, 0);
	for (int i = 0; i < N; i++) {
		int nkeys = i % 5 == 4 ? 0 : i < 4 ? 20000 : i * 7 + 1;
		ctx_state *st;
		ctx_status got = ctx_get_latest(s, names[i], &st);
		assert_int_equal(got, nkeys ? CTX_OK : CTX_NOT_FOUND);
		if (got != CTX_OK)
			continue;
		assert_int_equal(ctx_state_count(st), (size_t)nkeys);
		ctx_state_release(st);
		char f[16];
		snprintf(f, sizeof(f), "f%d", nkeys - 1);
		assert_true(has(s, names[i], f, names[i]));
	}
	ctx_close(s);
}

/* ctx_prefetch under churn: one thread commits, drops and creates again
 * the contexts another thread keeps prefetching (reads without locks, and
 * a reference on each head version: ASan and TSan watch it). Afterwards
 * the store holds what the writer left, as a hint changes nothing. */
enum { CHURN_IDS = 16, CHURN_ROUNDS = 3000 };

typedef struct churn {
	ctx_store *s;
	atomic_bool done;
} churn;

static void *churn_writer(void *arg)
{
	churn *ch = arg;
	int rounds = (int)test_iters(CHURN_ROUNDS, 300);
	for (int r = 0; r < rounds; r++) {
		char id[16];
		snprintf(id, sizeof(id), "ch%d", r % CHURN_IDS);
		ctx_status st = ctx_put(ch->s, id, "f", 1, "v", 1, NULL);
		if (st == CTX_NOT_FOUND) {
			ctx_txn *t;
			T_CHECK_STATUS(ctx_txn_begin_create(ch->s, id, &t), CTX_OK);
			T_CHECK_STATUS(ctx_txn_put(t, "f", 1, "v", 1), CTX_OK);
			st = ctx_txn_commit(t, 0, NULL);
		}
		T_CHECK(st == CTX_OK);
		char k[16]; /* more keys: a trie a few levels deep */
		snprintf(k, sizeof(k), "g%d", r % 97);
		T_CHECK_STATUS(ctx_put(ch->s, id, k, strlen(k), "w", 1, NULL), CTX_OK);
		if (r % 7 == 3)
			T_CHECK_STATUS(ctx_drop(ch->s, id), CTX_OK);
	}
	atomic_store(&ch->done, true);
	return NULL;
}

static void *churn_prefetcher(void *arg)
{
	churn *ch = arg;
	char names[CHURN_IDS][16];
	const char *ids[CHURN_IDS];
	size_t lens[CHURN_IDS];
	for (int i = 0; i < CHURN_IDS; i++) {
		snprintf(names[i], sizeof(names[i]), "ch%d", i);
		ids[i] = names[i];
		lens[i] = strlen(names[i]);
	}
	const void *keys[CHURN_IDS];
	size_t klens[CHURN_IDS];
	char knames[CHURN_IDS][16];
	for (int i = 0; i < CHURN_IDS; i++) {
		snprintf(knames[i], sizeof(knames[i]), "g%d", i * 5);
		keys[i] = i % 4 == 3 ? NULL : knames[i];
		klens[i] = strlen(knames[i]);
	}
	for (unsigned n = 0; !atomic_load(&ch->done); n++)
		if (n % 2)
			ctx_prefetch_keys(ch->s, ids, lens, keys, klens, CHURN_IDS);
		else
			ctx_prefetch(ch->s, ids, lens, CHURN_IDS);
	return NULL;
}

static void test_prefetch_under_churn(void **unused)
{
	(void)unused;
	reset_failures();
	churn ch = {.s = test_open_memory()};
	pthread_t w, p;
	assert_int_equal(pthread_create(&p, NULL, churn_prefetcher, &ch), 0);
	assert_int_equal(pthread_create(&w, NULL, churn_writer, &ch), 0);
	pthread_join(w, NULL);
	pthread_join(p, NULL);
	assert_no_thread_failures();
	int rounds = (int)test_iters(CHURN_ROUNDS, 300);
	for (int i = 0; i < CHURN_IDS; i++) { /* the writer's last step on each id */
		char id[16];
		snprintf(id, sizeof(id), "ch%d", i);
		int last = -1;
		for (int r = 0; r < rounds; r++)
			if (r % CHURN_IDS == i)
				last = r;
		bool dropped = last >= 0 && last % 7 == 3;
		ctx_state *st;
		ctx_status got = ctx_get_latest(ch.s, id, &st);
		assert_int_equal(got, dropped || last < 0 ? CTX_NOT_FOUND : CTX_OK);
		if (got == CTX_OK)
			ctx_state_release(st);
	}
	ctx_close(ch.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_commit_from_state),
	    cmocka_unit_test(test_conflict_after_read),
	    cmocka_unit_test(test_dropped_and_recreated),
	    cmocka_unit_test(test_abort_and_release_order),
	    cmocka_unit_test(test_begin_state_errors),
	    cmocka_unit_test(test_prefetch_is_a_hint),
	    cmocka_unit_test(test_prefetch_keys_is_a_hint),
	    cmocka_unit_test(test_prefetch_under_churn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
