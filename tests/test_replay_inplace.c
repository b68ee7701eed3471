/*
 * test_replay_inplace.c - a store rebuilt from its log alone is the store
 * that wrote the log (src/lib/recovery.c, "the replay plan").
 *
 * Replay builds as versions of their own only those that history keeps, or
 * that point and restore records name; every other record is applied in
 * place to its context's head. This checks that nothing observable differs
 * from the store as it was before the crash: for every context, every kept
 * version (ctx_history, ctx_get_at) with its revision, commit time, count of
 * changed keys, key count, bytes, content checksums and every key's value
 * and time (and every metadata entry), and the points. history_depth is 2
 * and each context gets ~100 records, so nearly all of them take the in-place
 * path; the workload has transactions that name a key twice (of 4 and of 12
 * ops: the per-op count of changed keys would be wrong), transactions of 200
 * ops (more than replay parses on its stack or loads the paths of at once),
 * deletes, metadata, points, restores of
 * history versions and of points, and a context dropped and created again
 * (two incarnations of one id in the log).
 *
 * A forked child writes the log (durability always: each commit is synced
 * before the next), dumps its store as text and leaves with _exit, so that
 * no closing checkpoint covers the log. The parent opens the directory,
 * which replays every record, dumps it the same way and compares. The fork
 * comes first, while this process has no library threads.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"
#include "text_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h" /* a version's content checksums */

#define NCTX    4
#define RECORDS 400
#define DEPTH   2

static const char *ids[NCTX] = {"c0", "c1", "c2", "c3"};

static ctx_store *open_dir(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = DEPTH;
	o.max_points = 3;
	ctx_store *s = NULL;
	return ctx_open(&o, &s) == CTX_OK ? s : NULL;
}

/* Every entry of a map of st (data or metadata) as sorted lines (trie order
 * depends on the process's hash seed). */
static void dump_map(text *t, const ctx_state *st, bool meta)
{
	ctx_iter_stack it;
	if ((meta ? ctx_iter_meta_init(&it, st) : ctx_iter_init(&it, st)) != CTX_OK)
		abort();
	char *lines[512];
	size_t n = 0;
	const void *k, *v;
	size_t kl, vl;
	while (n < 512 && ctx_iter_stack_next(&it, &k, &kl, &v, &vl)) {
		uint64_t time = 0;
		if (!meta && !ctx_state_key_time(st, k, kl, &time))
			abort();
		char line[256];
		snprintf(line, sizeof(line), "  %s %.*s=%.*s @%llu\n", meta ? "meta" : "key",
		         (int)kl, (const char *)k, (int)vl, (const char *)v,
		         (unsigned long long)time);
		lines[n++] = strdup(line);
	}
	qsort(lines, n, sizeof(*lines), cmp_str);
	for (size_t i = 0; i < n; i++) {
		add(t, "%s", lines[i]);
		free(lines[i]);
	}
}

/* Everything replay must give back, as text (NULL on a failure). */
static char *dump(ctx_store *s)
{
	text t = {0};
	add(&t, "store\n");
	for (int c = 0; c < NCTX; c++) {
		ctx_history_entry *h;
		size_t nh;
		if (ctx_history(s, ids[c], &h, &nh) != CTX_OK)
			return NULL;
		add(&t, "context %s: %zu kept\n", ids[c], nh);
		for (size_t i = 0; i < nh; i++) {
			ctx_state *st;
			if (ctx_get_at(s, ids[c], h[i].version, &st) != CTX_OK)
				return NULL;
			add(&t,
			    " version %llu rev %llu time %llu changed %zu pinned %d | rev %llu "
			    "updated %llu keys %zu bytes %zu meta %zu sums %016llx %016llx\n",
			    (unsigned long long)h[i].version, (unsigned long long)h[i].revision,
			    (unsigned long long)h[i].time_us, h[i].keys_changed, h[i].pinned,
			    (unsigned long long)ctx_state_revision(st),
			    (unsigned long long)ctx_state_updated_us(st), ctx_state_count(st),
			    ctx_state_bytes(st), ctx_state_meta_count(st),
			    (unsigned long long)st->data.sum, (unsigned long long)st->meta.sum);
			dump_map(&t, st, false);
			dump_map(&t, st, true);
			ctx_state_release(st);
		}
		free(h);
		ctx_point *p;
		size_t np;
		if (ctx_point_list(s, ids[c], &p, &np) != CTX_OK)
			return NULL;
		for (size_t i = 0; i < np; i++) {
			ctx_state *st;
			if (ctx_get_at(s, ids[c], p[i].version, &st) != CTX_OK)
				return NULL;
			add(&t,
			    " point %llu '%s' time %llu keys %zu bytes %zu sum %016llx | state rev "
			    "%llu keys %zu sums %016llx %016llx\n",
			    (unsigned long long)p[i].version, p[i].label,
			    (unsigned long long)p[i].time_us, p[i].keys, p[i].bytes,
			    (unsigned long long)p[i].checksum,
			    (unsigned long long)ctx_state_revision(st), ctx_state_count(st),
			    (unsigned long long)st->data.sum, (unsigned long long)st->meta.sum);
			dump_map(&t, st, false);
			ctx_state_release(st);
		}
		free(p);
	}
	return t.p;
}

static bool put_kv(ctx_txn *t, const char *k, long v)
{
	char val[32];
	int vl = snprintf(val, sizeof(val), "v%ld", v);
	return ctx_txn_put(t, k, strlen(k), val, (size_t)vl) == CTX_OK;
}

/* A transaction of more ops than replay parses on its stack, and than it
 * loads the paths of at once (src/lib/recovery.c, apply_in_place_ops): puts
 * of 180 keys b<j> and deletes of 20 (which ones turns with i), a metadata
 * put between them, and for i % 58 == 0 a key put twice. */
static bool big_txn(ctx_txn *t, long i)
{
	bool ok = true;
	for (long j = 0; ok && j < 200; j++) {
		char k[16];
		snprintf(k, sizeof(k), "b%ld", j);
		if ((j + i / 29) % 10 == 0)
			ok = ctx_txn_del(t, k, strlen(k)) == CTX_OK;
		else
			ok = put_kv(t, k, i + j);
		if (ok && j == 100)
			ok = ctx_txn_meta_put(t, "big", 3, k, strlen(k)) == CTX_OK;
	}
	return ok && (i % 58 != 0 || put_kv(t, "b1", i));
}

/* Record i of the workload, on context ids[i % NCTX]. */
static bool step(ctx_store *s, long i)
{
	const char *id = ids[i % NCTX];
	char key[16];
	snprintf(key, sizeof(key), "k%ld", (i / NCTX) % 13);
	if (i == 150) /* a second incarnation of c2 */
		return ctx_drop(s, "c2") == CTX_OK && ctx_create(s, "c2") == CTX_OK;
	if (i % 50 == 3) {
		char label[16];
		snprintf(label, sizeof(label), "p%ld", i);
		return ctx_point_create(s, id, label, NULL) == CTX_OK;
	}
	if (i % 37 == 5) { /* restore the version before the newest */
		ctx_state *st;
		if (ctx_get_latest(s, id, &st) != CTX_OK)
			return false;
		uint64_t v = ctx_state_version(st);
		ctx_state_release(st);
		return ctx_restore(s, id, v - 1, NULL) == CTX_OK;
	}
	if (i % 61 == 7) { /* restore the newest point (long out of history) */
		ctx_status st = ctx_restore_latest(s, id, NULL);
		return st == CTX_OK || st == CTX_NOT_FOUND;
	}
	ctx_txn *t;
	if (ctx_txn_begin(s, id, &t) != CTX_OK)
		return false;
	bool ok = true;
	if (i % 7 == 0) /* one key twice, and a delete */
		ok = put_kv(t, key, i) && put_kv(t, "twice", i) && put_kv(t, "twice", i + 1) &&
		     ctx_txn_del(t, "k1", 2) == CTX_OK;
	else if (i % 19 == 0) /* more ops than a pairwise check takes, one key twice */
		for (long j = 0; ok && j < 12; j++) {
			char k[16];
			snprintf(k, sizeof(k), "w%ld", j == 11 ? 3 : j);
			ok = put_kv(t, k, i + j);
		}
	else if (i % 23 == 0) /* as many, all distinct */
		for (long j = 0; ok && j < 12; j++) {
			char k[16];
			snprintf(k, sizeof(k), "w%ld", j);
			ok = put_kv(t, k, i);
		}
	else if (i % 29 == 0) /* 200 data ops and a metadata put, once with a key twice */
		ok = big_txn(t, i);
	else if (i % 11 == 0)
		ok = ctx_txn_meta_put(t, "m", 1, key, strlen(key)) == CTX_OK && put_kv(t, key, 0);
	else if (i % 13 == 0)
		ok = ctx_txn_del(t, key, strlen(key)) == CTX_OK;
	else if (i % 17 == 0) /* the value already there: changes nothing */
		ok = put_kv(t, "same", 1);
	else
		ok = put_kv(t, key, i);
	return ok && ctx_txn_commit(t, 0, NULL) == CTX_OK;
}

/* Twelve puts on id (more than a pairwise check of keys takes), naming key
 * w3 twice if twice, then committed. */
static bool put_twelve(ctx_store *s, const char *id, bool twice, long gen)
{
	ctx_txn *t;
	bool ok = ctx_txn_begin(s, id, &t) == CTX_OK;
	for (long j = 0; ok && j < 12; j++) {
		char k[16];
		snprintf(k, sizeof(k), "w%ld", twice && j == 11 ? 3 : j);
		ok = put_kv(t, k, gen + j);
	}
	return ok && ctx_txn_commit(t, 0, NULL) == CTX_OK;
}

static void write_log_dump_and_die(const char *dir, const char *expected)
{
	ctx_store *s = open_dir(dir);
	bool ok = s != NULL;
	for (int c = 0; ok && c < NCTX; c++)
		ok = ctx_create(s, ids[c]) == CTX_OK;
	for (long i = 0; ok && i < RECORDS; i++)
		ok = step(s, i);
	/* The two versions history keeps end with twelve-op transactions: one
	 * naming a key twice (applied in place to a head that leaves history),
	 * then one of distinct keys. */
	for (int c = 0; ok && c < NCTX; c++)
		ok = put_twelve(s, ids[c], true, 1000) && put_twelve(s, ids[c], false, 2000);
	char *d = ok ? dump(s) : NULL;
	FILE *f = d ? fopen(expected, "w") : NULL;
	ok = f && fputs(d, f) >= 0 && fclose(f) == 0;
	_exit(ok ? 0 : 1);
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	text t = {0};
	char buf[4096];
	size_t n;
	add(&t, "%s", "");
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		add(&t, "%.*s", (int)n, buf);
	fclose(f);
	return t.p;
}

static void test_log_alone_gives_back_the_store(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("replay_inplace");
	char expected[4096];
	snprintf(expected, sizeof(expected), "%s.expected", dir);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		write_log_dump_and_die(dir, expected);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	ctx_store *s = open_dir(dir);
	assert_non_null(s);
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.checkpoint_revision, 0); /* all of it was replayed */
	char *want = read_all(expected), *got = dump(s);
	assert_non_null(got);
	assert_string_equal(got, want);
	/* The workload reached what it means to test. */
	assert_non_null(strstr(want, "pinned 1"));
	assert_non_null(strstr(want, " point "));
	free(want);
	free(got);
	ctx_close(s);
	unlink(expected);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_log_alone_gives_back_the_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
