/*
 * example.c - libctx at work: the program behind `make run`.
 *
 * It creates a context, commits versions to it from several threads, shows
 * that a state taken earlier never changes, does a guarded compare-and-set
 * that conflicts, and a multi-key transaction; then a recovery point, a
 * restore and its undo, a watch that saw all of it, and a tracker (working
 * copy) whose sync meets a conflict that is resolved by hand.
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

static void print_value(const char *label, const char *key)
{
	ctx_state *st;
	const void *val;
	size_t vlen;
	CHECK(ctx_get(store, "app/session", &st));
	if (ctx_state_lookup(st, key, strlen(key), &val, &vlen))
		printf("%s: %s = %.*s (version %" PRIu64 ")\n", label, key, (int)vlen,
		       (const char *)val, ctx_state_version(st));
	else
		printf("%s: %s is absent (version %" PRIu64 ")\n", label, key, ctx_state_version(st));
	ctx_state_release(st);
}

/* Points, restore, and a watch that sees both commits and the restore. */
static void recovery_points_and_watch(void)
{
	ctx_watch *w;
	CHECK(ctx_watch_open(store, "app/", true, 0, &w));

	uint64_t pinned, v;
	CHECK(ctx_point_create(store, "app/session", "before-cleanup", &pinned));
	printf("recovery point 'before-cleanup' pins version %" PRIu64 "\n", pinned);
	CHECK(ctx_put(store, "app/session", "user", 4, "mallory", 7, NULL));
	print_value("after a bad write", "user");
	CHECK(ctx_restore_label(store, "app/session", "before-cleanup", &v));
	print_value("restored 'before-cleanup'", "user");
	CHECK(ctx_restore(store, "app/session", v - 1, &v));
	print_value("undone (restore of the version before)", "user");
	CHECK(ctx_restore_latest(store, "app/session", &v));
	print_value("restored the latest point again", "user");

	static const char *kinds[] = {"created", "committed", "restored", "dropped", "expired",
	                              "lagged"};
	ctx_event *e;
	while (ctx_watch_next(w, &e) == CTX_OK) {
		printf("watch: revision %" PRIu64 " %s '%s' version %" PRIu64 " (%zu key%s)\n",
		       e->revision, kinds[e->kind], e->id, e->version, e->nkeys,
		       e->nkeys == 1 ? "" : "s");
		ctx_event_free(e);
	}
	ctx_watch_close(w);
}

/* A working copy edits "user" while another writer changes it too. */
static void tracker_with_conflict(void)
{
	ctx_tracker_options to = {.strategy = CTX_MERGE_MANUAL};
	ctx_tracker *t;
	CHECK(ctx_tracker_open(store, "app/session", &to, &t));
	CHECK(ctx_tracker_put(t, "user", 4, "local-edit", 10));
	CHECK(ctx_tracker_put(t, "theme", 5, "dark", 4));
	CHECK(ctx_put(store, "app/session", "user", 4, "remote-edit", 11, NULL));

	uint64_t v;
	ctx_status st = ctx_tracker_sync(t, &v);
	const ctx_conflict *conf;
	size_t n = ctx_tracker_conflicts(t, &conf);
	printf("tracker sync (manual): %s, %zu conflict(s)\n", ctx_strerror(st), n);
	for (size_t i = 0; i < n; i++)
		printf("  conflict on '%.*s': base '%.*s', local '%.*s', current '%.*s'\n",
		       (int)conf[i].klen, (const char *)conf[i].key, (int)conf[i].base.len,
		       (const char *)conf[i].base.value, (int)conf[i].local.len,
		       (const char *)conf[i].local.value, (int)conf[i].current.len,
		       (const char *)conf[i].current.value);
	CHECK(ctx_tracker_resolve(t, "user", 4, true));
	CHECK(ctx_tracker_sync(t, &v));
	printf("resolved (keep local) and synced: version %" PRIu64 "\n", v);
	print_value("after the sync", "user");
	print_value("after the sync", "theme");
	ctx_tracker_close(t);
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

	recovery_points_and_watch();
	tracker_with_conflict();
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
