/*
 * failover_bench: time from kill -9 of the primary to the first write a new primary accepts.
 *
 *   failover_bench udp|dpdk TANDEMD FAILOVER_TIMEOUT_MS [ROUNDS]
 *
 * Three tandemd data nodes (the tests' fault harness, tests/tcluster.c) at `durable` with a
 * majority quorum. Each round: write to the primary for a moment, kill it, then offer a write to
 * every other node in turn until one accepts it; then restart the old node (it rejoins as a
 * replica) and wait until everyone has caught up. Prints each round, the median and the
 * maximum, and each as a multiple of the failover timeout (goal: under 3x).
 */
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tcluster.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Write through node p for `ms` milliseconds at `durable`. */
static void write_for(struct tc_cluster *c, int p, uint32_t *next, int ms)
{
	struct tdm_node *h;
	uint64_t until = now_ns() + (uint64_t)ms * 1000000ull;
	char key[16];

	if (tdm_node_attach(c->data[p], &h) != 0)
		return;
	while (now_ns() < until) {
		snprintf(key, sizeof(key), "fb-%011u", (*next)++);
		if (tdm_commit_put(h, key, 14, key, 14, TDM_LEVEL_DURABLE) != 0)
			break;
	}
	tdm_node_close(h);
}

/* Offer writes to every live node but p until one accepts: @return its index. */
static int first_accepting(struct tc_cluster *c, int p, uint32_t *next)
{
	struct tdm_node *h[TC_MAX_NODES] = { 0 };
	char key[16];
	int won = -1;

	for (int i = 0; i < c->n; i++)
		if (i != p && tdm_node_attach(c->data[i], &h[i]) != 0)
			h[i] = NULL;
	for (uint64_t tries = 0; won < 0 && tries < 2000000000ull; tries++) {
		for (int i = 0; i < c->n && won < 0; i++) {
			uint64_t end;

			if (!h[i])
				continue;
			snprintf(key, sizeof(key), "fb-%011u", *next);
			if (tdm_put(h[i], key, 14, key, 14, &end) == 0) {
				(*next)++;
				won = i;
			}
		}
		sched_yield();
	}
	for (int i = 0; i < c->n; i++)
		tdm_node_close(h[i]);
	return won;
}

int main(int argc, char **argv)
{
	struct tc_cluster c;
	struct tc_opts o = { .replicas = 2, .level = "durable", .quorum = 1, .timeout_ms = 2000 };
	uint64_t took[64], timeout_ms;
	uint32_t next = 1, epoch;
	int rounds = 5, done = 0, rc;

	if (argc < 4 || tdm_dp_backend_parse(argv[1], &o.backend) != 0) {
		fprintf(stderr, "usage: failover_bench udp|dpdk TANDEMD FAILOVER_TIMEOUT_MS "
			"[ROUNDS]\n");
		return 2;
	}
	timeout_ms = strtoull(argv[3], NULL, 10);
	if (argc > 4)
		rounds = atoi(argv[4]);
	if (rounds < 1 || rounds > 64 || timeout_ms < 2) {
		fprintf(stderr, "failover_bench: ROUNDS 1..64, FAILOVER_TIMEOUT_MS >= 2\n");
		return 2;
	}
	o.failover_ms = timeout_ms;
	rc = tc_create(&c, argv[2], &o, "fbench");
	if (rc)
		return rc == 77 ? 77 : 1;
	if (tc_start_all(&c) != 0) {
		tc_destroy(&c);
		return 1;
	}
	for (int r = 0; r < rounds; r++) {
		int p = tc_wait_primary(&c, 0), np;
		uint64_t t0;

		if (p < 0)
			break;
		tc_primary(&c, &epoch);
		write_for(&c, p, &next, 200);
		t0 = now_ns();
		tc_signal(&c, p, SIGKILL);
		np = first_accepting(&c, p, &next);
		took[r] = now_ns() - t0;
		if (np < 0)
			break;
		printf("round %d: node %d killed, node %d accepted a write after %.1f ms (%.2fx the "
		       "failover timeout)\n", r + 1, p + 1, np + 1, took[r] / 1e6,
		       took[r] / 1e6 / (double)timeout_ms);
		fflush(stdout);
		done++;
		if (tc_start(&c, p, true) != 0 || tc_wait_caught_up(&c) != 0)
			break;
	}
	tc_destroy(&c);
	if (done < rounds) {
		fprintf(stderr, "failover_bench: only %d of %d rounds completed\n", done, rounds);
		return 1;
	}
	qsort(took, (size_t)done, sizeof(took[0]), cmp_u64);
	printf("failover %s, timeout %" PRIu64 " ms, %d rounds: median %.1f ms (%.2fx), max %.1f "
	       "ms (%.2fx)\n", argv[1], timeout_ms, done, took[done / 2] / 1e6,
	       took[done / 2] / 1e6 / (double)timeout_ms, took[done - 1] / 1e6,
	       took[done - 1] / 1e6 / (double)timeout_ms);
	return 0;
}
