/*
 * recovery.c - ctxrecovery: how fast a store opens, how fast it checkpoints,
 * and what background checkpoints do to the latency of small commits
 * (issue 11, "Recovery and checkpoints in make bench").
 *
 * Three measures, each printed as a Markdown table, then the goals:
 *
 *   replay      A store with a log and no checkpoint is opened; ctx_open's
 *               wall time against the bytes of log it replays (MB/s, MB =
 *               10^6 bytes), and per CPU-second of the opening process.
 *               Three logs: one-put commits on 1,000 contexts of 16 keys, of
 *               64-byte values (~140-byte records) or 1 KiB values, and
 *               100-put transactions on one context of up to 1,000,000 keys
 *               (~9 KB records).
 *   checkpoint  A store of `keys` keys (1,000 contexts) is checkpointed with
 *               ctx_checkpoint (write: checkpoint bytes / its wall time,
 *               file sync included), then opened from that checkpoint (load:
 *               checkpoint bytes / ctx_open's wall time).
 *   latency     1 or 2 writer threads put one 64-byte value to a random key
 *               of 8 hot contexts, each put timed, beside the same `keys` keys
 *               of cold data; in alternate phases a thread calls
 *               ctx_checkpoint back to back ("on") or nothing does ("off").
 *               Durability batch and none (unsafe_no_sync): the modes where a
 *               commit does not wait for the disk, so that what a checkpoint
 *               costs the writers shows instead of fsync waits.
 *
 * How a log without a checkpoint is made with the public API only: a child
 * process opens the store with checkpoint_bytes far above what it writes
 * (no background checkpoint), commits, waits until its last commit is
 * synced (ctx_get_stats' log_syncs), and leaves with _exit, so that
 * ctx_close's final checkpoint is never written. Every open is timed in a
 * child of its own too, on a fresh copy of that directory (an open starts a
 * new log segment and a close writes a checkpoint: the template must stay as
 * it is), and the child leaves with _exit as well. The copy is fsynced (as
 * a store's files are before a restart: else the open's first fsync would
 * write it out) and still in the page cache: the figures are the CPU cost
 * of recovery, not the disk's. The parent process never opens a store,
 * so it forks with no library threads. Log bytes are the sizes of the
 * wal-*.log files (docs/file-format.md) less any zeros at their ends, so
 * that a preallocated segment counts only what it holds.
 *
 *   ctxrecovery [log MiB (128)] [keys (1000000)] [runs (5)] [phase s (1.5)]
 *               [rounds (3)] [directory ($TMPDIR or /tmp)]
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctx.h"

#define CHECK(call)                                                                                \
	do {                                                                                       \
		ctx_status st_ = (call);                                                           \
		if (st_ != CTX_OK) {                                                               \
			fprintf(stderr, "%s: %s (%s)\n", #call, ctx_strerror(st_),                 \
			        ctx_last_error());                                                 \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)

#define NEVER_CHECKPOINT ((size_t)1 << 50) /* checkpoint_bytes: no background one */
#define GOAL_REPLAY_MBS  200.0
#define GOAL_P99_RATIO   2.0

/* CPU seconds used by this process so far, all threads. */
static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
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

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* ---- directories --------------------------------------------------------- */

static const char *base_dir;

static void make_dir(char *out, size_t n, const char *tag)
{
	snprintf(out, n, "%s/ctxrecovery-%s-XXXXXX", base_dir, tag);
	if (!mkdtemp(out))
		die("mkdtemp");
}

static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char p[4096];
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) < (int)sizeof(p))
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static void copy_file(const char *from, const char *to)
{
	static char buf[1 << 20];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in < 0 || out < 0)
		die("copy open");
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			die("copy write");
	if (n < 0)
		die("copy read");
	if (fsync(out) != 0) /* else the open's first fsync writes it all */
		die("copy fsync");
	close(in);
	close(out);
}

/* A fresh directory holding a copy of every file of `from`, synced as a
 * store's files are before a restart. */
static void copy_dir(const char *from, char *to, size_t n)
{
	make_dir(to, n, "run");
	DIR *d = opendir(from);
	if (!d)
		die("opendir");
	struct dirent *e;
	char a[4096], b[4096];
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		struct stat st;
		if (snprintf(a, sizeof(a), "%s/%s", from, e->d_name) < (int)sizeof(a) &&
		    snprintf(b, sizeof(b), "%s/%s", to, e->d_name) < (int)sizeof(b) &&
		    stat(a, &st) == 0 && S_ISREG(st.st_mode))
			copy_file(a, b);
	}
	closedir(d);
	int fd = open(to, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || fsync(fd) != 0)
		die("fsync dir");
	close(fd);
}

/* Size of a file less the zeros at its end (a preallocated tail). */
static uint64_t used_bytes(const char *path)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		die("stat");
	static unsigned char buf[1 << 16];
	uint64_t end = (uint64_t)st.st_size;
	while (end > 0) {
		size_t n = end < sizeof(buf) ? (size_t)end : sizeof(buf);
		if (pread(fd, buf, n, (off_t)(end - n)) != (ssize_t)n)
			die("pread");
		size_t i = n;
		while (i > 0 && buf[i - 1] == 0)
			i--;
		if (i > 0) {
			end -= n - i;
			break;
		}
		end -= n;
	}
	close(fd);
	return end;
}

/* Bytes of the files in dir whose names start with prefix and end with
 * suffix (zeros at their ends left out); *count gets how many. */
static uint64_t files_bytes(const char *dir, const char *prefix, const char *suffix, int *count)
{
	DIR *d = opendir(dir);
	if (!d)
		die("opendir");
	struct dirent *e;
	uint64_t sum = 0;
	int n = 0;
	size_t pl = strlen(prefix), sl = strlen(suffix);
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l < pl + sl || strncmp(e->d_name, prefix, pl) != 0 ||
		    strcmp(e->d_name + l - sl, suffix) != 0)
			continue;
		char p[4096];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		sum += used_bytes(p);
		n++;
	}
	closedir(d);
	if (count)
		*count = n;
	return sum;
}

/* ---- child processes ----------------------------------------------------- */

/* What a child sends back through its pipe. */
typedef struct result {
	double v[8];
	uint64_t u[4];
} result;

typedef void (*child_fn)(void *arg, result *out);

/* Run fn(arg) in a child process and return what it filled in. */
static result in_child(child_fn fn, void *arg)
{
	int p[2];
	if (pipe(p) != 0)
		die("pipe");
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(p[0]);
		result r = {0};
		fn(arg, &r);
		if (write(p[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(1);
		fflush(stdout);
		_exit(0); /* no ctx_close: no final checkpoint */
	}
	close(p[1]);
	result r;
	ssize_t n = read(p[0], &r, sizeof(r));
	close(p[0]);
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    n != (ssize_t)sizeof(r)) {
		fprintf(stderr, "ctxrecovery: a child process failed\n");
		exit(1);
	}
	return r;
}

static ctx_store *open_dir(const char *dir, ctx_durability d)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = d;
	o.unsafe_no_sync = d == CTX_DURABILITY_NONE;
	o.checkpoint_bytes = NEVER_CHECKPOINT;
	ctx_store *s;
	CHECK(ctx_open(&o, &s));
	return s;
}

static uint64_t log_syncs(ctx_store *s)
{
	ctx_stats st;
	ctx_get_stats(s, &st);
	return st.log_syncs;
}

static void wait_sync_after(ctx_store *s, uint64_t syncs)
{
	double until = now_s() + 10;
	while (log_syncs(s) <= syncs)
		if (now_s() > until) {
			fprintf(stderr, "ctxrecovery: the log was not synced within 10 s\n");
			_exit(1);
		} else
			sleep_s(0.001);
}

/* Under durability batch, make sure every commit so far is synced, and
 * return the revision that holds: a flusher round that ends after a first
 * marker's round ends began after the marker was committed, so it wrote and
 * synced it (a round syncs only when it wrote something: hence the second
 * marker, which makes sure there is such a round). */
static uint64_t sync_all(ctx_store *s)
{
	uint64_t n = log_syncs(s);
	CHECK(ctx_put(s, "marker", "m", 1, "1", 1, NULL));
	ctx_stats st;
	ctx_get_stats(s, &st);
	wait_sync_after(s, n);
	n = log_syncs(s);
	CHECK(ctx_put(s, "marker", "m", 1, "2", 1, NULL));
	wait_sync_after(s, n);
	return st.revision;
}

/* ---- replay -------------------------------------------------------------- */

/* The logs replayed: one-put commits of small or large values on 1,000
 * contexts of 16 keys, or 100-put transactions on one large context. */
typedef enum log_shape { LOG_SMALL, LOG_LARGE_VALUES, LOG_BIG_TXN } log_shape;

static const char *const shape_name[] = {"1-put commits, 64 B values, 1,000 contexts x 16 keys",
                                         "1-put commits, 1 KiB values, 1,000 contexts x 16 keys",
                                         "100-put transactions, 64 B values, 1 context, 1M keys"};

typedef struct log_job {
	const char *dir;
	log_shape shape;
	uint64_t target; /* record bytes to write, roughly */
} log_job;

/* Child: write about job->target bytes of records, no checkpoint. */
static void write_log(void *arg, result *out)
{
	log_job *j = arg;
	ctx_store *s = open_dir(j->dir, CTX_DURABILITY_BATCH);
	CHECK(ctx_create(s, "marker"));
	char id[32], key[32], val[1024];
	memset(val, 'v', sizeof(val));
	size_t vlen = j->shape == LOG_LARGE_VALUES ? 1024 : 64;
	uint64_t rng = 88172645463325252ull, bytes = 0, records = 0;
	if (j->shape == LOG_BIG_TXN) {
		CHECK(ctx_create(s, "big"));
		while (bytes < j->target) {
			ctx_txn *t;
			CHECK(ctx_txn_begin(s, "big", &t));
			for (int i = 0; i < 100; i++) {
				int kl = snprintf(key, sizeof(key), "key-%011" PRIu64,
				                  xorshift(&rng) % 1000000);
				CHECK(ctx_txn_put(t, key, (size_t)kl, val, vlen));
				bytes += 9 + (unsigned)kl + vlen;
			}
			CHECK(ctx_txn_commit(t, 0, NULL));
			bytes += 40 + 2 + 3 + 12;
			records++;
		}
	} else {
		for (int i = 0; i < 1000; i++) {
			snprintf(id, sizeof(id), "ctx-%05d", i);
			CHECK(ctx_create(s, id));
		}
		while (bytes < j->target) {
			uint64_t r = xorshift(&rng);
			int il = snprintf(id, sizeof(id), "ctx-%05d", (int)(r % 1000));
			int kl = snprintf(key, sizeof(key), "key-%02d", (int)((r >> 20) % 16));
			CHECK(ctx_put(s, id, key, (size_t)kl, val, vlen, NULL));
			bytes += 40 + 2 + (unsigned)il + 12 + 9 + (unsigned)kl + vlen;
			records++;
		}
	}
	out->u[0] = sync_all(s);
	out->u[1] = records;
}

/* Child: time ctx_open of a copy of a directory. */
typedef struct open_job {
	const char *dir;
	uint64_t revision; /* the revision the open must reach */
} open_job;

static void timed_open(void *arg, result *out)
{
	open_job *j = arg;
	ctx_options o;
	ctx_options_init(&o);
	o.dir = j->dir;
	o.durability = CTX_DURABILITY_BATCH;
	o.checkpoint_bytes = NEVER_CHECKPOINT;
	ctx_store *s;
	double t0 = now_s(), c0 = cpu_s();
	CHECK(ctx_open(&o, &s));
	out->v[0] = now_s() - t0;
	out->v[1] = cpu_s() - c0;
	ctx_stats st;
	ctx_get_stats(s, &st);
	if (st.revision < j->revision) {
		fprintf(stderr, "ctxrecovery: opened at revision %" PRIu64 ", not %" PRIu64 "\n",
		        st.revision, j->revision);
		_exit(1);
	}
	out->u[0] = st.contexts;
}

/* Median wall time of `runs` opens of fresh copies of template; *cpu gets
 * the median CPU time of the opening process (every thread). */
static double median_open(const char *template, uint64_t revision, int runs, double *cpu)
{
	double t[64], c[64];
	for (int r = 0; r < runs; r++) {
		char dir[4096];
		copy_dir(template, dir, sizeof(dir));
		open_job j = {dir, revision};
		result res = in_child(timed_open, &j);
		t[r] = res.v[0];
		c[r] = res.v[1];
		remove_dir(dir);
	}
	*cpu = median(c, runs);
	return median(t, runs);
}

typedef struct replay_cell {
	const char *what;
	double mbs, cpu_mbs; /* per second of wall time, per CPU-second */
} replay_cell;

static replay_cell replay(log_shape shape, uint64_t mib, int runs)
{
	char tpl[4096];
	make_dir(tpl, sizeof(tpl), "log");
	log_job j = {tpl, shape, mib << 20};
	double t0 = now_s();
	result w = in_child(write_log, &j);
	double write_s = now_s() - t0;
	int segs;
	uint64_t bytes = files_bytes(tpl, "wal-", ".log", &segs);
	double cpu, open_s = median_open(tpl, w.u[0], runs, &cpu);
	remove_dir(tpl);
	replay_cell c = {shape_name[shape], (double)bytes / 1e6 / open_s,
	                 (double)bytes / 1e6 / cpu};
	printf("| %s | %" PRIu64 " | %.1f | %d | %.3f | %.3f | **%.0f** | %.0f | %.0f | %.1f |\n",
	       c.what, w.u[1], (double)bytes / 1e6, segs, open_s, cpu, c.mbs, c.cpu_mbs,
	       (double)w.u[1] / open_s / 1e3, write_s);
	return c;
}

/* ---- checkpoints --------------------------------------------------------- */

/* 1,000 contexts "f-NNNN" holding `keys` keys of 15 + 64 bytes in all. */
static void fill_cold(ctx_store *s, long keys)
{
	char id[32], key[32], val[64];
	memset(val, 'c', sizeof(val));
	long per = keys / 1000 > 0 ? keys / 1000 : 1;
	for (int c = 0; c < 1000; c++) {
		snprintf(id, sizeof(id), "f-%04d", c);
		CHECK(ctx_create(s, id));
		ctx_txn *t;
		CHECK(ctx_txn_begin(s, id, &t));
		for (long i = 0; i < per; i++) {
			int kl = snprintf(key, sizeof(key), "key-%011ld", i);
			CHECK(ctx_txn_put(t, key, (size_t)kl, val, sizeof(val)));
		}
		CHECK(ctx_txn_commit(t, 0, NULL));
	}
}

typedef struct ckpt_job {
	const char *dir;
	long keys;
	int runs;
} ckpt_job;

static uint64_t checkpoint_bytes(const char *dir, ctx_store *s)
{
	ctx_stats st;
	ctx_get_stats(s, &st);
	char p[4096];
	snprintf(p, sizeof(p), "%s/ckpt-%016" PRIx64 ".ckpt", dir, st.checkpoint_revision);
	return used_bytes(p);
}

/* Child: fill, then time `runs` checkpoints (one commit between them). */
static void write_checkpoints(void *arg, result *out)
{
	ckpt_job *j = arg;
	ctx_store *s = open_dir(j->dir, CTX_DURABILITY_BATCH);
	CHECK(ctx_create(s, "marker"));
	fill_cold(s, j->keys);
	double t[64];
	uint64_t bytes = 0;
	for (int r = 0; r < j->runs; r++) {
		CHECK(ctx_put(s, "marker", "r", 1, &r, sizeof(r), NULL));
		double t0 = now_s();
		CHECK(ctx_checkpoint(s));
		t[r] = now_s() - t0;
		bytes = checkpoint_bytes(j->dir, s);
	}
	out->v[0] = median(t, j->runs);
	out->u[0] = sync_all(s);
	out->u[1] = bytes;
}

typedef struct ckpt_cell {
	double write_mbs, load_mbs;
} ckpt_cell;

static ckpt_cell checkpoints(long keys, int runs)
{
	char tpl[4096];
	make_dir(tpl, sizeof(tpl), "ckpt");
	ckpt_job j = {tpl, keys, runs};
	result w = in_child(write_checkpoints, &j);
	uint64_t bytes = w.u[1];
	uint64_t log = files_bytes(tpl, "wal-", ".log", NULL);
	double cpu, open_s = median_open(tpl, w.u[0], runs, &cpu);
	remove_dir(tpl);
	ckpt_cell c = {(double)bytes / 1e6 / w.v[0], (double)bytes / 1e6 / open_s};
	printf("| write (ctx_checkpoint, synced) | %ld | %.1f | %.3f | **%.0f** |\n", keys,
	       (double)bytes / 1e6, w.v[0], c.write_mbs);
	printf(
	    "| load (ctx_open; %.2f MB of log on disk besides) | %ld | %.1f | %.3f | **%.0f** |\n",
	    (double)log / 1e6, keys, (double)bytes / 1e6, open_s, c.load_mbs);
	return c;
}

/* ---- commit latency with and without background checkpoints -------------- */

/* Latencies in ns, grown as needed. */
typedef struct lat_vec {
	uint32_t *v;
	size_t n, cap;
} lat_vec;

static void lat_push(lat_vec *l, uint64_t ns)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1 << 20;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			die("realloc");
	}
	l->v[l->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static void lat_append(lat_vec *to, const lat_vec *from)
{
	for (size_t i = 0; i < from->n; i++)
		lat_push(to, from->v[i]);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

typedef struct phase {
	ctx_store *s;
	atomic_bool stop;
	atomic_long checkpoints;
} phase;

typedef struct writer_arg {
	phase *p;
	int id;
	lat_vec lat;
} writer_arg;

static void *writer(void *arg)
{
	writer_arg *w = arg;
	char id[16], key[16], val[64];
	memset(val, 'w', sizeof(val));
	uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1);
	char name[16];
	snprintf(name, sizeof(name), "lat-writer%d", w->id);
	pthread_setname_np(pthread_self(), name); /* for perf sched */
	while (!atomic_load_explicit(&w->p->stop, memory_order_relaxed)) {
		uint64_t r = xorshift(&rng);
		snprintf(id, sizeof(id), "hot-%d", (int)(r % 8));
		int kl = snprintf(key, sizeof(key), "key-%02d", (int)((r >> 8) % 16));
		uint64_t t0 = now_ns();
		CHECK(ctx_put(w->p->s, id, key, (size_t)kl, val, sizeof(val), NULL));
		lat_push(&w->lat, now_ns() - t0);
	}
	return NULL;
}

static void *checkpointer(void *arg)
{
	phase *p = arg;
	pthread_setname_np(pthread_self(), "lat-ckpt");
	while (!atomic_load(&p->stop)) {
		CHECK(ctx_checkpoint(p->s));
		atomic_fetch_add(&p->checkpoints, 1);
	}
	return NULL;
}

/* One phase of `secs` with `writers` writers, and a checkpointing thread if
 * `on`; the latencies are added to *all. Returns commits per second. */
static double run_phase(ctx_store *s, int writers, bool on, double secs, lat_vec *all, long *ckpts)
{
	phase p = {.s = s};
	writer_arg w[2] = {{&p, 0, {0}}, {&p, 1, {0}}};
	pthread_t wt[2], ct;
	if (on && pthread_create(&ct, NULL, checkpointer, &p) != 0)
		die("pthread_create");
	double t0 = now_s();
	for (int i = 0; i < writers; i++)
		if (pthread_create(&wt[i], NULL, writer, &w[i]) != 0)
			die("pthread_create");
	sleep_s(secs);
	atomic_store(&p.stop, true);
	size_t ops = 0;
	for (int i = 0; i < writers; i++) {
		pthread_join(wt[i], NULL);
		ops += w[i].lat.n;
		lat_append(all, &w[i].lat);
		free(w[i].lat.v);
	}
	double el = now_s() - t0;
	if (on)
		pthread_join(ct, NULL);
	*ckpts += atomic_load(&p.checkpoints);
	return (double)ops / el;
}

typedef struct lat_job {
	const char *dir;
	ctx_durability durability;
	long keys;
	double secs;
	int rounds;
	int max_writers; /* 1 or 2: the rows of 1 writer, or of 1 and 2 */
} lat_job;

static void lat_stats(lat_vec *l, double *out)
{
	qsort(l->v, l->n, sizeof(*l->v), cmp_u32);
	out[0] = l->v[l->n / 2] / 1e3;
	out[1] = l->v[l->n * 99 / 100] / 1e3;
	out[2] = l->v[l->n * 999 / 1000] / 1e3;
	out[3] = l->v[l->n - 1] / 1e3;
}

/* Child: fill, then for 1 and 2 writers alternate off and on phases. Result
 * v[0..3] off p50, p99, p99.9, max (µs) and v[4..7] on, for 1 writer; the
 * 2-writer figures go to stdout directly (a result holds one set). */
static void latency(void *arg, result *out)
{
	lat_job *j = arg;
	ctx_store *s = open_dir(j->dir, j->durability);
	fill_cold(s, j->keys);
	for (int i = 0; i < 8; i++) {
		char id[16];
		snprintf(id, sizeof(id), "hot-%d", i);
		CHECK(ctx_create(s, id));
	}
	const char *mode = j->durability == CTX_DURABILITY_BATCH ? "batch" : "none";
	for (int writers = 1; writers <= j->max_writers; writers++) {
		lat_vec off = {0}, on = {0};
		double rate_off[16], rate_on[16];
		long ck_off = 0, ck_on = 0;
		for (int r = 0; r < j->rounds; r++) {
			rate_off[r] = run_phase(s, writers, false, j->secs, &off, &ck_off);
			rate_on[r] = run_phase(s, writers, true, j->secs, &on, &ck_on);
		}
		double a[4], b[4];
		lat_stats(&off, a);
		lat_stats(&on, b);
		printf("| %s | %d | off | %.0f | %.1f | %.1f | %.1f | %.0f | - |\n", mode, writers,
		       median(rate_off, j->rounds) / 1e3, a[0], a[1], a[2], a[3]);
		printf("| %s | %d | on (%ld checkpoints) | %.0f | %.1f | **%.1f** (%.2fx) | %.1f | "
		       "%.0f | %s |\n",
		       mode, writers, ck_on, median(rate_on, j->rounds) / 1e3, b[0], b[1],
		       b[1] / a[1], b[2], b[3],
		       b[1] / a[1] < GOAL_P99_RATIO ? "met" : "**missed**");
		fflush(stdout);
		if (writers == 1)
			for (int i = 0; i < 4; i++) {
				out->v[i] = a[i];
				out->v[4 + i] = b[i];
			}
		else
			out->u[0] = (uint64_t)(b[1] / a[1] * 1000);
		free(off.v);
		free(on.v);
	}
}

/* ---- main ---------------------------------------------------------------- */

/* The two steps of the replay measure alone, for profiling an open
 * (perf record -g ctxrecovery open DIR): "log DIR MIB [SHAPE]" writes a log
 * without a checkpoint into DIR; "open DIR" times one ctx_open of DIR (which
 * then holds a new segment: open a copy). And the latency table alone, for
 * one durability: "latency none|batch KEYS SECS ROUNDS [WRITERS] [DIR]"
 * prints its rows for 1 writer (1 and 2 with WRITERS 2). */
static int tool(int argc, char **argv)
{
	if (strcmp(argv[1], "log") == 0 && argc >= 4) {
		log_job j = {argv[2], argc > 4 ? (log_shape)(atoi(argv[4]) % 3) : LOG_SMALL,
		             strtoull(argv[3], NULL, 10) << 20};
		result r = in_child(write_log, &j);
		printf("%" PRIu64 " records, %.1f MB of log, last revision %" PRIu64 "\n", r.u[1],
		       (double)files_bytes(argv[2], "wal-", ".log", NULL) / 1e6, r.u[0]);
		return 0;
	}
	if (strcmp(argv[1], "open") == 0 && argc >= 3) {
		open_job j = {argv[2], 0};
		result r = in_child(timed_open, &j);
		printf("ctx_open: %.3f s, %.3f CPU-s, %" PRIu64 " contexts\n", r.v[0], r.v[1],
		       r.u[0]);
		return 0;
	}
	if (strcmp(argv[1], "latency") == 0 && argc >= 6) {
		char dir[4096];
		base_dir = argc > 7 ? argv[7] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
		make_dir(dir, sizeof(dir), "lat");
		lat_job j = {
		    dir,
		    strcmp(argv[2], "batch") == 0 ? CTX_DURABILITY_BATCH : CTX_DURABILITY_NONE,
		    atol(argv[3]),
		    atof(argv[4]),
		    atoi(argv[5]),
		    argc > 6 && atoi(argv[6]) == 2 ? 2 : 1};
		if (j.keys < 1000 || j.secs <= 0 || j.rounds < 1 || j.rounds > 16) {
			remove_dir(dir);
			return 2;
		}
		in_child(latency, &j);
		remove_dir(dir);
		return 0;
	}
	fprintf(stderr, "usage: ctxrecovery log DIR MIB [SHAPE: 0 small values, 1 "
	                "large values, 2 transactions] | ctxrecovery open DIR | ctxrecovery "
	                "latency none|batch KEYS SECS ROUNDS [WRITERS 1|2] [DIR]\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "log") == 0 || strcmp(argv[1], "open") == 0 ||
	                 strcmp(argv[1], "latency") == 0))
		return tool(argc, argv);
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 128;
	long keys = argc > 2 ? atol(argv[2]) : 1000000;
	int runs = argc > 3 ? atoi(argv[3]) : 5;
	double secs = argc > 4 ? atof(argv[4]) : 1.5;
	int rounds = argc > 5 ? atoi(argv[5]) : 3;
	base_dir = argc > 6 ? argv[6] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	if (mib < 1 || keys < 1000 || runs < 1 || runs > 64 || secs <= 0 || rounds < 1 ||
	    rounds > 16) {
		fprintf(stderr, "usage: ctxrecovery [log MiB] [keys >= 1000] [runs 1..64] "
		                "[phase seconds] [rounds 1..16] [directory]\n");
		return 2;
	}
	double start = now_s();

	printf("Replay: ctx_open of a store with a log and no checkpoint (warm page cache), "
	       "median of %d opens. MB = 10^6 bytes.\n\n",
	       runs);
	printf("| log | records | log MB | segments | open s | CPU s | replay MB/s | MB per "
	       "CPU-s | k records/s | writing it, s |\n");
	printf("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
	replay_cell cells[3];
	for (int i = 0; i < 3; i++)
		cells[i] = replay((log_shape)i, mib, runs);

	printf("\nCheckpoints: 1,000 contexts, 15-byte keys, 64-byte values, median of %d.\n\n",
	       runs);
	printf("| what | keys | checkpoint MB | s | MB/s |\n|---|--:|--:|--:|--:|\n");
	ckpt_cell ck = checkpoints(keys, runs);

	printf("\nCommit latency (one put of 64 bytes to a random key of 8 hot contexts) beside "
	       "%ld cold keys, with ctx_checkpoint running back to back (on) or not (off); "
	       "%d rounds of %.2f s per phase, phases alternating; percentiles over all "
	       "commits of a row, throughput the median of its rounds.\n\n",
	       keys, rounds, secs);
	printf("| durability | writers | checkpoints | k commits/s | p50 µs | p99 µs (on/off) | "
	       "p99.9 µs | max µs | p99 < %.0fx off |\n",
	       GOAL_P99_RATIO);
	printf("|---|--:|---|--:|--:|--:|--:|--:|---|\n");
	double ratio[2][2];
	ctx_durability modes[2] = {CTX_DURABILITY_BATCH, CTX_DURABILITY_NONE};
	for (int m = 0; m < 2; m++) {
		char dir[4096];
		make_dir(dir, sizeof(dir), "lat");
		lat_job j = {dir, modes[m], keys, secs, rounds, 2};
		result r = in_child(latency, &j);
		remove_dir(dir);
		ratio[m][0] = r.v[5] / r.v[1];
		ratio[m][1] = (double)r.u[0] / 1000;
	}

	printf("\n| goal | figure | result |\n|---|--:|---|\n");
	for (int i = 0; i < 3; i++)
		printf("| replay >= %.0f MB/s of log: %s | %.0f MB/s (%.0f per CPU-s) | %s |\n",
		       GOAL_REPLAY_MBS, cells[i].what, cells[i].mbs, cells[i].cpu_mbs,
		       cells[i].mbs >= GOAL_REPLAY_MBS ? "met" : "**missed**");
	for (int m = 0; m < 2; m++)
		for (int w = 0; w < 2; w++)
			printf("| commit p99 with background checkpoints < %.0fx without: %s, %d "
			       "writer%s | %.2fx | %s |\n",
			       GOAL_P99_RATIO, m ? "none" : "batch", w + 1, w ? "s" : "",
			       ratio[m][w], ratio[m][w] < GOAL_P99_RATIO ? "met" : "**missed**");
	printf("| checkpoint write, load (no goal) | %.0f, %.0f MB/s | - |\n", ck.write_mbs,
	       ck.load_mbs);
	printf("\nctxrecovery took %.0f s\n", now_s() - start);
	return 0;
}
