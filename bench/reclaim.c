/*
 * reclaim.c - ctxreclaim: the latency of small commits right after a large
 * transaction's versions leave history (issue 9, item 11).
 *
 * A context of `keys` keys is rewritten whole by one transaction; the version
 * before it then owns every one of those leaves alone. The next
 * history_depth small commits push it out of history, and whoever releases
 * it frees `keys` leaves. Each round times every small commit (one put) made
 * after the big transaction, history_depth + 200 of them, and the report
 * gives the percentiles over all rounds. Memory-only store, so that the CPU
 * cost is measured, not the disk. Uses only include/ctx.h, so the same
 * program measures any version of the library.
 *
 *   ctxreclaim [keys (1000000)] [rounds (5)] [history_depth (64)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "ctx.h"

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Rewrite keys 0..n-1 of "c" in one transaction (values of generation gen). */
static void rewrite_all(ctx_store *s, long n, int gen)
{
	ctx_txn *t;
	CHECK(ctx_txn_begin(s, "c", &t));
	for (long i = 0; i < n; i++) {
		char k[24], v[24];
		int kl = snprintf(k, sizeof(k), "key-%010ld", i);
		int vl = snprintf(v, sizeof(v), "val-%d-%010ld", gen, i);
		CHECK(ctx_txn_put(t, k, (size_t)kl, v, (size_t)vl));
	}
	CHECK(ctx_txn_commit(t, 0, NULL));
}

int main(int argc, char **argv)
{
	long keys = argc > 1 ? atol(argv[1]) : 1000000;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	long depth = argc > 3 ? atol(argv[3]) : 64;
	long small = depth + 200;
	ctx_options o;
	ctx_options_init(&o);
	o.history_depth = (size_t)depth;
	ctx_store *s;
	CHECK(ctx_open(&o, &s));
	CHECK(ctx_create(s, "c"));
	rewrite_all(s, keys, 0);

	double *lat = malloc((size_t)(small * rounds) * sizeof(*lat));
	double *cut = malloc((size_t)rounds * sizeof(*cut));
	if (!lat || !cut)
		return 1;
	size_t n = 0;
	for (int r = 0; r < rounds; r++) {
		rewrite_all(s, keys, r + 1);
		cut[r] = 0;
		for (long i = 0; i < small; i++) {
			char v[24];
			int vl = snprintf(v, sizeof(v), "%d-%ld", r, i);
			double t0 = now_us();
			CHECK(ctx_put(s, "c", "small", 5, v, (size_t)vl, NULL));
			double dt = now_us() - t0;
			lat[n++] = dt;
			cut[r] = dt > cut[r] ? dt : cut[r]; /* the round's worst */
		}
	}
	qsort(lat, n, sizeof(*lat), cmp_double);
	qsort(cut, (size_t)rounds, sizeof(*cut), cmp_double);
	printf("keys %ld, rounds %d, history_depth %ld, %zu small commits timed\n", keys, rounds,
	       depth, n);
	printf("| p50 µs | p99 µs | p99.9 µs | max µs | worst commit of a round, median µs |\n");
	printf("|---:|---:|---:|---:|---:|\n");
	printf("| %.1f | %.1f | %.1f | %.1f | %.1f |\n", lat[n / 2], lat[n * 99 / 100],
	       lat[n * 999 / 1000], lat[n - 1], cut[rounds / 2]);
	free(lat);
	free(cut);
	ctx_close(s);
	return 0;
}
