/*
 * example.c - libctx at work: the program behind `make run`.
 *
 * It creates a context, commits versions to it from several threads, shows
 * that a state taken earlier never changes, does a guarded compare-and-set
 * that conflicts, and a multi-key transaction.
 *
 * With a data directory it then closes the store, checks the directory
 * offline (ctx_verify), reopens it and shows that every change is still there.
 *
 *   usage: ctx_example [DATA_DIR]   (no DATA_DIR: memory only)
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctx.h"

#define CHECK(call)                                                                        \
	do {                                                                               \
		ctx_status st_ = (call);                                                   \
		if (st_ != CTX_OK) {                                                       \
			fprintf(stderr, "%s failed: %s (%s)\n", #call, ctx_strerror(st_),  \
			        ctx_last_error());                                         \
			exit(1);                                                           \
		}                                                                          \
	} while (0)

static ctx_store *store;

static void print_state(const char *label, const ctx_state *st)
{
	printf("%s: '%s' version %" PRIu64 ", revision %" PRIu64 ", %zu keys\n", label,
	       ctx_state_id(st), ctx_state_version(st), ctx_state_revision(st),
	       ctx_state_count(st));
}

static void *worker(void *arg)
{
	int n = (int)(intptr_t)arg;
	for (int i = 0; i < 1000; i++) {
		char key[32];
		snprintf(key, sizeof(key), "worker%d.item%d", n, i);
		CHECK(ctx_put(store, "app/session", key, strlen(key), "done", 4, NULL));
	}
	return NULL;
}

int main(int argc, char **argv)
{
	ctx_options opts;
	ctx_options_init(&opts);
	opts.dir = argc > 1 ? argv[1] : NULL; /* durability: always (the default) */
	CHECK(ctx_open(&opts, &store));
	printf("ctx %s: opened a store %s%s\n", CTX_VERSION_STRING,
	       opts.dir ? "in " : "in memory", opts.dir ? opts.dir : "");

	CHECK(ctx_create(store, "app/session"));
	uint64_t v;
	CHECK(ctx_put(store, "app/session", "user", 4, "ada", 3, &v));
	printf("put user=ada -> version %" PRIu64 "\n", v);

	ctx_state *before;
	CHECK(ctx_get(store, "app/session", &before));
	print_state("held state", before);

	pthread_t threads[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);

	ctx_state *after;
	CHECK(ctx_get(store, "app/session", &after));
	print_state("after 4 threads x 1000 puts", after);
	print_state("held state, unchanged", before);

	/* Compare-and-set against the version we held: another writer got in. */
	ctx_txn *t;
	CHECK(ctx_txn_begin(store, "app/session", &t));
	CHECK(ctx_txn_put(t, "user", 4, "grace", 5));
	ctx_status st = ctx_txn_commit(t, ctx_state_version(before), NULL);
	printf("guarded commit expecting version %" PRIu64 ": %s\n", ctx_state_version(before),
	       ctx_strerror(st));

	/* The same change, guarded by the current version, applies atomically. */
	CHECK(ctx_txn_begin(store, "app/session", &t));
	CHECK(ctx_txn_put(t, "user", 4, "grace", 5));
	CHECK(ctx_txn_put(t, "role", 4, "admin", 5));
	CHECK(ctx_txn_del(t, "worker0.item0", 13));
	CHECK(ctx_txn_commit(t, ctx_state_version(after), &v));
	printf("guarded commit expecting version %" PRIu64 ": ok, now version %" PRIu64 "\n",
	       ctx_state_version(after), v);
	ctx_state_release(before);
	ctx_state_release(after);

	CHECK(ctx_get(store, "app/session", &after));
	const void *val;
	size_t vlen;
	if (ctx_state_lookup(after, "user", 4, &val, &vlen))
		printf("user = %.*s\n", (int)vlen, (const char *)val);
	print_state("final", after);
	ctx_state_release(after);
	ctx_close(store);
	if (!opts.dir)
		return 0;

	ctx_verify_report rep;
	CHECK(ctx_verify(opts.dir, &rep));
	printf("verify %s: %s: %zu checkpoint(s), %zu context(s), %" PRIu64 " keys, last revision %" PRIu64 "\n",
	       opts.dir, rep.message, rep.checkpoints, rep.contexts, rep.keys, rep.last_revision);
	CHECK(ctx_open(&opts, &store));
	CHECK(ctx_get(store, "app/session", &after));
	print_state("after reopening", after);
	ctx_state_release(after);
	ctx_close(store);
	return 0;
}
