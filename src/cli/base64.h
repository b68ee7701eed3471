/*
 * base64.h - standard base64 (RFC 4648, alphabet A-Z a-z 0-9 + /, with '='
 * padding), used by `ctx export`/`import` and --json output for values that
 * are not valid UTF-8.
 */
#ifndef CTX_CLI_BASE64_H
#define CTX_CLI_BASE64_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Append the encoding of p[0..n) to out. */
void base64_encode(buf *out, const void *p, size_t n);

/* Decode s[0..n) and append the bytes to out. Strict: the length must be a
 * multiple of 4, padding only at the end, no other characters (no white
 * space), and the unused bits of the last group must be zero, so every byte
 * string has exactly one accepted encoding. False (out unchanged) if s is not
 * such an encoding. */
bool base64_decode(buf *out, const char *s, size_t n);

#endif
