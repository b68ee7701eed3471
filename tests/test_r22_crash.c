/*
 * test_r22_crash.c - kill -9 of a writer whose commits mix big values (big
 * log records, some larger than the log's preallocation), wide transactions,
 * deletes, creates and drops, with checkpoints and segment rotations running;
 * and of the store right after its recovery. Round 22 (r22-crash).
 *
 * One iteration:
 *   1. a forked writer opens the directory (durability always, a checkpoint
 *      every 1 MiB of log) and runs 8 threads. Thread t owns the contexts
 *      "t<t>-c0".."t<t>-c3" (keys k0..k47) and "t<t>-big" (key "v"). Its n-th
 *      operation is a pure function of (iteration, t, n) and of the thread's
 *      model of its contexts: put, delete, a transaction putting up to 48 keys
 *      (sometimes one of them 64 KiB..1.2 MiB), deleting some and sometimes
 *      clearing the context first, a put of 64 KiB..1.5 MiB (one in eight:
 *      4.5..5 MiB, past the default 4 MiB preallocation) to "v", create or
 *      drop. Before each call it stores n as attempted in shared memory, after
 *      CTX_OK as acknowledged;
 *   2. the parent kills it at a random moment (0..300 ms after its open);
 *   3. a forked checker runs ctx_verify (it must accept the directory; a
 *      kill in the middle of a big write(2) leaves a torn tail, which must
 *      then be unacknowledged), opens the directory, and compares
 *      each thread's contexts with the parent's model replayed to the
 *      acknowledged n, or to n + 1 when one operation was in flight: every
 *      key, every value byte, which contexts exist, key counts. Then, in
 *      one iteration out of three, it is killed itself right after its
 *      recovery (a store that crashes again before any new write); otherwise
 *      it closes, and the parent checks that the directory is compact: no
 *      file but checkpoints and log segments (and the torn-*.bin files
 *      recovery keeps: at most checkpoint_bytes of them, or the newest
 *      alone, round 23), and everything besides the
 *      newest checkpoint no larger than that checkpoint plus 8 MiB (one older
 *      generation and a preallocated segment), so that nothing a crash leaves
 *      (zero tails, temporary checkpoints, torn files) accumulates.
 *
 * The second test does the same with a power cut after each kill (the
 * writer's unsynced pages kept, lost or torn in no order, vfs_sim): big
 * records span many pages, so a cut may keep a later page of one and lose an
 * earlier one; none of them was acknowledged.
 *
 * CTX_R22_ITERATIONS=n sets the iterations; CTX_TEST_SEED the seed.
 * Sanitizer builds run fewer, shorter iterations. The writer process, the
 * kill and the power cut are crash_loop.h's (shared with test_powerloss.c).
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crash_loop.h"
#include "vfs.h"

#define WRITERS CRASH_WRITERS
#define NCTX    4          /* small contexts per thread; index NCTX is "big" */
#define KEYS    48         /* keys per small context */
#define BIG_MAX (5u << 20) /* the largest value written */
#define CKPT    (1u << 20) /* checkpoint_bytes */

typedef struct tmodel {
	bool exists[NCTX + 1];
	uint64_t tag[NCTX + 1][KEYS]; /* value tag of each key, 0: absent */
} tmodel;

/* The test's own shared memory (crash_loop.h's `crash` has the rest). */
typedef struct shared {
	tmodel base[WRITERS]; /* what the last check found */
	uint32_t iteration;
	/* what the checkers saw */
	long checked_ops;   /* acknowledged operations checked */
	long inflight_kept; /* operations in flight found applied */
	long torn;          /* recoveries that cut a torn tail */
	long acked_lost;    /* must stay 0 */
} shared;

static shared *sh;

/* ---- operations: a pure function of (iteration, t, n, model) --------------------- */

enum { OP_CREATE, OP_DROP, OP_PUT, OP_DEL, OP_TXN, OP_BIG, OP_BIGDEL };

static uint64_t mix3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t st =
	    a * 0x9e3779b97f4a7c15ull ^ b * 0xbf58476d1ce4e5b9ull ^ (c + 1) * 0x94d049bb133111ebull;
	return test_rand(&st);
}

/* A tag names one value: unique over the whole test (iteration, thread,
 * operation, key); its length and bytes follow from it. */
static uint64_t tag_of(uint32_t it, int t, uint64_t n, int k)
{
	return (uint64_t)it << 40 | (uint64_t)t << 36 | (n & 0xfffffff) << 8 | (uint64_t)k;
}

/* Tags of big values have bit 7 of the key byte set. */
#define BIG_TAG 0x80u

static size_t value_len(uint64_t tag)
{
	uint64_t st = tag;
	uint64_t x = test_rand(&st);
	if (!(tag & BIG_TAG))
		return 1 + (size_t)(x % 800);
	if (x % 8 == 0 && (tag & 0x7f) == 0x7f) /* "v" of the big context: past prealloc */
		return (size_t)(9u << 19) + (size_t)(x >> 8) % (BIG_MAX - (9u << 19));
	return (size_t)(64u << 10) + 1 + (size_t)(x >> 8) % ((1200u << 10) - (64u << 10));
}

static void value_fill(uint64_t tag, unsigned char *buf, size_t len)
{
	uint64_t st = tag ^ 0x5151;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = test_rand(&st);
		memcpy(buf + i, &x, len - i < 8 ? len - i : 8);
	}
}

static void ctx_name(char *out, size_t n, int t, int c)
{
	if (c == NCTX)
		snprintf(out, n, "t%d-big", t);
	else
		snprintf(out, n, "t%d-c%d", t, c);
}

static void key_name(char *out, size_t n, int c, int k)
{
	if (c == NCTX)
		snprintf(out, n, "v");
	else
		snprintf(out, n, "k%d", k);
}

typedef struct op {
	int kind, c;
	bool clear;
	int nput, ndel;
	int put[KEYS], del[KEYS];
	uint64_t ptag[KEYS];
} op;

static op choose(const tmodel *m, uint32_t it, int t, uint64_t n)
{
	uint64_t r = mix3(it, (uint64_t)t, n);
	op o;
	memset(&o, 0, sizeof(o));
	o.c = (int)test_rand_below(&r, NCTX + 1);
	int c = o.c;
	if (!m->exists[c]) {
		o.kind = OP_CREATE;
		return o;
	}
	unsigned roll = (unsigned)test_rand_below(&r, 100);
	if (roll < 3) {
		o.kind = OP_DROP;
		return o;
	}
	if (c == NCTX) {
		o.kind = roll < 85 || !m->tag[c][0] ? OP_BIG : OP_BIGDEL;
		o.nput = o.kind == OP_BIG;
		o.put[0] = 0;
		o.ptag[0] = tag_of(it, t, n, 0x7f | BIG_TAG);
		return o;
	}
	if (roll < 35) {
		o.kind = OP_PUT;
		o.nput = 1;
		o.put[0] = (int)test_rand_below(&r, KEYS);
		o.ptag[0] = tag_of(it, t, n, o.put[0]);
		return o;
	}
	if (roll < 50) {
		int start = (int)test_rand_below(&r, KEYS);
		for (int i = 0; i < KEYS; i++) {
			int k = (start + i) % KEYS;
			if (m->tag[c][k]) {
				o.kind = OP_DEL;
				o.ndel = 1;
				o.del[0] = k;
				return o;
			}
		}
		o.kind = OP_PUT; /* nothing to delete */
		o.nput = 1;
		o.put[0] = start;
		o.ptag[0] = tag_of(it, t, n, start);
		return o;
	}
	o.kind = OP_TXN;
	o.clear = test_rand_below(&r, 10) == 0;
	bool big = test_rand_below(&r, 20) == 0;
	for (int k = 0; k < KEYS; k++) {
		unsigned x = (unsigned)test_rand_below(&r, 8);
		if (x < 4) {
			o.put[o.nput] = k;
			o.ptag[o.nput] = tag_of(it, t, n, k) | (big ? BIG_TAG : 0);
			big = false; /* at most one big value a transaction */
			o.nput++;
		} else if (x == 4 && m->tag[c][k] && !o.clear) {
			o.del[o.ndel++] = k;
		}
	}
	return o;
}

static void apply(tmodel *m, const op *o)
{
	int c = o->c;
	switch (o->kind) {
	case OP_CREATE:
		m->exists[c] = true;
		memset(m->tag[c], 0, sizeof(m->tag[c]));
		break;
	case OP_DROP:
		m->exists[c] = false;
		memset(m->tag[c], 0, sizeof(m->tag[c]));
		break;
	case OP_BIGDEL:
		m->tag[c][0] = 0;
		break;
	default:
		if (o->clear)
			memset(m->tag[c], 0, sizeof(m->tag[c]));
		for (int i = 0; i < o->ndel; i++)
			m->tag[c][o->del[i]] = 0;
		for (int i = 0; i < o->nput; i++)
			m->tag[c][o->put[i]] = o->ptag[i];
	}
}

static ctx_status perform(ctx_store *s, int t, const op *o, unsigned char *buf)
{
	char id[32], key[16];
	ctx_name(id, sizeof(id), t, o->c);
	switch (o->kind) {
	case OP_CREATE:
		return ctx_create(s, id);
	case OP_DROP:
		return ctx_drop(s, id);
	case OP_DEL:
	case OP_BIGDEL:
		key_name(key, sizeof(key), o->c, o->del[0]);
		return ctx_del(s, id, key, strlen(key), NULL);
	case OP_PUT:
	case OP_BIG: {
		key_name(key, sizeof(key), o->c, o->put[0]);
		size_t len = value_len(o->ptag[0]);
		value_fill(o->ptag[0], buf, len);
		return ctx_put(s, id, key, strlen(key), buf, len, NULL);
	}
	default: {
		ctx_txn *x = NULL;
		ctx_status st = ctx_txn_begin(s, id, &x);
		if (st != CTX_OK)
			return st;
		if (o->clear)
			st = ctx_txn_clear(x);
		for (int i = 0; i < o->ndel && st == CTX_OK; i++) {
			key_name(key, sizeof(key), o->c, o->del[i]);
			st = ctx_txn_del(x, key, strlen(key));
		}
		for (int i = 0; i < o->nput && st == CTX_OK; i++) {
			key_name(key, sizeof(key), o->c, o->put[i]);
			size_t len = value_len(o->ptag[i]);
			value_fill(o->ptag[i], buf, len);
			st = ctx_txn_put(x, key, strlen(key), buf, len);
		}
		if (st != CTX_OK) {
			ctx_txn_abort(x);
			return st;
		}
		return ctx_txn_commit(x, 0, NULL);
	}
	}
}

/* ---- the writer (a forked child) ----------------------------------------------- */

static void store_options(ctx_options *o, const char *dir)
{
	ctx_options_init(o);
	o->dir = dir;
	o->checkpoint_bytes = CKPT; /* checkpoints and rotations all along */
	o->history_depth = 2;       /* old big versions leave memory soon */
}

static void write_ops(ctx_store *s, int t)
{
	tmodel m = sh->base[t];
	unsigned char *buf = malloc(BIG_MAX + 8);
	if (!buf)
		_exit(5);
	for (uint64_t n = 1;; n++) {
		op o = choose(&m, sh->iteration, t, n);
		atomic_store(&crash->attempted[t], n);
		ctx_status st = perform(s, t, &o, buf);
		if (st != CTX_OK) {
			crash_failf("writer %d: operation %" PRIu64 " (kind %d): %s: %s", t, n,
			            o.kind, ctx_strerror(st), ctx_last_error());
			_exit(4);
		}
		atomic_store(&crash->acked[t], n);
		apply(&m, &o);
	}
}

/* ---- the checker (a forked child) ---------------------------------------------- */

/* Does the store differ from model m for thread t? If so (1), crash->fail
 * says how. */
static int differs(ctx_store *s, int t, const tmodel *m, unsigned char *buf)
{
	char id[32], key[16];
	for (int c = 0; c <= NCTX; c++) {
		ctx_name(id, sizeof(id), t, c);
		ctx_state *st = NULL;
		ctx_status rc = ctx_get(s, id, &st);
		if (!m->exists[c]) {
			if (rc == CTX_OK)
				ctx_state_release(st);
			CHECK(rc == CTX_NOT_FOUND, "%s: should not exist (%s)", id,
			      ctx_strerror(rc));
			continue;
		}
		CHECK(rc == CTX_OK, "%s: %s", id, ctx_strerror(rc));
		size_t count = 0;
		bool ok = true;
		for (int k = 0; k < (c == NCTX ? 1 : KEYS) && ok; k++) {
			key_name(key, sizeof(key), c, k);
			const void *v;
			size_t vlen;
			bool there = ctx_state_lookup(st, key, strlen(key), &v, &vlen);
			uint64_t tag = m->tag[c][k];
			if (!tag) {
				if (there)
					crash_failf("%s: %s should be absent", id, key);
				ok = !there;
				continue;
			}
			count++;
			size_t len = value_len(tag);
			value_fill(tag, buf, len);
			ok = there && vlen == len && memcmp(v, buf, len) == 0;
			if (!ok)
				crash_failf("%s: %s is %s (%zu bytes), not value %" PRIx64
				            " (%zu bytes)",
				            id, key, there ? "another value" : "absent",
				            there ? vlen : 0, tag, len);
		}
		if (ok && ctx_state_count(st) != count) {
			crash_failf("%s: %zu keys, the model %zu", id, ctx_state_count(st), count);
			ok = false;
		}
		ctx_state_release(st);
		if (!ok)
			return 1;
	}
	return 0;
}

static int check_main(const char *dir, bool crash_after)
{
	ctx_verify_report rep;
	ctx_status st = ctx_verify(dir, &rep);
	CHECK(st == CTX_OK, "ctx_verify: %s: %s", ctx_strerror(st), rep.message);
	/* A kill -9 in the middle of a big write(2) leaves part of a record: a
	 * torn tail, never acknowledged (what follows checks that). */
	sh->torn += rep.torn_bytes > 0;
	ctx_options o;
	store_options(&o, dir);
	ctx_store *s = NULL;
	st = ctx_open(&o, &s);
	CHECK(st == CTX_OK, "ctx_open: %s: %s", ctx_strerror(st), ctx_last_error());
	unsigned char *buf = malloc(BIG_MAX + 8);
	if (!buf)
		return 5;
	char first[768];
	int rc = 0;
	for (int t = 0; t < WRITERS && !rc; t++) {
		uint64_t acked = atomic_load(&crash->acked[t]);
		uint64_t attempted = atomic_load(&crash->attempted[t]);
		tmodel m = sh->base[t];
		for (uint64_t n = 1; n <= acked; n++) {
			op x = choose(&m, sh->iteration, t, n);
			apply(&m, &x);
		}
		if (!differs(s, t, &m, buf)) {
			sh->base[t] = m;
		} else {
			snprintf(first, sizeof(first), "%.760s", crash->fail);
			bool kept = false;
			if (attempted > acked) {
				op x = choose(&m, sh->iteration, t, acked + 1);
				apply(&m, &x);
				kept = !differs(s, t, &m, buf);
			}
			if (!kept) {
				sh->acked_lost++;
				crash_failf("thread %d (%" PRIu64 " acknowledged, %" PRIu64
				            " attempted): %s",
				            t, acked, attempted, first);
				rc = 1;
				break;
			}
			crash->fail[0] = 0;
			sh->base[t] = m;
			sh->inflight_kept++;
		}
		sh->checked_ops += (long)acked;
	}
	free(buf);
	if (rc) {
		ctx_close(s);
		return rc;
	}
	if (crash_after)
		raise(SIGKILL); /* a second crash, right after the recovery */
	ctx_close(s);
	return 0;
}

/* ---- the directory ------------------------------------------------------------- */

static char last_listing[2048];

/* After a clean close: only checkpoints and log segments, and all but the
 * newest checkpoint at most that checkpoint's size plus 8 MiB. */
static void check_compact(const char *dir, long it, uint64_t *max_total, uint64_t *torn_total)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	char listing[2048] = "", path[4096];
	uint64_t total = 0, newest = 0, newest_size = 0, torn = 0;
	long files = 0, torn_files = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat sb;
		assert_int_equal(stat(path, &sb), 0);
		uint64_t used = (uint64_t)sb.st_blocks * 512;
		uint64_t size = used > (uint64_t)sb.st_size ? used : (uint64_t)sb.st_size;
		if (strncmp(e->d_name, "torn-", 5) == 0) {
			/* the cut tails, kept aside: the newest, at most CKPT of them
			 * (or the newest alone), checked below */
			torn += (uint64_t)sb.st_size;
			torn_files++;
			continue;
		}
		total += size;
		files++;
		size_t l = strlen(listing);
		snprintf(listing + l, sizeof(listing) - l, " %s:%" PRIu64, e->d_name, size);
		unsigned long long rev;
		if (sscanf(e->d_name, "ckpt-%llx.ckpt", &rev) == 1 && rev >= newest) {
			newest = rev;
			newest_size = size;
		}
	}
	closedir(d);
	if (total > *max_total)
		*max_total = total;
	*torn_total = torn;
	snprintf(last_listing, sizeof(last_listing), "%s", listing);
	if (torn > CKPT && torn_files > 1)
		fail_msg("iteration %ld: %ld torn-*.bin files hold %" PRIu64 " bytes, past "
		         "checkpoint_bytes %u",
		         it, torn_files, torn, CKPT);
	if (total > 2 * newest_size + (8u << 20) || files > 8)
		fail_msg("iteration %ld: the directory holds %" PRIu64 " bytes in %ld files after "
		         "a clean close, its newest checkpoint %" PRIu64 ":%s",
		         it, total, files, newest_size, listing);
}

/* ---- the loop ------------------------------------------------------------------- */

/* power: after the kill, a power cut (crash_writer_killed) */
static void crash_loop(const char *name, bool power, double budget_s)
{
	uint64_t seed = test_seed(name, power ? 0x22b0e7 : 0x22c7a5);
	uint64_t r = seed;
	char *dir = test_make_dir(name);
	sh = crash_setup(sizeof(*sh));
	long fixed = crash_env_long("CTX_R22_ITERATIONS", 0);
	long min = fixed ? fixed : test_iters(16, 4);
	long max = fixed ? fixed : min * 3;
	double budget = budget_s * test_scale(), start = test_now();
	unsigned max_kill_ms = 300;
	uint64_t max_total = 0, torn_total = 0;
	long it = 0, second_crashes = 0;
	ctx_options o;
	store_options(&o, dir);
	for (; it < max && (it < min || test_now() - start < budget); it++) {
		sh->iteration = (uint32_t)(test_rand(&r) & 0xffffff) | 1;
		for (int t = 0; t < WRITERS; t++) {
			atomic_store(&crash->attempted[t], 0);
			atomic_store(&crash->acked[t], 0);
		}
		useconds_t after_us = (useconds_t)test_rand_below(&r, max_kill_ms * 1000u);
		crash_writer_killed(it, &o, write_ops, after_us, power ? &r : NULL);
		bool crash_after = test_rand_below(&r, 3) == 0;
		int status;
		pid_t pid = crash_fork();
		if (pid == 0)
			exit(check_main(dir, crash_after));
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (crash_after && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
			second_crashes++;
			continue;
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg(
			    "iteration %ld (seed %llu) failed (status 0x%x): %s; the directory "
			    "is kept: %s",
			    it, (unsigned long long)seed, status, crash->fail, dir);
		check_compact(dir, it, &max_total, &torn_total);
	}
	print_message("%s: %ld iterations (%ld crashed again after recovery) in %.1f s: "
	              "%ld acknowledged operations checked, %ld in flight found applied, %ld "
	              "lost (must be 0); %ld torn tails cut (%.1f MiB kept aside); largest "
	              "directory after a clean close %.1f MiB (without torn-*.bin); the last:%s\n",
	              name, it, second_crashes, test_now() - start, sh->checked_ops,
	              sh->inflight_kept, sh->acked_lost, sh->torn, (double)torn_total / (1 << 20),
	              (double)max_total / (1 << 20), last_listing);
	assert_int_equal(sh->acked_lost, 0);
	assert_true(sh->checked_ops > 0);
	crash_teardown();
	test_remove_dir(dir);
	free(dir);
}

static void test_kill9_big_records(void **unused)
{
	(void)unused;
	crash_loop("r22-crash-kill9", false, test_slowdown() > 1 ? 15.0 : 20.0);
}

static void test_power_loss_big_records(void **unused)
{
	(void)unused;
	crash_loop("r22-crash-power", true, test_slowdown() > 1 ? 12.0 : 15.0);
}

/* ---- a crash loop of small runs ------------------------------------------------ */

#define SMALL_CKPT  (1u << 20) /* checkpoint_bytes */
#define SMALL_PUTS  40
#define SMALL_VALUE (10u << 10) /* 40 puts of 10 KiB: 400 KiB of log a run */

/* The log segments an open replays: the newest one that starts at or
 * before the newest checkpoint's revision + 1, and those after it (older
 * ones wait for the next checkpoint to delete them). */
static long count_segments(const char *dir)
{
	uint64_t segs[256], ckpt = 0;
	long n = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned long long v;
	while (d && (e = readdir(d))) {
		if (sscanf(e->d_name, "wal-%16llx.log", &v) == 1 && n < 256)
			segs[n++] = v;
		else if (sscanf(e->d_name, "ckpt-%16llx.ckpt", &v) == 1 && v > ckpt)
			ckpt = v;
	}
	if (d)
		closedir(d);
	uint64_t start = 0; /* the first segment replayed */
	for (long i = 0; i < n; i++)
		if (segs[i] <= ckpt + 1 && segs[i] > start)
			start = segs[i];
	long replayed = 0;
	for (long i = 0; i < n; i++)
		replayed += segs[i] >= start;
	return replayed;
}

/* One run: open, 40 puts, and, if the log recovered is past checkpoint_bytes
 * (due), wait (up to 60 s) for the checkpoint that must start at the open;
 * then die without closing. Exit status 2: no checkpoint. */
static _Noreturn void small_run(const char *dir, long run, bool due)
{
	alarm(120);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.checkpoint_bytes = SMALL_CKPT;
	ctx_store *s = NULL;
	if (ctx_open(&o, &s) != CTX_OK) {
		crash_failf("run %ld: ctx_open: %s", run, ctx_last_error());
		_exit(3);
	}
	if (run == 0 && ctx_create(s, "a") != CTX_OK)
		_exit(3);
	static unsigned char v[SMALL_VALUE];
	for (int i = 0; i < SMALL_PUTS; i++) {
		memset(v, 'a' + (int)((run + i) % 26), sizeof(v));
		if (ctx_put(s, "a", "k", 1, v, sizeof(v), NULL) != CTX_OK) {
			crash_failf("run %ld: put: %s", run, ctx_last_error());
			_exit(3);
		}
	}
	ctx_stats st;
	ctx_get_stats(s, &st);
	for (double t0 = test_now(); due && !st.checkpoints && test_now() - t0 < 60;) {
		usleep(10000);
		ctx_get_stats(s, &st);
	}
	if (due && !st.checkpoints)
		_exit(2);
	raise(SIGKILL);
	_exit(4);
}

/* A store killed before each run's log reaches checkpoint_bytes: the log
 * recovered at each open counts toward the next checkpoint, so one comes
 * once the log since the last reaches it, and the log stays bounded. (Each
 * open counted from zero, so such a crash loop never checkpointed: 30 runs of
 * 400 KiB left 30 segments, 12 MB, with checkpoint_bytes 1 MiB.) */
static void test_crash_loop_checkpoints(void **unused)
{
	(void)unused;
	char *dir = test_make_dir("r22-crash-small");
	crash_setup(0);
	long most = 0, due_runs = 0;
	for (long run = 0; run < 16; run++) {
		/* Each run leaves one segment of 400 KiB of records: from 3 on, the
		 * log an open replays is over 1 MiB. */
		long segs = count_segments(dir);
		most = segs > most ? segs : most;
		bool due = segs >= 3;
		due_runs += due;
		pid_t pid = crash_fork();
		if (pid == 0)
			small_run(dir, run, due);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
			fail_msg("run %ld: opened with %ld log segments of 400 KiB each to replay "
			         "(checkpoint_bytes 1 MiB), and no checkpoint came",
			         run, segs);
		if (!WIFSIGNALED(status))
			fail_msg("run %ld failed (status 0x%x): %s", run, status, crash->fail);
	}
	print_message("crash loop of small runs: at most %ld log segments, %ld runs opened "
	              "past checkpoint_bytes\n",
	              most, due_runs);
	/* A run not due starts with at most 2 and adds its own segment and, if
	 * its writes start a checkpoint that the kill interrupts, the one that
	 * checkpoint rotated to; a due run ends with a checkpoint. */
	assert_true(most <= 4);
	crash_teardown();
	test_remove_dir(dir);
	free(dir);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kill9_big_records),
	    cmocka_unit_test(test_power_loss_big_records),
	    cmocka_unit_test(test_crash_loop_checkpoints),
	};
	if (getenv("CTX_TEST_FILTER")) /* run only the tests matching it */
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
