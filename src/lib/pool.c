/*
 * pool.c - a per-thread cache of small freed blocks in front of malloc.
 *
 * Every commit allocates a leaf, the copies of the nodes on its key's path
 * and a version struct, and frees about as much: what the version it cut
 * from history held alone. glibc's per-thread cache keeps 7 blocks of a size,
 * so the frees that come in bursts (the released version structs, freed 32
 * at a time after their grace period, state.c) and the blocks other threads
 * allocated (a cut version's nodes came from whichever thread committed
 * them) overflow it into the arenas' bins: `_int_free` and `_int_malloc`
 * were a sixth of a one-thread update, and at 64 threads a quarter of the
 * futex calls were the arena locks those take.
 *
 * CLASSES: a block of glibc's chunk size 32, 48, ... 32 + 16 * (POOL_CLASSES
 * - 1) bytes goes to the class of its chunk, read from malloc_usable_size
 * (the largest class whose blocks are at most that usable size: a block is
 * never smaller than its class says), or, in pool_free_sized, from the size
 * the caller gives (the same rule applied to it: safe with any malloc). pool_alloc takes from the
 * smallest class whose blocks hold the request, else carves it from a slab (below) or calls
 * malloc. pool_free accepts blocks from malloc and from pool_alloc (free() must never see a
 * block from pool_alloc: it may be a slab block), and a block may be freed by any thread, into
 * that thread's cache.
 *
 * BOUND: at most POOL_CAP blocks per class and POOL_BYTES bytes per thread
 * (plus the SLAB_BATCH - 1 blocks one take from a shared list may add);
 * past either, pool_free calls free. POOL_CAP covers the largest burst of
 * version structs a thread frees at once (state.c: up to STATE_HOLD_MAX +
 * STATE_BATCH, 544, when ticks are slow), which the next commits then
 * allocate again; 64 blocks per class and 32 KiB measured 5-7% slower
 * (docs/benchmarks.md). So an idle thread that committed keeps at most
 * 128 KiB until it exits. A thread's blocks are freed when it
 * exits (a thread-specific key's destructor; after it, and in a thread whose
 * key could not be set, pool_free calls free) or calls pool_trim.
 *
 * LIFO: the block freed last is handed out first, while it is in the cache
 * (a cut version's node has just been read to free it).
 *
 * Under AddressSanitizer a cached block is poisoned, so that a use after
 * pool_free is reported as one after free would be; all but its first word,
 * the link to the next kept block: LeakSanitizer does not look into
 * poisoned memory, and would report every block behind the first of a class
 * as leaked (the fuzz targets' leak checks run while blocks are kept).
 *
 * NOT IN THE CALL_RCU WORKER: the worker frees versions (reclaim.c, and
 * state batches of threads that could not wait) and allocates no node, leaf
 * or version, so a cache there would only hold up to POOL_BYTES until the
 * process exits; its callbacks call pool_bypass first (state.c), and a
 * thread keeps blocks only once it has called pool_alloc (a callback of
 * another file that frees a version keeps nothing either).
 *
 * SLABS (round 12): a block pool_alloc cannot take from the cache is carved
 * from a slab, not asked of malloc. Fresh memory was 40-45% of an in-memory
 * create (docs/benchmarks.md, r11-create): glibc grows a thread's arena a
 * page at a time, an mprotect and a page fault per 4 KiB, which this guest
 * makes cost ~12 us a page. A thread carves blocks out of a piece of a 2 MiB
 * chunk (since round 20: PIECES below; the whole chunk before) of
 * one address range reserved at the first slab allocation (64 GiB,
 * PROT_NONE, no memory; under an RLIMIT_AS, at most a quarter of it, since
 * the reservation counts against that limit as mapped memory does), made
 * writable whole (a chunk whose mprotect fails is given back, and the
 * block comes from malloc) and populated 128 KiB at a
 * time with one madvise(MADV_POPULATE_WRITE) (~7 us a page, no fault; on a
 * kernel without it the pages fault in as they are touched). A slab block
 * has malloc's shape: its class in the 8 bytes before it, 32 + 16k bytes in
 * all, so a key costs what it did. A freed slab block goes to the freeing
 * thread's cache as before, or, past its bounds, in the call_rcu worker and
 * when a thread exits, to the shared lists of its class (a mutex each),
 * kept by chunk: pool_alloc takes up to SLAB_BATCH at a time from one chunk
 * before carving, and empties that chunk's list before it takes from
 * another, so that blocks allocated in a row lie close together (one list
 * across chunks handed a store loaded after others were dropped blocks
 * spread over all the memory they had used: its reads ran 2-3x slower). A thread
 * that exits leaves its chunk's rest to the next thread that needs one.
 *
 * EMPTY CHUNKS (round 14): each chunk counts in its header the bytes not
 * on the shared lists (`held`: the whole chunk when a thread takes it, less
 * each block put on a list, plus each block taken back, less what its
 * carver never carved when it moves on). Blocks in a thread's cache count
 * as live, so the count is kept past the caches' bounds only, under the
 * class lock slab_put and slab_take already take: one atomic step per run
 * of blocks of one chunk, none on the cached pool_alloc / pool_free. The
 * step that brings it to 0 (all its blocks free, its carver gone) queues
 * the chunk; once no lock is held, slab_reclaim takes every class's lock,
 * unlinks the chunk from the class lists (doubly linked, O(1) a class) and
 * parks it: SLAB_KEEP (4) such chunks stay populated, so that a churn of a
 * few MiB of stores madvises nothing, and the others are given back (since
 * round 18 once they stayed unused for a while: DECAY below) with
 * MADV_DONTNEED (RSS drops at once; MADV_FREE would leave the pages in RSS
 * until the system runs short). A parked chunk is handed out before a new
 * one, for any class (its range stays reserved and writable; a given-back
 * one is populated again as it is carved). So a process keeps at most:
 * the chunks that hold a live block or one in a thread's cache (whole: one
 * live block keeps its 2 MiB), SLAB_KEEP empty chunks (8 MiB), one piece
 * per thread carving or rest passed on (the most threads ever allocating
 * at once) and, outside the chunks, the stack of the given-back ones (4
 * bytes each: RECARVE below; before round 21 a given-back chunk kept its
 * header's page for the link). A free block still serves its
 * own class only while its chunk holds a live one. Blocks of other sizes, and every block while
 * bypassed or when the range cannot be had, come from malloc. Slab blocks are not
 * malloc blocks: free() and malloc_usable_size must never see them (only
 * pool_free does). Under AddressSanitizer there are no slabs, so that ASan
 * and LeakSanitizer see every block as malloc's.
 *
 * DECAY (round 18): past the SLAB_KEEP chunks kept for good, an emptied
 * chunk is not given back at once either: it is kept populated, stamped
 * with the monotonic time it emptied, and given back only once it stayed
 * unused for SLAB_DECAY_MS (10 s, jemalloc's dirty_decay_ms), as glibc's
 * heap keeps what a process grew. A process that closes a store of
 * hundreds of MiB and opens the next (ctxbench's cells, a server's
 * reload) carves the next one's blocks from memory already populated,
 * instead of faulting it in again (MADV_POPULATE_WRITE was ~6% of a
 * create cell: docs/benchmarks.md, round 17). Kept chunks are handed out
 * newest first (warm), and the oldest decay first: the kept list is
 * doubly linked, pushed and taken at its head, given back from its tail.
 * BOUND: at most SLAB_DECAY_MAX bytes (512 MiB) kept beyond the SLAB_KEEP
 * ones; a chunk that empties past it is given back at once, as before. So
 * a process keeps, beside what round 14 kept, at most 512 MiB for at most
 * 10 s after the last time one of those chunks was emptied (a chunk taken
 * and emptied again is stamped anew).
 * Who gives them back: one process-wide thread (the stores' own threads
 * end at ctx_close, and the memory outlives the store), started by the
 * first chunk kept past SLAB_KEEP, sleeping until the oldest one's time is
 * up, and ending once no chunk past SLAB_KEEP is kept: an idle process
 * that gave its memory back has no such thread. It takes slab_empty_lock
 * only (to unlink, never across the madvise). If it cannot be started,
 * chunks past SLAB_KEEP are given back at once, as before. Tests change
 * the time and the bound with pool_slab_set_decay (pool.h).
 *
 * PIECES AND HUGE PAGES (round 20): the range is aligned to SLAB_CHUNK so
 * that a chunk can be one 2 MiB page: one TLB entry instead of 512 for
 * memory every thread's commits touch (mixed at 64 threads ran ~1.3x and
 * update ~1.1x under load, docs/benchmarks.md, round 20). A huge page is populated
 * (zeroed) whole at its first touch, so a chunk is not one thread's any
 * more: it is cut into SLAB_PIECE (128 KiB) pieces, the thread that takes
 * it carves the first and the others go on the list of rests that exiting
 * threads leave (slab_rests), from which the next threads that need one
 * take theirs. So 64 threads that each start carving populate 4 chunks,
 * not 64 huge pages of their own (with per-thread chunks on huge pages,
 * update at 64 threads ran 0.12x: round 19). slab_rest_lock is held while
 * a chunk is cut, so that threads that find no piece wait for the pieces
 * of one chunk instead of each cutting one. The held bytes of a chunk
 * start at its pieces' bytes (SLAB_CHUNK less the header's SLAB_HDR - 8),
 * and a thread that stops carving a piece subtracts what it left
 * uncarved: a chunk still empties once all its blocks are free and every
 * piece is carved or dropped (a piece on the list of rests keeps its
 * chunk, as an exited thread's rest did).
 * Where the kernel's transparent huge pages are in "always" or "madvise"
 * mode (slab_huge), the range past its first SLAB_SMALL (32 MiB) is
 * advised MADV_HUGEPAGE: its chunks are huge pages from their first touch,
 * which also populates them ~3x cheaper than 4 KiB pages. The first 32 MiB
 * are not: a huge page is resident whole, up to 2 MiB more than a small
 * store uses (ctxbench memory's 160,000 keys: 149 B a key against 137);
 * their chunks are populated in small pages as they are carved, and each
 * is collapsed into a huge page (MADV_COLLAPSE, a copy, on a thread of its
 * own: slab_collapse_async) once the chunk
 * after it is cut, when its pieces are all taken.
 * RECARVE (round 21): a chunk is given back (MADV_DONTNEED) whole, and
 * nothing of it is written while it is bare: the stack of bare chunks is
 * an array of their indexes beside the range (slab_bare), not a list
 * linked through their headers. Before, past the first 32 MiB (and with
 * THP "always") the header's page was kept for the link: the huge page
 * was split, its other pages went back only under pressure (the deferred
 * split), and the chunk carved again was populated in 4 KiB pages and
 * collapsed (a copy) - in a long-running process (make bench's cells, a
 * server's stores) every chunk past the decay paid that again. Now a bare
 * chunk past the start comes back as one huge page's first touch (the
 * header's clearing), and one in the start as a fresh one there does.
 * With THP "never", no such file (no THP) or pool_slab_use_huge(false)
 * before the first slab allocation, nothing is advised or collapsed and
 * pieces are populated SLAB_STEP at a time as chunks were.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
#define pool_poison(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define pool_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define pool_poison(p, n)   ((void)(p), (void)(n))
#define pool_unpoison(p, n) ((void)(p), (void)(n))
#define POOL_SLAB           1
#endif

#define POOL_CLASSES 16           /* chunks of 32 to 272 bytes */
#define POOL_CAP     576          /* blocks per class: a burst of released versions */
#define POOL_BYTES   (128u << 10) /* bytes per thread */

typedef struct block {
	struct block *next;
} block;

static _Thread_local struct {
	block *head[POOL_CLASSES];
	uint16_t n[POOL_CLASSES];
	size_t bytes;
	bool allocs; /* pool_alloc was called: a thread that only frees keeps nothing */
	bool keyed;  /* the exit destructor is set */
	bool off;    /* exited, no key, or bypassed: pool_free frees */
} pool;

static inline size_t class_usable(unsigned k)
{
	return 32 + 16 * (size_t)k - 8;
}

/* The class that serves a request of size bytes (POOL_CLASSES: none). */
static inline unsigned class_for_request(size_t size)
{
	return size <= class_usable(0) ? 0 : (unsigned)((size - class_usable(0) + 15) / 16);
}

/* The class a block of usable bytes belongs to (POOL_CLASSES: none). */
static inline unsigned class_for_block(size_t usable)
{
	if (usable < class_usable(0))
		return POOL_CLASSES;
	size_t k = (usable - class_usable(0)) / 16;
	return k < POOL_CLASSES ? (unsigned)k : POOL_CLASSES;
}

#ifdef POOL_SLAB
#include <sys/mman.h>
#include <sys/resource.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define SLAB_RANGE    ((size_t)64 << 30)  /* address space reserved, never all backed */
#define SLAB_AS_SHARE 4                   /* at most 1/4 of RLIMIT_AS reserved */
#define SLAB_CHUNK    ((size_t)2 << 20)   /* carved by one thread */
#define SLAB_STEP     ((size_t)128 << 10) /* populated at once */
#define SLAB_BATCH    32                  /* blocks taken from a shared list at once */
#define SLAB_REST_MIN ((size_t)4096)      /* the least rest of a chunk passed on */
#define SLAB_PIECE    SLAB_STEP           /* carved by one thread (PIECES above) */
#define SLAB_SMALL    ((size_t)32 << 20)  /* the range's start not advised (PIECES) */

/* The range (base NULL: none, malloc) and its size, set before base
 * (slab_init); on one line, read by every pool_free (slab_has). */
static _Alignas(16) struct {
	_Atomic(char *) base;
	atomic_size_t size;
} slab_map;
static atomic_size_t slab_used; /* bytes of it handed out as chunks */
static pthread_once_t slab_once = PTHREAD_ONCE_INIT;
static atomic_bool slab_off;        /* pool_use_slabs(false) */
static atomic_bool slab_huge;       /* huge pages: advised past SLAB_SMALL, collapsed before */
static atomic_uint slab_collapsing; /* collapses in flight (slab_collapse_async) */
#define SLAB_COLLAPSERS 2           /* in flight at most; past them a chunk stays on small pages */

/* pool_slab_use_huge's setting and whether slab_init has read it, in one
 * word so that a call and the first open are ordered: with a flag checked,
 * then the setting stored, a call racing the first open could store it
 * after slab_init read the old one and still return true (round 24). */
#define SLAB_NO_HUGE 1u /* pool_slab_use_huge(false) */
#define SLAB_STARTED 2u /* slab_init read it: too late */
static atomic_uint slab_huge_setting;
void (*pool_test_use_huge_hook)(void); /* tests: inside pool_slab_use_huge's window */

/* A chunk's header, at its start: the chunk's freed blocks that no thread's
 * cache took, by class, and the link of the class's list of chunks that
 * have some (all under the class's lock); then what finds the chunk empty
 * (round 14, see SLABS above: 536 bytes in all). */
typedef struct slab_hdr slab_hdr;
struct slab_hdr {
	struct {
		block *head;    /* this chunk's free blocks of the class */
		slab_hdr *next; /* the next chunk with free blocks of the class */
		slab_hdr *prev; /* the one before (NULL: the top), for slab_reclaim */
		uint32_t n;     /* blocks on head */
		bool listed;    /* on the class's list */
	} c[POOL_CLASSES];
	/* Bytes of the chunk not on the shared lists: SLAB_CHUNK when a thread
	 * takes it; the blocks put on a list subtract their size, taken ones
	 * add it back, and the thread that stops carving subtracts what it
	 * never carved. 0: every block is free (changed under a class's lock,
	 * or by the carver, once). */
	atomic_size_t held;
	slab_hdr *next_empty; /* on a list of emptied or kept chunks (not bare: slab_bare) */
	slab_hdr *prev_empty; /* the one before on the kept list (NULL: its head) */
	uint64_t kept_ms;     /* when it was kept (monotonic ms), for the decay */
	atomic_bool queued;   /* on a thread's list of emptied chunks */
};
/* The first block of a chunk is at SLAB_HDR from its start. */
#define SLAB_HDR (((sizeof(slab_hdr) + 15) & ~(size_t)15) + 16)

/* Freed slab blocks no thread's cache took, by class, kept by chunk: a
 * stack of the chunks that have some (a chunk goes on top when it gets its
 * first), and blocks are taken from the top one until it has none. So
 * blocks are handed out a chunk at a time: what one thread allocates in a
 * row lies close together however scattered the frees were (with one list
 * across chunks, a store loaded after others were dropped had its blocks
 * spread over all the memory they had used, and its reads ran 2-3x slower:
 * docs/benchmarks.md, round 13). */
static struct {
	pthread_mutex_t lock;
	slab_hdr *chunks;
	atomic_size_t n;
} slab_free[POOL_CLASSES];

/* Chunks whose blocks were all free, taken off the lists (slab_reclaim):
 * up to SLAB_KEEP kept populated for good, up to SLAB_DECAY_MAX bytes more
 * kept until they stayed unused for SLAB_DECAY_MS (DECAY above), the
 * others given back to the system (MADV_DONTNEED: their range stays
 * reserved and writable, zero when touched again). Either is handed out again as a new chunk is,
 * for any class. Lock order: every class's lock (in class order), then this one. */
#define SLAB_KEEP      4                   /* empty chunks kept populated for good: 8 MiB */
#define SLAB_DECAY_MS  10000u              /* kept past SLAB_KEEP this long unused */
#define SLAB_DECAY_MAX ((size_t)512 << 20) /* at most this many bytes past SLAB_KEEP */
static pthread_mutex_t slab_empty_lock = PTHREAD_MUTEX_INITIALIZER;
static slab_hdr *slab_kept, *slab_kept_tail;
static uint32_t *slab_bare; /* the given-back chunks (RECARVE): below */
static unsigned slab_nkept;
/* The decay (DECAY above), under slab_empty_lock: its settings, whether
 * its thread runs, and the condition it sleeps on (monotonic clock). */
static unsigned slab_decay_ms = SLAB_DECAY_MS;
static size_t slab_decay_max = SLAB_DECAY_MAX;
static bool slab_decaying;
static pthread_cond_t slab_decay_cv;
static atomic_size_t slab_kept_bytes; /* pool_slab_kept */
/* slab_bare: the chunks given back (bare), as a stack of their indexes
 * in the range (slab_nbare of them), under slab_empty_lock: kept outside
 * the chunks (round 21), so that a chunk is given back whole - no header page kept to hold a link,
 * which split a huge page and made the chunk come back on 4 KiB pages and a collapse - and comes
 * back, where the range is advised, as one huge page's first touch (RECARVE above). A mapping of
 * its own made by slab_init (4 bytes a chunk: 128 KiB for 64 GiB), of which only the pages the
 * deepest stack reached are resident (4 KiB per 1,024 chunks); not a static array, which moved the
 * hot variables around it onto other cache lines. */
static size_t slab_nbare;
static atomic_size_t slab_bare_bytes; /* pool_slab_given_back */

/* The rests of chunks whose threads exited: at the rest's first free byte,
 * its bounds (the chunk is writable whole). */
typedef struct slab_rest {
	struct slab_rest *next;
	char *pop, *end;
} slab_rest;
static pthread_mutex_t slab_rest_lock = PTHREAD_MUTEX_INITIALIZER;
static slab_rest *slab_rests;

/* The calling thread's chunk: blocks are carved at `at` (the next block's
 * address; its class word is at - 8), populated up to `pop`. */
static _Thread_local struct {
	char *at, *pop, *end;
	bool huge; /* pool_huge_chunks */
} slab_t;

#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif

/* A chunk about to be populated as it is carved (fresh, or given back):
 * backed by huge pages from its first touch if the calling thread asked
 * (pool_huge_chunks: recovery) - true then, and the chunk is not also
 * collapsed (slab_cut_4k). The range is aligned to SLAB_CHUNK (slab_init),
 * so a chunk is one huge page. */
static bool slab_maybe_huge(char *c)
{
	return slab_t.huge && ((uintptr_t)c & (SLAB_CHUNK - 1)) == 0 &&
	       madvise(c, SLAB_CHUNK, MADV_HUGEPAGE) == 0;
}

/* fork: no lock held by another thread is copied into the child locked. */
static void slab_fork_prepare(void)
{
	pthread_mutex_lock(&slab_rest_lock);
	for (unsigned k = 0; k < POOL_CLASSES; k++)
		pthread_mutex_lock(&slab_free[k].lock);
	pthread_mutex_lock(&slab_empty_lock);
}

static void slab_fork_done(void)
{
	pthread_mutex_unlock(&slab_empty_lock);
	for (unsigned k = POOL_CLASSES; k-- > 0;)
		pthread_mutex_unlock(&slab_free[k].lock);
	pthread_mutex_unlock(&slab_rest_lock);
}

/* The child has no decay thread: the next chunk kept past SLAB_KEEP starts
 * one, on a condition made anew (the parent's thread may have waited on it);
 * nor the parent's collapsers (slab_collapse_async). */
static void slab_fork_child(void)
{
	slab_decaying = false;
	atomic_store(&slab_collapsing, 0); /* the parent's collapsers are not here */
	pthread_condattr_t monotonic;
	pthread_condattr_init(&monotonic);
	pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
	pthread_cond_init(&slab_decay_cv, &monotonic);
	pthread_condattr_destroy(&monotonic);
	pthread_mutex_unlock(&slab_empty_lock);
	for (unsigned k = POOL_CLASSES; k-- > 0;)
		pthread_mutex_unlock(&slab_free[k].lock);
	pthread_mutex_unlock(&slab_rest_lock);
}

/* Whether the kernel gives a range advised MADV_HUGEPAGE huge pages: THP
 * in "always" or "madvise" mode (not "never"; a kernel without
 * THP has no such file, and its madvise fails). */
static bool slab_thp_allowed(void)
{
	char buf[128];
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return strstr(buf, "[always]") || strstr(buf, "[madvise]");
}

static void slab_init(void)
{
	unsigned huge_setting = atomic_fetch_or(&slab_huge_setting, SLAB_STARTED);
	for (unsigned k = 0; k < POOL_CLASSES; k++)
		pthread_mutex_init(&slab_free[k].lock, NULL);
	pthread_condattr_t monotonic;
	pthread_condattr_init(&monotonic);
	pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
	pthread_cond_init(&slab_decay_cv, &monotonic);
	pthread_condattr_destroy(&monotonic);
	if (pthread_atfork(slab_fork_prepare, slab_fork_done, slab_fork_child) != 0)
		return; /* no slabs: malloc */
	/* The reservation counts against RLIMIT_AS like mapped memory: under a
	 * limit, take a share of it, not 64 GiB of it (round 13). */
	size_t range = SLAB_RANGE;
	struct rlimit as;
	if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY &&
	    as.rlim_cur / SLAB_AS_SHARE < range)
		range = (size_t)(as.rlim_cur / SLAB_AS_SHARE) & ~(SLAB_CHUNK - 1);
	if (range < SLAB_CHUNK)
		return;
	size_t bare = range / SLAB_CHUNK * sizeof(*slab_bare);
	slab_bare = mmap(NULL, bare, PROT_READ | PROT_WRITE,
	                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (slab_bare == MAP_FAILED)
		return; /* no slabs: malloc */
	/* Aligned to SLAB_CHUNK, so that a chunk is one huge page. */
	size_t mapped = range + SLAB_CHUNK;
	char *p = mmap(NULL, mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		munmap(slab_bare, bare);
		return;
	}
	char *base = (char *)(((uintptr_t)p + SLAB_CHUNK - 1) & ~(uintptr_t)(SLAB_CHUNK - 1));
	if (base > p)
		munmap(p, (size_t)(base - p));
	if (p + mapped > base + range)
		munmap(base + range, (size_t)(p + mapped - (base + range)));
	if (!(huge_setting & SLAB_NO_HUGE) && slab_thp_allowed() &&
	    (range <= SLAB_SMALL ||
	     madvise(base + SLAB_SMALL, range - SLAB_SMALL, MADV_HUGEPAGE) == 0))
		atomic_store(&slab_huge, true);
	atomic_store_explicit(&slab_map.size, range, memory_order_relaxed);
	atomic_store_explicit(&slab_map.base, base, memory_order_release);
}

void pool_fork_ready(void)
{
	pthread_once(&slab_once, slab_init);
}

/* A thread that holds a slab block got it after slab_init (through the
 * allocator's pthread_once), so it sees base and range; one that sees base
 * but still range 0 holds no slab block. */
static inline bool slab_has(const void *p)
{
	char *base = atomic_load_explicit(&slab_map.base, memory_order_relaxed);
	return base && (uintptr_t)p - (uintptr_t)base <
	                   atomic_load_explicit(&slab_map.size, memory_order_relaxed);
}

static inline unsigned slab_class(const void *p)
{
	return (unsigned)((const uint64_t *)p)[-1];
}

static bool pool_keyed(void);
static bool slab_chunk_locked(char *base);

/* The last chunk cut on small pages, and the one before it, to collapse
 * into a huge page (slab_rest_lock; PIECES). */
static char *slab_last_cut, *slab_collapse;

/* Whether chunk c lies in the range's start that is not advised, while
 * the rest is (PIECES above). */
static inline bool slab_small(const char *c)
{
	return atomic_load_explicit(&slab_huge, memory_order_relaxed) &&
	       c < atomic_load_explicit(&slab_map.base, memory_order_relaxed) + SLAB_SMALL;
}

/* Chunk c was cut, fresh or bare (given back before): the one cut before
 * it on small pages (in the range's start) is collapsed into a huge page
 * once the lock is left (slab_chunk). */
static void slab_cut_4k(char *c)
{
	if (!atomic_load_explicit(&slab_huge, memory_order_relaxed))
		return;
	slab_collapse = slab_last_cut;
	slab_last_cut = slab_small(c) ? c : NULL;
}

/* Cut the chunk c (its header clear) into pieces: the calling thread
 * carves the first, the others go on the list of rests (PIECES above);
 * populated: the chunk's memory is (a kept chunk). A piece's first block
 * has its class word at the piece's start, and the first piece's at
 * SLAB_HDR - 8: a chunk holds SLAB_HDR - 8 bytes less than SLAB_CHUNK of
 * pieces, its held bytes at first (slab_close gives back what a piece
 * leaves uncarved). slab_rest_lock held. */
static void slab_pieces(char *c, bool populated)
{
	atomic_store_explicit(&((slab_hdr *)c)->held, SLAB_CHUNK - SLAB_HDR + 8,
	                      memory_order_relaxed);
	slab_t.at = c + SLAB_HDR;
	slab_t.pop = populated ? c + SLAB_CHUNK : c;
	slab_t.end = c + SLAB_PIECE;
	slab_rest *first = NULL, *last = NULL;
	for (char *piece = c + SLAB_CHUNK - SLAB_PIECE; piece > c; piece -= SLAB_PIECE) {
		slab_rest *r = (slab_rest *)piece;
		r->pop = populated ? piece + SLAB_PIECE : piece;
		r->end = piece + SLAB_PIECE;
		r->next = first;
		first = r;
		if (!last)
			last = r;
	}
	if (first) {
		last->next = slab_rests;
		slab_rests = first;
	}
}

static void *slab_collapse_main(void *arg)
{
	char *c = arg;
	/* Not the name of the thread that started it (tests count threads
	 * by name). */
	pthread_setname_np(pthread_self(), "ctx-collapse");
	/* Not one emptied meanwhile (populated again for nothing). Read under
	 * slab_rest_lock: a chunk given back and cut again has its header
	 * cleared with a plain memset under that lock (slab_chunk_locked). */
	pthread_mutex_lock(&slab_rest_lock);
	bool held = atomic_load_explicit(&((slab_hdr *)c)->held, memory_order_relaxed) != 0;
	pthread_mutex_unlock(&slab_rest_lock);
	if (held)
		(void)madvise(c, SLAB_CHUNK, MADV_COLLAPSE);
	atomic_fetch_sub(&slab_collapsing, 1);
	return NULL;
}

/* Start fn(arg) on a detached thread with a small stack (the collapsers
 * and the decay thread); false if it cannot be started. */
static bool slab_thread_start(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	pthread_t t;
	bool ok = pthread_attr_init(&attr) == 0;
	if (ok) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, (size_t)64 << 10);
		ok = pthread_create(&t, &attr, fn, arg) == 0;
		pthread_attr_destroy(&attr);
	}
	return ok;
}

/* Collapse chunk c into a huge page on a thread of its own. MADV_COLLAPSE
 * allocates a huge page and copies the chunk into it: 4-12 ms in this VM
 * (round 20), which the thread that cut the next chunk - a commit holding
 * its context's write lock - would otherwise wait for. A collapse that
 * cannot start (SLAB_COLLAPSERS running, no thread) is skipped: the chunk
 * stays on small pages, which is only slower. */
static void slab_collapse_async(char *c)
{
	if (atomic_fetch_add(&slab_collapsing, 1) >= SLAB_COLLAPSERS) {
		atomic_fetch_sub(&slab_collapsing, 1);
		return;
	}
	if (!slab_thread_start(slab_collapse_main, c))
		atomic_fetch_sub(&slab_collapsing, 1);
}

/* Give the calling thread a piece to carve: another's rest or piece, or
 * a new chunk's first. The lock is held while a chunk is cut, so that
 * threads that find no piece at once (64 at a cell's start) wait for the
 * one chunk's pieces instead of each populating a chunk of its own. */
static bool slab_chunk(void)
{
	pthread_once(&slab_once, slab_init);
	char *base = atomic_load_explicit(&slab_map.base, memory_order_acquire);
	if (!base || !pool_keyed()) /* keyed: its rest is passed on at exit */
		return false;
	pthread_mutex_lock(&slab_rest_lock);
	bool ok = slab_chunk_locked(base);
	char *collapse = slab_collapse;
	slab_collapse = NULL;
	pthread_mutex_unlock(&slab_rest_lock);
	if (collapse)
		slab_collapse_async(collapse);
	return ok;
}

/* slab_chunk's work, slab_rest_lock held (lock order: slab_rest_lock,
 * then slab_empty_lock). */
static bool slab_chunk_locked(char *base)
{
	slab_rest *r = slab_rests;
	if (r) {
		slab_rests = r->next;
		slab_t.pop = r->pop;
		slab_t.end = r->end;
		slab_t.at = (char *)r + 8;
		return true;
	}
	/* An emptied chunk: a kept one (populated), else a bare one (populated
	 * as it is carved, header and all: RECARVE); either's header to
	 * clear. */
	pthread_mutex_lock(&slab_empty_lock);
	slab_hdr *e = slab_kept;
	bool bare = !e;
	if (e) {
		slab_kept = e->next_empty;
		if (slab_kept)
			slab_kept->prev_empty = NULL;
		else
			slab_kept_tail = NULL;
		slab_nkept--;
		atomic_fetch_sub_explicit(&slab_kept_bytes, SLAB_CHUNK, memory_order_relaxed);
	} else if (slab_nbare) {
		e = (slab_hdr *)(base + (size_t)slab_bare[--slab_nbare] * SLAB_CHUNK);
		atomic_fetch_sub_explicit(&slab_bare_bytes, SLAB_CHUNK, memory_order_relaxed);
	}
	pthread_mutex_unlock(&slab_empty_lock);
	if (e) {
		/* A bare chunk is unbacked whole: where the range is advised its
		 * header's clearing faults in one huge page (nothing to collapse);
		 * in the range's start it is populated in 4 KiB pages and
		 * collapsed, as a fresh chunk there is. */
		bool advised = bare && slab_maybe_huge((char *)e);
		memset(e, 0, sizeof(slab_hdr));
		slab_pieces((char *)e, !bare);
		if (bare && !advised)
			slab_cut_4k((char *)e);
		return true;
	}
	size_t range = atomic_load_explicit(&slab_map.size, memory_order_relaxed);
	if (atomic_load_explicit(&slab_used, memory_order_relaxed) > range - SLAB_CHUNK)
		return false; /* all handed out */
	size_t off = atomic_fetch_add(&slab_used, SLAB_CHUNK);
	if (off > range - SLAB_CHUNK ||
	    mprotect(base + off, SLAB_CHUNK, PROT_READ | PROT_WRITE) != 0) {
		/* Give the chunk back unless a later one was taken meanwhile (a
		 * failed mprotect - RLIMIT_DATA, strict overcommit - must not use
		 * the range up: slabs would be gone once the pressure is over). */
		size_t after = off + SLAB_CHUNK;
		atomic_compare_exchange_strong(&slab_used, &after, off);
		return false;
	}
	bool advised = slab_maybe_huge(base + off);
	slab_pieces(base + off, false); /* the header is zero: fresh memory */
	if (!advised)
		slab_cut_4k(base + off);
	return true;
}

static uint64_t slab_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* slab_decay_cv's clock */
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Push ch on the kept list's head (slab_empty_lock held). */
static void slab_keep_locked(slab_hdr *ch)
{
	ch->prev_empty = NULL;
	ch->next_empty = slab_kept;
	if (slab_kept)
		slab_kept->prev_empty = ch;
	else
		slab_kept_tail = ch;
	slab_kept = ch;
	slab_nkept++;
	atomic_fetch_add_explicit(&slab_kept_bytes, SLAB_CHUNK, memory_order_relaxed);
}

/* Give ch's memory back and put it on the bare list (no lock held). */
static void slab_give_back(slab_hdr *ch)
{
	/* Not MADV_FREE: the pages would stay in RSS until the system
	 * runs short, where the point is that a process's footprint
	 * shrinks when its stores do (docs/decisions.md, round 14). Given
	 * back whole, header and all: nothing of it is written while it is
	 * bare (its place on the stack of bare chunks is outside it). */
	char *base = atomic_load_explicit(&slab_map.base, memory_order_relaxed);
	(void)madvise(ch, SLAB_CHUNK, MADV_DONTNEED);
	pthread_mutex_lock(&slab_empty_lock);
	slab_bare[slab_nbare++] = (uint32_t)(((char *)ch - base) / SLAB_CHUNK);
	atomic_fetch_add_explicit(&slab_bare_bytes, SLAB_CHUNK, memory_order_relaxed);
	pthread_mutex_unlock(&slab_empty_lock);
}

/* Take the oldest kept chunk off the list if more than SLAB_KEEP are kept
 * and its time is up at now, or (force) in any case (slab_empty_lock
 * held); *wait_ms: how long until the oldest one's time is up. */
static slab_hdr *slab_decayed_locked(uint64_t now, bool force, uint64_t *wait_ms)
{
	*wait_ms = 0;
	if (slab_nkept <= SLAB_KEEP)
		return NULL;
	slab_hdr *ch = slab_kept_tail;
	uint64_t due = ch->kept_ms + slab_decay_ms;
	bool over = (size_t)(slab_nkept - SLAB_KEEP) * SLAB_CHUNK > slab_decay_max;
	if (!force && !over && slab_decay_ms && now < due) {
		*wait_ms = due - now;
		return NULL;
	}
	slab_kept_tail = ch->prev_empty;
	slab_kept_tail->next_empty = NULL; /* more than SLAB_KEEP: not the head */
	slab_nkept--;
	atomic_fetch_sub_explicit(&slab_kept_bytes, SLAB_CHUNK, memory_order_relaxed);
	return ch;
}

/* The decay thread (DECAY above): gives back the chunks kept past
 * SLAB_KEEP as their time is up, and ends when none is left. */
static void *slab_decay_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "ctx-decay");
	pthread_mutex_lock(&slab_empty_lock);
	for (;;) {
		uint64_t wait_ms;
		slab_hdr *ch = slab_decayed_locked(slab_now_ms(), false, &wait_ms);
		if (ch) {
			pthread_mutex_unlock(&slab_empty_lock);
			slab_give_back(ch);
			pthread_mutex_lock(&slab_empty_lock);
			continue;
		}
		if (!wait_ms)
			break; /* SLAB_KEEP or fewer kept */
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += (time_t)(wait_ms / 1000);
		until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&slab_decay_cv, &slab_empty_lock, &until);
	}
	slab_decaying = false;
	pthread_mutex_unlock(&slab_empty_lock);
	return NULL;
}

/* Start the decay thread (slab_decaying was set by the caller); if it
 * cannot be, give back what is kept past SLAB_KEEP now. */
static void slab_decay_start(void)
{
	if (slab_thread_start(slab_decay_main, NULL))
		return;
	pthread_mutex_lock(&slab_empty_lock);
	uint64_t wait_ms;
	for (slab_hdr *ch; (ch = slab_decayed_locked(0, true, &wait_ms));) {
		pthread_mutex_unlock(&slab_empty_lock);
		slab_give_back(ch);
		pthread_mutex_lock(&slab_empty_lock);
	}
	slab_decaying = false;
	pthread_mutex_unlock(&slab_empty_lock);
}

/* Take the emptied chunks of list (linked by next_empty, each queued by
 * the caller) off every class's list, and keep or give back their memory.
 * A chunk taken from since it emptied is left as it is (it is queued
 * again when it empties again). Called with no lock held, about once per
 * chunk emptied (2 MiB of frees): the class locks are all taken, in order,
 * so that no block of a dead chunk is taken meanwhile; unlinking is O(1) a
 * class (the lists are doubly linked), so they are held briefly. */
static void slab_reclaim(slab_hdr *list)
{
	for (unsigned k = 0; k < POOL_CLASSES; k++)
		pthread_mutex_lock(&slab_free[k].lock);
	slab_hdr *dead = NULL;
	for (slab_hdr *ch = list, *next; ch; ch = next) {
		next = ch->next_empty;
		atomic_store_explicit(&ch->queued, false, memory_order_relaxed);
		if (atomic_load_explicit(&ch->held, memory_order_relaxed) != 0)
			continue;
		for (unsigned k = 0; k < POOL_CLASSES; k++) {
			if (!ch->c[k].listed)
				continue;
			slab_hdr *before = ch->c[k].prev, *after = ch->c[k].next;
			if (before)
				before->c[k].next = after;
			else
				slab_free[k].chunks = after;
			if (after)
				after->c[k].prev = before;
			atomic_store_explicit(
			    &slab_free[k].n,
			    atomic_load_explicit(&slab_free[k].n, memory_order_relaxed) -
			        ch->c[k].n,
			    memory_order_relaxed);
		}
		ch->next_empty = dead;
		dead = ch;
	}
	for (unsigned k = POOL_CLASSES; k-- > 0;)
		pthread_mutex_unlock(&slab_free[k].lock);
	if (!dead)
		return;
	uint64_t now = slab_now_ms();
	bool start = false;
	for (slab_hdr *ch = dead, *next; ch; ch = next) {
		next = ch->next_empty;
		pthread_mutex_lock(&slab_empty_lock);
		bool keep = slab_nkept < SLAB_KEEP ||
		            (slab_decay_ms &&
		             (size_t)(slab_nkept + 1 - SLAB_KEEP) * SLAB_CHUNK <= slab_decay_max);
		if (keep) {
			ch->kept_ms = now;
			slab_keep_locked(ch);
			if (slab_nkept > SLAB_KEEP && !slab_decaying)
				start = slab_decaying = true;
		}
		pthread_mutex_unlock(&slab_empty_lock);
		if (!keep)
			slab_give_back(ch);
	}
	if (start)
		slab_decay_start();
}

/* Subtract bytes from ch's held bytes; an emptied chunk goes on *emptied
 * (for slab_reclaim, once the caller holds no lock). */
static inline void slab_release(slab_hdr *ch, size_t bytes, slab_hdr **emptied)
{
	if (atomic_fetch_sub_explicit(&ch->held, bytes, memory_order_relaxed) == bytes &&
	    !atomic_exchange_explicit(&ch->queued, true, memory_order_relaxed)) {
		ch->next_empty = *emptied;
		*emptied = ch;
	}
}

static inline slab_hdr *slab_chunk_of(const void *p)
{
	char *base = atomic_load_explicit(&slab_map.base, memory_order_relaxed);
	return (slab_hdr *)(base + ((uintptr_t)p - (uintptr_t)base) / SLAB_CHUNK * SLAB_CHUNK);
}

/* The calling thread stops carving its piece: what it never carved is
 * not held (the chunk may be empty already). */
static void slab_close(void)
{
	if (!slab_t.at)
		return;
	slab_hdr *emptied = NULL;
	slab_release(slab_chunk_of(slab_t.end - 1), (size_t)(slab_t.end - (slab_t.at - 8)),
	             &emptied);
	slab_t.at = slab_t.pop = slab_t.end = NULL;
	if (emptied)
		slab_reclaim(emptied);
}

/* A block of class k from the calling thread's chunk; NULL: none to be had. */
static void *slab_alloc(unsigned k)
{
	size_t sz = class_usable(k) + 8;
	while (!slab_t.at || slab_t.at - 8 + sz > slab_t.end) {
		slab_close();
		if (!slab_chunk())
			return NULL;
	}
	while (slab_t.at - 8 + sz > slab_t.pop) {
		/* Fails (EINVAL) on kernels before 5.14: the pages then fault in. */
		(void)madvise(slab_t.pop, SLAB_STEP, MADV_POPULATE_WRITE);
		slab_t.pop += SLAB_STEP;
	}
	char *b = slab_t.at;
	slab_t.at += sz;
	((uint64_t *)b)[-1] = k;
	return b;
}

/* Put the chain first..last of n slab blocks of class k on its chunks' lists. */
static void slab_put(unsigned k, block *first, block *last, size_t n)
{
	size_t sz = class_usable(k) + 8, run = 0;
	slab_hdr *prev = NULL, *emptied = NULL;
	last->next = NULL;
	pthread_mutex_lock(&slab_free[k].lock);
	for (block *b = first, *next; b; b = next) {
		next = b->next;
		slab_hdr *ch = slab_chunk_of(b);
		if (ch != prev) { /* a run of blocks of one chunk: one atomic step */
			if (prev)
				slab_release(prev, run * sz, &emptied);
			prev = ch;
			run = 0;
		}
		run++;
		b->next = ch->c[k].head;
		ch->c[k].head = b;
		ch->c[k].n++;
		if (!ch->c[k].listed) {
			ch->c[k].listed = true;
			ch->c[k].next = slab_free[k].chunks;
			ch->c[k].prev = NULL;
			if (slab_free[k].chunks)
				slab_free[k].chunks->c[k].prev = ch;
			slab_free[k].chunks = ch;
		}
	}
	slab_release(prev, run * sz, &emptied);
	atomic_store_explicit(&slab_free[k].n,
	                      atomic_load_explicit(&slab_free[k].n, memory_order_relaxed) + n,
	                      memory_order_relaxed);
	pthread_mutex_unlock(&slab_free[k].lock);
	if (emptied)
		slab_reclaim(emptied);
}

/* Take up to SLAB_BATCH blocks of class k from its shared list: one is
 * returned, the others go to the calling thread's cache. */
static void *slab_take(unsigned k)
{
	if (!atomic_load_explicit(&slab_free[k].n, memory_order_relaxed))
		return NULL;
	/* Keyed: what the cache holds is passed on at the thread's exit. */
	size_t most = pool_keyed() ? SLAB_BATCH : 1;
	pthread_mutex_lock(&slab_free[k].lock);
	slab_hdr *ch = slab_free[k].chunks;
	block *b = ch ? ch->c[k].head : NULL, *last = b;
	size_t n = 0;
	while (last && n < most) {
		n++;
		if (n == most || !last->next)
			break;
		last = last->next;
	}
	if (b) {
		ch->c[k].head = last->next;
		ch->c[k].n -= (uint32_t)n;
		atomic_fetch_add_explicit(&ch->held, n * (class_usable(k) + 8),
		                          memory_order_relaxed);
		if (!last->next) { /* the chunk has no more: off the list */
			ch->c[k].listed = false;
			slab_free[k].chunks = ch->c[k].next;
			if (slab_free[k].chunks)
				slab_free[k].chunks->c[k].prev = NULL;
		}
		atomic_store_explicit(&slab_free[k].n,
		                      atomic_load_explicit(&slab_free[k].n, memory_order_relaxed) -
		                          n,
		                      memory_order_relaxed);
	}
	pthread_mutex_unlock(&slab_free[k].lock);
	if (!b)
		return NULL;
	last->next = pool.head[k];
	pool.head[k] = b->next;
	pool.n[k] += (uint16_t)(n - 1);
	pool.bytes += (n - 1) * class_usable(k);
	return b;
}

/* At the thread's exit: its piece's rest to the next thread needing one. */
static void slab_leave(void)
{
	/* A rest too small for the largest block is dropped (a slab_rest and
	 * every block fit in SLAB_REST_MIN). */
	if (slab_t.at && slab_t.at - 8 + SLAB_REST_MIN <= slab_t.end) {
		slab_rest *r = (slab_rest *)(slab_t.at - 8);
		r->pop = slab_t.pop;
		r->end = slab_t.end;
		pthread_mutex_lock(&slab_rest_lock);
		r->next = slab_rests;
		slab_rests = r;
		pthread_mutex_unlock(&slab_rest_lock);
		slab_t.at = slab_t.pop = slab_t.end = NULL;
	}
	slab_close(); /* the rest dropped: the chunk is carved */
}
#else
static inline bool slab_has(const void *p)
{
	(void)p;
	return false;
}
static inline unsigned slab_class(const void *p)
{
	(void)p;
	return POOL_CLASSES;
}
void pool_fork_ready(void) {}
#endif

static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static bool pool_key_ok;

/* Usable bytes of a block of class k (its chunk less glibc's 8-byte header). */
void *pool_alloc(size_t size)
{
	unsigned k = class_for_request(size);
	if (k < POOL_CLASSES && pool.head[k]) {
		block *b = pool.head[k];
		pool_unpoison(b, class_usable(k));
		pool.head[k] = b->next;
		/* The next block of the class: its link is read by the next
		 * allocation, and a block kept long ago is cold. */
		__builtin_prefetch(pool.head[k]);
		pool.n[k]--;
		pool.bytes -= class_usable(k);
		return b;
	}
	pool.allocs = true;
#ifdef POOL_SLAB
	if (k < POOL_CLASSES && !pool.off &&
	    !atomic_load_explicit(&slab_off, memory_order_relaxed)) {
		void *b = slab_take(k);
		if (!b)
			b = slab_alloc(k);
		if (b)
			return b;
	}
#endif
	return malloc(size);
}

static void pool_free_all(void)
{
	for (unsigned k = 0; k < POOL_CLASSES; k++) {
		block *first = NULL, *last = NULL;
		size_t n = 0;
		while (pool.head[k]) {
			block *b = pool.head[k];
			pool_unpoison(b, class_usable(k));
			pool.head[k] = b->next;
			if (slab_has(b)) { /* to the class's shared list, in one go */
				b->next = first;
				first = b;
				if (!last)
					last = b;
				n++;
			} else {
				free(b);
			}
		}
#ifdef POOL_SLAB
		if (first)
			slab_put(k, first, last, n);
#else
		(void)first, (void)last, (void)n;
#endif
		pool.n[k] = 0;
	}
	pool.bytes = 0;
}

static void pool_thread_exit(void *unused)
{
	(void)unused;
	pool_free_all();
#ifdef POOL_SLAB
	slab_leave();
#endif
	pool.off = true;
}

/* At exit, the exiting thread's blocks (the others' are still reachable
 * from their threads; a leak checker that runs at exit sees none lost). */
static void pool_at_exit(void)
{
	pool_thread_exit(NULL);
}

static void pool_key_init(void)
{
	pool_key_ok =
	    pthread_key_create(&pool_key, pool_thread_exit) == 0 && atexit(pool_at_exit) == 0;
}

/* Set the calling thread's exit destructor (false: no cache here). */
static bool pool_keyed(void)
{
	if (pool.off || !pool.allocs)
		return false;
	if (pool.keyed)
		return true;
	pthread_once(&pool_once, pool_key_init);
	if (!pool_key_ok || pthread_setspecific(pool_key, &pool) != 0) {
		pool.off = true;
		return false;
	}
	pool.keyed = true;
	return true;
}

/* Keep p (a block of class k, or none: POOL_CLASSES) or free it. */
static void pool_keep(void *p, unsigned k)
{
	if (k < POOL_CLASSES && pool.n[k] < POOL_CAP &&
	    pool.bytes + class_usable(k) <= POOL_BYTES && pool_keyed()) {
		block *b = p;
		b->next = pool.head[k];
		pool.head[k] = b;
		pool.n[k]++;
		pool.bytes += class_usable(k);
		pool_poison(b + 1, class_usable(k) - sizeof(*b));
		return;
	}
#ifdef POOL_SLAB
	if (slab_has(p)) {
		slab_put(k, p, p, 1);
		return;
	}
#endif
	free(p);
}

void pool_free(void *p)
{
	if (p)
		pool_keep(p, slab_has(p) ? slab_class(p) : class_for_block(malloc_usable_size(p)));
}

void pool_free_sized(void *p, size_t size)
{
	/* The block holds at least size bytes (with glibc its chunk may hold
	 * more; under ASan, TSan or another malloc exactly size): the largest
	 * class whose blocks are no longer is always safe, and it is the
	 * block's own class when size fills a glibc chunk, as the sizes of
	 * nodes and version structs do (hamt.c's node_alloc, store.h). */
	if (p)
		pool_keep(p, slab_has(p) ? slab_class(p) : class_for_block(size));
}

size_t pool_usable_size(void *p)
{
	return slab_has(p) ? class_usable(slab_class(p)) : malloc_usable_size(p);
}

void pool_huge_chunks(bool on)
{
#ifdef POOL_SLAB
	slab_t.huge = on;
#else
	(void)on;
#endif
}

void pool_use_slabs(bool on)
{
#ifdef POOL_SLAB
	atomic_store(&slab_off, !on);
#else
	(void)on;
#endif
}

size_t pool_slab_given_back(void)
{
#ifdef POOL_SLAB
	return atomic_load(&slab_bare_bytes);
#else
	return 0;
#endif
}

size_t pool_slab_kept(void)
{
#ifdef POOL_SLAB
	return atomic_load(&slab_kept_bytes);
#else
	return 0;
#endif
}

void pool_slab_set_decay(unsigned decay_ms, size_t max_bytes)
{
#ifdef POOL_SLAB
	pthread_mutex_lock(&slab_empty_lock);
	slab_decay_ms = decay_ms;
	slab_decay_max = max_bytes;
	/* What is now past the bound or out of time goes back here; the
	 * thread then sleeps for the new time. */
	uint64_t now = slab_now_ms(), wait_ms;
	for (slab_hdr *ch; (ch = slab_decayed_locked(now, false, &wait_ms));) {
		pthread_mutex_unlock(&slab_empty_lock);
		slab_give_back(ch);
		pthread_mutex_lock(&slab_empty_lock);
	}
	if (slab_decaying)
		pthread_cond_signal(&slab_decay_cv);
	pthread_mutex_unlock(&slab_empty_lock);
#else
	(void)decay_ms, (void)max_bytes;
#endif
}

bool pool_slab_use_huge(bool on)
{
#ifdef POOL_SLAB
	unsigned cur = atomic_load(&slab_huge_setting);
	do {
		if (cur & SLAB_STARTED)
			return false;
		if (pool_test_use_huge_hook)
			pool_test_use_huge_hook();
	} while (!atomic_compare_exchange_weak(&slab_huge_setting, &cur,
	                                       on ? cur & ~SLAB_NO_HUGE : cur | SLAB_NO_HUGE));
	return true;
#else
	(void)on;
	return true;
#endif
}

bool pool_slab_huge(void)
{
#ifdef POOL_SLAB
	return atomic_load(&slab_huge);
#else
	return false;
#endif
}

size_t pool_slab_bytes(void)
{
#ifdef POOL_SLAB
	size_t n = atomic_load(&slab_used), range = atomic_load(&slab_map.size);
	return n < range ? n : range;
#else
	return 0;
#endif
}

void pool_trim(void)
{
	pool_free_all();
}

void pool_bypass(bool on)
{
	if (on && pool.off && !pool.bytes)
		return;
	pool_free_all();
	pool.off = on;
}
