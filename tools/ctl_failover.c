/*
 * tandemctl switchover|promote|cut|heal: failover by hand, and fault injection.
 *
 * switchover asks the primary to hand over to a replica (engine/election.c: writes pause, the
 * replica receives the whole log, the primary steps down and the replica wins an election at
 * once), then watches the old primary's status until it follows the new one. promote asks a
 * replica to run an election now and watches its status until it is primary. The engine
 * answers both requests at once; what happens next is only in the status file, which the node
 * refreshes every 100 ms, so the commands poll it (every 50 ms, for a bounded time).
 *
 * cut and heal cut or restore a node's links to its peers, both directions, on that node:
 * fault injection for tests and demos (a partition without root or netns).
 *
 * Exit status: 0 done; 1 the node is not running, refused the request, or the change did not
 * happen in time (stderr says which, with the node's failover note); 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "tandem.h"

#define SWITCHOVER_PATH "tandemctl switchover"
#define PROMOTE_PATH "tandemctl promote"
#define CUT_PATH "tandemctl cut"
#define HEAL_PATH "tandemctl heal"

#define MS 1000000ull
#define POLL_NS (50 * MS)              /* status file re-read this often while waiting */
#define SWITCHOVER_WAIT_MS 30000ull    /* at least; longer with a failover timeout over 2 s */
#define PROMOTE_WAIT_MS 5000ull        /* at least; 3 failover timeouts when longer */

/* ---- Helpers ---- */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nap(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * NODE or PEER: a node id, 1..65535 in decimal; "all" (0) when all_ok.
 * @return 0, or TDM_CTL_EXIT_USAGE after saying what is wrong.
 */
static int parse_node_id(const char *path, const char *what, const char *s, bool all_ok,
			 uint16_t *out)
{
	unsigned long v = 0;
	size_t n = strlen(s);

	if (all_ok && strcmp(s, "all") == 0) {
		*out = 0;
		return 0;
	}
	if (n != 0 && n <= 5 && strspn(s, "0123456789") == n)
		v = strtoul(s, NULL, 10);
	if (v < 1 || v > 65535)
		return tdm_ctl_usage_error(path, "%s: '%s' is not a node id (1..65535%s)", what, s,
					   all_ok ? ", or all" : "");
	*out = (uint16_t)v;
	return 0;
}

/* "note: ..." after a failure, when the node has one. */
static void print_note(const struct tdm_status *st)
{
	if (st->failover_note[0] != '\0')
		fprintf(stderr, "  note: %.*s\n", (int)sizeof(st->failover_note),
			st->failover_note);
}

/* "replica of node 2 (epoch 4)", "primary (epoch 4)", "candidate (epoch 3)". */
static void describe(const struct tdm_status *st, char *buf, size_t cap)
{
	const char *role = tdm_role_name((enum tdm_role)st->role);

	if (st->role == TDM_ROLE_REPLICA && st->primary_id != 0)
		snprintf(buf, cap, "%s of node %u (epoch %" PRIu32 ")", role, st->primary_id,
			 st->epoch);
	else
		snprintf(buf, cap, "%s (epoch %" PRIu32 ")", role, st->epoch);
}

/* ---- switchover ---- */

static void switchover_help(void)
{
	fputs("Usage: " SWITCHOVER_PATH " (--dir DATA_DIR | --config FILE) NODE\n"
	      "\n"
	      "Planned switchover: the primary (named by --dir or --config) hands over to the\n"
	      "replica NODE (its node id). The primary stops taking writes, waits until NODE has\n"
	      "received its whole log, steps down, and NODE wins an election at once: nothing\n"
	      "acknowledged at any commit level is lost. Writers see TDM_ERR_NOT_PRIMARY\n"
	      "meanwhile and write to NODE afterwards.\n"
	      "\n"
	      "The command then watches the old primary's status (every 50 ms, up to 30 s, or 13\n"
	      "failover timeouts + 5 s when that is longer) until it follows NODE, and prints\n"
	      "  switchover: node NODE is primary (epoch E) after X ms\n"
	      "When NODE cannot catch up in time the primary abandons the switchover and takes\n"
	      "writes again; the command prints why (the node's failover note).\n"
	      "\n"
	      "Options:\n" TDM_CTL_TARGET_HELP
	      "  -h, --help           show this help\n"
	      "\n"
	      "Exit status: 0 NODE is primary; 1 the node is not running, refused (it is not the\n"
	      "primary: the message names the primary; NODE is not a streaming replica; a\n"
	      "switchover is already running), abandoned the switchover, or the handover did not\n"
	      "finish in time; 2 usage error.\n",
	      stdout);
}

/* Watch the old primary until it follows `to`, abandons, or time is up. @return exit code. */
static int switchover_wait(const char *dir, const struct tdm_status *before, uint16_t to,
			   uint64_t t0)
{
	uint64_t fto = before->failover_timeout_ms, limit_ms = 13 * fto + 5000;
	struct tdm_status st;
	char now[96];

	if (limit_ms < SWITCHOVER_WAIT_MS)
		limit_ms = SWITCHOVER_WAIT_MS;
	for (;;) {
		nap(POLL_NS);
		if (tdm_ctl_read_status(SWITCHOVER_PATH, dir, &st) != 0)
			return TDM_CTL_EXIT_ERROR;
		uint64_t ms = (mono_ns() - t0) / MS;
		if (st.role == TDM_ROLE_REPLICA && st.primary_id == to) {
			printf("switchover: node %u is primary (epoch %" PRIu32 ") after %" PRIu64
			       " ms\n", to, st.epoch, ms);
			return TDM_CTL_EXIT_OK;
		}
		if (st.role == TDM_ROLE_REPLICA && st.primary_id != 0 && st.primary_id != to &&
		    st.primary_id != st.node_id) {
			fprintf(stderr, "%s: node %u became primary instead of node %u (epoch %"
				PRIu32 ", after %" PRIu64 " ms)\n", SWITCHOVER_PATH, st.primary_id,
				to, st.epoch, ms);
			print_note(&st);
			return TDM_CTL_EXIT_ERROR;
		}
		if (st.role == TDM_ROLE_PRIMARY && st.epoch > before->epoch) {
			fprintf(stderr, "%s: node %u did not take over: node %u was elected again "
				"(epoch %" PRIu32 ", after %" PRIu64 " ms)\n", SWITCHOVER_PATH, to,
				st.node_id, st.epoch, ms);
			print_note(&st);
			return TDM_CTL_EXIT_ERROR;
		}
		if (st.role == TDM_ROLE_PRIMARY && strstr(st.failover_note, "abandoned") != NULL &&
		    strncmp(st.failover_note, before->failover_note,
			    sizeof(st.failover_note)) != 0) {
			fprintf(stderr, "%s: %.*s; node %u is the primary again and takes writes "
				"(after %" PRIu64 " ms)\n", SWITCHOVER_PATH,
				(int)sizeof(st.failover_note), st.failover_note, st.node_id, ms);
			return TDM_CTL_EXIT_ERROR;
		}
		if (ms >= limit_ms) {
			describe(&st, now, sizeof(now));
			fprintf(stderr, "%s: node %u did not take over within %" PRIu64
				" ms; node %u is %s\n", SWITCHOVER_PATH, to, ms, st.node_id, now);
			print_note(&st);
			return TDM_CTL_EXIT_ERROR;
		}
	}
}

int tdm_ctl_switchover_run(int argc, char **argv)
{
	static const struct option opts[] = {
		TDM_CTL_TARGET_OPTS,
		{ NULL, 0, NULL, 0 },
	};
	static const struct tdm_ctl_node_cmd cmd = {
		SWITCHOVER_PATH, ":d:c:h", opts, switchover_help, "NODE",
	};
	struct tdm_ctl_node_args a;
	struct tdm_status before;
	uint16_t to = 0;
	int rc = tdm_ctl_node_parse(&cmd, argc, argv, &a);

	if (rc >= 0)
		return rc;
	if (parse_node_id(SWITCHOVER_PATH, "NODE", a.operand, false, &to) != 0)
		return TDM_CTL_EXIT_USAGE;
	if (tdm_ctl_read_status(SWITCHOVER_PATH, a.data_dir, &before) != 0)
		return TDM_CTL_EXIT_ERROR;
	if (before.node_id == to) {
		fprintf(stderr, "%s: node %u is the node in %s itself: give the id of the replica "
			"that should take over\n", SWITCHOVER_PATH, to, a.data_dir);
		return TDM_CTL_EXIT_ERROR;
	}
	uint64_t t0 = mono_ns();
	tdm_err_clear();
	if ((rc = tdm_ctl_switchover(a.data_dir, to)) != 0)
		return tdm_ctl_request_failed(SWITCHOVER_PATH, a.data_dir, rc);
	return switchover_wait(a.data_dir, &before, to, t0);
}

/* ---- promote ---- */

static void promote_help(void)
{
	fputs("Usage: " PROMOTE_PATH " (--dir DATA_DIR | --config FILE) [--force]\n"
	      "\n"
	      "Manual failover: the replica (named by --dir or --config) runs an election now,\n"
	      "even if the primary is alive (a live primary steps down when it votes for it).\n"
	      "Use it when the primary is gone and automatic failover is off (failover_timeout_ms\n"
	      "= 0) or cannot decide. The node refuses while a reachable node has a more complete\n"
	      "log, because the promotion would lose that node's newer records; the message names\n"
	      "the node to promote instead.\n"
	      "\n"
	      "The command then watches the node's status (every 50 ms, up to 5 s, or 3 failover\n"
	      "timeouts when that is longer) and prints\n"
	      "  promote: node N is primary (epoch E) after X ms\n"
	      "or, when the election is lost or does not finish in time, the node's failover\n"
	      "note.\n"
	      "\n"
	      "Options:\n" TDM_CTL_TARGET_HELP
	      "  -f, --force          run even if another node has a more complete log: records\n"
	      "                       only that node has are lost (moved aside when it rejoins)\n"
	      "  -h, --help           show this help\n"
	      "\n"
	      "Exit status: 0 the node is primary; 1 the node is not running, refused (already\n"
	      "primary, a witness, resyncing, a more complete log elsewhere), lost the election,\n"
	      "or did not become primary in time; 2 usage error.\n",
	      stdout);
}

/* Watch the node until it is primary, loses its election, or time is up. @return exit code. */
static int promote_wait(const char *dir, const struct tdm_status *before, uint64_t t0)
{
	uint64_t limit_ms = 3 * before->failover_timeout_ms;
	struct tdm_status st;
	char now[96];

	if (limit_ms < PROMOTE_WAIT_MS)
		limit_ms = PROMOTE_WAIT_MS;
	for (;;) {
		nap(POLL_NS);
		if (tdm_ctl_read_status(PROMOTE_PATH, dir, &st) != 0)
			return TDM_CTL_EXIT_ERROR;
		uint64_t ms = (mono_ns() - t0) / MS;
		if (st.role == TDM_ROLE_PRIMARY) {
			printf("promote: node %u is primary (epoch %" PRIu32 ") after %" PRIu64
			       " ms\n", st.node_id, st.epoch, ms);
			return TDM_CTL_EXIT_OK;
		}
		/* Its election ended (it is no longer a candidate) without winning. */
		bool lost = st.elections > before->elections && st.role == TDM_ROLE_REPLICA;
		if (lost || ms >= limit_ms) {
			describe(&st, now, sizeof(now));
			fprintf(stderr, "%s: node %u %s after %" PRIu64 " ms; it is %s\n",
				PROMOTE_PATH, st.node_id, lost ? "was not elected" : "is not primary",
				ms, now);
			print_note(&st);
			return TDM_CTL_EXIT_ERROR;
		}
	}
}

int tdm_ctl_promote_run(int argc, char **argv)
{
	static const struct option opts[] = {
		TDM_CTL_TARGET_OPTS,
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct tdm_ctl_node_cmd cmd = {
		PROMOTE_PATH, ":d:c:hf", opts, promote_help, NULL,
	};
	struct tdm_ctl_node_args a;
	struct tdm_status before;
	int rc = tdm_ctl_node_parse(&cmd, argc, argv, &a);

	if (rc >= 0)
		return rc;
	if (tdm_ctl_read_status(PROMOTE_PATH, a.data_dir, &before) != 0)
		return TDM_CTL_EXIT_ERROR;
	uint64_t t0 = mono_ns();
	tdm_err_clear();
	if ((rc = tdm_ctl_promote(a.data_dir, a.force)) != 0)
		return tdm_ctl_request_failed(PROMOTE_PATH, a.data_dir, rc);
	return promote_wait(a.data_dir, &before, t0);
}

/* ---- cut, heal ---- */

static void cut_help(void)
{
	fputs("Usage: " CUT_PATH " (--dir DATA_DIR | --config FILE) PEER|all\n"
	      "\n"
	      "Fault injection, for tests and demos: the node (named by --dir or --config) drops\n"
	      "every frame to and from PEER (its node id), or to and from every peer with 'all',\n"
	      "as if the network between them were cut. Only that node's side is cut: cutting a\n"
	      "primary from all its peers partitions it from the cluster (it fences itself, and\n"
	      "the others elect a new primary). 'tandemctl heal' restores the links.\n"
	      "\n"
	      "Options:\n" TDM_CTL_TARGET_HELP
	      "  -h, --help           show this help\n"
	      "\n"
	      "Exit status: 0 done; 1 the node is not running, PEER is not one of its peers, or\n"
	      "the node refused; 2 usage error.\n",
	      stdout);
}

static void heal_help(void)
{
	fputs("Usage: " HEAL_PATH " (--dir DATA_DIR | --config FILE) PEER|all\n"
	      "\n"
	      "Fault injection, for tests and demos: restore the node's links to PEER (or to\n"
	      "every peer with 'all') that 'tandemctl cut' cut.\n"
	      "\n"
	      "Options:\n" TDM_CTL_TARGET_HELP
	      "  -h, --help           show this help\n"
	      "\n"
	      "Exit status: 0 done; 1 the node is not running, PEER is not one of its peers, or\n"
	      "the node refused; 2 usage error.\n",
	      stdout);
}

/* PEER must be one of the node's peers (its status lists every member). @return exit code. */
static int check_peer(const char *path, const struct tdm_status *st, uint16_t peer)
{
	if (peer == 0)
		return TDM_CTL_EXIT_OK;
	for (int i = 0; i < st->n_peers && i < TDM_MAX_PEERS; i++)
		if (st->peers[i].node_id == peer)
			return TDM_CTL_EXIT_OK;
	fprintf(stderr, "%s: node %u is not a peer of node %u (its peers:", path, peer,
		st->node_id);
	for (int i = 0; i < st->n_peers && i < TDM_MAX_PEERS; i++)
		fprintf(stderr, " %u", st->peers[i].node_id);
	fprintf(stderr, "%s)\n", st->n_peers > 0 ? "" : " none");
	return TDM_CTL_EXIT_ERROR;
}

static int cut_or_heal(int argc, char **argv, bool cut)
{
	static const struct option opts[] = {
		TDM_CTL_TARGET_OPTS,
		{ NULL, 0, NULL, 0 },
	};
	static const struct tdm_ctl_node_cmd cut_cmd = { CUT_PATH, ":d:c:h", opts, cut_help,
							 "PEER" };
	static const struct tdm_ctl_node_cmd heal_cmd = { HEAL_PATH, ":d:c:h", opts, heal_help,
							  "PEER" };
	const struct tdm_ctl_node_cmd *cmd = cut ? &cut_cmd : &heal_cmd;
	struct tdm_ctl_node_args a;
	struct tdm_status st;
	uint16_t peer = 0;
	char whom[32];
	int rc = tdm_ctl_node_parse(cmd, argc, argv, &a);

	if (rc >= 0)
		return rc;
	if (parse_node_id(cmd->path, "PEER", a.operand, true, &peer) != 0)
		return TDM_CTL_EXIT_USAGE;
	if (tdm_ctl_read_status(cmd->path, a.data_dir, &st) != 0)
		return TDM_CTL_EXIT_ERROR;
	if ((rc = check_peer(cmd->path, &st, peer)) != 0)
		return rc;
	tdm_err_clear();
	if ((rc = tdm_ctl_cut(a.data_dir, peer, cut)) != 0)
		return tdm_ctl_request_failed(cmd->path, a.data_dir, rc);
	if (peer != 0)
		snprintf(whom, sizeof(whom), "node %u", peer);
	else
		snprintf(whom, sizeof(whom), "every peer");
	if (cut)
		printf("cut: node %u's links to %s are cut, both directions (fault injection; "
		       "'tandemctl heal' restores them)\n", st.node_id, whom);
	else
		printf("heal: node %u's links to %s are restored\n", st.node_id, whom);
	return TDM_CTL_EXIT_OK;
}

int tdm_ctl_cut_run(int argc, char **argv)
{
	return cut_or_heal(argc, argv, true);
}

int tdm_ctl_heal_run(int argc, char **argv)
{
	return cut_or_heal(argc, argv, false);
}
