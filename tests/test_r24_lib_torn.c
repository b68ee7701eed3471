/*
 * test_r24_lib_torn.c - the names recovery gives torn tails, whatever lies
 * in the directory (round 24, r24-libreview).
 *
 * A cut of the newest log segment at offset O keeps the bytes in
 * torn-<F>-<O>.bin, or .<n>.bin past the highest n there for that segment
 * and offset (recovery.c, aside_name; names up to .999999999 are read back
 * as ours). Round 23's search went past that bound and then took the name
 * even if it was there: with torn-F-O.999999999.bin and
 * torn-F-O.1000000000.bin in the directory (a copy, a user's file), the
 * open failed with CTX_IO (keep_aside's O_EXCL) and served nothing. Now the
 * tail is cut without being kept, stderr says so, and every acknowledged
 * put is there. And names as ours that are a directory and a symlink at the
 * very name a cut wants are passed over, untouched; the new file is the
 * next name, and older regular ones past checkpoint_bytes are deleted.
 */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PUTS 200

static void put_all(ctx_store *s)
{
	assert_ok(ctx_create(s, "c"));
	char key[32], val[600];
	for (int k = 0; k < PUTS; k++) {
		int n = snprintf(key, sizeof(key), "k%d", k);
		memset(val, 'a' + k % 26, sizeof(val));
		assert_ok(ctx_put(s, "c", key, (size_t)n, val, 100 + (size_t)k, NULL));
	}
}

static void check_all(ctx_store *s)
{
	char key[32], val[600], want[600];
	for (int k = 0; k < PUTS; k++) {
		int n = snprintf(key, sizeof(key), "k%d", k);
		size_t len;
		if (ctx_get_value(s, "c", key, (size_t)n, val, sizeof(val), &len) != CTX_OK)
			fail_msg("acknowledged put of %s lost", key);
		memset(want, 'a' + k % 26, sizeof(want));
		assert_int_equal(len, 100 + (size_t)k);
		assert_memory_equal(val, want, len);
	}
}

/* The directory a crash right after the last put leaves (as test_r23_torn):
 * the log alone, its newest segment ending at the last record. Then
 * garbage appended to that segment: *first and *off name the cut to come. */
static void torn_image(const char *dir, unsigned long long *first, unsigned long long *off)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	put_all(s);
	test_close_keeping_log(s);
	uint64_t r;
	char *ckpt = test_newest_checkpoint(dir, &r);
	char seg[4096];
	snprintf(seg, sizeof(seg), "%s/wal-%016llx.log", dir, (unsigned long long)r + 1);
	assert_int_equal(unlink(ckpt), 0);
	assert_int_equal(unlink(seg), 0);
	free(ckpt);

	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	unsigned long long f, best = 0;
	char tail[8];
	bool found = false;
	while ((e = readdir(d)))
		if (strlen(e->d_name) == 24 &&
		    sscanf(e->d_name, "wal-%16llx.lo%1s", &f, tail) == 2 && f >= best) {
			best = f;
			found = true;
		}
	closedir(d);
	assert_true(found);
	*first = best;
	snprintf(seg, sizeof(seg), "%s/wal-%016llx.log", dir, best);
	struct stat sb;
	assert_int_equal(stat(seg, &sb), 0);
	*off = (unsigned long long)sb.st_size;
	unsigned char junk[3000];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 131 % 255 + 1);
	int fd = open(seg, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	assert_int_equal(close(fd), 0);
}

static void torn_path(char *buf, size_t n, const char *dir, unsigned long long first,
                      unsigned long long off, const char *suffix)
{
	snprintf(buf, n, "%s/torn-%016llx-%016llx%s", dir, first, off, suffix);
}

/* Open dir (o: checkpoint_bytes), stderr to errfile; its text in *err. */
static ctx_status open_capturing(const char *dir, size_t ckpt_bytes, const char *errfile,
                                 ctx_store **s, char **err)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.checkpoint_bytes = ckpt_bytes;
	fflush(stderr);
	int saved = dup(2);
	assert_true(saved >= 0);
	int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_true(dup2(fd, 2) >= 0);
	close(fd);
	ctx_status st = ctx_open(&o, s);
	fflush(stderr);
	assert_true(dup2(saved, 2) >= 0);
	close(saved);
	size_t n;
	*err = (char *)test_read_file(errfile, &n);
	return st;
}

static bool is_file(const char *path, off_t size)
{
	struct stat sb;
	return lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (size < 0 || sb.st_size == size);
}

static void test_no_name_left(void **state)
{
	(void)state;
	char *dir = test_make_dir("r24_torn_no_name");
	unsigned long long first, off;
	torn_image(dir, &first, &off);
	/* The last name recovery reads back as its own, and the one past it. */
	char last[4096], past[4096];
	torn_path(last, sizeof(last), dir, first, off, ".999999999.bin");
	torn_path(past, sizeof(past), dir, first, off, ".1000000000.bin");
	test_write_file(last, "last", 4);
	test_write_file(past, "past", 4);

	char errfile[4096];
	snprintf(errfile, sizeof(errfile), "%s.err", dir);
	ctx_store *s;
	char *err;
	ctx_status st = open_capturing(dir, 0, errfile, &s, &err);
	if (st != CTX_OK)
		fail_msg("open failed: %s (%s); stderr: %s", ctx_strerror(st), ctx_last_error(),
		         err);
	check_all(s);
	if (!strstr(err, "not kept aside"))
		fail_msg("stderr does not say the tail was not kept: %s", err);
	/* The files there are untouched; nothing new past them. */
	assert_true(is_file(last, 4));
	assert_true(is_file(past, 4));
	char next[4096];
	torn_path(next, sizeof(next), dir, first, off, ".1000000001.bin");
	assert_false(is_file(next, -1));
	/* The store works and opens again. */
	assert_ok(ctx_put(s, "c", "after", 5, "x", 1, NULL));
	ctx_close(s);
	free(err);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	assert_ok(ctx_open(&o, &s));
	check_all(s);
	ctx_close(s);
	unlink(errfile);
	test_remove_dir(dir);
	free(dir);
}

/* The name the cut wants is a directory, the next a dangling symlink: the
 * new file is the one after; both stay; an older regular torn file past
 * the bound goes. */
static void test_names_taken_by_others(void **state)
{
	(void)state;
	char *dir = test_make_dir("r24_torn_taken");
	unsigned long long first, off;
	torn_image(dir, &first, &off);
	char d0[4096], l1[4096], old[4096];
	torn_path(d0, sizeof(d0), dir, first, off, ".bin");
	torn_path(l1, sizeof(l1), dir, first, off, ".1.bin");
	assert_int_equal(mkdir(d0, 0755), 0);
	assert_int_equal(symlink("nowhere", l1), 0);
	/* An older cut's file (an earlier segment), bigger than the bound left
	 * after the new one. */
	snprintf(old, sizeof(old), "%s/torn-%016llx-%016llx.bin", dir, first ? first - 1 : 0, 0ull);
	static unsigned char big[64 << 10];
	memset(big, 0x55, sizeof(big));
	test_write_file(old, big, sizeof(big));

	char errfile[4096];
	snprintf(errfile, sizeof(errfile), "%s.err", dir);
	ctx_store *s;
	char *err;
	ctx_status st = open_capturing(dir, 32 << 10, errfile, &s, &err);
	if (st != CTX_OK)
		fail_msg("open failed: %s (%s); stderr: %s", ctx_strerror(st), ctx_last_error(),
		         err);
	check_all(s);
	char want[4096];
	torn_path(want, sizeof(want), dir, first, off, ".2.bin");
	if (!is_file(want, 3000))
		fail_msg("the torn tail is not in %s; stderr: %s", want, err);
	struct stat sb;
	assert_int_equal(lstat(d0, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(lstat(l1, &sb), 0);
	assert_true(S_ISLNK(sb.st_mode));
	if (is_file(old, -1))
		fail_msg("the older torn file past checkpoint_bytes is still there; stderr: %s",
		         err);
	free(err);
	ctx_close(s);
	rmdir(d0);
	unlink(l1);
	unlink(errfile);
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_name_left),
	    cmocka_unit_test(test_names_taken_by_others),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
