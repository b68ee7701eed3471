/*
 * suclient.h - the client side shared by ctxd's tests over the wire
 * (test_server.c, test_commands.c, test_cov_conn.c, test_cov_data.c,
 * test_exec_atomic.c, test_robust.c, test_dbsize.c, test_pipeline_prefetch.c):
 * a raw connection that reads whole RESP replies, hiredis helpers, one ctxd
 * for a whole program (SU_GROUP_SERVER; test_dbsize.c and
 * test_pipeline_prefetch.c still have their own), a test's own server (own,
 * free_own), a server whose fsyncs a test holds (start_stalled) and
 * EXPECT_* checks. Static
 * inline functions: each test program includes it once. Needs cmocka.h,
 * hiredis.h and serverutil.h first.
 */
#ifndef CTXD_SUCLIENT_H
#define CTXD_SUCLIENT_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- raw replies ---------------------------------------------------------------------- */

static inline size_t reply_len(const char *b, size_t n)
{
	if (n == 0)
		return 0;
	const char *nl = memchr(b, '\n', n);
	if (!nl)
		return 0;
	size_t hl = (size_t)(nl - b) + 1;
	long long v = atoll(b + 1);
	switch (b[0]) {
	case '$':
	case '=':
	case '!':
		if (v < 0)
			return hl;
		return n >= hl + (size_t)v + 2 ? hl + (size_t)v + 2 : 0;
	case '*':
	case '~':
	case '>':
	case '%': {
		long long items = v < 0 ? 0 : b[0] == '%' ? v * 2 : v;
		size_t off = hl;
		for (long long i = 0; i < items; i++) {
			size_t k = reply_len(b + off, n - off);
			if (!k)
				return 0;
			off += k;
		}
		return off;
	}
	default:
		return hl;
	}
}

typedef struct rawconn {
	int fd;
	char buf[1 << 20];
	size_t len;
} rawconn;

static inline rawconn *raw_open(const su_server *s)
{
	rawconn *r = calloc(1, sizeof(*r));
	r->fd = su_connect(s);
	assert_true(r->fd >= 0);
	return r;
}

static inline void raw_close(rawconn *r)
{
	close(r->fd);
	free(r);
}

/* The next reply (NUL-terminated, static), or NULL when the connection
 * closed, no byte came for timeout_ms, or the reply does not fit the buffer. */
static inline const char *raw_try_next(rawconn *r, int timeout_ms)
{
	static char out[1 << 20];
	for (;;) {
		size_t k = reply_len(r->buf, r->len);
		if (k) {
			size_t c = k < sizeof(out) - 1 ? k : sizeof(out) - 1;
			memcpy(out, r->buf, c);
			out[c] = '\0';
			memmove(r->buf, r->buf + k, r->len - k);
			r->len -= k;
			return out;
		}
		if (r->len == sizeof(r->buf))
			return NULL;
		size_t got = su_recv(r->fd, r->buf + r->len, 1, timeout_ms);
		if (!got)
			return NULL;
		r->len += got;
	}
}

/* The next reply (NUL-terminated, static); fails the test on EOF/timeout. */
static inline const char *raw_next(rawconn *r)
{
	const char *out = raw_try_next(r, 120000); /* a hang detector, as hconn's */
	if (!out)
		fail_msg("no reply (connection closed, 120 s passed, or over 1 MiB)");
	return out;
}

static inline void raw_expect(rawconn *r, const char *send, const char *want_prefix)
{
	if (send)
		assert_true(su_send(r->fd, send, strlen(send)));
	const char *out = raw_next(r);
	if (strncmp(out, want_prefix, strlen(want_prefix)) != 0)
		fail_msg("sent %s: got '%.300s', want prefix '%s'", send ? send : "", out,
		         want_prefix);
}

/* ---- hiredis helpers ----------------------------------------------------------------------- */

static inline redisContext *hconn(const su_server *s)
{
	redisContext *c = redisConnect("127.0.0.1", s->port);
	assert_non_null(c);
	assert_int_equal(c->err, 0);
	/* A hang detector, not a deadline: a sanitizer build on a loaded 2-CPU
	 * machine took over 30 s to answer an INFO behind 96 MiB of replies
	 * (test_r19_obuf_srv, round 20); ctest's TIMEOUT bounds the test. */
	struct timeval tv = {120, 0};
	redisSetTimeout(c, tv);
	return c;
}

static inline redisReply *vcmd(redisContext *c, const char *fmt, va_list ap)
{
	redisReply *r = redisvCommand(c, fmt, ap);
	if (!r)
		fail_msg("no reply to '%s': %s", fmt, c->errstr);
	return r;
}

static inline redisReply *cmd(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = vcmd(c, fmt, ap);
	va_end(ap);
	return r;
}

/* The integer reply to a command; fails the test on any other reply. */
static inline long long cmd_int(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = vcmd(c, fmt, ap);
	va_end(ap);
	if (r->type != REDIS_REPLY_INTEGER)
		fail_msg("%s: type %d '%s', want an integer", fmt, r->type, r->str ? r->str : "");
	long long v = r->integer;
	freeReplyObject(r);
	return v;
}

/* The value of "field:" in an INFO text (malloc'd), or NULL. */
static inline char *info_field(redisContext *c, const char *section, const char *field)
{
	redisReply *r = cmd(c, "INFO %s", section);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	char key[128];
	snprintf(key, sizeof(key), "%s:", field);
	const char *p = strstr(r->str, key);
	char *v = NULL;
	if (p) {
		p += strlen(key);
		v = strndup(p, strcspn(p, "\r\n"));
	}
	freeReplyObject(r);
	return v;
}

static inline long long info_int(redisContext *c, const char *section, const char *field)
{
	char *v = info_field(c, section, field);
	assert_non_null(v);
	long long x = atoll(v);
	free(v);
	return x;
}

/* Wait (no deadline but the test's timeout) until INFO's connected_clients
 * is n: a client's close, su_start's readiness probe's too, reaches the
 * server some time after the client returns from it. */
static inline void wait_connected(redisContext *c, long long n)
{
	while (info_int(c, "clients", "connected_clients") != n)
		usleep(10000);
}

/* Whether a client with this name is in CLIENT LIST. */
static inline bool client_listed(redisContext *c, const char *name)
{
	redisReply *r = cmd(c, "CLIENT LIST");
	char want[80];
	snprintf(want, sizeof(want), " name=%s ", name);
	bool found = strstr(r->str, want) != NULL;
	freeReplyObject(r);
	return found;
}

/* CONFIG GET name's value must be want; fails the test naming both. */
static inline void expect_config(redisContext *c, const char *name, const char *want)
{
	redisReply *r = cmd(c, "CONFIG GET %s", name);
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 2);
	if (strcmp(r->element[1]->str, want) != 0)
		fail_msg("CONFIG GET %s: '%s', want '%s'", name, r->element[1]->str, want);
	freeReplyObject(r);
}

/* ctxd: drop every context, empty ones too (FLUSHALL leaves those). */
static inline void drop_all_contexts(redisContext *c)
{
	for (;;) {
		redisReply *r = cmd(c, "CTX.LIST COUNT 1000");
		assert_int_equal(r->type, REDIS_REPLY_ARRAY);
		redisReply *ids = r->element[1];
		for (size_t i = 0; i < ids->elements; i++)
			freeReplyObject(cmd(c, "CTX.DROP %b", ids->element[i]->str,
			                    (size_t)ids->element[i]->len));
		bool done = r->element[0]->len == 0;
		freeReplyObject(r);
		if (done)
			break;
	}
}

/* ---- one ctxd for all the tests of a program ------------------------------------------------ */

/* SU_GROUP_SERVER(name) defines `srv` and the group setup and teardown that
 * start it (su_start(name), default options) before the first test and, after
 * the last, stop it (SIGTERM: it must exit with status 0) and remove its
 * directory: cmocka_run_group_tests(tests, setup, teardown). */
/* The server of a test file and the group teardown that stops it (it must
 * exit 0 on SIGTERM) and frees it; for a file whose setup starts srv in a
 * way of its own (Redis instead, a preloaded probe). */
#define SU_SERVER_TEARDOWN                                                                         \
	static su_server *srv;                                                                     \
	static int teardown(void **state)                                                          \
	{                                                                                          \
		(void)state;                                                                       \
		assert_int_equal(su_stop(srv), 0);                                                 \
		su_free(srv);                                                                      \
		return 0;                                                                          \
	}

/* The same with the plain setup: ctxd started with the default options. */
#define SU_GROUP_SERVER(name)                                                                      \
	SU_SERVER_TEARDOWN                                                                         \
	static int setup(void **state)                                                             \
	{                                                                                          \
		(void)state;                                                                       \
		srv = su_start(name, NULL);                                                        \
		return 0;                                                                          \
	}

/* The error reply must be exactly `want`. */
#define EXPECT_ERR_EXACT(c, want, ...)                                                             \
	do {                                                                                       \
		redisReply *r_ = cmd(c, __VA_ARGS__);                                              \
		if (r_->type != REDIS_REPLY_ERROR || strcmp(r_->str, want) != 0)                   \
			fail_msg("%s: type %d '%s', want error '%s'", #__VA_ARGS__, r_->type,      \
			         r_->str ? r_->str : "", want);                                    \
		freeReplyObject(r_);                                                               \
	} while (0)

#define EXPECT_STATUS(c, want, ...)                                                                \
	do {                                                                                       \
		redisReply *r_ = cmd(c, __VA_ARGS__);                                              \
		if ((r_->type != REDIS_REPLY_STATUS && r_->type != REDIS_REPLY_STRING) ||          \
		    strcmp(r_->str, want) != 0)                                                    \
			fail_msg("%s: type %d '%s', want '%s'", #__VA_ARGS__, r_->type,            \
			         r_->str ? r_->str : "", want);                                    \
		freeReplyObject(r_);                                                               \
	} while (0)

#define EXPECT_ERR(c, want, ...)                                                                   \
	do {                                                                                       \
		redisReply *r_ = cmd(c, __VA_ARGS__);                                              \
		if (r_->type != REDIS_REPLY_ERROR || strncmp(r_->str, want, strlen(want)) != 0)    \
			fail_msg("%s: type %d '%s', want error '%s'", #__VA_ARGS__, r_->type,      \
			         r_->str ? r_->str : "", want);                                    \
		freeReplyObject(r_);                                                               \
	} while (0)

#define EXPECT_INT(c, want, ...)                                                                   \
	do {                                                                                       \
		redisReply *r_ = cmd(c, __VA_ARGS__);                                              \
		if (r_->type != REDIS_REPLY_INTEGER || r_->integer != (want))                      \
			fail_msg("%s: type %d '%s' %lld, want :%lld", #__VA_ARGS__, r_->type,      \
			         r_->str ? r_->str : "", r_->integer, (long long)(want));          \
		freeReplyObject(r_);                                                               \
	} while (0)

#define EXPECT_NIL(c, ...)                                                                         \
	do {                                                                                       \
		redisReply *r_ = cmd(c, __VA_ARGS__);                                              \
		if (r_->type != REDIS_REPLY_NIL)                                                   \
			fail_msg("%s: type %d, want nil", #__VA_ARGS__, r_->type);                 \
		freeReplyObject(r_);                                                               \
	} while (0)

/* ---- a test's own server -------------------------------------------------------------- */

/* A server one test starts for itself (su_start, possibly restarted), stopped
 * and removed by the free_own teardown, also when the test failed (cmocka
 * jumps out of it). */
static su_server *own __attribute__((unused));

static inline int free_own(void **state)
{
	(void)state;
	su_free(own);
	own = NULL;
	return 0;
}

/* ---- a server whose fsyncs a test holds (the syncstall shim) ------------------------- */

/* While the file named stall_file exists, the shim holds the server's
 * fsyncs (tests/server/preload/syncstall.c). */
static char stall_file[700] __attribute__((unused));

/* Teardown: let the syncs go (else the stop would wait for one forever),
 * then free_own. */
static inline int free_stalled(void **state)
{
	if (stall_file[0])
		unlink(stall_file);
	return free_own(state);
}

/* Start own (durability always, one loop) with the shim at `shim`
 * preloaded, stall_file set to a fresh name that does not exist yet: the
 * test creates it to hold the syncs and removes it to let them go. */
static inline void start_stalled(const char *name, const char *shim)
{
	static const char *const args[] = {"--durability", "always", "--loops", "1", NULL};
	char tmpl[] = "/tmp/ctxd-stall-XXXXXX";
	int tfd = mkstemp(tmpl);
	assert_true(tfd >= 0);
	close(tfd);
	unlink(tmpl);
	snprintf(stall_file, sizeof(stall_file), "%s", tmpl);
	setenv("LD_PRELOAD", shim, 1);
	setenv("SYNCSTALL_FILE", stall_file, 1);
	own = su_start(name, args);
	unsetenv("LD_PRELOAD");
	unsetenv("SYNCSTALL_FILE");
}

#endif
