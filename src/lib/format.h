/*
 * format.h - the on-disk format of libctx, as constants and byte helpers.
 * docs/file-format.md is the specification; this file must agree with it.
 *
 * All integers are little-endian. Every file starts with an 8-byte magic and
 * a 32-bit format version; every record and section carries a CRC-32C.
 */
#ifndef CTX_FORMAT_H
#define CTX_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "crc32c.h"

/* The log's format version (checkpoints have their own, below). */
#define FORMAT_VERSION 1

/* Log segment "wal-<first revision, 16 hex digits>.log". */
#define WAL_MAGIC       "ctx-wal\0"
#define WAL_HEADER_SIZE FILE_HEADER_SIZE /* revision: the first record's */

/* Log record: a 40-byte header, then the body. */
#define REC_HEADER_SIZE 40
/*   0 u32 header crc (of bytes 4..39)   4 u32 body length   8 u64 revision
 *  16 u64 version   24 u64 incarnation   32 u8 type   33 u8[3] zero
 *  36 u32 body crc */
#define REC_CREATE      1
#define REC_COMMIT      2
#define REC_DROP        3
#define REC_RESTORE     4 /* a commit made by a restore: body as COMMIT */
#define REC_POINT       5 /* a recovery point */
#define REC_POINT_DEL   6 /* a recovery point removed */
#define REC_TTL         7 /* a context's idle time-to-live set */
#define REC_EXPIRE      8 /* a context dropped by expiry: body as DROP */
#define REC_RESTORE_REF 9 /* a restore naming its target version */
#define REC_MAX_BODY    (1u << 31)

/* Body: u16 id length, id bytes, then
 *   CREATE: u64 created_us
 *   COMMIT, RESTORE: u64 updated_us, u32 op count, ops: u8 kind, u32 klen,
 *           u32 vlen, key bytes, value bytes (vlen 0 for deletes)
 *           (kind: 0 put, 1 del, 2 meta put, 3 meta del); a RESTORE's ops
 *           each end with a u64: the time the restored value was first set
 *   CREATE may carry initial data: after created_us, u32 op count and ops
 *           as COMMIT's
 *   DROP, EXPIRE: nothing more
 *   POINT:  u64 time_us, u64 checksum, u8 label length, label bytes
 *           (the header's version is the version pinned)
 *   POINT_DEL: nothing more (the header's version is the point's version)
 *   TTL:    u64 ttl_us, u64 time it was set (µs)
 *   RESTORE_REF: u64 updated_us, u64 target version, u64 target's content
 *           checksum (data.sum + meta.sum); the new version's maps are the
 *           target's, found in the replayed history or points. Written by
 *           every restore since; RESTORE (4) still replays. */
#define OP_PUT_CODE      0
#define OP_DEL_CODE      1
#define OP_META_PUT_CODE 2
#define OP_META_DEL_CODE 3

/* Checkpoint "ckpt-<revision, 16 hex digits>.ckpt". Version 2 is written;
 * version 1 is still read. */
#define CKPT_MAGIC          "ctx-ckpt"
#define CKPT_FORMAT_VERSION 2
#define CKPT_FORMAT_V1      1
#define CKPT_HEADER_SIZE    FILE_HEADER_SIZE /* revision: the one it covers */
#define CKPT_END_MAGIC      "ctx-end\0"
#define CKPT_TRAILER_SIZE   24
/* Trailer: magic[8], u64 context count, u32 reserved, u32 crc of bytes 0..19 */

/* Version 2: per context, a payload of varints (LEB128, at most 10 bytes,
 * below "uv") and zigzag varints ("sv", a signed difference), then a u32
 * crc of the payload:
 *   uv id length L, L id bytes, uv incarnation, uv created_us, uv ttl_us,
 *   sv last_access_us - created_us, uv version count V, uv point count P;
 *   V versions, ascending, the last one the head:
 *     uv version - previous version (the first: the version),
 *     sv revision - previous revision (the first: from 0),
 *     sv updated_us - previous updated_us (the first: from created_us),
 *     uv keys changed, u8 kind (0 full, 1 delta from the version before),
 *     uv N, N entries (the data), uv M, M entries (the metadata);
 *   an entry, in ascending key order within its list:
 *     uv shared << 1 | deleted (shared: bytes of the key equal to the
 *       previous entry's), uv S, S bytes (the rest of the key), and if not
 *       deleted: uv value length, sv updated_us - time_us, the value;
 *     a full version has no deleted entries;
 *   P points: uv version, sv time_us - created_us, u64 content checksum,
 *     u8 label length, label bytes.
 * No hash is stored: leaves recompute theirs on load. */
#define CKPT_V2_SECTION_TRAILER 4

/* Version 1: per context, a 48-byte section header:
 *   0 u32 crc of bytes 4..47   4 u32 id length   8 u64 incarnation
 *  16 u64 created_us   24 u64 ttl_us   32 u64 last_access_us
 *  40 u32 version count V   44 u32 point count P
 * then the payload:
 *   id bytes;
 *   V versions, ascending, the last one the head: u64 version, u64 revision,
 *     u64 updated_us, u64 keys changed, u8 kind, then
 *     kind 0 (full):  u64 N, N pairs; u64 M, M metadata pairs;
 *     kind 1 (delta from the version before): u64 N, N ops; u64 M, M ops;
 *     a pair is u32 klen, u32 vlen, u64 time_us, key, value; an op is a u8
 *     (0 put, 1 delete) then a pair (vlen 0 for deletes);
 *   P points: u64 version, u64 time_us, u64 checksum, u8 label length, label;
 * then a 12-byte trailer: u64 payload length, u32 crc of the payload. */
#define CKPT_SECTION_SIZE    48
#define CKPT_SECTION_TRAILER 12

static inline void put_u16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}
static inline void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}
static inline void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint16_t get_u16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t get_u32(const unsigned char *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}
static inline uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Varints (LEB128: 7 bits a byte, low first, high bit set on all but the
 * last; at most 10 bytes for 64 bits) and zigzag for signed differences.
 * put_uv returns the bytes written (p needs room for 10). */
#define UV_MAX 10
static inline size_t put_uv(unsigned char *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	return n;
}
static inline uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}
static inline int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* The 32-byte header every file (log segment, checkpoint) starts with:
 *   0 magic[8]   8 u32 version   12 u32 header size (32)   16 u64 revision
 *  24 u32 reserved (0)   28 u32 crc32c of bytes 0..27 */
#define FILE_HEADER_SIZE 32

static inline void file_header_put_version(unsigned char h[FILE_HEADER_SIZE], const char *magic,
                                           uint32_t version, uint64_t revision)
{
	memset(h, 0, FILE_HEADER_SIZE);
	memcpy(h, magic, 8);
	put_u32(h + 8, version);
	put_u32(h + 12, FILE_HEADER_SIZE);
	put_u64(h + 16, revision);
	put_u32(h + 28, crc32c(0, h, 28));
}

/* A log segment's header (format version FORMAT_VERSION). */
static inline void file_header_put(unsigned char h[FILE_HEADER_SIZE], const char *magic,
                                   uint64_t revision)
{
	file_header_put_version(h, magic, FORMAT_VERSION, revision);
}

/* Whether the header at h (size bytes available) has this magic and an
 * intact checksum; its version and revision are the caller's to check. */
static inline bool file_header_intact(const unsigned char *h, size_t size, const char *magic)
{
	return size >= FILE_HEADER_SIZE && memcmp(h, magic, 8) == 0 &&
	       get_u32(h + 28) == crc32c(0, h, 28);
}

#endif
