/*
 * test_review8_races.c - round 8 review: what round 7 added to the commit
 * and read paths, raced against drops, re-creates of the same ids, expiry
 * and the log's backlog bound (run it under ASan and TSan too).
 *
 * Round 7 made ctx_put/ctx_del commit without a context reference (an RCU
 * lookup and a write-lock trylock, where the store does not wait for
 * syncs), added ctx_prefetch (no reference, stage by stage),
 * ctx_txn_begin_state (a transaction bound to the incarnation a state was
 * read from), ctx_count_with_fields (one table walk) and the root hint, and
 * changed state_retain_current. Each scenario runs, on a few ids at once:
 *   - putters: ctx_put / ctx_del of their own keys, by id;
 *   - a state committer: ctx_get_latest, then ctx_txn_begin_state and a
 *     commit (nowait where the store has a log) that copies the state's
 *     "inc" into "w";
 *   - a dropper: ctx_drop / ctx_drop_nowait, then a create of the same id
 *     (ctx_txn_begin_create) whose version 1 holds a fresh "inc" token;
 *   - a ttl thread: ctx_set_ttl on the ids, a fake clock moved forward and
 *     ctx_expire_now, so contexts expire under the others;
 *   - a reader: ctx_get / ctx_get_latest / ctx_prefetch (with ids that name
 *     nothing) / ctx_count_with_fields.
 * Invariants (no timing, no machine-dependent counts):
 *   - every call answers one of its documented statuses; a successful put
 *     or del reports a version >= 2;
 *   - in every state read, "w" is absent or equals "inc": a transaction
 *     begun from a state never lands in a later incarnation of its id (the
 *     tokens are unique per create);
 *   - ctx_count_with_fields never exceeds the ids in play, and once all is
 *     quiet it equals the listed contexts that have fields;
 *   - with a dir: the dump before ctx_close equals the dump after reopening
 *     (what was applied in memory is what the log holds, also for the puts
 *     that committed without a reference while their context was dropped).
 * Scenarios: memory only; a dir under durability batch with a 64 KiB
 * backlog bound (writers held back often); a dir under durability always
 * (nowait commits and drops).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { NIDS = 4, PUTTERS = 2 };

static atomic_uint_fast64_t clock_now;
static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return atomic_load(&clock_now);
}

typedef struct race {
	ctx_store *s;
	bool has_log;
	long iters;
	atomic_int running; /* worker threads still going */
	atomic_uint_fast64_t token;
} race;

static void id_of(int i, char *buf)
{
	snprintf(buf, 16, "r%d", i);
}

/* "w" absent or equal to "inc" in st. */
static void check_state(const ctx_state *st)
{
	const void *w, *inc;
	size_t wn, incn;
	if (!ctx_state_lookup(st, "w", 1, &w, &wn))
		return;
	bool has_inc = ctx_state_lookup(st, "inc", 3, &inc, &incn);
	if (!has_inc || wn != incn || memcmp(w, inc, wn) != 0)
		t_fail(__LINE__, "w differs from inc: a begin_state commit crossed incarnations",
		       (long long)ctx_state_version(st));
}

static void *putter(void *p)
{
	race *r = p;
	static atomic_int next;
	int me = atomic_fetch_add(&next, 1);
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (uint64_t)(me + 1);
	char key[16];
	snprintf(key, sizeof(key), "p%d", me);
	for (long i = 0; i < r->iters; i++) {
		char id[16], val[24];
		id_of((int)test_rand_below(&rnd, NIDS), id);
		uint64_t v = 0;
		ctx_status st;
		if (test_rand_below(&rnd, 4) == 0) {
			st = ctx_del(r->s, id, key, strlen(key), &v);
		} else {
			int n = snprintf(val, sizeof(val), "%ld", i);
			st = ctx_put(r->s, id, key, strlen(key), val, (size_t)n, &v);
		}
		if (st == CTX_OK && v < 2)
			t_fail(__LINE__, "put/del reported a version below 2", (long long)v);
		if (st != CTX_OK && st != CTX_NOT_FOUND)
			t_fail_detail(__LINE__, "ctx_put/ctx_del status", st, ctx_last_error());
	}
	atomic_fetch_sub(&r->running, 1);
	return NULL;
}

static void *state_committer(void *p)
{
	race *r = p;
	uint64_t rnd = 77;
	for (long i = 0; i < r->iters; i++) {
		char id[16];
		id_of((int)test_rand_below(&rnd, NIDS), id);
		ctx_state *st;
		if (ctx_get_latest(r->s, id, &st) != CTX_OK)
			continue;
		check_state(st);
		const void *inc;
		size_t n;
		bool has = ctx_state_lookup(st, "inc", 3, &inc, &n);
		ctx_txn *t = NULL;
		ctx_status s1 = ctx_txn_begin_state(st, &t);
		if (s1 != CTX_OK)
			t_fail_detail(__LINE__, "ctx_txn_begin_state", s1, ctx_last_error());
		if (s1 == CTX_OK && has && ctx_txn_put(t, "w", 1, inc, n) != CTX_OK)
			t_fail(__LINE__, "ctx_txn_put", 0);
		/* st is released before the commit half the time: the
		 * transaction must hold what it needs itself. */
		bool early = i % 2;
		if (early)
			ctx_state_release(st);
		if (s1 == CTX_OK) {
			uint64_t rev;
			ctx_status c = r->has_log && i % 3 ? ctx_txn_commit_nowait(t, 0, NULL, &rev)
			                                   : ctx_txn_commit(t, 0, NULL);
			if (c != CTX_OK && c != CTX_NOT_FOUND)
				t_fail_detail(__LINE__, "begin_state commit status", c,
				              ctx_last_error());
		}
		if (!early)
			ctx_state_release(st);
	}
	atomic_fetch_sub(&r->running, 1);
	return NULL;
}

static ctx_status create_with_token(race *r, const char *id, bool nowait)
{
	char tok[24];
	int n =
	    snprintf(tok, sizeof(tok), "t%llu", (unsigned long long)atomic_fetch_add(&r->token, 1));
	ctx_txn *t;
	ctx_status st = ctx_txn_begin_create(r->s, id, &t);
	if (st != CTX_OK)
		return st;
	if ((st = ctx_txn_put(t, "inc", 3, tok, (size_t)n)) != CTX_OK) {
		ctx_txn_abort(t);
		return st;
	}
	uint64_t rev;
	return nowait ? ctx_txn_commit_nowait(t, 0, NULL, &rev) : ctx_txn_commit(t, 0, NULL);
}

static void *dropper(void *p)
{
	race *r = p;
	uint64_t rnd = 991;
	for (long i = 0; i < r->iters / 4; i++) {
		char id[16];
		id_of((int)test_rand_below(&rnd, NIDS), id);
		uint64_t rev;
		bool nowait = r->has_log && test_rand_below(&rnd, 2);
		ctx_status st = nowait ? ctx_drop_nowait(r->s, id, &rev) : ctx_drop(r->s, id);
		if (st != CTX_OK && st != CTX_NOT_FOUND)
			t_fail_detail(__LINE__, "drop status", st, ctx_last_error());
		st = create_with_token(r, id, r->has_log && test_rand_below(&rnd, 2));
		if (st != CTX_OK && st != CTX_EXISTS)
			t_fail_detail(__LINE__, "create status", st, ctx_last_error());
	}
	atomic_fetch_sub(&r->running, 1);
	return NULL;
}

/* ttls on the ids, the clock moved on by more than they allow, the reaper
 * run: contexts expire while the others use them. */
static void *expirer(void *p)
{
	race *r = p;
	uint64_t rnd = 4242;
	for (long i = 0; i < r->iters / 16; i++) {
		char id[16];
		id_of((int)test_rand_below(&rnd, NIDS), id);
		ctx_status st = ctx_set_ttl(r->s, id, 5);
		if (st != CTX_OK && st != CTX_NOT_FOUND)
			t_fail_detail(__LINE__, "ctx_set_ttl status", st, ctx_last_error());
		atomic_fetch_add(&clock_now, 10 * 1000);
		(void)ctx_expire_now(r->s);
	}
	atomic_fetch_sub(&r->running, 1);
	return NULL;
}

static void *reader(void *p)
{
	race *r = p;
	const char *ids[NIDS + 2];
	size_t lens[NIDS + 2];
	char names[NIDS][16];
	for (int i = 0; i < NIDS; i++) {
		id_of(i, names[i]);
		ids[i] = names[i];
		lens[i] = strlen(names[i]);
	}
	ids[NIDS] = "nothing-here";
	lens[NIDS] = strlen(ids[NIDS]);
	ids[NIDS + 1] = "r0-but-longer";
	lens[NIDS + 1] = 2; /* "r0" by length */
	long loops = 0;
	while (atomic_load(&r->running) > 0 || loops == 0) {
		loops++;
		ctx_prefetch(r->s, ids, lens, NIDS + 2);
		for (int i = 0; i < NIDS; i++) {
			ctx_state *st;
			ctx_status g = ctx_get(r->s, ids[i], &st);
			if (g == CTX_OK) {
				check_state(st);
				ctx_state_release(st);
			} else if (g != CTX_NOT_FOUND) {
				t_fail_detail(__LINE__, "ctx_get status", g, ctx_last_error());
			}
			g = ctx_get_latest(r->s, ids[i], &st);
			if (g == CTX_OK) {
				check_state(st);
				ctx_state_release(st);
			} else if (g != CTX_NOT_FOUND) {
				t_fail_detail(__LINE__, "ctx_get_latest status", g,
				              ctx_last_error());
			}
		}
		uint64_t rev;
		size_t n = ctx_count_with_fields(r->s, &rev);
		if (n > NIDS)
			t_fail(__LINE__, "ctx_count_with_fields above the ids in play",
			       (long long)n);
	}
	return NULL;
}

static ctx_store *open_store(const char *dir, ctx_durability d)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = d;
	o.batch_ms = 1;
	o.log_backlog_bytes = 64 << 10;
	o.clock_us = fake_clock;
	o.reaper_ms = 1000000; /* the expirer runs the reaper */
	ctx_store *s;
	ctx_status st = ctx_open(&o, &s);
	if (st != CTX_OK)
		fail_msg("ctx_open: %s: %s", ctx_strerror(st), ctx_last_error());
	return s;
}

/* Listed contexts with fields, by ctx_list_ids and ctx_get_latest. */
static size_t with_fields(ctx_store *s)
{
	size_t n = 0;
	for (int i = 0; i < NIDS; i++) {
		char id[16];
		id_of(i, id);
		ctx_state *st;
		if (ctx_get_latest(s, id, &st) == CTX_OK) {
			n += ctx_state_count(st) > 0;
			ctx_state_release(st);
		}
	}
	return n;
}

static void run_race(const char *dir, ctx_durability d)
{
	reset_failures();
	atomic_store(&clock_now, 1000000000000ull);
	race r = {.s = dir ? open_store(dir, d) : NULL, .has_log = dir != NULL};
	if (!dir) {
		ctx_options o;
		ctx_options_init(&o);
		o.clock_us = fake_clock;
		o.reaper_ms = 1000000;
		assert_ok(ctx_open(&o, &r.s));
	}
	/* (durability always: every waiting call waits for an fsync) */
	r.iters = test_iters(!dir ? 20000 : d == CTX_DURABILITY_ALWAYS ? 1500 : 6000, 400);
	atomic_init(&r.token, 1);
	for (int i = 0; i < NIDS; i++) {
		char id[16];
		id_of(i, id);
		assert_ok(create_with_token(&r, id, false));
	}
	enum { WORKERS = PUTTERS + 3 };
	pthread_t th[WORKERS + 1];
	atomic_store(&r.running, WORKERS);
	int k = 0;
	for (int i = 0; i < PUTTERS; i++)
		pthread_create(&th[k++], NULL, putter, &r);
	pthread_create(&th[k++], NULL, state_committer, &r);
	pthread_create(&th[k++], NULL, dropper, &r);
	pthread_create(&th[k++], NULL, expirer, &r);
	pthread_create(&th[k++], NULL, reader, &r);
	for (int i = 0; i < k; i++)
		pthread_join(th[i], NULL);
	assert_no_thread_failures();
	/* Quiet: reap what expired, clear the ttls left (access times are
	 * not what this test compares), and a waiting create makes
	 * everything before it visible. */
	(void)ctx_expire_now(r.s);
	for (int i = 0; i < NIDS; i++) {
		char id[16];
		id_of(i, id);
		ctx_status st = ctx_set_ttl(r.s, id, 0);
		assert_true(st == CTX_OK || st == CTX_NOT_FOUND);
	}
	if (dir)
		assert_ok(ctx_create(r.s, "zz-end"));
	uint64_t rev;
	assert_int_equal(ctx_count_with_fields(r.s, &rev), with_fields(r.s));
	if (!dir) {
		ctx_close(r.s);
		return;
	}
	char *before = test_dump_store(r.s, false, NULL);
	ctx_close(r.s);
	ctx_store *s = open_store(dir, d);
	char *after = test_dump_store(s, false, NULL);
	test_expect_same_dump(before, after, "reopened after the race");
	assert_int_equal(ctx_count_with_fields(s, &rev), with_fields(s));
	free(before);
	free(after);
	ctx_close(s);
}

static void test_race_memory(void **unused)
{
	(void)unused;
	run_race(NULL, CTX_DURABILITY_NONE);
}

static void test_race_batch_backlog(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("review8_races_batch");
	run_race(dir, CTX_DURABILITY_BATCH);
	test_remove_dir(dir);
	free(dir);
}

static void test_race_always_nowait(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("review8_races_always");
	run_race(dir, CTX_DURABILITY_ALWAYS);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_race_memory),
	    cmocka_unit_test(test_race_batch_backlog),
	    cmocka_unit_test(test_race_always_nowait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
