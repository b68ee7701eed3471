/*
 * checkpoint.c - snapshots of the whole store, written in the background.
 *
 * A checkpoint "ckpt-R.ckpt" holds, for every live context, one version that
 * includes every commit of revision <= R (and perhaps later ones). Recovery
 * loads it and replays the log after R; records the checkpoint already holds
 * are recognised by their version and skipped.
 *
 * Writing one (checkpoint_run), with writers running all along:
 *   1. rotate the log: the flusher starts a new segment, and R is the last
 *      revision in the older ones;
 *   2. take each live context's newest version (a reference under its write
 *      lock: the only moment a writer could wait, for a pointer copy);
 *   3. stream those immutable versions to "ckpt-R.tmp", each context a
 *      checksummed section;
 *   4. wait until the log is durable up to the newest revision written, so
 *      that no checkpoint holds a change the log could still lose;
 *   5. sync the file, drop its pages from the cache, rename it to
 *      "ckpt-R.ckpt", sync the directory;
 *   6. read it back from the file and check it as recovery would (every
 *      section's structure and crc, the trailer; checkpoint_verify shares the
 *      loader's parser, building nothing); only if it is intact, delete what
 *      it covers: older checkpoints and log segments whose records are all
 *      <= R. One generation stays, as with LMDB or SQLite: the directory
 *      holds this checkpoint and the log after R (plus, while the next one
 *      is written, its temporary file and the segments since). If the
 *      read-back fails, nothing is deleted: the checkpoint before and the log
 *      since it stay, the failure is reported like any failed checkpoint, and
 *      recovery passes over the bad file. A crash between the rename and the
 *      deletes also leaves the older generation; the next checkpoint deletes
 *      it.
 *
 * The encoding (format version 2, docs/file-format.md) has no fixed cost per
 * key: varint lengths, each key's time as a difference from its version's,
 * keys sorted so that each is written as the bytes it shares with the one
 * before and the rest, and one crc per context, computed over the output
 * buffer in large runs. Version 1 files are still loaded (load_sections_v1).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"
#include "log.h"
#include "reader.h"
#include "store.h"
#include "util.h"
#include "vfs.h"

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ---- buffered, checksummed output ------------------------------------------- */

/* The checksum of a section's payload is computed over the buffer in large
 * runs (at each flush and at the section's end), not per field. */
typedef struct out_file {
	int fd;
	int err;    /* first errno */
	bool nomem; /* err is ENOMEM from an allocation, not from I/O */
	size_t len;
	bool in_section;
	size_t crc_from;     /* buf offset where the payload's unchecksummed bytes start */
	uint32_t crc;        /* crc of the current section payload, up to crc_from */
	const void **sorted; /* scratch: a list's entries, as collected */
	size_t sorted_cap;
	struct sort_item *items; /* scratch: the same entries with their sort keys */
	size_t items_cap;
	unsigned char buf[1 << 20];
} out_file;

static void out_flush(out_file *o)
{
	if (o->in_section) {
		o->crc = crc32c(o->crc, o->buf + o->crc_from, o->len - o->crc_from);
		o->crc_from = 0;
	}
	if (!o->err && o->len && vfs_write_all(o->fd, o->buf, o->len) != 0)
		o->err = errno ? errno : EIO;
	o->len = 0;
}

/* Room for n more bytes in the buffer (n <= its size). */
static unsigned char *out_room(out_file *o, size_t n)
{
	if (sizeof(o->buf) - o->len < n)
		out_flush(o);
	return o->buf + o->len;
}

static void out_bytes(out_file *o, const void *p, size_t n)
{
	const unsigned char *b = p;
	while (n) {
		size_t room = sizeof(o->buf) - o->len;
		size_t k = n < room ? n : room;
		memcpy(o->buf + o->len, b, k);
		o->len += k;
		b += k;
		n -= k;
		if (o->len == sizeof(o->buf))
			out_flush(o);
	}
}

static void out_uv(out_file *o, uint64_t v)
{
	o->len += put_uv(out_room(o, UV_MAX), v);
}

static void out_sv(out_file *o, int64_t v)
{
	out_uv(o, zigzag(v));
}

static void out_u64(out_file *o, uint64_t v)
{
	put_u64(out_room(o, 8), v);
	o->len += 8;
}

static void section_begin(out_file *o)
{
	o->in_section = true;
	o->crc = 0;
	o->crc_from = o->len;
}

/* End the payload with its u32 crc. */
static void section_end(out_file *o)
{
	o->crc = crc32c(o->crc, o->buf + o->crc_from, o->len - o->crc_from);
	o->in_section = false;
	put_u32(out_room(o, 4), o->crc);
	o->len += 4;
}

/* ---- versions: sorted, prefix-compressed entries ---------------------------- */

/* Bytewise key order, a shorter key first on a common prefix. */
static int key_order(const hamt_leaf *x, const hamt_leaf *y)
{
	size_t xn = hamt_leaf_klen(x), yn = hamt_leaf_klen(y);
	int c = memcmp(hamt_leaf_key(x), hamt_leaf_key(y), xn < yn ? xn : yn);
	return c ? c : (xn > yn) - (xn < yn);
}

/* A delta's entries are tagged pointers: the low bit set for a delete (leaves
 * are at least 8-byte aligned). */
static const hamt_leaf *entry_leaf(const void *e)
{
	return (const hamt_leaf *)((uintptr_t)e & ~(uintptr_t)1);
}

/* Sorting a list: each entry with a sort key, the 8 bytes of its key after
 * the prefix every key of the list shares, big-endian and zero-padded (so
 * that comparing two sort keys as integers is comparing those bytes; a
 * shorter key pads with zeros and ties with a longer one holding zeros
 * there). Most comparisons are one integer comparison on the item itself,
 * instead of two leaf loads (cache misses) and a memcmp call through qsort's
 * function pointer: this sort was half of a checkpoint's CPU time for
 * contexts of 100 keys (docs/benchmarks.md, round 10 r10-batch). Equal sort
 * keys fall back to the whole keys. */
typedef struct sort_item {
	uint64_t k;
	const void *e; /* a tagged entry, as in out_file.sorted */
} sort_item;

static bool item_less(const sort_item *a, const sort_item *b)
{
	if (a->k != b->k)
		return a->k < b->k;
	return key_order(entry_leaf(a->e), entry_leaf(b->e)) < 0;
}

static int compare_items(const void *a, const void *b)
{
	const sort_item *x = a, *y = b;
	return item_less(x, y) ? -1 : item_less(y, x);
}

static void item_swap(sort_item *a, sort_item *b)
{
	sort_item t = *a;
	*a = *b;
	*b = t;
}

#define SORT_SMALL 16 /* lists this short are sorted by insertion */

static void insertion_sort(sort_item *a, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		sort_item x = a[i];
		size_t j = i;
		for (; j > 0 && item_less(&x, &a[j - 1]); j--)
			a[j] = a[j - 1];
		a[j] = x;
	}
}

/* Quicksort, median of three, the smaller side first; past `depth` levels
 * (a pathological order) the rest goes to qsort, so it stays n log n. The
 * keys of a list are distinct: with a[0] < pivot < a[n - 1] after the median
 * step, both sides of a partition are non-empty and the scans stop at them. */
static void sort_items(sort_item *a, size_t n, unsigned depth)
{
	while (n > SORT_SMALL) {
		if (depth-- == 0) {
			qsort(a, n, sizeof(*a), compare_items);
			return;
		}
		size_t m = n / 2;
		if (item_less(&a[m], &a[0]))
			item_swap(&a[m], &a[0]);
		if (item_less(&a[n - 1], &a[m])) {
			item_swap(&a[n - 1], &a[m]);
			if (item_less(&a[m], &a[0]))
				item_swap(&a[m], &a[0]);
		}
		sort_item pivot = a[m];
		size_t i = 0, j = n - 1;
		for (;;) {
			do
				i++;
			while (item_less(&a[i], &pivot));
			do
				j--;
			while (item_less(&pivot, &a[j]));
			if (i >= j)
				break;
			item_swap(&a[i], &a[j]);
		}
		/* a[0..j] <= pivot <= a[j+1..n-1] */
		size_t left = j + 1;
		if (left < n - left) {
			sort_items(a, left, depth);
			a += left;
			n -= left;
		} else {
			sort_items(a + left, n - left, depth);
			n = left;
		}
	}
	insertion_sort(a, n);
}

/* The bytes every key of the n entries shares at its start. */
static size_t shared_prefix(const void *const *e, size_t n)
{
	const hamt_leaf *first = entry_leaf(e[0]);
	const unsigned char *k0 = hamt_leaf_key(first);
	size_t most = hamt_leaf_klen(first);
	for (size_t i = 1; i < n && most; i++) {
		const hamt_leaf *l = entry_leaf(e[i]);
		const unsigned char *k = hamt_leaf_key(l);
		size_t klen = hamt_leaf_klen(l), s = 0;
		if (klen < most)
			most = klen;
		while (s < most && k[s] == k0[s])
			s++;
		most = s;
	}
	return most;
}

static uint64_t sort_key(const hamt_leaf *l, size_t from)
{
	size_t klen = hamt_leaf_klen(l);
	const unsigned char *key = (const unsigned char *)hamt_leaf_key(l) + from;
	size_t n = klen - from < 8 ? klen - from : 8;
	uint64_t k = 0;
	for (size_t i = 0; i < 8; i++)
		k = k << 8 | (i < n ? key[i] : 0);
	return k;
}

static bool out_nomem(out_file *o)
{
	if (!o->err) {
		o->err = ENOMEM;
		o->nomem = true;
	}
	return false;
}

static bool sorted_reserve(out_file *o, size_t n)
{
	if (n <= o->sorted_cap)
		return true;
	const void **g = realloc(o->sorted, n * sizeof(*g));
	if (!g)
		return out_nomem(o);
	o->sorted = g;
	o->sorted_cap = n;
	return true;
}

static bool items_reserve(out_file *o, size_t n)
{
	if (n <= o->items_cap)
		return true;
	sort_item *g = realloc(o->items, n * sizeof(*g));
	if (!g)
		return out_nomem(o);
	o->items = g;
	o->items_cap = n;
	return true;
}

/* One entry: key as the bytes it shares with the previous one and the rest,
 * then (unless deleted) the value, its time as a difference from the
 * version's. */
static void out_entry(out_file *o, const hamt_leaf *prev, const void *e, uint64_t updated_us)
{
	const hamt_leaf *l = entry_leaf(e);
	bool deleted = (uintptr_t)e & 1;
	size_t klen = hamt_leaf_klen(l), pklen = prev ? hamt_leaf_klen(prev) : 0;
	const unsigned char *key = hamt_leaf_key(l), *pkey = prev ? hamt_leaf_key(prev) : NULL;
	size_t shared = 0, most = pklen < klen ? pklen : klen;
	while (shared < most && pkey[shared] == key[shared])
		shared++;
	out_uv(o, (uint64_t)shared << 1 | deleted);
	out_uv(o, klen - shared);
	out_bytes(o, key + shared, klen - shared);
	if (!deleted) {
		out_uv(o, l->vlen);
		out_sv(o, (int64_t)(updated_us - l->time_us));
		out_bytes(o, key + klen, l->vlen);
	}
}

static void out_sorted(out_file *o, size_t n, uint64_t updated_us)
{
	if (n > 1) {
		if (!items_reserve(o, n))
			return;
		sort_item *a = o->items;
		size_t from = shared_prefix(o->sorted, n);
		for (size_t i = 0; i < n; i++)
			a[i] = (sort_item){sort_key(entry_leaf(o->sorted[i]), from), o->sorted[i]};
		unsigned depth = 0;
		for (size_t m = n; m > 1; m >>= 1)
			depth += 2;
		sort_items(a, n, depth);
		for (size_t i = 0; i < n; i++)
			o->sorted[i] = a[i].e;
	}
	out_uv(o, n);
	for (size_t i = 0; i < n; i++)
		out_entry(o, i ? entry_leaf(o->sorted[i - 1]) : NULL, o->sorted[i], updated_us);
}

static void out_full(out_file *o, const hamt *m, uint64_t updated_us)
{
	if (!sorted_reserve(o, m->count))
		return;
	/* hamt_cursor_fill prefetches every slot of a node as it enters it. */
	hamt_cursor cur;
	hamt_cursor_init(&cur, m);
	const hamt_leaf *batch[64];
	size_t n = 0, got;
	while (n < m->count && (got = hamt_cursor_fill(&cur, batch, 64))) {
		for (size_t i = 0; i < got && n < m->count; i++)
			o->sorted[n++] = batch[i];
	}
	out_sorted(o, n, updated_us);
}

typedef struct delta_acc {
	out_file *o;
	size_t n;
} delta_acc;

static ctx_status collect_op(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	delta_acc *d = arg;
	if (d->n == d->o->sorted_cap && !sorted_reserve(d->o, d->n ? 2 * d->n : 64))
		return CTX_NOMEM;
	d->o->sorted[d->n++] = new_ ? (const void *)new_ : (const void *)((uintptr_t)old | 1);
	return CTX_OK;
}

static void out_delta(out_file *o, const hamt *from, const hamt *to, uint64_t updated_us)
{
	delta_acc d = {o, 0};
	if (hamt_diff(from, to, collect_op, &d) == CTX_OK)
		out_sorted(o, d.n, updated_us);
}

/* One kept version: in full, or as the changes from the one before it; its
 * numbers as differences from the one before it (or the context's). */
static void out_version(out_file *o, const ctx_context *c, const ctx_state *prev,
                        const ctx_state *st)
{
	out_uv(o, st->version - (prev ? prev->version : 0));
	out_sv(o, (int64_t)(st->revision - (prev ? prev->revision : 0)));
	out_sv(o, (int64_t)(st->updated_us - (prev ? prev->updated_us : c->created_us)));
	out_uv(o, st->changed);
	unsigned char kind = prev ? 1 : 0;
	out_bytes(o, &kind, 1);
	if (!prev) {
		out_full(o, &st->data, st->updated_us);
		out_full(o, &st->meta, st->updated_us);
	} else {
		out_delta(o, &prev->data, &st->data, st->updated_us);
		out_delta(o, &prev->meta, &st->meta, st->updated_us);
	}
}

/* ---- taking the snapshot ---------------------------------------------------- */

/* What a checkpoint writes of one context, taken under its write lock. Most
 * contexts keep a version or two: their list is inline (SNAP_INLINE), in the
 * array of snaps the writing loop walks in order, not a malloc each. */
#define SNAP_INLINE 4

typedef struct ctx_snap {
	ctx_context *c;
	size_t nstates;
	ctx_state **states; /* kept versions, ascending, head last: inline or malloc'd */
	ctx_state *inline_states[SNAP_INLINE];
	size_t npoints;
	point_entry *points; /* copies; their st is one of states */
	uint64_t ttl_us;
	uint64_t last_access_us;
} ctx_snap;

typedef struct snapshot {
	size_t count;
	ctx_snap *ctxs;
} snapshot;

/* Release cs's versions (again: a no-op once done). */
static void snap_free(ctx_snap *cs)
{
	for (size_t i = 0; i < cs->nstates; i++)
		ctx_state_release(cs->states[i]);
	if (cs->states != cs->inline_states)
		free(cs->states);
	free(cs->points);
	cs->nstates = 0;
	cs->states = cs->inline_states;
	cs->npoints = 0;
	cs->points = NULL;
}

static void snapshot_free(snapshot *sn)
{
	for (size_t i = 0; i < sn->count; i++)
		snap_free(&sn->ctxs[i]);
	free(sn->ctxs);
}

/* The history chain comes newest first: reversed, it is ascending, and the
 * few versions only points pin go in by insertion. */
static void sort_states(ctx_state **st, size_t chained, size_t n)
{
	for (size_t i = 0, j = chained - 1; i < j; i++, j--) {
		ctx_state *t = st[i];
		st[i] = st[j];
		st[j] = t;
	}
	for (size_t i = chained; i < n; i++) {
		ctx_state *x = st[i];
		size_t j = i;
		for (; j > 0 && st[j - 1]->version > x->version; j--)
			st[j] = st[j - 1];
		st[j] = x;
	}
}

/* Reference the kept versions and copy the points of c (write lock held). */
static bool snap_take(ctx_context *c, ctx_snap *cs)
{
	const point_set *p = points_latest(c); /* decided, like the head */
	size_t np = p ? p->count : 0;
	cs->c = c;
	cs->nstates = 0;
	cs->npoints = np;
	cs->ttl_us = c->ttl_us;
	cs->last_access_us = atomic_load(&c->last_access_us);
	size_t most = c->kept + np;
	cs->states = most <= SNAP_INLINE ? cs->inline_states : malloc(most * sizeof(*cs->states));
	cs->points = np ? malloc(np * sizeof(*cs->points)) : NULL;
	if (!cs->states || (np && !cs->points)) {
		if (cs->states != cs->inline_states)
			free(cs->states);
		free(cs->points);
		return false;
	}
	for (ctx_state *v = c->head; v; v = atomic_load(&v->prev))
		cs->states[cs->nstates++] = ctx_state_retain(v);
	size_t chained = cs->nstates;
	for (size_t i = 0; i < np; i++) {
		cs->points[i] = p->e[i];
		bool listed = false;
		for (size_t j = 0; j < chained && !listed; j++)
			listed = cs->states[j] == p->e[i].st;
		if (!listed)
			cs->states[cs->nstates++] = ctx_state_retain(p->e[i].st);
	}
	if (chained)
		sort_states(cs->states, chained, cs->nstates);
	return true;
}

#define SNAP_AHEAD 8 /* contexts prefetched ahead when taking and writing them */

/* Take every context that recovery from checkpoint `rev` must find: the live
 * ones, and those whose drop comes after rev in the log (the drop may not be
 * durable yet; replaying it will remove them). */
static ctx_status snapshot_take(ctx_store *s, uint64_t rev, snapshot *sn)
{
	size_t n = 0;
	ctx_context **ctxs = store_collect(s, NULL, NULL, &n);
	if (!ctxs)
		return ctx_fail(CTX_NOMEM, "no memory for a checkpoint");
	sn->count = 0;
	sn->ctxs = malloc((n ? n : 1) * sizeof(*sn->ctxs));
	bool ok = sn->ctxs != NULL;
	for (size_t i = 0; i < n; i++) {
		ctx_context *c = ctxs[i];
		/* Contexts are scattered in memory: start loading the lock and
		 * head lines of one a few ahead, so that the misses overlap. */
		if (i + SNAP_AHEAD < n) {
			__builtin_prefetch(ctxs[i + SNAP_AHEAD], 1);
			__builtin_prefetch((const char *)ctxs[i + SNAP_AHEAD] + 64, 1);
		}
		if (ok) {
			context_lock(c);
			bool wanted = !atomic_load(&c->dropped) || c->drop_revision > rev;
			if (wanted && c->head) {
				ok = snap_take(c, &sn->ctxs[sn->count]);
				sn->count += ok;
			}
			context_unlock(c);
		}
		context_release(c);
	}
	free(ctxs);
	if (!ok) {
		snapshot_free(sn);
		return ctx_fail(CTX_NOMEM, "no memory for a checkpoint");
	}
	return CTX_OK;
}

/* A context's section (format version 2): the payload, then its crc. */
static void out_section(out_file *o, const ctx_snap *cs)
{
	const ctx_context *c = cs->c;
	section_begin(o);
	out_uv(o, c->idlen);
	out_bytes(o, c->id, c->idlen);
	out_uv(o, c->incarnation);
	out_uv(o, c->created_us);
	out_uv(o, cs->ttl_us);
	out_sv(o, (int64_t)(cs->last_access_us - c->created_us));
	out_uv(o, cs->nstates);
	out_uv(o, cs->npoints);
	for (size_t i = 0; i < cs->nstates; i++)
		out_version(o, c, i ? cs->states[i - 1] : NULL, cs->states[i]);
	for (size_t i = 0; i < cs->npoints; i++) {
		const point_entry *e = &cs->points[i];
		unsigned char len = (unsigned char)strlen(e->label);
		out_uv(o, e->st->version);
		out_sv(o, (int64_t)(e->time_us - c->created_us));
		out_u64(o, e->checksum);
		out_bytes(o, &len, 1);
		out_bytes(o, e->label, len);
	}
	section_end(o);
}

/* ---- writing ---------------------------------------------------------------- */

/* Before writing section i: load the context a few ahead and its head
 * version, the root nodes of the head of a nearer one (whose version the
 * steps before brought in), and the first leaves of the next but one (whose
 * root they brought in), so that each level's misses overlap.
 * Always inlined: a function that only prefetches is found free of effects
 * by GCC's analysis of pure functions, and its calls are deleted. */
static inline __attribute__((always_inline)) void snap_prefetch(const snapshot *sn, size_t i)
{
	if (i + SNAP_AHEAD < sn->count) {
		const ctx_snap *far = &sn->ctxs[i + SNAP_AHEAD];
		__builtin_prefetch(far->c);
		__builtin_prefetch(far->states[far->nstates - 1]);
	}
	if (i + SNAP_AHEAD / 2 < sn->count) {
		const ctx_snap *near = &sn->ctxs[i + SNAP_AHEAD / 2];
		const ctx_state *head = near->states[near->nstates - 1];
		__builtin_prefetch(head->data.root);
		__builtin_prefetch(head->meta.root);
	}
	if (i + 2 < sn->count) {
		const ctx_snap *next = &sn->ctxs[i + 2];
		hamt_prefetch_top(&next->states[next->nstates - 1]->data);
	}
}

static void path_of(char *buf, size_t n, const char *dir, const char *prefix, uint64_t rev,
                    const char *suffix)
{
	snprintf(buf, n, "%s/%s%016" PRIx64 "%s", dir, prefix, rev, suffix);
}

/* Delete checkpoints older than `keep` and segments all of whose records are
 * covered by checkpoint `keep`. */
static void remove_covered(const char *dir, uint64_t keep)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	uint64_t *firsts = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	char path[4096];
	while ((e = readdir(d))) {
		unsigned long long v;
		char tail[8];
		if (sscanf(e->d_name, "ckpt-%16llx.ckp%1s", &v, tail) == 2 && v < keep) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			vfs_unlink(path);
		} else if (sscanf(e->d_name, "wal-%16llx.lo%1s", &v, tail) == 2) {
			if (n == cap) {
				uint64_t *g =
				    realloc(firsts, (cap = cap ? 2 * cap : 16) * sizeof(*g));
				if (!g)
					break;
				firsts = g;
			}
			firsts[n++] = v;
		}
	}
	closedir(d);
	/* Segment f ends where the next one (by first revision) begins. */
	for (size_t i = 0; i < n; i++) {
		uint64_t next = UINT64_MAX;
		for (size_t j = 0; j < n; j++)
			if (firsts[j] > firsts[i] && firsts[j] < next)
				next = firsts[j];
		if (next != UINT64_MAX && next <= keep + 1) {
			path_of(path, sizeof(path), dir, "wal-", firsts[i], ".log");
			vfs_unlink(path);
		}
	}
	free(firsts);
}

/* Checkpoint rev is in place: read it back, and only if it is intact delete
 * what it covers (one generation stays). If it is not, nothing is deleted:
 * the checkpoint before it and the log since stay, and the next checkpoint
 * (or recovery, falling back past this one) uses them. */
static ctx_status checkpoint_settle(ctx_store *s, const char *path, uint64_t rev)
{
	uint64_t read_rev = 0;
	ctx_status st = checkpoint_verify(path, &read_rev);
	if (st == CTX_OK && read_rev != rev)
		st =
		    ctx_fail(CTX_CORRUPT, "checkpoint %s: holds revision %" PRIu64, path, read_rev);
	if (st == CTX_NOMEM)
		return ctx_fail(st, "no memory to read checkpoint %s back; no file is deleted",
		                path);
	if (st != CTX_OK) {
		char why[256]; /* it names the file */
		snprintf(why, sizeof(why), "%s", ctx_last_error());
		return ctx_fail(
		    CTX_IO, "read-back failed: %s; the older checkpoint and the log are kept", why);
	}
	atomic_store(&s->last_checkpoint, rev);
	atomic_fetch_add(&s->checkpoints, 1);
	remove_covered(s->dir, rev);
	return CTX_OK;
}

ctx_status checkpoint_run(ctx_store *s)
{
	uint64_t rev;
	ctx_status st = log_rotate(s->log, &rev);
	if (st != CTX_OK)
		return st;
	if (rev == atomic_load(&s->last_checkpoint))
		return CTX_OK; /* nothing new since the last one */

	snapshot sn = {0};
	if ((st = snapshot_take(s, rev, &sn)) != CTX_OK)
		return st;
	char tmp[4096], final[4096];
	path_of(tmp, sizeof(tmp), s->dir, "ckpt-", rev, ".tmp");
	path_of(final, sizeof(final), s->dir, "ckpt-", rev, ".ckpt");
	out_file *o = malloc(sizeof(*o));
	if (!o) {
		snapshot_free(&sn);
		return ctx_fail(CTX_NOMEM, "no memory for a checkpoint");
	}
	o->len = 0;
	o->err = 0;
	o->nomem = false;
	o->in_section = false;
	o->sorted = NULL;
	o->sorted_cap = 0;
	o->items = NULL;
	o->items_cap = 0;
	o->fd = vfs_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (o->fd < 0)
		o->err = errno;

	unsigned char h[CKPT_HEADER_SIZE];
	file_header_put_version(h, CKPT_MAGIC, CKPT_FORMAT_VERSION, rev);
	uint64_t newest = 0;
	if (!o->err) {
		out_bytes(o, h, sizeof(h));
		for (size_t i = 0; i < sn.count && !o->err; i++) {
			snap_prefetch(&sn, i);
			ctx_snap *cs = &sn.ctxs[i];
			out_section(o, cs);
			if (cs->states[cs->nstates - 1]->revision > newest)
				newest = cs->states[cs->nstates - 1]->revision;
			/* Done with it: its versions go now, while their lines are
			 * still in the cache, not in a second walk at the end. */
			snap_free(cs);
		}
		unsigned char t[CKPT_TRAILER_SIZE] = {0};
		memcpy(t, CKPT_END_MAGIC, 8);
		put_u64(t + 8, sn.count);
		put_u32(t + 20, crc32c(0, t, 20));
		out_bytes(o, t, sizeof(t));
		out_flush(o);
	}
	snapshot_free(&sn);

	/* Never let a checkpoint hold a change the log could still lose. Every
	 * change the snapshot saw - a decided commit, drop or point change, and
	 * a time-to-live shown under a weaker durability than always - has a
	 * revision handed out before the snapshot was taken: wait until the log
	 * is durable up to the last one handed out now. */
	uint64_t handed = log_last_revision(s->log);
	if (handed < newest)
		handed = newest;
	if (!o->err && handed > rev && log_wait(s->log, handed) != CTX_OK)
		o->err = errno ? errno : EIO;
	if (!o->err && vfs_sync(o->fd) != 0)
		o->err = errno;
	/* Its pages are clean now: drop them, so that the read-back reads what
	 * the disk stored rather than the cache. */
	if (!o->err)
		posix_fadvise(o->fd, 0, 0, POSIX_FADV_DONTNEED);
	if (o->fd >= 0)
		vfs_close(o->fd);
	if (!o->err && vfs_rename(tmp, final) != 0)
		o->err = errno;
	if (!o->err && vfs_sync_dir(s->dir) != 0)
		o->err = errno;
	int err = o->err;
	bool nomem = o->nomem;
	free(o->sorted);
	free(o->items);
	free(o);
	if (err) {
		unlink(tmp);
		errno = err;
		if (nomem)
			return ctx_fail(CTX_NOMEM, "no memory for checkpoint %s", final);
		return ctx_fail(CTX_IO, "checkpoint %s failed: %s", final, strerror(err));
	}
	return checkpoint_settle(s, final, rev);
}

/* ---- the background thread -------------------------------------------------- */

/* One checkpoint at a time (background or ctx_checkpoint). Not a mutex: the
 * holder does I/O, so a second caller sleeps and retries instead of blocking
 * on a lock held across it. */
static void checkpoint_lock(ctx_store *s)
{
	while (atomic_flag_test_and_set(&s->checkpoint_busy))
		sleep_ms(1);
}

static void checkpoint_unlock(ctx_store *s)
{
	atomic_flag_clear(&s->checkpoint_busy);
}

/* The checkpointer sleeps until the log has grown by checkpoint_bytes since
 * the last rotation, or checkpointer_stop kicks it: no timeout, so an idle
 * store's checkpointer never wakes (it woke every second, round 14). The
 * append that crosses the mark wakes it (log_append), and a kick is
 * remembered until the next wait, so none is lost between the closing
 * check and the wait. */
static void *checkpointer_main(void *arg)
{
	ctx_store *s = arg;
	pthread_setname_np(pthread_self(), "ctx-checkpoint"); /* (top -H, perf sched) */
	while (!atomic_load(&s->closing)) {
		if (!log_wait_growth(s->log, s->opts.checkpoint_bytes, 0))
			continue;
		if (atomic_load(&s->closing))
			break;
		checkpoint_lock(s);
		ctx_status st = checkpoint_run(s);
		checkpoint_unlock(s);
		if (st != CTX_OK)
			fprintf(stderr, "ctx: %s\n", ctx_last_error());
	}
	return NULL;
}

ctx_status checkpointer_start(ctx_store *s)
{
	if (pthread_create(&s->checkpointer, NULL, checkpointer_main, s) != 0)
		return ctx_fail(CTX_NOMEM, "cannot start the checkpointer");
	s->checkpointer_running = true;
	return CTX_OK;
}

void checkpointer_stop(ctx_store *s)
{
	if (!s->checkpointer_running)
		return;
	atomic_store(&s->closing, true);
	log_kick(s->log);
	pthread_join(s->checkpointer, NULL);
	s->checkpointer_running = false;
}

/* ---- loading ---------------------------------------------------------------- */

static ctx_status load_fail(const char *path, uint64_t off, const char *what)
{
	return ctx_fail(CTX_CORRUPT, "checkpoint %s: %s at offset %" PRIu64, path, what, off);
}

/* A section's id, checked: valid, and (when loading into s) not loaded
 * before. */
static bool id_ok(ctx_store *s, const unsigned char *p, uint64_t len, char id[CTX_ID_MAX + 1])
{
	size_t checked;
	if (!p || len == 0 || len > CTX_ID_MAX)
		return false;
	memcpy(id, p, len);
	id[len] = 0;
	return ctx_check_id(id, &checked) == CTX_OK && checked == len &&
	       (!s || !store_lookup_recovered(s, id, (size_t)len));
}

/* The versions of a section read so far. Loading holds each one built until
 * the points that may pin it are loaded (the chain keeps only history_depth
 * of them); verifying (v NULL) builds nothing and keeps only the numbers. */
typedef struct loaded {
	ctx_state **v;     /* the versions built; NULL when verifying */
	uint64_t *version; /* their numbers */
	size_t n;
	uint64_t revision, updated_us; /* the last one's (v2 stores differences) */
} loaded;

static bool loaded_init(loaded *l, uint64_t n, bool building)
{
	*l = (loaded){0};
	l->version = malloc(n * sizeof(*l->version));
	l->v = building ? malloc(n * sizeof(*l->v)) : NULL;
	return l->version && (l->v || !building);
}

static void loaded_free(loaded *l)
{
	for (size_t i = 0; l->v && i < l->n; i++)
		ctx_state_release(l->v[i]);
	free(l->v);
	free(l->version);
}

/* Record a version read (with its state, when building). */
static void loaded_add(loaded *l, ctx_state *v, uint64_t version, uint64_t revision,
                       uint64_t updated_us)
{
	if (l->v)
		l->v[l->n] = v;
	l->version[l->n++] = version;
	l->revision = revision;
	l->updated_us = updated_us;
}

/* The index of version among those read, or -1. */
static ptrdiff_t loaded_find(const loaded *l, uint64_t version)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->version[i] == version)
			return (ptrdiff_t)i;
	return -1;
}

/* Push a version built from data and meta as c's head (taking them over). */
static ctx_status push_version(ctx_context *c, loaded *l, uint64_t version, hamt *data, hamt *meta,
                               uint64_t revision, uint64_t updated, uint64_t changed)
{
	ctx_state *v = state_new(c, version, *data, *meta);
	if (!v) {
		hamt_release(data);
		hamt_release(meta);
		return CTX_NOMEM;
	}
	v->revision = revision;
	v->updated_us = updated;
	v->changed = changed;
	ctx_state_release(context_push_head(c, v));
	loaded_add(l, ctx_state_retain(c->head), version, revision, updated);
	return CTX_OK;
}

/* A point on a version read; c NULL when verifying. */
static ctx_status add_point(ctx_context *c, const loaded *l, uint64_t version, uint64_t time,
                            uint64_t sum, const unsigned char *label, unsigned len)
{
	ptrdiff_t i = loaded_find(l, version);
	char text[CTX_LABEL_MAX + 1];
	if (i < 0 || !label || len > CTX_LABEL_MAX)
		return CTX_CORRUPT;
	if (!c)
		return CTX_OK;
	memcpy(text, label, len);
	text[len] = 0;
	return points_add(c, l->v[i], text, time, sum) == CTX_OK ? CTX_OK : CTX_NOMEM;
}

/* ---- loading format version 2 ------------------------------------------------ */

static uint64_t take_uv(reader *r)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		const unsigned char *b = take(r, 1);
		if (!b)
			return 0;
		v |= (uint64_t)(*b & 0x7f) << shift;
		if (!(*b & 0x80))
			return v;
	}
	r->bad = true; /* more than 10 bytes */
	return 0;
}

static int64_t take_sv(reader *r)
{
	return unzigzag(take_uv(r));
}

/* The key of the list's previous entry, which the next one shares bytes of. */
typedef struct key_buf {
	unsigned char *p;
	size_t len, cap;
} key_buf;

/* One entry into m (NULL when verifying: parsed and checked only): the key
 * rebuilt from the previous one, ascending. */
static ctx_status load_entry(reader *r, hamt *m, key_buf *k, bool full, uint64_t updated,
                             uint64_t edit)
{
	uint64_t tag = take_uv(r), shared = tag >> 1, rest = take_uv(r);
	const unsigned char *suffix = take(r, rest);
	bool deleted = tag & 1;
	if (r->bad || shared > k->len || rest == 0 || (deleted && full) ||
	    shared + rest > UINT32_MAX || (shared < k->len && suffix[0] <= k->p[shared]))
		return CTX_CORRUPT;
	size_t klen = (size_t)(shared + rest);
	if (klen > k->cap) {
		unsigned char *g = realloc(k->p, klen * 2);
		if (!g)
			return CTX_NOMEM;
		k->p = g;
		k->cap = klen * 2;
	}
	memcpy(k->p + shared, suffix, (size_t)rest);
	k->len = klen;
	if (deleted && !m)
		return CTX_OK;
	if (deleted) {
		ctx_status st = hamt_del(m, hamt_hash(k->p, klen), k->p, klen, edit);
		return st == CTX_NOT_FOUND ? CTX_CORRUPT : st;
	}
	uint64_t vlen = take_uv(r);
	int64_t age = take_sv(r);
	const unsigned char *val = vlen <= UINT32_MAX ? take(r, vlen) : NULL;
	if (r->bad || !val)
		return CTX_CORRUPT;
	if (!m)
		return CTX_OK;
	hamt_leaf *l = hamt_leaf_new(k->p, klen, val, (size_t)vlen);
	if (!l)
		return CTX_NOMEM;
	l->time_us = updated - (uint64_t)age;
	ctx_status st = hamt_set(m, l, edit);
	if (st != CTX_OK)
		hamt_leaf_release(l);
	return st;
}

static ctx_status load_list(reader *r, hamt *m, key_buf *k, bool full, uint64_t updated,
                            uint64_t edit)
{
	uint64_t n = take_uv(r);
	ctx_status st = r->bad ? CTX_CORRUPT : CTX_OK;
	k->len = 0;
	for (uint64_t i = 0; i < n && st == CTX_OK; i++)
		st = load_entry(r, m, k, full, updated, edit);
	return st;
}

/* One version, full (the first) or a delta on the one before (c's head);
 * with c NULL (verifying), parsed and checked only. */
static ctx_status load_version_v2(reader *r, ctx_context *c, uint64_t created_us, loaded *l,
                                  key_buf *k)
{
	bool first = l->n == 0;
	uint64_t prev_version = first ? 0 : l->version[l->n - 1];
	uint64_t dv = take_uv(r);
	uint64_t revision = (first ? 0 : l->revision) + (uint64_t)take_sv(r);
	uint64_t updated = (first ? created_us : l->updated_us) + (uint64_t)take_sv(r);
	uint64_t changed = take_uv(r);
	const unsigned char *kind = take(r, 1);
	uint64_t version = prev_version + dv;
	if (r->bad || *kind != (first ? 0 : 1) || dv == 0 || version < prev_version)
		return CTX_CORRUPT;
	if (!c) {
		ctx_status st = load_list(r, NULL, k, first, updated, 0);
		if (st == CTX_OK)
			st = load_list(r, NULL, k, first, updated, 0);
		if (st == CTX_OK)
			loaded_add(l, NULL, version, revision, updated);
		return st;
	}
	hamt data = {0}, meta = {0};
	if (!first) {
		data = hamt_retain(&c->head->data);
		meta = hamt_retain(&c->head->meta);
	}
	uint64_t edit = hamt_edit_token();
	ctx_status st = load_list(r, &data, k, first, updated, edit);
	if (st == CTX_OK)
		st = load_list(r, &meta, k, first, updated, edit);
	if (st != CTX_OK) {
		hamt_release(&data);
		hamt_release(&meta);
		return st;
	}
	return push_version(c, l, version, &data, &meta, revision, updated, changed);
}

/* The fewest bytes a version takes: five varints, its kind, two counts. */
#define MIN_V2_VERSION_SIZE 7

/* The versions and points of a section into c (c NULL: checked only). */
static ctx_status load_history_v2(reader *r, ctx_context *c, uint64_t created_us)
{
	uint64_t nversions = take_uv(r), npoints = take_uv(r);
	/* Unchecked counts: bound them by the bytes left before allocating. */
	if (r->bad || nversions == 0 || nversions > (uint64_t)(r->end - r->p) / MIN_V2_VERSION_SIZE)
		return CTX_CORRUPT;
	loaded l;
	key_buf k = {0};
	ctx_status st = loaded_init(&l, nversions, c != NULL) ? CTX_OK : CTX_NOMEM;
	for (uint64_t i = 0; i < nversions && st == CTX_OK; i++)
		st = load_version_v2(r, c, created_us, &l, &k);
	for (uint64_t i = 0; i < npoints && st == CTX_OK; i++) {
		uint64_t version = take_uv(r);
		uint64_t time = created_us + (uint64_t)take_sv(r), sum = take_u64(r);
		const unsigned char *len = take(r, 1);
		st = r->bad ? CTX_CORRUPT
		            : add_point(c, &l, version, time, sum, take(r, *len), *len);
	}
	free(k.p);
	loaded_free(&l);
	return st;
}

/* One section at r->p: load it into a new context and publish it (s NULL:
 * parse and check it only). */
static ctx_status load_section_v2(ctx_store *s, reader *r)
{
	const unsigned char *start = r->p;
	char id[CTX_ID_MAX + 1];
	uint64_t idlen = take_uv(r);
	if (!id_ok(s, take(r, idlen), idlen, id))
		return CTX_CORRUPT;
	uint64_t incarnation = take_uv(r), created = take_uv(r), ttl = take_uv(r);
	uint64_t access = created + (uint64_t)take_sv(r);
	if (r->bad)
		return CTX_CORRUPT;
	ctx_context *c = NULL;
	if (s) {
		if (!(c = context_new(s, id, (size_t)idlen, created)))
			return CTX_NOMEM;
		c->incarnation = incarnation;
		c->ttl_us = ttl;
		atomic_store(&c->last_access_us, access);
	}
	ctx_status st = load_history_v2(r, c, created);
	size_t len = (size_t)(r->p - start);
	const unsigned char *crc = take(r, CKPT_V2_SECTION_TRAILER);
	if (st == CTX_OK && (!crc || get_u32(crc) != crc32c(0, start, len)))
		st = CTX_CORRUPT;
	if (st != CTX_OK && c)
		store_abandon_loaded(c);
	if (st != CTX_OK || !c)
		return st;
	if (ttl)
		atomic_store(&s->any_ttl, true);
	st = store_publish_recovered(s, c);
	context_release(c); /* the table holds it now */
	return st;
}

static ctx_status load_sections_v2(ctx_store *s, const char *path, const unsigned char *base,
                                   const unsigned char **pp, const unsigned char *end,
                                   uint64_t *sections)
{
	reader r = {*pp, end, false};
	while (r.p < end) {
		uint64_t off = (uint64_t)(r.p - base);
		ctx_status st = load_section_v2(s, &r);
		if (st == CTX_NOMEM)
			return ctx_fail(st, "no memory loading %s", path);
		if (st != CTX_OK)
			return load_fail(path, off, "bad section");
		(*sections)++;
	}
	*pp = r.p;
	return CTX_OK;
}

/* ---- loading format version 1 ------------------------------------------------ */

/* One pair (or op, with_kind) into m. */
static ctx_status load_leaf(reader *r, hamt *m, bool with_kind, uint64_t edit)
{
	const unsigned char *k = with_kind ? take(r, 1) : NULL;
	const unsigned char *h = take(r, 16);
	if (!h)
		return CTX_CORRUPT;
	uint32_t klen = get_u32(h), vlen = get_u32(h + 4);
	const unsigned char *key = take(r, klen), *val = take(r, vlen);
	if (r->bad || klen == 0 || (k && *k > 1))
		return CTX_CORRUPT;
	if (k && *k == 1) {
		ctx_status st = hamt_del(m, hamt_hash(key, klen), key, klen, edit);
		return st == CTX_NOT_FOUND ? CTX_CORRUPT : st;
	}
	hamt_leaf *l = hamt_leaf_new(key, klen, val, vlen);
	if (!l)
		return CTX_NOMEM;
	l->time_us = get_u64(h + 8);
	ctx_status st = hamt_set(m, l, edit);
	if (st != CTX_OK)
		hamt_leaf_release(l);
	return st;
}

static ctx_status load_map(reader *r, hamt *m, bool delta, uint64_t edit)
{
	uint64_t n = take_u64(r);
	ctx_status st = r->bad ? CTX_CORRUPT : CTX_OK;
	for (uint64_t i = 0; i < n && st == CTX_OK; i++)
		st = load_leaf(r, m, delta, edit);
	return st;
}

/* One version, built on prev (NULL for a full one); pushed as c's head. */
static ctx_status load_version(reader *r, ctx_context *c, loaded *l, bool first)
{
	uint64_t version = take_u64(r), revision = take_u64(r), updated = take_u64(r),
	         changed = take_u64(r);
	const unsigned char *kind = take(r, 1);
	if (r->bad || (*kind != 0 && *kind != 1) || (*kind == 1) == first ||
	    (c->head && version <= c->head->version))
		return CTX_CORRUPT;
	hamt data = {0}, meta = {0};
	if (*kind == 1) {
		data = hamt_retain(&c->head->data);
		meta = hamt_retain(&c->head->meta);
	}
	uint64_t edit = hamt_edit_token();
	ctx_status st = load_map(r, &data, *kind == 1, edit);
	if (st == CTX_OK)
		st = load_map(r, &meta, *kind == 1, edit);
	if (st != CTX_OK) {
		hamt_release(&data);
		hamt_release(&meta);
		return st;
	}
	return push_version(c, l, version, &data, &meta, revision, updated, changed);
}

/* The fewest bytes a version takes: four u64, its kind, two empty maps. */
#define MIN_VERSION_SIZE (4 * 8 + 1 + 2 * 8)

/* Parse one section's payload into context c. */
static ctx_status load_section(reader *r, ctx_context *c, uint32_t nversions, uint32_t npoints)
{
	/* The count is unchecked input: bound it by the bytes left before
	 * allocating for it. */
	if (nversions == 0 || nversions > (uint64_t)(r->end - r->p) / MIN_VERSION_SIZE)
		return CTX_CORRUPT;
	loaded l;
	ctx_status st = loaded_init(&l, nversions, true) ? CTX_OK : CTX_NOMEM;
	for (uint32_t i = 0; i < nversions && st == CTX_OK; i++)
		st = load_version(r, c, &l, i == 0);
	for (uint32_t i = 0; i < npoints && st == CTX_OK; i++) {
		uint64_t version = take_u64(r), time = take_u64(r), sum = take_u64(r);
		const unsigned char *len = take(r, 1);
		st = r->bad ? CTX_CORRUPT
		            : add_point(c, &l, version, time, sum, take(r, *len), *len);
	}
	loaded_free(&l);
	return st;
}

static ctx_status load_sections_v1(ctx_store *s, const char *path, const unsigned char *base,
                                   const unsigned char **pp, const unsigned char *end,
                                   uint64_t *sections)
{
	const unsigned char *p = *pp;
	while (p < end) {
		uint64_t off = (uint64_t)(p - base);
		if (end - p < CKPT_SECTION_SIZE ||
		    get_u32(p) != crc32c(0, p + 4, CKPT_SECTION_SIZE - 4))
			return load_fail(path, off, "bad section header");
		uint32_t idlen = get_u32(p + 4);
		const unsigned char *body = p + CKPT_SECTION_SIZE;
		char id[CTX_ID_MAX + 1];
		if (!id_ok(s, (size_t)(end - body) >= idlen ? body : NULL, idlen, id))
			return load_fail(path, off, "bad or repeated context id");
		ctx_context *c = context_new(s, id, idlen, get_u64(p + 16));
		if (!c)
			return ctx_fail(CTX_NOMEM, "no memory loading %s", path);
		c->incarnation = get_u64(p + 8);
		c->ttl_us = get_u64(p + 24);
		atomic_store(&c->last_access_us, get_u64(p + 32));
		reader r = {body + idlen, end, false};
		ctx_status st = load_section(&r, c, get_u32(p + 40), get_u32(p + 44));
		const unsigned char *t = r.p;
		uint64_t payload = (uint64_t)(t - body);
		if (st == CTX_OK &&
		    ((size_t)(end - t) < CKPT_SECTION_TRAILER || get_u64(t) != payload ||
		     get_u32(t + 8) != crc32c(0, body, payload)))
			st = CTX_CORRUPT;
		if (st != CTX_OK) {
			store_abandon_loaded(c);
			return st == CTX_NOMEM ? ctx_fail(st, "no memory loading %s", path)
			                       : load_fail(path, off, "bad section payload");
		}
		if (c->ttl_us)
			atomic_store(&s->any_ttl, true);
		st = store_publish_recovered(s, c);
		context_release(c); /* the table holds it now */
		if (st != CTX_OK)
			return st;
		(*sections)++;
		p = t + CKPT_SECTION_TRAILER;
	}
	*pp = p;
	return CTX_OK;
}

/* ---- loading: the file ------------------------------------------------------- */

/* Read the checkpoint at path: load it into s, or, with s NULL, only parse
 * every section and check its structure and crc, and the trailer (format 2
 * only: what this build writes; a verify builds no map, so a deleted key that
 * was never there, or a repeated id, is found only by a load). */
static ctx_status checkpoint_read(ctx_store *s, const char *path, uint64_t *revision_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ctx_fail(CTX_IO, "cannot open checkpoint %s: %s", path, strerror(errno));
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		close(fd);
		return ctx_fail(CTX_IO, "cannot stat checkpoint %s: %s", path, strerror(errno));
	}
	size_t size = (size_t)sb.st_size;
	if (size < CKPT_HEADER_SIZE + CKPT_TRAILER_SIZE) {
		close(fd);
		return load_fail(path, 0, "file too short");
	}
	const unsigned char *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (base == MAP_FAILED)
		return ctx_fail(CTX_IO, "cannot map checkpoint %s: %s", path, strerror(errno));
	madvise((void *)base, size, MADV_SEQUENTIAL);

	ctx_status st = CTX_OK;
	const unsigned char *p = base, *end = base + size - CKPT_TRAILER_SIZE;
	uint64_t sections = 0;
	uint32_t version = get_u32(p + 8);
	if (!file_header_intact(p, size, CKPT_MAGIC)) {
		st = load_fail(path, 0, "bad header");
	} else if (version != CKPT_FORMAT_VERSION && version != CKPT_FORMAT_V1) {
		st = ctx_fail(CTX_CORRUPT,
		              "checkpoint %s: format version %" PRIu32 " is unknown (this build "
		              "reads versions 1 and 2) at offset 8",
		              path, version);
	} else if (!s && version != CKPT_FORMAT_VERSION) {
		st = ctx_fail(CTX_CORRUPT,
		              "checkpoint %s: format version %" PRIu32 " is not the one this "
		              "build writes (%d) at offset 8",
		              path, version, CKPT_FORMAT_VERSION);
	} else {
		*revision_out = get_u64(p + 16);
		p += CKPT_HEADER_SIZE;
		st = version == CKPT_FORMAT_V1
		         ? load_sections_v1(s, path, base, &p, end, &sections)
		         : load_sections_v2(s, path, base, &p, end, &sections);
		if (st == CTX_OK &&
		    (p != end || memcmp(end, CKPT_END_MAGIC, 8) != 0 ||
		     get_u32(end + 20) != crc32c(0, end, 20) || get_u64(end + 8) != sections))
			st = load_fail(path, (uint64_t)(end - base), "bad trailer");
	}
	munmap((void *)base, size);
	return st;
}

ctx_status checkpoint_load(ctx_store *s, const char *path, uint64_t *revision_out)
{
	return checkpoint_read(s, path, revision_out);
}

ctx_status checkpoint_verify(const char *path, uint64_t *revision_out)
{
	return checkpoint_read(NULL, path, revision_out);
}

/* ---- the public face -------------------------------------------------------- */

ctx_status ctx_checkpoint(ctx_store *s)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (!s)
		return ctx_fail(CTX_INVALID, "NULL store");
	if (!s->log)
		return CTX_OK;
	int err = log_failed(s->log);
	if (err) {
		errno = err;
		return ctx_fail(CTX_CLOSED, "the log failed earlier (%s); no checkpoint is written",
		                strerror(err));
	}
	checkpoint_lock(s);
	ctx_status st = checkpoint_run(s);
	checkpoint_unlock(s);
	return st;
}
