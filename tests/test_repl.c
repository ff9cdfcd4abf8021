/*
 * Primary-replica replication end to end: real tandemd processes (tests/tcluster.c) on one
 * transport (argv[1]: udp or dpdk), written to by this process attached to the primary.
 *
 *   levels     200k mixed puts/deletes at each commit level: every node ends with the digest
 *              of a reference store built here from the same operations
 *   kill       kill -9 a replica mid-load at `durable` with k=2: every acknowledged write is in
 *              both replicas' logs on disk; the killed one restarts, catches up, digests match
 *   resync     a replica restarted after the primary trimmed its history gets a full resync
 *   timeout    a replica that stops acking: writes at received/durable/applied fail with
 *              TDM_ERR_TIMEOUT (policy fail) or degrade (policy degrade), counted; degraded mode
 *              ends when the replica comes back
 *   badinput   a bad config (file:line), a peer of another cluster id, a node started twice
 */
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
#include <sys/wait.h>
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

/* ---- A deterministic workload and its reference state ---- */

#define KEYS 20000u

struct acked {
	uint64_t pos, end, seq;
};

struct load {
	struct tdm_node *node;
	struct tdm_store *ref;     /**< every appended operation, in log order */
	uint64_t seq;              /**< next operation */
	enum tdm_level level;
	int window;                /**< appends before waiting */
	uint64_t ok, timeouts, degraded;
	struct acked *acked;       /**< positions of acknowledged writes (when non-NULL) */
	size_t n_acked, cap_acked;
};

static void op_key(uint64_t seq, char key[16])
{
	uint64_t k = (seq * 0x9e3779b97f4a7c15ull >> 20) % KEYS;
	snprintf(key, 16, "key-%011" PRIu64, k);
}

static uint32_t op_value(uint64_t seq, uint8_t *buf)
{
	uint32_t len = 16 + (uint32_t)(seq % 97);

	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seq * 31 + i);
	return len;
}

static bool op_is_delete(uint64_t seq)
{
	return seq % 10 == 7;
}

/* Append one operation (retrying back-pressure) and mirror it in the reference store. */
static uint64_t append_op(struct load *l, uint64_t *pos)
{
	uint8_t val[128];
	char key[16];
	uint64_t seq = l->seq++, end = 0;
	uint32_t vlen = op_value(seq, val);
	int rc;

	op_key(seq, key);
	do {
		rc = op_is_delete(seq) ? tdm_delete(l->node, key, 15, &end)
				       : tdm_put(l->node, key, 15, val, vlen, &end);
	} while (rc == TDM_ERR_BACKPRESSURE && (sched_yield(), 1));
	assert_ok(rc);
	if (op_is_delete(seq))
		tdm_store_del(l->ref, key, 15);
	else
		tdm_store_put(l->ref, key, 15, val, vlen, 0, 1);
	*pos = end - tdm_log_rec_span(15, op_is_delete(seq) ? 0 : vlen);
	return end;
}

/* Write count operations, window at a time, each waited for at l->level. stop_after (if not 0)
 * is called after every window; when it returns true the run ends early. */
static void run_load(struct load *l, uint64_t count, bool (*hook)(struct load *, void *),
		     void *ctx)
{
	uint64_t ends[256], poss[256], seqs[256];

	for (uint64_t done = 0; done < count;) {
		int w = (int)(count - done < (uint64_t)l->window ? count - done : (uint64_t)l->window);

		for (int i = 0; i < w; i++) {
			seqs[i] = l->seq;
			ends[i] = append_op(l, &poss[i]);
		}
		for (int i = 0; i < w; i++) {
			int rc = tdm_wait(l->node, ends[i], l->level, 0);

			if (rc == TDM_ERR_TIMEOUT) {
				l->timeouts++;
				continue;
			}
			if (rc == TDM_ERR_DEGRADED) {
				l->degraded++;
				continue;
			}
			assert_rc(rc, 0);
			l->ok++;
			if (l->acked && l->n_acked < l->cap_acked)
				l->acked[l->n_acked++] = (struct acked){ poss[i], ends[i], seqs[i] };
		}
		done += (uint64_t)w;
		if (hook && hook(l, ctx))
			return;
	}
}

static void load_init(struct load *l, struct tc_cluster *c, enum tdm_level level, int window)
{
	memset(l, 0, sizeof(*l));
	assert_ok(tdm_node_attach(c->data[0], &l->node));
	assert_ok(tdm_store_create(1, &l->ref));
	l->level = level;
	l->window = window;
	l->seq = 1;
}

static void load_fini(struct load *l)
{
	tdm_node_close(l->node);
	tdm_store_destroy(l->ref);
	free(l->acked);
}

/* Every running node has the reference digest (and key count); spot-check values. */
static void assert_converged(struct tc_cluster *c, struct load *l)
{
	uint64_t want = tdm_store_digest(l->ref), d, applied, keys;

	assert_int_equal(tc_wait_caught_up(c), 0);
	for (int i = 0; i < c->n; i++) {
		if (c->pid[i] <= 0)
			continue;
		assert_ok(tc_digest(c, i, &d, &applied, &keys));
		if (d != want || keys != tdm_store_count(l->ref))
			fail_msg("node %d: digest %016" PRIx64 " keys %" PRIu64 ", reference %016"
				 PRIx64 " keys %" PRIu64, i + 1, d, keys, want,
				 tdm_store_count(l->ref));
	}
	for (uint64_t s = 1; s < l->seq; s += l->seq / 50 + 1) {
		uint8_t want_v[128], got[128];
		uint32_t wl = 0, gl = 0;
		char key[16];
		int rw, rg;

		op_key(s, key);
		rw = tdm_store_get(l->ref, key, 15, want_v, sizeof(want_v), &wl, NULL, NULL);
		rg = tdm_ctl_get(c->data[c->n - 1], key, 15, got, sizeof(got), &gl);
		assert_rc(rg, rw);
		if (!rw && (wl != gl || memcmp(want_v, got, wl)))
			fail_msg("key %s differs on node %d", key, c->n);
	}
}

static struct tc_opts opts(int replicas, const char *level, int quorum)
{
	struct tc_opts o = { .backend = backend, .replicas = replicas, .level = level,
			     .quorum = quorum };
	return o;
}

static int create(struct tc_cluster *c, const struct tc_opts *o, const char *tag)
{
	int rc = tc_create(c, tandemd, o, tag);

	assert_int_equal(rc, 0);
	current = c;
	return tc_start_all(c);
}

/* ---- levels ---- */

static void test_levels(void **state)
{
	static const enum tdm_level levels[] = { TDM_LEVEL_MEMORY, TDM_LEVEL_LOCAL,
		TDM_LEVEL_RECEIVED, TDM_LEVEL_DURABLE, TDM_LEVEL_APPLIED };
	static struct tc_cluster c; /* outlives the test for its teardown */
	struct tc_opts o = opts(2, "applied", 2);
	struct load l;

	assert_int_equal(create(&c, &o, "levels"), 0);
	load_init(&l, &c, TDM_LEVEL_MEMORY, 64);
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		l.level = levels[i];
		run_load(&l, 200000, NULL, NULL);
		print_message("level %-8s: %" PRIu64 " acknowledged in all, %" PRIu64
			      " timeouts\n", tdm_level_name(levels[i]), l.ok, l.timeouts);
		assert_int_equal(l.timeouts + l.degraded, 0);
		assert_converged(&c, &l);
	}
	load_fini(&l);
}

/* ---- kill -9 ---- */

struct kill_ctx {
	struct tc_cluster *c;
	uint64_t kill_at;
	bool killed;
};

static bool kill_hook(struct load *l, void *ctx)
{
	struct kill_ctx *k = ctx;

	if (!k->killed && l->ok >= k->kill_at) {
		tc_signal(k->c, 2, SIGKILL);
		k->killed = true;
		return true;
	}
	return false;
}

struct scan_check {
	const struct acked *acked;
	size_t n, next;
	uint64_t found;
};

/* tdm_log_scan callback: records in position order; tick off acknowledged ones. */
static int scan_rec(void *ctx, const struct tdm_log_rec *rec)
{
	struct scan_check *s = ctx;
	char key[16];

	while (s->next < s->n && s->acked[s->next].pos < rec->hdr->position)
		s->next++; /* not at a record position: reported as missing below */
	if (s->next < s->n && s->acked[s->next].pos == rec->hdr->position) {
		op_key(s->acked[s->next].seq, key);
		if (rec->hdr->key_len == 15 && memcmp(rec->key, key, 15) == 0)
			s->found++;
		s->next++;
	}
	return 0;
}

static void assert_acked_on_disk(struct tc_cluster *c, int i, const struct load *l)
{
	struct tdm_log_scan_report rep;
	struct scan_check s = { l->acked, l->n_acked, 0, 0 };
	char dir[400];

	snprintf(dir, sizeof(dir), "%s/log", c->data[i]);
	tdm_log_scan(dir, c->o.cluster_id, 0, scan_rec, &s, &rep);
	print_message("node %d: %" PRIu64 " of %zu acknowledged writes found in its log on disk "
		      "(log ends at %" PRIu64 ")\n", i + 1, s.found, l->n_acked, rep.end);
	assert_int_equal(s.found, l->n_acked);
}

static void test_kill(void **state)
{
	static struct tc_cluster c; /* outlives the test for its teardown */
	struct tc_opts o = opts(2, "durable", 2);
	struct kill_ctx k = { &c, 30000, false };
	struct load l;

	o.timeout_ms = 300;
	assert_int_equal(create(&c, &o, "kill"), 0);
	load_init(&l, &c, TDM_LEVEL_DURABLE, 32);
	l.cap_acked = 200000;
	l.acked = calloc(l.cap_acked, sizeof(*l.acked));
	run_load(&l, 100000, kill_hook, &k);
	assert_true(k.killed);
	/* With a replica gone, k=2 cannot be met: these writes time out (policy fail). */
	run_load(&l, 4, NULL, NULL);
	assert_true(l.timeouts > 0);
	/* Both replicas' disks hold every acknowledged write: the killed one's, and the live
	 * one's after it too is killed. */
	tc_signal(&c, 1, SIGKILL);
	assert_acked_on_disk(&c, 1, &l);
	assert_acked_on_disk(&c, 2, &l);
	assert_int_equal(tc_start(&c, 1, true), 0);
	assert_int_equal(tc_start(&c, 2, true), 0);
	free(l.acked);
	l.acked = NULL;
	run_load(&l, 30000, NULL, NULL);
	assert_converged(&c, &l);
	load_fini(&l);
}

/* ---- full resync ---- */

static void test_resync(void **state)
{
	static struct tc_cluster c; /* outlives the test for its teardown */
	struct tc_opts o = opts(2, "local", 1);
	struct tdm_status st;
	struct load l;

	o.segment_size = 256u << 10;
	o.ring_size = 1u << 20;
	o.retention_cap = 1u << 20;
	assert_int_equal(create(&c, &o, "resync"), 0);
	load_init(&l, &c, TDM_LEVEL_LOCAL, 64);
	run_load(&l, 20000, NULL, NULL);
	tc_signal(&c, 2, SIGKILL);
	run_load(&l, 60000, NULL, NULL); /* ~6 MB: far past the 1 MiB retention cap */
	assert_ok(tc_status(&c, 0, &st));
	print_message("primary log kept from %" PRIu64 " to %" PRIu64 "\n", st.log_start,
		      st.tail);
	assert_true(st.log_start > 0);
	assert_int_equal(tc_start(&c, 2, true), 0);
	run_load(&l, 10000, NULL, NULL);
	assert_converged(&c, &l);
	assert_true(tc_log_has(&c, 0, "full resync"));
	assert_true(tc_log_has(&c, 2, "resync snapshot loaded"));
	assert_ok(tc_status(&c, 2, &st));
	assert_true(st.resyncs >= 1);
	/* the replica restarts from its own snapshot + log, without another resync */
	tc_signal(&c, 2, SIGKILL);
	assert_int_equal(tc_start(&c, 2, true), 0);
	run_load(&l, 5000, NULL, NULL);
	assert_converged(&c, &l);
	load_fini(&l);
}

/* ---- timeouts ---- */

static void timeout_case(const char *policy)
{
	static const enum tdm_level levels[] = { TDM_LEVEL_RECEIVED, TDM_LEVEL_DURABLE,
						 TDM_LEVEL_APPLIED };
	bool degrade = strcmp(policy, "degrade") == 0;
	static struct tc_cluster c; /* outlives the test for its teardown */
	struct tc_opts o = opts(2, "received", 2);
	struct tdm_status st;
	struct load l;

	o.timeout_ms = 200;
	o.on_timeout = policy;
	assert_int_equal(create(&c, &o, degrade ? "degrade" : "fail"), 0);
	load_init(&l, &c, TDM_LEVEL_RECEIVED, 1);
	run_load(&l, 1000, NULL, NULL);
	assert_int_equal(l.timeouts + l.degraded, 0);
	tc_signal(&c, 2, SIGSTOP); /* stops acking */
	for (size_t i = 0; i < 3; i++) {
		l.level = levels[i];
		run_load(&l, 3, NULL, NULL);
	}
	assert_int_equal(degrade ? l.degraded : l.timeouts, 9);
	assert_int_equal(degrade ? l.timeouts : l.degraded, 0);
	/* the counters and the log say so (status refreshes every 100 ms) */
	for (int t = 0; t < 1000; t++) {
		assert_ok(tc_status(&c, 0, &st));
		if ((degrade ? st.degrades : st.timeouts) >= 9)
			break;
		usleep(10000);
	}
	assert_int_equal(degrade ? st.degrades : st.timeouts, 9);
	if (degrade) {
		assert_int_equal(st.degraded, 1);
		assert_true(tc_log_has(&c, 0, "degraded to async"));
	}
	tc_signal(&c, 2, SIGCONT);
	if (degrade) {
		for (int t = 0; t < 3000 && st.degraded; t++) {
			usleep(10000);
			assert_ok(tc_status(&c, 0, &st));
		}
		assert_int_equal(st.degraded, 0);
		assert_true(tc_log_has(&c, 0, "synchronous again"));
	}
	l.level = TDM_LEVEL_APPLIED;
	l.ok = 0;
	run_load(&l, 1000, NULL, NULL);
	assert_int_equal(l.ok, 1000);
	assert_converged(&c, &l);
	load_fini(&l);
}

static void test_timeout_fail(void **state)
{
	timeout_case("fail");
}

static void test_timeout_degrade(void **state)
{
	timeout_case("degrade");
}

/* ---- bad input ---- */

/* Run tandemd with args; its exit code, and its stderr in out. */
static int run_tandemd(const char *cfg, char *out, size_t len)
{
	char cmd[700];
	FILE *p;
	size_t got;

	snprintf(cmd, sizeof(cmd), "%s --config %s 2>&1", tandemd, cfg);
	p = popen(cmd, "r");
	assert_non_null(p);
	got = fread(out, 1, len - 1, p);
	out[got] = 0;
	return WEXITSTATUS(pclose(p));
}

static void replace_in_file(const char *path, const char *from, const char *to)
{
	char buf[8192], *at;
	FILE *f = fopen(path, "r");
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);

	fclose(f);
	buf[n] = 0;
	at = strstr(buf, from);
	assert_non_null(at);
	f = fopen(path, "w");
	fprintf(f, "%.*s%s%s", (int)(at - buf), buf, to, at + strlen(from));
	fclose(f);
}

static void test_badinput(void **state)
{
	static struct tc_cluster c; /* outlives the test for its teardown */
	struct tc_opts o = opts(1, "local", 1);
	struct tdm_status st;
	char out[4096], bad[400];
	struct load l;

	assert_int_equal(tc_create(&c, tandemd, &o, "badinput"), 0);
	current = &c;
	/* 1. an unknown key: exit 2, the file, line and key named */
	snprintf(bad, sizeof(bad), "%s/bad.ini", c.dir);
	FILE *f = fopen(bad, "w");
	fprintf(f, "[node]\nid = 1\nrole = primary\ncluster_id = 5\ndata_dir = %s/bad\n"
		"[replication]\nqourum = 1\n", c.dir);
	fclose(f);
	assert_int_equal(run_tandemd(bad, out, sizeof(out)), 2);
	print_message("bad config: %s", out);
	assert_non_null(strstr(out, "bad.ini:7"));
	assert_non_null(strstr(out, "qourum"));
	/* 2. a replica of another cluster: its frames are dropped and counted, it never streams */
	char other[64];
	snprintf(other, sizeof(other), "cluster_id = %" PRIu64, c.o.cluster_id + 1);
	char mine[64];
	snprintf(mine, sizeof(mine), "cluster_id = %" PRIu64, c.o.cluster_id);
	replace_in_file(c.cfg[1], mine, other);
	assert_int_equal(tc_start(&c, 0, false), 0);
	assert_int_equal(tc_start(&c, 1, false), 0);
	for (int t = 0; t < 3000; t++) {
		assert_ok(tc_status(&c, 0, &st));
		if (st.frames_bad_cluster > 0 && tc_log_has(&c, 0, "another cluster id"))
			break;
		usleep(10000);
	}
	assert_true(st.frames_bad_cluster > 0);
	assert_true(tc_log_has(&c, 0, "another cluster id"));
	assert_int_equal(st.peers[0].state, TDM_PEER_DOWN);
	assert_ok(tc_status(&c, 1, &st));
	assert_int_not_equal(st.replica_state, TDM_PEER_STREAMING);
	tc_signal(&c, 1, SIGKILL);
	/* 3. the primary started twice on the same files: the second says so; the first goes on */
	load_init(&l, &c, TDM_LEVEL_LOCAL, 16);
	run_load(&l, 1000, NULL, NULL);
	assert_int_equal(run_tandemd(c.cfg[0], out, sizeof(out)), 1);
	print_message("second start: %s", out);
	assert_non_null(strstr(out, "in use by another running node"));
	run_load(&l, 1000, NULL, NULL);
	assert_int_equal(l.ok, 2000);
	{
		uint64_t d, applied, keys;
		for (int t = 0; t < 3000; t++) {
			assert_ok(tc_digest(&c, 0, &d, &applied, &keys));
			if (d == tdm_store_digest(l.ref))
				break;
			usleep(10000);
		}
		assert_int_equal(d, tdm_store_digest(l.ref));
	}
	load_fini(&l);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest all[] = {
		cmocka_unit_test_teardown(test_badinput, teardown),
		cmocka_unit_test_teardown(test_timeout_fail, teardown),
		cmocka_unit_test_teardown(test_timeout_degrade, teardown),
		cmocka_unit_test_teardown(test_resync, teardown),
		cmocka_unit_test_teardown(test_kill, teardown),
		cmocka_unit_test_teardown(test_levels, teardown),
	};
	int rc = tc_args(argc, argv, "test_repl", &backend, &tandemd);

	if (rc)
		return rc;
	if (argc > 3)
		cmocka_set_test_filter(argv[3]);
	return cmocka_run_group_tests_name(argv[1], all, NULL, NULL);
}
