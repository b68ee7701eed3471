/*
 * test_r19_flake.c - one ctxd to a port (round 19, r19-flake).
 *
 * The loops' listening sockets share their port with SO_REUSEPORT, which
 * the kernel grants to any socket of the same user: until round 19 a second
 * ctxd started on the port of a running one bound and listened too, and
 * new connections were spread over the two servers (two stores behind one
 * port). The test suite could meet it: two tests' servers picked the same
 * free port, and each test's connections went to either server. Now the
 * first loop takes a guard named after the port (net.c, bind_socket) and a
 * second ctxd on a held port exits 1 at start, "Address already in use".
 *
 * Checked: a second ctxd on a running one's port exits 1 saying so, and
 * while it runs no connection to the port reaches it (INFO's process_id is
 * always the first server's); the port is free again once the first one
 * stopped (SIGTERM) or was killed (SIGKILL): a ctxd started on it then
 * serves it; --port 0 still takes any free port, and two of them do not
 * share one. Fails without the guard: the second ctxd keeps running and
 * some connection lands on it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "serverutil.h"

#include "suclient.h"

/* ctxd on `port` with its own directory `dir`, output to `log`: its pid. */
static pid_t start_raw(int port, const char *dir, const char *log)
{
	const char *bin = getenv("CTXD_BIN");
	if (!bin)
		bin = "./ctxd";
	char p[16];
	snprintf(p, sizeof(p), "%d", port);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(bin, bin, "--port", p, "--dir", dir, "--loops", "2", "--loglevel", "notice",
		      (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* INFO server's process_id of a new connection to port. */
static long process_of(int port)
{
	su_server at = {.port = port};
	redisContext *c = hconn(&at);
	long pid = (long)info_int(c, "server", "process_id");
	redisFree(c);
	return pid;
}

static bool file_has(const char *path, const char *text)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	char line[1024];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, text) != NULL;
	fclose(f);
	return found;
}

static void paths(char *dir, char *log, size_t cap, const char *name)
{
	const char *tmp = getenv("CTX_TEST_TMP");
	if (!tmp)
		tmp = "/tmp";
	mkdir(tmp, 0755);
	snprintf(dir, cap, "%s/r19-flake-%s-%d", tmp, name, (int)getpid());
	snprintf(log, cap, "%s.log", dir);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, log);
	assert_int_equal(system(cmd), 0);
}

static void remove_paths(const char *dir, const char *log)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, log);
	assert_int_equal(system(cmd), 0);
}

static void test_second_server_on_a_held_port_exits(void **state)
{
	(void)state;
	own = su_start("r19-held", NULL);
	char dir[512], log[600];
	paths(dir, log, sizeof(dir), "second");
	pid_t second = start_raw(own->port, dir, log);
	/* Until the second one exits, every connection must reach the first
	 * (with the second listening too, the kernel gives it some: the
	 * test then fails here, soon). */
	int st = 0, polls = 0;
	while (waitpid(second, &st, WNOHANG) == 0) {
		long got = process_of(own->port);
		if (got != (long)own->pid) {
			kill(second, SIGKILL);
			waitpid(second, NULL, 0);
			fail_msg("a connection to port %d reached process %ld, not the server "
			         "holding it (%d) after %d polls",
			         own->port, got, (int)own->pid, polls);
		}
		polls++;
	}
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	assert_true(file_has(log, "Address already in use"));
	/* the first one serves on, alone */
	for (int i = 0; i < 20; i++)
		assert_int_equal(process_of(own->port), (long)own->pid);
	assert_int_equal(su_stop(own), 0);
	remove_paths(dir, log);
}

/* A ctxd started on port, freed by a server that is gone, serves it: it
 * answers with its own pid. Another process may have taken the port since
 * (tests run in parallel): a start that fails while something else
 * accepts on the port is not the guard's doing, and is only noted. */
static void expect_serves(int port, const char *name)
{
	char dir[512], log[600];
	paths(dir, log, sizeof(dir), name);
	pid_t pid = start_raw(port, dir, log);
	/* wait until it is ready (its log says so) or has exited */
	int st = 0;
	bool ready = false;
	while (!ready) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			su_server at = {.port = port};
			int fd = su_connect(&at);
			if (fd >= 0 && file_has(log, "Address already in use")) {
				close(fd);
				printf("note: port %d was taken by another process meanwhile\n",
				       port);
				remove_paths(dir, log);
				return;
			}
			fail_msg("ctxd on the freed port %d exited %d (see %s)", port,
			         WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), log);
		}
		ready = file_has(log, "ready to accept connections");
		if (!ready)
			usleep(10000);
	}
	assert_int_equal(process_of(port), (long)pid);
	kill(pid, SIGTERM);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	remove_paths(dir, log);
}

static void test_port_free_after_stop_and_kill(void **state)
{
	(void)state;
	own = su_start("r19-free", NULL);
	int port = own->port;
	assert_int_equal(su_stop(own), 0);
	expect_serves(port, "after-stop");
	su_restart(own, NULL);
	port = own->port;
	su_kill9(own);
	expect_serves(port, "after-kill");
}

/* --port 0: any free port, each server its own. */
static void test_port_zero(void **state)
{
	(void)state;
	char d1[512], l1[600], d2[512], l2[600];
	paths(d1, l1, sizeof(d1), "zero1");
	paths(d2, l2, sizeof(d2), "zero2");
	pid_t p1 = start_raw(0, d1, l1), p2 = start_raw(0, d2, l2);
	int port[2] = {0, 0};
	const char *logs[2] = {l1, l2};
	for (int i = 0; i < 2; i++) {
		while (!port[i]) {
			int st;
			pid_t p = i == 0 ? p1 : p2;
			if (waitpid(p, &st, WNOHANG) == p)
				fail_msg("ctxd --port 0 exited %d (see %s)",
				         WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
				         logs[i]);
			FILE *f = fopen(logs[i], "r");
			char line[1024];
			while (f && fgets(line, sizeof(line), f)) {
				const char *at = strstr(line, "(redis-cli -p ");
				if (at)
					port[i] = atoi(at + strlen("(redis-cli -p "));
			}
			if (f)
				fclose(f);
			if (!port[i])
				usleep(10000);
		}
	}
	assert_int_not_equal(port[0], port[1]);
	assert_int_equal(process_of(port[0]), (long)p1);
	assert_int_equal(process_of(port[1]), (long)p2);
	int st;
	kill(p1, SIGTERM);
	kill(p2, SIGTERM);
	assert_int_equal(waitpid(p1, &st, 0), p1);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(waitpid(p2, &st, 0), p2);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	remove_paths(d1, l1);
	remove_paths(d2, l2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_second_server_on_a_held_port_exits, free_own),
	    cmocka_unit_test_teardown(test_port_free_after_stop_and_kill, free_own),
	    cmocka_unit_test(test_port_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
