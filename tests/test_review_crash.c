/*
 * test_review_crash.c - review probe (round 7): every acknowledged change
 * survives kill -9, under each durability mode, and what survives is a
 * prefix of the revision order with every transaction whole.
 *
 * A child process opens a store on a fresh directory and runs writer
 * threads; it tells the parent, through a pipe, of every change it decided
 * (context, sequence number, revision) and of every change it may
 * acknowledge: a waiting commit once it returned CTX_OK (durability
 * always), a nowait commit or drop once ctx_durable_revision covers its
 * revision. The parent kills it with SIGKILL at a pseudo-random moment,
 * drains the pipe (what is in it was written before the kill), reopens the
 * directory and checks:
 *   - every transaction is whole: keys a and b of a context hold the same
 *     sequence number;
 *   - durability always: every acknowledged commit is there (the
 *     context's sequence number is at least the acknowledged one), every
 *     acknowledged drop too (the context is absent, or created again
 *     after it), every acknowledged create;
 *   - every mode: the recovered state is a prefix of the revision order:
 *     with R the highest revision of any recovered context, every decided
 *     commit with a revision <= R is there.
 * Under batch a kill before the first flush may lose the creates of the
 * six contexts too (seen with the machine loaded to 20): allowed, as a
 * suffix of the revision order with nothing after it.
 * No timing is asserted: the kill moment only decides how much was
 * written.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define NCTX     6 /* contexts c0..c5, two per writer thread */
#define NWRITERS 3
#define DCTX     NCTX /* index of the create/put/drop context "d" */

enum rec_kind {
	DECIDED = 1,
	ACKED = 2,
	D_CREATE_ACK = 3,
	D_PUT_ACK = 4,
	D_DROP_ACK = 5,
	D_DROP_INTENT = 6
};

typedef struct msg {
	uint8_t kind;
	uint8_t ctx;
	uint64_t seq;
	uint64_t rev;
} msg;

typedef enum mode { M_ALWAYS, M_ALWAYS_NOWAIT, M_BATCH, M_BATCH_NOWAIT } mode;

static int out_fd;
static ctx_store *child_store;
static mode child_mode;

static void send_msg(uint8_t kind, unsigned ctx, uint64_t seq, uint64_t rev)
{
	msg m = {kind, (uint8_t)ctx, seq, rev};
	if (write(out_fd, &m, sizeof m) != (ssize_t)sizeof m)
		_exit(3);
}

static bool nowait_mode(void)
{
	return child_mode == M_ALWAYS_NOWAIT || child_mode == M_BATCH_NOWAIT;
}

/* Commits not yet acknowledged by a nowait writer. */
typedef struct pend {
	unsigned ctx;
	uint64_t seq, rev;
	uint8_t kind;
} pend;

typedef struct pend_q {
	pend q[256];
	size_t head, tail;
} pend_q;

static void ack_durable(pend_q *p, bool all)
{
	uint64_t d = 0;
	do {
		if (ctx_durable_revision(child_store, &d) != CTX_OK)
			_exit(4);
		while (p->head != p->tail && p->q[p->head % 256].rev <= d) {
			pend *e = &p->q[p->head++ % 256];
			send_msg(e->kind, e->ctx, e->seq, e->rev);
		}
	} while ((all || p->tail - p->head >= 200) && p->head != p->tail);
}

static void pend_add(pend_q *p, uint8_t kind, unsigned ctx, uint64_t seq, uint64_t rev)
{
	if (p->tail - p->head >= 200)
		ack_durable(p, false);
	p->q[p->tail++ % 256] = (pend){ctx, seq, rev, kind};
}

static void ctx_name(char *b, unsigned i)
{
	if (i == DCTX)
		strcpy(b, "d");
	else
		sprintf(b, "c%u", i);
}

static void *writer(void *arg)
{
	unsigned w = (unsigned)(uintptr_t)arg;
	pend_q pq = {0};
	for (uint64_t seq = 1;; seq++) {
		unsigned ci = w * 2 + (unsigned)(seq & 1);
		char id[8], val[32];
		ctx_name(id, ci);
		int vn = sprintf(val, "%" PRIu64, seq);
		ctx_txn *t;
		if (ctx_txn_begin(child_store, id, &t) != CTX_OK)
			_exit(5);
		if (ctx_txn_put(t, "a", 1, val, (size_t)vn) != CTX_OK ||
		    ctx_txn_put(t, "b", 1, val, (size_t)vn) != CTX_OK)
			_exit(5);
		uint64_t v = 0, rev = 0;
		if (nowait_mode()) {
			if (ctx_txn_commit_nowait(t, 0, &v, &rev) != CTX_OK)
				_exit(6);
			send_msg(DECIDED, ci, seq, rev);
			pend_add(&pq, ACKED, ci, seq, rev);
			ack_durable(&pq, false);
		} else {
			if (ctx_txn_commit(t, 0, &v) != CTX_OK)
				_exit(6);
			ctx_state *st;
			/* The commit returned, so its version is visible (always)
			 * or at least decided (batch): its revision. */
			if (ctx_get_at(child_store, id, v, &st) == CTX_OK) {
				rev = ctx_state_revision(st);
				ctx_state_release(st);
				send_msg(DECIDED, ci, seq, rev);
			}
			send_msg(ACKED, ci, seq, rev);
		}
	}
	return NULL;
}

/* Context "d": create, put x = seq, drop, over and over. */
static void *dropper(void *arg)
{
	(void)arg;
	pend_q pq = {0};
	for (uint64_t seq = 1;; seq++) {
		char val[32];
		int vn = sprintf(val, "%" PRIu64, seq);
		if (ctx_create(child_store, "d") != CTX_OK)
			_exit(7);
		send_msg(D_CREATE_ACK, DCTX, seq, 0);
		if (ctx_put(child_store, "d", "x", 1, val, (size_t)vn, NULL) != CTX_OK)
			_exit(7);
		send_msg(D_PUT_ACK, DCTX, seq, 0);
		send_msg(D_DROP_INTENT, DCTX, seq, 0); /* from here d may be gone */
		if (nowait_mode()) {
			uint64_t rev;
			if (ctx_drop_nowait(child_store, "d", &rev) != CTX_OK)
				_exit(7);
			pend_add(&pq, D_DROP_ACK, DCTX, seq, rev);
			ack_durable(&pq, false);
		} else {
			if (ctx_drop(child_store, "d") != CTX_OK)
				_exit(7);
			send_msg(D_DROP_ACK, DCTX, seq, 0);
		}
	}
	return NULL;
}

static void child_main(const char *dir, mode m, int fd)
{
	out_fd = fd;
	child_mode = m;
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	if (m == M_BATCH || m == M_BATCH_NOWAIT) {
		o.durability = CTX_DURABILITY_BATCH;
		o.batch_ms = 2;
	}
	o.checkpoint_bytes = 256 * 1024; /* checkpoints happen during the run too */
	if (ctx_open(&o, &child_store) != CTX_OK)
		_exit(2);
	for (unsigned i = 0; i < NCTX; i++) {
		char id[8];
		ctx_name(id, i);
		if (ctx_create(child_store, id) != CTX_OK)
			_exit(2);
	}
	send_msg(0, 0, 0, 0); /* ready */
	pthread_t th[NWRITERS + 1];
	for (unsigned w = 0; w < NWRITERS; w++)
		pthread_create(&th[w], NULL, writer, (void *)(uintptr_t)w);
	pthread_create(&th[NWRITERS], NULL, dropper, NULL);
	pthread_join(th[0], NULL);
	_exit(0);
}

typedef struct seen {
	msg *m;
	size_t n, cap;
} seen;

/* Read what the child wrote until `until` (wall µs, checked after each read;
 * 0 = until the pipe is empty and closed) or a poll of timeout_ms finds nothing. */
static void drain(int fd, seen *s, int timeout_ms, uint64_t until)
{
	struct pollfd p = {fd, POLLIN, 0};
	while (poll(&p, 1, timeout_ms) > 0) {
		if (s->n + 1024 > s->cap) {
			s->cap = s->cap ? 2 * s->cap : 8192;
			s->m = realloc(s->m, s->cap * sizeof(msg));
			assert_non_null(s->m);
		}
		ssize_t r = read(fd, s->m + s->n, 1024 * sizeof(msg));
		if (r <= 0)
			return;
		assert_int_equal(r % (ssize_t)sizeof(msg), 0);
		s->n += (size_t)r / sizeof(msg);
		if (until && test_wall_us() >= until)
			return;
	}
}

static uint64_t parse_seq(const void *v, size_t n)
{
	char b[32];
	assert_true(n > 0 && n < sizeof b);
	memcpy(b, v, n);
	b[n] = 0;
	return strtoull(b, NULL, 10);
}

/* The recovered sequence number and revision of each context. */
typedef struct got {
	bool present;
	uint64_t seq, rev;
} got;

static void check_recovered(const char *dir, mode m, const seen *s, int round)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_store *st;
	assert_ok(ctx_open(&o, &st));
	got g[NCTX + 1] = {{0}};
	uint64_t max_rev = 0;
	bool strict = m == M_ALWAYS || m == M_ALWAYS_NOWAIT;
	unsigned missing = NCTX; /* the first of c0..c5 not recovered */
	for (unsigned i = 0; i <= NCTX; i++) {
		char id[8];
		ctx_name(id, i);
		ctx_state *v;
		ctx_status r = ctx_get(st, id, &v);
		/* Created (one after the other, before "ready") by waiting
		 * creates: under always they are durable; under batch a kill
		 * before the first flush may lose them, but only as a suffix of
		 * the revision order (checked below). */
		if (i < NCTX && strict)
			assert_ok(r);
		if (r != CTX_OK) {
			assert_int_equal(r, CTX_NOT_FOUND);
			if (i < NCTX && missing == NCTX)
				missing = i;
			continue;
		}
		if (i < NCTX && missing < NCTX)
			fail_msg(
			    "round %d mode %d: c%u recovered, but c%u created before it is not",
			    round, m, i, missing);
		g[i].present = true;
		g[i].rev = ctx_state_revision(v);
		const void *a, *b;
		size_t an, bn;
		bool ha = ctx_state_lookup(v, i == DCTX ? "x" : "a", 1, &a, &an);
		bool hb = i == DCTX ? ha : ctx_state_lookup(v, "b", 1, &b, &bn);
		if (i != DCTX) {
			/* one transaction: both keys or none, the same value */
			assert_int_equal(ha, hb);
			if (ha) {
				assert_int_equal(an, bn);
				assert_memory_equal(a, b, an);
			}
		}
		g[i].seq = ha ? parse_seq(a, an) : 0;
		if (g[i].rev > max_rev)
			max_rev = g[i].rev;
		ctx_state_release(v);
	}
	if (missing < NCTX) {
		/* Nothing after the lost create: no writer's commit (they
		 * started after every create), no "d". */
		for (unsigned i = 0; i <= NCTX; i++)
			if (g[i].present && (g[i].seq != 0 || i == DCTX))
				fail_msg("round %d mode %d: c%u's create lost, yet %s%u holds seq "
				         "%" PRIu64,
				         round, m, missing, i == DCTX ? "d" : "c", i, g[i].seq);
		print_message("mode %d round %d: killed before the creates were flushed "
		              "(c%u on lost)\n",
		              m, round, missing);
	}
	uint64_t d_last_ack_seq = 0;
	uint8_t d_last_ack_kind = 0;
	uint64_t d_drop_intent = 0; /* the newest drop that may have happened */
	size_t acked = 0, decided = 0;
	for (size_t k = 0; k < s->n; k++) {
		const msg *x = &s->m[k];
		if (x->kind == DECIDED) {
			decided++;
			/* prefix of the revision order */
			if (x->rev <= max_rev && g[x->ctx].seq < x->seq)
				fail_msg("round %d mode %d: c%u recovered seq %" PRIu64
				         " rev %" PRIu64 ", but decided seq %" PRIu64
				         " rev %" PRIu64 " <= recovered max revision %" PRIu64
				         " is missing",
				         round, m, x->ctx, g[x->ctx].seq, g[x->ctx].rev, x->seq,
				         x->rev, max_rev);
		} else if (x->kind == ACKED) {
			acked++;
			if (strict && g[x->ctx].seq < x->seq)
				fail_msg("round %d mode %d: c%u acknowledged seq %" PRIu64
				         " lost (recovered %" PRIu64 ")",
				         round, m, x->ctx, x->seq, g[x->ctx].seq);
		} else if (x->kind == D_DROP_INTENT) {
			if (x->seq > d_drop_intent)
				d_drop_intent = x->seq;
		} else if (x->kind >= D_CREATE_ACK) {
			/* acks of "d" come in its own order: keep the last */
			if (x->seq > d_last_ack_seq ||
			    (x->seq == d_last_ack_seq && x->kind > d_last_ack_kind)) {
				d_last_ack_seq = x->seq;
				d_last_ack_kind = x->kind;
			}
		}
	}
	if (strict && d_last_ack_seq) {
		got *d = &g[DCTX];
		if (d_last_ack_kind == D_DROP_ACK) {
			/* dropped for good, or created again later */
			if (d->present && d->seq != 0 && d->seq <= d_last_ack_seq)
				fail_msg("round %d mode %d: d's drop of seq %" PRIu64
				         " acknowledged, yet d holds x = %" PRIu64,
				         round, m, d_last_ack_seq, d->seq);
		} else {
			if (!d->present && d_drop_intent < d_last_ack_seq)
				fail_msg("round %d mode %d: d's create/put of seq %" PRIu64
				         " acknowledged, d is absent",
				         round, m, d_last_ack_seq);
			/* present: the acknowledged put, or (after the drop that
			 * may have followed it) a new, still empty incarnation */
			bool recreated = d_drop_intent >= d_last_ack_seq && d->seq == 0;
			if (d->present && d_last_ack_kind == D_PUT_ACK && d->seq < d_last_ack_seq &&
			    !recreated)
				fail_msg("round %d mode %d: d's put of seq %" PRIu64
				         " acknowledged, d holds %" PRIu64,
				         round, m, d_last_ack_seq, d->seq);
		}
	}
	if (round == 0)
		print_message("mode %d round 0: %zu decided, %zu acknowledged commits checked; "
		              "recovered max revision %" PRIu64 "\n",
		              m, decided, acked, max_rev);
	ctx_close(st);
	ctx_verify_report rep;
	assert_ok(ctx_verify(dir, &rep));
}

static void crash_rounds(mode m, const char *name)
{
	uint64_t rng = test_seed(name, 0x5eed0007u + (uint64_t)m);
	int rounds = (int)test_iters(6, 3);
	for (int round = 0; round < rounds; round++) {
		char *dir = test_make_dir(name);
		char ms[16];
		snprintf(ms, sizeof ms, "%d", (int)m);
		int rfd;
		pid_t pid = test_spawn_child((const char *const[]){dir, ms, NULL}, &rfd);
		seen s = {0};
		/* wait for "ready", then let it run 20..220 ms */
		drain(rfd, &s, 5000, 1); /* one read */
		assert_true(s.n >= 1);
		uint64_t until = test_wall_us() + 20000 + test_rand_below(&rng, 200000);
		while (test_wall_us() < until)
			drain(rfd, &s, 5, until);
		int status = test_kill_child(pid);
		assert_true(WIFSIGNALED(status)); /* it did not fail on its own */
		drain(rfd, &s, 0, 0);
		close(rfd);
		check_recovered(dir, m, &s, round);
		free(s.m);
		test_remove_dir(dir);
		free(dir);
	}
}

static void test_crash_always(void **state)
{
	(void)state;
	crash_rounds(M_ALWAYS, "review_crash_always");
}

static void test_crash_always_nowait(void **state)
{
	(void)state;
	crash_rounds(M_ALWAYS_NOWAIT, "review_crash_nowait");
}

static void test_crash_batch(void **state)
{
	(void)state;
	crash_rounds(M_BATCH, "review_crash_batch");
}

static void test_crash_batch_nowait(void **state)
{
	(void)state;
	crash_rounds(M_BATCH_NOWAIT, "review_crash_batch_nowait");
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--child") == 0)
		child_main(argv[2], (mode)atoi(argv[3]), atoi(argv[4]));
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crash_always),
	    cmocka_unit_test(test_crash_always_nowait),
	    cmocka_unit_test(test_crash_batch),
	    cmocka_unit_test(test_crash_batch_nowait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
