/*
 * probe8_dbsize_durable.c - ctxd's DBSIZE answers from changes that are not
 * durable yet: a client is told a count that a crash then takes back.
 *
 * DESIGN.md: "A reader never observes a version that recovery could lose";
 * ctx.h (SEMANTICS of the nowait calls): a server that answers a read from
 * ctx_get_latest "must hold the answer until ctx_durable_revision() reaches
 * ctx_state_revision() of that state". DBSIZE (cmd_conn.c dbsize_run,
 * round 7 commit 1ce0d36) holds its reply until the revision
 * ctx_count_with_fields returns, which is "the highest revision of the
 * versions counted" (store.c ctx_count_with_fields: only versions with at
 * least one field raise it). But the count also depends on the versions
 * it did NOT count: a context whose newest decided version has no field
 * (HDEL of its last field, decided, not durable) and a context whose drop is
 * decided (DEL: ctx_drop_nowait; the walk skips it). Neither revision holds
 * the reply, so DBSIZE says one key less at once, and a crash before the
 * sync brings the key back. Before round 7 DBSIZE took the revision of every
 * listed context's newest version, so the emptied case is a round 7
 * regression; the drop case was there before (a dropped context is not
 * listed). Single-key reads are right: hash_read (cmd_common.c) holds an
 * absent key's reply for the store's whole revision (need_durable_all, "its
 * drop may be decided, not durable") and an empty version's for its own.
 *
 * The probe holds ctxd's log writes with a preloaded shim (this same file
 * built with -DSHIM: while the file $PROBE8_HOLD exists, pwrite and
 * fdatasync wait, so the change is not in the page cache either and a
 * kill -9 loses it as a power cut loses an unsynced write),
 * and for HDEL and for DEL:
 *   1. HSET k f v (acknowledged, durable); DBSIZE = 1;
 *   2. the disk held; client A sends HDEL k f (or DEL k): its reply is
 *      parked, nothing is durable;
 *   3. client B sends DBSIZE, client C sends HLEN k (the control: parked);
 *   4. kill -9 ctxd, let the disk go, restart it on the same directory:
 *      HLEN k says 1 - the change B's DBSIZE reflected never happened.
 *
 * Build and run (from the worktree, after `make build`):
 *   cc -shared -fPIC -DSHIM -o /tmp/probe8_shim.so tests/probes/probe8_dbsize_durable.c
 *   cc -O1 -g -o /tmp/probe8_dbsize tests/probes/probe8_dbsize_durable.c
 *   /tmp/probe8_dbsize build/ctxd /tmp/probe8_shim.so
 * Exit status 1 if DBSIZE answered before the change was durable and the
 * change was then lost (the defect), 0 if it held its reply.
 */
#define _GNU_SOURCE
#ifdef SHIM
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static void wait_hold(void)
{
	const char *hold = getenv("PROBE8_HOLD");
	while (hold && access(hold, F_OK) == 0)
		usleep(1000);
}

/* The log's writes and syncs wait while the hold file exists: what is
 * decided meanwhile is not even in the page cache, so a kill -9 loses it as
 * a power cut would lose an unsynced write. */
int fdatasync(int fd)
{
	wait_hold();
	return (int)syscall(SYS_fdatasync, fd);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	wait_hold();
	return (ssize_t)syscall(SYS_pwrite64, fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	wait_hold();
	return (ssize_t)syscall(SYS_pwrite64, fd, buf, n, off);
}
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int port;
static char dir[256], hold[256];

static int dial(void)
{
	for (int i = 0; i < 1000; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			return fd;
		}
		close(fd);
		usleep(20000);
	}
	fprintf(stderr, "cannot connect\n");
	exit(2);
}

static pid_t start(const char *bin, const char *shim)
{
	char ports[16];
	snprintf(ports, sizeof(ports), "%d", port);
	pid_t pid = fork();
	if (pid == 0) {
		if (shim) {
			setenv("LD_PRELOAD", shim, 1);
			setenv("PROBE8_HOLD", hold, 1);
		}
		execl(bin, bin, "--port", ports, "--dir", dir, "--loops", "1", "--loglevel",
		      "warning", (char *)NULL);
		_exit(127);
	}
	close(dial());
	return pid;
}

static void say(int fd, const char *s)
{
	if (send(fd, s, strlen(s), MSG_NOSIGNAL) != (ssize_t)strlen(s))
		exit(2);
}

/* A reply line within ms, or "" if none came. */
static const char *reply(int fd, int ms)
{
	static char buf[256];
	size_t n = 0;
	while (n < sizeof(buf) - 1) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, ms) <= 0)
			break;
		ssize_t k = recv(fd, buf + n, 1, 0);
		if (k <= 0)
			break;
		n++;
		if (buf[n - 1] == '\n')
			break;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	return buf;
}

static bool scenario(const char *bin, const char *shim, const char *change)
{
	char name[32];
	snprintf(name, sizeof(name), "%.*s", (int)strcspn(change, "\r"), change);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, hold);
	if (system(cmd) != 0)
		exit(2);
	pid_t pid = start(bin, shim);
	int a = dial(), b = dial(), c = dial();
	say(a, "HSET k f v\r\n");
	printf("[%s] HSET k f v -> %s; ", name, reply(a, 5000));
	say(b, "DBSIZE\r\n");
	printf("DBSIZE -> %s\n", reply(b, 5000));
	FILE *f = fopen(hold, "w"); /* the disk stops here */
	fclose(f);
	usleep(100000);
	say(a, change);
	usleep(300000);
	say(b, "DBSIZE\r\n");
	say(c, "HLEN k\r\n");
	char db[64], hl[64];
	snprintf(db, sizeof(db), "%s", reply(b, 1000));
	snprintf(hl, sizeof(hl), "%s", reply(c, 1000));
	printf("[%s] disk held, change decided: DBSIZE -> '%s', HLEN k -> '%s' (parked if "
	       "empty); the change's own reply: '%s'\n",
	       name, db, hl, reply(a, 200));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(hold);
	close(a);
	close(b);
	close(c);
	pid = start(bin, NULL);
	int d = dial();
	say(d, "HLEN k\r\n");
	char after[64];
	snprintf(after, sizeof(after), "%s", reply(d, 5000));
	printf("[%s] after kill -9 and restart: HLEN k -> %s\n", name, after);
	close(d);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	bool bad = strcmp(db, ":0") == 0 && strcmp(after, ":1") == 0;
	if (bad)
		printf("[%s] DEFECT: DBSIZE said 0 from a change that was never durable and is "
		       "gone after the crash\n",
		       name);
	return bad;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s CTXD SHIM.so\n", argv[0]);
		return 2;
	}
	port = 21000 + (int)(getpid() % 20000);
	snprintf(dir, sizeof(dir), "/tmp/probe8_dbsize.%d", (int)getpid());
	snprintf(hold, sizeof(hold), "/tmp/probe8_dbsize.%d.hold", (int)getpid());
	bool bad = scenario(argv[1], argv[2], "HDEL k f\r\n");
	bad = scenario(argv[1], argv[2], "DEL k\r\n") || bad;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, hold);
	if (system(cmd) != 0)
		return 2;
	return bad;
}
#endif
