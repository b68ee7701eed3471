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
 *   5. sync the file, rename it to "ckpt-R.ckpt", sync the directory;
 *   6. delete what the previous checkpoint covers: older checkpoints and log
 *      segments whose records are all <= its revision. Two generations stay,
 *      so a damaged newest checkpoint can fall back to the one before.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"
#include "reader.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "vfs.h"

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ---- buffered, checksummed output ------------------------------------------- */

typedef struct out_file {
	int fd;
	int err; /* first errno */
	size_t len;
	uint32_t crc;     /* running crc of the current section payload */
	uint64_t counted; /* bytes of the current section payload */
	unsigned char buf[1 << 20];
} out_file;

static void out_flush(out_file *o)
{
	if (!o->err && o->len && vfs_write_all(o->fd, o->buf, o->len) != 0)
		o->err = errno ? errno : EIO;
	o->len = 0;
}

static void out_bytes(out_file *o, const void *p, size_t n)
{
	const unsigned char *b = p;
	o->crc = crc32c(o->crc, p, n);
	o->counted += n;
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

static void out_u64(out_file *o, uint64_t v)
{
	unsigned char b[8];
	put_u64(b, v);
	out_bytes(o, b, 8);
}

/* One pair (or one op of a delta: kind first). */
static void out_leaf(out_file *o, int kind, const hamt_leaf *l, bool with_value)
{
	unsigned char h[17];
	size_t n = 0;
	if (kind >= 0)
		h[n++] = (unsigned char)kind;
	uint32_t vlen = with_value ? l->vlen : 0;
	put_u32(h + n, l->klen);
	put_u32(h + n + 4, vlen);
	put_u64(h + n + 8, l->time_us);
	out_bytes(o, h, n + 16);
	out_bytes(o, l->data, (size_t)l->klen + vlen);
}

static void out_full(out_file *o, const hamt *m)
{
	hamt_cursor cur;
	hamt_cursor_init(&cur, m);
	const hamt_leaf *l;
	while ((l = hamt_cursor_next(&cur)))
		out_leaf(o, -1, l, true);
}

/* A delta: count its ops first (a diff pass), then write them (another). */
static ctx_status count_op(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	(*(uint64_t *)arg)++;
	return CTX_OK;
}

static ctx_status write_op(void *arg, const hamt_leaf *old, const hamt_leaf *new_)
{
	out_leaf(arg, new_ ? 0 : 1, new_ ? new_ : old, new_ != NULL);
	return CTX_OK;
}

static void out_delta(out_file *o, const hamt *from, const hamt *to)
{
	uint64_t n = 0;
	hamt_diff(from, to, count_op, &n);
	out_u64(o, n);
	hamt_diff(from, to, write_op, o);
}

/* One kept version: in full, or as the changes from the one before it. */
static void out_version(out_file *o, const ctx_state *prev, const ctx_state *st)
{
	out_u64(o, st->version);
	out_u64(o, st->revision);
	out_u64(o, st->updated_us);
	out_u64(o, st->changed);
	unsigned char kind = prev ? 1 : 0;
	out_bytes(o, &kind, 1);
	if (!prev) {
		out_u64(o, st->data.count);
		out_full(o, &st->data);
		out_u64(o, st->meta.count);
		out_full(o, &st->meta);
	} else {
		out_delta(o, &prev->data, &st->data);
		out_delta(o, &prev->meta, &st->meta);
	}
}

/* ---- taking the snapshot ---------------------------------------------------- */

/* What a checkpoint writes of one context, taken under its write lock. */
typedef struct ctx_snap {
	ctx_context *c;
	size_t nstates;
	ctx_state **states; /* kept versions, ascending, head last */
	size_t npoints;
	point_entry *points; /* copies; their st is one of states */
	uint64_t ttl_us;
	uint64_t last_access_us;
} ctx_snap;

typedef struct snapshot {
	size_t count;
	ctx_snap *ctxs;
} snapshot;

static void snap_free(ctx_snap *cs)
{
	for (size_t i = 0; i < cs->nstates; i++)
		ctx_state_release(cs->states[i]);
	free(cs->states);
	free(cs->points);
}

static void snapshot_free(snapshot *sn)
{
	for (size_t i = 0; i < sn->count; i++)
		snap_free(&sn->ctxs[i]);
	free(sn->ctxs);
}

static int compare_states(const void *a, const void *b)
{
	uint64_t x = (*(ctx_state *const *)a)->version, y = (*(ctx_state *const *)b)->version;
	return (x > y) - (x < y);
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
	cs->states = malloc((c->kept + np) * sizeof(*cs->states));
	cs->points = np ? malloc(np * sizeof(*cs->points)) : NULL;
	if (!cs->states || (np && !cs->points)) {
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
	qsort(cs->states, cs->nstates, sizeof(*cs->states), compare_states);
	return true;
}

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
		if (ok) {
			pthread_mutex_lock(&c->write_lock);
			bool wanted = !atomic_load(&c->dropped) || c->drop_revision > rev;
			if (wanted && c->head) {
				ok = snap_take(c, &sn->ctxs[sn->count]);
				sn->count += ok;
			}
			pthread_mutex_unlock(&c->write_lock);
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

/* A context's section: header, payload (id, versions, points), trailer. */
static void out_section(out_file *o, const ctx_snap *cs)
{
	const ctx_context *c = cs->c;
	unsigned char h[CKPT_SECTION_SIZE];
	put_u32(h + 4, (uint32_t)c->idlen);
	put_u64(h + 8, c->incarnation);
	put_u64(h + 16, c->created_us);
	put_u64(h + 24, cs->ttl_us);
	put_u64(h + 32, cs->last_access_us);
	put_u32(h + 40, (uint32_t)cs->nstates);
	put_u32(h + 44, (uint32_t)cs->npoints);
	put_u32(h, crc32c(0, h + 4, CKPT_SECTION_SIZE - 4));
	out_bytes(o, h, sizeof(h));
	o->crc = 0;
	o->counted = 0;
	out_bytes(o, c->id, c->idlen);
	for (size_t i = 0; i < cs->nstates; i++)
		out_version(o, i ? cs->states[i - 1] : NULL, cs->states[i]);
	for (size_t i = 0; i < cs->npoints; i++) {
		const point_entry *e = &cs->points[i];
		unsigned char len = (unsigned char)strlen(e->label);
		out_u64(o, e->st->version);
		out_u64(o, e->time_us);
		out_u64(o, e->checksum);
		out_bytes(o, &len, 1);
		out_bytes(o, e->label, len);
	}
	unsigned char t[CKPT_SECTION_TRAILER];
	put_u64(t, o->counted);
	put_u32(t + 8, o->crc);
	out_bytes(o, t, sizeof(t));
}

/* ---- writing ---------------------------------------------------------------- */

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
				uint64_t *g = realloc(firsts, (cap = cap ? 2 * cap : 16) * sizeof(*g));
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
	o->fd = vfs_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (o->fd < 0)
		o->err = errno;

	unsigned char h[CKPT_HEADER_SIZE];
	file_header_put(h, CKPT_MAGIC, rev);
	uint64_t newest = 0;
	if (!o->err) {
		out_bytes(o, h, sizeof(h));
		for (size_t i = 0; i < sn.count && !o->err; i++) {
			out_section(o, &sn.ctxs[i]);
			const ctx_snap *cs = &sn.ctxs[i];
			if (cs->states[cs->nstates - 1]->revision > newest)
				newest = cs->states[cs->nstates - 1]->revision;
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
	if (o->fd >= 0)
		vfs_close(o->fd);
	if (!o->err && vfs_rename(tmp, final) != 0)
		o->err = errno;
	if (!o->err && vfs_sync_dir(s->dir) != 0)
		o->err = errno;
	int err = o->err;
	free(o);
	if (err) {
		unlink(tmp);
		errno = err;
		return ctx_fail(CTX_IO, "checkpoint %s failed: %s", final, strerror(err));
	}
	s->prev_checkpoint = atomic_load(&s->last_checkpoint);
	atomic_store(&s->last_checkpoint, rev);
	atomic_fetch_add(&s->checkpoints, 1);
	remove_covered(s->dir, s->prev_checkpoint);
	return CTX_OK;
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

static void *checkpointer_main(void *arg)
{
	ctx_store *s = arg;
	while (!atomic_load(&s->closing)) {
		if (!log_wait_growth(s->log, s->opts.checkpoint_bytes, 1000))
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
static ctx_status load_version(reader *r, ctx_context *c, bool first)
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
	ctx_state *v = st == CTX_OK ? state_new(c, version, data, meta) : NULL;
	if (!v) {
		hamt_release(&data);
		hamt_release(&meta);
		return st == CTX_OK ? CTX_NOMEM : st;
	}
	v->revision = revision;
	v->updated_us = updated;
	v->changed = changed;
	ctx_state_release(context_push_head(c, v));
	return CTX_OK;
}

/* The points of a section; their versions must have been loaded. */
static ctx_status load_points(reader *r, ctx_context *c, ctx_state **versions, size_t n,
                              uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		uint64_t version = take_u64(r), time = take_u64(r), sum = take_u64(r);
		const unsigned char *len = take(r, 1);
		const unsigned char *label = len ? take(r, *len) : NULL;
		if (r->bad || *len > CTX_LABEL_MAX)
			return CTX_CORRUPT;
		ctx_state *v = NULL;
		for (size_t j = 0; j < n && !v; j++)
			if (versions[j]->version == version)
				v = versions[j];
		char text[CTX_LABEL_MAX + 1];
		memcpy(text, label, *len);
		text[*len] = 0;
		if (!v || points_add(c, v, text, time, sum) != CTX_OK)
			return v ? CTX_NOMEM : CTX_CORRUPT;
	}
	return CTX_OK;
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
	ctx_state **versions = malloc(nversions * sizeof(*versions));
	if (!versions)
		return CTX_NOMEM;
	ctx_status st = CTX_OK;
	size_t n = 0;
	/* The chain keeps only history_depth of them: hold each one until the
	 * points that may pin it are loaded. */
	for (uint32_t i = 0; i < nversions && st == CTX_OK; i++) {
		st = load_version(r, c, i == 0);
		if (st == CTX_OK)
			versions[n++] = ctx_state_retain(c->head);
	}
	if (st == CTX_OK)
		st = load_points(r, c, versions, n, npoints);
	for (size_t i = 0; i < n; i++)
		ctx_state_release(versions[i]);
	free(versions);
	return st;
}

ctx_status checkpoint_load(ctx_store *s, const char *path, uint64_t *revision_out)
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
	if (!file_header_intact(p, size, CKPT_MAGIC)) {
		st = load_fail(path, 0, "bad header");
		goto out;
	}
	if (get_u32(p + 8) != FORMAT_VERSION) {
		st = load_fail(path, 8, "unknown format version");
		goto out;
	}
	*revision_out = get_u64(p + 16);
	p += CKPT_HEADER_SIZE;
	while (p < end) {
		uint64_t off = (uint64_t)(p - base);
		if (end - p < CKPT_SECTION_SIZE || get_u32(p) != crc32c(0, p + 4, CKPT_SECTION_SIZE - 4)) {
			st = load_fail(path, off, "bad section header");
			goto out;
		}
		uint32_t idlen = get_u32(p + 4);
		const unsigned char *body = p + CKPT_SECTION_SIZE;
		char id[CTX_ID_MAX + 1];
		size_t checked;
		if (idlen == 0 || idlen > CTX_ID_MAX || (size_t)(end - body) < idlen) {
			st = load_fail(path, off, "bad context id");
			goto out;
		}
		memcpy(id, body, idlen);
		id[idlen] = 0;
		if (ctx_check_id(id, &checked) != CTX_OK || checked != idlen ||
		    store_lookup_recovered(s, id, idlen)) {
			st = load_fail(path, off, "bad or repeated context id");
			goto out;
		}
		ctx_context *c = context_new(s, id, idlen, get_u64(p + 16));
		if (!c) {
			st = ctx_fail(CTX_NOMEM, "no memory loading %s", path);
			goto out;
		}
		c->incarnation = get_u64(p + 8);
		c->ttl_us = get_u64(p + 24);
		if (c->ttl_us)
			atomic_store(&s->any_ttl, true);
		atomic_store(&c->last_access_us, get_u64(p + 32));
		reader r = {body + idlen, end, false};
		st = load_section(&r, c, get_u32(p + 40), get_u32(p + 44));
		const unsigned char *t = r.p;
		uint64_t payload = (uint64_t)(t - body);
		if (st == CTX_OK && ((size_t)(end - t) < CKPT_SECTION_TRAILER ||
		                     get_u64(t) != payload || get_u32(t + 8) != crc32c(0, body, payload)))
			st = CTX_CORRUPT;
		if (st != CTX_OK) {
			/* Not in the table yet: let go of what was built. */
			points_clear(c);
			ctx_state_release(c->head);
			c->head = NULL;
			context_release(c);
			st = st == CTX_NOMEM ? ctx_fail(st, "no memory loading %s", path)
			                     : load_fail(path, off, "bad section payload");
			goto out;
		}
		store_publish_recovered(s, c);
		context_release(c); /* the table holds it now */
		sections++;
		p = t + CKPT_SECTION_TRAILER;
	}
	if (p != end || memcmp(end, CKPT_END_MAGIC, 8) != 0 ||
	    get_u32(end + 20) != crc32c(0, end, 20) || get_u64(end + 8) != sections)
		st = load_fail(path, (uint64_t)(end - base), "bad trailer");
out:
	munmap((void *)base, size);
	return st;
}

/* ---- the public face -------------------------------------------------------- */

ctx_status ctx_checkpoint(ctx_store *s)
{
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
