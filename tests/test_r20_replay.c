/*
 * test_r20_replay.c - round 20's changes to recovery (src/lib/recovery.c,
 * src/lib/pool.c): the plan's pass reads the log with pread through a
 * window it reuses (1 MiB, grown for a larger record) instead of a
 * mapping, and recovery builds its states in slab chunks on huge pages
 * (pool_huge_chunks).
 *
 * A child process writes a log (history_depth 4, so most records are
 * applied in place and the plan decides which) of 100-put transactions of
 * 64-byte and 1 KiB values (records of ~9 KB and ~100 KB, which end at
 * every offset of the window), transactions of 1.5 MiB (more than the
 * window holds), one-put commits, points, and restores of a point and of a
 * history version; it dumps every kept version and point at a midpoint
 * (past the first MiB) and at the end, and leaves with _exit (no closing
 * checkpoint: the log alone is replayed). The parent opens the directory:
 * everything must be what the child dumped at the end, and the plan's pass
 * must have read every record (recovery_test_planned). A second log has a
 * byte changed in the 1.5 MiB record after the midpoint: recovery cuts it
 * (kept aside) and everything after, gives back exactly the midpoint's
 * dump, and the plan's pass stops at that record. Without the window's
 * refill and growth the pass stops early (the count fails).
 *
 * pool_huge_chunks: a thread that set it carves from chunks marked for
 * huge pages (VmFlags "hg" in /proc/self/smaps), one that did not from
 * unmarked ones, and the values a recovery built lie in marked chunks.
 * Skipped where the kernel has no transparent huge pages, and under
 * AddressSanitizer (no slabs).
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crc32c.h"
#include "pool.h"
#include "store.h" /* a version's content checksums, recovery_test_planned */

#define DEPTH 4

static const char *ids[] = {"big", "s0", "s1"};
#define NIDS 3

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

/* Every key of st with its value's length, checksum and time, sorted. */
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
		snprintf(line, sizeof(line), "  %.*s=%zu:%08x @%llu\n", (int)kl, (const char *)k,
		         vl, crc32c_portable(0, v, vl), (unsigned long long)time);
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

/* Every kept version and point of every context, as text (NULL: failed). */
static char *dump(ctx_store *s)
{
	text t = {0};
	add(&t, "store\n");
	for (int c = 0; c < NIDS; c++) {
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
			    " version %llu rev %llu time %llu changed %zu pinned %d | keys %zu "
			    "bytes %zu sums %016llx %016llx\n",
			    (unsigned long long)h[i].version, (unsigned long long)h[i].revision,
			    (unsigned long long)h[i].time_us, h[i].keys_changed, h[i].pinned,
			    ctx_state_count(st), ctx_state_bytes(st),
			    (unsigned long long)st->data.sum, (unsigned long long)st->meta.sum);
			if (i < 2)
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
			add(&t, " point %llu '%s' keys %zu sum %016llx | sums %016llx\n",
			    (unsigned long long)p[i].version, p[i].label, p[i].keys,
			    (unsigned long long)p[i].checksum, (unsigned long long)st->data.sum);
			ctx_state_release(st);
		}
		free(p);
	}
	return t.p;
}

/* A transaction on "big" of n puts of vlen-byte values (step i). */
static bool put_many(ctx_store *s, long i, int n, size_t vlen)
{
	static char val[32768];
	memset(val, 'a' + (int)(i % 26), vlen);
	ctx_txn *t;
	if (ctx_txn_begin(s, "big", &t) != CTX_OK)
		return false;
	for (int j = 0; j < n; j++) {
		char key[32];
		int kl = snprintf(key, sizeof(key), "key-%ld", (i * 37 + j * 53) % 3000);
		val[0] = (char)('A' + j % 26);
		if (ctx_txn_put(t, key, (size_t)kl, val, vlen) != CTX_OK) {
			ctx_txn_abort(t);
			return false;
		}
	}
	return ctx_txn_commit(t, 0, NULL) == CTX_OK;
}

/* Records of step i: mostly 100-put transactions (64 B or 1 KiB values),
 * one-put commits, points, and restores of a point and of history. */
static bool step(ctx_store *s, long i)
{
	if (i % 7 == 3) {
		char key[16];
		int kl = snprintf(key, sizeof(key), "k%ld", i % 5);
		return ctx_put(s, ids[1 + i % 2], key, (size_t)kl, "v", 1, NULL) == CTX_OK;
	}
	if (i % 11 == 5) {
		char label[16];
		snprintf(label, sizeof(label), "p%ld", i);
		return ctx_point_create(s, "big", label, NULL) == CTX_OK;
	}
	if (i % 23 == 17) /* the newest point */
		return ctx_restore_latest(s, "big", NULL) == CTX_OK;
	if (i % 29 == 20) { /* a version in history */
		ctx_state *st;
		if (ctx_get(s, "big", &st) != CTX_OK)
			return false;
		uint64_t v = ctx_state_version(st);
		ctx_state_release(st);
		return ctx_restore(s, "big", v - 2, NULL) == CTX_OK;
	}
	return put_many(s, i, 100, i % 3 == 0 ? 1024 : 64);
}

/* Where the newest segment's non-zero bytes end (-1: none), and its path. */
static long newest_end(const char *dir, char *seg, size_t size)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	struct dirent *e;
	char best[256] = "";
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "wal-", 4) == 0 && strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", e->d_name);
	closedir(d);
	snprintf(seg, size, "%s/%s", dir, best);
	FILE *f = best[0] ? fopen(seg, "r") : NULL;
	if (!f)
		return -1;
	long at = 0, end = -1;
	int c;
	while ((c = fgetc(f)) != EOF) {
		at++;
		if (c)
			end = at;
	}
	fclose(f);
	return end;
}

static bool write_text(const char *path, const char *s)
{
	FILE *f = s ? fopen(path, "w") : NULL;
	return f && fputs(s, f) >= 0 && fclose(f) == 0;
}

/* The child: the log, the midpoint's dump (and where its records end),
 * then the end's dump. */
static void write_log_and_die(const char *dir, const char *mid, const char *all, const char *at)
{
	ctx_store *s = open_dir(dir);
	bool ok = s != NULL;
	for (int c = 0; ok && c < NIDS; c++)
		ok = ctx_create(s, ids[c]) == CTX_OK;
	long i = 0;
	for (; ok && i < 60; i++)
		ok = step(s, i);
	ok =
	    ok && put_many(s, 1000, 48, 32768) && ctx_point_create(s, "big", "mid", NULL) == CTX_OK;
	for (; ok && i < 70; i++)
		ok = step(s, i);
	char *d = ok ? dump(s) : NULL;
	ok = write_text(mid, d);
	free(d);
	char seg[4096];
	long end = ok ? newest_end(dir, seg, sizeof(seg)) : -1;
	ok = end > (1l << 20);
	/* The record the damaged copy breaks: more than the window holds. */
	ok = ok && put_many(s, 2000, 48, 32768);
	for (; ok && i < 130; i++)
		ok = step(s, i);
	d = ok ? dump(s) : NULL;
	ok = write_text(all, d);
	free(d);
	FILE *f = ok ? fopen(at, "w") : NULL;
	ok = f && fprintf(f, "%ld %s\n", end, seg) > 0 && fclose(f) == 0;
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

/* ---- huge chunks ------------------------------------------------------ */

/* Whether transparent huge pages exist here (and slabs: not under ASan). */
static bool have_thp(void)
{
#ifdef T_ASAN
	return false;
#else
	return access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) == 0;
#endif
}

/* Whether the mapping holding p is marked for huge pages (-1: not found). */
static int marked_huge(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[1024];
	bool in = false;
	int found = -1;
	uintptr_t a = (uintptr_t)p;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' '))
			in = a >= lo && a < hi;
		else if (in && strncmp(line, "VmFlags:", 8) == 0) {
			found = strstr(line, " hg") != NULL;
			break;
		}
	}
	fclose(f);
	return found;
}

#define BLOCKS 40000 /* 100-byte blocks: 4.5 MB, more than two chunks */

typedef struct carve {
	bool huge;
	void **blocks;
} carve;

static void *carve_main(void *arg)
{
	carve *c = arg;
	pool_huge_chunks(c->huge);
	for (size_t i = 0; i < BLOCKS; i++)
		c->blocks[i] = pool_alloc(100);
	pool_huge_chunks(false);
	return NULL;
}

static void test_huge_chunks(void **unused)
{
	(void)unused;
	if (!have_thp())
		skip();
	/* Both threads' blocks are held until the end: a freed block would be
	 * carved again, from the chunk it lies in. */
	carve c[2] = {{true, calloc(BLOCKS, sizeof(void *))},
	              {false, calloc(BLOCKS, sizeof(void *))}};
	for (int i = 0; i < 2; i++) {
		assert_non_null(c[i].blocks);
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, carve_main, &c[i]), 0);
		assert_int_equal(pthread_join(t, NULL), 0);
		/* The last block lies in a chunk the thread took itself (the
		 * first ones may be in an exited thread's rest). */
		assert_non_null(c[i].blocks[BLOCKS - 1]);
		assert_int_equal(marked_huge(c[i].blocks[BLOCKS - 1]), c[i].huge);
	}
	for (int i = 0; i < 2; i++) {
		for (size_t j = 0; j < BLOCKS; j++) {
			memset(c[i].blocks[j], 0x5a, 100); /* usable memory */
			pool_free(c[i].blocks[j]);
		}
		free(c[i].blocks);
	}
}

/* ---- the logs --------------------------------------------------------- */

/* Write the log in a child; *end gets where the midpoint's records end. */
static char *make_log(const char *name, char *mid, char *all, char *seg, long *end)
{
	char *dir = test_make_dir(name);
	char at[4200];
	snprintf(mid, 4200, "%s.mid", dir);
	snprintf(all, 4200, "%s.all", dir);
	snprintf(at, sizeof(at), "%s.at", dir);
	/* (A fresh image: this process may have library threads by now.) */
	int rfd;
	pid_t pid = test_spawn_child((const char *const[]){"write", dir, mid, all, at, NULL}, &rfd);
	close(rfd);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	FILE *f = fopen(at, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%ld %4095s", end, seg), 2);
	fclose(f);
	unlink(at);
	return dir;
}

static void test_whole_log(void **unused)
{
	(void)unused;
	char mid[4200], all[4200], seg[4096];
	long end;
	char *dir = make_log("r20_replay_whole", mid, all, seg, &end);
	ctx_store *s = open_dir(dir);
	assert_non_null(s);
	ctx_stats st;
	ctx_get_stats(s, &st);
	assert_int_equal(st.checkpoint_revision, 0); /* all of it replayed */
	assert_int_equal(atomic_load(&recovery_test_planned), st.revision);
	char *want = read_all(all), *got = dump(s);
	assert_non_null(got);
	assert_string_equal(got, want);
	/* The workload reached what it means to test. */
	assert_non_null(strstr(want, "pinned 1"));
	assert_non_null(strstr(want, " point "));
	assert_int_equal(count_torn(dir), 0);
	free(want);
	free(got);
	ctx_close(s);
	if (have_thp()) {
		/* A fresh process (no blocks freed before it to carve again)
		 * opens the directory (from the checkpoint the close wrote): the
		 * values it built lie in chunks marked for huge pages. */
		int rfd;
		pid_t pid = test_spawn_child((const char *const[]){"open", dir, NULL}, &rfd);
		char msg[64] = "";
		ssize_t n = read(rfd, msg, sizeof(msg) - 1);
		close(rfd);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		unsigned seen = 0, marked = 0;
		assert_true(n > 0 && sscanf(msg, "%u %u", &seen, &marked) == 2);
		assert_int_equal(seen, 64);
		assert_true(marked > seen / 2); /* (ctx_open may have begun a chunk before) */
	}
	unlink(mid);
	unlink(all);
	test_remove_dir(dir);
	free(dir);
}

static void test_damaged_large_record(void **unused)
{
	(void)unused;
	char mid[4200], all[4200], seg[4096];
	long end;
	char *dir = make_log("r20_replay_damaged", mid, all, seg, &end);
	/* A byte in the middle of the 1.5 MiB record that follows the midpoint. */
	int fd = open(seg, O_RDWR);
	assert_true(fd >= 0);
	unsigned char b;
	off_t at = end + 700000;
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);

	ctx_store *s = open_dir(dir);
	assert_non_null(s);
	ctx_stats st;
	ctx_get_stats(s, &st);
	assert_int_equal(atomic_load(&recovery_test_planned), st.revision);
	char *want = read_all(mid), *got = dump(s);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(count_torn(dir), 1); /* the cut bytes kept aside */
	free(want);
	free(got);
	ctx_close(s);
	unlink(mid);
	unlink(all);
	test_remove_dir(dir);
	free(dir);
}

/* The second child of test_whole_log: open dir, count the first 64 values of
 * "big" and those in marked chunks, write both to fd. */
static int child_main(const char *dir, int fd)
{
	ctx_store *s = open_dir(dir);
	ctx_state *head;
	ctx_iter_stack it;
	if (!s || ctx_get(s, "big", &head) != CTX_OK || ctx_iter_init(&it, head) != CTX_OK)
		_exit(1);
	const void *k, *v;
	size_t kl, vl;
	unsigned n = 0, marked = 0;
	while (n < 64 && ctx_iter_stack_next(&it, &k, &kl, &v, &vl))
		marked += marked_huge(v) == 1, n++;
	dprintf(fd, "%u %u\n", n, marked);
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--child") == 0 && strcmp(argv[2], "open") == 0)
		return child_main(argv[3], atoi(argv[4]));
	if (argc == 8 && strcmp(argv[1], "--child") == 0 && strcmp(argv[2], "write") == 0)
		write_log_and_die(argv[3], argv[4], argv[5], argv[6]);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_huge_chunks),
	    cmocka_unit_test(test_whole_log),
	    cmocka_unit_test(test_damaged_large_record),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
