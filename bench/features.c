/*
 * features.c - ctxfeatures: what recovery points, restore, diffs, watches and
 * trackers cost (issue 6's figures). Memory-only stores, so that the CPU cost
 * is measured, not the disk. Prints a Markdown table; medians of `reps` runs.
 *
 *   ctxfeatures [reps]
 *   ctxfeatures fanout [reps]   only the watch fan-out rows (default 5 reps)
 *   ctxfeatures fanout reps stop|resync|paced WATCHERS [SECONDS [WARM]]
 *                                one kind of fan-out run, `reps` times, one
 *                                line each (to profile); measured for SECONDS
 *                                (default 1) after WARM seconds of the same
 *                                load (default 0: from the first commit; a
 *                                WARM past the history's fill measures the
 *                                steady state, old events evicted)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np */
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
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

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static ctx_store *open_store(void)
{
	ctx_store *s;
	CHECK(ctx_open(NULL, &s));
	return s;
}

/* A context "c" of n keys (16-byte keys, 64-byte values), in transactions. */
static void fill(ctx_store *s, size_t n)
{
	char key[32], val[64];
	memset(val, 'v', sizeof(val));
	CHECK(ctx_create(s, "c"));
	for (size_t i = 0; i < n;) {
		ctx_txn *t;
		CHECK(ctx_txn_begin(s, "c", &t));
		for (size_t j = 0; j < 10000 && i < n; j++, i++) {
			int kl = snprintf(key, sizeof(key), "key-%011zu", i);
			CHECK(ctx_txn_put(t, key, (size_t)kl, val, sizeof(val)));
		}
		CHECK(ctx_txn_commit(t, 0, NULL));
	}
	/* Push the big fill versions out of history (64 versions by default):
	 * freeing them is a one-time cost that would land in the first
	 * measured commits. */
	for (int i = 0; i < 70; i++)
		CHECK(ctx_put(s, "c", "settle", 6, &i, sizeof(i), NULL));
}

/* µs for one point create + one restore of it, excluding the commit the
 * restore makes: measured as (point + restore) minus a plain one-key commit. */
static void points_and_restore(size_t keys, int reps)
{
	ctx_store *s = open_store();
	fill(s, keys);
	double point[64], restore[64], commit[64];
	for (int r = 0; r < reps; r++) {
		uint64_t v;
		double t0 = now_us();
		CHECK(ctx_point_create(s, "c", "p", &v));
		double t1 = now_us();
		CHECK(ctx_put(s, "c", "key-00000000001", 15, "changed", 7, NULL));
		double t2 = now_us();
		CHECK(ctx_restore(s, "c", v, NULL));
		double t3 = now_us();
		point[r] = t1 - t0;
		commit[r] = t2 - t1;
		restore[r] = t3 - t2;
	}
	printf("| point create, %zu keys | %.2f µs |\n", keys, median(point, reps));
	printf("| restore (a commit of 1 changed key), %zu keys | %.2f µs (a plain one-key commit: "
	       "%.2f µs) |\n",
	       keys, median(restore, reps), median(commit, reps));
	ctx_close(s);
}

/* µs for a diff of two versions that differ in 10 keys. */
static void diff_ten(size_t keys, int reps)
{
	ctx_store *s = open_store();
	fill(s, keys);
	double d[64];
	for (int r = 0; r < reps; r++) {
		ctx_state *a, *b;
		CHECK(ctx_get(s, "c", &a));
		ctx_txn *t;
		CHECK(ctx_txn_begin(s, "c", &t));
		for (int i = 0; i < 10; i++) {
			char key[32];
			int kl =
			    snprintf(key, sizeof(key), "key-%011zu", (size_t)(i * 7919 + r) % keys);
			CHECK(ctx_txn_put(t, key, (size_t)kl, "new", 3));
		}
		CHECK(ctx_txn_commit(t, 0, NULL));
		CHECK(ctx_get(s, "c", &b));
		double t0 = now_us();
		ctx_diff *df;
		CHECK(ctx_diff_states(a, b, &df));
		double t1 = now_us();
		if (ctx_diff_count(df) != 10) {
			fprintf(stderr, "diff found %zu changes, not 10\n", ctx_diff_count(df));
			exit(1);
		}
		ctx_diff_free(df);
		ctx_state_release(a);
		ctx_state_release(b);
		d[r] = t1 - t0;
	}
	printf("| diff of two versions differing in 10 keys, %zu keys | %.2f µs |\n", keys,
	       median(d, reps));
	ctx_close(s);
}

/* Commits per second on 8 contexts from 2 threads, with `watchers` watches
 * on the prefix draining their events in other threads.
 *
 * Three ways to run it (docs/benchmarks.md, "Round 4: watch fan-out"):
 *   - stop (the cell of rounds 2 and 3): writers at full speed; a watcher
 *     reads with ctx_watch_wait and does nothing when it lags. On 2 shared
 *     cores every watcher lags within milliseconds (it cannot read 64 x the
 *     writers' rate) and then sleeps: what is measured is the feed's cost
 *     to the writers with nobody reading.
 *   - resync: writers at full speed; on CTX_EVENT_LAGGED a watcher opens a
 *     new watch from the revision it missed (from now on if that is no
 *     longer held) and closes the old one, as ctx.h tells applications to,
 *     so all 64 keep reading for the whole run. They take CPU from the
 *     writers through the scheduler whatever a delivery costs.
 *   - paced: each writer commits in bursts of PACE_BURST every PACE_NS, a
 *     rate the 64 watchers can follow on 2 cores: they drain every event,
 *     sleeping between bursts, so every burst finds them asleep.
 * Besides the wall rate, each run measures the writers' commits per
 * CPU-second of their own threads (CLOCK_THREAD_CPUTIME_ID): the cost of
 * a commit to its writer, whoever else shares the cores. */
#define PACE_BURST 50
#define PACE_NS    1000000L /* 2 writers x 50 commits a ms: 100,000 a second */

typedef enum fan_mode { FAN_STOP, FAN_RESYNC, FAN_PACED } fan_mode;

/* The measured window of a fan-out run and the load before it (see the
 * usage at the top); the threads count from when `measuring` turns true. */
static double fan_run_s = 1, fan_warm_s = 0;
#define FAN_STEADY_WARM 2 /* s before the steady-state paced cell measures */
static atomic_bool measuring;

typedef struct wctx {
	ctx_store *s;
	atomic_bool *stop;
	int id;
	fan_mode mode;
	const char *name; /* the thread's name, for perf --sort comm */
	long ops;
	long events, lags;
	double cpu_s; /* the thread's CPU time */
} wctx;

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleep until t + ns (absolute, so that the pace does not drift). */
static void pace_next(struct timespec *t, long ns)
{
	t->tv_nsec += ns;
	while (t->tv_nsec >= 1000000000L) {
		t->tv_nsec -= 1000000000L;
		t->tv_sec++;
	}
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, t, NULL);
}

static void *writer(void *arg)
{
	wctx *w = arg;
	char id[16];
	snprintf(id, sizeof(id), "w/%d", w->id % 8);
	pthread_setname_np(pthread_self(), w->name);
	long n = 0, n0 = -1;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	double c0 = 0;
	while (!atomic_load(w->stop)) {
		if (n0 < 0 && atomic_load_explicit(&measuring, memory_order_relaxed)) {
			n0 = n;
			c0 = thread_cpu_s();
		}
		CHECK(ctx_put(w->s, id, "k", 1, &n, sizeof(n), NULL));
		n++;
		if (w->mode == FAN_PACED && n % PACE_BURST == 0)
			pace_next(&t, PACE_NS);
	}
	w->cpu_s = thread_cpu_s() - c0;
	w->ops = n - (n0 < 0 ? n : n0);
	return NULL;
}

/* A lagged watch is replaced by one from the revision it missed (or from
 * now, if that left the history), opened before the old one closes. */
static ctx_watch *resync_watch(ctx_store *s, ctx_watch *old, uint64_t from)
{
	ctx_watch *wt;
	if (ctx_watch_open(s, "w/", true, from, &wt) != CTX_OK)
		CHECK(ctx_watch_open(s, "w/", true, 0, &wt));
	ctx_watch_close(old);
	return wt;
}

static void *drainer(void *arg)
{
	wctx *w = arg;
	ctx_watch *wt;
	pthread_setname_np(pthread_self(), w->name);
	CHECK(ctx_watch_open(w->s, "w/", true, 0, &wt));
	double c0 = -1;
	while (!atomic_load(w->stop)) {
		if (c0 < 0 && atomic_load_explicit(&measuring, memory_order_relaxed)) {
			c0 = thread_cpu_s();
			w->events = w->lags = 0;
		}
		ctx_event *e;
		if (ctx_watch_wait(wt, 10, &e) != CTX_OK)
			continue;
		if (e->kind == CTX_EVENT_LAGGED) {
			w->lags++;
			uint64_t from = e->resume_from;
			ctx_event_free(e);
			if (w->mode != FAN_STOP)
				wt = resync_watch(w->s, wt, from);
			continue;
		}
		w->events++;
		ctx_event_free(e);
	}
	w->cpu_s = c0 < 0 ? 0 : thread_cpu_s() - c0;
	ctx_watch_close(wt);
	return NULL;
}

typedef struct fanout_run {
	double commits;    /* by the 2 writers in the second */
	double writer_cpu; /* their threads' CPU seconds */
	double events;     /* delivered to the watchers (not counting LAGGED) */
	double lags;       /* CTX_EVENT_LAGGED received */
	double watch_cpu;  /* the watchers' CPU seconds */
} fanout_run;

static const char *const writer_names[] = {"fan-w-stop", "fan-w-resync", "fan-w-paced"};
static const char *const watcher_names[] = {"fan-stop", "fan-resync", "fan-paced"};

static fanout_run commits_with_watchers(int watchers, fan_mode mode)
{
	ctx_store *s = open_store();
	for (int i = 0; i < 8; i++) {
		char id[16];
		snprintf(id, sizeof(id), "w/%d", i);
		CHECK(ctx_create(s, id));
	}
	atomic_bool stop = false;
	/* Not measuring until the warm-up ends: the watchers start counting
	 * when they see it turn true (left true by the previous run). */
	atomic_store(&measuring, false);
	wctx ws[2], ds[64];
	pthread_t wt[2], dt[64];
	for (int i = 0; i < watchers; i++) {
		ds[i] = (wctx){
		    .s = s, .stop = &stop, .id = i, .mode = mode, .name = watcher_names[mode]};
		pthread_create(&dt[i], NULL, drainer, &ds[i]);
	}
	struct timespec settle = {0, 50 * 1000000L};
	nanosleep(&settle, NULL);
	atomic_store(&measuring, fan_warm_s <= 0);
	for (int i = 0; i < 2; i++) {
		ws[i] = (wctx){.s = s,
		               .stop = &stop,
		               .id = i,
		               .mode = mode,
		               .name = watchers ? writer_names[mode] : "fan-w-alone"};
		pthread_create(&wt[i], NULL, writer, &ws[i]);
	}
	if (fan_warm_s > 0) {
		struct timespec warm = {(time_t)fan_warm_s,
		                        (long)((fan_warm_s - (double)(time_t)fan_warm_s) * 1e9)};
		nanosleep(&warm, NULL);
		atomic_store(&measuring, true);
	}
	struct timespec run = {(time_t)fan_run_s,
	                       (long)((fan_run_s - (double)(time_t)fan_run_s) * 1e9)};
	nanosleep(&run, NULL);
	atomic_store(&stop, true);
	fanout_run r = {0};
	for (int i = 0; i < 2; i++) {
		pthread_join(wt[i], NULL);
		r.commits += (double)ws[i].ops;
		r.writer_cpu += ws[i].cpu_s;
	}
	for (int i = 0; i < watchers; i++) {
		pthread_join(dt[i], NULL);
		r.events += (double)ds[i].events;
		r.lags += (double)ds[i].lags;
		r.watch_cpu += ds[i].cpu_s;
	}
	ctx_close(s);
	return r;
}

/* Medians over reps of one figure of the runs. */
typedef struct fan_meds {
	double wall, per_cpu, share, lags, watch_ns;
} fan_meds;

static fan_meds fan_medians(const fanout_run *r, int reps)
{
	double v[5][64];
	for (int i = 0; i < reps; i++) {
		v[0][i] = r[i].commits;
		v[1][i] = r[i].commits / r[i].writer_cpu;
		v[2][i] = r[i].commits > 0 ? r[i].events / (64.0 * r[i].commits) : 0;
		v[3][i] = r[i].lags;
		v[4][i] = r[i].events > 0 ? 1e9 * r[i].watch_cpu / r[i].events : 0;
	}
	return (fan_meds){median(v[0], reps), median(v[1], reps), median(v[2], reps),
	                  median(v[3], reps), median(v[4], reps)};
}

static double lower(double base, double x)
{
	return 100.0 * (base - x) / base;
}

/* The fan-out rows: `reps` interleaved rounds of each kind of run, without
 * a watcher and with 64. */
static void fanout(int reps)
{
	fanout_run r[3][2][64], warm[2][64];
	for (int i = 0; i < reps; i++) {
		for (int m = FAN_STOP; m <= FAN_PACED; m++) {
			r[m][0][i] = commits_with_watchers(0, (fan_mode)m);
			r[m][1][i] = commits_with_watchers(64, (fan_mode)m);
		}
		/* The paced cell again after FAN_STEADY_WARM s: the first second
		 * also pays for the event log's first fill (fresh memory for
		 * every record until the log reaches its bounds: round 14,
		 * r14-fanout); a process that keeps watchers open runs past it. */
		fan_warm_s = FAN_STEADY_WARM;
		warm[0][i] = commits_with_watchers(0, FAN_PACED);
		warm[1][i] = commits_with_watchers(64, FAN_PACED);
		fan_warm_s = 0;
	}
	fan_meds st0 = fan_medians(r[FAN_STOP][0], reps), st = fan_medians(r[FAN_STOP][1], reps);
	fan_meds rs0 = fan_medians(r[FAN_RESYNC][0], reps),
	         rs = fan_medians(r[FAN_RESYNC][1], reps);
	fan_meds pc0 = fan_medians(r[FAN_PACED][0], reps), pc = fan_medians(r[FAN_PACED][1], reps);
	printf("| commits/s, 2 writers on 8 contexts, no watcher | %.0f |\n", st0.wall);
	printf(
	    "| the same with 64 watchers on their prefix (watchers that lag stop reading) | %.0f "
	    "(%.1f%% lower) |\n",
	    st.wall, lower(st0.wall, st.wall));
	printf("| the same, commits per writer CPU-second: no watcher / 64 | %.0f / %.0f (%.1f%% "
	       "lower) |\n",
	       st0.per_cpu, st.per_cpu, lower(st0.per_cpu, st.per_cpu));
	printf("| 64 watchers that resync after a lag: commits/s, no watcher / 64 | %.0f / %.0f "
	       "(%.1f%% lower) |\n",
	       rs0.wall, rs.wall, lower(rs0.wall, rs.wall));
	printf("| the same, commits per writer CPU-second | %.0f / %.0f (%.1f%% lower) |\n",
	       rs0.per_cpu, rs.per_cpu, lower(rs0.per_cpu, rs.per_cpu));
	printf("| the same: share of the events delivered, lags a run, watcher CPU an event | "
	       "%.1f%%, %.0f, %.0f ns |\n",
	       100.0 * rs.share, rs.lags, rs.watch_ns);
	fan_meds pw0 = fan_medians(warm[0], reps), pw = fan_medians(warm[1], reps);
	printf("| 64 watchers draining every event of writers paced at %d commits/s, first second "
	       "(the event log fills): commits per writer CPU-second, no watcher / 64 | %.0f / "
	       "%.0f (%.1f%% lower) |\n",
	       2 * PACE_BURST * (int)(1000000000L / PACE_NS), pc0.per_cpu, pc.per_cpu,
	       lower(pc0.per_cpu, pc.per_cpu));
	printf("| the same: commits/s, share of the events delivered, lags a run, watcher CPU an "
	       "event | %.0f, %.1f%%, %.0f, %.0f ns |\n",
	       pc.wall, 100.0 * pc.share, pc.lags, pc.watch_ns);
	printf("| the same after %.0f s of it (steady state, the log at its bounds): commits per "
	       "writer CPU-second, no watcher / 64 | %.0f / %.0f (%.1f%% lower; goal ≤ 10%%: %s) "
	       "|\n",
	       (double)FAN_STEADY_WARM, pw0.per_cpu, pw.per_cpu, lower(pw0.per_cpu, pw.per_cpu),
	       lower(pw0.per_cpu, pw.per_cpu) <= 10 ? "met" : "**missed**");
	printf("| the same: commits/s, share of the events delivered, lags a run, watcher CPU an "
	       "event | %.0f, %.1f%%, %.0f, %.0f ns |\n",
	       pw.wall, 100.0 * pw.share, pw.lags, pw.watch_ns);
}

/* µs for a tracker sync of 100 local changes, beside a plain commit of 100
 * puts of the same shape (issue 11). The plain commit writes other keys
 * (the same pattern, shifted by half the keys) and the two alternate which
 * goes first: a commit of the very keys the sync just wrote finds their
 * trie paths in the cache, and measured 2x faster than one on cold paths
 * at 1,000,000 keys (docs/benchmarks.md), which made the sync look 3x the
 * commit when it is 1.3x. Both costs are walls from the same rep. */
static void tracker_sync(size_t keys, int reps)
{
	ctx_store *s = open_store();
	fill(s, keys);
	double sync[64], commit[64], ratio[64];
	for (int r = 0; r < reps; r++) {
		ctx_tracker *t;
		CHECK(ctx_tracker_open(s, "c", NULL, &t));
		ctx_txn *x;
		CHECK(ctx_txn_begin(s, "c", &x));
		for (int i = 0; i < 100; i++) {
			char key[32];
			int kl = snprintf(key, sizeof(key), "key-%011d", i * 31 + r);
			CHECK(ctx_tracker_put(t, key, (size_t)kl, "local", 5));
			kl = snprintf(key, sizeof(key), "key-%011zu",
			              (size_t)(i * 31 + r) + keys / 2);
			CHECK(ctx_txn_put(x, key, (size_t)kl, "plain", 5));
		}
		double t0 = now_us();
		if (r & 1)
			CHECK(ctx_txn_commit(x, 0, NULL));
		else
			CHECK(ctx_tracker_sync(t, NULL));
		double t1 = now_us();
		if (r & 1)
			CHECK(ctx_tracker_sync(t, NULL));
		else
			CHECK(ctx_txn_commit(x, 0, NULL));
		double t2 = now_us();
		sync[r] = r & 1 ? t2 - t1 : t1 - t0;
		commit[r] = r & 1 ? t1 - t0 : t2 - t1;
		ratio[r] = sync[r] / commit[r];
		ctx_tracker_close(t);
	}
	double rm = median(ratio, reps);
	printf("| tracker sync of 100 local changes, %zu keys | %.2f µs (a plain commit of 100 "
	       "puts: %.2f µs; ratio %.2f; goal ≤ 2: %s) |\n",
	       keys, median(sync, reps), median(commit, reps), rm, rm <= 2 ? "met" : "**missed**");
	ctx_close(s);
}

/* ---- compare-and-set under durability always (issue 9, item 1) ---------- */

typedef struct cas_run {
	ctx_store *s;
	bool latest;
	int increments;
	atomic_long attempts;
	atomic_bool stop;
} cas_run;

static void *cas_incrementer(void *arg)
{
	cas_run *r = arg;
	for (int i = 0; i < r->increments; i++) {
		for (;;) {
			atomic_fetch_add(&r->attempts, 1);
			ctx_state *st;
			CHECK((r->latest ? ctx_get_latest : ctx_get)(r->s, "counter", &st));
			const void *v;
			size_t n;
			long cur = 0;
			if (ctx_state_lookup(st, "n", 1, &v, &n)) {
				char b[32] = {0};
				memcpy(b, v, n < 31 ? n : 31);
				cur = atol(b);
			}
			uint64_t seen = ctx_state_version(st);
			ctx_state_release(st);
			char b[32];
			int len = snprintf(b, sizeof(b), "%ld", cur + 1);
			ctx_txn *t;
			CHECK(ctx_txn_begin(r->s, "counter", &t));
			CHECK(ctx_txn_put(t, "n", 1, b, (size_t)len));
			ctx_status got = ctx_txn_commit(t, seen, NULL);
			if (got == CTX_OK)
				break;
			if (got != CTX_CONFLICT)
				CHECK(got);
		}
	}
	return NULL;
}

static void *cas_plain_writer(void *arg)
{
	cas_run *r = arg;
	while (!atomic_load(&r->stop))
		CHECK(ctx_put(r->s, "counter", "other", 5, "x", 1, NULL));
	return NULL;
}

/* Four guarded incrementers and one plain writer on one context, durability
 * always, in a fresh directory: attempts per successful increment. */
static double cas_attempts(bool latest)
{
	char dir[] = "/tmp/ctxfeatures-cas-XXXXXX";
	if (!mkdtemp(dir))
		exit(1);
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	cas_run r = {.latest = latest, .increments = 200};
	CHECK(ctx_open(&o, &r.s));
	CHECK(ctx_create(r.s, "counter"));
	pthread_t w, th[4];
	pthread_create(&w, NULL, cas_plain_writer, &r);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, cas_incrementer, &r);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	atomic_store(&r.stop, true);
	pthread_join(w, NULL);
	ctx_close(r.s);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return (double)atomic_load(&r.attempts) / (4.0 * r.increments);
}

/* ---- paging through contexts (issue 9, item 4) ------------------------------ */

static void page_cost(size_t contexts, int reps)
{
	ctx_store *s = open_store();
	for (size_t i = 0; i < contexts; i++) {
		char id[32];
		snprintf(id, sizeof(id), "ctx:%08zu", (i * 2654435761u) % contexts);
		CHECK(ctx_create(s, id));
	}
	double t[64];
	for (int r = 0; r < reps; r++) {
		char after[32];
		snprintf(after, sizeof(after), "ctx:%08zu", contexts / 2);
		double t0 = now_us();
		ctx_list l;
		CHECK(ctx_list_ids(s, NULL, after, 10, &l));
		t[r] = now_us() - t0;
		ctx_list_free(&l);
	}
	printf("| a page of 10 ids among %zu contexts | %.1f µs |\n", contexts, median(t, reps));
	ctx_close(s);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "fanout") == 0) {
		int reps = argc > 2 ? atoi(argv[2]) : 5;
		if (argc > 4) { /* one kind of run, for a profiler */
			int mode = strcmp(argv[3], "resync") == 0  ? FAN_RESYNC
			           : strcmp(argv[3], "paced") == 0 ? FAN_PACED
			                                           : FAN_STOP;
			int n = atoi(argv[4]);
			if (argc > 5 && atof(argv[5]) > 0)
				fan_run_s = atof(argv[5]);
			if (argc > 6 && atof(argv[6]) > 0)
				fan_warm_s = atof(argv[6]);
			for (int r = 0; r < reps; r++) {
				fanout_run f =
				    commits_with_watchers(n < 0 || n > 64 ? 64 : n, (fan_mode)mode);
				printf("%.0f commits, %.0f per writer CPU-s, %.0f events, %.0f "
				       "lags, %.0f watcher-ns/event\n",
				       f.commits, f.commits / f.writer_cpu, f.events, f.lags,
				       f.events > 0 ? 1e9 * f.watch_cpu / f.events : 0);
			}
			return 0;
		}
		printf("| what (memory-only store, median of %d) | cost |\n|---|--:|\n",
		       reps < 1 || reps > 64 ? 5 : reps);
		fanout(reps < 1 || reps > 64 ? 5 : reps);
		return 0;
	}
	if (argc > 2 && strcmp(argv[1], "tracker") == 0) {
		size_t keys = (size_t)atol(argv[2]);
		int reps = argc > 3 ? atoi(argv[3]) : 15;
		int rounds = argc > 4 ? atoi(argv[4]) : 1;
		for (int r = 0; r < rounds; r++)
			tracker_sync(keys < 200 ? 200 : keys, reps < 1 || reps > 64 ? 15 : reps);
		return 0;
	}
	int reps = argc > 1 ? atoi(argv[1]) : 15;
	if (reps < 1 || reps > 64)
		reps = 15;
	printf("| what (memory-only store, median of %d) | cost |\n|---|--:|\n", reps);
	points_and_restore(1000, reps);
	points_and_restore(1000000, reps);
	diff_ten(1000, reps);
	diff_ten(1000000, reps);
	tracker_sync(1000, reps);
	tracker_sync(1000000, reps);
	fanout(5);
	page_cost(2000, reps);
	page_cost(200000, reps);
	double visible[3], latest[3];
	for (int r = 0; r < 3; r++) {
		visible[r] = cas_attempts(false);
		latest[r] = cas_attempts(true);
	}
	printf("| compare-and-set, durability always, 4 incrementers + 1 plain writer: attempts "
	       "per success reading with ctx_get | %.2f |\n",
	       median(visible, 3));
	printf("| the same reading with ctx_get_latest | %.2f |\n", median(latest, 3));
	return 0;
}
