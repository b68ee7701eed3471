/*
 * test_list.c - listing context ids (ctx_list_ids) and the status view, which
 * both walk the ordered index of ids.
 *
 * A model: random creates and drops of ids drawn from a small alphabet (so
 * that ids share prefixes and one is often a prefix of another), against a
 * sorted reference array; every listing (random prefix, after and limit, and
 * whole passes page by page) must equal the reference filtered the same way.
 * The index must also be rebuilt by recovery (from a checkpoint and from the
 * log alone) and stay usable after it.
 *
 * Under concurrency: threads create and drop ids (the same ids again and
 * again) while others page through; each pass must be strictly ascending (so
 * no id twice) and must contain every id that existed for the whole pass.
 * Worker threads count failures with T_CHECK; the main thread asserts.
 */
#include "testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- copies of ids -------------------------------------------------------------- */

/* libctx copies each id it returns with strdup. This program defines strdup
 * (the linker takes it over the C library's, for libctx.a too) to count the
 * copies made by the calling thread while counting is on: the work a page
 * costs, without timing anything. */
static _Thread_local bool counting;
static _Thread_local long copies;

char *strdup(const char *str)
{
	size_t n = strlen(str) + 1;
	char *p = malloc(n);
	if (p)
		memcpy(p, str, n);
	if (counting)
		copies++;
	return p;
}

/* ---- the model -------------------------------------------------------------- */

#define MAX_IDS 4096

typedef struct model {
	char *ids[MAX_IDS]; /* sorted by strcmp (the store's byte order) */
	size_t n;
} model;

static size_t model_find(const model *m, const char *id, bool *found)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(m->ids[mid], id);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static void model_add(model *m, const char *id)
{
	bool found;
	size_t at = model_find(m, id, &found);
	assert_false(found);
	assert_true(m->n < MAX_IDS);
	memmove(&m->ids[at + 1], &m->ids[at], (m->n - at) * sizeof(char *));
	m->ids[at] = strdup(id);
	m->n++;
}

static void model_remove(model *m, const char *id)
{
	bool found;
	size_t at = model_find(m, id, &found);
	assert_true(found);
	free(m->ids[at]);
	memmove(&m->ids[at], &m->ids[at + 1], (m->n - at - 1) * sizeof(char *));
	m->n--;
}

static void model_free(model *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->ids[i]);
	m->n = 0;
}

/* What ctx_list_ids(prefix, after, limit) should return: ids of m with the
 * prefix, greater than after, the first limit of them (0: all). */
static size_t model_list(const model *m, const char *prefix, const char *after, size_t limit,
                         const char **out)
{
	size_t plen = prefix ? strlen(prefix) : 0, n = 0;
	for (size_t i = 0; i < m->n && (!limit || n < limit); i++) {
		if (plen && strncmp(m->ids[i], prefix, plen) != 0)
			continue;
		if (after && strcmp(m->ids[i], after) <= 0)
			continue;
		out[n++] = m->ids[i];
	}
	return n;
}

/* A random id over "ab/" of 1..5 bytes: short, so ids collide, share
 * prefixes, and are prefixes of each other. */
static void random_id(uint64_t *rng, char *id)
{
	static const char alphabet[] = "ab/";
	size_t len = 1 + test_rand_below(rng, 5);
	for (size_t i = 0; i < len; i++)
		id[i] = alphabet[test_rand_below(rng, 3)];
	id[len] = 0;
}

/* A random prefix or after: NULL, empty, a random string (maybe longer than
 * any id, maybe with a byte outside the alphabet), or an id of the model. */
static const char *random_bound(uint64_t *rng, const model *m, char *buf)
{
	switch (test_rand_below(rng, 6)) {
	case 0:
		return NULL;
	case 1:
		return "";
	case 2:
		random_id(rng, buf);
		return buf;
	case 3:
		random_id(rng, buf);
		strcat(buf, test_rand_below(rng, 2) ? "c" : "\x7e");
		return buf;
	case 4:
		random_id(rng, buf);
		buf[1] = 0; /* one byte */
		return buf;
	default:
		if (!m->n)
			return NULL;
		strcpy(buf, m->ids[test_rand_below(rng, m->n)]);
		return buf;
	}
}

static void expect_list(ctx_store *s, const model *m, const char *prefix, const char *after,
                        size_t limit)
{
	static const char *want[MAX_IDS];
	size_t n = model_list(m, prefix, after, limit, want);
	ctx_list l = {99, NULL};
	assert_ok(ctx_list_ids(s, prefix, after, limit, &l));
	assert_non_null(l.ids);
	if (l.count != n)
		fail_msg("prefix '%s' after '%s' limit %zu: %zu ids, want %zu",
		         prefix ? prefix : "(null)", after ? after : "(null)", limit, l.count, n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(l.ids[i], want[i]) != 0)
			fail_msg("prefix '%s' after '%s' limit %zu: id %zu is '%s', want '%s'",
			         prefix ? prefix : "(null)", after ? after : "(null)", limit, i,
			         l.ids[i], want[i]);
	ctx_list_free(&l);
	assert_int_equal(l.count, 0);
	assert_null(l.ids);
}

/* Page through everything with prefix, limit ids at a time: the pages put
 * together must be the model's list. */
static void expect_paging(ctx_store *s, const model *m, const char *prefix, size_t limit)
{
	static const char *want[MAX_IDS];
	size_t n = model_list(m, prefix, NULL, 0, want), seen = 0;
	char after[CTX_ID_MAX + 1];
	bool first = true;
	for (;;) {
		ctx_list l;
		assert_ok(ctx_list_ids(s, prefix, first ? NULL : after, limit, &l));
		assert_true(l.count <= limit);
		for (size_t i = 0; i < l.count; i++) {
			assert_true(seen < n);
			assert_string_equal(l.ids[i], want[seen]);
			seen++;
		}
		size_t count = l.count;
		if (count)
			strcpy(after, l.ids[count - 1]);
		ctx_list_free(&l);
		first = false;
		if (count < limit)
			break;
	}
	assert_int_equal(seen, n);
}

static void expect_status_view(ctx_store *s, const model *m)
{
	ctx_context_status *v;
	size_t n;
	assert_ok(ctx_status_view(s, &v, &n));
	assert_int_equal(n, m->n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(v[i].id, m->ids[i]);
	free(v);
}

/* Random listings and full passes against the model. */
static void check_against_model(ctx_store *s, const model *m, uint64_t *rng, int rounds)
{
	char pbuf[16], abuf[16];
	for (int r = 0; r < rounds; r++) {
		const char *prefix = random_bound(rng, m, pbuf);
		const char *after = random_bound(rng, m, abuf);
		expect_list(s, m, prefix, after, test_rand_below(rng, 8));
	}
	const char *prefixes[] = {NULL, "a", "ab", "b/", "/", "aaaaa", "zz"};
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(*prefixes); i++)
		expect_paging(s, m, prefixes[i], 1 + test_rand_below(rng, 6));
	expect_status_view(s, m);
}

/* Create or drop a random id in both the store and the model. */
static void random_change(ctx_store *s, model *m, uint64_t *rng)
{
	char id[16];
	random_id(rng, id);
	bool found;
	model_find(m, id, &found);
	if (found) {
		assert_ok(ctx_drop(s, id));
		model_remove(m, id);
	} else {
		assert_ok(ctx_create(s, id));
		model_add(m, id);
	}
}

static void test_list_model(void **unused)
{
	(void)unused;
	uint64_t rng = test_seed("test_list_model", 0x11570001);
	ctx_store *s = test_open_memory();
	model m = {.n = 0};
	check_against_model(s, &m, &rng, 20); /* empty */
	long steps = test_iters(3000, 300);
	for (long i = 0; i < steps; i++) {
		random_change(s, &m, &rng);
		if (i % 50 == 0)
			check_against_model(s, &m, &rng, 40);
	}
	check_against_model(s, &m, &rng, 200);
	assert_int_equal(ctx_count(s), m.n);
	/* Drop everything: the index empties with the table. */
	while (m.n) {
		char id[16];
		strcpy(id, m.ids[test_rand_below(&rng, m.n)]);
		assert_ok(ctx_drop(s, id));
		model_remove(&m, id);
	}
	check_against_model(s, &m, &rng, 20);
	ctx_close(s);
}

/* Many contexts (a tall skip list): paging and prefixes stay exact. */
static void test_list_many(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	static model m;
	char id[32];
	for (int i = 0; i < 4000; i++) {
		snprintf(id, sizeof(id), "n%04d", (i * 7919) % 4000); /* out of order */
		assert_ok(ctx_create(s, id));
		model_add(&m, id);
	}
	uint64_t rng = 7;
	expect_paging(s, &m, NULL, 10);
	expect_paging(s, &m, "n12", 7);
	expect_list(s, &m, "n3", "n3500", 5);
	expect_list(s, &m, "n3", "n2", 5); /* after before the prefix */
	expect_list(s, &m, "n3", "n4", 5); /* after past the prefix: none */
	expect_list(s, &m, NULL, "n3999", 5);
	expect_list(s, &m, "n0", NULL, 0);
	/* Drop every third, and page again. */
	for (int i = 0; i < 4000; i += 3) {
		snprintf(id, sizeof(id), "n%04d", i);
		assert_ok(ctx_drop(s, id));
		model_remove(&m, id);
	}
	check_against_model(s, &m, &rng, 100);
	model_free(&m);
	ctx_close(s);
}

/* A page of 10 copies 10 ids (plus nothing per other context), whether the
 * store holds 100 contexts or 20,000: the cost of a page does not grow with
 * the store. */
static void test_list_page_cost(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	char id[32];
	for (int n = 0; n < 20000; n++) {
		snprintf(id, sizeof(id), "p%05d", n);
		assert_ok(ctx_create(s, id));
		if (n != 99 && n != 19999)
			continue;
		const char *afters[] = {NULL, "p00050", "p00089"};
		for (int i = 0; i < 3; i++) {
			ctx_list l;
			copies = 0;
			counting = true;
			assert_ok(ctx_list_ids(s, i == 2 ? "p000" : NULL, afters[i], 10, &l));
			counting = false;
			assert_int_equal(l.count, 10);
			if (copies != 10)
				fail_msg("%d contexts: a page of 10 copied %ld ids", n + 1, copies);
			ctx_list_free(&l);
		}
	}
	ctx_close(s);
}

/* ids with bytes above 0x7f and ids that are prefixes of others: byte order,
 * shorter first. */
static void test_list_byte_order(void **unused)
{
	(void)unused;
	ctx_store *s = test_open_memory();
	const char *ids[] = {"b", "a\xc3\xa9", "a", "ab", "a~", "A", "a b", "\xff"};
	const char *sorted[] = {"A", "a", "a b", "ab", "a~", "a\xc3\xa9", "b", "\xff"};
	for (size_t i = 0; i < 8; i++)
		assert_ok(ctx_create(s, ids[i]));
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	assert_int_equal(l.count, 8);
	for (size_t i = 0; i < 8; i++)
		assert_string_equal(l.ids[i], sorted[i]);
	ctx_list_free(&l);
	assert_ok(ctx_list_ids(s, "a", "a", 2, &l));
	assert_int_equal(l.count, 2);
	assert_string_equal(l.ids[0], "a b");
	assert_string_equal(l.ids[1], "ab");
	ctx_list_free(&l);
	assert_ok(ctx_list_ids(s, "a", "ab", 0, &l));
	assert_int_equal(l.count, 2);
	assert_string_equal(l.ids[0], "a~");
	assert_string_equal(l.ids[1], "a\xc3\xa9");
	ctx_list_free(&l);
	assert_int_equal(ctx_list_ids(NULL, NULL, NULL, 0, &l), CTX_INVALID);
	assert_int_equal(ctx_list_ids(s, NULL, NULL, 0, NULL), CTX_INVALID);
	ctx_close(s);
}

/* ---- recovery ---------------------------------------------------------------- */

static ctx_store *open_dir(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	return test_open(&o);
}

static void remove_checkpoints(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	char path[4096];
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "ckpt-", 5) == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			assert_int_equal(unlink(path), 0);
		}
	}
	closedir(d);
}

/* Recovery fills the index (from a checkpoint, and from the log alone, with
 * drops and re-creates of one id in it), and the index takes changes after. */
static void check_recovery(bool log_only)
{
	char *dir = test_make_dir(log_only ? "list-recovery-log" : "list-recovery-ckpt");
	uint64_t rng = 0x5eed + log_only;
	model m = {.n = 0};
	ctx_store *s = open_dir(dir);
	for (int i = 0; i < 300; i++)
		random_change(s, &m, &rng);
	test_close_keeping_log(s); /* the log, whole, beside the checkpoint */
	if (log_only)
		remove_checkpoints(dir);
	s = open_dir(dir);
	check_against_model(s, &m, &rng, 100);
	for (int i = 0; i < 200; i++)
		random_change(s, &m, &rng);
	check_against_model(s, &m, &rng, 100);
	ctx_close(s);
	s = open_dir(dir);
	check_against_model(s, &m, &rng, 50);
	ctx_close(s);
	model_free(&m);
	test_remove_dir(dir);
	free(dir);
}

static void test_list_after_recovery(void **unused)
{
	(void)unused;
	check_recovery(false);
	check_recovery(true);
}

/* ---- concurrency --------------------------------------------------------------- */

#define STABLE 300 /* ids that exist throughout: "k%03d-s" */
#define CHURN  300 /* ids created and dropped again and again: "k%03d-c" */

typedef struct shared {
	ctx_store *s;
	atomic_bool stop;
	atomic_long passes;
} shared;

typedef struct churner {
	shared *sh;
	uint64_t rng;
} churner;

static void *churn_main(void *arg)
{
	churner *ch = arg;
	shared *sh = ch->sh;
	uint64_t rng = ch->rng;
	char id[32];
	while (!atomic_load(&sh->stop)) {
		snprintf(id, sizeof(id), "k%03d-c", (int)test_rand_below(&rng, CHURN));
		ctx_status st = ctx_create(sh->s, id);
		T_CHECK(st == CTX_OK || st == CTX_EXISTS);
		st = ctx_drop(sh->s, id);
		T_CHECK(st == CTX_OK || st == CTX_NOT_FOUND);
	}
	return NULL;
}

/* One pass over prefix, limit ids a page: strictly ascending within and
 * across pages, and every stable id with the prefix seen. */
static void one_pass(ctx_store *s, const char *prefix, size_t limit, int first_stable, int nstable)
{
	char after[CTX_ID_MAX + 1] = "", id[32];
	bool first = true, *seen = calloc((size_t)nstable, sizeof(bool));
	for (;;) {
		ctx_list l;
		T_CHECK_STATUS(ctx_list_ids(s, prefix, first ? NULL : after, limit, &l), CTX_OK);
		for (size_t i = 0; i < l.count; i++) {
			T_CHECK(first || strcmp(l.ids[i], after) > 0);
			T_CHECK(!prefix || strncmp(l.ids[i], prefix, strlen(prefix)) == 0);
			int k;
			char kind;
			if (sscanf(l.ids[i], "k%3d-%c", &k, &kind) == 2 && kind == 's' &&
			    k >= first_stable && k < first_stable + nstable)
				seen[k - first_stable] = true;
			snprintf(after, sizeof(after), "%s", l.ids[i]);
			first = false;
		}
		size_t count = l.count;
		ctx_list_free(&l);
		if (count < limit)
			break;
	}
	for (int k = 0; k < nstable; k++) {
		snprintf(id, sizeof(id), "k%03d-s", first_stable + k);
		if (!seen[k])
			t_fail_detail(__LINE__, "stable id seen", k, id);
	}
	free(seen);
}

static void *pager_main(void *arg)
{
	shared *sh = arg;
	while (!atomic_load(&sh->stop)) {
		one_pass(sh->s, NULL, 7, 0, STABLE);
		one_pass(sh->s, "k01", 3, 10, 10);
		one_pass(sh->s, "k2", 50, 200, 100);
		/* The status view: sorted, every stable id in it. */
		ctx_context_status *v;
		size_t n, stable = 0;
		T_CHECK_STATUS(ctx_status_view(sh->s, &v, &n), CTX_OK);
		for (size_t i = 0; i < n; i++) {
			T_CHECK(i == 0 || strcmp(v[i - 1].id, v[i].id) < 0);
			stable += strstr(v[i].id, "-s") != NULL;
		}
		T_CHECK(stable == STABLE);
		free(v);
		atomic_fetch_add(&sh->passes, 1);
	}
	return NULL;
}

static void test_list_concurrent(void **unused)
{
	(void)unused;
	reset_failures();
	shared sh = {.s = test_open_memory()};
	char id[32];
	for (int k = 0; k < STABLE; k++) {
		snprintf(id, sizeof(id), "k%03d-s", k);
		assert_ok(ctx_create(sh.s, id));
	}
	pthread_t churn[3], pagers[2];
	churner ch[3];
	for (int i = 0; i < 3; i++) {
		ch[i] = (churner){&sh, 0xc0ffee + (uint64_t)i};
		assert_int_equal(pthread_create(&churn[i], NULL, churn_main, &ch[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&pagers[i], NULL, pager_main, &sh), 0);
	long want = test_iters(200, 20);
	double until = test_now() + 60.0;
	while (atomic_load(&sh.passes) < want && test_now() < until)
		usleep(1000);
	atomic_store(&sh.stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(churn[i], NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(pagers[i], NULL);
	assert_no_thread_failures();
	assert_true(atomic_load(&sh.passes) > 0);
	/* Quiet again: the listing is exact. */
	ctx_list l;
	assert_ok(ctx_list_ids(sh.s, NULL, NULL, 0, &l));
	assert_int_equal(l.count, ctx_count(sh.s));
	for (size_t i = 1; i < l.count; i++)
		assert_true(strcmp(l.ids[i - 1], l.ids[i]) < 0);
	ctx_list_free(&l);
	ctx_close(sh.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_list_model),          cmocka_unit_test(test_list_many),
	    cmocka_unit_test(test_list_page_cost),      cmocka_unit_test(test_list_byte_order),
	    cmocka_unit_test(test_list_after_recovery), cmocka_unit_test(test_list_concurrent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
