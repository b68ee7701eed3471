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
 * A time-to-live set under durability always takes effect only once its
 * record is durable (a log completion applies it), so no call ever sees, or
 * expires a context by, a time-to-live that a crash could lose.
 *
 * The reaper sleeps on the monotonic clock (reaper_cv's clock): a step of the
 * wall clock (NTP, an administrator) neither delays nor hurries its rounds.
 * While no context has ever had a time-to-live (any_ttl false: nothing can
 * expire, and a scan would find nothing) it sleeps with no deadline, so an
 * idle store's reaper never wakes; the first time-to-live set wakes it
 * (ttl_apply arms it as it raises any_ttl: its first round comes reaper_ms
 * later, as every round does; only a kick - an expired context met by a call
 * - runs a round at once), and it keeps its rounds from then on. Recovery
 * raises any_ttl before the reaper starts.
 * The store's clock, which decides what has expired, is another matter
 * (ctx_options.clock_us, or the real time, as the times in the log).
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
	/* acquire: pairs with ttl_apply's store, made after it noted the access
	 * the ttl counts from (a plain load on x86-64) */
	uint64_t ttl = atomic_load_explicit(&c->ttl_us, memory_order_acquire);
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

void context_note_commit(ctx_context *c, uint64_t t)
{
	/* Who else writes last_access_us while we hold the write lock: readers
	 * of a context with a time-to-live (note_access_coarse), and, under
	 * durability always, the log completion that applies a time-to-live
	 * (ttl_change_done, no lock). Without a time-to-live and without that
	 * completion, a reader that still raises it (it loaded ttl_us before a
	 * ctx_set_ttl of 0, under this lock, cleared it) notes an access that
	 * nothing reads back but the status view: a plain store, not a
	 * compare-and-swap, is then enough (round 6: 1.6% of a one-thread
	 * update); a later ctx_set_ttl notes its own time under this lock. */
	if (c->store->wait_durable || atomic_load_explicit(&c->ttl_us, memory_order_relaxed)) {
		context_note_access(c, t);
		return;
	}
	if (atomic_load_explicit(&c->last_access_us, memory_order_relaxed) < t)
		atomic_store_explicit(&c->last_access_us, t, memory_order_relaxed);
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

/* Give c its time-to-live ttl_us, set at time `when`. */
static void ttl_apply(ctx_context *c, uint64_t ttl_us, uint64_t when)
{
	/* The access first: a reader or the reaper that sees the new ttl must
	 * also see the time it counts from, or it finds the context idle since
	 * its last access before the ttl and expires it (test_session's late
	 * ttl failed 1 run in 10 when the first ttl's wake-up ran a round at
	 * once). */
	context_note_access(c, when);
	atomic_store(&c->ttl_us, ttl_us);
	if (ttl_us && !atomic_exchange(&c->store->any_ttl, true))
		reaper_arm(c->store); /* it sleeps with no deadline until now */
}

/* A time-to-live waiting for its record to be durable (durability always):
 * the flusher applies it then, in revision order, so the last one decided
 * wins; never if the log failed first. */
typedef struct ttl_change {
	log_done done;
	ctx_context *c; /* a reference */
	uint64_t ttl_us, when;
} ttl_change;

static void ttl_change_done(log_done *d, bool durable)
{
	ttl_change *t = caa_container_of(d, ttl_change, done);
	if (durable)
		ttl_apply(t->c, t->ttl_us, t->when);
	context_release(t->c);
	free(t);
}

/* Log c's new time-to-live (write lock held); tc (may be NULL) applies it
 * once durable. */
static ctx_status log_ttl(ctx_context *c, uint64_t ttl_us, uint64_t now, uint64_t *rev,
                          ttl_change *tc)
{
	unsigned char body[2 + CTX_ID_MAX + 16];
	size_t idlen = c->idlen;
	put_u16(body, (uint16_t)idlen);
	memcpy(body + 2, c->id, idlen);
	put_u64(body + 2 + idlen, ttl_us);
	put_u64(body + 10 + idlen, now);
	log_record rec = {REC_TTL, 0, c->incarnation, body, (uint32_t)(idlen + 18),
	                  crc32c(0, body, idlen + 18), 0};
	return log_append_done(c->store->log, &rec, rev, tc ? &tc->done : NULL);
}

/* Under durability always a time-to-live takes effect only once its record
 * is durable (like a commit: nothing a crash can lose is ever seen); else at
 * once. */
ctx_status ctx_set_ttl(ctx_store *s, const char *id, uint64_t ttl_ms)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (ttl_ms > UINT64_MAX / 1000)
		return ctx_fail(CTX_INVALID, "ttl too large");
	if (s)
		store_throttle(s, false); /* (durability batch and none) */
	ctx_context *c;
	ctx_status st = store_open_context(s, id, &c);
	if (st != CTX_OK)
		return st;
	uint64_t rev = 0, ttl_us = ttl_ms * 1000;
	uint64_t now = store_now_us(s);
	ttl_change *tc = NULL;
	if (s->log && s->wait_durable) {
		if (!(tc = malloc(sizeof(*tc)))) {
			context_release(c);
			return ctx_fail(CTX_NOMEM, "no memory to set a time-to-live");
		}
		*tc = (ttl_change){.done = {.fn = ttl_change_done}, .c = c, .ttl_us = ttl_us,
		                   .when = now};
		context_retain(c); /* the change's */
	}
	context_lock(c);
	if (context_closed(c)) {
		if (!atomic_load(&c->dropped))
			reaper_kick(s);
		st = ctx_fail(CTX_NOT_FOUND, "no context '%s' (dropped or expired)", id);
	} else if (s->log) {
		st = log_ttl(c, ttl_us, now, &rev, tc);
	}
	if (st == CTX_OK && !tc)
		ttl_apply(c, ttl_us, now);
	context_unlock(c);
	if (st != CTX_OK && tc) {
		context_release(c);
		free(tc);
	}
	if (st == CTX_OK && s->log) {
		if (tc)
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
	if (s && store_inherited(s))
		return 0;
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
	pthread_setname_np(pthread_self(), "ctx-reaper"); /* (top -H, perf sched) */
	pthread_mutex_lock(&s->reaper_lock);
	while (!s->reaper_stop) {
		/* Nothing can expire: no rounds until a kick or the first ttl
		 * (reaper_arm: signalled under reaper_lock, after any_ttl). */
		while (!s->reaper_stop && !s->reaper_kicked && !atomic_load(&s->any_ttl))
			pthread_cond_wait(&s->reaper_cv, &s->reaper_lock);
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until); /* reaper_cv's clock */
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
	if (store_inherited(s))
		return; /* a read in a child of fork: the reaper is the parent's */
	pthread_mutex_lock(&s->reaper_lock);
	s->reaper_kicked = true;
	pthread_cond_signal(&s->reaper_cv);
	pthread_mutex_unlock(&s->reaper_lock);
}

void reaper_arm(ctx_store *s)
{
	pthread_mutex_lock(&s->reaper_lock);
	pthread_cond_signal(&s->reaper_cv);
	pthread_mutex_unlock(&s->reaper_lock);
}

ctx_status reaper_start(ctx_store *s)
{
	pthread_mutex_init(&s->reaper_lock, NULL);
	pthread_condattr_t monotonic;
	pthread_condattr_init(&monotonic);
	pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
	pthread_cond_init(&s->reaper_cv, &monotonic);
	pthread_condattr_destroy(&monotonic);
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
