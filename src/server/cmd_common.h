/*
 * cmd_common.h - helpers shared by the data command files of ctxd
 * (cmd_hash.c, cmd_keys.c, cmd_ctx.c): Redis's glob matcher, Redis's strict
 * integer parser, reading a context as a Redis hash, status code words, and
 * jobs that run a blocking libctx call on the thread pool.
 *
 * A context is a hash. For Redis commands a context with no fields does not
 * exist (EXISTS 0, TYPE none, HLEN 0, absent from SCAN and KEYS); CTX.*
 * commands see it. A name that is not a valid context id (empty, longer than
 * CTX_ID_MAX, control bytes) is an absent key for commands that only read.
 */
#ifndef CTXD_CMD_COMMON_H
#define CTXD_CMD_COMMON_H

#include "server.h"

/* Redis's stringmatchlen: glob-style '*', '?', '[...]' ('^' negates, 'a-z'
 * ranges) and '\' escapes, binary-safe. */
bool glob_match(const char *pat, size_t pn, const char *s, size_t sn, bool nocase);

/* Redis's string2ll: an optional '-', then digits without a leading zero or
 * spaces, within long long. */
bool parse_ll(const char *p, size_t n, long long *out);
/* An unsigned decimal: digits only, within uint64_t. */
bool parse_u64(const char *p, size_t n, uint64_t *out);
/* A SCAN/HSCAN cursor read as Redis reads it (strtoul in base 10): an
 * optional sign, then digits whose value fits 64 bits, '-' negating it
 * modulo 2^64 ("-1" is 2^64 - 1); the empty string is 0; a leading blank or
 * anything after the digits is refused. The argument ends at a NUL byte, as
 * Redis's C string does. False: "ERR invalid cursor". */
bool parse_scan_cursor(const char *p, size_t n, uint64_t *out);

/* The options of SCAN and HSCAN: [MATCH p] [COUNT n] [NOVALUES] [TYPE t] from
 * argv[from] (COUNT defaults to 10). False: error replied. */
typedef struct scan_opts {
	const arg *match;
	long long count;
	bool novalues;
	const arg *type; /* SCAN only */
} scan_opts;
bool parse_scan_opts(client *c, int argc, const arg *argv, int from, bool allow_novalues,
                     bool allow_type, scan_opts *o);

/* Copy a Redis key into a context id: 1 = done, 0 = not a valid id (nothing
 * replied: the key is absent), -1 = error replied ("." without CTX.USE). */
int key_to_id(client *c, const arg *a, char id[CTX_ID_MAX + 1]);

/* The newest version of the context named by a, for a Redis read: NULL when
 * it is absent or has no fields (*failed = true if an error was replied).
 * The reply is held until what it shows is durable. */
ctx_state *hash_read(client *c, const arg *a, bool *failed);

/* The same through the command's write batch (client_wbatch), so that a
 * read inside EXEC sees the transaction's earlier writes: NULL when absent
 * or without fields (*failed = true if an error was replied). Outside EXEC
 * the batch is a snapshot of the newest version, with nothing to commit. */
wbatch *hash_read_wb(client *c, const arg *a, bool *failed);

/* Redis's error for a subcommand it does not know, or given the wrong
 * number of arguments: "-ERR unknown subcommand or wrong number of
 * arguments for 'sub'. Try CMD HELP." */
void reply_unknown_subcommand(client *c, const char *cmd, const arg *sub);

/* A HELP subcommand's reply: the lines as simple strings. */
void reply_help(client *c, const char *const *lines, size_t n);

/* Hold the reply until every revision handed out so far is durable: for
 * answers that show an absence (a drop may be decided but not durable). */
void need_durable_all(client *c);

/* A blocking libctx call: run(j) on the thread pool sets j->st (and the
 * rest); then on the loop, an error is replied from j->st and the message
 * libctx gave on the pool's thread, else reply(c, j). free_data(j) (if set)
 * then free(j) always follow. */
typedef struct job job;
struct job {
	void (*run)(job *j);
	void (*reply)(client *c, job *j);
	void (*free_data)(job *j);
	ctx_status st;
	char err[256];
	char id[CTX_ID_MAX + 1];
	char text[CTX_ID_MAX + 1]; /* a label, a second id ...          */
	uint64_t in[3];            /* command parameters                */
	uint64_t out[3];           /* results                           */
	void *data;
};
job *job_new(client *c); /* NULL: out of memory, error replied */
void job_start(client *c, job *j);

#endif
