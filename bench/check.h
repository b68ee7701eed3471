/*
 * check.h - CHECK(call) for the benchmark programs: a libctx call that does
 * not return CTX_OK ends the program with the call, its status and
 * ctx_last_error(). (recovery.c keeps its own, which ends with _exit in its
 * forked children.)
 */
#ifndef CTX_BENCH_CHECK_H
#define CTX_BENCH_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "ctx.h"

#define CHECK(call)                                                                                \
	do {                                                                                       \
		ctx_status st_ = (call);                                                           \
		if (st_ != CTX_OK) {                                                               \
			fprintf(stderr, "%s: %s (%s)\n", #call, ctx_strerror(st_),                 \
			        ctx_last_error());                                                 \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#endif
