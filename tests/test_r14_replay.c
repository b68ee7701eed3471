/*
 * test_r14_replay.c - replay after round 14's changes to how the log is read
 * (src/lib/recovery.c: segments mapped with MAP_POPULATE and loaded ahead
 * of both passes, log_ahead; ids checked only for contexts the store does
 * not hold).
 *
 * The log shapes of ctxrecovery, small: one-put commits of 64-byte and of
 * 1 KiB values on 6 contexts of 16 keys, and 100-put transactions into one
 * context, with points, written by a forked child (history_depth 8: most
 * records are applied in place, the newest 8 of each context are built as
 * versions), then one more 100-put transaction. The parent zeroes the
 * second half of that last record (a torn write: the crash left its first
 * half on disk) and opens the directory: every kept version (revision,
 * time, changed keys, key count, bytes, checksums, each key's value and
 * time), the points, and the cut tail kept aside as torn-*.bin must be what
 * the child dumped before its last commit.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"
#include "text_buf.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crc32c.h"
#include "store.h" /* a version's content checksums */

/* ---- the log shapes, and a torn tail --------------------------------- */

#define NCTX  6
#define DEPTH 8

static const char *ids[NCTX + 1] = {"s0", "s1", "s2", "s3", "s4", "s5", "big"};

static ctx_store *open_dir(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.history_depth = DEPTH;
	o.checkpoint_bytes = (size_t)1 << 40; /* no background checkpoint */
	ctx_store *s = NULL;
	return ctx_open(&o, &s) == CTX_OK ? s : NULL;
}

/* Every key of st with its value's length, a checksum of the value, its
 * first bytes and its time, as sorted lines (trie order depends on the
 * process's hash seed). */
static void dump_map(text *t, const ctx_state *st)
{
	ctx_iter_stack it;
	if (ctx_iter_init(&it, st) != CTX_OK)
		abort();
	size_t cap = ctx_state_count(st) + 1, n = 0;
	char **lines = malloc(cap * sizeof(*lines));
	const void *k, *v;
	size_t kl, vl;
	while (lines && n < cap && ctx_iter_stack_next(&it, &k, &kl, &v, &vl)) {
		uint64_t time = 0;
		if (!ctx_state_key_time(st, k, kl, &time))
			abort();
		char line[256];
		snprintf(line, sizeof(line), "  %.*s=%zu:%08x:%.*s @%llu\n", (int)kl,
		         (const char *)k, vl, crc32c_portable(0, v, vl), (int)(vl < 12 ? vl : 12),
		         (const char *)v, (unsigned long long)time);
		lines[n++] = strdup(line);
	}
	if (!lines)
		abort();
	qsort(lines, n, sizeof(*lines), cmp_str);
	for (size_t i = 0; i < n; i++) {
		add(t, "%s", lines[i]);
		free(lines[i]);
	}
	free(lines);
}

/* Everything replay must give back, as text (NULL on a failure). */
static char *dump(ctx_store *s)
{
	text t = {0};
	add(&t, "store\n");
	for (int c = 0; c <= NCTX; c++) {
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
			    "updated %llu keys %zu bytes %zu sums %016llx %016llx\n",
			    (unsigned long long)h[i].version, (unsigned long long)h[i].revision,
			    (unsigned long long)h[i].time_us, h[i].keys_changed, h[i].pinned,
			    (unsigned long long)ctx_state_revision(st),
			    (unsigned long long)ctx_state_updated_us(st), ctx_state_count(st),
			    ctx_state_bytes(st), (unsigned long long)st->data.sum,
			    (unsigned long long)st->meta.sum);
			/* Every key of the newest two, and of every tenth. */
			if (i < 2 || i % 10 == 0)
				dump_map(&t, st);
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
			add(&t, " point %llu '%s' keys %zu bytes %zu sum %016llx | sums %016llx\n",
			    (unsigned long long)p[i].version, p[i].label, p[i].keys, p[i].bytes,
			    (unsigned long long)p[i].checksum, (unsigned long long)st->data.sum);
			dump_map(&t, st);
			ctx_state_release(st);
		}
		free(p);
	}
	return t.p;
}

/* A value of n bytes for (i, key): printable, never zero. */
static void value(char *v, size_t n, long i, long key)
{
	for (size_t j = 0; j < n; j++)
		v[j] = (char)('a' + (i * 7 + key * 3 + (long)j) % 26);
	snprintf(v, n < 16 ? n : 16, "v%ld.%ld", i, key);
	v[strlen(v)] = '-'; /* no NUL inside */
}

static bool put_one(ctx_store *s, const char *id, long i, size_t vlen)
{
	char key[16], val[1024];
	long k = (i * 11) % 16;
	int kl = snprintf(key, sizeof(key), "key-%02ld", k);
	value(val, vlen, i, k);
	return ctx_put(s, id, key, (size_t)kl, val, vlen, NULL) == CTX_OK;
}

/* 100 puts of 64-byte values into "big", keys spread over `space` (some
 * replaced, most new). */
static bool put_hundred(ctx_store *s, long i, long space)
{
	ctx_txn *t;
	if (ctx_txn_begin(s, "big", &t) != CTX_OK)
		return false;
	bool ok = true;
	for (long j = 0; ok && j < 100; j++) {
		char key[24], val[64];
		long k = (i * 100 + j * 37) % space;
		int kl = snprintf(key, sizeof(key), "tx-%07ld", k);
		value(val, sizeof(val), i, k);
		ok = ctx_txn_put(t, key, (size_t)kl, val, sizeof(val)) == CTX_OK;
	}
	return ok && ctx_txn_commit(t, 0, NULL) == CTX_OK;
}

static int newest_segment(const char *dir, char *path, size_t size)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	char best[256] = "";
	struct dirent *e;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "wal-", 4) == 0 && strlen(e->d_name) == 24 &&
		    strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", e->d_name);
	closedir(d);
	if (!best[0])
		return -1;
	snprintf(path, size, "%s/%s", dir, best);
	return 0;
}

/* Where the records of a segment end: past its last non-zero byte. */
static long records_end(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	long end = 0, at = 0;
	int c;
	while ((c = fgetc(f)) != EOF) {
		at++;
		if (c)
			end = at;
	}
	fclose(f);
	return end;
}

static void write_log_dump_and_die(const char *dir, const char *expected, const char *torn)
{
	ctx_store *s = open_dir(dir);
	bool ok = s != NULL;
	for (int c = 0; ok && c <= NCTX; c++)
		ok = ctx_create(s, ids[c]) == CTX_OK;
	for (long i = 0; ok && i < 1200; i++) {
		const char *id = ids[(i * 5 + i / 7) % NCTX];
		if (i % 97 == 13) {
			char label[16];
			snprintf(label, sizeof(label), "p%ld", i);
			ok = ctx_point_create(s, id, label, NULL) == CTX_OK;
		} else if (i % 40 == 9) {
			ok = put_hundred(s, i, 3000);
		} else {
			ok = put_one(s, id, i, i % 3 == 0 ? 1024 : 64);
		}
	}
	/* Every context's newest versions, in both value sizes. */
	for (long i = 0; ok && i < 4 * NCTX; i++)
		ok = put_one(s, ids[i % NCTX], 5000 + i, i % 2 ? 1024 : 64);
	ok = ok && put_hundred(s, 9000, 3000) && ctx_point_create(s, "big", "last", NULL) == CTX_OK;
	char *d = ok ? dump(s) : NULL;
	FILE *f = d ? fopen(expected, "w") : NULL;
	ok = f && fputs(d, f) >= 0 && fclose(f) == 0;
	/* One more record, whose second half the parent zeroes. */
	char seg[4096];
	long end0 = ok && newest_segment(dir, seg, sizeof(seg)) == 0 ? records_end(seg) : -1;
	ok = end0 > 0 && put_hundred(s, 9001, 3000);
	long end1 = ok ? records_end(seg) : -1;
	f = end1 > end0 ? fopen(torn, "w") : NULL;
	ok = f && fprintf(f, "%ld %ld %s\n", end0, end1, seg) > 0 && fclose(f) == 0;
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

static int count_torn(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strncmp(e->d_name, "torn-", 5) == 0;
	closedir(d);
	return n;
}

static void test_shapes_and_torn_tail(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r14_replay");
	char expected[4096], torn[4096];
	snprintf(expected, sizeof(expected), "%s.expected", dir);
	snprintf(torn, sizeof(torn), "%s.torn", dir);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		write_log_dump_and_die(dir, expected, torn);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* The last record torn: its second half never reached the disk. */
	long end0, end1;
	char seg[4096];
	FILE *f = fopen(torn, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%ld %ld %4095s", &end0, &end1, seg), 3);
	fclose(f);
	assert_true(end1 - end0 > 6000); /* a 100-put record: three chains of 2048 */
	long half = end0 + (end1 - end0) / 2;
	int fd = open(seg, O_WRONLY);
	assert_true(fd >= 0);
	char zeros[8192] = {0};
	assert_int_equal(pwrite(fd, zeros, (size_t)(end1 - half), half), end1 - half);
	close(fd);

	ctx_store *s = open_dir(dir);
	assert_non_null(s);
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	assert_int_equal(stats.checkpoint_revision, 0); /* all of it was replayed */
	char *want = read_all(expected), *got = dump(s);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(count_torn(dir), 1); /* the cut bytes kept aside */
	/* The workload reached what it means to test. */
	assert_non_null(strstr(want, "pinned 1"));
	assert_non_null(strstr(want, " point "));
	assert_non_null(strstr(want, "=1024:"));
	free(want);
	free(got);
	ctx_close(s);
	unlink(expected);
	unlink(torn);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		    cmocka_unit_test(test_shapes_and_torn_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
