/*
 * multi_bench: write throughput, conflict rate and replication lag of three multi-primary nodes.
 *
 *   build/bench/multi_bench udp|dpdk build/tools/tandemd [WRITES_PER_NODE [SHARED_PCT [RATE]]]
 *
 * Three tandemd nodes in a full mesh (the tests' fault harness, tests/tcluster.c: one thread
 * per node, idle = yield, data under /tmp), quorum 2 (every peer). This process attaches to
 * each node and runs one writer thread per node; 16-byte keys, 64-byte values; SHARED_PCT
 * (default 10) percent of the writes go to 10,000 keys every node writes, the rest to the
 * node's own keys. Three runs on the same cluster:
 *
 *   1. memory      every writer puts WRITES_PER_NODE (default 200,000) at `memory` as fast as
 *                  the ring takes them (pipelined, no waits). Per node: writes/s while it wrote;
 *                  total: all writes over the time until the last writer finished; replicated:
 *                  all writes over the time until every node had applied every origin (seen
 *                  through the status files, published every 100 ms: that figure is coarse).
 *                  Conflict rate: conflicts over shared writes, where conflicts are what each
 *                  node counts as overwrites + stale drops within the window (the store counts
 *                  each meeting of two close versions once per node that way), averaged over
 *                  the nodes.
 *   2. applied     a quarter as many writes per node, each window of 256 waiting until both
 *                  peers have applied its last write (tdm_wait at `applied`, k = 2).
 *   3. lag         each writer paces RATE writes/s (default 20,000) for 3 s at `memory`; beside
 *                  it a probe thread per node puts one write every millisecond and waits at
 *                  `applied` (k = 2) for it alone. Positions in an origin's stream are applied
 *                  in order, so the probe is applied on both peers only once the stream up to
 *                  it is: put -> applied on the other two nodes -> their acknowledgment seen by
 *                  the origin, measured on one monotonic clock (no clock offsets between
 *                  nodes enter). It overstates the one-way lag by one acknowledgment hop. The
 *                  probes' p50/p99/max over all nodes are printed.
 *
 * Figures on a shared 2-core machine are noisy: compare ratios measured in one run.
 */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "tcluster.h"

#define NODES 3
#define SHARED_KEYS 10000u
#define VLEN 64u
#define KLEN 16u
#define KEY_BUF 40 /* KLEN bytes used; room for all snprintf could write */
#define PROBES_MAX 20000

struct writer {
	struct tc_cluster *c;
	int node;
	uint64_t count;         /**< writes to issue (run 3: until `until_ns`) */
	int shared_pct;
	enum tdm_level level;   /**< memory: no waits; applied: a wait per window */
	int window;
	uint64_t rate;          /**< writes/s, 0 = as fast as possible */
	uint64_t until_ns;      /**< run 3: stop then */
	uint64_t seq;           /**< keeps keys and values unique across runs */
	uint64_t rng;
	/* results */
	uint64_t done, shared, t0, t1;
	int rc;
	char err[256];          /**< tdm_errmsg of the failure (it is per thread) */
	pthread_t th;
};

struct prober {
	struct tc_cluster *c;
	int node;
	uint64_t until_ns;
	uint64_t lat[PROBES_MAX];
	size_t n;
	int rc;
	char err[256];
	pthread_t th;
};

static uint64_t shared_writes; /* over every run: the status counts conflicts over all */

static void pause_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int put_retry(struct tdm_node *h, const char *key, const uint8_t *val, uint64_t *end)
{
	int rc;

	while ((rc = tdm_put(h, key, KLEN, val, VLEN, end)) == TDM_ERR_BACKPRESSURE)
		sched_yield();
	return rc;
}

/* Key and value of write `seq` of node `node`; returns whether the key is shared. */
static bool make_write(struct writer *w, char *key, uint8_t *val)
{
	uint64_t r = rnd(&w->rng);
	bool shared = (int)(r % 100) < w->shared_pct;

	if (shared)
		snprintf(key, KEY_BUF, "s-%014" PRIu64, (r >> 8) % SHARED_KEYS);
	else
		snprintf(key, KEY_BUF, "p%d-%013" PRIu64, w->node + 1, w->seq);
	memset(val, 'a' + w->node, VLEN);
	memcpy(val, &w->seq, sizeof(w->seq));
	w->seq++;
	return shared;
}

static void *write_run(void *arg)
{
	struct writer *w = arg;
	struct tdm_node *h;
	uint8_t val[VLEN];
	char key[KEY_BUF];
	uint64_t end = 0;
	int in_window = 0;

	w->rc = tdm_node_attach(w->c->data[w->node], &h);
	if (w->rc)
		return NULL;
	w->t0 = tdm_bench_now_ns();
	for (w->done = 0; w->until_ns ? tdm_bench_now_ns() < w->until_ns : w->done < w->count;) {
		if (w->rate) { /* pace: write k is due at t0 + k / rate */
			uint64_t due = w->t0 + w->done * 1000000000ull / w->rate;

			while (tdm_bench_now_ns() < due)
				sched_yield();
		}
		w->shared += make_write(w, key, val);
		w->rc = put_retry(h, key, val, &end);
		if (w->rc)
			break;
		w->done++;
		if (w->level != TDM_LEVEL_MEMORY && ++in_window == w->window) {
			in_window = 0;
			w->rc = tdm_wait(h, end, w->level, 0);
			if (w->rc)
				break;
		}
	}
	if (!w->rc && w->level != TDM_LEVEL_MEMORY && in_window)
		w->rc = tdm_wait(h, end, w->level, 0);
	w->t1 = tdm_bench_now_ns();
	if (w->rc)
		snprintf(w->err, sizeof(w->err), "%s", tdm_errmsg());
	tdm_node_close(h);
	return NULL;
}

static void *probe_run(void *arg)
{
	struct prober *p = arg;
	struct tdm_node *h;
	uint8_t val[VLEN] = { 0 };
	char key[KEY_BUF];

	p->rc = tdm_node_attach(p->c->data[p->node], &h);
	if (p->rc)
		return NULL;
	while (p->n < PROBES_MAX && tdm_bench_now_ns() < p->until_ns) {
		uint64_t end, t0 = tdm_bench_now_ns();

		snprintf(key, sizeof(key), "q%d-%013zu", p->node + 1, p->n);
		p->rc = put_retry(h, key, val, &end);
		if (!p->rc)
			p->rc = tdm_wait(h, end, TDM_LEVEL_APPLIED, 0);
		if (p->rc)
			break;
		p->lat[p->n++] = tdm_bench_now_ns() - t0;
		pause_us(1000);
	}
	if (p->rc)
		snprintf(p->err, sizeof(p->err), "%s", tdm_errmsg());
	tdm_node_close(h);
	return NULL;
}

/* Run the writers (and probers when given) to the end. @return 0 or the first error. */
static int run(struct writer *w, struct prober *p)
{
	int rc = 0;

	for (int i = 0; i < NODES; i++) {
		pthread_create(&w[i].th, NULL, write_run, &w[i]);
		if (p)
			pthread_create(&p[i].th, NULL, probe_run, &p[i]);
	}
	for (int i = 0; i < NODES; i++) {
		pthread_join(w[i].th, NULL);
		if (p)
			pthread_join(p[i].th, NULL);
		shared_writes += w[i].shared;
		if (w[i].rc || (p && p[i].rc)) {
			rc = w[i].rc ? w[i].rc : p[i].rc;
			fprintf(stderr, "multi_bench: node %d: %s: %s\n", i + 1, tdm_strerror(rc),
				w[i].rc ? w[i].err : p[i].err);
		}
	}
	return rc;
}

static void setup(struct writer *w, struct tc_cluster *c, uint64_t count, int shared_pct,
		  enum tdm_level level)
{
	for (int i = 0; i < NODES; i++) {
		uint64_t seq = w[i].seq;

		w[i] = (struct writer){ .c = c, .node = i, .count = count, .shared_pct = shared_pct,
					.level = level, .window = 256, .seq = seq,
					.rng = 0x2545f4914f6cdd1dull * (uint64_t)(i + 1) + seq };
	}
}

/* Print per-node writes/s and the total over the longest writer. */
static void print_rates(const char *label, const struct writer *w)
{
	uint64_t all = 0, t0 = UINT64_MAX, t1 = 0;

	printf("%-22s", label);
	for (int i = 0; i < NODES; i++) {
		printf(" %12.0f", (double)w[i].done * 1e9 / (double)(w[i].t1 - w[i].t0));
		all += w[i].done;
		t0 = w[i].t0 < t0 ? w[i].t0 : t0;
		t1 = w[i].t1 > t1 ? w[i].t1 : t1;
	}
	printf(" %12.0f\n", (double)all * 1e9 / (double)(t1 - t0));
}

static void conflicts(struct tc_cluster *c)
{
	struct tdm_status st;
	uint64_t meet = 0;

	printf("conflicts per node, overwrites / stale drops (within the window):");
	for (int i = 0; i < NODES; i++) {
		if (tc_status(c, i, &st) != 0)
			continue;
		printf("  %" PRIu64 " / %" PRIu64 " (%" PRIu64 ")", st.conflicts_overwrites,
		       st.conflicts_stale, st.conflicts_stale_in_window);
		meet += st.conflicts_overwrites + st.conflicts_stale_in_window;
	}
	printf("\nconflict rate: %.1f%% of %" PRIu64 " shared writes met a close write of another "
	       "node (overwrites + stale within the window, per node)\n",
	       shared_writes ? 100.0 * (double)meet / NODES / (double)shared_writes : 0.0,
	       shared_writes);
}

static int lag(struct tc_cluster *c, struct writer *w, int shared_pct, uint64_t rate)
{
	static struct prober p[NODES];
	static uint64_t all[NODES * PROBES_MAX];
	uint64_t until = tdm_bench_now_ns() + 3000000000ull;
	size_t n = 0;

	setup(w, c, 0, shared_pct, TDM_LEVEL_MEMORY);
	for (int i = 0; i < NODES; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].c = c;
		p[i].node = i;
		p[i].until_ns = until;
		w[i].rate = rate;
		w[i].until_ns = until;
	}
	if (run(w, p))
		return -1;
	print_rates("3. paced, memory", w);
	for (int i = 0; i < NODES; i++)
		for (size_t k = 0; k < p[i].n; k++)
			all[n++] = p[i].lat[k];
	tdm_bench_sort_u64(all, n);
	printf("lag put -> applied on both peers (+ their ack), %zu probes at %" PRIu64 " writes/s "
	       "per node: p50 %.1f us, p99 %.1f us, max %.1f us\n", n, rate,
	       (double)tdm_bench_quantile(all, n, 0.5) / 1e3,
	       (double)tdm_bench_quantile(all, n, 0.99) / 1e3,
	       n ? (double)all[n - 1] / 1e3 : 0.0);
	return 0;
}

int main(int argc, char **argv)
{
	static struct tc_cluster c;
	static struct writer w[NODES];
	struct tc_opts o = { .replicas = NODES - 1, .multi_primary = true, .level = "applied",
			     .quorum = 2, .timeout_ms = 10000, .segment_size = 64u << 20,
			     .ring_size = 64u << 20 };
	uint64_t count = 200000, rate = 20000, t0, all = 0;
	int shared_pct = 10, rc = 1;

	if (argc < 3 || tdm_dp_backend_parse(argv[1], &o.backend) != 0) {
		fprintf(stderr, "usage: multi_bench udp|dpdk TANDEMD [WRITES_PER_NODE [SHARED_PCT "
			"[RATE]]]\n");
		return 2;
	}
	if (argc > 3)
		count = strtoull(argv[3], NULL, 10);
	if (argc > 4)
		shared_pct = atoi(argv[4]);
	if (argc > 5)
		rate = strtoull(argv[5], NULL, 10);
	if (count < 1000 || shared_pct < 0 || shared_pct > 100 || rate < 1) {
		fprintf(stderr, "multi_bench: WRITES_PER_NODE >= 1000, SHARED_PCT 0..100, RATE >= 1\n");
		return 2;
	}
	rc = tc_create(&c, argv[2], &o, "mbench");
	if (rc)
		return rc == 77 ? 77 : 1;
	rc = 1;
	if (tc_start_all(&c) != 0)
		goto out;
	printf("multi-primary, 3 nodes over %s, %d%% of writes on %u shared keys, %u B keys, %u B "
	       "values\n%-22s %12s %12s %12s %12s\n", argv[1], shared_pct, SHARED_KEYS, KLEN,
	       VLEN, "writes/s", "node 1", "node 2", "node 3", "total");
	setup(w, &c, count, shared_pct, TDM_LEVEL_MEMORY);
	t0 = tdm_bench_now_ns();
	if (run(w, NULL))
		goto out;
	print_rates("1. memory", w);
	if (tc_wait_quiescent(&c, NULL) != 0)
		goto out;
	for (int i = 0; i < NODES; i++)
		all += w[i].done;
	printf("%-22s %51.0f  (all applied on every node, +-100 ms)\n", "   replicated",
	       (double)all * 1e9 / (double)(tdm_bench_now_ns() - t0));
	setup(w, &c, count / 4, shared_pct, TDM_LEVEL_APPLIED);
	if (run(w, NULL))
		goto out;
	print_rates("2. applied k=2, w256", w);
	if (lag(&c, w, shared_pct, rate) != 0 || tc_wait_quiescent(&c, NULL) != 0)
		goto out;
	conflicts(&c);
	rc = 0;
out:
	tc_destroy(&c);
	return rc;
}
