/*
 * Multi-primary through the embedding API: two nodes opened in this process (tdm_node_open,
 * one thread each, kernel UDP on 127.0.0.1) write the same key at once. Each node's conflict
 * callback (tdm_config.on_conflict) sees both versions, the winner it reports is what both
 * stores hold, and a write waited for at `applied` is visible on the other node when the wait
 * returns (commit levels count peers on the writer's own origin).
 *
 * Bounded: every wait gives up after WAIT_S seconds; nothing asserts a time.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "tandem.h"

#define WAIT_S 30

struct seen {
	int conflicts;
	char winner[32], loser[32];
};

static void on_conflict(void *ctx, const struct tdm_store_conflict *c)
{
	struct seen *s = ctx;

	__atomic_fetch_add(&s->conflicts, 1, __ATOMIC_RELAXED);
	snprintf(s->winner, sizeof(s->winner), "%.*s", (int)c->winner.vlen,
		 (const char *)c->winner.val);
	snprintf(s->loser, sizeof(s->loser), "%.*s", (int)c->loser.vlen,
		 (const char *)c->loser.val);
}

static char base_dir[64];
static struct tdm_node *nodes[2]; /* closed by the teardown, also after a failure */

static void node_config(struct tdm_config *cfg, int id, uint16_t port0, struct seen *seen)
{
	int other = 3 - id;
	char v[128];

	tdm_config_defaults(cfg);
	snprintf(v, sizeof(v), "%d", id);
	assert_int_equal(tdm_config_set(cfg, "node.id", v), 0);
	assert_int_equal(tdm_config_set(cfg, "node.cluster_id", "4242"), 0);
	snprintf(v, sizeof(v), "%s/n%d", base_dir, id);
	assert_int_equal(tdm_config_set(cfg, "node.data_dir", v), 0);
	assert_int_equal(tdm_config_set(cfg, "node.idle", "yield"), 0);
	assert_int_equal(tdm_config_set(cfg, "log.ring_size", "1M"), 0);
	assert_int_equal(tdm_config_set(cfg, "log.segment_size", "1M"), 0);
	snprintf(v, sizeof(v), "127.0.0.1:%u", port0 + id);
	assert_int_equal(tdm_config_set(cfg, "dataplane.address", v), 0);
	snprintf(v, sizeof(v), "127.0.0.1:%u", port0 + other);
	assert_int_equal(tdm_config_set(cfg, other == 1 ? "peer.1.address" : "peer.2.address", v),
			 0);
	assert_int_equal(tdm_config_set(cfg, "replication.mode", "multi-primary"), 0);
	cfg->on_conflict = on_conflict;
	cfg->conflict_ctx = seen;
}

static void value_of(struct tdm_node *n, const char *key, char *out, size_t cap)
{
	uint32_t vlen = 0;
	int rc = tdm_get(n, key, (uint32_t)strlen(key), out, (uint32_t)cap - 1, &vlen);

	out[rc == 0 ? vlen : 0] = 0;
}

static void test_conflict_callback(void **state)
{
	struct seen seen[2] = { { 0 }, { 0 } };
	struct tdm_node **n = nodes;
	struct tdm_config cfg;
	uint16_t port0 = (uint16_t)(20000 + getpid() % 20000);
	uint64_t end, d[2], applied, keys;
	char v0[32], v1[32];
	int tries;

	(void)state;
	for (int i = 0; i < 2; i++) {
		node_config(&cfg, i + 1, port0, &seen[i]);
		if (tdm_node_open(&cfg, &n[i]) != 0)
			fail_msg("node %d: %s", i + 1, tdm_errmsg());
	}
	/* A write waited for at `applied` is on the other node when the wait returns. */
	assert_int_equal(tdm_put(n[0], "first", 5, "one", 3, &end), 0);
	if (tdm_wait(n[0], end, TDM_LEVEL_APPLIED, 10000000000ull) != 0)
		fail_msg("wait at applied: %s", tdm_errmsg());
	value_of(n[1], "first", v1, sizeof(v1));
	assert_string_equal(v1, "one");

	/* Both write the same key: each node loses one version and says so. */
	assert_int_equal(tdm_put(n[0], "k", 1, "from-1", 6, NULL), 0);
	assert_int_equal(tdm_put(n[1], "k", 1, "from-2", 6, NULL), 0);
	for (tries = 0; tries < WAIT_S * 100; tries++) {
		for (int i = 0; i < 2; i++)
			assert_int_equal(tdm_digest(n[i], &d[i], &applied, &keys), 0);
		if (d[0] == d[1] && __atomic_load_n(&seen[0].conflicts, __ATOMIC_RELAXED) &&
		    __atomic_load_n(&seen[1].conflicts, __ATOMIC_RELAXED))
			break;
		usleep(10000);
	}
	assert_true(tries < WAIT_S * 100);
	value_of(n[0], "k", v0, sizeof(v0));
	value_of(n[1], "k", v1, sizeof(v1));
	assert_string_equal(v0, v1);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(seen[i].conflicts, 1);
		assert_string_equal(seen[i].winner, v0);
		assert_true(strcmp(seen[i].loser, "from-1") == 0 ||
			    strcmp(seen[i].loser, "from-2") == 0);
		assert_string_not_equal(seen[i].loser, v0);
	}
}

/* Close the nodes (their rings leave /dev/shm) and remove their directories. */
static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	for (int i = 0; i < 2; i++) {
		tdm_node_close(nodes[i]);
		nodes[i] = NULL;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base_dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_conflict_callback, teardown),
	};

	snprintf(base_dir, sizeof(base_dir), "/tmp/tme-%d", (int)getpid());
	if (mkdir(base_dir, 0755) != 0) {
		perror(base_dir);
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
