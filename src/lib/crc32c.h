/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of every record and file
 * section libctx writes. Debian ships no C library for it (only a Python
 * module), so it is here: the SSE4.2 instruction where the CPU has it, a table
 * otherwise. Both give the standard CRC-32C (check value of "123456789" is
 * 0xe3069283).
 */
#ifndef CTX_CRC32C_H
#define CTX_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) over n bytes at p. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

/* The table version, whatever the CPU (for tests). */
uint32_t crc32c_portable(uint32_t crc, const void *p, size_t n);

#endif
