/*
 * test_nomem.c - allocation failures, SQLite style.
 *
 * This test is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,
 * --wrap=strdup (CMakeLists.txt), so every call to those functions from
 * libctx.a and from this file goes through the __wrap_* functions below.
 * They count the allocations the test thread makes while "armed" and make
 * the Nth one fail (NULL, errno ENOMEM); every other one succeeds. Only the
 * test thread is counted (a thread-local countdown): background threads
 * (log flusher, checkpointer, reaper) and the shared libraries (liburcu,
 * cmocka, libc's own allocations) are never failed, so each run is
 * deterministic.
 *
 * For each operation (a scenario), first a reference run counts its
 * allocations and records the store's content before and after it. Then
 * for N = 1, 2, 3, ... the operation runs again on the same starting state
 * with the Nth allocation failing, until a run no longer reaches N. Each
 * time:
 *   - the call returns CTX_NOMEM and the store's content (a canonical dump:
 *     every context, version, revision, pair and metadata entry, and every
 *     context's points, kept history and time-to-live) is exactly what it
 *     was before; or the failure was absorbed by design (a watch event
 *     recorded without its keys, a watcher that lags, ...) and the call
 *     returns what it returns without failures, with the content it gives
 *     then;
 *   - with a data directory, the store is closed and opened again and shows
 *     the same content (nothing half-done reached the log);
 *   - the store still works (a create, a put and a read);
 *   - ctx_close frees everything (checked by the ASan build's leak check).
 * Opening a store (memory, empty directory, a directory with a checkpoint
 * and a log to replay) and ctx_verify run the same way.
 *
 * A scenario that fails names the operation, the allocation that failed and
 * what differs. The ones under "regression" found bugs that are fixed now.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hamt.h"
#include "log.h"
#include "pool.h"
#include "store.h"
#include "util.h"
#include "vfs.h"

/* ---- the wrapped allocator ------------------------------------------------------ */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static _Thread_local long fail_at; /* 0: not armed */
static _Thread_local long seen;    /* allocations since armed */
static _Thread_local bool failed;  /* the Nth one was failed */

static bool inject(void)
{
	if (!fail_at)
		return false;
	if (++seen != fail_at)
		return false;
	failed = true;
	errno = ENOMEM;
	return true;
}

void *__wrap_malloc(size_t n)
{
	return inject() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return inject() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return inject() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return inject() ? NULL : __real_strdup(s);
}

/* Fail the nth allocation of this thread from now on (LONG_MAX: only
 * count). */
static void arm(long n)
{
	seen = 0;
	failed = false;
	fail_at = n;
}

/* Stop; true if the failure happened. *count (if not NULL): allocations
 * seen. */
static bool disarm(long *count)
{
	fail_at = 0;
	if (count)
		*count = seen;
	return failed;
}

/* ---- a fake clock --------------------------------------------------------------- */

static atomic_uint_fast64_t clock_ticks;

static uint64_t fake_clock(void *arg)
{
	return 1700000000000000ull + atomic_fetch_add(&clock_ticks, 1);
}

static void clock_advance_ms(uint64_t ms)
{
	atomic_fetch_add(&clock_ticks, ms * 1000);
}

/* ---- a canonical dump with points, history and ttl ---------------------------------- */

static void append(char **buf, size_t *len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void append(char **buf, size_t *len, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(tmp));
	*buf = realloc(*buf, *len + (size_t)n + 1);
	assert_non_null(*buf);
	memcpy(*buf + *len, tmp, (size_t)n + 1);
	*len += (size_t)n;
}

static char *full_dump(ctx_store *s)
{
	char *d = test_dump_store(s, false, NULL);
	size_t len = strlen(d);
	ctx_context_status *v = NULL;
	size_t n = 0;
	assert_ok(ctx_status_view(s, &v, &n));
	for (size_t i = 0; i < n; i++) {
		append(&d, &len, "status '%s' v%llu keys %zu ttl %llu points %zu\n", v[i].id,
		       (unsigned long long)v[i].version, v[i].keys,
		       (unsigned long long)v[i].ttl_ms, v[i].points);
		ctx_point *p = NULL;
		size_t np = 0;
		assert_ok(ctx_point_list(s, v[i].id, &p, &np));
		for (size_t k = 0; k < np; k++)
			append(&d, &len, "  point v%llu '%s' keys %zu bytes %zu sum %016llx\n",
			       (unsigned long long)p[k].version, p[k].label, p[k].keys, p[k].bytes,
			       (unsigned long long)p[k].checksum);
		free(p);
		ctx_history_entry *h = NULL;
		size_t nh = 0;
		assert_ok(ctx_history(s, v[i].id, &h, &nh));
		for (size_t k = 0; k < nh; k++)
			append(&d, &len, "  history v%llu r%llu changed %zu%s\n",
			       (unsigned long long)h[k].version, (unsigned long long)h[k].revision,
			       h[k].keys_changed, h[k].pinned ? " pinned" : "");
		free(h);
	}
	free(v);
	return d;
}

/* ---- scenarios ------------------------------------------------------------------ */

typedef struct env env;

typedef struct scenario {
	const char *name;
	bool persistent;       /* a store with a directory (copied from tmpl) */
	const char **tmpl;     /* persistent: the template directory */
	bool op_opens;         /* the operation opens the store itself */
	bool no_store;         /* nothing to dump (ctx_verify) */
	void (*setup)(env *e); /* after open, not armed */
	ctx_status (*op)(env *e);
	ctx_status ok_status; /* what op returns without failures */
	/* A failure absorbed by design: check the result (got: the dump) and
	 * bring the store to the reference's content (after). NULL: the dump
	 * must equal the reference's. */
	void (*absorbed)(env *e, const char *after);
	void (*after_nomem)(env *e); /* more checks after CTX_NOMEM */
	void (*after_ok)(env *e);    /* more checks after success */
	void (*cleanup)(env *e);     /* release handles; not armed */
	size_t max_points, history_depth, watch_queue;
	unsigned auto_point_every;
	bool watch_keep_history;
} scenario;

struct env {
	const scenario *sc;
	ctx_store *s;
	ctx_options o;
	char *dir;
	ctx_tracker *tr;
	ctx_session *se;
	ctx_watch *w[24];
	size_t nw;
	uint64_t u[8];
	long n; /* the allocation failed in this run (0: reference) */
	uint64_t refs; /* refs_signature before the operation */
	ctx_verify_report rep;
};

static ctx_verify_report ref_report;

/* Failures without a ctx_last_error() message, noted by every scenario and
 * reported together by the last test. */
static char quiet_failures[4096];

static void note_quiet(const char *what)
{
	size_t len = strlen(quiet_failures);
	if (len < sizeof(quiet_failures) - 200)
		snprintf(quiet_failures + len, sizeof(quiet_failures) - len, "  %s\n", what);
}

/* Data directories are flat: copy and remove them in-process (a shell per
 * run would cost more than the run). */
static void remove_flat_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	char path[4096];
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		assert_int_equal(unlink(path), 0);
	}
	closedir(d);
	assert_int_equal(rmdir(dir), 0);
}

static void copy_dir(const char *from, const char *to)
{
	remove_flat_dir(to);
	assert_int_equal(mkdir(to, 0755), 0);
	DIR *d = opendir(from);
	assert_non_null(d);
	struct dirent *de;
	char src[4096], dst[4096];
	static char buf[1 << 16];
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, "LOCK") == 0)
			continue;
		snprintf(src, sizeof(src), "%s/%s", from, de->d_name);
		snprintf(dst, sizeof(dst), "%s/%s", to, de->d_name);
		int in = open(src, O_RDONLY | O_CLOEXEC);
		int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		assert_true(in >= 0 && out >= 0);
		ssize_t n;
		while ((n = read(in, buf, sizeof(buf))) > 0)
			assert_int_equal(write(out, buf, (size_t)n), n);
		assert_int_equal(n, 0);
		close(in);
		close(out);
	}
	closedir(d);
}

static void copy_template(env *e)
{
	copy_dir(*e->sc->tmpl, e->dir);
}

static void env_init(env *e, const scenario *sc, char *dir)
{
	memset(e, 0, sizeof(*e));
	e->sc = sc;
	e->dir = dir;
	ctx_options_init(&e->o);
	e->o.clock_us = fake_clock;
	e->o.max_points = sc->max_points ? sc->max_points : 3;
	e->o.history_depth = sc->history_depth ? sc->history_depth : 8;
	e->o.watch_queue = sc->watch_queue;
	e->o.watch_keep_history = sc->watch_keep_history;
	e->o.auto_point_every = sc->auto_point_every;
	e->o.reaper_ms = 100000; /* expiry only when a test asks */
	if (sc->persistent)
		e->o.dir = dir;
	if (sc->no_store) /* read only: no copy needed */
		e->dir = (char *)*sc->tmpl;
}

static void env_open(env *e)
{
	e->s = NULL;
	ctx_status st = ctx_open(&e->o, &e->s);
	if (st != CTX_OK)
		fail_msg("%s: open: %s: %s", e->sc->name, ctx_strerror(st), ctx_last_error());
}

static void env_close(env *e)
{
	if (e->sc->cleanup)
		e->sc->cleanup(e);
	ctx_close(e->s);
	e->s = NULL;
}

/* The store still works: create, put, read. */
static void check_usable(ctx_store *s)
{
	ctx_watch *w;
	assert_ok(ctx_watch_open(s, "zz-usable", false, 0, &w));
	ctx_status st = ctx_create(s, "zz-usable");
	assert_true(st == CTX_OK || st == CTX_EXISTS);
	assert_ok(ctx_put(s, "zz-usable", "u", 1, "works", 5, NULL));
	ctx_state *g;
	assert_ok(ctx_get(s, "zz-usable", &g));
	const void *v;
	size_t vl;
	assert_true(ctx_state_lookup(g, "u", 1, &v, &vl));
	assert_int_equal(vl, 5);
	assert_memory_equal(v, "works", 5);
	ctx_state_release(g);
	/* The change feed still delivers: every revision handed out was
	 * reported (one that is not stalls every later event). */
	ctx_event *ev;
	if (ctx_watch_wait(w, 2000, &ev) != CTX_OK) {
		ctx_watch_close(w);
		fail_msg("the change feed stalled: no event for a commit after the failure");
	}
	ctx_event_free(ev);
	ctx_watch_close(w);
}

static char *dump_or_empty(env *e)
{
	char *d = e->sc->no_store || !e->s ? NULL : full_dump(e->s);
	if (!d) {
		d = malloc(1);
		assert_non_null(d);
		d[0] = 0;
	}
	return d;
}

/* The next N to try: every one at first, then spread out so that a
 * scenario with thousands of allocations stays fast (but its last ones are
 * always tried). */
static long next_n(long n, long total)
{
	if (n < 150 || n >= total - 5)
		return n + 1;
	long step = total / 100 + 1;
	return n + step < total - 5 ? n + step : total - 5;
}

/* The reference counts of the tries of every kept version of every
 * context, summed with a weight per position (hamt.c: a trie node starts
 * with its count). A call that failed must leave them as they were: one
 * more is a trie that will never be freed. */
static uint64_t trie_refs(const ctx_state *st)
{
	uint64_t r = 0;
	if (st->data.root)
		r += atomic_load((const atomic_uint *)(const void *)st->data.root);
	if (st->meta.root)
		r += 1000 * (uint64_t)atomic_load((const atomic_uint *)(const void *)st->meta.root);
	return r;
}

static uint64_t refs_signature(ctx_store *s)
{
	/* Versions that left history are released in the background
	 * (reclaim.c), and released versions' maps one grace period later
	 * (state.c): let that finish, so that only live references count. */
	state_drain();
	uint64_t sig = 0;
	ctx_list l;
	assert_ok(ctx_list_ids(s, NULL, NULL, 0, &l));
	for (size_t i = 0; i < l.count; i++) {
		ctx_history_entry *h;
		size_t n;
		assert_ok(ctx_history(s, l.ids[i], &h, &n));
		for (size_t k = 0; k < n; k++) {
			ctx_state *st;
			assert_ok(ctx_get_at(s, l.ids[i], h[k].version, &st));
			sig = sig * 31 + trie_refs(st) * (k + 1);
			ctx_state_release(st);
		}
		free(h);
	}
	ctx_list_free(&l);
	return sig;
}

/* What a scenario holds while it runs, kept outside its stack so that the
 * teardown can let go of it when an assertion ends the test early (the
 * sanitizer build's leak check then still means something). */
static struct run {
	env *e;
	char *dir, *img;
	char *before, *after, *got, *now, *now2, *other;
} R;

static void drop_str(char **p)
{
	free(*p);
	*p = NULL;
}

static int scenario_teardown(void **state)
{
	if (R.e) {
		if (R.e->s)
			env_close(R.e);
		else if (R.e->sc->cleanup)
			R.e->sc->cleanup(R.e);
		free(R.e);
		R.e = NULL;
	}
	if (R.img) {
		remove_flat_dir(R.img);
		drop_str(&R.img);
	}
	if (R.dir) {
		test_remove_dir(R.dir);
		drop_str(&R.dir);
	}
	drop_str(&R.before);
	drop_str(&R.after);
	drop_str(&R.got);
	drop_str(&R.now);
	drop_str(&R.now2);
	drop_str(&R.other);
	vfs_faults_reset();
	return 0;
}

static void run_scenario(const scenario *sc)
{
	char name[64];
	snprintf(name, sizeof(name), "nomem-%s", sc->name);
	R.dir = sc->persistent ? test_make_dir(name) : NULL;
	R.e = calloc(1, sizeof(*R.e));
	assert_non_null(R.e);
	env *e = R.e;
	double t0 = test_now();

	/* The reference run. */
	env_init(e, sc, R.dir);
	if (sc->persistent && !sc->no_store)
		copy_template(e);
	if (!sc->op_opens && !sc->no_store)
		env_open(e);
	if (sc->setup)
		sc->setup(e);
	R.before = dump_or_empty(e);
	long total;
	arm(LONG_MAX);
	ctx_status st = sc->op(e);
	disarm(&total);
	if (st != sc->ok_status)
		fail_msg("%s: reference run: %s: %s", sc->name, ctx_strerror(st), ctx_last_error());
	R.after = dump_or_empty(e);
	if (sc->after_ok)
		sc->after_ok(e);
	if (sc->no_store)
		ref_report = e->rep;
	if (sc->op_opens) {
		drop_str(&R.before);
		R.before = strdup(R.after);
	}
	if (e->s) {
		env_close(e);
		if (sc->persistent && !sc->no_store) {
			env_open(e);
			R.other = full_dump(e->s);
			test_expect_same_dump(R.after, R.other, "reference run, reopened");
			drop_str(&R.other);
			ctx_close(e->s);
			e->s = NULL;
		}
	} else if (sc->cleanup) {
		sc->cleanup(e);
	}
	print_message("%s: %ld allocations\n", sc->name, total);

	long tries = 0, nomems = 0, absorbed = 0;
	for (long n = 1;; n = next_n(n, total)) {
		if (n > 4 * total + 50)
			fail_msg("%s: still failing allocation %ld of %ld", sc->name, n, total);
		env_init(e, sc, R.dir);
		e->n = n;
		if (sc->persistent && !sc->no_store)
			copy_template(e);
		if (!sc->op_opens && !sc->no_store) {
			env_open(e);
			if (sc->setup)
				sc->setup(e);
			R.other = full_dump(e->s);
			test_expect_same_dump(R.before, R.other, "before the operation");
			drop_str(&R.other);
			e->refs = refs_signature(e->s);
		} else if (sc->setup) {
			sc->setup(e);
		}
		ctx_fail(CTX_OK, "%s", ""); /* so that a failure must set a message */
		arm(n);
		st = sc->op(e);
		bool hit = disarm(NULL);
		tries++;
		char what[160];
		snprintf(what, sizeof(what), "%s, allocation %ld failed (%s)", sc->name, n,
		         ctx_strerror(st));
		if (!hit) {
			if (st != sc->ok_status)
				fail_msg("%s: without a failure: %s: %s", sc->name, ctx_strerror(st),
				         ctx_last_error());
		} else if (st == CTX_NOMEM) {
			nomems++;
			if (!*ctx_last_error())
				note_quiet(what);
		} else if (st == sc->ok_status) {
			absorbed++;
		} else {
			fail_msg("%s: unexpected status: %s", what, ctx_last_error());
		}
		if (sc->op_opens && st != CTX_OK) {
			/* Nothing was handed out; the directory opens as before. */
			assert_null(e->s);
			env_open(e);
		}
		if (hit && st == sc->ok_status && sc->absorbed)
			sc->absorbed(e, R.after);
		R.got = dump_or_empty(e);
		if (!hit || st == sc->ok_status) {
			test_expect_same_dump(R.after, R.got, what);
			if (sc->after_ok)
				sc->after_ok(e);
		} else {
			test_expect_same_dump(R.before, R.got, what);
			if (e->refs && refs_signature(e->s) != e->refs)
				fail_msg("%s: a version's trie gained a reference that nothing will "
				         "release (a leak)", what);
			if (sc->after_nomem)
				sc->after_nomem(e);
		}
		drop_str(&R.got);
		if (sc->no_store) {
			if (sc->cleanup)
				sc->cleanup(e);
			if (!hit)
				break;
			continue;
		}
		/* The store still works, and its change feed still delivers (a
		 * revision handed out but never reported would stall it). A
		 * directory changed by the operation shows the same after a close
		 * and an open; and a copy taken while it was open shows what it
		 * showed then: what a power loss leaves once the log is on disk
		 * (under durability always every acknowledged change is, and a
		 * failed call must have written nothing that recovery would
		 * apply). (An open that failed wrote nothing worth more checks than
		 * the open above, which read the directory.) */
		if (sc->persistent && !sc->op_opens) {
			R.now = full_dump(e->s);
			assert_ok(log_wait(e->s->log, log_last_revision(e->s->log)));
			R.img = malloc(strlen(R.dir) + 8);
			assert_non_null(R.img);
			sprintf(R.img, "%s-img", R.dir);
			copy_dir(R.dir, R.img);
			if (sc->cleanup)
				sc->cleanup(e);
			check_usable(e->s);
			R.now2 = full_dump(e->s);
			ctx_close(e->s);
			e->s = NULL;
			e->dir = R.img;
			e->o.dir = R.img;
			env_open(e);
			R.other = full_dump(e->s);
			snprintf(what, sizeof(what), "%s, allocation %ld failed, crash image", sc->name, n);
			test_expect_same_dump(R.now, R.other, what);
			drop_str(&R.other);
			ctx_close(e->s);
			e->s = NULL;
			remove_flat_dir(R.img);
			drop_str(&R.img);
			e->dir = R.dir;
			e->o.dir = R.dir;
			env_open(e);
			R.other = full_dump(e->s);
			snprintf(what, sizeof(what), "%s, allocation %ld failed, reopened", sc->name, n);
			test_expect_same_dump(R.now2, R.other, what);
			drop_str(&R.other);
			drop_str(&R.now);
			drop_str(&R.now2);
		} else {
			if (sc->cleanup)
				sc->cleanup(e);
			if (!sc->op_opens || n % 2 == 0 || !hit)
				check_usable(e->s);
		}
		ctx_close(e->s);
		e->s = NULL;
		if (!hit)
			break;
	}
	print_message("%s: %ld runs, %ld CTX_NOMEM, %ld absorbed, %.2f s\n", sc->name, tries,
	              nomems, absorbed, test_now() - t0);
	scenario_teardown(NULL);
}

/* ---- building blocks -------------------------------------------------------------- */

/* The common starting content: "c" with 60 keys, metadata, several
 * versions and three points (p1, p2, p3), "d" with a few keys, and 30 small
 * contexts n00..n29. */
static void build_sized(ctx_store *s, int keys, int others)
{
	char k[32], v[64];
	assert_ok(ctx_create(s, "c"));
	ctx_txn *t;
	assert_ok(ctx_txn_begin(s, "c", &t));
	for (int i = 0; i < keys; i++) {
		snprintf(k, sizeof(k), "key-%02d", i);
		snprintf(v, sizeof(v), "value-%d", i * 7);
		assert_ok(ctx_txn_put(t, k, strlen(k), v, strlen(v)));
	}
	assert_ok(ctx_txn_meta_put(t, "owner", 5, "tests", 5));
	assert_ok(ctx_txn_meta_put(t, "kind", 4, "base", 4));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	assert_ok(ctx_point_create(s, "c", "p1", NULL));
	test_put_str(s, "c", "key-00", "changed");
	test_put_str(s, "c", "extra", "x");
	assert_ok(ctx_point_create(s, "c", "p2", NULL));
	assert_ok(ctx_del(s, "c", "key-01", 6, NULL));
	test_put_str(s, "c", "key-02", "changed too");
	assert_ok(ctx_point_create(s, "c", "p3", NULL));
	test_put_str(s, "c", "key-03", "after the points");
	assert_ok(ctx_create(s, "d"));
	test_put_str(s, "d", "a", "1");
	test_put_str(s, "d", "b", "2");
	for (int i = 0; i < others; i++) {
		snprintf(k, sizeof(k), "n%02d", i);
		assert_ok(ctx_create(s, k));
	}
	assert_int_equal(test_version_of(s, "c"), 7);
}

static void build_base(ctx_store *s)
{
	build_sized(s, 60, 30);
}

static void setup_base(env *e)
{
	build_base(e->s);
}

static ctx_store *const SENTINEL = (ctx_store *)&ref_report;

static ctx_status op_open(env *e)
{
	e->s = SENTINEL;
	ctx_status st = ctx_open(&e->o, &e->s);
	if (st != CTX_OK) {
		assert_ptr_equal(e->s, SENTINEL); /* untouched */
		e->s = NULL;
	}
	return st;
}

static ctx_status op_create(env *e)
{
	return ctx_create(e->s, "new");
}

static ctx_status create_txn_of(env *e, int n)
{
	ctx_txn *t;
	ctx_status st = ctx_txn_begin_create(e->s, "new-with-data", &t);
	if (st != CTX_OK)
		return st;
	char k[16];
	for (int i = 0; i < n && st == CTX_OK; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		st = ctx_txn_put(t, k, strlen(k), k, strlen(k));
		if (st == CTX_NOMEM) /* t is as it was and still usable */
			st = ctx_txn_put(t, k, strlen(k), k, strlen(k));
	}
	if (st == CTX_OK && (st = ctx_txn_meta_put(t, "m", 1, "v", 1)) == CTX_NOMEM)
		st = ctx_txn_meta_put(t, "m", 1, "v", 1);
	if (st != CTX_OK) {
		ctx_txn_abort(t);
		return st;
	}
	uint64_t v = 0;
	st = ctx_txn_commit(t, 0, &v);
	if (st == CTX_OK)
		assert_int_equal(v, 1);
	return st;
}

static ctx_status op_create_txn(env *e)
{
	return create_txn_of(e, 12);
}

static ctx_status op_create_txn_small(env *e)
{
	return create_txn_of(e, 3);
}

static ctx_status op_put_new(env *e)
{
	uint64_t v = 0;
	ctx_status st = ctx_put(e->s, "c", "brand-new-key", 13, "v", 1, &v);
	if (st == CTX_OK)
		assert_int_equal(v, 8);
	return st;
}

static ctx_status op_put_overwrite(env *e)
{
	return ctx_put(e->s, "c", "key-30", 6, "overwritten", 11, NULL);
}

static ctx_status op_del(env *e)
{
	return ctx_del(e->s, "c", "key-31", 6, NULL);
}

static ctx_status txn_of(env *e, int n)
{
	ctx_txn *t;
	ctx_status st = ctx_txn_begin(e->s, "c", &t);
	if (st != CTX_OK)
		return st;
	char k[16];
	for (int i = 0; i < n && st == CTX_OK; i++) {
		snprintf(k, sizeof(k), i < 12 ? "key-%02d" : "txn-%02d", i * 2);
		if (i % 5 == 4) {
			st = ctx_txn_del(t, k, strlen(k));
			if (st == CTX_NOMEM)
				st = ctx_txn_del(t, k, strlen(k));
		} else {
			st = ctx_txn_put(t, k, strlen(k), "t", 1);
			if (st == CTX_NOMEM)
				st = ctx_txn_put(t, k, strlen(k), "t", 1);
		}
	}
	if (st == CTX_OK && (st = ctx_txn_meta_put(t, "kind", 4, "txn", 3)) == CTX_NOMEM)
		st = ctx_txn_meta_put(t, "kind", 4, "txn", 3);
	if (st == CTX_OK && (st = ctx_txn_meta_del(t, "owner", 5)) == CTX_NOMEM)
		st = ctx_txn_meta_del(t, "owner", 5);
	if (st != CTX_OK) {
		ctx_txn_abort(t);
		return st;
	}
	return ctx_txn_commit(t, 7, NULL);
}

static ctx_status op_txn(env *e)
{
	return txn_of(e, 24);
}

/* With a directory, fewer operations: the allocations per operation are
 * those of op_txn, the log record is what is new. */
static ctx_status op_txn_small(env *e)
{
	return txn_of(e, 5);
}

static ctx_status op_get_iter(env *e)
{
	ctx_state *st;
	ctx_status r = ctx_get(e->s, "c", &st);
	if (r != CTX_OK)
		return r;
	ctx_iter *it = NULL, *mt = NULL;
	r = ctx_iter_begin(st, &it);
	if (r == CTX_OK)
		r = ctx_iter_meta_begin(st, &mt);
	if (r == CTX_OK) {
		size_t n = 0, m = 0;
		const void *k, *v;
		size_t kl, vl;
		while (ctx_iter_next(it, &k, &kl, &v, &vl)) {
			assert_true(ctx_state_lookup(st, k, kl, NULL, NULL));
			n++;
		}
		while (ctx_iter_next(mt, &k, &kl, &v, &vl))
			m++;
		assert_int_equal(n, ctx_state_count(st));
		assert_int_equal(m, 2);
	}
	ctx_iter_free(it);
	ctx_iter_free(mt);
	ctx_state_release(st);
	return r;
}

static ctx_status op_list(env *e)
{
	ctx_list l = {0};
	ctx_status st = ctx_list_ids(e->s, NULL, NULL, 0, &l);
	if (st != CTX_OK) {
		assert_int_equal(l.count, 0);
		assert_null(l.ids);
		return st;
	}
	assert_int_equal(l.count, 32);
	assert_string_equal(l.ids[0], "c");
	assert_string_equal(l.ids[31], "n29");
	ctx_list_free(&l);
	st = ctx_list_ids(e->s, "n1", "n12", 3, &l);
	if (st != CTX_OK)
		return st;
	assert_int_equal(l.count, 3);
	assert_string_equal(l.ids[0], "n13");
	ctx_list_free(&l);
	return CTX_OK;
}

static ctx_status op_diff(env *e)
{
	ctx_state *a, *b;
	ctx_status st = ctx_get_at(e->s, "c", 2, &a);
	if (st != CTX_OK)
		return st;
	if ((st = ctx_get(e->s, "c", &b)) != CTX_OK) {
		ctx_state_release(a);
		return st;
	}
	ctx_diff *d = NULL;
	st = ctx_diff_states(a, b, &d);
	if (st == CTX_OK) {
		/* key-00 changed, key-01 removed, key-02 and key-03 changed, extra
		 * added: in key order. */
		assert_int_equal(ctx_diff_count(d), 5);
		assert_int_equal(ctx_diff_get(d, 0)->kind, CTX_ADDED);
		assert_int_equal(ctx_diff_get(d, 2)->kind, CTX_REMOVED);
		assert_null(ctx_diff_get(d, 5));
	} else {
		assert_null(d);
	}
	ctx_diff_free(d);
	ctx_state_release(a);
	ctx_state_release(b);
	return st;
}

/* A diff with more than 16 changes (the change array grows). */
static void setup_many_changes(env *e)
{
	build_base(e->s);
	ctx_txn *t;
	assert_ok(ctx_txn_begin(e->s, "c", &t));
	char k[16];
	for (int i = 0; i < 40; i++) {
		snprintf(k, sizeof(k), "many-%02d", i);
		assert_ok(ctx_txn_put(t, k, strlen(k), "m", 1));
	}
	assert_ok(ctx_txn_commit(t, 0, NULL));
}

static ctx_status op_diff_many(env *e)
{
	ctx_state *a, *b;
	assert_ok(ctx_get_at(e->s, "c", 7, &a));
	assert_ok(ctx_get(e->s, "c", &b));
	ctx_diff *d = NULL;
	ctx_status st = ctx_diff_states(a, b, &d);
	if (st == CTX_OK)
		assert_int_equal(ctx_diff_count(d), 40);
	ctx_diff_free(d);
	ctx_state_release(a);
	ctx_state_release(b);
	return st;
}

static ctx_status op_history(env *e)
{
	ctx_history_entry *h = NULL;
	size_t n = 0;
	ctx_status st = ctx_history(e->s, "c", &h, &n);
	if (st == CTX_OK) {
		assert_int_equal(n, 7);
		assert_int_equal(h[0].version, 1);
		assert_int_equal(h[6].version, 7);
	} else {
		assert_null(h);
	}
	free(h);
	ctx_state *old = NULL;
	if (st == CTX_OK && (st = ctx_get_at(e->s, "c", 3, &old)) == CTX_OK) {
		assert_int_equal(ctx_state_version(old), 3);
		ctx_state_release(old);
	}
	return st;
}

static ctx_status op_point_create(env *e)
{
	uint64_t v = 0;
	ctx_status st = ctx_point_create(e->s, "c", "new-point", &v);
	if (st == CTX_OK)
		assert_int_equal(v, 7);
	return st;
}

/* A second point on a version that has one already replaces its label. */
static ctx_status op_point_relabel(env *e)
{
	return ctx_point_create(e->s, "c", "relabelled", NULL);
}

static void setup_relabel(env *e)
{
	build_base(e->s);
	/* The head (7) pinned as "head"; max_points 4 leaves room. */
	assert_ok(ctx_point_create(e->s, "c", "head", NULL));
}

static void setup_head_point(env *e)
{
	assert_ok(ctx_point_create(e->s, "c", "head", NULL));
}

static ctx_status op_point_list(env *e)
{
	ctx_point *p = NULL;
	size_t n = 0;
	ctx_status st = ctx_point_list(e->s, "c", &p, &n);
	if (st == CTX_OK) {
		assert_int_equal(n, 3);
		assert_string_equal(p[0].label, "p1");
	} else {
		assert_null(p);
	}
	free(p);
	return st;
}

static ctx_status op_point_delete(env *e)
{
	return ctx_point_delete(e->s, "c", 4); /* p2 */
}

static ctx_status op_restore(env *e)
{
	uint64_t v = 0;
	ctx_status st = ctx_restore(e->s, "c", 2, &v);
	if (st == CTX_OK)
		assert_int_equal(v, 8);
	return st;
}

static ctx_status op_restore_latest(env *e)
{
	return ctx_restore_latest(e->s, "c", NULL);
}

static ctx_status op_restore_label(env *e)
{
	return ctx_restore_label(e->s, "c", "p1", NULL);
}

static ctx_status op_restore_before(env *e)
{
	return ctx_restore_before(e->s, "c", UINT64_MAX / 2, NULL);
}

static ctx_status op_set_ttl(env *e)
{
	return ctx_set_ttl(e->s, "d", 86400000);
}

static ctx_status op_drop(env *e)
{
	return ctx_drop(e->s, "d");
}

static ctx_status op_checkpoint(env *e)
{
	ctx_stats before;
	ctx_get_stats(e->s, &before);
	ctx_status st = ctx_checkpoint(e->s);
	ctx_stats after;
	ctx_get_stats(e->s, &after);
	assert_int_equal(after.checkpoints, before.checkpoints + (st == CTX_OK));
	return st;
}

static void setup_checkpoint(env *e)
{
	test_put_str(e->s, "c", "since", "the last checkpoint");
	assert_ok(ctx_create(e->s, "new-since"));
}

static void checkpoint_again(env *e)
{
	/* A failed checkpoint leaves the store able to write the next one. */
	assert_ok(ctx_checkpoint(e->s));
}

/* ---- sessions and the status view ------------------------------------------------- */

static ctx_status op_session(env *e)
{
	ctx_session *se;
	ctx_status st = ctx_session_open(e->s, &se);
	if (st != CTX_OK)
		return st;
	st = ctx_session_activate(se, "c", false);
	if (st == CTX_OK) {
		assert_string_equal(ctx_session_current(se), "c");
		ctx_state *g;
		assert_ok(ctx_session_get(se, &g));
		assert_int_equal(ctx_state_version(g), 7);
		ctx_state_release(g);
		st = ctx_session_activate(se, "d", false);
		/* A failed switch keeps the active context. */
		assert_string_equal(ctx_session_current(se), st == CTX_OK ? "d" : "c");
	} else {
		assert_null(ctx_session_current(se));
	}
	ctx_session_close(se);
	return st;
}

static void open_session(env *e)
{
	build_base(e->s);
	assert_ok(ctx_session_open(e->s, &e->se));
	assert_ok(ctx_session_activate(e->se, "d", false));
}

static void close_session(env *e)
{
	ctx_session_close(e->se);
	e->se = NULL;
}

/* Activating a missing context with create = true. */
static ctx_status op_session_create(env *e)
{
	ctx_status st = ctx_session_activate(e->se, "made-by-session", true);
	assert_string_equal(ctx_session_current(e->se), st == CTX_OK ? "made-by-session" : "d");
	return st;
}

static ctx_status op_status_view(env *e)
{
	ctx_context_status *v = NULL;
	size_t n = 0;
	ctx_status st = ctx_status_view(e->s, &v, &n);
	if (st == CTX_OK) {
		assert_int_equal(n, 32);
		assert_string_equal(v[0].id, "c");
		assert_int_equal(v[0].points, 3);
	} else {
		assert_null(v);
	}
	free(v);
	return st;
}

/* ---- expiry ----------------------------------------------------------------------- */

static void setup_expiring(env *e)
{
	build_base(e->s);
	char k[16];
	for (int i = 0; i < 20; i++) {
		snprintf(k, sizeof(k), "e%02d", i);
		assert_ok(ctx_create(e->s, k));
		assert_ok(ctx_set_ttl(e->s, k, 1000));
	}
}

static ctx_status op_expire(env *e)
{
	clock_advance_ms(2000);
	e->u[0] = ctx_expire_now(e->s);
	if (e->n == 0)
		assert_int_equal(e->u[0], 20);
	return CTX_OK;
}

/* Out of memory, the reaper expires fewer (or none) now; the rest go at
 * the next pass. */
static void expire_absorbed(env *e, const char *after)
{
	assert_true(e->u[0] <= 20);
	assert_int_equal(ctx_count(e->s), 32 + 20 - e->u[0]);
	assert_int_equal(ctx_expire_now(e->s), 20 - e->u[0]);
}

/* ---- watches ---------------------------------------------------------------------- */

static void close_watches(env *e)
{
	for (size_t i = 0; i < e->nw; i++)
		ctx_watch_close(e->w[i]);
	e->nw = 0;
}

static ctx_status op_watch_open(env *e)
{
	ctx_status st = ctx_watch_open(e->s, "c", false, 0, &e->w[0]);
	if (st == CTX_OK)
		e->nw = 1;
	st = st == CTX_OK ? ctx_watch_open(e->s, "n", true, 1, &e->w[1]) : st;
	if (st == CTX_OK)
		e->nw = 2;
	return st;
}

static void watch_open_works(env *e)
{
	/* The first sees a new commit; the second replays the 30 creates of
	 * n00..n29 from revision 1. */
	test_put_str(e->s, "c", "watched", "yes");
	ctx_event *ev;
	assert_ok(ctx_watch_wait(e->w[0], 5000, &ev));
	assert_int_equal(ev->kind, CTX_EVENT_COMMITTED);
	assert_string_equal(ev->id, "c");
	ctx_event_free(ev);
	uint64_t last = 0;
	for (int i = 0; i < 30; i++) {
		assert_ok(ctx_watch_next(e->w[1], &ev));
		if (ev->kind == CTX_EVENT_LAGGED) {
			/* Out of memory, the replay could not grow the queue: the
			 * watcher lags, naming the first revision it missed. */
			assert_true(e->n != 0 && i >= 15);
			assert_int_equal(ev->resume_from, last + 1);
			ctx_event_free(ev);
			break;
		}
		assert_int_equal(ev->kind, CTX_EVENT_CREATED);
		char id[8];
		snprintf(id, sizeof(id), "n%02d", i);
		assert_string_equal(ev->id, id);
		last = ev->revision;
		ctx_event_free(ev);
	}
	assert_int_equal(ctx_watch_next(e->w[1], &ev), CTX_NOT_FOUND);
}

static void watch_open_failed(env *e)
{
	/* What was opened works; close it. */
	close_watches(e);
}

/* 20 watchers (more than the 16 wake-ups kept on the stack): one commit of
 * 10 keys reaches every one, with its keys or (out of memory) without. */
static void setup_watchers(env *e)
{
	build_base(e->s);
	for (int i = 0; i < 20; i++)
		assert_ok(ctx_watch_open(e->s, i % 2 ? "c" : "", i % 2 == 0, 0, &e->w[e->nw++]));
}

static ctx_status op_commit_watched(env *e)
{
	ctx_txn *t;
	ctx_status st = ctx_txn_begin(e->s, "c", &t);
	if (st != CTX_OK)
		return st;
	char k[16];
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "w%d", i);
		while ((st = ctx_txn_put(t, k, strlen(k), "w", 1)) == CTX_NOMEM)
			;
		assert_ok(st);
	}
	return ctx_txn_commit(t, 0, NULL);
}

static void watchers_saw(env *e, bool committed)
{
	for (size_t i = 0; i < e->nw; i++) {
		ctx_event *ev;
		if (!committed) {
			assert_int_equal(ctx_watch_next(e->w[i], &ev), CTX_NOT_FOUND);
			continue;
		}
		assert_ok(ctx_watch_next(e->w[i], &ev));
		assert_int_equal(ev->kind, CTX_EVENT_COMMITTED);
		assert_int_equal(ev->version, 8);
		/* Out of memory an event may come without its keys, never with
		 * only some. */
		assert_true(ev->nkeys == 10 || (e->n && ev->nkeys == 0));
		for (size_t k = 0; k < ev->nkeys; k++)
			assert_int_equal(ev->klens[k], 2);
		ctx_event_free(ev);
		assert_int_equal(ctx_watch_next(e->w[i], &ev), CTX_NOT_FOUND);
	}
	/* And they keep working. */
	test_put_str(e->s, "c", "w-after", "x");
	for (size_t i = 0; i < e->nw; i++) {
		ctx_event *ev;
		assert_ok(ctx_watch_next(e->w[i], &ev));
		assert_int_equal(ev->nkeys, 1);
		ctx_event_free(ev);
	}
}

static void watchers_ok(env *e)
{
	watchers_saw(e, true);
}

static void watchers_nomem(env *e)
{
	watchers_saw(e, false);
}

static void watchers_absorbed(env *e, const char *after)
{
	/* (The content is the reference's: checked by the caller.) */
}

/* A watcher whose queue must grow to take the next event: out of memory it
 * lags instead, and says where. */
static void setup_queue(env *e)
{
	build_base(e->s);
	assert_ok(ctx_watch_open(e->s, "d", false, 0, &e->w[e->nw++]));
	for (int i = 0; i < 15; i++)
		test_put_str(e->s, "d", "q", i % 2 ? "odd" : "even");
}

/* The 16th event: the queue of 16 (one kept for a lag) must grow. */
static ctx_status op_queue_grow(env *e)
{
	return ctx_put(e->s, "d", "q", 1, "16th", 4, NULL);
}

static void queue_check(env *e, bool lag_allowed)
{
	ctx_event *ev;
	uint64_t first = 0, last = 0;
	size_t n = 0;
	bool lagged = false;
	while (ctx_watch_next(e->w[0], &ev) == CTX_OK) {
		assert_false(lagged); /* nothing after the lag */
		if (ev->kind == CTX_EVENT_LAGGED) {
			assert_true(lag_allowed);
			assert_int_equal(ev->resume_from, last + 1);
			assert_int_equal(ev->version, 0);
			assert_string_equal(ev->id, "d");
			lagged = true;
		} else {
			assert_int_equal(ev->kind, CTX_EVENT_COMMITTED);
			if (!first)
				first = ev->revision;
			else
				assert_int_equal(ev->revision, last + 1);
			last = ev->revision;
			n++;
		}
		ctx_event_free(ev);
	}
	assert_true(n == 16 || (lagged && n == 15));
}

static void queue_ok(env *e)
{
	if (!e->u[7]) /* (not checked already as absorbed) */
		queue_check(e, false);
}

static void queue_absorbed(env *e, const char *after)
{
	queue_check(e, true);
	e->u[7] = 1;
	/* The store is not affected: the caller compares the content. */
}

static ctx_status op_watch_wait_events(env *e)
{
	/* Consuming events never allocates: the events of the setup. */
	ctx_event *ev;
	for (int i = 0; i < 15; i++) {
		ctx_status st = ctx_watch_wait(e->w[0], 1000, &ev);
		if (st != CTX_OK)
			return st;
		ctx_event_free(ev);
	}
	return ctx_watch_next(e->w[0], &ev);
}

/* ---- trackers ---------------------------------------------------------------------- */

static ctx_status merge_fn(void *arg, const ctx_conflict *c, ctx_merge_value *out)
{
	/* key-05 gets a value of its own, others the local one. */
	if (c->klen == 6 && memcmp(c->key, "key-05", 6) == 0) {
		out->present = true;
		out->value = "merged";
		out->len = 6;
	} else {
		*out = c->local;
	}
	return CTX_OK;
}

static void tracker_open_with(env *e, ctx_merge_strategy strategy, bool point)
{
	ctx_tracker_options o = {.strategy = strategy, .point_on_sync = point};
	if (strategy == CTX_MERGE_FUNCTION)
		o.merge = merge_fn;
	assert_ok(ctx_tracker_open(e->s, "c", &o, &e->tr));
}

/* Local edits: 14 keys changed only here, key-04 deleted here and changed
 * there, key-05 and key-06 changed on both sides differently, key-07
 * changed the same way on both sides. Remote: those, and key-08. */
static void tracker_edits(env *e)
{
	char k[16];
	for (int i = 0; i < 14; i++) {
		snprintf(k, sizeof(k), "local-%02d", i);
		assert_ok(ctx_tracker_put(e->tr, k, strlen(k), "L", 1));
	}
	assert_ok(ctx_tracker_del(e->tr, "key-04", 6));
	assert_ok(ctx_tracker_put(e->tr, "key-05", 6, "local5", 6));
	assert_ok(ctx_tracker_put(e->tr, "key-06", 6, "local6", 6));
	assert_ok(ctx_tracker_put(e->tr, "key-07", 6, "same", 4));
	test_put_str(e->s, "c", "key-04", "remote4");
	test_put_str(e->s, "c", "key-05", "remote5");
	test_put_str(e->s, "c", "key-06", "remote6");
	test_put_str(e->s, "c", "key-07", "same");
	test_put_str(e->s, "c", "key-08", "remote8");
}

static void close_tracker(env *e)
{
	ctx_tracker_close(e->tr);
	e->tr = NULL;
}

static ctx_status op_tracker_open(env *e)
{
	ctx_tracker_options o = {.strategy = CTX_MERGE_OLDEST};
	e->tr = NULL;
	ctx_status st = ctx_tracker_open(e->s, "c", &o, &e->tr);
	if (st == CTX_OK)
		assert_int_equal(ctx_tracker_base_version(e->tr), 7);
	else
		assert_null(e->tr);
	return st;
}

static void setup_tracker_latest(env *e)
{
	build_base(e->s);
	tracker_open_with(e, CTX_MERGE_LATEST, false);
}

/* Each edit either happens or leaves the working copy as it was. */
static ctx_status op_tracker_edit(env *e)
{
	char k[16];
	for (int i = 0; i < 20; i++) {
		snprintf(k, sizeof(k), "edit-%02d", i);
		size_t before = ctx_tracker_pending(e->tr);
		ctx_status st = i % 7 == 6 ? ctx_tracker_del(e->tr, "key-10", 6)
		                           : ctx_tracker_put(e->tr, k, strlen(k), k, strlen(k));
		if (st != CTX_OK) {
			assert_int_equal(st, CTX_NOMEM);
			assert_int_equal(ctx_tracker_pending(e->tr), before);
			if (i % 7 != 6) {
				void *v;
				size_t vl;
				assert_int_equal(ctx_tracker_get(e->tr, k, strlen(k), &v, &vl),
				                 CTX_NOT_FOUND);
			}
			return st;
		}
	}
	void *v = NULL;
	size_t vl = 0;
	ctx_status st = ctx_tracker_get(e->tr, "edit-03", 7, &v, &vl);
	if (st == CTX_OK) {
		assert_int_equal(vl, 7);
		assert_memory_equal(v, "edit-03", 7);
		free(v);
		assert_int_equal(ctx_tracker_pending(e->tr), 19); /* 18 puts, 1 key deleted */
	}
	return st;
}

static void setup_tracker(env *e, ctx_merge_strategy strategy, bool point)
{
	build_base(e->s);
	tracker_open_with(e, strategy, point);
	tracker_edits(e);
}

static void setup_sync_latest(env *e)
{
	setup_tracker(e, CTX_MERGE_LATEST, false);
}
static void setup_sync_oldest(env *e)
{
	setup_tracker(e, CTX_MERGE_OLDEST, false);
}
static void setup_sync_function(env *e)
{
	setup_tracker(e, CTX_MERGE_FUNCTION, false);
}
static void setup_sync_manual(env *e)
{
	setup_tracker(e, CTX_MERGE_MANUAL, false);
}
static void setup_sync_point(env *e)
{
	setup_tracker(e, CTX_MERGE_LATEST, true);
}

static ctx_status op_sync(env *e)
{
	e->u[0] = ctx_tracker_pending(e->tr);
	e->u[1] = ctx_tracker_base_version(e->tr);
	uint64_t v = 0;
	ctx_status st = ctx_tracker_sync(e->tr, &v);
	if (st == CTX_OK) {
		assert_int_equal(v, ctx_tracker_base_version(e->tr));
		assert_int_equal(ctx_tracker_pending(e->tr), 0);
	}
	return st;
}

/* A failed sync changed nothing: the edits are pending, the base is the
 * same; a sync now gives what the reference run gave. */
static void sync_failed(env *e)
{
	assert_int_equal(ctx_tracker_pending(e->tr), e->u[0]);
	assert_int_equal(ctx_tracker_base_version(e->tr), e->u[1]);
}

static void sync_retry(env *e)
{
	sync_failed(e);
	ctx_status st = ctx_tracker_sync(e->tr, NULL);
	assert_true(st == CTX_OK || (e->sc->ok_status == CTX_CONFLICT && st == CTX_CONFLICT));
}

/* Manual: the sync commits nothing and lists the conflicts (key-04, key-05,
 * key-06). */
static void manual_conflicts(env *e)
{
	const ctx_conflict *c = NULL;
	size_t n = ctx_tracker_conflicts(e->tr, &c);
	assert_int_equal(n, 3);
	assert_int_equal(ctx_tracker_pending(e->tr), e->u[0]);
}

static void setup_manual_conflicted(env *e)
{
	setup_sync_manual(e);
	assert_int_equal(ctx_tracker_sync(e->tr, NULL), CTX_CONFLICT);
}

static ctx_status op_manual_list(env *e)
{
	const ctx_conflict *c = NULL;
	size_t n = ctx_tracker_conflicts(e->tr, &c);
	if (n == 0) {
		/* Out of memory: an empty list, and the reason. */
		assert_non_null(strstr(ctx_last_error(), "no memory"));
		return CTX_NOMEM;
	}
	assert_int_equal(n, 3);
	return CTX_OK;
}

static void manual_list_again(env *e)
{
	/* The conflicts are still there. */
	const ctx_conflict *c = NULL;
	assert_int_equal(ctx_tracker_conflicts(e->tr, &c), 3);
}

static ctx_status op_manual_resolve(env *e)
{
	/* Keep the current value of key-05, the local one of the others. */
	assert_ok(ctx_tracker_resolve(e->tr, "key-05", 6, false));
	assert_ok(ctx_tracker_resolve(e->tr, "key-04", 6, true));
	assert_ok(ctx_tracker_resolve(e->tr, "key-06", 6, true));
	return ctx_tracker_sync(e->tr, NULL);
}

static void setup_manual_resolving(env *e)
{
	setup_manual_conflicted(e);
}

static void resolve_retry(env *e)
{
	assert_ok(ctx_tracker_sync(e->tr, NULL));
}

/* point_on_sync: a sync whose point fails still succeeds (documented). */
static void sync_point_absorbed(env *e, const char *after)
{
	ctx_point *p;
	size_t n;
	assert_ok(ctx_point_list(e->s, "c", &p, &n));
	bool has_head_point = n && p[n - 1].version == test_version_of(e->s, "c");
	free(p);
	if (!has_head_point) {
		assert_non_null(strstr(ctx_last_error(), "recovery point failed"));
		assert_ok(ctx_point_create(e->s, "c", NULL, NULL));
	}
}

/* auto_point_every: a commit whose automatic point cannot be made. */
static ctx_status op_put_auto_point(env *e)
{
	return ctx_put(e->s, "d", "auto", 4, "p", 1, NULL);
}

static void auto_point_absorbed(env *e, const char *after)
{
	char *got = full_dump(e->s);
	bool same = strcmp(after, got) == 0;
	free(got);
	if (same)
		return;
	/* Only the automatic point may be missing; make it to compare the rest. */
	ctx_point *p;
	size_t n;
	assert_ok(ctx_point_list(e->s, "d", &p, &n));
	free(p);
	print_message("note: commit %ld: version %llu kept no automatic point (out of memory)\n",
	              e->n, (unsigned long long)test_version_of(e->s, "d"));
	assert_ok(ctx_point_create(e->s, "d", "auto", NULL));
}

/* ---- directories ------------------------------------------------------------------ */

static char *tmpl_empty, *tmpl_base, *tmpl_recovery;

static ctx_store *open_tmpl(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.clock_us = fake_clock;
	o.max_points = 3;
	o.history_depth = 8;
	o.reaper_ms = 100000;
	return test_open(&o);
}

/* A directory to recover: a checkpoint, then log records of every kind
 * after it (commits, a create with data, metadata, points made and removed,
 * a restore, a ttl, a drop), taken while the store is open (so that no
 * closing checkpoint covers them). */
static void make_recovery_template(const char *dir)
{
	char *live = test_make_dir("nomem-live");
	ctx_store *s = open_tmpl(live);
	build_sized(s, 10, 4);
	assert_ok(ctx_set_ttl(s, "d", 86400000));
	assert_ok(ctx_checkpoint(s));
	char k[16];
	for (int i = 0; i < 5; i++) {
		snprintf(k, sizeof(k), "late-%02d", i);
		test_put_str(s, "c", k, "late");
	}
	assert_ok(ctx_del(s, "c", "key-09", 6, NULL));
	ctx_txn *t;
	assert_ok(ctx_txn_begin_create(s, "created-late", &t));
	assert_ok(ctx_txn_put(t, "a", 1, "1", 1));
	assert_ok(ctx_txn_meta_put(t, "m", 1, "2", 1));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	assert_ok(ctx_txn_begin(s, "c", &t));
	assert_ok(ctx_txn_meta_put(t, "late", 4, "meta", 4));
	assert_ok(ctx_txn_meta_del(t, "kind", 4));
	assert_ok(ctx_txn_commit(t, 0, NULL));
	assert_ok(ctx_point_create(s, "c", "late-point", NULL));
	assert_ok(ctx_point_delete(s, "c", 4)); /* p2, pinned before the checkpoint */
	assert_ok(ctx_restore_label(s, "c", "p3", NULL));
	assert_ok(ctx_set_ttl(s, "n02", 86400000));
	assert_ok(ctx_drop(s, "n03"));
	assert_ok(ctx_create(s, "n03")); /* a new incarnation */
	test_put_str(s, "n03", "again", "yes");
	copy_dir(live, dir);
	ctx_close(s);
	test_remove_dir(live);
	free(live);
}

static int make_templates(void **unused)
{
	tmpl_empty = test_make_dir("nomem-tmpl-empty");
	tmpl_base = test_make_dir("nomem-tmpl-base");
	ctx_store *s = open_tmpl(tmpl_base);
	build_base(s);
	ctx_close(s);
	tmpl_recovery = test_make_dir("nomem-tmpl-recovery");
	make_recovery_template(tmpl_recovery);
	return 0;
}

static int remove_templates(void **unused)
{
	test_remove_dir(tmpl_empty);
	test_remove_dir(tmpl_base);
	test_remove_dir(tmpl_recovery);
	free(tmpl_empty);
	free(tmpl_base);
	free(tmpl_recovery);
	return 0;
}

static ctx_status op_verify(env *e)
{
	memset(&e->rep, 0, sizeof(e->rep));
	ctx_status st = ctx_verify(e->dir, &e->rep);
	if (st != CTX_OK)
		assert_true(e->rep.message[0] != 0);
	return st;
}

static void verify_same(env *e)
{
	if (e->n == 0) {
		assert_true(e->rep.contexts > 5);
		assert_true(e->rep.records > 10);
		assert_string_equal(e->rep.message, "ok");
		return;
	}
	assert_int_equal(e->rep.checkpoint_revision, ref_report.checkpoint_revision);
	assert_int_equal(e->rep.records, ref_report.records);
	assert_int_equal(e->rep.last_revision, ref_report.last_revision);
	assert_int_equal(e->rep.contexts, ref_report.contexts);
	assert_int_equal(e->rep.keys, ref_report.keys);
	assert_string_equal(e->rep.message, "ok");
}

static void verify_again(env *e)
{
	/* The directory is intact: it verifies as in the reference run (every
	 * few runs: it is read-only anyway). */
	if (e->n % 4)
		return;
	assert_ok(ctx_verify(e->dir, &e->rep));
	verify_same(e);
}

/* ---- the scenarios ---------------------------------------------------------------- */

#define MEM(nm, ...) {.name = nm, __VA_ARGS__}
#define DIR(nm, t, ...) {.name = nm, .persistent = true, .tmpl = (const char **)&t, __VA_ARGS__}

static const scenario mem_scenarios[] = {
        MEM("open-memory", .op_opens = true, .op = op_open),
        MEM("create", .setup = setup_base, .op = op_create),
        MEM("create-with-data", .setup = setup_base, .op = op_create_txn),
        MEM("put-new-key", .setup = setup_base, .op = op_put_new),
        MEM("put-overwrite", .setup = setup_base, .op = op_put_overwrite),
        MEM("del", .setup = setup_base, .op = op_del),
        MEM("txn", .setup = setup_base, .op = op_txn),
        MEM("get-iter", .setup = setup_base, .op = op_get_iter),
        MEM("list-ids", .setup = setup_base, .op = op_list),
        MEM("diff", .setup = setup_base, .op = op_diff),
        MEM("diff-many", .setup = setup_many_changes, .op = op_diff_many),
        MEM("history", .setup = setup_base, .op = op_history),
        MEM("point-create", .setup = setup_base, .op = op_point_create),
        MEM("point-create-rotating", .setup = setup_base, .op = op_point_create,
            .max_points = 3),
        MEM("point-relabel", .setup = setup_relabel, .op = op_point_relabel, .max_points = 4),
        MEM("point-list", .setup = setup_base, .op = op_point_list),
        MEM("point-delete", .setup = setup_base, .op = op_point_delete),
        MEM("restore", .setup = setup_base, .op = op_restore),
        MEM("restore-latest", .setup = setup_base, .op = op_restore_latest),
        MEM("restore-label", .setup = setup_base, .op = op_restore_label),
        MEM("restore-before", .setup = setup_base, .op = op_restore_before),
        MEM("set-ttl", .setup = setup_base, .op = op_set_ttl),
        MEM("drop", .setup = setup_base, .op = op_drop),
        MEM("expire", .setup = setup_expiring, .op = op_expire, .absorbed = expire_absorbed),
        MEM("session", .setup = setup_base, .op = op_session),
        MEM("status-view", .setup = setup_base, .op = op_status_view),
        MEM("watch-open", .setup = setup_base, .op = op_watch_open, .after_ok = watch_open_works,
            .after_nomem = watch_open_failed, .cleanup = close_watches,
            .watch_keep_history = true),
        MEM("watch-20-watchers", .setup = setup_watchers, .op = op_commit_watched,
            .after_ok = watchers_ok, .after_nomem = watchers_nomem,
            .absorbed = watchers_absorbed, .cleanup = close_watches),
        MEM("watch-queue-grows", .setup = setup_queue, .op = op_queue_grow, .watch_queue = 64,
            .after_ok = queue_ok, .absorbed = queue_absorbed, .cleanup = close_watches),
        MEM("watch-wait", .setup = setup_queue, .op = op_watch_wait_events,
            .ok_status = CTX_NOT_FOUND, .cleanup = close_watches),
        MEM("tracker-open", .setup = setup_base, .op = op_tracker_open, .cleanup = close_tracker),
        MEM("tracker-edit", .setup = setup_tracker_latest, .op = op_tracker_edit,
            .cleanup = close_tracker),
        MEM("sync-latest", .setup = setup_sync_latest, .op = op_sync, .after_nomem = sync_retry,
            .cleanup = close_tracker),
        MEM("sync-oldest", .setup = setup_sync_oldest, .op = op_sync, .after_nomem = sync_retry,
            .cleanup = close_tracker),
        MEM("sync-function", .setup = setup_sync_function, .op = op_sync,
            .after_nomem = sync_retry, .cleanup = close_tracker),
        MEM("sync-manual", .setup = setup_sync_manual, .op = op_sync,
            .ok_status = CTX_CONFLICT, .after_ok = manual_conflicts, .after_nomem = sync_failed,
            .cleanup = close_tracker),
        MEM("manual-conflicts-list", .setup = setup_manual_conflicted, .op = op_manual_list,
            .after_nomem = manual_list_again, .cleanup = close_tracker),
        MEM("manual-resolve-sync", .setup = setup_manual_resolving, .op = op_manual_resolve,
            .after_nomem = resolve_retry, .cleanup = close_tracker),
        MEM("sync-point", .setup = setup_sync_point, .op = op_sync, .after_nomem = sync_retry,
            .absorbed = sync_point_absorbed, .cleanup = close_tracker),
        MEM("auto-point", .setup = setup_base, .op = op_put_auto_point, .auto_point_every = 1,
            .absorbed = auto_point_absorbed),
};

static const scenario dir_scenarios[] = {
        DIR("open-empty-dir", tmpl_empty, .op_opens = true, .op = op_open),
        DIR("recover", tmpl_recovery, .op_opens = true, .op = op_open),
        /* history_depth 1: most late records are applied in place
         * (recovery.c, apply_in_place_ops) */
        DIR("recover-in-place", tmpl_recovery, .op_opens = true, .op = op_open,
            .history_depth = 1),
        DIR("verify", tmpl_recovery, .no_store = true, .op = op_verify, .after_ok = verify_same,
            .after_nomem = verify_again),
        DIR("create", tmpl_base, .op = op_create),
        DIR("create-with-data", tmpl_base, .op = op_create_txn_small),
        DIR("put", tmpl_base, .op = op_put_new),
        DIR("del", tmpl_base, .op = op_del),
        DIR("txn", tmpl_base, .op = op_txn_small),
        DIR("drop", tmpl_base, .op = op_drop),
        DIR("set-ttl", tmpl_base, .op = op_set_ttl),
        DIR("restore", tmpl_base, .op = op_restore),
        DIR("point-create", tmpl_base, .op = op_point_create, .max_points = 4),
        DIR("checkpoint", tmpl_recovery, .setup = setup_checkpoint, .op = op_checkpoint, .after_nomem = checkpoint_again),
};

/* Bugs these scenarios found (fixed in e836402): kept as regression tests. */
static const scenario bug_scenarios[] = {
        DIR("point-create-rotating", tmpl_base, .op = op_point_create),
        DIR("point-delete", tmpl_base, .op = op_point_delete),
        DIR("point-relabel", tmpl_base, .setup = setup_head_point, .op = op_point_relabel,
            .max_points = 4),
        MEM("session-activate-create", .setup = open_session, .op = op_session_create,
            .cleanup = close_session),
};

static void test_wrap_active(void **unused)
{
	/* The link option is in place: this file's allocations and libctx's
	 * go through the wrappers. */
	void *(*volatile m)(size_t) = malloc;
	arm(1);
	void *p = m(16);
	assert_true(disarm(NULL));
	assert_null(p);
	ctx_store *s = test_open_memory();
	ctx_session *se = NULL;
	arm(1);
	assert_int_equal(ctx_session_open(s, &se), CTX_NOMEM);
	assert_true(disarm(NULL));
	assert_null(se);
	ctx_close(s);
}

/* ---- the trie itself -------------------------------------------------------------- */

/* hamt_set and hamt_del under every allocation failure, on tries with forced
 * hash collisions (collision nodes, long shared prefixes) as well as real
 * hashes, both copying shared nodes (a fresh edit token) and editing owned
 * ones in place (the build's token): CTX_NOMEM, the map's content exactly
 * as before (count, bytes, checksum, every key), the leaf still the
 * caller's; and the operation then succeeds. */
#define HKEYS 40

typedef struct hmodel {
	bool present[HKEYS];
	char val[HKEYS][8];
} hmodel;

static uint64_t forced_hash(int mode, unsigned i, const char *k, size_t kl)
{
	const uint64_t H = 0x0123456789abcdefull;
	switch (mode) {
	case 0:
		return H; /* all in one collision node */
	case 1:
		return i % 3 == 0 ? H : H ^ ((uint64_t)(i % 5) << 59); /* deep, last level */
	default:
		return hamt_hash(k, kl);
	}
}

/* Leaves store no hash: hamt_hash gives keys "hk<i>" the forced hash of
 * hook_mode (hamt_test_hash_hook). */
static int hook_mode;

static uint64_t nomem_hash(const void *key, size_t klen, uint64_t real)
{
	char k[16];
	if (hook_mode == 2 || klen < 3 || klen >= sizeof(k) || memcmp(key, "hk", 2) != 0)
		return real;
	memcpy(k, key, klen);
	k[klen] = 0;
	return forced_hash(hook_mode, (unsigned)strtoul(k + 2, NULL, 10), k, klen);
}

static void hcheck(const hamt *m, const hmodel *md, int mode)
{
	size_t count = 0, bytes = 0;
	uint64_t sum = 0;
	char k[16];
	for (unsigned i = 0; i < HKEYS; i++) {
		size_t kl = (size_t)snprintf(k, sizeof(k), "hk%u", i);
		const hamt_leaf *l = hamt_find(m, forced_hash(mode, i, k, kl), k, kl);
		if (!md->present[i]) {
			assert_null(l);
			continue;
		}
		assert_non_null(l);
		size_t vl = strlen(md->val[i]);
		assert_int_equal(l->vlen, vl);
		assert_memory_equal(hamt_leaf_value(l), md->val[i], vl);
		count++;
		bytes += kl + vl;
		sum += hamt_content_hash(k, kl, md->val[i], vl);
	}
	assert_int_equal(m->count, count);
	assert_int_equal(m->bytes, bytes);
	assert_true(m->sum == sum);
	hamt_cursor c;
	hamt_cursor_init(&c, m);
	size_t n = 0;
	while (hamt_cursor_next(&c))
		n++;
	assert_int_equal(n, count);
}

static void test_hamt_nomem(void **unused)
{
	uint64_t rng = test_seed("hamt-nomem", 77);
	long failures = 0;
	for (int mode = 0; mode < 3; mode++) {
		hook_mode = mode;
		hamt_test_hash_hook(nomem_hash);
		for (int round = 0; round < 40; round++) {
			hamt m = {0};
			hmodel md;
			memset(&md, 0, sizeof(md));
			char k[16], v[8];
			uint64_t build = hamt_edit_token();
			unsigned n = 1 + (unsigned)test_rand_below(&rng, HKEYS);
			for (unsigned j = 0; j < n; j++) {
				unsigned i = (unsigned)test_rand_below(&rng, HKEYS);
				size_t kl = (size_t)snprintf(k, sizeof(k), "hk%u", i);
				snprintf(v, sizeof(v), "v%u", (unsigned)test_rand_below(&rng, 100));
				hamt_leaf *l = hamt_leaf_new(k, kl, v, strlen(v));
				assert_non_null(l);
				assert_true(hamt_leaf_hash(l) == forced_hash(mode, i, k, kl));
				assert_ok(hamt_set(&m, l, build));
				md.present[i] = true;
				strcpy(md.val[i], v);
			}
			/* A shared copy keeps the version before (as a state does):
			 * it must never change. */
			hamt kept = round % 2 ? hamt_retain(&m) : (hamt){0};
			hmodel kept_md = md;
			uint64_t edit = round % 2 ? hamt_edit_token() : build;
			for (int op = 0; op < 6; op++) {
				unsigned i = (unsigned)test_rand_below(&rng, HKEYS);
				size_t kl = (size_t)snprintf(k, sizeof(k), "hk%u", i);
				uint64_t h = forced_hash(mode, i, k, kl);
				bool del = md.present[i] && test_rand_below(&rng, 2);
				snprintf(v, sizeof(v), "w%d", op);
				for (long fail = 1;; fail++) {
					hamt_leaf *l = NULL;
					if (!del) {
						l = hamt_leaf_new(k, kl, v, strlen(v));
						assert_non_null(l);
						assert_true(hamt_leaf_hash(l) == h);
					}
					arm(fail);
					ctx_status st = del ? hamt_del(&m, h, k, kl, edit) : hamt_set(&m, l, edit);
					bool hit = disarm(NULL);
					if (!hit) {
						assert_ok(st);
						break;
					}
					failures++;
					assert_int_equal(st, CTX_NOMEM);
					if (l) /* still the caller's */
						hamt_leaf_release(l);
					hcheck(&m, &md, mode);
					if (kept.root)
						hcheck(&kept, &kept_md, mode);
				}
				if (del) {
					md.present[i] = false;
				} else {
					md.present[i] = true;
					strcpy(md.val[i], v);
				}
				hcheck(&m, &md, mode);
				if (kept.root)
					hcheck(&kept, &kept_md, mode);
			}
			hamt_release(&kept);
			hamt_release(&m);
		}
	}
	hamt_test_hash_hook(NULL);
	assert_true(failures > 100);
}

static void test_scenario(void **state)
{
	run_scenario(*state);
}

static void test_failures_have_messages(void **unused)
{
	if (quiet_failures[0])
		fail_msg("CTX_NOMEM without a ctx_last_error() message:\n%s", quiet_failures);
}

int main(void)
{
	enum { NMEM = sizeof(mem_scenarios) / sizeof(mem_scenarios[0]),
	       NDIR = sizeof(dir_scenarios) / sizeof(dir_scenarios[0]),
	       NBUG = sizeof(bug_scenarios) / sizeof(bug_scenarios[0]) };
	static struct CMUnitTest tests[3 + NMEM + NDIR + NBUG];
	static char names[NMEM + NDIR + NBUG][64];
	size_t n = 0, k = 0;
	/* Every block this thread allocates comes from malloc, where the
	 * failures are injected (no per-thread cache in front of it). */
	pool_bypass(true);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_wrap_active);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_hamt_nomem);
	const scenario *groups[3] = {mem_scenarios, dir_scenarios, bug_scenarios};
	const size_t counts[3] = {NMEM, NDIR, NBUG};
	const char *prefix[3] = {"memory", "dir", "regression"};
	for (int g = 0; g < 3; g++) {
		for (size_t i = 0; i < counts[g]; i++, k++) {
			snprintf(names[k], sizeof(names[k]), "%s:%s", prefix[g], groups[g][i].name);
			tests[n++] = (struct CMUnitTest){names[k], test_scenario, NULL,
			                                 scenario_teardown, (void *)&groups[g][i]};
		}
	}
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_failures_have_messages);
	if (getenv("CTX_TEST_FILTER"))
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return _cmocka_run_group_tests("test_nomem", tests, n, make_templates, remove_templates);
}
