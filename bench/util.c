/*
 * util.c - helpers of the benchmark harness: messages, directory sizes, the
 * latency histogram, the table of engines.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

const engine_def *const bench_engines[] = {
    &engine_ctx_mem,     &engine_ctx_batch, &engine_ctx_always,    &engine_rwlock,
    &engine_lmdb_nosync, &engine_lmdb_sync, &engine_sqlite_normal, &engine_sqlite_full,
};
const size_t bench_engine_count = sizeof(bench_engines) / sizeof(bench_engines[0]);

const char *const workload_names[W_COUNT] = {"create", "update", "read", "readall", "mixed", "rww"};
const char *const workload_titles[W_COUNT] = {
    "create: new contexts of 4 keys (one transaction each)",
    "update: one random key of 8 shared contexts (contention)",
    "read: one random key of a random context (1,000 contexts x 16 keys x 64 B)",
    "readall: a whole random context (16 pairs)",
    "mixed: 70% read, 20% update, 10% create",
    "rww: readers while 4 writer threads commit (thread count = readers)",
};

const engine_def *bench_engine_find(const char *name)
{
	for (size_t i = 0; i < bench_engine_count; i++)
		if (strcmp(bench_engines[i]->name, name) == 0)
			return bench_engines[i];
	return NULL;
}

void bench_msg(char *msg, size_t len, const char *fmt, ...)
{
	if (!msg || !len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
}

int64_t bench_dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int64_t total = 0;
	struct dirent *e;
	char path[4096];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int64_t sub = bench_dir_bytes(path);
			if (sub > 0)
				total += sub;
		} else if (S_ISREG(st.st_mode)) {
			total += (int64_t)st.st_blocks * 512;
		}
	}
	closedir(d);
	return total;
}

/* ---- histogram ------------------------------------------------------------ */

static unsigned hist_index(uint64_t v)
{
	if (v < HIST_LINEAR)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	if (e >= HIST_MAX_EXP)
		return HIST_BUCKETS - 1;
	unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
	return HIST_LINEAR + (e - HIST_SUB_BITS - 1) * HIST_SUB + sub;
}

static double hist_mid(unsigned i)
{
	if (i < HIST_LINEAR)
		return i;
	unsigned e = (i - HIST_LINEAR) / HIST_SUB + HIST_SUB_BITS + 1;
	unsigned sub = (i - HIST_LINEAR) % HIST_SUB;
	double width = (double)(1ull << (e - HIST_SUB_BITS));
	return (double)(HIST_SUB + sub) * width + width / 2;
}

void hist_add(hist *h, uint64_t ns)
{
	h->bucket[hist_index(ns)]++;
	h->count++;
}

void hist_merge(hist *into, const hist *from)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		into->bucket[i] += from->bucket[i];
	into->count += from->count;
}

double hist_quantile(const hist *h, double q)
{
	if (!h->count)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->count);
	if (rank >= h->count)
		rank = h->count - 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen > rank)
			return hist_mid(i);
	}
	return hist_mid(HIST_BUCKETS - 1);
}
