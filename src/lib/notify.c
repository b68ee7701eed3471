/*
 * notify.c - telling event loops that the durable revision advanced.
 *
 * An event loop that commits with ctx_txn_commit_nowait parks each reply
 * until ctx_durable_revision() reaches the write's revision. It learns that
 * the revision advanced from a notifier: an eventfd the log's flusher writes
 * after every synced batch (and after a failure). Each loop opens its own
 * notifier, so that no loop can consume another's wake-up. A loop may say
 * which revision it waits for (ctx_notifier_want): the flusher then writes
 * its eventfd only after a batch that reaches it, so a loop with no reply
 * waiting (or waiting for a later revision) is not woken for nothing.
 *
 * The flusher writes every notifier's eventfd with the store's notify_lock
 * held; an eventfd write never blocks (the counter cannot realistically
 * overflow: the loop reads it to zero each time it wakes).
 *
 * LOCKS
 *   store.notify_lock  the list of notifiers. Taken by the flusher (after a
 *                      batch, holding no other lock) and by open/close.
 *                      Nothing else is locked under it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "store.h"
#include "util.h"
#include "watch.h"

struct ctx_notifier {
	ctx_store *store;
	int fd;
	_Atomic uint64_t want;     /* signal once the durable revision reaches it */
	ctx_notifier *prev, *next; /* store.notify_lock */
};

/* The log's durable hook: let watchers see what is now durable (batch mode;
 * under durability always changes are reported only once durable), and wake
 * every notifier. */
static void notify_all(void *arg)
{
	ctx_store *s = arg;
	if (!s->wait_durable) {
		/* Batch and none: revisions may be acknowledged as soon as they
		 * are handed out, so no loop waits for a sync; only a failure is
		 * worth a wake-up. */
		if (s->feed)
			feed_set_gate(s->feed, log_synced_revision(s->log));
		if (!log_failed(s->log))
			return;
	}
	/* The durable revision was stored (seq_cst) before this hook runs, and a
	 * loop stores its want before it reads the durable revision again: one
	 * of the two sees the other, so no wake-up a loop needs is skipped. */
	bool failed = log_failed(s->log) != 0;
	uint64_t durable = log_synced_revision(s->log);
	pthread_mutex_lock(&s->notify_lock);
	for (ctx_notifier *n = s->notifiers; n; n = n->next) {
		if (!failed && atomic_load(&n->want) > durable)
			continue;
		uint64_t one = 1;
		ssize_t w = write(n->fd, &one, sizeof(one));
		(void)w; /* EAGAIN: the counter is full, so it is readable anyway */
	}
	pthread_mutex_unlock(&s->notify_lock);
}

void notify_init(ctx_store *s)
{
	ctx_mutex_init(&s->notify_lock);
	if (!s->log)
		return;
	if (!s->wait_durable && s->feed)
		feed_set_gate(s->feed, log_synced_revision(s->log));
	log_set_durable_hook(s->log, notify_all, s);
}

ctx_status ctx_notifier_open(ctx_store *s, ctx_notifier **out)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (!s || !out)
		return ctx_fail(CTX_INVALID, "NULL argument");
	ctx_notifier *n = calloc(1, sizeof(*n));
	if (!n)
		return ctx_fail(CTX_NOMEM, "no memory for a notifier");
	n->store = s;
	atomic_init(&n->want, 0);
	n->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->fd < 0) {
		int e = errno;
		free(n);
		errno = e;
		return ctx_fail(CTX_IO, "eventfd: %s", strerror(e));
	}
	pthread_mutex_lock(&s->notify_lock);
	n->next = s->notifiers;
	if (n->next)
		n->next->prev = n;
	s->notifiers = n;
	pthread_mutex_unlock(&s->notify_lock);
	*out = n;
	return CTX_OK;
}

int ctx_notifier_fd(const ctx_notifier *n)
{
	return n ? n->fd : -1;
}

void ctx_notifier_want(ctx_notifier *n, uint64_t rev)
{
	if (n && store_inherited(n->store))
		return;
	if (n)
		atomic_store(&n->want, rev);
}

void ctx_notifier_clear(ctx_notifier *n)
{
	if (n && store_inherited(n->store))
		return;
	uint64_t v;
	if (n)
		while (read(n->fd, &v, sizeof(v)) < 0 && errno == EINTR)
			;
}

void ctx_notifier_close(ctx_notifier *n)
{
	if (n && store_inherited(n->store))
		return; /* (fork.c) */
	if (!n)
		return;
	ctx_store *s = n->store;
	pthread_mutex_lock(&s->notify_lock);
	if (n->prev)
		n->prev->next = n->next;
	else
		s->notifiers = n->next;
	if (n->next)
		n->next->prev = n->prev;
	pthread_mutex_unlock(&s->notify_lock);
	close(n->fd);
	free(n);
}

ctx_status ctx_flush(ctx_store *s)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (!s)
		return ctx_fail(CTX_INVALID, "NULL argument");
	return s->log ? log_flush(s->log) : CTX_OK;
}

void ctx_flush_defer(ctx_store *s, bool on)
{
	if (s && store_inherited(s))
		return;
	if (s && s->log)
		log_defer(s->log, on);
}

ctx_status ctx_durable_revision(ctx_store *s, uint64_t *revision)
{
	if (s && store_inherited(s))
		return fork_refuse();
	if (!s || !revision)
		return ctx_fail(CTX_INVALID, "NULL argument");
	if (!s->log) {
		*revision = atomic_load(&s->revision);
		return CTX_OK;
	}
	*revision = log_acked_revision(s->log);
	int err = log_failed(s->log);
	if (err) {
		errno = err;
		return ctx_fail(CTX_IO, "the log failed: %s", strerror(err));
	}
	return CTX_OK;
}
