/*
 * crc32c.c - CRC-32C with the SSE4.2 crc32 instruction, or a table.
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t table[256];
static int have_sse42;

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
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *p,
                                                                size_t n)
{
	const unsigned char *b = p;
	uint64_t c = ~crc;
	while (n && ((uintptr_t)b & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *b++);
		n--;
	}
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
