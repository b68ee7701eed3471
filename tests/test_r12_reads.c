/*
 * test_r12_reads.c - the read path of round 12 (store.c read_id and
 * read_missing, hamt_cursor_fill, ctx_get_each).
 *
 *   - A read checks the bytes of its id only when the lookup misses: every
 *     read function still answers CTX_INVALID for an id with a control byte
 *     (also one that is a context's id plus a control byte, or whose hash
 *     lands on a context's slot), NULL, empty or longer than CTX_ID_MAX, and
 *     CTX_NOT_FOUND for a valid id no context has; an id of CTX_ID_MAX bytes
 *     is found. Without the check in read_missing the control-byte ids get
 *     CTX_NOT_FOUND and this fails.
 *   - hamt_cursor_fill gives the leaves in hamt_cursor_next's order for any
 *     batch size, maps of every size and shape (pair nodes, deeper nodes,
 *     collision nodes: forced hashes), started by hamt_cursor_init or
 *     hamt_cursor_start, and returns fewer than asked only at the end of the
 *     walk (ctx_get_each stops on a short batch).
 *   - ctx_get_each over maps of 0..80 keys visits every pair once, and
 *     stops when told.
 *   - A context dropped and created again under the same id: a read never
 *     returns the old context's pairs, alone or while one thread drops and
 *     re-creates the context (each incarnation's 16 values carry its
 *     generation) and others read it with every read function: each read
 *     sees one generation, never an older one than a read before it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hamt.h"
#include "testutil.h"

/* ---- ids ------------------------------------------------------------------- */

static bool count_pairs(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*(size_t *)arg)++;
	return true;
}

/* Every read function on id: all must give want. */
static void expect_reads(ctx_store *s, const char *id, ctx_status want)
{
	ctx_state *st = NULL;
	char buf[16];
	size_t vlen = 0, n = 0;
	assert_int_equal(ctx_get(s, id, &st), want);
	if (st)
		ctx_state_release(st);
	st = NULL;
	assert_int_equal(ctx_get_latest(s, id, &st), want);
	if (st)
		ctx_state_release(st);
	ctx_status got = ctx_get_value(s, id, "k", 1, buf, sizeof(buf), &vlen);
	assert_int_equal(got, want);
	assert_int_equal(ctx_get_each(s, id, count_pairs, &n), want);
	if (want != CTX_OK)
		assert_int_equal(n, 0);
}

/* Every id hashes to H, so a bad id's probe meets the contexts' slots and
 * their ids are compared with it. */
static const uint64_t H = 0x5151515151515151ull;
static uint64_t one_hash(const void *key, size_t klen, uint64_t real)
{
	(void)key;
	(void)klen;
	(void)real;
	return H;
}

static void test_bad_ids_after_lookup(void **unused)
{
	(void)unused;
	for (int forced = 0; forced < 2; forced++) {
		ctx_store *s = test_open_memory();
		if (forced)
			hamt_test_hash_hook(one_hash);
		const char *good[] = {"a", "ab", "a b", "ctx-0001"};
		for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
			assert_ok(ctx_create(s, good[i]));
			test_put_str(s, good[i], "k", "v");
		}
		char longest[CTX_ID_MAX + 2];
		memset(longest, 'x', CTX_ID_MAX);
		longest[CTX_ID_MAX] = 0;
		assert_ok(ctx_create(s, longest));
		test_put_str(s, longest, "k", "v");

		for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
			expect_reads(s, good[i], CTX_OK);
		expect_reads(s, longest, CTX_OK);

		const char *bad[] = {"a\x01", "a\tb",       "\x7f",  "ab\x1f",
		                     "\n",    "ctx-0001\r", "a\177b"};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			expect_reads(s, bad[i], CTX_INVALID);
		expect_reads(s, "", CTX_INVALID);
		expect_reads(s, NULL, CTX_INVALID);
		longest[CTX_ID_MAX] = 'x';
		longest[CTX_ID_MAX + 1] = 0;
		expect_reads(s, longest, CTX_INVALID);
		expect_reads(s, "b", CTX_NOT_FOUND);
		expect_reads(s, "a  b", CTX_NOT_FOUND);
		expect_reads(s, "\x80\xff", CTX_NOT_FOUND); /* high bytes are allowed */

		/* A NULL store is CTX_INVALID whatever the id. */
		ctx_state *st;
		size_t vlen, n = 0;
		char buf[4];
		assert_int_equal(ctx_get(NULL, "a", &st), CTX_INVALID);
		assert_int_equal(ctx_get_latest(NULL, "a", &st), CTX_INVALID);
		assert_int_equal(ctx_get_value(NULL, "a", "k", 1, buf, 4, &vlen), CTX_INVALID);
		assert_int_equal(ctx_get_each(NULL, "a", count_pairs, &n), CTX_INVALID);
		/* A bad id with a bad argument: still CTX_INVALID. */
		assert_int_equal(ctx_get_each(s, "a\x01", NULL, NULL), CTX_INVALID);
		assert_int_equal(ctx_get_value(s, "a\x01", "k", 1, buf, 4, NULL), CTX_INVALID);
		ctx_close(s);
		hamt_test_hash_hook(NULL);
	}
}

/* ---- hamt_cursor_fill ------------------------------------------------------ */

static int hash_mode;

/* Keys "f<i>": mode 1 puts groups of 4 keys on one level-0 slot (pair
 * nodes and deeper nodes), mode 2 gives groups of 3 one full hash
 * (collision nodes), mode 0 the real hash. */
static uint64_t shaped(const void *key, size_t klen, uint64_t real)
{
	const char *k = key;
	if (hash_mode == 0 || klen < 2 || k[0] != 'f')
		return real;
	unsigned i = (unsigned)strtoul(k + 1, NULL, 10);
	if (hash_mode == 1)
		return (real & ~0x1full) | ((i / 4) & 0x1f);
	return 0x1234567890abcdefull + i / 3;
}

static void check_fill(const hamt *m, size_t max, bool start)
{
	const hamt_leaf *want[512], *got[512];
	size_t nwant = 0, ngot = 0;
	hamt_cursor c;
	hamt_cursor_init(&c, m);
	for (const hamt_leaf *l; (l = hamt_cursor_next(&c));)
		want[nwant++] = l;
	assert_int_equal(nwant, m->count);
	if (start)
		hamt_cursor_start(&c, m);
	else
		hamt_cursor_init(&c, m);
	for (;;) {
		size_t k = hamt_cursor_fill(&c, got + ngot, max);
		assert_true(k <= max);
		ngot += k;
		if (k < max) {
			/* Short: the walk is over. */
			assert_int_equal(hamt_cursor_fill(&c, got + ngot, max), 0);
			break;
		}
	}
	assert_int_equal(ngot, nwant);
	for (size_t i = 0; i < nwant; i++)
		assert_ptr_equal(got[i], want[i]);
}

static void test_fill_batches(void **unused)
{
	(void)unused;
	hamt_test_hash_hook(shaped);
	for (hash_mode = 0; hash_mode < 3; hash_mode++) {
		hamt m = {0};
		for (int n = 0; n <= 90; n++) {
			const size_t maxes[] = {1, 2, 3, 4, 5, 7, 16, 32, 64};
			for (size_t j = 0; j < sizeof(maxes) / sizeof(maxes[0]); j++) {
				check_fill(&m, maxes[j], false);
				check_fill(&m, maxes[j], true);
			}
			char key[16];
			int kl = snprintf(key, sizeof(key), "f%d", n);
			hamt_leaf *l = hamt_leaf_new(key, (size_t)kl, "v", 1);
			assert_non_null(l);
			bool changed;
			assert_ok(hamt_put(&m, l, hamt_edit_token(), &changed));
			assert_true(changed);
		}
		hamt_release(&m);
	}
	hash_mode = 0;
	hamt_test_hash_hook(NULL);
}

/* ---- ctx_get_each over small maps ----------------------------------------- */

typedef struct seen_set {
	unsigned char seen[128];
	size_t calls, stop_after;
	bool bad;
} seen_set;

static bool mark_pair(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	seen_set *s = arg;
	char k[16];
	if (klen >= sizeof(k) || vlen != klen || memcmp(key, val, klen) != 0) {
		s->bad = true;
		return false;
	}
	memcpy(k, key, klen);
	k[klen] = 0;
	unsigned i = (unsigned)atoi(k + 1);
	if (i >= 128 || s->seen[i]++)
		s->bad = true;
	return ++s->calls != s->stop_after;
}

static void test_each_all_sizes(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "m"));
	for (int n = 0; n <= 80; n++) {
		seen_set set = {.stop_after = 0};
		assert_ok(ctx_get_each(s, "m", mark_pair, &set));
		assert_false(set.bad);
		assert_int_equal(set.calls, (size_t)n);
		for (int i = 0; i < n; i++)
			assert_int_equal(set.seen[i], 1);
		if (n > 0) {
			for (size_t stop = 1; stop <= (size_t)n; stop += 7) {
				seen_set part = {.stop_after = stop};
				assert_ok(ctx_get_each(s, "m", mark_pair, &part));
				assert_false(part.bad);
				assert_int_equal(part.calls, stop);
			}
		}
		char key[16];
		int kl = snprintf(key, sizeof(key), "p%d", n);
		assert_ok(ctx_put(s, "m", key, (size_t)kl, key, (size_t)kl, NULL));
	}
	ctx_close(s);
}

/* ---- a context dropped and created again ----------------------------------- */

#define PAIRS 16

/* Create id with PAIRS keys, all of value "g<gen>" (one commit). */
static ctx_status create_gen(ctx_store *s, const char *id, unsigned gen)
{
	ctx_txn *t;
	ctx_status st = ctx_txn_begin_create(s, id, &t);
	if (st != CTX_OK)
		return st;
	char val[16];
	int vl = snprintf(val, sizeof(val), "g%u", gen);
	for (int i = 0; i < PAIRS; i++) {
		char key[8];
		int kl = snprintf(key, sizeof(key), "k%d", i);
		if ((st = ctx_txn_put(t, key, (size_t)kl, val, (size_t)vl)) != CTX_OK) {
			ctx_txn_abort(t);
			return st;
		}
	}
	return ctx_txn_commit(t, 0, NULL);
}

static long gen_of(const void *val, size_t vlen)
{
	char buf[16];
	if (vlen < 2 || vlen >= sizeof(buf) || ((const char *)val)[0] != 'g')
		return -1;
	memcpy(buf, val, vlen);
	buf[vlen] = 0;
	return atol(buf + 1);
}

typedef struct gen_seen {
	long gen; /* -2: none yet; -1: a bad value */
	size_t n;
} gen_seen;

static bool note_gen(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	(void)key;
	(void)klen;
	gen_seen *g = arg;
	long x = gen_of(val, vlen);
	if (g->gen == -2)
		g->gen = x;
	else if (g->gen != x)
		g->gen = -1;
	g->n++;
	return true;
}

static void test_recreated_alone(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	assert_ok(create_gen(s, "r", 1));
	ctx_state *old;
	assert_ok(ctx_get(s, "r", &old));
	assert_ok(ctx_drop(s, "r"));
	expect_reads(s, "r", CTX_NOT_FOUND);
	/* The new incarnation has one pair, of another key. */
	assert_ok(ctx_create(s, "r"));
	test_put_str(s, "r", "new", "g2");
	char buf[16];
	size_t vlen = 0;
	assert_int_equal(ctx_get_value(s, "r", "k0", 2, buf, sizeof(buf), &vlen), CTX_NOT_FOUND);
	assert_ok(ctx_get_value(s, "r", "new", 3, buf, sizeof(buf), &vlen));
	assert_int_equal(gen_of(buf, vlen), 2);
	gen_seen g = {-2, 0};
	assert_ok(ctx_get_each(s, "r", note_gen, &g));
	assert_int_equal(g.n, 1);
	assert_int_equal(g.gen, 2);
	ctx_state *st;
	assert_ok(ctx_get(s, "r", &st));
	assert_int_equal(ctx_state_count(st), 1);
	assert_int_equal(ctx_state_version(st), 2);
	ctx_state_release(st);
	/* The reference taken before the drop still reads the old one. */
	assert_int_equal(ctx_state_count(old), PAIRS);
	ctx_state_release(old);
	ctx_close(s);
}

typedef struct race {
	ctx_store *s;
	atomic_bool stop;
	atomic_long created; /* newest generation whose create returned */
} race;

typedef struct reader_arg {
	race *r;
	int reader;
} reader_arg;

static void *recreate_loop(void *arg)
{
	race *r = arg;
	long rounds = test_iters(3000, 200);
	for (long g = 2; g <= rounds; g++) {
		T_CHECK_STATUS(ctx_drop(r->s, "r"), CTX_OK);
		T_CHECK_STATUS(create_gen(r->s, "r", (unsigned)g), CTX_OK);
		atomic_store(&r->created, g);
	}
	atomic_store(&r->stop, true);
	return NULL;
}

static void *read_loop(void *arg)
{
	reader_arg *a = arg;
	race *r = a->r;
	long last = 0, reads = 0;
	while (!atomic_load(&r->stop) || reads < 100) {
		/* A generation whose create returned before the read began is
		 * the least the read may see, when it finds the context. */
		long floor = atomic_load(&r->created);
		long got = -2;
		switch ((reads++ + a->reader) % 4) {
		case 0: {
			gen_seen g = {-2, 0};
			ctx_status st = ctx_get_each(r->s, "r", note_gen, &g);
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
			if (st == CTX_OK) {
				T_CHECK(g.n == PAIRS);
				got = g.gen;
			}
			break;
		}
		case 1: {
			char buf[16], key[8];
			size_t vlen = 0;
			int kl = snprintf(key, sizeof(key), "k%ld", reads % PAIRS);
			ctx_status st =
			    ctx_get_value(r->s, "r", key, (size_t)kl, buf, sizeof(buf), &vlen);
			T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
			if (st == CTX_OK)
				got = gen_of(buf, vlen);
			break;
		}
		default: {
			ctx_state *st = NULL;
			ctx_status rc = ((reads + a->reader) % 4 == 3)
			                    ? ctx_get(r->s, "r", &st)
			                    : ctx_get_latest(r->s, "r", &st);
			T_CHECK(rc == CTX_OK || rc == CTX_NOT_FOUND);
			if (rc == CTX_OK) {
				T_CHECK(ctx_state_count(st) == PAIRS);
				T_CHECK(ctx_state_version(st) == 1);
				const void *v;
				size_t vl;
				T_CHECK(ctx_state_lookup(st, "k3", 2, &v, &vl));
				got = gen_of(v, vl);
				ctx_state_release(st);
			}
			break;
		}
		}
		if (got == -2)
			continue;
		T_CHECK(got >= 1);
		T_CHECK(got >= last);
		T_CHECK(got >= floor);
		if (got > last)
			last = got;
	}
	return NULL;
}

static void test_recreated_while_read(void **unused)
{
	(void)unused;
	reset_failures();
	ctx_store *s = test_open_memory();
	assert_ok(create_gen(s, "r", 1));
	race r = {.s = s, .created = 1};
	pthread_t w, rd[3];
	reader_arg ra[3];
	assert_int_equal(pthread_create(&w, NULL, recreate_loop, &r), 0);
	for (int i = 0; i < 3; i++) {
		ra[i] = (reader_arg){&r, i};
		assert_int_equal(pthread_create(&rd[i], NULL, read_loop, &ra[i]), 0);
	}
	pthread_join(w, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(rd[i], NULL);
	assert_no_thread_failures();
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_ids_after_lookup), cmocka_unit_test(test_fill_batches),
	    cmocka_unit_test(test_each_all_sizes),       cmocka_unit_test(test_recreated_alone),
	    cmocka_unit_test(test_recreated_while_read),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
