/*
 * test_review10.c - round 9's review observations, against the public
 * header:
 *
 *   - a checkpoint whose last section is damaged (its crc) is skipped for
 *     the generation before it and the log; the context loaded from the
 *     damaged section, with fields, was let go without being counted out
 *     of the store's count of contexts with fields, so
 *     ctx_count_with_fields (ctxd's DBSIZE) said one more than the store
 *     held, for as long as the store stayed open;
 *   - ctx_prefetch and ctx_prefetch_keys are hints with no errors whose
 *     NULL arguments are ignored; a NULL entry of ids was dereferenced.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct file_copy {
	char name[64];
	unsigned char *p;
	size_t n;
} file_copy;

/* Every file of dir but LOCK, read into c (at most max). */
static size_t copy_dir(const char *dir, file_copy *c, size_t max)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "LOCK") == 0)
			continue;
		assert_true(n < max && strlen(e->d_name) < sizeof(c[n].name));
		strcpy(c[n].name, e->d_name);
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		c[n].p = test_read_file(path, &c[n].n);
		assert_non_null(c[n].p);
		n++;
	}
	closedir(d);
	return n;
}

static void write_whole(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* The newest checkpoint's name in dir. */
static void newest_checkpoint(const char *dir, char *name, size_t len)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	name[0] = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "ckpt-", 5) == 0 && strstr(e->d_name, ".ckpt") &&
		    strcmp(e->d_name, name) > 0)
			snprintf(name, len, "%s", e->d_name);
	closedir(d);
	assert_true(name[0] != 0);
}

static ctx_store *open_at(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s;
	assert_ok(ctx_open(&o, &s));
	return s;
}

static void test_damaged_section_not_counted(void **state)
{
	(void)state;
	char *dir = test_make_dir("review10_count");
	/* Generation 1: context a. */
	ctx_store *s = open_at(dir);
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "1");
	ctx_close(s);
	/* Generation 2: b too; its close deletes generation 1. */
	s = open_at(dir);
	assert_ok(ctx_create(s, "b"));
	test_put_str(s, "b", "k", "2");
	assert_int_equal(ctx_count_with_fields(s, NULL), 2);
	file_copy gen1[16];
	size_t n1 = copy_dir(dir, gen1, 16); /* just before the close */
	ctx_close(s);
	/* Put back what the close deleted (a crash between the newest
	 * checkpoint's rename and its deletes leaves that), then damage the newest
	 * checkpoint's last section: its crc, the 4 bytes before the 24-byte
	 * trailer. That section's context is built, fields and all, before
	 * the crc says no. */
	for (size_t i = 0; i < n1; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, gen1[i].name);
		FILE *f = fopen(path, "rb");
		if (f)
			fclose(f);
		else
			write_whole(dir, gen1[i].name, gen1[i].p, gen1[i].n);
	}
	char name[300];
	newest_checkpoint(dir, name, sizeof(name));
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	size_t n;
	unsigned char *ck = test_read_file(path, &n);
	assert_non_null(ck);
	assert_true(n > 32 + 24 + 4);
	ck[n - 24 - 1] ^= 0x5a;
	write_whole(dir, name, ck, n);
	free(ck);

	/* Recovery falls back to generation 1 and the log: both contexts,
	 * counted once each. */
	s = open_at(dir);
	uint64_t keys = 0;
	char *dump = test_dump_store(s, false, &keys);
	assert_int_equal(keys, 2);
	free(dump);
	assert_int_equal(ctx_count_with_fields(s, NULL), 2);
	/* And it stays right through changes: empty both, count 0. */
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "a", &t));
	assert_ok(ctx_txn_del(t, "k", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	assert_ok(ctx_txn_begin(s, "b", &t));
	assert_ok(ctx_txn_del(t, "k", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	assert_int_equal(ctx_count_with_fields(s, NULL), 0);
	ctx_close(s);
	for (size_t i = 0; i < n1; i++)
		free(gen1[i].p);
	test_remove_dir(dir);
	free(dir);
}

static void test_prefetch_null_ids(void **state)
{
	(void)state;
	ctx_store *s = test_open_memory();
	assert_ok(ctx_create(s, "a"));
	test_put_str(s, "a", "k", "1");
	const char *ids[3] = {"a", NULL, "a"};
	size_t idlens[3] = {1, 5, 1};
	const void *keys[3] = {"k", "k", NULL};
	size_t klens[3] = {1, 1, 0};
	ctx_prefetch(s, ids, idlens, 3);
	ctx_prefetch_keys(s, ids, idlens, keys, klens, 3);
	/* More than one round's worth, NULLs spread over them. */
	const char *many[100];
	size_t lens[100];
	for (size_t i = 0; i < 100; i++) {
		many[i] = i % 3 ? "a" : NULL;
		lens[i] = 1;
	}
	ctx_prefetch(s, many, lens, 100);
	/* A hint changes nothing. */
	assert_true(test_has_str(s, "a", "k", "1"));
	ctx_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_damaged_section_not_counted),
	    cmocka_unit_test(test_prefetch_null_ids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
