/*
 * cli_mkstore.c - make a data directory for the ctx CLI tests.
 *
 *   cli_mkstore DIR [N [keep-log]]
 *
 * Creates, through the public API, contexts that exercise every corner of
 * the export format: several versions, UTF-8 and binary values (invalid
 * UTF-8, NUL bytes, empty), a key that is not UTF-8, keys with quotes,
 * backslashes and newlines, metadata, recovery points with labels, a
 * dropped context; plus N plain contexts "bulk:NNNNNN" (default 0).
 * With keep-log, the log segments the final checkpoint deletes are put back:
 * the directory a crash between that checkpoint's rename and its deletes
 * leaves (the whole log beside the checkpoint).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctx.h"

static void check(ctx_status s, const char *what)
{
	if (s != CTX_OK) {
		fprintf(stderr, "cli_mkstore: %s: %s (%s)\n", what, ctx_strerror(s),
		        ctx_last_error());
		exit(1);
	}
}

static void put(ctx_store *s, const char *id, const void *k, size_t kl, const void *v, size_t vl)
{
	check(ctx_put(s, id, k, kl, v, vl, NULL), "put");
}

static void make_corners(ctx_store *s)
{
	check(ctx_create(s, "user:1"), "create");
	put(s, "user:1", "name", 4, "Ada", 3);
	put(s, "user:1", "lang", 4, "en", 2);
	check(ctx_point_create(s, "user:1", "v3", NULL), "point");
	put(s, "user:1", "lang", 4, "fr", 2);
	put(s, "user:1", "city", 4, "Zürich ✓", strlen("Zürich ✓"));

	check(ctx_create(s, "user:2"), "create");
	put(s, "user:2", "bin", 3, "\xff\xfe\x00\x01", 4);          /* not UTF-8 */
	put(s, "user:2", "nul", 3, "a\0b", 3);                      /* UTF-8 with NUL */
	put(s, "user:2", "empty", 5, "", 0);                        /* empty value */
	put(s, "user:2", "\x80key", 4, "binary key", 10);           /* key not UTF-8 */
	put(s, "user:2", "q\"uote\\\n", 8, "line1\nline2\t\"", 13); /* escapes */
	put(s, "user:2", "ctl", 3, "\x01\x1f\x7f", 3);
	ctx_txn *t;
	check(ctx_txn_begin(s, "user:2", &t), "txn");
	check(ctx_txn_meta_put(t, "owner", 5, "ops", 3), "meta");
	check(ctx_txn_meta_put(t, "\xc3\x28", 2, "\xc3\x28", 2), "meta"); /* bad UTF-8 */
	check(ctx_txn_commit(t, 0, NULL), "commit");
	check(ctx_point_create(s, "user:2", "", NULL), "point");

	check(ctx_create(s, "empty"), "create");
	check(ctx_create(s, "gone"), "create");
	check(ctx_drop(s, "gone"), "drop");
	check(ctx_create(s, "ünïcode id"), "create");
	put(s, "ünïcode id", "k", 1, "v", 1);
}

/* Link (back == 0) each log segment of dir to "<name>.keep", or (back == 1)
 * rename each "<name>.keep" back to its name if that is gone. */
static void keep_log(const char *dir, int back)
{
	DIR *d = opendir(dir);
	if (!d) {
		perror(dir);
		exit(1);
	}
	struct dirent *e;
	char from[4096], to[4096];
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (strncmp(e->d_name, "wal-", 4) != 0)
			continue;
		if (!back && len > 4 && strcmp(e->d_name + len - 4, ".log") == 0) {
			snprintf(from, sizeof(from), "%s/%s", dir, e->d_name);
			snprintf(to, sizeof(to), "%s.keep", from);
			check(link(from, to) == 0 ? CTX_OK : CTX_IO, "link");
		} else if (back && len > 5 && strcmp(e->d_name + len - 5, ".keep") == 0) {
			snprintf(from, sizeof(from), "%s/%s", dir, e->d_name);
			snprintf(to, sizeof(to), "%.*s", (int)(strlen(from) - 5), from);
			check(access(to, F_OK) != 0 ? (rename(from, to) == 0 ? CTX_OK : CTX_IO)
			                            : (unlink(from) == 0 ? CTX_OK : CTX_IO),
			      "put back");
		}
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: cli_mkstore DIR [N [keep-log]]\n");
		return 2;
	}
	ctx_options o;
	ctx_options_init(&o);
	o.dir = argv[1];
	o.durability = CTX_DURABILITY_BATCH;
	ctx_store *s;
	check(ctx_open(&o, &s), "open");
	make_corners(s);
	long n = argc > 2 ? atol(argv[2]) : 0;
	for (long i = 0; i < n; i++) {
		char id[32], val[32];
		snprintf(id, sizeof(id), "bulk:%06ld", i);
		snprintf(val, sizeof(val), "value %ld", i);
		ctx_txn *t;
		check(ctx_txn_begin_create(s, id, &t), "begin_create");
		check(ctx_txn_put(t, "n", 1, val, strlen(val)), "txn_put");
		check(ctx_txn_commit(t, 0, NULL), "commit");
	}
	bool keep = argc > 3 && strcmp(argv[3], "keep-log") == 0;
	if (keep)
		keep_log(argv[1], 0);
	ctx_close(s);
	if (keep)
		keep_log(argv[1], 1);
	return 0;
}
