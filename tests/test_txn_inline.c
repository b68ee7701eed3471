/*
 * test_txn_inline.c - a transaction keeps its first operations inside its
 * own allocation (txn.c, TXN_INLINE_OPS) and a create's id beside them, and
 * moves the operations to an array of their own once they outgrow it
 * (round 11, r11-create).
 *
 * Whatever the number of operations (none, below, at and past the inline
 * room, several times past it), and whatever their shape (duplicate keys,
 * a delete after a put of the same key, deletes of absent keys, metadata),
 * a transaction commits exactly the operations it was given, in order: the
 * result equals a model of the same operations applied one by one, for a
 * create (ctx_txn_begin_create), a transaction on an existing context
 * (ctx_txn_begin) and one begun from a version read (ctx_txn_begin_state);
 * in memory and under every durability, where the store reopened from its
 * log (and from its final checkpoint) holds the same. An aborted
 * transaction of every size leaves nothing behind (the ASan build's leak
 * check).
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS 12 /* the key universe: few keys, so that ops repeat them */

/* The model: per key (data and metadata) its value, or absent. */
typedef struct model {
	bool has[2][NKEYS];
	char val[2][NKEYS][32];
} model;

static void key_name(char *buf, int k)
{
	snprintf(buf, 16, "k%02d", k);
}

/* Add n random operations to t and apply them to m. */
static void add_ops(ctx_txn *t, model *m, int n, uint64_t *rng)
{
	for (int i = 0; i < n; i++) {
		int k = (int)test_rand_below(rng, NKEYS);
		int meta = test_rand_below(rng, 6) == 0;
		bool del = test_rand_below(rng, 4) == 0;
		char key[16];
		key_name(key, k);
		if (del) {
			assert_ok(meta ? ctx_txn_meta_del(t, key, strlen(key))
			               : ctx_txn_del(t, key, strlen(key)));
			m->has[meta][k] = false;
		} else {
			char v[32];
			snprintf(v, sizeof(v), "v%d-%llu", i,
			         (unsigned long long)test_rand_below(rng, 1000));
			assert_ok(meta ? ctx_txn_meta_put(t, key, strlen(key), v, strlen(v))
			               : ctx_txn_put(t, key, strlen(key), v, strlen(v)));
			m->has[meta][k] = true;
			strcpy(m->val[meta][k], v);
		}
	}
}

/* The newest version of id holds exactly what m says. */
static void expect_model(ctx_store *s, const char *id, const model *m, const char *what)
{
	ctx_state *st;
	assert_ok(ctx_get_latest(s, id, &st));
	size_t count[2] = {0, 0};
	for (int meta = 0; meta < 2; meta++) {
		for (int k = 0; k < NKEYS; k++) {
			char key[16];
			key_name(key, k);
			const void *v = NULL;
			size_t vlen = 0;
			bool got = meta ? ctx_state_meta(st, key, strlen(key), &v, &vlen)
			                : ctx_state_lookup(st, key, strlen(key), &v, &vlen);
			if (got != m->has[meta][k] ||
			    (got && (vlen != strlen(m->val[meta][k]) ||
			             memcmp(v, m->val[meta][k], vlen) != 0)))
				fail_msg("%s: context %s, %s %s: got %s '%.*s', want %s '%s'", what,
				         id, meta ? "meta" : "key", key, got ? "present" : "absent",
				         got ? (int)vlen : 0, got ? (const char *)v : "",
				         m->has[meta][k] ? "present" : "absent",
				         m->has[meta][k] ? m->val[meta][k] : "");
			count[meta] += m->has[meta][k];
		}
	}
	assert_int_equal(ctx_state_count(st), count[0]);
	assert_int_equal(ctx_state_meta_count(st), count[1]);
	ctx_state_release(st);
}

/* Sizes around the inline room (8) and well past it. */
static const int sizes[] = {0, 1, 4, 7, 8, 9, 15, 16, 17, 33, 100};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* For every size: a create, a transaction on it, one begun from a version
 * read; each checked against the model. Returns the models (per size). */
static void run_sizes(ctx_store *s, uint64_t seed, model *models, const char *what)
{
	uint64_t rng = seed;
	for (size_t i = 0; i < NSIZES; i++) {
		char id[32];
		snprintf(id, sizeof(id), "c%zu", i);
		model *m = &models[i];
		memset(m, 0, sizeof(*m));

		ctx_txn *t;
		assert_ok(ctx_txn_begin_create(s, id, &t));
		add_ops(t, m, sizes[i], &rng);
		uint64_t v = 0;
		assert_ok(ctx_txn_commit(t, 0, &v));
		assert_int_equal(v, 1);
		expect_model(s, id, m, what);

		assert_ok(ctx_txn_begin(s, id, &t));
		add_ops(t, m, sizes[i], &rng);
		assert_ok(ctx_txn_commit(t, 1, &v));
		assert_int_equal(v, 2);
		expect_model(s, id, m, what);

		ctx_state *st;
		assert_ok(ctx_get_latest(s, id, &st));
		assert_ok(ctx_txn_begin_state(st, &t));
		ctx_state_release(st);
		add_ops(t, m, sizes[i], &rng);
		assert_ok(ctx_txn_commit(t, 2, &v));
		assert_int_equal(v, 3);
		expect_model(s, id, m, what);

		/* Aborted at every size: nothing committed, nothing leaked. */
		model scratch = *m;
		assert_ok(ctx_txn_begin(s, id, &t));
		add_ops(t, &scratch, sizes[i] + 1, &rng);
		ctx_txn_abort(t);
		assert_ok(ctx_txn_begin_create(s, "aborted", &t));
		add_ops(t, &scratch, sizes[i] + 1, &rng);
		ctx_txn_abort(t);
		expect_model(s, id, m, what);
	}
	assert_int_equal(ctx_get(s, "aborted", &(ctx_state *){NULL}), CTX_NOT_FOUND);
}

static void check_all(ctx_store *s, const model *models, const char *what)
{
	for (size_t i = 0; i < NSIZES; i++) {
		char id[32];
		snprintf(id, sizeof(id), "c%zu", i);
		expect_model(s, id, &models[i], what);
		assert_int_equal(test_version_of(s, id), 3);
	}
}

static void test_memory(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	model models[NSIZES];
	run_sizes(s, test_seed("txn_inline_memory", 11), models, "memory");
	check_all(s, models, "memory");
	ctx_close(s);
}

/* The same on a directory under durability d, then reopened: the log's
 * records of creates and commits of every size replay to the same content,
 * and so does the checkpoint written at close. */
static void run_durable(ctx_durability d, const char *name)
{
	char *dir = test_make_dir(name);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = d;
	o.batch_ms = 2;
	o.unsafe_no_sync = d == CTX_DURABILITY_NONE;
	ctx_store *s = test_open(&o);
	model models[NSIZES];
	run_sizes(s, test_seed(name, 12), models, name);
	test_close_keeping_log(s); /* no final checkpoint: replay the log */
	s = test_open(&o);
	check_all(s, models, name);
	test_reopen_same(&s, &o, true, name); /* from the close's checkpoint */
	check_all(s, models, name);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

static void test_always(void **unused)
{
	(void)unused;
	run_durable(CTX_DURABILITY_ALWAYS, "txn_inline_always");
}

static void test_batch(void **unused)
{
	(void)unused;
	run_durable(CTX_DURABILITY_BATCH, "txn_inline_batch");
}

static void test_none_with_dir(void **unused)
{
	(void)unused;
	run_durable(CTX_DURABILITY_NONE, "txn_inline_none");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_memory),
	    cmocka_unit_test(test_always),
	    cmocka_unit_test(test_batch),
	    cmocka_unit_test(test_none_with_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
