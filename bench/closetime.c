/*
 * closetime.c - ctxclosetime: how long ctx_close takes on a big store
 * (round 16: ctxd took 26 s to stop with 1.5 GB at durability none).
 *
 * Fills one context of a memory-only store with `keys` random fields (as
 * redis-benchmark -t hset -r does: field "element:<random>", a 3-byte
 * value), `per` puts a commit, then times ctx_close (wall and process CPU)
 * and prints the resident memory before it. Uses only include/ctx.h, so the
 * same program measures any version of the library.
 *
 *   ctxclosetime [keys (2000000)] [per commit (1)] [contexts (1)] [exit]
 *
 * With "exit" it times ctx_close_at_exit instead (round 16).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "ctx.h"

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	long keys = argc > 1 ? atol(argv[1]) : 2000000;
	long per = argc > 2 ? atol(argv[2]) : 1;
	long nctx = argc > 3 ? atol(argv[3]) : 1;
	if (keys < 1 || per < 1 || nctx < 1) {
		fprintf(stderr, "usage: ctxclosetime [keys] [per commit] [contexts]\n");
		return 2;
	}
	ctx_options o;
	ctx_options_init(&o);
	o.durability = CTX_DURABILITY_NONE;
	ctx_store *s;
	CHECK(ctx_open(&o, &s));
	uint64_t x = 88172645463325252ull;
	double t0 = clock_s(CLOCK_MONOTONIC);
	for (long c = 0; c < nctx; c++) {
		char id[32];
		snprintf(id, sizeof(id), "ctx:%ld", c);
		CHECK(ctx_create(s, id));
		for (long done = 0; done < keys / nctx;) {
			ctx_txn *t;
			CHECK(ctx_txn_begin(s, id, &t));
			for (long i = 0; i < per && done < keys / nctx; i++, done++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				char k[32];
				int n = snprintf(k, sizeof(k), "element:%llu",
				                 (unsigned long long)(x % 10000000000ull));
				CHECK(ctx_txn_put(t, k, (size_t)n, "xxx", 3));
			}
			CHECK(ctx_txn_commit(t, 0, NULL));
		}
	}
	double t1 = clock_s(CLOCK_MONOTONIC);
	long rss = rss_kb();
	if (getenv("CLOSETIME_PAUSE")) { /* time to attach a profiler to the close */
		fprintf(stderr, "pid %ld: closing in %s s\n", (long)getpid(),
		        getenv("CLOSETIME_PAUSE"));
		sleep((unsigned)atoi(getenv("CLOSETIME_PAUSE")));
	}
	double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
	bool at_exit = argc > 4 && strcmp(argv[4], "exit") == 0;
	if (at_exit)
		ctx_close_at_exit(s);
	else
		ctx_close(s);
	double c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w1 = clock_s(CLOCK_MONOTONIC);
	printf("%s keys %ld per %ld contexts %ld load_s %.2f rss_mb %.0f close_wall_s %.3f "
	       "close_cpu_s %.3f rss_after_mb %.0f\n",
	       at_exit ? "ctx_close_at_exit" : "ctx_close", keys, per, nctx, t1 - t0, rss / 1024.0,
	       w1 - w0, c1 - c0, rss_kb() / 1024.0);
	return 0;
}
