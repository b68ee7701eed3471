/*
 * recarve.c (ctxrecarve) - a store grown again on slab chunks given back.
 *
 *   ctxrecarve [CONTEXTS]
 *
 * A memory-only store of CONTEXTS (default 100,000) contexts of 16 keys x
 * 100 B, each created in one commit on one thread, is closed; its emptied
 * chunks are given back at once (pool_slab_set_decay(0, 0): what the 10 s
 * decay does to a long-running process's idle memory); a second store of
 * the same contexts is created. Prints the process's CPU seconds of each
 * store's creates (the collapser threads included) and the MiB given
 * back (round 21, r21-recarve: before it, the second store paid 4 KiB
 * first touches and collapse copies on every chunk given back).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctx.h"
#include "pool.h"

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Create n contexts in a new store, close it; the CPU seconds of the creates. */
static double fill(size_t n)
{
	ctx_options o;
	ctx_options_init(&o);
	o.max_contexts = 10u * 1000 * 1000;
	ctx_store *s;
	if (ctx_open(&o, &s) != CTX_OK) {
		fprintf(stderr, "ctx_open: %s\n", ctx_last_error());
		exit(1);
	}
	char val[100], id[32], key[16];
	memset(val, 'v', sizeof(val));
	double c0 = cpu_s();
	for (size_t i = 0; i < n; i++) {
		ctx_txn *t;
		snprintf(id, sizeof(id), "ctx%zu", i);
		ctx_status st = ctx_txn_begin_create(s, id, &t);
		for (int k = 0; st == CTX_OK && k < 16; k++) {
			snprintf(key, sizeof(key), "k%d", k);
			st = ctx_txn_put(t, key, strlen(key), val, sizeof(val));
		}
		st = st == CTX_OK ? ctx_txn_commit(t, 0, NULL) : (ctx_txn_abort(t), st);
		if (st != CTX_OK) {
			fprintf(stderr, "create %s: %s\n", id, ctx_strerror(st));
			exit(1);
		}
	}
	double c = cpu_s() - c0;
	ctx_close(s);
	return c;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 100000;
	double first = fill(n);
	pool_slab_set_decay(0, 0);
	size_t back = pool_slab_given_back();
	double second = fill(n);
	printf("first %.3f second %.3f given_back_mib %zu\n", first, second, back >> 20);
	return 0;
}
