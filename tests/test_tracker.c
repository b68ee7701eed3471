/*
 * test_tracker.c - trackers: the three-way merge truth table under every
 * strategy, timing for latest/oldest, manual resolution, the merge function,
 * retries after a concurrent writer, edits made during a sync, timer syncs,
 * recovery points, refresh, staleness and dropped contexts.
 *
 * Times: local edits and commits are both stamped with the real clock; where
 * the order matters, tick() waits until the clock has moved on, so "before"
 * and "after" are strict.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------- */

static void tick(void)
{
	uint64_t t0 = test_wall_us();
	while (test_wall_us() <= t0 + 1)
		;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void del_str(ctx_store *s, const char *id, const char *key)
{
	assert_ok(ctx_del(s, id, key, strlen(key), NULL));
}

static void tput(ctx_tracker *t, const char *key, const char *val)
{
	assert_ok(ctx_tracker_put(t, key, strlen(key), val, strlen(val)));
}

static void tdel(ctx_tracker *t, const char *key)
{
	assert_ok(ctx_tracker_del(t, key, strlen(key)));
}

/* The newest version of id has key = val (val NULL: key absent). */
static void expect_key(ctx_store *s, const char *id, const char *key, const char *val)
{
	ctx_state *st;
	assert_ok(ctx_get(s, id, &st));
	const void *v = NULL;
	size_t vl = 0;
	bool found = ctx_state_lookup(st, key, strlen(key), &v, &vl);
	if (!val) {
		if (found)
			fail_msg("key '%s' of '%s': expected absent, got '%.*s'", key, id, (int)vl,
			         (const char *)v);
	} else {
		if (!found)
			fail_msg("key '%s' of '%s': expected '%s', got absent", key, id, val);
		if (vl != strlen(val) || memcmp(v, val, vl) != 0)
			fail_msg("key '%s' of '%s': expected '%s', got '%.*s'", key, id, val,
			         (int)vl, (const char *)v);
	}
	ctx_state_release(st);
}

/* The tracker's working copy has key = val (NULL: absent). */
static void expect_tget(ctx_tracker *t, const char *key, const char *val)
{
	void *v = (void *)&v;
	size_t vl = 4242;
	ctx_status st = ctx_tracker_get(t, key, strlen(key), &v, &vl);
	if (!val) {
		assert_int_equal(st, CTX_NOT_FOUND);
		assert_ptr_equal(v, (void *)&v); /* untouched */
		assert_int_equal(vl, 4242);
		return;
	}
	assert_ok(st);
	assert_int_equal(vl, strlen(val));
	assert_memory_equal(v, val, vl);
	free(v);
}

static bool mv_is(ctx_merge_value m, const char *val)
{
	if (!val)
		return !m.present;
	return m.present && m.len == strlen(val) && memcmp(m.value, val, m.len) == 0;
}

static ctx_tracker *open_tracker(ctx_store *s, const char *id, ctx_merge_strategy strategy,
                                 ctx_merge_fn fn, void *arg)
{
	ctx_tracker_options o = {.strategy = strategy, .merge = fn, .merge_arg = arg};
	ctx_tracker *t = NULL;
	assert_ok(ctx_tracker_open(s, id, &o, &t));
	assert_non_null(t);
	return t;
}

/* ---- the truth table ---------------------------------------------------------- */

/* What each side does to key "k" between the base and the sync. */
enum lside { L_NONE, L_PUT_L, L_PUT_S, L_DEL, L_PUT_B };
enum rside { R_NONE, R_PUT_C, R_PUT_S, R_DEL, R_BACK };
/* What the merge must give: the remote side's result, the local side's, the
 * same result made by both, or a conflict for the strategy to decide. */
enum outcome { O_REMOTE, O_LOCAL, O_SAME, O_CONFLICT };

typedef struct row {
	bool base_present; /* base: k = "b", or no k */
	enum lside l;      /* local: nothing, k = "L", k = "S", delete, k = "b" */
	enum rside r;      /* remote: nothing, k = "C", k = "S", delete, changed and back */
	enum outcome o;
} row;

static const row truth[] = {
    /* k = "b" in the base */
    {true, L_NONE, R_NONE, O_REMOTE},
    {true, L_NONE, R_PUT_C, O_REMOTE},
    {true, L_NONE, R_PUT_S, O_REMOTE},
    {true, L_NONE, R_DEL, O_REMOTE},
    {true, L_NONE, R_BACK, O_REMOTE},
    {true, L_PUT_L, R_NONE, O_LOCAL},
    {true, L_PUT_L, R_PUT_C, O_CONFLICT},
    {true, L_PUT_L, R_PUT_S, O_CONFLICT},
    {true, L_PUT_L, R_DEL, O_CONFLICT}, /* modify vs delete */
    {true, L_PUT_L, R_BACK, O_LOCAL},   /* remote unchanged by value */
    {true, L_PUT_S, R_NONE, O_LOCAL},
    {true, L_PUT_S, R_PUT_C, O_CONFLICT},
    {true, L_PUT_S, R_PUT_S, O_SAME},
    {true, L_PUT_S, R_DEL, O_CONFLICT},
    {true, L_PUT_S, R_BACK, O_LOCAL},
    {true, L_DEL, R_NONE, O_LOCAL},
    {true, L_DEL, R_PUT_C, O_CONFLICT}, /* delete vs modify */
    {true, L_DEL, R_PUT_S, O_CONFLICT},
    {true, L_DEL, R_DEL, O_SAME},
    {true, L_DEL, R_BACK, O_LOCAL},
    {true, L_PUT_B, R_NONE, O_REMOTE}, /* local unchanged by value */
    {true, L_PUT_B, R_PUT_C, O_REMOTE},
    {true, L_PUT_B, R_DEL, O_REMOTE},
    {true, L_PUT_B, R_BACK, O_REMOTE},
    /* no k in the base */
    {false, L_NONE, R_NONE, O_REMOTE},
    {false, L_NONE, R_PUT_C, O_REMOTE},
    {false, L_NONE, R_PUT_S, O_REMOTE},
    {false, L_NONE, R_BACK, O_REMOTE},
    {false, L_PUT_L, R_NONE, O_LOCAL},
    {false, L_PUT_L, R_PUT_C, O_CONFLICT}, /* added on both sides */
    {false, L_PUT_L, R_PUT_S, O_CONFLICT},
    {false, L_PUT_L, R_BACK, O_LOCAL}, /* remote added and deleted it */
    {false, L_PUT_S, R_NONE, O_LOCAL},
    {false, L_PUT_S, R_PUT_C, O_CONFLICT},
    {false, L_PUT_S, R_PUT_S, O_SAME},
    {false, L_PUT_S, R_BACK, O_LOCAL},
    {false, L_DEL, R_NONE, O_REMOTE}, /* deleting nothing changes nothing */
    {false, L_DEL, R_PUT_C, O_REMOTE},
    {false, L_DEL, R_PUT_S, O_REMOTE},
    {false, L_DEL, R_BACK, O_REMOTE},
};

enum variant {
	V_LATEST_LOCAL_FIRST,  /* local edit, then the remote commit  */
	V_LATEST_REMOTE_FIRST, /* remote commit, then the local edit  */
	V_OLDEST_LOCAL_FIRST,
	V_OLDEST_REMOTE_FIRST,
	V_FUNCTION,
	V_MANUAL,
	V_COUNT
};

static const char *local_value(const row *r)
{
	switch (r->l) {
	case L_PUT_L:
		return "L";
	case L_PUT_S:
		return "S";
	case L_PUT_B:
		return "b";
	case L_DEL:
		return NULL;
	case L_NONE:
		break;
	}
	return r->base_present ? "b" : NULL;
}

static const char *remote_value(const row *r)
{
	switch (r->r) {
	case R_PUT_C:
		return "C";
	case R_PUT_S:
		return "S";
	case R_DEL:
		return NULL;
	case R_NONE:
	case R_BACK:
		break;
	}
	return r->base_present ? "b" : NULL;
}

static void do_local(ctx_tracker *t, const row *r)
{
	tput(t, "y", "y1"); /* a change only the local side makes */
	if (r->l == L_DEL)
		tdel(t, "k");
	else if (r->l != L_NONE)
		tput(t, "k", local_value(r));
}

/* The remote side: one commit with k's change and x := x1 (a change only the
 * remote side makes); R_BACK changes k and sets it back in a second commit. */
static void do_remote(ctx_store *s, const char *id, const row *r)
{
	ctx_txn *x;
	assert_ok(ctx_txn_begin(s, id, &x));
	assert_ok(ctx_txn_put(x, "x", 1, "x1", 2));
	if (r->r == R_PUT_C || r->r == R_PUT_S)
		assert_ok(ctx_txn_put(x, "k", 1, remote_value(r), 1));
	else if (r->r == R_DEL)
		assert_ok(ctx_txn_del(x, "k", 1));
	else if (r->r == R_BACK)
		assert_ok(ctx_txn_put(x, "k", 1, "X", 1));
	assert_ok(ctx_txn_commit(x, 0, NULL));
	if (r->r == R_BACK) {
		if (r->base_present)
			test_put_str(s, id, "k", "b");
		else
			del_str(s, id, "k");
	}
}

typedef struct fn_record {
	int calls;
	ctx_conflict seen; /* pointers valid only during the call */
	bool base_ok, local_ok, current_ok, times_ok;
	const char *want_base, *want_local, *want_current;
	const char *answer; /* NULL: delete */
	ctx_status status;
} fn_record;

static ctx_status record_fn(void *arg, const ctx_conflict *c, ctx_merge_value *out)
{
	fn_record *f = arg;
	f->calls++;
	f->base_ok = mv_is(c->base, f->want_base);
	f->local_ok = mv_is(c->local, f->want_local);
	f->current_ok = mv_is(c->current, f->want_current);
	f->times_ok = c->base.time_us == 0 && c->local.time_us > 0 && c->current.time_us > 0 &&
	              c->klen == 1 && memcmp(c->key, "k", 1) == 0;
	if (f->status != CTX_OK)
		return f->status;
	out->present = f->answer != NULL;
	out->value = f->answer;
	out->len = f->answer ? strlen(f->answer) : 0;
	return CTX_OK;
}

static void run_case(ctx_store *s, size_t idx, enum variant v)
{
	const row *r = &truth[idx];
	char id[32];
	snprintf(id, sizeof(id), "case-%zu-%d", idx, (int)v);
	assert_ok(ctx_create(s, id));
	test_put_str(s, id, "x", "x0");
	if (r->base_present)
		test_put_str(s, id, "k", "b");

	static const ctx_merge_strategy strategies[V_COUNT] = {
	    CTX_MERGE_LATEST, CTX_MERGE_LATEST,   CTX_MERGE_OLDEST,
	    CTX_MERGE_OLDEST, CTX_MERGE_FUNCTION, CTX_MERGE_MANUAL};
	fn_record f = {.want_base = r->base_present ? "b" : NULL,
	               .want_local = local_value(r),
	               .want_current = remote_value(r),
	               .answer = "F"};
	ctx_tracker *t = open_tracker(s, id, strategies[v], record_fn, &f);
	uint64_t base = ctx_tracker_base_version(t);
	assert_int_equal(base, test_version_of(s, id));

	bool local_first =
	    v == V_LATEST_LOCAL_FIRST || v == V_OLDEST_LOCAL_FIRST || v == V_FUNCTION;
	if (local_first) {
		do_local(t, r);
		tick();
		do_remote(s, id, r);
	} else {
		do_remote(s, id, r);
		tick();
		do_local(t, r);
	}
	uint64_t remote_version = test_version_of(s, id);
	assert_true(ctx_tracker_is_stale(t));

	const char *want;
	switch (r->o) {
	case O_REMOTE:
		want = remote_value(r);
		break;
	case O_LOCAL:
	case O_SAME:
		want = local_value(r);
		break;
	case O_CONFLICT:
	default:
		switch (v) {
		case V_LATEST_LOCAL_FIRST:
		case V_OLDEST_REMOTE_FIRST:
			want = remote_value(r);
			break;
		case V_LATEST_REMOTE_FIRST:
		case V_OLDEST_LOCAL_FIRST:
			want = local_value(r);
			break;
		case V_FUNCTION:
			want = "F";
			break;
		default: /* manual: decided below */
			want = NULL;
		}
	}

	uint64_t synced = 0;
	if (r->o == O_CONFLICT && v == V_MANUAL) {
		size_t pending = ctx_tracker_pending(t);
		assert_int_equal(ctx_tracker_sync(t, &synced), CTX_CONFLICT);
		assert_int_equal(synced, 0);
		assert_int_equal(test_version_of(s, id), remote_version); /* nothing committed */
		assert_int_equal(ctx_tracker_pending(t), pending);
		assert_int_equal(ctx_tracker_base_version(t), base);
		const ctx_conflict *c = NULL;
		assert_int_equal(ctx_tracker_conflicts(t, &c), 1);
		assert_int_equal(c[0].klen, 1);
		assert_memory_equal(c[0].key, "k", 1);
		assert_true(mv_is(c[0].base, f.want_base));
		assert_true(mv_is(c[0].local, f.want_local));
		assert_true(mv_is(c[0].current, f.want_current));
		/* Resolve it one of three ways. */
		switch (idx % 3) {
		case 0:
			assert_ok(ctx_tracker_resolve(t, "k", 1, true));
			want = local_value(r);
			break;
		case 1:
			assert_ok(ctx_tracker_resolve(t, "k", 1, false));
			want = remote_value(r);
			break;
		default:
			tput(t, "k", "R");
			want = "R";
		}
		assert_int_equal(ctx_tracker_conflicts(t, &c), 0);
		assert_int_equal(ctx_tracker_resolve(t, "k", 1, true), CTX_NOT_FOUND);
		expect_tget(t, "k", want);
	}
	assert_ok(ctx_tracker_sync(t, &synced));
	assert_int_equal(synced, remote_version + 1); /* y is always written */
	assert_int_equal(ctx_tracker_base_version(t), synced);
	assert_int_equal(ctx_tracker_pending(t), 0);
	assert_false(ctx_tracker_is_stale(t));
	expect_key(s, id, "k", want);
	expect_key(s, id, "x", "x1");
	expect_key(s, id, "y", "y1");
	expect_tget(t, "k", want);
	expect_tget(t, "x", "x1");

	if (v == V_FUNCTION) {
		if (r->o == O_CONFLICT) {
			assert_int_equal(f.calls, 1);
			assert_true(f.base_ok);
			assert_true(f.local_ok);
			assert_true(f.current_ok);
			assert_true(f.times_ok);
		} else {
			assert_int_equal(f.calls, 0);
		}
	}
	ctx_tracker_close(t);
}

static void test_truth_table(void **unused)
{
	ctx_store *s = test_open_memory();
	for (size_t i = 0; i < sizeof(truth) / sizeof(truth[0]); i++)
		for (int v = 0; v < V_COUNT; v++)
			run_case(s, i, (enum variant)v);
	ctx_close(s);
}

/* The merge function may answer with a delete, or with the local value. */
static void test_function_answers(void **unused)
{
	ctx_store *s = test_open_memory();
	const char *answers[] = {NULL, "L", "C", ""};
	for (size_t i = 0; i < 4; i++) {
		char id[16];
		snprintf(id, sizeof(id), "f%zu", i);
		assert_ok(ctx_create(s, id));
		test_put_str(s, id, "k", "b");
		fn_record f = {.answer = answers[i]};
		ctx_tracker *t = open_tracker(s, id, CTX_MERGE_FUNCTION, record_fn, &f);
		tput(t, "k", "L");
		test_put_str(s, id, "k", "C");
		assert_ok(ctx_tracker_sync(t, NULL));
		assert_int_equal(f.calls, 1);
		expect_key(s, id, "k", answers[i]);
		ctx_tracker_close(t);
	}
	ctx_close(s);
}

/* ---- latest / oldest use the time of the key's own change ------------------------ */

static void test_latest_uses_key_time(void **unused)
{
	ctx_store *s = test_open_memory();
	for (int oldest = 0; oldest < 2; oldest++) {
		const char *id = oldest ? "o" : "l";
		assert_ok(ctx_create(s, id));
		test_put_str(s, id, "k", "b");
		ctx_tracker *t =
		    open_tracker(s, id, oldest ? CTX_MERGE_OLDEST : CTX_MERGE_LATEST, NULL, NULL);
		test_put_str(s, id, "k", "C"); /* remote change of k: first */
		tick();
		tput(t, "k", "L"); /* local change: second */
		tick();
		test_put_str(s, id, "z", "later"); /* a later commit, not touching k */
		assert_ok(ctx_tracker_sync(t, NULL));
		expect_key(s, id, "k", oldest ? "C" : "L");
		expect_key(s, id, "z", "later");
		ctx_tracker_close(t);
	}
	ctx_close(s);
}

/* ---- manual resolution ------------------------------------------------------------ */

static void test_manual_resolve_and_resync(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "m"));
	for (int i = 0; i < 5; i++) {
		char k[4] = {'k', (char)('0' + i), 0};
		test_put_str(s, "m", k, "b");
	}
	ctx_tracker *t = open_tracker(s, "m", CTX_MERGE_MANUAL, NULL, NULL);
	for (int i = 0; i < 5; i++) {
		char k[4] = {'k', (char)('0' + i), 0};
		tput(t, k, "L");
	}
	tput(t, "new", "n");
	ctx_txn *x;
	assert_ok(ctx_txn_begin(s, "m", &x));
	for (int i = 0; i < 4; i++) { /* k4 is changed locally only */
		char k[4] = {'k', (char)('0' + i), 0};
		assert_ok(ctx_txn_put(x, k, 2, "C", 1));
	}
	assert_ok(ctx_txn_commit(x, 0, NULL));
	uint64_t v = test_version_of(s, "m");

	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_CONFLICT);
	assert_true(strlen(ctx_last_error()) > 0);
	assert_int_equal(test_version_of(s, "m"), v);
	const ctx_conflict *c;
	assert_int_equal(ctx_tracker_conflicts(t, &c), 4);
	bool seen[4] = {false};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(c[i].klen, 2);
		int n = ((const char *)c[i].key)[1] - '0';
		assert_true(n >= 0 && n < 4 && !seen[n]);
		seen[n] = true;
		assert_true(mv_is(c[i].base, "b") && mv_is(c[i].local, "L") &&
		            mv_is(c[i].current, "C"));
		assert_int_equal(c[i].base.time_us, 0);
		assert_true(c[i].local.time_us > 0 && c[i].current.time_us > 0);
	}
	/* A sync without resolving reports them again and commits nothing. */
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_CONFLICT);
	assert_int_equal(ctx_tracker_conflicts(t, &c), 4);
	assert_int_equal(test_version_of(s, "m"), v);

	assert_int_equal(ctx_tracker_resolve(t, "k4", 2, true), CTX_NOT_FOUND);
	assert_int_equal(ctx_tracker_resolve(t, "zz", 2, true), CTX_NOT_FOUND);
	assert_ok(ctx_tracker_resolve(t, "k0", 2, true));
	assert_int_equal(ctx_tracker_conflicts(t, &c), 3);
	assert_ok(ctx_tracker_resolve(t, "k1", 2, false));
	expect_tget(t, "k1", "C");
	assert_int_equal(ctx_tracker_conflicts(t, &c), 2);
	tput(t, "k2", "R");
	tdel(t, "k3");
	assert_int_equal(ctx_tracker_conflicts(t, &c), 0);
	assert_int_equal(ctx_tracker_resolve(t, "k0", 2, false), CTX_NOT_FOUND);

	/* Another writer changes an unrelated key: the base is still older than
	 * current, but nothing resolved is reported again. */
	test_put_str(s, "m", "other", "o");
	uint64_t synced;
	assert_ok(ctx_tracker_sync(t, &synced));
	assert_int_equal(synced, v + 2);
	expect_key(s, "m", "k0", "L");
	expect_key(s, "m", "k1", "C");
	expect_key(s, "m", "k2", "R");
	expect_key(s, "m", "k3", NULL);
	expect_key(s, "m", "k4", "L");
	expect_key(s, "m", "new", "n");
	expect_key(s, "m", "other", "o");
	assert_int_equal(ctx_tracker_pending(t), 0);
	ctx_tracker_close(t);
	ctx_close(s);
}

/* A resolved conflict comes back if current changes the key again. */
static void test_manual_reported_again_after_new_change(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "m"));
	test_put_str(s, "m", "k", "b");
	ctx_tracker *t = open_tracker(s, "m", CTX_MERGE_MANUAL, NULL, NULL);
	tput(t, "k", "L");
	test_put_str(s, "m", "k", "C");
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_CONFLICT);
	assert_ok(ctx_tracker_resolve(t, "k", 1, true));
	test_put_str(s, "m", "k", "D"); /* changed again after the report */
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_CONFLICT);
	const ctx_conflict *c;
	assert_int_equal(ctx_tracker_conflicts(t, &c), 1);
	assert_true(mv_is(c[0].base, "C")); /* what the caller had seen */
	assert_true(mv_is(c[0].local, "L"));
	assert_true(mv_is(c[0].current, "D"));
	assert_ok(ctx_tracker_resolve(t, "k", 1, false));
	/* Taking current: a further remote change simply wins. */
	test_put_str(s, "m", "k", "E");
	assert_ok(ctx_tracker_sync(t, NULL));
	expect_key(s, "m", "k", "E");
	expect_tget(t, "k", "E");
	ctx_tracker_close(t);
	ctx_close(s);
}

/* ---- the merge function ---------------------------------------------------------- */

static void test_function_error_commits_nothing(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "f"));
	test_put_str(s, "f", "k", "b");
	fn_record f = {.status = CTX_IO, .answer = "F"};
	ctx_tracker *t = open_tracker(s, "f", CTX_MERGE_FUNCTION, record_fn, &f);
	tput(t, "a", "1"); /* a non-conflicting edit must not be committed either */
	tput(t, "k", "L");
	test_put_str(s, "f", "k", "C");
	uint64_t v = test_version_of(s, "f"), out = 77;
	assert_int_equal(ctx_tracker_sync(t, &out), CTX_IO);
	assert_int_equal(out, 77);
	assert_true(strlen(ctx_last_error()) > 0);
	assert_int_equal(f.calls, 1);
	assert_int_equal(test_version_of(s, "f"), v);
	expect_key(s, "f", "a", NULL);
	expect_key(s, "f", "k", "C");
	assert_int_equal(ctx_tracker_pending(t), 2);
	assert_int_equal(ctx_tracker_conflicts(t, NULL), 0);

	f.status = CTX_OK;
	assert_ok(ctx_tracker_sync(t, &out));
	assert_int_equal(out, v + 1);
	expect_key(s, "f", "a", "1");
	expect_key(s, "f", "k", "F");
	ctx_tracker_close(t);
	ctx_close(s);
}

static void test_function_missing(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "f"));
	test_put_str(s, "f", "k", "b");
	ctx_tracker *t = open_tracker(s, "f", CTX_MERGE_FUNCTION, NULL, NULL);
	tput(t, "a", "1");
	assert_ok(ctx_tracker_sync(t, NULL)); /* no conflict: no function needed */
	expect_key(s, "f", "a", "1");
	tput(t, "k", "L");
	test_put_str(s, "f", "k", "C");
	uint64_t v = test_version_of(s, "f");
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_INVALID);
	assert_int_equal(test_version_of(s, "f"), v);
	expect_key(s, "f", "k", "C");
	ctx_tracker_close(t);
	ctx_close(s);
}

/* The first call of the merge function commits behind the tracker's back:
 * the tracker's guarded commit then loses, and the retry merges both. */
typedef struct racer {
	ctx_store *s;
	ctx_tracker *t;
	int calls;
} racer;

static ctx_status racing_fn(void *arg, const ctx_conflict *c, ctx_merge_value *out)
{
	racer *r = arg;
	if (r->calls++ == 0) {
		test_put_str(r->s, "r", "other", "w");
		/* No tracker lock is held: the tracker is usable from here. */
		void *v;
		size_t vl;
		assert_ok(ctx_tracker_get(r->t, "k", 1, &v, &vl));
		free(v);
		assert_int_equal(ctx_tracker_pending(r->t), 1);
		/* Syncing from here would wait for itself. */
		assert_int_equal(ctx_tracker_sync(r->t, NULL), CTX_INVALID);
		assert_int_equal(ctx_tracker_refresh(r->t), CTX_INVALID);
	}
	/* Concatenate local and current. */
	static char buf[64];
	snprintf(buf, sizeof(buf), "%.*s+%.*s", (int)c->local.len, (const char *)c->local.value,
	         (int)c->current.len, (const char *)c->current.value);
	*out = (ctx_merge_value){true, buf, strlen(buf), 0};
	return CTX_OK;
}

static void test_retry_after_concurrent_writer(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "r"));
	test_put_str(s, "r", "k", "b");
	racer rc = {s, NULL, 0};
	ctx_tracker *t = open_tracker(s, "r", CTX_MERGE_FUNCTION, racing_fn, &rc);
	rc.t = t;
	tput(t, "k", "L");
	test_put_str(s, "r", "k", "C");
	uint64_t v = test_version_of(s, "r"), out;
	assert_ok(ctx_tracker_sync(t, &out));
	assert_int_equal(rc.calls, 2);
	assert_int_equal(out, v + 2); /* the racer's commit, then ours */
	expect_key(s, "r", "k", "L+C");
	expect_key(s, "r", "other", "w");
	expect_tget(t, "other", "w");
	assert_int_equal(ctx_tracker_pending(t), 0);
	ctx_tracker_close(t);
	ctx_close(s);
}

/* Edits made while a sync runs (here: from inside the merge function) stay
 * pending, and a remote change they were not made on still conflicts. */
typedef struct seen {
	char key[8], base[8], local[8], cur[8];
} seen;

typedef struct during {
	ctx_tracker *t;
	int calls;
	seen seen[8];
} during;

static void mv_str(ctx_merge_value m, char *buf)
{
	if (!m.present)
		strcpy(buf, "-");
	else
		snprintf(buf, 8, "%.*s", (int)m.len, (const char *)m.value);
}

static ctx_status during_fn(void *arg, const ctx_conflict *c, ctx_merge_value *out)
{
	during *d = arg;
	seen *e = &d->seen[d->calls < 8 ? d->calls : 7];
	snprintf(e->key, sizeof(e->key), "%.*s", (int)c->klen, (const char *)c->key);
	mv_str(c->base, e->base);
	mv_str(c->local, e->local);
	mv_str(c->current, e->cur);
	if (d->calls++ == 0) {
		tput(d->t, "k", "K2"); /* re-edit of a key being synced */
		tput(d->t, "n", "N");  /* a new key */
		tput(d->t, "r", "R");  /* a key the remote changed, unseen */
		*out = (ctx_merge_value){true, "F", 1, 0};
		return CTX_OK;
	}
	*out = c->local; /* later: local wins */
	return CTX_OK;
}

static void expect_seen(const during *d, int from, int to, const char *key, const char *base,
                        const char *local, const char *cur)
{
	for (int i = from; i < to; i++) {
		const seen *e = &d->seen[i];
		if (strcmp(e->key, key) != 0)
			continue;
		assert_string_equal(e->base, base);
		assert_string_equal(e->local, local);
		assert_string_equal(e->cur, cur);
		return;
	}
	fail_msg("no conflict on '%s' reached the merge function", key);
}

static void test_edits_during_sync_stay_pending(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "d"));
	test_put_str(s, "d", "k", "b");
	test_put_str(s, "d", "r", "r0");
	during d = {0};
	ctx_tracker *t = open_tracker(s, "d", CTX_MERGE_FUNCTION, during_fn, &d);
	d.t = t;
	tput(t, "k", "L");
	ctx_txn *x;
	assert_ok(ctx_txn_begin(s, "d", &x));
	assert_ok(ctx_txn_put(x, "k", 1, "C", 1));
	assert_ok(ctx_txn_put(x, "r", 1, "r1", 2));
	assert_ok(ctx_txn_commit(x, 0, NULL));

	uint64_t out;
	assert_ok(ctx_tracker_sync(t, &out));
	assert_int_equal(d.calls, 1);
	assert_int_equal(ctx_tracker_base_version(t), out);
	expect_key(s, "d", "k", "F");
	expect_key(s, "d", "n", NULL);
	expect_key(s, "d", "r", "r1");
	assert_int_equal(ctx_tracker_pending(t), 3);
	expect_tget(t, "k", "K2");
	expect_tget(t, "n", "N");
	expect_tget(t, "r", "R");

	/* k: re-edited on the local value, which lost to F: a conflict again.
	 * r: edited on r0, the remote had made it r1: a conflict. n: just added. */
	assert_ok(ctx_tracker_sync(t, &out));
	assert_int_equal(d.calls, 3);
	expect_key(s, "d", "k", "K2");
	expect_key(s, "d", "n", "N");
	expect_key(s, "d", "r", "R");
	assert_int_equal(ctx_tracker_pending(t), 0);
	expect_seen(&d, 0, 1, "k", "b", "L", "C");
	expect_seen(&d, 1, 3, "k", "b", "K2", "F");
	expect_seen(&d, 1, 3, "r", "r0", "R", "r1");
	ctx_tracker_close(t);
	ctx_close(s);
}

/* ---- size, timer, points ------------------------------------------------------------- */

static void test_sync_many_changes_one_version(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "big"));
	ctx_txn *x;
	assert_ok(ctx_txn_begin(s, "big", &x));
	for (int i = 0; i < 1000; i++) {
		char k[16];
		int n = snprintf(k, sizeof(k), "base%d", i);
		assert_ok(ctx_txn_put(x, k, (size_t)n, "v", 1));
	}
	assert_ok(ctx_txn_commit(x, 0, NULL));
	ctx_tracker *t = open_tracker(s, "big", CTX_MERGE_LATEST, NULL, NULL);
	for (int i = 0; i < 100; i++) {
		char k[16], v[16];
		int n = snprintf(k, sizeof(k), i < 50 ? "new%d" : "base%d", i);
		int m = snprintf(v, sizeof(v), "val%d", i);
		if (i >= 90)
			assert_ok(ctx_tracker_del(t, k, (size_t)n));
		else
			assert_ok(ctx_tracker_put(t, k, (size_t)n, v, (size_t)m));
	}
	assert_int_equal(ctx_tracker_pending(t), 100);
	uint64_t v0 = test_version_of(s, "big"), out;
	assert_ok(ctx_tracker_sync(t, &out));
	assert_int_equal(out, v0 + 1);
	ctx_state *st;
	assert_ok(ctx_get(s, "big", &st));
	assert_int_equal(ctx_state_version(st), v0 + 1);
	assert_int_equal(ctx_state_count(st), 1000 + 50 - 10);
	for (int i = 0; i < 100; i++) {
		char k[16], v[16];
		int n = snprintf(k, sizeof(k), i < 50 ? "new%d" : "base%d", i);
		int m = snprintf(v, sizeof(v), "val%d", i);
		const void *got;
		size_t gl;
		bool found = ctx_state_lookup(st, k, (size_t)n, &got, &gl);
		assert_int_equal(found, i < 90);
		if (found) {
			assert_int_equal(gl, (size_t)m);
			assert_memory_equal(got, v, gl);
		}
	}
	ctx_state_release(st);
	assert_int_equal(ctx_tracker_pending(t), 0);
	ctx_tracker_close(t);
	ctx_close(s);
}

static void test_timer_sync(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "tm"));
	ctx_tracker_options o = {.strategy = CTX_MERGE_LATEST, .sync_interval_ms = 5};
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "tm", &o, &t));
	tput(t, "a", "1");
	double end = test_now() + 60;
	while (ctx_tracker_pending(t) && test_now() < end)
		sleep_ms(1);
	assert_int_equal(ctx_tracker_pending(t), 0);
	expect_key(s, "tm", "a", "1");

	/* The timer also moves the base on when others commit. */
	test_put_str(s, "tm", "b", "2");
	end = test_now() + 60;
	while (ctx_tracker_is_stale(t) && test_now() < end)
		sleep_ms(1);
	assert_false(ctx_tracker_is_stale(t));
	expect_tget(t, "b", "2");

	/* Edits and syncs of the caller go on while the timer syncs. */
	long n = test_iters(300, 50);
	for (long i = 0; i < n; i++) {
		char k[16];
		int kl = snprintf(k, sizeof(k), "k%ld", i);
		assert_ok(ctx_tracker_put(t, k, (size_t)kl, k, (size_t)kl));
		if (i % 50 == 0)
			assert_ok(ctx_tracker_sync(t, NULL));
		if (i % 10 == 0)
			sleep_ms(1);
	}
	assert_ok(ctx_tracker_sync(t, NULL));
	assert_int_equal(ctx_tracker_pending(t), 0);
	ctx_state *st;
	assert_ok(ctx_get(s, "tm", &st));
	assert_int_equal(ctx_state_count(st), (size_t)n + 2);
	ctx_state_release(st);
	ctx_tracker_close(t);

	/* Closing right away, and with edits pending, stops the timer cleanly. */
	o.sync_interval_ms = 1;
	for (int i = 0; i < 20; i++) {
		assert_ok(ctx_tracker_open(s, "tm", &o, &t));
		tput(t, "late", "x");
		if (i % 2)
			sleep_ms(1);
		ctx_tracker_close(t);
	}
	ctx_close(s);
}

/* Manual conflicts found by a timer sync show in ctx_tracker_conflicts. */
static void test_timer_manual_conflicts(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "tm"));
	ctx_tracker_options o = {.strategy = CTX_MERGE_MANUAL, .sync_interval_ms = 2};
	ctx_tracker *t = NULL;
	/*
	 * The conflict needs "L" and "C" both made against the base "b". A
	 * tick that runs after "C" but before "L" exists finds nothing to write
	 * and moves the base on to "C" (then "L" is no conflict), so "L" is
	 * made first and "C" after. The attempt counts when "C" came right
	 * after the open's version (+1 per commit): no tick committed "L"
	 * before it, and a sync of "L", guarded on the old base, must meet
	 * "C". On a loaded machine a tick can commit "L" first: try again.
	 */
	for (int attempt = 0;; attempt++) {
		assert_true(attempt < 200);
		test_put_str(s, "tm", "k", "b");
		assert_ok(ctx_tracker_open(s, "tm", &o, &t));
		uint64_t v0 = ctx_tracker_base_version(t);
		tput(t, "k", "L");
		uint64_t vc;
		assert_ok(ctx_put(s, "tm", "k", 1, "C", 1, &vc));
		if (vc == v0 + 1)
			break;
		ctx_tracker_close(t);
	}
	const ctx_conflict *c = NULL;
	double end = test_now() + 60;
	while (ctx_tracker_conflicts(t, &c) == 0 && test_now() < end)
		sleep_ms(1);
	assert_int_equal(ctx_tracker_conflicts(t, &c), 1);
	assert_true(mv_is(c[0].local, "L") && mv_is(c[0].current, "C"));
	assert_ok(ctx_tracker_resolve(t, "k", 1, true));
	end = test_now() + 60;
	while (ctx_tracker_pending(t) && test_now() < end)
		sleep_ms(1);
	assert_int_equal(ctx_tracker_pending(t), 0);
	expect_key(s, "tm", "k", "L");
	ctx_tracker_close(t);
	ctx_close(s);
}

static void test_point_on_sync(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "p"));
	ctx_tracker_options o = {.strategy = CTX_MERGE_LATEST, .point_on_sync = true};
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "p", &o, &t));
	ctx_point *pts;
	size_t n;
	assert_ok(ctx_point_list(s, "p", &pts, &n));
	assert_int_equal(n, 0);
	free(pts);

	uint64_t v1, v2, v3;
	tput(t, "a", "1");
	assert_ok(ctx_tracker_sync(t, &v1));
	assert_ok(ctx_tracker_sync(t, &v2)); /* nothing to do: no point */
	assert_int_equal(v2, v1);
	test_put_str(s, "p", "b", "2");
	assert_ok(ctx_tracker_sync(t, &v2)); /* only moves the base: no point */
	tput(t, "c", "3");
	assert_ok(ctx_tracker_sync(t, &v3));
	assert_ok(ctx_point_list(s, "p", &pts, &n));
	assert_int_equal(n, 2);
	assert_int_equal(pts[0].version, v1);
	assert_int_equal(pts[1].version, v3);
	assert_int_equal(pts[1].keys, 3);
	free(pts);
	ctx_tracker_close(t);
	ctx_close(s);
}

/* ---- refresh, staleness, reads ---------------------------------------------------------- */

static void test_refresh(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "f"));
	test_put_str(s, "f", "k", "b");
	test_put_str(s, "f", "x", "x0");
	ctx_tracker *t = open_tracker(s, "f", CTX_MERGE_MANUAL, NULL, NULL);
	uint64_t base = ctx_tracker_base_version(t);
	assert_ok(ctx_tracker_refresh(t)); /* not stale: nothing happens */
	assert_int_equal(ctx_tracker_base_version(t), base);

	tput(t, "k", "L");
	tput(t, "same", "S");
	test_put_str(s, "f", "x", "x1");   /* remote only */
	test_put_str(s, "f", "same", "S"); /* both made the same change */
	uint64_t v = test_version_of(s, "f"), c0 = v;
	assert_ok(ctx_tracker_refresh(t));
	assert_int_equal(ctx_tracker_base_version(t), v);
	assert_false(ctx_tracker_is_stale(t));
	assert_int_equal(ctx_tracker_pending(t), 1); /* "same" is in the base now */
	expect_tget(t, "x", "x1");
	expect_tget(t, "k", "L");
	expect_tget(t, "same", "S");
	assert_int_equal(test_version_of(s, "f"), c0); /* refresh commits nothing */

	/* A conflicting remote change: refresh refuses and changes nothing. */
	test_put_str(s, "f", "k", "C");
	assert_int_equal(ctx_tracker_refresh(t), CTX_CONFLICT);
	assert_true(strlen(ctx_last_error()) > 0);
	assert_int_equal(ctx_tracker_base_version(t), v);
	assert_int_equal(ctx_tracker_pending(t), 1);
	expect_tget(t, "k", "L");
	expect_tget(t, "x", "x1");
	assert_true(ctx_tracker_is_stale(t));
	/* Sync resolves it (manual here), after which refresh works again. */
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_CONFLICT);
	assert_ok(ctx_tracker_resolve(t, "k", 1, true));
	assert_ok(ctx_tracker_refresh(t)); /* resolved: no conflict any more */
	assert_int_equal(ctx_tracker_pending(t), 1);
	assert_ok(ctx_tracker_sync(t, NULL));
	expect_key(s, "f", "k", "L");
	ctx_tracker_close(t);
	ctx_close(s);
}

static void test_stale_and_noop_sync(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "st"));
	test_put_str(s, "st", "a", "1");
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "st", NULL, &t)); /* NULL options: latest */
	uint64_t v = test_version_of(s, "st"), out = 0;
	assert_int_equal(ctx_tracker_base_version(t), v);
	assert_false(ctx_tracker_is_stale(t));
	assert_int_equal(ctx_tracker_pending(t), 0);

	assert_ok(ctx_tracker_sync(t, &out)); /* no-op: returns the base */
	assert_int_equal(out, v);
	assert_int_equal(test_version_of(s, "st"), v);

	test_put_str(s, "st", "b", "2");
	assert_true(ctx_tracker_is_stale(t));
	expect_tget(t, "b", NULL);            /* the working copy is the base */
	assert_ok(ctx_tracker_sync(t, &out)); /* moves the base, commits nothing */
	assert_int_equal(out, v + 1);
	assert_int_equal(test_version_of(s, "st"), v + 1);
	assert_false(ctx_tracker_is_stale(t));
	expect_tget(t, "b", "2");

	/* Edits that change nothing make no version either. */
	tput(t, "a", "1");
	assert_int_equal(ctx_tracker_pending(t), 1);
	assert_ok(ctx_tracker_sync(t, &out));
	assert_int_equal(out, v + 1);
	assert_int_equal(test_version_of(s, "st"), v + 1);
	assert_int_equal(ctx_tracker_pending(t), 0);
	ctx_tracker_close(t);
	ctx_close(s);
}

static void test_get_working_copy(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "g"));
	test_put_str(s, "g", "a", "1");
	test_put_str(s, "g", "b", "2");
	ctx_tracker *t = open_tracker(s, "g", CTX_MERGE_LATEST, NULL, NULL);
	expect_tget(t, "a", "1");
	tput(t, "a", "one");
	tdel(t, "b");
	tput(t, "c", "");
	tput(t, "d", "4");
	tdel(t, "d");
	tdel(t, "never");
	expect_tget(t, "a", "one");
	expect_tget(t, "b", NULL);
	expect_tget(t, "c", "");
	expect_tget(t, "d", NULL);
	expect_tget(t, "never", NULL);
	expect_key(s, "g", "a", "1"); /* nothing reaches the store before a sync */
	assert_int_equal(ctx_tracker_pending(t), 5);
	/* Binary keys and values. */
	const char bk[3] = {0, 1, 0}, bv[4] = {9, 0, 9, 0};
	assert_ok(ctx_tracker_put(t, bk, 3, bv, 4));
	void *v;
	size_t vl;
	assert_ok(ctx_tracker_get(t, bk, 3, &v, &vl));
	assert_int_equal(vl, 4);
	assert_memory_equal(v, bv, 4);
	free(v);
	assert_ok(ctx_tracker_sync(t, NULL));
	expect_key(s, "g", "a", "one");
	expect_key(s, "g", "b", NULL);
	expect_key(s, "g", "c", "");
	expect_key(s, "g", "d", NULL);
	ctx_tracker_close(t);
	ctx_close(s);
}

static void test_arguments(void **unused)
{
	ctx_options o;
	ctx_options_init(&o);
	o.max_key_size = 8;
	o.max_value_size = 16;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "a"));
	ctx_tracker *t = (ctx_tracker *)&t;
	assert_int_equal(ctx_tracker_open(NULL, "a", NULL, &t), CTX_INVALID);
	assert_int_equal(ctx_tracker_open(s, NULL, NULL, &t), CTX_INVALID);
	assert_int_equal(ctx_tracker_open(s, "a", NULL, NULL), CTX_INVALID);
	assert_int_equal(ctx_tracker_open(s, "bad\n", NULL, &t), CTX_INVALID);
	assert_int_equal(ctx_tracker_open(s, "missing", NULL, &t), CTX_NOT_FOUND);
	ctx_tracker_options bad = {.strategy = (ctx_merge_strategy)42};
	assert_int_equal(ctx_tracker_open(s, "a", &bad, &t), CTX_INVALID);
	assert_ptr_equal(t, (ctx_tracker *)&t); /* untouched */

	assert_ok(ctx_tracker_open(s, "a", NULL, &t));
	assert_int_equal(ctx_tracker_put(t, "123456789", 9, "v", 1), CTX_INVALID);
	assert_true(strlen(ctx_last_error()) > 0);
	assert_int_equal(ctx_tracker_put(t, "k", 1, "0123456789abcdefg", 17), CTX_INVALID);
	assert_int_equal(ctx_tracker_put(t, "", 0, "v", 1), CTX_INVALID);
	assert_int_equal(ctx_tracker_put(t, "k", 1, NULL, 1), CTX_INVALID);
	assert_int_equal(ctx_tracker_del(t, "123456789", 9), CTX_INVALID);
	assert_int_equal(ctx_tracker_put(NULL, "k", 1, "v", 1), CTX_INVALID);
	assert_int_equal(ctx_tracker_del(NULL, "k", 1), CTX_INVALID);
	assert_int_equal(ctx_tracker_pending(t), 0);
	assert_ok(ctx_tracker_put(t, "12345678", 8, "0123456789abcdef", 16));
	void *v;
	size_t vl;
	assert_int_equal(ctx_tracker_get(t, "k", 1, NULL, &vl), CTX_INVALID);
	assert_int_equal(ctx_tracker_get(NULL, "k", 1, &v, &vl), CTX_INVALID);
	assert_int_equal(ctx_tracker_sync(NULL, NULL), CTX_INVALID);
	assert_int_equal(ctx_tracker_refresh(NULL), CTX_INVALID);
	assert_int_equal(ctx_tracker_resolve(NULL, "k", 1, true), CTX_INVALID);
	assert_int_equal(ctx_tracker_conflicts(NULL, NULL), 0);
	assert_int_equal(ctx_tracker_pending(NULL), 0);
	assert_int_equal(ctx_tracker_base_version(NULL), 0);
	assert_false(ctx_tracker_is_stale(NULL));
	ctx_tracker_close(NULL);
	assert_ok(ctx_tracker_sync(t, NULL));
	expect_key(s, "a", "12345678", "0123456789abcdef");
	ctx_tracker_close(t); /* close with edits pending discards them */
	ctx_close(s);
}

static void test_dropped_context(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "d"));
	test_put_str(s, "d", "a", "1");
	ctx_tracker *t = open_tracker(s, "d", CTX_MERGE_LATEST, NULL, NULL);
	tput(t, "b", "2");
	assert_ok(ctx_drop(s, "d"));
	uint64_t out = 5;
	assert_int_equal(ctx_tracker_sync(t, &out), CTX_NOT_FOUND);
	assert_int_equal(out, 5);
	assert_true(strlen(ctx_last_error()) > 0);
	assert_int_equal(ctx_tracker_refresh(t), CTX_NOT_FOUND);
	assert_true(ctx_tracker_is_stale(t));
	assert_int_equal(ctx_tracker_pending(t), 1);
	expect_tget(t, "a", "1"); /* the working copy stays readable */
	expect_tget(t, "b", "2");
	assert_int_equal(ctx_tracker_put(t, "c", 1, "3", 1), CTX_NOT_FOUND);

	/* Created again under the same id: a different context. */
	assert_ok(ctx_create(s, "d"));
	for (int i = 0; i < 5; i++)
		test_put_str(s, "d", "z", "z");
	assert_int_equal(ctx_tracker_sync(t, NULL), CTX_NOT_FOUND);
	assert_int_equal(ctx_tracker_refresh(t), CTX_NOT_FOUND);
	assert_true(ctx_tracker_is_stale(t));
	expect_key(s, "d", "b", NULL);
	ctx_tracker_close(t);

	/* A tracker of the new context works. */
	t = open_tracker(s, "d", CTX_MERGE_LATEST, NULL, NULL);
	tput(t, "b", "2");
	assert_ok(ctx_tracker_sync(t, NULL));
	expect_key(s, "d", "b", "2");
	ctx_tracker_close(t);
	ctx_close(s);
}

/* A clock that stands still: every create happens in the same microsecond. */
static uint64_t frozen_clock(void *arg)
{
	return *(const uint64_t *)arg;
}

/* Drop and create again within one microsecond (same id, same creation time,
 * same version 1 as the tracker's base): still another context. Nothing the
 * tracker holds may reach it. */
static void check_recreated_same_us(const char *dir)
{
	static const uint64_t frozen = 1700000000000000ull;
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.clock_us = frozen_clock;
	o.clock_arg = (void *)&frozen;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "r"));
	ctx_tracker *t = open_tracker(s, "r", CTX_MERGE_LATEST, NULL, NULL);
	tput(t, "b", "2");
	assert_ok(ctx_drop(s, "r"));
	assert_ok(ctx_create(s, "r"));
	ctx_state *st;
	assert_ok(ctx_get(s, "r", &st));
	assert_int_equal(ctx_state_version(st), ctx_tracker_base_version(t));
	assert_int_equal(ctx_state_created_us(st), frozen);
	ctx_state_release(st);

	uint64_t out = 77;
	assert_int_equal(ctx_tracker_sync(t, &out), CTX_NOT_FOUND);
	assert_int_equal(out, 77);
	assert_int_equal(ctx_tracker_refresh(t), CTX_NOT_FOUND);
	assert_true(ctx_tracker_is_stale(t));
	assert_int_equal(ctx_tracker_put(t, "c", 1, "3", 1), CTX_NOT_FOUND);
	assert_int_equal(ctx_tracker_del(t, "c", 1), CTX_NOT_FOUND);
	assert_int_equal(ctx_tracker_pending(t), 1);
	expect_tget(t, "b", "2");
	ctx_tracker_close(t);

	/* The new context is untouched: version 1, empty. */
	assert_ok(ctx_get(s, "r", &st));
	assert_int_equal(ctx_state_version(st), 1);
	assert_int_equal(ctx_state_count(st), 0);
	ctx_state_release(st);
	expect_key(s, "r", "b", NULL);
	ctx_close(s);
}

static void test_recreated_in_same_microsecond(void **unused)
{
	check_recreated_same_us(NULL);
	char *dir = test_make_dir("tracker-recreate");
	check_recreated_same_us(dir);
	test_remove_dir(dir);
	free(dir);
}

/* ---- concurrency ------------------------------------------------------------------ */

typedef struct worker {
	ctx_store *s;
	int n;
	long rounds;
} worker;

static void *tracker_worker(void *arg)
{
	worker *w = arg;
	ctx_tracker_options o = {.strategy = w->n % 2 ? CTX_MERGE_LATEST : CTX_MERGE_OLDEST,
	                         .sync_interval_ms = w->n == 0 ? 1 : 0};
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(w->s, "hot", &o, &t));
	for (long i = 0; i < w->rounds; i++) {
		char k[32], v[32];
		int kl = snprintf(k, sizeof(k), "w%d-%ld", w->n, i);
		int vl = snprintf(v, sizeof(v), "%d", w->n);
		assert_ok(ctx_tracker_put(t, k, (size_t)kl, v, (size_t)vl));
		assert_ok(ctx_tracker_put(t, "shared", 6, v, (size_t)vl));
		if (i % 3 == 2)
			assert_ok(ctx_tracker_sync(t, NULL));
	}
	assert_ok(ctx_tracker_sync(t, NULL));
	assert_int_equal(ctx_tracker_pending(t), 0);
	ctx_tracker_close(t);
	return NULL;
}

/* Trackers on one hot context, committing concurrently with each other and
 * with plain writers: every tracker's own keys arrive (no lost update). */
static void test_concurrent_trackers(void **unused)
{
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "hot"));
	enum { N = 4 };
	pthread_t th[N];
	worker w[N];
	long rounds = test_iters(300, 40);
	for (int i = 0; i < N; i++) {
		w[i] = (worker){s, i, rounds};
		assert_int_equal(pthread_create(&th[i], NULL, tracker_worker, &w[i]), 0);
	}
	for (long i = 0; i < rounds; i++)
		test_put_str(s, "hot", "shared", "plain");
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	ctx_state *st;
	assert_ok(ctx_get(s, "hot", &st));
	assert_int_equal(ctx_state_count(st), (size_t)(N * rounds) + 1);
	ctx_state_release(st);
	for (int n = 0; n < N; n++) {
		char k[32], v[32];
		snprintf(k, sizeof(k), "w%d-%ld", n, rounds - 1);
		snprintf(v, sizeof(v), "%d", n);
		expect_key(s, "hot", k, v);
	}
	ctx_close(s);
}

/* With durability always the commit waits for fsync; the tracker holds no
 * lock meanwhile, so reads of the working copy go on. */
typedef struct reader_arg {
	ctx_tracker *t;
	_Atomic int stop;
	long reads;
} reader_arg;

static void *reader_main(void *arg)
{
	reader_arg *r = arg;
	while (!atomic_load(&r->stop)) {
		void *v;
		size_t vl;
		if (ctx_tracker_get(r->t, "a", 1, &v, &vl) == CTX_OK)
			free(v);
		(void)ctx_tracker_pending(r->t);
		(void)ctx_tracker_base_version(r->t);
		r->reads++;
	}
	return NULL;
}

static void test_durable_store(void **unused)
{
	char *dir = test_make_dir("tracker");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "dur"));
	ctx_tracker_options to = {.strategy = CTX_MERGE_LATEST, .point_on_sync = true};
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "dur", &to, &t));
	reader_arg r = {t, 0, 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, reader_main, &r), 0);
	long n = test_iters(50, 10);
	for (long i = 0; i < n; i++) {
		char v[24];
		int vl = snprintf(v, sizeof(v), "%ld", i);
		assert_ok(ctx_tracker_put(t, "a", 1, v, (size_t)vl));
		assert_ok(ctx_tracker_sync(t, NULL));
	}
	atomic_store(&r.stop, 1);
	pthread_join(th, NULL);
	ctx_tracker_close(t);
	ctx_close(s);

	/* The synced changes and their points survive a reopen. */
	assert_ok(ctx_open(&o, &s));
	char last[24];
	snprintf(last, sizeof(last), "%ld", n - 1);
	expect_key(s, "dur", "a", last);
	ctx_point *pts;
	size_t np;
	assert_ok(ctx_point_list(s, "dur", &pts, &np));
	assert_true(np > 0);
	free(pts);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_truth_table),
	    cmocka_unit_test(test_function_answers),
	    cmocka_unit_test(test_latest_uses_key_time),
	    cmocka_unit_test(test_manual_resolve_and_resync),
	    cmocka_unit_test(test_manual_reported_again_after_new_change),
	    cmocka_unit_test(test_function_error_commits_nothing),
	    cmocka_unit_test(test_function_missing),
	    cmocka_unit_test(test_retry_after_concurrent_writer),
	    cmocka_unit_test(test_edits_during_sync_stay_pending),
	    cmocka_unit_test(test_sync_many_changes_one_version),
	    cmocka_unit_test(test_timer_sync),
	    cmocka_unit_test(test_timer_manual_conflicts),
	    cmocka_unit_test(test_point_on_sync),
	    cmocka_unit_test(test_refresh),
	    cmocka_unit_test(test_stale_and_noop_sync),
	    cmocka_unit_test(test_get_working_copy),
	    cmocka_unit_test(test_arguments),
	    cmocka_unit_test(test_dropped_context),
	    cmocka_unit_test(test_recreated_in_same_microsecond),
	    cmocka_unit_test(test_concurrent_trackers),
	    cmocka_unit_test(test_durable_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
