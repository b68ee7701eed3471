/*
 * test_points.c - history, structural diffs, recovery points and restore.
 *
 * What is checked, and how:
 *   - history: a model keeps the content, commit time, revision and number of
 *     changed keys of every version ever made; after every step ctx_history
 *     must list exactly the last history_depth versions plus the pinned ones
 *     (ascending, fields equal to the model) and ctx_get_at must give each kept
 *     version with exactly the model's content, and CTX_NOT_FOUND for every
 *     other version (left history, never made, or newer than the head);
 *   - diffs: ctx_diff_states against a naive diff computed by iterating both
 *     states, sorting both key lists bytewise and merging them, on random
 *     binary keys (with common prefixes and NUL bytes) and contexts of up to
 *     100,000 keys; also unrelated contexts, identical states, metadata;
 *   - points: rotation, labels, re-pinning, delete, the fields of the list
 *     (times from a fake clock), automatic points;
 *   - restore: by version, latest, label and time; undo; data and metadata;
 *     held states unchanged; error cases change nothing;
 *   - persistence: a canonical dump of a context (every kept version with its
 *     content and key times, every point) must be equal after a clean reopen
 *     and after a replay of the log alone; kill -9 of a child (this program
 *     re-executed) in the middle of commits, points and restores, checked
 *     against the acknowledged operations it reported over a pipe;
 *   - restore records: a restore's log record has the same size whether it
 *     changes 100,000 keys or one (it names its target), and a crash image
 *     (the files copied while the store is open) replays it to the same
 *     content, also when the target left history and is only pinned, and
 *     when neither holds it any more but a checkpoint covers the restore;
 *     reopening with a history too short for the target is CTX_CORRUPT;
 *   - damage: a point whose checksum no longer matches (flipped through the
 *     private point set, src/lib/store.h) is refused with CTX_CORRUPT;
 *   - cost: a point and a restore of a 200,000-key context share the trie
 *     (same root, zero diff, heap use does not grow with its size).
 * No test asserts on timing.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "pool.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "format.h" /* records_end reads the log's records */
#include "store.h"  /* the damaged-point and structural-sharing tests poke inside */

/* ---- helpers ---------------------------------------------------------------- */

static atomic_uint_fast64_t fake_now = 1000;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return atomic_load(&fake_now);
}

static void set_now(uint64_t t)
{
	atomic_store(&fake_now, t);
}

typedef struct opts_spec {
	const char *dir;
	size_t depth;
	size_t max_points;
	unsigned auto_every;
} opts_spec;

static ctx_store *open_spec(opts_spec sp)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = sp.dir;
	o.history_depth = sp.depth;
	o.max_points = sp.max_points;
	o.auto_point_every = sp.auto_every;
	o.clock_us = fake_clock;
	o.clock_arg = NULL;
	return test_open(&o);
}

static ctx_store *open_mem(size_t depth, size_t max_points)
{
	return open_spec((opts_spec){NULL, depth, max_points, 0});
}

static ctx_state *head_of(ctx_store *s, const char *id)
{
	ctx_state *st = NULL;
	assert_ok(ctx_get(s, id, &st));
	assert_non_null(st);
	return st;
}

static void put_str(ctx_store *s, const char *id, const char *k, const char *v, uint64_t *ver)
{
	assert_ok(ctx_put(s, id, k, strlen(k), v, strlen(v), ver));
}

static void expect_meta_str(const ctx_state *st, const char *k, const char *v)
{
	const void *got = NULL;
	size_t n = 0;
	if (!ctx_state_meta(st, k, strlen(k), &got, &n))
		fail_msg("metadata '%s' missing in version %" PRIu64, k, ctx_state_version(st));
	assert_int_equal(n, strlen(v));
	assert_memory_equal(got, v, n);
}

static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	return c ? c : (alen > blen) - (alen < blen);
}

static void sb_hex(test_buf *b, const void *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *q = p;
	for (size_t i = 0; i < n; i++) {
		char two[2] = {digits[q[i] >> 4], digits[q[i] & 15]};
		test_buf_add(b, two, 2);
	}
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The pairs of one map of st as sorted lines "<tag> hexkey=hexval [@time]". */
static void dump_map(test_buf *out, const ctx_state *st, bool meta, bool key_times)
{
	ctx_iter *it = NULL;
	assert_ok(meta ? ctx_iter_meta_begin(st, &it) : ctx_iter_begin(st, &it));
	size_t n = 0, cap = 16;
	char **lines = malloc(cap * sizeof(*lines));
	assert_non_null(lines);
	const void *k, *v;
	size_t kl, vl;
	while (ctx_iter_next(it, &k, &kl, &v, &vl)) {
		test_buf l = {0};
		test_buf_add(&l, meta ? "M " : "D ", 2);
		sb_hex(&l, k, kl);
		test_buf_add(&l, "=", 1);
		sb_hex(&l, v, vl);
		if (key_times && !meta) {
			uint64_t t = 0;
			assert_true(ctx_state_key_time(st, k, kl, &t));
			test_buf_printf(&l, " @%" PRIu64, t);
		}
		if (n == cap) {
			cap *= 2;
			lines = realloc(lines, cap * sizeof(*lines));
			assert_non_null(lines);
		}
		lines[n++] = l.p;
	}
	ctx_iter_free(it);
	qsort(lines, n, sizeof(*lines), cmp_strp);
	for (size_t i = 0; i < n; i++) {
		test_buf_add(out, lines[i], strlen(lines[i]));
		test_buf_add(out, "\n", 1);
		free(lines[i]);
	}
	free(lines);
}

static void dump_state_into(test_buf *out, const ctx_state *st, bool key_times)
{
	test_buf_printf(out,
	                "version %" PRIu64 " revision %" PRIu64 " updated %" PRIu64
	                " keys %zu bytes %zu meta %zu\n",
	                ctx_state_version(st), ctx_state_revision(st), ctx_state_updated_us(st),
	                ctx_state_count(st), ctx_state_bytes(st), ctx_state_meta_count(st));
	dump_map(out, st, false, key_times);
	dump_map(out, st, true, false);
}

/* Content only (no version, revision or times): for "same content" checks. */
static char *content_of(const ctx_state *st)
{
	test_buf b = {0};
	test_buf_add(&b, "", 0);
	test_buf_printf(&b, "keys %zu bytes %zu meta %zu\n", ctx_state_count(st),
	                ctx_state_bytes(st), ctx_state_meta_count(st));
	dump_map(&b, st, false, false);
	dump_map(&b, st, true, false);
	return b.p;
}

static void expect_same_content(const ctx_state *a, const ctx_state *b)
{
	char *x = content_of(a), *y = content_of(b);
	if (strcmp(x, y) != 0)
		fail_msg("versions %" PRIu64 " and %" PRIu64 " differ:\n%s\n----\n%s",
		         ctx_state_version(a), ctx_state_version(b), x, y);
	free(x);
	free(y);
}

#define DUMP_CHANGED   1 /* the history's keys_changed */
#define DUMP_KEY_TIMES 2 /* ctx_state_key_time of every key */
#define DUMP_ALL       3

/* Everything the store keeps of context id: head, every kept version (its
 * history entry and its content), every point; `flags` add more. */
static char *dump_context(ctx_store *s, const char *id, int flags)
{
	test_buf b = {0};
	test_buf_add(&b, "", 0);
	ctx_state *head = head_of(s, id);
	test_buf_printf(&b, "head %" PRIu64 " created %" PRIu64 "\n", ctx_state_version(head),
	                ctx_state_created_us(head));
	ctx_state_release(head);
	ctx_history_entry *h = NULL;
	size_t n = 0;
	assert_ok(ctx_history(s, id, &h, &n));
	for (size_t i = 0; i < n; i++) {
		test_buf_printf(&b,
		                "history %" PRIu64 " rev %" PRIu64 " time %" PRIu64 " pinned %d",
		                h[i].version, h[i].revision, h[i].time_us, (int)h[i].pinned);
		if (flags & DUMP_CHANGED)
			test_buf_printf(&b, " changed %zu", h[i].keys_changed);
		test_buf_add(&b, "\n", 1);
		ctx_state *st = NULL;
		ctx_status r = ctx_get_at(s, id, h[i].version, &st);
		if (r != CTX_OK)
			fail_msg("history lists version %" PRIu64 " but ctx_get_at says %s",
			         h[i].version, ctx_strerror(r));
		dump_state_into(&b, st, (flags & DUMP_KEY_TIMES) != 0);
		ctx_state_release(st);
	}
	free(h);
	ctx_point *p = NULL;
	assert_ok(ctx_point_list(s, id, &p, &n));
	for (size_t i = 0; i < n; i++)
		test_buf_printf(&b,
		                "point %" PRIu64 " time %" PRIu64
		                " keys %zu bytes %zu sum %016" PRIx64 " label '%s'\n",
		                p[i].version, p[i].time_us, p[i].keys, p[i].bytes, p[i].checksum,
		                p[i].label);
	free(p);
	return b.p;
}

static void expect_same_dump(const char *want, const char *got, const char *what)
{
	if (strcmp(want, got) == 0)
		return;
	size_t i = 0, line = 1, at = 0;
	while (want[i] && want[i] == got[i]) {
		if (want[i] == '\n') {
			line++;
			at = i + 1;
		}
		i++;
	}
	/* The differing line of each, after the two lines before it. */
	size_t from = at;
	for (int back = 0; back < 2 && from > 0; back++) {
		from--;
		while (from > 0 && want[from - 1] != '\n')
			from--;
	}
	int wl = (int)strcspn(want + at, "\n"), gl = (int)strcspn(got + at, "\n");
	fail_msg("%s: dumps differ at line %zu:\n%.*s\n  before: %.*s\n  after:  %.*s", what, line,
	         (int)(at - from), want + from, wl, want + at, gl, got + at);
}

static ctx_point *points_of(ctx_store *s, const char *id, size_t *n)
{
	ctx_point *p = NULL;
	assert_ok(ctx_point_list(s, id, &p, n));
	assert_non_null(p);
	return p;
}

/* Heap bytes in use: the sanitizer allocator's count in sanitizer builds,
 * else glibc's (all arenas, mmapped chunks included). Unlike the resident
 * size, it does not hide an allocation behind memory freed earlier. */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static size_t heap_in_use(void)
{
	if (__sanitizer_get_current_allocated_bytes)
		return __sanitizer_get_current_allocated_bytes();
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

/* ---- history ------------------------------------------------------------------ */

#define HK      16 /* keys of the history model */
#define HDEPTH  8  /* history_depth */
#define HPOINTS 3  /* max_points */

typedef struct hversion {
	int val[HK]; /* value id, -1 = absent */
	uint64_t time, revision;
	size_t changed;
} hversion;

typedef struct hmodel {
	hversion *v; /* index = version */
	size_t cap;
	uint64_t head;
	uint64_t points[HPOINTS]; /* pinned versions, oldest first */
	char labels[HPOINTS][16];
	size_t npoints;
} hmodel;

static void hmodel_point(hmodel *m, uint64_t version, const char *label)
{
	size_t j = 0;
	bool had = false;
	for (size_t i = 0; i < m->npoints; i++) {
		if (m->points[i] == version) {
			had = true;
			continue;
		}
		m->points[j] = m->points[i];
		memcpy(m->labels[j], m->labels[i], sizeof(m->labels[j]));
		j++;
	}
	m->npoints = j;
	if (!had && m->npoints == HPOINTS) {
		memmove(m->points, m->points + 1, (HPOINTS - 1) * sizeof(m->points[0]));
		memmove(m->labels, m->labels + 1, (HPOINTS - 1) * sizeof(m->labels[0]));
		m->npoints--;
	}
	m->points[m->npoints] = version;
	snprintf(m->labels[m->npoints], sizeof(m->labels[0]), "%s", label);
	m->npoints++;
}

static bool hmodel_pinned(const hmodel *m, uint64_t version)
{
	for (size_t i = 0; i < m->npoints; i++)
		if (m->points[i] == version)
			return true;
	return false;
}

static bool hmodel_kept(const hmodel *m, uint64_t version)
{
	if (version == 0 || version > m->head)
		return false;
	return version + HDEPTH > m->head || hmodel_pinned(m, version);
}

static void hkey(char *buf, int k)
{
	snprintf(buf, 8, "k%02d", k);
}

static void hval(char *buf, int v)
{
	snprintf(buf, 16, "val-%d", v);
}

static void check_hversion(const ctx_state *st, const hversion *want)
{
	size_t present = 0;
	for (int k = 0; k < HK; k++) {
		char key[8], val[16];
		hkey(key, k);
		if (want->val[k] < 0) {
			if (ctx_state_lookup(st, key, strlen(key), NULL, NULL))
				fail_msg("version %" PRIu64 ": key %s present, model says absent",
				         ctx_state_version(st), key);
			continue;
		}
		present++;
		hval(val, want->val[k]);
		test_expect_str(st, key, val);
	}
	assert_int_equal(ctx_state_count(st), present);
	assert_int_equal(ctx_state_updated_us(st), want->time);
	assert_int_equal(ctx_state_revision(st), want->revision);
}

static void check_history(ctx_store *s, const hmodel *m, bool every_version)
{
	ctx_history_entry *h = NULL;
	size_t n = 0;
	assert_ok(ctx_history(s, "h", &h, &n));
	size_t want = 0;
	for (uint64_t v = 1; v <= m->head; v++)
		want += hmodel_kept(m, v);
	if (n != want)
		fail_msg("ctx_history: %zu entries, want %zu (head %" PRIu64 ")", n, want, m->head);
	uint64_t prev = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t v = h[i].version;
		if (v <= prev || !hmodel_kept(m, v))
			fail_msg("ctx_history: entry %zu is version %" PRIu64 " (after %" PRIu64
			         "), not a kept version in ascending order",
			         i, v, prev);
		prev = v;
		assert_int_equal(h[i].revision, m->v[v].revision);
		assert_int_equal(h[i].time_us, m->v[v].time);
		if (h[i].keys_changed != m->v[v].changed)
			fail_msg("ctx_history: version %" PRIu64 " keys_changed %zu, want %zu", v,
			         h[i].keys_changed, m->v[v].changed);
		assert_int_equal(h[i].pinned, hmodel_pinned(m, v));
	}
	free(h);

	uint64_t lo = every_version || m->head < 12 ? 1 : m->head - 11;
	for (uint64_t v = lo; v <= m->head + 2; v++) {
		ctx_state *st = (ctx_state *)0x1;
		ctx_status r = ctx_get_at(s, "h", v, &st);
		if (hmodel_kept(m, v)) {
			if (r != CTX_OK)
				fail_msg("ctx_get_at(%" PRIu64 ") = %s; head %" PRIu64, v,
				         ctx_strerror(r), m->head);
			assert_int_equal(ctx_state_version(st), v);
			check_hversion(st, &m->v[v]);
			ctx_state_release(st);
		} else {
			if (r != CTX_NOT_FOUND)
				fail_msg("ctx_get_at(%" PRIu64
				         ") = %s, want not found; head %" PRIu64,
				         v, ctx_strerror(r), m->head);
			assert_ptr_equal(st, (ctx_state *)0x1); /* output untouched */
		}
	}
	for (size_t i = 0; i < m->npoints; i++) {
		ctx_state *st = NULL;
		assert_ok(ctx_get_at(s, "h", m->points[i], &st));
		check_hversion(st, &m->v[m->points[i]]);
		ctx_state_release(st);
	}
}

static void hmodel_record(ctx_store *s, hmodel *m, uint64_t version, size_t changed)
{
	if (version >= m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->v = realloc(m->v, m->cap * sizeof(*m->v));
		assert_non_null(m->v);
	}
	ctx_state *st = head_of(s, "h");
	assert_int_equal(ctx_state_version(st), version);
	m->v[version].revision = ctx_state_revision(st);
	m->v[version].time = atomic_load(&fake_now);
	m->v[version].changed = changed;
	ctx_state_release(st);
	m->head = version;
}

/* The last history_depth versions plus the pinned ones are kept, each with
 * exactly its content; everything else is CTX_NOT_FOUND. */
static void test_history_window(void **unused)
{
	uint64_t seed = test_seed("history_window", 0x415);
	ctx_store *s = open_mem(HDEPTH, HPOINTS);
	hmodel m = {0};
	set_now(50000);
	assert_ok(ctx_create(s, "h"));
	hmodel_record(s, &m, 1, 0);
	for (int k = 0; k < HK; k++)
		m.v[1].val[k] = -1;
	check_history(s, &m, true);

	/* A state taken now must stay readable after it left history. */
	ctx_state *held = NULL;
	hversion held_model = m.v[1];
	assert_ok(ctx_get_at(s, "h", 1, &held));

	long steps = test_iters(400, 80);
	int next_val = 0;
	for (long step = 0; step < steps; step++) {
		set_now(100000 + (uint64_t)step * 1000 + test_rand_below(&seed, 500));
		/* A transaction of 1..4 distinct keys: fresh values or deletes of
		 * present keys, so every op changes exactly one key. */
		hversion next = m.v[m.head];
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin(s, "h", &t));
		int nops = 1 + (int)test_rand_below(&seed, 4);
		bool used[HK] = {false};
		size_t changed = 0;
		for (int i = 0; i < nops; i++) {
			int k = (int)test_rand_below(&seed, HK);
			if (used[k])
				continue;
			used[k] = true;
			char key[8], val[16];
			hkey(key, k);
			if (next.val[k] >= 0 && test_rand_below(&seed, 3) == 0) {
				assert_ok(ctx_txn_del(t, key, strlen(key)));
				next.val[k] = -1;
			} else {
				next.val[k] = next_val++;
				hval(val, next.val[k]);
				assert_ok(ctx_txn_put(t, key, strlen(key), val, strlen(val)));
			}
			changed++;
		}
		uint64_t v = 0;
		assert_ok(ctx_txn_commit(t, 0, &v));
		assert_int_equal(v, m.head + 1);
		hmodel_record(s, &m, v, changed);
		memcpy(m.v[v].val, next.val, sizeof(next.val));

		uint64_t r = test_rand_below(&seed, 12);
		if (r < 2) {
			char label[16];
			snprintf(label, sizeof(label), "p%" PRIu64, v);
			uint64_t pinned = 0;
			assert_ok(ctx_point_create(s, "h", label, &pinned));
			assert_int_equal(pinned, v);
			hmodel_point(&m, v, label);
			if (r == 0) { /* the same version twice */
				assert_ok(ctx_point_create(s, "h", "again", &pinned));
				assert_int_equal(pinned, v);
				hmodel_point(&m, v, "again");
			}
		} else if (r == 2 && m.npoints) {
			size_t i = test_rand_below(&seed, m.npoints);
			assert_ok(ctx_point_delete(s, "h", m.points[i]));
			memmove(&m.points[i], &m.points[i + 1],
			        (m.npoints - i - 1) * sizeof(m.points[0]));
			memmove(&m.labels[i], &m.labels[i + 1],
			        (m.npoints - i - 1) * sizeof(m.labels[0]));
			m.npoints--;
		}
		check_history(s, &m, step % 25 == 0 || step == steps - 1);

		/* The point list agrees with the model (order and labels). */
		size_t np;
		ctx_point *p = points_of(s, "h", &np);
		assert_int_equal(np, m.npoints);
		for (size_t i = 0; i < np; i++) {
			assert_int_equal(p[i].version, m.points[i]);
			assert_string_equal(p[i].label, m.labels[i]);
		}
		free(p);
	}
	/* Held states never change, whatever left history. */
	assert_int_equal(ctx_state_version(held), 1);
	check_hversion(held, &held_model);
	ctx_state_release(held);

	/* Far away and degenerate versions. */
	ctx_state *st = (ctx_state *)0x1;
	assert_int_equal(ctx_get_at(s, "h", 0, &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_at(s, "h", UINT64_MAX, &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_at(s, "h", m.head + 1000, &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_at(s, "nope", 1, &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_at(s, "", 1, &st), CTX_INVALID);
	assert_int_equal(ctx_get_at(s, "h", 1, NULL), CTX_INVALID);
	assert_ptr_equal(st, (ctx_state *)0x1);
	ctx_history_entry *h = NULL;
	size_t n = 0;
	assert_int_equal(ctx_history(s, "nope", &h, &n), CTX_NOT_FOUND);
	assert_int_equal(ctx_history(s, "h", NULL, &n), CTX_INVALID);
	assert_int_equal(ctx_history(s, "h", &h, NULL), CTX_INVALID);
	assert_null(h);

	free(m.v);
	ctx_close(s);
}

/* history_depth 1 keeps the head only; a drop forgets the history and the
 * points, and a context re-created under the same id starts afresh. */
static void test_history_depth_one_and_drop(void **unused)
{
	ctx_store *s = open_mem(1, 2);
	assert_ok(ctx_create(s, "d"));
	uint64_t v;
	put_str(s, "d", "a", "1", &v);
	assert_ok(ctx_point_create(s, "d", "one", NULL));
	put_str(s, "d", "a", "2", &v);
	put_str(s, "d", "a", "3", &v);
	assert_int_equal(v, 4);
	ctx_state *st = NULL;
	assert_int_equal(ctx_get_at(s, "d", 3, &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_at(s, "d", 1, &st), CTX_NOT_FOUND);
	assert_ok(ctx_get_at(s, "d", 2, &st)); /* pinned */
	test_expect_str(st, "a", "1");
	ctx_state_release(st);
	assert_ok(ctx_get_at(s, "d", 4, &st));
	test_expect_str(st, "a", "3");
	ctx_state_release(st);
	ctx_history_entry *h = NULL;
	size_t n = 0;
	assert_ok(ctx_history(s, "d", &h, &n));
	assert_int_equal(n, 2);
	assert_int_equal(h[0].version, 2);
	assert_true(h[0].pinned);
	assert_int_equal(h[1].version, 4);
	assert_false(h[1].pinned);
	free(h);

	assert_ok(ctx_drop(s, "d"));
	assert_int_equal(ctx_get_at(s, "d", 2, &st), CTX_NOT_FOUND);
	assert_ok(ctx_create(s, "d"));
	size_t np = 99;
	ctx_point *p = points_of(s, "d", &np);
	assert_int_equal(np, 0);
	free(p);
	assert_int_equal(ctx_get_at(s, "d", 2, &st), CTX_NOT_FOUND);
	uint64_t nv = 0;
	assert_int_equal(ctx_restore_latest(s, "d", &nv), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore(s, "d", 2, &nv), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_label(s, "d", "one", &nv), CTX_NOT_FOUND);
	assert_int_equal(test_version_of(s, "d"), 1);
	ctx_close(s);
}

/* keys_changed counts keys, not operations: a key written twice in one
 * transaction is one changed key (ctx.h: "keys added, changed or removed by
 * its commit"). */
static void test_history_keys_changed_counts_keys(void **unused)
{
	ctx_store *s = open_mem(8, 4);
	assert_ok(ctx_create(s, "kc"));
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin(s, "kc", &t));
	assert_ok(ctx_txn_put(t, "a", 1, "1", 1));
	assert_ok(ctx_txn_put(t, "b", 1, "1", 1));
	assert_ok(ctx_txn_put(t, "c", 1, "1", 1));
	uint64_t v = 0;
	assert_ok(ctx_txn_commit(t, 0, &v));
	assert_ok(ctx_txn_begin(s, "kc", &t));
	assert_ok(ctx_txn_put(t, "a", 1, "2", 1));
	assert_ok(ctx_txn_put(t, "a", 1, "3", 1));
	assert_ok(ctx_txn_del(t, "zz", 2)); /* absent: changes nothing */
	assert_ok(ctx_txn_commit(t, 0, &v));
	ctx_history_entry *h = NULL;
	size_t n = 0;
	assert_ok(ctx_history(s, "kc", &h, &n));
	assert_int_equal(n, 3);
	assert_int_equal(h[0].keys_changed, 0); /* the creation */
	assert_int_equal(h[1].keys_changed, 3);
	if (h[2].keys_changed != 1)
		fail_msg("a commit that wrote key 'a' twice and deleted an absent key reports "
		         "keys_changed %zu, want 1",
		         h[2].keys_changed);
	free(h);
	ctx_close(s);
}

/* ctx_state_key_time: the commit time of the version that set the key. */
static void test_key_time(void **unused)
{
	ctx_store *s = open_mem(8, 4);
	set_now(1000);
	assert_ok(ctx_create(s, "t"));
	set_now(2000);
	put_str(s, "t", "a", "1", NULL);
	set_now(3000);
	put_str(s, "t", "b", "1", NULL);
	ctx_state *v3 = head_of(s, "t");
	set_now(4000);
	put_str(s, "t", "a", "2", NULL);
	ctx_state *v4 = head_of(s, "t");
	uint64_t t = 0;
	assert_true(ctx_state_key_time(v3, "a", 1, &t));
	assert_int_equal(t, 2000);
	assert_true(ctx_state_key_time(v3, "b", 1, &t));
	assert_int_equal(t, 3000);
	assert_true(ctx_state_key_time(v4, "a", 1, &t));
	assert_int_equal(t, 4000);
	assert_true(ctx_state_key_time(v4, "b", 1, &t));
	assert_int_equal(t, 3000);
	t = 77;
	assert_false(ctx_state_key_time(v4, "c", 1, &t));
	assert_int_equal(t, 77);
	assert_true(ctx_state_key_time(v4, "a", 1, NULL));
	ctx_state_release(v3);
	ctx_state_release(v4);
	ctx_close(s);
}

/* ---- diffs -------------------------------------------------------------------- */

typedef struct kv {
	const unsigned char *k, *v;
	size_t kl, vl;
} kv;

static int kv_cmp(const void *a, const void *b)
{
	const kv *x = a, *y = b;
	return key_cmp(x->k, x->kl, y->k, y->kl);
}

/* The pairs of st, sorted by key; *itp must be freed after use. */
static kv *pairs_of(const ctx_state *st, ctx_iter **itp, size_t *n)
{
	size_t cap = ctx_state_count(st) + 1;
	kv *a = malloc(cap * sizeof(*a));
	assert_non_null(a);
	assert_ok(ctx_iter_begin(st, itp));
	size_t i = 0;
	const void *k, *v;
	size_t kl, vl;
	while (ctx_iter_next(*itp, &k, &kl, &v, &vl)) {
		assert_true(i < cap);
		a[i++] = (kv){k, v, kl, vl};
	}
	assert_int_equal(i, ctx_state_count(st));
	if (i > 1)
		qsort(a, i, sizeof(*a), kv_cmp);
	*n = i;
	return a;
}

static void expect_change(const ctx_change *c, size_t i, ctx_change_kind kind, const kv *old,
                          const kv *new_)
{
	const kv *k = old ? old : new_;
	if (c->kind != kind || c->klen != k->kl || memcmp(c->key, k->k, k->kl) != 0)
		fail_msg("diff change %zu: kind %d key of %zu bytes; want kind %d key of %zu bytes",
		         i, (int)c->kind, c->klen, (int)kind, k->kl);
	if (old) {
		assert_int_equal(c->old_len, old->vl);
		assert_non_null(c->old_value);
		assert_memory_equal(c->old_value, old->v, old->vl);
	} else {
		assert_null(c->old_value);
		assert_int_equal(c->old_len, 0);
	}
	if (new_) {
		assert_int_equal(c->new_len, new_->vl);
		assert_non_null(c->new_value);
		assert_memory_equal(c->new_value, new_->v, new_->vl);
	} else {
		assert_null(c->new_value);
		assert_int_equal(c->new_len, 0);
	}
}

/* A state with its pairs sorted by key (the naive side of a diff). */
typedef struct sorted {
	const ctx_state *st;
	ctx_iter *it;
	kv *p;
	size_t n;
} sorted;

static sorted sorted_of(const ctx_state *st)
{
	sorted x = {st, NULL, NULL, 0};
	x.p = pairs_of(st, &x.it, &x.n);
	return x;
}

static void sorted_free(sorted *x)
{
	ctx_iter_free(x->it);
	free(x->p);
}

/* ctx_diff_states(a, b) against a merge of the two sorted key lists. Returns
 * the number of changes. */
static size_t check_diff_sorted(const sorted *a, const sorted *b)
{
	const kv *pa = a->p, *pb = b->p;
	size_t na = a->n, nb = b->n;
	ctx_diff *d = NULL;
	assert_ok(ctx_diff_states(a->st, b->st, &d));
	assert_non_null(d);
	size_t i = 0, j = 0, c = 0, total = ctx_diff_count(d);
	while (i < na || j < nb) {
		int cmp = i == na   ? 1
		          : j == nb ? -1
		                    : key_cmp(pa[i].k, pa[i].kl, pb[j].k, pb[j].kl);
		if (cmp == 0 && pa[i].vl == pb[j].vl && memcmp(pa[i].v, pb[j].v, pa[i].vl) == 0) {
			i++, j++;
			continue;
		}
		const ctx_change *ch = ctx_diff_get(d, c);
		if (!ch)
			fail_msg("diff has %zu changes; the naive diff has more", total);
		if (cmp < 0)
			expect_change(ch, c, CTX_REMOVED, &pa[i++], NULL);
		else if (cmp > 0)
			expect_change(ch, c, CTX_ADDED, NULL, &pb[j++]);
		else
			expect_change(ch, c, CTX_CHANGED, &pa[i++], &pb[j++]);
		c++;
	}
	if (total != c)
		fail_msg("diff has %zu changes, the naive diff %zu", total, c);
	assert_null(ctx_diff_get(d, c));
	assert_null(ctx_diff_get(d, c + 1000));
	ctx_diff_free(d);
	return c;
}

static size_t check_diff(const ctx_state *a, const ctx_state *b)
{
	sorted x = sorted_of(a), y = sorted_of(b);
	size_t c = check_diff_sorted(&x, &y);
	sorted_free(&x);
	sorted_free(&y);
	return c;
}

/* Random binary keys: 1..12 bytes from a small alphabet with NUL and 0xff,
 * so that many keys are prefixes of others. */
static size_t rand_key(uint64_t *seed, unsigned char *buf)
{
	static const unsigned char alpha[] = {0x00, 0x01, 'a', 'b', 0x7f, 0xff};
	size_t n = 1 + test_rand_below(seed, 12);
	for (size_t i = 0; i < n; i++)
		buf[i] = alpha[test_rand_below(seed, sizeof(alpha))];
	return n;
}

static size_t rand_val(uint64_t *seed, unsigned char *buf)
{
	size_t n = test_rand_below(seed, 20);
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)test_rand(seed);
	return n;
}

/* Commit `changes` random changes to id: deletes, new values, the same value
 * again (not a change), and new keys. */
static void mutate(ctx_store *s, const char *id, uint64_t *seed, size_t changes)
{
	ctx_state *base = head_of(s, id);
	ctx_iter *it;
	size_t n;
	kv *p = pairs_of(base, &it, &n);
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin(s, id, &t));
	unsigned char k[16], v[32];
	for (size_t i = 0; i < changes; i++) {
		uint64_t r = test_rand_below(seed, 4);
		if (n == 0 || r == 3) {
			size_t kl = rand_key(seed, k), vl = rand_val(seed, v);
			assert_ok(ctx_txn_put(t, k, kl, v, vl));
			continue;
		}
		const kv *e = &p[test_rand_below(seed, n)];
		if (r == 0) {
			assert_ok(ctx_txn_del(t, e->k, e->kl));
		} else if (r == 1) {
			size_t vl = rand_val(seed, v);
			assert_ok(ctx_txn_put(t, e->k, e->kl, v, vl));
		} else {
			assert_ok(ctx_txn_put(t, e->k, e->kl, e->v, e->vl));
		}
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
	ctx_iter_free(it);
	free(p);
	ctx_state_release(base);
}

static void fill_random(ctx_store *s, const char *id, uint64_t *seed, size_t keys)
{
	unsigned char k[16], v[32];
	size_t done = 0;
	while (done < keys) {
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin(s, id, &t));
		for (size_t i = 0; i < 20000 && done < keys; i++, done++) {
			size_t kl = rand_key(seed, k), vl = rand_val(seed, v);
			assert_ok(ctx_txn_put(t, k, kl, v, vl));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
}

static void diff_round(ctx_store *s, uint64_t *seed, size_t keys, size_t changes)
{
	assert_ok(ctx_create(s, "dr"));
	fill_random(s, "dr", seed, keys);
	ctx_state *base = head_of(s, "dr");
	mutate(s, "dr", seed, changes);
	ctx_state *v1 = head_of(s, "dr");
	mutate(s, "dr", seed, 1 + changes / 4);
	ctx_state *v2 = head_of(s, "dr");
	sorted b = sorted_of(base), x = sorted_of(v1), y = sorted_of(v2);
	assert_int_equal(check_diff_sorted(&b, &b), 0);
	check_diff_sorted(&b, &x);
	check_diff_sorted(&x, &b);
	check_diff_sorted(&x, &y);
	check_diff_sorted(&b, &y);
	check_diff_sorted(&y, &b);
	sorted_free(&b);
	sorted_free(&x);
	sorted_free(&y);
	ctx_state_release(base);
	ctx_state_release(v1);
	ctx_state_release(v2);
	assert_ok(ctx_drop(s, "dr"));
}

/* Two versions of one context, sizes up to 100,000 keys. */
static void test_diff_random_versions(void **unused)
{
	uint64_t seed = test_seed("diff_random_versions", 0xd1ff);
	ctx_store *s = open_mem(8, 4);
	static const size_t sizes[] = {0, 1, 2, 3, 31, 33, 100, 1000, 5000};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		diff_round(s, &seed, sizes[i], test_rand_below(&seed, sizes[i] + 3));
		diff_round(s, &seed, sizes[i], 1);
	}
	long rounds = test_iters(12, 3);
	for (long r = 0; r < rounds; r++) {
		size_t keys = test_rand_below(&seed, 10000);
		diff_round(s, &seed, keys, test_rand_below(&seed, 1 + keys / (1 + r % 4 * 10)));
	}
	/* The big one: 100,000 keys, a few changes and then many. */
	diff_round(s, &seed, 100000, 1 + test_rand_below(&seed, 2000));
	diff_round(s, &seed, 100000, 50000);
	ctx_close(s);
}

/* Contexts built independently share no structure; the diff must still be
 * right (equal values in distinct leaves are not changes). */
static void test_diff_unrelated_contexts(void **unused)
{
	uint64_t seed = test_seed("diff_unrelated", 0x0dd);
	ctx_store *s = open_mem(8, 4);
	static const size_t sizes[] = {0, 1, 50, 300, 3000, 20000};
	for (size_t a = 0; a < sizeof(sizes) / sizeof(sizes[0]); a++) {
		assert_ok(ctx_create(s, "u1"));
		assert_ok(ctx_create(s, "u2"));
		/* A small key and value space: lots of equal keys and values. */
		for (int side = 0; side < 2; side++) {
			size_t n = sizes[(a + (size_t)side) % (sizeof(sizes) / sizeof(sizes[0]))];
			ctx_txn *t = NULL;
			assert_ok(ctx_txn_begin(s, side ? "u2" : "u1", &t));
			for (size_t i = 0; i < n; i++) {
				unsigned char k[16];
				size_t kl = 1 + test_rand_below(&seed, n > 1000 ? 8 : 3);
				for (size_t j = 0; j < kl; j++)
					k[j] = "ab\0\xff"[test_rand_below(&seed, 4)];
				char v = (char)('0' + test_rand_below(&seed, 3));
				assert_ok(ctx_txn_put(t, k, kl, &v, test_rand_below(&seed, 2)));
			}
			assert_ok(ctx_txn_commit(t, 0, NULL));
		}
		ctx_state *x = head_of(s, "u1"), *y = head_of(s, "u2");
		check_diff(x, y);
		check_diff(y, x);
		/* The same content built twice: no changes. */
		assert_ok(ctx_create(s, "u3"));
		ctx_iter *it;
		size_t n;
		kv *p = pairs_of(x, &it, &n);
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin(s, "u3", &t));
		for (size_t i = n; i-- > 0;) /* another insertion order */
			assert_ok(ctx_txn_put(t, p[i].k, p[i].kl, p[i].v, p[i].vl));
		assert_ok(ctx_txn_commit(t, 0, NULL));
		ctx_iter_free(it);
		free(p);
		ctx_state *z = head_of(s, "u3");
		assert_int_equal(check_diff(x, z), 0);
		assert_int_equal(check_diff(z, x), 0);
		ctx_state_release(x);
		ctx_state_release(y);
		ctx_state_release(z);
		assert_ok(ctx_drop(s, "u1"));
		assert_ok(ctx_drop(s, "u2"));
		assert_ok(ctx_drop(s, "u3"));
	}
	ctx_close(s);
}

/* Identical states, empty commits, metadata-only commits: no changes; the
 * diff holds its own references; argument checks. */
static void test_diff_identical_and_metadata(void **unused)
{
	ctx_store *s = open_mem(8, 4);
	assert_ok(ctx_create(s, "m"));
	put_str(s, "m", "a", "1", NULL);
	put_str(s, "m", "b", "2", NULL);
	ctx_state *v3 = head_of(s, "m");
	assert_int_equal(check_diff(v3, v3), 0);

	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin(s, "m", &t));
	assert_ok(ctx_txn_commit(t, 0, NULL)); /* empty */
	ctx_state *v4 = head_of(s, "m");
	assert_int_equal(ctx_state_version(v4), 4);
	assert_int_equal(check_diff(v3, v4), 0);

	assert_ok(ctx_txn_begin(s, "m", &t));
	assert_ok(ctx_txn_meta_put(t, "owner", 5, "me", 2));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	ctx_state *v5 = head_of(s, "m");
	assert_int_equal(check_diff(v4, v5), 0);
	assert_int_equal(check_diff(v5, v3), 0);

	assert_ok(ctx_txn_begin(s, "m", &t));
	assert_ok(ctx_txn_meta_put(t, "owner", 5, "you", 3));
	assert_ok(ctx_txn_put(t, "a", 1, "1", 1)); /* same value: no change */
	assert_ok(ctx_txn_put(t, "c", 1, "3", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	ctx_state *v6 = head_of(s, "m");

	/* The diff outlives the caller's references to its states. */
	ctx_diff *d = NULL;
	assert_ok(ctx_diff_states(v5, v6, &d));
	ctx_state_release(v5);
	ctx_state_release(v6);
	assert_ok(ctx_drop(s, "m"));
	assert_int_equal(ctx_diff_count(d), 1);
	const ctx_change *c = ctx_diff_get(d, 0);
	assert_non_null(c);
	assert_int_equal(c->kind, CTX_ADDED);
	assert_int_equal(c->klen, 1);
	assert_memory_equal(c->key, "c", 1);
	assert_int_equal(c->new_len, 1);
	assert_memory_equal(c->new_value, "3", 1);
	assert_null(ctx_diff_get(d, 1));
	ctx_diff_free(d);

	d = (ctx_diff *)0x1;
	assert_int_equal(ctx_diff_states(NULL, v3, &d), CTX_INVALID);
	assert_int_equal(ctx_diff_states(v3, NULL, &d), CTX_INVALID);
	assert_int_equal(ctx_diff_states(v3, v4, NULL), CTX_INVALID);
	assert_ptr_equal(d, (ctx_diff *)0x1);
	assert_int_equal(ctx_diff_count(NULL), 0);
	assert_null(ctx_diff_get(NULL, 0));
	ctx_diff_free(NULL);
	ctx_state_release(v3);
	ctx_state_release(v4);
	ctx_close(s);
}

/* ---- points ------------------------------------------------------------------- */

static void test_points_rotation_and_fields(void **unused)
{
	ctx_store *s = open_mem(4, 3);
	set_now(10);
	assert_ok(ctx_create(s, "p"));
	uint64_t pinned[4];
	for (int i = 0; i < 4; i++) {
		char k[16], v[16];
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "%dxyz", i);
		set_now(50 + 100 * (uint64_t)i);
		put_str(s, "p", k, v, NULL);
		set_now(100 * (uint64_t)(i + 1));
		char label[16];
		snprintf(label, sizeof(label), "L%d", i);
		assert_ok(ctx_point_create(s, "p", label, &pinned[i]));
		assert_int_equal(pinned[i], (uint64_t)i + 2);
	}
	size_t n = 0;
	ctx_point *p = points_of(s, "p", &n);
	assert_int_equal(n, 3); /* the oldest (L0) rotated out */
	for (size_t i = 0; i < n; i++) {
		int j = (int)i + 1;
		assert_int_equal(p[i].version, pinned[j]);
		assert_int_equal(p[i].time_us, 100 * (uint64_t)(j + 1));
		char label[16];
		snprintf(label, sizeof(label), "L%d", j);
		assert_string_equal(p[i].label, label);
		ctx_state *st = NULL;
		assert_ok(ctx_get_at(s, "p", p[i].version, &st));
		assert_int_equal(p[i].keys, ctx_state_count(st));
		assert_int_equal(p[i].keys, (size_t)j + 1);
		assert_int_equal(p[i].bytes, ctx_state_bytes(st));
		ctx_state_release(st);
		if (i)
			assert_true(p[i].checksum != p[i - 1].checksum);
	}
	uint64_t sum_l1 = p[0].checksum;
	free(p);

	/* The status view counts them. */
	ctx_context_status *cs = NULL;
	assert_ok(ctx_status_view(s, &cs, &n));
	assert_int_equal(n, 1);
	assert_int_equal(cs[0].points, 3);
	free(cs);

	/* The rotated-out version left history too (depth 4, head 5: 2..5 kept). */
	put_str(s, "p", "x", "1", NULL);
	ctx_state *st = (ctx_state *)0x1;
	assert_int_equal(ctx_get_at(s, "p", pinned[0], &st), CTX_NOT_FOUND);
	uint64_t nv = 0;
	assert_int_equal(ctx_restore_label(s, "p", "L0", &nv), CTX_NOT_FOUND);

	/* Same content again => same checksum: restore L1's version, pin it. */
	assert_ok(ctx_restore(s, "p", pinned[1], &nv));
	set_now(1000);
	uint64_t again = 0;
	assert_ok(ctx_point_create(s, "p", NULL, &again));
	assert_int_equal(again, nv);
	p = points_of(s, "p", &n);
	assert_int_equal(n, 3);
	assert_int_equal(p[2].version, nv);
	assert_int_equal(p[2].checksum, sum_l1);
	assert_string_equal(p[2].label, "");
	assert_int_equal(p[2].time_us, 1000);
	assert_int_equal(p[0].version, pinned[2]); /* L1 rotated out now */
	free(p);
	ctx_close(s);
}

static void test_points_labels(void **unused)
{
	ctx_store *s = open_mem(8, 20);
	assert_ok(ctx_create(s, "l"));
	char max[CTX_LABEL_MAX + 2];
	memset(max, 'x', sizeof(max));
	max[CTX_LABEL_MAX] = 0;
	uint64_t v = 0;
	assert_ok(ctx_point_create(s, "l", max, &v));
	put_str(s, "l", "a", "1", NULL);
	max[CTX_LABEL_MAX] = 'y';
	max[CTX_LABEL_MAX + 1] = 0;
	static const char *bad[] = {"new\nline", "\x01", "tab\there", "del\x7f", "\x1f"};
	uint64_t untouched = 4242;
	assert_int_equal(ctx_point_create(s, "l", max, &untouched), CTX_INVALID);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ctx_point_create(s, "l", bad[i], &untouched), CTX_INVALID);
	assert_int_equal(untouched, 4242);
	assert_int_equal(ctx_point_create(s, "nope", "ok", &untouched), CTX_NOT_FOUND);
	assert_int_equal(ctx_point_create(s, "", "ok", &untouched), CTX_INVALID);
	assert_int_equal(ctx_point_create(NULL, "l", "ok", &untouched), CTX_INVALID);
	size_t n = 0;
	ctx_point *p = points_of(s, "l", &n);
	assert_int_equal(n, 1); /* none of the refused ones */
	assert_int_equal(strlen(p[0].label), CTX_LABEL_MAX);
	free(p);

	assert_ok(ctx_point_create(s, "l", "caf\xc3\xa9 \xe2\x9c\x93", NULL)); /* UTF-8 is fine */
	put_str(s, "l", "a", "2", NULL);
	assert_ok(ctx_point_create(s, "l", "", NULL));
	put_str(s, "l", "a", "3", NULL);
	assert_ok(ctx_point_create(s, "l", NULL, NULL));
	p = points_of(s, "l", &n);
	assert_int_equal(n, 4);
	assert_string_equal(p[1].label, "caf\xc3\xa9 \xe2\x9c\x93");
	assert_string_equal(p[2].label, "");
	assert_string_equal(p[3].label, "");
	free(p);
	uint64_t nv = 0;
	assert_ok(ctx_restore_label(s, "l", "caf\xc3\xa9 \xe2\x9c\x93", &nv));
	ctx_state *st = head_of(s, "l");
	test_expect_str(st, "a", "1");
	ctx_state_release(st);
	assert_int_equal(ctx_restore_label(s, "l", NULL, &nv), CTX_INVALID);
	assert_int_equal(ctx_restore_label(s, "l", "nope", &nv), CTX_NOT_FOUND);

	ctx_point *untouched_p = (ctx_point *)0x1;
	assert_int_equal(ctx_point_list(s, "l", NULL, &n), CTX_INVALID);
	assert_int_equal(ctx_point_list(s, "l", &untouched_p, NULL), CTX_INVALID);
	assert_int_equal(ctx_point_list(s, "nope", &untouched_p, &n), CTX_NOT_FOUND);
	assert_ptr_equal(untouched_p, (ctx_point *)0x1);
	ctx_close(s);
}

/* Pinning the same version twice keeps one point (with the newer label);
 * delete removes exactly one. */
static void test_points_same_version_and_delete(void **unused)
{
	ctx_store *s = open_mem(2, 4);
	assert_ok(ctx_create(s, "s"));
	put_str(s, "s", "a", "1", NULL);
	uint64_t v1 = 0, v2 = 0;
	set_now(100);
	assert_ok(ctx_point_create(s, "s", "first", &v1));
	set_now(200);
	assert_ok(ctx_point_create(s, "s", "second", &v2));
	assert_int_equal(v1, 2);
	assert_int_equal(v2, 2);
	size_t n = 0;
	ctx_point *p = points_of(s, "s", &n);
	assert_int_equal(n, 1);
	assert_int_equal(p[0].version, 2);
	assert_string_equal(p[0].label, "second");
	free(p);
	ctx_history_entry *h = NULL;
	assert_ok(ctx_history(s, "s", &h, &n));
	assert_int_equal(n, 2);
	assert_int_equal(h[1].version, 2);
	assert_true(h[1].pinned);
	free(h);

	/* Fill to max_points (4): a re-pin must not rotate anything out. */
	for (int i = 0; i < 3; i++) {
		put_str(s, "s", "a", i == 0 ? "x" : i == 1 ? "y" : "z", NULL);
		assert_ok(ctx_point_create(s, "s", NULL, NULL));
	}
	assert_ok(ctx_point_create(s, "s", "again", NULL));
	p = points_of(s, "s", &n);
	assert_int_equal(n, 4);
	assert_int_equal(p[0].version, 2);
	assert_int_equal(p[3].version, 5);
	assert_string_equal(p[3].label, "again");
	free(p);

	/* Delete the oldest: its version (out of the 2-deep history) goes. */
	put_str(s, "s", "b", "1", NULL);
	put_str(s, "s", "b", "2", NULL);
	ctx_state *st = NULL;
	assert_ok(ctx_get_at(s, "s", 2, &st));
	test_expect_str(st, "a", "1");
	assert_ok(ctx_point_delete(s, "s", 2));
	assert_int_equal(ctx_point_delete(s, "s", 2), CTX_NOT_FOUND);
	assert_int_equal(ctx_point_delete(s, "s", 6), CTX_NOT_FOUND); /* never pinned */
	assert_int_equal(ctx_point_delete(s, "s", 0), CTX_NOT_FOUND);
	assert_int_equal(ctx_point_delete(s, "nope", 3), CTX_NOT_FOUND);
	assert_int_equal(ctx_point_delete(s, "", 3), CTX_INVALID);
	ctx_state *gone = (ctx_state *)0x1;
	assert_int_equal(ctx_get_at(s, "s", 2, &gone), CTX_NOT_FOUND);
	test_expect_str(st, "a", "1"); /* a held state is unaffected */
	ctx_state_release(st);
	uint64_t nv = 0;
	assert_int_equal(ctx_restore(s, "s", 2, &nv), CTX_NOT_FOUND);
	p = points_of(s, "s", &n);
	assert_int_equal(n, 3);
	assert_int_equal(p[0].version, 3);
	free(p);
	/* Delete everything: an empty list. */
	assert_ok(ctx_point_delete(s, "s", 3));
	assert_ok(ctx_point_delete(s, "s", 4));
	assert_ok(ctx_point_delete(s, "s", 5));
	p = points_of(s, "s", &n);
	assert_int_equal(n, 0);
	free(p);
	assert_int_equal(ctx_restore_latest(s, "s", &nv), CTX_NOT_FOUND);
	assert_int_equal(test_version_of(s, "s"), 7);
	ctx_close(s);
}

/* auto_point_every = K: a point every K commits, rotating like any other. */
static void test_points_auto(void **unused)
{
	for (int round = 0; round < 2; round++) {
		size_t maxp = round ? 4 : 100;
		ctx_store *s = open_spec((opts_spec){NULL, 4, maxp, 3});
		assert_ok(ctx_create(s, "a"));
		for (int i = 0; i < 21; i++) {
			char v[16];
			snprintf(v, sizeof(v), "%d", i);
			put_str(s, "a", "k", v, NULL);
		}
		uint64_t head = test_version_of(s, "a");
		assert_int_equal(head, 22);
		size_t n = 0;
		ctx_point *p = points_of(s, "a", &n);
		assert_int_equal(n, round ? 4 : 7);
		assert_true(p[n - 1].version <= head && p[n - 1].version + 3 > head);
		for (size_t i = 0; i < n; i++) {
			if (i)
				assert_int_equal(p[i].version, p[i - 1].version + 3);
			ctx_state *st = NULL;
			assert_ok(ctx_get_at(s, "a", p[i].version, &st)); /* pinned: kept */
			char v[16];
			snprintf(v, sizeof(v), "%d", (int)p[i].version - 2);
			test_expect_str(st, "k", v);
			ctx_state_release(st);
		}
		free(p);
		ctx_close(s);
	}
}

/* ---- restore ------------------------------------------------------------------ */

/* By version (a point or plain history), result version, data and metadata,
 * keys_changed, undo, held states, and error cases that change nothing. */
static void test_restore_by_version_and_undo(void **unused)
{
	ctx_store *s = open_mem(6, 4);
	set_now(1000);
	assert_ok(ctx_create(s, "r"));
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin(s, "r", &t));
	assert_ok(ctx_txn_put(t, "a", 1, "1", 1));
	assert_ok(ctx_txn_put(t, "b", 1, "1", 1));
	assert_ok(ctx_txn_meta_put(t, "owner", 5, "alice", 5));
	uint64_t good = 0;
	assert_ok(ctx_txn_commit(t, 0, &good)); /* 2 */
	assert_ok(ctx_point_create(s, "r", "good", NULL));
	ctx_state *good_st = head_of(s, "r");

	set_now(2000);
	assert_ok(ctx_txn_begin(s, "r", &t));
	assert_ok(ctx_txn_put(t, "a", 1, "2", 1));
	assert_ok(ctx_txn_del(t, "b", 1));
	assert_ok(ctx_txn_put(t, "c", 1, "3", 1));
	assert_ok(ctx_txn_meta_put(t, "owner", 5, "bob", 3));
	assert_ok(ctx_txn_meta_put(t, "extra", 5, "x", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL)); /* 3 */
	put_str(s, "r", "d", "4", NULL);       /* 4 */
	ctx_state *before = head_of(s, "r");
	char *before_dump = content_of(before);

	/* Restore the point: a new version 5 with version 2's content. */
	set_now(3000);
	uint64_t nv = 0;
	assert_ok(ctx_restore(s, "r", good, &nv));
	assert_int_equal(nv, 5);
	ctx_state *r5 = head_of(s, "r");
	assert_int_equal(ctx_state_version(r5), 5);
	assert_int_equal(ctx_state_updated_us(r5), 3000);
	assert_true(ctx_state_revision(r5) > ctx_state_revision(before));
	expect_same_content(r5, good_st);
	expect_meta_str(r5, "owner", "alice");
	assert_false(ctx_state_meta(r5, "extra", 5, NULL, NULL));
	assert_int_equal(check_diff(good_st, r5), 0);
	assert_int_equal(check_diff(before, r5), 4); /* a, b, c, d */

	/* The reader holding version 4 sees no change. */
	assert_int_equal(ctx_state_version(before), 4);
	char *still = content_of(before);
	assert_string_equal(still, before_dump);
	free(still);

	ctx_history_entry *h = NULL;
	size_t n = 0;
	assert_ok(ctx_history(s, "r", &h, &n));
	assert_int_equal(h[n - 1].version, 5);
	assert_int_equal(h[n - 1].time_us, 3000);
	assert_int_equal(h[n - 1].revision, ctx_state_revision(r5));
	/* a, b, c, d; whether metadata entries (owner, extra) count as keys is
	 * not said: allow both readings. */
	if (h[n - 1].keys_changed != 4 && h[n - 1].keys_changed != 6)
		fail_msg("restore's keys_changed %zu, want 4 (or 6 with metadata)",
		         h[n - 1].keys_changed);
	free(h);

	/* Undo: restore version 4 (plain history, not a point). */
	set_now(4000);
	assert_ok(ctx_restore(s, "r", 4, &nv));
	assert_int_equal(nv, 6);
	ctx_state *r6 = head_of(s, "r");
	expect_same_content(r6, before);
	expect_meta_str(r6, "owner", "bob");
	expect_meta_str(r6, "extra", "x");
	/* Undo the undo: the restore's own version is history too. */
	assert_ok(ctx_restore(s, "r", 5, &nv));
	assert_int_equal(nv, 7);
	ctx_state *r7 = head_of(s, "r");
	expect_same_content(r7, good_st);
	/* Restoring the head itself: a new version, nothing changed. */
	assert_ok(ctx_restore(s, "r", 7, &nv));
	assert_int_equal(nv, 8);
	ctx_state *r8 = head_of(s, "r");
	expect_same_content(r8, r7);
	assert_ok(ctx_history(s, "r", &h, &n));
	assert_int_equal(h[n - 1].version, 8);
	assert_int_equal(h[n - 1].keys_changed, 0);
	free(h);

	/* Errors change nothing and leave the output alone. */
	uint64_t untouched = 99;
	assert_int_equal(ctx_restore(s, "r", 0, &untouched), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore(s, "r", 9, &untouched), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore(s, "r", 1000, &untouched), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore(s, "r", 1, &untouched), CTX_NOT_FOUND); /* left history */
	assert_int_equal(ctx_restore(s, "nope", 2, &untouched), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore(s, "", 2, &untouched), CTX_INVALID);
	assert_int_equal(ctx_restore(NULL, "r", 2, &untouched), CTX_INVALID);
	assert_int_equal(ctx_restore_label(s, "r", "nope", &untouched), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_latest(s, "nope", &untouched), CTX_NOT_FOUND);
	assert_int_equal(untouched, 99);
	assert_int_equal(test_version_of(s, "r"), 8);
	/* version_out is optional. */
	assert_ok(ctx_restore(s, "r", 6, NULL));
	assert_int_equal(test_version_of(s, "r"), 9);

	/* The point pinned version 2 all along: it is still there and intact. */
	assert_ok(ctx_restore_label(s, "r", "good", &nv));
	assert_int_equal(nv, 10);
	ctx_state *r10 = head_of(s, "r");
	expect_same_content(r10, good_st);

	ctx_state_release(r10);
	ctx_state_release(r8);
	ctx_state_release(r7);
	ctx_state_release(r6);
	ctx_state_release(r5);
	ctx_state_release(before);
	ctx_state_release(good_st);
	free(before_dump);

	/* A dropped context cannot be restored. */
	assert_ok(ctx_drop(s, "r"));
	assert_int_equal(ctx_restore(s, "r", 2, &nv), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_latest(s, "r", &nv), CTX_NOT_FOUND);
	ctx_close(s);
}

/* latest, label and "before a time" choose among points by the fake clock. */
static void test_restore_latest_label_before(void **unused)
{
	ctx_store *s = open_mem(4, 5);
	set_now(10);
	assert_ok(ctx_create(s, "b"));
	uint64_t uv = 0;
	assert_int_equal(ctx_restore_latest(s, "b", &uv), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_before(s, "b", UINT64_MAX, &uv), CTX_NOT_FOUND);
	static const char *vals[] = {"t100", "t200", "t300"};
	static const char *labels[] = {"same", "mid", "same"};
	uint64_t pv[3];
	for (int i = 0; i < 3; i++) {
		set_now(100 * (uint64_t)(i + 1) - 50);
		put_str(s, "b", "k", vals[i], NULL);
		set_now(100 * (uint64_t)(i + 1));
		assert_ok(ctx_point_create(s, "b", labels[i], &pv[i]));
	}
	set_now(400);
	put_str(s, "b", "k", "head", NULL);
	/* Push every pinned version out of the 4-deep history. */
	for (int i = 0; i < 4; i++)
		put_str(s, "b", "other", vals[i % 3], NULL);

	struct {
		int kind; /* 0 latest, 1 label, 2 before */
		const char *label;
		uint64_t time;
		const char *want; /* NULL: not found */
	} cases[] = {
	    {2, NULL, 250, "t200"}, {2, NULL, 200, "t200"},        {2, NULL, 199, "t100"},
	    {2, NULL, 100, "t100"}, {2, NULL, 50, NULL},           {2, NULL, 0, NULL},
	    {2, NULL, 300, "t300"}, {2, NULL, UINT64_MAX, "t300"}, {0, NULL, 0, "t300"},
	    {1, "same", 0, "t300"}, {1, "mid", 0, "t200"},         {1, "", 0, NULL},
	    {1, "sam", 0, NULL},    {1, "same ", 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t head = test_version_of(s, "b");
		uint64_t nv = 12345;
		ctx_status r = cases[i].kind == 0 ? ctx_restore_latest(s, "b", &nv)
		               : cases[i].kind == 1
		                   ? ctx_restore_label(s, "b", cases[i].label, &nv)
		                   : ctx_restore_before(s, "b", cases[i].time, &nv);
		if (!cases[i].want) {
			if (r != CTX_NOT_FOUND)
				fail_msg("case %zu: %s, want not found", i, ctx_strerror(r));
			assert_int_equal(nv, 12345);
			assert_int_equal(test_version_of(s, "b"), head);
			continue;
		}
		if (r != CTX_OK)
			fail_msg("case %zu: %s: %s", i, ctx_strerror(r), ctx_last_error());
		assert_int_equal(nv, head + 1);
		ctx_state *st = head_of(s, "b");
		assert_int_equal(ctx_state_version(st), head + 1);
		test_expect_str(st, "k", cases[i].want);
		assert_false(ctx_state_lookup(st, "other", 5, NULL, NULL));
		ctx_state_release(st);
		/* Move the head away again so that each restore changes something. */
		put_str(s, "b", "k", "moved", NULL);
	}
	/* Restores made no points: still the same three. */
	size_t n = 0;
	ctx_point *p = points_of(s, "b", &n);
	assert_int_equal(n, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(p[i].version, pv[i]);
		assert_int_equal(p[i].time_us, 100 * (uint64_t)(i + 1));
	}
	free(p);
	ctx_close(s);
}

/* ---- damage -------------------------------------------------------------------- */

/* Flip the stored checksum of the point on `version` (the set is immutable by
 * contract; a test may poke it, under the context's write lock). */
static void damage_point(ctx_store *s, const char *id, uint64_t version)
{
	ctx_context *c = store_find_context(s, id, strlen(id));
	assert_non_null(c);
	context_lock(c);
	point_set *p = atomic_load(&c->points);
	bool found = false;
	for (size_t i = 0; p && i < p->count; i++) {
		if (p->e[i].st->version == version) {
			p->e[i].checksum ^= 1;
			found = true;
		}
	}
	context_unlock(c);
	context_release(c);
	assert_true(found);
}

static void expect_corrupt_restore(ctx_store *s, const char *id, uint64_t version, int how)
{
	uint64_t head = test_version_of(s, id);
	char *before = dump_context(s, id, DUMP_ALL);
	uint64_t nv = 777;
	ctx_status r = how == 0   ? ctx_restore(s, id, version, &nv)
	               : how == 1 ? ctx_restore_latest(s, id, &nv)
	                          : ctx_restore_label(s, id, "bad", &nv);
	if (r != CTX_CORRUPT)
		fail_msg("restore of a damaged point (way %d): %s, want corrupt", how,
		         ctx_strerror(r));
	char vs[32];
	snprintf(vs, sizeof(vs), "%" PRIu64, version);
	const char *msg = ctx_last_error();
	if (!strstr(msg, vs) || !strstr(msg, id))
		fail_msg("the error does not name the point (version %s of '%s'): '%s'", vs, id,
		         msg);
	assert_int_equal(nv, 777);
	assert_int_equal(test_version_of(s, id), head);
	char *after = dump_context(s, id, DUMP_ALL);
	expect_same_dump(before, after, "failed restore");
	free(before);
	free(after);
}

static void test_damaged_point_refused(void **unused)
{
	char *dir = test_make_dir("points-damage");
	opts_spec sp = {dir, 3, 4, 0};
	ctx_store *s = open_spec(sp);
	assert_ok(ctx_create(s, "z"));
	put_str(s, "z", "a", "1", NULL);
	set_now(100);
	assert_ok(ctx_point_create(s, "z", "ok", NULL)); /* 2 */
	put_str(s, "z", "a", "2", NULL);
	set_now(200);
	assert_ok(ctx_point_create(s, "z", "bad", NULL)); /* 3 */
	for (int i = 0; i < 5; i++)
		put_str(s, "z", "b", i % 2 ? "x" : "y", NULL);
	damage_point(s, "z", 3);
	expect_corrupt_restore(s, "z", 3, 0);
	expect_corrupt_restore(s, "z", 3, 1); /* it is the latest */
	expect_corrupt_restore(s, "z", 3, 2); /* by label */
	/* The sound point still restores. */
	uint64_t nv = 0;
	assert_ok(ctx_restore_label(s, "z", "ok", &nv));
	ctx_state *st = head_of(s, "z");
	test_expect_str(st, "a", "1");
	assert_false(ctx_state_lookup(st, "b", 1, NULL, NULL));
	ctx_state_release(st);
	ctx_close(s);

	/* The directory itself is sound (its checksums cover what was written). */
	ctx_verify_report rep;
	memset(&rep, 0, sizeof(rep));
	ctx_status vr = ctx_verify(dir, &rep);
	if (vr != CTX_OK)
		fail_msg("ctx_verify: %s: %s", ctx_strerror(vr), rep.message);
	assert_int_equal(rep.contexts, 1);

	/* Reopened, the damaged point is still refused and nothing else is lost. */
	s = open_spec(sp);
	size_t n = 0;
	ctx_point *p = points_of(s, "z", &n);
	assert_int_equal(n, 2);
	assert_int_equal(p[0].version, 2);
	assert_int_equal(p[1].version, 3);
	free(p);
	expect_corrupt_restore(s, "z", 3, 0);
	assert_ok(ctx_restore(s, "z", 2, &nv));
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* ---- cost ------------------------------------------------------------------------ */

/* A point and a restore of a 200,000-key context share its trie: same root,
 * zero diff, equal counts, and heap use does not grow with the size. */
static void test_point_and_restore_do_not_copy(void **unused)
{
	uint64_t seed = test_seed("no_copy", 0xc0b1);
	ctx_store *s = open_mem(4, 4);
	assert_ok(ctx_create(s, "big"));
	size_t heap0 = heap_in_use();
	char k[32], v[32];
	for (int b = 0; b < 10; b++) {
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin(s, "big", &t));
		for (int i = 0; i < 20000; i++) {
			int n = b * 20000 + i;
			int kl = snprintf(k, sizeof(k), "key-%07d", n);
			int vl = snprintf(v, sizeof(v), "value-%d-%llu", n,
			                  (unsigned long long)test_rand_below(&seed, 1000));
			assert_ok(ctx_txn_put(t, k, (size_t)kl, v, (size_t)vl));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
	}
	size_t heap1 = heap_in_use();
	uint64_t pv = 0;
	assert_ok(ctx_point_create(s, "big", "big", &pv));
	/* Change a few keys, push the pinned version out of history. */
	for (int i = 0; i < 6; i++) {
		int n = (int)test_rand_below(&seed, 200000);
		int kl = snprintf(k, sizeof(k), "key-%07d", n);
		assert_ok(ctx_put(s, "big", k, (size_t)kl, "changed", 7, NULL));
	}
	uint64_t nv = 0;
	assert_ok(ctx_restore(s, "big", pv, &nv));
	size_t heap2 = heap_in_use();

	ctx_state *pinned = NULL, *restored = head_of(s, "big");
	assert_ok(ctx_get_at(s, "big", pv, &pinned));
	assert_int_equal(ctx_state_version(restored), nv);
	assert_int_equal(ctx_state_count(restored), 200000);
	assert_int_equal(ctx_state_count(restored), ctx_state_count(pinned));
	assert_int_equal(ctx_state_bytes(restored), ctx_state_bytes(pinned));
	ctx_diff *d = NULL;
	assert_ok(ctx_diff_states(pinned, restored, &d));
	assert_int_equal(ctx_diff_count(d), 0);
	ctx_diff_free(d);
	/* Structural: the restored version is the pinned trie itself. */
	assert_ptr_equal(restored->data.root, pinned->data.root);
	assert_ptr_equal(restored->meta.root, pinned->meta.root);
	size_t np = 0;
	ctx_point *p = points_of(s, "big", &np);
	assert_int_equal(np, 1);
	assert_int_equal(p[0].keys, 200000);
	assert_int_equal(p[0].bytes, ctx_state_bytes(pinned));
	free(p);
	ctx_state_release(pinned);
	ctx_state_release(restored);

	/* Memory: building took more than 8 MiB (200,000 leaves); a point, six
	 * puts and a restore must take far less (a copy would take as much). */
	if (heap1 < heap0 + (8u << 20))
		fail_msg("building 200,000 keys took only %zu bytes of heap?", heap1 - heap0);
	if (heap2 > heap1 + (1u << 20))
		fail_msg("the heap grew by %zu bytes for a point and a restore, after %zu bytes "
		         "for building the context",
		         heap2 - heap1, heap1 - heap0);
	ctx_close(s);
}

/* ---- persistence ---------------------------------------------------------------- */

/* Random commits (data and metadata), points, point deletes and restores of
 * every kind, under the fake clock. */
static void persist_workload(ctx_store *s, const char *id, uint64_t *seed, long steps)
{
	static const char *labels[] = {
	    "", "alpha", "b\xc3\xa9ta",
	    "a label of exactly sixty-four bytes, the longest one allowed!!!!"};
	for (long i = 0; i < steps; i++) {
		set_now(atomic_load(&fake_now) + 1000 + test_rand_below(seed, 100));
		uint64_t r = test_rand_below(seed, 20);
		if (r < 11) {
			ctx_txn *t = NULL;
			assert_ok(ctx_txn_begin(s, id, &t));
			int nops = 1 + (int)test_rand_below(seed, 5);
			for (int j = 0; j < nops; j++) {
				char k[16], v[32];
				snprintf(k, sizeof(k), "k%d", (int)test_rand_below(seed, 30));
				snprintf(v, sizeof(v), "v%ld-%d", i, j);
				uint64_t what = test_rand_below(seed, 10);
				if (what < 6)
					assert_ok(ctx_txn_put(t, k, strlen(k), v, strlen(v)));
				else if (what < 8)
					assert_ok(ctx_txn_del(t, k, strlen(k)));
				else if (what < 9)
					assert_ok(ctx_txn_meta_put(t, k, strlen(k), v, strlen(v)));
				else
					assert_ok(ctx_txn_meta_del(t, k, strlen(k)));
			}
			assert_ok(ctx_txn_commit(t, 0, NULL));
		} else if (r < 14) {
			assert_ok(ctx_point_create(s, id, labels[test_rand_below(seed, 4)], NULL));
		} else if (r < 15) {
			size_t n = 0;
			ctx_point *p = points_of(s, id, &n);
			if (n)
				assert_ok(
				    ctx_point_delete(s, id, p[test_rand_below(seed, n)].version));
			free(p);
		} else {
			uint64_t nv = 0;
			ctx_status st;
			if (r == 15) {
				st = ctx_restore_latest(s, id, &nv);
			} else if (r == 16) {
				st = ctx_restore_label(s, id, labels[1 + test_rand_below(seed, 3)],
				                       &nv);
			} else if (r == 17) {
				uint64_t back = test_rand_below(seed, 20000);
				st = ctx_restore_before(s, id, atomic_load(&fake_now) - back, &nv);
			} else {
				ctx_history_entry *h = NULL;
				size_t n = 0;
				assert_ok(ctx_history(s, id, &h, &n));
				st = ctx_restore(s, id, h[test_rand_below(seed, n)].version, &nv);
				free(h);
			}
			if (st != CTX_OK && st != CTX_NOT_FOUND)
				fail_msg("restore: %s: %s", ctx_strerror(st), ctx_last_error());
		}
	}
}

/* A clean close and reopen (durability always: from the checkpoint) keeps
 * every kept version, its content, times and key times, and every point. */
static void test_persist_clean_reopen(void **unused)
{
	uint64_t seed = test_seed("persist_clean_reopen", 0x9e7);
	char *dir = test_make_dir("points-reopen");
	opts_spec sp = {dir, 8, 5, 0};
	set_now(1000000);
	ctx_store *s = open_spec(sp);
	assert_ok(ctx_create(s, "p1"));
	assert_ok(ctx_create(s, "p2"));
	long steps = test_iters(150, 40);
	persist_workload(s, "p1", &seed, steps);
	persist_workload(s, "p2", &seed, steps / 3);
	char *want1 = dump_context(s, "p1", DUMP_ALL), *want2 = dump_context(s, "p2", DUMP_ALL);
	ctx_close(s);

	ctx_verify_report rep;
	assert_ok(ctx_verify(dir, &rep));
	s = open_spec(sp);
	char *got1 = dump_context(s, "p1", DUMP_ALL), *got2 = dump_context(s, "p2", DUMP_ALL);
	expect_same_dump(want1, got1, "p1 after reopen");
	expect_same_dump(want2, got2, "p2 after reopen");
	free(got1);
	free(got2);
	free(want1);
	free(want2);

	/* More work on the recovered store, reopen again. */
	persist_workload(s, "p1", &seed, steps);
	want1 = dump_context(s, "p1", DUMP_ALL);
	ctx_close(s);
	s = open_spec(sp);
	got1 = dump_context(s, "p1", DUMP_ALL);
	expect_same_dump(want1, got1, "p1 after a second reopen");
	free(got1);
	free(want1);
	/* The recovered points restore. */
	size_t n = 0;
	ctx_point *p = points_of(s, "p1", &n);
	for (size_t i = 0; i < n; i++) {
		ctx_state *pinned = NULL;
		assert_ok(ctx_get_at(s, "p1", p[i].version, &pinned));
		uint64_t nv = 0;
		assert_ok(ctx_restore(s, "p1", p[i].version, &nv));
		ctx_state *h = head_of(s, "p1");
		expect_same_content(h, pinned);
		ctx_state_release(h);
		ctx_state_release(pinned);
	}
	free(p);
	ctx_close(s);
	test_remove_dir(dir);
	free(dir);
}

/* Copy the log segments of src (no checkpoint) into a fresh directory. */
static char *copy_log_only(const char *src, const char *name)
{
	char *dst = test_make_dir(name);
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "cp '%s'/wal-*.log '%s'/", src, dst);
	assert_int_equal(system(cmd), 0);
	return dst;
}

static void log_replay_case(int flags)
{
	uint64_t seed = test_seed("persist_log_replay", 0x1e9);
	char *dir = test_make_dir("points-log");
	opts_spec sp = {dir, 8, 5, 0};
	set_now(5000000);
	ctx_store *s = open_spec(sp);
	assert_ok(ctx_create(s, "lg"));
	persist_workload(s, "lg", &seed, test_iters(150, 40));
	char *want = dump_context(s, "lg", flags);
	test_close_keeping_log(s);
	char *copy = copy_log_only(dir, "points-log-copy");
	ctx_verify_report rep;
	ctx_status vr = ctx_verify(copy, &rep);
	if (vr != CTX_OK)
		fail_msg("ctx_verify of the log alone: %s: %s", ctx_strerror(vr), rep.message);
	assert_int_equal(rep.checkpoint_revision, 0);
	s = open_spec((opts_spec){copy, 8, 5, 0});
	char *got = dump_context(s, "lg", flags);
	expect_same_dump(want, got,
	                 flags == DUMP_CHANGED     ? "log replay (history keys_changed)"
	                 : flags == DUMP_KEY_TIMES ? "log replay (key times)"
	                                           : "log replay");
	free(got);
	free(want);
	ctx_close(s);
	test_remove_dir(copy);
	test_remove_dir(dir);
	free(copy);
	free(dir);
}

/* Recovery from the log alone rebuilds the same versions (revisions, commit
 * times), contents and points. */
static void test_persist_log_replay(void **unused)
{
	log_replay_case(0);
}

/* ... and the same keys_changed in the history (ctx.h: "keys added, changed
 * or removed by its commit"), as a clean reopen does. */
static void test_persist_log_replay_keys_changed(void **unused)
{
	log_replay_case(DUMP_CHANGED);
}

/* ... and the same ctx_state_key_time for every key of every kept version
 * (restores included), as a clean reopen does. */
static void test_persist_log_replay_key_times(void **unused)
{
	log_replay_case(DUMP_KEY_TIMES);
}

/* ---- restore records ------------------------------------------------------------ */

/* A store on dir that checkpoints only when asked (and at close). */
static ctx_store *open_nockpt(const char *dir, size_t depth, size_t max_points)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = depth;
	o.max_points = max_points;
	o.checkpoint_bytes = (size_t)1 << 40;
	o.clock_us = fake_clock;
	ctx_store *s = NULL;
	ctx_status st = ctx_open(&o, &s);
	if (st != CTX_OK)
		fail_msg("ctx_open %s: %s: %s", dir, ctx_strerror(st), ctx_last_error());
	return s;
}

/* Where the records of segment `path` end (segments of an open store end
 * with zeros, written ahead of the records: file-format.md, "Log segment"). */
static uint64_t records_end(const char *path)
{
	size_t size = 0;
	unsigned char *p = test_read_file(path, &size);
	size_t off = WAL_HEADER_SIZE;
	rec_view v;
	while (!rec_parse(get_u32(p + 8), p + off, size - off, true, &v))
		off += v.len;
	free(p);
	return off;
}

/* Bytes in the log segments of dir (their records, without the zeros after). */
static uint64_t log_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	uint64_t total = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "wal-", 4) != 0)
			continue;
		char path[4096];
		struct stat sb;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		assert_int_equal(stat(path, &sb), 0);
		total += records_end(path);
	}
	closedir(d);
	return total;
}

/* What a kill -9 leaves: the files of dir, copied while its store is open
 * (durability always: everything acknowledged is on disk). */
static char *crash_image(const char *dir, const char *name)
{
	char *dst = test_make_dir(name);
	char cmd[8192];
	snprintf(cmd, sizeof(cmd),
	         "cp '%s'/wal-*.log '%s'/ && (cp '%s'/ckpt-*.ckpt '%s'/ 2>/dev/null; true)", dir,
	         dst, dir, dst);
	assert_int_equal(system(cmd), 0);
	return dst;
}

/* Put keys 0..n-1 with values of generation gen, in one transaction. */
static uint64_t put_generation(ctx_store *s, const char *id, long n, int gen)
{
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, id, &t));
	for (long i = 0; i < n; i++) {
		char k[32], v[48];
		int kl = snprintf(k, sizeof(k), "k%07ld", i);
		int vl = snprintf(v, sizeof(v), "value-%d-of-key-%ld", gen, i);
		assert_ok(ctx_txn_put(t, k, (size_t)kl, v, (size_t)vl));
	}
	uint64_t v = 0;
	assert_ok(ctx_txn_commit(t, 0, &v));
	return v;
}

static void expect_version_content(ctx_store *a, ctx_store *b, const char *id, uint64_t va,
                                   uint64_t vb)
{
	ctx_state *x, *y;
	assert_ok(ctx_get_at(a, id, va, &x));
	assert_ok(ctx_get_at(b, id, vb, &y));
	expect_same_content(x, y);
	ctx_state_release(x);
	ctx_state_release(y);
}

/* A restore's log record names its target: its size is the same whether the
 * restore changes every key of a large context or one key (the record of
 * docs/file-format.md: a header of at most 40 bytes, id, three u64). After a crash, replay
 * finds the target in the replayed history and rebuilds the restored content. */
static void test_restore_record_size_and_replay(void **unused)
{
	char *dir = test_make_dir("points-restore-ref");
	set_now(2000000);
	ctx_store *s = open_nockpt(dir, 8, 4);
	assert_ok(ctx_create(s, "big"));
	long n = test_iters(100000, 20000);
	uint64_t v_old = put_generation(s, "big", n, 0);
	put_generation(s, "big", n, 1); /* every value differs from v_old's */
	assert_ok(ctx_put(s, "big", "x", 1, "1", 1, NULL));
	uint64_t record = 0;

	uint64_t before = log_bytes(dir), v_big = 0;
	assert_ok(ctx_restore(s, "big", v_old, &v_big)); /* changes all n keys */
	record = log_bytes(dir) - before;
	assert_true(record > 2 + 3 + 24 && record <= 40 + 2 + 3 + 24);
	assert_ok(ctx_put(s, "big", "y", 1, "2", 1, NULL));
	before = log_bytes(dir);
	uint64_t v_small = 0;
	assert_ok(ctx_restore(s, "big", v_big, &v_small)); /* changes one key */
	assert_int_equal(log_bytes(dir) - before, record);

	/* Crash, recover from the log alone. */
	char *img = crash_image(dir, "points-restore-ref-img");
	ctx_verify_report rep;
	ctx_status vr = ctx_verify(img, &rep);
	if (vr != CTX_OK)
		fail_msg("ctx_verify: %s: %s", ctx_strerror(vr), rep.message);
	assert_int_equal(rep.checkpoint_revision, 0);
	/* Opened with a history too short to hold the target: named, not
	 * guessed (ctx_verify keeps every version, so it can tell). */
	ctx_options o;
	ctx_options_init(&o);
	o.dir = img;
	o.history_depth = 1;
	ctx_store *bad = NULL;
	assert_int_equal(ctx_open(&o, &bad), CTX_CORRUPT);
	assert_non_null(strstr(ctx_last_error(), "history_depth"));

	ctx_store *r = open_nockpt(img, 8, 4);
	assert_int_equal(test_version_of(r, "big"), v_small);
	expect_version_content(s, r, "big", v_old, v_big);
	expect_version_content(s, r, "big", v_old, v_small);
	char *want = dump_context(s, "big", DUMP_ALL), *got = dump_context(r, "big", DUMP_ALL);
	expect_same_dump(want, got, "restores replayed from their records");
	free(want);
	free(got);
	ctx_close(r);

	ctx_close(s);
	test_remove_dir(img);
	test_remove_dir(dir);
	free(img);
	free(dir);
}

/* The target of a restore left history before the crash: replay finds it
 * among the points (pinned), or does not need it because a checkpoint taken
 * after the restore holds the restored version itself. */
static void test_restore_replay_target_left_history(void **unused)
{
	char *dir = test_make_dir("points-restore-gone");
	set_now(3000000);
	ctx_store *s = open_nockpt(dir, 2, 2);
	assert_ok(ctx_create(s, "g"));
	long n = test_iters(20000, 5000);
	uint64_t v_old = put_generation(s, "g", n, 0);
	uint64_t pinned = 0;
	assert_ok(ctx_point_create(s, "g", "old", &pinned));
	assert_int_equal(pinned, v_old);
	for (int i = 0; i < 4; i++)
		put_generation(s, "g", 10, 10 + i);
	ctx_history_entry *h;
	size_t hn;
	assert_ok(ctx_history(s, "g", &h, &hn));
	assert_true(hn == 3 && h[0].version == v_old && h[1].version > v_old + 1); /* pinned only */
	free(h);
	uint64_t v_r = 0;
	assert_ok(ctx_restore_label(s, "g", "old", &v_r));
	put_generation(s, "g", 3, 20);

	/* (1) From the log alone: the point record replays first, the restore
	 * finds its target among the points. */
	char *img = crash_image(dir, "points-restore-gone-img1");
	ctx_store *r = open_nockpt(img, 2, 2);
	expect_version_content(s, r, "g", v_old, v_old);
	ctx_state *got;
	assert_ok(ctx_get_at(r, "g", v_r, &got));
	ctx_state *want;
	assert_ok(ctx_get_at(s, "g", v_old, &want));
	expect_same_content(want, got);
	ctx_state_release(got);
	ctx_close(r);
	test_remove_dir(img);
	free(img);

	/* (2) The point goes, history moves on: the target is nowhere; a
	 * checkpoint then holds the restored content, and the restore record,
	 * which it covers, is not replayed. */
	assert_ok(ctx_point_delete(s, "g", v_old));
	for (int i = 0; i < 3; i++)
		put_generation(s, "g", 5, 30 + i);
	assert_ok(ctx_checkpoint(s));
	assert_int_equal(ctx_get_at(s, "g", v_old, &got), CTX_NOT_FOUND);
	assert_ok(ctx_put(s, "g", "after", 5, "ckpt", 4, NULL));
	img = crash_image(dir, "points-restore-gone-img2");
	r = open_nockpt(img, 2, 2);
	ctx_state *a = head_of(s, "g"), *b = head_of(r, "g");
	expect_same_content(a, b);
	assert_int_equal(ctx_state_count(b), n + 1);
	ctx_state_release(a);
	ctx_state_release(b);
	ctx_close(r);
	ctx_state_release(want);

	ctx_close(s);
	test_remove_dir(img);
	test_remove_dir(dir);
	free(img);
	free(dir);
}

/* ---- kill -9 -------------------------------------------------------------------- */

/* The child: this program re-executed with "--points-child DIR FD SEED
 * CHECKPOINT_BYTES". It runs commits, points, point deletes and restores on
 * context "kc", telling the parent before each operation (INTENT) and after
 * each success (ACK). With a small CHECKPOINT_BYTES, background checkpoints
 * run all along, so that recovery starts from one and replays the rest. */

#define KC_KEYS    24
#define KC_DEPTH   64
#define KC_POINTS  5
#define KC_MAX_OPS 3000

enum kc_op { KC_PUT = 1, KC_DEL, KC_POINT, KC_PDEL, KC_RESTORE, KC_FAIL };

typedef struct kc_msg {
	uint32_t op;
	uint32_t ack;    /* 0 intent, 1 ack */
	uint64_t a;      /* key, label id, point version, restore target */
	uint64_t b;      /* value id; the fake time of the operation */
	uint64_t time;   /* the fake time */
	uint64_t result; /* ack: new version / pinned version */
} kc_msg;

static void kc_send(int fd, const kc_msg *m)
{
	const char *p = (const char *)m;
	size_t left = sizeof(*m);
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(5);
		p += w;
		left -= (size_t)w;
	}
}

static void kc_fail(int fd, const char *what, ctx_status st)
{
	fprintf(stderr, "points child: %s: %s: %s\n", what, ctx_strerror(st), ctx_last_error());
	kc_msg m = {KC_FAIL, 0, (uint64_t)st, 0, 0, 0};
	kc_send(fd, &m);
	_exit(3);
}

static int kc_child(const char *dir, int fd, uint64_t seed, size_t checkpoint_bytes)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.checkpoint_bytes = checkpoint_bytes;
	o.history_depth = KC_DEPTH;
	o.max_points = KC_POINTS;
	o.clock_us = fake_clock;
	set_now(1000);
	ctx_store *s = NULL;
	ctx_status st = ctx_open(&o, &s);
	if (st != CTX_OK)
		kc_fail(fd, "open", st);
	if ((st = ctx_create(s, "kc")) != CTX_OK)
		kc_fail(fd, "create", st);
	int val[KC_KEYS];
	for (int i = 0; i < KC_KEYS; i++)
		val[i] = -1;
	uint64_t head = 1, points[KC_POINTS];
	size_t npoints = 0;
	for (uint64_t i = 0; i < KC_MAX_OPS; i++) {
		uint64_t now = 2000 + i * 1000;
		set_now(now);
		uint64_t r = test_rand_below(&seed, 20);
		kc_msg m = {0, 0, 0, 0, now, 0};
		if (r < 10) {
			int k = (int)test_rand_below(&seed, KC_KEYS);
			m.a = (uint64_t)k;
			char key[16], v[32];
			snprintf(key, sizeof(key), "key%d", k);
			if (val[k] >= 0 && r < 3) {
				m.op = KC_DEL;
				kc_send(fd, &m);
				st = ctx_del(s, "kc", key, strlen(key), &m.result);
				val[k] = -1;
			} else {
				m.op = KC_PUT;
				m.b = i;
				snprintf(v, sizeof(v), "v%" PRIu64, i);
				kc_send(fd, &m);
				st = ctx_put(s, "kc", key, strlen(key), v, strlen(v), &m.result);
				val[k] = (int)i;
			}
			if (st != CTX_OK)
				kc_fail(fd, "commit", st);
			head = m.result;
		} else if (r < 14) {
			m.op = KC_POINT;
			m.a = test_rand_below(&seed, 4); /* label "L<a>", 0 = none */
			char label[16];
			snprintf(label, sizeof(label), "L%d", (int)m.a);
			kc_send(fd, &m);
			if ((st = ctx_point_create(s, "kc", m.a ? label : NULL, &m.result)) !=
			    CTX_OK)
				kc_fail(fd, "point", st);
			/* The child's own idea of the points (to pick deletes). */
			size_t j = 0;
			for (size_t q = 0; q < npoints; q++)
				if (points[q] != m.result)
					points[j++] = points[q];
			npoints = j;
			if (npoints == KC_POINTS) {
				memmove(points, points + 1, (KC_POINTS - 1) * sizeof(points[0]));
				npoints--;
			}
			points[npoints++] = m.result;
		} else if (r < 15) {
			if (!npoints)
				continue;
			size_t q = test_rand_below(&seed, npoints);
			m.op = KC_PDEL;
			m.a = points[q];
			kc_send(fd, &m);
			if ((st = ctx_point_delete(s, "kc", m.a)) != CTX_OK)
				kc_fail(fd, "point delete", st);
			memmove(points + q, points + q + 1, (npoints - q - 1) * sizeof(points[0]));
			npoints--;
		} else {
			/* A point, or a version still in history. */
			if (npoints && r < 18)
				m.a = points[test_rand_below(&seed, npoints)];
			else
				m.a = head -
				      test_rand_below(&seed, head < KC_DEPTH ? head : KC_DEPTH);
			m.op = KC_RESTORE;
			kc_send(fd, &m);
			if ((st = ctx_restore(s, "kc", m.a, &m.result)) != CTX_OK)
				kc_fail(fd, "restore", st);
			head = m.result;
			/* The child does not know the restored content; re-read it. */
			ctx_state *cur = NULL;
			if ((st = ctx_get(s, "kc", &cur)) != CTX_OK)
				kc_fail(fd, "get", st);
			for (int k = 0; k < KC_KEYS; k++) {
				char key[16];
				snprintf(key, sizeof(key), "key%d", k);
				val[k] =
				    ctx_state_lookup(cur, key, strlen(key), NULL, NULL) ? 0 : -1;
			}
			ctx_state_release(cur);
		}
		m.ack = 1;
		kc_send(fd, &m);
	}
	/* Wait to be killed. */
	for (;;)
		pause();
	return 0;
}

/* The parent's model: the content of every version, the points. */
typedef struct kc_model {
	int (*val)[KC_KEYS]; /* index = version; value id, -1 = absent */
	uint64_t *time;      /* commit time of each version */
	size_t cap;
	uint64_t head;
	size_t npoints;
	uint64_t pver[KC_POINTS], ptime[KC_POINTS];
	int plabel[KC_POINTS];
} kc_model;

static void kc_grow(kc_model *m, uint64_t version)
{
	if (version < m->cap)
		return;
	size_t cap = m->cap ? m->cap : 256;
	while (cap <= version)
		cap *= 2;
	m->val = realloc(m->val, cap * sizeof(*m->val));
	m->time = realloc(m->time, cap * sizeof(*m->time));
	assert_non_null(m->val);
	assert_non_null(m->time);
	m->cap = cap;
}

/* Apply a (acknowledged or in-flight) operation to m. */
static void kc_apply(kc_model *m, const kc_msg *op, uint64_t result)
{
	switch (op->op) {
	case KC_PUT:
	case KC_DEL:
	case KC_RESTORE:
		if (result != m->head + 1)
			fail_msg("op %u made version %" PRIu64 ", want %" PRIu64, op->op, result,
			         m->head + 1);
		kc_grow(m, result);
		if (op->op == KC_RESTORE) {
			if (op->a == 0 || op->a > m->head)
				fail_msg("restore of version %" PRIu64 " past head", op->a);
			memcpy(m->val[result], m->val[op->a], sizeof(m->val[0]));
		} else {
			memcpy(m->val[result], m->val[m->head], sizeof(m->val[0]));
			m->val[result][op->a] = op->op == KC_PUT ? (int)op->b : -1;
		}
		m->time[result] = op->time;
		m->head = result;
		break;
	case KC_POINT: {
		size_t j = 0;
		bool had = false;
		for (size_t q = 0; q < m->npoints; q++) {
			if (m->pver[q] == result) {
				had = true;
				continue;
			}
			m->pver[j] = m->pver[q];
			m->ptime[j] = m->ptime[q];
			m->plabel[j] = m->plabel[q];
			j++;
		}
		m->npoints = j;
		if (!had && m->npoints == KC_POINTS) {
			memmove(m->pver, m->pver + 1, (KC_POINTS - 1) * sizeof(m->pver[0]));
			memmove(m->ptime, m->ptime + 1, (KC_POINTS - 1) * sizeof(m->ptime[0]));
			memmove(m->plabel, m->plabel + 1, (KC_POINTS - 1) * sizeof(m->plabel[0]));
			m->npoints--;
		}
		m->pver[m->npoints] = result;
		m->ptime[m->npoints] = op->time;
		m->plabel[m->npoints] = (int)op->a;
		m->npoints++;
		break;
	}
	case KC_PDEL: {
		size_t j = 0;
		for (size_t q = 0; q < m->npoints; q++) {
			if (m->pver[q] == op->a)
				continue;
			m->pver[j] = m->pver[q];
			m->ptime[j] = m->ptime[q];
			m->plabel[j] = m->plabel[q];
			j++;
		}
		m->npoints = j;
		break;
	}
	default:
		fail_msg("bad op %u", op->op);
	}
}

static bool kc_points_match(const kc_model *m, const ctx_point *p, size_t n)
{
	if (n != m->npoints)
		return false;
	for (size_t i = 0; i < n; i++) {
		char label[16] = "";
		if (m->plabel[i])
			snprintf(label, sizeof(label), "L%d", m->plabel[i]);
		if (p[i].version != m->pver[i] || p[i].time_us != m->ptime[i] ||
		    strcmp(p[i].label, label) != 0)
			return false;
	}
	return true;
}

static void kc_check_version(const kc_model *m, const ctx_state *st, uint64_t v)
{
	size_t present = 0;
	for (int k = 0; k < KC_KEYS; k++) {
		char key[16], val[32];
		snprintf(key, sizeof(key), "key%d", k);
		int want = m->val[v][k];
		const void *got = NULL;
		size_t n = 0;
		bool has = ctx_state_lookup(st, key, strlen(key), &got, &n);
		if (has != (want >= 0))
			fail_msg("recovered version %" PRIu64 ": key %s %s", v, key,
			         has ? "present, should be absent" : "missing");
		if (!has)
			continue;
		present++;
		snprintf(val, sizeof(val), "v%d", want);
		if (n != strlen(val) || memcmp(got, val, n) != 0)
			fail_msg("recovered version %" PRIu64 ": key %s has the wrong value", v,
			         key);
	}
	assert_int_equal(ctx_state_count(st), present);
	assert_int_equal(ctx_state_updated_us(st), m->time[v]);
}

static void kc_round(uint64_t seed, long target_acks, size_t checkpoint_bytes)
{
	char *dir = test_make_dir("points-kill");
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	char fdstr[16], seedstr[32], ckstr[32];
	snprintf(fdstr, sizeof(fdstr), "%d", pfd[1]);
	snprintf(seedstr, sizeof(seedstr), "%" PRIu64, seed);
	snprintf(ckstr, sizeof(ckstr), "%zu", checkpoint_bytes);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		execl("/proc/self/exe", "test_points", "--points-child", dir, fdstr, seedstr, ckstr,
		      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);

	kc_model m = {0};
	kc_grow(&m, 1);
	for (int k = 0; k < KC_KEYS; k++)
		m.val[1][k] = -1;
	m.time[1] = 1000;
	m.head = 1;
	kc_msg pending = {0};
	bool in_flight = false, child_failed = false, killed = false;
	long acks = 0;
	double deadline = test_now() + 120;
	/* Read until the target, kill, then drain: everything the child wrote
	 * before it died is in the pipe (an ack not read yet still counts). */
	for (;;) {
		if (!killed && (acks >= target_acks || child_failed || test_now() > deadline)) {
			kill(pid, SIGKILL);
			killed = true;
		}
		struct pollfd pf = {pfd[0], POLLIN, 0};
		if (poll(&pf, 1, 200) <= 0)
			continue;
		kc_msg msg;
		size_t got = 0;
		while (got < sizeof(msg)) {
			ssize_t r = read(pfd[0], (char *)&msg + got, sizeof(msg) - got);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		if (got < sizeof(msg))
			break; /* EOF: the child is gone */
		if (msg.op == KC_FAIL) {
			child_failed = true;
			continue;
		}
		if (!msg.ack) {
			if (in_flight)
				fail_msg("two intents without an ack");
			pending = msg;
			in_flight = true;
			continue;
		}
		if (!in_flight || msg.op != pending.op || msg.a != pending.a)
			fail_msg("ack without its intent");
		kc_apply(&m, &msg, msg.result);
		in_flight = false;
		acks++;
	}
	if (!killed)
		kill(pid, SIGKILL);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(pfd[0]);
	if (child_failed || !WIFSIGNALED(status))
		fail_msg("the child failed before it was killed (status %d)", status);
	if (acks < target_acks)
		fail_msg("only %ld acknowledged operations before the deadline", acks);

	/* Recover. */
	ctx_verify_report rep;
	ctx_status vr = ctx_verify(dir, &rep);
	if (vr != CTX_OK)
		fail_msg("ctx_verify after kill -9: %s: %s", ctx_strerror(vr), rep.message);
	if (checkpoint_bytes && rep.checkpoint_revision == 0)
		fail_msg("no background checkpoint during %ld operations", acks);
	ctx_store *s = open_spec((opts_spec){dir, KC_DEPTH, KC_POINTS, 0});
	ctx_state *head = head_of(s, "kc");
	uint64_t hv = ctx_state_version(head);
	ctx_state_release(head);
	size_t np = 0;
	ctx_point *p = points_of(s, "kc", &np);

	/* The operation in flight may or may not have happened. */
	if (in_flight) {
		kc_model after = m;
		after.val = malloc(m.cap * sizeof(*m.val));
		after.time = malloc(m.cap * sizeof(*m.time));
		assert_non_null(after.val);
		assert_non_null(after.time);
		memcpy(after.val, m.val, m.cap * sizeof(*m.val));
		memcpy(after.time, m.time, m.cap * sizeof(*m.time));
		bool makes_version =
		    pending.op == KC_PUT || pending.op == KC_DEL || pending.op == KC_RESTORE;
		uint64_t result = makes_version ? m.head + 1 : pending.op == KC_POINT ? m.head : 0;
		kc_apply(&after, &pending, result);
		bool applied = makes_version ? hv == m.head + 1 : !kc_points_match(&m, p, np);
		if (applied) {
			free(m.val);
			free(m.time);
			m = after;
		} else {
			free(after.val);
			free(after.time);
		}
	}
	if (hv != m.head)
		fail_msg("recovered head %" PRIu64 ", acknowledged %" PRIu64 "%s", hv, m.head,
		         in_flight ? " (one in flight)" : "");
	if (!kc_points_match(&m, p, np)) {
		test_buf b = {0};
		test_buf_add(&b, "", 0);
		for (size_t i = 0; i < np; i++)
			test_buf_printf(&b, " %" PRIu64 "@%" PRIu64 "'%s'", p[i].version,
			                p[i].time_us, p[i].label);
		test_buf_add(&b, " | want", 7);
		for (size_t i = 0; i < m.npoints; i++)
			test_buf_printf(&b, " %" PRIu64 "@%" PRIu64 "'L%d'", m.pver[i], m.ptime[i],
			                m.plabel[i]);
		fail_msg("recovered points differ from the acknowledged ones:%s", b.p);
	}
	/* Every kept version (last KC_DEPTH and pinned) with its exact content. */
	for (uint64_t v = 1; v <= m.head; v++) {
		bool pinned = false;
		for (size_t i = 0; i < m.npoints; i++)
			pinned |= m.pver[i] == v;
		bool kept = v + KC_DEPTH > m.head || pinned;
		ctx_state *st = NULL;
		ctx_status r = ctx_get_at(s, "kc", v, &st);
		if (!kept) {
			if (r != CTX_NOT_FOUND)
				fail_msg("version %" PRIu64 " should have left history: %s", v,
				         ctx_strerror(r));
			continue;
		}
		if (r != CTX_OK)
			fail_msg("recovered version %" PRIu64 " (head %" PRIu64 "): %s", v, m.head,
			         ctx_strerror(r));
		kc_check_version(&m, st, v);
		ctx_state_release(st);
	}
	/* The recovered points restore to their content. */
	for (size_t i = 0; i < np; i++) {
		uint64_t nv = 0;
		assert_ok(ctx_restore(s, "kc", p[i].version, &nv));
		kc_msg op = {KC_RESTORE, 1, p[i].version, 0, 99, 0};
		kc_apply(&m, &op, nv);
		ctx_state *st = head_of(s, "kc");
		m.time[nv] = ctx_state_updated_us(st);
		kc_check_version(&m, st, nv);
		ctx_state_release(st);
	}
	free(p);
	ctx_close(s);
	free(m.val);
	free(m.time);
	test_remove_dir(dir);
	free(dir);
}

static void test_kill9_points_and_restores(void **unused)
{
	uint64_t seed = test_seed("kill9_points", 0x9119);
	long rounds = test_iters(4, 2);
	for (long r = 0; r < rounds; r++) {
		long target = 20 + (long)test_rand_below(&seed, 150);
		/* Every other round with background checkpoints every few records. */
		kc_round(test_rand(&seed), r % 2 ? 4 * target : target, r % 2 ? 2048 : 0);
	}
}

/* ---- concurrency ------------------------------------------------------------------ */

typedef struct conc {
	ctx_store *s;
	uint64_t pinned; /* never deleted during the run */
	char *pinned_content;
	atomic_bool stop;
	atomic_long failures;
	atomic_long reads;
} conc;

static void *conc_reader(void *arg)
{
	conc *c = arg;
	while (!atomic_load(&c->stop)) {
		ctx_state *st = NULL;
		if (ctx_get_at(c->s, "cc", c->pinned, &st) != CTX_OK) {
			atomic_fetch_add(&c->failures, 1);
			continue;
		}
		/* Content check without cmocka (not thread-safe): compare counts
		 * and one key. */
		const void *v = NULL;
		size_t n = 0;
		if (ctx_state_version(st) != c->pinned || ctx_state_count(st) != 3 ||
		    !ctx_state_lookup(st, "a", 1, &v, &n) || n != 4 || memcmp(v, "pin!", 4) != 0)
			atomic_fetch_add(&c->failures, 1);
		ctx_state_release(st);

		ctx_history_entry *h = NULL;
		size_t hn = 0;
		if (ctx_history(c->s, "cc", &h, &hn) != CTX_OK) {
			atomic_fetch_add(&c->failures, 1);
			continue;
		}
		bool seen = false;
		for (size_t i = 0; i < hn; i++) {
			if (i && h[i].version <= h[i - 1].version)
				atomic_fetch_add(&c->failures, 1);
			if (h[i].version == c->pinned)
				seen = h[i].pinned;
		}
		if (!seen || hn > 4 + 8)
			atomic_fetch_add(&c->failures, 1);
		free(h);

		ctx_point *p = NULL;
		size_t pn = 0;
		if (ctx_point_list(c->s, "cc", &p, &pn) != CTX_OK || pn == 0 || pn > 8 ||
		    p[0].version != c->pinned)
			atomic_fetch_add(&c->failures, 1);
		free(p);

		/* Diff of the pinned version against the newest. */
		ctx_state *head = NULL;
		if (ctx_get(c->s, "cc", &head) == CTX_OK &&
		    ctx_get_at(c->s, "cc", c->pinned, &st) == CTX_OK) {
			ctx_diff *d = NULL;
			if (ctx_diff_states(st, head, &d) != CTX_OK)
				atomic_fetch_add(&c->failures, 1);
			else if (ctx_diff_count(d) > ctx_state_count(st) + ctx_state_count(head))
				atomic_fetch_add(&c->failures, 1);
			ctx_diff_free(d);
			ctx_state_release(st);
		}
		ctx_state_release(head);
		atomic_fetch_add(&c->reads, 1);
	}
	return NULL;
}

/* Readers of history, points and diffs while a writer commits, pins,
 * unpins and restores: never blocked out, never a wrong answer. */
static void test_concurrent_history_readers(void **unused)
{
	uint64_t seed = test_seed("concurrent_history", 0xc0c0);
	ctx_store *s = open_mem(4, 8);
	assert_ok(ctx_create(s, "cc"));
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin(s, "cc", &t));
	assert_ok(ctx_txn_put(t, "a", 1, "pin!", 4));
	assert_ok(ctx_txn_put(t, "b", 1, "2", 1));
	assert_ok(ctx_txn_put(t, "c", 1, "3", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	conc c = {.s = s};
	atomic_init(&c.stop, false);
	atomic_init(&c.failures, 0);
	atomic_init(&c.reads, 0);
	assert_ok(ctx_point_create(s, "cc", "pin", &c.pinned));
	put_str(s, "cc", "b", "moved", NULL); /* so that no later point re-pins it */
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, conc_reader, &c), 0);
	long ops = test_iters(4000, 500);
	uint64_t mine[8];
	size_t nmine = 0;
	for (long i = 0; i < ops; i++) {
		uint64_t r = test_rand_below(&seed, 10);
		char k[16], v[32];
		snprintf(k, sizeof(k), "k%d", (int)test_rand_below(&seed, 50));
		snprintf(v, sizeof(v), "%ld", i);
		if (r < 6) {
			assert_ok(ctx_put(s, "cc", k, strlen(k), v, strlen(v), NULL));
		} else if (r < 8) {
			if (nmine == 6) { /* keep below max_points: the pin stays */
				assert_ok(ctx_point_delete(s, "cc", mine[0]));
				memmove(mine, mine + 1, 5 * sizeof(mine[0]));
				nmine--;
			}
			uint64_t pv = 0;
			assert_ok(ctx_point_create(s, "cc", NULL, &pv));
			if (pv != c.pinned && (nmine == 0 || mine[nmine - 1] != pv))
				mine[nmine++] = pv;
		} else {
			uint64_t nv = 0;
			uint64_t target = r == 8 ? c.pinned : test_version_of(s, "cc") - 2;
			ctx_status st = ctx_restore(s, "cc", target, &nv);
			assert_true(st == CTX_OK || st == CTX_NOT_FOUND);
		}
	}
	while (atomic_load(&c.reads) < 10)
		usleep(1000);
	atomic_store(&c.stop, true);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_int_equal(atomic_load(&c.failures), 0);
	ctx_close(s);
}

int main(int argc, char **argv)
{
	pool_use_slabs(false); /* mallinfo2 counts malloc's blocks only (pool.c) */
	if (argc == 6 && strcmp(argv[1], "--points-child") == 0)
		return kc_child(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 0),
		                (size_t)strtoull(argv[5], NULL, 0));
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_history_window),
	    cmocka_unit_test(test_history_depth_one_and_drop),
	    cmocka_unit_test(test_history_keys_changed_counts_keys),
	    cmocka_unit_test(test_key_time),
	    cmocka_unit_test(test_diff_random_versions),
	    cmocka_unit_test(test_diff_unrelated_contexts),
	    cmocka_unit_test(test_diff_identical_and_metadata),
	    cmocka_unit_test(test_points_rotation_and_fields),
	    cmocka_unit_test(test_points_labels),
	    cmocka_unit_test(test_points_same_version_and_delete),
	    cmocka_unit_test(test_points_auto),
	    cmocka_unit_test(test_restore_by_version_and_undo),
	    cmocka_unit_test(test_restore_latest_label_before),
	    cmocka_unit_test(test_damaged_point_refused),
	    cmocka_unit_test(test_point_and_restore_do_not_copy),
	    cmocka_unit_test(test_persist_clean_reopen),
	    cmocka_unit_test(test_persist_log_replay),
	    cmocka_unit_test(test_persist_log_replay_keys_changed),
	    cmocka_unit_test(test_persist_log_replay_key_times),
	    cmocka_unit_test(test_restore_record_size_and_replay),
	    cmocka_unit_test(test_restore_replay_target_left_history),
	    cmocka_unit_test(test_kill9_points_and_restores),
	    cmocka_unit_test(test_concurrent_history_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
