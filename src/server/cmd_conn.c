/*
 * cmd_conn.c - connection and server commands (PING, ECHO, HELLO, AUTH, QUIT,
 * RESET, SELECT, CLIENT, INFO, CONFIG, COMMAND, DBSIZE, TIME, SHUTDOWN) and
 * the command table that merges every command file's rows.
 *
 * The table is built once at start: all rows sorted by name; lookups
 * upper-case the name into a small buffer and bisect. A name defined twice
 * keeps the row of the earlier table (conn, multi, hash, keys, ctx).
 */
#include "cmd_common.h"
#include "core.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- authentication ---------------------------------------------------------------- */

bool auth_required(void)
{
	pthread_mutex_lock(&srv.cfg_lock);
	bool r = srv.cfg.requirepass && srv.cfg.requirepass[0];
	pthread_mutex_unlock(&srv.cfg_lock);
	return r;
}

bool auth_check(const arg *user, const arg *pass)
{
	if (user && !arg_is(user, "default"))
		return false;
	pthread_mutex_lock(&srv.cfg_lock);
	const char *pw = srv.cfg.requirepass ? srv.cfg.requirepass : "";
	size_t n = strlen(pw);
	bool ok;
	if (!n) {
		ok = true;
	} else {
		unsigned char diff = (unsigned char)(pass->n != n);
		for (size_t i = 0; i < pass->n; i++)
			diff |= (unsigned char)(pass->p[i] ^ pw[i % n]);
		ok = diff == 0;
	}
	pthread_mutex_unlock(&srv.cfg_lock);
	return ok;
}

static void reply_wrongpass(client *c)
{
	reply_error(c, "WRONGPASS invalid username-password pair or user is disabled.");
}

/* ---- connection -------------------------------------------------------------------- */

static void cmd_ping(client *c, int argc, const arg *argv)
{
	if (argc > 2) {
		reply_error(c, "ERR wrong number of arguments for 'ping' command");
		return;
	}
	if (c->watch && client_resp(c) == 2) {
		reply_array(c, 2);
		reply_cstr(c, "pong");
		if (argc == 2)
			reply_bulk(c, argv[1].p, argv[1].n);
		else
			reply_cstr(c, "");
		return;
	}
	if (argc == 2)
		reply_bulk(c, argv[1].p, argv[1].n);
	else
		reply_simple(c, "PONG");
}

static void cmd_echo(client *c, int argc, const arg *argv)
{
	reply_bulk(c, argv[1].p, argv[1].n);
}

static void cmd_auth(client *c, int argc, const arg *argv)
{
	if (argc > 3) {
		reply_error(c, "ERR syntax error");
		return;
	}
	if (argc == 2 && !auth_required()) {
		reply_error(c, "ERR AUTH <password> called without any password configured for the "
		               "default user. Are you sure your configuration is correct?");
		return;
	}
	if (!auth_check(argc == 3 ? &argv[1] : NULL, &argv[argc - 1])) {
		reply_wrongpass(c);
		return;
	}
	c->authed = true;
	reply_ok(c);
}

static bool valid_name(client *c, const arg *a)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->p[i] < '!' || a->p[i] > '~') {
			reply_error(c, "ERR Client names cannot contain spaces, newlines or "
			               "special characters.");
			return false;
		}
	return true;
}

static void set_str(char **slot, const arg *a)
{
	char *s = NULL;
	if (a && a->n) {
		s = xmalloc(a->n + 1);
		memcpy(s, a->p, a->n);
		s[a->n] = '\0';
	}
	pthread_mutex_lock(&srv.reg_lock);
	char *old = *slot;
	*slot = s;
	pthread_mutex_unlock(&srv.reg_lock);
	free(old);
}

static void cmd_hello(client *c, int argc, const arg *argv)
{
	long long proto = client_resp(c);
	int i = 1;
	const arg *user = NULL, *pass = NULL, *name = NULL;
	if (argc >= 2) {
		long long v;
		char tmp[24];
		size_t n = argv[1].n < sizeof(tmp) - 1 ? argv[1].n : sizeof(tmp) - 1;
		memcpy(tmp, argv[1].p, n);
		tmp[n] = '\0';
		char *end;
		v = strtoll(tmp, &end, 10);
		if (n == 0 || *end || argv[1].n != n) {
			reply_error(c, "ERR Protocol version is not an integer or out of range");
			return;
		}
		if (v < 2 || v > 3) {
			reply_error(c, "NOPROTO unsupported protocol version");
			return;
		}
		proto = v;
		i = 2;
	}
	for (; i < argc; i++) {
		if (arg_is(&argv[i], "AUTH") && i + 2 < argc) {
			user = &argv[i + 1];
			pass = &argv[i + 2];
			i += 2;
		} else if (arg_is(&argv[i], "SETNAME") && i + 1 < argc) {
			name = &argv[i + 1];
			i += 1;
		} else {
			reply_error(c, "ERR Syntax error in HELLO option '%.*s'",
			            (int)(argv[i].n > 64 ? 64 : argv[i].n), argv[i].p);
			return;
		}
	}
	if (pass) {
		if (!auth_check(user, pass)) {
			reply_wrongpass(c);
			return;
		}
		c->authed = true;
	}
	if (!c->authed) {
		reply_error(
		    c,
		    "NOAUTH HELLO must be called with the client already authenticated, otherwise "
		    "the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the "
		    "client and select the RESP protocol version at the same time");
		return;
	}
	if (name && !valid_name(c, name))
		return;
	if (name)
		set_str(&c->name, name);
	client_set_resp(c, (int)proto);
	reply_map(c, 7);
	reply_cstr(c, "server");
	reply_cstr(c, "ctxd");
	reply_cstr(c, "version");
	reply_cstr(c, CTXD_REDIS_VERSION);
	reply_cstr(c, "proto");
	reply_int(c, proto);
	reply_cstr(c, "id");
	reply_int(c, (long long)c->id);
	reply_cstr(c, "mode");
	reply_cstr(c, "standalone");
	reply_cstr(c, "role");
	reply_cstr(c, "master");
	reply_cstr(c, "modules");
	reply_array(c, 0);
}

static void cmd_quit(client *c, int argc, const arg *argv)
{
	reply_ok(c);
	client_request_close(c);
}

static void cmd_reset(client *c, int argc, const arg *argv)
{
	client_drop_state(c);
	set_str(&c->name, NULL);
	client_set_resp(c, 2);
	c->authed = !auth_required();
	reply_simple(c, "RESET");
}

static void cmd_select(client *c, int argc, const arg *argv)
{
	long long db;
	if (!arg_to_ll(c, &argv[1], &db))
		return;
	if (db != 0) {
		reply_error(c, "ERR DB index is out of range");
		return;
	}
	reply_ok(c);
}

/* ---- CLIENT ------------------------------------------------------------------------ */

/* CLIENT LIST's filters, as Redis's: [TYPE type] [ID id [id ...]]. Every
 * client of ctxd is of type normal (the lines say flags=N). false: an
 * error was replied. */
static bool client_list_filter(client *c, int argc, const arg *argv, bool *none, uint64_t **ids,
                               size_t *nids)
{
	for (int i = 2; i < argc; i++) {
		if (arg_is(&argv[i], "TYPE") && i + 1 < argc) {
			const arg *t = &argv[++i];
			if (arg_is(t, "pubsub") || arg_is(t, "master") || arg_is(t, "replica") ||
			    arg_is(t, "slave")) {
				*none = true;
			} else if (!arg_is(t, "normal")) {
				reply_error(c, "ERR Unknown client type '%.*s'",
				            (int)(t->n > 64 ? 64 : t->n), t->p);
				return false;
			}
		} else if (arg_is(&argv[i], "ID") && i + 1 < argc) {
			*ids = xrealloc(*ids, (size_t)(argc - i) * sizeof(**ids));
			for (i++; i < argc; i++) {
				uint64_t id;
				if (!parse_u64(argv[i].p, argv[i].n, &id) || id == 0) {
					reply_error(c, "ERR Invalid client ID");
					return false;
				}
				(*ids)[(*nids)++] = id;
			}
		} else {
			reply_error(c, "ERR syntax error");
			return false;
		}
	}
	return true;
}

static bool id_listed(uint64_t id, const uint64_t *ids, size_t nids)
{
	for (size_t i = 0; i < nids; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static void client_list(client *c, int argc, const arg *argv, bool only_self)
{
	bool none = false;
	uint64_t *ids = NULL;
	size_t nids = 0;
	if (!only_self && !client_list_filter(c, argc, argv, &none, &ids, &nids)) {
		free(ids);
		return;
	}
	/* Copy under reg_lock, format after it (net.c, client_info_take). */
	size_t n = 0, cap = only_self ? 1 : atomic_load(&srv.nclients) + 16;
	client_info *infos = xmalloc(cap * sizeof(*infos));
	pthread_mutex_lock(&srv.reg_lock);
	if (only_self) {
		client_info_take(c, &infos[n++]);
	} else {
		for (client *o = srv.registry; o && !none; o = o->gnext) {
			if (nids && !id_listed(o->id, ids, nids))
				continue;
			if (n == cap)
				infos = xrealloc(infos, (cap *= 2) * sizeof(*infos));
			client_info_take(o, &infos[n++]);
		}
	}
	pthread_mutex_unlock(&srv.reg_lock);
	free(ids);
	rbuf b = {0};
	uint64_t now = now_us();
	for (size_t i = 0; i < n; i++)
		client_info_format(&infos[i], now, &b);
	free(infos);
	reply_verbatim(c, b.p ? b.p : "", b.len);
	rbuf_free(&b);
}

static void client_kill(client *c, int argc, const arg *argv)
{
	char addr[128];
	if (argc == 3) {
		snprintf(addr, sizeof(addr), "%.*s", (int)(argv[2].n > 100 ? 100 : argv[2].n),
		         argv[2].p);
		bool self = strcmp(addr, c->addr) == 0;
		size_t n = client_kill_matching(0, addr, true, c);
		if (self)
			client_request_close(c);
		if (n == 0 && !self)
			reply_error(c, "ERR No such client");
		else
			reply_ok(c);
		return;
	}
	uint64_t id = 0;
	bool have_addr = false, skipme = true;
	for (int i = 2; i < argc; i += 2) {
		if (i + 1 >= argc) {
			reply_error(c, "ERR syntax error");
			return;
		}
		if (arg_is(&argv[i], "ID")) {
			if (!arg_to_u64(c, &argv[i + 1], &id))
				return;
		} else if (arg_is(&argv[i], "ADDR")) {
			snprintf(addr, sizeof(addr), "%.*s",
			         (int)(argv[i + 1].n > 100 ? 100 : argv[i + 1].n), argv[i + 1].p);
			have_addr = true;
		} else if (arg_is(&argv[i], "SKIPME")) {
			skipme = arg_is(&argv[i + 1], "yes");
		} else {
			reply_error(c, "ERR syntax error");
			return;
		}
	}
	size_t n = client_kill_matching(id, have_addr ? addr : NULL, true, c);
	bool self = !skipme && (!id || id == c->id) && (!have_addr || strcmp(addr, c->addr) == 0);
	if (self) {
		client_request_close(c);
		n++;
	}
	reply_int(c, (long long)n);
}

static void cmd_client(client *c, int argc, const arg *argv)
{
	const arg *sub = &argv[1];
	if (arg_is(sub, "SETNAME") && argc == 3) {
		if (valid_name(c, &argv[2])) {
			set_str(&c->name, &argv[2]);
			reply_ok(c);
		}
	} else if (arg_is(sub, "GETNAME") && argc == 2) {
		pthread_mutex_lock(&srv.reg_lock);
		char *n = c->name ? xstrdup(c->name) : NULL;
		pthread_mutex_unlock(&srv.reg_lock);
		if (n)
			reply_cstr(c, n);
		else
			reply_null(c);
		free(n);
	} else if (arg_is(sub, "ID") && argc == 2) {
		reply_int(c, (long long)c->id);
	} else if (arg_is(sub, "INFO") && argc == 2) {
		client_list(c, argc, argv, true);
	} else if (arg_is(sub, "LIST")) {
		client_list(c, argc, argv, false);
	} else if (arg_is(sub, "SETINFO") && argc == 4) {
		if (arg_is(&argv[2], "LIB-NAME") && valid_name(c, &argv[3])) {
			set_str(&c->lib_name, &argv[3]);
			reply_ok(c);
		} else if (arg_is(&argv[2], "LIB-VER") && valid_name(c, &argv[3])) {
			set_str(&c->lib_ver, &argv[3]);
			reply_ok(c);
		} else if (!arg_is(&argv[2], "LIB-NAME") && !arg_is(&argv[2], "LIB-VER")) {
			reply_error(c, "ERR Unrecognized option '%.*s'",
			            (int)(argv[2].n > 64 ? 64 : argv[2].n), argv[2].p);
		}
	} else if (arg_is(sub, "KILL") && argc >= 3) {
		client_kill(c, argc, argv);
	} else if ((arg_is(sub, "NO-EVICT") || arg_is(sub, "NO-TOUCH")) && argc == 3) {
		/* Accepted and ignored (no eviction, no LRU clock here), but
		 * checked as Redis checks them: on or off. */
		if (arg_is(&argv[2], "on") || arg_is(&argv[2], "off"))
			reply_ok(c);
		else
			reply_error(c, "ERR syntax error");
	} else {
		reply_unknown_subcommand(c, "CLIENT", sub);
	}
}

/* ---- checkpoints asked for: SAVE, BGSAVE, LASTSAVE (state; the commands below) ---- */

/* Redis's snapshot commands write a checkpoint (ctx_checkpoint): the store
 * is already durable by its log, so a checkpoint is what SAVE's snapshot
 * buys here, a compact starting point for the next open with the log it
 * covers deleted. A store without a data directory (durability none) has
 * nothing to write them to: they are refused.
 *
 * BGSAVE runs on a thread of its own, started for it and joined by the next
 * BGSAVE or by bgsave_join at the stop (before the store closes). */
static struct {
	pthread_mutex_t lock;
	pthread_t thread;
	bool joinable;     /* thread started and not yet joined */
	bool running;      /* its checkpoint is being written */
	bool scheduled;    /* BGSAVE SCHEDULE asked for one more after it */
	bool failed;       /* the last BGSAVE's checkpoint failed */
	uint64_t saved_us; /* the last SAVE or BGSAVE that succeeded (0: none) */
} bg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool save_refused(client *c)
{
	if (srv.cfg.durability != CTX_DURABILITY_NONE)
		return false;
	reply_error(c, "ERR ctxd runs with durability none: the store is in memory only and has "
	               "no data directory to save to");
	return true;
}

static void saved_now(void)
{
	uint64_t t = now_us();
	pthread_mutex_lock(&bg.lock);
	if (t > bg.saved_us)
		bg.saved_us = t;
	pthread_mutex_unlock(&bg.lock);
}

/* LASTSAVE's time, in seconds since 1970: the newest of the newest
 * checkpoint file's modification time (the library's own checkpoints
 * count), the last SAVE or BGSAVE, and the server's start (when the store
 * was loaded: Redis answers that before its first save). */
static uint64_t last_save_s(void)
{
	uint64_t t = srv.start_us / 1000000u;
	ctx_stats st;
	ctx_get_stats(srv.store, &st);
	char path[4096];
	struct stat sb;
	if (srv.cfg.durability != CTX_DURABILITY_NONE && st.checkpoint_revision &&
	    (size_t)snprintf(path, sizeof(path), "%s/ckpt-%016llx.ckpt", srv.cfg.dir,
	                     (unsigned long long)st.checkpoint_revision) < sizeof(path) &&
	    stat(path, &sb) == 0 && sb.st_mtime > 0 && (uint64_t)sb.st_mtime > t)
		t = (uint64_t)sb.st_mtime;
	pthread_mutex_lock(&bg.lock);
	if (bg.saved_us / 1000000u > t)
		t = bg.saved_us / 1000000u;
	pthread_mutex_unlock(&bg.lock);
	return t;
}

/* ---- INFO -------------------------------------------------------------------------- */

static uint64_t loop_sum(size_t field_offset)
{
	uint64_t s = 0;
	for (int i = 0; i < srv.nloops; i++) {
		_Atomic uint64_t *f = (_Atomic uint64_t *)((char *)&srv.loops[i] + field_offset);
		s += atomic_load_explicit(f, memory_order_relaxed);
	}
	return s;
}
#define LOOP_SUM(f) loop_sum(offsetof(loop, f))

static size_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, rss = 0;
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

static bool want(const char *section, int argc, const arg *argv, bool in_default)
{
	if (argc < 2)
		return in_default;
	for (int i = 1; i < argc; i++)
		if (arg_is(&argv[i], section) || arg_is(&argv[i], "all") ||
		    arg_is(&argv[i], "everything") || (in_default && arg_is(&argv[i], "default")))
			return true;
	return false;
}

static void addf(rbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void addf(rbuf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		rbuf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static const char *durability_name(ctx_durability d)
{
	return d == CTX_DURABILITY_ALWAYS ? "always" : d == CTX_DURABILITY_BATCH ? "batch" : "none";
}

/* The text without its last blank line, as a verbatim string in RESP3. */
static void info_reply(client *c, rbuf *b)
{
	while (b->len >= 3 && b->p[b->len - 1] == '\n' && b->p[b->len - 3] == '\n')
		b->len -= 2;
	reply_verbatim(c, b->p ? b->p : "", b->len);
}

/* The keyspace section counts what DBSIZE counts (ctx_count_with_fields:
 * contexts with fields, none past its time-to-live), on the thread pool as
 * DBSIZE (a walk of the context table once a ttl was ever set). */
typedef struct info_job {
	rbuf b; /* the sections before it */
	size_t keys;
	uint64_t rev;
} info_job;

static void info_keys_run(void *p)
{
	info_job *j = p;
	j->keys = ctx_count_with_fields(srv.store, &j->rev);
}

static void info_keys_done(client *c, void *p)
{
	info_job *j = p;
	if (c) {
		addf(&j->b, "# Keyspace\r\n");
		if (j->keys)
			addf(&j->b, "db0:keys=%zu,expires=0,avg_ttl=0\r\n", j->keys);
		info_reply(c, &j->b);
		client_need_durable(c, j->rev);
	}
	rbuf_free(&j->b);
	free(j);
}

static void cmd_info(client *c, int argc, const arg *argv)
{
	rbuf b = {0};
	uint64_t now = now_us();
	if (want("server", argc, argv, true)) {
		addf(&b,
		     "# Server\r\nredis_version:%s\r\nctx_version:%s\r\nredis_mode:standalone\r\n"
		     "os:Linux\r\narch_bits:%d\r\nmultiplexing_api:epoll\r\nprocess_id:%ld\r\n"
		     "tcp_port:%d\r\nuptime_in_seconds:%llu\r\nuptime_in_days:%llu\r\n"
		     "executable:ctxd\r\nloops:%d\r\nloops_running:%d\r\ndurability:%s\r\n\r\n",
		     CTXD_REDIS_VERSION, CTX_VERSION_STRING, (int)(sizeof(void *) * 8),
		     (long)getpid(), srv.listen_port,
		     (unsigned long long)((now - srv.start_us) / 1000000u),
		     (unsigned long long)((now - srv.start_us) / 86400000000ull), srv.nloops,
		     net_loops_running(), durability_name(srv.cfg.durability));
	}
	if (want("clients", argc, argv, true)) {
		addf(&b,
		     "# "
		     "Clients\r\nconnected_clients:%zu\r\nmaxclients:%zu\r\nblocked_clients:"
		     "0\r\nloop_clients:",
		     atomic_load(&srv.nclients), atomic_load(&srv.cfg.maxclients));
		/* Each loop's count, however many loops (a 256-byte line held
		 * about 116 of the 1024 --loops allows: round 15) */
		for (int i = 0; i < srv.nloops; i++)
			addf(&b, "%s%zu", i ? "," : "", atomic_load(&srv.loops[i].assigned));
		addf(&b, "\r\n\r\n");
	}
	if (want("memory", argc, argv, true)) {
		size_t rss = rss_bytes();
		char jemalloc[160];
		alloc_info(jemalloc, sizeof(jemalloc));
		addf(&b,
		     "# Memory\r\nused_memory:%zu\r\nused_memory_rss:%zu\r\nmaxmemory:0\r\n"
		     "maxmemory_policy:noeviction\r\nmem_allocator:%s\r\n"
		     "scan_versions_held:%zu\r\nscan_versions_held_bytes:%zu\r\n"
		     "mem_clients_normal:%zu\r\nmaxmemory_clients:%zu\r\n%s\r\n",
		     rss, rss, alloc_name(), atomic_load(&srv.scan_held),
		     atomic_load(&srv.scan_held_bytes), atomic_load(&srv.out_bytes),
		     atomic_load(&srv.cfg.maxmemory_clients), jemalloc);
	}
	if (want("persistence", argc, argv, true)) {
		ctx_stats st;
		ctx_get_stats(srv.store, &st);
		uint64_t durable = 0;
		ctx_status ds = ctx_durable_revision(srv.store, &durable);
		pthread_mutex_lock(&bg.lock);
		bool bg_running = bg.running, bg_failed = bg.failed;
		pthread_mutex_unlock(&bg.lock);
		addf(&b,
		     "# "
		     "Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:"
		     "0\r\n"
		     "rdb_bgsave_in_progress:%d\r\nrdb_last_save_time:%llu\r\n"
		     "rdb_last_bgsave_status:%s\r\naof_enabled:%d\r\n"
		     "aof_rewrite_in_progress:0\r\naof_last_write_status:%s\r\nrevision:%llu\r\n"
		     "durable_revision:%llu\r\nlog_syncs:%llu\r\nlog_led_syncs:%llu\r\n"
		     "checkpoints:%llu\r\ncheckpoint_revision:%llu\r\nlog_failed:%d\r\n\r\n",
		     bg_running, (unsigned long long)last_save_s(), bg_failed ? "err" : "ok",
		     srv.cfg.durability != CTX_DURABILITY_NONE, ds == CTX_OK ? "ok" : "err",
		     (unsigned long long)st.revision, (unsigned long long)durable,
		     (unsigned long long)st.log_syncs, (unsigned long long)st.log_led_syncs,
		     (unsigned long long)st.checkpoints, (unsigned long long)st.checkpoint_revision,
		     ds != CTX_OK);
	}
	if (want("stats", argc, argv, true))
		addf(&b,
		     "# "
		     "Stats\r\ntotal_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
		     "total_net_input_bytes:%llu\r\ntotal_net_output_bytes:%llu\r\n"
		     "rejected_connections:%llu\r\nscan_versions_released:%llu\r\n\r\n",
		     (unsigned long long)LOOP_SUM(st_connections),
		     (unsigned long long)LOOP_SUM(st_commands),
		     (unsigned long long)LOOP_SUM(st_net_in),
		     (unsigned long long)LOOP_SUM(st_net_out),
		     (unsigned long long)LOOP_SUM(st_rejected),
		     (unsigned long long)atomic_load(&srv.scan_released));
	if (want("replication", argc, argv, true))
		addf(&b, "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
	if (!want("keyspace", argc, argv, true)) {
		info_reply(c, &b);
		rbuf_free(&b);
		return;
	}
	info_job *j = calloc(1, sizeof(*j));
	if (!j) {
		rbuf_free(&b);
		reply_ctx_error(c, CTX_NOMEM);
		return;
	}
	j->b = b;
	server_run_blocking(c, info_keys_run, info_keys_done, j);
}

/* ---- CONFIG ------------------------------------------------------------------------ */

bool parse_mem_size(const char *s, size_t *out)
{
	/* Digits first: strtoull skips blanks and takes a sign, so " -1" was
	 * 2^64 - 1 (a wrap) */
	if (s[0] < '0' || s[0] > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno)
		return false;
	unsigned long long mul = 1;
	if (!strcasecmp(end, "k"))
		mul = 1000;
	else if (!strcasecmp(end, "kb"))
		mul = 1024;
	else if (!strcasecmp(end, "m"))
		mul = 1000000;
	else if (!strcasecmp(end, "mb"))
		mul = 1024 * 1024;
	else if (!strcasecmp(end, "g"))
		mul = 1000000000;
	else if (!strcasecmp(end, "gb"))
		mul = 1024ull * 1024 * 1024;
	else if (*end)
		return false;
	if (v > SIZE_MAX / mul) /* refused, not wrapped (to 0: no limit) */
		return false;
	*out = (size_t)(v * mul);
	return true;
}

/* The next blank-separated word of *s into w (at most 31 bytes), past it;
 * false if there is none or it is longer (never cut in two). */
static bool next_word(const char **s, char w[32])
{
	const char *p = *s + strspn(*s, " \t\r\n");
	size_t n = strcspn(p, " \t\r\n");
	if (n == 0 || n >= 32)
		return false;
	memcpy(w, p, n);
	w[n] = '\0';
	*s = p + n;
	return true;
}

bool parse_obuf_limit(const char *s, size_t *hard, size_t *soft, long *secs)
{
	/* Redis's shape: one or more "CLASS HARD SOFT SECONDS" groups.
	 * ctxd has no replicas and no pub/sub: their groups are checked and
	 * ignored, so that a value written for Redis is taken whole. */
	char cls[32], h[32], so[32], se[32];
	size_t nh, nso;
	long nse;
	int groups = 0;
	for (;;) {
		s += strspn(s, " \t\r\n");
		if (!*s)
			break;
		if (!next_word(&s, cls) || !next_word(&s, h) || !next_word(&s, so) ||
		    !next_word(&s, se))
			return false; /* fewer than four words, or one too long */
		char *end;
		errno = 0;
		nse = strtol(se, &end, 10);
		if (se[0] < '0' || se[0] > '9' || *end || errno || !parse_mem_size(h, &nh) ||
		    !parse_mem_size(so, &nso))
			return false;
		if (!strcasecmp(cls, "normal")) {
			*hard = nh;
			*soft = nso;
			*secs = nse;
		} else if (strcasecmp(cls, "replica") && strcasecmp(cls, "slave") &&
		           strcasecmp(cls, "pubsub")) {
			return false;
		}
		groups++;
	}
	return groups > 0;
}

/* A memory size in a CONFIG SET argument (at most 31 bytes). */
static bool arg_mem_size(const arg *a, size_t *out)
{
	char tmp[32];
	if (a->n == 0 || a->n >= sizeof(tmp) || memchr(a->p, '\0', a->n))
		return false;
	memcpy(tmp, a->p, a->n);
	tmp[a->n] = '\0';
	return parse_mem_size(tmp, out);
}

/* All configuration parameters and their current values (malloc'd). */
static size_t config_values(char names[][40], char **values, size_t cap)
{
	size_t n = 0;
#define PUT(nm, ...)                                                                               \
	do {                                                                                       \
		if (n < cap) {                                                                     \
			snprintf(names[n], 40, "%s", nm);                                          \
			char t[256];                                                               \
			snprintf(t, sizeof(t), __VA_ARGS__);                                       \
			values[n++] = xstrdup(t);                                                  \
		}                                                                                  \
	} while (0)
	PUT("bind", "%s", srv.cfg.bind);
	PUT("port", "%d", srv.listen_port);
	PUT("dir", "%s", srv.cfg.dir);
	PUT("durability", "%s", durability_name(srv.cfg.durability));
	PUT("loops", "%d", srv.nloops);
	PUT("loops-merge", "%s", srv.cfg.loops_merge ? "yes" : "no");
	PUT("sync-inline", "%s", srv.cfg.sync_inline ? "yes" : "no");
	PUT("huge-pages", "%s", srv.cfg.huge_pages ? "yes" : "no");
	pthread_mutex_lock(&srv.cfg_lock);
	PUT("requirepass", "%s", srv.cfg.requirepass ? srv.cfg.requirepass : "");
	pthread_mutex_unlock(&srv.cfg_lock);
	PUT("maxclients", "%zu", atomic_load(&srv.cfg.maxclients));
	PUT("timeout", "%ld", atomic_load(&srv.cfg.timeout));
	PUT("scan-hold-seconds", "%ld", atomic_load(&srv.cfg.scan_hold_seconds));
	PUT("scan-hold-bytes", "%zu", atomic_load(&srv.cfg.scan_hold_bytes));
	PUT("maxmemory-clients", "%zu", atomic_load(&srv.cfg.maxmemory_clients));
	PUT("proto-max-bulk-len", "%zu", atomic_load(&srv.cfg.proto_max_bulk_len));
	PUT("client-query-buffer-limit", "%zu", atomic_load(&srv.cfg.client_query_buffer_limit));
	PUT("client-output-buffer-limit", "normal %zu %zu %ld", atomic_load(&srv.cfg.obuf_hard),
	    atomic_load(&srv.cfg.obuf_soft), atomic_load(&srv.cfg.obuf_soft_seconds));
	PUT("save", "%s", "");
	PUT("appendonly", "%s", srv.cfg.durability == CTX_DURABILITY_NONE ? "no" : "yes");
	PUT("appendfsync", "%s",
	    srv.cfg.durability == CTX_DURABILITY_ALWAYS  ? "always"
	    : srv.cfg.durability == CTX_DURABILITY_BATCH ? "everysec"
	                                                 : "no");
	PUT("maxmemory", "%s", "0");
	PUT("maxmemory-policy", "%s", "noeviction");
	PUT("databases", "%s", "1");
#undef PUT
	return n;
}

static void config_get(client *c, int argc, const arg *argv)
{
	char names[32][40];
	char *values[32];
	size_t n = config_values(names, values, 32);
	bool hit[32] = {false};
	size_t count = 0;
	for (int i = 2; i < argc; i++) {
		/* Redis's stringmatchlen without case (round 12; fnmatch had no
		 * reversed ranges and took '!' for '^') */
		for (size_t k = 0; k < n; k++)
			if (!hit[k] &&
			    glob_match(argv[i].p, argv[i].n, names[k], strlen(names[k]), true)) {
				hit[k] = true;
				count++;
			}
	}
	reply_map(c, count);
	for (size_t k = 0; k < n; k++) {
		if (hit[k]) {
			reply_cstr(c, names[k]);
			reply_cstr(c, values[k]);
		}
		free(values[k]);
	}
}

static void config_set(client *c, int argc, const arg *argv)
{
	if (argc < 4 || (argc - 2) % 2) {
		reply_error(c, "ERR wrong number of arguments for 'config|set' command");
		return;
	}
	/* check everything first, then apply: all or nothing */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 2; i < argc; i += 2) {
			const arg *nm = &argv[i], *v = &argv[i + 1];
			size_t m = 0;
			long long ll = 0;
			if (arg_is(nm, "timeout") || arg_is(nm, "maxclients") ||
			    arg_is(nm, "scan-hold-seconds")) {
				char t[24];
				snprintf(t, sizeof(t), "%.*s", (int)(v->n > 20 ? 20 : v->n), v->p);
				char *end;
				errno = 0;
				ll = strtoll(t, &end, 10);
				/* timeout: at most 2^40 s, as on the command line (its
				 * microseconds must fit 64 bits); a value longer than
				 * t holds, or out of range, is no number */
				if (!v->n || v->n > 20 || memchr(v->p, '\0', v->n) || t[0] < '0' ||
				    t[0] > '9' || *end || errno || ll < 0 ||
				    (arg_is(nm, "maxclients") && ll < 1) ||
				    (!arg_is(nm, "maxclients") && ll > (1LL << 40))) {
					reply_error(
					    c, "ERR Invalid argument '%s' for CONFIG SET '%.*s'", t,
					    (int)nm->n, nm->p);
					return;
				}
				size_t fit;
				if (!pass && arg_is(nm, "maxclients") &&
				    (fit = net_fit_maxclients((size_t)ll)) < (size_t)ll) {
					reply_error(
					    c,
					    "ERR CONFIG SET failed (possibly related to argument "
					    "'maxclients') - The operating system is not able to "
					    "handle the specified number of clients, try with %zu",
					    fit);
					return;
				}
				if (pass && arg_is(nm, "timeout"))
					atomic_store(&srv.cfg.timeout, (long)ll);
				else if (pass && arg_is(nm, "scan-hold-seconds"))
					atomic_store(&srv.cfg.scan_hold_seconds, (long)ll);
				else if (pass)
					atomic_store(&srv.cfg.maxclients, (size_t)ll);
			} else if (arg_is(nm, "scan-hold-bytes")) {
				if (!arg_mem_size(v, &m)) {
					reply_error(c, "ERR Invalid argument for CONFIG SET '%.*s'",
					            (int)nm->n, nm->p);
					return;
				}
				if (pass)
					atomic_store(&srv.cfg.scan_hold_bytes, m);
			} else if (arg_is(nm, "maxmemory-clients")) {
				if (!arg_mem_size(v, &m) || (m != 0 && m < (1u << 20))) {
					reply_error(c, "ERR Invalid argument for CONFIG SET "
					               "'maxmemory-clients': 0, or at least 1mb");
					return;
				}
				if (pass)
					atomic_store(&srv.cfg.maxmemory_clients, m);
			} else if (arg_is(nm, "proto-max-bulk-len") ||
			           arg_is(nm, "client-query-buffer-limit")) {
				if (!arg_mem_size(v, &m) || m < 1024) {
					reply_error(c, "ERR Invalid argument for CONFIG SET '%.*s'",
					            (int)nm->n, nm->p);
					return;
				}
				if (pass && arg_is(nm, "proto-max-bulk-len"))
					atomic_store(&srv.cfg.proto_max_bulk_len, m);
				else if (pass)
					atomic_store(&srv.cfg.client_query_buffer_limit, m);
			} else if (arg_is(nm, "client-output-buffer-limit")) {
				char t[256];
				snprintf(t, sizeof(t), "%.*s", (int)(v->n > 255 ? 255 : v->n),
				         v->p);
				/* Without a normal group the limits stay as they are. */
				long secs = atomic_load(&srv.cfg.obuf_soft_seconds);
				size_t hard = atomic_load(&srv.cfg.obuf_hard),
				       soft = atomic_load(&srv.cfg.obuf_soft);
				if (v->n > 255 || memchr(v->p, '\0', v->n) ||
				    !parse_obuf_limit(t, &hard, &soft, &secs)) {
					reply_error(c, "ERR Invalid argument for CONFIG SET "
					               "'client-output-buffer-limit': expected "
					               "'<class> <hard> <soft> <seconds>' groups");
					return;
				}
				if (pass) {
					atomic_store(&srv.cfg.obuf_hard, hard);
					atomic_store(&srv.cfg.obuf_soft, soft);
					atomic_store(&srv.cfg.obuf_soft_seconds, secs);
				}
			} else if (arg_is(nm, "requirepass")) {
				if (pass) {
					char *s = xmalloc(v->n + 1);
					memcpy(s, v->p, v->n);
					s[v->n] = '\0';
					pthread_mutex_lock(&srv.cfg_lock);
					char *old = srv.cfg.requirepass;
					srv.cfg.requirepass = s;
					pthread_mutex_unlock(&srv.cfg_lock);
					free(old);
				}
			} else {
				reply_error(c,
				            "ERR Unknown option or number of arguments for CONFIG "
				            "SET - '%.*s'",
				            (int)(nm->n > 64 ? 64 : nm->n), nm->p);
				return;
			}
		}
	}
	reply_ok(c);
}

static void cmd_config(client *c, int argc, const arg *argv)
{
	if (arg_is(&argv[1], "GET") && argc >= 3)
		config_get(c, argc, argv);
	else if (arg_is(&argv[1], "SET"))
		config_set(c, argc, argv);
	else if (arg_is(&argv[1], "RESETSTAT") && argc == 2)
		reply_ok(c);
	else
		reply_unknown_subcommand(c, "CONFIG", &argv[1]);
}

/* ---- COMMAND ----------------------------------------------------------------------- */

static void lower(const char *s, char *out)
{
	size_t i = 0;
	for (; s[i] && i < 63; i++)
		out[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
	out[i] = '\0';
}

static void reply_command_info(client *c, const command *cmd)
{
	char name[64];
	lower(cmd->name, name);
	reply_array(c, 10);
	reply_cstr(c, name);
	reply_int(c, cmd->arity);
	size_t nf = 0;
	const char *flags[6];
	if (cmd->flags & CMD_WRITE)
		flags[nf++] = "write";
	if (cmd->flags & CMD_READONLY)
		flags[nf++] = "readonly";
	if (cmd->flags & CMD_NOAUTH)
		flags[nf++] = "no_auth";
	if (cmd->flags & CMD_NOMULTI)
		flags[nf++] = "no_multi";
	if (cmd->flags & CMD_BLOCKING)
		flags[nf++] = "blocking";
	if (cmd->flags & CMD_PUBSUB)
		flags[nf++] = "pubsub";
	reply_set(c, nf);
	for (size_t i = 0; i < nf; i++)
		reply_simple(c, flags[i]);
	int fk = cmd->first_key > 0 ? cmd->first_key : 0;
	reply_int(c, fk);
	reply_int(c, fk);
	reply_int(c, fk ? 1 : 0);
	char cat[80];
	snprintf(cat, sizeof(cat), "@%s", cmd->group ? cmd->group : "server");
	reply_set(c, 1);
	reply_simple(c, cat);
	reply_set(c, 0);
	reply_array(c, 0);
	reply_array(c, 0);
}

static void reply_command_docs(client *c, const command *cmd)
{
	char name[64];
	lower(cmd->name, name);
	reply_cstr(c, name);
	reply_map(c, 3);
	reply_cstr(c, "summary");
	reply_cstr(c, cmd->summary ? cmd->summary : "");
	reply_cstr(c, "since");
	reply_cstr(c, "1.0.0");
	reply_cstr(c, "group");
	reply_cstr(c, cmd->group ? cmd->group : "server");
}

static void cmd_command(client *c, int argc, const arg *argv)
{
	if (argc == 1) {
		reply_array(c, srv.ncmds);
		for (size_t i = 0; i < srv.ncmds; i++)
			reply_command_info(c, srv.cmds[i]);
	} else if (arg_is(&argv[1], "COUNT") && argc == 2) {
		reply_int(c, (long long)srv.ncmds);
	} else if (arg_is(&argv[1], "LIST") && argc == 2) {
		reply_array(c, srv.ncmds);
		for (size_t i = 0; i < srv.ncmds; i++) {
			char name[64];
			lower(srv.cmds[i]->name, name);
			reply_cstr(c, name);
		}
	} else if (arg_is(&argv[1], "INFO")) {
		if (argc == 2) {
			reply_array(c, srv.ncmds);
			for (size_t i = 0; i < srv.ncmds; i++)
				reply_command_info(c, srv.cmds[i]);
			return;
		}
		reply_array(c, (size_t)argc - 2);
		for (int i = 2; i < argc; i++) {
			const command *cmd = command_lookup(argv[i].p, argv[i].n);
			if (cmd)
				reply_command_info(c, cmd);
			else
				reply_null(c);
		}
	} else if (arg_is(&argv[1], "DOCS")) {
		size_t h = reply_defer_len(c);
		size_t n = 0;
		if (argc == 2) {
			for (size_t i = 0; i < srv.ncmds; i++, n++)
				reply_command_docs(c, srv.cmds[i]);
		} else {
			for (int i = 2; i < argc; i++) {
				const command *cmd = command_lookup(argv[i].p, argv[i].n);
				if (cmd) {
					reply_command_docs(c, cmd);
					n++;
				}
			}
		}
		reply_set_map_len(c, h, n);
	} else {
		reply_unknown_subcommand(c, "COMMAND", &argv[1]);
	}
}

/* ---- DBSIZE, TIME, SHUTDOWN -------------------------------------------------------- */

typedef struct dbsize_job {
	long long n;
	uint64_t rev;
} dbsize_job;

/* Count contexts with at least one field (ctx_count_with_fields: the
 * store's counter, or one walk of the context table once a time-to-live was
 * ever set); the reply waits for the revision the count may include. */
static void dbsize_run(void *p)
{
	dbsize_job *j = p;
	j->n = (long long)ctx_count_with_fields(srv.store, &j->rev);
}

static void dbsize_done(client *c, void *p)
{
	dbsize_job *j = p;
	if (c) {
		reply_int(c, j->n);
		client_need_durable(c, j->rev);
	}
	free(j);
}

static void cmd_dbsize(client *c, int argc, const arg *argv)
{
	dbsize_job *j = calloc(1, sizeof(*j));
	if (!j) {
		reply_ctx_error(c, CTX_NOMEM);
		return;
	}
	server_run_blocking(c, dbsize_run, dbsize_done, j);
}

/* FLUSHDB / FLUSHALL [ASYNC|SYNC]: drop every context, as Redis empties its
 * database. A walk over all ids (paged) on the thread pool, each dropped with
 * ctx_drop_nowait (its history and points go with it); the reply waits for the
 * last drop to be durable. Contexts created during the walk may survive it,
 * as keys written during an ASYNC flush do in Redis. */
typedef struct flush_job {
	ctx_status st;
	uint64_t rev;
} flush_job;

static void flush_run(void *p)
{
	flush_job *j = p;
	char after[CTX_ID_MAX + 1] = "";
	for (;;) {
		ctx_list l;
		j->st = ctx_list_ids(srv.store, NULL, after[0] ? after : NULL, 1024, &l);
		if (j->st != CTX_OK)
			return;
		size_t count = l.count;
		if (count)
			snprintf(after, sizeof(after), "%s", l.ids[count - 1]);
		for (size_t i = 0; i < count && j->st == CTX_OK; i++) {
			uint64_t r = 0;
			ctx_status st = ctx_drop_nowait(srv.store, l.ids[i], &r);
			if (st != CTX_OK && st != CTX_NOT_FOUND)
				j->st = st;
			if (r > j->rev)
				j->rev = r;
		}
		ctx_list_free(&l);
		if (count < 1024 || j->st != CTX_OK)
			return;
	}
}

static void flush_done(client *c, void *p)
{
	flush_job *j = p;
	if (c) {
		if (j->st == CTX_OK)
			reply_ok(c);
		else
			reply_ctx_error(c, j->st);
		client_need_durable(c, j->rev);
	}
	free(j);
}

static void cmd_flushdb(client *c, int argc, const arg *argv)
{
	if (argc > 2 || (argc == 2 && !arg_is(&argv[1], "ASYNC") && !arg_is(&argv[1], "SYNC"))) {
		reply_error(c, "ERR syntax error");
		return;
	}
	flush_job *j = calloc(1, sizeof(*j));
	if (!j) {
		reply_ctx_error(c, CTX_NOMEM);
		return;
	}
	server_log('I', "%.*s asked by client id=%llu addr=%s", (int)argv[0].n, argv[0].p,
	           (unsigned long long)c->id, c->addr);
	server_run_blocking(c, flush_run, flush_done, j);
}

/* ---- SAVE, BGSAVE, LASTSAVE, ROLE ---------------------------------------------------- */

static void *bgsave_main(void *unused)
{
	(void)unused;
	for (;;) {
		ctx_status st = ctx_checkpoint(srv.store);
		if (st == CTX_OK)
			saved_now();
		else
			server_log('W', "BGSAVE: the checkpoint failed: %s", ctx_last_error());
		pthread_mutex_lock(&bg.lock);
		bg.failed = st != CTX_OK;
		bool again = bg.scheduled;
		bg.scheduled = false;
		bg.running = again;
		pthread_mutex_unlock(&bg.lock);
		if (!again)
			return NULL;
	}
}

void bgsave_join(void)
{
	pthread_mutex_lock(&bg.lock);
	bool joinable = bg.joinable;
	bg.joinable = false;
	pthread_mutex_unlock(&bg.lock);
	if (joinable)
		pthread_join(bg.thread, NULL);
}

/* BGSAVE [SCHEDULE]: as Redis, "Background saving started", or an error if
 * one is running (SCHEDULE: one more is written after it). */
static void cmd_bgsave(client *c, int argc, const arg *argv)
{
	if (argc > 2 || (argc == 2 && !arg_is(&argv[1], "SCHEDULE"))) {
		reply_error(c, "ERR syntax error");
		return;
	}
	if (save_refused(c))
		return;
	pthread_mutex_lock(&bg.lock);
	if (bg.running) {
		bool schedule = argc == 2;
		bg.scheduled |= schedule;
		pthread_mutex_unlock(&bg.lock);
		if (schedule)
			reply_simple(c, "Background saving scheduled");
		else
			reply_error(c, "ERR Background save already in progress");
		return;
	}
	/* The last one has ended (running is clear): its join is immediate. */
	if (bg.joinable)
		pthread_join(bg.thread, NULL);
	bool started = pthread_create(&bg.thread, NULL, bgsave_main, NULL) == 0;
	bg.joinable = bg.running = started;
	pthread_mutex_unlock(&bg.lock);
	if (!started) {
		reply_error(c, "ERR cannot start the background save: out of threads");
		return;
	}
	server_log('I', "BGSAVE asked by client id=%llu addr=%s", (unsigned long long)c->id,
	           c->addr);
	reply_simple(c, "Background saving started");
}

typedef struct save_job {
	ctx_status st;
	char err[256];
} save_job;

static void save_run(void *p)
{
	save_job *j = p;
	j->st = ctx_checkpoint(srv.store);
	if (j->st == CTX_OK)
		saved_now();
	else
		snprintf(j->err, sizeof(j->err), "%s", ctx_last_error());
}

static void save_done(client *c, void *p)
{
	save_job *j = p;
	if (c) {
		if (j->st == CTX_OK)
			reply_ok(c);
		else
			reply_error(c, "ERR the checkpoint failed: %s", j->err);
	}
	free(j);
}

/* SAVE: a checkpoint, replied once it is written (on the thread pool: the
 * loop and its other clients go on). */
static void cmd_save(client *c, int argc, const arg *argv)
{
	if (save_refused(c))
		return;
	save_job *j = calloc(1, sizeof(*j));
	if (!j) {
		reply_ctx_error(c, CTX_NOMEM);
		return;
	}
	server_run_blocking(c, save_run, save_done, j);
}

static void cmd_lastsave(client *c, int argc, const arg *argv)
{
	reply_int(c, (long long)last_save_s());
}

/* ROLE: a master without replicas, as Redis's reply says it. */
static void cmd_role(client *c, int argc, const arg *argv)
{
	reply_array(c, 3);
	reply_cstr(c, "master");
	reply_int(c, 0);
	reply_array(c, 0);
}

static void cmd_time(client *c, int argc, const arg *argv)
{
	uint64_t t = now_us();
	char s[24], u[24];
	snprintf(s, sizeof(s), "%llu", (unsigned long long)(t / 1000000u));
	snprintf(u, sizeof(u), "%llu", (unsigned long long)(t % 1000000u));
	reply_array(c, 2);
	reply_cstr(c, s);
	reply_cstr(c, u);
}

/* SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE]: every change is in the log already,
 * so the modifiers change nothing (the stop always syncs and checkpoints).
 * SHUTDOWN ABORT cancels a pending shutdown in Redis 7: ctxd has none to
 * cancel, so it answers as Redis does when none is pending, and an unknown
 * modifier is a syntax error: either used to stop the server (round 18). */
static void cmd_shutdown(client *c, int argc, const arg *argv)
{
	bool save = false, nosave = false;
	for (int i = 1; i < argc; i++) {
		if (arg_is(&argv[i], "abort") && argc == 2) {
			reply_error(c, "ERR No shutdown in progress.");
			return;
		}
		if (arg_is(&argv[i], "save"))
			save = true;
		else if (arg_is(&argv[i], "nosave"))
			nosave = true;
		else if (!arg_is(&argv[i], "now") && !arg_is(&argv[i], "force"))
			save = nosave = true;
		if (save && nosave) {
			reply_error(c, "ERR syntax error");
			return;
		}
	}
	server_log('I', "SHUTDOWN asked by client id=%llu addr=%s", (unsigned long long)c->id,
	           c->addr);
	reply_ok(c);
	client_request_close(c);
	kill(getpid(), SIGTERM);
}

const command conn_commands[] = {
    {"PING", cmd_ping, -1, CMD_PUBSUB, 0, "Returns PONG, or the argument.", "connection"},
    {"ECHO", cmd_echo, 2, 0, 0, "Returns the argument.", "connection"},
    {"HELLO", cmd_hello, -1, CMD_NOAUTH, 0,
     "Chooses the protocol (2 or 3), authenticates, names the connection.", "connection"},
    {"AUTH", cmd_auth, -2, CMD_NOAUTH, 0, "Authenticates the connection.", "connection"},
    {"QUIT", cmd_quit, -1, CMD_NOAUTH | CMD_PUBSUB, 0, "Closes the connection.", "connection"},
    {"RESET", cmd_reset, 1, CMD_NOAUTH | CMD_PUBSUB, 0, "Resets the connection.", "connection"},
    {"SELECT", cmd_select, 2, 0, 0, "Selects database 0 (the only one).", "connection"},
    {"CLIENT", cmd_client, -2, 0, 0, "Connection information and control.", "connection"},
    {"INFO", cmd_info, -1, 0, 0, "Server information and statistics.", "server"},
    {"CONFIG", cmd_config, -2, 0, 0, "Reads or changes the configuration.", "server"},
    {"COMMAND", cmd_command, -1, 0, 0, "Describes the commands.", "server"},
    {"DBSIZE", cmd_dbsize, 1, CMD_READONLY | CMD_BLOCKING, 0,
     "Number of contexts with at least one field.", "server"},
    {"FLUSHDB", cmd_flushdb, -1, CMD_WRITE | CMD_BLOCKING, 0,
     "Drops every context (with its history and points).", "server"},
    {"FLUSHALL", cmd_flushdb, -1, CMD_WRITE | CMD_BLOCKING, 0,
     "Drops every context (with its history and points).", "server"},
    {"TIME", cmd_time, 1, 0, 0, "The server's time.", "server"},
    {"SAVE", cmd_save, 1, CMD_BLOCKING, 0, "Writes a checkpoint; replies once it is written.",
     "server"},
    {"BGSAVE", cmd_bgsave, -1, CMD_NOMULTI, 0, "Writes a checkpoint in the background.", "server"},
    {"LASTSAVE", cmd_lastsave, 1, 0, 0, "Unix time of the newest checkpoint.", "server"},
    {"ROLE", cmd_role, 1, 0, 0, "A master without replicas.", "server"},
    {"SHUTDOWN", cmd_shutdown, -1, CMD_NOMULTI, 0, "Stops the server gracefully.", "server"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};

/* ---- the table --------------------------------------------------------------------- */

static int cmp_cmd(const void *a, const void *b)
{
	return strcmp((*(const command *const *)a)->name, (*(const command *const *)b)->name);
}

void commands_init(void)
{
	const command *tables[] = {conn_commands, multi_commands, hash_commands, keys_commands,
	                           ctx_commands};
	size_t n = 0;
	for (size_t t = 0; t < 5; t++)
		for (const command *c = tables[t]; c->name; c++)
			n++;
	srv.cmds = xmalloc((n ? n : 1) * sizeof(command *));
	srv.ncmds = 0;
	for (size_t t = 0; t < 5; t++)
		for (const command *c = tables[t]; c->name; c++) {
			bool dup = false;
			for (size_t i = 0; i < srv.ncmds && !dup; i++)
				dup = strcmp(srv.cmds[i]->name, c->name) == 0;
			if (dup)
				server_log(
				    'W',
				    "command %s is defined twice; the first definition is kept",
				    c->name);
			else
				srv.cmds[srv.ncmds++] = c;
		}
	qsort(srv.cmds, srv.ncmds, sizeof(command *), cmp_cmd);
}

const command *command_lookup(const char *name, size_t n)
{
	char up[64];
	if (n == 0 || n >= sizeof(up))
		return NULL;
	for (size_t i = 0; i < n; i++)
		up[i] = (char)((name[i] >= 'a' && name[i] <= 'z') ? name[i] - 32 : name[i]);
	up[n] = '\0';
	size_t lo = 0, hi = srv.ncmds;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(srv.cmds[mid]->name, up);
		if (r == 0)
			return srv.cmds[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

size_t command_count(void)
{
	return srv.ncmds;
}

const command *command_at(size_t i)
{
	return i < srv.ncmds ? srv.cmds[i] : NULL;
}
