/*
 * cmd_keys.c - Redis's keyspace commands on contexts (a key is a context id,
 * its value a hash), and the answers to Redis commands of the types ctx does
 * not have.
 *
 * A context without fields does not exist for these commands (EXISTS 0,
 * TYPE none, not listed by SCAN and KEYS, TTL -2), as an empty hash does not
 * exist in Redis; CTX.* commands still see it.
 *
 * SCAN CURSORS
 *   Contexts are listed in id order with ctx_list_ids, a page starting after
 *   the last id of the previous page. Redis clients expect a cursor to be a
 *   decimal number (go-redis parses it as a uint64), and an id is up to 256
 *   bytes, so the server keeps a table of the cursors it handed out:
 *   cursor number -> last id. The table has SCAN_SLOTS slots shared by all
 *   connections (a cursor may be used from another connection), a cursor
 *   lives in slot (number % SCAN_SLOTS) until SCAN_SLOTS newer cursors have
 *   been handed out, and cursors do not survive a restart: an unknown
 *   cursor is "-ERR invalid cursor ...". Cursors from 2^63 up (-1 included:
 *   cursors are read as Redis's strtoul reads them) are never handed out
 *   and end the scan, as Redis answers a cursor it did not give without an
 *   error. A scan returns every context that
 *   exists (with fields) from its start to its end exactly once: ids are
 *   visited in strictly increasing order.
 *
 * EXPIRY
 *   libctx has idle time-to-lives: a context is dropped once nobody read or
 *   wrote it for ttl. EXPIRE and PEXPIRE set that idle ttl, so every access
 *   pushes the expiry back, unlike Redis's absolute expiry; TTL and PTTL
 *   report the time left since the last access. EXPIREAT and PEXPIREAT,
 *   which name an instant, are refused. These commands run on the thread
 *   pool (ctx_set_ttl waits for its record to be durable, and reading a ttl
 *   walks the status view).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_common.h"

/* ---- EXISTS, TYPE, DEL ------------------------------------------------------------ */

/* Whether the key names a context with fields (a Redis key). -1: error replied. */
static int key_exists(client *c, const arg *a)
{
	bool failed;
	wbatch *w = hash_read_wb(c, a, &failed);
	return failed ? -1 : w != NULL;
}

/* EXISTS key [key ...] / TOUCH: how many of the keys exist (repeats count). */
static void cmd_exists(client *c, int argc, const arg *argv)
{
	long long n = 0;
	for (int i = 1; i < argc; i++) {
		int r = key_exists(c, &argv[i]);
		if (r < 0)
			return;
		n += r;
	}
	reply_int(c, n);
}

static void cmd_type(client *c, int argc, const arg *argv)
{
	int r = key_exists(c, &argv[1]);
	if (r >= 0)
		reply_simple(c, r ? "hash" : "none");
}

/* DEL / UNLINK key [key ...]: drop the contexts; the number that existed
 * as keys (with fields). An empty context is dropped too, uncounted. */
static void cmd_del(client *c, int argc, const arg *argv)
{
	long long n = 0;
	for (int i = 1; i < argc; i++) {
		char id[CTX_ID_MAX + 1];
		int r = key_to_id(c, &argv[i], id);
		if (r < 0)
			return;
		if (r == 0)
			continue;
		wbatch *w = client_wbatch(c, id);
		if (!w)
			return;
		if (!wb_exists(w))
			continue;
		n += wb_count(w) > 0;
		wb_drop(w);
	}
	reply_int(c, n);
}

static uint64_t wall_us(void);

/* ---- OBJECT and MEMORY ------------------------------------------------------------- */

/* A context costs about this much beside its fields, and a field about
 * FIELD_BYTES beside its name and value: measured in round 24 (100,000
 * contexts of 0 to 16 fields of 70 bytes, RSS growth: 390 bytes for an empty
 * context - its record, id and index node, its version, its slot in the
 * table - and 42 to 50 per field for the leaf's header and the trie's slot).
 * History versions and recovery points share most of their nodes with the
 * current version and are not counted. */
#define CONTEXT_BYTES 400
#define FIELD_BYTES   48

/* OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ key, OBJECT HELP. A context is a
 * hash ("hashtable"), held once; IDLETIME is the seconds since its last
 * access as libctx notes it (its last commit, or its last read if it has a
 * time-to-live) and, as in Redis, asking is no access. */
static void cmd_object(client *c, int argc, const arg *argv)
{
	const arg *sub = &argv[1];
	if (arg_is(sub, "HELP") && argc == 2) {
		static const char *const help[] = {
		    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		    "ENCODING <key>",
		    "    Return the kind of internal representation used in order",
		    "    to store the value associated with a <key> (\"hashtable\" for a context).",
		    "FREQ <key>",
		    "    Refused: ctxd has no LFU eviction policy.",
		    "IDLETIME <key>",
		    "    Return the idle time of the <key>, that is the approximated number",
		    "    of seconds elapsed since its last access (commit, or read with a ttl).",
		    "REFCOUNT <key>",
		    "    Return the number of references of the value (1).",
		    "HELP",
		    "    Print this help."};
		reply_help(c, help, sizeof(help) / sizeof(help[0]));
		return;
	}
	bool encoding = arg_is(sub, "ENCODING"), refcount = arg_is(sub, "REFCOUNT");
	bool idletime = arg_is(sub, "IDLETIME"), freq = arg_is(sub, "FREQ");
	if (argc != 3 || !(encoding || refcount || idletime || freq)) {
		reply_unknown_subcommand(c, "OBJECT", sub);
		return;
	}
	uint64_t access_us = 0;
	if (idletime) { /* before the existence check, which is a read */
		char id[CTX_ID_MAX + 1];
		ctx_context_status v;
		int r = key_to_id(c, &argv[2], id);
		if (r < 0)
			return; /* "." without an active context: replied */
		if (r > 0 && ctx_context_info(server_store(), id, &v) == CTX_OK)
			access_us = v.last_access_us;
	}
	int r = key_exists(c, &argv[2]);
	if (r <= 0) {
		if (r == 0)
			reply_null(c);
		return;
	}
	if (encoding) {
		reply_cstr(c, "hashtable");
	} else if (refcount) {
		reply_int(c, 1);
	} else if (idletime) {
		/* 0 for a context whose creation is not durable yet (not in
		 * ctx_context_info's view): it was just written. */
		uint64_t now = wall_us();
		reply_int(c, (long long)(access_us && now > access_us ? (now - access_us) / 1000000u
		                                                      : 0));
	} else {
		reply_error(c,
		            "ERR An LFU maxmemory policy is not selected, access frequency not "
		            "tracked. Please note that when switching between policies at runtime "
		            "LRU and LFU data will take some time to adjust.");
	}
}

typedef struct usage_sample {
	size_t left; /* fields still to sample; SIZE_MAX: all */
	size_t seen;
	size_t bytes;
} usage_sample;

static bool usage_visit(void *sample, const void *k, size_t kn, const void *v, size_t vn)
{
	(void)k;
	(void)v;
	usage_sample *u = sample;
	u->seen++;
	u->bytes += kn + vn;
	return --u->left > 0;
}

/* MEMORY USAGE key [SAMPLES count], MEMORY HELP. As Redis, an estimate from
 * `count` sampled fields (default 5, 0: all), extrapolated to every field:
 * CONTEXT_BYTES + fields x (their mean name and value bytes + FIELD_BYTES). */
static void cmd_memory(client *c, int argc, const arg *argv)
{
	const arg *sub = &argv[1];
	if (arg_is(sub, "HELP") && argc == 2) {
		static const char *const help[] = {
		    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		    "USAGE <key> [SAMPLES <count>]",
		    "    Return memory in bytes used by <key> and its value (an estimate: the",
		    "    current version's fields, <count> of them sampled, 0 for all; default 5).",
		    "HELP",
		    "    Print this help."};
		reply_help(c, help, sizeof(help) / sizeof(help[0]));
		return;
	}
	if (!arg_is(sub, "USAGE") || argc < 3) {
		reply_unknown_subcommand(c, "MEMORY", sub);
		return;
	}
	long long samples = 5;
	for (int i = 3; i < argc; i += 2) { /* Redis's checks, in its order */
		if (!arg_is(&argv[i], "SAMPLES") || i + 1 >= argc) {
			reply_error(c, "ERR syntax error");
			return;
		}
		if (!parse_ll(argv[i + 1].p, argv[i + 1].n, &samples)) {
			reply_error(c, "ERR value is not an integer or out of range");
			return;
		}
		if (samples < 0) {
			reply_error(c, "ERR syntax error");
			return;
		}
	}
	bool failed;
	wbatch *w = hash_read_wb(c, &argv[2], &failed);
	if (failed)
		return;
	if (!w) {
		reply_null(c);
		return;
	}
	size_t fields = wb_count(w);
	usage_sample u = {samples ? (size_t)samples : SIZE_MAX, 0, 0};
	wb_foreach(w, usage_visit, &u);
	uint64_t per = u.seen ? (u.bytes + u.seen / 2) / u.seen + FIELD_BYTES : FIELD_BYTES;
	reply_int(c, (long long)(CONTEXT_BYTES + fields * per));
}

/* ---- SCAN and KEYS ------------------------------------------------------------------ */

#define SCAN_SLOTS 16384

static struct scan_slot {
	uint64_t cursor;
	char *after;
} scan_slots[SCAN_SLOTS];
static pthread_mutex_t scan_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t scan_next = 1;
/* Cursors from here up are never handed out (scan_next starts at 1 in each
 * run and cannot count that far). */
#define SCAN_NEVER (UINT64_C(1) << 63)

/* Hand out a cursor that resumes after id (0: out of memory). */
static uint64_t cursor_save(const char *id)
{
	char *copy = strdup(id);
	if (!copy)
		return 0;
	pthread_mutex_lock(&scan_lock);
	uint64_t cur = scan_next++;
	struct scan_slot *s = &scan_slots[cur % SCAN_SLOTS];
	free(s->after);
	s->cursor = cur;
	s->after = copy;
	pthread_mutex_unlock(&scan_lock);
	return cur;
}

/* The id a cursor resumes after, into out; false if unknown. */
static bool cursor_load(uint64_t cur, char out[CTX_ID_MAX + 1])
{
	bool ok = false;
	pthread_mutex_lock(&scan_lock);
	struct scan_slot *s = &scan_slots[cur % SCAN_SLOTS];
	if (s->cursor == cur && s->after) {
		snprintf(out, CTX_ID_MAX + 1, "%s", s->after);
		ok = true;
	}
	pthread_mutex_unlock(&scan_lock);
	return ok;
}

__attribute__((destructor)) static void cursor_free_all(void)
{
	for (size_t i = 0; i < SCAN_SLOTS; i++) {
		free(scan_slots[i].after);
		scan_slots[i].after = NULL;
	}
}

/* The literal start of a glob pattern (before any special byte), as a
 * NUL-terminated prefix for ctx_list_ids; "" if none or not an id. */
static void pattern_prefix(const arg *pat, char out[CTX_ID_MAX + 1])
{
	size_t n = 0;
	while (n < pat->n && n < CTX_ID_MAX && !strchr("*?[\\", pat->p[n]) &&
	       (unsigned char)pat->p[n] >= 0x20 && pat->p[n] != 0x7f)
		n++;
	memcpy(out, pat->p, n);
	out[n] = '\0';
}

/* Whether the listed id is a Redis key matching the pattern; holds the
 * reply until what it saw is durable. */
static bool id_listed(client *c, const char *id, const arg *match)
{
	if (match && !glob_match(match->p, match->n, id, strlen(id), false))
		return false;
	ctx_state *st;
	if (ctx_get_latest(server_store(), id, &st) != CTX_OK)
		return false;
	client_need_durable(c, ctx_state_revision(st));
	bool has_fields = ctx_state_count(st) > 0;
	ctx_state_release(st);
	return has_fields;
}

/* The reply of a scan that is over: cursor 0, nothing listed. */
static void reply_scan_end(client *c)
{
	reply_array(c, 2);
	reply_cstr(c, "0");
	reply_array(c, 0);
}

/* SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]. Checked in Redis's
 * order: the cursor's syntax, the options, then the cursor itself. */
static void cmd_scan(client *c, int argc, const arg *argv)
{
	uint64_t cur;
	scan_opts o;
	char after[CTX_ID_MAX + 1], prefix[CTX_ID_MAX + 1] = "";
	if (!parse_scan_cursor(argv[1].p, argv[1].n, &cur)) {
		reply_error(c, "ERR invalid cursor");
		return;
	}
	if (!parse_scan_opts(c, argc, argv, 2, false, true, &o))
		return;
	if (cur >= SCAN_NEVER) {
		/* Never handed out (-1 is 2^64 - 1): as Redis, a cursor it did not
		 * give is no error; its scan is over (Redis's, past the last
		 * bucket, ends within one page). */
		reply_scan_end(c);
		return;
	}
	if (cur && !cursor_load(cur, after)) {
		reply_error(c,
		            "ERR invalid cursor: ctxd keeps SCAN cursors in memory and this one "
		            "is unknown (too old, or from before a restart); start again from 0");
		return;
	}
	need_durable_all(c); /* the listing may miss contexts whose drop is pending */
	if (o.type && !arg_is(o.type, "hash")) {
		reply_scan_end(c);
		return;
	}
	if (o.match)
		pattern_prefix(o.match, prefix);
	ctx_list l;
	ctx_status st =
	    ctx_list_ids(server_store(), prefix, cur ? after : NULL, (size_t)o.count, &l);
	if (st != CTX_OK) {
		reply_ctx_error(c, st);
		return;
	}
	uint64_t next = 0;
	if (l.count == (size_t)o.count && !(next = cursor_save(l.ids[l.count - 1]))) {
		ctx_list_free(&l);
		reply_ctx_error(c, CTX_NOMEM);
		return;
	}
	char buf[24];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)next);
	reply_array(c, 2);
	reply_cstr(c, buf);
	size_t h = reply_defer_len(c), n = 0;
	for (size_t i = 0; i < l.count; i++)
		if (id_listed(c, l.ids[i], o.match)) {
			reply_cstr(c, l.ids[i]);
			n++;
		}
	reply_set_array_len(c, h, n);
	ctx_list_free(&l);
}

/* KEYS pattern: every matching context with fields, in id order. */
static void cmd_keys(client *c, int argc, const arg *argv)
{
	char prefix[CTX_ID_MAX + 1];
	pattern_prefix(&argv[1], prefix);
	need_durable_all(c);
	ctx_list l;
	ctx_status st = ctx_list_ids(server_store(), prefix, NULL, 0, &l);
	if (st != CTX_OK) {
		reply_ctx_error(c, st);
		return;
	}
	size_t h = reply_defer_len(c), n = 0;
	for (size_t i = 0; i < l.count; i++)
		if (id_listed(c, l.ids[i], &argv[1])) {
			reply_cstr(c, l.ids[i]);
			n++;
		}
	reply_set_array_len(c, h, n);
	ctx_list_free(&l);
}

/* ---- time-to-live ------------------------------------------------------------------- */

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Whether id exists as a Redis key (with fields), without touching it more
 * than a read does. */
static bool id_has_fields(const char *id)
{
	ctx_state *st;
	if (ctx_get_latest(server_store(), id, &st) != CTX_OK)
		return false;
	bool r = ctx_state_count(st) > 0;
	ctx_state_release(st);
	return r;
}

/* The idle ttl of id and the time of its last access (ctx_context_info: one
 * lookup, no access noted). CTX_NOT_FOUND if absent. The status shows
 * durable versions only (what ctx_get sees): a context whose creation is
 * decided but not yet durable (a client's HSET pipelined before its TTL) is
 * not in it, yet exists for the client; it has no ttl yet (ctx_set_ttl
 * returns once its record, and so the creation, is durable). */
static ctx_status ttl_lookup(const char *id, uint64_t *ttl_ms, uint64_t *access_us)
{
	ctx_context_status v;
	ctx_status st = ctx_context_info(server_store(), id, &v);
	if (st == CTX_OK) {
		*ttl_ms = v.ttl_ms;
		*access_us = v.last_access_us;
	}
	if (st == CTX_NOT_FOUND && id_has_fields(id)) {
		*ttl_ms = 0;
		*access_us = wall_us();
		st = CTX_OK;
	}
	return st;
}

enum { TTL_NX = 1, TTL_XX, TTL_GT, TTL_LT };

/* The ms left of an idle ttl (not 0) last restarted at access_us: what TTL
 * and PTTL report. */
static uint64_t ttl_left_ms(uint64_t ttl, uint64_t access_us)
{
	uint64_t now = wall_us(), idle = now > access_us ? (now - access_us) / 1000 : 0;
	return idle < ttl ? ttl - idle : 0;
}

/* job: in[0] = ttl ms, in[1] = condition; out[0] = 1 if set. */
static void run_expire(job *j)
{
	uint64_t ttl = 0, access = 0, left = 0;
	j->out[0] = 0;
	/* GT and LT compare with the time left, as TTL reports it, as Redis
	 * compares expiry instants: so the ttl is looked up before
	 * id_has_fields, whose read restarts the idle clock (before round 22
	 * they compared with the whole ttl, and EXPIRE k 100 GT a second after
	 * EXPIRE k 100 replied 0 where Redis replies 1). */
	if (j->in[1] && ttl_lookup(j->id, &ttl, &access) != CTX_OK)
		return;
	if (!id_has_fields(j->id))
		return;
	if (ttl)
		left = ttl_left_ms(ttl, access);
	switch (j->in[1]) {
	case TTL_NX:
		if (ttl)
			return;
		break;
	case TTL_XX:
		if (!ttl)
			return;
		break;
	case TTL_GT: /* no ttl counts as an infinite one, as in Redis */
		if (!ttl || j->in[0] <= left)
			return;
		break;
	case TTL_LT:
		if (ttl && j->in[0] >= left)
			return;
		break;
	}
	ctx_status st = ctx_set_ttl(server_store(), j->id, j->in[0]);
	if (st == CTX_NOT_FOUND)
		return;
	j->st = st;
	j->out[0] = st == CTX_OK;
}

static void reply_out0(client *c, job *j)
{
	reply_int(c, (long long)j->out[0]);
}

/* A job on the context named by key, its id filled in; NULL when key is not
 * a valid id (then `absent` is replied, as for a missing key) or an error was
 * replied. */
static job *key_job(client *c, const arg *key, long long absent)
{
	char id[CTX_ID_MAX + 1];
	int r = key_to_id(c, key, id);
	if (r <= 0) {
		if (r == 0)
			reply_int(c, absent);
		return NULL;
	}
	job *j = job_new(c);
	if (j)
		memcpy(j->id, id, sizeof(id));
	return j;
}

/* EXPIRE / PEXPIRE key time [NX|XX|GT|LT]; scale = ms per unit. */
static void expire_generic(client *c, int argc, const arg *argv, long long scale)
{
	long long t;
	int cond = 0;
	if (!parse_ll(argv[2].p, argv[2].n, &t)) {
		reply_error(c, "ERR value is not an integer or out of range");
		return;
	}
	for (int i = 3; i < argc; i++) {
		int k = arg_is(&argv[i], "NX")   ? TTL_NX
		        : arg_is(&argv[i], "XX") ? TTL_XX
		        : arg_is(&argv[i], "GT") ? TTL_GT
		        : arg_is(&argv[i], "LT") ? TTL_LT
		                                 : 0;
		if (!k) {
			reply_error(c, "ERR Unsupported option %.*s", (int)argv[i].n, argv[i].p);
			return;
		}
		if (cond && cond != k) {
			reply_error(c, "ERR NX and XX, GT or LT options at the same time are not "
			               "compatible");
			return;
		}
		cond = k;
	}
	/* libctx's bound (ctx_set_ttl: its microseconds fit 64 bits), not
	 * INT64_MAX ms: past it the reply was libctx's CTXINVALID. */
	if (t > 0 && (uint64_t)t > UINT64_MAX / 1000 / (uint64_t)scale) {
		reply_error(c, "ERR invalid expire time in '%s' command",
		            scale == 1 ? "pexpire" : "expire");
		return;
	}
	if (t <= 0) { /* Redis deletes the key at once */
		const arg del[2] = {{"DEL", 3}, argv[1]};
		if (cond == TTL_XX || cond == TTL_GT) {
			int r = key_exists(c, &argv[1]);
			if (r <= 0) {
				if (r == 0)
					reply_int(c, 0);
				return;
			}
		}
		cmd_del(c, 2, del);
		return;
	}
	job *j = key_job(c, &argv[1], 0);
	if (!j)
		return;
	j->in[0] = (uint64_t)(t * scale);
	j->in[1] = (uint64_t)cond;
	j->run = run_expire;
	j->reply = reply_out0;
	job_start(c, j);
}

static void cmd_expire(client *c, int argc, const arg *argv)
{
	expire_generic(c, argc, argv, 1000);
}

static void cmd_pexpire(client *c, int argc, const arg *argv)
{
	expire_generic(c, argc, argv, 1);
}

/* job: out[0] = -2 absent, -1 no ttl, else ms left (as int64). */
static void run_ttl(job *j)
{
	uint64_t ttl = 0, access = 0;
	int64_t left = -2;
	if (ttl_lookup(j->id, &ttl, &access) == CTX_OK && id_has_fields(j->id)) {
		if (!ttl) {
			left = -1;
		} else {
			left = (int64_t)ttl_left_ms(ttl, access);
		}
	}
	j->out[0] = (uint64_t)left;
}

static void reply_ttl(client *c, job *j)
{
	int64_t ms = (int64_t)j->out[0];
	need_durable_all(c);             /* run_ttl read the newest decided version */
	if (ms >= 0 && j->in[0] == 1000) /* TTL: rounded as Redis does */
		ms = (ms + 500) / 1000;
	reply_int(c, ms);
}

static void ttl_generic(client *c, const arg *key, uint64_t unit)
{
	job *j = key_job(c, key, -2);
	if (!j)
		return;
	j->in[0] = unit;
	j->run = run_ttl;
	j->reply = reply_ttl;
	job_start(c, j);
}

static void cmd_ttl(client *c, int argc, const arg *argv)
{
	ttl_generic(c, &argv[1], 1000);
}

static void cmd_pttl(client *c, int argc, const arg *argv)
{
	ttl_generic(c, &argv[1], 1);
}

/* job: out[0] = 1 if a ttl was removed. */
static void run_persist(job *j)
{
	uint64_t ttl = 0, access = 0;
	j->out[0] = 0;
	if (ttl_lookup(j->id, &ttl, &access) != CTX_OK || !ttl || !id_has_fields(j->id))
		return;
	ctx_status st = ctx_set_ttl(server_store(), j->id, 0);
	if (st != CTX_NOT_FOUND)
		j->st = st;
	j->out[0] = st == CTX_OK;
}

static void cmd_persist(client *c, int argc, const arg *argv)
{
	job *j = key_job(c, &argv[1], 0);
	if (!j)
		return;
	j->run = run_persist;
	j->reply = reply_out0;
	job_start(c, j);
}

/* ---- refused ---------------------------------------------------------------------------- */

static void cmd_expireat(client *c, int argc, const arg *argv)
{
	reply_error(c, "ERR ctx has idle time-to-lives only (a context expires once unused "
	               "for its ttl): use EXPIRE or PEXPIRE, not an absolute time");
}

static void cmd_rename(client *c, int argc, const arg *argv)
{
	reply_error(c, "ERR ctx cannot rename: a context id is an identity that its history, "
	               "recovery points and watchers refer to; copy the fields into a new "
	               "context (CTX.CREATE) and drop the old one");
}

/* GET, SET, LPUSH, SADD, ZADD ...: ctx stores hashes only. Redis's own
 * words, exactly: clients and their users' code match the whole message,
 * not only its first word (docs/decisions.md, round 11). For a key that
 * does not exist Redis would have run the command; docs/protocol.md says
 * so. */
static void cmd_wrongtype(client *c, int argc, const arg *argv)
{
	(void)argc;
	(void)argv;
	reply_error(c, "WRONGTYPE Operation against a key holding the wrong kind of value");
}

/* ---- the table ------------------------------------------------------------------------ */

#define W (CMD_WRITE)
#define R (CMD_READONLY)
#define WT(name)                                                                                   \
	{                                                                                          \
		name, cmd_wrongtype, -1, 0, 1, "Not supported: ctx stores hashes", "keyspace"      \
	}

const command keys_commands[] = {
    {"EXISTS", cmd_exists, -2, R, 1, "How many of the keys exist", "keyspace"},
    {"TOUCH", cmd_exists, -2, R, 1, "Read the keys (resets idle ttls); how many exist", "keyspace"},
    {"TYPE", cmd_type, 2, R, 1, "\"hash\" or \"none\"", "keyspace"},
    {"DEL", cmd_del, -2, W, 1, "Drop contexts", "keyspace"},
    {"UNLINK", cmd_del, -2, W, 1, "Drop contexts (as DEL)", "keyspace"},
    {"SCAN", cmd_scan, -2, R, 0, "Iterate the keys (contexts) in id order", "keyspace"},
    {"KEYS", cmd_keys, 2, R, 0, "Keys matching a pattern", "keyspace"},
    {"EXPIRE", cmd_expire, -3, W | CMD_BLOCKING, 1, "Set an idle time-to-live, seconds",
     "keyspace"},
    {"PEXPIRE", cmd_pexpire, -3, W | CMD_BLOCKING, 1, "Set an idle time-to-live, ms", "keyspace"},
    {"TTL", cmd_ttl, 2, R | CMD_BLOCKING, 1, "Idle time-to-live left, seconds", "keyspace"},
    {"PTTL", cmd_pttl, 2, R | CMD_BLOCKING, 1, "Idle time-to-live left, ms", "keyspace"},
    {"PERSIST", cmd_persist, 2, W | CMD_BLOCKING, 1, "Remove the time-to-live", "keyspace"},
    {"EXPIREAT", cmd_expireat, -3, 0, 1, "Refused: ctx has idle ttls only", "keyspace"},
    {"PEXPIREAT", cmd_expireat, -3, 0, 1, "Refused: ctx has idle ttls only", "keyspace"},
    {"EXPIRETIME", cmd_expireat, 2, 0, 1, "Refused: ctx has idle ttls only", "keyspace"},
    {"PEXPIRETIME", cmd_expireat, 2, 0, 1, "Refused: ctx has idle ttls only", "keyspace"},
    {"RENAME", cmd_rename, 3, 0, 1, "Refused: ids are identities", "keyspace"},
    {"RENAMENX", cmd_rename, 3, 0, 1, "Refused: ids are identities", "keyspace"},
    {"COPY", cmd_rename, -3, 0, 1, "Refused: ids are identities", "keyspace"},
    {"MOVE", cmd_rename, 3, 0, 1, "Refused: one database", "keyspace"},
    {"OBJECT", cmd_object, -2, R, 2, "Encoding, idle time, references of a key", "keyspace"},
    {"MEMORY", cmd_memory, -2, R, 2, "Estimated bytes of a key (MEMORY USAGE)", "keyspace"},
    /* strings */
    WT("GET"),
    WT("SET"),
    WT("SETNX"),
    WT("SETEX"),
    WT("PSETEX"),
    WT("GETSET"),
    WT("GETDEL"),
    WT("GETEX"),
    WT("GETRANGE"),
    WT("SETRANGE"),
    WT("SUBSTR"),
    WT("INCR"),
    WT("DECR"),
    WT("INCRBY"),
    WT("DECRBY"),
    WT("INCRBYFLOAT"),
    WT("APPEND"),
    WT("STRLEN"),
    WT("MGET"),
    WT("MSET"),
    WT("MSETNX"),
    WT("LCS"),
    WT("SETBIT"),
    WT("GETBIT"),
    WT("BITCOUNT"),
    WT("BITPOS"),
    WT("BITOP"),
    WT("BITFIELD"),
    WT("PFADD"),
    WT("PFCOUNT"),
    WT("PFMERGE"),
    /* lists */
    WT("LPUSH"),
    WT("RPUSH"),
    WT("LPUSHX"),
    WT("RPUSHX"),
    WT("LPOP"),
    WT("RPOP"),
    WT("LRANGE"),
    WT("LLEN"),
    WT("LINDEX"),
    WT("LSET"),
    WT("LREM"),
    WT("LTRIM"),
    WT("LINSERT"),
    WT("LPOS"),
    WT("LMOVE"),
    WT("BLMOVE"),
    WT("RPOPLPUSH"),
    WT("BRPOPLPUSH"),
    WT("BLPOP"),
    WT("BRPOP"),
    WT("LMPOP"),
    WT("BLMPOP"),
    /* sets */
    WT("SADD"),
    WT("SREM"),
    WT("SMEMBERS"),
    WT("SISMEMBER"),
    WT("SMISMEMBER"),
    WT("SCARD"),
    WT("SPOP"),
    WT("SRANDMEMBER"),
    WT("SINTER"),
    WT("SINTERCARD"),
    WT("SINTERSTORE"),
    WT("SUNION"),
    WT("SUNIONSTORE"),
    WT("SDIFF"),
    WT("SDIFFSTORE"),
    WT("SMOVE"),
    WT("SSCAN"),
    /* sorted sets */
    WT("ZADD"),
    WT("ZREM"),
    WT("ZRANGE"),
    WT("ZREVRANGE"),
    WT("ZRANGEBYSCORE"),
    WT("ZREVRANGEBYSCORE"),
    WT("ZRANGEBYLEX"),
    WT("ZSCORE"),
    WT("ZMSCORE"),
    WT("ZCARD"),
    WT("ZCOUNT"),
    WT("ZINCRBY"),
    WT("ZRANK"),
    WT("ZREVRANK"),
    WT("ZPOPMIN"),
    WT("ZPOPMAX"),
    WT("BZPOPMIN"),
    WT("BZPOPMAX"),
    WT("ZREMRANGEBYSCORE"),
    WT("ZREMRANGEBYRANK"),
    WT("ZSCAN"),
    WT("ZUNIONSTORE"),
    WT("ZINTERSTORE"),
    /* streams, geo */
    WT("XADD"),
    WT("XRANGE"),
    WT("XREVRANGE"),
    WT("XLEN"),
    WT("XREAD"),
    WT("XDEL"),
    WT("XTRIM"),
    WT("GEOADD"),
    WT("GEOPOS"),
    WT("GEODIST"),
    WT("GEOSEARCH"),
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};
