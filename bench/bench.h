/*
 * bench.h - the benchmark harness of ctx: engines, latency histograms, helpers.
 *
 * The harness (bench.c) runs workloads against "engines": ctx itself in its
 * three durability modes and its peers (SQLite, LMDB, and a reference
 * reproduction of the design ctx replaces: one rwlock over a hash map). Every
 * engine is reached only through the small table of functions below, so a
 * workload is written once and runs the same way against each of them.
 *
 * An engine is opened fresh for every measured cell in its own directory,
 * loaded with the cell's data set, then driven by worker threads, each with a
 * worker handle of its own (a SQLite connection, an LMDB read transaction...).
 *
 * Every operation returns 0 on success and nonzero on failure; failures are
 * counted separately and never counted as operations.
 */
#ifndef CTX_BENCH_H
#define CTX_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The shape of the data set shared by every workload. */
#define BENCH_KEYS_PER_CTX 16  /* keys of a preloaded context        */
#define BENCH_CREATE_KEYS  4   /* keys of a context made by "create" */
#define BENCH_VALUE_LEN    64  /* bytes of every value               */
#define BENCH_HOT_CTX      8   /* contexts shared by "update"        */
#define BENCH_MAX_VALUE    256 /* largest value a read copies out    */

/* The workloads (see bench.c). */
enum { W_CREATE, W_UPDATE, W_READ, W_READALL, W_MIXED, W_RWW, W_COUNT };
extern const char *const workload_names[W_COUNT];
extern const char *const workload_titles[W_COUNT];

/* What an engine open reports. */
enum { ENGINE_OK = 0, ENGINE_NA = 1, ENGINE_ERROR = -1 };

typedef struct engine_def {
	const char *name;   /* "ctx-mem", "sqlite-full", ...                   */
	const char *group;  /* like-with-like group: "memory", "batch", "durable" */
	const char *family; /* "ctx", "sqlite", "lmdb", "rwlock"             */
	int variant;        /* engine-specific: durability, sync mode...     */

	/* Open a new, empty instance in dir (an existing, empty directory).
	 * ENGINE_NA when the engine is not available in this build (msg says
	 * why), ENGINE_ERROR on failure. */
	int (*open)(const struct engine_def *d, const char *dir, void **eng, char *msg,
	            size_t msglen);
	/* Load nctx contexts named ids[i], each with BENCH_KEYS_PER_CTX keys
	 * keys[0..] and BENCH_VALUE_LEN-byte values, as fast as the engine
	 * allows (one transaction where it has them). */
	int (*load)(void *eng, const char *const *ids, size_t nctx, const char *const *keys,
	            char *msg, size_t msglen);
	void (*close)(void *eng);

	/* Per-thread handles. worker_new runs on the thread that uses it. */
	void *(*worker_new)(void *eng);
	void (*worker_free)(void *w);

	/* A new context id with nkeys keys, all set to val, in one commit
	 * where the engine allows it. */
	int (*create)(void *w, const char *id, const char *const *keys, int nkeys, const void *val,
	              size_t vlen);
	/* Set key of context id to val (the context exists). */
	int (*update)(void *w, const char *id, const char *key, const void *val, size_t vlen);
	/* Copy the value of key in context id into buf (BENCH_MAX_VALUE bytes)
	 * and return its length in *vlen. */
	int (*read)(void *w, const char *id, const char *key, void *buf, size_t *vlen);
	/* Copy every value of context id into buf, one after the other, and
	 * return the number of pairs in *npairs. */
	int (*read_all)(void *w, const char *id, void *buf, size_t cap, size_t *npairs);

} engine_def;

/* The engines, in the order of tables and plots. */
extern const engine_def *const bench_engines[];
extern const size_t bench_engine_count;
const engine_def *bench_engine_find(const char *name);

/* ctx engines: create with one commit (ctx_txn_begin_create; the default),
 * or ctx_create + a transaction if false (--create-two-commits). */
extern bool bench_ctx_create_one_commit;

/* Library versions of the peers, for the report. */
const char *bench_sqlite_version(void);
const char *bench_lmdb_version(void);

/* Engine definitions (engine_*.c). */
extern const engine_def engine_ctx_mem, engine_ctx_batch, engine_ctx_always;
extern const engine_def engine_sqlite_normal, engine_sqlite_full;
extern const engine_def engine_lmdb_nosync, engine_lmdb_sync;
extern const engine_def engine_rwlock;

/* ---- helpers ------------------------------------------------------------ */

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: a fast per-thread generator, good enough to pick keys. */
static inline uint64_t bench_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n) (n small: the bias of the multiply-shift is negligible). */
static inline uint32_t bench_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(((bench_rand(s) >> 32) * (uint64_t)n) >> 32);
}

/* Write msg like snprintf, tolerating a NULL buffer. */
void bench_msg(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Size of the files under dir, in bytes (allocated blocks: st_blocks * 512). */
int64_t bench_dir_bytes(const char *dir);

/* ---- latency histogram -------------------------------------------------- */

/* Log-linear buckets over nanoseconds: exact below 64 ns, then 32 buckets per
 * power of two (about 3% wide), up to 2^42 ns (over an hour). */
#define HIST_SUB_BITS 5
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_LINEAR   (2u * HIST_SUB)
#define HIST_MAX_EXP  42
#define HIST_BUCKETS  (HIST_LINEAR + (HIST_MAX_EXP - HIST_SUB_BITS - 1) * HIST_SUB)

typedef struct hist {
	uint64_t count;
	uint64_t bucket[HIST_BUCKETS];
} hist;

void hist_add(hist *h, uint64_t ns);
void hist_merge(hist *into, const hist *from);
/* The value at quantile q (0..1), in ns: the middle of its bucket. 0 if empty. */
double hist_quantile(const hist *h, double q);

#endif
