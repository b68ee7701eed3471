/*
 * json.c - JSON writing and parsing for the ctx command-line tool (see json.h).
 *
 * The parser is a plain recursive descent over RFC 8259: it accepts exactly
 * the grammar (no comments, no trailing commas, no NaN), validates that the
 * text is UTF-8, joins surrogate pairs of \u escapes, and refuses lone
 * surrogates, so every string it returns is valid UTF-8.
 */
#include "json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

/* ---- UTF-8 ---------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool utf8_valid(const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i = 0;
	while (i < n) {
		size_t k = utf8_seq(s + i, n - i);
		if (!k)
			return false;
		i += k;
	}
	return true;
}

/* ---- writing -------------------------------------------------------- */

void json_quote(buf *out, const void *p, size_t n)
{
	const unsigned char *s = p;
	buf_putc(out, '"');
	size_t run = 0; /* start of the bytes not yet copied */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
			continue;
		buf_append(out, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"':
			buf_puts(out, "\\\"");
			break;
		case '\\':
			buf_puts(out, "\\\\");
			break;
		case '\n':
			buf_puts(out, "\\n");
			break;
		case '\r':
			buf_puts(out, "\\r");
			break;
		case '\t':
			buf_puts(out, "\\t");
			break;
		default:
			buf_printf(out, "\\u%04x", c);
		}
	}
	buf_append(out, s + run, n - run);
	buf_putc(out, '"');
}

void jw_init(jw *w, buf *out)
{
	memset(w, 0, sizeof(*w));
	w->out = out;
}

/* Called before every value or key: the comma between siblings. */
static void jw_sep(jw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->need_comma[w->depth])
		buf_putc(w->out, ',');
	w->need_comma[w->depth] = true;
}

static void jw_open(jw *w, char c)
{
	jw_sep(w);
	buf_putc(w->out, c);
	if (w->depth < JW_MAX_DEPTH)
		w->depth++;
	w->need_comma[w->depth] = false;
}

static void jw_close(jw *w, char c)
{
	buf_putc(w->out, c);
	if (w->depth > 0)
		w->depth--;
}

void jw_obj_begin(jw *w)
{
	jw_open(w, '{');
}

void jw_obj_end(jw *w)
{
	jw_close(w, '}');
}

void jw_arr_begin(jw *w)
{
	jw_open(w, '[');
}

void jw_arr_end(jw *w)
{
	jw_close(w, ']');
}

void jw_keyn(jw *w, const void *k, size_t n)
{
	jw_sep(w);
	json_quote(w->out, k, n);
	buf_putc(w->out, ':');
	w->after_key = true;
}

void jw_key(jw *w, const char *k)
{
	jw_keyn(w, k, strlen(k));
}

void jw_str(jw *w, const char *s)
{
	jw_sep(w);
	json_quote(w->out, s, strlen(s));
}

void jw_bytes(jw *w, const void *p, size_t n)
{
	if (utf8_valid(p, n)) {
		jw_sep(w);
		json_quote(w->out, p, n);
		return;
	}
	jw_obj_begin(w);
	jw_key(w, "base64");
	jw_sep(w);
	buf_putc(w->out, '"');
	base64_encode(w->out, p, n);
	buf_putc(w->out, '"');
	jw_obj_end(w);
}

void jw_u64(jw *w, uint64_t v)
{
	jw_sep(w);
	buf_printf(w->out, "%" PRIu64, v);
}

void jw_i64(jw *w, int64_t v)
{
	jw_sep(w);
	buf_printf(w->out, "%" PRId64, v);
}

void jw_bool(jw *w, bool v)
{
	jw_sep(w);
	buf_puts(w->out, v ? "true" : "false");
}

void jw_null(jw *w)
{
	jw_sep(w);
	buf_puts(w->out, "null");
}

void jw_key_u64(jw *w, const char *k, uint64_t v)
{
	jw_key(w, k);
	jw_u64(w, v);
}

jw *jdoc_begin(jdoc *d)
{
	buf_init(&d->b);
	jw_init(&d->w, &d->b);
	return &d->w;
}

void jdoc_print(jdoc *d)
{
	if (buf_ok(&d->b)) {
		fwrite(d->b.data, 1, d->b.len, stdout);
		fputc('\n', stdout);
	} else {
		fputs("ctx: out of memory\n", stderr);
	}
	buf_free(&d->b);
}

int jw_pair_cmp(const void *a, const void *b)
{
	const jw_pair *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int d = memcmp(x->k, y->k, n);
	return d ? d : (x->klen > y->klen) - (x->klen < y->klen);
}

/* The members of jw_pairs' object: those with UTF-8 names, or (base64) the
 * others under their names in base64. */
static void jw_members(jw *w, const jw_pair *p, size_t n, jw_value_fn *value, bool base64)
{
	buf k;
	buf_init(&k);
	for (size_t i = 0; i < n; i++) {
		if (utf8_valid(p[i].k, p[i].klen) == base64)
			continue;
		if (base64) {
			buf_reset(&k);
			base64_encode(&k, p[i].k, p[i].klen);
			jw_keyn(w, k.data, k.len);
		} else {
			jw_keyn(w, p[i].k, p[i].klen);
		}
		if (value)
			value(w, &p[i]);
		else
			jw_bytes(w, p[i].v, p[i].vlen);
	}
	buf_free(&k);
}

void jw_pairs(jw *w, const char *name, const jw_pair *p, size_t n, jw_value_fn *value)
{
	size_t binary = 0;
	for (size_t i = 0; i < n; i++)
		binary += !utf8_valid(p[i].k, p[i].klen);
	jw_key(w, name);
	jw_obj_begin(w);
	jw_members(w, p, n, value, false);
	jw_obj_end(w);
	if (!binary)
		return;
	char key[64];
	snprintf(key, sizeof(key), "%s_base64", name);
	jw_key(w, key);
	jw_obj_begin(w);
	jw_members(w, p, n, value, true);
	jw_obj_end(w);
}

/* ---- parsing -------------------------------------------------------- */

typedef struct parser {
	const char *s;
	size_t n;
	size_t pos;
	int depth;
	char *err;
	size_t errlen;
	bool failed;
} parser;

static bool fail(parser *p, const char *msg)
{
	if (!p->failed)
		snprintf(p->err, p->errlen, "%s at byte %zu", msg, p->pos);
	p->failed = true;
	return false;
}

static void skip_ws(parser *p)
{
	while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
	                         p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
		p->pos++;
}

static bool parse_value(parser *p, json_value *v);

static bool literal(parser *p, const char *word, json_type t, json_value *v)
{
	size_t k = strlen(word);
	if (p->n - p->pos < k || memcmp(p->s + p->pos, word, k) != 0)
		return fail(p, "unexpected character");
	p->pos += k;
	v->type = t;
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits at pos (after "\u"). */
static bool hex4(parser *p, uint32_t *out)
{
	if (p->n - p->pos < 4)
		return fail(p, "short \\u escape");
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(p->s[p->pos + (size_t)i]);
		if (h < 0)
			return fail(p, "bad \\u escape");
		v = (v << 4) | (uint32_t)h;
	}
	p->pos += 4;
	*out = v;
	return true;
}

static void put_utf8(buf *b, uint32_t cp)
{
	char o[4];
	if (cp < 0x80) {
		o[0] = (char)cp;
		buf_append(b, o, 1);
	} else if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		buf_append(b, o, 2);
	} else if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		buf_append(b, o, 3);
	} else {
		o[0] = (char)(0xf0 | (cp >> 18));
		o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[3] = (char)(0x80 | (cp & 0x3f));
		buf_append(b, o, 4);
	}
}

/* A \u escape (the "\u" already consumed), joining a surrogate pair. */
static bool unicode_escape(parser *p, buf *b)
{
	uint32_t cp;
	if (!hex4(p, &cp))
		return false;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return fail(p, "lone low surrogate");
	if (cp >= 0xd800 && cp <= 0xdbff) {
		uint32_t lo;
		if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
			return fail(p, "lone high surrogate");
		p->pos += 2;
		if (!hex4(p, &lo))
			return false;
		if (lo < 0xdc00 || lo > 0xdfff)
			return fail(p, "bad surrogate pair");
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	put_utf8(b, cp);
	return true;
}

static bool simple_escape(parser *p, buf *b)
{
	static const char from[] = "\"\\/bfnrt";
	static const char to[] = "\"\\/\b\f\n\r\t";
	const char *k = p->pos < p->n ? memchr(from, p->s[p->pos], sizeof(from) - 1) : NULL;
	if (!k)
		return fail(p, "bad escape");
	p->pos++;
	buf_putc(b, to[k - from]);
	return true;
}

/* A string at pos (the opening quote) into *out and *outlen (malloc'd). */
static bool parse_string(parser *p, char **out, size_t *outlen)
{
	buf b;
	buf_init(&b);
	p->pos++; /* the quote */
	for (;;) {
		if (p->pos >= p->n) {
			buf_free(&b);
			return fail(p, "unterminated string");
		}
		unsigned char c = (unsigned char)p->s[p->pos];
		bool ok = true;
		if (c == '"') {
			p->pos++;
			break;
		} else if (c == '\\') {
			p->pos++;
			if (p->pos < p->n && p->s[p->pos] == 'u') {
				p->pos++;
				ok = unicode_escape(p, &b);
			} else {
				ok = simple_escape(p, &b);
			}
		} else if (c < 0x20) {
			ok = fail(p, "control character in string");
		} else {
			size_t k = utf8_seq((const unsigned char *)p->s + p->pos, p->n - p->pos);
			if (!k)
				ok = fail(p, "invalid UTF-8 in string");
			else
				buf_append(&b, p->s + p->pos, k);
			p->pos += k;
		}
		if (!ok) {
			buf_free(&b);
			return false;
		}
	}
	if (!buf_ok(&b)) {
		buf_free(&b);
		return fail(p, "out of memory");
	}
	*outlen = b.len;
	*out = b.data ? buf_take(&b) : strdup("");
	if (!*out)
		return fail(p, "out of memory");
	return true;
}

static bool digits(parser *p)
{
	size_t start = p->pos;
	while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
		p->pos++;
	return p->pos > start;
}

static bool parse_number(parser *p, json_value *v)
{
	size_t start = p->pos;
	if (p->s[p->pos] == '-')
		p->pos++;
	if (p->pos < p->n && p->s[p->pos] == '0')
		p->pos++;
	else if (!digits(p))
		return fail(p, "bad number");
	if (p->pos < p->n && p->s[p->pos] == '.') {
		p->pos++;
		if (!digits(p))
			return fail(p, "bad number");
	}
	if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
		p->pos++;
		if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
			p->pos++;
		if (!digits(p))
			return fail(p, "bad number");
	}
	v->type = JSON_NUMBER;
	v->len = p->pos - start;
	v->str = strndup(p->s + start, v->len);
	return v->str ? true : fail(p, "out of memory");
}

/* Append an empty item to v's items (and, for objects, a name slot). */
static json_value *add_item(parser *p, json_value *v, char *key, size_t klen)
{
	json_value *items = realloc(v->items, (v->n + 1) * sizeof(*items));
	if (!items)
		return fail(p, "out of memory"), NULL;
	v->items = items;
	if (v->type == JSON_OBJECT) {
		char **keys = realloc(v->keys, (v->n + 1) * sizeof(*keys));
		if (keys)
			v->keys = keys;
		size_t *kl = keys ? realloc(v->klens, (v->n + 1) * sizeof(*kl)) : NULL;
		if (!kl)
			return fail(p, "out of memory"), NULL;
		v->klens = kl;
		v->keys[v->n] = key;
		v->klens[v->n] = klen;
	}
	memset(&v->items[v->n], 0, sizeof(json_value));
	return &v->items[v->n++];
}

static bool duplicate_key(const json_value *v, const char *k, size_t klen)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->klens[i] == klen && memcmp(v->keys[i], k, klen) == 0)
			return true;
	return false;
}

static bool parse_member(parser *p, json_value *v)
{
	skip_ws(p);
	if (p->pos >= p->n || p->s[p->pos] != '"')
		return fail(p, "expected a member name");
	char *key;
	size_t klen;
	if (!parse_string(p, &key, &klen))
		return false;
	if (duplicate_key(v, key, klen)) {
		free(key);
		return fail(p, "repeated member name");
	}
	json_value *item = add_item(p, v, key, klen);
	if (!item) {
		free(key);
		return false;
	}
	skip_ws(p);
	if (p->pos >= p->n || p->s[p->pos] != ':')
		return fail(p, "expected ':'");
	p->pos++;
	return parse_value(p, item);
}

/* An array or object at pos (the opening bracket). */
static bool parse_container(parser *p, json_value *v, bool object)
{
	char close = object ? '}' : ']';
	v->type = object ? JSON_OBJECT : JSON_ARRAY;
	if (++p->depth > JSON_MAX_DEPTH)
		return fail(p, "nested too deeply");
	p->pos++;
	skip_ws(p);
	if (p->pos < p->n && p->s[p->pos] == close) {
		p->pos++;
		p->depth--;
		return true;
	}
	for (;;) {
		if (object) {
			if (!parse_member(p, v))
				return false;
		} else {
			json_value *item = add_item(p, v, NULL, 0);
			if (!item || !parse_value(p, item))
				return false;
		}
		skip_ws(p);
		if (p->pos < p->n && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if (p->pos < p->n && p->s[p->pos] == close) {
			p->pos++;
			p->depth--;
			return true;
		}
		return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
	}
}

static bool parse_value(parser *p, json_value *v)
{
	skip_ws(p);
	if (p->pos >= p->n)
		return fail(p, "unexpected end");
	switch (p->s[p->pos]) {
	case '{':
		return parse_container(p, v, true);
	case '[':
		return parse_container(p, v, false);
	case '"':
		v->type = JSON_STRING;
		return parse_string(p, &v->str, &v->len);
	case 't':
		return literal(p, "true", JSON_TRUE, v);
	case 'f':
		return literal(p, "false", JSON_FALSE, v);
	case 'n':
		return literal(p, "null", JSON_NULL, v);
	default:
		if (p->s[p->pos] == '-' || (p->s[p->pos] >= '0' && p->s[p->pos] <= '9'))
			return parse_number(p, v);
		return fail(p, "unexpected character");
	}
}

bool json_parse(const char *text, size_t n, json_value *out, char *err, size_t errlen)
{
	parser p = {.s = text, .n = n, .err = err, .errlen = errlen};
	memset(out, 0, sizeof(*out));
	bool ok = parse_value(&p, out);
	if (ok) {
		skip_ws(&p);
		if (p.pos != n)
			ok = fail(&p, "text after the value");
	}
	if (!ok)
		json_free(out);
	return ok;
}

void json_free(json_value *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++) {
		json_free(&v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->klens);
	free(v->str);
	memset(v, 0, sizeof(*v));
}

const json_value *json_get(const json_value *v, const char *name)
{
	if (!v || v->type != JSON_OBJECT)
		return NULL;
	size_t k = strlen(name);
	for (size_t i = 0; i < v->n; i++)
		if (v->klens[i] == k && memcmp(v->keys[i], name, k) == 0)
			return &v->items[i];
	return NULL;
}

bool json_u64(const json_value *v, uint64_t *out)
{
	if (!v || v->type != JSON_NUMBER || v->str[0] == '-')
		return false;
	uint64_t x = 0;
	for (size_t i = 0; i < v->len; i++) {
		char c = v->str[i];
		if (c < '0' || c > '9')
			return false;
		if (x > (UINT64_MAX - (uint64_t)(c - '0')) / 10)
			return false;
		x = x * 10 + (uint64_t)(c - '0');
	}
	*out = x;
	return true;
}
