/*
 * test_r20_info_points.c - ctx_context_info reads the point count inside
 * its read-side section (round 20: CI's TSan run caught it reading the
 * point set after leaving the section, while a point change had it freed
 * after a grace period).
 *
 * Writers replace the point set of one context without end (create and
 * delete points, max_points small so the oldest goes too) while readers
 * call ctx_context_info and ctx_status_view; every answer must be a count
 * the store can hold (0..max_points) and a version it has made. The
 * sanitizer builds check that no freed set is read; the normal build
 * checks the figures.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXP 3
#define ROUNDS 4000

static ctx_store *store;
static atomic_bool done;
static atomic_ulong infos;

static void *writer(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		char v[16];
		snprintf(v, sizeof v, "%d", i);
		assert_int_equal(ctx_put(store, "c", "k", 1, v, strlen(v), NULL), CTX_OK);
		uint64_t ver = 0;
		assert_int_equal(ctx_point_create(store, "c", NULL, &ver), CTX_OK);
		if (i % 3 == 0) /* a delete also replaces the set */
			assert_int_equal(ctx_point_delete(store, "c", ver), CTX_OK);
	}
	atomic_store(&done, true);
	return NULL;
}

static void *reader(void *arg)
{
	bool view = arg != NULL;
	while (!atomic_load(&done)) {
		if (view) {
			ctx_context_status *v = NULL;
			size_t n = 0;
			assert_int_equal(ctx_status_view(store, &v, &n), CTX_OK);
			assert_int_equal(n, 1);
			assert_true(v[0].points <= MAXP);
			free(v);
		} else {
			ctx_context_status e;
			assert_int_equal(ctx_context_info(store, "c", &e), CTX_OK);
			assert_string_equal(e.id, "c");
			assert_true(e.points <= MAXP);
			assert_true(e.version >= 1);
			assert_int_equal(e.keys, 1);
		}
		atomic_fetch_add(&infos, 1);
		/* Outside any read section for a while: a set read after the
		 * section ended may be freed meanwhile, with nothing ordering the
		 * free after the read (what TSan reports). */
		usleep(100);
	}
	return NULL;
}

static void test_info_while_points_change(void **state)
{
	(void)state;
	ctx_options o;
	ctx_options_init(&o);
	o.max_points = MAXP;
	assert_int_equal(ctx_open(&o, &store), CTX_OK);
	assert_int_equal(ctx_create(store, "c"), CTX_OK);
	assert_int_equal(ctx_put(store, "c", "k", 1, "v", 1, NULL), CTX_OK);
	pthread_t w, r[3];
	assert_int_equal(pthread_create(&w, NULL, writer, NULL), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&r[i], NULL, reader, i == 2 ? (void *)1 : NULL), 0);
	pthread_join(w, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(r[i], NULL);
	assert_true(atomic_load(&infos) > 0);
	ctx_context_status e;
	assert_int_equal(ctx_context_info(store, "c", &e), CTX_OK);
	/* The set was full, and the last round (3999 % 3 == 0) deleted the
	 * point it made. */
	assert_int_equal(e.points, MAXP - 1);
	ctx_close(store);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_info_while_points_change),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
