/* testutil.h - helpers shared by the test programs. */
#ifndef CTX_TESTUTIL_H
#define CTX_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include "ctx.h"

/* Open a memory-only store with default options, failing the test if not. */
ctx_store *test_open_memory(void);

/* A fresh, empty directory for this test under $CTX_TEST_TMP (or /tmp). */
char *test_make_dir(const char *name);
void test_remove_dir(const char *path);

/* Close s (with a dir) without deleting what its final checkpoint covers
 * (the checkpoint before it, the log segments): the directory a crash
 * between that checkpoint's rename and its deletes leaves. With the
 * checkpoints then removed, the log alone holds the whole history, as a
 * kill -9 before any checkpoint leaves it. */
void test_close_keeping_log(ctx_store *s);

/* Seconds since an arbitrary start, for bounding stress loops. */
double test_now(void);

/* Stress scale: 1 normally, larger when CTX_STRESS_SCALE is set. */
int test_scale(void);

#define assert_ok(call) assert_int_equal((call), CTX_OK)

/* Checks inside worker threads (cmocka's asserts are not thread-safe):
 * count failures, keep the first message, assert in the main thread. */
void t_fail_detail(int line, const char *what, long long a, const char *detail);
void t_fail(int line, const char *what, long long a);
void reset_failures(void);
long thread_failures(void); /* failed checks so far */
void assert_no_thread_failures(void);

#define T_CHECK(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			t_fail(__LINE__, #cond, 0);                                                \
	} while (0)
#define T_CHECK_STATUS(got, want)                                                                  \
	do {                                                                                       \
		ctx_status got_ = (got);                                                           \
		if (got_ != (want))                                                                \
			t_fail_detail(__LINE__, #got " == " #want, (long long)got_,                \
			              ctx_last_error());                                           \
	} while (0)

/* T_ASAN / T_TSAN: defined to 1 in an AddressSanitizer / ThreadSanitizer
 * build (gcc's and clang's ways of saying so). */
#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_TSAN 1
#endif
#endif

/* 1 in a normal build, larger in sanitizer builds (ASan 2, TSan 4): divide
 * stress iteration counts by it so that every build finishes in a
 * few seconds. */
int test_slowdown(void);

/* Iterations for a stress loop: normal * test_scale() / test_slowdown(), at
 * least minimum. */
long test_iters(long normal, long minimum);

/* A small, fast, seedable pseudo-random generator (splitmix64); each thread
 * keeps its own state. test_rand_below(st, n) is uniform enough in [0, n). */
uint64_t test_rand(uint64_t *state);
uint64_t test_rand_below(uint64_t *state, uint64_t n);

/* Wall-clock microseconds since 1970 (the clock ctx_state_*_us use). */
uint64_t test_wall_us(void);

/* A crash child: this test program run again in a fresh image (fork, then
 * exec of /proc/self/exe: no threads of the parent's tests behind it, which
 * ThreadSanitizer needs) as `/proc/self/exe --child ARG... FD`, where FD
 * is the write end of a pipe the child reports on; args is NULL-terminated
 * (at most 8). The program's main checks argv[1] for "--child". Returns the
 * child's pid; *rfd is the pipe's read end (the caller closes it). */
pid_t test_spawn_child(const char *const *args, int *rfd);
/* SIGKILL a child and reap it: its wait status. */
int test_kill_child(pid_t pid);

/* Seed for randomized tests: $CTX_TEST_SEED if set, else fixed default; the
 * seed is printed so that a failing run can be repeated. */
uint64_t test_seed(const char *test_name, uint64_t fallback);

/* A canonical text dump of every state of s: the contexts in id order, each
 * with its version, revision, key count, bytes and metadata count (and its
 * creation and commit times if with_times), then its pairs and its metadata
 * sorted by key; values over 256 bytes as their length and a hash. Two stores
 * hold the same states exactly when their dumps are equal. *keys_out (if not
 * NULL) receives the number of keys of all contexts. Free with free(). */
char *test_dump_store(ctx_store *s, bool with_times, uint64_t *keys_out);

/* Fail the test, showing the first differing line, if two dumps differ. */
void test_expect_same_dump(const char *want, const char *got, const char *what);

/* A growing NUL-terminated string: start from {0}; p is malloc'd (free it). */
typedef struct test_buf {
	char *p;
	size_t len, cap;
} test_buf;
void test_buf_add(test_buf *b, const void *p, size_t n);
/* Append printf-style text (at most 1023 bytes a call). */
void test_buf_printf(test_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The whole file at path (malloc'd, with a NUL after its *n bytes); fails
 * the test if it cannot be read. */
unsigned char *test_read_file(const char *path, size_t *n);
/* Write n bytes at p as the whole file at path; fails the test if it
 * cannot. */
void test_write_file(const char *path, const void *p, size_t n);
/* The path of the newest checkpoint (ckpt-R.ckpt) in dir (malloc'd), its R
 * in *rev (may be NULL); fails the test if there is none. */
char *test_newest_checkpoint(const char *dir, uint64_t *rev);
/* A fresh directory `name` (test_make_dir) holding only a copy of dir's
 * newest checkpoint: what that checkpoint alone recovers. Its R in *rev
 * and its size in *size (each may be NULL). */
char *test_checkpoint_alone(const char *dir, const char *name, uint64_t *rev, size_t *size);

/* Open a store with o (NULL: memory only, defaults), failing the test with
 * the directory, the status and ctx_last_error() if it does not open. */
ctx_store *test_open(const ctx_options *o);

/* Open dir with durability always and no checkpoint or log rotation
 * (checkpoint_bytes 1 TiB), so every sync the test sees is a commit's;
 * log_prealloc_bytes = prealloc (0: the default; 1: no zeroer thread). */
ctx_store *test_open_always(const char *dir, size_t prealloc);

/* The store's durable revision (ctx_durable_revision; the test fails if
 * it fails). */
uint64_t test_durable(ctx_store *s);

/* Run fn(NULL) on a new thread and wait for it (the test fails if the
 * thread cannot be made or joined): for what must happen on a thread of
 * its own, such as a block cache or a slab chunk left at its exit. */
void test_run_thread(void *(*fn)(void *));

/* Waits (10 s at most) until every revision handed out so far is durable:
 * the log's background writes are done, e.g. before injecting a fault that
 * only the next call should meet. */
void test_wait_durable(ctx_store *s);

/* Close *s and open it again with o: the dumps (test_dump_store, with or
 * without times) before and after must be equal, else the test fails
 * naming `what`. *s is the reopened store. */
void test_reopen_same(ctx_store **s, const ctx_options *o, bool with_times, const char *what);

/* ctx_put of NUL-terminated k = v in context id; fails the test (with the
 * status and ctx_last_error()) unless CTX_OK. */
void test_put_str(ctx_store *s, const char *id, const char *k, const char *v);

/* A transaction putting k = "v" in context id, committed with
 * ctx_txn_commit_nowait (no wait for durability); returns its revision.
 * Fails the test unless every step is CTX_OK. */
uint64_t test_commit_nowait(ctx_store *s, const char *id, const char *k);

/* Whether st holds k with the value want (NUL-terminated; want NULL: with
 * any value). */
bool test_state_has_str(const ctx_state *st, const char *k, const char *want);

/* Fail the test unless st holds k with the value v (NUL-terminated). */
void test_expect_str(const ctx_state *st, const char *k, const char *v);

/* Whether the version of id that ctx_get returns holds k = want (as
 * test_state_has_str); false when id is not there. */
bool test_has_str(ctx_store *s, const char *id, const char *k, const char *want);

/* The version of id that ctx_get returns (the test fails if it fails). */
uint64_t test_version_of(ctx_store *s, const char *id);

/* The watch's next pending event (ctx_watch_next, no wait); fails the test
 * if there is none. Free it with ctx_event_free. */
ctx_event *test_next_event(ctx_watch *w);

/* No event is pending on w (ctx_watch_next answers CTX_NOT_FOUND). */
void test_expect_no_event(ctx_watch *w);

/* Group or test setup and teardown that print how long each test took
 * (printed only: machines are noisy). */
int test_timer_start(void **state);
int test_timer_stop(void **state);
#define TEST_TIMED(f) cmocka_unit_test_setup_teardown(f, test_timer_start, test_timer_stop)

#endif
