/*
 * core.h - what the core files of ctxd (main.c, net.c, multi.c, cmd_conn.c)
 * share and the command files do not see: the configuration, the loops, the
 * client structure.
 *
 * CONFIGURATION
 *   Set once by main.c before the loops start. The settings CONFIG SET may
 *   change at run time (timeout, maxclients, limits, requirepass) are read
 *   with relaxed atomics by every loop; requirepass is guarded by cfg_lock.
 *
 * CLIENTS
 *   A client belongs to one loop and is touched only by that loop's thread,
 *   except for the few fields CLIENT LIST/KILL read from other loops: its
 *   name and library (under srv.reg_lock), last_us, resp and last_cmd
 *   (atomics), kill (an atomic flag the owner looks at when its async handle
 *   fires).
 */
#ifndef CTXD_CORE_H
#define CTXD_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "resp.h"
#include "server.h"

#define CTXD_REDIS_VERSION     "7.2.0"
#define CTXD_MAX_WRITE_RETRIES 32
/* Contexts one connection may WATCH: each new key is looked up among them
 * (a linear search) and kept (265 bytes) in memory no limit counts. */
#define CTXD_MAX_WATCHED 1024

typedef struct server_config {
	char *bind;
	int port;
	char *dir;
	ctx_durability durability;
	int loops;
	bool loops_merge;  /* loop 0 may run the other loops (net.c, HOSTING) */
	bool sync_inline;  /* durability always: a turn syncs its writes (net.c) */
	bool huge_pages;   /* ctx_use_huge_pages: off by default (main.c) */
	char *requirepass; /* NULL = none; under cfg_lock */
	_Atomic size_t maxclients;
	_Atomic long timeout; /* idle seconds, 0 = none    */
	_Atomic size_t proto_max_bulk_len;
	_Atomic size_t client_query_buffer_limit;
	_Atomic size_t obuf_hard, obuf_soft; /* bytes, 0 = no limit        */
	_Atomic long obuf_soft_seconds;
	_Atomic size_t maxmemory_clients; /* all clients' output, bytes; 0 = no limit */
	/* HSCAN versions held by unfinished scans (cmd_hash.c, hscan_tick) */
	_Atomic long scan_hold_seconds; /* released when idle this long      */
	_Atomic size_t scan_hold_bytes; /* past it, idle >= 1 s is released   */
	size_t max_args;                /* per command                */
	size_t max_inline;              /* inline request / header    */
	char loglevel;                  /* 'E' 'W' 'I' 'D'            */
} server_config;

typedef struct loop loop;

/* A held part of a client's output: bytes from `start` on wait for `rev`. */
typedef struct park_mark {
	uint64_t start; /* logical offset in the output (see client.out_base) */
	uint64_t rev;
	uint64_t replies_before; /* command replies before start (for -CTXIO) */
	size_t cost;             /* what its commits hold until durable (net.c) */
} park_mark;

typedef struct queued_cmd {
	const command *cmd;
	int argc;
	arg *argv; /* one allocation: the vector then the bytes */
} queued_cmd;

typedef struct watched_key {
	char id[CTX_ID_MAX + 1];
	uint64_t version; /* revision of its latest version at WATCH time; 0 = absent */
} watched_key;

typedef struct watch_poll watch_poll;

struct client {
	loop *lp;
	uv_tcp_t tcp;
	uint64_t id;
	char addr[64], laddr[64];
	int fd;
	client *next, *prev;   /* loop's list                      */
	client *rnext;         /* loop's ready list (net.c, on_read) */
	bool ready;            /* on the loop's ready list         */
	bool pending;          /* read input not yet run (ready list) */
	client *pnext, *pprev; /* loop's parked list               */
	bool parked;
	client *gnext, *gprev; /* srv registry (under reg_lock)    */
	/* input */
	char *in;
	size_t in_len, in_cap;
	resp_frame frame;
	resp_frame look; /* parsing ahead: a group of writes (net.c) */
	/* look holds the complete request at in + look_at, look_len bytes,
	 * parsed ahead and found not to join a group (0: nothing kept); valid
	 * only inside one process_input. */
	size_t look_at, look_len;
	/* output: out.p[out_head..out.len) not yet handed to the socket;
	 * logical offset of out.p[0] is out_base */
	rbuf out;
	size_t out_head;
	uint64_t out_base;
	size_t inflight; /* bytes in uv_write requests */
	park_mark *marks;
	size_t nmarks, capmarks;
	size_t parked_cost; /* the marks' costs: its input waits past PARK_PAUSE */
	bool park_paused;   /* its input waits for parked commits (net.c) */
	bool input_ended;   /* its stream ended with requests still to run (net.c) */
	uint64_t replies;   /* command replies completed */
	uint64_t soft_since_us;
	size_t out_counted; /* of its output, what srv.out_bytes counts (net.c) */
	/* the running command */
	uint64_t cmd_start; /* logical offset of its reply */
	uint64_t cmd_need;  /* revision its reply waits for */
	wbatch **wbs;       /* outside EXEC: the command's write batches */
	size_t nwbs, capwbs;
	wbatch *exec_wb;       /* inside EXEC: the transaction's batch */
	wbatch *new_fields_wb; /* client_reply_new_fields: reply after commit */
	bool in_exec;
	char exec_id[CTX_ID_MAX + 1];
	/* state */
	_Atomic int resp;
	bool authed;
	bool closing;           /* uv_close called                       */
	bool close_after_flush; /* QUIT, protocol error, shutdown        */
	bool blocked;           /* a server_run_blocking call is running */
	bool reading;
	_Atomic bool kill;
	int refs;   /* pending thread-pool work              */
	char *name; /* under reg_lock                        */
	char *lib_name, *lib_ver;
	uint64_t created_us;
	_Atomic uint64_t last_us;
	_Atomic(const char *) last_cmd;
	/* bytes its buffers hold (input, arguments, output, MULTI queue), as
	 * of its last read or its loop's last second: CLIENT LIST tot-mem */
	_Atomic size_t held;
	/* MULTI */
	bool in_multi, multi_error;
	queued_cmd *queue;
	size_t nqueue, capqueue, queue_bytes;
	watched_key *watched;
	size_t nwatched, capwatched;
	/* streams, sessions, trackers */
	ctx_session *session;
	ctx_tracker *tracker;
	ctx_watch *watch;
	watch_poll *wpoll;
	void (*on_event)(client *c, const ctx_event *e);
	hscan_state scan; /* an unfinished HSCAN (cmd_hash.c) */
};

struct loop {
	int idx;
	uv_loop_t uv;
	pthread_t thread;
	/* accepting (net.c, ACCEPT): the listening socket, polled; accept4 is
	 * ctxd's own so that a connection can go to another loop */
	uv_poll_t listener;
	int listen_fd;
	bool listening;
	bool accept_paused; /* out of descriptors: the timer polls again */
	/* connections this loop serves or is being handed (any thread reads
	 * it; changed under net.c's balance_lock, or down at a close) */
	_Atomic size_t assigned;
	/* descriptors accepted by another loop for this one, and the handle
	 * that tells this loop (under inbox_lock) */
	uv_async_t handoff;
	pthread_mutex_t inbox_lock;
	int *inbox;
	size_t ninbox, capinbox;
	uv_async_t async;
	uv_timer_t timer;
	uv_poll_t npoll;
	/* Clients whose reads of this poll phase wait for the check phase
	 * (net.c, on_ready_check), and the check handle that runs them. */
	uv_check_t rcheck;
	client *ready;
	ctx_notifier *notifier;
	uint64_t durable;
	uint64_t want; /* the revision the notifier waits for (net.c, parking) */
	bool io_failed;
	client *clients, *parked;
	size_t nclients;
	int pending_work;
	bool stopping;
	uint64_t stop_deadline_us;
	/* hosting (net.c): host_state under host_lock; gpoll and the window in
	 * loop 0 only (gpoll is loop 0's handle on this loop's epoll fd) */
	pthread_mutex_t host_lock;
	pthread_cond_t host_cv;
	int host_state; /* HOST_OWN, HOST_PARKING, HOST_HOSTED */
	uv_poll_t gpoll;
	bool gpoll_on;
	uv_timer_t ctl;
	/* this loop's thread's CPU clock (a clockid_t, negative on Linux:
	 * valid once cpu_clock_set) */
	_Atomic long cpu_clock;
	atomic_bool cpu_clock_set;
	uint64_t w_wall_ns, w_cpu_ns, w_cmds, w_reads;
	bool w_cpu_bound; /* unhosted for CPU: host again only well below it */
	int w_streak;     /* periods in a row that called for a change */
	/* the machine's load (loop 0, net.c's machine_load): the last
	 * counters, and the last LOAD_WINDOW periods' wall, other processes'
	 * CPU and idle CPU time (ns) */
	uint64_t m_busy_ticks, m_idle_ticks, m_self_ns, m_wall_ns;
	uint64_t m_win_wall[4], m_win_others[4], m_win_idle[4];
	unsigned m_win_at;
	int m_hold; /* periods left without hosting while still crowded */
	/* statistics, written by this loop only */
	_Atomic uint64_t st_commands, st_connections, st_rejected, st_net_in, st_net_out;
	_Atomic uint64_t st_reads;
};

typedef struct server {
	server_config cfg;
	pthread_mutex_t cfg_lock;
	ctx_store *store;
	loop *loops;
	int nloops;
	int listen_port; /* the port actually bound */
	_Atomic size_t nclients;
	_Atomic size_t out_bytes; /* every client's unsent output, to OUT_GRAIN (net.c) */
	_Atomic uint64_t next_client_id;
	_Atomic bool stopping;
	uint64_t start_us;
	pthread_mutex_t reg_lock;
	client *registry;
	/* the command table, sorted by name */
	const command **cmds;
	size_t ncmds;
	/* versions held by unfinished HSCANs (cmd_hash.c): how many, their
	 * key and value bytes, and how many were released before their scan
	 * ended (idle, over scan-hold-bytes, hash gone) */
	_Atomic size_t scan_held, scan_held_bytes;
	_Atomic uint64_t scan_released;
} server;

extern server srv;

/* alloc.c: the allocator (jemalloc when the build links it) */
void alloc_start(void);                  /* main, once, signals blocked */
const char *alloc_name(void);            /* "jemalloc-5.3.0" or "libc" */
void alloc_info(char *out, size_t size); /* INFO memory's jemalloc_* lines */

/* net.c */
int net_start(void); /* bind and start the loops; 0 or -1 */
/* The largest maxclients, up to want, that the open files limit allows
 * with the store's and loops' own descriptors (raising the soft limit
 * toward the hard one if needed). */
size_t net_fit_maxclients(size_t want);
/* At start: fit maxclients to the open files limit (a warning if lowered). */
void net_fit_open_files(void);
void net_stop(void);         /* graceful: returns once loops ended */
void bgsave_join(void);      /* waits for a BGSAVE running (cmd_conn.c) */
int net_loops_running(void); /* loops on their own thread (not hosted by loop 0) */
uint64_t now_us(void);
void client_close(client *c);
/* End what the connection has open: its watch, tracker and session, MULTI
 * and WATCHes (RESET, and closing). */
void client_drop_state(client *c);
void client_request_close(client *c); /* after the output is flushed */
void client_set_resp(client *c, int proto);
uint64_t client_durable(client *c);
/* What a CLIENT LIST line shows of a client: copied under reg_lock
 * (client_info_take), formatted after it (client_info_format, which frees
 * the copies). */
typedef struct client_info {
	uint64_t id, created_us, last_us;
	size_t held;     /* client.held */
	const char *cmd; /* the last command's name (the command table's) */
	int fd, resp;
	char addr[64], laddr[64];
	char *name, *lib_name, *lib_ver; /* copies, or NULL */
} client_info;
void client_info_take(const client *c, client_info *ci); /* caller holds reg_lock */
void client_info_format(client_info *ci, uint64_t now, rbuf *b);
size_t client_kill_matching(uint64_t id, const char *addr, bool skip_self, client *self);
/* Run the command (after the MULTI check) with write retries. */
void exec_command(client *c, const command *cmd, int argc, const arg *argv);
/* After attempt `attempt` (from 0) of a command or EXEC failed to commit with
 * st: true = run it again (a conflict, with retries left); false = the error
 * is replied (CTXCONFLICT "gave up after N attempts", or st's). */
bool commit_retry(client *c, ctx_status st, int attempt);
/* Internal reply access for EXEC. */
size_t reply_mark(client *c);
void reply_truncate(client *c, size_t mark);
const char *reply_at(client *c, size_t mark, size_t *n);
void reply_raw(client *c, const void *p, size_t n);

/* multi.c */
extern const command multi_commands[];
bool multi_intercept(client *c, const command *cmd, int argc, const arg *argv);
void multi_reset(client *c); /* DISCARD + UNWATCH (connection close, RESET) */
void wbatch_free(wbatch *w);
/* Commit a batch; *rev gets the commit's revision (0 if nothing to do). */
ctx_status wbatch_commit(wbatch *w, uint64_t *rev);
bool wbatch_dirty(const wbatch *w);
wbatch *wbatch_new(const char *id, ctx_status *st);
/* Free the calling thread's kept batch (wbatch_free keeps one per thread for
 * the next wbatch_new): at the end of a loop thread. */
void wbatch_spare_free(void);
const char *wbatch_id(const wbatch *w);
/* Fields put by the batch that its base lacks (HSET's reply). */
size_t wbatch_new_fields(const wbatch *w);

/* cmd_conn.c */
void commands_init(void);
/* A memory size as redis.conf writes it, for the configuration file and
 * CONFIG SET: digits and an optional unit k, kb, m, mb, g, gb (any case;
 * k = 1000, kb = 1024, ...). */
bool parse_mem_size(const char *s, size_t *out);
/* client-output-buffer-limit's value: "CLASS HARD SOFT SECONDS" groups,
 * CLASS normal, replica (slave) or pubsub; only normal's are stored in
 * *hard, *soft, *secs (left as they are without one), the others checked
 * and ignored. */
bool parse_obuf_limit(const char *s, size_t *hard, size_t *soft, long *secs);
bool auth_check(const arg *user, const arg *pass); /* constant time */
bool auth_required(void);

/* main.c */
void log_set_level(char level);

/* fuzzhook.c: only in the fuzz build (CTXD_FUZZHOOK; tests/fuzz/fuzz_dispatch.c),
 * where it replaces main.c and the sockets of net.c: connections fed and
 * read in memory, on one loop run by the caller's thread. See its head. */
typedef struct fuzzhook_conn {
	client *c;           /* NULL once the server closed the connection       */
	rbuf out;            /* every byte the server wrote to it                */
	size_t write_window; /* a write takes at most this many bytes        */
	uint64_t replies;    /* once closed: command replies it was sent        */
	uint64_t pushes;     /* push messages (CTX.WATCH events) it was sent    */
	bool unsent;         /* closed with output never written (dropped)      */
} fuzzhook_conn;
/* Configure the server with the defaults (and requirepass) on store; the
 * first call builds the command table (without SHUTDOWN) and the loop. */
void fuzzhook_setup(ctx_store *store, const char *requirepass);
void fuzzhook_connect(fuzzhook_conn *fc); /* a client, as if accepted    */
/* Hand the client up to n bytes as one read; returns how many it took (0
 * while it is not reading: blocked, closing, closed). */
size_t fuzzhook_read(fuzzhook_conn *fc, const void *p, size_t n);
bool fuzzhook_eof(fuzzhook_conn *fc); /* the peer closed; false: not reading */
/* Complete queued writes and thread-pool work, run the loop, until quiet. */
void fuzzhook_pump(void);
void fuzzhook_forget(fuzzhook_conn *fc); /* after it is closed: free its output */

#endif
