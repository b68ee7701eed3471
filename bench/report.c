/*
 * report.c - from the raw rows of `ctxbench run` to what people read:
 *
 *   --summary FILE   one CSV row per engine/workload/threads: the median over
 *                    repetitions of ops/s, of p50 and of p99 (each on its own)
 *   --markdown FILE  the tables of docs/benchmarks.md: ratios of ctx to the
 *                    best peer of its like-with-like group, the goals, per
 *                    workload throughput and latency, memory per key
 *   --plot-dir DIR   plot-<workload>.dat for bench/plot.gp
 *
 * Like-with-like groups (engine_def.group):
 *   durable  ctx-always  vs lmdb-sync, sqlite-full    (every commit fsynced)
 *   batch    ctx-batch   vs lmdb-nosync, sqlite-normal (a crash may lose the
 *                                                       last moments)
 *   memory   ctx-mem     vs the fastest peer of all, whatever its durability
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MAX_T     32
#define BUSY_CPUS 0.3 /* a repetition with other processes this busy is "disturbed" */
#define MAX_REP   64

typedef struct agg {
	int ok, na, err;
	int busy; /* ok repetitions during which other processes used >= 0.3 CPUs */
	double ops[MAX_REP], p50[MAX_REP], p99[MAX_REP], wops[MAX_REP], wp99[MAX_REP];
	double other[MAX_REP];
	char note[160];
} agg;

typedef struct medians {
	bool ok;
	int used; /* repetitions the medians are taken over */
	double ops, p50, p99, wops, wp99;
} medians;

#define NENG 16
static agg cells[NENG][W_COUNT][MAX_T];
static medians med[NENG][W_COUNT][MAX_T];
static int tlist[MAX_T], nt;
static bool engine_seen[NENG], workload_seen[W_COUNT];
static int ok_cells, disturbed; /* cells measured; with other processes busy */
static double other_sum;

static int thread_index(int t, bool add)
{
	for (int i = 0; i < nt; i++)
		if (tlist[i] == t)
			return i;
	if (!add || nt == MAX_T)
		return -1;
	int i = nt++;
	while (i > 0 && tlist[i - 1] > t) {
		tlist[i] = tlist[i - 1];
		i--;
	}
	tlist[i] = t;
	/* Shift the cells already filled for higher counts. */
	for (size_t e = 0; e < NENG; e++)
		for (int w = 0; w < W_COUNT; w++) {
			memmove(&cells[e][w][i + 1], &cells[e][w][i],
			        (size_t)(nt - 1 - i) * sizeof(agg));
			memset(&cells[e][w][i], 0, sizeof(agg));
		}
	return i;
}

static int engine_index(const char *name)
{
	for (size_t i = 0; i < bench_engine_count; i++)
		if (!strcmp(bench_engines[i]->name, name))
			return (int)i;
	return -1;
}

static int workload_index(const char *name)
{
	for (int i = 0; i < W_COUNT; i++)
		if (!strcmp(workload_names[i], name))
			return i;
	return -1;
}

static int split(char *line, char **f, int max)
{
	int n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++) {
		if (*p == ',') {
			*p = 0;
			f[n++] = p + 1;
		} else if (*p == '\n') {
			*p = 0;
		}
	}
	char *nl = strchr(f[n - 1], '\n');
	if (nl)
		*nl = 0;
	return n;
}

static int read_raw(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		return -1;
	}
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		char *fl[16];
		if (!strncmp(line, "rep,", 4))
			continue;
		if (split(line, fl, 16) < 16)
			continue;
		int e = engine_index(fl[1]), w = workload_index(fl[3]);
		if (e < 0 || w < 0)
			continue;
		int t = thread_index(atoi(fl[4]), true);
		if (t < 0)
			continue;
		agg *a = &cells[e][w][t];
		engine_seen[e] = workload_seen[w] = true;
		if (!strcmp(fl[5], "ok") && a->ok < MAX_REP) {
			a->ops[a->ok] = atof(fl[9]);
			a->p50[a->ok] = atof(fl[10]);
			a->p99[a->ok] = atof(fl[11]);
			a->wops[a->ok] = atof(fl[12]);
			a->wp99[a->ok] = atof(fl[13]);
			a->other[a->ok] = atof(fl[14]);
			a->ok++;
		} else if (!strcmp(fl[5], "n/a")) {
			a->na++;
		} else {
			a->err++;
		}
		if (*fl[15] && strcmp(fl[5], "ok"))
			snprintf(a->note, sizeof(a->note), "%s", fl[15]);
		if (!strcmp(fl[5], "ok")) {
			ok_cells++;
			other_sum += atof(fl[14]);
			if (atof(fl[14]) >= BUSY_CPUS)
				disturbed++;
			if (atof(fl[14]) >= BUSY_CPUS)
				a->busy++;
		}
	}
	fclose(f);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[MAX_REP];
	memcpy(s, v, (size_t)n * sizeof(double));
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The median of every figure, over the repetitions that ran on a quiet
 * machine (other processes under BUSY_CPUS) if there is at least one, else
 * over all of them (the cell is then marked). */
static void compute_medians(void)
{
	for (size_t e = 0; e < bench_engine_count; e++)
		for (int w = 0; w < W_COUNT; w++)
			for (int t = 0; t < nt; t++) {
				agg *a = &cells[e][w][t];
				medians *m = &med[e][w][t];
				if (!(m->ok = a->ok > 0))
					continue;
				bool quiet = a->busy < a->ok;
				double v[5][MAX_REP];
				int n = 0;
				for (int i = 0; i < a->ok; i++) {
					if (quiet && a->other[i] >= BUSY_CPUS)
						continue;
					v[0][n] = a->ops[i];
					v[1][n] = a->p50[i];
					v[2][n] = a->p99[i];
					v[3][n] = a->wops[i];
					v[4][n] = a->wp99[i];
					n++;
				}
				m->ops = median(v[0], n);
				m->p50 = median(v[1], n);
				m->p99 = median(v[2], n);
				m->wops = median(v[3], n);
				m->wp99 = median(v[4], n);
				m->used = n;
			}
}

/* ---- comparisons -------------------------------------------------------- */

static double ops_of(const char *engine, int w, int t)
{
	int e = engine_index(engine);
	return e >= 0 && t >= 0 && med[e][w][t].ok ? med[e][w][t].ops : NAN;
}

static bool is_ctx(size_t e)
{
	return !strcmp(bench_engines[e]->family, "ctx");
}

/* The best peer of group g (family restricts to "sqlite" or "lmdb"; NULL =
 * any). memory compares with every peer; the others with their group. */
static double best_peer(const char *group, const char *family, int w, int t, const char **who)
{
	double best = NAN;
	for (size_t e = 0; e < bench_engine_count; e++) {
		const engine_def *d = bench_engines[e];
		if (is_ctx(e) || (family && strcmp(d->family, family)))
			continue;
		if (strcmp(group, "memory") && strcmp(d->group, group))
			continue;
		double v = ops_of(d->name, w, t);
		if (!isnan(v) && (isnan(best) || v > best)) {
			best = v;
			if (who)
				*who = d->name;
		}
	}
	return best;
}

static const char *ctx_of_group(const char *group)
{
	return !strcmp(group, "memory")  ? "ctx-mem"
	       : !strcmp(group, "batch") ? "ctx-batch"
	                                 : "ctx-always";
}

static const char *const groups[] = {"memory", "batch", "durable"};
static const char *const group_peers[] = {"best of all peers", "best of lmdb-nosync, sqlite-normal",
                                          "best of lmdb-sync, sqlite-full"};

/* ---- formatting ----------------------------------------------------------- */

static const char *fmt_ops(char *b, size_t n, double v)
{
	if (isnan(v))
		snprintf(b, n, "n/a");
	else if (v >= 1e6)
		snprintf(b, n, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(b, n, "%.0fk", v / 1e3);
	else if (v >= 1e3)
		snprintf(b, n, "%.1fk", v / 1e3);
	else
		snprintf(b, n, "%.0f", v);
	return b;
}

static const char *fmt_us(char *b, size_t n, double v)
{
	if (isnan(v))
		snprintf(b, n, "n/a");
	else if (v >= 1000)
		snprintf(b, n, "%.0f", v);
	else if (v >= 10)
		snprintf(b, n, "%.1f", v);
	else
		snprintf(b, n, "%.2f", v);
	return b;
}

static const char *fmt_ratio(char *b, size_t n, double v)
{
	if (isnan(v))
		snprintf(b, n, "n/a");
	else if (v >= 10)
		snprintf(b, n, "%.0f×", v);
	else
		snprintf(b, n, "%.2f×", v);
	return b;
}

/* ---- Markdown ------------------------------------------------------------- */

static void md_env(FILE *f, const char *env_path)
{
	FILE *e = env_path ? fopen(env_path, "r") : NULL;
	if (!e)
		return;
	fprintf(f, "### Machine and settings\n\n");
	char line[1024];
	while (fgets(line, sizeof(line), e)) {
		line[strcspn(line, "\n")] = 0;
		if (*line)
			fprintf(f, "- %s\n", line);
	}
	if (ok_cells)
		fprintf(f,
		        "- other processes on the machine used %.2f CPUs on average during the "
		        "measured cells; %d of %d cell repetitions saw them use %.1f CPUs or more "
		        "(column `other_cpu` of the raw CSV). Medians are taken over the "
		        "undisturbed repetitions of a cell; a cell with none is marked † in the "
		        "tables\n",
		        other_sum / ok_cells, disturbed, ok_cells, BUSY_CPUS);
	fprintf(f, "\n");
	fclose(e);
}

static void md_summary(FILE *f)
{
	char b[3][32];
	fprintf(f, "### Ratios: ctx ÷ best like-with-like peer (median ops/s)\n\n"
	           "| workload | threads |");
	for (int g = 0; g < 3; g++)
		fprintf(f, " %s ÷ %s |", ctx_of_group(groups[g]), group_peers[g]);
	fprintf(f, "\n|---|--:|--:|--:|--:|\n");
	for (int w = 0; w < W_COUNT; w++) {
		if (!workload_seen[w])
			continue;
		for (int t = 0; t < nt; t++) {
			fprintf(f, "| %s | %d |", workload_names[w], tlist[t]);
			for (int g = 0; g < 3; g++) {
				const char *who = "";
				double peer = best_peer(groups[g], NULL, w, t, &who);
				double r = ops_of(ctx_of_group(groups[g]), w, t) / peer;
				if (isnan(r))
					fprintf(f, " n/a |");
				else
					fprintf(f, " %s (%s) |", fmt_ratio(b[0], 32, r), who);
			}
			fprintf(f, "\n");
		}
	}
	fprintf(f, "\n");
}

typedef struct goal_row {
	const char *goal;
	const char *engine;
	const char *against;
	char worst[96];
	double ratio;
	double need;
} goal_row;

static void md_goal_row(FILE *f, const goal_row *g)
{
	char b[32];
	const char *verdict = isnan(g->ratio) ? "n/a" : g->ratio >= g->need ? "met" : "**missed**";
	fprintf(f, "| %s | %s | %s | %s | %s | %s |\n", g->goal, g->engine, g->against,
	        isnan(g->ratio) ? "n/a" : fmt_ratio(b, sizeof(b), g->ratio),
	        isnan(g->ratio) ? "" : g->worst, verdict);
}

/* The lowest ratio ctx/peer over thread counts (all of them, or only t64). */
static double worst_ratio(const char *ctx, const char *group, const char *family, int w, int only_t,
                          char *where, size_t wlen)
{
	double worst = NAN;
	for (int t = 0; t < nt; t++) {
		if (only_t && tlist[t] != only_t)
			continue;
		const char *who = "";
		double r = ops_of(ctx, w, t) / best_peer(group, family, w, t, &who);
		if (!isnan(r) && (isnan(worst) || r < worst)) {
			worst = r;
			snprintf(where, wlen, "%s, %d thread%s, vs %s", workload_names[w], tlist[t],
			         tlist[t] == 1 ? "" : "s", who);
		}
	}
	return worst;
}

static void md_goals(FILE *f)
{
	fprintf(f, "### Goals\n\n"
	           "Worst cell of each goal, per like-with-like group (the memory group "
	           "compares ctx-mem with the faster variant of each peer).\n\n"
	           "| goal | ctx | against | worst ratio | worst cell | result |\n"
	           "|---|---|---|--:|---|---|\n");
	for (int g = 0; g < 3; g++) {
		const char *ctx = ctx_of_group(groups[g]);
		static const struct {
			const char *goal, *family;
			double need;
		} reads[] = {{"read ≥ 2× LMDB, every thread count", "lmdb", 2},
		             {"read ≥ 10× SQLite, every thread count", "sqlite", 10}};
		for (int r = 0; r < 2; r++) {
			goal_row row = {reads[r].goal, ctx,          reads[r].family, "",
			                NAN,           reads[r].need};
			char where[96];
			for (int w = W_READ; w <= W_READALL; w++) {
				double v = worst_ratio(ctx, groups[g], reads[r].family, w, 0, where,
				                       sizeof(where));
				if (!isnan(v) && (isnan(row.ratio) || v < row.ratio)) {
					row.ratio = v;
					snprintf(row.worst, sizeof(row.worst), "%s", where);
				}
			}
			md_goal_row(f, &row);
		}
	}
	static const struct {
		const char *goal;
		int w1, w2;
		double need;
	} at64[] = {{"durable update at 64 threads ≥ 10× both peers", W_UPDATE, -1, 10},
	            {"create and mixed at 64 threads ≥ 3× both peers", W_CREATE, W_MIXED, 3}};
	for (int k = 0; k < 2; k++) {
		for (int g = 0; g < 3; g++) {
			/* The update goal is about durable commits; show the others as
			 * a reference. */
			const char *ctx = ctx_of_group(groups[g]);
			char goal[128];
			snprintf(goal, sizeof(goal), "%s%s", at64[k].goal,
			         k == 0 && g != 2 ? " (reference: not durable)" : "");
			goal_row row = {goal, ctx, "lmdb, sqlite", "", NAN, at64[k].need};
			for (int wi = 0; wi < 2; wi++) {
				int w = wi ? at64[k].w2 : at64[k].w1;
				if (w < 0)
					continue;
				for (int fam = 0; fam < 2; fam++) {
					char where[96];
					double v =
					    worst_ratio(ctx, groups[g], fam ? "sqlite" : "lmdb", w,
					                64, where, sizeof(where));
					if (!isnan(v) && (isnan(row.ratio) || v < row.ratio)) {
						row.ratio = v;
						snprintf(row.worst, sizeof(row.worst), "%s", where);
					}
				}
			}
			md_goal_row(f, &row);
		}
	}
	int t2 = thread_index(2, false), t64 = thread_index(64, false);
	for (int g = 0; g < 3; g++) {
		const char *ctx = ctx_of_group(groups[g]);
		goal_row row = {"64 threads ≥ 2 threads (no collapse)", ctx, "itself", "", NAN, 1};
		for (int w = 0; w < W_COUNT; w++) {
			double r = ops_of(ctx, w, t64) / ops_of(ctx, w, t2);
			if (!isnan(r) && (isnan(row.ratio) || r < row.ratio)) {
				row.ratio = r;
				snprintf(row.worst, sizeof(row.worst), "%s: 64 vs 2 threads",
				         workload_names[w]);
			}
		}
		md_goal_row(f, &row);
	}
	fprintf(f, "\n");
}

/* ---- the goals of issue 11 ------------------------------------------------- */

/* One row of the issue-11 table: `have` against `need` (an absolute figure
 * or a ratio); `below` when smaller is better (bytes per key). */
static void md_goal11(FILE *f, const char *goal, const char *cell, double have, double need,
                      bool below, bool absolute)
{
	char b[2][32];
	const char *verdict = isnan(have)                             ? "n/a"
	                      : (below ? have <= need : have >= need) ? "met"
	                                                              : "**missed**";
	if (absolute)
		fprintf(f, "| %s | %s | %s | %s | %s |\n", goal, cell, fmt_ops(b[0], 32, have),
		        fmt_ops(b[1], 32, need), verdict);
	else if (below)
		fprintf(f, "| %s | %s | %.1f B | %.0f B | %s |\n", goal, cell, have, need, verdict);
	else
		fprintf(f, "| %s | %s | %s | %s | %s |\n", goal, cell, fmt_ratio(b[0], 32, have),
		        fmt_ratio(b[1], 32, need), verdict);
}

/* The lowest ratio of ctx to one named engine (or to the best peer of a
 * group and family when `peer` is NULL) over threads in [lo, hi]. */
static double worst_vs(const char *ctx, const char *peer, const char *group, const char *family,
                       int w, int lo, int hi, char *where, size_t wlen)
{
	double worst = NAN;
	for (int t = 0; t < nt; t++) {
		if (tlist[t] < lo || tlist[t] > hi)
			continue;
		const char *who = peer;
		double p = peer ? ops_of(peer, w, t) : best_peer(group, family, w, t, &who);
		double r = ops_of(ctx, w, t) / p;
		if (!isnan(r) && (isnan(worst) || r < worst)) {
			worst = r;
			snprintf(where, wlen, "%s, %d thread%s, vs %s", workload_names[w], tlist[t],
			         tlist[t] == 1 ? "" : "s", who ? who : "?");
		}
	}
	return worst;
}

/* Bytes per key of one engine from the memory CSV: column 5 (RSS growth) or
 * 6 (files); NAN when absent. */
static double memory_of(const char *path, const char *engine, int col)
{
	FILE *m = path ? fopen(path, "r") : NULL;
	double v = NAN;
	char line[1024];
	while (m && fgets(line, sizeof(line), m)) {
		char *fl[8];
		if (split(line, fl, 8) >= 8 && !strcmp(fl[0], engine) && !strcmp(fl[1], "ok") &&
		    *fl[col])
			v = atof(fl[col]);
	}
	if (m)
		fclose(m);
	return v;
}

static void md_goals11(FILE *f, const char *memory)
{
	char where[96], cell[160];
	fprintf(f, "### Goals of issue 11\n\n"
	           "Each goal's worst cell in this run.\n\n"
	           "| goal | worst cell | ctx | goal | result |\n|---|---|--:|--:|---|\n");
	int t1 = thread_index(1, false), t2 = thread_index(2, false), t64 = thread_index(64, false);
	md_goal11(f, "update, memory, 1 thread ≥ 3M/s", "ctx-mem, 1 thread",
	          ops_of("ctx-mem", W_UPDATE, t1), 3e6, false, true);
	double r =
	    worst_vs("ctx-mem", "rwlock", NULL, NULL, W_UPDATE, 64, 64, where, sizeof(where));
	md_goal11(f, "update, memory, 64 threads ≥ 1.0× rwlock", where, r, 1, false, false);
	r = ops_of("ctx-mem", W_UPDATE, t64) / ops_of("ctx-mem", W_UPDATE, t2);
	md_goal11(f, "update, memory, 64 threads ≥ 2 threads", "ctx-mem, 64 vs 2 threads", r, 1,
	          false, false);
	r = worst_vs("ctx-mem", "rwlock", NULL, NULL, W_CREATE, 16, 64, where, sizeof(where));
	md_goal11(f, "create, memory, 16-64 threads ≥ 1.0× rwlock", where, r, 1, false, false);
	r = worst_vs("ctx-mem", "rwlock", NULL, NULL, W_MIXED, 64, 64, where, sizeof(where));
	md_goal11(f, "mixed, memory, 64 threads ≥ 1.0× rwlock", where, r, 1, false, false);
	double worst = NAN;
	static const int create_mixed[] = {W_CREATE, W_MIXED},
	                 create_update[] = {W_CREATE, W_UPDATE};
	for (int k = 0; k < 2; k++) {
		char wh[96];
		double v = worst_vs("ctx-batch", NULL, "batch", NULL, create_mixed[k], 64, 64, wh,
		                    sizeof(wh));
		if (!isnan(v) && (isnan(worst) || v < worst)) {
			worst = v;
			snprintf(cell, sizeof(cell), "ctx-batch, %s", wh);
		}
	}
	md_goal11(f, "create and mixed, batch, 64 threads ≥ 3× the best batch peer", cell, worst, 3,
	          false, false);
	worst = NAN;
	for (int k = 0; k < 2; k++) {
		char wh[96];
		double v = worst_vs("ctx-always", NULL, "durable", NULL, create_update[k], 1,
		                    INT_MAX, wh, sizeof(wh));
		if (!isnan(v) && (isnan(worst) || v < worst)) {
			worst = v;
			snprintf(cell, sizeof(cell), "ctx-always, %s", wh);
		}
	}
	md_goal11(f, "update and create, always, every thread count ≥ 1.0× the best durable peer",
	          cell, worst, 1, false, false);
	static const char *const reads[] = {"read", "readall"};
	static const int rw[] = {W_READ, W_READALL};
	static const double need[] = {2.2, 2};
	for (int k = 0; k < 2; k++) {
		worst = NAN;
		for (int g = 0; g < 3; g++) {
			char wh[96];
			const char *ctx = ctx_of_group(groups[g]);
			double v = worst_vs(ctx, NULL, groups[g], "lmdb", rw[k], 1, INT_MAX, wh,
			                    sizeof(wh));
			if (!isnan(v) && (isnan(worst) || v < worst)) {
				worst = v;
				snprintf(cell, sizeof(cell), "%s, %s", ctx, wh);
			}
		}
		char goal[96];
		snprintf(goal, sizeof(goal), "%s, every thread count ≥ %.1f× LMDB", reads[k],
		         need[k]);
		md_goal11(f, goal, cell, worst, need[k], false, false);
	}
	double rss = memory_of(memory, "ctx-mem", 5);
	md_goal11(f, "memory per key ≤ 2× payload (70 B)", "ctx-mem, RSS growth", rss, 140, true,
	          false);
	double files = NAN;
	const char *fworst = "ctx-batch";
	for (int k = 0; k < 2; k++) {
		const char *e = k ? "ctx-always" : "ctx-batch";
		double v = memory_of(memory, e, 6);
		if (!isnan(v) && (isnan(files) || v > files)) {
			files = v;
			fworst = e;
		}
	}
	double peers = NAN;
	static const char *const fpeers[] = {"lmdb-sync", "lmdb-nosync", "sqlite-full",
	                                     "sqlite-normal"};
	for (int k = 0; k < 4; k++) {
		double v = memory_of(memory, fpeers[k], 6);
		if (!isnan(v) && (isnan(peers) || v < peers))
			peers = v;
	}
	double fneed = isnan(peers) || peers > 84 ? 84 : peers;
	snprintf(cell, sizeof(cell), "%s, files after close (smallest peer: %.1f B)", fworst,
	         peers);
	md_goal11(f, "files per key ≤ 1.2× payload (84 B), below every peer", cell, files, fneed,
	          true, false);
	fprintf(f, "\n");
}

static void md_workload(FILE *f, int w)
{
	char b[4][32];
	fprintf(f, "### %s\n\n![throughput of %s](bench-%s.png)\n\n", workload_titles[w],
	        workload_names[w], workload_names[w]);
	fprintf(f, "Median ops/s%s:\n\n| threads |",
	        w == W_RWW ? " of the readers (writers' ops/s in the next table)" : "");
	int ncols = 1;
	for (size_t e = 0; e < bench_engine_count; e++)
		if (engine_seen[e]) {
			fprintf(f, " %s |", bench_engines[e]->name);
			ncols++;
		}
	for (int g = 0; g < 3; g++)
		fprintf(f, " %s ÷ peer |", ctx_of_group(groups[g]));
	fprintf(f, "\n|");
	for (int c = 0; c < ncols + 3; c++)
		fprintf(f, "%s|", c ? "--:" : "--:");
	fprintf(f, "\n");
	for (int t = 0; t < nt; t++) {
		fprintf(f, "| %d |", tlist[t]);
		for (size_t e = 0; e < bench_engine_count; e++)
			if (engine_seen[e]) {
				const agg *a = &cells[e][w][t];
				fprintf(f, " %s%s |",
				        fmt_ops(b[0], 32, med[e][w][t].ok ? med[e][w][t].ops : NAN),
				        a->ok && a->busy == a->ok ? " †" : "");
			}
		for (int g = 0; g < 3; g++) {
			double r = ops_of(ctx_of_group(groups[g]), w, t) /
			           best_peer(groups[g], NULL, w, t, NULL);
			fprintf(f, " %s |", fmt_ratio(b[1], 32, r));
		}
		fprintf(f, "\n");
	}
	fprintf(f,
	        "\n† every repetition of the cell ran while other processes used %.1f CPUs or "
	        "more: take it with a grain of salt.\n",
	        BUSY_CPUS);
	fprintf(f, "\nMedian latency p50 / p99, µs:\n\n| threads |");
	for (size_t e = 0; e < bench_engine_count; e++)
		if (engine_seen[e])
			fprintf(f, " %s |", bench_engines[e]->name);
	fprintf(f, "\n|");
	for (int c = 0; c < ncols; c++)
		fprintf(f, "--:|");
	fprintf(f, "\n");
	for (int t = 0; t < nt; t++) {
		fprintf(f, "| %d |", tlist[t]);
		for (size_t e = 0; e < bench_engine_count; e++) {
			if (!engine_seen[e])
				continue;
			medians *m = &med[e][w][t];
			if (m->ok)
				fprintf(f, " %s / %s |", fmt_us(b[0], 32, m->p50),
				        fmt_us(b[1], 32, m->p99));
			else
				fprintf(f, " n/a |");
		}
		fprintf(f, "\n");
	}
	if (w == W_RWW) {
		fprintf(f, "\nWriters (4 threads): median ops/s and p99 µs, by reader count:\n\n"
		           "| readers |");
		for (size_t e = 0; e < bench_engine_count; e++)
			if (engine_seen[e])
				fprintf(f, " %s |", bench_engines[e]->name);
		fprintf(f, "\n|");
		for (int c = 0; c < ncols; c++)
			fprintf(f, "--:|");
		fprintf(f, "\n");
		for (int t = 0; t < nt; t++) {
			fprintf(f, "| %d |", tlist[t]);
			for (size_t e = 0; e < bench_engine_count; e++) {
				if (!engine_seen[e])
					continue;
				medians *m = &med[e][w][t];
				if (m->ok)
					fprintf(f, " %s, p99 %s |", fmt_ops(b[0], 32, m->wops),
					        fmt_us(b[1], 32, m->wp99));
				else
					fprintf(f, " n/a |");
			}
			fprintf(f, "\n");
		}
	}
	/* Why cells are missing. */
	bool told = false;
	for (size_t e = 0; e < bench_engine_count; e++) {
		for (int t = 0; t < nt; t++) {
			agg *a = &cells[e][w][t];
			if ((a->na || a->err) && *a->note) {
				fprintf(f, "%s- %s: %s (%s)\n", told ? "" : "\n",
				        bench_engines[e]->name, a->na && !a->err ? "n/a" : "failed",
				        a->note);
				told = true;
				break;
			}
		}
	}
	fprintf(f, "\n");
}

static void md_memory(FILE *f, const char *path)
{
	FILE *m = path ? fopen(path, "r") : NULL;
	if (!m)
		return;
	fprintf(f, "### Memory per stored key\n\n"
	           "Each engine loaded alone in a fresh process with the same data; "
	           "*RSS growth* is the resident set after loading minus before opening "
	           "(after `malloc_trim`; for LMDB it counts the mapped file pages too), "
	           "*files* is the space the engine's files take on disk after it is "
	           "closed (allocated blocks; SQLite's WAL is checkpointed into the "
	           "database on close).\n\n"
	           "| engine | contexts | keys | payload B/key | RSS growth B/key | files B/key |\n"
	           "|---|--:|--:|--:|--:|--:|\n");
	char line[1024];
	while (fgets(line, sizeof(line), m)) {
		char *fl[8];
		if (!strncmp(line, "engine,", 7) || split(line, fl, 8) < 8)
			continue;
		if (strcmp(fl[1], "ok")) {
			fprintf(f, "| %s | %s | %s | %s | %s | %s |\n", fl[0], fl[2], fl[3], fl[4],
			        fl[1], fl[1]);
			continue;
		}
		fprintf(f, "| %s | %s | %s | %s | %s | %s |\n", fl[0], fl[2], fl[3], fl[4],
		        *fl[5] ? fl[5] : "-", *fl[6] ? fl[6] : "-");
	}
	fprintf(f, "\n");
	fclose(m);
}

/* ---- outputs -------------------------------------------------------------- */

static int write_summary(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		return -1;
	}
	fprintf(f, "engine,group,workload,threads,reps,quiet_reps,status,ops_per_s,p50_us,p99_us,"
	           "writer_ops_per_s,writer_p99_us\n");
	for (int w = 0; w < W_COUNT; w++)
		for (size_t e = 0; e < bench_engine_count; e++)
			for (int t = 0; t < nt; t++) {
				agg *a = &cells[e][w][t];
				medians *m = &med[e][w][t];
				if (!a->ok && !a->na && !a->err)
					continue;
				fprintf(f, "%s,%s,%s,%d,%d,%d,", bench_engines[e]->name,
				        bench_engines[e]->group, workload_names[w], tlist[t], a->ok,
				        a->ok - a->busy);
				if (m->ok)
					fprintf(f, "ok,%.0f,%.3f,%.3f,%.0f,%.3f\n", m->ops, m->p50,
					        m->p99, m->wops, m->wp99);
				else
					fprintf(f, "%s,,,,,\n", a->na && !a->err ? "n/a" : "error");
			}
	fclose(f);
	return 0;
}

static int write_plot_data(const char *dir)
{
	for (int w = 0; w < W_COUNT; w++) {
		if (!workload_seen[w])
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/plot-%s.dat", dir, workload_names[w]);
		FILE *f = fopen(path, "w");
		if (!f) {
			perror(path);
			return -1;
		}
		/* Columns: threads, then every engine with at least one value. */
		bool col[NENG];
		fprintf(f, "threads");
		for (size_t e = 0; e < bench_engine_count; e++) {
			col[e] = false;
			for (int t = 0; t < nt; t++)
				col[e] |= med[e][w][t].ok;
			if (col[e])
				fprintf(f, " %s", bench_engines[e]->name);
		}
		fprintf(f, "\n");
		for (int t = 0; t < nt; t++) {
			fprintf(f, "%d", tlist[t]);
			for (size_t e = 0; e < bench_engine_count; e++)
				if (col[e]) {
					if (med[e][w][t].ok)
						fprintf(f, " %.1f", med[e][w][t].ops);
					else
						fprintf(f, " ?");
				}
			fprintf(f, "\n");
		}
		fclose(f);
	}
	return 0;
}

static int write_markdown(const char *path, const char *env, const char *memory)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		return -1;
	}
	md_env(f, env);
	md_summary(f);
	md_goals(f);
	md_goals11(f, memory);
	md_memory(f, memory);
	for (int w = 0; w < W_COUNT; w++)
		if (workload_seen[w])
			md_workload(f, w);
	fclose(f);
	return 0;
}

int bench_report(int argc, char **argv);
int bench_report(int argc, char **argv)
{
	const char *raw = NULL, *summary = NULL, *markdown = NULL, *plots = NULL, *env = NULL,
	           *memory = NULL;
	for (int i = 1; i < argc; i++) {
		const char **opt = !strcmp(argv[i], "--summary")    ? &summary
		                   : !strcmp(argv[i], "--markdown") ? &markdown
		                   : !strcmp(argv[i], "--plot-dir") ? &plots
		                   : !strcmp(argv[i], "--env")      ? &env
		                   : !strcmp(argv[i], "--memory")   ? &memory
		                                                    : NULL;
		if (opt && i + 1 < argc)
			*opt = argv[++i];
		else if (!opt && !raw && argv[i][0] != '-')
			raw = argv[i];
		else {
			fprintf(stderr, "report: bad argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!raw) {
		fprintf(stderr, "report: which raw CSV?\n");
		return 2;
	}
	if (read_raw(raw))
		return 1;
	compute_medians();
	if (summary && write_summary(summary))
		return 1;
	if (plots && write_plot_data(plots))
		return 1;
	if (markdown && write_markdown(markdown, env, memory))
		return 1;
	if (!summary && !markdown && !plots) {
		/* Just show the ratios. */
		md_summary(stdout);
		md_goals(stdout);
		md_goals11(stdout, NULL);
	}
	return 0;
}
