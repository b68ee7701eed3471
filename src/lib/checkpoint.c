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
	uint32_t crc; /* running crc of the current section payload */
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

static void out_map(out_file *o, const hamt *m)
{
	hamt_cursor cur;
	hamt_cursor_init(&cur, m);
	const hamt_leaf *l;
	while ((l = hamt_cursor_next(&cur))) {
		unsigned char h[8];
		put_u32(h, l->klen);
		put_u32(h + 4, l->vlen);
		out_bytes(o, h, 8);
		out_bytes(o, l->data, (size_t)l->klen + l->vlen);
	}
}

static void out_section(out_file *o, const ctx_context *c, const ctx_state *st)
{
	unsigned char h[CKPT_SECTION_SIZE];
	uint64_t payload = c->idlen + 8 * (st->data.count + st->meta.count) + st->data.bytes +
	                   st->meta.bytes;
	put_u32(h + 4, (uint32_t)c->idlen);
	put_u64(h + 8, c->incarnation);
	put_u64(h + 16, c->created_us);
	put_u64(h + 24, st->version);
	put_u64(h + 32, st->revision);
	put_u64(h + 40, st->updated_us);
	put_u64(h + 48, st->data.count);
	put_u64(h + 56, st->meta.count);
	put_u64(h + 64, payload);
	put_u32(h, crc32c(0, h + 4, CKPT_SECTION_SIZE - 4));
	out_bytes(o, h, sizeof(h));
	o->crc = 0;
	out_bytes(o, c->id, c->idlen);
	out_map(o, &st->data);
	out_map(o, &st->meta);
	unsigned char t[4];
	put_u32(t, o->crc);
	out_bytes(o, t, 4);
}

/* ---- taking the snapshot ---------------------------------------------------- */

typedef struct snapshot {
	size_t count, cap;
	ctx_state **states;
} snapshot;

static void snapshot_free(snapshot *sn)
{
	for (size_t i = 0; i < sn->count; i++)
		ctx_state_release(sn->states[i]);
	free(sn->states);
}

/* Take the head of every context that recovery from checkpoint `rev` must
 * find: the live ones, and those whose drop comes after rev in the log (the
 * drop may not be durable yet; replaying it will remove them). */
static ctx_status snapshot_take(ctx_store *s, uint64_t rev, snapshot *sn)
{
	size_t n = 0, cap = atomic_load(&s->live) + 16;
	ctx_context **ctxs = malloc(cap * sizeof(*ctxs));
	if (!ctxs)
		return ctx_fail(CTX_NOMEM, "no memory for a checkpoint");
	struct cds_lfht_iter iter;
	ctx_context *c;
	ctx_rcu_read_lock();
	ctx_lfht_for_each(s->table, &iter, c, node) {
		tsan_subscribe(c);
		if (n == cap) {
			ctx_context **g = realloc(ctxs, 2 * cap * sizeof(*ctxs));
			if (!g)
				break;
			ctxs = g;
			cap *= 2;
		}
		unsigned r = atomic_load(&c->refs);
		do {
			if (r == 0)
				break;
		} while (!atomic_compare_exchange_weak(&c->refs, &r, r + 1));
		if (r)
			ctxs[n++] = c;
	}
	ctx_rcu_read_unlock();
	bool complete = cds_lfht_iter_get_node(&iter) == NULL;

	sn->count = 0;
	sn->cap = n;
	sn->states = malloc((n ? n : 1) * sizeof(*sn->states));
	for (size_t i = 0; i < n; i++) {
		c = ctxs[i];
		if (sn->states) {
			pthread_mutex_lock(&c->write_lock);
			bool wanted = !atomic_load(&c->dropped) || c->drop_revision > rev;
			if (wanted && c->head)
				sn->states[sn->count++] = ctx_state_retain(c->head);
			pthread_mutex_unlock(&c->write_lock);
		}
		context_release(c);
	}
	free(ctxs);
	if (!sn->states || !complete) {
		snapshot_free(sn);
		return ctx_fail(CTX_NOMEM, "no memory for a checkpoint");
	}
	return CTX_OK;
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

	unsigned char h[CKPT_HEADER_SIZE] = {0};
	memcpy(h, CKPT_MAGIC, 8);
	put_u32(h + 8, FORMAT_VERSION);
	put_u32(h + 12, CKPT_HEADER_SIZE);
	put_u64(h + 16, rev);
	put_u32(h + 28, crc32c(0, h, 28));
	uint64_t newest = 0;
	if (!o->err) {
		out_bytes(o, h, sizeof(h));
		for (size_t i = 0; i < sn.count && !o->err; i++) {
			out_section(o, sn.states[i]->ctx, sn.states[i]);
			if (sn.states[i]->revision > newest)
				newest = sn.states[i]->revision;
		}
		unsigned char t[CKPT_TRAILER_SIZE] = {0};
		memcpy(t, CKPT_END_MAGIC, 8);
		put_u64(t + 8, sn.count);
		put_u32(t + 20, crc32c(0, t, 20));
		out_bytes(o, t, sizeof(t));
		out_flush(o);
	}
	snapshot_free(&sn);

	/* Never let a checkpoint hold a change the log could still lose. */
	if (!o->err && newest > rev && log_wait(s->log, newest) != CTX_OK)
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

/* Parse count pairs from p (bounded by end) into m. */
static bool load_map(hamt *m, const unsigned char **pp, const unsigned char *end, uint64_t count,
                     uint64_t edit, ctx_status *st)
{
	const unsigned char *p = *pp;
	for (uint64_t i = 0; i < count; i++) {
		if (end - p < 8)
			return false;
		uint32_t klen = get_u32(p), vlen = get_u32(p + 4);
		p += 8;
		if ((uint64_t)(end - p) < (uint64_t)klen + vlen || klen == 0)
			return false;
		hamt_leaf *l = hamt_leaf_new(p, klen, p + klen, vlen);
		if (!l || hamt_set(m, l, edit) != CTX_OK) {
			hamt_leaf_release(l);
			*st = CTX_NOMEM;
			return false;
		}
		p += (size_t)klen + vlen;
	}
	*pp = p;
	return true;
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
	if (memcmp(p, CKPT_MAGIC, 8) != 0 || get_u32(p + 28) != crc32c(0, p, 28)) {
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
		uint64_t payload = get_u64(p + 64);
		const unsigned char *body = p + CKPT_SECTION_SIZE;
		if (idlen == 0 || idlen > CTX_ID_MAX || payload < idlen ||
		    (uint64_t)(end - body) < payload + 4 ||
		    get_u32(body + payload) != crc32c(0, body, payload)) {
			st = load_fail(path, off, "bad section payload");
			goto out;
		}
		char id[CTX_ID_MAX + 1];
		memcpy(id, body, idlen);
		id[idlen] = 0;
		size_t checked;
		if (ctx_check_id(id, &checked) != CTX_OK || checked != idlen ||
		    store_lookup_recovered(s, id, idlen)) {
			st = load_fail(path, off, "bad or repeated context id");
			goto out;
		}
		ctx_context *c = context_new(s, id, idlen, get_u64(p + 16));
		hamt data = {0}, meta = {0};
		const unsigned char *q = body + idlen, *qend = body + payload;
		uint64_t edit = hamt_edit_token();
		ctx_state *state = NULL;
		if (c && load_map(&data, &q, qend, get_u64(p + 48), edit, &st) &&
		    load_map(&meta, &q, qend, get_u64(p + 56), edit, &st) && q == qend)
			state = state_new(c, get_u64(p + 24), data, meta);
		if (!state) {
			hamt_release(&data);
			hamt_release(&meta);
			if (c)
				context_release(c);
			st = st == CTX_NOMEM || !c ? ctx_fail(CTX_NOMEM, "no memory loading %s", path)
			                           : load_fail(path, off, "malformed section");
			goto out;
		}
		c->incarnation = get_u64(p + 8);
		state->revision = get_u64(p + 32);
		state->updated_us = get_u64(p + 40);
		store_insert_recovered(s, c, state);
		context_release(c); /* the table holds it now */
		sections++;
		p = body + payload + 4;
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
	checkpoint_lock(s);
	ctx_status st = checkpoint_run(s);
	checkpoint_unlock(s);
	return st;
}
