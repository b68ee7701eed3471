/*
 * probe8_torn_scan.c - recovery of a torn log tail takes time quadratic in
 * the size of the records after the damage when a value stored by a client
 * looks like log record headers (log format 2).
 *
 * When the newest segment has a damaged record, recovery cuts it and
 * everything after it, and counts the "intact records after the damage"
 * for its message (recovery.c cut_tail -> records_after). records_after
 * tries EVERY byte offset after the damage (record_at): it parses a
 * format 2 header there without its checksum, and if the fields look
 * plausible (a type 1..9, a revision just above the last good one, a
 * version and incarnation not above it, a body length that fits), it
 * checksums the body length the header claims. In format 1 a candidate
 * header had its own CRC over 36 bytes, so garbage cost 36 bytes; format 2
 * has one CRC over body and header (round 7), so each plausible candidate
 * costs a CRC of up to the rest of the segment. The bytes after the damage
 * are records, i.e. client keys and values, which a client chooses: a
 * value made of fake headers, one every 16 bytes, each claiming the rest
 * of the value as its body, costs L^2/32 bytes of CRC for a value of L
 * bytes. max_value_size is 16 MiB by default: 8.8 TB of CRC, tens of
 * minutes of ctx_open (and of `ctx verify`), on every open until the tail
 * is cut (a read-only verify never cuts it).
 *
 * The probe uses the public API only: a store with a dir (durability
 * always, no preallocation), a create and a small put, then one ctx_put of
 * a crafted value of L bytes (the fake headers name the revision the value's
 * own record gets, which any client can guess within the window
 * records_after accepts: the next (segment bytes left)/9 revisions). The
 * segment is copied while the store is open (the put was synced), one byte
 * of the value's record before the value is flipped (a torn write of that
 * record), and ctx_verify and ctx_open of the copy are timed, for
 * L = 128 KiB .. 2 MiB.
 *
 * Build and run (from the worktree, after `make build`):
 *   cc -O2 -g -Iinclude -Isrc/lib tests/probes/probe8_torn_scan.c build/libctx.a \
 *      $(pkg-config --libs liburcu-bp liburcu-cds libxxhash) -lpthread \
 *      -o /tmp/probe8_torn_scan
 *   /tmp/probe8_torn_scan /tmp/probe8_torn_scan.dir
 * Exit status 1 if the time grows quadratically (doubling L more than
 * triples the time of the largest step and that step takes over 1 s).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctx.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t put_uv(unsigned char *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	return n;
}

/* A value of len bytes: a fake format 2 DROP header every 16 bytes (crc
 * 0xaaaaaaaa, type 3, body length = the rest of the value, revision rev,
 * version 1, incarnation 1), the rest 0x55. */
static unsigned char *crafted(size_t len, uint64_t rev)
{
	unsigned char *v = malloc(len);
	memset(v, 0x55, len);
	for (size_t o = 0; o + 16 <= len; o += 16) {
		unsigned char *h = v + o;
		size_t n = 0;
		memset(h, 0xaa, 4);
		n = 4;
		h[n++] = 3;
		n += put_uv(h + n, len - o - 16);
		n += put_uv(h + n, rev);
		n += put_uv(h + n, 1);
		n += put_uv(h + n, 1);
	}
	return v;
}

static void run(const char *cmd)
{
	if (system(cmd) != 0) {
		fprintf(stderr, "failed: %s\n", cmd);
		exit(2);
	}
}

/* Copy dir's segments to copy, flip the byte at `at` of the newest one. */
static void crash_copy(const char *dir, const char *copy, long at)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s && cp %s/wal-*.log %s/", copy, copy,
	         dir, copy);
	run(cmd);
	DIR *d = opendir(copy);
	struct dirent *e;
	char newest[256] = "";
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "wal-", 4) == 0 && strcmp(e->d_name, newest) > 0)
			snprintf(newest, sizeof(newest), "%s", e->d_name);
	closedir(d);
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", copy, newest);
	int fd = open(path, O_RDWR);
	unsigned char b;
	if (fd < 0 || pread(fd, &b, 1, at) != 1)
		exit(2);
	b ^= 0x01;
	if (pwrite(fd, &b, 1, at) != 1)
		exit(2);
	close(fd);
}

/* Offset of the value in the newest segment of dir (its first 64 bytes). */
static long find_value(const char *dir, const unsigned char *v)
{
	char cmd[1024], path[1024];
	snprintf(cmd, sizeof(cmd), "ls %s | grep '^wal-' | sort | tail -1", dir);
	FILE *p = popen(cmd, "r");
	char name[256] = "";
	if (!p || !fgets(name, sizeof(name), p))
		exit(2);
	pclose(p);
	name[strcspn(name, "\n")] = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	unsigned char *buf = malloc((size_t)size);
	fseek(f, 0, SEEK_SET);
	if (fread(buf, 1, (size_t)size, f) != (size_t)size)
		exit(2);
	fclose(f);
	void *at = memmem(buf, (size_t)size, v, 64);
	long off = at ? (long)((unsigned char *)at - buf) : -1;
	free(buf);
	return off;
}

int main(int argc, char **argv)
{
	const char *base = argc > 1 ? argv[1] : "/tmp/probe8_torn_scan.dir";
	char dir[600], copy[600], cmd[1400];
	snprintf(dir, sizeof(dir), "%s/store", base);
	snprintf(copy, sizeof(copy), "%s/copy", base);
	double prev_t = 0, last_ratio = 0, last_t = 0;
	for (size_t len = 128 << 10; len <= (2u << 20); len *= 2) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s", base, base);
		run(cmd);
		ctx_options o;
		ctx_options_init(&o);
		o.dir = dir;
		o.log_prealloc_bytes = 1;
		ctx_store *s;
		if (ctx_open(&o, &s) != CTX_OK || ctx_create(s, "c") != CTX_OK ||
		    ctx_put(s, "c", "x", 1, "y", 1, NULL) != CTX_OK)
			return 2;
		ctx_state *st;
		if (ctx_get(s, "c", &st) != CTX_OK)
			return 2;
		uint64_t rev = ctx_state_revision(st) + 1; /* the value's record */
		ctx_state_release(st);
		unsigned char *v = crafted(len, rev);
		if (ctx_put(s, "c", "k", 1, v, len, NULL) != CTX_OK) {
			fprintf(stderr, "put: %s\n", ctx_last_error());
			return 2;
		}
		long at = find_value(dir, v);
		if (at < 0)
			return 2;
		crash_copy(dir, copy, at - 1); /* the key's byte: the record's CRC fails */
		ctx_close(s);

		ctx_verify_report r;
		double t0 = now();
		ctx_status vs = ctx_verify(copy, &r);
		double t1 = now();
		o.dir = copy;
		ctx_status os = ctx_open(&o, &s);
		double t2 = now();
		if (os == CTX_OK)
			ctx_close(s);
		printf(
		    "value %5zu KiB: ctx_verify %s in %7.3f s (torn_records %llu), ctx_open %s in "
		    "%7.3f s\n",
		    len >> 10, ctx_strerror(vs), t1 - t0, (unsigned long long)r.torn_records,
		    ctx_strerror(os), t2 - t1);
		fflush(stdout);
		if (prev_t > 0)
			last_ratio = (t1 - t0) / prev_t;
		prev_t = t1 - t0;
		last_t = t1 - t0;
		free(v);
	}
	bool bad = last_ratio > 3 && last_t > 1;
	printf(bad ? "DEFECT: the torn-tail scan is quadratic in the bytes after the damage "
	             "(last doubling x%.1f)\n"
	           : "ok: last doubling x%.1f\n",
	       last_ratio);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	run(cmd);
	return bad;
}
