/* serverutil.h - start and stop build/ctxd for the server tests. */
#ifndef CTXD_SERVERUTIL_H
#define CTXD_SERVERUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct su_server {
	pid_t pid;
	int port;
	char dir[512];
	char log[600];
} su_server;

/* Start $CTXD_BIN (or ./ctxd) on a free port with a fresh data directory
 * named after `name`, with extra arguments (NULL-terminated list, may be
 * NULL); waits until it accepts connections. Aborts the test on failure. */
su_server *su_start(const char *name, const char *const *extra);
/* Start redis-server (from PATH) the same way, without persistence, for the
 * tests that check their expectations against Redis (CTXD_TEST_REDIS=1);
 * stop and free it with su_stop and su_free. */
su_server *su_start_redis(const char *name);
/* Start again on the same directory (after su_stop/su_kill9), on the same
 * port unless another process took it meanwhile (then on another: s->port). */
void su_restart(su_server *s, const char *const *extra);
/* SIGTERM and wait; returns the exit status (as waitpid's WEXITSTATUS, or
 * 128+signal). */
int su_stop(su_server *s);
void su_kill9(su_server *s);
void su_free(su_server *s); /* stops if running, removes the directory */
/* A raw TCP connection to the server (blocking fd). */
int su_connect(const su_server *s);
/* Send all bytes; false on error. */
bool su_send(int fd, const void *p, size_t n);
/* Read until `n` bytes or timeout_ms passes; returns bytes read (0 = EOF). */
size_t su_recv(int fd, char *buf, size_t n, int timeout_ms);
/* Read until the connection is closed by the server (true) or timeout. */
bool su_wait_closed(int fd, int timeout_ms);
/* Resident memory of a process, bytes. */
size_t su_rss(pid_t pid);
/* Whether the process is still alive. */
bool su_alive(const su_server *s);

#endif
