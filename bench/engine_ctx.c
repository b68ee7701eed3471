/*
 * engine_ctx.c - ctx itself, through its public API only (include/ctx.h).
 *
 * Three engines: memory only (ctx-mem), and a data directory with durability
 * BATCH (10 ms) or ALWAYS. A store is shared by all threads with no
 * per-thread state, as ctx.h allows, so a worker handle is the store itself.
 *
 * CTX_BENCH_HISTORY_DEPTH in the environment sets the stores' history_depth
 * (open_store); the default cells leave it unset.
 *
 * Until the library supports data directories, ctx_open with a dir returns
 * CTX_INVALID: the durable engines then report "not available" and the
 * harness prints n/a for their cells. Nothing here changes once it does.
 *
 * Loading the ALWAYS engine commits 2 versions per context; with an fsync
 * each that would take longer than many cells, so the data set is loaded
 * with durability BATCH, the store closed, and reopened with ALWAYS (which
 * also exercises recovery). The measured operations all run under ALWAYS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ctx.h"

typedef struct ctx_engine {
	const engine_def *def;
	ctx_store *store;
	char dir[4096];
} ctx_engine;

static ctx_status open_store(ctx_engine *e, ctx_durability durability, ctx_store **out)
{
	ctx_options o;
	ctx_options_init(&o);
	o.max_contexts = 100u * 1000 * 1000; /* "create" cells make millions */
	/* CTX_BENCH_HISTORY_DEPTH=N: keep N versions per context instead of
	 * the library's default (64), to measure what kept history costs
	 * (docs/benchmarks.md, round 8). Unset or 0: the default. */
	const char *depth = getenv("CTX_BENCH_HISTORY_DEPTH");
	if (depth)
		o.history_depth = (size_t)strtoull(depth, NULL, 10);
	if (durability != CTX_DURABILITY_NONE) {
		o.dir = e->dir;
		o.durability = durability;
		o.batch_ms = 10;
	}
	return ctx_open(&o, out);
}

static int ctx_engine_open(const engine_def *d, const char *dir, void **eng, char *msg,
                           size_t msglen)
{
	ctx_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return ENGINE_ERROR;
	e->def = d;
	snprintf(e->dir, sizeof(e->dir), "%s", dir);
	ctx_status st = open_store(e, (ctx_durability)d->variant, &e->store);
	if (st != CTX_OK) {
		bench_msg(msg, msglen, "ctx_open: %s: %s", ctx_strerror(st), ctx_last_error());
		free(e);
		/* CTX_INVALID for a dir: persistence is not in this build yet. */
		return st == CTX_INVALID && d->variant != CTX_DURABILITY_NONE ? ENGINE_NA
		                                                              : ENGINE_ERROR;
	}
	*eng = e;
	return ENGINE_OK;
}

static void ctx_engine_close(void *eng)
{
	ctx_engine *e = eng;
	ctx_close(e->store);
	free(e);
}

static int load_into(ctx_store *s, const char *const *ids, size_t nctx, const char *const *keys,
                     char *msg, size_t msglen)
{
	char val[BENCH_VALUE_LEN];
	memset(val, 'v', sizeof(val));
	for (size_t i = 0; i < nctx; i++) {
		/* The context and its keys in one commit, as the peers load each
		 * context in one transaction (no empty first version). */
		ctx_txn *t = NULL;
		ctx_status st = ctx_txn_begin_create(s, ids[i], &t);
		for (int k = 0; st == CTX_OK && k < BENCH_KEYS_PER_CTX; k++)
			st = ctx_txn_put(t, keys[k], strlen(keys[k]), val, sizeof(val));
		if (st == CTX_OK)
			st = ctx_txn_commit(t, 0, NULL);
		else
			ctx_txn_abort(t);
		if (st != CTX_OK) {
			bench_msg(msg, msglen, "load %s: %s: %s", ids[i], ctx_strerror(st),
			          ctx_last_error());
			return -1;
		}
	}
	return 0;
}

static int ctx_engine_load(void *eng, const char *const *ids, size_t nctx, const char *const *keys,
                           char *msg, size_t msglen)
{
	ctx_engine *e = eng;
	if (e->def->variant != CTX_DURABILITY_ALWAYS)
		return load_into(e->store, ids, nctx, keys, msg, msglen);

	ctx_close(e->store);
	e->store = NULL;
	ctx_store *s;
	ctx_status st = open_store(e, CTX_DURABILITY_BATCH, &s);
	if (st == CTX_OK) {
		int rc = load_into(s, ids, nctx, keys, msg, msglen);
		ctx_close(s);
		if (rc)
			st = CTX_IO;
		else
			st = open_store(e, CTX_DURABILITY_ALWAYS, &e->store);
	}
	if (st != CTX_OK && !e->store) {
		bench_msg(msg, msglen, "reopen for load: %s: %s", ctx_strerror(st),
		          ctx_last_error());
		/* Leave a usable store for close(). */
		ctx_options o;
		ctx_options_init(&o);
		ctx_open(&o, &e->store);
		return -1;
	}
	return 0;
}

static void *ctx_worker_new(void *eng)
{
	return ((ctx_engine *)eng)->store;
}

static void ctx_worker_free(void *w) {}

/* A context and its keys are created in one commit (ctx_txn_begin_create),
 * as the peers do in one transaction. Cleared by `ctxbench run
 * --create-two-commits`: ctx_create, then a transaction of the puts (two
 * commits, two fsyncs under ALWAYS), the only way before ctx_txn_begin_create. */
bool bench_ctx_create_one_commit = true;

static int ctx_op_create(void *w, const char *id, const char *const *keys, int nkeys,
                         const void *val, size_t vlen)
{
	ctx_store *s = w;
	ctx_txn *t;
	if (bench_ctx_create_one_commit) {
		if (ctx_txn_begin_create(s, id, &t) != CTX_OK)
			return -1;
	} else if (ctx_create(s, id) != CTX_OK || ctx_txn_begin(s, id, &t) != CTX_OK) {
		return -1;
	}
	for (int k = 0; k < nkeys; k++) {
		if (ctx_txn_put(t, keys[k], strlen(keys[k]), val, vlen) != CTX_OK) {
			ctx_txn_abort(t);
			return -1;
		}
	}
	return ctx_txn_commit(t, 0, NULL) == CTX_OK ? 0 : -1;
}

static int ctx_op_update(void *w, const char *id, const char *key, const void *val, size_t vlen)
{
	return ctx_put(w, id, key, strlen(key), val, vlen, NULL) == CTX_OK ? 0 : -1;
}

/* One key, copied out like LMDB's engine does (ctx_get_value: no reference
 * to the version is taken). */
/* One key, copied out like LMDB's engine does (ctx_get_value: no reference
 * to the version is taken). */
static int ctx_op_read(void *w, const char *id, const char *key, void *buf, size_t *vlen)
{
	return ctx_get_value(w, id, key, strlen(key), buf, BENCH_MAX_VALUE, vlen) == CTX_OK ? 0
	                                                                                    : -1;
}

typedef struct copy_out {
	char *buf;
	size_t cap, off, n;
	bool overflow;
} copy_out;

static bool copy_pair(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	copy_out *o = arg;
	(void)key;
	(void)klen;
	if (o->off + vlen > o->cap) {
		o->overflow = true;
		return false;
	}
	memcpy(o->buf + o->off, val, vlen);
	o->off += vlen;
	o->n++;
	return true;
}

/* A whole context, every value copied out like LMDB's engine does
 * (ctx_get_each: no allocation, no reference). */
static int ctx_op_read_all(void *w, const char *id, void *buf, size_t cap, size_t *npairs)
{
	copy_out o = {buf, cap, 0, 0, false};
	if (ctx_get_each(w, id, copy_pair, &o) != CTX_OK)
		return -1;
	*npairs = o.n;
	return o.overflow ? -1 : 0;
}

#define CTX_ENGINE(var, nm, grp, durability)                                                       \
	const engine_def var = {.name = nm,                                                        \
	                        .group = grp,                                                      \
	                        .family = "ctx",                                                   \
	                        .variant = durability,                                             \
	                        .open = ctx_engine_open,                                           \
	                        .load = ctx_engine_load,                                           \
	                        .close = ctx_engine_close,                                         \
	                        .worker_new = ctx_worker_new,                                      \
	                        .worker_free = ctx_worker_free,                                    \
	                        .create = ctx_op_create,                                           \
	                        .update = ctx_op_update,                                           \
	                        .read = ctx_op_read,                                               \
	                        .read_all = ctx_op_read_all}

CTX_ENGINE(engine_ctx_mem, "ctx-mem", "memory", CTX_DURABILITY_NONE);
CTX_ENGINE(engine_ctx_batch, "ctx-batch", "batch", CTX_DURABILITY_BATCH);
CTX_ENGINE(engine_ctx_always, "ctx-always", "durable", CTX_DURABILITY_ALWAYS);
