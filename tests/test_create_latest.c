/*
 * test_create_latest.c - ctx_get_latest never returns a version that is not
 * decided yet (src/lib/store.c, store_create).
 *
 * A create inserts its context in the table, locked, before its record is
 * logged and its revision known. The newest decided version (the head) is
 * what ctx_get_latest returns without locking; it used to be set before the
 * insertion, so a reader could get version 1 with revision 0 (and, under
 * ThreadSanitizer, a data race on the revision). Now the head is set only
 * once the create is decided: a reader gets "no context" or version 1 with
 * its revision.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

enum { IDS = 3000 };

typedef struct shared {
	ctx_store *s;
	atomic_int next; /* the id the creator makes next */
	atomic_bool done;
} shared;

static void id_of(int i, char *id, size_t n)
{
	snprintf(id, n, "c%d", i);
}

static void *creator(void *arg)
{
	shared *sh = arg;
	for (int i = 0; i < IDS; i++) {
		char id[16];
		id_of(i, id, sizeof(id));
		atomic_store(&sh->next, i);
		T_CHECK_STATUS(ctx_create(sh->s, id), CTX_OK);
	}
	atomic_store(&sh->done, true);
	return NULL;
}

static void *reader(void *arg)
{
	shared *sh = arg;
	while (!atomic_load(&sh->done)) {
		char id[16];
		id_of(atomic_load(&sh->next), id, sizeof(id));
		ctx_state *st;
		if (ctx_get_latest(sh->s, id, &st) != CTX_OK)
			continue;
		T_CHECK(ctx_state_revision(st) != 0);
		ctx_state_release(st);
	}
	return NULL;
}

static void run(ctx_durability d)
{
	char *dir = d == CTX_DURABILITY_NONE ? NULL : test_make_dir("create-latest");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = d;
	o.batch_ms = 5;
	shared sh = {0};
	assert_ok(ctx_open(&o, &sh.s));
	reset_failures();
	pthread_t c, r[2];
	assert_int_equal(pthread_create(&c, NULL, creator, &sh), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&r[i], NULL, reader, &sh), 0);
	pthread_join(c, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	assert_no_thread_failures();
	ctx_close(sh.s);
	if (dir) {
		test_remove_dir(dir);
		free(dir);
	}
}

static void test_memory(void **unused)
{
	run(CTX_DURABILITY_NONE);
}

static void test_batch(void **unused)
{
	run(CTX_DURABILITY_BATCH);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_memory),
	    cmocka_unit_test(test_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
