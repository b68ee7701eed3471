/*
 * test_r24_lib_tracker_bytes.c - ctx_tracker_pending_bytes against a model
 * (round 24, r24-libreview).
 *
 * test_r23_tracker_bytes checks the figure within bounds on fixed paths;
 * here random sequences of tracker puts and deletes, other writers' puts and
 * deletes, syncs (latest and manual: conflicts), refreshes (some failing
 * with CTX_CONFLICT), resolves both ways and syncs failing with CTX_IO keep
 * a model of the tracker's edits (which keys, their local values, whether
 * the tracker or a version holds each value), and after every step the
 * figure must be exactly what the model's edits hold plus a table of a
 * power of two of slots. The bytes of one edit and of one blob header are
 * measured first from an edit that is a delete, then a put.
 *
 * A drift (a path that changes an edit without counting it again) shows as
 * a difference that is not a table's slots; at 0 edits the count must be 0.
 * Edits made while syncs run (from the merge function, from another thread)
 * are checked by putting every key again once the syncs are done, then
 * refreshing: the edits left are then exactly known.
 */
#include "testutil.h"
#include "vfs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS  8
#define NVALS  6
#define ABSENT (-1)

/* The values: small and big, some equal in length (so that equal values
 * meet, and a value changing size is common). */
static const size_t val_len[NVALS] = {0, 1, 7, 7, 300, 5000};
static char val_bytes[NVALS][5000];

static void init_vals(void)
{
	for (int v = 0; v < NVALS; v++)
		memset(val_bytes[v], 'a' + v, val_len[v]);
}

static char key_name[NKEYS][32];
static size_t key_len[NKEYS];

static void init_keys(void)
{
	for (int k = 0; k < NKEYS; k++)
		key_len[k] = (size_t)snprintf(key_name[k], sizeof(key_name[k]), "key%.*s",
		                              k * 3 + 1, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

/* What one edit and one value's blob cost (measured). */
static size_t edit_fixed, blob_fixed;

typedef struct medit {
	bool live;
	int local;     /* value index or ABSENT */
	bool val_blob; /* the tracker holds the local value's bytes (a put) */
	bool has_base;
	int base;      /* own base (a resolve's current value: a version's) */
	bool conflict; /* manual: its conflict unresolved */
	int ccur;      /* the conflict's current value */
} medit;

typedef struct model {
	medit e[NKEYS];
	int cur[NKEYS]; /* the store's newest version */
	int basev[NKEYS];
	size_t peak; /* edits at most since the table was last empty */
} model;

static size_t model_count(const model *m)
{
	size_t n = 0;
	for (int k = 0; k < NKEYS; k++)
		n += m->e[k].live;
	return n;
}

static size_t model_bytes(const model *m)
{
	size_t n = 0;
	for (int k = 0; k < NKEYS; k++) {
		const medit *e = &m->e[k];
		if (!e->live)
			continue;
		n += edit_fixed + key_len[k];
		if (e->val_blob)
			n += blob_fixed + val_len[e->local];
	}
	return n;
}

/* The figure is the edits' bytes plus cap slots: cap 0 with no edit, else
 * a power of two, at least 16 and 4/3 of the edits, at most what the most
 * edits since the table was last empty needed. */
static void check_figure(ctx_tracker *t, const model *m, size_t edits, size_t peak,
                         size_t edit_bytes, const char *step, long i)
{
	size_t got = ctx_tracker_pending_bytes(t);
	if (ctx_tracker_pending(t) != edits)
		fail_msg("step %ld (%s): %zu edits pending, model %zu", i, step,
		         ctx_tracker_pending(t), edits);
	(void)m;
	if (edits == 0) {
		if (got != 0)
			fail_msg("step %ld (%s): no edit, %zu bytes", i, step, got);
		return;
	}
	if (got < edit_bytes || (got - edit_bytes) % sizeof(void *))
		fail_msg("step %ld (%s): %zu bytes, the edits hold %zu", i, step, got, edit_bytes);
	size_t cap = (got - edit_bytes) / sizeof(void *);
	size_t most = 16;
	while ((peak + 1) * 2 > most)
		most *= 2;
	if (cap < 16 || (cap & (cap - 1)) || cap * 3 < edits * 4 || cap > most)
		fail_msg("step %ld (%s): %zu bytes, the edits hold %zu: %zu over, not a table "
		         "(%zu edits, %zu at most)",
		         i, step, got, edit_bytes, got - edit_bytes, edits, peak);
}

static void check_model(ctx_tracker *t, model *m, const char *step, long i)
{
	size_t n = model_count(m);
	if (n == 0)
		m->peak = 0;
	else if (n > m->peak)
		m->peak = n;
	check_figure(t, m, n, m->peak, model_bytes(m), step, i);
	/* The model's local values are the tracker's. */
	for (int k = 0; k < NKEYS; k++) {
		if (!m->e[k].live)
			continue;
		void *p = NULL;
		size_t len = 0;
		ctx_status st = ctx_tracker_get(t, key_name[k], key_len[k], &p, &len);
		int want = m->e[k].local;
		if (want == ABSENT ? st != CTX_NOT_FOUND
		                   : st != CTX_OK || len != val_len[want] ||
		                         (len && memcmp(p, val_bytes[want], len)))
			fail_msg("step %ld (%s): key %d's local value differs from the model", i,
			         step, k);
		free(p);
	}
}

/* Read the store's newest values into m->cur. */
static void read_store(ctx_store *s, const char *id, model *m)
{
	for (int k = 0; k < NKEYS; k++) {
		static char buf[5000];
		size_t len = 0;
		ctx_status st =
		    ctx_get_value(s, id, key_name[k], key_len[k], buf, sizeof(buf), &len);
		m->cur[k] = ABSENT;
		if (st == CTX_OK) {
			for (int v = 0; v < NVALS; v++)
				if (val_len[v] == len && (!len || !memcmp(buf, val_bytes[v], len)))
					m->cur[k] = v;
			assert_int_not_equal(m->cur[k], ABSENT);
		} else {
			assert_int_equal(st, CTX_NOT_FOUND);
		}
	}
}

static int edit_base(const model *m, int k)
{
	return m->e[k].has_base ? m->e[k].base : m->basev[k];
}

/* Measure edit_fixed and blob_fixed on a fresh tracker of context id. */
static void measure(ctx_store *s)
{
	assert_ok(ctx_create(s, "measure"));
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "measure", NULL, &t));
	size_t slots = 16 * sizeof(void *);
	assert_ok(ctx_tracker_del(t, "k", 1));
	size_t del = ctx_tracker_pending_bytes(t);
	assert_true(del > slots + 1);
	edit_fixed = del - slots - 1;
	assert_ok(ctx_tracker_put(t, "k", 1, "0123456789", 10));
	size_t put = ctx_tracker_pending_bytes(t);
	assert_true(put > del + 10);
	blob_fixed = put - del - 10;
	assert_true(edit_fixed < 1024 && blob_fixed < 256);
	ctx_tracker_close(t);
}

static void tput(ctx_tracker *t, model *m, int k, int v)
{
	assert_ok(ctx_tracker_put(t, key_name[k], key_len[k], val_bytes[v], val_len[v]));
	medit *e = &m->e[k];
	if (!e->live)
		*e = (medit){.live = true};
	else if (e->conflict) { /* an edit resolves its conflict: base := current */
		e->has_base = true;
		e->base = e->ccur;
		e->conflict = false;
	}
	e->local = v;
	e->val_blob = true;
}

static void tdel(ctx_tracker *t, model *m, int k)
{
	assert_ok(ctx_tracker_del(t, key_name[k], key_len[k]));
	medit *e = &m->e[k];
	if (!e->live)
		*e = (medit){.live = true};
	else if (e->conflict) {
		e->has_base = true;
		e->base = e->ccur;
		e->conflict = false;
	}
	e->local = ABSENT;
	e->val_blob = false;
}

/* One random run: `steps` steps under strategy, on a store with a dir if
 * dir is not NULL (then some syncs fail with CTX_IO). */
static void random_run(ctx_merge_strategy strategy, const char *dir, uint64_t seed, long steps)
{
	ctx_store *s;
	if (dir) {
		ctx_options o;
		ctx_options_init(&o);
		o.dir = dir;
		o.durability = CTX_DURABILITY_ALWAYS;
		o.log_prealloc_bytes = 1; /* no zeroer thread: the commit's write is the next */
		assert_ok(ctx_open(&o, &s));
	} else {
		s = test_open_memory();
	}
	measure(s);
	assert_ok(ctx_create(s, "c"));
	ctx_tracker_options to = {.strategy = strategy};
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "c", &to, &t));
	model m;
	memset(&m, 0, sizeof(m));
	for (int k = 0; k < NKEYS; k++)
		m.cur[k] = m.basev[k] = ABSENT;
	srand((unsigned)seed);
	long io_fails = 0, conflicts = 0, refreshes = 0, resolves = 0, syncs = 0;
	for (long i = 0; i < steps; i++) {
		int op = rand() % 100, k = rand() % NKEYS, v = rand() % NVALS;
		const char *step;
		if (op < 30) {
			step = "tracker put";
			tput(t, &m, k, v);
		} else if (op < 40) {
			step = "tracker del";
			tdel(t, &m, k);
		} else if (op < 55) {
			step = "other writer's put";
			assert_ok(ctx_put(s, "c", key_name[k], key_len[k], val_bytes[v], val_len[v],
			                  NULL));
			m.cur[k] = v;
		} else if (op < 60) {
			step = "other writer's del";
			ctx_status st = ctx_del(s, "c", key_name[k], key_len[k], NULL);
			assert_true(st == CTX_OK || st == CTX_NOT_FOUND);
			m.cur[k] = ABSENT;
		} else if (op < 75) {
			step = "sync";
			bool fault = dir && rand() % 10 == 0;
			bool conflict = false;
			for (int j = 0; j < NKEYS; j++) {
				medit *e = &m.e[j];
				int b = edit_base(&m, j), c = m.cur[j];
				if (e->live && e->local != b && e->local != c && c != b)
					conflict = true;
			}
			if (fault) { /* the commit's log write fails: nothing changes */
				atomic_store(&ctx_vfs_faults.write_errno, EIO);
				atomic_store(&ctx_vfs_faults.write_countdown, 1);
			}
			ctx_status st = ctx_tracker_sync(t, NULL);
			vfs_faults_reset();
			if (strategy == CTX_MERGE_MANUAL && conflict) {
				assert_int_equal(st, CTX_CONFLICT);
				conflicts++;
				for (int j = 0; j < NKEYS; j++) {
					medit *e = &m.e[j];
					int b = edit_base(&m, j), c = m.cur[j];
					e->conflict =
					    e->live && e->local != b && e->local != c && c != b;
					e->ccur = c;
				}
			} else if (st != CTX_OK) {
				/* A write that failed: only with a fault, and then the
				 * store refuses writes until reopened: stop here. */
				assert_true(fault);
				assert_int_equal(st, CTX_IO);
				io_fails++;
				check_model(t, &m, "sync failing with CTX_IO", i);
				break;
			} else {
				syncs++;
				for (int j = 0; j < NKEYS; j++)
					m.e[j] = (medit){0};
				read_store(s, "c", &m);
				memcpy(m.basev, m.cur, sizeof(m.cur));
			}
		} else if (op < 88) {
			step = "refresh";
			bool conflict = false;
			for (int j = 0; j < NKEYS; j++) {
				medit *e = &m.e[j];
				int b = edit_base(&m, j), c = m.cur[j];
				if (e->live && e->local != b && e->local != c && c != b)
					conflict = true;
			}
			ctx_status st = ctx_tracker_refresh(t);
			if (conflict) {
				assert_int_equal(st, CTX_CONFLICT);
			} else {
				assert_ok(st);
				refreshes++;
				for (int j = 0; j < NKEYS; j++) {
					medit *e = &m.e[j];
					int b = edit_base(&m, j), c = m.cur[j];
					if (!e->live)
						continue;
					if (e->local == b || e->local == c)
						*e = (medit){0};
					else
						e->has_base = false;
					e->conflict = false;
				}
				memcpy(m.basev, m.cur, sizeof(m.cur));
			}
		} else {
			step = "resolve";
			bool local = rand() % 2;
			ctx_status st = ctx_tracker_resolve(t, key_name[k], key_len[k], local);
			medit *e = &m.e[k];
			if (!e->live || !e->conflict) {
				assert_int_equal(st, CTX_NOT_FOUND);
			} else {
				assert_ok(st);
				resolves++;
				if (!local) { /* the current value: a version holds it */
					e->local = e->ccur;
					e->val_blob = false;
				}
				e->has_base = true;
				e->base = e->ccur;
				e->conflict = false;
			}
		}
		check_model(t, &m, step, i);
	}
	print_message("strategy %d%s: %ld syncs, %ld conflicts, %ld refreshes, %ld resolves, %ld "
	              "failed with CTX_IO\n",
	              (int)strategy, dir ? " (dir)" : "", syncs, conflicts, refreshes, resolves,
	              io_fails);
	/* Close with edits pending: nothing leaks (ASan). */
	ctx_tracker_close(t);
	ctx_close(s);
}

static void test_random_latest(void **state)
{
	(void)state;
	uint64_t seed = test_seed("test_random_latest", 24001);
	for (int r = 0; r < 20; r++)
		random_run(CTX_MERGE_LATEST, NULL, seed + (uint64_t)r, 400);
}

static void test_random_manual(void **state)
{
	(void)state;
	uint64_t seed = test_seed("test_random_manual", 24002);
	for (int r = 0; r < 20; r++)
		random_run(CTX_MERGE_MANUAL, NULL, seed + (uint64_t)r, 400);
}

/* Syncs whose commit fails with CTX_IO leave the figure as it was. */
static void test_random_io_failures(void **state)
{
	(void)state;
	uint64_t seed = test_seed("test_random_io_failures", 24003);
	for (int r = 0; r < 6; r++) {
		char name[64];
		snprintf(name, sizeof(name), "r24_tracker_bytes_io_%d", r);
		char *dir = test_make_dir(name);
		random_run(r % 2 ? CTX_MERGE_MANUAL : CTX_MERGE_LATEST, dir, seed + (uint64_t)r,
		           200);
		test_remove_dir(dir);
		free(dir);
	}
}

/* Once no sync runs: put every key again with a value nothing had, so that
 * every key has an edit with a known local value. Each may also hold its
 * own base (rebase_edit: the value it was made on, kept when the new base
 * differs), unknown here: one of the values or none. So the figure must be
 * the known bytes, a table, and a sum of at most NKEYS such bases. */
static void settle_and_check(ctx_tracker *t, const char *what)
{
	static char fresh[4000];
	memset(fresh, 'Z', sizeof(fresh));
	size_t bytes = 0;
	for (int k = 0; k < NKEYS; k++) {
		size_t len = 100 + 37 * (size_t)k;
		assert_ok(ctx_tracker_put(t, key_name[k], key_len[k], fresh, len));
		bytes += edit_fixed + key_len[k] + blob_fixed + len;
	}
	assert_int_equal(ctx_tracker_pending(t), NKEYS);
	/* The sums NKEYS edits' own bases can make. */
	size_t most = NKEYS * (blob_fixed + 5000) + 1;
	unsigned char *can = calloc(most, 1), *next = calloc(most, 1);
	assert_true(can && next);
	can[0] = 1;
	for (int k = 0; k < NKEYS; k++) {
		memcpy(next, can, most);
		for (size_t x = 0; x < most; x++)
			if (can[x])
				for (int v = 0; v < NVALS; v++)
					if (x + blob_fixed + val_len[v] < most)
						next[x + blob_fixed + val_len[v]] = 1;
		memcpy(can, next, most);
	}
	size_t got = ctx_tracker_pending_bytes(t);
	bool ok = false;
	for (size_t cap = 16; cap <= ((size_t)1 << 20) && !ok; cap *= 2) {
		size_t fixed = bytes + cap * sizeof(void *);
		ok = got >= fixed && got - fixed < most && can[got - fixed];
	}
	free(can);
	free(next);
	if (!ok)
		fail_msg("%s: %zu bytes: not the %zu the %d edits hold, a table and their bases",
		         what, got, bytes, NKEYS);
	(void)ctx_tracker_sync(t, NULL);
	size_t n = ctx_tracker_pending(t);
	if ((n == 0) != (ctx_tracker_pending_bytes(t) == 0))
		fail_msg("%s: %zu edits pending, %zu bytes", what, n, ctx_tracker_pending_bytes(t));
}

/* The merge function edits the tracker while its sync runs: frozen edits
 * are replaced by copies (table_thaw_at), and those made during the sync
 * stay pending, rebased (rebase_edit). */
typedef struct merge_ctx {
	ctx_tracker *t;
	unsigned seed;
	long calls;
} merge_ctx;

static ctx_status merge_editing(void *arg, const ctx_conflict *c, ctx_merge_value *out)
{
	merge_ctx *mc = arg;
	mc->calls++;
	int k = rand_r(&mc->seed) % NKEYS, v = rand_r(&mc->seed) % NVALS;
	if (rand_r(&mc->seed) % 3)
		T_CHECK_STATUS(
		    ctx_tracker_put(mc->t, key_name[k], key_len[k], val_bytes[v], val_len[v]),
		    CTX_OK);
	else
		T_CHECK_STATUS(ctx_tracker_del(mc->t, key_name[k], key_len[k]), CTX_OK);
	*out = rand_r(&mc->seed) % 2 ? c->local : c->current;
	return CTX_OK;
}

static void test_edits_from_merge_function(void **state)
{
	(void)state;
	reset_failures();
	ctx_store *s = test_open_memory();
	measure(s);
	assert_ok(ctx_create(s, "c"));
	merge_ctx mc = {NULL, (unsigned)test_seed("test_edits_from_merge_function", 24004), 0};
	ctx_tracker_options to = {
	    .strategy = CTX_MERGE_FUNCTION, .merge = merge_editing, .merge_arg = &mc};
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "c", &to, &t));
	mc.t = t;
	unsigned seed = mc.seed;
	for (int round = 0; round < 200; round++) {
		for (int n = 0; n < 6; n++) {
			int k = rand_r(&seed) % NKEYS, v = rand_r(&seed) % NVALS;
			assert_ok(
			    ctx_tracker_put(t, key_name[k], key_len[k], val_bytes[v], val_len[v]));
			v = rand_r(&seed) % NVALS;
			assert_ok(ctx_put(s, "c", key_name[k], key_len[k], val_bytes[v], val_len[v],
			                  NULL));
		}
		assert_ok(ctx_tracker_sync(t, NULL));
		if (round % 10 == 9)
			settle_and_check(t, "after syncs whose merge function edited");
	}
	assert_no_thread_failures();
	assert_true(mc.calls > 0);
	print_message("merge function called %ld times\n", mc.calls);
	ctx_tracker_close(t);
	ctx_close(s);
}

/* Another thread edits while syncs run. */
typedef struct editor_arg {
	ctx_tracker *t;
	atomic_bool stop;
	unsigned seed;
} editor_arg;

static void *editor_main(void *p)
{
	editor_arg *a = p;
	while (!atomic_load(&a->stop)) {
		int k = rand_r(&a->seed) % NKEYS, v = rand_r(&a->seed) % NVALS;
		if (rand_r(&a->seed) % 4)
			T_CHECK_STATUS(ctx_tracker_put(a->t, key_name[k], key_len[k], val_bytes[v],
			                               val_len[v]),
			               CTX_OK);
		else
			T_CHECK_STATUS(ctx_tracker_del(a->t, key_name[k], key_len[k]), CTX_OK);
	}
	return NULL;
}

static void test_edits_during_sync(void **state)
{
	(void)state;
	reset_failures();
	ctx_store *s = test_open_memory();
	measure(s);
	assert_ok(ctx_create(s, "c"));
	ctx_tracker *t;
	assert_ok(ctx_tracker_open(s, "c", NULL, &t));
	unsigned seed = (unsigned)test_seed("test_edits_during_sync", 24005);
	for (int round = 0; round < 20; round++) {
		editor_arg a = {t, false, seed + (unsigned)round};
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, editor_main, &a), 0);
		for (int n = 0; n < 50; n++) {
			int k = rand_r(&seed) % NKEYS, v = rand_r(&seed) % NVALS;
			assert_ok(ctx_put(s, "c", key_name[k], key_len[k], val_bytes[v], val_len[v],
			                  NULL));
			assert_ok(ctx_tracker_sync(t, NULL));
		}
		atomic_store(&a.stop, true);
		pthread_join(th, NULL);
		assert_no_thread_failures();
		settle_and_check(t, "after syncs with edits from another thread");
	}
	ctx_tracker_close(t);
	ctx_close(s);
}

int main(void)
{
	init_vals();
	init_keys();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_random_latest),
	    cmocka_unit_test(test_random_manual),
	    cmocka_unit_test(test_random_io_failures),
	    cmocka_unit_test(test_edits_from_merge_function),
	    cmocka_unit_test(test_edits_during_sync),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
