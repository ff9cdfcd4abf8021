/*
 * tandemctl conflicts: the latest conflicts of a multi-primary node, newest first.
 *
 * A conflict is a write that lost last-writer-wins on (hlc, origin) against a write of another
 * node (apply/tdm_apply.h): STALE, the incoming version was older than the stored one and was
 * dropped; OVERWRITE, the stored version of another node, within the window
 * (max_clock_offset_ms), was replaced. The node keeps the latest per apply shard; the control
 * socket copies them out (tdm_ctl_conflicts) and the status file gives the totals.
 *
 * Exit status: 0 done (also for a primary-replica node, which has none, and says so); 1 the
 * node is not running or failed to answer; 2 usage error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "tandem.h"

#define CONFLICTS_PATH "tandemctl conflicts"
#define CONFLICTS_DEFAULT 20u

void tdm_ctl_hlc_str(uint64_t hlc, bool date, char *buf, size_t cap)
{
	uint64_t wall = tdm_hlc_wall(hlc);
	uint32_t logical = tdm_hlc_logical(hlc);
	time_t secs = (time_t)(wall / 1000000000u);
	char stamp[32], tick[16] = "";
	struct tm tm;

	localtime_r(&secs, &tm);
	strftime(stamp, sizeof(stamp), date ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm);
	if (logical != 0)
		snprintf(tick, sizeof(tick), "+%" PRIu32, logical);
	snprintf(buf, cap, "%s.%06" PRIu64 "%s", stamp, wall % 1000000000u / 1000u, tick);
}

static void conflicts_help(void)
{
	fputs("Usage: " CONFLICTS_PATH " (--dir DATA_DIR | --config FILE) [-n N] [--json]\n"
	      "\n"
	      "Show the latest conflicts of a running multi-primary node, newest first, after its\n"
	      "totals. A conflict is a write that lost last-writer-wins on (hlc, origin node):\n"
	      "  stale      the incoming version was older than the stored one: dropped\n"
	      "  overwrite  the stored version, another node's within the window\n"
	      "             (max_clock_offset_ms), was replaced by a newer one\n"
	      "Each row: when it was found (local time), the kind, whether the two versions were\n"
	      "within the window (concurrent writes; a stale one outside it came late), the key\n"
	      "(its first 32 bytes: printable ASCII as is, other bytes as \\xNN), the winner and\n"
	      "the loser (origin node @ hlc as local time of day, +N its logical count; (del): a\n"
	      "delete) and how much newer the winner is. A primary-replica node has one writer,\n"
	      "so no conflicts: the command says so.\n"
	      "\n"
	      "Options:\n" TDM_CTL_TARGET_HELP
	      "  -n, --limit N        at most N conflicts (1..4096, default 20); the node keeps\n"
	      "                       the latest 64 per apply worker\n"
	      "  -j, --json           one JSON object: dir, node_id, mode, stale,\n"
	      "                       stale_in_window, overwrites, and conflicts: an array of\n"
	      "                       {time_ns, kind, in_window, key (one character per byte,\n"
	      "                       U+0000..U+00FF), key_len, key_truncated, winner, loser:\n"
	      "                       {origin, hlc, deleted}}; an hlc may exceed 2^53\n"
	      "  -h, --help           show this help\n"
	      "\n"
	      "Exit status: 0 done; 1 no node is running in DATA_DIR, or it failed to answer;\n"
	      "2 usage error.\n",
	      stdout);
}

static const char *kind_name(uint8_t kind)
{
	return kind == TDM_STORE_CONFLICT_OVERWRITE ? "overwrite" :
	       kind == TDM_STORE_CONFLICT_STALE ? "stale" : "unknown";
}

/* "2 @ 12:00:03.123456+3 (del)" */
static void version_str(uint16_t origin, uint64_t hlc, bool deleted, char *buf, size_t cap)
{
	char t[48];

	tdm_ctl_hlc_str(hlc, false, t, sizeof(t));
	snprintf(buf, cap, "%u @ %s%s", origin, t, deleted ? " (del)" : "");
}

static void print_row(const struct tdm_store_conflict_rec *c)
{
	time_t secs = (time_t)(c->time_ns / 1000000000u);
	char stamp[24], winner[64], loser[64], by[24];
	struct tm tm;
	size_t klen = c->key_len < TDM_STORE_CONFLICT_KEY ? c->key_len : TDM_STORE_CONFLICT_KEY;

	localtime_r(&secs, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	printf("%s.%03" PRIu64 "  %-10s %-4s ", stamp, c->time_ns % 1000000000u / 1000000u,
	       kind_name(c->kind), c->flags & TDM_STORE_CF_IN_WINDOW ? "yes" : "no");
	putchar('"');
	tdm_ctl_print_escaped(stdout, c->key, klen, klen);
	printf("\"%s  ", c->key_len > klen ? "..." : "");
	version_str(c->winner_origin, c->winner_hlc, c->flags & TDM_STORE_CF_WINNER_DELETED,
		    winner, sizeof(winner));
	version_str(c->loser_origin, c->loser_hlc, c->flags & TDM_STORE_CF_LOSER_DELETED, loser,
		    sizeof(loser));
	tdm_ctl_human_ns(c->winner_hlc > c->loser_hlc ? c->winner_hlc - c->loser_hlc : 0, by,
			 sizeof(by));
	printf("%-30s %-30s %s\n", winner, loser, by);
}

static void print_table(const char *dir, const struct tdm_status *st,
			const struct tdm_store_conflict_rec *recs, int n)
{
	printf("node %u (%s): stale %" PRIu64 " (%" PRIu64 " in the window), overwrites %" PRIu64
	       "\n", st->node_id, dir, st->conflicts_stale, st->conflicts_stale_in_window,
	       st->conflicts_overwrites);
	if (n == 0) {
		printf("no conflicts recorded since the node started\n");
		return;
	}
	printf("the latest %d, newest first\n", n);
	printf("%-14s%-11s%-5s%-20s%-31s%-31s%s\n", "TIME", "KIND", "WIN", "KEY", "WINNER",
	       "LOSER", "NEWER BY");
	for (int i = 0; i < n; i++)
		print_row(&recs[i]);
}

static void json_version(const char *name, uint16_t origin, uint64_t hlc, bool deleted)
{
	printf(",\"%s\":{\"origin\":%u,\"hlc\":%" PRIu64 ",\"deleted\":%s}", name, origin, hlc,
	       deleted ? "true" : "false");
}

static void print_json(const char *dir, const struct tdm_status *st,
		       const struct tdm_store_conflict_rec *recs, int n)
{
	fputs("{\"dir\":", stdout);
	tdm_ctl_json_str(stdout, dir, strlen(dir), false);
	printf(",\"node_id\":%u,\"mode\":\"%s\",\"stale\":%" PRIu64 ",\"stale_in_window\":%" PRIu64
	       ",\"overwrites\":%" PRIu64 ",\"conflicts\":[", st->node_id,
	       st->mode == TDM_MODE_MULTI_PRIMARY ? "multi-primary" : "primary-replica",
	       st->conflicts_stale, st->conflicts_stale_in_window, st->conflicts_overwrites);
	for (int i = 0; i < n; i++) {
		const struct tdm_store_conflict_rec *c = &recs[i];
		size_t klen = c->key_len < TDM_STORE_CONFLICT_KEY ? c->key_len :
			      TDM_STORE_CONFLICT_KEY;
		printf("%s{\"time_ns\":%" PRIu64 ",\"kind\":\"%s\",\"in_window\":%s,\"key\":",
		       i != 0 ? "," : "", c->time_ns, kind_name(c->kind),
		       c->flags & TDM_STORE_CF_IN_WINDOW ? "true" : "false");
		tdm_ctl_json_str(stdout, c->key, klen, true);
		printf(",\"key_len\":%" PRIu32 ",\"key_truncated\":%s", c->key_len,
		       c->key_len > klen ? "true" : "false");
		json_version("winner", c->winner_origin, c->winner_hlc,
			     c->flags & TDM_STORE_CF_WINNER_DELETED);
		json_version("loser", c->loser_origin, c->loser_hlc,
			     c->flags & TDM_STORE_CF_LOSER_DELETED);
		putchar('}');
	}
	fputs("]}\n", stdout);
}

int tdm_ctl_conflicts_run(int argc, char **argv)
{
	static const struct option opts[] = {
		TDM_CTL_TARGET_OPTS,
		{ "limit", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct tdm_ctl_node_cmd cmd = {
		CONFLICTS_PATH, ":d:c:hn:j", opts, conflicts_help, NULL,
	};
	struct tdm_store_conflict_rec *recs;
	struct tdm_ctl_node_args a;
	struct tdm_status st;
	int n = 0, rc = tdm_ctl_node_parse(&cmd, argc, argv, &a);

	if (rc >= 0)
		return rc;
	if ((rc = tdm_ctl_read_status(CONFLICTS_PATH, a.data_dir, &st)) != 0)
		return rc;
	if (st.mode != TDM_MODE_MULTI_PRIMARY) {
		if (a.json)
			print_json(a.data_dir, &st, NULL, 0);
		else
			printf("node %u (%s) runs primary-replica: one node takes writes, so there "
			       "are no conflicts\n", st.node_id, a.data_dir);
		return TDM_CTL_EXIT_OK;
	}
	uint32_t cap = a.limit != 0 ? (uint32_t)a.limit : CONFLICTS_DEFAULT;
	if ((recs = calloc(cap, sizeof(*recs))) == NULL) {
		fprintf(stderr, "%s: out of memory for %u conflicts\n", CONFLICTS_PATH, cap);
		return TDM_CTL_EXIT_ERROR;
	}
	tdm_err_clear();
	rc = tdm_ctl_conflicts(a.data_dir, recs, (int)cap, &n);
	if (rc == 0 && a.json)
		print_json(a.data_dir, &st, recs, n);
	else if (rc == 0)
		print_table(a.data_dir, &st, recs, n);
	free(recs);
	return rc == 0 ? TDM_CTL_EXIT_OK : tdm_ctl_request_failed(CONFLICTS_PATH, a.data_dir, rc);
}
