/*
 * alloc.c - the allocator ctxd runs on.
 *
 * ctxd links jemalloc when the build found it (CMake option CTX_JEMALLOC,
 * which defines CTXD_JEMALLOC for this program only); libctx links no
 * allocator and uses whatever malloc the program it is in has
 * (docs/decisions.md, "ctxd runs on jemalloc"). Debian's jemalloc has no
 * prefix: linking it replaces malloc, free and malloc_usable_size for the
 * whole process, libctx's allocations included.
 *
 * CONFIGURATION (jemalloc(3), TUNING): jemalloc reads, in this order, later
 * wins: its build's own string, the malloc_conf symbol below, the name
 * /etc/malloc.conf links to, and the MALLOC_CONF environment variable, so
 * MALLOC_CONF overrides what ctxd sets. ctxd sets a dirty decay of 30 s
 * (jemalloc's default is 10 s): a server's memory churns at a steady rate,
 * and pages it gave back would be faulted in again moments later. It also
 * sets thp:always: jemalloc advises transparent huge pages (MADV_HUGEPAGE)
 * on the memory it maps, so a growing heap is faulted in 2 MiB at a time.
 * A commit keeps its old version in history (history_depth), so every
 * write grows the heap (about 280 bytes a pipelined HSET), and with 4 KiB
 * pages a quarter of a pipelined HSET's CPU was page faults (clearing and
 * mapping pages one by one) and the TLB misses after them; ~14 MB more RSS
 * at start (docs/decisions.md, "Round 12: ctxd's heap on transparent huge
 * pages"). Where the kernel's THP setting is "never" the advice does
 * nothing. The
 * background purge thread is not set in malloc_conf: jemalloc(3) warns that
 * opt.background_thread may deadlock during its initialisation, and says to
 * switch it on with the background_thread mallctl instead; alloc_start does,
 * once the main thread has blocked the signals the loops must not take (the
 * purge thread inherits that mask), unless MALLOC_CONF names
 * background_thread itself.
 *
 * NAME: INFO's mem_allocator, as Redis's: "jemalloc-<version>" when jemalloc
 * serves malloc (checked at start: a malloc must grow jemalloc's count of
 * this thread's allocated bytes, so a build that links jemalloc without its
 * malloc taking over says "libc"), "libc" otherwise.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static char alloc_label[64] = "libc";

#ifdef CTXD_JEMALLOC
#include <jemalloc/jemalloc.h>

const char *malloc_conf = "dirty_decay_ms:30000,thp:always";

/* Whether jemalloc served a malloc made here. */
static bool jemalloc_serves_malloc(void)
{
	/* volatile: the compiler may assume malloc writes no memory it knows */
	volatile uint64_t *allocated;
	size_t n = sizeof(allocated);
	if (mallctl("thread.allocatedp", (void *)&allocated, &n, NULL, 0) != 0)
		return false;
	uint64_t before = *allocated;
	void *volatile p = malloc(4096);
	uint64_t after = *allocated;
	free(p);
	return after >= before + 4096;
}

void alloc_start(void)
{
	const char *version;
	size_t n = sizeof(version);
	if (!jemalloc_serves_malloc() || mallctl("version", &version, &n, NULL, 0) != 0)
		return;
	snprintf(alloc_label, sizeof(alloc_label), "jemalloc-%.*s", (int)strcspn(version, "-"),
	         version);
	const char *env = getenv("MALLOC_CONF");
	if (!env || !strstr(env, "background_thread")) {
		bool on = true;
		if (mallctl("background_thread", NULL, NULL, &on, sizeof(on)) != 0)
			server_log('W', "jemalloc: cannot start the background purge thread");
	}
}

void alloc_info(char *out, size_t size)
{
	if (strcmp(alloc_label, "libc") == 0) {
		out[0] = '\0';
		return;
	}
	bool background = false;
	ssize_t decay = 0;
	const char *thp = "";
	size_t n = sizeof(background);
	mallctl("background_thread", &background, &n, NULL, 0);
	n = sizeof(decay);
	mallctl("arenas.dirty_decay_ms", &decay, &n, NULL, 0);
	n = sizeof(thp);
	if (mallctl("opt.thp", (void *)&thp, &n, NULL, 0) != 0 || !thp)
		thp = "unsupported";
	snprintf(out, size,
	         "jemalloc_background_thread:%d\r\njemalloc_dirty_decay_ms:%zd\r\n"
	         "jemalloc_thp:%s\r\n",
	         (int)background, decay, thp);
}
#else
void alloc_start(void) {}

void alloc_info(char *out, size_t size)
{
	out[0] = '\0';
}
#endif

const char *alloc_name(void)
{
	return alloc_label;
}
