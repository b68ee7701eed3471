/*
 * recovery.c - opening a data directory: checkpoint, then log replay.
 *
 * 1. The newest checkpoint that loads cleanly gives the state as of its
 *    revision R (a damaged one is reported and the one before it is tried).
 * 2. The log segments are replayed in order from the one holding R + 1.
 *    Revisions must follow each other without a gap across all segments;
 *    records <= R, and commits the checkpoint already holds (by version), are
 *    skipped.
 * 3. Damage in the log: if nothing valid follows it in the last segment, it
 *    is a torn tail (a write the crash interrupted, never acknowledged): it is
 *    cut off and reported. Anything else (a bad record followed by a valid
 *    one, a bad record in an older segment, a gap) is corruption: recovery
 *    stops with CTX_CORRUPT naming the file and offset, and serves nothing.
 *
 * Recovery runs before the store is shared, on one thread; it builds states
 * directly, without the log.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"
#include "reader.h"
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
		else if (!read_only && len == 25 && sscanf(e->d_name, "ckpt-%16llx.tm%1s", &v, tail) == 2) {
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

/* Apply the ops of a commit body to data/meta. */
static ctx_status apply_ops(reader *r, hamt *data, hamt *meta, uint64_t edit, uint64_t time_us,
                            bool with_times)
{
	uint32_t nops = take_u32(r);
	for (uint32_t i = 0; i < nops && !r->bad; i++) {
		const unsigned char *k = take(r, 1);
		uint32_t klen = take_u32(r), vlen = take_u32(r);
		const unsigned char *key = take(r, klen), *val = take(r, vlen);
		uint64_t t = with_times ? take_u64(r) : time_us;
		if (r->bad || klen == 0 || *k > OP_META_DEL_CODE)
			return CTX_CORRUPT;
		hamt *m = *k == OP_PUT_CODE || *k == OP_DEL_CODE ? data : meta;
		if (*k == OP_PUT_CODE || *k == OP_META_PUT_CODE) {
			hamt_leaf *l = hamt_leaf_new(key, klen, val, vlen);
			if (l)
				l->time_us = t;
			if (!l || hamt_set(m, l, edit) != CTX_OK) {
				hamt_leaf_release(l);
				return CTX_NOMEM;
			}
		} else if (hamt_del(m, hamt_hash(key, klen), key, klen, edit) == CTX_NOMEM) {
			return CTX_NOMEM;
		}
	}
	return r->bad ? CTX_CORRUPT : CTX_OK;
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
	if (!v || v->version != version) {
		/* The version left history before its point was replayed (a smaller
		 * history_depth than when it was written): the point is lost. */
		fprintf(stderr, "ctx: recovery: point on version %llu of '%s' lost: version not kept\n",
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
	if (v && v->version == version)
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
	return CTX_OK;
}

/* Apply one record. CTX_CORRUPT with *why set if it makes no sense. */
static ctx_status apply_record(ctx_store *s, uint8_t type, uint64_t rev, uint64_t version,
                               uint64_t incarnation, const unsigned char *body, uint32_t blen,
                               const char **why)
{
	reader r = {body, body + blen, false};
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
	if (ctx_check_id(id, &checked) != CTX_OK || checked != idlen)
		return CTX_CORRUPT;
	ctx_context *c = store_lookup_recovered(s, id, idlen);

	if (type == REC_CREATE) {
		uint64_t created = take_u64(&r);
		if (r.bad || incarnation != rev)
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
		if (r.p != r.end) /* initial data (ctx_txn_begin_create) */
			ast = apply_ops(&r, &data, &meta, hamt_edit_token(), created, false);
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
		st->revision = rev;
		st->updated_us = created;
		store_insert_recovered(s, c, st);
		context_release(c);
		return CTX_OK;
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
	if (type != REC_COMMIT && type != REC_RESTORE) {
		*why = "unknown record type";
		return CTX_CORRUPT;
	}
	uint64_t updated = take_u64(&r);
	if (!c || c->incarnation != incarnation || version <= c->head->version)
		return r.bad ? CTX_CORRUPT : CTX_OK; /* dropped later, or checkpointed */
	if (version != c->head->version + 1) {
		*why = "version gap";
		return CTX_CORRUPT;
	}
	uint64_t edit = hamt_edit_token();
	hamt data = hamt_retain(&c->head->data), meta = hamt_retain(&c->head->meta);
	ctx_status st = apply_ops(&r, &data, &meta, edit, updated, type == REC_RESTORE);
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
	context_note_access(c, updated);
	next->changed = hamt_diff_count(&c->head->data, &next->data);
	store_set_head_recovered(c, next);
	return CTX_OK;
}

/* ---- reading segments ---------------------------------------------------------- */

/* Does a valid record with a revision above prev start anywhere after off? */
static bool valid_record_after(const unsigned char *base, size_t size, size_t off, uint64_t prev)
{
	for (size_t o = off + 1; o + REC_HEADER_SIZE <= size; o++) {
		const unsigned char *h = base + o;
		if (get_u32(h) != crc32c(0, h + 4, REC_HEADER_SIZE - 4))
			continue;
		uint32_t blen = get_u32(h + 4);
		if (get_u64(h + 8) > prev && blen <= size - o - REC_HEADER_SIZE &&
		    get_u32(h + 36) == crc32c(0, h + REC_HEADER_SIZE, blen))
			return true;
	}
	return false;
}

typedef struct replay {
	ctx_store *s;
	const char *dir;
	bool read_only;
	uint64_t checkpoint; /* R */
	uint64_t prev;       /* revision of the last record read */
	recovery_info *info;
} replay;

static ctx_status cut_tail(replay *rp, const char *path, size_t off, size_t size,
                           const char *why)
{
	rp->info->torn_bytes += size - off;
	if (rp->read_only)
		return CTX_OK;
	int fd = vfs_open(path, O_WRONLY, 0);
	if (fd < 0 || vfs_truncate(fd, (off_t)off) != 0 || vfs_sync(fd) != 0) {
		int e = errno;
		if (fd >= 0)
			vfs_close(fd);
		errno = e;
		return ctx_fail(CTX_IO, "cannot cut the torn tail of %s: %s", path, strerror(e));
	}
	vfs_close(fd);
	fprintf(stderr, "ctx: recovery cut %zu bytes of torn tail from %s at offset %zu (%s)\n",
	        size - off, path, off, why);
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
		base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (base == MAP_FAILED) {
			close(fd);
			return ctx_fail(CTX_IO, "cannot map %s: %s", path, strerror(errno));
		}
		madvise((void *)base, size, MADV_SEQUENTIAL);
	}
	close(fd);
	rp->info->segments++;

	ctx_status st = CTX_OK;
	size_t off = 0;
	const char *why = NULL;
	if (!file_header_intact(base, size, WAL_MAGIC)) {
		why = "bad segment header";
	} else if (get_u32(base + 8) != FORMAT_VERSION || get_u64(base + 16) != first) {
		st = ctx_fail(CTX_CORRUPT, "log %s: unknown version or wrong first revision", path);
		goto out;
	} else {
		off = WAL_HEADER_SIZE;
		if (rp->prev + 1 != first && first > rp->checkpoint + 1) {
			st = ctx_fail(CTX_CORRUPT,
			              "log %s: starts at revision %" PRIu64 " but %" PRIu64
			              " came before: records are missing",
			              path, first, rp->prev);
			goto out;
		}
		rp->prev = first - 1;
	}
	while (!why && off < size) {
		const unsigned char *h = base + off;
		uint32_t blen = 0;
		if (size - off < REC_HEADER_SIZE)
			why = "truncated record header";
		else if (get_u32(h) != crc32c(0, h + 4, REC_HEADER_SIZE - 4))
			why = "bad record header checksum";
		else if ((blen = get_u32(h + 4)) > size - off - REC_HEADER_SIZE)
			why = "truncated record body";
		else if (get_u32(h + 36) != crc32c(0, h + REC_HEADER_SIZE, blen))
			why = "bad record body checksum";
		if (why)
			break;
		uint64_t rev = get_u64(h + 8);
		if (rev != rp->prev + 1) {
			st = ctx_fail(CTX_CORRUPT,
			              "log %s: record at offset %zu has revision %" PRIu64
			              ", expected %" PRIu64,
			              path, off, rev, rp->prev + 1);
			goto out;
		}
		if (rev > rp->checkpoint) {
			const char *bad;
			st = apply_record(rp->s, h[32], rev, get_u64(h + 16), get_u64(h + 24),
			                  h + REC_HEADER_SIZE, blen, &bad);
			if (st == CTX_CORRUPT)
				st = ctx_fail(st, "log %s: %s in record at offset %zu", path, bad, off);
			else if (st != CTX_OK)
				st = ctx_fail(st, "no memory replaying %s", path);
			if (st != CTX_OK)
				goto out;
		}
		rp->prev = rev;
		rp->info->records++;
		rp->info->replayed_bytes += REC_HEADER_SIZE + blen;
		off += REC_HEADER_SIZE + blen;
	}
	if (why) {
		if (!last || valid_record_after(base, size, off, rp->prev)) {
			st = ctx_fail(CTX_CORRUPT, "log %s: %s at offset %zu, with valid data after it",
			              path, why, off);
			if (!last)
				st = ctx_fail(CTX_CORRUPT, "log %s: %s at offset %zu (not the last segment)",
				              path, why, off);
		} else if (off == 0 && !rp->read_only) {
			/* A segment whose creation the crash interrupted: no record in it
			 * was ever acknowledged. */
			rp->info->torn_bytes += size;
			if (vfs_unlink(path) != 0)
				st = ctx_fail(CTX_IO, "cannot remove %s: %s", path, strerror(errno));
			else
				fprintf(stderr, "ctx: recovery removed %s (%s)\n", path, why);
		} else {
			st = cut_tail(rp, path, off, size, why);
		}
	}
out:
	if (base)
		munmap((void *)base, size);
	return st;
}

ctx_status recovery_run(ctx_store *s, const char *dir, bool read_only, recovery_info *info)
{
	rev_list ckpts = {0}, segs = {0};
	memset(info, 0, sizeof(*info));
	ctx_status st = list_dir(dir, read_only, &ckpts, &segs);
	if (st != CTX_OK)
		goto out;
	info->checkpoints = ckpts.n;

	uint64_t R = 0;
	char first_error[512] = "";
	bool loaded = false;
	for (size_t i = ckpts.n; i-- > 0 && !loaded;) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/ckpt-%016" PRIx64 ".ckpt", dir, ckpts.v[i]);
		st = checkpoint_load(s, path, &R);
		if (st == CTX_OK && R == ckpts.v[i]) {
			loaded = true;
			break;
		}
		if (st == CTX_OK)
			st = ctx_fail(CTX_CORRUPT, "checkpoint %s: names revision %" PRIx64
			              " but holds %" PRIx64, path, ckpts.v[i], R);
		if (st == CTX_NOMEM || st == CTX_IO)
			goto out;
		info->checkpoints_damaged++;
		if (!first_error[0])
			snprintf(first_error, sizeof(first_error), "%s", ctx_last_error());
		fprintf(stderr, "ctx: %s; trying an older checkpoint\n", ctx_last_error());
		store_clear(s);
		R = 0;
	}
	if (!loaded && ckpts.n) {
		st = ctx_fail(CTX_CORRUPT, "%s (and no older valid checkpoint)", first_error);
		goto out;
	}
	info->checkpoint_revision = R;

	/* Replay from the last segment that starts at or before R + 1. */
	size_t start = 0;
	while (start + 1 < segs.n && segs.v[start + 1] <= R + 1)
		start++;
	replay rp = {s, dir, read_only, R, R, info};
	if (segs.n && segs.v[start] > R + 1) {
		st = ctx_fail(CTX_CORRUPT, "log starts at revision %" PRIu64
		              " but the checkpoint ends at %" PRIu64 ": records are missing%s%s",
		              segs.v[start], R, first_error[0] ? "; " : "", first_error);
		goto out;
	}
	if (segs.n)
		rp.prev = segs.v[start] - 1;
	for (size_t i = start; i < segs.n && st == CTX_OK; i++)
		st = replay_segment(&rp, segs.v[i], i + 1 == segs.n);
	if (st == CTX_OK && rp.prev < R)
		rp.prev = R;
	info->last_revision = rp.prev;
out:
	free(ckpts.v);
	free(segs.v);
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
	s->opts.max_contexts = SIZE_MAX;
	/* Keep every version and point: a restore record names its target, and
	 * the store that wrote the log may have kept more than the defaults. */
	s->opts.history_depth = SIZE_MAX;
	s->opts.max_points = SIZE_MAX;
	char lock_path[4096];
	snprintf(lock_path, sizeof(lock_path), "%s/LOCK", dir);
	int fd = open(lock_path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) != 0) {
		st = ctx_fail(CTX_IO, "%s is in use by an open store", dir);
	} else {
		struct stat sb;
		if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
			st = ctx_fail(CTX_IO, "%s is not a readable directory", dir);
		else {
			recovery_info info;
			st = recovery_run(s, dir, true, &info);
			r->checkpoint_revision = info.checkpoint_revision;
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
		struct cds_lfht_iter iter;
		ctx_context *c;
		ctx_rcu_read_lock();
		ctx_lfht_for_each(s->table, &iter, c, node) {
			r->contexts++;
			r->keys += c->head->data.count;
		}
		ctx_rcu_read_unlock();
		snprintf(r->message, sizeof(r->message), "ok");
	} else {
		snprintf(r->message, sizeof(r->message), "%s", ctx_last_error());
	}
	ctx_close(s);
	if (st != CTX_OK)
		ctx_fail(st, "%s", r->message);
	return st;
}
