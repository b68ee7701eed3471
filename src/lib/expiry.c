/*
 * expiry.c - idle time-to-live of contexts, and the reaper that drops them.
 *
 * A context with a time-to-live (ctx_set_ttl) expires once nobody read or
 * wrote it for that long, measured on the store's clock. Commits always note
 * their time; reads note it only for contexts with a time-to-live, so that
 * reads of other contexts write no shared memory.
 *
 * One meaning: once past its time-to-live, a context is gone for every call,
 * whether or not the reaper has dropped it yet. The check is made in one
 * place, where a call finds its context (store_open_context, and ctx_get's
 * own lookup): an expired context is CTX_NOT_FOUND for get, get_at, history,
 * points, restore, transactions, set_ttl, drop and tracker open, it is left
 * out of ctx_list_ids and the status view, and it cannot be revived by a
 * write. Calls that change a context check again under its write lock
 * (context_closed), since the time-to-live may run out between the lookup
 * and the lock. Only ctx_count still counts it, until the reaper drops it.
 *
 * Expiring is a drop (logged as such, durable, seen by watchers as
 * CTX_EVENT_EXPIRED), and drops wait for the log: so a call never expires a
 * context itself. A call on an expired context wakes the reaper (a listing
 * does not: it is no access, and notes no time either). The
 * reaper thread scans the table every reaper_ms (and when woken) and drops
 * each expired context, unless it was used after the scan saw it idle.
 *
 * LOCKS: reaper_lock only to sleep on reaper_cv; nothing is taken under it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crc32c.h"
#include "format.h"
#include "log.h"
#include "store.h"
#include "util.h"

bool context_expired(const ctx_context *c, uint64_t now)
{
	uint64_t ttl = atomic_load_explicit(&c->ttl_us, memory_order_relaxed);
	uint64_t last = atomic_load_explicit(&c->last_access_us, memory_order_relaxed);
	return ttl && now > last && now - last >= ttl;
}

void context_note_access(ctx_context *c, uint64_t t)
{
	uint64_t last = atomic_load_explicit(&c->last_access_us, memory_order_relaxed);
	while (last < t && !atomic_compare_exchange_weak_explicit(&c->last_access_us, &last, t,
	                                                           memory_order_relaxed,
	                                                           memory_order_relaxed))
		;
}

/* Note an access at now: write the shared line at most once a millisecond. */
static void note_access_coarse(ctx_context *c, uint64_t now)
{
	if (now > atomic_load_explicit(&c->last_access_us, memory_order_relaxed) + 1000)
		context_note_access(c, now);
}

void context_touch(ctx_context *c)
{
	if (atomic_load_explicit(&c->ttl_us, memory_order_relaxed))
		note_access_coarse(c, store_now_us(c->store));
}

bool context_usable(ctx_context *c)
{
	if (!atomic_load_explicit(&c->ttl_us, memory_order_relaxed))
		return true; /* no clock read, no shared write */
	uint64_t now = store_now_us(c->store);
	if (context_expired(c, now))
		return false;
	note_access_coarse(c, now);
	return true;
}

bool context_closed(const ctx_context *c)
{
	if (atomic_load(&c->dropped))
		return true;
	return atomic_load_explicit(&c->ttl_us, memory_order_relaxed) &&
	       context_expired(c, store_now_us(c->store));
}

ctx_status ctx_set_ttl(ctx_store *s, const char *id, uint64_t ttl_ms)
{
	if (ttl_ms > UINT64_MAX / 1000)
		return ctx_fail(CTX_INVALID, "ttl too large");
	ctx_context *c;
	ctx_status st = store_open_context(s, id, &c);
	if (st != CTX_OK)
		return st;
	size_t idlen = c->idlen;
	uint64_t rev = 0;
	uint64_t now = store_now_us(s);
	pthread_mutex_lock(&c->write_lock);
	if (context_closed(c)) {
		if (!atomic_load(&c->dropped))
			reaper_kick(s);
		st = ctx_fail(CTX_NOT_FOUND, "no context '%s' (dropped or expired)", id);
	} else if (s->log) {
		unsigned char body[2 + CTX_ID_MAX + 16];
		put_u16(body, (uint16_t)idlen);
		memcpy(body + 2, c->id, idlen);
		put_u64(body + 2 + idlen, ttl_ms * 1000);
		put_u64(body + 10 + idlen, now);
		log_record rec = {REC_TTL, 0, c->incarnation, body, (uint32_t)(idlen + 18),
		                  crc32c(0, body, idlen + 18)};
		st = log_append(s->log, &rec, &rev);
	}
	if (st == CTX_OK) {
		atomic_store(&c->ttl_us, ttl_ms * 1000);
		if (ttl_ms)
			atomic_store(&s->any_ttl, true);
		context_note_access(c, now);
	}
	pthread_mutex_unlock(&c->write_lock);
	if (st == CTX_OK && s->log) {
		if (s->wait_durable)
			st = log_wait(s->log, rev);
		store_report_skip(s, rev);
	}
	context_release(c);
	return st;
}

/* Drop every expired context; returns how many. */
static bool is_expired(const ctx_context *c, void *now)
{
	return !atomic_load(&c->dropped) && context_expired(c, *(uint64_t *)now);
}

size_t ctx_expire_now(ctx_store *s)
{
	if (!s || !atomic_load(&s->any_ttl)) /* nothing can expire: no scan */
		return 0;
	size_t n = 0, expired = 0;
	uint64_t now = store_now_us(s);
	ctx_context **found = store_collect(s, is_expired, &now, &n);
	if (!found)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t ttl = atomic_load(&found[i]->ttl_us);
		/* Not if it was used since it was seen idle. */
		if (ttl && context_drop(found[i], CTX_EVENT_EXPIRED, now - ttl) == CTX_OK)
			expired++;
		context_release(found[i]);
	}
	free(found);
	return expired;
}

static void *reaper_main(void *arg)
{
	ctx_store *s = arg;
	pthread_mutex_lock(&s->reaper_lock);
	while (!s->reaper_stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		ctx_timespec_add_ms(&until, s->opts.reaper_ms);
		while (!s->reaper_stop && !s->reaper_kicked &&
		       pthread_cond_timedwait(&s->reaper_cv, &s->reaper_lock, &until) == 0)
			;
		s->reaper_kicked = false;
		if (s->reaper_stop)
			break;
		pthread_mutex_unlock(&s->reaper_lock);
		ctx_expire_now(s);
		pthread_mutex_lock(&s->reaper_lock);
	}
	pthread_mutex_unlock(&s->reaper_lock);
	return NULL;
}

void reaper_kick(ctx_store *s)
{
	pthread_mutex_lock(&s->reaper_lock);
	s->reaper_kicked = true;
	pthread_cond_signal(&s->reaper_cv);
	pthread_mutex_unlock(&s->reaper_lock);
}

ctx_status reaper_start(ctx_store *s)
{
	pthread_mutex_init(&s->reaper_lock, NULL);
	pthread_cond_init(&s->reaper_cv, NULL);
	if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0)
		return ctx_fail(CTX_NOMEM, "cannot start the expiry reaper");
	s->reaper_running = true;
	return CTX_OK;
}

void reaper_stop(ctx_store *s)
{
	if (!s->reaper_running)
		return;
	pthread_mutex_lock(&s->reaper_lock);
	s->reaper_stop = true;
	pthread_cond_signal(&s->reaper_cv);
	pthread_mutex_unlock(&s->reaper_lock);
	pthread_join(s->reaper, NULL);
	s->reaper_running = false;
	pthread_mutex_destroy(&s->reaper_lock);
	pthread_cond_destroy(&s->reaper_cv);
}
