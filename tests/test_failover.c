/*
 * Failover end to end: real tandemd processes (tests/tcluster.c) on one transport (argv[1]:
 * udp or dpdk), written to by this process through attached handles.
 *
 *   kill20      kill -9 the primary mid-load at `durable` (majority quorum), 20 rounds with
 *               different seeds: a replica is elected (one primary), every acknowledged write is
 *               on every node, the old primary rejoins, digests converge
 *   partition   the primary's links cut: it fences itself (writes refused), the others elect a
 *               primary; after healing the old one follows; no epoch has two writers (logs)
 *   divergent   async writes on a primary cut off and killed: on rejoin they are moved to a side
 *               file, not in the replicated state
 *   switchover  planned switchover under load at `memory`: no acknowledged write lost
 *   twonode     two data nodes never fail over on their own (the status says why); with a
 *               witness they do
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
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

static const char *tandemd;
static enum tdm_dp_backend backend;
static struct tc_cluster *current; /* destroyed by teardown, also after a failed assertion */

static int teardown(void **state)
{
	if (current)
		tc_destroy(current);
	current = NULL;
	return 0;
}

static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* ---- Keys: write id -> key and value ---- */

#define KEY_LEN 12

struct ids {
	uint32_t *v;
	size_t n, cap;
};

static void ids_add(struct ids *s, uint32_t id)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 1024;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		assert_non_null(s->v);
	}
	s->v[s->n++] = id;
}

static void key_of(uint32_t id, char key[KEY_LEN + 1])
{
	snprintf(key, KEY_LEN + 1, "fo-%09u", id);
}

static uint32_t value_of(uint32_t id, uint8_t *buf)
{
	uint32_t len = 8 + id % 40;

	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(id * 7 + i);
	return len;
}

static int put_id(struct tdm_node *h, uint32_t id, uint64_t *end)
{
	uint8_t val[64];
	char key[KEY_LEN + 1];
	int rc;

	key_of(id, key);
	while ((rc = tdm_put(h, key, KEY_LEN, val, value_of(id, val), end)) ==
	       TDM_ERR_BACKPRESSURE)
		sched_yield();
	return rc;
}

/* Is write id on node i with its value (present), or absent? */
static void assert_on_node(struct tc_cluster *c, int i, const struct ids *s, bool present)
{
	uint8_t want[64], got[64];
	char key[KEY_LEN + 1];
	uint32_t vlen;

	for (size_t k = 0; k < s->n; k++) {
		uint32_t len = value_of(s->v[k], want);
		int rc;

		key_of(s->v[k], key);
		rc = tdm_ctl_get(c->data[i], key, KEY_LEN, got, sizeof(got), &vlen);
		if (present && (rc || vlen != len || memcmp(got, want, len)))
			fail_msg("node %d: acknowledged write %s missing (rc %d: %s)", i + 1, key, rc,
				 rc ? tdm_errmsg() : "wrong value");
		if (!present && rc != TDM_ERR_NOT_FOUND)
			fail_msg("node %d: divergent write %s is in the replicated state (rc %d)",
				 i + 1, key, rc);
	}
}

/* Every running data node has the same digest. */
static void assert_digests_equal(struct tc_cluster *c)
{
	uint64_t d0 = 0, a0 = 0, k0 = 0, d, a, k;
	int first = -1;

	assert_ok(tc_wait_caught_up(c));
	for (int i = 0; i < c->n; i++) {
		if (c->pid[i] <= 0 || tc_is_witness(c, i))
			continue;
		assert_ok(tc_digest(c, i, &d, &a, &k));
		if (first < 0) {
			first = i;
			d0 = d, a0 = a, k0 = k;
			continue;
		}
		if (d != d0 || k != k0)
			fail_msg("node %d: digest %016" PRIx64 " (%" PRIu64 " keys at %" PRIu64 "), "
				 "node %d: %016" PRIx64 " (%" PRIu64 " keys at %" PRIu64 ")", first + 1,
				 d0, k0, a0, i + 1, d, k, a);
	}
}

/* At most one running node is an unfenced primary of any one epoch, and at most one overall
 * is unfenced primary of the newest epoch. */
static void assert_one_primary(struct tc_cluster *c)
{
	struct tdm_status st[TC_MAX_NODES];
	bool ok[TC_MAX_NODES] = { 0 };

	for (int i = 0; i < c->n; i++)
		ok[i] = c->pid[i] > 0 && tc_status(c, i, &st[i]) == 0;
	for (int i = 0; i < c->n; i++)
		for (int j = i + 1; j < c->n; j++)
			if (ok[i] && ok[j] && st[i].role == TDM_ROLE_PRIMARY &&
			    st[j].role == TDM_ROLE_PRIMARY && st[i].epoch == st[j].epoch)
				fail_msg("nodes %d and %d are both primary of epoch %u", i + 1, j + 1,
					 st[i].epoch);
}

static struct tc_opts opts(int replicas, const char *level, uint64_t failover_ms)
{
	struct tc_opts o = { .backend = backend, .replicas = replicas, .level = level,
			     .quorum = 1, .failover_ms = failover_ms, .timeout_ms = 2000 };
	return o;
}

static int create(struct tc_cluster *c, const struct tc_opts *o, const char *tag)
{
	int rc = tc_create(c, tandemd, o, tag);

	if (rc == 0)
		current = c;
	return rc;
}

/* Write `count` new ids at level through node p; add the acknowledged ones to acked. Stops at
 * the first write that fails (returns how many were acknowledged). */
static size_t write_acked(struct tc_cluster *c, int p, uint32_t *next, size_t count,
			  enum tdm_level level, struct ids *acked)
{
	struct tdm_node *h;
	size_t ok = 0;

	if (tdm_node_attach(c->data[p], &h) != 0)
		return 0;
	for (size_t i = 0; i < count; i++) {
		uint32_t id = (*next)++;
		uint64_t end;
		int rc = put_id(h, id, &end);

		if (!rc)
			rc = tdm_wait(h, end, level, 0);
		if (rc)
			break;
		ids_add(acked, id);
		ok++;
	}
	tdm_node_close(h);
	return ok;
}

/* ---- kill20 ---- */

/* Write through p at `durable`, windows of 8 in flight; after `before` acknowledged writes, put
 * one more window in flight and kill -9 p. */
static void kill_under_load(struct tc_cluster *c, int p, uint32_t *next, size_t before,
			    struct ids *acked)
{
	struct tdm_node *h;
	uint64_t ends[8];
	uint32_t ids[8];
	size_t done = 0;
	bool killed = false;

	assert_ok(tdm_node_attach(c->data[p], &h));
	while (!killed) {
		int w = 0;

		for (; w < 8; w++) {
			ids[w] = (*next)++;
			if (put_id(h, ids[w], &ends[w]) != 0)
				break;
		}
		if (done >= before) {
			tc_signal(c, p, SIGKILL);
			killed = true;
		}
		for (int i = 0; i < w; i++)
			if (tdm_wait(h, ends[i], TDM_LEVEL_DURABLE, 0) == 0) {
				ids_add(acked, ids[i]);
				done++;
			}
		if (w < 8 && !killed) { /* it stopped taking writes early (a spurious election) */
			tc_signal(c, p, SIGKILL);
			killed = true;
		}
	}
	tdm_node_close(h);
}

static void test_kill20(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts(2, "durable", 300);
	struct ids all = { 0 };
	uint32_t next = 1, epoch;
	int p;

	if (create(&c, &o, "fokill") == 77)
		skip();
	assert_ok(tc_start_all(&c));
	for (int round = 0; round < 20; round++) {
		struct ids acked = { 0 };
		unsigned seed = 1000u + (unsigned)round * 7919u;
		int np;

		p = tc_wait_primary(&c, 0);
		assert_true(p >= 0);
		tc_primary(&c, &epoch);
		srand(seed);
		kill_under_load(&c, p, &next, 50 + (size_t)(rand() % 400), &acked);
		np = tc_wait_primary(&c, epoch);
		assert_true(np >= 0 && np != p);
		assert_one_primary(&c);
		/* the new primary takes writes */
		write_acked(&c, np, &next, 20, TDM_LEVEL_DURABLE, &acked);
		assert_ok(tc_start(&c, p, true)); /* the old primary rejoins as a replica */
		assert_digests_equal(&c);
		for (int i = 0; i < c.n; i++)
			assert_on_node(&c, i, &acked, true);
		print_message("round %d (seed %u): node %d killed, node %d elected (epoch > %u), %zu "
			      "acknowledged writes on every node\n", round + 1, seed, p + 1, np + 1,
			      epoch, acked.n);
		for (size_t k = 0; k < acked.n; k++)
			ids_add(&all, acked.v[k]);
		free(acked.v);
	}
	p = tc_primary(&c, NULL);
	assert_on_node(&c, p, &all, true);
	print_message("%zu acknowledged writes over 20 failovers: all present\n", all.n);
	free(all.v);
}

/* ---- partition ---- */

struct epoch_origin {
	uint16_t origin[1024]; /* per epoch: the origin of its writes (0 none yet) */
	int bad;
};

static int check_rec(void *ctx, const struct tdm_log_rec *rec)
{
	struct epoch_origin *eo = ctx;
	uint32_t e = rec->hdr->epoch;

	if (rec->hdr->type != TDM_LOG_REC_PUT && rec->hdr->type != TDM_LOG_REC_DEL)
		return 0;
	if (e >= 1024)
		return 0;
	if (!eo->origin[e])
		eo->origin[e] = rec->hdr->origin;
	else if (eo->origin[e] != rec->hdr->origin)
		eo->bad++;
	return 0;
}

/* No epoch has writes from two origins, in any node's log. */
static void assert_epochs_single_writer(struct tc_cluster *c)
{
	struct tdm_log_scan_report rep;
	struct epoch_origin eo;
	char dir[400];

	memset(&eo, 0, sizeof(eo));
	for (int i = 0; i < c->n; i++) {
		if (tc_is_witness(c, i))
			continue;
		snprintf(dir, sizeof(dir), "%s/log", c->data[i]);
		tdm_log_scan(dir, c->o.cluster_id, 0, check_rec, &eo, &rep);
	}
	assert_int_equal(eo.bad, 0);
}

static void wait_fenced(struct tc_cluster *c, int p)
{
	struct tdm_status st;

	for (int t = 0; t < TC_WAIT_S * 100; t++) {
		if (tc_status(c, p, &st) == 0 && (st.fenced || st.role != TDM_ROLE_PRIMARY))
			return;
		pause_ms(10);
	}
	tc_print_logs(c);
	fail_msg("node %d was not fenced after its links were cut", p + 1);
}

static void wait_follows(struct tc_cluster *c, int i, int leader)
{
	struct tdm_status st;

	for (int t = 0; t < TC_WAIT_S * 100; t++) {
		if (tc_status(c, i, &st) == 0 && st.role == TDM_ROLE_REPLICA &&
		    st.primary_id == leader + 1 && st.replica_state == TDM_PEER_STREAMING)
			return;
		pause_ms(10);
	}
	tc_print_logs(c);
	fail_msg("node %d does not follow node %d", i + 1, leader + 1);
}

static void test_partition(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts(2, "durable", 300);
	struct ids acked = { 0 }, late = { 0 };
	struct tdm_node *h;
	uint32_t next = 1, epoch;
	uint64_t end;
	int p, np, rc;

	if (create(&c, &o, "fopart") == 77)
		skip();
	assert_ok(tc_start_all(&c));
	p = tc_wait_primary(&c, 0);
	tc_primary(&c, &epoch);
	assert_int_equal(write_acked(&c, p, &next, 200, TDM_LEVEL_DURABLE, &acked), 200);
	assert_ok(tdm_node_attach(c.data[p], &h));
	assert_ok(tc_cut(&c, p, -1, true));
	wait_fenced(&c, p);
	rc = put_id(h, next++, &end);
	assert_int_equal(rc, TDM_ERR_NOT_PRIMARY); /* the fenced primary refuses */
	print_message("cut-off primary (node %d) refuses writes: %s\n", p + 1, tdm_errmsg());
	tdm_node_close(h);
	np = tc_wait_primary(&c, epoch);
	assert_true(np >= 0 && np != p);
	assert_one_primary(&c);
	assert_int_equal(write_acked(&c, np, &next, 200, TDM_LEVEL_DURABLE, &late), 200);
	assert_ok(tc_cut(&c, p, -1, false));
	wait_follows(&c, p, np);
	assert_digests_equal(&c);
	for (int i = 0; i < c.n; i++) {
		assert_on_node(&c, i, &acked, true);
		assert_on_node(&c, i, &late, true);
	}
	for (int i = 0; i < c.n; i++)
		tc_signal(&c, i, SIGTERM);
	assert_epochs_single_writer(&c);
	free(acked.v);
	free(late.v);
}

/* ---- divergent ---- */

static bool find_side_file(const char *dir, char *path, size_t cap)
{
	struct dirent *d;
	DIR *dp = opendir(dir);
	bool found = false;

	while (dp && !found && (d = readdir(dp)))
		if (strncmp(d->d_name, "diverged-", 9) == 0) {
			snprintf(path, cap, "%s/%s", dir, d->d_name);
			found = true;
		}
	if (dp)
		closedir(dp);
	return found;
}

struct side_check {
	const struct ids *want;
	size_t found;
};

static int side_rec(void *ctx, const struct tdm_log_rec *rec)
{
	struct side_check *s = ctx;
	char key[KEY_LEN + 1];

	for (size_t k = 0; k < s->want->n; k++) {
		key_of(s->want->v[k], key);
		if (rec->hdr->key_len == KEY_LEN && memcmp(rec->key, key, KEY_LEN) == 0)
			s->found++;
	}
	return 0;
}

static void test_divergent(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts(2, "durable", 2000);
	struct ids acked = { 0 }, async = { 0 }, late = { 0 };
	struct tdm_node *h;
	struct tdm_log_side_info info;
	struct side_check sc = { &async, 0 };
	uint32_t next = 1, epoch;
	uint64_t end = 0;
	char side[600];
	int p, np;

	if (create(&c, &o, "fodiv") == 77)
		skip();
	assert_ok(tc_start_all(&c));
	p = tc_wait_primary(&c, 0);
	tc_primary(&c, &epoch);
	assert_int_equal(write_acked(&c, p, &next, 100, TDM_LEVEL_DURABLE, &acked), 100);
	/* Cut the primary off, then write async: these never reach anyone else. */
	assert_ok(tc_cut(&c, p, -1, true));
	assert_ok(tdm_node_attach(c.data[p], &h));
	for (int i = 0; i < 50; i++) {
		uint32_t id = next++;

		assert_ok(put_id(h, id, &end));
		ids_add(&async, id);
	}
	assert_ok(tdm_wait(h, end, TDM_LEVEL_LOCAL, 0)); /* on the old primary's disk */
	tdm_node_close(h);
	tc_signal(&c, p, SIGKILL);
	np = tc_wait_primary(&c, epoch);
	assert_true(np >= 0 && np != p);
	assert_int_equal(write_acked(&c, np, &next, 100, TDM_LEVEL_DURABLE, &late), 100);
	assert_ok(tc_start(&c, p, true));
	assert_digests_equal(&c);
	for (int i = 0; i < c.n; i++) {
		assert_on_node(&c, i, &acked, true);
		assert_on_node(&c, i, &late, true);
		assert_on_node(&c, i, &async, false);
	}
	assert_true(find_side_file(c.data[p], side, sizeof(side)));
	assert_true(tc_log_has(&c, p, "moved aside to"));
	assert_ok(tdm_log_side_read(side, &info, side_rec, &sc));
	print_message("side file %s: %" PRIu64 " records, %zu of the %zu async writes\n", side,
		      info.count, sc.found, async.n);
	assert_int_equal(sc.found, async.n);
	free(acked.v);
	free(async.v);
	free(late.v);
}

/* ---- switchover ---- */

/* Index of the node with id `id`. */
static int node_index(uint16_t id)
{
	return (int)id - 1;
}

static void test_switchover(void **state)
{
	static struct tc_cluster c;
	struct tc_opts o = opts(2, "memory", 1000);
	struct ids acked = { 0 };
	struct tdm_node *h;
	uint32_t next = 1, epoch;
	int p, target, failed = 0;

	if (create(&c, &o, "fosw") == 77)
		skip();
	assert_ok(tc_start_all(&c));
	p = tc_wait_primary(&c, 0);
	tc_primary(&c, &epoch);
	target = (p + 1) % c.n;
	assert_ok(tdm_node_attach(c.data[p], &h));
	for (int i = 0; i < 3000; i++) {
		uint32_t id = next++;
		uint64_t end;
		int rc;

		if (i == 1000)
			assert_ok(tdm_ctl_switchover(c.data[p], (uint16_t)(target + 1)));
		rc = put_id(h, id, &end);
		if (rc == 0) {
			ids_add(&acked, id); /* memory level: acknowledged by the put */
			continue;
		}
		assert_int_equal(rc, TDM_ERR_NOT_PRIMARY);
		failed++;
		/* follow: find the new primary and write there */
		for (int t = 0; t < TC_WAIT_S * 100; t++) {
			uint16_t who;
			uint32_t e;

			if (tdm_primary(h, &who, &e) == 0 && who && e > epoch &&
			    node_index(who) != p)
				break;
			pause_ms(10);
		}
		tdm_node_close(h);
		p = tc_wait_primary(&c, epoch);
		assert_int_equal(p, target);
		tc_primary(&c, &epoch);
		assert_ok(tdm_node_attach(c.data[p], &h));
	}
	tdm_node_close(h);
	assert_true(failed > 0);
	assert_digests_equal(&c);
	assert_on_node(&c, target, &acked, true);
	print_message("switchover at write 1000: %zu writes acknowledged at memory, all present; "
		      "%d refused during the handover\n", acked.n, failed);
	for (int i = 0; i < c.n; i++) {
		char side[600];
		assert_false(find_side_file(c.data[i], side, sizeof(side)));
	}
	free(acked.v);
}

/* ---- twonode ---- */

static void test_twonode(void **state)
{
	static struct tc_cluster c, w;
	struct tc_opts o = opts(1, "durable", 200);
	struct ids acked = { 0 };
	struct tdm_status st;
	uint32_t next = 1, epoch;
	int p;

	if (create(&c, &o, "fotwo") == 77)
		skip();
	assert_ok(tc_start_all(&c));
	assert_int_equal(write_acked(&c, 0, &next, 50, TDM_LEVEL_DURABLE, &acked), 50);
	tc_signal(&c, 0, SIGKILL);
	/* Ten failover timeouts later the replica is still a replica, and says why. */
	for (int t = 0; t < 20; t++) {
		pause_ms(100);
		assert_ok(tc_status(&c, 1, &st));
		assert_int_equal(st.role, TDM_ROLE_REPLICA);
	}
	print_message("two data nodes, primary killed: node 2 says \"%s\"\n", st.failover_note);
	assert_non_null(strstr(st.failover_note, "add a witness"));
	tc_destroy(&c);
	current = NULL;
	acked.n = 0;

	/* The same with a witness: node 2 takes over. */
	o = opts(2, "durable", 200);
	o.witness = true;
	if (create(&w, &o, "fowit") == 77)
		skip();
	assert_ok(tc_start_all(&w));
	p = tc_wait_primary(&w, 0);
	tc_primary(&w, &epoch);
	assert_int_equal(p, 0);
	assert_int_equal(write_acked(&w, 0, &next, 50, TDM_LEVEL_DURABLE, &acked), 50);
	tc_signal(&w, 0, SIGKILL);
	p = tc_wait_primary(&w, epoch);
	assert_int_equal(p, 1);
	assert_ok(tc_start(&w, 0, true));
	assert_digests_equal(&w);
	assert_on_node(&w, 0, &acked, true);
	assert_on_node(&w, 1, &acked, true);
	assert_ok(tc_status(&w, 2, &st));
	assert_int_equal(st.role, TDM_ROLE_WITNESS);
	print_message("with a witness: node 2 elected, the old primary rejoined\n");
	free(acked.v);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_twonode, teardown),
		cmocka_unit_test_teardown(test_switchover, teardown),
		cmocka_unit_test_teardown(test_divergent, teardown),
		cmocka_unit_test_teardown(test_partition, teardown),
		cmocka_unit_test_teardown(test_kill20, teardown),
	};
	int rc = tc_args(argc, argv, "test_failover", &backend, &tandemd);

	if (rc)
		return rc;
	if (argc > 3)
		cmocka_set_test_filter(argv[3]);
	return cmocka_run_group_tests_name(argv[1], tests, NULL, NULL);
}
