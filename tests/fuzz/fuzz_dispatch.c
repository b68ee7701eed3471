/*
 * fuzz_dispatch.c - libFuzzer target: ctxd's command dispatch, from the
 * bytes a client sends to the bytes it gets back, on a memory-only store.
 *
 * The connections are ctxd's own (src/server/fuzzhook.c: net.c compiled with
 * its socket and thread-pool calls redirected to memory): each read goes
 * through on_read, the RESP parser, the command lookup, the arity, auth and
 * MULTI checks, the handler with its write batch, the commit, parking, the
 * reply encoding into the output buffer and client_flush. Blocking commands
 * (CTX.POINT, CTX.RESTORE, EXPIRE, DBSIZE, ...) are not skipped: their work
 * runs on this thread, after the handler returned, as libuv's pool would run
 * it, with the connection blocked meanwhile. No thread runs ctxd code.
 *
 * INPUT
 *   byte 0: bit 0     requirepass "pw" (connections start unauthenticated)
 *           bits 1-3  read sizes: whole segments, 1, 2, 3, 7, 16, 64, 500
 *           bits 4-6  write window: all, or 1 to 7 bytes per write (a slow
 *                     reader: the rest goes through uv_write)
 *   then the bytes clients send, with directives, each a line of its own
 *   (at the start or after a '\n'):
 *     @0 .. @3   the following bytes go to connection 0 .. 3 (0 at first);
 *                a connection closed meanwhile is opened again
 *     @e         the current connection's peer closes (EOF)
 *     @t         the store's clock moves 10 minutes on (ttls expire)
 *   Seeds are readable RESP sessions: tests/fuzz/corpus/fuzz_dispatch.
 *
 * CHECKS
 *   - No crash, hang, leak or undefined behaviour (sanitizers, -timeout).
 *   - Every connection ends (after its EOF, once its work is done).
 *   - What a connection received is a sequence of well-formed RESP2/RESP3
 *     values, one per command plus one per push message: a handler that
 *     replies twice or not at all, or a bad deferred length, shows. A
 *     connection the server closed with output unwritten may end in part of
 *     a value.
 *   - The store is consistent: afterwards a new connection asks HGETALL and
 *     HLEN of every context, and the replies equal iterating the context's
 *     state (ctx_get, ctx_iter); then every context, its history, diffs and
 *     points are walked through the public API (fuzz_walk_store).
 * The store is kept for the process and emptied between inputs (as in the
 * other targets); its clock is fake and starts at the same time each input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "fuzz_common.h"
#include "store.h"

#define NCONN    4
#define CLOCK_T0 1700000000000000ull /* µs, November 2023 */

static uint64_t fake_now;
static ctx_store *store;
static fuzzhook_conn conns[NCONN];
static bool used[NCONN];

static uint64_t fake_clock(void *arg)
{
	return fake_now;
}

static void close_store(void)
{
	ctx_close(store);
}

static ctx_store *dispatch_store(void)
{
	if (store) {
		store_clear(store);
		return store;
	}
	ctx_options o;
	ctx_options_init(&o);
	o.clock_us = fake_clock;
	o.watch_keep_history = true; /* as ctxd opens its store */
	o.watch_history = 64;        /* a small ring: less for each leak check to scan */
	o.reaper_ms = 1u << 30;      /* expiry is found by the calls that meet it */
	if (ctx_open(&o, &store) != CTX_OK)
		fuzz_fail("cannot open a memory store: %s", ctx_last_error());
	atexit(close_store);
	return store;
}

/* ---- replies ------------------------------------------------------------------ */

#define R_INCOMPLETE ((size_t)-1)
#define R_BAD        ((size_t)-2)

/* The line at p[0..n) without its CR LF: its length, or R_INCOMPLETE/R_BAD. */
static size_t line_len(const char *p, size_t n)
{
	const char *nl = memchr(p, '\n', n);
	if (!nl)
		return R_INCOMPLETE;
	size_t k = (size_t)(nl - p);
	if (k == 0 || p[k - 1] != '\r' || memchr(p, '\r', k - 1))
		return R_BAD;
	return k - 1;
}

static bool line_ll(const char *p, size_t n, long long *v)
{
	char tmp[24];
	if (n == 0 || n >= sizeof(tmp))
		return false;
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	char *end;
	*v = strtoll(tmp, &end, 10);
	return *end == '\0' && (tmp[0] == '-' || (tmp[0] >= '0' && tmp[0] <= '9'));
}

/* One RESP2/RESP3 value at p[0..n): bytes it takes, or R_INCOMPLETE/R_BAD. */
static size_t resp_value(const char *p, size_t n, int depth)
{
	if (n == 0)
		return R_INCOMPLETE;
	if (depth > 64)
		return R_BAD;
	size_t l = line_len(p + 1, n - 1);
	if (l == R_INCOMPLETE || l == R_BAD)
		return l;
	size_t head = l + 3;
	long long v = 0;
	switch (p[0]) {
	case '+':
	case '-':
		return head;
	case '_':
		return l == 0 ? head : R_BAD;
	case '#':
		return l == 1 && (p[1] == 't' || p[1] == 'f') ? head : R_BAD;
	case ':':
	case '(':
		return line_ll(p + 1, l, &v) ? head : R_BAD;
	case ',':
		return l > 0 ? head : R_BAD;
	case '$':
	case '=':
	case '!':
		if (!line_ll(p + 1, l, &v) || v < -1 || (v == -1 && p[0] != '$'))
			return R_BAD;
		if (v == -1)
			return head;
		if (n - head < (size_t)v + 2)
			return R_INCOMPLETE;
		if (p[head + (size_t)v] != '\r' || p[head + (size_t)v + 1] != '\n')
			return R_BAD;
		if (p[0] == '=' && (v < 4 || p[head + 3] != ':'))
			return R_BAD;
		return head + (size_t)v + 2;
	case '*':
	case '%':
	case '~':
	case '>':
		if (!line_ll(p + 1, l, &v) || v < -1 || (v == -1 && p[0] != '*'))
			return R_BAD;
		if (v == -1)
			return head;
		if (p[0] == '%')
			v *= 2;
		size_t off = head;
		for (long long i = 0; i < v; i++) {
			size_t k = resp_value(p + off, n - off, depth + 1);
			if (k == R_INCOMPLETE || k == R_BAD)
				return k;
			off += k;
		}
		return off;
	default:
		return R_BAD;
	}
}

/* Check what a closed connection received. */
static void check_output(const fuzzhook_conn *fc, int slot)
{
	const char *p = fc->out.p;
	size_t n = fc->out.len, off = 0;
	uint64_t values = 0;
	if (getenv("CTX_FUZZ_VERBOSE")) {
		fprintf(stderr, "== connection %d: %llu replies, %llu pushes%s\n", slot,
		        (unsigned long long)fc->replies, (unsigned long long)fc->pushes,
		        fc->unsent ? ", closed with output unwritten" : "");
		if (n)
			fwrite(p, 1, n, stderr);
	}
	while (off < n) {
		size_t k = resp_value(p + off, n - off, 0);
		if (k == R_BAD)
			fuzz_fail("connection %d: malformed RESP at offset %zu of %zu: '%.40s'",
			          slot, off, n, p + off);
		if (k == R_INCOMPLETE) {
			if (!fc->unsent)
				fuzz_fail(
				    "connection %d: output ends in part of a value (offset %zu "
				    "of %zu)",
				    slot, off, n);
			break;
		}
		off += k;
		values++;
	}
	uint64_t want = fc->replies + fc->pushes;
	if (fc->unsent ? values > want : values != want)
		fuzz_fail("connection %d: %llu values received for %llu replies and %llu pushes",
		          slot, (unsigned long long)values, (unsigned long long)fc->replies,
		          (unsigned long long)fc->pushes);
}

/* ---- driving connections -------------------------------------------------------- */

static void finish(int slot)
{
	fuzzhook_conn *fc = &conns[slot];
	if (!used[slot])
		return;
	fuzzhook_pump();
	if (fc->c) {
		fuzzhook_eof(fc);
		fuzzhook_pump();
	}
	if (fc->c)
		fuzz_fail("connection %d does not end after its EOF", slot);
	check_output(fc, slot);
	fuzzhook_forget(fc);
	used[slot] = false;
}

static fuzzhook_conn *conn(int slot)
{
	if (used[slot] && !conns[slot].c)
		finish(slot);
	if (!used[slot]) {
		conns[slot].write_window = SIZE_MAX;
		fuzzhook_connect(&conns[slot]);
		used[slot] = true;
	}
	return &conns[slot];
}

static void send_bytes(int slot, const uint8_t *p, size_t n, size_t piece, size_t window)
{
	fuzzhook_conn *fc = conn(slot);
	fc->write_window = window;
	while (n > 0) {
		size_t k = fuzzhook_read(fc, p, n < piece ? n : piece);
		if (k == 0) {
			fuzzhook_pump();
			k = fuzzhook_read(fc, p, n < piece ? n : piece);
		}
		if (k == 0)
			return; /* closed or not reading: the rest is lost */
		p += k;
		n -= k;
		fuzzhook_pump();
	}
}

/* A directive line "@X\n" at data[i]: X, or 0. */
static uint8_t directive(const uint8_t *data, size_t size, size_t i)
{
	if (i + 3 > size || data[i] != '@' || data[i + 2] != '\n')
		return 0;
	uint8_t x = data[i + 1];
	return (x >= '0' && x < '0' + NCONN) || x == 'e' || x == 't' ? x : 0;
}

static void run_input(const uint8_t *data, size_t size)
{
	static const size_t pieces[8] = {SIZE_MAX, 1, 2, 3, 7, 16, 64, 500};
	uint8_t opt = data[0];
	size_t piece = pieces[(opt >> 1) & 7];
	size_t window = (opt >> 4) & 7 ? (opt >> 4) & 7 : SIZE_MAX;
	fuzzhook_setup(store, opt & 1 ? "pw" : NULL);
	int slot = 0;
	size_t start = 1;
	for (size_t i = 1; i <= size; i++) {
		uint8_t d =
		    i < size && (i == 1 || data[i - 1] == '\n') ? directive(data, size, i) : 0;
		if (i < size && !d)
			continue;
		if (i > start)
			send_bytes(slot, data + start, i - start, piece, window);
		if (d == 'e') {
			if (used[slot] && conns[slot].c) {
				fuzzhook_eof(&conns[slot]);
				fuzzhook_pump();
			}
		} else if (d == 't') {
			fake_now += 600ull * 1000000;
		} else if (d) {
			slot = d - '0';
		}
		start = i + 3;
		i += 2;
	}
	for (int s = 0; s < NCONN; s++)
		finish(s);
}

/* ---- the store afterwards ----------------------------------------------------------- */

static void send_command(fuzzhook_conn *fc, const char *name, const char *id)
{
	rbuf b = {0};
	resp_add_header(&b, '*', 2);
	resp_add_bulk(&b, name, strlen(name));
	resp_add_bulk(&b, id, strlen(id));
	size_t off = 0;
	while (off < b.len) {
		size_t k = fuzzhook_read(fc, b.p + off, b.len - off);
		if (k == 0)
			fuzz_fail("the checking connection does not read");
		off += k;
	}
	rbuf_free(&b);
	fuzzhook_pump();
}

/* HGETALL id's reply (RESP2) at out[*off..) against the state. */
static void check_hgetall(const rbuf *out, size_t *off, const char *id, const ctx_state *st)
{
	const char *p = out->p + *off;
	size_t n = out->len - *off;
	size_t total = resp_value(p, n, 0);
	long long pairs2;
	size_t l = line_len(p + 1, n - 1);
	if (total == R_BAD || total == R_INCOMPLETE || p[0] != '*' || !line_ll(p + 1, l, &pairs2))
		fuzz_fail("HGETALL '%s': not an array: '%.40s'", id, p);
	size_t want = st ? ctx_state_count(st) : 0;
	if (pairs2 < 0 || (size_t)pairs2 != 2 * want)
		fuzz_fail("HGETALL '%s' gives %lld elements, the state has %zu fields", id, pairs2,
		          want);
	size_t pos = l + 3;
	for (long long i = 0; i < pairs2; i += 2) {
		const char *kv[2];
		long long len[2];
		for (int j = 0; j < 2; j++) {
			size_t hl = line_len(p + pos + 1, n - pos - 1);
			if (p[pos] != '$' || !line_ll(p + pos + 1, hl, &len[j]) || len[j] < 0)
				fuzz_fail("HGETALL '%s': element %lld is not a bulk", id, i + j);
			kv[j] = p + pos + hl + 3;
			pos += hl + 3 + (size_t)len[j] + 2;
		}
		const void *v;
		size_t vn;
		if (!ctx_state_lookup(st, kv[0], (size_t)len[0], &v, &vn) || vn != (size_t)len[1] ||
		    (vn && memcmp(v, kv[1], vn) != 0))
			fuzz_fail("HGETALL '%s': field '%.*s' differs from the state", id,
			          (int)(len[0] > 64 ? 64 : len[0]), kv[0]);
	}
	*off += total;
}

static void check_hlen(const rbuf *out, size_t *off, const char *id, const ctx_state *st)
{
	const char *p = out->p + *off;
	size_t n = out->len - *off;
	size_t l = line_len(p + 1, n - 1);
	long long v;
	size_t want = st ? ctx_state_count(st) : 0;
	if (n == 0 || p[0] != ':' || l == R_BAD || l == R_INCOMPLETE || !line_ll(p + 1, l, &v) ||
	    v != (long long)want)
		fuzz_fail("HLEN '%s': '%.40s', the state has %zu fields", id, p, want);
	*off += l + 3;
}

static void check_store(void)
{
	fuzzhook_setup(store, NULL);
	fuzzhook_conn fc = {.write_window = SIZE_MAX};
	fuzzhook_connect(&fc);
	ctx_list l;
	if (ctx_list_ids(store, NULL, NULL, 0, &l) != CTX_OK)
		fuzz_fail("ctx_list_ids: %s", ctx_last_error());
	size_t off = 0;
	for (size_t i = 0; i < l.count; i++) {
		ctx_state *st = NULL;
		ctx_status rc = ctx_get(store, l.ids[i], &st);
		if (rc != CTX_OK && rc != CTX_NOT_FOUND)
			fuzz_fail("ctx_get('%s'): %s", l.ids[i], ctx_strerror(rc));
		send_command(&fc, "HGETALL", l.ids[i]);
		check_hgetall(&fc.out, &off, l.ids[i], st);
		send_command(&fc, "HLEN", l.ids[i]);
		check_hlen(&fc.out, &off, l.ids[i], st);
		if (st)
			ctx_state_release(st);
	}
	if (off != fc.out.len)
		fuzz_fail("the checking connection got %zu bytes more than its replies",
		          fc.out.len - off);
	fuzzhook_eof(&fc);
	fuzzhook_pump();
	if (fc.c)
		fuzz_fail("the checking connection does not end");
	fuzzhook_forget(&fc);
	/* ctx_count counts an expired context until it is reaped, and the
	 * store's reaper thread, woken by a command that met one, may be
	 * reaping it now: reap here, and let the reaper finish. */
	for (int i = 0; ctx_count(store) != l.count && i < 5000; i++) {
		ctx_expire_now(store);
		usleep(1000);
	}
	if (getenv("CTX_FUZZ_VERBOSE"))
		fprintf(stderr, "== store: %zu contexts listed, ctx_count %zu\n", l.count,
		        ctx_count(store));
	ctx_list_free(&l);
	fuzz_walk_store(store);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fake_now = CLOCK_T0;
	dispatch_store();
	run_input(data, size);
	check_store();
	store_clear(store);
	return 0;
}
