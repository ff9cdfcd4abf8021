/*
 * Helpers shared by the dataplane tests (tests/test_dp.c, tests/test_dp_stream.c): records whose
 * contents are a pure function of their sequence number, transport configurations for both
 * backends, and a two-process stream runner that always cleans up (children, temp dirs, rings,
 * memif sockets), even when an assertion fails.
 */
#ifndef TDP_H
#define TDP_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tdm_dp.h"
#include "tdm_log.h"

#define TDP_CLUSTER 42u
#define TDP_SENDER 1u
#define TDP_RECEIVER 2u
#define TDP_MAX_VALUE (64u * 1024)

/* ---- Records: key = 8-byte sequence number, value = f(seq) ---- */

/** Value bytes of record seq: 90% 8..256 B, 9% 256 B..4 KiB, 1% 4..64 KiB. */
uint32_t tdp_value_len(uint64_t seq);
void tdp_value_fill(uint64_t seq, uint8_t *buf, uint32_t len);
/** Append record seq. @return tdm_log_append's code. */
int tdp_append(struct tdm_log *log, uint64_t seq);
/** 0 when rec is record seq bit for bit (and its CRC checks), else 1 with a message printed. */
int tdp_rec_diff(const struct tdm_log_rec *rec, uint64_t seq);

/* ---- Configurations ---- */

/** Transport config for node (TDP_SENDER or TDP_RECEIVER) talking to the other one.
 *  tag makes ports, memif socket and EAL file prefix unique per test run. */
void tdp_transport_config(struct tdm_dp_config *cfg, enum tdm_dp_backend b, uint16_t node,
			  const char *tag);
/** Log config in dir with its own ring name. */
void tdp_log_config(struct tdm_log_config *c, const char *dir, const char *shm, uint64_t ring,
		    uint64_t seg);

/** True when the build has the dpdk backend. */
bool tdp_have_dpdk(void);

/* ---- Two-process stream runs ---- */

struct tdp_run {
	enum tdm_dp_backend backend;
	uint64_t records;            /**< records to stream */
	struct tdm_dp_faults faults; /**< injected on both sides */
	bool cut;                    /**< cut the link a third of the way, heal after timeouts */
	bool log_mode;               /**< receiver appends to its own log; logs compared after */
	uint64_t ring, seg;          /**< sender (and receiver) log sizes; 0: 64 MiB / 64 MiB */
};

/** What both sides report back (shared memory). */
struct tdp_result {
	int sender_rc, receiver_rc;  /**< 0 on success */
	char sender_msg[512], receiver_msg[512];
	uint64_t delivered;          /**< records the consumer accepted, in order */
	uint64_t end;                /**< sender's log end */
	uint64_t timeouts_in_cut;    /**< sender timeouts while the link was cut */
	uint64_t acked_at_heal;
	struct tdm_dp_sender_stats ss;
	struct tdm_dp_receiver_stats rs;
	struct tdm_dp_stats sdp, rdp;
	int logs_equal;              /**< log mode: 1 when both logs hold the same bytes */
};

/** Run a sender and a receiver in two child processes. Fails the test on a crash or timeout. */
void tdp_run_pair(const struct tdp_run *run, struct tdp_result *res);

/** Print a run's counters (for the test log; nothing asserted here). */
void tdp_print_result(const char *name, const struct tdp_result *res);

#endif /* TDP_H */
