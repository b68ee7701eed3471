/*
 * churnread.c (ctxchurnread) - one-key reads of a small store, fresh or after churn.
 *
 *   ctxchurnread CHURN_ROUNDS [THREADS]
 *
 * Churn: THREADS threads each create contexts of 4 keys and update them
 * (a memory-only store of ~CHURN_CTX contexts), then the store is closed;
 * CHURN_ROUNDS times. Then a new memory-only store is loaded with 1,000
 * contexts x 16 keys x 64 B (as ctxbench's read cell) and read one random
 * key at a time; prints ns of thread CPU time per read (robust to other
 * processes on the machine, unlike wall time).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctx.h"

#define OK(e)                                                                                      \
	do {                                                                                       \
		ctx_status s_ = (e);                                                               \
		if (s_ != CTX_OK) {                                                                \
			fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, ctx_strerror(s_),    \
			        ctx_last_error());                                                 \
			abort();                                                                   \
		}                                                                                  \
	} while (0)
#define CHURN_CTX 200000
#define READS     4000000

static ctx_store *st;
static int nthreads = 4;
static pthread_barrier_t bar;

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *churn(void *arg)
{
	long t = (long)arg;
	char id[64], key[32], val[70];
	memset(val, 'v', sizeof(val));
	uint64_t r = 0x9e3779b97f4a7c15ull * (t + 1);
	for (long i = t; i < CHURN_CTX; i += nthreads) {
		snprintf(id, sizeof(id), "churn-%ld", i);
		OK(ctx_create(st, id));
		for (int k = 0; k < 4; k++) {
			snprintf(key, sizeof(key), "key-%d", k);
			OK(ctx_put(st, id, key, strlen(key), val, sizeof(val), NULL));
		}
	}
	pthread_barrier_wait(&bar);
	for (long i = 0; i < CHURN_CTX; i++) {
		long c = (long)(rnd(&r) % CHURN_CTX);
		snprintf(id, sizeof(id), "churn-%ld", c);
		snprintf(key, sizeof(key), "key-%d", (int)(rnd(&r) % 4));
		OK(ctx_put(st, id, key, strlen(key), val, sizeof(val), NULL));
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 1;
	if (argc > 2)
		nthreads = atoi(argv[2]);
	if (rounds < 0 || nthreads < 1 || nthreads > 64) {
		fprintf(stderr, "usage: ctxchurnread CHURN_ROUNDS [THREADS 1..64]\n");
		return 2;
	}
	ctx_options o;
	ctx_options_init(&o);
	o.max_contexts = 10u * 1000 * 1000;
	for (int r = 0; r < rounds; r++) {
		OK(ctx_open(&o, &st));
		pthread_t th[64];
		pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
		for (long t = 0; t < nthreads; t++)
			pthread_create(&th[t], NULL, churn, (void *)t);
		for (int t = 0; t < nthreads; t++)
			pthread_join(th[t], NULL);
		ctx_close(st);
	}
	OK(ctx_open(&o, &st));
	char id[64], key[32], val[64];
	memset(val, 'x', sizeof(val));
	for (int c = 0; c < 1000; c++) {
		snprintf(id, sizeof(id), "ctx-%04d", c);
		OK(ctx_create(st, id));
		ctx_txn *x;
		OK(ctx_txn_begin(st, id, &x));
		for (int k = 0; k < 16; k++) {
			snprintf(key, sizeof(key), "key-%02d", k);
			OK(ctx_txn_put(x, key, strlen(key), val, sizeof(val)));
		}
		OK(ctx_txn_commit(x, 0, NULL));
	}
	static char ids[1000][16], keys[16][8];
	for (int c = 0; c < 1000; c++)
		snprintf(ids[c], sizeof(ids[c]), "ctx-%04d", c);
	for (int k = 0; k < 16; k++)
		snprintf(keys[k], sizeof(keys[k]), "key-%02d", k);
	uint64_t r = 88172645463325252ull;
	char buf[128];
	size_t vlen;
	double best = 1e9;
	for (int rep = 0; rep < 5; rep++) {
		double t0 = cpu_now();
		for (int i = 0; i < READS; i++) {
			uint64_t x = rnd(&r);
			const char *k = keys[(x >> 20) % 16];
			OK(ctx_get_value(st, ids[x % 1000], k, 6, buf, sizeof(buf), &vlen));
		}
		double ns = (cpu_now() - t0) * 1e9 / READS;
		if (ns < best)
			best = ns;
	}
	printf("churn rounds %d threads %d: %.1f ns CPU per read (best of 5)\n", rounds, nthreads,
	       best);
	ctx_close(st);
	return 0;
}
