/*
 * fuzz_recovery.c - libFuzzer target: recovery of a whole data directory.
 *
 * The input is split at each "@@CTXFILE@@" into at most four files. A file
 * starting with the checkpoint magic is named ckpt-R.ckpt, any other one
 * wal-R.log, R being the revision its header holds at bytes 16..23 (the
 * file's index + 1 if it is shorter), so a seed built from a real store keeps
 * its names when mutated. The bytes are not fixed up: checksums, torn tails,
 * gaps and damaged checkpoints are the fuzzer's to make.
 *
 * The directory is then read three ways, each of which must end in CTX_OK or
 * a clean CTX_CORRUPT / CTX_IO with a message:
 *   1. a read-only recovery (recovery_run as ctx_verify calls it, into the
 *      kept memory store, so that no store is opened and closed for it);
 *   2. ctx_open, which must agree with it: both succeed or both fail, and on
 *      success they find the same contexts and keys; the store is walked
 *      through the public API and closed (opening cut any torn tail; closing
 *      writes a final checkpoint);
 *   3. a read-only recovery again after a successful open: the directory the
 *      store left must be clean (no torn tail) and hold the same contexts and
 *      keys.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "format.h"
#include "fuzz_common.h"
#include "store.h"

#define SEPARATOR "@@CTXFILE@@"
#define MAX_FILES 4

static void write_file(const unsigned char *p, size_t n, size_t index)
{
	bool ckpt = n >= 8 && memcmp(p, CKPT_MAGIC, 8) == 0;
	uint64_t rev = n >= 24 ? get_u64(p + 16) : index + 1;
	char name[64];
	snprintf(name, sizeof(name), ckpt ? "ckpt-%016" PRIx64 ".ckpt" : "wal-%016" PRIx64 ".log",
	         rev);
	fuzz_write(name, p, n, NULL);
}

/* Split the input at the separators into files in the scratch directory. */
static void write_files(const unsigned char *data, size_t size)
{
	size_t sep = strlen(SEPARATOR), start = 0, index = 0;
	while (index < MAX_FILES) {
		const unsigned char *next = index + 1 < MAX_FILES
		                                ? memmem(data + start, size - start, SEPARATOR, sep)
		                                : NULL;
		size_t end = next ? (size_t)(next - data) : size;
		write_file(data + start, end - start, index++);
		if (!next)
			break;
		start = end + sep;
	}
}

/* Recover the scratch directory read-only, as ctx_verify does, into the kept
 * memory store (ctx_verify would open and close a store of its own: most of
 * a run's time). *keys gets the keys recovered. */
static ctx_status verify(recovery_info *info, size_t *contexts, uint64_t *keys)
{
	ctx_store *s = fuzz_memory_store();
	ctx_status st = recovery_run(s, fuzz_dir(), true, info);
	*contexts = st == CTX_OK ? ctx_count(s) : 0;
	*keys = st == CTX_OK ? fuzz_walk_store(s) : 0;
	store_clear(s);
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_clear_dir();
	write_files(data, size);

	recovery_info before, after;
	size_t contexts, contexts_after;
	uint64_t keys, keys_after;
	ctx_status vst = verify(&before, &contexts, &keys);
	fuzz_check_status(vst, "read-only recovery");
	char why[512];
	snprintf(why, sizeof(why), "%s", vst == CTX_OK ? "" : ctx_last_error());

	ctx_options o;
	ctx_options_init(&o);
	o.dir = fuzz_dir();
	o.clock_us = fuzz_clock;
	ctx_store *s = NULL;
	ctx_status ost = ctx_open(&o, &s);
	fuzz_check_status(ost, "ctx_open");
	if ((vst == CTX_OK) != (ost == CTX_OK))
		fuzz_fail("read-only recovery says %s (%s) but ctx_open %s (%s)", ctx_strerror(vst),
		          why, ctx_strerror(ost), ctx_last_error());
	if (ost != CTX_OK)
		return 0;
	uint64_t open_keys = fuzz_walk_store(s);
	if (ctx_count(s) != contexts || open_keys != keys)
		fuzz_fail("read-only recovery found %zu contexts, %llu keys; ctx_open %zu, %llu",
		          contexts, (unsigned long long)keys, ctx_count(s),
		          (unsigned long long)open_keys);
	ctx_close(s);

	vst = verify(&after, &contexts_after, &keys_after);
	if (vst != CTX_OK || after.torn_bytes || contexts_after != contexts || keys_after != keys)
		fuzz_fail("after open and close: %s (%s), %llu torn bytes, %zu contexts, %llu keys "
		          "(before: %zu contexts, %llu keys)",
		          ctx_strerror(vst), vst == CTX_OK ? "" : ctx_last_error(),
		          (unsigned long long)after.torn_bytes, contexts_after,
		          (unsigned long long)keys_after, contexts, (unsigned long long)keys);
	return 0;
}
