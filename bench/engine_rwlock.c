/*
 * engine_rwlock.c - a reproduction of the design ctx replaces: one global
 * pthread_rwlock over a hash map of contexts, in memory only.
 *
 *   - every write (create, update) takes the lock exclusively;
 *   - every read takes it shared and copies the whole context out (one
 *     malloc'd blob of all its pairs) before letting go, as the old system
 *     handed each reader its own copy of the context; the reader then looks up
 *     its key in the copy and frees it.
 *
 * glibc's default rwlock prefers readers, as the old system's did.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct pair {
	char *key;
	size_t klen;
	void *val;
	size_t vlen;
} pair;

typedef struct rctx {
	struct rctx *next;
	uint64_t hash;
	char *id;
	size_t npairs, cap;
	pair *pairs;
} rctx;

typedef struct rw_engine {
	pthread_rwlock_t lock;
	rctx **buckets;
	size_t nbuckets; /* a power of two */
	size_t count;
} rw_engine;

static uint64_t hash_id(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static rctx *find(rw_engine *e, const char *id, uint64_t h)
{
	for (rctx *c = e->buckets[h & (e->nbuckets - 1)]; c; c = c->next)
		if (c->hash == h && strcmp(c->id, id) == 0)
			return c;
	return NULL;
}

static void grow(rw_engine *e)
{
	size_t n = e->nbuckets * 2;
	rctx **b = calloc(n, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i < e->nbuckets; i++) {
		for (rctx *c = e->buckets[i], *next; c; c = next) {
			next = c->next;
			c->next = b[c->hash & (n - 1)];
			b[c->hash & (n - 1)] = c;
		}
	}
	free(e->buckets);
	e->buckets = b;
	e->nbuckets = n;
}

static void free_ctx(rctx *c)
{
	for (size_t i = 0; i < c->npairs; i++) {
		free(c->pairs[i].key);
		free(c->pairs[i].val);
	}
	free(c->pairs);
	free(c->id);
	free(c);
}

static int rw_open(const engine_def *d, const char *dir, void **eng, char *msg, size_t msglen)
{
	rw_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return ENGINE_ERROR;
	e->nbuckets = 1024;
	e->buckets = calloc(e->nbuckets, sizeof(*e->buckets));
	if (!e->buckets) {
		free(e);
		return ENGINE_ERROR;
	}
	pthread_rwlock_init(&e->lock, NULL);
	*eng = e;
	return ENGINE_OK;
}

static void rw_close(void *eng)
{
	rw_engine *e = eng;
	for (size_t i = 0; i < e->nbuckets; i++) {
		for (rctx *c = e->buckets[i], *next; c; c = next) {
			next = c->next;
			free_ctx(c);
		}
	}
	free(e->buckets);
	pthread_rwlock_destroy(&e->lock);
	free(e);
}

/* A new context with nkeys pairs, built outside the lock. */
static rctx *new_ctx(const char *id, const char *const *keys, int nkeys, const void *val,
                     size_t vlen)
{
	rctx *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->hash = hash_id(id);
	c->id = strdup(id);
	c->cap = (size_t)nkeys;
	c->pairs = calloc(c->cap, sizeof(pair));
	if (!c->id || !c->pairs) {
		free_ctx(c);
		return NULL;
	}
	for (int k = 0; k < nkeys; k++) {
		pair *p = &c->pairs[c->npairs];
		p->klen = strlen(keys[k]);
		p->key = malloc(p->klen);
		p->val = malloc(vlen ? vlen : 1);
		if (!p->key || !p->val) {
			free(p->key);
			free(p->val);
			free_ctx(c);
			return NULL;
		}
		memcpy(p->key, keys[k], p->klen);
		memcpy(p->val, val, vlen);
		p->vlen = vlen;
		c->npairs++;
	}
	return c;
}

static int insert(rw_engine *e, rctx *c)
{
	pthread_rwlock_wrlock(&e->lock);
	if (find(e, c->id, c->hash)) {
		pthread_rwlock_unlock(&e->lock);
		free_ctx(c);
		return -1;
	}
	size_t b = c->hash & (e->nbuckets - 1);
	c->next = e->buckets[b];
	e->buckets[b] = c;
	if (++e->count > e->nbuckets)
		grow(e);
	pthread_rwlock_unlock(&e->lock);
	return 0;
}

static int rw_load(void *eng, const char *const *ids, size_t nctx, const char *const *keys,
                   char *msg, size_t msglen)
{
	char val[BENCH_VALUE_LEN];
	memset(val, 'v', sizeof(val));
	for (size_t i = 0; i < nctx; i++) {
		rctx *c = new_ctx(ids[i], keys, BENCH_KEYS_PER_CTX, val, sizeof(val));
		if (!c || insert(eng, c)) {
			bench_msg(msg, msglen, "rwlock load %s failed", ids[i]);
			return -1;
		}
	}
	return 0;
}

static void *rw_worker_new(void *eng)
{
	return eng;
}

static void rw_worker_free(void *w) {}

static int rw_create(void *w, const char *id, const char *const *keys, int nkeys, const void *val,
                     size_t vlen)
{
	rctx *c = new_ctx(id, keys, nkeys, val, vlen);
	return c ? insert(w, c) : -1;
}

static int rw_update(void *w, const char *id, const char *key, const void *val, size_t vlen)
{
	rw_engine *e = w;
	size_t klen = strlen(key);
	uint64_t h = hash_id(id);
	int rc = -1;
	pthread_rwlock_wrlock(&e->lock);
	rctx *c = find(e, id, h);
	if (c) {
		pair *p = NULL;
		for (size_t i = 0; i < c->npairs && !p; i++)
			if (c->pairs[i].klen == klen && memcmp(c->pairs[i].key, key, klen) == 0)
				p = &c->pairs[i];
		if (!p && c->npairs == c->cap) {
			size_t cap = c->cap ? 2 * c->cap : 4;
			pair *grown = realloc(c->pairs, cap * sizeof(pair));
			if (grown) {
				c->pairs = grown;
				c->cap = cap;
			}
		}
		if (!p && c->npairs < c->cap && (c->pairs[c->npairs].key = malloc(klen))) {
			p = &c->pairs[c->npairs++];
			memcpy(p->key, key, klen);
			p->klen = klen;
			p->val = NULL;
			p->vlen = 0;
		}
		void *nv = p ? malloc(vlen ? vlen : 1) : NULL;
		if (nv) {
			memcpy(nv, val, vlen);
			free(p->val);
			p->val = nv;
			p->vlen = vlen;
			rc = 0;
		}
	}
	pthread_rwlock_unlock(&e->lock);
	return rc;
}

/* The copy of a context a reader gets: its pairs, then their bytes. */
typedef struct copy {
	size_t npairs;
	pair pairs[];
} copy;

static copy *copy_out(rw_engine *e, const char *id)
{
	uint64_t h = hash_id(id);
	copy *cp = NULL;
	pthread_rwlock_rdlock(&e->lock);
	rctx *c = find(e, id, h);
	if (c) {
		size_t bytes = sizeof(copy) + c->npairs * sizeof(pair);
		for (size_t i = 0; i < c->npairs; i++)
			bytes += c->pairs[i].klen + c->pairs[i].vlen;
		cp = malloc(bytes);
		if (cp) {
			char *data = (char *)&cp->pairs[c->npairs];
			cp->npairs = c->npairs;
			for (size_t i = 0; i < c->npairs; i++) {
				const pair *p = &c->pairs[i];
				cp->pairs[i] = (pair){data, p->klen, data + p->klen, p->vlen};
				memcpy(data, p->key, p->klen);
				memcpy(data + p->klen, p->val, p->vlen);
				data += p->klen + p->vlen;
			}
		}
	}
	pthread_rwlock_unlock(&e->lock);
	return cp;
}

static int rw_read(void *w, const char *id, const char *key, void *buf, size_t *vlen)
{
	copy *cp = copy_out(w, id);
	if (!cp)
		return -1;
	size_t klen = strlen(key);
	int rc = -1;
	for (size_t i = 0; i < cp->npairs; i++) {
		const pair *p = &cp->pairs[i];
		if (p->klen == klen && memcmp(p->key, key, klen) == 0 &&
		    p->vlen <= BENCH_MAX_VALUE) {
			memcpy(buf, p->val, p->vlen);
			*vlen = p->vlen;
			rc = 0;
			break;
		}
	}
	free(cp);
	return rc;
}

static int rw_read_all(void *w, const char *id, void *buf, size_t cap, size_t *npairs)
{
	copy *cp = copy_out(w, id);
	if (!cp)
		return -1;
	size_t off = 0, n = 0;
	int rc = 0;
	for (size_t i = 0; i < cp->npairs; i++) {
		if (off + cp->pairs[i].vlen > cap) {
			rc = -1;
			break;
		}
		memcpy((char *)buf + off, cp->pairs[i].val, cp->pairs[i].vlen);
		off += cp->pairs[i].vlen;
		n++;
	}
	free(cp);
	*npairs = n;
	return rc;
}

const engine_def engine_rwlock = {.name = "rwlock",
                                  .group = "memory",
                                  .family = "rwlock",
                                  .open = rw_open,
                                  .load = rw_load,
                                  .close = rw_close,
                                  .worker_new = rw_worker_new,
                                  .worker_free = rw_worker_free,
                                  .create = rw_create,
                                  .update = rw_update,
                                  .read = rw_read,
                                  .read_all = rw_read_all};
