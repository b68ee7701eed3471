/*
 * test_api.c - every public function of include/ctx.h, its error paths and its
 * limits, single-threaded (see test_concurrency.c for the threaded contract).
 *
 * A rule the header states for every fallible call is checked throughout: on
 * failure nothing has changed and output parameters are left untouched.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL 0x5a5a5a5a5a5a5a5aull

/* ---- helpers ---------------------------------------------------------------- */

static ctx_store *open_with(size_t max_contexts, size_t max_key, size_t max_value)
{
	ctx_options o;
	ctx_options_init(&o);
	o.max_contexts = max_contexts;
	o.max_key_size = max_key;
	o.max_value_size = max_value;
	return test_open(&o);
}

static ctx_state *get_state(ctx_store *s, const char *id)
{
	ctx_state *st = NULL;
	assert_ok(ctx_get(s, id, &st));
	assert_non_null(st);
	return st;
}

static void expect_val(const ctx_state *st, const void *key, size_t klen, const void *val,
                       size_t vlen)
{
	const void *got = NULL;
	size_t glen = (size_t)-1;
	assert_true(ctx_state_lookup(st, key, klen, &got, &glen));
	assert_int_equal(glen, vlen);
	if (vlen)
		assert_memory_equal(got, val, vlen);
}

static void expect_str(const ctx_state *st, const char *key, const char *val)
{
	expect_val(st, key, strlen(key), val, strlen(val));
}

static void expect_absent(const ctx_state *st, const void *key, size_t klen)
{
	const void *got = (const void *)&got;
	size_t glen = 12345;
	assert_false(ctx_state_lookup(st, key, klen, &got, &glen));
	/* Outputs untouched on a miss. */
	assert_ptr_equal(got, (const void *)&got);
	assert_int_equal(glen, 12345);
}

static void expect_last_error(void)
{
	const char *e = ctx_last_error();
	assert_non_null(e);
	assert_true(strlen(e) > 0);
}

/* Snapshot of one context, to check that a failed call changed nothing. */
typedef struct snapshot {
	uint64_t version;
	size_t count;
	size_t bytes;
	size_t meta_count;
	ctx_state *st;
} snapshot;

static snapshot take_snapshot(ctx_store *s, const char *id)
{
	snapshot sn;
	sn.st = get_state(s, id);
	sn.version = ctx_state_version(sn.st);
	sn.count = ctx_state_count(sn.st);
	sn.bytes = ctx_state_bytes(sn.st);
	sn.meta_count = ctx_state_meta_count(sn.st);
	return sn;
}

/* The newest version of id is exactly the one of the snapshot: same version
 * and the same pairs. Releases the snapshot. */
static void expect_unchanged(ctx_store *s, const char *id, snapshot *sn)
{
	ctx_state *now = get_state(s, id);
	assert_int_equal(ctx_state_version(now), sn->version);
	assert_int_equal(ctx_state_count(now), sn->count);
	assert_int_equal(ctx_state_bytes(now), sn->bytes);
	assert_int_equal(ctx_state_meta_count(now), sn->meta_count);
	ctx_iter *it;
	assert_ok(ctx_iter_begin(sn->st, &it));
	const void *k, *v;
	size_t kl, vl, n = 0;
	while (ctx_iter_next(it, &k, &kl, &v, &vl)) {
		expect_val(now, k, kl, v, vl);
		n++;
	}
	ctx_iter_free(it);
	assert_int_equal(n, sn->count);
	ctx_state_release(now);
	ctx_state_release(sn->st);
	sn->st = NULL;
}

/* ---- errors ------------------------------------------------------------------- */

static void test_strerror_names_every_status(void **unused)
{
	const ctx_status all[] = {CTX_OK,    CTX_NOT_FOUND, CTX_EXISTS, CTX_CONFLICT,
	                          CTX_LIMIT, CTX_INVALID,   CTX_IO,     CTX_CORRUPT,
	                          CTX_NOMEM, CTX_CLOSED};
	const size_t n = sizeof(all) / sizeof(all[0]);
	for (size_t i = 0; i < n; i++) {
		const char *name = ctx_strerror(all[i]);
		assert_non_null(name);
		assert_true(strlen(name) > 0);
		assert_string_not_equal(name, "unknown status");
		/* Stable: the same pointer or at least the same text each time. */
		assert_string_equal(name, ctx_strerror(all[i]));
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(name, ctx_strerror(all[j]));
	}
	assert_non_null(strstr(ctx_strerror(CTX_NOT_FOUND), "not found"));
	assert_non_null(strstr(ctx_strerror(CTX_CONFLICT), "conflict"));

	assert_string_equal(ctx_strerror((ctx_status)(CTX_CLOSED + 1)), "unknown status");
	assert_string_equal(ctx_strerror((ctx_status)999), "unknown status");
	assert_string_equal(ctx_strerror((ctx_status)-1), "unknown status");
}

static void *last_error_fresh_thread(void *arg)
{
	char *out = arg;
	/* A thread that never failed has an empty message. */
	snprintf(out, 256, "%s", ctx_last_error());
	/* Then fail here: that must not touch the main thread's message. */
	ctx_store *s = NULL;
	ctx_options o;
	ctx_options_init(&o);
	o.max_key_size = (size_t)1 << 40;
	if (ctx_open(&o, &s) != CTX_INVALID)
		snprintf(out, 256, "ctx_open accepted max_key_size 2^40");
	return NULL;
}

static void test_last_error_per_thread(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_int_equal(ctx_create(s, ""), CTX_INVALID);
	expect_last_error();

	char big[70000];
	memset(big, 'k', sizeof(big));
	assert_ok(ctx_create(s, "a"));
	assert_int_equal(ctx_put(s, "a", big, sizeof(big), "v", 1, NULL), CTX_INVALID);
	expect_last_error();
	char saved[512];
	snprintf(saved, sizeof(saved), "%s", ctx_last_error());
	/* The detail says which argument was wrong. */
	assert_non_null(strstr(saved, "key"));

	char from_thread[256] = "not run";
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, last_error_fresh_thread, from_thread), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_string_equal(from_thread, "");
	assert_string_equal(ctx_last_error(), saved);

	/* Different failures give different details. */
	assert_int_equal(ctx_get(s, "missing", &(ctx_state *){NULL}), CTX_NOT_FOUND);
	expect_last_error();
	assert_string_not_equal(ctx_last_error(), saved);
	ctx_close(s);
}

/* ---- options and opening ---------------------------------------------------- */

static void test_options_init_defaults(void **unused)
{
	ctx_options o;
	memset(&o, 0xab, sizeof(o));
	ctx_options_init(&o);
	assert_null(o.dir);
	assert_int_equal(o.durability, CTX_DURABILITY_ALWAYS);
	assert_false(o.unsafe_no_sync);
	/* Limits are "0 = default" or the default itself. */
	assert_true(o.max_contexts == 0 || o.max_contexts == CTX_DEFAULT_MAX_CONTEXTS);
	assert_true(o.max_key_size == 0 || o.max_key_size == CTX_DEFAULT_MAX_KEY_SIZE);
	assert_true(o.max_value_size == 0 || o.max_value_size == CTX_DEFAULT_MAX_VALUE_SIZE);
	assert_true(o.batch_ms == 0 || o.batch_ms == 10);
	assert_true(o.checkpoint_bytes == 0 || o.checkpoint_bytes == (size_t)64 << 20);

	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	/* The default limits are in force. */
	assert_ok(ctx_create(s, "a"));
	char *key = malloc(CTX_DEFAULT_MAX_KEY_SIZE + 1);
	assert_non_null(key);
	memset(key, 'k', CTX_DEFAULT_MAX_KEY_SIZE + 1);
	assert_ok(ctx_put(s, "a", key, CTX_DEFAULT_MAX_KEY_SIZE, "", 0, NULL));
	assert_int_equal(ctx_put(s, "a", key, CTX_DEFAULT_MAX_KEY_SIZE + 1, "", 0, NULL),
	                 CTX_INVALID);
	free(key);
	ctx_close(s);
}

static void test_open_arguments(void **unused)
{
	ctx_store *s = NULL;
	assert_ok(ctx_open(NULL, &s));
	assert_non_null(s);
	assert_int_equal(ctx_count(s), 0);
	ctx_close(s);

	assert_int_equal(ctx_open(NULL, NULL), CTX_INVALID);
	expect_last_error();
	ctx_options o;
	ctx_options_init(&o);
	assert_int_equal(ctx_open(&o, NULL), CTX_INVALID);

	ctx_close(NULL); /* no-op */
}

static void expect_open_fails(const ctx_options *o)
{
	ctx_store *s = (ctx_store *)(uintptr_t)SENTINEL;
	assert_int_equal(ctx_open(o, &s), CTX_INVALID);
	expect_last_error();
	assert_ptr_equal(s, (ctx_store *)(uintptr_t)SENTINEL);
}

static void expect_open_ok(const ctx_options *o)
{
	ctx_store *s = NULL;
	assert_ok(ctx_open(o, &s));
	assert_non_null(s);
	ctx_close(s);
}

static void test_open_limits(void **unused)
{
	/* See src/lib/store.c: max_key_size <= 16 MiB, max_value_size <= 1 GiB. */
	const size_t key_limit = (size_t)16 << 20, value_limit = (size_t)1 << 30;
	ctx_options o;

	ctx_options_init(&o);
	o.max_key_size = key_limit;
	expect_open_ok(&o);
	o.max_key_size = key_limit + 1;
	expect_open_fails(&o);
	o.max_key_size = SIZE_MAX;
	expect_open_fails(&o);

	ctx_options_init(&o);
	o.max_value_size = value_limit;
	expect_open_ok(&o);
	o.max_value_size = value_limit + 1;
	expect_open_fails(&o);
	o.max_value_size = SIZE_MAX;
	expect_open_fails(&o);

	ctx_options_init(&o);
	o.max_key_size = 1;
	o.max_value_size = 1;
	o.max_contexts = 1;
	expect_open_ok(&o);
}

static void test_open_durability_none_with_dir_needs_unsafe(void **unused)
{
	char *dir = test_make_dir("api-open");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_NONE;
	o.unsafe_no_sync = false;
	expect_open_fails(&o);
	test_remove_dir(dir);
	free(dir);
}

static void test_open_bad_durability(void **unused)
{
	ctx_options o;
	ctx_options_init(&o);
	o.durability = (ctx_durability)(CTX_DURABILITY_NONE + 5);
	expect_open_fails(&o);
}

static void test_open_dir_locked(void **unused)
{
	/* A data directory is held by one open store: a second open fails with
	 * CTX_IO and leaves *out alone; after close it opens again. */
	char *dir = test_make_dir("api-lock");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_NONE;
	o.unsafe_no_sync = true;
	ctx_store *a = NULL;
	assert_ok(ctx_open(&o, &a));
	assert_non_null(a);
	ctx_store *b = (ctx_store *)(uintptr_t)SENTINEL;
	assert_int_equal(ctx_open(&o, &b), CTX_IO);
	expect_last_error();
	assert_ptr_equal(b, (ctx_store *)(uintptr_t)SENTINEL);
	ctx_close(a);
	assert_ok(ctx_open(&o, &b));
	ctx_close(b);
	test_remove_dir(dir);
	free(dir);
}

/* ---- contexts ----------------------------------------------------------------- */

static void expect_fresh_context(ctx_store *s, const char *id)
{
	ctx_state *st = get_state(s, id);
	assert_string_equal(ctx_state_id(st), id);
	assert_int_equal(ctx_state_version(st), 1);
	assert_int_equal(ctx_state_count(st), 0);
	assert_int_equal(ctx_state_bytes(st), 0);
	assert_int_equal(ctx_state_meta_count(st), 0);
	ctx_state_release(st);
}

static void test_create_valid_ids(void **unused)
{
	ctx_store *s = test_open_memory();
	char id256[CTX_ID_MAX + 1];
	memset(id256, 'x', CTX_ID_MAX);
	id256[CTX_ID_MAX] = '\0';
	id256[0] = 'L';

	const char *ids[] = {"a",    "A",    "app/session:1", " ",   "~",           "with space",
	                     "\x80", "\xff", "caf\xc3\xa9",   id256, "\x20\x7e\x80"};
	const size_t n = sizeof(ids) / sizeof(ids[0]);
	for (size_t i = 0; i < n; i++) {
		assert_ok(ctx_create(s, ids[i]));
		assert_int_equal(ctx_count(s), i + 1);
	}
	for (size_t i = 0; i < n; i++)
		expect_fresh_context(s, ids[i]);

	ctx_state *st = get_state(s, id256);
	assert_int_equal(strlen(ctx_state_id(st)), CTX_ID_MAX);
	ctx_state_release(st);

	/* Ids are distinct byte strings: a prefix is another context. */
	assert_int_equal(ctx_get(s, "app/session:", &st), CTX_NOT_FOUND);
	ctx_close(s);
}

static void expect_bad_id(ctx_store *s, const char *id)
{
	size_t before = ctx_count(s);
	assert_int_equal(ctx_create(s, id), CTX_INVALID);
	expect_last_error();
	assert_int_equal(ctx_count(s), before);
	ctx_state *st = (ctx_state *)(uintptr_t)SENTINEL;
	assert_int_equal(ctx_get(s, id, &st), CTX_INVALID);
	assert_ptr_equal(st, (ctx_state *)(uintptr_t)SENTINEL);
	assert_int_equal(ctx_drop(s, id), CTX_INVALID);
	assert_int_equal(ctx_put(s, id, "k", 1, "v", 1, NULL), CTX_INVALID);
	assert_int_equal(ctx_del(s, id, "k", 1, NULL), CTX_INVALID);
	ctx_txn *t = (ctx_txn *)(uintptr_t)SENTINEL;
	assert_int_equal(ctx_txn_begin(s, id, &t), CTX_INVALID);
	assert_ptr_equal(t, (ctx_txn *)(uintptr_t)SENTINEL);
}

static void test_create_invalid_ids(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "keep"));
	expect_bad_id(s, NULL);
	expect_bad_id(s, "");

	char id257[CTX_ID_MAX + 2];
	memset(id257, 'x', CTX_ID_MAX + 1);
	id257[CTX_ID_MAX + 1] = '\0';
	expect_bad_id(s, id257);
	/* Much longer too. */
	char *huge = malloc(10000);
	assert_non_null(huge);
	memset(huge, 'y', 9999);
	huge[9999] = '\0';
	expect_bad_id(s, huge);
	free(huge);

	/* Every control byte, at the start, in the middle and at the end. */
	for (int c = 1; c < 0x80; c++) {
		if (c >= 0x20 && c != 0x7f)
			continue;
		char id[8];
		snprintf(id, sizeof(id), "%cab", c);
		expect_bad_id(s, id);
		snprintf(id, sizeof(id), "a%cb", c);
		expect_bad_id(s, id);
		snprintf(id, sizeof(id), "ab%c", c);
		expect_bad_id(s, id);
		snprintf(id, sizeof(id), "%c", c);
		expect_bad_id(s, id);
	}
	expect_bad_id(s, "\x01");
	expect_bad_id(s, "\x1f");
	expect_bad_id(s, "\x7f");

	/* NULL store. */
	assert_int_equal(ctx_create(NULL, "a"), CTX_INVALID);
	assert_int_equal(ctx_drop(NULL, "a"), CTX_INVALID);
	ctx_state *st = (ctx_state *)(uintptr_t)SENTINEL;
	assert_int_equal(ctx_get(NULL, "a", &st), CTX_INVALID);
	assert_ptr_equal(st, (ctx_state *)(uintptr_t)SENTINEL);

	assert_int_equal(ctx_count(s), 1);
	expect_fresh_context(s, "keep");
	ctx_close(s);
}

static void test_create_exists(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "v");
	snapshot sn = take_snapshot(s, "a");
	assert_int_equal(ctx_create(s, "a"), CTX_EXISTS);
	expect_last_error();
	assert_int_equal(ctx_count(s), 1);
	/* The existing context is untouched (not reset to version 1). */
	expect_unchanged(s, "a", &sn);
	ctx_close(s);
}

static void test_create_limit(void **unused)
{
	ctx_store *s = open_with(3, 0, 0);
	assert_ok(ctx_create(s, "a"));
	assert_ok(ctx_create(s, "b"));
	assert_ok(ctx_create(s, "c"));
	assert_int_equal(ctx_create(s, "d"), CTX_LIMIT);
	expect_last_error();
	assert_int_equal(ctx_count(s), 3);
	ctx_state *st;
	assert_int_equal(ctx_get(s, "d", &st), CTX_NOT_FOUND);

	/* Dropping frees a slot, once. */
	assert_ok(ctx_drop(s, "b"));
	assert_int_equal(ctx_count(s), 2);
	assert_ok(ctx_create(s, "d"));
	assert_int_equal(ctx_create(s, "e"), CTX_LIMIT);
	assert_int_equal(ctx_count(s), 3);
	/* A failed create (EXISTS, INVALID) does not use up a slot. */
	assert_ok(ctx_drop(s, "d"));
	assert_int_equal(ctx_create(s, "a"), CTX_EXISTS);
	assert_int_equal(ctx_create(s, ""), CTX_INVALID);
	assert_ok(ctx_create(s, "e"));
	assert_int_equal(ctx_count(s), 3);
	expect_fresh_context(s, "e");
	ctx_close(s);

	/* max_contexts 1. */
	s = open_with(1, 0, 0);
	assert_ok(ctx_create(s, "only"));
	assert_int_equal(ctx_create(s, "other"), CTX_LIMIT);
	assert_ok(ctx_drop(s, "only"));
	assert_ok(ctx_create(s, "other"));
	ctx_close(s);
}

static void test_drop(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_int_equal(ctx_drop(s, "nope"), CTX_NOT_FOUND);
	expect_last_error();

	assert_ok(ctx_create(s, "a"));
	assert_ok(ctx_create(s, "b"));
	test_put_str(s, "a", "k1", "v1");
	test_put_str(s, "a", "k2", "v2");
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "a", &t));
	assert_ok(ctx_txn_meta_put(t, "m", 1, "meta", 4));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	test_put_str(s, "b", "other", "context");

	ctx_state *old = get_state(s, "a");
	ctx_state *older = get_state(s, "a");
	uint64_t created = ctx_state_created_us(old);
	ctx_iter *it;
	assert_ok(ctx_iter_begin(old, &it));
	ctx_state_release(older);

	assert_ok(ctx_drop(s, "a"));
	assert_int_equal(ctx_count(s), 1);
	ctx_state *st = (ctx_state *)(uintptr_t)SENTINEL;
	assert_int_equal(ctx_get(s, "a", &st), CTX_NOT_FOUND);
	assert_ptr_equal(st, (ctx_state *)(uintptr_t)SENTINEL);
	assert_int_equal(ctx_drop(s, "a"), CTX_NOT_FOUND);
	assert_int_equal(ctx_put(s, "a", "k", 1, "v", 1, NULL), CTX_NOT_FOUND);
	assert_int_equal(ctx_del(s, "a", "k1", 2, NULL), CTX_NOT_FOUND);
	assert_int_equal(ctx_txn_begin(s, "a", &t), CTX_NOT_FOUND);

	/* The states obtained before the drop stay valid and readable. */
	assert_string_equal(ctx_state_id(old), "a");
	assert_int_equal(ctx_state_version(old), 4);
	assert_int_equal(ctx_state_count(old), 2);
	assert_int_equal(ctx_state_meta_count(old), 1);
	expect_str(old, "k1", "v1");
	expect_str(old, "k2", "v2");
	const void *mv;
	size_t ml;
	assert_true(ctx_state_meta(old, "m", 1, &mv, &ml));
	assert_int_equal(ml, 4);

	/* Re-create: version 1 again, empty, no metadata. */
	assert_ok(ctx_create(s, "a"));
	expect_fresh_context(s, "a");
	st = get_state(s, "a");
	assert_true(ctx_state_created_us(st) >= created);
	expect_absent(st, "k1", 2);
	assert_false(ctx_state_meta(st, "m", 1, NULL, NULL));
	ctx_state_release(st);
	uint64_t v = 0;
	assert_ok(ctx_put(s, "a", "new", 3, "x", 1, &v));
	assert_int_equal(v, 2);

	/* The iterator taken before the drop still walks the old pairs. */
	size_t n = 0;
	const void *k, *val;
	size_t kl, vl;
	while (ctx_iter_next(it, &k, &kl, &val, &vl)) {
		assert_int_equal(kl, 2);
		assert_int_equal(vl, 2);
		assert_true(memcmp(k, "k1", 2) == 0 || memcmp(k, "k2", 2) == 0);
		n++;
	}
	assert_int_equal(n, 2);
	ctx_iter_free(it);
	/* The old view is still the old one after the re-create. */
	expect_str(old, "k1", "v1");
	expect_absent(old, "new", 3);
	ctx_state_release(old);

	/* The other context is unaffected. */
	st = get_state(s, "b");
	expect_str(st, "other", "context");
	assert_int_equal(ctx_state_version(st), 2);
	ctx_state_release(st);
	ctx_close(s);
}

static void test_get_errors(void **unused)
{
	ctx_store *s = test_open_memory();
	ctx_state *st = (ctx_state *)(uintptr_t)SENTINEL;
	assert_int_equal(ctx_get(s, "none", &st), CTX_NOT_FOUND);
	expect_last_error();
	assert_ptr_equal(st, (ctx_state *)(uintptr_t)SENTINEL);
	assert_ok(ctx_create(s, "a"));
	assert_int_equal(ctx_get(s, "a", NULL), CTX_INVALID);
	assert_int_equal(ctx_get(s, NULL, &st), CTX_INVALID);
	assert_int_equal(ctx_get(s, "", &st), CTX_INVALID);
	assert_ptr_equal(st, (ctx_state *)(uintptr_t)SENTINEL);
	/* Ids are case sensitive. */
	assert_int_equal(ctx_get(s, "A", &st), CTX_NOT_FOUND);
	ctx_close(s);
}

static void test_count(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_int_equal(ctx_count(s), 0);
	char id[32];
	for (int i = 0; i < 100; i++) {
		snprintf(id, sizeof(id), "ctx%d", i);
		assert_ok(ctx_create(s, id));
		assert_int_equal(ctx_count(s), (size_t)i + 1);
	}
	for (int i = 0; i < 100; i += 2) {
		snprintf(id, sizeof(id), "ctx%d", i);
		assert_ok(ctx_drop(s, id));
	}
	assert_int_equal(ctx_count(s), 50);
	/* Failed calls do not change it. */
	assert_int_equal(ctx_create(s, "ctx1"), CTX_EXISTS);
	assert_int_equal(ctx_drop(s, "ctx0"), CTX_NOT_FOUND);
	assert_int_equal(ctx_count(s), 50);
	ctx_close(s);
}

/* ---- listing ------------------------------------------------------------------ */

static void expect_list(ctx_store *s, const char *prefix, const char *after, size_t limit,
                        const char *const *want, size_t nwant)
{
	ctx_list l = {0};
	assert_ok(ctx_list_ids(s, prefix, after, limit, &l));
	assert_int_equal(l.count, nwant);
	for (size_t i = 0; i < nwant; i++)
		assert_string_equal(l.ids[i], want[i]);
	ctx_list_free(&l);
	assert_int_equal(l.count, 0);
	assert_null(l.ids);
}

static void test_list_ids_filters(void **unused)
{
	ctx_store *s = test_open_memory();
	ctx_list l = {0};
	/* Empty store. */
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	assert_int_equal(l.count, 0);
	ctx_list_free(&l);

	const char *ids[] = {"b", "ab", "a", "\xff", "abc", "ba", "A", "a b", "~"};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		assert_ok(ctx_create(s, ids[i]));
	/* Byte order: ' ' < 'A' < 'a' < 'b' < '~' < 0xff. */
	const char *all[] = {"A", "a", "a b", "ab", "abc", "b", "ba", "~", "\xff"};
	expect_list(s, NULL, NULL, 0, all, 9);
	expect_list(s, "", NULL, 0, all, 9);
	expect_list(s, NULL, NULL, 100, all, 9);
	expect_list(s, NULL, NULL, 3, all, 3);
	expect_list(s, NULL, NULL, 1, all, 1);

	const char *pa[] = {"a", "a b", "ab", "abc"};
	expect_list(s, "a", NULL, 0, pa, 4);
	expect_list(s, "ab", NULL, 0, pa + 2, 2);
	expect_list(s, "abc", NULL, 0, pa + 3, 1);
	expect_list(s, "abcd", NULL, 0, NULL, 0);
	expect_list(s, "zz", NULL, 0, NULL, 0);
	expect_list(s, "\xff", NULL, 0, all + 8, 1);

	/* after: strictly after, whether or not it is an id. */
	expect_list(s, NULL, "ab", 0, all + 4, 5);
	expect_list(s, NULL, "aa", 0, all + 3, 6);
	expect_list(s, NULL, "\xff", 0, NULL, 0);
	expect_list(s, NULL, "", 0, all, 9);
	expect_list(s, "a", "a", 0, pa + 1, 3);
	expect_list(s, "a", "a b", 1, pa + 2, 1);
	expect_list(s, "b", "a", 0, all + 5, 2);

	/* Dropped contexts disappear from the list. */
	assert_ok(ctx_drop(s, "ab"));
	const char *pa2[] = {"a", "a b", "abc"};
	expect_list(s, "a", NULL, 0, pa2, 3);

	/* Errors, output untouched. */
	l.count = 77;
	l.ids = (char **)(uintptr_t)SENTINEL;
	assert_int_equal(ctx_list_ids(NULL, NULL, NULL, 0, &l), CTX_INVALID);
	assert_int_equal(l.count, 77);
	assert_ptr_equal(l.ids, (char **)(uintptr_t)SENTINEL);
	assert_int_equal(ctx_list_ids(s, NULL, NULL, 0, NULL), CTX_INVALID);
	expect_last_error();

	ctx_list_free(NULL); /* no-op */
	ctx_close(s);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_list_ids_paging(void **unused)
{
	enum { N = 1000 };
	ctx_store *s = test_open_memory();
	uint64_t rng = 42;
	char *want[N];
	for (int i = 0; i < N; i++) {
		/* Varying lengths and shared prefixes. */
		char id[64];
		int len = snprintf(id, sizeof(id), "p%llu/%d",
		                   (unsigned long long)test_rand_below(&rng, 10), i);
		if (i % 3 == 0)
			snprintf(id + len, sizeof(id) - (size_t)len, "-%llx",
			         (unsigned long long)test_rand(&rng));
		want[i] = strdup(id);
		assert_ok(ctx_create(s, want[i]));
	}
	/* Some noise that the prefix must skip. */
	assert_ok(ctx_create(s, "other"));
	assert_ok(ctx_create(s, "P0"));
	qsort(want, N, sizeof(want[0]), cmp_str);

	/* Page through everything starting with "p" with limit 7. */
	size_t got = 0, pages = 0;
	char last[64] = "";
	for (;;) {
		ctx_list l;
		assert_ok(ctx_list_ids(s, "p", got ? last : NULL, 7, &l));
		if (l.count == 0) {
			ctx_list_free(&l);
			break;
		}
		assert_true(l.count <= 7);
		pages++;
		for (size_t i = 0; i < l.count; i++) {
			assert_true(got < N);
			assert_string_equal(l.ids[i], want[got]);
			if (got)
				assert_true(strcmp(l.ids[i], last) > 0);
			snprintf(last, sizeof(last), "%s", l.ids[i]);
			got++;
		}
		ctx_list_free(&l);
	}
	assert_int_equal(got, N);
	assert_int_equal(pages, (N + 6) / 7);

	/* limit 0 = all, one page. */
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	assert_int_equal(l.count, N + 2);
	for (size_t i = 1; i < l.count; i++)
		assert_true(strcmp(l.ids[i - 1], l.ids[i]) < 0);
	ctx_list_free(&l);

	/* A prefix that matches one group only. */
	assert_ok(ctx_list_ids(s, "p3/", NULL, 0, &l));
	size_t n3 = 0;
	for (int i = 0; i < N; i++)
		n3 += strncmp(want[i], "p3/", 3) == 0;
	assert_int_equal(l.count, n3);
	for (size_t i = 0; i < l.count; i++)
		assert_int_equal(strncmp(l.ids[i], "p3/", 3), 0);
	ctx_list_free(&l);

	for (int i = 0; i < N; i++)
		free(want[i]);
	ctx_close(s);
}

/* ---- states ------------------------------------------------------------------- */

static void test_state_accessors(void **unused)
{
	ctx_store *s = test_open_memory();
	uint64_t t0 = test_wall_us();
	assert_ok(ctx_create(s, "one"));
	assert_ok(ctx_create(s, "two"));
	uint64_t t1 = test_wall_us();

	ctx_state *a = get_state(s, "one"), *b = get_state(s, "two");
	assert_string_equal(ctx_state_id(a), "one");
	assert_string_equal(ctx_state_id(b), "two");
	assert_int_equal(ctx_state_version(a), 1);
	assert_int_equal(ctx_state_version(b), 1);
	assert_true(ctx_state_revision(a) > 0);
	assert_true(ctx_state_revision(b) > ctx_state_revision(a));
	uint64_t created = ctx_state_created_us(a);
	const uint64_t created_us[2] = {created, ctx_state_created_us(b)};
	assert_true(created_us[1] >= created_us[0]);
	/* Allow 1 s of clock slack each side. */
	assert_true(created + 1000000 >= t0 && created <= t1 + 1000000);
	assert_true(ctx_state_updated_us(a) >= created);
	assert_true(ctx_state_updated_us(a) <= t1 + 1000000);
	assert_int_equal(ctx_state_count(a), 0);
	assert_int_equal(ctx_state_bytes(a), 0);

	uint64_t last_rev = ctx_state_revision(b);
	ctx_state_release(a);
	ctx_state_release(b);

	/* Interleaved commits: versions +1 each per context, revisions strictly
	 * increasing across the store, bytes = sum of key+value lengths. */
	size_t expect_bytes[2] = {0, 0}, expect_count[2] = {0, 0};
	uint64_t expect_version[2] = {1, 1};
	const char *ids[2] = {"one", "two"};
	for (int i = 0; i < 50; i++) {
		int c = i % 3 == 0;
		char key[16], val[64];
		int kl = snprintf(key, sizeof(key), "key%d", i);
		int vl = snprintf(val, sizeof(val), "%0*d", i, i);
		uint64_t before = test_wall_us(), v = 0;
		assert_ok(ctx_put(s, ids[c], key, (size_t)kl, val, (size_t)vl, &v));
		uint64_t after = test_wall_us();
		expect_version[c]++;
		expect_count[c]++;
		expect_bytes[c] += (size_t)(kl + vl);
		assert_int_equal(v, expect_version[c]);

		ctx_state *st = get_state(s, ids[c]);
		assert_int_equal(ctx_state_version(st), expect_version[c]);
		assert_int_equal(ctx_state_count(st), expect_count[c]);
		assert_int_equal(ctx_state_bytes(st), expect_bytes[c]);
		assert_true(ctx_state_revision(st) > last_rev);
		last_rev = ctx_state_revision(st);
		assert_int_equal(ctx_state_created_us(st), created_us[c]);
		uint64_t upd = ctx_state_updated_us(st);
		assert_true(upd + 1000000 >= before && upd <= after + 1000000);
		assert_true(upd >= ctx_state_created_us(st));
		ctx_state_release(st);
	}

	/* Overwrite with a shorter and a longer value, delete: bytes follow. */
	test_put_str(s, "one", "x", "12345");
	ctx_state *st = get_state(s, "one");
	size_t base = ctx_state_bytes(st), cnt = ctx_state_count(st);
	ctx_state_release(st);
	test_put_str(s, "one", "x", "1");
	st = get_state(s, "one");
	assert_int_equal(ctx_state_bytes(st), base - 4);
	assert_int_equal(ctx_state_count(st), cnt);
	ctx_state_release(st);
	test_put_str(s, "one", "x", "1234567890");
	st = get_state(s, "one");
	assert_int_equal(ctx_state_bytes(st), base + 5);
	ctx_state_release(st);
	assert_ok(ctx_put(s, "one", "x", 1, NULL, 0, NULL));
	st = get_state(s, "one");
	assert_int_equal(ctx_state_bytes(st), base - 5);
	assert_int_equal(ctx_state_count(st), cnt);
	ctx_state_release(st);
	assert_ok(ctx_del(s, "one", "x", 1, NULL));
	st = get_state(s, "one");
	assert_int_equal(ctx_state_bytes(st), base - 6);
	assert_int_equal(ctx_state_count(st), cnt - 1);
	ctx_state_release(st);

	/* A drop does not reuse revisions: a new context gets a larger one. */
	assert_ok(ctx_drop(s, "two"));
	assert_ok(ctx_create(s, "two"));
	st = get_state(s, "two");
	assert_true(ctx_state_revision(st) > last_rev);
	assert_int_equal(ctx_state_version(st), 1);
	ctx_state_release(st);
	ctx_close(s);
}

static void test_state_created_us_constant(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	ctx_state *first = get_state(s, "c");
	for (int i = 0; i < 10; i++)
		test_put_str(s, "c", "k", "v");
	ctx_state *last = get_state(s, "c");
	assert_int_equal(ctx_state_created_us(first), ctx_state_created_us(last));
	assert_true(ctx_state_updated_us(last) >= ctx_state_updated_us(first) ||
	            /* wall clock stepped back: tolerate 1 s */
	            ctx_state_updated_us(last) + 1000000 >= ctx_state_updated_us(first));
	assert_int_equal(ctx_state_version(last), 11);
	assert_int_equal(ctx_state_count(last), 1);
	ctx_state_release(first);
	ctx_state_release(last);
	ctx_close(s);
}

static void test_lookup_binary(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "bin"));
	const unsigned char k1[] = {'a', 0, 'b'}, k2[] = {'a', 0, 'c'}, k3[] = {'a'}, k4[] = {0},
	                    k5[] = {0, 0}, k6[] = {0xff, 0x00, 0xfe};
	const unsigned char v1[] = {0, 1, 2, 0, 3}, v2[] = {0}, v6[] = {0xde, 0xad, 0, 0};
	assert_ok(ctx_put(s, "bin", k1, 3, v1, sizeof(v1), NULL));
	assert_ok(ctx_put(s, "bin", k2, 3, v2, sizeof(v2), NULL));
	assert_ok(ctx_put(s, "bin", k3, 1, "", 0, NULL));
	assert_ok(ctx_put(s, "bin", k4, 1, NULL, 0, NULL));
	assert_ok(ctx_put(s, "bin", k5, 2, v1, 1, NULL));
	assert_ok(ctx_put(s, "bin", k6, 3, v6, sizeof(v6), NULL));

	ctx_state *st = get_state(s, "bin");
	assert_int_equal(ctx_state_count(st), 6);
	assert_int_equal(ctx_state_bytes(st), 3 + 5 + 3 + 1 + 1 + 0 + 1 + 0 + 2 + 1 + 3 + 4);
	expect_val(st, k1, 3, v1, sizeof(v1));
	expect_val(st, k2, 3, v2, sizeof(v2));
	expect_val(st, k3, 1, "", 0);
	expect_val(st, k4, 1, "", 0);
	expect_val(st, k5, 2, v1, 1);
	expect_val(st, k6, 3, v6, sizeof(v6));

	/* Zero-length value: present, length 0, with NULL outputs too. */
	assert_true(ctx_state_lookup(st, k3, 1, NULL, NULL));
	size_t vl = 99;
	assert_true(ctx_state_lookup(st, k4, 1, NULL, &vl));
	assert_int_equal(vl, 0);
	const void *vp = NULL;
	assert_true(ctx_state_lookup(st, k1, 3, &vp, NULL));
	assert_memory_equal(vp, v1, sizeof(v1));

	/* Near misses: prefixes, extensions, other NUL positions. */
	const unsigned char m1[] = {'a', 0}, m2[] = {'a', 0, 'b', 0}, m3[] = {0, 'a', 'b'},
	                    m4[] = {0, 0, 0}, m5[] = {'A'};
	expect_absent(st, m1, 2);
	expect_absent(st, m2, 4);
	expect_absent(st, m3, 3);
	expect_absent(st, m4, 3);
	expect_absent(st, m5, 1);
	expect_absent(st, "missing", 7);
	expect_absent(st, k1, 2);
	/* Keys are never empty: the empty key is not found. */
	expect_absent(st, "", 0);
	expect_absent(st, NULL, 0);
	ctx_state_release(st);
	ctx_close(s);
}

static void test_state_retain_release(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "r"));
	test_put_str(s, "r", "k", "v");
	ctx_state *st = get_state(s, "r");
	ctx_state *again = ctx_state_retain(st);
	assert_ptr_equal(again, st);
	ctx_state *third = ctx_state_retain(again);
	assert_ptr_equal(third, st);
	ctx_state_release(st);
	ctx_state_release(again);
	/* Still one reference: still readable after further commits and a drop. */
	test_put_str(s, "r", "k", "changed");
	assert_ok(ctx_drop(s, "r"));
	expect_str(third, "k", "v");
	assert_int_equal(ctx_state_version(third), 2);
	ctx_state_release(third);
	ctx_state_release(NULL); /* no-op */

	/* Two gets of the same version give equal views. */
	assert_ok(ctx_create(s, "r"));
	ctx_state *x = get_state(s, "r"), *y = get_state(s, "r");
	assert_int_equal(ctx_state_version(x), ctx_state_version(y));
	assert_int_equal(ctx_state_revision(x), ctx_state_revision(y));
	ctx_state_release(x);
	ctx_state_release(y);
	ctx_close(s);
}

/* ---- metadata ----------------------------------------------------------------- */

static void test_metadata_separate_from_data(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "m"));
	test_put_str(s, "m", "shared", "data-value");
	test_put_str(s, "m", "dataonly", "d");

	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "m", &t));
	assert_ok(ctx_txn_meta_put(t, "shared", 6, "meta-value", 10));
	assert_ok(ctx_txn_meta_put(t, "owner", 5, "ada", 3));
	const unsigned char bin[] = {'n', 0, 'm'};
	assert_ok(ctx_txn_meta_put(t, bin, 3, "", 0));
	uint64_t v = 0;
	assert_ok(ctx_txn_commit(t, 0, &v));
	assert_int_equal(v, 4);

	ctx_state *st = get_state(s, "m");
	assert_int_equal(ctx_state_version(st), 4);
	assert_int_equal(ctx_state_meta_count(st), 3);
	/* Data map unchanged by metadata: count and bytes are the data's. */
	assert_int_equal(ctx_state_count(st), 2);
	assert_int_equal(ctx_state_bytes(st), 6 + 10 + 8 + 1);
	expect_str(st, "shared", "data-value");
	const void *mv = NULL;
	size_t ml = 0;
	assert_true(ctx_state_meta(st, "shared", 6, &mv, &ml));
	assert_int_equal(ml, 10);
	assert_memory_equal(mv, "meta-value", 10);
	assert_true(ctx_state_meta(st, "owner", 5, NULL, &ml));
	assert_int_equal(ml, 3);
	assert_true(ctx_state_meta(st, bin, 3, NULL, &ml));
	assert_int_equal(ml, 0);
	/* Neither map sees the other's names. */
	expect_absent(st, "owner", 5);
	assert_false(ctx_state_meta(st, "dataonly", 8, NULL, NULL));
	mv = (const void *)&mv;
	assert_false(ctx_state_meta(st, "nope", 4, &mv, NULL));
	assert_ptr_equal(mv, (const void *)&mv);

	/* The metadata iterator yields metadata only, each once. */
	ctx_iter *it;
	assert_ok(ctx_iter_meta_begin(st, &it));
	int seen_shared = 0, seen_owner = 0, seen_bin = 0, n = 0;
	const void *k, *val;
	size_t kl, vl;
	while (ctx_iter_next(it, &k, &kl, &val, &vl)) {
		n++;
		if (kl == 6 && memcmp(k, "shared", 6) == 0) {
			seen_shared++;
			assert_int_equal(vl, 10);
			assert_memory_equal(val, "meta-value", 10);
		} else if (kl == 5 && memcmp(k, "owner", 5) == 0) {
			seen_owner++;
		} else if (kl == 3 && memcmp(k, bin, 3) == 0) {
			seen_bin++;
			assert_int_equal(vl, 0);
		} else {
			fail_msg("unexpected metadata name of %zu bytes", kl);
		}
	}
	assert_int_equal(n, 3);
	assert_int_equal(seen_shared + seen_owner + seen_bin, 3);
	assert_int_equal(seen_shared * seen_owner * seen_bin, 1);
	ctx_iter_free(it);
	/* The data iterator yields data only. */
	assert_ok(ctx_iter_begin(st, &it));
	n = 0;
	while (ctx_iter_next(it, &k, &kl, &val, &vl)) {
		n++;
		assert_true((kl == 6 && memcmp(val, "data-value", 10) == 0) ||
		            (kl == 8 && memcmp(k, "dataonly", 8) == 0));
	}
	assert_int_equal(n, 2);
	ctx_iter_free(it);
	ctx_state_release(st);

	/* Data writes carry metadata forward; metadata deletes touch only it. */
	test_put_str(s, "m", "more", "x");
	assert_ok(ctx_txn_begin(s, "m", &t));
	assert_ok(ctx_txn_meta_del(t, "shared", 6));
	assert_ok(ctx_txn_meta_del(t, "never-there", 11)); /* absent: fine */
	assert_ok(ctx_txn_del(t, "dataonly", 8));
	assert_ok(ctx_txn_commit(t, 0, &v));
	assert_int_equal(v, 6);
	st = get_state(s, "m");
	assert_int_equal(ctx_state_meta_count(st), 2);
	assert_false(ctx_state_meta(st, "shared", 6, NULL, NULL));
	assert_true(ctx_state_meta(st, "owner", 5, NULL, NULL));
	expect_str(st, "shared", "data-value");
	expect_absent(st, "dataonly", 8);
	assert_int_equal(ctx_state_count(st), 2);
	ctx_state_release(st);

	/* A data delete of a name that exists only as metadata fails and
	 * commits nothing. */
	assert_int_equal(ctx_del(s, "m", "owner", 5, NULL), CTX_NOT_FOUND);
	assert_int_equal(test_version_of(s, "m"), 6);

	/* Empty metadata map iterates to nothing. */
	assert_ok(ctx_create(s, "empty"));
	st = get_state(s, "empty");
	assert_ok(ctx_iter_meta_begin(st, &it));
	assert_false(ctx_iter_next(it, &k, &kl, &val, &vl));
	ctx_iter_free(it);
	ctx_state_release(st);
	ctx_close(s);
}

static void test_metadata_limits(void **unused)
{
	ctx_store *s = open_with(0, 8, 16);
	assert_ok(ctx_create(s, "m"));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "m", &t));
	assert_int_equal(ctx_txn_meta_put(t, "", 0, "v", 1), CTX_INVALID);
	expect_last_error();
	assert_int_equal(ctx_txn_meta_put(t, NULL, 3, "v", 1), CTX_INVALID);
	assert_int_equal(ctx_txn_meta_put(t, "123456789", 9, "v", 1), CTX_INVALID);
	assert_int_equal(ctx_txn_meta_put(t, "n", 1, "12345678901234567", 17), CTX_INVALID);
	assert_int_equal(ctx_txn_meta_put(t, "n", 1, NULL, 1), CTX_INVALID);
	assert_int_equal(ctx_txn_meta_del(t, "", 0), CTX_INVALID);
	assert_int_equal(ctx_txn_meta_del(t, "123456789", 9), CTX_INVALID);
	assert_int_equal(ctx_txn_meta_put(NULL, "n", 1, "v", 1), CTX_INVALID);
	assert_int_equal(ctx_txn_meta_del(NULL, "n", 1), CTX_INVALID);
	/* Exactly at the limits, and the txn is still usable. */
	assert_ok(ctx_txn_meta_put(t, "12345678", 8, "1234567890123456", 16));
	assert_ok(ctx_txn_meta_put(t, "z", 1, NULL, 0));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	ctx_state *st = get_state(s, "m");
	assert_int_equal(ctx_state_meta_count(st), 2);
	size_t ml;
	assert_true(ctx_state_meta(st, "12345678", 8, NULL, &ml));
	assert_int_equal(ml, 16);
	ctx_state_release(st);
	ctx_close(s);
}

/* ---- iterators ---------------------------------------------------------------- */

static void test_iter_every_pair_once(void **unused)
{
	enum { N = 700 };
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "it"));
	/* Fill in a few transactions, delete some. */
	for (int base = 0; base < N; base += 100) {
		ctx_txn *t;
		assert_ok(ctx_txn_begin(s, "it", &t));
		for (int i = base; i < base + 100 && i < N; i++) {
			char k[16], v[16];
			int kl = snprintf(k, sizeof(k), "k%d", i),
			    vl = snprintf(v, sizeof(v), "v%d", i * 7);
			assert_ok(ctx_txn_put(t, k, (size_t)kl, v, (size_t)vl));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
	for (int i = 0; i < N; i += 5) {
		char k[16];
		int kl = snprintf(k, sizeof(k), "k%d", i);
		assert_ok(ctx_del(s, "it", k, (size_t)kl, NULL));
	}
	ctx_state *st = get_state(s, "it");
	const size_t live = N - (N + 4) / 5;
	assert_int_equal(ctx_state_count(st), live);

	ctx_iter *it;
	assert_ok(ctx_iter_begin(st, &it));
	/* The iterator holds the state: release the caller's reference, then
	 * change and drop the context, then iterate. */
	ctx_iter *it2;
	assert_ok(ctx_iter_begin(st, &it2));
	ctx_state_release(st);
	test_put_str(s, "it", "k1", "overwritten");
	test_put_str(s, "it", "extra", "x");
	assert_ok(ctx_del(s, "it", "k2", 2, NULL));
	assert_ok(ctx_drop(s, "it"));

	static int seen[N];
	memset(seen, 0, sizeof(seen));
	const void *order[N];
	size_t n = 0;
	const void *k, *v;
	size_t kl, vl;
	while (ctx_iter_next(it, &k, &kl, &v, &vl)) {
		char buf[16];
		assert_true(kl > 1 && kl < sizeof(buf));
		memcpy(buf, k, kl);
		buf[kl] = '\0';
		assert_int_equal(buf[0], 'k');
		int i = atoi(buf + 1);
		assert_true(i >= 0 && i < N);
		assert_true(i % 5 != 0);
		seen[i]++;
		char want[16];
		int wl = snprintf(want, sizeof(want), "v%d", i * 7);
		assert_int_equal(vl, (size_t)wl);
		assert_memory_equal(v, want, vl);
		assert_true(n < N);
		order[n++] = k;
	}
	assert_int_equal(n, live);
	for (int i = 0; i < N; i++)
		assert_int_equal(seen[i], i % 5 ? 1 : 0);
	/* Past the end it stays at the end. */
	assert_false(ctx_iter_next(it, &k, &kl, &v, &vl));
	assert_false(ctx_iter_next(it, NULL, NULL, NULL, NULL));

	/* Same order the second time (pointers into the same state). */
	size_t m = 0;
	while (ctx_iter_next(it2, &k, NULL, NULL, NULL)) {
		assert_true(m < n);
		assert_ptr_equal(k, order[m]);
		m++;
	}
	assert_int_equal(m, n);
	ctx_iter_free(it);
	ctx_iter_free(it2);
	ctx_iter_free(NULL); /* no-op */
	ctx_close(s);
}

static void test_iter_same_order_by_content(void **unused)
{
	/* Two separate iterations of one state by content, with NULL out
	 * parameters for the ones not wanted. */
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "o"));
	for (int i = 0; i < 200; i++) {
		char k[16];
		int kl = snprintf(k, sizeof(k), "%d", i * 31);
		assert_ok(ctx_put(s, "o", k, (size_t)kl, k, (size_t)kl, NULL));
	}
	ctx_state *st = get_state(s, "o");
	char first[200][16];
	size_t n = 0;
	ctx_iter *it;
	assert_ok(ctx_iter_begin(st, &it));
	const void *k;
	size_t kl;
	while (ctx_iter_next(it, &k, &kl, NULL, NULL)) {
		assert_true(n < 200);
		memcpy(first[n], k, kl);
		first[n][kl] = '\0';
		n++;
	}
	ctx_iter_free(it);
	assert_int_equal(n, 200);
	assert_ok(ctx_iter_begin(st, &it));
	for (size_t i = 0; i < n; i++) {
		const void *v;
		size_t vl;
		assert_true(ctx_iter_next(it, NULL, NULL, &v, &vl));
		assert_int_equal(vl, strlen(first[i]));
		assert_memory_equal(v, first[i], vl);
	}
	assert_false(ctx_iter_next(it, NULL, NULL, NULL, NULL));
	ctx_iter_free(it);
	ctx_state_release(st);
	ctx_close(s);
}

static void test_iter_errors_and_empty(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "e"));
	ctx_state *st = get_state(s, "e");
	ctx_iter *it = (ctx_iter *)(uintptr_t)SENTINEL;
	assert_int_equal(ctx_iter_begin(NULL, &it), CTX_INVALID);
	expect_last_error();
	assert_int_equal(ctx_iter_meta_begin(NULL, &it), CTX_INVALID);
	assert_ptr_equal(it, (ctx_iter *)(uintptr_t)SENTINEL);
	assert_int_equal(ctx_iter_begin(st, NULL), CTX_INVALID);
	assert_int_equal(ctx_iter_meta_begin(st, NULL), CTX_INVALID);
	assert_ok(ctx_iter_begin(st, &it));
	const void *k = (const void *)&k;
	assert_false(ctx_iter_next(it, &k, NULL, NULL, NULL));
	assert_ptr_equal(k, (const void *)&k);
	ctx_iter_free(it);
	assert_false(ctx_iter_next(NULL, NULL, NULL, NULL, NULL));
	ctx_state_release(st);
	ctx_close(s);
}

/* ---- single writes ------------------------------------------------------------ */

static void test_put_del_limits(void **unused)
{
	enum { MK = 16, MV = 32 };
	ctx_store *s = open_with(0, MK, MV);
	assert_ok(ctx_create(s, "p"));
	test_put_str(s, "p", "keep", "this");
	char key[MK + 2], val[MV + 2];
	memset(key, 'k', sizeof(key));
	memset(val, 'v', sizeof(val));

	/* Each invalid call fails, commits nothing, leaves version_out alone. */
	struct {
		const void *k;
		size_t kl;
		const void *v;
		size_t vl;
	} bad_puts[] = {
	    {key, 0, val, 1},      /* empty key          */
	    {NULL, 0, val, 1},     /* NULL empty key     */
	    {NULL, 3, val, 1},     /* NULL key           */
	    {key, MK + 1, val, 1}, /* key above limit    */
	    {key, 1, val, MV + 1}, /* value above limit  */
	    {key, 1, NULL, 1},     /* NULL value         */
	    {key, SIZE_MAX, val, 1}, {key, 1, val, SIZE_MAX},
	};
	for (size_t i = 0; i < sizeof(bad_puts) / sizeof(bad_puts[0]); i++) {
		snapshot sn = take_snapshot(s, "p");
		uint64_t v = SENTINEL;
		assert_int_equal(ctx_put(s, "p", bad_puts[i].k, bad_puts[i].kl, bad_puts[i].v,
		                         bad_puts[i].vl, &v),
		                 CTX_INVALID);
		expect_last_error();
		assert_int_equal(v, SENTINEL);
		expect_unchanged(s, "p", &sn);
	}
	struct {
		const void *k;
		size_t kl;
	} bad_dels[] = {{key, 0}, {NULL, 0}, {NULL, 2}, {key, MK + 1}, {key, SIZE_MAX}};
	for (size_t i = 0; i < sizeof(bad_dels) / sizeof(bad_dels[0]); i++) {
		snapshot sn = take_snapshot(s, "p");
		uint64_t v = SENTINEL;
		assert_int_equal(ctx_del(s, "p", bad_dels[i].k, bad_dels[i].kl, &v), CTX_INVALID);
		expect_last_error();
		assert_int_equal(v, SENTINEL);
		expect_unchanged(s, "p", &sn);
	}

	/* Exactly at the limits: accepted. */
	uint64_t v = 0;
	assert_ok(ctx_put(s, "p", key, MK, val, MV, &v));
	assert_int_equal(v, 3);
	assert_ok(ctx_put(s, "p", key, 1, val, 0, &v));
	assert_ok(ctx_put(s, "p", key, 2, NULL, 0, &v));
	assert_int_equal(v, 5);
	ctx_state *st = get_state(s, "p");
	expect_val(st, key, MK, val, MV);
	expect_val(st, key, 1, "", 0);
	expect_val(st, key, 2, "", 0);
	expect_str(st, "keep", "this");
	assert_int_equal(ctx_state_count(st), 4);
	assert_int_equal(ctx_state_bytes(st), 8 + MK + MV + 1 + 2);
	ctx_state_release(st);
	assert_ok(ctx_del(s, "p", key, MK, &v));
	assert_int_equal(v, 6);

	/* Missing context, bad id, NULL store. */
	v = SENTINEL;
	assert_int_equal(ctx_put(s, "nope", "k", 1, "v", 1, &v), CTX_NOT_FOUND);
	expect_last_error();
	assert_int_equal(ctx_del(s, "nope", "k", 1, &v), CTX_NOT_FOUND);
	assert_int_equal(ctx_put(s, "", "k", 1, "v", 1, &v), CTX_INVALID);
	assert_int_equal(ctx_put(s, NULL, "k", 1, "v", 1, &v), CTX_INVALID);
	assert_int_equal(ctx_put(NULL, "p", "k", 1, "v", 1, &v), CTX_INVALID);
	assert_int_equal(ctx_del(NULL, "p", "k", 1, &v), CTX_INVALID);
	assert_int_equal(v, SENTINEL);
	assert_int_equal(test_version_of(s, "p"), 6);
	ctx_close(s);
}

static void test_put_default_limits(void **unused)
{
	/* The default limits: 65536-byte keys, 16 MiB values. */
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "big"));
	size_t mk = CTX_DEFAULT_MAX_KEY_SIZE, mv = CTX_DEFAULT_MAX_VALUE_SIZE;
	unsigned char *key = malloc(mk + 1), *val = malloc(mv + 1);
	assert_non_null(key);
	assert_non_null(val);
	for (size_t i = 0; i <= mk; i++)
		key[i] = (unsigned char)(i * 7);
	for (size_t i = 0; i <= mv; i += 4096)
		val[i] = (unsigned char)(i >> 12);
	memset(val, 0, 16);
	val[mv - 1] = 0xee;
	assert_ok(ctx_put(s, "big", key, mk, val, mv, NULL));
	assert_int_equal(ctx_put(s, "big", key, mk + 1, val, 1, NULL), CTX_INVALID);
	assert_int_equal(ctx_put(s, "big", key, 1, val, mv + 1, NULL), CTX_INVALID);
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "big", &t));
	assert_int_equal(ctx_txn_put(t, key, mk + 1, val, 1), CTX_INVALID);
	assert_int_equal(ctx_txn_put(t, key, 1, val, mv + 1), CTX_INVALID);
	assert_int_equal(ctx_txn_del(t, key, mk + 1), CTX_INVALID);
	ctx_txn_abort(t);
	ctx_state *st = get_state(s, "big");
	assert_int_equal(ctx_state_version(st), 2);
	assert_int_equal(ctx_state_count(st), 1);
	assert_int_equal(ctx_state_bytes(st), mk + mv);
	const void *got;
	size_t gl;
	assert_true(ctx_state_lookup(st, key, mk, &got, &gl));
	assert_int_equal(gl, mv);
	assert_memory_equal(got, val, mv);
	ctx_state_release(st);
	free(key);
	free(val);
	ctx_close(s);
}

static void test_del_absent_makes_no_version(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "d"));
	uint64_t v = SENTINEL;
	assert_int_equal(ctx_del(s, "d", "k", 1, &v), CTX_NOT_FOUND);
	expect_last_error();
	assert_int_equal(v, SENTINEL);
	assert_int_equal(test_version_of(s, "d"), 1);

	test_put_str(s, "d", "k", "v");
	test_put_str(s, "d", "k2", "v2");
	ctx_state *before = get_state(s, "d");
	uint64_t rev = ctx_state_revision(before);
	assert_int_equal(ctx_del(s, "d", "kk", 2, &v), CTX_NOT_FOUND);
	assert_int_equal(ctx_del(s, "d", "K", 1, &v), CTX_NOT_FOUND);
	assert_int_equal(v, SENTINEL);
	ctx_state *after = get_state(s, "d");
	/* Not even a new version with the same data: the same version. */
	assert_int_equal(ctx_state_version(after), 3);
	assert_int_equal(ctx_state_revision(after), rev);
	assert_int_equal(ctx_state_count(after), 2);
	ctx_state_release(after);

	assert_ok(ctx_del(s, "d", "k", 1, &v));
	assert_int_equal(v, 4);
	assert_int_equal(ctx_del(s, "d", "k", 1, &v), CTX_NOT_FOUND);
	assert_int_equal(v, 4);
	after = get_state(s, "d");
	assert_int_equal(ctx_state_version(after), 4);
	assert_int_equal(ctx_state_count(after), 1);
	expect_absent(after, "k", 1);
	expect_str(after, "k2", "v2");
	/* The earlier state still has the key. */
	expect_str(before, "k", "v");
	ctx_state_release(after);
	ctx_state_release(before);
	ctx_close(s);
}

static void test_put_copies_data(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "c"));
	char key[8] = "key", val[8] = "value";
	assert_ok(ctx_put(s, "c", key, 3, val, 5, NULL));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	char k2[8] = "tk", v2[8] = "tv";
	assert_ok(ctx_txn_put(t, k2, 2, v2, 2));
	assert_ok(ctx_txn_meta_put(t, k2, 2, v2, 2));
	memcpy(k2, "XX", 2);
	memcpy(v2, "YY", 2);
	memcpy(key, "XXX", 3);
	memcpy(val, "YYYYY", 5);
	assert_ok(ctx_txn_commit(t, 0, NULL));
	ctx_state *st = get_state(s, "c");
	expect_str(st, "key", "value");
	expect_str(st, "tk", "tv");
	expect_absent(st, "XX", 2);
	const void *mv;
	size_t ml;
	assert_true(ctx_state_meta(st, "tk", 2, &mv, &ml));
	assert_memory_equal(mv, "tv", 2);
	ctx_state_release(st);
	ctx_close(s);
}

/* ---- transactions ------------------------------------------------------------- */

static void test_txn_ops_in_order(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "t"));
	test_put_str(s, "t", "gone", "soon");
	test_put_str(s, "t", "stay", "here");
	ctx_state *before = get_state(s, "t");

	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "t", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "1", 1));
	assert_ok(ctx_txn_put(t, "k", 1, "2", 1)); /* later put wins */
	assert_ok(ctx_txn_put(t, "x", 1, "x", 1));
	assert_ok(ctx_txn_del(t, "x", 1));           /* put then del: absent */
	assert_ok(ctx_txn_del(t, "y", 1));           /* absent: fine */
	assert_ok(ctx_txn_put(t, "y", 1, "yes", 3)); /* del then put: present */
	assert_ok(ctx_txn_del(t, "gone", 4));
	assert_ok(ctx_txn_del(t, "gone", 4)); /* twice: fine */
	assert_ok(ctx_txn_put(t, "stay", 4, "new", 3));
	assert_ok(ctx_txn_put(t, "stay", 4, "", 0));
	assert_ok(ctx_txn_put(t, "stay", 4, "final", 5));
	assert_ok(ctx_txn_meta_put(t, "m", 1, "1", 1));
	assert_ok(ctx_txn_meta_del(t, "m", 1));
	assert_ok(ctx_txn_meta_put(t, "m2", 2, "ok", 2));
	/* Nothing is visible before the commit. */
	assert_int_equal(test_version_of(s, "t"), 3);
	uint64_t v = 0;
	assert_ok(ctx_txn_commit(t, 0, &v));
	assert_int_equal(v, 4); /* one version for the whole transaction */

	ctx_state *st = get_state(s, "t");
	assert_int_equal(ctx_state_version(st), 4);
	assert_true(ctx_state_revision(st) > ctx_state_revision(before));
	expect_str(st, "k", "2");
	expect_absent(st, "x", 1);
	expect_str(st, "y", "yes");
	expect_absent(st, "gone", 4);
	expect_str(st, "stay", "final");
	assert_int_equal(ctx_state_count(st), 3);
	assert_int_equal(ctx_state_bytes(st), 2 + 4 + 9);
	assert_int_equal(ctx_state_meta_count(st), 1);
	assert_false(ctx_state_meta(st, "m", 1, NULL, NULL));
	assert_true(ctx_state_meta(st, "m2", 2, NULL, NULL));
	ctx_state_release(st);
	/* The earlier version is untouched. */
	expect_str(before, "gone", "soon");
	expect_str(before, "stay", "here");
	assert_int_equal(ctx_state_count(before), 2);
	ctx_state_release(before);

	/* Put and delete many keys in one transaction (in-place building). */
	assert_ok(ctx_txn_begin(s, "t", &t));
	for (int i = 0; i < 2000; i++) {
		char k[16];
		int kl = snprintf(k, sizeof(k), "bulk%d", i);
		assert_ok(ctx_txn_put(t, k, (size_t)kl, k, (size_t)kl));
	}
	for (int i = 0; i < 2000; i += 2) {
		char k[16];
		int kl = snprintf(k, sizeof(k), "bulk%d", i);
		assert_ok(ctx_txn_del(t, k, (size_t)kl));
	}
	assert_ok(ctx_txn_commit(t, 4, &v));
	assert_int_equal(v, 5);
	st = get_state(s, "t");
	assert_int_equal(ctx_state_count(st), 3 + 1000);
	for (int i = 0; i < 2000; i++) {
		char k[16];
		int kl = snprintf(k, sizeof(k), "bulk%d", i);
		if (i % 2)
			expect_val(st, k, (size_t)kl, k, (size_t)kl);
		else
			expect_absent(st, k, (size_t)kl);
	}
	ctx_state_release(st);
	ctx_close(s);
}

static void test_txn_empty_makes_version(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "e"));
	test_put_str(s, "e", "k", "v");
	ctx_state *before = get_state(s, "e");
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "e", &t));
	uint64_t v = 0;
	assert_ok(ctx_txn_commit(t, 0, &v));
	assert_int_equal(v, 3);
	ctx_state *st = get_state(s, "e");
	assert_int_equal(ctx_state_version(st), 3);
	assert_true(ctx_state_revision(st) > ctx_state_revision(before));
	assert_int_equal(ctx_state_count(st), 1);
	expect_str(st, "k", "v");
	ctx_state_release(st);
	ctx_state_release(before);

	/* A transaction of only absent deletes also makes a new version. */
	assert_ok(ctx_txn_begin(s, "e", &t));
	assert_ok(ctx_txn_del(t, "absent", 6));
	assert_ok(ctx_txn_commit(t, 3, &v));
	assert_int_equal(v, 4);
	ctx_close(s);
}

static void test_txn_guarded(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "g"));
	test_put_str(s, "g", "k", "v0");
	uint64_t cur = test_version_of(s, "g");
	assert_int_equal(cur, 2);

	/* Right version: succeeds. */
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "g", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "v1", 2));
	uint64_t v = 0;
	assert_ok(ctx_txn_commit(t, cur, &v));
	assert_int_equal(v, 3);

	/* Stale version: conflict, nothing changes. */
	snapshot sn = take_snapshot(s, "g");
	assert_ok(ctx_txn_begin(s, "g", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "stale", 5));
	assert_ok(ctx_txn_put(t, "other", 5, "x", 1));
	assert_ok(ctx_txn_meta_put(t, "m", 1, "x", 1));
	v = SENTINEL;
	assert_int_equal(ctx_txn_commit(t, cur, &v), CTX_CONFLICT);
	expect_last_error();
	assert_int_equal(v, SENTINEL);
	expect_unchanged(s, "g", &sn);

	/* A version from the future: conflict too. */
	sn = take_snapshot(s, "g");
	assert_ok(ctx_txn_begin(s, "g", &t));
	assert_ok(ctx_txn_del(t, "k", 1));
	assert_int_equal(ctx_txn_commit(t, 4, &v), CTX_CONFLICT);
	assert_ok(ctx_txn_begin(s, "g", &t));
	assert_ok(ctx_txn_del(t, "k", 1));
	assert_int_equal(ctx_txn_commit(t, UINT64_MAX, &v), CTX_CONFLICT);
	assert_int_equal(v, SENTINEL);
	expect_unchanged(s, "g", &sn);

	/* A transaction begun at version 3, with another commit in between. */
	ctx_txn *t1, *t2;
	assert_ok(ctx_txn_begin(s, "g", &t1));
	assert_ok(ctx_txn_begin(s, "g", &t2));
	assert_ok(ctx_txn_put(t1, "k", 1, "t1", 2));
	assert_ok(ctx_txn_put(t2, "k", 1, "t2", 2));
	assert_ok(ctx_txn_commit(t1, 3, &v));
	assert_int_equal(v, 4);
	assert_int_equal(ctx_txn_commit(t2, 3, &v), CTX_CONFLICT);
	assert_int_equal(v, 4);
	ctx_state *st = get_state(s, "g");
	expect_str(st, "k", "t1");
	ctx_state_release(st);

	/* expected 0 = unguarded: applies whatever the version. */
	assert_ok(ctx_txn_begin(s, "g", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "free", 4));
	assert_ok(ctx_txn_commit(t, 0, &v));
	assert_int_equal(v, 5);
	st = get_state(s, "g");
	expect_str(st, "k", "free");
	ctx_state_release(st);
	ctx_close(s);
}

static void test_txn_context_dropped(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "d"));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "d", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "v", 1));
	assert_ok(ctx_drop(s, "d"));
	uint64_t v = SENTINEL;
	assert_int_equal(ctx_txn_commit(t, 0, &v), CTX_NOT_FOUND);
	expect_last_error();
	assert_int_equal(v, SENTINEL);
	assert_int_equal(ctx_count(s), 0);
	ctx_state *st;
	assert_int_equal(ctx_get(s, "d", &st), CTX_NOT_FOUND);

	/* Guarded, too. */
	assert_ok(ctx_create(s, "d"));
	assert_ok(ctx_txn_begin(s, "d", &t));
	assert_ok(ctx_drop(s, "d"));
	assert_int_equal(ctx_txn_commit(t, 1, &v), CTX_NOT_FOUND);

	/* Dropped and re-created under the same id while the transaction was
	 * open: the commit either goes to the new context as one whole version
	 * or fails with NOT_FOUND; it never half-applies or resurrects. */
	assert_ok(ctx_create(s, "d"));
	assert_ok(ctx_txn_begin(s, "d", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "v", 1));
	assert_ok(ctx_drop(s, "d"));
	assert_ok(ctx_create(s, "d"));
	ctx_status r = ctx_txn_commit(t, 0, &v);
	st = get_state(s, "d");
	if (r == CTX_OK) {
		assert_int_equal(v, 2);
		assert_int_equal(ctx_state_version(st), 2);
		expect_str(st, "k", "v");
	} else {
		assert_int_equal(r, CTX_NOT_FOUND);
		assert_int_equal(ctx_state_version(st), 1);
		assert_int_equal(ctx_state_count(st), 0);
	}
	ctx_state_release(st);
	assert_int_equal(ctx_count(s), 1);

	/* Abort of a transaction on a dropped context frees it (ASan). */
	assert_ok(ctx_txn_begin(s, "d", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "v", 1));
	assert_ok(ctx_drop(s, "d"));
	ctx_txn_abort(t);
	ctx_close(s);
}

static void test_txn_abort(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "v");
	snapshot sn = take_snapshot(s, "a");
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "a", &t));
	assert_ok(ctx_txn_put(t, "k", 1, "changed", 7));
	assert_ok(ctx_txn_put(t, "new", 3, "x", 1));
	assert_ok(ctx_txn_del(t, "k", 1));
	assert_ok(ctx_txn_meta_put(t, "m", 1, "x", 1));
	ctx_txn_abort(t);
	expect_unchanged(s, "a", &sn);
	/* An empty one too. */
	assert_ok(ctx_txn_begin(s, "a", &t));
	ctx_txn_abort(t);
	ctx_txn_abort(NULL); /* no-op */
	assert_int_equal(test_version_of(s, "a"), 2);
	ctx_close(s);
}

static void test_txn_null_and_missing(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	ctx_txn *t = (ctx_txn *)(uintptr_t)SENTINEL;
	assert_int_equal(ctx_txn_begin(s, "missing", &t), CTX_NOT_FOUND);
	expect_last_error();
	assert_ptr_equal(t, (ctx_txn *)(uintptr_t)SENTINEL);
	assert_int_equal(ctx_txn_begin(s, "a", NULL), CTX_INVALID);
	assert_int_equal(ctx_txn_begin(NULL, "a", &t), CTX_INVALID);
	assert_int_equal(ctx_txn_begin(s, NULL, &t), CTX_INVALID);
	assert_ptr_equal(t, (ctx_txn *)(uintptr_t)SENTINEL);

	assert_int_equal(ctx_txn_put(NULL, "k", 1, "v", 1), CTX_INVALID);
	expect_last_error();
	assert_int_equal(ctx_txn_del(NULL, "k", 1), CTX_INVALID);
	uint64_t v = SENTINEL;
	assert_int_equal(ctx_txn_commit(NULL, 0, &v), CTX_INVALID);
	assert_int_equal(v, SENTINEL);
	assert_int_equal(test_version_of(s, "a"), 1);
	ctx_close(s);
}

static void test_txn_failed_op_keeps_txn(void **unused)
{
	enum { MK = 8, MV = 8 };
	ctx_store *s = open_with(0, MK, MV);
	assert_ok(ctx_create(s, "f"));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "f", &t));
	assert_ok(ctx_txn_put(t, "a", 1, "1", 1));
	assert_int_equal(ctx_txn_put(t, "", 0, "x", 1), CTX_INVALID);
	expect_last_error();
	assert_int_equal(ctx_txn_put(t, NULL, 1, "x", 1), CTX_INVALID);
	assert_int_equal(ctx_txn_put(t, "123456789", 9, "x", 1), CTX_INVALID);
	assert_int_equal(ctx_txn_put(t, "b", 1, "123456789", 9), CTX_INVALID);
	assert_int_equal(ctx_txn_put(t, "b", 1, NULL, 2), CTX_INVALID);
	assert_int_equal(ctx_txn_del(t, "", 0), CTX_INVALID);
	assert_int_equal(ctx_txn_del(t, NULL, 1), CTX_INVALID);
	assert_int_equal(ctx_txn_del(t, "123456789", 9), CTX_INVALID);
	assert_ok(ctx_txn_put(t, "12345678", 8, "12345678", 8));
	assert_ok(ctx_txn_put(t, "c", 1, NULL, 0));
	uint64_t v;
	assert_ok(ctx_txn_commit(t, 1, &v));
	assert_int_equal(v, 2);
	ctx_state *st = get_state(s, "f");
	assert_int_equal(ctx_state_count(st), 3);
	expect_str(st, "a", "1");
	expect_str(st, "12345678", "12345678");
	expect_val(st, "c", 1, "", 0);
	expect_absent(st, "b", 1);
	ctx_state_release(st);
	ctx_close(s);
}

static void test_versions_immutable(void **unused)
{
	/* Hold every version of a context while committing: each keeps exactly
	 * the data it had, checked against a model replayed alongside. */
	enum { V = 120, K = 37 };
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "h"));
	ctx_state *held[V + 1];
	char model[V + 1][K][16];
	bool present[V + 1][K];
	memset(present, 0, sizeof(present));
	held[0] = get_state(s, "h");
	uint64_t version = 1;
	for (int i = 1; i <= V; i++) {
		memcpy(model[i], model[i - 1], sizeof(model[i]));
		memcpy(present[i], present[i - 1], sizeof(present[i]));
		char k[16], val[16];
		int slot = (i * 7) % K;
		int kl = snprintf(k, sizeof(k), "k%d", slot);
		uint64_t v = SENTINEL;
		if (i % 4 == 0) {
			/* Delete: present -> new version; absent -> NOT_FOUND. */
			ctx_status r = ctx_del(s, "h", k, (size_t)kl, &v);
			if (present[i][slot]) {
				assert_ok(r);
				present[i][slot] = false;
				assert_int_equal(v, ++version);
			} else {
				assert_int_equal(r, CTX_NOT_FOUND);
				assert_int_equal(v, SENTINEL);
			}
		} else {
			int vl = snprintf(val, sizeof(val), "v%d", i);
			assert_ok(ctx_put(s, "h", k, (size_t)kl, val, (size_t)vl, &v));
			assert_int_equal(v, ++version);
			present[i][slot] = true;
			memcpy(model[i][slot], val, (size_t)vl + 1);
		}
		held[i] = get_state(s, "h");
		assert_int_equal(ctx_state_version(held[i]), version);
	}
	for (int i = 0; i <= V; i++) {
		ctx_state *st = held[i];
		size_t n = 0;
		for (int k = 0; k < K; k++) {
			char key[16];
			int kl = snprintf(key, sizeof(key), "k%d", k);
			if (present[i][k]) {
				expect_str(st, key, model[i][k]);
				n++;
			} else {
				expect_absent(st, key, (size_t)kl);
			}
		}
		assert_int_equal(ctx_state_count(st), n);
		ctx_state_release(st);
	}
	ctx_close(s);
}

static void test_close_with_data(void **unused)
{
	/* Closing frees every context, version, node and leaf (ASan checks). */
	ctx_store *s = test_open_memory();
	for (int c = 0; c < 20; c++) {
		char id[16];
		snprintf(id, sizeof(id), "c%d", c);
		assert_ok(ctx_create(s, id));
		for (int i = 0; i < 100; i++) {
			char k[16];
			int kl = snprintf(k, sizeof(k), "%d", i);
			assert_ok(ctx_put(s, id, k, (size_t)kl, id, strlen(id), NULL));
		}
		ctx_txn *t;
		assert_ok(ctx_txn_begin(s, id, &t));
		assert_ok(ctx_txn_meta_put(t, "m", 1, "v", 1));
		assert_ok(ctx_txn_commit(t, 0, NULL));
		if (c % 4 == 0)
			assert_ok(ctx_drop(s, id));
	}
	assert_int_equal(ctx_count(s), 15);
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_strerror_names_every_status),
	    cmocka_unit_test(test_last_error_per_thread),
	    cmocka_unit_test(test_options_init_defaults),
	    cmocka_unit_test(test_open_arguments),
	    cmocka_unit_test(test_open_limits),
	    cmocka_unit_test(test_open_durability_none_with_dir_needs_unsafe),
	    cmocka_unit_test(test_open_bad_durability),
	    cmocka_unit_test(test_open_dir_locked),
	    cmocka_unit_test(test_create_valid_ids),
	    cmocka_unit_test(test_create_invalid_ids),
	    cmocka_unit_test(test_create_exists),
	    cmocka_unit_test(test_create_limit),
	    cmocka_unit_test(test_drop),
	    cmocka_unit_test(test_get_errors),
	    cmocka_unit_test(test_count),
	    cmocka_unit_test(test_list_ids_filters),
	    cmocka_unit_test(test_list_ids_paging),
	    cmocka_unit_test(test_state_accessors),
	    cmocka_unit_test(test_state_created_us_constant),
	    cmocka_unit_test(test_lookup_binary),
	    cmocka_unit_test(test_state_retain_release),
	    cmocka_unit_test(test_metadata_separate_from_data),
	    cmocka_unit_test(test_metadata_limits),
	    cmocka_unit_test(test_iter_every_pair_once),
	    cmocka_unit_test(test_iter_same_order_by_content),
	    cmocka_unit_test(test_iter_errors_and_empty),
	    cmocka_unit_test(test_put_del_limits),
	    cmocka_unit_test(test_put_default_limits),
	    cmocka_unit_test(test_del_absent_makes_no_version),
	    cmocka_unit_test(test_put_copies_data),
	    cmocka_unit_test(test_txn_ops_in_order),
	    cmocka_unit_test(test_txn_empty_makes_version),
	    cmocka_unit_test(test_txn_guarded),
	    cmocka_unit_test(test_txn_context_dropped),
	    cmocka_unit_test(test_txn_abort),
	    cmocka_unit_test(test_txn_null_and_missing),
	    cmocka_unit_test(test_txn_failed_op_keeps_txn),
	    cmocka_unit_test(test_versions_immutable),
	    cmocka_unit_test(test_close_with_data),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
