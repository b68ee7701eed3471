/*
 * cmd_ctx.c - the CTX.* commands: what ctx has and Redis has not (versions,
 * compare-and-set, recovery points, restore, history, diffs, resumable
 * watches, trackers, the active context, idle ttls, stats, online checks).
 * The protocol is /work/spec/ctx-commands.md, written out in
 * docs/protocol.md ("CTX.* commands"); the CLI speaks exactly that.
 *
 * Which thread: commands that only read, and commits that do not wait
 * (CTX.CREATE, CTX.SET, CTX.DEL, CTX.DROP use ctx_txn_commit_nowait and
 * ctx_drop_nowait, then hold the reply until the revision is durable) run
 * inline on the connection's loop. Calls that wait for an fsync (point
 * create, restore, ttl, activate with CREATE, tracker open and sync) or walk the
 * whole store (CTX.VERIFY) run on the thread pool as jobs (cmd_common.h).
 *
 * Unlike the Redis commands, CTX.* sees contexts without fields: CTX.CREATE
 * makes one, CTX.GET shows it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_common.h"
#include "core.h"

/* ---- small helpers ---------------------------------------------------------------- */

static void wrong_args(client *c, const char *name)
{
	reply_error(c, "ERR wrong number of arguments for '%s' command", name);
}

/* A NUL-terminated copy of a (label, prefix, ...) of at most cap - 1 bytes
 * without NUL bytes; false: error replied. */
static bool arg_to_cstr(client *c, const arg *a, char *out, size_t cap, const char *what)
{
	if (a->n >= cap || memchr(a->p, '\0', a->n)) {
		reply_error(c, "CTXINVALID %s is longer than %zu bytes or holds a NUL byte", what,
		            cap - 1);
		return false;
	}
	memcpy(out, a->p, a->n);
	out[a->n] = '\0';
	return true;
}

static bool arg_u64(client *c, const arg *a, uint64_t *out)
{
	if (!parse_u64(a->p, a->n, out)) {
		reply_error(c, "ERR value is not an integer or out of range");
		return false;
	}
	return true;
}

/* A map entry whose value is an integer. */
static void kv_int(client *c, const char *k, long long v)
{
	reply_cstr(c, k);
	reply_int(c, v);
}

static void reply_maybe(client *c, bool present, const void *p, size_t n)
{
	if (present)
		reply_bulk(c, p, n);
	else
		reply_null(c);
}

/* The newest version of id; error replied (CTXNOTFOUND ...) if absent. */
static ctx_state *latest_or_reply(client *c, const char *id)
{
	ctx_state *st;
	ctx_status s = ctx_get_latest(server_store(), id, &st);
	if (s != CTX_OK) {
		reply_ctx_error(c, s);
		return NULL;
	}
	client_need_durable(c, ctx_state_revision(st));
	return st;
}

/* ---- contexts --------------------------------------------------------------------------- */

/* CTX.CREATE id [field value ...]: one commit, version 1 holds the fields. */
static void cmd_create(client *c, int argc, const arg *argv)
{
	char id[CTX_ID_MAX + 1];
	if (argc % 2) {
		wrong_args(c, "ctx.create");
		return;
	}
	if (!arg_to_id(c, &argv[1], id))
		return;
	ctx_txn *t;
	ctx_status st = ctx_txn_begin_create(server_store(), id, &t);
	for (int i = 2; st == CTX_OK && i < argc; i += 2)
		if ((st = ctx_txn_put(t, argv[i].p, argv[i].n, argv[i + 1].p, argv[i + 1].n)) !=
		    CTX_OK)
			ctx_txn_abort(t);
	uint64_t rev = 0;
	if (st == CTX_OK)
		st = ctx_txn_commit_nowait(t, 0, NULL, &rev);
	if (st != CTX_OK) {
		reply_ctx_error(c, st);
		return;
	}
	client_need_durable(c, rev);
	reply_ok(c);
}

/* CTX.DROP id -> :1 dropped, :0 no such context */
static void cmd_drop(client *c, int argc, const arg *argv)
{
	char id[CTX_ID_MAX + 1];
	if (!arg_to_id(c, &argv[1], id))
		return;
	uint64_t rev = 0;
	ctx_status st = ctx_drop_nowait(server_store(), id, &rev);
	if (st == CTX_NOT_FOUND) {
		need_durable_all(c);
		reply_int(c, 0);
	} else if (st != CTX_OK) {
		reply_ctx_error(c, st);
	} else {
		client_need_durable(c, rev);
		reply_int(c, 1);
	}
}

/* CTX.LIST [PREFIX p] [AFTER id] [COUNT n] -> [next or "", [ids]] */
static void cmd_list(client *c, int argc, const arg *argv)
{
	char prefix[CTX_ID_MAX + 1] = "", after[CTX_ID_MAX + 1] = "";
	bool has_after = false;
	uint64_t count = 100;
	for (int i = 1; i < argc; i++) {
		bool more = i + 1 < argc;
		if (arg_is(&argv[i], "PREFIX") && more) {
			if (!arg_to_cstr(c, &argv[++i], prefix, sizeof(prefix), "the prefix"))
				return;
		} else if (arg_is(&argv[i], "AFTER") && more) {
			if (!arg_to_cstr(c, &argv[++i], after, sizeof(after), "the AFTER id"))
				return;
			has_after = true;
		} else if (arg_is(&argv[i], "COUNT") && more) {
			if (!arg_u64(c, &argv[++i], &count))
				return;
			if (count == 0) {
				reply_error(c, "ERR COUNT must be at least 1");
				return;
			}
		} else {
			reply_error(c, "ERR syntax error");
			return;
		}
	}
	ctx_list l;
	ctx_status st =
	    ctx_list_ids(server_store(), prefix, has_after ? after : NULL, (size_t)count, &l);
	if (st != CTX_OK) {
		reply_ctx_error(c, st);
		return;
	}
	need_durable_all(c);
	reply_array(c, 2);
	reply_cstr(c, l.count == count ? l.ids[l.count - 1] : "");
	reply_array(c, l.count);
	for (size_t i = 0; i < l.count; i++)
		reply_cstr(c, l.ids[i]);
	ctx_list_free(&l);
}

/* CTX.GET id [VERSION v] -> map: id, version, revision, created_us,
 * updated_us, keys, fields */
static void cmd_get(client *c, int argc, const arg *argv)
{
	char id[CTX_ID_MAX + 1];
	uint64_t v = 0;
	if (argc != 2 && !(argc == 4 && arg_is(&argv[2], "VERSION"))) {
		reply_error(c, "ERR syntax error");
		return;
	}
	if (!arg_to_id(c, &argv[1], id) || (argc == 4 && !arg_u64(c, &argv[3], &v)))
		return;
	ctx_state *st;
	if (argc == 4) {
		ctx_status s = ctx_get_at(server_store(), id, v, &st);
		if (s != CTX_OK) {
			reply_ctx_error(c, s);
			return;
		}
		client_need_durable(c, ctx_state_revision(st));
	} else if (!(st = latest_or_reply(c, id))) {
		return;
	}
	ctx_iter *it;
	if (ctx_iter_begin(st, &it) != CTX_OK) {
		ctx_state_release(st);
		reply_ctx_error(c, CTX_NOMEM);
		return;
	}
	size_t n = ctx_state_count(st), seen = 0;
	reply_map(c, 7);
	reply_cstr(c, "id");
	reply_cstr(c, ctx_state_id(st));
	kv_int(c, "version", (long long)ctx_state_version(st));
	kv_int(c, "revision", (long long)ctx_state_revision(st));
	kv_int(c, "created_us", (long long)ctx_state_created_us(st));
	kv_int(c, "updated_us", (long long)ctx_state_updated_us(st));
	kv_int(c, "keys", (long long)n);
	reply_cstr(c, "fields");
	reply_map(c, n);
	const void *k, *val;
	size_t kn, vn;
	while (seen < n && ctx_iter_next(it, &k, &kn, &val, &vn)) {
		reply_bulk(c, k, kn);
		reply_bulk(c, val, vn);
		seen++;
	}
	ctx_iter_free(it);
	ctx_state_release(st);
}

static void cmd_version(client *c, int argc, const arg *argv)
{
	char id[CTX_ID_MAX + 1];
	if (!arg_to_id(c, &argv[1], id))
		return;
	ctx_state *st = latest_or_reply(c, id);
	if (st)
		reply_int(c, (long long)ctx_state_version(st));
	ctx_state_release(st);
}

/* CTX.SET / CTX.DEL id [IFVERSION v] args...: one commit, guarded by v if
 * given (IFVERSION 0: the context must not exist, and is created).
 * step 2 = field value pairs (SET), 1 = fields (DEL). */
static void change_generic(client *c, int argc, const arg *argv, int step, const char *name)
{
	char id[CTX_ID_MAX + 1];
	uint64_t expect = 0;
	bool guarded = argc > 3 && arg_is(&argv[2], "IFVERSION");
	int first = guarded ? 4 : 2;
	if (argc <= first || (argc - first) % step) {
		wrong_args(c, name);
		return;
	}
	if (!arg_to_id(c, &argv[1], id) || (guarded && !arg_u64(c, &argv[3], &expect)))
		return;
	ctx_store *s = server_store();
	ctx_state *cur = NULL;
	if (ctx_get_latest(s, id, &cur) == CTX_OK && guarded && ctx_state_version(cur) != expect) {
		client_need_durable(c, ctx_state_revision(cur));
		reply_error(c, "CTXCONFLICT context is at version %" PRIu64,
		            ctx_state_version(cur));
		ctx_state_release(cur);
		return;
	}
	ctx_state_release(cur);
	ctx_txn *t;
	ctx_status st =
	    guarded && expect == 0 ? ctx_txn_begin_create(s, id, &t) : ctx_txn_begin(s, id, &t);
	if (st == CTX_NOT_FOUND && guarded) { /* dropped since: the version is gone */
		need_durable_all(c);
		reply_error(c, "CTXCONFLICT context is at version 0 (it does not exist)");
		return;
	}
	for (int i = first; st == CTX_OK && i < argc; i += step) {
		st = step == 2 ? ctx_txn_put(t, argv[i].p, argv[i].n, argv[i + 1].p, argv[i + 1].n)
		               : ctx_txn_del(t, argv[i].p, argv[i].n);
		if (st != CTX_OK)
			ctx_txn_abort(t);
	}
	uint64_t version = 0, rev = 0;
	if (st == CTX_OK)
		st = ctx_txn_commit_nowait(t, expect, &version, &rev);
	if ((st == CTX_CONFLICT || st == CTX_EXISTS) && guarded) {
		uint64_t now = 0;
		if (ctx_get_latest(s, id, &cur) == CTX_OK) {
			now = ctx_state_version(cur);
			client_need_durable(c, ctx_state_revision(cur));
			ctx_state_release(cur);
		}
		reply_error(c, "CTXCONFLICT context is at version %" PRIu64, now);
		return;
	}
	if (st != CTX_OK) {
		reply_ctx_error(c, st);
		return;
	}
	client_need_durable(c, rev);
	reply_int(c, (long long)version);
}

static void cmd_set(client *c, int argc, const arg *argv)
{
	change_generic(c, argc, argv, 2, "ctx.set");
}

static void cmd_del(client *c, int argc, const arg *argv)
{
	change_generic(c, argc, argv, 1, "ctx.del");
}

/* ---- the active context ----------------------------------------------------------------- */

static void run_use(job *j)
{
	j->st = ctx_session_activate(j->data, j->id, j->in[0] != 0);
}

static void reply_ok_job(client *c, job *j)
{
	reply_ok(c);
}

static void no_free(job *j)
{
	j->data = NULL; /* the session belongs to the connection */
}

/* CTX.USE id [CREATE]: on the pool (CREATE waits for the create's sync). */
static void cmd_use(client *c, int argc, const arg *argv)
{
	if (argc == 3 && !arg_is(&argv[2], "CREATE")) {
		reply_error(c, "ERR syntax error");
		return;
	}
	ctx_session *se = client_session(c);
	if (!se) {
		reply_ctx_error(c, CTX_NOMEM);
		return;
	}
	job *j = job_new(c);
	if (!j)
		return;
	if (!arg_to_cstr(c, &argv[1], j->id, sizeof(j->id), "the id")) {
		free(j);
		return;
	}
	j->data = se;
	j->in[0] = argc == 3;
	j->run = run_use;
	j->reply = reply_ok_job;
	j->free_data = no_free;
	job_start(c, j);
}

static void cmd_current(client *c, int argc, const arg *argv)
{
	ctx_session *se = client_session(c);
	const char *id = se ? ctx_session_current(se) : NULL;
	if (id)
		reply_cstr(c, id);
	else
		reply_null(c);
}

/* ---- points, restore, history, diff ------------------------------------------------------- */

static void reply_out0(client *c, job *j)
{
	reply_int(c, (long long)j->out[0]);
}

/* A job on context argv[1]; NULL if an error was replied. */
static job *job_for(client *c, const arg *idarg, void (*run)(job *))
{
	char id[CTX_ID_MAX + 1];
	if (!arg_to_id(c, idarg, id))
		return NULL;
	job *j = job_new(c);
	if (!j)
		return NULL;
	memcpy(j->id, id, sizeof(id));
	j->run = run;
	j->reply = reply_out0;
	return j;
}

static void run_point(job *j)
{
	j->st = ctx_point_create(server_store(), j->id, j->text[0] ? j->text : NULL, &j->out[0]);
}

/* CTX.POINT id [LABEL l] -> :pinned version */
static void cmd_point(client *c, int argc, const arg *argv)
{
	if (argc != 2 && !(argc == 4 && arg_is(&argv[2], "LABEL"))) {
		reply_error(c, "ERR syntax error");
		return;
	}
	job *j = job_for(c, &argv[1], run_point);
	if (!j)
		return;
	if (argc == 4 && !arg_to_cstr(c, &argv[3], j->text, sizeof(j->text), "the label")) {
		free(j);
		return;
	}
	job_start(c, j);
}

/* CTX.POINTS id -> array of maps: version, time_us, keys, bytes, checksum
 * (16 hex digits), label */
static void cmd_points(client *c, int argc, const arg *argv)
{
	char id[CTX_ID_MAX + 1];
	if (!arg_to_id(c, &argv[1], id))
		return;
	ctx_point *p;
	size_t n;
	ctx_status st = ctx_point_list(server_store(), id, &p, &n);
	if (st != CTX_OK) {
		reply_ctx_error(c, st);
		return;
	}
	reply_array(c, n);
	for (size_t i = 0; i < n; i++) {
		char sum[20];
		snprintf(sum, sizeof(sum), "%016" PRIx64, p[i].checksum);
		reply_map(c, 6);
		kv_int(c, "version", (long long)p[i].version);
		kv_int(c, "time_us", (long long)p[i].time_us);
		kv_int(c, "keys", (long long)p[i].keys);
		kv_int(c, "bytes", (long long)p[i].bytes);
		reply_cstr(c, "checksum");
		reply_cstr(c, sum);
		reply_cstr(c, "label");
		reply_cstr(c, p[i].label);
	}
	free(p);
}

enum { RESTORE_VERSION, RESTORE_LATEST, RESTORE_LABEL, RESTORE_AT };

static void run_restore(job *j)
{
	ctx_store *s = server_store();
	switch (j->in[0]) {
	case RESTORE_VERSION:
		j->st = ctx_restore(s, j->id, j->in[1], &j->out[0]);
		break;
	case RESTORE_LATEST:
		j->st = ctx_restore_latest(s, j->id, &j->out[0]);
		break;
	case RESTORE_LABEL:
		j->st = ctx_restore_label(s, j->id, j->text, &j->out[0]);
		break;
	default:
		j->st = ctx_restore_before(s, j->id, j->in[1], &j->out[0]);
		break;
	}
}

/* CTX.RESTORE id VERSION v | LATEST | LABEL l | AT time_us -> :new version */
static void cmd_restore(client *c, int argc, const arg *argv)
{
	int how = -1;
	if (argc == 3 && arg_is(&argv[2], "LATEST"))
		how = RESTORE_LATEST;
	else if (argc == 4 && arg_is(&argv[2], "VERSION"))
		how = RESTORE_VERSION;
	else if (argc == 4 && arg_is(&argv[2], "LABEL"))
		how = RESTORE_LABEL;
	else if (argc == 4 && arg_is(&argv[2], "AT"))
		how = RESTORE_AT;
	if (how < 0) {
		reply_error(c, "ERR syntax error: CTX.RESTORE id VERSION v | LATEST | LABEL l | "
		               "AT time_us");
		return;
	}
	job *j = job_for(c, &argv[1], run_restore);
	if (!j)
		return;
	j->in[0] = (uint64_t)how;
	bool ok = true;
	if (how == RESTORE_LABEL)
		ok = arg_to_cstr(c, &argv[3], j->text, sizeof(j->text), "the label");
	else if (how != RESTORE_LATEST)
		ok = arg_u64(c, &argv[3], &j->in[1]);
	if (!ok) {
		free(j);
		return;
	}
	job_start(c, j);
}

/* CTX.HISTORY id -> array of maps: version, revision, time_us,
 * keys_changed, pinned */
static void cmd_history(client *c, int argc, const arg *argv)
{
	char id[CTX_ID_MAX + 1];
	if (!arg_to_id(c, &argv[1], id))
		return;
	ctx_history_entry *h;
	size_t n;
	ctx_status st = ctx_history(server_store(), id, &h, &n);
	if (st != CTX_OK) {
		reply_ctx_error(c, st);
		return;
	}
	reply_array(c, n);
	for (size_t i = 0; i < n; i++) {
		client_need_durable(c, h[i].revision);
		reply_map(c, 5);
		kv_int(c, "version", (long long)h[i].version);
		kv_int(c, "revision", (long long)h[i].revision);
		kv_int(c, "time_us", (long long)h[i].time_us);
		kv_int(c, "keys_changed", (long long)h[i].keys_changed);
		kv_int(c, "pinned", h[i].pinned);
	}
	free(h);
}

/* CTX.DIFF id from to -> array of [kind, field, old|null, new|null] */
static void cmd_diff(client *c, int argc, const arg *argv)
{
	char id[CTX_ID_MAX + 1];
	uint64_t from, to;
	if (!arg_to_id(c, &argv[1], id) || !arg_u64(c, &argv[2], &from) ||
	    !arg_u64(c, &argv[3], &to))
		return;
	ctx_store *s = server_store();
	ctx_state *a = NULL, *b = NULL;
	ctx_diff *d = NULL;
	ctx_status st = ctx_get_at(s, id, from, &a);
	if (st == CTX_OK)
		st = ctx_get_at(s, id, to, &b);
	if (st == CTX_OK)
		st = ctx_diff_states(a, b, &d);
	if (st != CTX_OK) {
		reply_ctx_error(c, st);
	} else {
		static const char *const kinds[] = {"added", "changed", "removed"};
		size_t n = ctx_diff_count(d);
		client_need_durable(c, ctx_state_revision(a) > ctx_state_revision(b)
		                           ? ctx_state_revision(a)
		                           : ctx_state_revision(b));
		reply_array(c, n);
		for (size_t i = 0; i < n; i++) {
			const ctx_change *ch = ctx_diff_get(d, i);
			reply_array(c, 4);
			reply_cstr(c, kinds[ch->kind]);
			reply_bulk(c, ch->key, ch->klen);
			reply_maybe(c, ch->kind != CTX_ADDED, ch->old_value, ch->old_len);
			reply_maybe(c, ch->kind != CTX_REMOVED, ch->new_value, ch->new_len);
		}
	}
	ctx_diff_free(d);
	ctx_state_release(a);
	ctx_state_release(b);
}

/* ---- watches ----------------------------------------------------------------------------- */

static const char *event_kind(ctx_event_kind k)
{
	switch (k) {
	case CTX_EVENT_CREATED:
		return "created";
	case CTX_EVENT_COMMITTED:
		return "committed";
	case CTX_EVENT_RESTORED:
		return "restored";
	case CTX_EVENT_DROPPED:
		return "dropped";
	case CTX_EVENT_EXPIRED:
		return "expired";
	case CTX_EVENT_LAGGED:
		break;
	}
	return "lagged";
}

/* One event as a push message: ["ctx.event", kind, revision, id, version,
 * [fields]], or after a lag ["ctx.lost", first, 0, "FROM first"] (the watch
 * then delivers nothing more: repeat the CTX.WATCH with that FROM). */
static void on_event(client *c, const ctx_event *e)
{
	if (e->kind == CTX_EVENT_LAGGED) {
		char hint[48];
		snprintf(hint, sizeof(hint), "FROM %" PRIu64, e->resume_from);
		reply_push(c, 4);
		reply_cstr(c, "ctx.lost");
		reply_int(c, (long long)e->resume_from);
		reply_int(c, 0);
		reply_cstr(c, hint);
		return;
	}
	reply_push(c, 6);
	reply_cstr(c, "ctx.event");
	reply_cstr(c, event_kind(e->kind));
	reply_int(c, (long long)e->revision);
	reply_cstr(c, e->id);
	reply_int(c, (long long)e->version);
	reply_array(c, e->nkeys);
	for (size_t i = 0; i < e->nkeys; i++)
		reply_bulk(c, e->keys[i], e->klens[i]);
}

/* CTX.WATCH id|PREFIX prefix [FROM revision] */
static void cmd_watch(client *c, int argc, const arg *argv)
{
	char target[CTX_ID_MAX + 1];
	bool prefix = argc >= 3 && arg_is(&argv[1], "PREFIX");
	int next = prefix ? 3 : 2;
	uint64_t from = 0;
	if (argc != next && !(argc == next + 2 && arg_is(&argv[next], "FROM"))) {
		reply_error(c, "ERR syntax error: CTX.WATCH id|PREFIX prefix [FROM revision]");
		return;
	}
	if (prefix ? !arg_to_cstr(c, &argv[2], target, sizeof(target), "the prefix")
	           : !arg_to_id(c, &argv[1], target))
		return;
	if (argc == next + 2 && !arg_u64(c, &argv[next + 1], &from))
		return;
	ctx_watch *w;
	ctx_status st = ctx_watch_open(server_store(), target, prefix, from, &w);
	if (st != CTX_OK) {
		reply_ctx_error(c, st);
		return;
	}
	client_stop_watch(c); /* one watch per connection: this one replaces it */
	reply_ok(c);
	client_start_watch(c, w, on_event);
}

static void cmd_unwatch(client *c, int argc, const arg *argv)
{
	client_stop_watch(c);
	reply_ok(c);
}

/* ---- trackers ------------------------------------------------------------------------------ */

/* The connection's tracker; NULL with an error replied if none. */
static ctx_tracker *tracker_or_reply(client *c)
{
	ctx_tracker **slot = client_tracker(c);
	if (!slot || !*slot) {
		reply_error(c, "ERR no tracker on this connection: CTX.TRACK id first");
		return NULL;
	}
	return *slot;
}

/* job: in[0] = strategy, in[1] = interval (ms), in[2] = the revision to
 * wait for, text[0] = 1 for POINTS; data = the tracker opened. */
static void run_track(job *j)
{
	ctx_store *s = server_store();
	/* ctx_tracker_open bases the tracker on ctx_get's version, the newest
	 * durable one, where the connection's reads see the newest decided one:
	 * a context it created or a field it set in the request before would be
	 * missing from the tracker (-CTXNOTFOUND, an old CTX.TGET). So wait
	 * until that revision is durable (at most one fsync under durability
	 * always; under always the version is visible by then: the log
	 * publishes before it raises the durable revision) and, under batch
	 * (where the durable revision is the decided one), until ctx_get shows
	 * it. A failed log ends the wait with its CTX_IO. */
	struct timespec ms = {0, 1000000};
	uint64_t d;
	while ((j->st = ctx_durable_revision(s, &d)) == CTX_OK && d < j->in[2])
		nanosleep(&ms, NULL);
	if (j->st != CTX_OK)
		return;
	ctx_state *st;
	while (ctx_get(s, j->id, &st) == CTX_OK) {
		bool shown = ctx_state_revision(st) >= j->in[2];
		ctx_state_release(st);
		if (shown)
			break;
		nanosleep(&ms, NULL);
	}
	ctx_tracker_options o = {(ctx_merge_strategy)j->in[0], NULL, NULL, (unsigned)j->in[1],
	                         j->text[0] != 0};
	ctx_tracker *t;
	if ((j->st = ctx_tracker_open(s, j->id, &o, &t)) == CTX_OK)
		j->data = t;
}

static void reply_track(client *c, job *j)
{
	ctx_tracker **slot = client_tracker(c);
	ctx_tracker_close(*slot);
	*slot = j->data;
	j->data = NULL;
	reply_ok(c);
}

static void free_track(job *j)
{
	ctx_tracker_close(j->data); /* the connection closed meanwhile */
}

/* CTX.TRACK id [STRATEGY latest|oldest|manual] [INTERVAL ms] [POINTS]: on
 * the pool (it may wait for an fsync, run_track). */
static void cmd_track(client *c, int argc, const arg *argv)
{
	ctx_merge_strategy strategy = CTX_MERGE_LATEST;
	uint64_t interval = 0;
	bool points = false;
	for (int i = 2; i < argc; i++) {
		bool more = i + 1 < argc;
		if (arg_is(&argv[i], "STRATEGY") && more) {
			const arg *s = &argv[++i];
			if (arg_is(s, "latest"))
				strategy = CTX_MERGE_LATEST;
			else if (arg_is(s, "oldest"))
				strategy = CTX_MERGE_OLDEST;
			else if (arg_is(s, "manual"))
				strategy = CTX_MERGE_MANUAL;
			else {
				reply_error(c, "ERR STRATEGY is latest, oldest or manual");
				return;
			}
		} else if (arg_is(&argv[i], "INTERVAL") && more) {
			if (!arg_u64(c, &argv[++i], &interval))
				return;
			if (interval > UINT32_MAX) {
				reply_error(c, "ERR INTERVAL is out of range");
				return;
			}
		} else if (arg_is(&argv[i], "POINTS")) {
			points = true;
		} else {
			reply_error(c, "ERR syntax error");
			return;
		}
	}
	job *j = job_for(c, &argv[1], run_track);
	if (!j)
		return;
	/* What the connection's reads would show: the newest decided version,
	 * or (absent: its drop may be decided) every revision handed out. */
	ctx_state *st;
	if (ctx_get_latest(server_store(), j->id, &st) == CTX_OK) {
		j->in[2] = ctx_state_revision(st);
		ctx_state_release(st);
	} else {
		ctx_stats stats;
		ctx_get_stats(server_store(), &stats);
		j->in[2] = stats.revision;
	}
	j->in[0] = (uint64_t)strategy;
	j->in[1] = interval;
	j->text[0] = points;
	j->reply = reply_track;
	j->free_data = free_track;
	job_start(c, j);
}

/* Whether an edit of key (extra bytes) may join t's unsynced edits; if not,
 * the error is replied. They are the connection's to sync, and until then
 * the server's memory: bounded as a transaction's queue is, by
 * client-query-buffer-limit, but refused (the edits kept, the connection
 * open) rather than closed, since CTX.SYNC empties them. The edit replaces
 * the key's edit, if any: what that holds is given back (round 24: a tracker
 * at the limit refused to shrink a big value, CTX.TSET k small, or to
 * delete it, the limit then reached only by CTX.SYNC). */
static bool tracker_room(client *c, ctx_tracker *t, const arg *key, size_t extra)
{
	size_t limit =
	    atomic_load_explicit(&srv.cfg.client_query_buffer_limit, memory_order_relaxed);
	if (!limit)
		return true;
	size_t held = ctx_tracker_pending_bytes(t);
	size_t old = ctx_tracker_edit_bytes(t, key->p, key->n);
	if ((old < held ? held - old : 0) + extra <= limit)
		return true;
	reply_error(c,
	            "CTXLIMIT the tracker's unsynced edits hold %zu bytes, and this edit would "
	            "pass client-query-buffer-limit (%zu): CTX.SYNC first",
	            held, limit);
	return false;
}

static void cmd_tset(client *c, int argc, const arg *argv)
{
	ctx_tracker *t = tracker_or_reply(c);
	if (!t || !tracker_room(c, t, &argv[1], argv[1].n + argv[2].n))
		return;
	ctx_status st = ctx_tracker_put(t, argv[1].p, argv[1].n, argv[2].p, argv[2].n);
	if (st != CTX_OK)
		reply_ctx_error(c, st);
	else
		reply_ok(c);
}

static void cmd_tdel(client *c, int argc, const arg *argv)
{
	ctx_tracker *t = tracker_or_reply(c);
	if (!t || !tracker_room(c, t, &argv[1], argv[1].n))
		return;
	ctx_status st = ctx_tracker_del(t, argv[1].p, argv[1].n);
	if (st != CTX_OK)
		reply_ctx_error(c, st);
	else
		reply_ok(c);
}

static void cmd_tget(client *c, int argc, const arg *argv)
{
	ctx_tracker *t = tracker_or_reply(c);
	if (!t)
		return;
	void *v;
	size_t vn;
	ctx_status st = ctx_tracker_get(t, argv[1].p, argv[1].n, &v, &vn);
	if (st == CTX_NOT_FOUND) {
		reply_null(c);
	} else if (st != CTX_OK) {
		reply_ctx_error(c, st);
	} else {
		reply_bulk(c, v, vn);
		free(v);
	}
}

/* job: data = the tracker; out[0] = version, out[1] = 1 if manual
 * conflicts are waiting (nothing committed). */
static void run_sync(job *j)
{
	j->st = ctx_tracker_sync(j->data, &j->out[0]);
	const ctx_conflict *cf;
	if (j->st == CTX_CONFLICT && ctx_tracker_conflicts(j->data, &cf) > 0) {
		j->st = CTX_OK;
		j->out[1] = 1;
	}
}

static void reply_merge_value(client *c, const char *name, const ctx_merge_value *v)
{
	reply_cstr(c, name);
	reply_maybe(c, v->present, v->value, v->len);
}

static void reply_sync(client *c, job *j)
{
	if (!j->out[1]) {
		reply_int(c, (long long)j->out[0]);
		return;
	}
	const ctx_conflict *cf;
	size_t n = ctx_tracker_conflicts(j->data, &cf);
	reply_array(c, n);
	for (size_t i = 0; i < n; i++) {
		reply_map(c, 4);
		reply_cstr(c, "field");
		reply_bulk(c, cf[i].key, cf[i].klen);
		reply_merge_value(c, "base", &cf[i].base);
		reply_merge_value(c, "local", &cf[i].local);
		reply_merge_value(c, "current", &cf[i].current);
	}
}

/* CTX.SYNC -> :version, or an array of conflicts (manual strategy) */
static void cmd_sync(client *c, int argc, const arg *argv)
{
	ctx_tracker *t = tracker_or_reply(c);
	if (!t)
		return;
	job *j = job_new(c);
	if (!j)
		return;
	j->data = t;
	j->run = run_sync;
	j->reply = reply_sync;
	j->free_data = no_free;
	job_start(c, j);
}

/* CTX.RESOLVE field LOCAL|CURRENT */
static void cmd_resolve(client *c, int argc, const arg *argv)
{
	bool local = arg_is(&argv[2], "LOCAL");
	if (!local && !arg_is(&argv[2], "CURRENT")) {
		reply_error(c, "ERR syntax error: CTX.RESOLVE field LOCAL|CURRENT");
		return;
	}
	ctx_tracker *t = tracker_or_reply(c);
	if (!t)
		return;
	ctx_status st = ctx_tracker_resolve(t, argv[1].p, argv[1].n, local);
	if (st != CTX_OK)
		reply_ctx_error(c, st);
	else
		reply_ok(c);
}

static void cmd_untrack(client *c, int argc, const arg *argv)
{
	ctx_tracker **slot = client_tracker(c);
	if (slot) {
		ctx_tracker_close(*slot);
		*slot = NULL;
	}
	reply_ok(c);
}

/* ---- expiry, stats, verify ------------------------------------------------------------------ */

static void run_expire(job *j)
{
	j->st = ctx_set_ttl(server_store(), j->id, j->in[0]);
	j->out[0] = j->st == CTX_OK;
	if (j->st == CTX_NOT_FOUND)
		j->st = CTX_OK;
}

/* CTX.EXPIRE id ms -> :1 / :0 (no such context); ms 0 removes the ttl */
static void cmd_expire(client *c, int argc, const arg *argv)
{
	uint64_t ms;
	if (!arg_u64(c, &argv[2], &ms))
		return;
	job *j = job_for(c, &argv[1], run_expire);
	if (!j)
		return;
	j->in[0] = ms;
	job_start(c, j);
}

/* CTX.STATS -> map */
static void cmd_stats(client *c, int argc, const arg *argv)
{
	ctx_stats s;
	uint64_t durable = 0;
	ctx_get_stats(server_store(), &s);
	ctx_durable_revision(server_store(), &durable);
	reply_map(c, 6);
	kv_int(c, "contexts", (long long)s.contexts);
	kv_int(c, "revision", (long long)s.revision);
	kv_int(c, "durable_revision", (long long)durable);
	kv_int(c, "log_syncs", (long long)s.log_syncs);
	kv_int(c, "checkpoints", (long long)s.checkpoints);
	kv_int(c, "checkpoint_revision", (long long)s.checkpoint_revision);
}

typedef struct verify_result {
	uint64_t contexts, keys, bytes, points, versions, problems, revision, durable;
	int io_errno;
	char first[200];
} verify_result;

static void verify_problem(verify_result *r, const char *fmt, const char *id, uint64_t a,
                           uint64_t b)
{
	if (!r->problems++)
		snprintf(r->first, sizeof(r->first), fmt, id, a, b);
}

/* Walk one version: its pairs must number ctx_state_count and weigh
 * ctx_state_bytes, and agree with what the caller expects (keys, bytes). */
static void verify_version(verify_result *r, const char *id, uint64_t version, size_t keys,
                           size_t bytes)
{
	ctx_state *st;
	ctx_iter *it;
	if (ctx_get_at(server_store(), id, version, &st) != CTX_OK)
		return; /* dropped or moved on meanwhile */
	r->versions++;
	if (ctx_iter_begin(st, &it) != CTX_OK) {
		ctx_state_release(st);
		return;
	}
	const void *k, *v;
	size_t kn, vn, n = 0, total = 0;
	while (ctx_iter_next(it, &k, &kn, &v, &vn)) {
		n++;
		total += kn + vn;
	}
	ctx_iter_free(it);
	if (n != ctx_state_count(st) || n != keys)
		verify_problem(r, "%s: version %" PRIu64 " iterates %" PRIu64 " keys", id, version,
		               n);
	if (total != ctx_state_bytes(st) || total != bytes)
		verify_problem(r, "%s: version %" PRIu64 " iterates %" PRIu64 " bytes", id, version,
		               total);
	ctx_state_release(st);
}

static void run_verify(job *j)
{
	verify_result *r = j->data;
	ctx_store *s = server_store();
	ctx_context_status *v;
	size_t n;
	ctx_stats stats;
	ctx_get_stats(s, &stats);
	if ((j->st = ctx_status_view(s, &v, &n)) != CTX_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		r->contexts++;
		r->keys += v[i].keys;
		r->bytes += v[i].bytes;
		verify_version(r, v[i].id, v[i].version, v[i].keys, v[i].bytes);
		ctx_point *p;
		size_t np;
		if (ctx_point_list(s, v[i].id, &p, &np) != CTX_OK)
			continue;
		for (size_t k = 0; k < np; k++) {
			r->points++;
			verify_version(r, v[i].id, p[k].version, p[k].keys, p[k].bytes);
		}
		free(p);
	}
	free(v);
	r->revision = stats.revision;
	if (ctx_durable_revision(s, &r->durable) != CTX_OK)
		verify_problem(
		    r, "%s: the log failed (durable revision %" PRIu64 ", errno %" PRIu64 ")",
		    "store", r->durable, (uint64_t)stats.io_errno);
	r->io_errno = stats.io_errno;
}

static void reply_verify(client *c, job *j)
{
	verify_result *r = j->data;
	reply_map(c, 10);
	reply_cstr(c, "result");
	reply_cstr(c, r->problems ? r->first : "ok");
	kv_int(c, "problems", (long long)r->problems);
	kv_int(c, "contexts", (long long)r->contexts);
	kv_int(c, "keys", (long long)r->keys);
	kv_int(c, "bytes", (long long)r->bytes);
	kv_int(c, "points", (long long)r->points);
	kv_int(c, "versions_checked", (long long)r->versions);
	kv_int(c, "revision", (long long)r->revision);
	kv_int(c, "durable_revision", (long long)r->durable);
	kv_int(c, "io_errno", r->io_errno);
}

static void free_data(job *j)
{
	free(j->data);
}

/* CTX.VERIFY -> map of online checks (see docs/protocol.md) */
static void cmd_verify(client *c, int argc, const arg *argv)
{
	job *j = job_new(c);
	if (!j)
		return;
	if (!(j->data = calloc(1, sizeof(verify_result)))) {
		free(j);
		reply_ctx_error(c, CTX_NOMEM);
		return;
	}
	j->run = run_verify;
	j->reply = reply_verify;
	j->free_data = free_data;
	job_start(c, j);
}

/* ---- the table ------------------------------------------------------------------------------ */

#define W  (CMD_WRITE)
#define R  (CMD_READONLY)
#define BL (CMD_BLOCKING)
/* Writes that commit on their own (not through the client's write batch):
 * inside EXEC they would escape its one commit (applied even when a later
 * queued command fails, or ahead of the batch), so MULTI refuses them. */
#define WN (CMD_WRITE | CMD_NOMULTI)

const command ctx_commands[] = {
    {"CTX.CREATE", cmd_create, -2, WN, 1, "Create a context, with fields, as version 1", "ctx"},
    {"CTX.DROP", cmd_drop, 2, WN, 1, "Drop a context", "ctx"},
    {"CTX.LIST", cmd_list, -1, R, 0, "List context ids (PREFIX, AFTER, COUNT)", "ctx"},
    {"CTX.GET", cmd_get, -2, R, 1, "A context's version, times and fields", "ctx"},
    {"CTX.VERSION", cmd_version, 2, R, 1, "A context's newest version", "ctx"},
    {"CTX.SET", cmd_set, -4, WN, 1, "Set fields as one commit [IFVERSION v]", "ctx"},
    {"CTX.DEL", cmd_del, -3, WN, 1, "Delete fields as one commit [IFVERSION v]", "ctx"},
    {"CTX.USE", cmd_use, -2, BL, 0, "Make a context the connection's active one", "ctx"},
    {"CTX.CURRENT", cmd_current, 1, 0, 0, "The connection's active context", "ctx"},
    {"CTX.POINT", cmd_point, -2, W | BL, 1, "Make a recovery point [LABEL l]", "ctx"},
    {"CTX.POINTS", cmd_points, 2, R, 1, "List recovery points", "ctx"},
    {"CTX.RESTORE", cmd_restore, -3, W | BL, 1, "Restore a point or an older version", "ctx"},
    {"CTX.HISTORY", cmd_history, 2, R, 1, "The kept versions", "ctx"},
    {"CTX.DIFF", cmd_diff, 4, R, 1, "Fields changed between two versions", "ctx"},
    {"CTX.WATCH", cmd_watch, -2, CMD_NOMULTI | CMD_PUBSUB, 0,
     "Stream changes as push messages [FROM revision]", "ctx"},
    {"CTX.UNWATCH", cmd_unwatch, 1, CMD_NOMULTI | CMD_PUBSUB, 0, "Stop streaming", "ctx"},
    {"CTX.TRACK", cmd_track, -2, CMD_NOMULTI | BL, 1, "Open the connection's tracker", "ctx"},
    {"CTX.TSET", cmd_tset, 3, CMD_NOMULTI, 0, "Set a field in the tracker", "ctx"},
    {"CTX.TDEL", cmd_tdel, 2, CMD_NOMULTI, 0, "Delete a field in the tracker", "ctx"},
    {"CTX.TGET", cmd_tget, 2, CMD_NOMULTI, 0, "Read a field of the tracker", "ctx"},
    {"CTX.SYNC", cmd_sync, 1, CMD_NOMULTI | BL, 0, "Merge and commit the tracker", "ctx"},
    {"CTX.RESOLVE", cmd_resolve, 3, CMD_NOMULTI, 0, "Resolve a manual conflict", "ctx"},
    {"CTX.UNTRACK", cmd_untrack, 1, CMD_NOMULTI, 0, "Close the tracker", "ctx"},
    {"CTX.EXPIRE", cmd_expire, 3, W | BL, 1, "Set an idle ttl in ms (0 = none)", "ctx"},
    {"CTX.STATS", cmd_stats, 1, 0, 0, "Store statistics", "ctx"},
    {"CTX.VERIFY", cmd_verify, 1, BL, 0, "The store's online checks", "ctx"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};
