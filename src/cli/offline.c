/*
 * offline.c - the commands that work on a data directory while no server
 * runs: verify, inspect, export, import.
 *
 * verify calls ctx_verify, which reads without changing anything. The others
 * open the store with ctx_open, which takes the directory's lock: while ctxd
 * has the directory open they fail cleanly (exit 3) and say so. Opening
 * recovers the directory (it may cut a torn log tail, as the server would) and
 * closing writes a checkpoint, so inspect and export are "read-mostly": they
 * change no context, only how the directory stores them.
 *
 * Export format (docs/cli.md): JSON Lines, one context per line in id order,
 * {"id":..., "version":N, "fields":{...}, "meta":{...}}, with keys sorted
 * bytewise so that the same store always exports the same bytes. A value is a
 * JSON string when it is valid UTF-8, else {"base64":"..."}. A field or
 * metadata name that is not valid UTF-8 goes, base64-encoded, into
 * "fields_base64" / "meta_base64" (objects of the same shape). Import creates
 * each context with all its data in one commit (ctx_txn_begin_create); the
 * version in the file is information only.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base64.h"
#include "cli.h"
#include "json.h"

/* The data directory: --dir, else the first positional argument (which is
 * then consumed). */
static const char *take_dir(cli *c)
{
	if (c->dir)
		return c->dir;
	if (c->argc < 1)
		return NULL;
	c->argc--;
	return *c->argv++;
}

static int status_exit(ctx_status s)
{
	switch (s) {
	case CTX_OK:
		return EXIT_OK;
	case CTX_EXISTS:
	case CTX_CONFLICT:
		return EXIT_CONFLICT;
	default:
		return EXIT_FAIL;
	}
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Whether a failure of ctx_open or ctx_verify (status s, errno e read right
 * after the call) is the directory's lock held by a store: CTX_IO with
 * errno EWOULDBLOCK, as ctx.h documents. Not the message's text: until
 * round 18 any path holding "lock" (/srv/blocks/ctx) read as locked, and
 * a long path cut the message before its phrase. */
static bool in_use(ctx_status s, int e)
{
	return s == CTX_IO && (e == EWOULDBLOCK || e == EAGAIN);
}

/* Whether dir holds a store: a log segment or a checkpoint (every store has
 * one from its first open on: docs/file-format.md). Opening any other
 * directory would make a new store in it (a LOCK and a wal file). */
static bool holds_store(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return true; /* let the open report why it cannot read it */
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d)))
		found = (strncmp(e->d_name, "wal-", 4) == 0 && ends_with(e->d_name, ".log")) ||
		        (strncmp(e->d_name, "ckpt-", 5) == 0 && ends_with(e->d_name, ".ckpt"));
	closedir(d);
	return found;
}

static int not_a_store(const char *dir)
{
	cli_error("%s: not a ctx data directory (no wal-*.log or ckpt-*.ckpt in it)", dir);
	return EXIT_FAIL;
}

/* Open dir (create = a missing directory is made, for import; else dir
 * must hold a store). */
static int open_store(const char *dir, bool create, ctx_store **out)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		if (!create || errno != ENOENT) {
			cli_error("%s: %s", dir, strerror(errno));
			return EXIT_FAIL;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		cli_error("%s: not a directory", dir);
		return EXIT_FAIL;
	} else if (!create && !holds_store(dir)) {
		return not_a_store(dir);
	}
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir;
	ctx_status s = ctx_open(&o, out);
	int e = errno;
	if (s == CTX_OK)
		return EXIT_OK;
	const char *detail = ctx_last_error();
	if (in_use(s, e)) {
		cli_error("%s is in use by another process (is ctxd running on it?); stop the "
		          "server, or use the online commands (%s)",
		          dir, detail);
		return EXIT_CONNECT;
	}
	cli_error("cannot open %s: %s (%s)", dir, ctx_strerror(s), detail);
	return EXIT_FAIL;
}

/* ---- verify --------------------------------------------------------- */

static void verify_print(const char *dir, ctx_status s, const ctx_verify_report *r, bool json)
{
	if (json) {
		jdoc d;
		jw *w = jdoc_begin(&d);
		jw_obj_begin(w);
		jw_key(w, "dir");
		jw_bytes(w, dir, strlen(dir));
		jw_key(w, "ok");
		jw_bool(w, s == CTX_OK);
		jw_key(w, "status");
		jw_str(w, ctx_strerror(s));
		jw_key(w, "message");
		jw_bytes(w, r->message, strlen(r->message));
		jw_key_u64(w, "checkpoint_revision", r->checkpoint_revision);
		jw_key_u64(w, "checkpoints", r->checkpoints);
		jw_key_u64(w, "checkpoints_damaged", r->checkpoints_damaged);
		jw_key_u64(w, "segments", r->segments);
		jw_key_u64(w, "records", r->records);
		jw_key_u64(w, "last_revision", r->last_revision);
		jw_key_u64(w, "torn_bytes", r->torn_bytes);
		jw_key_u64(w, "contexts", r->contexts);
		jw_key_u64(w, "keys", r->keys);
		jw_obj_end(w);
		jdoc_print(&d);
		return;
	}
	printf("directory            %s\n", dir);
	printf("result               %s\n", s == CTX_OK ? "ok" : ctx_strerror(s));
	printf("message              %s\n", r->message);
	printf("checkpoint revision  %" PRIu64 "\n", r->checkpoint_revision);
	printf("checkpoints          %zu (%zu damaged)\n", r->checkpoints, r->checkpoints_damaged);
	printf("log segments         %zu\n", r->segments);
	printf("log records          %" PRIu64 "\n", r->records);
	printf("last revision        %" PRIu64 "\n", r->last_revision);
	printf("torn tail bytes      %" PRIu64 "\n", r->torn_bytes);
	printf("contexts             %zu\n", r->contexts);
	printf("keys                 %" PRIu64 "\n", r->keys);
}

int cmd_verify(cli *c)
{
	if (!c->dir && c->argc == 0)
		return cmd_verify_online(c);
	const char *dir = take_dir(c);
	if (!dir || c->argc != 0) {
		cli_error("verify: give one data directory (ctx verify --help)");
		return EXIT_USAGE;
	}
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		cli_error("%s: not a directory", dir);
		return EXIT_FAIL;
	}
	if (!holds_store(dir))
		return not_a_store(dir);
	ctx_verify_report r;
	memset(&r, 0, sizeof(r));
	ctx_status s = ctx_verify(dir, &r);
	if (in_use(s, errno)) {
		cli_error("%s is in use by another process (is ctxd running on it?): %s; "
		          "`ctx verify` without DIR asks the running server to check its store",
		          dir, r.message);
		return EXIT_CONNECT;
	}
	verify_print(dir, s, &r, c->json);
	if (s != CTX_OK && !c->json)
		cli_error("%s: %s: %s", dir, ctx_strerror(s), r.message);
	return s == CTX_OK ? EXIT_OK : EXIT_FAIL;
}

/* ---- inspect -------------------------------------------------------- */

static void inspect_json(const ctx_verify_report *r, const ctx_stats *st,
                         const ctx_context_status *v, size_t n)
{
	jdoc d;
	jw *w = jdoc_begin(&d);
	jw_obj_begin(w);
	jw_key(w, "log");
	jw_obj_begin(w);
	jw_key_u64(w, "segments", r->segments);
	jw_key_u64(w, "records", r->records);
	jw_key_u64(w, "torn_bytes", r->torn_bytes);
	jw_key_u64(w, "last_revision", r->last_revision);
	jw_obj_end(w);
	jw_key(w, "checkpoint");
	jw_obj_begin(w);
	jw_key_u64(w, "files", r->checkpoints);
	jw_key_u64(w, "damaged", r->checkpoints_damaged);
	jw_key_u64(w, "revision", r->checkpoint_revision);
	jw_obj_end(w);
	jw_key_u64(w, "revision", st->revision);
	jw_key(w, "contexts");
	jw_arr_begin(w);
	for (size_t i = 0; i < n; i++) {
		jw_obj_begin(w);
		jw_key(w, "id");
		jw_bytes(w, v[i].id, strlen(v[i].id));
		jw_key_u64(w, "version", v[i].version);
		jw_key_u64(w, "keys", v[i].keys);
		jw_key_u64(w, "bytes", v[i].bytes);
		jw_key_u64(w, "points", v[i].points);
		jw_key_u64(w, "created_us", v[i].created_us);
		jw_key_u64(w, "last_access_us", v[i].last_access_us);
		jw_key_u64(w, "ttl_ms", v[i].ttl_ms);
		jw_obj_end(w);
	}
	jw_arr_end(w);
	jw_obj_end(w);
	jdoc_print(&d);
}

static void inspect_table(const char *dir, const ctx_verify_report *r, const ctx_stats *st,
                          const ctx_context_status *v, size_t n)
{
	printf("directory    %s\n", dir);
	printf("log          %zu segment(s), %" PRIu64 " record(s), %" PRIu64
	       " torn byte(s), last revision %" PRIu64 "\n",
	       r->segments, r->records, r->torn_bytes, r->last_revision);
	printf("checkpoints  %zu file(s), %zu damaged, newest covers revision %" PRIu64 "\n",
	       r->checkpoints, r->checkpoints_damaged, r->checkpoint_revision);
	printf("contexts     %zu, store revision %" PRIu64 "\n\n", n, st->revision);
	static const char *const head[] = {"ID",     "VERSION", "KEYS",  "BYTES",
	                                   "POINTS", "CREATED", "TTL_MS"};
	table t;
	table_init(&t, 7, head);
	for (size_t i = 0; i < n; i++) {
		table_cell_bytes(&t, v[i].id, strlen(v[i].id));
		table_cell_u64(&t, v[i].version);
		table_cell_u64(&t, v[i].keys);
		table_cell_u64(&t, v[i].bytes);
		table_cell_u64(&t, v[i].points);
		table_cell_time(&t, v[i].created_us);
		table_cell_u64(&t, v[i].ttl_ms);
	}
	table_print(&t);
	table_free(&t);
}

int cmd_inspect(cli *c)
{
	const char *dir = take_dir(c);
	if (!dir || c->argc != 0) {
		cli_error("inspect: give one data directory (ctx inspect --help)");
		return EXIT_USAGE;
	}
	if (!holds_store(dir))
		return not_a_store(dir);
	ctx_verify_report r;
	memset(&r, 0, sizeof(r));
	ctx_status vs = ctx_verify(dir, &r);
	if (in_use(vs, errno)) {
		cli_error("%s is in use by another process (is ctxd running on it?): %s", dir,
		          r.message);
		return EXIT_CONNECT;
	}
	if (vs != CTX_OK) {
		cli_error("%s fails verification: %s: %s (see `ctx verify %s`)", dir,
		          ctx_strerror(vs), r.message, dir);
		return EXIT_FAIL;
	}
	ctx_store *s;
	int rc = open_store(dir, false, &s);
	if (rc != EXIT_OK)
		return rc;
	ctx_stats st;
	ctx_get_stats(s, &st);
	ctx_context_status *v = NULL;
	size_t n = 0;
	ctx_status vs2 = ctx_status_view(s, &v, &n);
	if (vs2 != CTX_OK) {
		cli_error("status view: %s (%s)", ctx_strerror(vs2), ctx_last_error());
		ctx_close(s);
		return EXIT_FAIL;
	}
	if (c->json)
		inspect_json(&r, &st, v, n);
	else
		inspect_table(dir, &r, &st, v, n);
	free(v);
	ctx_close(s);
	return EXIT_OK;
}

/* ---- export --------------------------------------------------------- */

/* All pairs of st (meta = its metadata map), sorted by key. */
static ctx_status collect_pairs(const ctx_state *st, bool meta, jw_pair **out, size_t *count)
{
	size_t cap = meta ? ctx_state_meta_count(st) : ctx_state_count(st);
	jw_pair *p = malloc((cap ? cap : 1) * sizeof(*p));
	if (!p)
		return CTX_NOMEM;
	ctx_iter *it;
	ctx_status s = meta ? ctx_iter_meta_begin(st, &it) : ctx_iter_begin(st, &it);
	if (s != CTX_OK) {
		free(p);
		return s;
	}
	size_t n = 0;
	jw_pair x;
	while (n < cap && ctx_iter_next(it, &x.k, &x.klen, &x.v, &x.vlen))
		p[n++] = x;
	ctx_iter_free(it); /* the pointers stay valid while st is held */
	qsort(p, n, sizeof(*p), jw_pair_cmp);
	*out = p;
	*count = n;
	return CTX_OK;
}

/* One context as one JSON line into out. */
static ctx_status export_state(const ctx_state *st, buf *out)
{
	jw_pair *f = NULL, *m = NULL;
	size_t nf = 0, nm = 0;
	ctx_status s = collect_pairs(st, false, &f, &nf);
	if (s == CTX_OK)
		s = collect_pairs(st, true, &m, &nm);
	if (s == CTX_OK) {
		jw w;
		jw_init(&w, out);
		jw_obj_begin(&w);
		jw_key(&w, "id");
		jw_bytes(&w, ctx_state_id(st), strlen(ctx_state_id(st)));
		jw_key_u64(&w, "version", ctx_state_version(st));
		jw_pairs(&w, "fields", f, nf, NULL);
		jw_pairs(&w, "meta", m, nm, NULL);
		jw_obj_end(&w);
		buf_putc(out, '\n');
		if (!buf_ok(out))
			s = CTX_NOMEM;
	}
	free(f);
	free(m);
	return s;
}

static FILE *open_output(const char *path)
{
	if (!path || strcmp(path, "-") == 0)
		return stdout;
	return fopen(path, "w");
}

/* Page through all ids and write each context; *n_out counts them. */
static ctx_status export_all(ctx_store *s, FILE *f, progress *pg, size_t *n_out)
{
	char *after = NULL;
	size_t n = 0;
	buf line;
	buf_init(&line);
	ctx_status rc = CTX_OK;
	for (;;) {
		ctx_list l;
		rc = ctx_list_ids(s, NULL, after, 256, &l);
		if (rc != CTX_OK || l.count == 0) {
			if (rc == CTX_OK)
				ctx_list_free(&l);
			break;
		}
		for (size_t i = 0; i < l.count && rc == CTX_OK; i++) {
			ctx_state *st;
			if (ctx_get(s, l.ids[i], &st) != CTX_OK)
				continue; /* cannot happen offline: nobody else writes */
			buf_reset(&line);
			rc = export_state(st, &line);
			ctx_state_release(st);
			if (rc == CTX_OK && fwrite(line.data, 1, line.len, f) != line.len)
				rc = CTX_IO;
			progress_update(pg, ++n);
		}
		free(after);
		after = strdup(l.ids[l.count - 1]);
		ctx_list_free(&l);
		if (!after)
			rc = CTX_NOMEM;
		if (rc != CTX_OK)
			break;
	}
	free(after);
	buf_free(&line);
	*n_out = n;
	return rc;
}

int cmd_export(cli *c)
{
	const char *dir = take_dir(c);
	if (!dir || c->argc > 1) {
		cli_error("export: ctx export DIR [FILE|-] (ctx export --help)");
		return EXIT_USAGE;
	}
	const char *path = c->argc ? c->argv[0] : "-";
	ctx_store *s;
	int rc = open_store(dir, false, &s);
	if (rc != EXIT_OK)
		return rc;
	FILE *f = open_output(path);
	if (!f) {
		cli_error("%s: %s", path, strerror(errno));
		ctx_close(s);
		return EXIT_FAIL;
	}
	progress pg;
	progress_start(&pg, "export", ctx_count(s));
	size_t n = 0;
	ctx_status es = export_all(s, f, &pg, &n);
	progress_end(&pg);
	if (fflush(f) != 0 && es == CTX_OK)
		es = CTX_IO;
	if (f != stdout && fclose(f) != 0 && es == CTX_OK)
		es = CTX_IO;
	ctx_close(s);
	if (es != CTX_OK) {
		cli_error("export failed after %zu context(s): %s%s%s", n, ctx_strerror(es),
		          es == CTX_IO ? ": " : "", es == CTX_IO ? strerror(errno) : "");
		return EXIT_FAIL;
	}
	if (f != stdout)
		fprintf(stderr, "exported %zu context(s) to %s\n", n, path);
	return EXIT_OK;
}

/* ---- import --------------------------------------------------------- */

/* A value in an import line: a string, or {"base64": "..."}. Decoded into b. */
static bool import_value(const json_value *v, buf *b, char *err, size_t errlen)
{
	buf_reset(b);
	if (v->type == JSON_STRING) {
		buf_append(b, v->str, v->len);
		return true;
	}
	const json_value *enc = json_get(v, "base64");
	if (v->type == JSON_OBJECT && v->n == 1 && enc && enc->type == JSON_STRING &&
	    base64_decode(b, enc->str, enc->len))
		return true;
	snprintf(err, errlen, "a value must be a string or {\"base64\": \"...\"}");
	return false;
}

typedef ctx_status (*put_fn)(ctx_txn *, const void *, size_t, const void *, size_t);

/* Record the members of the object `name` (and `name`_base64) with put. */
static ctx_status import_map(ctx_txn *t, const json_value *line, const char *name, put_fn put,
                             char *err, size_t errlen)
{
	char b64name[32];
	snprintf(b64name, sizeof(b64name), "%s_base64", name);
	buf val, key;
	buf_init(&val);
	buf_init(&key);
	ctx_status s = CTX_OK;
	for (int pass = 0; pass < 2 && s == CTX_OK; pass++) {
		const json_value *m = json_get(line, pass ? b64name : name);
		if (!m)
			continue;
		if (m->type != JSON_OBJECT) {
			snprintf(err, errlen, "\"%s\" must be an object", pass ? b64name : name);
			s = CTX_INVALID;
			break;
		}
		for (size_t i = 0; i < m->n && s == CTX_OK; i++) {
			buf_reset(&key);
			if (pass && !base64_decode(&key, m->keys[i], m->klens[i])) {
				snprintf(err, errlen, "a name in \"%s\" is not base64", b64name);
				s = CTX_INVALID;
			} else if (!pass) {
				buf_append(&key, m->keys[i], m->klens[i]);
			}
			if (s == CTX_OK && !import_value(&m->items[i], &val, err, errlen))
				s = CTX_INVALID;
			if (s == CTX_OK && (!buf_ok(&key) || !buf_ok(&val)))
				s = CTX_NOMEM;
			if (s == CTX_OK)
				s = put(t, key.data ? key.data : "", key.len,
				        val.data ? val.data : "", val.len);
			if (s != CTX_OK && !err[0])
				snprintf(err, errlen, "%s: %s", ctx_strerror(s), ctx_last_error());
		}
	}
	buf_free(&val);
	buf_free(&key);
	return s;
}

/* With --replace, an existing context: delete what the line does not hold
 * (fields and metadata) in the same transaction; the puts follow. */
static ctx_status clear_existing(ctx_store *s, const char *id, ctx_txn *t)
{
	ctx_state *st;
	ctx_status rc = ctx_get(s, id, &st);
	if (rc != CTX_OK)
		return rc;
	for (int meta = 0; meta < 2 && rc == CTX_OK; meta++) {
		ctx_iter *it;
		rc = meta ? ctx_iter_meta_begin(st, &it) : ctx_iter_begin(st, &it);
		if (rc != CTX_OK)
			break;
		const void *k, *v;
		size_t kl, vl;
		while (rc == CTX_OK && ctx_iter_next(it, &k, &kl, &v, &vl))
			rc = meta ? ctx_txn_meta_del(t, k, kl) : ctx_txn_del(t, k, kl);
		ctx_iter_free(it);
	}
	ctx_state_release(st);
	return rc;
}

/* Import one parsed line. */
static ctx_status import_line(cli *c, ctx_store *s, const json_value *line, char *err,
                              size_t errlen)
{
	const json_value *id = json_get(line, "id");
	if (line->type != JSON_OBJECT || !id || id->type != JSON_STRING) {
		snprintf(err, errlen, "each line must be an object with a string \"id\"");
		return CTX_INVALID;
	}
	if (strlen(id->str) != id->len) {
		snprintf(err, errlen, "the id holds a NUL byte");
		return CTX_INVALID;
	}
	ctx_state *old = NULL;
	bool exists = ctx_get(s, id->str, &old) == CTX_OK;
	ctx_state_release(old);
	if (exists && !c->replace) {
		snprintf(err, errlen, "context \"%s\" exists already (use --replace)", id->str);
		return CTX_EXISTS;
	}
	ctx_txn *t = NULL;
	ctx_status rc =
	    exists ? ctx_txn_begin(s, id->str, &t) : ctx_txn_begin_create(s, id->str, &t);
	if (rc == CTX_OK && exists)
		rc = clear_existing(s, id->str, t);
	if (rc == CTX_OK)
		rc = import_map(t, line, "fields", ctx_txn_put, err, errlen);
	if (rc == CTX_OK)
		rc = import_map(t, line, "meta", ctx_txn_meta_put, err, errlen);
	if (rc != CTX_OK) {
		ctx_txn_abort(t);
	} else {
		rc = ctx_txn_commit(t, 0, NULL);
	}
	if (rc != CTX_OK && !err[0])
		snprintf(err, errlen, "%s: %s", ctx_strerror(rc), ctx_last_error());
	return rc;
}

static int import_stream(cli *c, ctx_store *s, FILE *f, uint64_t size, const char *path)
{
	progress pg;
	progress_start(&pg, "import", size);
	char *text = NULL;
	size_t cap = 0, n = 0;
	uint64_t lineno = 0, consumed = 0;
	ssize_t len;
	int rc = EXIT_OK;
	while ((len = getline(&text, &cap, f)) >= 0) {
		lineno++;
		consumed += (uint64_t)len;
		size_t l = (size_t)len;
		while (l && (text[l - 1] == '\n' || text[l - 1] == '\r'))
			l--;
		if (l == 0)
			continue; /* blank lines are allowed */
		json_value v;
		char err[512] = "";
		ctx_status st = CTX_INVALID;
		if (json_parse(text, l, &v, err, sizeof(err))) {
			st = import_line(c, s, &v, err, sizeof(err));
			json_free(&v);
		}
		if (st != CTX_OK) {
			progress_end(&pg);
			cli_error("%s:%" PRIu64 ": %s; %zu context(s) imported before it", path,
			          lineno, err, n);
			rc = status_exit(st);
			break;
		}
		n++;
		progress_update(&pg, size ? consumed : n);
	}
	progress_end(&pg);
	free(text);
	if (rc == EXIT_OK && ferror(f)) {
		cli_error("%s: %s", path, strerror(errno));
		rc = EXIT_FAIL;
	}
	if (rc == EXIT_OK)
		fprintf(stderr, "imported %zu context(s)\n", n);
	return rc;
}

int cmd_import(cli *c)
{
	const char *dir = take_dir(c);
	if (!dir || c->argc > 1) {
		cli_error("import: ctx import DIR [FILE|-] (ctx import --help)");
		return EXIT_USAGE;
	}
	const char *path = c->argc ? c->argv[0] : "-";
	bool use_stdin = strcmp(path, "-") == 0;
	FILE *f = use_stdin ? stdin : fopen(path, "r");
	if (!f) {
		cli_error("%s: %s", path, strerror(errno));
		return EXIT_FAIL;
	}
	struct stat fst;
	uint64_t size =
	    fstat(fileno(f), &fst) == 0 && S_ISREG(fst.st_mode) ? (uint64_t)fst.st_size : 0;
	ctx_store *s;
	int rc = open_store(dir, true, &s);
	if (rc == EXIT_OK) {
		rc = import_stream(c, s, f, size, use_stdin ? "<stdin>" : path);
		ctx_close(s);
	}
	if (!use_stdin)
		fclose(f);
	return rc;
}
