/*
 * test_r16_review.c - round 16 review (r16-review) of round 15's context
 * table arrays (store.c, "Growing" and TABLE_MAP_BYTES): what happens when
 * the mapping of a big array fails, or the kernel has no
 * MADV_POPULATE_WRITE.
 *
 * This test is linked with -Wl,--wrap=mmap,--wrap=munmap,--wrap=madvise
 * (CMakeLists.txt), so the calls libctx.a makes go through the __wrap_*
 * functions below. They keep the anonymous mappings of table size (256 KiB
 * up to 1 GiB: not the pool's slab range, not a file) that are alive, can
 * fail those with ENOMEM (an RLIMIT_AS or overcommit refusal), and can
 * answer MADV_POPULATE_WRITE with EINVAL (a kernel older than 5.14).
 *
 * What is checked:
 * - creates with every big mapping refused: OK while the table has a free
 *   slot to spare, then CTX_NOMEM (ctx_create's documented error), with
 *   nothing half-published (the refused id absent, the count exact, every
 *   context found); once mappings work again the table grows and creates go
 *   on; every table mapping is given back at close;
 * - recovery of a directory whose contexts need a big array, with the
 *   mappings refused: ctx_open says CTX_NOMEM and leaves nothing behind
 *   (no mapping; the ASan build's leak check); opened again with mappings
 *   working, every context is there;
 * - no MADV_POPULATE_WRITE (EINVAL): the spare is made all the same, the
 *   growths work, every mapping is given back;
 * - drops after the spare was made (a spare of the wrong size, given back
 *   at the next growth or at close): no mapping is kept.
 */
/* (cmocka.h needs these first) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define T_SANITIZER 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define T_SANITIZER 1
#endif
#endif

/* ---- the wrapped mapping calls -------------------------------------------------- */

void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);
int __real_madvise(void *addr, size_t len, int advice);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __wrap_munmap(void *addr, size_t len);
int __wrap_madvise(void *addr, size_t len, int advice);

#define TABLE_LEN_MIN ((size_t)256 << 10)
#define TABLE_LEN_MAX ((size_t)1 << 30)
#define MAPS_MAX      64

static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	void *addr;
	size_t len;
} maps[MAPS_MAX];
static atomic_bool refuse_maps;      /* table-size mappings fail with ENOMEM */
static atomic_bool no_populate;      /* MADV_POPULATE_WRITE says EINVAL */
static atomic_long maps_refused;     /* since the last reset */
static atomic_long populates_asked;  /* MADV_POPULATE_WRITE calls on a table map */
static atomic_long maps_overflowed;  /* more than MAPS_MAX alive: the test's fault */

/* The length store.c maps an array of 2^k slots with (table_map_len). */
static bool table_sized(size_t len, int flags, int fd)
{
	if (fd != -1 || !(flags & MAP_ANONYMOUS) || len < TABLE_LEN_MIN || len >= TABLE_LEN_MAX)
		return false;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	for (size_t slots = 16384; slots * sizeof(ctab_slot) < TABLE_LEN_MAX; slots *= 2)
		if ((sizeof(ctab) + slots * sizeof(ctab_slot) + page - 1) / page * page == len)
			return true;
	return false;
}

static bool is_table_map(void *addr)
{
	bool found = false;
	pthread_mutex_lock(&maps_lock);
	for (int i = 0; i < MAPS_MAX && !found; i++)
		found = maps[i].addr == addr;
	pthread_mutex_unlock(&maps_lock);
	return found;
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	bool table = table_sized(len, flags, fd);
	if (table && atomic_load(&refuse_maps)) {
		atomic_fetch_add(&maps_refused, 1);
		errno = ENOMEM;
		return MAP_FAILED;
	}
	void *p = __real_mmap(addr, len, prot, flags, fd, off);
	if (table && p != MAP_FAILED) {
		pthread_mutex_lock(&maps_lock);
		int i = 0;
		while (i < MAPS_MAX && maps[i].addr)
			i++;
		if (i < MAPS_MAX) {
			maps[i].addr = p;
			maps[i].len = len;
		} else {
			atomic_fetch_add(&maps_overflowed, 1);
		}
		pthread_mutex_unlock(&maps_lock);
	}
	return p;
}

int __wrap_munmap(void *addr, size_t len)
{
	pthread_mutex_lock(&maps_lock);
	for (int i = 0; i < MAPS_MAX; i++) {
		if (maps[i].addr == addr && maps[i].len == len) {
			maps[i].addr = NULL;
			maps[i].len = 0;
		}
	}
	pthread_mutex_unlock(&maps_lock);
	return __real_munmap(addr, len);
}

int __wrap_madvise(void *addr, size_t len, int advice)
{
	if (advice == MADV_POPULATE_WRITE && is_table_map(addr)) {
		atomic_fetch_add(&populates_asked, 1);
		if (atomic_load(&no_populate)) {
			errno = EINVAL;
			return -1;
		}
	}
	return __real_madvise(addr, len, advice);
}

static int table_maps_alive(void)
{
	int n = 0;
	pthread_mutex_lock(&maps_lock);
	for (int i = 0; i < MAPS_MAX; i++)
		n += maps[i].addr != NULL;
	pthread_mutex_unlock(&maps_lock);
	return n;
}

static void reset_wraps(void)
{
	atomic_store(&refuse_maps, false);
	atomic_store(&no_populate, false);
	atomic_store(&maps_refused, 0);
	atomic_store(&populates_asked, 0);
	assert_int_equal(atomic_load(&maps_overflowed), 0);
	assert_int_equal(table_maps_alive(), 0);
}

/* ---- helpers --------------------------------------------------------------------- */

static bool present(ctx_store *s, const char *id)
{
	ctx_state *st = NULL;
	ctx_status r = ctx_get(s, id, &st);
	if (r == CTX_OK)
		ctx_state_release(st);
	return r == CTX_OK;
}

static void check_all(ctx_store *s, const char *fmt, int n)
{
	char id[32];
	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), fmt, i);
		assert_true(present(s, id));
	}
	assert_int_equal(ctx_count(s), (size_t)n);
}

/* ---- creates with big mappings refused ------------------------------------------ */

/* 16Ki slots is the first mapped array; a table of 8Ki slots (malloc) holds
 * up to 8191 contexts once mappings are refused, and a 16Ki one, made while
 * they worked, 16383. */
static void test_create_with_maps_refused(void **unused)
{
	(void)unused;
	reset_wraps();
	ctx_store *s = test_open_memory();
	char id[32];
	int n = 0;
	/* Up to a 16Ki-slot table (mapped), then refuse: the spare (32Ki) and
	 * the growth's own mapping both fail. */
	while (atomic_load(&s->table)->mask + 1 < 16384) {
		snprintf(id, sizeof(id), "m-%06d", n++);
		assert_ok(ctx_create(s, id));
	}
	atomic_store(&refuse_maps, true);
	ctx_status st;
	for (;;) {
		snprintf(id, sizeof(id), "m-%06d", n);
		st = ctx_create(s, id);
		if (st != CTX_OK)
			break;
		n++;
		assert_true(n < 16384);
	}
	assert_int_equal(st, CTX_NOMEM);
	assert_true(atomic_load(&maps_refused) > 0);
	assert_int_equal(atomic_load(&s->table)->mask + 1, 16384);
	assert_int_equal(n, 16383 - 1); /* one slot stays empty: probes end */
	assert_false(present(s, id));
	assert_false(s->table_preparing);
	assert_null(s->table_spare);
	/* Still refused: a drop works (it needs no memory); a create after it
	 * may or may not find room (a tombstone counts as used), and is whole
	 * either way. */
	snprintf(id, sizeof(id), "m-%06d", 17);
	assert_ok(ctx_drop(s, id));
	assert_false(present(s, id));
	st = ctx_create(s, id);
	assert_true(st == CTX_OK || st == CTX_NOMEM);
	assert_true(present(s, id) == (st == CTX_OK));
	if (st != CTX_OK) {
		atomic_store(&refuse_maps, false);
		assert_ok(ctx_create(s, id));
		atomic_store(&refuse_maps, true);
	}
	check_all(s, "m-%06d", n);
	/* Mappings work again: the table grows and creates go on. */
	atomic_store(&refuse_maps, false);
	long more = test_iters(20000, 5000);
	for (long i = 0; i < more; i++) {
		snprintf(id, sizeof(id), "m-%06d", n++);
		assert_ok(ctx_create(s, id));
	}
	assert_true(atomic_load(&s->table)->mask + 1 >= 32768);
	check_all(s, "m-%06d", n);
	ctx_close(s);
	assert_int_equal(table_maps_alive(), 0);
}

/* ---- recovery with big mappings refused ----------------------------------------- */

#define RECOVER_N 13000 /* past 3/4 of 16Ki slots: needs a 32Ki array */

static void test_recovery_with_maps_refused(void **unused)
{
	(void)unused;
	reset_wraps();
	char *dir = test_make_dir("r16_review_recover");
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	o.durability = CTX_DURABILITY_BATCH;
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	char id[32];
	for (int i = 0; i < RECOVER_N; i++) {
		snprintf(id, sizeof(id), "r-%06d", i);
		assert_ok(ctx_create(s, id));
	}
	snprintf(id, sizeof(id), "r-%06d", 5);
	assert_ok(ctx_put(s, id, "k", 1, "v", 1, NULL));
	ctx_close(s);
	assert_int_equal(table_maps_alive(), 0);

	atomic_store(&refuse_maps, true);
	s = NULL;
	assert_int_equal(ctx_open(&o, &s), CTX_NOMEM);
	assert_null(s);
	assert_true(atomic_load(&maps_refused) > 0);
	assert_int_equal(table_maps_alive(), 0);

	atomic_store(&refuse_maps, false);
	assert_ok(ctx_open(&o, &s));
	check_all(s, "r-%06d", RECOVER_N);
	char v[4];
	size_t vlen = 0;
	snprintf(id, sizeof(id), "r-%06d", 5);
	assert_ok(ctx_get_value(s, id, "k", 1, v, sizeof(v), &vlen));
	assert_int_equal(vlen, 1);
	ctx_close(s);
	assert_int_equal(table_maps_alive(), 0);
	test_remove_dir(dir);
	free(dir);
}

/* ---- no MADV_POPULATE_WRITE ------------------------------------------------------ */

static void test_no_populate_write(void **unused)
{
	(void)unused;
	reset_wraps();
	atomic_store(&no_populate, true);
	ctx_store *s = test_open_memory();
	char id[32];
	int n = 0;
	while (atomic_load(&s->table)->mask + 1 < 65536) {
		snprintf(id, sizeof(id), "p-%06d", n++);
		assert_ok(ctx_create(s, id));
		assert_true(n < 100000);
	}
	/* Each big growth's spare asked for it, and did without. */
	assert_true(atomic_load(&populates_asked) >= 2);
	check_all(s, "p-%06d", n);
	ctx_close(s);
	assert_int_equal(table_maps_alive(), 0);
}

/* ---- a spare of the wrong size ----------------------------------------------------- */

/* Past 3/4 of 32Ki slots the spare (64Ki) is made; then most contexts are
 * dropped, so the next growth wants a smaller array: the spare is given
 * back (at that growth, or replaced by one of the right size), and at close
 * nothing is left. Repeated, so that the drops leave the table at 7/8 or
 * past it at times (the growth then finds the wrong spare itself). */
static void test_spare_of_wrong_size(void **unused)
{
	(void)unused;
	reset_wraps();
	ctx_store *s = test_open_memory();
	char id[32];
	int next = 0, low = 0; /* live ids: low .. next - 1 */
	for (int round = 0; round < 4; round++) {
		while (!s->table_spare || atomic_load(&s->table)->mask + 1 < 32768) {
			snprintf(id, sizeof(id), "w-%07d", next++);
			assert_ok(ctx_create(s, id));
			assert_true(next - low < 200000);
		}
		/* Keep a few thousand: the table wants 16Ki or 8Ki slots. */
		int keep = 2000 + 3000 * round;
		while (next - low > keep) {
			snprintf(id, sizeof(id), "w-%07d", low++);
			assert_ok(ctx_drop(s, id));
		}
		for (long i = 0, churn = test_iters(20000, 4000); i < churn; i++) {
			snprintf(id, sizeof(id), "w-%07d", next++);
			assert_ok(ctx_create(s, id));
			snprintf(id, sizeof(id), "w-%07d", low++);
			assert_ok(ctx_drop(s, id));
		}
		assert_true(table_maps_alive() <= 3); /* table, its old, a spare */
	}
	assert_int_equal(ctx_count(s), (size_t)(next - low));
	for (int i = low; i < next; i++) {
		snprintf(id, sizeof(id), "w-%07d", i);
		assert_true(present(s, id));
	}
	ctx_close(s);
	assert_int_equal(table_maps_alive(), 0);
}

/* ---- the public header's documented errors --------------------------------------- */

static bool each_pair(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	(void)key, (void)klen, (void)val, (void)vlen;
	(*(int *)arg)++;
	return true;
}

/* A call for each documented error that a small program can provoke
 * (include/ctx.h), the status it must return, and what must be left. */
static void test_documented_errors(void **unused)
{
	(void)unused;
	reset_wraps();
	ctx_options o;
	ctx_options_init(&o);
	o.max_contexts = 3;
	o.max_key_size = 8;
	o.max_value_size = 16;
	ctx_store *s = NULL;
	assert_ok(ctx_open(&o, &s));
	char longid[CTX_ID_MAX + 2];
	memset(longid, 'i', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = 0;
	assert_int_equal(ctx_create(s, longid), CTX_INVALID); /* 257 bytes */
	longid[CTX_ID_MAX] = 0;
	assert_ok(ctx_create(s, longid)); /* 256 bytes */
	assert_ok(ctx_drop(s, longid));
	assert_int_equal(ctx_create(s, ""), CTX_INVALID);
	assert_int_equal(ctx_create(NULL, "a"), CTX_INVALID);
	assert_ok(ctx_create(s, "a"));
	assert_int_equal(ctx_create(s, "a"), CTX_EXISTS);
	assert_ok(ctx_create(s, "b"));
	assert_ok(ctx_create(s, "c"));
	assert_int_equal(ctx_create(s, "d"), CTX_LIMIT);
	assert_int_equal(ctx_count(s), 3);
	/* A create transaction: EXISTS, LIMIT, INVALID with an expected version. */
	ctx_txn *t = NULL;
	assert_ok(ctx_txn_begin_create(s, "a", &t));
	assert_int_equal(ctx_txn_commit(t, 0, NULL), CTX_EXISTS);
	assert_ok(ctx_txn_begin_create(s, "d", &t));
	assert_int_equal(ctx_txn_commit(t, 0, NULL), CTX_LIMIT);
	assert_false(present(s, "d"));
	assert_ok(ctx_drop(s, "c"));
	assert_ok(ctx_txn_begin_create(s, "d", &t));
	assert_int_equal(ctx_txn_commit(t, 3, NULL), CTX_INVALID);
	assert_false(present(s, "d"));
	assert_int_equal(ctx_txn_commit(NULL, 0, NULL), CTX_INVALID);
	/* Sizes. */
	assert_int_equal(ctx_put(s, "a", "123456789", 9, "v", 1, NULL), CTX_INVALID);
	assert_int_equal(ctx_put(s, "a", "k", 1, "12345678901234567", 17, NULL), CTX_INVALID);
	assert_int_equal(ctx_put(s, "a", "", 0, "v", 1, NULL), CTX_INVALID);
	assert_int_equal(ctx_put(s, "a", "k", 1, NULL, 1, NULL), CTX_INVALID);
	assert_int_equal(ctx_put(s, "zz", "k", 1, "v", 1, NULL), CTX_NOT_FOUND);
	assert_ok(ctx_put(s, "a", "k", 1, "value", 5, NULL));
	assert_int_equal(ctx_del(s, "a", "x", 1, NULL), CTX_NOT_FOUND);
	assert_ok(ctx_txn_begin(s, "a", &t));
	assert_int_equal(ctx_txn_put(t, "123456789", 9, "v", 1), CTX_INVALID);
	assert_int_equal(ctx_txn_put(NULL, "k", 1, "v", 1), CTX_INVALID);
	assert_int_equal(ctx_txn_clear(NULL), CTX_INVALID);
	assert_int_equal(ctx_txn_commit(t, 99, NULL), CTX_CONFLICT);
	/* ctx_get_value. */
	char buf[8];
	size_t vlen = 77;
	assert_int_equal(ctx_get_value(NULL, "a", "k", 1, buf, sizeof(buf), &vlen), CTX_INVALID);
	assert_int_equal(ctx_get_value(s, "a", NULL, 1, buf, sizeof(buf), &vlen), CTX_INVALID);
	assert_int_equal(ctx_get_value(s, "a", "k", 1, buf, sizeof(buf), NULL), CTX_INVALID);
	assert_int_equal(ctx_get_value(s, "a", "k", 1, NULL, sizeof(buf), &vlen), CTX_INVALID);
	assert_int_equal(ctx_get_value(s, "a", "x", 1, buf, sizeof(buf), &vlen), CTX_NOT_FOUND);
	assert_int_equal(vlen, 77);
	assert_int_equal(ctx_get_value(s, "zz", "k", 1, buf, sizeof(buf), &vlen), CTX_NOT_FOUND);
	assert_int_equal(vlen, 77);
	assert_int_equal(ctx_get_value(s, "a", "k", 1, buf, 2, &vlen), CTX_LIMIT);
	assert_int_equal(vlen, 5);
	assert_int_equal(ctx_get_value(s, "a", "k", 1, NULL, 0, &vlen), CTX_LIMIT);
	assert_ok(ctx_get_value(s, "a", "k", 1, buf, sizeof(buf), &vlen));
	assert_int_equal(vlen, 5);
	/* ctx_get_each. */
	int pairs = 0;
	assert_int_equal(ctx_get_each(s, "a", NULL, NULL), CTX_INVALID);
	assert_int_equal(ctx_get_each(NULL, "a", each_pair, &pairs), CTX_INVALID);
	assert_int_equal(ctx_get_each(s, "zz", each_pair, &pairs), CTX_NOT_FOUND);
	assert_int_equal(pairs, 0);
	assert_ok(ctx_get_each(s, "a", each_pair, &pairs));
	assert_int_equal(pairs, 1);
	/* History, points, restores. */
	ctx_history_entry *h = NULL;
	size_t n = 0;
	ctx_state *st = NULL;
	assert_int_equal(ctx_history(s, "a", NULL, &n), CTX_INVALID);
	assert_int_equal(ctx_history(s, "zz", &h, &n), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_at(s, "a", 999, &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_at(s, "a", 1, NULL), CTX_INVALID);
	char label[CTX_LABEL_MAX + 2];
	memset(label, 'l', sizeof(label) - 1);
	label[sizeof(label) - 1] = 0;
	assert_int_equal(ctx_point_create(s, "a", label, NULL), CTX_INVALID);
	assert_int_equal(ctx_point_create(s, "a", "tab\there", NULL), CTX_INVALID);
	assert_int_equal(ctx_point_create(s, "zz", "x", NULL), CTX_NOT_FOUND);
	assert_int_equal(ctx_point_delete(s, "a", 1), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore(s, "a", 999, NULL), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_latest(s, "a", NULL), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_label(s, "a", NULL, NULL), CTX_INVALID);
	assert_int_equal(ctx_restore_label(s, "a", "none", NULL), CTX_NOT_FOUND);
	assert_int_equal(ctx_restore_before(s, "a", 1, NULL), CTX_NOT_FOUND);
	/* ttl */
	assert_int_equal(ctx_set_ttl(s, "a", UINT64_MAX / 1000 + 1), CTX_INVALID);
	assert_int_equal(ctx_set_ttl(s, "zz", 10), CTX_NOT_FOUND);
	assert_ok(ctx_set_ttl(s, "b", UINT64_MAX / 1000)); /* the largest: never expires */
	assert_int_equal(ctx_expire_now(s), 0);
	assert_true(present(s, "b"));
	/* The rest of the NULL checks. */
	uint64_t rev;
	ctx_list l;
	ctx_context_status cs;
	ctx_watch *w = NULL;
	ctx_event *e = NULL;
	assert_int_equal(ctx_durable_revision(NULL, &rev), CTX_INVALID);
	assert_int_equal(ctx_durable_revision(s, NULL), CTX_INVALID);
	assert_int_equal(ctx_list_ids(NULL, NULL, NULL, 0, &l), CTX_INVALID);
	assert_int_equal(ctx_list_ids(s, NULL, NULL, 0, NULL), CTX_INVALID);
	assert_int_equal(ctx_context_info(s, "a", NULL), CTX_INVALID);
	assert_int_equal(ctx_context_info(s, "zz", &cs), CTX_NOT_FOUND);
	assert_int_equal(ctx_checkpoint(NULL), CTX_INVALID);
	assert_int_equal(ctx_verify(NULL, NULL), CTX_INVALID);
	assert_int_equal(ctx_watch_next(NULL, &e), CTX_INVALID);
	assert_ok(ctx_watch_open(s, "a", false, 0, &w));
	assert_int_equal(ctx_watch_next(w, NULL), CTX_INVALID);
	assert_int_equal(ctx_watch_next(w, &e), CTX_NOT_FOUND);
	assert_int_equal(ctx_watch_wait(w, 0, &e), CTX_NOT_FOUND);
	ctx_watch_close(w);
	assert_int_equal(ctx_drop(s, "zz"), CTX_NOT_FOUND);
	assert_int_equal(ctx_drop_nowait(s, "zz", &rev), CTX_NOT_FOUND);
	assert_int_equal(ctx_get_latest(s, "zz", &st), CTX_NOT_FOUND);
	assert_int_equal(ctx_txn_begin(s, "zz", &t), CTX_NOT_FOUND);
	assert_int_equal(ctx_txn_begin_state(NULL, &t), CTX_INVALID);
	ctx_session *se = NULL;
	assert_ok(ctx_session_open(s, &se));
	assert_int_equal(ctx_session_get(se, &st), CTX_NOT_FOUND); /* none active */
	assert_int_equal(ctx_session_activate(se, "zz", false), CTX_NOT_FOUND);
	assert_ok(ctx_create(s, "c"));
	assert_int_equal(ctx_session_activate(se, "zz", true), CTX_LIMIT);
	assert_false(present(s, "zz"));
	assert_ok(ctx_session_activate(se, "a", true));
	ctx_session_close(se);
	ctx_tracker *tr = NULL;
	assert_int_equal(ctx_tracker_open(s, "zz", NULL, &tr), CTX_NOT_FOUND);
	assert_ok(ctx_tracker_open(s, "a", NULL, &tr));
	void *val = NULL;
	assert_int_equal(ctx_tracker_get(tr, NULL, 1, &val, &vlen), CTX_INVALID);
	assert_int_equal(ctx_tracker_get(tr, "x", 1, &val, &vlen), CTX_NOT_FOUND);
	assert_int_equal(ctx_tracker_put(tr, "123456789", 9, "v", 1), CTX_INVALID);
	assert_int_equal(ctx_tracker_resolve(tr, "k", 1, true), CTX_NOT_FOUND);
	ctx_tracker_close(tr);
	ctx_close(s);
	assert_int_equal(table_maps_alive(), 0);
}

/* ---- closing a store that ran out of memory ------------------------------------- */

/* The child: under an RLIMIT_AS of VmSize + 256 MiB, a memory store is
 * filled until a create says CTX_NOMEM, then malloc is used up too (what
 * the rest of a process holds at its limit), and the store is closed. On
 * the base, ctx_close's rcu_barrier (state_drain) aborted in liburcu
 * ("urcu_bp_barrier: Unrecoverable error: Cannot allocate memory"): its
 * calloc failed, and what the store frees waits for that barrier. */
static size_t vm_size(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb << 10;
}

static int child_close_out_of_memory(int fd)
{
	size_t vm = vm_size();
	if (!vm)
		return 10;
	struct rlimit rl = {vm + ((size_t)256 << 20), RLIM_INFINITY};
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		return 11;
	ctx_options o;
	ctx_options_init(&o);
	o.max_contexts = 10000000;
	ctx_store *s = NULL;
	if (ctx_open(&o, &s) != CTX_OK)
		return 12;
	static char val[1024];
	memset(val, 'v', sizeof(val));
	char id[32];
	long i = 0;
	ctx_status st = CTX_OK;
	for (; i < 2000000 && st == CTX_OK; i++) {
		snprintf(id, sizeof(id), "o-%08ld", i);
		st = ctx_create(s, id);
		if (st == CTX_OK)
			st = ctx_put(s, id, "k", 1, val, sizeof(val), NULL);
	}
	if (st != CTX_NOMEM)
		return 13;
	/* Use malloc up as well, big blocks then small ones. */
	void *held = NULL;
	for (size_t size = 1 << 16; size >= 16; size /= 4)
		for (void *p; (p = malloc(size));) {
			*(void **)p = held;
			held = p;
		}
	ctx_close(s);
	if (write(fd, "k", 1) != 1)
		return 14;
	return 0;
}

static void test_close_out_of_memory(void **unused)
{
	(void)unused;
#ifdef T_SANITIZER
	print_message("  (skipped: the sanitizers' shadow memory does not fit an RLIMIT_AS)\n");
	skip();
#else
	reset_wraps();
	const char *args[] = {"close-oom", NULL};
	int rfd = -1;
	pid_t pid = test_spawn_child(args, &rfd);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	char k = 0;
	ssize_t got = read(rfd, &k, 1);
	close(rfd);
	if (!WIFEXITED(status))
		fail_msg("the child ended with signal %d (6: SIGABRT, liburcu's rcu_barrier "
		         "could not allocate at ctx_close)",
		         WTERMSIG(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(got, 1);
#endif
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--child") == 0 && strcmp(argv[2], "close-oom") == 0)
		return child_close_out_of_memory(atoi(argv[3]));
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_with_maps_refused),
	    cmocka_unit_test(test_recovery_with_maps_refused),
	    cmocka_unit_test(test_no_populate_write),
	    cmocka_unit_test(test_spare_of_wrong_size),
	    cmocka_unit_test(test_documented_errors),
	    cmocka_unit_test(test_close_out_of_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
