/*
 * Multi-primary end to end: three real tandemd processes in a full mesh (tests/tcluster.c) on
 * one transport (argv[1]: udp or dpdk), every node written to by this process through its own
 * attached handle, from one thread per node so the nodes' writes are concurrent.
 *
 *   load        100k operations per node (puts, 1% deletes, 10% on keys all nodes share),
 *               pipelined at `memory`; conflicts were counted
 *   partition   one node cut off while all three keep writing (shared keys too), then healed
 *   restart     a node that wrote is killed (-9) while the others write at `durable`, then
 *               restarted: it resumes every origin's stream (no full resync), writes again
 *   crash       a node killed (-9) while it writes: its writes acknowledged at `local` survive,
 *               the ones in flight may go, and every node converges to what its log holds
 *   delete      deletes against concurrent puts of the same keys from the other nodes;
 *               tombstones are counted, then purged once every origin has passed them
 *   clock       one node's clock 2 s ahead (max offset 500 ms): its records are refused (counted
 *               per peer), then accepted once the others' clocks catch up; nothing lost
 *   majority    write_mode = majority: a node cut off from both peers refuses writes (the
 *               message says why) while the other two accept; after healing it accepts again
 *
 * Every case ends in tmulti_check_converged (tests/tmulti.c): after quiescence the expected
 * state is merged from every node's own log on disk, which must hold exactly the writes the
 * node accepted; every node must hold that state (digest, key count, every key's value), and
 * every copy of every origin the origin's records at their positions. Nothing asserts a time;
 * waits are bounded by TC_WAIT_S.
 */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tassert.h"
#include "tcluster.h"
#include "tmulti.h"

#define NODES TMULTI_NODES
#define KEY_CAP TMULTI_KEY_CAP
#define VAL_CAP TMULTI_VAL_CAP

static const char *tandemd;
static enum tdm_dp_backend backend;
static struct tc_cluster *current; /* destroyed by teardown, also after a failed assertion */

static struct tmulti_wlog issued[NODES]; /* what each node accepted */

static int teardown(void **state)
{
	if (current)
		tc_destroy(current);
	current = NULL;
	for (int i = 0; i < NODES; i++) {
		free(issued[i].v);
		memset(&issued[i], 0, sizeof(issued[i]));
	}
	return 0;
}

static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- Writers: one thread per node ---- */

struct job;
/** Choose the k-th operation of a job: its key and whether it is a delete. */
typedef void (*pick_fn)(struct job *j, uint32_t k, char *key, uint8_t *klen, bool *del);

struct job {
	struct tc_cluster *c;
	int node;              /**< index of the node written to */
	uint32_t count;        /**< operations to issue */
	pick_fn pick;          /**< NULL: pick_mixed */
	uint32_t shared_keys;  /**< pick_mixed: "s%06u", written by every node */
	uint32_t private_keys; /**< pick_mixed: "p<id>-%06u", this node's own */
	int shared_pct;        /**< pick_mixed: share of operations on shared keys */
	int del_permille;      /**< pick_mixed: share of deletes */
	enum tdm_level level;  /**< memory: no waits; else each window waits for its last write */
	int window;            /**< writes in flight per wait (level above memory) */
	uint64_t rng;          /**< xorshift state */
	size_t acked;          /**< writes acknowledged at the level so far (read by main) */
	int rc;                /**< 0, or the first failure (err says what) */
	char err[300];
	pthread_t th;
};

static uint64_t rnd(struct job *j)
{
	j->rng ^= j->rng << 13;
	j->rng ^= j->rng >> 7;
	j->rng ^= j->rng << 17;
	return j->rng;
}

static void pick_mixed(struct job *j, uint32_t k, char *key, uint8_t *klen, bool *del)
{
	uint64_t r = rnd(j);
	bool shared = (int)(r % 100) < j->shared_pct;
	uint32_t idx = (uint32_t)((r >> 8) % (shared ? j->shared_keys : j->private_keys));

	(void)k;
	*del = (int)((r >> 40) % 1000) < j->del_permille;
	if (shared)
		*klen = (uint8_t)snprintf(key, KEY_CAP, "s%06u", idx);
	else
		*klen = (uint8_t)snprintf(key, KEY_CAP, "p%d-%06u", j->node + 1, idx);
}

static void job_init(struct job *j, struct tc_cluster *c, int node, uint32_t count)
{
	memset(j, 0, sizeof(*j));
	j->c = c;
	j->node = node;
	j->count = count;
	j->shared_keys = 1000;
	j->private_keys = 20000;
	j->shared_pct = 10;
	j->del_permille = 10;
	j->level = TDM_LEVEL_MEMORY;
	j->window = 32;
	j->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(node + 1) + issued[node].next_seq;
}

static void job_fail(struct job *j, int rc, const char *what)
{
	snprintf(j->err, sizeof(j->err), "node %d: %s: %d (%s): %s", j->node + 1, what, rc,
		 tdm_strerror(rc), tdm_errmsg());
	__atomic_store_n(&j->rc, rc, __ATOMIC_RELEASE); /* wait_progress stops on it */
}

/* One put or delete, retried while the ring is full (bounded). */
static int write_one(struct tdm_node *h, const struct tmulti_write *op, int node, uint64_t *end)
{
	char val[VAL_CAP];
	uint32_t vlen = tmulti_value(node, op->seq, val);
	uint64_t deadline = 0;
	int rc;

	for (uint64_t tries = 0;; tries++) {
		rc = op->del ? tdm_delete(h, op->key, op->klen, end)
			     : tdm_put(h, op->key, op->klen, val, vlen, end);
		if (rc != TDM_ERR_BACKPRESSURE)
			return rc;
		if (tries % 1024 == 0) {
			uint64_t now = mono_ns();

			if (!deadline)
				deadline = now + (uint64_t)TC_WAIT_S * 1000000000ull;
			else if (now > deadline)
				return rc;
		}
		sched_yield();
	}
}

static void *job_run(void *arg)
{
	struct job *j = arg;
	struct tmulti_wlog *w = &issued[j->node];
	pick_fn pick = j->pick ? j->pick : pick_mixed;
	struct tdm_node *h;
	uint64_t end = 0;
	int rc = tdm_node_attach(j->c->data[j->node], &h);

	if (rc) {
		job_fail(j, rc, "attach");
		return NULL;
	}
	for (uint32_t k = 0; k < j->count && !j->rc;) {
		for (int f = 0; k < j->count && (f < j->window || j->level == TDM_LEVEL_MEMORY) &&
				!j->rc; f++, k++) {
			struct tmulti_write op = { .seq = w->next_seq };
			bool del;

			pick(j, k, op.key, &op.klen, &del);
			op.del = del;
			rc = write_one(h, &op, j->node, &end);
			if (rc) {
				job_fail(j, rc, op.del ? "delete" : "put");
				break;
			}
			w->next_seq++;
			tmulti_wlog_add(w, &op);
			if (j->level == TDM_LEVEL_MEMORY)
				__atomic_store_n(&j->acked, w->n, __ATOMIC_RELEASE);
		}
		if (j->level == TDM_LEVEL_MEMORY || j->rc)
			continue;
		rc = tdm_wait(h, end, j->level, 0);
		if (!rc) /* durable on peers is not on our own disk: a restart must find them */
			rc = tdm_wait(h, end, TDM_LEVEL_LOCAL, 0);
		if (rc)
			job_fail(j, rc, "wait");
		else
			__atomic_store_n(&j->acked, w->n, __ATOMIC_RELEASE);
	}
	tdm_node_close(h);
	return NULL;
}

static void jobs_start(struct job *jobs, int n)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_create(&jobs[i].th, NULL, job_run, &jobs[i]), 0);
}

static void jobs_join(struct job *jobs, int n)
{
	for (int i = 0; i < n; i++)
		pthread_join(jobs[i].th, NULL);
	for (int i = 0; i < n; i++)
		if (jobs[i].rc) {
			for (int k = 0; k < NODES; k++)
				tc_print_status(jobs[i].c, k);
			tc_print_logs(jobs[i].c);
			fail_msg("%s", jobs[i].err);
		}
}

static void jobs_run(struct job *jobs, int n)
{
	jobs_start(jobs, n);
	jobs_join(jobs, n);
}

/* Set up jobs[from..to) for nodes from..to-1: count writes each at level, 20% shared. */
static void jobs_init(struct job *jobs, struct tc_cluster *c, int from, int to, uint32_t count,
		      enum tdm_level level)
{
	for (int i = from; i < to; i++) {
		job_init(&jobs[i], c, i, count);
		jobs[i].level = level;
		jobs[i].shared_pct = 20;
	}
}

/* Run `count` mixed operations on every node at once (memory level). */
static void write_all(struct tc_cluster *c, uint32_t count, int shared_pct)
{
	struct job jobs[NODES];

	for (int i = 0; i < NODES; i++) {
		job_init(&jobs[i], c, i, count);
		jobs[i].shared_pct = shared_pct;
	}
	jobs_run(jobs, NODES);
}

/* ---- Clusters ---- */

static struct tc_opts opts(void)
{
	/* Segments big enough that no test's own log loses a segment: the oracle reads it all. */
	struct tc_opts o = { .backend = backend, .replicas = NODES - 1, .multi_primary = true,
			     .level = "memory", .quorum = 1, .timeout_ms = 5000,
			     .segment_size = 16u << 20, .ring_size = 8u << 20 };
	return o;
}

static void create(struct tc_cluster *c, const struct tc_opts *o, const char *tag)
{
	int rc = tc_create(c, tandemd, o, tag);

	if (rc == 77)
		skip();
	assert_int_equal(rc, 0);
	current = c;
}

static void start(struct tc_cluster *c)
{
	assert_ok(tc_start_all(c));
}

/* ---- load ---- */

static void test_load(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts();
	struct tmulti_outcome out;
	struct tdm_store_conflict_rec rec[8];
	uint64_t t0;
	int n = 0;

	create(&c, &o, "mpload");
	start(&c);
	t0 = mono_ns();
	write_all(&c, 100000, 10);
	print_message("100000 operations on each of %d nodes issued in %.2f s\n", NODES,
		      (double)(mono_ns() - t0) / 1e9);
	tmulti_check_converged(&c, issued, "load", &out);
	assert_true(out.multi_origin > 0);
	assert_true(out.conflicts > 0);
	assert_ok(tdm_ctl_conflicts(c.data[0], rec, 8, &n));
	for (int k = 0; k < n; k++) {
		bool winner_greater = rec[k].winner_hlc > rec[k].loser_hlc ||
			(rec[k].winner_hlc == rec[k].loser_hlc &&
			 rec[k].winner_origin > rec[k].loser_origin);

		if (!winner_greater)
			fail_msg("node 1 reports a conflict whose winner (%" PRIx64 ", %u) is not above "
				 "its loser (%" PRIx64 ", %u)", rec[k].winner_hlc,
				 rec[k].winner_origin, rec[k].loser_hlc, rec[k].loser_origin);
	}
	print_message("node 1 lists %d recent conflicts, each won by the greater (hlc, origin)\n",
		      n);
}

/* ---- partition ---- */

/* Statuses of every node published after `since` (CLOCK_REALTIME ns). */
static void statuses_after(struct tc_cluster *c, uint64_t since, struct tdm_status *st)
{
	for (int t = 0; t < TC_WAIT_S * 100; t++) {
		bool all = true;

		for (int i = 0; all && i < NODES; i++)
			all = tc_status(c, i, &st[i]) == 0 && st[i].updated_ns > since;
		if (all)
			return;
		pause_ms(10);
	}
	fail_msg("no fresh status from every node within %d s", TC_WAIT_S);
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_partition(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts();
	struct tdm_status st[NODES];
	struct tmulti_outcome out;
	uint64_t since;

	create(&c, &o, "mppart");
	start(&c);
	write_all(&c, 5000, 20);
	assert_ok(tc_cut(&c, 2, -1, true));
	write_all(&c, 5000, 20);
	/* The cut node's writes stay with it, and the others' with them. */
	since = realtime_ns();
	statuses_after(&c, since, st);
	for (int i = 0; i < 2; i++) {
		const struct tdm_peer_status *in = tc_peer_row(&st[i], &c, 2);
		const struct tdm_peer_status *out3 = tc_peer_row(&st[2], &c, i);

		assert_non_null(in);
		assert_non_null(out3);
		if (in->origin_received >= st[2].tail || out3->origin_received >= st[i].tail)
			fail_msg("partition: node %d has node 3's origin up to %" PRIu64 " of %" PRIu64
				 ", node 3 has node %d's up to %" PRIu64 " of %" PRIu64, i + 1,
				 in->origin_received, st[2].tail, i + 1, out3->origin_received,
				 st[i].tail);
	}
	print_message("partition: node 3 cut off, each side wrote 5000 per node unseen by the "
		      "other\n");
	assert_ok(tc_cut(&c, 2, -1, false));
	tmulti_check_converged(&c, issued, "partition healed", &out);
	assert_true(out.multi_origin > 0);
}

/* ---- restart ---- */

static void wait_progress(struct job *j, size_t at_least)
{
	for (int t = 0; t < TC_WAIT_S * 1000; t++) {
		if (__atomic_load_n(&j->acked, __ATOMIC_ACQUIRE) >= at_least)
			return;
		if (__atomic_load_n(&j->rc, __ATOMIC_ACQUIRE)) {
			print_error("node %d's writer failed: %s; the nodes now:\n", j->node + 1,
				    j->err);
			for (int i = 0; i < NODES; i++)
				tc_print_status(j->c, i);
			return;
		}
		pause_ms(1);
	}
	fail_msg("node %d: writer made no progress within %d s", j->node + 1, TC_WAIT_S);
}

static void test_restart(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts();
	struct job jobs[NODES];
	struct tmulti_outcome out;

	o.level = "durable";
	create(&c, &o, "mprst");
	start(&c);
	/* Everyone writes at `durable` (k = 1), node 3 included. */
	jobs_init(jobs, &c, 0, NODES, 3000, TDM_LEVEL_DURABLE);
	jobs_run(jobs, NODES);
	/* Nodes 1 and 2 keep writing; node 3 is killed and restarted meanwhile. */
	jobs_init(jobs, &c, 0, 2, 20000, TDM_LEVEL_DURABLE);
	jobs_start(jobs, 2);
	wait_progress(&jobs[0], 2000);
	tc_signal(&c, 2, SIGKILL);
	wait_progress(&jobs[0], 8000);
	wait_progress(&jobs[1], 8000);
	print_message("restart: node 3 killed; nodes 1 and 2 wrote %zu and %zu more meanwhile\n",
		      __atomic_load_n(&jobs[0].acked, __ATOMIC_ACQUIRE),
		      __atomic_load_n(&jobs[1].acked, __ATOMIC_ACQUIRE));
	assert_ok(tc_start(&c, 2, true));
	jobs_join(jobs, 2);
	/* The restarted node writes again. */
	jobs_init(jobs, &c, 2, 3, 2000, TDM_LEVEL_DURABLE);
	jobs_run(&jobs[2], 1);
	tmulti_check_converged(&c, issued, "restart", &out);
	assert_true(tc_log_has(&c, 2, "resuming from there")); /* where its copies ended */
	for (int i = 0; i < NODES; i++)
		if (out.st[i].resyncs)
			fail_msg("node %d: %" PRIu64 " full resyncs: the restarted node should have "
				 "resumed every origin from its durable position", i + 1,
				 out.st[i].resyncs);
}

/* ---- crash ---- */

static void test_crash(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts();
	struct job jobs[NODES];
	struct tmulti_outcome out;

	o.level = "local";
	create(&c, &o, "mpcrash");
	start(&c);
	/* Every node writes, acknowledged when on its own disk; node 3 is killed mid-stream. */
	jobs_init(jobs, &c, 0, NODES, 30000, TDM_LEVEL_LOCAL);
	jobs_start(jobs, NODES);
	wait_progress(&jobs[2], 5000);
	tc_signal(&c, 2, SIGKILL);
	pthread_join(jobs[2].th, NULL);
	print_message("crash: node 3 killed after %zu acknowledged of %zu accepted writes (its "
		      "writer: %s)\n", jobs[2].acked, issued[2].n, jobs[2].rc ? jobs[2].err : "done");
	issued[2].lost_from = jobs[2].acked;
	issued[2].lost_to = issued[2].n;
	jobs_join(jobs, 2);
	assert_ok(tc_start(&c, 2, true));
	jobs_init(jobs, &c, 2, 3, 2000, TDM_LEVEL_LOCAL);
	jobs_run(&jobs[2], 1);
	tmulti_check_converged(&c, issued, "crash", &out);
}

/* ---- delete ---- */

#define DKEYS 2000

/* Node 1 deletes every key, node 2 puts every key, node 3 deletes the even ones and puts the
 * odd ones, backwards. */
static void pick_delput(struct job *j, uint32_t k, char *key, uint8_t *klen, bool *del)
{
	uint32_t idx = j->node == 2 ? DKEYS - 1 - k : k;

	*klen = (uint8_t)snprintf(key, KEY_CAP, "d%05u", idx);
	*del = j->node == 0 || (j->node == 2 && idx % 2 == 0);
}

static void pick_fill(struct job *j, uint32_t k, char *key, uint8_t *klen, bool *del)
{
	(void)j;
	*klen = (uint8_t)snprintf(key, KEY_CAP, "d%05u", k);
	*del = false;
}

/* After the race, causally after it: node 1 deletes the first AFTER keys, node 2 puts the next
 * AFTER (both sure to win: their clocks have seen every earlier write). */
#define AFTER 200
static void pick_after(struct job *j, uint32_t k, char *key, uint8_t *klen, bool *del)
{
	*klen = (uint8_t)snprintf(key, KEY_CAP, "d%05u", j->node == 0 ? k : AFTER + k);
	*del = j->node == 0;
}

static void pick_tick(struct job *j, uint32_t k, char *key, uint8_t *klen, bool *del)
{
	*klen = (uint8_t)snprintf(key, KEY_CAP, "tick%d", j->node + 1);
	*del = false;
}

/* Have every node purged its tombstones (and at least `want` in all)? */
static bool purged(struct tc_cluster *c, size_t want, struct tdm_status *st)
{
	for (int i = 0; i < NODES; i++)
		if (tc_status(c, i, &st[i]) != 0 || st[i].tombstones != 0 ||
		    st[i].tombstones_purged < want)
			return false;
	return true;
}

static void test_delete(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts();
	struct tdm_status st[NODES];
	struct job jobs[NODES];
	struct tmulti_outcome out;
	int t, ticks = 0;

	create(&c, &o, "mpdel");
	start(&c);
	job_init(&jobs[0], &c, 0, DKEYS);
	jobs[0].pick = pick_fill;
	jobs_run(jobs, 1);
	assert_ok(tc_wait_quiescent(&c, NULL));
	for (int i = 0; i < NODES; i++) {
		job_init(&jobs[i], &c, i, DKEYS);
		jobs[i].pick = pick_delput;
	}
	jobs_run(jobs, NODES);
	/* Which of the racing writes win depends on the schedule; the oracle says which did. */
	tmulti_check_converged(&c, issued, "delete vs put", &out);
	for (int i = 0; i < 2; i++) {
		job_init(&jobs[i], &c, i, AFTER);
		jobs[i].pick = pick_after;
	}
	jobs_run(jobs, 2);
	tmulti_check_converged(&c, issued, "then deletes and puts", &out);
	assert_true(out.deleted >= AFTER && out.live >= AFTER);
	for (int i = 0; i < NODES; i++) {
		print_message("node %d: %" PRIu64 " tombstones, %" PRIu64 " purged (purge_hlc %" PRIx64
			      ")\n", i + 1, out.st[i].tombstones, out.st[i].tombstones_purged,
			      out.st[i].purge_hlc);
		if (out.st[i].tombstones + out.st[i].tombstones_purged < out.deleted)
			fail_msg("node %d: %" PRIu64 " tombstones + %" PRIu64 " purged, but %zu keys "
				 "end deleted", i + 1, out.st[i].tombstones,
				 out.st[i].tombstones_purged, out.deleted);
	}
	/* Purging needs every origin to pass the tombstones: wait a while as is, then write a
	 * key per node every 100 ms so every origin moves on. */
	for (t = 0; t < TC_WAIT_S * 10 && !purged(&c, out.deleted, st); t++) {
		if (t >= 30) {
			for (int i = 0; i < NODES; i++) {
				job_init(&jobs[i], &c, i, 1);
				jobs[i].pick = pick_tick;
			}
			jobs_run(jobs, NODES);
			ticks++;
		}
		pause_ms(100);
	}
	if (!purged(&c, out.deleted, st)) {
		for (int i = 0; i < NODES; i++)
			tc_print_status(&c, i);
		fail_msg("tombstones not purged within %d s (%d rounds of writes on every node)",
			 TC_WAIT_S, ticks);
	}
	print_message("tombstones purged on every node (%" PRIu64 ", %" PRIu64 ", %" PRIu64
		      ")%s\n", st[0].tombstones_purged, st[1].tombstones_purged,
		      st[2].tombstones_purged, ticks ? " after more writes" : " without more writes");
	tmulti_check_converged(&c, issued, "after the purge", &out);
}

/* ---- clock ---- */

static void test_clock(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts();
	struct tmulti_outcome out;

	o.max_clock_offset_ms = 500;
	create(&c, &o, "mpclock");
	tc_config_append(&c, 2, "[faults]\nclock_skew_ms = 2000");
	start(&c);
	write_all(&c, 2000, 20);
	tmulti_check_converged(&c, issued, "clock skew", &out);
	for (int i = 0; i < 2; i++) {
		const struct tdm_peer_status *r = tc_peer_row(&out.st[i], &c, 2);

		assert_non_null(r);
		print_message("node %d: node 3's records refused %" PRIu64 " times (%" PRIu64
			      " in all), its clock offset %.3f s\n", i + 1, r->clock_refused,
			      out.st[i].clock_refused, (double)r->clock_offset_ns / 1e9);
		assert_true(r->clock_refused > 0);
		assert_true(out.st[i].clock_refused >= r->clock_refused);
	}
	for (int j = 0; j < 2; j++) {
		const struct tdm_peer_status *r = tc_peer_row(&out.st[2], &c, j);

		assert_non_null(r);
		assert_int_equal(r->clock_refused, 0); /* stamped behind its clock: never refused */
	}
}

/* ---- majority ---- */

/* Offer puts to node i until one returns want (bounded); the accepted ones are recorded. */
static void put_until(struct tc_cluster *c, int i, int want, char *msg, size_t cap)
{
	struct tdm_node *h;
	struct tmulti_wlog *w = &issued[i];
	int rc = -1;

	assert_ok(tdm_node_attach(c->data[i], &h));
	for (int t = 0; t < TC_WAIT_S * 100; t++) {
		struct tmulti_write op = { .seq = w->next_seq };
		uint64_t end;

		op.klen = (uint8_t)snprintf(op.key, KEY_CAP, "s%06u", 7u);
		rc = write_one(h, &op, i, &end);
		if (rc == 0) {
			w->next_seq++;
			tmulti_wlog_add(w, &op);
		}
		if (rc == want)
			break;
		if (rc != 0 && rc != TDM_ERR_NOT_PRIMARY)
			fail_msg("node %d: put: %d (%s): %s", i + 1, rc, tdm_strerror(rc),
				 tdm_errmsg());
		pause_ms(10);
	}
	snprintf(msg, cap, "%s", tdm_errmsg());
	tdm_node_close(h);
	if (rc != want)
		fail_msg("node %d: puts still return %d, want %d, after %d s", i + 1, rc, want,
			 TC_WAIT_S);
}

static void test_majority(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts();
	struct job jobs[NODES];
	struct tdm_status st;
	struct tmulti_outcome out;
	struct tdm_node *h;
	char msg[512];

	o.write_mode = "majority";
	create(&c, &o, "mpmaj");
	start(&c);
	write_all(&c, 500, 20);
	assert_ok(tc_cut(&c, 2, -1, true));
	put_until(&c, 2, TDM_ERR_NOT_PRIMARY, msg, sizeof(msg));
	print_message("node 3 cut off from both peers refuses writes: %s\n", msg);
	assert_non_null(strstr(msg, "majority"));
	/* The majority side keeps taking writes, and they replicate between its two nodes. */
	jobs_init(jobs, &c, 0, 2, 500, TDM_LEVEL_RECEIVED);
	jobs_run(jobs, 2);
	for (int t = 0; t < TC_WAIT_S * 100; t++) {
		assert_ok(tc_status(&c, 2, &st));
		if (!st.writable)
			break;
		pause_ms(10);
	}
	assert_int_equal(st.writable, 0);
	assert_ok(tdm_node_attach(c.data[2], &h));
	{
		uint64_t end;
		assert_rc(tdm_put(h, "s000001", 7, "x", 1, &end), TDM_ERR_NOT_PRIMARY);
	}
	tdm_node_close(h);
	assert_ok(tc_cut(&c, 2, -1, false));
	put_until(&c, 2, 0, msg, sizeof(msg));
	print_message("healed: node 3 takes writes again\n");
	write_all(&c, 500, 20);
	tmulti_check_converged(&c, issued, "majority", &out);
	for (int i = 0; i < NODES; i++)
		assert_int_equal(out.st[i].writable, 1);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_load, teardown),
		cmocka_unit_test_teardown(test_partition, teardown),
		cmocka_unit_test_teardown(test_restart, teardown),
		cmocka_unit_test_teardown(test_crash, teardown),
		cmocka_unit_test_teardown(test_delete, teardown),
		cmocka_unit_test_teardown(test_clock, teardown),
		cmocka_unit_test_teardown(test_majority, teardown),
	};
	int rc = tc_args(argc, argv, "test_multi", &backend, &tandemd);

	if (rc)
		return rc;
	if (argc > 3)
		cmocka_set_test_filter(argv[3]);
	return cmocka_run_group_tests_name(argv[1], tests, NULL, NULL);
}
