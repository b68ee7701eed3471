/*
 * base64.c - strict RFC 4648 base64 (see base64.h). Decoding rejects anything
 * that encoding would not produce, so that a round trip is exact and a typo in
 * an import file is an error instead of silently different bytes.
 */
#include "base64.h"

#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(buf *out, const void *p, size_t n)
{
	const unsigned char *s = p;
	char q[4];
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		q[0] = alphabet[(v >> 18) & 63];
		q[1] = alphabet[(v >> 12) & 63];
		q[2] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? alphabet[v & 63] : '=';
		buf_append(out, q, 4);
	}
}

static int sextet(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode one group of 4 characters; last = it is the final group (padding
 * allowed). Returns the number of bytes (1..3) or -1. */
static int decode_group(const char *g, bool last, unsigned char outb[3])
{
	int pad = 0;
	if (last && g[3] == '=')
		pad = g[2] == '=' ? 2 : 1;
	uint32_t v = 0;
	for (int k = 0; k < 4 - pad; k++) {
		int x = sextet(g[k]);
		if (x < 0)
			return -1;
		v |= (uint32_t)x << (18 - 6 * k);
	}
	if ((pad == 2 && (v & 0xffff)) || (pad == 1 && (v & 0xff)))
		return -1; /* non-zero unused bits */
	outb[0] = (unsigned char)(v >> 16);
	outb[1] = (unsigned char)(v >> 8);
	outb[2] = (unsigned char)v;
	return 3 - pad;
}

bool base64_decode(buf *out, const char *s, size_t n)
{
	if (n % 4)
		return false;
	size_t start = out->len;
	for (size_t i = 0; i < n; i += 4) {
		unsigned char b[3];
		int k = decode_group(s + i, i + 4 == n, b);
		if (k < 0) {
			out->len = start;
			if (out->data)
				out->data[start] = '\0';
			return false;
		}
		buf_append(out, b, (size_t)k);
	}
	return true;
}
