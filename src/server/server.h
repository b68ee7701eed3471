/*
 * server.h - the private interface of ctxd between its core (loops,
 * connections, RESP, transactions: server.c, net.c, resp.c, multi.c) and its
 * command files (cmd_*.c). Nothing here is installed; ctxd uses libctx only
 * through include/ctx.h.
 *
 * THREADS
 *   One libuv loop per core. A connection lives on one loop for its whole
 *   life and every command of it runs there, inline, from a snapshot: no
 *   hand-off between threads. Nothing on a loop thread ever blocks: writes use
 *   ctx_txn_commit_nowait, and a reply that must not go out before a revision
 *   is durable is parked (client_need_durable) until the loop's notifier says
 *   it is. Calls that block in libctx (point create, restore, ttl, verify)
 *   run on libuv's thread pool through server_run_blocking.
 *
 * REPLIES
 *   Replies are appended to the client's output buffer with the reply_*
 *   helpers below, in RESP2 or RESP3 according to the connection's protocol.
 *   A command must produce exactly one reply (an array counts as one).
 *   Replies of one read of the socket go out in one write.
 *
 * VISIBILITY (see docs/protocol.md)
 *   Reads come from ctx_get_latest (the newest decided version, durable or
 *   not); the command calls client_need_durable(c, ctx_state_revision(st)),
 *   and the reply is held until that revision is durable. So a client sees
 *   its own writes at once, and no client ever sees a change that a crash
 *   could lose.
 */
#ifndef CTXD_SERVER_H
#define CTXD_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

typedef struct client client;

/* One argument of a command: points into the connection's input buffer (not
 * NUL-terminated, valid only during the call). */
typedef struct arg {
	const char *p;
	size_t n;
} arg;

/* ---- the command table ------------------------------------------------------ */

/* A handler: argv[0] is the command name. The table has checked the arity. */
typedef void cmd_fn(client *c, int argc, const arg *argv);

enum cmd_flags {
	CMD_WRITE = 1 << 0,    /* changes data                                  */
	CMD_READONLY = 1 << 1, /* reads data                                    */
	CMD_NOAUTH = 1 << 2,   /* allowed before AUTH (AUTH, HELLO, QUIT, ...)  */
	CMD_NOMULTI = 1 << 3,  /* refused inside MULTI (WATCH, CTX.WATCH, ...)  */
	CMD_BLOCKING = 1 << 4, /* runs on the thread pool (server_run_blocking) */
	CMD_PUBSUB = 1 << 5,   /* allowed while the connection streams events   */
};

typedef struct command {
	const char *name; /* upper case, e.g. "HSET", "CTX.POINT"              */
	cmd_fn *fn;
	int arity;        /* Redis's: N = exactly N args, -N = at least N      */
	unsigned flags;
	int first_key;    /* argv index of the key (context id), 0 = none      */
	const char *summary; /* for COMMAND DOCS / --help                      */
	const char *group;   /* "hash", "keyspace", "connection", "server", "ctx" */
} command;

/* Each command file exports its rows; the core merges them at start. */
extern const command hash_commands[];  /* cmd_hash.c; ends with a NULL name */
extern const command keys_commands[];  /* cmd_keys.c                       */
extern const command ctx_commands[];   /* cmd_ctx.c                        */
extern const command conn_commands[];  /* cmd_conn.c: connection, server   */
const command *command_lookup(const char *name, size_t n); /* case-insensitive */
size_t command_count(void);
const command *command_at(size_t i);

/* ---- replies ------------------------------------------------------------------ */

int client_resp(const client *c); /* 2 or 3 */
void reply_ok(client *c);                          /* +OK                      */
void reply_simple(client *c, const char *s);       /* +s                       */
void reply_error(client *c, const char *fmt, ...)  /* -<fmt...>: the text must */
        __attribute__((format(printf, 2, 3)));     /*  start with its code word */
void reply_ctx_error(client *c, ctx_status st);    /* -CTXNOTFOUND <ctx_last_error()> ... */
const char *status_word(ctx_status st);            /* its code word: "CTXNOTFOUND", ... */
void reply_int(client *c, long long v);            /* :v                       */
void reply_bulk(client *c, const void *p, size_t n);
void reply_cstr(client *c, const char *s);         /* bulk of a C string       */
void reply_null(client *c);                        /* $-1 | _                  */
void reply_null_array(client *c);                  /* *-1 | _                  */
void reply_array(client *c, size_t n);             /* *n, then n replies       */
void reply_map(client *c, size_t pairs);           /* %pairs | *2pairs         */
void reply_set(client *c, size_t n);               /* ~n | *n                  */
void reply_double(client *c, double d);            /* ,d | bulk "%.17g"        */
void reply_bool(client *c, bool b);                /* #t/#f | :1/:0            */
void reply_verbatim(client *c, const char *s, size_t n); /* =n txt:... | bulk  */
void reply_push(client *c, size_t n);              /* >n | *n (out of band)    */
/* An array or map whose length is known only afterwards. */
size_t reply_defer_len(client *c);
void reply_set_array_len(client *c, size_t handle, size_t n);
void reply_set_map_len(client *c, size_t handle, size_t pairs);

/* Whether the client's unsent output, the running command's reply so far
 * included, is over the hard client-output-buffer-limit: the client will be
 * closed, so a command building a reply of its own length (HRANDFIELD with
 * a negative count) stops there rather than exhaust memory. */
bool client_output_over(const client *c);

/* The reply of the running command must not be sent before revision rev is
 * durable (nor anything after it, replies keep their order). */
void client_need_durable(client *c, uint64_t rev);

/* ---- data access for commands ---------------------------------------------- */

ctx_store *server_store(void);

/* Copy an argument into a NUL-terminated context id (CTX_ID_MAX + 1 bytes);
 * "." means the connection's active context (CTX.USE). Replies an error and
 * returns false if it is not a valid id. */
bool arg_to_id(client *c, const arg *a, char id[CTX_ID_MAX + 1]);
bool arg_to_ll(client *c, const arg *a, long long *out);  /* replies ERR on failure */
bool arg_to_u64(client *c, const arg *a, uint64_t *out);  /* replies ERR on failure */
bool arg_is(const arg *a, const char *word);             /* case-insensitive */

/* The per-connection session (active context), created on demand. */
ctx_session *client_session(client *c);

/* A write: the context's latest decided version (NULL = absent), the
 * changes recorded so far, and reads that see them. Write commands work on
 * one; outside MULTI the core gives each write command its own and commits
 * it after the handler (guarded by the base version, retried on conflict:
 * the handler is then run again and its first reply discarded); EXEC gives
 * every queued command the same one and commits once (all or nothing).
 *
 * What the core guarantees (net.c, multi.c):
 *  - A command that replies an error commits nothing (its batches are
 *    discarded), inside EXEC or not.
 *  - Pipelined hash writes (HSET, HMSET, HSETNX, HDEL, HINCRBY[FLOAT]) of one
 *    context that arrive in one read share one batch and one commit, as
 *    inside EXEC (net.c, GROUPS): their handlers must work on the batch of
 *    argv[1] alone and reply from it only.
 *  - Outside EXEC a command may take batches of several contexts (DEL a b c):
 *    each is committed in turn, not atomically across contexts; if one
 *    conflicts, the whole handler runs again (those already committed are
 *    then seen as its new base).
 *  - Inside EXEC, client_wbatch of another context than the transaction's
 *    replies "-ERR a transaction works on one context ..." and returns NULL
 *    (which aborts the EXEC). Read through the batch to see the
 *    transaction's earlier writes.
 *  - client_wbatch holds the reply until the base version is durable (no
 *    client_need_durable call is needed for what is read through it).
 *  - wb_exists is the context's existence for libctx (a context with zero
 *    fields exists); Redis commands treat wb_count() == 0 as absent. A write
 *    that removes the last field keeps the context (a version with no
 *    fields); wb_put on an absent context creates it (one commit: version 1).
 *  - On CTX_CONFLICT the handler is run again up to CTXD_MAX_WRITE_RETRIES
 *    (32) times, then the reply is -CTXCONFLICT gave up after N attempts.
 *  - server_run_blocking inside EXEC runs fn and done inline (EXEC refuses
 *    CMD_BLOCKING commands at queue time anyway). */
typedef struct wbatch wbatch;
wbatch *client_wbatch(client *c, const char *id); /* NULL: reply sent (error) */
bool wb_exists(wbatch *w);            /* the context exists (or is being created) */
size_t wb_count(wbatch *w);           /* fields, with the recorded changes */
/* Whether field k exists (base + recorded changes); its value into *v, *vn
 * unless they are NULL (a mere existence check). */
bool wb_get(wbatch *w, const void *k, size_t kn, const void **v, size_t *vn);
void wb_put(wbatch *w, const void *k, size_t kn, const void *v, size_t vn);
/* wb_put without looking k up: no read of the base's trie before the
 * commit (the count is then worked out when wb_count asks). */
void wb_put_blind(wbatch *w, const void *k, size_t kn, const void *v, size_t vn);
void wb_del(wbatch *w, const void *k, size_t kn);
void wb_drop(wbatch *w);              /* DEL/UNLINK: drop the context */
/* Iterate the fields as they stand with the recorded changes. */
typedef bool wb_visit_fn(void *arg, const void *k, size_t kn, const void *v, size_t vn);
void wb_foreach(wbatch *w, wb_visit_fn *fn, void *arg);
const ctx_state *wb_base(wbatch *w); /* the version it started from, or NULL */
/* HSET's reply without a lookup per field before the commit. Outside EXEC
 * (the batch is this command's alone, committed right after the handler):
 * returns true, and the core replies :N once the batch is committed, N =
 * the fields it puts that the version it was committed on lacked (looked up
 * after the commit, whose path copy has just read the same trie nodes); the
 * handler then replies nothing. Inside EXEC returns false: the handler
 * counts with wb_get and replies itself. */
bool client_reply_new_fields(client *c, wbatch *w);

/* Run fn(arg) on the thread pool, then done(c, arg) on c's loop (if c is
 * still connected; else done(NULL, arg) to free). The connection's later
 * commands wait (their replies keep their order). */
void server_run_blocking(client *c, void (*fn)(void *arg), void (*done)(client *c, void *arg),
                         void *arg);

/* Streaming (CTX.WATCH): the core polls the watch's fd on c's loop and calls
 * on_event for each event; the command file writes push replies. */
void client_start_watch(client *c, ctx_watch *w,
                        void (*on_event)(client *c, const ctx_event *e));
void client_stop_watch(client *c);

/* The connection's tracker slot (CTX.TRACK), closed with the connection. */
ctx_tracker **client_tracker(client *c);
/* HSCAN: the version a client's unfinished scan walks, held between its
 * calls, and an iterator over it at position pos (cmd_hash.c). */
typedef struct hscan_state {
	ctx_state *st; /* NULL: none */
	ctx_iter *it;  /* NULL: none yet */
	uint64_t pos;
	size_t bytes;     /* ctx_state_bytes(st), counted in srv.scan_held_bytes */
	uint64_t used_us; /* the last HSCAN page that walked st */
} hscan_state;
hscan_state *client_hscan(client *c);
/* Release what an unfinished HSCAN holds (connection close, RESET). */
void hscan_drop(client *c);
/* The loop's timer (once a second, on c's loop): release c's held scan
 * version if it was not continued for scan-hold-seconds, if the server's
 * held versions pass scan-hold-bytes and it was not continued for a second,
 * or if its hash is gone (cmd_hash.c). */
void hscan_tick(client *c, uint64_t now_us);

/* Log to stderr with a level: 'E' error, 'W' warning, 'I' info, 'D' debug. */
void server_log(char level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
