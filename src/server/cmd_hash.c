/*
 * cmd_hash.c - Redis's hash commands on contexts: a context is a hash, its
 * keys are the hash's fields.
 *
 * Reads (HGET, HGETALL, HSCAN, ...) take the newest decided version with
 * ctx_get_latest and hold the reply until it is durable (hash_read). Writes
 * (HSET, HDEL, HINCRBY, ...) record their changes in the connection's
 * wbatch; the core commits it after the handler, guarded by the version it
 * read, and runs the handler again on a conflict, so a handler must not
 * change anything outside the wbatch.
 *
 * Differences from Redis (docs/protocol.md, "Hash and keyspace commands"):
 * field names are 1..max_key_size bytes (an empty field is refused), and a
 * context that has no fields left is absent for these commands but is not
 * dropped (CTX.* still sees it, with its history).
 *
 * HSCAN's cursor is (version << 32) | position: the position in the
 * iteration order of that version of the context, which is stable for one
 * version. A scan therefore walks one snapshot: every field of the version it
 * started on, exactly once, whatever is written meanwhile, as long as that
 * version is still in history (history_depth versions, 64 by default). Once
 * it has left, the scan goes on by position over the newest version, and a
 * field may then be missed or returned twice. Cursor 0 starts and ends.
 * (Round 14 changed that: see hscan_version.)
 *
 * HELD VERSIONS (round 16): the version a connection's unfinished scan
 * walks is held between its pages, and with it every field of it that
 * later versions deleted or rewrote. A client that never finishes its scan
 * would hold that for its connection's life: maxclients times the largest
 * hash. So the hold is released when the scan ends, when its hash is
 * absent (at the next page, or the loop's timer), and by the loop's timer
 * (hscan_tick, once a second) when the scan was not continued for
 * scan-hold-seconds (30), or for a second while the server's held versions
 * hold more than scan-hold-bytes (64 MiB) of keys and values
 * (ctx_state_bytes: what a version may keep alive once every field of it
 * is rewritten). A released scan's next page takes its version from
 * history, or starts again at 0 on the newest version: fields present
 * throughout are still returned (some twice), as Redis promises. INFO
 * memory shows scan_versions_held(_bytes), INFO stats
 * scan_versions_released.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_common.h"
#include "core.h"

/* ---- shared pieces ---------------------------------------------------------- */

/* The wbatch of a write command on argv[1]; NULL if an error was replied. */
static wbatch *hash_write(client *c, const arg *key)
{
	char id[CTX_ID_MAX + 1];
	if (!arg_to_id(c, key, id))
		return NULL;
	return client_wbatch(c, id);
}

/* ctx keys are 1..max_key_size bytes: refuse empty fields up front. */
static bool fields_ok(client *c, int argc, const arg *argv, int first, int step)
{
	for (int i = first; i < argc; i += step)
		if (argv[i].n == 0) {
			reply_error(c, "ERR empty field names are not supported (a field is "
			               "1 or more bytes)");
			return false;
		}
	return true;
}

static void wrong_args(client *c, const arg *name)
{
	char low[32];
	size_t n = name->n < sizeof(low) - 1 ? name->n : sizeof(low) - 1;
	for (size_t i = 0; i < n; i++)
		low[i] =
		    (char)(name->p[i] >= 'A' && name->p[i] <= 'Z' ? name->p[i] + 32 : name->p[i]);
	low[n] = '\0';
	reply_error(c, "ERR wrong number of arguments for '%s' command", low);
}

/* ---- writes --------------------------------------------------------------------- */

/* HSET key field value [field value ...] / HMSET: the batch with the puts
 * recorded, NULL if an error was replied. The puts do not look the fields
 * up: HMSET needs no count, and HSET's count of new fields is taken after
 * the commit (client_reply_new_fields) when it can be. */
static wbatch *hset_pairs(client *c, int argc, const arg *argv)
{
	if (argc % 2) {
		wrong_args(c, &argv[0]);
		return NULL;
	}
	if (!fields_ok(c, argc, argv, 2, 2))
		return NULL;
	return hash_write(c, &argv[1]);
}

static void put_pairs(wbatch *w, int argc, const arg *argv)
{
	for (int i = 2; i < argc; i += 2)
		wb_put_blind(w, argv[i].p, argv[i].n, argv[i + 1].p, argv[i + 1].n);
}

static void cmd_hset(client *c, int argc, const arg *argv)
{
	wbatch *w = hset_pairs(c, argc, argv);
	if (!w)
		return;
	if (client_reply_new_fields(c, w)) {
		put_pairs(w, argc, argv);
		return;
	}
	long long added = 0; /* inside EXEC: against the transaction's changes */
	for (int i = 2; i < argc; i += 2) {
		added += !wb_get(w, argv[i].p, argv[i].n, NULL, NULL);
		wb_put_blind(w, argv[i].p, argv[i].n, argv[i + 1].p, argv[i + 1].n);
	}
	reply_int(c, added);
}

static void cmd_hmset(client *c, int argc, const arg *argv)
{
	wbatch *w = hset_pairs(c, argc, argv);
	if (!w)
		return;
	put_pairs(w, argc, argv);
	reply_ok(c);
}

static void cmd_hsetnx(client *c, int argc, const arg *argv)
{
	if (!fields_ok(c, argc, argv, 2, 2))
		return;
	wbatch *w = hash_write(c, &argv[1]);
	if (!w)
		return;
	if (wb_get(w, argv[2].p, argv[2].n, NULL, NULL)) {
		reply_int(c, 0);
		return;
	}
	wb_put_blind(w, argv[2].p, argv[2].n, argv[3].p, argv[3].n);
	reply_int(c, 1);
}

static void cmd_hdel(client *c, int argc, const arg *argv)
{
	wbatch *w = hash_write(c, &argv[1]);
	if (!w)
		return;
	long long removed = 0;
	for (int i = 2; w && wb_exists(w) && i < argc; i++)
		if (argv[i].n && wb_get(w, argv[i].p, argv[i].n, NULL, NULL)) {
			wb_del(w, argv[i].p, argv[i].n);
			removed++;
		}
	reply_int(c, removed);
}

/* HINCRBY and HINCRBYFLOAT key field: the batch to write, and the field's
 * value read by parse into *old (left as it is when the field is absent);
 * NULL if an error was replied (not_number when the value does not parse). */
static wbatch *incr_target(client *c, int argc, const arg *argv,
                           bool (*parse)(const void *p, size_t n, void *out), void *old,
                           const char *not_number)
{
	if (!fields_ok(c, argc, argv, 2, 2))
		return NULL;
	wbatch *w = hash_write(c, &argv[1]);
	const void *v;
	size_t vn;
	if (w && wb_get(w, argv[2].p, argv[2].n, &v, &vn) && !parse(v, vn, old)) {
		reply_error(c, "%s", not_number);
		return NULL;
	}
	return w;
}

static bool parse_ll_value(const void *p, size_t n, void *out)
{
	return parse_ll(p, n, out);
}

static void cmd_hincrby(client *c, int argc, const arg *argv)
{
	long long incr, old = 0;
	if (!parse_ll(argv[3].p, argv[3].n, &incr)) {
		reply_error(c, "ERR value is not an integer or out of range");
		return;
	}
	wbatch *w =
	    incr_target(c, argc, argv, parse_ll_value, &old, "ERR hash value is not an integer");
	if (!w)
		return;
	if ((incr < 0 && old < 0 && incr < LLONG_MIN - old) ||
	    (incr > 0 && old > 0 && incr > LLONG_MAX - old)) {
		reply_error(c, "ERR increment or decrement would overflow");
		return;
	}
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%lld", old + incr);
	wb_put_blind(w, argv[2].p, argv[2].n, buf, (size_t)n);
	reply_int(c, old + incr);
}

/* Redis's string2ld: strtold over the whole string, no leading space, no
 * NaN, no overflow. */
static bool parse_ld(const void *p, size_t n, long double *out)
{
	char buf[5 * 1024];
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	char *end;
	errno = 0;
	long double v = strtold(buf, &end);
	if (buf[0] == ' ' || (buf[0] >= '\t' && buf[0] <= '\r') || *end != '\0' ||
	    (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || v == 0)) || isnan(v))
		return false;
	*out = v;
	return true;
}

static bool parse_ld_value(const void *p, size_t n, void *out)
{
	return parse_ld(p, n, out);
}

/* Redis's ld2string(LD_STR_HUMAN): %.17Lf without trailing zeros. */
static int format_ld(char *buf, size_t cap, long double v)
{
	int l = snprintf(buf, cap, "%.17Lf", v);
	if (l < 0 || (size_t)l + 1 > cap)
		return -1;
	if (strchr(buf, '.')) {
		while (buf[l - 1] == '0')
			l--;
		if (buf[l - 1] == '.')
			l--;
	}
	if (l == 2 && buf[0] == '-' && buf[1] == '0') {
		buf[0] = '0';
		l = 1;
	}
	buf[l] = '\0';
	return l;
}

static void cmd_hincrbyfloat(client *c, int argc, const arg *argv)
{
	long double incr, old = 0;
	if (!parse_ld(argv[3].p, argv[3].n, &incr)) {
		reply_error(c, "ERR value is not a valid float");
		return;
	}
	if (isinf(incr)) {
		reply_error(c, "ERR value is NaN or Infinity");
		return;
	}
	wbatch *w =
	    incr_target(c, argc, argv, parse_ld_value, &old, "ERR hash value is not a float");
	if (!w)
		return;
	long double sum = old + incr;
	if (isnan(sum) || isinf(sum)) {
		reply_error(c, "ERR increment would produce NaN or Infinity");
		return;
	}
	char buf[5 * 1024];
	int n = format_ld(buf, sizeof(buf), sum);
	if (n < 0) {
		reply_error(c, "ERR increment would produce a number too long to store");
		return;
	}
	wb_put_blind(w, argv[2].p, argv[2].n, buf, (size_t)n);
	reply_bulk(c, buf, (size_t)n);
}

/* ---- reads ----------------------------------------------------------------------- */

static void cmd_hget(client *c, int argc, const arg *argv)
{
	bool failed;
	wbatch *w = hash_read_wb(c, &argv[1], &failed);
	if (failed)
		return;
	const void *v;
	size_t vn;
	if (w && wb_get(w, argv[2].p, argv[2].n, &v, &vn))
		reply_bulk(c, v, vn);
	else
		reply_null(c);
}

static void cmd_hmget(client *c, int argc, const arg *argv)
{
	bool failed;
	wbatch *w = hash_read_wb(c, &argv[1], &failed);
	if (failed)
		return;
	reply_array(c, (size_t)argc - 2);
	for (int i = 2; i < argc; i++) {
		const void *v;
		size_t vn;
		if (w && wb_get(w, argv[i].p, argv[i].n, &v, &vn))
			reply_bulk(c, v, vn);
		else
			reply_null(c);
	}
}

static void cmd_hlen(client *c, int argc, const arg *argv)
{
	bool failed;
	wbatch *w = hash_read_wb(c, &argv[1], &failed);
	if (!failed)
		reply_int(c, w ? (long long)wb_count(w) : 0);
}

static void cmd_hstrlen(client *c, int argc, const arg *argv)
{
	bool failed;
	wbatch *w = hash_read_wb(c, &argv[1], &failed);
	size_t vn = 0;
	const void *v;
	if (!failed)
		reply_int(c, w && wb_get(w, argv[2].p, argv[2].n, &v, &vn) ? (long long)vn : 0);
}

static void cmd_hexists(client *c, int argc, const arg *argv)
{
	bool failed;
	wbatch *w = hash_read_wb(c, &argv[1], &failed);
	if (!failed)
		reply_int(c, w && wb_get(w, argv[2].p, argv[2].n, NULL, NULL));
}

enum { WANT_KEYS = 1, WANT_VALUES = 2 };

typedef struct all_walk {
	client *c;
	int want;
	size_t n;
} all_walk;

static bool all_visit(void *p, const void *k, size_t kn, const void *v, size_t vn)
{
	all_walk *a = p;
	if (a->want & WANT_KEYS)
		reply_bulk(a->c, k, kn);
	if (a->want & WANT_VALUES)
		reply_bulk(a->c, v, vn);
	a->n++;
	return true;
}

/* HGETALL, HKEYS, HVALS: the whole hash in iteration order. */
static void reply_all(client *c, const arg *key, int want)
{
	bool failed;
	wbatch *w = hash_read_wb(c, key, &failed);
	if (failed)
		return;
	size_t h = reply_defer_len(c);
	all_walk a = {c, want, 0};
	if (w)
		wb_foreach(w, all_visit, &a);
	if (want == (WANT_KEYS | WANT_VALUES))
		reply_set_map_len(c, h, a.n);
	else
		reply_set_array_len(c, h, a.n);
}

static void cmd_hgetall(client *c, int argc, const arg *argv)
{
	reply_all(c, &argv[1], WANT_KEYS | WANT_VALUES);
}

static void cmd_hkeys(client *c, int argc, const arg *argv)
{
	reply_all(c, &argv[1], WANT_KEYS);
}

static void cmd_hvals(client *c, int argc, const arg *argv)
{
	reply_all(c, &argv[1], WANT_VALUES);
}

/* ---- HSCAN ---------------------------------------------------------------------------- */

typedef struct pair {
	const void *k, *v;
	size_t kn, vn;
} pair;

/* All pairs of one version in iteration order: p[0..n) point into the
 * version, which the iterator and the reference hold until pairs_free. */
typedef struct pairs {
	ctx_state *st; /* NULL: an absent hash, no pairs */
	ctx_iter *it;
	pair *p;
	size_t n;
} pairs;

/* The pairs of st (NULL: none) at positions [from, upto) of its iteration
 * order (SIZE_MAX: to its end), taking over its reference: the walk stops
 * at upto and keeps only those (an HSCAN page costs its position plus its
 * COUNT, not the whole hash). False: an error was replied and st released. */
static bool pairs_take(client *c, ctx_state *st, size_t from, size_t upto, pairs *ps)
{
	*ps = (pairs){st, NULL, NULL, 0};
	if (!st)
		return true;
	size_t n = ctx_state_count(st);
	upto = upto < n ? upto : n;
	from = from < upto ? from : upto;
	ps->p = malloc((upto - from ? upto - from : 1) * sizeof(*ps->p));
	if (!ps->p || ctx_iter_begin(st, &ps->it) != CTX_OK) {
		reply_ctx_error(c, CTX_NOMEM);
		free(ps->p);
		ctx_state_release(st);
		return false;
	}
	pair skipped;
	for (size_t i = 0; i < upto; i++) {
		pair *q = i < from ? &skipped : &ps->p[ps->n];
		if (!ctx_iter_next(ps->it, &q->k, &q->kn, &q->v, &q->vn))
			break;
		ps->n += i >= from;
	}
	return true;
}

static void pairs_free(pairs *ps)
{
	free(ps->p);
	ctx_iter_free(ps->it);
	ctx_state_release(ps->st);
}

void hscan_drop(client *c)
{
	hscan_state *hs = client_hscan(c);
	if (hs->st) {
		atomic_fetch_sub(&srv.scan_held, 1);
		atomic_fetch_sub(&srv.scan_held_bytes, hs->bytes);
	}
	ctx_iter_free(hs->it);
	ctx_state_release(hs->st);
	hs->it = NULL;
	hs->st = NULL;
	hs->pos = 0;
	hs->bytes = 0;
}

/* Hold st (a reference the caller gives) for c's scan. */
static void hscan_hold(client *c, ctx_state *st)
{
	hscan_state *hs = client_hscan(c);
	hs->st = st;
	hs->bytes = ctx_state_bytes(st);
	atomic_fetch_add(&srv.scan_held, 1);
	atomic_fetch_add(&srv.scan_held_bytes, hs->bytes);
}

void hscan_tick(client *c, uint64_t now)
{
	hscan_state *hs = client_hscan(c);
	if (!hs->st)
		return;
	uint64_t idle = now > hs->used_us ? now - hs->used_us : 0;
	uint64_t hold =
	    (uint64_t)atomic_load_explicit(&srv.cfg.scan_hold_seconds, memory_order_relaxed) *
	    1000000u;
	bool release = idle >= hold;
	if (!release && idle >= 1000000u)
		release = atomic_load(&srv.scan_held_bytes) >
		          atomic_load_explicit(&srv.cfg.scan_hold_bytes, memory_order_relaxed);
	/* Its hash gone (dropped, expired, or emptied: absent for HSCAN)?
	 * ctx_context_info is no access: it keeps no time-to-live alive. */
	if (!release) {
		ctx_context_status cs;
		release = ctx_context_info(server_store(), ctx_state_id(hs->st), &cs) != CTX_OK ||
		          cs.keys == 0;
	}
	if (release) {
		hscan_drop(c);
		atomic_fetch_add(&srv.scan_released, 1);
	}
}

/* The version a scan at cursor version `version` of st's context walks, held
 * in hs->st, taking over st's reference; *pos is set to 0 when that
 * version is gone. The version the client's last page walked is kept (its
 * iterator too), so a scan continued on its connection walks its snapshot
 * however many versions are written meanwhile, and a page costs its COUNT,
 * not its position. A cursor of another connection (or of a scan this one
 * left) takes the version from history; once it has left history, the scan
 * starts again at 0 on the newest version: fields present throughout are
 * returned at least once (as Redis promises), some twice. Continuing by
 * position on the newest version missed fields after deletes (round 14). */
static void hscan_version(client *c, ctx_state *st, uint64_t version, uint64_t *pos)
{
	hscan_state *hs = client_hscan(c);
	if (version && hs->st && ctx_state_version(hs->st) == version &&
	    strcmp(ctx_state_id(hs->st), ctx_state_id(st)) == 0) {
		ctx_state_release(st);
		return;
	}
	hscan_drop(c);
	if (version && version != ctx_state_version(st)) {
		ctx_state *old;
		if (ctx_get_at(server_store(), ctx_state_id(st), version, &old) == CTX_OK) {
			ctx_state_release(st);
			st = old;
		} else {
			*pos = 0;
		}
	}
	hscan_hold(c, st);
}

/* HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES] */
static void cmd_hscan(client *c, int argc, const arg *argv)
{
	uint64_t cursor;
	scan_opts o;
	if (!parse_scan_cursor(argv[2].p, argv[2].n, &cursor)) {
		reply_error(c, "ERR invalid cursor");
		return;
	}
	bool failed;
	ctx_state *st = hash_read(c, &argv[1], &failed);
	if (failed)
		return;
	if (!st) { /* as Redis: an absent key ends the scan before the options are read */
		hscan_drop(c); /* its hash may be the one this client was scanning */
		reply_array(c, 2);
		reply_cstr(c, "0");
		reply_array(c, 0);
		return;
	}
	if (!parse_scan_opts(c, argc, argv, 3, true, false, &o)) {
		ctx_state_release(st);
		return;
	}
	uint64_t version = cursor >> 32, pos = cursor & 0xffffffffu;
	hscan_version(c, st, version, &pos);
	hscan_state *hs = client_hscan(c);
	st = hs->st;
	hs->used_us = now_us();
	size_t n = ctx_state_count(st);
	size_t start = pos < n ? (size_t)pos : n;
	size_t end = (size_t)o.count < n - start ? start + (size_t)o.count : n;
	if (hs->it && hs->pos > start) { /* a page again: from the start */
		ctx_iter_free(hs->it);
		hs->it = NULL;
	}
	pair *p = malloc((end - start ? end - start : 1) * sizeof(*p));
	if (!hs->it) {
		hs->pos = 0;
		if (p && ctx_iter_begin(st, &hs->it) != CTX_OK)
			hs->it = NULL;
	}
	if (!p || !hs->it) {
		free(p);
		hscan_drop(c);
		reply_ctx_error(c, CTX_NOMEM);
		return;
	}
	size_t got = 0;
	for (pair skipped; hs->pos < end; hs->pos++) {
		pair *q = hs->pos < start ? &skipped : &p[got];
		if (!ctx_iter_next(hs->it, &q->k, &q->kn, &q->v, &q->vn))
			break;
		got += hs->pos >= start;
	}
	size_t hits = 0;
	for (size_t i = 0; i < got; i++)
		if (!o.match || glob_match(o.match->p, o.match->n, p[i].k, p[i].kn, false))
			p[hits++] = p[i]; /* hits <= i: compacting in place is safe */
	uint64_t next = 0;
	if (end < n) {
		uint64_t v = ctx_state_version(st);
		next = (v < (UINT64_C(1) << 31) ? v << 32 : 0) | end;
	}
	char buf[24];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)next);
	reply_array(c, 2);
	reply_cstr(c, buf);
	reply_array(c, o.novalues ? hits : 2 * hits);
	for (size_t i = 0; i < hits; i++) {
		reply_bulk(c, p[i].k, p[i].kn);
		if (!o.novalues)
			reply_bulk(c, p[i].v, p[i].vn);
	}
	free(p);
	if (!next)
		hscan_drop(c); /* the scan is over (or its cursor holds no version) */
}

/* ---- HRANDFIELD ------------------------------------------------------------------------------ */

static _Thread_local uint64_t rand_state;

static uint64_t rand_next(void)
{
	if (!rand_state) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		rand_state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
		             (uint64_t)(uintptr_t)&rand_state;
		rand_state |= 1;
	}
	rand_state ^= rand_state << 13;
	rand_state ^= rand_state >> 7;
	rand_state ^= rand_state << 17;
	return rand_state;
}

static void reply_pair(client *c, const pair *p, bool withvalues)
{
	if (!withvalues) {
		reply_bulk(c, p->k, p->kn);
		return;
	}
	if (client_resp(c) == 3)
		reply_array(c, 2);
	reply_bulk(c, p->k, p->kn);
	reply_bulk(c, p->v, p->vn);
}

/* HRANDFIELD key [count [WITHVALUES]] */
static void cmd_hrandfield(client *c, int argc, const arg *argv)
{
	long long count = 1;
	bool withvalues = false, single = argc == 2;
	if (argc >= 3 && !parse_ll(argv[2].p, argv[2].n, &count)) {
		reply_error(c, "ERR value is not an integer or out of range");
		return;
	}
	if (argc == 4 && !(withvalues = arg_is(&argv[3], "WITHVALUES"))) {
		reply_error(c, "ERR syntax error");
		return;
	}
	if (argc > 4) {
		reply_error(c, "ERR syntax error");
		return;
	}
	if (count < -LLONG_MAX / 2 || count > LLONG_MAX / 2) {
		reply_error(c, "ERR value is out of range");
		return;
	}
	bool failed;
	ctx_state *st = hash_read(c, &argv[1], &failed);
	if (failed)
		return;
	pairs ps;
	if (!pairs_take(c, st, 0, SIZE_MAX, &ps))
		return;
	pair *p = ps.p;
	size_t n = ps.n;
	if (single) {
		if (n) {
			const pair *q = &p[rand_next() % n];
			reply_bulk(c, q->k, q->kn);
		} else {
			reply_null(c);
		}
	} else {
		/* a negative count: that many picks, repeats allowed; else up to count
		 * distinct fields, the first `want` of a partial Fisher-Yates shuffle */
		bool repeat = count < 0 || n == 0;
		size_t want = repeat              ? (n ? (size_t)(-count) : 0)
		              : (size_t)count < n ? (size_t)count
		                                  : n;
		for (size_t i = 0; !repeat && i < want; i++) {
			size_t j = i + (size_t)(rand_next() % (n - i));
			pair t = p[i];
			p[i] = p[j];
			p[j] = t;
		}
		bool flat = withvalues && client_resp(c) == 2;
		reply_array(c, flat ? 2 * want : want);
		/* the reply's length is the count's, not the hash's: over the
		 * output limit the client is closed, so stop building it there */
		for (size_t i = 0; i < want && ((i & 4095) || !client_output_over(c)); i++)
			reply_pair(c, repeat ? &p[rand_next() % n] : &p[i], withvalues);
	}
	pairs_free(&ps);
}

/* ---- the table ---------------------------------------------------------------------------- */

#define W (CMD_WRITE)
#define R (CMD_READONLY)

const command hash_commands[] = {
    {"HSET", cmd_hset, -4, W, 1, "Set fields of a context (a hash); creates it if needed", "hash"},
    {"HMSET", cmd_hmset, -4, W, 1, "Set fields (deprecated form of HSET)", "hash"},
    {"HSETNX", cmd_hsetnx, 4, W, 1, "Set a field only if it does not exist", "hash"},
    {"HDEL", cmd_hdel, -3, W, 1, "Delete fields", "hash"},
    {"HINCRBY", cmd_hincrby, 4, W, 1, "Add an integer to a field", "hash"},
    {"HINCRBYFLOAT", cmd_hincrbyfloat, 4, W, 1, "Add a float to a field", "hash"},
    {"HGET", cmd_hget, 3, R, 1, "Get a field's value", "hash"},
    {"HMGET", cmd_hmget, -3, R, 1, "Get the values of fields", "hash"},
    {"HGETALL", cmd_hgetall, 2, R, 1, "Get every field and value", "hash"},
    {"HKEYS", cmd_hkeys, 2, R, 1, "Get every field", "hash"},
    {"HVALS", cmd_hvals, 2, R, 1, "Get every value", "hash"},
    {"HLEN", cmd_hlen, 2, R, 1, "Number of fields", "hash"},
    {"HSTRLEN", cmd_hstrlen, 3, R, 1, "Length of a field's value", "hash"},
    {"HEXISTS", cmd_hexists, 3, R, 1, "Whether a field exists", "hash"},
    {"HSCAN", cmd_hscan, -3, R, 1, "Iterate fields over one version (cursor)", "hash"},
    {"HRANDFIELD", cmd_hrandfield, -2, R, 1, "Random fields", "hash"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};
