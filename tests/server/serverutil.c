/*
 * serverutil.c - start build/ctxd on a free port with a fresh directory, stop
 * it, and raw-socket helpers, for the server tests.
 */
#include "serverutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "serverutil: %s: %s\n", what, strerror(errno));
	abort();
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &len))
		die("free port");
	close(fd);
	return ntohs(a.sin_port);
}

/* Whether what the server wrote to s->log from offset `from` on says that
 * it could not listen because its port was taken (ctxd: "cannot listen on
 * ...: Address already in use"; redis-server: "... Address already in use"). */
static bool port_was_taken(const su_server *s, long from)
{
	FILE *f = fopen(s->log, "r");
	if (!f)
		return false;
	bool taken = false;
	char line[1024];
	if (fseek(f, from, SEEK_SET) == 0)
		while (!taken && fgets(line, sizeof(line), f))
			taken = strstr(line, "Address already in use") != NULL;
	fclose(f);
	return taken;
}

/* Whether process pid holds a listening TCP socket on port: the sockets
 * of /proc/net/tcp{,6} in state LISTEN (0A) on that local port, by inode,
 * against pid's descriptors. */
static bool listens_on(pid_t pid, int port)
{
	unsigned long inodes[64];
	int n = 0;
	const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	for (int t = 0; t < 2; t++) {
		FILE *f = fopen(tables[t], "r");
		if (!f)
			continue;
		char line[512];
		while (n < 64 && fgets(line, sizeof(line), f)) {
			char local[64], remote[64], state[8];
			unsigned long inode;
			if (sscanf(line, " %*s %63s %63s %7s %*s %*s %*s %*s %*s %lu", local,
			           remote, state, &inode) != 4)
				continue;
			const char *colon = strrchr(local, ':');
			if (colon && strcmp(state, "0A") == 0 &&
			    strtol(colon + 1, NULL, 16) == port)
				inodes[n++] = inode;
		}
		fclose(f);
	}
	if (n == 0)
		return false;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return false;
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		char link[384], target[64];
		snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
		ssize_t k = readlink(link, target, sizeof(target) - 1);
		if (k <= 0)
			continue;
		target[k] = '\0';
		unsigned long inode;
		if (sscanf(target, "socket:[%lu]", &inode) != 1)
			continue;
		for (int i = 0; i < n && !found; i++)
			found = inodes[i] == inode;
	}
	closedir(d);
	return found;
}

/* Run argv[0] (through PATH when it has no slash) with its output to s->log,
 * and wait until it listens on s->port and accepts a connection: up to 60 s.
 * Returns false if it exited because the port was taken (free_port's port
 * is only free when it is picked: another test's server, or a connection's
 * local port, can take it before this server binds it); aborts if it exits
 * for another reason or does not listen by then. Its own listening socket
 * is looked for (listens_on), not only a connection that succeeds: one to
 * another server on the port took a server that was failing to bind for a
 * started one. */
static bool spawn_argv(su_server *s, const char *const *argv)
{
	const char *bin = argv[0];
	struct stat st0;
	long from = stat(s->log, &st0) == 0 ? (long)st0.st_size : 0;
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		execvp(bin, (char *const *)argv);
		_exit(127);
	}
	s->pid = pid;
	for (int i = 0; i < 6000; i++) {
		if (listens_on(pid, s->port)) {
			int fd = su_connect(s);
			if (fd >= 0) {
				close(fd);
				return true;
			}
		}
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			s->pid = 0;
			if (port_was_taken(s, from))
				return false;
			fprintf(stderr, "serverutil: %s exited at start (see %s)\n", bin, s->log);
			abort();
		}
		usleep(10000);
	}
	fprintf(stderr, "serverutil: %s did not start listening in 60 s\n", bin);
	abort();
}

static bool spawn_once(su_server *s, const char *const *extra)
{
	const char *bin = getenv("CTXD_BIN");
	if (!bin)
		bin = "./ctxd";
	char port[16];
	snprintf(port, sizeof(port), "%d", s->port);
	const char *argv[64] = {bin,       "--port", port,         "--dir",  s->dir,
	                        "--loops", "2",      "--loglevel", "warning"};
	int n = 9;
	for (int i = 0; extra && extra[i] && n < 62; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	return spawn_argv(s, argv);
}

/* Start the server; on a port taken meanwhile, again on another free port
 * (the directory keeps its name: only s->port changes). */
static void spawn(su_server *s, const char *const *extra)
{
	for (int tries = 0; !spawn_once(s, extra); tries++) {
		if (tries == 20) {
			fprintf(stderr, "serverutil: every port taken 20 times (see %s)\n", s->log);
			abort();
		}
		s->port = free_port();
	}
}

/* A server with a free port, a directory named after it and its log beside
 * it (what was there removed). */
static su_server *new_server(const char *kind, const char *name)
{
	su_server *s = calloc(1, sizeof(*s));
	if (!s)
		die("calloc");
	const char *tmp = getenv("CTX_TEST_TMP");
	if (!tmp)
		tmp = "/tmp";
	mkdir(tmp, 0755);
	s->port = free_port();
	snprintf(s->dir, sizeof(s->dir), "%s/%s-%s-%d-%d", tmp, kind, name, (int)getpid(), s->port);
	snprintf(s->log, sizeof(s->log), "%s.log", s->dir);
	char cmd[1100];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
	if (system(cmd) != 0)
		die("rm");
	return s;
}

su_server *su_start(const char *name, const char *const *extra)
{
	su_server *s = new_server("ctxd", name);
	spawn(s, extra);
	return s;
}

su_server *su_start_redis(const char *name)
{
	su_server *s = new_server("redis", name);
	if (mkdir(s->dir, 0755) != 0)
		die("mkdir");
	char port[16];
	snprintf(port, sizeof(port), "%d", s->port);
	const char *const argv[] = {"redis-server", "--port", port,     "--save",    "",
	                            "--appendonly", "no",     "--bind", "127.0.0.1", "--dir",
	                            s->dir,         NULL};
	for (int tries = 0; !spawn_argv(s, argv); tries++) {
		if (tries == 20) {
			fprintf(stderr, "serverutil: every port taken 20 times (see %s)\n", s->log);
			abort();
		}
		s->port = free_port();
		snprintf(port, sizeof(port), "%d", s->port);
	}
	return s;
}

void su_restart(su_server *s, const char *const *extra)
{
	spawn(s, extra);
}

int su_stop(su_server *s)
{
	if (!s->pid)
		return -1;
	kill(s->pid, SIGTERM);
	/* Bounded: a ctxd that hangs on SIGTERM fails the test (128 + SIGKILL)
	 * instead of hanging its teardown until CTest's timeout and being left
	 * running. 120 s covers a sanitizer build stopping a big store. */
	int st = 0;
	pid_t r = 0;
	for (int i = 0; i < 120 * 50 && (r = waitpid(s->pid, &st, WNOHANG)) == 0; i++)
		usleep(20 * 1000);
	if (r == 0) {
		fprintf(stderr, "serverutil: ctxd %d did not stop in 120 s after SIGTERM: killed\n",
		        (int)s->pid);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, &st, 0);
	}
	s->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void su_kill9(su_server *s)
{
	if (!s->pid)
		return;
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

void su_free(su_server *s)
{
	if (!s)
		return;
	if (s->pid)
		su_stop(s);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", s->dir, s->log);
	if (system(cmd) != 0)
		fprintf(stderr, "serverutil: could not remove %s\n", s->dir);
	free(s);
}

int su_connect(const su_server *s)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

bool su_send(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		c += w;
		n -= (size_t)w;
	}
	return true;
}

size_t su_recv(int fd, char *buf, size_t n, int timeout_ms)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, timeout_ms);
		if (r <= 0)
			break;
		ssize_t k = recv(fd, buf + got, n - got, 0);
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	return got;
}

bool su_wait_closed(int fd, int timeout_ms)
{
	char buf[65536];
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		clock_gettime(CLOCK_MONOTONIC, &t);
		long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (el >= timeout_ms)
			return false;
		if (poll(&p, 1, (int)(timeout_ms - el)) <= 0)
			return false;
		ssize_t k = recv(fd, buf, sizeof(buf), 0);
		if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN))
			return true;
	}
}

size_t su_rss(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	FILE *f = fopen(path, "r");
	unsigned long size = 0, rss = 0;
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

bool su_alive(const su_server *s)
{
	return s->pid > 0 && kill(s->pid, 0) == 0 && waitpid(s->pid, NULL, WNOHANG) == 0;
}
