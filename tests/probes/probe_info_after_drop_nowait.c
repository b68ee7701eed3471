/*
 * probe_info_after_drop_nowait.c - ctx_context_info against ctx_get and
 * ctx_status_view while a ctx_drop_nowait is decided but not durable.
 *
 * ctx.h: ctx_context_info gives "the status of context id alone, as
 * ctx_status_view would list it (its version is the one ctx_get returns)",
 * and ctx_drop_nowait says "ctx_get keeps showing its last version until
 * the drop is durable". So between a nowait drop and its sync, ctx_get and
 * ctx_status_view still show the context, and ctx_context_info must too.
 * The probe asks ctx_context_info FIRST and ctx_get/ctx_status_view AFTER:
 * a NOT_FOUND from info followed by a context that ctx_get still returns
 * cannot be explained by the drop becoming durable in between (durable is
 * for good), so it is a contradiction.
 *
 * Build and run (from the worktree, after `make build`):
 *   cc -O1 -g -Iinclude tests/probes/probe_info_after_drop_nowait.c \
 *      build/libctx.a $(pkg-config --libs liburcu-bp liburcu-cds libxxhash) -lpthread -o
 * /tmp/probe_info /tmp/probe_info /tmp/probe_info.dir Prints the number of rounds where info said
 * NOT_FOUND while ctx_get (and the status view) still showed the context; exit 1 if the status view
 * listed it (info and the view must agree; ctx_get showing a context
 * whose drop is not durable yet is documented).
 *
 * Second finding, the other way round: ctx_drop_nowait's documentation
 * says "The context is gone for ctx_get_latest, writes and ctx_list_ids at
 * once", yet ctx_list_ids, asked right after the nowait drop (while
 * ctx_get_latest already says NOT_FOUND), still lists the id. The probe
 * counts the rounds where ctx_get_latest said NOT_FOUND and then
 * ctx_list_ids listed "c" anyway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctx.h"

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp/probe_info.dir";
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 2;
	ctx_options o;
	ctx_options_init(&o);
	o.dir = dir; /* durability always */
	ctx_store *s;
	if (ctx_open(&o, &s) != CTX_OK)
		return 2;
	int rounds = 200, bad_get = 0, bad_view = 0, bad_list = 0;
	for (int i = 0; i < rounds; i++) {
		if (ctx_create(s, "c") != CTX_OK || ctx_put(s, "c", "k", 1, "v", 1, NULL) != CTX_OK)
			return 2;
		uint64_t rev;
		if (ctx_drop_nowait(s, "c", &rev) != CTX_OK)
			return 2;
		ctx_state *lat = NULL;
		ctx_status sl = ctx_get_latest(s, "c", &lat);
		ctx_list l;
		if (ctx_list_ids(s, NULL, NULL, 0, &l) != CTX_OK)
			return 2;
		if (sl == CTX_NOT_FOUND && l.count == 1 && bad_list++ == 0)
			printf("round %d: ctx_get_latest NOT_FOUND after ctx_drop_nowait, then "
			       "ctx_list_ids lists '%s'\n",
			       i, l.ids[0]);
		ctx_list_free(&l);
		ctx_state_release(lat);
		ctx_context_status info;
		ctx_status si = ctx_context_info(s, "c", &info);
		ctx_state *st = NULL;
		ctx_status sg = ctx_get(s, "c", &st);
		ctx_context_status *view = NULL;
		size_t n = 0;
		ctx_status_view(s, &view, &n);
		if (si == CTX_NOT_FOUND && sg == CTX_OK) {
			if (bad_get++ == 0)
				printf("round %d: ctx_context_info NOT_FOUND, then ctx_get OK "
				       "version %llu\n",
				       i, (unsigned long long)ctx_state_version(st));
			if (n == 1 && bad_view++ == 0)
				printf("round %d: ... and ctx_status_view (after info) lists '%s' "
				       "v%llu\n",
				       i, view[0].id, (unsigned long long)view[0].version);
		}
		free(view);
		ctx_state_release(st);
		uint64_t d = 0;
		while (ctx_durable_revision(s, &d) == CTX_OK && d < rev)
			; /* let the drop finish before the next create */
	}
	printf("%d of %d rounds: info NOT_FOUND while ctx_get showed the context "
	       "(%d also listed by the status view)\n",
	       bad_get, rounds, bad_view);
	printf("%d of %d rounds: ctx_list_ids listed the id after the nowait drop\n", bad_list,
	       rounds);
	ctx_close(s);
	/* the contract: info agrees with the status view */
	return bad_view || bad_list ? 1 : 0;
}
