/*
 * A reusable fault harness for multi-process cluster tests: write the configurations of a
 * primary and its replicas (or of a multi-primary full mesh) into a temporary directory, start
 * each node as a real tandemd process, kill (any signal), stop/continue, restart, wait for
 * catch-up (multi-primary: quiescence), and compare digests. Nodes die with the test
 * (PDEATHSIG); tc_destroy, and a SIGTERM from meson's timeout, kill them and remove every file.
 *
 * Waits are bounded (they fail the test after TC_WAIT_S seconds instead of hanging) but nothing
 * asserts a time.
 */
#ifndef TCLUSTER_H
#define TCLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tandem.h"

#define TC_MAX_NODES 4
#define TC_WAIT_S 60

struct tc_opts {
	enum tdm_dp_backend backend;
	int replicas;              /**< 1..3 */
	const char *level;         /**< replication.level; NULL = local */
	int quorum;                /**< 0 = 1 */
	const char *on_timeout;    /**< NULL = fail */
	uint64_t timeout_ms;       /**< 0 = 1000 */
	uint64_t segment_size;     /**< 0 = 1 MiB */
	uint64_t ring_size;        /**< 0 = 4 MiB */
	uint64_t retention_cap;    /**< 0 = none */
	int workers;               /**< 0 = 2 */
	uint64_t cluster_id;       /**< 0 = derived from the pid */
	uint64_t failover_ms;      /**< replication.failover_timeout_ms; 0 = no failover */
	bool witness;              /**< the last node is a witness (it counts in `replicas`) */
	/* multi-primary: `replicas` + 1 writable nodes in a full mesh (no roles, no failover) */
	bool multi_primary;        /**< [replication] mode = multi-primary */
	const char *write_mode;    /**< NULL = the default (any); "any" or "majority" */
	uint64_t max_clock_offset_ms; /**< 0 = the default */
};

struct tc_cluster {
	char dir[200];             /**< temporary directory holding everything */
	const char *tandemd;       /**< path of the tandemd binary */
	struct tc_opts o;
	int n;                     /**< nodes: 0 is the first primary (node id 1), i is node id
	                                i+1; with failover any data node may become primary */
	pid_t pid[TC_MAX_NODES];
	char cfg[TC_MAX_NODES][300];
	char data[TC_MAX_NODES][300];
	char err[TC_MAX_NODES][300]; /**< each node's stderr */
	uint16_t port;
	bool dpdk;
};

/** The arguments of a cluster test: "udp|dpdk TANDEMD [TEST-NAME-FILTER]" (prog names it in
 *  the usage line; the caller hands argv[3] to cmocka). @return 0; 2 usage error (said on
 *  stderr); 77 dpdk in a build without DPDK (skipped, said). */
int tc_args(int argc, char **argv, const char *prog, enum tdm_dp_backend *backend,
	    const char **tandemd);
/** Write configurations. @return 0, or 77 when the backend cannot run here (dpdk not built). */
int tc_create(struct tc_cluster *c, const char *tandemd, const struct tc_opts *o,
	      const char *tag);
/** Append a line to node i's configuration (before tc_start), e.g. "[node]\ncluster_id = 9". */
void tc_config_append(struct tc_cluster *c, int i, const char *text);
/** Start node i and wait until its status file says it runs (replicas: and streams, unless
 *  wait_streaming is false; multi-primary: and streams both ways with every running peer,
 *  its origin to them and theirs to it). @return 0 or -1 (its stderr is printed). */
int tc_start(struct tc_cluster *c, int i, bool wait_streaming);
/** Start every node. */
int tc_start_all(struct tc_cluster *c);
/** Send sig to node i; SIGKILL/SIGTERM also reap it. */
void tc_signal(struct tc_cluster *c, int i, int sig);
/** Wait until every running replica has applied the current primary's tail (multi-primary:
 *  tc_wait_quiescent). @return 0 or -1. */
int tc_wait_caught_up(struct tc_cluster *c);
/**
 * Multi-primary: wait until the running nodes are quiescent. Positions only grow, and an idle
 * node appends a NOOP every 200 ms (so its peers can purge tombstones), so tails are never
 * still: quiescent means that, as status files published after this call began say, every node
 * has its own origin, and its copy of every running peer's origin, applied and durable up to
 * that origin's tail in the first such status of its node (so past every write made before the
 * call), and every peer acknowledges our origin applied that far.
 * @param tails out, may be NULL: those tails, per node index (0 for nodes not running)
 * @return 0, or -1 after TC_WAIT_S (every node's status rows and stderr are printed).
 */
int tc_wait_quiescent(struct tc_cluster *c, uint64_t *tails);
/** The row of node j (index) in node i's status, or NULL. */
const struct tdm_peer_status *tc_peer_row(const struct tdm_status *st, const struct tc_cluster *c,
					  int j);
/** Print node i's status: own positions, multi-primary counters and every peer row. */
void tc_print_status(struct tc_cluster *c, int i);
/** Index of the running node that is an unfenced primary (the highest epoch), or -1. */
int tc_primary(struct tc_cluster *c, uint32_t *epoch);
/** Wait until a running node is an unfenced primary of an epoch above `above`: its index, or
 *  -1 after TC_WAIT_S (every node's stderr is printed). */
int tc_wait_primary(struct tc_cluster *c, uint32_t above);
/** Is node i a witness? */
bool tc_is_witness(const struct tc_cluster *c, int i);
/** Fault injection on node i: cut (or heal) its links to node j (-1: every peer). */
int tc_cut(struct tc_cluster *c, int i, int j, bool cut);
/** Print every node's stderr (on a failure). */
void tc_print_logs(struct tc_cluster *c);
/** Digest, applied position and key count of node i (over its control socket). */
int tc_digest(struct tc_cluster *c, int i, uint64_t *digest, uint64_t *applied, uint64_t *keys);
/** Read node i's status. */
int tc_status(struct tc_cluster *c, int i, struct tdm_status *st);
/** Does node i's stderr contain text? */
bool tc_log_has(struct tc_cluster *c, int i, const char *text);
/** Kill every node and remove the directory. */
void tc_destroy(struct tc_cluster *c);

#endif /* TCLUSTER_H */
