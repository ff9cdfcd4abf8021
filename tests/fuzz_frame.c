/*
 * libFuzzer target for the dataplane's frame parser and receive path (built with clang when it
 * has -fsanitize=fuzzer; see tests/meson.build). Each input is used three ways:
 *   1. as a raw frame: tdm_dp_frame_check, then tdm_dp_inject into a node with a sender and a
 *      receiver (every check, drop counter and dispatch path);
 *   2. as the payload of a DATA frame with a valid header at the position the receiver expects
 *      (the item walker, PAD items, fragments with the FRAG flag from the input's first byte);
 *   3. as one record whose length, position and CRC are made valid (the delivery path).
 * The consumer aborts if a record reaches it that fails its checks: the fuzzer reports that as
 * a crash.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dp_pvt.h"

#define ME 2
#define PEER 1
#define CLUSTER 9

static struct tdm_dp *dp;
static struct tdm_dp_receiver *rcv;
static uint8_t frame[TDM_DP_MAX_MTU];

static int on_record(void *ctx, const struct tdm_log_rec *rec)
{
	uint32_t len = rec->hdr->length;

	(void)ctx;
	if (tdm_log_rec_check(rec->hdr, len, rec->hdr->position) != 0)
		abort(); /* a record that fails its checks reached the consumer */
	return 0;
}

static void remove_log(const char *dir)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static char shm_path[96];

static void remove_ring(void)
{
	unlink(shm_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char dir[64], shm[64];
	struct tdm_dp_config c;
	struct tdm_dp_receiver_config rc;
	struct tdm_dp_sender_config sc;
	struct tdm_log_config lc;
	struct tdm_log *log;
	struct tdm_dp_sender *s;

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "/dev/shm/tdm-fuzz-dir-%d", (int)getpid());
	snprintf(shm, sizeof(shm), "tdm-fuzz-%d", (int)getpid());
	tdm_log_config_defaults(&lc);
	lc.dir = dir;
	lc.shm_name = shm;
	lc.ring_size = 1u << 20;
	lc.segment_size = 1u << 20;
	tdm_dp_config_defaults(&c);
	c.cluster_id = CLUSTER;
	c.transport.node_id = ME;
	c.transport.local_ip = htonl(INADDR_LOOPBACK);
	c.transport.local_port = (uint16_t)(40000 + getpid() % 20000);
	c.transport.n_peers = 1;
	c.transport.peers[0].node_id = PEER;
	c.transport.peers[0].ip = htonl(INADDR_LOOPBACK);
	c.transport.peers[0].port = 9; /* discard: replies go nowhere */
	tdm_dp_receiver_config_defaults(&rc);
	rc.peer = PEER;
	rc.on_record = on_record;
	rc.max_record = 1u << 20;
	tdm_dp_sender_config_defaults(&sc);
	sc.peer = PEER;
	if (tdm_log_open(&lc, &log) || tdm_dp_create(&c, &dp) ||
	    tdm_dp_receiver_add(dp, &rc, &rcv) || tdm_dp_sender_add(dp, &sc, log, &s)) {
		fprintf(stderr, "fuzz_frame: setup failed: %s\n", tdm_errmsg());
		exit(1);
	}
	remove_log(dir); /* the open log keeps working; nothing is left behind at exit */
	snprintf(shm_path, sizeof(shm_path), "/dev/shm/%s", shm);
	atexit(remove_ring);
	return 0;
}

static void inject_as_payload(const uint8_t *data, size_t size)
{
	struct tdm_dp_receiver_stats st;
	struct tdm_dp_hdr *h = (struct tdm_dp_hdr *)frame;

	if (size < 1 || size > sizeof(frame) - TDM_DP_HDR_SIZE)
		return;
	tdm_dp_receiver_stats(rcv, &st);
	tdm_dp_hdr_fill(h, TDM_DP_DATA, CLUSTER, PEER, ME, 0, 0);
	h->position = st.received;
	if (data[0] & 1) { /* a slice of a large record */
		h->flags = TDM_DP_F_FRAG;
		h->frag_off = data[0] & 2 ? 0 : (uint32_t)(size * 3);
	}
	memcpy(frame + TDM_DP_HDR_SIZE, data, size);
	tdm_dp_frame_seal(frame, (uint32_t)size);
	tdm_dp_inject(dp, frame, TDM_DP_HDR_SIZE + (uint32_t)size);
}

static void inject_as_record(const uint8_t *data, size_t size)
{
	struct tdm_dp_receiver_stats st;
	struct tdm_dp_hdr *h = (struct tdm_dp_hdr *)frame;
	uint8_t *r = frame + TDM_DP_HDR_SIZE;
	uint32_t len, span, k, crc;

	if (size < TDM_LOG_REC_HDR_SIZE || size > 1400)
		return;
	tdm_dp_receiver_stats(rcv, &st);
	memcpy(r, data, size);
	len = (uint32_t)size;
	k = len - TDM_LOG_REC_HDR_SIZE;
	span = tdm_dp_span_of(len);
	memset(r + len, 0, span - len);
	memcpy(r, &len, 4);
	memcpy(r + 8, &st.received, 8);
	r[30] = (uint8_t)(1 + r[30] % 4);        /* a known type */
	memcpy(r + 32, &k, 4);                   /* all payload is key */
	memset(r + 36, 0, 4);
	crc = tdm_crc32c(tdm_crc32c(0, r, 4), r + 8, len - 8);
	memcpy(r + 4, &crc, 4);
	tdm_dp_hdr_fill(h, TDM_DP_DATA, CLUSTER, PEER, ME, 0, 0);
	h->position = st.received;
	tdm_dp_frame_seal(frame, span);
	tdm_dp_inject(dp, frame, TDM_DP_HDR_SIZE + span);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned calls;
	uint32_t n = size > sizeof(frame) ? (uint32_t)sizeof(frame) : (uint32_t)size;

	memcpy(frame, data, n); /* the parser may assume nothing about alignment or length */
	tdm_dp_frame_check(frame, n);
	tdm_dp_inject(dp, frame, n);
	inject_as_payload(data, size);
	inject_as_record(data, size);
	if (++calls % 64 == 0)
		tdm_dp_do_work(dp); /* replies, status, heartbeats */
	return 0;
}
