/*
 * crc32c.c - CRC-32C with the SSE4.2 crc32 instruction, or a table.
 *
 * The crc32 instruction takes 3 cycles and can start one every cycle, so
 * one chain of them over a buffer runs at a third of what the unit can do.
 * Buffers of at least 3 * CRC_SHORT bytes are cut into three equal blocks
 * taken side by side (three independent chains), and the three CRCs are
 * joined: a CRC register shifted over n zero bytes is a linear function of
 * the register, applied with four 256-entry tables per block length
 * (shift_long, shift_short; built once with the instruction itself). This
 * is Mark Adler's method (crc32c.c, 2013; the Linux kernel's
 * crc32c-pcl-intel does the same with carry-less multiplies). Records of
 * 1 KiB and more, and the checkpoint's sections, checksum about twice as
 * fast (docs/benchmarks.md, "Round 14: replay").
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t table[256];
static int have_sse42;

#if defined(__x86_64__)
#define CRC_LONG  2048 /* block of a round of three for large buffers */
#define CRC_SHORT 128  /* and for the rest (records of ~1 KiB) */

/* shift_*[k][v]: the register v << 8k run over CRC_LONG or CRC_SHORT zero
 * bytes (no pre- or post-inversion). */
static uint32_t shift_long[4][256], shift_short[4][256];

__attribute__((target("sse4.2"))) static uint32_t zeros(uint32_t c, size_t n)
{
	uint64_t r = c;
	for (size_t i = 0; i < n; i += 8)
		r = __builtin_ia32_crc32di(r, 0);
	return (uint32_t)r;
}

static void shift_init(uint32_t t[4][256], size_t n)
{
	for (unsigned k = 0; k < 4; k++)
		for (uint32_t v = 0; v < 256; v++)
			t[k][v] = zeros(v << (8 * k), n);
}

static inline uint32_t shift(uint32_t t[4][256], uint32_t c)
{
	return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

static inline uint64_t word_at(const unsigned char *b)
{
	uint64_t w;
	memcpy(&w, b, 8);
	return w;
}

/* Three blocks of `block` bytes (a multiple of 8) at b, as one run: the
 * first continues c, the others start from 0 and are joined by shifts. */
__attribute__((target("sse4.2"))) static uint64_t three_blocks(uint64_t c,
                                                               const unsigned char *b,
                                                               size_t block, uint32_t t[4][256])
{
	uint64_t c1 = 0, c2 = 0;
	for (size_t i = 0; i < block; i += 8) {
		c = __builtin_ia32_crc32di(c, word_at(b + i));
		c1 = __builtin_ia32_crc32di(c1, word_at(b + block + i));
		c2 = __builtin_ia32_crc32di(c2, word_at(b + 2 * block + i));
	}
	c = shift(t, (uint32_t)c) ^ c1;
	return shift(t, (uint32_t)c) ^ c2;
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
	for (; n >= 3 * CRC_LONG; b += 3 * CRC_LONG, n -= 3 * CRC_LONG)
		c = three_blocks(c, b, CRC_LONG, shift_long);
	for (; n >= 3 * CRC_SHORT; b += 3 * CRC_SHORT, n -= 3 * CRC_SHORT)
		c = three_blocks(c, b, CRC_SHORT, shift_short);
	while (n >= 8) {
		c = __builtin_ia32_crc32di(c, word_at(b));
		b += 8;
		n -= 8;
	}
	while (n--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *b++);
	return ~(uint32_t)c;
}
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
	if (have_sse42) {
		shift_init(shift_long, CRC_LONG);
		shift_init(shift_short, CRC_SHORT);
	}
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

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
	pthread_once(&once, crc32c_init);
#if defined(__x86_64__)
	if (have_sse42)
		return crc32c_sse42(crc, p, n);
#endif
	return crc32c_portable(crc, p, n);
}
