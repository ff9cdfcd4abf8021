/*
 * Multi-process stream tests of the dataplane: a sender process streams its log to a receiver
 * process over one backend, and the receiver checks every record bit for bit.
 *
 * Usage: test_dp_stream udp|dpdk [records]
 *   Exits 77 when the backend is not in this build (dpdk without DPDK).
 */
#include "tdp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum tdm_dp_backend backend;
static uint64_t n_records = 1000000;

static void expect_clean(const char *name, const struct tdp_result *res, uint64_t records)
{
	tdp_print_result(name, res);
	assert_int_equal(res->sender_rc, 0);
	assert_int_equal(res->receiver_rc, 0);
	assert_true(res->end > 0);
	assert_true(res->ss.acked == res->end);
	assert_true(res->rs.received == res->end);
	assert_int_equal(res->rs.bad_records, 0);
	if (records)
		assert_true(res->delivered == records);
}

/* 1M records of 8 B to 64 KiB arrive complete, in order, bit for bit. */
static void test_stream_clean(void **state)
{
	struct tdp_run run = { .backend = backend, .records = n_records };
	struct tdp_result res;

	(void)state;
	tdp_run_pair(&run, &res);
	expect_clean("clean", &res, n_records);
	assert_true(res.ss.fragments > 0); /* 64 KiB records went out in slices */
}

/* The same with 1% drop, 1% duplicate and 1% reorder on both sides. */
static void test_stream_faults(void **state)
{
	struct tdp_run run = {
		.backend = backend, .records = n_records,
		.faults = { .drop = 10, .duplicate = 10, .reorder = 10, .seed = 1234 },
	};
	struct tdp_result res;

	(void)state;
	tdp_run_pair(&run, &res);
	expect_clean("1% drop + 1% duplicate + 1% reorder", &res, n_records);
	assert_true(res.sdp.transport.fault_drop > 0);
	assert_true(res.sdp.transport.fault_duplicate > 0);
	assert_true(res.sdp.transport.fault_reorder > 0);
	assert_true(res.ss.rewinds > 0);
	assert_true(res.ss.retransmit_bytes > 0);
	assert_true(res.rs.duplicates > 0);
	assert_true(res.rs.out_of_order > 0);
}

/* A cut link heals and the stream resumes from the acknowledged position. */
static void test_stream_cut(void **state)
{
	uint64_t n = n_records / 4;
	struct tdp_run run = { .backend = backend, .records = n, .cut = true };
	struct tdp_result res;

	(void)state;
	tdp_run_pair(&run, &res);
	expect_clean("cut and heal", &res, n);
	assert_true(res.timeouts_in_cut >= 2);
	assert_true(res.acked_at_heal > 0 && res.acked_at_heal < res.end);
	assert_true(res.sdp.transport.fault_cut_tx > 0);
	assert_true(res.ss.timeouts >= 2);
}

/* Log mode: the receiver's own log ends up byte for byte the sender's, PADs included. */
static void test_stream_log_mode(void **state)
{
	struct tdp_run run = {
		.backend = backend, .records = n_records / 10, .log_mode = true,
		.ring = 8u << 20, .seg = 256u << 10,
		.faults = { .drop = 5, .seed = 99 },
	};
	struct tdp_result res;

	(void)state;
	tdp_run_pair(&run, &res);
	expect_clean("log mode", &res, 0);
	assert_true(res.ss.peer_durable == res.end);
	assert_int_equal(res.logs_equal, 1);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_clean),
		cmocka_unit_test(test_stream_faults),
		cmocka_unit_test(test_stream_cut),
		cmocka_unit_test(test_stream_log_mode),
	};

	if (argc < 2 || tdm_dp_backend_parse(argv[1], &backend) != 0) {
		fprintf(stderr, "usage: %s udp|dpdk [records]\n", argv[0]);
		return 2;
	}
	if (argc > 2)
		n_records = strtoull(argv[2], NULL, 10);
	if (backend == TDM_DP_BACKEND_DPDK && !tdp_have_dpdk()) {
		printf("SKIP: this build has no DPDK (install libdpdk-dev and rebuild)\n");
		return 77;
	}
	cmocka_set_message_output(CM_OUTPUT_STDOUT);
	return cmocka_run_group_tests_name(argv[1], tests, NULL, NULL);
}
