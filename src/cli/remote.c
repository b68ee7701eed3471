/*
 * remote.c - the commands that talk to a running ctxd (the client side of
 * /work/spec/ctx-commands.md, docs/cli.md).
 *
 * One hiredis connection per invocation, RESP2 (the hiredis of Debian 12,
 * 0.14, reads only RESP2): a "map" of the contract arrives as a flat array of
 * alternating names and values, a null as a null bulk, and a watch event as
 * an array like a SUBSCRIBE message. map_get reads both that and, with a
 * hiredis that knows RESP3, a real map.
 *
 * Errors from the server map to exit codes by their first word: CTXNOTFOUND
 * 1, CTXCONFLICT and CTXEXISTS 4, NOAUTH/WRONGPASS 3, anything else 1. A
 * connection that cannot be made or breaks is 3.
 *
 * Most commands have one shape: build the arguments, send them (request),
 * check that the reply has the shape the contract gives (a wrong one is
 * "unexpected reply", exit 1), and print it with a show_* function. Lists of
 * records print through rows, which writes each member once for both forms:
 * a JSON array of objects with --json, else a table with the same columns.
 *
 * watch blocks SIGINT and SIGTERM and waits in ppoll with them unblocked, so
 * Ctrl-C ends the wait at once (no race between checking a flag and
 * sleeping) and ctx exits 0 after flushing what it printed.
 */
#include <errno.h>
#include <hiredis.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "cli.h"
#include "json.h"

/* ---- arguments and calls -------------------------------------------- */

#define ARGS_MAX 1024

typedef struct args {
	int n;
	const char *v[ARGS_MAX];
	size_t len[ARGS_MAX];
	char num[8][24]; /* storage for numbers */
	int nums;
} args;

static void arg(args *a, const char *s)
{
	if (a->n < ARGS_MAX) {
		a->v[a->n] = s;
		a->len[a->n++] = strlen(s);
	}
}

static void arg_u64(args *a, uint64_t x)
{
	if (a->nums < 8) {
		snprintf(a->num[a->nums], sizeof(a->num[0]), "%" PRIu64, x);
		arg(a, a->num[a->nums++]);
	}
}

static bool args_fit(cli *c, int extra)
{
	if (c->argc + extra <= ARGS_MAX)
		return true;
	cli_error("too many arguments (at most %d)", ARGS_MAX - extra);
	return false;
}

static int error_exit(const char *err)
{
	if (strncmp(err, "CTXNOTFOUND", 11) == 0)
		return EXIT_FAIL;
	if (strncmp(err, "CTXCONFLICT", 11) == 0 || strncmp(err, "CTXEXISTS", 9) == 0)
		return EXIT_CONFLICT;
	if (strncmp(err, "NOAUTH", 6) == 0 || strncmp(err, "WRONGPASS", 9) == 0)
		return EXIT_CONNECT;
	return EXIT_FAIL;
}

/* --timeout of this invocation, for the message of a reply that did not come. */
static uint64_t reply_timeout;

/* Why the connection failed: hiredis' text, or the timeout's when a read
 * or write ran out of --timeout (the socket timeout makes it EAGAIN). */
static const char *lost_why(const redisContext *rc)
{
	static char why[96];
	if (rc->err == REDIS_ERR_IO && reply_timeout &&
	    (strcmp(rc->errstr, strerror(EAGAIN)) == 0 ||
	     strcmp(rc->errstr, strerror(EWOULDBLOCK)) == 0)) {
		snprintf(why, sizeof(why), "no reply in %" PRIu64 " s (--timeout)", reply_timeout);
		return why;
	}
	return rc->errstr;
}

static int connect_server(cli *c, redisContext **out)
{
	/* Connecting waits 5 s at most, or less when --timeout says so. */
	struct timeval tv = {c->timeout && c->timeout < 5 ? (time_t)c->timeout : 5, 0};
	redisContext *rc = redisConnectWithTimeout(c->host, c->port, tv);
	if (!rc || rc->err) {
		cli_error("cannot connect to ctxd at %s:%d: %s", c->host, c->port,
		          rc ? rc->errstr : "out of memory");
		redisFree(rc);
		return EXIT_CONNECT;
	}
	/* Each reply within --timeout: a server that accepts and never answers
	 * (stopped, or not ctxd) is an error, not a hang. redisConnectWithTimeout
	 * set the connect's limit on the socket: replaced, or cleared with 0. */
	reply_timeout = c->timeout;
	struct timeval rtv = {(time_t)c->timeout, 0};
	if (redisSetTimeout(rc, rtv) != REDIS_OK) {
		cli_error("cannot set the timeout of the connection to %s:%d: %s", c->host, c->port,
		          rc->errstr);
		redisFree(rc);
		return EXIT_CONNECT;
	}
	if (c->password) {
		redisReply *r = redisCommand(rc, "AUTH %s", c->password);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			cli_error("authentication failed at %s:%d: %s", c->host, c->port,
			          r ? r->str : lost_why(rc));
			freeReplyObject(r);
			redisFree(rc);
			return EXIT_CONNECT;
		}
		freeReplyObject(r);
	}
	*out = rc;
	return EXIT_OK;
}

/* Send a and read its reply into *out. A server error is printed and turned
 * into an exit code (and *out is NULL). */
static int call(redisContext *rc, const args *a, redisReply **out)
{
	*out = NULL;
	redisReply *r = redisCommandArgv(rc, a->n, (const char **)a->v, a->len);
	if (!r) {
		cli_error("connection to ctxd lost: %s", lost_why(rc));
		return EXIT_CONNECT;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		cli_error("%s", r->str);
		int code = error_exit(r->str);
		freeReplyObject(r);
		return code;
	}
	*out = r;
	return EXIT_OK;
}

/* Connect, send a, return the reply (and the connection, closed by done). */
typedef struct session {
	redisContext *rc;
	redisReply *r;
} session;

static int run(cli *c, const args *a, session *s)
{
	s->rc = NULL;
	s->r = NULL;
	int code = connect_server(c, &s->rc);
	if (code == EXIT_OK)
		code = call(s->rc, a, &s->r);
	return code;
}

static void done(session *s)
{
	freeReplyObject(s->r);
	redisFree(s->rc);
}

static int bad_reply(const char *what)
{
	cli_error("unexpected reply to %s from the server", what);
	return EXIT_FAIL;
}

/* ---- reading replies ------------------------------------------------ */

static bool is_map(const redisReply *r)
{
#ifdef REDIS_REPLY_MAP
	if (r->type == REDIS_REPLY_MAP)
		return true;
#endif
	return r->type == REDIS_REPLY_ARRAY && r->elements % 2 == 0;
}

static bool is_text(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

static bool is_integer(const redisReply *r)
{
	return r->type == REDIS_REPLY_INTEGER;
}

static bool is_array(const redisReply *r)
{
	return r->type == REDIS_REPLY_ARRAY;
}

/* The value named name in the map r, or NULL. */
static const redisReply *map_get(const redisReply *r, const char *name)
{
	if (!r || !is_map(r))
		return NULL;
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i];
		if (is_text(k) && k->len == strlen(name) && memcmp(k->str, name, k->len) == 0)
			return r->element[i + 1];
	}
	return NULL;
}

/* An integer, or a number as text; 0 for anything else. */
static uint64_t reply_u64(const redisReply *r)
{
	uint64_t x = 0;
	if (r->type == REDIS_REPLY_INTEGER)
		return (uint64_t)r->integer;
	if (is_text(r))
		cli_parse_u64(r->str, &x);
	return x;
}

static uint64_t map_u64(const redisReply *r, const char *name)
{
	const redisReply *v = map_get(r, name);
	return v ? reply_u64(v) : 0;
}

/* Any reply as JSON: maps are not told apart from arrays here (callers that
 * know a map use jw_map). */
static void jw_reply(jw *w, const redisReply *r)
{
	switch (r->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
		jw_bytes(w, r->str, r->len);
		break;
	case REDIS_REPLY_INTEGER:
		jw_i64(w, r->integer);
		break;
	case REDIS_REPLY_ARRAY:
		jw_arr_begin(w);
		for (size_t i = 0; i < r->elements; i++)
			jw_reply(w, r->element[i]);
		jw_arr_end(w);
		break;
	default:
		jw_null(w);
	}
}

/* A map reply as a JSON object; values with jw_reply. */
static void jw_map(jw *w, const redisReply *r)
{
	jw_obj_begin(w);
	for (size_t i = 0; r && is_map(r) && i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i];
		if (!is_text(k) || !utf8_valid(k->str, k->len))
			continue;
		jw_keyn(w, k->str, k->len);
		jw_reply(w, r->element[i + 1]);
	}
	jw_obj_end(w);
}

static void jw_text_or_null(jw *w, const redisReply *v)
{
	if (v && is_text(v))
		jw_bytes(w, v->str, v->len);
	else
		jw_null(w);
}

/* A reply element as text for a table cell. */
static void cell_reply(table *t, const redisReply *r)
{
	if (!r || r->type == REDIS_REPLY_NIL)
		table_cell(t, "(none)");
	else if (r->type == REDIS_REPLY_INTEGER)
		table_cell_u64(t, (uint64_t)r->integer);
	else if (is_text(r))
		table_cell_bytes(t, r->str, r->len);
	else
		table_cell(t, "(array)");
}

/* ---- requests -------------------------------------------------------- */

/* run, then a reply that does not have the shape `shape` says is an error. */
static int run_shaped(cli *c, const args *a, session *s, bool (*shape)(const redisReply *))
{
	int code = run(c, a, s);
	if (code == EXIT_OK && !shape(s->r))
		code = bad_reply(a->v[0]);
	return code;
}

/* The common command: send a, check the reply's shape, print the reply with
 * show (which returns the exit code), close. */
static int request(cli *c, const args *a, bool (*shape)(const redisReply *),
                   int (*show)(cli *c, const redisReply *r))
{
	session s;
	int code = run_shaped(c, a, &s, shape);
	if (code == EXIT_OK)
		code = show(c, s.r);
	done(&s);
	return code;
}

/* The arguments of a command on the context c->argv[0]. */
static void args_on_id(args *a, const char *command, const cli *c)
{
	arg(a, command);
	arg(a, c->argv[0]);
}

/* A JSON object document that begins with "id": id. */
static jw *jdoc_begin_id(jdoc *d, const char *id)
{
	jw *w = jdoc_begin(d);
	jw_obj_begin(w);
	jw_key(w, "id");
	jw_bytes(w, id, strlen(id));
	return w;
}

/* A map reply: a JSON object, or a table of its names (under name_head)
 * and values. */
static void print_map(const cli *c, const redisReply *r, const char *name_head)
{
	if (c->json) {
		jdoc d;
		jw_map(jdoc_begin(&d), r);
		jdoc_print(&d);
		return;
	}
	const char *const head[] = {name_head, "VALUE"};
	table t;
	table_init(&t, 2, head);
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		cell_reply(&t, r->element[i]);
		cell_reply(&t, r->element[i + 1]);
	}
	table_print(&t);
	table_free(&t);
}

/* ---- rows: a JSON array of objects, or a table -------------------------- */

/* Records printed as a JSON array of objects (--json) or as a table whose
 * columns are the objects' members, so that a command names each member once:
 * rows_begin, then per record row_begin, a col_* per member in the order of
 * the table's header, row_end; then rows_print. */
typedef struct rows {
	bool json;
	jdoc d;
	table t;
} rows;

static void rows_begin(rows *o, const cli *c, size_t ncols, const char *const *head)
{
	o->json = c->json;
	if (o->json)
		jw_arr_begin(jdoc_begin(&o->d));
	else
		table_init(&o->t, ncols, head);
}

static void row_begin(rows *o)
{
	if (o->json)
		jw_obj_begin(&o->d.w);
}

static void row_end(rows *o)
{
	if (o->json)
		jw_obj_end(&o->d.w);
}

static void rows_print(rows *o)
{
	if (o->json) {
		jw_arr_end(&o->d.w);
		jdoc_print(&o->d);
	} else {
		table_print(&o->t);
		table_free(&o->t);
	}
}

/* A member's name, for JSON: true if the value goes to JSON, false if to a
 * table cell. */
static bool col(rows *o, const char *name)
{
	if (o->json)
		jw_key(&o->d.w, name);
	return o->json;
}

static void col_u64(rows *o, const char *name, uint64_t v)
{
	if (col(o, name))
		jw_u64(&o->d.w, v);
	else
		table_cell_u64(&o->t, v);
}

/* µs since 1970: a number in JSON, a date in a table. */
static void col_time(rows *o, const char *name, uint64_t us)
{
	if (col(o, name))
		jw_u64(&o->d.w, us);
	else
		table_cell_time(&o->t, us);
}

static void col_str(rows *o, const char *name, const char *s)
{
	if (col(o, name))
		jw_str(&o->d.w, s);
	else
		table_cell(&o->t, s);
}

static void col_bytes(rows *o, const char *name, const void *p, size_t n)
{
	if (col(o, name))
		jw_bytes(&o->d.w, p, n);
	else
		table_cell_bytes(&o->t, p, n);
}

/* true/false in JSON, yes/no in a table. */
static void col_bool(rows *o, const char *name, bool v)
{
	if (col(o, name))
		jw_bool(&o->d.w, v);
	else
		table_cell(&o->t, v ? "yes" : "no");
}

/* Text or null in JSON; in a table as cell_reply shows it. */
static void col_reply(rows *o, const char *name, const redisReply *r)
{
	if (col(o, name))
		jw_text_or_null(&o->d.w, r);
	else
		cell_reply(&o->t, r);
}

/* ---- simple commands ------------------------------------------------ */

int cmd_ping(cli *c)
{
	args a = {0};
	arg(&a, "PING");
	session s;
	uint64_t t0 = cli_now_us();
	int code = run_shaped(c, &a, &s, is_text);
	uint64_t t1 = cli_now_us();
	if (code == EXIT_OK && c->json) {
		jdoc d;
		jw *w = jdoc_begin(&d);
		jw_obj_begin(w);
		jw_key(w, "reply");
		jw_bytes(w, s.r->str, s.r->len);
		jw_key_u64(w, "latency_us", t1 - t0);
		jw_obj_end(w);
		jdoc_print(&d);
	} else if (code == EXIT_OK) {
		printf("%s\n", s.r->str);
	}
	done(&s);
	return code;
}

/* INFO text as {"section": {"name": "value"}}. */
static void info_json(const char *text)
{
	jdoc d;
	jw *w = jdoc_begin(&d);
	jw_obj_begin(w);
	bool open = false;
	const char *p = text;
	while (*p) {
		const char *end = strchr(p, '\n');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		size_t l = n && p[n - 1] == '\r' ? n - 1 : n;
		const char *colon = memchr(p, ':', l);
		if (l > 2 && p[0] == '#' && p[1] == ' ') {
			if (open)
				jw_obj_end(w);
			char name[64];
			size_t k = 0;
			for (size_t i = 2; i < l && k + 1 < sizeof(name); i++)
				name[k++] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
			jw_keyn(w, name, k);
			jw_obj_begin(w);
			open = true;
		} else if (colon && open) {
			jw_keyn(w, p, (size_t)(colon - p));
			jw_bytes(w, colon + 1, l - (size_t)(colon - p) - 1);
		}
		p += n + (end ? 1 : 0);
	}
	if (open)
		jw_obj_end(w);
	jw_obj_end(w);
	jdoc_print(&d);
}

static int show_info(cli *c, const redisReply *r)
{
	if (c->json)
		info_json(r->str);
	else
		fwrite(r->str, 1, r->len, stdout);
	return EXIT_OK;
}

int cmd_info(cli *c)
{
	args a = {0};
	arg(&a, "INFO");
	if (c->argc)
		arg(&a, c->argv[0]);
	return request(c, &a, is_text, show_info);
}

static int show_stats(cli *c, const redisReply *r)
{
	print_map(c, r, "NAME");
	return EXIT_OK;
}

int cmd_stats(cli *c)
{
	args a = {0};
	arg(&a, "CTX.STATS");
	return request(c, &a, is_map, show_stats);
}

/* CTX.VERIFY: the map of the server's checks. A member "ok" (or "result")
 * of 0, false or anything but "ok" fails the check (exit 1). */
static int show_verify(cli *c, const redisReply *r)
{
	const redisReply *ok = map_get(r, "ok");
	if (!ok)
		ok = map_get(r, "result");
	bool failed =
	    ok && ((ok->type == REDIS_REPLY_INTEGER && ok->integer == 0) ||
	           (is_text(ok) && strcmp(ok->str, "ok") != 0 && strcmp(ok->str, "1") != 0));
	print_map(c, r, "CHECK");
	return failed ? EXIT_FAIL : EXIT_OK;
}

int cmd_verify_online(cli *c)
{
	/* It walks the whole store: its time grows with the store's size, so
	 * no default limit (docs/cli.md, --timeout). */
	if (!(c->given & OPT_TIMEOUT))
		c->timeout = 0;
	args a = {0};
	arg(&a, "CTX.VERIFY");
	return request(c, &a, is_map, show_verify);
}

/* Print {"id":..., name: n} or "<text> n". */
static void print_id_number(cli *c, const char *id, const char *name, uint64_t n, const char *text)
{
	if (c->json) {
		jdoc d;
		jw *w = jdoc_begin_id(&d, id);
		jw_key_u64(w, name, n);
		jw_obj_end(w);
		jdoc_print(&d);
	} else {
		printf("%s %" PRIu64 "\n", text, n);
	}
}

/* Commands answering one integer: the new or pinned version. */
static int integer_command(cli *c, const args *a, const char *name, const char *text)
{
	session s;
	int code = run_shaped(c, a, &s, is_integer);
	if (code == EXIT_OK)
		print_id_number(c, c->argv[0], name, (uint64_t)s.r->integer, text);
	done(&s);
	return code;
}

int cmd_create(cli *c)
{
	if (c->argc % 2 == 0) {
		cli_error("create: fields come in FIELD VALUE pairs");
		return EXIT_USAGE;
	}
	if (!args_fit(c, 1))
		return EXIT_USAGE;
	args a = {0};
	arg(&a, "CTX.CREATE");
	for (int i = 0; i < c->argc; i++)
		arg(&a, c->argv[i]);
	session s;
	int code = run(c, &a, &s);
	if (code == EXIT_OK)
		print_id_number(c, c->argv[0], "version", 1, "created, version");
	done(&s);
	return code;
}

static int show_drop(cli *c, const redisReply *r)
{
	bool dropped = r->integer == 1;
	if (c->json) {
		jdoc d;
		jw *w = jdoc_begin_id(&d, c->argv[0]);
		jw_key(w, "dropped");
		jw_bool(w, dropped);
		jw_obj_end(w);
		jdoc_print(&d);
	} else if (dropped) {
		printf("dropped\n");
	}
	if (dropped)
		return EXIT_OK;
	cli_error("no such context: %s", c->argv[0]);
	return EXIT_FAIL;
}

int cmd_drop(cli *c)
{
	args a = {0};
	args_on_id(&a, "CTX.DROP", c);
	return request(c, &a, is_integer, show_drop);
}

/* CTX.SET or CTX.DEL: ID [IFVERSION v] then the fields (and values). */
static int guarded_change(cli *c, const char *command)
{
	if (!args_fit(c, 3))
		return EXIT_USAGE;
	args a = {0};
	args_on_id(&a, command, c);
	if (c->given & OPT_IF_VERSION) {
		arg(&a, "IFVERSION");
		arg_u64(&a, c->if_version);
	}
	for (int i = 1; i < c->argc; i++)
		arg(&a, c->argv[i]);
	return integer_command(c, &a, "version", "version");
}

int cmd_set(cli *c)
{
	if (c->argc < 3 || c->argc % 2 == 0) {
		cli_error("set: ctx set ID FIELD VALUE [FIELD VALUE...]");
		return EXIT_USAGE;
	}
	return guarded_change(c, "CTX.SET");
}

int cmd_del(cli *c)
{
	return guarded_change(c, "CTX.DEL");
}

int cmd_point(cli *c)
{
	args a = {0};
	args_on_id(&a, "CTX.POINT", c);
	if (c->label) {
		arg(&a, "LABEL");
		arg(&a, c->label);
	}
	return integer_command(c, &a, "version", "point at version");
}

int cmd_restore(cli *c)
{
	unsigned how = c->given & (OPT_VERSION | OPT_LATEST | OPT_LABEL | OPT_AT);
	if (how == 0 || (how & (how - 1))) {
		cli_error(
		    "restore: give exactly one of --version V, --latest, --label L, --at TIME");
		return EXIT_USAGE;
	}
	args a = {0};
	args_on_id(&a, "CTX.RESTORE", c);
	if (how == OPT_VERSION) {
		arg(&a, "VERSION");
		arg_u64(&a, c->version);
	} else if (how == OPT_LATEST) {
		arg(&a, "LATEST");
	} else if (how == OPT_LABEL) {
		arg(&a, "LABEL");
		arg(&a, c->label);
	} else {
		uint64_t at;
		if (!cli_parse_time(c->at, cli_now_us(), &at)) {
			cli_error("restore: --at %s is not a time (µs since 1970, @SECONDS, "
			          "YYYY-MM-DDTHH:MM:SS[Z], or -30s/-5m/-2h/-1d)",
			          c->at);
			return EXIT_USAGE;
		}
		arg(&a, "AT");
		arg_u64(&a, at);
	}
	return integer_command(c, &a, "version", "restored, version");
}

/* ---- get ------------------------------------------------------------ */

/* The fields map of a CTX.GET reply, sorted by name (malloc'd): each pair's
 * name is the field's bytes, its v the value's redisReply. */
static jw_pair *sorted_fields(const redisReply *fm, size_t *n)
{
	*n = 0;
	if (!fm || !is_map(fm))
		return NULL;
	jw_pair *f = malloc((fm->elements / 2 + 1) * sizeof(*f));
	if (!f)
		return NULL;
	for (size_t i = 0; i + 1 < fm->elements; i += 2) {
		const redisReply *k = fm->element[i];
		if (is_text(k))
			f[(*n)++] = (jw_pair){k->str, k->len, fm->element[i + 1], 0};
	}
	qsort(f, *n, sizeof(*f), jw_pair_cmp);
	return f;
}

static void jw_value(jw *w, const redisReply *v)
{
	if (is_text(v))
		jw_bytes(w, v->str, v->len);
	else
		jw_reply(w, v);
}

static void jw_field_value(jw *w, const jw_pair *f)
{
	jw_value(w, f->v);
}

static void get_print_all(cli *c, const redisReply *r, const jw_pair *f, size_t n)
{
	static const char *const nums[] = {"version", "revision", "created_us", "updated_us",
	                                   "keys"};
	if (c->json) {
		jdoc d;
		jw *w = jdoc_begin_id(&d, c->argv[0]);
		for (size_t i = 0; i < 5; i++)
			jw_key_u64(w, nums[i], map_u64(r, nums[i]));
		jw_pairs(w, "fields", f, n, jw_field_value);
		jw_obj_end(w);
		jdoc_print(&d);
		return;
	}
	char t1[40], t2[40];
	cli_format_time(map_u64(r, "created_us"), t1, sizeof(t1));
	cli_format_time(map_u64(r, "updated_us"), t2, sizeof(t2));
	buf id;
	buf_init(&id);
	cli_display(&id, c->argv[0], strlen(c->argv[0]));
	printf("id        %s\nversion   %" PRIu64 "\nrevision  %" PRIu64
	       "\ncreated   %s\nupdated   %s\nkeys      %" PRIu64 "\n",
	       id.data, map_u64(r, "version"), map_u64(r, "revision"), t1, t2, map_u64(r, "keys"));
	buf_free(&id);
	if (n == 0)
		return;
	fputc('\n', stdout);
	static const char *const head[] = {"FIELD", "VALUE"};
	table t;
	table_init(&t, 2, head);
	for (size_t i = 0; i < n; i++) {
		table_cell_bytes(&t, f[i].k, f[i].klen);
		cell_reply(&t, f[i].v);
	}
	table_print(&t);
	table_free(&t);
}

/* get ID FIELD: the raw value (people) or {"id","version","field","value"}. */
static int get_print_one(cli *c, const redisReply *r, const jw_pair *f, size_t n)
{
	const char *name = c->argv[1];
	size_t nl = strlen(name);
	for (size_t i = 0; i < n; i++) {
		if (f[i].klen != nl || memcmp(f[i].k, name, nl) != 0)
			continue;
		const redisReply *v = f[i].v;
		if (!c->json) {
			if (is_text(v))
				fwrite(v->str, 1, v->len, stdout);
			fputc('\n', stdout);
			return EXIT_OK;
		}
		jdoc d;
		jw *w = jdoc_begin_id(&d, c->argv[0]);
		jw_key_u64(w, "version", map_u64(r, "version"));
		jw_key(w, "field");
		jw_bytes(w, name, nl);
		jw_key(w, "value");
		jw_value(w, v);
		jw_obj_end(w);
		jdoc_print(&d);
		return EXIT_OK;
	}
	cli_error("no field %s in %s", name, c->argv[0]);
	return EXIT_FAIL;
}

static int show_get(cli *c, const redisReply *r)
{
	size_t n;
	jw_pair *f = sorted_fields(map_get(r, "fields"), &n);
	int code = EXIT_OK;
	if (c->argc == 2)
		code = get_print_one(c, r, f, n);
	else
		get_print_all(c, r, f, n);
	free(f);
	return code;
}

int cmd_get(cli *c)
{
	args a = {0};
	args_on_id(&a, "CTX.GET", c);
	if (c->given & OPT_VERSION) {
		arg(&a, "VERSION");
		arg_u64(&a, c->version);
	}
	return request(c, &a, is_map, show_get);
}

/* ---- list ----------------------------------------------------------- */

/* One CTX.LIST page: prints (or collects in w) its ids, and returns the next
 * cursor in *next (malloc'd; NULL when done). */
static int list_page(cli *c, redisContext *rc, const char *after, jw *w, uint64_t *shown,
                     char **next)
{
	args a = {0};
	arg(&a, "CTX.LIST");
	if (c->argc) {
		arg(&a, "PREFIX");
		arg(&a, c->argv[0]);
	}
	if (after) {
		arg(&a, "AFTER");
		arg(&a, after);
	}
	if (c->given & OPT_COUNT) {
		arg(&a, "COUNT");
		arg_u64(&a, c->count);
	}
	redisReply *r;
	int code = call(rc, &a, &r);
	if (code != EXIT_OK)
		return code;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !is_text(r->element[0]) ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		return bad_reply("CTX.LIST");
	}
	const redisReply *ids = r->element[1];
	*next = NULL;
	for (size_t i = 0; i < ids->elements; i++) {
		if (c->limit && *shown >= c->limit)
			break;
		const redisReply *id = ids->element[i];
		if (!is_text(id))
			continue;
		(*shown)++;
		if (w) {
			jw_bytes(w, id->str, id->len);
		} else {
			buf b;
			buf_init(&b);
			cli_display(&b, id->str, id->len);
			printf("%s\n", b.data ? b.data : "");
			buf_free(&b);
		}
	}
	bool more =
	    r->element[0]->len > 0 && ids->elements > 0 && !(c->limit && *shown >= c->limit);
	if (more)
		*next = strndup(r->element[0]->str, r->element[0]->len);
	freeReplyObject(r);
	return EXIT_OK;
}

int cmd_list(cli *c)
{
	redisContext *rc;
	int code = connect_server(c, &rc);
	if (code != EXIT_OK)
		return code;
	jdoc d;
	jw *w = jdoc_begin(&d);
	if (c->json) {
		jw_obj_begin(w);
		jw_key(w, "ids");
		jw_arr_begin(w);
	}
	char *after = NULL;
	uint64_t shown = 0;
	do {
		char *next = NULL;
		code = list_page(c, rc, after, c->json ? w : NULL, &shown, &next);
		free(after);
		after = next;
	} while (code == EXIT_OK && after);
	free(after);
	if (c->json && code == EXIT_OK) {
		jw_arr_end(w);
		jw_key_u64(w, "count", shown);
		jw_obj_end(w);
		jdoc_print(&d);
	}
	buf_free(&d.b);
	redisFree(rc);
	return code;
}

/* ---- points, history, diff ------------------------------------------ */

static void checksum_text(const redisReply *v, char *out, size_t outlen)
{
	if (v && v->type == REDIS_REPLY_INTEGER)
		snprintf(out, outlen, "%016" PRIx64, (uint64_t)v->integer);
	else if (v && is_text(v))
		snprintf(out, outlen, "%s", v->str);
	else
		snprintf(out, outlen, "-");
}

static int show_points(cli *c, const redisReply *r)
{
	static const char *const head[] = {"VERSION", "TIME", "KEYS", "BYTES", "CHECKSUM", "LABEL"};
	rows o;
	rows_begin(&o, c, 6, head);
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *p = r->element[i];
		const redisReply *label = map_get(p, "label");
		if (label && !is_text(label))
			label = NULL;
		char sum[40];
		checksum_text(map_get(p, "checksum"), sum, sizeof(sum));
		row_begin(&o);
		col_u64(&o, "version", map_u64(p, "version"));
		col_time(&o, "time_us", map_u64(p, "time_us"));
		col_u64(&o, "keys", map_u64(p, "keys"));
		col_u64(&o, "bytes", map_u64(p, "bytes"));
		col_str(&o, "checksum", sum);
		col_bytes(&o, "label", label ? label->str : "", label ? label->len : 0);
		row_end(&o);
	}
	rows_print(&o);
	return EXIT_OK;
}

int cmd_points(cli *c)
{
	args a = {0};
	args_on_id(&a, "CTX.POINTS", c);
	return request(c, &a, is_array, show_points);
}

static int show_history(cli *c, const redisReply *r)
{
	static const char *const head[] = {"VERSION", "REVISION", "TIME", "KEYS_CHANGED", "PINNED"};
	rows o;
	rows_begin(&o, c, 5, head);
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *h = r->element[i];
		row_begin(&o);
		col_u64(&o, "version", map_u64(h, "version"));
		col_u64(&o, "revision", map_u64(h, "revision"));
		col_time(&o, "time_us", map_u64(h, "time_us"));
		col_u64(&o, "keys_changed", map_u64(h, "keys_changed"));
		col_bool(&o, "pinned", map_u64(h, "pinned") != 0);
		row_end(&o);
	}
	rows_print(&o);
	return EXIT_OK;
}

int cmd_history(cli *c)
{
	args a = {0};
	args_on_id(&a, "CTX.HISTORY", c);
	return request(c, &a, is_array, show_history);
}

/* [[kind, field, old, new], ...] */
static int show_diff(cli *c, const redisReply *r)
{
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type != REDIS_REPLY_ARRAY || r->element[i]->elements != 4)
			return bad_reply("CTX.DIFF");
	static const char *const names[] = {"kind", "field", "old", "new"};
	static const char *const head[] = {"KIND", "FIELD", "OLD", "NEW"};
	rows o;
	rows_begin(&o, c, 4, head);
	for (size_t i = 0; i < r->elements; i++) {
		row_begin(&o);
		for (size_t k = 0; k < 4; k++)
			col_reply(&o, names[k], r->element[i]->element[k]);
		row_end(&o);
	}
	rows_print(&o);
	return EXIT_OK;
}

int cmd_diff(cli *c)
{
	uint64_t from, to;
	if (!cli_parse_u64(c->argv[1], &from) || !cli_parse_u64(c->argv[2], &to)) {
		cli_error("diff: FROM and TO are version numbers");
		return EXIT_USAGE;
	}
	args a = {0};
	args_on_id(&a, "CTX.DIFF", c);
	arg_u64(&a, from);
	arg_u64(&a, to);
	return request(c, &a, is_array, show_diff);
}

/* ---- watch ---------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Block SIGINT/SIGTERM (delivered only inside ppoll, with *waitmask). */
static void watch_signals(sigset_t *waitmask)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, waitmask);
	sigdelset(waitmask, SIGINT);
	sigdelset(waitmask, SIGTERM);
}

/* ["ctx.event", kind, revision, id, version, [fields...]] */
static void print_event(cli *c, const redisReply *m)
{
	const redisReply *fields = m->element[5];
	buf b;
	buf_init(&b);
	if (c->json) {
		jw w;
		jw_init(&w, &b);
		jw_obj_begin(&w);
		jw_key(&w, "event");
		jw_value(&w, m->element[1]);
		jw_key_u64(&w, "revision", reply_u64(m->element[2]));
		jw_key(&w, "id");
		jw_value(&w, m->element[3]);
		jw_key_u64(&w, "version", reply_u64(m->element[4]));
		jw_key(&w, "fields");
		jw_arr_begin(&w);
		for (size_t i = 0; fields->type == REDIS_REPLY_ARRAY && i < fields->elements; i++)
			jw_value(&w, fields->element[i]);
		jw_arr_end(&w);
		jw_obj_end(&w);
	} else {
		buf_printf(&b, "%" PRIu64 "  %s  ", reply_u64(m->element[2]),
		           is_text(m->element[1]) ? m->element[1]->str : "?");
		if (is_text(m->element[3]))
			cli_display(&b, m->element[3]->str, m->element[3]->len);
		buf_printf(&b, "  version %" PRIu64, reply_u64(m->element[4]));
		for (size_t i = 0; fields->type == REDIS_REPLY_ARRAY && i < fields->elements; i++) {
			buf_puts(&b, i ? ", " : "  fields: ");
			if (is_text(fields->element[i]))
				cli_display(&b, fields->element[i]->str, fields->element[i]->len);
		}
	}
	if (buf_ok(&b))
		printf("%s\n", b.data);
	fflush(stdout);
	buf_free(&b);
}

/* ["ctx.lost", first, last_or_0, resume_hint]: said on stderr for people,
 * as a JSON line too with --json. */
static void print_lost(cli *c, const redisReply *m, uint64_t first, bool resuming)
{
	uint64_t last = reply_u64(m->element[2]);
	const redisReply *hint = m->element[3];
	if (c->json) {
		jdoc d;
		jw *w = jdoc_begin(&d);
		jw_obj_begin(w);
		jw_key(w, "lost");
		jw_obj_begin(w);
		jw_key_u64(w, "first", first);
		jw_key_u64(w, "last", last);
		jw_key(w, "resume_hint");
		jw_text_or_null(w, hint);
		jw_key(w, "resuming");
		jw_bool(w, resuming);
		jw_obj_end(w);
		jw_obj_end(w);
		jdoc_print(&d);
		fflush(stdout);
	}
	char range[64];
	if (last)
		snprintf(range, sizeof(range), "revisions %" PRIu64 " to %" PRIu64, first, last);
	else
		snprintf(range, sizeof(range), "revisions from %" PRIu64 " on", first);
	cli_error("EVENTS LOST: the watch fell behind and %s were not delivered%s%s%s", range,
	          is_text(hint) ? " (" : "", is_text(hint) ? hint->str : "",
	          is_text(hint) ? ")" : "");
	if (resuming)
		cli_error("resuming the watch from revision %" PRIu64, first);
	else
		cli_error("resume with: ctx watch ... --from %" PRIu64, first);
}

/* What one message did: keep going, resume from a revision, or stop.
 * events[0] counts the events printed, events[1] is the highest revision
 * printed. */
enum watch_step { WATCH_GO, WATCH_RESUME, WATCH_STOP };

static enum watch_step watch_message(cli *c, const redisReply *m, uint64_t *resume,
                                     uint64_t events[2])
{
	if (m->type != REDIS_REPLY_ARRAY || m->elements < 1 || !is_text(m->element[0]))
		return WATCH_GO; /* not ours: ignore */
	const char *kind = m->element[0]->str;
	if (strcmp(kind, "ctx.event") == 0 && m->elements == 6) {
		print_event(c, m);
		events[0]++;
		if (reply_u64(m->element[2]) > events[1])
			events[1] = reply_u64(m->element[2]);
		return WATCH_GO;
	}
	if (strcmp(kind, "ctx.lost") == 0 && m->elements == 4) {
		*resume = reply_u64(m->element[1]);
		print_lost(c, m, *resume, !c->no_resume);
		return c->no_resume ? WATCH_STOP : WATCH_RESUME;
	}
	return WATCH_GO;
}

/* Wait for and take the next reply; NULL with *code set on stop or error. */
static redisReply *watch_next(redisContext *rc, const sigset_t *waitmask, int *code)
{
	for (;;) {
		void *r = NULL;
		if (redisGetReplyFromReader(rc, &r) != REDIS_OK) {
			cli_error("bad data from ctxd: %s", rc->errstr);
			*code = EXIT_FAIL;
			return NULL;
		}
		if (r)
			return r;
		if (stop_requested) {
			*code = EXIT_OK;
			return NULL;
		}
		struct pollfd p = {.fd = rc->fd, .events = POLLIN};
		int n = ppoll(&p, 1, NULL, waitmask);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || redisBufferRead(rc) != REDIS_OK) {
			cli_error("connection to ctxd lost: %s",
			          n < 0 ? strerror(errno) : rc->errstr);
			*code = EXIT_CONNECT;
			return NULL;
		}
	}
}

/* One watch connection from revision `from` (0 = now). *resume is set when
 * the server says events were lost and the watch should start again. */
static int watch_once(cli *c, uint64_t from, const sigset_t *waitmask, uint64_t *resume,
                      uint64_t events[2])
{
	args a = {0};
	arg(&a, "CTX.WATCH");
	if (c->given & OPT_PREFIX) {
		arg(&a, "PREFIX");
		arg(&a, c->prefix);
	} else {
		arg(&a, c->argv[0]);
	}
	if (from) {
		arg(&a, "FROM");
		arg_u64(&a, from);
	}
	session s;
	int code = run(c, &a, &s);
	*resume = 0;
	while (code == EXIT_OK) {
		redisReply *m = watch_next(s.rc, waitmask, &code);
		if (!m)
			break;
		enum watch_step step = watch_message(c, m, resume, events);
		freeReplyObject(m);
		if (step == WATCH_STOP)
			code = EXIT_FAIL;
		if (step != WATCH_GO)
			break;
	}
	if (code != EXIT_OK || stop_requested)
		*resume = 0;
	done(&s);
	return code;
}

int cmd_watch(cli *c)
{
	bool by_prefix = c->given & OPT_PREFIX;
	if (by_prefix == (c->argc == 1)) {
		cli_error("watch: give an ID or --prefix P, not both");
		return EXIT_USAGE;
	}
	sigset_t waitmask;
	watch_signals(&waitmask);
	uint64_t from = c->given & OPT_FROM ? c->from : 0;
	int code;
	uint64_t events[2] = {0, 0};
	for (;;) {
		uint64_t resume = 0, before = events[0];
		code = watch_once(c, from, &waitmask, &resume, events);
		if (!resume)
			break;
		if ((resume == from && events[0] == before) || resume <= events[1]) {
			/* resuming would repeat or make no progress: do not spin */
			cli_error("the server reports the same loss again; stopping");
			code = EXIT_FAIL;
			break;
		}
		from = resume;
	}
	fflush(stdout);
	return code;
}
