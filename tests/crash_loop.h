/*
 * crash_loop.h - the harness of the crash loops that kill -9 a forked
 * writer process in the middle of its commits (and may then cut the power:
 * vfs_sim) and check the recovered store in a forked checker against what
 * the writer's threads had acknowledged. Shared by test_powerloss.c and
 * test_r22_crash.c: include it once, in the test program itself, after
 * testutil.h.
 *
 * The children and the test talk through `crash`, memory shared with every
 * process forked after crash_setup: for each writer thread the operation in
 * flight (noted before the call) and the last acknowledged (noted after it
 * returned CTX_OK), whether the writer's open returned, and why a child
 * failed. crash_setup maps, in the same mapping, the test's own shared state.
 */
#ifndef CTX_TESTS_CRASH_LOOP_H
#define CTX_TESTS_CRASH_LOOP_H

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vfs.h"

#define CRASH_WRITERS 8 /* threads of the writer process */

typedef struct crash_shared {
	_Atomic uint64_t attempted[CRASH_WRITERS]; /* thread t's operation in flight */
	_Atomic uint64_t acked[CRASH_WRITERS];     /* its last acknowledged one */
	atomic_bool opened;                        /* the writer's open returned */
	char fail[1024];                           /* why a child failed */
} crash_shared;

static crash_shared *crash;
static size_t crash_mapped;

/* Maps `crash` and, after it, own bytes for the test's own shared state
 * (returned), all zeroed (anonymous memory). */
static void *crash_setup(size_t own)
{
	size_t head = (sizeof(crash_shared) + 63) & ~(size_t)63; /* the test's part aligned */
	crash_mapped = head + own;
	void *p =
	    mmap(NULL, crash_mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	crash = p;
	return (char *)p + head;
}

static void crash_teardown(void)
{
	munmap(crash, crash_mapped);
	crash = NULL;
}

/* In a child: why it fails, for the parent's message. */
static __attribute__((format(printf, 1, 2))) void crash_failf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(crash->fail, sizeof(crash->fail), fmt, ap);
	va_end(ap);
}

/* In a checker: unless cond, say why and return 1. */
#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			crash_failf(__VA_ARGS__);                                                  \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)

/* fork, with nothing buffered for the child to print again. */
static pid_t crash_fork(void)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	return pid;
}

static long crash_env_long(const char *name, long fallback)
{
	const char *e = getenv(name);
	return e && atol(e) > 0 ? atol(e) : fallback;
}

/* ---- the writer process ----------------------------------------------------------- */

/* Thread t of the writer: writes until the kill (it never returns), noting
 * each operation in crash->attempted[t] before the call and in
 * crash->acked[t] once it returned CTX_OK. */
typedef void crash_thread_fn(ctx_store *s, int t);

typedef struct crash_writer {
	ctx_store *s;
	int t;
	crash_thread_fn *run;
} crash_writer;

static void *crash_writer_thread(void *arg)
{
	crash_writer *w = arg;
	w->run(w->s, w->t);
	return NULL;
}

static _Noreturn void crash_writer_main(const ctx_options *o, crash_thread_fn *run)
{
	alarm(120); /* if the parent is gone */
	ctx_store *s = NULL;
	ctx_status st = ctx_open(o, &s);
	if (st != CTX_OK) {
		crash_failf("writer: ctx_open: %s: %s", ctx_strerror(st), ctx_last_error());
		_exit(3);
	}
	atomic_store(&crash->opened, true);
	static crash_writer w[CRASH_WRITERS];
	pthread_t th;
	for (int t = 0; t < CRASH_WRITERS; t++) {
		w[t] = (crash_writer){s, t, run};
		if (pthread_create(&th, NULL, crash_writer_thread, &w[t]) != 0)
			_exit(6);
	}
	for (;;)
		pause();
}

/* The crash of iteration it: forks the writer process (the store o, the threads
 * run), waits (up to 60 s) for its open to return, lets it write after_us
 * more and kills it -9; the test fails if it exited by itself. With power
 * (a random state), the writer runs under vfs_sim (what it synced under
 * o->dir is durable) and the kill is followed by a power cut drawn from
 * *power: every 4 KiB page of each file's unsynced bytes kept, lost (zeros
 * or garbage) or kept as a random prefix, the size whole or cut, and half of
 * the time the directory entries never fsynced lost too. */
static void crash_writer_killed(long it, const ctx_options *o, crash_thread_fn *run,
                                useconds_t after_us, uint64_t *power)
{
	atomic_store(&crash->opened, false);
	if (power) {
		assert_true(vfs_sim_enable());
		vfs_sim_durable_root(o->dir);
	}
	pid_t pid = crash_fork();
	if (pid == 0)
		crash_writer_main(o, run);
	for (int i = 0; i < 600000 && !atomic_load(&crash->opened) && !crash->fail[0]; i++)
		usleep(100);
	usleep(after_us);
	kill(pid, SIGKILL);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		fail_msg("iteration %ld: the writer exited (status 0x%x): %s", it, status,
		         crash->fail);
	if (power) {
		unsigned how = VFS_SIM_PAGES | (test_rand_below(power, 2) ? VFS_SIM_ENTRIES : 0);
		vfs_sim_crash_with(how, (unsigned)test_rand(power));
		vfs_sim_disable();
	}
}

#endif
