/*
 * ckpttime.c - ctxckpttime: the CPU time of ctx_checkpoint (round 10,
 * r10-batch; docs/benchmarks.md).
 *
 * usage: ctxckpttime DIR [contexts=10000] [keys=100] [runs=7]
 *
 * Builds a store in DIR (which must not exist or be empty; durability batch,
 * no background checkpoint) of `contexts` contexts of `keys` keys each (24-byte
 * values), writes one checkpoint, then `runs` times commits one put and
 * times ctx_checkpoint: the process's and the calling thread's CPU time and
 * the wall time (file sync and read-back included), and prints each run and
 * the medians. Compare builds interleaved (A B A B ...): the machine is noisy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "ctx.h"

static double ms(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: ctxckpttime DIR [contexts] [keys] [runs]\n");
		return 2;
	}
	const char *dir = argv[1];
	long nc = argc > 2 ? atol(argv[2]) : 10000, nk = argc > 3 ? atol(argv[3]) : 100,
	     runs = argc > 4 ? atol(argv[4]) : 7;
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	o.checkpoint_bytes = (size_t)1 << 40;
	ctx_store *s;
	CHECK(ctx_open(&o, &s));
	char id[64], key[64], val[64];
	memset(val, 'v', sizeof(val));
	for (long c = 0; c < nc; c++) {
		snprintf(id, sizeof(id), "ctx-%08ld", c * 7919 % 1000003);
		ctx_txn *t;
		CHECK(ctx_txn_begin_create(s, id, &t));
		for (long k = 0; k < nk; k++) {
			int n =
			    snprintf(key, sizeof(key), "field:%ld", (k * 2654435761u) % 1000000);
			CHECK(ctx_txn_put(t, key, n, val, 24));
		}
		CHECK(ctx_txn_commit(t, 0, NULL));
	}
	CHECK(ctx_checkpoint(s));
	double *p = malloc(runs * sizeof(double)), *th = malloc(runs * sizeof(double)),
	       *w = malloc(runs * sizeof(double));
	for (long r = 0; r < runs; r++) {
		CHECK(ctx_put(s, "ctx-00000000", "x", 1, "y", 1, NULL));
		double p0 = ms(CLOCK_PROCESS_CPUTIME_ID), t0 = ms(CLOCK_THREAD_CPUTIME_ID),
		       w0 = ms(CLOCK_MONOTONIC);
		CHECK(ctx_checkpoint(s));
		p[r] = ms(CLOCK_PROCESS_CPUTIME_ID) - p0;
		th[r] = ms(CLOCK_THREAD_CPUTIME_ID) - t0;
		w[r] = ms(CLOCK_MONOTONIC) - w0;
		printf("run %ld: process %.1f ms  thread %.1f ms  wall %.1f ms\n", r, p[r], th[r],
		       w[r]);
	}
	qsort(p, runs, sizeof(double), cmpd);
	qsort(th, runs, sizeof(double), cmpd);
	qsort(w, runs, sizeof(double), cmpd);
	printf("median: process %.1f thread %.1f wall %.1f\n", p[runs / 2], th[runs / 2],
	       w[runs / 2]);
	ctx_close(s);
	return 0;
}
