/*
 * probe_outputs_untouched.c - ctx.h, ERRORS: "On failure nothing has
 * changed and output parameters are left untouched." Each call below fails
 * on purpose with its output set to a sentinel first; the probe prints
 * every call that wrote its output anyway.
 *
 * Build and run (from the worktree, after `make build`):
 *   cc -O1 -g -Iinclude tests/probes/probe_outputs_untouched.c build/libctx.a \
 *      $(pkg-config --libs liburcu-bp liburcu-cds libxxhash) -lpthread \
 *      -o /tmp/probe_outputs
 *   /tmp/probe_outputs
 * Shows (main 43bf876): ctx_watch_next and ctx_watch_wait set *out to NULL
 * when they return CTX_NOT_FOUND (src/lib/watch.c:1429 and :1448 assign
 * before testing). Exit 1 if any call wrote its output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctx.h"

static int bad;

#define SENT ((void *)0x5a5a)
#define CHECK_PTR(call, want, p)                                                                   \
	do {                                                                                       \
		ctx_status st_ = (call);                                                           \
		if (st_ != (want))                                                                 \
			printf("%-60s returned %s, expected %s\n", #call, ctx_strerror(st_),       \
			       ctx_strerror(want));                                                \
		else if ((void *)(p) != SENT) {                                                    \
			printf("%-60s %s but wrote its output (%p)\n", #call, ctx_strerror(st_),   \
			       (void *)(p));                                                       \
			bad++;                                                                     \
		}                                                                                  \
	} while (0)
#define CHECK_U64(call, want, x)                                                                   \
	do {                                                                                       \
		ctx_status st_ = (call);                                                           \
		if (st_ != (want))                                                                 \
			printf("%-60s returned %s, expected %s\n", #call, ctx_strerror(st_),       \
			       ctx_strerror(want));                                                \
		else if ((x) != 0x5a5a) {                                                          \
			printf("%-60s %s but wrote its output (%llu)\n", #call, ctx_strerror(st_), \
			       (unsigned long long)(x));                                           \
			bad++;                                                                     \
		}                                                                                  \
	} while (0)

int main(void)
{
	ctx_store *s;
	if (ctx_open(NULL, &s) != CTX_OK || ctx_create(s, "c") != CTX_OK)
		return 2;
	ctx_put(s, "c", "k", 1, "v", 1, NULL);
	void *p;
	uint64_t u;
	size_t n;

	p = SENT;
	CHECK_PTR(ctx_get(s, "nope", (ctx_state **)&p), CTX_NOT_FOUND, p);
	p = SENT;
	CHECK_PTR(ctx_get_latest(s, "nope", (ctx_state **)&p), CTX_NOT_FOUND, p);
	p = SENT;
	CHECK_PTR(ctx_get_at(s, "c", 99, (ctx_state **)&p), CTX_NOT_FOUND, p);
	p = SENT;
	n = 0x5a5a;
	CHECK_PTR(ctx_history(s, "nope", (ctx_history_entry **)&p, &n), CTX_NOT_FOUND, p);
	p = SENT;
	CHECK_PTR(ctx_point_list(s, "nope", (ctx_point **)&p, &n), CTX_NOT_FOUND, p);
	u = 0x5a5a;
	CHECK_U64(ctx_put(s, "nope", "k", 1, "v", 1, &u), CTX_NOT_FOUND, u);
	u = 0x5a5a;
	CHECK_U64(ctx_del(s, "c", "absent", 6, &u), CTX_NOT_FOUND, u);
	u = 0x5a5a;
	CHECK_U64(ctx_restore(s, "c", 99, &u), CTX_NOT_FOUND, u);
	u = 0x5a5a;
	CHECK_U64(ctx_restore_latest(s, "c", &u), CTX_NOT_FOUND, u);
	u = 0x5a5a;
	CHECK_U64(ctx_point_create(s, "nope", NULL, &u), CTX_NOT_FOUND, u);
	ctx_txn *t;
	ctx_txn_begin(s, "c", &t);
	ctx_txn_put(t, "x", 1, "y", 1);
	u = 0x5a5a;
	uint64_t r = 0x5a5a;
	CHECK_U64(ctx_txn_commit_nowait(t, 1, &u, &r), CTX_CONFLICT, u | (r != 0x5a5a));
	p = SENT;
	CHECK_PTR(ctx_txn_begin(s, "nope", (ctx_txn **)&p), CTX_NOT_FOUND, p);
	p = SENT;
	CHECK_PTR(ctx_tracker_open(s, "nope", NULL, (ctx_tracker **)&p), CTX_NOT_FOUND, p);
	ctx_watch *w;
	if (ctx_watch_open(s, "c", false, 0, &w) != CTX_OK)
		return 2;
	p = SENT;
	CHECK_PTR(ctx_watch_next(w, (ctx_event **)&p), CTX_NOT_FOUND, p);
	p = SENT;
	CHECK_PTR(ctx_watch_wait(w, 0, (ctx_event **)&p), CTX_NOT_FOUND, p);
	ctx_watch_close(w);
	ctx_tracker *tr;
	if (ctx_tracker_open(s, "c", NULL, &tr) != CTX_OK)
		return 2;
	p = SENT;
	n = 0x5a5a;
	CHECK_PTR(ctx_tracker_get(tr, "absent", 6, &p, &n), CTX_NOT_FOUND, p);
	ctx_tracker_close(tr);
	ctx_context_status cs;
	memset(&cs, 0x5a, sizeof cs);
	CHECK_U64(ctx_context_info(s, "nope", &cs), CTX_NOT_FOUND,
	          cs.version == 0x5a5a5a5a5a5a5a5aull ? 0x5a5a : cs.version);
	ctx_close(s);
	printf("%d call(s) wrote their output on failure\n", bad);
	return bad ? 1 : 0;
}
