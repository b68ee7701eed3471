/*
 * test_r23_torn.c - the torn tails recovery keeps aside are bounded. Round 23
 * (r23-torn).
 *
 * Each cut of a torn log tail keeps the cut bytes in torn-<segment>-
 * <offset>[.<n>].bin; a store that crashes again and again must not grow its
 * directory forever with them. After keeping a new one, recovery deletes the
 * oldest until they total at most checkpoint_bytes (the new one is always
 * kept, even alone past it). Here a directory gets a torn tail before each of
 * 30 opens (garbage appended to its newest log segment, after a clean close
 * or where a crash after the last put left it), of 24..120 KiB,
 * one of 300 KiB, with checkpoint_bytes 256 KiB, and after each open:
 *   - the torn-*.bin files present are exactly the newest ones made whose
 *     sizes sum to at most 256 KiB (the newest always): the oldest go first,
 *     in the order they were made, also across a run of cuts of the same
 *     segment at the same offset (names .1 .. .11: the order of the names as
 *     strings is not theirs);
 *   - the open said on stderr how many it deleted;
 *   - every acknowledged put is there;
 *   - files that only look like ours (other names, a directory, a symlink)
 *     are untouched.
 * And with the default bound (64 MiB), ctx_verify says which older file an
 * open would delete, deleting nothing, and the open deletes just that one.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUDGET (256u << 10) /* checkpoint_bytes: the bound */
#define CYCLES 30
#define MAXF   64

typedef struct made {
	char name[64];
	uint64_t size;
} made;

static made all[CYCLES]; /* every torn file recovery made, oldest first */
static int nall;

static const char *const foreign[] = {
    /* names recovery does not make: never deleted, whatever their size */
    "torn-notes.txt",
    "torn-0000000000000000-0000000000000000.bin.orig",
    "torn-000000000000000G-0000000000000000.bin",
    "torn-0000000000000000-0000000000000000.01.bin",
    "torn-0000000000000000-0000000000000000.0.bin",
    "torn-0000000000000000-00000000000000000.bin",
    "TORN-0000000000000000-0000000000000000.bin",
    "xtorn-0000000000000000-0000000000000000.bin",
};
#define FOREIGN_SIZE (300u << 10)
/* named as ours, but a directory and a symlink: not files recovery made */
#define FOREIGN_DIR  "torn-0000000000000000-0000000000000001.bin"
#define FOREIGN_LINK "torn-0000000000000000-0000000000000002.bin"

static bool foreign_name(const char *n)
{
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++)
		if (strcmp(n, foreign[i]) == 0)
			return true;
	return strcmp(n, FOREIGN_DIR) == 0 || strcmp(n, FOREIGN_LINK) == 0;
}

/* The torn-*.bin files recovery made that are in dir (names, sizes). */
static int list_torn(const char *dir, made *out)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "torn-", 5) != 0 || foreign_name(e->d_name))
			continue;
		assert_true(n < MAXF);
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat sb;
		assert_int_equal(stat(path, &sb), 0);
		assert_true(strlen(e->d_name) < sizeof(out[n].name));
		memcpy(out[n].name, e->d_name, strlen(e->d_name) + 1);
		out[n++].size = (uint64_t)sb.st_size;
	}
	closedir(d);
	return n;
}

static bool listed(const made *v, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return true;
	return false;
}

static void check_foreign(const char *dir)
{
	char path[4096];
	struct stat sb;
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, foreign[i]);
		if (stat(path, &sb) != 0 || (uint64_t)sb.st_size != FOREIGN_SIZE)
			fail_msg("%s was deleted or changed", foreign[i]);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, FOREIGN_DIR);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	snprintf(path, sizeof(path), "%s/%s", dir, FOREIGN_LINK);
	assert_int_equal(lstat(path, &sb), 0);
	assert_true(S_ISLNK(sb.st_mode));
}

static void make_foreign(const char *dir)
{
	char path[4096];
	unsigned char *p = malloc(FOREIGN_SIZE);
	assert_non_null(p);
	memset(p, 0x7e, FOREIGN_SIZE);
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, foreign[i]);
		test_write_file(path, p, FOREIGN_SIZE);
	}
	free(p);
	snprintf(path, sizeof(path), "%s/%s", dir, FOREIGN_DIR);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, FOREIGN_LINK);
	assert_int_equal(symlink("torn-notes.txt", path), 0);
}

/* Append n bytes of garbage (no zero byte: all of it is torn) to the newest
 * log segment of dir. */
static void tear_newest(const char *dir, size_t n, unsigned salt)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	char newest[64] = "";
	unsigned long long first, best = 0;
	char tail[8];
	while ((e = readdir(d)))
		if (strlen(e->d_name) == 24 &&
		    sscanf(e->d_name, "wal-%16llx.lo%1s", &first, tail) == 2 && first >= best) {
			best = first;
			snprintf(newest, sizeof(newest), "%s", e->d_name);
		}
	closedir(d);
	if (!newest[0])
		fail_msg("no log segment in %s", dir);
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, newest);
	unsigned char *p = malloc(n);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)((i * 131 + salt * 17) % 255 + 1);
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
	free(p);
}

/* ---- the store's contents ---------------------------------------------------------- */

static size_t value_len(long k)
{
	return 512 + (size_t)(k * 977 % 5000);
}

static void value_of(long k, unsigned char *p)
{
	size_t n = value_len(k);
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(k * 7 + (long)i);
}

static void put_value(ctx_store *s, long k)
{
	char key[32];
	unsigned char v[8192];
	snprintf(key, sizeof(key), "k%ld", k);
	value_of(k, v);
	assert_ok(ctx_put(s, "c", key, strlen(key), v, value_len(k), NULL));
}

static void check_values(ctx_store *s, long acked)
{
	unsigned char want[8192], got[8192];
	for (long k = 0; k < acked; k++) {
		char key[32];
		snprintf(key, sizeof(key), "k%ld", k);
		size_t n;
		if (ctx_get_value(s, "c", key, strlen(key), got, sizeof(got), &n) != CTX_OK)
			fail_msg("acknowledged put of %s lost", key);
		value_of(k, want);
		assert_int_equal(n, value_len(k));
		assert_memory_equal(got, want, n);
	}
}

/* Close s as a crash right after its last acknowledged put would leave the
 * directory (no fork: under TSan a child of a process that ran threads may
 * not start its own): the close keeps what its checkpoint covers, then that
 * checkpoint and the empty segment after it are removed. The newest segment
 * then ends at the last records (a closed segment has no zero tail). */
static void crash_image(ctx_store *s, const char *dir)
{
	test_close_keeping_log(s);
	uint64_t r;
	char *ckpt = test_newest_checkpoint(dir, &r);
	char seg[4096];
	snprintf(seg, sizeof(seg), "%s/wal-%016llx.log", dir, (unsigned long long)r + 1);
	assert_int_equal(unlink(ckpt), 0);
	assert_int_equal(unlink(seg), 0);
	free(ckpt);
}

/* Open o capturing stderr into *err (malloc'd). */
static ctx_store *open_capturing(const ctx_options *o, const char *errfile, char **err)
{
	fflush(stderr);
	int saved = dup(2);
	assert_true(saved >= 0);
	int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_true(dup2(fd, 2) >= 0);
	close(fd);
	ctx_store *s;
	ctx_status st = ctx_open(o, &s);
	fflush(stderr);
	assert_true(dup2(saved, 2) >= 0);
	close(saved);
	size_t n;
	unsigned char *p = test_read_file(errfile, &n);
	*err = malloc(n + 1);
	assert_non_null(*err);
	memcpy(*err, p, n);
	(*err)[n] = 0;
	free(p);
	if (st != CTX_OK)
		fail_msg("open failed: %s (%s); stderr: %s", ctx_strerror(st), ctx_last_error(),
		         *err);
	return s;
}

static void test_torn_files_bounded(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r23-torn");
	char *errdir = test_make_dir("r23-torn-stderr");
	char errfile[4096];
	snprintf(errfile, sizeof(errfile), "%s/stderr", errdir);
	long acked = 0;
	make_foreign(dir);

	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.checkpoint_bytes = BUDGET;
	o.log_prealloc_bytes = 1;
	ctx_store *s = test_open(&o);
	assert_ok(ctx_create(s, "c"));
	for (long k = 0; k < 8; k++)
		put_value(s, k);
	acked = 8;
	ctx_close(s);

	made now[MAXF];
	int nnow = 0;
	long deleted_total = 0, same_run = 0;
	for (int c = 0; c < CYCLES; c++) {
		/* cycles 8..19 tear the same empty segment at the same offset:
		 * torn-X-Y.bin, then .1.bin .. .11.bin */
		bool streak = c >= 8 && c < 20;
		size_t g =
		    c == 22 ? BUDGET + (44u << 10) : (24u << 10) + (size_t)(c * 37 % 97) * 1024;
		tear_newest(dir, g, (unsigned)c);

		ctx_verify_report rep;
		assert_ok(ctx_verify(dir, &rep));
		assert_int_equal(rep.torn_bytes, g);
		assert_non_null(strstr(rep.message, "kept aside in torn-"));

		char *err;
		s = open_capturing(&o, errfile, &err);
		made after[MAXF];
		int nafter = list_torn(dir, after);
		/* exactly one new file, of the torn bytes */
		int fresh = -1;
		for (int i = 0; i < nafter; i++)
			if (!listed(now, nnow, after[i].name)) {
				if (fresh >= 0)
					fail_msg("cycle %d: two new torn files %s and %s", c,
					         after[fresh].name, after[i].name);
				fresh = i;
			}
		if (fresh < 0)
			fail_msg("cycle %d: no new torn file (stderr: %s)", c, err);
		assert_int_equal(after[fresh].size, g);
		all[nall++] = after[fresh];
		same_run += strchr(after[fresh].name, '.') != strrchr(after[fresh].name, '.');

		/* expected: the newest made, as many as fit in BUDGET (at least one) */
		int keep_from = nall - 1;
		uint64_t total = all[keep_from].size;
		while (keep_from > 0 && total + all[keep_from - 1].size <= BUDGET)
			total += all[--keep_from].size;
		uint64_t present = 0;
		for (int i = 0; i < nafter; i++)
			present += after[i].size;
		test_buf listing = {0};
		test_buf_add(&listing, "", 0);
		for (int i = 0; i < nafter; i++)
			test_buf_printf(&listing, " %s:%" PRIu64, after[i].name, after[i].size);
		const char *names = listing.p;
		if (nafter != nall - keep_from)
			fail_msg("cycle %d: %d torn files present, %d expected (of %d made); "
			         "present:%s; stderr: %s",
			         c, nafter, nall - keep_from, nall, names, err);
		for (int i = keep_from; i < nall; i++)
			if (!listed(after, nafter, all[i].name))
				fail_msg(
				    "cycle %d: %s (made in cycle %d) was deleted, but an older "
				    "one is kept; present:%s",
				    c, all[i].name, i, names);
		if (present != total || (present > BUDGET && nafter != 1))
			fail_msg("cycle %d: torn files hold %" PRIu64
			         " bytes (budget %u, newest %" PRIu64 ")",
			         c, present, BUDGET, after[fresh].size);
		int gone = nnow + 1 - nafter;
		if (gone > 0) {
			char want[128];
			snprintf(want, sizeof(want), "deleted %d older torn-*.bin file", gone);
			if (!strstr(err, want))
				fail_msg("cycle %d: stderr does not say \"%s\": %s", c, want, err);
			deleted_total += gone;
		} else if (strstr(err, "deleted")) {
			fail_msg("cycle %d: nothing to delete, but stderr says: %s", c, err);
		}
		free(err);
		free(listing.p);
		memcpy(now, after, sizeof(after[0]) * (size_t)nafter);
		nnow = nafter;
		check_foreign(dir);
		check_values(s, acked);

		/* the next torn tail: after a clean close, or after a crash right
		 * after the last put (its tail cut after its records) */
		long more = streak ? 0 : c % 2 == 0 ? 1 + c % 4 : 3 + c % 5;
		for (long k = acked; k < acked + more; k++)
			put_value(s, k);
		acked += more;
		if (streak || c % 2 == 0)
			ctx_close(s);
		else
			crash_image(s, dir);
	}
	/* the last puts, recovered */
	s = test_open(&o);
	check_values(s, acked);
	ctx_close(s);
	check_foreign(dir);
	print_message("%d torn tails cut, %ld torn files deleted, %ld cuts named .<n>, %ld puts "
	              "checked\n",
	              nall, deleted_total, same_run, acked);
	assert_true(deleted_total >= CYCLES - 8);
	assert_true(same_run >= 11);
	test_remove_dir(dir);
	test_remove_dir(errdir);
	free(dir);
	free(errdir);
}

/* The default bound (checkpoint_bytes 0: 64 MiB), with two older torn files
 * of 40 MiB each (sparse): verify says an open would delete the older one and
 * deletes nothing; the open deletes it, and keeps the other and the new. */
static void test_default_bound_and_verify(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r23-torn-default");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = test_open(&o);
	assert_ok(ctx_create(s, "c"));
	put_value(s, 0);
	ctx_close(s);
	const char *old[2] = {"torn-0000000000000000-0000000000000010.bin",
	                      "torn-0000000000000000-0000000000000010.1.bin"};
	char path[2][4096];
	for (int i = 0; i < 2; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/%s", dir, old[i]);
		int fd = open(path[i], O_WRONLY | O_CREAT | O_EXCL, 0644);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 40 << 20), 0);
		assert_int_equal(close(fd), 0);
	}
	tear_newest(dir, 10000, 7);
	ctx_verify_report rep;
	assert_ok(ctx_verify(dir, &rep));
	if (!strstr(rep.message, "1 older torn-*.bin file(s) deleted (41943040 bytes), past "
	                         "checkpoint_bytes (67108864)"))
		fail_msg("verify does not say what an open deletes: %s", rep.message);
	struct stat sb;
	assert_int_equal(stat(path[0], &sb), 0);
	assert_int_equal(stat(path[1], &sb), 0);
	s = test_open(&o);
	check_values(s, 1);
	ctx_close(s);
	assert_int_equal(stat(path[0], &sb), -1);
	assert_int_equal(stat(path[1], &sb), 0);
	made now[MAXF];
	int n = list_torn(dir, now);
	assert_int_equal(n, 2);
	assert_true(listed(now, n, old[1]));
	assert_true(now[0].size == 10000 || now[1].size == 10000);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_torn_files_bounded),
	    cmocka_unit_test(test_default_bound_and_verify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
