/*
 * fuzz_common.c - scratch directory, file writing and contract checks for
 * the fuzz targets (see fuzz_common.h).
 */
#include "fuzz_common.h"
#include "store.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch[PATH_MAX];
static int report_fd = -1;

/* libFuzzer may close stderr (-close_fd_mask=2) after LLVMFuzzerInitialize:
 * keep a descriptor of our own for fuzz_fail. */
__attribute__((constructor)) static void keep_stderr(void)
{
	report_fd = dup(2);
}

_Noreturn void fuzz_fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dprintf(report_fd >= 0 ? report_fd : 2, "fuzz: contract broken: %s\n", msg);
	abort();
}

static void remove_scratch(void)
{
	fuzz_clear_dir();
	rmdir(scratch);
}

const char *fuzz_dir(void)
{
	if (scratch[0])
		return scratch;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	snprintf(scratch, sizeof(scratch), "%s/ctx-fuzz-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(scratch))
		fuzz_fail("cannot create a scratch directory %s", scratch);
	atexit(remove_scratch);
	return scratch;
}

void fuzz_clear_dir(void)
{
	DIR *d = opendir(fuzz_dir());
	if (!d)
		fuzz_fail("cannot read %s", scratch);
	struct dirent *e;
	char path[PATH_MAX + 256];
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", scratch, e->d_name);
		unlink(path);
	}
	closedir(d);
}

void fuzz_write(const char *name, const void *p, size_t n, char *path)
{
	char full[PATH_MAX];
	snprintf(full, sizeof(full), "%s/%s", fuzz_dir(), name);
	int fd = open(full, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n) || close(fd) != 0)
		fuzz_fail("cannot write %s", full);
	if (path)
		memcpy(path, full, sizeof(full));
}

void fuzz_check_status(ctx_status st, const char *what)
{
	static int verbose = -1;
	if (verbose < 0)
		verbose = getenv("CTX_FUZZ_VERBOSE") != NULL;
	if (verbose)
		dprintf(report_fd >= 0 ? report_fd : 2, "fuzz: %s: %s%s%s\n", what,
		        ctx_strerror(st), st == CTX_OK ? "" : ": ",
		        st == CTX_OK ? "" : ctx_last_error());
	if (st != CTX_OK && st != CTX_CORRUPT && st != CTX_IO)
		fuzz_fail("%s returned %s (%s)", what, ctx_strerror(st), ctx_last_error());
	if (st != CTX_OK && !ctx_last_error()[0])
		fuzz_fail("%s returned %s without a message", what, ctx_strerror(st));
}

uint64_t fuzz_clock(void *arg)
{
	return 0;
}

static ctx_store *kept_store;

static void close_kept_store(void)
{
	ctx_close(kept_store);
}

ctx_store *fuzz_memory_store(void)
{
	if (kept_store) {
		store_clear(kept_store);
		return kept_store;
	}
	ctx_options o;
	ctx_options_init(&o);
	o.clock_us = fuzz_clock;
	o.watch_history = 16; /* a small ring: less for each leak check to scan */
	if (ctx_open(&o, &kept_store) != CTX_OK)
		fuzz_fail("cannot open a memory store: %s", ctx_last_error());
	kept_store->opts.max_contexts = SIZE_MAX; /* as ctx_verify's */
	atexit(close_kept_store);
	return kept_store;
}

static void walk_map(const ctx_state *st, bool meta)
{
	ctx_iter *it;
	ctx_status rc = meta ? ctx_iter_meta_begin(st, &it) : ctx_iter_begin(st, &it);
	if (rc != CTX_OK)
		fuzz_fail("iterating '%s': %s", ctx_state_id(st), ctx_strerror(rc));
	const void *k, *v;
	size_t kl, vl, n = 0;
	while (ctx_iter_next(it, &k, &kl, &v, &vl)) {
		const void *v2;
		size_t vl2;
		bool found = meta ? ctx_state_meta(st, k, kl, &v2, &vl2)
		                  : ctx_state_lookup(st, k, kl, &v2, &vl2);
		if (!found || vl2 != vl || (vl && memcmp(v, v2, vl) != 0))
			fuzz_fail("'%s': a key iterated is not found by lookup", ctx_state_id(st));
		n++;
	}
	ctx_iter_free(it);
	if (n != (meta ? ctx_state_meta_count(st) : ctx_state_count(st)))
		fuzz_fail("'%s': iterated %zu keys, count says otherwise", ctx_state_id(st), n);
}

static void walk_history(ctx_store *s, const char *id, ctx_state *head)
{
	ctx_history_entry *h;
	size_t n;
	ctx_status rc = ctx_history(s, id, &h, &n);
	if (rc != CTX_OK)
		fuzz_fail("ctx_history('%s'): %s", id, ctx_strerror(rc));
	for (size_t i = 0; i < n; i++) {
		ctx_state *v;
		if ((rc = ctx_get_at(s, id, h[i].version, &v)) != CTX_OK)
			fuzz_fail("ctx_get_at('%s', %llu): %s", id,
			          (unsigned long long)h[i].version, ctx_strerror(rc));
		walk_map(v, false);
		ctx_diff *d;
		if ((rc = ctx_diff_states(v, head, &d)) != CTX_OK)
			fuzz_fail("ctx_diff_states('%s'): %s", id, ctx_strerror(rc));
		for (size_t j = 0; j < ctx_diff_count(d); j++)
			(void)ctx_diff_get(d, j);
		ctx_diff_free(d);
		ctx_state_release(v);
	}
	free(h);
	ctx_point *p;
	if ((rc = ctx_point_list(s, id, &p, &n)) != CTX_OK)
		fuzz_fail("ctx_point_list('%s'): %s", id, ctx_strerror(rc));
	free(p);
}

uint64_t fuzz_walk_store(ctx_store *s)
{
	ctx_list l;
	ctx_status rc = ctx_list_ids(s, NULL, NULL, 0, &l);
	if (rc != CTX_OK)
		fuzz_fail("ctx_list_ids: %s", ctx_strerror(rc));
	if (l.count != ctx_count(s))
		fuzz_fail("ctx_list_ids lists %zu contexts, ctx_count says %zu", l.count,
		          ctx_count(s));
	uint64_t keys = 0;
	for (size_t i = 0; i < l.count; i++) {
		ctx_state *head;
		if ((rc = ctx_get(s, l.ids[i], &head)) != CTX_OK)
			fuzz_fail("ctx_get('%s'): %s", l.ids[i], ctx_strerror(rc));
		keys += ctx_state_count(head);
		walk_map(head, false);
		walk_map(head, true);
		walk_history(s, l.ids[i], head);
		ctx_state_release(head);
	}
	ctx_list_free(&l);
	return keys;
}
