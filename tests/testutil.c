/* testutil.c - helpers shared by the test programs. */
#include "testutil.h"
#include "vfs.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

ctx_store *test_open_memory(void)
{
	ctx_store *s = NULL;
	assert_int_equal(ctx_open(NULL, &s), CTX_OK);
	assert_non_null(s);
	return s;
}

char *test_make_dir(const char *name)
{
	const char *base = getenv("CTX_TEST_TMP");
	if (!base)
		base = "/tmp";
	mkdir(base, 0755);
	char *path = malloc(strlen(base) + strlen(name) + 32);
	assert_non_null(path);
	sprintf(path, "%s/%s.%d", base, name, (int)getpid());
	test_remove_dir(path);
	assert_int_equal(mkdir(path, 0755), 0);
	return path;
}

void test_remove_dir(const char *path)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fail_msg("could not remove %s", path);
}

void test_close_keeping_log(ctx_store *s)
{
	/* The files are kept by the close itself, not copied before it: a copy
	 * of a live store's directory can catch a segment the flusher is still
	 * writing (under durability none, nothing waits for it). */
	atomic_store(&ctx_vfs_faults.keep_unlinked, true);
	ctx_close(s);
	atomic_store(&ctx_vfs_faults.keep_unlinked, false);
}

double test_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int test_scale(void)
{
	const char *s = getenv("CTX_STRESS_SCALE");
	int n = s ? atoi(s) : 1;
	return n > 0 ? n : 1;
}

int test_slowdown(void)
{
#if defined(__SANITIZE_THREAD__)
	return 4;
#elif defined(__SANITIZE_ADDRESS__)
	return 2;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
	return 4;
#elif __has_feature(address_sanitizer)
	return 2;
#else
	return 1;
#endif
#else
	return 1;
#endif
}

long test_iters(long normal, long minimum)
{
	long n = normal * test_scale() / test_slowdown();
	return n < minimum ? minimum : n;
}

uint64_t test_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t test_rand_below(uint64_t *state, uint64_t n)
{
	return n ? test_rand(state) % n : 0;
}

uint64_t test_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

pid_t test_spawn_child(const char *const *args, int *rfd)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		char fd[16];
		snprintf(fd, sizeof fd, "%d", p[1]);
		const char *argv[12] = {"test-child", "--child"};
		size_t n = 2;
		while (*args && n < 10)
			argv[n++] = *args++;
		argv[n++] = fd;
		argv[n] = NULL;
		execv("/proc/self/exe", (char *const *)argv);
		_exit(9);
	}
	close(p[1]);
	*rfd = p[0];
	return pid;
}

int test_kill_child(pid_t pid)
{
	kill(pid, SIGKILL);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

uint64_t test_seed(const char *test_name, uint64_t fallback)
{
	const char *s = getenv("CTX_TEST_SEED");
	uint64_t seed = s ? strtoull(s, NULL, 0) : fallback;
	print_message("%s: seed %llu (set CTX_TEST_SEED to repeat)\n", test_name,
	              (unsigned long long)seed);
	return seed;
}

/* ---- growing strings --------------------------------------------------------- */

void test_buf_add(test_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		assert_non_null(b->p);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

void test_buf_printf(test_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(tmp));
	test_buf_add(b, tmp, (size_t)n);
}

/* ---- canonical dumps of a store ----------------------------------------------- */

/* Bytes as text: printable ones as they are, others as \xHH; long ones as
 * their length and FNV-1a hash. */
static void dump_bytes(test_buf *b, const void *p, size_t n)
{
	const unsigned char *c = p;
	if (n > 256) {
		uint64_t h = 0xcbf29ce484222325ull;
		for (size_t i = 0; i < n; i++)
			h = (h ^ c[i]) * 0x100000001b3ull;
		test_buf_printf(b, "<%zu bytes, hash %016llx>", n, (unsigned long long)h);
		return;
	}
	test_buf_add(b, "'", 1);
	for (size_t i = 0; i < n; i++) {
		if (c[i] >= 0x20 && c[i] < 0x7f && c[i] != '\\' && c[i] != '\'')
			test_buf_add(b, &c[i], 1);
		else
			test_buf_printf(b, "\\x%02x", c[i]);
	}
	test_buf_add(b, "'", 1);
}

typedef struct dump_pair {
	const void *k, *v;
	size_t kl, vl;
} dump_pair;

static int dump_pair_cmp(const void *a, const void *b)
{
	const dump_pair *x = a, *y = b;
	size_t n = x->kl < y->kl ? x->kl : y->kl;
	int c = memcmp(x->k, y->k, n);
	return c ? c : (x->kl > y->kl) - (x->kl < y->kl);
}

static void dump_map(test_buf *b, ctx_iter *it, const char *tag, size_t expect)
{
	size_t n = 0, cap = 16;
	dump_pair *ps = malloc(cap * sizeof(*ps));
	assert_non_null(ps);
	dump_pair p;
	while (ctx_iter_next(it, &p.k, &p.kl, &p.v, &p.vl)) {
		if (n == cap) {
			ps = realloc(ps, (cap *= 2) * sizeof(*ps));
			assert_non_null(ps);
		}
		ps[n++] = p;
	}
	assert_int_equal(n, expect);
	if (n > 1)
		qsort(ps, n, sizeof(*ps), dump_pair_cmp);
	for (size_t i = 0; i < n; i++) {
		test_buf_printf(b, "  %s ", tag);
		dump_bytes(b, ps[i].k, ps[i].kl);
		test_buf_add(b, " = ", 3);
		dump_bytes(b, ps[i].v, ps[i].vl);
		test_buf_add(b, "\n", 1);
	}
	free(ps);
}

char *test_dump_store(ctx_store *s, bool with_times, uint64_t *keys_out)
{
	test_buf b = {0};
	test_buf_add(&b, "", 0);
	ctx_list l;
	assert_int_equal(ctx_list_ids(s, NULL, NULL, 0, &l), CTX_OK);
	assert_int_equal(l.count, ctx_count(s));
	uint64_t keys = 0;
	for (size_t i = 0; i < l.count; i++) {
		ctx_state *st = NULL;
		assert_int_equal(ctx_get(s, l.ids[i], &st), CTX_OK);
		assert_string_equal(ctx_state_id(st), l.ids[i]);
		test_buf_printf(&b,
		                "ctx '%s' version %llu revision %llu keys %zu bytes %zu meta %zu",
		                l.ids[i], (unsigned long long)ctx_state_version(st),
		                (unsigned long long)ctx_state_revision(st), ctx_state_count(st),
		                ctx_state_bytes(st), ctx_state_meta_count(st));
		if (with_times)
			test_buf_printf(&b, " created %llu updated %llu",
			                (unsigned long long)ctx_state_created_us(st),
			                (unsigned long long)ctx_state_updated_us(st));
		test_buf_add(&b, "\n", 1);
		keys += ctx_state_count(st);
		ctx_iter *it = NULL;
		assert_int_equal(ctx_iter_begin(st, &it), CTX_OK);
		dump_map(&b, it, "k", ctx_state_count(st));
		ctx_iter_free(it);
		assert_int_equal(ctx_iter_meta_begin(st, &it), CTX_OK);
		dump_map(&b, it, "m", ctx_state_meta_count(st));
		ctx_iter_free(it);
		ctx_state_release(st);
	}
	ctx_list_free(&l);
	if (keys_out)
		*keys_out = keys;
	return b.p;
}

void test_expect_same_dump(const char *want, const char *got, const char *what)
{
	if (strcmp(want, got) == 0)
		return;
	size_t line = 1;
	const char *a = want, *b = got;
	while (*a && *a == *b) {
		if (*a == '\n')
			line++;
		a++;
		b++;
	}
	while (a > want && a[-1] != '\n') {
		a--;
		b--;
	}
	fail_msg("%s: stores differ at line %zu:\n  want: %.300s\n  got:  %.300s", what, line, a,
	         b);
}

/* ---- failures in worker threads ---------------------------------------------- */

static atomic_long t_failures;
static atomic_flag t_failure_noted = ATOMIC_FLAG_INIT;
static char t_first_failure[512];

void t_fail_detail(int line, const char *what, long long a, const char *detail)
{
	atomic_fetch_add(&t_failures, 1);
	if (!atomic_flag_test_and_set(&t_failure_noted))
		snprintf(t_first_failure, sizeof(t_first_failure), "line %d: %s (value %lld%s%s)",
		         line, what, a, detail ? ": " : "", detail ? detail : "");
}

void t_fail(int line, const char *what, long long a)
{
	t_fail_detail(line, what, a, NULL);
}

void reset_failures(void)
{
	atomic_store(&t_failures, 0);
	atomic_flag_clear(&t_failure_noted);
	t_first_failure[0] = '\0';
}

long thread_failures(void)
{
	return atomic_load(&t_failures);
}

void assert_no_thread_failures(void)
{
	long n = atomic_load(&t_failures);
	if (n)
		fail_msg("%ld failed checks in worker threads; first: %s", n, t_first_failure);
}

/* ---- files ------------------------------------------------------------------- */

unsigned char *test_read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot read %s: %s", path, strerror(errno));
	struct stat sb;
	assert_int_equal(fstat(fileno(f), &sb), 0);
	*n = (size_t)sb.st_size;
	unsigned char *p = malloc(*n + 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, *n, f), *n);
	p[*n] = 0;
	fclose(f);
	return p;
}

void test_write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		fail_msg("cannot write %s: %s", path, strerror(errno));
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

char *test_newest_checkpoint(const char *dir, uint64_t *rev)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	char *name = NULL;
	unsigned long long newest = 0;
	char path[4096];
	while ((e = readdir(d))) {
		unsigned long long v;
		char tail[8];
		if (sscanf(e->d_name, "ckpt-%16llx.ckp%1s", &v, tail) == 2 &&
		    (!name || v > newest)) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			free(name);
			name = strdup(path);
			newest = v;
		}
	}
	closedir(d);
	assert_non_null(name);
	if (rev)
		*rev = newest;
	return name;
}

char *test_checkpoint_alone(const char *dir, const char *name, uint64_t *rev, size_t *size)
{
	uint64_t r = 0;
	char *path = test_newest_checkpoint(dir, &r);
	size_t n = 0;
	unsigned char *p = test_read_file(path, &n);
	char *work = test_make_dir(name);
	char out[4096];
	snprintf(out, sizeof(out), "%s/ckpt-%016llx.ckpt", work, (unsigned long long)r);
	test_write_file(out, p, n);
	free(p);
	free(path);
	if (rev)
		*rev = r;
	if (size)
		*size = n;
	return work;
}

/* ---- stores, values and watches ---------------------------------------------- */

ctx_store *test_open(const ctx_options *o)
{
	ctx_store *s = NULL;
	ctx_status st = ctx_open(o, &s);
	if (st != CTX_OK)
		fail_msg("ctx_open(%s): %s: %s", o && o->dir ? o->dir : "memory", ctx_strerror(st),
		         ctx_last_error());
	assert_non_null(s);
	return s;
}

ctx_store *test_open_always(const char *dir, size_t prealloc)
{
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_ALWAYS;
	o.checkpoint_bytes = (size_t)1 << 40;
	if (prealloc)
		o.log_prealloc_bytes = prealloc;
	return test_open(&o);
}

uint64_t test_durable(ctx_store *s)
{
	uint64_t d = 0;
	assert_int_equal(ctx_durable_revision(s, &d), CTX_OK);
	return d;
}

void test_run_thread(void *(*fn)(void *))
{
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, fn, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

void test_wait_durable(ctx_store *s)
{
	uint64_t last = 0, durable = 0;
	(void)ctx_count_with_fields(s, &last);
	for (int i = 0; i < 10000; i++) {
		if (ctx_durable_revision(s, &durable) != CTX_OK || durable >= last)
			break;
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

void test_reopen_same(ctx_store **s, const ctx_options *o, bool with_times, const char *what)
{
	/* Changes committed without waiting (ctx_txn_commit_nowait,
	 * ctx_drop_nowait) become visible when durable, and ctx_close makes
	 * them durable: the dump of what the store shows is taken once every
	 * revision handed out is durable (10 s at most: a failed log never
	 * gets there, and then the close does not either). */
	test_wait_durable(*s);
	char *before = test_dump_store(*s, with_times, NULL);
	ctx_close(*s);
	*s = NULL;
	assert_ok(ctx_open(o, s));
	char *after = test_dump_store(*s, with_times, NULL);
	test_expect_same_dump(before, after, what);
	free(before);
	free(after);
}

void test_put_str(ctx_store *s, const char *id, const char *k, const char *v)
{
	ctx_status st = ctx_put(s, id, k, strlen(k), v, strlen(v), NULL);
	if (st != CTX_OK)
		fail_msg("put %s/%s: %s: %s", id, k, ctx_strerror(st), ctx_last_error());
}

uint64_t test_commit_nowait(ctx_store *s, const char *id, const char *k)
{
	ctx_txn *t = NULL;
	uint64_t rev = 0;
	ctx_status st = ctx_txn_begin(s, id, &t);
	if (st == CTX_OK && (st = ctx_txn_put(t, k, strlen(k), "v", 1)) != CTX_OK)
		ctx_txn_abort(t);
	else if (st == CTX_OK)
		st = ctx_txn_commit_nowait(t, 0, NULL, &rev);
	if (st != CTX_OK)
		fail_msg("nowait commit %s/%s: %s: %s", id, k, ctx_strerror(st), ctx_last_error());
	return rev;
}

bool test_state_has_str(const ctx_state *st, const char *k, const char *want)
{
	const void *v;
	size_t vl;
	if (!ctx_state_lookup(st, k, strlen(k), &v, &vl))
		return false;
	return !want || (vl == strlen(want) && memcmp(v, want, vl) == 0);
}

bool test_has_str(ctx_store *s, const char *id, const char *k, const char *want)
{
	ctx_state *st;
	if (ctx_get(s, id, &st) != CTX_OK)
		return false;
	bool r = test_state_has_str(st, k, want);
	ctx_state_release(st);
	return r;
}

void test_expect_str(const ctx_state *st, const char *k, const char *v)
{
	const void *got = NULL;
	size_t n = 0;
	if (!ctx_state_lookup(st, k, strlen(k), &got, &n))
		fail_msg("key '%s' missing in version %llu", k,
		         (unsigned long long)ctx_state_version(st));
	assert_int_equal(n, strlen(v));
	if (n)
		assert_memory_equal(got, v, n);
}

uint64_t test_version_of(ctx_store *s, const char *id)
{
	ctx_state *st = NULL;
	assert_ok(ctx_get(s, id, &st));
	assert_non_null(st);
	uint64_t v = ctx_state_version(st);
	ctx_state_release(st);
	return v;
}

ctx_event *test_next_event(ctx_watch *w)
{
	ctx_event *e = NULL;
	ctx_status st = ctx_watch_next(w, &e);
	if (st != CTX_OK)
		fail_msg("no event: %s", ctx_strerror(st));
	return e;
}

void test_expect_no_event(ctx_watch *w)
{
	ctx_event *e = NULL;
	assert_int_equal(ctx_watch_next(w, &e), CTX_NOT_FOUND);
}

/* ---- timing (printed, never asserted) ----------------------------------------- */

static double test_started;

int test_timer_start(void **state)
{
	(void)state;
	test_started = test_now();
	return 0;
}

int test_timer_stop(void **state)
{
	(void)state;
	print_message("  (%.2f s)\n", test_now() - test_started);
	return 0;
}
