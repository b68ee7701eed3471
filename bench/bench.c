/*
 * bench.c - ctxbench: ctx against its peers, cell by cell.
 *
 *   ctxbench run     [options]   measure; one CSV row per cell and repetition
 *   ctxbench memory  [options]   bytes per stored key, one engine per process
 *   ctxbench report  RAW.csv ... medians, ratios, goals: CSV, Markdown, plot data
 *   ctxbench machine [DIR]       what explains the figures: clock cost, CPU
 *                                scaling, fsync latency in DIR
 *
 * A CELL is one engine x one workload x one thread count. Running a cell:
 *   1. a fresh, empty data directory under the data dir (removed afterwards);
 *   2. open the engine; "not available" (ctx without persistence) makes the
 *      cell n/a and costs nothing;
 *   3. load the data set: 1,000 contexts of 16 keys with 64-byte values
 *      (not for "create", which starts empty);
 *   4. start the threads; each opens its worker handle (a SQLite connection,
 *      an LMDB read transaction) and waits on a barrier with the main thread;
 *      past the barrier, they wait (yielding) for the main thread to read the
 *      clock and raise the "go" flag: oversubscribed, the main thread may get
 *      the CPU only after every other thread has had a time slice;
 *   5. the main thread sleeps for the cell's duration, and
 *      raises the stop flag; every loop checks it after every operation, so
 *      a cell ends one operation after its time is up (SQLite's busy timeout,
 *      5 s, bounds the longest operation), and the program never hangs;
 *   6. ops/s = operations finished before the stop / duration; the CPU time
 *      other processes used meanwhile is recorded too (other_cpu, in CPUs),
 *      so that a cell disturbed by a neighbour can be told; latency comes
 *      from per-thread log-linear histograms (3% buckets). Each thread times
 *      its first 64 operations; if more than half of them took under 4 us
 *      it then times every 16th operation only (clock_gettime costs ~25 ns
 *      here, which would otherwise be a visible part of a 100 ns read),
 *      else every one. The median, not the mean: at 64 threads on 2 CPUs one
 *      preempted operation among the first 64 lasts milliseconds, and made
 *      many threads time every operation (docs/benchmarks.md, round 8).
 *
 * Repetitions are the outer loop and engines the inner one, so every engine
 * sees the same drift of the machine (page cache, thermal, neighbours); the
 * order of engines is shuffled anew for every repetition, workload and thread
 * count, so that no engine always runs right after the same one.
 *
 * WORKLOADS
 *   create   each thread creates new contexts of 4 keys (ctx: ctx_create and
 *            one transaction of 4 puts; SQLite: one transaction of 4 inserts;
 *            LMDB: one write transaction of 4 puts)
 *   update   each thread sets a random key of one of 8 shared contexts
 *   read     each thread reads one random key of a random context of 1,000
 *   readall  each thread reads a whole random context (16 pairs)
 *   mixed    70% read, 20% update (random context of 1,000), 10% create
 *   rww      read while writing: N reader threads do "read" while 4 more
 *            threads update random keys of random contexts; the cell's
 *            figures are the readers', the writers' ops/s come apart
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define MAX_THREADS 1024
#define MAX_LIST    64

/* ---- options -------------------------------------------------------------- */

typedef struct options {
	double duration;
	int reps;
	int threads[MAX_LIST];
	int nthreads;
	bool workloads[W_COUNT];
	const engine_def *engines[MAX_LIST];
	int nengines;
	const char *data_dir;
	const char *out;
	int writers;
	int contexts;
	double retry_busy;  /* measure a cell again if others used this many CPUs */
	int retry_budget;   /* retries allowed in the whole run */
	double wait_budget; /* seconds the run may wait for a quiet machine */
} options;

static int workload_find(const char *name)
{
	for (int i = 0; i < W_COUNT; i++)
		if (strcmp(workload_names[i], name) == 0)
			return i;
	return -1;
}

/* Split a comma-separated list in place; call fn on each item. */
static int for_each_item(char *list, int (*fn)(const char *item, void *arg), void *arg)
{
	for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save))
		if (fn(tok, arg))
			return -1;
	return 0;
}

static int add_threads(const char *item, void *arg)
{
	options *o = arg;
	char *end;
	long n = strtol(item, &end, 10);
	if (*end || n < 1 || n > MAX_THREADS || o->nthreads == MAX_LIST) {
		fprintf(stderr, "bad thread count '%s' (1..%d)\n", item, MAX_THREADS);
		return -1;
	}
	o->threads[o->nthreads++] = (int)n;
	return 0;
}

static int add_workload(const char *item, void *arg)
{
	options *o = arg;
	int w = workload_find(item);
	if (w < 0) {
		fprintf(stderr, "unknown workload '%s'\n", item);
		return -1;
	}
	o->workloads[w] = true;
	return 0;
}

static int add_engine(const char *item, void *arg)
{
	options *o = arg;
	const engine_def *d = bench_engine_find(item);
	if (!d || o->nengines == MAX_LIST) {
		fprintf(stderr, "unknown engine '%s'\n", item);
		return -1;
	}
	o->engines[o->nengines++] = d;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage:\n"
	           "  ctxbench run [options]       measure cells, one CSV row per cell and rep\n"
	           "  ctxbench memory [options]    bytes per stored key, per engine\n"
	           "  ctxbench report RAW.csv [--memory MEM.csv] [--env ENV.txt]\n"
	           "                  [--summary OUT.csv] [--markdown OUT.md] [--plot-dir DIR]\n"
	           "  ctxbench machine [DIR]       clock cost, CPU scaling, fsync latency in DIR\n"
	           "  ctxbench versions            SQLite and LMDB versions\n"
	           "options of run and memory:\n"
	           "  -d, --duration SEC   measured time per cell (default 1)\n"
	           "  -r, --reps N         repetitions of every cell (default 3)\n"
	           "  -t, --threads LIST   thread counts (default 1,2,4,16,32,64)\n"
	           "  -w, --workloads LIST create,update,read,readall,mixed,rww (default all)\n"
	           "  -e, --engines LIST   default all:");
	for (size_t i = 0; i < bench_engine_count; i++)
		fprintf(f, "%s%s", i ? "," : " ", bench_engines[i]->name);
	fprintf(f, "\n"
	           "  -D, --data-dir DIR   where engines keep files (default bench-data)\n"
	           "  -o, --out FILE       append CSV rows to FILE (default: stdout)\n"
	           "  -n, --contexts N     contexts loaded (run: 1000; memory: 10000)\n"
	           "      --writers N      writer threads of rww (default 4)\n"
	           "      --create-two-commits  ctx creates with ctx_create + a transaction\n"
	           "                       (two commits), not ctx_txn_begin_create (one)\n"
	           "      --create-one-commit  the default: ctx_txn_begin_create\n"
	           "      --retry-busy CPUS  wait before a cell until other processes use less\n"
	           "                       than CPUS, and measure it again (twice at most) if\n"
	           "                       they used CPUS or more meanwhile (default off)\n"
	           "example, one cell:  ctxbench run -e ctx-mem -w read -t 16 -r 1 -d 2\n");
}

static int parse_options(int argc, char **argv, options *o, bool memory)
{
	static const struct option longopts[] = {
	    {"duration", required_argument, NULL, 'd'},
	    {"reps", required_argument, NULL, 'r'},
	    {"threads", required_argument, NULL, 't'},
	    {"workloads", required_argument, NULL, 'w'},
	    {"engines", required_argument, NULL, 'e'},
	    {"data-dir", required_argument, NULL, 'D'},
	    {"out", required_argument, NULL, 'o'},
	    {"contexts", required_argument, NULL, 'n'},
	    {"writers", required_argument, NULL, 'W'},
	    {"retry-busy", required_argument, NULL, 'B'},
	    {"create-one-commit", no_argument, NULL, 'C'},
	    {"create-two-commits", no_argument, NULL, 'T'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	memset(o, 0, sizeof(*o));
	o->duration = 1.0;
	o->reps = 3;
	o->data_dir = "bench-data";
	o->writers = 4;
	o->contexts = memory ? 10000 : 1000;
	int c;
	while ((c = getopt_long(argc, argv, "d:r:t:w:e:D:o:n:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			o->duration = atof(optarg);
			if (o->duration <= 0 || o->duration > 3600) {
				fprintf(stderr, "bad duration '%s'\n", optarg);
				return -1;
			}
			break;
		case 'r':
			o->reps = atoi(optarg);
			if (o->reps < 1) {
				fprintf(stderr, "bad reps '%s'\n", optarg);
				return -1;
			}
			break;
		case 't':
			if (for_each_item(optarg, add_threads, o))
				return -1;
			break;
		case 'w':
			if (for_each_item(optarg, add_workload, o))
				return -1;
			break;
		case 'e':
			if (for_each_item(optarg, add_engine, o))
				return -1;
			break;
		case 'D':
			o->data_dir = optarg;
			break;
		case 'o':
			o->out = optarg;
			break;
		case 'n':
			o->contexts = atoi(optarg);
			if (o->contexts < BENCH_HOT_CTX) {
				fprintf(stderr, "bad context count '%s' (>= %d)\n", optarg,
				        BENCH_HOT_CTX);
				return -1;
			}
			break;
		case 'W':
			o->writers = atoi(optarg);
			if (o->writers < 1 || o->writers > MAX_THREADS) {
				fprintf(stderr, "bad writer count '%s'\n", optarg);
				return -1;
			}
			break;
		case 'B':
			o->retry_busy = atof(optarg);
			break;
		case 'C':
			bench_ctx_create_one_commit = true;
			break;
		case 'T':
			bench_ctx_create_one_commit = false;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return -1;
	}
	if (!o->nthreads) {
		static const int def[] = {1, 2, 4, 16, 32, 64};
		for (size_t i = 0; i < sizeof(def) / sizeof(def[0]); i++)
			o->threads[o->nthreads++] = def[i];
	}
	bool any = false;
	for (int w = 0; w < W_COUNT; w++)
		any |= o->workloads[w];
	if (!any)
		for (int w = 0; w < W_COUNT; w++)
			o->workloads[w] = true;
	if (!o->nengines)
		for (size_t i = 0; i < bench_engine_count; i++)
			o->engines[o->nengines++] = bench_engines[i];
	return 0;
}

/* ---- directories ---------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int make_dirs(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			if (mkdir(buf, 0755) && errno != EEXIST)
				return -1;
			*p = '/';
		}
	}
	return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

/* ---- the data set --------------------------------------------------------- */

static char **ctx_ids; /* "ctx-00000" ... */
static const char *keys[BENCH_KEYS_PER_CTX] = {
    "key-00", "key-01", "key-02", "key-03", "key-04", "key-05", "key-06", "key-07",
    "key-08", "key-09", "key-10", "key-11", "key-12", "key-13", "key-14", "key-15",
};

static void make_ids(int n)
{
	ctx_ids = calloc((size_t)n, sizeof(*ctx_ids));
	for (int i = 0; i < n; i++) {
		ctx_ids[i] = malloc(16);
		snprintf(ctx_ids[i], 16, "ctx-%05d", i);
	}
}

/* ---- a cell --------------------------------------------------------------- */

typedef struct cell {
	const engine_def *def;
	void *eng;
	int workload;
	int readers; /* threads doing the workload (rww: readers) */
	int writers; /* rww only */
	int nctx;
	pthread_barrier_t barrier;
	atomic_int go; /* set by the main thread right after it reads the clock */
	atomic_int stop;
	atomic_int failed;
} cell;

typedef struct thread_arg {
	pthread_t thread;
	cell *cell;
	int tid;
	bool writer;
	uint64_t ops, errors;
	hist h;
} thread_arg;

typedef struct cell_result {
	int status; /* ENGINE_OK, ENGINE_NA, ENGINE_ERROR */
	char note[256];
	double seconds;
	uint64_t ops, errors, writer_ops;
	double ops_per_s, p50_us, p99_us, writer_ops_per_s, writer_p99_us;
	double other_cpu; /* CPUs' worth used by other processes during the cell */
} cell_result;

/* CPU time used so far: by every process (from /proc/stat) and by this one. */
static void cpu_times(double *all, double *self)
{
	*all = *self = 0;
	FILE *f = fopen("/proc/stat", "r");
	if (f) {
		unsigned long long v[8] = {0};
		if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		           &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
			*all = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) /
			       (double)sysconf(_SC_CLK_TCK);
		fclose(f);
	}
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		*self = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static char *put_u64(char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while (v /= 10);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* One operation of the workload; 0 on success. */
static int one_op(thread_arg *a, void *w, int kind, uint64_t *rng, uint64_t *seq, char *val,
                  char *buf, size_t cap)
{
	const engine_def *d = a->cell->def;
	int nctx = a->cell->nctx;
	size_t n;
	if (kind == W_MIXED) {
		uint32_t r = bench_below(rng, 100);
		kind = r < 70 ? W_READ : r < 90 ? -1 : W_CREATE;
	}
	switch (kind) {
	case W_CREATE: {
		char id[64], *p = id;
		*p++ = 'n';
		p = put_u64(p, (uint64_t)a->tid);
		*p++ = '-';
		p = put_u64(p, (*seq)++);
		*p = 0;
		return d->create(w, id, keys, BENCH_CREATE_KEYS, val, BENCH_VALUE_LEN);
	}
	case W_UPDATE:
		memcpy(val, seq, sizeof(*seq));
		(*seq)++;
		return d->update(w, ctx_ids[bench_below(rng, BENCH_HOT_CTX)],
		                 keys[bench_below(rng, BENCH_KEYS_PER_CTX)], val, BENCH_VALUE_LEN);
	case -1: /* an update anywhere (mixed, rww writers) */
		memcpy(val, seq, sizeof(*seq));
		(*seq)++;
		return d->update(w, ctx_ids[bench_below(rng, (uint32_t)nctx)],
		                 keys[bench_below(rng, BENCH_KEYS_PER_CTX)], val, BENCH_VALUE_LEN);
	case W_READ:
		if (d->read(w, ctx_ids[bench_below(rng, (uint32_t)nctx)],
		            keys[bench_below(rng, BENCH_KEYS_PER_CTX)], buf, &n))
			return -1;
		return n == BENCH_VALUE_LEN ? 0 : -1;
	case W_READALL:
		if (d->read_all(w, ctx_ids[bench_below(rng, (uint32_t)nctx)], buf, cap, &n))
			return -1;
		return n == BENCH_KEYS_PER_CTX ? 0 : -1;
	}
	return -1;
}

static void *thread_main(void *arg)
{
	thread_arg *a = arg;
	cell *c = a->cell;
	void *w = c->def->worker_new(c->eng);
	if (!w)
		atomic_store(&c->failed, 1);
	pthread_barrier_wait(&c->barrier);
	if (!w)
		return NULL;
	/* With 64 threads on 2 CPUs the main thread may run long after the
	 * barrier opens: wait for it to start the clock, or the first
	 * operations would be counted outside the measured time. */
	while (!atomic_load(&c->go) && !atomic_load(&c->stop))
		sched_yield();

	int kind = c->workload;
	if (kind == W_RWW)
		kind = a->writer ? -1 : W_READ;
	uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(a->tid + 1) ^ bench_now_ns();
	uint64_t seq = 0, i = 0, mask = 0, fast = 0;
	char val[BENCH_VALUE_LEN];
	static _Thread_local char buf[BENCH_KEYS_PER_CTX * BENCH_MAX_VALUE];
	memset(val, 'w', sizeof(val));
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		bool timed = (i & mask) == 0;
		uint64_t t0 = timed ? bench_now_ns() : 0;
		int rc = one_op(a, w, kind, &rng, &seq, val, buf, sizeof(buf));
		uint64_t t1 = timed ? bench_now_ns() : 0;
		if (atomic_load_explicit(&c->stop, memory_order_relaxed))
			break; /* finished after the end: not counted */
		if (timed) {
			hist_add(&a->h, t1 - t0);
			fast += t1 - t0 < 4000;
		}
		if (rc)
			a->errors++;
		else
			a->ops++;
		/* The median, not the mean: one of the first 64 operations
		 * preempted (64 threads on 2 CPUs: a time slice of others, or
		 * a lock holder's) must not make a thread time every one. */
		if (++i == 64 && fast > 32)
			mask = 15;
	}
	c->def->worker_free(w);
	return NULL;
}

static void sleep_seconds(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void run_cell(const options *o, const engine_def *d, int workload, int threads,
                     cell_result *r)
{
	memset(r, 0, sizeof(*r));
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/%s", o->data_dir, d->name);
	remove_tree(dir);
	if (make_dirs(dir)) {
		r->status = ENGINE_ERROR;
		bench_msg(r->note, sizeof(r->note), "mkdir %s: %s", dir, strerror(errno));
		return;
	}
	cell c = {.def = d, .workload = workload, .readers = threads, .nctx = o->contexts};
	c.writers = workload == W_RWW ? o->writers : 0;
	r->status = d->open(d, dir, &c.eng, r->note, sizeof(r->note));
	if (r->status != ENGINE_OK) {
		remove_tree(dir);
		return;
	}
	if (workload != W_CREATE && d->load(c.eng, (const char *const *)ctx_ids,
	                                    (size_t)o->contexts, keys, r->note, sizeof(r->note))) {
		r->status = ENGINE_ERROR;
		d->close(c.eng);
		remove_tree(dir);
		return;
	}

	int total = c.readers + c.writers;
	thread_arg *args = calloc((size_t)total, sizeof(*args));
	pthread_barrier_init(&c.barrier, NULL, (unsigned)total + 1);
	int started = 0;
	for (int t = 0; t < total; t++) {
		args[t].cell = &c;
		args[t].tid = t;
		args[t].writer = t >= c.readers;
		int rc = pthread_create(&args[t].thread, NULL, thread_main, &args[t]);
		if (rc != 0) {
			/* The others wait on a barrier sized for all: no way back. */
			fprintf(stderr, "cannot start thread %d of %d: %s\n", t + 1, total,
			        strerror(rc));
			exit(1);
		}
		started++;
	}
	pthread_barrier_wait(&c.barrier);
	double all0, self0, all1, self1;
	cpu_times(&all0, &self0);
	uint64_t t0 = bench_now_ns();
	atomic_store(&c.go, 1);
	if (!atomic_load(&c.failed))
		sleep_seconds(o->duration);
	atomic_store(&c.stop, 1);
	uint64_t t1 = bench_now_ns();
	cpu_times(&all1, &self1);
	for (int t = 0; t < started; t++)
		pthread_join(args[t].thread, NULL);

	hist reads = {0}, writes = {0};
	for (int t = 0; t < started; t++) {
		if (args[t].writer) {
			hist_merge(&writes, &args[t].h);
			r->writer_ops += args[t].ops;
		} else {
			hist_merge(&reads, &args[t].h);
			r->ops += args[t].ops;
		}
		r->errors += args[t].errors;
	}
	r->seconds = (double)(t1 - t0) / 1e9;
	r->other_cpu = ((all1 - all0) - (self1 - self0)) / r->seconds;
	if (r->other_cpu < 0)
		r->other_cpu = 0;
	r->ops_per_s = (double)r->ops / r->seconds;
	if (getenv("CTXBENCH_CELL_CPU")) /* the process's CPU time in the cell */
		fprintf(stderr, "cell-cpu %s %s t=%d: %.0f ops in %.4f CPU-s: %.0f ops/CPU-s\n",
		        d->name, workload_names[workload], threads, (double)r->ops,
		        self1 - self0, self1 > self0 ? (double)r->ops / (self1 - self0) : 0.0);
	r->p50_us = hist_quantile(&reads, 0.50) / 1e3;
	r->p99_us = hist_quantile(&reads, 0.99) / 1e3;
	if (c.writers) {
		r->writer_ops_per_s = (double)r->writer_ops / r->seconds;
		r->writer_p99_us = hist_quantile(&writes, 0.99) / 1e3;
	}
	if (atomic_load(&c.failed)) {
		r->status = ENGINE_ERROR;
		bench_msg(r->note, sizeof(r->note), "a worker could not start");
	} else if (!r->ops) {
		r->status = ENGINE_ERROR;
		bench_msg(r->note, sizeof(r->note), "no operation succeeded (%llu errors)",
		          (unsigned long long)r->errors);
	} else if (r->errors) {
		bench_msg(r->note, sizeof(r->note), "%llu failed operations",
		          (unsigned long long)r->errors);
	}
	pthread_barrier_destroy(&c.barrier);
	free(args);
	d->close(c.eng);
	remove_tree(dir);
	/* Give back what the engine freed now, not in the next cell: glibc
	 * consolidates an arena's freed chunks on the next large malloc there,
	 * and a thread of the next cell may inherit the arena (millions of chunks
	 * after a "create" cell: seconds of stall billed to the next engine). */
	malloc_trim(0);
}

/* CPUs' worth of CPU time other processes use over the next `seconds`. */
static double others_busy(double seconds)
{
	double all0, self0, all1, self1;
	cpu_times(&all0, &self0);
	sleep_seconds(seconds);
	cpu_times(&all1, &self1);
	double busy = ((all1 - all0) - (self1 - self0)) / seconds;
	return busy > 0 ? busy : 0;
}

/* Run a cell on a quiet machine if we can. Before it, wait (20 s at most,
 * within the run's waiting budget) until other processes (a test suite, a
 * build) use less than retry_busy CPUs; after it, if they took that much
 * meanwhile, wait and run it again, at most twice per cell and within a
 * budget for the whole run, and keep the least disturbed attempt. */
static void run_cell_quietly(options *o, const engine_def *d, int workload, int threads,
                             cell_result *r)
{
	for (int attempt = 0;; attempt++) {
		double waited = 0;
		while (o->retry_busy > 0 && o->wait_budget > 0 && waited < 20 &&
		       others_busy(0.1) >= o->retry_busy) {
			waited += 0.1;
			o->wait_budget -= 0.1;
		}
		if (waited > 0)
			fprintf(stderr, "waited %.2f s for other processes to quiet down\n",
			        waited);
		cell_result cur;
		run_cell(o, d, workload, threads, &cur);
		if (attempt == 0 || (cur.status == ENGINE_OK && cur.other_cpu < r->other_cpu))
			*r = cur;
		if (attempt == 2 || o->retry_busy <= 0 || o->retry_budget <= 0 ||
		    r->status != ENGINE_OK || r->other_cpu < o->retry_busy)
			break;
		o->retry_budget--;
		fprintf(stderr,
		        "%-7s t=%-3d %-13s disturbed (other processes used %.1f CPUs): "
		        "again\n",
		        workload_names[workload], threads, d->name, r->other_cpu);
	}
}

/* The order of the engines in one (repetition, workload, thread count): a
 * shuffle seeded by all three, so that no engine always follows the same one
 * (whatever one leaves behind, the next pays) and the order is reproducible.
 * The first repetition keeps the order given. */
static void shuffle_engines(int *order, int n, int rep, int w, int ti)
{
	uint64_t seed =
	    0x9E3779B97F4A7C15ull ^ ((uint64_t)rep << 32 | (uint64_t)w << 16 | (uint64_t)ti);
	for (int i = 0; i < n; i++)
		order[i] = i;
	if (rep == 1)
		return;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)bench_below(&seed, (uint32_t)i + 1);
		int t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
}

static const char *status_name(int s)
{
	return s == ENGINE_OK ? "ok" : s == ENGINE_NA ? "n/a" : "error";
}

/* Make a note fit in a CSV field. */
static void csv_clean(char *s)
{
	for (; *s; s++)
		if (*s == ',' || *s == '"' || *s == '\n')
			*s = ';';
}

static const char raw_header[] =
    "rep,engine,group,workload,threads,status,seconds,ops,errors,"
    "ops_per_s,p50_us,p99_us,writer_ops_per_s,writer_p99_us,other_cpu,note";

static int cmd_run(int argc, char **argv)
{
	options o;
	if (parse_options(argc, argv, &o, false))
		return 2;
	make_ids(o.contexts);
	/* Retries may add a sixteenth of the planned cells. */
	o.retry_budget = o.reps * o.nthreads * o.nengines * W_COUNT / 16 + 1;
	/* Waiting for quiet may add half the planned measuring time. */
	o.wait_budget = o.reps * o.nthreads * o.nengines * W_COUNT * o.duration / 2;
	FILE *out = stdout;
	if (o.out) {
		struct stat st;
		bool fresh = stat(o.out, &st) != 0 || st.st_size == 0;
		if (!(out = fopen(o.out, "a"))) {
			fprintf(stderr, "%s: %s\n", o.out, strerror(errno));
			return 1;
		}
		if (fresh)
			fprintf(out, "%s\n", raw_header);
	} else {
		fprintf(out, "%s\n", raw_header);
	}
	if (make_dirs(o.data_dir)) {
		fprintf(stderr, "%s: %s\n", o.data_dir, strerror(errno));
		return 1;
	}
	/* An engine that is not available is reported once, not every cell. */
	bool na_told[MAX_LIST] = {false};
	for (int rep = 1; rep <= o.reps; rep++) {
		for (int w = 0; w < W_COUNT; w++) {
			if (!o.workloads[w])
				continue;
			for (int ti = 0; ti < o.nthreads; ti++) {
				int order[MAX_LIST];
				shuffle_engines(order, o.nengines, rep, w, ti);
				for (int k = 0; k < o.nengines; k++) {
					int ei = order[k];
					const engine_def *d = o.engines[ei];
					cell_result r;
					run_cell_quietly(&o, d, w, o.threads[ti], &r);
					csv_clean(r.note);
					fprintf(out,
					        "%d,%s,%s,%s,%d,%s,%.3f,%llu,%llu,%.1f,%.3f,%.3f,"
					        "%.1f,%.3f,%.2f,%s\n",
					        rep, d->name, d->group, workload_names[w],
					        o.threads[ti], status_name(r.status), r.seconds,
					        (unsigned long long)r.ops,
					        (unsigned long long)r.errors, r.ops_per_s, r.p50_us,
					        r.p99_us, r.writer_ops_per_s, r.writer_p99_us,
					        r.other_cpu, r.note);
					fflush(out);
					if (r.status == ENGINE_NA) {
						if (!na_told[ei])
							fprintf(stderr, "%-13s n/a: %s\n", d->name,
							        r.note);
						na_told[ei] = true;
						continue;
					}
					fprintf(
					    stderr,
					    "rep %d %-7s t=%-3d %-13s %s %12.0f ops/s  p50 %9.2f "
					    "us  p99 %9.2f us",
					    rep, workload_names[w], o.threads[ti], d->name,
					    status_name(r.status), r.ops_per_s, r.p50_us, r.p99_us);
					if (w == W_RWW)
						fprintf(stderr, "  writers %.0f ops/s",
						        r.writer_ops_per_s);
					if (r.other_cpu >= 0.1)
						fprintf(stderr, "  (other processes: %.1f CPUs)",
						        r.other_cpu);
					fprintf(stderr, "%s%s\n", *r.note ? "  " : "", r.note);
				}
			}
		}
	}
	if (out != stdout)
		fclose(out);
	return 0;
}

/* ---- memory per key ------------------------------------------------------- */

static long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size = 0, resident = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * sysconf(_SC_PAGESIZE);
}

/* In a child process: open, load, measure; write "status rss disk" to fd. */
static void measure_child(const options *o, const engine_def *d, int fd)
{
	char dir[4096], note[256] = "", line[512];
	snprintf(dir, sizeof(dir), "%s/mem-%s", o->data_dir, d->name);
	remove_tree(dir);
	make_dirs(dir);
	void *eng;
	long rss0 = rss_bytes();
	int st = d->open(d, dir, &eng, note, sizeof(note));
	long rss1 = rss0;
	int64_t disk = -1;
	if (st == ENGINE_OK) {
		if (d->load(eng, (const char *const *)ctx_ids, (size_t)o->contexts, keys, note,
		            sizeof(note)))
			st = ENGINE_ERROR;
		sleep_seconds(0.3); /* let deferred frees (RCU callbacks) run */
		malloc_trim(0);
		rss1 = rss_bytes();
		d->close(eng);
		if (strcmp(d->family, "rwlock") != 0 && strcmp(d->name, "ctx-mem") != 0)
			disk = bench_dir_bytes(dir);
	}
	remove_tree(dir);
	csv_clean(note);
	int n =
	    snprintf(line, sizeof(line), "%d %ld %lld %s", st, rss1 - rss0, (long long)disk, note);
	if (write(fd, line, (size_t)n) < 0)
		_exit(1);
}

static int cmd_memory(int argc, char **argv)
{
	options o;
	if (parse_options(argc, argv, &o, true))
		return 2;
	make_ids(o.contexts);
	if (make_dirs(o.data_dir)) {
		fprintf(stderr, "%s: %s\n", o.data_dir, strerror(errno));
		return 1;
	}
	FILE *out = o.out ? fopen(o.out, "w") : stdout;
	if (!out) {
		fprintf(stderr, "%s: %s\n", o.out, strerror(errno));
		return 1;
	}
	size_t nkeys = (size_t)o.contexts * BENCH_KEYS_PER_CTX;
	double payload = (double)(strlen(keys[0]) + BENCH_VALUE_LEN);
	fprintf(out, "engine,status,contexts,keys,payload_bytes_per_key,rss_growth_bytes_per_key,"
	             "file_bytes_per_key,note\n");
	for (int k = 0; k < o.nengines; k++) {
		const engine_def *d = o.engines[k];
		int pipefd[2];
		if (pipe(pipefd))
			return 1;
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0) {
			close(pipefd[0]);
			measure_child(&o, d, pipefd[1]);
			_exit(0);
		}
		close(pipefd[1]);
		char line[512] = "";
		ssize_t n = pid > 0 ? read(pipefd[0], line, sizeof(line) - 1) : -1;
		close(pipefd[0]);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		int st = ENGINE_ERROR;
		long rss = 0;
		long long disk = -1;
		int used = 0;
		if (n <= 0 || sscanf(line, "%d %ld %lld %n", &st, &rss, &disk, &used) < 3)
			st = ENGINE_ERROR;
		const char *note = used ? line + used : "";
		fprintf(out, "%s,%s,%d,%zu,%.1f,", d->name, status_name(st), o.contexts, nkeys,
		        payload);
		if (st == ENGINE_OK)
			fprintf(out, "%.1f,", (double)rss / (double)nkeys);
		else
			fprintf(out, ",");
		if (st == ENGINE_OK && disk >= 0)
			fprintf(out, "%.1f,", (double)disk / (double)nkeys);
		else
			fprintf(out, ",");
		fprintf(out, "%s\n", note);
		if (st == ENGINE_OK && disk >= 0)
			fprintf(stderr, "memory %-13s RSS growth %6.1f B/key, files %6.1f B/key\n",
			        d->name, (double)rss / (double)nkeys, (double)disk / (double)nkeys);
		else if (st == ENGINE_OK)
			fprintf(stderr, "memory %-13s RSS growth %6.1f B/key\n", d->name,
			        (double)rss / (double)nkeys);
		else
			fprintf(stderr, "memory %-13s %s %s\n", d->name, status_name(st), note);
	}
	if (out != stdout)
		fclose(out);
	return 0;
}

/* ---- the machine ---------------------------------------------------------- */

static void *alu_loop(void *arg)
{
	volatile uint64_t x = 0;
	for (uint64_t i = 0; i < 200u * 1000 * 1000; i++)
		x += i * i;
	return (void *)(uintptr_t)x;
}

static double alu_seconds(int threads)
{
	pthread_t t[MAX_LIST];
	uint64_t t0 = bench_now_ns();
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, alu_loop, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	return (double)(bench_now_ns() - t0) / 1e9;
}

/* What explains the figures: the cost of reading the clock, how much of a
 * second CPU a second thread really gets (vCPUs may share a core), and how
 * long an fsync takes where the engines keep their files. */
static int cmd_machine(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	uint64_t t0 = bench_now_ns();
	for (int i = 0; i < 1000000; i++)
		(void)bench_now_ns();
	double clock_ns = (double)(bench_now_ns() - t0) / 1e6;

	int n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1 || n > MAX_LIST)
		n = n < 1 ? 1 : MAX_LIST;
	double one = alu_seconds(1), all = alu_seconds(n);

	char path[4096];
	snprintf(path, sizeof(path), "%s/fsync-probe", dir);
	make_dirs(dir);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	static hist h;
	char block[4096];
	memset(block, 'f', sizeof(block));
	for (int i = 0; fd >= 0 && i < 200; i++) {
		uint64_t a = bench_now_ns();
		if (pwrite(fd, block, sizeof(block), (off_t)i * 4096) != (ssize_t)sizeof(block) ||
		    fdatasync(fd))
			break;
		hist_add(&h, bench_now_ns() - a);
	}
	if (fd >= 0)
		close(fd);
	unlink(path);
	printf("calibration: clock_gettime %.0f ns; a CPU-bound loop on %d threads runs "
	       "%.2fx as fast as on 1 (%d would be perfect scaling); 4 KiB write + fdatasync "
	       "p50 %.0f us, p99 %.0f us\n",
	       clock_ns, n, n * one / all, n, hist_quantile(&h, 0.5) / 1e3,
	       hist_quantile(&h, 0.99) / 1e3);
	return 0;
}

/* ---- main ----------------------------------------------------------------- */

int bench_report(int argc, char **argv); /* report.c */

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "memory"))
		return cmd_memory(argc - 1, argv + 1);
	if (!strcmp(argv[1], "report"))
		return bench_report(argc - 1, argv + 1);
	if (!strcmp(argv[1], "machine"))
		return cmd_machine(argc - 1, argv + 1);
	if (!strcmp(argv[1], "versions")) {
		printf("sqlite %s\nlmdb %s\n", bench_sqlite_version(), bench_lmdb_version());
		return 0;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
