/*
 * tandemd: one tandem node as a process.
 *
 *   tandemd --config FILE [--witness] [--set SECTION.KEY=VALUE ...] [--print-config] [--check]
 *
 * Reads the INI file (engine/config.c documents every key), applies the --set overrides in
 * order, checks the whole configuration, opens the node (log recovery, store, dataplane, status
 * file and control socket in data_dir) and runs its agents on this thread until SIGINT or
 * SIGTERM, then closes it cleanly (flushes the log, removes nothing).
 *
 * Exit status: 0 stopped by a signal (or --check / --print-config done), 1 the node could not
 * start or stopped on an error, 2 usage or configuration error. Messages go to stderr; log
 * lines carry a UTC timestamp.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <execinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "tandem.h"

#ifndef TDM_VERSION
#define TDM_VERSION "unknown"
#endif

#define MAX_SETS 256 /* --set options (and --witness) on one command line */

/* --witness is this --set, in its place among the others (configure() writes into it and
 * restores it, as it does with argv's). */
static char witness_set[] = "node.role=witness";

struct opts {
	const char *config;
	char *sets[MAX_SETS];
	int n_sets;
	bool print_config;
	bool check;
};

/* Set by the SIGINT/SIGTERM handler (release); tdm_node_run reads it (acquire). */
static bool stop;
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
}

/* A log line: "2024-05-01T12:00:00.123Z tandemd[PID]: text". */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32];
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ tandemd[%d]: ", stamp, ts.tv_nsec / 1000000, (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The thread's message for a failed call, else the code's name. */
static const char *why(int rc)
{
	const char *m = tdm_ctl_errmsg();
	return m != NULL ? m : tdm_strerror(rc);
}

static void help(void)
{
	fputs("Usage: tandemd --config FILE [--witness] [--set SECTION.KEY=VALUE ...]\n"
	      "               [--print-config] [--check]\n"
	      "       tandemd --help | --version\n"
	      "\n"
	      "Run one tandem node: a primary that takes writes and streams them to its replicas,\n"
	      "a replica that makes the stream durable and applies it, or a witness. The node\n"
	      "runs until SIGINT or SIGTERM, then flushes its log and exits.\n"
	      "\n"
	      "Options:\n"
	      "  -c, --config FILE     the node's configuration, an INI file (required). Every\n"
	      "                        section and key is described in the README, section\n"
	      "                        \"Configuration\" (and at the top of engine/config.c).\n"
	      "  -s, --set SECTION.KEY=VALUE\n"
	      "                        override one key of the file, as if written in its\n"
	      "                        section; repeat for more (applied in order, after the\n"
	      "                        file). Peers: --set peer.2.address=10.0.0.2:7000.\n"
	      "                        Examples: --set node.id=2 --set replication.level=durable\n"
	      "  -w, --witness         run as a witness: the same as --set node.role=witness. A\n"
	      "                        witness keeps no data and is never primary; it votes in\n"
	      "                        elections, so that a cluster of two data nodes has a\n"
	      "                        majority and fails over when one of them is lost. It needs\n"
	      "                        its own [node] id, a data_dir (status file, vote file,\n"
	      "                        control socket) and a dataplane address; every other node\n"
	      "                        lists it as a [peer.N] with witness = yes.\n"
	      "  -p, --print-config    print the effective configuration (file and overrides) as\n"
	      "                        an INI file tandemd reads back, check it, and exit\n"
	      "  -k, --check           check the configuration and exit without starting\n"
	      "  -h, --help            show this help\n"
	      "  -V, --version         print the version\n"
	      "\n"
	      "Exit status: 0 stopped by SIGINT/SIGTERM, or --check/--print-config found the\n"
	      "configuration valid; 1 the node could not start or stopped on an error; 2 usage\n"
	      "or configuration error (the message names the file, line and key).\n"
	      "\n"
	      "Log lines go to stderr, each with a UTC timestamp. 'tandemctl status --config FILE'\n"
	      "shows a running node's positions, lag and peers.\n",
	      stdout);
}

#define usage_error(...) tdm_ctl_usage_error("tandemd", __VA_ARGS__)

/* @return -1 to go on, or the exit status (help, version, usage error). */
static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option table[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 's' },
		{ "witness", no_argument, NULL, 'w' },
		{ "print-config", no_argument, NULL, 'p' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ret;

	opterr = 0;
	while ((ret = getopt_long(argc, argv, ":c:s:wpkhV", table, NULL)) != -1) {
		switch (ret) {
		case 'c': o->config = optarg; break;
		case 's':
		case 'w':
			if (o->n_sets == MAX_SETS)
				return usage_error("more than %d --set options", MAX_SETS);
			o->sets[o->n_sets++] = ret == 'w' ? witness_set : optarg;
			break;
		case 'p': o->print_config = true; break;
		case 'k': o->check = true; break;
		case 'h': help(); return TDM_CTL_EXIT_OK;
		case 'V': printf("tandemd %s\n", TDM_VERSION); return TDM_CTL_EXIT_OK;
		case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt != 0)
				return usage_error("unknown option '-%c'", optopt);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (o->config == NULL)
		return usage_error("missing --config FILE (the node's configuration)");
	return -1;
}

/* File, overrides, check. @return 0 or the exit status after saying what is wrong. */
static int configure(const struct opts *o, struct tdm_config *cfg)
{
	int rc;

	tdm_config_defaults(cfg);
	tdm_err_clear();
	if ((rc = tdm_config_load(cfg, o->config)) != 0) {
		fprintf(stderr, "tandemd: %s\n", why(rc));
		return TDM_CTL_EXIT_USAGE;
	}
	for (int i = 0; i < o->n_sets; i++) {
		char *eq = strchr(o->sets[i], '=');
		if (eq == NULL)
			return usage_error("--set '%s': write SECTION.KEY=VALUE, e.g. "
					   "--set node.id=2", o->sets[i]);
		*eq = '\0';
		rc = tdm_config_set(cfg, o->sets[i], eq + 1);
		*eq = '=';
		if (rc != 0) {
			fprintf(stderr, "tandemd: --set %s: %s\n", o->sets[i], why(rc));
			return TDM_CTL_EXIT_USAGE;
		}
	}
	if (o->print_config)
		tdm_config_print(cfg, stdout);
	if ((rc = tdm_config_check(cfg)) != 0) {
		fflush(stdout);
		fprintf(stderr, "tandemd: %s\n", why(rc));
		return TDM_CTL_EXIT_USAGE;
	}
	return 0;
}

#ifndef __SANITIZE_ADDRESS__ /* AddressSanitizer reports crashes itself */
/* A crash prints where it happened before the default action (core dump) runs. */
static void on_fault(int sig)
{
	static const char msg[] = "tandemd: fatal signal; backtrace:\n";
	void *frames[48];
	int n = backtrace(frames, 48);

	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(128 + sig);
	backtrace_symbols_fd(frames, n, 2);
	signal(sig, SIG_DFL);
	raise(sig);
}
#endif

static void on_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
#ifndef __SANITIZE_ADDRESS__
	signal(SIGSEGV, on_fault);
	signal(SIGBUS, on_fault);
	signal(SIGABRT, on_fault);
#endif
}

/* The role it starts in, which is not always the configured one: a primary that restarts with
 * data rejoins as a replica (an election may make it primary again). */
static void say_started(struct tdm_node *node, const struct tdm_config *cfg)
{
	struct tdm_status st;
	enum tdm_role role = cfg->role;
	char primary[48] = "";
	uint16_t leader = 0;
	uint32_t epoch = 0;

	memset(&st, 0, sizeof(st));
	if (tdm_status(node, &st) != 0 || st.transport[0] == '\0')
		snprintf(st.transport, sizeof(st.transport), "%s", tdm_dp_backend_name(cfg->backend));
	if (role != TDM_ROLE_WITNESS && tdm_primary(node, &leader, &epoch) == 0)
		role = leader == cfg->node_id ? TDM_ROLE_PRIMARY : TDM_ROLE_REPLICA;
	if (role == TDM_ROLE_REPLICA && leader != 0)
		snprintf(primary, sizeof(primary), ", primary %u", leader);
	else if (role == TDM_ROLE_REPLICA)
		snprintf(primary, sizeof(primary), ", primary not known yet");
	say("node %u (%s%s, epoch %" PRIu32 ") of cluster %" PRIu64 " started: transport %s on "
	    "%s:%u, data_dir %s, pid %d", cfg->node_id, tdm_role_name(role), primary, epoch,
	    cfg->cluster_id, st.transport, cfg->local_host, cfg->port, cfg->data_dir,
	    (int)getpid());
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct tdm_config *cfg;
	struct tdm_node *node = NULL;
	int rc, code = parse_opts(argc, argv, &o);

	if (code >= 0)
		return code; /* --help, --version, usage error */
	if ((cfg = malloc(sizeof(*cfg))) == NULL) {
		fputs("tandemd: out of memory\n", stderr);
		return TDM_CTL_EXIT_ERROR;
	}
	code = configure(&o, cfg);
	if (code != 0 || o.print_config || o.check) {
		if (code == 0 && o.check)
			printf("%s: the configuration is valid (node %u, %s)\n", o.config,
			       cfg->node_id, tdm_role_name(cfg->role));
		free(cfg);
		return fflush(stdout) != 0 && code == 0 ? TDM_CTL_EXIT_ERROR : code;
	}

	on_signals();
	tdm_err_clear();
	if ((rc = tdm_node_open(cfg, &node)) != 0) {
		say("cannot start node %u: %s", cfg->node_id, why(rc));
		free(cfg);
		return rc == TDM_ERR_CONFIG ? TDM_CTL_EXIT_USAGE : TDM_CTL_EXIT_ERROR;
	}
	say_started(node, cfg);
	rc = tdm_node_run(node, &stop);
	if (rc < 0)
		say("node %u stopped on an error: %s", cfg->node_id, why(rc));
	else
		say("node %u stopping (%s)", cfg->node_id,
		    stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
	tdm_node_close(node);
	if (rc >= 0)
		say("node %u stopped", cfg->node_id);
	free(cfg);
	return rc < 0 ? TDM_CTL_EXIT_ERROR : TDM_CTL_EXIT_OK;
}
