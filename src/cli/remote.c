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

static int connect_server(cli *c, redisContext **out)
{
	struct timeval tv = {5, 0};
	redisContext *rc = redisConnectWithTimeout(c->host, c->port, tv);
	if (!rc || rc->err) {
		cli_error("cannot connect to ctxd at %s:%d: %s", c->host, c->port,
		          rc ? rc->errstr : "out of memory");
		redisFree(rc);
		return EXIT_CONNECT;
	}
	if (c->password) {
		redisReply *r = redisCommand(rc, "AUTH %s", c->password);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			cli_error("authentication failed at %s:%d: %s", c->host, c->port,
			          r ? r->str : rc->errstr);
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
		cli_error("connection to ctxd lost: %s", rc->errstr);
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

static uint64_t map_u64(const redisReply *r, const char *name)
{
	const redisReply *v = map_get(r, name);
	if (!v)
		return 0;
	if (v->type == REDIS_REPLY_INTEGER)
		return (uint64_t)v->integer;
	uint64_t x = 0;
	if (is_text(v))
		cli_parse_u64(v->str, &x);
	return x;
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

static void print_json(buf *b)
{
	if (!buf_ok(b)) {
		cli_error("out of memory");
		return;
	}
	fwrite(b->data, 1, b->len, stdout);
	fputc('\n', stdout);
	buf_free(b);
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

/* ---- simple commands ------------------------------------------------ */

int cmd_ping(cli *c)
{
	args a = {0};
	arg(&a, "PING");
	session s;
	uint64_t t0 = cli_now_us();
	int code = run(c, &a, &s);
	uint64_t t1 = cli_now_us();
	if (code == EXIT_OK) {
		if (!is_text(s.r)) {
			code = bad_reply("PING");
		} else if (c->json) {
			buf b;
			buf_init(&b);
			jw w;
			jw_init(&w, &b);
			jw_obj_begin(&w);
			jw_key(&w, "reply");
			jw_bytes(&w, s.r->str, s.r->len);
			jw_key(&w, "latency_us");
			jw_u64(&w, t1 - t0);
			jw_obj_end(&w);
			print_json(&b);
		} else {
			printf("%s\n", s.r->str);
		}
	}
	done(&s);
	return code;
}

/* INFO text as {"section": {"name": "value"}}. */
static void info_json(const char *text)
{
	buf b;
	buf_init(&b);
	jw w;
	jw_init(&w, &b);
	jw_obj_begin(&w);
	bool open = false;
	const char *p = text;
	while (*p) {
		const char *end = strchr(p, '\n');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		size_t l = n && p[n - 1] == '\r' ? n - 1 : n;
		const char *colon = memchr(p, ':', l);
		if (l > 2 && p[0] == '#' && p[1] == ' ') {
			if (open)
				jw_obj_end(&w);
			char name[64];
			size_t k = 0;
			for (size_t i = 2; i < l && k + 1 < sizeof(name); i++)
				name[k++] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
			jw_keyn(&w, name, k);
			jw_obj_begin(&w);
			open = true;
		} else if (colon && open) {
			jw_keyn(&w, p, (size_t)(colon - p));
			jw_bytes(&w, colon + 1, l - (size_t)(colon - p) - 1);
		}
		p += n + (end ? 1 : 0);
	}
	if (open)
		jw_obj_end(&w);
	jw_obj_end(&w);
	print_json(&b);
}

int cmd_info(cli *c)
{
	args a = {0};
	arg(&a, "INFO");
	if (c->argc)
		arg(&a, c->argv[0]);
	session s;
	int code = run(c, &a, &s);
	if (code == EXIT_OK) {
		if (!is_text(s.r))
			code = bad_reply("INFO");
		else if (c->json)
			info_json(s.r->str);
		else
			fwrite(s.r->str, 1, s.r->len, stdout);
	}
	done(&s);
	return code;
}

int cmd_stats(cli *c)
{
	args a = {0};
	arg(&a, "CTX.STATS");
	session s;
	int code = run(c, &a, &s);
	if (code == EXIT_OK && !is_map(s.r))
		code = bad_reply("CTX.STATS");
	if (code == EXIT_OK && c->json) {
		buf b;
		buf_init(&b);
		jw w;
		jw_init(&w, &b);
		jw_map(&w, s.r);
		print_json(&b);
	} else if (code == EXIT_OK) {
		static const char *const head[] = {"NAME", "VALUE"};
		table t;
		table_init(&t, 2, head);
		for (size_t i = 0; i + 1 < s.r->elements; i += 2) {
			cell_reply(&t, s.r->element[i]);
			cell_reply(&t, s.r->element[i + 1]);
		}
		table_print(&t);
		table_free(&t);
	}
	done(&s);
	return code;
}

/* CTX.VERIFY: the map of the server's checks. A member "ok" (or "result")
 * of 0, false or anything but "ok" fails the check (exit 1). */
int cmd_verify_online(cli *c)
{
	args a = {0};
	arg(&a, "CTX.VERIFY");
	session s;
	int code = run(c, &a, &s);
	if (code == EXIT_OK && !is_map(s.r))
		code = bad_reply("CTX.VERIFY");
	if (code == EXIT_OK) {
		const redisReply *ok = map_get(s.r, "ok");
		if (!ok)
			ok = map_get(s.r, "result");
		if (ok &&
		    ((ok->type == REDIS_REPLY_INTEGER && ok->integer == 0) ||
		     (is_text(ok) && strcmp(ok->str, "ok") != 0 && strcmp(ok->str, "1") != 0)))
			code = EXIT_FAIL;
	}
	if (code == EXIT_OK || (s.r && is_map(s.r))) {
		if (c->json) {
			buf b;
			buf_init(&b);
			jw w;
			jw_init(&w, &b);
			jw_map(&w, s.r);
			print_json(&b);
		} else {
			static const char *const head[] = {"CHECK", "VALUE"};
			table t;
			table_init(&t, 2, head);
			for (size_t i = 0; i + 1 < s.r->elements; i += 2) {
				cell_reply(&t, s.r->element[i]);
				cell_reply(&t, s.r->element[i + 1]);
			}
			table_print(&t);
			table_free(&t);
		}
	}
	done(&s);
	return code;
}

/* Print {"id":..., name: n} or "<text> n". */
static void print_id_number(cli *c, const char *id, const char *name, uint64_t n, const char *text)
{
	if (c->json) {
		buf b;
		buf_init(&b);
		jw w;
		jw_init(&w, &b);
		jw_obj_begin(&w);
		jw_key(&w, "id");
		jw_bytes(&w, id, strlen(id));
		jw_key(&w, name);
		jw_u64(&w, n);
		jw_obj_end(&w);
		print_json(&b);
	} else {
		printf("%s %" PRIu64 "\n", text, n);
	}
}

/* Commands answering one integer: the new or pinned version. */
static int integer_command(cli *c, const args *a, const char *name, const char *text)
{
	session s;
	int code = run(c, a, &s);
	if (code == EXIT_OK && s.r->type != REDIS_REPLY_INTEGER)
		code = bad_reply(a->v[0]);
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

int cmd_drop(cli *c)
{
	args a = {0};
	arg(&a, "CTX.DROP");
	arg(&a, c->argv[0]);
	session s;
	int code = run(c, &a, &s);
	if (code == EXIT_OK && s.r->type != REDIS_REPLY_INTEGER)
		code = bad_reply("CTX.DROP");
	if (code == EXIT_OK) {
		bool dropped = s.r->integer == 1;
		if (c->json) {
			buf b;
			buf_init(&b);
			jw w;
			jw_init(&w, &b);
			jw_obj_begin(&w);
			jw_key(&w, "id");
			jw_bytes(&w, c->argv[0], strlen(c->argv[0]));
			jw_key(&w, "dropped");
			jw_bool(&w, dropped);
			jw_obj_end(&w);
			print_json(&b);
		} else if (dropped) {
			printf("dropped\n");
		}
		if (!dropped) {
			cli_error("no such context: %s", c->argv[0]);
			code = EXIT_FAIL;
		}
	}
	done(&s);
	return code;
}

/* CTX.SET or CTX.DEL: ID [IFVERSION v] then the fields (and values). */
static int guarded_change(cli *c, const char *command)
{
	if (!args_fit(c, 3))
		return EXIT_USAGE;
	args a = {0};
	arg(&a, command);
	arg(&a, c->argv[0]);
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
	arg(&a, "CTX.POINT");
	arg(&a, c->argv[0]);
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
	arg(&a, "CTX.RESTORE");
	arg(&a, c->argv[0]);
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

typedef struct field {
	const redisReply *k, *v;
} field;

static int field_cmp(const void *a, const void *b)
{
	const redisReply *x = ((const field *)a)->k, *y = ((const field *)b)->k;
	size_t n = x->len < y->len ? x->len : y->len;
	int d = memcmp(x->str, y->str, n);
	return d ? d : (x->len > y->len) - (x->len < y->len);
}

/* The fields map of a CTX.GET reply, sorted by name (malloc'd). */
static field *sorted_fields(const redisReply *fm, size_t *n)
{
	*n = 0;
	if (!fm || !is_map(fm))
		return NULL;
	field *f = malloc((fm->elements / 2 + 1) * sizeof(*f));
	if (!f)
		return NULL;
	for (size_t i = 0; i + 1 < fm->elements; i += 2)
		if (is_text(fm->element[i]))
			f[(*n)++] = (field){fm->element[i], fm->element[i + 1]};
	qsort(f, *n, sizeof(*f), field_cmp);
	return f;
}

static void jw_value(jw *w, const redisReply *v)
{
	if (is_text(v))
		jw_bytes(w, v->str, v->len);
	else
		jw_reply(w, v);
}

/* "fields": {...} and "fields_base64" for names that are not UTF-8 (as in
 * export). */
static void jw_fields(jw *w, const field *f, size_t n)
{
	size_t binary = 0;
	jw_key(w, "fields");
	jw_obj_begin(w);
	for (size_t i = 0; i < n; i++) {
		if (!utf8_valid(f[i].k->str, f[i].k->len)) {
			binary++;
			continue;
		}
		jw_keyn(w, f[i].k->str, f[i].k->len);
		jw_value(w, f[i].v);
	}
	jw_obj_end(w);
	if (!binary)
		return;
	jw_key(w, "fields_base64");
	jw_obj_begin(w);
	buf k;
	buf_init(&k);
	for (size_t i = 0; i < n; i++) {
		if (utf8_valid(f[i].k->str, f[i].k->len))
			continue;
		buf_reset(&k);
		base64_encode(&k, f[i].k->str, f[i].k->len);
		jw_keyn(w, k.data, k.len);
		jw_value(w, f[i].v);
	}
	buf_free(&k);
	jw_obj_end(w);
}

static void get_print_all(cli *c, const redisReply *r, const field *f, size_t n)
{
	static const char *const nums[] = {"version", "revision", "created_us", "updated_us",
	                                   "keys"};
	if (c->json) {
		buf b;
		buf_init(&b);
		jw w;
		jw_init(&w, &b);
		jw_obj_begin(&w);
		jw_key(&w, "id");
		jw_bytes(&w, c->argv[0], strlen(c->argv[0]));
		for (size_t i = 0; i < 5; i++) {
			jw_key(&w, nums[i]);
			jw_u64(&w, map_u64(r, nums[i]));
		}
		jw_fields(&w, f, n);
		jw_obj_end(&w);
		print_json(&b);
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
		table_cell_bytes(&t, f[i].k->str, f[i].k->len);
		cell_reply(&t, f[i].v);
	}
	table_print(&t);
	table_free(&t);
}

/* get ID FIELD: the raw value (people) or {"id","version","field","value"}. */
static int get_print_one(cli *c, const redisReply *r, const field *f, size_t n)
{
	const char *name = c->argv[1];
	size_t nl = strlen(name);
	for (size_t i = 0; i < n; i++) {
		if (f[i].k->len != nl || memcmp(f[i].k->str, name, nl) != 0)
			continue;
		if (!c->json) {
			if (is_text(f[i].v))
				fwrite(f[i].v->str, 1, f[i].v->len, stdout);
			fputc('\n', stdout);
			return EXIT_OK;
		}
		buf b;
		buf_init(&b);
		jw w;
		jw_init(&w, &b);
		jw_obj_begin(&w);
		jw_key(&w, "id");
		jw_bytes(&w, c->argv[0], strlen(c->argv[0]));
		jw_key(&w, "version");
		jw_u64(&w, map_u64(r, "version"));
		jw_key(&w, "field");
		jw_bytes(&w, name, nl);
		jw_key(&w, "value");
		jw_value(&w, f[i].v);
		jw_obj_end(&w);
		print_json(&b);
		return EXIT_OK;
	}
	cli_error("no field %s in %s", name, c->argv[0]);
	return EXIT_FAIL;
}

int cmd_get(cli *c)
{
	args a = {0};
	arg(&a, "CTX.GET");
	arg(&a, c->argv[0]);
	if (c->given & OPT_VERSION) {
		arg(&a, "VERSION");
		arg_u64(&a, c->version);
	}
	session s;
	int code = run(c, &a, &s);
	if (code == EXIT_OK && !is_map(s.r))
		code = bad_reply("CTX.GET");
	if (code == EXIT_OK) {
		size_t n;
		field *f = sorted_fields(map_get(s.r, "fields"), &n);
		if (c->argc == 2)
			code = get_print_one(c, s.r, f, n);
		else
			get_print_all(c, s.r, f, n);
		free(f);
	}
	done(&s);
	return code;
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
	buf b;
	buf_init(&b);
	jw w;
	jw_init(&w, &b);
	if (c->json) {
		jw_obj_begin(&w);
		jw_key(&w, "ids");
		jw_arr_begin(&w);
	}
	char *after = NULL;
	uint64_t shown = 0;
	do {
		char *next = NULL;
		code = list_page(c, rc, after, c->json ? &w : NULL, &shown, &next);
		free(after);
		after = next;
	} while (code == EXIT_OK && after);
	free(after);
	if (c->json && code == EXIT_OK) {
		jw_arr_end(&w);
		jw_key(&w, "count");
		jw_u64(&w, shown);
		jw_obj_end(&w);
		print_json(&b);
	}
	buf_free(&b);
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

static const redisReply *text_or_null(const redisReply *m, const char *name)
{
	const redisReply *v = map_get(m, name);
	return v && is_text(v) ? v : NULL;
}

int cmd_points(cli *c)
{
	args a = {0};
	arg(&a, "CTX.POINTS");
	arg(&a, c->argv[0]);
	session s;
	int code = run(c, &a, &s);
	if (code == EXIT_OK && s.r->type != REDIS_REPLY_ARRAY)
		code = bad_reply("CTX.POINTS");
	if (code != EXIT_OK) {
		done(&s);
		return code;
	}
	static const char *const head[] = {"VERSION", "TIME", "KEYS", "BYTES", "CHECKSUM", "LABEL"};
	buf b;
	buf_init(&b);
	jw w;
	jw_init(&w, &b);
	table t;
	table_init(&t, 6, head);
	jw_arr_begin(&w);
	for (size_t i = 0; i < s.r->elements; i++) {
		const redisReply *p = s.r->element[i];
		const redisReply *label = text_or_null(p, "label");
		char sum[40];
		checksum_text(map_get(p, "checksum"), sum, sizeof(sum));
		if (c->json) {
			jw_obj_begin(&w);
			jw_key(&w, "version");
			jw_u64(&w, map_u64(p, "version"));
			jw_key(&w, "time_us");
			jw_u64(&w, map_u64(p, "time_us"));
			jw_key(&w, "keys");
			jw_u64(&w, map_u64(p, "keys"));
			jw_key(&w, "bytes");
			jw_u64(&w, map_u64(p, "bytes"));
			jw_key(&w, "checksum");
			jw_str(&w, sum);
			jw_key(&w, "label");
			jw_bytes(&w, label ? label->str : "", label ? label->len : 0);
			jw_obj_end(&w);
			continue;
		}
		table_cell_u64(&t, map_u64(p, "version"));
		table_cell_time(&t, map_u64(p, "time_us"));
		table_cell_u64(&t, map_u64(p, "keys"));
		table_cell_u64(&t, map_u64(p, "bytes"));
		table_cell(&t, sum);
		table_cell_bytes(&t, label ? label->str : "", label ? label->len : 0);
	}
	jw_arr_end(&w);
	if (c->json)
		print_json(&b);
	else
		table_print(&t);
	buf_free(&b);
	table_free(&t);
	done(&s);
	return EXIT_OK;
}

int cmd_history(cli *c)
{
	args a = {0};
	arg(&a, "CTX.HISTORY");
	arg(&a, c->argv[0]);
	session s;
	int code = run(c, &a, &s);
	if (code == EXIT_OK && s.r->type != REDIS_REPLY_ARRAY)
		code = bad_reply("CTX.HISTORY");
	if (code != EXIT_OK) {
		done(&s);
		return code;
	}
	static const char *const names[] = {"version", "revision", "time_us", "keys_changed"};
	static const char *const head[] = {"VERSION", "REVISION", "TIME", "KEYS_CHANGED", "PINNED"};
	buf b;
	buf_init(&b);
	jw w;
	jw_init(&w, &b);
	table t;
	table_init(&t, 5, head);
	jw_arr_begin(&w);
	for (size_t i = 0; i < s.r->elements; i++) {
		const redisReply *h = s.r->element[i];
		bool pinned = map_u64(h, "pinned") != 0;
		if (c->json) {
			jw_obj_begin(&w);
			for (size_t k = 0; k < 4; k++) {
				jw_key(&w, names[k]);
				jw_u64(&w, map_u64(h, names[k]));
			}
			jw_key(&w, "pinned");
			jw_bool(&w, pinned);
			jw_obj_end(&w);
			continue;
		}
		table_cell_u64(&t, map_u64(h, "version"));
		table_cell_u64(&t, map_u64(h, "revision"));
		table_cell_time(&t, map_u64(h, "time_us"));
		table_cell_u64(&t, map_u64(h, "keys_changed"));
		table_cell(&t, pinned ? "yes" : "no");
	}
	jw_arr_end(&w);
	if (c->json)
		print_json(&b);
	else
		table_print(&t);
	buf_free(&b);
	table_free(&t);
	done(&s);
	return EXIT_OK;
}

static void jw_text_or_null(jw *w, const redisReply *v)
{
	if (v && is_text(v))
		jw_bytes(w, v->str, v->len);
	else
		jw_null(w);
}

int cmd_diff(cli *c)
{
	uint64_t from, to;
	if (!cli_parse_u64(c->argv[1], &from) || !cli_parse_u64(c->argv[2], &to)) {
		cli_error("diff: FROM and TO are version numbers");
		return EXIT_USAGE;
	}
	args a = {0};
	arg(&a, "CTX.DIFF");
	arg(&a, c->argv[0]);
	arg_u64(&a, from);
	arg_u64(&a, to);
	session s;
	int code = run(c, &a, &s);
	if (code == EXIT_OK && s.r->type != REDIS_REPLY_ARRAY)
		code = bad_reply("CTX.DIFF");
	if (code != EXIT_OK) {
		done(&s);
		return code;
	}
	static const char *const head[] = {"KIND", "FIELD", "OLD", "NEW"};
	buf b;
	buf_init(&b);
	jw w;
	jw_init(&w, &b);
	table t;
	table_init(&t, 4, head);
	jw_arr_begin(&w);
	for (size_t i = 0; i < s.r->elements && code == EXIT_OK; i++) {
		const redisReply *d = s.r->element[i];
		if (d->type != REDIS_REPLY_ARRAY || d->elements != 4) {
			code = bad_reply("CTX.DIFF");
			break;
		}
		if (c->json) {
			jw_obj_begin(&w);
			jw_key(&w, "kind");
			jw_text_or_null(&w, d->element[0]);
			jw_key(&w, "field");
			jw_text_or_null(&w, d->element[1]);
			jw_key(&w, "old");
			jw_text_or_null(&w, d->element[2]);
			jw_key(&w, "new");
			jw_text_or_null(&w, d->element[3]);
			jw_obj_end(&w);
			continue;
		}
		for (size_t k = 0; k < 4; k++)
			cell_reply(&t, d->element[k]);
	}
	jw_arr_end(&w);
	if (code == EXIT_OK && c->json)
		print_json(&b);
	else if (code == EXIT_OK)
		table_print(&t);
	buf_free(&b);
	table_free(&t);
	done(&s);
	return code;
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

static uint64_t reply_u64(const redisReply *r)
{
	uint64_t x = 0;
	if (r->type == REDIS_REPLY_INTEGER)
		return (uint64_t)r->integer;
	if (is_text(r))
		cli_parse_u64(r->str, &x);
	return x;
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
		jw_key(&w, "revision");
		jw_u64(&w, reply_u64(m->element[2]));
		jw_key(&w, "id");
		jw_value(&w, m->element[3]);
		jw_key(&w, "version");
		jw_u64(&w, reply_u64(m->element[4]));
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
		buf b;
		buf_init(&b);
		jw w;
		jw_init(&w, &b);
		jw_obj_begin(&w);
		jw_key(&w, "lost");
		jw_obj_begin(&w);
		jw_key(&w, "first");
		jw_u64(&w, first);
		jw_key(&w, "last");
		jw_u64(&w, last);
		jw_key(&w, "resume_hint");
		jw_text_or_null(&w, hint);
		jw_key(&w, "resuming");
		jw_bool(&w, resuming);
		jw_obj_end(&w);
		jw_obj_end(&w);
		print_json(&b);
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
	redisContext *rc;
	int code = connect_server(c, &rc);
	if (code != EXIT_OK)
		return code;
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
	redisReply *r;
	code = call(rc, &a, &r);
	freeReplyObject(r);
	*resume = 0;
	while (code == EXIT_OK) {
		redisReply *m = watch_next(rc, waitmask, &code);
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
	redisFree(rc);
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
