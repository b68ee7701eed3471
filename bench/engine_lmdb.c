/*
 * engine_lmdb.c - LMDB, used the way lmdb.h recommends:
 *
 *   - one environment for the process, shared by all threads, opened with
 *     MDB_NOTLS so that read transactions belong to the worker handle rather
 *     than the OS thread;
 *   - one long-lived read-only transaction per thread, mdb_txn_reset() after
 *     each read and mdb_txn_renew() before the next (no malloc per read), and a
 *     read-only cursor renewed with mdb_cursor_renew() for range scans;
 *   - write transactions serialized by LMDB's own writer lock;
 *   - default sync (lmdb-sync: every commit fsyncs) or MDB_NOSYNC
 *     (lmdb-nosync: the OS writes the pages whenever; a system crash may lose
 *     the last commits; with a plain mmap the file cannot be corrupted);
 *   - one database; a pair is stored under the key "ctxid\0key", so one
 *     context's keys are adjacent and "read a whole context" is one cursor
 *     range starting at "ctxid\0".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "bench.h"

typedef struct lmdb_engine {
	MDB_env *env;
	MDB_dbi dbi;
} lmdb_engine;

typedef struct lmdb_worker {
	lmdb_engine *e;
	MDB_txn *rtxn; /* reset between reads */
	MDB_cursor *cursor;
} lmdb_worker;

const char *bench_lmdb_version(void)
{
	return mdb_version(NULL, NULL, NULL);
}

/* Build "id\0key" into buf (at least CTX_ID_MAX + 64 bytes). */
static size_t make_key(char *buf, const char *id, const char *key)
{
	size_t il = strlen(id), kl = strlen(key);
	memcpy(buf, id, il + 1);
	memcpy(buf + il + 1, key, kl);
	return il + 1 + kl;
}

static int lmdb_engine_open(const engine_def *d, const char *dir, void **eng, char *msg,
                            size_t msglen)
{
	lmdb_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return ENGINE_ERROR;
	MDB_txn *txn;
	int rc = mdb_env_create(&e->env);
	if (rc == 0)
		rc = mdb_env_set_mapsize(e->env, (size_t)16 << 30);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(e->env, 1024);
	if (rc == 0)
		rc = mdb_env_open(e->env, dir, MDB_NOTLS | (d->variant ? 0 : MDB_NOSYNC), 0644);
	if (rc == 0)
		rc = mdb_txn_begin(e->env, NULL, 0, &txn);
	if (rc == 0) {
		rc = mdb_dbi_open(txn, NULL, 0, &e->dbi);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	if (rc != 0) {
		bench_msg(msg, msglen, "lmdb open %s: %s", dir, mdb_strerror(rc));
		if (e->env)
			mdb_env_close(e->env);
		free(e);
		return ENGINE_ERROR;
	}
	*eng = e;
	return ENGINE_OK;
}

static void lmdb_engine_close(void *eng)
{
	lmdb_engine *e = eng;
	mdb_env_close(e->env);
	free(e);
}

static int lmdb_engine_load(void *eng, const char *const *ids, size_t nctx, const char *const *keys,
                            char *msg, size_t msglen)
{
	lmdb_engine *e = eng;
	char val[BENCH_VALUE_LEN], kb[512];
	memset(val, 'v', sizeof(val));
	MDB_txn *txn = NULL;
	int rc = mdb_txn_begin(e->env, NULL, 0, &txn);
	for (size_t i = 0; rc == 0 && i < nctx; i++) {
		for (int k = 0; rc == 0 && k < BENCH_KEYS_PER_CTX; k++) {
			MDB_val mk = {make_key(kb, ids[i], keys[k]), kb};
			MDB_val mv = {sizeof(val), val};
			rc = mdb_put(txn, e->dbi, &mk, &mv, 0);
		}
	}
	if (rc == 0)
		rc = mdb_txn_commit(txn);
	else if (txn)
		mdb_txn_abort(txn);
	if (rc != 0) {
		bench_msg(msg, msglen, "lmdb load: %s", mdb_strerror(rc));
		return -1;
	}
	return 0;
}

static void *lmdb_worker_new(void *eng)
{
	lmdb_engine *e = eng;
	lmdb_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->e = e;
	if (mdb_txn_begin(e->env, NULL, MDB_RDONLY, &w->rtxn) != 0) {
		free(w);
		return NULL;
	}
	if (mdb_cursor_open(w->rtxn, e->dbi, &w->cursor) != 0) {
		mdb_txn_abort(w->rtxn);
		free(w);
		return NULL;
	}
	mdb_txn_reset(w->rtxn);
	return w;
}

static void lmdb_worker_free(void *ww)
{
	lmdb_worker *w = ww;
	mdb_cursor_close(w->cursor);
	mdb_txn_abort(w->rtxn);
	free(w);
}

static int lmdb_op_create(void *ww, const char *id, const char *const *keys, int nkeys,
                          const void *val, size_t vlen)
{
	lmdb_worker *w = ww;
	char kb[512];
	MDB_txn *txn;
	int rc = mdb_txn_begin(w->e->env, NULL, 0, &txn);
	if (rc)
		return -1;
	for (int k = 0; rc == 0 && k < nkeys; k++) {
		MDB_val mk = {make_key(kb, id, keys[k]), kb};
		MDB_val mv = {vlen, (void *)val};
		rc = mdb_put(txn, w->e->dbi, &mk, &mv, MDB_NOOVERWRITE);
	}
	if (rc) {
		mdb_txn_abort(txn);
		return -1;
	}
	return mdb_txn_commit(txn) ? -1 : 0;
}

static int lmdb_op_update(void *ww, const char *id, const char *key, const void *val, size_t vlen)
{
	lmdb_worker *w = ww;
	char kb[512];
	MDB_txn *txn;
	if (mdb_txn_begin(w->e->env, NULL, 0, &txn))
		return -1;
	MDB_val mk = {make_key(kb, id, key), kb};
	MDB_val mv = {vlen, (void *)val};
	if (mdb_put(txn, w->e->dbi, &mk, &mv, 0)) {
		mdb_txn_abort(txn);
		return -1;
	}
	return mdb_txn_commit(txn) ? -1 : 0;
}

static int lmdb_op_read(void *ww, const char *id, const char *key, void *buf, size_t *vlen)
{
	lmdb_worker *w = ww;
	char kb[512];
	if (mdb_txn_renew(w->rtxn))
		return -1;
	MDB_val mk = {make_key(kb, id, key), kb}, mv;
	int rc = -1;
	if (mdb_get(w->rtxn, w->e->dbi, &mk, &mv) == 0 && mv.mv_size <= BENCH_MAX_VALUE) {
		memcpy(buf, mv.mv_data, mv.mv_size);
		*vlen = mv.mv_size;
		rc = 0;
	}
	mdb_txn_reset(w->rtxn);
	return rc;
}

static int lmdb_op_read_all(void *ww, const char *id, void *buf, size_t cap, size_t *npairs)
{
	lmdb_worker *w = ww;
	size_t il = strlen(id) + 1; /* the prefix "id\0" */
	if (mdb_txn_renew(w->rtxn))
		return -1;
	if (mdb_cursor_renew(w->rtxn, w->cursor)) {
		mdb_txn_reset(w->rtxn);
		return -1;
	}
	MDB_val mk = {il, (void *)id}, mv;
	size_t off = 0, n = 0;
	int rc = mdb_cursor_get(w->cursor, &mk, &mv, MDB_SET_RANGE);
	while (rc == 0 && mk.mv_size >= il && memcmp(mk.mv_data, id, il) == 0) {
		if (off + mv.mv_size > cap)
			break;
		memcpy((char *)buf + off, mv.mv_data, mv.mv_size);
		off += mv.mv_size;
		n++;
		rc = mdb_cursor_get(w->cursor, &mk, &mv, MDB_NEXT);
	}
	mdb_txn_reset(w->rtxn);
	*npairs = n;
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : -1;
}

#define LMDB_ENGINE(var, nm, grp, sync)                                                            \
	const engine_def var = {.name = nm,                                                        \
	                        .group = grp,                                                      \
	                        .family = "lmdb",                                                  \
	                        .variant = sync,                                                   \
	                        .open = lmdb_engine_open,                                          \
	                        .load = lmdb_engine_load,                                          \
	                        .close = lmdb_engine_close,                                        \
	                        .worker_new = lmdb_worker_new,                                     \
	                        .worker_free = lmdb_worker_free,                                   \
	                        .create = lmdb_op_create,                                          \
	                        .update = lmdb_op_update,                                          \
	                        .read = lmdb_op_read,                                              \
	                        .read_all = lmdb_op_read_all}

LMDB_ENGINE(engine_lmdb_nosync, "lmdb-nosync", "batch", 0);
LMDB_ENGINE(engine_lmdb_sync, "lmdb-sync", "durable", 1);
