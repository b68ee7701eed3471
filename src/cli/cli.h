/*
 * cli.h - what the parts of the ctx command-line tool share.
 *
 * ctx has two halves: remote.c talks to a running ctxd with hiredis (the CTX.*
 * commands of the server contract), offline.c opens a data directory itself
 * with libctx while no server runs (verify, inspect, export, import). main.c
 * parses the command line into a cli (global and per-command options plus the
 * positional arguments after the subcommand) and calls one handler from the
 * command table. Every handler returns an exit code (enum cli_exit), and
 * prints its own errors to stderr through cli_error.
 */
#ifndef CTX_CLI_H
#define CTX_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ctx.h"

/* Exit codes (docs/cli.md). */
enum cli_exit {
	EXIT_OK = 0,       /* success                                          */
	EXIT_FAIL = 1,     /* not found, a failed check, or any other error      */
	EXIT_USAGE = 2,    /* bad command line                                  */
	EXIT_CONNECT = 3,  /* cannot reach or log in to ctxd; data dir in use   */
	EXIT_CONFLICT = 4, /* version conflict, or the context exists already   */
};

/* Options, each a bit so that the command table can say which it accepts. */
enum cli_opt {
	OPT_JSON = 1 << 0,
	OPT_VERSION = 1 << 1,    /* --version V        */
	OPT_IF_VERSION = 1 << 2, /* --if-version V     */
	OPT_COUNT = 1 << 3,      /* --count N          */
	OPT_LIMIT = 1 << 4,      /* --limit N          */
	OPT_LABEL = 1 << 5,      /* --label L          */
	OPT_LATEST = 1 << 6,     /* --latest           */
	OPT_AT = 1 << 7,         /* --at TIME          */
	OPT_PREFIX = 1 << 8,     /* --prefix P         */
	OPT_FROM = 1 << 9,       /* --from REV         */
	OPT_REPLACE = 1 << 10,   /* --replace          */
	OPT_NO_RESUME = 1 << 11, /* --no-resume        */
	OPT_DIR = 1 << 12,       /* --dir DIR          */
	OPT_TIMEOUT = 1 << 13,   /* --timeout SECONDS  */
};

/* --timeout: seconds to wait to connect and for each reply (0: no limit). */
#define CLI_TIMEOUT_DEFAULT 60
#define CLI_TIMEOUT_MAX     1000000

typedef struct cli {
	/* connection (global) */
	const char *host;
	int port;
	const char *password;
	uint64_t timeout; /* seconds to wait for connect and each reply; 0: no limit */
	/* given options (OPT_* bits) and their values */
	unsigned given;
	bool json;
	const char *dir;
	uint64_t version;
	uint64_t if_version;
	uint64_t count;
	uint64_t limit;
	const char *label;
	const char *at;
	const char *prefix;
	uint64_t from;
	bool replace;
	bool no_resume;
	/* the subcommand and its positional arguments */
	const char *command;
	int argc;
	char **argv;
} cli;

/* Print "ctx: <message>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse an unsigned decimal integer (the whole string). */
bool cli_parse_u64(const char *s, uint64_t *out);

/* A time for --at: µs since 1970 as digits, "@SECONDS", an ISO 8601 date and
 * time "YYYY-MM-DD[THH:MM[:SS[.frac]]][Z]" (UTC with Z, local time without),
 * or an age before now "-30s", "-5m", "-2h", "-1d". now_us is the current
 * time (a parameter so that tests are exact). */
bool cli_parse_time(const char *s, uint64_t now_us, uint64_t *out_us);

/* Format µs since 1970 as local "YYYY-MM-DD HH:MM:SS.mmm" into out (>= 32). */
void cli_format_time(uint64_t us, char *out, size_t outlen);

/* Wall-clock µs since 1970. */
uint64_t cli_now_us(void);

/* Append p[0..n) for a person to read: printable UTF-8 as is, other bytes
 * and control characters as \n, \t, \\ or \xNN. */
void cli_display(buf *out, const void *p, size_t n);

/* Aligned columns for people: add cells row by row, then print. */
typedef struct table {
	size_t ncols;
	size_t filled; /* cells added, the header's included; row r holds
	                  cells r*ncols .. r*ncols+ncols-1 */
	char **cells;  /* malloc'd */
	size_t cap;
} table;

void table_init(table *t, size_t ncols, const char *const *header);
void table_cell(table *t, const char *text);              /* next cell */
void table_cell_bytes(table *t, const void *p, size_t n); /* via cli_display */
void table_cell_u64(table *t, uint64_t v);
void table_cell_time(table *t, uint64_t us);
void table_print(const table *t);
void table_free(table *t);

/* Progress on stderr for long work, only when stderr is a terminal. */
typedef struct progress {
	bool on;
	const char *what;
	uint64_t total; /* 0 = unknown: count only */
	uint64_t done;
	uint64_t last_us;
} progress;

void progress_start(progress *p, const char *what, uint64_t total);
void progress_update(progress *p, uint64_t done); /* throttled */
void progress_end(progress *p);                   /* clears the line */

/* Command handlers. */
int cmd_verify(cli *c);
int cmd_inspect(cli *c);
int cmd_export(cli *c);
int cmd_import(cli *c);

int cmd_ping(cli *c);
int cmd_info(cli *c);
int cmd_stats(cli *c);
int cmd_create(cli *c);
int cmd_drop(cli *c);
int cmd_get(cli *c);
int cmd_set(cli *c);
int cmd_del(cli *c);
int cmd_list(cli *c);
int cmd_points(cli *c);
int cmd_point(cli *c);
int cmd_restore(cli *c);
int cmd_history(cli *c);
int cmd_diff(cli *c);
int cmd_watch(cli *c);
int cmd_verify_online(cli *c); /* verify without DIR: CTX.VERIFY */

/* Parse a ctx:// or redis:// URL into c's host, port and password
 * (strings point into storage owned by the caller: url is modified). */
bool cli_parse_url(cli *c, char *url);

#endif
