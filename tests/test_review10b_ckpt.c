/*
 * test_review10b_ckpt.c - round 10's second review of checkpoint writing
 * (checkpoint.c's sort on an 8-byte key past the shared prefix, inline
 * version lists, versions released after their section), by random
 * adversarial contexts:
 *
 *   - keys over a tiny alphabet (0x00, 0x01, 'a', 0xfe, 0xff) of random
 *     lengths, so many are prefixes of each other and differ only in zero
 *     padding; keys with a long shared prefix (300 bytes) then two values of
 *     the byte after it and the same 8 bytes, so most sort keys tie; very
 *     long keys (up to 5,000 bytes) differing only near their end; keys of
 *     one byte;
 *   - several versions each (puts and deletes of random keys, metadata),
 *     points pinning some, so versions are full lists and deltas of every
 *     size around the insertion-sort bound;
 *   - each store is checkpointed and opened from that checkpoint alone (the
 *     read-back refuses a key out of order), and must show every context,
 *     kept version, pair, metadata entry and point as before.
 *
 * A checkpoint of several MB whose file write fails at its 1st, 2nd, 3rd
 * or 4th MB (each context's versions are released right after its
 * section: those written and those not yet must both be let go once, as
 * the ASan build checks) fails with CTX_IO and changes nothing; the next
 * one works and the store reopens the same.
 *
 * And, as a printed figure (no timed assertion): the CPU time of
 * ctx_checkpoint of one context of 200,000 keys, for plain keys, keys whose
 * sort keys mostly tie and keys sharing a long prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vfs.h"

#define HISTORY 6

static ctx_store *open_dir(const char *dir)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	o.history_depth = HISTORY;
	o.checkpoint_bytes = (size_t)1 << 40; /* only ctx_checkpoint writes one */
	return test_open(&o);
}

/* One key of family f into k (room for 6000 bytes). */
static size_t make_key(uint64_t *rng, unsigned f, unsigned char *k)
{
	static const unsigned char alpha[] = {0x00, 0x01, 'a', 0xfe, 0xff};
	size_t n = 0;
	switch (f) {
	case 0: /* tiny alphabet, lengths 1..12 */
		n = 1 + test_rand_below(rng, 12);
		for (size_t i = 0; i < n; i++)
			k[i] = alpha[test_rand_below(rng, sizeof(alpha))];
		break;
	case 1: /* long shared prefix, then mostly tied sort keys */
		memset(k, 'P', 300);
		k[300] = test_rand_below(rng, 2) ? 0x00 : 0xff;
		memcpy(k + 301, "\0\0\0\0\xff\xff\xff\xff", 8);
		n = 309 + test_rand_below(rng, 4);
		for (size_t i = 309; i < n; i++)
			k[i] = alpha[test_rand_below(rng, sizeof(alpha))];
		break;
	case 2: /* very long, differing only near the end */
		n = 4990 + test_rand_below(rng, 10);
		memset(k, 0xff, n);
		for (size_t i = n - 3; i < n; i++)
			k[i] = alpha[test_rand_below(rng, sizeof(alpha))];
		break;
	case 3: /* one byte */
		n = 1;
		k[0] = (unsigned char)test_rand_below(rng, 256);
		break;
	default: /* a mix of prefixes of each other: "x", "x\0", "x\0\0", ... */
		n = 1 + test_rand_below(rng, 20);
		k[0] = 'x';
		for (size_t i = 1; i < n; i++)
			k[i] = test_rand_below(rng, 4) ? 0x00 : alpha[test_rand_below(rng, 5)];
		break;
	}
	return n;
}

#define FAMILIES 6 /* 5: all families mixed */

static void build_context(ctx_store *s, uint64_t *rng, const char *id, unsigned family)
{
	static unsigned char k[6000];
	unsigned versions = 1 + (unsigned)test_rand_below(rng, 9);
	for (unsigned v = 0; v < versions; v++) {
		ctx_txn *t = NULL;
		assert_ok(v ? ctx_txn_begin(s, id, &t) : ctx_txn_begin_create(s, id, &t));
		/* sizes around 0, 1, 16, 17 and past */
		static const size_t sizes[] = {0, 1, 2, 15, 16, 17, 18, 33, 200, 1500};
		size_t ops = sizes[test_rand_below(rng, sizeof(sizes) / sizeof(*sizes))];
		for (size_t i = 0; i < ops; i++) {
			unsigned f = family == 5 ? (unsigned)test_rand_below(rng, 5) : family;
			size_t n = make_key(rng, f, k);
			char val[40];
			int vl = snprintf(val, sizeof(val), "v%u.%zu.%llu", v, i,
			                  (unsigned long long)test_rand(rng));
			if (v && test_rand_below(rng, 3) == 0)
				assert_ok(ctx_txn_del(t, k, n));
			else
				assert_ok(ctx_txn_put(t, k, n, val, (size_t)vl));
			if (test_rand_below(rng, 8) == 0)
				assert_ok(ctx_txn_meta_put(t, k, n < 200 ? n : 200, val, 1));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
		if (test_rand_below(rng, 3) == 0) {
			char label[16];
			snprintf(label, sizeof(label), "p%u", v);
			assert_ok(ctx_point_create(s, id, label, NULL));
		}
	}
}

/* Every context's kept versions (history, each version's pairs and
 * metadata in key order) and points. */
static char *dump_all(ctx_store *s, size_t nctx)
{
	test_buf b = {0};
	char *whole = test_dump_store(s, true, NULL);
	test_buf_add(&b, whole, strlen(whole));
	free(whole);
	for (size_t c = 0; c < nctx; c++) {
		char id[32];
		snprintf(id, sizeof(id), "r%zu", c);
		ctx_history_entry *h = NULL;
		size_t n = 0;
		assert_ok(ctx_history(s, id, &h, &n));
		test_buf_printf(&b, "%s: %zu versions\n", id, n);
		for (size_t j = 0; j < n; j++) {
			test_buf_printf(&b, "v%llu r%llu t%llu changed %zu%s\n",
			                (unsigned long long)h[j].version,
			                (unsigned long long)h[j].revision,
			                (unsigned long long)h[j].time_us, h[j].keys_changed,
			                h[j].pinned ? " pinned" : "");
			ctx_state *st = NULL;
			assert_ok(ctx_get_at(s, id, h[j].version, &st));
			for (int meta = 0; meta < 2; meta++) {
				ctx_iter_stack it;
				assert_ok(meta ? ctx_iter_meta_init(&it, st)
				               : ctx_iter_init(&it, st));
				const void *k, *v;
				size_t kl, vl;
				/* order-independent: a sum of hashes, and a count */
				uint64_t sum = 0, cnt = 0;
				while (ctx_iter_stack_next(&it, &k, &kl, &v, &vl)) {
					uint64_t x = 1469598103934665603ull;
					for (size_t i = 0; i < kl; i++)
						x = (x ^ ((const unsigned char *)k)[i]) *
						    1099511628211ull;
					x = (x ^ 0x1ff) * 1099511628211ull;
					for (size_t i = 0; i < vl; i++)
						x = (x ^ ((const unsigned char *)v)[i]) *
						    1099511628211ull;
					sum += x * 0x9E3779B97F4A7C15ull + (x >> 29);
					cnt++;
				}
				test_buf_printf(&b, " %s %llu %016llx\n", meta ? "meta" : "data",
				                (unsigned long long)cnt, (unsigned long long)sum);
			}
			ctx_state_release(st);
		}
		free(h);
		ctx_point *p = NULL;
		n = 0;
		assert_ok(ctx_point_list(s, id, &p, &n));
		test_buf_printf(&b, "%zu points\n", n);
		for (size_t j = 0; j < n; j++)
			test_buf_printf(&b, " v%llu t%llu keys %zu bytes %zu sum %llx '%s'\n",
			                (unsigned long long)p[j].version,
			                (unsigned long long)p[j].time_us, p[j].keys, p[j].bytes,
			                (unsigned long long)p[j].checksum, p[j].label);
		free(p);
	}
	return b.p;
}

static void test_random_round_trip(void **unused)
{
	(void)unused;
	uint64_t seed = test_seed("test_review10b_ckpt", 0x5eed10b);
	int rounds = test_scale() > 1 ? 12 : 4;
	for (int round = 0; round < rounds; round++) {
		uint64_t rng = seed + (uint64_t)round * 0x9E3779B97F4A7C15ull;
		char name[64];
		snprintf(name, sizeof(name), "r10b2-rand-%d", round);
		char *dir = test_make_dir(name);
		ctx_store *s = open_dir(dir);
		size_t nctx = 6 + test_rand_below(&rng, 10);
		for (size_t c = 0; c < nctx; c++) {
			char id[32];
			snprintf(id, sizeof(id), "r%zu", c);
			build_context(s, &rng, id, (unsigned)(c % FAMILIES));
		}
		char *want = dump_all(s, nctx);
		assert_ok(ctx_checkpoint(s));
		ctx_close(s);

		snprintf(name, sizeof(name), "r10b2-rand-%d-alone", round);
		char *work = test_checkpoint_alone(dir, name, NULL, NULL);
		s = open_dir(work);
		char *got = dump_all(s, nctx);
		test_expect_same_dump(want, got, "the checkpoint alone");
		free(got);
		/* Once more, from the loaded store. */
		assert_ok(ctx_put(s, "r0", "z", 1, "z", 1, NULL));
		free(want);
		want = dump_all(s, nctx);
		assert_ok(ctx_checkpoint(s));
		ctx_close(s);
		snprintf(name, sizeof(name), "r10b2-rand-%d-again", round);
		char *again = test_checkpoint_alone(work, name, NULL, NULL);
		s = open_dir(again);
		got = dump_all(s, nctx);
		test_expect_same_dump(want, got, "a checkpoint of the loaded store");
		ctx_close(s);
		free(got);
		free(want);
		test_remove_dir(again);
		test_remove_dir(work);
		test_remove_dir(dir);
		free(again);
		free(work);
		free(dir);
	}
}

static double thread_cpu(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Not a timed assertion: a printed figure, and the content checked. */
static void test_big_context_figure(void **unused)
{
	(void)unused;
	size_t n = test_scale() > 1 ? 200000 : 200000;
	static const char *const kinds[] = {"plain", "tied-windows", "long-prefix"};
	for (int kind = 0; kind < 3; kind++) {
		char name[64];
		snprintf(name, sizeof(name), "r10b2-big-%d", kind);
		char *dir = test_make_dir(name);
		ctx_store *s = open_dir(dir);
		ctx_txn *t = NULL;
		assert_ok(ctx_txn_begin_create(s, "big", &t));
		for (size_t i = 0; i < n; i++) {
			char k[128];
			int kl;
			if (kind == 0)
				kl = snprintf(k, sizeof(k), "key-%09zu", i);
			else if (kind == 1) /* two sort keys for all: the tie-break decides */
				kl = snprintf(k, sizeof(k), "%cSAMESAMESAME%09zu",
				              i & 1 ? 'a' : 'b', i);
			else
				kl = snprintf(k, sizeof(k), "%s%09zu",
				              "a-long-prefix-shared-by-every-key-of-this-context-",
				              i);
			assert_ok(ctx_txn_put(t, k, (size_t)kl, "v", 1));
		}
		assert_ok(ctx_txn_commit(t, 0, NULL));
		char *want = test_dump_store(s, true, NULL);
		double t0 = thread_cpu();
		assert_ok(ctx_checkpoint(s));
		double cpu = thread_cpu() - t0;
		print_message("ctx_checkpoint of %zu %s keys: %.3f s CPU (this thread)\n", n,
		              kinds[kind], cpu);
		ctx_close(s);
		snprintf(name, sizeof(name), "r10b2-big-%d-alone", kind);
		char *work = test_checkpoint_alone(dir, name, NULL, NULL);
		s = open_dir(work);
		char *got = test_dump_store(s, true, NULL);
		test_expect_same_dump(want, got, "the big context's checkpoint alone");
		ctx_close(s);
		free(got);
		free(want);
		test_remove_dir(work);
		test_remove_dir(dir);
		free(work);
		free(dir);
	}
}

static void test_write_fails_midway(void **unused)
{
	(void)unused;
	for (long nth = 2; nth <= 5; nth++) {
		char name[64];
		snprintf(name, sizeof(name), "r10b2-midway-%ld", nth);
		char *dir = test_make_dir(name);
		ctx_store *s = open_dir(dir);
		uint64_t rng = 77 + (uint64_t)nth;
		char val[200];
		memset(val, 'v', sizeof(val));
		for (int c = 0; c < 40; c++) {
			char id[32];
			snprintf(id, sizeof(id), "m%d", c);
			for (int v = 0; v < 6; v++) {
				ctx_txn *t = NULL;
				assert_ok(v ? ctx_txn_begin(s, id, &t)
				            : ctx_txn_begin_create(s, id, &t));
				for (int i = 0; i < (v ? 30 : 600); i++) {
					char k[32];
					int kl = snprintf(
					    k, sizeof(k), "k%llu",
					    (unsigned long long)test_rand_below(&rng, 2000));
					assert_ok(ctx_txn_put(t, k, (size_t)kl, val, sizeof(val)));
				}
				assert_ok(ctx_txn_commit(t, 0, NULL));
			}
			if (c % 3 == 0)
				assert_ok(ctx_point_create(s, id, "p", NULL));
		}
		char *want = test_dump_store(s, true, NULL);
		ctx_stats before, after;
		ctx_get_stats(s, &before);
		/* The log's own background writes are done first, so that the
		 * countdown counts the checkpoint's writes only (under load a
		 * batch write still in flight met the fault and failed the log).
		 * Write 1 is the log's new segment; 2 the checkpoint's first MB. */
		test_wait_durable(s);
		/* And only this thread's writes count (the zeroer preallocates
		 * the next segment in the background: one of its writes could
		 * take the fault meant for the checkpoint and fail the log). */
		atomic_store(&ctx_vfs_faults.fault_tid, (int)gettid());
		ctx_vfs_faults.write_errno = EIO;
		atomic_store(&ctx_vfs_faults.write_countdown, nth);
		ctx_status st = ctx_checkpoint(s);
		vfs_faults_reset();
		ctx_get_stats(s, &after);
		assert_int_equal(st, CTX_IO);
		assert_int_equal(after.checkpoints, before.checkpoints);
		assert_int_equal(after.io_errno, 0);
		char *got = test_dump_store(s, true, NULL);
		test_expect_same_dump(want, got, "after a failed checkpoint");
		free(got);
		assert_ok(ctx_checkpoint(s));
		ctx_close(s);
		snprintf(name, sizeof(name), "r10b2-midway-%ld-alone", nth);
		char *work = test_checkpoint_alone(dir, name, NULL, NULL);
		s = open_dir(work);
		got = test_dump_store(s, true, NULL);
		test_expect_same_dump(want, got, "the next checkpoint alone");
		ctx_close(s);
		free(got);
		free(want);
		test_remove_dir(work);
		test_remove_dir(dir);
		free(work);
		free(dir);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_random_round_trip),
	    cmocka_unit_test(test_write_fails_midway),
	    cmocka_unit_test(test_big_context_figure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
