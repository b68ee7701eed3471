/*
 * recovery.c - opening a data directory: checkpoint, then log replay.
 *
 * 1. The newest checkpoint that loads cleanly gives the state as of its
 *    revision R (a damaged one is reported and the one before it is tried).
 *    If every checkpoint is damaged but the log is complete (its first
 *    segment starts at revision 1), the state is rebuilt from the log alone.
 *    A checkpoint is read back intact before it deletes the one before it
 *    and the log it covers (checkpoint.c), so an older checkpoint, or the
 *    log from revision 1, is there only after a failed read-back or a crash
 *    between a checkpoint's rename and its deletes; a sole checkpoint
 *    damaged at rest, with the log it covers deleted, is CTX_CORRUPT naming
 *    it, as LMDB or SQLite would refuse a damaged file.
 * 2. The log segments are replayed in order from the one holding R + 1.
 *    Revisions must follow each other without a gap across all segments;
 *    records <= R, and commits the checkpoint already holds (by version), are
 *    skipped.
 * 3. Damage in the log (a record that fails its checks). What the crash can
 *    have left unsynced is only the end of the NEWEST segment: the flusher
 *    starts a segment only after syncing the one before, and syncs each group
 *    write before acknowledging any record in it. Within that last group
 *    write, page writeback has no order: a later page may be on disk while
 *    an earlier one reads as zeros or old bytes, so valid records can follow
 *    the damage. So the first invalid record of the newest segment, and
 *    everything after it, is the unsynced tail: it is cut off, the cut bytes
 *    are kept in "torn-<segment>-<offset>.bin" (unless they are all zeros),
 *    and it is reported; the oldest of those files are then deleted until
 *    they hold at most checkpoint_bytes, never the new one (prune_torn).
 *    Damage that provably lies inside synced data is corruption: recovery
 *    stops with CTX_CORRUPT naming the file and offset, and serves nothing.
 *    That is damage in an older segment, a damaged header with records after
 *    it, a record out of order or malformed behind a valid checksum, and
 *    damage at or below the durable floor: the highest revision a checkpoint
 *    proves was synced (the revision in a checkpoint's name, and the newest
 *    version a loaded checkpoint holds, were durable in the log before the
 *    checkpoint was renamed into place). The log must also reach that floor.
 *    The price: bit rot inside synced records of the newest segment, above
 *    the floor, looks like an unsynced tail and is cut (kept aside, and
 *    reported), where a stricter reading would refuse to open.
 * 4. The zero tail. The log writes a segment's zeros (and syncs them) ahead
 *    of its records and writes records over them, so a segment ends with
 *    zeros where records stop, unless it was cut back when rotated or
 *    closed. Where every byte from a record boundary to the end of the file
 *    is zero, the segment ends cleanly there, in any segment: no damage,
 *    nothing kept aside, nothing reported (an open cuts those zeros off,
 *    unsynced). Records lost to a crash there are caught as before: by the
 *    revision gap to the next segment, or by the durable floor. A damaged
 *    record followed by zeros is damage as in 3; the bytes kept aside stop
 *    at the last non-zero one.
 *
 * 5. Segments of log format 1 (a 40-byte record header, fixed-width bodies)
 *    and format 2 (varints, one CRC, record times as differences: format.h)
 *    are both read; a segment's header says which it is (rec_parse, take_op).
 *
 * Recovery runs before the store is shared, on one thread; it builds states
 * directly, without the log. Read-only recovery (ctx_verify) changes no file
 * and prints nothing; it describes the repairs an open would make.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"
#include "pool.h"
#include "reader.h"
#include "reclaim.h"
#include "store.h"
#include "util.h"
#include "vfs.h"

typedef struct rev_list {
	uint64_t *v;
	size_t n, cap;
} rev_list;

static bool rev_push(rev_list *l, uint64_t v)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		uint64_t *g = realloc(l->v, cap * sizeof(*g));
		if (!g)
			return false;
		l->v = g;
		l->cap = cap;
	}
	l->v[l->n++] = v;
	return true;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Find checkpoints and segments (sorted ascending); remove stale temp files. */
static ctx_status list_dir(const char *dir, bool read_only, rev_list *ckpts, rev_list *segs)
{
	DIR *d = opendir(dir);
	if (!d)
		return ctx_fail(CTX_IO, "cannot read directory %s: %s", dir, strerror(errno));
	struct dirent *e;
	bool ok = true;
	while (ok && (e = readdir(d))) {
		unsigned long long v;
		char tail[8];
		size_t len = strlen(e->d_name);
		if (len == 26 && sscanf(e->d_name, "ckpt-%16llx.ckp%1s", &v, tail) == 2)
			ok = rev_push(ckpts, v);
		else if (len == 24 && sscanf(e->d_name, "wal-%16llx.lo%1s", &v, tail) == 2)
			ok = rev_push(segs, v);
		else if (!read_only && len == 25 &&
		         sscanf(e->d_name, "ckpt-%16llx.tm%1s", &v, tail) == 2) {
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			vfs_unlink(path);
		}
	}
	closedir(d);
	if (!ok)
		return ctx_fail(CTX_NOMEM, "no memory listing %s", dir);
	if (ckpts->n)
		qsort(ckpts->v, ckpts->n, sizeof(uint64_t), cmp_u64);
	if (segs->n)
		qsort(segs->v, segs->n, sizeof(uint64_t), cmp_u64);
	return CTX_OK;
}

/* ---- applying records -------------------------------------------------------- */

/* One op of a commit body (op_ref is filled by take_op). */
typedef struct op_ref {
	const unsigned char *key, *val;
	uint32_t klen, vlen;
	uint64_t time_us;
	uint8_t code;
} op_ref;

static uint64_t take_uv(reader *r)
{
	uint64_t v = 0;
	size_t n = r->bad ? 0 : get_uv(r->p, (size_t)(r->end - r->p), &v);
	if (!n) {
		r->bad = true;
		return 0;
	}
	r->p += n;
	return v;
}

/* The op count of a commit body in log format fmt (u32 in 1, a varint in 2). */
static uint64_t take_count(reader *r, uint32_t fmt)
{
	return fmt == FORMAT_V1 ? take_u32(r) : take_uv(r);
}

/* The next op of a commit body in log format fmt into *o: a byte of kind,
 * the key and value lengths (u32 each in 1, varints in 2), the key and the
 * value; with_times (RESTORE), then the time the value was set (u64 in 1; in
 * 2 a zigzag varint of updated - that time), else the time is updated.
 * False if malformed (the reader may be left bad). */
static bool take_op(reader *r, uint32_t fmt, bool with_times, uint64_t updated, op_ref *o)
{
	const unsigned char *k = take(r, 1);
	uint64_t klen = fmt == FORMAT_V1 ? take_u32(r) : take_uv(r);
	uint64_t vlen = fmt == FORMAT_V1 ? take_u32(r) : take_uv(r);
	o->key = take(r, klen);
	o->val = take(r, vlen);
	o->time_us = updated;
	if (with_times)
		o->time_us =
		    fmt == FORMAT_V1 ? take_u64(r) : updated - (uint64_t)unzigzag(take_uv(r));
	if (r->bad || klen == 0 || *k > OP_META_DEL_CODE)
		return false;
	o->code = *k;
	o->klen = (uint32_t)klen;
	o->vlen = (uint32_t)vlen;
	return true;
}

/* Apply the ops of a commit body to data/meta; *nops_out (if not NULL) gets
 * their number, *changed_out (if not NULL) the data ops that changed the map
 * (as txn.c's apply_ops counts them: a put of the value already there, or a
 * delete of an absent key, changes nothing). */
static ctx_status apply_ops(reader *r, uint32_t fmt, hamt *data, hamt *meta, uint64_t edit,
                            uint64_t time_us, bool with_times, uint64_t *nops_out,
                            size_t *changed_out)
{
	uint64_t nops = take_count(r, fmt);
	size_t changed = 0;
	if (nops_out)
		*nops_out = nops;
	for (uint64_t i = 0; i < nops && !r->bad; i++) {
		op_ref o;
		if (!take_op(r, fmt, with_times, time_us, &o))
			return CTX_CORRUPT;
		const unsigned char *key = o.key, *val = o.val, *k = &o.code;
		uint32_t klen = o.klen, vlen = o.vlen;
		bool is_data = *k == OP_PUT_CODE || *k == OP_DEL_CODE;
		hamt *m = is_data ? data : meta;
		if (*k == OP_PUT_CODE || *k == OP_META_PUT_CODE) {
			hamt_leaf *l = hamt_leaf_new(key, klen, val, vlen);
			bool diff = false;
			if (l)
				l->time_us = o.time_us;
			if (!l || hamt_put(m, l, edit, &diff) != CTX_OK) {
				hamt_leaf_release(l);
				return CTX_NOMEM;
			}
			changed += is_data && diff;
		} else {
			ctx_status st = hamt_del(m, hamt_hash(key, klen), key, klen, edit);
			if (st == CTX_NOMEM)
				return CTX_NOMEM;
			changed += is_data && st == CTX_OK;
		}
	}
	if (changed_out)
		*changed_out = changed;
	return r->bad ? CTX_CORRUPT : CTX_OK;
}

typedef struct key_ref {
	const unsigned char *p;
	uint32_t len;
} key_ref;

static int key_ref_cmp(const void *a, const void *b)
{
	const key_ref *x = a, *y = b;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->p, y->p, x->len);
}

/* The keys of the data ops of the commit body at r, in *keys (stack,
 * or malloc'd if it holds more than KEYS_STACK: the caller frees it then),
 * their number in *n. False for a malformed body (apply_ops reports it) or
 * when out of memory. */
#define KEYS_STACK 32
static bool body_keys(reader r, uint32_t fmt, bool with_times, key_ref *stack, key_ref **keys,
                      size_t *n)
{
	uint64_t nops = take_count(&r, fmt);
	*keys = stack;
	*n = 0;
	if (r.bad || nops > (size_t)(r.end - r.p))
		return false;
	if (nops > KEYS_STACK && !(*keys = malloc(nops * sizeof(**keys))))
		return false;
	for (uint64_t i = 0; i < nops && !r.bad; i++) {
		op_ref o;
		if (take_op(&r, fmt, with_times, 0, &o) &&
		    (o.code == OP_PUT_CODE || o.code == OP_DEL_CODE))
			(*keys)[(*n)++] = (key_ref){o.key, o.klen};
	}
	return !r.bad;
}

/* Key i of a set for keys_distinct, in *k; false when entry i is not a
 * data key (left out). */
typedef bool (*key_at_fn)(const void *set, size_t i, key_ref *k);

/* keys_distinct for a few keys: each pair compared. */
static bool keys_distinct_few(const void *set, size_t n, key_at_fn key_at, const uint64_t *hash)
{
	key_ref a, b;
	for (size_t i = 0; i < n; i++) {
		if (!key_at(set, i, &a))
			continue;
		for (size_t j = i + 1; j < n; j++)
			if (key_at(set, j, &b) && (!hash || hash[i] == hash[j]) &&
			    key_ref_cmp(&a, &b) == 0)
				return false;
	}
	return true;
}

/* Whether the data keys of a set of n are distinct: then the commit's count
 * of changed keys is exact without a diff of the maps. A set of indices
 * hashed by hash[i] when the caller already took the keys' hashes, else by
 * crc32c (hardware: a sort's key comparisons cost 10% of replaying 100-put
 * transactions); false also when out of memory (the callers' other path is
 * exact for distinct keys too). */
static bool keys_distinct(const void *set, size_t n, key_at_fn key_at, const uint64_t *hash)
{
	if (n <= 8)
		return keys_distinct_few(set, n, key_at, hash);
	size_t cap = 32;
	while (cap < 2 * n)
		cap *= 2;
	uint32_t stack[256], *slot = cap <= 256 ? stack : malloc(cap * sizeof(*slot));
	if (!slot)
		return false;
	memset(slot, 0, cap * sizeof(*slot)); /* 0: empty, else index + 1 */
	bool distinct = true;
	for (size_t i = 0; i < n && distinct; i++) {
		key_ref a, b;
		if (!key_at(set, i, &a))
			continue;
		uint64_t ha = hash ? hash[i] : crc32c(0, a.p, a.len);
		size_t h = (size_t)ha & (cap - 1);
		for (; slot[h] && distinct; h = (h + 1) & (cap - 1)) {
			size_t j = slot[h] - 1;
			key_at(set, j, &b);
			distinct = (hash && hash[j] != ha) || key_ref_cmp(&a, &b) != 0;
		}
		slot[h] = (uint32_t)(i + 1);
	}
	if (slot != stack)
		free(slot);
	return distinct;
}

static bool key_refs_at(const void *set, size_t i, key_ref *k)
{
	*k = ((const key_ref *)set)[i];
	return true;
}

/* ---- reading the log ahead --------------------------------------------------- */

/* A segment, mapped read-only with its pages mapped at once (MAP_POPULATE):
 * the replay reads all of it, and a fault per few pages (the kernel maps a
 * file's cached pages around each fault, 16 at most) was ~6% of replaying
 * a log of one-put commits in this VM. (The first touch of each page still
 * costs 3.5-5.5 us here: the plan's pass reads with pread instead, see
 * PLAN_WINDOW; the replay's reader thread takes those touches, beside the
 * replay.) MAP_FAILED on failure. */
static const unsigned char *log_map(int fd, size_t size)
{
	void *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (base != MAP_FAILED)
		madvise(base, size, MADV_SEQUENTIAL);
	return base;
}

#define LOG_AHEAD  1024 /* bytes of log loaded ahead of a body's parse */
#define LOG_WINDOW 4096 /* and ahead of the record a pass reads */

/* Start loading the log up to LOG_WINDOW bytes past `at` (the record a
 * pass reads next), from *loaded on (what earlier calls loaded), no
 * further than end: a segment's pages lie anywhere in memory, and the
 * hardware's prefetch stops at each page's end, so a pass that reads
 * records one after the other waits for most of their lines otherwise. */
static inline void log_ahead(const unsigned char **loaded, const unsigned char *at,
                             const unsigned char *end)
{
	const unsigned char *to = (size_t)(end - at) > LOG_WINDOW ? at + LOG_WINDOW : end;
	const unsigned char *p = *loaded > at ? *loaded : at;
	for (; p < to; p += 64)
		__builtin_prefetch(p);
	*loaded = p;
}

/* ---- the replay plan: which versions are built in place -------------------- */

/* Of a context's replayed versions, history keeps only the newest
 * history_depth; the others leave it as soon as that many newer ones are
 * built, and no record looks at them again unless a point or restore record
 * names them. Building each of those as a version of its own (a copy of the
 * path to every changed key, a state struct, a fresh edit token, freeing the
 * version it cuts) is most of what replay costs. So a first pass over the
 * record headers and ids (plan_build) notes, for each incarnation of each
 * context, the newest version the log gives it (`last`) and the versions
 * point and restore records name (`pins`). Replaying a commit onto a head
 * of version v that is neither pinned nor among the newest history_depth
 * (v <= last - history_depth) applies it in place (apply_in_place): the
 * head's own nodes were built under c->replay_edit, which no other version
 * holds, so the edit token lets the commit change them without copying,
 * and the head becomes version v + 1 with the next record's revision, time
 * and count of changed keys. Every version that is kept is still built and
 * pushed as before, from the same content, so the recovered history,
 * points, checksums and per-key times are those a version-by-version replay
 * gives. The chain is shorter while replay runs (merged versions are not in
 * it): point and restore records therefore look a version up in the chain
 * only within history_depth of the head (in_window), as a full replay's
 * chain would hold it. A record's changed keys are counted per op while
 * applying it; when its ops name a key twice, from each key's leaf before
 * and after (apply_in_place_repeated), as a diff of the versions would. */
typedef struct plan_entry {
	char *id; /* NULL: free slot */
	size_t idlen;
	uint64_t hash, incarnation;
	uint64_t last; /* newest version of this incarnation in the log */
	rev_list pins; /* versions point and restore records name, sorted */
} plan_entry;

typedef struct replay_plan {
	plan_entry *e;
	size_t n, cap; /* open addressing, cap a power of two */
	bool off;      /* no plan (out of memory): every version is built */
	/* Per segment walked (its first revision), where its records that
	 * passed both checksums end: replay_segment does not checksum those
	 * bodies again (the directory is locked: its files do not change
	 * between the passes). */
	rev_list vfirst, vend;
} replay_plan;

static uint64_t plan_hash(const char *id, size_t idlen, uint64_t incarnation)
{
	return hamt_hash(id, idlen) ^ (incarnation * 0x9e3779b97f4a7c15ull);
}

static plan_entry *plan_find(const replay_plan *pl, const char *id, size_t idlen,
                             uint64_t incarnation)
{
	if (pl->off || !pl->cap)
		return NULL;
	uint64_t h = plan_hash(id, idlen, incarnation);
	for (size_t i = h & (pl->cap - 1);; i = (i + 1) & (pl->cap - 1)) {
		plan_entry *e = &pl->e[i];
		if (!e->id)
			return NULL;
		if (e->hash == h && e->incarnation == incarnation && e->idlen == idlen &&
		    memcmp(e->id, id, idlen) == 0)
			return e;
	}
}

static bool plan_grow(replay_plan *pl)
{
	size_t cap = pl->cap ? 2 * pl->cap : 1024;
	plan_entry *g = calloc(cap, sizeof(*g));
	if (!g)
		return false;
	for (size_t j = 0; j < pl->cap; j++) {
		if (!pl->e[j].id)
			continue;
		size_t i = pl->e[j].hash & (cap - 1);
		while (g[i].id)
			i = (i + 1) & (cap - 1);
		g[i] = pl->e[j];
	}
	free(pl->e);
	pl->e = g;
	pl->cap = cap;
	return true;
}

/* The entry of (id, incarnation), made if new; NULL when out of memory. */
static plan_entry *plan_note(replay_plan *pl, const char *id, size_t idlen, uint64_t incarnation)
{
	plan_entry *e = plan_find(pl, id, idlen, incarnation);
	if (e)
		return e;
	if (2 * (pl->n + 1) > pl->cap && !plan_grow(pl))
		return NULL;
	uint64_t h = plan_hash(id, idlen, incarnation);
	size_t i = h & (pl->cap - 1);
	while (pl->e[i].id)
		i = (i + 1) & (pl->cap - 1);
	e = &pl->e[i];
	if (!(e->id = malloc(idlen)))
		return NULL;
	memcpy(e->id, id, idlen);
	e->idlen = idlen;
	e->hash = h;
	e->incarnation = incarnation;
	pl->n++;
	return e;
}

static bool plan_pin(plan_entry *e, uint64_t version)
{
	return rev_push(&e->pins, version);
}

static void plan_free(replay_plan *pl)
{
	for (size_t i = 0; i < pl->cap; i++) {
		free(pl->e[i].id);
		free(pl->e[i].pins.v);
	}
	free(pl->e);
	free(pl->vfirst.v);
	free(pl->vend.v);
	*pl = (replay_plan){0};
}

/* Note one intact record (its header h) in the plan. False: out of memory. */
static bool plan_record(replay_plan *pl, const rec_view *v)
{
	reader r = {v->body, v->body + v->blen, false};
	const unsigned char *lenp = take(&r, 2);
	size_t idlen = lenp ? get_u16(lenp) : 0;
	const char *id = (const char *)take(&r, idlen);
	uint8_t type = v->type;
	uint64_t version = v->version;
	if (r.bad || idlen == 0 || type == REC_DROP || type == REC_EXPIRE || type == REC_TTL ||
	    type == REC_POINT_DEL)
		return true; /* malformed ones fail the replay itself */
	plan_entry *e = plan_note(pl, id, idlen, v->incarnation);
	if (!e)
		return false;
	if (type == REC_POINT)
		return plan_pin(e, version);
	if (type == REC_CREATE)
		version = 1;
	if (version > e->last)
		e->last = version;
	if (type == REC_RESTORE_REF) {
		take_u64(&r); /* updated */
		uint64_t target = take_u64(&r);
		return r.bad || plan_pin(e, target);
	}
	return true;
}

/* The plan's pass reads each segment with pread into one buffer it
 * reuses, a window of PLAN_WINDOW bytes (more for a larger record), not
 * through a mapping: in this VM the first touch of each page of a new
 * mapping costs 3.5-5.5 us even when MAP_POPULATE mapped it (~110-170 ms
 * for a 125 MB segment: more than the checksums), where pread's copy from
 * the page cache into a buffer already touched costs ~0.25 ms per MB. The
 * replay maps the segment (its reader thread pays those touches, beside
 * the replay). */
#define PLAN_WINDOW (1u << 20)

atomic_size_t recovery_test_planned;

typedef struct plan_window {
	int fd;
	unsigned char *buf;
	size_t cap;        /* bytes of buf */
	size_t start, len; /* the file's bytes [start, start + len) are in buf */
	size_t size;       /* the file's */
} plan_window;

/* Make the window start at off, with up to cap bytes (grown to at least
 * want first). False on a read error or when out of memory. */
static bool window_fill(plan_window *w, size_t off, size_t want)
{
	if (want > w->cap) {
		size_t cap = w->cap;
		while (cap < want)
			cap *= 2;
		unsigned char *g = malloc(cap);
		if (!g)
			return false;
		free(w->buf);
		w->buf = g;
		w->cap = cap;
	}
	size_t n = w->size - off < w->cap ? w->size - off : w->cap;
	w->start = off;
	w->len = 0;
	while (w->len < n) {
		ssize_t r = pread(w->fd, w->buf + w->len, n - w->len, (off_t)(off + w->len));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		w->len += (size_t)r;
	}
	return true;
}

static const char window_failed[] = "read error";

/* Parse the record at off of the window's file into *v, reading more of
 * the file as it needs: NULL, or what is wrong with it (rec_parse's), or
 * window_failed (a read error, or no memory for a larger window). */
static const char *window_record(plan_window *w, uint32_t fmt, size_t off, rec_view *v)
{
	for (;;) {
		if (off < w->start || off > w->start + w->len)
			if (!window_fill(w, off, 0))
				return window_failed;
		size_t at = off - w->start, avail = w->len - at;
		const char *why = rec_parse(fmt, w->buf + at, avail, true, v);
		if (!why || off + avail >= w->size || strncmp(why, "truncated", 9) != 0)
			return why;
		/* Cut by the window's end: read on from off, in a larger window
		 * if it already started there. */
		if (!window_fill(w, off, at ? 0 : 2 * w->cap))
			return window_failed;
	}
}

/* Walk the intact records of segment `first` above revision *prev (as
 * replay_segment does, stopping where it would stop or fail), read
 * through w (its buffer kept for the next segment). False: stop (damage,
 * or out of memory: then pl->off). */
static bool plan_segment(replay_plan *pl, const char *dir, uint64_t first, uint64_t checkpoint,
                         uint64_t *prev, plan_window *w, size_t *records)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/wal-%016" PRIx64 ".log", dir, first);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size == 0) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	w->fd = fd;
	w->size = (size_t)sb.st_size;
	w->start = w->len = 0;
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	size_t size = w->size;
	bool ok = window_fill(w, 0, 0);
	if (!ok)
		pl->off = true; /* not read: no plan (as out of memory) */
	uint32_t fmt = ok && size >= WAL_HEADER_SIZE ? get_u32(w->buf + 8) : 0;
	ok = ok && file_header_intact(w->buf, w->len, WAL_MAGIC) &&
	     (fmt == FORMAT_VERSION || fmt == FORMAT_V1) && get_u64(w->buf + 16) == first &&
	     (*prev + 1 == first || first <= checkpoint + 1);
	size_t off = WAL_HEADER_SIZE;
	if (ok)
		*prev = first - 1;
	while (ok && off < size) {
		rec_view v;
		const char *why = window_record(w, fmt, off, &v);
		if (why == window_failed)
			pl->off = true; /* the replay reads on: a plan that stops
			                 * short would miss pins */
		if (why || v.rev != *prev + 1) {
			ok = false;
			break;
		}
		if (v.rev > checkpoint && !plan_record(pl, &v)) {
			pl->off = true;
			ok = false;
			break;
		}
		*prev = v.rev;
		off += v.len;
		(*records)++;
	}
	if (off > WAL_HEADER_SIZE && !pl->off &&
	    (!rev_push(&pl->vfirst, first) || !rev_push(&pl->vend, off)))
		pl->off = true;
	close(fd);
	return ok;
}

/* The plan of the replay of segments segs->v[start..] above checkpoint. */
static void plan_build(replay_plan *pl, const char *dir, const rev_list *segs, size_t start,
                       uint64_t checkpoint)
{
	uint64_t prev = segs->v[start] - 1;
	plan_window w = {.buf = malloc(PLAN_WINDOW), .cap = PLAN_WINDOW};
	if (!w.buf) {
		pl->off = true;
		return;
	}
	size_t records = 0;
	for (size_t i = start; i < segs->n; i++)
		if (!plan_segment(pl, dir, segs->v[i], checkpoint, &prev, &w, &records))
			break;
	free(w.buf);
	atomic_store_explicit(&recovery_test_planned, records, memory_order_relaxed);
	for (size_t i = 0; i < pl->cap && !pl->off; i++)
		if (pl->e[i].pins.n > 1)
			qsort(pl->e[i].pins.v, pl->e[i].pins.n, sizeof(uint64_t), cmp_u64);
}

/* Where the records of segment `first` that the plan's pass checked end (0:
 * none checked, or no plan). */
static size_t plan_verified(const replay_plan *pl, uint64_t first)
{
	for (size_t i = 0; !pl->off && i < pl->vfirst.n && i < pl->vend.n; i++)
		if (pl->vfirst.v[i] == first)
			return (size_t)pl->vend.v[i];
	return 0;
}

/* Whether c's head (built by replay) may become the next version in place:
 * it leaves history anyway and no record names it. */
static bool head_merges(const replay_plan *pl, ctx_context *c)
{
	if (!c->replay_edit)
		return false;
	plan_entry *e = c->replay_plan;
	if (!e && !(e = plan_find(pl, c->id, c->idlen, c->incarnation)))
		return false;
	c->replay_plan = e;
	uint64_t v = c->head->version, depth = c->store->opts.history_depth;
	if (e->last < depth || v > e->last - depth)
		return false;
	return !e->pins.n || !bsearch(&v, e->pins.v, e->pins.n, sizeof(uint64_t), cmp_u64);
}

/* Whether a chain lookup may find version `version` of c: a replay that
 * built every version would hold only the newest history_depth in the
 * chain (the merged ones are not there, so the chain can reach further). */
static bool in_window(const ctx_context *c, uint64_t version)
{
	return c->head->version - version < c->store->opts.history_depth;
}

/* Make the next version of c by applying the commit body at r to its head
 * in place (head_merges said it may). */
static ctx_status apply_in_place(ctx_context *c, reader *r, uint32_t fmt, uint64_t rev,
                                 uint64_t version, uint64_t updated, bool with_times)
{
	ctx_state *h = c->head;
	uint64_t nops = 0;
	size_t changed = 0;
	ctx_status st = apply_ops(r, fmt, &h->data, &h->meta, c->replay_edit, updated, with_times,
	                          &nops, &changed);
	if (st == CTX_OK && r->p != r->end)
		st = CTX_CORRUPT;
	if (st != CTX_OK)
		return st; /* the store is not opened */
	h->version = version;
	h->revision = rev;
	h->updated_us = updated;
	h->changed = changed;
	h->light = nops <= RECLAIM_LIGHT_OPS;
	context_note_access(c, updated);
	return CTX_OK;
}

/* apply_in_place for a record whose data ops name a key more than once
 * (its data keys sorted, n of them): per-op counts would count such a key once per
 * op, so the changed keys are counted as a diff of the two versions would
 * count them, from each key's leaf before and after (the leaves before are
 * held meanwhile: the edit frees a leaf it replaces). */
static ctx_status apply_in_place_repeated(ctx_context *c, reader *r, uint32_t fmt, uint64_t rev,
                                          uint64_t version, uint64_t updated, bool with_times,
                                          const key_ref *keys, size_t n)
{
	hamt_leaf **before = malloc(n * sizeof(*before));
	if (!before)
		return CTX_NOMEM;
	hamt *data = &c->head->data;
	for (size_t i = 0; i < n; i++) {
		if (i && key_ref_cmp(&keys[i - 1], &keys[i]) == 0) {
			before[i] = NULL;
			continue;
		}
		before[i] = (hamt_leaf *)hamt_find(data, hamt_hash(keys[i].p, keys[i].len),
		                                   keys[i].p, keys[i].len);
		if (before[i])
			atomic_fetch_add_explicit(&before[i]->refs, 1, memory_order_relaxed);
	}
	ctx_status st = apply_in_place(c, r, fmt, rev, version, updated, with_times);
	size_t changed = 0;
	for (size_t i = 0; i < n; i++) {
		if (i && key_ref_cmp(&keys[i - 1], &keys[i]) == 0)
			continue;
		const hamt_leaf *a = before[i],
		                *b = hamt_find(data, hamt_hash(keys[i].p, keys[i].len), keys[i].p,
		                               keys[i].len);
		changed +=
		    !a != !b || (a && a != b &&
		                 (a->vlen != b->vlen ||
		                  memcmp(hamt_leaf_value(a), hamt_leaf_value(b), a->vlen) != 0));
		hamt_leaf_release(before[i]);
	}
	free(before);
	if (st == CTX_OK)
		c->head->changed = changed;
	return st;
}

/* A point record (or its removal) for version `version` of c. */
static ctx_status apply_point(ctx_context *c, uint8_t type, uint64_t version, reader *r,
                              const char **why)
{
	if (type == REC_POINT_DEL) {
		if (r->p != r->end)
			return CTX_CORRUPT;
		ctx_status st = points_remove(c, version);
		*why = "no memory";
		return st == CTX_NOT_FOUND ? CTX_OK : st;
	}
	uint64_t time = take_u64(r), sum = take_u64(r);
	const unsigned char *len = take(r, 1);
	const unsigned char *label = len ? take(r, *len) : NULL;
	if (r->bad || r->p != r->end || *len > CTX_LABEL_MAX)
		return CTX_CORRUPT;
	char text[CTX_LABEL_MAX + 1];
	memcpy(text, label, *len);
	text[*len] = 0;
	ctx_state *v = c->head;
	while (v && v->version > version)
		v = atomic_load(&v->prev);
	if (!v || v->version != version || !in_window(c, version)) {
		/* The version left history before its point was replayed (a smaller
		 * history_depth than when it was written): the point is lost. */
		fprintf(stderr,
		        "ctx: recovery: point on version %llu of '%s' lost: version not kept\n",
		        (unsigned long long)version, c->id);
		return CTX_OK;
	}
	*why = "no memory";
	return points_add(c, v, text, time, sum);
}

/* Version `version` of c: in the history chain, or pinned by a point. */
static ctx_state *find_kept(ctx_context *c, uint64_t version)
{
	ctx_state *v = c->head;
	while (v && v->version > version)
		v = atomic_load(&v->prev);
	if (v && v->version == version && in_window(c, version))
		return v;
	const point_set *p = atomic_load(&c->points);
	for (size_t i = 0; p && i < p->count; i++)
		if (p->e[i].st->version == version)
			return p->e[i].st;
	return NULL;
}

/* A restore that names its target (RESTORE_REF) as the new version `version`
 * of c. The target was in c's history or points when the restore was made,
 * and the replayed ones mirror them, so it is there again: unless the store
 * is now opened with a smaller history_depth or max_points than the log was
 * written with, which is reported, not guessed around. */
static ctx_status apply_restore_ref(ctx_context *c, uint64_t rev, uint64_t version, reader *r,
                                    const char **why)
{
	uint64_t updated = take_u64(r), target = take_u64(r), sum = take_u64(r);
	if (r->bad || r->p != r->end)
		return CTX_CORRUPT;
	if (version <= c->head->version)
		return CTX_OK; /* the checkpoint holds the restored version */
	if (version != c->head->version + 1) {
		*why = "version gap";
		return CTX_CORRUPT;
	}
	const ctx_state *t = find_kept(c, target);
	if (!t) {
		*why = "restore of a version neither in history nor pinned (opened with a "
		       "smaller history_depth or max_points than the log was written with?)";
		return CTX_CORRUPT;
	}
	if (t->data.sum + t->meta.sum != sum) {
		*why = "restore whose target's content checksum does not match";
		return CTX_CORRUPT;
	}
	hamt data = hamt_retain(&t->data), meta = hamt_retain(&t->meta);
	ctx_state *next = state_new(c, version, data, meta);
	if (!next) {
		hamt_release(&data);
		hamt_release(&meta);
		*why = "no memory";
		return CTX_NOMEM;
	}
	next->revision = rev;
	next->updated_us = updated;
	context_note_access(c, updated);
	next->changed = hamt_diff_count(&c->head->data, &next->data);
	store_set_head_recovered(c, next);
	c->replay_edit = 0; /* its nodes are the target's: never edit them */
	return CTX_OK;
}

/* ---- in place, with the paths loaded ahead ---------------------------------- */

/* The ops of a commit body, and each key's hash (hamt_hash). */
#define OPS_STACK 32
typedef struct op_list {
	op_ref *op;
	uint64_t *hash;
	size_t n;
	op_ref stack_op[OPS_STACK];
	uint64_t stack_hash[OPS_STACK];
} op_list;

static void op_list_free(op_list *o)
{
	if (o->op != o->stack_op) {
		free(o->op);
		free(o->hash);
	}
}

static bool op_key_at(const void *set, size_t i, key_ref *k)
{
	const op_ref *o = &((const op_list *)set)->op[i];
	*k = (key_ref){o->key, o->klen};
	return o->code == OP_PUT_CODE || o->code == OP_DEL_CODE;
}

/* Parse the commit body at r (as apply_ops reads it) into *o, hashing each
 * key. False when it is malformed (apply_ops reports that) or out of
 * memory: the caller takes the other path. */
static bool body_ops(reader r, uint32_t fmt, bool with_times, uint64_t time_us, op_list *o)
{
	uint64_t nops = take_count(&r, fmt);
	o->op = o->stack_op;
	o->hash = o->stack_hash;
	o->n = 0;
	if (r.bad || nops > (size_t)(r.end - r.p))
		return false;
	if (nops > OPS_STACK) {
		o->op = malloc(nops * sizeof(*o->op));
		o->hash = malloc(nops * sizeof(*o->hash));
		if (!o->op || !o->hash) {
			free(o->op);
			free(o->hash);
			o->op = o->stack_op;
			o->hash = o->stack_hash;
			return false;
		}
	}
	for (uint64_t i = 0; i < nops; i++) {
		/* The log is read once more here (its pages are scattered in
		 * memory: the hardware's prefetch stops at each page's end). */
		__builtin_prefetch(r.p + LOG_AHEAD);
		__builtin_prefetch(r.p + LOG_AHEAD + 64);
		op_ref *op = &o->op[o->n];
		if (!take_op(&r, fmt, with_times, time_us, op))
			return false;
		o->hash[o->n++] = hamt_hash(op->key, op->klen);
	}
	return r.p == r.end;
}

/* The ops of a parsed commit body and their keys' hashes: an op_list's, or
 * made ahead by the reader thread (below). */
typedef struct op_span {
	const op_ref *op;
	const uint64_t *hash;
	size_t n;
} op_span;

/* apply_in_place for a body parsed into o, whose data keys are distinct:
 * the paths of all its keys are loaded first (hamt_prefetch_paths), side by
 * side, then the ops are applied in their order. */
static ctx_status apply_in_place_ops(ctx_context *c, const op_span *o, uint64_t rev,
                                     uint64_t version, uint64_t updated)
{
	ctx_state *h = c->head;
	uint64_t edit = c->replay_edit;
	size_t changed = 0;
	hamt_prefetch_paths(&h->data, o->hash, o->n);
	for (size_t i = 0; i < o->n; i++) {
		const op_ref *op = &o->op[i];
		bool is_data = op->code == OP_PUT_CODE || op->code == OP_DEL_CODE;
		hamt *m = is_data ? &h->data : &h->meta;
		if (op->code == OP_PUT_CODE || op->code == OP_META_PUT_CODE) {
			hamt_leaf *l = hamt_leaf_new(op->key, op->klen, op->val, op->vlen);
			bool diff = false;
			if (l)
				l->time_us = op->time_us;
			if (!l || hamt_put_hashed(m, l, o->hash[i], edit, &diff) != CTX_OK) {
				hamt_leaf_release(l);
				return CTX_NOMEM; /* the store is not opened */
			}
			changed += is_data && diff;
		} else {
			ctx_status st = hamt_del(m, o->hash[i], op->key, op->klen, edit);
			if (st == CTX_NOMEM)
				return CTX_NOMEM;
			changed += is_data && st == CTX_OK;
		}
	}
	h->version = version;
	h->revision = rev;
	h->updated_us = updated;
	h->changed = changed;
	h->light = o->n <= RECLAIM_LIGHT_OPS;
	context_note_access(c, updated);
	return CTX_OK;
}

/* Apply one record v of a segment in log format fmt; time_us: its time
 * (format 2: from its header; format 1 reads it from the body). CTX_CORRUPT
 * with *why set if it makes no sense. */
static ctx_status apply_record(ctx_store *s, const replay_plan *pl, uint32_t fmt, const rec_view *v,
                               uint64_t time_us, const op_span *made, const char **why)
{
	uint8_t type = v->type;
	uint64_t rev = v->rev, version = v->version, incarnation = v->incarnation;
	reader r = {v->body, v->body + v->blen, false};
	const unsigned char *lenp = take(&r, 2);
	size_t idlen = lenp ? get_u16(lenp) : 0;
	const unsigned char *idp = take(&r, idlen);
	char id[CTX_ID_MAX + 1];
	size_t checked;
	*why = "malformed record body";
	if (r.bad || idlen == 0 || idlen > CTX_ID_MAX)
		return CTX_CORRUPT;
	memcpy(id, idp, idlen);
	id[idlen] = 0;
	/* An id the store holds was checked when its context was made (its
	 * bytes, NUL-free, equal these): only one it does not hold is checked
	 * here, most records' ids are not. */
	ctx_context *c = store_lookup_recovered(s, id, idlen);
	if (!c && (ctx_check_id(id, &checked) != CTX_OK || checked != idlen))
		return CTX_CORRUPT;

	if (type == REC_CREATE) {
		uint64_t created = fmt == FORMAT_V1 ? take_u64(&r) : time_us;
		if (r.bad || incarnation != rev || version != 1)
			return CTX_CORRUPT;
		/* The checkpoint holds this incarnation, or a later one (made after
		 * the checkpoint began and snapshotted by it): this one's records
		 * are superseded. */
		if (c && c->incarnation >= incarnation)
			return CTX_OK;
		if (c) {
			*why = "create of a context that exists";
			return CTX_CORRUPT;
		}
		c = context_new(s, id, idlen, created);
		hamt data = {0}, meta = {0};
		ctx_status ast = CTX_OK;
		uint64_t edit = hamt_edit_token();
		if (r.p != r.end) /* initial data (ctx_txn_begin_create) */
			ast = apply_ops(&r, fmt, &data, &meta, edit, created, false, NULL, NULL);
		if (ast == CTX_OK && r.p != r.end)
			ast = CTX_CORRUPT;
		ctx_state *st = c && ast == CTX_OK ? state_new(c, 1, data, meta) : NULL;
		if (!st) {
			hamt_release(&data);
			hamt_release(&meta);
			if (c)
				context_release(c);
			return ast != CTX_OK ? ast : CTX_NOMEM;
		}
		st->changed = data.count;
		c->incarnation = rev;
		c->replay_edit = edit;
		st->revision = rev;
		st->updated_us = created;
		ctx_status ist = store_insert_recovered(s, c, st);
		context_release(c);
		return ist;
	}
	if (type == REC_DROP || type == REC_EXPIRE) {
		if (r.p != r.end)
			return CTX_CORRUPT;
		if (c && c->incarnation == incarnation)
			store_remove_recovered(s, c);
		return CTX_OK;
	}
	bool ours = c && c->incarnation == incarnation;
	if (type == REC_TTL) {
		uint64_t ttl = take_u64(&r), when = take_u64(&r);
		if (r.bad || r.p != r.end)
			return CTX_CORRUPT;
		if (ours) {
			c->ttl_us = ttl;
			if (ttl)
				atomic_store(&s->any_ttl, true);
			context_note_access(c, when);
		}
		return CTX_OK;
	}
	if (type == REC_POINT || type == REC_POINT_DEL)
		return ours ? apply_point(c, type, version, &r, why) : CTX_OK;
	if (type == REC_RESTORE_REF)
		return ours ? apply_restore_ref(c, rev, version, &r, why) : CTX_OK;
	if (type != REC_COMMIT && type != REC_RESTORE && type != REC_CLEAR) {
		*why = "unknown record type";
		return CTX_CORRUPT;
	}
	if (type == REC_CLEAR && fmt == FORMAT_V1) {
		*why = "clear record in a version 1 segment";
		return CTX_CORRUPT;
	}
	uint64_t updated = fmt == FORMAT_V1 ? take_u64(&r) : time_us;
	if (!c || c->incarnation != incarnation || version <= c->head->version)
		return r.bad ? CTX_CORRUPT : CTX_OK; /* dropped later, or checkpointed */
	if (version != c->head->version + 1) {
		*why = "version gap";
		return CTX_CORRUPT;
	}
	bool with_times = type == REC_RESTORE;
	bool clear = type == REC_CLEAR; /* from empty maps: never in place */
	if (!r.bad && !clear && head_merges(pl, c)) {
		if (made) /* parsed, and its keys hashed and distinct, by the reader thread */
			return apply_in_place_ops(c, made, rev, version, updated);
		op_list ops;
		bool fast = body_ops(r, fmt, with_times, updated, &ops) &&
		            keys_distinct(&ops, ops.n, op_key_at, ops.hash);
		op_span span = {ops.op, ops.hash, ops.n};
		ctx_status fst =
		    fast ? apply_in_place_ops(c, &span, rev, version, updated) : CTX_OK;
		op_list_free(&ops);
		if (fast)
			return fst;
	}
	key_ref stack[KEYS_STACK], *keys;
	size_t nkeys;
	bool parsed = body_keys(r, fmt, with_times, stack, &keys, &nkeys);
	bool distinct = parsed && keys_distinct(keys, nkeys, key_refs_at, NULL);
	if (parsed && !clear && head_merges(pl, c)) {
		if (!distinct)
			qsort(keys, nkeys, sizeof(*keys), key_ref_cmp);
		ctx_status ist = distinct
		                     ? apply_in_place(c, &r, fmt, rev, version, updated, with_times)
		                     : apply_in_place_repeated(c, &r, fmt, rev, version, updated,
		                                               with_times, keys, nkeys);
		if (keys != stack)
			free(keys);
		return ist;
	}
	if (keys != stack)
		free(keys);
	uint64_t edit = hamt_edit_token();
	hamt data = clear ? (hamt){0} : hamt_retain(&c->head->data);
	hamt meta = clear ? (hamt){0} : hamt_retain(&c->head->meta);
	uint64_t nops = 0;
	size_t changed = 0;
	ctx_status st =
	    apply_ops(&r, fmt, &data, &meta, edit, updated, with_times, &nops, &changed);
	ctx_state *next = NULL;
	if (st == CTX_OK && r.p != r.end)
		st = CTX_CORRUPT;
	if (st == CTX_OK && !(next = state_new(c, version, data, meta)))
		st = CTX_NOMEM;
	if (st != CTX_OK) {
		hamt_release(&data);
		hamt_release(&meta);
		return st;
	}
	next->revision = rev;
	next->updated_us = updated;
	/* As a live commit's (txn.c): the version this one cuts from history
	 * is freed here, where glibc's thread cache takes its few nodes back
	 * for the next records, not by the reclaimer's thread. */
	next->light = !clear && nops <= RECLAIM_LIGHT_OPS;
	context_note_access(c, updated);
	/* Counted while applying (as a live commit's, txn.c), unless a key
	 * comes twice: no diff of the maps on the common path. */
	next->changed = clear      ? clear_changed(&c->head->data, &next->data)
	                : distinct ? changed
	                           : hamt_diff_count(&c->head->data, &next->data);
	store_set_head_recovered(c, next);
	c->replay_edit = edit; /* the new head's own nodes: no other version holds them */
	return CTX_OK;
}

/* ---- reading segments ---------------------------------------------------------- */

/* Could a valid record (revision above prev, at most max) of log format fmt
 * start at h? A cheap look at the fixed fields first, then the checksums.
 * Its length, or 0. */
static size_t record_at(uint32_t fmt, const unsigned char *h, size_t avail, uint64_t prev,
                        uint64_t max, uint64_t *budget)
{
	rec_view v;
	if (fmt == FORMAT_V1 && (avail < REC_HEADER_SIZE || h[33] || h[34] || h[35]))
		return 0;
	/* Format 2 has one checksum, over the body too: the fields are
	 * checked first against what any record after prev has (a revision
	 * within reach, an incarnation and a version not above it), so that
	 * garbage rarely costs a checksum of the length it names. */
	if (rec_parse(fmt, h, avail, false, &v) || v.type == 0 || v.type > REC_TYPE_MAX ||
	    v.rev <= prev || v.rev > max || v.incarnation > v.rev || v.version > v.rev)
		return 0;
	if (v.len > *budget) {
		*budget = 0;
		return 0;
	}
	*budget -= v.len;
	return rec_parse(fmt, h, avail, true, &v) ? 0 : v.len;
}

/* The least bytes a record of log format fmt takes. */
static size_t record_min(uint32_t fmt)
{
	return fmt == FORMAT_V1 ? REC_HEADER_SIZE : 9;
}

/* Intact records that start after off (none overlapping another). */
static uint64_t records_after(uint32_t fmt, const unsigned char *base, size_t size, size_t off,
                              uint64_t prev)
{
	if (fmt != FORMAT_V1 && fmt != FORMAT_VERSION) { /* a damaged segment header */
		uint64_t a = records_after(FORMAT_V1, base, size, off, prev),
		         b = records_after(FORMAT_VERSION, base, size, off, prev);
		return a > b ? a : b;
	}
	uint64_t n = 0;
	/* (each record takes record_min bytes at least, the damaged one too) */
	uint64_t max = prev + 1 + (size - off) / record_min(fmt);
	/* The bytes checksummed are bounded by a few times the tail: a tail
	 * of values that look like headers would cost each offset a CRC of
	 * the rest (the count is then a lower bound). */
	uint64_t budget = 4 * (uint64_t)(size - off) + (1u << 20);
	for (size_t o = off + 1; o + record_min(fmt) <= size && budget;) {
		size_t len = record_at(fmt, base + o, size - o, prev, max, &budget);
		n += len > 0;
		o += len ? len : 1;
	}
	return n;
}

static bool all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

typedef struct replay {
	ctx_store *s;
	const char *dir;
	bool read_only;
	uint64_t checkpoint; /* R */
	uint64_t prev;       /* revision of the last record read */
	uint64_t durable;    /* the durable floor: revisions a checkpoint proves synced */
	char durable_why[96];
	recovery_info *info;
	replay_plan plan;
	char prev_path[4096]; /* the segment read before this one (for messages) */
	size_t prev_size;
	char last_path[4096]; /* the newest segment, and where its records end */
	size_t last_end;
	uint64_t torn_records;
	rev_list zero_firsts, zero_ends; /* segments with a zero tail: cut at the end */
	char notes[400];                 /* what recovery repaired or worked around, for verify */
} replay;

static void note(replay *rp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(replay *rp, const char *fmt, ...)
{
	size_t len = strlen(rp->notes);
	if (len && len + 2 < sizeof(rp->notes)) {
		memcpy(rp->notes + len, "; ", 3);
		len += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rp->notes + len, sizeof(rp->notes) - len, fmt, ap);
	va_end(ap);
}

/* One torn-<first>-<off>[.<n>].bin name of the directory. */
typedef struct torn_file {
	uint64_t first, off, size;
	unsigned n;   /* the name's .<n>, 0 without one */
	bool regular; /* a file (not a directory, a symlink): prune_torn's to delete */
	char name[64];
} torn_file;

#define TORN_N_MAX 999999999u /* the highest .<n> (torn_parse reads 9 digits) */

/* The torn-*.bin names of the directory, listed once a cut: aside_name
 * picks the new one's name from them, prune_torn what to delete. */
typedef struct torn_list {
	torn_file *v;
	size_t n, cap;
	bool complete; /* listed, every name in v */
	int err;       /* errno, if not */
} torn_list;

static bool hex16(const char *p, uint64_t *v)
{
	*v = 0;
	for (int i = 0; i < 16; i++) {
		char c = p[i];
		if (c >= '0' && c <= '9')
			*v = *v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v = *v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return false;
	}
	return true;
}

/* Parse a name exactly as aside_name writes it; any other name (a user's
 * file, a copy) is not ours, and is never deleted. */
static bool torn_parse(const char *name, torn_file *t)
{
	size_t len = strlen(name);
	if (len < 42 || len >= sizeof(t->name) || memcmp(name, "torn-", 5) != 0 ||
	    name[21] != '-' || !hex16(name + 5, &t->first) || !hex16(name + 22, &t->off) ||
	    strcmp(name + len - 4, ".bin") != 0)
		return false;
	t->n = 0;
	if (len > 42) { /* ".<n>": 1..999999999, no leading zero */
		const char *p = name + 38, *end = name + len - 4;
		if (*p++ != '.' || end - p < 1 || end - p > 9 || *p == '0')
			return false;
		for (; p < end; p++) {
			if (*p < '0' || *p > '9')
				return false;
			t->n = t->n * 10 + (unsigned)(*p - '0');
		}
	}
	memcpy(t->name, name, len + 1);
	return true;
}

/* List the torn-*.bin names of dir into *tl (a name whose lstat fails
 * counts as not regular). */
static void torn_list_read(const char *dir, torn_list *tl)
{
	*tl = (torn_list){0};
	DIR *d = opendir(dir);
	if (!d) {
		tl->err = errno;
		return;
	}
	tl->complete = true;
	struct dirent *e;
	char path[4096 + 64];
	struct stat sb;
	while ((e = readdir(d))) {
		torn_file t;
		if (!torn_parse(e->d_name, &t))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, t.name);
		t.regular = lstat(path, &sb) == 0 && S_ISREG(sb.st_mode);
		t.size = t.regular ? (uint64_t)sb.st_size : 0;
		if (tl->n == tl->cap) {
			size_t cap = tl->cap ? 2 * tl->cap : 16;
			torn_file *g = realloc(tl->v, cap * sizeof(*g));
			if (!g) {
				tl->complete = false;
				tl->err = ENOMEM;
				break;
			}
			tl->v = g;
			tl->cap = cap;
		}
		tl->v[tl->n++] = t;
	}
	closedir(d);
}

/* The name for a new torn-<first>-<off>[.<n>].bin in dir: n one past the
 * highest listed for that segment and offset. A segment re-created under
 * the same name can be cut at the same offset again: the bytes kept the
 * first time must not be overwritten, and a name prune_torn freed must not
 * be taken again (the names would no longer sort in age order). False if
 * no name is left (.<TORN_N_MAX> there, put by something else): the bytes
 * are then not kept, and the open goes on (round 24: it failed with
 * CTX_IO, keep_aside's O_EXCL refusing the name taken). */
static bool aside_name(const torn_list *tl, const char *dir, uint64_t first, size_t off, char *name,
                       size_t nsize, char *path, size_t psize)
{
	uint64_t n = 0;
	for (size_t i = 0; i < tl->n; i++)
		if (tl->v[i].first == first && tl->v[i].off == off && tl->v[i].n >= n)
			n = (uint64_t)tl->v[i].n + 1;
	struct stat sb;
	for (; n <= TORN_N_MAX; n++) { /* (a name taken past the listing) */
		if (n)
			snprintf(name, nsize, "torn-%016" PRIx64 "-%016zx.%u.bin", first, off,
			         (unsigned)n);
		else
			snprintf(name, nsize, "torn-%016" PRIx64 "-%016zx.bin", first, off);
		snprintf(path, psize, "%s/%s", dir, name);
		if (lstat(path, &sb) != 0)
			return true;
	}
	name[0] = 0;
	return false;
}

/* Write the bytes about to be cut to a file of their own, synced. */
static ctx_status keep_aside(replay *rp, const char *aside, const unsigned char *p, size_t n)
{
	int fd = vfs_open(aside, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0 || vfs_write_all(fd, p, n) != 0 || vfs_sync(fd) != 0 || vfs_close(fd) != 0 ||
	    vfs_sync_dir(rp->dir) != 0) {
		int e = errno;
		if (fd >= 0)
			vfs_close(fd);
		return ctx_fail(CTX_IO, "cannot keep the torn tail aside in %s: %s", aside,
		                strerror(e));
	}
	return CTX_OK;
}

/* Newest first: by the segment's first revision, the offset, then .<n>
 * (a name's order as a string would put ".1.bin" before ".bin"). */
static int torn_newest_first(const void *a, const void *b)
{
	const torn_file *x = a, *y = b;
	if (x->first != y->first)
		return x->first < y->first ? 1 : -1;
	if (x->off != y->off)
		return x->off < y->off ? 1 : -1;
	return x->n < y->n ? 1 : x->n > y->n ? -1 : 0;
}

/* Bound the torn tails kept aside: once `kept` (size bytes) is written, the
 * oldest torn-*.bin files are deleted until all of them, kept included, hold
 * at most checkpoint_bytes (or kept alone is left). Each cut of a store that
 * crashes again and again adds one, and a big value makes a big one: without
 * a bound the directory grows forever. The newest are kept: the ones an
 * operator looking into the latest cuts wants (docs/decisions.md, round 23).
 * Files are unlinked, then the directory synced; a failure is reported on
 * stderr and fails nothing (what is left goes at a later cut). Read-only
 * (verify), the note says what an open would delete. */
static void prune_torn(replay *rp, torn_list *tl, const char *kept, uint64_t size)
{
	uint64_t budget = rp->s->opts.checkpoint_bytes, total = size, gone_bytes = 0;
	if (!tl->complete) { /* deleting from a partial list could take a newer one */
		if (!rp->read_only)
			fprintf(stderr,
			        "ctx: recovery in %s: cannot list the torn-*.bin files: %s\n",
			        rp->dir, strerror(tl->err));
		return;
	}
	/* The files, newest first (the list was taken before kept was written;
	 * a directory or symlink named as ours is not ours to delete). */
	torn_file *v = tl->v;
	size_t n = 0, gone = 0;
	for (size_t i = 0; i < tl->n; i++)
		if (tl->v[i].regular && strcmp(tl->v[i].name, kept) != 0)
			v[n++] = tl->v[i];
	char path[4096 + 64];
	if (n)
		qsort(v, n, sizeof(*v), torn_newest_first);
	size_t i = 0;
	while (i < n && total + v[i].size <= budget && total + v[i].size >= total)
		total += v[i++].size;
	for (; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", rp->dir, v[i].name);
		if (!rp->read_only && vfs_unlink(path) != 0) {
			fprintf(stderr, "ctx: recovery in %s: cannot delete %s: %s\n", rp->dir,
			        v[i].name, strerror(errno));
			continue;
		}
		gone++;
		gone_bytes += v[i].size;
	}
	if (!gone)
		return;
	note(rp,
	     "%zu older torn-*.bin file(s) deleted (%" PRIu64
	     " bytes), past checkpoint_bytes (%" PRIu64 ")",
	     gone, gone_bytes, budget);
	if (rp->read_only)
		return;
	if (vfs_sync_dir(rp->dir) != 0)
		fprintf(stderr, "ctx: recovery in %s: cannot sync the directory: %s\n", rp->dir,
		        strerror(errno));
	fprintf(stderr,
	        "ctx: recovery in %s: deleted %zu older torn-*.bin file(s) (%" PRIu64
	        " bytes): the torn files kept hold at most checkpoint_bytes (%" PRIu64
	        "), or only the newest, %s: %" PRIu64 " bytes now\n",
	        rp->dir, gone, gone_bytes, budget, kept, total);
}

/* Cut the newest segment at off (remove it if off is 0): the unsynced tail.
 * The torn bytes, counted and kept aside, stop at the last non-zero one:
 * the zeros after them are the segment's preallocated tail. */
static ctx_status cut_tail_listed(replay *rp, torn_list *tl, const char *path, uint64_t first,
                                  uint32_t fmt, const unsigned char *base, size_t off, size_t size,
                                  const char *why)
{
	uint64_t intact = records_after(fmt, base, size, off, rp->prev);
	size_t torn = size - off;
	while (torn && !base[off + torn - 1])
		torn--;
	bool keep = torn > 0, no_name = false;
	char name[64] = "", aside[4096 + 64], what[4096 + 512];
	if (keep) {
		torn_list_read(rp->dir, tl);
		no_name =
		    !aside_name(tl, rp->dir, first, off, name, sizeof(name), aside, sizeof(aside));
		keep = !no_name;
	}
	const char *file = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	snprintf(what, sizeof(what),
	         "unsynced tail of %s cut at offset %zu (%s): %zu bytes, %" PRIu64
	         " intact records after the damage%s%s",
	         file, off, why, torn, intact,
	         keep      ? ", kept aside in "
	         : no_name ? ", not kept aside: no torn-*.bin name left for it"
	                   : "",
	         name);
	rp->info->torn_bytes += torn;
	rp->torn_records += intact;
	note(rp, "%s", what);
	if (rp->read_only) {
		if (keep)
			prune_torn(rp, tl, name, torn);
		return CTX_OK;
	}
	ctx_status st = keep ? keep_aside(rp, aside, base + off, torn) : CTX_OK;
	if (st != CTX_OK)
		return st;
	if (off == 0) {
		if (vfs_unlink(path) != 0)
			return ctx_fail(CTX_IO, "cannot remove %s: %s", path, strerror(errno));
	} else {
		int fd = vfs_open(path, O_WRONLY, 0);
		if (fd < 0 || vfs_truncate(fd, (off_t)off) != 0 || vfs_sync(fd) != 0) {
			int e = errno;
			if (fd >= 0)
				vfs_close(fd);
			errno = e;
			return ctx_fail(CTX_IO, "cannot cut the torn tail of %s: %s", path,
			                strerror(e));
		}
		vfs_close(fd);
	}
	fprintf(stderr, "ctx: recovery in %s: %s\n", rp->dir, what);
	if (keep)
		prune_torn(rp, tl, name, torn);
	return CTX_OK;
}

/* cut_tail_listed, the directory's torn-*.bin names listed once for it. */
static ctx_status cut_tail(replay *rp, const char *path, uint64_t first, uint32_t fmt,
                           const unsigned char *base, size_t off, size_t size, const char *why)
{
	torn_list tl = {0};
	ctx_status st = cut_tail_listed(rp, &tl, path, first, fmt, base, off, size, why);
	free(tl.v);
	return st;
}

/* Damage found at off of segment path: a tail to cut, or corruption. */
static ctx_status damage_at(replay *rp, const char *path, uint64_t first, uint32_t fmt, bool last,
                            const unsigned char *base, size_t off, size_t size, const char *why)
{
	if (!last)
		return ctx_fail(CTX_CORRUPT,
		                "log %s: %s at offset %zu (not the newest segment: "
		                "its records were synced before the next segment began)",
		                path, why, off);
	if (off == 0 && records_after(fmt, base, size, 0, rp->prev))
		return ctx_fail(CTX_CORRUPT,
		                "log %s: %s at offset 0, with records after it (the "
		                "header is synced before any record is written)",
		                path, why);
	if (rp->prev + 1 <= rp->durable)
		return ctx_fail(CTX_CORRUPT,
		                "log %s: %s at offset %zu, in revision %" PRIu64
		                ", which was synced: %s proves revisions up to %" PRIu64 " were",
		                path, why, off, rp->prev + 1, rp->durable_why, rp->durable);
	return cut_tail(rp, path, first, fmt, base, off, size, why);
}

/* Once recovery succeeded: cut the zero tails off (unsynced: if a cut is
 * lost, the zeros read as the end again). A failure changes nothing. */
static void cut_zeros(replay *rp)
{
	for (size_t i = 0; i < rp->zero_firsts.n; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/wal-%016" PRIx64 ".log", rp->dir,
		         rp->zero_firsts.v[i]);
		int fd = vfs_open(path, O_WRONLY, 0);
		if (fd >= 0) {
			(void)vfs_truncate(fd, (off_t)rp->zero_ends.v[i]);
			vfs_close(fd);
		}
	}
}

/* ---- a reader thread ahead of the replay -------------------------------------- */

/* Replaying a record is two kinds of work: reading it (parse the header,
 * checksum the body unless the plan's pass did, parse its ops, hash each
 * key, check the keys are distinct) and applying it (walk the trie, make
 * and insert the leaves, grow nodes). Only applying touches the store. In
 * a segment of at least READER_MIN bytes of records, a second thread reads
 * ahead: it fills batches of up to READER_BYTES bytes of log (READER_RECS
 * records, READER_OPS ops), at most READER_BATCHES of them in flight (about
 * 600 KB of batches), and the replaying thread takes them in order and
 * applies each record as before. Every decision stays with the replaying
 * thread: the reader reads exactly as the sequential loop would (read_next
 * is that loop's step, and the reader stops at the first item that is not
 * a record: the damage, the zero tail or the end, handed over as the last
 * item), so the order, the cut, the errors and their offsets are those of a
 * replay on one thread. The ops parsed ahead (only for commits and restores
 * above the checkpoint whose body parses whole and whose data keys are
 * distinct, as apply_record's in-place path needs) are used if the record
 * takes that path; else apply_record parses the body itself, as before.
 * When replay stops early (corruption, no memory), the reader is stopped
 * and joined. If the thread or its batches cannot be had, the segment is
 * read on one thread.
 * Not done, measured (docs/benchmarks.md, round 19): the reader making the
 * leaves too. The replaying thread then did a quarter less, but the leaves
 * it frees overflow its pool cache into the shared lists, from which the
 * reader takes its blocks with a cache miss each, one after the other
 * (pool.c's slab_take): a third more CPU in all, and a slower open on a
 * busy machine. */
#define READER_MIN     (1u << 20)
#define READER_BYTES   (64u << 10)
#define READER_RECS    256
#define READER_OPS     1024
#define READER_BATCHES 8

/* What the next step of a segment read gives. */
typedef enum item_kind { ITEM_RECORD, ITEM_ZEROS, ITEM_DAMAGE, ITEM_END } item_kind;

typedef struct seg_item {
	item_kind kind;
	size_t off;       /* where the record (or the zero tail, the damage) starts */
	const char *why;  /* ITEM_DAMAGE: what is wrong */
	rec_view v;       /* ITEM_RECORD */
	uint64_t time_us; /* format 2: the time chain after this record */
	size_t op0, nops; /* the ops parsed ahead: the batch's op0.. */
	bool made;        /* parsed whole, data keys distinct: op0.. hold them */
} seg_item;

/* Where a segment read is (one thread's: the sequential loop's or the
 * reader's). */
typedef struct seg_read {
	uint32_t fmt;
	const unsigned char *base, *loaded;
	size_t size, off, verified;
	uint64_t last_time;
} seg_read;

/* The sequential loop's step: the next item at sr->off (the read moves past
 * a record only). */
static void read_next(seg_read *sr, seg_item *it)
{
	const unsigned char *h = sr->base + sr->off;
	it->off = sr->off;
	it->made = false;
	it->op0 = it->nops = 0;
	if (sr->off >= sr->size) {
		it->kind = ITEM_END;
		return;
	}
	log_ahead(&sr->loaded, h, sr->base + sr->size);
	if (all_zero(h, sr->size - sr->off)) {
		it->kind = ITEM_ZEROS; /* the zero tail: the clean end */
		return;
	}
	/* (Checksums checked once: the plan's pass covered up to verified, a
	 * record boundary.) */
	if ((it->why =
	         rec_parse(sr->fmt, h, sr->size - sr->off, sr->off >= sr->verified, &it->v))) {
		it->kind = ITEM_DAMAGE;
		return;
	}
	if (sr->fmt != FORMAT_V1 && rec_has_time(it->v.type))
		sr->last_time += (uint64_t)it->v.time_delta;
	it->kind = ITEM_RECORD;
	it->time_us = sr->last_time;
	sr->off += it->v.len;
}

typedef struct reader_batch {
	seg_item item[READER_RECS];
	size_t nitems;
	op_ref op[READER_OPS];
	uint64_t hash[READER_OPS];
	size_t nops;
} reader_batch;

typedef struct log_reader {
	seg_read sr;
	uint64_t checkpoint;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t filled, emptied;
	reader_batch *batch[READER_BATCHES];
	size_t head, tail; /* batches [head, tail) are filled; the replay takes head's */
	bool stop;         /* the replay stopped early: the reader leaves */
	size_t next;       /* the replay's next item of batch head */
	size_t tail_seen;  /* the replay's: tail when it last took the lock */
} log_reader;

/* Parse the ops of item it (a record) into b, if it is a commit or
 * restore whose body parses as apply_record's in-place path reads it, with
 * distinct data keys. False: the ops do not fit in what b has left (b holds
 * other items: the record goes to the next batch). */
static bool make_ops(reader_batch *b, uint32_t fmt, seg_item *it)
{
	const rec_view *v = &it->v;
	if (v->type != REC_COMMIT && v->type != REC_RESTORE)
		return true;
	reader r = {v->body, v->body + v->blen, false};
	const unsigned char *lenp = take(&r, 2);
	size_t idlen = lenp ? get_u16(lenp) : 0;
	take(&r, idlen);
	uint64_t updated = fmt == FORMAT_V1 ? take_u64(&r) : it->time_us;
	bool with_times = v->type == REC_RESTORE;
	reader count = r;
	uint64_t nops = take_count(&count, fmt);
	if (r.bad || idlen == 0 || count.bad || nops > (size_t)(count.end - count.p))
		return true;
	if (nops > READER_OPS - b->nops)
		return nops > READER_OPS || b->nitems == 1; /* too many for any batch */
	op_list ops = {.op = b->op + b->nops, .hash = b->hash + b->nops};
	r = count;
	for (uint64_t i = 0; i < nops; i++) {
		__builtin_prefetch(r.p + LOG_AHEAD);
		__builtin_prefetch(r.p + LOG_AHEAD + 64);
		op_ref *op = &ops.op[ops.n];
		if (!take_op(&r, fmt, with_times, updated, op))
			return true;
		ops.hash[ops.n++] = hamt_hash(op->key, op->klen);
	}
	if (r.p != r.end || !keys_distinct(&ops, ops.n, op_key_at, ops.hash))
		return true;
	it->op0 = b->nops;
	it->nops = ops.n;
	it->made = true;
	b->nops += ops.n;
	return true;
}

static void *reader_main(void *arg)
{
	log_reader *lr = arg;
	seg_read *sr = &lr->sr;
	for (bool done = false; !done;) {
		pthread_mutex_lock(&lr->lock);
		while (!lr->stop && lr->tail - lr->head == READER_BATCHES)
			pthread_cond_wait(&lr->emptied, &lr->lock);
		bool stop = lr->stop;
		reader_batch *b = lr->batch[lr->tail % READER_BATCHES];
		pthread_mutex_unlock(&lr->lock);
		if (stop)
			break;
		b->nitems = b->nops = 0;
		size_t start = sr->off;
		while (!done && b->nitems < READER_RECS && sr->off - start < READER_BYTES) {
			seg_read before = *sr;
			seg_item *it = &b->item[b->nitems++];
			read_next(sr, it);
			done = it->kind != ITEM_RECORD;
			if (!done && it->v.rev > lr->checkpoint && !make_ops(b, sr->fmt, it)) {
				*sr = before; /* read again as the next batch's first */
				b->nitems--;
				break;
			}
		}
		pthread_mutex_lock(&lr->lock);
		lr->tail++;
		pthread_cond_signal(&lr->filled);
		pthread_mutex_unlock(&lr->lock);
	}
	return NULL;
}

/* Stop the reader (if it still runs), join it, free the batches. */
static void reader_stop(log_reader *lr)
{
	pthread_mutex_lock(&lr->lock);
	lr->stop = true;
	pthread_cond_signal(&lr->emptied);
	pthread_mutex_unlock(&lr->lock);
	pthread_join(lr->thread, NULL);
	for (size_t i = 0; i < READER_BATCHES; i++)
		free(lr->batch[i]);
	pthread_cond_destroy(&lr->filled);
	pthread_cond_destroy(&lr->emptied);
	pthread_mutex_destroy(&lr->lock);
	free(lr);
}

/* A reader thread for the segment read sr, or NULL (then read on one thread). */
static log_reader *reader_start(const seg_read *sr, uint64_t checkpoint)
{
	log_reader *lr = calloc(1, sizeof(*lr));
	if (!lr)
		return NULL;
	lr->sr = *sr;
	lr->checkpoint = checkpoint;
	bool ok = true;
	for (size_t i = 0; i < READER_BATCHES && ok; i++)
		if ((ok = (lr->batch[i] = malloc(sizeof(reader_batch))) != NULL))
			lr->batch[i]->nitems = lr->batch[i]->nops = 0;
	if (ok && pthread_mutex_init(&lr->lock, NULL) == 0) {
		if (pthread_cond_init(&lr->filled, NULL) == 0) {
			if (pthread_cond_init(&lr->emptied, NULL) == 0) {
				if (pthread_create(&lr->thread, NULL, reader_main, lr) == 0)
					return lr;
				pthread_cond_destroy(&lr->emptied);
			}
			pthread_cond_destroy(&lr->filled);
		}
		pthread_mutex_destroy(&lr->lock);
	}
	for (size_t i = 0; i < READER_BATCHES; i++)
		free(lr->batch[i]);
	free(lr);
	return NULL;
}

/* The replay's next item from the reader; *made gets its ops parsed ahead
 * (n 0: none). Valid until the next call. The lock is taken once a batch
 * (a lock and an unlock per record were ~5% of replaying one-put commits):
 * a batch the replay saw filled under the lock (head < tail_seen) is the
 * replay's until it moves head past it, and only the replay moves head. */
static const seg_item *reader_next(log_reader *lr, op_span *made)
{
	reader_batch *b = lr->head < lr->tail_seen ? lr->batch[lr->head % READER_BATCHES] : NULL;
	if (!b || lr->next == b->nitems) {
		pthread_mutex_lock(&lr->lock);
		if (b) {
			lr->head++;
			lr->next = 0;
			pthread_cond_signal(&lr->emptied);
		}
		while (lr->head == lr->tail)
			pthread_cond_wait(&lr->filled, &lr->lock);
		lr->tail_seen = lr->tail;
		pthread_mutex_unlock(&lr->lock);
		b = lr->batch[lr->head % READER_BATCHES];
	}
	const seg_item *it = &b->item[lr->next++];
	*made = (op_span){b->op + it->op0, b->hash + it->op0, it->made ? it->nops : 0};
	return it;
}

/* Check and apply record it (read at it->off of segment path). */
static ctx_status replay_record(replay *rp, const char *path, uint32_t fmt, const seg_item *it,
                                const op_span *made)
{
	uint64_t rev = it->v.rev;
	if (rev != rp->prev + 1)
		return ctx_fail(CTX_CORRUPT,
		                "log %s: record at offset %zu has revision %" PRIu64
		                ", expected %" PRIu64,
		                path, it->off, rev, rp->prev + 1);
	if (rev > rp->checkpoint) {
		const char *bad;
		ctx_status st = apply_record(rp->s, &rp->plan, fmt, &it->v, it->time_us,
		                             made && made->n ? made : NULL, &bad);
		if (st == CTX_CORRUPT)
			return ctx_fail(st, "log %s: %s in record at offset %zu", path, bad,
			                it->off);
		if (st != CTX_OK)
			return ctx_fail(st, "no memory replaying %s", path);
	}
	rp->prev = rev;
	rp->info->records++;
	rp->info->replayed_bytes += it->v.len;
	return CTX_OK;
}

static ctx_status replay_segment(replay *rp, uint64_t first, bool last)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/wal-%016" PRIx64 ".log", rp->dir, first);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return ctx_fail(CTX_IO, "cannot read %s: %s", path, strerror(e));
	}
	size_t size = (size_t)sb.st_size;
	const unsigned char *base = NULL;
	if (size) {
		base = log_map(fd, size);
		if (base == MAP_FAILED) {
			close(fd);
			return ctx_fail(CTX_IO, "cannot map %s: %s", path, strerror(errno));
		}
	}
	close(fd);
	rp->info->segments++;

	ctx_status st = CTX_OK;
	size_t off = 0, end = size;
	const char *why = NULL;
	uint32_t fmt = 0; /* the segment's log format version (0: header damaged) */
	if (!file_header_intact(base, size, WAL_MAGIC)) {
		why = "bad segment header";
	} else if (((fmt = get_u32(base + 8)) != FORMAT_VERSION && fmt != FORMAT_V1) ||
	           get_u64(base + 16) != first) {
		st = ctx_fail(CTX_CORRUPT, "log %s: unknown version or wrong first revision", path);
		goto out;
	} else {
		off = WAL_HEADER_SIZE;
		if (rp->prev + 1 != first && first > rp->checkpoint + 1) {
			/* Name the segment before too: a segment cut at a record
			 * boundary reads cleanly and only the gap shows it. */
			if (rp->prev_path[0])
				st =
				    ctx_fail(CTX_CORRUPT,
				             "log %s: starts at revision %" PRIu64 " but %" PRIu64
				             " came before: records are missing (%s ends early, at "
				             "offset %zu)",
				             path, first, rp->prev, rp->prev_path, rp->prev_size);
			else
				st = ctx_fail(CTX_CORRUPT,
				              "log %s: starts at revision %" PRIu64 " but %" PRIu64
				              " came before: records are missing",
				              path, first, rp->prev);
			goto out;
		}
		rp->prev = first - 1;
	}
	seg_read sr = {fmt, base, base, size, off, plan_verified(&rp->plan, first), 0};
	size_t records = sr.verified > off ? sr.verified - off : size - off;
	log_reader *lr = !why && records >= READER_MIN ? reader_start(&sr, rp->checkpoint) : NULL;
	while (!why) {
		seg_item own;
		op_span made = {0};
		const seg_item *it = lr ? reader_next(lr, &made) : &own;
		if (!lr)
			read_next(&sr, &own);
		off = it->off;
		if (it->kind == ITEM_END)
			break;
		if (it->kind == ITEM_ZEROS) {
			end = off;
			break;
		}
		if (it->kind == ITEM_DAMAGE) {
			why = it->why;
			break;
		}
		if ((st = replay_record(rp, path, fmt, it, &made)) != CTX_OK) {
			if (lr)
				reader_stop(lr);
			goto out;
		}
		off += it->v.len;
	}
	if (lr)
		reader_stop(lr);
	if (last) {
		snprintf(rp->last_path, sizeof(rp->last_path), "%s", path);
		rp->last_end = why ? off : end;
	}
	if (why)
		st = damage_at(rp, path, first, fmt, last, base, off, size, why);
	else if (end < size && !rp->read_only &&
	         !(rev_push(&rp->zero_firsts, first) && rev_push(&rp->zero_ends, end)))
		st = ctx_fail(CTX_NOMEM, "no memory replaying %s", path);
out:
	if (base)
		munmap((void *)base, size);
	snprintf(rp->prev_path, sizeof(rp->prev_path), "%s", path);
	rp->prev_size = end;
	return st;
}

/* The newest revision a loaded checkpoint holds (its sections may hold
 * versions above R: they were durable in the log before it was renamed). */
static uint64_t newest_loaded(ctx_store *s)
{
	uint64_t newest = 0;
	table_iter iter;
	ctx_rcu_read_lock();
	for (ctx_context *c = table_first(s, &iter); c; c = table_next(&iter)) {
		if (c->head && c->head->revision > newest)
			newest = c->head->revision;
	}
	ctx_rcu_read_unlock();
	return newest;
}

/* Load the newest checkpoint that loads cleanly, falling back to older ones;
 * if none does but the log starts at revision 1, start from nothing. */
static ctx_status load_checkpoint(replay *rp, const rev_list *ckpts, const rev_list *segs)
{
	char first_error[512] = "";
	uint64_t R = 0;
	for (size_t i = ckpts->n; i-- > 0;) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/ckpt-%016" PRIx64 ".ckpt", rp->dir, ckpts->v[i]);
		ctx_status st = checkpoint_load(rp->s, path, &R);
		if (st == CTX_OK && R == ckpts->v[i]) {
			rp->checkpoint = R;
			if (first_error[0])
				note(rp,
				     "%s; recovered from the older ckpt-%016" PRIx64
				     ".ckpt and the log",
				     first_error, R);
			uint64_t newest = newest_loaded(rp->s);
			if (newest > rp->durable) {
				rp->durable = newest;
				snprintf(rp->durable_why, sizeof(rp->durable_why),
				         "checkpoint ckpt-%016" PRIx64 ".ckpt (its newest version)",
				         R);
			}
			return CTX_OK;
		}
		if (st == CTX_OK)
			st =
			    ctx_fail(CTX_CORRUPT,
			             "checkpoint %s: names revision %" PRIx64 " but holds %" PRIx64,
			             path, ckpts->v[i], R);
		if (st == CTX_NOMEM || st == CTX_IO)
			return st;
		rp->info->checkpoints_damaged++;
		if (!first_error[0])
			snprintf(first_error, sizeof(first_error), "%s", ctx_last_error());
		if (!rp->read_only)
			fprintf(stderr, "ctx: %s; trying an older checkpoint\n", ctx_last_error());
		store_clear(rp->s);
		R = 0;
	}
	if (!ckpts->n)
		return CTX_OK;
	if (!segs->n || segs->v[0] != 1)
		return ctx_fail(CTX_CORRUPT,
		                "%s (and no older valid checkpoint, nor the log from "
		                "revision 1)",
		                first_error);
	/* Every checkpoint is damaged, but no segment was ever deleted: the log
	 * alone holds the whole history. */
	note(rp, "every checkpoint is damaged (%s); the state is rebuilt from the complete log",
	     first_error);
	if (!rp->read_only)
		fprintf(stderr,
		        "ctx: recovery: every checkpoint is damaged (first: %s); rebuilding "
		        "the state from the complete log, which starts at revision 1\n",
		        first_error);
	return CTX_OK;
}

static ctx_status recover(ctx_store *s, const char *dir, bool read_only, recovery_info *info,
                          replay *rp)
{
	rev_list ckpts = {0}, segs = {0};
	memset(info, 0, sizeof(*info));
	*rp = (replay){.s = s, .dir = dir, .read_only = read_only, .info = info};
	s->replaying = true;
	/* The checkpoint's load and the replay build the whole store on this
	 * thread: its slab chunks on huge pages (pool.h: a fault per 2 MiB,
	 * not a costly first touch per 4 KiB page in this VM). */
	pool_huge_chunks(true);
	ctx_status st = list_dir(dir, read_only, &ckpts, &segs);
	if (st != CTX_OK)
		goto out;
	info->checkpoints = ckpts.n;
	if (ckpts.n) {
		/* A checkpoint's name is a revision the log had synced. */
		rp->durable = ckpts.v[ckpts.n - 1];
		snprintf(rp->durable_why, sizeof(rp->durable_why),
		         "checkpoint ckpt-%016" PRIx64 ".ckpt", rp->durable);
	}
	if ((st = load_checkpoint(rp, &ckpts, &segs)) != CTX_OK)
		goto out;
	uint64_t R = rp->checkpoint;
	info->checkpoint_revision = R;

	/* Replay from the last segment that starts at or before R + 1. */
	size_t start = 0;
	while (start + 1 < segs.n && segs.v[start + 1] <= R + 1)
		start++;
	rp->prev = R;
	if (segs.n && segs.v[start] > R + 1) {
		st = ctx_fail(CTX_CORRUPT,
		              "log starts at revision %" PRIu64
		              " but the checkpoint ends at %" PRIu64 ": records are missing",
		              segs.v[start], R);
		goto out;
	}
	if (segs.n) {
		rp->prev = segs.v[start] - 1;
		plan_build(&rp->plan, dir, &segs, start, R);
	}
	for (size_t i = start; i < segs.n && st == CTX_OK; i++)
		st = replay_segment(rp, segs.v[i], i + 1 == segs.n);
	if (st == CTX_OK && rp->prev < R)
		rp->prev = R;
	if (st == CTX_OK && rp->prev < rp->durable)
		st =
		    ctx_fail(CTX_CORRUPT,
		             "log %s: ends at offset %zu with revision %" PRIu64
		             ", but %s proves revisions up to %" PRIu64 " were synced: records are "
		             "missing",
		             rp->last_path[0] ? rp->last_path : dir, rp->last_end, rp->prev,
		             rp->durable_why, rp->durable);
	info->last_revision = rp->prev;
	if (st == CTX_OK)
		cut_zeros(rp);
out:
	free(rp->zero_firsts.v);
	free(rp->zero_ends.v);
	rp->zero_firsts = rp->zero_ends = (rev_list){0};
	s->replaying = false;
	pool_huge_chunks(false);
	plan_free(&rp->plan);
	free(ckpts.v);
	free(segs.v);
	return st;
}

ctx_status recovery_run(ctx_store *s, const char *dir, bool read_only, recovery_info *info)
{
	replay *rp = malloc(sizeof(*rp));
	if (!rp) {
		memset(info, 0, sizeof(*info));
		return ctx_fail(CTX_NOMEM, "no memory for recovery");
	}
	ctx_status st = recover(s, dir, read_only, info, rp);
	free(rp);
	return st;
}

/* ---- offline verification ------------------------------------------------------ */

ctx_status ctx_verify(const char *dir, ctx_verify_report *report)
{
	ctx_verify_report local;
	ctx_verify_report *r = report ? report : &local;
	memset(r, 0, sizeof(*r));
	if (!dir) {
		snprintf(r->message, sizeof(r->message), "NULL directory");
		return ctx_fail(CTX_INVALID, "NULL directory");
	}
	/* A store with default limits, memory only, to recover into. */
	ctx_store *s;
	ctx_status st = ctx_open(NULL, &s);
	if (st != CTX_OK) {
		snprintf(r->message, sizeof(r->message), "%s", ctx_last_error());
		return st;
	}
	replay *rp = NULL;
	s->opts.max_contexts = SIZE_MAX;
	/* Keep every version and point: a restore record names its target, and
	 * the store that wrote the log may have kept more than the defaults. */
	s->opts.history_depth = SIZE_MAX;
	s->opts.max_points = SIZE_MAX;
	char lock_path[4096];
	snprintf(lock_path, sizeof(lock_path), "%s/LOCK", dir);
	int fd = open(lock_path, O_RDONLY | O_CLOEXEC);
	int locked = 0; /* flock's errno: EWOULDBLOCK, kept for the caller */
	if (fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) != 0) {
		locked = errno;
		st = ctx_fail(CTX_IO, "%s is in use by an open store", dir);
	} else {
		struct stat sb;
		if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
			st = ctx_fail(CTX_IO, "%s is not a readable directory", dir);
		else if (!(rp = malloc(sizeof(*rp))))
			st = ctx_fail(CTX_NOMEM, "no memory for recovery");
		else {
			recovery_info info;
			st = recover(s, dir, true, &info, rp);
			r->checkpoint_revision = info.checkpoint_revision;
			r->torn_records = rp->torn_records;
			r->checkpoints = info.checkpoints;
			r->checkpoints_damaged = info.checkpoints_damaged;
			r->segments = info.segments;
			r->records = info.records;
			r->last_revision = info.last_revision;
			r->torn_bytes = info.torn_bytes;
		}
	}
	if (fd >= 0)
		close(fd);
	if (st == CTX_OK) {
		table_iter iter;
		ctx_rcu_read_lock();
		for (ctx_context *c = table_first(s, &iter); c; c = table_next(&iter)) {
			r->contexts++;
			r->keys += c->head->data.count;
		}
		ctx_rcu_read_unlock();
		if (rp->notes[0])
			snprintf(r->message, sizeof(r->message), "ok; opening repairs: %s",
			         rp->notes);
		else
			snprintf(r->message, sizeof(r->message), "ok");
	} else {
		snprintf(r->message, sizeof(r->message), "%s", ctx_last_error());
	}
	free(rp);
	ctx_close(s);
	if (st != CTX_OK)
		ctx_fail(st, "%s", r->message);
	if (locked)
		errno = locked;
	return st;
}
