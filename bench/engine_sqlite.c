/*
 * engine_sqlite.c - SQLite, used the way its documentation recommends for a
 * multi-threaded key/value workload:
 *
 *   - WAL mode (readers do not block writers nor writers readers);
 *   - one connection per thread, opened with SQLITE_OPEN_NOMUTEX ("multi-thread"
 *     mode: a connection is never shared, so its mutex is pure overhead);
 *   - synchronous=FULL (sqlite-full: every commit fsyncs the WAL) or NORMAL
 *     (sqlite-normal: the WAL is fsynced at checkpoints; a power loss may roll
 *     back the last commits, never corrupt);
 *   - a busy_timeout so that concurrent writers wait for the write lock
 *     instead of failing (5 s: long enough that nothing fails under 64
 *     threads, short enough that a cell always ends);
 *   - one table (ctx_id, key, value) with the primary key (ctx_id, key),
 *     WITHOUT ROWID (recommended for tables keyed by a non-integer composite
 *     key: one b-tree instead of a table plus an index);
 *   - prepared statements, reset and re-bound for every operation;
 *   - a multi-row write (create) as BEGIN IMMEDIATE ... COMMIT, so that it
 *     takes the write lock up front and waits in the busy handler instead of
 *     failing with SQLITE_BUSY on the upgrade from a read transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "bench.h"

typedef struct sqlite_engine {
	const engine_def *def;
	char path[4096];
	sqlite3 *db; /* the opener's connection, kept open for the engine's life */
} sqlite_engine;

enum { ST_GET, ST_GET_ALL, ST_UPSERT, ST_INSERT, ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_COUNT };

static const char *const statements[ST_COUNT] = {
    [ST_GET] = "SELECT value FROM kv WHERE ctx_id = ?1 AND key = ?2",
    [ST_GET_ALL] = "SELECT key, value FROM kv WHERE ctx_id = ?1",
    [ST_UPSERT] = ("INSERT INTO kv (ctx_id, key, value) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT (ctx_id, key) DO UPDATE SET value = excluded.value"),
    [ST_INSERT] = "INSERT INTO kv (ctx_id, key, value) VALUES (?1, ?2, ?3)",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
};

typedef struct sqlite_worker {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
} sqlite_worker;

const char *bench_sqlite_version(void)
{
	return sqlite3_libversion();
}

static int sqlite_connect(const sqlite_engine *e, sqlite3 **out, char *msg, size_t msglen)
{
	sqlite3 *db;
	int rc = sqlite3_open_v2(
	    e->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(db, 5000);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(
		    db, e->def->variant ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
		    NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		bench_msg(msg, msglen, "sqlite open %s: %s", e->path, sqlite3_errmsg(db));
		sqlite3_close(db);
		return -1;
	}
	*out = db;
	return 0;
}

static int sqlite_engine_open(const engine_def *d, const char *dir, void **eng, char *msg,
                              size_t msglen)
{
	sqlite_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return ENGINE_ERROR;
	e->def = d;
	snprintf(e->path, sizeof(e->path), "%s/bench.db", dir);
	if (sqlite_connect(e, &e->db, msg, msglen)) {
		free(e);
		return ENGINE_ERROR;
	}
	char *err = NULL;
	if (sqlite3_exec(e->db,
	                 "PRAGMA journal_mode=WAL;"
	                 "CREATE TABLE IF NOT EXISTS kv (ctx_id TEXT NOT NULL, key TEXT NOT NULL,"
	                 " value BLOB NOT NULL, PRIMARY KEY (ctx_id, key)) WITHOUT ROWID",
	                 NULL, NULL, &err) != SQLITE_OK) {
		bench_msg(msg, msglen, "sqlite schema: %s", err ? err : "?");
		sqlite3_free(err);
		sqlite3_close(e->db);
		free(e);
		return ENGINE_ERROR;
	}
	*eng = e;
	return ENGINE_OK;
}

static void sqlite_engine_close(void *eng)
{
	sqlite_engine *e = eng;
	sqlite3_close(e->db);
	free(e);
}

static int sqlite_engine_load(void *eng, const char *const *ids, size_t nctx,
                              const char *const *keys, char *msg, size_t msglen)
{
	sqlite_engine *e = eng;
	char val[BENCH_VALUE_LEN];
	memset(val, 'v', sizeof(val));
	sqlite3_stmt *ins;
	if (sqlite3_prepare_v2(e->db, statements[ST_INSERT], -1, &ins, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_exec(e->db, "BEGIN", NULL, NULL, NULL);
	for (size_t i = 0; i < nctx; i++) {
		for (int k = 0; k < BENCH_KEYS_PER_CTX; k++) {
			sqlite3_bind_text(ins, 1, ids[i], -1, SQLITE_STATIC);
			sqlite3_bind_text(ins, 2, keys[k], -1, SQLITE_STATIC);
			sqlite3_bind_blob(ins, 3, val, sizeof(val), SQLITE_STATIC);
			int rc = sqlite3_step(ins);
			sqlite3_reset(ins);
			if (rc != SQLITE_DONE) {
				sqlite3_finalize(ins);
				sqlite3_exec(e->db, "ROLLBACK", NULL, NULL, NULL);
				goto fail;
			}
		}
	}
	sqlite3_finalize(ins);
	if (sqlite3_exec(e->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	/* Start the measured part from a checkpointed database. */
	sqlite3_wal_checkpoint_v2(e->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	return 0;
fail:
	bench_msg(msg, msglen, "sqlite load: %s", sqlite3_errmsg(e->db));
	return -1;
}

static void sqlite_worker_free(void *w);

static void *sqlite_worker_new(void *eng)
{
	sqlite_engine *e = eng;
	sqlite_worker *w = calloc(1, sizeof(*w));
	char msg[256];
	if (!w || sqlite_connect(e, &w->db, msg, sizeof(msg))) {
		free(w);
		return NULL;
	}
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(w->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT,
		                       &w->st[i], NULL) != SQLITE_OK) {
			fprintf(stderr, "sqlite prepare: %s\n", sqlite3_errmsg(w->db));
			sqlite_worker_free(w);
			return NULL;
		}
	}
	return w;
}

static void sqlite_worker_free(void *ww)
{
	sqlite_worker *w = ww;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(w->st[i]);
	sqlite3_close(w->db);
	free(w);
}

/* Run a statement that returns no rows. */
static int exec_stmt(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int sqlite_op_create(void *ww, const char *id, const char *const *keys, int nkeys,
                            const void *val, size_t vlen)
{
	sqlite_worker *w = ww;
	if (exec_stmt(w->st[ST_BEGIN]))
		return -1;
	sqlite3_stmt *ins = w->st[ST_INSERT];
	for (int k = 0; k < nkeys; k++) {
		sqlite3_bind_text(ins, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 2, keys[k], -1, SQLITE_STATIC);
		sqlite3_bind_blob(ins, 3, val, (int)vlen, SQLITE_STATIC);
		if (exec_stmt(ins)) {
			exec_stmt(w->st[ST_ROLLBACK]);
			return -1;
		}
	}
	if (exec_stmt(w->st[ST_COMMIT])) {
		exec_stmt(w->st[ST_ROLLBACK]);
		return -1;
	}
	return 0;
}

static int sqlite_op_update(void *ww, const char *id, const char *key, const void *val, size_t vlen)
{
	sqlite_worker *w = ww;
	sqlite3_stmt *s = w->st[ST_UPSERT];
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, val, (int)vlen, SQLITE_STATIC);
	return exec_stmt(s);
}

static int sqlite_op_read(void *ww, const char *id, const char *key, void *buf, size_t *vlen)
{
	sqlite_worker *w = ww;
	sqlite3_stmt *s = w->st[ST_GET];
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
	int rc = -1;
	if (sqlite3_step(s) == SQLITE_ROW) {
		const void *v = sqlite3_column_blob(s, 0);
		int n = sqlite3_column_bytes(s, 0);
		if (n <= BENCH_MAX_VALUE) {
			memcpy(buf, v, (size_t)n);
			*vlen = (size_t)n;
			rc = 0;
		}
	}
	sqlite3_reset(s);
	return rc;
}

static int sqlite_op_read_all(void *ww, const char *id, void *buf, size_t cap, size_t *npairs)
{
	sqlite_worker *w = ww;
	sqlite3_stmt *s = w->st[ST_GET_ALL];
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	size_t off = 0, n = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const void *v = sqlite3_column_blob(s, 1);
		size_t len = (size_t)sqlite3_column_bytes(s, 1);
		if (off + len > cap)
			break;
		memcpy((char *)buf + off, v, len);
		off += len;
		n++;
	}
	sqlite3_reset(s);
	*npairs = n;
	return rc == SQLITE_DONE ? 0 : -1;
}

#define SQLITE_ENGINE(var, nm, grp, full)                                                          \
	const engine_def var = {.name = nm,                                                        \
	                        .group = grp,                                                      \
	                        .family = "sqlite",                                                \
	                        .variant = full,                                                   \
	                        .open = sqlite_engine_open,                                        \
	                        .load = sqlite_engine_load,                                        \
	                        .close = sqlite_engine_close,                                      \
	                        .worker_new = sqlite_worker_new,                                   \
	                        .worker_free = sqlite_worker_free,                                 \
	                        .create = sqlite_op_create,                                        \
	                        .update = sqlite_op_update,                                        \
	                        .read = sqlite_op_read,                                            \
	                        .read_all = sqlite_op_read_all}

SQLITE_ENGINE(engine_sqlite_normal, "sqlite-normal", "batch", 0);
SQLITE_ENGINE(engine_sqlite_full, "sqlite-full", "durable", 1);
