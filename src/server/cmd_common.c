/*
 * cmd_common.c - helpers shared by the data command files (see
 * cmd_common.h): the glob matcher, strict number parsers, reading a context
 * as a Redis hash, and blocking jobs.
 *
 * The glob matcher follows Redis's stringmatchlen (util.c) rule for rule,
 * including its guard against exponential backtracking: once a '*' has tried
 * every suffix of the string and failed, no longer match can succeed, so the
 * callers above it stop too. Unlike Redis it never reads past the pattern
 * (Redis relies on a terminating NUL; our arguments point into the input
 * buffer) and compares bytes as unsigned in ranges.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_common.h"

/* ---- glob ------------------------------------------------------------------ */

static bool same_byte(unsigned char a, unsigned char b, bool nocase)
{
	return nocase ? tolower(a) == tolower(b) : a == b;
}

/* A '[...]' class at p (just after '['), against byte ch. Advances *pp and
 * *pnp to the closing ']' (or the last byte when unterminated). */
static bool glob_class(const unsigned char **pp, size_t *pnp, unsigned char ch, bool nocase)
{
	const unsigned char *p = *pp;
	size_t pn = *pnp;
	bool negate = pn && p[0] == '^', match = false;
	if (negate) {
		p++;
		pn--;
	}
	for (;;) {
		if (pn == 0) { /* unterminated: the last byte closes it, as in Redis */
			p--;
			pn++;
			break;
		}
		if (p[0] == '\\' && pn >= 2) {
			p++;
			pn--;
			match |= p[0] == ch;
		} else if (p[0] == ']') {
			break;
		} else if (pn >= 3 && p[1] == '-') {
			unsigned char lo = p[0], hi = p[2], x = ch;
			if (lo > hi) {
				unsigned char t = lo;
				lo = hi;
				hi = t;
			}
			if (nocase) {
				lo = (unsigned char)tolower(lo);
				hi = (unsigned char)tolower(hi);
				x = (unsigned char)tolower(x);
			}
			p += 2;
			pn -= 2;
			match |= x >= lo && x <= hi;
		} else {
			match |= same_byte(p[0], ch, nocase);
		}
		p++;
		pn--;
	}
	*pp = p;
	*pnp = pn;
	return negate ? !match : match;
}

static bool glob_rec(const unsigned char *p, size_t pn, const unsigned char *s, size_t sn,
                     bool nocase, bool *give_up, int depth)
{
	if (depth > 1000)
		return false;
	while (pn && sn) {
		switch (p[0]) {
		case '*':
			while (pn >= 2 && p[1] == '*') {
				p++;
				pn--;
			}
			if (pn == 1)
				return true;
			while (sn) {
				if (glob_rec(p + 1, pn - 1, s, sn, nocase, give_up, depth + 1))
					return true;
				if (*give_up)
					return false;
				s++;
				sn--;
			}
			*give_up = true;
			return false;
		case '?':
			break;
		case '[':
			p++;
			pn--;
			if (!glob_class(&p, &pn, s[0], nocase))
				return false;
			break;
		case '\\':
			if (pn >= 2) {
				p++;
				pn--;
			}
			/* fall through */
		default:
			if (!same_byte(p[0], s[0], nocase))
				return false;
			break;
		}
		s++;
		sn--;
		p++;
		pn--;
		if (sn == 0)
			while (pn && p[0] == '*') {
				p++;
				pn--;
			}
	}
	return pn == 0 && sn == 0;
}

bool glob_match(const char *pat, size_t pn, const char *s, size_t sn, bool nocase)
{
	bool give_up = false;
	return glob_rec((const unsigned char *)pat, pn, (const unsigned char *)s, sn, nocase,
	                &give_up, 0);
}

/* ---- numbers --------------------------------------------------------------- */

bool parse_ll(const char *p, size_t n, long long *out)
{
	bool neg = n && p[0] == '-';
	size_t i = neg;
	if (i == n || n > 20)
		return false;
	if (p[i] == '0') {
		if (n != 1)
			return false;
		*out = 0;
		return true;
	}
	unsigned long long v = 0;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (ULLONG_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (neg) {
		if (v > (unsigned long long)LLONG_MAX + 1)
			return false;
		*out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
	} else {
		if (v > LLONG_MAX)
			return false;
		*out = (long long)v;
	}
	return true;
}

/* Digits only (any number of leading zeros), within uint64_t. */
static bool parse_digits_u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

bool parse_u64(const char *p, size_t n, uint64_t *out)
{
	return n > 0 && n <= 20 && parse_digits_u64(p, n, out);
}

bool parse_scan_cursor(const char *p, size_t n, uint64_t *out)
{
	const char *nul = n ? memchr(p, '\0', n) : NULL;
	if (nul)
		n = (size_t)(nul - p);
	if (n == 0) {
		*out = 0; /* strtoul converts nothing and stops at the end */
		return true;
	}
	size_t i = p[0] == '-' || p[0] == '+';
	uint64_t v;
	if (i == n || !parse_digits_u64(p + i, n - i, &v))
		return false;
	*out = p[0] == '-' ? (uint64_t)0 - v : v;
	return true;
}

/* ---- SCAN and HSCAN options ------------------------------------------------- */

/* [MATCH p] [COUNT n] [NOVALUES] [TYPE t] from argv[from]. */
bool parse_scan_opts(client *c, int argc, const arg *argv, int from, bool allow_novalues,
                     bool allow_type, scan_opts *o)
{
	*o = (scan_opts){NULL, 10, false, NULL};
	for (int i = from; i < argc; i++) {
		bool more = i + 1 < argc;
		if (arg_is(&argv[i], "MATCH") && more) {
			o->match = &argv[++i];
		} else if (arg_is(&argv[i], "COUNT") && more) {
			if (!parse_ll(argv[i + 1].p, argv[i + 1].n, &o->count)) {
				reply_error(c, "ERR value is not an integer or out of range");
				return false;
			}
			if (o->count < 1) {
				reply_error(c, "ERR syntax error");
				return false;
			}
			i++;
		} else if (allow_novalues && arg_is(&argv[i], "NOVALUES")) {
			o->novalues = true;
		} else if (allow_type && arg_is(&argv[i], "TYPE") && more) {
			o->type = &argv[++i];
		} else {
			reply_error(c, "ERR syntax error");
			return false;
		}
	}
	return true;
}

/* ---- keys as context ids ---------------------------------------------------- */

int key_to_id(client *c, const arg *a, char id[CTX_ID_MAX + 1])
{
	if (a->n == 1 && a->p[0] == '.')
		return arg_to_id(c, a, id) ? 1 : -1;
	if (a->n == 0 || a->n > CTX_ID_MAX)
		return 0;
	for (size_t i = 0; i < a->n; i++) {
		unsigned char b = (unsigned char)a->p[i];
		if (b < 0x20 || b == 0x7f)
			return 0;
	}
	memcpy(id, a->p, a->n);
	id[a->n] = '\0';
	return 1;
}

void reply_unknown_subcommand(client *c, const char *cmd, const arg *sub)
{
	reply_error(c,
	            "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try %s HELP.",
	            (int)(sub->n > 64 ? 64 : sub->n), sub->p, cmd);
}

void reply_help(client *c, const char *const *lines, size_t n)
{
	reply_array(c, n);
	for (size_t i = 0; i < n; i++)
		reply_simple(c, lines[i]);
}

void need_durable_all(client *c)
{
	ctx_stats s;
	ctx_get_stats(server_store(), &s);
	client_need_durable(c, s.revision);
}

ctx_state *hash_read(client *c, const arg *a, bool *failed)
{
	char id[CTX_ID_MAX + 1];
	*failed = false;
	int r = key_to_id(c, a, id);
	if (r < 0) {
		*failed = true;
		return NULL;
	}
	ctx_state *st = NULL;
	if (r == 0 || ctx_get_latest(server_store(), id, &st) != CTX_OK) {
		need_durable_all(c);
		return NULL;
	}
	client_need_durable(c, ctx_state_revision(st));
	if (ctx_state_count(st) == 0) {
		ctx_state_release(st);
		return NULL;
	}
	return st;
}

wbatch *hash_read_wb(client *c, const arg *a, bool *failed)
{
	char id[CTX_ID_MAX + 1];
	*failed = false;
	int r = key_to_id(c, a, id);
	if (r == 0) {
		need_durable_all(c);
		return NULL;
	}
	wbatch *w = r > 0 ? client_wbatch(c, id) : NULL;
	if (!w) {
		*failed = true;
		return NULL;
	}
	if (!wb_base(w))
		need_durable_all(c); /* its drop may be decided, not durable */
	return wb_exists(w) && wb_count(w) > 0 ? w : NULL;
}

/* ---- blocking jobs ---------------------------------------------------------- */

job *job_new(client *c)
{
	job *j = calloc(1, sizeof(*j));
	if (!j)
		reply_error(c, "CTXNOMEM out of memory");
	return j;
}

static void job_thread(void *p)
{
	job *j = p;
	j->run(j);
	if (j->st != CTX_OK)
		snprintf(j->err, sizeof(j->err), "%s", ctx_last_error());
}

static void job_done(client *c, void *p)
{
	job *j = p;
	if (c) {
		if (j->st != CTX_OK)
			reply_error(c, "%s %s", status_word(j->st),
			            j->err[0] ? j->err : ctx_strerror(j->st));
		else
			j->reply(c, j);
	}
	if (j->free_data)
		j->free_data(j);
	free(j);
}

void job_start(client *c, job *j)
{
	server_run_blocking(c, job_thread, job_done, j);
}
