/*
 * tandemctl status|get|digest: a node seen from outside while it runs, and the parsing of
 * --dir/--config that every command about a running node shares (ctl_failover.c too).
 *
 * status reads the node's status file in its data_dir (shared memory the node refreshes every
 * status interval) without attaching to its log, so it works while the node is busy; get and
 * digest ask the node's engine over its control socket. The node is named by its data_dir
 * (--dir) or by its configuration file (--config, which gives the data_dir).
 *
 * Exit status: 0 done; 1 the node is not running, the key is missing, or the node failed to
 * answer (stderr says which); 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "tandem.h"

#define STATUS_PATH "tandemctl status"
#define GET_PATH "tandemctl get"
#define DIGEST_PATH "tandemctl digest"
#define WATCH_MAX 86400u           /* --watch: at most a day between refreshes */
#define GET_BUF (64u * 1024)       /* first value buffer; a longer value is read again */

/* ---- Arguments: which node (--dir DATA_DIR or --config FILE) and each command's options ---- */

_Static_assert(sizeof(((struct tdm_ctl_node_args *)0)->data_dir) ==
	       sizeof(((struct tdm_config *)0)->data_dir), "data_dir: the config's size");

/* a->data_dir from --dir or --config; it must be a directory. @return 0 or usage exit. */
static int resolve(const char *path, struct tdm_ctl_node_args *a)
{
	struct tdm_config *cfg;
	struct stat st;
	int rc;

	if ((a->dir == NULL) == (a->config == NULL))
		return tdm_ctl_usage_error(path, a->dir == NULL ? "missing --dir DATA_DIR or "
					   "--config FILE (which node)" : "give --dir or --config, "
					   "not both");
	if (a->dir != NULL) {
		if (strlen(a->dir) >= sizeof(a->data_dir))
			return tdm_ctl_usage_error(path, "--dir '%s' is too long", a->dir);
		snprintf(a->data_dir, sizeof(a->data_dir), "%s", a->dir);
	} else {
		if ((cfg = malloc(sizeof(*cfg))) == NULL)
			return tdm_ctl_usage_error(path, "out of memory");
		tdm_config_defaults(cfg);
		tdm_err_clear();
		rc = tdm_config_load(cfg, a->config);
		snprintf(a->data_dir, sizeof(a->data_dir), "%s", cfg->data_dir);
		free(cfg);
		if (rc != 0)
			return tdm_ctl_usage_error(path, "--config: %s", tdm_ctl_errmsg() != NULL ?
						   tdm_ctl_errmsg() : tdm_strerror(rc));
		if (a->data_dir[0] == '\0')
			return tdm_ctl_usage_error(path, "--config %s sets no [node] data_dir",
						   a->config);
	}
	if (stat(a->data_dir, &st) != 0)
		return tdm_ctl_usage_error(path, "DATA_DIR '%s': %s", a->data_dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return tdm_ctl_usage_error(path, "DATA_DIR '%s' is not a directory", a->data_dir);
	return 0;
}

/* A count 1..max for option opt ("--watch: give 1..86400 seconds" when out of range).
 * @return 0 or usage exit. */
static int parse_count(const char *path, const char *opt, const char *s, unsigned max,
		       const char *unit, uint64_t *out)
{
	if (tdm_ctl_parse_u64(path, opt, s, out) != 0)
		return TDM_CTL_EXIT_USAGE;
	if (*out == 0 || *out > max)
		return tdm_ctl_usage_error(path, "%s: give 1..%u%s", opt, max, unit);
	return 0;
}

int tdm_ctl_node_parse(const struct tdm_ctl_node_cmd *c, int argc, char **argv,
		       struct tdm_ctl_node_args *a)
{
	int ret;

	memset(a, 0, sizeof(*a));
	optind = 0;
	while ((ret = getopt_long(argc, argv, c->shortopts, c->opts, NULL)) != -1) {
		switch (ret) {
		case 'd': a->dir = optarg; break;
		case 'c': a->config = optarg; break;
		case 'j': a->json = true; break;
		case 'x': a->hex = true; break;
		case 'f': a->force = true; break;
		case 'w':
			if (parse_count(c->path, "--watch", optarg, WATCH_MAX, " seconds",
					&a->watch) != 0)
				return TDM_CTL_EXIT_USAGE;
			break;
		case 'n':
			if (parse_count(c->path, "--limit", optarg, TDM_CTL_LIMIT_MAX, "",
					&a->limit) != 0)
				return TDM_CTL_EXIT_USAGE;
			break;
		case 'h': c->help(); return TDM_CTL_EXIT_OK;
		default: return tdm_ctl_bad_option(c->path, ret, argv, c->opts);
		}
	}
	if (c->operand != NULL && optind >= argc)
		return tdm_ctl_usage_error(c->path, "missing %s", c->operand);
	if (c->operand != NULL)
		a->operand = argv[optind++];
	if (optind < argc)
		return tdm_ctl_usage_error(c->path, "unexpected argument '%s'", argv[optind]);
	return resolve(c->path, a) != 0 ? TDM_CTL_EXIT_USAGE : -1;
}

/* ---- Human figures ---- */

static void human_bytes(uint64_t v, char *buf, size_t cap)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
	double d = (double)v;
	int u = -1;

	if (v < 1024) {
		snprintf(buf, cap, "%" PRIu64 " B", v);
		return;
	}
	while (d >= 1024 && u < 4) {
		d /= 1024;
		u++;
	}
	snprintf(buf, cap, d < 10 ? "%.1f %s" : "%.0f %s", d, units[u]);
}

void tdm_ctl_human_ns(uint64_t ns, char *buf, size_t cap)
{
	double d = (double)ns;

	if (ns < 1000)
		snprintf(buf, cap, "%" PRIu64 " ns", ns);
	else if (ns < 1000000)
		snprintf(buf, cap, d < 10e3 ? "%.1f µs" : "%.0f µs", d / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, cap, d < 10e6 ? "%.1f ms" : "%.0f ms", d / 1e6);
	else
		snprintf(buf, cap, d < 10e9 ? "%.1f s" : "%.0f s", d / 1e9);
}

/* Counts per second: 950, 12.3k, 4.1M. */
static void human_count(uint64_t v, char *buf, size_t cap)
{
	if (v < 1000)
		snprintf(buf, cap, "%" PRIu64, v);
	else if (v < 1000000)
		snprintf(buf, cap, "%.1fk", (double)v / 1e3);
	else
		snprintf(buf, cap, "%.1fM", (double)v / 1e6);
}

static void human_uptime(uint64_t ns, char *buf, size_t cap)
{
	uint64_t s = ns / 1000000000u;

	if (s < 3600)
		snprintf(buf, cap, "%" PRIu64 "m %02" PRIu64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, cap, "%" PRIu64 "h %02" PRIu64 "m", s / 3600, s / 60 % 60);
	else
		snprintf(buf, cap, "%" PRIu64 "d %02" PRIu64 "h", s / 86400, s / 3600 % 24);
}

/* Local time: "2024-05-01 12:00:03". */
static void local_stamp(time_t t, char *buf, size_t cap)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

/* "2024-05-01 12:00:03 (5m 02s ago)"; "at an unknown time" for 0. */
static void human_when(uint64_t unix_ns, char *buf, size_t cap)
{
	struct timespec now;
	char ago[32], stamp[32];

	if (unix_ns == 0) {
		snprintf(buf, cap, "at an unknown time");
		return;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	local_stamp((time_t)(unix_ns / 1000000000u), stamp, sizeof(stamp));
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	human_uptime(now_ns > unix_ns ? now_ns - unix_ns : 0, ago, sizeof(ago));
	snprintf(buf, cap, "%s (%s ago)", stamp, ago);
}

/* s padded with blanks to width columns (µ is one column, two bytes). */
static void cell(const char *s, int width)
{
	int cols = 0;

	for (const char *p = s; *p != '\0'; p++)
		cols += ((unsigned char)*p & 0xc0) != 0x80;
	printf("%s%*s", s, width > cols ? width - cols : 0, "");
}

/* How far pos is behind end, in bytes (0 when not behind). */
static uint64_t gap(uint64_t end, uint64_t pos)
{
	return end > pos ? end - pos : 0;
}

/* "1.2 KiB / 35 µs": how far a replica position is behind the tail. */
static void behind(uint64_t tail, uint64_t pos, uint64_t lag_ns, char *buf, size_t cap)
{
	char b[24], t[24];

	human_bytes(tail > pos ? tail - pos : 0, b, sizeof(b));
	tdm_ctl_human_ns(lag_ns, t, sizeof(t));
	snprintf(buf, cap, "%s / %s", b, t);
}

/* ---- status ---- */

/* "replica of 2, streaming", "primary, FENCED", "witness": the node's role, as a phrase. */
static void role_phrase(const struct tdm_status *st, char *buf, size_t cap)
{
	const char *role = tdm_role_name((enum tdm_role)st->role);

	if (st->mode == TDM_MODE_MULTI_PRIMARY)
		snprintf(buf, cap, "multi-primary, %s", st->writable ? "writable" : "NOT WRITABLE");
	else if (st->role == TDM_ROLE_REPLICA && st->primary_id != 0)
		snprintf(buf, cap, "%s of %u, %s", role, st->primary_id,
			 tdm_peer_state_name((enum tdm_peer_state)st->replica_state));
	else if (st->role == TDM_ROLE_REPLICA)
		snprintf(buf, cap, "%s, no primary known", role);
	else
		snprintf(buf, cap, "%s%s", role, st->fenced ? ", FENCED" : "");
}

/* Election figures, the last failover and the note (engine/election.c). */
static void status_failover(const struct tdm_status *st)
{
	char t[24], when[96], took[24];

	if (st->failover_timeout_ms != 0)
		snprintf(t, sizeof(t), "%" PRIu64 " ms", st->failover_timeout_ms);
	else
		snprintf(t, sizeof(t), "none");
	printf("  %-10s timeout %s, leader %s%u (epoch %" PRIu32 "), voted in epoch %" PRIu32
	       ", elections %" PRIu64 " (won %" PRIu64 ")\n", "failover", t,
	       st->primary_id != 0 ? "node " : "unknown", st->primary_id, st->epoch,
	       st->voted_epoch, st->elections, st->elections_won);
	if (st->last_failover_ns != 0) {
		human_when(st->last_failover_ns, when, sizeof(when));
		tdm_ctl_human_ns(st->last_failover_duration_ns, took, sizeof(took));
		printf("  %-10s %s, %s without a primary\n", "", when, took);
	} else {
		printf("  %-10s no failover seen by this node\n", "");
	}
	if (st->fenced)
		printf("  %-10s FENCED: writes refused until a majority is heard again\n", "");
	if (st->failover_note[0] != '\0')
		printf("  %-10s %.*s\n", "note", (int)sizeof(st->failover_note), st->failover_note);
}

static const char *mode_name(uint8_t mode)
{
	return mode == TDM_MODE_MULTI_PRIMARY ? "multi-primary" : "primary-replica";
}

static const char *write_mode_name(uint8_t wm)
{
	return wm == TDM_WRITES_MAJORITY ? "majority" : "any";
}

/* "+1.2 ms", "-350 µs": a clock offset. */
static void signed_ns(int64_t ns, char *buf, size_t cap)
{
	char t[24];

	tdm_ctl_human_ns(ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns, t, sizeof(t));
	snprintf(buf, cap, "%s%s", ns < 0 ? "-" : ns > 0 ? "+" : "", t);
}

/* Multi-primary in place of the failover lines: writable or why not (the note), the clock,
 * conflicts and tombstones (engine/multi.c). */
static void status_multi(const struct tdm_status *st)
{
	char hlc[64], purge[64];

	printf("  %-10s multi-primary, write_mode %s: ", "mode", write_mode_name(st->write_mode));
	if (st->writable)
		printf("writable\n");
	else if (st->failover_note[0] != '\0')
		printf("NOT WRITABLE: %.*s\n", (int)sizeof(st->failover_note), st->failover_note);
	else
		printf("NOT WRITABLE%s\n", st->fenced ? ": a majority of the nodes is not reachable"
		       : "");
	tdm_ctl_hlc_str(st->hlc, true, hlc, sizeof(hlc));
	printf("  %-10s hlc %" PRIu64 " (%s), max offset %" PRIu64 " ms, %" PRIu64 " records "
	       "refused (stamped further ahead)\n", "clock", st->hlc, hlc, st->max_clock_offset_ms,
	       st->clock_refused);
	printf("  %-10s stale %" PRIu64 " (%" PRIu64 " in the window), overwrites %" PRIu64
	       " (tandemctl conflicts: the latest)\n", "conflicts", st->conflicts_stale,
	       st->conflicts_stale_in_window, st->conflicts_overwrites);
	if (st->purge_hlc != 0) {
		tdm_ctl_hlc_str(st->purge_hlc, true, purge, sizeof(purge));
		printf("  %-10s %" PRIu64 " held, %" PRIu64 " purged, purging below hlc %" PRIu64
		       " (%s)\n", "tombstones", st->tombstones, st->tombstones_purged,
		       st->purge_hlc, purge);
	} else {
		printf("  %-10s %" PRIu64 " held, %" PRIu64 " purged, none purgeable yet\n",
		       "tombstones", st->tombstones, st->tombstones_purged);
	}
}

static void status_header(const char *dir, const struct tdm_status *st)
{
	char role[64], up[24], rate[24], bytes[24], store[24], dur[24], app[24];

	human_uptime(st->uptime_ns, up, sizeof(up));
	role_phrase(st, role, sizeof(role));
	printf("node %u (%s)  epoch %" PRIu32 "  pid %" PRId32 "  up %s  data_dir %s\n",
	       st->node_id, role, st->epoch, st->pid, up, dir);
	printf("  %-10s %s\n", "transport", st->transport);
	if (st->mode == TDM_MODE_MULTI_PRIMARY)
		status_multi(st);
	else
		status_failover(st);
	if (st->role == TDM_ROLE_WITNESS) {
		printf("  %-10s none: a witness votes and keeps no data\n", "data");
		printf("  %-10s dropped frames %" PRIu64 " (another cluster: %" PRIu64 ", older "
		       "epoch: %" PRIu64 ")\n", "events", st->frames_dropped,
		       st->frames_bad_cluster, st->frames_stale_epoch);
		return;
	}
	printf("  %-10s level %s, quorum %" PRId32 "%s\n", "commit", st->level, st->quorum,
	       st->degraded ? ", DEGRADED (writes do not wait for the quorum)" : ", not degraded");
	human_bytes(st->tail > st->durable ? st->tail - st->durable : 0, dur, sizeof(dur));
	human_bytes(st->tail > st->applied ? st->tail - st->applied : 0, app, sizeof(app));
	printf("  %-10s start %" PRIu64 "  tail %" PRIu64 "  durable %" PRIu64 " (%s behind)  "
	       "applied %" PRIu64 " (%s behind)\n", "positions", st->log_start, st->tail,
	       st->durable, dur, st->applied, app);
	human_count(st->writes_per_s, rate, sizeof(rate));
	human_bytes(st->bytes_per_s, bytes, sizeof(bytes));
	printf("  %-10s %s/s, %s/s\n", "writes", rate, bytes);
	human_bytes(st->store_bytes, store, sizeof(store));
	printf("  %-10s %" PRIu64 " keys, %s, digest %016" PRIx64 " (at applied)\n", "store",
	       st->keys, store, st->digest);
	printf("  %-10s timeouts %" PRIu64 "  degrades %" PRIu64 "  resyncs %" PRIu64
	       "  dropped frames %" PRIu64 " (another cluster: %" PRIu64 ", older epoch: %"
	       PRIu64 ")\n", "events", st->timeouts, st->degrades, st->resyncs,
	       st->frames_dropped, st->frames_bad_cluster, st->frames_stale_epoch);
}

struct column {
	const char *title;
	int width; /* 0: the last column */
};

static void print_titles(const struct column *cols, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cell(cols[i].title, cols[i].width);
	putchar('\n');
}

/* Whether a peer's row holds a stream (a replica of ours, or our primary), not only beats. */
static bool has_stream(const struct tdm_peer_status *p)
{
	return !p->witness && (p->state != TDM_PEER_DOWN || p->sent != 0 || p->received != 0 ||
			       p->durable != 0 || p->applied != 0 || p->resyncs != 0);
}

/* Every member as its heartbeats describe it: role, epoch, how long ago it was heard. */
static void status_members(const struct tdm_status *st)
{
	static const struct column cols[] = {
		{ "PEER", 6 }, { "ROLE", 24 }, { "EPOCH", 7 }, { "STATE", 12 }, { "LINK", 6 },
		{ "HEARTBEAT", 14 }, { "LOG END", 0 },
	};
	enum { NCOLS = sizeof(cols) / sizeof(cols[0]) };
	char c[NCOLS][48], age[24];

	print_titles(cols, NCOLS);
	for (int i = 0; i < st->n_peers && i < TDM_MAX_PEERS; i++) {
		const struct tdm_peer_status *p = &st->peers[i];
		bool heard = p->role != 0;
		snprintf(c[0], sizeof(c[0]), "%u", p->node_id);
		if (!heard)
			snprintf(c[1], sizeof(c[1]), "never heard%s",
				 p->witness ? " (witness)" : "");
		else
			snprintf(c[1], sizeof(c[1]), "%s%s%s",
				 tdm_role_name((enum tdm_role)p->role),
				 p->witness && p->role != TDM_ROLE_WITNESS ? " (witness)" : "",
				 p->fenced ? ", FENCED" : "");
		if (heard)
			snprintf(c[2], sizeof(c[2]), "%" PRIu32, p->epoch);
		else
			snprintf(c[2], sizeof(c[2]), "-");
		/* a stream state only where there is a stream (or should be: our replicas) */
		snprintf(c[3], sizeof(c[3]), "%s", has_stream(p) || (st->role == TDM_ROLE_PRIMARY &&
			 !p->witness) ? tdm_peer_state_name((enum tdm_peer_state)p->state) : "-");
		snprintf(c[4], sizeof(c[4]), "%s", p->link_up ? "up" : "down");
		if (p->beat_age_ns == UINT64_MAX) {
			snprintf(c[5], sizeof(c[5]), "never");
		} else {
			tdm_ctl_human_ns(p->beat_age_ns, age, sizeof(age));
			snprintf(c[5], sizeof(c[5]), "%s ago", age);
		}
		if (heard && !p->witness)
			snprintf(c[6], sizeof(c[6]), "%" PRIu64, p->log_end);
		else
			snprintf(c[6], sizeof(c[6]), "-");
		for (size_t j = 0; j < NCOLS; j++)
			cell(c[j], cols[j].width);
		putchar('\n');
	}
}

/* The log streams: what was sent, and how far each position is behind our tail. */
static void status_streams(const struct tdm_status *st)
{
	static const struct column cols[] = {
		{ "PEER", 6 }, { "SENT", 14 }, { "RECEIVED", 20 }, { "DURABLE", 20 },
		{ "APPLIED", 20 }, { "RATE", 24 }, { "RESYNCS", 9 }, { "REWINDS", 0 },
	};
	enum { NCOLS = sizeof(cols) / sizeof(cols[0]) };
	char c[NCOLS][64], mb[24], recs[24];
	bool titles = false;

	for (int i = 0; i < st->n_peers && i < TDM_MAX_PEERS; i++) {
		const struct tdm_peer_status *p = &st->peers[i];
		if (!has_stream(p))
			continue;
		if (!titles) {
			printf("\n%s (bytes / time behind this node's tail)\n",
			       st->mode == TDM_MODE_MULTI_PRIMARY ?
			       "this node's writes, streamed to each peer" : "streams");
			print_titles(cols, NCOLS);
			titles = true;
		}
		snprintf(c[0], sizeof(c[0]), "%u", p->node_id);
		snprintf(c[1], sizeof(c[1]), "%" PRIu64, p->sent);
		behind(st->tail, p->received, p->lag_received_ns, c[2], sizeof(c[2]));
		behind(st->tail, p->durable, p->lag_durable_ns, c[3], sizeof(c[3]));
		behind(st->tail, p->applied, p->lag_applied_ns, c[4], sizeof(c[4]));
		snprintf(mb, sizeof(mb), "%.1f", (double)p->bytes_per_s / 1e6);
		human_count(p->records_per_s, recs, sizeof(recs));
		snprintf(c[5], sizeof(c[5]), "%s MB/s %s rec/s", mb, recs);
		snprintf(c[6], sizeof(c[6]), "%" PRIu64, p->resyncs);
		snprintf(c[7], sizeof(c[7]), "%" PRIu64, p->rewinds);
		for (size_t j = 0; j < NCOLS; j++)
			cell(c[j], cols[j].width);
		putchar('\n');
	}
}

/* Multi-primary: each peer's own writes (its origin) as this node copies and merges them. */
static void status_origins(const struct tdm_status *st)
{
	static const struct column cols[] = {
		{ "PEER", 6 }, { "STATE", 12 }, { "ITS END", 14 }, { "RECEIVED", 11 },
		{ "DURABLE", 11 }, { "APPLIED", 11 }, { "LAG", 10 }, { "CLOCK", 11 },
		{ "REFUSED", 9 }, { "CONFLICTS LOST/WON", 0 },
	};
	enum { NCOLS = sizeof(cols) / sizeof(cols[0]) };
	char c[NCOLS][48];

	printf("\neach peer's writes, copied here (bytes behind its end; lag: age of the oldest "
	       "not applied;\nclock: its timestamps ahead of this node's clock, transit "
	       "included)\n");
	print_titles(cols, NCOLS);
	for (int i = 0; i < st->n_peers && i < TDM_MAX_PEERS; i++) {
		const struct tdm_peer_status *p = &st->peers[i];
		snprintf(c[0], sizeof(c[0]), "%u", p->node_id);
		snprintf(c[1], sizeof(c[1]), "%s",
			 tdm_peer_state_name((enum tdm_peer_state)p->origin_state));
		snprintf(c[2], sizeof(c[2]), "%" PRIu64, p->origin_sent);
		human_bytes(gap(p->origin_sent, p->origin_received), c[3], sizeof(c[3]));
		human_bytes(gap(p->origin_sent, p->origin_durable), c[4], sizeof(c[4]));
		human_bytes(gap(p->origin_sent, p->origin_applied), c[5], sizeof(c[5]));
		tdm_ctl_human_ns(p->origin_lag_ns, c[6], sizeof(c[6]));
		signed_ns(p->clock_offset_ns, c[7], sizeof(c[7]));
		snprintf(c[8], sizeof(c[8]), "%" PRIu64, p->clock_refused);
		snprintf(c[9], sizeof(c[9]), "%" PRIu64 " / %" PRIu64, p->conflicts_lost,
			 p->conflicts_won);
		for (size_t j = 0; j < NCOLS; j++)
			cell(c[j], cols[j].width);
		putchar('\n');
	}
}

static void status_peers(const struct tdm_status *st)
{
	if (st->n_peers <= 0) {
		printf("\nno peers\n");
		return;
	}
	printf("\npeers (from their heartbeats)\n");
	status_members(st);
	status_streams(st);
	if (st->mode == TDM_MODE_MULTI_PRIMARY)
		status_origins(st);
}

#define JU64(name, v) printf(",\"%s\":%" PRIu64, name, (uint64_t)(v))

/* Multi-primary: the peer's own writes as this node copies them (zeros in primary-replica). */
static void json_origin(const struct tdm_peer_status *p)
{
	printf(",\"origin_state\":\"%s\"",
	       tdm_peer_state_name((enum tdm_peer_state)p->origin_state));
	JU64("origin_sent", p->origin_sent);
	JU64("origin_received", p->origin_received);
	JU64("origin_durable", p->origin_durable);
	JU64("origin_applied", p->origin_applied);
	JU64("origin_received_behind_bytes", gap(p->origin_sent, p->origin_received));
	JU64("origin_durable_behind_bytes", gap(p->origin_sent, p->origin_durable));
	JU64("origin_applied_behind_bytes", gap(p->origin_sent, p->origin_applied));
	JU64("origin_lag_ns", p->origin_lag_ns);
	printf(",\"clock_offset_ns\":%" PRId64, p->clock_offset_ns);
	JU64("clock_refused", p->clock_refused);
	JU64("conflicts_lost", p->conflicts_lost);
	JU64("conflicts_won", p->conflicts_won);
}

static void json_peer(const struct tdm_status *st, const struct tdm_peer_status *p)
{
	printf("{\"node_id\":%u,\"state\":\"%s\",\"link_up\":%s", p->node_id,
	       tdm_peer_state_name((enum tdm_peer_state)p->state), p->link_up ? "true" : "false");
	JU64("sent", p->sent);
	JU64("received", p->received);
	JU64("durable", p->durable);
	JU64("applied", p->applied);
	JU64("received_behind_bytes", st->tail > p->received ? st->tail - p->received : 0);
	JU64("durable_behind_bytes", st->tail > p->durable ? st->tail - p->durable : 0);
	JU64("applied_behind_bytes", st->tail > p->applied ? st->tail - p->applied : 0);
	JU64("lag_received_ns", p->lag_received_ns);
	JU64("lag_durable_ns", p->lag_durable_ns);
	JU64("lag_applied_ns", p->lag_applied_ns);
	JU64("bytes_per_s", p->bytes_per_s);
	JU64("records_per_s", p->records_per_s);
	JU64("resyncs", p->resyncs);
	JU64("rewinds", p->rewinds);
	JU64("retransmit_bytes", p->retransmit_bytes);
	JU64("naks", p->naks);
	JU64("last_heard_ns", p->last_heard_ns);
	if (p->role != 0)
		printf(",\"role\":\"%s\"", tdm_role_name((enum tdm_role)p->role));
	else
		fputs(",\"role\":null", stdout); /* never heard */
	printf(",\"witness\":%s,\"fenced\":%s", p->witness ? "true" : "false",
	       p->fenced ? "true" : "false");
	JU64("epoch", p->epoch);
	JU64("log_end", p->log_end);
	if (p->beat_age_ns != UINT64_MAX)
		JU64("beat_age_ns", p->beat_age_ns);
	else
		fputs(",\"beat_age_ns\":null", stdout);
	json_origin(p);
	putchar('}');
}

static void status_json(const char *dir, const struct tdm_status *st)
{
	fputs("{\"dir\":", stdout);
	tdm_ctl_json_str(stdout, dir, strlen(dir), false);
	printf(",\"running\":true,\"node_id\":%u,\"role\":\"%s\",\"epoch\":%" PRIu32
	       ",\"primary_id\":%u,\"replica_state\":\"%s\",\"pid\":%" PRId32 ",\"transport\":",
	       st->node_id, tdm_role_name((enum tdm_role)st->role), st->epoch, st->primary_id,
	       tdm_peer_state_name((enum tdm_peer_state)st->replica_state), st->pid);
	tdm_ctl_json_str(stdout, st->transport, strnlen(st->transport, sizeof(st->transport)),
			 false);
	fputs(",\"ring\":", stdout);
	tdm_ctl_json_str(stdout, st->ring, strnlen(st->ring, sizeof(st->ring)), false);
	fputs(",\"level\":", stdout);
	tdm_ctl_json_str(stdout, st->level, strnlen(st->level, sizeof(st->level)), false);
	printf(",\"quorum\":%" PRId32 ",\"degraded\":%s", st->quorum,
	       st->degraded ? "true" : "false");
	JU64("log_start", st->log_start);
	JU64("tail", st->tail);
	JU64("durable", st->durable);
	JU64("applied", st->applied);
	JU64("writes_per_s", st->writes_per_s);
	JU64("bytes_per_s", st->bytes_per_s);
	JU64("keys", st->keys);
	JU64("store_bytes", st->store_bytes);
	JU64("digest", st->digest);
	printf(",\"digest_hex\":\"%016" PRIx64 "\"", st->digest);
	JU64("timeouts", st->timeouts);
	JU64("degrades", st->degrades);
	JU64("resyncs", st->resyncs);
	JU64("frames_bad_cluster", st->frames_bad_cluster);
	JU64("frames_dropped", st->frames_dropped);
	JU64("frames_stale_epoch", st->frames_stale_epoch);
	printf(",\"fenced\":%s", st->fenced ? "true" : "false");
	JU64("failover_timeout_ms", st->failover_timeout_ms);
	JU64("voted_epoch", st->voted_epoch);
	JU64("elections", st->elections);
	JU64("elections_won", st->elections_won);
	JU64("last_failover_ns", st->last_failover_ns);
	JU64("last_failover_duration_ns", st->last_failover_duration_ns);
	fputs(",\"failover_note\":", stdout);
	tdm_ctl_json_str(stdout, st->failover_note,
			 strnlen(st->failover_note, sizeof(st->failover_note)), false);
	printf(",\"mode\":\"%s\",\"write_mode\":\"%s\",\"writable\":%s", mode_name(st->mode),
	       write_mode_name(st->write_mode), st->writable ? "true" : "false");
	JU64("hlc", st->hlc);
	JU64("max_clock_offset_ms", st->max_clock_offset_ms);
	JU64("clock_refused", st->clock_refused);
	JU64("conflicts_stale", st->conflicts_stale);
	JU64("conflicts_stale_in_window", st->conflicts_stale_in_window);
	JU64("conflicts_overwrites", st->conflicts_overwrites);
	JU64("tombstones", st->tombstones);
	JU64("tombstones_purged", st->tombstones_purged);
	JU64("purge_hlc", st->purge_hlc);
	JU64("uptime_ns", st->uptime_ns);
	JU64("updated_ns", st->updated_ns);
	fputs(",\"peers\":[", stdout);
	for (int i = 0; i < st->n_peers && i < TDM_MAX_PEERS; i++) {
		if (i > 0)
			putchar(',');
		json_peer(st, &st->peers[i]);
	}
	fputs("]}\n", stdout);
}

int tdm_ctl_not_running(const char *path, const char *dir, int rc, const struct tdm_status *st)
{
	char when[96];

	fflush(stdout);
	if (rc == TDM_ERR_CLOSED) {
		human_when(st->updated_ns, when, sizeof(when));
		fprintf(stderr, "%s: node in %s is not running (status from pid %" PRId32 ", last "
			"updated %s)\n", path, dir, st->pid, when);
	} else {
		const char *m = tdm_ctl_errmsg();
		fprintf(stderr, "%s: no node is running in %s: %s\n", path, dir,
			m != NULL ? m : tdm_strerror(rc));
	}
	return TDM_CTL_EXIT_ERROR;
}

int tdm_ctl_read_status(const char *path, const char *dir, struct tdm_status *st)
{
	int rc;

	memset(st, 0, sizeof(*st));
	tdm_err_clear();
	rc = tdm_status_read(dir, st);
	return rc == 0 ? 0 : tdm_ctl_not_running(path, dir, rc, st);
}

/* After a control request failed: the node is not running, or it refused or did not answer. */
int tdm_ctl_request_failed(const char *path, const char *dir, int rc)
{
	struct tdm_status st;
	const char *m = tdm_ctl_errmsg();
	char msg[1100];

	snprintf(msg, sizeof(msg), "%s", m != NULL ? m : tdm_strerror(rc));
	tdm_err_clear();
	int src = tdm_status_read(dir, &st);
	if (src != 0)
		return tdm_ctl_not_running(path, dir, src, &st);
	fprintf(stderr, "%s: the node in %s (pid %" PRId32 ") failed the request: %s\n", path,
		dir, st.pid, msg);
	return TDM_CTL_EXIT_ERROR;
}

static void status_help(void)
{
	fputs("Usage: " STATUS_PATH " (--dir DATA_DIR | --config FILE) [--json] [--watch SECONDS]\n"
	      "\n"
	      "Show a running node's status: role (primary, replica, candidate, witness), epoch,\n"
	      "the primary it follows, whether it is fenced; failover: the timeout, elections\n"
	      "run and won, when the last failover happened and how long the cluster was without\n"
	      "a primary, and a note on the last election or why there would be no failover;\n"
	      "commit level and quorum, its log positions (start, tail, durable, applied), write\n"
	      "rate, store size and digest, counters (commit timeouts, degrades, resyncs, dropped\n"
	      "frames, frames of an older epoch).\n"
	      "Then one row per peer from its heartbeats: role (\"never heard\" until its first\n"
	      "heartbeat), epoch, stream state, link, heartbeat age, where its log ends; and one\n"
	      "row per log stream (this primary's replicas, or this replica's primary): what was\n"
	      "sent, and for received/durable/applied how far the peer is behind the tail in\n"
	      "bytes and in time, its rate, resyncs and rewinds.\n"
	      "A multi-primary node shows instead of the failover lines: write_mode, whether it\n"
	      "takes writes (and why not), its hybrid logical clock (hlc), the max clock offset\n"
	      "and the records refused for it, conflicts (stale: incoming versions that lost,\n"
	      "those within the window; overwrites) and tombstones (held, purged, purge point).\n"
	      "Its stream rows are its own writes to each peer; then one row per peer for that\n"
	      "peer's writes as this node copies them: state, where they end, received/durable/\n"
	      "applied bytes behind that end, lag, the peer's clock offset, records refused,\n"
	      "conflicts its versions lost and won.\n"
	      "Read from the node's status file, so it works while the node is busy.\n"
	      "\n"
	      "Options:\n" TDM_CTL_TARGET_HELP
	      "  -j, --json           one JSON object with every field (numbers as numbers;\n"
	      "                       digest also as digest_hex; a peer never heard has role\n"
	      "                       and beat_age_ns null; mode, write_mode, writable, hlc\n"
	      "                       and the multi-primary counters, and per peer origin_*,\n"
	      "                       clock_offset_ns, clock_refused, conflicts_lost/won:\n"
	      "                       zero in primary-replica; an hlc may exceed 2^53); with\n"
	      "                       --watch, one per line\n"
	      "  -w, --watch SECONDS  print again every SECONDS (1..86400) until interrupted\n"
	      "  -h, --help           show this help\n"
	      "\n"
	      "Exit status: 0 done; 1 no node is running in DATA_DIR (the message says which\n"
	      "pid last ran there and when); 2 usage error.\n",
	      stdout);
}

/* One status: read and print. @return exit code. */
static int status_once(const char *dir, bool json, uint64_t watch)
{
	struct tdm_status st;

	if (tdm_ctl_read_status(STATUS_PATH, dir, &st) != 0)
		return TDM_CTL_EXIT_ERROR;
	if (json) {
		status_json(dir, &st);
		return TDM_CTL_EXIT_OK;
	}
	if (watch != 0) {
		char now[32];
		local_stamp(time(NULL), now, sizeof(now));
		printf("%s%s every %" PRIu64 "s, %s\n", isatty(STDOUT_FILENO) ? "\033[H\033[2J" :
		       "\n", STATUS_PATH, watch, now);
	}
	status_header(dir, &st);
	status_peers(&st);
	return TDM_CTL_EXIT_OK;
}

int tdm_ctl_status_run(int argc, char **argv)
{
	static const struct option opts[] = {
		TDM_CTL_TARGET_OPTS,
		{ "json", no_argument, NULL, 'j' },
		{ "watch", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct tdm_ctl_node_cmd cmd = {
		STATUS_PATH, ":d:c:hjw:", opts, status_help, NULL,
	};
	struct tdm_ctl_node_args a;
	int code = tdm_ctl_node_parse(&cmd, argc, argv, &a);

	if (code >= 0)
		return code;
	for (;;) {
		code = status_once(a.data_dir, a.json, a.watch);
		if (code != TDM_CTL_EXIT_OK || a.watch == 0)
			return code;
		if (fflush(stdout) != 0 || ferror(stdout))
			return TDM_CTL_EXIT_ERROR; /* main() says why */
		struct timespec ts = { .tv_sec = (time_t)a.watch };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
}

/* ---- get ---- */

static void get_help(void)
{
	fputs("Usage: " GET_PATH " (--dir DATA_DIR | --config FILE) [--hex] KEY\n"
	      "\n"
	      "Read KEY (the argument's bytes) from a running node's store: on a replica, what it\n"
	      "has applied. The value is printed on one line: printable ASCII as is, '\"' and '\\'\n"
	      "escaped, other bytes as \\xNN.\n"
	      "\n"
	      "Options:\n" TDM_CTL_TARGET_HELP
	      "  -x, --hex            print the value as hex digits instead\n"
	      "  -h, --help           show this help\n"
	      "\n"
	      "Exit status: 0 found; 1 no such key, or no node is running in DATA_DIR; 2 usage\n"
	      "error.\n",
	      stdout);
}

/* Ask for key; *val gets a malloc'd buffer of *vlen bytes. @return tdm_ctl_get's code. */
static int get_value(const char *dir, const char *key, uint8_t **val, uint32_t *vlen)
{
	uint32_t cap = GET_BUF;
	int rc;

	for (;;) {
		uint8_t *buf = malloc(cap);
		if (buf == NULL)
			return TDM_ERR(-ENOMEM, "no memory for a value of %u bytes", cap);
		rc = tdm_ctl_get(dir, key, (uint32_t)strlen(key), buf, cap, vlen);
		if (rc != 0 || *vlen <= cap) {
			*val = buf;
			return rc;
		}
		free(buf); /* the value is longer than the buffer: ask again with room for it */
		cap = *vlen;
	}
}

int tdm_ctl_get_run(int argc, char **argv)
{
	static const struct option opts[] = {
		TDM_CTL_TARGET_OPTS,
		{ "hex", no_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct tdm_ctl_node_cmd cmd = { GET_PATH, ":d:c:hx", opts, get_help, "KEY" };
	struct tdm_ctl_node_args a;
	uint8_t *val = NULL;
	uint32_t vlen = 0;
	int rc = tdm_ctl_node_parse(&cmd, argc, argv, &a);

	if (rc >= 0)
		return rc;
	if (a.operand[0] == '\0' || strlen(a.operand) > TDM_LOG_MAX_KEY)
		return tdm_ctl_usage_error(GET_PATH, "KEY must be 1..%u bytes", TDM_LOG_MAX_KEY);
	tdm_err_clear();
	rc = get_value(a.data_dir, a.operand, &val, &vlen);
	if (rc == 0 && a.hex) {
		for (uint32_t i = 0; i < vlen; i++)
			printf("%02x", val[i]);
		putchar('\n');
	} else if (rc == 0) {
		tdm_ctl_print_escaped(stdout, val, vlen, vlen);
		putchar('\n');
	}
	free(val);
	if (rc == TDM_ERR_NOT_FOUND) {
		fprintf(stderr, "%s: no key \"", GET_PATH);
		tdm_ctl_print_escaped(stderr, (const uint8_t *)a.operand, strlen(a.operand), 64);
		fprintf(stderr, "\" in the node's store (%s)\n", a.data_dir);
		return TDM_CTL_EXIT_ERROR;
	}
	return rc == 0 ? TDM_CTL_EXIT_OK : tdm_ctl_request_failed(GET_PATH, a.data_dir, rc);
}

/* ---- digest ---- */

static void digest_help(void)
{
	fputs("Usage: " DIGEST_PATH " (--dir DATA_DIR | --config FILE) [--json]\n"
	      "\n"
	      "Print the digest of a running node's store, with the applied position it belongs\n"
	      "to and the number of keys. Two nodes with equal positions and equal digests hold\n"
	      "the same contents.\n"
	      "\n"
	      "Options:\n" TDM_CTL_TARGET_HELP
	      "  -j, --json           one JSON object: dir, digest (a number), digest_hex,\n"
	      "                       applied, keys\n"
	      "  -h, --help           show this help\n"
	      "\n"
	      "Exit status: 0 done; 1 no node is running in DATA_DIR; 2 usage error.\n",
	      stdout);
}

int tdm_ctl_digest_run(int argc, char **argv)
{
	static const struct option opts[] = {
		TDM_CTL_TARGET_OPTS,
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct tdm_ctl_node_cmd cmd = {
		DIGEST_PATH, ":d:c:hj", opts, digest_help, NULL,
	};
	uint64_t digest = 0, applied = 0, keys = 0;
	struct tdm_ctl_node_args a;
	int rc = tdm_ctl_node_parse(&cmd, argc, argv, &a);

	if (rc >= 0)
		return rc;
	tdm_err_clear();
	if ((rc = tdm_ctl_digest(a.data_dir, &digest, &applied, &keys)) != 0)
		return tdm_ctl_request_failed(DIGEST_PATH, a.data_dir, rc);
	if (a.json) {
		fputs("{\"dir\":", stdout);
		tdm_ctl_json_str(stdout, a.data_dir, strlen(a.data_dir), false);
		printf(",\"digest\":%" PRIu64 ",\"digest_hex\":\"%016" PRIx64 "\",\"applied\":%"
		       PRIu64 ",\"keys\":%" PRIu64 "}\n", digest, digest, applied, keys);
	} else {
		printf("digest %016" PRIx64 "  applied %" PRIu64 "  keys %" PRIu64 "\n", digest,
		       applied, keys);
	}
	return TDM_CTL_EXIT_OK;
}
