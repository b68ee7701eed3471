/*
 * fuzz_record.c - libFuzzer target: the log record decoder recovery uses.
 *
 * The input is a sequence of records, each
 *   u8 type, u64 version, u64 incarnation, u16 body length, body
 * (little-endian; a short last body takes what is left). The target frames
 * them as a log segment would hold them, with revisions 1, 2, ... and correct
 * checksums, so that the fuzzer spends its time on the bodies and on what the
 * records mean together (creates, commits, drops, points, ttls, version gaps)
 * rather than on checksums: once in log format 2 (the time of a record that
 * has one 1 µs after the one before), once in format 1 (still read). Each
 * segment is written as wal-...1.log into the
 * scratch directory and replayed by recovery_run, read-only, as ctx_verify
 * does, into an empty memory-only store (fuzz_memory_store); the result must
 * be CTX_OK or CTX_CORRUPT with a message, and after CTX_OK every recovered
 * context is walked through the public API. fuzz_recovery covers ctx_verify
 * and ctx_open themselves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "fuzz_common.h"
#include "store.h"

#define IN_HEADER 19 /* type, version, incarnation, body length */

/* Append one framed record (log format fmt) for the input record at in to
 * seg; its size in *len. */
static size_t frame_record(uint32_t fmt, unsigned char *seg, const unsigned char *in, size_t left,
                           uint64_t rev, size_t *len)
{
	size_t blen = get_u16(in + 17);
	if (blen > left - IN_HEADER)
		blen = left - IN_HEADER;
	unsigned char *h = seg;
	if (fmt != FORMAT_V1) {
		const unsigned char *body = in + IN_HEADER;
		size_t hl = rec2_header_put(h, in[0], rev, get_u64(in + 1), get_u64(in + 9), 1,
		                            (uint32_t)blen, crc32c(0, body, blen));
		memcpy(h + hl, body, blen);
		*len = hl + blen;
		return blen;
	}
	*len = REC_HEADER_SIZE + blen;
	memset(h, 0, REC_HEADER_SIZE);
	put_u32(h + 4, (uint32_t)blen);
	put_u64(h + 8, rev);
	memcpy(h + 16, in + 1, 8); /* version */
	memcpy(h + 24, in + 9, 8); /* incarnation */
	h[32] = in[0];
	memcpy(h + REC_HEADER_SIZE, in + IN_HEADER, blen);
	put_u32(h + 36, crc32c(0, h + REC_HEADER_SIZE, blen));
	put_u32(h, crc32c(0, h + 4, REC_HEADER_SIZE - 4));
	return blen;
}

static void replay_framed(uint32_t fmt, const uint8_t *data, size_t size)
{
	/* Each record grows by at most REC2_HEADER_MAX - IN_HEADER bytes. */
	size_t cap = WAL_HEADER_SIZE + size / IN_HEADER * (REC2_HEADER_MAX - IN_HEADER) + size;
	unsigned char *seg = malloc(cap);
	if (!seg)
		return;
	file_header_put_version(seg, WAL_MAGIC, fmt, 1);
	size_t len = WAL_HEADER_SIZE, off = 0;
	for (uint64_t rev = 1; size - off >= IN_HEADER; rev++) {
		size_t rlen;
		size_t blen = frame_record(fmt, seg + len, data + off, size - off, rev, &rlen);
		len += rlen;
		off += IN_HEADER + blen;
	}
	fuzz_clear_dir();
	fuzz_write("wal-0000000000000001.log", seg, len, NULL);
	free(seg);

	ctx_store *s = fuzz_memory_store();
	recovery_info info;
	ctx_status st = recovery_run(s, fuzz_dir(), true, &info);
	fuzz_check_status(st, "recovery_run");
	if (st == CTX_OK && info.torn_bytes != 0)
		fuzz_fail("a segment of whole records has a torn tail of %llu bytes",
		          (unsigned long long)info.torn_bytes);
	if (st == CTX_OK)
		fuzz_walk_store(s);
	store_clear(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	replay_framed(FORMAT_VERSION, data, size);
	replay_framed(FORMAT_V1, data, size);
	return 0;
}
