/*
 * tandem-load: the command line. Every option is checked here, so the run meets only values it
 * can use; a usage error names the option, the value and what to write instead.
 */
#include "load_opts.h"
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char help_text[] =
"Usage: tandem-load (--attach DATA_DIR ... [--follow]\n"
"                   | --config FILE [--set section.key=value ...]) [OPTIONS]\n"
"\n"
"Write load to a tandem primary and measure how long each write takes to reach its commit\n"
"level. A write is a put (or a delete) of a 16-byte key \"k%015llu\", then a wait for the level.\n"
"\n"
"Target (one of):\n"
"  --attach DATA_DIR      the tandemd running on this machine with that data directory.\n"
"                         Repeat it for every node of a cluster on this machine: writes go\n"
"                         to the one that is primary (the highest epoch when two say so)\n"
"  --follow               with --attach: follow failovers. A write that fails because its\n"
"                         node is no longer the primary (TDM_ERR_NOT_PRIMARY) or is gone\n"
"                         (TDM_ERR_CLOSED) is counted as failed (not acknowledged); the\n"
"                         attached nodes are then asked every 10 ms which one is primary\n"
"                         (a restarted node is attached again), and writing goes on there.\n"
"                         At a fixed rate, writes that come due meanwhile fail the same way.\n"
"                         Without --follow such a failure ends the run.\n"
"  --verify               with --attach: at the end, read every key written back from the\n"
"                         node that is primary (many keys per control request) and check\n"
"                         that no acknowledged write is lost: a key holds its newest\n"
"                         acknowledged value or a later one whose write failed. Needs no\n"
"                         --delete-ratio and --value-size >= 8. Exit 1 when one is lost.\n"
"  --config FILE          run the primary node in this process from its configuration file.\n"
"                         threads is forced to 0: this thread drives the node while it waits\n"
"                         and paces, so leave it a core. Replicas run elsewhere (tandemd).\n"
"  --set section.key=value  override a key of FILE, as in the file (repeatable)\n"
"\n"
"Load:\n"
"  --rate N|max           N writes/s on a fixed schedule, each write's latency measured from\n"
"                         its intended send time, so a stall is not hidden by the sends it\n"
"                         delays; max: closed loop, as fast as writes are acknowledged\n"
"                         (default max)\n"
"  --duration SECONDS     how long to measure (default 10; decimals allowed)\n"
"  --count N              measure N writes instead of a duration\n"
"  --warmup SECONDS       run this long first, left out of every figure (default 0)\n"
"  --pipeline N           writes sent before one wait for the last of them (default 1); each\n"
"                         one's latency runs to the end of that wait. At a fixed rate: up to N\n"
"                         writes that are already due, when behind schedule\n"
"  --level LEVEL          what each write waits for: memory, local, received, durable, applied\n"
"                         (default: the configured level with --config, local with --attach)\n"
"  --value-size BYTES     value of each put (default 64)\n"
"  --keys N               key space: keys 0..N-1 (default 100000)\n"
"  --dist uniform|zipf    key distribution (default uniform); zipf: key 0 most frequent\n"
"  --zipf-theta T         zipf skew, 0 <= T < 1 (default 0.99)\n"
"  --delete-ratio PERMILLE  deletes per 1000 writes (default 0)\n"
"  --seed N               seed of keys, values and put/delete choices (default 1)\n";

/* In two pieces: C11 compilers need not take a string literal over 4095 bytes. */
static const char help_text2[] =
"\n"
"Every node at once (multi-primary, where every node takes writes):\n"
"  --spread               with --attach: write to every attached node at once, one writer\n"
"                         thread per node, each with its own --rate, --count, --pipeline and\n"
"                         progress line; node i (the i-th --attach, from 0) draws its keys\n"
"                         with seed + i. The report has each node's figures and the total\n"
"  --shared PCT           with --spread: the first PCT %% of the key space (0..100, default\n"
"                         0) is the same keys on every node, where their writes conflict;\n"
"                         the rest of each node's draws go to keys of its own (node i:\n"
"                         S + i*(N-S) .. S + (i+1)*(N-S) - 1, N = --keys, S = N*PCT/100)\n"
"  --verify               with --spread: at the end, wait until every node has applied every\n"
"                         other node's writes, then compare the digests of all nodes (exit 1\n"
"                         when they differ) and report each node's conflict counters\n"
"\n"
"Output:\n"
"  A start line and a progress line each second on stderr: elapsed time, writes/s, MB/s of\n"
"  keys and values, p50/p99/max latency of that second, failed and degraded writes; with\n"
"  --follow, writes failed for want of a primary, failovers followed and the time writes\n"
"  were unavailable (total and longest). Then the report on stdout: writes, duration,\n"
"  writes/s, MB/s, latency p50 p90 p99 p99.9 p99.99 max and mean, outcomes, level, and the\n"
"  failovers with each one's unavailable time.\n"
"  --json                 the report as one JSON object on stdout instead of the table\n"
"  --plot FILE.svg        p50/p99/max latency per 100 ms over the run, as an SVG image\n"
"  --quiet                no start line and no progress lines\n"
"  -h, --help             this text\n"
"\n"
"Outcomes: a wait that times out is a failed write (policy fail); one acknowledged at local\n"
"instead of its level is degraded (policy degrade); a put that meets a full ring is retried and\n"
"counted as back-pressure. At a fixed rate, writes still due when the time is up are counted\n"
"as unsent. Latencies cover every write waited for, timed-out ones included. With --follow,\n"
"writes that failed for want of a primary are counted apart (no primary): they are not in\n"
"writes, writes/s or the latencies. Each outage is measured instead (unavailable): from the\n"
"send of the first write that failed (timed out, or no primary) to the next acknowledged one.\n"
"Any other error stops the run with exit status 1; Ctrl-C stops it early with the report of\n"
"what ran.\n"
"\n"
"Exit status: 0 the run finished (failed writes are in the report), 1 error, 2 usage error.\n"
"\n"
"Examples:\n"
"  tandem-load --attach /tmp/tandem/n1 --rate 100000 --duration 5 --level applied --json\n"
"  tandem-load --attach /tmp/tandem/n1 --rate max --pipeline 32 --value-size 1024\n"
"  tandem-load --config n1.ini --set replication.level=durable --rate 20000 --plot lat.svg\n"
"  tandem-load --attach /tmp/tandem/n1 --attach /tmp/tandem/n2 --follow --rate 10000 \\\n"
"      --duration 30 --level durable\n"
"  tandem-load --attach /tmp/tandem/n1 --dist zipf --keys 1000000 --delete-ratio 100 \\\n"
"      --count 1000000 --warmup 2\n"
"  tandem-load --attach /tmp/tandem/n1 --attach /tmp/tandem/n2 --attach /tmp/tandem/n3 \\\n"
"      --spread --shared 10 --rate 5000 --duration 10 --verify\n";

/* Exit status 2 (TDM_CTL_EXIT_USAGE == TDM_LOAD_EXIT_USAGE), like tandemctl's and tandemd's. */
#define usage_error(...) tdm_ctl_usage_error("tandem-load", __VA_ARGS__)

/* A whole number: decimal digits only, no sign, no blanks, no suffix. */
static bool read_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0;
}

static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v;

	if (!read_u64(s, &v) || v < min || v > max)
		return usage_error("--%s: '%s' is not a whole number from %llu to %llu", opt, s,
				   (unsigned long long)min, (unsigned long long)max);
	*out = v;
	return 0;
}

static int parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v = 0;
	int rc = parse_u64(opt, s, min, max, &v);

	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

/* A number in [min, max]; decimals allowed. */
static int parse_double(const char *opt, const char *s, double min, double max, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end != '\0' || !(v >= min && v <= max))
		return usage_error("--%s: '%s' is not a number from %g to %g", opt, s, min, max);
	*out = v;
	return 0;
}

enum {
	OPT_ATTACH = 256, OPT_CONFIG, OPT_SET, OPT_RATE, OPT_DURATION, OPT_COUNT, OPT_WARMUP,
	OPT_PIPELINE, OPT_LEVEL, OPT_VALUE_SIZE, OPT_KEYS, OPT_DIST, OPT_THETA, OPT_DELETE,
	OPT_SEED, OPT_JSON, OPT_PLOT, OPT_QUIET, OPT_FOLLOW, OPT_VERIFY, OPT_SPREAD, OPT_SHARED,
};

static const struct option long_opts[] = {
	{ "attach", required_argument, NULL, OPT_ATTACH },
	{ "follow", no_argument, NULL, OPT_FOLLOW },
	{ "verify", no_argument, NULL, OPT_VERIFY },
	{ "spread", no_argument, NULL, OPT_SPREAD },
	{ "shared", required_argument, NULL, OPT_SHARED },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "set", required_argument, NULL, OPT_SET },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "warmup", required_argument, NULL, OPT_WARMUP },
	{ "pipeline", required_argument, NULL, OPT_PIPELINE },
	{ "level", required_argument, NULL, OPT_LEVEL },
	{ "value-size", required_argument, NULL, OPT_VALUE_SIZE },
	{ "keys", required_argument, NULL, OPT_KEYS },
	{ "dist", required_argument, NULL, OPT_DIST },
	{ "zipf-theta", required_argument, NULL, OPT_THETA },
	{ "delete-ratio", required_argument, NULL, OPT_DELETE },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "plot", required_argument, NULL, OPT_PLOT },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Options that shape the load (the rest are in parse_option). */
static int parse_load_option(struct tdm_load_opts *o, int c, const char *arg)
{
	switch (c) {
	case OPT_RATE:
		if (strcmp(arg, "max") == 0) {
			o->rate = 0;
			return 0;
		}
		if (!read_u64(arg, &o->rate) || o->rate < 1 || o->rate > TDM_LOAD_MAX_RATE)
			return usage_error("--rate: '%s' is not max or a whole number of writes/s "
					   "from 1 to %llu", arg, TDM_LOAD_MAX_RATE);
		return 0;
	case OPT_DURATION:
		o->duration_set = true;
		return parse_double("duration", arg, 0.001, 1e7, &o->duration);
	case OPT_COUNT:
		return parse_u64("count", arg, 1, UINT64_MAX, &o->count);
	case OPT_WARMUP:
		return parse_double("warmup", arg, 0, 1e7, &o->warmup);
	case OPT_PIPELINE:
		return parse_u32("pipeline", arg, 1, TDM_LOAD_MAX_PIPELINE, &o->pipeline);
	case OPT_VALUE_SIZE:
		return parse_u32("value-size", arg, 0, TDM_LOG_MAX_VALUE, &o->value_size);
	case OPT_KEYS:
		return parse_u64("keys", arg, 1, TDM_LOAD_KEYS_MAX, &o->keys);
	case OPT_THETA:
		o->theta_set = true;
		return parse_double("zipf-theta", arg, 0, 0.999999, &o->theta);
	case OPT_DELETE:
		return parse_u32("delete-ratio", arg, 0, 1000, &o->delete_permille);
	case OPT_SEED:
		return parse_u64("seed", arg, 0, UINT64_MAX, &o->seed);
	case OPT_SHARED:
		o->shared_set = true;
		return parse_u32("shared", arg, 0, 100, &o->shared_pct);
	}
	return usage_error("unknown option");
}

static int parse_option(struct tdm_load_opts *o, int c, char *arg)
{
	switch (c) {
	case OPT_ATTACH:
		if (o->n_attach == TDM_LOAD_MAX_ATTACH)
			return usage_error("--attach: at most %d nodes (a cluster's)",
					   TDM_LOAD_MAX_ATTACH);
		for (int i = 0; i < o->n_attach; i++)
			if (strcmp(o->attach_dirs[i], arg) == 0)
				return usage_error("--attach %s is given twice", arg);
		o->attach_dirs[o->n_attach++] = arg;
		if (o->attach_dir == NULL)
			o->attach_dir = arg;
		return 0;
	case OPT_FOLLOW:
		o->follow = true;
		return 0;
	case OPT_VERIFY:
		o->verify = true;
		return 0;
	case OPT_SPREAD:
		o->spread = true;
		return 0;
	case OPT_CONFIG:
		o->config_path = arg;
		return 0;
	case OPT_SET:
		if (strchr(arg, '=') == NULL) /* the key itself is checked by tdm_config_set */
			return usage_error("--set '%s': write section.key=value", arg);
		o->sets[o->n_sets++] = arg;
		return 0;
	case OPT_LEVEL:
		o->level_set = true;
		if (tdm_level_parse(arg, &o->level) != 0)
			return usage_error("--level: '%s' is not a level (memory, local, received, "
					   "durable, applied)", arg);
		return 0;
	case OPT_DIST:
		if (strcmp(arg, "uniform") != 0 && strcmp(arg, "zipf") != 0)
			return usage_error("--dist: '%s' is not uniform or zipf", arg);
		o->dist = arg[0] == 'z' ? TDM_LOAD_DIST_ZIPF : TDM_LOAD_DIST_UNIFORM;
		return 0;
	case OPT_JSON:
		o->json = true;
		return 0;
	case OPT_PLOT:
		o->plot_path = arg;
		return 0;
	case OPT_QUIET:
		o->quiet = true;
		return 0;
	}
	return parse_load_option(o, c, arg);
}

/* --spread and --shared: with --attach only, neither --follow nor --plot; every node's own keys
 * must fit the key format beside the shared ones. */
static int check_spread(const struct tdm_load_opts *o)
{
	if (!o->spread)
		return usage_error("--shared needs --spread (writes to every attached node)");
	if (o->attach_dir == NULL)
		return usage_error("--spread needs --attach DATA_DIR for every node to write to");
	if (o->follow)
		return usage_error("--spread writes to every node; --follow is for one primary");
	if (o->plot_path != NULL)
		return usage_error("--plot is for one writer; leave it out with --spread");
	if (o->keys > TDM_LOAD_KEYS_MAX / (uint64_t)o->n_attach)
		return usage_error("--keys %llu: with --spread over %d nodes, at most %llu (every "
				   "node's own keys must fit 15 digits)", (unsigned long long)o->keys,
				   o->n_attach, TDM_LOAD_KEYS_MAX / (unsigned long long)o->n_attach);
	return 0;
}

/* Options that make sense only together, or not at all together. */
static int check_options(const struct tdm_load_opts *o)
{
	size_t plen = o->plot_path != NULL ? strlen(o->plot_path) : 0;

	if ((o->attach_dir == NULL) == (o->config_path == NULL))
		return usage_error("give one target: --attach DATA_DIR or --config FILE");
	if (o->follow && o->attach_dir == NULL)
		return usage_error("--follow needs --attach DATA_DIR for every node of the cluster "
				   "on this machine (the node in this process cannot follow)");
	if (o->n_sets != 0 && o->config_path == NULL)
		return usage_error("--set overrides keys of --config FILE; with --attach, change "
				   "the running node's configuration instead");
	if ((o->spread || o->shared_set) && check_spread(o) != 0)
		return TDM_LOAD_EXIT_USAGE;
	if (o->verify && !o->spread &&
	    (o->attach_dir == NULL || o->delete_permille != 0 || o->value_size < 8))
		return usage_error("--verify needs --attach, no --delete-ratio and --value-size of at "
				   "least 8 (each value starts with its write's number)");
	if (o->duration_set && o->count != 0)
		return usage_error("give --duration or --count, not both");
	if (o->theta_set && o->dist != TDM_LOAD_DIST_ZIPF)
		return usage_error("--zipf-theta needs --dist zipf");
	if (plen >= 4 && strcasecmp(o->plot_path + plen - 4, ".png") == 0)
		return usage_error("--plot %s: only SVG is supported; name the file .svg",
				   o->plot_path);
	return 0;
}

int tdm_load_opts_parse(int argc, char **argv, struct tdm_load_opts *o)
{
	int c, rc;

	*o = (struct tdm_load_opts){
		.duration = 10, .pipeline = 1, .value_size = 64, .keys = 100000,
		.dist = TDM_LOAD_DIST_UNIFORM, .theta = 0.99, .level = TDM_LEVEL_LOCAL, .seed = 1,
	};
	o->sets = calloc((size_t)argc, sizeof(*o->sets));
	if (o->sets == NULL)
		return usage_error("out of memory");
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(help_text, stdout);
			fputs(help_text2, stdout);
			return -1;
		}
		if (c == '?') { /* getopt said what is wrong */
			fputs("Try 'tandem-load --help'.\n", stderr);
			return TDM_LOAD_EXIT_USAGE;
		}
		rc = parse_option(o, c, optarg);
		if (rc != 0)
			return rc;
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	return check_options(o);
}
