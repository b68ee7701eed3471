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

/* The log's format version (checkpoints have their own, below): segments
 * are written in version 2; version 1 segments are still read. A segment's
 * header says which one its records use. */
#define FORMAT_VERSION 2
#define FORMAT_V1      1

/* Log segment "wal-<first revision, 16 hex digits>.log". */
#define WAL_MAGIC       "ctx-wal\0"
#define WAL_HEADER_SIZE FILE_HEADER_SIZE /* revision: the first record's */

/* Log record, version 1: a 40-byte header, then the body. */
#define REC_HEADER_SIZE 40
/*   0 u32 header crc (of bytes 4..39)   4 u32 body length   8 u64 revision
 *  16 u64 version   24 u64 incarnation   32 u8 type   33 u8[3] zero
 *  36 u32 body crc */

/* Log record, version 2: a header of varints (below "uv", LEB128; "sv" a
 * zigzag varint), then the body:
 *   0 u32 crc: CRC-32C of the body followed by header bytes 4..H-1
 *   4 u8 type (never 0)
 *     uv body length B
 *     uv revision
 *     uv version
 *     uv incarnation (absent for CREATE: it is the revision)
 *     sv time - the time of the segment's previous record that has one
 *        (the first: from 0), for CREATE, COMMIT and RESTORE only
 *   H B body bytes
 * The bodies of CREATE, COMMIT and RESTORE hold no time (the header has it)
 * and their op count and op lengths are varints; the other bodies are as in
 * version 1. REC2_HEADER_MAX bounds H. */
#define REC2_HEADER_MAX (4 + 1 + 5 + 3 * UV_MAX + UV_MAX)
#define REC_CREATE      1
#define REC_COMMIT      2
#define REC_DROP        3
#define REC_RESTORE     4  /* a commit made by a restore: body as COMMIT */
#define REC_POINT       5  /* a recovery point */
#define REC_POINT_DEL   6  /* a recovery point removed */
#define REC_TTL         7  /* a context's idle time-to-live set */
#define REC_EXPIRE      8  /* a context dropped by expiry: body as DROP */
#define REC_RESTORE_REF 9  /* a restore naming its target version */
#define REC_CLEAR       10 /* a commit on empty maps (ctx_txn_clear): body as COMMIT */
#define REC_TYPE_MAX    REC_CLEAR
#define REC_MAX_BODY    (1u << 31)

/* Body (version 1; version 2 as the comment above says): u16 id length, id
 * bytes, then
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
 *           every restore since; RESTORE (4) still replays.
 *   CLEAR:  as COMMIT (version 2 only), but the new version's maps start
 *           empty: every key and metadata entry of the version before is
 *           gone, then the ops apply (ctx_txn_clear; round 11). */
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
/* The bytes put_uv writes for v. */
static inline size_t uv_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
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

/* The varint at p (avail bytes): its value in *v and its size, or 0 if it
 * runs past avail or past UV_MAX bytes, or says more than 64 bits (a tenth
 * byte above 1: put_uv never writes one, so it is damage, not a value to
 * read modulo 2^64). */
static inline size_t get_uv(const unsigned char *p, size_t avail, uint64_t *v)
{
	uint64_t x = 0;
	for (size_t n = 0; n < avail && n < UV_MAX; n++) {
		if (n == UV_MAX - 1 && p[n] > 1)
			return 0;
		x |= (uint64_t)(p[n] & 0x7f) << (7 * n);
		if (!(p[n] & 0x80)) {
			*v = x;
			return n + 1;
		}
	}
	return 0;
}

/* ---- log records, both versions ------------------------------------------------ */

/* Whether a version 2 record of this type has a time in its header. */
static inline bool rec_has_time(uint8_t type)
{
	return type == REC_CREATE || type == REC_COMMIT || type == REC_RESTORE || type == REC_CLEAR;
}

/* A log record as read. time_delta (version 2, types with a time): the
 * header's difference from the previous time; the reader keeps the chain. */
typedef struct rec_view {
	uint8_t type;
	uint64_t rev, version, incarnation;
	int64_t time_delta;
	const unsigned char *body;
	uint32_t blen;
	size_t len; /* header and body */
} rec_view;

/* Write a version 2 record header to h (REC2_HEADER_MAX bytes of room) for a
 * body of blen bytes whose CRC-32C is body_crc; its size. incarnation is
 * ignored for CREATE, time_delta unless rec_has_time(type). */
static inline size_t rec2_header_put(unsigned char *h, uint8_t type, uint64_t rev, uint64_t version,
                                     uint64_t incarnation, int64_t time_delta, uint32_t blen,
                                     uint32_t body_crc)
{
	size_t n = 4;
	h[n++] = type;
	n += put_uv(h + n, blen);
	n += put_uv(h + n, rev);
	n += put_uv(h + n, version);
	if (type != REC_CREATE)
		n += put_uv(h + n, incarnation);
	if (rec_has_time(type))
		n += put_uv(h + n, zigzag(time_delta));
	put_u32(h, crc32c(body_crc, h + 4, n - 4));
	return n;
}

/* Parse the record at p (avail bytes) of a segment written in format fmt.
 * NULL if it is intact (with check_crc false, its checksums are taken as
 * good), else what is wrong with it. */
static inline const char *rec_parse(uint32_t fmt, const unsigned char *p, size_t avail,
                                    bool check_crc, rec_view *v)
{
	if (fmt == FORMAT_V1) {
		if (avail < REC_HEADER_SIZE)
			return "truncated record header";
		if (check_crc && get_u32(p) != crc32c(0, p + 4, REC_HEADER_SIZE - 4))
			return "bad record header checksum";
		v->blen = get_u32(p + 4);
		if (v->blen > avail - REC_HEADER_SIZE)
			return "truncated record body";
		if (check_crc && get_u32(p + 36) != crc32c(0, p + REC_HEADER_SIZE, v->blen))
			return "bad record body checksum";
		v->type = p[32];
		v->rev = get_u64(p + 8);
		v->version = get_u64(p + 16);
		v->incarnation = get_u64(p + 24);
		v->time_delta = 0;
		v->body = p + REC_HEADER_SIZE;
		v->len = REC_HEADER_SIZE + v->blen;
		return NULL;
	}
	uint64_t blen = 0, x = 0;
	size_t n = 5, k;
	if (avail < n)
		return "truncated record header";
	v->type = p[4]; /* (a type that is not one is the replay's to refuse) */
	if (!(k = get_uv(p + n, avail - n, &blen)))
		return "truncated record header";
	n += k;
	if (!(k = get_uv(p + n, avail - n, &v->rev)))
		return "truncated record header";
	n += k;
	if (!(k = get_uv(p + n, avail - n, &v->version)))
		return "truncated record header";
	n += k;
	v->incarnation = v->rev;
	if (v->type != REC_CREATE) {
		if (!(k = get_uv(p + n, avail - n, &v->incarnation)))
			return "truncated record header";
		n += k;
	}
	v->time_delta = 0;
	if (rec_has_time(v->type)) {
		if (!(k = get_uv(p + n, avail - n, &x)))
			return "truncated record header";
		n += k;
		v->time_delta = unzigzag(x);
	}
	if (blen > REC_MAX_BODY || blen > avail - n)
		return "truncated record body";
	v->blen = (uint32_t)blen;
	v->body = p + n;
	v->len = n + v->blen;
	if (check_crc && get_u32(p) != crc32c(crc32c(0, v->body, v->blen), p + 4, n - 4))
		return "bad record checksum";
	return NULL;
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
