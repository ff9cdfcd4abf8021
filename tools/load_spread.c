/*
 * tandem-load --spread: load on every node of a multi-primary cluster at once.
 *
 * One writer per --attach node, each tandem_load.c's run in a thread of its own (it paces,
 * waits and measures as a single run does), its keys drawn so that the first --shared percent
 * of the key space is the same keys on every node, where writes conflict, and the rest is the
 * node's own (tdm_load_spread_key). The report has each node's figures and the total: counts
 * added, latency histograms merged, over the longest node's time.
 *
 * --verify: once the writers have stopped, wait until every node has applied every node's
 * writes (its own applied position, and each peer row's origin_applied, have reached that
 * node's tail as read after the stop), then compare every node's digest (asked again for a
 * while when they differ) and report each node's conflict counters from its status.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "load_run.h"
#include "tandem.h"

#define CONVERGE_NS 60000000000ull /**< --verify: wait this long for every write everywhere */
#define POLL_NS 50000000ull        /**< --verify: status and digests asked again this often */
#define DIGEST_TRIES 40            /**< --verify: digests asked this often while they differ */
#define SETTLE_POLLS 5             /**< --verify: before the counters, over 2 status intervals */

/** One attached node: its writer, and what --verify finds there. */
struct spread_node {
	struct tdm_load_run *w;
	const char *dir;
	uint16_t id;
	pthread_t thread;
	bool started;
	int rc;                      /**< the writer's exit status */
	struct tdm_load_figures f;   /**< its figures, after the run */
	uint64_t tail;               /**< --verify: its log's end after the writers stopped */
	struct tdm_status st;        /**< --verify: its status once converged */
	uint64_t digest, applied, keys;
};

struct spread {
	const struct tdm_load_opts *o;
	struct spread_node *nodes;
	int n;
	struct tdm_load_figures total;
	/* --verify */
	const char *verify_error;    /**< why it failed; NULL: it did not (or did not run) */
	double converge_s;           /**< from the writers' stop until every write was everywhere */
	bool digests_equal;
};

/* Sleep POLL_NS (a signal may cut it short: the caller checks its deadline anyway). */
static void nap(void)
{
	struct timespec ts = { 0, (long)POLL_NS };

	nanosleep(&ts, NULL);
}

/* ---- The writers ---- */

static void *writer_main(void *arg)
{
	struct spread_node *sn = arg;

	sn->rc = tdm_load_writer_run(sn->w);
	return NULL;
}

static void add_figures(struct tdm_load_figures *t, const struct tdm_load_figures *f)
{
	t->secs = f->secs > t->secs ? f->secs : t->secs;
	t->n.writes += f->n.writes;
	t->n.deletes += f->n.deletes;
	t->n.bytes += f->n.bytes;
	t->n.failed += f->n.failed;
	t->n.degraded += f->n.degraded;
	t->n.backpressure += f->n.backpressure;
	t->n.no_primary += f->n.no_primary;
	t->unsent += f->unsent;
	tdm_load_hist_merge(&t->hist, &f->hist);
}

static void print_start(const struct spread *sp)
{
	const struct tdm_load_opts *o = sp->o;
	uint64_t shared = o->keys * o->shared_pct / 100;
	char load[96];

	tdm_load_writer_describe(sp->nodes[0].w, load, sizeof(load));
	fprintf(stderr, "tandem-load: --spread over %d nodes (", sp->n);
	for (int i = 0; i < sp->n; i++)
		fprintf(stderr, "%s%u", i != 0 ? " " : "", (unsigned)sp->nodes[i].id);
	fprintf(stderr, "), each: %s, pipeline %u, ", load, o->pipeline);
	if (o->count != 0)
		fprintf(stderr, "%llu writes", (unsigned long long)o->count);
	else
		fprintf(stderr, "%g s", o->duration);
	fprintf(stderr, "; of %llu %s keys %u %% shared (%llu), the rest each node's own\n",
		(unsigned long long)o->keys, o->dist == TDM_LOAD_DIST_ZIPF ? "zipf" : "uniform",
		o->shared_pct, (unsigned long long)shared);
}

/* Set up a writer per node, run them all, gather their figures. @return exit status. */
static int run_writers(struct spread *sp)
{
	int rc = 0;

	for (int i = 0; i < sp->n; i++) {
		struct spread_node *sn = &sp->nodes[i];
		sn->dir = sp->o->attach_dirs[i];
		if ((rc = tdm_load_writer_create(sp->o, i, &sn->w)) != 0)
			return rc;
		sn->id = tdm_load_writer_node(sn->w);
	}
	if (!sp->o->quiet)
		print_start(sp);
	for (int i = 0; i < sp->n; i++) {
		struct spread_node *sn = &sp->nodes[i];
		if (pthread_create(&sn->thread, NULL, writer_main, sn) != 0) {
			fprintf(stderr, "tandem-load: --spread: cannot start a thread for node %u\n",
				(unsigned)sn->id);
			sn->rc = rc = EXIT_FAILURE;
			break;
		}
		sn->started = true;
	}
	tdm_load_hist_reset(&sp->total.hist);
	for (int i = 0; i < sp->n; i++) {
		struct spread_node *sn = &sp->nodes[i];
		if (!sn->started)
			continue;
		pthread_join(sn->thread, NULL);
		tdm_load_writer_figures(sn->w, &sn->f);
		add_figures(&sp->total, &sn->f);
		rc = rc != 0 ? rc : sn->rc;
	}
	return rc;
}

/* ---- --verify ---- */

/* Whether node a has applied everything every node wrote before the stop. */
static bool caught_up(const struct spread *sp, const struct spread_node *a)
{
	if (a->st.applied < a->tail)
		return false;
	for (int i = 0; i < a->st.n_peers && i < TDM_MAX_PEERS; i++) {
		const struct tdm_peer_status *p = &a->st.peers[i];
		uint64_t end = p->origin_sent; /* a peer not attached: its end as it last said */
		for (int j = 0; j < sp->n; j++)
			end = sp->nodes[j].id == p->node_id ? sp->nodes[j].tail : end;
		if (p->origin_applied < end)
			return false;
	}
	return true;
}

/* Read every node's status into nodes[].st. @return 0 or the first error (said). */
static int read_all(struct spread *sp)
{
	for (int i = 0; i < sp->n; i++) {
		struct spread_node *sn = &sp->nodes[i];
		int rc;
		tdm_err_clear();
		if ((rc = tdm_status_read(sn->dir, &sn->st)) != 0) {
			fprintf(stderr, "tandem-load: --verify: node %u (%s): %s\n", (unsigned)sn->id,
				sn->dir, tdm_ctl_errmsg() != NULL ? tdm_ctl_errmsg() : tdm_strerror(rc));
			return rc;
		}
	}
	return 0;
}

/* Wait until every node has applied every write made before the stop. @return 0 or -1. */
static int converge(struct spread *sp)
{
	uint64_t t0 = tdm_load_now_ns();
	bool done = false;

	if (read_all(sp) != 0)
		return -1;
	for (int i = 0; i < sp->n; i++)
		sp->nodes[i].tail = sp->nodes[i].st.tail;
	while (!done) {
		done = true;
		for (int i = 0; i < sp->n && done; i++)
			done = caught_up(sp, &sp->nodes[i]);
		if (done)
			break;
		if (tdm_load_now_ns() - t0 >= CONVERGE_NS) {
			sp->verify_error = "some node did not apply every node's writes in time";
			return -1;
		}
		nap();
		if (read_all(sp) != 0)
			return -1;
	}
	sp->converge_s = (double)(tdm_load_now_ns() - t0) / 1e9;
	return 0;
}

/* Every node's digest, asked again while they differ (tombstones may still be purged). */
static int compare_digests(struct spread *sp)
{
	for (int tries = 0; tries < DIGEST_TRIES; tries++) {
		sp->digests_equal = true;
		for (int i = 0; i < sp->n; i++) {
			struct spread_node *sn = &sp->nodes[i];
			int rc;
			tdm_err_clear();
			rc = tdm_ctl_digest(sn->dir, &sn->digest, &sn->applied, &sn->keys);
			if (rc != 0) {
				fprintf(stderr, "tandem-load: --verify: digest of node %u (%s): %s\n",
					(unsigned)sn->id, sn->dir, tdm_ctl_errmsg() != NULL ?
					tdm_ctl_errmsg() : tdm_strerror(rc));
				sp->verify_error = "a node did not give its digest";
				return -1;
			}
			sp->digests_equal &= sn->digest == sp->nodes[0].digest;
		}
		if (sp->digests_equal)
			break;
		nap();
	}
	if (!sp->digests_equal)
		sp->verify_error = "the digests differ";
	for (int i = 0; i < SETTLE_POLLS; i++)
		nap(); /* the counters in a status published after the last apply */
	return read_all(sp) == 0 && sp->digests_equal ? 0 : -1;
}

static int verify(struct spread *sp)
{
	if (converge(sp) != 0) {
		if (sp->verify_error == NULL)
			sp->verify_error = "a node's status could not be read";
		return -1;
	}
	return compare_digests(sp);
}

/* ---- Report ---- */

static void print_verify_table(const struct spread *sp)
{
	if (sp->verify_error != NULL)
		printf("verify: FAILED: %s\n", sp->verify_error);
	else
		printf("verify: every node applied every node's writes %.2f s after the stop; "
		       "digests equal on %d nodes: %016" PRIx64 " (%" PRIu64 " keys)\n",
		       sp->converge_s, sp->n, sp->nodes[0].digest, sp->nodes[0].keys);
	for (int i = 0; i < sp->n; i++) {
		const struct spread_node *sn = &sp->nodes[i];
		const struct tdm_status *st = &sn->st;
		printf("  node %u: digest %016" PRIx64 "  keys %" PRIu64 "  conflicts stale %" PRIu64
		       " (%" PRIu64 " in the window), overwrites %" PRIu64 "; clock refused %" PRIu64
		       "; tombstones %" PRIu64 " (%" PRIu64 " purged)\n", (unsigned)sn->id,
		       sn->digest, sn->keys, st->conflicts_stale, st->conflicts_stale_in_window,
		       st->conflicts_overwrites, st->clock_refused, st->tombstones,
		       st->tombstones_purged);
	}
}

static void print_table(const struct spread *sp, bool verified)
{
	char load[96];

	tdm_load_writer_describe(sp->nodes[0].w, load, sizeof(load));
	printf("tandem-load --spread: %d nodes, each %s; %u %% of %llu keys shared; stopped by "
	       "%s\n", sp->n, load, sp->o->shared_pct, (unsigned long long)sp->o->keys,
	       tdm_load_writer_stopped(sp->nodes[0].w));
	for (int i = 0; i < sp->n; i++) {
		const char *why = tdm_load_writer_stopped(sp->nodes[i].w);
		printf("  node %u (%s)", (unsigned)sp->nodes[i].id, sp->nodes[i].dir);
		if (strcmp(why, tdm_load_writer_stopped(sp->nodes[0].w)) != 0)
			printf(", stopped by %s", why);
		putchar('\n');
		tdm_load_figures_table(&sp->nodes[i].f, "    ", false);
	}
	printf("  total\n");
	tdm_load_figures_table(&sp->total, "    ", false);
	if (verified)
		print_verify_table(sp);
}

static void print_verify_json(const struct spread *sp)
{
	printf(",\"verify\":{\"ok\":%s,\"error\":", sp->verify_error == NULL ? "true" : "false");
	if (sp->verify_error != NULL)
		tdm_load_json_str(sp->verify_error);
	else
		fputs("null", stdout);
	printf(",\"converge_s\":%.3f,\"digests_equal\":%s,\"nodes\":[", sp->converge_s,
	       sp->digests_equal ? "true" : "false");
	for (int i = 0; i < sp->n; i++) {
		const struct spread_node *sn = &sp->nodes[i];
		const struct tdm_status *st = &sn->st;
		printf("%s{\"node_id\":%u,\"digest\":%" PRIu64 ",\"digest_hex\":\"%016" PRIx64 "\","
		       "\"keys\":%" PRIu64 ",\"applied\":%" PRIu64 ",\"conflicts_stale\":%" PRIu64
		       ",\"conflicts_stale_in_window\":%" PRIu64 ",\"conflicts_overwrites\":%" PRIu64
		       ",\"clock_refused\":%" PRIu64 ",\"tombstones\":%" PRIu64
		       ",\"tombstones_purged\":%" PRIu64 "}", i != 0 ? "," : "", (unsigned)sn->id,
		       sn->digest, sn->digest, sn->keys, sn->applied, st->conflicts_stale,
		       st->conflicts_stale_in_window, st->conflicts_overwrites, st->clock_refused,
		       st->tombstones, st->tombstones_purged);
	}
	fputs("]}", stdout);
}

/* The single run's object (its setup: writer 0's), each node's figures, the total's figures
 * as the top level's, and --verify's findings. */
static void print_json(const struct spread *sp, bool verified)
{
	tdm_load_writer_json_setup(sp->nodes[0].w);
	printf(",\"spread\":true,\"shared_pct\":%u,\"shared_keys\":%llu,\"nodes\":[",
	       sp->o->shared_pct, (unsigned long long)(sp->o->keys * sp->o->shared_pct / 100));
	for (int i = 0; i < sp->n; i++) {
		const struct spread_node *sn = &sp->nodes[i];
		printf("%s{\"node_id\":%u,\"dir\":", i != 0 ? "," : "", (unsigned)sn->id);
		tdm_load_json_str(sn->dir);
		printf(",\"seed\":%llu,\"stopped\":\"%s\",", (unsigned long long)(sp->o->seed + i),
		       tdm_load_writer_stopped(sn->w));
		tdm_load_figures_json(&sn->f);
		putchar('}');
	}
	fputs("],", stdout);
	tdm_load_figures_json(&sp->total);
	if (verified)
		print_verify_json(sp);
	fputs("}\n", stdout);
}

int tdm_load_spread_main(const struct tdm_load_opts *o)
{
	struct spread sp = { .o = o, .n = o->n_attach };
	int rc;

	sp.nodes = calloc((size_t)sp.n, sizeof(*sp.nodes));
	if (sp.nodes == NULL) {
		fprintf(stderr, "tandem-load: out of memory\n");
		return EXIT_FAILURE;
	}
	rc = run_writers(&sp);
	if (rc == 0 || sp.nodes[sp.n - 1].started) {
		bool verified = rc == 0 && o->verify;
		if (verified && verify(&sp) != 0)
			rc = EXIT_FAILURE;
		if (o->json)
			print_json(&sp, verified);
		else
			print_table(&sp, verified);
	}
	for (int i = 0; i < sp.n; i++)
		tdm_load_writer_destroy(sp.nodes[i].w);
	free(sp.nodes);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("tandem-load: writing the report");
		rc = EXIT_FAILURE;
	}
	return rc;
}
