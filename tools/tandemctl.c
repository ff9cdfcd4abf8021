/*
 * tandemctl: the operator's command-line tool for a tandem node.
 *
 * It shows a running node's status and reads its store (`tandemctl status|get|digest`,
 * ctl_node.c), lists a multi-primary node's latest conflicts (`tandemctl conflicts`,
 * ctl_conflicts.c), moves the primary by hand and injects link faults (`tandemctl switchover|
 * promote|cut|heal`, ctl_failover.c), and inspects a log directory offline (`tandemctl log
 * verify|dump`, ctl_log.c). A new command adds one row to top_cmds below and a file of its
 * own.
 *
 * This file holds main(), the command dispatcher and the helpers every command shares
 * (strict number parsing, usage errors, escaping for human and JSON output); see ctl.h.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#ifndef TDM_VERSION
#define TDM_VERSION "unknown"
#endif

/* ---- Command dispatch ---- */

static void group_help(const struct tdm_ctl_group *g, FILE *f)
{
	fprintf(f, "Usage: %s [--help] COMMAND [OPTIONS] [ARGS]\n\n%s\n\nCommands:\n", g->path,
		g->about);
	for (size_t i = 0; i < g->ncmds; i++)
		fprintf(f, "  %-10s %s\n", g->cmds[i].name, g->cmds[i].summary);
	fprintf(f, "\nRun '%s COMMAND --help' for a command's options and arguments.\n", g->path);
}

static const struct tdm_ctl_cmd *find_cmd(const struct tdm_ctl_group *g, const char *name)
{
	for (size_t i = 0; i < g->ncmds; i++)
		if (strcmp(g->cmds[i].name, name) == 0)
			return &g->cmds[i];
	return NULL;
}

/* `help` or `help CMD` as words: the group's help, or CMD's own --help. */
static int help_word(const struct tdm_ctl_group *g, int argc, char **argv)
{
	if (argc < 2) {
		group_help(g, stdout);
		return TDM_CTL_EXIT_OK;
	}
	const struct tdm_ctl_cmd *c = find_cmd(g, argv[1]);
	if (c == NULL)
		return tdm_ctl_usage_error(g->path, "help: unknown command '%s'", argv[1]);
	char *sub[] = { argv[1], (char *)"--help", NULL };
	return c->run(2, sub);
}

int tdm_ctl_dispatch(const struct tdm_ctl_group *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ret;

	opterr = 0;
	optind = 0; /* GNU: restart scanning on this argv; '+' stops at the command word */
	while ((ret = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		if (ret != 'h')
			return tdm_ctl_bad_option(g->path, ret, argv, opts);
		group_help(g, stdout);
		return TDM_CTL_EXIT_OK;
	}
	if (optind >= argc)
		return tdm_ctl_usage_error(g->path, "missing COMMAND");

	const char *name = argv[optind];
	if (strcmp(name, "help") == 0)
		return help_word(g, argc - optind, argv + optind);
	const struct tdm_ctl_cmd *c = find_cmd(g, name);
	if (c == NULL)
		return tdm_ctl_usage_error(g->path, "unknown command '%s'", name);
	return c->run(argc - optind, argv + optind);
}

int tdm_ctl_bad_option(const char *path, int ret, char **argv, const struct option *opts)
{
	/* The word getopt just passed: the whole long option, or a short option at the end of
	 * its word. A short option inside a cluster ("-jx") is known only by optopt. */
	const char *word = argv[optind - 1];

	if (ret == ':')
		return tdm_ctl_usage_error(path, "option '%s' needs a value", word);
	if (optopt == 0)
		return tdm_ctl_usage_error(path, "unknown option '%s'", word);
	if (strncmp(word, "--", 2) == 0 && strchr(word, '=') != NULL) {
		/* "--json=1": getopt reports the flag's own value in optopt */
		size_t len = (size_t)(strchr(word, '=') - word) - 2;
		for (const struct option *o = opts; o->name != NULL; o++)
			if (o->val == optopt && o->has_arg == no_argument &&
			    strncmp(o->name, word + 2, len) == 0)
				return tdm_ctl_usage_error(path, "option '--%s' takes no value",
							   o->name);
	}
	return tdm_ctl_usage_error(path, "unknown option '-%c'", optopt);
}

/* ---- Numbers ---- */

static int digit_value(char ch, unsigned base)
{
	unsigned v;

	if (ch >= '0' && ch <= '9')
		v = (unsigned)(ch - '0');
	else if (ch >= 'a' && ch <= 'f')
		v = (unsigned)(ch - 'a') + 10;
	else if (ch >= 'A' && ch <= 'F')
		v = (unsigned)(ch - 'A') + 10;
	else
		return -1;
	return v < base ? (int)v : -1;
}

int tdm_ctl_parse_u64(const char *path, const char *what, const char *s, uint64_t *out)
{
	const char *p = s;
	unsigned base = 10;
	uint64_t v = 0;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	if (*p == '\0')
		goto bad;
	for (; *p != '\0'; p++) {
		int d = digit_value(*p, base);
		if (d < 0)
			goto bad;
		if (v > (UINT64_MAX - (uint64_t)d) / base)
			return tdm_ctl_usage_error(path, "%s: '%s' is out of range (at most %s)", what,
						   s, "18446744073709551615 or 0xffffffffffffffff");
		v = v * base + (uint64_t)d;
	}
	*out = v;
	return 0;
bad:
	return tdm_ctl_usage_error(path, "%s: '%s' is not a number (decimal, or hex with 0x)",
				   what, s);
}

/* ---- Escaping ---- */

void tdm_ctl_print_escaped(FILE *f, const uint8_t *s, size_t n, size_t max)
{
	size_t show = n < max ? n : max;

	for (size_t i = 0; i < show; i++) {
		uint8_t ch = s[i];
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch >= 0x20 && ch < 0x7f)
			putc(ch, f);
		else
			fprintf(f, "\\x%02x", ch);
	}
	if (show < n)
		fputs("...", f);
}

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 when it is not valid
 * (overlong forms, surrogates and code points past U+10FFFF are not valid). */
static size_t utf8_len(const uint8_t *s, size_t n)
{
	size_t len;
	uint32_t cp, min;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2, cp = s[0] & 0x1fu, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, cp = s[0] & 0x0fu, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, cp = s[0] & 0x07u, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void tdm_ctl_json_str(FILE *f, const void *buf, size_t n, bool bytes)
{
	const uint8_t *s = buf;

	putc('"', f);
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = s[i];
		size_t len;

		if (ch == '"' || ch == '\\') {
			fprintf(f, "\\%c", ch);
		} else if (ch >= 0x20 && ch < 0x7f) {
			putc(ch, f);
		} else if (ch == '\n' && !bytes) {
			fputs("\\n", f);
		} else if (bytes || ch < 0x20 || ch == 0x7f) {
			fprintf(f, "\\u%04x", ch);
		} else if ((len = utf8_len(s + i, n - i)) == 0) {
			fputs("\\ufffd", f);
		} else {
			fwrite(s + i, 1, len, f);
			i += len - 1;
		}
	}
	putc('"', f);
}

/* ---- main ---- */

static const struct tdm_ctl_cmd top_cmds[] = {
	{ "status", "a running node's positions, lag, rates and peers", tdm_ctl_status_run },
	{ "get", "read a key from a running node's store", tdm_ctl_get_run },
	{ "digest", "the digest of a running node's store", tdm_ctl_digest_run },
	{ "conflicts", "a multi-primary node's latest conflicts (writes that lost)",
	  tdm_ctl_conflicts_run },
	{ "switchover", "planned switchover: the primary hands over to a replica",
	  tdm_ctl_switchover_run },
	{ "promote", "manual failover: a replica runs an election now", tdm_ctl_promote_run },
	{ "cut", "fault injection (tests, demos): cut a node's links to a peer", tdm_ctl_cut_run },
	{ "heal", "fault injection (tests, demos): restore links cut by 'cut'", tdm_ctl_heal_run },
	{ "log", "inspect a log directory offline: verify, dump", tdm_ctl_log_run },
};

static const struct tdm_ctl_group top_group = {
	.path = "tandemctl",
	.about = "Operate and inspect a tandem node. Exit status: 0 success, 1 error found or\n"
		 "met (message on stderr), 2 usage error. 'tandemctl --version' prints the version.",
	.cmds = top_cmds,
	.ncmds = sizeof(top_cmds) / sizeof(top_cmds[0]),
};

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("tandemctl %s\n", TDM_VERSION);
		return TDM_CTL_EXIT_OK;
	}
	int code = tdm_ctl_dispatch(&top_group, argc, argv);
	/* Output that never reached its file (full disk, closed pipe) is a failure too. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("tandemctl: writing the output");
		return code != TDM_CTL_EXIT_OK ? code : TDM_CTL_EXIT_ERROR;
	}
	return code;
}
