/*
 * net.c - ctxd's loops and connections: accept, read, parse, dispatch, reply,
 * park replies until durable, limits, shutdown.
 *
 * LOOPS
 *   srv.nloops threads, each running its own libuv loop with its own
 *   listening socket: all bound to the same address with SO_REUSEPORT, so the
 *   kernel spreads the accepts over the loops. A connection stays on the
 *   loop it is assigned to; its commands run there, inline.
 *
 * ACCEPT
 *   The kernel's SO_REUSEPORT spread is a hash of the peer's address and
 *   port, not a balance: 17 connections went 10/7 or 11/6, and the loop
 *   with more clients had the longer turns (and the worse tail). So a loop
 *   polls its listening socket and accepts itself (accept4, not uv_listen,
 *   which keeps the descriptor in its own handle), then assigns the
 *   connection to the loop with the fewest (lp->assigned, under
 *   balance_lock; itself on a tie). Another loop's connections go through
 *   its inbox (inbox_lock) and its handoff async handle, where that loop
 *   sets them up. INFO clients shows loop_clients (each loop's count). A
 *   stopping server assigns nothing (checked under balance_lock), and a
 *   stopping loop ends only once nothing assigned to it is in flight (a
 *   hand-over's wake-up is sent before inbox_lock is let go: handoff_push).
 *
 * A READ
 *   The bytes read are appended to the client's input buffer (grown with the
 *   bytes that actually arrive, never for a declared length), every complete
 *   request in it is parsed (resp.c) and run, and then the replies of all of
 *   them go out in one write: uv_try_write, and a uv_write of a copy of
 *   whatever the socket did not take. The parse and run wait for the
 *   loop's check phase, right after the poll phase: on_read appends the
 *   bytes and puts the client on the loop's ready list, and on_ready_check
 *   first hands the keys of every ready client's requests (each request's
 *   second argument, and its third as a field, from a light scan of the
 *   multibulk headers; up to PREFETCH_REQS) to ctx_prefetch_keys, so that
 *   the cache misses of finding their contexts and the fields' trie paths
 *   overlap instead of each request waiting for its own,
 *   then runs each client's input as above (run_input). A hint: no reply
 *   depends on it. Input read before an end of stream in the same poll
 *   phase runs before the end is handled. (The fuzz hook runs input at
 *   once.)
 *
 * GROUPS
 *   Consecutive complete requests of one read that are all hash writes
 *   (HSET, HMSET, HSETNX, HDEL, HINCRBY, HINCRBYFLOAT) of one key (outside
 *   MULTI, nothing streaming) run as a group: against
 *   one write batch, as inside EXEC, and one commit guarded by the batch's
 *   base (run_group). A conflict runs the group again; an error reply or a
 *   commit that fails otherwise drops the group's replies and runs its
 *   requests one by one. The requests after the first are found by parsing
 *   ahead into c->look; the group's replies are parked together.
 *
 * PARKING (the durability rule)
 *   A command's reply must not leave before the revision it depends on is
 *   durable (client_need_durable: a write's commit, or the version a read
 *   saw). At the end of the command, if that revision is not yet durable, a
 *   mark {start of the reply, revision} is pushed on the client: the output
 *   from that offset on is held. Marks are kept in increasing revision order
 *   (a mark with a revision not above the last one is not needed: the last
 *   one holds everything after it already). Each loop has a ctx_notifier
 *   polled with uv_poll; when it fires the loop reads the durable revision
 *   and releases the marks it reached, on the clients of its parked list.
 *   The notifier is told the lowest revision a mark waits for (lp->want,
 *   ctx_notifier_want; none: UINT64_MAX), so the flusher wakes the loop
 *   only after a batch that releases something of it.
 *   If the log failed, the held replies are replaced by -CTXIO errors (one
 *   per held command reply).
 *
 * SYNC INLINE (durability always, --sync-inline yes; off by default)
 *   The writes of a turn (on_ready_check) wake no flusher
 *   (ctx_flush_defer): at the end of the turn the loop syncs them itself
 *   (ctx_flush, sync_turn) and releases their replies, as Redis's one
 *   thread writes, fsyncs and replies, with no hand-off to the flusher and
 *   back through the notifier (two wake-ups on other CPUs per turn: at one
 *   client that was the gap to Redis, docs/benchmarks.md, round 16). The
 *   loop thus blocks for one fsync per turn that wrote; the requests that
 *   arrive meanwhile are read by the next turn, one group (Redis's
 *   schedule). If a sync runs already (another loop's, or the flusher's),
 *   ctx_flush returns at once, that sync's thread (or the flusher) takes
 *   the turn's records next, and the replies wait for the notifier as
 *   above. Writes made outside a turn (blocking work, timers) wake the
 *   flusher as before. Off by default: on the loaded 2-CPU machine of
 *   round 16 it measured slower than the flusher's hand-offs at 1 and 64
 *   unpipelined clients (docs/benchmarks.md, round 16, r16-hset).
 *
 *   A client's commits that wait for durability hold memory outside its
 *   output (log records, versions, marks; about 380 bytes a small commit):
 *   while their estimate (park_mark.cost) passes PARK_PAUSE, its input is
 *   neither run nor read, and it runs again once enough is released.
 *
 * OUTPUT LIMITS
 *   Bytes not yet taken by the socket, held or not, plus bytes in uv_write
 *   requests, count against client-output-buffer-limit (hard, and soft for
 *   some seconds). A client over it is closed: a client that stops reading
 *   cannot swell the server.
 *
 * HOSTING (one thread when one is enough)
 *   With several loops, loop 0 may run the others itself ("host" them):
 *   a hosted loop's thread parks on a condition variable, and loop 0 polls
 *   that loop's epoll fd (uv_backend_fd) and runs it with UV_RUN_NOWAIT when
 *   it has events (and on every control tick, for its timers). Nothing of a
 *   loop changes when it is hosted: its clients, handles and lists stay
 *   its own; only the thread that runs it changes, and the hand-over is a
 *   mutex (host_lock): OWN -> PARKING (loop 0 asks; the loop's on_async
 *   stops its uv_run) -> HOSTED (the loop's thread, which then waits) ->
 *   OWN (loop 0 stops polling, then wakes it); a loop that ends turns
 *   ENDED there, and loop 0 wakes a loop only under that mutex (libuv
 *   aborts on waking a closed loop). Every CTL_PERIOD_MS loop 0
 *   looks at the last period (if it had MIN_READS reads, or some while
 *   hosted with loop 0's thread at PIPE_UNHOST_CPU or more): hosting starts
 *   after HOST_AFTER_TICKS periods in a row where the clients sent about
 *   one request per read (no pipelining: each request costs a read, a
 *   write and often a sleep and a wake-up in epoll_wait, and a second loop
 *   thread on a machine where the clients also need CPU mostly adds wake-
 *   ups: docs/benchmarks.md, round 6); it ends after one period where the
 *   requests per read reach UNHOST_MIN_RPR while loop 0's thread used at
 *   least PIPE_UNHOST_CPU of a core (pipelined work that keeps one thread
 *   busy, which two threads do faster; pipelined work that leaves it idle
 *   half the time, e.g. a client that is itself the bottleneck, stays on
 *   one thread: a second thread there only adds sleeps, and each wake-up
 *   of a sleeping loop costs the client's send; docs/benchmarks.md, round
 *   15, r15-server), or after HOST_AFTER_TICKS periods in a row where
 *   loop 0's thread used more than UNHOST_ABOVE_CPU of a core while the
 *   machine had UNHOST_IDLE_OVER CPUs idle (one thread is not enough and a
 *   second would find a CPU: it then hosts again only below
 *   REHOST_BELOW_CPU), or where the machine was crowded: the CPUs that
 *   processes other than ctxd left (/proc/stat's busy time minus ctxd's
 *   own, over the last LOAD_WINDOW periods) below CROWDED_SPARE (other
 *   jobs load the machine beyond a client's CPU, and one thread gets a
 *   smaller share of it than several). After a crowd it hosts again once
 *   the spare CPUs reach UNCROWDED_SPARE, or after CROWD_HOLD periods (then
 *   a crowd that lasts ends it again). Until round 8 the crowd was loop
 *   0's own wait for a CPU while hosting, with a back-off of up to 32 s:
 *   ctxd's own threads and the kernel's work for its fsyncs made that
 *   wait, so a burst of durable writes kept the loops apart through the
 *   reads after it (docs/benchmarks.md, round 8). On stop
 *   every loop runs on its own thread again first. --loops-merge no turns
 *   hosting off.
 *
 * SHUTDOWN
 *   net_stop: every loop closes its listener, stops reading from its
 *   clients and closes each once its replies (parked ones included, so
 *   after their fsync) are written and its thread-pool work is done; after
 *   a deadline the rest are closed. Then the loops end.
 */
#include "core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SHUTDOWN_GRACE_US (30ull * 1000 * 1000)
#define UNAUTH_MAX_ARGS   10
#define UNAUTH_MAX_BULK   16384
#define ACCEPT_MAX        64 /* connections accepted per wake-up of a listener */

server srv;

/* Taken to assign a new connection to a loop (net.c, ACCEPT). */
static pthread_mutex_t balance_lock = PTHREAD_MUTEX_INITIALIZER;

uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#define STAT_ADD(lp, f, v) atomic_fetch_add_explicit(&(lp)->f, (v), memory_order_relaxed)

static void client_flush(client *c);
static void process_input(client *c);
static void resume_reading(client *c);
static void input_end(client *c);
static void run_input(client *c, bool prefetch);
static void maybe_finish(loop *lp);

/* ---- output: replies ------------------------------------------------------------ */

int client_resp(const client *c)
{
	return atomic_load_explicit(&c->resp, memory_order_relaxed);
}

void client_set_resp(client *c, int proto)
{
	atomic_store_explicit(&c->resp, proto, memory_order_relaxed);
}

size_t reply_mark(client *c)
{
	return c->out.len;
}

void reply_truncate(client *c, size_t mark)
{
	if (mark < c->out.len)
		c->out.len = mark;
}

const char *reply_at(client *c, size_t mark, size_t *n)
{
	*n = c->out.len - mark;
	return c->out.p + mark;
}

void reply_raw(client *c, const void *p, size_t n)
{
	rbuf_add(&c->out, p, n);
}

void reply_ok(client *c)
{
	rbuf_add(&c->out, "+OK\r\n", 5);
}

void reply_simple(client *c, const char *s)
{
	resp_add_simple(&c->out, '+', s, strlen(s));
}

static void reply_verror(client *c, const char *fmt, va_list ap)
{
	char tmp[512];
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	if (n < 0)
		n = 0;
	if ((size_t)n < sizeof(tmp)) {
		resp_add_simple(&c->out, '-', tmp, (size_t)n);
	} else {
		char *big = xmalloc((size_t)n + 1);
		vsnprintf(big, (size_t)n + 1, fmt, ap2);
		resp_add_simple(&c->out, '-', big, (size_t)n);
		free(big);
	}
	va_end(ap2);
}

void reply_error(client *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_verror(c, fmt, ap);
	va_end(ap);
}

const char *status_word(ctx_status st)
{
	switch (st) {
	case CTX_OK:
		return "OK";
	case CTX_NOT_FOUND:
		return "CTXNOTFOUND";
	case CTX_EXISTS:
		return "CTXEXISTS";
	case CTX_CONFLICT:
		return "CTXCONFLICT";
	case CTX_LIMIT:
		return "CTXLIMIT";
	case CTX_INVALID:
		return "CTXINVALID";
	case CTX_IO:
		return "CTXIO";
	case CTX_CORRUPT:
		return "CTXCORRUPT";
	case CTX_NOMEM:
		return "CTXNOMEM";
	case CTX_CLOSED:
		return "CTXCLOSED";
	}
	return "ERR";
}

void reply_ctx_error(client *c, ctx_status st)
{
	const char *msg = ctx_last_error();
	if (!msg || !*msg)
		msg = ctx_strerror(st);
	reply_error(c, "%s %s", status_word(st), msg);
}

void reply_int(client *c, long long v)
{
	resp_add_header(&c->out, ':', v);
}

void reply_bulk(client *c, const void *p, size_t n)
{
	resp_add_bulk(&c->out, p, n);
}

void reply_cstr(client *c, const char *s)
{
	resp_add_bulk(&c->out, s, strlen(s));
}

void reply_null(client *c)
{
	if (client_resp(c) == 3)
		rbuf_add(&c->out, "_\r\n", 3);
	else
		rbuf_add(&c->out, "$-1\r\n", 5);
}

void reply_null_array(client *c)
{
	if (client_resp(c) == 3)
		rbuf_add(&c->out, "_\r\n", 3);
	else
		rbuf_add(&c->out, "*-1\r\n", 5);
}

void reply_array(client *c, size_t n)
{
	resp_add_header(&c->out, '*', (long long)n);
}

void reply_map(client *c, size_t pairs)
{
	if (client_resp(c) == 3)
		resp_add_header(&c->out, '%', (long long)pairs);
	else
		resp_add_header(&c->out, '*', (long long)pairs * 2);
}

void reply_set(client *c, size_t n)
{
	resp_add_header(&c->out, client_resp(c) == 3 ? '~' : '*', (long long)n);
}

void reply_double(client *c, double d)
{
	resp_add_double(&c->out, client_resp(c), d);
}

void reply_bool(client *c, bool b)
{
	if (client_resp(c) == 3)
		rbuf_add(&c->out, b ? "#t\r\n" : "#f\r\n", 4);
	else
		rbuf_add(&c->out, b ? ":1\r\n" : ":0\r\n", 4);
}

void reply_verbatim(client *c, const char *s, size_t n)
{
	if (client_resp(c) != 3) {
		resp_add_bulk(&c->out, s, n);
		return;
	}
	resp_add_header(&c->out, '=', (long long)n + 4);
	rbuf_add(&c->out, "txt:", 4);
	rbuf_add(&c->out, s, n);
	rbuf_add(&c->out, "\r\n", 2);
}

void reply_push(client *c, size_t n)
{
	resp_add_header(&c->out, client_resp(c) == 3 ? '>' : '*', (long long)n);
}

size_t reply_defer_len(client *c)
{
	return c->out.len;
}

static void insert_header(client *c, size_t at, char type, long long n)
{
	char h[24];
	size_t hl = resp_format_header(h, type, n);
	rbuf_reserve(&c->out, hl);
	memmove(c->out.p + at + hl, c->out.p + at, c->out.len - at);
	memcpy(c->out.p + at, h, hl);
	c->out.len += hl;
}

void reply_set_array_len(client *c, size_t handle, size_t n)
{
	insert_header(c, handle, '*', (long long)n);
}

void reply_set_map_len(client *c, size_t handle, size_t pairs)
{
	if (client_resp(c) == 3)
		insert_header(c, handle, '%', (long long)pairs);
	else
		insert_header(c, handle, '*', (long long)pairs * 2);
}

/* ---- parking ---------------------------------------------------------------------- */

void client_need_durable(client *c, uint64_t rev)
{
	if (rev > c->cmd_need)
		c->cmd_need = rev;
}

/* Whether rev is durable; refreshes the loop's view. */
static bool durable_now(loop *lp, uint64_t rev)
{
	if (rev <= lp->durable)
		return true;
	uint64_t d = lp->durable;
	if (ctx_durable_revision(srv.store, &d) != CTX_OK) {
		if (!lp->io_failed)
			server_log('E',
			           "the log failed: replies waiting for durability get -CTXIO");
		lp->io_failed = true;
		return false;
	}
	lp->durable = d;
	return rev <= d;
}

uint64_t client_durable(client *c)
{
	durable_now(c->lp, UINT64_MAX);
	return c->lp->durable;
}

static void parked_link(client *c)
{
	loop *lp = c->lp;
	c->parked = true;
	c->pprev = NULL;
	c->pnext = lp->parked;
	if (lp->parked)
		lp->parked->pprev = c;
	lp->parked = c;
}

static void parked_unlink(client *c)
{
	if (!c->parked)
		return;
	if (c->pprev)
		c->pprev->pnext = c->pnext;
	else
		c->lp->parked = c->pnext;
	if (c->pnext)
		c->pnext->pprev = c->pprev;
	c->parked = false;
	c->pnext = c->pprev = NULL;
}

static void park(client *c, uint64_t start, uint64_t rev, uint64_t before)
{
	if (c->nmarks && c->marks[c->nmarks - 1].rev >= rev)
		return;
	if (c->nmarks == c->capmarks) {
		c->capmarks = c->capmarks ? c->capmarks * 2 : 8;
		c->marks = xrealloc(c->marks, c->capmarks * sizeof(park_mark));
	}
	c->marks[c->nmarks++] = (park_mark){start, rev, before, 0};
	if (!c->parked)
		parked_link(c);
}

/* Replace the held replies by one -CTXIO each. */
static void fail_parked(client *c)
{
	if (!c->nmarks)
		return;
	park_mark m = c->marks[0];
	reply_truncate(c, (size_t)(m.start - c->out_base));
	for (uint64_t i = m.replies_before; i < c->replies; i++)
		reply_error(c, "CTXIO the log failed: this change may not be durable");
	c->nmarks = 0;
	c->parked_cost = 0;
	parked_unlink(c);
}

static void release_parked(client *c)
{
	loop *lp = c->lp;
	size_t k = 0;
	while (k < c->nmarks && c->marks[k].rev <= lp->durable)
		c->parked_cost -= c->marks[k++].cost;
	if (k) {
		memmove(c->marks, c->marks + k, (c->nmarks - k) * sizeof(park_mark));
		c->nmarks -= k;
	}
	if (lp->io_failed)
		fail_parked(c);
	if (!c->nmarks)
		parked_unlink(c);
}

/* Ask the notifier for a wake-up once rev is durable, if nothing asked for
 * an earlier one. Returns whether the wanted revision was lowered: then
 * the caller reads the durable revision again (a batch that ended before
 * the flusher could see the new want wrote no eventfd). */
static bool want_durable(loop *lp, uint64_t rev)
{
	if (rev >= lp->want)
		return false;
	lp->want = rev;
	ctx_notifier_want(lp->notifier, rev);
	return true;
}

/* PARKED COMMITS (round 23): a client that pipelines writes without
 * waiting for their replies commits at the rate of the loop while the log
 * syncs; its replies wait (4 bytes each, counted as output) but its
 * commits' records, versions and marks are held too, outside every limit.
 * With the log's sync stalled for 5 s (a slow disk), one client's 1.6
 * million writes of one field grew ctxd by 628 MB while its output counted
 * 6 MB; at the 256 MB output limit that would be some 25 GB. So each mark
 * carries an estimate of what its commits hold, the bytes of the requests
 * that made it plus PARK_COST, and a client whose marks' costs pass
 * PARK_PAUSE stops running and reading its input (the kernel's socket
 * buffers then hold the client back) until durability releases enough.
 * Redis, whose one thread syncs before it reads on, stops every client
 * meanwhile. maxmemory-clients counts the costs too (client_mem). */
#define PARK_COST  ((size_t)512)
#define PARK_PAUSE ((size_t)16 << 20)

static bool park_full(const client *c)
{
	return c->parked_cost > PARK_PAUSE;
}

/* The request(s) at bytes of input just run: charge them to the mark they
 * made, if they made one (marks made meanwhile: to the newest). A command
 * run on the thread pool (work_done) is charged PARK_COST only. */
static void park_charge(client *c, size_t marks_before, size_t bytes)
{
	if (c->nmarks > marks_before) {
		c->marks[c->nmarks - 1].cost += bytes + PARK_COST;
		c->parked_cost += bytes + PARK_COST;
	}
}

/* Release what is durable of the held replies on lp's clients, and ask the
 * notifier for the next wake-up. */
static void release_durable(loop *lp)
{
	durable_now(lp, UINT64_MAX);
	for (;;) {
		client *next;
		uint64_t low = UINT64_MAX;
		for (client *c = lp->parked; c; c = next) {
			next = c->pnext;
			release_parked(c);
			if (c->park_paused && !park_full(c)) {
				/* its input runs again (closing only c itself: other
				 * clients are killed through the loop's async) */
				c->park_paused = false;
				process_input(c);
				if (c->closing)
					continue;
				input_end(c);
				resume_reading(c);
			}
			client_flush(c);
		}
		for (client *c = lp->parked; c; c = c->pnext)
			if (c->nmarks && c->marks[0].rev < low)
				low = c->marks[0].rev;
		/* The next wake-up: the lowest revision a held reply waits for
		 * (none: only a failure of the log). */
		lp->want = low;
		ctx_notifier_want(lp->notifier, low);
		if (low == UINT64_MAX || !durable_now(lp, low))
			break;
	}
}

static void on_notify(uv_poll_t *h, int status, int events)
{
	loop *lp = h->data;
	ctx_notifier_clear(lp->notifier);
	release_durable(lp);
	maybe_finish(lp);
}

/* The end of a turn under durability always (SYNC INLINE): the turn's
 * writes woke no flusher (ctx_flush_defer); sync them here, on the loop's
 * thread, unless a sync runs already (another loop's, or the flusher's:
 * ctx_flush then returns at once and that sync's thread, or the flusher,
 * takes them next), and release the replies that waited for them. The
 * notifier is told to want nothing meanwhile, so that the sync does not
 * write this loop's eventfd for replies released here. */
static void sync_turn(loop *lp)
{
	if (lp->parked) {
		lp->want = UINT64_MAX;
		ctx_notifier_want(lp->notifier, UINT64_MAX);
	}
	(void)ctx_flush(srv.store); /* (a failure shows in durable_now) */
	if (lp->parked)
		release_durable(lp);
}

/* The end of the n replies from c->cmd_start on (one command's, or a
 * group's): held until the revision they show (c->cmd_need) is durable, or
 * each replaced by an error if the log failed meanwhile. */
static void group_end(client *c, size_t n)
{
	uint64_t before = c->replies;
	c->replies += n;
	uint64_t rev = c->cmd_need;
	c->cmd_need = 0;
	if (!rev || durable_now(c->lp, rev))
		return;
	if (want_durable(c->lp, rev) && durable_now(c->lp, rev))
		return;
	if (c->lp->io_failed) {
		reply_truncate(c, (size_t)(c->cmd_start - c->out_base));
		for (size_t i = 0; i < n; i++)
			reply_error(c, "CTXIO the log failed: this change may not be durable");
		return;
	}
	park(c, c->cmd_start, rev, before);
}

static void cmd_end(client *c)
{
	group_end(c, 1);
}

/* ---- output: writing ---------------------------------------------------------------- */

typedef struct write_req {
	uv_write_t req;
	client *c;
	size_t n;
	char data[];
} write_req;

static size_t pending_out(const client *c)
{
	return c->out.len - c->out_head + c->inflight;
}

static bool all_sent(const client *c)
{
	return c->out_head == c->out.len && c->inflight == 0 && c->nmarks == 0;
}

/* ALL CLIENTS' OUTPUT (maxmemory-clients, round 19): the per-client limits
 * bound one client; 10 clients that never read held 1.46 GB (round 18).
 * srv.out_bytes sums each client's pending output as of its last check,
 * updated only once it moved OUT_GRAIN bytes from what was counted (or
 * fell to 0), so that the small replies of clients that read take no
 * shared atomic step: the sum is off by less than OUT_GRAIN a client.
 * Past maxmemory-clients, a client that holds more than its share of it
 * (the limit over the connected clients) is closed when it next adds
 * output (or is checked): the sum is over the limit only if one holds
 * more than the average, and a client that stopped growing is no danger.
 * So the output held stays within the limit, plus OUT_GRAIN and one
 * pipeline's turn a client. Redis 7's maxmemory-clients evicts the
 * largest clients the same way (off by default there).
 * Since round 23 a client's input counts too, as in Redis: its unparsed
 * bytes and its MULTI queue (client_mem). Each is bounded per client
 * (client-query-buffer-limit, 1 GB), but nothing bounded their sum: 6
 * clients that each sent 40 MB of a request and no more held 274 MB at a
 * maxmemory-clients of 64mb, where Redis closed them. */
#define OUT_GRAIN ((size_t)16 << 10)

/* What maxmemory-clients counts of a client: its pending output, unparsed
 * input, MULTI queue, what its commits waiting for durability hold, and its
 * tracker's unsynced edits (each bounded alone by client-query-buffer-limit:
 * cmd_ctx.c; a lock of the tracker's, for clients that have one). */
static size_t client_mem(const client *c)
{
	size_t n = pending_out(c) + c->in_len + c->queue_bytes + c->parked_cost;
	return c->tracker ? n + ctx_tracker_pending_bytes(c->tracker) : n;
}

static void out_count(client *c, size_t pend)
{
	size_t was = c->out_counted;
	if (pend == was || (pend && (pend > was ? pend - was : was - pend) < OUT_GRAIN))
		return;
	if (pend > was)
		atomic_fetch_add_explicit(&srv.out_bytes, pend - was, memory_order_relaxed);
	else
		atomic_fetch_sub_explicit(&srv.out_bytes, was - pend, memory_order_relaxed);
	c->out_counted = pend;
}

/* Whether the clients' output is over maxmemory-clients and c holds more
 * than its share of it (then it is closed). */
static bool out_over_share(const client *c, size_t pend, size_t *total, size_t *limit)
{
	*limit = atomic_load_explicit(&srv.cfg.maxmemory_clients, memory_order_relaxed);
	if (!*limit || pend < OUT_GRAIN)
		return false;
	*total = atomic_load_explicit(&srv.out_bytes, memory_order_relaxed);
	size_t n = atomic_load_explicit(&srv.nclients, memory_order_relaxed);
	return *total > *limit && pend > *limit / (n ? n : 1);
}

/* Apply the output limits; false if the client was closed. */
static bool obuf_check(client *c)
{
	size_t pend = pending_out(c), mem = client_mem(c);
	out_count(c, mem);
	size_t total, limit;
	if (out_over_share(c, mem, &total, &limit)) {
		server_log(
		    'W',
		    "client id=%llu addr=%s closed: %zu input and output bytes pending while "
		    "all clients' (%zu) are over maxmemory-clients %zu",
		    (unsigned long long)c->id, c->addr, mem, total, limit);
		client_close(c);
		return false;
	}
	size_t hard = atomic_load_explicit(&srv.cfg.obuf_hard, memory_order_relaxed);
	size_t soft = atomic_load_explicit(&srv.cfg.obuf_soft, memory_order_relaxed);
	long secs = atomic_load_explicit(&srv.cfg.obuf_soft_seconds, memory_order_relaxed);
	if (hard && pend > hard) {
		server_log('W',
		           "client id=%llu addr=%s closed: %zu output bytes pending, over the hard "
		           "limit %zu",
		           (unsigned long long)c->id, c->addr, pend, hard);
		client_close(c);
		return false;
	}
	if (soft && pend > soft) {
		uint64_t now = now_us();
		if (!c->soft_since_us)
			c->soft_since_us = now;
		else if (now - c->soft_since_us >= (uint64_t)secs * 1000000u) {
			server_log(
			    'W',
			    "client id=%llu addr=%s closed: over the soft output limit for %ld s",
			    (unsigned long long)c->id, c->addr, secs);
			client_close(c);
			return false;
		}
	} else {
		c->soft_since_us = 0;
	}
	return true;
}

bool client_output_over(const client *c)
{
	size_t hard = atomic_load_explicit(&srv.cfg.obuf_hard, memory_order_relaxed);
	size_t pend = pending_out(c), total, limit;
	return (hard && pend > hard) || out_over_share(c, client_mem(c), &total, &limit);
}

static void on_write(uv_write_t *req, int status)
{
	write_req *w = (write_req *)req;
	client *c = w->c;
	c->inflight -= w->n;
	free(w);
	if (c->closing)
		return;
	out_count(c, client_mem(c));
	if (status < 0) {
		client_close(c);
		return;
	}
	if (c->close_after_flush && all_sent(c))
		client_close(c);
}

static void compact_out(client *c)
{
	if (c->out_head == c->out.len) {
		c->out_base += c->out.len;
		c->out.len = 0;
		c->out_head = 0;
		if (c->out.cap > (1u << 20)) {
			rbuf_free(&c->out);
		}
	} else if (c->out_head > 65536 && c->out_head > c->out.len / 2) {
		memmove(c->out.p, c->out.p + c->out_head, c->out.len - c->out_head);
		c->out_base += c->out_head;
		c->out.len -= c->out_head;
		c->out_head = 0;
	}
}

static void client_flush(client *c)
{
	if (c->closing)
		return;
	uint64_t end = c->nmarks ? c->marks[0].start : c->out_base + c->out.len;
	size_t endi = (size_t)(end - c->out_base);
	if (endi > c->out_head) {
		char *p = c->out.p + c->out_head;
		size_t n = endi - c->out_head;
		if (c->inflight == 0) {
			uv_buf_t b = uv_buf_init(p, (unsigned)(n > (1u << 30) ? (1u << 30) : n));
			int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
			if (r < 0 && r != UV_EAGAIN) {
				client_close(c);
				return;
			}
			if (r > 0) {
				p += r;
				n -= (size_t)r;
				STAT_ADD(c->lp, st_net_out, (uint64_t)r);
			}
		}
		if (n > 0) {
			write_req *w = xmalloc(sizeof(*w) + n);
			memcpy(w->data, p, n);
			w->c = c;
			w->n = n;
			uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
			if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
				free(w);
				client_close(c);
				return;
			}
			c->inflight += n;
			STAT_ADD(c->lp, st_net_out, (uint64_t)n);
		}
		c->out_head = endi;
	}
	compact_out(c);
	if (!obuf_check(c))
		return;
	if (c->close_after_flush && all_sent(c))
		client_close(c);
}

/* ---- hosting: loop 0 runs the other loops when one thread is enough --------- */

/* HOST_ENDED: the loop's thread left its last uv_run and closes the loop:
 * nothing may wake it any more (host_all; libuv 1.44 aborts on a
 * uv_async_send to a closed loop). */
enum { HOST_OWN, HOST_PARKING, HOST_HOSTED, HOST_ENDED };

#define CTL_PERIOD_MS    50
#define HOST_AFTER_TICKS 4    /* periods in a row that call for hosting */
#define MIN_READS        16   /* reads in a period for a decision */
#define HOST_MAX_RPR     2.0  /* requests per read: host below this */
#define UNHOST_MIN_RPR   4.0  /* and stop hosting from this on... */
#define PIPE_UNHOST_CPU  0.75 /* ...if loop 0's thread used this many cores */
#define UNHOST_ABOVE_CPU 0.95 /* cores, loop 0's thread while hosting... */
#define UNHOST_IDLE_OVER 0.5  /* ...while the machine has this many CPUs idle */
#define REHOST_BELOW_CPU 0.6  /* after hosting ended for CPU */
#define LOAD_WINDOW      4    /* periods the machine's load is judged over */
#define CROWDED_SPARE    0.6  /* CPUs other processes leave: crowded below */
#define UNCROWDED_SPARE  0.8  /* and no longer crowded from this on */
#define CROWD_HOLD       20   /* periods held off at most after a crowd */

static int host_state(loop *g)
{
	pthread_mutex_lock(&g->host_lock);
	int st = g->host_state;
	pthread_mutex_unlock(&g->host_lock);
	return st;
}

int net_loops_running(void)
{
	int n = 0;
	for (int i = 0; i < srv.nloops; i++)
		n += host_state(&srv.loops[i]) != HOST_HOSTED;
	return n;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t loop_cpu_ns(loop *g)
{
	/* A thread's CPU clock id is negative (glibc): a flag says whether it
	 * is set (it was read as "id < 0: unknown", so every period measured
	 * 0 cores and the CPU rules never applied, rounds 6-7). */
	if (!atomic_load_explicit(&g->cpu_clock_set, memory_order_acquire))
		return 0;
	long id = atomic_load_explicit(&g->cpu_clock, memory_order_relaxed);
	struct timespec ts;
	if (clock_gettime((clockid_t)id, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The machine's busy and idle time so far (the "cpu" line of /proc/stat,
 * in clock ticks); false if unknown. */
static bool machine_ticks(uint64_t *busy, uint64_t *idle)
{
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long v[8] = {0};
	if (!f)
		return false;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
	               &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 4)
		return false;
	*busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* user nice system irq softirq steal */
	*idle = v[3] + v[4];                             /* idle iowait */
	return true;
}

static uint64_t process_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Loop 0, once a period: the CPUs other processes left over (the
 * machine's CPUs minus what processes other than ctxd used) and the idle
 * CPUs, both over the last LOAD_WINDOW periods; false until known. That is
 * what "crowded" means for hosting: a client on the same machine uses
 * about one CPU and leaves the rest, other jobs take more. (Before round 8
 * it was loop 0's own wait for a CPU while hosting, which ctxd's own
 * threads and the kernel's work for its fsyncs also cause: under
 * durability always a burst of writes ended hosting, and a back-off kept
 * it off for up to 32 s after, through the reads that followed.) */
static bool machine_load(loop *h0, uint64_t wall, double *spare, double *idle_cpus)
{
	uint64_t busy, idle, self = process_cpu_ns();
	if (!machine_ticks(&busy, &idle))
		return false;
	static long tick_ns, ncpu; /* loop 0's thread only */
	if (!tick_ns) {
		long hz = sysconf(_SC_CLK_TCK);
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		tick_ns = hz > 0 ? 1000000000L / hz : 10000000L;
		if (ncpu < 1)
			ncpu = 1;
	}
	bool first = h0->m_wall_ns == 0;
	uint64_t dbusy = (busy - h0->m_busy_ticks) * (uint64_t)tick_ns;
	uint64_t didle = (idle - h0->m_idle_ticks) * (uint64_t)tick_ns;
	uint64_t dself = self - h0->m_self_ns, dwall = wall - h0->m_wall_ns;
	h0->m_busy_ticks = busy;
	h0->m_idle_ticks = idle;
	h0->m_self_ns = self;
	h0->m_wall_ns = wall;
	if (first)
		return false;
	unsigned at = h0->m_win_at++ % LOAD_WINDOW;
	h0->m_win_wall[at] = dwall;
	h0->m_win_others[at] = dbusy > dself ? dbusy - dself : 0;
	h0->m_win_idle[at] = didle;
	if (h0->m_win_at < LOAD_WINDOW)
		return false;
	uint64_t w = 0, o = 0, i = 0;
	for (unsigned k = 0; k < LOAD_WINDOW; k++) {
		w += h0->m_win_wall[k];
		o += h0->m_win_others[k];
		i += h0->m_win_idle[k];
	}
	if (!w)
		return false;
	*spare = (double)ncpu - (double)o / (double)w;
	*idle_cpus = (double)i / (double)w;
	return true;
}

static void on_guest_ready(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	uv_run(&((loop *)h->data)->uv, UV_RUN_NOWAIT);
}

/* Loop 0: ask every loop that runs on its own thread to park. The wake-up
 * is sent under host_lock: a loop that a stop (after on_ctl's check) ends
 * meanwhile is HOST_ENDED, and is not woken after it closed (round 15). */
static void host_all(void)
{
	for (int i = 1; i < srv.nloops; i++) {
		loop *g = &srv.loops[i];
		pthread_mutex_lock(&g->host_lock);
		if (g->host_state == HOST_OWN) {
			g->host_state = HOST_PARKING;
			uv_async_send(&g->async);
		}
		pthread_mutex_unlock(&g->host_lock);
	}
}

/* Loop 0: every hosted loop runs on its own thread again. */
static void unhost_all(void)
{
	for (int i = 1; i < srv.nloops; i++) {
		loop *g = &srv.loops[i];
		pthread_mutex_lock(&g->host_lock);
		bool hosted = g->host_state == HOST_HOSTED;
		if (hosted) {
			if (g->gpoll_on)
				uv_poll_stop(&g->gpoll);
			g->gpoll_on = false;
			g->host_state = HOST_OWN;
			pthread_cond_signal(&g->host_cv);
		}
		pthread_mutex_unlock(&g->host_lock);
	}
}

/* Loop 0: poll the loops that have just parked, and run them once. */
static void host_adopt(void)
{
	for (int i = 1; i < srv.nloops; i++) {
		loop *g = &srv.loops[i];
		if (g->gpoll_on || host_state(g) != HOST_HOSTED)
			continue;
		g->gpoll_on = true;
		uv_poll_start(&g->gpoll, UV_READABLE, on_guest_ready);
		uv_run(&g->uv, UV_RUN_NOWAIT);
	}
}

static void on_ctl(uv_timer_t *h)
{
	loop *h0 = h->data;
	if (atomic_load(&srv.stopping) || h0->stopping)
		return;
	uint64_t wall = mono_ns(), cpu = 0, cmds = 0, reads = 0;
	bool any_hosted = false, all_hosted = true;
	for (int i = 0; i < srv.nloops; i++) {
		loop *g = &srv.loops[i];
		cpu += loop_cpu_ns(g);
		cmds += atomic_load_explicit(&g->st_commands, memory_order_relaxed);
		reads += atomic_load_explicit(&g->st_reads, memory_order_relaxed);
		if (i > 0 && g->gpoll_on) {
			any_hosted = true;
			uv_run(&g->uv, UV_RUN_NOWAIT); /* its timers */
		} else if (i > 0) {
			all_hosted = false;
		}
	}
	double spare = 0, idle = 0;
	bool load_known = machine_load(h0, wall, &spare, &idle);
	if (h0->m_hold > 0) /* until the crowd is gone, CROWD_HOLD periods at most */
		h0->m_hold = !load_known || spare >= UNCROWDED_SPARE ? 0 : h0->m_hold - 1;
	uint64_t dw = wall - h0->w_wall_ns, dc = cpu - h0->w_cpu_ns;
	uint64_t dcmd = cmds - h0->w_cmds, dr = reads - h0->w_reads;
	bool first = h0->w_wall_ns == 0;
	h0->w_wall_ns = wall;
	h0->w_cpu_ns = cpu;
	h0->w_cmds = cmds;
	h0->w_reads = reads;
	double cores = dw ? (double)dc / (double)dw : 0;
	/* Too few reads to judge, unless the loops are hosted and loop 0's
	 * thread is busy: slow pipelined requests (KEYS over many contexts, a
	 * big HGETALL) make few reads a period, and one thread busy with them
	 * is what ending hosting is for (the test's pipelined phase hung with
	 * 9 reads a period at 1.0 core). */
	bool busy_few = any_hosted && dr > 0 && cores >= PIPE_UNHOST_CPU;
	if (first || (dr < MIN_READS && !busy_few) || dw == 0 || !srv.cfg.loops_merge) {
		h0->w_streak = 0;
		return;
	}
	double rpr = (double)dcmd / (double)dr;
	if (!any_hosted) {
		bool call = rpr < HOST_MAX_RPR && h0->m_hold == 0 &&
		            (!h0->w_cpu_bound || cores < REHOST_BELOW_CPU);
		h0->w_streak = call ? h0->w_streak + 1 : 0;
		if (h0->w_streak >= HOST_AFTER_TICKS) {
			h0->w_streak = 0;
			h0->w_cpu_bound = false;
			server_log('D',
			           "loops: hosting (%.2f requests per read, %.2f cores, %.2f CPUs "
			           "spare)",
			           rpr, cores, spare);
			host_all();
		}
	} else if (all_hosted && rpr >= UNHOST_MIN_RPR && cores >= PIPE_UNHOST_CPU) {
		h0->w_streak = 0;
		server_log('D', "loops: own threads (%.2f requests per read, %.2f cores)", rpr,
		           cores);
		unhost_all();
	} else if (all_hosted) {
		bool busy = cores > UNHOST_ABOVE_CPU && load_known && idle > UNHOST_IDLE_OVER;
		bool crowded = load_known && spare < CROWDED_SPARE;
		h0->w_streak = busy || crowded ? h0->w_streak + 1 : 0;
		if (h0->w_streak >= HOST_AFTER_TICKS) {
			h0->w_streak = 0;
			h0->w_cpu_bound = busy;
			h0->m_hold = crowded ? CROWD_HOLD : 0;
			server_log(
			    'D', "loops: own threads (%.2f cores, %.2f CPUs idle, %.2f CPUs spare)",
			    cores, idle, spare);
			unhost_all();
		}
	}
}

/* A loop asked to park (on_async): leave uv_run; loop_thread parks. */
static void maybe_park(loop *lp)
{
	if (lp->idx == 0 || atomic_load(&srv.stopping))
		return;
	if (host_state(lp) == HOST_PARKING)
		uv_stop(&lp->uv);
}

/* A loop's thread after uv_run returned: park if asked (false), or say
 * whether the loop has ended (true). */
static bool loop_park_or_end(loop *lp, int alive)
{
	pthread_mutex_lock(&lp->host_lock);
	if (lp->host_state == HOST_PARKING) {
		if (atomic_load(&srv.stopping)) {
			lp->host_state = HOST_OWN;
		} else {
			lp->host_state = HOST_HOSTED;
			uv_async_send(&srv.loops[0].async);
			while (lp->host_state == HOST_HOSTED)
				pthread_cond_wait(&lp->host_cv, &lp->host_lock);
		}
		pthread_mutex_unlock(&lp->host_lock);
		return false;
	}
	if (!alive)
		lp->host_state = HOST_ENDED;
	pthread_mutex_unlock(&lp->host_lock);
	return !alive;
}

/* ---- clients ------------------------------------------------------------------------ */

static void registry_add(client *c)
{
	pthread_mutex_lock(&srv.reg_lock);
	c->gnext = srv.registry;
	if (srv.registry)
		srv.registry->gprev = c;
	srv.registry = c;
	pthread_mutex_unlock(&srv.reg_lock);
}

static void registry_remove(client *c)
{
	pthread_mutex_lock(&srv.reg_lock);
	if (c->gprev)
		c->gprev->gnext = c->gnext;
	else
		srv.registry = c->gnext;
	if (c->gnext)
		c->gnext->gprev = c->gprev;
	c->gnext = c->gprev = NULL;
	pthread_mutex_unlock(&srv.reg_lock);
}

static void free_client(client *c)
{
	free(c->in);
	resp_frame_free(&c->frame);
	resp_frame_free(&c->look);
	rbuf_free(&c->out);
	free(c->marks);
	free(c->wbs);
	free(c->queue);
	free(c->watched);
	free(c->name);
	free(c->lib_name);
	free(c->lib_ver);
	free(c);
}

static void on_client_closed(uv_handle_t *h)
{
	client *c = h->data;
	c->fd = -1;
	if (c->refs == 0)
		free_client(c);
	else
		c->tcp.data = NULL; /* freed when its work is done */
}

static void wbs_clear(client *c)
{
	for (size_t i = 0; i < c->nwbs; i++)
		wbatch_free(c->wbs[i]);
	c->nwbs = 0;
}

void client_drop_state(client *c)
{
	client_stop_watch(c);
	ctx_tracker_close(c->tracker);
	c->tracker = NULL;
	ctx_session_close(c->session);
	c->session = NULL;
	hscan_drop(c);
	multi_reset(c);
}

void client_close(client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	loop *lp = c->lp;
	/* Its output is freed with it (pending writes are cancelled). */
	if (c->out_counted)
		atomic_fetch_sub_explicit(&srv.out_bytes, c->out_counted, memory_order_relaxed);
	c->out_counted = 0;
	atomic_fetch_sub(&srv.nclients, 1);
	atomic_fetch_sub(&lp->assigned, 1);
	lp->nclients--;
	if (c->prev)
		c->prev->next = c->next;
	else
		lp->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	parked_unlink(c);
	registry_remove(c);
	client_drop_state(c);
	wbs_clear(c);
	server_log('D', "client id=%llu addr=%s closed", (unsigned long long)c->id, c->addr);
	uv_close((uv_handle_t *)&c->tcp, on_client_closed);
	maybe_finish(lp);
}

void client_request_close(client *c)
{
	c->close_after_flush = true;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

ctx_session *client_session(client *c)
{
	if (!c->session && ctx_session_open(srv.store, &c->session) != CTX_OK)
		return NULL;
	return c->session;
}

ctx_tracker **client_tracker(client *c)
{
	return &c->tracker;
}

hscan_state *client_hscan(client *c)
{
	return &c->scan;
}

ctx_store *server_store(void)
{
	return srv.store;
}

/* ---- arguments ----------------------------------------------------------------------- */

bool arg_is(const arg *a, const char *word)
{
	size_t n = strlen(word);
	return a->n == n && strncasecmp(a->p, word, n) == 0;
}

bool arg_to_id(client *c, const arg *a, char id[CTX_ID_MAX + 1])
{
	if (a->n == 1 && a->p[0] == '.') {
		const char *cur = c->session ? ctx_session_current(c->session) : NULL;
		if (!cur) {
			reply_error(c, "CTXNOTFOUND no active context: choose one with CTX.USE id");
			return false;
		}
		snprintf(id, CTX_ID_MAX + 1, "%s", cur);
		return true;
	}
	if (a->n == 0 || a->n > CTX_ID_MAX) {
		reply_error(c, "CTXINVALID a context id (key) is 1 to %d bytes", CTX_ID_MAX);
		return false;
	}
	for (size_t i = 0; i < a->n; i++) {
		unsigned char ch = (unsigned char)a->p[i];
		if (ch < 0x20 || ch == 0x7f) {
			reply_error(c, "CTXINVALID a context id (key) may not hold control bytes");
			return false;
		}
	}
	memcpy(id, a->p, a->n);
	id[a->n] = '\0';
	return true;
}

static bool parse_ll_arg(const arg *a, long long *out)
{
	char tmp[32];
	if (a->n == 0 || a->n >= sizeof(tmp))
		return false;
	memcpy(tmp, a->p, a->n);
	tmp[a->n] = '\0';
	char *end;
	errno = 0;
	long long v = strtoll(tmp, &end, 10);
	if (errno || *end || tmp[0] == ' ' || tmp[0] == '+' || (tmp[0] == '0' && a->n > 1) ||
	    (tmp[0] == '-' && tmp[1] == '0'))
		return false;
	*out = v;
	return true;
}

bool arg_to_ll(client *c, const arg *a, long long *out)
{
	if (!parse_ll_arg(a, out)) {
		reply_error(c, "ERR value is not an integer or out of range");
		return false;
	}
	return true;
}

bool arg_to_u64(client *c, const arg *a, uint64_t *out)
{
	char tmp[32];
	if (a->n == 0 || a->n >= sizeof(tmp) || a->p[0] < '0' || a->p[0] > '9') {
		reply_error(c, "ERR value is not an integer or out of range");
		return false;
	}
	memcpy(tmp, a->p, a->n);
	tmp[a->n] = '\0';
	char *end;
	errno = 0;
	unsigned long long v = strtoull(tmp, &end, 10);
	if (errno || *end) {
		reply_error(c, "ERR value is not an integer or out of range");
		return false;
	}
	*out = v;
	return true;
}

/* ---- write batches of a command -------------------------------------------------------- */

wbatch *client_wbatch(client *c, const char *id)
{
	if (c->in_exec) {
		if (strcmp(id, c->exec_id) != 0) {
			reply_error(c, "ERR a transaction works on one context: '%s' is not '%s'",
			            id, c->exec_id);
			return NULL;
		}
		return c->exec_wb;
	}
	for (size_t i = 0; i < c->nwbs; i++)
		if (strcmp(wbatch_id(c->wbs[i]), id) == 0)
			return c->wbs[i];
	ctx_status st;
	wbatch *w = wbatch_new(id, &st);
	if (!w) {
		reply_ctx_error(c, st);
		return NULL;
	}
	if (wb_base(w))
		client_need_durable(c, ctx_state_revision(wb_base(w)));
	if (c->nwbs == c->capwbs) {
		c->capwbs = c->capwbs ? c->capwbs * 2 : 4;
		c->wbs = xrealloc(c->wbs, c->capwbs * sizeof(wbatch *));
	}
	c->wbs[c->nwbs++] = w;
	return w;
}

static ctx_status wbs_commit(client *c, uint64_t *rev)
{
	*rev = 0;
	for (size_t i = 0; i < c->nwbs; i++) {
		uint64_t r = 0;
		ctx_status st = wbatch_commit(c->wbs[i], &r);
		if (st != CTX_OK)
			return st;
		if (r > *rev)
			*rev = r;
	}
	return CTX_OK;
}

bool commit_retry(client *c, ctx_status st, int attempt)
{
	if (st == CTX_CONFLICT && attempt < CTXD_MAX_WRITE_RETRIES)
		return true;
	if (st == CTX_CONFLICT)
		reply_error(c,
		            "CTXCONFLICT gave up after %d attempts: other writers kept "
		            "changing the context",
		            attempt + 1);
	else
		reply_ctx_error(c, st);
	return false;
}

bool client_reply_new_fields(client *c, wbatch *w)
{
	if (c->in_exec)
		return false;
	c->new_fields_wb = w;
	return true;
}

void exec_command(client *c, const command *cmd, int argc, const arg *argv)
{
	atomic_store_explicit(&c->last_cmd, cmd->name, memory_order_relaxed);
	STAT_ADD(c->lp, st_commands, 1);
	if (c->in_exec) {
		cmd->fn(c, argc, argv);
		return;
	}
	c->cmd_start = c->out_base + c->out.len;
	c->cmd_need = 0;
	for (int attempt = 0;; attempt++) {
		size_t mark = reply_mark(c);
		c->new_fields_wb = NULL;
		cmd->fn(c, argc, argv);
		if (c->blocked) {
			c->new_fields_wb = NULL;
			wbs_clear(c);
			return;
		}
		if (c->nwbs == 0)
			break;
		bool failed = c->out.len > mark && c->out.p[mark] == '-';
		uint64_t rev = 0;
		ctx_status st = failed ? CTX_OK : wbs_commit(c, &rev);
		if (st == CTX_OK && !failed && c->new_fields_wb)
			reply_int(c, (long long)wbatch_new_fields(c->new_fields_wb));
		c->new_fields_wb = NULL;
		wbs_clear(c);
		if (st == CTX_OK) {
			client_need_durable(c, rev);
			break;
		}
		reply_truncate(c, mark);
		if (!commit_retry(c, st, attempt))
			break;
	}
	cmd_end(c);
}

/* ---- input --------------------------------------------------------------------------- */

static void reply_unknown(client *c, int argc, const arg *argv)
{
	rbuf b = {0};
	int shown = 0;
	for (int i = 1; i < argc && b.len < 128; i++, shown++) {
		rbuf_add(&b, "'", 1);
		size_t n = argv[i].n > 64 ? 64 : argv[i].n;
		for (size_t k = 0; k < n; k++) {
			char ch = argv[i].p[k];
			rbuf_add(&b, (ch >= 0x20 && ch < 0x7f) ? &ch : "?", 1);
		}
		rbuf_add(&b, "' ", 2);
	}
	rbuf_add(&b, "", 1);
	size_t nn = argv[0].n > 64 ? 64 : argv[0].n;
	char name[65];
	for (size_t k = 0; k < nn; k++)
		name[k] = (argv[0].p[k] >= 0x20 && argv[0].p[k] < 0x7f) ? argv[0].p[k] : '?';
	name[nn] = '\0';
	reply_error(c, "ERR unknown command '%s', with args beginning with: %s", name, b.p);
	rbuf_free(&b);
}

static void lower_name(const char *s, char *out, size_t cap)
{
	size_t i = 0;
	for (; s[i] && i + 1 < cap; i++)
		out[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
	out[i] = '\0';
}

/* Run one parsed request. */
static void run_request(client *c, int argc, const arg *argv)
{
	const command *cmd = command_lookup(argv[0].p, argv[0].n);
	if (!cmd) {
		if (c->in_multi)
			c->multi_error = true;
		c->cmd_start = c->out_base + c->out.len;
		reply_unknown(c, argc, argv);
		cmd_end(c);
		return;
	}
	char lname[64];
	const char *err = NULL;
	if ((cmd->arity > 0 && argc != cmd->arity) || (cmd->arity < 0 && argc < -cmd->arity))
		err = "arity";
	else if (!c->authed && !(cmd->flags & CMD_NOAUTH))
		err = "NOAUTH Authentication required.";
	else if (c->watch && client_resp(c) == 2 && !(cmd->flags & CMD_PUBSUB))
		err = "stream";
	if (err) {
		c->cmd_start = c->out_base + c->out.len;
		lower_name(cmd->name, lname, sizeof(lname));
		if (c->in_multi)
			c->multi_error = true;
		if (err[0] == 'a')
			reply_error(c, "ERR wrong number of arguments for '%s' command", lname);
		else if (err[0] == 's')
			reply_error(c,
			            "ERR Can't execute '%s': only CTX.UNWATCH, PING, QUIT and "
			            "RESET are allowed while a RESP2 connection streams events",
			            lname);
		else
			reply_error(c, "%s", err);
		cmd_end(c);
		return;
	}
	if (c->in_multi && multi_intercept(c, cmd, argc, argv))
		return;
	exec_command(c, cmd, argc, argv);
}

static void set_limits(client *c, resp_limits *l)
{
	l->max_inline = srv.cfg.max_inline;
	if (c->authed) {
		l->max_bulk =
		    atomic_load_explicit(&srv.cfg.proto_max_bulk_len, memory_order_relaxed);
		l->max_args = srv.cfg.max_args;
		l->unauth = false;
	} else {
		l->max_bulk = UNAUTH_MAX_BULK;
		l->max_args = UNAUTH_MAX_ARGS;
		l->unauth = true;
	}
}

/* ---- groups: consecutive writes of one context in one commit ---------------------------- */

#define GROUP_MAX 1024 /* requests in one group */

/* The hash writes that may share a group: their handler works on the
 * batch of argv[1] alone (client_wbatch), reads nothing else, and its reply
 * depends on that batch only. With the arity the command table checks
 * before a handler runs (a group bypasses run_request): min arguments, and
 * pairs (even count) or exactly min. DEL and UNLINK of that one key join
 * too: "DEL k" then writes of k is then one commit that replaces k's
 * fields (multi.c, commit_replace: a clear, O(1) whatever k's size, so
 * since round 11 no group is too big for it), where alone the writes' create would
 * wait on the loop thread for the drop's fsync (store.c,
 * create_await_drop): 1,581 DEL+HSET pairs a second from 8 pipelining
 * clients against 7,839 HSET+HSET pairs (redis-server: 2,180). */
static const struct {
	const char *name;
	size_t n;
	size_t min;
	char form; /* 'p' pairs from argv[2], '=' exactly min, '+' at least min */
} group_cmds[] = {
    {"HSET", 4, 4, 'p'}, {"HMSET", 5, 4, 'p'},   {"HSETNX", 6, 4, '='},
    {"HDEL", 4, 3, '+'}, {"HINCRBY", 7, 4, '='}, {"HINCRBYFLOAT", 12, 4, '='},
    {"DEL", 3, 2, '='},  {"UNLINK", 6, 2, '='},
};

static bool groupable(const resp_frame *f)
{
	if (f->argc == 0) /* an empty request: no vector */
		return false;
	const arg *a = &f->argv[0];
	for (size_t i = 0; i < sizeof(group_cmds) / sizeof(group_cmds[0]); i++) {
		if (a->n != group_cmds[i].n || strncasecmp(a->p, group_cmds[i].name, a->n) != 0)
			continue;
		size_t min = group_cmds[i].min;
		switch (group_cmds[i].form) {
		case 'p':
			return f->argc >= min && f->argc % 2 == 0;
		case '=':
			return f->argc == min;
		default:
			return f->argc >= min;
		}
	}
	return false;
}

static bool same_key(const arg *a, const arg *b)
{
	return a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

/* How many complete requests from c->in + pos on are groupable writes of
 * the context named key (parsed ahead into c->look, not run). When none
 * is, the request right after (if complete) stays parsed in c->look for
 * process_input, which would parse it next (c->look_at, c->look_len): a
 * pipeline of writes of different keys parses each request once. */
static size_t group_followers(client *c, size_t pos, const resp_limits *lim, const arg *key)
{
	size_t k = 0;
	while (k + 1 < GROUP_MAX && pos < c->in_len) {
		ssize_t r = resp_parse(&c->look, c->in + pos, c->in_len - pos, lim);
		bool join = r > 0 && groupable(&c->look) && same_key(&c->look.argv[1], key) &&
		            !(key->n == 1 && key->p[0] == '.');
		if (!join && k == 0 && r > 0) {
			c->look_at = pos;
			c->look_len = (size_t)r;
			return 0;
		}
		resp_frame_reset(&c->look);
		if (!join)
			break;
		k++;
		pos += (size_t)r;
	}
	return k;
}

/* The request at c->in + pos, parsed into c->frame: taken from c->look if
 * group_followers parsed it already (with the same limits: nothing
 * between changes them, the request before was a hash write). */
static ssize_t parse_next(client *c, size_t pos, const resp_limits *lim)
{
	if (c->look_len && c->look_at == pos) {
		resp_frame t = c->frame;
		c->frame = c->look;
		c->look = t;
		ssize_t r = (ssize_t)c->look_len;
		c->look_len = 0;
		return r;
	}
	if (c->look_len) {
		resp_frame_reset(&c->look);
		c->look_len = 0;
	}
	return resp_parse(&c->frame, c->in + pos, c->in_len - pos, lim);
}

/* Forget a request kept in c->look (the input is about to move). */
static void look_forget(client *c)
{
	if (c->look_len) {
		resp_frame_reset(&c->look);
		c->look_len = 0;
	}
}

/* Run the n requests from c->in + pos on, each parsed into c->frame. */
static size_t run_each(client *c, size_t pos, size_t n, const resp_limits *lim)
{
	for (size_t i = 0; i < n; i++) {
		ssize_t r = resp_parse(&c->frame, c->in + pos, c->in_len - pos, lim);
		run_request(c, (int)c->frame.argc, c->frame.argv);
		resp_frame_reset(&c->frame);
		pos += (size_t)r;
	}
	return pos;
}

/* A group's key as a context id, as arg_to_id checks it (without a reply:
 * a key that is not valid is left to the commands, one by one). */
static bool group_id(const arg *a, char id[CTX_ID_MAX + 1])
{
	if (a->n == 0 || a->n > CTX_ID_MAX || (a->n == 1 && a->p[0] == '.'))
		return false;
	for (size_t i = 0; i < a->n; i++)
		if ((unsigned char)a->p[i] < 0x20 || a->p[i] == 0x7f)
			return false;
	memcpy(id, a->p, a->n);
	id[a->n] = '\0';
	return true;
}

/* The group's requests against one batch, as inside EXEC (each sees the
 * ones before it); false if one replied an error. *pos moves past them. */
static bool group_once(client *c, size_t *pos, size_t n, const resp_limits *lim, wbatch *w)
{
	c->in_exec = true;
	c->exec_wb = w;
	bool ok = true;
	size_t i = 0;
	for (; i < n && ok; i++) {
		ssize_t r = resp_parse(&c->frame, c->in + *pos, c->in_len - *pos, lim);
		const command *cmd = command_lookup(c->frame.argv[0].p, c->frame.argv[0].n);
		size_t m = reply_mark(c);
		exec_command(c, cmd, (int)c->frame.argc, c->frame.argv);
		ok = !(c->out.len > m && c->out.p[m] == '-');
		resp_frame_reset(&c->frame);
		*pos += (size_t)r;
	}
	c->in_exec = false;
	c->exec_wb = NULL;
	c->exec_id[0] = '\0';
	if (!ok) /* they run again one by one: count them once */
		atomic_fetch_sub_explicit(&c->lp->st_commands, i, memory_order_relaxed);
	return ok;
}

/* Run n (>= 2) groupable writes of one context, the first at c->in + pos,
 * as one commit: each command runs against the batch the ones before it
 * filled (its reply is the one it would get alone, right after them), then
 * the batch is committed once, guarded by its base version; a conflict
 * runs them all again. Anything else (an error reply, a key that is not a
 * valid id, a commit that fails otherwise) drops the group's replies and
 * runs the requests one by one, each with its own commit, errors and
 * retries. The replies wait together for the commit to be durable.
 * Returns the position after the group. */
static size_t run_group(client *c, size_t pos, size_t n, const resp_limits *lim)
{
	size_t mark = reply_mark(c);
	char id[CTX_ID_MAX + 1];
	ssize_t r0 = resp_parse(&c->look, c->in + pos, c->in_len - pos, lim);
	bool valid = r0 > 0 && group_id(&c->look.argv[1], id);
	resp_frame_reset(&c->look);
	for (int attempt = 0; valid && attempt <= CTXD_MAX_WRITE_RETRIES; attempt++) {
		ctx_status st;
		wbatch *w = wbatch_new(id, &st);
		if (!w)
			break;
		c->cmd_start = c->out_base + c->out.len;
		c->cmd_need = wb_base(w) ? ctx_state_revision(wb_base(w)) : 0;
		memcpy(c->exec_id, id, sizeof(id));
		size_t end = pos;
		if (!group_once(c, &end, n, lim, w)) {
			wbatch_free(w);
			break;
		}
		uint64_t rev = 0;
		st = wbatch_commit(w, &rev);
		wbatch_free(w);
		if (st == CTX_OK) {
			client_need_durable(c, rev);
			group_end(c, n);
			return end;
		}
		/* run again: count the commands once */
		atomic_fetch_sub_explicit(&c->lp->st_commands, n, memory_order_relaxed);
		reply_truncate(c, mark);
		if (st != CTX_CONFLICT)
			break;
	}
	reply_truncate(c, mark);
	c->cmd_need = 0;
	return run_each(c, pos, n, lim);
}

/* Whether c's next requests may be grouped: nothing but plain commands. */
static bool can_group(const client *c)
{
	return c->authed && !c->in_multi && !c->watch && !c->blocked && !c->closing &&
	       !c->close_after_flush;
}

/* ---- prefetching a pipelined read's keys ------------------------------------------ */

/* Requests of one read whose key is handed to ctx_prefetch_keys. */
#define PREFETCH_REQS 32

/* The decimal number at p[*at] up to its CRLF (inside n bytes), moving *at
 * past the CRLF; -1 if it is not one. Only well-formed multibulk requests
 * are looked at: anything else ends the scan (the parser judges it). */
static long scan_number(const char *p, size_t n, size_t *at)
{
	long v = 0;
	size_t i = *at;
	if (i >= n || p[i] < '0' || p[i] > '9')
		return -1;
	for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
		v = v * 10 + (p[i] - '0');
		if (v > (1L << 30))
			return -1;
	}
	if (i + 1 >= n || p[i] != '\r' || p[i + 1] != '\n')
		return -1;
	*at = i + 2;
	return v;
}

/* Longest third argument handed to ctx_prefetch_keys as a field. */
#define PREFETCH_FIELD_MAX 256

/* Where scan_keys puts what it finds: per request, the second argument
 * (the key: a context id) and the third (for hash commands the field,
 * HGET's or HINCRBY's; NULL if none or long), handed to ctx_prefetch_keys
 * (for other commands the third is a useless hint, never a wrong one). */
typedef struct scan_out {
	const char *ids[PREFETCH_REQS];
	size_t lens[PREFETCH_REQS];
	const void *fields[PREFETCH_REQS];
	size_t flens[PREFETCH_REQS];
	size_t k;
} scan_out;

/* The key and field of each complete request at the start of p[0..n),
 * appended to o up to PREFETCH_REQS. */
static void scan_keys(const char *p, size_t n, scan_out *o)
{
	size_t at = 0, steps = 0;
	while (o->k < PREFETCH_REQS && at < n && p[at] == '*') {
		at++;
		long argc = scan_number(p, n, &at);
		if (argc < 1)
			return;
		size_t k = o->k;
		bool key = false;
		for (long j = 0; j < argc; j++) {
			/* A bounded walk: an unfinished request of many arguments
			 * is not walked again from its start on every read (the
			 * parser itself resumes where it stopped). */
			if (at >= n || p[at] != '$' || ++steps > 8 * PREFETCH_REQS)
				return;
			at++;
			long len = scan_number(p, n, &at);
			if (len < 0 || (size_t)len + 2 > n - at)
				return;
			if (j == 1 && (size_t)len <= CTX_ID_MAX) {
				o->ids[k] = p + at;
				o->lens[k] = (size_t)len;
				o->fields[k] = NULL;
				o->flens[k] = 0;
				key = true;
			} else if (j == 2 && key && len > 0 && len <= PREFETCH_FIELD_MAX) {
				o->fields[k] = p + at;
				o->flens[k] = (size_t)len;
			}
			at += (size_t)len + 2;
		}
		o->k += key; /* complete: counted */
	}
}

/* A read that brought several requests (a pipeline): start loading the
 * contexts they name, all at once (ctx_prefetch_keys), so that their cache
 * misses overlap instead of each request waiting for its own in turn.
 * A hint: nothing depends on it. */
static void prefetch_keys(client *c)
{
	if (!c->authed || c->in_len < 32)
		return;
	scan_out o;
	o.k = 0;
	scan_keys(c->in, c->in_len, &o);
	if (o.k > 1)
		ctx_prefetch_keys(srv.store, o.ids, o.lens, o.fields, o.flens, o.k);
}

static void process_input(client *c)
{
	size_t pos = 0;
	if (c->in_len) /* once per read, not per request of a pipeline */
		atomic_store_explicit(&c->last_us, now_us(), memory_order_relaxed);
	/* obuf_check per request: one read of small requests can ask for
	 * gigabytes of replies, and they all stay in c->out until the flush. */
	while (pos < c->in_len && !c->blocked && !c->closing && !c->close_after_flush &&
	       obuf_check(c)) {
		if (park_full(c)) {
			c->park_paused = true;
			break;
		}
		resp_limits lim;
		set_limits(c, &lim);
		ssize_t r = parse_next(c, pos, &lim);
		if (r == RESP_INCOMPLETE)
			break;
		if (r == RESP_MALFORMED) {
			c->cmd_start = c->out_base + c->out.len;
			reply_error(c, "ERR Protocol error: %s", c->frame.error);
			server_log('D', "client id=%llu addr=%s: protocol error: %s",
			           (unsigned long long)c->id, c->addr, c->frame.error);
			resp_frame_reset(&c->frame);
			cmd_end(c);
			client_request_close(c);
			pos = c->in_len;
			break;
		}
		size_t k = 0;
		if (c->frame.argc > 0 && can_group(c) && groupable(&c->frame))
			k = group_followers(c, pos + (size_t)r, &lim, &c->frame.argv[1]);
		size_t marks = c->nmarks, queued = c->queue_bytes;
		if (k > 0) {
			resp_frame_reset(&c->frame);
			size_t end = run_group(c, pos, k + 1, &lim);
			park_charge(c, marks, end - pos);
			pos = end;
			continue;
		}
		if (c->frame.argc > 0)
			run_request(c, (int)c->frame.argc, c->frame.argv);
		resp_frame_reset(&c->frame);
		/* an EXEC's commit holds its queue's writes */
		park_charge(c, marks,
		            (size_t)r + (queued > c->queue_bytes ? queued - c->queue_bytes : 0));
		pos += (size_t)r;
	}
	look_forget(c);
	if (!c->closing) /* the last request's reply too, before the flush sends part of it */
		obuf_check(c);
	if (c->closing)
		return;
	if (pos == c->in_len) {
		c->in_len = 0;
		if (c->in_cap > (1u << 20)) {
			free(c->in);
			c->in = NULL;
			c->in_cap = 0;
		}
	} else if (pos > 0) {
		memmove(c->in, c->in + pos, c->in_len - pos);
		c->in_len -= pos;
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	client *c = h->data;
	if (c->in_cap - c->in_len < 16384) {
		size_t cap = c->in_cap * 2;
		if (cap < c->in_len + 65536)
			cap = c->in_len + 65536;
		c->in = xrealloc(c->in, cap);
		c->in_cap = cap;
	}
	size_t n = c->in_cap - c->in_len;
	*buf = uv_buf_init(c->in + c->in_len, (unsigned)(n > (1u << 30) ? (1u << 30) : n));
}

static void resume_reading(client *c);

/* What the connection's buffers hold (client.held), the allocations'
 * sizes, not the bytes in use: what it costs the process. */
static void held_update(client *c)
{
	size_t n = c->in_cap + (c->frame.cap + c->look.cap) * sizeof(arg) + c->out.cap +
	           c->inflight + c->capmarks * sizeof(park_mark) +
	           c->capqueue * sizeof(queued_cmd) + c->queue_bytes;
	atomic_store_explicit(&c->held, n, memory_order_relaxed);
}

/* Free the buffers that hold nothing (the loop's timer, once a second, on
 * a client not blocked). They kept the size of the connection's largest
 * request and reply, up to 1 MiB each and 16 MiB of argument vector, for
 * its life, counted by no limit: maxclients idle connections that had each
 * sent one large request held that many times it (round 23: 5 MB a
 * connection after an HDEL of 200,000 fields, 69 KB after a PING, where
 * Redis 7 holds 10 KB). A busy connection pays one allocation a second.
 * With no input left, no request is partly parsed: the frames point into
 * nothing. */
static void held_shrink(client *c)
{
	if (c->in_len == 0) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
		resp_frame_free(&c->frame);
		resp_frame_free(&c->look);
	}
	if (c->out.len == 0) /* all handed to the socket; out_base stays */
		rbuf_free(&c->out);
	if (c->nmarks == 0) {
		free(c->marks);
		c->marks = NULL;
		c->capmarks = 0;
	}
	if (c->nqueue == 0) {
		free(c->queue);
		c->queue = NULL;
		c->capqueue = 0;
	}
	if (c->nwbs == 0) {
		free(c->wbs);
		c->wbs = NULL;
		c->capwbs = 0;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	client *c = s->data;
	if (nread == 0 || c->closing)
		return;
	if (nread < 0) {
		if (c->reading) {
			uv_read_stop(s);
			c->reading = false;
		}
		if (c->pending) { /* what came before the end: run it first */
			c->pending = false;
			run_input(c, true);
			if (c->closing)
				return;
		}
		if (nread == UV_EOF && (c->blocked || c->park_paused) && c->in_len) {
			/* Requests that came before the end wait behind a blocked
			 * command or parked commits: they run first (input_end),
			 * as they would have if they had not waited. Closing
			 * after the flush here dropped them unrun, and their
			 * replies (round 24). */
			c->input_ended = true;
		} else if (nread == UV_EOF && !c->blocked && !all_sent(c)) {
			client_request_close(c);
			client_flush(c);
		} else if (nread == UV_EOF && c->blocked) {
			client_request_close(c);
		} else {
			client_close(c);
		}
		return;
	}
	c->in_len += (size_t)nread;
	STAT_ADD(c->lp, st_net_in, (uint64_t)nread);
	STAT_ADD(c->lp, st_reads, 1);
#ifndef CTXD_FUZZHOOK
	/* Run in the check phase, after every read of this poll phase: the
	 * keys of all of them are prefetched together (on_ready_check). */
	c->pending = true;
	if (!c->ready) {
		c->ready = true;
		c->rnext = c->lp->ready;
		c->lp->ready = c;
	}
#else
	run_input(c, true);
#endif
}

/* What a read's bytes lead to: parse and run the complete requests, check
 * the query buffer limit, stop reading while blocked, send the replies.
 * prefetch: process_input prefetches the keys of its own requests (not
 * done already with other clients' by on_ready_check). */
static void run_input(client *c, bool prefetch)
{
	if (prefetch)
		prefetch_keys(c);
	process_input(c);
	if (c->closing)
		return;
	size_t qlimit =
	    atomic_load_explicit(&srv.cfg.client_query_buffer_limit, memory_order_relaxed);
	if (qlimit && c->in_len + c->queue_bytes > qlimit) {
		server_log('W',
		           "client id=%llu addr=%s closed: query buffer %zu bytes over "
		           "client-query-buffer-limit",
		           (unsigned long long)c->id, c->addr, c->in_len + c->queue_bytes);
		client_close(c);
		return;
	}
	if ((c->blocked || c->park_paused) && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	client_flush(c);
	if (!c->closing)
		held_update(c);
}

/* The check phase, right after the poll phase: run the inputs that its
 * reads brought, after prefetching the keys of all of them at once. With
 * many clients each sending one request per read (no pipelining), their
 * cache misses (table slot, context, version, trie root) then overlap as a
 * pipeline's do. A client on the list is never freed before this runs
 * (freeing follows uv_close, in the closing phase, after the check phase);
 * one closed meanwhile is skipped, and one whose input ran already (its
 * end of stream came in the same poll phase: on_read runs what came before
 * it first) is no longer pending. */
static void on_ready_check(uv_check_t *h)
{
	loop *lp = h->data;
	client *list = lp->ready;
	if (!list)
		return;
	lp->ready = NULL;
	scan_out o;
	o.k = 0;
	client *rest = list; /* the first client whose keys were not scanned */
	for (; rest && o.k < PREFETCH_REQS; rest = rest->rnext)
		if (rest->pending && !rest->closing && rest->authed)
			scan_keys(rest->in, rest->in_len, &o);
	if (o.k > 1)
		ctx_prefetch_keys(srv.store, o.ids, o.lens, o.fields, o.flens, o.k);
	bool own = false; /* from `rest` on, each prefetches its own keys */
	bool inline_sync = srv.cfg.sync_inline && srv.cfg.durability == CTX_DURABILITY_ALWAYS;
	if (inline_sync)
		ctx_flush_defer(srv.store, true);
	client *next;
	for (client *c = list; c; c = next) {
		next = c->rnext;
		own = own || c == rest;
		c->rnext = NULL;
		c->ready = false;
		bool pending = c->pending;
		c->pending = false;
		if (pending && !c->closing)
			run_input(c, own);
	}
	if (inline_sync) {
		ctx_flush_defer(srv.store, false);
		sync_turn(lp);
	}
}

/* After input that waited ran: a stream that ended meanwhile (on_read)
 * closes once nothing waits any more and the replies are sent. */
static void input_end(client *c)
{
	if (c->input_ended && !c->closing && !c->blocked && !c->park_paused)
		client_request_close(c);
}

static void resume_reading(client *c)
{
	if (c->closing || c->close_after_flush || c->reading || c->blocked || c->park_paused ||
	    c->input_ended)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
}

/* ---- blocking work ---------------------------------------------------------------------- */

typedef struct blocking_work {
	uv_work_t req;
	client *c;
	void (*fn)(void *);
	void (*done)(client *, void *);
	void *arg;
} blocking_work;

static void work_run(uv_work_t *req)
{
	blocking_work *w = req->data;
	w->fn(w->arg);
}

static void work_done(uv_work_t *req, int status)
{
	blocking_work *w = req->data;
	client *c = w->c;
	loop *lp = c->lp;
	lp->pending_work--;
	c->refs--;
	if (c->closing) {
		w->done(NULL, w->arg);
		if (c->refs == 0 && c->fd == -1)
			free_client(c);
	} else {
		c->blocked = false;
		size_t marks = c->nmarks;
		w->done(c, w->arg);
		cmd_end(c);
		park_charge(c, marks, 0);
		process_input(c);
		if (!c->closing) {
			input_end(c);
			resume_reading(c);
			client_flush(c);
		}
	}
	free(w);
	maybe_finish(lp);
}

void server_run_blocking(client *c, void (*fn)(void *), void (*done)(client *, void *), void *warg)
{
	if (c->in_exec || c->blocked) {
		fn(warg);
		done(c, warg);
		return;
	}
	blocking_work *w = xmalloc(sizeof(*w));
	w->req.data = w;
	w->c = c;
	w->fn = fn;
	w->done = done;
	w->arg = warg;
	c->refs++;
	c->blocked = true;
	c->lp->pending_work++;
	if (uv_queue_work(&c->lp->uv, &w->req, work_run, work_done) != 0) {
		c->refs--;
		c->blocked = false;
		c->lp->pending_work--;
		free(w);
		fn(warg);
		done(c, warg);
	}
}

/* ---- watches --------------------------------------------------------------------------- */

struct watch_poll {
	uv_poll_t poll;
	client *c;
};

static void on_watch_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_watch_ready(uv_poll_t *h, int status, int events)
{
	watch_poll *wp = h->data;
	client *c = wp->c;
	for (int i = 0; i < 1024 && c->watch && !c->closing; i++) {
		ctx_event *e;
		if (ctx_watch_next(c->watch, &e) != CTX_OK)
			break;
		c->on_event(c, e);
		ctx_event_free(e);
		/* Per event, as process_input per request: an event carries its
		 * commit's keys (up to max_key_size each), so the 1024 of one
		 * wake-up could put gigabytes past the output limits of a
		 * watcher that does not read before the flush checked them
		 * (round 22: 3.4 MB pending at a 1 MB hard limit). */
		if (!obuf_check(c))
			return;
	}
	client_flush(c);
}

void client_start_watch(client *c, ctx_watch *w, void (*on_event)(client *c, const ctx_event *e))
{
	client_stop_watch(c);
	watch_poll *wp = xmalloc(sizeof(*wp));
	wp->c = c;
	wp->poll.data = wp;
	c->watch = w;
	c->on_event = on_event;
	c->wpoll = wp;
	uv_poll_init(&c->lp->uv, &wp->poll, ctx_watch_fd(w));
	uv_poll_start(&wp->poll, UV_READABLE, on_watch_ready);
}

void client_stop_watch(client *c)
{
	if (!c->watch)
		return;
	uv_poll_stop(&c->wpoll->poll);
	uv_close((uv_handle_t *)&c->wpoll->poll, on_watch_closed);
	ctx_watch_close(c->watch);
	c->watch = NULL;
	c->wpoll = NULL;
}

/* ---- CLIENT LIST / KILL ---------------------------------------------------------------- */

/* CLIENT LIST walks every client of every loop: only the copy of what a
 * line shows is made under reg_lock (client_info_take, a few stores and
 * the names' bytes), the formatting (an snprintf per client, hundreds of
 * bytes each) after it, so that CLIENT LIST of 10,000 clients does not
 * hold up every accept, close and CLIENT SETNAME of the other loops. */
void client_info_take(const client *c, client_info *ci)
{
	ci->id = c->id;
	ci->created_us = c->created_us;
	ci->last_us = atomic_load_explicit(&c->last_us, memory_order_relaxed);
	ci->cmd = atomic_load_explicit(&c->last_cmd, memory_order_relaxed);
	ci->held = atomic_load_explicit(&c->held, memory_order_relaxed);
	ci->fd = c->fd;
	ci->resp = client_resp(c);
	memcpy(ci->addr, c->addr, sizeof(ci->addr));
	memcpy(ci->laddr, c->laddr, sizeof(ci->laddr));
	ci->name = c->name ? xstrdup(c->name) : NULL;
	ci->lib_name = c->lib_name ? xstrdup(c->lib_name) : NULL;
	ci->lib_ver = c->lib_ver ? xstrdup(c->lib_ver) : NULL;
}

void client_info_format(client_info *ci, uint64_t now, rbuf *b)
{
	char lcmd[64];
	lower_name(ci->cmd ? ci->cmd : "NULL", lcmd, sizeof(lcmd));
	/* Twice if the first did not fit: names have no bound but the
	 * request's (proto-max-bulk-len), and a line is never cut. */
	for (int pass = 0; pass < 2; pass++) {
		size_t room = b->cap - b->len;
		int n = snprintf(
		    b->p ? b->p + b->len : NULL, room,
		    "id=%llu addr=%s laddr=%s fd=%d name=%s age=%llu idle=%llu flags=N db=0 sub=0 "
		    "psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 "
		    "obl=0 oll=0 omem=0 tot-mem=%zu events=r cmd=%s user=default redir=-1 resp=%d "
		    "lib-name=%s lib-ver=%s\n",
		    (unsigned long long)ci->id, ci->addr, ci->laddr, ci->fd,
		    ci->name ? ci->name : "",
		    (unsigned long long)((now - ci->created_us) / 1000000u),
		    (unsigned long long)(now > ci->last_us ? (now - ci->last_us) / 1000000u : 0),
		    ci->held, lcmd, ci->resp, ci->lib_name ? ci->lib_name : "",
		    ci->lib_ver ? ci->lib_ver : "");
		if (n < 0)
			break;
		if ((size_t)n < room) {
			b->len += (size_t)n;
			break;
		}
		rbuf_reserve(b, (size_t)n + 1);
	}
	free(ci->name);
	free(ci->lib_name);
	free(ci->lib_ver);
	ci->name = ci->lib_name = ci->lib_ver = NULL;
}

size_t client_kill_matching(uint64_t id, const char *addr, bool skip_self, client *self)
{
	size_t killed = 0;
	pthread_mutex_lock(&srv.reg_lock);
	for (client *c = srv.registry; c; c = c->gnext) {
		if (id && c->id != id)
			continue;
		if (addr && strcmp(c->addr, addr) != 0)
			continue;
		if (skip_self && c == self)
			continue;
		atomic_store(&c->kill, true);
		uv_async_send(&c->lp->async);
		killed++;
	}
	pthread_mutex_unlock(&srv.reg_lock);
	return killed;
}

/* ---- accept ----------------------------------------------------------------------------- */

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
	}
	snprintf(out, cap, "%s:%d", host, port);
}

static void on_reject_closed(uv_handle_t *h)
{
	free(h->data);
}

/* A descriptor accepted for a loop that will not serve it (maxclients,
 * shutdown, a failed set-up): its count comes back and it is closed. */
static void unassign(loop *lp)
{
	atomic_fetch_sub(&srv.nclients, 1);
	atomic_fetch_sub(&lp->assigned, 1);
}

/* Serve the accepted descriptor fd on lp (lp's thread). */
static void client_setup(loop *lp, int fd)
{
	client *c = calloc(1, sizeof(*c));
	if (!c || uv_tcp_init(&lp->uv, &c->tcp) != 0) {
		free(c);
		close(fd);
		unassign(lp);
		return;
	}
	c->tcp.data = c;
	if (uv_tcp_open(&c->tcp, fd) != 0) {
		close(fd);
		uv_close((uv_handle_t *)&c->tcp, on_reject_closed);
		unassign(lp);
		return;
	}
	c->lp = lp;
	c->fd = fd;
	c->id = atomic_fetch_add(&srv.next_client_id, 1) + 1;
	c->authed = !auth_required();
	client_set_resp(c, 2);
	c->created_us = now_us();
	atomic_store(&c->last_us, c->created_us);
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		format_addr(&ss, c->addr, sizeof(c->addr));
	len = sizeof(ss);
	if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		format_addr(&ss, c->laddr, sizeof(c->laddr));
	uv_tcp_nodelay(&c->tcp, 1);
	c->next = lp->clients;
	if (lp->clients)
		lp->clients->prev = c;
	lp->clients = c;
	lp->nclients++;
	STAT_ADD(lp, st_connections, 1);
	registry_add(c);
	server_log('D', "client id=%llu addr=%s connected (loop %d)", (unsigned long long)c->id,
	           c->addr, lp->idx);
	resume_reading(c);
}

/* The loop with the fewest connections, the accepting one on a tie; its
 * count is taken for the new connection. NULL once the server stops: the
 * check is under balance_lock, so a loop that found no connection assigned
 * to it under the lock while stopping (handoffs_pending) gets no more. */
static loop *assign_loop(loop *self)
{
	pthread_mutex_lock(&balance_lock);
	if (atomic_load(&srv.stopping)) {
		pthread_mutex_unlock(&balance_lock);
		return NULL;
	}
	loop *best = self;
	size_t least = atomic_load_explicit(&self->assigned, memory_order_relaxed);
	for (int i = 0; i < srv.nloops; i++) {
		size_t n = atomic_load_explicit(&srv.loops[i].assigned, memory_order_relaxed);
		if (n < least) {
			least = n;
			best = &srv.loops[i];
		}
	}
	atomic_fetch_add_explicit(&best->assigned, 1, memory_order_relaxed);
	pthread_mutex_unlock(&balance_lock);
	return best;
}

/* Give the accepted descriptor fd to loop `to`. The wake-up is sent under
 * inbox_lock: a stopping `to` may take fd from its inbox as soon as the
 * lock is free (woken by an earlier push), close it and end, and libuv
 * 1.44 aborts on a uv_async_send to a loop already closed (its eventfd is
 * -1). Under the lock, `to` cannot take fd, and so cannot end, before the
 * send is done (round 15: SIGTERM during hand-overs aborted 1 stop in 8
 * with the sends delayed, test_r15_review_srv). */
static void handoff_push(loop *to, int fd)
{
	pthread_mutex_lock(&to->inbox_lock);
	if (to->ninbox == to->capinbox) {
		size_t cap = to->capinbox ? to->capinbox * 2 : 16;
		int *p = realloc(to->inbox, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&to->inbox_lock);
			close(fd);
			unassign(to);
			return;
		}
		to->inbox = p;
		to->capinbox = cap;
	}
	to->inbox[to->ninbox++] = fd;
	uv_async_send(&to->handoff);
	pthread_mutex_unlock(&to->inbox_lock);
}

/* Take the inbox; set the connections up (or close them, stopping). */
static void on_handoff(uv_async_t *h)
{
	loop *lp = h->data;
	for (;;) {
		pthread_mutex_lock(&lp->inbox_lock);
		int *fds = lp->inbox;
		size_t n = lp->ninbox;
		lp->inbox = NULL;
		lp->ninbox = lp->capinbox = 0;
		pthread_mutex_unlock(&lp->inbox_lock);
		if (!n) {
			free(fds);
			return;
		}
		for (size_t i = 0; i < n; i++) {
			if (lp->stopping) {
				close(fds[i]);
				unassign(lp);
			} else {
				client_setup(lp, fds[i]);
			}
		}
		free(fds);
		maybe_finish(lp);
	}
}

static void reject(loop *lp, int fd)
{
	STAT_ADD(lp, st_rejected, 1);
	static const char msg[] = "-ERR max number of clients reached\r\n";
	ssize_t w = write(fd, msg, sizeof(msg) - 1);
	(void)w;
	close(fd);
}

static void on_listen_ready(uv_poll_t *h, int status, int events)
{
	(void)events;
	loop *lp = h->data;
	if (status < 0 || !lp->listening)
		return;
	for (int i = 0; i < ACCEPT_MAX; i++) {
		int fd = accept4(lp->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				server_log('W', "accept: %s (connections wait for a descriptor)",
				           strerror(errno));
				uv_poll_stop(&lp->listener);
				lp->accept_paused = true;
			}
			return;
		}
		size_t maxc = atomic_load_explicit(&srv.cfg.maxclients, memory_order_relaxed);
		if (atomic_load(&srv.stopping)) {
			reject(lp, fd);
			continue;
		}
		if (atomic_fetch_add(&srv.nclients, 1) + 1 > maxc) {
			atomic_fetch_sub(&srv.nclients, 1);
			reject(lp, fd);
			continue;
		}
		loop *to = assign_loop(lp);
		if (!to) {
			atomic_fetch_sub(&srv.nclients, 1);
			reject(lp, fd);
		} else if (to == lp)
			client_setup(lp, fd);
		else
			handoff_push(to, fd);
	}
}

static void on_listener_closed(uv_handle_t *h)
{
	loop *lp = h->data;
	close(lp->listen_fd);
	lp->listen_fd = -1;
}

static void listener_close(loop *lp)
{
	if (!lp->listening)
		return;
	lp->listening = false;
	if (!uv_is_closing((uv_handle_t *)&lp->listener))
		uv_close((uv_handle_t *)&lp->listener, on_listener_closed);
}

/* ---- loops ------------------------------------------------------------------------------ */

static void close_if_open(uv_handle_t *h)
{
	if (h->loop && !uv_is_closing(h))
		uv_close(h, NULL);
}

/* Connections another loop assigned to lp and has not handed over yet. */
static bool handoffs_pending(loop *lp)
{
	pthread_mutex_lock(&balance_lock);
	bool pending = atomic_load(&lp->assigned) > lp->nclients;
	pthread_mutex_unlock(&balance_lock);
	return pending;
}

/* A stopping loop ends once its clients are gone and its work is done. */
static void maybe_finish(loop *lp)
{
	if (!lp->stopping || lp->nclients > 0 || lp->pending_work > 0 || handoffs_pending(lp))
		return;
	close_if_open((uv_handle_t *)&lp->timer);
	close_if_open((uv_handle_t *)&lp->async);
	close_if_open((uv_handle_t *)&lp->npoll);
	close_if_open((uv_handle_t *)&lp->rcheck);
	if (lp->idx == 0 && srv.nloops > 1) {
		close_if_open((uv_handle_t *)&lp->ctl);
		for (int i = 1; i < srv.nloops; i++)
			close_if_open((uv_handle_t *)&srv.loops[i].gpoll);
	}
	close_if_open((uv_handle_t *)&lp->handoff);
	listener_close(lp);
}

static void begin_stop(loop *lp)
{
	if (lp->stopping)
		return;
	lp->stopping = true;
	lp->stop_deadline_us = now_us() + SHUTDOWN_GRACE_US;
	listener_close(lp);
	client *next;
	for (client *c = lp->clients; c; c = next) {
		next = c->next;
		client_request_close(c);
		if (!c->blocked)
			client_flush(c);
	}
	maybe_finish(lp);
}

static void on_async(uv_async_t *h)
{
	loop *lp = h->data;
	if (lp->idx == 0) {
		if (atomic_load(&srv.stopping))
			unhost_all(); /* before this loop may end */
		else
			host_adopt();
	}
	maybe_park(lp);
	client *next;
	for (client *c = lp->clients; c; c = next) {
		next = c->next;
		if (atomic_load(&c->kill))
			client_close(c);
	}
	if (atomic_load(&srv.stopping))
		begin_stop(lp);
}

static void on_timer(uv_timer_t *h)
{
	loop *lp = h->data;
	uint64_t now = now_us();
	long timeout = atomic_load_explicit(&srv.cfg.timeout, memory_order_relaxed);
	if (lp->accept_paused && lp->listening) {
		lp->accept_paused = false;
		uv_poll_start(&lp->listener, UV_READABLE, on_listen_ready);
	}
	client *next;
	for (client *c = lp->clients; c; c = next) {
		next = c->next;
		uint64_t last = atomic_load_explicit(&c->last_us, memory_order_relaxed);
		if (lp->stopping && now > lp->stop_deadline_us) {
			server_log('W', "shutdown: closing client id=%llu with replies unsent",
			           (unsigned long long)c->id);
			client_close(c);
		} else if (timeout > 0 && !c->blocked && !c->watch && !c->nmarks && now > last &&
		           now - last > (uint64_t)timeout * 1000000u) {
			server_log('D', "client id=%llu idle for more than %ld s: closed",
			           (unsigned long long)c->id, timeout);
			client_close(c);
		} else if (obuf_check(c) && !c->blocked) {
			hscan_tick(c, now);
			if (!c->pending)
				held_shrink(c);
			held_update(c);
		}
	}
	maybe_finish(lp);
}

static void *loop_thread(void *p)
{
	loop *lp = p;
	clockid_t cid;
	if (pthread_getcpuclockid(pthread_self(), &cid) == 0) {
		atomic_store_explicit(&lp->cpu_clock, (long)cid, memory_order_relaxed);
		atomic_store_explicit(&lp->cpu_clock_set, true, memory_order_release);
	}
	while (!loop_park_or_end(lp, uv_run(&lp->uv, UV_RUN_DEFAULT)))
		;
	uv_run(&lp->uv, UV_RUN_DEFAULT);          /* close callbacks */
	for (size_t i = 0; i < lp->ninbox; i++) { /* handed over as it ended */
		close(lp->inbox[i]);
		unassign(lp);
	}
	free(lp->inbox);
	lp->inbox = NULL;
	lp->ninbox = 0;
	if (uv_loop_close(&lp->uv) != 0)
		server_log('W', "loop %d ended with handles open", lp->idx);
	ctx_notifier_close(lp->notifier);
	lp->notifier = NULL;
	wbatch_spare_free();
	return NULL;
}

/* One ctxd to a port. The loops' listening sockets share their port through
 * SO_REUSEPORT, which the kernel grants to every socket of the same user
 * asking for it: a second ctxd started on the port of a running one bound
 * and listened too, and the kernel then spread new connections over both
 * servers' sockets (two stores behind one port, each client on either; it
 * was seen in the tests, where two servers could pick the same free port:
 * docs/benchmarks.md, round 19, r19-flake). So the first loop, once its
 * socket is bound (the port known, also for --port 0) and before it
 * listens, binds an abstract unix socket named after the port, which only
 * one process can hold and which goes away with the process: a ctxd that
 * cannot take it fails to start, as on a port taken by another program. */
static int port_guard_fd = -1;

static int take_port_guard(int port)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	/* sun_path[0] stays '\0': the abstract namespace, no file */
	int n = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "ctxd-port-%d", port);
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
	if (bind(fd, (struct sockaddr *)&a, len) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	port_guard_fd = fd;
	return 0;
}

static int bind_socket(const char *host, int port, int *bound_port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t slen;
	if (strchr(host, ':')) {
		if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
			return -1;
		slen = sizeof(struct sockaddr_in6);
	} else {
		if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0)
			return -1;
		slen = sizeof(struct sockaddr_in);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	struct sockaddr_storage got;
	socklen_t glen = sizeof(got);
	if (bind(fd, (struct sockaddr *)&ss, slen) != 0 ||
	    getsockname(fd, (struct sockaddr *)&got, &glen) != 0)
		goto fail;
	*bound_port = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
	                                             : ((struct sockaddr_in6 *)&got)->sin6_port);
	if (port_guard_fd < 0 && take_port_guard(*bound_port) != 0)
		goto fail;
	if (listen(fd, 511) != 0)
		goto fail;
	return fd;
fail:;
	int e = errno;
	close(fd);
	errno = e;
	return -1;
}

static int loop_init(loop *lp, int idx)
{
	lp->idx = idx;
	atomic_init(&lp->cpu_clock, 0);
	atomic_init(&lp->cpu_clock_set, false);
	pthread_mutex_init(&lp->host_lock, NULL);
	pthread_cond_init(&lp->host_cv, NULL);
	lp->host_state = HOST_OWN;
	if (uv_loop_init(&lp->uv) != 0)
		return -1;
	if (ctx_notifier_open(srv.store, &lp->notifier) != CTX_OK) {
		server_log('E', "cannot open a durability notifier: %s", ctx_last_error());
		return -1;
	}
	lp->want = UINT64_MAX; /* no reply waits yet */
	ctx_notifier_want(lp->notifier, lp->want);
	ctx_durable_revision(srv.store, &lp->durable);
	uv_poll_init(&lp->uv, &lp->npoll, ctx_notifier_fd(lp->notifier));
	lp->npoll.data = lp;
	uv_poll_start(&lp->npoll, UV_READABLE, on_notify);
	uv_async_init(&lp->uv, &lp->async, on_async);
	lp->async.data = lp;
	pthread_mutex_init(&lp->inbox_lock, NULL);
	uv_async_init(&lp->uv, &lp->handoff, on_handoff);
	lp->handoff.data = lp;
	uv_check_init(&lp->uv, &lp->rcheck);
	lp->rcheck.data = lp;
	uv_check_start(&lp->rcheck, on_ready_check);
	uv_timer_init(&lp->uv, &lp->timer);
	lp->timer.data = lp;
	uv_timer_start(&lp->timer, on_timer, 1000, 1000);
	int port = srv.listen_port ? srv.listen_port : srv.cfg.port;
	int bound = 0;
	int fd = bind_socket(srv.cfg.bind, port, &bound);
	if (fd < 0) {
		server_log('E', "cannot listen on %s:%d: %s", srv.cfg.bind, port, strerror(errno));
		return -1;
	}
	srv.listen_port = bound;
	lp->listen_fd = fd;
	if (uv_poll_init(&lp->uv, &lp->listener, fd) != 0) {
		server_log('E', "cannot listen on %s:%d", srv.cfg.bind, port);
		close(fd);
		return -1;
	}
	lp->listener.data = lp;
	uv_poll_start(&lp->listener, UV_READABLE, on_listen_ready);
	lp->listening = true;
	return 0;
}

/* Loop 0's control timer and its (stopped) polls of the other loops. */
static int host_init(void)
{
	loop *h0 = &srv.loops[0];
	for (int i = 1; i < srv.nloops; i++) {
		loop *g = &srv.loops[i];
		if (uv_poll_init(&h0->uv, &g->gpoll, uv_backend_fd(&g->uv)) != 0)
			return -1;
		g->gpoll.data = g;
		uv_unref((uv_handle_t *)&g->gpoll);
	}
	uv_timer_init(&h0->uv, &h0->ctl);
	h0->ctl.data = h0;
	uv_timer_start(&h0->ctl, on_ctl, CTL_PERIOD_MS, CTL_PERIOD_MS);
	uv_unref((uv_handle_t *)&h0->ctl);
	return 0;
}

/* ---- maxclients and the open files limit ------------------------------------------------- */

/* Every client is a descriptor, and the store needs descriptors of its own
 * that it cannot do without: a new log segment at each checkpoint, the
 * checkpoint's temporary file, the directory to sync, the zeroer's; each
 * loop its epoll and wake-up descriptors; CTX.WATCH one per watch. Left to
 * the clients, the open files limit (ulimit -n: 1,024 by default for a
 * service) let the 1,000th connection take the last one, and the next
 * checkpoint's segment failed with EMFILE: the log, and so every write of
 * every client, failed until a restart. As Redis does (adjustOpenFilesLimit),
 * ctxd raises the soft limit to what maxclients needs if the hard limit
 * allows it, else it lowers maxclients to what fits and says so. */
#define RESERVED_FDS_BASE     64
#define RESERVED_FDS_PER_LOOP 8

static size_t reserved_fds(void)
{
	int loops = srv.cfg.loops > 0 ? srv.cfg.loops : 1;
	return RESERVED_FDS_BASE + (size_t)loops * RESERVED_FDS_PER_LOOP;
}

size_t net_fit_maxclients(size_t want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return want;
	size_t reserve = reserved_fds();
	rlim_t need = (rlim_t)want + (rlim_t)reserve;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return want;
	rlim_t to = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) ? need : rl.rlim_max;
	if (to > rl.rlim_cur) {
		struct rlimit raised = {to, rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl.rlim_cur = to;
	}
	if (rl.rlim_cur >= need)
		return want;
	return rl.rlim_cur > reserve + 1 ? (size_t)(rl.rlim_cur - reserve) : 1;
}

void net_fit_open_files(void)
{
	size_t want = atomic_load(&srv.cfg.maxclients);
	size_t fit = net_fit_maxclients(want);
	if (fit < want) {
		server_log('W',
		           "maxclients lowered from %zu to %zu: the open files limit (ulimit -n) "
		           "cannot be raised above %zu, and ctxd keeps %zu descriptors for its "
		           "store and loops",
		           want, fit, fit + reserved_fds(), reserved_fds());
		atomic_store(&srv.cfg.maxclients, fit);
	}
}

int net_start(void)
{
	srv.nloops = srv.cfg.loops;
	srv.loops = calloc((size_t)srv.nloops, sizeof(loop));
	if (!srv.loops)
		return -1;
	for (int i = 0; i < srv.nloops; i++)
		if (loop_init(&srv.loops[i], i) != 0)
			return -1;
	if (srv.nloops > 1 && host_init() != 0)
		return -1;
	for (int i = 0; i < srv.nloops; i++)
		if (pthread_create(&srv.loops[i].thread, NULL, loop_thread, &srv.loops[i]) != 0)
			return -1;
	return 0;
}

void net_stop(void)
{
	atomic_store(&srv.stopping, true);
	for (int i = 0; i < srv.nloops; i++)
		uv_async_send(&srv.loops[i].async);
	for (int i = 0; i < srv.nloops; i++)
		pthread_join(srv.loops[i].thread, NULL);
}
