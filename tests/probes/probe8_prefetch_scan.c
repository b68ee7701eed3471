/*
 * probe8_prefetch_scan.c - ctxd rescans a client's whole buffered input on
 * every read to find keys to prefetch: a client holding one large, never
 * finished multibulk request and adding a byte at a time keeps a loop
 * thread busy with a few hundred bytes a second.
 *
 * Round 7 (commit ae8af5c, net.c) added a prefetch of the keys of every
 * ready client's requests before their input runs: on_ready_check calls
 * scan_keys(rest->in, rest->in_len, ...) for the ready clients, and
 * run_input -> prefetch_keys calls it again for the others. scan_keys
 * walks the multibulk headers from the start of the buffer: for a request
 * whose argument count is large (up to max_args, 1,048,576 by default) it
 * walks every argument already buffered, one by one, until the data runs
 * out - whatever it found; it only wants the second argument. resp_parse
 * keeps its own state (c->frame) and does not rescan, so before round 7 a
 * read cost what it brought; now each read costs the whole incomplete
 * request: O(arguments buffered) per read, O(n^2) for a request that
 * arrives slowly. Redis's multibulk parser is incremental too (it keeps
 * multibulklen and bulklen between reads).
 *
 * The probe starts ctxd (--loops 1, durability none), sends "*1048576" and
 * ARGS empty bulk arguments ("$0\r\n\r\n", 6 bytes each) at once, then
 * trickles the next arguments one byte every TRICKLE_US, for SECONDS
 * seconds, while a second client sends PING one at a time. It prints the
 * CPU that ctxd used during the trickle (from /proc/PID/stat), the bytes
 * the trickle sent, and the PING round trips (median, max), and the same
 * with 10 arguments buffered instead (the control).
 *
 * Build and run (from the worktree, after `make build`):
 *   cc -O2 -g tests/probes/probe8_prefetch_scan.c -o /tmp/probe8_prefetch_scan
 *   /tmp/probe8_prefetch_scan build/ctxd
 * Exit status 1 if ctxd used over a fifth of a CPU for the trickle and over
 * 10 times the control's share (the defect), 0 otherwise.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { ARGS = 900000, SECONDS = 4, TRICKLE_US = 1000 };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(int port)
{
	for (int i = 0; i < 500; i++) {
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
	return -1;
}

static double cpu_seconds(pid_t pid)
{
	char path[64], buf[2048];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f))
		return -1;
	fclose(f);
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	/* fields after the name: state(3) ... utime(14) stime(15) */
	sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

typedef struct pinger {
	int fd;
	volatile bool stop;
	double rtt[20000];
	size_t n;
} pinger;

/* PING one at a time, every 10 ms, until stopped: the other clients. */
static void *ping_main(void *p)
{
	pinger *g = p;
	while (!g->stop && g->n < 20000) {
		char r[16];
		double p0 = now();
		if (!send_all(g->fd, "PING\r\n", 6) || recv(g->fd, r, sizeof(r), 0) <= 0)
			break;
		g->rtt[g->n++] = now() - p0;
		usleep(10000);
	}
	return NULL;
}

/* One phase: `big` buffered first (or a small request), then the trickle
 * and the pings. Returns ctxd's CPU share during the trickle; *per_byte its
 * CPU seconds per byte trickled. */
static double phase(pid_t pid, int port, bool big, const char *what, double *per_byte)
{
	int a = dial(port), v = dial(port);
	if (a < 0 || v < 0)
		exit(2);
	/* The same unfinished request either way: ARGS arguments, or 10. */
	size_t nargs = big ? ARGS : 10;
	char head[32];
	int hn = snprintf(head, sizeof(head), "*1048576\r\n");
	size_t n = (size_t)hn + nargs * 6;
	char *buf = malloc(n);
	memcpy(buf, head, (size_t)hn);
	for (size_t i = 0; i < nargs; i++)
		memcpy(buf + hn + i * 6, "$0\r\n\r\n", 6);
	if (!send_all(a, buf, n))
		exit(2);
	free(buf);
	sleep(1); /* let it take in what was sent */
	static const char arg[] = "$1\r\nx\r\n";
	static pinger g;
	memset(&g, 0, sizeof(g));
	g.fd = v;
	pthread_t th;
	pthread_create(&th, NULL, ping_main, &g);
	double c0 = cpu_seconds(pid), t0 = now();
	size_t sent = 0;
	while (now() - t0 < SECONDS) {
		if (!send_all(a, &arg[sent % 7], 1))
			break;
		sent++;
		usleep(TRICKLE_US);
	}
	double c1 = cpu_seconds(pid), t1 = now();
	g.stop = true;
	pthread_join(th, NULL);
	qsort(g.rtt, g.n, sizeof(double), cmp_d);
	printf("%-34s trickle %zu bytes in %.1f s: ctxd CPU %.2f s (%.0f%% of a core); "
	       "PING rtt median %.2f ms, max %.2f ms (%zu pings)\n",
	       what, sent, t1 - t0, c1 - c0, 100 * (c1 - c0) / (t1 - t0),
	       g.n ? g.rtt[g.n / 2] * 1e3 : -1, g.n ? g.rtt[g.n - 1] * 1e3 : -1, g.n);
	fflush(stdout);
	close(a);
	close(v);
	*per_byte = sent ? (c1 - c0) / (double)sent : 0;
	return (c1 - c0) / (t1 - t0);
}

int main(int argc, char **argv)
{
	const char *bin = argc > 1 ? argv[1] : "build/ctxd";
	int port = 20000 + (int)(getpid() % 20000);
	char ports[16];
	snprintf(ports, sizeof(ports), "%d", port);
	pid_t pid = fork();
	if (pid == 0) {
		execl(bin, bin, "--port", ports, "--loops", "1", "--durability", "none",
		      "--loglevel", "warning", (char *)NULL);
		_exit(127);
	}
	int fd = dial(port);
	if (fd < 0) {
		fprintf(stderr, "ctxd did not start\n");
		return 2;
	}
	close(fd);
	double cb, ab;
	double control = phase(pid, port, false, "10 arguments buffered (control):", &cb);
	double attack = phase(pid, port, true, "900,000 arguments buffered:", &ab);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	bool bad = attack > 0.2 && attack > 10 * control;
	printf(bad ? "DEFECT: a trickle of under a kilobyte a second keeps ctxd's loop busy "
	             "(%.0f%% of a core, %.2f ms of CPU per byte; control %.0f%%, %.4f ms)\n"
	           : "ok: %.0f%% of a core, %.2f ms per byte (control %.0f%%, %.4f ms)\n",
	       100 * attack, ab * 1e3, 100 * control, cb * 1e3);
	return bad;
}
