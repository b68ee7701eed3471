/*
 * json.h - the JSON the ctx command-line tool reads and writes.
 *
 * Writing: a jw (JSON writer) appends to a buf and puts the commas itself, so a
 * caller only says what comes next (jw_key, jw_str, jw_obj_begin ...). Byte
 * strings are written by jw_bytes: as a JSON string when they are valid UTF-8,
 * otherwise as {"base64": "..."}: the one rule for binary data everywhere in
 * the CLI (docs/cli.md), and jw_pairs writes a map whose names may be any
 * bytes (names that are not UTF-8 go, base64-encoded, into "NAME_base64").
 * A jdoc is a document printed to stdout as one line.
 *
 * Reading: json_parse builds a tree of json_value from a complete text (one
 * line of an import file). Strings are binary-safe (\u0000 gives a NUL byte,
 * `len` is their length); numbers keep their text so that 64-bit integers are
 * read exactly (json_u64). Depth is bounded (JSON_MAX_DEPTH) so hostile input
 * cannot overflow the stack.
 */
#ifndef CTX_CLI_JSON_H
#define CTX_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Whether p[0..n) is valid UTF-8 (shortest forms, no surrogates, <= U+10FFFF). */
bool utf8_valid(const void *p, size_t n);

/* Append s[0..n) to out as a quoted JSON string (s must be valid UTF-8):
 * `"` `\` and control characters escaped, \u0000 for NUL. */
void json_quote(buf *out, const void *s, size_t n);

#define JW_MAX_DEPTH 16

typedef struct jw {
	buf *out;
	int depth;
	bool need_comma[JW_MAX_DEPTH + 1];
	bool after_key;
} jw;

void jw_init(jw *w, buf *out);
void jw_obj_begin(jw *w);
void jw_obj_end(jw *w);
void jw_arr_begin(jw *w);
void jw_arr_end(jw *w);
void jw_key(jw *w, const char *k);             /* a UTF-8 NUL-terminated name */
void jw_keyn(jw *w, const void *k, size_t n);  /* must be valid UTF-8 */
void jw_str(jw *w, const char *s);             /* must be valid UTF-8 */
void jw_bytes(jw *w, const void *p, size_t n); /* string, or {"base64": ...} */
void jw_u64(jw *w, uint64_t v);
void jw_i64(jw *w, int64_t v);
void jw_bool(jw *w, bool v);
void jw_null(jw *w);
void jw_key_u64(jw *w, const char *k, uint64_t v); /* a member: jw_key, then jw_u64 */

/* A JSON document for stdout: jdoc_begin, write with the jw it returns, then
 * jdoc_print prints it and a newline ("out of memory" on stderr instead if an
 * allocation failed) and frees it. */
typedef struct jdoc {
	buf b;
	jw w;
} jdoc;

jw *jdoc_begin(jdoc *d);
void jdoc_print(jdoc *d);

/* A member of a map whose names may be any bytes: an export's fields and
 * metadata, the fields of a CTX.GET reply. v and vlen are the value's bytes,
 * or whatever the value writer given to jw_pairs reads. */
typedef struct jw_pair {
	const void *k;
	size_t klen;
	const void *v;
	size_t vlen;
} jw_pair;

typedef void jw_value_fn(jw *w, const jw_pair *p);

/* For qsort: by name, bytewise (a shorter name first when one is a prefix). */
int jw_pair_cmp(const void *a, const void *b);

/* "name": {...} with the pairs whose names are UTF-8, and then, only if some
 * name is not, "name_base64": {...} with those pairs under their names in
 * base64 (docs/cli.md). Each value is written by value, or as jw_bytes(v,
 * vlen) when value is NULL. */
void jw_pairs(jw *w, const char *name, const jw_pair *p, size_t n, jw_value_fn *value);

typedef enum json_type {
	JSON_NULL,
	JSON_FALSE,
	JSON_TRUE,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT
} json_type;

typedef struct json_value json_value;
struct json_value {
	json_type type;
	char *str;         /* JSON_STRING: the bytes (NUL-terminated too);
	                      JSON_NUMBER: its text */
	size_t len;        /* length of str */
	size_t n;          /* JSON_ARRAY/JSON_OBJECT: number of items */
	json_value *items; /* the items (values of an object) */
	char **keys;       /* JSON_OBJECT: member names, NUL-terminated */
	size_t *klens;     /* JSON_OBJECT: their lengths (names may hold NUL) */
};

#define JSON_MAX_DEPTH 64

/* Parse the whole of text[0..n) (white space around allowed) into *out.
 * On error returns false, fills err (>= 80 bytes) with a message and the
 * byte offset, and leaves *out empty. Free with json_free. Objects keep their
 * members in input order; a repeated name is an error. */
bool json_parse(const char *text, size_t n, json_value *out, char *err, size_t errlen);
void json_free(json_value *v);

/* The member `name` of object v, or NULL. */
const json_value *json_get(const json_value *v, const char *name);

/* A number that is a non-negative integer fitting in 64 bits. */
bool json_u64(const json_value *v, uint64_t *out);

#endif
