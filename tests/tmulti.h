/*
 * The multi-primary oracle of tests/test_multi.c: what each node accepted, the state every node
 * must converge to, and the checks of every node against it.
 *
 * The expected state comes from every node's own log on disk (DATA_DIR/log holds exactly that
 * node's origin), not from the engine's merge: its PUT/DEL records must be exactly the writes
 * the node accepted, in order, with increasing hybrid-logical-clock stamps; merging them by the
 * greatest (hlc, origin) per key gives the expected state. Values are "n<node id>-s<seq>",
 * unique per write, so every winner is identifiable. Failed checks fail the running cmocka
 * test (fail_msg), with what differs.
 */
#ifndef TMULTI_H
#define TMULTI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcluster.h"

#define TMULTI_NODES 3
#define TMULTI_KEY_CAP 24
#define TMULTI_VAL_CAP 24

/** One write a node accepted, in the order it accepted them. */
struct tmulti_write {
	char key[TMULTI_KEY_CAP];
	uint8_t klen;
	uint8_t del;
	uint32_t seq;       /**< the value is tmulti_value(node, seq) (deletes have none) */
};

/** The writes one node accepted (appended by one writer thread at a time). */
struct tmulti_wlog {
	struct tmulti_write *v;
	size_t n, cap;
	uint32_t next_seq;  /**< the next write's seq: values stay unique across phases */
	size_t lost_from, lost_to; /**< writes [lost_from, lost_to) were accepted but not
	                                acknowledged when the node was killed: its log may hold
	                                only a prefix of them (then the writes after them) */
};

/** Write the value of write `seq` of node index `node` into buf (TMULTI_VAL_CAP bytes).
 *  @return its length. */
uint32_t tmulti_value(int node, uint32_t seq, char *buf);

/** Append an accepted write (aborts when out of memory). */
void tmulti_wlog_add(struct tmulti_wlog *w, const struct tmulti_write *op);

/** What tmulti_check_converged found, for the cases' own assertions. */
struct tmulti_outcome {
	size_t keys;          /**< keys ever written */
	size_t live;          /**< keys whose winner is a put */
	size_t deleted;       /**< keys whose winner is a delete */
	size_t multi_origin;  /**< keys written by more than one node */
	uint64_t conflicts;   /**< conflicts_stale + conflicts_overwrites over all nodes */
	struct tdm_status st[TMULTI_NODES]; /**< every node's status after quiescence */
};

/**
 * After the last write (every node running): wait for quiescence and for every copy of every
 * origin to be durable, build the expected state from every node's own log, and check every
 * node against it (digest and key count against a store of the expected state, every key's
 * value through tdm_ctl_get_many) and every copy of every origin (DATA_DIR/origin-<id>) against
 * the origin's log (same records at the same positions, same end). Prints a summary line.
 * @param issued what each node accepted (TMULTI_NODES logs)
 */
void tmulti_check_converged(struct tc_cluster *c, const struct tmulti_wlog *issued,
			    const char *label, struct tmulti_outcome *o);

#endif /* TMULTI_H */
