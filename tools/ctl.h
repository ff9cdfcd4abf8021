/*
 * tandemctl: pieces shared by its commands (command tables, argument parsing, output escaping).
 *
 * tandemctl is a tree of commands: `tandemctl GROUP COMMAND [OPTIONS] ARGS`. Each level is a
 * table of struct tdm_ctl_cmd run by tdm_ctl_dispatch(), which handles `--help` and unknown
 * names the same way at every level. A new command is a file with a run function and one row in
 * the top-level table in tandemctl.c; commands about a running node share the parsing of
 * --dir/--config (tdm_ctl_node_parse).
 *
 * Exit status of every command: 0 success, 1 the command ran and found or met an error,
 * 2 usage error (bad option, missing or malformed argument).
 */
#ifndef TDM_CTL_H
#define TDM_CTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tdm_err.h"

#define TDM_CTL_EXIT_OK 0    /**< success */
#define TDM_CTL_EXIT_ERROR 1 /**< the command found or met an error (message on stderr) */
#define TDM_CTL_EXIT_USAGE 2 /**< the command line is wrong (message names the argument) */

/** One command of a table. */
struct tdm_ctl_cmd {
	const char *name;    /**< word on the command line */
	const char *summary; /**< one line for the table's help */
	/** Run the command: argv[0] is its name, the rest its options and arguments.
	 *  @return a TDM_CTL_EXIT_ code. */
	int (*run)(int argc, char **argv);
};

/** A level of the command tree: a group of commands under one path. */
struct tdm_ctl_group {
	const char *path;  /**< full command path, e.g. "tandemctl log" */
	const char *about; /**< paragraph for the group's help */
	const struct tdm_ctl_cmd *cmds;
	size_t ncmds;
};

/**
 * Run the command argv[0] (after the group's own options: -h/--help) from group g.
 * `help` and `help CMD` are accepted as words too.
 * @return the command's exit code, or TDM_CTL_EXIT_USAGE for an unknown or missing command.
 */
int tdm_ctl_dispatch(const struct tdm_ctl_group *g, int argc, char **argv);

/** Print "PATH: message" and "Try 'PATH --help'." to stderr. @return TDM_CTL_EXIT_USAGE. */
int tdm_ctl_usage_error(const char *path, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/**
 * Report a getopt_long() failure ('?' or ':' returned, with opterr = 0 and a ':'-prefixed
 * optstring) naming the offending option; opts is the table given to getopt_long.
 * @return TDM_CTL_EXIT_USAGE.
 */
int tdm_ctl_bad_option(const char *path, int ret, char **argv, const struct option *opts);

/**
 * Parse an unsigned 64-bit number strictly: decimal digits, or 0x/0X and hex digits; no sign,
 * no spaces, no suffix. On a usage error the message names the option and the text.
 * @return 0, or TDM_CTL_EXIT_USAGE after printing the error.
 */
int tdm_ctl_parse_u64(const char *path, const char *what, const char *s, uint64_t *out);

/** Write s (n bytes) to f for a human: printable ASCII as is, `"` and `\` escaped, other bytes
 *  as \xNN; at most max input bytes, then "..." when cut. */
void tdm_ctl_print_escaped(FILE *f, const uint8_t *s, size_t n, size_t max);

/**
 * Write a JSON string literal (with the quotes).
 * bytes = false: s is text; valid UTF-8 passes through, each invalid byte becomes U+FFFD.
 * bytes = true: s is binary; each byte becomes the character of the same number (U+0000 to
 * U+00FF): printable ASCII as is, everything else \u00XX. Lossless: in Python,
 * s.encode('latin-1') gives the bytes back.
 */
void tdm_ctl_json_str(FILE *f, const void *s, size_t n, bool bytes);

/* m without one leading "function:line: ", or m itself. */
static inline const char *tdm_ctl_skip_where(const char *m)
{
	const char *p = m;

	while (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
	       (*p >= '0' && *p <= '9'))
		p++;
	if (p == m || *p++ != ':' || *p < '0' || *p > '9')
		return m;
	while (*p >= '0' && *p <= '9')
		p++;
	return p[0] == ':' && p[1] == ' ' ? p + 2 : m;
}

/**
 * The calling thread's tdm_errmsg() without the "function:line: " that TDM_ERR() puts first
 * (that is for developers; the rest names the file, key or directory and what to do), nor
 * the node's own, which a control request's answer carries after ours.
 * @return the text, or NULL when there is no message. Inline: tandemd shares it.
 */
static inline const char *tdm_ctl_errmsg(void)
{
	const char *m = tdm_errmsg(), *p;

	if (*m == '\0')
		return NULL;
	while ((p = tdm_ctl_skip_where(m)) != m)
		m = p;
	return m;
}

/* ---- Commands about a running node: which node (--dir or --config) and their options ---- */

/** A parsed command line of a node command (ctl_node.c, ctl_failover.c). */
struct tdm_ctl_node_args {
	const char *dir;     /**< --dir */
	const char *config;  /**< --config */
	char data_dir[256];  /**< from either (struct tdm_config's data_dir) */
	bool json;           /**< --json (status, digest) */
	bool hex;            /**< --hex (get) */
	bool force;          /**< --force (promote) */
	uint64_t watch;      /**< --watch SECONDS (status); 0 = once */
	uint64_t limit;      /**< -n/--limit N (conflicts), 1..TDM_CTL_LIMIT_MAX; 0 = not given */
	const char *operand; /**< the command's one argument (KEY, NODE, PEER), NULL if none */
};

/** A node command's command line: the options it takes (getopt returns no others), its help
 *  and the name of its one argument. */
struct tdm_ctl_node_cmd {
	const char *path;      /**< "tandemctl status" */
	const char *shortopts; /**< ":d:c:h" and the command's own */
	const struct option *opts;
	void (*help)(void);
	const char *operand;   /**< "KEY", "NODE", ...: a required argument; NULL: none */
};

/** The options every node command takes, for its getopt table and its help. */
#define TDM_CTL_TARGET_OPTS                                                                  \
	{ "dir", required_argument, NULL, 'd' }, { "config", required_argument, NULL, 'c' }, \
	{ "help", no_argument, NULL, 'h' }

#define TDM_CTL_TARGET_HELP                                                                  \
	"  -d, --dir DATA_DIR   the node's data directory\n"                                 \
	"  -c, --config FILE    the node's configuration file (its [node] data_dir)\n"

/**
 * Parse a node command's line into a: options, the operand when c->operand is set, and the
 * node's data_dir (from --dir or --config; it must be a directory).
 * @return -1 to run the command; TDM_CTL_EXIT_OK after --help; TDM_CTL_EXIT_USAGE after
 *         printing a usage error.
 */
int tdm_ctl_node_parse(const struct tdm_ctl_node_cmd *c, int argc, char **argv,
		       struct tdm_ctl_node_args *a);

#define TDM_CTL_LIMIT_MAX 4096u /**< -n/--limit: at most what a node sends in one answer */

struct tdm_status;

/**
 * Read the status of the node at dir into st (zeroed first); a node that is not running is
 * said so (tdm_ctl_not_running). @return 0 or TDM_CTL_EXIT_ERROR.
 */
int tdm_ctl_read_status(const char *path, const char *dir, struct tdm_status *st);

/**
 * tdm_status_read(dir) returned rc (not 0): say that no node runs in dir, or that the one
 * that ran there stopped (st: its last status, which pid and when). @return TDM_CTL_EXIT_ERROR.
 */
int tdm_ctl_not_running(const char *path, const char *dir, int rc, const struct tdm_status *st);

/**
 * A request to the node at dir failed with rc (tdm_errmsg says why): print whether the node is
 * not running, or what it answered. @return TDM_CTL_EXIT_ERROR.
 */
int tdm_ctl_request_failed(const char *path, const char *dir, int rc);

/** "850 ns", "12 µs", "3.1 ms", "2.0 s" (ctl_node.c). */
void tdm_ctl_human_ns(uint64_t ns, char *buf, size_t cap);

/** A multi-primary timestamp (hybrid logical clock) as local time with microseconds, and its
 *  logical count when not 0: "[2024-05-01 ]12:00:03.123456[+3]" (ctl_conflicts.c). */
void tdm_ctl_hlc_str(uint64_t hlc, bool date, char *buf, size_t cap);

/** tandemctl status|get|digest: a running node's status, keys and digest (ctl_node.c). */
int tdm_ctl_status_run(int argc, char **argv);
int tdm_ctl_get_run(int argc, char **argv);
int tdm_ctl_digest_run(int argc, char **argv);

/** tandemctl conflicts: a multi-primary node's latest conflicts (ctl_conflicts.c). */
int tdm_ctl_conflicts_run(int argc, char **argv);

/** tandemctl switchover|promote|cut|heal: failover by hand, and fault injection
 *  (ctl_failover.c). */
int tdm_ctl_switchover_run(int argc, char **argv);
int tdm_ctl_promote_run(int argc, char **argv);
int tdm_ctl_cut_run(int argc, char **argv);
int tdm_ctl_heal_run(int argc, char **argv);

/** tandemctl log ...: offline inspection of a log directory (ctl_log.c). */
int tdm_ctl_log_run(int argc, char **argv);

#endif /* TDM_CTL_H */
