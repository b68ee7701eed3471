/*
 * main.c - ctx, the command-line tool of the ctx context store.
 *
 *   ctx [-h HOST] [-p PORT] [-a PASSWORD] [-u URL] [--json] COMMAND [ARGS]
 *   ctx verify|inspect|export|import DIR ...   (offline, server stopped)
 *
 * The command table below maps each subcommand to its handler (remote.c for
 * the server, offline.c for a data directory), its argument counts, the
 * options it accepts, and its help text with an example: adding a command is
 * one row and one function. Options may come anywhere after `ctx` (before or
 * after the subcommand); `--` ends them, so that a value starting with '-'
 * can be given. Exit codes: enum cli_exit in cli.h, docs/cli.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct command {
	const char *name;
	int (*run)(cli *);
	int min_args, max_args; /* positional arguments; -1 = no maximum */
	unsigned opts;          /* OPT_* accepted besides the global ones */
	const char *usage;
	const char *summary;
	const char *example;
} command;

#define RESTORE_OPTS (OPT_VERSION | OPT_LATEST | OPT_LABEL | OPT_AT)

static const command commands[] = {
    {"ping", cmd_ping, 0, 0, 0, "ping", "check that ctxd answers (prints PONG)", "ctx ping"},
    {"info", cmd_info, 0, 1, 0, "info [SECTION]", "the server's INFO text", "ctx info server"},
    {"stats", cmd_stats, 0, 0, 0, "stats",
     "store figures: contexts, revision, durable revision, syncs, checkpoints", "ctx stats"},
    {"create", cmd_create, 1, -1, 0, "create ID [FIELD VALUE ...]",
     "create a context; its fields are version 1 (one commit)",
     "ctx create user:42 name Ada lang en"},
    {"drop", cmd_drop, 1, 1, 0, "drop ID", "drop a context and all its data (exit 1 if absent)",
     "ctx drop user:42"},
    {"get", cmd_get, 1, 2, OPT_VERSION, "get ID [FIELD] [--version V]",
     "show a context (or print one field's raw value), newest or version V",
     "ctx get user:42 name --version 3"},
    {"set", cmd_set, 3, -1, OPT_IF_VERSION, "set ID FIELD VALUE [FIELD VALUE ...] [--if-version V]",
     "set fields in one commit; with --if-version only if the context is at V (else exit 4)",
     "ctx set user:42 lang fr --if-version 3"},
    {"del", cmd_del, 2, -1, OPT_IF_VERSION, "del ID FIELD [FIELD ...] [--if-version V]",
     "delete fields in one commit (use drop for the whole context)", "ctx del user:42 lang"},
    {"list", cmd_list, 0, 1, OPT_COUNT | OPT_LIMIT, "list [PREFIX] [--count N] [--limit N]",
     "list context ids in byte order; pages N at a time (default: server's 100) until "
     "done, or until --limit ids",
     "ctx list user: --limit 10"},
    {"points", cmd_points, 1, 1, 0, "points ID", "list the recovery points of a context",
     "ctx points user:42"},
    {"point", cmd_point, 1, 1, OPT_LABEL, "point ID [--label L]",
     "make a recovery point on the newest version", "ctx point user:42 --label before-migration"},
    {"restore", cmd_restore, 1, 1, RESTORE_OPTS,
     "restore ID (--version V | --latest | --label L | --at TIME)",
     "make an old version the newest again (a new version; undo with another restore). "
     "TIME: µs since 1970, @SECONDS, YYYY-MM-DDTHH:MM[:SS][Z] (Z = UTC, else local), or "
     "-30s/-5m/-2h/-1d ago",
     "ctx restore user:42 --label before-migration"},
    {"history", cmd_history, 1, 1, 0, "history ID", "the versions a context still keeps",
     "ctx history user:42"},
    {"diff", cmd_diff, 3, 3, 0, "diff ID FROM TO",
     "the fields added, changed, removed between "
     "two versions",
     "ctx diff user:42 3 5"},
    {"watch", cmd_watch, 0, 1, OPT_PREFIX | OPT_FROM | OPT_NO_RESUME,
     "watch (ID | --prefix P) [--from REV] [--no-resume]",
     "print changes as they happen until Ctrl-C (--json: JSON Lines). If the server says "
     "events were lost, says so on stderr and watches again from the first lost revision "
     "(--no-resume: exit 1 instead)",
     "ctx watch --prefix user: --from 1200"},
    {"verify", cmd_verify, 0, 1, OPT_DIR, "verify [DIR]",
     "offline: check a data directory as opening it would; exit 1 if damaged. Without "
     "DIR: ask the running server to check its store (CTX.VERIFY)",
     "ctx verify /var/lib/ctx"},
    {"inspect", cmd_inspect, 0, 1, OPT_DIR, "inspect DIR",
     "offline: log and checkpoint figures and every context (version, keys, bytes, points)",
     "ctx inspect /var/lib/ctx"},
    {"export", cmd_export, 0, 2, OPT_DIR, "export DIR [FILE|-]",
     "offline: write every context as JSON Lines (default: to stdout)",
     "ctx export /var/lib/ctx backup.jsonl"},
    {"import", cmd_import, 0, 2, OPT_DIR | OPT_REPLACE, "import DIR [FILE|-] [--replace]",
     "offline: create the contexts of a JSON Lines file (as export writes), one commit each; "
     "an existing id is an error (exit 4) unless --replace",
     "ctx import /var/lib/ctx backup.jsonl"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void usage_main(FILE *f)
{
	fputs("usage: ctx [-h HOST] [-p PORT] [-a PASSWORD] [-u URL] [--timeout S] [--json] COMMAND "
	      "[ARGS]\n"
	      "\n"
	      "Talks to ctxd (default 127.0.0.1:7379), or works offline on a data directory.\n"
	      "  -h HOST       server host (default 127.0.0.1)\n"
	      "  -p PORT       server port (default 7379)\n"
	      "  -a PASSWORD   password (AUTH)\n"
	      "  -u URL        ctx://[:PASSWORD@]HOST[:PORT] or "
	      "redis://[[USER]:PASSWORD@]HOST[:PORT]\n"
	      "  --timeout S   wait at most S seconds to connect and for each reply (default 60;\n"
	      "                0: no limit; watch waits for events without limit)\n"
	      "  --json        one JSON document for scripts (watch: JSON Lines)\n"
	      "  --help        this help; ctx COMMAND --help for one command\n"
	      "\ncommands:\n",
	      f);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-58s\n      %s\n", commands[i].usage, commands[i].summary);
	fputs("\nexit codes: 0 ok, 1 not found / failed check / other error, 2 usage error,\n"
	      "3 cannot connect or authenticate (offline: data directory in use), 4 conflict\n"
	      "(version mismatch, or the context exists). More: docs/cli.md\n",
	      f);
}

static void usage_command(const command *cmd, FILE *f)
{
	fprintf(f, "usage: ctx [connection options] %s\n\n%s\n\nexample:\n  %s\n", cmd->usage,
	        cmd->summary, cmd->example);
}

/* Options taking a value; the bit says which. */
typedef struct option {
	const char *name;
	unsigned bit;
	bool value;
} option;

static const option options[] = {
    {"--json", OPT_JSON, false},
    {"--version", OPT_VERSION, true},
    {"--if-version", OPT_IF_VERSION, true},
    {"--count", OPT_COUNT, true},
    {"--limit", OPT_LIMIT, true},
    {"--label", OPT_LABEL, true},
    {"--latest", OPT_LATEST, false},
    {"--at", OPT_AT, true},
    {"--prefix", OPT_PREFIX, true},
    {"--from", OPT_FROM, true},
    {"--replace", OPT_REPLACE, false},
    {"--no-resume", OPT_NO_RESUME, false},
    {"--dir", OPT_DIR, true},
    {"--timeout", OPT_TIMEOUT, true},
};

static bool number_option(const char *name, const char *v, uint64_t *out)
{
	if (cli_parse_u64(v, out))
		return true;
	cli_error("%s needs a number, not \"%s\"", name, v);
	return false;
}

/* Store the value of a long option. */
static bool set_option(cli *c, const option *o, const char *v)
{
	c->given |= o->bit;
	switch (o->bit) {
	case OPT_JSON:
		c->json = true;
		return true;
	case OPT_VERSION:
		return number_option(o->name, v, &c->version);
	case OPT_IF_VERSION:
		return number_option(o->name, v, &c->if_version);
	case OPT_COUNT:
		return number_option(o->name, v, &c->count) &&
		       (c->count > 0 || (cli_error("--count must be at least 1"), false));
	case OPT_LIMIT:
		return number_option(o->name, v, &c->limit);
	case OPT_FROM:
		return number_option(o->name, v, &c->from);
	case OPT_TIMEOUT:
		return number_option(o->name, v, &c->timeout) &&
		       (c->timeout <= CLI_TIMEOUT_MAX ||
		        (cli_error("--timeout: at most %d seconds", CLI_TIMEOUT_MAX), false));
	case OPT_LABEL:
		c->label = v;
		return true;
	case OPT_AT:
		c->at = v;
		return true;
	case OPT_PREFIX:
		c->prefix = v;
		return true;
	case OPT_DIR:
		c->dir = v;
		return true;
	case OPT_REPLACE:
		c->replace = true;
		return true;
	case OPT_NO_RESUME:
		c->no_resume = true;
		return true;
	default:
		return true;
	}
}

/* A long option at argv[*i] (--name or --name=value). 1 = taken, 0 = not an
 * option we know, -1 = error. */
static int long_option(cli *c, int argc, char **argv, int *i)
{
	const char *a = argv[*i];
	const char *eq = strchr(a, '=');
	size_t n = eq ? (size_t)(eq - a) : strlen(a);
	for (size_t k = 0; k < sizeof(options) / sizeof(options[0]); k++) {
		const option *o = &options[k];
		if (strlen(o->name) != n || strncmp(o->name, a, n) != 0)
			continue;
		const char *v = NULL;
		if (o->value && eq) {
			v = eq + 1;
		} else if (o->value) {
			if (*i + 1 >= argc) {
				cli_error("%s needs a value", o->name);
				return -1;
			}
			v = argv[++*i];
		} else if (eq) {
			cli_error("%s takes no value", o->name);
			return -1;
		}
		return set_option(c, o, v) ? 1 : -1;
	}
	return 0;
}

/* -h HOST, -p PORT, -a PASSWORD, -u URL. */
static int short_option(cli *c, int argc, char **argv, int *i)
{
	const char *a = argv[*i];
	if (strlen(a) != 2 || !strchr("hpau", a[1]))
		return 0;
	if (*i + 1 >= argc) {
		cli_error("%s needs a value%s", a, a[1] == 'h' ? " (a host; help is --help)" : "");
		return -1;
	}
	char *v = argv[++*i];
	uint64_t port;
	switch (a[1]) {
	case 'h':
		c->host = v;
		return 1;
	case 'a':
		c->password = v;
		return 1;
	case 'u':
		if (cli_parse_url(c, v))
			return 1;
		cli_error("-u: not a ctx:// or redis:// URL");
		return -1;
	default:
		if (cli_parse_u64(v, &port) && port > 0 && port <= 65535) {
			c->port = (int)port;
			return 1;
		}
		cli_error("-p: not a port: %s", v);
		return -1;
	}
}

/* Parse argv into c. Returns EXIT_OK, EXIT_USAGE, or -1 for "help shown". */
static int parse(cli *c, int argc, char **argv, bool *help)
{
	c->argv = calloc((size_t)argc + 1, sizeof(char *));
	if (!c->argv)
		return EXIT_FAIL;
	bool options_done = false;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (!options_done && a[0] == '-' && a[1] != '\0') {
			if (strcmp(a, "--") == 0) {
				options_done = true;
				continue;
			}
			if (strcmp(a, "--help") == 0) {
				*help = true;
				continue;
			}
			if (strcmp(a, "--version") == 0 && !c->command && i + 1 == argc) {
				c->given |= OPT_VERSION; /* ctx --version: the tool's */
				continue;
			}
			int r = a[1] == '-' ? long_option(c, argc, argv, &i)
			                    : short_option(c, argc, argv, &i);
			if (r < 0)
				return EXIT_USAGE;
			if (r == 0) {
				cli_error("unknown option %s (before a value starting with '-', "
				          "put --)",
				          a);
				return EXIT_USAGE;
			}
			continue;
		}
		if (!c->command)
			c->command = a;
		else
			c->argv[c->argc++] = a;
	}
	return EXIT_OK;
}

static int check_command(cli *c, const command *cmd)
{
	unsigned extra = c->given & ~(cmd->opts | OPT_JSON | OPT_TIMEOUT);
	if (extra) {
		for (size_t k = 0; k < sizeof(options) / sizeof(options[0]); k++)
			if (extra & options[k].bit) {
				cli_error("%s: %s is not an option of this command", cmd->name,
				          options[k].name);
				break;
			}
		return EXIT_USAGE;
	}
	if (c->argc < cmd->min_args || (cmd->max_args >= 0 && c->argc > cmd->max_args)) {
		cli_error("%s: wrong number of arguments", cmd->name);
		usage_command(cmd, stderr);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	cli c;
	memset(&c, 0, sizeof(c));
	c.host = "127.0.0.1";
	c.port = 7379;
	c.timeout = CLI_TIMEOUT_DEFAULT;
	bool help = false;
	int rc = parse(&c, argc, argv, &help);
	const command *cmd = c.command ? find_command(c.command) : NULL;
	char **positional = c.argv;
	if (rc == EXIT_OK && c.command && !cmd) {
		cli_error("unknown command %s (ctx --help lists them)", c.command);
		rc = EXIT_USAGE;
	}
	if (rc == EXIT_OK && help) {
		if (cmd)
			usage_command(cmd, stdout);
		else
			usage_main(stdout);
	} else if (rc == EXIT_OK && !cmd && c.given == OPT_VERSION) {
		printf("ctx %s\n", CTX_VERSION_STRING);
	} else if (rc == EXIT_OK && !cmd) {
		usage_main(stderr);
		rc = EXIT_USAGE;
	} else if (rc == EXIT_OK) {
		rc = check_command(&c, cmd);
		if (rc == EXIT_OK)
			rc = cmd->run(&c);
	}
	free(positional);
	return rc;
}
