/*
 * fuzzhook.c - connections without sockets, for the fuzz target
 * tests/fuzz/fuzz_dispatch.c. Compiled to nothing in ctxd; in the fuzz build
 * (CTXD_FUZZHOOK defined) it takes the place of main.c and net.c.
 *
 * WHY net.c IS INCLUDED HERE
 *   The connection code path (on_read, process_input, run_request,
 *   exec_command, cmd_end, parking, client_flush, client_close) is static in
 *   net.c. This file includes net.c whole, after redirecting the few libuv
 *   calls that touch a socket or the thread pool to fakes below:
 *     uv_read_start/stop  record the callbacks in the stream's public
 *                         alloc_cb/read_cb fields; fuzzhook_read calls them
 *                         with the bytes "read";
 *     uv_try_write        appends to the connection's captured output (at
 *                         most write_window bytes: a slow reader);
 *     uv_write            queued; fuzzhook_pump completes it later;
 *     uv_queue_work       queued; fuzzhook_pump runs the work and then its
 *                         after-work callback on this thread, in order (the
 *                         connection is blocked meanwhile, as with libuv's
 *                         pool, but no thread runs ctxd code);
 *     uv_close            notes how the connection ended, cancels its queued
 *                         writes, then closes the handle for real.
 *   Everything else is the server's own code on a real libuv loop (no
 *   listener, no timer): commands, replies, MULTI/EXEC, CTX.WATCH polls on
 *   the watch's fd, CLIENT KILL through the loop's async handle. The client
 *   is built as on_connection builds it, minus the socket. SHUTDOWN is left
 *   out of the command table (it signals the process).
 *
 * Single-threaded: everything here runs on the fuzzer's thread.
 */
#include "core.h"

#ifdef CTXD_FUZZHOOK

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fake_read_start(uv_stream_t *s, uv_alloc_cb alloc_cb, uv_read_cb read_cb);
static int fake_read_stop(uv_stream_t *s);
static int fake_try_write(uv_stream_t *s, const uv_buf_t bufs[], unsigned int nbufs);
static int fake_write(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[], unsigned int nbufs,
                      uv_write_cb cb);
static int fake_queue_work(uv_loop_t *l, uv_work_t *req, uv_work_cb work_cb,
                           uv_after_work_cb after_cb);
static void fake_close(uv_handle_t *h, uv_close_cb cb);
void net_client_start_watch(client *c, ctx_watch *w,
                            void (*on_event)(client *c, const ctx_event *e));

#define uv_read_start      fake_read_start
#define uv_read_stop       fake_read_stop
#define uv_try_write       fake_try_write
#define uv_write           fake_write
#define uv_queue_work      fake_queue_work
#define uv_close           fake_close
#define client_start_watch net_client_start_watch
#include "net.c"
#undef uv_read_start
#undef uv_read_stop
#undef uv_try_write
#undef uv_write
#undef uv_queue_work
#undef uv_close
#undef client_start_watch

#define MAX_CONNS 8

typedef struct pending {
	struct pending *next;
	bool is_work;
	uv_write_t *wreq;
	uv_stream_t *stream;
	uv_buf_t buf;
	uv_write_cb wcb;
	uv_work_t *work;
	uv_work_cb work_cb;
	uv_after_work_cb after_cb;
} pending;

static loop hook_loop;
static bool hook_ready;
static fuzzhook_conn *conns[MAX_CONNS];
static pending *queue_head, **queue_tail = &queue_head;
static void (*real_on_event)(client *c, const ctx_event *e);

/* ---- the logging main.c would give ------------------------------------------------ */

static _Atomic char hook_log_level = 'W';

void log_set_level(char level)
{
	atomic_store(&hook_log_level, level);
}

void server_log(char level, const char *fmt, ...)
{
	/* Nothing is printed (the fuzzer's output would drown), but the message
	 * is formatted, as ctxd does, so that its arguments are checked. */
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
}

/* ---- connections ---------------------------------------------------------------- */

static fuzzhook_conn *conn_of(const client *c)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i] && conns[i]->c == c)
			return conns[i];
	return NULL;
}

static void enqueue(pending *p)
{
	p->next = NULL;
	*queue_tail = p;
	queue_tail = &p->next;
}

static pending *dequeue(void)
{
	pending *p = queue_head;
	if (p && !(queue_head = p->next))
		queue_tail = &queue_head;
	return p;
}

static int fake_read_start(uv_stream_t *s, uv_alloc_cb alloc_cb, uv_read_cb read_cb)
{
	s->alloc_cb = alloc_cb;
	s->read_cb = read_cb;
	return 0;
}

static int fake_read_stop(uv_stream_t *s)
{
	s->alloc_cb = NULL;
	s->read_cb = NULL;
	return 0;
}

static void capture(uv_stream_t *s, const char *p, size_t n)
{
	fuzzhook_conn *fc = conn_of(s->data);
	if (fc)
		rbuf_add(&fc->out, p, n);
}

static int fake_try_write(uv_stream_t *s, const uv_buf_t bufs[], unsigned int nbufs)
{
	fuzzhook_conn *fc = conn_of(s->data);
	size_t window = fc ? fc->write_window : SIZE_MAX, done = 0;
	for (unsigned i = 0; i < nbufs && done < window; i++) {
		size_t k = bufs[i].len < window - done ? bufs[i].len : window - done;
		capture(s, bufs[i].base, k);
		done += k;
	}
	return done ? (int)done : UV_EAGAIN;
}

static int fake_write(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[], unsigned int nbufs,
                      uv_write_cb cb)
{
	if (nbufs != 1)
		abort(); /* net.c writes one buffer */
	pending *p = xmalloc(sizeof(*p));
	*p = (pending){.wreq = req, .stream = s, .buf = bufs[0], .wcb = cb};
	enqueue(p);
	return 0;
}

static int fake_queue_work(uv_loop_t *l, uv_work_t *req, uv_work_cb work_cb,
                           uv_after_work_cb after_cb)
{
	pending *p = xmalloc(sizeof(*p));
	*p = (pending){.is_work = true, .work = req, .work_cb = work_cb, .after_cb = after_cb};
	enqueue(p);
	return 0;
}

/* libuv calls a closing stream's pending write callbacks with UV_ECANCELED
 * before its close callback: do the same, now. */
static void cancel_writes(uv_stream_t *s)
{
	pending **pp = &queue_head;
	while (*pp) {
		pending *p = *pp;
		if (p->is_work || p->stream != s) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		if (!*pp)
			queue_tail = pp;
		p->wcb(p->wreq, UV_ECANCELED);
		free(p);
	}
}

static void fake_close(uv_handle_t *h, uv_close_cb cb)
{
	client *c = h->type == UV_TCP ? h->data : NULL;
	fuzzhook_conn *fc = c ? conn_of(c) : NULL;
	if (fc) {
		fc->replies = c->replies;
		fc->unsent = c->out_head != c->out.len || c->nmarks || c->inflight;
		fc->c = NULL;
		cancel_writes((uv_stream_t *)h);
	}
	uv_close(h, cb);
}

static void count_push(client *c, const ctx_event *e)
{
	fuzzhook_conn *fc = conn_of(c);
	if (fc)
		fc->pushes++;
	real_on_event(c, e);
}

void client_start_watch(client *c, ctx_watch *w, void (*on_event)(client *c, const ctx_event *e))
{
	real_on_event = on_event;
	net_client_start_watch(c, w, count_push);
}

/* ---- the hook's interface (core.h) ------------------------------------------------- */

static void hook_defaults(void)
{
	server_config *cfg = &srv.cfg;
	free(cfg->bind);
	free(cfg->dir);
	free(cfg->requirepass);
	cfg->bind = xstrdup("127.0.0.1");
	cfg->port = 7379;
	cfg->dir = xstrdup("data/ctxd");
	cfg->durability = CTX_DURABILITY_NONE;
	cfg->loops = 1;
	cfg->requirepass = NULL;
	cfg->maxclients = 10000;
	cfg->timeout = 0;
	cfg->proto_max_bulk_len = 512u << 20;
	cfg->client_query_buffer_limit = 1u << 30;
	cfg->obuf_hard = 256u << 20;
	cfg->obuf_soft = 64u << 20;
	cfg->obuf_soft_seconds = 60;
	cfg->maxmemory_clients = (size_t)1 << 30;
	cfg->scan_hold_seconds = 30;
	cfg->scan_hold_bytes = 64u << 20;
	cfg->max_args = 1024 * 1024;
	cfg->max_inline = 64 * 1024;
	log_set_level('W');
}

/* The command table without SHUTDOWN. */
static void hook_commands(void)
{
	commands_init();
	size_t k = 0;
	for (size_t i = 0; i < srv.ncmds; i++)
		if (strcmp(srv.cmds[i]->name, "SHUTDOWN") != 0)
			srv.cmds[k++] = srv.cmds[i];
	srv.ncmds = k;
}

/* loop_init without the listener and the idle timer. */
static void hook_loop_init(void)
{
	loop *lp = &hook_loop;
	if (uv_loop_init(&lp->uv) != 0 || ctx_notifier_open(srv.store, &lp->notifier) != CTX_OK) {
		fprintf(stderr, "fuzzhook: cannot start the loop\n");
		abort();
	}
	lp->want = UINT64_MAX;
	ctx_notifier_want(lp->notifier, lp->want);
	ctx_durable_revision(srv.store, &lp->durable);
	uv_poll_init(&lp->uv, &lp->npoll, ctx_notifier_fd(lp->notifier));
	lp->npoll.data = lp;
	uv_poll_start(&lp->npoll, UV_READABLE, on_notify);
	uv_async_init(&lp->uv, &lp->async, on_async);
	lp->async.data = lp;
	srv.loops = lp;
	srv.nloops = 1;
}

void fuzzhook_setup(ctx_store *store, const char *requirepass)
{
	if (!hook_ready) {
		pthread_mutex_init(&srv.cfg_lock, NULL);
		pthread_mutex_init(&srv.reg_lock, NULL);
		srv.store = store;
		srv.start_us = now_us();
		hook_commands();
		hook_loop_init();
		hook_ready = true;
	}
	if (store != srv.store)
		abort(); /* one store for the process: the loop's notifier is its */
	hook_defaults();
	if (requirepass)
		srv.cfg.requirepass = xstrdup(requirepass);
}

void fuzzhook_connect(fuzzhook_conn *fc)
{
	int slot = 0;
	while (slot < MAX_CONNS && conns[slot])
		slot++;
	if (slot == MAX_CONNS)
		abort();
	loop *lp = &hook_loop;
	client *c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	uv_tcp_init(&lp->uv, &c->tcp);
	c->tcp.data = c;
	atomic_fetch_add(&srv.nclients, 1);
	c->lp = lp;
	c->id = atomic_fetch_add(&srv.next_client_id, 1) + 1;
	c->fd = 100 + slot; /* not -1: -1 means "handle closed" to work_done */
	c->authed = !auth_required();
	client_set_resp(c, 2);
	c->created_us = now_us();
	atomic_store(&c->last_us, c->created_us);
	snprintf(c->addr, sizeof(c->addr), "127.0.0.1:%d", 40000 + slot);
	snprintf(c->laddr, sizeof(c->laddr), "127.0.0.1:%d", srv.cfg.port);
	c->next = lp->clients;
	if (lp->clients)
		lp->clients->prev = c;
	lp->clients = c;
	lp->nclients++;
	atomic_fetch_add(&lp->assigned, 1);
	STAT_ADD(lp, st_connections, 1);
	registry_add(c);
	fc->c = c;
	fc->replies = fc->pushes = 0;
	fc->unsent = false;
	conns[slot] = fc;
	resume_reading(c);
}

size_t fuzzhook_read(fuzzhook_conn *fc, const void *p, size_t n)
{
	client *c = fc->c;
	if (!c || !c->tcp.read_cb || n == 0)
		return 0;
	uv_buf_t b;
	c->tcp.alloc_cb((uv_handle_t *)&c->tcp, 65536, &b);
	size_t k = n < b.len ? n : b.len;
	memcpy(b.base, p, k);
	c->tcp.read_cb((uv_stream_t *)&c->tcp, (ssize_t)k, &b);
	return k;
}

bool fuzzhook_eof(fuzzhook_conn *fc)
{
	client *c = fc->c;
	if (!c || !c->tcp.read_cb)
		return false;
	uv_buf_t b = uv_buf_init(NULL, 0);
	c->tcp.read_cb((uv_stream_t *)&c->tcp, UV_EOF, &b);
	return true;
}

void fuzzhook_pump(void)
{
	for (int quiet = 0; quiet < 2;) {
		pending *p = dequeue();
		bool busy = p != NULL;
		if (p && p->is_work) {
			p->work_cb(p->work);
			p->after_cb(p->work, 0);
		} else if (p) {
			capture(p->stream, p->buf.base, p->buf.len);
			p->wcb(p->wreq, 0);
		}
		free(p);
		uv_run(&hook_loop.uv, UV_RUN_NOWAIT);
		quiet = busy ? 0 : quiet + 1;
	}
}

void fuzzhook_forget(fuzzhook_conn *fc)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i] == fc)
			conns[i] = NULL;
	rbuf_free(&fc->out);
}

#endif /* CTXD_FUZZHOOK */
