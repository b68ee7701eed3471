/*
 * main.c - ctxd's entry: options and configuration file, logging, signals,
 * and the order of start and stop.
 *
 * START: defaults, then the configuration file (--config), then the other
 * command-line options (later wins); open the store (recovery happens
 * here), build the command table, bind and start the loops.
 * STOP: SIGTERM or SIGINT (waited for with sigwait in the main thread; all
 * threads block them): the loops stop accepting, stop reading, send every
 * reply (parked ones once durable) and end; then ctx_close_at_exit fsyncs and
 * writes a checkpoint (leaving the store's memory to the exit), and the
 * process exits 0.
 */
#include "core.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic char log_level = 'I';

static int level_rank(char l)
{
	switch (l) {
	case 'E':
		return 0;
	case 'W':
		return 1;
	case 'I':
		return 2;
	default:
		return 3;
	}
}

void log_set_level(char level)
{
	atomic_store(&log_level, level);
}

void server_log(char level, const char *fmt, ...)
{
	if (level_rank(level) > level_rank(atomic_load(&log_level)))
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%d %b %Y %H:%M:%S", &tm);
	fprintf(stderr, "%ld:M %s.%03ld %c %s\n", (long)getpid(), when, ts.tv_nsec / 1000000, level,
	        msg);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: ctxd [options]\n"
	           "ctxd serves a ctx store over the Redis protocol (RESP2/RESP3).\n\n"
	           "  --port PORT            TCP port (default 7379; 0 = any free port)\n"
	           "  --bind ADDR            address to listen on (default 127.0.0.1)\n"
	           "  --dir DIR              data directory (default ./data/ctxd)\n"
	           "  --durability MODE      always (default): a reply waits for its fsync;\n"
	           "                         batch: fsync every 10 ms; none: memory only (no dir)\n"
	           "  --requirepass PASS     clients must AUTH with PASS\n"
	           "  --loops N              event loops (default: number of cores)\n"
	           "  --loops-merge yes|no   let loop 0 run the others while the clients do\n"
	           "                         not pipeline and one thread is enough (yes)\n"
	           "  --sync-inline yes|no   durability always: a loop fsyncs its turn's writes\n"
	           "                         itself, as Redis does, instead of the flusher\n"
	           "                         thread (no)\n"
	           "  --huge-pages yes|no    let the store's memory take transparent huge\n"
	           "                         pages: faster growth, but a pause of 1-5 ms at\n"
	           "                         each new one's first touch in a VM (no)\n"
	           "  --maxclients N         (default 10000)\n"
	           "  --timeout SECONDS      close idle clients (default 0 = never)\n"
	           "  --scan-hold-seconds S  release the version an unfinished HSCAN holds\n"
	           "                         once not continued for S seconds (default 30)\n"
	           "  --scan-hold-bytes N    past N key and value bytes held by unfinished\n"
	           "                         HSCANs, release those idle 1 s (default 64mb)\n"
	           "  --maxmemory-clients N  past N bytes of all clients' unsent output,\n"
	           "                         close those holding more than their share\n"
	           "                         (default 1gb; 0: no limit; else >= 1mb)\n"
	           "  --loglevel LEVEL       warning, notice (default), verbose, debug\n"
	           "  --config FILE          redis.conf-style file: one 'name value' per line\n"
	           "                         (port, bind, dir, durability, requirepass,\n"
	           "                         maxclients, timeout, proto-max-bulk-len,\n"
	           "                         client-query-buffer-limit,\n"
	           "                         client-output-buffer-limit normal H S SECS, loops,\n"
	           "                         loops-merge, sync-inline, huge-pages,\n"
	           "                         scan-hold-seconds,\n"
	           "                         scan-hold-bytes, maxmemory-clients,\n"
	           "                         loglevel)\n"
	           "  --help                 this text\n\n"
	           "Connect with: redis-cli -p PORT\n");
}

static bool long_value(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* Apply one setting; false with a message on stderr if it is bad. */
static bool apply(const char *name, const char *value, const char *where)
{
	server_config *cfg = &srv.cfg;
	long l;
	size_t m;
	if (!strcasecmp(name, "port") && long_value(value, 0, 65535, &l)) {
		cfg->port = (int)l;
	} else if (!strcasecmp(name, "bind") && *value) {
		char first[128];
		snprintf(first, sizeof(first), "%s", value);
		first[strcspn(first, " \t")] = '\0';
		free(cfg->bind);
		cfg->bind = xstrdup(first);
	} else if (!strcasecmp(name, "dir") && *value) {
		free(cfg->dir);
		cfg->dir = xstrdup(value);
	} else if (!strcasecmp(name, "durability") &&
	           (!strcasecmp(value, "always") || !strcasecmp(value, "batch") ||
	            !strcasecmp(value, "none"))) {
		cfg->durability = !strcasecmp(value, "always")  ? CTX_DURABILITY_ALWAYS
		                  : !strcasecmp(value, "batch") ? CTX_DURABILITY_BATCH
		                                                : CTX_DURABILITY_NONE;
	} else if (!strcasecmp(name, "requirepass")) {
		free(cfg->requirepass);
		cfg->requirepass = *value ? xstrdup(value) : NULL;
	} else if (!strcasecmp(name, "maxclients") && long_value(value, 1, 1000000, &l)) {
		cfg->maxclients = (size_t)l;
	} else if (!strcasecmp(name, "timeout") && long_value(value, 0, 1L << 40, &l)) {
		cfg->timeout = l;
	} else if (!strcasecmp(name, "scan-hold-seconds") && long_value(value, 0, 1L << 40, &l)) {
		cfg->scan_hold_seconds = l;
	} else if (!strcasecmp(name, "scan-hold-bytes") && parse_mem_size(value, &m)) {
		cfg->scan_hold_bytes = m;
	} else if (!strcasecmp(name, "maxmemory-clients") && parse_mem_size(value, &m) &&
	           (m == 0 || m >= (1u << 20))) {
		cfg->maxmemory_clients = m;
	} else if (!strcasecmp(name, "loops") && long_value(value, 1, 1024, &l)) {
		cfg->loops = (int)l;
	} else if (!strcasecmp(name, "loops-merge") &&
	           (!strcasecmp(value, "yes") || !strcasecmp(value, "no"))) {
		cfg->loops_merge = !strcasecmp(value, "yes");
	} else if (!strcasecmp(name, "sync-inline") &&
	           (!strcasecmp(value, "yes") || !strcasecmp(value, "no"))) {
		cfg->sync_inline = !strcasecmp(value, "yes");
	} else if (!strcasecmp(name, "huge-pages") &&
	           (!strcasecmp(value, "yes") || !strcasecmp(value, "no"))) {
		cfg->huge_pages = !strcasecmp(value, "yes");
	} else if (!strcasecmp(name, "proto-max-bulk-len") && parse_mem_size(value, &m) &&
	           m >= 1024) {
		cfg->proto_max_bulk_len = m;
	} else if (!strcasecmp(name, "client-query-buffer-limit") && parse_mem_size(value, &m) &&
	           m >= 1024) {
		cfg->client_query_buffer_limit = m;
	} else if (!strcasecmp(name, "client-output-buffer-limit")) {
		long secs = cfg->obuf_soft_seconds;
		size_t hard = cfg->obuf_hard, soft = cfg->obuf_soft;
		if (!parse_obuf_limit(value, &hard, &soft, &secs))
			goto bad;
		cfg->obuf_hard = hard;
		cfg->obuf_soft = soft;
		cfg->obuf_soft_seconds = secs;
	} else if (!strcasecmp(name, "loglevel")) {
		if (!strcasecmp(value, "warning"))
			log_set_level('W');
		else if (!strcasecmp(value, "notice"))
			log_set_level('I');
		else if (!strcasecmp(value, "verbose") || !strcasecmp(value, "debug"))
			log_set_level('D');
		else
			goto bad;
	} else {
		goto bad;
	}
	return true;
bad:
	fprintf(stderr, "ctxd: %s: bad setting '%s' = '%s'\n", where, name, value);
	return false;
}

static bool read_config(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "ctxd: cannot read %s: %s\n", path, strerror(errno));
		return false;
	}
	char line[4096];
	int no = 0;
	bool ok = true;
	while (fgets(line, sizeof(line), f)) {
		no++;
		char *p = line;
		while (isspace((unsigned char)*p))
			p++;
		if (!*p || *p == '#')
			continue;
		char *e = p + strlen(p);
		while (e > p && isspace((unsigned char)e[-1]))
			*--e = '\0';
		char *v = p + strcspn(p, " \t");
		if (*v)
			*v++ = '\0';
		while (isspace((unsigned char)*v))
			v++;
		size_t vl = strlen(v);
		if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
			v[vl - 1] = '\0';
			v++;
		}
		char where[600];
		snprintf(where, sizeof(where), "%s:%d", path, no);
		ok = apply(p, v, where) && ok;
	}
	fclose(f);
	return ok;
}

static void defaults(void)
{
	server_config *cfg = &srv.cfg;
	cfg->bind = xstrdup("127.0.0.1");
	cfg->port = 7379;
	cfg->dir = xstrdup("data/ctxd");
	cfg->durability = CTX_DURABILITY_ALWAYS;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cfg->loops = n > 0 ? (int)n : 1;
	cfg->loops_merge = true;
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
}

static int parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"port", required_argument, 0, 'p'},
	    {"bind", required_argument, 0, 'b'},
	    {"dir", required_argument, 0, 'd'},
	    {"durability", required_argument, 0, 'D'},
	    {"requirepass", required_argument, 0, 'a'},
	    {"loops", required_argument, 0, 'l'},
	    {"loops-merge", required_argument, 0, 'M'},
	    {"sync-inline", required_argument, 0, 'I'},
	    {"huge-pages", required_argument, 0, 'H'},
	    {"config", required_argument, 0, 'c'},
	    {"maxclients", required_argument, 0, 'm'},
	    {"timeout", required_argument, 0, 't'},
	    {"scan-hold-seconds", required_argument, 0, 'S'},
	    {"scan-hold-bytes", required_argument, 0, 'B'},
	    {"maxmemory-clients", required_argument, 0, 'C'},
	    {"loglevel", required_argument, 0, 'L'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	/* the configuration file first, so that other options override it */
	for (int i = 1; i < argc; i++) {
		const char *path = NULL;
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			path = argv[i + 1];
		else if (!strncmp(argv[i], "--config=", 9))
			path = argv[i] + 9;
		if (path && !read_config(path))
			return 1;
	}
	int ch;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		const char *name = NULL;
		for (const struct option *o = opts; o->name; o++)
			if (o->val == ch)
				name = o->name;
		if (ch == 'h') {
			usage(stdout);
			exit(0);
		}
		if (ch == '?' || !name)
			return 1;
		if (ch == 'c')
			continue;
		if (!apply(name, optarg, "command line"))
			return 1;
	}
	if (optind < argc) {
		fprintf(stderr, "ctxd: unexpected argument '%s' (see --help)\n", argv[optind]);
		return 1;
	}
	return 0;
}

static int open_store(void)
{
	ctx_options o;
	ctx_options_init(&o);
	/* durability none is memory only, as DESIGN.md says: no data directory. */
	o.dir = srv.cfg.durability == CTX_DURABILITY_NONE ? NULL : srv.cfg.dir;
	o.durability = srv.cfg.durability;
	/* CTX.WATCH ... FROM must work after a reconnect even when no other
	 * watch was open meanwhile: keep the event history (bounded in bytes by
	 * watch_history_bytes) whether or not anybody watches. */
	o.watch_keep_history = true;
	/* Off unless asked for: a huge page's first touch (1-5 ms in a VM)
	 * holds the loop whose commit grows the store into it, and every
	 * client of that loop with it. With them, redis-benchmark's HSET into
	 * a growing store had twice the p99 (round 23: 64 clients 1.9-2.6 ms
	 * against 0.9-1.1 ms, 16 x 16 pipelined 4.2-5.4 ms against 1.1-2.9 ms)
	 * at no gain in throughput. */
	ctx_use_huge_pages(srv.cfg.huge_pages);
	ctx_status st = ctx_open(&o, &srv.store);
	if (st != CTX_OK) {
		server_log('E', "cannot open the store in %s: %s: %s", srv.cfg.dir,
		           ctx_strerror(st), ctx_last_error());
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	pthread_mutex_init(&srv.cfg_lock, NULL);
	pthread_mutex_init(&srv.reg_lock, NULL);
	defaults();
	if (parse_args(argc, argv) != 0) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	alloc_start();
	srv.start_us = now_us();
	server_log('I', "ctxd %s (libctx %s, %s) starting: dir %s, durability %s, %d loops",
	           CTX_VERSION_STRING, CTX_VERSION_STRING, alloc_name(), srv.cfg.dir,
	           srv.cfg.durability == CTX_DURABILITY_ALWAYS  ? "always"
	           : srv.cfg.durability == CTX_DURABILITY_BATCH ? "batch"
	                                                        : "none",
	           srv.cfg.loops);
	net_fit_open_files(); /* before the store and loops take theirs */
	if (open_store() != 0)
		return 1;
	commands_init();
	if (net_start() != 0) {
		server_log('E', "cannot start the loops");
		ctx_close(srv.store);
		return 1;
	}
	server_log('I', "ready to accept connections on %s:%d (redis-cli -p %d)", srv.cfg.bind,
	           srv.listen_port, srv.listen_port);
	/* the loops run: CONFIG SET may be changing requirepass (cfg_lock) */
	pthread_mutex_lock(&srv.cfg_lock);
	bool no_password = !srv.cfg.requirepass;
	pthread_mutex_unlock(&srv.cfg_lock);
	if (no_password && strcmp(srv.cfg.bind, "127.0.0.1") && strcmp(srv.cfg.bind, "::1") &&
	    strcmp(srv.cfg.bind, "localhost"))
		server_log('W', "listening on %s without a password (requirepass)", srv.cfg.bind);
	int sig = 0;
	sigwait(&set, &sig);
	server_log('I', "received %s: stopping (finishing commits, sending parked replies)",
	           sig == SIGTERM ? "SIGTERM" : "SIGINT");
	net_stop();
	bgsave_join(); /* a checkpoint BGSAVE started ends before the close */
	server_log('I', "loops stopped; closing the store (fsync, checkpoint)");
	/* The process ends next: its exit gives the store's memory back, so the
	 * close does not walk it to free it (ctx_close_at_exit, round 16). */
	ctx_close_at_exit(srv.store);
	server_log('I', "ctxd stopped");
	return 0;
}
