/*
 * test_crash.c - kill -9 and power loss in the middle of concurrent writes.
 *
 * One iteration of the crash loop:
 *   1. a forked writer opens the directory and runs WRITERS threads doing puts,
 *      deletes, multi-key transactions, creates and drops; before each call a
 *      thread sends the parent an INTENT record over a pipe, and right after
 *      the call returns CTX_OK an ACK record;
 *   2. the parent kills the writer with SIGKILL after a random 1..50 ms (in the
 *      power-loss variants it then also throws away what the writer wrote but
 *      did not fsync: all of it, or all but a random prefix (a torn write),
 *      or, half of the time, page by page in no order: each 4 KiB page of
 *      unsynced data kept, lost or kept in part, as writeback can leave it);
 *   3. a forked checker runs ctx_verify, opens the directory and compares
 *      every context with the history the parent collected.
 *
 * The history is exact because each thread owns its keys: thread t writes
 * only the keys "t<t>-k<i>" and the metadata entry "m<t>" of the shared
 * contexts, and everything of its private contexts "t<t>-p<j>". Every
 * operation has a visible effect (each put writes a value never written
 * before, each delete removes a key that is there, each transaction puts the
 * same fresh value tag under several keys and "m<t>"). So what recovery gives,
 * seen from thread t, must be the state after exactly the first j of t's
 * operations for some j:
 *   - durability always: j is the number of acknowledged operations, or one
 *     more (the one in flight when the writer died): nothing acknowledged is
 *     lost, nothing half-applied;
 *   - durability batch, power loss: any j (a crash may lose the last window),
 *     but still a prefix: no transaction half-applied, nothing out of order.
 * Versions must count exactly: a private context's version is the number of
 * its commits since its creation plus one; a shared context's is its version
 * before the iteration plus the commits of the chosen prefixes of all threads.
 *
 * The parent never calls libctx itself (only the forked children do), so it
 * stays single-threaded and forks safely. The last test runs in-process: a
 * crash image taken right after a checkpoint written while a context is
 * dropped and re-created.
 *
 * Long runs: CTX_CRASH_ITERATIONS=n sets the kill -9 iterations, and
 * CTX_STRESS_SCALE=k multiplies iterations and time budgets.
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
#include <poll.h>
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

#include "vfs.h"

#if defined(__SANITIZE_THREAD__)
#define TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN_BUILD 1
#endif
#endif

#define SANITIZED (test_slowdown() > 1)

/* ---- the model ----------------------------------------------------------------- */

#define WRITERS 4 /* threads of the writer */
#define SHARED  2 /* contexts all threads write */
#define PRIVATE 2 /* contexts of each thread */
#define KEYS    6 /* keys of each thread per context */
#define NCTX    (SHARED + WRITERS * PRIVATE)

typedef struct mctx {
	bool exists;
	uint64_t version;
	uint64_t val[WRITERS][KEYS]; /* value tag, 0: absent */
	uint64_t meta[WRITERS];      /* "m<t>", 0: absent */
} mctx;

typedef struct model {
	mctx c[NCTX];
} model;

enum { OP_PUT = 1, OP_DEL, OP_TXN, OP_CREATE, OP_DROP };

typedef struct op {
	uint8_t kind, ctx, nkeys, delkey; /* delkey: 0xff for none */
	uint8_t keys[4];
	uint64_t seq; /* the value tag written (unique) */
} op;

static void ctx_name(int c, char *buf, size_t n)
{
	if (c < SHARED)
		snprintf(buf, n, "shared-%d", c);
	else
		snprintf(buf, n, "t%d-p%d", (c - SHARED) / PRIVATE, (c - SHARED) % PRIVATE);
}

static int private_ctx(int t, int j)
{
	return SHARED + t * PRIVATE + j;
}

static int key_name(int t, int k, char *buf)
{
	return sprintf(buf, "t%d-k%d", t, k);
}

static int meta_name(int t, char *buf)
{
	return sprintf(buf, "m%d", t);
}

/* The value of tag seq: the tag in hex, then filler of a length that varies
 * (now and then a few hundred bytes, so that checkpoints come round). */
static size_t value_of(uint64_t seq, char *buf)
{
	int n = sprintf(buf, "v%016" PRIx64, seq);
	size_t pad = seq % 7 == 0 ? 200 + seq % 300 : seq % 24;
	for (size_t i = 0; i < pad; i++)
		buf[n + i] = (char)('a' + (seq + i) % 26);
	return (size_t)n + pad;
}

/* The tag of a value, if it is exactly value_of(tag). */
static bool tag_of(const void *v, size_t len, uint64_t *seq)
{
	char buf[600], hex[17];
	if (len < 17 || len > 520 || ((const char *)v)[0] != 'v')
		return false;
	memcpy(hex, (const char *)v + 1, 16);
	hex[16] = 0;
	char *end;
	uint64_t s = strtoull(hex, &end, 16);
	if (*end || s == 0 || value_of(s, buf) != len || memcmp(buf, v, len) != 0)
		return false;
	*seq = s;
	return true;
}

static bool is_commit(const op *o)
{
	return o->kind == OP_PUT || o->kind == OP_DEL || o->kind == OP_TXN;
}

static void apply_op(model *m, int t, const op *o)
{
	mctx *c = &m->c[o->ctx];
	switch (o->kind) {
	case OP_PUT:
		c->val[t][o->keys[0]] = o->seq;
		break;
	case OP_DEL:
		c->val[t][o->keys[0]] = 0;
		break;
	case OP_TXN:
		for (int i = 0; i < o->nkeys; i++)
			c->val[t][o->keys[i]] = o->seq;
		if (o->delkey != 0xff)
			c->val[t][o->delkey] = 0;
		c->meta[t] = o->seq;
		break;
	case OP_CREATE: /* with initial data if nkeys (ctx_txn_begin_create) */
		memset(c, 0, sizeof(*c));
		c->exists = true;
		c->version = 1;
		for (int i = 0; i < o->nkeys; i++)
			c->val[t][o->keys[i]] = o->seq;
		if (o->nkeys)
			c->meta[t] = o->seq;
		return;
	case OP_DROP:
		memset(c, 0, sizeof(*c));
		return;
	}
	c->version++;
}

/* ---- what goes over the pipe ------------------------------------------------------ */

enum { W_INTENT = 1, W_ACK, W_FAIL };

typedef struct wire {
	uint8_t type, thread, status, pad;
	uint32_t pad2;
	op o;
	uint64_t version; /* ACK: the version the call returned */
	char msg[200];    /* FAIL */
} wire;

static void send_wire(int fd, const wire *w)
{
	/* Less than PIPE_BUF: one write, never interleaved with another's. */
	ssize_t n;
	do
		n = write(fd, w, sizeof(*w));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*w))
		_exit(5);
}

static void send_fail(int fd, int thread, ctx_status st, const char *what)
{
	wire w;
	memset(&w, 0, sizeof(w));
	w.type = W_FAIL;
	w.thread = (uint8_t)thread;
	w.status = (uint8_t)st;
	snprintf(w.msg, sizeof(w.msg), "%s: %s: %s", what, ctx_strerror(st), ctx_last_error());
	send_wire(fd, &w);
}

/* ---- the writer (a forked child) -------------------------------------------------- */

typedef struct writer {
	ctx_store *s;
	int thread;
	int fd;
	const model *base;
	uint64_t seed;
	uint32_t iteration;
} writer;

static op choose_op(const model *m, int t, uint64_t *r)
{
	op o;
	memset(&o, 0, sizeof(o));
	o.delkey = 0xff;
	int absent[PRIVATE], present[PRIVATE], na = 0, np = 0;
	for (int j = 0; j < PRIVATE; j++) {
		if (m->c[private_ctx(t, j)].exists)
			present[np++] = private_ctx(t, j);
		else
			absent[na++] = private_ctx(t, j);
	}
	int roll = (int)test_rand_below(r, 100);
	if (roll < 6 && na) {
		o.kind = OP_CREATE;
		o.ctx = (uint8_t)absent[test_rand_below(r, (uint64_t)na)];
		for (int want = (int)test_rand_below(r, 4); o.nkeys < want;) {
			int k = (int)test_rand_below(r, KEYS);
			bool dup = false;
			for (int i = 0; i < o.nkeys; i++)
				dup |= o.keys[i] == k;
			if (!dup)
				o.keys[o.nkeys++] = (uint8_t)k;
		}
		return o;
	}
	if (roll < 10 && np) {
		o.kind = OP_DROP;
		o.ctx = (uint8_t)present[test_rand_below(r, (uint64_t)np)];
		return o;
	}
	int pick = (int)test_rand_below(r, (uint64_t)(SHARED + np));
	o.ctx = (uint8_t)(pick < SHARED ? pick : present[pick - SHARED]);
	const mctx *c = &m->c[o.ctx];
	int have[KEYS], nh = 0;
	for (int k = 0; k < KEYS; k++)
		if (c->val[t][k])
			have[nh++] = k;
	roll = (int)test_rand_below(r, 100);
	if (roll < 45) {
		o.kind = OP_PUT;
		o.nkeys = 1;
		o.keys[0] = (uint8_t)test_rand_below(r, KEYS);
	} else if (roll < 60 && nh) {
		o.kind = OP_DEL;
		o.nkeys = 1;
		o.keys[0] = (uint8_t)have[test_rand_below(r, (uint64_t)nh)];
	} else {
		o.kind = OP_TXN;
		bool used[KEYS] = {0};
		int want = 1 + (int)test_rand_below(r, 4);
		while (o.nkeys < want) {
			int k = (int)test_rand_below(r, KEYS);
			if (!used[k]) {
				used[k] = true;
				o.keys[o.nkeys++] = (uint8_t)k;
			}
		}
		if (test_rand_below(r, 3) == 0)
			for (int i = 0; i < nh; i++)
				if (!used[have[i]]) {
					o.delkey = (uint8_t)have[i];
					break;
				}
	}
	return o;
}

static ctx_status perform(ctx_store *s, int t, const op *o, uint64_t *version)
{
	char id[32], key[32], val[600];
	ctx_name(o->ctx, id, sizeof(id));
	size_t vlen = value_of(o->seq, val);
	int klen;
	ctx_status st;
	switch (o->kind) {
	case OP_PUT:
		klen = key_name(t, o->keys[0], key);
		return ctx_put(s, id, key, (size_t)klen, val, vlen, version);
	case OP_DEL:
		klen = key_name(t, o->keys[0], key);
		return ctx_del(s, id, key, (size_t)klen, version);
	case OP_TXN:
	case OP_CREATE: {
		if (o->kind == OP_CREATE && !o->nkeys) {
			*version = 1;
			return ctx_create(s, id);
		}
		ctx_txn *x = NULL;
		st = o->kind == OP_CREATE ? ctx_txn_begin_create(s, id, &x)
		                          : ctx_txn_begin(s, id, &x);
		if (st != CTX_OK)
			return st;
		for (int i = 0; i < o->nkeys && st == CTX_OK; i++) {
			klen = key_name(t, o->keys[i], key);
			st = ctx_txn_put(x, key, (size_t)klen, val, vlen);
		}
		if (st == CTX_OK && o->delkey != 0xff) {
			klen = key_name(t, o->delkey, key);
			st = ctx_txn_del(x, key, (size_t)klen);
		}
		if (st == CTX_OK) {
			klen = meta_name(t, key);
			st = ctx_txn_meta_put(x, key, (size_t)klen, val, vlen);
		}
		if (st != CTX_OK) {
			ctx_txn_abort(x);
			return st;
		}
		return ctx_txn_commit(x, 0, version);
	}
	default:
		*version = 0;
		return ctx_drop(s, id);
	}
}

static void *writer_thread(void *arg)
{
	writer *w = arg;
	model known = *w->base; /* what this thread knows of its own keys */
	uint64_t r = w->seed;
	for (uint32_t n = 1;; n++) {
		op o = choose_op(&known, w->thread, &r);
		o.seq =
		    (uint64_t)(w->iteration + 1) << 32 | (uint64_t)w->thread << 24 | (n & 0xffffff);
		wire in;
		memset(&in, 0, sizeof(in));
		in.type = W_INTENT;
		in.thread = (uint8_t)w->thread;
		in.o = o;
		send_wire(w->fd, &in);
		uint64_t version = 0;
		ctx_status st = perform(w->s, w->thread, &o, &version);
		if (st != CTX_OK) {
			send_fail(w->fd, w->thread, st, "a write");
			_exit(4);
		}
		wire ack = in;
		ack.type = W_ACK;
		ack.version = version;
		send_wire(w->fd, &ack);
		apply_op(&known, w->thread, &o);
	}
	return NULL;
}

static _Noreturn void writer_main(const char *dir, int fd, const model *base, uint64_t seed,
                                  uint32_t iteration, ctx_durability mode)
{
	alarm(30); /* if the parent is gone */
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = mode;
	o.batch_ms = 3;
	o.checkpoint_bytes = 48 << 10; /* background checkpoints during the run */
	ctx_store *s = NULL;
	ctx_status st = ctx_open(&o, &s);
	if (st != CTX_OK) {
		send_fail(fd, 255, st, "ctx_open in the writer");
		_exit(3);
	}
	static writer w[WRITERS];
	pthread_t th;
	for (int t = 0; t < WRITERS; t++) {
		w[t] = (writer){s, t, fd, base, seed + (uint64_t)t * 0x1234567, iteration};
		if (pthread_create(&th, NULL, writer_thread, &w[t]) != 0)
			_exit(6);
	}
	for (;;)
		pause();
}

/* ---- what the parent collects ------------------------------------------------------- */

typedef struct thread_log {
	op *ops; /* INTENTs in order */
	size_t n, cap;
	size_t acked;
} thread_log;

typedef struct run_log {
	thread_log t[WRITERS];
	model acked; /* base + every acknowledged operation */
	uint64_t base_version[SHARED];
	uint64_t last_shared_version[WRITERS][SHARED];
	uint64_t *shared_versions[SHARED]; /* versions acknowledged for each */
	size_t nsv[SHARED], capsv[SHARED];
	char fail[512];
} run_log;

static void run_log_reset(run_log *rl, const model *base)
{
	for (int t = 0; t < WRITERS; t++)
		rl->t[t].n = rl->t[t].acked = 0;
	for (int s = 0; s < SHARED; s++) {
		rl->nsv[s] = 0;
		rl->base_version[s] = base->c[s].version;
	}
	memset(rl->last_shared_version, 0, sizeof(rl->last_shared_version));
	rl->acked = *base;
	rl->fail[0] = 0;
}

static void run_log_free(run_log *rl)
{
	for (int t = 0; t < WRITERS; t++)
		free(rl->t[t].ops);
	for (int s = 0; s < SHARED; s++)
		free(rl->shared_versions[s]);
}

/* Whether any operation of this iteration was acknowledged yet. */
static bool rl_messages(const run_log *rl)
{
	for (int t = 0; t < WRITERS; t++)
		if (rl->t[t].acked)
			return true;
	return false;
}

static void take_wire(run_log *rl, const wire *w)
{
	if (rl->fail[0])
		return;
	if (w->type == W_FAIL) {
		snprintf(rl->fail, sizeof(rl->fail), "writer thread %d failed: %s", w->thread,
		         w->msg);
		return;
	}
	assert_true(w->thread < WRITERS);
	thread_log *tl = &rl->t[w->thread];
	if (w->type == W_INTENT) {
		assert_int_equal(tl->acked, tl->n); /* one call at a time per thread */
		if (tl->n == tl->cap) {
			tl->cap = tl->cap ? 2 * tl->cap : 256;
			tl->ops = realloc(tl->ops, tl->cap * sizeof(op));
			assert_non_null(tl->ops);
		}
		tl->ops[tl->n++] = w->o;
		return;
	}
	assert_int_equal(w->type, W_ACK);
	assert_int_equal(tl->n, tl->acked + 1);
	const op *o = &tl->ops[tl->acked];
	assert_true(o->seq == w->o.seq);
	tl->acked++;
	/* Versions handed out while the writer ran. */
	mctx *c = &rl->acked.c[o->ctx];
	if (o->kind == OP_CREATE)
		assert_int_equal(w->version, 1);
	else if (o->ctx >= SHARED && is_commit(o))
		assert_int_equal(w->version, c->version + 1); /* its owner's alone */
	else if (is_commit(o)) {
		/* Shared: acknowledgements of different threads arrive in any order,
		 * but each thread's own grow, and all are new. */
		uint64_t *last = &rl->last_shared_version[w->thread][o->ctx];
		assert_true(w->version > *last && w->version > rl->base_version[o->ctx]);
		*last = w->version;
		int s = o->ctx;
		if (rl->nsv[s] == rl->capsv[s]) {
			rl->capsv[s] = rl->capsv[s] ? 2 * rl->capsv[s] : 256;
			rl->shared_versions[s] =
			    realloc(rl->shared_versions[s], rl->capsv[s] * sizeof(uint64_t));
			assert_non_null(rl->shared_versions[s]);
		}
		rl->shared_versions[s][rl->nsv[s]++] = w->version;
	}
	apply_op(&rl->acked, w->thread, o);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Each shared version was acknowledged to one commit only. */
static void check_shared_versions_unique(run_log *rl)
{
	for (int s = 0; s < SHARED; s++) {
		if (rl->nsv[s] > 1)
			qsort(rl->shared_versions[s], rl->nsv[s], sizeof(uint64_t), cmp_u64);
		for (size_t i = 1; i < rl->nsv[s]; i++)
			if (rl->shared_versions[s][i] == rl->shared_versions[s][i - 1])
				fail_msg("version %" PRIu64 " of shared-%d acknowledged twice",
				         rl->shared_versions[s][i], s);
	}
}

/* ---- the checker (a forked child) ---------------------------------------------------- */

/* Counters the checker leaves for the parent (shared memory). */
typedef struct crash_stats {
	long iterations;
	long acked;          /* acknowledged operations */
	long inflight;       /* operations in flight at the kill */
	long inflight_found; /* of which recovery kept */
	long acked_lost;     /* acknowledged but not recovered (batch only) */
	long torn;           /* iterations where recovery cut a torn tail */
} crash_stats;

typedef struct shared_area {
	model base; /* the state before the iteration, after the last check */
	crash_stats stats;
} shared_area;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "crash check failed: " __VA_ARGS__);                       \
			fprintf(stderr, "\n");                                                     \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)

/* Read every context of s into m; check that nothing unknown is there. */
static int read_store(ctx_store *s, model *m, uint64_t *keys_out)
{
	memset(m, 0, sizeof(*m));
	uint64_t keys = 0, revs[NCTX];
	size_t nrevs = 0;
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	for (int c = 0; c < NCTX; c++) {
		char id[32], name[32];
		ctx_name(c, id, sizeof(id));
		ctx_state *st = NULL;
		ctx_status r = ctx_get(s, id, &st);
		if (r == CTX_NOT_FOUND)
			continue;
		CHECK(r == CTX_OK, "ctx_get(%s): %s", id, ctx_strerror(r));
		mctx *mc = &m->c[c];
		mc->exists = true;
		mc->version = ctx_state_version(st);
		revs[nrevs++] = ctx_state_revision(st);
		CHECK(ctx_state_revision(st) <= stats.revision,
		      "%s has revision %" PRIu64 " above the store's %" PRIu64, id,
		      ctx_state_revision(st), stats.revision);
		size_t nk = 0, nm = 0;
		for (int t = 0; t < WRITERS; t++) {
			const void *v;
			size_t vl;
			for (int k = 0; k < KEYS; k++) {
				int kl = key_name(t, k, name);
				if (!ctx_state_lookup(st, name, (size_t)kl, &v, &vl))
					continue;
				CHECK(tag_of(v, vl, &mc->val[t][k]),
				      "%s/%s holds a value never written", id, name);
				nk++;
			}
			int ml = meta_name(t, name);
			if (ctx_state_meta(st, name, (size_t)ml, &v, &vl)) {
				CHECK(tag_of(v, vl, &mc->meta[t]),
				      "%s meta %s holds a value never written", id, name);
				nm++;
			}
			if (c >= SHARED && t != (c - SHARED) / PRIVATE) {
				bool any = mc->meta[t] != 0;
				for (int k = 0; k < KEYS; k++)
					any |= mc->val[t][k] != 0;
				CHECK(!any, "%s holds keys of thread %d", id, t);
			}
		}
		CHECK(ctx_state_count(st) == nk, "%s has %zu keys, %zu of them known", id,
		      ctx_state_count(st), nk);
		CHECK(ctx_state_meta_count(st) == nm, "%s has %zu metadata entries, %zu known", id,
		      ctx_state_meta_count(st), nm);
		keys += nk;
		ctx_state_release(st);
	}
	size_t live = 0;
	for (int c = 0; c < NCTX; c++)
		live += m->c[c].exists;
	CHECK(ctx_count(s) == live, "%zu contexts, %zu known", ctx_count(s), live);
	if (nrevs > 1)
		qsort(revs, nrevs, sizeof(uint64_t), cmp_u64);
	for (size_t i = 1; i < nrevs; i++)
		CHECK(revs[i] != revs[i - 1], "two contexts at revision %" PRIu64, revs[i]);
	*keys_out = keys;
	return 0;
}

/* Does m look like obs from thread t's side? */
static bool view_equal(const model *m, const model *obs, int t)
{
	for (int s = 0; s < SHARED; s++)
		if (memcmp(m->c[s].val[t], obs->c[s].val[t], sizeof(m->c[s].val[t])) != 0 ||
		    m->c[s].meta[t] != obs->c[s].meta[t])
			return false;
	for (int j = 0; j < PRIVATE; j++) {
		const mctx *a = &m->c[private_ctx(t, j)], *b = &obs->c[private_ctx(t, j)];
		if (a->exists != b->exists)
			return false;
		if (a->exists && (a->version != b->version || a->meta[t] != b->meta[t] ||
		                  memcmp(a->val[t], b->val[t], sizeof(a->val[t])) != 0))
			return false;
	}
	return true;
}

static void print_view(const char *label, const model *m, int t)
{
	fprintf(stderr, "  %s:", label);
	for (int s = 0; s < SHARED; s++) {
		fprintf(stderr, " shared-%d[", s);
		for (int k = 0; k < KEYS; k++)
			fprintf(stderr, "%" PRIx64 "%s", m->c[s].val[t][k],
			        k + 1 < KEYS ? " " : "");
		fprintf(stderr, " m=%" PRIx64 "]", m->c[s].meta[t]);
	}
	for (int j = 0; j < PRIVATE; j++) {
		const mctx *c = &m->c[private_ctx(t, j)];
		if (!c->exists) {
			fprintf(stderr, " p%d[absent]", j);
			continue;
		}
		fprintf(stderr, " p%d[v%" PRIu64 ":", j, c->version);
		for (int k = 0; k < KEYS; k++)
			fprintf(stderr, " %" PRIx64, c->val[t][k]);
		fprintf(stderr, " m=%" PRIx64 "]", c->meta[t]);
	}
	fprintf(stderr, "\n");
}

/* Candidate prefixes kept per thread: those that match, one per distinct
 * count of shared commits (a put and a delete of the same shared key give
 * the same view with two more commits). */
#define MAXJ 32

static int check_store(const char *dir, shared_area *sh, const run_log *rl, bool exact)
{
	const model *base = &sh->base;
	ctx_verify_report rep;
	ctx_status st = ctx_verify(dir, &rep);
	CHECK(st == CTX_OK, "ctx_verify: %s: %s", ctx_strerror(st), rep.message);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	st = ctx_open(&o, &s);
	CHECK(st == CTX_OK, "ctx_open: %s: %s", ctx_strerror(st), ctx_last_error());
	model obs;
	uint64_t keys;
	if (read_store(s, &obs, &keys))
		return 1;
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	CHECK(rep.contexts == ctx_count(s) && rep.keys == keys &&
	          rep.last_revision == stats.revision,
	      "verify saw %zu contexts, %" PRIu64 " keys, revision %" PRIu64 "; open %zu, %" PRIu64
	      ", %" PRIu64,
	      rep.contexts, rep.keys, rep.last_revision, ctx_count(s), keys, stats.revision);

	/* For each thread, the prefixes of its operations that match. */
	size_t nj[WRITERS];
	uint64_t delta[WRITERS][MAXJ][SHARED];
	size_t chosen[WRITERS][MAXJ];
	for (int t = 0; t < WRITERS; t++) {
		const thread_log *tl = &rl->t[t];
		size_t lo = exact ? tl->acked : 0, hi = tl->n;
		model m = *base;
		uint64_t d[SHARED] = {0};
		nj[t] = 0;
		for (size_t j = 0; j <= hi; j++) {
			if (j >= lo && view_equal(&m, &obs, t)) {
				bool seen = false;
				for (size_t i = 0; i < nj[t] && !seen; i++)
					seen = memcmp(delta[t][i], d, sizeof(d)) == 0;
				CHECK(seen || nj[t] < MAXJ,
				      "thread %d: too many candidate prefixes", t);
				if (!seen) {
					memcpy(delta[t][nj[t]], d, sizeof(d));
					chosen[t][nj[t]++] = j;
				}
			}
			if (j == hi)
				break;
			const op *x = &tl->ops[j];
			apply_op(&m, t, x);
			if (x->ctx < SHARED && is_commit(x))
				d[x->ctx]++;
		}
		if (nj[t] == 0) {
			fprintf(
			    stderr,
			    "crash check failed: thread %d: recovered state is after none of its "
			    "first %zu..%zu operations (%zu acknowledged)\n",
			    t, lo, hi, tl->acked);
			print_view("recovered", &obs, t);
			m = *base;
			for (size_t j = 0; j < hi; j++) {
				if (j == lo)
					print_view("after the acknowledged ones", &m, t);
				apply_op(&m, t, &tl->ops[j]);
			}
			print_view("after all", &m, t);
			for (size_t j = lo > 3 ? lo - 3 : 0; j < hi; j++)
				fprintf(stderr,
				        "  op %zu: kind %d ctx %d keys %d tag %" PRIx64 "\n", j,
				        tl->ops[j].kind, tl->ops[j].ctx, tl->ops[j].nkeys,
				        tl->ops[j].seq);
			return 1;
		}
	}
	/* The shared versions: some combination of the prefixes counts them. */
	bool found = false;
	size_t pick[WRITERS] = {0};
	size_t combos = 1;
	for (int t = 0; t < WRITERS; t++)
		combos *= nj[t];
	for (size_t n = 0; n < combos && !found; n++) {
		size_t x = n;
		for (int t = 0; t < WRITERS; t++) {
			pick[t] = x % nj[t];
			x /= nj[t];
		}
		bool ok = true;
		for (int sc = 0; sc < SHARED && ok; sc++) {
			uint64_t v = base->c[sc].version;
			for (int t = 0; t < WRITERS; t++)
				v += delta[t][pick[t]][sc];
			ok = obs.c[sc].exists && obs.c[sc].version == v;
		}
		found = ok;
	}
	if (!found) {
		for (int sc = 0; sc < SHARED; sc++)
			fprintf(stderr,
			        "  shared-%d: version %" PRIu64 " before, %" PRIu64 " now\n", sc,
			        base->c[sc].version, obs.c[sc].version);
		for (int t = 0; t < WRITERS; t++)
			fprintf(stderr, "  thread %d: prefix %zu adds %" PRIu64 ", %" PRIu64 "\n",
			        t, chosen[t][0], delta[t][0][0], delta[t][0][1]);
		CHECK(false, "shared versions do not count the recovered commits");
	}
	for (int t = 0; t < WRITERS; t++) {
		size_t j = chosen[t][pick[t]];
		sh->stats.acked += (long)rl->t[t].acked;
		if (rl->t[t].n > rl->t[t].acked) {
			sh->stats.inflight++;
			sh->stats.inflight_found += j > rl->t[t].acked;
		}
		if (j < rl->t[t].acked)
			sh->stats.acked_lost += (long)(rl->t[t].acked - j);
	}
	sh->stats.torn += rep.torn_bytes > 0;
	sh->stats.iterations++;
	sh->base = obs;

	ctx_close(s);
	st = ctx_verify(dir, &rep);
	CHECK(st == CTX_OK && rep.torn_bytes == 0 && rep.last_revision == stats.revision,
	      "verify after a clean close: %s, %" PRIu64 " torn bytes, revision %" PRIu64,
	      rep.message, rep.torn_bytes, rep.last_revision);
	return 0;
}

/* ---- the loop ------------------------------------------------------------------------ */

/* How a forked child ends: exit(), so that ASan builds check it for leaks.
 * (TSan would sleep a second in every exit of a process with threads, to
 * catch races at exit: not in this test, whose children exit by hundreds.) */
static _Noreturn void child_exit(int code)
{
	exit(code);
}

#ifdef TSAN_BUILD
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "atexit_sleep_ms=0";
}
#endif

static pid_t fork_flushed(void)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	return pid;
}

static void wait_ok(pid_t pid, const char *what)
{
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s failed (status 0x%x)", what, status);
}

static int init_main(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *s = NULL;
	if (ctx_open(&o, &s) != CTX_OK)
		return 1;
	for (int c = 0; c < SHARED; c++) {
		char id[32];
		ctx_name(c, id, sizeof(id));
		if (ctx_create(s, id) != CTX_OK)
			return 1;
	}
	ctx_close(s);
	return 0;
}

typedef struct loop_cfg {
	const char *name;
	ctx_durability mode;
	bool power_loss;
	long min_iters, max_iters;
	double budget_s;
} loop_cfg;

static void crash_loop(const loop_cfg *cfg)
{
	uint64_t seed = test_seed(cfg->name, 0xc0ffee + (uint64_t)cfg->mode * 77 + cfg->power_loss);
	uint64_t r = seed;
	char *dir = test_make_dir(cfg->name);
	shared_area *sh =
	    mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	pid_t pid = fork_flushed();
	if (pid == 0)
		child_exit(init_main(dir));
	wait_ok(pid, "creating the store");
	for (int c = 0; c < SHARED; c++) {
		sh->base.c[c].exists = true;
		sh->base.c[c].version = 1;
	}

	static run_log rl;
	memset(&rl, 0, sizeof(rl));
	double start = test_now();
	long it = 0;
	for (; it < cfg->max_iters; it++) {
		if (it >= cfg->min_iters && test_now() - start > cfg->budget_s)
			break;
		uint64_t wseed = test_rand(&r);
		unsigned delay_us = 1000 + (unsigned)test_rand_below(&r, 50000);
		run_log_reset(&rl, &sh->base);
		int p[2];
		assert_int_equal(pipe(p), 0);
		if (cfg->power_loss)
			assert_true(vfs_sim_enable());
		pid = fork_flushed();
		if (pid == 0) {
			close(p[0]);
			writer_main(dir, p[1], &sh->base, wseed, (uint32_t)it, cfg->mode);
		}
		close(p[1]);
		/* Collect until the moment of the kill, then what is left. */
		double kill_at = test_now() + delay_us / 1e6;
		static unsigned char buf[64 * sizeof(wire)];
		size_t have = 0;
		bool killed = false, eof = false;
		/* Every fourth iteration counts its delay from the writer's first
		 * acknowledgement (within 60 s), so that a slow start (sanitizers on a
		 * loaded machine) still leaves acknowledged operations to check. */
		bool from_first = it % 4 == 3;
		if (from_first)
			kill_at = test_now() + 60.0;
		while (!eof) {
			if (from_first && rl_messages(&rl)) {
				kill_at = test_now() + delay_us / 1e6;
				from_first = false;
			}
			double left = kill_at - test_now();
			if (!killed && left <= 0) {
				assert_int_equal(kill(pid, SIGKILL), 0);
				killed = true;
			}
			struct pollfd pf = {p[0], POLLIN, 0};
			int timeout = killed ? -1 : (int)(left * 1000) + 1;
			int n = poll(&pf, 1, timeout);
			if (n < 0 && errno == EINTR)
				continue;
			assert_true(n >= 0);
			if (n == 0)
				continue;
			ssize_t got = read(p[0], buf + have, sizeof(buf) - have);
			if (got < 0 && errno == EINTR)
				continue;
			assert_true(got >= 0);
			if (got == 0) {
				eof = true; /* (the writer died early: a FAIL says why) */
				break;
			}
			have += (size_t)got;
			size_t whole = have / sizeof(wire) * sizeof(wire);
			for (size_t off = 0; off < whole; off += sizeof(wire)) {
				wire w;
				memcpy(&w, buf + off, sizeof(w));
				take_wire(&rl, &w);
			}
			memmove(buf, buf + whole, have - whole);
			have -= whole;
		}
		close(p[0]);
		if (!killed)
			kill(pid, SIGKILL);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (rl.fail[0])
			fail_msg("iteration %ld: %s", it, rl.fail);
		if (!WIFSIGNALED(status))
			fail_msg("iteration %ld: the writer exited (status 0x%x) instead of being "
			         "killed",
			         it, status);
		check_shared_versions_unique(&rl);
		if (cfg->power_loss) {
			static const unsigned how[4] = {VFS_SIM_CUT, VFS_SIM_TEAR, VFS_SIM_PAGES,
			                                VFS_SIM_PAGES};
			vfs_sim_crash_with(how[test_rand_below(&r, 4)], (unsigned)test_rand(&r));
			vfs_sim_disable();
		}
		pid = fork_flushed();
		if (pid == 0)
			child_exit(check_store(dir, sh, &rl, cfg->mode == CTX_DURABILITY_ALWAYS));
		int cs;
		assert_int_equal(waitpid(pid, &cs, 0), pid);
		if (!WIFEXITED(cs) || WEXITSTATUS(cs) != 0)
			fail_msg("%s: iteration %ld (seed %llu, kill after %u us) failed the check "
			         "(status 0x%x); the directory is kept: %s",
			         cfg->name, it, (unsigned long long)seed, delay_us, cs, dir);
	}
	const crash_stats *cs = &sh->stats;
	print_message("%s: %ld iterations in %.1f s: %ld operations acknowledged, %ld in flight "
	              "at the kill (%ld of them recovered), %ld acknowledged lost, %ld torn tails "
	              "cut\n",
	              cfg->name, cs->iterations, test_now() - start, cs->acked, cs->inflight,
	              cs->inflight_found, cs->acked_lost, cs->torn);
	assert_int_equal(cs->iterations, it);
	assert_true(it >= cfg->min_iters);
	if (cfg->mode == CTX_DURABILITY_ALWAYS)
		assert_int_equal(cs->acked_lost, 0);
	assert_true(cs->acked > 0);
	run_log_free(&rl);
	munmap(sh, sizeof(*sh));
	test_remove_dir(dir);
	free(dir);
}

static long env_long(const char *name, long fallback)
{
	const char *e = getenv(name);
	return e && atol(e) > 0 ? atol(e) : fallback;
}

static void test_kill9_loop(void **unused)
{
	long n = env_long("CTX_CRASH_ITERATIONS", 0);
	loop_cfg cfg = {"crash-kill9",
	                CTX_DURABILITY_ALWAYS,
	                false,
	                n           ? n
	                : SANITIZED ? 20
	                            : 100,
	                n ? n : (SANITIZED ? 80 : 150) * test_scale(),
	                (SANITIZED ? 25.0 : 20.0) * test_scale()};
	crash_loop(&cfg);
}

static void test_power_loss_always(void **unused)
{
	long n = env_long("CTX_CRASH_ITERATIONS", 0);
	loop_cfg cfg = {"crash-power-always",
	                CTX_DURABILITY_ALWAYS,
	                true,
	                n ? n / 2 + 1 : 20,
	                n ? n / 2 + 1 : (SANITIZED ? 40 : 60) * test_scale(),
	                (SANITIZED ? 10.0 : 8.0) * test_scale()};
	crash_loop(&cfg);
}

static void test_power_loss_batch(void **unused)
{
	long n = env_long("CTX_CRASH_ITERATIONS", 0);
	loop_cfg cfg = {"crash-power-batch",
	                CTX_DURABILITY_BATCH,
	                true,
	                n ? n / 2 + 1 : 20,
	                n ? n / 2 + 1 : (SANITIZED ? 40 : 60) * test_scale(),
	                (SANITIZED ? 10.0 : 8.0) * test_scale()};
	crash_loop(&cfg);
}

/* ---- a crash right after a checkpoint that raced with drops and re-creates ----------- */

typedef struct churner {
	ctx_store *s;
	atomic_bool stop;
	atomic_long cycles;
	ctx_status err;
	char msg[256];
} churner;

/* Drop, re-create and write the same id again and again (so that it nearly
 * always exists, each time as a new incarnation); write another context. */
static void *churn_main(void *arg)
{
	churner *c = arg;
	for (long n = 0; !atomic_load(&c->stop); n++) {
		ctx_status st = n ? ctx_drop(c->s, "x") : CTX_OK;
		if (st == CTX_OK)
			st = ctx_create(c->s, "x");
		if (st == CTX_OK)
			st = ctx_put(c->s, "x", "k", 1, &n, sizeof(n), NULL);
		if (st == CTX_OK)
			st = ctx_put(c->s, "y", "n", 1, &n, sizeof(n), NULL);
		if (st != CTX_OK) {
			c->err = st;
			snprintf(c->msg, sizeof(c->msg), "%s", ctx_last_error());
			return NULL;
		}
		atomic_fetch_add(&c->cycles, 1);
		if (n % 4 == 3)
			usleep(200);
	}
	return NULL;
}

/* Copy the checkpoints, then the segments, of a live store: what a crash at
 * that moment leaves (segments only grow, and nothing is deleted meanwhile:
 * only this thread checkpoints). */
static void copy_live(const char *src, const char *dst)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd),
	         "rm -rf '%s' && mkdir '%s' && cp '%s'/ckpt-*.ckpt '%s'/ 2>/dev/null; "
	         "cp '%s'/wal-*.log '%s'/",
	         dst, dst, src, dst, src, dst);
	assert_int_equal(system(cmd), 0);
}

static void test_checkpoint_racing_recreate(void **unused)
{
	char *dir = test_make_dir("crash-recreate");
	char *img = test_make_dir("crash-recreate-img");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	o.batch_ms = 1;
	o.checkpoint_bytes = (size_t)1 << 40; /* only the explicit checkpoints */
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	assert_ok(ctx_create(s, "y"));
	churner ch = {.s = s};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, churn_main, &ch), 0);
	int images = SANITIZED ? 15 : 40;
	int failures = 0;
	char first[512] = "";
	for (int i = 0; i < images && ch.err == CTX_OK; i++) {
		while (atomic_load(&ch.cycles) < (long)(i + 1) * 5 && ch.err == CTX_OK)
			usleep(100);
		assert_ok(ctx_checkpoint(s));
		copy_live(dir, img);
		ctx_verify_report rep;
		ctx_status vst = ctx_verify(img, &rep);
		ctx_options io;
		ctx_options_init(&io);
		io.dir = img;
		ctx_store *r = NULL;
		ctx_status ost = ctx_open(&io, &r);
		assert_int_equal(vst, ost);
		if (ost != CTX_OK) {
			if (!failures++)
				snprintf(first, sizeof(first), "%s", ctx_last_error());
			continue;
		}
		/* A prefix of the history: x absent, or at version 1 or 2. */
		ctx_state *st = NULL;
		if (ctx_get(r, "x", &st) == CTX_OK) {
			uint64_t v = ctx_state_version(st);
			assert_true(v == 1 || v == 2);
			assert_int_equal(ctx_state_count(st), v - 1);
			ctx_state_release(st);
		}
		assert_ok(ctx_get(r, "y", &st));
		assert_int_equal(ctx_state_count(st), ctx_state_version(st) > 1 ? 1 : 0);
		ctx_state_release(st);
		ctx_close(r);
	}
	atomic_store(&ch.stop, true);
	pthread_join(th, NULL);
	if (ch.err != CTX_OK)
		fail_msg("churn: %s: %s", ctx_strerror(ch.err), ch.msg);
	ctx_close(s);
	print_message("recreate race: %d of %d crash images failed to open\n", failures, images);
	if (failures)
		fail_msg("%d of %d crash images taken after a checkpoint do not open; first: %s",
		         failures, images, first);
	test_remove_dir(img);
	test_remove_dir(dir);
	free(img);
	free(dir);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kill9_loop),
	    cmocka_unit_test(test_power_loss_always),
	    cmocka_unit_test(test_power_loss_batch),
	    /* last: it runs libctx in this process, the others fork */
	    cmocka_unit_test(test_checkpoint_racing_recreate),
	};
	if (getenv("CTX_TEST_FILTER")) /* run only the tests matching it */
		cmocka_set_test_filter(getenv("CTX_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
