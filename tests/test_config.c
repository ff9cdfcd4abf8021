/*
 * cmocka tests of the configuration (engine/config.c): defaults, a full file, every kind of
 * error with its line number and key in tdm_errmsg(), command-line overrides, the print/load
 * round trip, and the whole-configuration check.
 *
 * Each test writes its files under a temporary directory and removes them.
 *
 * Usage: test_config [unit]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tandem.h"
#include "tassert.h"

/* Every key, none at its default. */
static const char full_ini[] =
	"; a full configuration\n"
	"[node]\n"
	"id = 3\n"
	"role = primary\n"
	"cluster_id = 0x2a\n"
	"data_dir = /var/lib/tandem/n3\n"
	"threads = 2\n"
	"idle = yield\n"
	"\n"
	"[log]\n"
	"ring_size = 128M\n"
	"segment_size = 1G\n"
	"retention_cap = 8G\n"
	"\n"
	"[dataplane]\n"
	"backend = dpdk\n"
	"fallback = none\n"
	"eal_args = --no-huge --no-pci   -m 512\n"
	"    --vdev=net_memif0,role=server,socket=/run/t3.sock\n"
	"address = 10.0.0.3:7003   ; this node\n"
	"mtu = 9000\n"
	"\n"
	"[peer.1]\n"
	"address = 10.0.0.1:7001\n"
	"mac = 02:00:00:00:00:01\n"
	"dpdk_port = 1\n"
	"[peer.2]\n"
	"address: 10.0.0.2:7002\n"
	"\n"
	"[replication]\n"
	"level = durable\n"
	"quorum = 2\n"
	"timeout_ms = 250\n"
	"on_timeout = degrade\n"
	"hello_ms = 50\n"
	"\n"
	"[apply]\n"
	"workers = 4\n"
	"batch = 512\n"
	"\n"
	"[faults]\n"
	"# per mille\n"
	"drop = 10\n"
	"duplicate = 20\n"
	"reorder = 30\n"
	"delay = 40\n"
	"delay_us = 150\n"
	"seed = 99\n";

/* A small valid replica. */
static const char replica_ini[] =
	"[node]\n"
	"id = 2\n"
	"cluster_id = 7\n"
	"data_dir = /tmp/tandem-replica\n"
	"primary = 1\n"
	"[peer.1]\n"
	"address = 127.0.0.1:7001\n";

/* ---- Temporary files ---- */

struct fx {
	char dir[256];
	char path[320];  /* the test's configuration file */
	char path2[320]; /* a second one (print output) */
	struct tdm_config cfg;
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	const char *tmp = getenv("TMPDIR");

	if (fx == NULL)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "%s/tdm-config-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(fx->dir) == NULL) {
		free(fx);
		return -1;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/a.ini", fx->dir);
	snprintf(fx->path2, sizeof(fx->path2), "%s/b.ini", fx->dir);
	tdm_config_defaults(&fx->cfg);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	unlink(fx->path);
	unlink(fx->path2);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* Load text as a file into fresh defaults. */
static int load_text(struct fx *fx, const char *text)
{
	write_file(fx->path, text);
	tdm_config_defaults(&fx->cfg);
	tdm_err_clear();
	return tdm_config_load(&fx->cfg, fx->path);
}

static void assert_msg_has(const char *want)
{
	if (strstr(tdm_errmsg(), want) == NULL)
		fail_msg("tdm_errmsg() = \"%s\"\n  does not contain \"%s\"", tdm_errmsg(), want);
}

/* The message starts with "FILE:LINE: " then entry (e.g. "[node] id = 0: "). */
static void assert_msg_at(const struct fx *fx, int line, const char *entry)
{
	char want[512];

	snprintf(want, sizeof(want), "%s:%d: %s", fx->path, line, entry);
	if (strncmp(tdm_errmsg(), want, strlen(want)) != 0)
		fail_msg("tdm_errmsg() = \"%s\"\n  does not start with \"%s\"", tdm_errmsg(), want);
}

/* ---- Defaults and a full file ---- */

static void test_defaults(void **state)
{
	struct tdm_config *c = &((struct fx *)*state)->cfg;

	assert_int_equal(c->role, TDM_ROLE_REPLICA);
	assert_int_equal(c->backend, TDM_DP_BACKEND_UDP);
	assert_true(c->fallback_udp);
	assert_string_equal(c->local_host, "127.0.0.1");
	assert_int_equal(c->local_ip, htonl(INADDR_LOOPBACK));
	assert_int_equal(c->port, 7000);
	assert_int_equal(c->mtu, 1500);
	assert_u64(c->ring_size, 64ull << 20);
	assert_u64(c->segment_size, 64ull << 20);
	assert_u64(c->retention_cap, 0);
	assert_int_equal(c->level, TDM_LEVEL_LOCAL);
	assert_int_equal(c->quorum, 1);
	assert_u64(c->timeout_ms, 1000);
	assert_int_equal(c->on_timeout, TDM_ON_TIMEOUT_FAIL);
	assert_u64(c->hello_ms, 100);
	assert_int_equal(c->apply_workers, 2);
	assert_int_equal(c->apply_batch, 256);
	assert_int_equal(c->threads, 1);
	assert_int_equal(c->idle, TDM_DP_IDLE_BACKOFF);
	assert_int_equal(c->n_peers, 0);
	assert_int_equal(c->node_id, 0);
	assert_string_equal(c->path, "");
	/* defaults alone are not a node: the id is missing */
	assert_rc(tdm_config_check(c), TDM_ERR_CONFIG);
	assert_msg_has("[node] id is not set");
}

static void test_full_file(void **state)
{
	struct fx *fx = *state;
	struct tdm_config *c = &fx->cfg;

	assert_ok(load_text(fx, full_ini));
	assert_string_equal(c->path, fx->path);
	assert_int_equal(c->node_id, 3);
	assert_int_equal(c->role, TDM_ROLE_PRIMARY);
	assert_u64(c->cluster_id, 42);
	assert_string_equal(c->data_dir, "/var/lib/tandem/n3");
	assert_int_equal(c->threads, 2);
	assert_int_equal(c->idle, TDM_DP_IDLE_YIELD);
	assert_u64(c->ring_size, 128ull << 20);
	assert_u64(c->segment_size, 1ull << 30);
	assert_u64(c->retention_cap, 8ull << 30);
	assert_int_equal(c->backend, TDM_DP_BACKEND_DPDK);
	assert_false(c->fallback_udp);
	assert_string_equal(c->eal_args, "--no-huge --no-pci -m 512 "
			    "--vdev=net_memif0,role=server,socket=/run/t3.sock");
	assert_string_equal(c->local_host, "10.0.0.3");
	assert_int_equal(c->local_ip, htonl(0x0a000003));
	assert_int_equal(c->port, 7003);
	assert_int_equal(c->mtu, 9000);
	assert_int_equal(c->n_peers, 2);
	assert_int_equal(c->peers[0].id, 1);
	assert_string_equal(c->peers[0].host, "10.0.0.1");
	assert_int_equal(c->peers[0].ip, htonl(0x0a000001));
	assert_int_equal(c->peers[0].port, 7001);
	assert_memory_equal(c->peers[0].mac, "\x02\x00\x00\x00\x00\x01", 6);
	assert_int_equal(c->peers[0].dpdk_port, 1);
	assert_int_equal(c->peers[1].id, 2);
	assert_int_equal(c->peers[1].port, 7002);
	assert_memory_equal(c->peers[1].mac, "\0\0\0\0\0\0", 6);
	assert_int_equal(c->level, TDM_LEVEL_DURABLE);
	assert_int_equal(c->quorum, 2);
	assert_u64(c->timeout_ms, 250);
	assert_int_equal(c->on_timeout, TDM_ON_TIMEOUT_DEGRADE);
	assert_u64(c->hello_ms, 50);
	assert_int_equal(c->apply_workers, 4);
	assert_int_equal(c->apply_batch, 512);
	assert_int_equal(c->faults.drop, 10);
	assert_int_equal(c->faults.duplicate, 20);
	assert_int_equal(c->faults.reorder, 30);
	assert_int_equal(c->faults.delay, 40);
	assert_u64(c->faults.delay_ns, 150000);
	assert_u64(c->faults.seed, 99);
	assert_ok(tdm_config_check(c));
}

/* Keys not in the file keep their values; a second file adds to the first. */
static void test_load_keeps_values(void **state)
{
	struct fx *fx = *state;

	tdm_config_defaults(&fx->cfg);
	fx->cfg.apply_batch = 77;
	write_file(fx->path, replica_ini);
	assert_ok(tdm_config_load(&fx->cfg, fx->path));
	assert_int_equal(fx->cfg.apply_batch, 77);
	write_file(fx->path2, "[replication]\nlevel = applied\n");
	assert_ok(tdm_config_load(&fx->cfg, fx->path2));
	assert_int_equal(fx->cfg.level, TDM_LEVEL_APPLIED);
	assert_int_equal(fx->cfg.node_id, 2);
	assert_string_equal(fx->cfg.path, fx->path2);
	assert_ok(tdm_config_check(&fx->cfg));
}

/* ---- Errors in files: the exact line, the entry, what is wrong ---- */

struct bad_file {
	const char *text;
	int line;          /* where the error is reported */
	const char *entry; /* the message after "FILE:LINE: " starts with this */
	const char *why;   /* and contains this */
};

static const struct bad_file bad_files[] = {
	/* unknown sections and keys, with suggestions */
	{ "[node]\nid = 1\n[nod]\nrole = primary\n", 4, "[nod] role = primary: ",
	  "unknown section [nod]; did you mean [node]?" },
	{ "[xyz]\na = 1\n", 2, "[xyz] a = 1: ", "unknown section [xyz]; sections are" },
	{ "[peers.2]\naddress = 1.2.3.4:5\n", 2, "[peers.2] address = 1.2.3.4:5: ",
	  "write [peer.N]" },
	{ "[peer.0]\naddress = 1.2.3.4:5\n", 2, "[peer.0] address", "unknown section [peer.0]" },
	{ "[peer.70000]\naddress = 1.2.3.4:5\n", 2, "[peer.70000] address", "1..65535" },
	{ "[replication]\n\nquorm = 2\n", 3, "[replication] quorm = 2: ",
	  "unknown key in [replication]; did you mean quorum?" },
	{ "[node]\nquorum = 2\n", 2, "[node] quorum = 2: ", "quorum belongs in [replication]" },
	{ "[node]\nfrobnicate = 2\n", 2, "[node] frobnicate = 2: ", "its keys are id, role," },
	{ "id = 1\n[node]\n", 1, "id = 1: ", "outside any section" },
	{ "[node]\n= 1\n", 2, "[node]  = 1: ", "no key name" },
	/* numbers */
	{ "[node]\nid = abc\n", 2, "[node] id = abc: ", "not a number; write this node's id" },
	{ "[node]\nid = 12x\n", 2, "[node] id = 12x: ", "not a number" },
	{ "[node]\nid = -1\n", 2, "[node] id = -1: ", "not a number" },
	{ "[node]\nid = 0\n", 2, "[node] id = 0: ", "out of range; write this node's id, 1..65535" },
	{ "[node]\nid = 65536\n", 2, "[node] id = 65536: ", "out of range" },
	{ "[node]\ncluster_id = 99999999999999999999\n", 2, "[node] cluster_id = ",
	  "out of range" },
	{ "[node]\nthreads = 257\n", 2, "[node] threads = 257: ", "out of range" },
	{ "[dataplane]\nmtu = 100\n", 2, "[dataplane] mtu = 100: ", "576..9000" },
	{ "[apply]\nworkers = 65\n", 2, "[apply] workers = 65: ", "1..64" },
	{ "[apply]\nworkers = 0\n", 2, "[apply] workers = 0: ", "1..64" },
	{ "[faults]\ndrop = 1001\n", 2, "[faults] drop = 1001: ", "0..1000" },
	{ "[replication]\ntimeout_ms = 0\n", 2, "[replication] timeout_ms = 0: ", "out of range" },
	{ "[replication]\nquorum = 17\n", 2, "[replication] quorum = 17: ", "out of range" },
	/* sizes */
	{ "[log]\nring_size = 100K\n", 2, "[log] ring_size = 100K: ", "not a power of two" },
	{ "[log]\nring_size = 32K\n", 2, "[log] ring_size = 32K: ", "out of range" },
	{ "[log]\nsegment_size = 64X\n", 2, "[log] segment_size = 64X: ", "not a size" },
	{ "[log]\nsegment_size = 64MB\n", 2, "[log] segment_size = 64MB: ", "not a size" },
	{ "[log]\nsegment_size = 2048G\n", 2, "[log] segment_size = 2048G: ", "out of range" },
	/* names */
	{ "[node]\nrole = master\n", 2, "[node] role = master: ",
	  "unknown value; write primary, replica or witness" },
	{ "[node]\nidle = sleep\n", 2, "[node] idle = sleep: ", "write spin, yield or backoff" },
	{ "[replication]\nlevel = disk\n", 2, "[replication] level = disk: ",
	  "write memory, local, received, durable or applied" },
	{ "[dataplane]\nbackend = tcp\n", 2, "[dataplane] backend = tcp: ", "dpdk or udp" },
	/* addresses */
	{ "[dataplane]\naddress = 1.2.3:7000\n", 2, "[dataplane] address = 1.2.3:7000: ",
	  "'1.2.3' is not an IPv4 address" },
	{ "[dataplane]\naddress = 1.2.3.4\n", 2, "[dataplane] address = 1.2.3.4: ",
	  "not an IPv4:port address" },
	{ "[peer.2]\naddress = 1.2.3.4:0\n", 2, "[peer.2] address = 1.2.3.4:0: ", "port" },
	{ "[peer.2]\naddress = 1.2.3.4:7x\n", 2, "[peer.2] address = 1.2.3.4:7x: ", "port" },
	{ "[peer.2]\nmac = 02:00:00:00:00\n", 2, "[peer.2] mac = 02:00:00:00:00: ",
	  "not a MAC address" },
	{ "[peer.2]\nmac = 02:00:00:00:00:0g\n", 2, "[peer.2] mac", "not a MAC address" },
	/* duplicates */
	{ "[peer.2]\naddress = 1.2.3.4:5\n[peer.3]\naddress = 1.2.3.5:5\n[peer.2]\nmac = "
	  "02:00:00:00:00:02\n", 6, "[peer.2] mac = 02:00:00:00:00:02: ",
	  "duplicate peer: [peer.2] is already defined on line 2" },
	{ "[peer.2]\naddress = 1.2.3.4:5\n[peer.2]\naddress = 1.2.3.4:6\n", 4, "[peer.2] address",
	  "duplicate peer" },
	{ "[node]\nid = 1\n[log]\nring_size = 1M\n[node]\nrole = primary\n", 6,
	  "[node] role = primary: ", "[node] appears twice (first on line 2)" },
	{ "[node]\nid = 1\nrole = primary\nid = 2\n", 4, "[node] id = 2: ",
	  "id is already set on line 2" },
	/* syntax, continuation, long lines */
	{ "[node]\nid = 1\nthis is not a key\n", 3, "this is not a key: ",
	  "not a [section] or key = value line" },
	{ "[node\nid = 1\n", 1, "[node: ", "a section header without ']'" },
	{ "[node]\nid = 1\n  role = primary\n", 3, "[node] id = role = primary: ",
	  "only eal_args may continue" },
	{ "[dataplane]\neal_args = a\n  ;x\n", 0, NULL, NULL }, /* a comment, not an error */
	{ "[dataplane]\neal_args = a\n  #x\n", 0, NULL, NULL },
	/* the first error wins: syntax before a bad key, a bad key before a syntax error */
	{ "[node]\noops\nid = 0\n", 2, "oops: ", "not a [section]" },
	{ "[node]\nid = 0\noops\n", 2, "[node] id = 0: ", "out of range" },
};

static void test_bad_files(void **state)
{
	struct fx *fx = *state;

	for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
		const struct bad_file *b = &bad_files[i];
		int rc = load_text(fx, b->text);
		if (b->line == 0) {
			if (rc != 0)
				fail_msg("case %zu: %s: %s", i, b->text, tdm_errmsg());
			continue;
		}
		if (rc != TDM_ERR_CONFIG)
			fail_msg("case %zu (%s): rc %d, want TDM_ERR_CONFIG; errmsg: %s", i,
				 b->text, rc, tdm_errmsg());
		assert_msg_at(fx, b->line, b->entry);
		assert_msg_has(b->why);
	}
}

static void test_long_line(void **state)
{
	struct fx *fx = *state;
	char text[600];

	/* 198 characters fit; 199 do not */
	int n = snprintf(text, sizeof(text), "[node]\ndata_dir = /");
	memset(text + n, 'd', 198 - 12);
	strcpy(text + n + 198 - 12, "\n[apply]\nbatch = 3\n");
	assert_rc(load_text(fx, text), TDM_ERR_CONFIG); /* 186 characters: too long a dir */
	assert_msg_at(fx, 2, "[node] data_dir = /ddd");
	assert_msg_has("longer than 180 characters");

	n = snprintf(text, sizeof(text), "[dataplane]\neal_args = ");
	memset(text + n, 'e', 198 - 11);
	strcpy(text + n + 198 - 11, "\n");
	assert_rc(load_text(fx, text), TDM_ERR_CONFIG); /* fits the line, too long a word */
	assert_msg_at(fx, 2, "[dataplane] eal_args = eee");
	assert_msg_has("longer than 160 characters");

	n = snprintf(text, sizeof(text), "[dataplane]\n\neal_args = ");
	memset(text + n, 'e', 199 - 11);
	strcpy(text + n + 199 - 11, "\nmtu = 1\n");
	assert_rc(load_text(fx, text), TDM_ERR_CONFIG);
	assert_msg_at(fx, 3, "the line is longer than 198 characters");
}

static void test_eal_args_lines(void **state)
{
	struct fx *fx = *state;

	assert_ok(load_text(fx, "[dataplane]\neal_args = --a  --b\n\t--c ; comment\n"
			    "  --d=1,2\nmtu = 1400\n"));
	assert_string_equal(fx->cfg.eal_args, "--a --b --c --d=1,2");
	assert_int_equal(fx->cfg.mtu, 1400);
	/* a continuation that makes the list too long is reported on its line */
	char text[2400];
	int n = snprintf(text, sizeof(text), "[dataplane]\neal_args = x\n");
	for (int i = 0; i < 12; i++)
		n += snprintf(text + n, sizeof(text) - (size_t)n, "  --%0100d\n", i);
	assert_rc(load_text(fx, text), TDM_ERR_CONFIG);
	assert_msg_at(fx, 12, "[dataplane] eal_args = --000");
	assert_msg_has("longer than 1023 characters");
}

static void test_missing_file(void **state)
{
	struct fx *fx = *state;

	tdm_err_clear();
	assert_rc(tdm_config_load(&fx->cfg, fx->path), -ENOENT);
	assert_msg_has("cannot read configuration file");
	assert_msg_has(fx->path);
	assert_rc(tdm_config_load(&fx->cfg, fx->dir), -EISDIR);
	assert_msg_has(fx->dir);
}

/* ---- Overrides ---- */

static void test_overrides(void **state)
{
	struct fx *fx = *state;
	struct tdm_config *c = &fx->cfg;

	assert_ok(load_text(fx, replica_ini));
	assert_ok(tdm_config_set(c, "node.id", "9"));
	assert_ok(tdm_config_set(c, "replication.level", " durable "));
	assert_ok(tdm_config_set(c, "log.ring_size", "1G"));
	assert_ok(tdm_config_set(c, "peer.3.address", "10.1.1.3:7100"));
	assert_ok(tdm_config_set(c, "peer.1.dpdk_port", "2"));
	assert_ok(tdm_config_set(c, "dataplane.eal_args", "  --x   --y "));
	assert_ok(tdm_config_set(c, "faults.delay_us", "7"));
	assert_int_equal(c->node_id, 9);
	assert_int_equal(c->level, TDM_LEVEL_DURABLE);
	assert_u64(c->ring_size, 1ull << 30);
	assert_int_equal(c->n_peers, 2);
	assert_int_equal(c->peers[1].id, 3);
	assert_int_equal(c->peers[1].port, 7100);
	assert_int_equal(c->peers[0].dpdk_port, 2);
	assert_string_equal(c->eal_args, "--x --y");
	assert_u64(c->faults.delay_ns, 7000);
	assert_ok(tdm_config_check(c));

	static const struct {
		const char *key, *value, *want;
	} bad[] = {
		{ "nodeid", "1", "override 'nodeid': write section.key=value" },
		{ ".id", "1", "write section.key=value" },
		{ "node.", "1", "write section.key=value" },
		{ "node.id", "0", "override [node] id = 0: out of range" },
		{ "node.idd", "1", "override [node] idd = 1: unknown key in [node]; did you mean id?" },
		{ "nodes.id", "1", "did you mean [node]?" },
		{ "log.ring_size", "3M", "not a power of two" },
		{ "node.data_dir", "/a ;b", "starts a comment" },
		{ "node.data_dir", "", "empty" },
		{ "dataplane.eal_args", "--a ;b", "starts a comment" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tdm_err_clear();
		int rc = tdm_config_set(c, bad[i].key, bad[i].value);
		if (rc != TDM_ERR_CONFIG)
			fail_msg("set %s=%s: rc %d, want TDM_ERR_CONFIG", bad[i].key, bad[i].value,
				 rc);
		assert_msg_has(bad[i].want);
	}
	assert_int_equal(c->node_id, 9); /* refused values change nothing */
}

/* ---- Print and load back ---- */

/* Print c to path2, load it into fresh defaults, compare field by field (the bytes). */
static void round_trip(struct fx *fx, const struct tdm_config *c)
{
	struct tdm_config back;
	FILE *f = fopen(fx->path2, "w");

	assert_non_null(f);
	tdm_config_print(c, f);
	assert_int_equal(fclose(f), 0);
	tdm_config_defaults(&back);
	assert_ok(tdm_config_load(&back, fx->path2));
	memcpy(back.path, c->path, sizeof(back.path));
	if (memcmp(&back, c, sizeof(back)) != 0) {
		tdm_config_print(c, stderr);
		fprintf(stderr, "---- read back as\n");
		tdm_config_print(&back, stderr);
		fail_msg("the printed configuration does not read back identically");
	}
}

static void test_round_trip(void **state)
{
	struct fx *fx = *state;
	char args[1100];
	int n = 0;

	assert_ok(load_text(fx, full_ini));
	round_trip(fx, &fx->cfg);
	assert_ok(load_text(fx, replica_ini));
	round_trip(fx, &fx->cfg);
	tdm_config_defaults(&fx->cfg);
	round_trip(fx, &fx->cfg);

	/* a long EAL argument list is printed on continuation lines */
	for (int i = 0; n < 900; i++)
		n += snprintf(args + n, sizeof(args) - (size_t)n, "%s--vdev=net_memif%d,role=client,"
			      "socket=/run/tandem/%d.sock", i ? " " : "", i, i);
	assert_ok(load_text(fx, full_ini));
	assert_ok(tdm_config_set(&fx->cfg, "dataplane.eal_args", args));
	assert_ok(tdm_config_set(&fx->cfg, "log.retention_cap", "0"));
	assert_ok(tdm_config_set(&fx->cfg, "log.ring_size", "64K"));
	assert_ok(tdm_config_set(&fx->cfg, "node.cluster_id", "18446744073709551615"));
	round_trip(fx, &fx->cfg);

	/* the file is what a person would write */
	FILE *f = fopen(fx->path2, "r");
	char line[256];
	bool ring = false, peer = false;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		assert_true(line[0] == ';' || strlen(line) < 100);
		ring |= strcmp(line, "ring_size = 64K\n") == 0;
		peer |= strcmp(line, "[peer.2]\n") == 0;
	}
	fclose(f);
	assert_true(ring);
	assert_true(peer);
}

/* ---- The whole-configuration check ---- */

struct bad_check {
	const char *set_key, *set_value; /* applied to replica_ini (NULL: see mutate) */
	int mutate;                      /* changes no file can make */
	const char *want;
};

static const struct bad_check bad_checks[] = {
	{ "node.role", "replica", 1, "[node] id is not set" },
	{ "node.role", "replica", 2, "[node] cluster_id is not set" },
	{ "node.role", "replica", 3, "[node] data_dir is not set" },
	{ "peer.1.witness", "yes", 0, "[node] primary = 1: that peer is a witness" },
	{ "replication.failover_timeout_ms", "1", 0, "[replication] failover_timeout_ms = 1: too short" },
	{ "node.primary", "5", 0, "[node] primary = 5: not a configured peer" },
	{ "peer.2.address", "127.0.0.1:7002", 0, "[peer.2]: 2 is this node's own id" },
	{ "peer.3.dpdk_port", "1", 0, "[peer.3] address is not set" },
	{ "log.retention_cap", "64M", 0, "[log] retention_cap = 67108864: less than two segments" },
	{ "node.role", "primary", 0, "[node] primary = 1: this node is the primary" },
	{ "node.role", "replica", 5, "[apply] workers = 0: out of range" },
	{ "node.role", "replica", 6, "[node] threads = -1: out of range" },
	{ "node.role", "replica", 7, "[replication] timeout_ms = 0: out of range" },
	{ "node.role", "replica", 8, "[log] ring_size = 100000: not a power of two" },
	{ "node.role", "replica", 9, "[dataplane] mtu = 100: out of range" },
	{ "node.role", "replica", 10, "[peer.1]: duplicate peer" },
	{ "node.role", "replica", 11, "[node] role = 7: unknown role" },
	{ "node.role", "replica", 12, "[replication] level = 9: unknown value" },
	{ "node.role", "replica", 13, "[faults] drop = 2000: out of range" },
};

static void mutate(struct tdm_config *c, int how)
{
	switch (how) {
	case 1: c->node_id = 0; break;
	case 2: c->cluster_id = 0; break;
	case 3: c->data_dir[0] = '\0'; break;
	case 5: c->apply_workers = 0; break;
	case 6: c->threads = -1; break;
	case 7: c->timeout_ms = 0; break;
	case 8: c->ring_size = 100000; break;
	case 9: c->mtu = 100; break;
	case 10: c->peers[c->n_peers++] = c->peers[0]; break;
	case 11: c->role = (enum tdm_role)7; break;
	case 12: c->level = (enum tdm_level)9; break;
	case 13: c->faults.drop = 2000; break;
	default: break;
	}
}

static void test_check(void **state)
{
	struct fx *fx = *state;
	char want[600];

	for (size_t i = 0; i < sizeof(bad_checks) / sizeof(bad_checks[0]); i++) {
		const struct bad_check *b = &bad_checks[i];
		assert_ok(load_text(fx, replica_ini));
		assert_ok(tdm_config_set(&fx->cfg, b->set_key, b->set_value));
		mutate(&fx->cfg, b->mutate);
		tdm_err_clear();
		int rc = tdm_config_check(&fx->cfg);
		if (rc != TDM_ERR_CONFIG)
			fail_msg("check case %zu (%s): rc %d, want TDM_ERR_CONFIG", i, b->want, rc);
		snprintf(want, sizeof(want), "%s: %s", fx->path, b->want); /* names the file */
		assert_msg_has(want);
	}
}

static void test_check_quorum(void **state)
{
	struct fx *fx = *state;
	struct tdm_config *c = &fx->cfg;

	assert_ok(load_text(fx, full_ini)); /* primary, 2 peers, durable, quorum 2 */
	assert_ok(tdm_config_check(c));
	assert_ok(tdm_config_set(c, "replication.quorum", "3"));
	assert_rc(tdm_config_check(c), TDM_ERR_CONFIG);
	assert_msg_has("[replication] quorum = 3: level durable needs that many replicas but 2 "
		       "are configured");
	/* below `received` the quorum does not matter */
	assert_ok(tdm_config_set(c, "replication.level", "local"));
	assert_ok(tdm_config_check(c));
	/* a configuration built in code: no file in the message */
	tdm_config_defaults(c);
	c->node_id = 1;
	c->cluster_id = 5;
	c->role = TDM_ROLE_PRIMARY;
	strcpy(c->data_dir, "/tmp/x");
	c->level = TDM_LEVEL_RECEIVED;
	assert_rc(tdm_config_check(c), TDM_ERR_CONFIG);
	assert_msg_has(": [replication] quorum = 1: level received needs that many replicas but "
		       "0 are configured");
	c->level = TDM_LEVEL_LOCAL;
	assert_ok(tdm_config_check(c)); /* a primary alone */
}

/* ---- Names ---- */

static void test_names(void **state)
{
	enum tdm_level l;

	(void)state;
	for (int i = TDM_LEVEL_MEMORY; i <= TDM_LEVEL_APPLIED; i++) {
		assert_ok(tdm_level_parse(tdm_level_name((enum tdm_level)i), &l));
		assert_int_equal(l, i);
	}
	assert_string_equal(tdm_level_name(TDM_LEVEL_RECEIVED), "received");
	assert_string_equal(tdm_level_name((enum tdm_level)42), "?");
	assert_rc(tdm_level_parse("fast", &l), -EINVAL);
	assert_msg_has("unknown commit level 'fast'");
	assert_string_equal(tdm_role_name(TDM_ROLE_PRIMARY), "primary");
	assert_string_equal(tdm_role_name(TDM_ROLE_REPLICA), "replica");
	assert_string_equal(tdm_role_name((enum tdm_role)0), "?");
	assert_string_equal(tdm_peer_state_name(TDM_PEER_DOWN), "down");
	assert_string_equal(tdm_peer_state_name(TDM_PEER_STREAMING), "streaming");
	assert_string_equal(tdm_peer_state_name(TDM_PEER_FAILED), "failed");
	assert_string_equal(tdm_peer_state_name((enum tdm_peer_state)9), "?");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_keeps_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eal_args_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overrides, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_quorum, setup, teardown),
		cmocka_unit_test(test_names),
	};
	const char *group = argc > 1 ? argv[1] : "";

	if (*group && strcmp(group, "unit") != 0) {
		fprintf(stderr, "usage: %s [unit]\n", argv[0]);
		return 2;
	}
	return cmocka_run_group_tests_name("config-unit", tests, NULL, NULL) ? 1 : 0;
}
