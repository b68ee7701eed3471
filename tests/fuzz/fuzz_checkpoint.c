/*
 * fuzz_checkpoint.c - libFuzzer target: the checkpoint loader
 * (checkpoint_load in src/lib/checkpoint.c).
 *
 * The first input byte picks how the rest becomes a checkpoint file:
 *   even: the rest is the file, byte for byte (header, sections, trailer and
 *         their checksums are the fuzzer's to get right or wrong);
 *   odd, bit 1 clear: format version 1 framed: the rest is u64 revision,
 *         then sections, each the 44 bytes of a section header after its
 *         checksum, a u32 payload length L and L payload bytes (a short last
 *         one takes what is left); the target adds the file header, every
 *         checksum, each section's trailer and the file trailer, so that the
 *         fuzzer works on the payload parser (ids, versions, full and delta
 *         maps, points);
 *   odd, bit 1 set: format version 2 framed: the rest is u64 revision, then
 *         sections, each a u32 payload length L and L payload bytes; the
 *         target adds the file header, each payload's crc and the trailer.
 * The file is loaded into an empty memory-only store (fuzz_memory_store). The result must be
 * CTX_OK or CTX_CORRUPT with a message; after CTX_OK every loaded context is
 * walked through the public API (heads, pairs, history, diffs, points).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "fuzz_common.h"
#include "store.h"

#define IN_SECTION 48 /* header after its crc (44), payload length (4) */

/* Frame the sections of in into f (room for it checked by the caller);
 * returns the bytes written, *count the sections. */
static size_t frame_sections(unsigned char *f, const unsigned char *in, size_t size,
                             uint64_t *count)
{
	size_t len = 0, off = 0;
	*count = 0;
	while (size - off >= IN_SECTION) {
		size_t plen = get_u32(in + off + 44);
		if (plen > size - off - IN_SECTION)
			plen = size - off - IN_SECTION;
		unsigned char *h = f + len;
		memcpy(h + 4, in + off, CKPT_SECTION_SIZE - 4);
		put_u32(h, crc32c(0, h + 4, CKPT_SECTION_SIZE - 4));
		const unsigned char *payload = in + off + IN_SECTION;
		memcpy(h + CKPT_SECTION_SIZE, payload, plen);
		put_u64(h + CKPT_SECTION_SIZE + plen, plen);
		put_u32(h + CKPT_SECTION_SIZE + plen + 8, crc32c(0, payload, plen));
		len += CKPT_SECTION_SIZE + plen + CKPT_SECTION_TRAILER;
		off += IN_SECTION + plen;
		(*count)++;
	}
	return len;
}

/* The same for format version 2: u32 payload length, payload. */
static size_t frame_sections_v2(unsigned char *f, const unsigned char *in, size_t size,
                                uint64_t *count)
{
	size_t len = 0, off = 0;
	*count = 0;
	while (size - off >= 4) {
		size_t plen = get_u32(in + off);
		if (plen > size - off - 4)
			plen = size - off - 4;
		memcpy(f + len, in + off + 4, plen);
		put_u32(f + len + plen, crc32c(0, in + off + 4, plen));
		len += plen + CKPT_V2_SECTION_TRAILER;
		off += 4 + plen;
		(*count)++;
	}
	return len;
}

/* The framed form of the input (see the head comment). */
static unsigned char *frame_file(const unsigned char *in, size_t size, bool v2, size_t *len)
{
	size_t cap =
	    CKPT_HEADER_SIZE + CKPT_TRAILER_SIZE + size + size / IN_SECTION * CKPT_SECTION_TRAILER;
	unsigned char *f = malloc(cap);
	if (!f)
		return NULL;
	uint64_t count = 0;
	file_header_put_version(f, CKPT_MAGIC, v2 ? CKPT_FORMAT_VERSION : CKPT_FORMAT_V1,
	                        size >= 8 ? get_u64(in) : 0);
	*len = CKPT_HEADER_SIZE;
	if (size >= 8 && v2)
		*len += frame_sections_v2(f + *len, in + 8, size - 8, &count);
	else if (size >= 8)
		*len += frame_sections(f + *len, in + 8, size - 8, &count);
	unsigned char *t = f + *len;
	memset(t, 0, CKPT_TRAILER_SIZE);
	memcpy(t, CKPT_END_MAGIC, 8);
	put_u64(t + 8, count);
	put_u32(t + 20, crc32c(0, t, 20));
	*len += CKPT_TRAILER_SIZE;
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t len = size - 1;
	unsigned char *framed = NULL;
	if (data[0] & 1) {
		if (!(framed = frame_file(data + 1, size - 1, data[0] & 2, &len)))
			return 0;
	}
	char path[4096];
	fuzz_clear_dir();
	fuzz_write("ckpt-0000000000000001.ckpt", framed ? framed : data + 1, len, path);
	free(framed);

	ctx_store *s = fuzz_memory_store();
	uint64_t rev = 0;
	ctx_status st = checkpoint_load(s, path, &rev);
	fuzz_check_status(st, "checkpoint_load");
	if (st == CTX_OK)
		fuzz_walk_store(s);
	store_clear(s);
	return 0;
}
